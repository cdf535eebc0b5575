//! `verify`: an agent's proof checked offline with a key ring.

use std::path::PathBuf;

use agentgov_api::Agent;
use clap::Args;
use jiff::Timestamp;

use crate::plugin::{Error, Global, cluster, print, verify};

#[derive(Debug, Args)]
pub struct VerifyArgs {
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

pub async fn run(global: &Global, args: VerifyArgs) -> Result<(), Error> {
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
