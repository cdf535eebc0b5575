//! A router served for real (`serve_tls`, mTLS required), its certificates written to a
//! directory of their own, and asked `POST /v1/admit` over mTLS as an orchestrator outside
//! Kubernetes would. The `agentgov admit` client's own tests (`cli/tests/`) serve the webhook
//! with this module too.
#![allow(clippy::unwrap_used)] // tests may unwrap (clippy.toml: allow-unwrap-in-tests)

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agentgov_webhook::config::ClientAuth;
use agentgov_webhook::server::{ServeOptions, serve_tls};
use agentgov_webhook::tls::{ReloadingTls, TlsFiles};
use axum::Router;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

use super::pki::Ca;

/// The subject of the client certificate [`Served`] asks with.
pub const CLIENT_CN: &str = "orchestrator-1";

/// Certificates in a directory: the server's and the CA that signed it (`ca.pem`, what a client
/// trusts); from the CA the server trusts for clients (`client-ca.pem`), `client.pem` (CN
/// [`CLIENT_CN`]) and `unlisted.pem` (CN `batch-runner`); and `stranger.pem`, with the CN
/// [`CLIENT_CN`] but from a CA the server does not trust. Each with its `-key.pem`.
pub struct Pem {
    pub dir: PathBuf,
}

impl Pem {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "agentgov-admit-{name}-{}-{}",
            std::process::id(),
            jiff::Timestamp::now().as_nanosecond()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        // Separate CAs, as deployed: one signs the serving certificate, one the clients'.
        let serving_ca = Ca::new("agentgov serving CA");
        let client_ca = Ca::new("agentgov client CA");
        let stranger_ca = Ca::new("another CA");
        let (cert, key) = serving_ca.leaf("agentgov-webhook", true, false);
        let (client, client_key) = client_ca.leaf(CLIENT_CN, false, false);
        let (unlisted, unlisted_key) = client_ca.leaf("batch-runner", false, false);
        let (stranger, stranger_key) = stranger_ca.leaf(CLIENT_CN, false, false);
        for (file, pem) in [
            ("tls.crt", cert),
            ("tls.key", key),
            ("ca.pem", serving_ca.pem()),
            ("client-ca.pem", client_ca.pem()),
            ("client.pem", client),
            ("client-key.pem", client_key),
            ("unlisted.pem", unlisted),
            ("unlisted-key.pem", unlisted_key),
            ("stranger.pem", stranger),
            ("stranger-key.pem", stranger_key),
        ] {
            std::fs::write(dir.join(file), pem).unwrap();
        }
        Pem { dir }
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

impl Drop for Pem {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A webhook serving `router` on loopback over mTLS until dropped.
pub struct Served {
    pub addr: SocketAddr,
    pub pem: Pem,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Served {
    /// Serve `router` with the TLS of a new [`Pem`] on a free port.
    pub async fn router(name: &str, router: Router) -> Served {
        let pem = Pem::new(name);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Served::on(listener, pem, router).await
    }

    /// Serve `router` on `listener` with the certificates of `pem`.
    pub async fn on(listener: TcpListener, pem: Pem, router: Router) -> Served {
        let files = TlsFiles {
            cert: pem.dir.join("tls.crt"),
            key: pem.dir.join("tls.key"),
            client_ca: Some(pem.dir.join("client-ca.pem")),
            client_auth: ClientAuth::Required,
        };
        let (tls, _) = ReloadingTls::load(files).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve_tls(
            listener,
            tls,
            router,
            ServeOptions {
                handshake_timeout: Duration::from_secs(5),
                drain_timeout: Duration::from_secs(1),
                idle_timeout: Duration::from_secs(120),
                shutting_down: None,
            },
            async {
                let _ = stopped.await;
            },
        ));
        Served {
            addr,
            pem,
            _stop: stop,
        }
    }

    /// `POST /v1/admit` with `body`, over mTLS with the client certificate `client.pem`:
    /// the HTTP status and the answer.
    pub async fn ask(&self, body: &Value) -> (u16, Value) {
        let config = client_config(&self.pem);
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let tls = TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(connection);
        let request = hyper::Request::post("/v1/admit")
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }
}

/// Trust the serving CA, present `client.pem`.
fn client_config(pem: &Pem) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pem.dir.join("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_file_iter(pem.dir.join("client.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(pem.dir.join("client-key.pem")).unwrap();
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap()
}
