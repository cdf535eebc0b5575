//! The agent cache: every agent by namespace and name, as a [`CachedAgent`] (the summary scans
//! read, and the rest of it packed), kept by the operator itself from the watch rather than in
//! a kube-runtime store (see [`crate::cache::ByName`]). The whole agent is read again only when
//! it is judged, or when its namespace's PolicyReport is written.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::Event;
use tracing::warn;

use crate::cache::{ByName, Named};
use crate::compact::{CachedAgent, WatchedAgent};
use crate::driver::Key;

#[derive(Default)]
pub struct Agents(ByName<Arc<CachedAgent>>);

impl Agents {
    pub fn get(&self, key: &Key) -> Option<Arc<CachedAgent>> {
        self.0.get(key.namespace(), key.name())
    }

    /// Every agent held, by namespace and name, to read briefly (the watch waits meanwhile).
    pub fn lock(&self) -> MutexGuard<'_, Named<Arc<CachedAgent>>> {
        self.0.lock()
    }

    /// The agents of `namespace`, or of every namespace.
    pub fn keys(&self, namespace: Option<&str>) -> Vec<Key> {
        fn keys_of<'a, V>(
            namespace: &'a str,
            names: &'a HashMap<Box<str>, V>,
        ) -> impl Iterator<Item = Key> + 'a {
            names.keys().map(move |name| Key::new(namespace, name))
        }
        let agents = self.lock();
        match namespace {
            Some(namespace) => agents
                .get(namespace)
                .into_iter()
                .flat_map(|names| keys_of(namespace, names))
                .collect(),
            None => agents
                .iter()
                .flat_map(|(namespace, names)| keys_of(namespace, names))
                .collect(),
        }
    }

    /// The agents of the namespaces `in_scope` picks, by namespace: a copy to read without
    /// holding the lock (a reference count an agent), so the watch and the reconciles do not
    /// wait while a caller walks thousands of them.
    pub fn by_namespace(
        &self,
        in_scope: impl Fn(&str) -> bool,
    ) -> Vec<(Box<str>, Vec<Arc<CachedAgent>>)> {
        self.lock()
            .iter()
            .filter(|(namespace, _)| in_scope(namespace))
            .map(|(namespace, agents)| (namespace.clone(), agents.values().cloned().collect()))
            .collect()
    }

    /// The agents of `namespace` as an AgentException's selector reads them: name and labels.
    pub fn named(&self, namespace: &str) -> Vec<ObjectMeta> {
        self.lock()
            .get(namespace)
            .map(|agents| {
                agents
                    .iter()
                    .map(|(name, agent)| ObjectMeta {
                        name: Some(name.to_string()),
                        labels: agent.summary.labels.to_map(),
                        ..ObjectMeta::default()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Keep the cache in step with the watch.
    pub fn observe(&self, event: &Event<WatchedAgent>) {
        self.0.observe(event, |agent| {
            agent
                .stored()
                .inspect_err(|e| {
                    warn!(
                        agent = agent.metadata.name.as_deref().unwrap_or_default(),
                        error = %e,
                        "not cached"
                    );
                })
                .ok()
                .map(Arc::new)
        });
    }

    /// A cache of `agents`, as if listed.
    #[cfg(test)]
    pub fn of(agents: impl IntoIterator<Item = agentgov_api::Agent>) -> Self {
        let cache = Agents::default();
        for agent in agents {
            let watched = WatchedAgent::of(agent).expect("an agent compacts");
            cache.observe(&Event::Apply(watched));
        }
        cache
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{agent, governed_spec};

    fn watched(namespace: &str, name: &str) -> WatchedAgent {
        let mut agent = agent(name, governed_spec());
        agent.metadata.namespace = Some(namespace.into());
        WatchedAgent::of(agent).unwrap()
    }

    fn sorted(mut keys: Vec<Key>) -> Vec<(String, String)> {
        keys.sort();
        keys.iter()
            .map(|k| (k.namespace().to_string(), k.name().to_string()))
            .collect()
    }

    /// team-a/one, team-a/two and team-b/one, as if watched.
    fn two_namespaces() -> Agents {
        let cache = Agents::default();
        for (namespace, name) in [("team-a", "one"), ("team-a", "two"), ("team-b", "one")] {
            cache.observe(&Event::Apply(watched(namespace, name)));
        }
        cache
    }

    #[test]
    fn the_cache_follows_the_watch_and_reads_each_agent_back_whole() {
        let cache = two_namespaces();
        let held = cache.get(&Key::new("team-a", "two")).unwrap();
        let read = held.object().unwrap();
        assert_eq!(read.metadata.name.as_deref(), Some("two"));
        assert_eq!(read.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(
            sorted(cache.keys(Some("team-a"))),
            [
                ("team-a".into(), "one".into()),
                ("team-a".into(), "two".into())
            ]
        );
        assert_eq!(cache.keys(None).len(), 3);
        assert!(cache.keys(Some("team-c")).is_empty());
        cache.observe(&Event::Delete(watched("team-b", "one")));
        assert!(cache.get(&Key::new("team-b", "one")).is_none());
        assert!(
            !cache.lock().contains_key("team-b"),
            "an emptied namespace goes"
        );
        // The watch restarts and lists only one: the other was deleted meanwhile.
        cache.observe(&Event::Init);
        cache.observe(&Event::InitApply(watched("team-a", "one")));
        cache.observe(&Event::InitDone);
        assert_eq!(sorted(cache.keys(None)), [("team-a".into(), "one".into())]);
    }

    #[test]
    fn a_copy_by_namespace_holds_the_namespaces_picked_and_outlives_the_lock() {
        let cache = two_namespaces();
        let picked = cache.by_namespace(|namespace| namespace == "team-a");
        assert_eq!(picked.len(), 1);
        assert_eq!(&*picked[0].0, "team-a");
        assert_eq!(picked[0].1.len(), 2);
        // The copy is not a view: the cache moves on without it, and it without the cache.
        cache.observe(&Event::Delete(watched("team-a", "two")));
        assert_eq!(picked[0].1.len(), 2);
        assert_eq!(cache.keys(Some("team-a")).len(), 1);
        assert_eq!(cache.by_namespace(|_| true).len(), 2);
    }
}
