//! Agent CREATE/UPDATE reviews, in the order a request meets them:
//! 1. what agentgov does not govern passes (DELETE, subresources, metadata-only updates);
//! 2. an agent being deleted keeps its spec (the one its proof covers);
//! 3. a sandbox: containment and expiry; an expiry moved later needs the verb `extend`;
//! 4. a governed agent (or a governed agent going back to sandbox): the verb `promote`, then the
//!    promotion policy in force.
//!
//! [`plan_agent`] is the part without I/O; [`decide_agent`] adds the SubjectAccessReview and the
//! policy evaluation.

use agentgov_api::Agent;
use agentgov_api::admission::{AdmissionContext, AgentView, DecisionCode, check_agent};
use agentgov_api::agent::{AgentMode, AgentSpec};
use agentgov_api::expiry::{ExpiryPolicy, sandbox_expires_at};
use agentgov_api::policy::{Actor, AgentInput, PolicyInput};
use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::UserInfo;
use kube::Resource;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};
use tokio::sync::Semaphore;

use super::{Decision, View, gvk_string, is_agent, namespace_of};
use crate::authz::{Authorizer, EXTEND_VERB, PROMOTE_VERB};
use crate::policy::ActivePolicy;

/// What an Agent CREATE/UPDATE needs after the pure part.
#[derive(Debug)]
pub enum AgentPlan {
    Done(Decision),
    /// The requester must hold a verb on the agent; then `then`.
    Authorize(Box<Authorization>),
}

/// A SubjectAccessReview to ask, and what follows when it allows.
#[derive(Debug)]
pub struct Authorization {
    pub verb: &'static str,
    pub namespace: String,
    /// Empty for a CREATE with `generateName`.
    pub name: String,
    pub user: UserInfo,
    pub then: AfterAuthorization,
}

#[derive(Debug)]
pub enum AfterAuthorization {
    /// Evaluate the promotion policy on this spec (the agent is or becomes governed).
    Policy(Box<AgentSpec>),
    /// Nothing more to judge: this is the answer.
    Answer(Decision),
}

impl Authorization {
    fn display(&self) -> &str {
        if self.name.is_empty() {
            "<generated>"
        } else {
            &self.name
        }
    }

    fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.display())
    }

    /// The answer when the SubjectAccessReview refused or failed.
    fn refusal(&self, authorized: Result<bool, String>) -> Option<Decision> {
        let requester = self.user.username.as_deref().unwrap_or("an unknown user");
        let (id, display) = (self.id(), self.display());
        match authorized {
            Ok(true) => None,
            Err(e) => Some(Decision::deny(
                DecisionCode::DenyUnavailable,
                Some(display),
                format!(
                    "cannot check whether {requester} may {} {id}: {e}",
                    self.verb
                ),
            )),
            Ok(false) if self.verb == EXTEND_VERB => Some(Decision::deny(
                DecisionCode::DenySandboxExtension,
                Some(display),
                format!(
                    "{requester} may not move the expiry of sandbox {id} later: a sandbox's life is fixed when it is created. Promote it (mode: governed) or recreate it; an exception needs the verb '{EXTEND_VERB}' on agents.agentgov.dev in namespace {} (ClusterRole agentgov-sandbox-extender)",
                    self.namespace
                ),
            )),
            Ok(false) => Some(Decision::deny(
                DecisionCode::DenyUnauthorized,
                Some(display),
                format!(
                    "{requester} may not create or change the spec of governed agent {id}: that needs the verb '{PROMOTE_VERB}' on agents.agentgov.dev in namespace {} (granted by the ClusterRoles agentgov-agent-admin and agentgov-policy-admin)",
                    self.namespace
                ),
            )),
        }
    }
}

/// The part of an Agent review that needs no I/O.
pub fn plan_agent(
    req: &AdmissionRequest<DynamicObject>,
    view: &dyn View,
    expiry: &ExpiryPolicy,
    now: Timestamp,
) -> AgentPlan {
    use AgentPlan::Done;
    if req.operation == Operation::Delete {
        return Done(Decision::pass("DELETE is never denied"));
    }
    if let Some(sub) = req.sub_resource.as_deref().filter(|s| !s.is_empty()) {
        return Done(Decision::pass(format!(
            "the {sub} subresource is not governed"
        )));
    }
    if !is_agent(&req.kind) {
        return Done(Decision::bad_request(format!(
            "this endpoint reviews {}/{}/{}, not {}",
            Agent::group(&()),
            Agent::version(&()),
            Agent::kind(&()),
            gvk_string(&req.kind)
        )));
    }
    if !matches!(req.operation, Operation::Create | Operation::Update) {
        return Done(Decision::pass(
            "only CREATE and UPDATE of Agents are governed",
        ));
    }
    let Some(object) = req.object.as_ref() else {
        return Done(Decision::bad_request("the AdmissionReview has no object"));
    };
    let Some(namespace) = namespace_of(req) else {
        return Done(Decision::bad_request("the request has no namespace"));
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
    let id = format!("{namespace}/{display}");
    let agent: Agent = match object.clone().try_parse() {
        Ok(agent) => agent,
        Err(e) => {
            return Done(Decision::deny(
                DecisionCode::DenyBadRequest,
                Some(&display),
                format!("agent {id} does not parse: {e}"),
            ));
        }
    };
    // On UPDATE, an oldObject that does not parse counts as a changed spec (fail closed).
    let old: Option<Agent> = match (&req.operation, req.old_object.as_ref()) {
        (Operation::Update, Some(old)) => old.clone().try_parse::<Agent>().ok(),
        _ => None,
    };
    let spec_unchanged = old.as_ref().is_some_and(|o| o.spec == agent.spec);
    let deleting = object.metadata.deletion_timestamp.is_some()
        || old
            .as_ref()
            .is_some_and(|o| o.metadata.deletion_timestamp.is_some());
    if deleting {
        return Done(if spec_unchanged {
            Decision::pass("the agent is being deleted; its spec is unchanged")
        } else {
            Decision::deny(
                DecisionCode::DenyAgentDeleting,
                Some(&display),
                format!(
                    "agent {id} is being deleted: its spec may not change (only finalizers and the metadata its deletion needs), so it keeps the spec its proof covers"
                ),
            )
        });
    }
    if spec_unchanged {
        return Done(Decision::pass("metadata-only change"));
    }
    let authorize = |verb, then| {
        AgentPlan::Authorize(Box::new(Authorization {
            verb,
            namespace: namespace.to_string(),
            name: name.clone(),
            user: req.user_info.clone(),
            then,
        }))
    };
    if agent.spec.mode == AgentMode::Governed {
        return authorize(
            PROMOTE_VERB,
            AfterAuthorization::Policy(Box::new(agent.spec)),
        );
    }
    // A sandbox. Expiry runs from the API server's creationTimestamp (on CREATE: now), by our
    // clock, never from the object's own claim.
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
        recheck: None,
        keys: &keys.ring,
        now,
        expiry,
    };
    if let Err(denial) = check_agent(&agent_view, &ctx) {
        return Done(Decision::from_denial(&display, denial));
    }
    let contained = Decision::allow(
        &display,
        format!("sandbox {id} is contained and not expired"),
    );
    let Some(old) = old else {
        return Done(contained);
    };
    if old.spec.mode == AgentMode::Governed {
        // Leaving the governed tier is a governance change too.
        return authorize(PROMOTE_VERB, AfterAuthorization::Answer(contained));
    }
    let was = sandbox_expires_at(created, old.spec.sandbox.as_ref(), expiry);
    let will = sandbox_expires_at(created, agent.spec.sandbox.as_ref(), expiry);
    if will > was {
        let mut extended = Decision::allow(
            &display,
            format!("sandbox {id} extended from {was} to {will}"),
        );
        extended.code = DecisionCode::AllowSandboxExtended;
        return authorize(EXTEND_VERB, AfterAuthorization::Answer(extended));
    }
    Done(contained)
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// The promotion policy's answer for a governed spec the requester may promote (CPU-bound).
pub fn judge_promotion(auth: &Authorization, spec: &AgentSpec, policy: &ActivePolicy) -> Decision {
    let (id, display) = (auth.id(), auth.display());
    let actor = Actor {
        username: auth.user.username.clone().unwrap_or_default(),
        groups: auth.user.groups.clone().unwrap_or_default(),
        roles: Vec::new(),
        authorized_to_promote: true,
    };
    let input = PolicyInput {
        agent: AgentInput {
            namespace: &auth.namespace,
            name: &auth.name,
            spec,
        },
        actor: &actor,
    };
    let hash = short(policy.hash());
    match policy.engine.evaluate(&input) {
        Err(e) => Decision::deny(
            DecisionCode::DenyPolicy,
            Some(display),
            format!("promotion policy {hash} could not judge {id}: {e}"),
        ),
        Ok(decision) if !decision.allow => Decision::deny(
            DecisionCode::DenyPolicy,
            Some(display),
            format!(
                "promotion policy {hash} denies {id}: {}",
                decision.denies.join("; ")
            ),
        ),
        Ok(decision) if decision.is_restricted() => Decision::allow(
            display,
            format!("promotion policy {hash} allows {id} with warnings (GOVERNED_RESTRICTED)"),
        )
        .with_warnings(
            decision
                .warnings
                .iter()
                .map(|w| format!("GOVERNED_RESTRICTED: {w}"))
                .collect(),
        ),
        Ok(_) => Decision::allow(display, format!("promotion policy {hash} allows {id}")),
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
    let auth = match plan_agent(req, view, expiry, now) {
        AgentPlan::Done(decision) => return decision,
        AgentPlan::Authorize(auth) => auth,
    };
    // A promotion needs the policy: without synced caches there is no answer to give, so the
    // SubjectAccessReview is not worth asking.
    let needs_policy = matches!(auth.then, AfterAuthorization::Policy(_));
    if needs_policy && !view.synced() {
        return Decision::deny(
            DecisionCode::DenyUnavailable,
            Some(auth.display()),
            "the webhook's caches have not synced yet; retry shortly",
        );
    }
    let authorized = authz
        .allowed(&auth.user, auth.verb, &auth.namespace, &auth.name)
        .await
        .map_err(|e| e.to_string());
    if let Some(refusal) = auth.refusal(authorized) {
        return refusal;
    }
    let spec = match auth.then {
        AfterAuthorization::Answer(ref decision) => return decision.clone(),
        AfterAuthorization::Policy(ref spec) => spec.clone(),
    };
    let Some(policy) = view.policy(&auth.namespace) else {
        return Decision::deny(
            DecisionCode::DenyPolicy,
            Some(auth.display()),
            format!(
                "no policy in force in namespace {}: its PolicyBundle is missing or has no version that compiles, so {} cannot be promoted",
                auth.namespace,
                auth.id()
            ),
        );
    };
    let Ok(_permit) = policy_slots.acquire().await else {
        return Decision::deny(
            DecisionCode::DenyUnavailable,
            Some(auth.display()),
            "the webhook is shutting down",
        );
    };
    let span = tracing::Span::current();
    let display = auth.display().to_string();
    tokio::task::spawn_blocking(move || span.in_scope(|| judge_promotion(&auth, &spec, &policy)))
        .await
        .unwrap_or_else(|e| {
            Decision::deny(
                DecisionCode::DenyUnavailable,
                Some(&display),
                format!("policy evaluation failed: {e}"),
            )
        })
}
