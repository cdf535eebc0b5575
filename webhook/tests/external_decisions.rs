//! `POST /v1/admit` through the router: for every kind of agent the answer is the decision
//! `/validate/pods` makes for a CREATE of that agent's Pod running the same images (code and
//! reason), except the Pod-only containment check; and the HTTP side (statuses, bounds,
//! metrics).
#![allow(clippy::unwrap_used)] // tests may unwrap (clippy.toml: allow-unwrap-in-tests)

mod common;

use agentgov_api::admission::DecisionCode;
use agentgov_api::runtime::RuntimeSpec;
use agentgov_api::testing::with_temperature;
use agentgov_webhook::testing::StaticView;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};
use tower::ServiceExt;

const DIGEST: &str = "sha256:4f2b9c1e0d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c";

fn approved() -> String {
    format!("registry.example/agents/invoice-auditor@{DIGEST}")
}

/// The image of the Pod fixture's container.
const FIXTURE_IMAGE: &str = "registry.example/agents/invoice-auditor:1.2.0";

/// A world to judge one agent in: the usual one, changed by `change`.
struct Case {
    name: &'static str,
    agent: &'static str,
    images: Vec<String>,
    expected: DecisionCode,
    change: fn(&mut World),
}

fn case(
    name: &'static str,
    agent: &'static str,
    expected: DecisionCode,
    change: fn(&mut World),
) -> Case {
    Case {
        name,
        agent,
        images: vec![FIXTURE_IMAGE.into()],
        expected,
        change,
    }
}

fn cases() -> Vec<Case> {
    let mut bound_ok = case("runtime approved", "bound", DecisionCode::Allow, bind);
    bound_ok.images = vec![approved()];
    vec![
        case("governed", GOVERNED, DecisionCode::Allow, |_| {}),
        case("sandbox", SANDBOX, DecisionCode::Allow, |_| {}),
        case("unknown", "nobody", DecisionCode::DenyAgentNotFound, |_| {}),
        case("no proof", GOVERNED, DecisionCode::DenyProofMissing, |w| {
            edit(w, GOVERNED, |a| {
                if let Some(status) = a.status.as_mut() {
                    status.proof = None;
                }
            })
        }),
        case(
            "spec changed",
            GOVERNED,
            DecisionCode::DenySpecHashMismatch,
            |w| edit(w, GOVERNED, |a| a.spec.version = "9.9.9".into()),
        ),
        case(
            "newer policy denies",
            "hot",
            DecisionCode::DenyPolicyHashMismatch,
            |w| {
                let spec = with_temperature(governed_spec(), 0.9);
                let other = "f".repeat(64);
                w.view
                    .add_agent(signed_agent("hot", spec, &w.keys.ring, &other));
            },
        ),
        case(
            "signer revoked",
            GOVERNED,
            DecisionCode::DenySignerRevoked,
            |w| w.view.keys.store(w.keys.verification(&["k1"])),
        ),
        case(
            "unknown signer",
            "forged",
            DecisionCode::DenySignatureInvalid,
            |w| {
                let other = SigningKeys::new("k9");
                let mut forged =
                    signed_agent("forged", governed_spec(), &other.ring, policy().hash());
                // Claim the trusted key's id: the signature does not verify under it.
                if let Some(proof) = forged.status.as_mut().and_then(|s| s.proof.as_mut()) {
                    proof.key_id = "k1".into();
                }
                w.view.add_agent(forged);
            },
        ),
        case(
            "sandbox expired",
            SANDBOX,
            DecisionCode::DenySandboxExpired,
            |w| {
                edit(w, SANDBOX, |a| {
                    a.metadata.creation_timestamp = Some(Time(hours_ago(48)))
                })
            },
        ),
        case(
            "sandbox not contained",
            SANDBOX,
            DecisionCode::DenyContainmentViolation,
            |w| {
                edit(w, SANDBOX, |a| {
                    a.spec.anatomy.containment.external_calls = true
                })
            },
        ),
        case(
            "being deleted",
            SANDBOX,
            DecisionCode::DenyAgentNotFound,
            |w| {
                edit(w, SANDBOX, |a| {
                    a.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH))
                })
            },
        ),
        case(
            "runtime not approved",
            "bound",
            DecisionCode::DenyRuntimeMismatch,
            bind,
        ),
        bound_ok,
        case(
            "caches not synced",
            GOVERNED,
            DecisionCode::DenyUnavailable,
            |w| w.view.synced = false,
        ),
    ]
}

/// Add the governed agent `bound`, signed with [`approved`] as its only image.
fn bind(w: &mut World) {
    let mut spec = governed_spec();
    spec.runtime = Some(RuntimeSpec {
        images: vec![approved()],
        ..RuntimeSpec::default()
    });
    let agent = signed_agent("bound", spec, &w.keys.ring, policy().hash());
    w.view.add_agent(agent);
}

/// Change the agent `name` of the world (a new object version, as the API server would make).
fn edit(w: &mut World, name: &str, change: impl FnOnce(&mut agentgov_api::Agent)) {
    let key = (NS.to_string(), name.to_string());
    let mut agent = w.view.agents.get(&key).map(|a| (**a).clone()).unwrap();
    change(&mut agent);
    agent.metadata.resource_version = None;
    w.view.add_agent(agent);
}

fn view_of(case: &Case) -> StaticView {
    let mut w = world();
    (case.change)(&mut w);
    w.view
}

/// The Pod CREATE of `agent` whose containers run `images` (the fixture's Pod otherwise).
fn pod_running(agent: &str, images: &[String]) -> Value {
    let mut review = pod_review(Some(agent));
    let template = review["request"]["object"]["spec"]["containers"][0].clone();
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, image)| {
            let mut c = template.clone();
            c["name"] = json!(format!("c{i}"));
            c["image"] = json!(image);
            c
        })
        .collect();
    review["request"]["object"]["spec"]["containers"] = json!(containers);
    review
}

async fn ask(app: &App, body: &Value) -> (StatusCode, Value) {
    post(&app.router, "/v1/admit", bytes(body)).await
}

#[tokio::test]
async fn every_agent_is_answered_as_its_pod_would_be() {
    for case in cases() {
        let pod = pods_answer(view_of(&case), &pod_running(case.agent, &case.images)).await;
        let app = app(view_of(&case));
        let question = json!({"namespace": NS, "agent": case.agent, "images": case.images});
        let (status, answer) = ask(&app, &question).await;
        let name = case.name;
        // Unsynced caches are no decision about the agent: a 503, which a client retries.
        let expected_status = match case.expected {
            DecisionCode::DenyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::OK,
        };
        assert_eq!(status, expected_status, "{name}: {answer}");
        assert_eq!(
            code(&pod),
            case.expected.as_str(),
            "{name}: the Pod: {pod:#}"
        );
        assert_eq!(
            answer["code"],
            json!(case.expected.as_str()),
            "{name}: {answer:#}"
        );
        assert_eq!(answer["allowed"], json!(case.expected.is_allow()), "{name}");
        assert_eq!(answer["agent"], json!(case.agent), "{name}");
        assert_eq!(answer["namespace"], json!(NS), "{name}");
        let reason = answer["message"].as_str().unwrap();
        if case.expected == DecisionCode::DenyRuntimeMismatch {
            // The same images refused; said of the images rather than of a Pod's containers.
            assert!(reason.contains("images[0] runs"), "{name}: {reason}");
            assert!(
                message(&pod).contains("spec.containers[0] (c0) runs"),
                "{name}"
            );
        } else if !case.expected.is_allow() {
            assert_eq!(
                message(&pod),
                format!("{}: {reason}", case.expected.as_str()),
                "{name}"
            );
        }
        // Counted like the Pod's decision.
        let series = if case.expected.is_allow() {
            "agent_starts_allowed_total".to_string()
        } else {
            format!(
                r#"agent_starts_denied_total{{reason="{}"}}"#,
                case.expected.as_str()
            )
        };
        assert_eq!(counter(&app, &series), 1, "{name}: {series}");
    }
}

#[tokio::test]
async fn the_answer_names_the_proof_and_status_as_judged() {
    let w = world();
    let governed = w.view.agents[&(NS.to_string(), GOVERNED.to_string())].clone();
    let proof = governed
        .status
        .as_ref()
        .and_then(|s| s.proof.clone())
        .unwrap();
    let spec_hash = proof.spec_hash.clone();
    let app = app(w.view);
    let (_, answer) = ask(&app, &json!({"namespace": NS, "agent": GOVERNED})).await;
    assert_eq!(answer["specHash"], json!(spec_hash), "{answer:#}");
    assert_eq!(
        answer["governanceStatus"],
        json!("GOVERNED_VALID"),
        "{answer:#}"
    );
    // Allowed: the approved spec (which hashes to the signed spec hash) and the proof.
    assert_eq!(
        answer["spec"],
        serde_json::to_value(&governed.spec).unwrap()
    );
    let spec: agentgov_api::AgentSpec = serde_json::from_value(answer["spec"].clone()).unwrap();
    assert_eq!(agentgov_api::hash::spec_hash(&spec).unwrap(), spec_hash);
    assert_eq!(answer["proof"], serde_json::to_value(&proof).unwrap());
    // A denied agent's proof is named too (the evidence of what was approved).
    let mut w = world();
    edit(&mut w, GOVERNED, |a| a.spec.version = "9.9.9".into());
    let (_, denied) = ask(&app_of(w), &json!({"namespace": NS, "agent": GOVERNED})).await;
    assert_eq!(denied["code"], json!("ADMISSION_DENY_SPEC_HASH_MISMATCH"));
    assert_eq!(denied["specHash"], json!(spec_hash), "{denied:#}");
    // Denied: nothing may run, so no spec or proof to run it under.
    assert!(denied.get("spec").is_none(), "{denied:#}");
    assert!(denied.get("proof").is_none(), "{denied:#}");
    // No agent, no proof or status to name.
    let (_, unknown) = ask(&app, &json!({"namespace": NS, "agent": "nobody"})).await;
    assert!(unknown.get("specHash").is_none(), "{unknown:#}");
    assert!(unknown.get("governanceStatus").is_none(), "{unknown:#}");
}

fn app_of(w: World) -> App {
    app(w.view)
}

#[tokio::test]
async fn a_pods_containment_is_not_judged_without_a_pod() {
    // A privileged container breaks the sandbox's `restricted` level: the Pod is refused, the
    // same sandbox asked about without a Pod is not (there is no Pod spec to judge).
    let mut review = pod_review(Some(SANDBOX));
    review["request"]["object"]["spec"]["containers"][0]["securityContext"]["privileged"] =
        json!(true);
    let pod = pods_answer(world().view, &review).await;
    assert_denied(&pod, DecisionCode::DenyContainmentViolation);
    let app = app(world().view);
    let (_, answer) = ask(
        &app,
        &json!({"namespace": NS, "agent": SANDBOX, "images": [FIXTURE_IMAGE]}),
    )
    .await;
    assert_eq!(answer["code"], json!("ADMISSION_ALLOW"), "{answer:#}");
}

#[tokio::test]
async fn a_bad_request_is_a_400_with_the_reason_and_counted() {
    let app = app(world().view);
    for (body, says) in [
        (
            json!({"namespace": NS, "agent": GOVERNED, "labels": {}}),
            "unknown field `labels`",
        ),
        (json!({"namespace": NS}), "missing field `agent`"),
        (
            json!({"namespace": "Team A", "agent": GOVERNED}),
            "not a namespace name",
        ),
        (
            json!({"namespace": NS, "agent": GOVERNED, "images": vec![FIXTURE_IMAGE; 65]}),
            "at most 64 images",
        ),
    ] {
        let (status, answer) = ask(&app, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer:#}");
        assert_eq!(answer["allowed"], json!(false));
        assert_eq!(answer["code"], json!("ADMISSION_DENY_BAD_REQUEST"));
        assert!(
            answer["message"].as_str().unwrap().contains(says),
            "{answer:#}"
        );
    }
    assert_eq!(
        counter(
            &app,
            r#"agent_starts_denied_total{reason="ADMISSION_DENY_BAD_REQUEST"}"#
        ),
        4
    );
    // Larger than the endpoint's bound (64 KiB), below the webhook's: 413, with an answer.
    let images = vec!["x".repeat(500); 200];
    let big = bytes(&json!({"namespace": NS, "agent": GOVERNED, "images": images}));
    let (status, answer) = post(&app.router, "/v1/admit", big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer:#}");
    assert_eq!(answer["code"], json!("ADMISSION_DENY_BAD_REQUEST"));
    assert_eq!(
        counter(
            &app,
            r#"admission_review_duration_seconds_count{kind="external"}"#
        ),
        5
    );
    // Only POST.
    let get = Request::get("/v1/admit").body(Body::empty()).unwrap();
    let response = app.router.clone().oneshot(get).await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}
