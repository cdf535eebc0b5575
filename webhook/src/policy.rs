//! The promotion policy in force per namespace, kept from PolicyBundle and ClusterPolicyBundle
//! watch events: each namespace's bundle and the cluster floor are kept as layers, and a
//! namespace's policy is both ([`EffectivePolicy`]), composed once per change of either.
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use agentgov_api::agent::{AgentMode, RoleClass};
use agentgov_api::effective::{EffectivePolicy, Layer, Scope};
use agentgov_api::hash::policy_hash;
use agentgov_api::pod_security::PodSecurityLevel;
use agentgov_api::policy::{ActiveSpec, PolicyEngine, active_spec};
use agentgov_api::policy_bundle::{BundleObject, PolicyData};
use agentgov_api::{ClusterPolicyBundle, PolicyBundle, PolicyBundleSpec, PolicyBundleStatus};
use kube::runtime::watcher::Event;
use kube::{Resource, ResourceExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::{Metrics, ResultLabels};

/// At most this many compile failures are remembered (by hash); past it they are forgotten.
const FAILED_CAPACITY: usize = 256;

/// At most this many namespaces' composed policies are kept; past it they are composed anew.
const COMPOSED_CAPACITY: usize = 16384;

/// The policy in force in a namespace: the floor and the namespace's bundle.
pub type ActivePolicy = EffectivePolicy;

/// The layers of one kind (namespace bundles, or the floor under the key `""`).
#[derive(Default)]
struct Layers {
    /// Key (namespace, or `""` for the floor) -> the version in force.
    in_force: RwLock<HashMap<String, Layer>>,
    /// Layers gathered during a (re)list, swapped in at `InitDone`.
    relist: Mutex<Option<HashMap<String, Layer>>>,
    synced: AtomicBool,
    /// Bumped on every change of `in_force`: composed policies of an older generation are
    /// composed again.
    generation: AtomicU64,
}

impl Layers {
    fn get(&self, key: &str) -> Option<Layer> {
        self.in_force
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// A namespace's composed policy and the generations (namespace layers, floor) it was composed
/// at.
type Composed = ((u64, u64), Option<EffectivePolicy>);

pub struct PolicyIndex {
    bundle_name: String,
    namespaces: Layers,
    floor: Layers,
    /// Namespace -> its policy, composed of both layers.
    composed: RwLock<HashMap<String, Composed>>,
    /// Hash -> compiled engine.
    engines: Mutex<HashMap<String, PolicyEngine>>,
    /// Hashes of specs that did not compile (not compiled again on every status event).
    failed: Mutex<HashSet<String>>,
    loads: Family<ResultLabels, Counter>,
    /// The public policy-signing ring a spec must verify with (`--require-signed-bundles`).
    bundle_keys: Option<Arc<agentgov_runtime::keys::Keys>>,
    /// The longest an AgentException may last: the floor's `maxExceptionDays`.
    max_exception: RwLock<jiff::SignedDuration>,
}

/// The key of the floor's layer.
const FLOOR: &str = "";

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
            namespaces: Layers::default(),
            floor: Layers::default(),
            composed: RwLock::default(),
            engines: Mutex::default(),
            failed: Mutex::default(),
            loads,
            bundle_keys: None,
            max_exception: RwLock::new(agentgov_api::exception::DEFAULT_MAX_EXCEPTION),
        }
    }

    /// The longest an AgentException may last (the floor's `maxExceptionDays`, else 7 days).
    pub fn max_exception(&self) -> jiff::SignedDuration {
        *self
            .max_exception
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Put in force only specs whose signature verifies with `keys` (`None`: any spec).
    pub fn with_bundle_keys(mut self, keys: Option<Arc<agentgov_runtime::keys::Keys>>) -> Self {
        self.bundle_keys = keys;
        self
    }

    /// The policy in force in `namespace` (its bundle and the floor), if any.
    pub fn get(&self, namespace: &str) -> Option<ActivePolicy> {
        self.with_policy(namespace, |policy| policy.cloned())
    }

    /// `read` of the policy in force in `namespace`, composed again only when a layer changed
    /// since: the hot path of every Pod review reads the hash without cloning the policy.
    fn with_policy<R>(
        &self,
        namespace: &str,
        read: impl FnOnce(Option<&EffectivePolicy>) -> R,
    ) -> R {
        let generations = (self.namespaces.generation(), self.floor.generation());
        {
            let composed = self.composed.read().unwrap_or_else(PoisonError::into_inner);
            if let Some((at, policy)) = composed.get(namespace)
                && *at == generations
            {
                return read(policy.as_ref());
            }
        }
        let policy =
            match EffectivePolicy::new(self.floor.get(FLOOR), self.namespaces.get(namespace)) {
                Ok(policy) => policy,
                Err(e) => {
                    tracing::error!(namespace, error = %e, "cannot compose the policy in force");
                    None
                }
            };
        let answer = read(policy.as_ref());
        let mut composed = self
            .composed
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if composed.len() >= COMPOSED_CAPACITY {
            composed.clear();
        }
        composed.insert(namespace.to_string(), (generations, policy));
        answer
    }

    /// The hash of the policy in force in `namespace`, if any.
    pub fn hash(&self, namespace: &str) -> Option<Arc<str>> {
        self.with_policy(namespace, |policy| policy.map(EffectivePolicy::shared_hash))
    }

    /// The Pod Security level an agent's Pods must meet in `namespace` (see
    /// [`EffectivePolicy::pod_security_level`]).
    pub fn pod_security_level(
        &self,
        namespace: &str,
        mode: AgentMode,
        role: RoleClass,
    ) -> PodSecurityLevel {
        self.with_policy(namespace, |policy| match policy {
            Some(policy) => policy.pod_security_level(mode, role),
            None => PolicyData::default().pod_security_level(mode, role),
        })
    }

    /// The cluster floor's data, when a floor is in force: the bounds of namespace bundles.
    pub fn floor_data(&self) -> Option<Arc<PolicyData>> {
        self.floor.get(FLOOR).map(|layer| layer.data)
    }

    /// Whether the first lists (namespace bundles and floors) have been applied.
    pub fn synced(&self) -> bool {
        self.namespaces.synced.load(Ordering::Acquire) && self.floor.synced.load(Ordering::Acquire)
    }

    /// Put a namespace's policy in force directly (tests and tools): its namespace layer, or its
    /// floor as the cluster floor.
    pub fn insert(&self, namespace: &str, policy: ActivePolicy) {
        for (scope, layer) in policy.layers() {
            self.cache(layer);
            let (layers, key) = match scope {
                Scope::Cluster => (&self.floor, FLOOR),
                Scope::Namespace => (&self.namespaces, namespace),
            };
            layers
                .in_force
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key.to_string(), layer.clone());
            layers.changed();
        }
        self.namespaces.synced.store(true, Ordering::Release);
        self.floor.synced.store(true, Ordering::Release);
    }

    /// Apply one watch event of namespace bundles.
    pub async fn apply_event(&self, event: Event<PolicyBundle>) {
        self.apply(&self.namespaces, event).await;
    }

    /// Apply one watch event of cluster floors.
    pub async fn apply_floor_event(&self, event: Event<ClusterPolicyBundle>) {
        let longest = match &event {
            Event::Apply(floor) | Event::InitApply(floor) if self.key_of(floor).is_some() => {
                Some(floor.spec.max_exception())
            }
            Event::Delete(floor) if self.key_of(floor).is_some() => {
                Some(agentgov_api::exception::DEFAULT_MAX_EXCEPTION)
            }
            _ => None,
        };
        if let Some(longest) = longest {
            *self
                .max_exception
                .write()
                .unwrap_or_else(PoisonError::into_inner) = longest;
        }
        self.apply(&self.floor, event).await;
    }

    async fn apply<K: BundleObject + Resource<DynamicType = ()>>(
        &self,
        layers: &Layers,
        event: Event<K>,
    ) {
        match event {
            Event::Init => {
                *layers.relist.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(HashMap::new());
            }
            Event::InitApply(bundle) => {
                let Some(key) = self.key_of(&bundle) else {
                    return;
                };
                let previous = layers.get(&key);
                if let Some(layer) = self.resolve(&key, &bundle, previous).await {
                    layers
                        .relist
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_or_insert_with(HashMap::new)
                        .insert(key, layer);
                }
            }
            Event::InitDone => {
                let fresh = layers
                    .relist
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()
                    .unwrap_or_default();
                tracing::info!(kind = %K::kind(&()), bundles = fresh.len(), "policy bundles listed");
                *layers
                    .in_force
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = fresh;
                layers.changed();
                self.prune();
                layers.synced.store(true, Ordering::Release);
            }
            Event::Apply(bundle) => {
                let Some(key) = self.key_of(&bundle) else {
                    return;
                };
                let previous = layers.get(&key);
                let resolved = self.resolve(&key, &bundle, previous).await;
                let mut in_force = layers
                    .in_force
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                match resolved {
                    Some(layer) => {
                        in_force.insert(key, layer);
                    }
                    None => {
                        in_force.remove(&key);
                    }
                }
                drop(in_force);
                layers.changed();
                self.prune();
            }
            Event::Delete(bundle) => {
                let Some(key) = self.key_of(&bundle) else {
                    return;
                };
                tracing::info!(namespace = %key, kind = %K::kind(&()), bundle = %bundle.name_any(), "policy bundle deleted: its layer is no longer in force");
                layers
                    .in_force
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&key);
                layers.changed();
                self.prune();
            }
        }
    }

    /// The key of a bundle that is the one in force (its namespace, `""` for the floor); `None`
    /// for other bundles.
    fn key_of<K: Resource>(&self, bundle: &K) -> Option<String> {
        if bundle.name_any() != self.bundle_name {
            return None;
        }
        Some(bundle.meta().namespace.clone().unwrap_or_default())
    }

    /// The layer a bundle puts in force: its spec if that compiles; else `previous` (the last
    /// good version in this process); else the operator's `status.activeSpec` if it hashes to
    /// `status.activeHash`; else none. `key` is the namespace (`""` for the floor).
    async fn resolve<K: BundleObject + Resource<DynamicType = ()>>(
        &self,
        key: &str,
        bundle: &K,
        previous: Option<Layer>,
    ) -> Option<Layer> {
        let spec = bundle.policy_spec();
        let name = bundle.name_any();
        let verified = match &self.bundle_keys {
            None => true,
            Some(keys) => {
                match agentgov_api::bundle_signature::verify_bundle(&keys.current(), spec) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(
                            namespace = key,
                            version = %spec.version,
                            error = %e,
                            "policy bundle version not put in force: its signature does not verify"
                        );
                        false
                    }
                }
            }
        };
        let from_spec = if verified {
            self.load(key, &name, spec).await
        } else {
            None
        };
        let chosen = match from_spec {
            Some(layer) => Some((layer, Source::Spec)),
            None => match previous.clone() {
                Some(previous) => Some((previous, Source::Kept)),
                None => self
                    .operator_status(key, &name, bundle.policy_status())
                    .await
                    .map(|p| (p, Source::OperatorStatus)),
            },
        };
        match &chosen {
            Some((layer, source)) if previous.as_ref().map(Layer::hash) != Some(layer.hash()) => {
                tracing::info!(
                    namespace = key,
                    kind = %K::kind(&()),
                    hash = layer.hash(),
                    source = ?source,
                    "policy in force"
                );
            }
            None => tracing::info!(
                namespace = key,
                kind = %K::kind(&()),
                "policy bundle has no version that compiles: not in force"
            ),
            Some(_) => {}
        }
        chosen.map(|(layer, _)| layer)
    }

    /// The operator's last good version, trusted only if it hashes to what the status claims
    /// ([`agentgov_api::policy::active_spec`]).
    async fn operator_status(
        &self,
        key: &str,
        name: &str,
        status: Option<&PolicyBundleStatus>,
    ) -> Option<Layer> {
        match active_spec(status) {
            ActiveSpec::Unset => None,
            ActiveSpec::Trusted(spec) => self.load(key, name, spec).await,
            ActiveSpec::Untrusted(why) => {
                Metrics::reload(&self.loads, false);
                tracing::error!(namespace = key, reason = %why, "status.activeSpec is not trusted");
                None
            }
        }
    }

    /// A spec compiled (or from the cache) as the layer of the bundle `name`; `None` if it does
    /// not compile (reported once).
    async fn load(&self, key: &str, name: &str, spec: &PolicyBundleSpec) -> Option<Layer> {
        let hash = match policy_hash(spec) {
            Ok(hash) => hash,
            Err(e) => {
                Metrics::reload(&self.loads, false);
                tracing::error!(namespace = key, error = %e, "cannot hash the policy bundle");
                return None;
            }
        };
        if let Some(engine) = self
            .engines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&hash)
        {
            return Some(Layer::of(name, spec, engine.clone()));
        }
        if self.lock_failed().contains(&hash) {
            return None;
        }
        let owned = spec.clone();
        let compiled = tokio::task::spawn_blocking(move || PolicyEngine::compile(&owned)).await;
        let error = match compiled {
            Ok(Ok(engine)) => {
                Metrics::reload(&self.loads, true);
                tracing::info!(namespace = key, hash = %hash, version = %spec.version, "policy compiled");
                let layer = Layer::of(name, spec, engine);
                self.cache(&layer);
                return Some(layer);
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("compilation panicked: {e}"),
        };
        Metrics::reload(&self.loads, false);
        tracing::error!(
            namespace = key,
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

    fn cache(&self, layer: &Layer) {
        self.engines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(layer.hash().to_string(), layer.engine.clone());
    }

    /// Forget compiled engines no layer uses any more.
    fn prune(&self) {
        let mut used: HashSet<String> = HashSet::new();
        for layers in [&self.namespaces, &self.floor] {
            used.extend(
                layers
                    .in_force
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .values()
                    .map(|l| l.hash().to_string()),
            );
        }
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
