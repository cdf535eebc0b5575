use agentgov_api::keyring::{KeyRing, generate_hmac};
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::{PolicyBundle, PolicyBundleStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::plugin::fixtures::{NOW, at, key_ring_config, sandbox, signed};

/// The fixtures' governed agent (signed under policy `ab12`) and a sandbox, with `ab12` in
/// force in team-a after an older version.
pub fn sample() -> (Vec<Agent>, Vec<PolicyBundle>, KeyRingConfig) {
    let config = key_ring_config();
    let keys = KeyRing::from_config(&config).unwrap();
    let agents = vec![sandbox("team-a", "lab", NOW - 60, 3_600), signed(&keys)];
    let mut bundle = PolicyBundle::new("default", default_bundle_spec());
    bundle.metadata.namespace = Some("team-a".into());
    let version = |hash: &str, time: i64| PolicyVersion {
        hash: hash.into(),
        version: format!("v-{hash}"),
        time: Time(at(time)),
        actor: Some("policy-admin".into()),
        reason: "applied".into(),
    };
    bundle.status = Some(PolicyBundleStatus {
        active_hash: Some("ab12".into()),
        active_version: Some("v-ab12".into()),
        history: vec![version("ab12", NOW - 600), version("0ld1", NOW - 86_400)],
        ..PolicyBundleStatus::default()
    });
    (agents, vec![bundle], config)
}

pub fn exported(since: Option<Timestamp>) -> (Export, KeyRingConfig) {
    let (agents, bundles, keys) = sample();
    let input = Input {
        agents: &agents,
        bundles: &bundles,
        floor: None,
        keys: &keys,
        namespace: Some("team-a"),
        since,
        now: at(NOW),
    };
    let (export, left_out) = build(&input, &Mapping::shipped().unwrap()).unwrap();
    assert!(left_out.is_empty());
    (export, keys)
}

#[test]
fn every_agent_is_recorded_with_its_proof_policy_and_controls() {
    let (export, _) = exported(None);
    assert_eq!(export.kind, KIND);
    assert_eq!(export.scope, "team-a");
    let names: Vec<String> = export.agents.iter().map(AgentRecord::id).collect();
    assert_eq!(names, ["team-a/invoice-auditor", "team-a/lab"]);
    let auditor = &export.agents[0];
    assert_eq!(auditor.status, Some(GovernanceStatus::GovernedValid));
    let proof = auditor.proof.as_ref().unwrap();
    assert_eq!(proof.spec_hash, auditor.spec_hash);
    assert_eq!(proof.approvers[0].username, "alice");
    let policy = auditor.policy_in_force.as_ref().unwrap();
    assert_eq!(
        (policy.version.as_str(), policy.hash.as_str()),
        ("v-ab12", "ab12")
    );
    assert_eq!(auditor.evidence[0].fact, "proofSigned");
    let lab = &export.agents[1];
    assert!(lab.proof.is_none() && lab.expires_at.is_some());
    assert!(lab.evidence.iter().any(|e| e.fact == "sandboxExpiry"));
    assert!(export.controls.contains_key("AML.M0013"));
    assert_eq!(export.facts.len(), controls::FACTS.len());
    assert_eq!(export.policies[0].history.len(), 2);
}

#[test]
fn the_digests_cover_the_canonical_form_and_the_layout_is_stable() {
    let (export, _) = exported(None);
    let text = to_json(&export).unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    // Written in its one layout: parsing and writing again gives the same bytes.
    assert_eq!(layout(&value).unwrap(), text);
    assert_eq!(digest(&value).unwrap(), export.digest);
    assert!(export.digest.starts_with("sha256:") && export.digest.len() == 7 + 64);
    for (record, raw) in export
        .agents
        .iter()
        .zip(value["agents"].as_array().unwrap())
    {
        assert_eq!(digest(raw).unwrap(), record.digest);
    }
    // A record's change changes its digest and the document's.
    let mut changed = value.clone();
    changed["agents"][0]["denies"] = serde_json::json!(["added later"]);
    assert_ne!(
        digest(&changed["agents"][0]).unwrap(),
        export.agents[0].digest
    );
    assert_ne!(digest(&changed).unwrap(), export.digest);
    // The same content in another key order or layout has the same digest.
    let compact: Value = serde_json::from_str(&serde_json::to_string(&value).unwrap()).unwrap();
    assert_eq!(digest(&compact).unwrap(), export.digest);
}

#[test]
fn the_embedded_ring_holds_public_keys_only() {
    let (export, keys) = exported(None);
    assert!(keys.keys[0].private_key.is_some());
    let ring = &export.key_ring;
    assert_eq!(ring.keys.len(), 1);
    assert!(ring.keys[0].private_key.is_none() && ring.keys[0].public_key.is_some());
    assert!(ring.active_key_id.is_none());
    // An HMAC key's secret signs as well as verifies: it is left out, and said so.
    let mut with_hmac = keys.clone();
    with_hmac.keys.push(generate_hmac("shared").unwrap());
    let (public, left_out) = public_ring(&with_hmac).unwrap();
    assert_eq!(left_out, ["shared"]);
    assert!(public.keys.iter().all(|k| k.secret.is_none()));
}

#[test]
fn since_keeps_what_changed_from_then_on() {
    // The sandbox was created 60 s ago, the proof signed 60 s ago, the policy in force applied
    // 600 s ago, the one before a day ago.
    let (export, _) = exported(Some(at(NOW - 700)));
    assert_eq!(export.agents.len(), 2);
    assert_eq!(export.policies[0].history.len(), 1);
    let (export, _) = exported(Some(at(NOW)));
    assert!(export.agents.is_empty());
    assert_eq!(export.since.as_deref(), Some("2027-01-15T08:00:00Z"));
    assert_eq!(Since::parse("24h").unwrap().at(at(NOW)), at(NOW - 86_400));
    assert_eq!(
        Since::parse("2027-01-15T08:00:00Z").unwrap(),
        Since::At(at(NOW))
    );
    assert!(Since::parse("yesterday").is_err());
}

#[test]
fn csv_quotes_and_html_escapes_what_the_records_say() {
    let (mut export, _) = exported(None);
    export.agents[0].denies = vec!["a \"quoted\", comma".into(), "<script>x</script>".into()];
    let text = render::csv(&export).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    assert_eq!(headers.len(), render::CSV_HEADERS.len() + 1);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    assert_eq!(
        &rows[0][column("denies")],
        "a \"quoted\", comma; <script>x</script>"
    );
    assert_eq!(&rows[0][column("keyId")], "key-1");
    assert_eq!(&rows[1][column("exportDigest")], export.digest);

    let page = render::html(&export);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(!page.contains("<script>"), "{page}");
    assert!(page.contains("&lt;script&gt;x&lt;/script&gt;"));
    assert!(page.contains(&export.digest));
    assert!(page.contains("team-a/invoice-auditor") || page.contains("invoice-auditor"));
    assert!(page.contains("Unbounded Consumption"));
}
