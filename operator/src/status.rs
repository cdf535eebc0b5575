//! Writing an agent's judgement: the status, then the audit trail (JSON log lines with the
//! seed's decision codes, Kubernetes Events, metrics). Only changes are written.
//!
//! The status is written whole, by a JSON merge patch that names every status field (absent ones
//! as null): anyone who may write the status subresource could have added fields the judgement
//! does not have (a forged deny, a proof on a sandbox), and server-side apply would leave fields
//! another manager owns in place.

use agentgov_api::agent::{AgentStatus, GovernanceStatus};
use agentgov_api::conditions::{EXPIRED, is_true};
use agentgov_api::promotion::PromotionOutcome;
use agentgov_api::{Agent, AgentPromotion};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde::Deserialize;
use serde_json::json;
use tracing::{debug, info, warn};

use crate::context::{Context, MANAGER};
use crate::error::Result;
use crate::judge::{Judgement, Outcome};
use crate::written::{Write, fingerprint, must_write, status_fingerprint};

/// Write the agent's new status unless it would change nothing, and record what happened; the
/// write made, if any (`last`: the agent's previous write, which the cache may not show yet).
pub async fn apply(
    ctx: &Context,
    agent: &Agent,
    judgement: &Judgement,
    last: Option<&Write>,
) -> Result<Option<Write>> {
    let namespace = agent.namespace().unwrap_or_default();
    let name = agent.name_any();
    let previous = agent.status.clone().unwrap_or_default();
    let version = agent.metadata.resource_version.as_deref().map(fingerprint);
    let changed = must_write(agent.status.as_ref(), version, last, &judgement.status);
    let mut write = None;
    if changed {
        let after =
            patch_status::<Agent>(ctx, &namespace, &name, judgement.status.as_merge_patch()?)
                .await?;
        write = version.zip(after).map(|(before, after)| Write {
            before,
            after: fingerprint(after.as_str()),
            status: status_fingerprint(&judgement.status),
        });
    }
    record(ctx, agent, &previous, judgement, changed).await;
    Ok(write)
}

/// A JSON merge patch of an object's status (`status` names every field: see the module doc),
/// in turn with the other writes; the object's new resourceVersion. The answer is not decoded
/// beyond that.
async fn patch_status<K>(
    ctx: &Context,
    namespace: &str,
    name: &str,
    status: serde_json::Value,
) -> Result<Option<String>, kube::Error>
where
    K: Resource<DynamicType = ()>,
{
    #[derive(Deserialize)]
    struct Answer {
        metadata: Metadata,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Metadata {
        resource_version: Option<String>,
    }
    let params = PatchParams {
        field_manager: Some(MANAGER.to_string()),
        ..PatchParams::default()
    };
    let request = kube::core::Request::new(K::url_path(&(), Some(namespace)))
        .patch_subresource(
            "status",
            name,
            &params,
            &Patch::Merge(json!({ "status": status })),
        )
        .map_err(kube::Error::BuildRequest)?;
    let _turn = ctx.status_limiter.turn().await;
    let answer = ctx.client.request_text(request).await?;
    Ok(serde_json::from_str::<Answer>(&answer)
        .ok()
        .and_then(|a| a.metadata.resource_version))
}

async fn record(
    ctx: &Context,
    agent: &Agent,
    previous: &AgentStatus,
    judgement: &Judgement,
    changed: bool,
) {
    let namespace = agent.namespace().unwrap_or_default();
    let name = agent.name_any();
    let status = &judgement.status;
    let governance = status
        .governance_status
        .map_or("", GovernanceStatus::as_str);
    // Promotion attempts: each approval decided for the first time, counted once.
    for attempt in judgement
        .attempts
        .iter()
        .filter(|a| ctx.counted.first(&a.uid))
    {
        ctx.metrics.promotion_attempts.inc();
        info!(
            code = "PROMOTION_ATTEMPT",
            agent = %name,
            namespace = %namespace,
            actor = %attempt.requester,
            promotion = %attempt.promotion,
            outcome = attempt.outcome.as_str(),
            "promotion evaluated"
        );
        if attempt.outcome == PromotionOutcome::Denied {
            for code in &attempt.deny_codes {
                ctx.metrics.deny(code);
            }
            warn!(
                code = "PROMOTION_DENIED",
                agent = %name,
                namespace = %namespace,
                actor = %attempt.requester,
                promotion = %attempt.promotion,
                reasons = ?attempt.deny_codes,
                denies = ?attempt.denies,
                "promotion denied"
            );
        }
    }
    if !changed {
        return;
    }
    if status.audit != previous.audit && !status.audit.is_empty() {
        audited(ctx, agent, status).await;
    }
    let unguarded = |s: &AgentStatus| {
        agentgov_api::conditions::find(&s.conditions, crate::break_glass::ADMISSION_GUARDED)
            .is_some_and(|c| c.status == "False")
    };
    if unguarded(status) && !unguarded(previous) {
        publish(
            ctx,
            &agent.object_ref(&()),
            EventType::Warning,
            "BreakGlass",
            agentgov_api::conditions::find(
                &status.conditions,
                crate::break_glass::ADMISSION_GUARDED,
            )
            .map(|c| c.message.clone())
            .unwrap_or_default(),
        )
        .await;
    }
    if status.exceptions != previous.exceptions {
        excepted(ctx, agent, &previous.exceptions, &status.exceptions).await;
    }
    let event = match judgement.outcome {
        // A proof re-signed for a new policy or key, with the status unchanged, is not a
        // promotion: the bundle's revalidation summary reports it, not one event per agent.
        Outcome::Promoted | Outcome::Restricted
            if previous.governance_status == status.governance_status =>
        {
            debug!(
                agent = %name,
                namespace = %namespace,
                status = governance,
                policy_hash = status.proof.as_ref().map_or("", |p| p.policy_hash.as_str()),
                "proof re-signed"
            );
            None
        }
        Outcome::Promoted | Outcome::Restricted => {
            let proof = status.proof.as_ref();
            let approvers: Vec<&str> = proof
                .map(|p| p.approvers.iter().map(|a| a.username.as_str()).collect())
                .unwrap_or_default();
            info!(
                code = "PROMOTION_SUCCESS",
                agent = %name,
                namespace = %namespace,
                status = governance,
                approvers = ?approvers,
                policy_hash = proof.map_or("", |p| p.policy_hash.as_str()),
                key_id = proof.map_or("", |p| p.key_id.as_str()),
                warnings = ?status.warnings,
                "promotion approved; proof signed"
            );
            Some((
                EventType::Normal,
                if judgement.outcome == Outcome::Restricted {
                    "PromotedRestricted"
                } else {
                    "Promoted"
                },
                format!(
                    "{governance}: approved by {}, signed by key {} against policy {}",
                    approvers.join(", "),
                    proof.map_or("", |p| p.key_id.as_str()),
                    short(proof.map_or("", |p| p.policy_hash.as_str()))
                ),
            ))
        }
        Outcome::Denied | Outcome::Invalidated => {
            let newly_invalidated = judgement.outcome == Outcome::Invalidated
                && previous.governance_status != Some(GovernanceStatus::GovernedInvalidated);
            if newly_invalidated {
                ctx.metrics.agent_invalidations.inc();
            }
            warn!(
                code = if judgement.outcome == Outcome::Invalidated { "GOVERNED_INVALIDATED" } else { "PROMOTION_DENIED" },
                agent = %name,
                namespace = %namespace,
                status = governance,
                outcome = judgement.outcome.as_str(),
                reasons = ?judgement.deny_codes,
                denies = ?status.denies,
                "governed agent refused"
            );
            Some((
                EventType::Warning,
                if judgement.outcome == Outcome::Invalidated {
                    "Invalidated"
                } else {
                    "PromotionDenied"
                },
                truncate(&status.denies.join("; ")),
            ))
        }
        Outcome::AwaitingApproval => {
            let wanted = status
                .approval
                .as_ref()
                .map_or(String::new(), |a| a.spec_hash.clone());
            info!(
                agent = %name,
                namespace = %namespace,
                spec_hash = %wanted,
                "governed request awaits approval"
            );
            Some((
                EventType::Normal,
                "AwaitingApproval",
                format!("approve spec hash {wanted} with an AgentPromotion"),
            ))
        }
        Outcome::Expired if !is_true(&previous.conditions, EXPIRED) => {
            warn!(code = "SANDBOX_EXPIRED", agent = %name, namespace = %namespace, "sandbox expired");
            Some((
                EventType::Warning,
                "SandboxExpired",
                "sandbox expired; its pods are no longer admitted".to_string(),
            ))
        }
        Outcome::SigningUnavailable => {
            let why =
                agentgov_api::conditions::find(&status.conditions, agentgov_api::conditions::READY)
                    .map_or(String::new(), |c| c.message.clone());
            warn!(agent = %name, namespace = %namespace, reason = %why, "signing postponed");
            None
        }
        _ => None,
    };
    if let Some((type_, reason, note)) = event {
        publish(ctx, &agent.object_ref(&()), type_, reason, note).await;
    }
}

/// The AgentExceptions that waive rules for the agent changed: each newly applied one counted
/// by the codes it waives, logged as EXCEPTION_APPLIED and published as an `ExceptionApplied`
/// Event; each that no longer applies (expired, deleted, or no longer needed) logged as
/// EXCEPTION_ENDED with an `ExceptionEnded` Event.
async fn excepted(
    ctx: &Context,
    agent: &Agent,
    before: &[agentgov_api::exception::AppliedException],
    now: &[agentgov_api::exception::AppliedException],
) {
    let namespace = agent.namespace().unwrap_or_default();
    let name = agent.name_any();
    for applied in now
        .iter()
        .filter(|a| !before.iter().any(|b| b.name == a.name))
    {
        for code in &applied.rules {
            ctx.metrics.exception_applied(code);
        }
        info!(
            code = "EXCEPTION_APPLIED",
            agent = %name,
            namespace = %namespace,
            exception = %applied.name,
            rules = ?applied.rules,
            expires_at = %applied.expires_at.0,
            requested_by = applied.requested_by.as_deref().unwrap_or(""),
            "an AgentException waives policy rules for the agent"
        );
        publish(
            ctx,
            &agent.object_ref(&()),
            EventType::Warning,
            "ExceptionApplied",
            format!(
                "AgentException {} (requested by {}) waives {} until {}",
                applied.name,
                applied.requested_by.as_deref().unwrap_or("an unknown user"),
                applied.rules.join(", "),
                applied.expires_at.0
            ),
        )
        .await;
    }
    for ended in before
        .iter()
        .filter(|b| !now.iter().any(|a| a.name == b.name))
    {
        info!(
            code = "EXCEPTION_ENDED",
            agent = %name,
            namespace = %namespace,
            exception = %ended.name,
            rules = ?ended.rules,
            expires_at = %ended.expires_at.0,
            "an AgentException no longer waives rules for the agent; it was judged without it"
        );
        publish(
            ctx,
            &agent.object_ref(&()),
            EventType::Normal,
            "ExceptionEnded",
            format!(
                "AgentException {} no longer applies (it ended at {} or was deleted); judged without it",
                ended.name, ended.expires_at.0
            ),
        )
        .await;
    }
}

/// New findings of a policy in `audit` mode (they changed nothing for the agent): counted by
/// code, logged as POLICY_AUDIT and published as a `PolicyAudit` Event.
async fn audited(ctx: &Context, agent: &Agent, status: &AgentStatus) {
    let namespace = agent.namespace().unwrap_or_default();
    let name = agent.name_any();
    for finding in &status.audit {
        ctx.metrics.audit_finding(&finding.code);
    }
    let codes: Vec<&str> = status.audit.iter().map(|f| f.code.as_str()).collect();
    let messages: Vec<String> = status
        .audit
        .iter()
        .map(|f| format!("{}: {}", f.code, f.message))
        .collect();
    info!(
        code = "POLICY_AUDIT",
        agent = %name,
        namespace = %namespace,
        status = status.governance_status.map_or("", GovernanceStatus::as_str),
        policy_hash = status.policy.as_ref().map_or("", |p| p.hash.as_str()),
        reasons = ?codes,
        findings = ?messages,
        "policy in audit mode would refuse or warn"
    );
    publish(
        ctx,
        &agent.object_ref(&()),
        EventType::Warning,
        "PolicyAudit",
        truncate(&format!(
            "the policy in audit mode would: {}",
            messages.join("; ")
        )),
    )
    .await;
}

/// Write each AgentPromotion's new status (those that change).
pub async fn apply_promotions(
    ctx: &Context,
    namespace: &str,
    promotions: &[std::sync::Arc<AgentPromotion>],
    judgement: &Judgement,
) -> Result<()> {
    let written = &ctx.status_limiter.written;
    for p in promotions {
        let Some(status) = judgement.promotions.get(&p.name_any()) else {
            continue;
        };
        let uid = p.metadata.uid.as_deref().unwrap_or_default();
        let version = p.metadata.resource_version.as_deref().map(fingerprint);
        if !must_write(
            p.status.as_ref(),
            version,
            written.promotion(uid).as_ref(),
            status,
        ) {
            continue;
        }
        let mut value = serde_json::to_value(status)?;
        if let Some(fields) = value.as_object_mut() {
            for field in [
                "outcome",
                "policyHash",
                "denies",
                "proof",
                "decidedAt",
                "observedGeneration",
                "conditions",
            ] {
                fields.entry(field).or_insert(serde_json::Value::Null);
            }
        }
        match patch_status::<AgentPromotion>(ctx, namespace, &p.name_any(), value).await {
            Ok(after) => {
                if let (Some(before), Some(after)) = (version, after) {
                    written.promotion_written(
                        uid,
                        Write {
                            before,
                            after: fingerprint(after.as_str()),
                            status: status_fingerprint(status),
                        },
                    );
                }
            }
            // Deleted meanwhile: nothing to record.
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Keep at most `--promotion-history` AgentPromotions per agent: the oldest that back no proof
/// and can no longer count (superseded, denied, expired) go first. A failure is logged.
pub async fn prune_promotions(
    ctx: &Context,
    namespace: &str,
    promotions: &[std::sync::Arc<AgentPromotion>],
    judgement: &Judgement,
) {
    let keep = ctx.settings.promotion_history;
    if promotions.len() <= keep {
        return;
    }
    let mut spent: Vec<&std::sync::Arc<AgentPromotion>> = promotions
        .iter()
        .filter(|p| {
            judgement
                .promotions
                .get(&p.name_any())
                .and_then(|s| s.outcome)
                .is_some_and(|o| !o.is_live())
        })
        .collect();
    spent.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let excess = promotions.len() - keep;
    let api: Api<AgentPromotion> = Api::namespaced(ctx.client.clone(), namespace);
    for p in spent.into_iter().take(excess) {
        match api.delete(&p.name_any(), &Default::default()).await {
            Ok(_) => debug!(promotion = %p.name_any(), namespace, "old AgentPromotion pruned"),
            Err(e) => {
                warn!(promotion = %p.name_any(), namespace, error = %e, "cannot prune an old AgentPromotion")
            }
        }
    }
}

/// Publish an Event; a failure to record is logged, never fatal.
pub async fn publish(
    ctx: &Context,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    publish_related(ctx, reference, None, type_, reason, note).await;
}

/// [`publish`], with the other object the Event is about (`related`). Events with the same
/// reason about the same objects are one series, which keeps the first note.
pub async fn publish_related(
    ctx: &Context,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    related: Option<k8s_openapi::api::core::v1::ObjectReference>,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: reason.to_string(),
        secondary: related,
    };
    if let Err(e) = ctx.recorder.publish(&event, reference).await {
        warn!(error = %e, reason, "cannot publish event");
    }
}

/// Server-side apply of a PolicyBundle's status.
pub async fn apply_bundle_status<K: crate::bundle_controller::Bundle>(
    ctx: &Context,
    bundle: &K,
    status: &agentgov_api::PolicyBundleStatus,
) -> Result<()> {
    let api = bundle.api(ctx.client.clone());
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &bundle.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

pub fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Event notes are capped at 1 KiB by the API server.
fn truncate(text: &str) -> String {
    if text.len() <= 1000 {
        return text.to_string();
    }
    let mut end = 1000;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
