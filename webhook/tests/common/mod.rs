//! Test fixtures: a signed governed agent and a sandbox (their specs from `examples/*.yaml`),
//! AdmissionReview JSON built from the files in `tests/fixtures/`, a router over a
//! [`StaticView`] with a fixed clock.
#![allow(dead_code)]

pub mod pki;
pub mod served;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use agentgov_api::Agent;
use agentgov_api::admission::DecisionCode;
use agentgov_api::agent::{AgentSpec, AgentStatus, GovernanceStatus};
use agentgov_api::expiry::ExpiryPolicy;
use agentgov_api::hash::spec_hash;
use agentgov_api::keyring::{KeyRing, KeyRingConfig, generate_ed25519};
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::policy_bundle::RegoModule;
use agentgov_api::proof::{Approver, Claims, ProofBundle, ProofSubject, sign, signing_payload};
use agentgov_webhook::admit_clients::AdmitClients;
use agentgov_webhook::authz::FixedAuthorizer;
use agentgov_webhook::metrics::Metrics;
use agentgov_webhook::policy::ActivePolicy;
use agentgov_webhook::server::{AppState, admission_router};
use agentgov_webhook::testing::StaticView;
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

pub const PROMOTION_UID: &str = "c4d5e6f7-0000-4000-8000-000000000002";
/// The group the [`group_policy`] names as its only promoter role.
pub const APPROVERS_GROUP: &str = "invoice-approvers";

pub const POD_REVIEW: &str = include_str!("../fixtures/pod-create.json");
pub const AGENT_REVIEW: &str = include_str!("../fixtures/agent-create.json");
pub const PROMOTION_REVIEW: &str = include_str!("../fixtures/agentpromotion-create.json");

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

/// A custom bundle whose actor rule reads the approver's groups only: an approver is one of
/// `data.promoterRoles` ([`APPROVERS_GROUP`]) by group, whatever the SubjectAccessReview said
/// (`authorizedToPromote`). It also refuses the capability `payments` (code `capabilities`).
pub const GROUP_POLICY_REGO: &str = r#"package agentgov.promotion

import rego.v1

roles := data.agentgov.limits.promoterRoles

holds_role if {
	some group in input.actor.groups
	group in roles
}

denies contains {"code": "actor_unauthorized", "message": msg} if {
	not holds_role
	msg := sprintf("%s is in none of the groups %s", [input.actor.username, concat(", ", roles)])
}

denies contains {"code": "capabilities", "message": "anatomy.capabilities may not include payments in this namespace"} if {
	"payments" in input.agent.spec.anatomy.capabilities
}

decision := {
	"allow": count(denies) == 0,
	"denies": [d | some d in denies],
	"warnings": [],
}
"#;

/// The bundle of [`GROUP_POLICY_REGO`], compiled.
pub fn group_policy() -> ActivePolicy {
    let mut spec = default_bundle_spec();
    spec.version = "groups-1".into();
    spec.modules = vec![RegoModule {
        name: "groups.rego".into(),
        rego: GROUP_POLICY_REGO.into(),
    }];
    spec.data.promoter_roles = vec![APPROVERS_GROUP.into()];
    ActivePolicy::compile(&spec).expect("the group policy compiles")
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

/// The agent specs: `examples/agent-governed.yaml` (allowed by the shipped policy) and
/// `examples/agent-sandbox.yaml` (`ttlSeconds: 86400`).
pub use agentgov_api::testing::{governed_spec, sandbox_spec};

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

/// The approver every signed fixture names.
pub fn approver() -> Approver {
    Approver {
        username: "alice".into(),
        uid: "alice-uid".into(),
    }
}

/// A proof (payload version 2) for the Agent object `name` with `uid` and `spec`, signed by
/// `keys` against `policy_hash`, approved by alice.
pub fn proof_for(
    name: &str,
    uid: &str,
    spec: &AgentSpec,
    keys: &KeyRing,
    policy_hash: &str,
) -> ProofBundle {
    let hash = spec_hash(spec).expect("hash");
    sign(
        keys,
        ProofSubject {
            namespace: NS,
            name,
            uid,
        },
        Claims {
            spec_hash: &hash,
            policy_hash,
            approvers: &[approver()],
            promotions: &[format!("promotion-of-{name}")],
            exceptions: &[],
        },
        hours_ago(2),
    )
    .expect("sign")
}

/// `proof` re-signed by `keys` in the payload layout of version 1 (no uid, no approvals), as
/// the operator signed before approvals existed: its signature verifies.
pub fn v1_proof(name: &str, proof: &ProofBundle, keys: &KeyRing) -> ProofBundle {
    let mut v1 = ProofBundle {
        version: 1,
        agent_uid: String::new(),
        approvers: Vec::new(),
        promotions: Vec::new(),
        exceptions: Vec::new(),
        signature: String::new(),
        ..proof.clone()
    };
    let subject = ProofSubject {
        namespace: NS,
        name,
        uid: "",
    };
    let payload = signing_payload(subject, &v1).expect("payload");
    let (_, _, signature) = keys.sign(&payload).expect("sign");
    v1.signature = signature;
    v1
}

/// A governed agent (uid `uid-<name>`) with a proof signed by `keys` against `policy_hash`,
/// approved by alice.
pub fn signed_agent(name: &str, spec: AgentSpec, keys: &KeyRing, policy_hash: &str) -> Agent {
    signed_agent_uid(name, &format!("uid-{name}"), spec, keys, policy_hash)
}

/// [`signed_agent`] for the Agent object with `uid`.
pub fn signed_agent_uid(
    name: &str,
    uid: &str,
    spec: AgentSpec,
    keys: &KeyRing,
    policy_hash: &str,
) -> Agent {
    let proof = proof_for(name, uid, &spec, keys, policy_hash);
    let status = AgentStatus {
        governance_status: Some(GovernanceStatus::GovernedValid),
        proof: Some(proof),
        ..AgentStatus::default()
    };
    let mut agent = agent(name, spec, Some(status), hours_ago(3));
    agent.metadata.uid = Some(uid.to_string());
    agent
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

impl World {
    /// A governed agent `name` with the example spec, signed by this world's key against the
    /// shipped policy, approved by alice (not yet in the view).
    pub fn signed(&self, name: &str) -> Agent {
        signed_agent(name, governed_spec(), &self.keys.ring, policy().hash())
    }
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

/// An app whose SubjectAccessReviews are answered by `authz` (answers per verb). Any client
/// may ask `POST /v1/admit` (`--admit-clients '*'`): these tests send no certificate.
pub fn app_with_authz(view: StaticView, authz: FixedAuthorizer, body_timeout: Duration) -> App {
    app_full(view, authz, body_timeout, AdmitClients::any())
}

/// An app that lets only `clients` ask `POST /v1/admit`.
pub fn app_allowing(view: StaticView, clients: AdmitClients) -> App {
    app_full(
        view,
        FixedAuthorizer::new(Ok(true)),
        Duration::from_secs(5),
        clients,
    )
}

fn app_full(
    view: StaticView,
    authz: FixedAuthorizer,
    body_timeout: Duration,
    clients: AdmitClients,
) -> App {
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
        admit_clients: Arc::new(clients),
        bundle_keys: None,
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

/// Alice's UPDATE of the agent `name` from `old` to `new`, as `app` answers it.
pub async fn update(app: &App, name: &str, old: &Agent, new: &Agent) -> Value {
    post(
        &app.router,
        "/validate/agents",
        bytes(&agent_update(name, old, new)),
    )
    .await
    .1
}

/// POST a body; the HTTP status and the JSON answer.
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

/// `new` (a Pod review) as an UPDATE of the Pod `old` (another Pod review) was.
pub fn pod_update(mut new: Value, mut old: Value) -> Value {
    new["request"]["operation"] = json!("UPDATE");
    new["request"]["oldObject"] = old["request"]["object"].take();
    new
}

/// The answer of `/validate/pods` to `review`, with `view` as the webhook's caches.
pub async fn pods_answer(view: StaticView, review: &Value) -> Value {
    let app = app(view);
    let (_, answer) = post(&app.router, "/validate/pods", bytes(review)).await;
    answer
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

/// Alice's CREATE of an AgentPromotion approving `spec_hash` of the agent `agent`.
pub fn promotion_create(agent: &str, spec_hash: &str) -> Value {
    let mut review: Value = serde_json::from_str(PROMOTION_REVIEW).expect("fixture");
    review["request"]["object"]["spec"]["agent"] = json!(agent);
    review["request"]["object"]["spec"]["specHash"] = json!(spec_hash);
    review
}

/// How many promotions `app` refused with the policy's deny code `reason`.
pub fn promotion_denies(app: &App, reason: &str) -> u64 {
    counter(
        app,
        &format!(r#"promotion_denies_total{{reason="{reason}"}}"#),
    )
}

/// The value of the series `series` (name and labels, exactly as exposed) in `app`'s metrics;
/// 0 when it is not exposed.
pub fn counter(app: &App, series: &str) -> u64 {
    let text = app.metrics.encode().expect("metrics");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |value| value.trim().parse().expect("a counter value"))
}

impl served::Served {
    /// The admission router over `view`, any client allowed to ask `POST /v1/admit`; its
    /// metrics are returned beside.
    pub async fn webhook(name: &str, view: StaticView) -> (served::Served, Arc<Metrics>) {
        served::Served::allowing(name, view, AdmitClients::any()).await
    }

    /// The admission router over `view`, `clients` allowed to ask `POST /v1/admit`.
    pub async fn allowing(
        name: &str,
        view: StaticView,
        clients: AdmitClients,
    ) -> (served::Served, Arc<Metrics>) {
        let app = app_allowing(view, clients);
        (served::Served::router(name, app.router).await, app.metrics)
    }
}
