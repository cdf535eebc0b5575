//! Helpers for the e2e tests: a client for the loopback control plane that
//! `e2e/controlplane/cluster.sh exec` starts, one namespace per test, CRD installation, and the
//! operator as a child process. Tests fail loudly when there is no cluster; they never skip.
#![forbid(unsafe_code)]

pub mod admission;
pub mod guards;
pub mod node;
pub mod operator;
pub mod plugin;
pub mod process;
pub mod sandbox;
pub mod scenario;
pub mod upstream;
pub mod webhook;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, Config};
use serde::de::DeserializeOwned;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// A client for the test cluster. Panics with the reason when there is none: e2e tests must
/// fail, not skip, when the control plane is missing.
pub async fn client() -> Client {
    let kubeconfig = std::env::var("KUBECONFIG").unwrap_or_default();
    assert!(
        !kubeconfig.is_empty(),
        "KUBECONFIG is not set: run the e2e tests through `make e2e` \
         (e2e/controlplane/cluster.sh exec -- cargo test -p agentgov-e2e), which starts a control plane"
    );
    let config = Config::infer()
        .await
        .unwrap_or_else(|e| panic!("cannot read KUBECONFIG {kubeconfig}: {e}"));
    let client = Client::try_from(config).unwrap_or_else(|e| panic!("cannot build a client: {e}"));
    client.apiserver_version().await.unwrap_or_else(|e| {
        panic!("the control plane at KUBECONFIG {kubeconfig} does not answer: {e}")
    });
    client
}

/// Install (server-side apply) the generated CRDs and the admission guards, and wait until the
/// CRDs are Established.
pub async fn install_crds(client: &Client) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crds = agentgov_api::crd_formats::all();
    for crd in &crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply("agentgov-e2e").force(),
            &Patch::Apply(crd),
        )
        .await
        .with_context(|| format!("apply CRD {name}"))?;
    }
    for crd in &crds {
        wait_established(&api, crd.metadata.name.as_deref().unwrap_or_default()).await?;
    }
    guards::install(client, agentgov_api::guards::DEFAULT_PREFIX).await
}

/// Wait (30 s at most) until the CRD `name` is Established: its resource is served.
pub async fn wait_established(api: &Api<CustomResourceDefinition>, name: &str) -> Result<()> {
    wait_for(Duration::from_secs(30), || {
        let api = api.clone();
        async move {
            let crd = api.get(name).await.ok()?;
            let established = crd
                .status?
                .conditions?
                .into_iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        }
    })
    .await
    .with_context(|| format!("CRD {name} did not become Established"))
}

/// A namespace of its own for one test, deleted when the test ends.
pub struct TestNamespace {
    pub name: String,
    client: Client,
}

impl TestNamespace {
    pub async fn new(client: &Client, prefix: &str) -> Result<Self> {
        let suffix = std::process::id()
            ^ u32::try_from(jiff::Timestamp::now().subsec_nanosecond()).unwrap_or(0);
        let name = format!("{prefix}-{:x}", suffix & 0xffffff);
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {"agentgov.dev/e2e": "true"}}
        }))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("create namespace {name}"))?;
        // Pods need the default ServiceAccount, made by kube-controller-manager.
        Ok(TestNamespace {
            name,
            client: client.clone(),
        })
    }

    /// The Events (events.k8s.io) about the object named `regarding` in this namespace (none
    /// when they cannot be listed).
    pub async fn events_about(&self, regarding: &str) -> Vec<k8s_openapi::api::events::v1::Event> {
        self.api::<k8s_openapi::api::events::v1::Event>()
            .list(&kube::api::ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding))
            .collect()
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let client = self.client.clone();
        let name = self.name.clone();
        // Best effort: the whole control plane is thrown away after the run anyway.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = Api::<Namespace>::all(client)
                    .delete(&name, &DeleteParams::background())
                    .await;
            });
        }
    }
}

/// Poll `probe` every 100 ms until it returns Some, or fail after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait until a get of `name` from `api` finds nothing, or fail after `timeout`.
pub async fn wait_gone<K>(api: &Api<K>, name: &str, timeout: Duration) -> Result<()>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    wait_for(timeout, || async {
        api.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await
    .with_context(|| format!("{name} is still there"))
}

/// Wait until the Agent `name` satisfies `check`. On timeout, the error names `what` was awaited
/// and the status last seen.
pub async fn wait_agent(
    api: &Api<agentgov_api::Agent>,
    name: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&agentgov_api::Agent) -> bool,
) -> Result<agentgov_api::Agent> {
    let result = wait_for(timeout, || {
        let check = &check;
        async move { api.get(name).await.ok().filter(|a| check(a)) }
    })
    .await;
    match result {
        Ok(agent) => Ok(agent),
        Err(_) => {
            let current = api.get(name).await.ok().and_then(|a| a.status);
            bail!("agent {name} never became {what}; status: {current:#?}")
        }
    }
}

/// Apply (server-side) the namespace's PolicyBundle `default` with this spec.
pub async fn apply_bundle(ns: &TestNamespace, spec: agentgov_api::PolicyBundleSpec) -> Result<()> {
    let bundle = agentgov_api::PolicyBundle::new("default", spec);
    ns.api::<agentgov_api::PolicyBundle>()
        .patch(
            "default",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&bundle),
        )
        .await
        .context("apply PolicyBundle default")?;
    Ok(())
}

/// Apply the namespace's PolicyBundle `default` and wait until an operator reports this very
/// version in force (status.activeHash and Ready=True), so that agents created next are judged
/// against it rather than refused for want of a policy.
pub async fn apply_bundle_in_force(
    ns: &TestNamespace,
    spec: agentgov_api::PolicyBundleSpec,
    timeout: Duration,
) -> Result<()> {
    let hash = agentgov_api::hash::policy_hash(&spec)?;
    apply_bundle(ns, spec).await?;
    let bundles = ns.api::<agentgov_api::PolicyBundle>();
    wait_for(timeout, || {
        let bundles = bundles.clone();
        let hash = hash.clone();
        async move {
            let status = bundles.get("default").await.ok()?.status?;
            let in_force = status.active_hash.as_deref() == Some(hash.as_str())
                && agentgov_api::conditions::is_true(
                    &status.conditions,
                    agentgov_api::conditions::READY,
                );
            in_force.then_some(())
        }
    })
    .await
    .with_context(|| format!("PolicyBundle default {hash} in force in {}", ns.name))
}

/// Create `count` agents named `{prefix}-00000`... with the same spec, 32 at a time.
pub async fn create_agents(
    ns: &TestNamespace,
    prefix: &str,
    count: usize,
    spec: &agentgov_api::AgentSpec,
) -> Result<()> {
    use futures::{StreamExt, TryStreamExt, stream};
    let agents: Api<agentgov_api::Agent> = ns.api();
    stream::iter(0..count)
        .map(|i| {
            let agents = agents.clone();
            let agent = agentgov_api::Agent::new(&format!("{prefix}-{i:05}"), spec.clone());
            async move {
                agents
                    .create(&PostParams::default(), &agent)
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(32)
        .try_collect::<()>()
        .await
        .context("create agents")
}

/// An AgentPromotion approving the agent `name` as it is stored now (the hash of the spec the
/// API server returns), created by `promotions`' client (whose user must hold `promote`).
pub async fn approve(
    agents: &Api<agentgov_api::Agent>,
    promotions: &Api<agentgov_api::AgentPromotion>,
    name: &str,
) -> Result<agentgov_api::AgentPromotion> {
    let agent = agents
        .get(name)
        .await
        .with_context(|| format!("get agent {name}"))?;
    let spec_hash = agentgov_api::hash::spec_hash(&agent.spec)?;
    let promotion = approval(name, &spec_hash);
    promotions
        .create(&PostParams::default(), &promotion)
        .await
        .with_context(|| format!("approve agent {name}"))
}

/// An AgentPromotion of `agent` for `spec_hash` (named after both, so that approving the same
/// spec twice collides and another spec gets another name).
pub fn approval(agent: &str, spec_hash: &str) -> agentgov_api::AgentPromotion {
    let mut promotion = agentgov_api::AgentPromotion::new(
        &format!("{agent}-{}", &spec_hash[..spec_hash.len().min(10)]),
        agentgov_api::AgentPromotionSpec {
            agent: agent.to_string(),
            spec_hash: spec_hash.to_string(),
            reason: Some("e2e".into()),
            requested_by: None,
        },
    );
    promotion.metadata.generate_name = None;
    promotion
}

/// Approve the agents `{prefix}-00000`... (created with `spec` by [`create_agents`]), 32 at a time.
pub async fn approve_agents(
    ns: &TestNamespace,
    prefix: &str,
    count: usize,
    spec: &agentgov_api::AgentSpec,
) -> Result<()> {
    use futures::{StreamExt, TryStreamExt, stream};
    let promotions: Api<agentgov_api::AgentPromotion> = ns.api();
    let spec_hash = agentgov_api::hash::spec_hash(spec)?;
    stream::iter(0..count)
        .map(|i| {
            let promotions = promotions.clone();
            let promotion = approval(&format!("{prefix}-{i:05}"), &spec_hash);
            async move {
                promotions
                    .create(&PostParams::default(), &promotion)
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(32)
        .try_collect::<()>()
        .await
        .context("approve agents")
}

/// Read a YAML manifest from the repository.
pub fn manifest<T: DeserializeOwned>(path: &str) -> Result<T> {
    let full = repo_root().join(path);
    let text =
        std::fs::read_to_string(&full).with_context(|| format!("read {}", full.display()))?;
    serde_yaml::from_str(&text).map_err(|e| anyhow!("parse {}: {e}", full.display()))
}

/// The message of a Kubernetes API error, for asserting on what the API server said.
pub fn api_error_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}
