//! Agent CREATE/UPDATE reviews, in the order a request meets them:
//! 1. what agentgov does not govern passes (DELETE, subresources, metadata-only updates);
//! 2. an agent being deleted keeps its spec (the one its proof covers);
//! 3. a sandbox: containment and expiry; an expiry moved later needs the verb `extend`;
//! 4. a governed agent (a promotion request): the promotion policy in force judges the spec at
//!    once, so `kubectl apply` of a spec the policy denies fails with the reasons. Approval is
//!    not asked here: an AgentPromotion by someone holding `promote` approves a spec (its hash),
//!    and the operator signs only under approvals (see `promotion.rs`).
//!
//! [`decide_agent`] reads them top to bottom; only the SubjectAccessReview (an extension) and
//! the policy evaluation (a governed spec) wait.

use agentgov_api::Agent;
use agentgov_api::admission::{AdmissionContext, AgentView, DecisionCode, Denial, check_agent};
use agentgov_api::agent::{AgentMode, AgentSpec};
use agentgov_api::exception::{AppliedException, waive};
use agentgov_api::expiry::{ExpiryPolicy, sandbox_expires_at};
use agentgov_api::hash::spec_hash;
use agentgov_api::policy::{Actor, AgentInput, PolicyInput};
use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::UserInfo;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};
use tokio::sync::Semaphore;

use super::{Decision, View, expect_kind, namespace_of};
use crate::authz::{Authorizer, EXTEND_VERB};
use crate::policy::ActivePolicy;

/// The deny code of the policy's actor rule: approvers are judged when they approve, not here.
const ACTOR_CODE: &str = "actor_unauthorized";

/// A governed spec or a sandbox's longer life, and who asks: what the policy or the
/// SubjectAccessReview is asked about.
#[derive(Debug)]
struct Request {
    namespace: String,
    /// Empty for a CREATE with `generateName`.
    name: String,
    spec: AgentSpec,
    user: UserInfo,
    /// The agent's labels (an AgentException may select it by them).
    labels: std::collections::BTreeMap<String, String>,
    /// The AgentExceptions in force for the agent (their waived denies do not refuse it).
    exceptions: Vec<AppliedException>,
}

impl Request {
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
}

/// An Agent CREATE/UPDATE that agentgov governs (a spec that changes, on an agent not being
/// deleted), read from the request.
struct Change<'r> {
    req: &'r AdmissionRequest<DynamicObject>,
    namespace: &'r str,
    /// Empty for a CREATE with `generateName`.
    name: String,
    /// The name in messages: `generateName*` when there is no name yet.
    display: String,
    agent: Agent,
    /// On UPDATE, the agent as it was (`None` if its oldObject does not parse).
    old: Option<Agent>,
}

impl<'r> Change<'r> {
    /// The change, or the decision for a request that is not one: what agentgov does not govern
    /// passes, a malformed request is a bad request, an agent being deleted keeps its spec.
    fn read(req: &'r AdmissionRequest<DynamicObject>) -> Result<Self, Decision> {
        if req.operation == Operation::Delete {
            return Err(Decision::pass("DELETE is never denied"));
        }
        if let Some(sub) = req.sub_resource.as_deref().filter(|s| !s.is_empty()) {
            return Err(Decision::pass(format!(
                "the {sub} subresource is not governed"
            )));
        }
        expect_kind::<Agent>(&req.kind)?;
        if !matches!(req.operation, Operation::Create | Operation::Update) {
            return Err(Decision::pass(
                "only CREATE and UPDATE of Agents are governed",
            ));
        }
        let Some(object) = req.object.as_ref() else {
            return Err(Decision::bad_request("the AdmissionReview has no object"));
        };
        let Some(namespace) = namespace_of(req) else {
            return Err(Decision::bad_request("the request has no namespace"));
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
        let agent: Agent = object.clone().try_parse().map_err(|e| {
            Decision::deny(
                DecisionCode::DenyBadRequest,
                Some(&display),
                format!("agent {namespace}/{display} does not parse: {e}"),
            )
        })?;
        // On UPDATE, an oldObject that does not parse counts as a changed spec (fail closed).
        let old: Option<Agent> = match (&req.operation, req.old_object.as_ref()) {
            (Operation::Update, Some(old)) => old.clone().try_parse::<Agent>().ok(),
            _ => None,
        };
        let change = Change {
            req,
            namespace,
            name,
            display,
            agent,
            old,
        };
        let spec_unchanged = change
            .old
            .as_ref()
            .is_some_and(|o| o.spec == change.agent.spec);
        let deleting = change.agent.metadata.deletion_timestamp.is_some()
            || change
                .old
                .as_ref()
                .is_some_and(|o| o.metadata.deletion_timestamp.is_some());
        if deleting {
            return Err(if spec_unchanged {
                Decision::pass("the agent is being deleted; its spec is unchanged")
            } else {
                Decision::deny(
                    DecisionCode::DenyAgentDeleting,
                    Some(&change.display),
                    format!(
                        "agent {} is being deleted: its spec may not change (only finalizers and the metadata its deletion needs), so it keeps the spec its proof covers",
                        change.id()
                    ),
                )
            });
        }
        if spec_unchanged {
            return Err(Decision::pass("metadata-only change"));
        }
        Ok(change)
    }

    fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.display)
    }

    /// What the policy or the SubjectAccessReview is asked about.
    fn into_request(self) -> Request {
        Request {
            namespace: self.namespace.to_string(),
            name: self.name,
            labels: self.agent.metadata.labels.unwrap_or_default(),
            spec: self.agent.spec,
            user: self.req.user_info.clone(),
            exceptions: Vec::new(),
        }
    }
}

/// An Agent CREATE/UPDATE: a governed spec is judged by the policy in force (on the blocking
/// pool, at most `policy_slots` at once); a sandbox by checks 6 and 7, and an expiry moved
/// later by the SubjectAccessReview for `extend`.
pub(crate) async fn decide_agent(
    req: &AdmissionRequest<DynamicObject>,
    view: &dyn View,
    authz: &dyn Authorizer,
    expiry: &ExpiryPolicy,
    now: Timestamp,
    policy_slots: &Semaphore,
) -> Decision {
    let change = match Change::read(req) {
        Ok(change) => change,
        Err(decision) => return decision,
    };
    if change.agent.spec.mode == AgentMode::Governed {
        return governed(change.into_request(), view, policy_slots).await;
    }
    // A sandbox. Expiry runs from the API server's creationTimestamp (on CREATE: now), by our
    // clock, never from the object's own claim.
    let created = match req.operation {
        Operation::Create => now,
        _ => change
            .old
            .as_ref()
            .and_then(|o| o.metadata.creation_timestamp.as_ref())
            .or(change.agent.metadata.creation_timestamp.as_ref())
            .map_or(now, |t| t.0),
    };
    if let Err(denial) = sandbox_checks(&change, view, created, now, expiry) {
        return Decision::from_denial(&change.display, denial);
    }
    let id = change.id();
    let will = sandbox_expires_at(created, change.agent.spec.sandbox.as_ref(), expiry);
    let extended = if req.operation != Operation::Update {
        None
    } else if let Some(old) = change
        .old
        .as_ref()
        .filter(|o| o.spec.mode == AgentMode::Sandbox)
    {
        let was = sandbox_expires_at(created, old.spec.sandbox.as_ref(), expiry);
        (will > was).then(|| format!("sandbox {id} extended from {was} to {will}"))
    } else if change.old.is_some() {
        // Back from governed: the old spec holds no sandbox life to compare with (its
        // `sandbox` block was free to edit while governed), so any life it gets is granted.
        // Otherwise sandbox -> governed -> sandbox would revive an expired sandbox.
        Some(format!(
            "sandbox {id} returned from governed, alive until {will}"
        ))
    } else {
        // An UPDATE whose oldObject does not parse: nothing to compare with, so the life it
        // has is granted as an extension (fail closed), as coming back from governed is.
        Some(format!(
            "sandbox {id} updated from an object that does not parse, alive until {will}"
        ))
    };
    match extended {
        None => contained(&change.display, &id),
        Some(reason) => {
            let mut answer = Decision::allow(&change.display, reason);
            answer.code = DecisionCode::AllowSandboxExtended;
            extend(change.into_request(), answer, authz).await
        }
    }
}

/// Checks 6 and 7 (expiry, containment): the sandbox branch of the seven checks, which reads
/// the spec, the creation time and the clock (the key ring is the one in force, though no
/// sandbox check reads it).
fn sandbox_checks(
    change: &Change<'_>,
    view: &dyn View,
    created: Timestamp,
    now: Timestamp,
    expiry: &ExpiryPolicy,
) -> Result<(), Denial> {
    let keys = view.keys();
    let sandbox = AgentView {
        namespace: change.namespace,
        name: &change.display,
        uid: change.agent.metadata.uid.as_deref().unwrap_or_default(),
        spec: &change.agent.spec,
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
    check_agent(&sandbox, &ctx)
}

fn contained(display: &str, id: &str) -> Decision {
    Decision::allow(
        display,
        format!("sandbox {id} is contained and not expired"),
    )
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// The policy in force on a governed spec, with the requester as the actor: every rule but the
/// actor rule (approvers are judged when they approve). A refusal is a promotion attempt.
fn judge_spec(request: &Request, policy: &ActivePolicy) -> Decision {
    let (id, display) = (request.id(), request.display());
    let actor = Actor {
        username: request.user.username.clone().unwrap_or_default(),
        groups: request.user.groups.clone().unwrap_or_default(),
        roles: Vec::new(),
        authorized_to_promote: true,
    };
    let input = PolicyInput {
        agent: AgentInput {
            namespace: &request.namespace,
            name: &request.name,
            spec: &request.spec,
        },
        actor: &actor,
        namespace: None,
    };
    let hash = short(policy.hash());
    let approve = match spec_hash(&request.spec) {
        Ok(h) => format!(
            "an AgentPromotion approving spec hash {h} (by someone holding the verb 'promote') promotes it"
        ),
        Err(e) => format!("its spec cannot be hashed: {e}"),
    };
    match policy
        .evaluate(&input)
        .map(|d| waive(d, &request.exceptions).0)
    {
        Err(e) => Decision::deny(
            DecisionCode::DenyPolicy,
            Some(display),
            format!("promotion policy {hash} could not judge {id}: {e}"),
        )
        .attempt(vec!["policy_error".into()]),
        Ok(decision) => {
            let denies: Vec<_> = decision
                .denies
                .iter()
                .filter(|d| d.code != ACTOR_CODE)
                .collect();
            if !denies.is_empty() {
                return Decision::deny(
                    DecisionCode::DenyPolicy,
                    Some(display),
                    format!(
                        "promotion policy {hash} denies {id}: {}",
                        denies
                            .iter()
                            .map(|d| d.message.as_str())
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                )
                .attempt(denies.iter().map(|d| d.code.clone()).collect());
            }
            let mut warnings: Vec<String> = decision
                .warnings
                .iter()
                .map(|w| format!("GOVERNED_RESTRICTED when approved: {w}"))
                .collect();
            warnings.push(approve);
            Decision::allow(
                display,
                format!("promotion policy {hash} allows the spec of {id}; it waits for approval"),
            )
            .with_warnings(warnings)
        }
    }
}

/// A sandbox's expiry moved later: `answer` if the requester holds `extend` on it.
async fn extend(request: Request, answer: Decision, authz: &dyn Authorizer) -> Decision {
    let requester = request
        .user
        .username
        .as_deref()
        .unwrap_or("an unknown user");
    let id = request.id();
    match authz
        .allowed(
            &request.user,
            EXTEND_VERB,
            &request.namespace,
            &request.name,
        )
        .await
    {
        Ok(true) => answer,
        Ok(false) => Decision::deny(
            DecisionCode::DenySandboxExtension,
            Some(request.display()),
            format!(
                "{requester} may not move the expiry of sandbox {id} later: a sandbox's life is fixed when it is created. Promote it (mode: governed) or recreate it; an exception needs the verb '{EXTEND_VERB}' on agents.agentgov.dev in namespace {} (ClusterRole agentgov-sandbox-extender)",
                request.namespace
            ),
        ),
        Err(e) => Decision::deny(
            DecisionCode::DenyUnavailable,
            Some(request.display()),
            format!("cannot check whether {requester} may {EXTEND_VERB} {id}: {e}"),
        ),
    }
}

async fn governed(request: Request, view: &dyn View, policy_slots: &Semaphore) -> Decision {
    if !view.synced() {
        return Decision::deny(
            DecisionCode::DenyUnavailable,
            Some(request.display()),
            "the webhook's caches have not synced yet; retry shortly",
        );
    }
    let Some(policy) = view.policy(&request.namespace) else {
        return Decision::deny(
            DecisionCode::DenyPolicy,
            Some(request.display()),
            format!(
                "no policy in force in namespace {}: its PolicyBundle is missing or has no version that compiles, so {} cannot be promoted",
                request.namespace,
                request.id()
            ),
        )
        .attempt(vec!["no_policy".into()]);
    };
    let mut request = request;
    request.exceptions = view.exceptions_for(&request.namespace, &request.name, &request.labels);
    on_blocking_pool(policy_slots, request.display().to_string(), move || {
        judge_spec(&request, &policy)
    })
    .await
}

/// Run a policy evaluation on the blocking pool, at most `slots` at once, in the caller's span.
pub(super) async fn on_blocking_pool(
    slots: &Semaphore,
    agent: String,
    judge: impl FnOnce() -> Decision + Send + 'static,
) -> Decision {
    let Ok(_permit) = slots.acquire().await else {
        return Decision::deny(
            DecisionCode::DenyUnavailable,
            Some(&agent),
            "the webhook is shutting down",
        );
    };
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(judge))
        .await
        .unwrap_or_else(|e| {
            Decision::deny(
                DecisionCode::DenyUnavailable,
                Some(&agent),
                format!("policy evaluation failed: {e}"),
            )
        })
}
