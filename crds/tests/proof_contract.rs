//! The proof-bundle contract: known-answer vectors, tampering caught by the right admission
//! check, sandbox expiry and containment, key rotation and revocation, key-ring parsing, and
//! property tests of the canonical hash and the signatures.
//!
//! Known-answer vectors live in `crds/tests/fixtures/kat.json`, computed from
//! examples/agent-governed.yaml, the committed key rings `keyring-ed25519.json` and
//! `keyring-hmac.json` (made with `cargo run -p agentgov-api --bin keygen -- new --id kat-ed25519`
//! and `... new --id kat-hmac --algorithm hmac`), `policybundle-kat.yaml` and the clock `T0`.
//! Ed25519 and HMAC signatures are deterministic, so the vectors are exact. When the contract
//! changes on purpose (and only then: old proofs stop verifying), regenerate them with
//!
//!     AGENTGOV_UPDATE_KAT=1 cargo test -p agentgov-api --test proof_contract known_answer
//!
//! and commit the new kat.json together with the change.

mod common;

use agentgov_api::admission::{AdmissionCheck, DecisionCode};
use agentgov_api::agent::{
    AgentMode, Economics, Memory, MemoryKind, RoleClass, SandboxSpec, SourceKind,
};
use agentgov_api::expiry::ExpiryPolicy;
use agentgov_api::hash::{canonical_json, policy_hash, spec_hash};
use agentgov_api::keyring::{
    Algorithm, KeyRing, KeyRingConfig, VerifyFailure, generate_ed25519, generate_hmac,
};
use agentgov_api::policy::PolicyEngine;
use agentgov_api::proof::{ProofBundle, format_signed_at, signing_payload, verify};
use agentgov_api::{AgentSpec, AgentStatus, GovernanceStatus};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use jiff::SignedDuration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

// --- Known-answer vectors ----------------------------------------------------------------------

#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Kat {
    #[serde(rename = "_regenerate")]
    regenerate: String,
    agent: String,
    namespace: String,
    name: String,
    canonical_spec: String,
    spec_hash: String,
    policy_bundle: String,
    policy_hash: String,
    signed_at_unix: i64,
    vectors: Vec<KatVector>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
struct KatVector {
    key_ring: String,
    /// The exact signed bytes (canonical JSON), for implementations in other languages.
    payload: String,
    proof: ProofBundle,
}

fn compute_kat() -> Kat {
    let mut vectors = Vec::new();
    for file in [ED25519_RING, HMAC_RING] {
        let scenario = governed(&load_ring(&ring_config(file)));
        let p = scenario.proof();
        let payload = signing_payload(
            scenario.subject(),
            &p.spec_hash,
            &p.policy_hash,
            &p.signed_at,
            &p.key_id,
            p.algorithm,
        )
        .expect("payload");
        vectors.push(KatVector {
            key_ring: format!("crds/tests/fixtures/{file}"),
            payload: String::from_utf8(payload).expect("canonical JSON is UTF-8"),
            proof: p.clone(),
        });
    }
    let scenario = governed(ed25519_ring());
    let canonical = canonical_json(&scenario.spec).expect("canonical spec");
    Kat {
        regenerate: "AGENTGOV_UPDATE_KAT=1 cargo test -p agentgov-api --test proof_contract known_answer"
            .into(),
        agent: "examples/agent-governed.yaml".into(),
        namespace: scenario.namespace.clone(),
        name: scenario.name.clone(),
        canonical_spec: String::from_utf8(canonical).expect("UTF-8"),
        spec_hash: spec_hash(&scenario.spec).expect("spec hash"),
        policy_bundle: format!("crds/tests/fixtures/{KAT_POLICY}"),
        policy_hash: kat_policy_hash(),
        signed_at_unix: T0,
        vectors,
    }
}

fn committed_kat() -> Kat {
    serde_json::from_str(&fixture("kat.json")).expect("kat.json parses")
}

#[test]
fn known_answer_vectors_match() {
    let computed = compute_kat();
    if std::env::var("AGENTGOV_UPDATE_KAT").as_deref() == Ok("1") {
        let text = serde_json::to_string_pretty(&computed).expect("serialize") + "\n";
        let path = repo_root().join("crds/tests/fixtures/kat.json");
        std::fs::write(&path, text).expect("write kat.json");
        eprintln!("rewrote {}", path.display());
    }
    let kat = committed_kat();
    let hint = "regenerate with AGENTGOV_UPDATE_KAT=1 only if the change is intended";
    assert_eq!(computed.canonical_spec, kat.canonical_spec, "canonical spec changed; {hint}");
    assert_eq!(computed.spec_hash, kat.spec_hash, "spec hash changed; {hint}");
    assert_eq!(computed.policy_hash, kat.policy_hash, "policy hash changed; {hint}");
    for (c, k) in computed.vectors.iter().zip(&kat.vectors) {
        assert_eq!(c.payload, k.payload, "signed payload changed; {hint}");
        assert_eq!(c.proof, k.proof, "proof changed; {hint}");
    }
    assert_eq!(computed, kat, "{hint}");
}

/// The committed vectors, checked without the crate's signing code: SHA-256 of the canonical
/// spec, the payload layout written out by hand, and the signatures with ring directly.
#[test]
fn known_answer_vectors_verify_independently() {
    let kat = committed_kat();
    let digest = ring::digest::digest(&ring::digest::SHA256, kat.canonical_spec.as_bytes());
    assert_eq!(hex::encode(digest), kat.spec_hash);
    assert_eq!(format_signed_at(at(kat.signed_at_unix)), "2026-01-03T00:00:00Z");
    assert_eq!(kat.vectors.len(), 2);
    for v in &kat.vectors {
        let p = &v.proof;
        let expected = format!(
            r#"{{"algorithm":"{}","keyId":"{}","name":"{}","namespace":"{}","policyHash":"{}","signedAt":"2026-01-03T00:00:00Z","specHash":"{}","v":1}}"#,
            p.algorithm.as_str(),
            p.key_id,
            kat.name,
            kat.namespace,
            kat.policy_hash,
            kat.spec_hash
        );
        assert_eq!(v.payload, expected);
        let key = fixture_key(v.key_ring.rsplit('/').next().expect("file name"));
        let signature = B64.decode(&p.signature).expect("base64 signature");
        match p.algorithm {
            Algorithm::Ed25519 => {
                let public = B64.decode(key.public_key.expect("public key")).expect("base64");
                ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
                    .verify(v.payload.as_bytes(), &signature)
                    .expect("Ed25519 signature verifies");
            }
            Algorithm::HmacSha256 => {
                let secret = B64.decode(key.secret.expect("secret")).expect("base64");
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
                ring::hmac::verify(&key, v.payload.as_bytes(), &signature)
                    .expect("HMAC verifies");
            }
        }
        // A proof stored by an earlier build is still admitted.
        let mut scenario = governed(ed25519_ring());
        scenario.proof_mut().clone_from(p);
        assert_admitted(scenario.check(&both_keys(&[])), &v.key_ring);
    }
}

#[test]
fn kat_policy_compiles_and_engine_reports_the_same_hash() {
    let engine = PolicyEngine::compile(&kat_policy()).expect("the KAT policy compiles");
    assert_eq!(engine.hash(), kat_policy_hash());
}

#[test]
fn decision_codes_are_the_seeds() {
    let codes: Vec<&str> = AdmissionCheck::ALL.iter().map(|c| c.deny_code().as_str()).collect();
    assert_eq!(
        codes,
        [
            "ADMISSION_DENY_PROOF_MISSING",
            "ADMISSION_DENY_SPEC_HASH_MISMATCH",
            "ADMISSION_DENY_POLICY_HASH_MISMATCH",
            "ADMISSION_DENY_SIGNER_REVOKED",
            "ADMISSION_DENY_SIGNATURE_INVALID",
            "ADMISSION_DENY_SANDBOX_EXPIRED",
            "ADMISSION_DENY_CONTAINMENT_VIOLATION",
        ]
    );
    assert_eq!(DecisionCode::Allow.as_str(), "ADMISSION_ALLOW");
}

// --- Governed agents: tampering -----------------------------------------------------------------

type Tamper = (&'static str, fn(&mut Scenario), AdmissionCheck);

fn caps(s: &mut Scenario) -> &mut Vec<String> {
    &mut s.spec.anatomy.capabilities
}

const TAMPERING: &[Tamper] = &[
    // The spec: any field.
    ("temperature", |s| s.spec.anatomy.reasoning.as_mut().expect("reasoning").temperature = 0.25, AdmissionCheck::SpecHashMatch),
    ("capability added", |s| caps(s).push("payments".into()), AdmissionCheck::SpecHashMatch),
    ("capability renamed", |s| caps(s)[0].push('s'), AdmissionCheck::SpecHashMatch),
    ("capabilities reordered", |s| caps(s).reverse(), AdmissionCheck::SpecHashMatch),
    ("roleClass", |s| s.spec.role_class = RoleClass::Ideation, AdmissionCheck::SpecHashMatch),
    ("description", |s| s.spec.description.push(' '), AdmissionCheck::SpecHashMatch),
    ("description removed", |s| s.spec.description.clear(), AdmissionCheck::SpecHashMatch),
    ("externalCalls", |s| s.spec.anatomy.containment.external_calls = true, AdmissionCheck::SpecHashMatch),
    ("persistentWrites", |s| s.spec.anatomy.containment.persistent_writes = true, AdmissionCheck::SpecHashMatch),
    ("version", |s| s.spec.version = "1.2.1".into(), AdmissionCheck::SpecHashMatch),
    ("memory", |s| s.spec.anatomy.memory = Some(Memory { kind: MemoryKind::Persistent, retention_days: None }), AdmissionCheck::SpecHashMatch),
    ("budget", |s| s.spec.anatomy.economics = Some(Economics { monthly_budget_usd: 250.01 }), AdmissionCheck::SpecHashMatch),
    ("source", |s| s.spec.source.as_mut().expect("source").kind = SourceKind::Import, AdmissionCheck::SpecHashMatch),
    ("sandbox block", |s| s.spec.sandbox = Some(SandboxSpec { ttl_seconds: Some(60), expires_at: None }), AdmissionCheck::SpecHashMatch),
    // The spec and its hash in the proof, recomputed: the signature covers the hash.
    ("spec and proof.specHash", |s| {
        s.spec.anatomy.actions.push("wire-money".into());
        s.proof_mut().spec_hash = spec_hash(&s.spec).expect("hash");
    }, AdmissionCheck::SignatureValid),
    // The policy: the proof's hash, or the bundle in force.
    ("proof.policyHash", |s| s.proof_mut().policy_hash = "0".repeat(64), AdmissionCheck::PolicyHashMatch),
    ("policy module text", |s| tamper_policy(s, |p| p.modules[0].rego.push('\n')), AdmissionCheck::PolicyHashMatch),
    ("policy module name", |s| tamper_policy(s, |p| p.modules[0].name = "kat2.rego".into()), AdmissionCheck::PolicyHashMatch),
    ("policy budget limit", |s| tamper_policy(s, |p| p.data.max_monthly_budget_usd = 501.0), AdmissionCheck::PolicyHashMatch),
    ("policy temperature limit", |s| tamper_policy(s, |p| p.data.temperature_limits.compliance = 0.31), AdmissionCheck::PolicyHashMatch),
    ("policy promoter roles", |s| tamper_policy(s, |p| p.data.promoter_roles.push("intern".into())), AdmissionCheck::PolicyHashMatch),
    ("policy extra data", |s| tamper_policy(s, |p| p.data.extra = Some(serde_json::json!({"a": 1}))), AdmissionCheck::PolicyHashMatch),
    ("policy entrypoint", |s| tamper_policy(s, |p| p.entrypoint = "data.agentgov.kat.denies".into()), AdmissionCheck::PolicyHashMatch),
    ("no policy in force", |s| s.active_policy_hash = None, AdmissionCheck::PolicyHashMatch),
    ("proof.policyHash and policy in force", |s| {
        s.proof_mut().policy_hash = "f".repeat(64);
        s.active_policy_hash = Some("f".repeat(64));
    }, AdmissionCheck::SignatureValid),
    // The rest of the proof.
    ("keyId unknown", |s| s.proof_mut().key_id = "kat-other".into(), AdmissionCheck::SignatureValid),
    ("keyId of the other key", |s| {
        let other = if s.proof().key_id == ED25519_KEY_ID { HMAC_KEY_ID } else { ED25519_KEY_ID };
        s.proof_mut().key_id = other.into();
    }, AdmissionCheck::SignatureValid),
    ("signature byte", |s| {
        let mut sig = B64.decode(&s.proof().signature).expect("base64");
        sig[7] ^= 0x01;
        s.proof_mut().signature = B64.encode(sig);
    }, AdmissionCheck::SignatureValid),
    ("signature truncated", |s| s.proof_mut().signature.truncate(8), AdmissionCheck::SignatureValid),
    ("signature not base64", |s| s.proof_mut().signature = "*not base64*".into(), AdmissionCheck::SignatureValid),
    ("algorithm", |s| {
        let p = s.proof_mut();
        p.algorithm = if p.algorithm == Algorithm::Ed25519 { Algorithm::HmacSha256 } else { Algorithm::Ed25519 };
    }, AdmissionCheck::SignatureValid),
    ("signedAt one second later", |s| s.proof_mut().signed_at = "2026-01-03T00:00:01Z".into(), AdmissionCheck::SignatureValid),
    ("signedAt same instant, other format", |s| s.proof_mut().signed_at = "2026-01-03T00:00:00+00:00".into(), AdmissionCheck::SignatureValid),
    // The identity the proof is bound to.
    ("namespace", |s| s.namespace = "finance-2".into(), AdmissionCheck::SignatureValid),
    ("name", |s| s.name = "invoice-auditor-2".into(), AdmissionCheck::SignatureValid),
    // Status: no proof in force.
    ("no status", |s| s.status = None, AdmissionCheck::ProofExists),
    ("no proof", |s| s.status.as_mut().expect("status").proof = None, AdmissionCheck::ProofExists),
    ("GOVERNED_INVALIDATED", |s| set_governance(s, Some(GovernanceStatus::GovernedInvalidated)), AdmissionCheck::ProofExists),
    ("SANDBOX status with a proof", |s| set_governance(s, Some(GovernanceStatus::Sandbox)), AdmissionCheck::ProofExists),
    ("no governance status", |s| set_governance(s, None), AdmissionCheck::ProofExists),
];

fn tamper_policy(s: &mut Scenario, change: fn(&mut agentgov_api::PolicyBundleSpec)) {
    let mut policy = kat_policy();
    change(&mut policy);
    s.active_policy_hash = Some(policy_hash(&policy).expect("hash"));
}

fn set_governance(s: &mut Scenario, status: Option<GovernanceStatus>) {
    s.status.as_mut().expect("status").governance_status = status;
}

#[test]
fn every_tampering_is_caught_by_the_right_check() {
    for (alg, keys) in signing_rings() {
        let valid = governed(keys);
        assert_admitted(valid.check(keys), alg);
        for (what, tamper, check) in TAMPERING {
            let mut scenario = valid.clone();
            tamper(&mut scenario);
            assert_denied(scenario.check(keys), *check, &format!("{alg}: {what}"));
            // The verification ring of the webhook judges the same way.
            assert_denied(scenario.check(&both_keys(&[])), *check, &format!("{alg}/both: {what}"));
        }
    }
}

#[test]
fn restricted_agents_are_admitted_and_the_version_label_is_not_signed() {
    for (alg, keys) in signing_rings() {
        let mut scenario = governed(keys);
        set_governance(&mut scenario, Some(GovernanceStatus::GovernedRestricted));
        assert_admitted(scenario.check(keys), alg);
    }
    let mut relabelled = kat_policy();
    relabelled.version = "kat-2".into();
    assert_eq!(policy_hash(&relabelled).expect("hash"), kat_policy_hash());
}

#[test]
fn revoked_and_unknown_keys() {
    for (alg, keys) in signing_rings() {
        let scenario = governed(keys);
        let key_id = scenario.proof().key_id.clone();
        let revoked = both_keys(&[&key_id]);
        let d = assert_denied(scenario.check(&revoked), AdmissionCheck::SignerNotRevoked, alg);
        assert!(d.reason.contains(&key_id), "{}", d.reason);
        assert_eq!(verify(&revoked, scenario.subject(), scenario.proof()), Err(VerifyFailure::Revoked));
        // Revoking the other key changes nothing.
        let other = if key_id == ED25519_KEY_ID { HMAC_KEY_ID } else { ED25519_KEY_ID };
        assert_admitted(scenario.check(&both_keys(&[other])), alg);
        // A ring that does not hold the key.
        let stranger = load_ring(&KeyRingConfig {
            active_key_id: None,
            keys: vec![generate_ed25519(&key_id.replace("kat", "new")).expect("key")],
            revoked: vec![],
        });
        assert_denied(scenario.check(&stranger), AdmissionCheck::SignatureValid, alg);
        assert_eq!(verify(&stranger, scenario.subject(), scenario.proof()), Err(VerifyFailure::UnknownKey));
        // A key with the same id but other material: the signature does not verify.
        let fake = generate_hmac(&key_id).expect("key");
        let fake = KeyRingConfig { active_key_id: None, keys: vec![fake], revoked: vec![] };
        assert_denied(scenario.check(&load_ring(&fake)), AdmissionCheck::SignatureValid, alg);
    }
}

#[test]
fn a_proof_copied_to_another_agent_is_denied() {
    for (alg, keys) in signing_rings() {
        let a = governed(keys);
        let mut b = governed(keys);
        b.name = "invoice-auditor-copy".into();
        b.sign_with(keys);
        assert_admitted(b.check(keys), alg);
        // Same spec, other name: only the signature can tell, and does.
        let mut copy = b.clone();
        copy.status.clone_from(&a.status);
        assert_denied(copy.check(keys), AdmissionCheck::SignatureValid, alg);
        // Other spec: the hash tells first.
        let mut other = sandbox();
        other.spec.mode = AgentMode::Governed;
        other.active_policy_hash.clone_from(&a.active_policy_hash);
        other.status.clone_from(&a.status);
        assert_denied(other.check(keys), AdmissionCheck::SpecHashMatch, alg);
    }
}

#[test]
fn the_first_failing_check_in_the_seeds_order_decides() {
    let keys = ed25519_ring();
    let mut s = governed(keys);
    s.proof_mut().signature = "AAAA".into();
    s.spec.version = "9".into();
    s.active_policy_hash = None;
    assert_denied(s.check(&both_keys(&[ED25519_KEY_ID])), AdmissionCheck::SpecHashMatch, "spec");
    s.spec = governed_agent().spec;
    assert_denied(s.check(&both_keys(&[ED25519_KEY_ID])), AdmissionCheck::PolicyHashMatch, "policy");
    s.active_policy_hash = Some(kat_policy_hash());
    assert_denied(s.check(&both_keys(&[ED25519_KEY_ID])), AdmissionCheck::SignerNotRevoked, "revoked");
    assert_denied(s.check(&both_keys(&[])), AdmissionCheck::SignatureValid, "signature");
    // A governed agent does not expire and is not judged by the sandbox checks.
    let mut s = governed(keys);
    s.now = at(T0 + 10 * 365 * 86_400);
    assert_admitted(s.check(keys), "a governed agent ten years on");
}

// --- Key rotation -------------------------------------------------------------------------------

#[test]
fn rotation_keeps_old_proofs_valid_until_the_old_key_is_revoked() {
    for old_file in [ED25519_RING, HMAC_RING] {
        let old_config = ring_config(old_file);
        let old_id = old_config.active_key_id.clone().expect("active key");
        for new_key in [generate_ed25519("next-ed").expect("key"), generate_hmac("next-hmac").expect("key")] {
            let what = format!("{old_id} -> {}", new_key.id);
            let old_proof = governed(&load_ring(&old_config));
            let mut rotated = old_config.clone();
            rotated.active_key_id = Some(new_key.id.clone());
            rotated.keys.push(new_key.clone());
            let rotated_ring = load_ring(&rotated);
            assert_eq!(rotated_ring.active_key_id(), Some(new_key.id.as_str()));
            let new_proof = governed(&rotated_ring);
            assert_eq!(new_proof.proof().key_id, new_key.id, "{what}: new proofs use the new key");
            let webhook = load_ring(&rotated.verification_only().expect("verification ring"));
            for keys in [&rotated_ring, &webhook] {
                assert_admitted(old_proof.check(keys), &format!("{what}: old proof"));
                assert_admitted(new_proof.check(keys), &format!("{what}: new proof"));
            }
            rotated.revoked.push(old_id.clone());
            let revoked = load_ring(&rotated);
            assert_denied(old_proof.check(&revoked), AdmissionCheck::SignerNotRevoked, &what);
            assert_admitted(new_proof.check(&revoked), &format!("{what}: after revoking the old key"));
        }
    }
}

// --- Sandbox agents ------------------------------------------------------------------------------

#[test]
fn sandbox_expiry_is_judged_by_the_supplied_clock() {
    let mut s = sandbox();
    assert_eq!(s.spec.sandbox.as_ref().and_then(|b| b.ttl_seconds), Some(86_400));
    s.now = after(&s, SignedDuration::from_secs(86_399));
    assert_admitted(s.check(ed25519_ring()), "a second before the TTL");
    // The object cannot keep itself alive, or kill itself, through status.
    s.status = Some(AgentStatus { expires_at: Some(Time(at(T0 - 1))), ..AgentStatus::default() });
    assert_admitted(s.check(ed25519_ring()), "status.expiresAt in the past");
    s.status = Some(AgentStatus { expires_at: Some(Time(at(T0 + 86_400 * 365))), ..AgentStatus::default() });
    s.now = after(&s, SignedDuration::from_secs(86_400));
    let d = assert_denied(s.check(ed25519_ring()), AdmissionCheck::SandboxNotExpired, "at the TTL");
    assert!(d.reason.contains("research-scratchpad"), "{}", d.reason);
    // No sandbox block: the default TTL (72 hours).
    s.spec.sandbox = None;
    s.now = after(&s, SignedDuration::from_hours(72) - SignedDuration::from_secs(1));
    assert_admitted(s.check(ed25519_ring()), "before the default TTL");
    s.now = after(&s, SignedDuration::from_hours(72));
    assert_denied(s.check(ed25519_ring()), AdmissionCheck::SandboxNotExpired, "default TTL");
}

#[test]
fn sandbox_expires_at_in_the_far_future_is_capped_by_max_ttl() {
    let mut s = sandbox();
    let far = Time(at(T0 + 100 * 365 * 86_400));
    s.spec.sandbox = Some(SandboxSpec { ttl_seconds: None, expires_at: Some(far.clone()) });
    let max = ExpiryPolicy::default().max_ttl;
    s.now = after(&s, max - SignedDuration::from_secs(1));
    assert_admitted(s.check(ed25519_ring()), "before max TTL");
    s.now = after(&s, max);
    assert_denied(s.check(ed25519_ring()), AdmissionCheck::SandboxNotExpired, "at max TTL");
    s.expiry = ExpiryPolicy { max_ttl: SignedDuration::from_hours(1), ..ExpiryPolicy::default() };
    s.now = after(&s, SignedDuration::from_hours(1));
    assert_denied(s.check(ed25519_ring()), AdmissionCheck::SandboxNotExpired, "custom max TTL");
    s.spec.sandbox = Some(SandboxSpec { ttl_seconds: Some(i64::MAX), expires_at: None });
    assert_denied(s.check(ed25519_ring()), AdmissionCheck::SandboxNotExpired, "huge ttlSeconds");
}

#[test]
fn sandbox_containment() {
    let mut s = sandbox();
    assert_admitted(s.check(ed25519_ring()), "the example sandbox");
    s.spec.anatomy.containment.external_calls = true;
    let d = assert_denied(s.check(ed25519_ring()), AdmissionCheck::SandboxContainment, "externalCalls");
    assert!(d.reason.contains("externalCalls") && !d.reason.contains("persistentWrites"));
    s.spec.anatomy.containment.external_calls = false;
    s.spec.anatomy.containment.persistent_writes = true;
    let d = assert_denied(s.check(ed25519_ring()), AdmissionCheck::SandboxContainment, "persistentWrites");
    assert!(d.reason.contains("persistentWrites") && !d.reason.contains("externalCalls"));
    s.spec.anatomy.containment.external_calls = true;
    let d = assert_denied(s.check(ed25519_ring()), AdmissionCheck::SandboxContainment, "both");
    assert!(d.reason.contains("externalCalls or persistentWrites"), "{}", d.reason);
    // Expiry is checked first.
    s.now = after(&s, SignedDuration::from_hours(24));
    assert_denied(s.check(ed25519_ring()), AdmissionCheck::SandboxNotExpired, "expired and open");
}

// --- Key ring parsing ----------------------------------------------------------------------------

fn ring_error(document: serde_json::Value) -> String {
    let bytes = serde_json::to_vec(&document).expect("json");
    let error = KeyRing::from_slice(&bytes).expect_err("the ring must be refused");
    assert_eq!(error.category(), "keyring");
    error.to_string()
}

#[test]
fn bad_key_rings_are_refused_with_a_clear_message() {
    use serde_json::json;
    let ed = fixture_key(ED25519_RING);
    let (private, public) = (ed.private_key.expect("private"), ed.public_key.expect("public"));
    let secret = fixture_key(HMAC_RING).secret.expect("secret");
    let hmac = |id: &str| json!({"id": id, "algorithm": "HmacSha256", "secret": secret});
    let other_public = generate_ed25519("x").expect("key").public_key.expect("public");
    let cases = [
        (json!({"keys": [hmac("k1"), hmac("k1")]}), "key id k1 appears twice"),
        (json!({"keys": [{"id": "k", "algorithm": "HmacSha256", "secret": "not base64!"}]}), "key k: secret is not valid base64"),
        (json!({"keys": [{"id": "k", "algorithm": "Ed25519", "publicKey": "%%%"}]}), "key k: publicKey is not valid base64"),
        (json!({"keys": [{"id": "k", "algorithm": "Ed25519", "privateKey": "%%%"}]}), "key k: privateKey is not valid base64"),
        (json!({"keys": [{"id": "k", "algorithm": "HmacSha256", "secret": B64.encode([7u8; 31])}]}), "key k: HMAC secret must be at least 32 bytes"),
        (json!({"keys": [{"id": "k", "algorithm": "HmacSha256"}]}), "key k: HmacSha256 needs a secret"),
        (json!({"activeKeyId": "k1", "keys": [hmac("k1")], "revoked": ["k1"]}), "active key k1 is revoked"),
        (json!({"activeKeyId": "k", "keys": [{"id": "k", "algorithm": "Ed25519", "publicKey": public}]}), "active key k is not in the ring or has no private key"),
        (json!({"activeKeyId": "k2", "keys": [hmac("k1")]}), "active key k2 is not in the ring"),
        (json!({"keys": [{"id": "k", "algorithm": "Ed25519", "privateKey": private, "publicKey": other_public}]}), "key k: publicKey does not match privateKey"),
        (json!({"keys": [{"id": "k", "algorithm": "Ed25519", "publicKey": B64.encode([1u8; 31])}]}), "key k: Ed25519 public key must be 32 bytes"),
        (json!({"keys": [{"id": "k", "algorithm": "Ed25519"}]}), "key k: Ed25519 needs a publicKey or a privateKey"),
        (json!({"keys": [{"id": " ", "algorithm": "HmacSha256", "secret": secret}]}), "a key has an empty id"),
        (json!({"keys": [{"id": "k", "algorithm": "Rsa", "secret": secret}]}), "cannot parse key ring"),
    ];
    for (document, expected) in cases {
        let message = ring_error(document.clone());
        assert!(message.starts_with("key ring: "), "{message}");
        assert!(message.contains(expected), "{document}: got {message:?}, expected {expected:?}");
        assert!(!message.contains(&secret) && !message.contains(&private), "{message} leaks key material");
    }
    // Nothing secret in a ring's Debug output either.
    let debug = format!("{:?} {:?}", ed25519_ring(), hmac_ring());
    assert!(!debug.contains(&secret) && !debug.contains(&private), "{debug}");
}

#[test]
fn verification_only_strips_ed25519_private_keys_and_still_verifies() {
    let mut config = ring_config(ED25519_RING);
    config.keys.push(fixture_key(HMAC_RING));
    let ed = fixture_key(ED25519_RING);
    // An Ed25519 key given only as a private key: its public half is derived.
    let mut private_only = generate_ed25519("private-only").expect("key");
    let derived = private_only.public_key.take();
    config.keys.push(private_only);
    let public = config.verification_only().expect("verification ring");
    assert_eq!(public.active_key_id, None);
    assert_eq!(public.revoked, config.revoked);
    assert_eq!(public.keys.len(), 3);
    for key in &public.keys {
        assert_eq!(key.private_key, None, "{}", key.id);
    }
    assert_eq!(public.keys[0].public_key, ed.public_key);
    assert_eq!(public.keys[1].secret, fixture_key(HMAC_RING).secret, "HMAC needs its secret");
    assert_eq!(public.keys[2].public_key, derived);
    let text = serde_json::to_string(&public).expect("json");
    assert!(!text.contains(&ed.private_key.expect("private")) && !text.contains("privateKey"));
    let webhook = load_ring(&public);
    assert!(webhook.sign(b"x").is_err(), "a verification ring cannot sign");
    assert_eq!(webhook.active_key_id(), None);
    for (alg, signer) in signing_rings() {
        assert_admitted(governed(signer).check(&webhook), alg);
    }
}

// --- Properties -----------------------------------------------------------------------------------

fn arb_spec() -> impl Strategy<Value = AgentSpec> {
    let text = "[a-zA-Z0-9 .,:'\"\\\\/\n\té€😀-]{0,24}";
    (
        (0.0f64..=2.0, text, proptest::collection::vec(text, 0..4)),
        (prop_oneof![Just(RoleClass::Compliance), Just(RoleClass::Analysis), Just(RoleClass::Ideation)], any::<bool>()),
        (proptest::option::of(0.0f64..1e6), proptest::option::of(0u32..3650), any::<(bool, bool)>()),
        proptest::option::of(1i64..1_000_000),
    )
        .prop_map(|((t, description, capabilities), (role, governed), (budget, days, (ext, pw)), ttl)| {
            let mut spec = governed_agent().spec;
            spec.anatomy.reasoning.as_mut().expect("reasoning").temperature = t;
            spec.description = description;
            spec.anatomy.capabilities = capabilities;
            spec.role_class = role;
            spec.mode = if governed { AgentMode::Governed } else { AgentMode::Sandbox };
            spec.anatomy.economics = budget.map(|b| Economics { monthly_budget_usd: b });
            spec.anatomy.memory.as_mut().expect("memory").retention_days = days;
            spec.anatomy.containment.external_calls = ext;
            spec.anatomy.containment.persistent_writes = pw;
            spec.sandbox = ttl.map(|t| SandboxSpec { ttl_seconds: Some(t), expires_at: None });
            spec
        })
}

/// Writes JSON with keys in a random order, random whitespace, random string escapes and
/// random (equivalent) float notation, driven by a xorshift seed.
struct Scrambler(u64);

impl Scrambler {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, options: &[&'a str]) -> &'a str {
        options[(self.next() % options.len() as u64) as usize]
    }

    fn ws(&mut self, out: &mut String) {
        out.push_str(self.pick(&["", " ", "\n", "\t", "\r\n  ", "   "]));
    }

    fn string(&mut self, s: &str, out: &mut String) {
        if self.next() % 2 == 0 {
            out.push_str(&serde_json::to_string(s).expect("json"));
        } else {
            out.push('"');
            for unit in s.encode_utf16() {
                out.push_str(&format!("\\u{unit:04x}"));
            }
            out.push('"');
        }
    }

    fn emit(&mut self, value: &serde_json::Value, out: &mut String) {
        use serde_json::Value;
        self.ws(out);
        match value {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                for i in (1..entries.len()).rev() {
                    entries.swap(i, (self.next() % (i as u64 + 1)) as usize);
                }
                out.push('{');
                for (i, (key, value)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.ws(out);
                    self.string(key, out);
                    self.ws(out);
                    out.push(':');
                    self.emit(value, out);
                }
                self.ws(out);
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.emit(item, out);
                }
                self.ws(out);
                out.push(']');
            }
            Value::String(s) => self.string(s, out),
            Value::Number(n) if n.is_f64() => {
                let f = n.as_f64().expect("f64");
                out.push_str(&if self.next() % 2 == 0 { format!("{f:e}") } else { format!("{f:?}") });
            }
            other => out.push_str(&other.to_string()),
        }
        self.ws(out);
    }
}

proptest! {
    #[test]
    fn spec_hash_ignores_field_order_whitespace_and_escapes(spec in arb_spec(), seed in 1u64..) {
        let hash = spec_hash(&spec).expect("hash");
        let value = serde_json::to_value(&spec).expect("value");
        let mut text = String::new();
        Scrambler(seed).emit(&value, &mut text);
        let parsed: AgentSpec = serde_json::from_str(&text).expect("scrambled JSON parses");
        prop_assert_eq!(&parsed, &spec, "{}", text);
        prop_assert_eq!(spec_hash(&parsed).expect("hash"), hash.clone());
        // And through YAML, the way manifests arrive.
        let yaml: AgentSpec = serde_yaml::from_str(&serde_yaml::to_string(&value).expect("yaml")).expect("yaml parses");
        prop_assert_eq!(spec_hash(&yaml).expect("hash"), hash);
    }

    #[test]
    fn any_single_byte_change_in_a_signature_fails(hmac in any::<bool>(), index in 0usize..64, flip in 1u8..=255) {
        let keys = if hmac { hmac_ring() } else { ed25519_ring() };
        let mut s = governed(keys);
        let mut signature = B64.decode(&s.proof().signature).expect("base64");
        let index = index % signature.len();
        signature[index] ^= flip;
        s.proof_mut().signature = B64.encode(signature);
        prop_assert_eq!(verify(keys, s.subject(), s.proof()), Err(VerifyFailure::BadSignature));
        let denial = s.check(keys).expect_err("a changed signature is denied");
        prop_assert_eq!(denial.code, DecisionCode::DenySignatureInvalid);
    }

    #[test]
    fn spec_hash_changes_with_temperature(a in 0.0f64..=2.0, b in 0.0f64..=2.0) {
        prop_assume!(a != b);
        let mut spec = governed_agent().spec;
        spec.anatomy.reasoning.as_mut().expect("reasoning").temperature = a;
        let first = spec_hash(&spec).expect("hash");
        spec.anatomy.reasoning.as_mut().expect("reasoning").temperature = b;
        prop_assert_ne!(first, spec_hash(&spec).expect("hash"));
    }
}
