//! Test-only fixtures: agents, approvals, policies and key rings as plain data (agent specs from
//! `examples/*.yaml`, through `agentgov_api::testing`), and a [`Context`] around a mocked API
//! server. An [`ApiServerVerifier`] plays one [`Scenario`] (one expected call sequence), hands
//! back what it saw, and fails the test on any request it did not expect (the pattern of
//! kube-rs/controller-rs `src/fixtures.rs`). The tests that use them sit beside what they test
//! (`agent_controller_tests.rs`, `judge_tests.rs`, the modules' own `mod tests`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agentgov_api::effective::{EffectivePolicy, Layer};
use agentgov_api::hash::spec_hash;
use agentgov_api::keyring::{KeyRingConfig, generate_ed25519};
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::policy_bundle::ApprovalsData;
use agentgov_api::promotion::{AgentPromotionSpec, Requester};
use agentgov_api::testing::{with_sandbox_ttl, with_temperature};
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

/// `examples/agent-governed.yaml`'s spec: the shipped policy allows it without warnings
/// (GOVERNED_VALID). A compliance agent at temperature 0.2 with a budget of 250.
pub use agentgov_api::testing::governed_spec;

/// A governed spec the shipped policy denies: the temperature is above the compliance limit.
pub fn too_hot_spec() -> AgentSpec {
    with_temperature(governed_spec(), 1.5)
}

/// `examples/agent-sandbox.yaml`'s spec without a TTL of its own: the operator's default applies.
pub fn sandbox_spec() -> AgentSpec {
    with_sandbox_ttl(agentgov_api::testing::sandbox_spec(), None)
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
    ActivePolicy::new(EffectivePolicy::single(
        Layer::compile(BUNDLE, spec).expect("the bundle compiles"),
    ))
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

/// An hour ago, in whole seconds, as the API server keeps timestamps (and as the operator's
/// caches read them back).
fn an_hour_ago() -> Time {
    let then = Timestamp::now()
        .checked_sub(SignedDuration::from_hours(1))
        .expect("an hour ago");
    Time(Timestamp::from_second(then.as_second()).expect("a whole second"))
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
            agents: Arc::new(crate::agents::Agents::of(agents.iter().cloned())),
            bundles: store(bundles),
            floors: store(&[]),
            exceptions: store(&[]),
            promotion_index: Arc::new(promotion_index),
            counted: Default::default(),
            revisions: Default::default(),
            agents_synced: crate::cache::synced(),
            bundles_synced: crate::cache::synced(),
            floors_synced: crate::cache::synced(),
            exceptions_synced: crate::cache::synced(),
            promotions_synced: crate::cache::synced(),
            network_policies: Default::default(),
            network_policies_synced: crate::cache::synced(),
            foreign_policies: Default::default(),
            foreign_policies_synced: crate::cache::synced(),
            widened: Default::default(),
            allocations: Default::default(),
            deployments: Default::default(),
            config_maps: Default::default(),
            workloads_synced: [crate::cache::synced(), crate::cache::synced()],
            policies: PolicyCache::default(),
            guards,
            webhook: Default::default(),
            approvers: Approvers::fixed(true),
            settings: Settings {
                bundle_name: BUNDLE.into(),
                expiry: agentgov_api::expiry::ExpiryPolicy::default(),
                approval_ttl: APPROVAL_TTL,
                promotion_history: 10,
                // The scenarios expect no ControllerRevision calls; `revisions_tests` plans them.
                revision_history_limit: 0,
                contain_pods: false,
                manage_workloads: false,
                bundle_keys: None,
                webhook_configuration: String::new(),
            },
            status_limiter: status_limiter(1000),
            reports: Default::default(),
            resync: Default::default(),
        };
        (Arc::new(ctx), ApiServerVerifier(handle), registry)
    }
}

/// `object` as the operator's caches hold it.
pub fn compact<K: crate::compact::Compacted>(object: K) -> crate::compact::Compact<K> {
    crate::compact::Compact::of(object).expect("a cacheable object")
}

/// A store that has seen one full list of `objects`.
pub fn store<K>(objects: &[K]) -> kube::runtime::reflector::Store<K>
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
