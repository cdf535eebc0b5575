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

/// A continuous admission prober: creates the same Pod with `dryRun=All` at a steady rate, so
/// that every request goes through the API server's admission (and the webhook) and nothing is
/// stored. Every request that does not come back allowed is a failure, kept with its message.
/// `stop` lets it run to [`MIN_PROBES`] requests at least: an event shorter than that (a leader
/// failover whose Lease is released at once) is still followed by that many probes.
pub struct Prober {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: tokio::task::JoinHandle<ProbeReport>,
}

#[derive(Debug, Default)]
pub struct ProbeReport {
    pub requests: usize,
    pub failures: Vec<String>,
}

/// The fewest requests a [`Prober`] makes between `start` and the end of `stop`.
pub const MIN_PROBES: usize = 10;

impl Prober {
    pub fn start(api: Api<Pod>, pod: Pod, interval: Duration) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = tokio::spawn(async move {
            let mut report = ProbeReport::default();
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let params = PostParams {
                dry_run: true,
                ..Default::default()
            };
            while !flag.load(Ordering::Relaxed) || report.requests < MIN_PROBES {
                ticker.tick().await;
                report.requests += 1;
                let started = std::time::Instant::now();
                let answer =
                    tokio::time::timeout(Duration::from_secs(15), api.create(&params, &pod)).await;
                let failure = match answer {
                    Ok(Ok(_)) => continue,
                    Ok(Err(e)) => crate::api_error_message(&e),
                    Err(_) => "no answer in 15 s".to_string(),
                };
                report.failures.push(format!(
                    "request {} ({} ms): {failure}",
                    report.requests,
                    started.elapsed().as_millis()
                ));
            }
            report
        });
        Prober { stop, handle }
    }

    pub async fn stop(self) -> Result<ProbeReport> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(self.handle.await?)
    }
}

/// helm (built by hack/tools.sh) in the repository root; its stdout, or an error with stderr.
pub fn helm(args: &[&str]) -> Result<String> {
    let path = crate::repo_root().join(".cache/tools/bin/helm");
    assert!(
        path.exists(),
        "{} is missing: run hack/tools.sh",
        path.display()
    );
    let out = Command::new(&path)
        .args(args)
        .current_dir(crate::repo_root())
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!(
            "helm {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// An mTLS handshake from the host with a Pod's HTTPS port: the server certificate must verify
/// against `ca_file` for `host`, presenting the API server's webhook client certificate.
pub fn tls_handshake(address: &str, host: &str, ca_file: &std::path::Path) -> Result<()> {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", address, "-servername", host])
        .args(["-verify_hostname", host, "-verify_return_error", "-brief"])
        .arg("-CAfile")
        .arg(ca_file)
        .arg("-cert")
        .arg(node_env("AGENTGOV_WEBHOOK_CLIENT_CERT"))
        .arg("-key")
        .arg(node_env("AGENTGOV_WEBHOOK_CLIENT_KEY"))
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!(
            "TLS handshake with {address} as {host}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
