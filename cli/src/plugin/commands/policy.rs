//! `policy test|eval|preview`: a bundle's tests, its answer for one agent, and its effect on
//! every live agent before anyone applies it.

use std::path::{Path, PathBuf};

use agentgov_api::policy::PolicyEngine;
use agentgov_api::policy_bundle::DEFAULT_BUNDLE_NAME;
use agentgov_api::{AgentPromotion, PolicyBundleSpec};
use clap::{Args, Subcommand};

use crate::plugin::cluster::{Cluster, Scope};
use crate::plugin::output::Format;
use crate::plugin::policy::{bundle, suite, verdict};
use crate::plugin::{
    Error, Global, cluster_and_namespace, cluster_and_scope, output, print, verify,
};

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Run every `test_` rule of Rego files, directories and PolicyBundle manifests, like
    /// `opa test`: one PASS or FAIL line per test and a summary; exit 1 when any fails.
    /// A bundle manifest's data is the policy's `data.agentgov.limits`; JSON and YAML files
    /// are data at their directory's path (as OPA loads them).
    #[command(after_help = "Examples:\n  \
        kubectl agentgov policy test examples/policybundle-default.yaml examples/policy/\n  \
        kubectl agentgov policy test policies/\n  \
        kubectl agentgov policy test bundle.yaml my_test.rego -o json")]
    Test(TestArgs),
    /// What a policy says of one agent's spec: allowed or denied (each deny with its rule's
    /// code), the restrictions (warnings) it would run under, and the status an approval would
    /// give it. Offline with a bundle file; else the bundle in force in the namespace. Exit 1
    /// when the policy denies.
    #[command(after_help = "Examples:\n  \
        kubectl agentgov policy eval -f agent.yaml --bundle policybundle.yaml\n  \
        kubectl agentgov policy eval -f agent.yaml\n  \
        kubectl get agent auditor -o yaml | kubectl agentgov policy eval -f - --bundle strict -o json")]
    Eval(EvalArgs),
    /// Evaluate a candidate PolicyBundle against every live governed agent of the namespace
    /// (`-A`: every namespace) as the operator will once it is applied, and list which stay
    /// valid, become restricted or are invalidated: AGENT, NOW, AFTER, WHY. Sandboxes are not
    /// listed (a policy change does not judge them). The agents are evaluated in parallel (a
    /// thread that judges many compiles its own copy of the bundle).
    #[command(after_help = "Examples:\n  \
        kubectl agentgov policy preview strict-bundle.yaml\n  \
        kubectl agentgov policy preview -f strict-bundle.yaml -A -o json")]
    Preview(PreviewArgs),
}

#[derive(Debug, Args)]
struct TestArgs {
    /// Rego files, PolicyBundle manifests, data files, or directories of them (read
    /// recursively).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// The Agent manifest (YAML or JSON; `-` for stdin).
    #[arg(short = 'f', long, value_name = "FILE")]
    filename: PathBuf,
    /// A PolicyBundle manifest file, or the name of a PolicyBundle in the namespace (its
    /// version in force). Default: the bundle named `default` in the namespace.
    #[arg(long, value_name = "FILE|NAME")]
    bundle: Option<String>,
}

#[derive(Debug, Args)]
struct PreviewArgs {
    /// The candidate PolicyBundle manifest.
    #[arg(
        value_name = "FILE",
        required_unless_present = "filename",
        conflicts_with = "filename"
    )]
    bundle: Option<PathBuf>,
    /// The candidate PolicyBundle manifest (as the positional FILE).
    #[arg(short = 'f', long, value_name = "FILE")]
    filename: Option<PathBuf>,
}

pub async fn run(global: &Global, args: PolicyArgs) -> Result<(), Error> {
    match args.command {
        PolicyCommand::Test(args) => test(global, args),
        PolicyCommand::Eval(args) => eval(global, args).await,
        PolicyCommand::Preview(args) => preview(global, args).await,
    }
}

fn test(global: &Global, args: TestArgs) -> Result<(), Error> {
    let mut sources = Vec::new();
    for path in &args.paths {
        collect(path, path, &mut sources)?;
    }
    let results = suite::run(&sources).map_err(|message| Error::Bundle {
        bundle: describe(&args.paths),
        message,
    })?;
    match global.output {
        Format::Json => print(&output::document(Format::Json, &results)?)?,
        Format::Yaml => print(&output::document(Format::Yaml, &results)?)?,
        Format::Table | Format::Name => print(&suite::report(&results))?,
    }
    if suite::passed(&results) {
        return Ok(());
    }
    let failed = results
        .iter()
        .filter(|r| r.verdict != suite::Verdict::Pass)
        .count();
    Err(Error::PolicyOutcome(format!(
        "{failed} of {} policy tests failed",
        results.len()
    )))
}

/// Read `path` (a file, or a directory read recursively in name order) into `sources`; data
/// files are placed at their directory below `root`.
fn collect(root: &Path, path: &Path, sources: &mut Vec<suite::Source>) -> Result<(), Error> {
    let unreadable = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(unreadable)?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(unreadable)?;
        entries.sort();
        for entry in entries {
            collect(root, &entry, sources)?;
        }
        return Ok(());
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir: Vec<String> = path
        .parent()
        .and_then(|parent| parent.strip_prefix(root).ok())
        .map(|relative| {
            relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let text = std::fs::read_to_string(path).map_err(unreadable)?;
    match suite::classify(&name, dir, &text) {
        Some(Ok(source)) => sources.push(source),
        Some(Err(message)) => {
            return Err(Error::Bundle {
                bundle: path.display().to_string(),
                message,
            });
        }
        None => {}
    }
    Ok(())
}

async fn eval(global: &Global, args: EvalArgs) -> Result<(), Error> {
    let agent = verify::read_agent(&args.filename)?;
    let offline = args
        .bundle
        .as_deref()
        .map(Path::new)
        .filter(|p| p.is_file());
    let (spec, source, namespace) = match offline {
        Some(path) => {
            let spec = read_bundle(path)?;
            let namespace = agent
                .metadata
                .namespace
                .clone()
                .or_else(|| global.namespace.clone())
                .unwrap_or_else(|| "default".into());
            (spec, path.display().to_string(), namespace)
        }
        None => {
            let (cluster, namespace) = cluster_and_namespace(global).await?;
            let namespace = agent.metadata.namespace.clone().unwrap_or(namespace);
            let name = args.bundle.as_deref().unwrap_or(DEFAULT_BUNDLE_NAME);
            let spec = bundle_in_force(&cluster, &namespace, name).await?;
            (spec, format!("{namespace}/{name}"), namespace)
        }
    };
    let engine = compile(&spec, &source)?;
    let reference = verdict::BundleRef {
        name: source,
        version: spec.version.clone(),
        hash: engine.hash().to_string(),
    };
    let name = agent.metadata.name.clone().unwrap_or_default();
    let answer = verdict::evaluate(&engine, reference, &namespace, &name, &agent.spec);
    match global.output {
        Format::Json => print(&output::document(Format::Json, &answer)?)?,
        Format::Yaml => print(&output::document(Format::Yaml, &answer)?)?,
        Format::Table | Format::Name => print(&verdict::evaluation_text(&answer))?,
    }
    if answer.allow {
        return Ok(());
    }
    Err(Error::PolicyOutcome(format!(
        "the policy denies agent {namespace}/{name} ({} denies)",
        answer.denies.len()
    )))
}

async fn preview(global: &Global, args: PreviewArgs) -> Result<(), Error> {
    let Some(path) = args.bundle.or(args.filename) else {
        return Err(Error::Usage(
            "give the candidate bundle: FILE or -f FILE".into(),
        ));
    };
    let spec = read_bundle(&path)?;
    let engine = compile(&spec, &path.display().to_string())?;
    let (cluster, scope) = cluster_and_scope(global).await?;
    let agents = cluster.list(&scope, None).await?;
    let promotions: Vec<AgentPromotion> = cluster.list_of(&scope, "agentpromotions").await?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let required = spec.data.approvals_required();
    // CPU only, on every core; nothing else runs meanwhile.
    let rows = verdict::preview(&engine, required, &agents, &promotions, threads);
    match global.output {
        Format::Json => print(&output::document(Format::Json, &rows)?),
        Format::Yaml => print(&output::document(Format::Yaml, &rows)?),
        Format::Name => print(
            &rows
                .iter()
                .map(|p| format!("agent.agentgov.dev/{}\n", p.agent))
                .collect::<String>(),
        ),
        Format::Table if rows.is_empty() => {
            eprintln!(
                "No governed agents found{}.",
                match &scope {
                    Scope::All => String::new(),
                    Scope::One(ns) => format!(" in {ns} namespace"),
                }
            );
            Ok(())
        }
        Format::Table => {
            print(&verdict::preview_table(&rows, scope == Scope::All))?;
            eprintln!("{}", verdict::preview_summary(&rows));
            Ok(())
        }
    }
}

/// A PolicyBundle manifest's spec.
pub(crate) fn read_bundle(path: &Path) -> Result<PolicyBundleSpec, Error> {
    let bytes = verify::read(path)?;
    let text = String::from_utf8_lossy(&bytes);
    bundle::parse(&text)
        .map(|b| b.spec)
        .map_err(|message| Error::Bundle {
            bundle: path.display().to_string(),
            message,
        })
}

/// The version in force of the bundle `name` in `namespace`.
pub(crate) async fn bundle_in_force(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
) -> Result<PolicyBundleSpec, Error> {
    let failed = |message: String| Error::Bundle {
        bundle: format!("{namespace}/{name}"),
        message,
    };
    let found = cluster.get_bundle(namespace, name).await?.ok_or_else(|| {
        failed(
            "no PolicyBundle of that name exists, so no policy is in force (give a file with --bundle to evaluate offline)"
                .into(),
        )
    })?;
    bundle::in_force(&found).map_err(failed)
}

pub(crate) fn compile(spec: &PolicyBundleSpec, source: &str) -> Result<PolicyEngine, Error> {
    PolicyEngine::compile(spec).map_err(|e| Error::Bundle {
        bundle: source.to_string(),
        message: e.to_string(),
    })
}

fn describe(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
