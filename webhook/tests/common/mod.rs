//! Test fixtures: a signed governed agent, sandboxes, AdmissionReview JSON built from the files
//! in `tests/fixtures/`, a router over a [`StaticView`] with a fixed clock.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use agentgov_api::Agent;
use agentgov_api::admission::DecisionCode;
use agentgov_api::agent::{AgentSpec, AgentStatus, GovernanceStatus};
use agentgov_api::expiry::ExpiryPolicy;
use agentgov_api::hash::spec_hash;
use agentgov_api::keyring::{KeyRing, KeyRingConfig, generate_ed25519};
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::proof::{ProofSubject, sign};
use agentgov_webhook::authz::FixedAuthorizer;
use agentgov_webhook::cache::StaticView;
use agentgov_webhook::metrics::Metrics;
use agentgov_webhook::policy::ActivePolicy;
use agentgov_webhook::server::{AppState, admission_router};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tower::ServiceExt;

pub const NS: &str = "team-a";
pub const GOVERNED: &str = "invoice-auditor";
pub const SANDBOX: &str = "scratchpad";
pub const POD_UID: &str = "705ab4f5-6393-11e8-b7cc-42010a800002";
pub const AGENT_UID: &str = "b1c2d3e4-0000-4000-8000-000000000001";

pub const POD_REVIEW: &str = include_str!("../fixtures/pod-create.json");
pub const AGENT_REVIEW: &str = include_str!("../fixtures/agent-create.json");

/// The webhook's clock in tests: 2026-01-10T12:00:00Z (a constant, not parsed on every
/// review, so the load bench's clock costs what the real one does).
pub fn now() -> Timestamp {
    Timestamp::constant(1_768_046_400, 0)
}

pub fn hours_ago(hours: i64) -> Timestamp {
    now()
        .checked_sub(SignedDuration::from_hours(hours))
        .expect("in range")
}

/// The shipped promotion policy, compiled once per test binary.
/// The shipped bundle, compiled once.
pub fn policy() -> ActivePolicy {
    static POLICY: OnceLock<ActivePolicy> = OnceLock::new();
    POLICY
        .get_or_init(|| {
            ActivePolicy::compile(&default_bundle_spec()).expect("default bundle compiles")
        })
        .clone()
}

/// A signing ring with one Ed25519 key, and its config (to derive verification rings).
pub struct SigningKeys {
    pub config: KeyRingConfig,
    pub ring: KeyRing,
}

impl SigningKeys {
    pub fn new(id: &str) -> Self {
        let key = generate_ed25519(id).expect("key");
        let config = KeyRingConfig {
            active_key_id: Some(id.to_string()),
            keys: vec![key],
            revoked: vec![],
        };
        let ring = KeyRing::from_config(&config).expect("ring");
        SigningKeys { config, ring }
    }

    /// What the webhook holds: public keys only, with `revoked` on the revoked list.
    pub fn verification(&self, revoked: &[&str]) -> KeyRing {
        let mut config = self.config.verification_only().expect("verification ring");
        config.revoked = revoked.iter().map(|r| r.to_string()).collect();
        KeyRing::from_config(&config).expect("ring")
    }
}

pub fn spec_from_fixture() -> AgentSpec {
    let review: Value = serde_json::from_str(AGENT_REVIEW).expect("fixture");
    serde_json::from_value(review["request"]["object"]["spec"].clone()).expect("spec")
}

pub fn governed_spec() -> AgentSpec {
    spec_from_fixture()
}

pub fn sandbox_spec() -> AgentSpec {
    let mut spec = spec_from_fixture();
    spec.mode = agentgov_api::agent::AgentMode::Sandbox;
    spec.sandbox = Some(agentgov_api::agent::SandboxSpec {
        ttl_seconds: Some(24 * 3600),
        expires_at: None,
    });
    spec
}

pub fn agent(
    name: &str,
    spec: AgentSpec,
    status: Option<AgentStatus>,
    created: Timestamp,
) -> Agent {
    let mut agent = Agent::new(name, spec);
    agent.metadata.namespace = Some(NS.to_string());
    agent.metadata.creation_timestamp = Some(Time(created));
    agent.metadata.uid = Some(format!("uid-{name}"));
    agent.status = status;
    agent
}

/// A governed agent with a proof signed by `keys` against `policy_hash`.
pub fn signed_agent(name: &str, spec: AgentSpec, keys: &KeyRing, policy_hash: &str) -> Agent {
    let hash = spec_hash(&spec).expect("hash");
    let proof = sign(
        keys,
        ProofSubject {
            namespace: NS,
            name,
        },
        &hash,
        policy_hash,
        hours_ago(2),
    )
    .expect("sign");
    let status = AgentStatus {
        governance_status: Some(GovernanceStatus::GovernedValid),
        proof: Some(proof),
        ..AgentStatus::default()
    };
    agent(name, spec, Some(status), hours_ago(3))
}

/// Signing keys, and a synced view with the policy in force in `NS`, a valid governed agent
/// and a valid sandbox agent.
pub struct World {
    pub keys: SigningKeys,
    pub view: StaticView,
}

pub fn world() -> World {
    let keys = SigningKeys::new("k1");
    let mut view = StaticView::new(keys.verification(&[]));
    let policy = policy();
    view.add_agent(signed_agent(
        GOVERNED,
        governed_spec(),
        &keys.ring,
        policy.hash(),
    ));
    view.add_agent(agent(SANDBOX, sandbox_spec(), None, hours_ago(1)));
    view.policies.insert(NS, policy);
    World { keys, view }
}

pub struct App {
    pub router: Router,
    pub metrics: Arc<Metrics>,
    pub authz: Arc<FixedAuthorizer>,
}

pub const TEST_MAX_BODY: usize = 64 * 1024;

pub fn app_with(view: StaticView, answer: Result<bool, String>, body_timeout: Duration) -> App {
    app_with_authz(view, FixedAuthorizer::new(answer), body_timeout)
}

/// An app whose SubjectAccessReviews are answered by `authz` (answers per verb).
pub fn app_with_authz(view: StaticView, authz: FixedAuthorizer, body_timeout: Duration) -> App {
    let metrics = Arc::new(Metrics::new());
    let authz = Arc::new(authz);
    let state = AppState {
        view: Arc::new(view),
        authz: authz.clone(),
        metrics: metrics.clone(),
        expiry: ExpiryPolicy::default(),
        max_body_bytes: TEST_MAX_BODY,
        body_timeout,
        policy_slots: Arc::new(Semaphore::new(2)),
        clock: Arc::new(now),
    };
    App {
        router: admission_router(state),
        metrics,
        authz,
    }
}

pub fn app(view: StaticView) -> App {
    app_with(view, Ok(true), Duration::from_secs(5))
}

/// POST a body; the HTTP status and the JSON answer.
/// Alice's CREATE of the agent `name` with `spec`, as `app` answers it.
pub async fn create(app: &App, name: &str, spec: &AgentSpec) -> Value {
    post(
        &app.router,
        "/validate/agents",
        bytes(&agent_create(name, spec)),
    )
    .await
    .1
}

pub async fn post(router: &Router, path: &str, body: impl Into<Body>) -> (StatusCode, Value) {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(body.into())
        .expect("request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

pub fn allowed(answer: &Value) -> bool {
    answer["response"]["allowed"] == json!(true)
}

/// The decision code of an answer (from its audit annotation).
pub fn code(answer: &Value) -> String {
    answer["response"]["auditAnnotations"]["decision"]
        .as_str()
        .unwrap_or("<none>")
        .to_string()
}

pub fn message(answer: &Value) -> String {
    answer["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

pub fn warnings(answer: &Value) -> Vec<String> {
    answer["response"]["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn assert_denied(answer: &Value, expected: DecisionCode) {
    assert!(!allowed(answer), "expected a deny, got {answer:#}");
    assert_eq!(code(answer), expected.as_str(), "answer: {answer:#}");
    assert!(
        message(answer).starts_with(expected.as_str()),
        "message should start with the code: {}",
        message(answer)
    );
}

/// The pod fixture naming `agent` (or without the label when `None`).
pub fn pod_review(agent: Option<&str>) -> Value {
    let mut review: Value = serde_json::from_str(POD_REVIEW).expect("fixture");
    let labels = &mut review["request"]["object"]["metadata"]["labels"];
    match agent {
        Some(name) => labels["agentgov.dev/agent"] = json!(name),
        None => {
            if let Some(map) = labels.as_object_mut() {
                map.remove("agentgov.dev/agent");
            }
        }
    }
    review
}

/// The agent fixture as a CREATE of `spec` named `name`, by alice.
pub fn agent_create(name: &str, spec: &AgentSpec) -> Value {
    let mut review: Value = serde_json::from_str(AGENT_REVIEW).expect("fixture");
    review["request"]["name"] = json!(name);
    review["request"]["object"]["metadata"]["name"] = json!(name);
    review["request"]["object"]["spec"] = serde_json::to_value(spec).expect("spec");
    review
}

/// An UPDATE from `old` to `new` (full objects as JSON).
pub fn agent_update(name: &str, old: &Agent, new: &Agent) -> Value {
    let mut review: Value = serde_json::from_str(AGENT_REVIEW).expect("fixture");
    review["request"]["name"] = json!(name);
    review["request"]["operation"] = json!("UPDATE");
    review["request"]["options"] = json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"});
    review["request"]["object"] = serde_json::to_value(new).expect("agent");
    review["request"]["oldObject"] = serde_json::to_value(old).expect("agent");
    review
}

pub fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("json")
}
