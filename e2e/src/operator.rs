//! The operator as a child process of a test: its own key ring, scoped to the test's namespace,
//! logs in `.cache/e2e-logs/`, killed when the handle drops.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use agentgov_api::keyring::{KeyRing, KeyRingConfig, generate_ed25519};
use anyhow::{Result, bail};

use crate::repo_root;

/// A binary built by `cargo build --workspace --bins` (the Makefile's `build` target).
pub fn binary(name: &str) -> Result<PathBuf> {
    let var = format!(
        "AGENTGOV_{}_BIN",
        name.trim_start_matches("agentgov-").to_uppercase()
    );
    if let Ok(path) = std::env::var(&var) {
        return Ok(PathBuf::from(path));
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target"));
    let path = target.join("debug").join(name);
    if !path.exists() {
        bail!(
            "{} is missing: build it first (`make build`), or point {var} at it",
            path.display()
        );
    }
    Ok(path)
}

/// Where e2e child processes write their logs (CI prints this folder on failure).
pub fn log_dir() -> PathBuf {
    let dir = repo_root().join(".cache/e2e-logs");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// A free loopback port, below the kernel's ephemeral range when it can: a port the kernel
/// hands out for `:0` is also a source port for outgoing connections (the API server opens
/// many), and one of them can take it between this check and the process that binds it (seen
/// in CI as a webhook that could not listen).
pub fn free_port() -> Result<u16> {
    use std::hash::{BuildHasher, RandomState};
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(0);
    const LOWEST: u16 = 10_000;
    if ephemeral_start > LOWEST + 1_000 {
        let span = u64::from(ephemeral_start - LOWEST);
        for attempt in 0..100u32 {
            let offset = RandomState::new().hash_one(attempt) % span;
            let port = LOWEST + u16::try_from(offset).unwrap_or(0);
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A key ring on disk that a test can rotate and revoke.
pub struct KeyFile {
    pub path: PathBuf,
    pub config: KeyRingConfig,
}

impl KeyFile {
    /// A ring with one Ed25519 key.
    pub fn new(dir: &Path, key_id: &str) -> Result<Self> {
        Self::with_key(dir, generate_ed25519(key_id)?)
    }

    /// A ring with one HMAC-SHA256 key (the seed's scheme: the webhook holds the same secret).
    pub fn new_hmac(dir: &Path, key_id: &str) -> Result<Self> {
        Self::with_key(dir, agentgov_api::keyring::generate_hmac(key_id)?)
    }

    fn with_key(dir: &Path, key: agentgov_api::keyring::KeyConfig) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let config = KeyRingConfig {
            active_key_id: Some(key.id.clone()),
            keys: vec![key],
            revoked: vec![],
        };
        let file = KeyFile {
            path: dir.join("keyring.json"),
            config,
        };
        file.write()?;
        Ok(file)
    }

    pub fn write(&self) -> Result<()> {
        // Write then rename, as a Secret volume swaps files atomically.
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&self.config)?)?;
        std::fs::rename(&tmp, &self.path)?;
        Ok(())
    }

    /// Add a new active key; the old one keeps verifying.
    pub fn rotate(&mut self, key_id: &str) -> Result<()> {
        let key = generate_ed25519(key_id)?;
        self.config.active_key_id = Some(key.id.clone());
        self.config.keys.push(key);
        self.write()
    }

    pub fn revoke(&mut self, key_id: &str) -> Result<()> {
        self.config.revoked.push(key_id.to_string());
        self.write()
    }

    /// The ring as a verifier sees it (public keys only).
    pub fn verifier(&self) -> Result<KeyRing> {
        Ok(KeyRing::from_config(&self.config.verification_only()?)?)
    }
}

/// A running operator.
pub struct Operator {
    child: crate::process::Process,
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl Operator {
    /// Start an operator watching `namespace`, with a Lease in that namespace.
    pub fn start(namespace: &str, keyring: &Path, tag: &str, extra: &[&str]) -> Result<Self> {
        Self::spawn(Some(namespace), namespace, keyring, tag, extra)
    }

    /// Start an operator watching every namespace (as the chart runs it), with a Lease in
    /// `lease_namespace`. It judges every agent of the control plane, other tests' included.
    pub fn start_everywhere(
        lease_namespace: &str,
        keyring: &Path,
        tag: &str,
        extra: &[&str],
    ) -> Result<Self> {
        Self::spawn(None, lease_namespace, keyring, tag, extra)
    }

    fn spawn(
        watched: Option<&str>,
        namespace: &str,
        keyring: &Path,
        tag: &str,
        extra: &[&str],
    ) -> Result<Self> {
        let bin = binary("agentgov-operator")?;
        let metrics_port = free_port()?;
        let log = log_dir().join(format!("{namespace}-operator-{tag}.log"));
        let mut command = Command::new(&bin);
        if let Some(watched) = watched {
            command.args(["--namespace", watched]);
        }
        let child = crate::process::Process::spawn(
            command
                .arg("--keyring-file")
                .arg(keyring)
                .args(["--keyring-poll", "500ms"])
                .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
                .args(["--lease-namespace", namespace])
                .args(["--identity", &format!("operator-{tag}")])
                .args(["--log-format", "json"])
                .args(extra),
            &log,
        )?;
        Ok(Operator {
            child,
            metrics_port,
            log,
        })
    }

    /// The operator's /metrics text (empty while it is not serving).
    pub async fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics")
            .await
            .unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the operator has read a key ring holding `key_id` (it polls the file); an
    /// error with its log if it has not within `timeout`.
    pub async fn wait_key_loaded(&self, key_id: &str, timeout: Duration) -> Result<()> {
        crate::wait_for(timeout, || async {
            self.logs()
                .lines()
                .any(|l| l.contains("key ring reloaded") && l.contains(key_id))
                .then_some(())
        })
        .await
        .map_err(|_| anyhow::anyhow!("the operator never loaded {key_id}\n{}", self.logs()))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    /// Kill it at once (a crash, as far as the cluster can tell).
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// The process itself: to stop it with SIGTERM and see how it exits.
    pub fn process(&mut self) -> &mut crate::process::Process {
        &mut self.child
    }
}

/// A minimal HTTP/1.0 GET on loopback, for /metrics and probes.
pub async fn http_get(port: u16, path: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await?;
    Ok(body)
}

/// The value of a metric line such as `promotion_attempts_total 3` (labels included in `name`).
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l[name.len()..].trim().parse().ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn a_free_port_is_bindable_and_below_the_ephemeral_range() {
        let ephemeral_start: u16 =
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap();
        for _ in 0..20 {
            let port = super::free_port().unwrap();
            if ephemeral_start > 11_000 {
                assert!((10_000..ephemeral_start).contains(&port), "{port}");
            }
            std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }
}
