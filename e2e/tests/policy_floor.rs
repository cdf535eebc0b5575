//! The cluster policy floor (`ClusterPolicyBundle` named `default`) and namespace budgets on the
//! real control plane (operator and webhook): a namespace without a bundle is governed by the
//! floor alone; a namespace bundle may lower the floor's limits (invalidating exactly the agents
//! above the new one, under the effective hash of both layers) and never raise them (refused at
//! apply); a floor change revalidates every namespace while a namespace bundle change writes only
//! that namespace's agents; and the floor's total per namespace denies the promotion that would
//! go above it, with the numbers, and shows in the operator's budget gauges.
//!
//! The floor is cluster-wide and every test's operator and webhook read it: the tests here take
//! one lock (they run one after another), and each deletes the floor, and its webhook
//! registrations (which a floor write goes through, whatever their namespace selector), when it
//! ends, also on failure. Other test binaries run before or after this one, never alongside.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentgov_api::PolicyBundleSpec;
use agentgov_api::agent::GovernanceStatus;
use agentgov_api::conditions::{PROMOTED, READY, find, is_true};
use agentgov_api::effective::effective_hash;
use agentgov_api::hash::policy_hash;
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::{Agent, ClusterPolicyBundle, ClusterPolicyBundleSpec, PolicyBundle};
use agentgov_e2e::admission::*;
use agentgov_e2e::operator::metric_value;
use agentgov_e2e::wait_for;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent};

const ABOVE_FLOOR: &str = "ADMISSION_DENY_BUNDLE_ABOVE_FLOOR";
const DENY_POLICY: &str = "ADMISSION_DENY_POLICY";
const FLOOR: &str = "default";

/// One floor test at a time (the floor is cluster-wide).
static FLOOR_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Held for the whole of a floor test: when dropped (the test ends, or panics), it deletes the
/// floor and the test's webhook registrations, then lets the next floor test run.
struct FloorTest {
    registrations: Vec<String>,
    _lock: tokio::sync::MutexGuard<'static, ()>,
}

impl FloorTest {
    /// Wait for the lock, then make sure no floor is left from before, nor a registration of a
    /// webhook that is gone (see [`delete_dead_registrations`]).
    async fn start() -> Self {
        let lock = FLOOR_LOCK.lock().await;
        let client = agentgov_e2e::client().await;
        agentgov_e2e::install_crds(&client)
            .await
            .expect("install the CRDs");
        delete_dead_registrations(&client).await;
        let floors: Api<ClusterPolicyBundle> = Api::all(client);
        let _ = floors.delete(FLOOR, &DeleteParams::default()).await;
        agentgov_e2e::wait_gone(&floors, FLOOR, WAIT)
            .await
            .expect("a floor left from before is deleted");
        FloorTest {
            registrations: Vec::new(),
            _lock: lock,
        }
    }

    /// A setup whose webhook registration is deleted when the test ends.
    async fn setup(&mut self, prefix: &str) -> Setup {
        let setup = setup(prefix).await;
        self.registrations.push(setup.registration.name.clone());
        setup
    }
}

impl Drop for FloorTest {
    fn drop(&mut self) {
        let registrations = std::mem::take(&mut self.registrations);
        // Its own thread and runtime: the test's runtime may be unwinding from a panic.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the cleanup");
            runtime.block_on(async move {
                let client = agentgov_e2e::client().await;
                let _ = Api::<ClusterPolicyBundle>::all(client.clone())
                    .delete(FLOOR, &DeleteParams::default())
                    .await;
                let webhooks: Api<ValidatingWebhookConfiguration> = Api::all(client);
                for name in registrations.iter().filter(|n| !n.is_empty()) {
                    let _ = webhooks.delete(name, &DeleteParams::default()).await;
                }
            });
        });
        if cleanup.join().is_err() {
            eprintln!("the floor test's cleanup failed: ClusterPolicyBundle {FLOOR} may be left");
        }
    }
}

/// Delete the e2e webhook registrations (`agentgov-e2e-*`) whose loopback webhook no longer
/// listens. A test's registration outlives it (its Drop spawns the delete on a runtime that is
/// ending), which is harmless for namespaced objects (its namespace selector names only the
/// test's namespace) but not for a ClusterPolicyBundle: a cluster-scoped object goes to every
/// registered webhook whatever its namespace selector, and with `failurePolicy: Fail` one dead
/// webhook refuses every floor write. Test binaries run one after another against one API
/// server (`make e2e`), so the earlier binaries' webhooks are all gone by now.
async fn delete_dead_registrations(client: &kube::Client) {
    let webhooks: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let list = webhooks
        .list(&ListParams::default())
        .await
        .expect("list the webhook registrations");
    for registration in list.items {
        let name = registration.name_any();
        if !name.starts_with("agentgov-e2e-") {
            continue;
        }
        let addresses: Vec<String> = registration
            .webhooks
            .iter()
            .flatten()
            .filter_map(|w| w.client_config.url.as_deref())
            .filter_map(|url| url.strip_prefix("https://"))
            .filter_map(|rest| rest.split('/').next())
            .filter(|address| address.starts_with("127.0.0.1:"))
            .map(str::to_string)
            .collect();
        let Some(address) = addresses.first() else {
            continue;
        };
        let connect = tokio::net::TcpStream::connect(address.as_str());
        let alive = matches!(
            tokio::time::timeout(Duration::from_secs(2), connect).await,
            Ok(Ok(_))
        );
        if !alive {
            eprintln!("deleting {name}: its webhook at {address} is gone");
            let _ = webhooks.delete(&name, &DeleteParams::default()).await;
        }
    }
}

/// The shipped policy as a floor, with a monthly budget limit of `max` per agent and no total.
fn floor_spec(version: &str, max: f64) -> ClusterPolicyBundleSpec {
    ClusterPolicyBundleSpec {
        policy: ns_spec(version, max),
        max_exception_days: None,
    }
}

/// The shipped policy as a namespace bundle, with a monthly budget limit of `max`.
fn ns_spec(version: &str, max: f64) -> PolicyBundleSpec {
    let mut spec = default_bundle_spec();
    spec.version = version.into();
    spec.data.max_monthly_budget_usd = max;
    spec
}

/// Apply the floor (through the webhooks: dry runs until admitted) and wait until an operator
/// reports this version in force; its policy hash.
async fn floor_in_force(setup: &Setup, spec: &ClusterPolicyBundleSpec) -> String {
    let hash = policy_hash(&spec.policy).expect("a policy hash");
    let floors: Api<ClusterPolicyBundle> = Api::all(setup.client.clone());
    let object = ClusterPolicyBundle::new(FLOOR, spec.clone());
    admitted(setup, "the floor", |pp: PostParams| {
        let (floors, object) = (floors.clone(), object.clone());
        async move {
            let params = PatchParams {
                dry_run: pp.dry_run,
                ..PatchParams::apply("e2e").force()
            };
            floors.patch(FLOOR, &params, &Patch::Apply(&object)).await
        }
    })
    .await;
    wait_for(WAIT, || {
        let (floors, hash) = (floors.clone(), hash.clone());
        async move {
            let status = floors.get(FLOOR).await.ok()?.status?;
            (status.active_hash.as_deref() == Some(hash.as_str())
                && is_true(&status.conditions, READY))
            .then_some(())
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the floor {hash} never in force\n{}", setup.diagnostics()));
    hash
}

fn layered(floor: &str, namespace: &str) -> String {
    effective_hash(Some(floor), Some(namespace))
        .expect("an effective hash")
        .expect("two layers")
}

/// The policy hash the agent's status and proof both name (None unless they agree).
fn judged_under(agent: &Agent) -> Option<String> {
    let status = agent.status.as_ref()?;
    let hash = status.policy.as_ref()?.hash.clone();
    let proof = status.proof.as_ref()?;
    (proof.policy_hash == hash).then_some(hash)
}

fn policy_of(agent: &Agent) -> Option<String> {
    Some(agent.status.as_ref()?.policy.as_ref()?.hash.clone())
}

fn denies(agent: &Agent) -> Vec<String> {
    agent
        .status
        .as_ref()
        .map(|s| s.denies.clone())
        .unwrap_or_default()
}

/// Wait until the agent is `state` and judged (status and proof) under `hash`.
async fn governed_under(setup: &Setup, name: &str, state: GovernanceStatus, hash: &str) -> Agent {
    wait_agent(setup, name, &format!("{state:?} under {hash}"), |a| {
        governance(a) == Some(state) && judged_under(a).as_deref() == Some(hash)
    })
    .await
}

#[tokio::test]
async fn a_namespace_without_a_bundle_is_governed_by_the_floor() {
    let mut test = FloorTest::start().await;
    let mut setup = test.setup("pf-alone").await;
    // Limit 600: 450 is within (and under its 80 % line, 480), 700 above.
    let floor = floor_in_force(&setup, &floor_spec("1", 600.0)).await;

    create_approved(&setup, "within", costing(450.0)).await;
    let within = governed_under(&setup, "within", GovernanceStatus::GovernedValid, &floor).await;
    let status = within.status.unwrap();
    assert_eq!(
        status.policy.as_ref().map(|p| p.name.as_str()),
        Some("ClusterPolicyBundle/default"),
        "{:?}",
        status.policy
    );
    assert!(
        status.denies.is_empty() && status.warnings.is_empty(),
        "{status:?}"
    );

    // Above the floor's limit: refused at apply by the webhook, which judges with the floor.
    let message = refused(
        &setup,
        "an agent above the floor's limit",
        DENY_POLICY,
        creating(&setup.agents(), &Agent::new("over", costing(700.0))),
    )
    .await;
    assert!(message.contains("above the org limit of 600"), "{message}");

    // And by the operator, with the webhook out of the way: the promotion is denied.
    setup.deregister().await;
    setup
        .agents()
        .create(&PostParams::default(), &Agent::new("over", costing(700.0)))
        .await
        .expect("the API server takes it without the webhook");
    approve(&setup, "over").await;
    let over = wait_agent(&setup, "over", "denied", |a| !denies(a).is_empty()).await;
    let status = over.status.unwrap();
    assert_eq!(status.governance_status, Some(GovernanceStatus::Sandbox));
    assert!(status.proof.is_none(), "{status:?}");
    assert!(
        status.denies.iter().any(|d| d
            .contains("monthlyBudgetUsd 700 is above the org limit of 600")
            && !d.starts_with('[')),
        "one layer: no prefix; {:?}",
        status.denies
    );
    assert_eq!(
        status.policy.as_ref().map(|p| p.hash.as_str()),
        Some(floor.as_str())
    );
    let promoted = find(&status.conditions, PROMOTED).expect("a Promoted condition");
    assert_eq!(
        (promoted.status.as_str(), promoted.reason.as_str()),
        ("False", "PolicyDenied")
    );
}

#[tokio::test]
async fn a_namespace_bundle_may_lower_the_floor_and_never_raise_it() {
    let mut test = FloorTest::start().await;
    let setup = test.setup("pf-lower").await;
    // Floor 1000 (80 % line 800): 300 and 700 both valid.
    let floor = floor_in_force(&setup, &floor_spec("1", 1000.0)).await;
    create_approved(&setup, "low", costing(300.0)).await;
    create_approved(&setup, "high", costing(700.0)).await;
    for name in ["low", "high"] {
        governed_under(&setup, name, GovernanceStatus::GovernedValid, &floor).await;
    }

    // Raising the floor's limit: refused at apply, naming the field and the bound.
    let bundles: Api<PolicyBundle> = setup.ns.api();
    let message = refused(
        &setup,
        "a namespace bundle above the floor",
        ABOVE_FLOOR,
        creating(
            &bundles,
            &PolicyBundle::new("default", ns_spec("raise", 1200.0)),
        ),
    )
    .await;
    assert!(
        message.contains("maxMonthlyBudgetUsd") && message.contains("1000"),
        "{message}"
    );
    assert!(
        bundles.get_opt("default").await.expect("a get").is_none(),
        "the refused bundle was stored"
    );

    // Lowering it to 500 (80 % line 400): accepted; exactly the agent above it is invalidated,
    // and both are judged under the effective hash of the floor and the namespace bundle.
    let lowered = ns_spec("lower", 500.0);
    let own = policy_hash(&lowered).expect("a policy hash");
    bundle_in_force(&setup, &lowered).await;
    let effective = layered(&floor, &own);
    let high = wait_agent(&setup, "high", "GOVERNED_INVALIDATED", |a| {
        governance(a) == Some(GovernanceStatus::GovernedInvalidated)
            && policy_of(a).as_deref() == Some(effective.as_str())
    })
    .await;
    let status = high.status.unwrap();
    assert!(
        status
            .denies
            .iter()
            .any(|d| d.starts_with("[PolicyBundle/default] ")
                && d.contains("monthlyBudgetUsd 700 is above the org limit of 500")),
        "two layers: the deny names its bundle; {:?}",
        status.denies
    );
    assert!(
        !status
            .denies
            .iter()
            .any(|d| d.starts_with("[ClusterPolicyBundle/default] ")),
        "the floor allows 700: {:?}",
        status.denies
    );
    let low = governed_under(&setup, "low", GovernanceStatus::GovernedValid, &effective).await;
    assert!(low.status.unwrap().denies.is_empty());
    pod_admitted(&setup, "low-0", "low").await;
}

/// A watch of `agents` from `from` on, recording each event (kind, name, resourceVersion,
/// governance, policy hash) until aborted.
fn record_events(
    agents: Api<Agent>,
    from: String,
) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let push = move |line: String| record.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    let task = tokio::spawn(async move {
        let mut version = from;
        loop {
            let mut events = match agents
                .watch(&kube::api::WatchParams::default().timeout(60), &version)
                .await
            {
                Ok(events) => events.boxed(),
                Err(e) => {
                    push(format!("watch error: {e}"));
                    return;
                }
            };
            loop {
                let event = match events.try_next().await {
                    Ok(Some(event)) => event,
                    Ok(None) => break,
                    Err(e) => {
                        push(format!("watch error: {e}"));
                        return;
                    }
                };
                let (kind, agent) = match event {
                    WatchEvent::Added(a) => ("added", a),
                    WatchEvent::Modified(a) => ("modified", a),
                    WatchEvent::Deleted(a) => ("deleted", a),
                    WatchEvent::Bookmark(b) => {
                        version = b.metadata.resource_version;
                        continue;
                    }
                    WatchEvent::Error(e) => {
                        push(format!("watch error: {e:?}"));
                        return;
                    }
                };
                if let Some(v) = agent.resource_version() {
                    version = v;
                }
                push(format!(
                    "{kind} {} rv {} {:?} {:?}",
                    agent.name_any(),
                    agent.resource_version().unwrap_or_default(),
                    governance(&agent),
                    policy_of(&agent)
                ));
            }
        }
    });
    (task, seen)
}

/// The agents' versions now, and a watch recording every event from now on.
async fn watch_from_now(
    agents: &Api<Agent>,
) -> (
    Vec<(String, String)>,
    tokio::task::JoinHandle<()>,
    Arc<Mutex<Vec<String>>>,
) {
    let from = agents
        .list_metadata(&ListParams::default())
        .await
        .expect("list the agents")
        .metadata
        .resource_version
        .expect("a resourceVersion");
    let before = versions(agents).await;
    let (watch, seen) = record_events(agents.clone(), from);
    (before, watch, seen)
}

async fn versions(agents: &Api<Agent>) -> Vec<(String, String)> {
    let mut list: Vec<(String, String)> = agents
        .list(&ListParams::default())
        .await
        .expect("list agents")
        .items
        .iter()
        .map(|a| (a.name_any(), a.resource_version().unwrap_or_default()))
        .collect();
    list.sort();
    list
}

#[tokio::test]
async fn a_floor_change_revalidates_every_namespace_and_a_bundle_change_only_its_own() {
    let mut test = FloorTest::start().await;
    let a = test.setup("pf-nsa").await;
    let b = test.setup("pf-nsb").await;
    let floor_one = floor_in_force(&a, &floor_spec("1", 1000.0)).await;
    // A has its own bundle; B has none (the floor alone).
    let a_one = ns_spec("a-1", 900.0);
    let a_one_hash = policy_hash(&a_one).expect("a policy hash");
    bundle_in_force(&a, &a_one).await;
    for setup in [&a, &b] {
        for name in ["first", "second"] {
            create_approved(setup, name, costing(250.0)).await;
        }
    }
    let a_before = layered(&floor_one, &a_one_hash);
    for name in ["first", "second"] {
        governed_under(&a, name, GovernanceStatus::GovernedValid, &a_before).await;
        governed_under(&b, name, GovernanceStatus::GovernedValid, &floor_one).await;
    }
    let (a_versions, b_versions) = (versions(&a.agents()).await, versions(&b.agents()).await);

    // A new floor version that changes no verdict: every agent of both namespaces is written
    // again, under its namespace's new effective hash.
    let mut two = floor_spec("2", 1000.0);
    two.policy.data.extra = Some(serde_json::json!({"revision": 2}));
    let floor_two = floor_in_force(&a, &two).await;
    assert_ne!(floor_two, floor_one);
    let a_after = layered(&floor_two, &a_one_hash);
    for name in ["first", "second"] {
        governed_under(&a, name, GovernanceStatus::GovernedValid, &a_after).await;
        governed_under(&b, name, GovernanceStatus::GovernedValid, &floor_two).await;
    }
    for (setup, before) in [(&a, &a_versions), (&b, &b_versions)] {
        let after = versions(&setup.agents()).await;
        for ((name, old), (_, new)) in before.iter().zip(after.iter()) {
            assert_ne!(old, new, "{}/{name} was not written", setup.ns.name);
        }
    }

    // A change of A's bundle (no verdict changes either): A's agents are written, B's not one.
    let b_agents = b.agents();
    let (b_versions, watch, seen) = watch_from_now(&b_agents).await;
    let a_two = ns_spec("a-2", 800.0);
    let a_two_hash = policy_hash(&a_two).expect("a policy hash");
    bundle_in_force(&a, &a_two).await;
    let a_final = layered(&floor_two, &a_two_hash);
    for name in ["first", "second"] {
        governed_under(&a, name, GovernanceStatus::GovernedValid, &a_final).await;
    }
    // The bounded quiet period: nothing may reach B's agents in the 5 s after A converged.
    tokio::time::sleep(Duration::from_secs(5)).await;
    watch.abort();
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        seen.is_empty(),
        "B's agents were written after a change of A's bundle: {seen:#?}\n{}",
        b.diagnostics()
    );
    assert_eq!(versions(&b_agents).await, b_versions);
    for name in ["first", "second"] {
        let agent = b_agents.get(name).await.expect("B's agent");
        assert_eq!(judged_under(&agent).as_deref(), Some(floor_two.as_str()));
    }
}

#[tokio::test]
async fn the_floor_caps_a_namespace_total_and_the_operator_reports_it() {
    let mut test = FloorTest::start().await;
    let setup = test.setup("pf-budget").await;
    let mut spec = floor_spec("1", 1000.0);
    spec.policy.data.max_namespace_monthly_budget_usd = Some(1000.0);
    let floor = floor_in_force(&setup, &spec).await;
    create_approved(&setup, "first", costing(400.0)).await;
    create_approved(&setup, "second", costing(500.0)).await;
    for name in ["first", "second"] {
        governed_under(&setup, name, GovernanceStatus::GovernedValid, &floor).await;
    }

    // 900 approved: 200 more would make 1100 of 1000.
    create_agent(&setup, "third", costing(200.0)).await;
    approve(&setup, "third").await;
    let third = wait_agent(&setup, "third", "denied", |a| !denies(a).is_empty()).await;
    let status = third.status.unwrap();
    assert_eq!(status.governance_status, Some(GovernanceStatus::Sandbox));
    let expected = format!(
        "namespace {} would allocate 1100 of its monthly total of 1000 (900 already approved for other agents + 200 for this one)",
        setup.ns.name
    );
    assert!(
        status.denies.iter().any(|d| d.starts_with(&expected)),
        "expected a deny starting {expected:?}: {:?}",
        status.denies
    );
    // The others keep their budgets.
    for name in ["first", "second"] {
        let agent = setup.agents().get(name).await.expect("the agent");
        assert_eq!(governance(&agent), Some(GovernanceStatus::GovernedValid));
    }

    // The gauges (refreshed every 10 s): 900 allocated of 1000.
    let allocated = format!(
        "agentgov_budget_allocated_usd{{namespace=\"{}\"}}",
        setup.ns.name
    );
    let limit = format!(
        "agentgov_budget_limit_usd{{namespace=\"{}\"}}",
        setup.ns.name
    );
    let shown = wait_for(Duration::from_secs(40), || async {
        let metrics = setup.operator.metrics().await;
        (metric_value(&metrics, &allocated) == Some(900.0)
            && metric_value(&metrics, &limit) == Some(1000.0))
        .then_some(())
    })
    .await;
    if shown.is_err() {
        let metrics = setup.operator.metrics().await;
        let budget: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("agentgov_budget_"))
            .collect();
        panic!("expected {allocated} 900 and {limit} 1000; the budget series: {budget:#?}");
    }
}

/// Approvals that arrive together (a GitOps sync of several agents) are judged one after
/// another against the namespace's total: each promotion counts the budgets the ones judged
/// before it were signed with, also while the operator's cache does not show those writes yet.
/// Six agents of 60 against a total of 100: exactly one is promoted.
#[tokio::test]
async fn approvals_given_together_never_allocate_past_the_namespace_total() {
    let mut test = FloorTest::start().await;
    let setup = test.setup("pf-together").await;
    let mut spec = ns_spec("1", 1000.0);
    spec.data.max_namespace_monthly_budget_usd = Some(100.0);
    bundle_in_force(&setup, &spec).await;
    let names: Vec<String> = (0..6).map(|i| format!("together-{i}")).collect();
    for name in &names {
        create_agent(&setup, name, costing(60.0)).await;
    }
    futures::future::join_all(names.iter().map(|name| approve(&setup, name))).await;

    let mut governed = Vec::new();
    for name in &names {
        let agent = wait_agent(&setup, name, "promoted or denied", |a| {
            governance(a) == Some(GovernanceStatus::GovernedValid) || !denies(a).is_empty()
        })
        .await;
        if governance(&agent) == Some(GovernanceStatus::GovernedValid) {
            governed.push(name.clone());
        } else {
            let denied = denies(&agent);
            assert!(
                denied
                    .iter()
                    .any(|d| d.contains("of its monthly total of 100")),
                "{name} denied for another reason: {denied:?}"
            );
        }
    }
    assert_eq!(
        governed.len(),
        1,
        "60 each against a total of 100: one promotion fits, these were signed: {governed:?}"
    );
}

/// Apply the floor directly (no webhook of this test reviews it) and wait until it is in force;
/// its policy hash.
async fn floor_applied(client: &kube::Client, spec: &ClusterPolicyBundleSpec, log: &str) -> String {
    let hash = policy_hash(&spec.policy).expect("a policy hash");
    let floors: Api<ClusterPolicyBundle> = Api::all(client.clone());
    floors
        .patch(
            FLOOR,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&ClusterPolicyBundle::new(FLOOR, spec.clone())),
        )
        .await
        .expect("apply the floor");
    wait_for(WAIT, || {
        let (floors, hash) = (floors.clone(), hash.clone());
        async move {
            let status = floors.get(FLOOR).await.ok()?.status?;
            (status.active_hash.as_deref() == Some(hash.as_str())).then_some(())
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the floor {hash} never in force\n{log}"));
    hash
}

/// The write count with ONE operator watching every namespace, as the chart runs it (the tests
/// above give each namespace its own): a change of A's bundle writes A's agents and not one of
/// B's, though the operator sees both; a floor change writes both namespaces' agents.
#[tokio::test]
async fn one_operator_for_every_namespace_writes_only_where_the_policy_changed() {
    let _test = FloorTest::start().await;
    let client = agentgov_e2e::client().await;
    let a = agentgov_e2e::TestNamespace::new(&client, "pf-one-a")
        .await
        .expect("namespace A");
    let b = agentgov_e2e::TestNamespace::new(&client, "pf-one-b")
        .await
        .expect("namespace B");
    let dir = agentgov_e2e::operator::log_dir().join(format!("{}-keys", a.name));
    let keys = agentgov_e2e::operator::KeyFile::new(&dir, "key-1").expect("a key ring");
    let operator =
        agentgov_e2e::operator::Operator::start_everywhere(&a.name, &keys.path, "all", &[])
            .expect("start the operator");
    let log = || {
        operator
            .logs()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let floor_one = floor_applied(&client, &floor_spec("1", 1000.0), &log()).await;
    let a_one = ns_spec("a-1", 900.0);
    let a_one_hash = policy_hash(&a_one).expect("a policy hash");
    agentgov_e2e::apply_bundle_in_force(&a, a_one, WAIT)
        .await
        .expect("A's bundle in force");
    let (a_agents, b_agents): (Api<Agent>, Api<Agent>) = (a.api(), b.api());
    for (ns, agents) in [(&a, &a_agents), (&b, &b_agents)] {
        for name in ["first", "second"] {
            agents
                .create(&PostParams::default(), &Agent::new(name, costing(250.0)))
                .await
                .expect("create the agent");
            agentgov_e2e::approve(agents, &ns.api(), name)
                .await
                .expect("approve the agent");
        }
    }
    let valid_under = |agents: &Api<Agent>, name: &'static str, hash: String| {
        let agents = agents.clone();
        async move {
            agentgov_e2e::wait_agent(&agents, name, "GOVERNED_VALID under the hash", WAIT, |a| {
                governance(a) == Some(GovernanceStatus::GovernedValid)
                    && judged_under(a).as_deref() == Some(hash.as_str())
            })
            .await
        }
    };
    for name in ["first", "second"] {
        valid_under(&a_agents, name, layered(&floor_one, &a_one_hash))
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}", log()));
        valid_under(&b_agents, name, floor_one.clone())
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}", log()));
    }

    // A's bundle changes (no verdict changes): A's agents are written, B's not one.
    let (b_versions, watch, seen) = watch_from_now(&b_agents).await;
    let a_two = ns_spec("a-2", 800.0);
    let a_two_hash = policy_hash(&a_two).expect("a policy hash");
    agentgov_e2e::apply_bundle_in_force(&a, a_two, WAIT)
        .await
        .expect("A's new bundle in force");
    for name in ["first", "second"] {
        valid_under(&a_agents, name, layered(&floor_one, &a_two_hash))
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}", log()));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    watch.abort();
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        seen.is_empty(),
        "one operator for both: B's agents were written after a change of A's bundle: {seen:#?}"
    );
    assert_eq!(versions(&b_agents).await, b_versions);

    // The floor changes: both namespaces' agents are written, each under its new hash.
    let (a_before, b_before) = (versions(&a_agents).await, versions(&b_agents).await);
    let mut two = floor_spec("2", 1000.0);
    two.policy.data.extra = Some(serde_json::json!({"revision": 2}));
    let floor_two = floor_applied(&client, &two, &log()).await;
    for name in ["first", "second"] {
        valid_under(&a_agents, name, layered(&floor_two, &a_two_hash))
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}", log()));
        valid_under(&b_agents, name, floor_two.clone())
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}", log()));
    }
    for (agents, before) in [(&a_agents, a_before), (&b_agents, b_before)] {
        let after = versions(agents).await;
        for ((name, old), (_, new)) in before.iter().zip(after.iter()) {
            assert_ne!(old, new, "{name} was not written after the floor changed");
        }
    }
}
