//! The kubectl plugin (`kubectl-agentgov`) run as a user runs it: with `--kubeconfig` (a copy of
//! the test cluster's whose current context names the test's namespace, plus a second context
//! [`CONTEXT`] naming it too) and no `KUBECONFIG` in its environment. Every e2e test of a plugin
//! command runs it through [`Plugin`].

// Test support: a panic with the value is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use agentgov_api::AgentPromotion;
use kube::api::{Api, ListParams};

use crate::admission::{SETTLE, Setup};
use crate::operator::{binary, log_dir};

/// The second context of the kubeconfig a [`Plugin`] writes (for `--context`).
pub const CONTEXT: &str = "agentgov-cli-e2e";

/// What a run of `kubectl-agentgov` did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The values of a table's `column` (0 is the first), header skipped.
    pub fn names(&self, column: usize) -> Vec<String> {
        self.stdout
            .lines()
            .skip(1)
            .map(|line| line.split_whitespace().nth(column).unwrap().to_string())
            .collect()
    }

    /// `args` must have failed with exit 1, nothing on stdout, and one line `error: ...` on
    /// stderr, the last (progress lines may come before it); returns that line.
    pub fn failed(&self, args: &[&str]) -> String {
        assert_eq!(self.code, Some(1), "{args:?}: {self:#?}");
        assert_eq!(self.stdout, "", "{args:?}: {self:#?}");
        let last = self.stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("error: "), "{args:?}: {self:#?}");
        let errors = self.stderr.lines().filter(|l| l.starts_with("error: "));
        assert_eq!(errors.count(), 1, "{args:?}: {self:#?}");
        last.to_string()
    }
}

/// The plugin with this test's kubeconfig.
pub struct Plugin {
    pub kubeconfig: PathBuf,
}

impl Plugin {
    /// A copy of the cluster's kubeconfig (`$KUBECONFIG`) whose current context names
    /// `namespace`, with a second context [`CONTEXT`] naming it too.
    pub fn new(namespace: &str) -> Self {
        let source = std::env::var("KUBECONFIG").expect("KUBECONFIG of the test cluster");
        let mut config: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&source).unwrap()).unwrap();
        let current = config["current-context"].as_str().unwrap().to_string();
        let contexts = config["contexts"].as_sequence_mut().unwrap();
        let position = contexts
            .iter()
            .position(|c| c["name"].as_str() == Some(current.as_str()))
            .unwrap();
        contexts[position]["context"]["namespace"] = namespace.into();
        let mut second = contexts[position].clone();
        second["name"] = CONTEXT.into();
        contexts.push(second);
        let kubeconfig = log_dir().join(format!("{namespace}-kubeconfig.yaml"));
        std::fs::write(&kubeconfig, serde_yaml::to_string(&config).unwrap()).unwrap();
        Plugin { kubeconfig }
    }

    /// The kubeconfig's current context.
    pub fn current_context(&self) -> String {
        let config: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&self.kubeconfig).unwrap()).unwrap();
        config["current-context"].as_str().unwrap().to_string()
    }

    /// The same kubeconfig with `context`'s namespace changed (so `--context` can be told
    /// apart from the current context).
    pub fn set_namespace(&self, context: &str, namespace: &str) {
        let mut config: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&self.kubeconfig).unwrap()).unwrap();
        for entry in config["contexts"].as_sequence_mut().unwrap() {
            if entry["name"].as_str() == Some(context) {
                entry["context"]["namespace"] = namespace.into();
            }
        }
        std::fs::write(&self.kubeconfig, serde_yaml::to_string(&config).unwrap()).unwrap();
    }

    pub async fn run(&self, args: &[&str]) -> Run {
        self.run_with_input(args, b"").await
    }

    /// Run with `stdin` written to the plugin's standard input.
    pub async fn run_with_input(&self, args: &[&str], stdin: &[u8]) -> Run {
        let mut command = tokio::process::Command::new(binary("kubectl-agentgov").unwrap());
        command.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        let output = fed(&mut command, stdin).await;
        Run {
            code: output.status.code(),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        }
    }

    /// Run at a terminal: under util-linux `script`, which gives the plugin a pseudo-terminal
    /// as stdin, stdout and stderr and types `typed` into it (so `stdin.is_terminal()` holds,
    /// as for a person at a shell). The terminal echoes what was typed, and stdout and stderr
    /// arrive merged, in `stdout`.
    pub async fn at_terminal(&self, args: &[&str], typed: &str) -> Run {
        let mut command = vec![
            binary("kubectl-agentgov").unwrap().display().to_string(),
            "--kubeconfig".into(),
            self.kubeconfig.display().to_string(),
        ];
        command.extend(args.iter().map(|a| a.to_string()));
        let line = command
            .iter()
            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
            .collect::<Vec<_>>()
            .join(" ");
        let mut script = tokio::process::Command::new("script");
        script.args(["--quiet", "--return", "--command", &line, "/dev/null"]);
        let output = fed(&mut script, typed.as_bytes()).await;
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).replace("\r\n", "\n"),
            stderr: String::from_utf8(output.stderr).unwrap(),
        }
    }

    /// `args` must succeed (exit 0); stderr may carry warnings and progress.
    pub async fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args).await;
        assert_eq!(run.code, Some(0), "{args:?}: {run:#?}");
        run
    }

    /// `args` must succeed with nothing on stderr.
    pub async fn quiet(&self, args: &[&str]) -> Run {
        let run = self.ok(args).await;
        assert_eq!(run.stderr, "", "{args:?}: {run:#?}");
        run
    }

    /// `args` must fail with exit 1 and one `error: ...` line (see [`Run::failed`]).
    pub async fn error(&self, args: &[&str]) -> String {
        self.run(args).await.failed(args)
    }

    /// `create args...`: settled on a server dry run (the webhook's caches catch up with the
    /// policy), then created for real.
    pub async fn create(&self, args: &[&str]) -> Run {
        let mut all = vec!["create"];
        all.extend(args);
        self.settled(&all, |run| run.code == Some(0)).await;
        self.ok(&all).await
    }

    /// Run `args` with `--dry-run=server` until `done` holds of the run (the webhook's caches
    /// catch up with the agent or the policy), for at most [`SETTLE`]; returns that run.
    pub async fn settled(&self, args: &[&str], done: impl Fn(&Run) -> bool) -> Run {
        let mut dry = args.to_vec();
        dry.push("--dry-run=server");
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            let run = self.run(&dry).await;
            if done(&run) {
                return run;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{dry:?} never settled in {SETTLE:?}: {run:#?}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// A governed agent from flags: the governed example's anatomy.
pub const GOVERNED: [&str; 25] = [
    "--scratch",
    "--mode",
    "governed",
    "--role",
    "compliance",
    "--description",
    "Checks supplier invoices against purchase orders.",
    "--model",
    "gpt-4o",
    "--temperature",
    "0.2",
    "--input",
    "erp-invoices",
    "--input",
    "purchase-orders",
    "--action",
    "flag-mismatch",
    "--capability",
    "document-comparison",
    "--memory",
    "persistent",
    "--retention-days",
    "90",
    "--budget",
    "250",
];

/// The AgentPromotions in the test's namespace.
pub async fn promotions(setup: &Setup) -> Vec<AgentPromotion> {
    let api: Api<AgentPromotion> = setup.ns.api();
    api.list(&ListParams::default()).await.unwrap().items
}

/// Run `command` without `KUBECONFIG` in its environment (the plugin reads the flag), with
/// `stdin` written to its standard input, for at most 5 minutes (beyond any `--timeout` the tests
/// give); its output.
async fn fed(command: &mut tokio::process::Command, stdin: &[u8]) -> std::process::Output {
    let mut child = command
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).await.unwrap();
    drop(input);
    tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{command:?} did not finish within 5 minutes"))
        .unwrap()
}

/// `actual` must equal the golden file `e2e/golden/NAME` (a table whose every cell is stable);
/// with `AGENTGOV_WRITE_GOLDEN=1` it is written instead, to be reviewed and committed.
pub fn golden(name: &str, actual: &str) {
    let path = crate::repo_root().join("e2e/golden").join(name);
    if std::env::var_os("AGENTGOV_WRITE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (AGENTGOV_WRITE_GOLDEN=1 writes it)",
            path.display()
        )
    });
    assert!(
        actual == expected,
        "{} differs from the output:\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

/// Write `text` to `dir/name`; returns the path as an argument.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}
