//! Keeping each agent's NetworkPolicy as its judged status says (see
//! `agentgov_api::containment`), and stopping a quarantined agent's running Pods.
//!
//! The operator caches its NetworkPolicies as digests (see `crate::kept`: name, owner, state
//! label and a fingerprint of the spec). A policy someone else changed or deleted is put back
//! on the watch event.

use agentgov_api::Agent;
use agentgov_api::agent::{AGENT_LABEL, AgentStatus};
use agentgov_api::containment::{
    AgentRef, NETWORK_STATE_LABEL, QUARANTINED, RunState, network_policy, network_policy_name,
};
use agentgov_api::policy_bundle::{QuarantineAction, RuntimeData};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use kube::api::{Api, EvictParams, ListParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::context::Context;
use crate::error::Result;
use crate::kept::Kept;

/// What of a NetworkPolicy the operator sets: its spec (k8s-openapi writes its fields in a fixed
/// order, so the stored and the wanted spec compare equal when they mean the same).
#[derive(Serialize, Deserialize)]
pub struct NetworkPolicyShape {
    #[serde(default)]
    spec: Option<NetworkPolicySpec>,
}

impl Kept for NetworkPolicy {
    type Shape = NetworkPolicyShape;
    const LABELS: &'static [&'static str] = &[AGENT_LABEL, NETWORK_STATE_LABEL];
}

/// Bring the agent's NetworkPolicy and Pods in line with `status` (its judged status): write,
/// replace or delete the policy, evict a quarantined agent's Pods when the bundle says `stop`,
/// and record each change of state (Events, the quarantine metric, a log line).
pub async fn converge(
    ctx: &Context,
    agent: &Agent,
    status: Option<&AgentStatus>,
    runtime: &RuntimeData,
) -> Result<()> {
    let Some(state) = RunState::of(&agent.spec, status) else {
        return Ok(());
    };
    let namespace = agent.namespace().unwrap_or_default();
    let name = agent.name_any();
    let uid = agent.uid().unwrap_or_default();
    let policy_name = network_policy_name(&name);
    let reference = AgentRef {
        namespace: &namespace,
        name: &name,
        uid: &uid,
    };
    let wanted = network_policy(&reference, state, &runtime.egress);
    let cached = ctx.network_policies.get(&namespace, &policy_name);
    let was_quarantined =
        cached.as_ref().and_then(|c| c.label(NETWORK_STATE_LABEL)) == Some(QUARANTINED);
    let policies: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    match (&wanted, cached.as_ref()) {
        (Some(wanted), Some(cached)) if cached.matches(wanted) => {}
        (Some(wanted), cached) => {
            crate::kept::write(&policies, wanted, cached.is_some()).await?;
            if let RunState::Quarantined(reason) = state
                && !was_quarantined
            {
                ctx.metrics.quarantine("isolate", 1);
                warn!(
                    code = "AGENT_QUARANTINED",
                    agent = %name,
                    namespace = %namespace,
                    reason = reason.as_str(),
                    action = runtime.quarantine().as_str(),
                    "agent quarantined: its Pods are cut off from the network"
                );
                event(
                    ctx,
                    agent,
                    EventType::Warning,
                    "Quarantined",
                    format!(
                        "{}: its Pods may reach nothing and be reached by nothing (NetworkPolicy {policy_name}){}",
                        reason.as_str(),
                        match runtime.quarantine() {
                            QuarantineAction::Stop => "; they are evicted",
                            QuarantineAction::Isolate => "; they keep running (quarantine: isolate)",
                        }
                    ),
                )
                .await;
            }
        }
        (None, Some(_)) => crate::kept::delete(&policies, &policy_name).await?,
        (None, None) => {}
    }
    ctx.foreign_policies_synced.wait().await;
    crate::widening::report(ctx, agent, state, &runtime.egress).await;
    if was_quarantined && !state.is_quarantined() {
        ctx.metrics.quarantine("lift", 1);
        info!(
            code = "AGENT_QUARANTINE_LIFTED",
            agent = %name,
            namespace = %namespace,
            "quarantine lifted"
        );
        event(
            ctx,
            agent,
            EventType::Normal,
            "QuarantineLifted",
            "the agent may run again: its Pods' network is no longer cut off".into(),
        )
        .await;
    }
    if state.is_quarantined() && runtime.quarantine() == QuarantineAction::Stop {
        stop(ctx, agent, &namespace, &name).await?;
    }
    Ok(())
}

/// Evict the agent's running Pods (the Eviction API: a PodDisruptionBudget may hold some back
/// until later; the next look tries again). Their replacements are refused at admission.
async fn stop(ctx: &Context, agent: &Agent, namespace: &str, name: &str) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let selector = format!("{AGENT_LABEL}={name}");
    let running = pods.list(&ListParams::default().labels(&selector)).await?;
    let mut evicted = 0;
    let mut held = Vec::new();
    for pod in running
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let pod_name = pod.name_any();
        match pods.evict(&pod_name, &EvictParams::default()).await {
            Ok(_) => evicted += 1,
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(kube::Error::Api(e)) if e.code == 429 => held.push(pod_name),
            Err(e) => return Err(e.into()),
        }
    }
    if evicted > 0 {
        ctx.metrics.quarantine("stop", evicted);
        warn!(
            code = "AGENT_STOPPED",
            agent = %name,
            namespace = %namespace,
            evicted,
            "quarantined agent's Pods evicted"
        );
        event(
            ctx,
            agent,
            EventType::Warning,
            "Stopped",
            format!("evicted {evicted} Pod(s) of the quarantined agent"),
        )
        .await;
    }
    if !held.is_empty() {
        warn!(
            agent = %name,
            namespace = %namespace,
            pods = ?held,
            "a PodDisruptionBudget holds back the eviction of a quarantined agent's Pods; trying again later"
        );
    }
    Ok(())
}

async fn event(ctx: &Context, agent: &Agent, type_: EventType, reason: &str, note: String) {
    crate::status::publish(ctx, &agent.object_ref(&()), type_, reason, note).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kept::{Cache, Digest};
    use kube::runtime::watcher::Event;

    #[test]
    fn a_stored_policy_compares_equal_to_the_wanted_one() {
        use agentgov_api::containment::QuarantineReason;
        let agent = AgentRef {
            namespace: "team",
            name: "auditor",
            uid: "u-1",
        };
        let egress = [agentgov_api::policy_bundle::EgressDestination {
            cidr: "10.0.0.0/8".into(),
            ports: vec![443],
        }];
        for state in [
            RunState::Contained,
            RunState::Quarantined(QuarantineReason::Expired),
        ] {
            let wanted = network_policy(&agent, state, &egress).unwrap();
            // As the API server answers: its own field order, fields it adds, other labels.
            let mut stored = serde_json::to_value(&wanted).unwrap();
            stored["metadata"]["resourceVersion"] = "7".into();
            stored["metadata"]["uid"] = "p-1".into();
            stored["metadata"]["labels"]["team"] = "x".into();
            stored["metadata"]["managedFields"] =
                serde_json::json!([{"manager": "agentgov-operator"}]);
            let text = serde_json::to_string(&stored).unwrap();
            let digest: Digest<NetworkPolicy> = serde_json::from_str(&text).unwrap();
            assert_eq!(digest.metadata.managed_fields, None);
            assert_eq!(digest.metadata.labels, None, "kept as values, not a map");
            // A change to it has its agent looked at again.
            assert_eq!(
                digest.agent(),
                Some(crate::driver::Key::new("team", "auditor"))
            );
            // What the cache holds of it, found by namespace and name.
            let cache = Cache::<NetworkPolicy>::default();
            cache.observe(&Event::Apply(digest));
            let held = cache.get("team", &network_policy_name("auditor")).unwrap();
            assert!(held.matches(&wanted), "{state:?}");
            assert_eq!(held.label(NETWORK_STATE_LABEL), state.label());
            // Another writer's change to the spec shows.
            stored["spec"]["podSelector"]["matchLabels"]["extra"] = "1".into();
            let tampered: Digest<NetworkPolicy> = serde_json::from_value(stored).unwrap();
            assert!(!tampered.held().matches(&wanted), "{state:?}");
        }
        let contained = network_policy(&agent, RunState::Contained, &egress).unwrap();
        let quarantined = network_policy(
            &agent,
            RunState::Quarantined(QuarantineReason::Invalidated),
            &egress,
        )
        .unwrap();
        assert!(!Digest::of(&contained).held().matches(&quarantined));
    }
}
