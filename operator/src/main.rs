//! agentgov operator: the seed's Promotion, Policy and Revalidation services as Kubernetes
//! controllers.
#![forbid(unsafe_code)]

mod agent_controller;
mod authz;
mod backoff;
mod bundle_controller;
mod cache;
mod config;
mod context;
mod error;
mod guards;
mod judge;
mod keys;
mod metrics;
mod revalidation;
mod server;
mod status;
mod telemetry;
mod triggers;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agentgov_api::{Agent, AgentPromotion, GovernanceStatus, PolicyBundle};
use clap::Parser;
use futures::StreamExt;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::authz::Approvers;
use crate::config::Config;
use crate::context::{Context, GuardState, PolicyCache, PromotionIndex, Settings, status_limiter};
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
    // SIGTERM (a Pod being stopped) or SIGINT: readiness off first, the controllers finish what
    // is in flight, the Lease is released.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopping = {
        let stop_rx = stop_rx.clone();
        move || {
            let mut stop_rx = stop_rx.clone();
            async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            }
        }
    };

    let identity = config.identity();
    let leadership = if config.leader_election {
        tokio::select! {
            held = leader::acquire(&client, &config, &identity, ready.clone()) => Some(held?),
            () = stopping() => {
                info!("stopped before becoming leader");
                return Ok(());
            }
        }
    } else {
        warn!("leader election is off: run a single replica");
        None
    };

    let (agents, bundles, promotions): (Api<Agent>, Api<PolicyBundle>, Api<AgentPromotion>) =
        match &config.namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (
                Api::all(client.clone()),
                Api::all(client.clone()),
                Api::all(client.clone()),
            ),
        };
    let controller_config = ControllerConfig::default().concurrency(config.concurrency);
    let (agent_store, agent_stream, agents_synced) = cache::watched(agents, cache::slim, |_| {});
    // A bundle whose version in force changes (or that is deleted) has its namespace's agents
    // judged again at once; the bundle's own status writes change nothing for them.
    let (namespaces_tx, namespaces_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let in_force = triggers::BundleTrigger::new(config.bundle_name.clone(), namespaces_tx);
    let (bundle_store, bundle_stream, bundles_synced) =
        cache::watched(bundles, cache::slim, move |event| in_force.observe(event));
    let promotion_index = Arc::new(PromotionIndex::default());
    let (promotion_store, promotion_stream, promotions_synced) = {
        let index = Arc::clone(&promotion_index);
        cache::watched(promotions, cache::slim, move |event| {
            triggers::index_promotions(&index, event)
        })
    };
    let agent_controller = Controller::for_stream(agent_stream, agent_store.clone())
        .with_config(controller_config.clone());
    let bundle_controller =
        Controller::for_stream(bundle_stream, bundle_store.clone()).with_config(controller_config);
    let reporter = Reporter {
        controller: "agentgov-operator".into(),
        instance: Some(identity),
    };
    let guards = GuardState::unknown();
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        counted: Default::default(),
        approvers: Approvers::new(
            client.clone(),
            Duration::try_from(config.sar_cache_ttl).unwrap_or(Duration::from_secs(10)),
        ),
        client: client.clone(),
        metrics: metrics.clone(),
        keys: keys.clone(),
        agents: agent_store.clone(),
        bundles: bundle_store,
        promotions: promotion_store,
        promotion_index,
        agents_synced,
        bundles_synced,
        promotions_synced,
        policies: PolicyCache::default(),
        guards: guards.clone(),
        settings: Settings::new(&config),
        status_limiter: status_limiter(config.status_qps),
    });

    // A new key ring (rotation, revocation), or the admission guards going or coming back,
    // makes every agent be judged again.
    let (keys_changed, keys_rx) = watch::channel(0u64);
    let poll = Duration::try_from(config.keyring_poll)
        .map_err(|e| Error::Config(format!("--keyring-poll: {e}")))?;
    tokio::spawn(keys.watch(poll, keys_changed));
    let (guards_changed, guards_rx) = watch::channel(0u64);
    crate::guards::start(
        &client,
        &config.guard_prefix,
        guards,
        metrics,
        guards_changed,
    )?;
    let rejudge_all = futures::stream::select(tokio_stream_of(keys_rx), tokio_stream_of(guards_rx));
    let in_force_changed = triggers::agents_of(namespaces_rx, agent_store);

    tokio::spawn(gauge_loop(ctx.clone()));
    let readiness = {
        let ctx = ctx.clone();
        let ready = ready.clone();
        async move {
            ctx.agents_synced.wait().await;
            ctx.bundles_synced.wait().await;
            ctx.promotions_synced.wait().await;
            info!("caches synced; ready");
            ready.store(true, Ordering::Relaxed);
        }
    };
    tokio::spawn(readiness);

    let shutdown = {
        let stopping = stopping.clone();
        let ready = ready.clone();
        async move {
            stopping().await;
            ready.store(false, Ordering::Relaxed);
            info!("shutting down: finishing the reconciles in flight");
        }
    };
    let agents = agent_controller
        .watches_stream(promotion_stream, |p: AgentPromotion| {
            let namespace = p.namespace().unwrap_or_default();
            std::iter::once(ObjectRef::new(&p.spec.agent).within(&namespace))
        })
        .reconcile_on(in_force_changed)
        .reconcile_all_on(rejudge_all)
        .graceful_shutdown_on(shutdown)
        .run(
            agent_controller::reconcile,
            agent_controller::error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});
    let bundles = bundle_controller
        .graceful_shutdown_on(stopping())
        .run(
            bundle_controller::reconcile,
            bundle_controller::error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});
    let grace = Duration::try_from(config.shutdown_grace).unwrap_or(Duration::from_secs(10));
    let controllers = async {
        tokio::join!(agents, bundles);
    };
    tokio::select! {
        () = controllers => {},
        () = async {
            stopping().await;
            tokio::time::sleep(grace).await;
        } => warn!(grace = ?grace, "reconciles still in flight after the grace period; stopping"),
    }
    if let Some(leadership) = leadership {
        leadership.release().await;
    }
    info!("stopped");
    Ok(())
}

/// A future that completes on SIGTERM or Ctrl-C (SIGINT).
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => info!("SIGINT"),
        () = terminate => info!("SIGTERM"),
    }
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
