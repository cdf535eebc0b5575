//! Flags and environment. `--help` documents each.

use std::net::SocketAddr;
use std::path::PathBuf;

use agentgov_runtime::flags::{
    BundleSigningFlags, ExpiryFlags, RuntimeFlags, positive_duration as parse_duration,
};
use clap::Parser;
use jiff::SignedDuration;

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

    #[command(flatten)]
    pub bundle_signing: BundleSigningFlags,

    /// Name of the PolicyBundle that is in force in each namespace.
    #[arg(long, env = "AGENTGOV_BUNDLE_NAME", default_value = agentgov_api::policy_bundle::DEFAULT_BUNDLE_NAME)]
    pub bundle_name: String,

    #[command(flatten)]
    pub sandbox: ExpiryFlags,

    /// Agents reconciled at once. A reconcile mostly waits (for its turn to judge, one per core,
    /// or to write), so this is well above --write-concurrency: writes go out back to back
    /// while other agents are judged.
    #[arg(long, env = "AGENTGOV_CONCURRENCY", default_value_t = 64)]
    pub concurrency: u16,

    /// Status writes (Agents' and AgentPromotions') in flight at once: the load the operator
    /// puts on the API server, which counts requests in flight (API Priority and Fairness). 32
    /// keeps a loopback API server at its write ceiling (measured by `make bench`) and covers a
    /// few milliseconds of network between the operator and a real one.
    #[arg(long, env = "AGENTGOV_WRITE_CONCURRENCY", default_value_t = 32)]
    pub write_concurrency: usize,

    /// Client-side limit on status writes per second, with a burst of as many (all controllers
    /// together); 0: none. Off by default: --write-concurrency bounds the load, and a rate
    /// would only make a revalidation slower than the API server allows. Set it to spread a
    /// revalidation out on purpose.
    #[arg(long, env = "AGENTGOV_STATUS_QPS", default_value_t = 0)]
    pub status_qps: u32,

    /// How long an approval (AgentPromotion) may wait for more approvers before it expires.
    #[arg(long, env = "AGENTGOV_APPROVAL_TTL", default_value = "168h", value_parser = parse_duration)]
    pub approval_ttl: SignedDuration,

    /// AgentPromotions kept per agent: beyond this, the oldest that back no proof are deleted.
    #[arg(long, env = "AGENTGOV_PROMOTION_HISTORY", default_value_t = 10)]
    pub promotion_history: usize,

    /// Versions (ControllerRevisions) kept per agent, one per distinct spec hash it has had: beyond
    /// this, the oldest go, never the one in force nor the one approved. 0: the operator records
    /// no versions (and `kubectl agentgov history` shows none).
    #[arg(long, env = "AGENTGOV_REVISION_HISTORY_LIMIT", default_value_t = 10)]
    pub revision_history_limit: usize,

    /// Keep a NetworkPolicy per contained or quarantined agent (egress to DNS and the bundle's
    /// `runtime.egress` only; nothing in or out when quarantined) and evict a quarantined
    /// agent's Pods when the bundle says `quarantine: stop`; report other NetworkPolicies that
    /// widen a contained or quarantined agent (`ContainmentWidened`). `false`: the operator
    /// touches no NetworkPolicy and no Pod (for clusters whose network does not enforce
    /// NetworkPolicy, or whose admins write their own; the chart's `operator.containPods: false`
    /// then also drops the RBAC it needs: networkpolicies, pods list, pods/eviction).
    #[arg(long, env = "AGENTGOV_CONTAIN_PODS", default_value_t = true, action = clap::ArgAction::Set)]
    pub contain_pods: bool,

    /// Run managed agents (`spec.runtime.mode: managed`): keep a Deployment and a ConfigMap
    /// with the approved spec per managed agent. `false`: the operator writes neither (a managed
    /// agent then runs nothing; the chart's `operator.manageWorkloads: false` also drops the
    /// RBAC: deployments, configmaps).
    #[arg(long, env = "AGENTGOV_MANAGE_WORKLOADS", default_value_t = true, action = clap::ArgAction::Set)]
    pub manage_workloads: bool,

    /// Keep one PolicyReport (wgpolicyk8s.io/v1alpha2, named `agentgov`) per namespace with
    /// every agent's result (pass, warn, fail, skip), for Policy Reporter and similar UIs;
    /// written at most once a second per namespace, and only when it changed. Needs the
    /// upstream PolicyReport CRD (the chart's `policyReports.enabled` installs it); without it
    /// the operator logs once and writes none.
    #[arg(long, env = "AGENTGOV_POLICY_REPORTS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub policy_reports: bool,

    /// The ValidatingWebhookConfiguration of agentgov's webhook, watched for break-glass: while
    /// it is deleted, every agent carries the condition `AdmissionGuarded=False`, the metric
    /// `agentgov_webhook_configuration_missing` is 1 and the log says BREAK_GLASS. Empty: not
    /// watched (a cluster that runs no webhook).
    #[arg(long, env = "AGENTGOV_WEBHOOK_CONFIGURATION", default_value = "")]
    pub webhook_configuration: String,

    /// The names of the admission guards the operator requires start with this (the shipped
    /// ones: `agentgov-`). While one is missing or altered, nothing is signed.
    #[arg(long, env = "AGENTGOV_GUARD_PREFIX", default_value = agentgov_api::guards::DEFAULT_PREFIX)]
    pub guard_prefix: String,

    /// How long an approver's SubjectAccessReview answer is reused.
    #[arg(long, env = "AGENTGOV_SAR_CACHE_TTL", default_value = "10s", value_parser = parse_duration)]
    pub sar_cache_ttl: SignedDuration,

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

    // `--log-format`, and `--shutdown-grace` (when it ends the Lease is released, so that a
    // standby takes over at once).
    #[command(flatten)]
    pub runtime: RuntimeFlags,
}

impl Config {
    pub fn expiry(&self) -> agentgov_api::expiry::ExpiryPolicy {
        self.sandbox.policy()
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
    fn help_documents_every_flag() {
        use clap::CommandFactory;
        Config::command().debug_assert();
        let help = Config::command().render_long_help().to_string();
        for flag in [
            "--keyring-file",
            "--namespace",
            "--default-sandbox-ttl",
            "--concurrency",
            "--shutdown-grace",
            "--log-format",
            "--revision-history-limit",
            "--require-signed-bundles",
            "--bundle-keys",
            "--policy-reports",
        ] {
            assert!(help.contains(flag), "{flag} missing from --help");
        }
    }
}
