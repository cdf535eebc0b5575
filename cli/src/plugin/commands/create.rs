//! `create`: a new agent cloned, imported, or built from a template, a workflow, a chat
//! transcript, a CloudEvent or flags; `--check` asks the promotion policy about the result.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use agentgov_api::AgentSpec;
use agentgov_api::agent::{AgentMode, MemoryKind, RoleClass, SourceKind};
use agentgov_api::policy_bundle::DEFAULT_BUNDLE_NAME;
use agentgov_api::template::AgentDefaults;
use agentgov_api::{Agent, AgentTemplate, AgentTemplateSpec, ClusterAgentTemplate};
use clap::{ArgGroup, Args};
use jiff::SignedDuration;
use kube::Api;

use crate::plugin::cluster::{Cluster, DryRun};
use crate::plugin::commands::policy::{bundle_in_force, compile, read_bundle};
use crate::plugin::policy::verdict;
use crate::plugin::sources::{self, Draft, interactive};
use crate::plugin::{
    Error, Global, cluster_and_namespace, create, filter, output, print, verify, warn,
};

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("from").required(true).args([
    "clone", "import", "scratch", "template", "cluster_template", "template_file",
    "from_workflow", "from_conversation", "from_event",
])))]
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
    /// cleaned as a clone is; or a row of the seed's `agent_specs` table (JSON), whose
    /// status and proof are dropped.
    #[arg(long, value_name = "FILE")]
    import: Option<PathBuf>,
    /// Build the spec from the flags below. At a terminal without --role, each field the
    /// flags leave open is asked for, with the policy's limit beside it.
    #[arg(long)]
    scratch: bool,
    /// The AgentTemplate T of the namespace, else the ClusterAgentTemplate T: its defaults,
    /// with the flags below as overrides (each must be on its allowedOverrides list).
    #[arg(long, value_name = "T")]
    template: Option<String>,
    /// The ClusterAgentTemplate T (even when the namespace has an AgentTemplate T).
    #[arg(long, value_name = "T")]
    cluster_template: Option<String>,
    /// An AgentTemplate or ClusterAgentTemplate manifest (no cluster needed).
    #[arg(long, value_name = "FILE")]
    template_file: Option<PathBuf>,
    /// An Argo Workflows Workflow/WorkflowTemplate or a GitHub Actions workflow (YAML; `-`
    /// for stdin). Argo: arguments and input artifacts become inputs, every template that
    /// runs something (container, script, resource, http, ...) an action, the
    /// `workflows.argoproj.io/description` annotation the description. GitHub Actions: the
    /// `workflow_dispatch`/`workflow_call` inputs become inputs, every step (id, else name,
    /// else the action it uses) and reusable-workflow call an action, `name` the description.
    #[arg(long, value_name = "FILE")]
    from_workflow: Option<PathBuf>,
    /// A chat transcript (JSON: OpenAI's chat-completions request shape, or Anthropic's): the
    /// system prompt becomes the description, each tool an action and a capability, the model
    /// and temperature (default 1) the reasoning.
    #[arg(long, value_name = "FILE")]
    from_conversation: Option<PathBuf>,
    /// A CloudEvent (JSON, structured mode; `-` for stdin): `type@source` becomes the
    /// reference, `data` holds spec fields (description, version, roleClass, mode, anatomy,
    /// sandbox, runtime).
    #[arg(long, value_name = "FILE")]
    from_event: Option<PathBuf>,
    #[command(flatten)]
    spec: ScratchArgs,
    /// Ask the namespace's promotion policy (the PolicyBundle in force, evaluated here) what a
    /// promotion of the result would answer: allowed or denied, the denies and the warnings,
    /// on stderr. The command then does what it was asked either way.
    #[arg(long)]
    check: bool,
    /// With --check: the PolicyBundle manifest to ask instead of the cluster's (offline).
    #[arg(long, value_name = "FILE", requires = "check")]
    bundle: Option<PathBuf>,
    /// `client`: print the Agent, create nothing; `server`: have the API server and admission
    /// judge it, persist nothing.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = DryRun::None)]
    dry_run: DryRun,
}

/// The spec flags: `--scratch`'s spec, and overrides over a template, workflow, transcript,
/// CloudEvent or seed row.
#[derive(Clone, Debug, Args)]
pub struct ScratchArgs {
    /// The role class (compliance, analysis, ideation): it decides the policy's limits.
    #[arg(long, value_name = "ROLE", value_parser = filter::parse_role)]
    role: Option<RoleClass>,
    /// `sandbox` (contained, expiring; the default) or `governed` (a promotion request).
    #[arg(long, value_name = "MODE", value_parser = filter::parse_mode)]
    mode: Option<AgentMode>,
    /// What the agent is for.
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
    /// The agent's own version label (spec.version; default: the source's, else 0.1.0).
    #[arg(long, value_name = "VERSION")]
    agent_version: Option<String>,
    /// The model (spec.anatomy.reasoning.model); needs a temperature.
    #[arg(long, value_name = "MODEL")]
    model: Option<String>,
    /// The sampling temperature, 0 to 2; needs a model.
    #[arg(long, value_name = "NUMBER")]
    temperature: Option<f64>,
    /// A data source the agent reads (repeatable).
    #[arg(long = "input", value_name = "NAME")]
    inputs: Vec<String>,
    /// An action the agent may take (repeatable).
    #[arg(long = "action", value_name = "NAME")]
    actions: Vec<String>,
    /// A capability the agent declares (repeatable).
    #[arg(long = "capability", value_name = "NAME")]
    capabilities: Vec<String>,
    /// The memory it keeps: none, session or persistent.
    #[arg(long, value_name = "KIND", value_parser = create::parse_memory)]
    memory: Option<MemoryKind>,
    /// How long persistent memory is kept, in days.
    #[arg(long, value_name = "DAYS", requires = "memory")]
    retention_days: Option<i32>,
    /// The monthly budget in US dollars (spec.anatomy.economics).
    #[arg(long, value_name = "USD")]
    budget: Option<f64>,
    /// A sandbox's time to live from creation (like 24h; sandbox only).
    #[arg(long, value_name = "DURATION", value_parser = filter::parse_within)]
    ttl: Option<SignedDuration>,
}

impl From<ScratchArgs> for create::Scratch {
    fn from(a: ScratchArgs) -> Self {
        create::Scratch {
            description: a.description,
            version: a.agent_version,
            role: a.role,
            mode: a.mode,
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

impl CreateArgs {
    /// Whether building the agent (or checking it) reads the cluster.
    fn reads_cluster(&self) -> bool {
        self.clone.is_some()
            || self.template.is_some()
            || self.cluster_template.is_some()
            || (self.check && self.bundle.is_none())
    }
}

pub async fn run(global: &Global, args: CreateArgs) -> Result<(), Error> {
    // A client dry run that reads no cluster object into a named namespace needs no cluster
    // (nor a kubeconfig): GitOps users render manifests with it.
    let offline = args.dry_run == DryRun::Client && !args.reads_cluster();
    let (cluster, ns) = match (offline, &global.namespace) {
        (true, Some(ns)) => (None, ns.clone()),
        _ => cluster_and_namespace(global)
            .await
            .map(|(cluster, ns)| (Some(cluster), ns))?,
    };
    let mut flags = create::Scratch::from(args.spec.clone());
    if args.scratch && flags.role.is_none() && std::io::stdin().is_terminal() {
        let limits = interactive::Limits {
            data: policy_data(&args, cluster.as_ref(), &ns).await,
        };
        let wizard = interactive::Wizard::new(flags, limits);
        flags = interactive::ask(wizard, &mut std::io::stdin().lock(), &mut std::io::stderr())
            .map_err(Error::Usage)?;
    }
    let agent = build(&args, flags, cluster.as_ref(), &ns).await?;
    if args.check {
        check(&args, cluster.as_ref(), &ns, &agent.spec).await?;
    }
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

/// The Agent the arguments describe.
async fn build(
    args: &CreateArgs,
    flags: create::Scratch,
    cluster: Option<&Cluster>,
    ns: &str,
) -> Result<Agent, Error> {
    let overrides = create::flags(flags)?;
    let flags_given = overrides != AgentDefaults::default();
    let as_is = |mode: &str| -> Result<(), Error> {
        if !flags_given {
            return Ok(());
        }
        Err(Error::Usage(format!(
            "{mode} takes the agent as it is: the spec flags go with --scratch, --template, \
             --from-workflow, --from-conversation, --from-event or a seed row's --import"
        )))
    };
    let draft = if let Some(original) = &args.clone {
        as_is("--clone")?;
        let cluster = cluster.ok_or_else(|| Error::Usage("--clone reads the cluster".into()))?;
        let from = args
            .from_namespace
            .clone()
            .unwrap_or_else(|| ns.to_string());
        let source = cluster.get(&from, original).await?;
        let reference = create::cloned_from(&from, original);
        return Ok(create::copy(source, &args.name, ns, reference));
    } else if let Some(path) = &args.import {
        let bytes = verify::read(path)?;
        let document: serde_json::Value = serde_yaml::from_slice(&bytes)
            .ok()
            .unwrap_or(serde_json::Value::Null);
        if sources::seed_row::is_seed_row(&document) {
            let file = path.display().to_string();
            sources::seed_row::parse(document, &file)
                .map_err(|m| not_a(path, "a row of the seed's agent_specs", m))?
        } else {
            as_is("--import of an Agent manifest")?;
            let source = verify::parse_agent(&bytes).map_err(|message| Error::NotAnAgent {
                path: path.clone(),
                message,
            })?;
            let reference = create::imported_from(&path.display().to_string());
            return Ok(create::copy(source, &args.name, ns, reference));
        }
    } else if args.scratch {
        Draft {
            spec: AgentDefaults::default(),
            source: sources::source(SourceKind::Scratch, None),
        }
    } else if let Some((template, reference)) = template(args, cluster, ns).await? {
        let draft =
            sources::template::apply(&template, &reference, overrides).map_err(Error::Usage)?;
        return Ok(create::agent(
            &args.name,
            ns,
            create::finish(draft.spec, draft.source)?,
        ));
    } else if let Some(path) = &args.from_workflow {
        let file = path.display().to_string();
        sources::workflow::parse(&verify::read(path)?, &file)
            .map_err(|m| not_a(path, "a workflow", m))?
    } else if let Some(path) = &args.from_conversation {
        let file = path.display().to_string();
        sources::conversation::parse(&verify::read(path)?, &file)
            .map_err(|m| not_a(path, "a chat transcript", m))?
    } else if let Some(path) = &args.from_event {
        sources::event::parse(&verify::read(path)?).map_err(|m| not_a(path, "a CloudEvent", m))?
    } else {
        return Err(Error::Usage("say what to create the agent from".into()));
    };
    let spec = create::finish(draft.spec.merge(overrides), draft.source)?;
    Ok(create::agent(&args.name, ns, spec))
}

fn not_a(path: &Path, what: &'static str, message: String) -> Error {
    Error::NotASource {
        path: path.to_path_buf(),
        what,
        message,
    }
}

/// The template `--template`, `--cluster-template` or `--template-file` names, with the
/// reference an agent made from it records; none without those flags.
async fn template(
    args: &CreateArgs,
    cluster: Option<&Cluster>,
    ns: &str,
) -> Result<Option<(AgentTemplateSpec, String)>, Error> {
    if let Some(path) = &args.template_file {
        return sources::template::parse(&verify::read(path)?, ns)
            .map(Some)
            .map_err(|m| not_a(path, "an AgentTemplate or ClusterAgentTemplate", m));
    }
    let (name, namespaced_first) = match (&args.template, &args.cluster_template) {
        (Some(name), _) => (name, true),
        (None, Some(name)) => (name, false),
        (None, None) => return Ok(None),
    };
    let Some(cluster) = cluster else {
        return Err(Error::Usage("--template reads the cluster".into()));
    };
    if namespaced_first {
        let api: Api<AgentTemplate> = Api::namespaced(cluster.client(), ns);
        let action = format!("get agenttemplate {name}");
        if let Some(found) = api
            .get_opt(name)
            .await
            .map_err(|e| Error::from_api(&action, ns, None, e))?
        {
            return Ok(Some((found.spec, sources::template::namespaced(ns, name))));
        }
    }
    let api: Api<ClusterAgentTemplate> = Api::all(cluster.client());
    let action = format!("get clusteragenttemplate {name}");
    match api
        .get_opt(name)
        .await
        .map_err(|e| Error::from_api(&action, "", None, e))?
    {
        Some(found) => Ok(Some((found.spec.into(), sources::template::cluster(name)))),
        None if namespaced_first => Err(Error::Usage(format!(
            "no AgentTemplate {name} in namespace {ns} and no ClusterAgentTemplate {name}"
        ))),
        None => Err(Error::Usage(format!("no ClusterAgentTemplate {name}"))),
    }
}

/// `--check`: the policy's answer on `spec`, on stderr (stdout keeps the manifest).
async fn check(
    args: &CreateArgs,
    cluster: Option<&Cluster>,
    ns: &str,
    spec: &AgentSpec,
) -> Result<(), Error> {
    let (bundle_spec, label) = match (&args.bundle, cluster) {
        (Some(path), _) => (read_bundle(path)?, path.display().to_string()),
        (None, Some(cluster)) => (
            bundle_in_force(cluster, ns, DEFAULT_BUNDLE_NAME).await?,
            format!("{ns}/{DEFAULT_BUNDLE_NAME}"),
        ),
        (None, None) => {
            return Err(Error::Usage(
                "--check reads the cluster's bundle: give --bundle FILE to check offline".into(),
            ));
        }
    };
    let engine = compile(&bundle_spec, &label)?;
    let reference = verdict::BundleRef {
        name: label,
        version: bundle_spec.version.clone(),
        hash: engine.hash().to_string(),
    };
    let answer = verdict::evaluate(&engine, reference, ns, &args.name, spec);
    eprint!("{}", verdict::evaluation_text(&answer));
    Ok(())
}

/// The policy's limits for the prompts: `--bundle`'s, else the namespace's bundle in force;
/// none when neither can be read (the prompts then show no limits).
async fn policy_data(
    args: &CreateArgs,
    cluster: Option<&Cluster>,
    ns: &str,
) -> Option<agentgov_api::policy_bundle::PolicyData> {
    let spec = match (&args.bundle, cluster) {
        (Some(path), _) => read_bundle(path).ok(),
        (None, Some(cluster)) => bundle_in_force(cluster, ns, DEFAULT_BUNDLE_NAME).await.ok(),
        (None, None) => None,
    };
    spec.map(|s| s.data)
}
