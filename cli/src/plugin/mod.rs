//! The kubectl plugin's commands. Parsing, filtering, expiry and table rendering are plain
//! functions (`filter`, `table`, `output`, `verify`); the kubeconfig, the API server, files and
//! stdout are touched only here and in `cluster`.

mod cluster;
mod error;
mod filter;
mod output;
mod table;
mod verify;

#[cfg(test)]
mod fixtures;

use std::io::Write;
use std::path::PathBuf;

use agentgov_api::Agent;
use agentgov_api::agent::{AgentMode, GovernanceStatus, RoleClass};
use clap::{Args, Parser, Subcommand};
use jiff::Timestamp;

pub use error::Error;

use cluster::Scope;
use filter::Filter;
use output::Format;

/// agentgov's kubectl plugin: list and verify agents as kubectl users expect.
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
    List(ListArgs),
    /// Verify an agent's proof bundle offline with a key ring: the spec hash, the signer and
    /// the signature (exit 0 and `verified: ...`, or exit 1 saying which part failed).
    #[command(after_help = "Examples:\n  \
        kubectl agentgov verify invoice-auditor --keys public-keyring.json\n  \
        kubectl get agent invoice-auditor -o yaml | kubectl agentgov verify -f - --keys public-keyring.json")]
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Only agents with this governance status (SANDBOX, GOVERNED_VALID, GOVERNED_RESTRICTED,
    /// GOVERNED_INVALIDATED; any case).
    #[arg(long, value_name = "STATUS", value_parser = filter::parse_status)]
    status: Option<GovernanceStatus>,
    /// Only agents of this role class (compliance, analysis, ideation).
    #[arg(long, value_name = "ROLE", value_parser = filter::parse_role)]
    role: Option<RoleClass>,
    /// Only agents in this mode (sandbox or governed).
    #[arg(long, value_name = "MODE", value_parser = filter::parse_mode)]
    mode: Option<AgentMode>,
    /// Only sandboxes that expire within this long from now (like 24h or 90m).
    #[arg(long, value_name = "DURATION", value_parser = filter::parse_within)]
    expiring_within: Option<jiff::SignedDuration>,
    /// Only agents whose name, description or capabilities contain TEXT (any case).
    #[arg(long, value_name = "TEXT")]
    search: Option<String>,
    /// A label selector, passed to the API server (like `team=finance,tier!=test`).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    selector: Option<String>,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The agent to read from the cluster.
    #[arg(required_unless_present = "filename", conflicts_with = "filename")]
    name: Option<String>,
    /// An Agent manifest with its status (YAML or JSON; `-` for stdin), verified without a
    /// cluster.
    #[arg(short = 'f', long, value_name = "FILE")]
    filename: Option<PathBuf>,
    /// The key ring (JSON or YAML, as the operator and webhook read it; public keys suffice).
    #[arg(long, value_name = "FILE")]
    keys: PathBuf,
}

/// Run one command.
pub async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::List(args) => list(&cli.global, args).await,
        Command::Verify(args) => verify(&cli.global, args).await,
    }
}

async fn list(global: &Global, args: ListArgs) -> Result<(), Error> {
    let cluster = cluster::connect(global.kubeconfig.as_deref(), global.context.as_deref()).await?;
    let scope = Scope::new(
        global.namespace.as_deref(),
        global.all_namespaces,
        &cluster.default_namespace,
    );
    let agents = cluster.list(&scope, args.selector.as_deref()).await?;
    let now = Timestamp::now();
    let filter = Filter {
        status: args.status,
        role: args.role,
        mode: args.mode,
        expiring_within: args.expiring_within,
        search: args.search,
    };
    let agents = filter.apply(agents, now);
    if agents.is_empty() && global.output.says_none_found() {
        eprintln!("{}", scope.none_found());
        return Ok(());
    }
    let text = output::render(global.output, &agents, &scope, now)?;
    print(&text)
}

async fn verify(global: &Global, args: VerifyArgs) -> Result<(), Error> {
    let keys = verify::read_key_ring(&args.keys)?;
    let agent: Agent = match (&args.filename, &args.name) {
        (Some(path), _) => verify::read_agent(path)?,
        (None, Some(name)) => {
            let cluster =
                cluster::connect(global.kubeconfig.as_deref(), global.context.as_deref()).await?;
            let namespace = global
                .namespace
                .clone()
                .unwrap_or_else(|| cluster.default_namespace.clone());
            cluster.get(&namespace, name).await?
        }
        (None, None) => return Err(Error::Usage("give an agent NAME or -f FILE".into())),
    };
    let fallback = global.namespace.as_deref().unwrap_or("default");
    let verified = verify::verify(&agent, fallback, &keys, Timestamp::now())?;
    print(&verified.to_string())
}

fn print(text: &str) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(Error::Output)
}
