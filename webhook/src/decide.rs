//! Admission decisions as functions of (request, a [`View`] of the caches, the clock).
//!
//! Fail closed: anything unexpected on a governed path is a deny with a decision code. Requests
//! outside agentgov's remit (DELETE, subresources, Pods without the agent label, metadata-only
//! Agent updates, objects being deleted) pass with [`Scope::Passthrough`]: a quarantined agent
//! and its workloads can always be deleted or scaled down.

use std::sync::Arc;

use agentgov_api::Agent;
use agentgov_api::admission::{AdmissionContext, AgentView, DecisionCode, Denial, check_agent};
use agentgov_api::agent::{AGENT_LABEL, AgentMode, AgentSpec, Containment};
use agentgov_api::expiry::ExpiryPolicy;
use agentgov_api::keyring::KeyRing;
use agentgov_api::policy::{Actor, AgentInput, PolicyEngine, PolicyInput};
use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::UserInfo;
use kube::Resource;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};
use kube::core::gvk::GroupVersionKind;
use tokio::sync::Semaphore;

use crate::authz::{Authorizer, PROMOTE_VERB};

/// What the decisions read: the caches and the key ring, at one moment.
pub trait View: Send + Sync {
    /// Whether the Agent and PolicyBundle caches have synced. Before that, every decision that
    /// needs them denies with `ADMISSION_DENY_UNAVAILABLE`.
    fn synced(&self) -> bool;
    fn agent(&self, namespace: &str, name: &str) -> Option<Arc<Agent>>;
    /// The promotion policy in force in `namespace` (its hash is the active policy hash).
    fn policy(&self, namespace: &str) -> Option<PolicyEngine>;
    fn keys(&self) -> Arc<KeyRing>;
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
    pub reason: String,
    /// Returned to the client as admission warnings (GOVERNED_RESTRICTED outcomes).
    pub warnings: Vec<String>,
    /// The agent concerned, when known.
    pub agent: Option<String>,
    pub scope: Scope,
}

impl Decision {
    pub fn allow(agent: impl Into<String>, reason: impl Into<String>) -> Self {
        Decision {
            code: DecisionCode::Allow,
            reason: reason.into(),
            warnings: Vec::new(),
            agent: Some(agent.into()),
            scope: Scope::Governed,
        }
    }

    pub fn deny(code: DecisionCode, agent: Option<&str>, reason: impl Into<String>) -> Self {
        Decision {
            code,
            reason: reason.into(),
            warnings: Vec::new(),
            agent: agent.map(str::to_string),
            scope: Scope::Governed,
        }
    }

    pub fn bad_request(reason: impl Into<String>) -> Self {
        Decision::deny(DecisionCode::DenyBadRequest, None, reason)
    }

    pub fn pass(reason: impl Into<String>) -> Self {
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
    if gvk.group.is_empty() {
        format!("{}/{}", gvk.version, gvk.kind)
    } else {
        format!("{}/{}/{}", gvk.group, gvk.version, gvk.kind)
    }
}

fn is_pod(gvk: &GroupVersionKind) -> bool {
    gvk.group.is_empty() && gvk.version == "v1" && gvk.kind == "Pod"
}

fn is_agent(gvk: &GroupVersionKind) -> bool {
    gvk.group == Agent::group(&())
        && gvk.version == Agent::version(&())
        && gvk.kind == Agent::kind(&())
}

fn namespace_of(req: &AdmissionRequest<DynamicObject>) -> Option<&str> {
    req.namespace
        .as_deref()
        .or_else(|| {
            req.object
                .as_ref()
                .and_then(|o| o.metadata.namespace.as_deref())
        })
        .filter(|ns| !ns.is_empty())
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
pub fn pod_containment(pod: &DynamicObject, containment: Containment) -> Result<(), String> {
    let spec = pod.data.get("spec");
    let mut breaches = Vec::new();
    if !containment.persistent_writes {
        match spec.and_then(|s| s.get("volumes")) {
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
            .and_then(|s| s.get("hostNetwork"))
            .and_then(|h| h.as_bool())
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

/// A Pod CREATE: admitted only if the agent it names passes the seven checks.
pub fn decide_pod(
    req: &AdmissionRequest<DynamicObject>,
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
    if !is_pod(&req.kind) {
        return Decision::bad_request(format!(
            "this endpoint reviews core v1/Pod, not {}",
            gvk_string(&req.kind)
        ));
    }
    if req.operation != Operation::Create {
        return Decision::pass("only Pod CREATE is governed");
    }
    let Some(pod) = req.object.as_ref() else {
        return Decision::bad_request("the AdmissionReview has no object");
    };
    let Some(agent_name) = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(AGENT_LABEL))
    else {
        return Decision::pass(format!("not an agent workload (no {AGENT_LABEL} label)"));
    };
    let Some(namespace) = namespace_of(req) else {
        return Decision::bad_request("the request has no namespace");
    };
    if agent_name.is_empty() {
        return Decision::deny(
            DecisionCode::DenyAgentNotFound,
            None,
            format!("label {AGENT_LABEL} is empty: a Pod must name its Agent"),
        );
    }
    let id = format!("{namespace}/{agent_name}");
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
    let policy = view.policy(namespace);
    let agent_view = AgentView {
        namespace,
        name: agent_name,
        spec: &agent.spec,
        status: agent.status.as_ref(),
        created,
    };
    let ctx = AdmissionContext {
        active_policy_hash: policy.as_ref().map(PolicyEngine::hash),
        keys: &keys,
        now,
        expiry,
    };
    if let Err(denial) = check_agent(&agent_view, &ctx) {
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
    let state = agent
        .status
        .as_ref()
        .and_then(|s| s.governance_status)
        .map_or("SANDBOX", |g| g.as_str());
    Decision::allow(
        agent_name,
        format!("agent {id} ({state}) passed the seven checks"),
    )
    .with_warnings(warnings)
}

/// What an Agent CREATE/UPDATE needs after the pure part.
#[derive(Debug)]
pub enum AgentPlan {
    Done(Decision),
    /// The requester must hold `promote`; then `then`.
    Authorize(Box<Promotion>),
}

#[derive(Debug)]
pub struct Promotion {
    pub namespace: String,
    pub name: String,
    pub spec: AgentSpec,
    pub user: UserInfo,
    pub then: AfterAuthorization,
}

#[derive(Debug)]
pub enum AfterAuthorization {
    /// Evaluate the promotion policy (the agent is or becomes governed).
    Policy,
    /// A governed agent going back to sandbox: the sandbox checks passed; this is the answer.
    Answer(Decision),
}

/// The part of an Agent review that needs no I/O.
pub fn plan_agent(
    req: &AdmissionRequest<DynamicObject>,
    view: &dyn View,
    expiry: &ExpiryPolicy,
    now: Timestamp,
) -> AgentPlan {
    if req.operation == Operation::Delete {
        return AgentPlan::Done(Decision::pass("DELETE is never denied"));
    }
    if let Some(sub) = req.sub_resource.as_deref().filter(|s| !s.is_empty()) {
        return AgentPlan::Done(Decision::pass(format!(
            "the {sub} subresource is not governed"
        )));
    }
    if !is_agent(&req.kind) {
        return AgentPlan::Done(Decision::bad_request(format!(
            "this endpoint reviews {}/{}/{}, not {}",
            Agent::group(&()),
            Agent::version(&()),
            Agent::kind(&()),
            gvk_string(&req.kind)
        )));
    }
    if !matches!(req.operation, Operation::Create | Operation::Update) {
        return AgentPlan::Done(Decision::pass(
            "only CREATE and UPDATE of Agents are governed",
        ));
    }
    let Some(object) = req.object.as_ref() else {
        return AgentPlan::Done(Decision::bad_request("the AdmissionReview has no object"));
    };
    let Some(namespace) = namespace_of(req) else {
        return AgentPlan::Done(Decision::bad_request("the request has no namespace"));
    };
    let name = object
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| Some(req.name.clone()).filter(|n| !n.is_empty()))
        .unwrap_or_default();
    let display = if name.is_empty() {
        format!(
            "{}*",
            object.metadata.generate_name.as_deref().unwrap_or_default()
        )
    } else {
        name.clone()
    };
    if object.metadata.deletion_timestamp.is_some() {
        return AgentPlan::Done(Decision::pass("the agent is being deleted"));
    }
    let agent: Agent = match object.clone().try_parse() {
        Ok(agent) => agent,
        Err(e) => {
            return AgentPlan::Done(Decision::deny(
                DecisionCode::DenyBadRequest,
                Some(&display),
                format!("agent {namespace}/{display} does not parse: {e}"),
            ));
        }
    };
    let old: Option<Agent> = match (&req.operation, req.old_object.as_ref()) {
        (Operation::Update, Some(old)) => match old.clone().try_parse::<Agent>() {
            Ok(old) => Some(old),
            Err(e) => {
                tracing::debug!(error = %e, "oldObject does not parse; treating the spec as changed");
                None
            }
        },
        _ => None,
    };
    if old.as_ref().is_some_and(|o| o.spec == agent.spec) {
        return AgentPlan::Done(Decision::pass("metadata-only change"));
    }
    let was_governed = old
        .as_ref()
        .is_some_and(|o| o.spec.mode == AgentMode::Governed);
    let id = format!("{namespace}/{display}");
    match agent.spec.mode {
        AgentMode::Governed => AgentPlan::Authorize(Box::new(Promotion {
            namespace: namespace.to_string(),
            name,
            spec: agent.spec,
            user: req.user_info.clone(),
            then: AfterAuthorization::Policy,
        })),
        AgentMode::Sandbox => {
            // Expiry runs from the API server's creationTimestamp (on CREATE: now), by our clock.
            let created = match req.operation {
                Operation::Create => now,
                _ => old
                    .as_ref()
                    .and_then(|o| o.metadata.creation_timestamp.as_ref())
                    .or(agent.metadata.creation_timestamp.as_ref())
                    .map_or(now, |t| t.0),
            };
            let keys = view.keys();
            let agent_view = AgentView {
                namespace,
                name: &display,
                spec: &agent.spec,
                status: None,
                created,
            };
            let ctx = AdmissionContext {
                active_policy_hash: None,
                keys: &keys,
                now,
                expiry,
            };
            let decision = match check_agent(&agent_view, &ctx) {
                Err(denial) => return AgentPlan::Done(Decision::from_denial(&display, denial)),
                Ok(()) => Decision::allow(
                    &display,
                    format!("sandbox {id} is contained and not expired"),
                ),
            };
            if was_governed {
                AgentPlan::Authorize(Box::new(Promotion {
                    namespace: namespace.to_string(),
                    name,
                    spec: agent.spec,
                    user: req.user_info.clone(),
                    then: AfterAuthorization::Answer(decision),
                }))
            } else {
                AgentPlan::Done(decision)
            }
        }
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// After the SubjectAccessReview: the answer for a promotion (CPU-bound when it evaluates Rego).
pub fn judge_promotion(
    p: &Promotion,
    authorized: Result<bool, String>,
    synced: bool,
    engine: Option<&PolicyEngine>,
) -> Decision {
    let display = if p.name.is_empty() {
        "<generated>"
    } else {
        &p.name
    };
    let id = format!("{}/{display}", p.namespace);
    let requester = p.user.username.as_deref().unwrap_or("an unknown user");
    match authorized {
        Err(e) => {
            return Decision::deny(
                DecisionCode::DenyUnavailable,
                Some(display),
                format!("cannot authorize {requester} to change governed agent {id}: {e}"),
            );
        }
        Ok(false) => {
            return Decision::deny(
                DecisionCode::DenyUnauthorized,
                Some(display),
                format!(
                    "{requester} may not create or change the spec of governed agent {id}: that needs the verb '{PROMOTE_VERB}' on agents.agentgov.dev in namespace {} (granted by the ClusterRoles agentgov-agent-admin and agentgov-policy-admin)",
                    p.namespace
                ),
            );
        }
        Ok(true) => {}
    }
    if let AfterAuthorization::Answer(decision) = &p.then {
        return decision.clone();
    }
    if !synced {
        return Decision::deny(
            DecisionCode::DenyUnavailable,
            Some(display),
            "the webhook's caches have not synced yet; retry shortly",
        );
    }
    let Some(engine) = engine else {
        return Decision::deny(
            DecisionCode::DenyPolicy,
            Some(display),
            format!(
                "no policy in force in namespace {}: its PolicyBundle is missing or has no active (compiled) version, so {id} cannot be promoted",
                p.namespace
            ),
        );
    };
    let actor = Actor {
        username: p.user.username.clone().unwrap_or_default(),
        groups: p.user.groups.clone().unwrap_or_default(),
        roles: Vec::new(),
        authorized_to_promote: true,
    };
    let input = PolicyInput {
        agent: AgentInput {
            namespace: &p.namespace,
            name: &p.name,
            spec: &p.spec,
        },
        actor: &actor,
    };
    let policy = short(engine.hash());
    match engine.evaluate(&input) {
        Err(e) => Decision::deny(
            DecisionCode::DenyPolicy,
            Some(display),
            format!("promotion policy {policy} could not judge {id}: {e}"),
        ),
        Ok(decision) if !decision.allow => Decision::deny(
            DecisionCode::DenyPolicy,
            Some(display),
            format!(
                "promotion policy {policy} denies {id}: {}",
                decision.denies.join("; ")
            ),
        ),
        Ok(decision) if decision.is_restricted() => Decision::allow(
            display,
            format!("promotion policy {policy} allows {id} with warnings (GOVERNED_RESTRICTED)"),
        )
        .with_warnings(
            decision
                .warnings
                .iter()
                .map(|w| format!("GOVERNED_RESTRICTED: {w}"))
                .collect(),
        ),
        Ok(_) => Decision::allow(display, format!("promotion policy {policy} allows {id}")),
    }
}

/// An Agent CREATE/UPDATE: the pure part, then the SubjectAccessReview, then the policy
/// (on the blocking pool, at most `policy_slots` at once).
pub async fn decide_agent(
    req: &AdmissionRequest<DynamicObject>,
    view: &dyn View,
    authz: &dyn Authorizer,
    expiry: &ExpiryPolicy,
    now: Timestamp,
    policy_slots: &Semaphore,
) -> Decision {
    let promotion = match plan_agent(req, view, expiry, now) {
        AgentPlan::Done(decision) => return decision,
        AgentPlan::Authorize(p) => p,
    };
    let needs_policy = matches!(promotion.then, AfterAuthorization::Policy);
    if needs_policy && !view.synced() {
        return judge_promotion(&promotion, Ok(true), false, None);
    }
    let authorized = authz
        .can_promote(&promotion.user, &promotion.namespace, &promotion.name)
        .await
        .map_err(|e| e.to_string());
    let engine = view.policy(&promotion.namespace);
    if !(needs_policy && authorized == Ok(true) && engine.is_some()) {
        return judge_promotion(&promotion, authorized, true, engine.as_ref());
    }
    let Ok(_permit) = policy_slots.acquire().await else {
        return Decision::deny(
            DecisionCode::DenyUnavailable,
            Some(&promotion.name),
            "the webhook is shutting down",
        );
    };
    let span = tracing::Span::current();
    let name = promotion.name.clone();
    tokio::task::spawn_blocking(move || {
        span.in_scope(|| judge_promotion(&promotion, authorized, true, engine.as_ref()))
    })
    .await
    .unwrap_or_else(|e| {
        Decision::deny(
            DecisionCode::DenyUnavailable,
            Some(&name),
            format!("policy evaluation failed: {e}"),
        )
    })
}
