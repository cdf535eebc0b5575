use agentgov_api::agent::{AgentMode, GovernanceStatus, RoleClass};
use jiff::SignedDuration;

use super::*;
use crate::plugin::fixtures::{NOW, at, governed, sandbox};

fn names(agents: &[Agent]) -> Vec<String> {
    agents
        .iter()
        .map(|a| {
            format!(
                "{}/{}",
                a.metadata.namespace.as_deref().unwrap(),
                a.metadata.name.as_deref().unwrap()
            )
        })
        .collect()
}

fn agents() -> Vec<Agent> {
    vec![
        governed(
            "b",
            "invoice-auditor",
            Some(GovernanceStatus::GovernedValid),
        ),
        sandbox("b", "long", NOW - 60, 7 * 24 * 3600),
        sandbox("a", "short", NOW - 60, 3_600),
        governed("a", "pending", None),
    ]
}

#[test]
fn no_filter_keeps_all_sorted_by_namespace_then_name() {
    let kept = Filter::default().apply(agents(), at(NOW));
    assert_eq!(
        names(&kept),
        ["a/pending", "a/short", "b/invoice-auditor", "b/long"]
    );
}

#[test]
fn each_filter_narrows() {
    let only = |filter: Filter| names(&filter.apply(agents(), at(NOW)));
    let status = Filter {
        status: Some(GovernanceStatus::GovernedValid),
        ..Filter::default()
    };
    assert_eq!(only(status), ["b/invoice-auditor"]);
    let role = Filter {
        role: Some(RoleClass::Ideation),
        ..Filter::default()
    };
    assert_eq!(only(role), ["a/short", "b/long"]);
    let mode = Filter {
        mode: Some(AgentMode::Governed),
        ..Filter::default()
    };
    assert_eq!(only(mode), ["a/pending", "b/invoice-auditor"]);
    let within = Filter {
        expiring_within: Some(SignedDuration::from_hours(24)),
        ..Filter::default()
    };
    assert_eq!(only(within), ["a/short"]);
    // A capability, in another case.
    let search = Filter {
        search: Some("SUMMARISATION".into()),
        ..Filter::default()
    };
    assert_eq!(only(search), ["a/short", "b/long"]);
    // The description.
    let search = Filter {
        search: Some("purchase orders".into()),
        ..Filter::default()
    };
    assert_eq!(only(search), ["a/pending", "b/invoice-auditor"]);
    // The name, with another filter.
    let both = Filter {
        search: Some("Pend".into()),
        mode: Some(AgentMode::Governed),
        ..Filter::default()
    };
    assert_eq!(only(both), ["a/pending"]);
}

#[test]
fn expired_sandboxes_are_not_expiring() {
    let expired = sandbox("a", "gone", NOW - 7_200, 3_600);
    let within = Filter {
        expiring_within: Some(SignedDuration::from_hours(24)),
        ..Filter::default()
    };
    assert!(!within.matches(&expired, at(NOW)));
    assert_eq!(expires_at(&expired), Some(at(NOW - 3_600)));
    assert_eq!(expires_at(&governed("a", "g", None)), None);
}

#[test]
fn the_ceiling_of_the_default_policy_applies() {
    let forever = sandbox("a", "forever", NOW, i64::MAX / 2);
    assert_eq!(expires_at(&forever), Some(at(NOW + 30 * 24 * 3600)));
}

#[test]
fn flags_parse_in_any_case() {
    assert_eq!(
        parse_status("governed_valid"),
        Ok(GovernanceStatus::GovernedValid)
    );
    assert_eq!(parse_status("SANDBOX"), Ok(GovernanceStatus::Sandbox));
    let err = parse_status("valid").unwrap_err();
    assert!(err.contains("GOVERNED_RESTRICTED"), "{err}");
    assert_eq!(parse_role("Compliance"), Ok(RoleClass::Compliance));
    assert!(parse_role("ops").unwrap_err().contains("role class"));
    assert_eq!(parse_mode("GOVERNED"), Ok(AgentMode::Governed));
    assert!(parse_mode("prod").is_err());
    assert_eq!(parse_within("24h"), Ok(SignedDuration::from_hours(24)));
    assert_eq!(parse_within("90m"), Ok(SignedDuration::from_mins(90)));
    assert!(parse_within("soon").is_err());
}
