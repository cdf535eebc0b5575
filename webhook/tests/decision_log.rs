//! The decision log line of `POST /validate/agents`: JSON with the seed's fields.
//!
//! In a test binary of its own: the subscriber is set for this thread only, and tracing caches
//! per-callsite interest globally, so tests in other threads of a shared binary could register
//! the callsite first and hide the line from this subscriber (seen as a flaky failure).
#![allow(clippy::unwrap_used)] // tests may unwrap (clippy.toml: allow-unwrap-in-tests)

mod common;

use std::time::Duration;

use agentgov_api::admission::DecisionCode;
use common::*;
use serde_json::json;

#[tokio::test]
async fn decision_log_line_is_json_with_the_fields() {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

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
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = app_with(world().view, Ok(false), Duration::from_secs(5));
    let (_, answer) = post(
        &app.router,
        "/validate/agents",
        bytes(&agent_create("auditor-2", &governed_spec())),
    )
    .await;
    assert_denied(&answer, DecisionCode::DenyUnauthorized);

    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("admission decision"))
        .unwrap_or_else(|| panic!("no decision line in {text}"));
    let line: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(line["code"], json!("ADMISSION_DENY_UNAUTHORIZED"));
    assert_eq!(line["agent"], json!("auditor-2"));
    assert_eq!(line["namespace"], json!(NS));
    assert_eq!(line["requester"], json!("alice@example.com"));
    assert_eq!(line["operation"], json!("CREATE"));
    assert_eq!(line["kind"], json!("agent"));
    assert!(line["reason"].as_str().unwrap().contains("promote"));
    let metrics = app.metrics.encode().unwrap();
    assert!(
        metrics.contains(r#"agent_starts_denied_total{reason="ADMISSION_DENY_UNAUTHORIZED"} 1"#),
        "{metrics}"
    );
}
