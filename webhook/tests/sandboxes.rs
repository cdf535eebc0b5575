//! `POST /validate/sandboxes` through the axum router (no TLS, no cluster): an agent-sandbox
//! Sandbox labelled for an agent is judged as a Pod CREATE of its pod template, with the Pod
//! path's codes and counters; what names no agent, and updates that change neither the label
//! nor the template, pass.
#![allow(clippy::unwrap_used)] // tests may unwrap (clippy.toml: allow-unwrap-in-tests)

mod common;

use agentgov_api::admission::DecisionCode;
use agentgov_api::agent::GovernanceStatus;
use agentgov_api::runtime::RuntimeSpec;
use agentgov_webhook::testing::StaticView;
use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};

const SANDBOX_REVIEW: &str = include_str!("fixtures/sandbox-create.json");
const PATH: &str = "/validate/sandboxes";
const SANDBOX_UID: &str = "8d1e2f3a-0000-4000-8000-00000000000a";
const DIGEST: &str = "sha256:4f2b9c1e0d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c";

/// The fixture with the agent label on the Sandbox and on its pod template as given (absent
/// for `None`).
fn sandbox_review(on_sandbox: Option<&str>, on_template: Option<&str>) -> Value {
    let mut review: Value = serde_json::from_str(SANDBOX_REVIEW).unwrap();
    for (labels, agent) in [
        ("/request/object/metadata/labels", on_sandbox),
        (
            "/request/object/spec/podTemplate/metadata/labels",
            on_template,
        ),
    ] {
        let labels = review.pointer_mut(labels).unwrap();
        match agent {
            Some(agent) => labels["agentgov.dev/agent"] = json!(agent),
            None => {
                labels.as_object_mut().unwrap().remove("agentgov.dev/agent");
            }
        }
    }
    review
}

/// The fixture for `agent` (on both), its container running `image`.
fn running(agent: &str, image: &str) -> Value {
    let mut review = sandbox_review(Some(agent), Some(agent));
    review["request"]["object"]["spec"]["podTemplate"]["spec"]["containers"][0]["image"] =
        json!(image);
    review
}

async fn answer(view: StaticView, review: &Value) -> Value {
    let app = app(view);
    let (status, answer) = post(&app.router, PATH, bytes(review)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["response"]["uid"], json!(SANDBOX_UID));
    answer
}

/// An UPDATE from `old` to `new` (two reviews of the fixture).
fn update(mut new: Value, mut old: Value) -> Value {
    new["request"]["operation"] = json!("UPDATE");
    new["request"]["oldObject"] = old["request"]["object"].take();
    new
}

#[tokio::test]
async fn a_sandbox_of_a_valid_agent_is_admitted_and_counted() {
    let app = app(world().view);
    let (_, governed) = post(
        &app.router,
        PATH,
        bytes(&sandbox_review(Some(GOVERNED), Some(GOVERNED))),
    )
    .await;
    assert!(allowed(&governed), "{governed:#}");
    assert_eq!(code(&governed), "ADMISSION_ALLOW");
    let (_, sandbox) = post(
        &app.router,
        PATH,
        bytes(&sandbox_review(Some(SANDBOX), Some(SANDBOX))),
    )
    .await;
    assert!(allowed(&sandbox), "{sandbox:#}");
    assert_eq!(counter(&app, "agent_starts_allowed_total"), 2);
    assert_eq!(
        counter(
            &app,
            r#"admission_review_duration_seconds_count{kind="sandbox"}"#
        ),
        2
    );
}

#[tokio::test]
async fn a_sandbox_of_an_invalid_agent_is_refused_with_its_code() {
    let w = world();
    let mut withdrawn = w.signed("withdrawn");
    if let Some(status) = withdrawn.status.as_mut() {
        status.governance_status = Some(GovernanceStatus::GovernedInvalidated);
        status.denies = vec!["the agent is no longer approved".into()];
    }
    let mut edited = w.signed("edited");
    edited.spec.anatomy.capabilities.push("payments".into());
    let expired = agent("expired", sandbox_spec(), None, hours_ago(25));
    let mut view = w.view;
    for agent in [withdrawn, edited, expired] {
        view.add_agent(agent);
    }
    let app = app(view);
    let cases = [
        ("nobody", DecisionCode::DenyAgentNotFound),
        ("withdrawn", DecisionCode::DenyProofMissing),
        ("edited", DecisionCode::DenySpecHashMismatch),
        ("expired", DecisionCode::DenySandboxExpired),
    ];
    for (agent, expected) in cases {
        let (_, answer) = post(
            &app.router,
            PATH,
            bytes(&sandbox_review(Some(agent), Some(agent))),
        )
        .await;
        assert_denied(&answer, expected);
        assert!(
            message(&answer).contains(
                "Sandbox team-a/invoice-auditor-sandbox, judged as the Pod of its spec.podTemplate: "
            ),
            "{answer:#}"
        );
        let denied = format!(
            r#"agent_starts_denied_total{{reason="{}"}}"#,
            expected.as_str()
        );
        assert_eq!(counter(&app, &denied), 1, "{denied}");
    }
}

#[tokio::test]
async fn the_pod_template_is_held_to_the_agents_containment() {
    let mut review = sandbox_review(None, Some(SANDBOX));
    review["request"]["object"]["spec"]["podTemplate"]["spec"]["volumes"] =
        json!([{"name": "host", "hostPath": {"path": "/etc"}}]);
    let denied = answer(world().view, &review).await;
    assert_denied(&denied, DecisionCode::DenyContainmentViolation);
    assert!(message(&denied).contains("hostPath"), "{denied:#}");

    // A sandbox that declares no persistent writes gets no claim through volumeClaimTemplates.
    let mut review = sandbox_review(None, Some(SANDBOX));
    review["request"]["object"]["spec"]["volumeClaimTemplates"] =
        json!([{"metadata": {"name": "workspace"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]);
    let denied = answer(world().view, &review).await;
    assert_denied(&denied, DecisionCode::DenyContainmentViolation);
    assert!(
        message(&denied).contains("(workspace) is a persistentVolumeClaim volume"),
        "{denied:#}"
    );
}

#[tokio::test]
async fn what_runs_is_what_was_approved() {
    let approved = format!("registry.example/agents/invoice-auditor@{DIGEST}");
    let mut spec = sandbox_spec();
    spec.runtime = Some(RuntimeSpec {
        images: vec![approved.clone()],
        ..RuntimeSpec::default()
    });
    let bound = agent("bound", spec, None, hours_ago(1));
    let view = || {
        let mut view = world().view;
        view.add_agent(bound.clone());
        view
    };
    let ok = answer(view(), &running("bound", &approved)).await;
    assert!(allowed(&ok), "{ok:#}");
    let denied = answer(view(), &running("bound", "registry.example/agents/evil:1")).await;
    assert_denied(&denied, DecisionCode::DenyRuntimeMismatch);
    assert!(
        message(&denied).contains("spec.containers[0] (agent)"),
        "{denied:#}"
    );
}

#[tokio::test]
async fn a_label_on_either_names_the_agent() {
    // On the template alone (what the Pod would carry): judged.
    let denied = answer(world().view, &sandbox_review(None, Some("nobody"))).await;
    assert_denied(&denied, DecisionCode::DenyAgentNotFound);
    // On the Sandbox alone: judged, then refused: its Pod would go unlabelled.
    let bare = answer(world().view, &sandbox_review(Some(SANDBOX), None)).await;
    assert_denied(&bare, DecisionCode::DenyContainmentViolation);
    // Two names: refused.
    let two = answer(world().view, &sandbox_review(Some(SANDBOX), Some(GOVERNED))).await;
    assert_denied(&two, DecisionCode::DenyAgentNotFound);
    assert!(
        message(&two).contains("make the two labels agree"),
        "{two:#}"
    );
}

#[tokio::test]
async fn an_unlabelled_sandbox_passes_uncounted() {
    let app = app(world().view);
    let (_, answer) = post(&app.router, PATH, bytes(&sandbox_review(None, None))).await;
    assert!(allowed(&answer), "{answer:#}");
    assert_eq!(counter(&app, "agent_starts_allowed_total"), 0);
}

#[tokio::test]
async fn updates_are_judged_only_when_the_label_or_the_template_changes() {
    let old = sandbox_review(Some("nobody"), Some("nobody"));
    let mut suspended = old.clone();
    suspended["request"]["object"]["spec"]["operatingMode"] = json!("Suspended");
    let ok = answer(world().view, &update(suspended, old.clone())).await;
    assert!(allowed(&ok), "a suspension is never blocked: {ok:#}");

    let swapped = answer(
        world().view,
        &update(running("nobody", "registry.example/other:1"), old.clone()),
    )
    .await;
    assert_denied(&swapped, DecisionCode::DenyAgentNotFound);

    let unlabelled = answer(world().view, &update(sandbox_review(None, None), old)).await;
    assert_denied(&unlabelled, DecisionCode::DenyAgentLabelRemoved);
}

#[tokio::test]
async fn other_kinds_and_malformed_bodies_are_bad_requests() {
    let pod = answer_raw(bytes(&pod_review(Some(GOVERNED)))).await;
    assert_denied(&pod, DecisionCode::DenyBadRequest);
    assert!(message(&pod).contains("not /v1/Pod"), "{pod:#}");
    let broken = answer_raw(b"{\"request\": ".to_vec()).await;
    assert_denied(&broken, DecisionCode::DenyBadRequest);
}

async fn answer_raw(body: Vec<u8>) -> Value {
    let app = app(world().view);
    post(&app.router, PATH, body).await.1
}

#[tokio::test]
async fn dry_run_gets_the_same_answer() {
    for agent in [GOVERNED, "nobody"] {
        let mut review = sandbox_review(Some(agent), Some(agent));
        let real = answer(world().view, &review).await;
        review["request"]["dryRun"] = json!(true);
        let dry = answer(world().view, &review).await;
        assert_eq!(real["response"], dry["response"]);
    }
}
