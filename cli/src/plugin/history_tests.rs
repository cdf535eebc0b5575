//! The pure parts of `history`, `diff` and `rollback` over plain data.

use std::collections::BTreeMap;

use agentgov_api::agent::AgentStatus;
use agentgov_api::proof::{Approver, ProofBundle};
use agentgov_api::revision::{RevisionApproval, RevisionData, SPEC_HASH_ANNOTATION};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde_json::json;

use super::*;

fn hash(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn agent() -> Agent {
    let mut agent = Agent::new("auditor", agentgov_api::testing::governed_spec());
    agent.metadata.namespace = Some("team-a".into());
    agent.metadata.uid = Some("uid-auditor".into());
    agent
}

fn controller_revision(
    n: u8,
    revision: i64,
    owner: &str,
    approval: Option<&RevisionApproval>,
) -> ControllerRevision {
    let mut annotations = BTreeMap::from([(SPEC_HASH_ANNOTATION.to_string(), hash(n))]);
    if let Some(a) = approval {
        annotations.extend(a.annotations());
    }
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("auditor-{n}")),
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                controller: Some(true),
                uid: owner.into(),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        data: RawExtension(
            serde_json::to_value(RevisionData {
                spec_hash: hash(n),
                spec: json!({"description": format!("version {n}")}),
            })
            .unwrap(),
        ),
        revision: Some(revision),
    }
}

fn alice() -> RevisionApproval {
    RevisionApproval {
        approved_by: vec!["alice".into()],
        policy_hash: "ab".repeat(32),
        approved_at: "2026-01-01T00:00:00Z".into(),
        approvals: vec!["auditor-0101010101".into()],
    }
}

#[test]
fn only_the_agents_own_revisions_are_read_oldest_first() {
    let items = [
        controller_revision(2, 3, "uid-auditor", None),
        controller_revision(1, 1, "uid-auditor", Some(&alice())),
        controller_revision(9, 2, "uid-someone-else", None),
    ];
    let revisions = revisions(&agent(), &items);
    let numbers: Vec<i64> = revisions.iter().map(|r| r.revision).collect();
    assert_eq!(numbers, [1, 3]);
    assert_eq!(revisions[0].approval, Some(alice()));
    assert_eq!(revisions[1].spec, json!({"description": "version 2"}));
}

#[test]
fn the_table_marks_the_current_and_the_approved_revision() {
    let items = [
        controller_revision(1, 1, "uid-auditor", Some(&alice())),
        controller_revision(2, 2, "uid-auditor", None),
    ];
    let revisions = revisions(&agent(), &items);
    let text = table(&revisions, &hash(2), Some(&hash(1)), Timestamp::now());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "REVISION", "SPEC", "HASH", "APPROVED", "BY", "POLICY", "CREATED", "STATE"
        ]
    );
    let first: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        first,
        [
            "1",
            "010101010101",
            "alice",
            "abababababab",
            "<unknown>",
            "approved"
        ]
    );
    let second: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        second,
        [
            "2",
            "020202020202",
            "<none>",
            "<none>",
            "<unknown>",
            "current"
        ]
    );
    let records = records(&revisions, &hash(2), Some(&hash(1)));
    let value = serde_json::to_value(&records).unwrap();
    assert_eq!(value[0]["revision"], 1);
    assert_eq!(value[0]["approved"], true);
    assert_eq!(value[0]["approval"]["approvedBy"][0], "alice");
    assert_eq!(value[1]["current"], true);
}

#[test]
fn diffs_and_rollbacks_pick_their_revision_or_say_why_not() {
    let items = [
        controller_revision(1, 1, "uid-auditor", Some(&alice())),
        controller_revision(2, 2, "uid-auditor", None),
        controller_revision(3, 3, "uid-auditor", None),
    ];
    let revisions = revisions(&agent(), &items);
    // The newest revision of another spec.
    let current = hash(3);
    let pick_of = |a| pick(&revisions, "auditor", &current, a).map(|r| r.revision);
    assert_eq!(pick_of(Against::Previous), Ok(2));
    assert_eq!(pick_of(Against::Number(1)), Ok(1));
    let approved = hash(1);
    assert_eq!(pick_of(Against::Approved(Some(&approved))), Ok(1));
    let missing = pick_of(Against::Number(7)).unwrap_err();
    assert!(
        missing.contains("no revision 7") && missing.contains("1, 2, 3"),
        "{missing}"
    );
    assert!(
        pick_of(Against::Approved(None))
            .unwrap_err()
            .contains("never been approved")
    );
    let only = &revisions[2..];
    assert!(
        pick(only, "auditor", &current, Against::Previous)
            .unwrap_err()
            .contains("no revision other than")
    );
}

#[test]
fn the_diff_is_unified_over_yaml_and_coloured_on_request() {
    let old = json!({"description": "version 1", "model": "gpt-4o"});
    let new = json!({"description": "version 2", "model": "gpt-4o"});
    let plain = unified(&old, &new, "auditor/revision-1", "auditor/current", false).unwrap();
    assert_eq!(
        plain,
        "--- auditor/revision-1\n+++ auditor/current\n@@ -1,2 +1,2 @@\n-description: version 1\n+description: version 2\n model: gpt-4o\n"
    );
    let coloured = unified(&old, &new, "a", "b", true).unwrap();
    assert!(
        coloured.contains("\x1b[31m-description: version 1\x1b[0m"),
        "{coloured}"
    );
    assert!(
        coloured.contains("\x1b[32m+description: version 2\x1b[0m"),
        "{coloured}"
    );
    assert_eq!(unified(&old, &old, "a", "b", true).unwrap(), "");
}

#[test]
fn the_merge_patch_removes_what_the_restored_spec_lacks() {
    let current = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2], "gone": true});
    let target = json!({"a": 1, "b": {"c": 5}, "e": [1], "new": "x"});
    let patch = merge_patch(&current, &target);
    assert_eq!(
        patch,
        json!({"b": {"c": 5, "d": null}, "e": [1], "gone": null, "new": "x"})
    );
}

fn governed(status: GovernanceStatus, spec_hash: &str, generation: i64) -> Agent {
    let mut agent = agent();
    agent.status = Some(AgentStatus {
        observed_generation: Some(generation),
        governance_status: Some(status),
        proof: Some(ProofBundle {
            spec_hash: spec_hash.into(),
            approvers: vec![Approver {
                username: "alice".into(),
                uid: String::new(),
            }],
            promotions: vec!["uid-p1".into()],
            exceptions: Vec::new(),
            version: 2,
            policy_hash: String::new(),
            signature: String::new(),
            algorithm: agentgov_api::keyring::Algorithm::Ed25519,
            key_id: "k1".into(),
            signed_at: String::new(),
            agent_uid: "uid-auditor".into(),
        }),
        ..AgentStatus::default()
    });
    agent
}

#[test]
fn a_rollback_says_whether_an_approval_is_reused() {
    let mut promotion = AgentPromotion::new(
        "auditor-0101010101",
        agentgov_api::AgentPromotionSpec {
            agent: "auditor".into(),
            spec_hash: hash(1),
            reason: None,
            requested_by: None,
        },
    );
    promotion.metadata.uid = Some("uid-p1".into());
    let promotions = [promotion];
    let valid = governed(GovernanceStatus::GovernedValid, &hash(1), 3);
    let reused = restored(&valid, &hash(1), Some(3), &promotions);
    assert_eq!(
        reused,
        Restored::Reused {
            approvals: vec!["auditor-0101010101".into()],
            approvers: vec!["alice".into()],
            status: GovernanceStatus::GovernedValid,
        }
    );
    assert_eq!(
        sentence(&reused, "team-a/auditor", &hash(1)),
        "approval auditor-0101010101 by alice for spec hash 010101010101 is reused; the agent returns to GOVERNED_VALID"
    );
    // Not judged yet: the status is of an older generation.
    assert_eq!(
        restored(&valid, &hash(1), Some(4), &promotions),
        Restored::NotJudged
    );
    // Judged, not in force for this hash.
    let invalid = governed(GovernanceStatus::GovernedInvalidated, &hash(1), 4);
    let needs = restored(&invalid, &hash(2), Some(4), &promotions);
    assert_eq!(needs, Restored::NeedsApproval);
    assert_eq!(
        sentence(&needs, "auditor", &hash(2)),
        "no valid approval for spec hash 020202020202: run `kubectl agentgov promote auditor`"
    );
}
