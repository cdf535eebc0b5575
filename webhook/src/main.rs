//! agentgov-webhook: flags, wiring, and the order of start and shutdown.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agentgov_webhook::authz::SarAuthorizer;
use agentgov_webhook::config::{Args, ClientAuth};
use agentgov_webhook::keys::Keys;
use agentgov_webhook::metrics::Metrics;
use agentgov_webhook::server::{self, AppState, Health, ServeOptions};
use agentgov_webhook::tls::{ReloadingTls, TlsFiles};
use agentgov_webhook::{Error, cache, telemetry};
use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

fn main() -> ExitCode {
    let args = Args::parse();
    telemetry::init(args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, category = e.category(), "agentgov-webhook stopped");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Error> {
    args.validate()?;
    let expiry = args.expiry()?;
    if args.client_auth != ClientAuth::Required {
        tracing::warn!(
            client_auth = args.client_auth.as_str(),
            "client certificates are not required: any client that reaches the admission port can submit reviews; use --client-auth=required where the API server can present a certificate"
        );
    }
    let metrics = Arc::new(Metrics::new());

    let (tls, tls_watched) = ReloadingTls::load(TlsFiles {
        cert: args.tls_cert_file.clone(),
        key: args.tls_key_file.clone(),
        client_ca: args.client_ca_file.clone(),
        client_auth: args.client_auth,
    })
    .await?;
    let (keys, keys_watched) = Keys::load(args.keyring_file.clone()).await?;
    tracing::info!(ring = ?keys.current(), "key ring loaded");

    let client = kube::Client::try_default().await?;
    let (caches, _watch_tasks) = cache::start(
        client.clone(),
        args.namespace.as_deref(),
        &args.bundle_name,
        Arc::clone(&keys),
        Arc::clone(&metrics),
    );
    let _tls_reloader = tls.spawn_reloader(tls_watched, args.reload_interval, &metrics);
    let _keys_reloader = keys.spawn_reloader(keys_watched, args.reload_interval, &metrics);

    let slots = match args.policy_concurrency {
        0 => std::thread::available_parallelism().map_or(2, usize::from),
        n => n,
    };
    let state = AppState {
        view: caches.clone(),
        authz: Arc::new(SarAuthorizer::new(
            client,
            args.sar_timeout,
            args.sar_cache_ttl,
        )),
        metrics: Arc::clone(&metrics),
        expiry,
        max_body_bytes: args.max_body_bytes,
        body_timeout: args.request_timeout,
        policy_slots: Arc::new(Semaphore::new(slots)),
        clock: Arc::new(jiff::Timestamp::now),
    };

    let shutting_down = Arc::new(AtomicBool::new(false));
    let health = server::health_router(Health {
        view: caches,
        metrics: Arc::clone(&metrics),
        shutting_down: Arc::clone(&shutting_down),
    });
    let metrics_listener = TcpListener::bind(args.metrics_listen)
        .await
        .map_err(|source| Error::Bind {
            addr: args.metrics_listen,
            source,
        })?;
    let tls_listener = TcpListener::bind(args.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: args.listen,
            source,
        })?;
    tracing::info!(
        listen = %args.listen,
        metrics_listen = %args.metrics_listen,
        client_auth = args.client_auth.as_str(),
        namespace = args.namespace.as_deref().unwrap_or("<all>"),
        bundle_name = %args.bundle_name,
        max_body_bytes = args.max_body_bytes,
        "agentgov-webhook serving"
    );

    // Shutdown: readiness off first, a grace period for endpoints to drop this pod, then stop
    // accepting and drain. The health port stays up until the admission port has drained.
    let (stop_tls_tx, stop_tls_rx) = tokio::sync::oneshot::channel::<()>();
    let (stop_health_tx, stop_health_rx) = tokio::sync::oneshot::channel::<()>();
    let grace = args.shutdown_grace;
    let flag = Arc::clone(&shutting_down);
    tokio::spawn(async move {
        server::shutdown_signal().await;
        tracing::info!(grace = ?grace, "shutdown requested: reporting not ready");
        flag.store(true, Ordering::Release);
        tokio::time::sleep(grace).await;
        let _ = stop_tls_tx.send(());
    });
    let health_task = tokio::spawn(server::serve_plain(metrics_listener, health, async {
        let _ = stop_health_rx.await;
    }));
    server::serve_tls(
        tls_listener,
        tls,
        server::admission_router(state),
        ServeOptions {
            handshake_timeout: args.request_timeout,
            drain_timeout: args.request_timeout,
        },
        async {
            let _ = stop_tls_rx.await;
        },
    )
    .await;
    let _ = stop_health_tx.send(());
    match health_task.await {
        Ok(result) => result?,
        Err(e) => tracing::warn!(error = %e, "health server task failed"),
    }
    tracing::info!("stopped");
    Ok(())
}
