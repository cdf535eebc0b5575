//! Every path into an agent Pod besides CREATE: a Pod UPDATE that adds, changes or removes the
//! agent label, an ephemeral container added to an agent Pod, and a Pod of an agent signed under
//! an older policy than the one now in force (the operator has not re-signed it yet).
#![allow(clippy::unwrap_used)] // tests may unwrap (clippy.toml: allow-unwrap-in-tests)

mod common;

use agentgov_api::admission::DecisionCode;
use common::*;
use serde_json::{Value, json};

/// A Pod UPDATE from a Pod labelled `old` to the same Pod labelled `new` (None: no label).
fn label_update(old: Option<&str>, new: Option<&str>) -> Value {
    pod_update(pod_review(new), pod_review(old))
}

/// An ephemeral container added to a Pod of `agent` (`pods/ephemeralcontainers`, UPDATE).
fn ephemeral(agent: Option<&str>) -> Value {
    let mut review = label_update(agent, agent);
    review["request"]["subResource"] = json!("ephemeralcontainers");
    review["request"]["object"]["spec"]["ephemeralContainers"] = json!([
        {"name": "debugger", "image": "busybox", "targetContainerName": "agent"}
    ]);
    review
}

#[tokio::test]
async fn adding_the_label_is_judged_as_a_create() {
    // To a valid agent: admitted, as its CREATE would be.
    let valid = pods_answer(world().view, &label_update(None, Some(GOVERNED))).await;
    assert!(allowed(&valid), "{valid:#}");
    // Naming an agent that does not exist: refused.
    let unknown = pods_answer(world().view, &label_update(None, Some("nobody"))).await;
    assert_denied(&unknown, DecisionCode::DenyAgentNotFound);
    // Empty: refused (a Pod must name its agent).
    let empty = pods_answer(world().view, &label_update(None, Some(""))).await;
    assert_denied(&empty, DecisionCode::DenyAgentNotFound);
}

#[tokio::test]
async fn changing_the_label_is_judged_for_the_agent_it_now_names() {
    let to_unknown = pods_answer(world().view, &label_update(Some(GOVERNED), Some("nobody"))).await;
    assert_denied(&to_unknown, DecisionCode::DenyAgentNotFound);
    let to_valid = pods_answer(world().view, &label_update(Some("nobody"), Some(GOVERNED))).await;
    assert!(allowed(&to_valid), "{to_valid:#}");
}

#[tokio::test]
async fn removing_the_label_is_refused() {
    let removed = pods_answer(world().view, &label_update(Some(GOVERNED), None)).await;
    assert_denied(&removed, DecisionCode::DenyAgentLabelRemoved);
    assert!(
        message(&removed).contains("delete the Pod instead"),
        "{removed:#}"
    );
    // Emptied: the same (a Pod that named its agent may not stop naming it).
    let emptied = pods_answer(world().view, &label_update(Some(GOVERNED), Some(""))).await;
    assert_denied(&emptied, DecisionCode::DenyAgentLabelRemoved);
    assert!(message(&emptied).contains("emptied"), "{emptied:#}");
    // Even while the caches are not synced (nothing to look up).
    let mut w = world();
    w.view.synced = false;
    let unsynced = pods_answer(w.view, &label_update(Some(SANDBOX), None)).await;
    assert_denied(&unsynced, DecisionCode::DenyAgentLabelRemoved);
}

#[tokio::test]
async fn updates_that_leave_the_label_alone_pass_uncounted() {
    let app = app(world().view);
    for agent in [Some("nobody"), Some(GOVERNED), None] {
        let (_, answer) = post(
            &app.router,
            "/validate/pods",
            bytes(&label_update(agent, agent)),
        )
        .await;
        assert!(allowed(&answer), "{agent:?}: {answer:#}");
    }
    let metrics = app.metrics.encode().unwrap();
    assert!(
        metrics.contains("agent_starts_allowed_total 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn ephemeral_containers_are_judged_like_the_pod() {
    let valid = pods_answer(world().view, &ephemeral(Some(GOVERNED))).await;
    assert!(allowed(&valid), "{valid:#}");
    let unknown = pods_answer(world().view, &ephemeral(Some("nobody"))).await;
    assert_denied(&unknown, DecisionCode::DenyAgentNotFound);
    // An unlabelled Pod is not an agent's: passes.
    let plain = pods_answer(world().view, &ephemeral(None)).await;
    assert!(allowed(&plain), "{plain:#}");
    // Other subresources pass.
    let mut status = ephemeral(Some("nobody"));
    status["request"]["subResource"] = json!("status");
    let status = pods_answer(world().view, &status).await;
    assert!(allowed(&status), "{status:#}");
}

#[tokio::test]
async fn a_proof_under_an_older_policy_passes_if_the_policy_in_force_allows_it() {
    let mut w = world();
    let older = "0".repeat(64);
    w.view.add_agent(signed_agent(
        "not-resigned-yet",
        governed_spec(),
        &w.keys.ring,
        &older,
    ));
    let app = app(w.view);
    for _ in 0..3 {
        let mut review = pod_review(Some("not-resigned-yet"));
        review["request"]["uid"] = json!("u-older");
        let (_, answer) = post(&app.router, "/validate/pods", bytes(&review)).await;
        assert!(allowed(&answer), "{answer:#}");
    }
}

#[tokio::test]
async fn a_proof_under_an_older_policy_is_refused_with_the_new_policys_reasons() {
    let mut w = world();
    let older = "0".repeat(64);
    let mut spec = governed_spec();
    spec.anatomy.capabilities.clear();
    w.view
        .add_agent(signed_agent("breaks-new-rule", spec, &w.keys.ring, &older));
    let app = app(w.view);
    // Asked again (answered from the memo): the same refusal.
    for _ in 0..2 {
        let (_, answer) = post(
            &app.router,
            "/validate/pods",
            bytes(&pod_review(Some("breaks-new-rule"))),
        )
        .await;
        assert_denied(&answer, DecisionCode::DenyPolicyHashMismatch);
        assert!(message(&answer).contains("capabilit"), "{answer:#}");
    }
}
