//! What the API server's write ceiling (`apiserver-ceiling`) and the revalidation benchmark
//! (`revalidation-bench`) share, so that the two are measured the same way: the watch that
//! tells when every agent has been seen signed under a policy hash (the end of both clocks),
//! the size of a status write as it goes over the wire, and a process's memory.
//! Included by both binaries with `#[path]`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use agentgov_api::agent::{AgentStatus, ApprovalStatus, GovernanceStatus, PolicyRef};
use agentgov_api::conditions::{self, ConditionUpdate, PROMOTED, READY};
use agentgov_api::keyring::{KeyRing, KeyRingConfig, generate_ed25519};
use agentgov_api::proof::{self, Approver, Claims, ProofSubject};
use agentgov_api::{Agent, hash};
use anyhow::{Context as _, Result, bail};
use futures::{StreamExt, TryStreamExt, stream};
use jiff::Timestamp;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::{Client, ResourceExt};

/// The field manager the operator writes status under.
const MANAGER: &str = "agentgov-operator";

/// The concurrencies the ceiling is measured at, unless told otherwise.
pub const CEILING_CONCURRENCIES: [usize; 6] = [2, 4, 8, 16, 32, 64];

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

/// A memory figure (`VmRSS:`, `VmHWM:`, `RssAnon:`, `RssFile:`) of a process, in KiB.
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

/// The CPU seconds the loopback control plane's kube-apiserver and etcd have used so far
/// (their pids from the cluster's state dir, `AGENTGOV_CLUSTER_DIR`).
pub fn control_plane_cpu() -> Result<[f64; 2]> {
    let dir = std::path::PathBuf::from(
        std::env::var_os("AGENTGOV_CLUSTER_DIR")
            .context("AGENTGOV_CLUSTER_DIR is unset: run under e2e/controlplane/cluster.sh exec")?,
    );
    let of = |name: &str| -> Result<f64> {
        let pid = std::fs::read_to_string(dir.join("pids").join(format!("{name}.pid")))
            .with_context(|| format!("the pid of {name}"))?;
        let pid = pid
            .trim()
            .parse()
            .with_context(|| format!("the pid of {name}"))?;
        agentgov_e2e::process::cpu_time(pid)
            .map(|t| t.as_secs_f64())
            .with_context(|| format!("the CPU time of {name}"))
    };
    Ok([of("kube-apiserver")?, of("etcd")?])
}

/// Milliseconds of CPU per write of kube-apiserver and etcd between two [`control_plane_cpu`]
/// readings.
pub fn cpu_per_write(before: [f64; 2], after: [f64; 2], writes: usize) -> [f64; 2] {
    [0, 1].map(|i| (after[i] - before[i]) * 1000.0 / writes.max(1) as f64)
}

/// The API server's own ceiling for Agent status writes: the agents' statuses merge-patched as
/// fast as a tight client can, at each of `concurrencies`, each write a real change of the size
/// and shape the operator writes in a revalidation (a governed agent's whole status, re-signed
/// under another policy hash, under the operator's field manager). Bodies are made before the
/// clock starts and answers are read but not decoded: what is left is the API server's (and
/// etcd's) work. Each round ends as a revalidation's does: when a watch of the namespace has
/// seen every agent signed under the round's hash. Each concurrency is measured over each of
/// [`transports`] (HTTP/1.1, a connection per write in flight, and HTTP/2, all on one, as the
/// operator writes). Prints
/// `ceiling| c/transport | writes/s | s | kube-apiserver CPU ms/write | etcd CPU ms/write |` per
/// round, then `ceiling-best| N | c/transport | writes/s | s for N writes | body bytes |
/// kube-apiserver ms | etcd ms |`. The agents are left signed by a key no one else holds.
/// Answers the writer and the settings, fastest first, for more rounds at them.
pub async fn ceiling(
    agents: &Api<Agent>,
    concurrencies: &[usize],
) -> Result<(StatusWriter, Vec<Setting>)> {
    let mut writer = StatusWriter::new(agents).await?;
    let mut rounds: Vec<(Setting, Round)> = Vec::new();
    for concurrency in concurrencies {
        for transport in 0..writer.transports.len() {
            let setting = Setting {
                concurrency: *concurrency,
                transport,
            };
            let round = writer.round(setting).await?;
            println!(
                "ceiling| {} | {:.0} | {:.2} | {:.2} | {:.2} |",
                round.label, round.rate, round.seconds, round.apiserver, round.etcd
            );
            rounds.push((setting, round));
        }
    }
    // Fastest first.
    rounds.sort_by(|(_, a), (_, b)| b.rate.total_cmp(&a.rate));
    let (_, round) = rounds.first().context("no concurrency measured")?;
    println!(
        "ceiling-best| {} | {} | {:.0} | {:.2} | {} | {:.2} | {:.2} |",
        writer.subjects.len(),
        round.label,
        round.rate,
        round.seconds,
        round.bytes,
        round.apiserver,
        round.etcd
    );
    Ok((
        writer,
        rounds.into_iter().map(|(setting, _)| setting).collect(),
    ))
}

/// A concurrency and one of [`transports`] (by index).
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    pub concurrency: usize,
    pub transport: usize,
}

/// What one ceiling round measured.
#[derive(Clone, Debug)]
pub struct Round {
    /// `concurrency/transport`.
    pub label: String,
    /// From the first write until the watch saw the last.
    pub seconds: f64,
    pub rate: f64,
    /// The mean body of a write.
    pub bytes: usize,
    /// CPU per write, ms.
    pub apiserver: f64,
    pub etcd: f64,
}

/// The ceiling's writer: every agent of a namespace re-signed, per round, under a hash of its
/// own, by a key no one else holds.
pub struct StatusWriter {
    agents: Api<Agent>,
    namespace: String,
    spec_hash: String,
    /// Each agent's name and uid.
    subjects: Vec<(String, String)>,
    ring: KeyRing,
    transports: Vec<(&'static str, Client)>,
    rounds: usize,
}

impl StatusWriter {
    /// A writer for the agents `agents` lists now (all in one namespace, with one spec).
    pub async fn new(agents: &Api<Agent>) -> Result<Self> {
        let list = agents.list(&ListParams::default()).await?;
        let namespace = agents_namespace(&list)?;
        let spec = &list.items.first().context("no agents to write")?.spec;
        Ok(StatusWriter {
            agents: agents.clone(),
            namespace,
            spec_hash: hash::spec_hash(spec)?,
            subjects: list
                .items
                .iter()
                .map(|a| (a.name_any(), a.metadata.uid.clone().unwrap_or_default()))
                .collect(),
            ring: KeyRing::from_config(&KeyRingConfig {
                active_key_id: Some("ceiling".into()),
                keys: vec![generate_ed25519("ceiling")?],
                revoked: vec![],
            })?,
            transports: transports().await?,
            rounds: 0,
        })
    }

    /// Write every agent once at `setting`, each write a change (a policy hash no round
    /// used before).
    pub async fn round(&mut self, setting: Setting) -> Result<Round> {
        let (transport, client) = self
            .transports
            .get(setting.transport)
            .context("no such transport")?;
        let (concurrency, n) = (setting.concurrency, self.subjects.len());
        let label = format!("{concurrency}/{transport}");
        let policy_hash = hash::sha256_hex(format!("ceiling round {}", self.rounds).as_bytes());
        self.rounds += 1;
        let bodies = self
            .subjects
            .iter()
            .map(|(name, uid)| {
                let status = governed_status(
                    &self.ring,
                    &self.namespace,
                    name,
                    uid,
                    &self.spec_hash,
                    &policy_hash,
                )?;
                Ok((name.clone(), status_body(&status)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let bytes = bodies.iter().map(|(_, b)| b.len()).sum::<usize>() / n.max(1);
        let seen = watch_signed(&self.agents, &policy_hash, n).await?;
        let cpu_before = control_plane_cpu()?;
        let started = Instant::now();
        let written = write_all(client, &self.namespace, bodies, concurrency).await?;
        let elapsed = tokio::time::timeout(Duration::from_secs(600), seen)
            .await
            .context("the watch did not see every write in 600s")???
            .max(written)
            .duration_since(started);
        let [apiserver, etcd] = cpu_per_write(cpu_before, control_plane_cpu()?, n);
        eprintln!(
            "concurrency {concurrency} over {transport}: {n} writes of {bytes} bytes answered after {:.2}s, all seen after {:.2}s; CPU per write: kube-apiserver {apiserver:.2} ms, etcd {etcd:.2} ms",
            written.duration_since(started).as_secs_f64(),
            elapsed.as_secs_f64()
        );
        Ok(Round {
            label,
            seconds: elapsed.as_secs_f64(),
            rate: n as f64 / elapsed.as_secs_f64(),
            bytes,
            apiserver,
            etcd,
        })
    }
}

/// The median of `values` (the mean of the middle two when their number is even).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        len if len % 2 == 1 => sorted.get(mid).copied(),
        _ => Some((sorted[mid - 1] + sorted[mid]) / 2.0),
    }
}

/// The clients the ceiling writes with: kube's default (HTTP/1.1) and the one the operator
/// and the webhook use (`agentgov_runtime::api_client`: HTTP/2, all writes on one connection).
async fn transports() -> Result<Vec<(&'static str, Client)>> {
    let config = kube::Config::infer().await?;
    Ok(vec![
        ("HTTP1.1", Client::try_from(config.clone())?),
        ("HTTP2", agentgov_runtime::api_client::from_config(config)?),
    ])
}

/// The namespace of listed agents (all in one).
fn agents_namespace(list: &kube::core::ObjectList<Agent>) -> Result<String> {
    list.items
        .first()
        .and_then(|a| a.namespace())
        .context("no agents to write")
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
            exceptions: &[],
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

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn the_median_is_the_middle_value_or_the_mean_of_the_middle_two() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[31.0, 24.0, 29.0]), Some(29.0));
    }
}
