//! The proof bundle: a signature binding an agent's identity to its spec hash, the policy hash it
//! was judged against, the signing time and the key id and, from payload version 2, to the
//! agent's uid and the approvals it was promoted under (who approved, which AgentPromotions).
//! Copying a proof onto another agent (or onto a re-created agent of the same name), or changing
//! any of these, makes it fail verification.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::hash::canonical_json;
use crate::keyring::{Algorithm, KeyRing, VerifyFailure};

/// The payload version the operator signs: 2 (the agent's uid and its approvals are signed).
/// Version 1 (namespace and name only) still verifies, for old records; admission refuses it.
pub const PAYLOAD_VERSION: u32 = 2;

/// The proof bundle as written into `status.proof`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProofBundle {
    /// The signed payload's layout: 1 (before approvals) or 2.
    #[serde(default = "payload_v1")]
    #[schemars(schema_with = "payload_version_schema")]
    pub version: u32,
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
    /// The uid of the Agent object the proof is for (version 2).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub agent_uid: String,
    /// Who approved this spec, as the API server verified them (version 2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<Approver>,
    /// The uids of the AgentPromotions it was promoted under (version 2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub promotions: Vec<String>,
    /// The AgentExceptions that waived policy rules for this promotion (version 2; signed when
    /// present, and absent from the signed payload when empty, so earlier proofs verify as they
    /// did).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exceptions: Vec<ProofException>,
}

/// An AgentException a proof was signed under: which rules it waived, until when (by
/// agentgov's clock) and who asked for it.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct ProofException {
    pub name: String,
    /// The deny codes it waived.
    pub rules: Vec<String>,
    /// When it ends (RFC 3339, seconds): admission refuses the agent's Pods from then on.
    pub expires_at: String,
    /// Who asked, as the API server authenticated them.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub requested_by: String,
}

fn payload_v1() -> u32 {
    1
}

fn payload_version_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "integer", "format": "int32", "minimum": 1, "default": 1})
}

/// An approver named in a proof.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct Approver {
    pub username: String,
    /// The user's uid, where the authenticator gives one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

/// Who a proof is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProofSubject<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    /// The Agent object's uid (signed from payload version 2).
    pub uid: &'a str,
}

/// What a proof asserts besides its subject: the spec and policy, and who approved.
#[derive(Clone, Copy, Debug)]
pub struct Claims<'a> {
    pub spec_hash: &'a str,
    pub policy_hash: &'a str,
    /// Sorted by username before signing.
    pub approvers: &'a [Approver],
    /// Sorted before signing.
    pub promotions: &'a [String],
    /// Sorted before signing.
    pub exceptions: &'a [ProofException],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PayloadV1<'a> {
    v: u32,
    namespace: &'a str,
    name: &'a str,
    spec_hash: &'a str,
    policy_hash: &'a str,
    signed_at: &'a str,
    key_id: &'a str,
    algorithm: Algorithm,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PayloadV2<'a> {
    v: u32,
    namespace: &'a str,
    name: &'a str,
    uid: &'a str,
    spec_hash: &'a str,
    policy_hash: &'a str,
    signed_at: &'a str,
    key_id: &'a str,
    algorithm: Algorithm,
    approvers: &'a [Approver],
    promotions: &'a [String],
    #[serde(skip_serializing_if = "<[ProofException]>::is_empty")]
    exceptions: &'a [ProofException],
}

/// The exact bytes a proof's signature covers, for `subject`: canonical JSON of the payload of
/// the proof's version (version 2 signs `subject.uid`, not the proof's own `agentUid`).
pub fn signing_payload(subject: ProofSubject<'_>, proof: &ProofBundle) -> Result<Vec<u8>, Error> {
    match proof.version {
        1 => canonical_json(&PayloadV1 {
            v: 1,
            namespace: subject.namespace,
            name: subject.name,
            spec_hash: &proof.spec_hash,
            policy_hash: &proof.policy_hash,
            signed_at: &proof.signed_at,
            key_id: &proof.key_id,
            algorithm: proof.algorithm,
        }),
        2 => canonical_json(&PayloadV2 {
            v: 2,
            namespace: subject.namespace,
            name: subject.name,
            uid: subject.uid,
            spec_hash: &proof.spec_hash,
            policy_hash: &proof.policy_hash,
            signed_at: &proof.signed_at,
            key_id: &proof.key_id,
            algorithm: proof.algorithm,
            approvers: &proof.approvers,
            promotions: &proof.promotions,
            exceptions: &proof.exceptions,
        }),
        other => Err(Error::UnknownPayloadVersion(other)),
    }
}

/// `signedAt` in the one format proofs use: RFC 3339 in UTC, whole seconds.
pub fn format_signed_at(now: Timestamp) -> String {
    now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Sign a proof (payload version 2) with the ring's active key.
pub fn sign(
    ring: &KeyRing,
    subject: ProofSubject<'_>,
    claims: Claims<'_>,
    now: Timestamp,
) -> Result<ProofBundle, Error> {
    let (key_id, algorithm) = ring.active_key().ok_or(Error::NoSigningKey)?;
    let mut approvers = claims.approvers.to_vec();
    approvers.sort();
    approvers.dedup();
    let mut promotions = claims.promotions.to_vec();
    promotions.sort();
    promotions.dedup();
    let mut exceptions = claims.exceptions.to_vec();
    exceptions.sort();
    exceptions.dedup();
    let mut proof = ProofBundle {
        version: PAYLOAD_VERSION,
        spec_hash: claims.spec_hash.to_string(),
        policy_hash: claims.policy_hash.to_string(),
        signature: String::new(),
        algorithm,
        key_id: key_id.to_string(),
        signed_at: format_signed_at(now),
        agent_uid: subject.uid.to_string(),
        approvers,
        promotions,
        exceptions,
    };
    let payload = signing_payload(subject, &proof)?;
    let (_, _, signature) = ring.sign(&payload)?;
    proof.signature = signature;
    Ok(proof)
}

/// Verify a proof's signature for `subject` (hash comparisons are the admission checks' job).
/// A version 2 proof verifies only for the agent object it was signed for (its uid).
pub fn verify(
    ring: &KeyRing,
    subject: ProofSubject<'_>,
    proof: &ProofBundle,
) -> Result<(), VerifyFailure> {
    if proof.version >= 2 && proof.agent_uid != subject.uid {
        return Err(VerifyFailure::BadSignature);
    }
    let payload = signing_payload(subject, proof).map_err(|_| VerifyFailure::BadSignature)?;
    ring.verify(&proof.key_id, proof.algorithm, &payload, &proof.signature)
}
