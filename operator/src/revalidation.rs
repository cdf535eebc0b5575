//! Revalidation of every governed agent in a namespace after a policy change (the seed's
//! Revalidation Workflow): judge each agent as it comes up (so an agent the Agent controller has
//! just signed is kept, not signed twice), many at once across the runtime's threads, write with
//! bounded concurrency under the client-side rate limit, and summarise (POLICY_REVALIDATION).

use std::sync::Arc;
use std::time::Instant;

use agentgov_api::Agent;
use agentgov_api::agent::{AgentMode, GovernanceStatus};
use agentgov_api::policy_bundle::RevalidationSummary;
use futures::{StreamExt, stream};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use tracing::{info, warn};

use crate::context::Context;
use crate::error::Result;

pub async fn run(
    ctx: &Arc<Context>,
    namespace: &str,
    policy_hash: &str,
) -> Result<RevalidationSummary> {
    let started = Instant::now();
    ctx.agents_synced.wait().await;
    let keys: Vec<ObjectRef<Agent>> = ctx
        .agents
        .state_filter(|a| {
            a.namespace().as_deref() == Some(namespace) && a.spec.mode == AgentMode::Governed
        })
        .iter()
        .map(|a| ObjectRef::from_obj(a.as_ref()))
        .collect();
    let total = keys.len();
    let results: Vec<Option<GovernanceStatus>> = stream::iter(keys)
        .map(|key| {
            let ctx = ctx.clone();
            async move {
                // The freshest copy: the Agent controller may have judged it meanwhile.
                let agent = ctx.agents.get(&key)?;
                let judgement = match crate::agent_controller::judge(&ctx, &agent, Timestamp::now())
                {
                    Ok(j) => j,
                    Err(e) => {
                        warn!(agent = %key.name, error = %e, "cannot revalidate agent");
                        return None;
                    }
                };
                match crate::status::apply(&ctx, &agent, &judgement).await {
                    Ok(_) => judgement.status.governance_status,
                    Err(e) => {
                        warn!(agent = %key.name, error = %e, "cannot write revalidated status");
                        None
                    }
                }
            }
        })
        .buffer_unordered(ctx.settings.write_concurrency)
        .collect()
        .await;
    let mut summary = RevalidationSummary {
        policy_hash: policy_hash.to_string(),
        ..Default::default()
    };
    for result in results {
        match result {
            Some(GovernanceStatus::GovernedValid) => summary.valid += 1,
            Some(GovernanceStatus::GovernedRestricted) => summary.restricted += 1,
            Some(GovernanceStatus::GovernedInvalidated) => summary.invalidated += 1,
            // A first promotion request that is still denied stays in the sandbox tier.
            Some(GovernanceStatus::Sandbox) => summary.denied += 1,
            None => summary.errors += 1,
        }
    }
    let elapsed = started.elapsed();
    summary.duration_ms = i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX);
    summary.finished_at = Some(Time(Timestamp::now()));
    ctx.metrics
        .revalidation_duration
        .observe(elapsed.as_secs_f64());
    info!(
        code = "POLICY_REVALIDATION",
        namespace = %namespace,
        policy_hash = %policy_hash,
        agents = total,
        valid = summary.valid,
        restricted = summary.restricted,
        invalidated = summary.invalidated,
        denied = summary.denied,
        errors = summary.errors,
        duration_ms = summary.duration_ms,
        "governed agents revalidated"
    );
    Ok(summary)
}
