//! The AgentException controller: it writes each exception's own status (when it really ends,
//! by the operator's clock and the floor's longest exception; which agents it covers; `Ready`
//! while it is stamped and unexpired), and looks again when it ends. The agents it waives rules
//! for are judged by the Agent controller (their status says which exceptions applied).

use std::sync::Arc;
use std::time::Duration;

use agentgov_api::exception::{AgentException, observe};
use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{instrument, warn};

use crate::context::{Context, MANAGER};
use crate::error::{Error, Result};

/// How often an exception's list of covered agents is refreshed (agents come and go).
const RESYNC: Duration = Duration::from_secs(300);

#[instrument(skip(exception, ctx), fields(exception = %exception.name_any(), namespace = exception.namespace().unwrap_or_default()))]
pub async fn reconcile(exception: Arc<AgentException>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.timer("agentexception");
    if exception.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = exception
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(exception.name_any()))?;
    ctx.agents_synced.wait().await;
    ctx.floors_synced.wait().await;
    let now = Timestamp::now();
    let max = ctx.max_exception();
    let named = ctx.agents.named(&namespace);
    let status = observe(&exception, &named, now, max);
    if exception.status.as_ref() != Some(&status) {
        let api: Api<AgentException> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = json!({
            "apiVersion": "agentgov.dev/v1alpha1",
            "kind": "AgentException",
            "status": status,
        });
        api.patch_status(
            &exception.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    }
    // Look again when it ends (its Ready condition turns False), else at the resync.
    let next = exception
        .expiry(max)
        .and_then(|at| Duration::try_from(now.duration_until(at)).ok())
        .map_or(RESYNC, |wait| (wait + Duration::from_secs(1)).min(RESYNC));
    Ok(Action::requeue(next))
}

pub fn error_policy(exception: Arc<AgentException>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(exception = %exception.name_any(), error = %error, "agent exception reconcile failed");
    ctx.metrics
        .reconcile_error("agentexception", error.category());
    Action::requeue(crate::backoff::next(&exception.uid().unwrap_or_default()))
}
