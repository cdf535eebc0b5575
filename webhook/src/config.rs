//! Command-line flags (each also read from an environment variable).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use agentgov_api::expiry::ExpiryPolicy;
use agentgov_api::policy_bundle::DEFAULT_BUNDLE_NAME;
use agentgov_runtime::flags::{
    BundleSigningFlags, ExpiryFlags, RuntimeFlags, duration as parse_duration,
};
use clap::{Parser, ValueEnum};

use crate::admit_clients::AdmitClients;

/// 3 MiB. The API server accepts request bodies up to 3 MiB and etcd stores objects up to
/// 1.5 MiB; an UPDATE's AdmissionReview carries both `object` and `oldObject`, so a legitimate
/// review of a large object approaches 3 MiB. Anything larger is not from the API server.
pub const DEFAULT_MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// How clients must authenticate to the admission port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ClientAuth {
    /// A client certificate signed by `--client-ca-file` is mandatory (mTLS).
    Required,
    /// A client certificate is verified if presented, but not demanded. For managed clusters
    /// whose API server cannot present one.
    Optional,
    /// No client certificates at all.
    None,
}

impl ClientAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuth::Required => "required",
            ClientAuth::Optional => "optional",
            ClientAuth::None => "none",
        }
    }
}

/// agentgov-webhook: validating admission webhook for agentgov.dev Agents and their Pods.
///
/// Serves `POST /validate/{pods,agents,agentpromotions,policybundles,sandboxes}` and `/v1/admit`
/// over HTTPS (TLS 1.2/1.3, mTLS by default) and `/healthz`, `/readyz`, `/metrics` over plain HTTP on a separate port. Certificate,
/// client CA and key ring files are re-read when they change (no restart).
#[derive(Clone, Debug, Parser)]
#[command(name = "agentgov-webhook", version, about, long_about)]
pub struct Args {
    /// Address of the HTTPS admission server.
    #[arg(long, env = "AGENTGOV_WEBHOOK_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,

    /// Address of the plain-HTTP server for /healthz, /readyz and /metrics.
    #[arg(
        long,
        env = "AGENTGOV_WEBHOOK_METRICS_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_listen: SocketAddr,

    /// PEM file with the serving certificate chain (leaf first).
    #[arg(long, env = "AGENTGOV_TLS_CERT_FILE")]
    pub tls_cert_file: PathBuf,

    /// PEM file with the serving certificate's private key (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "AGENTGOV_TLS_KEY_FILE")]
    pub tls_key_file: PathBuf,

    /// PEM file with the CA certificate(s) that sign the API server's webhook client certificate.
    /// Several CAs may be listed (overlap during CA rotation). Needed unless --client-auth=none.
    #[arg(long, env = "AGENTGOV_CLIENT_CA_FILE")]
    pub client_ca_file: Option<PathBuf>,

    /// Client authentication: `required` (mTLS, the default), `optional` or `none`. The last two
    /// are for managed clusters whose API server cannot present a client certificate; the server
    /// logs a warning at start when not `required`.
    #[arg(
        long,
        env = "AGENTGOV_CLIENT_AUTH",
        value_enum,
        default_value = "required"
    )]
    pub client_auth: ClientAuth,

    /// Who may ask `POST /v1/admit` (agents started outside Kubernetes), by the client
    /// certificate the handshake verified: a comma-separated list of `CN=<subject common name>`,
    /// `dns:<DNS subject alternative name>`, `uri:<URI subject alternative name>`, or `*` (any
    /// client the port accepts). Empty (the default): that endpoint answers 403 to everyone,
    /// the API server's certificate included.
    #[arg(long, env = "AGENTGOV_ADMIT_CLIENTS", value_delimiter = ',')]
    pub admit_clients: Vec<String>,

    /// The key ring file (JSON or YAML; a verification-only ring from `keygen public` is enough).
    /// Re-read when it changes; a file that does not parse keeps the previous ring in force.
    #[arg(long, env = "AGENTGOV_KEYRING_FILE")]
    pub keyring_file: PathBuf,

    #[command(flatten)]
    pub bundle_signing: BundleSigningFlags,

    /// Name of the PolicyBundle in force in each namespace.
    #[arg(long, env = "AGENTGOV_BUNDLE_NAME", default_value = DEFAULT_BUNDLE_NAME)]
    pub bundle_name: String,

    /// Watch Agents and PolicyBundles in this namespace only (default: all namespaces).
    #[arg(long, env = "AGENTGOV_WATCH_NAMESPACE")]
    pub namespace: Option<String>,

    /// Largest request body accepted, in bytes (default 3 MiB: an UPDATE review carries the
    /// object and the old object, each up to etcd's 1.5 MiB). Larger bodies get HTTP 413 and a deny.
    #[arg(long, env = "AGENTGOV_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// Time allowed for the TLS handshake, for a request's head from its first byte and for its
    /// body ("10s", "500ms" or seconds). A slower client is cut off and never reaches a decision.
    #[arg(long, env = "AGENTGOV_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// How long an HTTP/1.1 connection may wait for its next request before the webhook closes
    /// it. Keep it longer than the clients' own idle timeout (the API server's is 90 s), so that
    /// they close idle connections first: a connection closed by the webhook can cross a review
    /// just sent on it, which then fails (EOF) and, fail closed, refuses the Pod.
    #[arg(long, env = "AGENTGOV_IDLE_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    #[command(flatten)]
    pub expiry: ExpiryFlags,

    /// How often certificate, client CA and key ring files are checked for changes.
    #[arg(long, env = "AGENTGOV_RELOAD_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub reload_interval: Duration,

    /// How long a SubjectAccessReview answer is reused for the same user, groups and agent
    /// ("0s" disables the cache).
    #[arg(long, env = "AGENTGOV_SAR_CACHE_TTL", default_value = "10s", value_parser = parse_duration)]
    pub sar_cache_ttl: Duration,

    /// Time allowed for a SubjectAccessReview; past it the request is denied
    /// (ADMISSION_DENY_UNAVAILABLE). Keep it below the webhook's timeoutSeconds.
    #[arg(long, env = "AGENTGOV_SAR_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub sar_timeout: Duration,

    /// At most this many promotion-policy evaluations run at once (0: one per CPU).
    #[arg(long, env = "AGENTGOV_POLICY_CONCURRENCY", default_value_t = 0)]
    pub policy_concurrency: usize,

    /// On SIGTERM or SIGINT, report not-ready for this long before closing the admission
    /// listener, so that endpoints drop the pod first; then the reviews in flight get
    /// `--shutdown-grace` to finish.
    #[arg(long, env = "AGENTGOV_SHUTDOWN_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    #[command(flatten)]
    pub runtime: RuntimeFlags,
}

impl Args {
    /// The sandbox expiry policy.
    pub fn expiry(&self) -> Result<ExpiryPolicy, crate::Error> {
        self.expiry.check()?;
        Ok(self.expiry.policy())
    }

    /// The clients allowed to ask `POST /v1/admit`.
    pub fn admit_clients(&self) -> Result<AdmitClients, crate::Error> {
        AdmitClients::parse(&self.admit_clients).map_err(|e| crate::Error::Config(e.to_string()))
    }

    /// Flags that must agree with each other.
    pub fn validate(&self) -> Result<(), crate::Error> {
        self.admit_clients()?;
        if self.client_auth != ClientAuth::None && self.client_ca_file.is_none() {
            return Err(crate::Error::Config(format!(
                "--client-auth={} needs --client-ca-file",
                self.client_auth.as_str()
            )));
        }
        if self.max_body_bytes == 0 {
            return Err(crate::Error::Config(
                "--max-body-bytes must be positive".into(),
            ));
        }
        if self.idle_timeout.is_zero() || self.request_timeout.is_zero() {
            return Err(crate::Error::Config(
                "--idle-timeout and --request-timeout must be positive".into(),
            ));
        }
        if self.reload_interval.is_zero() {
            return Err(crate::Error::Config(
                "--reload-interval must be positive".into(),
            ));
        }
        if self.bundle_name.trim().is_empty() {
            return Err(crate::Error::Config(
                "--bundle-name must not be empty".into(),
            ));
        }
        self.expiry().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_validate() {
        let args = Args::try_parse_from([
            "agentgov-webhook",
            "--tls-cert-file=c",
            "--tls-key-file=k",
            "--keyring-file=r",
        ])
        .unwrap();
        assert_eq!(args.client_auth, ClientAuth::Required);
        assert_eq!(args.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(args.shutdown_delay, Duration::from_secs(5));
        assert_eq!(args.idle_timeout, Duration::from_secs(120));
        assert_eq!(args.runtime.shutdown_grace, Duration::from_secs(10));
        // required without a CA file is refused
        assert!(args.validate().is_err());
        let args = Args::try_parse_from([
            "agentgov-webhook",
            "--tls-cert-file=c",
            "--tls-key-file=k",
            "--keyring-file=r",
            "--client-auth=none",
            "--default-sandbox-ttl=1h",
            "--max-sandbox-ttl=2h",
        ])
        .unwrap();
        args.validate().unwrap();
        assert_eq!(
            args.expiry().unwrap().default_ttl,
            jiff::SignedDuration::from_hours(1)
        );
        let args = Args::try_parse_from([
            "agentgov-webhook",
            "--tls-cert-file=c",
            "--tls-key-file=k",
            "--keyring-file=r",
            "--client-auth=none",
            "--default-sandbox-ttl=3h",
            "--max-sandbox-ttl=2h",
        ])
        .unwrap();
        assert!(args.validate().is_err());
    }

    #[test]
    fn admit_clients_are_a_comma_separated_list_checked_at_start() {
        let parse = |extra: &[&str]| {
            let base = [
                "agentgov-webhook",
                "--tls-cert-file=c",
                "--tls-key-file=k",
                "--keyring-file=r",
                "--client-auth=none",
            ];
            Args::try_parse_from(base.iter().chain(extra)).unwrap()
        };
        let none = parse(&[]);
        assert!(none.admit_clients().unwrap().is_empty());
        let listed = parse(&["--admit-clients=CN=orchestrator-1,dns:nomad.acme.example"]);
        listed.validate().unwrap();
        assert_eq!(
            listed.admit_clients().unwrap().to_flag(),
            "CN=orchestrator-1,dns:nomad.acme.example"
        );
        let bad = parse(&["--admit-clients=CN=orchestrator-1,O=acme"]);
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("\"O=acme\""), "{err}");
    }
}
