//! `POST /validate/agents`: sandbox containment and expiry before signing; for governed agents
//! the `promote` SubjectAccessReview (a fake here) and the promotion policy.
#![allow(clippy::unwrap_used)] // tests may unwrap (clippy.toml: allow-unwrap-in-tests)

mod common;

use std::time::Duration;

use agentgov_api::admission::DecisionCode;
use agentgov_api::agent::{AgentMode, Containment, SandboxSpec};
use axum::http::StatusCode;
use common::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

fn authorized() -> Result<bool, String> {
    Ok(true)
}

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
    let (_, answer) = post(
        &app.router,
        "/validate/agents",
        bytes(&agent_update("lab", &old, &new)),
    )
    .await;
    assert_denied(&answer, DecisionCode::DenySandboxExpired);
}

#[tokio::test]
async fn governed_create_authorized_and_allowed_by_policy() {
    let app = app(world().view);
    let answer = create(&app, "auditor-2", &governed_spec()).await;
    assert!(allowed(&answer), "{answer:#}");
    assert_eq!(code(&answer), "ADMISSION_ALLOW");
    assert!(warnings(&answer).is_empty(), "{answer:#}");
    assert_eq!(app.authz.calls(), 1);
}

#[tokio::test]
async fn governed_create_unauthorized() {
    let app = app_with(world().view, Ok(false), Duration::from_secs(5));
    let answer = create(&app, "auditor-2", &governed_spec()).await;
    assert_denied(&answer, DecisionCode::DenyUnauthorized);
    let message = message(&answer);
    assert!(message.contains("alice@example.com"), "{message}");
    assert!(message.contains("'promote'"), "{message}");
    assert!(message.contains("agentgov-agent-admin"), "{message}");
    assert!(message.contains("agentgov-policy-admin"), "{message}");
}

#[tokio::test]
async fn governed_create_when_authorization_fails_is_denied() {
    let app = app_with(
        world().view,
        Err("connection refused".into()),
        Duration::from_secs(5),
    );
    let answer = create(&app, "auditor-2", &governed_spec()).await;
    assert_denied(&answer, DecisionCode::DenyUnavailable);
    assert!(message(&answer).contains("connection refused"));
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
}

#[tokio::test]
async fn governed_restricted_comes_back_as_warnings() {
    let app = app(world().view);
    let mut spec = governed_spec();
    spec.anatomy.economics = None;
    let answer = create(&app, "no-budget", &spec).await;
    assert!(allowed(&answer), "{answer:#}");
    let warnings = warnings(&answer);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("GOVERNED_RESTRICTED: no monthly budget"),
        "{warnings:?}"
    );
    assert!(warnings[0].chars().count() <= 256);
}

#[tokio::test]
async fn governed_create_without_policy_in_force() {
    let keys = SigningKeys::new("k1");
    let view = agentgov_webhook::cache::StaticView::new(keys.verification(&[]));
    let app = app(view);
    let answer = create(&app, "auditor-2", &governed_spec()).await;
    assert_denied(&answer, DecisionCode::DenyPolicy);
    assert!(message(&answer).contains("no policy in force"));
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
async fn metadata_only_update_of_a_governed_agent_needs_no_authorization() {
    let w = world();
    let old = signed_agent(GOVERNED, governed_spec(), &w.keys.ring, policy().hash());
    let mut new = old.clone();
    new.metadata.labels = Some(
        [(
            "argocd.argoproj.io/instance".to_string(),
            "prod".to_string(),
        )]
        .into(),
    );
    new.metadata.finalizers = None;
    let app = app_with(w.view, Ok(false), Duration::from_secs(5));
    let (_, answer) = post(
        &app.router,
        "/validate/agents",
        bytes(&agent_update(GOVERNED, &old, &new)),
    )
    .await;
    assert!(allowed(&answer), "{answer:#}");
    assert_eq!(app.authz.calls(), 0);
}

#[tokio::test]
async fn spec_update_of_a_governed_agent_is_authorized() {
    let w = world();
    let old = signed_agent(GOVERNED, governed_spec(), &w.keys.ring, policy().hash());
    let mut new = old.clone();
    new.spec.version = "1.3.0".into();
    let app = app_with(w.view, Ok(false), Duration::from_secs(5));
    let (_, answer) = post(
        &app.router,
        "/validate/agents",
        bytes(&agent_update(GOVERNED, &old, &new)),
    )
    .await;
    assert_denied(&answer, DecisionCode::DenyUnauthorized);
    assert_eq!(app.authz.calls(), 1);
}

#[tokio::test]
async fn promotion_of_a_sandbox_is_authorized_and_judged() {
    let w = world();
    let old = agent("lab", sandbox_spec(), None, hours_ago(1));
    let mut new = old.clone();
    new.spec.mode = AgentMode::Governed;
    let app = app_with(w.view, authorized(), Duration::from_secs(5));
    let (_, answer) = post(
        &app.router,
        "/validate/agents",
        bytes(&agent_update("lab", &old, &new)),
    )
    .await;
    assert!(allowed(&answer), "{answer:#}");
    assert_eq!(app.authz.calls(), 1);
}

#[tokio::test]
async fn demotion_of_a_governed_agent_needs_authorization() {
    let w = world();
    let old = signed_agent(GOVERNED, governed_spec(), &w.keys.ring, policy().hash());
    let mut new = old.clone();
    new.spec.mode = AgentMode::Sandbox;
    let app = app_with(w.view, Ok(false), Duration::from_secs(5));
    let (_, answer) = post(
        &app.router,
        "/validate/agents",
        bytes(&agent_update(GOVERNED, &old, &new)),
    )
    .await;
    assert_denied(&answer, DecisionCode::DenyUnauthorized);
}

#[tokio::test]
async fn status_subresource_and_delete_always_pass() {
    let w = world();
    let old = signed_agent(GOVERNED, governed_spec(), &w.keys.ring, policy().hash());
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
    let (_, answer) = post(
        &app.router,
        "/validate/agents",
        bytes(&agent_update("expired-lab", &old, &new)),
    )
    .await;
    assert!(allowed(&answer), "{answer:#}");
}

#[tokio::test]
async fn dry_run_promotion_gets_the_same_answer() {
    let app = app_with(world().view, Ok(false), Duration::from_secs(5));
    let mut review = agent_create("auditor-2", &governed_spec());
    review["request"]["dryRun"] = json!(true);
    let (_, answer) = post(&app.router, "/validate/agents", bytes(&review)).await;
    assert_denied(&answer, DecisionCode::DenyUnauthorized);
}

#[tokio::test]
async fn requester_comes_from_user_info_not_the_object() {
    // An object that claims an actor gets nowhere: the spec has no such field, and the
    // SubjectAccessReview is asked for userInfo.
    let app = app_with(world().view, Ok(false), Duration::from_secs(5));
    let mut review = agent_create("auditor-2", &governed_spec());
    review["request"]["object"]["metadata"]["annotations"]["agentgov.dev/requested-by"] =
        json!("cluster-admin");
    let (_, answer) = post(&app.router, "/validate/agents", bytes(&review)).await;
    assert_denied(&answer, DecisionCode::DenyUnauthorized);
    assert!(message(&answer).contains("alice@example.com"));
}

#[tokio::test]
async fn agent_that_does_not_parse_is_a_bad_request() {
    let app = app(world().view);
    let mut review = agent_create("broken", &governed_spec());
    review["request"]["object"]["spec"]["roleClass"] = json!("wizard");
    let (_, answer) = post(&app.router, "/validate/agents", bytes(&review)).await;
    assert_denied(&answer, DecisionCode::DenyBadRequest);
}
