//! `agentgov`: agentgov's command-line client. Its one subcommand so far, `agentgov admit`, is
//! for orchestrators that run agents outside Kubernetes: it asks the webhook whether an agent
//! may start ([`admit`]). It needs nothing of Kubernetes: no kubeconfig, only the webhook's
//! address and certificates.
#![forbid(unsafe_code)]

mod admit;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// agentgov's command-line client.
#[derive(Debug, Parser)]
#[command(name = "agentgov", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ask agentgov's webhook whether an agent may start outside Kubernetes (POST /v1/admit).
    /// Exits 0 when it may, 1 when it may not, 2 when there is no decision.
    Admit(admit::Args),
}

fn main() -> ExitCode {
    // A usage error exits 2 (clap's code), which is also `admit`'s "no decision".
    let cli = Cli::parse();
    match cli.command {
        Command::Admit(args) => ExitCode::from(admit::main(args)),
    }
}
