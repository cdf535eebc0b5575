//! Where an agent's running Pods may connect, decided from its judged status: the NetworkPolicy
//! the operator keeps for each agent. Pure; the operator applies it and evicts quarantined Pods.
//!
//! - A **contained** agent (every sandbox, and a governed agent whose anatomy says
//!   `externalCalls: false`) may reach the cluster DNS and the bundle's `runtime.egress`
//!   destinations, nothing else; its ingress is not limited.
//! - A **quarantined** agent (GOVERNED_INVALIDATED, or a sandbox past its expiry) may reach
//!   nothing and be reached by nothing.
//! - Any other agent gets no policy of ours.
//!
//! NetworkPolicies add up: another policy selecting the same Pods can allow more. The operator
//! owns this one and reports the others that widen it ([`widening`]; docs/design.md).

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::agent::{AGENT_LABEL, AgentMode, AgentSpec, AgentStatus, GovernanceStatus};
use crate::conditions::{EXPIRED, is_true};
use crate::policy_bundle::EgressDestination;

#[path = "containment_widening.rs"]
mod widening_of;
pub use widening_of::{Widening, widening};

/// The label every object the operator keeps for an agent carries, with `MANAGER` as value.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`] (and the operator's field manager).
pub const MANAGER: &str = "agentgov-operator";
/// The label saying which state an agent's NetworkPolicy stands for (`contained`,
/// `quarantined`).
pub const NETWORK_STATE_LABEL: &str = "agentgov.dev/network";

/// The value of [`NETWORK_STATE_LABEL`] on a quarantined agent's NetworkPolicy.
pub const QUARANTINED: &str = "quarantined";

/// The longest label value: an agent with a longer name can have no Pods labelled for it.
const MAX_LABEL_VALUE: usize = 63;

/// What an agent's running Pods may do, from its judged status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// No limit of ours: a governed agent that may make external calls.
    Open,
    /// DNS and the bundle's egress destinations only.
    Contained,
    /// Nothing in or out; stopped if the bundle says so.
    Quarantined(QuarantineReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuarantineReason {
    Invalidated,
    Expired,
}

impl QuarantineReason {
    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineReason::Invalidated => "GOVERNED_INVALIDATED",
            QuarantineReason::Expired => "the sandbox expired",
        }
    }
}

impl RunState {
    /// The state an agent's Pods are in; `None` before the agent's first judgement.
    pub fn of(spec: &AgentSpec, status: Option<&AgentStatus>) -> Option<RunState> {
        let status = status?;
        let governance = status.governance_status?;
        Some(if governance == GovernanceStatus::GovernedInvalidated {
            RunState::Quarantined(QuarantineReason::Invalidated)
        } else if is_true(&status.conditions, EXPIRED) {
            RunState::Quarantined(QuarantineReason::Expired)
        } else if governance == GovernanceStatus::Sandbox
            || spec.mode == AgentMode::Sandbox
            || !spec.anatomy.containment.external_calls
        {
            RunState::Contained
        } else {
            RunState::Open
        })
    }

    pub fn is_quarantined(self) -> bool {
        matches!(self, RunState::Quarantined(_))
    }

    /// The value of [`NETWORK_STATE_LABEL`] on the NetworkPolicy for this state.
    pub fn label(self) -> Option<&'static str> {
        match self {
            RunState::Open => None,
            RunState::Contained => Some("contained"),
            RunState::Quarantined(_) => Some(QUARANTINED),
        }
    }
}

/// The agent a NetworkPolicy is for.
pub struct AgentRef<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
}

/// The name of an agent's NetworkPolicy.
pub fn network_policy_name(agent: &str) -> String {
    format!("agentgov-{agent}")
}

/// The NetworkPolicy an agent's Pods need in `state`; `None`: none (an open agent, or one whose
/// name is too long for a Pod label, so no Pod can be its).
pub fn network_policy(
    agent: &AgentRef<'_>,
    state: RunState,
    egress: &[EgressDestination],
) -> Option<NetworkPolicy> {
    let label = state.label()?;
    if agent.name.len() > MAX_LABEL_VALUE {
        return None;
    }
    let spec = match state {
        RunState::Open => return None,
        RunState::Contained => NetworkPolicySpec {
            pod_selector: Some(selector([(AGENT_LABEL, agent.name)])),
            policy_types: Some(vec!["Egress".into()]),
            egress: Some(
                std::iter::once(dns_rule())
                    .chain(egress.iter().map(destination_rule))
                    .collect(),
            ),
            ingress: None,
        },
        RunState::Quarantined(_) => NetworkPolicySpec {
            pod_selector: Some(selector([(AGENT_LABEL, agent.name)])),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            egress: None,
            ingress: None,
        },
    };
    Some(NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(network_policy_name(agent.name)),
            namespace: Some(agent.namespace.to_string()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_string(), MANAGER.to_string()),
                (AGENT_LABEL.to_string(), agent.name.to_string()),
                (NETWORK_STATE_LABEL.to_string(), label.to_string()),
            ])),
            owner_references: Some(vec![owner(agent)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
    })
}

/// The Agent as the controlling owner of an object kept for it (deleted with it).
pub fn owner(agent: &AgentRef<'_>) -> OwnerReference {
    OwnerReference {
        api_version: format!("{}/v1alpha1", crate::GROUP),
        kind: "Agent".into(),
        name: agent.name.to_string(),
        uid: agent.uid.to_string(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

fn selector<const N: usize>(labels: [(&str, &str); N]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(
            labels
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        match_expressions: None,
    }
}

/// UDP and TCP port 53 of the Pods in kube-system (the cluster DNS: a Service address is
/// translated to its Pods' before the policy applies).
fn dns_rule() -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(selector([("kubernetes.io/metadata.name", "kube-system")])),
            ..NetworkPolicyPeer::default()
        }]),
        ports: Some(vec![port("UDP", 53), port("TCP", 53)]),
    }
}

fn destination_rule(destination: &EgressDestination) -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            ip_block: Some(k8s_openapi::api::networking::v1::IPBlock {
                cidr: destination.cidr.clone(),
                except: None,
            }),
            ..NetworkPolicyPeer::default()
        }]),
        ports: (!destination.ports.is_empty())
            .then(|| destination.ports.iter().map(|&p| port("TCP", p)).collect()),
    }
}

/// A port with its protocol spelled out, as the API server stores it (it defaults TCP), so the
/// stored policy compares equal to the wanted one.
fn port(protocol: &str, number: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some(protocol.into()),
        port: Some(IntOrString::Int(number)),
        end_port: None,
    }
}

#[cfg(test)]
#[path = "containment_tests.rs"]
mod tests;
