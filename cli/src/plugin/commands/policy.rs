//! `policy test|eval|preview`: a bundle's tests, its answer for one agent, and its effect on
//! every live agent before anyone applies it.

use clap::Args;

use crate::plugin::{Error, Global};

#[derive(Debug, Args)]
pub struct PolicyArgs {}

pub async fn run(_global: &Global, _args: PolicyArgs) -> Result<(), Error> {
    Err(Error::Usage("`policy` is not built yet".into()))
}
