//! What makes the Agent controller judge agents besides their own changes: the policy in force
//! of a namespace changing (a new active version, or the bundle deleted; the cluster floor's
//! changing judges every agent), and the index of
//! AgentPromotions by agent (their changes are mapped to the agent they approve), and the
//! periodic resync.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use agentgov_api::AgentPromotion;
use agentgov_api::exception::AgentException;
use agentgov_api::policy_bundle::BundleObject;
use futures::{Stream, StreamExt};
use kube::runtime::watcher::Event;
use kube::{Resource, ResourceExt};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;

use crate::agents::Agents;
use crate::compact::WatchedAgent;
use crate::context::PromotionIndex;
use crate::driver::Key;
use crate::written::Written;

/// Watches the bundle events (after the store applied them) for a change of the version in
/// force of the bundle named `name` in a namespace, and sends that namespace.
pub struct BundleTrigger {
    name: String,
    /// Namespace → the active hash last seen (None: no bundle, or none in force), and the
    /// namespaces a (re)list in progress has shown.
    seen: Mutex<Seen>,
    namespaces: UnboundedSender<String>,
}

#[derive(Default)]
struct Seen {
    active: HashMap<String, Option<String>>,
    relisted: Option<std::collections::HashSet<String>>,
}

impl BundleTrigger {
    pub fn new(name: String, namespaces: UnboundedSender<String>) -> Self {
        BundleTrigger {
            name,
            seen: Mutex::default(),
            namespaces,
        }
    }

    /// One watch event of namespace bundles (the namespace is sent) or of cluster floors (`""`
    /// is sent: every agent is to be judged again).
    pub fn observe<K: BundleObject + Resource>(&self, event: &Event<K>) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let active = |b: &K| b.policy_status().and_then(|s| s.active_hash.clone());
        let (bundle, active, listing) = match event {
            Event::Init => {
                seen.relisted = Some(Default::default());
                return;
            }
            Event::InitDone => {
                // A bundle a relist no longer shows was deleted while the watch was down.
                let relisted = seen.relisted.take().unwrap_or_default();
                let gone: Vec<String> = seen
                    .active
                    .iter()
                    .filter(|(ns, hash)| hash.is_some() && !relisted.contains(*ns))
                    .map(|(ns, _)| ns.clone())
                    .collect();
                for namespace in gone {
                    seen.active.insert(namespace.clone(), None);
                    let _ = self.namespaces.send(namespace);
                }
                return;
            }
            Event::InitApply(b) => (b, active(b), true),
            Event::Apply(b) => (b, active(b), false),
            Event::Delete(b) => (b, None, false),
        };
        if bundle.name_any() != self.name {
            return;
        }
        let namespace = bundle.meta().namespace.clone().unwrap_or_default();
        if let Some(relisted) = seen.relisted.as_mut() {
            relisted.insert(namespace.clone());
        }
        let known = seen.active.contains_key(&namespace);
        let before = seen
            .active
            .insert(namespace.clone(), active.clone())
            .flatten();
        // The first list judges nothing (every agent is judged at start); a relist after the
        // watch was down does, when the version in force changed meanwhile.
        if (known || !listing) && before != active {
            let _ = self.namespaces.send(namespace);
        }
    }
}

/// The key the driver queues an agent by.
pub fn key_of(agent: &WatchedAgent) -> Key {
    Key::new(
        agent.metadata.namespace.as_deref().unwrap_or_default(),
        agent.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// The agents a watched kind's changes name (`agent` of each changed object).
pub fn agents_named<T: Send + 'static>(
    changes: impl Stream<Item = Result<T, kube::runtime::watcher::Error>> + Send + 'static,
    agent: impl Fn(T) -> Option<Key> + Send + 'static,
) -> futures::stream::BoxStream<'static, Key> {
    changes
        .filter_map(move |changed| std::future::ready(changed.ok().and_then(&agent)))
        .boxed()
}

/// The agents each changed object has looked at again, by `touched`, from the agent cache at
/// the time it changed.
pub fn agents_touched<T: Send + 'static>(
    changes: impl Stream<Item = Result<T, kube::runtime::watcher::Error>> + Send + 'static,
    agents: Arc<Agents>,
    touched: impl Fn(&Agents, T) -> Vec<Key> + Send + 'static,
) -> futures::stream::BoxStream<'static, Key> {
    changes
        .filter_map(|changed| std::future::ready(changed.ok()))
        .flat_map(move |changed| futures::stream::iter(touched(&agents, changed)))
        .boxed()
}

/// Every agent of each namespace sent, from the agent cache at the time it is sent.
pub fn agents_of(
    namespaces: UnboundedReceiver<String>,
    agents: Arc<Agents>,
) -> impl Stream<Item = Key> + Send + 'static {
    let namespaces = futures::stream::unfold(namespaces, |mut rx| async move {
        rx.recv().await.map(|ns| (ns, rx))
    });
    namespaces.flat_map(move |namespace| futures::stream::iter(agents.keys(Some(&namespace))))
}

/// Every agent in the cache, each time `rounds` yields.
pub fn all_agents(
    rounds: impl Stream<Item = ()> + Send + 'static,
    agents: Arc<Agents>,
) -> impl Stream<Item = Key> + Send + 'static {
    rounds.flat_map(move |()| futures::stream::iter(agents.keys(None)))
}

/// The agents an AgentException names or selects (from the agent cache), to judge again when
/// it changes or goes.
pub fn agents_covered(agents: &Agents, exception: &AgentException) -> Vec<Key> {
    let namespace = exception.namespace().unwrap_or_default();
    agents
        .named(&namespace)
        .into_iter()
        .filter_map(|agent| {
            let name = agent.name?;
            exception
                .covers(&name, &agent.labels.unwrap_or_default())
                .then(|| Key::new(&namespace, &name))
        })
        .collect()
}

/// The agents each changed AgentException covers ([`agents_covered`]).
pub fn agents_covered_by(
    exceptions: impl Stream<Item = Result<AgentException, kube::runtime::watcher::Error>>
    + Send
    + 'static,
    agents: Arc<Agents>,
) -> futures::stream::BoxStream<'static, Key> {
    exceptions
        .filter_map(|changed| std::future::ready(changed.ok()))
        .flat_map(move |exception| futures::stream::iter(agents_covered(&agents, &exception)))
        .boxed()
}

/// Forget what was judged and written of an object that is gone.
pub fn forget_deleted<K: Resource>(written: &Written, event: &Event<K>) {
    if let Event::Delete(object) = event
        && let Some(uid) = object.meta().uid.as_deref()
    {
        written.forget(uid);
    }
}

/// Keep the promotion index (the operator's cache of AgentPromotions) in step with the watch.
pub fn index_promotions(index: &Arc<PromotionIndex>, event: &Event<AgentPromotion>) {
    match event {
        Event::Apply(p) | Event::InitApply(p) => index.insert(p),
        Event::Delete(p) => index.remove(p),
        Event::Init => index.relist_started(),
        Event::InitDone => index.relist_done(),
    }
}

/// The periodic look at every agent (what it keeps may have drifted: its Pods, its
/// NetworkPolicy, its versions). One timer for all agents rather than a requeue per agent:
/// at 10,000 agents kube-runtime's scheduler held about 600 bytes per requeued agent. Only
/// agents with a time-bound look (a sandbox's expiry, a pending approval's) are requeued.
pub struct Resync {
    round: watch::Sender<u64>,
}

impl Default for Resync {
    fn default() -> Self {
        Resync {
            round: watch::Sender::new(0),
        }
    }
}

impl Resync {
    /// The current round: part of what every judgement depends on, so a new round has every
    /// agent judged again rather than its last judgement kept.
    pub fn round(&self) -> u64 {
        *self.round.borrow()
    }

    /// A new round every `period`, for as long as the process runs; the stream yields once
    /// per round, for the controller to look at every agent.
    pub fn every(
        self: &Arc<Self>,
        period: std::time::Duration,
    ) -> impl Stream<Item = ()> + Send + use<> {
        let resync = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                resync.round.send_modify(|round| *round += 1);
            }
        });
        on_change(self.round.subscribe())
    }
}

/// Yields once per change `rx` sees (changes in a burst may come as one).
pub fn on_change<T: Send + Sync + 'static>(
    rx: watch::Receiver<T>,
) -> impl Stream<Item = ()> + Send {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok().map(|()| ((), rx))
    })
}

#[cfg(test)]
mod tests {
    use agentgov_api::PolicyBundle;
    use agentgov_api::policy::default_bundle_spec;
    use kube::runtime::watcher::Event;
    use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

    use super::*;
    use crate::fixtures::{agent, bundle_in_force, governed_spec, promotion};

    /// A bundle named `name` in `namespace` with `hash` in force (None: no status yet).
    fn bundle(namespace: &str, name: &str, hash: Option<&str>) -> PolicyBundle {
        let mut bundle = bundle_in_force(default_bundle_spec());
        bundle.metadata.name = Some(name.into());
        bundle.metadata.namespace = Some(namespace.into());
        match hash {
            Some(hash) => {
                if let Some(status) = bundle.status.as_mut() {
                    status.active_hash = Some(hash.into());
                }
            }
            None => bundle.status = None,
        }
        bundle
    }

    fn sent(rx: &mut UnboundedReceiver<String>) -> Vec<String> {
        let mut namespaces = Vec::new();
        while let Ok(ns) = rx.try_recv() {
            namespaces.push(ns);
        }
        namespaces
    }

    #[test]
    fn a_namespace_is_sent_when_its_version_in_force_changes_or_goes() {
        let (tx, mut rx) = unbounded_channel();
        let trigger = BundleTrigger::new("default".into(), tx);

        // The first list only records what is in force.
        trigger.observe(&Event::<PolicyBundle>::Init);
        trigger.observe(&Event::InitApply(bundle("a", "default", Some("h1"))));
        trigger.observe(&Event::InitApply(bundle("b", "default", None)));
        trigger.observe(&Event::<PolicyBundle>::InitDone);
        assert!(sent(&mut rx).is_empty());

        // The bundle's own status writes (same hash in force) change nothing for the agents.
        trigger.observe(&Event::Apply(bundle("a", "default", Some("h1"))));
        trigger.observe(&Event::Apply(bundle("b", "default", None)));
        assert!(sent(&mut rx).is_empty());

        // A new version in force, a first one, the bundle deleted.
        trigger.observe(&Event::Apply(bundle("a", "default", Some("h2"))));
        trigger.observe(&Event::Apply(bundle("b", "default", Some("h1"))));
        assert_eq!(sent(&mut rx), vec!["a".to_string(), "b".to_string()]);
        trigger.observe(&Event::Delete(bundle("a", "default", Some("h2"))));
        assert_eq!(sent(&mut rx), vec!["a".to_string()]);
        // Deleting what is already gone, or a bundle never in force, changes nothing.
        trigger.observe(&Event::Delete(bundle("a", "default", Some("h2"))));
        trigger.observe(&Event::Delete(bundle("c", "default", None)));
        assert!(sent(&mut rx).is_empty());
    }

    #[test]
    fn other_bundle_names_send_nothing_and_relists_send_what_changed() {
        let (tx, mut rx) = unbounded_channel();
        let trigger = BundleTrigger::new("default".into(), tx);
        trigger.observe(&Event::Apply(bundle("a", "default", Some("h1"))));
        assert_eq!(sent(&mut rx), vec!["a".to_string()]);

        // Only the bundle named `default` is in force.
        trigger.observe(&Event::Apply(bundle("a", "experimental", Some("h9"))));
        trigger.observe(&Event::Delete(bundle("a", "experimental", Some("h9"))));
        assert!(sent(&mut rx).is_empty());

        // A relist after the watch was down sends what changed meanwhile (a new version in
        // force; a bundle gone), and nothing for what did not.
        trigger.observe(&Event::Apply(bundle("b", "default", Some("h1"))));
        assert_eq!(sent(&mut rx), vec!["b".to_string()]);
        trigger.observe(&Event::<PolicyBundle>::Init);
        trigger.observe(&Event::InitApply(bundle("a", "default", Some("h2"))));
        trigger.observe(&Event::<PolicyBundle>::InitDone);
        assert_eq!(sent(&mut rx), vec!["a".to_string(), "b".to_string()]);
        trigger.observe(&Event::<PolicyBundle>::Init);
        trigger.observe(&Event::InitApply(bundle("a", "default", Some("h2"))));
        trigger.observe(&Event::<PolicyBundle>::InitDone);
        assert!(sent(&mut rx).is_empty(), "nothing changed");
        trigger.observe(&Event::Apply(bundle("a", "default", Some("h3"))));
        assert_eq!(sent(&mut rx), vec!["a".to_string()]);
    }

    #[test]
    fn the_promotion_index_follows_applies_deletes_and_relists() {
        let filings = agent("filings", governed_spec());
        let other = agent("other", governed_spec());
        let by_alice = promotion("filings-by-alice", &filings, "alice");
        let by_bob = promotion("filings-by-bob", &filings, "bob");
        let of_other = promotion("other-by-alice", &other, "alice");
        let index = Arc::new(PromotionIndex::default());
        let ns = crate::fixtures::NAMESPACE;
        let names = |namespace: &str, agent: &str| -> Vec<String> {
            let approvals = index.of(namespace, agent).unwrap();
            approvals.iter().map(|p| p.name_any()).collect()
        };

        index_promotions(&index, &Event::Init);
        index_promotions(&index, &Event::InitApply(by_bob.clone()));
        index_promotions(&index, &Event::InitDone);
        index_promotions(&index, &Event::Apply(by_alice.clone()));
        index_promotions(&index, &Event::Apply(of_other.clone()));
        // A status write of a promotion already indexed.
        index_promotions(&index, &Event::Apply(by_alice.clone()));
        assert_eq!(names(ns, "filings"), ["filings-by-alice", "filings-by-bob"]);
        assert_eq!(names(ns, "other"), ["other-by-alice"]);
        assert!(names("elsewhere", "filings").is_empty());

        index_promotions(&index, &Event::Delete(by_bob));
        assert_eq!(names(ns, "filings"), ["filings-by-alice"]);
        index_promotions(&index, &Event::Delete(by_alice.clone()));
        index_promotions(&index, &Event::Delete(by_alice.clone()));
        assert!(names(ns, "filings").is_empty());
        assert_eq!(names(ns, "other"), ["other-by-alice"]);

        // A relist (the watch was down): what it did not show is forgotten when it is done, and
        // until then the index answers as before.
        index_promotions(&index, &Event::Apply(by_alice.clone()));
        index_promotions(&index, &Event::Init);
        index_promotions(&index, &Event::InitApply(by_alice));
        assert_eq!(names(ns, "other"), ["other-by-alice"]);
        index_promotions(&index, &Event::InitDone);
        assert_eq!(names(ns, "filings"), ["filings-by-alice"]);
        assert!(names(ns, "other").is_empty());
    }

    /// The agents' labels are in their summary, not in the cached metadata: an AgentException's
    /// selector still finds them.
    #[test]
    fn an_exception_covers_the_agents_it_names_or_its_selector_selects() {
        use std::collections::BTreeMap;

        use crate::fixtures::NAMESPACE;
        let labelled = |name: &str, team: Option<&str>| {
            let mut a = agent(name, governed_spec());
            a.metadata.labels = team.map(|t| BTreeMap::from([("team".into(), t.into())]));
            a
        };
        let mut elsewhere = agent("other-ns", governed_spec());
        elsewhere.metadata.namespace = Some("team-b".into());
        elsewhere.metadata.labels = Some(BTreeMap::from([("team".into(), "ledger".into())]));
        let agents = Agents::of([
            labelled("ledger-1", Some("ledger")),
            labelled("ledger-2", Some("ledger")),
            labelled("audit", Some("audit")),
            labelled("plain", None),
            elsewhere,
        ]);
        let exception: AgentException = serde_json::from_value(serde_json::json!({
            "apiVersion": "agentgov.dev/v1alpha1", "kind": "AgentException",
            "metadata": {"name": "pilot", "namespace": NAMESPACE},
            "spec": {"rules": ["budget"], "agents": ["plain"],
                     "selector": {"matchLabels": {"team": "ledger"}},
                     "justification": "pilot", "expiresAt": "2099-01-01T00:00:00Z"},
        }))
        .unwrap();
        let mut covered: Vec<String> = agents_covered(&agents, &exception)
            .into_iter()
            .map(|k| k.name().to_string())
            .collect();
        covered.sort();
        assert_eq!(covered, ["ledger-1", "ledger-2", "plain"]);
    }
}
