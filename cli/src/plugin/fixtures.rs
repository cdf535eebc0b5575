//! Test fixtures: the example agents (`agentgov_api::testing`) placed in a namespace at a
//! creation time, and a governed one signed with a fresh key ring.

use agentgov_api::Agent;
use agentgov_api::agent::{AgentStatus, GovernanceStatus};
use agentgov_api::keyring::{KeyRing, KeyRingConfig, generate_ed25519};
use agentgov_api::proof::{Approver, Claims, ProofSubject, sign};
use agentgov_api::testing::{governed_agent, sandbox_agent, with_sandbox_ttl};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub const NOW: i64 = 1_800_000_000;

pub fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

/// `agent` named `name` in `namespace`, created at `created`, with `status`.
pub fn placed(
    mut agent: Agent,
    namespace: &str,
    name: &str,
    created: i64,
    status: Option<GovernanceStatus>,
) -> Agent {
    agent.metadata.namespace = Some(namespace.into());
    agent.metadata.name = Some(name.into());
    agent.metadata.creation_timestamp = Some(Time(at(created)));
    agent.status = status.map(|g| AgentStatus {
        governance_status: Some(g),
        ..AgentStatus::default()
    });
    agent
}

/// The sandbox example with `ttl` seconds to live, created at `created`.
pub fn sandbox(namespace: &str, name: &str, created: i64, ttl: i64) -> Agent {
    let mut agent = sandbox_agent();
    agent.spec = with_sandbox_ttl(agent.spec, Some(ttl));
    placed(
        agent,
        namespace,
        name,
        created,
        Some(GovernanceStatus::Sandbox),
    )
}

/// The governed example with `status` and no proof.
pub fn governed(namespace: &str, name: &str, status: Option<GovernanceStatus>) -> Agent {
    placed(governed_agent(), namespace, name, NOW - 3_600, status)
}

/// A new key ring with one Ed25519 key, `key-1`.
pub fn key_ring_config() -> KeyRingConfig {
    KeyRingConfig {
        active_key_id: Some("key-1".into()),
        keys: vec![generate_ed25519("key-1").unwrap()],
        revoked: vec![],
    }
}

/// The governed example, GOVERNED_VALID, with a proof signed by `ring` for it.
pub fn signed(ring: &KeyRing) -> Agent {
    let mut agent = governed("team-a", "invoice-auditor", None);
    agent.metadata.uid = Some("uid-1".into());
    let spec_hash = agentgov_api::hash::spec_hash(&agent.spec).unwrap();
    let approvers = [Approver {
        username: "alice".into(),
        uid: String::new(),
    }];
    let proof = sign(
        ring,
        ProofSubject {
            namespace: "team-a",
            name: "invoice-auditor",
            uid: "uid-1",
        },
        Claims {
            spec_hash: &spec_hash,
            policy_hash: "ab12",
            approvers: &approvers,
            promotions: &[],
            exceptions: &[],
        },
        at(NOW - 60),
    )
    .unwrap();
    agent.status = Some(AgentStatus {
        governance_status: Some(GovernanceStatus::GovernedValid),
        proof: Some(proof),
        ..AgentStatus::default()
    });
    agent
}
