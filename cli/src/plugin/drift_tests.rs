use agentgov_api::agent::{AgentStatus, GovernanceStatus, PolicyRef};
use agentgov_api::keyring::KeyRing;
use agentgov_api::policy::default_bundle_spec;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::*;
use crate::plugin::fixtures::{NOW, at, governed, key_ring_config, sandbox, signed};

fn ring() -> KeyRing {
    KeyRing::from_config(&key_ring_config()).unwrap()
}

/// The fixtures' proofs are signed under policy `ab12`; this puts `hash` in force in team-a.
fn in_force(hash: &str) -> BTreeMap<(String, String), InForce> {
    BTreeMap::from([(
        ("team-a".to_string(), "default".to_string()),
        InForce {
            version: "v2".into(),
            hash: hash.into(),
        },
    )])
}

fn kinds(found: &[Finding]) -> Vec<(&str, DriftKind)> {
    found.iter().map(|f| (f.agent.as_str(), f.kind)).collect()
}

const DAY: SignedDuration = SignedDuration::from_hours(24);

#[test]
fn an_agent_as_approved_under_the_policy_in_force_has_no_drift() {
    let agent = signed(&ring());
    assert_eq!(findings(&[agent], &in_force("ab12"), DAY, at(NOW)), []);
}

#[test]
fn a_changed_spec_and_a_new_policy_are_drift() {
    let mut agent = signed(&ring());
    agent.spec.description = "something else".into();
    let found = findings(&[agent], &in_force("cd34"), DAY, at(NOW));
    assert_eq!(
        kinds(&found),
        [
            ("invoice-auditor", DriftKind::SpecChanged),
            ("invoice-auditor", DriftKind::PolicyChanged)
        ]
    );
    assert!(found[0].detail.contains("is not the approved"), "{found:?}");
    assert_eq!(
        found[1].detail,
        "signed under policy ab12, but default v2 (cd34) is in force"
    );
    // No bundle in force at all.
    let found = findings(&[signed(&ring())], &BTreeMap::new(), DAY, at(NOW));
    assert_eq!(
        found[0].detail,
        "signed under policy ab12, but no PolicyBundle default is in force in namespace team-a"
    );
}

#[test]
fn the_bundle_the_agent_was_judged_against_is_the_one_compared() {
    let mut agent = signed(&ring());
    if let Some(status) = agent.status.as_mut() {
        status.policy = Some(PolicyRef {
            name: "strict".into(),
            version: String::new(),
            hash: "ab12".into(),
        });
    }
    let mut policies = in_force("cd34");
    policies.insert(
        ("team-a".into(), "strict".into()),
        InForce {
            version: String::new(),
            hash: "ab12".into(),
        },
    );
    assert_eq!(findings(&[agent], &policies, DAY, at(NOW)), []);
}

#[test]
fn sandboxes_expiring_within_the_window_or_expired_are_drift() {
    let soon = sandbox("team-a", "soon", NOW - 60, 3_600);
    let later = sandbox("team-a", "later", NOW, 3 * 86_400);
    let gone = sandbox("team-a", "gone", NOW - 7_200, 3_600);
    let found = findings(&[soon, later, gone], &BTreeMap::new(), DAY, at(NOW));
    assert_eq!(
        kinds(&found),
        [
            ("gone", DriftKind::SandboxExpiring),
            ("soon", DriftKind::SandboxExpiring)
        ]
    );
    assert!(
        found[0].detail.starts_with("sandbox expired 60m ago"),
        "{found:?}"
    );
    assert!(
        found[1].detail.starts_with("sandbox expires in 59m"),
        "{found:?}"
    );
    // The operator's expiry, where it recorded one, wins over the spec's.
    let mut late = sandbox("team-a", "recorded", NOW, 3 * 86_400);
    if let Some(status) = late.status.as_mut() {
        status.expires_at = Some(Time(at(NOW + 600)));
    }
    let found = findings(&[late], &BTreeMap::new(), DAY, at(NOW));
    assert_eq!(kinds(&found), [("recorded", DriftKind::SandboxExpiring)]);
}

#[test]
fn an_invalidated_agent_says_why() {
    let mut agent = signed(&ring());
    let status = agent.status.as_mut().unwrap();
    status.governance_status = Some(GovernanceStatus::GovernedInvalidated);
    status.denies = vec!["budget 250 is above 100".into()];
    let found = findings(&[agent.clone()], &in_force("cd34"), DAY, at(NOW));
    assert_eq!(
        kinds(&found),
        [
            ("invoice-auditor", DriftKind::PolicyChanged),
            ("invoice-auditor", DriftKind::Invalidated)
        ]
    );
    assert_eq!(found[1].detail, "budget 250 is above 100");
    // Without denies, the Ready condition's message.
    let status = agent.status.as_mut().unwrap();
    status.denies.clear();
    status.conditions.push(Condition {
        type_: READY.into(),
        status: "False".into(),
        reason: "Invalidated".into(),
        message: "the approval was withdrawn".into(),
        last_transition_time: Time(at(NOW)),
        observed_generation: None,
    });
    let found = findings(&[agent], &in_force("ab12"), DAY, at(NOW));
    assert_eq!(found[0].detail, "the approval was withdrawn");
}

#[test]
fn requests_not_yet_promoted_are_not_drift() {
    let mut waiting = governed("team-a", "waiting", Some(GovernanceStatus::Sandbox));
    waiting.status = Some(AgentStatus {
        governance_status: Some(GovernanceStatus::Sandbox),
        ..AgentStatus::default()
    });
    assert_eq!(findings(&[waiting], &BTreeMap::new(), DAY, at(NOW)), []);
}

#[test]
fn policies_in_force_come_from_the_bundles_status() {
    let mut bundle = PolicyBundle::new("default", default_bundle_spec());
    bundle.metadata.namespace = Some("team-a".into());
    assert!(policies_in_force(std::slice::from_ref(&bundle), None).is_empty());
    bundle.status = Some(agentgov_api::PolicyBundleStatus {
        active_hash: Some("ab12".into()),
        active_version: Some("v1".into()),
        ..Default::default()
    });
    let found = policies_in_force(std::slice::from_ref(&bundle), None);
    assert_eq!(
        found[&("team-a".to_string(), "default".to_string())],
        InForce {
            version: "v1".into(),
            hash: "ab12".into()
        }
    );
}

#[test]
fn with_a_floor_a_namespaces_policy_is_both_layers_and_the_floor_alone_elsewhere() {
    let mut bundle = PolicyBundle::new("default", default_bundle_spec());
    bundle.metadata.namespace = Some("team-a".into());
    bundle.status = Some(agentgov_api::PolicyBundleStatus {
        active_hash: Some("ab12".into()),
        active_version: Some("v1".into()),
        ..Default::default()
    });
    let mut floor = agentgov_api::ClusterPolicyBundle::new(
        "default",
        agentgov_api::ClusterPolicyBundleSpec {
            policy: default_bundle_spec(),
            max_exception_days: None,
        },
    );
    floor.status = Some(agentgov_api::PolicyBundleStatus {
        active_hash: Some("f00d".into()),
        active_version: Some("org-1".into()),
        ..Default::default()
    });
    let found = policies_in_force(std::slice::from_ref(&bundle), Some(&floor));
    let both = agentgov_api::effective::effective_hash(Some("f00d"), Some("ab12"))
        .unwrap()
        .unwrap();
    for name in [
        "default",
        "ClusterPolicyBundle/default+default",
        "ClusterPolicyBundle/default",
    ] {
        let policy = super::in_force_for(&found, "team-a", name).unwrap();
        assert_eq!(policy.hash, both, "{name}");
        assert_eq!(policy.version, "org-1+v1");
    }
    // A namespace without a bundle: the floor alone.
    let alone = super::in_force_for(&found, "team-b", "ClusterPolicyBundle/default").unwrap();
    assert_eq!(alone.hash, "f00d");
    assert!(super::in_force_for(&found, "team-b", "default").is_none());
}

#[test]
fn the_table_names_the_namespace_only_with_all_namespaces() {
    let found = [Finding {
        namespace: "team-a".into(),
        agent: "auditor".into(),
        kind: DriftKind::SpecChanged,
        detail: "spec hash a is not the approved b".into(),
    }];
    assert_eq!(
        table(&found, false),
        "AGENT     DRIFT         DETAIL\n\
         auditor   SpecChanged   spec hash a is not the approved b\n"
    );
    assert!(table(&found, true).starts_with("NAMESPACE   AGENT"));
}

/// A Pod of `agent` in team-a running `image`, in `phase`.
fn pod(name: &str, agent: &str, image: &str, phase: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "team-a", "labels": {"agentgov.dev/agent": agent}},
        "spec": {"containers": [{"name": "agent", "image": image}]},
        "status": {"phase": phase},
    }))
    .unwrap()
}

#[test]
fn a_live_pod_running_an_image_its_agent_does_not_list_is_drift() {
    let approved = format!("registry.invalid/agent@sha256:{}", "a".repeat(64));
    let other = format!("registry.invalid/agent@sha256:{}", "b".repeat(64));
    let mut agent = signed(&ring());
    agent.spec.runtime = Some(agentgov_api::runtime::RuntimeSpec {
        images: vec![approved.clone()],
        ..Default::default()
    });
    let name = agent.metadata.name.clone().unwrap();
    let pods = [
        pod("as-approved", &name, &approved, "Running"),
        pod("drifted", &name, &other, "Running"),
        pod("tagged", &name, "registry.invalid/agent:1", "Pending"),
        pod("finished", &name, &other, "Succeeded"),
        pod("of-nobody", "nobody", &other, "Running"),
    ];
    let found = image_findings(std::slice::from_ref(&agent), &pods);
    let details: Vec<&str> = found.iter().map(|f| f.detail.as_str()).collect();
    assert_eq!(
        details,
        [
            format!("pod drifted: spec.containers[0] (agent) runs {other:?}, which is not among the agent's approved images"),
            "pod tagged: spec.containers[0] (agent) runs \"registry.invalid/agent:1\", which is not pinned by digest (the agent's approved images are)".to_string(),
        ]
    );
    assert!(
        found
            .iter()
            .all(|f| f.kind == DriftKind::UnapprovedImages && f.agent == name)
    );

    // An agent that binds no images: nothing to compare with.
    agent.spec.runtime = None;
    assert_eq!(image_findings(&[agent], &pods), []);
}
