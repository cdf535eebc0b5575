//! Helpers for the tests that run Pods on the single node (`e2e/node/node.sh exec`): the node's
//! environment, Pods of the test image, `kubectl exec` and logs. The node tests fail, never
//! skip, when there is no node.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams, PostParams};
use serde_json::json;

use crate::wait_for;

/// A variable `e2e/node/node.sh` exports; panics with how to get one when it is missing.
pub fn node_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: the node tests run on a real node, through `make node-e2e` \
             (e2e/node/node.sh exec -- cargo test -p agentgov-e2e --features node --test node)"
        )
    })
}

/// The busybox image the node imported (`AGENTGOV_TEST_IMAGE`).
pub fn test_image() -> String {
    node_env("AGENTGOV_TEST_IMAGE")
}

/// A Pod of the test image running `command`, restricted-compliant, never pulled.
pub fn busybox_pod(name: &str, labels: serde_json::Value, command: &[&str]) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "main",
                "image": test_image(),
                "imagePullPolicy": "Never",
                "command": command,
                "securityContext": {"allowPrivilegeEscalation": false,
                                    "capabilities": {"drop": ["ALL"]}}
            }]
        }
    }))?)
}

/// Create the Pod and wait until it is Ready; returns it as it is then (with its IP).
pub async fn run_pod(api: &Api<Pod>, pod: &Pod, timeout: Duration) -> Result<Pod> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    api.create(&PostParams::default(), pod)
        .await
        .with_context(|| format!("create Pod {name}"))?;
    wait_ready(api, &name, timeout).await
}

/// Wait until the Pod is Ready; on timeout the error carries its phase and container states.
pub async fn wait_ready(api: &Api<Pod>, name: &str, timeout: Duration) -> Result<Pod> {
    let found = wait_for(timeout, || async move {
        let pod = api.get(name).await.ok()?;
        let ready = pod
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(pod)
    })
    .await;
    match found {
        Ok(pod) => Ok(pod),
        Err(_) => {
            let status = api.get(name).await.ok().and_then(|p| p.status);
            bail!("Pod {name} did not get Ready in {timeout:?}; status: {status:#?}")
        }
    }
}

/// The Pod's IP.
pub fn pod_ip(pod: &Pod) -> Result<String> {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .context("the Pod has no IP")
}

/// The output of a command run in the Pod's first container (`kubectl exec`): exit status,
/// stdout and stderr together.
pub struct ExecOutput {
    pub success: bool,
    pub output: String,
}

pub fn kubectl_exec(namespace: &str, pod: &str, command: &[&str]) -> Result<ExecOutput> {
    let out = Command::new("kubectl")
        .args(["exec", "-n", namespace, pod, "--"])
        .args(command)
        .stdin(Stdio::null())
        .output()
        .context("kubectl comes with the control plane: run through `make node-e2e`")?;
    Ok(ExecOutput {
        success: out.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    })
}

/// Wait until the Pod's log (through the API server and the kubelet) contains `needle`.
pub async fn wait_log(
    api: &Api<Pod>,
    name: &str,
    needle: &str,
    timeout: Duration,
) -> Result<String> {
    let found = wait_for(timeout, || async move {
        let log = api.logs(name, &LogParams::default()).await.ok()?;
        log.contains(needle).then_some(log)
    })
    .await;
    match found {
        Ok(log) => Ok(log),
        Err(_) => {
            let log = api.logs(name, &LogParams::default()).await;
            bail!("the log of Pod {name} never contained {needle:?}; it is: {log:?}")
        }
    }
}
