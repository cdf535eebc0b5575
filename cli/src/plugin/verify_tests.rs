use agentgov_api::agent::GovernanceStatus;
use agentgov_api::keyring::KeyRing;

use super::*;
use crate::plugin::fixtures::{NOW, at, governed, key_ring_config, sandbox, signed};

fn ring() -> KeyRing {
    KeyRing::from_config(&key_ring_config()).unwrap()
}

fn failure(agent: &Agent, keys: &KeyRing) -> String {
    verify(agent, "default", keys, at(NOW))
        .unwrap_err()
        .to_string()
}

#[test]
fn a_signed_agent_verifies_and_reports_its_proof() {
    let config = key_ring_config();
    let keys = KeyRing::from_config(&config).unwrap();
    let agent = signed(&keys);
    let verified = verify(&agent, "default", &keys, at(NOW)).unwrap();
    let text = verified.to_string();
    assert!(
        text.starts_with("verified: agent team-a/invoice-auditor (GOVERNED_VALID)\n"),
        "{text}"
    );
    for expected in ["ab12", "key-1", "alice", "Ed25519", "uid-1"] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    // With public keys only, read from a file as the webhook reads its ring.
    let public = serde_json::to_vec(&config.verification_only().unwrap()).unwrap();
    let public = KeyRing::from_slice(&public).unwrap();
    assert!(verify(&agent, "default", &public, at(NOW)).is_ok());
}

#[test]
fn each_broken_part_is_named() {
    let keys = ring();
    let mut changed = signed(&keys);
    changed.spec.description = "something else".into();
    let message = failure(&changed, &keys);
    assert!(
        message.starts_with("the spec hash check failed: "),
        "{message}"
    );

    let other_ring = ring();
    let message = failure(&signed(&keys), &other_ring);
    assert!(
        message.starts_with("the signature check failed: "),
        "{message}"
    );

    let mut recreated = signed(&keys);
    recreated.metadata.uid = Some("uid-2".into());
    assert!(failure(&recreated, &keys).starts_with("the signature check failed: "));

    let mut moved = signed(&keys);
    moved.metadata.namespace = Some("team-b".into());
    assert!(failure(&moved, &keys).starts_with("the signature check failed: "));

    let mut config = key_ring_config();
    let keys = KeyRing::from_config(&config).unwrap();
    config.revoked.push("key-1".into());
    let revoking = KeyRing::from_config(&config).unwrap();
    let message = failure(&signed(&keys), &revoking);
    assert!(
        message.contains("key-1 of team-a/invoice-auditor is revoked"),
        "{message}"
    );

    let unsigned = governed("team-a", "pending", None);
    assert!(failure(&unsigned, &keys).starts_with("the proof check failed: "));

    let mut invalidated = signed(&keys);
    if let Some(status) = invalidated.status.as_mut() {
        status.governance_status = Some(GovernanceStatus::GovernedInvalidated);
    }
    let message = failure(&invalidated, &keys);
    assert!(message.contains("GOVERNED_INVALIDATED"), "{message}");

    let message = failure(&sandbox("a", "s", NOW, 60), &keys);
    assert!(message.contains("sandbox"), "{message}");
}

#[test]
fn manifests_parse_as_yaml_or_json() {
    let keys = ring();
    let agent = signed(&keys);
    let yaml = serde_yaml::to_string(&agent).unwrap();
    let json = serde_json::to_string(&agent).unwrap();
    for text in [yaml, json] {
        let parsed = parse_agent(text.as_bytes()).unwrap();
        assert_eq!(parsed.metadata, agent.metadata);
        assert_eq!(parsed.spec, agent.spec);
        assert_eq!(parsed.status, agent.status);
    }
    assert!(parse_agent(b"kind: Agent\nspec: 3\n").is_err());
    let nameless = serde_json::to_string(&governed("a", "", None)).unwrap();
    assert!(
        parse_agent(nameless.as_bytes())
            .unwrap_err()
            .contains("metadata.name")
    );
}
