//! The PolicyBundle controller: compile each new version (hot reload), keep the last good one in
//! force when a version fails, record history, then revalidate every governed agent under it.

use std::sync::Arc;

use agentgov_api::conditions::{self, ConditionUpdate, READY};
use agentgov_api::hash::policy_hash;
use agentgov_api::policy_bundle::{PolicyVersion, push_history};
use agentgov_api::{PolicyBundle, PolicyBundleStatus};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::{error, info, instrument, warn};

use crate::context::{Context, MANAGER};
use crate::error::{Error, Result};
use crate::status::{apply_bundle_status, publish, short};

#[instrument(skip(bundle, ctx), fields(bundle = %bundle.name_any(), namespace = bundle.namespace().unwrap_or_default()))]
pub async fn reconcile(bundle: Arc<PolicyBundle>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.timer("policybundle");
    if bundle.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = bundle
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(bundle.name_any()))?;
    let now = Timestamp::now();
    let previous = bundle.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    status.observed_generation = bundle.metadata.generation;

    if bundle.name_any() != ctx.settings.bundle_name {
        set_ready(
            &mut status,
            false,
            "NotInForce",
            format!(
                "only the PolicyBundle named {} is in force in a namespace",
                ctx.settings.bundle_name
            ),
            now,
        );
        if status != previous {
            apply_bundle_status(&ctx, &bundle, &status).await?;
        }
        return Ok(Action::await_change());
    }

    let hash = policy_hash(&bundle.spec)?;
    if previous.active_hash.as_deref() == Some(hash.as_str()) {
        set_ready(
            &mut status,
            true,
            "Active",
            format!("policy {} is in force", short(&hash)),
            now,
        );
        if let Ok(engine) = ctx.policies.compile(&bundle.spec) {
            ctx.set_in_force(&namespace, active(&bundle, engine))?;
        }
    } else {
        match ctx.policies.compile(&bundle.spec) {
            Ok(engine) => {
                ctx.set_in_force(&namespace, active(&bundle, engine))?;
                status.active_hash = Some(hash.clone());
                status.active_version = Some(bundle.spec.version.clone());
                status.active_spec = Some(bundle.spec.clone());
                push_history(
                    &mut status.history,
                    PolicyVersion {
                        hash: hash.clone(),
                        version: bundle.spec.version.clone(),
                        time: Time(now),
                        actor: last_actor(&bundle),
                        reason: match previous.active_hash.as_deref() {
                            None => "first version".into(),
                            Some(old) => format!("replaces {}", short(old)),
                        },
                    },
                );
                set_ready(
                    &mut status,
                    true,
                    "Active",
                    format!("policy {} is in force", short(&hash)),
                    now,
                );
                ctx.metrics.policy_reload_success.inc();
                info!(
                    code = "POLICY_HOTRELOAD",
                    bundle = %bundle.name_any(),
                    namespace = %namespace,
                    version = %bundle.spec.version,
                    policy_hash = %hash,
                    previous_hash = previous.active_hash.as_deref().unwrap_or(""),
                    "policy version compiled and put in force"
                );
                publish(
                    &ctx,
                    &bundle.object_ref(&()),
                    EventType::Normal,
                    "PolicyActivated",
                    format!(
                        "version {} ({}) is in force",
                        bundle.spec.version,
                        short(&hash)
                    ),
                )
                .await;
            }
            Err(e) => {
                let message = format!(
                    "version {} does not compile; {} stays in force: {e}",
                    bundle.spec.version,
                    previous
                        .active_hash
                        .as_deref()
                        .map_or("no earlier version", short)
                );
                // Count and report each failing version once, not on every resync.
                let already_reported =
                    conditions::find(&previous.conditions, READY).is_some_and(|c| {
                        c.reason == "CompileFailed"
                            && c.observed_generation == bundle.metadata.generation
                    });
                set_ready(&mut status, false, "CompileFailed", message.clone(), now);
                if !already_reported {
                    ctx.metrics.policy_reload_failure.inc();
                    error!(
                        code = "POLICY_HOTRELOAD",
                        bundle = %bundle.name_any(),
                        namespace = %namespace,
                        version = %bundle.spec.version,
                        error = %e,
                        "policy version rejected; the last good version stays in force"
                    );
                    publish(
                        &ctx,
                        &bundle.object_ref(&()),
                        EventType::Warning,
                        "CompileFailed",
                        message,
                    )
                    .await;
                }
            }
        }
    }
    if status != previous {
        apply_bundle_status(&ctx, &bundle, &status).await?;
    }

    // Level-triggered revalidation: until a summary for the hash in force exists, run one.
    // An operator restarted halfway through finds no summary and runs it again.
    if let Some(active) = status.active_hash.clone()
        && status
            .last_revalidation
            .as_ref()
            .map(|r| r.policy_hash.as_str())
            != Some(active.as_str())
        // The cache may not show our own summary yet; remember what this process finished.
        && !ctx.revalidated(&namespace, &active)
    {
        let summary = crate::revalidation::run(&ctx, &namespace, &active).await?;
        ctx.set_revalidated(&namespace, &active);
        status.last_revalidation = Some(summary.clone());
        apply_bundle_status(&ctx, &bundle, &status).await?;
        let note = format!(
            "revalidated against {}: {} valid, {} restricted, {} invalidated, {} denied, {} errors in {} ms",
            short(&active),
            summary.valid,
            summary.restricted,
            summary.invalidated,
            summary.denied,
            summary.errors,
            summary.duration_ms
        );
        publish(
            &ctx,
            &bundle.object_ref(&()),
            if summary.invalidated > 0 || summary.errors > 0 {
                EventType::Warning
            } else {
                EventType::Normal
            },
            "Revalidated",
            note,
        )
        .await;
    }
    Ok(Action::await_change())
}

fn active(
    bundle: &PolicyBundle,
    engine: agentgov_api::policy::PolicyEngine,
) -> crate::judge::ActivePolicy {
    crate::judge::ActivePolicy {
        name: bundle.name_any(),
        version: bundle.spec.version.clone(),
        engine,
    }
}

fn set_ready(
    status: &mut PolicyBundleStatus,
    ok: bool,
    reason: &str,
    message: String,
    now: Timestamp,
) {
    let generation = status.observed_generation;
    conditions::upsert(
        &mut status.conditions,
        ConditionUpdate {
            type_: READY,
            status: ok,
            reason,
            message,
        },
        generation,
        now,
    );
}

/// Who last changed the bundle's spec, where the API server recorded it (its field manager).
fn last_actor(bundle: &PolicyBundle) -> Option<String> {
    bundle
        .metadata
        .managed_fields
        .as_ref()?
        .iter()
        .filter(|f| f.manager.as_deref() != Some(MANAGER) && f.subresource.is_none())
        .max_by_key(|f| f.time.as_ref().map(|t| t.0))
        .and_then(|f| f.manager.clone())
}

pub fn error_policy(
    bundle: Arc<PolicyBundle>,
    error: &Error,
    ctx: Arc<Context>,
) -> kube::runtime::controller::Action {
    warn!(bundle = %bundle.name_any(), error = %error, "policy bundle reconcile failed");
    ctx.metrics
        .reconcile_error("policybundle", error.category());
    Action::requeue(crate::backoff::next(&bundle.uid().unwrap_or_default()))
}
