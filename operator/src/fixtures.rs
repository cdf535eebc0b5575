//! Test-only fixtures: agents, policies and key rings as plain data, and a [`Context`] around a
//! mocked API server. An [`ApiServerVerifier`] plays one [`Scenario`] (one expected call
//! sequence), hands back what it saw, and fails the test on any request it did not expect
//! (the pattern of kube-rs/controller-rs `src/fixtures.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agentgov_api::agent::{
    AgentMode, Anatomy, Containment, Economics, Memory, MemoryKind, Reasoning, RoleClass,
};
use agentgov_api::keyring::{KeyRingConfig, generate_ed25519};
use agentgov_api::policy::{PolicyEngine, default_bundle_spec};
use agentgov_api::{Agent, AgentSpec, AgentStatus, PolicyBundle, PolicyBundleSpec};
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

use crate::context::{Context, MANAGER, PolicyCache, Settings, operator_actor, status_limiter};
use crate::judge::ActivePolicy;
use crate::keys::KeyRingSource;
use crate::metrics::Metrics;

/// The namespace every fixture lives in.
pub const NAMESPACE: &str = "team-a";
/// The PolicyBundle in force (the operator's default `--bundle-name`).
pub const BUNDLE: &str = agentgov_api::policy_bundle::DEFAULT_BUNDLE_NAME;
/// The longest the verifier waits for an expected request, and a test for a reconcile.
pub const EXPECT_WITHIN: Duration = Duration::from_secs(10);

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

/// A compiled policy in force under the bundle name [`BUNDLE`].
pub fn active_policy(spec: &PolicyBundleSpec) -> ActivePolicy {
    ActivePolicy {
        name: BUNDLE.into(),
        version: spec.version.clone(),
        engine: PolicyEngine::compile(spec).expect("the bundle compiles"),
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

/// An agent as the API server returns it: namespaced, with a uid, generation 1, created an hour
/// ago, no status.
pub fn agent(name: &str, spec: AgentSpec) -> Agent {
    let mut agent = Agent::new(name, spec);
    agent.metadata.namespace = Some(NAMESPACE.into());
    agent.metadata.uid = Some(format!("uid-{name}-{}", unique()));
    agent.metadata.generation = Some(1);
    agent.metadata.creation_timestamp = Some(Time(
        Timestamp::now()
            .checked_sub(SignedDuration::from_hours(1))
            .expect("an hour ago"),
    ));
    agent
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

/// One expected sequence of API calls. Anything else fails the test.
pub enum Scenario {
    /// The status already says what the judgement says: no request at all.
    NoCalls,
    /// One server-side apply of this agent's status, then nothing.
    StatusApply(Agent),
    /// A server-side apply of this agent's status, then one Event (events.k8s.io/v1) with this
    /// reason, then nothing.
    StatusApplyThenEvent(Agent, &'static str),
    /// The status apply is answered with this error; nothing follows.
    StatusApplyFails(Agent, StatusCode),
}

/// What the verifier saw, for the test to assert on.
#[derive(Debug, Default)]
pub struct Calls {
    /// The status of the one status apply.
    pub status: Option<AgentStatus>,
    /// The Events created, as JSON.
    pub events: Vec<Value>,
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
                Scenario::StatusApply(agent) => {
                    calls.status = Some(status_apply(&mut handle, &agent, StatusCode::OK).await);
                }
                Scenario::StatusApplyThenEvent(agent, reason) => {
                    calls.status = Some(status_apply(&mut handle, &agent, StatusCode::OK).await);
                    calls
                        .events
                        .push(event_create(&mut handle, &agent, reason).await);
                }
                Scenario::StatusApplyFails(agent, code) => {
                    calls.status = Some(status_apply(&mut handle, &agent, code).await);
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

/// Expect `PATCH .../agents/<name>/status` as a merge patch under the operator's field manager
/// that names every status field (absent ones null); answer `code`.
async fn status_apply(handle: &mut ApiHandle, agent: &Agent, code: StatusCode) -> AgentStatus {
    let (request, send) = next_request(handle, "a status apply").await;
    assert_eq!(request.method(), Method::PATCH, "{}", request.uri());
    assert_eq!(
        request.uri().path(),
        format!(
            "/apis/agentgov.dev/v1alpha1/namespaces/{}/agents/{}/status",
            agent.namespace().expect("a namespace"),
            agent.name_any()
        )
    );
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
    // What the API server stores: the fields the patch sets (a null removes one).
    let mut stored = patch["status"].clone();
    if let Some(fields) = stored.as_object_mut() {
        fields.retain(|_, v| !v.is_null());
    }
    let status: AgentStatus = serde_json::from_value(stored).expect("the patch carries a status");
    assert_eq!(
        patch["status"],
        status.as_merge_patch().expect("a patch"),
        "every status field is named, absent ones as null"
    );
    if code.is_success() {
        let mut applied = agent.clone();
        applied.status = Some(status.clone());
        send.send_response(json_response(code, &applied));
    } else {
        let failure = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "injected failure",
            "reason": "InternalError",
            "code": code.as_u16(),
        });
        send.send_response(json_response(code, &failure));
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
    /// `bundles` and `agents` in the (synced) caches. Metrics are registered in the returned
    /// registry.
    pub fn test(
        keys: &KeyRingConfig,
        bundles: &[PolicyBundle],
        agents: &[Agent],
    ) -> (Arc<Context>, ApiServerVerifier, Registry) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, NAMESPACE);
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: Some("test".into()),
        };
        let ctx = Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            keys: Arc::new(key_source(keys)),
            agents: store(agents),
            bundles: store(bundles),
            agents_synced: crate::cache::synced_for_test(),
            bundles_synced: crate::cache::synced_for_test(),
            policies: PolicyCache::default(),
            in_force: Default::default(),
            revalidations: Default::default(),
            settings: Settings {
                bundle_name: BUNDLE.into(),
                expiry: agentgov_api::expiry::ExpiryPolicy::default(),
                actor: operator_actor(true),
                write_concurrency: 4,
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
    use std::sync::Arc;

    use agentgov_api::GovernanceStatus;
    use agentgov_api::conditions::{PROMOTED, READY, find, is_true};
    use agentgov_api::hash::spec_hash;
    use agentgov_api::keyring::KeyRing;
    use agentgov_api::proof::{ProofSubject, verify};
    use jiff::Timestamp;
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

    #[tokio::test]
    async fn sandbox_agent_without_status_gets_exactly_one_status_apply() {
        let keys = ring_config("k1", &["k1"]);
        let agent = agent("scratch", sandbox_spec());
        let (ctx, verifier, _registry) = Context::test(&keys, &[], std::slice::from_ref(&agent));
        let verifier = verifier.run(Scenario::StatusApply(agent.clone()));

        let action = run_reconcile(&agent, &ctx).await;
        drop(ctx);
        let calls = finish(verifier).await;

        let action = action.expect("reconcile succeeds");
        let status = calls.status.expect("a status apply");
        assert_eq!(status.governance_status, Some(GovernanceStatus::Sandbox));
        assert!(status.expires_at.is_some());
        assert_eq!(status.observed_generation, Some(1));
        assert!(is_true(&status.conditions, READY), "{status:?}");
        assert!(status.proof.is_none());
        assert!(calls.events.is_empty());
        // The sandbox is looked at again, well before its 72 h expiry (the resync cap).
        assert_ne!(action, Action::await_change());
    }

    #[tokio::test]
    async fn agent_whose_status_matches_the_judgement_causes_no_api_call() {
        let keys = ring_config("k1", &["k1"]);
        let mut sandbox = agent("scratch", sandbox_spec());
        let mut governed = agent("filings", governed_spec());
        let bundle = bundle_in_force(default_bundle_spec());
        let (ctx, verifier, registry) = Context::test(&keys, &[bundle], &[]);
        let verifier = verifier.run(Scenario::NoCalls);

        // What an earlier reconcile wrote, a little earlier.
        let earlier = Timestamp::now()
            .checked_sub(SignedDuration::from_secs(30))
            .unwrap();
        sandbox.status = Some(judge(&ctx, &sandbox, earlier).unwrap().status);
        governed.status = Some(judge(&ctx, &governed, earlier).unwrap().status);
        assert_eq!(
            governed.status.as_ref().unwrap().governance_status,
            Some(GovernanceStatus::GovernedValid)
        );

        let sandbox_action = run_reconcile(&sandbox, &ctx).await;
        let governed_action = run_reconcile(&governed, &ctx).await;
        drop(ctx);
        let calls = finish(verifier).await;

        sandbox_action.expect("sandbox reconcile succeeds");
        governed_action.expect("governed reconcile succeeds");
        assert!(calls.status.is_none() && calls.events.is_empty());
        // A kept proof is not a promotion attempt.
        assert!(metrics_text(&registry).contains("promotion_attempts_total 0"));
    }

    #[tokio::test]
    async fn allowed_governed_agent_gets_a_proof_then_a_promoted_event() {
        let keys = ring_config("k1", &["k1"]);
        let policy = default_bundle_spec();
        let agent = agent("filings", governed_spec());
        let (ctx, verifier, registry) = Context::test(
            &keys,
            &[bundle_in_force(policy.clone())],
            std::slice::from_ref(&agent),
        );
        let verifier = verifier.run(Scenario::StatusApplyThenEvent(agent.clone(), "Promoted"));

        let action = run_reconcile(&agent, &ctx).await;
        drop(ctx);
        let calls = finish(verifier).await;

        action.expect("reconcile succeeds");
        let status = calls.status.expect("a status apply");
        assert_eq!(
            status.governance_status,
            Some(GovernanceStatus::GovernedValid)
        );
        let proof = status.proof.expect("a proof");
        assert_eq!(proof.key_id, "k1");
        assert_eq!(proof.spec_hash, spec_hash(&agent.spec).unwrap());
        assert_eq!(proof.policy_hash, policy_hash(&policy).unwrap());
        let ring = KeyRing::from_config(&keys).unwrap();
        let subject = ProofSubject {
            namespace: NAMESPACE,
            name: "filings",
        };
        assert_eq!(verify(&ring, subject, &proof), Ok(()));
        assert!(is_true(&status.conditions, PROMOTED));
        assert_eq!(calls.events[0]["type"], "Normal");
        let note = calls.events[0]["note"].as_str().unwrap();
        assert!(
            note.contains("GOVERNED_VALID") && note.contains("k1"),
            "{note}"
        );
        assert!(metrics_text(&registry).contains("promotion_attempts_total 1"));
    }

    #[tokio::test]
    async fn denied_governed_agent_gets_denies_an_event_and_a_deny_metric() {
        let keys = ring_config("k1", &["k1"]);
        let agent = agent("hot", too_hot_spec());
        let bundle = bundle_in_force(default_bundle_spec());
        let (ctx, verifier, registry) =
            Context::test(&keys, &[bundle], std::slice::from_ref(&agent));
        let verifier = verifier.run(Scenario::StatusApplyThenEvent(
            agent.clone(),
            "PromotionDenied",
        ));

        let action = run_reconcile(&agent, &ctx).await;
        drop(ctx);
        let calls = finish(verifier).await;

        action.expect("a deny is a successful reconcile");
        let status = calls.status.expect("a status apply");
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
        let text = metrics_text(&registry);
        assert!(
            text.contains("promotion_denies_total{reason=\"temperature\"} 1"),
            "{text}"
        );
        assert!(text.contains("promotion_attempts_total 1"), "{text}");
    }

    #[tokio::test]
    async fn failed_status_apply_is_an_error_that_requeues() {
        let keys = ring_config("k1", &["k1"]);
        let agent = agent("scratch", sandbox_spec());
        let (ctx, verifier, registry) = Context::test(&keys, &[], std::slice::from_ref(&agent));
        let verifier = verifier.run(Scenario::StatusApplyFails(
            agent.clone(),
            StatusCode::INTERNAL_SERVER_ERROR,
        ));

        let result = run_reconcile(&agent, &ctx).await;
        let action = result
            .as_ref()
            .err()
            .map(|e| error_policy(Arc::new(agent.clone()), e, ctx.clone()));
        drop(ctx);
        finish(verifier).await;

        match result {
            Err(Error::Kube(kube::Error::Api(status))) => assert_eq!(status.code, 500),
            other => panic!("expected an API error, got {other:?}"),
        }
        let action = action.expect("error_policy ran");
        assert_ne!(action, Action::await_change(), "a failure is retried");
        let text = metrics_text(&registry);
        assert!(
            text.contains("agentgov_reconcile_errors_total{controller=\"agent\",error=\"kube\"} 1"),
            "{text}"
        );
    }
}
