//! What the operator runs for a managed agent (`spec.runtime.mode: managed`): a Deployment of
//! hardened Pods and a ConfigMap with the approved spec and its proof, mounted read-only. Pure;
//! the operator applies them.
//!
//! The Deployment has the agent's replicas while the agent may run (a SANDBOX not expired, or
//! GOVERNED_VALID / GOVERNED_RESTRICTED with a proof of this very spec) and none otherwise; it is
//! kept, not deleted, so the agent comes back when it may run again.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar,
    PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::agent::{AGENT_LABEL, AgentSpec, AgentStatus, GovernanceStatus};
use crate::containment::{AgentRef, MANAGED_BY_LABEL, MANAGER, RunState, owner};
use crate::runtime::{ManagedContainer, ManagedRuntime, ResourceAmounts};

/// Where the approved spec and proof are mounted in every container.
pub const APPROVED_MOUNT: &str = "/etc/agentgov";
/// The annotation on the Pod template with the hash of the spec the Pods run: a new approved
/// spec rolls them.
pub const SPEC_HASH_ANNOTATION: &str = "agentgov.dev/spec-hash";
/// The label on a managed agent's Deployment saying whether it is asked for Pods (`true`,
/// `false`).
pub const RUNNING_LABEL: &str = "agentgov.dev/running";
/// The user and group the Pods run as unless the image says otherwise (the distroless
/// `nonroot`).
const NON_ROOT: i64 = 65532;
/// The longest label value: an agent with a longer name can have no Pods labelled for it.
const MAX_LABEL_VALUE: usize = 63;

/// The name of a managed agent's Deployment and ConfigMap.
pub fn workload_name(agent: &str) -> String {
    format!("agentgov-{agent}")
}

/// Whether the agent may run now, from its judged `status`: a SANDBOX not expired, or a
/// governed agent (valid or restricted) whose proof is for `spec` (`spec_hash`, computed by the
/// caller).
pub fn may_run(spec: &AgentSpec, status: Option<&AgentStatus>, spec_hash: &str) -> bool {
    let Some(status) = status else {
        return false;
    };
    if !matches!(
        RunState::of(spec, Some(status)),
        Some(RunState::Open | RunState::Contained)
    ) {
        return false;
    }
    match status.governance_status {
        Some(GovernanceStatus::Sandbox) => true,
        Some(GovernanceStatus::GovernedValid | GovernanceStatus::GovernedRestricted) => status
            .proof
            .as_ref()
            .is_some_and(|p| p.spec_hash == spec_hash),
        _ => false,
    }
}

/// What a managed agent's ConfigMap holds: `spec.json` (the spec as hashed: canonical JSON),
/// `proof.json` (the signed proof, `null` for a sandbox) and `governanceStatus`.
pub struct Approved<'a> {
    pub canonical_spec: &'a [u8],
    pub proof_json: &'a str,
    pub governance_status: Option<GovernanceStatus>,
}

/// The ConfigMap with the approved spec and proof; `None` when the agent's name is too long for
/// a Pod label (no Pod can be its).
pub fn approved_config_map(agent: &AgentRef<'_>, approved: &Approved<'_>) -> Option<ConfigMap> {
    if agent.name.len() > MAX_LABEL_VALUE {
        return None;
    }
    Some(ConfigMap {
        metadata: metadata(agent),
        data: Some(BTreeMap::from([
            (
                "spec.json".to_string(),
                String::from_utf8_lossy(approved.canonical_spec).into_owned(),
            ),
            ("proof.json".to_string(), approved.proof_json.to_string()),
            (
                "governanceStatus".to_string(),
                approved
                    .governance_status
                    .map_or("", GovernanceStatus::as_str)
                    .to_string(),
            ),
        ])),
        ..ConfigMap::default()
    })
}

/// The Deployment of a managed agent with `replicas` Pods (0 while it may not run); `None` when
/// the agent's name is too long for a Pod label.
pub fn deployment(
    agent: &AgentRef<'_>,
    managed: &ManagedRuntime,
    spec_hash: &str,
    replicas: i32,
) -> Option<Deployment> {
    if agent.name.len() > MAX_LABEL_VALUE {
        return None;
    }
    let pod_labels = BTreeMap::from([
        (AGENT_LABEL.to_string(), agent.name.to_string()),
        (MANAGED_BY_LABEL.to_string(), MANAGER.to_string()),
    ]);
    let name = workload_name(agent.name);
    let mut metadata = metadata(agent);
    if let Some(labels) = metadata.labels.as_mut() {
        labels.insert(RUNNING_LABEL.to_string(), (replicas > 0).to_string());
    }
    Some(Deployment {
        metadata,
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(pod_labels.clone()),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(BTreeMap::from([(
                        SPEC_HASH_ANNOTATION.to_string(),
                        spec_hash.to_string(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(managed, &name)),
            },
            ..DeploymentSpec::default()
        },
        status: None,
    })
}

fn metadata(agent: &AgentRef<'_>) -> ObjectMeta {
    ObjectMeta {
        name: Some(workload_name(agent.name)),
        namespace: Some(agent.namespace.to_string()),
        labels: Some(BTreeMap::from([
            (MANAGED_BY_LABEL.to_string(), MANAGER.to_string()),
            (AGENT_LABEL.to_string(), agent.name.to_string()),
        ])),
        owner_references: Some(vec![owner(agent)]),
        ..ObjectMeta::default()
    }
}

fn pod_spec(managed: &ManagedRuntime, config_map: &str) -> PodSpec {
    PodSpec {
        containers: managed.containers.iter().map(container).collect(),
        service_account_name: managed.service_account_name.clone(),
        automount_service_account_token: Some(
            managed.automount_service_account_token.unwrap_or(false),
        ),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(NON_ROOT),
            run_as_group: Some(NON_ROOT),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..PodSecurityContext::default()
        }),
        volumes: Some(vec![
            Volume {
                name: "approved".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: config_map.to_string(),
                    // The API server's default, spelled out so the stored volume equals this.
                    default_mode: Some(0o644),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            Volume {
                name: "tmp".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            },
        ]),
        ..PodSpec::default()
    }
}

fn container(c: &ManagedContainer) -> Container {
    let quantities = |amounts: Option<&ResourceAmounts>| {
        let by_name = amounts?.by_name();
        (!by_name.is_empty()).then(|| {
            by_name
                .into_iter()
                .map(|(name, amount)| (name, Quantity(amount)))
                .collect()
        })
    };
    Container {
        name: c.name.clone(),
        image: Some(c.image.clone()),
        command: (!c.command.is_empty()).then(|| c.command.clone()),
        args: (!c.args.is_empty()).then(|| c.args.clone()),
        env: (!c.env.is_empty()).then(|| {
            c.env
                .iter()
                .map(|e| EnvVar {
                    name: e.name.clone(),
                    value: Some(e.value.clone()),
                    value_from: None,
                })
                .collect()
        }),
        // Always set, as the API server stores it (`{}` when empty), so the stored Deployment
        // compares equal to the wanted one.
        resources: Some(ResourceRequirements {
            requests: quantities(c.resources.as_ref().and_then(|r| r.requests.as_ref())),
            limits: quantities(c.resources.as_ref().and_then(|r| r.limits.as_ref())),
            claims: None,
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "approved".into(),
                mount_path: APPROVED_MOUNT.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "tmp".into(),
                mount_path: "/tmp".into(),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    }
}

#[cfg(test)]
#[path = "workload_tests.rs"]
mod tests;
