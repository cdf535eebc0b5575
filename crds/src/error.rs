//! The API crate's one error type.

/// Errors of the proof contract, the key ring and the policy engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot make canonical JSON: {0}")]
    Canonicalize(String),
    #[error("key ring: {0}")]
    KeyRing(String),
    #[error("no active signing key in the key ring")]
    NoSigningKey,
    #[error("policy does not compile: {0}")]
    PolicyCompile(String),
    #[error("policy evaluation failed: {0}")]
    PolicyEval(String),
    #[error("policy returned an unexpected result: {0}")]
    PolicyResult(String),
    #[error("unknown proof payload version {0}")]
    UnknownPayloadVersion(u32),
    #[error("admission guards: {0}")]
    Guards(String),
}

impl Error {
    /// A short, bounded category for metric labels and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Canonicalize(_) => "canonicalize",
            Error::KeyRing(_) => "keyring",
            Error::NoSigningKey => "no_signing_key",
            Error::PolicyCompile(_) => "policy_compile",
            Error::PolicyEval(_) => "policy_eval",
            Error::PolicyResult(_) => "policy_result",
            Error::UnknownPayloadVersion(_) => "payload_version",
            Error::Guards(_) => "guards",
        }
    }
}
