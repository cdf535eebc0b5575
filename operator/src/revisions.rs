//! An agent's versions, kept as `ControllerRevision`s owned by the Agent (the layout is
//! `agentgov_api::revision`'s): one per distinct spec hash, `revision` growing (a spec that comes
//! back is renumbered to the newest, as a Deployment's rollback is), the approval a spec was
//! first signed under in annotations (recorded once per set of approvals: a revalidation that
//! signs it again under a new policy writes nothing), and at most `--revision-history-limit` of them (the revision in
//! force and the approved one are never pruned). The Agent controller writes them after each
//! judgement; [`plan`] decides what to write, plainly, and [`converge`] writes it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use agentgov_api::Agent;
use agentgov_api::promotion::PromotionOutcome;
use agentgov_api::revision::{
    AGENT_LABEL, RevisionApproval, RevisionData, SPEC_HASH_ANNOTATION, agent_label_value,
    revision_name,
};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::debug;

use crate::context::Context;
use crate::error::Result;
use crate::judge::Judgement;
use crate::written::{Fingerprint, fingerprint};

/// One of the agent's revisions, as the API server has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    pub name: String,
    pub spec_hash: String,
    pub revision: i64,
    pub approval: Option<RevisionApproval>,
}

/// What the agent's revisions should become.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want<'a> {
    pub agent: &'a str,
    /// The spec hash the agent has now.
    pub current: &'a str,
    /// The approval the current spec is signed under, when it is in force.
    pub approval: Option<&'a RevisionApproval>,
    /// The spec hash of the agent's last proof (in force or not): never pruned.
    pub approved: Option<&'a str>,
    /// How many revisions are kept.
    pub limit: usize,
}

/// One write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A revision of the current spec, numbered `revision`.
    Create { name: String, revision: i64 },
    /// The current spec came back: its revision becomes the newest.
    Renumber { name: String, revision: i64 },
    /// Record the approval the revision's spec is signed under.
    Annotate {
        name: String,
        approval: RevisionApproval,
    },
    /// Beyond the limit: the oldest that is neither current nor approved.
    Delete { name: String },
}

/// The writes that make `known` what `want` says, in order.
pub fn plan(known: &[Known], want: &Want<'_>) -> Vec<Step> {
    let mut steps = Vec::new();
    let newest = known.iter().map(|k| k.revision).max().unwrap_or(0);
    let current = known.iter().find(|k| k.spec_hash == want.current);
    let current_name = match current {
        Some(k) => {
            // Ties (two revisions with one number) are broken by renumbering too.
            let tied = known
                .iter()
                .any(|o| o.revision == k.revision && o.name != k.name);
            if k.revision < newest || tied {
                steps.push(Step::Renumber {
                    name: k.name.clone(),
                    revision: newest + 1,
                });
            }
            k.name.clone()
        }
        None => {
            let name = revision_name(want.agent, want.current);
            steps.push(Step::Create {
                name: name.clone(),
                revision: newest + 1,
            });
            name
        }
    };
    // An approval is recorded once: signing the same spec again under the same approvals (a
    // new policy, a new key: a revalidation) is not a new approval, and writes no revision.
    if let Some(approval) = want.approval
        && current
            .and_then(|k| k.approval.as_ref())
            .is_none_or(|recorded| approved_by(recorded) != approved_by(approval))
    {
        steps.push(Step::Annotate {
            name: current_name,
            approval: approval.clone(),
        });
    }
    let count = known.len() + usize::from(current.is_none());
    let mut prunable: Vec<&Known> = known
        .iter()
        .filter(|k| k.spec_hash != want.current && Some(k.spec_hash.as_str()) != want.approved)
        .collect();
    prunable.sort_by_key(|k| k.revision);
    let excess = count.saturating_sub(want.limit.max(1));
    steps.extend(prunable.into_iter().take(excess).map(|k| Step::Delete {
        name: k.name.clone(),
    }));
    steps
}

/// Who approved, under which AgentPromotions: what makes one approval another.
fn approved_by(approval: &RevisionApproval) -> (&[String], &[String]) {
    (&approval.approved_by, &approval.approvals)
}

/// A revision as [`plan`] sees it (None: not one the operator wrote, or without a hash).
pub fn known(revision: &ControllerRevision) -> Option<Known> {
    let annotations = revision.annotations();
    let spec_hash = annotations.get(SPEC_HASH_ANNOTATION).cloned().or_else(|| {
        serde_json::from_value::<RevisionData<serde_json::Value>>(revision.data.0.clone())
            .ok()
            .map(|d| d.spec_hash)
    })?;
    Some(Known {
        name: revision.name_any(),
        spec_hash,
        revision: revision.revision.unwrap_or_default(),
        approval: RevisionApproval::from_annotations(annotations),
    })
}

/// The approval the agent's spec is signed under, when its judgement puts it in force.
pub fn approval_in_force(judgement: &Judgement) -> Option<RevisionApproval> {
    let status = &judgement.status;
    if !status
        .governance_status
        .is_some_and(|g| g.is_governed_in_force())
    {
        return None;
    }
    let proof = status.proof.as_ref()?;
    Some(RevisionApproval {
        approved_by: proof.approvers.iter().map(|a| a.username.clone()).collect(),
        policy_hash: proof.policy_hash.clone(),
        approved_at: proof.signed_at.clone(),
        approvals: judgement
            .promotions
            .iter()
            .filter(|(_, s)| s.outcome == Some(PromotionOutcome::Approved))
            .map(|(name, _)| name.clone())
            .collect(),
    })
}

/// What this process last made each agent's revisions say (by agent uid): a reconcile that
/// would write the same again asks the API server nothing.
#[derive(Default)]
pub struct Converged {
    /// By the fingerprint of an agent's uid (as `Written` keys them: 16 bytes an agent, not a
    /// uid's 60): a fingerprint of what its revisions were last made to say.
    memo: Mutex<HashMap<Fingerprint, Fingerprint>>,
    /// Each agent's revisions as one list of its namespace found them, until the agent's first
    /// look takes them: a fresh operator (a restart, a failover) would otherwise list the
    /// namespace's revisions once per agent, and the API server filters a label selector over
    /// every revision of the namespace each time (a sweep of 10,000 agents took 84 s instead of
    /// 6). Listed once per namespace for the life of the process.
    listed: tokio::sync::Mutex<Listed>,
}

#[derive(Default)]
struct Listed {
    namespaces: HashSet<String>,
    by_owner: HashMap<String, Vec<Known>>,
}

impl Converged {
    fn get(&self, uid: &str) -> Option<Fingerprint> {
        lock(&self.memo).get(&fingerprint(uid)).copied()
    }

    fn set(&self, uid: &str, value: Fingerprint) {
        lock(&self.memo).insert(fingerprint(uid), value);
    }

    /// The agent is gone.
    pub fn forget(&self, uid: &str) {
        lock(&self.memo).remove(&fingerprint(uid));
        if let Ok(mut listed) = self.listed.try_lock() {
            listed.by_owner.remove(uid);
        }
    }

    /// The agent's revisions from its namespace's one list (made now if this is the
    /// namespace's first), if that list found any and no look has taken them yet.
    async fn take_listed(
        &self,
        api: &Api<ControllerRevision>,
        namespace: &str,
        uid: &str,
    ) -> Result<Option<Vec<Known>>> {
        let mut listed = self.listed.lock().await;
        if !listed.namespaces.contains(namespace) {
            let by_owner = list_by_owner(api).await?;
            listed.by_owner.extend(by_owner);
            listed.namespaces.insert(namespace.to_string());
        }
        let taken = listed.by_owner.remove(uid);
        if listed.by_owner.is_empty() {
            // Every agent has taken its own: give back the table a large namespace grew.
            listed.by_owner = HashMap::new();
        }
        Ok(taken)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every agent revision `api` holds, by the uid of the agent that controls it, in pages.
async fn list_by_owner(api: &Api<ControllerRevision>) -> Result<HashMap<String, Vec<Known>>> {
    let mut by_owner: HashMap<String, Vec<Known>> = HashMap::new();
    let mut params = ListParams::default().labels(AGENT_LABEL).limit(500);
    loop {
        let page = api.list(&params).await?;
        for revision in &page.items {
            let owner = revision
                .owner_references()
                .iter()
                .find(|o| o.controller == Some(true));
            if let (Some(owner), Some(known)) = (owner, known(revision)) {
                by_owner.entry(owner.uid.clone()).or_default().push(known);
            }
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(by_owner),
        }
    }
}

/// Make the agent's revisions say what its `judgement` says (nothing with
/// `--revision-history-limit 0`).
pub async fn converge(
    ctx: &Context,
    agent: &Agent,
    spec_hash: std::result::Result<&str, &str>,
    judgement: &Judgement,
) -> Result<()> {
    let limit = ctx.settings.revision_history_limit;
    let (Some(namespace), Some(uid)) = (agent.namespace(), agent.metadata.uid.clone()) else {
        return Ok(());
    };
    if limit == 0 {
        return Ok(());
    }
    let name = agent.name_any();
    // A spec that cannot be hashed has no revision (the judge refuses it).
    let Ok(current) = spec_hash else {
        return Ok(());
    };
    let approval = approval_in_force(judgement);
    let approved = judgement.status.proof.as_ref().map(|p| p.spec_hash.clone());
    let want = Want {
        agent: &name,
        current,
        approval: approval.as_ref(),
        approved: approved.as_deref(),
        limit,
    };
    let memo = fingerprint(&(
        &current,
        approval.as_ref().map(approved_by),
        &approved,
        limit,
    ));
    if ctx.revisions.get(&uid) == Some(memo) {
        return Ok(());
    }
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &namespace);
    let listed = if ctx.revisions.get(&uid).is_none() {
        ctx.revisions.take_listed(&api, &namespace, &uid).await?
    } else {
        None
    };
    let known: Vec<Known> = match listed {
        Some(known) => known,
        None => {
            let selector = format!("{AGENT_LABEL}={}", agent_label_value(&name));
            api.list(&ListParams::default().labels(&selector))
                .await?
                .items
                .iter()
                .filter(|r| owned_by(r, &uid))
                .filter_map(known)
                .collect()
        }
    };
    for step in plan(&known, &want) {
        let _turn = ctx.status_limiter.turn().await;
        match step {
            Step::Create {
                name: rev,
                revision,
            } => {
                let object = new_revision(agent, &rev, current, revision)?;
                api.create(&PostParams::default(), &object).await?;
                debug!(revision = %rev, number = revision, "agent revision recorded");
            }
            Step::Renumber {
                name: rev,
                revision,
            } => {
                let patch = json!({"revision": revision});
                api.patch(&rev, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            Step::Annotate {
                name: rev,
                approval,
            } => {
                let patch = json!({"metadata": {"annotations": approval.annotations()}});
                api.patch(&rev, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            Step::Delete { name: rev } => match api.delete(&rev, &Default::default()).await {
                Ok(_) => debug!(revision = %rev, "old agent revision pruned"),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            },
        }
    }
    ctx.revisions.set(&uid, memo);
    Ok(())
}

fn owned_by(revision: &ControllerRevision, uid: &str) -> bool {
    revision
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

/// A new revision of the agent's current spec.
fn new_revision(
    agent: &Agent,
    name: &str,
    hash: &str,
    revision: i64,
) -> Result<ControllerRevision> {
    let data = RevisionData {
        spec_hash: hash.to_string(),
        spec: &agent.spec,
    };
    let owner = OwnerReference {
        api_version: Agent::api_version(&()).into_owned(),
        kind: Agent::kind(&()).into_owned(),
        name: agent.name_any(),
        uid: agent.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        // Blocking the owner's deletion would need `update` on agents/finalizers.
        block_owner_deletion: None,
    };
    Ok(ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: agent.namespace(),
            labels: Some(BTreeMap::from([(
                AGENT_LABEL.to_string(),
                agent_label_value(&agent.name_any()),
            )])),
            annotations: Some(BTreeMap::from([(
                SPEC_HASH_ANNOTATION.to_string(),
                hash.to_string(),
            )])),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        data: RawExtension(serde_json::to_value(&data)?),
        revision: Some(revision),
    })
}

#[cfg(test)]
#[path = "revisions_tests.rs"]
mod tests;
