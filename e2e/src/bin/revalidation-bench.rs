//! Revalidation benchmark on the real control plane (`make bench`): N governed agents, a
//! policy change, and the time until every agent is judged against the new policy: until a
//! watch of the namespace has seen every agent signed under the new hash, and until the
//! operator's own summary says so; with the operator's memory and the CPU the operator, the API
//! server and etcd spent per agent. Then a sweep that changes nothing (a fresh operator judges
//! every agent again, remembering nothing), which must write nothing, and the memory of an
//! operator holding N agents. Then the webhook's memory with those N agents cached: started on
//! the same namespace, once its caches have synced and again after it has reviewed one Pod of
//! each agent (every memo entry filled). Last, with both gone, the API server's own ceiling
//! (`status_writes::ceiling`) on these same agents, ended by the same kind of watch, so that
//! the two compare. Then, in turn on the same API server, the ceiling again (a round at each of
//! the sweep's two best settings, the faster counting) and two more revalidations (C, R, C, R,
//! C), and the ratio of the median revalidation to the median of those ceiling rounds. The
//! operators run with their default flags and are stopped with SIGTERM (the Lease released, so
//! the next one leads at once). Run under `e2e/controlplane/cluster.sh exec`.
//!
//! usage: revalidation-bench N [OPERATOR FLAG...]
//! prints Markdown rows:
//! `revalidation| N | initial s | converged s | summary s | agents/s | body bytes | RSS MiB | peak RSS MiB |`,
//! `cpu| N | kube-apiserver ms | etcd ms | operator ms |` (CPU per agent in the revalidation),
//! `sweep| N | reconciles | agents written | s | RSS MiB | peak RSS MiB | RSS MiB settled |`, `webhook| ...`, and
//! the ceiling's rows (`status_writes::ceiling`), then
//! `paired| N | c/transport of each counted round | ceiling s, each round | revalidation s,
//! each | median ceiling s | median revalidation s | ratio |`

#[path = "../status_writes.rs"]
mod status_writes;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use agentgov_api::policy::default_bundle_spec;
use agentgov_api::{Agent, PolicyBundle};
use agentgov_e2e::operator::{KeyFile, Operator, log_dir, metric_value};
use agentgov_e2e::process::cpu_time;
use agentgov_e2e::webhook::{Webhook, agent_pod, pod_review_request};
use agentgov_e2e::{TestNamespace, client, install_crds, manifest, wait_for};
use anyhow::{Context as _, Result, bail};
use futures::{StreamExt, TryStreamExt, stream};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use status_writes::{
    control_plane_cpu, cpu_per_write, median, memory_kib, status_body, watch_signed,
};

/// How long after the sweep the operator's memory is read again, at rest.
const SETTLE: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .context("usage: revalidation-bench N [OPERATOR FLAG...]")?
        .parse()?;
    let flags: Vec<String> = args.collect();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
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

    let operator = Operator::start(&ns.name, &keys.path, "bench", &flags)?;
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
    let cpu_before = (
        control_plane_cpu()?,
        cpu_time(pid).context("the operator's CPU")?,
    );
    let (changed, converged, second_hash) = change_bundle(&ns, second, n).await?;
    let [apiserver, etcd] = cpu_per_write(cpu_before.0, control_plane_cpu()?, n);
    let operator_ms = (cpu_time(pid).context("the operator's CPU")? - cpu_before.1).as_secs_f64()
        * 1000.0
        / n.max(1) as f64;
    eprintln!(
        "revalidation: CPU per agent: kube-apiserver {apiserver:.2} ms, etcd {etcd:.2} ms, the operator {operator_ms:.2} ms"
    );
    println!("cpu| {n} | {apiserver:.2} | {etcd:.2} | {operator_ms:.2} |");
    wait_summary(&bundles, &second_hash, n, Duration::from_secs(600)).await?;
    let summarized = changed.elapsed();
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
    // What the operator wrote, as it went over the wire (`apiserver-ceiling` writes the same).
    let bytes = list
        .items
        .iter()
        .filter_map(|a| a.status.as_ref())
        .map(|s| status_body(s).map(|b| b.len()))
        .sum::<Result<usize>>()?
        / n.max(1);
    let rss_kib = memory_kib(pid, "VmRSS:").context("the operator's VmRSS")?;
    let peak_kib = memory_kib(pid, "VmHWM:").context("the operator's VmHWM")?;
    stop(operator).await?;
    eprintln!(
        "revalidation of {n} agents: last seen signed after {:.2}s, summary after {:.2}s",
        converged.as_secs_f64(),
        summarized.as_secs_f64()
    );
    println!(
        "revalidation| {n} | {:.1} | {:.2} | {:.2} | {:.0} | {bytes} | {:.1} | {:.1} |",
        initial.as_secs_f64(),
        converged.as_secs_f64(),
        summarized.as_secs_f64(),
        n as f64 / converged.as_secs_f64(),
        rss_kib as f64 / 1024.0,
        peak_kib as f64 / 1024.0,
    );

    // A sweep that changes nothing: a fresh operator judges every agent again (nothing it
    // remembers), and writes none of them.
    let versions = resource_versions(&agents).await?;
    let operator = Operator::start(&ns.name, &keys.path, "bench-sweep", &flags)?;
    let started = Instant::now();
    let swept = wait_swept(&operator, n, Duration::from_secs(600)).await?;
    let sweep = started.elapsed();
    let rss_kib = memory_kib(operator.pid(), "VmRSS:").context("the operator's VmRSS")?;
    let sweep_peak_kib = memory_kib(operator.pid(), "VmHWM:").context("the operator's VmHWM")?;
    // At rest: the judgements' transient memory returned (jemalloc gives freed pages back after
    // a second), what is left is what holding N agents costs.
    tokio::time::sleep(SETTLE).await;
    let settled_kib = memory_kib(operator.pid(), "VmRSS:").context("the operator's VmRSS")?;
    // What of it is the heap (and stacks) and what the binary's own pages, which the kernel
    // can drop and read again: a smaller heap and a smaller binary are different work.
    let anonymous_kib = memory_kib(operator.pid(), "RssAnon:").context("the operator's RssAnon")?;
    let file_kib = memory_kib(operator.pid(), "RssFile:").context("the operator's RssFile")?;
    stop(operator).await?;
    let after = resource_versions(&agents).await?;
    let written = versions
        .iter()
        .filter(|(name, rv)| after.get(*name) != Some(*rv))
        .count();
    eprintln!("no-change sweep: {swept} agent reconciles, {written} agents written");
    println!(
        "sweep| {n} | {swept} | {written} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
        sweep.as_secs_f64(),
        rss_kib as f64 / 1024.0,
        sweep_peak_kib as f64 / 1024.0,
        settled_kib as f64 / 1024.0,
        anonymous_kib as f64 / 1024.0,
        file_kib as f64 / 1024.0,
    );
    webhook_memory(&ns, &keys, n).await?;

    // The API server's own ceiling, last, with the operator and the webhook gone: a tight
    // client re-signs these very agents, so that it meets the API server in the state the
    // revalidation met it (the same objects stored and watched; an API server holding more
    // objects writes more slowly).
    let (mut writer, ranked) =
        status_writes::ceiling(&agents, &status_writes::CEILING_CONCURRENCIES).await?;

    // The ceiling's best round is the fastest of twelve, and one round's time moves by 10-20 %
    // with the API server's state (its CPU per write drifts as history grows and falls after a
    // compaction): a best round is partly luck, and the revalidation above met the API server
    // minutes earlier. So the best setting is measured again, in turn with more revalidations
    // on the same API server, and the ratio compares the medians. One sweep round per setting
    // can also pick a setting by luck (a slow one whose round came at a fast moment), so each
    // turn runs the sweep's two best settings and counts the faster.
    let settings = &ranked[..ranked.len().min(2)];
    let mut ceilings = Vec::new();
    let mut revalidations = vec![converged.as_secs_f64()];
    let mut in_force = second_hash;
    for pair in 0..PAIRED_REVALIDATIONS {
        ceilings.push(fastest_round(&mut writer, settings).await?);
        let (seconds, hash) = revalidate_again(&ns, &keys, &flags, n, pair, &in_force).await?;
        revalidations.push(seconds);
        in_force = hash;
    }
    ceilings.push(fastest_round(&mut writer, settings).await?);
    let label = ceilings
        .iter()
        .map(|r| r.label.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let ceiling_s: Vec<f64> = ceilings.iter().map(|r| r.seconds).collect();
    let median_ceiling = median(&ceiling_s).context("no ceiling rounds")?;
    let median_revalidation = median(&revalidations).context("no revalidations")?;
    let ratio = median_revalidation / median_ceiling;
    let list = |values: &[f64]| {
        values
            .iter()
            .map(|v| format!("{v:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    eprintln!(
        "in turn: the ceiling at {label} {} s, revalidations {} s; ratio of the medians {ratio:.2}",
        list(&ceiling_s),
        list(&revalidations),
    );
    println!(
        "paired| {n} | {label} | {} | {} | {median_ceiling:.2} | {median_revalidation:.2} | {ratio:.2} |",
        list(&ceiling_s),
        list(&revalidations),
    );
    Ok(())
}

/// One round of the ceiling at each of `settings`, in order: the fastest.
async fn fastest_round(
    writer: &mut status_writes::StatusWriter,
    settings: &[status_writes::Setting],
) -> Result<status_writes::Round> {
    let mut fastest: Option<status_writes::Round> = None;
    for setting in settings {
        let round = writer.round(*setting).await?;
        eprintln!(
            "in turn: the ceiling at {} {:.2} s",
            round.label, round.seconds
        );
        if fastest.as_ref().is_none_or(|f| round.seconds < f.seconds) {
            fastest = Some(round);
        }
    }
    fastest.context("no ceiling setting")
}

/// Revalidations measured after the ceiling's sweep, each after a round of the ceiling at its
/// best setting (and one more round after the last).
const PAIRED_REVALIDATIONS: usize = 2;

/// One more revalidation, after a ceiling round left every agent signed by a key no one else
/// holds: a fresh operator first re-signs them all under the bundle in force (`in_force`),
/// then the bundle changes again and the clock runs, as for the first revalidation, until a
/// watch has seen every agent signed under the new hash. The seconds that took and the new
/// hash.
async fn revalidate_again(
    ns: &TestNamespace,
    keys: &KeyFile,
    flags: &[&str],
    n: usize,
    pair: usize,
    in_force: &str,
) -> Result<(f64, String)> {
    let agents: Api<Agent> = ns.api();
    let restored = watch_signed(&agents, in_force, n).await?;
    let operator = Operator::start(&ns.name, &keys.path, &format!("bench-{}", pair + 3), flags)?;
    tokio::time::timeout(Duration::from_secs(600), restored)
        .await
        .context(
            "the operator did not re-sign every agent under the bundle in force in 600s",
        )???;
    let mut next = default_bundle_spec();
    next.version = format!("bench-{}", pair + 3);
    next.data.max_monthly_budget_usd = 6000.0 + 1000.0 * pair as f64;
    let (_, converged, hash) = change_bundle(ns, next, n).await?;
    wait_summary(&ns.api(), &hash, n, Duration::from_secs(600)).await?;
    stop(operator).await?;
    eprintln!(
        "revalidation {} of {n} agents: last seen signed after {:.2}s",
        pair + 2,
        converged.as_secs_f64()
    );
    Ok((converged.as_secs_f64(), hash))
}

/// Put `spec` in force as the namespace's bundle and wait until a watch has seen every one of
/// the `n` agents signed against it: when the change was made, how long until the last was
/// seen signed, and the bundle's hash.
async fn change_bundle(
    ns: &TestNamespace,
    spec: agentgov_api::PolicyBundleSpec,
    n: usize,
) -> Result<(Instant, Duration, String)> {
    let hash = agentgov_api::hash::policy_hash(&spec)?;
    let signed = watch_signed(&ns.api(), &hash, n).await?;
    let started = Instant::now();
    agentgov_e2e::apply_bundle(ns, spec).await?;
    let converged = tokio::time::timeout(Duration::from_secs(600), signed)
        .await
        .context("the agents were not all signed against the new policy in 600s")???
        .duration_since(started);
    Ok((started, converged, hash))
}

/// Stop an operator as the kubelet would (SIGTERM): it releases its Lease, so that the next
/// one leads at once.
async fn stop(mut operator: Operator) -> Result<()> {
    operator.process().terminate()?;
    match operator
        .process()
        .exit_within(Duration::from_secs(30))
        .await
    {
        Some(status) if status.success() => Ok(()),
        Some(status) => bail!("the operator exited with {status} on SIGTERM"),
        None => bail!("the operator did not exit within 30s of SIGTERM"),
    }
}

/// Each agent's resourceVersion, by name.
async fn resource_versions(agents: &Api<Agent>) -> Result<HashMap<String, String>> {
    Ok(agents
        .list_metadata(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|a| {
            let rv = a.resource_version().unwrap_or_default();
            (a.name_any(), rv)
        })
        .collect())
}

/// Wait until the operator has reconciled at least `n` agents and then nothing more for two
/// seconds; the number of agent reconciles.
async fn wait_swept(operator: &Operator, n: usize, timeout: Duration) -> Result<u64> {
    let count = || async {
        metric_value(
            &operator.metrics().await,
            "agentgov_reconcile_duration_seconds_count{controller=\"agent\"}",
        )
        .map_or(0, |c| c as u64)
    };
    let deadline = Instant::now() + timeout;
    let mut last = (0, Instant::now());
    loop {
        let now = count().await;
        if now != last.0 {
            last = (now, Instant::now());
        } else if now >= n as u64 && last.1.elapsed() >= Duration::from_secs(2) {
            return Ok(now);
        }
        if Instant::now() >= deadline {
            bail!("the operator reconciled {now} agents, not {n}, in {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    let pod = agent_pod(&format!("{agent}-pod"), &agent);
    let request = pod_review_request(namespace, &format!("bench-{i}"), &pod)?;
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
