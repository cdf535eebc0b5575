//! agentgov operator: the seed's Promotion, Policy and Revalidation services as Kubernetes
//! controllers.
#![forbid(unsafe_code)]

mod agent_controller;
mod agents;
mod allocations;
mod authz;
mod backoff;
mod break_glass;
mod bundle_controller;
mod cache;
mod compact;
mod config;
mod containment;
mod context;
mod driver;
mod error;
mod exception_controller;
mod guards;
mod judge;
mod kept;
mod keys;
mod metrics;
mod policy_report;
mod revalidation;
mod revisions;
mod status;
mod triggers;
mod widening;
mod workload;
mod written;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agentgov_api::exception::AgentException;
use agentgov_api::{AgentPromotion, ClusterPolicyBundle, GovernanceStatus, PolicyBundle};
use agentgov_runtime::health::{self, Health, Readiness};
use agentgov_runtime::shutdown::Shutdown;
use agentgov_runtime::telemetry;
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, ResourceExt};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::authz::Approvers;
use crate::compact::WatchedAgent;
use crate::config::Config;
use crate::context::{Context, GuardState, PolicyCache, PromotionIndex, Settings, status_limiter};
use crate::error::{Error, Result};
use crate::keys::KeyRingSource;
use crate::metrics::Metrics;

// jemalloc, with one arena and freed pages returned to the kernel within a second (settings
// built in by .cargo/config.toml; the background thread that returns them, on glibc and musl
// alike, by the workspace's Cargo.toml). glibc's per-thread arenas held ~30 MB more at 10,000
// agents: a no-change sweep's RSS went from 130 to 100 MiB, with a little less CPU per agent
// ("The operator's allocator" in BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let log = telemetry::init(config.runtime.log_format, "info,kube_lease_manager=warn");
    let code = match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "operator stopped");
            ExitCode::FAILURE
        }
    };
    log.flush();
    code
}

async fn run(config: Config) -> Result<()> {
    config.sandbox.check()?;
    // /readyz: 503 until the caches have synced (a standby waiting for the Lease is ready), and
    // from the first moment of a shutdown on. SIGTERM (a Pod being stopped) or SIGINT:
    // readiness off first, the controllers finish what is in flight (at most
    // `--shutdown-grace`), the Lease is released, exit 0.
    let readiness = Readiness::new();
    let stop = Shutdown::on_signals(readiness.clone());
    let stopping = {
        let stop = stop.clone();
        move || stop.wait()
    };
    let metrics_listener = agentgov_runtime::bind(config.metrics_listen).await?;
    let keys = Arc::new(KeyRingSource::load(&config.keyring_file)?);
    // The public policy-signing ring: a separate ring from the proof keys, same reloader.
    let bundle_keys = config.bundle_signing.keys()?;
    let client = agentgov_runtime::api_client::client().await?;
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let guards_mode = crate::guards::ModeGauge::register(&mut registry);
    let health = Health::with_registry(readiness.clone(), Arc::new(registry));
    // Serves until the process exits: /readyz says 503 throughout a shutdown.
    tokio::spawn(async move {
        if let Err(e) = health::serve(metrics_listener, health, std::future::pending()).await {
            error!(error = %e, "metrics server failed");
            std::process::exit(1);
        }
    });

    let identity = config.identity();
    let leadership = if config.leader_election {
        tokio::select! {
            held = leader::acquire(&client, &config, &identity, &readiness) => Some(held?),
            () = stopping() => {
                info!("stopped before becoming leader");
                return Ok(());
            }
        }
    } else {
        warn!("leader election is off: run a single replica");
        None
    };

    let (agents, bundles, promotions): (Api<WatchedAgent>, Api<PolicyBundle>, Api<AgentPromotion>) =
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
    let writes = status_limiter(config.status_qps).with_concurrency(config.write_concurrency);
    // Every change of an agent (its status writes included) marks its namespace's
    // PolicyReport to be recomputed (`--policy-reports`; nothing otherwise).
    let reports = Arc::new(policy_report::Reports::new(config.policy_reports));
    let agent_cache = Arc::new(agents::Agents::default());
    let widened = Arc::new(widening::Widened::default());
    let (agent_stream, agents_synced) = {
        let cache = Arc::clone(&agent_cache);
        let written = Arc::clone(&writes.written);
        let reports = Arc::clone(&reports);
        let widened = Arc::clone(&widened);
        let metrics = metrics.clone();
        cache::streamed(
            agents,
            cache::config(),
            cache::slim_unlabelled,
            move |event| {
                cache.observe(event);
                triggers::forget_deleted(&written, event);
                widening::forget_deleted(&widened, &metrics, event);
                reports.observe(event);
            },
        )
    };
    // A bundle whose version in force changes (or that is deleted) has its namespace's agents
    // judged again at once; the bundle's own status writes change nothing for them.
    let (namespaces_tx, namespaces_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let in_force = triggers::BundleTrigger::new(config.bundle_name.clone(), namespaces_tx);
    let (bundle_store, bundle_stream, bundles_synced) =
        cache::watched(bundles, cache::config(), cache::slim, move |event| {
            in_force.observe(event)
        });
    // The cluster floor: a new version in force (or the floor deleted) judges every agent again.
    let (floors_tx, floors_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let floor_in_force = triggers::BundleTrigger::new(config.bundle_name.clone(), floors_tx);
    // Not served (the CRD not applied since an upgrade: Helm never upgrades CRDs): no floor,
    // said once, rather than a watch that never syncs.
    let (floor_store, floor_stream, floors_synced) = if serves_floors(&client).await {
        let (store, stream, synced) = cache::watched(
            Api::<ClusterPolicyBundle>::all(client.clone()),
            cache::config(),
            cache::slim,
            move |event| floor_in_force.observe(event),
        );
        (store, futures::future::Either::Left(stream), synced)
    } else {
        warn!(
            "clusterpolicybundles.agentgov.dev is not served: no cluster floor is in force (kubectl apply --server-side -f charts/agentgov/crds/, then restart the operator)"
        );
        let (store, synced) = cache::empty();
        (
            store,
            futures::future::Either::Right(futures::stream::pending()),
            synced,
        )
    };
    let floor_changed = futures::stream::unfold(floors_rx, |mut rx| async move {
        rx.recv().await.map(|_| ((), rx))
    });
    // AgentExceptions: a change has the agents it covers judged again (their expiry is each
    // agent's own requeue).
    let exceptions: Api<AgentException> = match &config.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (exception_store, exception_stream, exceptions_synced) =
        cache::watched(exceptions.clone(), cache::config(), cache::slim, |_| {});
    // Their own status (when each ends, whom it covers): a controller with its own small cache.
    let exception_controller = Controller::new(exceptions, cache::config());
    let promotion_index = Arc::new(PromotionIndex::default());
    let (promotion_stream, promotions_synced) = {
        let index = Arc::clone(&promotion_index);
        let written = Arc::clone(&writes.written);
        cache::streamed(
            promotions,
            cache::config(),
            cache::slim_unlabelled,
            move |event| {
                triggers::index_promotions(&index, event);
                triggers::forget_deleted(&written, event);
            },
        )
    };
    // The agents' NetworkPolicies: a change by anyone has their agent looked at again.
    let namespace = config.namespace.as_deref();
    let (policy_store, policy_stream, policies_synced) =
        kept::cache::<NetworkPolicy>(&client, namespace, config.contain_pods);
    // Everyone else's NetworkPolicies: a change has its namespace's agents looked at again
    // (does it widen their containment?).
    let (foreign_store, foreign_stream, foreign_synced) =
        widening::watch(&client, namespace, config.contain_pods);
    // Managed agents' Deployments and ConfigMaps: likewise.
    let (deployment_store, deployment_stream, deployments_synced) =
        kept::cache::<Deployment>(&client, namespace, config.manage_workloads);
    let (config_map_store, config_map_stream, config_maps_synced) =
        kept::cache::<ConfigMap>(&client, namespace, config.manage_workloads);
    // What has an agent judged again: its own changes, and its kept objects' changes.
    let mut agent_triggers = vec![
        triggers::agents_named(agent_stream, |a| Some(triggers::key_of(&a))),
        triggers::agents_named(promotion_stream, |p: AgentPromotion| {
            Some(driver::Key::new(
                &p.namespace().unwrap_or_default(),
                &p.spec.agent,
            ))
        }),
    ];
    if let Some(stream) = deployment_stream {
        agent_triggers.push(triggers::agents_named(stream, |d| d.agent()));
    }
    if let Some(stream) = config_map_stream {
        agent_triggers.push(triggers::agents_named(stream, |c| c.agent()));
    }
    if let Some(stream) = policy_stream {
        // One labelled as the operator's that it does not keep may widen any agent around it.
        agent_triggers.push(triggers::agents_touched(
            stream,
            agent_cache.clone(),
            |agents, p| match p.kept_for_its_agent() {
                true => p.agent().into_iter().collect(),
                false => agents.keys(p.metadata.namespace.as_deref()),
            },
        ));
    }
    if let Some(stream) = foreign_stream {
        agent_triggers.push(triggers::agents_touched(
            stream,
            agent_cache.clone(),
            |agents, p| agents.keys(p.metadata.namespace.as_deref()),
        ));
    }
    let bundle_controller = Controller::for_stream(bundle_stream, bundle_store.clone())
        .with_config(controller_config.clone());
    let floor_controller =
        Controller::for_stream(floor_stream, floor_store.clone()).with_config(controller_config);
    let reporter = Reporter {
        controller: "agentgov-operator".into(),
        instance: Some(identity),
    };
    let guards = GuardState::unknown();
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        counted: Default::default(),
        revisions: Default::default(),
        approvers: Approvers::new(
            client.clone(),
            Duration::try_from(config.sar_cache_ttl).unwrap_or(Duration::from_secs(10)),
        ),
        client: client.clone(),
        metrics: metrics.clone(),
        keys: keys.clone(),
        agents: agent_cache.clone(),
        bundles: bundle_store,
        floors: floor_store,
        exceptions: exception_store,
        promotion_index,
        agents_synced,
        bundles_synced,
        floors_synced,
        exceptions_synced,
        promotions_synced,
        network_policies: policy_store,
        network_policies_synced: policies_synced,
        foreign_policies: foreign_store,
        foreign_policies_synced: foreign_synced,
        widened,
        allocations: Default::default(),
        deployments: deployment_store,
        config_maps: config_map_store,
        workloads_synced: [deployments_synced, config_maps_synced],
        policies: PolicyCache::default(),
        guards: guards.clone(),
        webhook: Default::default(),
        settings: Settings {
            bundle_keys: bundle_keys.clone(),
            ..Settings::new(&config)
        },
        status_limiter: writes,
        reports: Arc::clone(&reports),
        resync: Default::default(),
    });

    // A new key ring (rotation, revocation), or the admission guards going or coming back,
    // makes every agent be judged again.
    let keys_rx = keys.changes();
    let poll = Duration::try_from(config.keyring_poll)
        .map_err(|e| Error::Config(format!("--keyring-poll: {e}")))?;
    let _keys_reloader = keys.spawn_reloader(poll, |_| {});
    // A new policy-signing ring has every bundle looked at again (a version waiting for its key
    // goes in force; the versions in force stay).
    if let Some(source) = &bundle_keys {
        let _ = source.spawn_reloader(poll, |_| {});
    }
    // One stream per controller (bundles and floors) of the same reloads.
    let bundle_keys_changed = || match &bundle_keys {
        Some(source) => futures::future::Either::Left(triggers::on_change(source.changes())),
        None => futures::future::Either::Right(futures::stream::pending()),
    };
    let (guards_changed, guards_rx) = watch::channel(0u64);
    crate::guards::start(
        &client,
        &config.guard_prefix,
        guards,
        metrics,
        guards_mode,
        guards_changed,
    )?;
    // Break-glass: the webhook configuration going or coming back has every agent judged again.
    let (webhook_changed, webhook_rx) = watch::channel(0u64);
    if !config.webhook_configuration.is_empty() {
        break_glass::start(
            &client,
            &config.webhook_configuration,
            ctx.webhook.clone(),
            ctx.metrics.clone(),
            webhook_changed,
        );
    }
    let rejudge_all = futures::stream::select(
        futures::stream::select(triggers::on_change(keys_rx), triggers::on_change(guards_rx)),
        futures::stream::select(floor_changed, triggers::on_change(webhook_rx)),
    );
    let rejudge_all =
        futures::stream::select(rejudge_all, ctx.resync.every(agent_controller::RESYNC));
    let in_force_changed = triggers::agents_of(namespaces_rx, agent_cache.clone());

    tokio::spawn(gauge_loop(ctx.clone()));
    if reports.enabled() {
        tokio::spawn(policy_report::run(
            client.clone(),
            config.bundle_name.clone(),
            ctx.agents.clone(),
            ctx.agents_synced.clone(),
            reports,
        ));
    }
    tokio::spawn({
        let ctx = ctx.clone();
        let readiness = readiness.clone();
        async move {
            ctx.agents_synced.wait().await;
            ctx.bundles_synced.wait().await;
            ctx.floors_synced.wait().await;
            ctx.exceptions_synced.wait().await;
            ctx.promotions_synced.wait().await;
            ctx.network_policies_synced.wait().await;
            ctx.foreign_policies_synced.wait().await;
            for synced in &ctx.workloads_synced {
                synced.wait().await;
            }
            info!("caches synced; ready");
            readiness.set(true);
        }
    });

    // Readiness is already off when this resolves (see `stop`).
    let shutdown = stopping();
    agent_triggers.push(triggers::agents_covered_by(
        exception_stream,
        agent_cache.clone(),
    ));
    agent_triggers.push(in_force_changed.boxed());
    agent_triggers.push(triggers::all_agents(rejudge_all, agent_cache.clone()).boxed());
    let agents = driver::Driver {
        get: Box::new({
            let agents = agent_cache.clone();
            move |key: &driver::Key| agents.get(key)
        }),
        synced: ctx.agents_synced.clone(),
        concurrency: usize::from(config.concurrency),
        ctx: ctx.clone(),
    }
    .run(
        futures::stream::select_all(agent_triggers),
        shutdown,
        agent_controller::reconcile,
        agent_controller::error_policy,
    );
    let floors = run_bundles(
        floor_controller,
        bundle_keys_changed(),
        stopping(),
        ctx.clone(),
    );
    let bundles = run_bundles(
        bundle_controller,
        bundle_keys_changed(),
        stopping(),
        ctx.clone(),
    );
    let exceptions = exception_controller
        .graceful_shutdown_on(stopping())
        .run(
            exception_controller::reconcile,
            exception_controller::error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});
    let controllers = async {
        tokio::join!(agents, bundles, floors, exceptions);
    };
    // The controllers run until a shutdown; then the reconciles in flight get the grace.
    let _ = stop
        .bounded(config.runtime.shutdown_grace, controllers)
        .await;
    if let Some(leadership) = leadership {
        leadership.release().await;
    }
    info!("stopped");
    Ok(())
}

/// Whether the API server serves ClusterPolicyBundles (an error counts as served: the watch
/// then retries as for any kind).
async fn serves_floors(client: &kube::Client) -> bool {
    match client
        .list_api_group_resources("agentgov.dev/v1alpha1")
        .await
    {
        Ok(served) => served
            .resources
            .iter()
            .any(|r| r.name == "clusterpolicybundles"),
        Err(_) => true,
    }
}

/// Run a bundle controller (namespace bundles or floors), every bundle looked at again when the
/// policy-signing ring changes, until a shutdown.
fn run_bundles<K: bundle_controller::Bundle>(
    controller: Controller<K>,
    keys_changed: impl futures::Stream<Item = ()> + Send + 'static,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    ctx: Arc<Context>,
) -> impl std::future::Future<Output = ()> {
    controller
        .reconcile_all_on(keys_changed)
        .graceful_shutdown_on(shutdown)
        .run(
            bundle_controller::reconcile,
            bundle_controller::error_policy,
            ctx,
        )
        .for_each(|_| async {})
}

/// Keep the agents-by-status gauge in step with the cache.
async fn gauge_loop(ctx: Arc<Context>) {
    let mut interval = tokio::time::interval(Duration::from_secs(10));
    let mut exported = std::collections::BTreeSet::new();
    loop {
        interval.tick().await;
        let mut counts = [0i64; 4];
        for agent in ctx.agents.lock().values().flat_map(|names| names.values()) {
            if let Some(status) = agent.summary.governance_status
                && let Some(i) = GovernanceStatus::ALL.iter().position(|g| *g == status)
            {
                counts[i] += 1;
            }
        }
        for (status, count) in GovernanceStatus::ALL.iter().zip(counts) {
            ctx.metrics.set_agents(*status, count);
        }
        budget_gauges(&ctx, &mut exported);
    }
}

mod leader;

#[cfg(test)]
mod fixtures;

/// The namespaces' allocated budgets and totals, from the caches: every namespace with a
/// governed agent or a total has both series it can (a namespace that no longer has either is
/// dropped, so the series do not outlive what they describe).
fn budget_gauges(ctx: &Context, exported: &mut std::collections::BTreeSet<String>) {
    let mut allocated: std::collections::BTreeMap<String, f64> = Default::default();
    for (namespace, agents) in ctx.agents.lock().iter() {
        let sum = allocated.entry(namespace.to_string()).or_default();
        for agent in agents.values() {
            if agent.summary.holds_governance() {
                *sum += agent.summary.monthly_budget_usd;
            }
        }
    }
    let mut now_exported = std::collections::BTreeSet::new();
    for (namespace, sum) in allocated {
        let limit = ctx
            .active_policy(&namespace)
            .ok()
            .flatten()
            .and_then(|p| p.engine.data().max_namespace_monthly_budget_usd);
        if limit.is_none() && sum == 0.0 {
            continue;
        }
        let label = metrics::NamespaceLabel {
            namespace: namespace.clone(),
        };
        ctx.metrics.budget_allocated.get_or_create(&label).set(sum);
        match limit {
            Some(limit) => {
                ctx.metrics.budget_limit.get_or_create(&label).set(limit);
            }
            None => {
                ctx.metrics.budget_limit.remove(&label);
            }
        }
        now_exported.insert(namespace);
    }
    // Series of namespaces that no longer have either go (updated in place, never cleared: a
    // scrape between a clear and a set would reset the alerts' `for`).
    for gone in exported.difference(&now_exported) {
        let label = metrics::NamespaceLabel {
            namespace: gone.clone(),
        };
        ctx.metrics.budget_allocated.remove(&label);
        ctx.metrics.budget_limit.remove(&label);
    }
    *exported = now_exported;
}

#[cfg(test)]
mod allocator_tests {
    /// The settings .cargo/config.toml builds into jemalloc are in force (without them, jemalloc
    /// keeps four arenas per core and holds more than glibc at 1,000 agents), and its background
    /// thread runs, on musl too (the workspace's Cargo.toml).
    #[test]
    fn jemalloc_runs_with_one_arena_and_background_purging() {
        assert_eq!(tikv_jemalloc_ctl::opt::narenas::read().unwrap(), 1);
        assert!(tikv_jemalloc_ctl::opt::background_thread::read().unwrap());
        assert!(tikv_jemalloc_ctl::background_thread::read().unwrap());
    }
}
