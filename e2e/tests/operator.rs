//! The operator on a real control plane: promotion with proof bundles, each seed rule's deny,
//! hot reload (stricter, looser, broken), sandbox expiry, key rotation and revocation.
//! Each test runs its own operator scoped to its own namespace.

// Test code: a panic with the value is the failure report, in helpers as in #[test]s.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use agentgov_api::agent::GovernanceStatus;
use agentgov_api::conditions::{EXPIRED, PROMOTED, is_true};
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::proof::{ProofSubject, verify};
use agentgov_api::{Agent, AgentSpec, PolicyBundle, PolicyBundleSpec};
use agentgov_e2e::admission::governance;
use agentgov_e2e::admission::{governed_spec, sandbox_spec};
use agentgov_e2e::operator::{KeyFile, Operator, metric_value};
use agentgov_e2e::{TestNamespace, client, install_crds, wait_for};
use kube::api::{Api, Patch, PatchParams, PostParams};

const WAIT: Duration = Duration::from_secs(60);

struct Setup {
    ns: TestNamespace,
    keys: KeyFile,
    operator: Operator,
}

async fn setup(prefix: &str, operator_flags: &[&str]) -> Setup {
    let client = client().await;
    install_crds(&client).await.unwrap();
    let ns = TestNamespace::new(&client, prefix).await.unwrap();
    let dir = agentgov_e2e::operator::log_dir().join(format!("{}-keys", ns.name));
    let keys = KeyFile::new(&dir, "key-1").unwrap();
    let operator = Operator::start(&ns.name, &keys.path, "a", operator_flags).unwrap();
    Setup { ns, keys, operator }
}

/// Apply a bundle that compiles and wait until the operator has put it in force.
async fn apply_bundle(ns: &TestNamespace, spec: PolicyBundleSpec) {
    agentgov_e2e::apply_bundle_in_force(ns, spec, WAIT)
        .await
        .unwrap();
}

async fn create_agent(ns: &TestNamespace, name: &str, spec: AgentSpec) {
    ns.api::<Agent>()
        .create(&PostParams::default(), &Agent::new(name, spec))
        .await
        .unwrap();
}

/// Approve the agent as it is now (the test's cluster admin holds `promote`).
async fn approve(ns: &TestNamespace, name: &str) -> agentgov_api::AgentPromotion {
    agentgov_e2e::approve(&ns.api(), &ns.api(), name)
        .await
        .unwrap()
}

/// Create a governed agent and approve it.
async fn create_approved(ns: &TestNamespace, name: &str, spec: AgentSpec) {
    create_agent(ns, name, spec).await;
    approve(ns, name).await;
}

/// Wait until the operator's log has a line containing `needle`. The operator logs a decision
/// after its status write returns, so a test that has just seen the status may be a moment early.
async fn wait_logged(setup: &Setup, needle: &str) {
    wait_for(WAIT, || async {
        setup.operator.logs().contains(needle).then_some(())
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the operator never logged {needle:?}; log:\n{}",
            setup.operator.logs()
        )
    });
}

/// Wait until the agent's status satisfies `check`; on timeout, fail with the status and logs.
async fn wait_agent(
    setup: &Setup,
    name: &str,
    what: &str,
    check: impl Fn(&Agent) -> bool,
) -> Agent {
    agentgov_e2e::wait_agent(&setup.ns.api(), name, what, WAIT, check)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\noperator log:\n{}", setup.operator.logs()))
}

fn is(status: GovernanceStatus) -> impl Fn(&Agent) -> bool {
    move |a| governance(a) == Some(status)
}

#[tokio::test]
async fn a_passing_agent_is_promoted_with_a_proof_that_verifies() {
    let setup = setup("op-promote", &[]).await;
    apply_bundle(&setup.ns, default_bundle_spec()).await;
    create_agent(&setup.ns, "auditor", governed_spec()).await;
    // Not signed until approved: it waits, and says which spec hash to approve.
    let waiting = wait_agent(&setup, "auditor", "awaiting approval", |a| {
        a.status
            .as_ref()
            .and_then(|s| s.approval.as_ref())
            .is_some_and(|ap| ap.approved_by.is_empty())
    })
    .await;
    assert_eq!(governance(&waiting), Some(GovernanceStatus::Sandbox));
    assert!(waiting.status.as_ref().unwrap().proof.is_none());
    let promotion = approve(&setup.ns, "auditor").await;
    let agent = wait_agent(
        &setup,
        "auditor",
        "GOVERNED_VALID",
        is(GovernanceStatus::GovernedValid),
    )
    .await;
    let status = agent.status.unwrap();
    let proof = status.proof.expect("a proof bundle in status");
    assert_eq!(
        proof.spec_hash,
        agentgov_api::hash::spec_hash(&agent.spec).unwrap()
    );
    assert_eq!(
        proof.policy_hash,
        agentgov_api::hash::policy_hash(&default_bundle_spec()).unwrap()
    );
    assert_eq!(proof.key_id, "key-1");
    // The proof names the approval: who (as the API server authenticated them) and which
    // AgentPromotion, and the agent object it is for.
    assert_eq!(proof.version, 2);
    let admin = promotion
        .spec
        .requested_by
        .as_ref()
        .expect("the API server stamped the requester")
        .username
        .clone();
    assert_eq!(
        proof
            .approvers
            .iter()
            .map(|a| a.username.as_str())
            .collect::<Vec<_>>(),
        vec![admin.as_str()]
    );
    assert_eq!(
        proof.promotions,
        vec![promotion.metadata.uid.clone().unwrap()]
    );
    let uid = agent.metadata.uid.clone().unwrap();
    assert_eq!(proof.agent_uid, uid);
    let verifier = setup.keys.verifier().unwrap();
    let subject = ProofSubject {
        namespace: &setup.ns.name,
        name: "auditor",
        uid: &uid,
    };
    verify(&verifier, subject, &proof).expect("the proof verifies with the public key");
    let other = ProofSubject {
        namespace: &setup.ns.name,
        name: "someone-else",
        uid: &uid,
    };
    assert!(
        verify(&verifier, other, &proof).is_err(),
        "a copied proof must not verify"
    );
    assert!(is_true(&status.conditions, PROMOTED));
    assert!(is_true(&status.conditions, "Ready"));
    assert_eq!(status.observed_generation, agent.metadata.generation);

    // The attempt is counted after the status write the wait above saw: read until it is.
    let attempted = wait_for(WAIT, || async {
        let metrics = setup.operator.metrics().await;
        (metric_value(&metrics, "promotion_attempts_total").unwrap_or(0.0) >= 1.0).then_some(())
    })
    .await;
    let metrics = setup.operator.metrics().await;
    assert!(attempted.is_ok(), "no promotion attempt counted: {metrics}");
    assert!(
        metric_value(&metrics, "policy_reload_success_total").unwrap_or(0.0) >= 1.0,
        "{metrics}"
    );
    // The revalidation summary is written once every governed agent of the namespace is judged
    // under the version in force: the bundle controller looks again every half second until then,
    // so it may follow the promotion by that much.
    let logged = wait_for(WAIT, || async {
        let logs = setup.operator.logs();
        [
            "PROMOTION_ATTEMPT",
            "PROMOTION_SUCCESS",
            "POLICY_HOTRELOAD",
            "POLICY_REVALIDATION",
        ]
        .iter()
        .all(|code| logs.contains(code))
        .then_some(())
    })
    .await;
    assert!(
        logged.is_ok(),
        "a decision code is missing from the operator's JSON logs:\n{}",
        setup.operator.logs()
    );

    // Events are the audit trail.
    let events: Api<k8s_openapi::api::events::v1::Event> = setup.ns.api();
    let found = wait_for(WAIT, || {
        let events = events.clone();
        async move {
            let list = events.list(&Default::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| e.reason.as_deref() == Some("Promoted"))
                .then_some(())
        }
    })
    .await;
    assert!(found.is_ok(), "a Promoted event on the agent");

    // A spec change is not signed again: it needs an approval of the new spec hash.
    let mut spec = agent.spec.clone();
    spec.description = "now with a new description".into();
    setup
        .ns
        .api::<Agent>()
        .patch(
            "auditor",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&Agent::new("auditor", spec.clone())),
        )
        .await
        .unwrap();
    let new_hash = agentgov_api::hash::spec_hash(&spec).unwrap();
    let invalidated = wait_agent(
        &setup,
        "auditor",
        "GOVERNED_INVALIDATED",
        is(GovernanceStatus::GovernedInvalidated),
    )
    .await;
    let denies = invalidated.status.unwrap().denies.join("; ");
    assert!(
        denies.contains("spec changed since it was approved") && denies.contains(&new_hash),
        "{denies}"
    );
    approve(&setup.ns, "auditor").await;
    wait_agent(
        &setup,
        "auditor",
        "re-signed for the approved new spec",
        |a| {
            governance(a) == Some(GovernanceStatus::GovernedValid)
                && a.status
                    .as_ref()
                    .and_then(|s| s.proof.as_ref())
                    .is_some_and(|p| p.spec_hash == new_hash)
        },
    )
    .await;
}

#[tokio::test]
async fn each_seed_rule_denies_with_its_reason() {
    let setup = setup("op-denies", &[]).await;
    apply_bundle(&setup.ns, default_bundle_spec()).await;
    let base = governed_spec();
    let mut cases: Vec<(&str, AgentSpec, &str)> = Vec::new();
    let mut s = base.clone();
    s.anatomy.reasoning = None;
    cases.push(("no-reasoning", s, "add anatomy.reasoning"));
    let mut s = base.clone();
    s.anatomy.inputs.clear();
    cases.push(("no-inputs", s, "add anatomy.inputs"));
    let mut s = base.clone();
    s.anatomy.actions.clear();
    cases.push(("no-actions", s, "add anatomy.actions"));
    let mut s = base.clone();
    s.anatomy.memory = None;
    cases.push(("no-memory", s, "add anatomy.memory"));
    let mut s = base.clone();
    s.anatomy.containment.external_calls = true;
    cases.push(("external-calls", s, "externalCalls is true"));
    let mut s = base.clone();
    s.anatomy.containment.persistent_writes = true;
    cases.push(("persistent-writes", s, "persistentWrites is true"));
    let mut s = base.clone();
    s.anatomy.capabilities.clear();
    cases.push(("no-capabilities", s, "declare at least one capability"));
    let mut s = base.clone();
    if let Some(r) = s.anatomy.reasoning.as_mut() {
        r.temperature = 0.5;
    }
    cases.push((
        "too-hot",
        s,
        "above the limit 0.3 for role class compliance",
    ));
    let mut s = base.clone();
    s.anatomy.economics = Some(agentgov_api::agent::Economics {
        monthly_budget_usd: 5000.0,
    });
    cases.push(("too-costly", s, "above the org limit"));
    // Each approved (as a real install's approver would): the operator judges the approval,
    // denies it, and counts it as a promotion attempt with the deny's code.
    for (name, spec, _) in &cases {
        create_agent(&setup.ns, name, spec.clone()).await;
        approve(&setup.ns, name).await;
    }
    for (name, _, expected) in &cases {
        // Judged against the bundle (status.policy set), not refused for want of one.
        let agent = wait_agent(&setup, name, "denied by the policy", |a| {
            a.status
                .as_ref()
                .is_some_and(|s| s.policy.is_some() && !s.denies.is_empty())
        })
        .await;
        let status = agent.status.unwrap();
        assert!(
            status.denies.iter().any(|d| d.contains(expected)),
            "{name}: expected a deny containing {expected:?}, got {:?}",
            status.denies
        );
        assert_eq!(
            status.governance_status,
            Some(GovernanceStatus::Sandbox),
            "{name} stays in the sandbox tier"
        );
        assert!(status.proof.is_none(), "{name} has no proof");
        let promoted = agentgov_api::conditions::find(&status.conditions, PROMOTED)
            .expect("Promoted condition");
        assert_eq!(promoted.status, "False");
    }
    // Counted after each status write, like the log line: wait for the last of them.
    let lines: Vec<String> = [
        "anatomy_incomplete",
        "containment",
        "capabilities",
        "temperature",
        "budget",
    ]
    .iter()
    .map(|reason| format!("promotion_denies_total{{reason=\"{reason}\"}}"))
    .collect();
    let counted = wait_for(WAIT, || async {
        let metrics = setup.operator.metrics().await;
        lines
            .iter()
            .all(|line| metric_value(&metrics, line).unwrap_or(0.0) >= 1.0)
            .then_some(())
    })
    .await;
    assert!(
        counted.is_ok(),
        "every deny reason counted: {lines:?} in\n{}",
        setup.operator.metrics().await
    );
    wait_logged(&setup, "PROMOTION_DENIED").await;
}

#[tokio::test]
async fn an_approver_who_loses_promote_no_longer_counts() {
    let setup = setup("op-actor", &["--sar-cache-ttl", "1s"]).await;
    apply_bundle(&setup.ns, default_bundle_spec()).await;
    let ns = setup.ns.name.clone();
    // alice may create approvals and holds `promote` in this namespace.
    for (name, verbs, resource) in [
        ("approver", vec!["get", "list", "create"], "agentpromotions"),
        ("promoter", vec!["promote", "get"], "agents"),
    ] {
        let role: k8s_openapi::api::rbac::v1::Role = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "rules": [{"apiGroups": ["agentgov.dev"], "resources": [resource], "verbs": verbs}],
        }))
        .unwrap();
        setup
            .ns
            .api::<k8s_openapi::api::rbac::v1::Role>()
            .create(&PostParams::default(), &role)
            .await
            .unwrap();
        let binding: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}],
        }))
        .unwrap();
        setup
            .ns
            .api::<k8s_openapi::api::rbac::v1::RoleBinding>()
            .create(&PostParams::default(), &binding)
            .await
            .unwrap();
    }
    create_agent(&setup.ns, "auditor", governed_spec()).await;
    let mut config = kube::Config::infer().await.unwrap();
    config.auth_info.impersonate = Some("alice".into());
    let alice = kube::Client::try_from(config).unwrap();
    let promotions: Api<agentgov_api::AgentPromotion> = Api::namespaced(alice, &ns);
    let approval = wait_for(WAIT, || {
        let agents = setup.ns.api::<Agent>();
        let promotions = promotions.clone();
        async move {
            agentgov_e2e::approve(&agents, &promotions, "auditor")
                .await
                .ok()
        }
    })
    .await
    .expect("alice approves once RBAC lets her");
    assert_eq!(
        approval
            .spec
            .requested_by
            .as_ref()
            .map(|r| r.username.as_str()),
        Some("alice"),
        "the API server stamped the verified requester"
    );
    let agent = wait_agent(
        &setup,
        "auditor",
        "GOVERNED_VALID",
        is(GovernanceStatus::GovernedValid),
    )
    .await;
    let proof = agent.status.unwrap().proof.unwrap();
    assert_eq!(proof.approvers[0].username, "alice");
    // alice loses `promote`: from the next judgement of the agent on, her approval no longer
    // counts (the operator asks a SubjectAccessReview itself).
    setup
        .ns
        .api::<k8s_openapi::api::rbac::v1::RoleBinding>()
        .delete("promoter", &Default::default())
        .await
        .unwrap();
    // Each change of the agent is a judgement; the first ones may still use alice's cached
    // answer (--sar-cache-ttl 1s), so poke until one does not.
    let agents = setup.ns.api::<Agent>();
    let mut poke = 0u32;
    let agent = wait_for(WAIT, || {
        poke += 1;
        let agents = agents.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let label = serde_json::json!({"metadata": {"labels": {"poke": poke.to_string()}}});
            agents
                .patch("auditor", &PatchParams::default(), &Patch::Merge(label))
                .await
                .ok()?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let agent = agents.get("auditor").await.ok()?;
            is(GovernanceStatus::GovernedInvalidated)(&agent).then_some(agent)
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "never GOVERNED_INVALIDATED after the approver lost promote\n{}",
            setup.operator.logs()
        )
    });
    let status = agent.status.unwrap();
    assert!(
        status
            .denies
            .iter()
            .any(|d| d.contains("no longer approved")),
        "{:?}",
        status.denies
    );
    // The operator writes the approval's status after the agent's.
    let approvals = setup.ns.api::<agentgov_api::AgentPromotion>();
    let name = approval.metadata.name.clone().unwrap();
    wait_for(WAIT, || async {
        let outcome = approvals.get(&name).await.ok()?.status?.outcome;
        (outcome == Some(agentgov_api::promotion::PromotionOutcome::Denied)).then_some(())
    })
    .await
    .expect("the approval is recorded Denied");
}

#[tokio::test]
async fn hot_reload_invalidates_then_restores_and_a_broken_bundle_changes_nothing() {
    let setup = setup("op-reload", &[]).await;
    apply_bundle(&setup.ns, default_bundle_spec()).await;
    create_approved(&setup.ns, "auditor", governed_spec()).await;
    wait_agent(
        &setup,
        "auditor",
        "GOVERNED_VALID",
        is(GovernanceStatus::GovernedValid),
    )
    .await;

    // Stricter: the org budget drops below the agent's 250.
    let mut strict = default_bundle_spec();
    strict.version = "1.1.0-strict".into();
    strict.data.max_monthly_budget_usd = 100.0;
    apply_bundle(&setup.ns, strict.clone()).await;
    let agent = wait_agent(
        &setup,
        "auditor",
        "GOVERNED_INVALIDATED",
        is(GovernanceStatus::GovernedInvalidated),
    )
    .await;
    let status = agent.status.unwrap();
    assert_eq!(
        status.proof.as_ref().map(|p| p.policy_hash.clone()),
        Some(agentgov_api::hash::policy_hash(&default_bundle_spec()).unwrap()),
        "an invalidated agent keeps its last proof as the record of what was approved"
    );
    assert!(
        status
            .denies
            .iter()
            .any(|d| d.contains("above the org limit of 100")),
        "{:?}",
        status.denies
    );

    // Looser again: restored and re-signed against the new policy hash.
    let mut loose = default_bundle_spec();
    loose.version = "1.2.0-loose".into();
    loose.data.max_monthly_budget_usd = 10_000.0;
    apply_bundle(&setup.ns, loose.clone()).await;
    let loose_hash = agentgov_api::hash::policy_hash(&loose).unwrap();
    let agent = wait_agent(
        &setup,
        "auditor",
        "GOVERNED_VALID again",
        is(GovernanceStatus::GovernedValid),
    )
    .await;
    assert_eq!(agent.status.unwrap().proof.unwrap().policy_hash, loose_hash);

    let bundles: Api<PolicyBundle> = setup.ns.api();
    let bundle = wait_for(WAIT, || {
        let bundles = bundles.clone();
        let loose_hash = loose_hash.clone();
        async move {
            let b = bundles.get("default").await.ok()?;
            let s = b.status.as_ref()?;
            (s.last_revalidation.as_ref()?.policy_hash == loose_hash).then_some(b)
        }
    })
    .await
    .expect("a revalidation summary for the loose policy");
    let status = bundle.status.unwrap();
    assert_eq!(status.active_hash.as_deref(), Some(loose_hash.as_str()));
    assert_eq!(
        status.history.len(),
        3,
        "three versions in the history: {:?}",
        status.history
    );
    assert_eq!(status.last_revalidation.unwrap().valid, 1);

    // Broken: a syntax error. The loose policy stays in force; nothing is invalidated.
    let mut broken = loose.clone();
    broken.version = "1.3.0-broken".into();
    broken.modules[0].rego.push_str("\nthis is not rego {{{\n");
    agentgov_e2e::apply_bundle(&setup.ns, broken).await.unwrap();
    let bundle = wait_for(WAIT, || {
        let bundles = bundles.clone();
        async move {
            let b = bundles.get("default").await.ok()?;
            let ready =
                agentgov_api::conditions::find(&b.status.as_ref()?.conditions, "Ready")?.clone();
            (ready.reason == "CompileFailed").then_some((b, ready))
        }
    })
    .await
    .expect("the broken bundle is reported");
    let (bundle, ready) = bundle;
    assert_eq!(ready.status, "False");
    assert!(
        ready.message.contains("promotion.rego"),
        "the compiler's message names the module: {}",
        ready.message
    );
    assert_eq!(
        bundle.status.unwrap().active_hash.as_deref(),
        Some(loose_hash.as_str())
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let agent = setup.ns.api::<Agent>().get("auditor").await.unwrap();
    assert_eq!(governance(&agent), Some(GovernanceStatus::GovernedValid));
    let metrics = setup.operator.metrics().await;
    assert_eq!(
        metric_value(&metrics, "policy_reload_failure_total"),
        Some(1.0),
        "{metrics}"
    );
    assert!(metric_value(&metrics, "agent_invalidation_events_total").unwrap_or(0.0) >= 1.0);
}

/// Deleting the PolicyBundle re-judges its agents at once (not at the next resync): a governed
/// agent loses its standing, with the reason, and gets it back when a bundle is applied again.
#[tokio::test]
async fn a_deleted_bundle_re_judges_its_agents_at_once() {
    let setup = setup("op-bundle-gone", &[]).await;
    apply_bundle(&setup.ns, default_bundle_spec()).await;
    create_approved(&setup.ns, "auditor", governed_spec()).await;
    wait_agent(
        &setup,
        "auditor",
        "GOVERNED_VALID",
        is(GovernanceStatus::GovernedValid),
    )
    .await;

    let bundles: Api<PolicyBundle> = setup.ns.api();
    bundles
        .delete("default", &Default::default())
        .await
        .unwrap();
    // Far below the resync (minutes): the bundle's deletion itself triggers the judgement.
    let agent = agentgov_e2e::wait_agent(
        &setup.ns.api(),
        "auditor",
        "GOVERNED_INVALIDATED after the bundle is deleted",
        Duration::from_secs(15),
        is(GovernanceStatus::GovernedInvalidated),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\noperator log:\n{}", setup.operator.logs()));
    let status = agent.status.unwrap();
    assert!(
        status
            .denies
            .iter()
            .any(|d| d.contains("no PolicyBundle named default is in force")),
        "{:?}",
        status.denies
    );

    apply_bundle(&setup.ns, default_bundle_spec()).await;
    wait_agent(
        &setup,
        "auditor",
        "GOVERNED_VALID once a bundle is in force again",
        is(GovernanceStatus::GovernedValid),
    )
    .await;
}

#[tokio::test]
async fn a_sandbox_expires_on_time() {
    let setup = setup("op-expiry", &[]).await;
    create_agent(&setup.ns, "short-lived", sandbox_spec(3)).await;
    let agent = wait_agent(
        &setup,
        "short-lived",
        "SANDBOX",
        is(GovernanceStatus::Sandbox),
    )
    .await;
    let status = agent.status.unwrap();
    let created = agent.metadata.creation_timestamp.unwrap().0;
    let expires_at = status.expires_at.unwrap().0;
    assert_eq!(expires_at, created + jiff::SignedDuration::from_secs(3));
    let agent = wait_agent(&setup, "short-lived", "expired", |a| {
        a.status
            .as_ref()
            .is_some_and(|s| is_true(&s.conditions, EXPIRED))
    })
    .await;
    let status = agent.status.unwrap();
    assert!(!is_true(&status.conditions, "Ready"));
    // Not early: the condition turned true at the expiry or after it (whether the first status
    // was written before the expiry depends on how soon the operator got to it, so it is not
    // asserted).
    let expired = status
        .conditions
        .iter()
        .find(|c| c.type_ == EXPIRED)
        .unwrap();
    assert!(
        expired.last_transition_time.0 >= expires_at,
        "Expired at {} before the expiry {expires_at}",
        expired.last_transition_time.0
    );
    wait_logged(&setup, "SANDBOX_EXPIRED").await;

    // A sandbox asking for more than the maximum is capped by the operator's clock.
    let mut far = sandbox_spec(3);
    far.sandbox = Some(agentgov_api::agent::SandboxSpec {
        ttl_seconds: None,
        expires_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2999-01-01T00:00:00Z".parse().unwrap(),
        )),
    });
    create_agent(&setup.ns, "greedy", far).await;
    let agent = wait_agent(&setup, "greedy", "SANDBOX", is(GovernanceStatus::Sandbox)).await;
    let created = agent.metadata.creation_timestamp.unwrap().0;
    assert_eq!(
        agent.status.unwrap().expires_at.unwrap().0,
        created + jiff::SignedDuration::from_hours(720)
    );
}

#[tokio::test]
async fn keys_rotate_with_overlap_and_revoke_live() {
    let mut setup = setup("op-keys", &[]).await;
    apply_bundle(&setup.ns, default_bundle_spec()).await;
    create_approved(&setup.ns, "old", governed_spec()).await;
    wait_agent(
        &setup,
        "old",
        "GOVERNED_VALID",
        is(GovernanceStatus::GovernedValid),
    )
    .await;

    setup.keys.rotate("key-2").unwrap();
    // The ring is polled (every 2s by default): wait until the operator has read the new one.
    setup
        .operator
        .wait_key_loaded("key-2", WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    create_approved(&setup.ns, "new", governed_spec()).await;
    let new = wait_agent(
        &setup,
        "new",
        "GOVERNED_VALID",
        is(GovernanceStatus::GovernedValid),
    )
    .await;
    assert_eq!(
        new.status.unwrap().proof.unwrap().key_id,
        "key-2",
        "the new key signs the next proof"
    );
    let old = setup.ns.api::<Agent>().get("old").await.unwrap();
    assert_eq!(
        old.status.unwrap().proof.unwrap().key_id,
        "key-1",
        "old proofs stay while their key is not revoked"
    );

    setup.keys.revoke("key-1").unwrap();
    let old = wait_agent(&setup, "old", "re-signed with key-2", |a| {
        a.status
            .as_ref()
            .and_then(|s| s.proof.as_ref())
            .is_some_and(|p| p.key_id == "key-2")
    })
    .await;
    let verifier = setup.keys.verifier().unwrap();
    let uid = old.metadata.uid.clone().unwrap();
    let proof = old.status.unwrap().proof.unwrap();
    verify(
        &verifier,
        ProofSubject {
            namespace: &setup.ns.name,
            name: "old",
            uid: &uid,
        },
        &proof,
    )
    .unwrap();
}

/// The operator's watches, reads and status writes share one HTTP/2 connection to the API
/// server, as client-go's do. kube's default client opened an HTTP/1.1 connection per request
/// in flight and a watch each, and kept every one (78 to 109 in a revalidation of 10,000
/// agents: BENCHMARKS.md).
#[tokio::test]
async fn the_operator_talks_to_the_api_server_over_one_connection() {
    let setup = setup("op-connections", &[]).await;
    apply_bundle(&setup.ns, default_bundle_spec()).await;
    // Judged and written together: many requests in flight at once.
    let names: Vec<String> = (0..24).map(|i| format!("worker-{i}")).collect();
    for name in &names {
        create_approved(&setup.ns, name, governed_spec()).await;
    }
    for name in &names {
        wait_agent(
            &setup,
            name,
            "GOVERNED_VALID",
            is(GovernanceStatus::GovernedValid),
        )
        .await;
    }
    let port = kube::Config::infer()
        .await
        .unwrap()
        .cluster_url
        .port_u16()
        .unwrap();
    let pid = setup.operator.pid();
    // A moment for a connection the pool is closing to go.
    wait_for(Duration::from_secs(10), || async {
        (agentgov_e2e::process::connections_to(pid, port).unwrap() == 1).then_some(())
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the operator holds {} connections to the API server (port {port}), not one",
            agentgov_e2e::process::connections_to(pid, port).unwrap()
        )
    });
}
