//! An agent's versions as `ControllerRevision`s (apps/v1), as Deployments and StatefulSets keep
//! theirs: one per distinct spec hash the agent has had, owned by the Agent (so they go with
//! it), written by the operator, read by `kubectl agentgov history`, `diff` and `rollback`.
//!
//! A revision's `data` (immutable once created) holds the spec and its hash; `revision` grows
//! (a spec that comes back is renumbered to the newest, as a Deployment's rollback is). What the
//! operator learns later, the approval it signed that spec under, sits in annotations, since
//! `data` cannot change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The label naming the agent a revision belongs to (its name, cut to a label value's 63
/// characters; readers match the owner's uid as well): the agent label, as on its Pods.
pub use crate::agent::AGENT_LABEL;
/// The spec hash a revision holds (also in `data.specHash`): the annotation that carries it on a
/// managed agent's Pod template too.
pub use crate::workload::SPEC_HASH_ANNOTATION;
/// Who approved the spec, comma-separated usernames, as the proof names them.
pub const APPROVED_BY_ANNOTATION: &str = "agentgov.dev/approved-by";
/// The policy hash the spec was last signed under.
pub const POLICY_HASH_ANNOTATION: &str = "agentgov.dev/policy-hash";
/// When it was signed (the proof's `signedAt`).
pub const APPROVED_AT_ANNOTATION: &str = "agentgov.dev/approved-at";
/// The AgentPromotions it was promoted under, comma-separated names.
pub const APPROVALS_ANNOTATION: &str = "agentgov.dev/approvals";

/// A revision's `data`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RevisionData<S> {
    /// SHA-256 over the canonical JSON of `spec`.
    pub spec_hash: String,
    /// The agent's spec, as it was.
    pub spec: S,
}

/// The approval a spec was signed under, as the operator records it on the revision.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct RevisionApproval {
    /// The approvers' usernames.
    pub approved_by: Vec<String>,
    pub policy_hash: String,
    /// RFC 3339, the proof's `signedAt`.
    pub approved_at: String,
    /// The names of the AgentPromotions the proof names.
    pub approvals: Vec<String>,
}

impl RevisionApproval {
    /// As annotations.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                APPROVED_BY_ANNOTATION.to_string(),
                self.approved_by.join(","),
            ),
            (POLICY_HASH_ANNOTATION.to_string(), self.policy_hash.clone()),
            (APPROVED_AT_ANNOTATION.to_string(), self.approved_at.clone()),
            (APPROVALS_ANNOTATION.to_string(), self.approvals.join(",")),
        ])
    }

    /// From a revision's annotations (None: never approved).
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Option<Self> {
        let list = |key: &str| -> Vec<String> {
            annotations
                .get(key)
                .map(|v| {
                    v.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let approved_by = list(APPROVED_BY_ANNOTATION);
        if approved_by.is_empty() {
            return None;
        }
        Some(RevisionApproval {
            approved_by,
            policy_hash: annotations
                .get(POLICY_HASH_ANNOTATION)
                .cloned()
                .unwrap_or_default(),
            approved_at: annotations
                .get(APPROVED_AT_ANNOTATION)
                .cloned()
                .unwrap_or_default(),
            approvals: list(APPROVALS_ANNOTATION),
        })
    }
}

/// The name of the agent's revision of the spec with this hash: `<agent>-<10 hex digits>`, the
/// agent's name cut so the whole stays a DNS subdomain (253).
pub fn revision_name(agent: &str, spec_hash: &str) -> String {
    let short = spec_hash.get(..10).unwrap_or(spec_hash);
    let agent = agent
        .get(..242)
        .unwrap_or(agent)
        .trim_end_matches(['-', '.']);
    format!("{agent}-{short}")
}

/// The [`AGENT_LABEL`] value for an agent: its name, cut to 63 characters and ending
/// alphanumeric.
pub fn agent_label_value(agent: &str) -> String {
    let cut = agent.get(..63).unwrap_or(agent);
    cut.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approval_round_trips_through_annotations() {
        let approval = RevisionApproval {
            approved_by: vec!["alice".into(), "bob".into()],
            policy_hash: "ab".repeat(32),
            approved_at: "2026-01-01T00:00:00Z".into(),
            approvals: vec!["a-1".into(), "a-2".into()],
        };
        let annotations = approval.annotations();
        assert_eq!(annotations[APPROVED_BY_ANNOTATION], "alice,bob");
        assert_eq!(
            RevisionApproval::from_annotations(&annotations),
            Some(approval)
        );
        assert_eq!(RevisionApproval::from_annotations(&BTreeMap::new()), None);
    }

    #[test]
    fn names_fit_the_api_server() {
        let hash = "0123456789abcdef".repeat(4);
        assert_eq!(revision_name("auditor", &hash), "auditor-0123456789");
        let long = "a".repeat(253);
        assert_eq!(revision_name(&long, &hash).len(), 253);
        assert_eq!(agent_label_value("auditor"), "auditor");
        let label = agent_label_value(&format!("{}-b", "x".repeat(62)));
        assert_eq!(label, "x".repeat(62));
    }
}
