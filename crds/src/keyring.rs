//! The key ring: key ids (the seed's "authority"), one active signing key, verification keys kept
//! for rotation, and a revoked list. Ed25519 is recommended (the webhook then holds only public
//! keys); HMAC-SHA256 is the seed's scheme. All cryptography is ring's.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use ring::{hmac, rand};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Error;

/// Signature algorithms.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Algorithm {
    Ed25519,
    HmacSha256,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "Ed25519",
            Algorithm::HmacSha256 => "HmacSha256",
        }
    }
}

/// The key ring document, as stored in a Secret under `keyring.json` (JSON or YAML).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyRingConfig {
    /// The key that signs new proofs. Absent in a verification-only ring (the webhook's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_key_id: Option<String>,
    pub keys: Vec<KeyConfig>,
    /// Key ids whose proofs no longer verify.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyConfig {
    pub id: String,
    pub algorithm: Algorithm,
    /// Ed25519: PKCS#8 private key, base64. Needed only where proofs are signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// Ed25519: the 32-byte public key, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// HMAC-SHA256: the shared secret, base64 (at least 32 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

enum Signer {
    Ed25519(Ed25519KeyPair),
    Hmac(hmac::Key),
}

enum Verifier {
    Ed25519(Vec<u8>),
    Hmac(hmac::Key),
}

/// Why a signature did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyFailure {
    /// The key id is on the revoked list.
    Revoked,
    /// The key id is not in the ring.
    UnknownKey,
    /// The key's algorithm differs from the one the proof names.
    AlgorithmMismatch,
    /// The signature does not verify (or is not valid base64).
    BadSignature,
}

/// A parsed, ready-to-use key ring.
pub struct KeyRing {
    active: Option<(String, Algorithm, Signer)>,
    verifiers: BTreeMap<String, (Algorithm, Verifier)>,
    revoked: BTreeSet<String>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("KeyRing")
            .field("active_key_id", &self.active_key_id())
            .field("key_ids", &self.verifiers.keys().collect::<Vec<_>>())
            .field("revoked", &self.revoked)
            .finish()
    }
}

fn decode(field: &str, id: &str, value: &str) -> Result<Vec<u8>, Error> {
    B64.decode(value.trim())
        .map_err(|e| Error::KeyRing(format!("key {id}: {field} is not valid base64: {e}")))
}

impl KeyRing {
    /// Parse a key ring document (JSON or YAML).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        let config: KeyRingConfig = serde_yaml::from_slice(bytes)
            .map_err(|e| Error::KeyRing(format!("cannot parse key ring: {e}")))?;
        Self::from_config(&config)
    }

    pub fn from_config(config: &KeyRingConfig) -> Result<Self, Error> {
        let mut verifiers = BTreeMap::new();
        let mut signers = BTreeMap::new();
        for key in &config.keys {
            let id = key.id.trim();
            if id.is_empty() {
                return Err(Error::KeyRing("a key has an empty id".into()));
            }
            if verifiers.contains_key(id) {
                return Err(Error::KeyRing(format!("key id {id} appears twice")));
            }
            let (verifier, signer) = match key.algorithm {
                Algorithm::Ed25519 => parse_ed25519(id, key)?,
                Algorithm::HmacSha256 => {
                    let secret = key.secret.as_deref().ok_or_else(|| {
                        Error::KeyRing(format!("key {id}: HmacSha256 needs a secret"))
                    })?;
                    let secret = decode("secret", id, secret)?;
                    if secret.len() < 32 {
                        return Err(Error::KeyRing(format!(
                            "key {id}: HMAC secret must be at least 32 bytes"
                        )));
                    }
                    let key = hmac::Key::new(hmac::HMAC_SHA256, &secret);
                    (Verifier::Hmac(key.clone()), Some(Signer::Hmac(key)))
                }
            };
            verifiers.insert(id.to_string(), (key.algorithm, verifier));
            if let Some(signer) = signer {
                signers.insert(id.to_string(), (key.algorithm, signer));
            }
        }
        let revoked: BTreeSet<String> = config
            .revoked
            .iter()
            .map(|r| r.trim().to_string())
            .collect();
        let active = match config.active_key_id.as_deref().map(str::trim) {
            None | Some("") => None,
            // Revocation wins over everything, also over the active key: such a ring verifies
            // (refusing that key's proofs) but signs nothing until a new key is made active.
            Some(id) if revoked.contains(id) => None,
            Some(id) => {
                let (alg, signer) = signers.remove(id).ok_or_else(|| {
                    Error::KeyRing(format!(
                        "active key {id} is not in the ring or has no private key"
                    ))
                })?;
                Some((id.to_string(), alg, signer))
            }
        };
        Ok(KeyRing {
            active,
            verifiers,
            revoked,
        })
    }

    /// The key id that signs new proofs.
    pub fn active_key_id(&self) -> Option<&str> {
        self.active_key().map(|(id, _)| id)
    }

    /// The active key's id and algorithm.
    pub fn active_key(&self) -> Option<(&str, Algorithm)> {
        self.active.as_ref().map(|(id, alg, _)| (id.as_str(), *alg))
    }

    /// The algorithm of a key in the ring (revoked or not); `None` for an unknown id.
    pub fn algorithm_of(&self, key_id: &str) -> Option<Algorithm> {
        self.verifiers.get(key_id).map(|(alg, _)| *alg)
    }

    pub fn is_revoked(&self, key_id: &str) -> bool {
        self.revoked.contains(key_id)
    }

    /// Sign a message with the active key: (key id, algorithm, base64 signature).
    pub fn sign(&self, message: &[u8]) -> Result<(String, Algorithm, String), Error> {
        let (id, alg, signer) = self.active.as_ref().ok_or(Error::NoSigningKey)?;
        let signature = match signer {
            Signer::Ed25519(pair) => B64.encode(pair.sign(message).as_ref()),
            Signer::Hmac(key) => B64.encode(hmac::sign(key, message).as_ref()),
        };
        Ok((id.clone(), *alg, signature))
    }

    /// Verify a base64 signature made by `key_id` with `algorithm`.
    pub fn verify(
        &self,
        key_id: &str,
        algorithm: Algorithm,
        message: &[u8],
        signature_b64: &str,
    ) -> Result<(), VerifyFailure> {
        if self.is_revoked(key_id) {
            return Err(VerifyFailure::Revoked);
        }
        let (alg, verifier) = self
            .verifiers
            .get(key_id)
            .ok_or(VerifyFailure::UnknownKey)?;
        if *alg != algorithm {
            return Err(VerifyFailure::AlgorithmMismatch);
        }
        let signature = B64
            .decode(signature_b64)
            .map_err(|_| VerifyFailure::BadSignature)?;
        let verified = match verifier {
            Verifier::Ed25519(public) => UnparsedPublicKey::new(&ED25519, public)
                .verify(message, &signature)
                .is_ok(),
            Verifier::Hmac(key) => hmac::verify(key, message, &signature).is_ok(),
        };
        if verified {
            Ok(())
        } else {
            Err(VerifyFailure::BadSignature)
        }
    }
}

fn parse_ed25519(id: &str, key: &KeyConfig) -> Result<(Verifier, Option<Signer>), Error> {
    let pair = match &key.private_key {
        Some(pkcs8) => Some(
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(&decode("privateKey", id, pkcs8)?)
                .map_err(|e| Error::KeyRing(format!("key {id}: bad Ed25519 PKCS#8: {e}")))?,
        ),
        None => None,
    };
    let public = match (&key.public_key, &pair) {
        (Some(public), pair) => {
            let public = decode("publicKey", id, public)?;
            if public.len() != 32 {
                return Err(Error::KeyRing(format!(
                    "key {id}: Ed25519 public key must be 32 bytes"
                )));
            }
            if let Some(pair) = pair
                && pair.public_key().as_ref() != public.as_slice()
            {
                return Err(Error::KeyRing(format!(
                    "key {id}: publicKey does not match privateKey"
                )));
            }
            public
        }
        (None, Some(pair)) => pair.public_key().as_ref().to_vec(),
        (None, None) => {
            return Err(Error::KeyRing(format!(
                "key {id}: Ed25519 needs a publicKey or a privateKey"
            )));
        }
    };
    Ok((Verifier::Ed25519(public), pair.map(Signer::Ed25519)))
}

/// A new Ed25519 key, with both halves filled in.
pub fn generate_ed25519(id: &str) -> Result<KeyConfig, Error> {
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|e| Error::KeyRing(format!("cannot generate Ed25519 key: {e}")))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|e| Error::KeyRing(format!("cannot read generated key: {e}")))?;
    Ok(KeyConfig {
        id: id.to_string(),
        algorithm: Algorithm::Ed25519,
        private_key: Some(B64.encode(pkcs8.as_ref())),
        public_key: Some(B64.encode(pair.public_key().as_ref())),
        secret: None,
    })
}

/// A new HMAC-SHA256 key with a 32-byte random secret.
pub fn generate_hmac(id: &str) -> Result<KeyConfig, Error> {
    let secret: [u8; 32] = rand::generate(&SystemRandom::new())
        .map_err(|e| Error::KeyRing(format!("cannot generate HMAC secret: {e}")))?
        .expose();
    Ok(KeyConfig {
        id: id.to_string(),
        algorithm: Algorithm::HmacSha256,
        private_key: None,
        public_key: None,
        secret: Some(B64.encode(secret)),
    })
}

impl KeyRingConfig {
    /// The same ring without Ed25519 private keys: what the webhook needs to verify.
    /// HMAC secrets stay, because HMAC verification needs the secret.
    pub fn verification_only(&self) -> Result<KeyRingConfig, Error> {
        // Refuse a ring that does not load (a public key not matching its private key, say),
        // rather than hand a verifier a ring that rejects every real proof.
        KeyRing::from_config(self)?;
        let keys = self
            .keys
            .iter()
            .map(|k| {
                let public_key = match (&k.public_key, &k.private_key, k.algorithm) {
                    (None, Some(pkcs8), Algorithm::Ed25519) => {
                        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&decode(
                            "privateKey",
                            &k.id,
                            pkcs8,
                        )?)
                        .map_err(|e| {
                            Error::KeyRing(format!("key {}: bad Ed25519 PKCS#8: {e}", k.id))
                        })?;
                        Some(B64.encode(pair.public_key().as_ref()))
                    }
                    (public, _, _) => public.clone(),
                };
                Ok(KeyConfig {
                    private_key: None,
                    public_key,
                    ..k.clone()
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(KeyRingConfig {
            active_key_id: None,
            keys,
            revoked: self.revoked.clone(),
        })
    }
}
