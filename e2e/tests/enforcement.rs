//! A PolicyBundle's enforcement action on the real control plane (operator and webhook): a new
//! version rolled out in `audit` changes no agent but reports what it would refuse (status,
//! Event, metric, decision log), then in `enforce` invalidates exactly those agents; `warn`
//! promotes what the policy would deny as GOVERNED_RESTRICTED with a warning naming the rule;
//! and the actor rule (who may approve) holds under `audit`.

use agentgov_api::agent::GovernanceStatus;
use agentgov_api::hash::policy_hash;
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::policy_bundle::EnforcementAction;
use agentgov_api::{Agent, AgentPromotion, PolicyBundleSpec};
use agentgov_e2e::admission::*;
use agentgov_e2e::{approval, wait_for};
use kube::api::{Api, PostParams};

/// The shipped policy with a monthly budget limit of `max`, under `action`.
fn bundle(version: &str, max: f64, action: EnforcementAction) -> PolicyBundleSpec {
    let mut spec = default_bundle_spec();
    spec.version = version.into();
    spec.data.max_monthly_budget_usd = max;
    spec.enforcement_action = action;
    spec
}

fn signed_under(agent: &Agent, hash: &str) -> bool {
    agent
        .status
        .as_ref()
        .and_then(|s| s.proof.as_ref())
        .is_some_and(|p| p.policy_hash == hash)
}

#[tokio::test]
async fn audit_changes_no_agent_but_reports_then_enforce_invalidates_exactly_those() {
    let setup = setup("enf-audit").await;
    bundle_in_force(&setup, &bundle("1", 1000.0, EnforcementAction::Enforce)).await;
    create_approved(&setup, "cheap", costing(50.0)).await;
    create_approved(&setup, "pricey", costing(250.0)).await;

    // Version 2 in audit: a limit of 100 would refuse pricey, and changes nothing.
    let audit = bundle("2", 100.0, EnforcementAction::Audit);
    let audit_hash = policy_hash(&audit).unwrap();
    assert_ne!(
        audit_hash,
        policy_hash(&bundle("2", 100.0, EnforcementAction::Enforce)).unwrap(),
        "the action is part of the policy hash"
    );
    bundle_in_force(&setup, &audit).await;
    let pricey = wait_agent(&setup, "pricey", "revalidated in audit", |a| {
        signed_under(a, &audit_hash)
    })
    .await;
    let status = pricey.status.clone().unwrap();
    assert_eq!(
        status.governance_status,
        Some(GovernanceStatus::GovernedValid)
    );
    assert!(status.denies.is_empty() && status.warnings.is_empty());
    assert_eq!(status.audit.len(), 1, "{:?}", status.audit);
    assert_eq!(status.audit[0].code, "budget");
    assert!(
        status.audit[0].message.contains("100"),
        "{:?}",
        status.audit
    );
    let cheap = wait_agent(&setup, "cheap", "revalidated in audit", |a| {
        signed_under(a, &audit_hash)
    })
    .await;
    assert_eq!(governance(&cheap), Some(GovernanceStatus::GovernedValid));
    assert!(cheap.status.as_ref().unwrap().audit.is_empty());
    // Reported: an Event, a bounded metric and a decision-log line.
    wait_for(WAIT, || async {
        event_reasons(&setup, "pricey")
            .await
            .iter()
            .any(|r| r == "PolicyAudit")
            .then_some(())
    })
    .await
    .unwrap_or_else(|_| panic!("no PolicyAudit event\n{}", setup.diagnostics()));
    assert!(
        !event_reasons(&setup, "cheap")
            .await
            .iter()
            .any(|r| r == "PolicyAudit")
    );
    assert_reported(
        &setup,
        "agentgov_policy_audit_findings_total{code=\"budget\"}",
        "POLICY_AUDIT",
        "pricey",
    )
    .await;
    // The webhook agrees: pricey's Pods are admitted under the audit bundle.
    pod_admitted(&setup, "pricey-0", "pricey").await;

    // Version 3, the same rules enforced: exactly the agent audit reported is invalidated.
    let enforce = bundle("3", 100.0, EnforcementAction::Enforce);
    let enforce_hash = policy_hash(&enforce).unwrap();
    bundle_in_force(&setup, &enforce).await;
    let pricey = wait_agent(&setup, "pricey", "GOVERNED_INVALIDATED", |a| {
        governance(a) == Some(GovernanceStatus::GovernedInvalidated)
    })
    .await;
    let status = pricey.status.unwrap();
    assert!(
        status.denies.iter().any(|d| d.contains("100")),
        "{:?}",
        status.denies
    );
    assert!(status.audit.is_empty());
    let cheap = wait_agent(&setup, "cheap", "revalidated under enforce", |a| {
        signed_under(a, &enforce_hash)
    })
    .await;
    assert_eq!(governance(&cheap), Some(GovernanceStatus::GovernedValid));
    pod_denied(&setup, "pricey-1", "pricey", POLICY_HASH_MISMATCH).await;
}

#[tokio::test]
async fn warn_promotes_what_the_policy_would_deny_as_restricted() {
    let setup = setup("enf-warn").await;
    bundle_in_force(&setup, &bundle("1", 100.0, EnforcementAction::Warn)).await;
    create_agent(&setup, "pricey", costing(250.0)).await;
    approve(&setup, "pricey").await;
    let agent = wait_agent(&setup, "pricey", "GOVERNED_RESTRICTED", |a| {
        governance(a) == Some(GovernanceStatus::GovernedRestricted)
    })
    .await;
    let status = agent.status.unwrap();
    assert!(
        status
            .warnings
            .iter()
            .any(|w| w.starts_with("[warn] would deny (budget): ")),
        "{:?}",
        status.warnings
    );
    assert!(status.denies.is_empty() && status.audit.is_empty());
    pod_admitted(&setup, "pricey-0", "pricey").await;
}

#[tokio::test]
async fn under_audit_an_approval_by_someone_without_promote_is_still_denied() {
    let setup = setup("enf-actor").await;
    bundle_in_force(&setup, &bundle("1", 100.0, EnforcementAction::Audit)).await;
    person(&setup, "mallory", false).await;
    create_agent(&setup, "pricey", costing(250.0)).await;
    let current = setup.agents().get("pricey").await.expect("the agent");
    let hash = agentgov_api::hash::spec_hash(&current.spec).expect("a spec hash");
    let mut promotion = approval("pricey", &hash);
    promotion.metadata.name = Some("by-mallory".into());
    let refused = Api::<AgentPromotion>::namespaced(client_as("mallory").await, &setup.ns.name)
        .create(&PostParams::default(), &promotion)
        .await;
    assert!(refused.is_err(), "mallory's approval was admitted");
    // Not promoted: still awaiting an approval from someone holding `promote`.
    let agent = wait_agent(&setup, "pricey", "awaiting approval", |a| {
        a.status.as_ref().is_some_and(|s| s.approval.is_some())
    })
    .await;
    let status = agent.status.unwrap();
    assert_eq!(status.governance_status, Some(GovernanceStatus::Sandbox));
    assert!(status.proof.is_none());
    assert!(status.approval.unwrap().approved_by.is_empty());
    // The admin, who holds `promote`, can: audit lets the over-budget spec through.
    approve(&setup, "pricey").await;
    let agent = wait_agent(&setup, "pricey", "GOVERNED_VALID", |a| {
        governance(a) == Some(GovernanceStatus::GovernedValid)
    })
    .await;
    assert_eq!(agent.status.unwrap().audit[0].code, "budget");
}
