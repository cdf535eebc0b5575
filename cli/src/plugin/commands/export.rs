//! `export`: the compliance export.

use clap::Args;

use crate::plugin::{Error, Global};

#[derive(Debug, Args)]
pub struct ExportArgs {}

pub async fn run(_global: &Global, _args: ExportArgs) -> Result<(), Error> {
    Err(Error::Usage("`export` is not built yet".into()))
}
