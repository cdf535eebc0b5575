//! The TLS server with certificates made by rcgen: mTLS refusals happen at the handshake (the
//! handler is never reached), chains are accepted, `optional`/`none` behave, and certificate
//! and client-CA rotation by a Kubernetes-style `..data` symlink swap is picked up without a
//! restart and without breaking open connections.
#![cfg(unix)]
#![allow(clippy::unwrap_used)] // tests may unwrap (clippy.toml: allow-unwrap-in-tests)

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentgov_webhook::config::ClientAuth;
use agentgov_webhook::metrics::Metrics;
use agentgov_webhook::server::{ServeOptions, serve_tls};
use agentgov_webhook::tls::{ReloadingTls, TlsFiles};
use axum::http::{Request, StatusCode};
use common::pki::Ca;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

// ---- Files laid out like a Secret volume ---------------------------------------------------

struct SecretDir {
    root: PathBuf,
    generation: u32,
}

impl SecretDir {
    fn new(name: &str) -> Self {
        let root = std::env::temp_dir().join(format!(
            "agentgov-webhook-tls-{name}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        SecretDir {
            root,
            generation: 0,
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.root.join(file)
    }

    /// Write a new generation and swap `..data` to it atomically, as the kubelet does.
    fn publish(&mut self, files: &[(&str, &str)]) {
        self.generation += 1;
        let dir_name = format!("..gen_{}", self.generation);
        let dir = self.root.join(&dir_name);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, contents) in files {
            std::fs::write(dir.join(name), contents).unwrap();
        }
        let tmp = self.root.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&dir_name, &tmp).unwrap();
        std::fs::rename(&tmp, self.root.join("..data")).unwrap();
        for (name, _) in files {
            let link = self.root.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(Path::new("..data").join(name), &link).unwrap();
            }
        }
    }
}

impl Drop for SecretDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

// ---- Server and client ---------------------------------------------------------------------

struct Server {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    reload_metrics: Arc<Metrics>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Server {
    fn handler_hits(&self) -> u64 {
        let text = self.metrics.encode().unwrap();
        text.lines()
            .filter(|l| l.starts_with("admission_review_duration_seconds_count"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

async fn start(secret: &SecretDir, client_auth: ClientAuth, handshake_timeout: Duration) -> Server {
    let files = TlsFiles {
        cert: secret.path("tls.crt"),
        key: secret.path("tls.key"),
        client_ca: Some(secret.path("ca.crt")),
        client_auth,
    };
    let (tls, watched) = ReloadingTls::load(files).await.unwrap();
    let reload_metrics = Arc::new(Metrics::new());
    tls.spawn_reloader(watched, Duration::from_millis(50), &reload_metrics);
    let app = app(world().view);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_tls(
        listener,
        tls,
        app.router,
        ServeOptions {
            handshake_timeout,
            drain_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(120),
            shutting_down: None,
        },
        async {
            let _ = stopped.await;
        },
    ));
    Server {
        addr,
        metrics: app.metrics,
        reload_metrics,
        _stop: stop,
    }
}

fn client_config(
    server_ca: &str,
    identity: Option<&(String, String)>,
) -> Arc<rustls::ClientConfig> {
    client_config_versions(server_ca, identity, rustls::DEFAULT_VERSIONS)
}

fn client_config_versions(
    server_ca: &str,
    identity: Option<&(String, String)>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(server_ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<_> = CertificateDer::pem_slice_iter(cert.as_bytes())
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

async fn connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// The server's leaf certificate as this connection saw it.
fn peer_leaf(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn http(stream: TlsStream<TcpStream>) -> Result<Sender, String> {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn review(sender: &mut Sender) -> Result<(StatusCode, serde_json::Value), String> {
    let request = Request::post("/validate/pods")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(bytes(&pod_review(Some(GOVERNED))))))
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((
        status,
        serde_json::from_slice(&body).map_err(|e| e.to_string())?,
    ))
}

/// Connect and send one review; an error anywhere (handshake, alert, reset) is `Err`.
async fn try_review(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<(StatusCode, serde_json::Value), String> {
    let stream = connect(addr, config).await.map_err(|e| e.to_string())?;
    let mut sender = http(stream).await?;
    review(&mut sender).await
}

struct Pki {
    ca: Ca,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    let ca = Ca::new("agentgov test CA");
    let server = ca.leaf("agentgov-webhook", true, false);
    let client = ca.leaf("kube-apiserver-webhook-client", false, false);
    Pki { ca, server, client }
}

fn secret(name: &str, pki: &Pki) -> SecretDir {
    let mut dir = SecretDir::new(name);
    dir.publish(&[
        ("tls.crt", &pki.server.0),
        ("tls.key", &pki.server.1),
        ("ca.crt", &pki.ca.pem()),
    ]);
    dir
}

const HANDSHAKE: Duration = Duration::from_secs(5);

// ---- Tests ---------------------------------------------------------------------------------

#[tokio::test]
async fn good_client_reaches_the_handler() {
    let pki = pki();
    let dir = secret("good", &pki);
    let server = start(&dir, ClientAuth::Required, HANDSHAKE).await;
    let (status, answer) = try_review(server.addr, client_config(&pki.ca.pem(), Some(&pki.client)))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(allowed(&answer), "{answer:#}");
    assert_eq!(server.handler_hits(), 1);
}

#[tokio::test]
async fn good_client_over_tls12_and_h2() {
    let pki = pki();
    let dir = secret("tls12", &pki);
    let server = start(&dir, ClientAuth::Required, HANDSHAKE).await;
    let config =
        client_config_versions(&pki.ca.pem(), Some(&pki.client), &[&rustls::version::TLS12]);
    let (status, _) = try_review(server.addr, config).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    // ALPN h2, as the API server's Go client negotiates it.
    let mut config = (*client_config(&pki.ca.pem(), Some(&pki.client))).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let stream = connect(server.addr, Arc::new(config)).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
}

#[tokio::test]
async fn client_without_certificate_is_refused_at_the_handshake() {
    let pki = pki();
    let dir = secret("nocert", &pki);
    let server = start(&dir, ClientAuth::Required, HANDSHAKE).await;
    assert!(
        try_review(server.addr, client_config(&pki.ca.pem(), None))
            .await
            .is_err()
    );
    // With TLS 1.2 the refusal is visible in the handshake itself.
    let config = client_config_versions(&pki.ca.pem(), None, &[&rustls::version::TLS12]);
    assert!(connect(server.addr, config).await.is_err());
    assert_eq!(server.handler_hits(), 0);
}

#[tokio::test]
async fn client_signed_by_another_ca_is_refused() {
    let pki = pki();
    let dir = secret("otherca", &pki);
    let server = start(&dir, ClientAuth::Required, HANDSHAKE).await;
    let stranger = Ca::new("someone else").leaf("kube-apiserver-webhook-client", false, false);
    assert!(
        try_review(server.addr, client_config(&pki.ca.pem(), Some(&stranger)))
            .await
            .is_err()
    );
    let config = client_config_versions(&pki.ca.pem(), Some(&stranger), &[&rustls::version::TLS12]);
    assert!(connect(server.addr, config).await.is_err());
    assert_eq!(server.handler_hits(), 0);
}

#[tokio::test]
async fn expired_client_certificate_is_refused() {
    let pki = pki();
    let dir = secret("expired", &pki);
    let server = start(&dir, ClientAuth::Required, HANDSHAKE).await;
    let expired = pki.ca.leaf("kube-apiserver-webhook-client", false, true);
    assert!(
        try_review(server.addr, client_config(&pki.ca.pem(), Some(&expired)))
            .await
            .is_err()
    );
    assert_eq!(server.handler_hits(), 0);
}

#[tokio::test]
async fn client_chain_through_an_intermediate_is_accepted() {
    let pki = pki();
    let dir = secret("chain", &pki);
    let server = start(&dir, ClientAuth::Required, HANDSHAKE).await;
    let intermediate = pki.ca.intermediate("front-proxy intermediate");
    let (leaf, key) = intermediate.leaf("kube-apiserver-webhook-client", false, false);
    let chain = format!("{leaf}{}", intermediate.pem());
    let (status, _) = try_review(
        server.addr,
        client_config(&pki.ca.pem(), Some(&(chain, key))),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn optional_and_none_client_auth() {
    let pki = pki();
    let dir = secret("optional", &pki);
    let server = start(&dir, ClientAuth::Optional, HANDSHAKE).await;
    let (status, _) = try_review(server.addr, client_config(&pki.ca.pem(), None))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    // Optional still refuses a certificate it cannot verify.
    let stranger = Ca::new("someone else").leaf("x", false, false);
    assert!(
        try_review(server.addr, client_config(&pki.ca.pem(), Some(&stranger)))
            .await
            .is_err()
    );
    let server = start(&dir, ClientAuth::None, HANDSHAKE).await;
    let (status, _) = try_review(server.addr, client_config(&pki.ca.pem(), None))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
}

async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn serving_certificate_rotation_is_picked_up_without_dropping_connections() {
    let pki = pki();
    let mut dir = secret("rotate", &pki);
    let server = start(&dir, ClientAuth::Required, HANDSHAKE).await;
    let config = client_config(&pki.ca.pem(), Some(&pki.client));

    let first = connect(server.addr, config.clone()).await.unwrap();
    let old_leaf = peer_leaf(&first);
    let mut open = http(first).await.unwrap();
    assert_eq!(review(&mut open).await.unwrap().0, StatusCode::OK);

    // A half-written rotation (garbage) is refused and the old certificate stays.
    dir.publish(&[
        ("tls.crt", "not a certificate"),
        ("tls.key", &pki.server.1),
        ("ca.crt", &pki.ca.pem()),
    ]);
    let reload_metrics = server.reload_metrics.clone();
    wait_for("a failed reload", || {
        let m = reload_metrics.clone();
        async move {
            m.encode()
                .unwrap()
                .contains(r#"certificate_reload_total{result="error"} 1"#)
        }
    })
    .await;
    let stream = connect(server.addr, config.clone()).await.unwrap();
    assert_eq!(peer_leaf(&stream), old_leaf);

    // The new certificate, swapped in by symlink.
    let new_server = pki.ca.leaf("agentgov-webhook", true, false);
    dir.publish(&[
        ("tls.crt", &new_server.0),
        ("tls.key", &new_server.1),
        ("ca.crt", &pki.ca.pem()),
    ]);
    let expected = CertificateDer::from_pem_slice(new_server.0.as_bytes())
        .unwrap()
        .to_vec();
    wait_for("new connections to see the new certificate", || {
        let config = config.clone();
        let expected = expected.clone();
        async move {
            match connect(server.addr, config).await {
                Ok(stream) => peer_leaf(&stream) == expected,
                Err(_) => false,
            }
        }
    })
    .await;
    // The connection opened before the rotation still serves.
    assert_eq!(review(&mut open).await.unwrap().0, StatusCode::OK);
    assert!(
        server
            .reload_metrics
            .encode()
            .unwrap()
            .contains(r#"certificate_reload_total{result="success"} 1"#)
    );
}

#[tokio::test]
async fn client_ca_rotation_is_picked_up() {
    let pki = pki();
    let mut dir = secret("carotate", &pki);
    let server = start(&dir, ClientAuth::Required, HANDSHAKE).await;
    let new_ca = Ca::new("agentgov test CA 2");
    let new_client = new_ca.leaf("kube-apiserver-webhook-client", false, false);
    assert!(
        try_review(server.addr, client_config(&pki.ca.pem(), Some(&new_client)))
            .await
            .is_err()
    );
    // Overlap: both CAs trusted.
    dir.publish(&[
        ("tls.crt", &pki.server.0),
        ("tls.key", &pki.server.1),
        ("ca.crt", &format!("{}{}", pki.ca.pem(), new_ca.pem())),
    ]);
    let ca_pem = pki.ca.pem();
    wait_for("the new client CA", || {
        let config = client_config(&ca_pem, Some(&new_client));
        async move { try_review(server.addr, config).await.is_ok() }
    })
    .await;
    assert!(
        try_review(server.addr, client_config(&pki.ca.pem(), Some(&pki.client)))
            .await
            .is_ok()
    );
    // The old CA retired.
    dir.publish(&[
        ("tls.crt", &pki.server.0),
        ("tls.key", &pki.server.1),
        ("ca.crt", &new_ca.pem()),
    ]);
    let old_client = pki.client.clone();
    wait_for("the old client CA to be retired", || {
        let config = client_config(&ca_pem, Some(&old_client));
        async move { try_review(server.addr, config).await.is_err() }
    })
    .await;
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let pki = pki();
    let dir = secret("slow", &pki);
    let server = start(&dir, ClientAuth::Required, Duration::from_millis(300)).await;

    // Never starts the handshake.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "connection should be closed: {read:?}"
    );

    // Completes the handshake, then dribbles headers.
    let mut stream = connect(server.addr, client_config(&pki.ca.pem(), Some(&pki.client)))
        .await
        .unwrap();
    stream
        .write_all(b"POST /validate/pods HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
    match read {
        Ok(Ok(n)) => {
            // hyper may answer 408 before closing; either way the request never completes.
            assert!(
                n == 0 || buf.starts_with(b"HTTP/1.1 408"),
                "{:?}",
                &buf[..n]
            );
        }
        Ok(Err(_)) => {}
        Err(_) => panic!("slow headers were not cut off"),
    }
    assert_eq!(server.handler_hits(), 0);
}
