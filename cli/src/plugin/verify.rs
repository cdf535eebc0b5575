//! `verify`: a governed agent's proof checked offline with a key ring, by the webhook's own
//! checks (`agentgov_api::admission::check_agent`), minus the one that needs the cluster: the
//! policy in force is taken to be the one the proof names (its hash is reported, not compared).
//! `verify --export` checks a compliance export ([`verify_export`]): its digests, then each
//! agent's proof by the same checks.

use std::fmt;
use std::io::Read;
use std::path::Path;

use agentgov_api::Agent;
use agentgov_api::AgentStatus;
use agentgov_api::admission::{AdmissionCheck, AdmissionContext, AgentView, check_agent};
use agentgov_api::agent::AgentMode;
use agentgov_api::expiry::ExpiryPolicy;
use agentgov_api::keyring::{KeyRing, KeyRingConfig};
use agentgov_api::proof::{ProofBundle, ProofSubject};
use jiff::Timestamp;

use super::Error;
use super::export::{self, AgentRecord};

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

/// What `verify --export` found: the layout, the document digest, and each agent's record.
#[derive(Debug)]
pub struct ExportCheck {
    /// The document digest as recorded.
    pub digest: String,
    /// Why the document digest does not hold, if it does not.
    pub digest_failure: Option<String>,
    /// Where the file first departs from the export's layout (a byte changed outside the
    /// content the digests cover, such as whitespace).
    pub layout_failure: Option<String>,
    /// Where the key ring came from: `--keys`, or the export's own.
    pub key_ring: &'static str,
    pub records: Vec<RecordCheck>,
}

/// One agent's record: what verified, or every reason it failed.
#[derive(Debug)]
pub struct RecordCheck {
    pub agent: String,
    pub status: String,
    pub result: Result<String, Vec<String>>,
}

impl ExportCheck {
    /// `Ok` when everything verified, else the sentence `verify --export` exits 1 with,
    /// naming each failing agent.
    pub fn outcome(&self, file: &str) -> Result<(), Error> {
        let mut reasons: Vec<String> = self
            .records
            .iter()
            .filter_map(|r| match &r.result {
                Err(why) => Some(format!("agent {}: {}", r.agent, why.join("; "))),
                Ok(_) => None,
            })
            .collect();
        if let Some(digest) = &self.digest_failure {
            let whose = if reasons.is_empty() {
                " (outside every agent's record: the header, the key ring or the policies)"
            } else {
                ""
            };
            reasons.push(format!("{digest}{whose}"));
        }
        if let Some(layout) = &self.layout_failure {
            reasons.push(layout.clone());
        }
        if reasons.is_empty() {
            return Ok(());
        }
        Err(Error::Unverified(format!(
            "the export {file} does not verify: {}",
            reasons.join("; ")
        )))
    }
}

impl fmt::Display for ExportCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digest = match &self.digest_failure {
            None => format!("ok, {}", self.digest),
            Some(why) => format!("FAILED: {why}"),
        };
        writeln!(f, "export digest: {digest}")?;
        if let Some(layout) = &self.layout_failure {
            writeln!(f, "export layout: FAILED: {layout}")?;
        }
        writeln!(f, "key ring: {}", self.key_ring)?;
        let rows: Vec<Vec<String>> = self
            .records
            .iter()
            .map(|r| {
                let (result, detail) = match &r.result {
                    Ok(detail) => ("ok", detail.clone()),
                    Err(why) => ("FAILED", why.join("; ")),
                };
                vec![result.into(), r.agent.clone(), r.status.clone(), detail]
            })
            .collect();
        f.write_str(&super::table::render(
            &["RESULT", "AGENT", "STATUS", "DETAIL"],
            &rows,
        ))
    }
}

/// Check an export's text offline: its layout, its document digest, each record's digest, and
/// each record's proof with `keys` (else the ring the export carries), by the checks `verify`
/// runs for an agent in force; a record out of force (invalidated) keeps its last proof as a
/// record of the approval, whose signature is checked. `Err` when the text is no export.
pub fn verify_export(
    text: &str,
    keys: Option<&KeyRing>,
    now: Timestamp,
) -> Result<ExportCheck, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if value.get("kind").and_then(|k| k.as_str()) != Some(export::KIND) {
        return Err(format!("its kind is not {}", export::KIND));
    }
    let layout_failure = match export::layout(&value) {
        Ok(canonical) if canonical == text => None,
        Ok(canonical) => Some(departure(text, &canonical)),
        Err(e) => Some(e.to_string()),
    };
    let recorded = value
        .get("digest")
        .and_then(|d| d.as_str())
        .unwrap_or_default();
    let digest_failure = match export::digest(&value) {
        Ok(actual) if actual == recorded => None,
        Ok(actual) => Some(format!(
            "the export's digest {} does not match its content ({actual})",
            short_digest(recorded)
        )),
        Err(e) => Some(e.to_string()),
    };
    // The export's own ring, unless --keys pins one; a ring that does not parse is no export.
    let embedded = value
        .get("keyRing")
        .cloned()
        .map(serde_json::from_value::<KeyRingConfig>)
        .transpose()
        .map_err(|e| format!("its key ring does not parse: {e}"))?;
    let own: KeyRing;
    let (ring, key_ring) = match keys {
        Some(keys) => (keys, "from --keys"),
        None => {
            let config = embedded.ok_or("it carries no key ring (give --keys)")?;
            own = KeyRing::from_config(&config)
                .map_err(|e| format!("its key ring does not load: {e}"))?;
            (&own, "the export's own (give --keys to pin a trusted one)")
        }
    };
    let records = value
        .get("agents")
        .and_then(|a| a.as_array())
        .ok_or("it has no agents list")?
        .iter()
        .enumerate()
        .map(|(i, raw)| check_record(i, raw, ring, now))
        .collect();
    Ok(ExportCheck {
        digest: recorded.to_string(),
        digest_failure,
        layout_failure,
        key_ring,
        records,
    })
}

/// One record: its digest, its spec hash, and its proof.
fn check_record(
    index: usize,
    raw: &serde_json::Value,
    ring: &KeyRing,
    now: Timestamp,
) -> RecordCheck {
    let field = |name: &str| raw.get(name).and_then(|v| v.as_str()).unwrap_or_default();
    let mut failures = Vec::new();
    match export::digest(raw) {
        Ok(actual) if actual == field("digest") => {}
        Ok(_) => failures.push("its record's digest does not match its content".to_string()),
        Err(e) => failures.push(e.to_string()),
    }
    let record: AgentRecord = match serde_json::from_value(raw.clone()) {
        Ok(record) => record,
        Err(e) => {
            failures.push(format!("its record does not parse: {e}"));
            let agent = format!("{}/{}", field("namespace"), field("name"));
            let agent = if agent == "/" {
                format!("#{index}")
            } else {
                agent
            };
            return RecordCheck {
                agent,
                status: field("status").to_string(),
                result: Err(failures),
            };
        }
    };
    let status = record
        .status
        .map_or("no status", |g| g.as_str())
        .to_string();
    let result = match check_proof(&record, ring, now) {
        Ok(detail) if failures.is_empty() => Ok(detail),
        Ok(_) => Err(failures),
        Err(why) => {
            failures.push(why);
            Err(failures)
        }
    };
    RecordCheck {
        agent: record.id(),
        status,
        result,
    }
}

/// The record's spec hash, then its proof: the full check for an agent in force, the signature
/// for one out of force.
fn check_proof(record: &AgentRecord, ring: &KeyRing, now: Timestamp) -> Result<String, String> {
    let actual = agentgov_api::hash::spec_hash(&record.spec).map_err(|e| e.to_string())?;
    if actual != record.spec_hash {
        return Err(format!(
            "its spec hashes to {}, not the recorded {}",
            short_digest(&actual),
            short_digest(&record.spec_hash)
        ));
    }
    let in_force = record.status.is_some_and(|g| g.is_governed_in_force());
    let Some(proof) = record.proof.as_ref() else {
        return if in_force {
            Err("it is in force but carries no proof".into())
        } else {
            Ok(match record.mode {
                AgentMode::Sandbox => "no proof (a sandbox carries none)".into(),
                AgentMode::Governed => "no proof (not promoted)".into(),
            })
        };
    };
    let signed = format!(
        "key {} ({}), signed {}, approvers {}",
        proof.key_id,
        proof.algorithm.as_str(),
        proof.signed_at,
        proof
            .approvers
            .iter()
            .map(|a| a.username.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if in_force {
        let mut agent = Agent::new(&record.name, record.spec.clone());
        agent.metadata.namespace = Some(record.namespace.clone());
        agent.metadata.uid = Some(record.uid.clone());
        agent.status = Some(AgentStatus {
            governance_status: record.status,
            proof: Some(proof.clone()),
            ..AgentStatus::default()
        });
        verify(&agent, &record.namespace, ring, now).map_err(|e| e.to_string())?;
        return Ok(format!("proof verified: {signed}"));
    }
    let subject = ProofSubject {
        namespace: &record.namespace,
        name: &record.name,
        uid: &record.uid,
    };
    agentgov_api::proof::verify(ring, subject, proof).map_err(|failure| {
        format!(
            "the signature check failed: its last proof (key {}) does not verify ({failure:?})",
            proof.key_id
        )
    })?;
    let why = if record.denies.is_empty() {
        String::new()
    } else {
        format!(": {}", record.denies.join("; "))
    };
    Ok(format!(
        "last proof authentic ({signed}), not in force{why}"
    ))
}

/// Where `text` first departs from `canonical`, as a line and column.
fn departure(text: &str, canonical: &str) -> String {
    let at = text
        .bytes()
        .zip(canonical.bytes())
        .position(|(a, b)| a != b)
        .unwrap_or(text.len().min(canonical.len()));
    let before = &text.as_bytes()[..at];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let column = at
        - before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |p| p + 1)
        + 1;
    format!(
        "the file departs from the export's layout at line {line}, column {column} (a byte changed outside the content, such as whitespace)"
    )
}

fn short_digest(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
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

/// The bytes of `path`, or of stdin for `-`.
pub fn read(path: &Path) -> Result<Vec<u8>, Error> {
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
