//! The proof-bundle contract: known-answer vectors for both payload versions, and every
//! tampering with a governed agent caught by the right one of the seven admission checks; a
//! re-created agent, a proof that names no approval, an agent held out of force, and a proof
//! under an older policy. Key rings and rotation are in keyring.rs, property tests in
//! proof_properties.rs, the sandbox checks (6 and 7) in sandbox.rs.
//!
//! Known-answer vectors are computed from examples/agent-governed.yaml in namespace `finance`,
//! the committed key rings `keyring-ed25519.json` and `keyring-hmac.json` (made with
//! `cargo run -p agentgov-api --bin keygen -- new --id kat-ed25519` and
//! `... new --id kat-hmac --algorithm hmac`), `policybundle-kat.yaml` and the clock `T0`
//! (2026-01-03T00:00:00Z). Ed25519 and HMAC signatures are deterministic, so the vectors are
//! exact:
//!
//! - `crds/tests/fixtures/kat.json`: payload version 1, as signed before approvals existed.
//!   Frozen: proofs signed by earlier builds still verify, so this file never changes and is
//!   never rewritten. (Admission refuses such a proof all the same: it names no approval.)
//! - `crds/tests/fixtures/kat-v2.json`: payload version 2, what the operator signs, for the Agent
//!   uid `AGENT_UID`, two approvers (one with a uid, one without) and two AgentPromotion uids,
//!   given out of order. When the contract changes on purpose (and only then: proofs in clusters
//!   stop verifying), regenerate them with
//!
//!       AGENTGOV_UPDATE_KAT=1 cargo test -p agentgov-api --test proof_contract known_answer
//!
//!   and commit the new kat-v2.json together with the change.
//!
//! # The signed payloads
//!
//! For implementations in other languages. A proof's `signature` covers the canonical JSON
//! (RFC 8785: members sorted by key, no whitespace, strings with minimal escapes) of an object
//! chosen by the proof's `version` (a stored proof without `version` is version 1):
//!
//! ```text
//! v1: {"algorithm":A,"keyId":K,"name":N,"namespace":NS,"policyHash":P,"signedAt":T,"specHash":S,"v":1}
//! v2: {"algorithm":A,"approvers":[AP,...],"keyId":K,"name":N,"namespace":NS,"policyHash":P,
//!      "promotions":[PU,...],"signedAt":T,"specHash":S,"uid":UID,"v":2}
//! ```
//!
//! - `A`: `"Ed25519"` or `"HmacSha256"`; `K`: the key id; `T`: `signedAt`, RFC 3339 in UTC with
//!   whole seconds and `Z`, exactly as stored; `S`, `P`: lowercase hex SHA-256 of the canonical
//!   spec and of the canonical policy bundle (without its version label); `NS`, `N`: the agent's
//!   namespace and name.
//! - `UID`: the `metadata.uid` of the Agent object being verified (not the proof's own
//!   `agentUid`, which must equal it): a proof moved to another object, or to a re-created agent
//!   of the same name, does not verify.
//! - `AP`: `{"uid":U,"username":UN}` per approver, as the API server authenticated them, or
//!   `{"username":UN}` (no `uid` member) when the authenticator gave no uid; sorted by username,
//!   then uid (byte order), without duplicates. `PU`: the uids of the AgentPromotions the agent
//!   was promoted under, sorted (byte order), without duplicates. Both arrays are written even
//!   when empty. The stored proof carries them in the same order, as `approvers`,
//!   `promotions`, with `version: 2` and `agentUid`.
//! - The signature: Ed25519 (64 bytes) over the payload bytes, or HMAC-SHA256 (32 bytes) with
//!   the key's secret; standard base64 with padding.

mod common;

use agentgov_api::GovernanceStatus;
use agentgov_api::admission::AdmissionCheck::{self, *};
use agentgov_api::admission::DecisionCode;
use agentgov_api::agent::{
    AgentMode, Economics, Memory, MemoryKind, Reasoning, RoleClass, SandboxSpec, SourceKind,
};
use agentgov_api::hash::{canonical_json, policy_hash, spec_hash};
use agentgov_api::keyring::{
    Algorithm, KeyRingConfig, VerifyFailure, generate_ed25519, generate_hmac,
};
use agentgov_api::policy::PolicyEngine;
use agentgov_api::proof::{
    Approver, ProofBundle, ProofSubject, format_signed_at, signing_payload, verify,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use serde::{Deserialize, Serialize};

// --- Known-answer vectors ----------------------------------------------------------------------

/// A file of known-answer vectors: the inputs, and one vector per committed key ring.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Kat {
    #[serde(rename = "_regenerate")]
    regenerate: String,
    agent: String,
    namespace: String,
    name: String,
    /// The Agent object's uid (version 2).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    uid: String,
    canonical_spec: String,
    spec_hash: String,
    policy_bundle: String,
    policy_hash: String,
    signed_at_unix: i64,
    /// The approvers as given to the signer, in this order (version 2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    approvers: Vec<Approver>,
    /// The AgentPromotion uids as given to the signer, in this order (version 2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    promotions: Vec<String>,
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

const KAT_V1: &str = "kat.json";
const KAT_V2: &str = "kat-v2.json";
const REGENERATE: &str =
    "AGENTGOV_UPDATE_KAT=1 cargo test -p agentgov-api --test proof_contract known_answer";

/// The v2 vectors' approvers, out of order: one without a uid, then one with.
fn kat_approvers() -> Vec<Approver> {
    vec![
        Approver {
            username: "oidc:bob".into(),
            uid: String::new(),
        },
        approver(),
    ]
}

/// The v2 vectors' AgentPromotion uids, out of order.
fn kat_promotions() -> Vec<String> {
    vec![
        "c5e7a9b1-2d4f-4a6c-8e0b-3d5f7a9c1e2b".into(),
        PROMOTION_UID.into(),
    ]
}

/// The inputs both versions share; `vectors` empty.
fn kat_inputs() -> Kat {
    let scenario = governed(ed25519_ring());
    let canonical = canonical_json(&scenario.spec).expect("canonical spec");
    Kat {
        regenerate: REGENERATE.into(),
        agent: "examples/agent-governed.yaml".into(),
        namespace: scenario.namespace.clone(),
        name: scenario.name.clone(),
        uid: String::new(),
        canonical_spec: String::from_utf8(canonical).expect("UTF-8"),
        spec_hash: spec_hash(&scenario.spec).expect("spec hash"),
        policy_bundle: format!("crds/tests/fixtures/{KAT_POLICY}"),
        policy_hash: kat_policy_hash(),
        signed_at_unix: T0,
        approvers: Vec::new(),
        promotions: Vec::new(),
        vectors: Vec::new(),
    }
}

fn kat_vector(file: &str, subject: ProofSubject<'_>, proof: ProofBundle) -> KatVector {
    let payload = signing_payload(subject, &proof).expect("payload");
    KatVector {
        key_ring: format!("crds/tests/fixtures/{file}"),
        payload: String::from_utf8(payload).expect("canonical JSON is UTF-8"),
        proof,
    }
}

/// Version 1, as earlier builds signed it: the payload of a version 1 proof, signed with the
/// ring's key (the operator no longer signs this version).
fn compute_kat_v1() -> Kat {
    let mut kat = kat_inputs();
    for file in [ED25519_RING, HMAC_RING] {
        let ring = load_ring(&ring_config(file));
        let scenario = governed(&ring);
        let (key_id, algorithm) = ring.active_key().expect("a signing key");
        let mut proof = ProofBundle {
            version: 1,
            spec_hash: kat.spec_hash.clone(),
            policy_hash: kat.policy_hash.clone(),
            signature: String::new(),
            algorithm,
            key_id: key_id.into(),
            signed_at: format_signed_at(at(T0)),
            agent_uid: String::new(),
            approvers: Vec::new(),
            promotions: Vec::new(),
            exceptions: Vec::new(),
        };
        let payload = signing_payload(scenario.subject(), &proof).expect("payload");
        proof.signature = ring.sign(&payload).expect("signs").2;
        kat.vectors
            .push(kat_vector(file, scenario.subject(), proof));
    }
    kat
}

/// Version 2, signed as the operator signs.
fn compute_kat_v2() -> Kat {
    let mut kat = kat_inputs();
    kat.uid = AGENT_UID.into();
    kat.approvers = kat_approvers();
    kat.promotions = kat_promotions();
    for file in [ED25519_RING, HMAC_RING] {
        let ring = load_ring(&ring_config(file));
        let mut scenario = governed(&ring);
        scenario.uid.clone_from(&kat.uid);
        scenario.sign_claims(&ring, &kat.approvers, &kat.promotions);
        kat.vectors.push(kat_vector(
            file,
            scenario.subject(),
            scenario.proof().clone(),
        ));
    }
    kat
}

fn committed_kat(name: &str) -> Kat {
    serde_json::from_str(&fixture(name)).unwrap_or_else(|e| panic!("{name} does not parse: {e}"))
}

fn assert_kat_matches(computed: &Kat, committed: &Kat, hint: &str) {
    assert_eq!(
        computed.canonical_spec, committed.canonical_spec,
        "canonical spec changed; {hint}"
    );
    assert_eq!(
        computed.spec_hash, committed.spec_hash,
        "spec hash changed; {hint}"
    );
    assert_eq!(
        computed.policy_hash, committed.policy_hash,
        "policy hash changed; {hint}"
    );
    for (c, k) in computed.vectors.iter().zip(&committed.vectors) {
        assert_eq!(c.payload, k.payload, "signed payload changed; {hint}");
        assert_eq!(c.proof, k.proof, "proof changed; {hint}");
    }
    assert_eq!(computed, committed, "{hint}");
}

#[test]
fn known_answer_vectors_match() {
    let v2 = compute_kat_v2();
    if std::env::var("AGENTGOV_UPDATE_KAT").as_deref() == Ok("1") {
        let text = serde_json::to_string_pretty(&v2).expect("serialize") + "\n";
        let path = repo_root().join(format!("crds/tests/fixtures/{KAT_V2}"));
        std::fs::write(&path, text).expect("write kat-v2.json");
        eprintln!("rewrote {}", path.display());
    }
    assert_kat_matches(
        &v2,
        &committed_kat(KAT_V2),
        "regenerate with AGENTGOV_UPDATE_KAT=1 only if the change is intended",
    );
    // Version 1 is never regenerated: what earlier builds signed must still come out the same.
    assert_kat_matches(
        &compute_kat_v1(),
        &committed_kat(KAT_V1),
        "payload version 1 is frozen: proofs signed by earlier builds must keep verifying",
    );
}

/// The inputs a vector file states, checked without the crate's hashing code.
fn check_kat_inputs(kat: &Kat) {
    let digest = ring::digest::digest(&ring::digest::SHA256, kat.canonical_spec.as_bytes());
    assert_eq!(hex::encode(digest), kat.spec_hash);
    assert_eq!(
        format_signed_at(at(kat.signed_at_unix)),
        "2026-01-03T00:00:00Z"
    );
    assert_eq!(kat.vectors.len(), 2);
}

/// A vector's signature over its payload, checked with ring directly.
fn check_kat_signature(v: &KatVector) {
    let p = &v.proof;
    let key = fixture_key(v.key_ring.rsplit('/').next().expect("file name"));
    let signature = B64.decode(&p.signature).expect("base64 signature");
    match p.algorithm {
        Algorithm::Ed25519 => {
            assert_eq!(signature.len(), 64);
            let public = B64
                .decode(key.public_key.expect("public key"))
                .expect("base64");
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
                .verify(v.payload.as_bytes(), &signature)
                .expect("Ed25519 signature verifies");
        }
        Algorithm::HmacSha256 => {
            assert_eq!(signature.len(), 32);
            let secret = B64.decode(key.secret.expect("secret")).expect("base64");
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
            ring::hmac::verify(&key, v.payload.as_bytes(), &signature).expect("HMAC verifies");
        }
    }
}

/// The committed version 1 vectors, checked without the crate's signing code: SHA-256 of the
/// canonical spec, the payload layout written out by hand, and the signatures with ring
/// directly. They still verify; admission refuses them (they name no approval).
#[test]
fn known_answer_vectors_v1_verify_independently() {
    let kat = committed_kat(KAT_V1);
    check_kat_inputs(&kat);
    for v in &kat.vectors {
        let p = &v.proof;
        assert_eq!(
            p.version, 1,
            "a stored proof without a version is version 1"
        );
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
        check_kat_signature(v);
        // The crate agrees: the payload for a version 1 proof, and it verifies (for any uid:
        // version 1 does not sign one).
        let mut scenario = governed(ed25519_ring());
        assert_eq!(
            signing_payload(scenario.subject(), p).expect("payload"),
            expected.as_bytes()
        );
        for uid in [AGENT_UID, RECREATED_UID, ""] {
            scenario.uid = uid.into();
            assert_eq!(verify(&both_keys(&[]), scenario.subject(), p), Ok(()));
        }
        // A proof stored by an earlier build names no approval: no proof in force.
        scenario.uid = AGENT_UID.into();
        scenario.proof_mut().clone_from(p);
        let d = assert_denied(scenario.check(&both_keys(&[])), ProofExists, &v.key_ring);
        assert!(d.reason.contains("names no approval"), "{}", d.reason);
    }
}

/// An approver in a version 2 payload, written out by hand.
fn approver_json(a: &Approver) -> String {
    if a.uid.is_empty() {
        format!(r#"{{"username":"{}"}}"#, a.username)
    } else {
        format!(r#"{{"uid":"{}","username":"{}"}}"#, a.uid, a.username)
    }
}

/// The committed version 2 vectors, checked the same way: the payload layout written out by
/// hand (approvers and promotions sorted), the signatures with ring directly.
#[test]
fn known_answer_vectors_v2_verify_independently() {
    let kat = committed_kat(KAT_V2);
    check_kat_inputs(&kat);
    assert_eq!(kat.uid, AGENT_UID);
    // The inputs are out of order and one approver has no uid, so the vectors show both.
    assert_eq!(kat.approvers.len(), 2);
    assert!(kat.approvers.iter().any(|a| a.uid.is_empty()));
    assert!(kat.approvers.iter().any(|a| !a.uid.is_empty()));
    assert!(kat.approvers[0].username > kat.approvers[1].username);
    assert_eq!(kat.promotions.len(), 2);
    assert!(kat.promotions[0] > kat.promotions[1]);
    let approvers = [&kat.approvers[1], &kat.approvers[0]];
    let promotions = [&kat.promotions[1], &kat.promotions[0]];
    for v in &kat.vectors {
        let p = &v.proof;
        assert_eq!(p.version, 2);
        assert_eq!(p.agent_uid, kat.uid);
        assert_eq!(p.approvers.iter().collect::<Vec<_>>(), approvers);
        assert_eq!(p.promotions.iter().collect::<Vec<_>>(), promotions);
        let expected = format!(
            r#"{{"algorithm":"{}","approvers":[{},{}],"keyId":"{}","name":"{}","namespace":"{}","policyHash":"{}","promotions":["{}","{}"],"signedAt":"2026-01-03T00:00:00Z","specHash":"{}","uid":"{}","v":2}}"#,
            p.algorithm.as_str(),
            approver_json(approvers[0]),
            approver_json(approvers[1]),
            p.key_id,
            kat.name,
            kat.namespace,
            kat.policy_hash,
            promotions[0],
            promotions[1],
            kat.spec_hash,
            kat.uid,
        );
        assert_eq!(v.payload, expected);
        check_kat_signature(v);
        // The stored proof, as JSON: the fields a status carries.
        let stored = serde_json::to_value(p).expect("json");
        assert_eq!(stored["version"], 2);
        assert_eq!(stored["agentUid"], kat.uid.as_str());
        assert_eq!(stored["approvers"][0], serde_json::json!(approvers[0]));
        assert!(stored["approvers"][1].get("uid").is_none(), "{stored}");
        // A proof the operator signed is admitted, for this agent object only.
        let mut scenario = governed(ed25519_ring());
        scenario.proof_mut().clone_from(p);
        assert_admitted(scenario.check(&both_keys(&[])), &v.key_ring);
        scenario.uid = RECREATED_UID.into();
        assert_eq!(
            verify(&both_keys(&[]), scenario.subject(), p),
            Err(VerifyFailure::BadSignature)
        );
        assert_denied(scenario.check(&both_keys(&[])), SignatureValid, &v.key_ring);
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
        // The identity the proof is bound to: the agent's namespace, name and object.
        "namespace" => SignatureValid: |s| s.namespace = "finance-2".into();
        "name" => SignatureValid: |s| s.name = "invoice-auditor-2".into();
        "re-created agent of the same name" => SignatureValid: |s| s.uid = RECREATED_UID.into();
        "re-created agent, proof.agentUid edited to match" => SignatureValid: |s| {
            s.uid = RECREATED_UID.into();
            s.proof_mut().agent_uid = RECREATED_UID.into();
        };
        "proof.agentUid" => SignatureValid: |s| s.proof_mut().agent_uid = RECREATED_UID.into();
        "proof.agentUid removed" => SignatureValid: |s| s.proof_mut().agent_uid.clear();
        // Who approved, and through which AgentPromotions.
        "approver added" => SignatureValid: |s| s.proof_mut().approvers.push(Approver { username: "mallory".into(), uid: String::new() });
        "approver replaced" => SignatureValid: |s| s.proof_mut().approvers[0].username = "mallory".into();
        "approver's uid" => SignatureValid: |s| s.proof_mut().approvers[0].uid = "0".repeat(36);
        "approver's uid removed" => SignatureValid: |s| s.proof_mut().approvers[0].uid.clear();
        "approver repeated" => SignatureValid: |s| {
            let again = s.proof().approvers[0].clone();
            s.proof_mut().approvers.push(again);
        };
        "promotion added" => SignatureValid: |s| s.proof_mut().promotions.push(RECREATED_UID.into());
        "promotion replaced" => SignatureValid: |s| s.proof_mut().promotions[0] = RECREATED_UID.into();
        "promotions removed" => SignatureValid: |s| s.proof_mut().promotions.clear();
        "payload version 3" => SignatureValid: |s| s.proof_mut().version = 3;
        // Status: no proof in force.
        "no status" => ProofExists: |s| s.status = None;
        "no proof" => ProofExists: |s| s.status.as_mut().expect("status").proof = None;
        "approvers removed" => ProofExists: |s| s.proof_mut().approvers.clear();
        "payload version 1" => ProofExists: |s| s.proof_mut().version = 1;
        "payload version 0" => ProofExists: |s| s.proof_mut().version = 0;
        "GOVERNED_INVALIDATED" => ProofExists: |s| set_governance(s, Some(GovernanceStatus::GovernedInvalidated));
        "SANDBOX status with a proof" => ProofExists: |s| set_governance(s, Some(GovernanceStatus::Sandbox));
        "no governance status" => ProofExists: |s| set_governance(s, None);
        // Held out of force, keeping its last proof: what no longer holds is named first.
        "GOVERNED_INVALIDATED, spec changed" => SpecHashMatch: |s| {
            set_governance(s, Some(GovernanceStatus::GovernedInvalidated));
            reasoning(s).temperature = 0.25;
        };
        "GOVERNED_INVALIDATED, re-created" => SignatureValid: |s| {
            set_governance(s, Some(GovernanceStatus::GovernedInvalidated));
            s.uid = RECREATED_UID.into();
        };
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
        assert!(cases.len() >= 59);
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
        // (The same uid, so that only the name tells them apart; another object's uid is
        // refused on its own, see a_proof_of_a_deleted_agent_does_not_hold_for_its_successor.)
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
fn a_proof_of_a_deleted_agent_does_not_hold_for_its_successor() {
    for (alg, keys) in signing_rings() {
        let old = governed(keys);
        // Deleted and created again under the same name, with the very same spec: its status
        // copied over (by anyone who may write the status subresource) is no proof for it.
        let mut successor = old.clone();
        successor.uid = RECREATED_UID.into();
        let d = assert_denied(successor.check(keys), SignatureValid, alg);
        assert!(d.reason.contains("another Agent object"), "{}", d.reason);
        // It needs its own approval, and then it is admitted; the old proof is not.
        successor.sign_with(keys);
        assert_admitted(successor.check(keys), alg);
        let mut stale = old.clone();
        stale.status.clone_from(&successor.status);
        assert_denied(stale.check(keys), SignatureValid, alg);
    }
}

#[test]
fn approvers_and_promotions_are_signed_in_one_order() {
    let second = Approver {
        username: "oidc:bob".into(),
        uid: String::new(),
    };
    // Out of order: "3a7b…" sorts after "0b1d…".
    let promotions = [
        PROMOTION_UID.to_string(),
        "0b1d3f5a-7c9e-4b2d-8f6a-1c3e5a7b9d0f".to_string(),
    ];
    let sorted = [promotions[1].clone(), promotions[0].clone()];
    for (alg, keys) in signing_rings() {
        let mut s = governed(keys);
        // Given in any order, with repeats: signed sorted, without duplicates.
        s.sign_claims(
            keys,
            &[second.clone(), approver(), second.clone()],
            &[
                promotions[0].clone(),
                promotions[1].clone(),
                promotions[0].clone(),
            ],
        );
        assert_eq!(s.proof().approvers, [approver(), second.clone()], "{alg}");
        assert_eq!(s.proof().promotions, sorted, "{alg}");
        assert_admitted(s.check(keys), alg);
        let mut sorted_again = s.clone();
        sorted_again.sign_claims(keys, &[approver(), second.clone()], &sorted);
        assert_eq!(sorted_again.proof(), s.proof(), "{alg}");
        // The stored lists reordered: other signed bytes.
        let mut reordered = s.clone();
        reordered.proof_mut().approvers.reverse();
        assert_denied(
            reordered.check(keys),
            SignatureValid,
            &format!("{alg}: approvers"),
        );
        let mut reordered = s.clone();
        reordered.proof_mut().promotions.reverse();
        assert_denied(
            reordered.check(keys),
            SignatureValid,
            &format!("{alg}: promotions"),
        );
        // One of two approvers removed: the proof claims less than was signed.
        let mut fewer = s.clone();
        fewer.proof_mut().approvers.pop();
        assert_denied(fewer.check(keys), SignatureValid, &format!("{alg}: fewer"));
    }
}

#[test]
fn a_proof_that_names_no_approval_is_no_proof() {
    for (alg, keys) in signing_rings() {
        // Signed by the operator's code, but under no approval.
        let mut s = governed(keys);
        s.sign_claims(keys, &[], &[PROMOTION_UID.to_string()]);
        assert_eq!(verify(keys, s.subject(), s.proof()), Ok(()));
        let d = assert_denied(s.check(keys), ProofExists, alg);
        assert!(d.reason.contains("names no approval"), "{}", d.reason);
        assert!(d.reason.contains("payload version 2"), "{}", d.reason);
        // Whatever else is wrong with it: check 1 comes first.
        s.spec.version = "9".into();
        s.active_policy_hash = None;
        assert_denied(
            s.check(&both_keys(&[ED25519_KEY_ID, HMAC_KEY_ID])),
            ProofExists,
            alg,
        );
    }
}

/// A GOVERNED_INVALIDATED agent keeps its last proof as a record; admission names what no
/// longer holds, and refuses it even when everything still does.
#[test]
fn an_agent_held_out_of_force_is_refused_whatever_its_proof() {
    for (alg, keys) in signing_rings() {
        let mut held = governed(keys);
        set_governance(&mut held, Some(GovernanceStatus::GovernedInvalidated));
        held.status.as_mut().expect("status").denies =
            vec!["the agent is no longer approved; approve spec hash 58dff20c6331".into()];
        // The proof otherwise intact: no proof bundle in force, and why.
        let d = assert_denied(held.check(keys), ProofExists, alg);
        assert!(
            d.reason
                .contains("no proof bundle in force (GOVERNED_INVALIDATED)"),
            "{}",
            d.reason
        );
        assert!(d.reason.contains("no longer approved"), "{}", d.reason);
        // Its spec changed since: the spec hash says so.
        let mut changed = held.clone();
        reasoning(&mut changed).temperature = 0.25;
        assert_denied(changed.check(keys), SpecHashMatch, alg);
        // A newer policy in force that denies it: the policy hash says so, with the reasons.
        let mut denied = held.clone();
        denied.policy_in_force(&kat_policy_with_limit(0.1));
        let d = assert_denied(denied.check(keys), PolicyHashMatch, alg);
        assert!(
            d.reason.contains("temperature above the limit"),
            "{}",
            d.reason
        );
        // A newer policy that allows it: checks 2 to 5 pass (the same agent, in force, is
        // admitted), and it is still refused.
        let mut allowed = held.clone();
        allowed.policy_in_force(&kat_policy_with_limit(0.5));
        let mut in_force = allowed.clone();
        set_governance(&mut in_force, Some(GovernanceStatus::GovernedValid));
        assert_admitted(in_force.check(keys), alg);
        let d = assert_denied(allowed.check(keys), ProofExists, alg);
        assert!(d.reason.contains("GOVERNED_INVALIDATED"), "{}", d.reason);
        // A revoked key (or another object's proof, in the tampering table) is named before
        // the state.
        assert_denied(
            held.check(&both_keys(&[ED25519_KEY_ID, HMAC_KEY_ID])),
            SignerNotRevoked,
            alg,
        );
    }
}

/// A proof signed under an older policy than the one in force: admitted while the operator has
/// not re-signed the agent yet, if (and only if) the policy in force allows the agent too.
#[test]
fn a_proof_under_an_older_policy_is_judged_by_the_policy_in_force() {
    for (alg, keys) in signing_rings() {
        let signed = governed(keys);
        let mut newer = signed.clone();
        newer.policy_in_force(&kat_policy_with_limit(0.5));
        assert_ne!(newer.active_policy_hash, signed.active_policy_hash);
        assert_admitted(newer.check(keys), alg);
        let mut restricted = newer.clone();
        set_governance(&mut restricted, Some(GovernanceStatus::GovernedRestricted));
        assert_admitted(restricted.check(keys), alg);
        // Without a recheck, check 3 is strict.
        let mut strict = newer.clone();
        strict.recheck = None;
        let d = assert_denied(strict.check(keys), PolicyHashMatch, alg);
        assert!(d.reason.contains("is in force"), "{}", d.reason);
        // A newer policy that denies the agent.
        let mut tighter = signed.clone();
        tighter.policy_in_force(&kat_policy_with_limit(0.1));
        let d = assert_denied(tighter.check(keys), PolicyHashMatch, alg);
        assert!(d.reason.contains("now in force, denies it"), "{}", d.reason);
        // The recheck judges the spec being admitted; a changed spec is caught before it.
        let mut changed = newer.clone();
        reasoning(&mut changed).temperature = 0.4;
        assert_denied(changed.check(keys), SpecHashMatch, alg);
        // And it decides nothing else: a bad signature under an allowing policy is still bad.
        let mut forged = newer.clone();
        forged.proof_mut().signed_at = "2026-01-03T00:00:01Z".into();
        assert_denied(forged.check(keys), SignatureValid, alg);
        // The policy the proof names in force: no recheck is asked (this one would deny).
        let mut same = signed.clone();
        same.recheck.clone_from(&tighter.recheck);
        assert_admitted(same.check(keys), alg);
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
    s.uid = RECREATED_UID.into();
    assert_denied(
        s.check(&both_keys(&[ED25519_KEY_ID])),
        AdmissionCheck::SignerNotRevoked,
        "revoked, and another object",
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

/// A proof signed under an AgentException is in force until the exception ends, by our clock:
/// admitted before, refused from its end on, and the signature covers the exception (stripping
/// it or moving its end breaks the proof).
#[test]
fn a_proof_signed_under_an_exception_ends_with_it() {
    for (alg, keys) in signing_rings() {
        let mut scenario = governed(keys);
        let spec_hash = spec_hash(&scenario.spec).expect("hash");
        let policy = scenario.active_policy_hash.clone().expect("policy");
        let ends = format_signed_at(at(T0 + 7_200));
        let exception = agentgov_api::proof::ProofException {
            name: "budget-waiver".into(),
            rules: vec!["budget".into()],
            expires_at: ends.clone(),
            requested_by: "carol".into(),
        };
        let proof = agentgov_api::proof::sign(
            keys,
            scenario.subject(),
            agentgov_api::proof::Claims {
                spec_hash: &spec_hash,
                policy_hash: &policy,
                approvers: &[approver()],
                promotions: &[PROMOTION_UID.to_string()],
                exceptions: std::slice::from_ref(&exception),
            },
            at(T0),
        )
        .expect("signs");
        *scenario.proof_mut() = proof;
        assert_admitted(scenario.check(keys), alg);

        let mut stripped = scenario.clone();
        stripped.proof_mut().exceptions.clear();
        assert_denied(stripped.check(keys), SignatureValid, alg);

        let mut later = scenario.clone();
        later.now = at(T0 + 7_200);
        let denial = assert_denied(later.check(keys), ProofExists, alg);
        assert!(
            denial.reason.contains("AgentException budget-waiver"),
            "{}",
            denial.reason
        );

        // The end is signed: rewriting it breaks the signature.
        let mut moved = scenario.clone();
        moved.proof_mut().exceptions[0].expires_at = format_signed_at(at(T0 + 99_999));
        assert_denied(moved.check(keys), SignatureValid, alg);
    }
}
