//! Canonical JSON (RFC 8785, JCS) and SHA-256: the same spec gives the same hash on any machine,
//! whatever the field order or whitespace of the manifest it came from.

use ring::digest;
use serde::Serialize;

use crate::Error;
use crate::agent::AgentSpec;
use crate::policy_bundle::PolicyBundleSpec;

/// The RFC 8785 canonical form of a value.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json_canonicalizer::to_vec(value).map_err(|e| Error::Canonicalize(e.to_string()))
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, bytes))
}

/// SHA-256 over the canonical JSON of an Agent's spec.
pub fn spec_hash(spec: &AgentSpec) -> Result<String, Error> {
    Ok(sha256_hex(&canonical_json(spec)?))
}

/// What a policy hash covers: modules, data, entrypoint and, when not the default `enforce`, the
/// enforcement action (left out when `enforce`, so every bundle written before the field hashes as
/// it did). The version label is for people and is left out, so relabelling a bundle does not
/// invalidate every proof.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicyHashInput<'a> {
    modules: &'a [crate::policy_bundle::RegoModule],
    data: &'a crate::policy_bundle::PolicyData,
    entrypoint: &'a str,
    #[serde(skip_serializing_if = "crate::policy_bundle::EnforcementAction::is_enforce")]
    enforcement_action: crate::policy_bundle::EnforcementAction,
}

/// SHA-256 over the canonical JSON of a bundle's modules, data and entrypoint.
pub fn policy_hash(spec: &PolicyBundleSpec) -> Result<String, Error> {
    let input = PolicyHashInput {
        modules: &spec.modules,
        data: &spec.data,
        entrypoint: &spec.entrypoint,
        enforcement_action: spec.enforcement_action,
    };
    Ok(sha256_hex(&canonical_json(&input)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_answer() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let value: serde_json::Value =
            serde_json::from_str(r#"{ "b": 1.50, "a": [true, null], "c": {"z": 1e2, "y": "x"} }"#)
                .unwrap();
        assert_eq!(
            String::from_utf8(canonical_json(&value).unwrap()).unwrap(),
            r#"{"a":[true,null],"b":1.5,"c":{"y":"x","z":100}}"#
        );
    }
}
