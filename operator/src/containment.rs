//! Keeping each agent's NetworkPolicy as its judged status says (see
//! `agentgov_api::containment`), and stopping a quarantined agent's running Pods.
//!
//! The operator caches its NetworkPolicies as digests (name, owner, state label and a
//! fingerprint of the spec), not whole objects: at thousands of agents the cache is most of the
//! operator's memory. A policy someone else changed or deleted is put back on the watch event.
//! It is replaced whole (an unconditional update), so fields another writer added do not
//! survive.

use agentgov_api::Agent;
use agentgov_api::agent::{AGENT_LABEL, AgentStatus};
use agentgov_api::containment::{
    AgentRef, MANAGED_BY_LABEL, MANAGER, NETWORK_STATE_LABEL, QUARANTINED, RunState,
    network_policy, network_policy_name,
};
use agentgov_api::policy_bundle::{QuarantineAction, RuntimeData};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, EvictParams, ListParams, PostParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde::{Deserialize, Deserializer};
use tracing::{info, warn};

use crate::context::Context;
use crate::error::Result;
use crate::written::{Fingerprint, fingerprint};

/// A NetworkPolicy the operator keeps, as its cache holds it.
#[derive(Clone, Debug, Deserialize)]
pub struct PolicyDigest {
    pub metadata: ObjectMeta,
    /// A fingerprint of the spec (see [`spec_fingerprint`]).
    #[serde(default, deserialize_with = "digest_spec")]
    pub spec: Fingerprint,
}

impl k8s_openapi::Resource for PolicyDigest {
    const API_VERSION: &'static str = NetworkPolicy::API_VERSION;
    const GROUP: &'static str = NetworkPolicy::GROUP;
    const KIND: &'static str = NetworkPolicy::KIND;
    const VERSION: &'static str = NetworkPolicy::VERSION;
    const URL_PATH_SEGMENT: &'static str = NetworkPolicy::URL_PATH_SEGMENT;
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::ListableResource for PolicyDigest {
    const LIST_KIND: &'static str = NetworkPolicy::LIST_KIND;
}

impl k8s_openapi::Metadata for PolicyDigest {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

fn digest_spec<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Fingerprint, D::Error> {
    Option::<NetworkPolicySpec>::deserialize(deserializer)
        .map(|spec| spec_fingerprint(spec.as_ref()))
}

/// A fingerprint of a spec as k8s-openapi writes it (fields in a fixed order), so the spec the
/// API server stores and the one the operator wants compare equal when they mean the same.
pub fn spec_fingerprint(spec: Option<&NetworkPolicySpec>) -> Fingerprint {
    serde_json::to_vec(&spec).map_or(0, |json| fingerprint(&json[..]))
}

/// Keep what the comparison needs: name, namespace, owners and the state label.
pub fn slim(digest: &mut PolicyDigest) {
    let meta = &mut digest.metadata;
    let state = meta
        .labels
        .as_mut()
        .and_then(|labels| labels.remove_entry(NETWORK_STATE_LABEL));
    *meta = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        resource_version: meta.resource_version.take(),
        owner_references: meta.owner_references.take(),
        labels: state.map(|entry| [entry].into()),
        ..ObjectMeta::default()
    };
}

/// The label selector of the NetworkPolicies the operator keeps.
pub fn selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGER}")
}

fn state_of(digest: &PolicyDigest) -> Option<&str> {
    digest
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(NETWORK_STATE_LABEL))
        .map(String::as_str)
}

/// Whether the cached policy is the wanted one: same spec, state and controlling owner.
fn matches(cached: &PolicyDigest, wanted: &NetworkPolicy) -> bool {
    let label = |labels: &Option<std::collections::BTreeMap<String, String>>| {
        labels
            .as_ref()
            .and_then(|l| l.get(NETWORK_STATE_LABEL).cloned())
    };
    cached.spec == spec_fingerprint(wanted.spec.as_ref())
        && state_of(cached).map(str::to_string) == label(&wanted.metadata.labels)
        && cached.metadata.owner_references == wanted.metadata.owner_references
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
    let cached = ctx
        .network_policies
        .get(&ObjectRef::new(&policy_name).within(&namespace));
    let was_quarantined = cached.as_deref().and_then(state_of) == Some(QUARANTINED);
    let policies: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    match (&wanted, cached.as_deref()) {
        (Some(wanted), Some(cached)) if matches(cached, wanted) => {}
        (Some(wanted), cached) => {
            write(&policies, &policy_name, wanted, cached.is_some()).await?;
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
        (None, Some(_)) => match policies.delete(&policy_name, &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        },
        (None, None) => {}
    }
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

/// Replace the policy whole (no resourceVersion: whatever is stored), or create it.
async fn write(
    policies: &Api<NetworkPolicy>,
    name: &str,
    wanted: &NetworkPolicy,
    exists: bool,
) -> Result<()> {
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..PostParams::default()
    };
    let replaced = if exists {
        policies.replace(name, &params, wanted).await
    } else {
        policies.create(&params, wanted).await
    };
    match replaced {
        Ok(_) => Ok(()),
        // The cache was behind: it was deleted, or created meanwhile. Try the other way once.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
            let again = if e.code == 404 {
                policies.create(&params, wanted).await
            } else {
                policies.replace(name, &params, wanted).await
            };
            again.map(drop).map_err(Into::into)
        }
        Err(e) => Err(e.into()),
    }
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
            let mut digest: PolicyDigest = serde_json::from_str(&text).unwrap();
            slim(&mut digest);
            assert!(matches(&digest, &wanted), "{state:?}");
            assert_eq!(digest.metadata.managed_fields, None);
            assert_eq!(digest.metadata.labels.as_ref().unwrap().len(), 1);
            // Another writer's change to the spec shows.
            stored["spec"]["podSelector"]["matchLabels"]["extra"] = "1".into();
            let tampered: PolicyDigest = serde_json::from_value(stored).unwrap();
            assert!(!matches(&tampered, &wanted), "{state:?}");
        }
        let contained = network_policy(&agent, RunState::Contained, &egress).unwrap();
        let quarantined = network_policy(
            &agent,
            RunState::Quarantined(QuarantineReason::Invalidated),
            &egress,
        )
        .unwrap();
        let digest: PolicyDigest =
            serde_json::from_value(serde_json::to_value(&contained).unwrap()).unwrap();
        assert!(!matches(&digest, &quarantined));
    }
}
