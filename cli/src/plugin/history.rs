//! `history`, `diff` and `rollback` as plain functions: an agent's versions (the
//! ControllerRevisions the operator keeps, `agentgov_api::revision`'s layout) read into
//! [`Revision`]s, their table and records, the revision a diff or a rollback is against, the
//! unified diff of two specs, the merge patch that restores a spec, and what a rollback came to.

use agentgov_api::Agent;
use agentgov_api::agent::{AgentMode, GovernanceStatus};
use agentgov_api::promotion::AgentPromotion;
use agentgov_api::revision::{RevisionApproval, RevisionData};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ControllerRevision;
use serde::Serialize;
use serde_json::{Map, Value};

/// One version of an agent.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    pub revision: i64,
    /// The ControllerRevision's name.
    pub name: String,
    pub spec_hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<RevisionApproval>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<Timestamp>,
    pub spec: Value,
}

/// The agent's revisions among `items` (those it controls), oldest first.
pub fn revisions(agent: &Agent, items: &[ControllerRevision]) -> Vec<Revision> {
    let uid = agent.metadata.uid.as_deref().unwrap_or_default();
    let mut out: Vec<Revision> = items
        .iter()
        .filter(|r| {
            r.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.controller == Some(true) && o.uid == uid)
        })
        .filter_map(|r| {
            let data: RevisionData<Value> = serde_json::from_value(r.data.0.clone()).ok()?;
            Some(Revision {
                revision: r.revision.unwrap_or_default(),
                name: r.metadata.name.clone().unwrap_or_default(),
                spec_hash: data.spec_hash,
                approval: r
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(RevisionApproval::from_annotations),
                created: r.metadata.creation_timestamp.as_ref().map(|t| t.0),
                spec: data.spec,
            })
        })
        .collect();
    out.sort_by_key(|r| r.revision);
    out
}

/// The spec hash of the agent's proof (the approved spec), in force or not.
pub fn approved_hash(agent: &Agent) -> Option<&str> {
    agent
        .status
        .as_ref()
        .and_then(|s| s.proof.as_ref())
        .map(|p| p.spec_hash.as_str())
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Which revision is current (the agent's spec now) and which approved.
fn marks(revision: &Revision, current: &str, approved: Option<&str>) -> String {
    let mut marks = Vec::new();
    if revision.spec_hash == current {
        marks.push("current");
    }
    if Some(revision.spec_hash.as_str()) == approved {
        marks.push("approved");
    }
    marks.join(",")
}

/// The `history` table: REVISION, SPEC HASH (12), APPROVED BY, POLICY (12), CREATED, and which
/// is current and approved.
pub fn table(
    revisions: &[Revision],
    current: &str,
    approved: Option<&str>,
    now: Timestamp,
) -> String {
    let rows: Vec<Vec<String>> = revisions
        .iter()
        .map(|r| {
            let (by, policy) = match &r.approval {
                Some(a) => (a.approved_by.join(","), short(&a.policy_hash).to_string()),
                None => ("<none>".to_string(), "<none>".to_string()),
            };
            vec![
                r.revision.to_string(),
                short(&r.spec_hash).to_string(),
                by,
                policy,
                r.created
                    .map_or_else(|| "<unknown>".into(), |t| super::table::relative(t, now)),
                marks(r, current, approved),
            ]
        })
        .collect();
    super::table::render(
        &[
            "REVISION",
            "SPEC HASH",
            "APPROVED BY",
            "POLICY",
            "CREATED",
            "STATE",
        ],
        &rows,
    )
}

/// One `history -o yaml|json` record.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Record<'a> {
    #[serde(flatten)]
    pub revision: &'a Revision,
    pub current: bool,
    pub approved: bool,
}

pub fn records<'a>(
    revisions: &'a [Revision],
    current: &str,
    approved: Option<&str>,
) -> Vec<Record<'a>> {
    revisions
        .iter()
        .map(|r| Record {
            revision: r,
            current: r.spec_hash == current,
            approved: Some(r.spec_hash.as_str()) == approved,
        })
        .collect()
}

/// What `diff` compares the current spec against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Against<'a> {
    /// The newest revision of another spec.
    Previous,
    Number(i64),
    /// The approved spec (its hash).
    Approved(Option<&'a str>),
}

/// The revision `against` names, or why there is none (a sentence).
pub fn pick<'r>(
    revisions: &'r [Revision],
    agent: &str,
    current: &str,
    against: Against<'_>,
) -> Result<&'r Revision, String> {
    match against {
        Against::Previous => revisions
            .iter()
            .rev()
            .find(|r| r.spec_hash != current)
            .ok_or_else(|| format!("agent {agent} has no revision other than its current spec")),
        Against::Number(n) => revisions
            .iter()
            .find(|r| r.revision == n)
            .ok_or_else(|| {
                let known: Vec<String> = revisions.iter().map(|r| r.revision.to_string()).collect();
                format!(
                    "agent {agent} has no revision {n} (it has {}; see `kubectl agentgov history {agent}`)",
                    if known.is_empty() { "none".into() } else { known.join(", ") }
                )
            }),
        Against::Approved(None) => Err(format!("agent {agent} has never been approved")),
        Against::Approved(Some(hash)) => revisions
            .iter()
            .find(|r| r.spec_hash == hash)
            .ok_or_else(|| {
                format!(
                    "agent {agent}'s approved spec (hash {}) has no revision",
                    short(hash)
                )
            }),
    }
}

/// A unified diff (3 lines of context) of two specs as YAML, `old` labelled `old_label`;
/// coloured as a terminal shows diffs when `color`. Empty when they are the same.
pub fn unified(
    old: &Value,
    new: &Value,
    old_label: &str,
    new_label: &str,
    color: bool,
) -> Result<String, serde_yaml::Error> {
    let (old, new) = (serde_yaml::to_string(old)?, serde_yaml::to_string(new)?);
    if old == new {
        return Ok(String::new());
    }
    let diff = similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(old_label, new_label)
        .to_string();
    if !color {
        return Ok(diff);
    }
    Ok(diff
        .lines()
        .map(|line| {
            let code = if line.starts_with("+++") || line.starts_with("---") {
                "1"
            } else if line.starts_with('+') {
                "32"
            } else if line.starts_with('-') {
                "31"
            } else if line.starts_with("@@") {
                "36"
            } else {
                ""
            };
            if code.is_empty() {
                format!("{line}\n")
            } else {
                format!("\x1b[{code}m{line}\x1b[0m\n")
            }
        })
        .collect())
}

/// The JSON merge patch (RFC 7386) that turns `current` into `target`: keys `target` lacks are
/// removed (null), objects patched key by key, anything else replaced.
pub fn merge_patch(current: &Value, target: &Value) -> Value {
    match (current, target) {
        (Value::Object(current), Value::Object(target)) => {
            let mut patch = Map::new();
            for key in current.keys().filter(|k| !target.contains_key(*k)) {
                patch.insert(key.clone(), Value::Null);
            }
            for (key, value) in target {
                match current.get(key) {
                    Some(old) if old == value => {}
                    Some(old) => {
                        patch.insert(key.clone(), merge_patch(old, value));
                    }
                    None => {
                        patch.insert(key.clone(), value.clone());
                    }
                }
            }
            Value::Object(patch)
        }
        _ => target.clone(),
    }
}

/// What a rollback came to, once the operator judged the restored spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restored {
    /// Signed again under approvals of that spec hash: their names and approvers.
    Reused {
        approvals: Vec<String>,
        approvers: Vec<String>,
        status: GovernanceStatus,
    },
    /// A sandbox: no approval needed.
    Sandbox,
    /// Not approved: a new approval is needed.
    NeedsApproval,
    /// The operator has not judged the restored spec yet.
    NotJudged,
}

/// What the operator made of `agent` (read after the rollback to the spec hashing to `hash`,
/// generation `generation`), with the namespace's AgentPromotions to name the approvals.
pub fn restored(
    agent: &Agent,
    hash: &str,
    generation: Option<i64>,
    promotions: &[AgentPromotion],
) -> Restored {
    let Some(status) = agent.status.as_ref() else {
        return Restored::NotJudged;
    };
    if status.observed_generation < generation {
        return Restored::NotJudged;
    }
    if agent.spec.mode == AgentMode::Sandbox {
        return Restored::Sandbox;
    }
    match (status.governance_status, status.proof.as_ref()) {
        (Some(g), Some(proof)) if g.is_governed_in_force() && proof.spec_hash == hash => {
            let approvals = proof
                .promotions
                .iter()
                .map(|uid| {
                    promotions
                        .iter()
                        .find(|p| p.metadata.uid.as_deref() == Some(uid))
                        .and_then(|p| p.metadata.name.clone())
                        .unwrap_or_else(|| uid.clone())
                })
                .collect();
            Restored::Reused {
                approvals,
                approvers: proof.approvers.iter().map(|a| a.username.clone()).collect(),
                status: g,
            }
        }
        _ => Restored::NeedsApproval,
    }
}

/// The sentence `rollback` ends with.
pub fn sentence(restored: &Restored, agent: &str, hash: &str) -> String {
    match restored {
        Restored::Reused {
            approvals,
            approvers,
            status,
        } => format!(
            "approval {} by {} for spec hash {} is reused; the agent returns to {}",
            approvals.join(", "),
            approvers.join(", "),
            short(hash),
            status.as_str()
        ),
        Restored::Sandbox => format!("agent {agent} is a sandbox: its spec needs no approval"),
        Restored::NeedsApproval => format!(
            "no valid approval for spec hash {}: run `kubectl agentgov promote {agent}`",
            short(hash)
        ),
        Restored::NotJudged => format!(
            "the operator has not judged spec hash {} yet: `kubectl agentgov history {agent}` and `kubectl get agent {agent}` show what it decides",
            short(hash)
        ),
    }
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
