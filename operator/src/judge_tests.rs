//! Unit tests of [`Judge::judge`] over plain data: no cluster, and no clock but the one passed in.

use std::time::Duration;

use agentgov_api::agent::{AgentSpec, AgentStatus, GovernanceStatus, SandboxSpec};
use agentgov_api::conditions::{EXPIRED, PROMOTED, READY, find};
use agentgov_api::expiry::ExpiryPolicy;
use agentgov_api::hash::spec_hash;
use agentgov_api::keyring::{KeyRing, KeyRingConfig, VerifyFailure};
use agentgov_api::policy::{Actor, default_bundle_spec};
use agentgov_api::proof::{ProofBundle, ProofSubject, format_signed_at, verify};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::context::operator_actor;
use crate::fixtures::{
    BUNDLE, NAMESPACE, active_policy, governed_spec, policy_spec, ring_config, sandbox_spec,
    too_hot_spec,
};
use crate::judge::{ActivePolicy, AgentFacts, Judge, Judgement, Outcome};

const NAME: &str = "filings";
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
    }
}

/// Everything an agent is judged against; tests change one field at a time.
struct World {
    policy: Option<ActivePolicy>,
    bundle_name: &'static str,
    keys: KeyRing,
    actor: Actor,
    expiry: ExpiryPolicy,
    now: Timestamp,
}

impl World {
    /// The shipped policy in force, `keys` as the ring, an hour after creation.
    fn new(keys: &KeyRingConfig) -> Self {
        World {
            policy: Some(active_policy(&default_bundle_spec())),
            bundle_name: BUNDLE,
            keys: KeyRing::from_config(keys).unwrap(),
            actor: operator_actor(true),
            expiry: ExpiryPolicy::default(),
            now: hours(1),
        }
    }

    fn judge(&self, spec: &AgentSpec, generation: i64, status: Option<&AgentStatus>) -> Judgement {
        Judge {
            policy: self.policy.as_ref(),
            bundle_name: self.bundle_name,
            keys: &self.keys,
            actor: &self.actor,
            expiry: &self.expiry,
            now: self.now,
        }
        .judge(&AgentFacts {
            namespace: NAMESPACE,
            name: NAME,
            generation: Some(generation),
            created: created(),
            spec,
            status,
        })
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

// --- Sandbox ------------------------------------------------------------------------------------

#[test]
fn sandbox_without_ttl_gets_the_default_ttl_and_is_ready() {
    let mut world = World::new(&keys());
    // A sandbox needs no policy.
    world.policy = None;
    let j = world.judge(&sandbox_spec(), 1, None);

    assert_eq!(j.outcome, Outcome::Sandbox);
    assert!(!j.outcome.evaluated());
    let s = &j.status;
    assert_eq!(s.governance_status, Some(GovernanceStatus::Sandbox));
    // ExpiryPolicy::default(): 72 h.
    assert_eq!(s.expires_at, Some(Time(hours(72))));
    assert_condition(s, READY, "True", "Sandbox");
    assert_condition(s, EXPIRED, "False", "Active");
    assert!(find(&s.conditions, PROMOTED).is_none());
    assert!(s.proof.is_none() && s.policy.is_none() && s.denies.is_empty());
    // Woken at expiry (71 h from now), not polled; a moment late is fine.
    let requeue = j.requeue_after.expect("a sandbox is requeued");
    let to_expiry = Duration::from_secs(71 * 3600);
    assert!(
        requeue >= to_expiry && requeue <= to_expiry + Duration::from_secs(2),
        "{requeue:?}"
    );
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
fn allowed_governed_agent_is_valid_with_a_proof_that_verifies() {
    let world = World::new(&keys());
    let spec = governed_spec();
    let j = world.judge(&spec, 1, None);

    assert_eq!(j.outcome, Outcome::Promoted);
    assert!(j.outcome.evaluated());
    assert_eq!(j.requeue_after, None);
    let s = &j.status;
    assert_eq!(s.governance_status, Some(GovernanceStatus::GovernedValid));
    let p = proof(s);
    assert_eq!(p.spec_hash, spec_hash(&spec).unwrap());
    let policy = world.policy.as_ref().unwrap();
    assert_eq!(p.policy_hash, policy.hash());
    assert_eq!(p.key_id, "k1");
    assert_eq!(p.signed_at, format_signed_at(world.now));
    assert_eq!(verify(&world.keys, subject(), p), Ok(()));
    // The proof is bound to this agent: copied onto another it fails.
    let other = ProofSubject {
        namespace: NAMESPACE,
        name: "another",
    };
    assert_eq!(
        verify(&world.keys, other, p),
        Err(VerifyFailure::BadSignature)
    );
    let reference = s.policy.as_ref().unwrap();
    assert_eq!(
        (reference.name.as_str(), reference.hash.as_str()),
        (BUNDLE, policy.hash())
    );
    assert_condition(s, PROMOTED, "True", "Promoted");
    assert_condition(s, READY, "True", "Promoted");
    assert!(s.denies.is_empty() && s.warnings.is_empty() && s.expires_at.is_none());
    assert_eq!(s.observed_generation, Some(1));
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
}

#[test]
fn denied_first_request_stays_sandbox_without_a_proof() {
    let world = World::new(&keys());
    let j = world.judge(&too_hot_spec(), 1, None);

    assert_eq!(j.outcome, Outcome::Denied);
    assert!(j.outcome.evaluated());
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
}

#[test]
fn denied_governed_agent_is_invalidated_and_loses_its_proof() {
    let mut world = World::new(&keys());
    let spec = governed_spec(); // a budget of 100
    let valid = world.judge(&spec, 1, None).status;
    assert_eq!(
        valid.governance_status,
        Some(GovernanceStatus::GovernedValid)
    );

    world.policy = Some(active_policy(&policy_spec(50.0)));
    world.now = hours(2);
    let j = world.judge(&spec, 1, Some(&valid));
    assert_eq!(j.outcome, Outcome::Invalidated);
    let s = &j.status;
    assert_eq!(
        s.governance_status,
        Some(GovernanceStatus::GovernedInvalidated)
    );
    assert!(s.proof.is_none(), "the proof is removed");
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

    // Denied again under yet another policy, it stays quarantined, not back in the sandbox.
    world.policy = Some(active_policy(&policy_spec(40.0)));
    let again = world.judge(&spec, 1, Some(s));
    assert_eq!(again.outcome, Outcome::Invalidated);
    assert_eq!(
        again.status.governance_status,
        Some(GovernanceStatus::GovernedInvalidated)
    );
}

#[test]
fn invalidated_agent_that_passes_later_is_valid_again() {
    let mut world = World::new(&keys());
    let spec = governed_spec(); // a budget of 100
    let valid = world.judge(&spec, 1, None).status;
    world.policy = Some(active_policy(&policy_spec(50.0)));
    let invalidated = world.judge(&spec, 1, Some(&valid)).status;
    assert_eq!(
        invalidated.governance_status,
        Some(GovernanceStatus::GovernedInvalidated)
    );
    world.now = hours(3);

    // The policy is relaxed.
    let mut relaxed = World::new(&keys());
    relaxed.now = world.now;
    let j = relaxed.judge(&spec, 1, Some(&invalidated));
    assert_eq!(j.outcome, Outcome::Promoted);
    assert_eq!(
        j.status.governance_status,
        Some(GovernanceStatus::GovernedValid)
    );
    assert!(j.status.denies.is_empty());
    assert_eq!(verify(&relaxed.keys, subject(), proof(&j.status)), Ok(()));
    assert_eq!(
        proof(&j.status).policy_hash,
        relaxed.policy.as_ref().unwrap().hash()
    );
    assert_condition(&j.status, PROMOTED, "True", "Promoted");
    assert_condition(&j.status, READY, "True", "Promoted");

    // Or the spec is fixed (a new generation) under the stricter policy.
    let mut fixed = spec.clone();
    fixed.anatomy.economics = Some(agentgov_api::agent::Economics {
        monthly_budget_usd: 30.0,
    });
    let j = world.judge(&fixed, 2, Some(&invalidated));
    assert_eq!(j.outcome, Outcome::Promoted);
    assert_eq!(
        j.status.governance_status,
        Some(GovernanceStatus::GovernedValid)
    );
    assert_eq!(proof(&j.status).spec_hash, spec_hash(&fixed).unwrap());
    assert_eq!(j.status.observed_generation, Some(2));
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

    // A governed agent whose policy is gone is invalidated.
    let j = world.judge(&spec, 1, Some(&valid));
    assert_eq!(j.outcome, Outcome::Invalidated);
    assert!(j.status.proof.is_none());
    assert!(j.status.denies[0].contains("finance-policy"));
}

// --- Keeping and re-signing a proof -------------------------------------------------------------

#[test]
fn proof_that_still_holds_is_kept_not_resigned() {
    let mut config = ring_config("k1", &["k1", "k2"]);
    let mut world = World::new(&config);
    let spec = governed_spec();
    let first = world.judge(&spec, 1, None).status;

    world.now = hours(30);
    let j = world.judge(&spec, 1, Some(&first));
    assert_eq!(j.outcome, Outcome::Kept);
    assert!(!j.outcome.evaluated());
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
fn changed_spec_is_resigned_with_the_new_spec_hash() {
    let mut world = World::new(&keys());
    let spec = governed_spec();
    let first = world.judge(&spec, 1, None).status;

    let mut changed = spec.clone();
    changed.description = "summarises quarterly and annual filings".into();
    world.now = hours(2);
    let j = world.judge(&changed, 2, Some(&first));

    assert_eq!(j.outcome, Outcome::Promoted);
    let p = proof(&j.status);
    assert_eq!(p.spec_hash, spec_hash(&changed).unwrap());
    assert_ne!(p.spec_hash, proof(&first).spec_hash);
    assert_eq!(p.signed_at, format_signed_at(hours(2)));
    assert_eq!(verify(&world.keys, subject(), p), Ok(()));
    assert_eq!(j.status.observed_generation, Some(2));
}

#[test]
fn changed_policy_is_resigned_against_the_new_hash() {
    let mut world = World::new(&keys());
    let spec = governed_spec();
    let first = world.judge(&spec, 1, None).status;

    // Still allows a budget of 100, without warnings, but is another policy.
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
    assert_eq!(verify(&world.keys, subject(), p), Ok(()));
    assert_eq!(
        j.status.policy.as_ref().map(|r| r.hash.as_str()),
        Some(hash)
    );
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
    // restricted agent, made-up denies, a condition of their own. The proof is kept (not signed
    // again); everything else is the operator's judgement again.
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
    assert!(!j.outcome.evaluated());
    assert_eq!(j.status.governance_status, None);
    assert!(j.status.proof.is_none() && j.status.denies.is_empty());
    assert_condition(&j.status, READY, "False", "SigningUnavailable");
    assert!(j.requeue_after.is_some(), "tried again later");

    // A governed agent whose spec changed keeps its status and proof until a key is back.
    let mut changed = spec.clone();
    changed.description = "changed".into();
    let j = world.judge(&changed, 2, Some(&valid));
    assert_eq!(j.outcome, Outcome::SigningUnavailable);
    assert_eq!(
        j.status.governance_status,
        Some(GovernanceStatus::GovernedValid)
    );
    assert_eq!(j.status.proof, valid.proof);
    assert_eq!(
        j.status.observed_generation,
        Some(1),
        "status still describes generation 1"
    );
    assert_condition(&j.status, READY, "False", "SigningUnavailable");
    assert_condition(&j.status, PROMOTED, "True", "Promoted");

    // A proof that still holds needs no signing key.
    let j = world.judge(&spec, 1, Some(&valid));
    assert_eq!(j.outcome, Outcome::Kept);
    assert_eq!(j.status, valid);
}

/// BUG (judge.rs, the `Kept` branch): the kept status is the previous one verbatim, conditions
/// included. An agent whose Ready went False while the operator could not sign (a policy change
/// with no signing key) stays Ready=False "SigningUnavailable" after the policy is rolled back
/// and its proof holds again, even once a signing key is back.
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
    let valid = world.judge(&governed_spec(), 1, None).status;
    world.now = hours(2);
    let j = world.judge(&sandbox_spec(), 2, Some(&valid));
    assert_eq!(j.outcome, Outcome::Sandbox);
    let s = &j.status;
    assert_eq!(s.governance_status, Some(GovernanceStatus::Sandbox));
    assert!(s.proof.is_none() && s.policy.is_none() && s.warnings.is_empty());
    assert!(find(&s.conditions, PROMOTED).is_none());
    assert_condition(s, READY, "True", "Sandbox");
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
    let valid = world.judge(&governed_spec(), 1, None).status;
    let mut changed = governed_spec();
    changed.description = "changed".into();
    world.now = hours(5);
    let resigned = world.judge(&changed, 2, Some(&valid)).status;
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
