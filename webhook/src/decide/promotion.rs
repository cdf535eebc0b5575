//! AgentPromotion CREATE reviews: fast answers at `kubectl apply` for an approval. The API
//! server's own admission already stamps and checks who asks and that they hold `promote` (the
//! agentgov guards); this adds what needs the caches and the policy: the agent exists and is a
//! governed request, the approved hash is its current spec's, and the policy in force allows it
//! with this approver as the actor. A refusal by the policy is a promotion attempt, counted.
//! Everything else (UPDATE, which the guards refuse anyway for the spec, and subresources)
//! passes: the operator judges approvals again, whatever admission said.

use agentgov_api::AgentPromotion;
use agentgov_api::admission::DecisionCode;
use agentgov_api::agent::AgentMode;
use agentgov_api::hash::spec_hash;
use agentgov_api::policy::{Actor, AgentInput, PolicyInput};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};
use tokio::sync::Semaphore;

use super::agent::on_blocking_pool;
use super::{Decision, View, expect_kind, namespace_of};
use crate::authz::{Authorizer, PROMOTE_VERB};

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// An AgentPromotion CREATE.
pub(crate) async fn decide_promotion(
    req: &AdmissionRequest<DynamicObject>,
    view: &dyn View,
    authz: &dyn Authorizer,
    policy_slots: &Semaphore,
) -> Decision {
    if req.operation != Operation::Create
        || req.sub_resource.as_deref().is_some_and(|s| !s.is_empty())
    {
        return Decision::pass("only the CREATE of an AgentPromotion is reviewed");
    }
    if let Err(bad) = expect_kind::<AgentPromotion>(&req.kind) {
        return bad;
    }
    let Some(object) = req.object.as_ref() else {
        return Decision::bad_request("the AdmissionReview has no object");
    };
    let Some(namespace) = namespace_of(req).map(str::to_string) else {
        return Decision::bad_request("the request has no namespace");
    };
    let promotion: AgentPromotion = match object.clone().try_parse() {
        Ok(p) => p,
        Err(e) => {
            return Decision::bad_request(format!("the AgentPromotion does not parse: {e}"));
        }
    };
    let agent_name = promotion.spec.agent.clone();
    let id = format!("{namespace}/{agent_name}");
    let requester = req.user_info.username.clone().unwrap_or_default();
    if !view.synced() {
        return Decision::deny(
            DecisionCode::DenyUnavailable,
            Some(&agent_name),
            "the webhook's caches have not synced yet; retry shortly",
        );
    }
    // Who asks first: someone without `promote` learns nothing about the agent or its spec.
    match authz
        .allowed(&req.user_info, PROMOTE_VERB, &namespace, &agent_name)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return Decision::deny(
                DecisionCode::DenyUnauthorized,
                Some(&agent_name),
                format!(
                    "{requester} may not approve agent {id}: that needs the verb '{PROMOTE_VERB}' on agents.agentgov.dev (granted by the ClusterRoles agentgov-agent-admin and agentgov-policy-admin)"
                ),
            )
            .attempt(vec!["actor_unauthorized".into()]);
        }
        Err(e) => {
            return Decision::deny(
                DecisionCode::DenyUnavailable,
                Some(&agent_name),
                format!("cannot check whether {requester} may approve {id}: {e}"),
            );
        }
    }
    let Some(agent) = view.agent(&namespace, &agent_name) else {
        return Decision::deny(
            DecisionCode::DenyAgentNotFound,
            Some(&agent_name),
            format!("agent {id} does not exist: an AgentPromotion approves an existing agent"),
        )
        .attempt(vec!["other".into()]);
    };
    if agent.metadata.deletion_timestamp.is_some() {
        return Decision::deny(
            DecisionCode::DenyAgentDeleting,
            Some(&agent_name),
            format!("agent {id} is being deleted: there is nothing left to approve"),
        )
        .attempt(vec!["other".into()]);
    }
    if agent.spec.mode != AgentMode::Governed {
        return Decision::deny(
            DecisionCode::DenyPolicy,
            Some(&agent_name),
            format!(
                "agent {id} is a sandbox: set its spec.mode to governed (a promotion request) before approving it"
            ),
        )
        .attempt(vec!["other".into()]);
    }
    let current = match spec_hash(&agent.spec) {
        Ok(h) => h,
        Err(e) => {
            return Decision::deny(
                DecisionCode::DenyUnavailable,
                Some(&agent_name),
                format!("cannot hash the spec of {id}: {e}"),
            );
        }
    };
    if promotion.spec.spec_hash != current {
        return Decision::deny(
            DecisionCode::DenySpecHashMismatch,
            Some(&agent_name),
            format!(
                "this approves spec hash {} but agent {id}'s spec hashes to {current}: approve the spec as it is now (status.approval.specHash)",
                short(&promotion.spec.spec_hash)
            ),
        )
        .attempt(vec!["other".into()]);
    }
    let Some(policy) = view.policy(&namespace) else {
        return Decision::deny(
            DecisionCode::DenyPolicy,
            Some(&agent_name),
            format!(
                "no policy in force in namespace {namespace}: its PolicyBundle is missing or has no version that compiles"
            ),
        )
        .attempt(vec!["no_policy".into()]);
    };
    let user = req.user_info.clone();
    let spec = agent.spec.clone();
    on_blocking_pool(policy_slots, agent_name.clone(), move || {
        let actor = Actor {
            username: user.username.clone().unwrap_or_default(),
            groups: user.groups.clone().unwrap_or_default(),
            roles: Vec::new(),
            authorized_to_promote: true,
        };
        let input = PolicyInput {
            agent: AgentInput {
                namespace: &namespace,
                name: &agent_name,
                spec: &spec,
            },
            actor: &actor,
        };
        let hash = short(policy.hash());
        match policy.engine.evaluate(&input) {
            Err(e) => Decision::deny(
                DecisionCode::DenyPolicy,
                Some(&agent_name),
                format!("promotion policy {hash} could not judge {id}: {e}"),
            )
            .attempt(vec!["policy_error".into()]),
            Ok(d) if !d.allow => Decision::deny(
                DecisionCode::DenyPolicy,
                Some(&agent_name),
                format!(
                    "promotion policy {hash} denies {requester}'s approval of {id}: {}",
                    d.messages().join("; ")
                ),
            )
            .attempt(d.denies.iter().map(|x| x.code.clone()).collect()),
            Ok(d) => Decision::allow(
                &agent_name,
                format!(
                    "{requester} approves {id} (spec hash {}); policy {hash} allows it",
                    short(&current)
                ),
            )
            .with_warnings(
                d.warnings
                    .iter()
                    .map(|w| format!("GOVERNED_RESTRICTED: {w}"))
                    .collect(),
            ),
        }
    })
    .await
}
