//! `agentgov admit` against the real TLS server (mTLS required, `--admit-clients` listing one
//! client), as an orchestrator outside Kubernetes runs it: exit 0 with the spec and the proof
//! for an allowed agent, 1 for a deny (asked once), 2 when there is no decision (a client not
//! listed, a certificate refused at the handshake, a webhook that is down or answers 5xx past
//! the retries or the deadline). Retried through a webhook that comes up while it asks.
#![cfg(unix)]
#![allow(clippy::unwrap_used)] // tests may unwrap (clippy.toml: allow-unwrap-in-tests)

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agentgov_api::AgentSpec;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use common::*;
use serde_json::json;

fn agent(name: &str) -> String {
    format!("{NS}/{name}")
}

/// A port nothing listens on (it was free a moment ago).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

const EXTERNAL_REVIEWS: &str = r#"admission_review_duration_seconds_count{kind="external"}"#;

#[tokio::test]
async fn an_allowed_agent_exits_0_with_its_approved_spec_and_proof() {
    let (served, metrics) = Served::webhook("allowed").await;
    let mut args = served.flags();
    args.extend(images(&[&approved()]));
    let run = admit(&agent(GOVERNED), &args).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(run.failed_attempts(), 0, "{run:#?}");
    let answer = run.answer();
    assert_eq!(answer["allowed"], json!(true), "{answer:#}");
    assert_eq!(answer["code"], json!("ADMISSION_ALLOW"));
    assert_eq!(
        answer["message"],
        json!("a GOVERNED_VALID agent: passed the seven checks")
    );
    assert_eq!(answer["agent"], json!(GOVERNED));
    assert_eq!(answer["namespace"], json!(NS));
    assert_eq!(answer["governanceStatus"], json!("GOVERNED_VALID"));
    // The spec is the approved one: it hashes to the spec hash the proof signs.
    let spec: AgentSpec = serde_json::from_value(answer["spec"].clone()).unwrap();
    let hash = agentgov_api::hash::spec_hash(&spec).unwrap();
    assert_eq!(answer["specHash"], json!(hash));
    assert_eq!(answer["proof"]["specHash"], json!(hash));
    assert_eq!(answer["proof"]["keyId"], json!("k1"));
    assert_eq!(answer["proof"]["approvers"][0]["username"], json!("alice"));
    assert_eq!(answer["spec"]["runtime"]["images"], json!([approved()]));
    // A sandbox: its spec, and no proof to show.
    let run = admit(&agent(SANDBOX), &served.flags()).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    let answer = run.answer();
    assert_eq!(answer["spec"]["mode"], json!("sandbox"), "{answer:#}");
    assert!(answer.get("proof").is_none(), "{answer:#}");
    // Counted as agent starts, timed under their own kind.
    assert_eq!(metric(&metrics, "agent_starts_allowed_total"), 2);
    assert_eq!(metric(&metrics, EXTERNAL_REVIEWS), 2);
}

#[tokio::test]
async fn denies_exit_1_with_their_code_and_are_asked_once() {
    let (served, metrics) = Served::webhook("denied").await;
    let cases = [
        ("nobody", approved(), "ADMISSION_DENY_AGENT_NOT_FOUND"),
        (
            GOVERNED,
            "ghcr.io/acme/other:latest".to_string(),
            "ADMISSION_DENY_RUNTIME_MISMATCH",
        ),
    ];
    for (name, image, code) in &cases {
        let mut args = served.flags();
        args.extend(images(&[image]));
        let run = admit(&agent(name), &args).await;
        assert_eq!(run.code, Some(1), "{run:#?}");
        let answer = run.answer();
        assert_eq!(answer["allowed"], json!(false), "{answer}");
        assert_eq!(answer["code"], json!(code), "{answer}");
        assert!(answer["message"].as_str().unwrap().len() > 10, "{answer}");
        // A deny runs nothing: no spec or proof to run it under.
        assert!(answer.get("spec").is_none(), "{answer}");
        assert!(answer.get("proof").is_none(), "{answer}");
        assert_eq!(run.failed_attempts(), 0, "a deny is not retried: {run:#?}");
    }
    for (_, _, code) in &cases {
        let series = format!(r#"agent_starts_denied_total{{reason="{code}"}}"#);
        assert_eq!(metric(&metrics, &series), 1, "{series}");
    }
}

#[tokio::test]
async fn a_client_the_webhook_does_not_list_is_refused_with_403_and_exits_2() {
    let (served, metrics) = Served::webhook("unlisted").await;
    let mut args = served.flags_as("unlisted");
    args.extend(images(&[&approved()]));
    let run = admit(&agent(GOVERNED), &args).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    let answer = run.answer();
    assert_eq!(answer["allowed"], json!(false), "{answer:#}");
    assert_eq!(answer["code"], json!("ADMISSION_DENY_UNAUTHORIZED"));
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains("CN=batch-runner") && message.contains("--admit-clients"),
        "{message}"
    );
    // Nothing about the agent is told to a client that may not ask.
    assert!(answer.get("agent").is_none(), "{answer:#}");
    assert!(answer.get("specHash").is_none(), "{answer:#}");
    assert!(run.stderr.contains("HTTP 403 Forbidden"), "{run:#?}");
    // A refusal would repeat: not retried.
    assert_eq!(run.failed_attempts(), 0, "{run:#?}");
    let series = r#"agent_starts_denied_total{reason="ADMISSION_DENY_UNAUTHORIZED"}"#;
    assert_eq!(metric(&metrics, series), 1);
}

#[tokio::test]
async fn certificates_the_webhook_does_not_trust_are_refused_at_the_handshake() {
    let (served, metrics) = Served::webhook("untrusted").await;
    // The listed common name, from another CA; and no certificate at all.
    let cases = [
        (served.flags_as("stranger"), "UnknownCA"),
        (served.flags_without_certificate(), "CertificateRequired"),
    ];
    for (mut args, alert) in cases {
        args.extend(["--backoff".into(), "10ms".into()]);
        let run = admit(&agent(GOVERNED), &args).await;
        assert_eq!(run.code, Some(2), "{run:#?}");
        assert!(run.stdout.is_empty(), "{run:#?}");
        assert!(
            run.stderr
                .contains(&format!("received fatal alert: {alert}")),
            "{alert}: {run:#?}"
        );
        // The refusal would repeat: not retried.
        assert_eq!(run.failed_attempts(), 1, "{run:#?}");
    }
    // The handler was never reached.
    assert_eq!(metric(&metrics, EXTERNAL_REVIEWS), 0);
}

#[tokio::test]
async fn a_webhook_that_is_down_is_retried_then_exit_2() {
    let pem = Pem::new("down");
    let mut args = flags_to(free_port(), &pem);
    args.extend([
        "--retries".into(),
        "2".into(),
        "--backoff".into(),
        "10ms".into(),
    ]);
    let run = admit(&agent(GOVERNED), &args).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(run.stdout.is_empty(), "{run:#?}");
    assert_eq!(run.failed_attempts(), 3, "{run:#?}");
    for attempt in 1..=3 {
        assert!(
            run.stderr
                .contains(&format!("attempt {attempt} of 3 failed: cannot connect")),
            "{run:#?}"
        );
    }
    assert!(run.stderr.contains("no decision"), "{run:#?}");
}

#[tokio::test]
async fn the_deadline_ends_the_retries() {
    let pem = Pem::new("deadline");
    let mut args = flags_to(free_port(), &pem);
    args.extend(["--retries", "1000", "--backoff", "50ms", "--deadline", "1s"].map(String::from));
    let started = Instant::now();
    let run = admit(&agent(GOVERNED), &args).await;
    let took = started.elapsed();
    assert_eq!(run.code, Some(2), "{run:#?}");
    // Several attempts, far fewer than the retries allow, the last one saying why.
    let failed = run.failed_attempts();
    assert!((2..100).contains(&failed), "{run:#?}");
    let last = run
        .stderr
        .lines()
        .rfind(|l| l.contains("attempt "))
        .unwrap();
    assert!(
        last.contains("no time for another attempt before the deadline (1s)"),
        "{run:#?}"
    );
    // Generous: the process start is part of it, on a shared machine.
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[tokio::test]
async fn a_5xx_is_retried_until_answered() {
    // A stand-in webhook: unavailable twice (caches syncing, with its answer), then an allow.
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let router = Router::new().route(
        "/v1/admit",
        post(move || {
            let counter = counter.clone();
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                    let answer = json!({"allowed": false, "code": "ADMISSION_DENY_UNAVAILABLE",
                        "message": "the webhook's caches have not synced yet; retry shortly"});
                    return (StatusCode::SERVICE_UNAVAILABLE, answer.to_string());
                }
                let answer = json!({"allowed": true, "code": "ADMISSION_ALLOW", "message": "ok"});
                (StatusCode::OK, answer.to_string())
            }
        }),
    );
    let served = Served::router("5xx", router).await;
    let mut args = served.flags();
    args.extend(["--backoff".into(), "10ms".into()]);
    let run = admit(&agent(GOVERNED), &args).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(asked.load(Ordering::SeqCst), 3);
    assert_eq!(run.failed_attempts(), 2, "{run:#?}");
    assert!(
        run.stderr
            .contains("HTTP 503 Service Unavailable: ADMISSION_DENY_UNAVAILABLE"),
        "{run:#?}"
    );
    assert!(run.stderr.contains("answered at attempt 3"), "{run:#?}");
    // With fewer retries than it takes, no decision.
    asked.store(0, Ordering::SeqCst);
    args.extend(["--retries".into(), "1".into()]);
    let run = admit(&agent(GOVERNED), &args).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert_eq!(asked.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn it_retries_until_a_restarted_webhook_answers() {
    // The webhook is down when asked, and comes up on its port while the client retries.
    let pem = Pem::new("restart");
    let port = free_port();
    let mut args = flags_to(port, &pem);
    args.extend([
        "--cert".into(),
        pem.path("client.pem"),
        "--key".into(),
        pem.path("client-key.pem"),
    ]);
    args.extend(
        [
            "--retries",
            "100",
            "--backoff",
            "100ms",
            "--deadline",
            "30s",
        ]
        .map(String::from),
    );
    args.extend(images(&[&approved()]));
    let asking = tokio::spawn(async move { admit(&agent(GOVERNED), &args).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let (router, _) = router(view(), listed());
    let _served = Served::on(listener, pem, router).await;
    let run = asking.await.unwrap();
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(run.failed_attempts() >= 1, "{run:#?}");
    assert!(run.stderr.contains("cannot connect"), "{run:#?}");
    assert!(run.stderr.contains("answered at attempt"), "{run:#?}");
    assert_eq!(run.answer()["code"], json!("ADMISSION_ALLOW"));
}

#[tokio::test]
async fn a_request_the_webhook_would_refuse_is_not_sent() {
    let (served, metrics) = Served::webhook("invalid").await;
    let run = admit("Team_A/auditor", &served.flags()).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(run.stderr.contains("is not a namespace name"), "{run:#?}");
    let run = admit("auditor", &served.flags()).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(run.stderr.contains("is not NAMESPACE/NAME"), "{run:#?}");
    assert_eq!(metric(&metrics, EXTERNAL_REVIEWS), 0);
}

#[tokio::test]
async fn the_webhook_is_verified_for_the_name_given() {
    let (served, _) = Served::webhook("server-name").await;
    let port = served.addr.port();
    let ask = |name: &str| {
        let mut args = served.flags();
        // The address, and the name to verify the certificate for.
        args[1] = format!("https://127.0.0.1:{port}");
        args.extend(["--tls-server-name".into(), name.to_string()]);
        args.extend(images(&[&approved()]));
        args
    };
    let run = admit(&agent(GOVERNED), &ask("localhost")).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    // A name the certificate does not hold: refused by this side, and not asked again.
    let run = admit(&agent(GOVERNED), &ask("agentgov-webhook.elsewhere.svc")).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(
        run.stderr
            .contains("certificate not valid for name \"agentgov-webhook.elsewhere.svc\""),
        "{run:#?}"
    );
    assert_eq!(run.failed_attempts(), 1, "{run:#?}");
}
