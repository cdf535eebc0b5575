//! What every reconcile shares: the client, the caches (Agents, PolicyBundles, AgentPromotions),
//! the key ring, compiled policies, the admission guards' state, approvers' authorization, and
//! settings.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use agentgov_api::effective::{EffectivePolicy, Layer};
use agentgov_api::exception::AgentException;
use agentgov_api::policy::PolicyEngine;
use agentgov_api::policy_bundle::BundleObject;
use agentgov_api::{AgentPromotion, ClusterPolicyBundle, PolicyBundle, PolicyBundleSpec};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use jiff::SignedDuration;
use kube::Client;
use kube::ResourceExt;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::{Semaphore, SemaphorePermit};
use tracing::warn;

use crate::authz::Approvers;
use crate::cache::Relisted;
use crate::compact::PackedPromotion;
use crate::error::{Error, Result};
use crate::judge::ActivePolicy;
use crate::keys::KeyRingSource;
use crate::metrics::Metrics;
use crate::written::{Fingerprint, Written, fingerprint};

/// The field manager of every status and object the operator writes.
pub use agentgov_api::containment::MANAGER;

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub keys: Arc<KeyRingSource>,
    pub agents: Arc<crate::agents::Agents>,
    pub bundles: Store<PolicyBundle>,
    /// The cluster floors (ClusterPolicyBundles); the one named like the bundles is in force.
    pub floors: Store<ClusterPolicyBundle>,
    /// AgentExceptions: waivers of policy rules for named agents, for a while.
    pub exceptions: Store<AgentException>,
    /// AgentPromotions by the agent they approve.
    pub promotion_index: Arc<PromotionIndex>,
    pub agents_synced: crate::cache::Synced,
    pub bundles_synced: crate::cache::Synced,
    pub floors_synced: crate::cache::Synced,
    pub exceptions_synced: crate::cache::Synced,
    pub promotions_synced: crate::cache::Synced,
    /// The NetworkPolicies the operator keeps (empty unless `--contain-pods`).
    pub network_policies: Arc<crate::kept::Cache<k8s_openapi::api::networking::v1::NetworkPolicy>>,
    pub network_policies_synced: crate::cache::Synced,
    /// Everyone else's NetworkPolicies (empty unless `--contain-pods`), and which agents they
    /// widen as last reported.
    pub foreign_policies: Arc<crate::widening::Others>,
    pub foreign_policies_synced: crate::cache::Synced,
    pub widened: Arc<crate::widening::Widened>,
    /// The namespaces' budget totals while promotions are judged against them.
    pub allocations: crate::allocations::Allocations,
    /// Managed agents' Deployments and ConfigMaps.
    pub deployments: Arc<crate::kept::Cache<k8s_openapi::api::apps::v1::Deployment>>,
    pub config_maps: Arc<crate::kept::Cache<k8s_openapi::api::core::v1::ConfigMap>>,
    pub workloads_synced: [crate::cache::Synced; 2],
    pub policies: PolicyCache,
    /// Why the operator may not sign now (the admission guards' problems), if it may not.
    pub guards: GuardState,
    /// Whether the webhook's configuration is in place (break-glass when it is deleted).
    pub webhook: crate::break_glass::WebhookState,
    pub approvers: Approvers,
    /// The AgentPromotions (by uid) whose first decision this process has counted as a promotion
    /// attempt: the cache may not show the outcome just written yet, and an attempt is counted
    /// once. (After a restart, the cache shows it.)
    pub counted: CountedOnce,
    /// What this process last made each agent's versions (ControllerRevisions) say.
    pub revisions: crate::revisions::Converged,
    pub settings: Settings,
    /// Status writes: their rate, their concurrency, and what was last written.
    pub status_limiter: StatusWrites,
    /// Which namespaces' PolicyReports are to be recomputed (`--policy-reports`).
    pub reports: Arc<crate::policy_report::Reports>,
    /// The periodic look at every agent.
    pub resync: Arc<crate::triggers::Resync>,
}

/// Settings derived from the flags.
pub struct Settings {
    pub bundle_name: String,
    pub expiry: agentgov_api::expiry::ExpiryPolicy,
    pub approval_ttl: SignedDuration,
    /// How many AgentPromotions of an agent are kept (the oldest that back no proof go first).
    pub promotion_history: usize,
    /// How many versions (ControllerRevisions) of an agent are kept (0: none are recorded).
    pub revision_history_limit: usize,
    /// `--contain-pods`: keep agents' NetworkPolicies and stop quarantined agents' Pods.
    pub contain_pods: bool,
    /// `--manage-workloads`: run managed agents.
    pub manage_workloads: bool,
    /// `--require-signed-bundles`: the public policy-signing ring a bundle version must verify
    /// with to be put in force; `None`: signatures are not checked.
    pub bundle_keys: Option<Arc<KeyRingSource>>,
    /// `--webhook-configuration`: the webhook's ValidatingWebhookConfiguration (empty: not
    /// watched).
    pub webhook_configuration: String,
}

impl Settings {
    pub fn new(config: &crate::config::Config) -> Self {
        Settings {
            bundle_name: config.bundle_name.clone(),
            expiry: config.expiry(),
            approval_ttl: config.approval_ttl,
            promotion_history: config.promotion_history.max(1),
            revision_history_limit: config.revision_history_limit,
            contain_pods: config.contain_pods,
            manage_workloads: config.manage_workloads,
            // Loaded by `main` (reading a file is I/O).
            bundle_keys: None,
            webhook_configuration: config.webhook_configuration.clone(),
        }
    }
}

/// How status writes (agents' and approvals') go out: at most `qps` a second, with a burst of
/// as many (0: no client-side limit, the API server's priority and fairness decides), at most
/// `concurrency` at once; and what was last judged and written, so that nothing is done twice.
pub struct StatusWrites {
    rate: Option<DefaultDirectRateLimiter>,
    in_flight: Semaphore,
    pub written: Arc<Written>,
}

/// Status writes limited to `qps` a second, 16 at once.
pub fn status_limiter(qps: u32) -> StatusWrites {
    StatusWrites {
        rate: NonZeroU32::new(qps)
            .map(|qps| RateLimiter::direct(Quota::per_second(qps).allow_burst(qps))),
        in_flight: Semaphore::new(16),
        written: Arc::default(),
    }
}

impl StatusWrites {
    /// At most `concurrency` writes at once.
    pub fn with_concurrency(self, concurrency: usize) -> Self {
        StatusWrites {
            in_flight: Semaphore::new(concurrency.max(1)),
            ..self
        }
    }

    /// Wait for a turn to write; the write holds the returned permit while in flight.
    pub async fn turn(&self) -> Option<SemaphorePermit<'_>> {
        // The semaphore is never closed.
        let permit = self.in_flight.acquire().await.ok();
        if let Some(rate) = &self.rate {
            rate.until_ready().await;
        }
        permit
    }
}

/// The admission guards' problems, as the guard watch last saw them (`None`: all in place).
#[derive(Clone, Default)]
pub struct GuardState(Arc<RwLock<Option<String>>>);

impl GuardState {
    /// Guards not (yet) seen: the operator signs nothing until the guard watch says otherwise.
    pub fn unknown() -> Self {
        GuardState(Arc::new(RwLock::new(Some(
            "the admission guards have not been checked yet".into(),
        ))))
    }

    pub fn missing(&self) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Record the guards' problems; whether that changed anything.
    pub fn set(&self, problems: Option<String>) -> bool {
        let mut state = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let changed = *state != problems;
        *state = problems;
        changed
    }
}

/// A bounded set of uids already counted.
#[derive(Default)]
pub struct CountedOnce(Mutex<std::collections::HashSet<String>>);

impl CountedOnce {
    /// True the first time `uid` is seen (then it is remembered).
    pub fn first(&self, uid: &str) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= 100_000 {
            seen.clear();
        }
        seen.insert(uid.to_string())
    }
}

/// The AgentPromotions, by namespace and agent: the operator's cache of them, kept from the
/// promotion watch. Not a kube-runtime store: nothing scans every promotion, a judgement reads
/// its agent's own, and each is kept whole as one [`PackedPromotion`] (no `ObjectMeta`, `Arc`,
/// key and table slot per promotion, which were most of what one cost in a store).
#[derive(Default)]
pub struct PromotionIndex(Relisted<Index>);

/// Namespace → agent → the agent's AgentPromotions. Nested, so each namespace's name is kept
/// once and a lookup allocates nothing but the approvals it returns.
type Index = HashMap<String, HashMap<Box<str>, Approvals>>;

/// An agent's AgentPromotions, sorted by name, one per name: a boxed slice, not a `BTreeMap`,
/// whose smallest node is about 400 bytes for the one or two an agent usually has (and not a
/// `Vec`, whose first push reserves four).
#[derive(Default)]
pub struct Approvals(Box<[(Box<str>, PackedPromotion)]>);

impl Approvals {
    fn insert(&mut self, name: &str, promotion: PackedPromotion) {
        match self.0.binary_search_by(|(n, _)| (**n).cmp(name)) {
            Ok(at) => self.0[at].1 = promotion,
            Err(at) => {
                let mut approvals = std::mem::take(&mut self.0).into_vec();
                approvals.insert(at, (name.into(), promotion));
                self.0 = approvals.into_boxed_slice();
            }
        }
    }

    fn remove(&mut self, name: &str) {
        if let Ok(at) = self.0.binary_search_by(|(n, _)| (**n).cmp(name)) {
            let mut approvals = std::mem::take(&mut self.0).into_vec();
            approvals.remove(at);
            self.0 = approvals.into_boxed_slice();
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn insert_into(index: &mut Index, namespace: &str, agent: &str, name: &str, p: PackedPromotion) {
    let agents = match index.get_mut(namespace) {
        Some(agents) => agents,
        None => index.entry(namespace.to_string()).or_default(),
    };
    match agents.get_mut(agent) {
        Some(approvals) => approvals.insert(name, p),
        None => {
            let mut approvals = Approvals::default();
            approvals.insert(name, p);
            agents.insert(agent.into(), approvals);
        }
    }
}

impl PromotionIndex {
    pub fn insert(&self, promotion: &AgentPromotion) {
        let packed = match PackedPromotion::of(promotion) {
            Ok(packed) => packed,
            Err(e) => {
                // Its own type wrote it a moment ago; were it ever to fail, the agent is judged
                // without this approval (a deny), which the log explains.
                warn!(promotion = %promotion.name_any(), error = %e, "AgentPromotion not cached");
                return;
            }
        };
        let namespace = promotion.metadata.namespace.as_deref().unwrap_or_default();
        let name = promotion.metadata.name.as_deref().unwrap_or_default();
        let agent = promotion.spec.agent.as_str();
        self.0
            .change(|index| insert_into(index, namespace, agent, name, packed.clone()));
    }

    pub fn relist_started(&self) {
        self.0.relist_started();
    }

    pub fn relist_done(&self) {
        self.0.relist_done();
    }

    pub fn remove(&self, promotion: &AgentPromotion) {
        let namespace = promotion.metadata.namespace.as_deref().unwrap_or_default();
        let agent = promotion.spec.agent.as_str();
        let name = promotion.metadata.name.as_deref().unwrap_or_default();
        self.0.change(|index| {
            let Some(agents) = index.get_mut(namespace) else {
                return;
            };
            if let Some(approvals) = agents.get_mut(agent) {
                approvals.remove(name);
                if approvals.is_empty() {
                    agents.remove(agent);
                }
            }
            if agents.is_empty() {
                index.remove(namespace);
            }
        });
    }

    /// The AgentPromotions of `agent` in `namespace`, by name. Taken out under the lock (a
    /// reference count each) and unpacked after it.
    pub fn of(
        &self,
        namespace: &str,
        agent: &str,
    ) -> Result<Vec<AgentPromotion>, serde_json::Error> {
        let packed: Vec<PackedPromotion> = self
            .0
            .lock()
            .get(namespace)
            .and_then(|agents| agents.get(agent))
            .map(|approvals| approvals.0.iter().map(|(_, p)| p.clone()).collect())
            .unwrap_or_default();
        packed.iter().map(PackedPromotion::object).collect()
    }
}

/// Compiled policy engines by policy hash: compile once per bundle version. And the policy in
/// force of each namespace by the version of its bundle object: hashing a bundle's spec costs
/// more than judging an agent, and a revalidation asks once per agent.
#[derive(Default)]
pub struct PolicyCache {
    engines: Mutex<HashMap<String, PolicyEngine>>,
    in_force: Mutex<HashMap<String, (Fingerprint, Option<ActivePolicy>)>>,
}

impl PolicyCache {
    pub fn compile(&self, spec: &PolicyBundleSpec) -> Result<PolicyEngine> {
        let hash = agentgov_api::hash::policy_hash(spec)?;
        if let Some(engine) = self.lock()?.get(&hash) {
            return Ok(engine.clone());
        }
        let engine = PolicyEngine::compile(spec)?;
        let mut engines = self.lock()?;
        // Bundles change rarely; a small bound keeps a churn of edits from growing memory.
        if engines.len() >= 64 {
            engines.clear();
        }
        engines.insert(hash, engine.clone());
        Ok(engine)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, PolicyEngine>>> {
        self.engines
            .lock()
            .map_err(|_| Error::Config("policy cache lock poisoned".into()))
    }

    /// The policy in force in `namespace` when its bundle object is at `version`, if known.
    fn in_force(&self, namespace: &str, version: Fingerprint) -> Option<Option<ActivePolicy>> {
        let in_force = self.in_force.lock().unwrap_or_else(PoisonError::into_inner);
        in_force
            .get(namespace)
            .filter(|(seen, _)| *seen == version)
            .map(|(_, policy)| policy.clone())
    }

    fn remember(&self, namespace: &str, version: Fingerprint, policy: Option<ActivePolicy>) {
        let mut in_force = self.in_force.lock().unwrap_or_else(PoisonError::into_inner);
        if in_force.len() >= 4096 {
            in_force.clear();
        }
        in_force.insert(namespace.to_string(), (version, policy));
    }
}

impl Context {
    /// The policy in force in `namespace`: the cluster floor's and the namespace bundle's last
    /// good versions, as their status says (written by the bundle controller: `activeSpec`
    /// hashing to `activeHash`), either of them alone, or none.
    pub fn active_policy(&self, namespace: &str) -> Result<Option<ActivePolicy>> {
        let name = &self.settings.bundle_name;
        let bundle = self.bundles.get(&ObjectRef::new(name).within(namespace));
        let floor = self.floors.get(&ObjectRef::new(name));
        let version = match (
            object_version(bundle.as_deref().map(|b| &b.metadata)),
            object_version(floor.as_deref().map(|f| &f.metadata)),
        ) {
            (Some(b), Some(f)) => Some(fingerprint(&(b, f))),
            _ => None,
        };
        if let Some(version) = version
            && let Some(policy) = self.policies.in_force(namespace, version)
        {
            return Ok(policy);
        }
        let floor = match floor.as_deref() {
            Some(floor) => self.layer_of(floor)?,
            None => None,
        };
        let own = match bundle.as_deref() {
            Some(bundle) => self.layer_of(bundle)?,
            None => None,
        };
        let policy = EffectivePolicy::new(floor, own)?.map(ActivePolicy::new);
        if let Some(version) = version {
            self.policies.remember(namespace, version, policy.clone());
        }
        Ok(policy)
    }

    /// The longest an AgentException may last: the cluster floor's `maxExceptionDays`, else 7
    /// days.
    pub fn max_exception(&self) -> jiff::SignedDuration {
        self.floors
            .get(&ObjectRef::new(&self.settings.bundle_name))
            .map_or(agentgov_api::exception::DEFAULT_MAX_EXCEPTION, |f| {
                f.spec.max_exception()
            })
    }

    /// The hash the cluster floor's status says is in force, if any.
    pub fn floor_active_hash(&self) -> Option<String> {
        self.floors
            .get(&ObjectRef::new(&self.settings.bundle_name))
            .and_then(|f| f.status.as_ref().and_then(|s| s.active_hash.clone()))
    }

    /// The hash the namespace bundle's status says is in force, if any.
    pub fn own_active_hash(&self, namespace: &str) -> Option<String> {
        self.bundles
            .get(&ObjectRef::new(&self.settings.bundle_name).within(namespace))
            .and_then(|b| b.status.as_ref().and_then(|s| s.active_hash.clone()))
    }

    /// The version in force of a bundle of either scope, compiled (none while no version has
    /// compiled, or when its status does not match its own spec: not trusted).
    fn layer_of(&self, bundle: &(impl BundleObject + kube::Resource)) -> Result<Option<Layer>> {
        let Some(status) = bundle.policy_status() else {
            return Ok(None);
        };
        let (Some(spec), Some(hash)) = (status.active_spec.as_ref(), status.active_hash.as_ref())
        else {
            return Ok(None);
        };
        let engine = self.policies.compile(spec)?;
        if engine.hash() != hash {
            return Ok(None);
        }
        let mut layer = Layer::of(&bundle.name_any(), spec, engine);
        layer.version = status.active_version.clone().unwrap_or_default();
        Ok(Some(layer))
    }

    /// The AgentPromotions of an agent, from the cache.
    pub fn promotions_of(&self, namespace: &str, agent: &str) -> Result<Vec<Arc<AgentPromotion>>> {
        Ok(self
            .promotion_index
            .of(namespace, agent)
            .map_err(Error::Cached)?
            .into_iter()
            .map(Arc::new)
            .collect())
    }
}

/// A version of a cached object, or of its absence: its resourceVersion and uid (`Some(None)`
/// when there is no object; `None` when the object has no resourceVersion to tell versions
/// apart).
fn object_version(
    meta: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
) -> Option<Option<Fingerprint>> {
    match meta {
        None => Some(None),
        Some(meta) => meta
            .resource_version
            .as_deref()
            .map(|rv| Some(fingerprint(&(rv, meta.uid.as_deref())))),
    }
}

#[cfg(test)]
mod tests {
    use agentgov_api::policy::default_bundle_spec;

    use super::*;
    use crate::fixtures::{
        BUNDLE, NAMESPACE, agent, bundle_in_force, governed_spec, policy_requiring, promotion,
        ring_config,
    };

    #[test]
    fn guards_are_in_place_by_default_and_unknown_until_checked() {
        let state = GuardState::default();
        assert_eq!(state.missing(), None);
        assert!(GuardState::unknown().missing().is_some());
        assert!(state.set(Some("a binding is missing".into())), "a change");
        assert!(!state.set(Some("a binding is missing".into())), "no change");
        // Clones share the state (the guard watch and the reconciles).
        assert_eq!(
            state.clone().missing().as_deref(),
            Some("a binding is missing")
        );
        assert!(state.set(None));
        assert_eq!(state.missing(), None);
    }

    #[tokio::test]
    async fn the_policy_in_force_is_the_named_bundles_active_spec() {
        let keys = ring_config("k1", &["k1"]);
        let in_force = bundle_in_force(policy_requiring(2));
        // Another bundle name is never in force.
        let mut other_name = bundle_in_force(default_bundle_spec());
        other_name.metadata.name = Some("experimental".into());
        other_name.metadata.namespace = Some("team-b".into());
        // A status whose hash is not its spec's is not trusted.
        let mut forged = bundle_in_force(default_bundle_spec());
        forged.metadata.namespace = Some("team-c".into());
        if let Some(status) = forged.status.as_mut() {
            status.active_hash = Some("0".repeat(64));
        }
        // Nothing compiled yet.
        let mut unjudged = bundle_in_force(default_bundle_spec());
        unjudged.metadata.namespace = Some("team-d".into());
        unjudged.status = None;
        let (ctx, _verifier, _registry) =
            Context::test(&keys, &[in_force, other_name, forged, unjudged], &[], &[]);

        let policy = ctx.active_policy(NAMESPACE).unwrap().expect("a policy");
        assert_eq!(policy.engine.name(), BUNDLE);
        assert_eq!(policy.approvals_required, 2);
        assert_eq!(
            policy.hash(),
            agentgov_api::hash::policy_hash(&policy_requiring(2)).unwrap()
        );
        for namespace in ["team-b", "team-c", "team-d", "nowhere"] {
            assert!(
                ctx.active_policy(namespace).unwrap().is_none(),
                "{namespace}"
            );
        }
    }

    #[tokio::test]
    async fn an_agents_promotions_come_from_the_index() {
        let keys = ring_config("k1", &["k1"]);
        let filings = agent("filings", governed_spec());
        let other = agent("other", governed_spec());
        let by_alice = promotion("filings-by-alice", &filings, "alice");
        let by_bob = promotion("filings-by-bob", &filings, "bob");
        let of_other = promotion("other-by-alice", &other, "alice");
        let (ctx, _verifier, _registry) =
            Context::test(&keys, &[], &[], &[by_alice, by_bob.clone(), of_other]);

        let names = |agent: &str| -> Vec<String> {
            ctx.promotions_of(NAMESPACE, agent)
                .unwrap()
                .iter()
                .map(|p| p.name_any())
                .collect()
        };
        assert_eq!(names("filings"), vec!["filings-by-alice", "filings-by-bob"]);
        assert_eq!(names("other"), vec!["other-by-alice"]);
        assert!(ctx.promotions_of("team-b", "filings").unwrap().is_empty());

        // A promotion recreated under its name for another agent (its spec is immutable): the
        // watch shows the delete, then the new one (a relist replaces the whole index).
        let mut moved = by_bob.clone();
        moved.spec.agent = "other".into();
        ctx.promotion_index.remove(&by_bob);
        ctx.promotion_index.insert(&moved);
        assert_eq!(names("other"), vec!["filings-by-bob", "other-by-alice"]);
        assert_eq!(names("filings"), vec!["filings-by-alice"]);
    }

    #[test]
    fn approvals_stay_sorted_one_per_name() {
        let filings = agent("filings", governed_spec());
        let mut approvals = Approvals::default();
        let mut uids = HashMap::new();
        for (name, approver) in [("b", "bob"), ("a", "alice"), ("c", "carol"), ("a", "dan")] {
            let p = promotion(name, &filings, approver);
            uids.insert(name, p.uid());
            approvals.insert(name, PackedPromotion::of(&p).unwrap());
        }
        let listed = |approvals: &Approvals| {
            let listed = approvals
                .0
                .iter()
                .map(|(n, p)| (n.to_string(), p.object().unwrap()));
            listed.map(|(n, p)| (n, p.uid())).collect::<Vec<_>>()
        };
        let expected = |names: &[&str]| -> Vec<(String, Option<String>)> {
            names
                .iter()
                .map(|n| (n.to_string(), uids[n].clone()))
                .collect()
        };
        // The later "a" (dan's) replaced the earlier.
        assert_eq!(listed(&approvals), expected(&["a", "b", "c"]));
        approvals.remove("b");
        approvals.remove("missing");
        assert_eq!(listed(&approvals), expected(&["a", "c"]));
        approvals.remove("a");
        approvals.remove("c");
        assert!(approvals.is_empty());
    }

    #[test]
    fn the_index_forgets_agents_and_namespaces_left_without_promotions() {
        let filings = agent("filings", governed_spec());
        let by_alice = promotion("filings-by-alice", &filings, "alice");
        let by_bob = promotion("filings-by-bob", &filings, "bob");
        let index = PromotionIndex::default();
        let names = |namespace: &str, agent: &str| -> Vec<String> {
            let approvals = index.of(namespace, agent).unwrap();
            approvals.iter().map(|p| p.name_any()).collect()
        };
        index.insert(&by_alice);
        index.insert(&by_bob);
        index.insert(&by_bob);
        assert_eq!(
            names(NAMESPACE, "filings"),
            ["filings-by-alice", "filings-by-bob"]
        );
        assert!(names(NAMESPACE, "other").is_empty());
        assert!(names("team-b", "filings").is_empty());
        index.remove(&by_alice);
        assert_eq!(names(NAMESPACE, "filings"), ["filings-by-bob"]);
        index.remove(&by_bob);
        assert!(names(NAMESPACE, "filings").is_empty());
        assert!(index.0.lock().is_empty(), "nothing left behind");
    }
}
