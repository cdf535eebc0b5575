//! The kubectl plugin's commands. Parsing, filtering, expiry, table rendering, cleaning a copy,
//! building a scratch spec and judging a promotion's progress are plain functions (`filter`,
//! `table`, `output`, `verify`, `create`, `promote`); the kubeconfig, the API server, files and
//! stdout are touched only here and in `cluster`.

mod bulk;
mod cluster;
mod commands;
mod create;
mod drift;
mod error;
mod events;
mod export;
mod filter;
mod history;
mod output;
mod policy;
mod promote;
mod sources;
mod table;
mod verify;

#[cfg(test)]
mod docs;
#[cfg(test)]
mod fixtures;

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use error::Error;

use cluster::Cluster;
use output::Format;

/// agentgov's kubectl plugin: the agent workbench (create, promote, history, drift, export,
/// policy) as kubectl users expect it.
#[derive(Debug, Parser)]
#[command(name = "kubectl-agentgov", bin_name = "kubectl agentgov", version)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// The flags every command takes, as kubectl spells them.
#[derive(Debug, Args)]
struct Global {
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current-context).
    #[arg(long, global = true, value_name = "NAME")]
    context: Option<String>,
    /// The namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    namespace: Option<String>,
    /// Every namespace (list, bulk, drift, export, policy preview).
    #[arg(short = 'A', long, global = true)]
    all_namespaces: bool,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    /// Act as this user (impersonation, as `kubectl --as`): the kubeconfig's identity needs the
    /// verb `impersonate` on users.
    #[arg(long = "as", global = true, value_name = "USER")]
    as_user: Option<String>,
    /// Act as a member of this group too (repeatable; with --as, as `kubectl --as-group`).
    #[arg(long, global = true, value_name = "GROUP", requires = "as_user")]
    as_group: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List agents like `kubectl get agents`, narrowed by filters.
    ///
    /// List agents, sorted by namespace and name, like `kubectl get agents`.
    #[command(after_help = "Examples:\n  \
        kubectl agentgov list -A\n  \
        kubectl agentgov list --mode sandbox --expiring-within 24h\n  \
        kubectl agentgov list --status governed_valid --role compliance -o name\n  \
        kubectl agentgov list --search invoice -l team=finance -o yaml")]
    List(commands::list::ListArgs),
    /// Verify a proof bundle, or a compliance export, offline with a key ring.
    ///
    /// Verify an agent's proof bundle offline with a key ring: the spec hash, the signer and
    /// the signature (exit 0 and `verified: ...`, or exit 1 saying which part failed). With
    /// `--export`, a compliance export: its digests, then every agent's proof, one line per
    /// agent (exit 1 naming each agent whose record fails).
    #[command(after_help = "Examples:\n  \
        kubectl agentgov verify invoice-auditor --keys public-keyring.json\n  \
        kubectl get agent invoice-auditor -o yaml | kubectl agentgov verify -f - --keys public-keyring.json\n  \
        kubectl agentgov verify --export export.json\n  \
        kubectl agentgov verify --export export.json --keys public-keyring.json")]
    Verify(commands::verify::VerifyArgs),
    /// Approve an agent's current spec: the policy's answer, then an AgentPromotion.
    ///
    /// Show the policy's answer for an agent's current spec (a server-side dry run of the
    /// approval: denies as an error, warnings on stderr), then approve that spec with an
    /// AgentPromotion; `--wait` follows the agent until it is in force for that spec.
    #[command(after_help = "Examples:\n  \
        kubectl agentgov promote invoice-auditor --wait\n  \
        kubectl agentgov promote invoice-auditor --reason CHG-1234 --wait --timeout 5m\n  \
        kubectl agentgov promote invoice-auditor --dry-run=server\n  \
        kubectl agentgov promote invoice-auditor --dry-run=client -o yaml > approval.yaml")]
    Promote(commands::promote::PromoteArgs),
    /// Create an agent from a template, flags, a clone, a workflow, a transcript, an event or an import.
    ///
    /// Create an agent in one of seven modes: from a template (the namespace's AgentTemplate,
    /// else the ClusterAgentTemplate of that name), from flags, a clone of another agent, from
    /// a workflow, a chat transcript or a CloudEvent, or an import (an Agent manifest or a
    /// seed `agent_specs` row). `spec.source` records which and from what. The spec flags
    /// (--role, --model, ...) build a scratch spec and override what the other built modes
    /// give (a template allows only its allowedOverrides). `--check` prints what the
    /// promotion policy would answer (on stderr).
    #[command(after_help = "Examples:\n  \
        kubectl agentgov create auditor --template compliance-auditor --input erp-invoices --action flag-mismatch --capability document-comparison\n  \
        kubectl agentgov create lab --cluster-template sandbox-lab --role ideation --temperature 0.9\n  \
        kubectl agentgov create recon --from-workflow workflowtemplate.yaml --role compliance --model gpt-4o --temperature 0.2\n  \
        kubectl agentgov create triage --from-conversation transcript.json --role analysis --dry-run=client -o yaml\n  \
        cat event.json | kubectl agentgov create summariser --from-event -\n  \
        kubectl agentgov create reviewer --import agent_specs-42.json --check --bundle policybundle.yaml --dry-run=client -o yaml\n  \
        kubectl agentgov create auditor-v2 --clone invoice-auditor\n  \
        kubectl agentgov create auditor-b -n team-b --clone invoice-auditor --from-namespace team-a\n  \
        kubectl agentgov create auditor --import agent.yaml --dry-run=client -o yaml\n  \
        kubectl agentgov create lab --scratch --role ideation --model gpt-4o-mini --temperature 0.9 --ttl 24h\n  \
        kubectl agentgov create auditor --scratch --mode governed --role compliance \\\n      \
        --model gpt-4o --temperature 0.2 --input erp-invoices --action flag-mismatch \\\n      \
        --capability document-comparison --memory persistent --retention-days 90 --budget 250")]
    Create(Box<commands::create::CreateArgs>),
    /// Add a further approval where the policy needs more than one approver.
    ///
    /// Add your approval to an agent's current spec where the policy needs more than one
    /// approver (`approvals.required`), after someone's `promote`: the policy's answer first, as
    /// `promote` shows it, then the AgentPromotion, then who approved so far and how many more
    /// are needed. Refused when the spec awaits no approval or you already approved it (the
    /// operator counts distinct approvers).
    #[command(after_help = "Examples:\n  \
        kubectl agentgov promote invoice-auditor --reason CHG-1234\n  \
        kubectl agentgov approve invoice-auditor --as bob --reason CHG-1234 --wait\n  \
        kubectl agentgov approve invoice-auditor --dry-run=server")]
    Approve(commands::approve::ApproveArgs),
    /// Extend, demote, delete or promote every selected agent, after a preview.
    ///
    /// Extend, demote, delete or promote every agent the selection names (the `list` filters,
    /// -n/-A): a preview of what changes (AGENT, NOW, AFTER) on stderr, a confirmation
    /// (`Proceed? [y/N]`; `--yes` skips it, and without a terminal it is refused), then one
    /// result line per agent; exit 1 if any failed. Changes are merge patches under the field
    /// manager kubectl-agentgov, so the rest of each spec stays.
    #[command(after_help = "Examples:\n  \
        kubectl agentgov bulk extend --by 24h -l team=finance\n  \
        kubectl agentgov bulk demote --status governed_invalidated --ttl 72h\n  \
        kubectl agentgov bulk delete --mode sandbox --expiring-within 1h -A --yes\n  \
        kubectl agentgov bulk promote -l release=2026-q4 --reason CHG-1234 --dry-run=server")]
    Bulk(commands::bulk::BulkArgs),
    /// List an agent's versions (the ControllerRevisions the operator keeps).
    ///
    /// An agent's versions (ControllerRevisions the operator keeps, one per distinct spec hash,
    /// up to its `--revision-history-limit`): revision, spec hash, approvers, policy hash, age,
    /// and which is current and which approved.
    #[command(after_help = "Examples:\n  \
        kubectl agentgov history invoice-auditor\n  \
        kubectl agentgov history invoice-auditor -o yaml")]
    History(commands::history::HistoryArgs),
    /// Show a unified diff of an agent's spec against a revision or the approved spec.
    ///
    /// A unified diff of an agent's spec (as YAML) against a revision: by default the newest
    /// revision of another spec, `--revision N`, or `--against-approved` (the spec its proof
    /// names). As `kubectl diff`: exit 0 when they are the same, 1 when they differ (the diff
    /// on stdout; an error also exits 1, saying so on stderr).
    #[command(after_help = "Examples:\n  \
        kubectl agentgov diff invoice-auditor\n  \
        kubectl agentgov diff invoice-auditor --revision 1\n  \
        kubectl agentgov diff invoice-auditor --against-approved --color always | less -R")]
    Diff(commands::history::DiffArgs),
    /// Restore an agent's spec from a revision (a still-valid approval is reused).
    ///
    /// Restore an agent's spec from a revision, then say what the operator made of it: an
    /// approval of that spec hash that is still valid is reused (the agent returns to
    /// GOVERNED_VALID without a new approval), otherwise a new approval is needed
    /// (`promote`). `--wait` exits 1 unless the agent is back in force.
    #[command(after_help = "Examples:\n  \
        kubectl agentgov rollback invoice-auditor --to-revision 1\n  \
        kubectl agentgov rollback invoice-auditor --to-revision 1 --wait --timeout 2m\n  \
        kubectl agentgov rollback invoice-auditor --to-revision 1 --dry-run=client -o yaml")]
    Rollback(commands::history::RollbackArgs),
    /// Report what drifted from what was approved (`--exit-code` gates a pipeline).
    ///
    /// The drift report: governed agents changed since approval, proofs signed under a policy
    /// no longer in force, sandboxes expiring soon (or expired), agents invalidated and why, and
    /// live Pods of an agent running an image its `spec.runtime.images` does not list.
    /// Exits 0 whatever it finds, unless `--exit-code` (then 1 when there is drift).
    #[command(after_help = "Examples:\n  \
        kubectl agentgov drift\n  \
        kubectl agentgov drift -A --expiring-within 72h\n  \
        kubectl agentgov drift -A -o json | jq '.items[] | select(.kind == \"SpecChanged\")'\n  \
        kubectl agentgov drift -n team-a --exit-code   # a pipeline gate")]
    Drift(commands::drift::DriftArgs),
    /// Write the compliance export, which verifies offline.
    ///
    /// The compliance export: every agent's status, approvers, proof, policy in force and last
    /// evaluation, mapped to the controls it evidences (docs/compliance.md), with the policy
    /// history. The JSON carries the public key ring and SHA-256 digests, and verifies offline
    /// with `verify --export`; CSV and HTML are renderings for people.
    #[command(after_help = "Examples:\n  \
        kubectl agentgov export --keys public-keyring.json > export.json\n  \
        kubectl agentgov export -A --keys public-keyring.json --format html > export.html\n  \
        kubectl agentgov export -n team-a --keys public-keyring.json --format csv --since 720h\n  \
        kubectl agentgov export --keys public-keyring.json --since 2026-01-01T00:00:00Z")]
    Export(commands::export::ExportArgs),
    /// Test a policy, evaluate one agent, or preview a bundle on every live agent.
    ///
    /// Test a policy bundle (`test`), ask it about one agent (`eval`), or preview its effect on
    /// every live agent before applying it (`preview`), on the engine the operator and the
    /// webhook evaluate with.
    #[command(after_help = "Examples:\n  \
        kubectl agentgov policy test examples/policybundle-default.yaml examples/policy/\n  \
        kubectl agentgov policy eval -f agent.yaml --bundle policybundle.yaml\n  \
        kubectl agentgov policy preview strict-bundle.yaml -A")]
    Policy(commands::policy::PolicyArgs),
    /// Show an agent's governance events; `--follow` streams them.
    ///
    /// An agent's governance events: the Kubernetes Events about it and its AgentPromotions,
    /// and its status changes (governance status, conditions), oldest first; `--follow` keeps
    /// printing them as they happen, `-o json` one object a line.
    #[command(after_help = "Examples:\n  \
        kubectl agentgov events invoice-auditor\n  \
        kubectl agentgov events invoice-auditor --follow\n  \
        kubectl agentgov events invoice-auditor --follow -o json | jq -r .message")]
    Events(commands::events::EventsArgs),
}

/// Run one command.
pub async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::List(args) => commands::list::run(&cli.global, args).await,
        Command::Verify(args) => commands::verify::run(&cli.global, args).await,
        Command::Promote(args) => commands::promote::run(&cli.global, args).await,
        Command::Create(args) => commands::create::run(&cli.global, *args).await,
        Command::Approve(args) => commands::approve::run(&cli.global, args).await,
        Command::Bulk(args) => commands::bulk::run(&cli.global, args).await,
        Command::History(args) => commands::history::run_history(&cli.global, args).await,
        Command::Diff(args) => commands::history::run_diff(&cli.global, args).await,
        Command::Rollback(args) => commands::history::run_rollback(&cli.global, args).await,
        Command::Drift(args) => commands::drift::run(&cli.global, args).await,
        Command::Export(args) => commands::export::run(&cli.global, args).await,
        Command::Policy(args) => commands::policy::run(&cli.global, args).await,
        Command::Events(args) => commands::events::run(&cli.global, args).await,
    }
}

/// The cluster and the namespace a single-object command works in (`-n`, else the context's).
async fn cluster_and_namespace(global: &Global) -> Result<(Cluster, String), Error> {
    let cluster = cluster::connect(global).await?;
    let namespace = global
        .namespace
        .clone()
        .unwrap_or_else(|| cluster.default_namespace.clone());
    Ok((cluster, namespace))
}

/// The cluster and the namespaces a command over many agents covers (`-A`, else `-n`, else the
/// context's).
async fn cluster_and_scope(global: &Global) -> Result<(Cluster, cluster::Scope), Error> {
    let cluster = cluster::connect(global).await?;
    let scope = cluster::Scope::new(
        global.namespace.as_deref(),
        global.all_namespaces,
        &cluster.default_namespace,
    );
    Ok((cluster, scope))
}

/// Print the warnings admission sent, as kubectl does.
fn warn(warnings: &[String]) {
    for warning in warnings {
        eprintln!("Warning: {warning}");
    }
}

fn print(text: &str) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(Error::Output)
}
