//! What an agent runs (`spec.runtime`), part of the approved and hashed spec, and the pure
//! check that binds a Pod to it: every image a Pod of the agent runs (containers, init and
//! ephemeral containers) must be one the agent approved, by digest.
//!
//! Images are compared as (repository, digest) with Docker's defaults applied (`nginx@...` is
//! `docker.io/library/nginx@...`) and a tag beside the digest ignored (the runtime pulls by the
//! digest then). An image without a digest never matches: a tag can be moved to other content
//! after the approval.
//!
//! The runtime selector (`mode`): `managed`, the operator runs the agent from `managed` (see
//! [`crate::workload`]); `external` (the default), someone else creates its Pods and agentgov
//! only judges them.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the agent's Pods may run.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.mode) || self.mode != 'managed' || has(self.managed)").message("mode: managed needs the managed block (the containers the operator runs)"))]
#[x_kube(validation = Rule::new("!has(self.managed) || self.managed.containers.all(c, c.image in self.images)").message("every managed container's image must be one of runtime.images, written the same way"))]
pub struct RuntimeSpec {
    /// The container images the agent's Pods may run (containers, init containers and
    /// ephemeral containers alike), each pinned by digest: `name@sha256:<64 hex digits>`. A
    /// Pod labelled for the agent that runs any other image is refused
    /// (`ADMISSION_DENY_RUNTIME_MISMATCH`). An empty list approves no image.
    #[schemars(length(max = 32), inner(length(min = 1, max = 512)))]
    #[x_kube(validation = Rule::new("self.all(i, i.matches('^[^@ ]+@sha256:[0-9a-f]{64}$'))").message("every image must be pinned by digest, as name@sha256:<64 hex digits>: a tag alone can be moved to other content after the approval"))]
    pub images: Vec<String>,
    /// Who runs the agent: `managed` (the operator keeps a Deployment from `managed`) or
    /// `external` (someone else creates its Pods; agentgov judges them). Absent: external.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<RuntimeMode>,
    /// What the operator runs in `managed` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedRuntime>,
}

impl RuntimeSpec {
    /// The managed block, when the operator runs the agent.
    pub fn managed(&self) -> Option<&ManagedRuntime> {
        (self.mode == Some(RuntimeMode::Managed))
            .then_some(self.managed.as_ref())
            .flatten()
    }
}

/// The seed's runtime selector.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeMode {
    Managed,
    External,
}

/// The Pod template subset the operator runs for a managed agent. Its Pods are hardened (non-root,
/// read-only root filesystem, no privilege escalation, no capabilities, seccomp RuntimeDefault)
/// and get the approved spec and its proof read-only in `/etc/agentgov`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedRuntime {
    /// The agent's containers (1 to 8).
    #[schemars(length(min = 1, max = 8))]
    #[x_kube(validation = Rule::new("self.all(c, self.exists_one(d, d.name == c.name))").message("container names must be unique"))]
    pub containers: Vec<ManagedContainer>,
    /// The ServiceAccount the Pods run as (the namespace's `default` if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,
    /// Whether the Pods get a service-account token (default: no).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automount_service_account_token: Option<bool>,
    /// Pods while the agent may run (default 1; 0 to 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 16))]
    pub replicas: Option<i32>,
}

/// One container of a managed agent.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedContainer {
    /// The container's name (a DNS label).
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("a container name is a DNS label: lower-case letters, digits and '-'"))]
    pub name: String,
    /// One of `runtime.images`, written the same way.
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    pub args: Vec<String>,
    /// Literal environment variables (no references: what the agent reads is in its approved
    /// spec).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub env: Vec<ManagedEnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ManagedResources>,
}

/// A literal environment variable.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedEnvVar {
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new("self.matches('^[-._a-zA-Z][-._a-zA-Z0-9]*$')").message("an environment variable name is letters, digits, '_', '-' and '.', not starting with a digit"))]
    pub name: String,
    #[serde(default)]
    #[schemars(length(max = 32768))]
    pub value: String,
}

/// Requests and limits of the managed container.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedResources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceAmounts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceAmounts>,
}

/// Amounts of `cpu`, `memory` and `ephemeral-storage`, each a quantity string such as `500m`
/// or `256Mi`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceAmounts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new("isQuantity(self)").message("cpu must be a quantity string such as '500m' or '2'"))]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new("isQuantity(self)").message("memory must be a quantity string such as '256Mi'"))]
    pub memory: Option<String>,
    #[serde(
        default,
        rename = "ephemeral-storage",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new("isQuantity(self)").message("ephemeral-storage must be a quantity string such as '1Gi'"))]
    pub ephemeral_storage: Option<String>,
}

impl ResourceAmounts {
    /// The amounts set, by resource name.
    pub fn by_name(&self) -> BTreeMap<String, String> {
        [
            ("cpu", &self.cpu),
            ("memory", &self.memory),
            ("ephemeral-storage", &self.ephemeral_storage),
        ]
        .into_iter()
        .filter_map(|(name, amount)| Some((name.to_string(), amount.clone()?)))
        .collect()
    }
}

/// An image reference split into what identifies its content: the repository with Docker's
/// defaults applied, and the digest (if it has one).
#[derive(Clone, Debug, PartialEq, Eq)]
struct ImageRef {
    repository: String,
    digest: Option<String>,
}

fn parse(image: &str) -> ImageRef {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest.to_string())),
        None => (image, None),
    };
    // A tag follows the last ':' of the last path component (a ':' before a '/' is a port).
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let name = match name[last_slash..].rfind(':') {
        Some(colon) => &name[..last_slash + colon],
        None => name,
    };
    let repository = match name.split_once('/') {
        None => format!("docker.io/library/{name}"),
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            name.to_string()
        }
        Some(_) => format!("docker.io/{name}"),
    };
    ImageRef { repository, digest }
}

/// The images among `images` (a Pod's, each with where it is, such as
/// `spec.containers[0] (agent)`: see [`crate::pod_security::images`]) that the approved runtime
/// does not list, one sentence each; empty when all are approved. `None`: the agent binds no
/// images (`spec.runtime` absent).
pub fn unapproved_images<'a, At: std::fmt::Display>(
    runtime: Option<&RuntimeSpec>,
    images: impl IntoIterator<Item = (At, &'a str)>,
) -> Vec<String> {
    let Some(runtime) = runtime else {
        return Vec::new();
    };
    let approved: Vec<ImageRef> = runtime.images.iter().map(|i| parse(i)).collect();
    images
        .into_iter()
        .filter_map(|(at, image)| {
            let wanted = parse(image);
            if wanted.digest.is_none() {
                return Some(format!(
                    "{at} runs {image:?}, which is not pinned by digest (the agent's approved images are)"
                ));
            }
            (!approved.contains(&wanted))
                .then(|| format!("{at} runs {image:?}, which is not among the agent's approved images"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn runtime(images: &[&str]) -> RuntimeSpec {
        RuntimeSpec {
            images: images.iter().map(|i| i.to_string()).collect(),
            ..RuntimeSpec::default()
        }
    }

    fn check(approved: &[&str], image: &str) -> Vec<String> {
        unapproved_images(
            Some(&runtime(approved)),
            [("spec.containers[0] (c)".to_string(), image)],
        )
    }

    #[test]
    fn an_approved_digest_passes_written_as_docker_would_read_it() {
        let approved = format!("nginx@{DIGEST}");
        for same in [
            format!("nginx@{DIGEST}"),
            format!("docker.io/library/nginx@{DIGEST}"),
            format!("library/nginx@{DIGEST}"),
            format!("nginx:1.27@{DIGEST}"),
        ] {
            assert!(check(&[&approved], &same).is_empty(), "{same}");
        }
        let registry = format!("registry.local:5000/team/agent@{DIGEST}");
        assert!(
            check(
                &[&registry],
                &format!("registry.local:5000/team/agent:v2@{DIGEST}")
            )
            .is_empty()
        );
    }

    #[test]
    fn another_image_digest_or_a_tag_alone_is_refused() {
        let approved = format!("ghcr.io/acme/agent@{DIGEST}");
        let other_digest = DIGEST.replace("0123", "4567");
        for image in [
            format!("ghcr.io/acme/agent@{other_digest}"),
            format!("ghcr.io/acme/other@{DIGEST}"),
            format!("docker.io/acme/agent@{DIGEST}"),
            "ghcr.io/acme/agent:latest".to_string(),
            "ghcr.io/acme/agent".to_string(),
        ] {
            let found = check(&[&approved], &image);
            assert_eq!(found.len(), 1, "{image}");
            assert!(
                found[0].starts_with("spec.containers[0] (c) runs"),
                "{}",
                found[0]
            );
        }
        assert!(
            check(&[&approved], "ghcr.io/acme/agent:latest")[0].contains("not pinned by digest")
        );
    }

    #[test]
    fn an_empty_list_approves_nothing_and_no_runtime_binds_nothing() {
        assert_eq!(check(&[], &format!("nginx@{DIGEST}")).len(), 1);
        assert!(unapproved_images(None, [("x".to_string(), "anything:latest")]).is_empty());
    }

    #[test]
    fn a_port_is_not_a_tag() {
        assert_eq!(
            parse("localhost:5000/agent").repository,
            "localhost:5000/agent"
        );
        assert_eq!(
            parse("localhost:5000/agent:v1").repository,
            "localhost:5000/agent"
        );
        assert_eq!(parse("team/agent:v1").repository, "docker.io/team/agent");
    }
}
