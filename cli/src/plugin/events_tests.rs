use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::EventSeries;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};

use super::*;
use crate::plugin::fixtures::{NOW, at};

fn event(kind: &str, name: &str, reason: &str, seen: i64) -> Event {
    Event {
        regarding: Some(ObjectReference {
            kind: Some(kind.into()),
            name: Some(name.into()),
            ..ObjectReference::default()
        }),
        reason: Some(reason.into()),
        note: Some(format!("{reason} happened")),
        type_: Some("Normal".into()),
        event_time: Some(MicroTime(at(seen))),
        ..Event::default()
    }
}

fn condition(type_: &str, status: &str, reason: &str, since: i64) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: format!("{reason} message"),
        last_transition_time: Time(at(since)),
        observed_generation: Some(1),
    }
}

fn status(governance: Option<GovernanceStatus>, conditions: Vec<Condition>) -> AgentStatus {
    AgentStatus {
        governance_status: governance,
        conditions,
        ..AgentStatus::default()
    }
}

#[test]
fn events_about_the_agent_and_its_promotions_are_its_own() {
    let promotions: BTreeSet<String> = ["auditor-abc".to_string()].into();
    assert!(concerns(
        &event("Agent", "auditor", "Promoted", NOW),
        "auditor",
        &promotions
    ));
    assert!(concerns(
        &event("AgentPromotion", "auditor-abc", "X", NOW),
        "auditor",
        &promotions
    ));
    assert!(!concerns(
        &event("Agent", "other", "Promoted", NOW),
        "auditor",
        &promotions
    ));
    assert!(!concerns(
        &event("Pod", "auditor", "Started", NOW),
        "auditor",
        &promotions
    ));
    assert!(!concerns(&Event::default(), "auditor", &promotions));
}

#[test]
fn an_event_is_last_seen_at_its_series_end_else_its_time() {
    let mut e = event("Agent", "auditor", "Promoted", NOW - 60);
    let line = from_event(&e);
    assert_eq!(
        line,
        Line {
            last_seen: Some(at(NOW - 60)),
            type_: "Normal".into(),
            reason: "Promoted".into(),
            object: "agent/auditor".into(),
            message: "Promoted happened".into(),
        }
    );
    e.series = Some(EventSeries {
        count: 3,
        last_observed_time: MicroTime(at(NOW - 5)),
    });
    assert_eq!(from_event(&e).last_seen, Some(at(NOW - 5)));
}

#[test]
fn status_changes_name_the_governance_status_and_the_conditions_that_changed() {
    let before = status(
        Some(GovernanceStatus::Sandbox),
        vec![
            condition("Ready", "False", "AwaitingApproval", NOW - 100),
            condition("Expired", "False", "Active", NOW - 100),
        ],
    );
    let after = status(
        Some(GovernanceStatus::GovernedValid),
        vec![
            condition("Ready", "True", "Promoted", NOW - 2),
            condition("Expired", "False", "Active", NOW - 100),
        ],
    );
    let lines = status_changes("auditor", Some(&before), Some(&after), at(NOW));
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0].message, "SANDBOX -> GOVERNED_VALID");
    assert_eq!(lines[0].type_, "Normal");
    assert_eq!(lines[1].message, "Ready=True: Promoted message");
    assert_eq!(lines[1].last_seen, Some(at(NOW - 2)));

    let invalidated = status(Some(GovernanceStatus::GovernedInvalidated), vec![]);
    let lines = status_changes("auditor", Some(&after), Some(&invalidated), at(NOW));
    assert_eq!(lines[0].type_, "Warning");
    assert_eq!(lines[0].message, "GOVERNED_VALID -> GOVERNED_INVALIDATED");

    // Nothing before: the conditions as they stand, no governance line.
    let lines = status_changes("auditor", None, Some(&after), at(NOW));
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1].last_seen, Some(at(NOW - 100)));
    assert!(status_changes("auditor", Some(&after), Some(&after), at(NOW)).is_empty());
}

#[test]
fn lines_print_as_a_table_or_one_by_one() {
    let lines = sorted(vec![
        from_event(&event("Agent", "auditor", "Promoted", NOW - 30)),
        from_event(&event("Agent", "auditor", "AwaitingApproval", NOW - 300)),
    ]);
    assert_eq!(
        table(&lines, at(NOW)),
        "LAST SEEN   TYPE      REASON             OBJECT          MESSAGE\n\
         5m          Normal    AwaitingApproval   agent/auditor   AwaitingApproval happened\n\
         30s         Normal    Promoted           agent/auditor   Promoted happened\n"
    );
    assert_eq!(
        follow_header(),
        "LAST SEEN   TYPE      REASON                OBJECT                              MESSAGE\n"
    );
    let line = follow_line(&lines[1], at(NOW));
    assert!(
        line.starts_with("30s         Normal    Promoted              agent/auditor"),
        "{line}"
    );
    let json = serde_json::to_value(&lines[1]).unwrap();
    assert_eq!(json["type"], "Normal");
    assert_eq!(json["lastSeen"], "2027-01-15T07:59:30Z");
}
