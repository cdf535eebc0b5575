//! In-memory caches fed by watches, so that an admission makes no API call in the common path:
//! a kube-runtime reflector of Agents, the [`PolicyIndex`] of PolicyBundles (watched by name),
//! and the key ring. Readiness is false until both watches have listed once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agentgov_api::keyring::KeyRing;
use agentgov_api::policy::PolicyEngine;
use agentgov_api::{Agent, PolicyBundle};
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::task::JoinHandle;

use crate::decide::View;
use crate::keys::Keys;
use crate::metrics::Metrics;
use crate::policy::PolicyIndex;

/// The caches behind the live webhook.
pub struct Caches {
    agents: Store<Agent>,
    agents_synced: AtomicBool,
    policies: Arc<PolicyIndex>,
    keys: Arc<Keys>,
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches")
            .field("agents", &self.agents.len())
            .field("synced", &self.synced())
            .finish_non_exhaustive()
    }
}

impl View for Caches {
    fn synced(&self) -> bool {
        self.agents_synced.load(Ordering::Acquire) && self.policies.synced()
    }

    fn agent(&self, namespace: &str, name: &str) -> Option<Arc<Agent>> {
        self.agents.get(&ObjectRef::new(name).within(namespace))
    }

    fn policy(&self, namespace: &str) -> Option<PolicyEngine> {
        self.policies.get(namespace)
    }

    fn keys(&self) -> Arc<KeyRing> {
        self.keys.current()
    }
}

/// Start the watches. The returned tasks run until the process ends.
pub fn start(
    client: Client,
    namespace: Option<&str>,
    bundle_name: &str,
    keys: Arc<Keys>,
    metrics: Arc<Metrics>,
) -> (Arc<Caches>, Vec<JoinHandle<()>>) {
    let (agents_api, bundles_api): (Api<Agent>, Api<PolicyBundle>) = match namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client, ns),
        ),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    let policies = Arc::new(PolicyIndex::new(
        bundle_name,
        metrics.policy_bundle_load.clone(),
    ));
    let (reader, writer) = reflector::store::<Agent>();
    let caches = Arc::new(Caches {
        agents: reader.clone(),
        agents_synced: AtomicBool::new(false),
        policies: Arc::clone(&policies),
        keys,
    });

    let agent_stream = watcher(agents_api, watcher::Config::default())
        .default_backoff()
        .modify(|agent: &mut Agent| {
            // Managed fields are half an object's size and never read here.
            agent.managed_fields_mut().clear();
        });
    let agents_task = tokio::spawn(async move {
        reflector::reflector(writer, agent_stream)
            .for_each(|event| async move {
                if let Err(e) = event {
                    tracing::warn!(error = %e, "agent watch error; retrying with backoff");
                }
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

    (caches, vec![agents_task, readiness_task, bundles_task])
}

/// A fixed view for tests, benchmarks and tools: agents, policies and keys set by hand.
pub struct StaticView {
    pub synced: bool,
    pub agents: std::collections::HashMap<(String, String), Arc<Agent>>,
    pub policies: PolicyIndex,
    pub keys: Arc<Keys>,
}

impl std::fmt::Debug for StaticView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticView")
            .field("synced", &self.synced)
            .field("agents", &self.agents.len())
            .finish_non_exhaustive()
    }
}

impl StaticView {
    pub fn new(keys: KeyRing) -> Self {
        StaticView {
            synced: true,
            agents: Default::default(),
            policies: PolicyIndex::new(
                agentgov_api::policy_bundle::DEFAULT_BUNDLE_NAME,
                Default::default(),
            ),
            keys: Keys::new(keys),
        }
    }

    pub fn add_agent(&mut self, agent: Agent) {
        let key = (agent.namespace().unwrap_or_default(), agent.name_any());
        self.agents.insert(key, Arc::new(agent));
    }
}

impl View for StaticView {
    fn synced(&self) -> bool {
        self.synced
    }

    fn agent(&self, namespace: &str, name: &str) -> Option<Arc<Agent>> {
        self.agents
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    fn policy(&self, namespace: &str) -> Option<PolicyEngine> {
        self.policies.get(namespace)
    }

    fn keys(&self) -> Arc<KeyRing> {
        self.keys.current()
    }
}
