//! The key ring: parsing errors with clear messages, the verification-only ring of the webhook,
//! and rotation (old proofs verify until their key is revoked), for Ed25519 and HMAC.

mod common;

use agentgov_api::admission::AdmissionCheck;
use agentgov_api::keyring::{Algorithm, KeyRing, VerifyFailure, generate_ed25519, generate_hmac};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;

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
    let (private, public) = (
        ed.private_key.expect("private"),
        ed.public_key.expect("public"),
    );
    let secret = fixture_key(HMAC_RING).secret.expect("secret");
    let hmac = |id: &str| json!({"id": id, "algorithm": "HmacSha256", "secret": secret});
    let other_public = generate_ed25519("x")
        .expect("key")
        .public_key
        .expect("public");
    let cases = [
        (
            json!({"keys": [hmac("k1"), hmac("k1")]}),
            "key id k1 appears twice",
        ),
        (
            json!({"keys": [{"id": "k", "algorithm": "HmacSha256", "secret": "not base64!"}]}),
            "key k: secret is not valid base64",
        ),
        (
            json!({"keys": [{"id": "k", "algorithm": "Ed25519", "publicKey": "%%%"}]}),
            "key k: publicKey is not valid base64",
        ),
        (
            json!({"keys": [{"id": "k", "algorithm": "Ed25519", "privateKey": "%%%"}]}),
            "key k: privateKey is not valid base64",
        ),
        (
            json!({"keys": [{"id": "k", "algorithm": "HmacSha256", "secret": B64.encode([7u8; 31])}]}),
            "key k: HMAC secret must be at least 32 bytes",
        ),
        (
            json!({"keys": [{"id": "k", "algorithm": "HmacSha256"}]}),
            "key k: HmacSha256 needs a secret",
        ),
        (
            json!({"activeKeyId": "k", "keys": [{"id": "k", "algorithm": "Ed25519", "publicKey": public}]}),
            "active key k is not in the ring or has no private key",
        ),
        (
            json!({"activeKeyId": "k2", "keys": [hmac("k1")]}),
            "active key k2 is not in the ring",
        ),
        (
            json!({"keys": [{"id": "k", "algorithm": "Ed25519", "privateKey": private, "publicKey": other_public}]}),
            "key k: publicKey does not match privateKey",
        ),
        (
            json!({"keys": [{"id": "k", "algorithm": "Ed25519", "publicKey": B64.encode([1u8; 31])}]}),
            "key k: Ed25519 public key must be 32 bytes",
        ),
        (
            json!({"keys": [{"id": "k", "algorithm": "Ed25519"}]}),
            "key k: Ed25519 needs a publicKey or a privateKey",
        ),
        (
            json!({"keys": [{"id": " ", "algorithm": "HmacSha256", "secret": secret}]}),
            "a key has an empty id",
        ),
        (
            json!({"keys": [{"id": "k", "algorithm": "Rsa", "secret": secret}]}),
            "cannot parse key ring",
        ),
    ];
    for (document, expected) in cases {
        let message = ring_error(document.clone());
        assert!(message.starts_with("key ring: "), "{message}");
        assert!(
            message.contains(expected),
            "{document}: got {message:?}, expected {expected:?}"
        );
        assert!(
            !message.contains(&secret) && !message.contains(&private),
            "{message} leaks key material"
        );
    }
    // Nothing secret in a ring's Debug output either.
    let debug = format!("{:?} {:?}", ed25519_ring(), hmac_ring());
    assert!(
        !debug.contains(&secret) && !debug.contains(&private),
        "{debug}"
    );
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
    assert_eq!(
        public.keys[1].secret,
        fixture_key(HMAC_RING).secret,
        "HMAC needs its secret"
    );
    assert_eq!(public.keys[2].public_key, derived);
    let text = serde_json::to_string(&public).expect("json");
    assert!(!text.contains(&ed.private_key.expect("private")) && !text.contains("privateKey"));
    let webhook = load_ring(&public);
    assert!(
        webhook.sign(b"x").is_err(),
        "a verification ring cannot sign"
    );
    assert_eq!(webhook.active_key_id(), None);
    for (alg, signer) in signing_rings() {
        assert_admitted(governed(signer).check(&webhook), alg);
    }
}

// --- Verification ----------------------------------------------------------------------------

/// `KeyRing::verify` names why a signature fails. The algorithm check matters on its own: a
/// signature that is valid for the message must still fail when the claimed algorithm is not
/// the key's (proofs also sign the algorithm, so admission would catch that twice).
#[test]
fn verify_names_the_reason() {
    let message = b"agentgov";
    let both = both_keys(&[]);
    for (alg, keys) in signing_rings() {
        let (id, algorithm, signature) = keys.sign(message).expect("sign");
        assert_eq!(
            both.verify(&id, algorithm, message, &signature),
            Ok(()),
            "{alg}"
        );
        let claimed = match algorithm {
            Algorithm::Ed25519 => Algorithm::HmacSha256,
            Algorithm::HmacSha256 => Algorithm::Ed25519,
        };
        let verify =
            |ring: &KeyRing, id: &str, alg, msg: &[u8], sig: &str| ring.verify(id, alg, msg, sig);
        assert_eq!(
            verify(&both, &id, claimed, message, &signature),
            Err(VerifyFailure::AlgorithmMismatch),
            "{alg}"
        );
        assert_eq!(
            verify(&both, &id, algorithm, b"agentgoV", &signature),
            Err(VerifyFailure::BadSignature),
            "{alg}"
        );
        assert_eq!(
            verify(&both, &id, algorithm, message, "!!"),
            Err(VerifyFailure::BadSignature),
            "{alg}"
        );
        assert_eq!(
            verify(&both, "nobody", algorithm, message, &signature),
            Err(VerifyFailure::UnknownKey),
            "{alg}"
        );
        let revoked = both_keys(&[&id]);
        assert_eq!(
            verify(&revoked, &id, algorithm, message, &signature),
            Err(VerifyFailure::Revoked),
            "{alg}"
        );
    }
}

// --- Rotation -------------------------------------------------------------------------------

#[test]
fn rotation_keeps_old_proofs_valid_until_the_old_key_is_revoked() {
    for old_file in [ED25519_RING, HMAC_RING] {
        let old_config = ring_config(old_file);
        let old_id = old_config.active_key_id.clone().expect("active key");
        for new_key in [
            generate_ed25519("next-ed").expect("key"),
            generate_hmac("next-hmac").expect("key"),
        ] {
            let what = format!("{old_id} -> {}", new_key.id);
            let old_proof = governed(&load_ring(&old_config));
            let mut rotated = old_config.clone();
            rotated.active_key_id = Some(new_key.id.clone());
            rotated.keys.push(new_key.clone());
            let rotated_ring = load_ring(&rotated);
            assert_eq!(rotated_ring.active_key_id(), Some(new_key.id.as_str()));
            let new_proof = governed(&rotated_ring);
            assert_eq!(
                new_proof.proof().key_id,
                new_key.id,
                "{what}: new proofs use the new key"
            );
            let webhook = load_ring(&rotated.verification_only().expect("verification ring"));
            for keys in [&rotated_ring, &webhook] {
                assert_admitted(old_proof.check(keys), &format!("{what}: old proof"));
                assert_admitted(new_proof.check(keys), &format!("{what}: new proof"));
            }
            rotated.revoked.push(old_id.clone());
            let revoked = load_ring(&rotated);
            assert_denied(
                old_proof.check(&revoked),
                AdmissionCheck::SignerNotRevoked,
                &what,
            );
            assert_admitted(
                new_proof.check(&revoked),
                &format!("{what}: after revoking the old key"),
            );
        }
    }
}

#[test]
fn a_revoked_active_key_verifies_nothing_and_signs_nothing() {
    let secret = B64.encode([7u8; 32]);
    let config: agentgov_api::keyring::KeyRingConfig = serde_json::from_value(serde_json::json!({
        "activeKeyId": "k1",
        "keys": [{"id": "k1", "algorithm": "HmacSha256", "secret": secret}],
        "revoked": ["k1"],
    }))
    .unwrap();
    let ring =
        KeyRing::from_config(&config).expect("a ring with its active key revoked still loads");
    assert_eq!(ring.active_key_id(), None, "a revoked key never signs");
    assert!(ring.sign(b"payload").is_err());
    assert!(ring.is_revoked("k1"));
}
