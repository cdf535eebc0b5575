//! The API server's own ceiling for Agent status writes (`make bench`): N Agents, then their
//! status merge-patched as fast as a tight client can, at several concurrencies, each write a
//! real change of the size and shape the operator writes in a revalidation (a governed agent's
//! whole status, re-signed under another policy hash, under the operator's field manager).
//! Bodies are made before the clock starts and answers are read but not decoded: what is left
//! is the API server's (and etcd's) work. Each round ends as a revalidation's does in
//! `revalidation-bench`: when a watch of the namespace has seen every agent signed under the
//! round's hash (the same observer, so the same load on the API server besides the writes).
//! Run under `e2e/controlplane/cluster.sh exec`.
//!
//! usage: apiserver-ceiling N [CONCURRENCY...]   (default concurrencies: 2 4 8 16 32 64)
//! prints a Markdown row per concurrency, `ceiling| c | writes/s | s for N writes |`, then
//! `ceiling-best| N | c | writes/s | s for N writes | body bytes |`

#[path = "../status_writes.rs"]
#[allow(dead_code)] // memory_kib: the revalidation bench's
mod status_writes;

use std::time::{Duration, Instant};

use agentgov_api::agent::{AgentStatus, ApprovalStatus, GovernanceStatus, PolicyRef};
use agentgov_api::conditions::{self, ConditionUpdate, PROMOTED, READY};
use agentgov_api::keyring::{KeyRing, KeyRingConfig, generate_ed25519};
use agentgov_api::proof::{self, Approver, Claims, ProofSubject};
use agentgov_api::{Agent, hash};
use agentgov_e2e::{TestNamespace, client, install_crds, manifest};
use anyhow::{Context as _, Result, bail};
use futures::{StreamExt, TryStreamExt, stream};
use jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

/// The field manager the operator writes status under.
const MANAGER: &str = "agentgov-operator";

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .context("usage: apiserver-ceiling N [CONCURRENCY...]")?
        .parse()?;
    let mut concurrencies: Vec<usize> = args.map(|c| c.parse()).collect::<Result<_, _>>()?;
    if concurrencies.is_empty() {
        concurrencies = vec![2, 4, 8, 16, 32, 64];
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
    let subjects: Vec<(String, String)> = list
        .items
        .iter()
        .map(|a| (a.name_any(), a.metadata.uid.clone().unwrap_or_default()))
        .collect();
    let ring = KeyRing::from_config(&KeyRingConfig {
        active_key_id: Some("ceiling".into()),
        keys: vec![generate_ed25519("ceiling")?],
        revoked: vec![],
    })?;
    let spec_hash = hash::spec_hash(&spec)?;

    let mut best: Option<(usize, f64, usize)> = None;
    for (round, &concurrency) in concurrencies.iter().enumerate() {
        // Every round re-signs under another policy hash: each write changes the object.
        let policy_hash = hash::sha256_hex(format!("ceiling round {round}").as_bytes());
        let bodies = subjects
            .iter()
            .map(|(name, uid)| {
                let status = governed_status(&ring, &ns.name, name, uid, &spec_hash, &policy_hash)?;
                Ok((name.clone(), status_writes::status_body(&status)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let bytes = bodies.iter().map(|(_, b)| b.len()).sum::<usize>() / n.max(1);
        let seen = status_writes::watch_signed(&agents, &policy_hash, n).await?;
        let started = Instant::now();
        let written = write_all(&client, &ns.name, bodies, concurrency).await?;
        let elapsed = tokio::time::timeout(Duration::from_secs(600), seen)
            .await
            .context("the watch did not see every write in 600s")???
            .max(written)
            .duration_since(started);
        let rate = n as f64 / elapsed.as_secs_f64();
        eprintln!(
            "concurrency {concurrency}: {n} writes of {bytes} bytes answered after {:.2}s, all seen after {:.2}s",
            written.duration_since(started).as_secs_f64(),
            elapsed.as_secs_f64()
        );
        println!(
            "ceiling| {concurrency} | {rate:.0} | {:.2} |",
            elapsed.as_secs_f64()
        );
        if best.is_none_or(|(_, r, _)| rate > r) {
            best = Some((concurrency, rate, bytes));
        }
    }
    let (concurrency, rate, bytes) = best.context("no concurrency measured")?;
    println!(
        "ceiling-best| {n} | {concurrency} | {rate:.0} | {:.2} | {bytes} |",
        n as f64 / rate
    );
    Ok(())
}

/// Merge-patch each body onto its Agent's status, `concurrency` at a time; when the last
/// answer came.
async fn write_all(
    client: &Client,
    namespace: &str,
    bodies: Vec<(String, Vec<u8>)>,
    concurrency: usize,
) -> Result<Instant> {
    stream::iter(bodies)
        .map(|(name, body)| {
            let client = client.clone();
            let uri = format!(
                "/apis/agentgov.dev/v1alpha1/namespaces/{namespace}/agents/{name}/status?fieldManager={MANAGER}"
            );
            async move {
                let request = http::Request::patch(uri)
                    .header("content-type", "application/merge-patch+json")
                    .body(body)?;
                client
                    .request_text(request)
                    .await
                    .with_context(|| format!("patch the status of {name}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<()>()
        .await?;
    Ok(Instant::now())
}

/// The status the operator writes for a promoted agent, signed under `policy_hash`.
fn governed_status(
    ring: &KeyRing,
    namespace: &str,
    name: &str,
    uid: &str,
    spec_hash: &str,
    policy_hash: &str,
) -> Result<AgentStatus> {
    let now = Timestamp::now();
    let approvers = [Approver {
        username: "agentgov-admin".into(),
        uid: String::new(),
    }];
    let promotions = [format!("{uid:.8}-promotion-uid-0000-000000000000")];
    let proof = proof::sign(
        ring,
        ProofSubject {
            namespace,
            name,
            uid,
        },
        Claims {
            spec_hash,
            policy_hash,
            approvers: &approvers,
            promotions: &promotions,
        },
        now,
    )?;
    let mut status = AgentStatus {
        governance_status: Some(GovernanceStatus::GovernedValid),
        policy: Some(PolicyRef {
            name: "default".into(),
            version: "1.0.0".into(),
            hash: policy_hash.into(),
        }),
        approval: Some(ApprovalStatus {
            spec_hash: spec_hash.into(),
            required: 1,
            approved_by: vec!["agentgov-admin".into()],
        }),
        observed_generation: Some(1),
        ..AgentStatus::default()
    };
    let message = format!("approved by agentgov-admin; signed by key {}", proof.key_id);
    status.proof = Some(proof);
    for type_ in [PROMOTED, READY] {
        conditions::upsert(
            &mut status.conditions,
            ConditionUpdate {
                type_,
                status: true,
                reason: "Promoted",
                message: message.clone(),
            },
            Some(1),
            now,
        );
    }
    Ok(status)
}
