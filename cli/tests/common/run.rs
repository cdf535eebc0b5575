//! A run of `agentgov admit` and what it printed: the client's own tests and the e2e test of
//! the external admission API read it the same way.
#![allow(clippy::unwrap_used)] // tests may unwrap (clippy.toml: allow-unwrap-in-tests)

use std::ffi::OsStr;
use std::path::Path;

use serde_json::Value;

/// What a run of `agentgov admit` did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The answer printed on stdout.
    pub fn answer(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {self:#?}"))
    }

    /// How many attempts stderr reports as failed.
    pub fn failed_attempts(&self) -> usize {
        self.stderr
            .lines()
            .filter(|line| line.starts_with("agentgov admit: attempt "))
            .count()
    }
}

/// Run `<binary> admit <agent> <args>` (asynchronously: the webhook it asks may be served by
/// this very runtime's thread), without the address the environment may name.
pub async fn admit_with<A: AsRef<OsStr>>(
    binary: &Path,
    agent: &str,
    args: impl IntoIterator<Item = A>,
) -> Run {
    let output = tokio::process::Command::new(binary)
        .arg("admit")
        .arg(agent)
        .args(args)
        .env_remove("AGENTGOV_ADMIT_URL")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}
