//! The webhook as a child process of a test, and its registration with the API server.
//!
//! Each test runs its own `agentgov-webhook` on a free loopback port (the API server presents its
//! webhook client certificate to any host:port: the admission kubeconfig has a `*` user), and
//! registers its own ValidatingWebhookConfiguration, filled from
//! `deploy/webhook/validating-webhook-configuration.yaml`, whose namespaceSelector matches only
//! the test's namespace. Tests therefore run in parallel without judging each other's Pods.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use agentgov_api::agent::AGENT_LABEL;
use anyhow::{Context as _, Result, anyhow, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, Pod, PodSecurityContext, PodSpec, SeccompProfile, SecurityContext,
    ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

use crate::operator::{KeyFile, binary, free_port, http_get, log_dir};
use crate::{api_error_message, repo_root, wait_for};

/// The registration template, with `${WEBHOOK_URL}` and `${CA_BUNDLE}` placeholders.
pub const TEMPLATE: &str = "deploy/webhook/validating-webhook-configuration.yaml";

/// The files `e2e/controlplane/cluster.sh` exports for a webhook.
#[derive(Clone, Debug)]
pub struct ClusterCerts {
    /// Serving certificate for 127.0.0.1/localhost, signed by `ca_crt`.
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    /// The CA of the API server's webhook client certificate.
    pub client_ca: PathBuf,
    /// The cluster CA: the caBundle of the registration.
    pub ca_crt: PathBuf,
}

impl ClusterCerts {
    /// From the environment of `e2e/controlplane/cluster.sh exec`. Fails (never skips) without it.
    pub fn from_env() -> Result<Self> {
        let var = |name: &str| -> Result<PathBuf> {
            let value = std::env::var(name).unwrap_or_default();
            if value.is_empty() {
                bail!(
                    "{name} is not set: run the e2e tests through `make e2e` \
                     (e2e/controlplane/cluster.sh exec -- cargo test -p agentgov-e2e)"
                );
            }
            let path = PathBuf::from(value);
            if !path.exists() {
                bail!("{name}={} does not exist", path.display());
            }
            Ok(path)
        };
        Ok(ClusterCerts {
            serving_cert: var("AGENTGOV_WEBHOOK_SERVING_CERT")?,
            serving_key: var("AGENTGOV_WEBHOOK_SERVING_KEY")?,
            client_ca: var("AGENTGOV_WEBHOOK_CLIENT_CA")?,
            ca_crt: var("AGENTGOV_CA_CRT")?,
        })
    }

    /// The PEM the registration's caBundle carries.
    pub fn ca_bundle(&self) -> Result<Vec<u8>> {
        std::fs::read(&self.ca_crt).with_context(|| format!("read {}", self.ca_crt.display()))
    }
}

/// A free loopback address for a webhook.
pub fn free_addr() -> Result<SocketAddr> {
    Ok(SocketAddr::from(([127, 0, 0, 1], free_port()?)))
}

/// Write the verification-only form of `keys` (public keys and the revoked list, no active key),
/// atomically, as `keygen public` would for the webhook's Secret.
pub fn write_verification_ring(keys: &KeyFile, path: &Path) -> Result<()> {
    let ring = keys
        .config
        .verification_only()
        .context("make the verification-only key ring")?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&ring)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The webhook's file flags as deployed: the serving certificate and key, the client CA that
/// signs the API server's certificate (mTLS), and the verification key ring.
pub fn files_args(certs: &ClusterCerts, keyring: &Path) -> Vec<std::ffi::OsString> {
    [
        ("--tls-cert-file", certs.serving_cert.as_path()),
        ("--tls-key-file", certs.serving_key.as_path()),
        ("--client-ca-file", certs.client_ca.as_path()),
        ("--keyring-file", keyring),
    ]
    .into_iter()
    .flat_map(|(flag, path)| [flag.into(), path.as_os_str().to_owned()])
    .collect()
}

/// A running webhook.
pub struct Webhook {
    child: crate::process::Process,
    /// The HTTPS admission address.
    pub addr: SocketAddr,
    pub metrics_port: u16,
    pub log: PathBuf,
    /// Its verification-only key ring file (rewrite it with [`Webhook::write_keyring`]).
    pub keyring: PathBuf,
}

impl Webhook {
    /// Start a webhook on a free loopback port; see [`Webhook::start_on`]. Should another
    /// process take a port between its choice and the webhook's bind, it starts again on others.
    pub async fn start(namespace: &str, keys: &KeyFile, tag: &str, extra: &[&str]) -> Result<Self> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match Self::start_on(free_addr()?, Some(namespace), keys, tag, extra).await {
                // The webhook logs a failed bind with `"category":"bind"` and exits.
                Err(e) if attempts < 5 && e.to_string().contains(r#""category":"bind""#) => {
                    eprintln!(
                        "webhook {tag}: a port was taken before it could bind; again ({e:#})"
                    );
                }
                started => return started,
            }
        }
    }

    /// Start a webhook listening on `listen` with the cluster's serving certificate and client
    /// CA, the verification-only form of `keys`, watching `namespace` only (all namespaces with
    /// None), and wait until `/readyz` answers 200 (its caches synced).
    pub async fn start_on(
        listen: SocketAddr,
        namespace: Option<&str>,
        keys: &KeyFile,
        tag: &str,
        extra: &[&str],
    ) -> Result<Self> {
        let certs = ClusterCerts::from_env()?;
        Self::start_with_certs(listen, namespace, keys, tag, &certs, extra).await
    }

    /// [`Webhook::start_on`] with `certs` in place of the cluster's files (a client CA of the
    /// test's own beside the API server's, for clients other than the API server).
    pub async fn start_with_certs(
        listen: SocketAddr,
        namespace: Option<&str>,
        keys: &KeyFile,
        tag: &str,
        certs: &ClusterCerts,
        extra: &[&str],
    ) -> Result<Self> {
        let bin = binary("agentgov-webhook")?;
        let metrics_port = free_port()?;
        let scope = namespace.unwrap_or("all");
        let log = log_dir().join(format!("{scope}-webhook-{tag}.log"));
        let keyring = log_dir().join(format!("{scope}-webhook-{tag}-keyring.json"));
        write_verification_ring(keys, &keyring)?;
        let mut command = Command::new(&bin);
        command
            .args(["--listen", &listen.to_string()])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .args(files_args(certs, &keyring))
            .args(["--reload-interval", "300ms"])
            .args(["--shutdown-grace", "0s"])
            .args(["--log-format", "json"]);
        if let Some(namespace) = namespace {
            command.args(["--namespace", namespace]);
        }
        let child = crate::process::Process::spawn(command.args(extra), &log)?;
        let mut webhook = Webhook {
            child,
            addr: listen,
            metrics_port,
            log,
            keyring,
        };
        webhook.wait_ready(Duration::from_secs(60)).await?;
        Ok(webhook)
    }

    /// Wait until `/readyz` says 200; fail early if the process exits.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.exited() {
                bail!(
                    "the webhook exited ({status}) before it was ready; log {}:\n{}",
                    self.log.display(),
                    self.logs()
                );
            }
            if let Ok(response) = http_get(self.metrics_port, "/readyz").await
                && response.lines().next().is_some_and(|l| l.contains(" 200"))
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "the webhook was not ready after {timeout:?}; log {}:\n{}",
                    self.log.display(),
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The base URL for the registration (no trailing slash).
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Publish a new verification ring (after a rotation or revocation); the webhook picks it up
    /// at its next poll (see [`Webhook::keyring_reloads`]).
    pub fn write_keyring(&self, keys: &KeyFile) -> Result<()> {
        write_verification_ring(keys, &self.keyring)
    }

    /// The webhook's /metrics text (empty while it is not serving).
    pub async fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics")
            .await
            .unwrap_or_default()
    }

    /// `keyring_reload_total{result="success"}`.
    pub async fn keyring_reloads(&self) -> f64 {
        crate::operator::metric_value(
            &self.metrics().await,
            r#"keyring_reload_total{result="success"}"#,
        )
        .unwrap_or(0.0)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let logs = self.logs();
        let lines: Vec<&str> = logs.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A client that speaks to this webhook as the API server does: over TLS, trusting the
    /// cluster CA, presenting the API server's webhook client certificate.
    pub async fn admission_client(&self) -> Result<Client> {
        let certs = ClusterCerts::from_env()?;
        let var = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set"));
        let kubeconfig = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "webhook", "cluster": {
                "server": self.url(),
                "certificate-authority": certs.ca_crt,
            }}],
            "users": [{"name": "apiserver", "user": {
                "client-certificate": var("AGENTGOV_WEBHOOK_CLIENT_CERT")?,
                "client-key": var("AGENTGOV_WEBHOOK_CLIENT_KEY")?,
            }}],
            "contexts": [{"name": "webhook", "context": {"cluster": "webhook", "user": "apiserver"}}],
            "current-context": "webhook",
        });
        let kubeconfig: kube::config::Kubeconfig = serde_json::from_value(kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .context("a client configuration for the webhook")?;
        Client::try_from(config).context("a client for the webhook")
    }

    /// Kill it at once (a crash, as far as the API server can tell).
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// The process itself: to stop it with SIGTERM and see how it exits.
    pub fn process(&mut self) -> &mut crate::process::Process {
        &mut self.child
    }
}

/// A selector for exactly one namespace (the label the API server sets on every namespace).
pub fn only_namespace(namespace: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(
            "kubernetes.io/metadata.name".to_string(),
            namespace.to_string(),
        )])),
        match_expressions: None,
    }
}

/// The registration template filled in: `${WEBHOOK_URL}` (base URL, no trailing slash),
/// `${CA_BUNDLE}` (base64 of `ca_bundle`, a PEM), the given name, and `namespace_selector` on
/// every webhook in place of the template's. Everything else (rules, objectSelector,
/// matchConditions, failurePolicy, timeouts) is the template's.
pub fn registration(
    name: &str,
    url: &str,
    ca_bundle: &[u8],
    namespace_selector: LabelSelector,
) -> Result<ValidatingWebhookConfiguration> {
    let path = repo_root().join(TEMPLATE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let mut doc: serde_json::Value =
        serde_yaml::from_str(&text).map_err(|e| anyhow!("parse {}: {e}", path.display()))?;
    // ByteString serializes as base64, as caBundle wants.
    let ca = serde_json::to_value(ByteString(ca_bundle.to_vec()))?;
    let ca = ca.as_str().unwrap_or_default().to_string();
    let url = url.trim_end_matches('/');
    substitute(&mut doc, &[("${WEBHOOK_URL}", url), ("${CA_BUNDLE}", &ca)]);
    let leftover = doc.to_string();
    if let Some(at) = leftover.find("${") {
        bail!(
            "{TEMPLATE} has a placeholder this helper does not fill: {}",
            &leftover[at..leftover.len().min(at + 40)]
        );
    }
    doc["metadata"]["name"] = serde_json::Value::String(name.to_string());
    let selector = serde_json::to_value(&namespace_selector)?;
    let webhooks = doc["webhooks"]
        .as_array_mut()
        .ok_or_else(|| anyhow!("{TEMPLATE} has no webhooks list"))?;
    for webhook in webhooks {
        webhook["namespaceSelector"] = selector.clone();
    }
    serde_json::from_value(doc).with_context(|| format!("{TEMPLATE} filled in"))
}

fn substitute(value: &mut serde_json::Value, pairs: &[(&str, &str)]) {
    match value {
        serde_json::Value::String(s) => {
            for (from, to) in pairs {
                if s.contains(from) {
                    *s = s.replace(from, to);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                substitute(item, pairs);
            }
        }
        serde_json::Value::Object(map) => {
            for item in map.values_mut() {
                substitute(item, pairs);
            }
        }
        _ => {}
    }
}

/// A ValidatingWebhookConfiguration a test applied; deleted (best effort) when dropped.
pub struct Registration {
    pub name: String,
    client: Client,
}

impl Registration {
    /// A registration that is not there (deleting or dropping it does nothing).
    pub fn none(client: &Client) -> Self {
        Registration {
            name: String::new(),
            client: client.clone(),
        }
    }

    /// Delete it now and wait for the API server to confirm.
    pub async fn delete(self) -> Result<()> {
        if self.name.is_empty() {
            return Ok(());
        }
        let api: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
        match api.delete(&self.name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(e).with_context(|| format!("delete {}", self.name)),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.name.is_empty() {
            return;
        }
        let name = std::mem::take(&mut self.name);
        // Deleted before the drop returns, on a thread of its own with its own runtime and
        // client: a task spawned on the test's runtime would die with it when the test ends.
        // A registration left behind also reviews every ClusterPolicyBundle write (cluster-scoped
        // objects ignore the namespace selector), and its webhook is gone: with failurePolicy
        // Fail it would refuse them in every later test on this control plane.
        let deleting = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let client = crate::client().await;
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    Api::<ValidatingWebhookConfiguration>::all(client)
                        .delete(&name, &DeleteParams::default()),
                )
                .await;
            });
        });
        let _ = deleting.join();
    }
}

/// Fill the template (see [`registration`]) and server-side apply it.
pub async fn register(
    client: &Client,
    name: &str,
    url: &str,
    ca_bundle: &[u8],
    namespace_selector: LabelSelector,
) -> Result<Registration> {
    let vwc = registration(name, url, ca_bundle, namespace_selector)?;
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply("agentgov-e2e").force(),
            &Patch::Apply(&vwc),
        )
        .await
        .with_context(|| format!("apply ValidatingWebhookConfiguration {name}"))?;
    Ok(Registration {
        name: name.to_string(),
        client: client.clone(),
    })
}

/// What the API server sends a webhook when the ReplicaSet controller creates `pod` in
/// `namespace`: `POST /validate/pods` with the Pod's AdmissionReview, for
/// [`Webhook::admission_client`].
pub fn pod_review_request(namespace: &str, uid: &str, pod: &Pod) -> Result<http::Request<Vec<u8>>> {
    let mut pod = pod.clone();
    pod.metadata.namespace = Some(namespace.to_string());
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
        }
    });
    Ok(http::Request::post("/validate/pods")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&review)?)?)
}

/// A Pod that claims to run `agent` (no scheduler or kubelet runs: it stays Pending).
pub fn agent_pod(name: &str, agent: &str) -> Pod {
    let mut pod = plain_pod(name);
    pod.metadata.labels = Some(BTreeMap::from([(
        AGENT_LABEL.to_string(),
        agent.to_string(),
    )]));
    pod
}

/// A Pod without the agent label, meeting the Pod Security Standards `restricted` level (what a
/// sandbox agent's Pods must meet): non-root, RuntimeDefault seccomp, no privilege escalation,
/// every capability dropped.
pub fn plain_pod(name: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            containers: vec![Container {
                name: "agent".into(),
                image: Some("registry.invalid/agent:1".into()),
                security_context: Some(SecurityContext {
                    allow_privilege_escalation: Some(false),
                    capabilities: Some(Capabilities {
                        drop: Some(vec!["ALL".into()]),
                        ..Capabilities::default()
                    }),
                    ..SecurityContext::default()
                }),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// Wait for the namespace's `default` ServiceAccount (kube-controller-manager makes it; Pods
/// are refused without it).
pub async fn wait_for_service_account(client: &Client, namespace: &str) -> Result<()> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    wait_for(Duration::from_secs(60), || {
        let api = api.clone();
        async move { api.get_opt("default").await.ok().flatten().map(|_| ()) }
    })
    .await
    .with_context(|| format!("no default ServiceAccount in {namespace}"))
}

/// Wait until the API server sends this namespace's agent Pods to a webhook: a dry-run Pod of an
/// agent that does not exist is denied with ADMISSION_DENY_AGENT_NOT_FOUND. (The API server
/// picks up a new registration from its informer, a moment after the apply.)
pub async fn wait_enforced(client: &Client, namespace: &str) -> Result<()> {
    wait_for_service_account(client, namespace).await?;
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let probe = agent_pod("e2e-registration-probe", "e2e-no-such-agent");
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let last = match api.create(&dry_run, &probe).await {
            Err(e) => api_error_message(&e),
            Ok(_) => "admitted (no webhook consulted yet)".into(),
        };
        if last.contains("ADMISSION_DENY_AGENT_NOT_FOUND") {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "the webhook registration for {namespace} never took effect; last answer: {last}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
