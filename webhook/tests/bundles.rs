//! `POST /validate/policybundles`: a PolicyBundle whose Rego does not compile is refused at
//! `kubectl apply` with the compiler's message (the module and the line); a metadata-only update
//! passes without compiling.
#![allow(clippy::unwrap_used)] // tests may unwrap (clippy.toml: allow-unwrap-in-tests)

mod common;

use agentgov_api::admission::DecisionCode;
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::policy_bundle::{PolicyBundleSpec, RegoModule};
use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};

const PATH: &str = "/validate/policybundles";
const REVIEW_UID: &str = "e5f6a7b8-0000-4000-8000-000000000003";

/// A module that does not compile: its third line is not Rego.
const BROKEN: &str = "package agentgov.promotion\n\nthis is not rego {\n";

/// The bundle `default` in `NS` with `spec`, as the API server sends it.
fn bundle(spec: &PolicyBundleSpec) -> Value {
    json!({
        "apiVersion": "agentgov.dev/v1alpha1",
        "kind": "PolicyBundle",
        "metadata": {
            "name": "default",
            "namespace": NS,
            "uid": "f0f0f0f0-1111-4222-8333-444455556666",
            "generation": 1,
            "creationTimestamp": "2026-01-10T00:00:00Z"
        },
        "spec": spec,
    })
}

/// An AdmissionReview of `operation` on the bundle (the agent fixture's envelope, by alice).
fn bundle_review(operation: &str, old: Option<&PolicyBundleSpec>, new: &PolicyBundleSpec) -> Value {
    let mut review: Value = serde_json::from_str(AGENT_REVIEW).unwrap();
    let request = &mut review["request"];
    request["uid"] = json!(REVIEW_UID);
    let kind = json!({"group": "agentgov.dev", "version": "v1alpha1", "kind": "PolicyBundle"});
    let resource =
        json!({"group": "agentgov.dev", "version": "v1alpha1", "resource": "policybundles"});
    request["kind"] = kind.clone();
    request["requestKind"] = kind;
    request["resource"] = resource.clone();
    request["requestResource"] = resource;
    request["name"] = json!("default");
    request["operation"] = json!(operation);
    request["object"] = bundle(new);
    request["oldObject"] = old.map_or(Value::Null, bundle);
    if operation == "UPDATE" {
        request["options"] = json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"});
    }
    review
}

/// The shipped bundle with a module that does not compile added.
fn broken() -> PolicyBundleSpec {
    let mut spec = default_bundle_spec();
    spec.version = "1.0.1-broken".into();
    spec.modules.push(RegoModule {
        name: "broken.rego".into(),
        rego: BROKEN.into(),
    });
    spec
}

async fn send(app: &App, review: &Value) -> Value {
    let (status, answer) = post(&app.router, PATH, bytes(review)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["response"]["uid"], json!(REVIEW_UID), "{answer:#}");
    answer
}

#[tokio::test]
async fn a_bundle_that_compiles_passes() {
    let app = app(world().view);
    let shipped = default_bundle_spec();
    let answer = send(&app, &bundle_review("CREATE", None, &shipped)).await;
    assert!(allowed(&answer), "{answer:#}");
    let mut tighter = shipped.clone();
    tighter.version = "1.1.0".into();
    tighter.data.max_monthly_budget_usd = 100.0;
    let answer = send(&app, &bundle_review("UPDATE", Some(&shipped), &tighter)).await;
    assert!(allowed(&answer), "{answer:#}");
    assert_eq!(app.authz.calls(), 0);
}

#[tokio::test]
async fn a_bundle_that_does_not_compile_is_refused_naming_the_module_and_line() {
    let app = app(world().view);
    for review in [
        bundle_review("CREATE", None, &broken()),
        bundle_review("UPDATE", Some(&default_bundle_spec()), &broken()),
    ] {
        let answer = send(&app, &review).await;
        assert_denied(&answer, DecisionCode::DenyBundleInvalid);
        let text = message(&answer);
        assert!(text.contains("broken.rego:3"), "{text}");
        assert!(text.contains("team-a/default"), "{text}");
        assert!(text.contains("1.0.1-broken"), "{text}");
    }
    assert_eq!(counter(&app, "policy_bundles_refused_total"), 2);
    // A bundle is no agent start.
    assert_eq!(
        counter(
            &app,
            r#"agent_starts_denied_total{reason="ADMISSION_DENY_BUNDLE_INVALID"}"#
        ),
        0
    );
}

#[tokio::test]
async fn a_metadata_only_update_passes_without_compiling() {
    // Old and new spec equal, and broken: were it compiled, it would be refused.
    let app = app(world().view);
    let mut review = bundle_review("UPDATE", Some(&broken()), &broken());
    review["request"]["object"]["metadata"]["labels"] = json!({"owner": "platform"});
    let answer = send(&app, &review).await;
    assert!(allowed(&answer), "{answer:#}");
    // A spec change in the same update is compiled.
    let mut changed = broken();
    changed.version = "1.0.2-broken".into();
    let answer = send(&app, &bundle_review("UPDATE", Some(&broken()), &changed)).await;
    assert_denied(&answer, DecisionCode::DenyBundleInvalid);
}

#[tokio::test]
async fn delete_and_subresources_pass() {
    let app = app(world().view);
    let mut delete = bundle_review("DELETE", Some(&broken()), &broken());
    delete["request"]["object"] = Value::Null;
    let answer = send(&app, &delete).await;
    assert!(allowed(&answer), "{answer:#}");
    let mut status = bundle_review("UPDATE", Some(&default_bundle_spec()), &broken());
    status["request"]["subResource"] = json!("status");
    let answer = send(&app, &status).await;
    assert!(allowed(&answer), "{answer:#}");
}

#[tokio::test]
async fn other_kinds_are_bad_requests() {
    let app = app(world().view);
    let (_, answer) = post(
        &app.router,
        PATH,
        bytes(&agent_create("auditor-2", &governed_spec())),
    )
    .await;
    assert_denied(&answer, DecisionCode::DenyBadRequest);
    assert!(message(&answer).contains("PolicyBundle"), "{answer:#}");
}

/// `--require-signed-bundles`: the decision on `spec` with the public half of a policy-signing
/// ring holding `policy-1` (whose full ring signs in `signed`).
async fn with_signatures_required(
    review: &Value,
    ring: &agentgov_api::keyring::KeyRingConfig,
) -> agentgov_webhook::decision::Decision {
    let public =
        agentgov_api::keyring::KeyRing::from_config(&ring.verification_only().unwrap()).unwrap();
    let keys = agentgov_webhook::keys::Keys::new(public);
    let slots = tokio::sync::Semaphore::new(1);
    agentgov_webhook::admit::review_bundle(&bytes(review), &slots, Some(&keys), None)
        .await
        .decision
}

#[tokio::test]
async fn with_signatures_required_an_unsigned_or_badly_signed_bundle_is_refused_naming_the_key() {
    use agentgov_api::bundle_signature::sign_bundle;
    use agentgov_api::keyring::{KeyRing, KeyRingConfig, generate_ed25519};
    let ring = |id: &str| KeyRingConfig {
        active_key_id: Some(id.into()),
        keys: vec![generate_ed25519(id).unwrap()],
        revoked: vec![],
    };
    let trusted = ring("policy-1");
    let sign = |config: &KeyRingConfig, spec: &PolicyBundleSpec| {
        sign_bundle(&KeyRing::from_config(config).unwrap(), spec).unwrap()
    };
    let signed = sign(&trusted, &default_bundle_spec());

    let decision =
        with_signatures_required(&bundle_review("CREATE", None, &signed), &trusted).await;
    assert_eq!(decision.code, DecisionCode::Allow, "{}", decision.reason);

    let unsigned = default_bundle_spec();
    let decision =
        with_signatures_required(&bundle_review("CREATE", None, &unsigned), &trusted).await;
    assert_eq!(decision.code, DecisionCode::DenyBundleUnsigned);
    assert!(
        decision.reason.contains("not signed"),
        "{}",
        decision.reason
    );
    assert!(
        decision.reason.contains("team-a/default"),
        "{}",
        decision.reason
    );

    let mut edited = signed.clone();
    edited.data.max_monthly_budget_usd = 100_000.0;
    let decision =
        with_signatures_required(&bundle_review("UPDATE", Some(&signed), &edited), &trusted).await;
    assert_eq!(decision.code, DecisionCode::DenyBundleUnsigned);
    assert!(
        decision.reason.contains("key policy-1"),
        "{}",
        decision.reason
    );

    let by_rogue = sign(&ring("rogue"), &default_bundle_spec());
    let decision =
        with_signatures_required(&bundle_review("CREATE", None, &by_rogue), &trusted).await;
    assert_eq!(decision.code, DecisionCode::DenyBundleUnsigned);
    assert!(decision.reason.contains("key rogue"), "{}", decision.reason);

    // Without the flag, an unsigned bundle passes as before (the HTTP path: no keys).
    let app = app(world().view);
    let answer = send(&app, &bundle_review("CREATE", None, &unsigned)).await;
    assert!(allowed(&answer), "{answer:#}");
}
