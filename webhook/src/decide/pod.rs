//! Pod reviews: every path into an agent Pod. A Pod CREATE that carries the agent label, a Pod
//! UPDATE that adds, changes or removes it or changes an agent Pod's images, and an ephemeral
//! container added to an agent Pod (`pods/ephemeralcontainers`) are judged; other Pod UPDATEs
//! pass (the registration's matchConditions keep them from reaching the webhook at all).
//!
//! A judged Pod is admitted only if the agent it names passes the seven checks, the Pod meets
//! the agent's Pod Security level (sandbox: `restricted`; governed: the bundle's level, at least
//! `baseline`), a sandbox that declares no persistent writes mounts no volume that persists,
//! and, when the agent approves a runtime, every image is one of its approved images
//! (`ADMISSION_DENY_RUNTIME_MISMATCH`). A proof signed under an older policy than the one in force
//! passes check 3 only if the policy in force allows the agent too (the operator's re-signing
//! may not have caught up; it may be down), judged once per agent version and policy.
//!
//! The agent's part of that decision, [`decide_start`], is also what an orchestrator outside
//! Kubernetes is answered with (`POST /v1/admit`, [`crate::external`]): the same checks, codes
//! and messages, given the images it would run instead of a Pod (no Pod spec, so no containment
//! check of one).

use std::sync::Arc;

use agentgov_api::Agent;
use agentgov_api::admission::{
    AdmissionContext, AgentView, DecisionCode, PolicyRecheck, check_agent, check_agent_with,
};
use agentgov_api::agent::{AGENT_LABEL, AgentMode, Containment, GovernanceStatus};
use agentgov_api::expiry::ExpiryPolicy;
use agentgov_api::pod_security::{self, PodSecurityLevel};
use agentgov_api::policy::{Actor, AgentInput, PolicyInput};
use agentgov_api::runtime;
use jiff::Timestamp;
use kube::core::admission::Operation;

use super::{Decision, View};
use crate::memo::AgentDerivations;
use crate::review::{PodObject, PodRequest};

/// The subresource through which ephemeral containers are added to a running Pod.
pub(crate) const EPHEMERAL_CONTAINERS: &str = "ephemeralcontainers";

/// Volume sources the restricted level allows that a sandbox without persistent writes may not
/// use: each outlives the Pod or writes to storage elsewhere.
pub(crate) const PERSISTENT_VOLUME_SOURCES: [&str; 3] =
    ["persistentVolumeClaim", "ephemeral", "csi"];

/// What keeps `pod` from running for an agent whose Pods must meet `level` (and, when
/// `persistent_writes` is false, may mount no volume that persists), one sentence per field;
/// empty when it may run.
pub(crate) fn pod_containment(
    pod: &PodObject<'_>,
    level: PodSecurityLevel,
    containment: Containment,
) -> Vec<String> {
    let mut breaches: Vec<String> = pod_security::evaluate(level, &pod.security)
        .into_iter()
        .map(|v| format!("Pod Security level {level}: {}", v.message))
        .collect();
    if !containment.persistent_writes {
        for (i, volume) in pod.security.spec.volumes.iter().enumerate() {
            for source in PERSISTENT_VOLUME_SOURCES {
                if volume.sets(source) {
                    breaches.push(format!(
                        "spec.volumes[{i}] ({}) is a {source} volume, which persists writes the sandbox declares it does not make",
                        volume.name
                    ));
                }
            }
        }
    }
    breaches
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

/// Which Pod reviews are judged, and which pass.
fn scope(req: &PodRequest<'_>) -> Result<(), Decision> {
    let ephemeral = match req.sub_resource.as_deref().filter(|s| !s.is_empty()) {
        None => false,
        Some(EPHEMERAL_CONTAINERS) => true,
        Some(sub) => {
            return Err(Decision::pass(format!(
                "the {sub} subresource is not governed"
            )));
        }
    };
    match req.operation {
        Operation::Create if !ephemeral => Ok(()),
        Operation::Update if ephemeral => Ok(()),
        Operation::Update => {
            let (old, new) = (req.old_agent_label(), req.agent_label());
            if old == new {
                if new.is_some() && req.images_changed() {
                    // A new image in an agent's Pod: judged as a CREATE of the Pod it becomes.
                    return Ok(());
                }
                return Err(Decision::pass(
                    "an update that leaves the agent label and the images alone",
                ));
            }
            // Emptying the label takes the Pod from its agent as removing it does.
            let emptied = new == Some("") && old.is_some_and(|o| !o.is_empty());
            if new.is_none() || emptied {
                let old = old.unwrap_or_default();
                return Err(Decision::deny(
                    DecisionCode::DenyAgentLabelRemoved,
                    Some(old),
                    format!(
                        "label {AGENT_LABEL}={old} may not be removed from (or emptied on) a Pod that carries it: an agent's Pod stays its agent's; delete the Pod instead"
                    ),
                ));
            }
            // Added or changed: judged as a CREATE of a Pod of the agent it now names.
            Ok(())
        }
        Operation::Delete => Err(Decision::pass("DELETE is never denied")),
        _ => Err(Decision::pass(
            "only CREATE, agent label changes and ephemeral containers are governed",
        )),
    }
}

/// The policy now in force, asked about a governed agent whose proof names an older one.
struct PolicyInForce<'a> {
    view: &'a dyn View,
    memo: Option<&'a AgentDerivations<'a>>,
}

impl PolicyRecheck for PolicyInForce<'_> {
    fn recheck(&self, agent: &AgentView<'_>) -> Result<(), String> {
        let Some(policy) = self.view.policy(agent.namespace) else {
            return Err(format!(
                "no policy is in force in namespace {}",
                agent.namespace
            ));
        };
        let judge = || {
            // The proof shows the promotion was authorized when it was signed; the question
            // here is only whether the rules now in force still allow the agent.
            let actor = Actor {
                username: "agentgov-webhook (policy in force)".into(),
                authorized_to_promote: true,
                ..Actor::default()
            };
            let input = PolicyInput {
                agent: AgentInput {
                    namespace: agent.namespace,
                    name: agent.name,
                    spec: agent.spec,
                },
                actor: &actor,
                namespace: None,
            };
            match policy.evaluate(&input) {
                Ok(decision) if decision.allow => Ok(()),
                Ok(decision) => Err(decision.messages().join("; ")),
                Err(e) => Err(format!("it could not judge the agent: {e}")),
            }
        };
        match self.memo {
            Some(memo) => memo.recheck(&policy.shared_hash(), judge),
            None => judge(),
        }
    }
}

/// A Pod review: admitted only if the agent it names passes the seven checks (and, for a
/// sandbox, the Pod is contained).
// Never inlined: `make bench`'s profile (e2e/bench/profile.py) charges a review's CPU to this
// frame; one call per review.
#[inline(never)]
pub(crate) fn decide_pod(
    req: &PodRequest<'_>,
    view: &dyn View,
    expiry: &ExpiryPolicy,
    now: Timestamp,
) -> Decision {
    if req.operation == Operation::Delete {
        return Decision::pass("DELETE is never denied");
    }
    if !req.kind.is_core_pod() {
        return Decision::bad_request(format!(
            "this endpoint reviews core v1/Pod, not {}",
            req.kind
        ));
    }
    if let Err(decision) = scope(req) {
        return decision;
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
    decide_start(namespace, agent_name, Workload::Pod(pod), view, expiry, now).decision
}

/// What an agent start would run.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Workload<'w, 'p> {
    /// A Pod: its Pod Security level and volumes are judged, then its images.
    Pod(&'w PodObject<'p>),
    /// The images an orchestrator outside Kubernetes would run (`POST /v1/admit`). There is no
    /// Pod spec to judge for containment; the images are judged as a Pod's would be.
    Images(&'w [String]),
}

/// A start's decision, and the agent it read from the cache (for an answer that names its
/// proof and status as they were judged).
#[derive(Debug)]
pub(crate) struct Start {
    pub decision: Decision,
    pub agent: Option<Arc<Agent>>,
}

impl From<Decision> for Start {
    fn from(decision: Decision) -> Self {
        Start {
            decision,
            agent: None,
        }
    }
}

/// May agent `agent_name` in `namespace` start, running `workload`? The seven checks, then the
/// workload's containment and images. The one decision of every agent start: a Pod CREATE (and
/// what is judged as one) and an external orchestrator's question (`crate::external`).
pub(crate) fn decide_start(
    namespace: &str,
    agent_name: &str,
    workload: Workload<'_, '_>,
    view: &dyn View,
    expiry: &ExpiryPolicy,
    now: Timestamp,
) -> Start {
    if agent_name.is_empty() {
        return Decision::deny(
            DecisionCode::DenyAgentNotFound,
            None,
            format!("label {AGENT_LABEL} is empty: a Pod must name its Agent"),
        )
        .into();
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
        )
        .into();
    }
    let Some(agent) = view.agent(namespace, agent_name) else {
        return Decision::deny(
            DecisionCode::DenyAgentNotFound,
            Some(agent_name),
            format!("agent {id} does not exist"),
        )
        .into();
    };
    let decision = judge_start(id, &agent, workload, view, expiry, now);
    Start {
        decision,
        agent: Some(agent),
    }
}

/// [`decide_start`] once the agent is found.
fn judge_start(
    id: AgentId<'_>,
    agent: &Agent,
    workload: Workload<'_, '_>,
    view: &dyn View,
    expiry: &ExpiryPolicy,
    now: Timestamp,
) -> Decision {
    let AgentId {
        namespace,
        name: agent_name,
    } = id;
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
    let uid = agent.metadata.uid.as_deref().unwrap_or_default();
    let agent_view = AgentView {
        namespace,
        name: agent_name,
        uid,
        spec: &agent.spec,
        status: agent.status.as_ref(),
        created,
    };
    // The same checks either way; the memo only spares recomputing the spec hash, the
    // signature verdict and a newer policy's verdict of an object version already seen.
    let derivations = view
        .memo()
        .map(|memo| memo.for_agent(namespace, agent_name, agent, &keys));
    let recheck = PolicyInForce {
        view,
        memo: derivations.as_ref(),
    };
    let ctx = AdmissionContext {
        active_policy_hash: policy_hash.as_deref(),
        recheck: Some(&recheck),
        keys: &keys.ring,
        now,
        expiry,
    };
    let checked = match derivations.as_ref() {
        Some(derived) => check_agent_with(&agent_view, &ctx, derived),
        None => check_agent(&agent_view, &ctx),
    };
    if let Err(denial) = checked {
        return Decision::from_denial(agent_name, denial);
    }
    let unapproved = match workload {
        Workload::Pod(pod) => {
            if let Some(denied) = pod_contained(id, agent, pod, view) {
                return denied;
            }
            // What runs is what was approved: every image one of the agent's approved ones.
            runtime::unapproved_images(
                agent.spec.runtime.as_ref(),
                pod_security::images(&pod.security.spec),
            )
        }
        Workload::Images(images) => listed_unapproved(agent, images),
    };
    if !unapproved.is_empty() {
        let unapproved = unapproved.join("; ");
        return Decision::deny(
            DecisionCode::DenyRuntimeMismatch,
            Some(agent_name),
            match workload {
                Workload::Pod(_) => {
                    format!("pod of agent {id} runs what its approved spec does not: {unapproved}")
                }
                Workload::Images(_) => {
                    format!("agent {id} would run what its approved spec does not: {unapproved}")
                }
            },
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

/// The containment deny of a Pod of `agent`, if it breaks containment. Sandbox agents' Pods
/// meet `restricted`, governed agents' Pods the bundle's level (at least `baseline`); a sandbox
/// without persistent writes mounts nothing that persists.
fn pod_contained(
    id: AgentId<'_>,
    agent: &Agent,
    pod: &PodObject<'_>,
    view: &dyn View,
) -> Option<Decision> {
    let level = view.pod_security_level(id.namespace, agent.spec.mode, agent.spec.role_class);
    let containment = match agent.spec.mode {
        AgentMode::Sandbox => agent.spec.anatomy.containment,
        AgentMode::Governed => Containment {
            persistent_writes: true,
            ..agent.spec.anatomy.containment
        },
    };
    let breaches = pod_containment(pod, level, containment);
    if breaches.is_empty() {
        return None;
    }
    let tier = match agent.spec.mode {
        AgentMode::Sandbox => "sandbox",
        AgentMode::Governed => "governed agent",
    };
    Some(Decision::deny(
        DecisionCode::DenyContainmentViolation,
        Some(id.name),
        format!(
            "pod of {tier} {id} breaks containment: {}",
            breaches.join("; ")
        ),
    ))
}

/// Of images listed without a Pod, those the agent's approved runtime does not hold. A Pod
/// runs at least one container, so a list without an image has no Pod to compare with: an
/// agent that binds its runtime refuses it (else leaving the images out would skip the binding).
fn listed_unapproved(agent: &Agent, images: &[String]) -> Vec<String> {
    if images.is_empty() && agent.spec.runtime.is_some() {
        return vec![
            "no image is named, and the agent runs only the images of spec.runtime.images"
                .to_string(),
        ];
    }
    runtime::unapproved_images(
        agent.spec.runtime.as_ref(),
        images
            .iter()
            .enumerate()
            .map(|(i, image)| (Listed(i), image.as_str())),
    )
}

/// Where an image is in an external request, displayed as `images[0]`.
#[derive(Clone, Copy, Debug)]
struct Listed(usize);

impl std::fmt::Display for Listed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "images[{}]", self.0)
    }
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
