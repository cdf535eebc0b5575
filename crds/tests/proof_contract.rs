//! The proof-bundle contract: known-answer vectors, and every tampering with a governed agent
//! caught by the right one of the seven admission checks; sandbox expiry and containment.
//! Key rings and rotation are in keyring.rs, property tests in proof_properties.rs.
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

use agentgov_api::admission::AdmissionCheck::{self, *};
use agentgov_api::admission::DecisionCode;
use agentgov_api::agent::{
    AgentMode, Economics, Memory, MemoryKind, Reasoning, RoleClass, SandboxSpec, SourceKind,
};
use agentgov_api::expiry::ExpiryPolicy;
use agentgov_api::hash::{canonical_json, policy_hash, spec_hash};
use agentgov_api::keyring::{
    Algorithm, KeyRingConfig, VerifyFailure, generate_ed25519, generate_hmac,
};
use agentgov_api::policy::PolicyEngine;
use agentgov_api::proof::{ProofBundle, format_signed_at, signing_payload, verify};
use agentgov_api::{AgentStatus, GovernanceStatus};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use jiff::SignedDuration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
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
        regenerate:
            "AGENTGOV_UPDATE_KAT=1 cargo test -p agentgov-api --test proof_contract known_answer"
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
    assert_eq!(
        computed.canonical_spec, kat.canonical_spec,
        "canonical spec changed; {hint}"
    );
    assert_eq!(
        computed.spec_hash, kat.spec_hash,
        "spec hash changed; {hint}"
    );
    assert_eq!(
        computed.policy_hash, kat.policy_hash,
        "policy hash changed; {hint}"
    );
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
    assert_eq!(
        format_signed_at(at(kat.signed_at_unix)),
        "2026-01-03T00:00:00Z"
    );
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
                let public = B64
                    .decode(key.public_key.expect("public key"))
                    .expect("base64");
                ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
                    .verify(v.payload.as_bytes(), &signature)
                    .expect("Ed25519 signature verifies");
            }
            Algorithm::HmacSha256 => {
                let secret = B64.decode(key.secret.expect("secret")).expect("base64");
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
                ring::hmac::verify(&key, v.payload.as_bytes(), &signature).expect("HMAC verifies");
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
    let codes: Vec<&str> = AdmissionCheck::ALL
        .iter()
        .map(|c| c.deny_code().as_str())
        .collect();
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

/// `"what" => Check: |scenario| change;`, one line each: a tampering and the check that must
/// catch it. (A macro, so that rustfmt keeps the table a table.)
macro_rules! tampering {
    ($($what:literal => $check:ident: |$s:ident| $change:expr;)*) => {
        vec![$(($what, $check, (|$s: &mut Scenario| { $change; }) as fn(&mut Scenario))),*]
    };
}

type Tampering = (&'static str, AdmissionCheck, fn(&mut Scenario));

fn tamperings() -> Vec<Tampering> {
    tampering! {
        // The spec, any field.
        "temperature" => SpecHashMatch: |s| reasoning(s).temperature = 0.25;
        "capability added" => SpecHashMatch: |s| caps(s).push("payments".into());
        "capability renamed" => SpecHashMatch: |s| caps(s)[0].push('s');
        "capabilities reordered" => SpecHashMatch: |s| caps(s).reverse();
        "roleClass" => SpecHashMatch: |s| s.spec.role_class = RoleClass::Ideation;
        "description" => SpecHashMatch: |s| s.spec.description.push(' ');
        "description removed" => SpecHashMatch: |s| s.spec.description.clear();
        "externalCalls" => SpecHashMatch: |s| s.spec.anatomy.containment.external_calls = true;
        "persistentWrites" => SpecHashMatch: |s| s.spec.anatomy.containment.persistent_writes = true;
        "version" => SpecHashMatch: |s| s.spec.version = "1.2.1".into();
        "retentionDays" => SpecHashMatch: |s| memory(s).retention_days = None;
        "memory kind" => SpecHashMatch: |s| memory(s).kind = MemoryKind::Session;
        "budget" => SpecHashMatch: |s| s.spec.anatomy.economics = Some(Economics { monthly_budget_usd: 250.01 });
        "source" => SpecHashMatch: |s| s.spec.source.as_mut().expect("source").kind = SourceKind::Import;
        "sandbox block" => SpecHashMatch: |s| s.spec.sandbox = Some(SandboxSpec { ttl_seconds: Some(60), expires_at: None });
        // The spec and the proof's specHash, recomputed: the signature covers the hash.
        "spec and proof.specHash" => SignatureValid: |s| {
            s.spec.anatomy.actions.push("wire-money".into());
            s.proof_mut().spec_hash = spec_hash(&s.spec).expect("hash");
        };
        // The policy: the proof's hash, or the bundle in force (module, data, entrypoint).
        "proof.policyHash" => PolicyHashMatch: |s| s.proof_mut().policy_hash = "0".repeat(64);
        "policy module text" => PolicyHashMatch: |s| tamper_policy(s, |p| p.modules[0].rego.push('\n'));
        "policy module name" => PolicyHashMatch: |s| tamper_policy(s, |p| p.modules[0].name = "x.rego".into());
        "policy budget limit" => PolicyHashMatch: |s| tamper_policy(s, |p| p.data.max_monthly_budget_usd = 501.0);
        "policy temperature limit" => PolicyHashMatch: |s| tamper_policy(s, |p| p.data.temperature_limits.compliance = 0.31);
        "policy promoter roles" => PolicyHashMatch: |s| tamper_policy(s, |p| p.data.promoter_roles.push("intern".into()));
        "policy extra data" => PolicyHashMatch: |s| tamper_policy(s, |p| p.data.extra = Some(serde_json::json!({"a": 1})));
        "policy entrypoint" => PolicyHashMatch: |s| tamper_policy(s, |p| p.entrypoint = "data.agentgov.kat.denies".into());
        "no policy in force" => PolicyHashMatch: |s| s.active_policy_hash = None;
        "proof.policyHash and policy in force" => SignatureValid: |s| {
            s.proof_mut().policy_hash = "f".repeat(64);
            s.active_policy_hash = Some("f".repeat(64));
        };
        // The rest of the proof.
        "keyId unknown" => SignatureValid: |s| s.proof_mut().key_id = "kat-other".into();
        "keyId of the other key" => SignatureValid: |s| s.proof_mut().key_id = other_key(&s.proof().key_id).into();
        "signature byte" => SignatureValid: |s| {
            let mut signature = B64.decode(&s.proof().signature).expect("base64");
            signature[7] ^= 0x01;
            s.proof_mut().signature = B64.encode(signature);
        };
        "signature truncated" => SignatureValid: |s| s.proof_mut().signature.truncate(8);
        "signature not base64" => SignatureValid: |s| s.proof_mut().signature = "*not base64*".into();
        "algorithm" => SignatureValid: |s| {
            let p = s.proof_mut();
            p.algorithm = if p.algorithm == Algorithm::Ed25519 { Algorithm::HmacSha256 } else { Algorithm::Ed25519 };
        };
        "signedAt a second later" => SignatureValid: |s| s.proof_mut().signed_at = "2026-01-03T00:00:01Z".into();
        "signedAt same instant, other format" => SignatureValid: |s| s.proof_mut().signed_at = "2026-01-03T00:00:00+00:00".into();
        // The identity the proof is bound to.
        "namespace" => SignatureValid: |s| s.namespace = "finance-2".into();
        "name" => SignatureValid: |s| s.name = "invoice-auditor-2".into();
        // Status: no proof in force.
        "no status" => ProofExists: |s| s.status = None;
        "no proof" => ProofExists: |s| s.status.as_mut().expect("status").proof = None;
        "GOVERNED_INVALIDATED" => ProofExists: |s| set_governance(s, Some(GovernanceStatus::GovernedInvalidated));
        "SANDBOX status with a proof" => ProofExists: |s| set_governance(s, Some(GovernanceStatus::Sandbox));
        "no governance status" => ProofExists: |s| set_governance(s, None);
    }
}

fn reasoning(s: &mut Scenario) -> &mut Reasoning {
    s.spec.anatomy.reasoning.as_mut().expect("reasoning")
}

fn memory(s: &mut Scenario) -> &mut Memory {
    s.spec.anatomy.memory.as_mut().expect("memory")
}

fn caps(s: &mut Scenario) -> &mut Vec<String> {
    &mut s.spec.anatomy.capabilities
}

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
        let cases = tamperings();
        assert!(cases.len() >= 40);
        for (what, check, tamper) in cases {
            let mut scenario = valid.clone();
            tamper(&mut scenario);
            assert_denied(scenario.check(keys), check, &format!("{alg}: {what}"));
            // The verification ring of the webhook judges the same way.
            assert_denied(
                scenario.check(&both_keys(&[])),
                check,
                &format!("{alg}/both: {what}"),
            );
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
        let d = assert_denied(
            scenario.check(&revoked),
            AdmissionCheck::SignerNotRevoked,
            alg,
        );
        assert!(d.reason.contains(&key_id), "{}", d.reason);
        assert_eq!(
            verify(&revoked, scenario.subject(), scenario.proof()),
            Err(VerifyFailure::Revoked)
        );
        // Revoking the other key changes nothing.
        assert_admitted(scenario.check(&both_keys(&[other_key(&key_id)])), alg);
        // A ring that does not hold the key.
        let stranger = load_ring(&KeyRingConfig {
            active_key_id: None,
            keys: vec![generate_ed25519(&key_id.replace("kat", "new")).expect("key")],
            revoked: vec![],
        });
        assert_denied(
            scenario.check(&stranger),
            AdmissionCheck::SignatureValid,
            alg,
        );
        assert_eq!(
            verify(&stranger, scenario.subject(), scenario.proof()),
            Err(VerifyFailure::UnknownKey)
        );
        // A key with the same id but other material: the signature does not verify.
        let fake = generate_hmac(&key_id).expect("key");
        let fake = KeyRingConfig {
            active_key_id: None,
            keys: vec![fake],
            revoked: vec![],
        };
        assert_denied(
            scenario.check(&load_ring(&fake)),
            AdmissionCheck::SignatureValid,
            alg,
        );
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
    assert_denied(
        s.check(&both_keys(&[ED25519_KEY_ID])),
        AdmissionCheck::SpecHashMatch,
        "spec",
    );
    s.spec = governed_agent().spec;
    assert_denied(
        s.check(&both_keys(&[ED25519_KEY_ID])),
        AdmissionCheck::PolicyHashMatch,
        "policy",
    );
    s.active_policy_hash = Some(kat_policy_hash());
    assert_denied(
        s.check(&both_keys(&[ED25519_KEY_ID])),
        AdmissionCheck::SignerNotRevoked,
        "revoked",
    );
    assert_denied(
        s.check(&both_keys(&[])),
        AdmissionCheck::SignatureValid,
        "signature",
    );
    // A governed agent does not expire and is not judged by the sandbox checks.
    let mut s = governed(keys);
    s.now = at(T0 + 10 * 365 * 86_400);
    assert_admitted(s.check(keys), "a governed agent ten years on");
}

// --- Sandbox agents ------------------------------------------------------------------------------

#[test]
fn sandbox_expiry_is_judged_by_the_supplied_clock() {
    let mut s = sandbox();
    assert_eq!(
        s.spec.sandbox.as_ref().and_then(|b| b.ttl_seconds),
        Some(86_400)
    );
    s.now = after(&s, SignedDuration::from_secs(86_399));
    assert_admitted(s.check(ed25519_ring()), "a second before the TTL");
    // The object cannot keep itself alive, or kill itself, through status.
    s.status = Some(AgentStatus {
        expires_at: Some(Time(at(T0 - 1))),
        ..AgentStatus::default()
    });
    assert_admitted(s.check(ed25519_ring()), "status.expiresAt in the past");
    s.status = Some(AgentStatus {
        expires_at: Some(Time(at(T0 + 86_400 * 365))),
        ..AgentStatus::default()
    });
    s.now = after(&s, SignedDuration::from_secs(86_400));
    let d = assert_denied(
        s.check(ed25519_ring()),
        AdmissionCheck::SandboxNotExpired,
        "at the TTL",
    );
    assert!(d.reason.contains("research-scratchpad"), "{}", d.reason);
    // No sandbox block: the default TTL (72 hours).
    s.spec.sandbox = None;
    s.now = after(
        &s,
        SignedDuration::from_hours(72) - SignedDuration::from_secs(1),
    );
    assert_admitted(s.check(ed25519_ring()), "before the default TTL");
    s.now = after(&s, SignedDuration::from_hours(72));
    assert_denied(
        s.check(ed25519_ring()),
        AdmissionCheck::SandboxNotExpired,
        "default TTL",
    );
}

#[test]
fn sandbox_expires_at_in_the_far_future_is_capped_by_max_ttl() {
    let mut s = sandbox();
    let far = Time(at(T0 + 100 * 365 * 86_400));
    s.spec.sandbox = Some(SandboxSpec {
        ttl_seconds: None,
        expires_at: Some(far.clone()),
    });
    let max = ExpiryPolicy::default().max_ttl;
    s.now = after(&s, max - SignedDuration::from_secs(1));
    assert_admitted(s.check(ed25519_ring()), "before max TTL");
    s.now = after(&s, max);
    assert_denied(
        s.check(ed25519_ring()),
        AdmissionCheck::SandboxNotExpired,
        "at max TTL",
    );
    s.expiry = ExpiryPolicy {
        max_ttl: SignedDuration::from_hours(1),
        ..ExpiryPolicy::default()
    };
    s.now = after(&s, SignedDuration::from_hours(1));
    assert_denied(
        s.check(ed25519_ring()),
        AdmissionCheck::SandboxNotExpired,
        "custom max TTL",
    );
    s.spec.sandbox = Some(SandboxSpec {
        ttl_seconds: Some(i64::MAX),
        expires_at: None,
    });
    assert_denied(
        s.check(ed25519_ring()),
        AdmissionCheck::SandboxNotExpired,
        "huge ttlSeconds",
    );
}

#[test]
fn sandbox_containment() {
    let mut s = sandbox();
    assert_admitted(s.check(ed25519_ring()), "the example sandbox");
    s.spec.anatomy.containment.external_calls = true;
    let d = assert_denied(
        s.check(ed25519_ring()),
        AdmissionCheck::SandboxContainment,
        "externalCalls",
    );
    assert!(d.reason.contains("externalCalls") && !d.reason.contains("persistentWrites"));
    s.spec.anatomy.containment.external_calls = false;
    s.spec.anatomy.containment.persistent_writes = true;
    let d = assert_denied(
        s.check(ed25519_ring()),
        AdmissionCheck::SandboxContainment,
        "persistentWrites",
    );
    assert!(d.reason.contains("persistentWrites") && !d.reason.contains("externalCalls"));
    s.spec.anatomy.containment.external_calls = true;
    let d = assert_denied(
        s.check(ed25519_ring()),
        AdmissionCheck::SandboxContainment,
        "both",
    );
    assert!(
        d.reason.contains("externalCalls or persistentWrites"),
        "{}",
        d.reason
    );
    // Expiry is checked first.
    s.now = after(&s, SignedDuration::from_hours(24));
    assert_denied(
        s.check(ed25519_ring()),
        AdmissionCheck::SandboxNotExpired,
        "expired and open",
    );
}
