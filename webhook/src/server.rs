//! HTTP: the admission router (TLS port), request bodies bounded in size and time, and the TLS
//! accept loop with graceful drain. The health/metrics port is the shared runtime's
//! (`agentgov_runtime::health`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use agentgov_api::admission::DecisionCode;
use agentgov_api::expiry::ExpiryPolicy;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use jiff::Timestamp;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::admit::{self, Reviewed};
use crate::authz::Authorizer;
use crate::decide::View;
use crate::decision::Decision;
use crate::decision_log::{Facts, record};
use crate::metrics::{Metrics, ReviewKind};
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

/// `POST /validate/pods` and `POST /validate/agents`.
pub fn admission_router(state: AppState) -> Router {
    // Handlers get the state behind one `Arc`: one reference count a request, not one a field.
    Router::new()
        .route("/validate/pods", post(validate_pods))
        .route("/validate/agents", post(validate_agents))
        .route("/validate/agentpromotions", post(validate_promotions))
        .route("/validate/policybundles", post(validate_bundles))
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

fn json(status: StatusCode, answer: &Answer<'_>) -> Response {
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

/// Answer a body that could not be read: an HTTP error status and a deny review.
fn body_failure(metrics: &Metrics, kind: ReviewKind, err: BodyError) -> Response {
    let (status, reason) = match err {
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
    };
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
    let reviewed = admit::review_bundle(&body, &s.policy_slots).await;
    finish(&s, ReviewKind::policybundle, reviewed)
}

fn finish(s: &AppState, kind: ReviewKind, reviewed: Reviewed<'_>) -> Response {
    record(&s.metrics, kind, &reviewed.facts, &reviewed.decision);
    json(StatusCode::OK, &reviewed.answer())
}

/// Limits of the TLS server.
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    /// For the TLS handshake and for HTTP/1 request headers.
    pub handshake_timeout: Duration,
    /// How long in-flight connections may take to finish at shutdown.
    pub drain_timeout: Duration,
}

/// Accept TLS connections on `listener` until `shutdown` resolves, then drain. Each connection
/// takes the TLS config in force when it is accepted. A failed handshake (no client
/// certificate, an unknown CA, an expired certificate) never reaches `app`.
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
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.handshake_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10))
        .max_concurrent_streams(256);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let acceptor = tls.acceptor();
        let app = app.clone();
        let builder = Arc::clone(&builder);
        let watcher = graceful.watcher();
        let handshake_timeout = options.handshake_timeout;
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
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
            let service = TowerToHyperService::new(app);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection closed with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(options.drain_timeout) => {
            tracing::warn!("connections still open after the drain timeout; closing");
        }
    }
}
