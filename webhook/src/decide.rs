//! Admission decisions as functions of (request, a [`View`] of the caches, the clock).
//!
//! Fail closed: anything unexpected on a governed path is a deny with a decision code. Requests
//! outside agentgov's remit (DELETE, subresources, Pods without the agent label, metadata-only
//! Agent updates, objects being deleted) pass with [`Scope::Passthrough`]: a quarantined agent
//! and its workloads can always be deleted or scaled down.

use std::borrow::Cow;
use std::sync::Arc;

use agentgov_api::Agent;
use agentgov_api::admission::{
    AdmissionContext, AgentView, DecisionCode, Denial, check_agent, check_agent_with,
};
use agentgov_api::agent::{AGENT_LABEL, AgentMode, Containment, GovernanceStatus};
use agentgov_api::expiry::ExpiryPolicy;
use agentgov_api::policy::PolicyEngine;
use jiff::Timestamp;
use kube::Resource;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};
use kube::core::gvk::GroupVersionKind;

use crate::keys::KeySnapshot;
use crate::memo::CheckMemo;
use crate::review::{PodObject, PodRequest};

mod agent;

pub use agent::{
    AfterAuthorization, AgentPlan, Promotion, decide_agent, judge_promotion, plan_agent,
};

/// What the decisions read: the caches and the key ring, at one moment.
pub trait View: Send + Sync {
    /// Whether the Agent and PolicyBundle caches have synced. Before that, every decision that
    /// needs them denies with `ADMISSION_DENY_UNAVAILABLE`.
    fn synced(&self) -> bool;
    fn agent(&self, namespace: &str, name: &str) -> Option<Arc<Agent>>;
    /// The promotion policy in force in `namespace` (its hash is the active policy hash).
    fn policy(&self, namespace: &str) -> Option<PolicyEngine>;
    /// The hash of the policy in force in `namespace`, without the engine (Pod reviews).
    fn policy_hash(&self, namespace: &str) -> Option<Arc<str>> {
        self.policy(namespace).map(|engine| engine.shared_hash())
    }
    /// The key ring in force and its generation.
    fn keys(&self) -> Arc<KeySnapshot>;
    /// Where spec hashes and signature verdicts of cached agents are remembered; `None`
    /// computes them on every review.
    fn memo(&self) -> Option<&CheckMemo> {
        None
    }
}

/// Whether a decision is a governance decision (logged at info, counted) or a pass-through
/// for something agentgov does not govern (logged at debug, not counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Governed,
    Passthrough,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub code: DecisionCode,
    pub reason: Cow<'static, str>,
    /// Returned to the client as admission warnings (GOVERNED_RESTRICTED outcomes).
    pub warnings: Vec<String>,
    /// The agent concerned, when known.
    pub agent: Option<String>,
    pub scope: Scope,
}

impl Decision {
    pub fn allow(agent: impl Into<String>, reason: impl Into<Cow<'static, str>>) -> Self {
        Decision {
            code: DecisionCode::Allow,
            reason: reason.into(),
            warnings: Vec::new(),
            agent: Some(agent.into()),
            scope: Scope::Governed,
        }
    }

    pub fn deny(
        code: DecisionCode,
        agent: Option<&str>,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Decision {
            code,
            reason: reason.into(),
            warnings: Vec::new(),
            agent: agent.map(str::to_string),
            scope: Scope::Governed,
        }
    }

    pub fn bad_request(reason: impl Into<Cow<'static, str>>) -> Self {
        Decision::deny(DecisionCode::DenyBadRequest, None, reason)
    }

    pub fn pass(reason: impl Into<Cow<'static, str>>) -> Self {
        Decision {
            code: DecisionCode::Allow,
            reason: reason.into(),
            warnings: Vec::new(),
            agent: None,
            scope: Scope::Passthrough,
        }
    }

    fn from_denial(agent: &str, denial: Denial) -> Self {
        Decision::deny(denial.code, Some(agent), denial.reason)
    }

    pub fn allowed(&self) -> bool {
        self.code == DecisionCode::Allow
    }

    fn with_warnings(mut self, warnings: Vec<String>) -> Self {
        self.warnings = warnings;
        self
    }
}

fn gvk_string(gvk: &GroupVersionKind) -> String {
    crate::review::Gvk {
        group: gvk.group.as_str().into(),
        version: gvk.version.as_str().into(),
        kind: gvk.kind.as_str().into(),
    }
    .to_string()
}

fn is_agent(gvk: &GroupVersionKind) -> bool {
    gvk.group == Agent::group(&())
        && gvk.version == Agent::version(&())
        && gvk.kind == Agent::kind(&())
}

/// The namespace a request is about: the request's, or else its object's; never empty.
pub(crate) fn request_namespace<'a>(
    request: Option<&'a str>,
    object: Option<&'a str>,
) -> Option<&'a str> {
    request.or(object).filter(|ns| !ns.is_empty())
}

fn namespace_of(req: &AdmissionRequest<DynamicObject>) -> Option<&str> {
    request_namespace(
        req.namespace.as_deref(),
        req.object
            .as_ref()
            .and_then(|o| o.metadata.namespace.as_deref()),
    )
}

/// Volume sources a contained sandbox Pod may use: none of them outlives the Pod or reaches
/// storage elsewhere. Every other source (persistentVolumeClaim, hostPath, ephemeral, nfs, csi,
/// ...) can write where the sandbox must not, and is a containment violation.
pub const SANDBOX_VOLUME_SOURCES: [&str; 6] = [
    "emptyDir",
    "configMap",
    "secret",
    "downwardAPI",
    "projected",
    "image",
];

/// Containment as far as the Pod shows it: no volume that persists writes when
/// `persistentWrites` is false, no host network when `externalCalls` is false (it bypasses
/// NetworkPolicy).
pub fn pod_containment(pod: &PodObject<'_>, containment: Containment) -> Result<(), String> {
    let spec = pod.spec.as_ref();
    let mut breaches = Vec::new();
    if !containment.persistent_writes {
        // Kept raw by the parse (valid JSON by then); read only here.
        let volumes = spec
            .and_then(|s| s.volumes)
            .map(|raw| serde_json::from_str::<serde_json::Value>(raw.get()));
        match volumes.transpose().map_err(|e| e.to_string())? {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Array(volumes)) => {
                for (i, volume) in volumes.iter().enumerate() {
                    let Some(fields) = volume.as_object() else {
                        breaches.push(format!("spec.volumes[{i}] is not an object"));
                        continue;
                    };
                    let name = fields
                        .get("name")
                        .and_then(|n| n.as_str())
                        .unwrap_or("<unnamed>");
                    for source in fields.keys().filter(|k| k.as_str() != "name") {
                        if !SANDBOX_VOLUME_SOURCES.contains(&source.as_str()) {
                            breaches.push(format!("volume {name} is a {source} volume"));
                        }
                    }
                }
            }
            Some(_) => breaches.push("spec.volumes is not a list".into()),
        }
    }
    if !containment.external_calls
        && spec
            .and_then(|s| s.host_network.as_ref())
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    {
        breaches.push("hostNetwork is true".into());
    }
    if breaches.is_empty() {
        Ok(())
    } else {
        Err(breaches.join("; "))
    }
}

/// `namespace/name` in messages, formatted only when a message is.
#[derive(Clone, Copy)]
struct AgentId<'a> {
    namespace: &'a str,
    name: &'a str,
}

impl std::fmt::Display for AgentId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A Pod CREATE: admitted only if the agent it names passes the seven checks.
pub fn decide_pod(
    req: &PodRequest<'_>,
    view: &dyn View,
    expiry: &ExpiryPolicy,
    now: Timestamp,
) -> Decision {
    if req.operation == Operation::Delete {
        return Decision::pass("DELETE is never denied");
    }
    if let Some(sub) = req.sub_resource.as_deref().filter(|s| !s.is_empty()) {
        return Decision::pass(format!("the {sub} subresource is not governed"));
    }
    if !req.kind.is_core_pod() {
        return Decision::bad_request(format!(
            "this endpoint reviews core v1/Pod, not {}",
            req.kind
        ));
    }
    if req.operation != Operation::Create {
        return Decision::pass("only Pod CREATE is governed");
    }
    let Some(pod) = req.object.as_ref() else {
        return Decision::bad_request("the AdmissionReview has no object");
    };
    let Some(agent_name) = req.agent_label() else {
        return Decision::pass(format!("not an agent workload (no {AGENT_LABEL} label)"));
    };
    let Some(namespace) = req.namespace() else {
        return Decision::bad_request("the request has no namespace");
    };
    if agent_name.is_empty() {
        return Decision::deny(
            DecisionCode::DenyAgentNotFound,
            None,
            format!("label {AGENT_LABEL} is empty: a Pod must name its Agent"),
        );
    }
    let id = AgentId {
        namespace,
        name: agent_name,
    };
    if !view.synced() {
        return Decision::deny(
            DecisionCode::DenyUnavailable,
            Some(agent_name),
            "the webhook's caches have not synced yet; retry shortly",
        );
    }
    let Some(agent) = view.agent(namespace, agent_name) else {
        return Decision::deny(
            DecisionCode::DenyAgentNotFound,
            Some(agent_name),
            format!("agent {id} does not exist"),
        );
    };
    if agent.metadata.deletion_timestamp.is_some() {
        return Decision::deny(
            DecisionCode::DenyAgentNotFound,
            Some(agent_name),
            format!("agent {id} is being deleted"),
        );
    }
    let Some(created) = agent.metadata.creation_timestamp.as_ref().map(|t| t.0) else {
        return Decision::deny(
            DecisionCode::DenyUnavailable,
            Some(agent_name),
            format!("agent {id} has no creationTimestamp in the cache"),
        );
    };
    let keys = view.keys();
    let policy_hash = view.policy_hash(namespace);
    let agent_view = AgentView {
        namespace,
        name: agent_name,
        spec: &agent.spec,
        status: agent.status.as_ref(),
        created,
    };
    let ctx = AdmissionContext {
        active_policy_hash: policy_hash.as_deref(),
        keys: &keys.ring,
        now,
        expiry,
    };
    // The same checks either way; the memo only spares recomputing the spec hash and the
    // signature verdict of an object version already seen under this key ring.
    let checked = match view.memo() {
        Some(memo) => check_agent_with(
            &agent_view,
            &ctx,
            &memo.for_agent(namespace, agent_name, &agent, &keys),
        ),
        None => check_agent(&agent_view, &ctx),
    };
    if let Err(denial) = checked {
        return Decision::from_denial(agent_name, denial);
    }
    if agent.spec.mode == AgentMode::Sandbox
        && let Err(breach) = pod_containment(pod, agent.spec.anatomy.containment)
    {
        return Decision::deny(
            DecisionCode::DenyContainmentViolation,
            Some(agent_name),
            format!("pod of sandbox {id} breaks containment: {breach}"),
        );
    }
    let warnings = match agent.status.as_ref() {
        Some(status) if !status.warnings.is_empty() => status
            .warnings
            .iter()
            .map(|w| format!("agent {id} is GOVERNED_RESTRICTED: {w}"))
            .collect(),
        _ => Vec::new(),
    };
    let state = agent.status.as_ref().and_then(|s| s.governance_status);
    Decision::allow(agent_name, passed(state)).with_warnings(warnings)
}

/// The reason of an allow (the log line names the agent and namespace beside it). A constant:
/// formatting it was a visible part of a review's cost.
fn passed(state: Option<GovernanceStatus>) -> &'static str {
    match state {
        None | Some(GovernanceStatus::Sandbox) => "a SANDBOX agent: passed the seven checks",
        Some(GovernanceStatus::GovernedValid) => "a GOVERNED_VALID agent: passed the seven checks",
        Some(GovernanceStatus::GovernedRestricted) => {
            "a GOVERNED_RESTRICTED agent: passed the seven checks"
        }
        // The checks deny an invalidated agent; named all the same should that change.
        Some(GovernanceStatus::GovernedInvalidated) => {
            "a GOVERNED_INVALIDATED agent: passed the seven checks"
        }
    }
}
