use super::*;
use agentgov_api::AgentStatus;
use agentgov_api::agent::PolicyRef;
use agentgov_api::conditions::{ConditionUpdate, upsert};
use jiff::Timestamp;
use kube::runtime::watcher::Event;

use agentgov_api::testing::governed_spec;

use crate::fixtures::{NAMESPACE, agent, compact, sandbox_spec};

const AT: i64 = 1_700_000_000;

/// An agent with this status, judged against `default` version `v2`, Ready since [`AT`].
fn judged(name: &str, governance: GovernanceStatus, denies: &[&str], warnings: &[&str]) -> Agent {
    let spec = if governance == GovernanceStatus::Sandbox {
        sandbox_spec()
    } else {
        governed_spec()
    };
    let mut a = agent(name, spec);
    let mut status = AgentStatus {
        governance_status: Some(governance),
        policy: Some(PolicyRef {
            name: "default".into(),
            version: "v2".into(),
            hash: "abc".into(),
        }),
        denies: denies.iter().map(|d| d.to_string()).collect(),
        warnings: warnings.iter().map(|w| w.to_string()).collect(),
        ..AgentStatus::default()
    };
    upsert(
        &mut status.conditions,
        ConditionUpdate {
            type_: READY,
            status: governance.is_governed_in_force(),
            reason: "Test",
            message: format!("{name} is {}", governance.as_str()),
        },
        Some(1),
        Timestamp::from_second(AT).unwrap(),
    );
    a.status = Some(status);
    a
}

fn no_codes(_: &str) -> Option<Vec<String>> {
    None
}

#[test]
fn each_status_maps_to_its_result_and_the_summary_counts_them() {
    let agents = [
        judged("valid", GovernanceStatus::GovernedValid, &[], &[]),
        judged(
            "restricted",
            GovernanceStatus::GovernedRestricted,
            &[],
            &["hot", "costly"],
        ),
        judged(
            "invalid",
            GovernanceStatus::GovernedInvalidated,
            &["too hot", "too costly"],
            &[],
        ),
        judged("sandbox", GovernanceStatus::Sandbox, &[], &[]),
    ];
    let invalid_uid = agents[2].metadata.uid.clone().unwrap();
    let report = build(NAMESPACE, "default", &agents, |uid| {
        (uid == invalid_uid).then(|| vec!["temperature".to_string(), "budget".to_string()])
    });
    assert_eq!(
        report.summary,
        Summary {
            pass: 1,
            fail: 2,
            warn: 1,
            error: 0,
            skip: 1
        }
    );
    assert_eq!(report.metadata.name, REPORT_NAME);
    assert_eq!(report.metadata.namespace, NAMESPACE);
    assert_eq!(
        report.metadata.labels["app.kubernetes.io/managed-by"],
        "agentgov"
    );
    // Sorted by agent name: invalid (two denies), restricted, sandbox, valid.
    let rows: Vec<(&str, Outcome, &str, &str)> = report
        .results
        .iter()
        .map(|r| {
            (
                r.resources[0].name.as_str(),
                r.result,
                r.rule.as_str(),
                r.message.as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("invalid", Outcome::Fail, "temperature", "too hot"),
            ("invalid", Outcome::Fail, "budget", "too costly"),
            ("restricted", Outcome::Warn, PROMOTION_RULE, "hot; costly"),
            (
                "sandbox",
                Outcome::Skip,
                PROMOTION_RULE,
                "sandbox is SANDBOX"
            ),
            (
                "valid",
                Outcome::Pass,
                PROMOTION_RULE,
                "valid is GOVERNED_VALID"
            ),
        ]
    );
    let valid = &report.results[4];
    assert_eq!(valid.policy, "default/v2");
    assert_eq!(valid.source, "agentgov");
    assert_eq!(
        valid.timestamp,
        ReportTime {
            seconds: AT,
            nanos: 0
        }
    );
    assert_eq!(valid.resources[0].kind, "Agent");
    assert_eq!(valid.resources[0].api_version, "agentgov.dev/v1alpha1");
    assert_eq!(
        valid.resources[0].uid,
        agents[0].metadata.uid.clone().unwrap()
    );
    assert_eq!(valid.properties["governanceStatus"], "GOVERNED_VALID");
}

#[test]
fn a_deny_without_its_code_is_a_promotion_result_and_a_refused_sandbox_says_why() {
    let agents = [
        judged(
            "invalid",
            GovernanceStatus::GovernedInvalidated,
            &["too hot"],
            &[],
        ),
        judged("refused", GovernanceStatus::Sandbox, &["too costly"], &[]),
    ];
    let report = build(NAMESPACE, "default", &agents, no_codes);
    assert_eq!(report.results[0].rule, PROMOTION_RULE);
    assert_eq!(report.results[0].message, "too hot");
    assert_eq!(report.results[1].result, Outcome::Skip);
    assert_eq!(report.results[1].message, "promotion refused: too costly");
}

#[test]
fn agents_without_status_or_of_other_namespaces_are_left_out() {
    let mut elsewhere = judged("elsewhere", GovernanceStatus::GovernedValid, &[], &[]);
    elsewhere.metadata.namespace = Some("other".into());
    let agents = [agent("new", governed_spec()), elsewhere];
    let report = build(NAMESPACE, "default", &agents, no_codes);
    assert!(report.results.is_empty());
    assert_eq!(report.summary, Summary::default());
}

#[test]
fn the_same_statuses_build_the_same_report() {
    let agents = [
        judged("b", GovernanceStatus::GovernedValid, &[], &[]),
        judged("a", GovernanceStatus::GovernedRestricted, &[], &["w"]),
    ];
    let reversed = [agents[1].clone(), agents[0].clone()];
    assert_eq!(
        build(NAMESPACE, "default", &agents, no_codes),
        build(NAMESPACE, "default", &reversed, no_codes)
    );
}

#[test]
fn the_report_serializes_to_the_upstream_shape() {
    let agents = [judged("valid", GovernanceStatus::GovernedValid, &[], &[])];
    let value = serde_json::to_value(build(NAMESPACE, "default", &agents, no_codes)).unwrap();
    assert_eq!(value["apiVersion"], "wgpolicyk8s.io/v1alpha2");
    assert_eq!(value["kind"], "PolicyReport");
    assert_eq!(value["summary"]["pass"], 1);
    let result = &value["results"][0];
    assert_eq!(result["result"], "pass");
    assert_eq!(
        result["timestamp"],
        serde_json::json!({"seconds": AT, "nanos": 0})
    );
    assert!(result.get("severity").is_none());
}

#[test]
fn reports_mark_namespaces_of_changed_agents_only_when_enabled() {
    let a = compact(judged("valid", GovernanceStatus::GovernedValid, &[], &[]));
    let off = Reports::new(false);
    off.observe(&Event::Apply(a.clone()));
    assert!(off.take_dirty().is_empty());

    let on = Reports::new(true);
    on.observe(&Event::Apply(a.clone()));
    assert_eq!(on.take_dirty(), HashSet::from([NAMESPACE.to_string()]));
    assert!(on.take_dirty().is_empty());

    let uid = a.metadata.uid.clone().unwrap();
    on.judged(&uid, &["budget".to_string()]);
    assert_eq!(on.codes(&uid), Some(vec!["budget".to_string()]));
    on.observe(&Event::Delete(a));
    assert_eq!(on.codes(&uid), None);
    assert_eq!(on.take_dirty(), HashSet::from([NAMESPACE.to_string()]));
}

#[test]
fn an_agent_never_judged_against_a_policy_names_the_bundle_in_force() {
    let mut lab = judged("lab", GovernanceStatus::Sandbox, &[], &[]);
    lab.status.as_mut().unwrap().policy = None;
    let report = build(NAMESPACE, "org-policy", &[lab], no_codes);
    assert_eq!(report.results[0].policy, "org-policy");
    assert!(!report.results[0].properties.contains_key("policyHash"));
}
