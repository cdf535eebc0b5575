//! Test-only fixtures: agents, approvals, policies and key rings as plain data, and a
//! [`Context`] around a mocked API server. An [`ApiServerVerifier`] plays one [`Scenario`] (one
//! expected call sequence), hands back what it saw, and fails the test on any request it did not
//! expect (the pattern of kube-rs/controller-rs `src/fixtures.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agentgov_api::agent::{
    AgentMode, Anatomy, Containment, Economics, Memory, MemoryKind, Reasoning, RoleClass,
};
use agentgov_api::hash::spec_hash;
use agentgov_api::keyring::{KeyRingConfig, generate_ed25519};
use agentgov_api::policy::{PolicyEngine, default_bundle_spec};
use agentgov_api::policy_bundle::ApprovalsData;
use agentgov_api::promotion::{AgentPromotionSpec, Requester};
use agentgov_api::{
    Agent, AgentPromotion, AgentPromotionStatus, AgentSpec, AgentStatus, PolicyBundle,
    PolicyBundleSpec,
};
use agentgov_api::{PolicyBundleStatus, hash::policy_hash};
use http::{Method, Request, Response, StatusCode, header};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tower_test::mock::{self, Handle, SendResponse};

use crate::authz::Approvers;
use crate::context::{
    Context, GuardState, MANAGER, PolicyCache, PromotionIndex, Settings, status_limiter,
};
use crate::judge::ActivePolicy;
use crate::keys::KeyRingSource;
use crate::metrics::Metrics;

/// The namespace every fixture lives in.
pub const NAMESPACE: &str = "team-a";
/// The PolicyBundle in force (the operator's default `--bundle-name`).
pub const BUNDLE: &str = agentgov_api::policy_bundle::DEFAULT_BUNDLE_NAME;
/// The longest the verifier waits for an expected request, and a test for a reconcile.
pub const EXPECT_WITHIN: Duration = Duration::from_secs(10);
/// The operator's default `--approval-ttl`.
pub const APPROVAL_TTL: SignedDuration = SignedDuration::from_hours(168);

// --- Plain data -----------------------------------------------------------------------------------

/// A governed spec the shipped policy allows without warnings (GOVERNED_VALID).
pub fn governed_spec() -> AgentSpec {
    AgentSpec {
        description: "summarises quarterly filings".into(),
        version: "1.0.0".into(),
        role_class: RoleClass::Analysis,
        mode: AgentMode::Governed,
        anatomy: Anatomy {
            reasoning: Some(Reasoning {
                model: "small-model".into(),
                temperature: 0.2,
            }),
            inputs: vec!["filings".into()],
            actions: vec!["summarise".into()],
            memory: Some(Memory {
                kind: MemoryKind::Session,
                retention_days: None,
            }),
            capabilities: vec!["summarisation".into()],
            containment: Containment::default(),
            economics: Some(Economics {
                monthly_budget_usd: 100.0,
            }),
        },
        sandbox: None,
        source: None,
    }
}

/// A governed spec the shipped policy denies: the temperature is above the analysis limit.
pub fn too_hot_spec() -> AgentSpec {
    let mut spec = governed_spec();
    if let Some(r) = spec.anatomy.reasoning.as_mut() {
        r.temperature = 1.5;
    }
    spec
}

/// A sandbox spec with the operator's default TTL.
pub fn sandbox_spec() -> AgentSpec {
    AgentSpec {
        mode: AgentMode::Sandbox,
        ..governed_spec()
    }
}

/// The shipped bundle with another org budget limit (and so another policy hash).
pub fn policy_spec(max_monthly_budget_usd: f64) -> PolicyBundleSpec {
    let mut spec = default_bundle_spec();
    spec.data.max_monthly_budget_usd = max_monthly_budget_usd;
    spec
}

/// The shipped bundle requiring `required` distinct approvers (`data.approvals.required`).
pub fn policy_requiring(required: i32) -> PolicyBundleSpec {
    let mut spec = default_bundle_spec();
    spec.data.approvals = Some(ApprovalsData { required });
    spec
}

/// A compiled policy in force under the bundle name [`BUNDLE`].
pub fn active_policy(spec: &PolicyBundleSpec) -> ActivePolicy {
    ActivePolicy {
        name: BUNDLE.into(),
        version: spec.version.clone(),
        engine: PolicyEngine::compile(spec).expect("the bundle compiles"),
        approvals_required: spec.data.approvals_required(),
    }
}

/// A ring of fresh Ed25519 keys, `active` signing.
pub fn ring_config(active: &str, ids: &[&str]) -> KeyRingConfig {
    KeyRingConfig {
        active_key_id: Some(active.into()),
        keys: ids
            .iter()
            .map(|id| generate_ed25519(id).expect("a new key"))
            .collect(),
        revoked: vec![],
    }
}

/// A verified identity as the API server stamps it into `spec.requestedBy`: uid `uid-<name>`,
/// authenticated, in no promoter group.
pub fn requester(username: &str) -> Requester {
    Requester {
        username: username.into(),
        uid: format!("uid-{username}"),
        groups: vec!["system:authenticated".into()],
    }
}

/// An hour ago.
fn an_hour_ago() -> Time {
    Time(
        Timestamp::now()
            .checked_sub(SignedDuration::from_hours(1))
            .expect("an hour ago"),
    )
}

/// An agent as the API server returns it: namespaced, with a uid, generation 1, created an hour
/// ago, no status.
pub fn agent(name: &str, spec: AgentSpec) -> Agent {
    let mut agent = Agent::new(name, spec);
    agent.metadata.namespace = Some(NAMESPACE.into());
    agent.metadata.uid = Some(format!("uid-{name}-{}", unique()));
    agent.metadata.generation = Some(1);
    agent.metadata.creation_timestamp = Some(an_hour_ago());
    agent
}

/// An AgentPromotion `name` by `by` approving the current spec of `agent`, as the API server
/// returns it once its admission stamped `spec.requestedBy`: created an hour ago, no status.
pub fn promotion(name: &str, agent: &Agent, by: &str) -> AgentPromotion {
    let mut promotion = AgentPromotion::new(
        name,
        AgentPromotionSpec {
            agent: agent.name_any(),
            spec_hash: spec_hash(&agent.spec).expect("the spec hashes"),
            reason: Some("CHG-1234".into()),
            requested_by: Some(requester(by)),
        },
    );
    promotion.metadata.namespace = agent.namespace();
    promotion.metadata.uid = Some(format!("uid-{name}-{}", unique()));
    promotion.metadata.generation = Some(1);
    promotion.metadata.creation_timestamp = Some(an_hour_ago());
    promotion
}

/// The bundle [`BUNDLE`] with `spec` compiled and in force, as its status says after a restart.
pub fn bundle_in_force(spec: PolicyBundleSpec) -> PolicyBundle {
    let mut bundle = PolicyBundle::new(BUNDLE, spec.clone());
    bundle.metadata.namespace = Some(NAMESPACE.into());
    bundle.metadata.generation = Some(1);
    bundle.status = Some(PolicyBundleStatus {
        active_hash: Some(policy_hash(&spec).expect("the bundle hashes")),
        active_version: Some(spec.version.clone()),
        active_spec: Some(spec),
        ..Default::default()
    });
    bundle
}

fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The Prometheus text of a registry.
pub fn metrics_text(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("metrics encode");
    text
}

// --- A Context around a mocked API server -------------------------------------------------------

type ApiHandle = Handle<Request<Body>, Response<Body>>;

/// The API server's side of the mocked client.
pub struct ApiServerVerifier(ApiHandle);

/// One expected sequence of API calls, in the order a reconcile sends them (the agent's status,
/// its Event, then each AgentPromotion's status). Anything else fails the test.
pub enum Scenario {
    /// The statuses already say what the judgement says: no request at all.
    NoCalls,
    /// One status patch of this agent, then nothing.
    StatusPatch(Agent),
    /// A status patch of this agent, then one Event (events.k8s.io/v1) with this reason.
    StatusPatchThenEvent(Agent, &'static str),
    /// A status patch of this agent, then a status patch of each AgentPromotion (no Event),
    /// answered with its code.
    StatusPatchThenPromotions(Agent, Vec<(AgentPromotion, StatusCode)>),
    /// A status patch of this agent, an Event with this reason, then a status patch of each
    /// AgentPromotion, answered with its code.
    StatusPatchEventThenPromotions(Agent, &'static str, Vec<(AgentPromotion, StatusCode)>),
    /// The agent's status patch is answered with this error; nothing follows.
    StatusPatchFails(Agent, StatusCode),
}

/// What the verifier saw, for the test to assert on.
#[derive(Debug, Default)]
pub struct Calls {
    /// The agent status of the one status patch.
    pub status: Option<AgentStatus>,
    /// The Events created, as JSON.
    pub events: Vec<Value>,
    /// Each AgentPromotion status patched, by promotion name, in order.
    pub promotions: Vec<(String, AgentPromotionStatus)>,
}

impl ApiServerVerifier {
    /// Play `scenario` on a task. Await the handle (with [`finish`]) after the last reference to
    /// the Context is dropped: the verifier then also checks that no further request came.
    pub fn run(self, scenario: Scenario) -> JoinHandle<Calls> {
        tokio::spawn(async move {
            let mut handle = self.0;
            let mut calls = Calls::default();
            match scenario {
                Scenario::NoCalls => {}
                Scenario::StatusPatch(agent) => {
                    calls.status = Some(status_patch(&mut handle, &agent, StatusCode::OK).await);
                }
                Scenario::StatusPatchThenEvent(agent, reason) => {
                    calls.status = Some(status_patch(&mut handle, &agent, StatusCode::OK).await);
                    calls
                        .events
                        .push(event_create(&mut handle, &agent, reason).await);
                }
                Scenario::StatusPatchThenPromotions(agent, promotions) => {
                    calls.status = Some(status_patch(&mut handle, &agent, StatusCode::OK).await);
                    for (promotion, code) in promotions {
                        let status = promotion_status_patch(&mut handle, &promotion, code).await;
                        calls.promotions.push((promotion.name_any(), status));
                    }
                }
                Scenario::StatusPatchEventThenPromotions(agent, reason, promotions) => {
                    calls.status = Some(status_patch(&mut handle, &agent, StatusCode::OK).await);
                    calls
                        .events
                        .push(event_create(&mut handle, &agent, reason).await);
                    for (promotion, code) in promotions {
                        let status = promotion_status_patch(&mut handle, &promotion, code).await;
                        calls.promotions.push((promotion.name_any(), status));
                    }
                }
                Scenario::StatusPatchFails(agent, code) => {
                    calls.status = Some(status_patch(&mut handle, &agent, code).await);
                }
            }
            no_more_requests(&mut handle).await;
            calls
        })
    }
}

/// Wait for the verifier, passing its panic (a failed expectation) on to the test.
pub async fn finish(verifier: JoinHandle<Calls>) -> Calls {
    match timeout(EXPECT_WITHIN, verifier).await {
        Ok(Ok(calls)) => calls,
        Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Ok(Err(e)) => panic!("verifier task failed: {e}"),
        Err(_) => panic!("the verifier did not finish within {EXPECT_WITHIN:?}"),
    }
}

async fn next_request(
    handle: &mut ApiHandle,
    what: &str,
) -> (Request<Body>, SendResponse<Response<Body>>) {
    match timeout(EXPECT_WITHIN, handle.next_request()).await {
        Ok(Some(pair)) => pair,
        Ok(None) => panic!("expected {what}, but the client was dropped without sending it"),
        Err(_) => panic!("expected {what} within {EXPECT_WITHIN:?}, got no request"),
    }
}

/// Once every client is dropped the mock's channel closes; a request before that is unexpected.
async fn no_more_requests(handle: &mut ApiHandle) {
    match timeout(EXPECT_WITHIN, handle.next_request()).await {
        Ok(None) => {}
        Ok(Some((request, _))) => {
            panic!("unexpected request: {} {}", request.method(), request.uri())
        }
        Err(_) => panic!("the client was not dropped within {EXPECT_WITHIN:?}"),
    }
}

async fn json_body(request: Request<Body>) -> Value {
    let bytes = request
        .into_body()
        .collect_bytes()
        .await
        .expect("a request body");
    serde_json::from_slice(&bytes).expect("a JSON request body")
}

fn json_response(code: StatusCode, body: &impl serde::Serialize) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("JSON")))
        .expect("a response")
}

/// A `Status` failure the API server answers with.
fn failure(code: StatusCode) -> Response<Body> {
    let reason = match code {
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::CONFLICT => "Conflict",
        _ => "InternalError",
    };
    let status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "injected failure",
        "reason": reason,
        "code": code.as_u16(),
    });
    json_response(code, &status)
}

/// Check that `request` is a JSON merge patch of `path` under the operator's field manager, and
/// return its body.
async fn merge_patch(request: Request<Body>, path: &str) -> Value {
    assert_eq!(request.method(), Method::PATCH, "{}", request.uri());
    assert_eq!(request.uri().path(), path);
    let query: Vec<&str> = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .collect();
    assert!(
        query.contains(&format!("fieldManager={MANAGER}").as_str()),
        "{query:?}"
    );
    assert_eq!(
        request.headers().get(header::CONTENT_TYPE),
        Some(&header::HeaderValue::from_static(
            "application/merge-patch+json"
        ))
    );
    let patch = json_body(request).await;
    assert!(
        patch.get("spec").is_none(),
        "a status patch carries no spec"
    );
    patch
}

/// What the API server stores of a status merge patch: the fields it sets (a null removes one).
fn stored(patch: &Value) -> Value {
    let mut stored = patch["status"].clone();
    if let Some(fields) = stored.as_object_mut() {
        fields.retain(|_, v| !v.is_null());
    }
    stored
}

/// Expect `PATCH .../agents/<name>/status` as a merge patch under the operator's field manager
/// that names every status field (absent ones null); answer `code`.
async fn status_patch(handle: &mut ApiHandle, agent: &Agent, code: StatusCode) -> AgentStatus {
    let (request, send) = next_request(handle, "an agent status patch").await;
    let path = format!(
        "/apis/agentgov.dev/v1alpha1/namespaces/{}/agents/{}/status",
        agent.namespace().expect("a namespace"),
        agent.name_any()
    );
    let patch = merge_patch(request, &path).await;
    let status: AgentStatus =
        serde_json::from_value(stored(&patch)).expect("the patch carries a status");
    assert_eq!(
        patch["status"],
        status.as_merge_patch().expect("a patch"),
        "every status field is named, absent ones as null"
    );
    if code.is_success() {
        let mut patched = agent.clone();
        patched.status = Some(status.clone());
        send.send_response(json_response(code, &patched));
    } else {
        send.send_response(failure(code));
    }
    status
}

/// The fields of an AgentPromotion's status: a merge patch names each (absent ones null).
const PROMOTION_STATUS_FIELDS: [&str; 7] = [
    "outcome",
    "policyHash",
    "denies",
    "proof",
    "decidedAt",
    "observedGeneration",
    "conditions",
];

/// Expect `PATCH .../agentpromotions/<name>/status` as a merge patch under the operator's field
/// manager that names every status field; answer `code`.
async fn promotion_status_patch(
    handle: &mut ApiHandle,
    promotion: &AgentPromotion,
    code: StatusCode,
) -> AgentPromotionStatus {
    let what = format!("a status patch of AgentPromotion {}", promotion.name_any());
    let (request, send) = next_request(handle, &what).await;
    let path = format!(
        "/apis/agentgov.dev/v1alpha1/namespaces/{}/agentpromotions/{}/status",
        promotion.namespace().expect("a namespace"),
        promotion.name_any()
    );
    let patch = merge_patch(request, &path).await;
    let mut named: Vec<&str> = patch["status"]
        .as_object()
        .expect("a status object")
        .keys()
        .map(String::as_str)
        .collect();
    named.sort_unstable();
    let mut fields = PROMOTION_STATUS_FIELDS.to_vec();
    fields.sort_unstable();
    assert_eq!(
        named, fields,
        "every status field is named, absent ones as null"
    );
    let status: AgentPromotionStatus =
        serde_json::from_value(stored(&patch)).expect("the patch carries a status");
    if code.is_success() {
        let mut patched = promotion.clone();
        patched.status = Some(status.clone());
        send.send_response(json_response(code, &patched));
    } else {
        send.send_response(failure(code));
    }
    status
}

/// Expect `POST /apis/events.k8s.io/v1/namespaces/<ns>/events` about `agent` with `reason`;
/// answer with the Event as created.
async fn event_create(handle: &mut ApiHandle, agent: &Agent, reason: &str) -> Value {
    let (request, send) = next_request(handle, &format!("an Event {reason}")).await;
    assert_eq!(request.method(), Method::POST, "{}", request.uri());
    assert_eq!(
        request.uri().path(),
        format!(
            "/apis/events.k8s.io/v1/namespaces/{}/events",
            agent.namespace().expect("a namespace")
        )
    );
    let event = json_body(request).await;
    assert_eq!(event["reason"], reason, "{event}");
    assert_eq!(event["regarding"]["kind"], "Agent", "{event}");
    assert_eq!(event["regarding"]["name"], agent.name_any(), "{event}");
    assert_eq!(event["reportingController"], MANAGER, "{event}");
    send.send_response(json_response(StatusCode::CREATED, &event));
    event
}

impl Context {
    /// A Context whose client talks to the returned verifier, with `keys` as the key ring and
    /// `bundles`, `agents` and `promotions` in the (synced) caches and the promotion index.
    /// The admission guards are in place (`ctx.guards.set(Some(..))` says they are not), every
    /// approver holds `promote`, approvals wait [`APPROVAL_TTL`]. Metrics are registered in the
    /// returned registry.
    pub fn test(
        keys: &KeyRingConfig,
        bundles: &[PolicyBundle],
        agents: &[Agent],
        promotions: &[AgentPromotion],
    ) -> (Arc<Context>, ApiServerVerifier, Registry) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, NAMESPACE);
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: Some("test".into()),
        };
        let promotion_index = PromotionIndex::default();
        for promotion in promotions {
            promotion_index.insert(promotion);
        }
        // `None`: the admission guards are in place.
        let guards = GuardState::default();
        let ctx = Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            keys: Arc::new(key_source(keys)),
            agents: store(agents),
            bundles: store(bundles),
            promotions: store(promotions),
            promotion_index: Arc::new(promotion_index),
            counted: Default::default(),
            agents_synced: crate::cache::synced_for_test(),
            bundles_synced: crate::cache::synced_for_test(),
            promotions_synced: crate::cache::synced_for_test(),
            policies: PolicyCache::default(),
            guards,
            approvers: Approvers::fixed(true),
            settings: Settings {
                bundle_name: BUNDLE.into(),
                expiry: agentgov_api::expiry::ExpiryPolicy::default(),
                approval_ttl: APPROVAL_TTL,
                promotion_history: 10,
            },
            status_limiter: status_limiter(1000),
        };
        (Arc::new(ctx), ApiServerVerifier(handle), registry)
    }
}

/// A store that has seen one full list of `objects`.
fn store<K>(objects: &[K]) -> kube::runtime::reflector::Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let mut writer = Writer::<K>::default();
    writer.apply_watcher_event(&watcher::Event::Init);
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(object.clone()));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    writer.as_reader()
}

/// The key ring source reads a file, as it does from the mounted Secret.
fn key_source(config: &KeyRingConfig) -> KeyRingSource {
    let path = std::env::temp_dir().join(format!(
        "agentgov-operator-test-keyring-{}-{}.json",
        std::process::id(),
        unique()
    ));
    std::fs::write(&path, serde_json::to_vec(config).expect("JSON")).expect("write key ring");
    let source = KeyRingSource::load(&path).expect("the key ring loads");
    let _ = std::fs::remove_file(&path);
    source
}

// --- Reconcile against the mocked API server -----------------------------------------------------

mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use agentgov_api::GovernanceStatus;
    use agentgov_api::conditions::{PROMOTED, READY, find, is_true};
    use agentgov_api::keyring::KeyRing;
    use agentgov_api::promotion::{PromotionOutcome, ProofLink};
    use agentgov_api::proof::{Approver, ProofSubject, verify};
    use kube::runtime::controller::Action;
    use tokio::time::timeout;

    use super::*;
    use crate::agent_controller::{error_policy, judge, reconcile};
    use crate::error::Error;

    async fn run_reconcile(agent: &Agent, ctx: &Arc<Context>) -> crate::error::Result<Action> {
        timeout(
            EXPECT_WITHIN,
            reconcile(Arc::new(agent.clone()), ctx.clone()),
        )
        .await
        .expect("reconcile did not finish")
    }

    fn subject(agent: &Agent) -> ProofSubject<'_> {
        ProofSubject {
            namespace: NAMESPACE,
            name: agent.metadata.name.as_deref().expect("a name"),
            uid: agent.metadata.uid.as_deref().expect("a uid"),
        }
    }

    #[tokio::test]
    async fn sandbox_agent_without_status_gets_exactly_one_status_patch() {
        let keys = ring_config("k1", &["k1"]);
        let agent = agent("scratch", sandbox_spec());
        let (ctx, verifier, _registry) =
            Context::test(&keys, &[], std::slice::from_ref(&agent), &[]);
        let verifier = verifier.run(Scenario::StatusPatch(agent.clone()));

        let action = run_reconcile(&agent, &ctx).await;
        drop(ctx);
        let calls = finish(verifier).await;

        let action = action.expect("reconcile succeeds");
        let status = calls.status.expect("a status patch");
        assert_eq!(status.governance_status, Some(GovernanceStatus::Sandbox));
        assert!(status.expires_at.is_some());
        assert_eq!(status.observed_generation, Some(1));
        assert!(is_true(&status.conditions, READY), "{status:?}");
        assert!(status.proof.is_none() && status.approval.is_none());
        assert!(calls.events.is_empty() && calls.promotions.is_empty());
        // The sandbox is looked at again, well before its 72 h expiry (the resync cap).
        assert_ne!(action, Action::await_change());
    }

    #[tokio::test]
    async fn agent_whose_statuses_match_the_judgement_causes_no_api_call() {
        let keys = ring_config("k1", &["k1"]);
        let bundle = bundle_in_force(default_bundle_spec());
        let mut sandbox = agent("scratch", sandbox_spec());
        let mut governed = agent("filings", governed_spec());
        let mut approval = promotion("filings-by-alice", &governed, "alice");

        // What an earlier reconcile wrote, a little earlier: the agents' and the approval's.
        let (earlier_ctx, _, _) = Context::test(
            &keys,
            std::slice::from_ref(&bundle),
            &[],
            std::slice::from_ref(&approval),
        );
        let earlier = Timestamp::now()
            .checked_sub(SignedDuration::from_secs(30))
            .unwrap();
        let none = HashMap::new();
        sandbox.status = Some(
            judge(&earlier_ctx, &sandbox, &[], &none, earlier)
                .unwrap()
                .status,
        );
        let authorized = HashMap::from([(approval.name_any(), true)]);
        let judged = judge(
            &earlier_ctx,
            &governed,
            &[Arc::new(approval.clone())],
            &authorized,
            earlier,
        )
        .unwrap();
        assert_eq!(
            judged.status.governance_status,
            Some(GovernanceStatus::GovernedValid)
        );
        governed.status = Some(judged.status);
        approval.status = judged.promotions.get(&approval.name_any()).cloned();
        drop(earlier_ctx);

        let (ctx, verifier, registry) = Context::test(&keys, &[bundle], &[], &[approval]);
        let verifier = verifier.run(Scenario::NoCalls);
        let sandbox_action = run_reconcile(&sandbox, &ctx).await;
        let governed_action = run_reconcile(&governed, &ctx).await;
        drop(ctx);
        let calls = finish(verifier).await;

        sandbox_action.expect("sandbox reconcile succeeds");
        governed_action.expect("governed reconcile succeeds");
        assert!(calls.status.is_none() && calls.events.is_empty() && calls.promotions.is_empty());
        // An approval decided before is not a promotion attempt again.
        assert!(metrics_text(&registry).contains("promotion_attempts_total 0"));
    }

    #[tokio::test]
    async fn approved_governed_agent_gets_a_proof_an_approved_promotion_and_an_event() {
        let keys = ring_config("k1", &["k1"]);
        let policy = default_bundle_spec();
        let agent = agent("filings", governed_spec());
        let approval = promotion("filings-by-alice", &agent, "alice");
        let (ctx, verifier, registry) = Context::test(
            &keys,
            &[bundle_in_force(policy.clone())],
            std::slice::from_ref(&agent),
            std::slice::from_ref(&approval),
        );
        let verifier = verifier.run(Scenario::StatusPatchEventThenPromotions(
            agent.clone(),
            "Promoted",
            vec![(approval.clone(), StatusCode::OK)],
        ));

        let action = run_reconcile(&agent, &ctx).await;
        drop(ctx);
        let calls = finish(verifier).await;

        action.expect("reconcile succeeds");
        let status = calls.status.expect("a status patch");
        assert_eq!(
            status.governance_status,
            Some(GovernanceStatus::GovernedValid)
        );
        let proof = status.proof.clone().expect("a proof");
        assert_eq!(proof.version, 2);
        assert_eq!(proof.key_id, "k1");
        assert_eq!(proof.spec_hash, spec_hash(&agent.spec).unwrap());
        assert_eq!(proof.policy_hash, policy_hash(&policy).unwrap());
        assert_eq!(
            Some(proof.agent_uid.as_str()),
            agent.metadata.uid.as_deref()
        );
        assert_eq!(
            proof.approvers,
            vec![Approver {
                username: "alice".into(),
                uid: "uid-alice".into(),
            }]
        );
        assert_eq!(proof.promotions, vec![approval.uid().unwrap()]);
        let ring = KeyRing::from_config(&keys).unwrap();
        assert_eq!(verify(&ring, subject(&agent), &proof), Ok(()));
        assert!(is_true(&status.conditions, PROMOTED));
        let approved = status.approval.as_ref().expect("status.approval");
        assert_eq!(approved.approved_by, vec!["alice".to_string()]);
        assert_eq!(approved.spec_hash, proof.spec_hash);

        assert_eq!(calls.events[0]["type"], "Normal");
        let note = calls.events[0]["note"].as_str().unwrap();
        assert!(
            note.contains("GOVERNED_VALID") && note.contains("alice") && note.contains("k1"),
            "{note}"
        );

        let [(name, promoted)] = calls.promotions.as_slice() else {
            panic!("one promotion status patch: {:?}", calls.promotions);
        };
        assert_eq!(name, "filings-by-alice");
        assert_eq!(promoted.outcome, Some(PromotionOutcome::Approved));
        assert_eq!(
            promoted.policy_hash.as_deref(),
            Some(proof.policy_hash.as_str())
        );
        assert_eq!(
            promoted.proof,
            Some(ProofLink {
                agent_uid: proof.agent_uid.clone(),
                key_id: "k1".into(),
                signed_at: proof.signed_at.clone(),
            })
        );
        assert!(promoted.decided_at.is_some());
        assert!(is_true(&promoted.conditions, READY));
        assert!(metrics_text(&registry).contains("promotion_attempts_total 1"));
    }

    #[tokio::test]
    async fn governed_agent_without_approval_awaits_one() {
        let keys = ring_config("k1", &["k1"]);
        let agent = agent("filings", governed_spec());
        let (ctx, verifier, registry) = Context::test(
            &keys,
            &[bundle_in_force(default_bundle_spec())],
            std::slice::from_ref(&agent),
            &[],
        );
        let verifier = verifier.run(Scenario::StatusPatchThenEvent(
            agent.clone(),
            "AwaitingApproval",
        ));

        let action = run_reconcile(&agent, &ctx).await;
        drop(ctx);
        let calls = finish(verifier).await;

        action.expect("reconcile succeeds");
        let status = calls.status.expect("a status patch");
        assert_eq!(status.governance_status, Some(GovernanceStatus::Sandbox));
        assert!(status.proof.is_none());
        let hash = spec_hash(&agent.spec).unwrap();
        assert_eq!(
            status.approval.as_ref().map(|a| a.spec_hash.as_str()),
            Some(hash.as_str())
        );
        assert_eq!(
            find(&status.conditions, PROMOTED).map(|c| c.reason.as_str()),
            Some("AwaitingApproval")
        );
        let note = calls.events[0]["note"].as_str().unwrap();
        assert!(note.contains(&hash), "{note}");
        assert!(metrics_text(&registry).contains("promotion_attempts_total 0"));
    }

    #[tokio::test]
    async fn denied_governed_agent_gets_denies_an_event_a_denied_promotion_and_a_deny_metric() {
        let keys = ring_config("k1", &["k1"]);
        let agent = agent("hot", too_hot_spec());
        let approval = promotion("hot-by-alice", &agent, "alice");
        let bundle = bundle_in_force(default_bundle_spec());
        let (ctx, verifier, registry) = Context::test(
            &keys,
            &[bundle],
            std::slice::from_ref(&agent),
            std::slice::from_ref(&approval),
        );
        let verifier = verifier.run(Scenario::StatusPatchEventThenPromotions(
            agent.clone(),
            "PromotionDenied",
            vec![(approval.clone(), StatusCode::OK)],
        ));

        let action = run_reconcile(&agent, &ctx).await;
        drop(ctx);
        let calls = finish(verifier).await;

        action.expect("a deny is a successful reconcile");
        let status = calls.status.expect("a status patch");
        assert_eq!(status.governance_status, Some(GovernanceStatus::Sandbox));
        assert!(status.proof.is_none());
        assert_eq!(status.denies.len(), 1, "{:?}", status.denies);
        assert!(
            status.denies[0].contains("temperature"),
            "{:?}",
            status.denies
        );
        assert_eq!(
            find(&status.conditions, PROMOTED).map(|c| c.status.as_str()),
            Some("False")
        );
        assert_eq!(calls.events[0]["type"], "Warning");
        assert_eq!(calls.events[0]["note"], status.denies[0].as_str());
        let [(_, denied)] = calls.promotions.as_slice() else {
            panic!("one promotion status patch: {:?}", calls.promotions);
        };
        assert_eq!(denied.outcome, Some(PromotionOutcome::Denied));
        assert_eq!(denied.denies, status.denies);
        assert!(denied.proof.is_none());
        let text = metrics_text(&registry);
        assert!(
            text.contains("promotion_denies_total{reason=\"temperature\"} 1"),
            "{text}"
        );
        assert!(text.contains("promotion_attempts_total 1"), "{text}");
    }

    #[tokio::test]
    async fn a_promotion_deleted_before_its_status_is_written_is_not_an_error() {
        let keys = ring_config("k1", &["k1"]);
        let agent = agent("filings", governed_spec());
        let approval = promotion("filings-by-alice", &agent, "alice");
        let (ctx, verifier, registry) = Context::test(
            &keys,
            &[bundle_in_force(default_bundle_spec())],
            std::slice::from_ref(&agent),
            std::slice::from_ref(&approval),
        );
        let verifier = verifier.run(Scenario::StatusPatchEventThenPromotions(
            agent.clone(),
            "Promoted",
            vec![(approval, StatusCode::NOT_FOUND)],
        ));

        let action = run_reconcile(&agent, &ctx).await;
        drop(ctx);
        let calls = finish(verifier).await;

        action.expect("a promotion gone meanwhile is not a failure");
        assert_eq!(calls.promotions.len(), 1);
        assert!(!metrics_text(&registry).contains("agentgov_reconcile_errors_total{"));
    }

    #[tokio::test]
    async fn nothing_is_signed_while_the_admission_guards_are_missing() {
        let keys = ring_config("k1", &["k1"]);
        let agent = agent("filings", governed_spec());
        let approval = promotion("filings-by-alice", &agent, "alice");
        let (ctx, verifier, _registry) = Context::test(
            &keys,
            &[bundle_in_force(default_bundle_spec())],
            std::slice::from_ref(&agent),
            std::slice::from_ref(&approval),
        );
        ctx.guards.set(Some(
            "ValidatingAdmissionPolicy agentgov-promotions is missing".into(),
        ));
        // Signing postponed is no Event; the approval waits.
        let verifier = verifier.run(Scenario::StatusPatchThenPromotions(
            agent.clone(),
            vec![(approval, StatusCode::OK)],
        ));

        let action = run_reconcile(&agent, &ctx).await;
        drop(ctx);
        let calls = finish(verifier).await;

        let action = action.expect("reconcile succeeds");
        assert_ne!(action, Action::await_change(), "tried again later");
        let status = calls.status.expect("a status patch");
        assert!(status.proof.is_none());
        assert_eq!(status.governance_status, None);
        let ready = find(&status.conditions, READY).expect("Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "TrustGuardsMissing")
        );
        assert!(ready.message.contains("agentgov-promotions"), "{ready:?}");
        let [(_, pending)] = calls.promotions.as_slice() else {
            panic!("one promotion status patch: {:?}", calls.promotions);
        };
        assert_eq!(pending.outcome, Some(PromotionOutcome::Pending));
        assert!(
            pending.denies[0].contains("admission guards"),
            "{:?}",
            pending.denies
        );
    }

    #[tokio::test]
    async fn failed_status_patch_is_an_error_that_requeues_with_growing_backoff() {
        let keys = ring_config("k1", &["k1"]);
        let agent = agent("scratch", sandbox_spec());
        let (ctx, verifier, registry) =
            Context::test(&keys, &[], std::slice::from_ref(&agent), &[]);
        let verifier = verifier.run(Scenario::StatusPatchFails(
            agent.clone(),
            StatusCode::INTERNAL_SERVER_ERROR,
        ));

        let result = run_reconcile(&agent, &ctx).await;
        let actions: Vec<Action> = match result.as_ref() {
            Err(e) => (0..2)
                .map(|_| error_policy(Arc::new(agent.clone()), e, ctx.clone()))
                .collect(),
            Ok(_) => Vec::new(),
        };
        drop(ctx);
        finish(verifier).await;

        match result {
            Err(Error::Kube(kube::Error::Api(status))) => assert_eq!(status.code, 500),
            other => panic!("expected an API error, got {other:?}"),
        }
        // Per object: 1 s after the first failure, 2 s after the second.
        assert_eq!(
            actions,
            vec![
                Action::requeue(Duration::from_secs(1)),
                Action::requeue(Duration::from_secs(2))
            ]
        );
        let text = metrics_text(&registry);
        assert!(
            text.contains("agentgov_reconcile_errors_total{controller=\"agent\",error=\"kube\"} 2"),
            "{text}"
        );
    }
}
