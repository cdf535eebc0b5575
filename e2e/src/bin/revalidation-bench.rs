//! Revalidation benchmark on the real control plane (`make bench`): N governed agents, a
//! policy change, and the time until every agent is judged against the new policy, with the
//! operator's peak memory. Run under `e2e/controlplane/cluster.sh exec`.
//!
//! usage: revalidation-bench N [--operator PATH]

use std::time::{Duration, Instant};

use agentgov_api::policy::default_bundle_spec;
use agentgov_api::{Agent, PolicyBundle};
use agentgov_e2e::operator::{KeyFile, Operator, log_dir};
use agentgov_e2e::{TestNamespace, client, install_crds, manifest, wait_for};
use anyhow::{Context as _, Result, bail};
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
    let peak_kib = peak_rss_kib(pid).unwrap_or(0);
    operator.kill();
    println!(
        "| {n} | {:.1} s | {:.1} s | {:.0} | {} MiB |",
        initial.as_secs_f64(),
        converged.as_secs_f64(),
        n as f64 / converged.as_secs_f64(),
        peak_kib / 1024
    );
    Ok(())
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

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
