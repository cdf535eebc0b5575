//! The PolicyBundle controller: compile each new version (hot reload), keep the last good one in
//! force when a version fails, record history (who changed it: the `agentgov.dev/changed-by`
//! annotation the API server's own admission stamps and checks), and summarize the revalidation
//! once every governed agent has been judged under the new version. With
//! `--require-signed-bundles` a version goes in force only when its signature verifies with the
//! policy-signing key ring; an unsigned or badly signed one is reported and changes nothing. It writes only the bundle's
//! status: the Agent controller re-judges the agents (it alone writes their status).

use std::sync::Arc;
use std::time::Duration;

use agentgov_api::guards::{CHANGED_BY, UNKNOWN_ACTOR};

use agentgov_api::bundle_signature::verify_bundle;
use agentgov_api::conditions::{self, ConditionUpdate, READY};
use agentgov_api::effective::effective_hash;
use agentgov_api::hash::policy_hash;
use agentgov_api::policy_bundle::{BundleObject, PolicyVersion, push_history};
use agentgov_api::{ClusterPolicyBundle, PolicyBundle, PolicyBundleStatus};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::{error, info, instrument, warn};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::status::{apply_bundle_status, publish, short};

/// A bundle of either scope: a namespace's `PolicyBundle` or the cluster floor
/// (`ClusterPolicyBundle`), reconciled alike.
pub trait Bundle:
    BundleObject
    + Resource<DynamicType = ()>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// The API its status is written through.
    fn api(&self, client: kube::Client) -> kube::Api<Self>;
}

impl Bundle for PolicyBundle {
    fn api(&self, client: kube::Client) -> kube::Api<Self> {
        kube::Api::namespaced(client, &self.namespace().unwrap_or_default())
    }
}

impl Bundle for ClusterPolicyBundle {
    fn api(&self, client: kube::Client) -> kube::Api<Self> {
        kube::Api::all(client)
    }
}

#[instrument(skip(bundle, ctx), fields(kind = %K::kind(&()), bundle = %bundle.name_any(), namespace = bundle.namespace().unwrap_or_default()))]
pub async fn reconcile<K: Bundle>(bundle: Arc<K>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.timer("policybundle");
    if bundle.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // The floor has no namespace: "" in logs.
    let namespace = bundle.namespace().unwrap_or_default();
    let spec = bundle.policy_spec();
    let generation = bundle.meta().generation;
    let now = Timestamp::now();
    let previous = bundle.policy_status().cloned().unwrap_or_default();
    let mut status = previous.clone();
    status.observed_generation = generation;

    if bundle.name_any() != ctx.settings.bundle_name {
        set_ready(
            &mut status,
            false,
            "NotInForce",
            format!(
                "only the {} named {} is in force",
                K::kind(&()),
                ctx.settings.bundle_name
            ),
            now,
        );
        if status != previous {
            apply_bundle_status(&ctx, bundle.as_ref(), &status).await?;
        }
        return Ok(Action::await_change());
    }

    let hash = policy_hash(spec)?;
    // The one check that must hold whatever got past admission (the webhook bypassed, say): a
    // version that is not the one in force needs a signature that verifies.
    let refused = match &ctx.settings.bundle_keys {
        Some(keys) if previous.active_spec.as_ref() != Some(spec) => {
            verify_bundle(&keys.current(), spec).err()
        }
        _ => None,
    };
    if let Some(refusal) = refused {
        let reason = refusal.reason();
        let message = format!(
            "version {} is not put in force: {refusal}; {} stays in force",
            spec.version,
            previous
                .active_hash
                .as_deref()
                .map_or("no earlier version", short)
        );
        // Reported once per version and verdict, not on every resync.
        let already_reported = conditions::find(&previous.conditions, READY).is_some_and(|c| {
            c.reason == reason && c.message == message && c.observed_generation == generation
        });
        set_ready(&mut status, false, reason, message.clone(), now);
        if !already_reported {
            ctx.metrics.policy_reload_failure.inc();
            error!(
                code = "POLICY_SIGNATURE_INVALID",
                bundle = %bundle.name_any(),
                namespace = %namespace,
                version = %spec.version,
                key_id = spec.signature.as_ref().map_or("", |s| s.key_id.as_str()),
                reason,
                error = %refusal,
                "policy version refused: its signature does not verify; the last good version stays in force"
            );
            publish(
                &ctx,
                &bundle.object_ref(&()),
                EventType::Warning,
                reason,
                message,
            )
            .await;
        }
    } else if previous.active_hash.as_deref() == Some(hash.as_str()) {
        set_ready(
            &mut status,
            true,
            "Active",
            format!("policy {} is in force", short(&hash)),
            now,
        );
    } else {
        match ctx.policies.compile(spec) {
            Ok(_) => {
                status.active_hash = Some(hash.clone());
                status.active_version = Some(spec.version.clone());
                status.active_spec = Some(spec.clone());
                push_history(
                    &mut status.history,
                    PolicyVersion {
                        hash: hash.clone(),
                        version: spec.version.clone(),
                        time: Time(now),
                        actor: last_actor(bundle.as_ref()),
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
                    version = %spec.version,
                    policy_hash = %hash,
                    previous_hash = previous.active_hash.as_deref().unwrap_or(""),
                    "policy version compiled and put in force"
                );
                publish(
                    &ctx,
                    &bundle.object_ref(&()),
                    EventType::Normal,
                    "PolicyActivated",
                    format!("version {} ({}) is in force", spec.version, short(&hash)),
                )
                .await;
            }
            Err(e) => {
                let message = format!(
                    "version {} does not compile; {} stays in force: {e}",
                    spec.version,
                    previous
                        .active_hash
                        .as_deref()
                        .map_or("no earlier version", short)
                );
                // Count and report each failing version once, not on every resync.
                let already_reported =
                    conditions::find(&previous.conditions, READY).is_some_and(|c| {
                        c.reason == "CompileFailed" && c.observed_generation == generation
                    });
                set_ready(&mut status, false, "CompileFailed", message.clone(), now);
                if !already_reported {
                    ctx.metrics.policy_reload_failure.inc();
                    error!(
                        code = "POLICY_HOTRELOAD",
                        bundle = %bundle.name_any(),
                        namespace = %namespace,
                        version = %spec.version,
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
        apply_bundle_status(&ctx, bundle.as_ref(), &status).await?;
    }

    // The revalidation summary, level-triggered: once every governed agent of the namespace is
    // judged under the hash in force (the Agent controller re-judges them as soon as the status
    // above lands), or after a deadline, with the stragglers counted as errors.
    if let Some(active) = status.active_hash.clone()
        && status
            .last_revalidation
            .as_ref()
            .map(|r| r.policy_hash.as_str())
            != Some(active.as_str())
    {
        ctx.agents_synced.wait().await;
        // The agents this bundle governs, each judged under its namespace's effective policy
        // (this version with the other layer as the cache has it).
        let floor = bundle.namespace().is_none();
        let effective = |agent_namespace: &str| {
            let (floor_hash, own_hash) = if floor {
                (Some(active.clone()), ctx.own_active_hash(agent_namespace))
            } else {
                (ctx.floor_active_hash(), Some(active.clone()))
            };
            effective_hash(floor_hash.as_deref(), own_hash.as_deref())
                .ok()
                .flatten()
        };
        // Every 500 ms while a revalidation runs: walked outside the cache's lock.
        let governed = ctx
            .agents
            .by_namespace(|agent_namespace| floor || agent_namespace == namespace);
        let (mut summary, pending) = crate::revalidation::progress(
            governed.iter().flat_map(|(agent_namespace, agents)| {
                agents
                    .iter()
                    .map(move |agent| (&**agent_namespace, &agent.summary))
            }),
            &active,
            effective,
        );
        let activated = status
            .history
            .iter()
            .find(|h| h.hash == active)
            .map_or(now, |h| h.time.0);
        let elapsed = now.duration_since(activated);
        if pending > 0 && elapsed < REVALIDATION_DEADLINE {
            return Ok(Action::requeue(Duration::from_millis(500)));
        }
        summary.errors = i64::try_from(pending).unwrap_or(i64::MAX);
        summary.duration_ms = i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX);
        summary.finished_at = Some(Time(now));
        ctx.metrics
            .revalidation_duration
            .observe(elapsed.as_secs_f64());
        info!(
            code = "POLICY_REVALIDATION",
            namespace = %namespace,
            policy_hash = %active,
            valid = summary.valid,
            restricted = summary.restricted,
            invalidated = summary.invalidated,
            denied = summary.denied,
            errors = summary.errors,
            duration_ms = summary.duration_ms,
            "governed agents revalidated"
        );
        status.last_revalidation = Some(summary.clone());
        apply_bundle_status(&ctx, bundle.as_ref(), &status).await?;
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

/// How long a revalidation summary waits for stragglers (agents whose writes keep failing).
const REVALIDATION_DEADLINE: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);

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

/// Who last changed the bundle's spec, as the API server recorded it: the annotation its
/// admission guards stamp on every spec change and allow to name only the requester. Without it
/// (no MutatingAdmissionPolicy stamps it on clusters before 1.36) the actor is said to be
/// unknown, never a name the client chose.
fn last_actor(bundle: &impl Resource) -> Option<String> {
    let stamped = bundle
        .annotations()
        .get(CHANGED_BY)
        .filter(|who| !who.is_empty())
        .cloned();
    Some(stamped.unwrap_or_else(|| UNKNOWN_ACTOR.to_string()))
}

pub fn error_policy<K: Bundle>(
    bundle: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> kube::runtime::controller::Action {
    warn!(bundle = %bundle.name_any(), error = %error, "policy bundle reconcile failed");
    ctx.metrics
        .reconcile_error("policybundle", error.category());
    Action::requeue(crate::backoff::next(&bundle.uid().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_actor_is_the_changed_by_stamp_or_unknown_never_a_field_manager() {
        let mut bundle = PolicyBundle::new("default", agentgov_api::policy::default_bundle_spec());
        bundle.metadata.managed_fields = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
                manager: Some("i-am-the-admin".into()),
                operation: Some("Apply".into()),
                ..Default::default()
            },
        ]);
        assert_eq!(last_actor(&bundle).as_deref(), Some(UNKNOWN_ACTOR));
        bundle
            .annotations_mut()
            .insert(CHANGED_BY.into(), String::new());
        assert_eq!(last_actor(&bundle).as_deref(), Some(UNKNOWN_ACTOR));
        bundle
            .annotations_mut()
            .insert(CHANGED_BY.into(), "alice".into());
        assert_eq!(last_actor(&bundle).as_deref(), Some("alice"));
    }
}
