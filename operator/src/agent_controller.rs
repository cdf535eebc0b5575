//! The Agent controller: the one writer of Agent status and of AgentPromotion status. It judges
//! an agent on its own changes, on its approvals' changes, when the policy in force in its
//! namespace changes (a new version, or the bundle deleted), when the key ring or the admission
//! guards change, and every ten minutes. Level-triggered: each reconcile judges afresh.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agentgov_api::agent::AgentMode;
use agentgov_api::hash::spec_hash;
use agentgov_api::promotion::PromotionOutcome;
use agentgov_api::{Agent, AgentPromotion};
use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::{instrument, warn};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::judge::{AgentFacts, ApprovalFacts, Judge, Judgement};

/// A safety net: every agent is looked at again this often even when nothing changed (a role
/// revoked from an approver, for one).
const RESYNC: Duration = Duration::from_secs(600);

#[instrument(skip(agent, ctx), fields(agent = %agent.name_any(), namespace = agent.namespace().unwrap_or_default()))]
pub async fn reconcile(agent: Arc<Agent>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.timer("agent");
    if agent.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // Judging before the caches are known would deny for want of a policy or of approvals.
    ctx.bundles_synced.wait().await;
    ctx.promotions_synced.wait().await;
    let namespace = agent
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(agent.name_any()))?;
    let promotions = ctx.promotions_of(&namespace, &agent.name_any());
    let authorized = authorize(&ctx, &agent, &namespace, &promotions).await?;
    let now = Timestamp::now();
    let judgement = judge(&ctx, &agent, &promotions, &authorized, now)?;
    crate::status::apply(&ctx, &agent, &judgement).await?;
    crate::status::apply_promotions(&ctx, &namespace, &promotions, &judgement).await?;
    crate::status::prune_promotions(&ctx, &namespace, &promotions, &judgement).await;
    let next = next_look(&ctx, &promotions, &judgement, now);
    Ok(Action::requeue(next.min(RESYNC)))
}

/// Whether each approval's requester still holds `promote` on the agent (only for approvals of
/// the current spec of a governed agent: the others are not counted anyway).
async fn authorize(
    ctx: &Context,
    agent: &Agent,
    namespace: &str,
    promotions: &[Arc<AgentPromotion>],
) -> Result<HashMap<String, bool>> {
    let mut authorized = HashMap::new();
    if agent.spec.mode != AgentMode::Governed || promotions.is_empty() {
        return Ok(authorized);
    }
    let hash = spec_hash(&agent.spec)?;
    for p in promotions.iter().filter(|p| p.spec.spec_hash == hash) {
        let Some(requester) = p.spec.requested_by.as_ref() else {
            continue;
        };
        let allowed = ctx
            .approvers
            .may_promote(requester, namespace, &agent.name_any())
            .await?;
        authorized.insert(p.name_any(), allowed);
    }
    Ok(authorized)
}

/// Judge one agent against the caches, the key ring and the guards.
pub fn judge(
    ctx: &Context,
    agent: &Agent,
    promotions: &[Arc<AgentPromotion>],
    authorized: &HashMap<String, bool>,
    now: Timestamp,
) -> Result<Judgement> {
    let namespace = agent
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(agent.name_any()))?;
    let policy = ctx.active_policy(&namespace)?;
    let keys = ctx.keys.current();
    let guards = ctx.guards.missing();
    let name = agent.name_any();
    let uid = agent.metadata.uid.clone().unwrap_or_default();
    let facts = AgentFacts {
        namespace: &namespace,
        name: &name,
        uid: &uid,
        generation: agent.metadata.generation,
        created: agent
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(now, |t| t.0),
        spec: &agent.spec,
        status: agent.status.as_ref(),
    };
    let names: Vec<String> = promotions.iter().map(|p| p.name_any()).collect();
    let uids: Vec<String> = promotions
        .iter()
        .map(|p| p.metadata.uid.clone().unwrap_or_default())
        .collect();
    let approvals: Vec<ApprovalFacts<'_>> = promotions
        .iter()
        .zip(names.iter().zip(&uids))
        .map(|(p, (name, uid))| ApprovalFacts {
            name,
            uid,
            spec_hash: &p.spec.spec_hash,
            requester: p.spec.requested_by.as_ref(),
            created: p.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0),
            authorized: authorized.get(name).copied().unwrap_or(false),
            status: p.status.as_ref(),
        })
        .collect();
    Ok(Judge {
        policy: policy.as_ref(),
        bundle_name: &ctx.settings.bundle_name,
        keys: &keys,
        expiry: &ctx.settings.expiry,
        guards_missing: guards.as_deref(),
        approval_ttl: ctx.settings.approval_ttl,
        now,
    }
    .judge(&facts, &approvals))
}

/// When to look again: at a sandbox's expiry, at a pending approval's expiry, or at the resync.
fn next_look(
    ctx: &Context,
    promotions: &[Arc<AgentPromotion>],
    judgement: &Judgement,
    now: Timestamp,
) -> Duration {
    let mut next = judgement.requeue_after.unwrap_or(RESYNC);
    for p in promotions {
        let pending = judgement
            .promotions
            .get(&p.name_any())
            .and_then(|s| s.outcome)
            == Some(PromotionOutcome::Pending);
        let Some(created) = p.metadata.creation_timestamp.as_ref().map(|t| t.0) else {
            continue;
        };
        if pending
            && let Ok(at) = created.checked_add(ctx.settings.approval_ttl)
            && let Ok(wait) = Duration::try_from(now.duration_until(at))
        {
            next = next.min(wait + Duration::from_secs(1));
        }
    }
    next
}

/// Retry with growing backoff, per object, up to five minutes.
pub fn error_policy(agent: Arc<Agent>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(agent = %agent.name_any(), error = %error, "agent reconcile failed");
    ctx.metrics.reconcile_error("agent", error.category());
    Action::requeue(crate::backoff::next(&agent.uid().unwrap_or_default()))
}

#[cfg(test)]
#[path = "agent_controller_tests.rs"]
mod tests;
