//! The JSON log lines of `telemetry::JsonLine`, the decision line of `POST /validate/agents`
//! with the seed's fields, the PROMOTION_DENIED line of a refused approval, and the decision line
//! of `POST /v1/admit` naming the client certificate that asked.
//!
//! In a test binary of its own: the subscriber is set for this thread only, and tracing caches
//! per-callsite interest globally, so tests in other threads of a shared binary could register
//! the callsite first and hide the line from this subscriber (seen as a flaky failure).
#![allow(clippy::unwrap_used)] // tests may unwrap (clippy.toml: allow-unwrap-in-tests)

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentgov_api::admission::DecisionCode;
use agentgov_api::hash::spec_hash;
use agentgov_webhook::authz::{FixedAuthorizer, PROMOTE_VERB};
use agentgov_webhook::telemetry::JsonLine;
use common::*;
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The lines written while `log` runs under a [`JsonLine`] subscriber on this thread.
async fn lines<F: std::future::Future>(log: impl FnOnce() -> F) -> Vec<Value> {
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .event_format(JsonLine)
        .with_writer(move || writer.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    log().await;
    drop(guard);
    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    assert!(text.ends_with('\n'), "{text:?}");
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn a_line_has_every_field_typed_and_escaped() {
    let reason = "quote \" backslash \\ newline \n tab \t é";
    let lines = lines(|| async {
        tracing::info!(
            code = "ADMISSION_ALLOW",
            allowed = true,
            warnings = 2u64,
            delta = -3i64,
            ratio = 0.5,
            reason = %reason,
            debugged = ?Some("x"),
            "admission decision"
        );
    })
    .await;
    let [line] = lines.as_slice() else {
        panic!("{lines:?}")
    };
    assert_eq!(line["level"], json!("INFO"));
    assert_eq!(line["code"], json!("ADMISSION_ALLOW"));
    assert_eq!(line["allowed"], json!(true));
    assert_eq!(line["warnings"], json!(2));
    assert_eq!(line["delta"], json!(-3));
    assert_eq!(line["ratio"], json!(0.5));
    assert_eq!(line["reason"], json!(reason));
    assert_eq!(line["debugged"], json!("Some(\"x\")"));
    assert_eq!(line["message"], json!("admission decision"));
    assert_eq!(line["target"], json!("decision_log"));
    let at: jiff::Timestamp = line["timestamp"].as_str().unwrap().parse().unwrap();
    let age = jiff::Timestamp::now().duration_since(at);
    assert!(age.as_secs() < 60 && !age.is_negative(), "{at}");
    assert_eq!(line.as_object().unwrap().len(), 11, "{line}");
}

#[tokio::test]
async fn an_error_field_is_its_message() {
    let err = std::io::Error::other("disk \"full\"");
    let lines = lines(|| async {
        tracing::warn!(error = &err as &(dyn std::error::Error + 'static), "failed");
    })
    .await;
    assert_eq!(lines[0]["error"], json!("disk \"full\""));
    assert_eq!(lines[0]["level"], json!("WARN"));
}

#[tokio::test]
async fn decision_log_line_is_json_with_the_fields() {
    let app = app(world().view);
    let mut spec = governed_spec();
    spec.anatomy.capabilities.clear();
    let lines = lines(|| async {
        let answer = create(&app, "auditor-2", &spec).await;
        assert_denied(&answer, DecisionCode::DenyPolicy);
    })
    .await;
    let line = lines
        .iter()
        .find(|l| l["message"] == json!("admission decision"))
        .unwrap_or_else(|| panic!("no decision line in {lines:?}"));
    assert_eq!(line["code"], json!("ADMISSION_DENY_POLICY"));
    assert_eq!(line["agent"], json!("auditor-2"));
    assert_eq!(line["namespace"], json!(NS));
    assert_eq!(line["requester"], json!("alice@example.com"));
    assert_eq!(line["operation"], json!("CREATE"));
    assert_eq!(line["kind"], json!("agent"));
    assert!(
        line["reason"]
            .as_str()
            .unwrap()
            .contains("capabilities is empty")
    );
    let metrics = app.metrics.encode().unwrap();
    assert!(
        metrics.contains(r#"agent_starts_denied_total{reason="ADMISSION_DENY_POLICY"} 1"#),
        "{metrics}"
    );
}

/// The lines of `lines` whose `code` is `code`.
fn with_code<'a>(lines: &'a [Value], code: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["code"] == json!(code)).collect()
}

#[tokio::test]
async fn a_refused_approval_is_logged_as_promotion_denied_with_the_actor() {
    let authz = FixedAuthorizer::new(Ok(true)).with_verb(PROMOTE_VERB, Ok(false));
    let app = app_with_authz(world().view, authz, Duration::from_secs(5));
    let hash = spec_hash(&governed_spec()).unwrap();
    let lines = lines(|| async {
        let (_, answer) = post(
            &app.router,
            "/validate/agentpromotions",
            bytes(&promotion_create(GOVERNED, &hash)),
        )
        .await;
        assert_denied(&answer, DecisionCode::DenyUnauthorized);
    })
    .await;
    let denied = with_code(&lines, "PROMOTION_DENIED");
    let [line] = denied.as_slice() else {
        panic!("one PROMOTION_DENIED line expected in {lines:?}")
    };
    assert_eq!(line["level"], json!("WARN"));
    assert_eq!(line["actor"], json!("alice@example.com"));
    assert_eq!(line["agent"], json!(GOVERNED));
    assert_eq!(line["namespace"], json!(NS));
    assert_eq!(line["kind"], json!("agentpromotion"));
    assert_eq!(line["uid"], json!(PROMOTION_UID));
    assert!(
        line["reasons"]
            .as_str()
            .unwrap()
            .contains("actor_unauthorized"),
        "{line}"
    );
    assert!(
        line["reason"].as_str().unwrap().contains("'promote'"),
        "{line}"
    );
    // The decision line beside it, with the decision's code.
    let decision = with_code(&lines, "ADMISSION_DENY_UNAUTHORIZED");
    assert_eq!(decision.len(), 1, "{lines:?}");
    assert_eq!(decision[0]["requester"], json!("alice@example.com"));
    assert_eq!(decision[0]["kind"], json!("agentpromotion"));

    // A dry run logs the decision, but no promotion attempt.
    let mut dry = promotion_create(GOVERNED, &hash);
    dry["request"]["dryRun"] = json!(true);
    let lines = lines_of(&app, &dry).await;
    assert!(
        with_code(&lines, "PROMOTION_DENIED").is_empty(),
        "{lines:?}"
    );
    assert_eq!(with_code(&lines, "ADMISSION_DENY_UNAUTHORIZED").len(), 1);
}

/// The lines logged while `app` answers `review` at `/validate/agentpromotions`.
async fn lines_of(app: &App, review: &Value) -> Vec<Value> {
    lines(|| async {
        post(&app.router, "/validate/agentpromotions", bytes(review)).await;
    })
    .await
}

#[tokio::test]
async fn an_external_decision_names_the_client_certificate_that_asked() {
    // The real TLS server on this thread (so its lines reach this thread's subscriber), asked
    // with a client certificate whose subject is CN=orchestrator-1.
    let (served, _) = common::served::Served::webhook("log", world().view).await;
    let lines = lines(|| async {
        let (status, answer) = served
            .ask(&json!({"namespace": NS, "agent": "nobody"}))
            .await;
        assert_eq!(status, 200, "{answer}");
    })
    .await;
    let decision = with_code(&lines, "ADMISSION_DENY_AGENT_NOT_FOUND");
    let [line] = decision.as_slice() else {
        panic!("one decision line expected in {lines:?}")
    };
    assert_eq!(line["message"], json!("admission decision"));
    assert_eq!(line["kind"], json!("external"));
    assert_eq!(
        line["requester"],
        json!(format!("CN={}", common::served::CLIENT_CN))
    );
    assert_eq!(line["agent"], json!("nobody"));
    assert_eq!(line["namespace"], json!(NS));
    assert_eq!(line["operation"], json!("CREATE"));
    assert_eq!(line["allowed"], json!(false));
}
