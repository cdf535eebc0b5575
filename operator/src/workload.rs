//! Running a managed agent (`spec.runtime.mode: managed`): its Deployment and the ConfigMap with
//! its approved spec and proof (see `agentgov_api::workload`), kept as its judged status says.
//!
//! While the agent may run, the Deployment has the agent's replicas and the ConfigMap the spec
//! as hashed; when it may not (an expired sandbox, GOVERNED_INVALIDATED, a spec not yet
//! approved), the Deployment is scaled to zero and the ConfigMap keeps the last spec that ran.
//! Both are owned by the Agent (deleted with it) and deleted when the agent stops being managed.
//! What of them the operator sets is put back when someone else changes it.

use std::collections::BTreeMap;

use agentgov_api::Agent;
use agentgov_api::agent::{AGENT_LABEL, AgentStatus};
use agentgov_api::containment::{AgentRef, owner};
use agentgov_api::hash::{canonical_json, sha256_hex};
use agentgov_api::runtime::RuntimeSpec;
use agentgov_api::workload::{
    Approved, RUNNING_LABEL, approved_config_map, deployment, may_run, workload_name,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{info, warn};

use crate::context::Context;
use crate::error::Result;
use crate::kept::Kept;

impl Kept for ConfigMap {
    type Shape = ConfigMapShape;
    const LABELS: &'static [&'static str] = &[AGENT_LABEL];
}

impl Kept for Deployment {
    type Shape = DeploymentShape;
    const LABELS: &'static [&'static str] = &[AGENT_LABEL, RUNNING_LABEL];
}

/// What of a ConfigMap the operator sets.
#[derive(Serialize, Deserialize)]
pub struct ConfigMapShape {
    #[serde(default)]
    data: Option<BTreeMap<String, String>>,
}

/// What of a Deployment the operator sets, leaving out what the API server defaults (strategy,
/// restart and DNS policy, pull policy, ...) and the containers' resources, whose quantities it
/// rewrites in canonical form (a change to them comes with a new spec hash anyway). Volumes are
/// compared whole: the builder sets the one default they have (`defaultMode`). Fields the builder
/// leaves unset and the API server does not default are in the shape too (null when absent), so
/// that whoever adds one (a `postStart` or an exec probe running commands in the approved image,
/// a shared process namespace, another runtime class, host aliases or DNS) sees it taken out.
#[derive(Serialize, Deserialize)]
pub struct DeploymentShape {
    #[serde(default)]
    spec: Option<DeploymentSpecShape>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentSpecShape {
    #[serde(default)]
    replicas: Option<i32>,
    #[serde(default)]
    selector: Value,
    #[serde(default)]
    template: TemplateShape,
}

#[derive(Serialize, Deserialize, Default)]
struct TemplateShape {
    #[serde(default)]
    metadata: TemplateMetadataShape,
    #[serde(default)]
    spec: PodShape,
}

#[derive(Serialize, Deserialize, Default)]
struct TemplateMetadataShape {
    #[serde(default)]
    labels: Value,
    #[serde(default)]
    annotations: Value,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PodShape {
    #[serde(default)]
    containers: Vec<ContainerShape>,
    #[serde(default)]
    init_containers: Value,
    #[serde(default)]
    volumes: Value,
    #[serde(default)]
    service_account_name: Value,
    #[serde(default)]
    automount_service_account_token: Value,
    #[serde(default)]
    security_context: Value,
    #[serde(default)]
    host_network: Value,
    #[serde(default)]
    host_pid: Value,
    #[serde(default)]
    host_ipc: Value,
    #[serde(default)]
    node_name: Value,
    #[serde(default)]
    share_process_namespace: Value,
    #[serde(default)]
    runtime_class_name: Value,
    #[serde(default)]
    host_users: Value,
    #[serde(default)]
    host_aliases: Value,
    #[serde(default)]
    hostname: Value,
    #[serde(default)]
    subdomain: Value,
    #[serde(default)]
    dns_config: Value,
    #[serde(default)]
    os: Value,
    #[serde(default)]
    image_pull_secrets: Value,
    #[serde(default)]
    resource_claims: Value,
    #[serde(default)]
    node_selector: Value,
    #[serde(default)]
    affinity: Value,
    #[serde(default)]
    tolerations: Value,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerShape {
    #[serde(default)]
    name: String,
    #[serde(default)]
    image: Value,
    #[serde(default)]
    command: Value,
    #[serde(default)]
    args: Value,
    #[serde(default)]
    env: Value,
    #[serde(default)]
    env_from: Value,
    #[serde(default)]
    security_context: Value,
    #[serde(default)]
    volume_mounts: Value,
    #[serde(default)]
    volume_devices: Value,
    #[serde(default)]
    working_dir: Value,
    #[serde(default)]
    lifecycle: Value,
    #[serde(default)]
    liveness_probe: Value,
    #[serde(default)]
    readiness_probe: Value,
    #[serde(default)]
    startup_probe: Value,
    #[serde(default)]
    restart_policy: Value,
    #[serde(default)]
    stdin: Value,
    #[serde(default)]
    tty: Value,
}

/// Bring a managed agent's Deployment and ConfigMap in line with `status` (its judged status);
/// delete them when the agent is no longer managed.
pub async fn converge(ctx: &Context, agent: &Agent, status: Option<&AgentStatus>) -> Result<()> {
    let namespace = agent.namespace().unwrap_or_default();
    let name = agent.name_any();
    let uid = agent.uid().unwrap_or_default();
    let object_name = workload_name(&name);
    let cached_deployment = ctx.deployments.get(&namespace, &object_name);
    let cached_config = ctx.config_maps.get(&namespace, &object_name);
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
    let reference = AgentRef {
        namespace: &namespace,
        name: &name,
        uid: &uid,
    };
    let Some(managed) = agent.spec.runtime.as_ref().and_then(RuntimeSpec::managed) else {
        let ours = owner(&reference);
        if cached_deployment
            .as_ref()
            .is_some_and(|d| d.owned_by(&ours))
        {
            crate::kept::delete(&deployments, &object_name).await?;
        }
        if cached_config.as_ref().is_some_and(|c| c.owned_by(&ours)) {
            crate::kept::delete(&config_maps, &object_name).await?;
        }
        return Ok(());
    };
    let Some(status) = status else {
        return Ok(());
    };
    let canonical = canonical_json(&agent.spec)?;
    let spec_hash = sha256_hex(&canonical);
    let runs = may_run(&agent.spec, Some(status), &spec_hash);
    // The Pods find their ConfigMap before they start; one that may not run keeps the last.
    if runs {
        let proof_json = serde_json::to_string(&status.proof)?;
        let approved = Approved {
            canonical_spec: &canonical,
            proof_json: &proof_json,
            governance_status: status.governance_status,
        };
        if let Some(wanted) = approved_config_map(&reference, &approved)
            && !cached_config.as_ref().is_some_and(|c| c.matches(&wanted))
        {
            crate::kept::write(&config_maps, &wanted, cached_config.is_some()).await?;
        }
    }
    let replicas = if runs {
        managed.replicas.unwrap_or(1)
    } else {
        0
    };
    let Some(wanted) = deployment(&reference, managed, &spec_hash, replicas) else {
        return Ok(());
    };
    let cached = cached_deployment.as_ref();
    if cached.is_some_and(|d| d.matches(&wanted)) {
        return Ok(());
    }
    crate::kept::write(&deployments, &wanted, cached.is_some()).await?;
    let was_running = cached.and_then(|d| d.label(RUNNING_LABEL)) == Some("true");
    if was_running != (replicas > 0) {
        scaled(ctx, agent, status, &object_name, replicas).await;
    }
    Ok(())
}

async fn scaled(ctx: &Context, agent: &Agent, status: &AgentStatus, name: &str, replicas: i32) {
    let governance = status
        .governance_status
        .map_or("not judged", |g| g.as_str());
    let (type_, reason, note) = if replicas > 0 {
        info!(
            code = "AGENT_WORKLOAD_STARTED",
            agent = %agent.name_any(),
            namespace = %agent.namespace().unwrap_or_default(),
            replicas,
            "managed agent running"
        );
        (
            EventType::Normal,
            "WorkloadStarted",
            format!("{governance}: Deployment {name} runs {replicas} Pod(s) of the approved spec"),
        )
    } else {
        warn!(
            code = "AGENT_WORKLOAD_STOPPED",
            agent = %agent.name_any(),
            namespace = %agent.namespace().unwrap_or_default(),
            governance,
            "managed agent may not run: its Deployment is scaled to zero"
        );
        (
            EventType::Warning,
            "WorkloadStopped",
            format!("{governance}: the agent may not run; Deployment {name} is scaled to zero"),
        )
    };
    crate::status::publish(ctx, &agent.object_ref(&()), type_, reason, note).await;
}
