//! Unit tests of [`Judge::judge`] over plain data: no cluster, and no clock but the one passed in.

use std::time::Duration;

use agentgov_api::agent::{AgentSpec, AgentStatus, GovernanceStatus, SandboxSpec};
use agentgov_api::conditions::{EXPIRED, PROMOTED, READY, find, is_true};
use agentgov_api::exception::AppliedException;
use agentgov_api::expiry::ExpiryPolicy;
use agentgov_api::hash::spec_hash;
use agentgov_api::keyring::{KeyRing, KeyRingConfig, VerifyFailure};
use agentgov_api::policy::{NamespaceInput, PolicyDecision, default_bundle_spec};
use agentgov_api::policy_bundle::{EnforcementAction, RegoModule};
use agentgov_api::promotion::{AgentPromotionStatus, PromotionOutcome, ProofLink, Requester};
use agentgov_api::proof::{Approver, ProofBundle, ProofSubject, format_signed_at, verify};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::fixtures::{
    APPROVAL_TTL, BUNDLE, NAMESPACE, active_policy, governed_spec, policy_requiring, policy_spec,
    requester, ring_config, sandbox_spec, too_hot_spec,
};
use crate::judge::{
    ACTOR_CODE, ActivePolicy, AgentFacts, ApprovalFacts, Attempt, Judge, Judgement, Outcome,
};

const NAME: &str = "filings";
/// The Agent object's uid.
const UID: &str = "0b6f3c1e-agent-filings";
/// 2026-01-03T00:00:00Z: when the agent was created.
const CREATED: i64 = 1_767_398_400;

fn created() -> Timestamp {
    Timestamp::from_second(CREATED).unwrap()
}

/// `h` hours after creation.
fn hours(h: i64) -> Timestamp {
    created()
        .checked_add(SignedDuration::from_hours(h))
        .unwrap()
}

fn subject() -> ProofSubject<'static> {
    ProofSubject {
        namespace: NAMESPACE,
        name: NAME,
        uid: UID,
    }
}

/// One AgentPromotion of the agent, as plain data.
#[derive(Clone, Debug)]
struct Approval {
    name: String,
    uid: String,
    /// The spec hash it approves (None: the spec being judged, whatever it is).
    spec_hash: Option<String>,
    requester: Option<Requester>,
    created: Timestamp,
    authorized: bool,
    status: Option<AgentPromotionStatus>,
}

impl Approval {
    /// An approval by `username` (who holds `promote`) of the spec being judged, created with
    /// the agent.
    fn by(username: &str) -> Self {
        Approval {
            name: format!("{NAME}-by-{username}"),
            uid: format!("uid-{NAME}-by-{username}"),
            spec_hash: None,
            requester: Some(requester(username)),
            created: created(),
            authorized: true,
            status: None,
        }
    }

    /// Another AgentPromotion (name and uid) of the same approver.
    fn named(mut self, name: &str) -> Self {
        self.name = name.into();
        self.uid = format!("uid-{name}");
        self
    }

    /// Approving exactly `spec`.
    fn of(mut self, spec: &AgentSpec) -> Self {
        self.spec_hash = Some(spec_hash(spec).unwrap());
        self
    }

    fn at(mut self, created: Timestamp) -> Self {
        self.created = created;
        self
    }

    /// The approver's `promote` has been revoked since.
    fn unauthorized(mut self) -> Self {
        self.authorized = false;
        self
    }

    fn in_groups(mut self, groups: &[&str]) -> Self {
        if let Some(r) = self.requester.as_mut() {
            r.groups = groups.iter().map(ToString::to_string).collect();
        }
        self
    }
}

/// Everything an agent is judged against; tests change one field at a time.
struct World {
    policy: Option<ActivePolicy>,
    bundle_name: &'static str,
    keys: KeyRing,
    expiry: ExpiryPolicy,
    guards_missing: Option<String>,
    approval_ttl: SignedDuration,
    now: Timestamp,
    uid: &'static str,
    approvals: Vec<Approval>,
    namespace_budget: Option<NamespaceInput>,
    exceptions: Vec<AppliedException>,
    unguarded: Option<String>,
    /// Why the spec cannot be hashed, to judge as if it could not.
    unhashable: Option<&'static str>,
}

impl World {
    /// The shipped policy in force, `keys` as the ring, the guards in place, an hour after
    /// creation, one approval of the spec being judged by alice (who holds `promote`).
    fn new(keys: &KeyRingConfig) -> Self {
        World {
            policy: Some(active_policy(&default_bundle_spec())),
            bundle_name: BUNDLE,
            keys: KeyRing::from_config(keys).unwrap(),
            expiry: ExpiryPolicy::default(),
            guards_missing: None,
            approval_ttl: APPROVAL_TTL,
            now: hours(1),
            uid: UID,
            approvals: vec![Approval::by("alice")],
            namespace_budget: None,
            exceptions: Vec::new(),
            unguarded: None,
            unhashable: None,
        }
    }

    fn judge(&self, spec: &AgentSpec, generation: i64, status: Option<&AgentStatus>) -> Judgement {
        let hash = spec_hash(spec).unwrap();
        let approvals: Vec<ApprovalFacts<'_>> = self
            .approvals
            .iter()
            .map(|a| ApprovalFacts {
                name: &a.name,
                uid: &a.uid,
                spec_hash: a.spec_hash.as_deref().unwrap_or(&hash),
                requester: a.requester.as_ref(),
                created: a.created,
                authorized: a.authorized,
                status: a.status.as_ref(),
            })
            .collect();
        Judge {
            policy: self.policy.as_ref(),
            bundle_name: self.bundle_name,
            keys: &self.keys,
            expiry: &self.expiry,
            guards_missing: self.guards_missing.as_deref(),
            unguarded: self.unguarded.as_deref(),
            approval_ttl: self.approval_ttl,
            now: self.now,
        }
        .judge(
            &AgentFacts {
                namespace: NAMESPACE,
                name: NAME,
                uid: self.uid,
                generation: Some(generation),
                created: created(),
                spec,
                spec_hash: self.unhashable.map_or(Ok(&hash), Err),
                status,
                namespace_budget: self.namespace_budget.as_ref(),
                exceptions: &self.exceptions,
            },
            &approvals,
        )
    }

    /// The approvals' statuses as the operator wrote them after `judgement`.
    fn record(&mut self, judgement: &Judgement) {
        for a in &mut self.approvals {
            if let Some(status) = judgement.promotions.get(&a.name) {
                a.status = Some(status.clone());
            }
        }
    }
}

fn keys() -> KeyRingConfig {
    ring_config("k1", &["k1"])
}

fn condition<'s>(status: &'s AgentStatus, type_: &str) -> &'s Condition {
    find(&status.conditions, type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {:?}", status.conditions))
}

#[track_caller]
fn assert_condition(status: &AgentStatus, type_: &str, expected: &str, reason: &str) {
    let c = condition(status, type_);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        (expected, reason),
        "{type_}: {c:?}"
    );
}

fn proof(status: &AgentStatus) -> &ProofBundle {
    status
        .proof
        .as_ref()
        .unwrap_or_else(|| panic!("no proof in {status:?}"))
}

/// The status the judgement gives the approval `name`.
#[track_caller]
fn approval<'j>(judgement: &'j Judgement, name: &str) -> &'j AgentPromotionStatus {
    judgement
        .promotions
        .get(name)
        .unwrap_or_else(|| panic!("no status for {name} in {:?}", judgement.promotions))
}

#[track_caller]
fn outcome(judgement: &Judgement, name: &str) -> Option<PromotionOutcome> {
    approval(judgement, name).outcome
}

/// An approval's Ready condition: true once decided (Approved, Denied, Superseded, Expired).
fn is_ready(status: &AgentPromotionStatus) -> bool {
    is_true(&status.conditions, READY)
}

fn approver(username: &str) -> Approver {
    Approver {
        username: username.into(),
        uid: format!("uid-{username}"),
    }
}

/// A sandbox spec asking for this lifetime.
fn sandbox_with(ttl_seconds: Option<i64>, expires_at: Option<Timestamp>) -> AgentSpec {
    AgentSpec {
        sandbox: Some(SandboxSpec {
            ttl_seconds,
            expires_at: expires_at.map(Time),
        }),
        ..sandbox_spec()
    }
}

fn short_expiry() -> ExpiryPolicy {
    ExpiryPolicy {
        default_ttl: SignedDuration::from_hours(2),
        max_ttl: SignedDuration::from_hours(24),
    }
}

fn changed(spec: &AgentSpec) -> AgentSpec {
    let mut changed = spec.clone();
    changed.description = "summarises quarterly and annual filings".into();
    changed
}

// --- Sandbox ------------------------------------------------------------------------------------

#[test]
fn sandbox_without_ttl_gets_the_default_ttl_and_is_ready() {
    let mut world = World::new(&keys());
    // A sandbox needs no policy.
    world.policy = None;
    world.approvals.clear();
    let j = world.judge(&sandbox_spec(), 1, None);

    assert_eq!(j.outcome, Outcome::Sandbox);
    assert!(j.attempts.is_empty() && j.promotions.is_empty() && j.deny_codes.is_empty());
    let s = &j.status;
    assert_eq!(s.governance_status, Some(GovernanceStatus::Sandbox));
    // ExpiryPolicy::default(): 72 h.
    assert_eq!(s.expires_at, Some(Time(hours(72))));
    assert_condition(s, READY, "True", "Sandbox");
    assert_condition(s, EXPIRED, "False", "Active");
    assert!(find(&s.conditions, PROMOTED).is_none());
    assert!(s.proof.is_none() && s.policy.is_none() && s.denies.is_empty());
    assert!(s.approval.is_none());
    // Woken at expiry (71 h from now), not polled; a moment late is fine.
    let requeue = j.requeue_after.expect("a sandbox is requeued");
    let to_expiry = Duration::from_secs(71 * 3600);
    assert!(
        requeue >= to_expiry && requeue <= to_expiry + Duration::from_secs(2),
        "{requeue:?}"
    );
}

#[test]
fn a_sandbox_supersedes_its_approvals_and_counts_no_attempt() {
    let world = World::new(&keys());
    let j = world.judge(&sandbox_spec(), 1, None);
    assert_eq!(j.outcome, Outcome::Sandbox);
    let a = approval(&j, "filings-by-alice");
    assert_eq!(a.outcome, Some(PromotionOutcome::Superseded));
    assert!(a.denies[0].contains("sandbox"), "{:?}", a.denies);
    assert!(a.proof.is_none() && a.policy_hash.is_none());
    assert!(j.attempts.is_empty());
}

#[test]
fn sandbox_ttl_from_spec_is_honoured_up_to_the_max_ttl() {
    let mut world = World::new(&keys());
    world.expiry = short_expiry();

    let j = world.judge(&sandbox_with(Some(3 * 3600), None), 1, None);
    assert_eq!(j.status.expires_at, Some(Time(hours(3))));
    assert_eq!(j.outcome, Outcome::Sandbox);

    let j = world.judge(&sandbox_with(Some(48 * 3600), None), 1, None);
    assert_eq!(j.status.expires_at, Some(Time(hours(24))), "capped");

    let j = world.judge(&sandbox_spec(), 1, None);
    assert_eq!(j.status.expires_at, Some(Time(hours(2))), "default");
}

#[test]
fn sandbox_expires_at_from_spec_is_honoured_only_below_the_cap() {
    let mut world = World::new(&keys());
    world.expiry = short_expiry();

    let j = world.judge(&sandbox_with(None, Some(hours(5))), 1, None);
    assert_eq!(j.status.expires_at, Some(Time(hours(5))));
    let requeue = j.requeue_after.unwrap();
    let to_expiry = Duration::from_secs(4 * 3600);
    assert!(
        requeue >= to_expiry && requeue <= to_expiry + Duration::from_secs(2),
        "{requeue:?}"
    );

    let j = world.judge(&sandbox_with(None, Some(hours(100))), 1, None);
    assert_eq!(j.status.expires_at, Some(Time(hours(24))), "capped");
    let requeue = j.requeue_after.unwrap();
    assert!(requeue <= Duration::from_secs(23 * 3600 + 2), "{requeue:?}");
}

#[test]
fn expired_sandbox_is_not_ready_and_not_requeued() {
    let mut world = World::new(&keys());
    world.expiry = short_expiry();

    // One second before expiry it is still a sandbox, woken just after.
    world.now = hours(2).checked_sub(SignedDuration::from_secs(1)).unwrap();
    let before = world.judge(&sandbox_spec(), 1, None);
    assert_eq!(before.outcome, Outcome::Sandbox);
    assert!(before.requeue_after.unwrap() <= Duration::from_secs(3));

    for now in [hours(2), hours(3)] {
        world.now = now;
        let j = world.judge(&sandbox_spec(), 1, Some(&before.status));
        assert_eq!(j.outcome, Outcome::Expired, "at {now}");
        let s = &j.status;
        assert_eq!(s.governance_status, Some(GovernanceStatus::Sandbox));
        assert_eq!(s.expires_at, Some(Time(hours(2))));
        assert_condition(s, EXPIRED, "True", "Expired");
        assert_condition(s, READY, "False", "Expired");
        assert_eq!(j.requeue_after, None);
    }
}

// --- Promotion ----------------------------------------------------------------------------------

#[test]
fn approved_governed_agent_is_valid_with_a_v2_proof_that_verifies() {
    let world = World::new(&keys());
    let spec = governed_spec();
    let j = world.judge(&spec, 1, None);

    assert_eq!(j.outcome, Outcome::Promoted);
    assert_eq!(j.requeue_after, None);
    let s = &j.status;
    assert_eq!(s.governance_status, Some(GovernanceStatus::GovernedValid));
    let p = proof(s);
    assert_eq!(p.version, 2);
    assert_eq!(p.spec_hash, spec_hash(&spec).unwrap());
    let policy = world.policy.as_ref().unwrap();
    assert_eq!(p.policy_hash, policy.hash());
    assert_eq!(p.key_id, "k1");
    assert_eq!(p.signed_at, format_signed_at(world.now));
    assert_eq!(p.agent_uid, UID);
    assert_eq!(p.approvers, vec![approver("alice")]);
    assert_eq!(p.promotions, vec!["uid-filings-by-alice".to_string()]);
    assert_eq!(verify(&world.keys, subject(), p), Ok(()));
    // The proof is bound to this agent object: copied onto another name, or onto a re-created
    // agent of the same name (another uid), it fails.
    let other = ProofSubject {
        name: "another",
        ..subject()
    };
    assert_eq!(
        verify(&world.keys, other, p),
        Err(VerifyFailure::BadSignature)
    );
    let recreated = ProofSubject {
        uid: "another-uid",
        ..subject()
    };
    assert_eq!(
        verify(&world.keys, recreated, p),
        Err(VerifyFailure::BadSignature)
    );
    let reference = s.policy.as_ref().unwrap();
    assert_eq!(
        (reference.name.as_str(), reference.hash.as_str()),
        (BUNDLE, policy.hash())
    );
    let approval_status = s.approval.as_ref().expect("status.approval");
    assert_eq!(approval_status.spec_hash, p.spec_hash);
    assert_eq!(approval_status.required, 1);
    assert_eq!(approval_status.approved_by, vec!["alice".to_string()]);
    assert_condition(s, PROMOTED, "True", "Promoted");
    assert_condition(s, READY, "True", "Promoted");
    assert!(condition(s, READY).message.contains("approved by alice"));
    assert!(s.denies.is_empty() && s.warnings.is_empty() && s.expires_at.is_none());
    assert_eq!(s.observed_generation, Some(1));

    // The approval is Approved, linked to the proof, and this first decision is an attempt.
    let a = approval(&j, "filings-by-alice");
    assert_eq!(a.outcome, Some(PromotionOutcome::Approved));
    assert_eq!(
        a.proof,
        Some(ProofLink {
            agent_uid: UID.into(),
            key_id: "k1".into(),
            signed_at: p.signed_at.clone(),
        })
    );
    assert_eq!(a.policy_hash.as_deref(), Some(policy.hash()));
    assert_eq!(a.decided_at, Some(Time(world.now)));
    assert!(a.denies.is_empty());
    assert_eq!(
        j.attempts,
        vec![Attempt {
            promotion: "filings-by-alice".into(),
            uid: format!("uid-{NAME}-by-alice"),
            requester: "alice".into(),
            outcome: PromotionOutcome::Approved,
            deny_codes: vec![],
            denies: vec![],
        }]
    );
}

#[test]
fn allowed_with_warnings_is_restricted() {
    let world = World::new(&keys());
    let mut spec = governed_spec();
    spec.anatomy.economics = None;
    let j = world.judge(&spec, 1, None);

    assert_eq!(j.outcome, Outcome::Restricted);
    let s = &j.status;
    assert_eq!(
        s.governance_status,
        Some(GovernanceStatus::GovernedRestricted)
    );
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert!(
        s.warnings[0].contains("no monthly budget"),
        "{:?}",
        s.warnings
    );
    assert!(s.denies.is_empty());
    assert_eq!(verify(&world.keys, subject(), proof(s)), Ok(()));
    assert_condition(s, PROMOTED, "True", "Restricted");
    assert_condition(s, READY, "True", "Restricted");
    assert_eq!(
        outcome(&j, "filings-by-alice"),
        Some(PromotionOutcome::Approved)
    );
}

#[test]
fn denied_first_request_stays_sandbox_without_a_proof() {
    let world = World::new(&keys());
    let j = world.judge(&too_hot_spec(), 1, None);

    assert_eq!(j.outcome, Outcome::Denied);
    assert_eq!(j.deny_codes, vec!["temperature".to_string()]);
    let s = &j.status;
    assert_eq!(s.governance_status, Some(GovernanceStatus::Sandbox));
    assert!(s.proof.is_none());
    assert_eq!(s.denies.len(), 1, "{:?}", s.denies);
    assert!(s.denies[0].contains("temperature"), "{:?}", s.denies);
    assert_condition(s, PROMOTED, "False", "PolicyDenied");
    assert_condition(s, READY, "False", "PolicyDenied");
    assert_eq!(condition(s, PROMOTED).message, s.denies[0]);
    // The refusal records the policy it was judged against.
    assert_eq!(
        s.policy.as_ref().map(|r| r.hash.as_str()),
        Some(world.policy.as_ref().unwrap().hash())
    );
    assert_eq!(j.requeue_after, None);
    // The approval of a spec the policy refuses is denied: an attempt, with the policy's codes.
    let a = approval(&j, "filings-by-alice");
    assert_eq!(a.outcome, Some(PromotionOutcome::Denied));
    assert_eq!(a.denies, s.denies);
    assert_eq!(j.attempts.len(), 1);
    assert_eq!(j.attempts[0].outcome, PromotionOutcome::Denied);
    assert_eq!(j.attempts[0].deny_codes, vec!["temperature".to_string()]);
    assert_eq!(j.attempts[0].denies, s.denies);
}

#[test]
fn denied_governed_agent_is_invalidated_and_keeps_its_last_proof() {
    let mut world = World::new(&keys());
    let spec = governed_spec(); // a budget of 250
    let first = world.judge(&spec, 1, None);
    let valid = first.status.clone();
    assert_eq!(
        valid.governance_status,
        Some(GovernanceStatus::GovernedValid)
    );
    world.record(&first);

    world.policy = Some(active_policy(&policy_spec(50.0)));
    world.now = hours(2);
    let j = world.judge(&spec, 1, Some(&valid));
    assert_eq!(j.outcome, Outcome::Invalidated);
    assert_eq!(j.deny_codes, vec!["budget".to_string()]);
    let s = &j.status;
    assert_eq!(
        s.governance_status,
        Some(GovernanceStatus::GovernedInvalidated)
    );
    // The last proof is the record of what was approved; admission refuses it (the policy hash).
    assert_eq!(s.proof, valid.proof, "the proof is kept");
    assert!(
        s.denies.iter().any(|d| d.contains("monthlyBudgetUsd")),
        "{:?}",
        s.denies
    );
    assert_condition(s, PROMOTED, "False", "Invalidated");
    assert_condition(s, READY, "False", "Invalidated");
    assert_eq!(
        s.policy.as_ref().map(|r| r.hash.as_str()),
        Some(world.policy.as_ref().unwrap().hash())
    );
    // The approval the policy no longer allows is denied, but it was decided before: no attempt.
    assert_eq!(
        outcome(&j, "filings-by-alice"),
        Some(PromotionOutcome::Denied)
    );
    assert!(j.attempts.is_empty());

    // Denied again under yet another policy, it stays quarantined, not back in the sandbox.
    world.policy = Some(active_policy(&policy_spec(40.0)));
    let again = world.judge(&spec, 1, Some(s));
    assert_eq!(again.outcome, Outcome::Invalidated);
    assert_eq!(
        again.status.governance_status,
        Some(GovernanceStatus::GovernedInvalidated)
    );
    assert_eq!(again.status.proof, valid.proof);
}

#[test]
fn invalidated_agent_that_passes_later_is_valid_again() {
    let config = keys();
    let mut world = World::new(&config);
    let spec = governed_spec(); // a budget of 250
    let valid = world.judge(&spec, 1, None).status;
    world.policy = Some(active_policy(&policy_spec(50.0)));
    let invalidated = world.judge(&spec, 1, Some(&valid)).status;
    assert_eq!(
        invalidated.governance_status,
        Some(GovernanceStatus::GovernedInvalidated)
    );
    world.now = hours(3);

    // The policy is relaxed: the same approval promotes it again, signed anew.
    let mut relaxed = World::new(&config);
    relaxed.now = world.now;
    let j = relaxed.judge(&spec, 1, Some(&invalidated));
    assert_eq!(j.outcome, Outcome::Promoted);
    assert_eq!(
        j.status.governance_status,
        Some(GovernanceStatus::GovernedValid)
    );
    assert!(j.status.denies.is_empty());
    assert_eq!(verify(&relaxed.keys, subject(), proof(&j.status)), Ok(()));
    assert_eq!(proof(&j.status).signed_at, format_signed_at(hours(3)));
    assert_eq!(
        proof(&j.status).policy_hash,
        relaxed.policy.as_ref().unwrap().hash()
    );
    assert_condition(&j.status, PROMOTED, "True", "Promoted");
    assert_condition(&j.status, READY, "True", "Promoted");

    // Or the spec is fixed (a new generation) and approved under the stricter policy.
    let mut fixed = spec.clone();
    fixed.anatomy.economics = Some(agentgov_api::agent::Economics {
        monthly_budget_usd: 30.0,
    });
    world.approvals = vec![
        Approval::by("alice").of(&spec),
        Approval::by("alice").named("fixed-by-alice").of(&fixed),
    ];
    let j = world.judge(&fixed, 2, Some(&invalidated));
    assert_eq!(j.outcome, Outcome::Promoted);
    assert_eq!(
        j.status.governance_status,
        Some(GovernanceStatus::GovernedValid)
    );
    assert_eq!(proof(&j.status).spec_hash, spec_hash(&fixed).unwrap());
    assert_eq!(
        proof(&j.status).promotions,
        vec!["uid-fixed-by-alice".to_string()]
    );
    assert_eq!(j.status.observed_generation, Some(2));
    assert_eq!(
        outcome(&j, "filings-by-alice"),
        Some(PromotionOutcome::Superseded)
    );
    assert_eq!(
        outcome(&j, "fixed-by-alice"),
        Some(PromotionOutcome::Approved)
    );
}

#[test]
fn no_policy_in_force_is_a_deny_naming_the_bundle() {
    let mut world = World::new(&keys());
    let spec = governed_spec();
    let valid = world.judge(&spec, 1, None).status;

    world.policy = None;
    world.bundle_name = "finance-policy";
    let j = world.judge(&spec, 1, None);
    assert_eq!(j.outcome, Outcome::Denied);
    assert_eq!(j.deny_codes, vec!["no_policy".to_string()]);
    let s = &j.status;
    assert_eq!(s.governance_status, Some(GovernanceStatus::Sandbox));
    assert!(s.proof.is_none() && s.policy.is_none());
    assert_eq!(s.denies.len(), 1);
    assert!(
        s.denies[0].contains("no PolicyBundle named finance-policy")
            && s.denies[0].contains(NAMESPACE),
        "{:?}",
        s.denies
    );
    assert_condition(s, READY, "False", "PolicyDenied");
    // Its approvals wait for a policy; nothing was decided, so nothing is attempted.
    let a = approval(&j, "filings-by-alice");
    assert_eq!(a.outcome, Some(PromotionOutcome::Pending));
    assert!(a.denies[0].contains("no policy"), "{:?}", a.denies);
    assert!(j.attempts.is_empty());

    // A governed agent whose policy is gone is invalidated, keeping its last proof.
    let j = world.judge(&spec, 1, Some(&valid));
    assert_eq!(j.outcome, Outcome::Invalidated);
    assert_eq!(j.status.proof, valid.proof);
    assert!(j.status.denies[0].contains("finance-policy"));
}

#[test]
fn a_spec_that_cannot_be_hashed_is_refused_and_a_governed_agent_invalidated() {
    let mut world = World::new(&keys());
    let spec = governed_spec();
    let valid = world.judge(&spec, 1, None).status;

    world.unhashable = Some("a number is not finite");
    let j = world.judge(&spec, 1, None);
    assert_eq!(j.outcome, Outcome::Denied);
    assert_eq!(j.deny_codes, vec!["other".to_string()]);
    assert_eq!(j.status.governance_status, Some(GovernanceStatus::Sandbox));
    assert!(j.status.proof.is_none());
    assert_eq!(
        j.status.denies,
        vec!["cannot hash spec: a number is not finite".to_string()]
    );

    let j = world.judge(&spec, 1, Some(&valid));
    assert_eq!(j.outcome, Outcome::Invalidated);
    assert_eq!(j.status.proof, valid.proof);
}

// --- Approvals ----------------------------------------------------------------------------------

#[test]
fn without_an_approval_a_governed_request_awaits_one_in_the_sandbox() {
    let mut world = World::new(&keys());
    world.approvals.clear();
    let spec = governed_spec();
    let hash = spec_hash(&spec).unwrap();
    let j = world.judge(&spec, 1, None);

    assert_eq!(j.outcome, Outcome::AwaitingApproval);
    let s = &j.status;
    assert_eq!(s.governance_status, Some(GovernanceStatus::Sandbox));
    assert!(s.proof.is_none() && s.denies.is_empty() && s.expires_at.is_none());
    let wanted = s.approval.as_ref().expect("status.approval");
    assert_eq!(wanted.spec_hash, hash);
    assert_eq!(wanted.required, 1);
    assert!(wanted.approved_by.is_empty());
    assert_condition(s, PROMOTED, "False", "AwaitingApproval");
    assert_condition(s, READY, "False", "AwaitingApproval");
    let message = &condition(s, PROMOTED).message;
    assert!(
        message.contains(&hash) && message.contains("0 of 1"),
        "{message}"
    );
    assert_eq!(
        s.policy.as_ref().map(|r| r.hash.as_str()),
        Some(world.policy.as_ref().unwrap().hash())
    );
    assert!(j.attempts.is_empty() && j.promotions.is_empty() && j.deny_codes.is_empty());
    assert_eq!(j.requeue_after, None);

    // The next look, nothing new: nothing to write.
    world.now = hours(5);
    let again = world.judge(&spec, 1, Some(s));
    assert_eq!(again.outcome, Outcome::AwaitingApproval);
    assert_eq!(&again.status, s);
}

#[test]
fn a_spec_changed_since_its_approval_is_invalidated_keeping_its_proof() {
    let mut world = World::new(&keys());
    let spec = governed_spec();
    world.approvals = vec![Approval::by("alice").of(&spec)];
    let first = world.judge(&spec, 1, None);
    let valid = first.status.clone();
    world.record(&first);

    let edited = changed(&spec);
    let new_hash = spec_hash(&edited).unwrap();
    world.now = hours(2);
    let j = world.judge(&edited, 2, Some(&valid));
    assert_eq!(j.outcome, Outcome::Invalidated);
    assert_eq!(j.deny_codes, vec!["approval".to_string()]);
    let s = &j.status;
    assert_eq!(
        s.governance_status,
        Some(GovernanceStatus::GovernedInvalidated)
    );
    assert_eq!(s.denies.len(), 1, "{:?}", s.denies);
    assert!(
        s.denies[0].contains("the spec changed since it was approved")
            && s.denies[0].contains(&new_hash),
        "{:?}",
        s.denies
    );
    // The last proof verifies for this agent: kept as the record (its spec hash no longer
    // matches, which admission refuses).
    assert_eq!(s.proof, valid.proof);
    assert_eq!(verify(&world.keys, subject(), proof(s)), Ok(()));
    assert_eq!(
        s.approval.as_ref().map(|a| a.spec_hash.as_str()),
        Some(new_hash.as_str())
    );
    assert_condition(s, PROMOTED, "False", "Invalidated");
    assert_eq!(s.observed_generation, Some(2));
    // The approval of the old spec is superseded, which is no attempt; it keeps the link to the
    // proof it produced (the record that it was approved, which a rollback reuses).
    let a = approval(&j, "filings-by-alice");
    assert_eq!(a.outcome, Some(PromotionOutcome::Superseded));
    assert_eq!(a.proof, approval(&first, "filings-by-alice").proof);
    assert!(j.attempts.is_empty());

    // A first request whose only approval is of another spec (one that promoted nothing) just
    // waits.
    world.approvals[0].status = None;
    let j = world.judge(&edited, 2, None);
    assert_eq!(j.outcome, Outcome::AwaitingApproval);
    assert_eq!(j.status.governance_status, Some(GovernanceStatus::Sandbox));
    assert_eq!(
        outcome(&j, "filings-by-alice"),
        Some(PromotionOutcome::Superseded)
    );

    // Approving the new spec promotes it again, signed for the new spec.
    world
        .approvals
        .push(Approval::by("alice").named("edited-by-alice").of(&edited));
    let j = world.judge(&edited, 2, Some(s));
    assert_eq!(j.outcome, Outcome::Promoted);
    assert_eq!(proof(&j.status).spec_hash, new_hash);
    assert_eq!(
        proof(&j.status).promotions,
        vec!["uid-edited-by-alice".to_string()]
    );
}

#[test]
fn a_forged_proof_is_not_kept_by_an_invalidated_agent() {
    let config = keys();
    let mut world = World::new(&config);
    let spec = governed_spec();
    world.approvals = vec![Approval::by("alice").of(&spec)];
    let mut forged = world.judge(&spec, 1, None).status;
    // Someone who may write agents/status puts in a proof signed by a key of their own.
    let mallory = World::new(&ring_config("k1", &["k1"]));
    forged.proof = mallory.judge(&spec, 1, None).status.proof;
    assert_eq!(
        verify(&world.keys, subject(), proof(&forged)),
        Err(VerifyFailure::BadSignature)
    );

    let j = world.judge(&changed(&spec), 2, Some(&forged));
    assert_eq!(j.outcome, Outcome::Invalidated);
    assert!(
        j.status.proof.is_none(),
        "a proof that does not verify is dropped"
    );

    // Nor is a proof the operator signed for another object of the same name (a re-created
    // agent): it names another uid.
    let mut recreated = World::new(&config);
    recreated.uid = "a-new-uid";
    recreated.approvals = world.approvals.clone();
    let old = world.judge(&spec, 1, None).status;
    let j = recreated.judge(&changed(&spec), 2, Some(&old));
    assert_eq!(j.outcome, Outcome::Invalidated);
    assert!(j.status.proof.is_none());
}

#[test]
fn withdrawn_approvals_invalidate_a_governed_agent() {
    let mut world = World::new(&keys());
    let spec = governed_spec();
    let valid = world.judge(&spec, 1, None).status;

    world.approvals.clear();
    world.now = hours(2);
    let j = world.judge(&spec, 1, Some(&valid));
    assert_eq!(j.outcome, Outcome::Invalidated);
    assert!(
        j.status.denies[0].contains("the agent is no longer approved"),
        "{:?}",
        j.status.denies
    );
    assert_eq!(j.status.proof, valid.proof);
}

#[test]
fn two_required_approvals_need_two_distinct_approvers() {
    let mut world = World::new(&keys());
    world.policy = Some(active_policy(&policy_requiring(2)));
    let spec = governed_spec();
    let hash = spec_hash(&spec).unwrap();

    // zoe approves: one of two.
    world.approvals = vec![Approval::by("zoe")];
    let j = world.judge(&spec, 1, None);
    assert_eq!(j.outcome, Outcome::AwaitingApproval);
    let s = j.status.clone();
    assert_eq!(s.governance_status, Some(GovernanceStatus::Sandbox));
    let wanted = s.approval.as_ref().unwrap();
    assert_eq!(
        (
            wanted.spec_hash.as_str(),
            wanted.required,
            wanted.approved_by.clone()
        ),
        (hash.as_str(), 2, vec!["zoe".to_string()])
    );
    assert!(condition(&s, PROMOTED).message.contains("1 of 2"));
    let zoe = approval(&j, "filings-by-zoe");
    assert_eq!(zoe.outcome, Some(PromotionOutcome::Pending));
    assert_eq!(zoe.denies, vec!["1 of 2 approvals".to_string()]);
    assert!(!is_ready(zoe), "a pending approval is not Ready");
    assert_eq!(j.attempts.len(), 1);
    assert_eq!(j.attempts[0].outcome, PromotionOutcome::Pending);
    world.record(&j);

    // zoe approves again: the same approver counts once, nothing changes for the agent.
    world.now = hours(2);
    world.approvals.push(
        Approval::by("zoe")
            .named("filings-by-zoe-again")
            .at(hours(2)),
    );
    let j = world.judge(&spec, 1, Some(&s));
    assert_eq!(j.outcome, Outcome::AwaitingApproval);
    assert_eq!(j.status, s, "nothing to write");
    assert_eq!(
        outcome(&j, "filings-by-zoe-again"),
        Some(PromotionOutcome::Pending)
    );
    assert_eq!(
        approval(&j, "filings-by-zoe").decided_at,
        Some(Time(hours(1))),
        "still pending since its first decision"
    );
    assert_eq!(j.attempts.len(), 1, "only the new approval is an attempt");
    assert_eq!(j.attempts[0].promotion, "filings-by-zoe-again");
    world.record(&j);

    // alice approves: two distinct approvers, both in the proof, sorted.
    world.now = hours(3);
    world.approvals.push(Approval::by("alice").at(hours(3)));
    let j = world.judge(&spec, 1, Some(&s));
    assert_eq!(j.outcome, Outcome::Promoted);
    let p = proof(&j.status);
    assert_eq!(p.approvers, vec![approver("alice"), approver("zoe")]);
    assert_eq!(
        p.promotions,
        vec![
            "uid-filings-by-alice".to_string(),
            "uid-filings-by-zoe".to_string()
        ],
        "zoe's earliest approval"
    );
    assert_eq!(verify(&world.keys, subject(), p), Ok(()));
    assert_eq!(
        j.status.approval.as_ref().unwrap().approved_by,
        vec!["alice".to_string(), "zoe".to_string()]
    );
    assert!(
        condition(&j.status, READY)
            .message
            .contains("approved by alice, zoe")
    );
    let link = Some(ProofLink {
        agent_uid: UID.into(),
        key_id: "k1".into(),
        signed_at: p.signed_at.clone(),
    });
    for name in ["filings-by-zoe", "filings-by-alice"] {
        let a = approval(&j, name);
        assert_eq!(a.outcome, Some(PromotionOutcome::Approved), "{name}");
        assert_eq!(a.proof, link, "{name}");
        assert_eq!(a.decided_at, Some(Time(hours(3))), "{name}");
    }
    // zoe's second approval backs nothing: it stays pending (until it expires).
    assert_eq!(
        outcome(&j, "filings-by-zoe-again"),
        Some(PromotionOutcome::Pending)
    );
    // Only alice's approval is decided for the first time.
    assert_eq!(
        j.attempts
            .iter()
            .map(|a| a.promotion.as_str())
            .collect::<Vec<_>>(),
        vec!["filings-by-alice"]
    );
    assert_eq!(j.attempts[0].outcome, PromotionOutcome::Approved);
}

/// A governed agent whose spec changed, under a policy that wants two approvers: the first
/// approval of the new spec counts ("1 of 2"), it is not denied. The agent is invalidated
/// meanwhile, and that refusal is no reason to deny the approvals that count.
#[test]
fn the_first_of_two_approvals_of_a_changed_spec_is_pending_not_denied() {
    let mut world = World::new(&keys());
    world.policy = Some(active_policy(&policy_requiring(2)));
    let spec = governed_spec();
    world.approvals = vec![
        Approval::by("alice").of(&spec),
        Approval::by("bob").of(&spec),
    ];
    let first = world.judge(&spec, 1, None);
    assert_eq!(first.outcome, Outcome::Promoted);
    world.record(&first);

    let edited = changed(&spec);
    world.now = hours(2);
    world.approvals.push(
        Approval::by("alice")
            .named("edited-by-alice")
            .of(&edited)
            .at(hours(2)),
    );
    let j = world.judge(&edited, 2, Some(&first.status));
    assert_eq!(j.outcome, Outcome::Invalidated);
    assert!(
        j.status.denies[0].contains("(1 of 2 approvals)"),
        "{:?}",
        j.status.denies
    );
    assert_eq!(
        j.status.approval.as_ref().unwrap().approved_by,
        vec!["alice".to_string()]
    );
    let a = approval(&j, "edited-by-alice");
    assert_eq!(a.outcome, Some(PromotionOutcome::Pending), "{a:?}");
    assert_eq!(a.denies, vec!["1 of 2 approvals".to_string()]);
    assert_eq!(j.attempts.len(), 1);
    assert_eq!(j.attempts[0].outcome, PromotionOutcome::Pending);
    assert!(j.attempts[0].deny_codes.is_empty());
}

#[test]
fn an_approver_who_lost_promote_is_denied_and_not_counted() {
    let mut world = World::new(&keys());
    world.approvals = vec![Approval::by("alice").unauthorized()];
    let spec = governed_spec();
    let j = world.judge(&spec, 1, None);

    assert_eq!(j.outcome, Outcome::AwaitingApproval);
    assert!(j.status.approval.as_ref().unwrap().approved_by.is_empty());
    let a = approval(&j, "filings-by-alice");
    assert_eq!(a.outcome, Some(PromotionOutcome::Denied));
    assert!(
        a.denies[0].contains("alice does not hold the verb 'promote'"),
        "{:?}",
        a.denies
    );
    assert!(!is_ready(a), "a denied approval is not Ready");
    // The attempt carries the policy's actor code (alice is in no promoter role either).
    assert_eq!(j.attempts.len(), 1);
    assert_eq!(j.attempts[0].outcome, PromotionOutcome::Denied);
    assert_eq!(j.attempts[0].deny_codes, vec![ACTOR_CODE.to_string()]);

    // With bob, who holds it, the agent is promoted under bob's approval alone.
    world.approvals.push(Approval::by("bob"));
    let j = world.judge(&spec, 1, None);
    assert_eq!(j.outcome, Outcome::Promoted);
    assert_eq!(proof(&j.status).approvers, vec![approver("bob")]);
    assert_eq!(
        outcome(&j, "filings-by-alice"),
        Some(PromotionOutcome::Denied)
    );
    assert_eq!(
        outcome(&j, "filings-by-bob"),
        Some(PromotionOutcome::Approved)
    );
}

#[test]
fn an_approval_without_a_recorded_requester_is_denied() {
    let mut world = World::new(&keys());
    let mut anonymous = Approval::by("alice");
    anonymous.requester = None;
    world.approvals = vec![anonymous];
    let j = world.judge(&governed_spec(), 1, None);
    assert_eq!(j.outcome, Outcome::AwaitingApproval);
    let a = approval(&j, "filings-by-alice");
    assert_eq!(a.outcome, Some(PromotionOutcome::Denied));
    assert!(
        a.denies[0].contains("requestedBy is missing"),
        "{:?}",
        a.denies
    );
    assert_eq!(j.attempts.len(), 1);
    assert_eq!(j.attempts[0].requester, "");
}

/// A bundle whose actor rule refuses contractors, whatever RBAC says.
fn no_contractors_policy() -> ActivePolicy {
    let mut spec = default_bundle_spec();
    spec.version = "no-contractors".into();
    spec.entrypoint = "data.custom.decision".into();
    spec.modules = vec![RegoModule {
        name: "custom.rego".into(),
        rego: r#"package custom

import rego.v1

contractor if "contractors" in input.actor.groups

decision := {"allow": false, "warnings": [], "denies": [{"code": "actor_unauthorized", "message": sprintf("%s is a contractor: contractors may not approve agents", [input.actor.username])}]} if {
	contractor
} else := {"allow": true, "denies": [], "warnings": []}
"#
        .into(),
    }];
    active_policy(&spec)
}

#[test]
fn a_policy_whose_actor_rule_refuses_an_approver_denies_that_approval() {
    let mut world = World::new(&keys());
    world.policy = Some(no_contractors_policy());
    world.approvals =
        vec![Approval::by("carol").in_groups(&["system:authenticated", "contractors"])];
    let spec = governed_spec();
    let j = world.judge(&spec, 1, None);

    // The spec itself passes (the actor rule is not the spec's), but carol's approval does not.
    assert_eq!(j.outcome, Outcome::AwaitingApproval);
    assert!(j.status.denies.is_empty());
    let a = approval(&j, "filings-by-carol");
    assert_eq!(a.outcome, Some(PromotionOutcome::Denied));
    assert_eq!(
        a.denies,
        vec!["carol is a contractor: contractors may not approve agents".to_string()]
    );
    assert_eq!(j.attempts[0].deny_codes, vec![ACTOR_CODE.to_string()]);
    assert_eq!(j.attempts[0].denies, a.denies);

    // An employee's approval promotes it.
    world.approvals.push(Approval::by("alice"));
    let j = world.judge(&spec, 1, None);
    assert_eq!(j.outcome, Outcome::Promoted);
    assert_eq!(proof(&j.status).approvers, vec![approver("alice")]);
}

#[test]
fn the_shipped_actor_rule_with_custom_promoter_roles_and_no_promote_verb() {
    // promoterRoles names a group; carol is not in it and holds no `promote`: the policy's actor
    // rule denies her (the attempt's code and sentence), and the approval is denied.
    let mut policy = default_bundle_spec();
    policy.data.promoter_roles = vec!["agent-approvers".into()];
    let mut world = World::new(&keys());
    world.policy = Some(active_policy(&policy));
    world.approvals = vec![Approval::by("carol").unauthorized()];
    let j = world.judge(&governed_spec(), 1, None);

    assert_eq!(j.outcome, Outcome::AwaitingApproval);
    assert_eq!(
        outcome(&j, "filings-by-carol"),
        Some(PromotionOutcome::Denied)
    );
    let attempt = &j.attempts[0];
    assert_eq!(attempt.deny_codes, vec![ACTOR_CODE.to_string()]);
    assert!(
        attempt.denies[0].contains("carol may not promote agents")
            && attempt.denies[0].contains("agent-approvers"),
        "{:?}",
        attempt.denies
    );

    // In that group but without `promote` now: the policy would allow her, the operator's
    // SubjectAccessReview does not.
    world.approvals = vec![
        Approval::by("carol")
            .unauthorized()
            .in_groups(&["agent-approvers"]),
    ];
    let j = world.judge(&governed_spec(), 1, None);
    assert_eq!(j.outcome, Outcome::AwaitingApproval);
    let a = approval(&j, "filings-by-carol");
    assert_eq!(a.outcome, Some(PromotionOutcome::Denied));
    assert!(
        a.denies[0].contains("does not hold the verb 'promote'"),
        "{:?}",
        a.denies
    );
    assert_eq!(j.attempts[0].deny_codes, vec![ACTOR_CODE.to_string()]);
}

#[test]
fn a_pending_approval_expires_after_the_approval_ttl() {
    let mut world = World::new(&keys());
    world.policy = Some(active_policy(&policy_requiring(2)));
    world.approval_ttl = SignedDuration::from_hours(2);
    let spec = governed_spec();
    let j = world.judge(&spec, 1, None);
    assert_eq!(
        outcome(&j, "filings-by-alice"),
        Some(PromotionOutcome::Pending)
    );
    world.record(&j);

    // Two hours after it was created it no longer counts.
    world.now = hours(2);
    let j = world.judge(&spec, 1, Some(&j.status));
    assert_eq!(j.outcome, Outcome::AwaitingApproval);
    assert!(j.status.approval.as_ref().unwrap().approved_by.is_empty());
    let a = approval(&j, "filings-by-alice");
    assert_eq!(a.outcome, Some(PromotionOutcome::Expired));
    assert!(a.denies[0].contains("waited longer than"), "{:?}", a.denies);
    assert_eq!(a.decided_at, Some(Time(hours(2))));
    assert!(j.attempts.is_empty(), "decided before: no attempt");

    // An approval never judged before that is already too old: its first decision is Expired.
    world.approvals = vec![Approval::by("bob")];
    let j = world.judge(&spec, 1, None);
    assert_eq!(
        outcome(&j, "filings-by-bob"),
        Some(PromotionOutcome::Expired)
    );
    assert_eq!(j.attempts[0].outcome, PromotionOutcome::Expired);
}

#[test]
fn an_approved_approval_does_not_expire() {
    let mut world = World::new(&keys());
    world.approval_ttl = SignedDuration::from_hours(2);
    let spec = governed_spec();
    let first = world.judge(&spec, 1, None);
    assert_eq!(first.outcome, Outcome::Promoted);
    world.record(&first);

    world.now = hours(50);
    let j = world.judge(&spec, 1, Some(&first.status));
    assert_eq!(j.outcome, Outcome::Kept);
    assert_eq!(j.status, first.status, "nothing to write");
    assert_eq!(
        approval(&j, "filings-by-alice"),
        approval(&first, "filings-by-alice")
    );
    assert!(j.attempts.is_empty());
}

#[test]
fn only_the_first_decision_of_an_approval_is_an_attempt() {
    let mut world = World::new(&keys());
    let spec = too_hot_spec();
    let j = world.judge(&spec, 1, None);
    assert_eq!(j.attempts.len(), 1);
    assert_eq!(j.attempts[0].deny_codes, vec!["temperature".to_string()]);
    world.record(&j);

    world.now = hours(2);
    let again = world.judge(&spec, 1, Some(&j.status));
    assert!(again.attempts.is_empty());
    assert_eq!(
        approval(&again, "filings-by-alice"),
        approval(&j, "filings-by-alice"),
        "nothing to write"
    );
}

// --- The admission guards -----------------------------------------------------------------------

#[test]
fn nothing_is_signed_while_the_admission_guards_are_missing() {
    let mut world = World::new(&keys());
    let spec = governed_spec();
    let valid = world.judge(&spec, 1, None);
    world.record(&valid);
    world.guards_missing = Some("ValidatingAdmissionPolicy agentgov-promotions is missing".into());
    world.now = hours(2);

    // A first request: no proof, Ready says why, the approval waits.
    let mut fresh = World::new(&keys());
    fresh.guards_missing = world.guards_missing.clone();
    let j = fresh.judge(&spec, 1, None);
    assert_eq!(j.outcome, Outcome::SigningUnavailable);
    assert!(j.status.proof.is_none() && j.status.denies.is_empty());
    assert_eq!(j.status.governance_status, None);
    assert_condition(&j.status, READY, "False", "TrustGuardsMissing");
    assert!(
        condition(&j.status, READY)
            .message
            .contains("agentgov-promotions")
    );
    assert!(j.requeue_after.is_some(), "tried again later");
    let a = approval(&j, "filings-by-alice");
    assert_eq!(a.outcome, Some(PromotionOutcome::Pending));
    assert!(a.denies[0].contains("admission guards"), "{:?}", a.denies);

    // A proof that still holds is kept: nothing to sign.
    let j = world.judge(&spec, 1, Some(&valid.status));
    assert_eq!(j.outcome, Outcome::Kept);
    assert_eq!(j.status, valid.status);

    // A new policy would need a new signature: the status stays as it was, Ready says why.
    world.policy = Some(active_policy(&policy_spec(900.0)));
    let j = world.judge(&spec, 1, Some(&valid.status));
    assert_eq!(j.outcome, Outcome::SigningUnavailable);
    assert_eq!(j.status.proof, valid.status.proof, "nothing signed");
    assert_eq!(
        j.status.governance_status,
        Some(GovernanceStatus::GovernedValid)
    );
    assert_condition(&j.status, READY, "False", "TrustGuardsMissing");
    assert_condition(&j.status, PROMOTED, "True", "Promoted");

    // Refusals still refuse.
    let j = world.judge(&too_hot_spec(), 2, Some(&valid.status));
    assert_eq!(j.outcome, Outcome::Invalidated);
    // (A first request: its approval has promoted nothing.)
    for a in &mut world.approvals {
        a.status = None;
    }
    let j = world.judge(&too_hot_spec(), 1, None);
    assert_eq!(j.outcome, Outcome::Denied);
}

// --- Keeping and re-signing a proof -------------------------------------------------------------

#[test]
fn proof_that_still_holds_is_kept_not_resigned() {
    let mut config = ring_config("k1", &["k1", "k2"]);
    let mut world = World::new(&config);
    let spec = governed_spec();
    let first = world.judge(&spec, 1, None);
    world.record(&first);
    let first = first.status;

    world.now = hours(30);
    let j = world.judge(&spec, 1, Some(&first));
    assert_eq!(j.outcome, Outcome::Kept);
    assert!(j.attempts.is_empty());
    assert_eq!(j.requeue_after, None);
    assert_eq!(j.status, first, "nothing to write");
    assert_eq!(proof(&j.status).signed_at, format_signed_at(hours(1)));

    // A new active key does not re-sign proofs its predecessor made while that is not revoked.
    config.active_key_id = Some("k2".into());
    world.keys = KeyRing::from_config(&config).unwrap();
    let j = world.judge(&spec, 1, Some(&first));
    assert_eq!(j.outcome, Outcome::Kept);
    assert_eq!(j.status.proof, first.proof);
}

#[test]
fn a_proof_signed_for_another_agent_object_is_resigned() {
    // A re-created agent of the same name (another uid) carrying the old object's status, under
    // an approval that has not promoted anything yet (made for the new object).
    let mut world = World::new(&keys());
    let spec = governed_spec();
    let old = world.judge(&spec, 1, None).status;

    world.uid = "a-new-uid";
    world.now = hours(2);
    let j = world.judge(&spec, 1, Some(&old));
    assert_eq!(j.outcome, Outcome::Promoted);
    let p = proof(&j.status);
    assert_eq!(p.agent_uid, "a-new-uid");
    assert_eq!(p.signed_at, format_signed_at(hours(2)));
    let new_subject = ProofSubject {
        uid: "a-new-uid",
        ..subject()
    };
    assert_eq!(verify(&world.keys, new_subject, p), Ok(()));
}

#[test]
fn a_proof_naming_other_approvals_is_resigned() {
    // bob approves too: the proof names the approvals the agent is promoted under, so it is
    // signed again (an approval by the same spec still counts once per approver).
    let mut world = World::new(&keys());
    let spec = governed_spec();
    let first = world.judge(&spec, 1, None).status;
    world.approvals.push(Approval::by("bob"));
    world.now = hours(2);
    let j = world.judge(&spec, 1, Some(&first));
    assert_eq!(j.outcome, Outcome::Promoted);
    assert_eq!(
        proof(&j.status).approvers,
        vec![approver("alice"), approver("bob")]
    );
}

#[test]
fn revoked_key_is_resigned_with_the_active_key() {
    let mut config = ring_config("k1", &["k1", "k2"]);
    let mut world = World::new(&config);
    let spec = governed_spec();
    let first = world.judge(&spec, 1, None).status;

    config.active_key_id = Some("k2".into());
    config.revoked = vec!["k1".into()];
    world.keys = KeyRing::from_config(&config).unwrap();
    world.now = hours(5);
    let j = world.judge(&spec, 1, Some(&first));

    assert_eq!(j.outcome, Outcome::Promoted);
    let p = proof(&j.status);
    assert_eq!(p.key_id, "k2");
    assert_eq!(p.signed_at, format_signed_at(hours(5)));
    assert_eq!(p.spec_hash, proof(&first).spec_hash);
    assert_eq!(p.policy_hash, proof(&first).policy_hash);
    assert_eq!(p.approvers, proof(&first).approvers);
    assert_eq!(verify(&world.keys, subject(), p), Ok(()));
    assert_eq!(
        verify(&world.keys, subject(), proof(&first)),
        Err(VerifyFailure::Revoked)
    );
    assert_eq!(
        j.status.governance_status,
        Some(GovernanceStatus::GovernedValid)
    );
}

#[test]
fn changed_and_approved_spec_is_resigned_with_the_new_spec_hash() {
    let mut world = World::new(&keys());
    let spec = governed_spec();
    world.approvals = vec![Approval::by("alice").of(&spec)];
    let first = world.judge(&spec, 1, None).status;

    let edited = changed(&spec);
    world
        .approvals
        .push(Approval::by("alice").named("edited-by-alice").of(&edited));
    world.now = hours(2);
    let j = world.judge(&edited, 2, Some(&first));

    assert_eq!(j.outcome, Outcome::Promoted);
    let p = proof(&j.status);
    assert_eq!(p.spec_hash, spec_hash(&edited).unwrap());
    assert_ne!(p.spec_hash, proof(&first).spec_hash);
    assert_eq!(p.signed_at, format_signed_at(hours(2)));
    assert_eq!(p.promotions, vec!["uid-edited-by-alice".to_string()]);
    assert_eq!(verify(&world.keys, subject(), p), Ok(()));
    assert_eq!(j.status.observed_generation, Some(2));
    assert_eq!(
        outcome(&j, "filings-by-alice"),
        Some(PromotionOutcome::Superseded)
    );
    assert_eq!(
        outcome(&j, "edited-by-alice"),
        Some(PromotionOutcome::Approved)
    );
}

#[test]
fn changed_policy_is_resigned_against_the_new_hash() {
    let mut world = World::new(&keys());
    let spec = governed_spec();
    let judged = world.judge(&spec, 1, None);
    let first = judged.status.clone();
    let approved = approval(&judged, "filings-by-alice").clone();
    world.approvals[0].status = Some(approved.clone());

    // Still allows a budget of 250, without warnings, but is another policy.
    let new_policy = active_policy(&policy_spec(900.0));
    assert_ne!(new_policy.hash(), proof(&first).policy_hash);
    world.policy = Some(new_policy);
    world.now = hours(2);
    let j = world.judge(&spec, 1, Some(&first));

    assert_eq!(j.outcome, Outcome::Promoted);
    let hash = world.policy.as_ref().unwrap().hash();
    let p = proof(&j.status);
    assert_eq!(p.policy_hash, hash);
    assert_eq!(p.spec_hash, proof(&first).spec_hash);
    assert_eq!(p.approvers, proof(&first).approvers);
    assert_eq!(verify(&world.keys, subject(), p), Ok(()));
    assert_eq!(
        j.status.policy.as_ref().map(|r| r.hash.as_str()),
        Some(hash)
    );
    // The approval keeps the record of its decision (the policy and proof it was approved
    // with): a revalidation writes the agent, not its approvals too.
    assert_eq!(approval(&j, "filings-by-alice"), &approved);
}

#[test]
fn a_refusal_the_policy_does_not_give_is_judged_again() {
    // Someone else wrote a refusal into the status (anyone who may write agents/status can): for
    // this very generation and policy, but the policy allows the agent. It is not taken as final.
    let mut world = World::new(&keys());
    let spec = governed_spec(); // the policy allows it
    let hash = world.policy.as_ref().unwrap().hash().to_string();
    let forged = AgentStatus {
        governance_status: Some(GovernanceStatus::GovernedInvalidated),
        denies: vec!["quarantined by the security team".into()],
        observed_generation: Some(1),
        policy: Some(agentgov_api::agent::PolicyRef {
            name: BUNDLE.into(),
            version: "1.0.0".into(),
            hash,
        }),
        ..AgentStatus::default()
    };
    world.now = hours(4);
    let j = world.judge(&spec, 1, Some(&forged));
    assert_eq!(j.outcome, Outcome::Promoted);
    let status = &j.status;
    assert_eq!(
        status.governance_status,
        Some(GovernanceStatus::GovernedValid)
    );
    assert!(status.denies.is_empty());
    assert!(status.proof.is_some());
}

#[test]
fn a_forged_status_around_a_valid_proof_is_restored() {
    // The proof still holds, but someone rewrote what surrounds it: warnings dropped from a
    // restricted agent, made-up denies and approvers, a condition of their own. The proof is
    // kept (not signed again); everything else is the operator's judgement again.
    let mut world = World::new(&keys());
    let mut spec = governed_spec();
    spec.anatomy.economics = None; // allowed with a warning: GOVERNED_RESTRICTED
    let judged = world.judge(&spec, 1, None).status;
    assert_eq!(
        judged.governance_status,
        Some(GovernanceStatus::GovernedRestricted)
    );
    let mut forged = judged.clone();
    forged.governance_status = Some(GovernanceStatus::GovernedValid);
    forged.warnings.clear();
    forged.denies = vec!["made up".into()];
    if let Some(a) = forged.approval.as_mut() {
        a.approved_by = vec!["mallory".into()];
        a.required = 0;
    }
    forged.conditions.push(Condition {
        type_: "Approved".into(),
        status: "True".into(),
        reason: "Forged".into(),
        message: String::new(),
        last_transition_time: Time(hours(1)),
        observed_generation: None,
    });
    world.now = hours(5);
    let j = world.judge(&spec, 1, Some(&forged));
    assert_eq!(j.outcome, Outcome::Kept);
    assert_eq!(j.status.proof, judged.proof, "not signed again");
    assert_eq!(j.status, judged, "the operator's judgement, as it wrote it");
}

#[test]
fn real_refusal_is_unchanged_on_the_next_look() {
    let mut world = World::new(&keys());
    let denied = world.judge(&too_hot_spec(), 1, None).status;
    world.now = hours(9);
    let j = world.judge(&too_hot_spec(), 1, Some(&denied));
    assert_eq!(j.outcome, Outcome::Denied);
    assert_eq!(j.status, denied, "nothing to write");
}

#[test]
fn without_a_signing_key_the_previous_governance_status_is_kept() {
    let config = keys();
    let mut world = World::new(&config);
    let spec = governed_spec();
    let valid = world.judge(&spec, 1, None).status;

    // The webhook's kind of ring: public keys only.
    world.keys = KeyRing::from_config(&config.verification_only().unwrap()).unwrap();
    world.now = hours(2);

    // A first request cannot be signed: not promoted, not refused either.
    let j = world.judge(&spec, 1, None);
    assert_eq!(j.outcome, Outcome::SigningUnavailable);
    assert_eq!(j.status.governance_status, None);
    assert!(j.status.proof.is_none() && j.status.denies.is_empty());
    assert_condition(&j.status, READY, "False", "SigningUnavailable");
    assert!(j.requeue_after.is_some(), "tried again later");

    // A governed agent whose spec changed (and was approved) keeps its status and proof until a
    // key is back, and says so in Ready; it has not judged generation 2 yet.
    let edited = changed(&spec);
    let j = world.judge(&edited, 2, Some(&valid));
    assert_eq!(j.outcome, Outcome::SigningUnavailable);
    assert_eq!(
        j.status.governance_status,
        Some(GovernanceStatus::GovernedValid)
    );
    assert_eq!(j.status.proof, valid.proof);
    assert_eq!(j.status.observed_generation, Some(1));
    assert_eq!(condition(&j.status, READY).observed_generation, Some(1));
    assert_eq!(
        condition(&j.status, PROMOTED).observed_generation,
        Some(1),
        "the promotion is still that of generation 1"
    );
    assert_condition(&j.status, READY, "False", "SigningUnavailable");
    assert_condition(&j.status, PROMOTED, "True", "Promoted");

    // A proof that still holds needs no signing key.
    let j = world.judge(&spec, 1, Some(&valid));
    assert_eq!(j.outcome, Outcome::Kept);
    assert_eq!(j.status, valid);
}

/// A GOVERNED_VALID agent whose Ready went False while the operator could not sign (a policy
/// change with no signing key) is Ready again once the policy is rolled back and its proof holds
/// again: a kept proof is written with the operator's conditions, not the previous ones.
#[test]
fn kept_proof_is_ready_again_after_signing_was_unavailable() {
    let config = keys();
    let mut world = World::new(&config);
    let spec = governed_spec();
    let valid = world.judge(&spec, 1, None).status;

    // A new policy arrives while the operator has no signing key.
    let first_policy = world.policy.take();
    world.policy = Some(active_policy(&policy_spec(900.0)));
    world.keys = KeyRing::from_config(&config.verification_only().unwrap()).unwrap();
    world.now = hours(2);
    let stuck = world.judge(&spec, 1, Some(&valid));
    assert_eq!(stuck.outcome, Outcome::SigningUnavailable);
    assert_condition(&stuck.status, READY, "False", "SigningUnavailable");

    // The policy is rolled back and the signing key is back: the proof holds again.
    world.policy = first_policy;
    world.keys = KeyRing::from_config(&config).unwrap();
    world.now = hours(3);
    let j = world.judge(&spec, 1, Some(&stuck.status));
    assert_eq!(j.outcome, Outcome::Kept);
    assert_eq!(verify(&world.keys, subject(), proof(&j.status)), Ok(()));
    assert_eq!(
        condition(&j.status, READY).status,
        "True",
        "a GOVERNED_VALID agent with a proof that holds is Ready: {:?}",
        condition(&j.status, READY)
    );
}

// --- Transitions between tiers ------------------------------------------------------------------

#[test]
fn promotion_from_an_expired_sandbox_drops_the_sandbox_fields() {
    let mut world = World::new(&keys());
    world.expiry = short_expiry();
    world.now = hours(3);
    let expired = world.judge(&sandbox_spec(), 1, None).status;
    assert!(find(&expired.conditions, EXPIRED).is_some());

    let j = world.judge(&governed_spec(), 2, Some(&expired));
    assert_eq!(j.outcome, Outcome::Promoted);
    assert!(j.status.expires_at.is_none());
    assert!(find(&j.status.conditions, EXPIRED).is_none());
    assert_condition(&j.status, READY, "True", "Promoted");
}

#[test]
fn back_to_sandbox_drops_the_proof_and_the_promoted_condition() {
    let mut world = World::new(&keys());
    let spec = governed_spec();
    world.approvals = vec![Approval::by("alice").of(&spec)];
    let valid = world.judge(&spec, 1, None).status;
    world.now = hours(2);
    let j = world.judge(&sandbox_spec(), 2, Some(&valid));
    assert_eq!(j.outcome, Outcome::Sandbox);
    let s = &j.status;
    assert_eq!(s.governance_status, Some(GovernanceStatus::Sandbox));
    assert!(s.proof.is_none() && s.policy.is_none() && s.warnings.is_empty());
    assert!(s.approval.is_none());
    assert!(find(&s.conditions, PROMOTED).is_none());
    assert_condition(s, READY, "True", "Sandbox");
    assert_eq!(
        outcome(&j, "filings-by-alice"),
        Some(PromotionOutcome::Superseded)
    );
}

// --- Conditions and generations -----------------------------------------------------------------

#[test]
fn conditions_keep_last_transition_time_while_their_status_holds() {
    let mut world = World::new(&keys());
    world.expiry = short_expiry();
    let spec = sandbox_spec();
    let first = world.judge(&spec, 1, None).status;

    world.now = hours(1).checked_add(SignedDuration::from_mins(30)).unwrap();
    let second = world.judge(&spec, 1, Some(&first)).status;
    assert_eq!(second, first, "nothing changed, nothing to write");
    assert_eq!(
        condition(&second, READY).last_transition_time,
        Time(hours(1))
    );

    world.now = hours(3);
    let expired = world.judge(&spec, 1, Some(&second)).status;
    assert_eq!(
        condition(&expired, READY).last_transition_time,
        Time(hours(3))
    );
    assert_eq!(
        condition(&expired, EXPIRED).last_transition_time,
        Time(hours(3))
    );

    // Governed: re-signing keeps Promoted and Ready True since the first promotion.
    let mut world = World::new(&keys());
    let spec = governed_spec();
    let edited = changed(&spec);
    world.approvals = vec![
        Approval::by("alice").of(&spec),
        Approval::by("alice").named("edited-by-alice").of(&edited),
    ];
    let valid = world.judge(&spec, 1, None).status;
    world.now = hours(5);
    let resigned = world.judge(&edited, 2, Some(&valid)).status;
    assert_ne!(resigned.proof, valid.proof);
    for type_ in [PROMOTED, READY] {
        assert_eq!(
            condition(&resigned, type_).last_transition_time,
            Time(hours(1)),
            "{type_}"
        );
    }
    world.now = hours(6);
    let denied = world.judge(&too_hot_spec(), 3, Some(&resigned)).status;
    assert_eq!(
        condition(&denied, PROMOTED).last_transition_time,
        Time(hours(6))
    );
}

#[test]
fn observed_generation_follows_metadata_generation() {
    let mut world = World::new(&keys());
    let sandbox = world.judge(&sandbox_spec(), 3, None).status;
    assert_eq!(sandbox.observed_generation, Some(3));
    assert!(
        sandbox
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(3))
    );

    world.now = hours(2);
    let valid = world.judge(&governed_spec(), 4, Some(&sandbox)).status;
    assert_eq!(valid.observed_generation, Some(4));
    assert!(
        valid
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(4))
    );

    // A kept proof (say, a no-op edit bumped the generation) is reported for the new generation.
    let kept = world.judge(&governed_spec(), 5, Some(&valid));
    assert_eq!(kept.outcome, Outcome::Kept);
    assert_eq!(kept.status.observed_generation, Some(5));

    let denied = world.judge(&too_hot_spec(), 6, Some(&valid)).status;
    assert_eq!(denied.observed_generation, Some(6));
}

// --- Rollback: a spec that comes back ------------------------------------------------------------

/// Approved at creation, changed at `changed_at` (hours), back at `back_at`: the judgement of the
/// spec that came back, and the approval's status before it.
fn roll_back(changed_at: i64, back_at: i64) -> (Judgement, AgentPromotionStatus) {
    let mut world = World::new(&keys());
    let spec = governed_spec();
    world.approvals = vec![Approval::by("alice").of(&spec)];
    let first = world.judge(&spec, 1, None);
    assert_eq!(first.outcome, Outcome::Promoted);
    world.record(&first);

    world.now = hours(changed_at);
    let edited = world.judge(&changed(&spec), 2, Some(&first.status));
    assert_eq!(edited.outcome, Outcome::Invalidated);
    world.record(&edited);
    let superseded = approval(&edited, "filings-by-alice").clone();

    world.now = hours(back_at);
    // Judged again while changed (nothing moves), then rolled back.
    let again = world.judge(&changed(&spec), 2, Some(&edited.status));
    world.record(&again);
    (world.judge(&spec, 3, Some(&again.status)), superseded)
}

#[test]
fn a_rollback_to_an_approved_spec_reuses_its_approval_and_signs_again() {
    let (j, superseded) = roll_back(2, 3);
    assert_eq!(superseded.outcome, Some(PromotionOutcome::Superseded));
    assert!(superseded.proof.is_some(), "{superseded:?}");
    assert_eq!(j.outcome, Outcome::Promoted);
    let s = &j.status;
    assert_eq!(s.governance_status, Some(GovernanceStatus::GovernedValid));
    // A new proof, for the spec that came back, naming the approval's approver and the approval.
    let p = proof(s);
    assert_eq!(p.spec_hash, spec_hash(&governed_spec()).unwrap());
    assert_eq!(p.approvers, vec![approver("alice")]);
    assert_eq!(p.promotions, vec!["uid-filings-by-alice".to_string()]);
    assert_eq!(p.signed_at, format_signed_at(hours(3)));
    assert_eq!(
        outcome(&j, "filings-by-alice"),
        Some(PromotionOutcome::Approved)
    );
    // Reuse is no new attempt.
    assert!(j.attempts.is_empty(), "{:?}", j.attempts);
}

#[test]
fn an_approved_approval_counts_for_the_ttl_after_it_was_superseded_not_after_it_was_made() {
    let ttl = APPROVAL_TTL.as_hours();
    // Made long ago (more than the TTL before the rollback), superseded recently: reused.
    let (j, _) = roll_back(ttl + 10, ttl + 20);
    assert_eq!(j.outcome, Outcome::Promoted);
    assert_eq!(
        outcome(&j, "filings-by-alice"),
        Some(PromotionOutcome::Approved)
    );

    // Superseded more than the TTL ago: expired, and the agent waits for a new approval.
    let (j, _) = roll_back(2, ttl + 3);
    assert_eq!(j.outcome, Outcome::Invalidated);
    assert_eq!(
        j.status.governance_status,
        Some(GovernanceStatus::GovernedInvalidated)
    );
    assert!(
        j.status.denies[0].contains("approve spec hash"),
        "{:?}",
        j.status.denies
    );
    assert_eq!(
        outcome(&j, "filings-by-alice"),
        Some(PromotionOutcome::Expired)
    );
}

#[test]
fn a_rollback_reuses_an_approval_only_while_its_approver_and_the_policy_still_allow_it() {
    let mut world = World::new(&keys());
    let spec = governed_spec();
    world.approvals = vec![Approval::by("alice").of(&spec)];
    let first = world.judge(&spec, 1, None);
    world.record(&first);
    world.now = hours(2);
    let edited = world.judge(&changed(&spec), 2, Some(&first.status));
    world.record(&edited);
    world.now = hours(3);

    // alice's `promote` was revoked meanwhile: not reused.
    let mut revoked = World {
        approvals: world.approvals.clone(),
        ..World::new(&keys())
    };
    revoked.now = world.now;
    revoked.approvals[0].authorized = false;
    let j = revoked.judge(&spec, 3, Some(&edited.status));
    assert_eq!(j.outcome, Outcome::Invalidated);
    assert_eq!(
        outcome(&j, "filings-by-alice"),
        Some(PromotionOutcome::Denied)
    );

    // Two approvals required now: alice's counts, and the agent waits for a second.
    world.policy = Some(active_policy(&policy_requiring(2)));
    let j = world.judge(&spec, 3, Some(&edited.status));
    assert_eq!(j.outcome, Outcome::Invalidated);
    assert_eq!(
        outcome(&j, "filings-by-alice"),
        Some(PromotionOutcome::Pending)
    );
}

#[test]
fn an_approval_never_approved_counts_for_the_ttl_after_it_was_made() {
    let mut world = World::new(&keys());
    world.policy = Some(active_policy(&policy_requiring(2)));
    let spec = governed_spec();
    world.approvals = vec![Approval::by("alice").of(&spec)];
    let pending = world.judge(&spec, 1, None);
    assert_eq!(
        outcome(&pending, "filings-by-alice"),
        Some(PromotionOutcome::Pending)
    );
    world.record(&pending);
    world.now = hours(2);
    let edited = world.judge(&changed(&spec), 2, Some(&pending.status));
    world.record(&edited);
    let superseded = approval(&edited, "filings-by-alice");
    assert_eq!(superseded.outcome, Some(PromotionOutcome::Superseded));
    assert!(superseded.proof.is_none());

    world.now = hours(APPROVAL_TTL.as_hours() + 1);
    world.approvals.push(
        Approval::by("bob")
            .of(&spec)
            .at(hours(APPROVAL_TTL.as_hours())),
    );
    let j = world.judge(&spec, 3, Some(&edited.status));
    assert_eq!(
        outcome(&j, "filings-by-alice"),
        Some(PromotionOutcome::Expired)
    );
    assert_eq!(j.outcome, Outcome::AwaitingApproval);
}

/// The shipped policy with a budget limit of `max`, in force under `action`.
fn policy_under(max: f64, action: EnforcementAction) -> ActivePolicy {
    let mut spec = policy_spec(max);
    spec.enforcement_action = action;
    active_policy(&spec)
}

#[test]
fn audit_changes_no_agent_and_records_what_enforce_then_invalidates() {
    let mut world = World::new(&keys());
    let spec = governed_spec(); // a budget of 250
    let valid = world.judge(&spec, 1, None).status;
    assert!(valid.audit.is_empty());

    // In audit mode a limit of 50 changes nothing but the findings; the proof binds the
    // bundle's hash, which covers the action.
    world.policy = Some(policy_under(50.0, EnforcementAction::Audit));
    let audited = world.judge(&spec, 1, Some(&valid));
    assert_eq!(
        audited.status.governance_status,
        Some(GovernanceStatus::GovernedValid)
    );
    assert!(audited.status.denies.is_empty() && audited.status.warnings.is_empty());
    assert_eq!(audited.status.audit.len(), 1, "{:?}", audited.status.audit);
    assert_eq!(audited.status.audit[0].code, "budget");
    assert_eq!(
        proof(&audited.status).policy_hash,
        world.policy.as_ref().unwrap().hash()
    );
    assert_ne!(
        world.policy.as_ref().unwrap().hash(),
        active_policy(&policy_spec(50.0)).hash()
    );

    // Switched to enforce: invalidated, by the rule audit reported.
    world.policy = Some(policy_under(50.0, EnforcementAction::Enforce));
    let enforced = world.judge(&spec, 1, Some(&audited.status));
    assert_eq!(enforced.outcome, Outcome::Invalidated);
    assert_eq!(enforced.deny_codes, vec!["budget".to_string()]);
    assert!(enforced.status.audit.is_empty());
}

#[test]
fn warn_promotes_what_the_policy_would_deny_as_restricted() {
    let mut world = World::new(&keys());
    world.policy = Some(policy_under(1000.0, EnforcementAction::Warn));
    let j = world.judge(&too_hot_spec(), 1, None);
    assert_eq!(j.outcome, Outcome::Restricted);
    assert_eq!(
        j.status.governance_status,
        Some(GovernanceStatus::GovernedRestricted)
    );
    assert!(
        j.status
            .warnings
            .iter()
            .any(|w| w.starts_with("[warn] would deny (temperature): ")),
        "{:?}",
        j.status.warnings
    );
    assert!(j.status.denies.is_empty());
}

/// The actor rule holds in every mode: an approver without `promote` counts for nothing.
#[test]
fn audit_and_warn_never_relax_who_may_promote() {
    for action in [EnforcementAction::Warn, EnforcementAction::Audit] {
        let mut world = World::new(&keys());
        world.policy = Some(policy_under(1000.0, action));
        world.approvals = vec![Approval::by("mallory").unauthorized()];
        let j = world.judge(&governed_spec(), 1, None);
        assert_eq!(j.outcome, Outcome::AwaitingApproval, "{action:?}");
        assert!(j.status.proof.is_none());
        assert_eq!(
            outcome(&j, "filings-by-mallory"),
            Some(PromotionOutcome::Denied),
            "{action:?}"
        );
    }
}

#[test]
fn a_promotion_over_the_namespace_total_is_denied_with_the_numbers() {
    let mut spec = default_bundle_spec();
    spec.data.max_namespace_monthly_budget_usd = Some(1000.0);
    let mut world = World::new(&keys());
    world.policy = Some(active_policy(&spec));
    let agent = governed_spec();
    let budget = agent
        .anatomy
        .economics
        .as_ref()
        .map_or(0.0, |e| e.monthly_budget_usd);
    // Room for it: promoted.
    world.namespace_budget = Some(NamespaceInput {
        allocated_monthly_budget_usd: 1000.0 - budget,
    });
    let judged = world.judge(&agent, 1, None);
    assert_eq!(
        judged.status.governance_status,
        Some(GovernanceStatus::GovernedValid)
    );
    // A cent short: denied, saying how much.
    world.namespace_budget = Some(NamespaceInput {
        allocated_monthly_budget_usd: 1000.01 - budget,
    });
    let judged = world.judge(&agent, 1, None);
    assert_eq!(
        judged.status.governance_status,
        Some(GovernanceStatus::Sandbox)
    );
    assert_eq!(judged.deny_codes, vec!["namespace_budget".to_string()]);
    assert!(
        judged.status.denies[0].contains("of its monthly total of 1000"),
        "{:?}",
        judged.status.denies
    );
    // Not asked (an agent already governed under its spec): the total is not checked.
    world.namespace_budget = None;
    let judged = world.judge(&agent, 1, None);
    assert_eq!(
        judged.status.governance_status,
        Some(GovernanceStatus::GovernedValid)
    );
}

fn waiver(name: &str, rules: &[&str], until: Timestamp) -> AppliedException {
    AppliedException {
        name: name.into(),
        rules: rules.iter().map(ToString::to_string).collect(),
        expires_at: Time(until),
        requested_by: Some("carol".into()),
    }
}

#[test]
fn an_exception_waives_its_rule_into_a_warning_the_status_and_the_signed_proof() {
    let mut spec = default_bundle_spec();
    spec.data.max_monthly_budget_usd = 100.0;
    let mut world = World::new(&keys());
    world.policy = Some(active_policy(&spec));
    let agent = governed_spec();
    let denied = world.judge(&agent, 1, None);
    assert_eq!(denied.deny_codes, vec!["budget".to_string()]);

    // An exception for another rule waives nothing.
    world.exceptions = vec![waiver("hot", &["temperature"], hours(3))];
    let still = world.judge(&agent, 1, None);
    assert_eq!(still.deny_codes, vec!["budget".to_string()]);
    assert!(still.status.exceptions.is_empty());

    world.exceptions = vec![waiver("budget-waiver", &["budget"], hours(3))];
    let judged = world.judge(&agent, 1, None);
    assert_eq!(
        judged.status.governance_status,
        Some(GovernanceStatus::GovernedRestricted)
    );
    assert!(
        judged
            .status
            .warnings
            .iter()
            .any(|w| w.starts_with("[exception budget-waiver] waives (budget): ")),
        "{:?}",
        judged.status.warnings
    );
    assert_eq!(judged.status.exceptions, world.exceptions);
    let signed = proof(&judged.status);
    assert_eq!(signed.exceptions.len(), 1);
    assert_eq!(signed.exceptions[0].name, "budget-waiver");
    assert_eq!(signed.exceptions[0].requested_by, "carol");
    // Signed: the proof does not verify without it.
    let ring = &world.keys;
    let subject = agentgov_api::proof::ProofSubject {
        namespace: NAMESPACE,
        name: NAME,
        uid: UID,
    };
    assert!(agentgov_api::proof::verify(ring, subject, signed).is_ok());
    let mut stripped = signed.clone();
    stripped.exceptions.clear();
    assert!(agentgov_api::proof::verify(ring, subject, &stripped).is_err());
    // Judged again when it ends (two hours from now, a second after).
    assert!(
        judged
            .requeue_after
            .is_some_and(|r| r <= Duration::from_secs(2 * 3600 + 1)),
        "{:?}",
        judged.requeue_after
    );

    // Once it has ended (the operator no longer finds it in force), the governed agent falls.
    world.exceptions.clear();
    let after = world.judge(&agent, 1, Some(&judged.status));
    assert_eq!(
        after.status.governance_status,
        Some(GovernanceStatus::GovernedInvalidated)
    );
    assert!(after.status.exceptions.is_empty());
}

#[test]
fn an_exception_never_waives_the_actor_rule() {
    let (decision, used) = agentgov_api::exception::waive(
        PolicyDecision {
            allow: false,
            denies: vec![agentgov_api::policy::Deny::new(
                "actor_unauthorized",
                "mallory may not promote",
            )],
            ..PolicyDecision::default()
        },
        &[waiver("all", &["actor_unauthorized", "budget"], hours(3))],
    );
    assert!(!decision.allow);
    assert!(used.is_empty());
}

#[test]
fn break_glass_is_recorded_on_every_agent_and_cleared_when_the_webhook_is_back() {
    let mut world = World::new(&keys());
    world.unguarded = Some("the ValidatingWebhookConfiguration hook was deleted".into());
    for spec in [governed_spec(), sandbox_spec()] {
        let judged = world.judge(&spec, 1, None);
        let condition = find(&judged.status.conditions, "AdmissionGuarded").unwrap();
        assert_eq!(condition.status, "False");
        assert_eq!(condition.reason, "WebhookConfigurationMissing");
        // Nothing else changes: the governed agent is still signed.
        if spec.mode == agentgov_api::agent::AgentMode::Governed {
            assert_eq!(
                judged.status.governance_status,
                Some(GovernanceStatus::GovernedValid)
            );
        }
        world.unguarded = None;
        let back = world.judge(&spec, 1, Some(&judged.status));
        assert!(find(&back.status.conditions, "AdmissionGuarded").is_none());
        world.unguarded = Some("the ValidatingWebhookConfiguration hook was deleted".into());
    }
}

#[test]
fn an_approval_that_promoted_a_deleted_agent_does_not_promote_its_successor() {
    // alice's approval promoted the agent; the agent is deleted and created again under the
    // same name with the same spec (another uid). The approval approved the old object: the new
    // one waits for an approval of its own, and the old approval says why it no longer counts.
    let mut world = World::new(&keys());
    let spec = governed_spec();
    let first = world.judge(&spec, 1, None);
    assert_eq!(first.outcome, Outcome::Promoted);
    world.record(&first);

    world.uid = "a-new-uid";
    world.now = hours(2);
    let j = world.judge(&spec, 1, None);
    assert_eq!(j.outcome, Outcome::AwaitingApproval);
    assert!(
        j.status.proof.is_none(),
        "nothing is signed for the new object"
    );
    assert_eq!(
        j.status.approval.as_ref().unwrap().approved_by,
        Vec::<String>::new()
    );
    let old = &j.promotions[&world.approvals[0].name];
    assert_eq!(old.outcome, Some(PromotionOutcome::Superseded));
    assert!(
        old.denies[0].contains("another Agent object of this name")
            && old.denies[0].contains(&UID[..8]),
        "{:?}",
        old.denies
    );
    assert_eq!(
        old.proof.as_ref().unwrap().agent_uid,
        UID,
        "the record of what it approved stays"
    );
    // Not "the spec changed": it did not.
    assert!(
        !j.status.denies.iter().any(|d| d.contains("changed")),
        "{:?}",
        j.status.denies
    );

    // Stable: judged again with that status, still superseded, nothing signed.
    world.record(&j);
    let again = world.judge(&spec, 1, Some(&j.status));
    assert_eq!(again.outcome, Outcome::AwaitingApproval);
    assert_eq!(
        again.promotions[&world.approvals[0].name],
        j.promotions[&world.approvals[0].name]
    );

    // A new approval by alice promotes the new object; the old one stays superseded.
    world
        .approvals
        .push(Approval::by("alice").named("again-by-alice").at(hours(2)));
    let promoted = world.judge(&spec, 1, Some(&again.status));
    assert_eq!(promoted.outcome, Outcome::Promoted);
    let p = proof(&promoted.status);
    assert_eq!(p.agent_uid, "a-new-uid");
    assert_eq!(p.promotions, vec![world.approvals[1].uid.clone()]);
    assert_eq!(
        promoted.promotions[&world.approvals[0].name].outcome,
        Some(PromotionOutcome::Superseded)
    );
}

#[test]
fn a_status_set_back_to_sandbox_does_not_turn_a_quarantine_into_containment() {
    // A governed agent's status is rewritten by someone else to SANDBOX, without its proof;
    // then the policy refuses it. Its approval still stands for this object (Approved, linking
    // the proof it produced): it was governed, so it is invalidated (quarantined), not denied
    // as a sandbox (contained).
    let mut world = World::new(&keys());
    let spec = governed_spec();
    let first = world.judge(&spec, 1, None);
    assert_eq!(first.outcome, Outcome::Promoted);
    world.record(&first);
    let forged = AgentStatus {
        governance_status: Some(GovernanceStatus::Sandbox),
        ..AgentStatus::default()
    };
    world.policy = Some(active_policy(&policy_spec(1.0)));
    let j = world.judge(&spec, 1, Some(&forged));
    assert_eq!(j.outcome, Outcome::Invalidated);
    assert_eq!(
        j.status.governance_status,
        Some(GovernanceStatus::GovernedInvalidated)
    );
}

#[test]
fn each_approval_is_judged_with_its_own_stamped_groups() {
    // carol approved twice: first before she joined the promoter group (the policy refuses
    // that actor), then after. Each approval is judged with the identity it was stamped with:
    // the agent is promoted under the second alone, and the first is denied, whichever is
    // listed first.
    let mut policy = default_bundle_spec();
    policy.data.promoter_roles = vec!["agent-approvers".into()];
    let mut world = World::new(&keys());
    world.policy = Some(active_policy(&policy));
    let before = Approval::by("carol").named("before-joining");
    let after = Approval::by("carol")
        .named("after-joining")
        .in_groups(&["agent-approvers"])
        .at(hours(1));
    for approvals in [
        vec![after.clone(), before.clone()],
        vec![before.clone(), after.clone()],
    ] {
        world.approvals = approvals;
        let j = world.judge(&governed_spec(), 1, None);
        assert_eq!(j.outcome, Outcome::Promoted);
        assert_eq!(proof(&j.status).promotions, vec![after.uid.clone()]);
        assert_eq!(
            outcome(&j, "before-joining"),
            Some(PromotionOutcome::Denied)
        );
        assert_eq!(
            outcome(&j, "after-joining"),
            Some(PromotionOutcome::Approved)
        );
    }
}
