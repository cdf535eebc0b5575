//! The Agent controller: sandbox status and expiry, promotion requests, re-signing after a
//! spec change or a key revocation. Level-triggered: each reconcile judges the agent afresh.

use std::sync::Arc;
use std::time::Duration;

use agentgov_api::Agent;
use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::{instrument, warn};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::judge::{AgentFacts, Judge};

/// A safety net: every agent is looked at again this often even when nothing changed
/// (for example, a PolicyBundle was deleted).
const RESYNC: Duration = Duration::from_secs(600);

/// How soon a governed agent refused for want of a policy is judged again.
const NO_POLICY_RETRY: Duration = Duration::from_secs(10);

#[instrument(skip(agent, ctx), fields(agent = %agent.name_any(), namespace = agent.namespace().unwrap_or_default()))]
pub async fn reconcile(agent: Arc<Agent>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.timer("agent");
    if agent.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // Judging a governed agent before the bundles are known would deny it for want of a policy.
    ctx.bundles_synced.wait().await;
    let judgement = judge(&ctx, &agent, Timestamp::now())?;
    crate::status::apply(&ctx, &agent, &judgement).await?;
    // A policy put in force while this agent was being judged may have been revalidated before
    // this write landed; look again so a stale judgement never stands.
    if agent.spec.mode == agentgov_api::agent::AgentMode::Governed
        && judgement.outcome != crate::judge::Outcome::SigningUnavailable
    {
        let namespace = agent.namespace().unwrap_or_default();
        let in_force = ctx.active_policy(&namespace)?;
        let judged = judgement.status.policy.as_ref().map(|p| p.hash.as_str());
        if in_force.as_ref().map(|p| p.hash()) != judged {
            return Ok(Action::requeue(Duration::from_millis(200)));
        }
        // Refused for want of a policy: this controller does not watch bundles, so look again
        // soon rather than at the next resync (the bundle may be compiling right now).
        if judged.is_none() {
            return Ok(Action::requeue(NO_POLICY_RETRY));
        }
    }
    Ok(match judgement.requeue_after {
        Some(after) => Action::requeue(after.min(RESYNC)),
        None => Action::requeue(RESYNC),
    })
}

/// Judge one agent against the current caches and key ring.
pub fn judge(ctx: &Context, agent: &Agent, now: Timestamp) -> Result<crate::judge::Judgement> {
    let namespace = agent
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(agent.name_any()))?;
    let policy = ctx.active_policy(&namespace)?;
    let keys = ctx.keys.current();
    let name = agent.name_any();
    let facts = AgentFacts {
        namespace: &namespace,
        name: &name,
        generation: agent.metadata.generation,
        created: agent
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(now, |t| t.0),
        spec: &agent.spec,
        status: agent.status.as_ref(),
    };
    Ok(Judge {
        policy: policy.as_ref(),
        bundle_name: &ctx.settings.bundle_name,
        keys: &keys,
        actor: &ctx.settings.actor,
        expiry: &ctx.settings.expiry,
        now,
    }
    .judge(&facts))
}

/// Retry with growing backoff, per object, up to five minutes.
pub fn error_policy(agent: Arc<Agent>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(agent = %agent.name_any(), error = %error, "agent reconcile failed");
    ctx.metrics.reconcile_error("agent", error.category());
    Action::requeue(crate::backoff::next(&agent.uid().unwrap_or_default()))
}
