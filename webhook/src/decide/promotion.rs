//! AgentPromotion CREATE reviews: fast answers at `kubectl apply` for an approval. The API
//! server's own admission already stamps and checks who asks and that they hold `promote` (the
//! agentgov guards); this adds what needs the caches and the policy: the agent exists and is a
//! governed request, the approved hash is its current spec's, and the policy in force allows it
//! with this approver as the actor. A refusal by the policy is a promotion attempt, counted.
//! Everything else (UPDATE, which the guards refuse anyway for the spec, and subresources)
//! passes: the operator judges approvals again, whatever admission said.

use std::sync::Arc;

use agentgov_api::admission::DecisionCode;
use agentgov_api::agent::AgentMode;
use agentgov_api::exception::waive;
use agentgov_api::hash::spec_hash;
use agentgov_api::policy::{Actor, AgentInput, PolicyInput};
use agentgov_api::{Agent, AgentPromotion};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};
use tokio::sync::Semaphore;
use tokio::time::{Duration, Instant};

use super::agent::on_blocking_pool;
use super::{Decision, View, expect_kind, namespace_of};
use crate::authz::{Authorizer, PROMOTE_VERB};

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// How long a promotion waits for the agent cache to show the agent it approves.
const CATCH_UP: Duration = Duration::from_secs(1);
const CATCH_UP_STEP: Duration = Duration::from_millis(20);

/// The agent as the cache holds it, waiting up to [`CATCH_UP`] while it is missing or its spec
/// does not hash to `approved`: an agent and its approval applied together (`kubectl apply -f`
/// of both, a GitOps sync) reach the webhook before the agent's watch event does, and the
/// approval must not be refused for the cache's lag. A truly missing or changed agent is
/// answered after the wait, as before.
async fn agent_caught_up(
    view: &dyn View,
    namespace: &str,
    name: &str,
    approved: &str,
) -> Option<Arc<Agent>> {
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let agent = view.agent(namespace, name);
        let current = agent
            .as_ref()
            .is_some_and(|a| spec_hash(&a.spec).is_ok_and(|h| h == approved));
        if current || Instant::now() >= deadline {
            return agent;
        }
        tokio::time::sleep(CATCH_UP_STEP).await;
    }
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
    let Some(agent) =
        agent_caught_up(view, &namespace, &agent_name, &promotion.spec.spec_hash).await
    else {
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
    let no_labels = std::collections::BTreeMap::new();
    let exceptions = view.exceptions_for(
        &namespace,
        &agent_name,
        agent.metadata.labels.as_ref().unwrap_or(&no_labels),
    );
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
            namespace: None,
        };
        let hash = short(policy.hash());
        // The denies an AgentException in force waives for the agent do not refuse it (as the
        // operator judges).
        match policy.evaluate(&input).map(|d| waive(d, &exceptions).0) {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use agentgov_api::keyring::{KeyRing, KeyRingConfig};
    use agentgov_api::testing::governed_spec;

    use super::*;
    use crate::keys::KeySnapshot;
    use crate::policy::PolicyIndex;
    use crate::testing::StaticView;

    /// A cache that shows the agent only from its `shows_after`-th look on.
    struct Lagging {
        inner: StaticView,
        looks: AtomicUsize,
        shows_after: usize,
    }

    impl View for Lagging {
        fn synced(&self) -> bool {
            true
        }
        fn agent(&self, namespace: &str, name: &str) -> Option<Arc<Agent>> {
            let look = self.looks.fetch_add(1, Ordering::Relaxed);
            (look >= self.shows_after)
                .then(|| self.inner.agent(namespace, name))
                .flatten()
        }
        fn policies(&self) -> &PolicyIndex {
            self.inner.policies()
        }
        fn keys(&self) -> Arc<KeySnapshot> {
            self.inner.keys()
        }
    }

    fn lagging(shows_after: usize) -> Lagging {
        let mut inner = StaticView::new(KeyRing::from_config(&KeyRingConfig::default()).unwrap());
        let mut agent = Agent::new("auditor", governed_spec());
        agent.metadata.namespace = Some("team-a".into());
        inner.add_agent(agent);
        Lagging {
            inner,
            looks: AtomicUsize::new(0),
            shows_after,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_agent_the_cache_shows_late_is_found() {
        let view = lagging(5);
        let approved = spec_hash(&governed_spec()).unwrap();
        let started = Instant::now();
        let found = agent_caught_up(&view, "team-a", "auditor", &approved).await;
        assert!(found.is_some());
        assert_eq!(started.elapsed(), CATCH_UP_STEP * 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_agent_is_answered_after_the_wait() {
        let view = lagging(0);
        let approved = spec_hash(&governed_spec()).unwrap();
        let started = Instant::now();
        assert!(
            agent_caught_up(&view, "team-a", "nobody", &approved)
                .await
                .is_none()
        );
        assert!(started.elapsed() >= CATCH_UP, "{:?}", started.elapsed());
        assert!(started.elapsed() < CATCH_UP + CATCH_UP_STEP * 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_agent_whose_spec_is_not_the_approved_one_is_returned_after_the_wait() {
        let view = lagging(0);
        let started = Instant::now();
        let found = agent_caught_up(&view, "team-a", "auditor", &"ab".repeat(32)).await;
        assert!(
            found.is_some(),
            "the agent as it is, for the hash mismatch answer"
        );
        assert!(started.elapsed() >= CATCH_UP);
    }
}
