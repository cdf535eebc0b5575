//! Upstream CRDs on the test cluster, as their projects publish them: each fetched (once,
//! cached, hashes pinned) by a script under `e2e/controlplane/` that prints the file's path.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};

use crate::repo_root;

/// The CRD file `script` (relative to the repository) fetches into the cache if it is not there
/// yet (the script checks the pinned hashes either way).
pub fn crd_file(script: &str) -> Result<PathBuf> {
    let out = Command::new("bash")
        .arg(repo_root().join(script))
        .output()
        .with_context(|| format!("run {script}"))?;
    if !out.status.success() {
        bail!(
            "{script} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !path.is_file() {
        bail!("{script} printed {}, which is no file", path.display());
    }
    Ok(path)
}

/// Install (server-side apply) the CRD `name` that `script` fetches, as published, and wait
/// until it is Established. Idempotent: tests running at once may each call it.
pub async fn install_crd(client: &Client, script: &str, name: &str) -> Result<()> {
    let path = crd_file(script)?;
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let crd: CustomResourceDefinition =
        serde_yaml::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        name,
        &PatchParams::apply("agentgov-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .with_context(|| format!("apply CRD {name}"))?;
    crate::wait_established(&api, name).await
}
