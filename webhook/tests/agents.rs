//! `POST /validate/agents`: sandbox containment and expiry before signing; a governed spec is
//! judged by the promotion policy in force alone (every rule but the actor rule), with no
//! SubjectAccessReview: approval is an AgentPromotion's (tests/promotions.rs).
#![allow(clippy::unwrap_used)] // tests may unwrap (clippy.toml: allow-unwrap-in-tests)

mod common;

use std::time::Duration;

use agentgov_api::admission::DecisionCode;
use agentgov_api::agent::{AgentMode, Containment, SandboxSpec};
use agentgov_api::hash::spec_hash;
use agentgov_api::policy::{Actor, AgentInput, PolicyInput};
use agentgov_webhook::testing::StaticView;
use axum::http::StatusCode;
use common::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

#[tokio::test]
async fn sandbox_create_is_allowed_without_authorization() {
    let app = app(world().view);
    let (status, answer) = post(
        &app.router,
        "/validate/agents",
        bytes(&agent_create("lab", &sandbox_spec())),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(allowed(&answer), "{answer:#}");
    assert_eq!(answer["response"]["uid"], json!(AGENT_UID));
    assert_eq!(app.authz.calls(), 0);
}

#[tokio::test]
async fn sandbox_create_breaking_containment_is_denied() {
    let app = app(world().view);
    let mut spec = sandbox_spec();
    spec.anatomy.containment = Containment {
        external_calls: false,
        persistent_writes: true,
    };
    let answer = create(&app, "lab", &spec).await;
    assert_denied(&answer, DecisionCode::DenyContainmentViolation);
    assert!(message(&answer).contains("persistentWrites"));
}

#[tokio::test]
async fn sandbox_create_already_expired_is_denied() {
    let app = app(world().view);
    let mut spec = sandbox_spec();
    spec.sandbox = Some(SandboxSpec {
        ttl_seconds: None,
        expires_at: Some(Time(hours_ago(1))),
    });
    let answer = create(&app, "lab", &spec).await;
    assert_denied(&answer, DecisionCode::DenySandboxExpired);
}

#[tokio::test]
async fn sandbox_update_is_judged_from_the_stored_creation_time() {
    // Created 30 hours ago with a 24 h TTL; the update may not resurrect it, whatever the
    // object's own creationTimestamp says.
    let app = app(world().view);
    let old = agent("lab", sandbox_spec(), None, hours_ago(30));
    let mut new = old.clone();
    new.spec.description = "changed".into();
    new.metadata.creation_timestamp = Some(Time(now()));
    let answer = update(&app, "lab", &old, &new).await;
    assert_denied(&answer, DecisionCode::DenySandboxExpired);
}

/// The warning every allowed governed spec carries: how it gets approved.
fn approval_warning(spec: &agentgov_api::agent::AgentSpec) -> String {
    format!(
        "an AgentPromotion approving spec hash {} (by someone holding the verb 'promote') promotes it",
        spec_hash(spec).unwrap()
    )
}

/// An app whose SubjectAccessReviews would refuse everything, over `view`.
fn app_refusing(view: StaticView) -> App {
    app_with(view, Ok(false), Duration::from_secs(5))
}

#[tokio::test]
async fn governed_create_is_judged_by_the_policy_without_a_subject_access_review() {
    // The requester holds no `promote` (the fake would say no): not asked. Approval is an
    // AgentPromotion's business; the spec is the policy's.
    let app = app_refusing(world().view);
    let answer = create(&app, "auditor-2", &governed_spec()).await;
    assert!(allowed(&answer), "{answer:#}");
    assert_eq!(code(&answer), "ADMISSION_ALLOW");
    assert_eq!(warnings(&answer), [approval_warning(&governed_spec())]);
    assert_eq!(app.authz.calls(), 0);
    // An allowed spec is no promotion attempt: the operator counts those it decides.
    assert_eq!(counter(&app, "promotion_attempts_total"), 0);
    assert_eq!(counter(&app, "agent_starts_allowed_total"), 1);
}

#[tokio::test]
async fn governed_create_needs_no_authorization_even_when_it_would_fail() {
    let app = app_with(
        world().view,
        Err("connection refused".into()),
        Duration::from_secs(5),
    );
    let answer = create(&app, "auditor-2", &governed_spec()).await;
    assert!(allowed(&answer), "{answer:#}");
    assert_eq!(app.authz.calls(), 0);
}

#[tokio::test]
async fn a_requester_without_any_promoter_role_is_not_refused_here() {
    // The group policy's actor rule refuses alice (none of her groups is a promoter role); at
    // the spec's admission that rule is left out: approvers are judged when they approve.
    let w = world();
    let policy = group_policy();
    let spec = governed_spec();
    let alice = Actor {
        username: "alice@example.com".into(),
        groups: vec!["developers".into()],
        roles: Vec::new(),
        authorized_to_promote: true,
    };
    let input = PolicyInput {
        agent: AgentInput {
            namespace: NS,
            name: "auditor-2",
            spec: &spec,
        },
        actor: &alice,
        namespace: None,
    };
    let verdict = policy.evaluate(&input).unwrap();
    assert!(!verdict.allow, "{verdict:?}");
    assert_eq!(verdict.denies[0].code, "actor_unauthorized", "{verdict:?}");
    w.view.policies.insert(NS, policy);
    let app = app_refusing(w.view);
    let answer = create(&app, "auditor-2", &spec).await;
    assert!(allowed(&answer), "{answer:#}");
    assert_eq!(app.authz.calls(), 0);
    // The other rules of the same policy still apply, and the actor's deny is not named.
    let mut spec = governed_spec();
    spec.anatomy.capabilities.push("payments".into());
    let answer = create(&app, "payer", &spec).await;
    assert_denied(&answer, DecisionCode::DenyPolicy);
    let text = message(&answer);
    assert!(text.contains("may not include payments"), "{text}");
    assert!(!text.contains("none of the groups"), "{text}");
    assert_eq!(counter(&app, "promotion_attempts_total"), 1);
    assert_eq!(promotion_denies(&app, "capabilities"), 1);
    assert_eq!(promotion_denies(&app, "actor_unauthorized"), 0);
}

#[tokio::test]
async fn governed_create_breaking_policy_is_refused_with_reasons() {
    let app = app(world().view);
    let mut spec = governed_spec();
    spec.anatomy.reasoning.as_mut().unwrap().temperature = 0.9;
    spec.anatomy.capabilities.clear();
    let answer = create(&app, "hot", &spec).await;
    assert_denied(&answer, DecisionCode::DenyPolicy);
    let message = message(&answer);
    assert!(
        message.contains("temperature 0.9 is above the limit 0.3"),
        "{message}"
    );
    assert!(message.contains("capabilities is empty"), "{message}");
    assert!(warnings(&answer).is_empty(), "{answer:#}");
    assert_eq!(app.authz.calls(), 0);
    // A promotion attempt, counted once with each of the policy's deny codes.
    assert_eq!(counter(&app, "promotion_attempts_total"), 1);
    for reason in ["temperature", "capabilities"] {
        assert_eq!(promotion_denies(&app, reason), 1, "{reason}");
    }
    assert_eq!(
        counter(
            &app,
            r#"agent_starts_denied_total{reason="ADMISSION_DENY_POLICY"}"#
        ),
        1
    );
}

#[tokio::test]
async fn governed_restricted_comes_back_as_warnings() {
    let app = app(world().view);
    let mut spec = governed_spec();
    spec.anatomy.economics = None;
    let answer = create(&app, "no-budget", &spec).await;
    assert!(allowed(&answer), "{answer:#}");
    let warnings = warnings(&answer);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with("GOVERNED_RESTRICTED when approved: no monthly budget"),
        "{warnings:?}"
    );
    assert_eq!(warnings[1], approval_warning(&spec));
    assert!(warnings.iter().all(|w| w.chars().count() <= 256));
    assert_eq!(app.authz.calls(), 0);
}

#[tokio::test]
async fn governed_create_without_policy_in_force() {
    let keys = SigningKeys::new("k1");
    let view = StaticView::new(keys.verification(&[]));
    let app = app(view);
    let answer = create(&app, "auditor-2", &governed_spec()).await;
    assert_denied(&answer, DecisionCode::DenyPolicy);
    assert!(message(&answer).contains("no policy in force"));
    assert_eq!(app.authz.calls(), 0);
    assert_eq!(counter(&app, "promotion_attempts_total"), 1);
    assert_eq!(promotion_denies(&app, "no_policy"), 1);
}

#[tokio::test]
async fn governed_create_while_unsynced_is_unavailable() {
    let mut w = world();
    w.view.synced = false;
    let app = app(w.view);
    let answer = create(&app, "auditor-2", &governed_spec()).await;
    assert_denied(&answer, DecisionCode::DenyUnavailable);
    // Sandboxes need no cache.
    let answer = create(&app, "lab", &sandbox_spec()).await;
    assert!(allowed(&answer), "{answer:#}");
}

#[tokio::test]
async fn metadata_only_update_of_a_governed_agent_passes() {
    let w = world();
    let old = w.signed(GOVERNED);
    let mut new = old.clone();
    new.metadata.labels = Some(
        [(
            "argocd.argoproj.io/instance".to_string(),
            "prod".to_string(),
        )]
        .into(),
    );
    new.metadata.finalizers = None;
    let app = app_refusing(w.view);
    let answer = update(&app, GOVERNED, &old, &new).await;
    assert!(allowed(&answer), "{answer:#}");
    assert_eq!(app.authz.calls(), 0);
}

#[tokio::test]
async fn spec_update_of_a_governed_agent_is_judged_by_the_policy() {
    let w = world();
    let old = w.signed(GOVERNED);
    let mut new = old.clone();
    new.spec.version = "1.3.0".into();
    let app = app_refusing(w.view);
    let answer = update(&app, GOVERNED, &old, &new).await;
    // Allowed, and the warning names the new spec's hash (the one to approve).
    assert!(allowed(&answer), "{answer:#}");
    assert_eq!(warnings(&answer), [approval_warning(&new.spec)]);
    assert_ne!(approval_warning(&new.spec), approval_warning(&old.spec));
    // A change the policy denies is refused.
    let mut hot = old.clone();
    hot.spec.anatomy.reasoning.as_mut().unwrap().temperature = 0.9;
    let answer = update(&app, GOVERNED, &old, &hot).await;
    assert_denied(&answer, DecisionCode::DenyPolicy);
    assert!(message(&answer).contains("temperature 0.9"), "{answer:#}");
    assert_eq!(app.authz.calls(), 0);
}

#[tokio::test]
async fn promotion_of_a_sandbox_is_judged_by_the_policy() {
    let w = world();
    let old = agent("lab", sandbox_spec(), None, hours_ago(1));
    let mut new = old.clone();
    new.spec.mode = AgentMode::Governed;
    let app = app_refusing(w.view);
    let answer = update(&app, "lab", &old, &new).await;
    assert!(allowed(&answer), "{answer:#}");
    // The sandbox example declares no budget: the policy allows it with that warning.
    let warnings = warnings(&answer);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("no monthly budget"), "{warnings:?}");
    assert_eq!(warnings[1], approval_warning(&new.spec));
    assert_eq!(app.authz.calls(), 0);
}

#[tokio::test]
async fn a_governed_agent_going_back_to_the_sandbox_needs_extend() {
    // The governed spec holds no sandbox life to compare with, so going back is granting one:
    // refused without `extend` (else sandbox -> governed -> sandbox revives an expired sandbox).
    let w = world();
    let old = w.signed(GOVERNED);
    let mut new = old.clone();
    new.spec.mode = AgentMode::Sandbox;
    let body = bytes(&agent_update(GOVERNED, &old, &new));
    let refusing = app_refusing(w.view);
    let (_, answer) = post(&refusing.router, "/validate/agents", body.clone()).await;
    assert_denied(&answer, DecisionCode::DenySandboxExtension);
    assert_eq!(refusing.authz.calls(), 1);
    // Someone holding `extend` may.
    let extender = app(world().view);
    let (_, answer) = post(&extender.router, "/validate/agents", body).await;
    assert!(allowed(&answer), "{answer:#}");
    assert_eq!(code(&answer), "ADMISSION_ALLOW_SANDBOX_EXTENDED");
    assert_eq!(extender.authz.calls(), 1);
    // Past the sandbox's life (the default 72 h from creation), it is refused as expired,
    // before anyone is asked.
    let mut old_one = old.clone();
    old_one.metadata.creation_timestamp = Some(Time(hours_ago(100)));
    let mut new = old_one.clone();
    new.spec.mode = AgentMode::Sandbox;
    let app = app_refusing(world().view);
    let answer = update(&app, GOVERNED, &old_one, &new).await;
    assert_denied(&answer, DecisionCode::DenySandboxExpired);
    assert_eq!(app.authz.calls(), 0);
}

#[tokio::test]
async fn status_subresource_and_delete_always_pass() {
    let w = world();
    let old = w.signed(GOVERNED);
    let mut new = old.clone();
    new.spec.version = "9.9.9".into();
    let app = app_with(w.view, Ok(false), Duration::from_secs(5));
    let mut review = agent_update(GOVERNED, &old, &new);
    review["request"]["subResource"] = json!("status");
    let (_, answer) = post(&app.router, "/validate/agents", bytes(&review)).await;
    assert!(allowed(&answer), "{answer:#}");
    let mut review = agent_update(GOVERNED, &old, &new);
    review["request"]["operation"] = json!("DELETE");
    review["request"]["object"] = json!(null);
    let (_, answer) = post(&app.router, "/validate/agents", bytes(&review)).await;
    assert!(allowed(&answer), "{answer:#}");
    assert_eq!(app.authz.calls(), 0);
}

#[tokio::test]
async fn an_agent_being_deleted_can_drop_its_finalizers() {
    let w = world();
    let mut old = agent("expired-lab", sandbox_spec(), None, hours_ago(500));
    old.metadata.deletion_timestamp = Some(Time(hours_ago(0)));
    old.metadata.finalizers = Some(vec!["agentgov.dev/cleanup".into()]);
    let mut new = old.clone();
    new.metadata.finalizers = None;
    let app = app(w.view);
    let answer = update(&app, "expired-lab", &old, &new).await;
    assert!(allowed(&answer), "{answer:#}");
}

#[tokio::test]
async fn dry_run_gets_the_same_answer_and_counts_no_attempt() {
    let app = app(world().view);
    let mut spec = governed_spec();
    spec.anatomy.capabilities.clear();
    let mut review = agent_create("auditor-2", &spec);
    review["request"]["dryRun"] = json!(true);
    let (_, answer) = post(&app.router, "/validate/agents", bytes(&review)).await;
    assert_denied(&answer, DecisionCode::DenyPolicy);
    assert!(message(&answer).contains("capabilities is empty"));
    assert_eq!(counter(&app, "promotion_attempts_total"), 0);
    assert_eq!(promotion_denies(&app, "capabilities"), 0);
    // Dry-run allows are the same answer too.
    let mut review = agent_create("auditor-2", &governed_spec());
    review["request"]["dryRun"] = json!(true);
    let (_, answer) = post(&app.router, "/validate/agents", bytes(&review)).await;
    assert!(allowed(&answer), "{answer:#}");
    assert_eq!(warnings(&answer), [approval_warning(&governed_spec())]);
}

#[tokio::test]
async fn agent_that_does_not_parse_is_a_bad_request() {
    let app = app(world().view);
    let mut review = agent_create("broken", &governed_spec());
    review["request"]["object"]["spec"]["roleClass"] = json!("wizard");
    let (_, answer) = post(&app.router, "/validate/agents", bytes(&review)).await;
    assert_denied(&answer, DecisionCode::DenyBadRequest);
}
