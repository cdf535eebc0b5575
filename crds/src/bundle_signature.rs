//! Signed policy bundles (opt-in): a PolicyBundle may carry `spec.signature`, a signature by a
//! policy-signing key over the bundle's **content hash**: SHA-256 of the canonical JSON of the
//! spec without its signature (so the version label, the entrypoint, the modules, the data and
//! the enforcement action are all covered). The policy-signing key ring is a separate ring from
//! the proof keys, of the same format ([`crate::keyring`]), made with `keygen new --policy`.
//!
//! With `--require-signed-bundles` the operator puts a version in force only when its signature
//! verifies with the public policy-signing ring (`--bundle-keys`), and the webhook refuses an
//! unsigned or badly signed bundle at admission. The signature is left out of the serialized
//! spec when absent, so an unsigned bundle's canonical JSON and policy hash are what they were.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::hash::{canonical_json, sha256_hex};
use crate::keyring::{Algorithm, KeyRing, VerifyFailure};
use crate::policy_bundle::PolicyBundleSpec;

/// What the signed message says it is, so that a bundle signature is never taken for another
/// kind of signature made with the same key.
const PURPOSE: &str = "agentgov.dev/PolicyBundle";

/// `spec.signature`: who signed the bundle's content hash, and the signature.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleSignature {
    /// The policy-signing key's id.
    #[schemars(length(min = 1, max = 253))]
    pub key_id: String,
    /// Base64 signature (by the key's algorithm) over the bundle's content hash.
    #[schemars(length(min = 1, max = 1024))]
    pub value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SignedMessage<'a> {
    v: u32,
    purpose: &'a str,
    content_hash: &'a str,
    key_id: &'a str,
    algorithm: Algorithm,
}

/// SHA-256 (hex) of the canonical JSON of `spec` without its signature: what a bundle signature
/// covers.
pub fn content_hash(spec: &PolicyBundleSpec) -> Result<String, Error> {
    if spec.signature.is_none() {
        return Ok(sha256_hex(&canonical_json(spec)?));
    }
    let mut unsigned = spec.clone();
    unsigned.signature = None;
    Ok(sha256_hex(&canonical_json(&unsigned)?))
}

fn message(content_hash: &str, key_id: &str, algorithm: Algorithm) -> Result<Vec<u8>, Error> {
    canonical_json(&SignedMessage {
        v: 1,
        purpose: PURPOSE,
        content_hash,
        key_id,
        algorithm,
    })
}

/// `spec` signed with the ring's active key (any earlier signature replaced).
pub fn sign_bundle(ring: &KeyRing, spec: &PolicyBundleSpec) -> Result<PolicyBundleSpec, Error> {
    let (key_id, algorithm) = ring.active_key().ok_or(Error::NoSigningKey)?;
    let hash = content_hash(spec)?;
    let (_, _, value) = ring.sign(&message(&hash, key_id, algorithm)?)?;
    let mut signed = spec.clone();
    signed.signature = Some(Box::new(BundleSignature {
        key_id: key_id.to_string(),
        value,
    }));
    Ok(signed)
}

/// Why a bundle's signature does not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BundleSignatureError {
    #[error("the bundle is not signed (spec.signature is missing) and signed bundles are required")]
    Unsigned,
    #[error(
        "the bundle is signed by key {key_id}, which is revoked in the policy-signing key ring"
    )]
    Revoked { key_id: String },
    #[error("the bundle is signed by key {key_id}, which is not in the policy-signing key ring")]
    UnknownKey { key_id: String },
    #[error(
        "the signature by key {key_id} does not verify: the bundle was changed after it was signed, or signed by another key"
    )]
    BadSignature { key_id: String },
    #[error("the bundle cannot be hashed: {0}")]
    Hash(String),
}

impl BundleSignatureError {
    /// The condition reason (and Event reason) the operator reports.
    pub fn reason(&self) -> &'static str {
        match self {
            BundleSignatureError::Unsigned => "SignatureMissing",
            _ => "SignatureInvalid",
        }
    }
}

/// Whether `spec` carries a signature that verifies with `ring` (a public policy-signing ring).
pub fn verify_bundle(ring: &KeyRing, spec: &PolicyBundleSpec) -> Result<(), BundleSignatureError> {
    let signature = spec
        .signature
        .as_ref()
        .ok_or(BundleSignatureError::Unsigned)?;
    let key_id = signature.key_id.clone();
    if ring.is_revoked(&key_id) {
        return Err(BundleSignatureError::Revoked { key_id });
    }
    let algorithm = ring
        .algorithm_of(&key_id)
        .ok_or_else(|| BundleSignatureError::UnknownKey {
            key_id: key_id.clone(),
        })?;
    let hash = content_hash(spec).map_err(|e| BundleSignatureError::Hash(e.to_string()))?;
    let message = message(&hash, &key_id, algorithm)
        .map_err(|e| BundleSignatureError::Hash(e.to_string()))?;
    ring.verify(&key_id, algorithm, &message, &signature.value)
        .map_err(|failure| match failure {
            VerifyFailure::Revoked => BundleSignatureError::Revoked { key_id },
            VerifyFailure::UnknownKey => BundleSignatureError::UnknownKey { key_id },
            VerifyFailure::AlgorithmMismatch | VerifyFailure::BadSignature => {
                BundleSignatureError::BadSignature { key_id }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::policy_hash;
    use crate::keyring::{KeyRingConfig, generate_ed25519, generate_hmac};
    use crate::policy::default_bundle_spec;

    fn ring(ids: &[&str]) -> (KeyRing, KeyRingConfig) {
        let config = KeyRingConfig {
            active_key_id: ids.last().map(|id| id.to_string()),
            keys: ids.iter().map(|id| generate_ed25519(id).unwrap()).collect(),
            revoked: vec![],
        };
        (KeyRing::from_config(&config).unwrap(), config)
    }

    fn public(config: &KeyRingConfig) -> KeyRing {
        KeyRing::from_config(&config.verification_only().unwrap()).unwrap()
    }

    #[test]
    fn an_unsigned_bundle_serializes_and_hashes_as_before() {
        let spec = default_bundle_spec();
        let json = serde_json::to_value(&spec).unwrap();
        assert!(json.get("signature").is_none(), "{json}");
        let (ring, _) = ring(&["policy-1"]);
        let signed = sign_bundle(&ring, &spec).unwrap();
        // The proof keys' policy hash ignores the signature; the content hash is the spec's.
        assert_eq!(policy_hash(&signed).unwrap(), policy_hash(&spec).unwrap());
        assert_eq!(
            content_hash(&signed).unwrap(),
            sha256_hex(&canonical_json(&spec).unwrap())
        );
        // A manifest written before this field existed reads back unsigned, the same spec.
        let back: PolicyBundleSpec = serde_json::from_value(json).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn a_signed_bundle_verifies_with_the_public_ring() {
        let (ring, config) = ring(&["policy-1"]);
        let signed = sign_bundle(&ring, &default_bundle_spec()).unwrap();
        assert_eq!(signed.signature.as_ref().unwrap().key_id, "policy-1");
        verify_bundle(&public(&config), &signed).unwrap();
        // Through YAML (a manifest) and back.
        let yaml = serde_yaml::to_string(&signed).unwrap();
        assert!(yaml.contains("keyId: policy-1"), "{yaml}");
        let back: PolicyBundleSpec = serde_yaml::from_str(&yaml).unwrap();
        verify_bundle(&public(&config), &back).unwrap();
    }

    #[test]
    fn hmac_keys_sign_bundles_too() {
        let config = KeyRingConfig {
            active_key_id: Some("h".into()),
            keys: vec![generate_hmac("h").unwrap()],
            revoked: vec![],
        };
        let ring = KeyRing::from_config(&config).unwrap();
        let signed = sign_bundle(&ring, &default_bundle_spec()).unwrap();
        verify_bundle(&ring, &signed).unwrap();
    }

    #[test]
    fn an_unsigned_bundle_fails() {
        let (_, config) = ring(&["policy-1"]);
        let err = verify_bundle(&public(&config), &default_bundle_spec()).unwrap_err();
        assert_eq!(err, BundleSignatureError::Unsigned);
        assert_eq!(err.reason(), "SignatureMissing");
    }

    #[test]
    fn a_changed_rego_data_version_or_action_fails() {
        let (ring, config) = ring(&["policy-1"]);
        let public = public(&config);
        let signed = sign_bundle(&ring, &default_bundle_spec()).unwrap();
        let bad = |spec: &PolicyBundleSpec| {
            let err = verify_bundle(&public, spec).unwrap_err();
            assert_eq!(
                err,
                BundleSignatureError::BadSignature {
                    key_id: "policy-1".into()
                }
            );
            assert_eq!(err.reason(), "SignatureInvalid");
            assert!(err.to_string().contains("policy-1"), "{err}");
        };
        let mut rego = signed.clone();
        rego.modules[0].rego.push_str("\n# edited\n");
        bad(&rego);
        let mut data = signed.clone();
        data.data.max_monthly_budget_usd += 1.0;
        bad(&data);
        let mut version = signed.clone();
        version.version = "9.9.9".into();
        bad(&version);
        let mut entrypoint = signed.clone();
        entrypoint.entrypoint = "data.other.decision".into();
        bad(&entrypoint);
        let mut action = signed.clone();
        action.enforcement_action = crate::policy_bundle::EnforcementAction::Audit;
        bad(&action);
        let mut value = signed.clone();
        value.signature.as_mut().unwrap().value = "not base64!".into();
        bad(&value);
    }

    #[test]
    fn another_key_an_unknown_key_or_a_revoked_key_fails() {
        let (ring_a, _) = ring(&["policy-1"]);
        let (_, config_b) = ring(&["policy-1"]);
        let signed = sign_bundle(&ring_a, &default_bundle_spec()).unwrap();
        // Same id, another key.
        assert!(matches!(
            verify_bundle(&public(&config_b), &signed),
            Err(BundleSignatureError::BadSignature { .. })
        ));
        // A signature claiming another key id.
        let mut relabelled = signed.clone();
        relabelled.signature.as_mut().unwrap().key_id = "policy-2".into();
        let err = verify_bundle(&public(&config_b), &relabelled).unwrap_err();
        assert_eq!(
            err,
            BundleSignatureError::UnknownKey {
                key_id: "policy-2".into()
            }
        );
        assert!(err.to_string().contains("policy-2"));
        // Revoked.
        let (ring, mut config) = self::ring(&["old", "new"]);
        let by_old = {
            let mut old_active = config.clone();
            old_active.active_key_id = Some("old".into());
            sign_bundle(
                &KeyRing::from_config(&old_active).unwrap(),
                &default_bundle_spec(),
            )
            .unwrap()
        };
        verify_bundle(&ring, &by_old).unwrap();
        config.revoked.push("old".into());
        assert_eq!(
            verify_bundle(&public(&config), &by_old).unwrap_err(),
            BundleSignatureError::Revoked {
                key_id: "old".into()
            }
        );
    }

    #[test]
    fn signing_again_replaces_the_signature() {
        let (ring_a, _) = ring(&["a"]);
        let (ring_b, config_b) = ring(&["b"]);
        let by_a = sign_bundle(&ring_a, &default_bundle_spec()).unwrap();
        let by_b = sign_bundle(&ring_b, &by_a).unwrap();
        verify_bundle(&public(&config_b), &by_b).unwrap();
        assert_eq!(content_hash(&by_a).unwrap(), content_hash(&by_b).unwrap());
    }

    #[test]
    fn a_verification_only_ring_cannot_sign() {
        let (_, config) = ring(&["policy-1"]);
        assert!(sign_bundle(&public(&config), &default_bundle_spec()).is_err());
    }
}
