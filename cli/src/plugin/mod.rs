//! The kubectl plugin's commands. Parsing, filtering, expiry, table rendering, cleaning a copy,
//! building a scratch spec and judging a promotion's progress are plain functions (`filter`,
//! `table`, `output`, `verify`, `create`, `promote`); the kubeconfig, the API server, files and
//! stdout are touched only here and in `cluster`.

mod cluster;
mod commands;
mod create;
mod error;
mod filter;
mod output;
mod promote;
mod table;
mod verify;

#[cfg(test)]
mod fixtures;

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use error::Error;

use cluster::Cluster;
use output::Format;

/// agentgov's kubectl plugin: list, verify, create and promote agents as kubectl users expect.
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
    /// Every namespace (list only).
    #[arg(short = 'A', long, global = true)]
    all_namespaces: bool,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List agents, sorted by namespace and name, like `kubectl get agents`.
    #[command(after_help = "Examples:\n  \
        kubectl agentgov list -A\n  \
        kubectl agentgov list --mode sandbox --expiring-within 24h\n  \
        kubectl agentgov list --status governed_valid --role compliance -o name\n  \
        kubectl agentgov list --search invoice -l team=finance -o yaml")]
    List(commands::list::ListArgs),
    /// Verify an agent's proof bundle offline with a key ring: the spec hash, the signer and
    /// the signature (exit 0 and `verified: ...`, or exit 1 saying which part failed).
    #[command(after_help = "Examples:\n  \
        kubectl agentgov verify invoice-auditor --keys public-keyring.json\n  \
        kubectl get agent invoice-auditor -o yaml | kubectl agentgov verify -f - --keys public-keyring.json")]
    Verify(commands::verify::VerifyArgs),
    /// Show the policy's answer for an agent's current spec (a server-side dry run of the
    /// approval: denies as an error, warnings on stderr), then approve that spec with an
    /// AgentPromotion; `--wait` follows the agent until it is in force for that spec.
    #[command(after_help = "Examples:\n  \
        kubectl agentgov promote invoice-auditor --wait\n  \
        kubectl agentgov promote invoice-auditor --reason CHG-1234 --wait --timeout 5m\n  \
        kubectl agentgov promote invoice-auditor --dry-run=server\n  \
        kubectl agentgov promote invoice-auditor --dry-run=client -o yaml > approval.yaml")]
    Promote(commands::promote::PromoteArgs),
    /// Create an agent: a clone of another agent, an imported Agent manifest, or one built
    /// from flags. `spec.source` records which (clone, import or scratch).
    #[command(after_help = "Examples:\n  \
        kubectl agentgov create auditor-v2 --clone invoice-auditor\n  \
        kubectl agentgov create auditor-b -n team-b --clone invoice-auditor --from-namespace team-a\n  \
        kubectl agentgov create auditor --import agent.yaml --dry-run=client -o yaml\n  \
        kubectl agentgov create lab --scratch --role ideation --model gpt-4o-mini --temperature 0.9 --ttl 24h\n  \
        kubectl agentgov create auditor --scratch --mode governed --role compliance \\\n      \
        --model gpt-4o --temperature 0.2 --input erp-invoices --action flag-mismatch \\\n      \
        --capability document-comparison --memory persistent --retention-days 90 --budget 250")]
    Create(Box<commands::create::CreateArgs>),
    /// Add your approval to an agent's current spec where the policy needs more than one
    /// approver (`approvals.required`); shows who approved so far.
    Approve(commands::approve::ApproveArgs),
    /// Extend, demote, delete or promote every agent the selection names (the `list` filters),
    /// with a preview and a confirmation (`--yes` skips it) and one result line per agent.
    Bulk(commands::bulk::BulkArgs),
    /// An agent's versions (ControllerRevisions the operator keeps): revision, spec hash,
    /// approvers, policy hash, time.
    History(commands::history::HistoryArgs),
    /// A unified diff of an agent's spec against a revision or the approved spec.
    Diff(commands::history::DiffArgs),
    /// Restore an agent's spec from a revision; a still-valid approval of that spec is reused.
    Rollback(commands::history::RollbackArgs),
    /// The drift report: governed agents changed since approval, proofs signed under a policy
    /// no longer in force, sandboxes expiring soon, agents invalidated and why.
    Drift(commands::drift::DriftArgs),
    /// The compliance export: every agent's status, approvers, proof and policy, mapped to the
    /// controls it evidences; self-verifying (`verify --export`).
    Export(commands::export::ExportArgs),
    /// Test a policy bundle (`test`), ask it about one agent (`eval`), or preview its effect on
    /// every live agent before applying it (`preview`).
    Policy(commands::policy::PolicyArgs),
    /// An agent's governance events (Kubernetes Events and status changes); `--follow` streams.
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
    let cluster = cluster::connect(global.kubeconfig.as_deref(), global.context.as_deref()).await?;
    let namespace = global
        .namespace
        .clone()
        .unwrap_or_else(|| cluster.default_namespace.clone());
    Ok((cluster, namespace))
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
