//! An admission load generator: N keep-alive TLS connections (client certificate optional),
//! HTTP/1.1 (one request in flight a connection) or HTTP/2 (one or more streams in flight a
//! connection), each sending AdmissionReview bodies in turn for a measured duration after a
//! warm-up. Every answer may be checked (`response.allowed` as expected); failures and
//! unexpected answers are counted, never hidden.
//!
//! Shared by `e2e/src/bin/admission-load.rs` (against a running webhook: ours, or a peer such as
//! Gatekeeper) and `webhook/benches/load.rs` (in-process servers), which includes this file as
//! a module: it depends only on crates both have (tokio, rustls, hyper, serde_json, thiserror).

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Why a load run could not start (a failure during the run is counted, not returned).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("{0}")]
    Config(String),
    #[error("connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
}

/// The HTTP version spoken on every connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Http {
    H1,
    H2,
}

impl Http {
    pub fn parse(text: &str) -> Result<Self, LoadError> {
        match text {
            "1.1" | "1" | "http1" | "h1" => Ok(Http::H1),
            "2" | "http2" | "h2" => Ok(Http::H2),
            other => Err(LoadError::Config(format!(
                "HTTP version {other:?}: use 1.1 or 2"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Http::H1 => "1.1",
            Http::H2 => "2",
        }
    }

    fn alpn(self) -> &'static [u8] {
        match self {
            Http::H1 => b"http/1.1",
            Http::H2 => b"h2",
        }
    }
}

/// Where requests go: `host:port` to connect to, the name the server's certificate must carry,
/// and the request path (with any query, such as the API server's `?timeout=10s`).
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: String,
    pub server_name: String,
    pub path: String,
}

impl Target {
    /// From a URL such as `https://127.0.0.1:8443/validate/pods?timeout=10s`.
    pub fn from_url(url: &str) -> Result<Self, LoadError> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| LoadError::Config(format!("URL {url:?}: {e}")))?;
        if uri.scheme_str() != Some("https") {
            return Err(LoadError::Config(format!(
                "URL {url:?}: only https is spoken"
            )));
        }
        let host = uri
            .host()
            .ok_or_else(|| LoadError::Config(format!("URL {url:?} has no host")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(443);
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(Target {
            addr,
            server_name: host.to_string(),
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
        })
    }
}

/// A client configuration trusting the CAs in `ca_pem`, presenting `client` (certificate chain
/// and key, PEM) when given, and offering `http` by ALPN.
pub fn client_config(
    ca_pem: &[u8],
    client: Option<(&[u8], &[u8])>,
    http: Http,
) -> Result<Arc<rustls::ClientConfig>, LoadError> {
    let tls = |e: &dyn std::fmt::Display| LoadError::Tls(e.to_string());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
    }
    if roots.is_empty() {
        return Err(LoadError::Tls("no CA certificate in the CA file".into()));
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls(&e))?
    .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls(&e))?;
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| tls(&e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls(&e))?
        }
    };
    config.alpn_protocols = vec![http.alpn().to_vec()];
    Ok(Arc::new(config))
}

/// How to load a target.
#[derive(Clone, Debug)]
pub struct Plan {
    pub http: Http,
    pub connections: usize,
    /// Requests in flight on each connection (HTTP/2 streams; HTTP/1.1 takes 1).
    pub in_flight: usize,
    pub warmup: Duration,
    pub measure: Duration,
    /// Sent in turn; each connection starts at its own offset.
    pub bodies: Arc<Vec<Bytes>>,
    /// The `response.allowed` every answer must carry, if checked.
    pub expect_allowed: Option<bool>,
}

/// What a run measured: latencies of the requests sent inside the measured window (sorted).
#[derive(Debug, Default)]
pub struct Run {
    pub latencies: Vec<Duration>,
    /// Requests that failed (connection, HTTP status other than 2xx, unreadable body).
    pub errors: usize,
    /// Answers whose `response.allowed` was not the expected one (or that were not a review).
    pub unexpected: usize,
    pub elapsed: Duration,
    /// The first failure, for the report.
    pub first_error: Option<String>,
}

impl Run {
    pub fn requests_per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// The `p` quantile (0..=1) of the latencies, nearest rank.
    pub fn quantile(&self, p: f64) -> Option<Duration> {
        if self.latencies.is_empty() {
            return None;
        }
        let i = ((self.latencies.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize;
        self.latencies.get(i).copied()
    }

    /// The quantile in milliseconds, as text (`-` without requests).
    pub fn ms(&self, p: f64) -> String {
        self.quantile(p)
            .map_or_else(|| "-".into(), |d| format!("{:.3}", d.as_secs_f64() * 1e3))
    }

    fn merge(&mut self, other: Worker) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        self.unexpected += other.unexpected;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

#[derive(Default)]
struct Worker {
    latencies: Vec<Duration>,
    errors: usize,
    unexpected: usize,
    first_error: Option<String>,
}

impl Worker {
    fn fail(&mut self, counted: bool, error: String) {
        if counted {
            self.errors += 1;
        }
        if self.first_error.is_none() {
            self.first_error = Some(error);
        }
    }
}

#[derive(serde::Deserialize)]
struct Answer {
    response: Option<AnswerResponse>,
}

#[derive(serde::Deserialize)]
struct AnswerResponse {
    allowed: bool,
}

/// Whether `body` is an AdmissionReview answer with `response.allowed == expected`.
fn answered(body: &[u8], expected: bool) -> bool {
    serde_json::from_slice::<Answer>(body)
        .ok()
        .and_then(|a| a.response)
        .is_some_and(|r| r.allowed == expected)
}

/// Connect every connection first (handshakes are not measured), then load the target for
/// `plan.warmup + plan.measure`, on the current Tokio runtime.
pub async fn run(
    target: &Target,
    tls: Arc<rustls::ClientConfig>,
    plan: &Plan,
) -> Result<Run, LoadError> {
    if plan.bodies.is_empty() {
        return Err(LoadError::Config("no request body".into()));
    }
    if plan.connections == 0 || plan.in_flight == 0 {
        return Err(LoadError::Config(
            "connections and requests in flight must be at least 1".into(),
        ));
    }
    if plan.http == Http::H1 && plan.in_flight != 1 {
        return Err(LoadError::Config(
            "HTTP/1.1 keeps one request in flight a connection".into(),
        ));
    }
    let name = ServerName::try_from(target.server_name.clone())
        .map_err(|e| LoadError::Config(format!("server name {:?}: {e}", target.server_name)))?;
    let mut senders = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        senders.push(connect(target, &tls, name.clone(), plan.http).await?);
    }
    let start = Instant::now() + plan.warmup;
    let end = start + plan.measure;
    let mut tasks = Vec::new();
    let streams = plan.connections * plan.in_flight;
    for (connection, sender) in senders.into_iter().enumerate() {
        for (stream, sender) in sender.streams(plan.in_flight).into_iter().enumerate() {
            let bodies = Arc::clone(&plan.bodies);
            let path = target.path.clone();
            let host = target.server_name.clone();
            let expect = plan.expect_allowed;
            let offset = (connection * plan.in_flight + stream) * bodies.len() / streams;
            tasks.push(tokio::spawn(async move {
                drive(sender, bodies, offset, &path, &host, expect, start, end).await
            }));
        }
    }
    let mut run = Run {
        elapsed: plan.measure,
        ..Run::default()
    };
    for task in tasks {
        match task.await {
            Ok(worker) => run.merge(worker),
            Err(e) => {
                run.errors += 1;
                run.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    run.latencies.sort_unstable();
    Ok(run)
}

/// One connection's request sender.
enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    /// `n` senders on this connection: HTTP/2 streams; HTTP/1.1 has one (`n` is 1 there).
    fn streams(self, n: usize) -> Vec<Sender> {
        match self {
            Sender::H1(s) => vec![Sender::H1(s)],
            Sender::H2(s) => (0..n).map(|_| Sender::H2(s.clone())).collect(),
        }
    }

    async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> hyper::Result<hyper::Response<hyper::body::Incoming>> {
        match self {
            Sender::H1(s) => s.send_request(request).await,
            Sender::H2(s) => s.send_request(request).await,
        }
    }
}

async fn connect(
    target: &Target,
    tls: &Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
    http: Http,
) -> Result<Sender, LoadError> {
    let failed = |reason: String| LoadError::Connect {
        addr: target.addr.clone(),
        reason,
    };
    let tcp = TcpStream::connect(&target.addr)
        .await
        .map_err(|e| failed(e.to_string()))?;
    tcp.set_nodelay(true).map_err(|e| failed(e.to_string()))?;
    let stream = TlsConnector::from(Arc::clone(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| failed(format!("TLS handshake: {e}")))?;
    let io = TokioIo::new(stream);
    match http {
        Http::H1 => {
            let (sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| failed(format!("HTTP/1.1: {e}")))?;
            tokio::spawn(connection);
            Ok(Sender::H1(sender))
        }
        Http::H2 => {
            let (sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| failed(format!("HTTP/2: {e}")))?;
            tokio::spawn(connection);
            Ok(Sender::H2(sender))
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    mut sender: Sender,
    bodies: Arc<Vec<Bytes>>,
    mut next: usize,
    path: &str,
    host: &str,
    expect: Option<bool>,
    start: Instant,
    end: Instant,
) -> Worker {
    let mut worker = Worker::default();
    loop {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        let counted = sent >= start;
        let body = bodies[next % bodies.len()].clone();
        next += 1;
        let request = match Request::post(path)
            .header("host", host)
            .header("content-type", "application/json")
            .header("accept", "application/json, */*")
            .body(Full::new(body))
        {
            Ok(request) => request,
            Err(e) => {
                worker.fail(counted, format!("build the request: {e}"));
                break;
            }
        };
        let outcome = match sender.send(request).await {
            Err(e) => Err(format!("request: {e}")),
            Ok(response) if !response.status().is_success() => {
                Err(format!("HTTP status {}", response.status()))
            }
            Ok(response) => match response.into_body().collect().await {
                Err(e) => Err(format!("read the answer: {e}")),
                Ok(body) => Ok(body.to_bytes()),
            },
        };
        let done = Instant::now();
        match outcome {
            Ok(body) => {
                if counted {
                    worker.latencies.push(done - sent);
                    if let Some(expected) = expect
                        && !answered(&body, expected)
                    {
                        worker.unexpected += 1;
                        if worker.first_error.is_none() {
                            worker.first_error = Some(format!(
                                "unexpected answer: {}",
                                String::from_utf8_lossy(&body[..body.len().min(300)])
                            ));
                        }
                    }
                }
            }
            Err(e) => {
                worker.fail(counted, e);
                // A broken connection stays broken: this stream stops.
                break;
            }
        }
    }
    worker
}

/// Context switches of every thread of a process so far (voluntary, involuntary), from
/// `/proc/<pid>/task/*/status` (threads that have exited are not counted).
pub fn context_switches(pid: u32) -> Option<(u64, u64)> {
    let mut total = (0, 0);
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(status) = std::fs::read_to_string(task.ok()?.path().join("status")) else {
            continue;
        };
        for line in status.lines() {
            let value =
                |prefix: &str| -> Option<u64> { line.strip_prefix(prefix)?.trim().parse().ok() };
            if let Some(v) = value("voluntary_ctxt_switches:") {
                total.0 += v;
            } else if let Some(v) = value("nonvoluntary_ctxt_switches:") {
                total.1 += v;
            }
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn urls_become_targets() {
        let t = Target::from_url("https://127.0.0.1:8443/validate/pods?timeout=10s").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8443");
        assert_eq!(t.server_name, "127.0.0.1");
        assert_eq!(t.path, "/validate/pods?timeout=10s");
        let t = Target::from_url("https://localhost/v").unwrap();
        assert_eq!(t.addr, "localhost:443");
        assert!(Target::from_url("http://localhost/v").is_err());
    }

    #[test]
    fn answers_are_checked() {
        let allow = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":true}}"#;
        assert!(answered(allow, true));
        assert!(!answered(allow, false));
        assert!(!answered(b"not json", true));
        assert!(!answered(br#"{"kind":"Status"}"#, true));
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let run = Run {
            latencies: (1..=100).map(Duration::from_millis).collect(),
            elapsed: Duration::from_secs(1),
            ..Run::default()
        };
        assert_eq!(run.quantile(0.5), Some(Duration::from_millis(51)));
        assert_eq!(run.quantile(0.99), Some(Duration::from_millis(99)));
        assert_eq!(run.quantile(1.0), Some(Duration::from_millis(100)));
        assert_eq!(run.requests_per_second(), 100.0);
        assert_eq!(Run::default().ms(0.5), "-");
    }

    #[test]
    fn own_context_switches_are_readable() {
        assert!(context_switches(std::process::id()).is_some());
    }
}
