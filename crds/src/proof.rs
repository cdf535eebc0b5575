//! The proof bundle: a signature binding an agent's identity to its spec hash, the policy hash it
//! was judged against, the signing time and the key id. Copying a proof onto another agent, or
//! changing any of these, makes it fail verification.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::hash::canonical_json;
use crate::keyring::{Algorithm, KeyRing, VerifyFailure};

/// Version of the signed payload layout.
pub const PAYLOAD_VERSION: u32 = 1;

/// The proof bundle as written into `status.proof`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProofBundle {
    /// SHA-256 (hex) of the canonical JSON of the agent's spec.
    pub spec_hash: String,
    /// SHA-256 (hex) of the policy bundle the agent passed.
    pub policy_hash: String,
    /// Base64 signature over the canonical payload.
    pub signature: String,
    pub algorithm: Algorithm,
    /// The signing key's id: the seed's "authority".
    pub key_id: String,
    /// When the operator signed, by the operator's clock (RFC 3339, seconds).
    pub signed_at: String,
}

/// Who a proof is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProofSubject<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SignedPayload<'a> {
    v: u32,
    namespace: &'a str,
    name: &'a str,
    spec_hash: &'a str,
    policy_hash: &'a str,
    signed_at: &'a str,
    key_id: &'a str,
    algorithm: Algorithm,
}

/// The exact bytes that are signed: canonical JSON of the payload fields.
pub fn signing_payload(
    subject: ProofSubject<'_>,
    spec_hash: &str,
    policy_hash: &str,
    signed_at: &str,
    key_id: &str,
    algorithm: Algorithm,
) -> Result<Vec<u8>, Error> {
    canonical_json(&SignedPayload {
        v: PAYLOAD_VERSION,
        namespace: subject.namespace,
        name: subject.name,
        spec_hash,
        policy_hash,
        signed_at,
        key_id,
        algorithm,
    })
}

/// `signedAt` in the one format proofs use: RFC 3339 in UTC, whole seconds.
pub fn format_signed_at(now: Timestamp) -> String {
    now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Sign a proof with the ring's active key.
pub fn sign(
    ring: &KeyRing,
    subject: ProofSubject<'_>,
    spec_hash: &str,
    policy_hash: &str,
    now: Timestamp,
) -> Result<ProofBundle, Error> {
    let (key_id, algorithm) = ring.active_key().ok_or(Error::NoSigningKey)?;
    let key_id = key_id.to_string();
    let signed_at = format_signed_at(now);
    let payload = signing_payload(
        subject,
        spec_hash,
        policy_hash,
        &signed_at,
        &key_id,
        algorithm,
    )?;
    let (_, _, signature) = ring.sign(&payload)?;
    Ok(ProofBundle {
        spec_hash: spec_hash.to_string(),
        policy_hash: policy_hash.to_string(),
        signature,
        algorithm,
        key_id,
        signed_at,
    })
}

/// Verify a proof's signature for `subject` (hash comparisons are the admission checks' job).
pub fn verify(
    ring: &KeyRing,
    subject: ProofSubject<'_>,
    proof: &ProofBundle,
) -> Result<(), VerifyFailure> {
    let payload = signing_payload(
        subject,
        &proof.spec_hash,
        &proof.policy_hash,
        &proof.signed_at,
        &proof.key_id,
        proof.algorithm,
    )
    .map_err(|_| VerifyFailure::BadSignature)?;
    ring.verify(&proof.key_id, proof.algorithm, &payload, &proof.signature)
}
