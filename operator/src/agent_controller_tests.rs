//! Reconcile tests of the Agent controller against a mocked API server: each test plays one
//! [`Scenario`] (the exact sequence of API calls a reconcile should send) and asserts on what the
//! verifier saw. The judgement itself is tested over plain data in `judge_tests.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use crate::driver::{Action, Key};
use agentgov_api::conditions::{PROMOTED, READY, find, is_true};
use agentgov_api::hash::{policy_hash, spec_hash};
use agentgov_api::keyring::KeyRing;
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::promotion::{PromotionOutcome, ProofLink};
use agentgov_api::proof::{Approver, ProofSubject, verify};
use agentgov_api::{Agent, GovernanceStatus};
use http::StatusCode;
use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use std::time::Duration;
use tokio::time::timeout;

use super::{SpecHash, World, error_policy, judge, namespace_budget, reconcile};
use crate::context::Context;
use crate::error::Error;
use crate::fixtures::{
    EXPECT_WITHIN, NAMESPACE, Scenario, agent, bundle_in_force, compact, finish, governed_spec,
    metrics_text, promotion, ring_config, sandbox_spec, too_hot_spec,
};
async fn run_reconcile(agent: &Agent, ctx: &Arc<Context>) -> crate::error::Result<Action> {
    timeout(
        EXPECT_WITHIN,
        reconcile(
            Arc::new(compact(agent.clone()).stored().unwrap()),
            ctx.clone(),
        ),
    )
    .await
    .expect("reconcile did not finish")
}

fn subject(agent: &Agent) -> ProofSubject<'_> {
    ProofSubject {
        namespace: NAMESPACE,
        name: agent.metadata.name.as_deref().expect("a name"),
        uid: agent.metadata.uid.as_deref().expect("a uid"),
    }
}

#[tokio::test]
async fn sandbox_agent_without_status_gets_exactly_one_status_patch() {
    let keys = ring_config("k1", &["k1"]);
    let agent = agent("scratch", sandbox_spec());
    let (ctx, verifier, _registry) = Context::test(&keys, &[], std::slice::from_ref(&agent), &[]);
    let verifier = verifier.run(Scenario::StatusPatch(agent.clone()));

    let action = run_reconcile(&agent, &ctx).await;
    drop(ctx);
    let calls = finish(verifier).await;

    let action = action.expect("reconcile succeeds");
    let status = calls.status.expect("a status patch");
    assert_eq!(status.governance_status, Some(GovernanceStatus::Sandbox));
    assert!(status.expires_at.is_some());
    assert_eq!(status.observed_generation, Some(1));
    assert!(is_true(&status.conditions, READY), "{status:?}");
    assert!(status.proof.is_none() && status.approval.is_none());
    assert!(calls.events.is_empty() && calls.promotions.is_empty());
    // The sandbox is looked at again at its expiry (72 h away; in a day at most).
    assert_ne!(action, Action::await_change());
}

#[tokio::test]
async fn agent_whose_statuses_match_the_judgement_causes_no_api_call() {
    let keys = ring_config("k1", &["k1"]);
    let bundle = bundle_in_force(default_bundle_spec());
    let mut sandbox = agent("scratch", sandbox_spec());
    let mut governed = agent("filings", governed_spec());
    let mut approval = promotion("filings-by-alice", &governed, "alice");

    // What an earlier reconcile wrote, a little earlier: the agents' and the approval's.
    let (earlier_ctx, _, _) = Context::test(
        &keys,
        std::slice::from_ref(&bundle),
        &[],
        std::slice::from_ref(&approval),
    );
    let earlier = Timestamp::now()
        .checked_sub(SignedDuration::from_secs(30))
        .unwrap();
    let none = HashMap::new();
    sandbox.status = Some(
        judge(&earlier_ctx, &sandbox, &[], &none, earlier)
            .unwrap()
            .status,
    );
    let authorized = HashMap::from([(approval.name_any(), true)]);
    let judged = judge(
        &earlier_ctx,
        &governed,
        &[Arc::new(approval.clone())],
        &authorized,
        earlier,
    )
    .unwrap();
    assert_eq!(
        judged.status.governance_status,
        Some(GovernanceStatus::GovernedValid)
    );
    governed.status = Some(judged.status);
    approval.status = judged.promotions.get(&approval.name_any()).cloned();
    drop(earlier_ctx);

    let (ctx, verifier, registry) = Context::test(&keys, &[bundle], &[], &[approval]);
    let verifier = verifier.run(Scenario::NoCalls);
    let sandbox_action = run_reconcile(&sandbox, &ctx).await;
    let governed_action = run_reconcile(&governed, &ctx).await;
    drop(ctx);
    let calls = finish(verifier).await;

    // The sandbox is looked at again at its expiry; the governed agent only when something
    // changes (a resync round among them): no timer per agent.
    assert_ne!(
        sandbox_action.expect("sandbox reconcile succeeds"),
        Action::await_change()
    );
    assert_eq!(
        governed_action.expect("governed reconcile succeeds"),
        Action::await_change()
    );
    assert!(calls.status.is_none() && calls.events.is_empty() && calls.promotions.is_empty());
    // An approval decided before is not a promotion attempt again.
    assert!(metrics_text(&registry).contains("promotion_attempts_total 0"));
}

#[tokio::test]
async fn a_resync_round_has_every_agent_judged_again() {
    let keys = ring_config("k1", &["k1"]);
    let bundle = bundle_in_force(default_bundle_spec());
    let (ctx, _, _) = Context::test(&keys, &[bundle], &[], &[]);
    let before = World::now(&ctx, NAMESPACE).unwrap().fingerprint;
    assert_eq!(World::now(&ctx, NAMESPACE).unwrap().fingerprint, before);
    let mut rounds = std::pin::pin!(ctx.resync.every(Duration::from_millis(10)));
    timeout(
        Duration::from_secs(10),
        futures::StreamExt::next(&mut rounds),
    )
    .await
    .expect("a round after its period")
    .expect("rounds go on");
    assert!(ctx.resync.round() >= 1);
    // What every judgement depends on changed: none holds.
    assert_ne!(World::now(&ctx, NAMESPACE).unwrap().fingerprint, before);
}

/// A promotion signed in this namespace counts against its total before the cache shows it
/// governed (the watch has not brought the write back yet), and only while the agent exists.
#[tokio::test]
async fn a_promotion_just_signed_counts_against_the_namespace_total() {
    let keys = ring_config("k1", &["k1"]);
    let mut policy = default_bundle_spec();
    policy.data.max_namespace_monthly_budget_usd = Some(100.0);
    let costing = |usd: f64| {
        let mut spec = governed_spec();
        spec.anatomy
            .economics
            .as_mut()
            .expect("economics")
            .monthly_budget_usd = usd;
        spec
    };
    let first = agent("first", costing(60.0));
    let second = agent("second", costing(60.0));
    let (ctx, _, _) = Context::test(
        &keys,
        &[bundle_in_force(policy)],
        &[first.clone(), second.clone()],
        &[],
    );
    let world = World::now(&ctx, NAMESPACE).unwrap();
    let allocated = |ctx: &Context| {
        namespace_budget(ctx, &world, &second, &SpecHash::of(&second.spec))
            .expect("the total is checked")
            .allocated_monthly_budget_usd
    };
    assert_eq!(allocated(&ctx), 0.0, "nothing governed yet");

    let turn = ctx.allocations.turn(NAMESPACE).await;
    ctx.allocations
        .judged(&turn, NAMESPACE, "first", Some(60.0));
    // Signed for an agent the cache no longer holds (deleted): not counted.
    ctx.allocations.judged(&turn, NAMESPACE, "gone", Some(30.0));
    assert_eq!(allocated(&ctx), 60.0, "the first promotion, just signed");
    ctx.allocations.judged(&turn, NAMESPACE, "first", None);
    assert_eq!(allocated(&ctx), 0.0, "judged not governed since");
}

#[tokio::test]
async fn approved_governed_agent_gets_a_proof_an_approved_promotion_and_an_event() {
    let keys = ring_config("k1", &["k1"]);
    let policy = default_bundle_spec();
    let agent = agent("filings", governed_spec());
    let approval = promotion("filings-by-alice", &agent, "alice");
    let (ctx, verifier, registry) = Context::test(
        &keys,
        &[bundle_in_force(policy.clone())],
        std::slice::from_ref(&agent),
        std::slice::from_ref(&approval),
    );
    let verifier = verifier.run(Scenario::StatusPatchEventThenPromotions(
        agent.clone(),
        "Promoted",
        vec![(approval.clone(), StatusCode::OK)],
    ));

    let action = run_reconcile(&agent, &ctx).await;
    drop(ctx);
    let calls = finish(verifier).await;

    action.expect("reconcile succeeds");
    let status = calls.status.expect("a status patch");
    assert_eq!(
        status.governance_status,
        Some(GovernanceStatus::GovernedValid)
    );
    let proof = status.proof.clone().expect("a proof");
    assert_eq!(proof.version, 2);
    assert_eq!(proof.key_id, "k1");
    assert_eq!(proof.spec_hash, spec_hash(&agent.spec).unwrap());
    assert_eq!(proof.policy_hash, policy_hash(&policy).unwrap());
    assert_eq!(
        Some(proof.agent_uid.as_str()),
        agent.metadata.uid.as_deref()
    );
    assert_eq!(
        proof.approvers,
        vec![Approver {
            username: "alice".into(),
            uid: "uid-alice".into(),
        }]
    );
    assert_eq!(proof.promotions, vec![approval.uid().unwrap()]);
    let ring = KeyRing::from_config(&keys).unwrap();
    assert_eq!(verify(&ring, subject(&agent), &proof), Ok(()));
    assert!(is_true(&status.conditions, PROMOTED));
    let approved = status.approval.as_ref().expect("status.approval");
    assert_eq!(approved.approved_by, vec!["alice".to_string()]);
    assert_eq!(approved.spec_hash, proof.spec_hash);

    assert_eq!(calls.events[0]["type"], "Normal");
    let note = calls.events[0]["note"].as_str().unwrap();
    assert!(
        note.contains("GOVERNED_VALID") && note.contains("alice") && note.contains("k1"),
        "{note}"
    );

    let [(name, promoted)] = calls.promotions.as_slice() else {
        panic!("one promotion status patch: {:?}", calls.promotions);
    };
    assert_eq!(name, "filings-by-alice");
    assert_eq!(promoted.outcome, Some(PromotionOutcome::Approved));
    assert_eq!(
        promoted.policy_hash.as_deref(),
        Some(proof.policy_hash.as_str())
    );
    assert_eq!(
        promoted.proof,
        Some(ProofLink {
            agent_uid: proof.agent_uid.clone(),
            key_id: "k1".into(),
            signed_at: proof.signed_at.clone(),
        })
    );
    assert!(promoted.decided_at.is_some());
    assert!(is_true(&promoted.conditions, READY));
    assert!(metrics_text(&registry).contains("promotion_attempts_total 1"));
}

#[tokio::test]
async fn governed_agent_without_approval_awaits_one() {
    let keys = ring_config("k1", &["k1"]);
    let agent = agent("filings", governed_spec());
    let (ctx, verifier, registry) = Context::test(
        &keys,
        &[bundle_in_force(default_bundle_spec())],
        std::slice::from_ref(&agent),
        &[],
    );
    let verifier = verifier.run(Scenario::StatusPatchThenEvent(
        agent.clone(),
        "AwaitingApproval",
    ));

    let action = run_reconcile(&agent, &ctx).await;
    drop(ctx);
    let calls = finish(verifier).await;

    action.expect("reconcile succeeds");
    let status = calls.status.expect("a status patch");
    assert_eq!(status.governance_status, Some(GovernanceStatus::Sandbox));
    assert!(status.proof.is_none());
    let hash = spec_hash(&agent.spec).unwrap();
    assert_eq!(
        status.approval.as_ref().map(|a| a.spec_hash.as_str()),
        Some(hash.as_str())
    );
    assert_eq!(
        find(&status.conditions, PROMOTED).map(|c| c.reason.as_str()),
        Some("AwaitingApproval")
    );
    let note = calls.events[0]["note"].as_str().unwrap();
    assert!(note.contains(&hash), "{note}");
    assert!(metrics_text(&registry).contains("promotion_attempts_total 0"));
}

#[tokio::test]
async fn denied_governed_agent_gets_denies_an_event_a_denied_promotion_and_a_deny_metric() {
    let keys = ring_config("k1", &["k1"]);
    let agent = agent("hot", too_hot_spec());
    let approval = promotion("hot-by-alice", &agent, "alice");
    let bundle = bundle_in_force(default_bundle_spec());
    let (ctx, verifier, registry) = Context::test(
        &keys,
        &[bundle],
        std::slice::from_ref(&agent),
        std::slice::from_ref(&approval),
    );
    let verifier = verifier.run(Scenario::StatusPatchEventThenPromotions(
        agent.clone(),
        "PromotionDenied",
        vec![(approval.clone(), StatusCode::OK)],
    ));

    let action = run_reconcile(&agent, &ctx).await;
    drop(ctx);
    let calls = finish(verifier).await;

    action.expect("a deny is a successful reconcile");
    let status = calls.status.expect("a status patch");
    assert_eq!(status.governance_status, Some(GovernanceStatus::Sandbox));
    assert!(status.proof.is_none());
    assert_eq!(status.denies.len(), 1, "{:?}", status.denies);
    assert!(
        status.denies[0].contains("temperature"),
        "{:?}",
        status.denies
    );
    assert_eq!(
        find(&status.conditions, PROMOTED).map(|c| c.status.as_str()),
        Some("False")
    );
    assert_eq!(calls.events[0]["type"], "Warning");
    assert_eq!(calls.events[0]["note"], status.denies[0].as_str());
    let [(_, denied)] = calls.promotions.as_slice() else {
        panic!("one promotion status patch: {:?}", calls.promotions);
    };
    assert_eq!(denied.outcome, Some(PromotionOutcome::Denied));
    assert_eq!(denied.denies, status.denies);
    assert!(denied.proof.is_none());
    let text = metrics_text(&registry);
    assert!(
        text.contains("promotion_denies_total{reason=\"temperature\"} 1"),
        "{text}"
    );
    assert!(text.contains("promotion_attempts_total 1"), "{text}");
}

#[tokio::test]
async fn a_promotion_deleted_before_its_status_is_written_is_not_an_error() {
    let keys = ring_config("k1", &["k1"]);
    let agent = agent("filings", governed_spec());
    let approval = promotion("filings-by-alice", &agent, "alice");
    let (ctx, verifier, registry) = Context::test(
        &keys,
        &[bundle_in_force(default_bundle_spec())],
        std::slice::from_ref(&agent),
        std::slice::from_ref(&approval),
    );
    let verifier = verifier.run(Scenario::StatusPatchEventThenPromotions(
        agent.clone(),
        "Promoted",
        vec![(approval, StatusCode::NOT_FOUND)],
    ));

    let action = run_reconcile(&agent, &ctx).await;
    drop(ctx);
    let calls = finish(verifier).await;

    action.expect("a promotion gone meanwhile is not a failure");
    assert_eq!(calls.promotions.len(), 1);
    assert!(!metrics_text(&registry).contains("agentgov_reconcile_errors_total{"));
}

#[tokio::test]
async fn nothing_is_signed_while_the_admission_guards_are_missing() {
    let keys = ring_config("k1", &["k1"]);
    let agent = agent("filings", governed_spec());
    let approval = promotion("filings-by-alice", &agent, "alice");
    let (ctx, verifier, _registry) = Context::test(
        &keys,
        &[bundle_in_force(default_bundle_spec())],
        std::slice::from_ref(&agent),
        std::slice::from_ref(&approval),
    );
    ctx.guards.set(Some(
        "ValidatingAdmissionPolicy agentgov-promotions is missing".into(),
    ));
    // Signing postponed is no Event; the approval waits.
    let verifier = verifier.run(Scenario::StatusPatchThenPromotions(
        agent.clone(),
        vec![(approval, StatusCode::OK)],
    ));

    let action = run_reconcile(&agent, &ctx).await;
    drop(ctx);
    let calls = finish(verifier).await;

    let action = action.expect("reconcile succeeds");
    assert_ne!(action, Action::await_change(), "tried again later");
    let status = calls.status.expect("a status patch");
    assert!(status.proof.is_none());
    assert_eq!(status.governance_status, None);
    let ready = find(&status.conditions, READY).expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "TrustGuardsMissing")
    );
    assert!(ready.message.contains("agentgov-promotions"), "{ready:?}");
    let [(_, pending)] = calls.promotions.as_slice() else {
        panic!("one promotion status patch: {:?}", calls.promotions);
    };
    assert_eq!(pending.outcome, Some(PromotionOutcome::Pending));
    assert!(
        pending.denies[0].contains("admission guards"),
        "{:?}",
        pending.denies
    );
}

#[tokio::test]
async fn failed_status_patch_is_an_error_that_requeues_with_growing_backoff() {
    let keys = ring_config("k1", &["k1"]);
    let agent = agent("scratch", sandbox_spec());
    let (ctx, verifier, registry) = Context::test(&keys, &[], std::slice::from_ref(&agent), &[]);
    let verifier = verifier.run(Scenario::StatusPatchFails(
        agent.clone(),
        StatusCode::INTERNAL_SERVER_ERROR,
    ));

    let result = run_reconcile(&agent, &ctx).await;
    let actions: Vec<Action> = match result.as_ref() {
        Err(e) => (0..2)
            .map(|_| error_policy(&Key::new(NAMESPACE, "scratch"), e, ctx.clone()))
            .collect(),
        Ok(_) => Vec::new(),
    };
    drop(ctx);
    finish(verifier).await;

    match result {
        Err(Error::Kube(kube::Error::Api(status))) => assert_eq!(status.code, 500),
        other => panic!("expected an API error, got {other:?}"),
    }
    // Per object: 1 s after the first failure, 2 s after the second.
    assert_eq!(
        actions,
        vec![
            Action::requeue(Duration::from_secs(1)),
            Action::requeue(Duration::from_secs(2))
        ]
    );
    let text = metrics_text(&registry);
    assert!(
        text.contains("agentgov_reconcile_errors_total{controller=\"agent\",error=\"kube\"} 2"),
        "{text}"
    );
}
