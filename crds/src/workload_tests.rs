use serde::Deserialize;
use serde_json::json;

use super::*;
use crate::agent::AgentMode;
use crate::conditions::EXPIRED;
use crate::pod_security::{PodSecurityLevel, PodView, evaluate};
use crate::runtime::{ManagedEnvVar, ManagedResources, ResourceAmounts};

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn agent() -> AgentRef<'static> {
    AgentRef {
        namespace: "team",
        name: "auditor",
        uid: "u-1",
    }
}

fn managed() -> ManagedRuntime {
    ManagedRuntime {
        containers: vec![ManagedContainer {
            name: "agent".into(),
            image: format!("ghcr.io/acme/agent@{DIGEST}"),
            command: vec!["/agent".into()],
            args: vec!["--serve".into()],
            env: vec![ManagedEnvVar {
                name: "LOG".into(),
                value: "debug".into(),
            }],
            resources: Some(ManagedResources {
                requests: Some(ResourceAmounts {
                    cpu: Some("100m".into()),
                    ..ResourceAmounts::default()
                }),
                limits: None,
            }),
        }],
        replicas: Some(2),
        ..ManagedRuntime::default()
    }
}

/// The Pod a ReplicaSet makes from the Deployment's template.
fn pod_of(deployment: &Deployment) -> serde_json::Value {
    let template = &deployment.spec.template;
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": template.metadata,
        "spec": template.spec,
    })
}

#[test]
fn the_pods_meet_the_restricted_pod_security_level() {
    let d = deployment(&agent(), &managed(), "h1", 2).unwrap();
    let pod = pod_of(&d);
    let view = PodView::deserialize(&pod).unwrap();
    let violations = evaluate(PodSecurityLevel::Restricted, &view);
    assert!(violations.is_empty(), "{violations:?}");
    let spec = &pod["spec"];
    assert_eq!(spec["automountServiceAccountToken"], json!(false));
    let container = &spec["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["image"], format!("ghcr.io/acme/agent@{DIGEST}"));
    assert_eq!(container["env"], json!([{"name": "LOG", "value": "debug"}]));
    assert_eq!(container["resources"], json!({"requests": {"cpu": "100m"}}));
    assert_eq!(
        container["volumeMounts"][0],
        json!({"name": "approved", "mountPath": APPROVED_MOUNT, "readOnly": true})
    );
    assert_eq!(
        spec["volumes"][0]["configMap"]["name"],
        json!("agentgov-auditor")
    );
}

#[test]
fn the_deployment_is_owned_labelled_and_rolls_with_the_spec_hash() {
    let d = deployment(&agent(), &managed(), "h1", 2).unwrap();
    assert_eq!(d.metadata.name.as_deref(), Some("agentgov-auditor"));
    assert_eq!(d.metadata.owner_references.as_ref().unwrap()[0].uid, "u-1");
    let spec = &d.spec;
    assert_eq!(spec.replicas, Some(2));
    let labels = spec.template.metadata.as_ref().unwrap().labels.as_ref();
    assert_eq!(labels.unwrap()[AGENT_LABEL], "auditor");
    assert_eq!(spec.selector.match_labels.as_ref(), labels);
    let other = deployment(&agent(), &managed(), "h2", 2).unwrap();
    assert_ne!(spec.template, other.spec.template);
    // Asked for a token, it gets one.
    let mut with_token = managed();
    with_token.automount_service_account_token = Some(true);
    with_token.service_account_name = Some("reader".into());
    let pod = pod_of(&deployment(&agent(), &with_token, "h1", 1).unwrap());
    assert_eq!(pod["spec"]["automountServiceAccountToken"], json!(true));
    assert_eq!(pod["spec"]["serviceAccountName"], json!("reader"));
}

#[test]
fn a_name_too_long_for_a_label_gets_no_workload() {
    let long = "a".repeat(64);
    let agent = AgentRef {
        name: &long,
        ..agent()
    };
    assert!(deployment(&agent, &managed(), "h", 1).is_none());
    let approved = Approved {
        canonical_spec: b"{}",
        proof_json: "null",
        governance_status: None,
    };
    assert!(approved_config_map(&agent, &approved).is_none());
}

#[test]
fn the_config_map_holds_the_spec_as_hashed_and_the_proof() {
    let approved = Approved {
        canonical_spec: br#"{"version":"1"}"#,
        proof_json: r#"{"specHash":"h"}"#,
        governance_status: Some(GovernanceStatus::GovernedValid),
    };
    let cm = approved_config_map(&agent(), &approved).unwrap();
    let data = cm.data.unwrap();
    assert_eq!(data["spec.json"], r#"{"version":"1"}"#);
    assert_eq!(data["proof.json"], r#"{"specHash":"h"}"#);
    assert_eq!(data["governanceStatus"], "GOVERNED_VALID");
    assert_eq!(cm.metadata.name.as_deref(), Some("agentgov-auditor"));
}

fn status(governance: GovernanceStatus, proof_hash: Option<&str>) -> AgentStatus {
    AgentStatus {
        governance_status: Some(governance),
        proof: proof_hash.map(|h| crate::proof::ProofBundle {
            version: 2,
            spec_hash: h.into(),
            policy_hash: "p".into(),
            signature: "s".into(),
            algorithm: crate::keyring::Algorithm::Ed25519,
            key_id: "k".into(),
            signed_at: "2026-01-01T00:00:00Z".into(),
            agent_uid: "u-1".into(),
            approvers: vec![],
            promotions: vec![],
            exceptions: Vec::new(),
        }),
        ..AgentStatus::default()
    }
}

#[test]
fn it_may_run_as_a_live_sandbox_or_governed_with_a_proof_of_this_spec() {
    let mut spec = crate::testing::sandbox_spec();
    assert!(may_run(
        &spec,
        Some(&status(GovernanceStatus::Sandbox, None)),
        "h"
    ));
    let mut expired = status(GovernanceStatus::Sandbox, None);
    expired.conditions = serde_json::from_value(json!([{
        "type": EXPIRED, "status": "True", "reason": "Expired", "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z"
    }]))
    .unwrap();
    assert!(!may_run(&spec, Some(&expired), "h"));
    assert!(!may_run(&spec, None, "h"));
    spec.mode = AgentMode::Governed;
    for governance in [
        GovernanceStatus::GovernedValid,
        GovernanceStatus::GovernedRestricted,
    ] {
        assert!(may_run(&spec, Some(&status(governance, Some("h"))), "h"));
        // A proof of another spec, or none, does not let it run.
        assert!(!may_run(&spec, Some(&status(governance, Some("old"))), "h"));
        assert!(!may_run(&spec, Some(&status(governance, None)), "h"));
    }
    assert!(!may_run(
        &spec,
        Some(&status(GovernanceStatus::GovernedInvalidated, Some("h"))),
        "h"
    ));
}
