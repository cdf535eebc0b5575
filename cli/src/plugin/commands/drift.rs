//! `drift`: the seed's drift dashboard as a report.

use clap::Args;

use crate::plugin::{Error, Global};

#[derive(Debug, Args)]
pub struct DriftArgs {}

pub async fn run(_global: &Global, _args: DriftArgs) -> Result<(), Error> {
    Err(Error::Usage("`drift` is not built yet".into()))
}
