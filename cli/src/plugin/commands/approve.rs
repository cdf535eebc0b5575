//! `approve`: a further approval of an agent awaiting more approvers.

use clap::Args;

use crate::plugin::{Error, Global};

#[derive(Debug, Args)]
pub struct ApproveArgs {}

pub async fn run(_global: &Global, _args: ApproveArgs) -> Result<(), Error> {
    Err(Error::Usage("`approve` is not built yet".into()))
}
