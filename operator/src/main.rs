//! agentgov operator: the seed's Promotion, Policy and Revalidation services as Kubernetes
//! controllers.
#![forbid(unsafe_code)]

mod agent_controller;
mod backoff;
mod bundle_controller;
mod cache;
mod config;
mod context;
mod error;
mod judge;
mod keys;
mod metrics;
mod revalidation;
mod server;
mod status;
mod telemetry;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agentgov_api::{Agent, GovernanceStatus, PolicyBundle};
use clap::Parser;
use futures::StreamExt;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::context::{Context, PolicyCache, Settings, status_limiter};
use crate::error::{Error, Result};
use crate::keys::KeyRingSource;
use crate::metrics::Metrics;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    telemetry::init(config.log_format);
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "operator stopped");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<()> {
    let keys = Arc::new(KeyRingSource::load(&config.keyring_file)?);
    let client = Client::try_default().await?;
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let ready = Arc::new(AtomicBool::new(false));
    let health = server::Health {
        registry: Arc::new(registry),
        ready: ready.clone(),
    };
    let metrics_addr = config.metrics_listen;
    tokio::spawn(async move {
        if let Err(e) = server::serve(metrics_addr, health).await {
            error!(error = %e, "metrics server failed");
            std::process::exit(1);
        }
    });

    let identity = config.identity();
    if config.leader_election {
        leader::acquire(&client, &config, &identity, ready.clone()).await?;
    } else {
        warn!("leader election is off: run a single replica");
    }

    let (agents, bundles): (Api<Agent>, Api<PolicyBundle>) = match &config.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let controller_config = ControllerConfig::default().concurrency(config.concurrency);
    let (agent_store, agent_stream, agents_synced) = cache::watched(agents, cache::slim);
    // Bundles keep their managed fields: the history names the last writer.
    let (bundle_store, bundle_stream, bundles_synced) = cache::watched(bundles, |_| {});
    let agent_controller = Controller::for_stream(agent_stream, agent_store.clone())
        .with_config(controller_config.clone());
    let bundle_controller =
        Controller::for_stream(bundle_stream, bundle_store.clone()).with_config(controller_config);
    let reporter = Reporter {
        controller: "agentgov-operator".into(),
        instance: Some(identity),
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        metrics,
        keys: keys.clone(),
        agents: agent_store,
        bundles: bundle_store,
        agents_synced,
        bundles_synced,
        policies: PolicyCache::default(),
        in_force: Default::default(),
        revalidations: Default::default(),
        settings: Settings::new(&config),
        status_limiter: status_limiter(config.status_qps),
    });

    // A new key ring (rotation, revocation) makes every agent be judged again.
    let (keys_changed, keys_rx) = watch::channel(0u64);
    let poll = Duration::try_from(config.keyring_poll)
        .map_err(|e| Error::Config(format!("--keyring-poll: {e}")))?;
    tokio::spawn(keys.watch(poll, keys_changed));
    let key_trigger = tokio_stream_of(keys_rx);

    tokio::spawn(gauge_loop(ctx.clone()));
    let readiness = {
        let ctx = ctx.clone();
        async move {
            ctx.agents_synced.wait().await;
            ctx.bundles_synced.wait().await;
            info!("caches synced; ready");
            ready.store(true, Ordering::Relaxed);
        }
    };
    tokio::spawn(readiness);

    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        info!("shutting down");
    };
    let agents = agent_controller
        .reconcile_all_on(key_trigger)
        .graceful_shutdown_on(shutdown)
        .run(
            agent_controller::reconcile,
            agent_controller::error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});
    let bundles = bundle_controller
        .run(
            bundle_controller::reconcile,
            bundle_controller::error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});
    tokio::select! {
        () = agents => {},
        () = bundles => {},
    }
    Ok(())
}

/// A stream that yields each time the watched value changes.
fn tokio_stream_of(rx: watch::Receiver<u64>) -> impl futures::Stream<Item = ()> + Send {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok().map(|()| ((), rx))
    })
}

/// Keep the agents-by-status gauge in step with the cache.
async fn gauge_loop(ctx: Arc<Context>) {
    let mut interval = tokio::time::interval(Duration::from_secs(10));
    loop {
        interval.tick().await;
        let mut counts = [0i64; 4];
        for agent in ctx.agents.state() {
            if let Some(status) = agent.status.as_ref().and_then(|s| s.governance_status)
                && let Some(i) = GovernanceStatus::ALL.iter().position(|g| *g == status)
            {
                counts[i] += 1;
            }
        }
        for (status, count) in GovernanceStatus::ALL.iter().zip(counts) {
            ctx.metrics.set_agents(*status, count);
        }
    }
}

mod leader;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod judge_tests;
