//! The promotion policy in force per namespace, kept from PolicyBundle watch events.
//!
//! The bundle named `--bundle-name` in a namespace is the one in force; of it, the webhook uses
//! only `status.activeHash` and `status.activeSpec` (written by the operator: the last spec
//! that compiled). `activeSpec` must hash to `activeHash`, or the namespace has no policy.
//! Compiled engines are cached by hash, so a status-only event does not recompile; a version
//! that fails to compile here is reported and the last good one stays in force.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use agentgov_api::PolicyBundle;
use agentgov_api::hash::policy_hash;
use agentgov_api::policy::PolicyEngine;
use kube::ResourceExt;
use kube::runtime::watcher::Event;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::{Metrics, ResultLabels};

pub struct PolicyIndex {
    bundle_name: String,
    /// Namespace -> engine in force.
    in_force: RwLock<HashMap<String, PolicyEngine>>,
    /// Hash -> compiled engine.
    engines: Mutex<HashMap<String, PolicyEngine>>,
    /// Engines gathered during a (re)list, swapped in at `InitDone`.
    relist: Mutex<Option<HashMap<String, PolicyEngine>>>,
    synced: AtomicBool,
    loads: Family<ResultLabels, Counter>,
}

impl std::fmt::Debug for PolicyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyIndex")
            .field("bundle_name", &self.bundle_name)
            .field("synced", &self.synced())
            .finish_non_exhaustive()
    }
}

impl PolicyIndex {
    pub fn new(bundle_name: impl Into<String>, loads: Family<ResultLabels, Counter>) -> Self {
        PolicyIndex {
            bundle_name: bundle_name.into(),
            in_force: RwLock::default(),
            engines: Mutex::default(),
            relist: Mutex::default(),
            synced: AtomicBool::new(false),
            loads,
        }
    }

    /// The engine in force in `namespace`, if any.
    pub fn get(&self, namespace: &str) -> Option<PolicyEngine> {
        self.in_force
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(namespace)
            .cloned()
    }

    /// The hash of the engine in force in `namespace`, if any.
    pub fn hash(&self, namespace: &str) -> Option<Arc<str>> {
        self.in_force
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(namespace)
            .map(PolicyEngine::shared_hash)
    }

    /// Whether the first list has been applied.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Put an engine in force directly (tests and tools).
    pub fn insert(&self, namespace: &str, engine: PolicyEngine) {
        self.cache_engine(&engine);
        self.in_force
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(namespace.to_string(), engine);
        self.synced.store(true, Ordering::Release);
    }

    /// Apply one watch event.
    pub async fn apply_event(&self, event: Event<PolicyBundle>) {
        match event {
            Event::Init => {
                *self.relist.lock().unwrap_or_else(PoisonError::into_inner) = Some(HashMap::new());
            }
            Event::InitApply(bundle) => {
                let Some(ns) = self.namespace_of(&bundle) else {
                    return;
                };
                let previous = self.get(&ns);
                if let Some(engine) = self.resolve(&ns, &bundle, previous).await {
                    self.relist
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_or_insert_with(HashMap::new)
                        .insert(ns, engine);
                }
            }
            Event::InitDone => {
                let fresh = self
                    .relist
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()
                    .unwrap_or_default();
                tracing::info!(namespaces = fresh.len(), "policy bundles listed");
                *self
                    .in_force
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = fresh;
                self.prune();
                self.synced.store(true, Ordering::Release);
            }
            Event::Apply(bundle) => {
                let Some(ns) = self.namespace_of(&bundle) else {
                    return;
                };
                let previous = self.get(&ns);
                let resolved = self.resolve(&ns, &bundle, previous).await;
                let mut in_force = self
                    .in_force
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                match resolved {
                    Some(engine) => {
                        in_force.insert(ns, engine);
                    }
                    None => {
                        in_force.remove(&ns);
                    }
                }
                drop(in_force);
                self.prune();
            }
            Event::Delete(bundle) => {
                let Some(ns) = self.namespace_of(&bundle) else {
                    return;
                };
                tracing::info!(namespace = %ns, bundle = %bundle.name_any(), "policy bundle deleted: no policy in force");
                self.in_force
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&ns);
                self.prune();
            }
        }
    }

    /// The namespace of a bundle that is the one in force there; `None` for other bundles.
    fn namespace_of(&self, bundle: &PolicyBundle) -> Option<String> {
        if bundle.name_any() != self.bundle_name {
            return None;
        }
        bundle.namespace()
    }

    /// The engine a bundle puts in force, or `previous` when its active version does not
    /// compile here, or `None` when it has no (valid) active version.
    async fn resolve(
        &self,
        namespace: &str,
        bundle: &PolicyBundle,
        previous: Option<PolicyEngine>,
    ) -> Option<PolicyEngine> {
        let status = bundle.status.as_ref();
        let (Some(claimed), Some(spec)) = (
            status.and_then(|s| s.active_hash.as_deref()),
            status.and_then(|s| s.active_spec.as_ref()),
        ) else {
            tracing::info!(
                namespace,
                "policy bundle has no active version yet: no policy in force"
            );
            return None;
        };
        match policy_hash(spec) {
            Ok(actual) if actual == claimed => {}
            Ok(actual) => {
                Metrics::reload(&self.loads, false);
                tracing::error!(
                    namespace,
                    claimed,
                    actual = %actual,
                    "status.activeHash does not match status.activeSpec: no policy in force"
                );
                return None;
            }
            Err(e) => {
                Metrics::reload(&self.loads, false);
                tracing::error!(namespace, error = %e, "cannot hash status.activeSpec: no policy in force");
                return None;
            }
        }
        if let Some(engine) = self
            .engines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(claimed)
        {
            return Some(engine.clone());
        }
        let owned = spec.clone();
        let compiled = tokio::task::spawn_blocking(move || PolicyEngine::compile(&owned)).await;
        match compiled {
            Ok(Ok(engine)) => {
                Metrics::reload(&self.loads, true);
                tracing::info!(
                    namespace,
                    hash = claimed,
                    version = %spec.version,
                    "policy in force"
                );
                self.cache_engine(&engine);
                Some(engine)
            }
            Ok(Err(e)) => {
                Metrics::reload(&self.loads, false);
                tracing::error!(
                    namespace,
                    hash = claimed,
                    error = %e,
                    kept = previous.as_ref().map(|p| p.hash()),
                    "active policy does not compile; the last good version stays in force"
                );
                previous
            }
            Err(e) => {
                Metrics::reload(&self.loads, false);
                tracing::error!(namespace, error = %e, "policy compilation panicked; the last good version stays in force");
                previous
            }
        }
    }

    fn cache_engine(&self, engine: &PolicyEngine) {
        self.engines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(engine.hash().to_string(), engine.clone());
    }

    /// Forget compiled engines no namespace uses any more.
    fn prune(&self) {
        let used: std::collections::HashSet<String> = self
            .in_force
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|e| e.hash().to_string())
            .collect();
        self.engines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|hash, _| used.contains(hash));
    }

    /// How many compiled engines are cached (for tests).
    pub fn cached_engines(&self) -> usize {
        self.engines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}
