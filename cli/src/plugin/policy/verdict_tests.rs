use agentgov_api::AgentPromotionSpec;
use agentgov_api::agent::GovernanceStatus::*;
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::policy_bundle::PolicyBundleSpec;
use agentgov_api::promotion::{AgentPromotionStatus, Requester};

use super::*;
use crate::plugin::fixtures::{NOW, governed, sandbox};

fn engine(spec: &PolicyBundleSpec) -> PolicyEngine {
    PolicyEngine::compile(spec).unwrap()
}

/// A bundle whose budget limit is `max` dollars.
fn budget_limit(max: f64) -> PolicyBundleSpec {
    let mut spec = default_bundle_spec();
    spec.data.max_monthly_budget_usd = max;
    spec
}

fn approval(agent: &Agent, by: &str, outcome: Option<PromotionOutcome>) -> AgentPromotion {
    let name = agent.metadata.name.clone().unwrap();
    let mut p = AgentPromotion::new(
        &format!("{name}-{by}"),
        AgentPromotionSpec {
            agent: name,
            spec_hash: spec_hash(&agent.spec).unwrap(),
            reason: None,
            requested_by: Some(Requester {
                username: by.into(),
                ..Requester::default()
            }),
        },
    );
    p.metadata.namespace = agent.metadata.namespace.clone();
    p.status = outcome.map(|o| AgentPromotionStatus {
        outcome: Some(o),
        ..AgentPromotionStatus::default()
    });
    p
}

/// In force now, GOVERNED_INVALIDATED after.
fn invalidated(p: &Prediction) -> bool {
    p.after == GovernedInvalidated && p.now != Some(GovernedInvalidated)
}

fn valid(name: &str, budget: f64) -> Agent {
    let mut agent = governed("team-a", name, Some(GovernedValid));
    if let Some(economics) = agent.spec.anatomy.economics.as_mut() {
        economics.monthly_budget_usd = budget;
    }
    agent
}

#[test]
fn an_approved_agent_stays_valid_becomes_restricted_or_is_invalidated() {
    let agent = valid("auditor", 250.0);
    let approvals = [approval(&agent, "alice", Some(PromotionOutcome::Approved))];
    let predict_under =
        |max: f64| predict(&engine(&budget_limit(max)), 1, &agent, &approvals).unwrap();

    let same = predict_under(1_000.0);
    assert_eq!((same.now, same.after), (Some(GovernedValid), GovernedValid));
    assert_eq!(same.why, "");
    assert!(!invalidated(&same));

    // 250 is above 80 % of 300: allowed with a warning.
    let restricted = predict_under(300.0);
    assert_eq!(restricted.after, GovernedRestricted);
    assert!(
        restricted.why.contains("above 80% of the org limit"),
        "{restricted:?}"
    );

    let invalidated_row = predict_under(200.0);
    assert_eq!(invalidated_row.after, GovernedInvalidated);
    assert!(invalidated(&invalidated_row));
    assert!(
        invalidated_row.why.contains("above the org limit of 200"),
        "{invalidated_row:?}"
    );
}

#[test]
fn approvals_count_as_the_operator_counts_them() {
    let agent = valid("auditor", 250.0);
    let bundle = default_bundle_spec();
    let mut two = bundle.clone();
    two.data.approvals = Some(agentgov_api::policy_bundle::ApprovalsData { required: 2 });
    let engine = engine(&two);
    let required = two.data.approvals_required();
    let alice = approval(&agent, "alice", Some(PromotionOutcome::Approved));
    let again = approval(&agent, "alice", None);
    let bob = approval(&agent, "bob", Some(PromotionOutcome::Pending));
    let expired = approval(&agent, "carol", Some(PromotionOutcome::Expired));
    let mut stale = approval(&agent, "dave", None);
    stale.spec.spec_hash = "0".repeat(64);
    let mut elsewhere = approval(&agent, "erin", None);
    elsewhere.metadata.namespace = Some("team-b".into());

    // One approver (twice), an expired approval, one of another spec, one of another namespace:
    // one of two.
    let few = [alice.clone(), again, expired, stale, elsewhere];
    let waiting = predict(&engine, required, &agent, &few).unwrap();
    assert_eq!(waiting.after, GovernedInvalidated);
    assert!(
        waiting.why.starts_with("1 of 2 approvals of spec hash "),
        "{waiting:?}"
    );

    let enough = predict(&engine, required, &agent, &[alice, bob]).unwrap();
    assert_eq!(enough.after, GovernedValid, "{enough:?}");

    // A first request that is refused stays a sandbox; sandboxes are not judged at all.
    let mut request = valid("request", 5_000.0);
    request.status = None;
    let denied = predict(&engine, 1, &request, &[]).unwrap();
    assert_eq!((denied.now, denied.after), (None, Sandbox));
    assert!(predict(&engine, 1, &sandbox("team-a", "lab", NOW, 60), &[]).is_none());
}

#[test]
fn the_parallel_preview_keeps_the_agents_order() {
    let agents: Vec<Agent> = (0..23)
        .map(|i| valid(&format!("a{i:02}"), f64::from(i) * 50.0))
        .collect();
    let approvals: Vec<AgentPromotion> = agents
        .iter()
        .map(|a| approval(a, "alice", Some(PromotionOutcome::Approved)))
        .collect();
    let engine = engine(&budget_limit(600.0));
    let sequential: Vec<Prediction> = agents
        .iter()
        .filter_map(|a| predict(&engine, 1, a, &approvals))
        .collect();
    for threads in [1, 4, 64] {
        assert_eq!(
            preview(&engine, 1, &agents, &approvals, threads),
            sequential
        );
    }
    let gone: Vec<&str> = sequential
        .iter()
        .filter(|p| invalidated(p))
        .map(|p| p.agent.as_str())
        .collect();
    assert_eq!(gone.first(), Some(&"a13"));
    assert_eq!(gone.len(), 10);
    let summary = preview_summary(&sequential);
    assert_eq!(
        summary,
        "23 governed agents: 10 valid, 3 restricted, 10 invalidated, 0 not in force"
    );
}

#[test]
fn the_preview_table_and_the_evaluation_read_plainly() {
    let rows = [
        Prediction {
            namespace: "team-a".into(),
            agent: "auditor".into(),
            now: Some(GovernedValid),
            after: GovernedInvalidated,
            why: "too much".into(),
        },
        Prediction {
            namespace: "team-a".into(),
            agent: "b".into(),
            now: None,
            after: Sandbox,
            why: String::new(),
        },
    ];
    assert_eq!(
        preview_table(&rows, false),
        "AGENT     NOW              AFTER                  WHY\n\
         auditor   GOVERNED_VALID   GOVERNED_INVALIDATED   too much\n\
         b         <none>           SANDBOX                -\n"
    );
    assert!(preview_table(&rows, true).starts_with("NAMESPACE   AGENT"));

    let agent = valid("auditor", 900.0);
    let spec = budget_limit(1_000.0);
    let bundle = BundleRef {
        name: "default".into(),
        version: "1.0.0".into(),
        hash: agentgov_api::hash::policy_hash(&spec).unwrap(),
    };
    let e = evaluate(
        &engine(&spec),
        bundle.clone(),
        "team-a",
        "auditor",
        &agent.spec,
    );
    assert!(e.allow && e.denies.is_empty());
    assert_eq!(e.once_approved, Some(GovernedRestricted));
    let text = evaluation_text(&e);
    assert!(
        text.contains("decision: allowed (GOVERNED_RESTRICTED once approved)\n"),
        "{text}"
    );
    assert!(text.contains("restriction: monthly budget 900"), "{text}");

    let e = evaluate(
        &engine(&budget_limit(100.0)),
        bundle,
        "team-a",
        "auditor",
        &agent.spec,
    );
    assert!(!e.allow);
    assert_eq!(e.once_approved, None);
    let text = evaluation_text(&e);
    assert!(
        text.contains("decision: denied\ndeny:     [budget] "),
        "{text}"
    );
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["onceApproved"], serde_json::Value::Null);
    assert_eq!(json["denies"][0]["code"], "budget");
}
