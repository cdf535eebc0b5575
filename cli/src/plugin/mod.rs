//! The kubectl plugin's commands. Parsing, filtering, expiry, table rendering, cleaning a copy,
//! building a scratch spec and judging a promotion's progress are plain functions (`filter`,
//! `table`, `output`, `verify`, `create`, `promote`); the kubeconfig, the API server, files and
//! stdout are touched only here and in `cluster`.

mod cluster;
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

use agentgov_api::Agent;
use agentgov_api::agent::{AgentMode, GovernanceStatus, MemoryKind, RoleClass};
use clap::{ArgGroup, Args, Parser, Subcommand};
use jiff::{SignedDuration, Timestamp};

pub use error::Error;

use cluster::{Cluster, DryRun, Scope};
use filter::Filter;
use output::Format;
use promote::Progress;

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
    List(ListArgs),
    /// Verify an agent's proof bundle offline with a key ring: the spec hash, the signer and
    /// the signature (exit 0 and `verified: ...`, or exit 1 saying which part failed).
    #[command(after_help = "Examples:\n  \
        kubectl agentgov verify invoice-auditor --keys public-keyring.json\n  \
        kubectl get agent invoice-auditor -o yaml | kubectl agentgov verify -f - --keys public-keyring.json")]
    Verify(VerifyArgs),
    /// Show the policy's answer for an agent's current spec (a server-side dry run of the
    /// approval: denies as an error, warnings on stderr), then approve that spec with an
    /// AgentPromotion; `--wait` follows the agent until it is in force for that spec.
    #[command(after_help = "Examples:\n  \
        kubectl agentgov promote invoice-auditor --wait\n  \
        kubectl agentgov promote invoice-auditor --reason CHG-1234 --wait --timeout 5m\n  \
        kubectl agentgov promote invoice-auditor --dry-run=server\n  \
        kubectl agentgov promote invoice-auditor --dry-run=client -o yaml > approval.yaml")]
    Promote(PromoteArgs),
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
    Create(Box<CreateArgs>),
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

#[derive(Debug, Args)]
struct PromoteArgs {
    /// The agent to approve, as its spec is now.
    name: String,
    /// Follow the agent until it is GOVERNED_VALID or GOVERNED_RESTRICTED for this spec (exit
    /// 0), or the promotion is denied or the timeout passes (exit 1).
    #[arg(long)]
    wait: bool,
    /// How long `--wait` waits (like 60s, 5m or 1h30m).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = filter::parse_within)]
    timeout: SignedDuration,
    /// Why, for the record (a change ticket, a review link): the AgentPromotion's spec.reason.
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// `client`: print the AgentPromotion, create nothing; `server`: have the API server and
    /// admission judge it, persist nothing.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = DryRun::None)]
    dry_run: DryRun,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("from").required(true).args(["clone", "import", "scratch"])))]
struct CreateArgs {
    /// The new agent's name.
    name: String,
    /// Copy this agent (spec, labels, annotations; not its status, proof or agentgov's
    /// annotations).
    #[arg(long, value_name = "AGENT")]
    clone: Option<String>,
    /// The namespace of the agent `--clone` copies (default: the new agent's).
    #[arg(long, value_name = "NAMESPACE", requires = "clone")]
    from_namespace: Option<String>,
    /// An Agent manifest (YAML or JSON; `-` for stdin), created under NAME in the namespace,
    /// cleaned as a clone is.
    #[arg(long, value_name = "FILE")]
    import: Option<PathBuf>,
    /// Build the spec from the flags below.
    #[arg(long)]
    scratch: bool,
    #[command(flatten)]
    spec: ScratchArgs,
    /// `client`: print the Agent, create nothing; `server`: have the API server and admission
    /// judge it, persist nothing.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = DryRun::None)]
    dry_run: DryRun,
}

/// The flags of `create --scratch`.
#[derive(Debug, Args)]
struct ScratchArgs {
    /// The role class (compliance, analysis, ideation): it decides the policy's limits.
    #[arg(long, value_name = "ROLE", value_parser = filter::parse_role, requires = "scratch")]
    role: Option<RoleClass>,
    /// `sandbox` (contained, expiring; the default) or `governed` (a promotion request).
    #[arg(long, value_name = "MODE", value_parser = filter::parse_mode, requires = "scratch")]
    mode: Option<AgentMode>,
    /// What the agent is for.
    #[arg(long, value_name = "TEXT", requires = "scratch")]
    description: Option<String>,
    /// The agent's own version label (spec.version).
    #[arg(long, value_name = "VERSION", default_value = "0.1.0")]
    agent_version: String,
    /// The model (spec.anatomy.reasoning.model); needs --temperature.
    #[arg(long, value_name = "MODEL", requires = "scratch")]
    model: Option<String>,
    /// The sampling temperature, 0 to 2; needs --model.
    #[arg(long, value_name = "NUMBER", requires = "scratch")]
    temperature: Option<f64>,
    /// A data source the agent reads (repeatable).
    #[arg(long = "input", value_name = "NAME", requires = "scratch")]
    inputs: Vec<String>,
    /// An action the agent may take (repeatable).
    #[arg(long = "action", value_name = "NAME", requires = "scratch")]
    actions: Vec<String>,
    /// A capability the agent declares (repeatable).
    #[arg(long = "capability", value_name = "NAME", requires = "scratch")]
    capabilities: Vec<String>,
    /// The memory it keeps: none, session or persistent.
    #[arg(long, value_name = "KIND", value_parser = create::parse_memory, requires = "scratch")]
    memory: Option<MemoryKind>,
    /// How long persistent memory is kept, in days.
    #[arg(long, value_name = "DAYS", requires = "memory")]
    retention_days: Option<i32>,
    /// The monthly budget in US dollars (spec.anatomy.economics).
    #[arg(long, value_name = "USD", requires = "scratch")]
    budget: Option<f64>,
    /// A sandbox's time to live from creation (like 24h; sandbox only).
    #[arg(long, value_name = "DURATION", value_parser = filter::parse_within, requires = "scratch")]
    ttl: Option<SignedDuration>,
}

impl From<ScratchArgs> for create::Scratch {
    fn from(a: ScratchArgs) -> Self {
        create::Scratch {
            description: a.description,
            version: a.agent_version,
            role: a.role,
            mode: a.mode.unwrap_or_default(),
            model: a.model,
            temperature: a.temperature,
            inputs: a.inputs,
            actions: a.actions,
            capabilities: a.capabilities,
            memory: a.memory,
            retention_days: a.retention_days,
            budget_usd: a.budget,
            ttl_seconds: a.ttl.map(|t| t.as_secs()),
        }
    }
}

/// Run one command.
pub async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::List(args) => list(&cli.global, args).await,
        Command::Verify(args) => verify(&cli.global, args).await,
        Command::Promote(args) => promote(&cli.global, args).await,
        Command::Create(args) => create(&cli.global, *args).await,
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

async fn promote(global: &Global, args: PromoteArgs) -> Result<(), Error> {
    let (cluster, ns) = cluster_and_namespace(global).await?;
    let agent = cluster.get(&ns, &args.name).await?;
    let id = promote::id(&agent);
    promote::promotable(&agent)?;
    let hash = agentgov_api::hash::spec_hash(&agent.spec).map_err(|e| Error::Hash {
        agent: id.clone(),
        message: e.to_string(),
    })?;
    let short = hash.get(..12).unwrap_or(&hash);
    let mut promotion = promote::promotion(&args.name, &ns, &hash, args.reason);
    if args.dry_run == DryRun::Client {
        return print(&output::created(global.output, &promotion, args.dry_run)?);
    }
    // The policy's answer first: a dry run that the webhook (the policy in force, with this
    // user as the approver) and the API server's guards judge. A name already taken (this
    // spec approved before) gets a generated one.
    let action = format!("approve agent {id} at spec hash {short}");
    let judged = match cluster.create(&ns, &promotion, true, &action).await {
        Err(Error::AlreadyExists { .. }) => {
            promotion = promote::with_generated_name(promotion);
            cluster.create(&ns, &promotion, true, &action).await?
        }
        answer => answer?,
    };
    eprintln!("the policy in force allows approving agent {id} at spec hash {short}");
    warn(&judged.warnings);
    if args.dry_run == DryRun::Server {
        return print(&output::created(
            global.output,
            &judged.object,
            args.dry_run,
        )?);
    }
    let created = cluster.create(&ns, &promotion, false, &action).await?;
    print(&output::created(
        global.output,
        &created.object,
        args.dry_run,
    )?)?;
    if !args.wait {
        return Ok(());
    }
    let name = created.object.metadata.name.unwrap_or_default();
    wait_promoted(&cluster, &ns, &args.name, &name, &hash, args.timeout).await
}

/// `promote --wait`: poll the agent and its promotion until `promote::progress` decides,
/// printing each new progress line on stderr.
async fn wait_promoted(
    cluster: &Cluster,
    ns: &str,
    agent: &str,
    promotion: &str,
    hash: &str,
    timeout: SignedDuration,
) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + timeout.unsigned_abs();
    let mut last = String::new();
    loop {
        let current = cluster.get(ns, agent).await?;
        let approval = cluster.get_promotion(ns, promotion).await?;
        match promote::progress(&current, &approval, hash) {
            Progress::Promoted(status) => {
                eprintln!(
                    "agent {} is {} for spec hash {}",
                    promote::id(&current),
                    status.as_str(),
                    hash.get(..12).unwrap_or(hash)
                );
                return Ok(());
            }
            Progress::Failed(sentence) => return Err(Error::NotPromoted(sentence)),
            Progress::Waiting(line) if line != last => {
                eprintln!("{line}");
                last = line;
            }
            Progress::Waiting(_) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            let state = last.strip_prefix("waiting: ").unwrap_or(&last);
            return Err(Error::NotPromoted(format!(
                "agent {ns}/{agent} was not promoted within {timeout:#}: {state}"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

async fn create(global: &Global, args: CreateArgs) -> Result<(), Error> {
    // A client dry run of an import or a scratch spec into a named namespace needs no cluster
    // (nor a kubeconfig): GitOps users render manifests with it.
    let offline = args.dry_run == DryRun::Client && args.clone.is_none();
    let (cluster, ns) = match (offline, &global.namespace) {
        (true, Some(ns)) => (None, ns.clone()),
        _ => cluster_and_namespace(global)
            .await
            .map(|(cluster, ns)| (Some(cluster), ns))?,
    };
    let agent = match (&args.clone, &args.import, &cluster) {
        (Some(original), _, Some(cluster)) => {
            let from = args.from_namespace.clone().unwrap_or_else(|| ns.clone());
            let source = cluster.get(&from, original).await?;
            create::copy(
                source,
                &args.name,
                &ns,
                create::cloned_from(&from, original),
            )
        }
        (Some(_), _, None) => return Err(Error::Usage("--clone reads the cluster".into())),
        (None, Some(path), _) => {
            let source = verify::read_agent(path)?;
            let reference = create::imported_from(&path.display().to_string());
            create::copy(source, &args.name, &ns, reference)
        }
        (None, None, _) => {
            let mut agent = Agent::new(&args.name, create::scratch_spec(args.spec.into())?);
            agent.metadata.namespace = Some(ns.clone());
            agent
        }
    };
    let Some(cluster) = cluster.filter(|_| args.dry_run != DryRun::Client) else {
        return print(&output::created(global.output, &agent, DryRun::Client)?);
    };
    let action = format!("create agent {ns}/{}", args.name);
    let created = cluster
        .create(&ns, &agent, args.dry_run == DryRun::Server, &action)
        .await?;
    warn(&created.warnings);
    print(&output::created(
        global.output,
        &created.object,
        args.dry_run,
    )?)
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
