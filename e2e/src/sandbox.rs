//! agent-sandbox (kubernetes-sigs/agent-sandbox) on the test cluster: its upstream Sandbox CRD,
//! installed from the YAML its Go module publishes (fetched and verified by
//! `e2e/controlplane/agent-sandbox-crd.sh`), and Sandboxes as dynamic objects. No agent-sandbox
//! controller runs: what is tested is admission, which happens before any controller sees a
//! Sandbox.

use std::collections::BTreeMap;
use std::path::PathBuf;

use agentgov_api::agent::AGENT_LABEL;
use anyhow::Result;
use kube::Client;
use kube::api::Api;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

/// The script that fetches the CRD (cached under `.cache/agent-sandbox/`) and prints its path.
pub const CRD_SCRIPT: &str = "e2e/controlplane/agent-sandbox-crd.sh";
/// The CRD's name.
pub const CRD_NAME: &str = "sandboxes.agents.x-k8s.io";

/// Sandbox as the pinned agent-sandbox serves it (v1.0.1: v1beta1 only).
pub fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("agents.x-k8s.io", "v1beta1", "Sandbox"),
        "sandboxes",
    )
}

/// The Sandboxes of `namespace`.
pub fn api(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &resource())
}

/// The upstream CRD file: fetched into the cache by [`CRD_SCRIPT`] if it is not there yet (the
/// script checks the pinned hashes either way).
pub fn crd_file() -> Result<PathBuf> {
    crate::upstream::crd_file(CRD_SCRIPT)
}

/// Install (server-side apply) the upstream Sandbox CRD as published, and wait until it is
/// Established. Idempotent: tests running at once may each call it.
pub async fn install_crd(client: &Client) -> Result<()> {
    crate::upstream::install_crd(client, CRD_SCRIPT, CRD_NAME).await
}

/// A Sandbox `name` whose pod template runs `image` and meets the Pod Security Standards
/// `restricted` level (what a sandbox agent's Pods must meet), with the agent label on the
/// Sandbox and on its pod template as given.
pub fn sandbox(
    name: &str,
    on_sandbox: Option<&str>,
    on_template: Option<&str>,
    image: &str,
) -> DynamicObject {
    let labels = |agent: Option<&str>| {
        let mut labels = BTreeMap::from([("app".to_string(), name.to_string())]);
        if let Some(agent) = agent {
            labels.insert(AGENT_LABEL.to_string(), agent.to_string());
        }
        labels
    };
    let mut spec = crate::webhook::plain_pod(name).spec.unwrap_or_default();
    for container in &mut spec.containers {
        container.image = Some(image.to_string());
    }
    let mut object = DynamicObject::new(name, &resource()).data(json!({
        "spec": {
            "podTemplate": {
                "metadata": {"labels": labels(on_template)},
                "spec": spec,
            }
        }
    }));
    object.metadata.labels = Some(labels(on_sandbox));
    object
}
