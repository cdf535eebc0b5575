//! The chain of trust without the webhook, on the real control plane: approvals (AgentPromotions)
//! whose requester the API server itself stamps and checks, the approver inside the signed proof
//! (checked offline), no silent re-signing of an edited spec, no approval carried over to a
//! re-created agent, four eyes, an operator that signs
//! nothing while an admission guard is missing, every promotion attempt counted once whoever
//! refuses it, and a broken PolicyBundle refused at apply.

use std::process::Command;

use agentgov_api::agent::GovernanceStatus;
use agentgov_api::conditions::{PROMOTED, find};
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::promotion::PromotionOutcome;
use agentgov_api::{Agent, AgentPromotion};
use agentgov_e2e::admission::*;
use agentgov_e2e::operator::{KeyFile, Operator, binary, log_dir, metric_value};
use agentgov_e2e::{
    TestNamespace, api_error_message, approval, client, install_crds, wait_for, wait_gone,
};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

const BUNDLE_INVALID: &str = "ADMISSION_DENY_BUNDLE_INVALID";
const DENY_POLICY: &str = "ADMISSION_DENY_POLICY";

/// An approval of the agent's current spec by `user`, named `name`.
async fn approve_as(
    setup: &Setup,
    user: &str,
    agent: &str,
    name: &str,
) -> kube::Result<AgentPromotion> {
    let current = setup.agents().get(agent).await.expect("the agent");
    let hash = agentgov_api::hash::spec_hash(&current.spec).expect("a spec hash");
    let mut promotion = approval(agent, &hash);
    promotion.metadata.name = Some(name.to_string());
    Api::<AgentPromotion>::namespaced(client_as(user).await, &setup.ns.name)
        .create(&PostParams::default(), &promotion)
        .await
}

#[tokio::test]
async fn without_the_webhook_only_an_identity_holding_promote_can_approve() {
    // HMAC-SHA256 (the seed's scheme) signs here; the other suites use Ed25519.
    let mut setup = setup_with("tr-approve", KeyKind::Hmac, &[]).await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    setup.deregister().await;
    person(&setup, "mallory", false).await;
    person(&setup, "alice", true).await;
    let mallory: Api<Agent> = Api::namespaced(client_as("mallory").await, &setup.ns.name);
    mallory
        .create(
            &PostParams::default(),
            &Agent::new("auditor", governed_spec()),
        )
        .await
        .expect("anyone may ask for a governed agent");
    // mallory cannot approve it: the API server refuses, with no webhook to ask.
    let error = approve_as(&setup, "mallory", "auditor", "by-mallory")
        .await
        .expect_err("mallory holds no promote");
    let message = api_error_message(&error);
    assert!(
        message.contains("ValidatingAdmissionPolicy") && message.contains("may not approve"),
        "{message}"
    );
    // A requester other than oneself cannot be written either: the API server stamps it.
    let agent = wait_agent(&setup, "auditor", "awaiting approval", |a| {
        a.status.as_ref().is_some_and(|s| s.approval.is_some())
    })
    .await;
    let status = agent.status.clone().unwrap();
    assert_eq!(status.governance_status, Some(GovernanceStatus::Sandbox));
    assert!(status.proof.is_none());
    let promoted = find(&status.conditions, PROMOTED).expect("a Promoted condition");
    assert_eq!(
        (promoted.status.as_str(), promoted.reason.as_str()),
        ("False", "AwaitingApproval")
    );
    assert!(
        promoted.message.contains("approve spec hash"),
        "{}",
        promoted.message
    );

    let approval = approve_as(&setup, "alice", "auditor", "by-alice")
        .await
        .expect("alice holds promote");
    assert_eq!(
        approval
            .spec
            .requested_by
            .as_ref()
            .map(|r| r.username.as_str()),
        Some("alice")
    );
    let agent = wait_agent(&setup, "auditor", "GOVERNED_VALID", |a| {
        governance(a) == Some(GovernanceStatus::GovernedValid)
    })
    .await;
    let proof = agent.status.as_ref().unwrap().proof.clone().unwrap();
    assert_eq!(proof.algorithm.as_str(), "HmacSha256");
    assert_eq!(proof.approvers[0].username, "alice");
    // Offline: the proof, the agent and the public ring, no cluster.
    let dir = log_dir().join(format!("{}-offline", setup.ns.name));
    std::fs::create_dir_all(&dir).unwrap();
    let agent_file = dir.join("agent.yaml");
    std::fs::write(&agent_file, serde_yaml::to_string(&agent).unwrap()).unwrap();
    let ring_file = dir.join("public.json");
    agentgov_e2e::webhook::write_verification_ring(&setup.keys, &ring_file).unwrap();
    let out = Command::new(binary("proof").unwrap())
        .arg("verify")
        .arg(&agent_file)
        .arg("--keys")
        .arg(&ring_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "offline verification failed:\n{stdout}"
    );
    assert!(stdout.contains("approved by: alice"), "{stdout}");
    assert!(stdout.contains("ok: the proof holds"), "{stdout}");
    wait_outcome(&setup, "by-alice", PromotionOutcome::Approved).await;
}

#[tokio::test]
async fn without_the_webhook_an_edited_spec_is_not_signed_again() {
    let mut setup = setup("tr-edit").await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    create_approved(&setup, "auditor", governed_spec()).await;
    pod_admitted(&setup, "auditor-0", "auditor").await;
    setup.deregister().await;
    person(&setup, "mallory", false).await;
    let mallory: Api<Agent> = Api::namespaced(client_as("mallory").await, &setup.ns.name);
    mallory
        .patch(
            "auditor",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"description": "mallory was here"}})),
        )
        .await
        .expect("mallory may update agents");
    let agent = wait_agent(&setup, "auditor", "GOVERNED_INVALIDATED", |a| {
        governance(a) == Some(GovernanceStatus::GovernedInvalidated)
    })
    .await;
    let status = agent.status.unwrap();
    assert!(
        status
            .denies
            .iter()
            .any(|d| d.contains("spec changed since it was approved")),
        "{:?}",
        status.denies
    );
    let proof = status.proof.expect("the last proof, kept as the record");
    assert_ne!(
        proof.spec_hash,
        agentgov_api::hash::spec_hash(&agent.spec).unwrap(),
        "not signed again"
    );
    // The webhook back: the edited agent's Pods are refused.
    setup.reregister().await;
    pod_denied(&setup, "auditor-1", "auditor", SPEC_HASH_MISMATCH).await;
}

#[tokio::test]
async fn an_approval_does_not_carry_over_to_a_re_created_agent() {
    // The agent is approved and promoted, then deleted and created again under the same name
    // with the same spec: another object. Its old approval stays (AgentPromotions are not owned
    // by their agent) but approved the old object, so the new one waits for its own.
    let setup = setup("tr-recreate").await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    let first = create_approved(&setup, "auditor", governed_spec()).await;
    let old_uid = first.metadata.uid.clone().expect("a uid");
    let hash = agentgov_api::hash::spec_hash(&first.spec).expect("a spec hash");
    let old_approval = approval("auditor", &hash).metadata.name.expect("a name");
    setup
        .agents()
        .delete("auditor", &Default::default())
        .await
        .expect("delete the agent");
    wait_gone(&setup.agents(), "auditor", WAIT)
        .await
        .expect("the agent deleted");
    let second = create_agent(&setup, "auditor", governed_spec()).await;
    let new_uid = second.metadata.uid.clone().expect("a uid");
    assert_ne!(new_uid, old_uid);

    let promotions: Api<AgentPromotion> = setup.ns.api();
    let superseded = wait_for(WAIT, || async {
        let p = promotions.get(&old_approval).await.ok()?;
        let status = p.status?;
        (status.outcome == Some(PromotionOutcome::Superseded)).then_some(status)
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "old approval not superseded: {e:#}\n{}",
            setup.diagnostics()
        )
    });
    assert!(
        superseded
            .denies
            .iter()
            .any(|d| d.contains("another Agent object of this name")),
        "{:?}",
        superseded.denies
    );
    assert_eq!(
        superseded.proof.map(|p| p.agent_uid).as_deref(),
        Some(old_uid.as_str()),
        "the record of what it approved stays"
    );
    let waiting = wait_agent(&setup, "auditor", "awaiting approval", |a| {
        a.metadata.uid.as_deref() == Some(new_uid.as_str())
            && a.status.as_ref().is_some_and(|s| s.approval.is_some())
    })
    .await;
    let status = waiting.status.unwrap();
    assert_eq!(status.governance_status, Some(GovernanceStatus::Sandbox));
    assert!(status.proof.is_none(), "nothing signed for the new object");
    assert_eq!(status.approval.unwrap().approved_by, Vec::<String>::new());
    let promoted = find(&status.conditions, PROMOTED).expect("a Promoted condition");
    assert_eq!(
        (promoted.status.as_str(), promoted.reason.as_str()),
        ("False", "AwaitingApproval")
    );

    // An approval of its own promotes it.
    person(&setup, "alice", true).await;
    approve_as(&setup, "alice", "auditor", "again-by-alice")
        .await
        .expect("alice holds promote");
    let agent = wait_agent(&setup, "auditor", "GOVERNED_VALID", |a| {
        governance(a) == Some(GovernanceStatus::GovernedValid)
    })
    .await;
    let proof = agent.status.unwrap().proof.expect("a proof");
    assert_eq!(proof.agent_uid, new_uid);
    pod_admitted(&setup, "auditor-0", "auditor").await;
}

#[tokio::test]
async fn four_eyes_two_distinct_approvers() {
    let setup = setup("tr-eyes").await;
    let mut bundle = default_bundle_spec();
    bundle.data.approvals = Some(agentgov_api::policy_bundle::ApprovalsData { required: 2 });
    bundle_in_force(&setup, &bundle).await;
    person(&setup, "alice", true).await;
    person(&setup, "bob", true).await;
    create_agent(&setup, "auditor", governed_spec()).await;
    approve_as(&setup, "alice", "auditor", "alice-1")
        .await
        .unwrap();
    wait_outcome(&setup, "alice-1", PromotionOutcome::Pending).await;
    // alice again: still one approver.
    approve_as(&setup, "alice", "auditor", "alice-2")
        .await
        .unwrap();
    wait_outcome(&setup, "alice-2", PromotionOutcome::Pending).await;
    let agent = setup.agents().get("auditor").await.unwrap();
    let status = agent.status.unwrap();
    assert_eq!(status.governance_status, Some(GovernanceStatus::Sandbox));
    let approval = status.approval.unwrap();
    assert_eq!(
        (approval.required, approval.approved_by),
        (2, vec!["alice".to_string()])
    );
    // bob: two distinct identities; both in the proof.
    approve_as(&setup, "bob", "auditor", "bob-1").await.unwrap();
    let agent = wait_agent(&setup, "auditor", "GOVERNED_VALID", |a| {
        governance(a) == Some(GovernanceStatus::GovernedValid)
    })
    .await;
    let proof = agent.status.unwrap().proof.unwrap();
    let approvers: Vec<&str> = proof
        .approvers
        .iter()
        .map(|a| a.username.as_str())
        .collect();
    assert_eq!(approvers, vec!["alice", "bob"]);
    pod_admitted(&setup, "auditor-0", "auditor").await;
}

#[tokio::test]
async fn the_operator_signs_nothing_while_a_guard_is_missing() {
    // A copy of the guards of this test's own (identical but for the names), and an operator
    // that requires that copy: the shipped guards, which every other test relies on, stay.
    let client = client().await;
    install_crds(&client).await.unwrap();
    let ns = TestNamespace::new(&client, "tr-guard").await.unwrap();
    let prefix = format!("e2e-{}-", ns.name);
    agentgov_e2e::guards::install(&client, &prefix)
        .await
        .unwrap();
    let keys = KeyFile::new(&log_dir().join(format!("{}-keys", ns.name)), "key-1").unwrap();
    let operator =
        Operator::start(&ns.name, &keys.path, "a", &["--guard-prefix", &prefix]).unwrap();
    agentgov_e2e::apply_bundle_in_force(&ns, default_bundle_spec(), WAIT)
        .await
        .unwrap();
    let binding = format!("{prefix}promotion");
    agentgov_e2e::guards::delete_validating_binding(&client, &binding)
        .await
        .unwrap();
    let agents: Api<Agent> = ns.api();
    agents
        .create(
            &PostParams::default(),
            &Agent::new("auditor", governed_spec()),
        )
        .await
        .unwrap();
    agentgov_e2e::approve(&agents, &ns.api(), "auditor")
        .await
        .unwrap();
    // Held unsigned while the binding is missing; signed once the guards are back.
    agentgov_e2e::guards::held_until_restored(
        &client,
        &agents,
        "auditor",
        (&prefix, &binding),
        || operator.metrics(),
        || operator.logs(),
        WAIT,
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.logs()));
    assert_eq!(
        metric_value(&operator.metrics().await, "agentgov_trust_guards_missing"),
        Some(0.0)
    );
    agentgov_e2e::guards::uninstall(&client, &prefix)
        .await
        .unwrap();
}

#[tokio::test]
async fn every_promotion_attempt_is_counted_once_whoever_refuses_it() {
    let setup = setup("tr-count").await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    // Refused at `kubectl apply` by the webhook: the policy denies the spec.
    let mut hot = governed_spec();
    hot.anatomy.reasoning.as_mut().unwrap().temperature = 0.9;
    // Its temperature named: until the webhook's cache holds the bundle it refuses every
    // governed agent for want of a policy (also DENY_POLICY), which counts no temperature deny.
    let message = refused(
        &setup,
        "a governed agent the policy denies",
        "temperature 0.9",
        creating(&setup.agents(), &Agent::new("hot", hot)),
    )
    .await;
    assert!(message.contains(DENY_POLICY), "{message}");
    // Decided by the operator: an approval of an allowed spec.
    create_approved(&setup, "auditor", governed_spec()).await;
    let total = |metrics: &str, name: &str| metric_value(metrics, name).unwrap_or(0.0);
    let counted = wait_for(WAIT, || async {
        let (webhook, operator) = (
            setup.webhook.metrics().await,
            setup.operator.metrics().await,
        );
        let attempts = total(&webhook, "promotion_attempts_total")
            + total(&operator, "promotion_attempts_total");
        let temperature = r#"promotion_denies_total{reason="temperature"}"#;
        let denies = total(&webhook, temperature) + total(&operator, temperature);
        (attempts == 2.0 && denies == 1.0).then_some(())
    })
    .await;
    assert!(
        counted.is_ok(),
        "two attempts (one refused at apply, one approved), one temperature deny:\nwebhook:\n{}\noperator:\n{}",
        setup.webhook.metrics().await,
        setup.operator.metrics().await
    );
    assert!(
        setup
            .webhook
            .logs()
            .lines()
            .any(|l| l.contains("PROMOTION_DENIED") && l.contains("\"hot\"")),
        "{}",
        setup.diagnostics()
    );
}

#[tokio::test]
async fn a_broken_policy_bundle_is_refused_at_apply_with_its_line() {
    let setup = setup("tr-bundle").await;
    let mut broken = default_bundle_spec();
    broken.version = "2.0.0-broken".into();
    broken.modules[0].rego.push_str("\nthis is not rego {{{\n");
    let bundles: Api<agentgov_api::PolicyBundle> = setup.ns.api();
    let message = refused(
        &setup,
        "a bundle that does not compile",
        BUNDLE_INVALID,
        creating(
            &bundles,
            &agentgov_api::PolicyBundle::new("default", broken),
        ),
    )
    .await;
    let at = message
        .find("promotion.rego:")
        .expect("the module is named");
    assert!(
        message[at + "promotion.rego:".len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit()),
        "and the line: {message}"
    );
    // A good one is admitted (and put in force).
    bundle_in_force(&setup, &default_bundle_spec()).await;
}
