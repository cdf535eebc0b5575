//! What every reconcile shares: the client, caches, key ring, policy engines and settings.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use agentgov_api::policy::{Actor, PolicyEngine};
use agentgov_api::{Agent, PolicyBundle, PolicyBundleSpec};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use kube::Client;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::error::{Error, Result};
use crate::judge::ActivePolicy;
use crate::keys::KeyRingSource;
use crate::metrics::Metrics;

/// The field manager of every status the operator writes.
pub const MANAGER: &str = "agentgov-operator";

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub keys: Arc<KeyRingSource>,
    pub agents: Store<Agent>,
    pub bundles: Store<PolicyBundle>,
    pub agents_synced: crate::cache::Synced,
    pub bundles_synced: crate::cache::Synced,
    pub policies: PolicyCache,
    /// The policy each namespace's bundle controller last put in force. It is newer than the
    /// bundle cache, which sees the status write only after the watch delivers it.
    pub in_force: Mutex<HashMap<String, ActivePolicy>>,
    /// Per namespace, the policy hash of the last revalidation this process finished.
    pub revalidations: Mutex<HashMap<String, String>>,
    pub settings: Settings,
    pub status_limiter: DefaultDirectRateLimiter,
}

/// Settings derived from the flags.
pub struct Settings {
    pub bundle_name: String,
    pub expiry: agentgov_api::expiry::ExpiryPolicy,
    pub actor: Actor,
    pub write_concurrency: usize,
}

impl Settings {
    pub fn new(config: &crate::config::Config) -> Self {
        Settings {
            bundle_name: config.bundle_name.clone(),
            expiry: config.expiry(),
            actor: operator_actor(config.trust_admission),
            write_concurrency: config.write_concurrency.max(1),
        }
    }
}

/// The actor the operator puts in the policy input. The operator cannot see who wrote a spec;
/// the admission webhook can, and refuses a governed spec from anyone without the `promote` verb.
/// So a governed spec in the API server was authorized at admission (see docs/design.md).
pub fn operator_actor(trust_admission: bool) -> Actor {
    Actor {
        username: if trust_admission {
            "admission-verified requester".into()
        } else {
            "an unverified requester".into()
        },
        groups: vec![],
        roles: vec![],
        authorized_to_promote: trust_admission,
    }
}

pub fn status_limiter(qps: u32) -> DefaultDirectRateLimiter {
    let qps = NonZeroU32::new(qps.max(1)).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(Quota::per_second(qps).allow_burst(qps))
}

/// Compiled policy engines by policy hash: compile once per bundle version.
#[derive(Default)]
pub struct PolicyCache {
    engines: Mutex<HashMap<String, PolicyEngine>>,
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
}

impl Context {
    /// The policy in force in `namespace`: what the bundle controller last activated, or else the
    /// named bundle's last good spec as its status says (after a restart).
    pub fn active_policy(&self, namespace: &str) -> Result<Option<ActivePolicy>> {
        let key = ObjectRef::new(&self.settings.bundle_name).within(namespace);
        let Some(bundle) = self.bundles.get(&key) else {
            // No bundle (or deleted): nothing is in force.
            return Ok(None);
        };
        if let Some(policy) = self.lock_in_force()?.get(namespace) {
            return Ok(Some(policy.clone()));
        }
        let Some(status) = bundle.status.as_ref() else {
            return Ok(None);
        };
        let (Some(spec), Some(hash)) = (status.active_spec.as_ref(), status.active_hash.as_ref())
        else {
            return Ok(None);
        };
        let engine = self.policies.compile(spec)?;
        if engine.hash() != hash {
            // Status that does not match its own spec is not trusted.
            return Ok(None);
        }
        Ok(Some(ActivePolicy {
            name: self.settings.bundle_name.clone(),
            version: status.active_version.clone().unwrap_or_default(),
            engine,
        }))
    }

    /// Whether this process already finished a revalidation of `namespace` against `hash`.
    pub fn revalidated(&self, namespace: &str, hash: &str) -> bool {
        self.revalidations
            .lock()
            .is_ok_and(|m| m.get(namespace).is_some_and(|h| h == hash))
    }

    pub fn set_revalidated(&self, namespace: &str, hash: &str) {
        if let Ok(mut m) = self.revalidations.lock() {
            m.insert(namespace.to_string(), hash.to_string());
        }
    }

    /// Record the policy the bundle controller put in force.
    pub fn set_in_force(&self, namespace: &str, policy: ActivePolicy) -> Result<()> {
        self.lock_in_force()?.insert(namespace.to_string(), policy);
        Ok(())
    }

    fn lock_in_force(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, ActivePolicy>>> {
        self.in_force
            .lock()
            .map_err(|_| Error::Config("policy map lock poisoned".into()))
    }
}
