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

/// What the host sees of the network of every Pod `api` lists, for a failure's message: each
/// Pod's IP, containers and restarts; whether its declared ports take a connection and its
/// liveness probe answers (from the host, as the kubelet probes); the neighbour entry and the
/// packet filter rules (kube-router's NetworkPolicy chains) naming its IP; and the last of
/// kube-router's warnings and errors and of the kubelet's failed probes. A Pod the kubelet could not probe once (its
/// probes timed out while the process served, on an IP an earlier Pod had) left no more than
/// its restarts behind; this is what tells the network from the Pod.
pub async fn network_report(api: &Api<Pod>) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("== the Pods' network, as the host sees it\n");
    let pods = match api.list(&Default::default()).await {
        Ok(list) => list.items,
        Err(e) => return format!("{out}cannot list the Pods: {e}\n"),
    };
    let rules = command_output("iptables-save", &[]);
    for pod in &pods {
        let status = pod.status.clone().unwrap_or_default();
        let ip = status.pod_ip.unwrap_or_default();
        let containers: Vec<String> = status
            .container_statuses
            .unwrap_or_default()
            .iter()
            .map(|c| {
                let last = c
                    .last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .map(|t| format!(", last ended {:?} ({})", t.reason, t.exit_code))
                    .unwrap_or_default();
                format!(
                    "{} ready={} restarts={}{last}",
                    c.name, c.ready, c.restart_count
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "Pod {} ip={ip} phase={:?}: {}",
            pod.metadata.name.as_deref().unwrap_or_default(),
            status.phase,
            containers.join("; ")
        );
        if ip.is_empty() {
            continue;
        }
        for container in pod.spec.iter().flat_map(|s| &s.containers) {
            for port in container.ports.iter().flatten() {
                let address = format!("{ip}:{}", port.container_port);
                let connect = match address.parse() {
                    Ok(address) => {
                        match std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2))
                        {
                            Ok(_) => "connects".to_string(),
                            Err(e) => format!("does not connect: {e}"),
                        }
                    }
                    Err(e) => format!("not an address: {e}"),
                };
                let _ = writeln!(out, "  tcp {address}: {connect}");
            }
            let liveness = container
                .liveness_probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref());
            if let Some(get) = liveness {
                let port = match &get.port {
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => {
                        n.to_string()
                    }
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name) => {
                        container
                            .ports
                            .iter()
                            .flatten()
                            .find(|p| p.name.as_deref() == Some(name.as_str()))
                            .map_or_else(|| name.clone(), |p| p.container_port.to_string())
                    }
                };
                let url = format!("http://{ip}:{port}{}", get.path.as_deref().unwrap_or("/"));
                let answer = command_output(
                    "curl",
                    &[
                        "-sS",
                        "-m",
                        "2",
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{http_code} in %{time_total} s",
                        &url,
                    ],
                );
                let _ = writeln!(out, "  liveness GET {url}: {}", answer.trim());
            }
        }
        let neighbour = command_output("ip", &["neigh", "show", &ip]);
        let _ = writeln!(out, "  neighbour: {}", neighbour.trim());
        let needle = format!("{ip}/32");
        for rule in rules
            .lines()
            .filter(|l| l.contains(&needle) || l.contains(&format!(" {ip} ")))
        {
            let _ = writeln!(out, "  rule: {rule}");
        }
    }
    let logs = std::path::PathBuf::from(node_env("AGENTGOV_NODE_DIR")).join("logs");
    // klog's severity is the line's first letter; at -v=1 the rest is every sync.
    let _ = writeln!(out, "== kube-router's warnings and errors, last lines");
    out.push_str(&last_lines(&logs.join("kube-router.log"), 30, |l| {
        l.starts_with('W') || l.starts_with('E')
    }));
    let _ = writeln!(out, "== the kubelet's failed probes, last lines");
    out.push_str(&last_lines(&logs.join("kubelet.log"), 20, |l| {
        l.contains("Probe failed") || l.contains("probe failed")
    }));
    out
}

/// A command's stdout and stderr, or why it did not run.
fn command_output(program: &str, args: &[&str]) -> String {
    match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => format!("{program} did not run: {e}"),
    }
}

/// The last `n` lines of the file that `keep` keeps, each with a newline.
fn last_lines(path: &std::path::Path, n: usize, keep: impl Fn(&str) -> bool) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let kept: Vec<&str> = text.lines().filter(|l| keep(l)).collect();
            let mut out = kept[kept.len().saturating_sub(n)..].join("\n");
            out.push('\n');
            out
        }
        Err(e) => format!("{}: {e}\n", path.display()),
    }
}

/// The host's ICMP counters that say whether it sent "unreachable" answers or held them back
/// (its network namespace's `/proc/net/snmp`): `OutDestUnreachs`, `OutRateLimitHost` and
/// `OutRateLimitGlobal`, in that order.
pub fn icmp_counters() -> Result<[u64; 3]> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").context("/proc/net/snmp")?;
    icmp_counters_of(&snmp)
}

fn icmp_counters_of(snmp: &str) -> Result<[u64; 3]> {
    let mut rows = snmp.lines().filter(|l| l.starts_with("Icmp:"));
    let (Some(names), Some(values)) = (rows.next(), rows.next()) else {
        bail!("no Icmp rows in /proc/net/snmp");
    };
    let value = |name: &str| -> Result<u64> {
        let column = names
            .split_whitespace()
            .position(|n| n == name)
            .with_context(|| format!("no {name} in /proc/net/snmp"))?;
        let value = values
            .split_whitespace()
            .nth(column)
            .with_context(|| format!("no value for {name} in /proc/net/snmp"))?;
        value
            .parse()
            .with_context(|| format!("{name} = {value:?} in /proc/net/snmp"))
    };
    Ok([
        value("OutDestUnreachs")?,
        value("OutRateLimitHost")?,
        value("OutRateLimitGlobal")?,
    ])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn icmp_counters_are_read_by_name_from_the_icmp_rows() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
            Icmp: InMsgs OutMsgs OutRateLimitGlobal OutRateLimitHost OutDestUnreachs\n\
            Icmp: 3 72 5 9 70\n\
            IcmpMsg: InType3 OutType3\nIcmpMsg: 3 72\n";
        assert_eq!(icmp_counters_of(snmp).unwrap(), [70, 9, 5]);
        assert!(icmp_counters_of("Ip: A\nIp: 1\n").is_err());
        assert!(icmp_counters_of("Icmp: InMsgs\nIcmp: 3\n").is_err());
        // The host's own file has them.
        icmp_counters().unwrap();
    }
}
