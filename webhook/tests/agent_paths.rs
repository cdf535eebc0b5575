//! The Agent paths a tenant with plain `update` could use around the seven checks: lengthening a
//! sandbox's life (refused without the verb `extend`; with it, an audited extension) and changing
//! the spec of an agent being deleted (refused; its proof must keep covering its spec).
#![allow(clippy::unwrap_used)] // tests may unwrap (clippy.toml: allow-unwrap-in-tests)

mod common;

use std::time::Duration;

use agentgov_api::Agent;
use agentgov_api::admission::DecisionCode;
use agentgov_api::agent::SandboxSpec;
use agentgov_webhook::authz::{EXTEND_VERB, FixedAuthorizer};
use common::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;

/// An app where the requester holds `promote` but `extend` only if `extend` is true.
fn app_extending(extend: bool) -> App {
    let authz = FixedAuthorizer::new(Ok(true)).with_verb(EXTEND_VERB, Ok(extend));
    app_with_authz(world().view, authz, Duration::from_secs(5))
}

fn ttl(spec_ttl: i64) -> Option<SandboxSpec> {
    Some(SandboxSpec {
        ttl_seconds: Some(spec_ttl),
        expires_at: None,
    })
}

async fn update(app: &App, old: &Agent, new: &Agent) -> Value {
    post(
        &app.router,
        "/validate/agents",
        bytes(&agent_update("lab", old, new)),
    )
    .await
    .1
}

/// A sandbox created `age_hours` ago with a TTL of `ttl_hours`.
fn sandbox(age_hours: i64, ttl_hours: i64) -> Agent {
    let mut spec = sandbox_spec();
    spec.sandbox = ttl(ttl_hours * 3600);
    agent("lab", spec, None, hours_ago(age_hours))
}

#[tokio::test]
async fn an_expired_sandbox_cannot_be_revived_by_a_longer_ttl() {
    let old = sandbox(30, 24);
    let mut new = old.clone();
    new.spec.sandbox = ttl(48 * 3600);
    let answer = update(&app_extending(false), &old, &new).await;
    assert_denied(&answer, DecisionCode::DenySandboxExtension);
    let text = message(&answer);
    assert!(
        text.contains("Promote it") && text.contains("recreate it"),
        "{text}"
    );
    assert!(text.contains("'extend'"), "{text}");
}

#[tokio::test]
async fn a_live_sandbox_cannot_be_lengthened_either_by_ttl_or_expires_at() {
    let old = sandbox(1, 24);
    let mut longer_ttl = old.clone();
    longer_ttl.spec.sandbox = ttl(25 * 3600);
    let mut later_at = old.clone();
    later_at.spec.sandbox = Some(SandboxSpec {
        ttl_seconds: None,
        expires_at: Some(Time(hours_ago(-30))),
    });
    // Dropping the sandbox block falls back to the default TTL (72 h): longer too.
    let mut default_ttl = old.clone();
    default_ttl.spec.sandbox = None;
    let app = app_extending(false);
    for new in [&longer_ttl, &later_at, &default_ttl] {
        let answer = update(&app, &old, new).await;
        assert_denied(&answer, DecisionCode::DenySandboxExtension);
    }
}

#[tokio::test]
async fn an_old_object_that_does_not_parse_grants_no_life_without_extend() {
    // An UPDATE whose oldObject our types cannot read (a version skew, a field written past the
    // schema): nothing to compare the new life with, so it needs `extend`, as coming back
    // from governed does.
    let old = sandbox(30, 24);
    let mut new = old.clone();
    new.spec.sandbox = ttl(48 * 3600);
    let mut review = agent_update("lab", &old, &new);
    review["request"]["oldObject"]["spec"]["mode"] = Value::from("not-a-mode");
    let refused = post(
        &app_extending(false).router,
        "/validate/agents",
        bytes(&review),
    )
    .await
    .1;
    assert_denied(&refused, DecisionCode::DenySandboxExtension);
    let granted = post(
        &app_extending(true).router,
        "/validate/agents",
        bytes(&review),
    )
    .await
    .1;
    assert!(allowed(&granted), "{granted:#}");
}

#[tokio::test]
async fn shortening_is_always_allowed() {
    let old = sandbox(1, 24);
    let mut shorter = old.clone();
    shorter.spec.sandbox = ttl(2 * 3600);
    let app = app_extending(false);
    let answer = update(&app, &old, &shorter).await;
    assert!(allowed(&answer), "{answer:#}");
    assert_eq!(code(&answer), "ADMISSION_ALLOW");
    assert_eq!(
        app.authz.calls(),
        0,
        "no SubjectAccessReview for a shorter life"
    );
}

#[tokio::test]
async fn the_verb_extend_makes_an_audited_extension_bounded_by_the_maximum() {
    let old = sandbox(30, 24);
    let mut new = old.clone();
    new.spec.sandbox = ttl(48 * 3600);
    let app = app_extending(true);
    let answer = update(&app, &old, &new).await;
    assert!(allowed(&answer), "{answer:#}");
    assert_eq!(code(&answer), "ADMISSION_ALLOW_SANDBOX_EXTENDED");
    let metrics = app.metrics.encode().unwrap();
    assert!(
        metrics.contains("agent_starts_allowed_total 1"),
        "{metrics}"
    );
    // Asking past the maximum TTL (720 h from creation) gains nothing beyond it: a sandbox 719 h
    // old asking for 10 years still expires at 720 h.
    let old = sandbox(719, 24);
    let mut huge = old.clone();
    huge.spec.sandbox = ttl(10 * 365 * 24 * 3600);
    let answer = update(&app, &old, &huge).await;
    assert!(allowed(&answer), "{answer:#}");
    let old = sandbox(721, 24);
    let mut huge = old.clone();
    huge.spec.sandbox = ttl(10 * 365 * 24 * 3600);
    let answer = update(&app, &old, &huge).await;
    assert_denied(&answer, DecisionCode::DenySandboxExpired);
}

#[tokio::test]
async fn a_deleting_agent_keeps_its_spec() {
    let w = world();
    let keys = w.keys;
    let mut old = signed_agent("lab", governed_spec(), &keys.ring, policy().hash());
    old.metadata.deletion_timestamp = Some(Time(hours_ago(0)));
    old.metadata.finalizers = Some(vec!["example.com/cleanup".into()]);
    let mut changed = old.clone();
    changed.spec.anatomy.reasoning.as_mut().unwrap().temperature = 0.1;
    // Even a user holding `promote` may not: the deletion path is not a promotion.
    let app = app_extending(true);
    let answer = update(&app, &old, &changed).await;
    assert_denied(&answer, DecisionCode::DenyAgentDeleting);
    assert!(message(&answer).contains("being deleted"), "{answer:#}");
    // Removing the finalizer (metadata only) passes.
    let mut released = old.clone();
    released.metadata.finalizers = None;
    let answer = update(&app, &old, &released).await;
    assert!(allowed(&answer), "{answer:#}");
}

#[tokio::test]
async fn a_round_trip_through_governed_does_not_lengthen_a_sandbox() {
    // A governed spec needs no SubjectAccessReview any more, so the round trip sandbox ->
    // governed -> sandbox is open to anyone with `update`: it must not be a way around `extend`.
    let app = app_extending(false);
    let expired = sandbox(30, 24);
    let mut governed = expired.clone();
    governed.spec.mode = agentgov_api::agent::AgentMode::Governed;
    let answer = update(&app, &expired, &governed).await;
    assert!(allowed(&answer), "step 1, a promotion request: {answer:#}");
    let mut back = governed.clone();
    back.spec.mode = agentgov_api::agent::AgentMode::Sandbox;
    back.spec.sandbox = ttl(48 * 3600);
    let answer = update(&app, &governed, &back).await;
    assert_denied(&answer, DecisionCode::DenySandboxExtension);
    assert_eq!(app.authz.calls(), 1, "asked for `extend`");
}
