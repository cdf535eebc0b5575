//! `events`: an agent's governance events, live with `--follow`.

use clap::Args;

use crate::plugin::{Error, Global};

#[derive(Debug, Args)]
pub struct EventsArgs {}

pub async fn run(_global: &Global, _args: EventsArgs) -> Result<(), Error> {
    Err(Error::Usage("`events` is not built yet".into()))
}
