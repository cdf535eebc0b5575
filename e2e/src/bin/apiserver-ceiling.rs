//! The API server's own ceiling for Agent status writes on N fresh Agents (`status_writes::
//! ceiling`: their status merge-patched as fast as a tight client can, at several
//! concurrencies). `make bench` measures it inside `revalidation-bench`, on the agents the
//! operator revalidated; this runs it alone. Run under `e2e/controlplane/cluster.sh exec`.
//!
//! usage: apiserver-ceiling N [CONCURRENCY...]   (default concurrencies: 2 4 8 16 32 64)
//! prints a Markdown row per concurrency, `ceiling| c | writes/s | s for N writes |`, then
//! `ceiling-best| N | c | writes/s | s for N writes | body bytes |`

#[path = "../status_writes.rs"]
#[allow(dead_code)] // what only the revalidation bench uses
mod status_writes;

use std::time::Instant;

use agentgov_api::Agent;
use agentgov_e2e::{TestNamespace, client, install_crds, manifest};
use anyhow::{Context as _, Result, bail};
use kube::api::{Api, ListParams};

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .context("usage: apiserver-ceiling N [CONCURRENCY...]")?
        .parse()?;
    let mut concurrencies: Vec<usize> = args.map(|c| c.parse()).collect::<Result<_, _>>()?;
    if concurrencies.is_empty() {
        concurrencies = status_writes::CEILING_CONCURRENCIES.to_vec();
    }
    let client = client().await;
    install_crds(&client).await?;
    let ns = TestNamespace::new(&client, &format!("ceiling-{n}")).await?;
    let spec = manifest::<Agent>("examples/agent-governed.yaml")?.spec;
    let started = Instant::now();
    agentgov_e2e::create_agents(&ns, "agent", n, &spec).await?;
    let agents: Api<Agent> = ns.api();
    let list = agents.list(&ListParams::default()).await?;
    if list.items.len() != n {
        bail!("created {n} agents, listed {}", list.items.len());
    }
    eprintln!(
        "created {n} agents in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    status_writes::ceiling(&agents, &concurrencies)
        .await
        .map(drop)
}
