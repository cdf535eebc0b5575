//! `history`, `diff` and `rollback`: an agent's versions, kept by the operator as
//! ControllerRevisions owned by the Agent.

use std::io::IsTerminal;

use agentgov_api::Agent;
use agentgov_api::revision::{AGENT_LABEL, agent_label_value};
use clap::Args;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::ControllerRevision;
use kube::api::{Api, ListParams};
use serde_json::json;

use crate::plugin::cluster::{Cluster, DryRun};
use crate::plugin::history::{self, Against, Restored, Revision};
use crate::plugin::output::{self, Format};
use crate::plugin::{Error, Global, cluster_and_namespace, filter, print, promote, warn};

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The agent.
    name: String,
}

pub async fn run_history(global: &Global, args: HistoryArgs) -> Result<(), Error> {
    let (cluster, ns) = cluster_and_namespace(global).await?;
    let agent = cluster.get(&ns, &args.name).await?;
    let revisions = revisions_of(&cluster, &agent).await?;
    let current = promote::current_hash(&agent)?;
    let approved = history::approved_hash(&agent);
    let text = match global.output {
        Format::Table | Format::Name if revisions.is_empty() => {
            eprintln!(
                "No revisions found for agent {} (the operator records them; `--revision-history-limit 0` turns that off).",
                promote::id(&agent)
            );
            return Ok(());
        }
        Format::Table => history::table(&revisions, &current, approved, Timestamp::now()),
        Format::Name => revisions
            .iter()
            .map(|r| format!("controllerrevision.apps/{}\n", r.name))
            .collect(),
        Format::Json | Format::Yaml => output::document(
            global.output,
            &history::records(&revisions, &current, approved),
        )?,
    };
    print(&text)
}

/// When to colour a diff, as `git diff --color` and `kubectl` plugins spell it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Color {
    /// When stdout is a terminal.
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The agent.
    name: String,
    /// Compare against this revision (default: the newest revision of another spec).
    #[arg(long, value_name = "N", conflicts_with = "against_approved")]
    revision: Option<i64>,
    /// Compare against the approved spec (the one the agent's proof names).
    #[arg(long)]
    against_approved: bool,
    /// Colour the diff: `auto` when stdout is a terminal.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = Color::Auto)]
    color: Color,
}

pub async fn run_diff(global: &Global, args: DiffArgs) -> Result<(), Error> {
    let (cluster, ns) = cluster_and_namespace(global).await?;
    let agent = cluster.get(&ns, &args.name).await?;
    let revisions = revisions_of(&cluster, &agent).await?;
    let current = promote::current_hash(&agent)?;
    let against = match (args.revision, args.against_approved) {
        (Some(n), _) => Against::Number(n),
        (None, true) => Against::Approved(history::approved_hash(&agent)),
        (None, false) => Against::Previous,
    };
    let old = history::pick(&revisions, &args.name, &current, against).map_err(Error::Usage)?;
    let new = serde_json::to_value(&agent.spec).map_err(|e| Error::Encode(e.to_string()))?;
    let color = match args.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::stdout().is_terminal(),
    };
    let diff = history::unified(
        &old.spec,
        &new,
        &format!("{}/revision-{}", args.name, old.revision),
        &format!("{}/current", args.name),
        color,
    )
    .map_err(|e| Error::Encode(e.to_string()))?;
    if diff.is_empty() {
        return Ok(());
    }
    print(&diff)?;
    // kubectl diff's convention: exit 1 when there are differences.
    Err(Error::Differs(format!(
        "agent {}'s spec differs from revision {}",
        args.name, old.revision
    )))
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The agent.
    name: String,
    /// The revision whose spec to restore (`kubectl agentgov history NAME` lists them).
    #[arg(long, value_name = "N")]
    to_revision: i64,
    /// Exit 1 unless the agent is back in force (GOVERNED_VALID or GOVERNED_RESTRICTED) under
    /// an approval of the restored spec, within --timeout.
    #[arg(long)]
    wait: bool,
    /// How long to wait for the operator's judgement of the restored spec (like 30s or 5m).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = filter::parse_within)]
    timeout: SignedDuration,
    /// `client`: print the agent with the restored spec, change nothing; `server`: have the API
    /// server and admission judge the change, persist nothing.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = DryRun::None)]
    dry_run: DryRun,
}

pub async fn run_rollback(global: &Global, args: RollbackArgs) -> Result<(), Error> {
    let (cluster, ns) = cluster_and_namespace(global).await?;
    let agent = cluster.get(&ns, &args.name).await?;
    let revisions = revisions_of(&cluster, &agent).await?;
    let current = promote::current_hash(&agent)?;
    let target = history::pick(
        &revisions,
        &args.name,
        &current,
        Against::Number(args.to_revision),
    )
    .map_err(Error::Usage)?;
    let hash = target.spec_hash.clone();
    let spec = serde_json::to_value(&agent.spec).map_err(|e| Error::Encode(e.to_string()))?;
    let patch = json!({
        // Optimistic concurrency: refused if the agent changed since it was read.
        "metadata": {"resourceVersion": agent.metadata.resource_version},
        "spec": history::merge_patch(&spec, &target.spec),
    });
    let done = format!(
        "agent.agentgov.dev/{} rolled back to revision {}",
        args.name, args.to_revision
    );
    if args.dry_run == DryRun::Client {
        let mut restored = agent.clone();
        restored.spec = serde_json::from_value(target.spec.clone())
            .map_err(|e| Error::Encode(e.to_string()))?;
        restored.status = None;
        return print_result(global.output, &restored, &done, args.dry_run);
    }
    let action = format!(
        "roll agent {} back to revision {}",
        args.name, args.to_revision
    );
    let patched = cluster
        .patch_agent(
            &ns,
            &args.name,
            &patch,
            args.dry_run == DryRun::Server,
            &action,
        )
        .await?;
    warn(&patched.warnings);
    print_result(global.output, &patched.object, &done, args.dry_run)?;
    if args.dry_run == DryRun::Server {
        return Ok(());
    }
    let outcome = judged(
        &cluster,
        &ns,
        &args.name,
        &hash,
        &patched.object,
        args.timeout,
    )
    .await?;
    let sentence = history::sentence(&outcome, &args.name, &hash);
    match outcome {
        Restored::Reused { .. } | Restored::Sandbox => {
            eprintln!("{sentence}");
            Ok(())
        }
        _ if args.wait => Err(Error::NotPromoted(sentence)),
        _ => {
            eprintln!("{sentence}");
            Ok(())
        }
    }
}

fn print_result(format: Format, agent: &Agent, done: &str, dry_run: DryRun) -> Result<(), Error> {
    match format {
        Format::Json | Format::Yaml => print(&output::document(format, agent)?),
        Format::Name => print(&format!(
            "agent.agentgov.dev/{}\n",
            agent.metadata.name.as_deref().unwrap_or_default()
        )),
        Format::Table => print(&format!("{done}{}\n", dry_run.suffix())),
    }
}

/// Follow the agent until the operator has judged the restored spec (its status names this
/// generation and spec hash), or `timeout` passes.
async fn judged(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    hash: &str,
    patched: &Agent,
    timeout: SignedDuration,
) -> Result<Restored, Error> {
    let deadline = tokio::time::Instant::now() + timeout.unsigned_abs();
    let generation = patched.metadata.generation;
    loop {
        let agent = cluster.get(ns, name).await?;
        let promotions = cluster.promotions(ns).await?;
        let outcome = history::restored(&agent, hash, generation, &promotions);
        if outcome != Restored::NotJudged || tokio::time::Instant::now() >= deadline {
            return Ok(outcome);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// The agent's revisions, oldest first.
async fn revisions_of(cluster: &Cluster, agent: &Agent) -> Result<Vec<Revision>, Error> {
    let ns = agent.metadata.namespace.as_deref().unwrap_or_default();
    let name = agent.metadata.name.as_deref().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(cluster.client(), ns);
    let selector = format!("{AGENT_LABEL}={}", agent_label_value(name));
    let items = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| Error::from_api(&format!("list the revisions of agent {name}"), ns, None, e))?
        .items;
    Ok(history::revisions(agent, &items))
}
