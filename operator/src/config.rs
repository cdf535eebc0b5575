//! Flags and environment. `--help` documents each.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use jiff::SignedDuration;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Plain,
}

/// agentgov operator: promotes Agents with signed proof bundles, hot-reloads PolicyBundles and
/// revalidates governed agents against them, expires sandboxes.
#[derive(Parser, Debug, Clone)]
#[command(name = "agentgov-operator", version, about, long_about = None)]
pub struct Config {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "AGENTGOV_WATCH_NAMESPACE")]
    pub namespace: Option<String>,

    /// The key ring file (JSON or YAML, from the signing-key Secret). Reloaded when it changes.
    #[arg(long, env = "AGENTGOV_KEYRING_FILE")]
    pub keyring_file: PathBuf,

    /// How often to check the key ring file for changes.
    #[arg(long, env = "AGENTGOV_KEYRING_POLL", default_value = "2s", value_parser = parse_duration)]
    pub keyring_poll: SignedDuration,

    /// Name of the PolicyBundle that is in force in each namespace.
    #[arg(long, env = "AGENTGOV_BUNDLE_NAME", default_value = agentgov_api::policy_bundle::DEFAULT_BUNDLE_NAME)]
    pub bundle_name: String,

    /// TTL of a sandbox agent that names none (for example 72h, 30m, 3600s).
    #[arg(long, env = "AGENTGOV_DEFAULT_SANDBOX_TTL", default_value = "72h", value_parser = parse_duration)]
    pub default_sandbox_ttl: SignedDuration,

    /// No sandbox lives longer than this after creation, whatever it asks.
    #[arg(long, env = "AGENTGOV_MAX_SANDBOX_TTL", default_value = "720h", value_parser = parse_duration)]
    pub max_sandbox_ttl: SignedDuration,

    /// Agents reconciled at once.
    #[arg(long, env = "AGENTGOV_CONCURRENCY", default_value_t = 8)]
    pub concurrency: u16,

    /// Status writes in flight at once during a revalidation.
    #[arg(long, env = "AGENTGOV_WRITE_CONCURRENCY", default_value_t = 16)]
    pub write_concurrency: usize,

    /// Client-side limit on status writes per second (all controllers together).
    #[arg(long, env = "AGENTGOV_STATUS_QPS", default_value_t = 500)]
    pub status_qps: u32,

    /// How long an approval (AgentPromotion) may wait for more approvers before it expires.
    #[arg(long, env = "AGENTGOV_APPROVAL_TTL", default_value = "168h", value_parser = parse_duration)]
    pub approval_ttl: SignedDuration,

    /// AgentPromotions kept per agent: beyond this, the oldest that back no proof are deleted.
    #[arg(long, env = "AGENTGOV_PROMOTION_HISTORY", default_value_t = 10)]
    pub promotion_history: usize,

    /// The names of the admission guards the operator requires start with this (the shipped
    /// ones: `agentgov-`). While one is missing or altered, nothing is signed.
    #[arg(long, env = "AGENTGOV_GUARD_PREFIX", default_value = agentgov_api::guards::DEFAULT_PREFIX)]
    pub guard_prefix: String,

    /// How long an approver's SubjectAccessReview answer is reused.
    #[arg(long, env = "AGENTGOV_SAR_CACHE_TTL", default_value = "10s", value_parser = parse_duration)]
    pub sar_cache_ttl: SignedDuration,

    /// How long to finish in-flight work after SIGTERM before exiting (the Lease is released
    /// then, so a standby takes over at once).
    #[arg(long, env = "AGENTGOV_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: SignedDuration,

    /// Address of the plain-HTTP /metrics, /healthz and /readyz server.
    #[arg(long, env = "AGENTGOV_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
    pub metrics_listen: SocketAddr,

    /// Elect a leader on a coordination.k8s.io Lease, so that several replicas can run.
    #[arg(long, env = "AGENTGOV_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Name of the Lease.
    #[arg(long, env = "AGENTGOV_LEASE_NAME", default_value = "agentgov-operator")]
    pub lease_name: String,

    /// Namespace of the Lease (in a cluster: the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,

    /// This replica's identity in the Lease (default: POD_NAME, else host name and pid).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Log format.
    #[arg(long, env = "AGENTGOV_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

/// Durations as `72h`, `30m`, `90s`, `500ms`, ISO 8601 (`PT72H`) or plain seconds; positive.
pub fn parse_duration(text: &str) -> Result<SignedDuration, String> {
    let d = agentgov_api::expiry::parse_duration(text)?;
    if d.is_zero() {
        return Err("duration must be positive".into());
    }
    SignedDuration::try_from(d).map_err(|e| e.to_string())
}

impl Config {
    pub fn expiry(&self) -> agentgov_api::expiry::ExpiryPolicy {
        agentgov_api::expiry::ExpiryPolicy {
            default_ttl: self.default_sandbox_ttl,
            max_ttl: self.max_sandbox_ttl,
        }
    }

    pub fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "agentgov".into());
            format!("{host}-{}", std::process::id())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("72h").unwrap(),
            SignedDuration::from_hours(72)
        );
        assert_eq!(
            parse_duration("90s").unwrap(),
            SignedDuration::from_secs(90)
        );
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn help_documents_every_flag() {
        use clap::CommandFactory;
        Config::command().debug_assert();
        let help = Config::command().render_long_help().to_string();
        for flag in [
            "--keyring-file",
            "--namespace",
            "--default-sandbox-ttl",
            "--concurrency",
        ] {
            assert!(help.contains(flag), "{flag} missing from --help");
        }
    }
}
