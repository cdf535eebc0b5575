//! `bulk`: extend, demote, delete or promote every agent a selection names.

use clap::Args;

use crate::plugin::{Error, Global};

#[derive(Debug, Args)]
pub struct BulkArgs {}

pub async fn run(_global: &Global, _args: BulkArgs) -> Result<(), Error> {
    Err(Error::Usage("`bulk` is not built yet".into()))
}
