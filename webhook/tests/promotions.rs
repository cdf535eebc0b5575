//! `POST /validate/agentpromotions`: an AgentPromotion CREATE approves the agent's current spec
//! (its hash) only if the agent exists and is governed, the requester (the AdmissionReview's
//! userInfo) holds `promote` (a fake SubjectAccessReview here) and the policy in force allows the
//! spec with the requester as the actor. A refusal is a promotion attempt, counted once; an
//! allowed approval is counted by the operator, when it decides it.
#![allow(clippy::unwrap_used)] // tests may unwrap (clippy.toml: allow-unwrap-in-tests)

mod common;

use std::time::Duration;

use agentgov_api::admission::DecisionCode;
use agentgov_api::hash::spec_hash;
use agentgov_webhook::authz::{FixedAuthorizer, PROMOTE_VERB};
use agentgov_webhook::testing::StaticView;
use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};

const PATH: &str = "/validate/agentpromotions";

/// The hash of the spec every fixture agent has.
fn current() -> String {
    spec_hash(&governed_spec()).unwrap()
}

async fn review(app: &App, review: &Value) -> Value {
    let (status, answer) = post(&app.router, PATH, bytes(review)).await;
    assert_eq!(status, StatusCode::OK);
    answer
}

/// Alice's approval of `agent` at `hash`, as `app` answers it.
async fn approve(app: &App, agent: &str, hash: &str) -> Value {
    review(app, &promotion_create(agent, hash)).await
}

/// `promotion_attempts_total`, and `promotion_denies_total` for `reason`.
fn attempts(app: &App, reason: &str) -> (u64, u64) {
    (
        counter(app, "promotion_attempts_total"),
        counter(
            app,
            &format!(r#"promotion_denies_total{{reason="{reason}"}}"#),
        ),
    )
}

/// A world that also holds `awaiting`: a governed spec the operator has not promoted yet.
fn world_awaiting() -> World {
    let mut w = world();
    w.view
        .add_agent(agent("awaiting", governed_spec(), None, hours_ago(1)));
    w
}

#[tokio::test]
async fn the_fixture_approves_the_fixture_agents_current_spec() {
    let app = app(world().view);
    let (status, answer) = post(&app.router, PATH, PROMOTION_REVIEW).await;
    assert_eq!(status, StatusCode::OK);
    assert!(allowed(&answer), "{answer:#}");
    assert_eq!(answer["response"]["uid"], json!(PROMOTION_UID));
    assert_eq!(code(&answer), "ADMISSION_ALLOW");
    let fixture: Value = serde_json::from_str(PROMOTION_REVIEW).unwrap();
    assert_eq!(
        fixture["request"]["object"]["spec"]["specHash"],
        json!(current())
    );
    assert_eq!(
        fixture["request"]["object"]["spec"]["agent"],
        json!(GOVERNED)
    );
}

#[tokio::test]
async fn an_authorized_approval_of_the_current_spec_passes() {
    let app = app(world_awaiting().view);
    for agent in ["awaiting", GOVERNED] {
        let answer = approve(&app, agent, &current()).await;
        assert!(allowed(&answer), "{agent}: {answer:#}");
        assert_eq!(code(&answer), "ADMISSION_ALLOW");
    }
    // One SubjectAccessReview each, for the requester.
    assert_eq!(app.authz.calls(), 2);
    // The operator counts the approvals it decides; admission counts only refusals.
    assert_eq!(attempts(&app, "other"), (0, 0));
    // An approval is no agent start.
    assert_eq!(counter(&app, "agent_starts_allowed_total"), 0);
}

#[tokio::test]
async fn another_spec_hash_is_refused_naming_both_hashes() {
    let app = app(world_awaiting().view);
    let stale = "ab".repeat(32);
    let answer = approve(&app, "awaiting", &stale).await;
    assert_denied(&answer, DecisionCode::DenySpecHashMismatch);
    let text = message(&answer);
    assert!(text.contains(&stale[..12]), "{text}");
    assert!(text.contains(&current()), "{text}");
    assert!(text.contains("team-a/awaiting"), "{text}");
    assert_eq!(attempts(&app, "other"), (1, 1));
}

#[tokio::test]
async fn an_unknown_agent_is_not_found() {
    let app = app(world().view);
    let answer = approve(&app, "nobody", &current()).await;
    assert_denied(&answer, DecisionCode::DenyAgentNotFound);
    assert!(message(&answer).contains("team-a/nobody"), "{answer:#}");
    // The requester is asked about first: without `promote` one learns nothing of the agent.
    assert_eq!(app.authz.calls(), 1);
    assert_eq!(attempts(&app, "other"), (1, 1));
}

#[tokio::test]
async fn an_agent_being_deleted_is_not_approved() {
    let mut w = world();
    let mut leaving = agent("leaving", governed_spec(), None, hours_ago(1));
    leaving.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(hours_ago(0)),
    );
    w.view.add_agent(leaving);
    let app = app(w.view);
    let answer = approve(&app, "leaving", &current()).await;
    assert_denied(&answer, DecisionCode::DenyAgentDeleting);
    assert!(message(&answer).contains("being deleted"), "{answer:#}");
    assert_eq!(attempts(&app, "other"), (1, 1));
}

#[tokio::test]
async fn another_version_of_the_kind_is_a_bad_request() {
    let app = app(world_awaiting().view);
    let mut body = promotion_create("awaiting", &current());
    body["request"]["kind"]["version"] = json!("v1beta9");
    let answer = review(&app, &body).await;
    assert!(!allowed(&answer), "{answer:#}");
    assert_eq!(
        answer["response"]["status"]["code"],
        json!(400),
        "{answer:#}"
    );
    assert!(
        message(&answer).contains("agentgov.dev/v1alpha1"),
        "{answer:#}"
    );
}

#[tokio::test]
async fn a_sandbox_is_not_approved() {
    // Its spec hash is current, but a sandbox is no promotion request: set mode governed first.
    let app = app(world().view);
    let hash = spec_hash(&sandbox_spec()).unwrap();
    let answer = approve(&app, SANDBOX, &hash).await;
    assert_denied(&answer, DecisionCode::DenyPolicy);
    assert!(message(&answer).contains("is a sandbox"), "{answer:#}");
    assert_eq!(app.authz.calls(), 1);
    assert_eq!(attempts(&app, "other"), (1, 1));
}

#[tokio::test]
async fn a_requester_without_promote_is_unauthorized() {
    let authz = FixedAuthorizer::new(Ok(true)).with_verb(PROMOTE_VERB, Ok(false));
    let app = app_with_authz(world_awaiting().view, authz, Duration::from_secs(5));
    let answer = approve(&app, "awaiting", &current()).await;
    assert_denied(&answer, DecisionCode::DenyUnauthorized);
    let text = message(&answer);
    assert!(text.contains("alice@example.com"), "{text}");
    assert!(text.contains("'promote'"), "{text}");
    assert!(text.contains("agentgov-agent-admin"), "{text}");
    assert_eq!(app.authz.calls(), 1);
    assert_eq!(attempts(&app, "actor_unauthorized"), (1, 1));
}

#[tokio::test]
async fn a_failing_subject_access_review_is_unavailable_and_no_attempt() {
    let app = app_with(
        world_awaiting().view,
        Err("connection refused".into()),
        Duration::from_secs(5),
    );
    let answer = approve(&app, "awaiting", &current()).await;
    assert_denied(&answer, DecisionCode::DenyUnavailable);
    assert!(
        message(&answer).contains("connection refused"),
        "{answer:#}"
    );
    // Nothing was decided: not a promotion attempt.
    assert_eq!(counter(&app, "promotion_attempts_total"), 0);
}

#[tokio::test]
async fn no_policy_in_force_is_a_policy_deny() {
    let keys = SigningKeys::new("k1");
    let mut view = StaticView::new(keys.verification(&[]));
    view.add_agent(agent("awaiting", governed_spec(), None, hours_ago(1)));
    let app = app(view);
    let answer = approve(&app, "awaiting", &current()).await;
    assert_denied(&answer, DecisionCode::DenyPolicy);
    assert!(
        message(&answer).contains("no policy in force"),
        "{answer:#}"
    );
    assert_eq!(attempts(&app, "no_policy"), (1, 1));
}

#[tokio::test]
async fn the_policys_actor_rule_judges_the_approver() {
    // The group policy admits approvers by group only: alice holds `promote` (the SAR says
    // yes, so the webhook passes authorizedToPromote: true), but none of her groups is a
    // promoter role.
    let w = world_awaiting();
    w.view.policies.insert(NS, group_policy());
    let app = app(w.view);
    let answer = approve(&app, "awaiting", &current()).await;
    assert_denied(&answer, DecisionCode::DenyPolicy);
    let text = message(&answer);
    assert!(
        text.contains("alice@example.com is in none of the groups invoice-approvers"),
        "{text}"
    );
    assert_eq!(app.authz.calls(), 1);
    assert_eq!(attempts(&app, "actor_unauthorized"), (1, 1));

    // The approver is the request's userInfo: spec.requestedBy claiming the group is nothing.
    let mut claimed = promotion_create("awaiting", &current());
    claimed["request"]["object"]["spec"]["requestedBy"]["groups"] = json!([APPROVERS_GROUP]);
    let answer = review(&app, &claimed).await;
    assert_denied(&answer, DecisionCode::DenyPolicy);
    assert_eq!(attempts(&app, "actor_unauthorized"), (2, 2));

    // In the group (as the API server authenticated her): approved.
    let mut member = promotion_create("awaiting", &current());
    member["request"]["userInfo"]["groups"] = json!([APPROVERS_GROUP, "system:authenticated"]);
    let answer = review(&app, &member).await;
    assert!(allowed(&answer), "{answer:#}");
    assert_eq!(counter(&app, "promotion_attempts_total"), 2);
}

#[tokio::test]
async fn the_policy_judges_the_spec_with_every_rule() {
    // A governed spec the policy in force denies (it got in under an older policy): its
    // approval is refused with the reasons.
    let mut w = world();
    let mut spec = governed_spec();
    spec.anatomy.capabilities.clear();
    let hash = spec_hash(&spec).unwrap();
    w.view.add_agent(agent("bare", spec, None, hours_ago(1)));
    let app = app(w.view);
    let answer = approve(&app, "bare", &hash).await;
    assert_denied(&answer, DecisionCode::DenyPolicy);
    assert!(
        message(&answer).contains("capabilities is empty"),
        "{answer:#}"
    );
    assert_eq!(attempts(&app, "capabilities"), (1, 1));
}

#[tokio::test]
async fn a_dry_run_refusal_is_the_same_answer_and_counts_nothing() {
    let authz = FixedAuthorizer::new(Ok(true)).with_verb(PROMOTE_VERB, Ok(false));
    let app = app_with_authz(world_awaiting().view, authz, Duration::from_secs(5));
    let mut dry = promotion_create("awaiting", &current());
    dry["request"]["dryRun"] = json!(true);
    let answer = review(&app, &dry).await;
    assert_denied(&answer, DecisionCode::DenyUnauthorized);
    // Without `promote`, a stale hash is refused for who asks before what they ask.
    let mut stale = promotion_create("awaiting", &"cd".repeat(32));
    stale["request"]["dryRun"] = json!(true);
    let answer = review(&app, &stale).await;
    assert_denied(&answer, DecisionCode::DenyUnauthorized);
    assert_eq!(attempts(&app, "actor_unauthorized"), (0, 0));
    let promoter = app_with_authz(
        world_awaiting().view,
        FixedAuthorizer::new(Ok(true)),
        Duration::from_secs(5),
    );
    let answer = review(&promoter, &stale).await;
    assert_denied(&answer, DecisionCode::DenySpecHashMismatch);
    assert_eq!(attempts(&promoter, "other"), (0, 0));
}

#[tokio::test]
async fn update_delete_and_subresources_pass() {
    // Even for an unknown agent, a wrong hash, and a requester without `promote`: the spec is
    // immutable (the CRD's CEL rule), and the operator judges approvals again anyway.
    let app = app_with(world().view, Ok(false), Duration::from_secs(5));
    let create = promotion_create("nobody", &"ef".repeat(32));
    let mut update = create.clone();
    update["request"]["operation"] = json!("UPDATE");
    update["request"]["oldObject"] = update["request"]["object"].clone();
    update["request"]["object"]["metadata"]["labels"] = json!({"team": "a"});
    let mut delete = create.clone();
    delete["request"]["operation"] = json!("DELETE");
    delete["request"]["oldObject"] = delete["request"]["object"].take();
    let mut status = update.clone();
    status["request"]["subResource"] = json!("status");
    for (what, body) in [("UPDATE", update), ("DELETE", delete), ("status", status)] {
        let answer = review(&app, &body).await;
        assert!(allowed(&answer), "{what}: {answer:#}");
    }
    assert_eq!(app.authz.calls(), 0);
    // Pass-throughs are not decisions: not counted.
    assert_eq!(counter(&app, "agent_starts_allowed_total"), 0);
    assert_eq!(counter(&app, "promotion_attempts_total"), 0);
}

#[tokio::test]
async fn unsynced_caches_are_unavailable() {
    let mut w = world();
    w.view.synced = false;
    let app = app(w.view);
    let answer = approve(&app, GOVERNED, &current()).await;
    assert_denied(&answer, DecisionCode::DenyUnavailable);
    assert_eq!(counter(&app, "promotion_attempts_total"), 0);
}

#[tokio::test]
async fn other_kinds_and_broken_bodies_are_bad_requests() {
    let app = app(world().view);
    // An Agent review sent here.
    let answer = review(&app, &agent_create("auditor-2", &governed_spec())).await;
    assert_denied(&answer, DecisionCode::DenyBadRequest);
    assert!(message(&answer).contains("AgentPromotion"), "{answer:#}");
    // A spec that does not parse.
    let mut broken = promotion_create(GOVERNED, &current());
    broken["request"]["object"]["spec"]["agent"] = json!(42);
    let answer = review(&app, &broken).await;
    assert_denied(&answer, DecisionCode::DenyBadRequest);
    let (status, answer) = post(&app.router, PATH, b"{".to_vec()).await;
    assert_eq!(status, StatusCode::OK);
    assert_denied(&answer, DecisionCode::DenyBadRequest);
    assert_eq!(counter(&app, "promotion_attempts_total"), 0);
    assert_eq!(
        counter(
            &app,
            r#"admission_review_duration_seconds_count{kind="agentpromotion"}"#
        ),
        3
    );
}
