//! `kubectl-agentgov`: agentgov's kubectl plugin. On PATH, `kubectl agentgov ...` runs it. It
//! reads the kubeconfig and context as kubectl does and prints like `kubectl get`; every error
//! exits 1 with one sentence on stderr, prefixed `error: ` as kubectl's are (docs/cli.md).
#![forbid(unsafe_code)]

mod plugin;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A usage error exits 2 with clap's message (also prefixed `error: `).
    let cli = plugin::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(plugin::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
