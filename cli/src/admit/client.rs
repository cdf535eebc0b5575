//! One question to `POST /v1/admit`: HTTP/1.1 over rustls with a client certificate, the
//! webhook's CA as the only root. Each failure says whether trying again could help
//! ([`AdmitError::retryable`]): a connection that failed or broke, a timeout, an HTTP 5xx (a
//! webhook whose caches have not synced yet answers 503). A certificate refused on either side,
//! a request refused (4xx: a bad request, a client `--admit-clients` does not list) or an
//! answer that does not parse will not change by asking again.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agentgov_webhook::external::{ADMIT_PATH, AdmitRequest};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Request, StatusCode, Uri, header};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, ClientConfig, RootCertStore};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// An answer is a few hundred bytes; more is not an answer.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// The flags or the files they name: nothing was sent.
    #[error("{0}")]
    Config(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    /// The TLS handshake, or the connection it secured, failed.
    #[error("TLS with {addr}: {source}")]
    Tls {
        addr: String,
        source: std::io::Error,
    },
    /// The exchange broke off (also how a TLS 1.3 refusal of the client certificate shows:
    /// the server's alert arrives after the client's side of the handshake is done).
    #[error("HTTP: {}", causes(.0))]
    Http(#[from] hyper::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The webhook answered, but not with a decision.
    #[error("the webhook answered HTTP {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("the answer is not an admission answer: {0}")]
    Answer(String),
}

impl AdmitError {
    /// Whether another attempt could be answered differently.
    pub fn retryable(&self) -> bool {
        match self {
            AdmitError::Config(_) | AdmitError::Answer(_) => false,
            AdmitError::Status { status, .. } => status.is_server_error(),
            AdmitError::Timeout(_) | AdmitError::Connect { .. } => true,
            AdmitError::Tls { .. } | AdmitError::Http(_) => !refused_by_tls(self),
        }
    }
}

/// `err` and what caused it, as one line (hyper's errors say only "connection error"; the TLS
/// alert behind it is what a user can act on).
fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

/// Whether `err` was caused by a certificate refused, on either side: asking again with the
/// same certificates is refused again.
fn refused_by_tls(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        // An io::Error's `source` skips the error it wraps (its Display shows it): look inside.
        let inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        if let Some(tls) = inner.unwrap_or(e).downcast_ref::<rustls::Error>() {
            return match tls {
                rustls::Error::InvalidCertificate(_)
                | rustls::Error::NoCertificatesPresented
                | rustls::Error::UnsupportedNameType => true,
                rustls::Error::AlertReceived(alert) => matches!(
                    alert,
                    AlertDescription::CertificateRequired
                        | AlertDescription::BadCertificate
                        | AlertDescription::UnsupportedCertificate
                        | AlertDescription::CertificateRevoked
                        | AlertDescription::CertificateExpired
                        | AlertDescription::CertificateUnknown
                        | AlertDescription::UnknownCA
                        | AlertDescription::AccessDenied
                        | AlertDescription::HandshakeFailure
                ),
                _ => false,
            };
        }
        cause = e.source();
    }
    false
}

/// Where to ask, and with which certificates.
#[derive(Clone)]
pub struct Target {
    host: String,
    port: u16,
    /// `host[:port]`, for the Host header and messages.
    authority: String,
    path: String,
    server_name: ServerName<'static>,
    tls: TlsConnector,
}

impl Target {
    /// `url` is the webhook's base URL (`https://host:port`, maybe with a path prefix for a
    /// proxy); the question goes to `<url>/v1/admit`.
    /// `server_name`, when given, is the name the webhook's certificate is verified for
    /// instead of the URL's host (a load balancer's address in the URL, the Service's DNS name in
    /// the certificate).
    pub fn new(
        url: &str,
        server_name: Option<&str>,
        tls: ClientConfig,
    ) -> Result<Self, AdmitError> {
        let bad = |why: &str| AdmitError::Config(format!("--url {url:?}: {why}"));
        let uri: Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
        if uri.scheme_str() != Some("https") {
            return Err(bad("the scheme must be https"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let host = authority.host();
        // An IPv6 address is bracketed in a URL, not in a socket address or a server name.
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let name = server_name.unwrap_or(&bare).to_string();
        let server_name = ServerName::try_from(name)
            .map_err(|e| AdmitError::Config(format!("{host:?} is no server name: {e}")))?;
        if uri.query().is_some() {
            return Err(bad("a query is not part of the base URL"));
        }
        let prefix = uri.path().trim_end_matches('/');
        Ok(Target {
            port: authority.port_u16().unwrap_or(443),
            authority: authority.as_str().to_string(),
            host: bare,
            path: format!("{prefix}{ADMIT_PATH}"),
            server_name,
            tls: TlsConnector::from(Arc::new(tls)),
        })
    }

    /// Ask once: the HTTP status and the answer, for a status of 200 or 4xx with an answer.
    pub async fn ask(
        &self,
        request: &AdmitRequest,
        timeout: Duration,
    ) -> Result<Answered, AdmitError> {
        match tokio::time::timeout(timeout, self.exchange(request)).await {
            Ok(answered) => answered,
            Err(_) => Err(AdmitError::Timeout(timeout)),
        }
    }

    async fn exchange(&self, request: &AdmitRequest) -> Result<Answered, AdmitError> {
        let addr = format!("{}:{}", self.host, self.port);
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|source| AdmitError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let stream = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|source| AdmitError::Tls { addr, source })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // The connection is driven beside the request and ends with it (one request each).
        let driver = tokio::spawn(connection);
        let body = serde_json::to_vec(request)
            .map_err(|e| AdmitError::Config(format!("cannot encode the request: {e}")))?;
        let http = Request::post(&self.path)
            .header(header::HOST, &self.authority)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("agentgov/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| AdmitError::Config(format!("cannot build the request: {e}")))?;
        let response = sender.send_request(http).await?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| match e.downcast::<hyper::Error>() {
                Ok(e) => AdmitError::Http(*e),
                Err(e) => AdmitError::Answer(format!("reading it: {e}")),
            })?
            .to_bytes();
        driver.abort();
        answered(status, &bytes)
    }
}

/// What the webhook answered: its status, the decision and the answer's JSON as sent.
#[derive(Debug)]
pub struct Answered {
    pub status: StatusCode,
    pub verdict: Verdict,
    pub json: String,
}

/// What this client reads of an answer: the decision. The rest (the spec, the proof, the
/// status) is printed as the webhook sent it and not parsed, so that an answer from a newer
/// webhook (a spec with fields this client does not know) is still acted on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Verdict {
    pub allowed: bool,
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// An answer of 200 (a decision) or 4xx (a request refused, with its reason), else an error.
fn answered(status: StatusCode, bytes: &[u8]) -> Result<Answered, AdmitError> {
    let text = String::from_utf8_lossy(bytes).trim().to_string();
    let parsed = serde_json::from_str::<Verdict>(&text);
    match parsed {
        Ok(verdict) if status == StatusCode::OK || status.is_client_error() => Ok(Answered {
            status,
            verdict,
            json: text,
        }),
        Err(e) if status == StatusCode::OK => Err(AdmitError::Answer(e.to_string())),
        // A 5xx with an answer (caches not synced) says why in its code and message.
        Ok(verdict) => Err(AdmitError::Status {
            status,
            body: cut(&format!("{}: {}", verdict.code, verdict.message), 512),
        }),
        Err(_) => Err(AdmitError::Status {
            status,
            body: cut(&text, 512),
        }),
    }
}

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((at, _)) => format!("{}…", &text[..at]),
    }
}

/// A client config: the webhook's CA as the only root (not the system's: it is the CA that
/// signed the webhook's serving certificate), the client certificate when given, TLS 1.2 and 1.3
/// (ring), ALPN http/1.1.
pub fn tls_config(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<ClientConfig, AdmitError> {
    let config_error = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        AdmitError::Config(format!("{what} {}: {e}", path.display()))
    };
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca).map_err(|e| config_error("--ca", ca, &e))? {
        roots.add(cert).map_err(|e| config_error("--ca", ca, &e))?;
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| AdmitError::Config(format!("TLS: {e}")))?
            .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = certificates(cert).map_err(|e| config_error("--cert", cert, &e))?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| config_error("--key", key, &e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| AdmitError::Config(format!("--cert and --key: {e}")))?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The certificates of a PEM file; at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ClientConfig {
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth()
    }

    #[test]
    fn the_question_goes_to_v1_admit_under_the_base_url() {
        let target =
            Target::new("https://webhook.agentgov-system.svc:8443", None, config()).unwrap();
        assert_eq!(target.path, "/v1/admit");
        assert_eq!(target.port, 8443);
        assert_eq!(target.authority, "webhook.agentgov-system.svc:8443");
        let proxied = Target::new("https://gw.example/agentgov/", None, config()).unwrap();
        assert_eq!(proxied.path, "/agentgov/v1/admit");
        assert_eq!(proxied.port, 443);
        let v6 = Target::new("https://[::1]:9443", None, config()).unwrap();
        assert_eq!(v6.host, "::1");
        assert!(matches!(v6.server_name, ServerName::IpAddress(_)));
        // Another name to verify: the address stays the URL's.
        let named = Target::new(
            "https://10.0.0.7:443",
            Some("agentgov-webhook.agentgov-system.svc"),
            config(),
        )
        .unwrap();
        assert_eq!(named.host, "10.0.0.7");
        assert_eq!(
            named.server_name.to_str(),
            "agentgov-webhook.agentgov-system.svc"
        );
        assert!(Target::new("https://h:1", Some("bad name!"), config()).is_err());
        for bad in ["http://h:1", "h:1", "https://h:1/?x=1", "https://"] {
            assert!(
                matches!(Target::new(bad, None, config()), Err(AdmitError::Config(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn only_failures_that_may_pass_are_retried() {
        let io = |kind| std::io::Error::from(kind);
        let connect = AdmitError::Connect {
            addr: "a".into(),
            source: io(std::io::ErrorKind::ConnectionRefused),
        };
        assert!(connect.retryable());
        assert!(AdmitError::Timeout(Duration::from_secs(1)).retryable());
        let status = |code: u16| AdmitError::Status {
            status: StatusCode::from_u16(code).unwrap(),
            body: String::new(),
        };
        assert!(status(503).retryable());
        assert!(status(500).retryable());
        assert!(!status(404).retryable());
        assert!(!AdmitError::Answer("x".into()).retryable());
        assert!(!AdmitError::Config("x".into()).retryable());
        let tls = |e: rustls::Error| AdmitError::Tls {
            addr: "a".into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        };
        assert!(
            !tls(rustls::Error::AlertReceived(
                AlertDescription::CertificateRequired
            ))
            .retryable()
        );
        assert!(
            !tls(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
            .retryable()
        );
        assert!(
            tls(rustls::Error::AlertReceived(
                AlertDescription::InternalError
            ))
            .retryable()
        );
        let reset = AdmitError::Tls {
            addr: "a".into(),
            source: io(std::io::ErrorKind::ConnectionReset),
        };
        assert!(reset.retryable());
    }

    #[test]
    fn a_decision_is_a_200_answer_and_a_refusal_a_4xx_one() {
        let allow = br#"{"allowed":true,"code":"ADMISSION_ALLOW","message":"m","agent":"a","namespace":"n"}"#;
        let ok = answered(StatusCode::OK, allow).unwrap();
        assert!(ok.verdict.allowed);
        assert_eq!(ok.verdict.code, "ADMISSION_ALLOW");
        assert_eq!(ok.json.as_bytes(), allow);
        let bad = br#"{"allowed":false,"code":"ADMISSION_DENY_BAD_REQUEST","message":"m"}"#;
        let refused = answered(StatusCode::BAD_REQUEST, bad).unwrap();
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        // A client not listed is refused with an answer (403), not an error to retry.
        let unlisted = br#"{"allowed":false,"code":"ADMISSION_DENY_UNAUTHORIZED","message":"m"}"#;
        let forbidden = answered(StatusCode::FORBIDDEN, unlisted).unwrap();
        assert_eq!(forbidden.verdict.code, "ADMISSION_DENY_UNAUTHORIZED");
        // An answer with more than this client knows of (a newer webhook's spec) is read.
        let newer = br#"{"allowed":true,"code":"ADMISSION_ALLOW","spec":{"novel":[1]},"proof":{}}"#;
        assert!(answered(StatusCode::OK, newer).unwrap().verdict.allowed);
        // Unsynced caches: an answer, but a 503, so no decision and retried.
        let unsynced = br#"{"allowed":false,"code":"ADMISSION_DENY_UNAVAILABLE","message":"m"}"#;
        let unavailable = answered(StatusCode::SERVICE_UNAVAILABLE, unsynced).unwrap_err();
        assert!(unavailable.retryable(), "{unavailable}");
        assert!(
            unavailable
                .to_string()
                .ends_with("HTTP 503 Service Unavailable: ADMISSION_DENY_UNAVAILABLE: m"),
            "{unavailable}"
        );
        assert!(matches!(
            answered(StatusCode::OK, b"<html>"),
            Err(AdmitError::Answer(_))
        ));
        let unavailable = answered(StatusCode::SERVICE_UNAVAILABLE, b"busy").unwrap_err();
        assert!(unavailable.retryable(), "{unavailable}");
        let not_found = answered(StatusCode::NOT_FOUND, b"").unwrap_err();
        assert!(!not_found.retryable(), "{not_found}");
    }

    #[test]
    fn missing_or_empty_files_are_named() {
        let missing = Path::new("/nonexistent/ca.pem");
        let err = tls_config(missing, None).unwrap_err();
        assert!(
            err.to_string().contains("--ca /nonexistent/ca.pem"),
            "{err}"
        );
        let empty = std::env::temp_dir().join(format!("agentgov-cli-empty-{}", std::process::id()));
        std::fs::write(&empty, "").unwrap();
        let err = tls_config(&empty, None).unwrap_err();
        let _ = std::fs::remove_file(&empty);
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }
}
