//! Shared fixtures of the integration tests: the repository layout, the example agents, the
//! committed key rings and policy bundle, and an admission scenario to tamper with.
// Each test crate includes this module and uses a different part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use agentgov_api::admission::{AdmissionCheck, AdmissionContext, AgentView, Denial, check_agent};
use agentgov_api::expiry::ExpiryPolicy;
use agentgov_api::hash::{policy_hash, spec_hash};
use agentgov_api::keyring::{KeyConfig, KeyRing, KeyRingConfig};
use agentgov_api::proof::{ProofBundle, ProofSubject, sign};
use agentgov_api::{Agent, AgentSpec, AgentStatus, GovernanceStatus, PolicyBundleSpec};
use jiff::{SignedDuration, Timestamp};

/// The namespace every scenario lives in (the examples name none).
pub const NAMESPACE: &str = "finance";
/// 2026-01-03T00:00:00Z, the seed's date: the fixed clock of the known-answer vectors.
pub const T0: i64 = 1_767_398_400;
/// The committed fixture files, under `crds/tests/fixtures/`.
pub const ED25519_RING: &str = "keyring-ed25519.json";
pub const HMAC_RING: &str = "keyring-hmac.json";
pub const KAT_POLICY: &str = "policybundle-kat.yaml";
pub const ED25519_KEY_ID: &str = "kat-ed25519";
pub const HMAC_KEY_ID: &str = "kat-hmac";

pub fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// A file's text, by path from the repository root.
pub fn read(path: &str) -> String {
    let full = repo_root().join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("cannot read {}: {e}", full.display()))
}

pub fn fixture(name: &str) -> String {
    read(&format!("crds/tests/fixtures/{name}"))
}

pub fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).expect("a valid timestamp")
}

pub fn load_agent(path: &str) -> Agent {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not an Agent: {e}"))
}

pub fn governed_agent() -> Agent {
    load_agent("examples/agent-governed.yaml")
}

pub fn sandbox_agent() -> Agent {
    load_agent("examples/agent-sandbox.yaml")
}

pub fn ring_config(name: &str) -> KeyRingConfig {
    serde_json::from_str(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The one key of a committed ring.
pub fn fixture_key(name: &str) -> KeyConfig {
    ring_config(name).keys.remove(0)
}

pub fn load_ring(config: &KeyRingConfig) -> KeyRing {
    KeyRing::from_config(config).unwrap_or_else(|e| panic!("{config:?} does not load: {e}"))
}

pub fn ed25519_ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| load_ring(&ring_config(ED25519_RING)))
}

pub fn hmac_ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| load_ring(&ring_config(HMAC_RING)))
}

/// The id of the other committed key.
pub fn other_key(id: &str) -> &'static str {
    if id == ED25519_KEY_ID {
        HMAC_KEY_ID
    } else {
        ED25519_KEY_ID
    }
}

/// Both committed signing rings, named for failure messages.
pub fn signing_rings() -> [(&'static str, &'static KeyRing); 2] {
    [("Ed25519", ed25519_ring()), ("HMAC", hmac_ring())]
}

/// A verification ring holding both committed keys, optionally with some ids revoked.
pub fn both_keys(revoked: &[&str]) -> KeyRing {
    load_ring(&KeyRingConfig {
        active_key_id: None,
        keys: vec![fixture_key(ED25519_RING), fixture_key(HMAC_RING)],
        revoked: revoked.iter().map(|r| r.to_string()).collect(),
    })
}

/// The small, fixed policy bundle the known-answer vectors are signed against.
pub fn kat_policy() -> PolicyBundleSpec {
    serde_yaml::from_str(&fixture(KAT_POLICY)).expect("the KAT policy bundle parses")
}

pub fn kat_policy_hash() -> String {
    policy_hash(&kat_policy()).expect("the KAT policy hashes")
}

/// Everything `check_agent` looks at, owned, so a test can change any part of it.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub namespace: String,
    pub name: String,
    pub spec: AgentSpec,
    pub status: Option<AgentStatus>,
    pub created: Timestamp,
    pub active_policy_hash: Option<String>,
    pub now: Timestamp,
    pub expiry: ExpiryPolicy,
}

impl Scenario {
    pub fn check(&self, keys: &KeyRing) -> Result<(), Denial> {
        let view = AgentView {
            namespace: &self.namespace,
            name: &self.name,
            spec: &self.spec,
            status: self.status.as_ref(),
            created: self.created,
        };
        let ctx = AdmissionContext {
            active_policy_hash: self.active_policy_hash.as_deref(),
            recheck: None,
            keys,
            now: self.now,
            expiry: &self.expiry,
        };
        check_agent(&view, &ctx)
    }

    pub fn proof(&self) -> &ProofBundle {
        self.status
            .as_ref()
            .and_then(|s| s.proof.as_ref())
            .expect("the scenario has a proof")
    }

    pub fn proof_mut(&mut self) -> &mut ProofBundle {
        self.status
            .as_mut()
            .and_then(|s| s.proof.as_mut())
            .expect("the scenario has a proof")
    }

    pub fn subject(&self) -> ProofSubject<'_> {
        ProofSubject {
            namespace: &self.namespace,
            name: &self.name,
        }
    }

    /// Sign the current spec with `ring`'s active key against the active policy, as the
    /// operator does on promotion, and mark the agent GOVERNED_VALID.
    pub fn sign_with(&mut self, ring: &KeyRing) {
        let spec_hash = spec_hash(&self.spec).expect("the spec hashes");
        let policy = self
            .active_policy_hash
            .clone()
            .expect("a policy is in force");
        let proof = sign(ring, self.subject(), &spec_hash, &policy, at(T0)).expect("signing works");
        self.status = Some(AgentStatus {
            governance_status: Some(GovernanceStatus::GovernedValid),
            proof: Some(proof),
            ..AgentStatus::default()
        });
    }
}

/// examples/agent-governed.yaml in `finance`, signed at T0 by `ring` against the KAT policy,
/// checked an hour later: admitted.
pub fn governed(ring: &KeyRing) -> Scenario {
    let agent = governed_agent();
    let mut scenario = Scenario {
        namespace: NAMESPACE.into(),
        name: agent.metadata.name.clone().expect("the example has a name"),
        spec: agent.spec,
        status: None,
        created: at(T0 - 60),
        active_policy_hash: Some(kat_policy_hash()),
        now: at(T0 + 3_600),
        expiry: ExpiryPolicy::default(),
    };
    scenario.sign_with(ring);
    scenario
}

/// examples/agent-sandbox.yaml (ttlSeconds 86400) in `finance`, created at T0, checked at T0.
pub fn sandbox() -> Scenario {
    let agent = sandbox_agent();
    Scenario {
        namespace: NAMESPACE.into(),
        name: agent.metadata.name.clone().expect("the example has a name"),
        spec: agent.spec,
        status: None,
        created: at(T0),
        active_policy_hash: None,
        now: at(T0),
        expiry: ExpiryPolicy::default(),
    }
}

pub fn after(scenario: &Scenario, duration: SignedDuration) -> Timestamp {
    scenario.created.checked_add(duration).expect("in range")
}

/// Assert that `result` is a denial by exactly `check`, with the check's decision code.
pub fn assert_denied(result: Result<(), Denial>, check: AdmissionCheck, what: &str) -> Denial {
    let denial = match result {
        Ok(()) => panic!("{what}: admitted, expected {check:?}"),
        Err(d) => d,
    };
    assert_eq!(
        denial.check,
        Some(check),
        "{what}: wrong check ({})",
        denial.reason
    );
    assert_eq!(
        denial.code,
        check.deny_code(),
        "{what}: wrong code ({})",
        denial.reason
    );
    assert!(!denial.reason.is_empty(), "{what}: a denial needs a reason");
    denial
}

pub fn assert_admitted(result: Result<(), Denial>, what: &str) {
    if let Err(d) = result {
        panic!(
            "{what}: denied {} ({:?}): {}",
            d.code.as_str(),
            d.check,
            d.reason
        );
    }
}
