//! In-memory caches fed by watches, so that an admission makes no API call in the common path:
//! a kube-runtime reflector of Agents, the [`PolicyIndex`] of PolicyBundles (watched by name),
//! and the key ring. Readiness is false until both watches have listed once. Beside the Agent
//! cache, the [`CheckMemo`] of spec hashes and signature verdicts, pruned as agents leave.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agentgov_api::exception::{AgentException, AppliedException, applicable};
use agentgov_api::{Agent, ClusterPolicyBundle, PolicyBundle};
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::Event;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::task::JoinHandle;

use crate::decide::View;
use crate::keys::{KeySnapshot, Keys};
use crate::memo::CheckMemo;
use crate::metrics::Metrics;
use crate::policy::PolicyIndex;

/// The caches behind the live webhook.
pub struct Caches {
    agents: Store<Agent>,
    /// AgentExceptions (empty until listed, and where the kind is not served: nothing waived).
    exceptions: Store<AgentException>,
    agents_synced: AtomicBool,
    policies: Arc<PolicyIndex>,
    keys: Arc<Keys>,
    memo: CheckMemo,
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches")
            .field("agents", &self.agents.len())
            .field("memo", &self.memo.len())
            .field("synced", &self.synced())
            .finish_non_exhaustive()
    }
}

impl Caches {
    fn new(
        agents: Store<Agent>,
        exceptions: Store<AgentException>,
        policies: Arc<PolicyIndex>,
        keys: Arc<Keys>,
    ) -> Self {
        Caches {
            agents,
            exceptions,
            agents_synced: AtomicBool::new(false),
            policies,
            keys,
            memo: CheckMemo::default(),
        }
    }

    /// Caches without watches (tools, tests, benchmarks): the caller feeds the Agent cache
    /// through the returned writer, then hands each event to [`Caches::observe`], as the watch
    /// does. The Agent cache counts as synced; the policy index once a policy is put in force.
    pub fn detached(
        policies: Arc<PolicyIndex>,
        keys: Arc<Keys>,
    ) -> (Self, reflector::store::Writer<Agent>) {
        let (reader, writer) = reflector::store::<Agent>();
        let (exceptions, _) = reflector::store::<AgentException>();
        let caches = Caches::new(reader, exceptions, policies, keys);
        caches.agents_synced.store(true, Ordering::Release);
        (caches, writer)
    }

    /// Keep the memo to the agents in the cache, after the reflector has applied `event`.
    pub fn observe(&self, event: &Event<Agent>) {
        match event {
            Event::Delete(agent) => self
                .memo
                .forget(&agent.namespace().unwrap_or_default(), &agent.name_any()),
            Event::InitDone => {
                let present: std::collections::HashSet<ObjectRef<Agent>> = self
                    .agents
                    .state()
                    .iter()
                    .map(|agent| ObjectRef::from(agent.as_ref()))
                    .collect();
                self.memo.retain(|namespace, name| {
                    present.contains(&ObjectRef::new(name).within(namespace))
                });
            }
            Event::Apply(_) | Event::Init | Event::InitApply(_) => {}
        }
    }

    pub fn memo_stats(&self) -> (usize, crate::memo::MemoStats) {
        (self.memo.len(), self.memo.stats())
    }
}

impl View for Caches {
    fn synced(&self) -> bool {
        self.agents_synced.load(Ordering::Acquire) && self.policies.synced()
    }

    fn agent(&self, namespace: &str, name: &str) -> Option<Arc<Agent>> {
        self.agents.get(&ObjectRef::new(name).within(namespace))
    }

    fn policies(&self) -> &PolicyIndex {
        &self.policies
    }

    fn exceptions_for(
        &self,
        namespace: &str,
        name: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Vec<AppliedException> {
        let in_namespace = self
            .exceptions
            .state()
            .into_iter()
            .filter(|e| e.metadata.namespace.as_deref() == Some(namespace));
        applicable(
            in_namespace.collect::<Vec<_>>().iter().map(|e| e.as_ref()),
            name,
            labels,
            jiff::Timestamp::now(),
            self.policies.max_exception(),
        )
    }

    fn keys(&self) -> Arc<KeySnapshot> {
        self.keys.current()
    }

    fn memo(&self) -> Option<&CheckMemo> {
        Some(&self.memo)
    }
}

/// Drop from a watched Agent what no decision reads, before it is cached: managed fields
/// (half an object's size), annotations (`kubectl apply` keeps the whole manifest there),
/// labels, owner references, finalizers and status conditions. Kept: name, namespace, uid,
/// resourceVersion, creation and deletion timestamps, the whole spec (it is hashed), and the
/// status fields the checks read (governance status, proof, denies, warnings) with the rest of
/// the (small) status.
pub fn trim_for_cache(agent: &mut Agent) {
    let metadata = &mut agent.metadata;
    metadata.managed_fields = None;
    metadata.annotations = None;
    // Labels stay: an AgentException may select the agent by them.
    metadata.owner_references = None;
    metadata.finalizers = None;
    if let Some(status) = agent.status.as_mut() {
        status.conditions = Vec::new();
    }
}

/// Agents per page of the initial list (and of each re-list). kube's default of 500 full objects
/// (managed fields, annotations) per page leaves the allocator holding transient page memory
/// between the cached agents: with 10,000 agents the webhook sat at 55 MiB resident with pages of
/// 500 and at 40 MiB with pages of 50, ready 1.5 s after start instead of 1.2 s (BENCHMARKS.md).
/// Streaming lists did as well (39 MiB) but need the WatchList feature on the API server.
pub const AGENT_LIST_PAGE_SIZE: u32 = 50;

/// Start the watches. The returned tasks run until the process ends.
pub fn start(
    client: Client,
    namespace: Option<&str>,
    bundle_name: &str,
    keys: Arc<Keys>,
    bundle_keys: Option<Arc<Keys>>,
    metrics: Arc<Metrics>,
) -> (Arc<Caches>, Vec<JoinHandle<()>>) {
    let floors_api: Api<ClusterPolicyBundle> = Api::all(client.clone());
    let floor_client = client.clone();
    let (agents_api, bundles_api): (Api<Agent>, Api<PolicyBundle>) = match namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let policies = Arc::new(
        PolicyIndex::new(bundle_name, metrics.policy_bundle_load.clone())
            .with_bundle_keys(bundle_keys),
    );
    let (reader, writer) = reflector::store::<Agent>();
    let (exceptions, exception_writer) = reflector::store::<AgentException>();
    let caches = Arc::new(Caches::new(
        reader.clone(),
        exceptions,
        Arc::clone(&policies),
        keys,
    ));
    // AgentExceptions: not part of readiness (before they are listed, or where the kind is not
    // served, nothing is waived: stricter, never looser).
    let exception_client = client.clone();
    let exceptions_api: Api<AgentException> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client),
    };
    let exceptions_task = tokio::spawn(async move {
        if let Ok(served) = exception_client
            .list_api_group_resources("agentgov.dev/v1alpha1")
            .await
            && !served.resources.iter().any(|r| r.name == "agentexceptions")
        {
            tracing::warn!(
                "agentexceptions.agentgov.dev is not served: no exception waives any rule (apply the chart's CRDs, then restart the webhook)"
            );
            return;
        }
        let stream = watcher(exceptions_api, watcher::Config::default()).default_backoff();
        reflector::reflector(exception_writer, stream)
            .for_each(|event| {
                if let Err(e) = event {
                    tracing::warn!(error = %e, "agent exception watch error; retrying with backoff");
                }
                std::future::ready(())
            })
            .await;
    });

    let agent_stream = watcher(
        agents_api,
        watcher::Config::default().page_size(AGENT_LIST_PAGE_SIZE),
    )
    .default_backoff()
    .modify(trim_for_cache);
    let observer = Arc::clone(&caches);
    let agents_task = tokio::spawn(async move {
        reflector::reflector(writer, agent_stream)
            .for_each(|event| {
                match event {
                    Ok(event) => observer.observe(&event),
                    Err(e) => {
                        tracing::warn!(error = %e, "agent watch error; retrying with backoff");
                    }
                }
                std::future::ready(())
            })
            .await;
    });

    let ready_caches = Arc::clone(&caches);
    let ready_metrics = Arc::clone(&metrics);
    let readiness_task = tokio::spawn(async move {
        if reader.wait_until_ready().await.is_err() {
            tracing::error!("agent cache writer dropped before the first list");
            return;
        }
        ready_caches.agents_synced.store(true, Ordering::Release);
        tracing::info!(agents = reader.len(), "agent cache synced");
        while !ready_caches.synced() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        ready_metrics.cache_synced.set(1);
        tracing::info!("caches synced: ready");
    });

    let bundle_config = watcher::Config::default().fields(&format!("metadata.name={bundle_name}"));
    // The cluster floor (cluster-scoped, so watched cluster-wide even when the webhook watches
    // one namespace).
    let floor_policies = Arc::clone(&policies);
    let floor_config = bundle_config.clone();
    let floors_task = tokio::spawn(async move {
        // Not served (the CRD not applied since an upgrade: Helm never upgrades CRDs): no
        // floor, said once, rather than a watch that never syncs and keeps the webhook unready.
        if let Ok(served) = floor_client
            .list_api_group_resources("agentgov.dev/v1alpha1")
            .await
            && !served
                .resources
                .iter()
                .any(|r| r.name == "clusterpolicybundles")
        {
            tracing::warn!(
                "clusterpolicybundles.agentgov.dev is not served: no cluster floor is in force (apply the chart's CRDs, then restart the webhook)"
            );
            floor_policies.apply_floor_event(Event::Init).await;
            floor_policies.apply_floor_event(Event::InitDone).await;
            return;
        }
        let mut events = watcher(floors_api, floor_config).default_backoff().boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => floor_policies.apply_floor_event(event).await,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster policy bundle watch error; retrying with backoff");
                }
            }
        }
    });
    let bundles_task = tokio::spawn(async move {
        let mut events = watcher(bundles_api, bundle_config)
            .default_backoff()
            .boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => policies.apply_event(event).await,
                Err(e) => {
                    tracing::warn!(error = %e, "policy bundle watch error; retrying with backoff");
                }
            }
        }
    });

    (
        caches,
        vec![
            agents_task,
            readiness_task,
            bundles_task,
            floors_task,
            exceptions_task,
        ],
    )
}
