//! Revalidation of every governed agent in a namespace after a policy change (the seed's
//! Revalidation Workflow): judge in parallel on blocking threads, write with bounded concurrency
//! and a client-side rate limit, and summarise (POLICY_REVALIDATION).

use std::sync::Arc;
use std::time::Instant;

use agentgov_api::Agent;
use agentgov_api::agent::{AgentMode, GovernanceStatus};
use agentgov_api::policy_bundle::RevalidationSummary;
use futures::{StreamExt, stream};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use tracing::{info, warn};

use crate::context::Context;
use crate::error::Result;
use crate::judge::Judgement;

pub async fn run(
    ctx: &Arc<Context>,
    namespace: &str,
    policy_hash: &str,
) -> Result<RevalidationSummary> {
    let started = Instant::now();
    ctx.agents_synced.wait().await;
    let agents: Vec<Arc<Agent>> = ctx.agents.state_filter(|a| {
        a.namespace().as_deref() == Some(namespace) && a.spec.mode == AgentMode::Governed
    });
    let now = Timestamp::now();
    // Policy evaluation is CPU work: spread it over the blocking pool, one chunk per core.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = agents.len().div_ceil(workers).max(1);
    let mut tasks = Vec::new();
    for part in agents.chunks(chunk) {
        let part: Vec<Arc<Agent>> = part.to_vec();
        let ctx = ctx.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            part.into_iter()
                .map(|agent| {
                    let judgement = crate::agent_controller::judge(&ctx, &agent, now);
                    (agent, judgement)
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut judged: Vec<(Arc<Agent>, Result<Judgement>)> = Vec::with_capacity(agents.len());
    for task in tasks {
        match task.await {
            Ok(part) => judged.extend(part),
            Err(e) => warn!(error = %e, "a revalidation worker failed"),
        }
    }
    let mut summary = RevalidationSummary {
        policy_hash: policy_hash.to_string(),
        ..Default::default()
    };
    summary.errors += i64::try_from(agents.len().saturating_sub(judged.len())).unwrap_or(i64::MAX);
    let results: Vec<Option<GovernanceStatus>> = stream::iter(judged)
        .map(|(agent, judgement)| {
            let ctx = ctx.clone();
            async move {
                let judgement = match judgement {
                    Ok(j) => j,
                    Err(e) => {
                        warn!(agent = %agent.name_any(), error = %e, "cannot revalidate agent");
                        return None;
                    }
                };
                match crate::status::apply(&ctx, &agent, &judgement).await {
                    Ok(_) => judgement.status.governance_status,
                    Err(e) => {
                        warn!(agent = %agent.name_any(), error = %e, "cannot write revalidated status");
                        None
                    }
                }
            }
        })
        .buffer_unordered(ctx.settings.write_concurrency)
        .collect()
        .await;
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
        agents = agents.len(),
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
