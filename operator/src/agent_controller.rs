//! The Agent controller: the one writer of Agent status and of AgentPromotion status. It judges
//! an agent on its own changes, on its approvals' changes, when the policy in force in its
//! namespace changes (a new version, or the bundle deleted), when the key ring or the admission
//! guards change, and every ten minutes. Level-triggered: each reconcile judges afresh, except
//! when nothing the last judgement depended on has changed (the watch event of its own write).
//!
//! Many reconciles run at once (`--concurrency`), each as a task of its own, so the judgements
//! (the policy, signing) use every core, and the writes are pipelined (`--write-concurrency`,
//! `--status-qps`), so a revalidation of a namespace keeps every core and the API server busy.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use agentgov_api::agent::AgentMode;
use agentgov_api::exception::{AppliedException, applicable};
use agentgov_api::hash::spec_hash;
use agentgov_api::policy::NamespaceInput;
use agentgov_api::policy_bundle::RuntimeData;
use agentgov_api::promotion::PromotionOutcome;
use agentgov_api::{Agent, AgentPromotion, AgentSpec};
use jiff::Timestamp;
use kube::ResourceExt;
use tracing::{instrument, warn};

use crate::compact::{CachedAgent, holds_governance, monthly_budget_usd};
use crate::context::Context;
use crate::driver::{Action, Key};
use crate::error::{Error, Result};
use crate::judge::{ActivePolicy, AgentFacts, ApprovalFacts, Judge, Judgement};
use crate::written::{Fingerprint, Judged, Write, Written, fingerprint};
use agentgov_runtime::keys::KeySnapshot;

/// A safety net: every agent is looked at again this often even when nothing changed (a role
/// revoked from an approver, for one): one round for all agents ([`crate::triggers::Resync`]).
pub const RESYNC: Duration = Duration::from_secs(600);

/// The driver ([`crate::driver`]) runs each reconcile as a task of its own, so the judgement
/// (the policy, hashing, signing: CPU work) and the write of one agent proceed on any core beside
/// the others'.
pub async fn reconcile(agent: Arc<CachedAgent>, ctx: Arc<Context>) -> Result<Action> {
    // Read whole again in the reconcile's task, beside the other reconciles.
    let agent = Arc::new(agent.object().map_err(Error::Cached)?);
    judge_and_write(agent, ctx).await
}

#[instrument(skip(agent, ctx), fields(agent = %agent.name_any(), namespace = agent.namespace().unwrap_or_default()))]
async fn judge_and_write(agent: Arc<Agent>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.timer("agent");
    if agent.metadata.deletion_timestamp.is_some() {
        ctx.revisions
            .forget(agent.metadata.uid.as_deref().unwrap_or_default());
        ctx.allocations
            .forget(&agent.namespace().unwrap_or_default(), &agent.name_any());
        return Ok(Action::await_change());
    }
    // Judging before the caches are known would deny for want of a policy or of approvals.
    ctx.bundles_synced.wait().await;
    ctx.floors_synced.wait().await;
    ctx.exceptions_synced.wait().await;
    ctx.promotions_synced.wait().await;
    let namespace = agent
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(agent.name_any()))?;
    let uid = agent.metadata.uid.clone().unwrap_or_default();
    let promotions = ctx.promotions_of(&namespace, &agent.name_any())?;
    let world = World::now(&ctx, &namespace)?;
    let written = &ctx.status_limiter.written;
    let last = written.agent(&uid);
    let version = agent.metadata.resource_version.as_deref().map(fingerprint);
    let spec_hash = SpecHash::of(&agent.spec);
    // A promotion judged against the namespace's total waits for its turn: the promotions
    // judged before it are counted as signed (see [`crate::allocations`]). Only an agent with
    // an approval of its spec can be signed.
    let signable = checks_total(&world, &agent, &spec_hash)
        && spec_hash
            .get()
            .is_ok_and(|hash| promotions.iter().any(|p| p.spec.spec_hash == hash));
    let turn = match signable {
        true => Some(ctx.allocations.turn(&namespace).await),
        false => None,
    };
    let extra = Extra::of(&ctx, &world, &agent, spec_hash, Timestamp::now());
    let inputs = world.inputs(written, &promotions, &extra);
    if let Some(next) = Judged::holds(last.as_ref(), version, inputs, Instant::now()) {
        drop(turn);
        // Nothing to judge; what the operator keeps for the agent may still have been changed
        // by someone.
        keep_pods(&ctx, &world, &agent, agent.status.as_ref()).await?;
        return Ok(look_again(next));
    }
    let spec_hash = extra.spec_hash.get();
    let authorized = authorize(&ctx, &agent, &namespace, spec_hash, &promotions).await?;
    let now = Timestamp::now();
    let judgement = judge_in(&ctx, &world, &agent, &promotions, &authorized, &extra, now)?;
    let last_write = last.and_then(|j| j.write);
    // The deny codes the status does not keep, for the namespace's PolicyReport (before the
    // write, whose watch event has the report recomputed).
    ctx.reports.judged(&uid, &judgement.deny_codes);
    let write = crate::status::apply(&ctx, &agent, &judgement, last_write.as_ref()).await?;
    if let Some(turn) = turn {
        let signed = holds_governance(judgement.status.governance_status)
            .then(|| monthly_budget_usd(&agent.spec));
        ctx.allocations
            .judged(&turn, &namespace, &agent.name_any(), signed);
    }
    // Its Pods kept as judged first, and whatever the records below meet: an approval's status
    // or a ControllerRevision that cannot be written (a name still taken by a deleted agent's,
    // a quota a tenant filled) must not hold up a quarantine. Either error is retried.
    let kept = keep_pods(&ctx, &world, &agent, Some(&judgement.status)).await;
    let recorded = async {
        crate::status::apply_promotions(&ctx, &namespace, &promotions, &judgement).await?;
        crate::status::prune_promotions(&ctx, &namespace, &promotions, &judgement).await;
        // The agent's versions: the spec it has now, and the approval it is signed under.
        crate::revisions::converge(&ctx, &agent, spec_hash, &judgement).await
    }
    .await;
    kept?;
    recorded?;
    let next = next_look(&ctx, &promotions, &judgement, now);
    if let Some(version) = version {
        // A write the cache has not shown yet still counts.
        let write = write.or(last_write.filter(|w| w.before == version));
        written.judged(
            &uid,
            Judged {
                version: Write::version(write.as_ref(), version),
                inputs: world.inputs(written, &promotions, &extra),
                until: next.map(|wait| Instant::now() + wait),
                write,
            },
        );
    }
    Ok(look_again(next))
}

/// Reconcile again after `wait`, or only when something changes (the resync round among them).
fn look_again(wait: Option<Duration>) -> Action {
    wait.map_or_else(Action::await_change, Action::requeue)
}

/// Keep the agent's Pods as its judged `status` says: its NetworkPolicy and a quarantined
/// agent's Pods stopped (`--contain-pods`), and a managed agent's Deployment and ConfigMap
/// (`--manage-workloads`).
async fn keep_pods(
    ctx: &Context,
    world: &World,
    agent: &Agent,
    status: Option<&agentgov_api::AgentStatus>,
) -> Result<()> {
    if ctx.settings.contain_pods {
        ctx.network_policies_synced.wait().await;
        let default = RuntimeData::default();
        let runtime = world.policy.as_ref().map_or(&default, |p| &p.runtime);
        crate::containment::converge(ctx, agent, status, runtime).await?;
    }
    if !ctx.settings.manage_workloads {
        return Ok(());
    }
    for synced in &ctx.workloads_synced {
        synced.wait().await;
    }
    crate::workload::converge(ctx, agent, status).await
}

/// Whether each approval's requester still holds `promote` on the agent (only for approvals of
/// the current spec of a governed agent: the others are not counted anyway).
///
/// Whoever may promote every agent of the namespace (a RoleBinding or ClusterRoleBinding of the
/// shipped ClusterRoles: RBAC grants, it never denies) may promote this one: one
/// SubjectAccessReview per approver and namespace, cached, rather than one per agent, which a
/// revalidation of thousands of agents would pay. Only an approver whose rights name agents is
/// asked about this very agent.
async fn authorize(
    ctx: &Context,
    agent: &Agent,
    namespace: &str,
    spec_hash: Result<&str, &str>,
    promotions: &[Arc<AgentPromotion>],
) -> Result<HashMap<String, bool>> {
    let mut authorized = HashMap::new();
    // A spec that cannot be hashed matches no approval (the judge refuses it).
    let Ok(hash) = spec_hash else {
        return Ok(authorized);
    };
    if agent.spec.mode != AgentMode::Governed || promotions.is_empty() {
        return Ok(authorized);
    }
    for p in promotions.iter().filter(|p| p.spec.spec_hash == hash) {
        let Some(requester) = p.spec.requested_by.as_ref() else {
            continue;
        };
        let allowed = ctx.approvers.may_promote(requester, namespace, "").await?
            || ctx
                .approvers
                .may_promote(requester, namespace, &agent.name_any())
                .await?;
        authorized.insert(p.name_any(), allowed);
    }
    Ok(authorized)
}

/// What a judgement depends on besides the agent and its approvals, as it is now: the policy in
/// force, the key ring, the admission guards' problems.
pub struct World {
    policy: Option<ActivePolicy>,
    keys: Arc<KeySnapshot>,
    guards: Option<String>,
    /// Why agents' Pods are not checked at admission (break-glass), if they are not.
    unguarded: Option<String>,
    fingerprint: Fingerprint,
}

impl World {
    pub fn now(ctx: &Context, namespace: &str) -> Result<World> {
        let policy = ctx.active_policy(namespace)?;
        let keys = ctx.keys.current();
        let guards = ctx.guards.missing();
        let unguarded = ctx.webhook.missing(&ctx.settings.webhook_configuration);
        let fingerprint = fingerprint(&(
            &unguarded,
            policy
                .as_ref()
                .map(|p| (p.hash(), p.engine.version(), p.approvals_required)),
            keys.generation,
            &guards,
            ctx.resync.round(),
        ));
        Ok(World {
            policy,
            keys,
            guards,
            unguarded,
            fingerprint,
        })
    }

    /// A fingerprint of everything a judgement of an agent with these approvals depends on
    /// besides the agent: this world, and each approval's version (as this controller last
    /// wrote it, when the cache does not show that write yet).
    fn inputs(
        &self,
        written: &Written,
        promotions: &[Arc<AgentPromotion>],
        extra: &Extra<'_>,
    ) -> Fingerprint {
        let mut hasher = DefaultHasher::new();
        self.fingerprint.hash(&mut hasher);
        extra
            .budget
            .map(|b| b.allocated_monthly_budget_usd.to_bits())
            .hash(&mut hasher);
        for e in &extra.exceptions {
            (&e.name, &e.rules, e.expires_at.0, &e.requested_by).hash(&mut hasher);
        }
        for p in promotions {
            let uid = p.metadata.uid.as_deref().unwrap_or_default();
            uid.hash(&mut hasher);
            p.metadata
                .resource_version
                .as_deref()
                .map(|rv| Write::version(written.promotion(uid).as_ref(), fingerprint(rv)))
                .hash(&mut hasher);
        }
        hasher.finish()
    }
}

/// Judge one agent against the caches, the key ring and the guards, as they are now.
#[cfg(test)]
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
    let world = World::now(ctx, &namespace)?;
    let extra = Extra::of(ctx, &world, agent, SpecHash::of(&agent.spec), now);
    judge_in(ctx, &world, agent, promotions, authorized, &extra, now)
}

/// What a judgement of one agent depends on from the rest of its namespace: the approved
/// budgets (when the policy sets a total) and the AgentExceptions in force for it; and the
/// agent's spec hash, which the judge, the approvals' check and the revisions all need.
pub struct Extra<'a> {
    budget: Option<NamespaceInput>,
    exceptions: Vec<AppliedException>,
    spec_hash: SpecHash<'a>,
}

impl<'a> Extra<'a> {
    pub fn of(
        ctx: &Context,
        world: &World,
        agent: &'a Agent,
        spec_hash: SpecHash<'a>,
        now: Timestamp,
    ) -> Extra<'a> {
        Extra {
            budget: namespace_budget(ctx, world, agent, &spec_hash),
            exceptions: exceptions_for(ctx, agent, now),
            spec_hash,
        }
    }
}

/// An agent's spec hash, computed when first asked for and kept for the rest of the look: a
/// look whose judgement still holds needs none, one that judges needs it three times (hashing
/// canonical JSON was 7 % of the operator's CPU in a revalidation when each computed its own).
pub struct SpecHash<'a> {
    spec: &'a AgentSpec,
    hash: OnceLock<std::result::Result<String, String>>,
}

impl<'a> SpecHash<'a> {
    pub fn of(spec: &'a AgentSpec) -> SpecHash<'a> {
        SpecHash {
            spec,
            hash: OnceLock::new(),
        }
    }

    /// The hash, or why the spec cannot be hashed.
    pub fn get(&self) -> std::result::Result<&str, &str> {
        self.hash
            .get_or_init(|| spec_hash(self.spec).map_err(|e| e.to_string()))
            .as_deref()
            .map_err(String::as_str)
    }
}

/// The AgentExceptions of the agent's namespace in force for it at `now` (by the operator's
/// clock, each cut to the floor's longest exception).
fn exceptions_for(ctx: &Context, agent: &Agent, now: Timestamp) -> Vec<AppliedException> {
    let namespace = agent.namespace().unwrap_or_default();
    let in_namespace = ctx
        .exceptions
        .state_filter(|e| e.namespace().as_deref() == Some(namespace.as_str()));
    if in_namespace.is_empty() {
        return Vec::new();
    }
    let no_labels = std::collections::BTreeMap::new();
    applicable(
        in_namespace.iter().map(|e| e.as_ref()),
        &agent.name_any(),
        agent.metadata.labels.as_ref().unwrap_or(&no_labels),
        now,
        ctx.max_exception(),
    )
}

/// Judge one agent in `world`.
fn judge_in(
    ctx: &Context,
    world: &World,
    agent: &Agent,
    promotions: &[Arc<AgentPromotion>],
    authorized: &HashMap<String, bool>,
    extra: &Extra<'_>,
    now: Timestamp,
) -> Result<Judgement> {
    let namespace = agent
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(agent.name_any()))?;
    let name = agent.name_any();
    let uid = agent.metadata.uid.clone().unwrap_or_default();
    let facts = AgentFacts {
        namespace_budget: extra.budget.as_ref(),
        exceptions: &extra.exceptions,
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
        spec_hash: extra.spec_hash.get(),
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
        policy: world.policy.as_ref(),
        bundle_name: &ctx.settings.bundle_name,
        keys: &world.keys,
        expiry: &ctx.settings.expiry,
        guards_missing: world.guards.as_deref(),
        unguarded: world.unguarded.as_deref(),
        approval_ttl: ctx.settings.approval_ttl,
        now,
    }
    .judge(&facts, &approvals))
}

/// The namespace's approved budgets for a promotion of `agent`, when the policy sets a total
/// ([`checks_total`]): the budgets of its other agents in a governed status, or signed by this
/// operator within the last minute and not yet shown so by the cache.
fn namespace_budget(
    ctx: &Context,
    world: &World,
    agent: &Agent,
    spec_hash: &SpecHash<'_>,
) -> Option<NamespaceInput> {
    if !checks_total(world, agent, spec_hash) {
        return None;
    }
    let namespace = agent.namespace()?;
    let name = agent.name_any();
    let signed = ctx.allocations.signed(&namespace);
    let allocated = ctx
        .agents
        .lock()
        .get(namespace.as_str())
        .map_or(0.0, |agents| {
            agents
                .iter()
                .filter(|(other, _)| &***other != name.as_str())
                .map(|(other, held)| {
                    let cached = match held.summary.holds_governance() {
                        true => held.summary.monthly_budget_usd,
                        false => 0.0,
                    };
                    cached.max(signed.get(other).copied().unwrap_or(0.0))
                })
                .sum()
        });
    Some(NamespaceInput {
        allocated_monthly_budget_usd: allocated,
    })
}

/// Whether a judgement of `agent` checks the namespace's total: when the policy sets one, for a
/// governed agent not already governed under its current spec. Not for a sandbox, and not for
/// an agent governed under its current spec: a total that shrinks stops new promotions and does
/// not take budgets back, so revalidations cannot flip agents in turn.
fn checks_total(world: &World, agent: &Agent, spec_hash: &SpecHash<'_>) -> bool {
    world
        .policy
        .as_ref()
        .is_some_and(|p| p.engine.data().max_namespace_monthly_budget_usd.is_some())
        && agent.spec.mode == AgentMode::Governed
        && !governed_as_approved(agent, spec_hash)
}

/// Governed, and its proof is of its current spec.
fn governed_as_approved(agent: &Agent, spec_hash: &SpecHash<'_>) -> bool {
    holds_governance(agent.status.as_ref().and_then(|s| s.governance_status))
        && agent
            .status
            .as_ref()
            .and_then(|s| s.proof.as_ref())
            .zip(spec_hash.get().ok())
            .is_some_and(|(proof, hash)| proof.spec_hash == hash)
}

/// When to look again by itself: at a sandbox's expiry, at a pending approval's expiry (None:
/// only when something changes, the resync round among them).
fn next_look(
    ctx: &Context,
    promotions: &[Arc<AgentPromotion>],
    judgement: &Judgement,
    now: Timestamp,
) -> Option<Duration> {
    let mut next = judgement.requeue_after;
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
            let wait = wait + Duration::from_secs(1);
            next = Some(next.map_or(wait, |next| next.min(wait)));
        }
    }
    // A resync round judges the agent again before then anyway.
    next.map(|wait| wait.min(LONGEST_LOOK))
}

/// The longest time-bound look (a sandbox's expiry weeks away is looked at again by then).
const LONGEST_LOOK: Duration = Duration::from_secs(24 * 3600);

/// Retry with growing backoff, per object, up to five minutes.
pub fn error_policy(agent: &Key, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(agent = agent.name(), namespace = agent.namespace(), error = %error, "agent reconcile failed");
    ctx.metrics.reconcile_error("agent", error.category());
    Action::requeue(crate::backoff::next(&format!(
        "{}/{}",
        agent.namespace(),
        agent.name()
    )))
}

#[cfg(test)]
#[path = "agent_controller_tests.rs"]
mod tests;
