//! agentgov-webhook: flags, wiring, and the order of start and shutdown.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use agentgov_runtime::health::{self, Health, Readiness};
use agentgov_runtime::keys::Keys;
use agentgov_runtime::shutdown::Shutdown;
use agentgov_runtime::{bind, telemetry};
use agentgov_webhook::authz::SarAuthorizer;
use agentgov_webhook::config::{Args, ClientAuth};
use agentgov_webhook::decide::View;
use agentgov_webhook::metrics::Metrics;
use agentgov_webhook::server::{self, AppState, ServeOptions};
use agentgov_webhook::tls::{ReloadingTls, TlsFiles};
use agentgov_webhook::{Error, cache};
use clap::Parser;
use tokio::sync::Semaphore;

// jemalloc, with the operator's settings (.cargo/config.toml: one arena, freed pages returned by
// a background thread within a second). The images are musl builds, and musl's malloc, one lock
// for every thread, cost 1.57x the CPU per review over HTTP/1.1 with 8 connections and 1.26x
// over HTTP/2 with 8 in flight; with jemalloc the musl build is on par with glibc's ("The
// images' libc" in BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    let log = telemetry::init(args.runtime.log_format, "info");
    let code = serve(args);
    log.flush();
    code
}

fn serve(args: Args) -> ExitCode {
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
    let admit_clients = args.admit_clients()?;
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
    let keys = Arc::new(Keys::load(&args.keyring_file)?);
    if keys.current().active_key_id().is_some() {
        tracing::warn!(
            "the key ring holds a signing key; the webhook needs only the verification ring (`keygen public`)"
        );
    }

    // The public policy-signing ring (`--require-signed-bundles`): separate from the proof keys.
    let bundle_keys = args.bundle_signing.keys()?;

    let client = agentgov_runtime::api_client::client().await?;
    let (caches, _watch_tasks) = cache::start(
        client.clone(),
        args.namespace.as_deref(),
        &args.bundle_name,
        Arc::clone(&keys),
        bundle_keys.clone(),
        Arc::clone(&metrics),
    );
    let _tls_reloader = tls.spawn_reloader(tls_watched, args.reload_interval, &metrics);
    let _keys_reloader = {
        let results = metrics.keyring_reload.clone();
        keys.spawn_reloader(args.reload_interval, move |ok| {
            Metrics::reload(&results, ok)
        })
    };

    let _bundle_keys_reloader = bundle_keys.as_ref().map(|source| {
        let results = metrics.keyring_reload.clone();
        source.spawn_reloader(args.reload_interval, move |ok| {
            Metrics::reload(&results, ok)
        })
    });

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
        admit_clients: Arc::new(admit_clients.clone()),
        bundle_keys,
    };

    // Ready once the caches have synced, until a shutdown starts.
    let readiness = Readiness::when("caches not synced yet", move || caches.synced());
    let shutdown = Shutdown::on_signals(readiness.clone());
    let health = Health {
        readiness: readiness.clone(),
        metrics: {
            let metrics = Arc::clone(&metrics);
            Arc::new(move || metrics.encode())
        },
    };
    let metrics_listener = bind(args.metrics_listen).await?;
    let tls_listener = bind(args.listen).await?;
    tracing::info!(
        listen = %args.listen,
        metrics_listen = %args.metrics_listen,
        client_auth = args.client_auth.as_str(),
        admit_clients = %admit_clients.to_flag(),
        namespace = args.namespace.as_deref().unwrap_or("<all>"),
        bundle_name = %args.bundle_name,
        max_body_bytes = args.max_body_bytes,
        "agentgov-webhook serving"
    );

    // Shutdown (SIGTERM, SIGINT): readiness off at once, `--shutdown-delay` for endpoints to
    // drop this pod (meanwhile each HTTP/1.1 answer closes its connection), then no new
    // connections, and the reviews in flight get `--shutdown-grace`. The health port stays up
    // until the admission port has drained.
    let stop_accepting = {
        let started = shutdown.wait();
        let delay = args.shutdown_delay;
        async move {
            started.await;
            tracing::info!(delay = ?delay, "closing the admission port after the delay");
            tokio::time::sleep(delay).await;
        }
    };
    let (stop_health_tx, stop_health_rx) = tokio::sync::oneshot::channel::<()>();
    let health_task = tokio::spawn(health::serve(metrics_listener, health, async {
        let _ = stop_health_rx.await;
    }));
    // One serving thread a core (the cgroup's CPU limit counts).
    let serving_threads = std::thread::available_parallelism().map_or(2, usize::from);
    server::serve_tls_on_threads(
        tls_listener,
        tls,
        server::admission_router(state),
        ServeOptions {
            handshake_timeout: args.request_timeout,
            idle_timeout: args.idle_timeout,
            drain_timeout: args.runtime.shutdown_grace,
            shutting_down: Some(readiness),
        },
        serving_threads,
        stop_accepting,
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

#[cfg(test)]
mod allocator_tests {
    /// Allocations go through jemalloc: its count of this thread's bytes grows by what a test
    /// allocates (it would not, were the allocator the libc's). Its settings are the operator's.
    #[test]
    fn allocations_go_through_jemalloc() {
        assert_eq!(tikv_jemalloc_ctl::opt::narenas::read().unwrap(), 1);
        assert!(tikv_jemalloc_ctl::background_thread::read().unwrap());
        let allocated = tikv_jemalloc_ctl::thread::allocatedp::read().unwrap();
        let before = allocated.get();
        let block = std::hint::black_box(vec![1_u8; 1 << 20]);
        assert!(allocated.get() - before >= 1 << 20);
        drop(block);
    }
}
