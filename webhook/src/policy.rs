//! The promotion policy in force per namespace, kept from PolicyBundle watch events.
//!
//! The bundle named `--bundle-name` in a namespace is the one in force. The webhook compiles
//! its **spec** itself, so a new version is in force at admission as soon as it compiles, even
//! while the operator is down (the operator's re-signing catches up later). A spec that does
//! not compile keeps the last good version: the one in force in this process, or else the
//! operator's `status.activeSpec` (only if it hashes to `status.activeHash`). Compiled engines
//! are cached by hash, and so are compile failures, so a status-only event compiles nothing.
//! With `--require-signed-bundles` a spec whose signature does not verify is not put in force
//! either: the last good version stays, as for one that does not compile.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use agentgov_api::agent::{AgentMode, RoleClass};
use agentgov_api::hash::policy_hash;
use agentgov_api::pod_security::PodSecurityLevel;
use agentgov_api::policy::{ActiveSpec, PolicyEngine, active_spec};
use agentgov_api::policy_bundle::PolicyData;
use agentgov_api::{PolicyBundle, PolicyBundleSpec};
use kube::ResourceExt;
use kube::runtime::watcher::Event;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::{Metrics, ResultLabels};

/// At most this many compile failures are remembered (by hash); past it they are forgotten.
const FAILED_CAPACITY: usize = 256;

/// A compiled policy and the data it was compiled with (Pod Security levels are read from it).
#[derive(Clone, Debug)]
pub struct ActivePolicy {
    pub engine: PolicyEngine,
    pub data: Arc<PolicyData>,
}

impl ActivePolicy {
    pub fn compile(spec: &PolicyBundleSpec) -> Result<Self, agentgov_api::Error> {
        Ok(ActivePolicy {
            engine: PolicyEngine::compile(spec)?,
            data: Arc::new(spec.data.clone()),
        })
    }

    pub fn hash(&self) -> &str {
        self.engine.hash()
    }
}

pub struct PolicyIndex {
    bundle_name: String,
    /// Namespace -> policy in force.
    in_force: RwLock<HashMap<String, ActivePolicy>>,
    /// Hash -> compiled policy.
    engines: Mutex<HashMap<String, ActivePolicy>>,
    /// Hashes of specs that did not compile (not compiled again on every status event).
    failed: Mutex<HashSet<String>>,
    /// Policies gathered during a (re)list, swapped in at `InitDone`.
    relist: Mutex<Option<HashMap<String, ActivePolicy>>>,
    synced: AtomicBool,
    loads: Family<ResultLabels, Counter>,
    /// The public policy-signing ring a spec must verify with (`--require-signed-bundles`).
    bundle_keys: Option<Arc<agentgov_runtime::keys::Keys>>,
}

impl std::fmt::Debug for PolicyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyIndex")
            .field("bundle_name", &self.bundle_name)
            .field("synced", &self.synced())
            .finish_non_exhaustive()
    }
}

/// Where the version put in force came from (for the log line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Spec,
    Kept,
    OperatorStatus,
}

impl PolicyIndex {
    pub fn new(bundle_name: impl Into<String>, loads: Family<ResultLabels, Counter>) -> Self {
        PolicyIndex {
            bundle_name: bundle_name.into(),
            in_force: RwLock::default(),
            engines: Mutex::default(),
            failed: Mutex::default(),
            relist: Mutex::default(),
            synced: AtomicBool::new(false),
            loads,
            bundle_keys: None,
        }
    }

    /// Put in force only specs whose signature verifies with `keys` (`None`: any spec).
    pub fn with_bundle_keys(mut self, keys: Option<Arc<agentgov_runtime::keys::Keys>>) -> Self {
        self.bundle_keys = keys;
        self
    }

    /// The policy in force in `namespace`, if any.
    pub fn get(&self, namespace: &str) -> Option<ActivePolicy> {
        self.in_force
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(namespace)
            .cloned()
    }

    /// The hash of the policy in force in `namespace`, if any.
    pub fn hash(&self, namespace: &str) -> Option<Arc<str>> {
        self.in_force
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(namespace)
            .map(|p| p.engine.shared_hash())
    }

    /// The Pod Security level an agent's Pods must meet in `namespace` (see
    /// [`PolicyData::pod_security_level`]), read without cloning the policy.
    pub fn pod_security_level(
        &self,
        namespace: &str,
        mode: AgentMode,
        role: RoleClass,
    ) -> PodSecurityLevel {
        match self
            .in_force
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(namespace)
        {
            Some(policy) => policy.data.pod_security_level(mode, role),
            None => PolicyData::default().pod_security_level(mode, role),
        }
    }

    /// Whether the first list has been applied.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Put a policy in force directly (tests and tools).
    pub fn insert(&self, namespace: &str, policy: ActivePolicy) {
        self.cache(&policy);
        self.in_force
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(namespace.to_string(), policy);
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
                if let Some(policy) = self.resolve(&ns, &bundle, previous).await {
                    self.relist
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_or_insert_with(HashMap::new)
                        .insert(ns, policy);
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
                    Some(policy) => {
                        in_force.insert(ns, policy);
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

    /// The policy a bundle puts in force: its spec if that compiles; else `previous` (the last
    /// good version in this process); else the operator's `status.activeSpec` if it hashes to
    /// `status.activeHash`; else none.
    async fn resolve(
        &self,
        namespace: &str,
        bundle: &PolicyBundle,
        previous: Option<ActivePolicy>,
    ) -> Option<ActivePolicy> {
        let verified = match &self.bundle_keys {
            None => true,
            Some(keys) => {
                match agentgov_api::bundle_signature::verify_bundle(&keys.current(), &bundle.spec) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(
                            namespace,
                            version = %bundle.spec.version,
                            error = %e,
                            "policy bundle version not put in force: its signature does not verify"
                        );
                        false
                    }
                }
            }
        };
        let from_spec = if verified {
            self.load(namespace, &bundle.spec).await
        } else {
            None
        };
        let chosen = match from_spec {
            Some(policy) => Some((policy, Source::Spec)),
            None => match previous {
                Some(previous) => Some((previous, Source::Kept)),
                None => self
                    .operator_status(namespace, bundle)
                    .await
                    .map(|p| (p, Source::OperatorStatus)),
            },
        };
        match &chosen {
            Some((policy, source)) if self.hash(namespace).as_deref() != Some(policy.hash()) => {
                tracing::info!(
                    namespace,
                    hash = policy.hash(),
                    source = ?source,
                    "policy in force"
                );
            }
            None => tracing::info!(
                namespace,
                "policy bundle has no version that compiles: no policy in force"
            ),
            Some(_) => {}
        }
        chosen.map(|(policy, _)| policy)
    }

    /// The operator's last good version, trusted only if it hashes to what the status claims
    /// ([`agentgov_api::policy::active_spec`]).
    async fn operator_status(
        &self,
        namespace: &str,
        bundle: &PolicyBundle,
    ) -> Option<ActivePolicy> {
        match active_spec(bundle.status.as_ref()) {
            ActiveSpec::Unset => None,
            ActiveSpec::Trusted(spec) => self.load(namespace, spec).await,
            ActiveSpec::Untrusted(why) => {
                Metrics::reload(&self.loads, false);
                tracing::error!(namespace, reason = %why, "status.activeSpec is not trusted");
                None
            }
        }
    }

    /// A spec compiled (or from the cache); `None` if it does not compile (reported once).
    async fn load(&self, namespace: &str, spec: &PolicyBundleSpec) -> Option<ActivePolicy> {
        let hash = match policy_hash(spec) {
            Ok(hash) => hash,
            Err(e) => {
                Metrics::reload(&self.loads, false);
                tracing::error!(namespace, error = %e, "cannot hash the policy bundle");
                return None;
            }
        };
        if let Some(policy) = self
            .engines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&hash)
        {
            return Some(policy.clone());
        }
        if self.lock_failed().contains(&hash) {
            return None;
        }
        let owned = spec.clone();
        let compiled = tokio::task::spawn_blocking(move || ActivePolicy::compile(&owned)).await;
        let error = match compiled {
            Ok(Ok(policy)) => {
                Metrics::reload(&self.loads, true);
                tracing::info!(namespace, hash = %hash, version = %spec.version, "policy compiled");
                self.cache(&policy);
                return Some(policy);
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("compilation panicked: {e}"),
        };
        Metrics::reload(&self.loads, false);
        tracing::error!(
            namespace,
            hash = %hash,
            version = %spec.version,
            error,
            "policy bundle version does not compile; the last good version stays in force"
        );
        let mut failed = self.lock_failed();
        if failed.len() >= FAILED_CAPACITY {
            failed.clear();
        }
        failed.insert(hash);
        None
    }

    fn lock_failed(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.failed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cache(&self, policy: &ActivePolicy) {
        self.engines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(policy.hash().to_string(), policy.clone());
    }

    /// Forget compiled engines no namespace uses any more.
    fn prune(&self) {
        let used: HashSet<String> = self
            .in_force
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|p| p.hash().to_string())
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
