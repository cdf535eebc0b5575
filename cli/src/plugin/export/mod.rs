//! `export`: the compliance export, as plain functions over agents, bundles and a key ring.
//!
//! The JSON document is the verifiable one. It carries the public key ring, one record per agent
//! (its status, spec and spec hash, approvals, proof, the policy in force and the last
//! evaluation's denies and warnings, and the controls it evidences), the namespaces' policy
//! history, and digests: each agent record has its own `digest` (SHA-256 over the canonical JSON,
//! RFC 8785, of the record without it), and the document's `digest` covers the canonical JSON of
//! everything else, records' digests included. The file is written in one layout (keys sorted,
//! two-space indent), so a change to a single byte, whitespace included, shows. CSV and HTML
//! are renderings for people ([`render`]); they carry the document digest but are not verified.

pub mod controls;
pub mod render;

use std::collections::BTreeMap;

use agentgov_api::agent::{AgentMode, ApprovalStatus, GovernanceStatus, PolicyRef, RoleClass};
use agentgov_api::hash::{canonical_json, sha256_hex, spec_hash};
use agentgov_api::keyring::{Algorithm, KeyRingConfig};
use agentgov_api::policy_bundle::PolicyVersion;
use agentgov_api::proof::{ProofBundle, format_signed_at};
use agentgov_api::{Agent, AgentSpec, PolicyBundle};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::controls::{Control, Evidence, Mapping};
use super::Error;
use super::drift::{InForce, bundle_of, policies_in_force};

pub const API_VERSION: &str = "agentgov.dev/v1alpha1";
pub const KIND: &str = "ComplianceExport";

/// The export document.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Export {
    pub api_version: String,
    pub kind: String,
    /// When the export was made (RFC 3339).
    pub generated_at: String,
    /// The namespace exported, or `*` for every namespace.
    pub scope: String,
    /// Only what changed at or after this time (RFC 3339), where `--since` was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The public key ring the proofs verify with (no private keys, no HMAC secrets).
    pub key_ring: KeyRingConfig,
    /// The frameworks of the mapping (docs/compliance/controls.yaml), by id.
    pub frameworks: BTreeMap<String, String>,
    /// What each fact a record names means.
    pub facts: BTreeMap<String, String>,
    /// The controls the records name: framework and title.
    pub controls: BTreeMap<String, Control>,
    /// Each bundle's policy in force and its history.
    pub policies: Vec<PolicyRecord>,
    pub agents: Vec<AgentRecord>,
    /// `sha256:<hex>` over the canonical JSON of the document without this field.
    #[serde(default)]
    pub digest: String,
}

/// A PolicyBundle: the version in force and the versions before it, newest first.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRecord {
    pub namespace: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_hash: Option<String>,
    #[serde(default)]
    pub history: Vec<PolicyVersion>,
}

/// One agent's record.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentRecord {
    pub namespace: String,
    pub name: String,
    /// The Agent object's uid (a proof is signed for it).
    #[serde(default)]
    pub uid: String,
    pub mode: AgentMode,
    pub role_class: RoleClass,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<GovernanceStatus>,
    /// SHA-256 of the canonical JSON of `spec`, as exported.
    pub spec_hash: String,
    pub spec: AgentSpec,
    /// The approvals of the current spec: required and who approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<ProofBundle>,
    /// The policy in force in the agent's namespace (the bundle it was judged against).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_in_force: Option<PolicyRef>,
    /// The policy of the agent's last evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluated_policy: Option<PolicyRef>,
    #[serde(default)]
    pub denies: Vec<String>,
    #[serde(default)]
    pub warnings: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The facts that hold for the agent and the controls each evidences.
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    /// `sha256:<hex>` over the canonical JSON of the record without this field.
    #[serde(default)]
    pub digest: String,
}

impl AgentRecord {
    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// What an export is made of.
pub struct Input<'a> {
    pub agents: &'a [Agent],
    pub bundles: &'a [PolicyBundle],
    /// The cluster floor, if any (a namespace's policy in force is both).
    pub floor: Option<&'a agentgov_api::ClusterPolicyBundle>,
    /// The key ring as read (`--keys`); only its public part is embedded.
    pub keys: &'a KeyRingConfig,
    /// The namespace, or `None` for every namespace.
    pub namespace: Option<&'a str>,
    pub since: Option<Timestamp>,
    pub now: Timestamp,
}

/// The export, sealed ([`seal`]), and the key ids left out of the embedded ring (HMAC keys,
/// whose secret must not be published).
pub fn build(input: &Input<'_>, mapping: &Mapping) -> Result<(Export, Vec<String>), Error> {
    let (key_ring, left_out) = public_ring(input.keys)?;
    let since = input.since;
    let mut agents: Vec<&Agent> = input
        .agents
        .iter()
        .filter(|a| since.is_none_or(|since| last_change(a).is_some_and(|t| t >= since)))
        .collect();
    agents.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    let in_force = policies_in_force(input.bundles, input.floor);
    let records = agents
        .into_iter()
        .map(|a| record(a, &in_force, mapping))
        .collect::<Result<Vec<_>, _>>()?;
    let mut policies: Vec<PolicyRecord> = input
        .bundles
        .iter()
        .map(|b| policy_record(b, since))
        .collect();
    policies.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let export = Export {
        api_version: API_VERSION.into(),
        kind: KIND.into(),
        generated_at: format_signed_at(input.now),
        scope: input.namespace.unwrap_or("*").to_string(),
        since: since.map(format_signed_at),
        key_ring,
        frameworks: mapping.frameworks.clone(),
        facts: mapping
            .facts
            .iter()
            .map(|(fact, f)| (fact.clone(), f.holds.clone()))
            .collect(),
        controls: mapping.catalog(records.iter().flat_map(|r| &r.evidence)),
        policies,
        agents: records,
        digest: String::new(),
    };
    Ok((seal(export)?, left_out))
}

/// The export with its records' digests and its own filled in.
fn seal(mut export: Export) -> Result<Export, Error> {
    for record in &mut export.agents {
        record.digest = digest(&to_value(record)?)?;
    }
    export.digest = digest(&to_value(&export)?)?;
    Ok(export)
}

/// The export as written: JSON with sorted keys, two-space indent, a final newline.
pub fn to_json(export: &Export) -> Result<String, Error> {
    layout(&to_value(export)?)
}

/// A JSON value in the export's one layout.
pub fn layout(value: &Value) -> Result<String, Error> {
    serde_json::to_string_pretty(value)
        .map(|text| text + "\n")
        .map_err(|e| Error::Encode(e.to_string()))
}

/// `sha256:<hex>` over the canonical JSON of `value` without its `digest` field.
pub fn digest(value: &Value) -> Result<String, Error> {
    let mut value = value.clone();
    if let Some(fields) = value.as_object_mut() {
        fields.remove("digest");
    }
    let bytes = canonical_json(&value).map_err(|e| Error::Encode(e.to_string()))?;
    Ok(format!("sha256:{}", sha256_hex(&bytes)))
}

fn to_value<T: Serialize>(value: &T) -> Result<Value, Error> {
    serde_json::to_value(value).map_err(|e| Error::Encode(e.to_string()))
}

/// The ring without private keys and without HMAC keys (their secret verifies and signs
/// alike), and the ids of the HMAC keys left out.
pub fn public_ring(config: &KeyRingConfig) -> Result<(KeyRingConfig, Vec<String>), Error> {
    let mut public = config
        .verification_only()
        .map_err(|e| Error::Usage(format!("the key ring does not load: {e}")))?;
    let left_out = public
        .keys
        .iter()
        .filter(|k| k.algorithm == Algorithm::HmacSha256)
        .map(|k| k.id.clone())
        .collect();
    public.keys.retain(|k| k.algorithm != Algorithm::HmacSha256);
    Ok((public, left_out))
}

/// `--since`: a time (RFC 3339) or a duration back from now (like 24h or 7d).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    At(Timestamp),
    Ago(jiff::SignedDuration),
}

impl Since {
    pub fn parse(text: &str) -> Result<Since, String> {
        if let Ok(at) = text.trim().parse::<Timestamp>() {
            return Ok(Since::At(at));
        }
        super::filter::parse_within(text)
            .map(Since::Ago)
            .map_err(|_| format!("{text:?} is neither a time (RFC 3339) nor a duration (like 24h)"))
    }

    /// The time it names, seen at `now`.
    pub fn at(self, now: Timestamp) -> Timestamp {
        match self {
            Since::At(at) => at,
            Since::Ago(ago) => now.saturating_sub(ago).unwrap_or(now),
        }
    }
}

/// The latest time the agent is known to have changed: created, signed, or a condition moved.
pub fn last_change(agent: &Agent) -> Option<Timestamp> {
    let created = agent.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let status = agent.status.as_ref();
    let signed = status
        .and_then(|s| s.proof.as_ref())
        .and_then(|p| p.signed_at.parse::<Timestamp>().ok());
    let conditions = status
        .into_iter()
        .flat_map(|s| &s.conditions)
        .map(|c| c.last_transition_time.0);
    created.into_iter().chain(signed).chain(conditions).max()
}

fn record(
    agent: &Agent,
    policies: &BTreeMap<(String, String), InForce>,
    mapping: &Mapping,
) -> Result<AgentRecord, Error> {
    let namespace = agent.metadata.namespace.clone().unwrap_or_default();
    let name = agent.metadata.name.clone().unwrap_or_default();
    let status = agent.status.clone().unwrap_or_default();
    // A sandbox's expiry by the operator's clock where it recorded one, else by the spec.
    let expires_at = status
        .expires_at
        .as_ref()
        .map(|t| t.0)
        .or_else(|| super::filter::expires_at(agent))
        .filter(|_| agent.spec.mode == AgentMode::Sandbox)
        .map(format_signed_at);
    let hash = spec_hash(&agent.spec).map_err(|e| Error::Hash {
        agent: format!("{namespace}/{name}"),
        message: e.to_string(),
    })?;
    let bundle = bundle_of(agent);
    let policy_in_force =
        super::drift::in_force_for(policies, &namespace, bundle).map(|active| PolicyRef {
            name: bundle.to_string(),
            version: active.version.clone(),
            hash: active.hash.clone(),
        });
    Ok(AgentRecord {
        uid: agent.metadata.uid.clone().unwrap_or_default(),
        mode: agent.spec.mode,
        role_class: agent.spec.role_class,
        status: status.governance_status,
        spec_hash: hash,
        spec: agent.spec.clone(),
        approval: status.approval,
        proof: status.proof,
        policy_in_force,
        evaluated_policy: status.policy,
        denies: status.denies,
        warnings: status.warnings,
        expires_at,
        evidence: mapping.evidence(agent),
        digest: String::new(),
        namespace,
        name,
    })
}

fn policy_record(bundle: &PolicyBundle, since: Option<Timestamp>) -> PolicyRecord {
    let status = bundle.status.clone().unwrap_or_default();
    PolicyRecord {
        namespace: bundle.metadata.namespace.clone().unwrap_or_default(),
        name: bundle.metadata.name.clone().unwrap_or_default(),
        active_version: status.active_version,
        active_hash: status.active_hash,
        history: status
            .history
            .into_iter()
            .filter(|v| since.is_none_or(|since| v.time.0 >= since))
            .collect(),
    }
}

#[cfg(test)]
#[path = "export_tests.rs"]
mod tests;
