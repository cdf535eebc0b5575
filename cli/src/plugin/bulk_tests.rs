use agentgov_api::agent::{GovernanceStatus, SandboxSpec};
use agentgov_api::keyring::KeyRing;
use jiff::SignedDuration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::*;
use crate::plugin::fixtures::{NOW, at, governed, key_ring_config, sandbox, signed};

const HOUR: i64 = 3_600;

fn hours(n: i64) -> SignedDuration {
    SignedDuration::from_hours(n)
}

#[test]
fn extend_moves_a_ttl_or_an_expiry_time_later_and_skips_governed_agents() {
    let by_ttl = sandbox("team-a", "lab", NOW - HOUR, 2 * HOUR);
    let mut by_time = sandbox("team-a", "lab-2", NOW - HOUR, HOUR);
    by_time.spec.sandbox = Some(SandboxSpec {
        ttl_seconds: None,
        expires_at: Some(Time(at(NOW + 30 * 60))),
    });
    let gov = governed("team-a", "auditor", Some(GovernanceStatus::GovernedValid));
    let steps = plan(
        Operation::Extend(hours(24)),
        &[by_ttl, by_time, gov],
        at(NOW),
    );
    assert_eq!(steps[0].agent, "team-a/lab");
    assert_eq!(steps[0].now, time(at(NOW + HOUR)));
    assert_eq!(steps[0].after, time(at(NOW + 25 * HOUR)));
    assert_eq!(
        steps[0].change,
        Change::Patch(json!({"spec": {"sandbox": {"ttlSeconds": 26 * HOUR}}}))
    );
    assert_eq!(steps[1].after, time(at(NOW + 30 * 60 + 24 * HOUR)));
    assert_eq!(
        steps[1].change,
        Change::Patch(
            json!({"spec": {"sandbox": {"expiresAt": time(at(NOW + 30 * 60 + 24 * HOUR))}}})
        )
    );
    assert!(steps[2].is_skipped());
    assert_eq!(steps[2].after, "(skipped)");
    let row = |agent: &str, now: &str, after: &str| format!("{agent:<17}{now:<26}{after}\n");
    let expected = [
        row("AGENT", "NOW", "AFTER"),
        row(
            "team-a/lab",
            &time(at(NOW + HOUR)),
            &time(at(NOW + 25 * HOUR)),
        ),
        row(
            "team-a/lab-2",
            &time(at(NOW + 30 * 60)),
            &time(at(NOW + 30 * 60 + 24 * HOUR)),
        ),
        row("team-a/auditor", "governed GOVERNED_VALID", "(skipped)"),
        "agent team-a/auditor is skipped: a governed agent does not expire\n".to_string(),
    ]
    .concat();
    assert_eq!(preview(&steps), expected);
}

#[test]
fn an_extension_past_the_maximum_ttl_is_skipped() {
    // Created 30 days ago less an hour, living the maximum: nothing later is allowed.
    let old = sandbox("team-a", "old", NOW - 30 * 24 * HOUR + HOUR, 30 * 24 * HOUR);
    let steps = plan(Operation::Extend(hours(24)), &[old], at(NOW));
    let Change::Skip(why) = &steps[0].change else {
        panic!("{steps:?}");
    };
    assert!(why.contains("maximum sandbox TTL"), "{why}");
    assert_eq!(steps[0].after, "(skipped)");
}

#[test]
fn demote_makes_a_contained_sandbox_that_expires_after_the_ttl() {
    let gov = governed("team-a", "auditor", Some(GovernanceStatus::GovernedValid));
    let lab = sandbox("team-a", "lab", NOW - HOUR, 2 * HOUR);
    let steps = plan(Operation::Demote(hours(24)), &[gov.clone(), lab], at(NOW));
    let until = time(at(NOW + 24 * HOUR));
    assert_eq!(steps[0].now, "governed GOVERNED_VALID");
    assert_eq!(steps[0].after, format!("sandbox until {until}, contained"));
    let Change::Patch(patch) = &steps[0].change else {
        panic!("{steps:?}");
    };
    let demoted = patched(&gov, patch).unwrap();
    assert_eq!(demoted.spec.mode, AgentMode::Sandbox);
    assert_eq!(
        demoted.spec.sandbox,
        Some(SandboxSpec {
            ttl_seconds: None,
            expires_at: Some(Time(at(NOW + 24 * HOUR)))
        })
    );
    let c = demoted.spec.anatomy.containment;
    assert!(!c.external_calls && !c.persistent_writes);
    // Everything else kept.
    assert_eq!(
        demoted.spec.anatomy.capabilities,
        gov.spec.anatomy.capabilities
    );
    assert_eq!(demoted.spec.anatomy.reasoning, gov.spec.anatomy.reasoning);
    assert_eq!(
        done(Operation::Demote(hours(24)), Some(&demoted), None),
        format!("demoted to a sandbox until {until}")
    );
    assert_eq!(steps[1].change, Change::Skip("already a sandbox".into()));
    // An agent older than the maximum sandbox life cannot be a live sandbox.
    let mut ancient = gov;
    ancient.metadata.creation_timestamp = Some(Time(at(NOW - 40 * 24 * HOUR)));
    let steps = plan(Operation::Demote(hours(24)), &[ancient], at(NOW));
    assert!(steps[0].is_skipped(), "{steps:?}");
}

#[test]
fn promote_approves_governed_requests_only_and_delete_takes_all() {
    let ring = KeyRing::from_config(&key_ring_config()).unwrap();
    let valid = signed(&ring);
    let waiting = governed("team-a", "auditor", Some(GovernanceStatus::Sandbox));
    let lab = sandbox("team-a", "lab", NOW - HOUR, 2 * HOUR);
    let agents = [valid, waiting.clone(), lab];
    let steps = plan(Operation::Promote, &agents, at(NOW));
    let hash = current_hash(&waiting).unwrap();
    assert_eq!(
        steps[0].change,
        Change::Skip("already GOVERNED_VALID for its spec".into())
    );
    assert_eq!(steps[1].change, Change::Promote);
    assert_eq!(
        steps[1].after,
        format!("approved at spec hash {}", &hash[..12])
    );
    assert!(steps[2].is_skipped());
    assert_eq!(
        done(Operation::Promote, None, Some("auditor-0123456789")),
        "approved by agentpromotion auditor-0123456789"
    );
    let steps = plan(Operation::Delete, &agents, at(NOW));
    assert!(
        steps
            .iter()
            .all(|s| s.change == Change::Delete && s.after == "deleted")
    );
    assert_eq!(done(Operation::Delete, None, None), "deleted");
}

#[test]
fn merge_patches_apply_as_rfc_7386_says_and_answers_confirm() {
    let lab = sandbox("team-a", "lab", NOW - HOUR, 2 * HOUR);
    let extended = patched(
        &lab,
        &json!({"spec": {"sandbox": {"ttlSeconds": 7_200 + 3_600}}}),
    )
    .unwrap();
    assert_eq!(
        done(Operation::Extend(hours(1)), Some(&extended), None),
        format!("extended to {}", time(at(NOW + 2 * HOUR)))
    );
    assert_eq!(extended.spec.description, lab.spec.description);
    let mut doc = json!({"a": {"b": 1, "c": 2}, "d": [1]});
    merge(&mut doc, &json!({"a": {"b": null, "e": 3}, "d": [2]}));
    assert_eq!(doc, json!({"a": {"c": 2, "e": 3}, "d": [2]}));
    for yes in ["y", "Y", "yes", " YES\n"] {
        assert!(confirmed(yes), "{yes:?}");
    }
    for no in ["", "n", "no", "yess", "\n"] {
        assert!(!confirmed(no), "{no:?}");
    }
}
