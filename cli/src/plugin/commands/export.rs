//! `export`: the compliance export.

use std::path::PathBuf;

use agentgov_api::keyring::KeyRingConfig;
use clap::{Args, ValueEnum};
use jiff::Timestamp;

use crate::plugin::cluster::Scope;
use crate::plugin::export::controls::Mapping;
use crate::plugin::export::{self, Input, Since, render};
use crate::plugin::{Error, Global, print, verify};

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// json (the verifiable document), csv (one row per agent) or html (a page for people).
    #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
    format: ExportFormat,
    /// Only agents changed at or after this time (created, signed, or a condition moved) and
    /// policy versions from then on: a time (RFC 3339) or a duration back from now (like 24h).
    #[arg(long, value_name = "DURATION|TIMESTAMP", value_parser = Since::parse)]
    since: Option<Since>,
    /// The key ring whose public keys the export carries (JSON or YAML; private keys and HMAC
    /// keys in it are left out), as `verify --keys` reads it.
    #[arg(long, value_name = "FILE")]
    keys: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ExportFormat {
    Json,
    Csv,
    Html,
}

pub async fn run(global: &Global, args: ExportArgs) -> Result<(), Error> {
    let bytes = verify::read(&args.keys)?;
    let keys: KeyRingConfig = serde_yaml::from_slice(&bytes).map_err(|e| Error::KeyRing {
        path: args.keys.clone(),
        message: e.to_string(),
    })?;
    let mapping = Mapping::shipped().map_err(Error::Encode)?;
    let super::drift::Read {
        scope,
        agents,
        bundles,
        floor,
        ..
    } = super::drift::agents_and_bundles(global).await?;
    let now = Timestamp::now();
    let input = Input {
        agents: &agents,
        bundles: &bundles,
        floor: floor.as_ref(),
        keys: &keys,
        namespace: match &scope {
            Scope::All => None,
            Scope::One(ns) => Some(ns.as_str()),
        },
        since: args.since.map(|s| s.at(now)),
        now,
    };
    let (document, left_out) = export::build(&input, &mapping)?;
    for id in left_out {
        eprintln!(
            "Warning: key {id} is an HMAC key, whose secret is not published: its proofs verify only with --keys"
        );
    }
    let text = match args.format {
        ExportFormat::Json => export::to_json(&document)?,
        ExportFormat::Csv => render::csv(&document)?,
        ExportFormat::Html => render::html(&document),
    };
    print(&text)
}
