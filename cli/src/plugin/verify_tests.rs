use agentgov_api::agent::GovernanceStatus;
use agentgov_api::keyring::{KeyRing, KeyRingConfig};

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

/// An export of `agents` as JSON text, with `config`'s public keys.
fn export_of(agents: &[Agent], config: &KeyRingConfig) -> String {
    let input = export::Input {
        agents,
        bundles: &[],
        floor: None,
        keys: config,
        namespace: Some("team-a"),
        since: None,
        now: at(NOW),
    };
    let mapping = export::controls::Mapping::shipped().unwrap();
    let (document, _) = export::build(&input, &mapping).unwrap();
    export::to_json(&document).unwrap()
}

/// An export of the signed fixture (GOVERNED_VALID) and a sandbox, with the ring that signed
/// the fixture.
fn export_text() -> (String, KeyRing) {
    let config = key_ring_config();
    let keys = KeyRing::from_config(&config).unwrap();
    let agents = [signed(&keys), sandbox("team-a", "lab", NOW - 60, 3_600)];
    (export_of(&agents, &config), keys)
}

fn results(check: &ExportCheck) -> Vec<(&str, bool)> {
    check
        .records
        .iter()
        .map(|r| (r.agent.as_str(), r.result.is_ok()))
        .collect()
}

#[test]
fn an_export_verifies_with_its_own_ring_or_a_given_one() {
    let (text, keys) = export_text();
    for given in [None, Some(&keys)] {
        let check = verify_export(&text, given, at(NOW)).unwrap();
        assert_eq!(
            results(&check),
            [("team-a/invoice-auditor", true), ("team-a/lab", true)]
        );
        assert!(check.outcome("x.json").is_ok());
    }
    // A proof copied onto another agent, out of force: its signature is checked too.
    let config = key_ring_config();
    let keys = KeyRing::from_config(&config).unwrap();
    let mut copied = signed(&keys);
    copied.metadata.name = Some("withdrawn".into());
    let status = copied.status.as_mut().unwrap();
    status.governance_status = Some(GovernanceStatus::GovernedInvalidated);
    let check = verify_export(&export_of(&[copied], &config), None, at(NOW)).unwrap();
    assert_eq!(results(&check), [("team-a/withdrawn", false)]);
    let message = check.outcome("x.json").unwrap_err().to_string();
    assert!(
        message.contains("agent team-a/withdrawn: the signature check failed"),
        "{message}"
    );
}

#[test]
fn a_record_out_of_force_keeps_an_authentic_last_proof() {
    let config = key_ring_config();
    let keys = KeyRing::from_config(&config).unwrap();
    let mut agent = signed(&keys);
    let status = agent.status.as_mut().unwrap();
    status.governance_status = Some(GovernanceStatus::GovernedInvalidated);
    status.denies = vec!["budget above the limit".into()];
    let text = export_of(&[agent], &config);
    let check = verify_export(&text, None, at(NOW)).unwrap();
    let detail = check.records[0].result.as_ref().unwrap();
    assert!(
        detail.starts_with("last proof authentic (key key-1 (Ed25519)"),
        "{detail}"
    );
    assert!(
        detail.ends_with("not in force: budget above the limit"),
        "{detail}"
    );
    assert!(check.outcome("x.json").is_ok());
    let printed = check.to_string();
    assert!(
        printed.starts_with("export digest: ok, sha256:"),
        "{printed}"
    );
    assert!(printed.contains("\nRESULT    AGENT"), "{printed}");
}

#[test]
fn one_flipped_byte_in_a_signature_names_the_agent() {
    let (text, keys) = export_text();
    let signature = text
        .lines()
        .find(|l| l.contains("\"signature\""))
        .and_then(|l| l.split('"').nth(3))
        .unwrap()
        .to_string();
    let at_byte = text.find(&signature).unwrap() + 10;
    let mut bytes = text.into_bytes();
    bytes[at_byte] = if bytes[at_byte] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(bytes).unwrap();
    let check = verify_export(&flipped, Some(&keys), at(NOW)).unwrap();
    assert!(check.digest_failure.is_some());
    let auditor = &check.records[0];
    assert_eq!(auditor.agent, "team-a/invoice-auditor");
    let why = auditor.result.as_ref().unwrap_err().join("; ");
    assert!(why.contains("record's digest does not match"), "{why}");
    assert!(why.contains("the signature check failed"), "{why}");
    let message = check.outcome("flipped.json").unwrap_err().to_string();
    assert!(
        message
            .starts_with("the export flipped.json does not verify: agent team-a/invoice-auditor: "),
        "{message}"
    );
}

#[test]
fn a_byte_outside_the_records_or_the_content_is_reported_too() {
    let (text, keys) = export_text();
    // In the header: the document digest fails, and no agent is named.
    let changed = text.replacen("\"scope\": \"team-a\"", "\"scope\": \"team-b\"", 1);
    let check = verify_export(&changed, Some(&keys), at(NOW)).unwrap();
    let message = check.outcome("x.json").unwrap_err().to_string();
    assert!(
        message.contains("outside every agent's record"),
        "{message}"
    );
    // In the whitespace: the layout fails, the digests hold.
    let spaced = text.replacen("\n  \"agents\"", "\n \t\"agents\"", 1);
    let check = verify_export(&spaced, Some(&keys), at(NOW)).unwrap();
    assert!(check.digest_failure.is_none());
    let layout = check.layout_failure.as_deref().unwrap();
    assert!(layout.contains("line 2, column 2"), "{layout}");
    // Not JSON, or not an export.
    let broken = text.replacen('{', "[", 1);
    assert!(verify_export(&broken, Some(&keys), at(NOW)).is_err());
    assert!(verify_export("{\"kind\": \"Agent\"}", None, at(NOW)).is_err());
    // Another ring: every proof fails.
    let other = ring();
    let check = verify_export(&text, Some(&other), at(NOW)).unwrap();
    assert!(check.records.iter().filter(|r| r.result.is_err()).count() >= 1);
    assert!(check.records[0].result.is_err());
}
