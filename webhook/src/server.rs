//! HTTP: the admission router (TLS port: the AdmissionReview endpoints and `POST /v1/admit`,
//! [`crate::external`]), request bodies bounded in size and time, and the TLS accept loop with
//! graceful drain, serving each connection on one thread of its own runtime
//! ([`serve_tls_on_threads`]). The health/metrics port is the shared runtime's
//! (`agentgov_runtime::health`).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agentgov_api::admission::DecisionCode;
use agentgov_api::expiry::ExpiryPolicy;
use agentgov_runtime::health::Readiness;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use jiff::Timestamp;
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tower::ServiceExt;

use crate::admit::{self, Reviewed};
use crate::admit_clients::AdmitClients;
use crate::authz::Authorizer;
use crate::decide::View;
use crate::decision::Decision;
use crate::decision_log::{Facts, record};
use crate::external::{self, ADMIT_PATH, Admitted};
use crate::head_deadline::{HeadDeadline, HeadState};
use crate::metrics::{Metrics, ReviewKind};
use crate::peer::PeerCertificate;
use crate::review::Answer;
use crate::tls::ReloadingTls;

/// The clock decisions use (tests fix it).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub view: Arc<dyn View>,
    pub authz: Arc<dyn Authorizer>,
    pub metrics: Arc<Metrics>,
    pub expiry: ExpiryPolicy,
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    pub policy_slots: Arc<Semaphore>,
    pub clock: Clock,
    /// Who may ask `POST /v1/admit` (`--admit-clients`).
    pub admit_clients: Arc<AdmitClients>,
    /// `--require-signed-bundles`: the public policy-signing ring a PolicyBundle must verify
    /// with; `None`: signatures are not checked.
    pub bundle_keys: Option<Arc<agentgov_runtime::keys::Keys>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("expiry", &self.expiry)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("body_timeout", &self.body_timeout)
            .finish_non_exhaustive()
    }
}

/// `POST /validate/pods`, `/validate/agents`, `/validate/agentpromotions`,
/// `/validate/policybundles`, `/validate/sandboxes` (AdmissionReviews) and `POST /v1/admit`
/// (an orchestrator outside Kubernetes).
pub fn admission_router(state: AppState) -> Router {
    // Handlers get the state behind one `Arc`: one reference count a request, not one a field.
    Router::new()
        .route("/validate/pods", post(validate_pods))
        .route("/validate/agents", post(validate_agents))
        .route("/validate/agentpromotions", post(validate_promotions))
        .route("/validate/policybundles", post(validate_bundles))
        .route("/validate/sandboxes", post(validate_sandboxes))
        .route(ADMIT_PATH, post(admit_external))
        .with_state(Arc::new(state))
}

/// Why a body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    TooLarge(usize),
    Timeout(Duration),
    Read(String),
}

/// Read the body, at most `limit` bytes and within `timeout`.
pub async fn read_body(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, BodyError> {
    let collect = Limited::new(body, limit).collect();
    match tokio::time::timeout(timeout, collect).await {
        Err(_) => Err(BodyError::Timeout(timeout)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(BodyError::TooLarge(limit))
        }
        Ok(Err(e)) => Err(BodyError::Read(e.to_string())),
    }
}

/// The answer encoded as the response's JSON body.
// Never inlined: `make bench`'s profile (e2e/bench/profile.py) charges a review's CPU to this
// frame; one call per review.
#[inline(never)]
fn json(status: StatusCode, answer: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(answer) {
        Ok(bytes) => {
            let mut response = (status, bytes).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        // Serializing the answer cannot fail in practice; still, never an allow.
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the response\n",
        )
            .into_response(),
    }
}

/// The HTTP status and the reason of a body that could not be read.
fn body_error(err: BodyError) -> (StatusCode, String) {
    match err {
        BodyError::TooLarge(limit) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {limit} bytes"),
        ),
        BodyError::Timeout(t) => (
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body was not received within {t:?}"),
        ),
        BodyError::Read(e) => (
            StatusCode::BAD_REQUEST,
            format!("cannot read the request body: {e}"),
        ),
    }
}

/// Answer a body that could not be read: an HTTP error status and a deny review.
fn body_failure(metrics: &Metrics, kind: ReviewKind, err: BodyError) -> Response {
    let (status, reason) = body_error(err);
    let decision = Decision::deny(DecisionCode::DenyBadRequest, None, reason);
    record(metrics, kind, &Facts::default(), &decision);
    json(status, &Answer::new("", &decision))
}

async fn validate_pods(State(s): State<Arc<AppState>>, request: Request) -> Response {
    let _timer = s.metrics.review_timer(ReviewKind::pod);
    let body = match read_body(request.into_body(), s.max_body_bytes, s.body_timeout).await {
        Ok(body) => body,
        Err(e) => return body_failure(&s.metrics, ReviewKind::pod, e),
    };
    let reviewed = admit::review_pod(&body, &*s.view, &s.expiry, (s.clock)());
    finish(&s, ReviewKind::pod, reviewed)
}

async fn validate_agents(State(s): State<Arc<AppState>>, request: Request) -> Response {
    let _timer = s.metrics.review_timer(ReviewKind::agent);
    let body = match read_body(request.into_body(), s.max_body_bytes, s.body_timeout).await {
        Ok(body) => body,
        Err(e) => return body_failure(&s.metrics, ReviewKind::agent, e),
    };
    let reviewed = admit::review_agent(
        &body,
        &*s.view,
        &*s.authz,
        &s.expiry,
        (s.clock)(),
        &s.policy_slots,
    )
    .await;
    finish(&s, ReviewKind::agent, reviewed)
}

async fn validate_promotions(State(s): State<Arc<AppState>>, request: Request) -> Response {
    let _timer = s.metrics.review_timer(ReviewKind::agentpromotion);
    let body = match read_body(request.into_body(), s.max_body_bytes, s.body_timeout).await {
        Ok(body) => body,
        Err(e) => return body_failure(&s.metrics, ReviewKind::agentpromotion, e),
    };
    let reviewed = admit::review_promotion(&body, &*s.view, &*s.authz, &s.policy_slots).await;
    finish(&s, ReviewKind::agentpromotion, reviewed)
}

async fn validate_bundles(State(s): State<Arc<AppState>>, request: Request) -> Response {
    let _timer = s.metrics.review_timer(ReviewKind::policybundle);
    let body = match read_body(request.into_body(), s.max_body_bytes, s.body_timeout).await {
        Ok(body) => body,
        Err(e) => return body_failure(&s.metrics, ReviewKind::policybundle, e),
    };
    let floor = s.view.floor_data();
    let reviewed = admit::review_bundle(
        &body,
        &s.policy_slots,
        s.bundle_keys.as_deref(),
        floor.as_deref(),
    )
    .await;
    finish(&s, ReviewKind::policybundle, reviewed)
}

async fn validate_sandboxes(State(s): State<Arc<AppState>>, request: Request) -> Response {
    let _timer = s.metrics.review_timer(ReviewKind::sandbox);
    let body = match read_body(request.into_body(), s.max_body_bytes, s.body_timeout).await {
        Ok(body) => body,
        Err(e) => return body_failure(&s.metrics, ReviewKind::sandbox, e),
    };
    let reviewed = admit::review_sandbox(&body, &*s.view, &s.expiry, (s.clock)());
    finish(&s, ReviewKind::sandbox, reviewed)
}

/// `POST /v1/admit`: the decision of a Pod CREATE of the agent running the images, answered
/// with HTTP 200 whether it allows or denies; 403 to a client `--admit-clients` does not list
/// (before the body is read), 503 while the caches have not synced, 400 (413, 408) when the
/// request is not usable ([`Admitted::http_status`]).
async fn admit_external(State(s): State<Arc<AppState>>, request: Request) -> Response {
    let _timer = s.metrics.review_timer(ReviewKind::external);
    let (requester, unlisted) = {
        let identity = request
            .extensions()
            .get::<PeerCertificate>()
            .map(PeerCertificate::identity);
        let requester = identity.map(|i| i.subject.clone()).unwrap_or_default();
        (requester, external::unlisted(identity, &s.admit_clients))
    };
    if let Some(refused) = unlisted {
        record(
            &s.metrics,
            ReviewKind::external,
            &refused.facts,
            &refused.decision,
        );
        return json(refused.http_status(), &refused.answer);
    }
    let limit = s.max_body_bytes.min(external::MAX_BODY_BYTES);
    let (status, admitted) = match read_body(request.into_body(), limit, s.body_timeout).await {
        Ok(body) => {
            let admitted = external::admit(&body, &*s.view, &s.expiry, (s.clock)(), &requester);
            (admitted.http_status(), admitted)
        }
        Err(e) => {
            let (status, reason) = body_error(e);
            (status, Admitted::rejected(reason, &requester))
        }
    };
    record(
        &s.metrics,
        ReviewKind::external,
        &admitted.facts,
        &admitted.decision,
    );
    json(status, &admitted.answer)
}

fn finish(s: &AppState, kind: ReviewKind, reviewed: Reviewed<'_>) -> Response {
    record(&s.metrics, kind, &reviewed.facts, &reviewed.decision);
    json(StatusCode::OK, &reviewed.answer())
}

/// Limits of the TLS server.
#[derive(Clone)]
pub struct ServeOptions {
    /// For the TLS handshake and for an HTTP/1.1 request's head from its first byte.
    pub handshake_timeout: Duration,
    /// How long an HTTP/1.1 connection may wait for its next request (`--idle-timeout`; longer
    /// than the API server's 90 s, see [`crate::head_deadline`]).
    pub idle_timeout: Duration,
    /// How long in-flight connections may take to finish at shutdown.
    pub drain_timeout: Duration,
    /// Once this readiness is stopping (a shutdown has begun), every HTTP/1.1 answer closes
    /// its connection (`Connection: close`).
    ///
    /// Why: the API server calls a webhook it reaches through a Service over HTTP/1.1 (to
    /// spread load over the endpoints: k8s.io/apiserver `pkg/util/webhook/client.go`, issue
    /// 75791), never retries a POST, and reuses idle keep-alive connections. A keep-alive
    /// connection that the server closes at the end of its drain can cross a review the API
    /// server has just sent on it: the review fails with `EOF` and, fail closed, the Pod is
    /// refused (seen once in a chart rollout). Closed by the client after each answer while
    /// the endpoints drop this process, no connection is left idle to race at the close; the
    /// next review dials the Service again and reaches a ready replica. HTTP/2 needs none of
    /// this: its drain's GOAWAY tells the client which requests were taken.
    pub shutting_down: Option<Readiness>,
}

/// What each connection is served with: the HTTP/1.1 and HTTP/2 settings, the router, the TLS
/// config in force (read at each accept) and the handshake deadline.
#[derive(Clone)]
struct Connections {
    builder: Arc<auto::Builder<TokioExecutor>>,
    app: Router,
    tls: Arc<ReloadingTls>,
    handshake_timeout: Duration,
    shutting_down: Option<Readiness>,
}

impl Connections {
    fn new(tls: Arc<ReloadingTls>, app: Router, options: &ServeOptions) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(options.idle_timeout)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(10))
            .max_concurrent_streams(256);
        Connections {
            builder: Arc::new(builder),
            app,
            tls,
            handshake_timeout: options.handshake_timeout,
            shutting_down: options.shutting_down.clone(),
        }
    }

    /// Serve one accepted connection until it closes (or, after `watcher`'s shutdown, until
    /// its requests in flight are answered).
    async fn serve(self, tcp: TcpStream, peer: SocketAddr, watcher: Watcher) {
        let _ = tcp.set_nodelay(true);
        // rustls reads the socket 4 KiB at a time: a 7-8 KB review took three reads. Reading
        // through a buffer takes what has arrived in one.
        let tcp = BufReader::with_capacity(READ_BUFFER_BYTES, tcp);
        let acceptor = self.tls.acceptor();
        let stream = match tokio::time::timeout(self.handshake_timeout, acceptor.accept(tcp)).await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::warn!(%peer, error = %e, "TLS handshake refused");
                return;
            }
            Err(_) => {
                tracing::warn!(%peer, "TLS handshake timed out");
                return;
            }
        };
        // Only `POST /v1/admit` asks who is asking by certificate (for `--admit-clients` and
        // the log; an AdmissionReview names its requester inside); the path is compared per
        // request, the certificate is parsed at most once per connection.
        let certificate = PeerCertificate::of(stream.get_ref().1.peer_certificates());
        let head = HeadState::new();
        if stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice()) {
            head.http2();
        }
        let shutting_down = self.shutting_down.clone();
        let stream = HeadDeadline::new(stream, Arc::clone(&head), self.handshake_timeout);
        let answered = Arc::clone(&head);
        let app = self
            .app
            .map_request(move |mut request: axum::http::Request<_>| {
                head.head_read();
                if request.version() == axum::http::Version::HTTP_2 {
                    head.http2();
                }
                if let Some(certificate) = &certificate
                    && request.uri().path() == ADMIT_PATH
                {
                    request.extensions_mut().insert(certificate.clone());
                }
                request
            })
            .map_response(move |mut response: Response| {
                answered.answered();
                // HTTP/2 forbids the header; its drain's GOAWAY does this job.
                if !answered.is_http2() && shutting_down.as_ref().is_some_and(Readiness::stopping) {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                response
            });
        let service = TowerToHyperService::new(app);
        let connection = self.builder.serve_connection(TokioIo::new(stream), service);
        if let Err(e) = watcher.watch(connection.into_owned()).await {
            tracing::debug!(%peer, error = %e, "connection closed with an error");
        }
    }
}

/// Bytes read from a connection's socket at once (a TLS record is at most 16 KiB and a bit).
const READ_BUFFER_BYTES: usize = 32 * 1024;

/// Accept the next connection, or `None` once `shutdown` has resolved.
async fn accept<F: Future<Output = ()>>(
    listener: &TcpListener,
    mut shutdown: Pin<&mut F>,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => return Some(accepted),
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = shutdown.as_mut() => return None,
        }
    }
}

/// Wait until every watched connection has finished, at most `drain_timeout`.
async fn drain(graceful: GracefulShutdown, drain_timeout: Duration) {
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(drain_timeout) => {
            tracing::warn!("connections still open after the drain timeout; closing");
        }
    }
}

/// Accept TLS connections on `listener` until `shutdown` resolves, then drain, all on the
/// current runtime. Each connection takes the TLS config in force when it is accepted. A failed
/// handshake (no client certificate, an unknown CA, an expired certificate) never reaches `app`.
pub async fn serve_tls<F>(
    listener: TcpListener,
    tls: Arc<ReloadingTls>,
    app: Router,
    options: ServeOptions,
    shutdown: F,
) where
    F: Future<Output = ()> + Send,
{
    let graceful = GracefulShutdown::new();
    let connections = Connections::new(tls, app, &options);
    tokio::pin!(shutdown);
    while let Some((tcp, peer)) = accept(&listener, shutdown.as_mut()).await {
        tokio::spawn(connections.clone().serve(tcp, peer, graceful.watcher()));
    }
    drop(listener);
    drain(graceful, options.drain_timeout).await;
}

/// As [`serve_tls`], but each connection is served on one of `threads` threads, each running a
/// single-threaded runtime of its own: a new connection goes to the thread with the fewest
/// open. The accept loop stays on the current runtime.
///
/// A review then runs start to end on one thread: on the multi-threaded runtime the socket's
/// readiness, the connection and (HTTP/2) each stream's task were picked up by whichever
/// worker was awake, and the hand-offs between two workers (a futex wake and a context switch
/// each) cost more CPU than the review itself. A connection's requests are answered by one
/// core. The API server calls a webhook it reaches by URL over one HTTP/2 connection, and one
/// it reaches through a Service over HTTP/1.1, one connection per review in flight; either
/// way a review takes tens of microseconds of a core. Policy evaluations still run on the
/// blocking pool.
pub async fn serve_tls_on_threads<F>(
    listener: TcpListener,
    tls: Arc<ReloadingTls>,
    app: Router,
    options: ServeOptions,
    threads: usize,
    shutdown: F,
) where
    F: Future<Output = ()> + Send,
{
    let connections = Connections::new(tls, app, &options);
    let mut workers = Vec::with_capacity(threads);
    for index in 0..threads.max(1) {
        match ServingThread::start(index, connections.clone()) {
            Ok(worker) => workers.push(worker),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a serving thread");
                break;
            }
        }
    }
    if workers.is_empty() {
        tracing::warn!("no serving thread: serving on the main runtime");
        return serve_tls(
            listener,
            connections.tls,
            connections.app,
            options,
            shutdown,
        )
        .await;
    }
    let graceful = GracefulShutdown::new();
    let mut next = 0;
    tokio::pin!(shutdown);
    while let Some((tcp, peer)) = accept(&listener, shutdown.as_mut()).await {
        // The fewest open connections; among equals, the next in turn.
        let count = workers.len();
        let Some(worker) = (0..count)
            .map(|i| &workers[(next + i) % count])
            .min_by_key(|w| w.open.load(Ordering::Relaxed))
        else {
            break;
        };
        next = (next + 1) % count;
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot hand the connection over");
                continue;
            }
        };
        worker.open.fetch_add(1, Ordering::Relaxed);
        let accepted = Accepted {
            tcp,
            peer,
            watcher: graceful.watcher(),
        };
        let sent = worker.connections.as_ref().map(|c| c.send(accepted));
        if !matches!(sent, Some(Ok(()))) {
            worker.open.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(%peer, "a serving thread has stopped; connection dropped");
        }
    }
    drop(listener);
    // No new connections; the open ones finish on their threads.
    for worker in &mut workers {
        worker.connections = None;
    }
    drain(graceful, options.drain_timeout).await;
    let stopped = workers
        .into_iter()
        .map(ServingThread::stop)
        .collect::<Vec<_>>();
    let _ = tokio::task::spawn_blocking(move || {
        for thread in stopped {
            let _ = thread.join();
        }
    })
    .await;
}

/// A connection handed to a serving thread.
struct Accepted {
    tcp: std::net::TcpStream,
    peer: SocketAddr,
    watcher: Watcher,
}

/// One serving thread: its single-threaded runtime serves the connections it is sent.
struct ServingThread {
    /// Where new connections go; `None` once the port is closed.
    connections: Option<mpsc::UnboundedSender<Accepted>>,
    /// Connections open on this thread.
    open: Arc<AtomicUsize>,
    stop: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl ServingThread {
    fn start(index: usize, connections: Connections) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Accepted>();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let open = Arc::new(AtomicUsize::new(0));
        let thread = std::thread::Builder::new()
            .name(format!("admission-{index}"))
            .spawn({
                let open = Arc::clone(&open);
                move || {
                    runtime.block_on(async move {
                        loop {
                            tokio::select! {
                                accepted = rx.recv() => match accepted {
                                    Some(a) => {
                                        let connections = connections.clone();
                                        let open = Arc::clone(&open);
                                        tokio::spawn(async move {
                                            let _open = Open(open);
                                            match TcpStream::from_std(a.tcp) {
                                                Ok(tcp) => connections.serve(tcp, a.peer, a.watcher).await,
                                                Err(e) => tracing::warn!(peer = %a.peer, error = %e, "cannot serve the connection"),
                                            }
                                        });
                                    }
                                    // No more connections: keep serving the open ones.
                                    None => break,
                                },
                                _ = &mut stopped => return,
                            }
                        }
                        let _ = stopped.await;
                    });
                }
            })?;
        Ok(ServingThread {
            connections: Some(tx),
            open,
            stop,
            thread,
        })
    }

    /// Close what is still open on this thread (after the drain); its handle to join.
    fn stop(self) -> std::thread::JoinHandle<()> {
        let _ = self.stop.send(());
        self.thread
    }
}

/// Counts a connection open on its thread until dropped.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;

    use axum::routing::get;
    use http_body_util::Empty;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};

    use super::*;
    use crate::config::ClientAuth;
    use crate::tls::TlsFiles;

    /// The TLS config of a server for localhost (its files written to a directory of its own,
    /// then removed) and the CA PEM that trusts it.
    async fn localhost_tls(tag: &str) -> (Arc<ReloadingTls>, String) {
        let dir = std::env::temp_dir().join(format!(
            "agentgov-serve-{tag}-{}-{}",
            std::process::id(),
            Timestamp::now().as_nanosecond()
        ));
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        let pem = cert.cert.pem();
        std::fs::write(dir.join("tls.crt"), &pem).unwrap();
        std::fs::write(dir.join("tls.key"), cert.signing_key.serialize_pem()).unwrap();
        let files = TlsFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            client_ca: None,
            client_auth: ClientAuth::None,
        };
        let (tls, _) = ReloadingTls::load(files).await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        (tls, pem)
    }

    /// A TLS connection to `addr` as localhost, trusting `ca_pem`, offering `alpn`.
    async fn tls_to(
        addr: SocketAddr,
        ca_pem: &str,
        alpn: &[&[u8]],
    ) -> TokioIo<tokio_rustls::client::TlsStream<TcpStream>> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        TokioIo::new(tls)
    }

    async fn connect(
        addr: SocketAddr,
        ca_pem: &str,
    ) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
        let (sender, connection) =
            hyper::client::conn::http1::handshake(tls_to(addr, ca_pem, &[]).await)
                .await
                .unwrap();
        tokio::spawn(connection);
        sender
    }

    /// The name of the thread that answered.
    async fn ask(sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>) -> String {
        let request = axum::http::Request::get("/thread")
            .header("host", "localhost")
            .body(Empty::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn connections_are_spread_over_serving_threads_and_drained_at_shutdown() {
        let (tls, ca) = localhost_tls("threads").await;
        let app = Router::new().route(
            "/thread",
            get(|| async { std::thread::current().name().unwrap_or("?").to_string() }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve_tls_on_threads(
            listener,
            tls,
            app,
            ServeOptions {
                handshake_timeout: Duration::from_secs(10),
                drain_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(120),
                shutting_down: None,
            },
            2,
            async {
                let _ = stopped.await;
            },
        ));

        // Four connections kept open, three requests each: each connection is answered by one
        // serving thread, and the four are spread two and two.
        let mut senders = Vec::new();
        for _ in 0..4 {
            senders.push(connect(addr, &ca).await);
        }
        let mut per_thread: HashMap<String, usize> = HashMap::new();
        for sender in &mut senders {
            let first = ask(sender).await;
            assert!(first.starts_with("admission-"), "answered on {first:?}");
            for _ in 0..2 {
                assert_eq!(ask(sender).await, first, "a connection stays on its thread");
            }
            *per_thread.entry(first).or_default() += 1;
        }
        assert_eq!(per_thread.len(), 2, "{per_thread:?}");
        assert!(per_thread.values().all(|&n| n == 2), "{per_thread:?}");

        // Shutdown: idle keep-alive connections are closed, the serving threads stop, and the
        // server returns well before the drain timeout.
        let started = std::time::Instant::now();
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server stops after draining")
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        for sender in &mut senders {
            let request = axum::http::Request::get("/thread")
                .header("host", "localhost")
                .body(Empty::new())
                .unwrap();
            assert!(sender.send_request(request).await.is_err());
        }
    }

    /// An HTTP/2 connection (ALPN h2) to `addr`.
    async fn connect_h2(
        addr: SocketAddr,
        ca_pem: &str,
    ) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
        let (sender, connection) = hyper::client::conn::http2::handshake(
            TokioExecutor::new(),
            tls_to(addr, ca_pem, &[b"h2"]).await,
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        sender
    }

    /// `GET /thread` answering "ok", served with `options` until the sender is dropped: the
    /// address, the CA PEM and the sender.
    async fn serve_ok(options: ServeOptions) -> (SocketAddr, String, oneshot::Sender<()>) {
        let (tls, ca) = localhost_tls("ok").await;
        let app = Router::new().route("/thread", get(|| async { "ok" }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve_tls(listener, tls, app, options, async {
            let _ = stopped.await;
        }));
        (addr, ca, stop)
    }

    fn get_thread() -> axum::http::Request<Empty<Bytes>> {
        axum::http::Request::get("https://localhost/thread")
            .body(Empty::new())
            .unwrap()
    }

    #[tokio::test]
    async fn once_a_shutdown_begins_http1_answers_close_their_connection_and_http2_keeps_its() {
        let readiness = Readiness::new();
        readiness.set(true);
        let (addr, ca, _stop) = serve_ok(ServeOptions {
            handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            shutting_down: Some(readiness.clone()),
        })
        .await;

        // Serving: keep-alive on both.
        let mut http1 = connect(addr, &ca).await;
        let mut http2 = connect_h2(addr, &ca).await;
        for _ in 0..2 {
            let answer = http1.send_request(get_thread()).await.unwrap();
            assert_eq!(answer.version(), axum::http::Version::HTTP_11);
            assert_eq!(answer.headers().get(header::CONNECTION), None);
            let answer = http2.send_request(get_thread()).await.unwrap();
            assert_eq!(answer.version(), axum::http::Version::HTTP_2);
        }

        // Shutting down (readiness off; the port still open): the next HTTP/1.1 answer says
        // `Connection: close` and the connection is closed after it.
        readiness.stop();
        let answer = http1.send_request(get_thread()).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(
            answer.headers().get(header::CONNECTION),
            Some(&HeaderValue::from_static("close"))
        );
        let _ = answer.into_body().collect().await.unwrap();
        assert!(
            http1.ready().await.is_err(),
            "the HTTP/1.1 connection is closed after the answer"
        );
        // A new HTTP/1.1 connection is still served, once.
        let mut again = connect(addr, &ca).await;
        let answer = again.send_request(get_thread()).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(
            answer.headers().get(header::CONNECTION),
            Some(&HeaderValue::from_static("close"))
        );
        // HTTP/2 keeps its connection (its drain's GOAWAY closes it) and carries no
        // connection header, which HTTP/2 forbids.
        for _ in 0..2 {
            let answer = http2.send_request(get_thread()).await.unwrap();
            assert_eq!(answer.status(), StatusCode::OK);
            assert_eq!(answer.headers().get(header::CONNECTION), None);
        }
    }

    #[tokio::test]
    async fn an_idle_http1_connection_outlives_the_head_timeout_and_closes_after_the_idle_one() {
        let (addr, ca, _stop) = serve_ok(ServeOptions {
            handshake_timeout: Duration::from_millis(200),
            drain_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_millis(1500),
            shutting_down: None,
        })
        .await;
        let mut http1 = connect(addr, &ca).await;
        let answer = http1.send_request(get_thread()).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        // Idle for longer than a head may take: the connection is still there for the next
        // review (hyper's one timer, set to the head timeout, closed it here).
        tokio::time::sleep(Duration::from_millis(600)).await;
        let answer = http1.send_request(get_thread()).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        // Idle past the idle timeout: the webhook closes it.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(
            http1.ready().await.is_err(),
            "closed after the idle timeout"
        );
    }
}
