//! NetworkPolicies the operator does not keep that widen an agent's containment or quarantine
//! (see `agentgov_api::containment::widening`): watched (`--contain-pods`), and reported on each
//! agent they widen, once per change: a Warning Event naming them, an
//! `AGENT_CONTAINMENT_WIDENED` line, and the gauge `agentgov_containment_widened_agents`, which
//! an alert watches. When none is left, a Normal Event and `AGENT_CONTAINMENT_RESTORED`.
//!
//! Reported, not undone: the policies are someone else's (a tenant's, often with good reason
//! for the namespace's other Pods), and only the cluster's owner can stop them being written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use agentgov_api::Agent;
use agentgov_api::agent::AGENT_LABEL;
use agentgov_api::containment::{
    MANAGED_BY_LABEL, MANAGER, RunState, Widening, network_policy_name, widening,
};
use agentgov_api::policy_bundle::EgressDestination;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use crate::cache::{ByName, Synced};
use crate::context::Context;
use crate::metrics::Metrics;
use kube::runtime::watcher::Event;

/// Everyone else's NetworkPolicies: their specs by namespace and name (a reconcile reads its
/// agent's namespace only).
pub type Others = ByName<Arc<NetworkPolicySpec>>;

/// The NetworkPolicies in `namespace` (all when `None`) that the operator does not keep, when
/// `on`: their cache, the stream of those that changed or went, and its readiness.
#[allow(clippy::type_complexity)]
pub fn watch(
    client: &kube::Client,
    namespace: Option<&str>,
    on: bool,
) -> (
    Arc<Others>,
    Option<
        impl futures::Stream<Item = Result<NetworkPolicy, kube::runtime::watcher::Error>>
        + Send
        + 'static,
    >,
    Synced,
) {
    let others = Arc::new(Others::default());
    if !on {
        return (others, None, crate::cache::synced());
    }
    let api: Api<NetworkPolicy> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let config = crate::cache::config().labels(&format!("{MANAGED_BY_LABEL}!={MANAGER}"));
    let (stream, synced) = crate::cache::streamed(api, config, crate::cache::slim, {
        let others = Arc::clone(&others);
        move |event| others.observe(event, spec_of)
    });
    (others, Some(stream), synced)
}

fn spec_of(policy: &NetworkPolicy) -> Option<Arc<NetworkPolicySpec>> {
    policy.spec.clone().map(Arc::new)
}

/// Forget an agent that is gone (and count the agents widened without it).
pub fn forget_deleted<K: kube::Resource>(widened: &Widened, metrics: &Metrics, event: &Event<K>) {
    if let Event::Delete(object) = event
        && let Some(uid) = object.meta().uid.as_deref()
    {
        metrics.containment_widened.set(widened.forget(uid) as i64);
    }
}

/// A NetworkPolicy that widens an agent, by name, and how.
pub type Found = (String, Reach);

/// What a NetworkPolicy lets an agent's Pods have beyond their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    /// Read: it allows this (see [`widening`]).
    Allows(Widening),
    /// Labelled as the operator's, which it does not keep: not in the watch of others'
    /// policies, so its rules are not read and it may allow anything.
    Unread,
}

impl Reach {
    fn as_str(self) -> &'static str {
        match self {
            Reach::Allows(widening) => widening.as_str(),
            Reach::Unread => "unread",
        }
    }
}

/// The policies that widen each agent now (by uid), as last reported; agents with none are not
/// held.
#[derive(Default)]
pub struct Widened(Mutex<HashMap<String, Vec<Found>>>);

impl Widened {
    /// Record `now` for the agent `uid`; the policies held before, and how many agents are
    /// widened after.
    fn replace(&self, uid: &str, now: Vec<Found>) -> (Vec<Found>, usize) {
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let before = if now.is_empty() {
            held.remove(uid)
        } else {
            held.insert(uid.to_string(), now)
        };
        (before.unwrap_or_default(), held.len())
    }

    /// Forget an agent that is gone; how many agents are widened after.
    pub fn forget(&self, uid: &str) -> usize {
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        held.remove(uid);
        held.len()
    }
}

/// The policies in the agent's namespace that widen it in `state`, by name: others' that
/// allow more (`others`), and any labelled as the operator's that it does not keep
/// (`strangers`).
fn widening_policies(
    others: &Others,
    strangers: Vec<String>,
    namespace: &str,
    agent: &str,
    state: RunState,
    egress: &[EgressDestination],
) -> Vec<Found> {
    let mut found: Vec<Found> = others
        .lock()
        .get(namespace)
        .into_iter()
        .flatten()
        .filter_map(|(name, spec)| {
            let widens = widening(spec, agent, state, egress)?;
            Some((name.to_string(), Reach::Allows(widens)))
        })
        .chain(strangers.into_iter().map(|name| (name, Reach::Unread)))
        .collect();
    found.sort();
    found
}

/// Report what widens the agent in `state` now, if that changed since the last report.
pub async fn report(ctx: &Context, agent: &Agent, state: RunState, egress: &[EgressDestination]) {
    let namespace = agent.namespace().unwrap_or_default();
    let name = agent.name_any();
    let uid = agent.uid().unwrap_or_default();
    // An open agent has nothing to widen: policies that widened it before matter no more.
    let now = match state {
        RunState::Open => Vec::new(),
        _ => {
            let strangers = ctx.network_policies.others(&namespace);
            widening_policies(
                &ctx.foreign_policies,
                strangers,
                &namespace,
                &name,
                state,
                egress,
            )
        }
    };
    let (before, widened) = ctx.widened.replace(&uid, now.clone());
    if before == now {
        return;
    }
    ctx.metrics.containment_widened.set(widened as i64);
    if state == RunState::Open {
        return;
    }
    let own = network_policy_name(&name);
    let reference = agent.object_ref(&());
    if now.is_empty() {
        info!(
            code = "AGENT_CONTAINMENT_RESTORED",
            agent = %name,
            namespace = %namespace,
            "no other NetworkPolicy widens the agent's any more"
        );
        let note = format!("no other NetworkPolicy widens {own} any more");
        crate::status::publish(
            ctx,
            &reference,
            EventType::Normal,
            "ContainmentRestored",
            note,
        )
        .await;
        return;
    }
    let named: Vec<String> = now
        .iter()
        .map(|(policy, reach)| format!("{policy} ({})", reach.as_str()))
        .collect();
    warn!(
        code = "AGENT_CONTAINMENT_WIDENED",
        agent = %name,
        namespace = %namespace,
        policies = %named.join(", "),
        "other NetworkPolicies may select the agent's Pods and allow what its own denies"
    );
    // One Event per policy newly found, about it too: Events about the same objects for the
    // same reason are one series, which keeps its first note.
    for (policy, reach) in now.iter().filter(|found| !before.contains(found)) {
        let allows = match reach {
            Reach::Unread => "is labelled as agentgov's but is not one it keeps: its rules are \
                              not read, and it may allow traffic"
                .to_string(),
            Reach::Allows(direction) => format!(
                "may select this agent's Pods and allows {}",
                direction.as_str()
            ),
        };
        let note = format!(
            "NetworkPolicy {policy} {allows} that {own} denies (NetworkPolicies add up): leave \
             the agent's Pods out with {{key: {AGENT_LABEL}, operator: DoesNotExist}} in its \
             podSelector, or delete it"
        );
        let related = NetworkPolicy {
            metadata: ObjectMeta {
                name: Some(policy.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: None,
        }
        .object_ref(&());
        crate::status::publish_related(
            ctx,
            &reference,
            Some(related),
            EventType::Warning,
            "ContainmentWidened",
            note,
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::watcher::Event;

    fn policy(namespace: &str, name: &str, spec: serde_json::Value) -> NetworkPolicy {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": namespace, "name": name},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn only_the_agents_namespace_counts_strangers_included_sorted() {
        let store = Others::default();
        let allow_all =
            serde_json::json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]});
        let ingress =
            serde_json::json!({"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]});
        for p in [
            policy("team", "z-egress", allow_all.clone()),
            policy("team", "a-ingress", ingress),
            policy("other", "egress", allow_all),
        ] {
            store.observe(&Event::Apply(p), spec_of);
        }
        let contained = RunState::Contained;
        assert_eq!(
            widening_policies(&store, Vec::new(), "team", "auditor", contained, &[]),
            vec![("z-egress".to_string(), Reach::Allows(Widening::Egress))]
        );
        let quarantined =
            RunState::Quarantined(agentgov_api::containment::QuarantineReason::Expired);
        assert_eq!(
            widening_policies(
                &store,
                vec!["m".into()],
                "team",
                "auditor",
                quarantined,
                &[]
            ),
            vec![
                ("a-ingress".to_string(), Reach::Allows(Widening::Ingress)),
                ("m".to_string(), Reach::Unread),
                ("z-egress".to_string(), Reach::Allows(Widening::Egress)),
            ]
        );
        assert!(
            widening_policies(&store, Vec::new(), "empty", "auditor", contained, &[]).is_empty()
        );
    }

    #[test]
    fn each_agent_is_held_while_widened_and_counted_once() {
        let widened = Widened::default();
        let one = vec![("p".to_string(), Reach::Unread)];
        assert_eq!(widened.replace("u-1", Vec::new()), (Vec::new(), 0));
        assert_eq!(widened.replace("u-1", one.clone()), (Vec::new(), 1));
        assert_eq!(widened.replace("u-1", one.clone()), (one.clone(), 1));
        assert_eq!(widened.replace("u-2", one.clone()), (Vec::new(), 2));
        assert_eq!(widened.forget("u-2"), 1);
        assert_eq!(widened.replace("u-1", Vec::new()), (one, 0));
    }
}
