//! Who may ask `POST /v1/admit` (`--admit-clients`): through the router with the client
//! certificate the TLS layer would attach, and through the real TLS server. A listed client is
//! answered; any other is refused with 403 and `ADMISSION_DENY_UNAUTHORIZED` before its body is
//! read, logged and counted; nobody may ask by default, the API server included.
#![allow(clippy::unwrap_used)] // tests may unwrap (clippy.toml: allow-unwrap-in-tests)

mod common;

use agentgov_webhook::admit_clients::AdmitClients;
use agentgov_webhook::peer::PeerCertificate;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::served::{CLIENT_CN, Served};
use common::*;
use http_body_util::BodyExt;
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};
use tower::ServiceExt;

const UNAUTHORIZED: &str = r#"agent_starts_denied_total{reason="ADMISSION_DENY_UNAUTHORIZED"}"#;

/// A client certificate with the common name `cn` and the DNS name `dns`.
fn certificate(cn: &str, dns: &str) -> PeerCertificate {
    let mut params = rcgen::CertificateParams::new(vec![dns.to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    PeerCertificate::of(Some(&[CertificateDer::from(cert.der().to_vec())])).unwrap()
}

/// `body` asked of `app` by the holder of `peer` (none: no certificate), as the TLS layer
/// hands it to the router.
async fn ask_as(app: &App, peer: Option<PeerCertificate>, body: &[u8]) -> (StatusCode, Value) {
    let mut request = Request::post("/v1/admit")
        .header("content-type", "application/json")
        .body(Body::from(body.to_vec()))
        .unwrap();
    if let Some(peer) = peer {
        request.extensions_mut().insert(peer);
    }
    let response = app.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn question() -> Vec<u8> {
    bytes(&json!({"namespace": NS, "agent": GOVERNED}))
}

#[tokio::test]
async fn a_listed_client_is_answered_by_common_name_or_san() {
    let clients = AdmitClients::parse(["CN=orchestrator-1", "dns:nomad.acme.example"]).unwrap();
    let app = app_allowing(world().view, clients);
    for peer in [
        certificate("orchestrator-1", "elsewhere.example"),
        certificate("nomad", "nomad.acme.example"),
    ] {
        let (status, answer) = ask_as(&app, Some(peer), &question()).await;
        assert_eq!(status, StatusCode::OK, "{answer:#}");
        assert_eq!(answer["code"], json!("ADMISSION_ALLOW"), "{answer:#}");
    }
    assert_eq!(counter(&app, "agent_starts_allowed_total"), 2);
}

#[tokio::test]
async fn another_client_is_refused_before_its_request_is_read() {
    let app = app_allowing(
        world().view,
        AdmitClients::parse(["CN=orchestrator-1"]).unwrap(),
    );
    // Even a body that is no request: who asks is settled first (a 403, not a 400).
    for body in [question(), b"not json".to_vec()] {
        let peer = certificate("kube-apiserver-webhook-client", "apiserver.example");
        let (status, answer) = ask_as(&app, Some(peer), &body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer:#}");
        assert_eq!(answer["allowed"], json!(false));
        assert_eq!(answer["code"], json!("ADMISSION_DENY_UNAUTHORIZED"));
        let message = answer["message"].as_str().unwrap();
        assert!(
            message.contains("CN=kube-apiserver-webhook-client"),
            "{message}"
        );
        // Nothing of the agent is told.
        for field in ["agent", "namespace", "specHash", "governanceStatus", "spec"] {
            assert!(answer.get(field).is_none(), "{field}: {answer:#}");
        }
    }
    // No certificate (`--client-auth optional` or `none`): refused too.
    let (status, answer) = ask_as(&app, None, &question()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer:#}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("presented no certificate")
    );
    // Logged and counted like a decision, as a start refused.
    assert_eq!(counter(&app, UNAUTHORIZED), 3);
    assert_eq!(
        counter(
            &app,
            r#"admission_review_duration_seconds_count{kind="external"}"#
        ),
        3
    );
}

#[tokio::test]
async fn nobody_may_ask_by_default() {
    let app = app_allowing(world().view, AdmitClients::default());
    let (status, answer) = ask_as(
        &app,
        Some(certificate("orchestrator-1", "a.example")),
        &question(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer:#}");
    assert!(
        answer["message"].as_str().unwrap().contains("is empty"),
        "{answer:#}"
    );
    // The AdmissionReview endpoints are not concerned.
    let (status, review) = post(
        &app.router,
        "/validate/pods",
        bytes(&pod_review(Some(GOVERNED))),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(review["response"]["allowed"], json!(true), "{review:#}");
}

#[tokio::test]
async fn through_tls_the_certificate_of_the_connection_is_the_one_judged() {
    let listed = AdmitClients::parse([format!("CN={CLIENT_CN}")]).unwrap();
    let (served, _) = Served::allowing("listed", world().view, listed).await;
    let (status, answer) = served
        .ask(&json!({"namespace": NS, "agent": GOVERNED}))
        .await;
    assert_eq!(status, 200, "{answer:#}");
    assert_eq!(answer["code"], json!("ADMISSION_ALLOW"));
    let other = AdmitClients::parse(["CN=someone-else"]).unwrap();
    let (served, metrics) = Served::allowing("unlisted", world().view, other).await;
    let (status, answer) = served
        .ask(&json!({"namespace": NS, "agent": GOVERNED}))
        .await;
    assert_eq!(status, 403, "{answer:#}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains(&format!("CN={CLIENT_CN}")),
        "{answer:#}"
    );
    let text = metrics.encode().unwrap();
    assert!(text.contains(&format!("{UNAUTHORIZED} 1")), "{text}");
}
