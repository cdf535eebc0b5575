//! `verify`: a governed agent's proof checked offline with a key ring, by the webhook's own
//! checks (`agentgov_api::admission::check_agent`), minus the one that needs the cluster: the
//! policy in force is taken to be the one the proof names (its hash is reported, not compared).

use std::fmt;
use std::io::Read;
use std::path::Path;

use agentgov_api::Agent;
use agentgov_api::admission::{AdmissionCheck, AdmissionContext, AgentView, check_agent};
use agentgov_api::agent::AgentMode;
use agentgov_api::expiry::ExpiryPolicy;
use agentgov_api::keyring::KeyRing;
use agentgov_api::proof::ProofBundle;
use jiff::Timestamp;

use super::Error;

/// A proof that verified, for printing.
#[derive(Debug)]
pub struct Verified {
    pub agent: String,
    pub status: String,
    pub proof: ProofBundle,
}

impl fmt::Display for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proof = &self.proof;
        let approvers: Vec<&str> = proof
            .approvers
            .iter()
            .map(|a| a.username.as_str())
            .collect();
        let line = |f: &mut fmt::Formatter<'_>, label: &str, value: &str| {
            writeln!(f, "  {label:<20}{value}")
        };
        writeln!(f, "verified: agent {} ({})", self.agent, self.status)?;
        line(
            f,
            "proof exists",
            &format!("ok (payload version {})", proof.version),
        )?;
        line(
            f,
            "spec hash",
            &format!("ok, the spec hashes to {}", proof.spec_hash),
        )?;
        line(
            f,
            "policy hash",
            &format!(
                "{} (the policy in force is not compared offline)",
                proof.policy_hash
            ),
        )?;
        line(
            f,
            "signer not revoked",
            &format!("ok, key {}", proof.key_id),
        )?;
        line(
            f,
            "signature",
            &format!(
                "ok, {} for uid {}",
                proof.algorithm.as_str(),
                proof.agent_uid
            ),
        )?;
        line(f, "signed at", &proof.signed_at)?;
        line(f, "approvers", &approvers.join(", "))
    }
}

/// Verify `agent`'s proof with `keys` at `now`. `namespace` stands in for a manifest that
/// names none.
pub fn verify(
    agent: &Agent,
    namespace: &str,
    keys: &KeyRing,
    now: Timestamp,
) -> Result<Verified, Error> {
    let namespace = agent.metadata.namespace.as_deref().unwrap_or(namespace);
    let name = agent.metadata.name.as_deref().unwrap_or_default();
    let id = format!("{namespace}/{name}");
    if agent.spec.mode == AgentMode::Sandbox {
        return Err(Error::Unverified(format!(
            "agent {id} is a sandbox, and sandboxes carry no proof to verify"
        )));
    }
    let status = agent.status.as_ref();
    let proof = status.and_then(|s| s.proof.as_ref());
    let view = AgentView::of(agent, namespace, now);
    let expiry = ExpiryPolicy::default();
    let context = AdmissionContext {
        active_policy_hash: proof.map(|p| p.policy_hash.as_str()),
        recheck: None,
        keys,
        now,
        expiry: &expiry,
    };
    check_agent(&view, &context).map_err(|denial| {
        let part = denial.check.map_or("the proof", part);
        Error::Unverified(format!("{part} failed: {}", denial.reason))
    })?;
    let governance = status.and_then(|s| s.governance_status);
    match proof {
        Some(proof) => Ok(Verified {
            agent: id,
            status: governance.map_or("no status", |g| g.as_str()).to_string(),
            proof: proof.clone(),
        }),
        // check_agent refuses a governed agent without a proof; this is only for the compiler.
        None => Err(Error::Unverified(format!("agent {id} has no proof"))),
    }
}

/// The part of the proof a check is about, as the failure sentence names it.
fn part(check: AdmissionCheck) -> &'static str {
    match check {
        AdmissionCheck::ProofExists => "the proof check",
        AdmissionCheck::SpecHashMatch => "the spec hash check",
        AdmissionCheck::PolicyHashMatch => "the policy hash check",
        AdmissionCheck::SignerNotRevoked => "the signer check (key not revoked)",
        AdmissionCheck::SignatureValid => "the signature check",
        AdmissionCheck::SandboxNotExpired => "the sandbox expiry check",
        AdmissionCheck::SandboxContainment => "the sandbox containment check",
    }
}

/// Read an Agent manifest (YAML or JSON) from `path`, or from stdin for `-`.
pub fn read_agent(path: &Path) -> Result<Agent, Error> {
    let bytes = read(path)?;
    parse_agent(&bytes).map_err(|message| Error::NotAnAgent {
        path: path.to_path_buf(),
        message,
    })
}

/// An Agent from YAML or JSON (JSON is YAML).
pub fn parse_agent(bytes: &[u8]) -> Result<Agent, String> {
    let agent: Agent = serde_yaml::from_slice(bytes).map_err(|e| e.to_string())?;
    if agent.metadata.name.as_deref().is_none_or(str::is_empty) {
        return Err("it has no metadata.name".into());
    }
    Ok(agent)
}

/// Read the key ring at `path`, as the operator and webhook parse it.
pub fn read_key_ring(path: &Path) -> Result<KeyRing, Error> {
    let bytes = read(path)?;
    KeyRing::from_slice(&bytes).map_err(|e| Error::KeyRing {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    let result = if path == Path::new("-") {
        std::io::stdin().lock().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::read(path).map(|read| bytes = read)
    };
    result.map(|()| bytes).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
