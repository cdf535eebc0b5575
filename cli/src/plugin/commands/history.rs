//! `history`, `diff` and `rollback`: an agent's versions, kept by the operator as
//! ControllerRevisions owned by the Agent.

use clap::Args;

use crate::plugin::{Error, Global};

#[derive(Debug, Args)]
pub struct HistoryArgs {}

pub async fn run_history(_global: &Global, _args: HistoryArgs) -> Result<(), Error> {
    Err(Error::Usage("`history` is not built yet".into()))
}

#[derive(Debug, Args)]
pub struct DiffArgs {}

pub async fn run_diff(_global: &Global, _args: DiffArgs) -> Result<(), Error> {
    Err(Error::Usage("`diff` is not built yet".into()))
}

#[derive(Debug, Args)]
pub struct RollbackArgs {}

pub async fn run_rollback(_global: &Global, _args: RollbackArgs) -> Result<(), Error> {
    Err(Error::Usage("`rollback` is not built yet".into()))
}
