//! `create`: a new agent cloned, imported or built from flags.

use std::path::PathBuf;

use agentgov_api::Agent;
use agentgov_api::agent::{AgentMode, MemoryKind, RoleClass};
use clap::{ArgGroup, Args};
use jiff::SignedDuration;

use crate::plugin::cluster::DryRun;
use crate::plugin::{
    Error, Global, cluster_and_namespace, create, filter, output, print, verify, warn,
};

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("from").required(true).args(["clone", "import", "scratch"])))]
pub struct CreateArgs {
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
pub struct ScratchArgs {
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

pub async fn run(global: &Global, args: CreateArgs) -> Result<(), Error> {
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
