//! Agent CREATE/UPDATE reviews: sandbox containment and expiry before signing, and for governed
//! agents (or a governed agent going back to sandbox) the `promote` SubjectAccessReview and the
//! promotion policy.

use agentgov_api::Agent;
use agentgov_api::admission::{AdmissionContext, AgentView, DecisionCode, check_agent};
use agentgov_api::agent::{AgentMode, AgentSpec};
use agentgov_api::expiry::ExpiryPolicy;
use agentgov_api::policy::{Actor, AgentInput, PolicyEngine, PolicyInput};
use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::UserInfo;
use kube::Resource;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};
use tokio::sync::Semaphore;

use super::{Decision, View, gvk_string, is_agent, namespace_of};
use crate::authz::{Authorizer, PROMOTE_VERB};

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
                keys: &keys.ring,
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
