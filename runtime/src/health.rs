//! The plain-HTTP server of `/healthz`, `/readyz` and `/metrics`, on its own port (outside the
//! admission port and outside any tracing layer, so probes do not flood the logs).
//!
//! `/readyz` answers 503 until the binary says it is ready, and from the first moment of a
//! shutdown on ([`Readiness::stop`]): endpoints drop the process before it stops serving.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::Error;

type Check = dyn Fn() -> bool + Send + Sync;

/// Whether `/readyz` says ready. Clones share the state.
#[derive(Clone)]
pub struct Readiness(Arc<ReadinessState>);

struct ReadinessState {
    ready: AtomicBool,
    stopping: AtomicBool,
    /// Asked on each probe, with what `/readyz` says while it does not hold.
    check: Option<(&'static str, Box<Check>)>,
}

impl Readiness {
    /// Not ready until [`Readiness::set`] says so.
    pub fn new() -> Self {
        Readiness(Arc::new(ReadinessState {
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            check: None,
        }))
    }

    /// Ready while `check` holds (asked on each probe); `unready` is the answer when it does not.
    pub fn when(unready: &'static str, check: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Readiness(Arc::new(ReadinessState {
            ready: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            check: Some((unready, Box::new(check))),
        }))
    }

    pub fn set(&self, ready: bool) {
        self.0.ready.store(ready, Ordering::Release);
    }

    /// Not ready from now on, whatever else says: the process is shutting down.
    pub fn stop(&self) {
        self.0.stopping.store(true, Ordering::Release);
    }

    pub fn stopping(&self) -> bool {
        self.0.stopping.load(Ordering::Acquire)
    }

    /// `Ok` when ready, else what `/readyz` says.
    pub fn state(&self) -> Result<(), &'static str> {
        if self.stopping() {
            return Err("shutting down");
        }
        if !self.0.ready.load(Ordering::Acquire) {
            return Err("not ready");
        }
        match &self.0.check {
            Some((unready, check)) if !check() => Err(unready),
            _ => Ok(()),
        }
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Readiness").field(&self.state()).finish()
    }
}

/// The metrics in the OpenMetrics text format.
pub type Exposition = Arc<dyn Fn() -> Result<String, std::fmt::Error> + Send + Sync>;

/// What the health server serves.
#[derive(Clone)]
pub struct Health {
    pub readiness: Readiness,
    pub metrics: Exposition,
}

impl Health {
    /// Metrics from a prometheus-client registry.
    pub fn with_registry(readiness: Readiness, registry: Arc<Registry>) -> Self {
        Health {
            readiness,
            metrics: Arc::new(move || {
                let mut text = String::new();
                prometheus_client::encoding::text::encode(&mut text, &registry)?;
                Ok(text)
            }),
        }
    }
}

/// `GET /healthz`, `/readyz`, `/metrics`.
pub fn router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

async fn readyz(State(health): State<Health>) -> Response {
    match health.readiness.state() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

async fn metrics(State(health): State<Health>) -> Response {
    match (health.metrics)() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Serve [`router`] on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
    }
    axum::serve(listener, router(health))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Serve)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::AtomicBool;

    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn get(app: &Router, path: &str) -> (StatusCode, String) {
        let response = app
            .clone()
            .oneshot(axum::http::Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readiness_is_set_then_off_for_good_at_shutdown() {
        let readiness = Readiness::new();
        let mut registry = Registry::default();
        let counter = prometheus_client::metrics::counter::Counter::<u64>::default();
        registry.register("things", "Things", counter.clone());
        counter.inc();
        let app = router(Health::with_registry(readiness.clone(), Arc::new(registry)));

        assert_eq!(get(&app, "/healthz").await, (StatusCode::OK, "ok\n".into()));
        assert_eq!(
            get(&app, "/readyz").await,
            (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into())
        );
        readiness.set(true);
        assert_eq!(
            get(&app, "/readyz").await,
            (StatusCode::OK, "ready\n".into())
        );
        readiness.stop();
        readiness.set(true);
        assert_eq!(
            get(&app, "/readyz").await,
            (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into())
        );
        // Alive while it shuts down.
        assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK);
        let (status, text) = get(&app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains("things_total 1"), "{text}");
    }

    #[tokio::test]
    async fn a_readiness_check_is_asked_on_each_probe() {
        let synced = Arc::new(AtomicBool::new(false));
        let readiness = {
            let synced = synced.clone();
            Readiness::when("caches not synced yet", move || {
                synced.load(Ordering::Relaxed)
            })
        };
        let app = router(Health {
            readiness: readiness.clone(),
            metrics: Arc::new(|| Err(std::fmt::Error)),
        });
        assert_eq!(
            get(&app, "/readyz").await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "caches not synced yet\n".into()
            )
        );
        synced.store(true, Ordering::Relaxed);
        assert_eq!(get(&app, "/readyz").await.0, StatusCode::OK);
        readiness.stop();
        assert_eq!(
            get(&app, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            get(&app, "/metrics").await.0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[tokio::test]
    async fn a_taken_port_is_a_bind_error() {
        let first = crate::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = first.local_addr().unwrap();
        let err = crate::bind(addr).await.unwrap_err();
        assert_eq!(err.category(), "bind");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
