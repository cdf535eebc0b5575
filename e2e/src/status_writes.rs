//! What the API server's write ceiling (`apiserver-ceiling`) and the revalidation benchmark
//! (`revalidation-bench`) share, so that the two are measured the same way: the watch that
//! tells when every agent has been seen signed under a policy hash (the end of both clocks),
//! the size of a status write as it goes over the wire, and a process's memory.
//! Included by both binaries with `#[path]`.

use std::collections::HashSet;
use std::time::Instant;

use agentgov_api::Agent;
use agentgov_api::agent::AgentStatus;
use anyhow::{Context as _, Result, bail};
use futures::{StreamExt, TryStreamExt};
use kube::ResourceExt;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};

/// A task that watches the agents from now on and answers when each of the `n` has been seen
/// signed against `hash`: when the last of them was. A watch the API server ends (it drops a
/// watcher that falls behind, as at its write ceiling on a busy machine) is resumed from the
/// last version seen; one too old to resume is replaced by a list.
pub async fn watch_signed(
    agents: &Api<Agent>,
    hash: &str,
    n: usize,
) -> Result<tokio::task::JoinHandle<Result<Instant>>> {
    let from = agents
        .list_metadata(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .context("a list without a resourceVersion")?;
    let (agents, hash) = (agents.clone(), hash.to_string());
    Ok(tokio::spawn(async move {
        let signed_under = |agent: &Agent| {
            agent
                .status
                .as_ref()
                .and_then(|s| s.proof.as_ref())
                .is_some_and(|p| p.policy_hash == hash)
        };
        let mut signed = HashSet::new();
        let mut version = from;
        for _ in 0..100 {
            let mut events = agents
                .watch(&WatchParams::default().timeout(290), &version)
                .await?
                .boxed();
            while let Some(event) = events.try_next().await? {
                let agent = match event {
                    WatchEvent::Added(a) | WatchEvent::Modified(a) => a,
                    WatchEvent::Bookmark(b) => {
                        version = b.metadata.resource_version;
                        continue;
                    }
                    WatchEvent::Error(e) if e.code == 410 => {
                        // Too old to resume: what the watch missed is in a list.
                        let list = agents.list(&ListParams::default()).await?;
                        for agent in list.items.iter().filter(|a| signed_under(a)) {
                            signed.insert(agent.name_any());
                        }
                        version = list
                            .metadata
                            .resource_version
                            .context("a list without a resourceVersion")?;
                        break;
                    }
                    WatchEvent::Error(e) => bail!("watch error: {e:?}"),
                    WatchEvent::Deleted(_) => continue,
                };
                if let Some(v) = agent.resource_version() {
                    version = v;
                }
                if signed_under(&agent) {
                    signed.insert(agent.name_any());
                }
                if signed.len() == n {
                    return Ok(Instant::now());
                }
            }
            if signed.len() == n {
                return Ok(Instant::now());
            }
        }
        bail!(
            "the watch ended 100 times with {} of {n} agents signed",
            signed.len()
        )
    }))
}

/// The body of the status write the operator makes for `status`: a JSON merge patch of the
/// status subresource naming every field.
pub fn status_body(status: &AgentStatus) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(&serde_json::json!({
        "status": status.as_merge_patch()?
    }))?)
}

/// A memory figure (`VmRSS:`, `VmHWM:`) of a process, in KiB.
pub fn memory_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
