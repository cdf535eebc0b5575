//! The memo decides exactly like the reference checks: on a hit, after a key ring reload, after
//! a spec change, for another Agent object of the same name (another uid), and with the clock
//! and the policy in force judged on every review.

use std::sync::Arc;

use agentgov_api::Agent;
use agentgov_api::admission::Derivations;
use agentgov_api::admission::{
    AdmissionContext, AgentView, DecisionCode, Denial, check_agent, check_agent_with,
};
use agentgov_api::agent::{AgentMode, AgentSpec, AgentStatus, GovernanceStatus, SandboxSpec};
use agentgov_api::expiry::ExpiryPolicy;
use agentgov_api::hash::spec_hash;
use agentgov_api::keyring::VerifyFailure;
use agentgov_api::keyring::{KeyRing, KeyRingConfig, generate_ed25519};
use agentgov_api::proof::{Approver, Claims, ProofBundle, ProofSubject, sign, signing_payload};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::watcher::Event;

use super::{CheckMemo, MemoStats};
use crate::cache::Caches;
use crate::decide::decide_pod;
use crate::decision::Decision;
use crate::keys::{KeySnapshot, Keys};
use crate::policy::PolicyIndex;
use crate::testing::StaticView;

const NS: &str = "team-a";
const POD_REVIEW: &str = include_str!("../tests/fixtures/pod-create.json");

/// The policy hash proofs are signed against, and another one.
const POLICY: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const OTHER_POLICY: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const GOVERNED: &str = "invoice-auditor";

fn now() -> Timestamp {
    "2026-01-10T12:00:00Z".parse().unwrap()
}

fn hours(h: i64) -> SignedDuration {
    SignedDuration::from_hours(h)
}

/// `examples/agent-governed.yaml`'s spec.
fn spec() -> AgentSpec {
    agentgov_api::testing::governed_spec()
}

/// Signing keys k1 (and k2, for a proof by a key the webhook does not know).
struct Signers {
    k1: KeyRingConfig,
    k1_ring: KeyRing,
    k2_ring: KeyRing,
}

impl Signers {
    fn new() -> Self {
        let signing = |id: &str| KeyRingConfig {
            active_key_id: Some(id.into()),
            keys: vec![generate_ed25519(id).unwrap()],
            revoked: vec![],
        };
        let (k1, k2) = (signing("k1"), signing("k2"));
        Signers {
            k1_ring: KeyRing::from_config(&k1).unwrap(),
            k2_ring: KeyRing::from_config(&k2).unwrap(),
            k1,
        }
    }

    /// The webhook's ring: k1's public key, with `revoked` revoked.
    fn verification(&self, revoked: &[&str]) -> KeyRing {
        let mut config = self.k1.verification_only().unwrap();
        config.revoked = revoked.iter().map(|r| r.to_string()).collect();
        KeyRing::from_config(&config).unwrap()
    }

    /// A ring that no longer lists k1 at all (not revoked: removed).
    fn without_k1(&self) -> KeyRing {
        let other = KeyRingConfig {
            active_key_id: None,
            keys: vec![generate_ed25519("k3").unwrap()],
            revoked: vec![],
        };
        KeyRing::from_config(&other.verification_only().unwrap()).unwrap()
    }
}

/// A proof (payload version 2) signed by `ring` for the Agent object `name` with `uid`,
/// approved by alice.
fn proof_for(
    name: &str,
    uid: &str,
    spec: &AgentSpec,
    ring: &KeyRing,
    policy_hash: &str,
) -> ProofBundle {
    let hash = spec_hash(spec).unwrap();
    let subject = ProofSubject {
        namespace: NS,
        name,
        uid,
    };
    let approvers = [Approver {
        username: "alice".into(),
        uid: "alice-uid".into(),
    }];
    let claims = Claims {
        spec_hash: &hash,
        policy_hash,
        approvers: &approvers,
        promotions: &[format!("promotion-of-{name}")],
        exceptions: &[],
    };
    sign(ring, subject, claims, now() - hours(2)).unwrap()
}

/// A governed agent (uid `uid-<name>`) signed by `ring`, at resourceVersion `rv`.
fn governed(name: &str, spec: AgentSpec, ring: &KeyRing, policy_hash: &str, rv: &str) -> Agent {
    let uid = format!("uid-{name}");
    let proof = proof_for(name, &uid, &spec, ring, policy_hash);
    let mut agent = Agent::new(name, spec);
    agent.metadata.namespace = Some(NS.into());
    agent.metadata.uid = Some(uid);
    agent.metadata.resource_version = Some(rv.into());
    agent.metadata.creation_timestamp = Some(Time(now() - hours(3)));
    agent.status = Some(AgentStatus {
        governance_status: Some(GovernanceStatus::GovernedValid),
        proof: Some(proof),
        ..AgentStatus::default()
    });
    agent
}

/// The checks of `agent`, through the memo when there is one.
fn check(
    memo: Option<&CheckMemo>,
    agent: &Agent,
    keys: &KeySnapshot,
    policy_hash: Option<&str>,
) -> Result<(), Denial> {
    let name = agent.metadata.name.as_deref().unwrap();
    let view = AgentView {
        namespace: NS,
        name,
        uid: agent.metadata.uid.as_deref().unwrap_or_default(),
        spec: &agent.spec,
        status: agent.status.as_ref(),
        created: agent.metadata.creation_timestamp.as_ref().unwrap().0,
    };
    let expiry = ExpiryPolicy::default();
    let ctx = AdmissionContext {
        active_policy_hash: policy_hash,
        recheck: None,
        keys: &keys.ring,
        now: now(),
        expiry: &expiry,
    };
    match memo {
        Some(memo) => check_agent_with(&view, &ctx, &memo.for_agent(NS, name, agent, keys)),
        None => check_agent(&view, &ctx),
    }
}

fn code(result: &Result<(), Denial>) -> DecisionCode {
    result
        .as_ref()
        .err()
        .map_or(DecisionCode::Allow, |d| d.code)
}

fn delta(before: MemoStats, after: MemoStats) -> (u64, u64) {
    (after.hits - before.hits, after.misses - before.misses)
}

/// Every kind of agent the seven checks tell apart.
fn variants(s: &Signers) -> Vec<Agent> {
    let valid = governed("valid", spec(), &s.k1_ring, POLICY, "10");
    let mut tampered = governed("tampered", spec(), &s.k1_ring, POLICY, "11");
    tampered.spec.anatomy.capabilities.push("payments".into());
    let mut copied = governed("copied", spec(), &s.k1_ring, POLICY, "12");
    copied.status = valid.status.clone();
    let unknown_key = governed("unknown-key", spec(), &s.k2_ring, POLICY, "13");
    let other_policy = governed("other-policy", spec(), &s.k1_ring, OTHER_POLICY, "14");
    let mut bad_signature = governed("bad-signature", spec(), &s.k1_ring, POLICY, "15");
    if let Some(proof) = bad_signature.status.as_mut().and_then(|s| s.proof.as_mut()) {
        proof.signed_at = "2026-01-10T09:00:01Z".into();
    }
    let mut invalidated = governed("invalidated", spec(), &s.k1_ring, POLICY, "16");
    if let Some(status) = invalidated.status.as_mut() {
        status.governance_status = Some(GovernanceStatus::GovernedInvalidated);
    }
    let mut unsigned = governed("unsigned", spec(), &s.k1_ring, POLICY, "17");
    unsigned.status = None;
    let mut no_version = governed("no-version", spec(), &s.k1_ring, POLICY, "18");
    no_version.metadata.resource_version = None;
    // Held out of force with a proof of an older spec: the spec check speaks first.
    let mut invalidated_changed = invalidated.clone();
    invalidated_changed.metadata.name = Some("invalidated-changed".into());
    invalidated_changed.metadata.uid = Some("uid-invalidated-changed".into());
    invalidated_changed.metadata.resource_version = Some("19".into());
    invalidated_changed
        .spec
        .anatomy
        .capabilities
        .push("payments".into());
    // A re-created agent (another uid) that kept the old object's proof.
    let mut recreated = governed("recreated", spec(), &s.k1_ring, POLICY, "20");
    recreated.metadata.uid = Some("uid-recreated-again".into());
    // ... and with the proof's agentUid rewritten to the new uid (the uid is signed).
    let mut relabelled = recreated.clone();
    relabelled.metadata.resource_version = Some("21".into());
    if let Some(proof) = relabelled.status.as_mut().and_then(|s| s.proof.as_mut()) {
        proof.agent_uid = "uid-recreated-again".into();
    }
    let mut v1 = governed("v1", spec(), &s.k1_ring, POLICY, "22");
    if let Some(proof) = v1.status.as_mut().and_then(|s| s.proof.as_mut()) {
        *proof = v1_proof(&s.k1_ring, "v1", proof);
    }
    let mut unapproved = governed("unapproved", spec(), &s.k1_ring, POLICY, "23");
    if let Some(proof) = unapproved.status.as_mut().and_then(|s| s.proof.as_mut()) {
        proof.approvers.clear();
    }
    vec![
        valid,
        tampered,
        copied,
        unknown_key,
        other_policy,
        bad_signature,
        invalidated,
        unsigned,
        no_version,
        invalidated_changed,
        recreated,
        relabelled,
        v1,
        unapproved,
    ]
}

/// `proof` re-signed by `ring` in the payload layout of version 1 (before uids and approvals).
fn v1_proof(ring: &KeyRing, name: &str, proof: &ProofBundle) -> ProofBundle {
    let mut v1 = ProofBundle {
        version: 1,
        agent_uid: String::new(),
        approvers: Vec::new(),
        promotions: Vec::new(),
        exceptions: Vec::new(),
        signature: String::new(),
        ..proof.clone()
    };
    let subject = ProofSubject {
        namespace: NS,
        name,
        uid: "",
    };
    let (_, _, signature) = ring.sign(&signing_payload(subject, &v1).unwrap()).unwrap();
    v1.signature = signature;
    v1
}

#[test]
fn a_memo_hit_decides_like_a_fresh_check() {
    let s = Signers::new();
    let rings = [
        KeySnapshot::new(s.verification(&[])),
        KeySnapshot::new(s.verification(&["k1"])),
        KeySnapshot::new(s.without_k1()),
    ];
    let policies = [Some(POLICY), Some(OTHER_POLICY), None];
    let memo = CheckMemo::default();
    let mut codes = std::collections::HashSet::new();
    for agent in variants(&s) {
        for keys in &rings {
            for policy_hash in &policies {
                let fresh = check(None, &agent, keys, *policy_hash);
                for round in 0..3 {
                    let memoized = check(Some(&memo), &agent, keys, *policy_hash);
                    assert_eq!(
                        memoized, fresh,
                        "agent {:?}, round {round}",
                        agent.metadata.name
                    );
                }
                codes.insert(code(&fresh));
            }
        }
    }
    // The variants reach every check a governed agent can fail, and the allow.
    for expected in [
        DecisionCode::Allow,
        DecisionCode::DenyProofMissing,
        DecisionCode::DenySpecHashMismatch,
        DecisionCode::DenyPolicyHashMismatch,
        DecisionCode::DenySignerRevoked,
        DecisionCode::DenySignatureInvalid,
    ] {
        assert!(codes.contains(&expected), "no variant gives {expected:?}");
    }
    let stats = memo.stats();
    assert!(stats.hits > stats.misses, "{stats:?}");
}

#[test]
fn hits_skip_the_hash_and_the_signature() {
    let s = Signers::new();
    let keys = KeySnapshot::new(s.verification(&[]));
    let agent = governed("valid", spec(), &s.k1_ring, POLICY, "1");
    let memo = CheckMemo::default();
    let before = memo.stats();
    assert_eq!(check(Some(&memo), &agent, &keys, Some(POLICY)), Ok(()));
    assert_eq!(
        delta(before, memo.stats()),
        (0, 2),
        "first review computes both"
    );
    let before = memo.stats();
    for _ in 0..10 {
        assert_eq!(check(Some(&memo), &agent, &keys, Some(POLICY)), Ok(()));
    }
    assert_eq!(
        delta(before, memo.stats()),
        (20, 0),
        "then both are remembered"
    );
    assert_eq!(memo.len(), 1);
}

#[test]
fn a_new_key_ring_generation_invalidates_remembered_verdicts_at_once() {
    let s = Signers::new();
    let keys = Keys::new(s.verification(&[]));
    let agent = governed("valid", spec(), &s.k1_ring, POLICY, "1");
    let memo = CheckMemo::default();
    let review = |memo: &CheckMemo| check(Some(memo), &agent, &keys.current(), Some(POLICY));
    assert_eq!(review(&memo), Ok(()));
    assert_eq!(review(&memo), Ok(()));

    // k1 removed from the ring (not on the revoked list: only the verdict can catch this).
    keys.store(s.without_k1());
    let denied = review(&memo);
    assert_eq!(
        code(&denied),
        DecisionCode::DenySignatureInvalid,
        "{denied:?}"
    );
    assert!(denied.unwrap_err().reason.contains("not in the key ring"));

    // k1 revoked.
    keys.store(s.verification(&["k1"]));
    assert_eq!(code(&review(&memo)), DecisionCode::DenySignerRevoked);

    // Reinstated: a new generation again, so the signature is verified again (one miss),
    // while the spec hash of the unchanged object version is still remembered (one hit).
    keys.store(s.verification(&[]));
    let before = memo.stats();
    assert_eq!(review(&memo), Ok(()));
    assert_eq!(delta(before, memo.stats()), (1, 1));

    // Even a reload of identical contents is a new generation: nothing carries over.
    keys.store(s.verification(&[]));
    let before = memo.stats();
    assert_eq!(review(&memo), Ok(()));
    assert_eq!(delta(before, memo.stats()), (1, 1));
}

#[test]
fn a_new_resource_version_is_hashed_again() {
    let s = Signers::new();
    let keys = KeySnapshot::new(s.verification(&[]));
    let memo = CheckMemo::default();
    let v1 = governed("valid", spec(), &s.k1_ring, POLICY, "1");
    assert_eq!(check(Some(&memo), &v1, &keys, Some(POLICY)), Ok(()));

    // The spec is edited after signing: a new resourceVersion, the old proof.
    let mut v2 = v1.clone();
    v2.metadata.resource_version = Some("2".into());
    v2.spec.anatomy.capabilities.push("payments".into());
    let before = memo.stats();
    let denied = check(Some(&memo), &v2, &keys, Some(POLICY));
    assert_eq!(
        code(&denied),
        DecisionCode::DenySpecHashMismatch,
        "{denied:?}"
    );
    assert_eq!(
        delta(before, memo.stats()),
        (0, 1),
        "re-hashed, not remembered"
    );
    assert_eq!(check(None, &v2, &keys, Some(POLICY)), denied);

    // The operator signs the new spec: yet another version, admitted.
    let mut changed = spec();
    changed.anatomy.capabilities.push("payments".into());
    let v3 = governed("valid", changed, &s.k1_ring, POLICY, "3");
    assert_eq!(check(Some(&memo), &v3, &keys, Some(POLICY)), Ok(()));

    // A re-created agent (new uid) with the same resourceVersion string is another object.
    let mut recreated = v2.clone();
    recreated.metadata.uid = Some("uid-other".into());
    recreated.metadata.resource_version = Some("3".into());
    let before = memo.stats();
    assert_eq!(
        code(&check(Some(&memo), &recreated, &keys, Some(POLICY))),
        DecisionCode::DenySpecHashMismatch
    );
    assert_eq!(delta(before, memo.stats()), (0, 1));
    assert_eq!(memo.len(), 1, "one entry per agent");
}

#[test]
fn a_verdict_is_never_reused_for_another_agent_object() {
    // A re-created agent: the same name and the same resourceVersion string, another uid.
    let s = Signers::new();
    let keys = KeySnapshot::new(s.verification(&[]));
    let memo = CheckMemo::default();
    let first = governed("valid", spec(), &s.k1_ring, POLICY, "1");
    assert_eq!(check(Some(&memo), &first, &keys, Some(POLICY)), Ok(()));
    let proof = first
        .status
        .as_ref()
        .and_then(|s| s.proof.as_ref())
        .unwrap();
    let subject = |uid| ProofSubject {
        namespace: NS,
        name: "valid",
        uid,
    };

    // The remembered verdict answers for the object it was reached for...
    let derived = memo.for_agent(NS, "valid", &first, &keys);
    let before = memo.stats();
    assert_eq!(
        derived.verify(&keys.ring, subject("uid-valid"), proof),
        Ok(())
    );
    assert_eq!(delta(before, memo.stats()), (1, 0));
    // ...and for no other uid, even with the same proof.
    let before = memo.stats();
    assert_eq!(
        derived.verify(&keys.ring, subject("uid-other"), proof),
        Err(VerifyFailure::BadSignature)
    );
    assert_eq!(delta(before, memo.stats()), (0, 1));

    // The old object's proof on the new object: refused before the signature is looked at.
    let mut copied = first.clone();
    copied.metadata.uid = Some("uid-other".into());
    let denied = check(Some(&memo), &copied, &keys, Some(POLICY));
    assert_eq!(code(&denied), DecisionCode::DenySignatureInvalid);
    assert!(
        denied
            .as_ref()
            .unwrap_err()
            .reason
            .contains("another Agent object"),
        "{denied:?}"
    );
    assert_eq!(check(None, &copied, &keys, Some(POLICY)), denied);
    // Its own derivations (same name and resourceVersion, another uid) verify again.
    let derived = memo.for_agent(NS, "valid", &copied, &keys);
    let copied_proof = copied
        .status
        .as_ref()
        .and_then(|s| s.proof.as_ref())
        .unwrap();
    let before = memo.stats();
    assert_eq!(
        derived.verify(&keys.ring, subject("uid-other"), copied_proof),
        Err(VerifyFailure::BadSignature)
    );
    assert_eq!(delta(before, memo.stats()), (0, 1));

    // With the proof's agentUid rewritten to the new uid: the signature covers the uid.
    let mut relabelled = copied.clone();
    if let Some(proof) = relabelled.status.as_mut().and_then(|s| s.proof.as_mut()) {
        proof.agent_uid = "uid-other".into();
    }
    assert_eq!(check(Some(&memo), &first, &keys, Some(POLICY)), Ok(()));
    let denied = check(Some(&memo), &relabelled, &keys, Some(POLICY));
    assert_eq!(
        code(&denied),
        DecisionCode::DenySignatureInvalid,
        "{denied:?}"
    );
    assert_eq!(check(None, &relabelled, &keys, Some(POLICY)), denied);

    // The re-created agent approved and signed for its own uid: admitted.
    let mut resigned = copied.clone();
    if let Some(status) = resigned.status.as_mut() {
        status.proof = Some(proof_for("valid", "uid-other", &spec(), &s.k1_ring, POLICY));
    }
    assert_eq!(check(Some(&memo), &resigned, &keys, Some(POLICY)), Ok(()));
    assert_eq!(check(Some(&memo), &resigned, &keys, Some(POLICY)), Ok(()));
    assert_eq!(memo.len(), 1, "one entry per agent");
}

#[test]
fn a_changed_proof_is_verified_again_even_under_the_same_version() {
    // The API server never changes an object without a new resourceVersion; if a view did,
    // the proof's contents still key the verdict.
    let s = Signers::new();
    let keys = KeySnapshot::new(s.verification(&[]));
    let memo = CheckMemo::default();
    let agent = governed("valid", spec(), &s.k1_ring, POLICY, "1");
    assert_eq!(check(Some(&memo), &agent, &keys, Some(POLICY)), Ok(()));
    let mut forged = agent.clone();
    if let Some(proof) = forged.status.as_mut().and_then(|s| s.proof.as_mut()) {
        proof.signed_at = "2026-01-10T09:00:01Z".into();
    }
    let before = memo.stats();
    let denied = check(Some(&memo), &forged, &keys, Some(POLICY));
    assert_eq!(
        code(&denied),
        DecisionCode::DenySignatureInvalid,
        "{denied:?}"
    );
    assert_eq!(
        delta(before, memo.stats()),
        (1, 1),
        "spec hash hit, signature re-verified"
    );
    assert_eq!(check(Some(&memo), &agent, &keys, Some(POLICY)), Ok(()));
}

#[test]
fn the_policy_in_force_is_compared_on_every_review() {
    let s = Signers::new();
    let keys = KeySnapshot::new(s.verification(&[]));
    let memo = CheckMemo::default();
    let agent = governed("valid", spec(), &s.k1_ring, POLICY, "1");
    assert_eq!(check(Some(&memo), &agent, &keys, Some(POLICY)), Ok(()));
    let before = memo.stats();
    let denied = check(Some(&memo), &agent, &keys, Some(&"c".repeat(64)));
    assert_eq!(code(&denied), DecisionCode::DenyPolicyHashMismatch);
    assert_eq!(delta(before, memo.stats()), (1, 0), "a hit, still denied");
    assert_eq!(
        code(&check(Some(&memo), &agent, &keys, None)),
        DecisionCode::DenyPolicyHashMismatch
    );
    assert_eq!(check(Some(&memo), &agent, &keys, Some(POLICY)), Ok(()));
}

fn pod_decision(view: &StaticView, agent: &str, at: Timestamp) -> Decision {
    let mut review: serde_json::Value = serde_json::from_str(POD_REVIEW).unwrap();
    review["request"]["object"]["metadata"]["labels"]["agentgov.dev/agent"] = agent.into();
    let body = serde_json::to_vec(&review).unwrap();
    let req = crate::review::parse_pod(&body).unwrap();
    decide_pod(&req, view, &ExpiryPolicy::default(), at)
}

#[test]
fn expiry_is_judged_by_the_clock_on_every_review() {
    let s = Signers::new();
    let mut view = StaticView::new(s.verification(&[]));
    let mut sandbox = Agent::new("scratchpad", spec());
    sandbox.spec.mode = AgentMode::Sandbox;
    sandbox.spec.sandbox = Some(SandboxSpec {
        ttl_seconds: Some(24 * 3600),
        expires_at: None,
    });
    sandbox.metadata.namespace = Some(NS.into());
    sandbox.metadata.uid = Some("uid-scratchpad".into());
    sandbox.metadata.creation_timestamp = Some(Time(now()));
    view.add_agent(sandbox);
    view.add_agent(governed(GOVERNED, spec(), &s.k1_ring, POLICY, "7"));
    let memo = view.memo.as_ref().unwrap();

    // A governed agent's verdicts are remembered in the same view...
    // (no policy is in force in this view: the verdicts are remembered all the same).
    let governed = pod_decision(&view, GOVERNED, now());
    assert_eq!(governed.code, DecisionCode::DenyPolicyHashMismatch);
    assert_eq!(memo.len(), 1);

    // ...and the sandbox is judged by the clock each time, before and after its expiry.
    for (at, expected) in [
        (now() + hours(1), DecisionCode::Allow),
        (now() + hours(25), DecisionCode::DenySandboxExpired),
        (now() + hours(23), DecisionCode::Allow),
        (now() + hours(24), DecisionCode::DenySandboxExpired),
    ] {
        let before = memo.stats();
        let decision = pod_decision(&view, "scratchpad", at);
        assert_eq!(decision.code, expected, "at {at}: {}", decision.reason);
        assert_eq!(memo.stats(), before, "a sandbox never reads the memo");
    }
    assert_eq!(memo.len(), 1);
}

#[test]
fn the_memo_follows_the_agent_cache_and_is_bounded() {
    let s = Signers::new();
    let policies = Arc::new(PolicyIndex::new("default", Default::default()));
    let (caches, mut writer) = Caches::detached(policies, Keys::new(s.verification(&[])));
    let agents: Vec<Agent> = ["a", "b", "c"]
        .iter()
        .map(|name| governed(name, spec(), &s.k1_ring, POLICY, "1"))
        .collect();
    let feed = |writer: &mut kube::runtime::reflector::store::Writer<Agent>, event| {
        writer.apply_watcher_event(&event);
        caches.observe(&event);
    };
    for agent in &agents {
        feed(&mut writer, Event::Apply(agent.clone()));
    }
    let review = |name: &str| {
        let view: &dyn crate::decide::View = &caches;
        let agent = view.agent(NS, name).unwrap();
        check(view.memo(), &agent, &view.keys(), Some(POLICY))
    };
    for name in ["a", "b", "c"] {
        assert_eq!(review(name), Ok(()));
    }
    assert_eq!(caches.memo_stats().0, 3);

    // An agent deleted from the cache is forgotten.
    feed(&mut writer, Event::Delete(agents[0].clone()));
    assert_eq!(caches.memo_stats().0, 2);

    // A re-list keeps only the agents still there.
    feed(&mut writer, Event::Init);
    feed(&mut writer, Event::InitApply(agents[2].clone()));
    feed(&mut writer, Event::InitDone);
    assert_eq!(caches.memo_stats().0, 1);
    assert_eq!(review("c"), Ok(()));
    assert!(crate::decide::View::agent(&caches, NS, "b").is_none());

    // Beyond its capacity the memo evicts.
    let small = CheckMemo::new(2);
    let keys = KeySnapshot::new(s.verification(&[]));
    for agent in &agents {
        assert_eq!(check(Some(&small), agent, &keys, Some(POLICY)), Ok(()));
        assert!(small.len() <= 2);
    }
    assert_eq!(small.len(), 2);
}

#[test]
fn a_newer_policys_verdict_is_remembered_per_version_and_policy() {
    let s = Signers::new();
    let keys = KeySnapshot::new(s.verification(&[]));
    let memo = CheckMemo::default();
    let judged = std::cell::Cell::new(0);
    let judge = |verdict: Result<(), String>| {
        judged.set(judged.get() + 1);
        verdict
    };
    let (p2, p3): (Arc<str>, Arc<str>) = ("2".repeat(64).into(), "3".repeat(64).into());
    let v1 = governed("valid", spec(), &s.k1_ring, POLICY, "1");
    let derived = memo.for_agent(NS, "valid", &v1, &keys);
    assert_eq!(derived.recheck(&p2, || judge(Ok(()))), Ok(()));
    assert_eq!(derived.recheck(&p2, || judge(Err("x".into()))), Ok(()));
    assert_eq!(judged.get(), 1, "the same version and policy: remembered");
    // Another policy is judged again.
    assert_eq!(
        derived.recheck(&p3, || judge(Err("denied".into()))),
        Err("denied".into())
    );
    assert_eq!(judged.get(), 2);
    // So is another version of the agent.
    let mut v2 = v1.clone();
    v2.metadata.resource_version = Some("2".into());
    let derived = memo.for_agent(NS, "valid", &v2, &keys);
    assert_eq!(derived.recheck(&p3, || judge(Ok(()))), Ok(()));
    assert_eq!(judged.get(), 3);
    // An object without a resourceVersion is never remembered.
    let mut unversioned = v1.clone();
    unversioned.metadata.resource_version = None;
    let derived = memo.for_agent(NS, "valid", &unversioned, &keys);
    derived.recheck(&p3, || judge(Ok(()))).unwrap();
    derived.recheck(&p3, || judge(Ok(()))).unwrap();
    assert_eq!(judged.get(), 5);
}

#[test]
fn the_proof_digest_covers_every_signed_field() {
    use agentgov_api::proof::ProofException;

    use super::ProofDigest;
    let keys = ahash::RandomState::new();
    let base = ProofBundle {
        version: 2,
        spec_hash: "s".into(),
        policy_hash: "p".into(),
        signature: "sig".into(),
        key_id: "k1".into(),
        signed_at: "2026-01-01T00:00:00Z".into(),
        agent_uid: "u".into(),
        approvers: vec![Approver {
            username: "alice".into(),
            uid: "a".into(),
        }],
        promotions: vec!["p1".into()],
        algorithm: agentgov_api::keyring::Algorithm::Ed25519,
        exceptions: Vec::new(),
    };
    let digest = |p: &ProofBundle| ProofDigest::of(p, &keys);
    type Change = fn(&mut ProofBundle);
    let changes: [(&str, Change); 11] = [
        ("version", |p| p.version = 3),
        ("algorithm", |p| {
            p.algorithm = agentgov_api::keyring::Algorithm::HmacSha256
        }),
        ("specHash", |p| p.spec_hash.push('x')),
        ("policyHash", |p| p.policy_hash.push('x')),
        ("signature", |p| p.signature.push('x')),
        ("keyId", |p| p.key_id.push('x')),
        ("signedAt", |p| p.signed_at.push('x')),
        ("agentUid", |p| p.agent_uid.push('x')),
        ("approvers", |p| p.approvers[0].username.push('x')),
        ("promotions", |p| p.promotions.push("p2".into())),
        ("exceptions", |p| {
            p.exceptions.push(ProofException {
                name: "e".into(),
                rules: vec!["budget".into()],
                expires_at: "2026-02-01T00:00:00Z".into(),
                requested_by: "bob".into(),
            })
        }),
    ];
    for (field, change) in changes {
        let mut changed = base.clone();
        change(&mut changed);
        assert_ne!(digest(&changed), digest(&base), "{field}");
    }
    assert_eq!(digest(&base.clone()), digest(&base));
}
