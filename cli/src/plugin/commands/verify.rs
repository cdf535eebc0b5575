//! `verify`: an agent's proof checked offline with a key ring, or a whole compliance export.

use std::path::PathBuf;

use agentgov_api::Agent;
use clap::Args;
use jiff::Timestamp;

use crate::plugin::{Error, Global, cluster, print, verify};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The agent to read from the cluster.
    #[arg(
        required_unless_present_any = ["filename", "export"],
        conflicts_with_all = ["filename", "export"]
    )]
    name: Option<String>,
    /// An Agent manifest with its status (YAML or JSON; `-` for stdin), verified without a
    /// cluster.
    #[arg(short = 'f', long, value_name = "FILE", conflicts_with = "export")]
    filename: Option<PathBuf>,
    /// A JSON compliance export (`kubectl agentgov export`; `-` for stdin), verified without a
    /// cluster: its digests, then every agent's proof. Exits 1 naming each agent whose record
    /// fails.
    #[arg(long, value_name = "FILE")]
    export: Option<PathBuf>,
    /// The key ring (JSON or YAML, as the operator and webhook read it; public keys suffice).
    /// With `--export`, optional: the export's own ring is used without it; give it to pin
    /// the keys you trust.
    #[arg(long, value_name = "FILE", required_unless_present = "export")]
    keys: Option<PathBuf>,
}

pub async fn run(global: &Global, args: VerifyArgs) -> Result<(), Error> {
    let keys = args
        .keys
        .as_deref()
        .map(verify::read_key_ring)
        .transpose()?;
    if let Some(path) = &args.export {
        let bytes = verify::read(path)?;
        let not_an_export = |message: String| Error::NotAnExport {
            path: path.clone(),
            message,
        };
        let text = String::from_utf8(bytes).map_err(|e| not_an_export(e.to_string()))?;
        let check =
            verify::verify_export(&text, keys.as_ref(), Timestamp::now()).map_err(not_an_export)?;
        print(&check.to_string())?;
        return check.outcome(&path.display().to_string());
    }
    let Some(keys) = keys else {
        return Err(Error::Usage("give the key ring with --keys FILE".into()));
    };
    let agent: Agent = match (&args.filename, &args.name) {
        (Some(path), _) => verify::read_agent(path)?,
        (None, Some(name)) => {
            let cluster = cluster::connect(global).await?;
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
