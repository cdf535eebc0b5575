//! Revalidation benchmark on the real control plane (`make bench`): N governed agents, a
//! policy change, and the time until every agent is judged against the new policy, with the
//! operator's peak memory. Then the webhook's memory with those N agents cached: started on
//! the same namespace, once its caches have synced and again after it has reviewed one Pod of
//! each agent (every memo entry filled). Run under `e2e/controlplane/cluster.sh exec`.
//!
//! usage: revalidation-bench N
//! prints two Markdown rows, `revalidation| ...` and `webhook| ...`

use std::time::{Duration, Instant};

use agentgov_api::policy::default_bundle_spec;
use agentgov_api::{Agent, PolicyBundle};
use agentgov_e2e::operator::{KeyFile, Operator, log_dir};
use agentgov_e2e::webhook::{Webhook, agent_pod};
use agentgov_e2e::{TestNamespace, client, install_crds, manifest, wait_for};
use anyhow::{Context as _, Result, bail};
use futures::{StreamExt, TryStreamExt, stream};
use kube::api::{Api, ListParams};

#[tokio::main]
async fn main() -> Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .context("usage: revalidation-bench N")?
        .parse()?;
    let client = client().await;
    install_crds(&client).await?;
    let ns = TestNamespace::new(&client, &format!("bench-{n}")).await?;
    let keys = KeyFile::new(&log_dir().join(format!("{}-keys", ns.name)), "bench")?;
    let bundles: Api<PolicyBundle> = ns.api();
    agentgov_e2e::apply_bundle(&ns, default_bundle_spec()).await?;
    let spec = manifest::<Agent>("examples/agent-governed.yaml")?.spec;
    let agents: Api<Agent> = ns.api();
    let started = Instant::now();
    agentgov_e2e::create_agents(&ns, "agent", n, &spec).await?;
    agentgov_e2e::approve_agents(&ns, "agent", n, &spec).await?;
    eprintln!(
        "created {n} agents in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let mut operator = Operator::start(&ns.name, &keys.path, "bench", &[])?;
    let pid = operator.pid();
    let first = default_bundle_spec();
    let first_hash = agentgov_api::hash::policy_hash(&first)?;
    let started = Instant::now();
    wait_summary(&bundles, &first_hash, n, Duration::from_secs(600)).await?;
    let initial = started.elapsed();
    eprintln!(
        "initial promotion of {n} agents: {:.1}s",
        initial.as_secs_f64()
    );

    // The policy change: a new limit; every agent must be re-signed against the new hash.
    let mut second = default_bundle_spec();
    second.version = "bench-2".into();
    second.data.max_monthly_budget_usd = 5000.0;
    let second_hash = agentgov_api::hash::policy_hash(&second)?;
    let started = Instant::now();
    agentgov_e2e::apply_bundle(&ns, second).await?;
    wait_summary(&bundles, &second_hash, n, Duration::from_secs(600)).await?;
    let converged = started.elapsed();
    let list = agents.list(&ListParams::default()).await?;
    let stale = list
        .items
        .iter()
        .filter(|a| {
            a.status
                .as_ref()
                .and_then(|s| s.proof.as_ref())
                .is_none_or(|p| p.policy_hash != second_hash)
        })
        .count();
    if stale > 0 {
        bail!("{stale} agents are not signed against the new policy");
    }
    let peak_kib = memory_kib(pid, "VmHWM:").unwrap_or(0);
    operator.kill();
    println!(
        "revalidation| {n} | {:.1} s | {:.1} s | {:.0} | {} MiB |",
        initial.as_secs_f64(),
        converged.as_secs_f64(),
        n as f64 / converged.as_secs_f64(),
        peak_kib / 1024
    );
    webhook_memory(&ns, &keys, n).await
}

/// The webhook's resident memory with the namespace's N signed agents cached.
async fn webhook_memory(ns: &TestNamespace, keys: &KeyFile, n: usize) -> Result<()> {
    let started = Instant::now();
    let mut webhook = Webhook::start(&ns.name, keys, "bench", &[]).await?;
    let ready = started.elapsed();
    let synced_kib = memory_kib(webhook.pid(), "VmRSS:").context("the webhook's VmRSS")?;
    let client = webhook.admission_client().await?;
    let started = Instant::now();
    let allowed: usize = stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            let namespace = ns.name.clone();
            async move { review_pod(&client, &namespace, i).await }
        })
        .buffer_unordered(8)
        .try_fold(0, |count, ok| async move { Ok(count + usize::from(ok)) })
        .await?;
    let reviewing = started.elapsed();
    if allowed != n {
        bail!(
            "the webhook allowed {allowed} of {n} Pods of signed agents; log:\n{}",
            webhook.log_tail(20)
        );
    }
    let reviewed_kib = memory_kib(webhook.pid(), "VmRSS:").context("the webhook's VmRSS")?;
    let peak_kib = memory_kib(webhook.pid(), "VmHWM:").context("the webhook's VmHWM")?;
    webhook.kill();
    println!(
        "webhook| {n} | {:.1} s | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.0} |",
        ready.as_secs_f64(),
        synced_kib as f64 / 1024.0,
        reviewed_kib as f64 / 1024.0,
        peak_kib as f64 / 1024.0,
        n as f64 / reviewing.as_secs_f64(),
    );
    Ok(())
}

/// Send the webhook, as the API server would, the review of a Pod of agent `i`; whether it
/// was allowed.
async fn review_pod(client: &kube::Client, namespace: &str, i: usize) -> Result<bool> {
    let agent = format!("agent-{i:05}");
    let mut pod = agent_pod(&format!("{agent}-pod"), &agent);
    pod.metadata.namespace = Some(namespace.to_string());
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("bench-{i}"),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
        }
    });
    let request = http::Request::post("/validate/pods")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&review)?)?;
    let answer: serde_json::Value = serde_json::from_str(&client.request_text(request).await?)?;
    Ok(answer["response"]["allowed"] == serde_json::json!(true))
}

async fn wait_summary(
    bundles: &Api<PolicyBundle>,
    hash: &str,
    n: usize,
    timeout: Duration,
) -> Result<()> {
    wait_for(timeout, || {
        let bundles = bundles.clone();
        async move {
            let s = bundles
                .get("default")
                .await
                .ok()?
                .status?
                .last_revalidation?;
            (s.policy_hash == hash && usize::try_from(s.valid + s.restricted).ok()? == n)
                .then_some(())
        }
    })
    .await
    .with_context(|| format!("revalidation against {hash} did not finish"))
}

/// A memory figure (`VmRSS:`, `VmHWM:`) of a process, in KiB.
fn memory_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
