//! Test support (feature `testing`, enabled by this crate's dev-dependencies only): a
//! [`StaticView`], the [`View`] of tests and benchmarks, whose agents, policies and keys are set
//! by hand. The live webhook's view is [`crate::cache::Caches`]; a tool that wants real caches
//! without watches uses [`crate::cache::Caches::detached`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use agentgov_api::Agent;
use agentgov_api::keyring::KeyRing;
use agentgov_api::policy_bundle::DEFAULT_BUNDLE_NAME;
use kube::ResourceExt;

use crate::decide::View;
use crate::keys::{KeySnapshot, Keys};
use crate::memo::CheckMemo;
use crate::policy::PolicyIndex;

/// A fixed view for tests and benchmarks: agents, policies and keys set by hand.
pub struct StaticView {
    pub synced: bool,
    pub agents: HashMap<(String, String), Arc<Agent>>,
    pub policies: PolicyIndex,
    pub keys: Arc<Keys>,
    /// `None` computes every spec hash and signature on every review.
    pub memo: Option<CheckMemo>,
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
            policies: PolicyIndex::new(DEFAULT_BUNDLE_NAME, Default::default()),
            keys: Keys::new(keys),
            memo: Some(CheckMemo::default()),
        }
    }

    /// Add or replace an agent. Like the API server, give it a new resourceVersion unless it
    /// has one.
    pub fn add_agent(&mut self, mut agent: Agent) {
        static VERSIONS: AtomicU64 = AtomicU64::new(1);
        if agent.metadata.resource_version.is_none() {
            let version = VERSIONS.fetch_add(1, Ordering::Relaxed);
            agent.metadata.resource_version = Some(version.to_string());
        }
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

    fn policies(&self) -> &PolicyIndex {
        &self.policies
    }

    fn keys(&self) -> Arc<KeySnapshot> {
        self.keys.current()
    }

    fn memo(&self) -> Option<&CheckMemo> {
        self.memo.as_ref()
    }
}
