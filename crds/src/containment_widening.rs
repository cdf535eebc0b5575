//! Whether a NetworkPolicy someone else keeps undoes an agent's containment or quarantine.
//!
//! NetworkPolicies add up: a Pod selected by several may make every connection any of them
//! allows. So another policy that may select an agent's Pods and allows what the agent's own
//! denies widens it, and only the cluster's owner can forbid writing one (RBAC, or a policy kind
//! above NetworkPolicy). The operator reports each such policy on the agent it widens.
//!
//! "May select" is judged from the policy's Pod selector alone, on the agent label: any other
//! label it asks for can be put on the agent's Pods by whoever may update them (only the agent
//! label is judged on a Pod update). A policy leaves an agent's Pods out by its selector on that
//! label, e.g. `{key: agentgov.dev/agent, operator: DoesNotExist}`.

use k8s_openapi::api::networking::v1::{
    NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{RunState, destination_rule};
use crate::agent::AGENT_LABEL;
use crate::policy_bundle::EgressDestination;

/// The traffic another NetworkPolicy lets an agent's Pods have beyond their own policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Widening {
    /// Connections out: for a contained agent, to more than DNS and the bundle's destinations;
    /// for a quarantined one, any.
    Egress,
    /// Connections in, to a quarantined agent.
    Ingress,
}

impl Widening {
    pub fn as_str(self) -> &'static str {
        match self {
            Widening::Egress => "egress",
            Widening::Ingress => "ingress",
        }
    }
}

/// What `spec`, a NetworkPolicy in the agent's namespace that the operator does not keep, lets
/// the Pods of `agent` (in `state`, under the bundle's `egress` destinations) have beyond their
/// own policy; `None`: nothing, or it cannot select them.
pub fn widening(
    spec: &NetworkPolicySpec,
    agent: &str,
    state: RunState,
    egress: &[EgressDestination],
) -> Option<Widening> {
    if state == RunState::Open || !may_select(spec.pod_selector.as_ref(), agent) {
        return None;
    }
    let (limits_ingress, limits_egress) = policy_types(spec);
    let egress_rules = spec.egress.as_deref().filter(|_| limits_egress);
    let ingress_rules = spec.ingress.as_deref().filter(|_| limits_ingress);
    let quarantined = state.is_quarantined();
    let widens = |rule: &NetworkPolicyEgressRule| {
        quarantined || !(dns_only(rule) || egress.iter().any(|d| *rule == destination_rule(d)))
    };
    if egress_rules.unwrap_or_default().iter().any(widens) {
        Some(Widening::Egress)
    } else if quarantined && !ingress_rules.unwrap_or_default().is_empty() {
        Some(Widening::Ingress)
    } else {
        None
    }
}

/// Whether a Pod selector may select Pods labelled `agentgov.dev/agent: <agent>`: unless what
/// it asks of that label rules them out.
fn may_select(selector: Option<&LabelSelector>, agent: &str) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    let labelled = selector
        .match_labels
        .as_ref()
        .and_then(|labels| labels.get(AGENT_LABEL))
        .is_none_or(|value| value == agent);
    labelled
        && selector
            .match_expressions
            .iter()
            .flatten()
            .filter(|e| e.key == AGENT_LABEL)
            .all(|e| {
                let named = e.values.iter().flatten().any(|v| v == agent);
                match e.operator.as_str() {
                    "In" => named,
                    "NotIn" => !named,
                    "DoesNotExist" => false,
                    // Exists, and anything the API server would not have stored.
                    _ => true,
                }
            })
}

/// Which directions the policy limits, and so may allow: its `policyTypes`, or when it has none
/// (the API server fills them in on writes, an old object may lack them), ingress always and
/// egress when it has egress rules.
fn policy_types(spec: &NetworkPolicySpec) -> (bool, bool) {
    match spec.policy_types.as_deref() {
        Some(types) if !types.is_empty() => (
            types.iter().any(|t| t == "Ingress"),
            types.iter().any(|t| t == "Egress"),
        ),
        _ => (true, spec.egress.as_ref().is_some_and(|e| !e.is_empty())),
    }
}

/// An egress rule that allows no more than the agent's own DNS rule: port 53 only, to Pods of
/// the namespace kube-system only (any Pod selector narrows it further).
fn dns_only(rule: &NetworkPolicyEgressRule) -> bool {
    let ports = rule.ports.as_deref().unwrap_or_default();
    let peers = rule.to.as_deref().unwrap_or_default();
    !ports.is_empty()
        && ports.iter().all(dns_port)
        && !peers.is_empty()
        && peers.iter().all(in_kube_system)
}

fn dns_port(port: &NetworkPolicyPort) -> bool {
    port.port == Some(IntOrString::Int(53)) && port.end_port.is_none_or(|end| end == 53)
}

fn in_kube_system(peer: &NetworkPolicyPeer) -> bool {
    peer.ip_block.is_none()
        && peer.namespace_selector.as_ref().is_some_and(|s| {
            s.match_expressions
                .as_deref()
                .unwrap_or_default()
                .is_empty()
                && s.match_labels.as_ref().is_some_and(|labels| {
                    labels.len() == 1
                        && labels
                            .get("kubernetes.io/metadata.name")
                            .map(String::as_str)
                            == Some("kube-system")
                })
        })
}

#[cfg(test)]
#[path = "containment_widening_tests.rs"]
mod tests;
