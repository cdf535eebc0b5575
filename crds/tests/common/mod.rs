//! Shared fixtures of the integration tests: the repository layout, the example agents, the
//! committed key rings and policy bundle, and an admission scenario to tamper with (a governed
//! agent signed with payload version 2: its uid, an approver and an AgentPromotion).
// Each test crate includes this module and uses a different part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use agentgov_api::admission::{
    AdmissionCheck, AdmissionContext, AgentView, Denial, PolicyRecheck, check_agent,
};
use agentgov_api::expiry::ExpiryPolicy;
use agentgov_api::hash::{policy_hash, spec_hash};
use agentgov_api::keyring::{KeyConfig, KeyRing, KeyRingConfig};
use agentgov_api::policy::{Actor, AgentInput, PolicyEngine, PolicyInput};
use agentgov_api::proof::{Approver, Claims, ProofBundle, ProofSubject, sign};
use agentgov_api::{AgentSpec, AgentStatus, GovernanceStatus, PolicyBundleSpec};
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
/// The uid of the Agent object every governed scenario is (and the v2 vectors are) signed for.
pub const AGENT_UID: &str = "6f1c2b9e-4d3a-4e8f-9b7c-1a2d3e4f5a6b";
/// The uid of the same agent re-created under the same name.
pub const RECREATED_UID: &str = "0d9e8f7a-6b5c-4d3e-8f2a-1b0c9d8e7f6a";
/// The uid of the AgentPromotion a scenario is promoted under.
pub const PROMOTION_UID: &str = "3a7b1c5d-9e2f-4a6b-8c0d-2e4f6a8b0c1d";

/// The approver a scenario is promoted by, as the API server authenticated them.
pub fn approver() -> Approver {
    Approver {
        username: "alice@example.com".into(),
        uid: "b6a4c2e0-1f3d-4b5a-9c7e-8d6f4a2b0c1e".into(),
    }
}

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

pub use agentgov_api::testing::{governed_agent, sandbox_agent};

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
    /// The Agent object's uid.
    pub uid: String,
    pub spec: AgentSpec,
    pub status: Option<AgentStatus>,
    pub created: Timestamp,
    pub active_policy_hash: Option<String>,
    /// How a proof under another policy than the one in force is judged: `None` strictly
    /// (check 3 refuses it); `Some` by asking that policy, as the webhook does.
    pub recheck: Option<Recheck>,
    pub now: Timestamp,
    pub expiry: ExpiryPolicy,
}

impl Scenario {
    pub fn check(&self, keys: &KeyRing) -> Result<(), Denial> {
        let view = AgentView {
            namespace: &self.namespace,
            name: &self.name,
            uid: &self.uid,
            spec: &self.spec,
            status: self.status.as_ref(),
            created: self.created,
        };
        let ctx = AdmissionContext {
            active_policy_hash: self.active_policy_hash.as_deref(),
            recheck: self.recheck.as_ref().map(|r| r as &dyn PolicyRecheck),
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
            uid: &self.uid,
        }
    }

    /// Sign the current spec with `ring`'s active key against the active policy, approved by
    /// [`approver`] through the AgentPromotion [`PROMOTION_UID`], as the operator does on
    /// promotion, and mark the agent GOVERNED_VALID.
    pub fn sign_with(&mut self, ring: &KeyRing) {
        self.sign_claims(ring, &[approver()], &[PROMOTION_UID.to_string()]);
    }

    /// [`Scenario::sign_with`], approved by `approvers` through `promotions`.
    pub fn sign_claims(&mut self, ring: &KeyRing, approvers: &[Approver], promotions: &[String]) {
        let spec_hash = spec_hash(&self.spec).expect("the spec hashes");
        let policy = self
            .active_policy_hash
            .clone()
            .expect("a policy is in force");
        let claims = Claims {
            spec_hash: &spec_hash,
            policy_hash: &policy,
            approvers,
            promotions,
            exceptions: &[],
        };
        let proof = sign(ring, self.subject(), claims, at(T0)).expect("signing works");
        self.status = Some(AgentStatus {
            governance_status: Some(GovernanceStatus::GovernedValid),
            proof: Some(proof),
            ..AgentStatus::default()
        });
    }

    /// Put `policy` in force: its hash is the active one, and a proof signed under another
    /// policy is judged by asking it ([`Recheck`]).
    pub fn policy_in_force(&mut self, policy: &PolicyBundleSpec) {
        let engine = PolicyEngine::compile(policy).expect("the policy compiles");
        self.active_policy_hash = Some(engine.hash().to_string());
        self.recheck = Some(Recheck(engine));
    }
}

/// The policy in force, asked about a governed agent whose proof names another policy, as the
/// webhook asks it: the proof shows the promotion was authorized, so the actor is one allowed to
/// promote, and the question is only whether the rules now in force allow the agent.
#[derive(Clone, Debug)]
pub struct Recheck(pub PolicyEngine);

impl PolicyRecheck for Recheck {
    fn recheck(&self, agent: &AgentView<'_>) -> Result<(), String> {
        let actor = Actor {
            username: "policy in force".into(),
            authorized_to_promote: true,
            ..Actor::default()
        };
        let input = PolicyInput {
            agent: AgentInput {
                namespace: agent.namespace,
                name: agent.name,
                spec: agent.spec,
            },
            actor: &actor,
            namespace: None,
        };
        match self.0.evaluate(&input) {
            Ok(decision) if decision.allow => Ok(()),
            Ok(decision) => Err(decision.messages().join("; ")),
            Err(e) => Err(format!("it could not judge the agent: {e}")),
        }
    }
}

/// The KAT policy with another compliance temperature limit: a newer policy than the one the
/// scenarios are signed under, which allows the example agent (temperature 0.2) if `limit` is
/// at least 0.2.
pub fn kat_policy_with_limit(limit: f64) -> PolicyBundleSpec {
    let mut policy = kat_policy();
    policy.data.temperature_limits.compliance = limit;
    policy
}

/// examples/agent-governed.yaml in `finance` (uid [`AGENT_UID`]), signed at T0 by `ring` against
/// the KAT policy (payload version 2, approved by [`approver`] through [`PROMOTION_UID`]),
/// checked an hour later: admitted.
pub fn governed(ring: &KeyRing) -> Scenario {
    let agent = governed_agent();
    let mut scenario = Scenario {
        namespace: NAMESPACE.into(),
        name: agent.metadata.name.clone().expect("the example has a name"),
        uid: AGENT_UID.into(),
        spec: agent.spec,
        status: None,
        created: at(T0 - 60),
        active_policy_hash: Some(kat_policy_hash()),
        recheck: None,
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
        uid: "5c4b3a29-1807-4f6e-8d5c-4b3a29180706".into(),
        spec: agent.spec,
        status: None,
        created: at(T0),
        active_policy_hash: None,
        recheck: None,
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
