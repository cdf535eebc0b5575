//! The Helm chart running as Pods on the real node (e2e/node), with the images `make images`
//! assembles: both webhook replicas ready behind the Service and serving the chart's
//! certificate, the operator's leader election between its two Pods, probes run by the kubelet,
//! PodDisruptionBudgets enforced by evictions; then, under a continuous admission prober (a
//! dry-run agent Pod every 100 ms), zero failed admissions while the webhook Deployment rolls
//! out, the leader operator Pod is deleted (failover time printed) and the webhook's serving
//! certificate rotates.
//!
//! Runs only on a node: `make node-e2e`.

use std::path::Path;
use std::time::{Duration, Instant};

use agentgov_e2e::node::{
    Prober, busybox_pod, helm, network_report, node_env, pod_ip, tls_handshake,
};
use agentgov_e2e::operator::{KeyFile, log_dir};
use agentgov_e2e::{TestNamespace, api_error_message, client, wait_agent, wait_for};
use anyhow::{Context as _, Result, bail, ensure};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

const CHART: &str = "charts/agentgov";
const RELEASE: &str = "agentgov";
const TIMEOUT: Duration = Duration::from_secs(180);
const PROBE_INTERVAL: Duration = Duration::from_millis(100);

struct Setup {
    client: Client,
    system: TestNamespace,
    target: TestNamespace,
    values: String,
}

impl Setup {
    fn component_selector(&self, component: &str) -> String {
        format!("app.kubernetes.io/component={component},app.kubernetes.io/instance={RELEASE}")
    }
    fn pods(&self) -> Api<Pod> {
        self.system.api()
    }
    async fn ready_pods(&self, component: &str) -> Result<Vec<Pod>> {
        let list = self
            .pods()
            .list(&ListParams::default().labels(&self.component_selector(component)))
            .await?;
        Ok(list
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
            .collect())
    }
    fn webhook_host(&self) -> String {
        format!("{RELEASE}-webhook.{}.svc", self.system.name)
    }
}

/// A Helm release uninstalled when dropped (the webhook registration is cluster-wide).
struct Release(String);

impl Drop for Release {
    fn drop(&mut self) {
        let _ = helm(&["uninstall", RELEASE, "--namespace", &self.0, "--wait"]);
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn label(client: &Client, ns: &str, labels: serde_json::Value) -> Result<()> {
    Api::<Namespace>::all(client.clone())
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": labels}})),
        )
        .await?;
    Ok(())
}

async fn install(client: Client) -> Result<(Setup, Release)> {
    let system = TestNamespace::new(&client, "node-chart").await?;
    let target = TestNamespace::new(&client, "node-agents").await?;
    let opt_in = json!({"agentgov.dev/node-e2e": system.name});
    label(&client, &target.name, opt_in.clone()).await?;
    label(&client, &system.name, opt_in).await?;
    // The chart's Pods run under the restricted Pod Security Standard, on a real kubelet.
    label(
        &client,
        &system.name,
        json!({"pod-security.kubernetes.io/enforce": "restricted"}),
    )
    .await?;
    let dir = log_dir().join(&system.name);
    std::fs::create_dir_all(&dir)?;
    let keys = KeyFile::new(&dir.join("keys"), "node-e2e")?;
    let values = dir.join("values.yaml");
    let client_ca = std::fs::read_to_string(node_env("AGENTGOV_WEBHOOK_CLIENT_CA"))?;
    std::fs::write(
        &values,
        serde_yaml::to_string(&json!({
            "logFormat": "plain",
            "signingKeys": {"create": true, "keyring": serde_json::to_string_pretty(&keys.config)?},
            "webhook": {
                "clientCA": {"pem": client_ca},
                "namespaceSelectorExpressions": [
                    {"key": "agentgov.dev/node-e2e", "operator": "In", "values": [system.name]}
                ],
            },
        }))?,
    )?;
    let values = values.to_string_lossy().into_owned();
    let started = Instant::now();
    let release = Release(system.name.clone());
    helm(&[
        "install",
        RELEASE,
        CHART,
        "--namespace",
        &system.name,
        "-f",
        &values,
        "--wait",
        "--timeout",
        "3m",
        // The node tests before this one installed the (cluster-scoped) admission guards the
        // chart ships; the release adopts them (it runs last on this cluster).
        "--take-ownership",
    ])
    .context("helm install on the node (are the images imported? make node-e2e does it)")?;
    println!(
        "helm install --wait: both Deployments available after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok((
        Setup {
            client,
            system,
            target,
            values,
        },
        release,
    ))
}

#[tokio::test]
async fn the_chart_runs_as_pods_and_admissions_never_fail_during_rollout_failover_and_rotation()
-> Result<()> {
    let client = client().await;
    let (setup, _release) = install(client).await?;
    match under_test(&setup).await {
        Ok(()) => Ok(()),
        // Said while the Pods are still there: what the host sees of their network.
        Err(e) => bail!("{e:#}\n{}", network_report(&setup.pods()).await),
    }
}

/// Every step on the installed chart, in order.
async fn under_test(setup: &Setup) -> Result<()> {
    deployments_pods_and_probes(setup).await?;
    println!("ok: 2 operator and 2 webhook Pods Ready (kubelet probes), no restarts, restricted");
    let first_tls = webhook_replicas_behind_the_service(setup).await?;
    println!(
        "ok: both webhook replicas are endpoints of the Service and serve the chart's certificate"
    );
    let (agent_pod, pods) = agents_through_the_service(setup).await?;
    println!("ok: the API server calls the webhook through the Service: allowed and refused");
    leader_election(setup).await?;
    println!("ok: one operator Pod holds the Lease");
    disruption_budgets(setup).await?;
    println!("ok: PodDisruptionBudgets: one eviction allowed, the second refused");

    // Under the prober from here on.
    let prober = Prober::start(pods.clone(), agent_pod.clone(), PROBE_INTERVAL);
    webhook_rollout(setup).await?;
    let report = prober.stop().await?;
    expect_no_failures("webhook rollout", &report)?;

    let prober = Prober::start(pods.clone(), agent_pod.clone(), PROBE_INTERVAL);
    let failover = leader_failover(setup).await?;
    let report = prober.stop().await?;
    expect_no_failures("leader Pod deleted", &report)?;
    println!(
        "leader failover: {:.2} s from the leader Pod's deletion to a new holder",
        failover.as_secs_f64()
    );

    let prober = Prober::start(pods, agent_pod, PROBE_INTERVAL);
    certificate_rotation(setup, &first_tls).await?;
    let report = prober.stop().await?;
    expect_no_failures("serving certificate rotation", &report)?;
    Ok(())
}

fn expect_no_failures(what: &str, report: &agentgov_e2e::node::ProbeReport) -> Result<()> {
    println!(
        "{what}: {} dry-run agent Pod creations, {} failed",
        report.requests,
        report.failures.len()
    );
    // At one probe per 100 ms, ten probes cover a second from the event's start at least
    // (the prober runs to MIN_PROBES however short the event).
    ensure!(
        report.requests >= agentgov_e2e::node::MIN_PROBES,
        "{what}: only {} probes ran",
        report.requests
    );
    ensure!(
        report.failures.is_empty(),
        "{what}: {} failed admissions:\n{}",
        report.failures.len(),
        report.failures.join("\n")
    );
    Ok(())
}

async fn deployments_pods_and_probes(setup: &Setup) -> Result<()> {
    let deployments: Api<Deployment> = setup.system.api();
    for component in ["operator", "webhook"] {
        let d = deployments.get(&format!("{RELEASE}-{component}")).await?;
        let status = d.status.clone().unwrap_or_default();
        ensure!(
            status.ready_replicas == Some(2) && status.available_replicas == Some(2),
            "{component}: {status:?}"
        );
        let spec = d.spec.template.spec.context("pod spec")?;
        let container = &spec.containers[0];
        ensure!(
            container.readiness_probe.is_some() && container.liveness_probe.is_some(),
            "{component}: the chart sets no readiness or liveness probe"
        );
        let pods = setup.ready_pods(component).await?;
        ensure!(pods.len() == 2, "{component}: {} Ready Pods", pods.len());
        for pod in &pods {
            let statuses = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.clone())
                .unwrap_or_default();
            ensure!(
                statuses.iter().all(|c| c.ready && c.restart_count == 0),
                "{component} Pod {}: {statuses:?}",
                pod.name_any()
            );
            ensure!(
                pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
                    == Some(node_env("AGENTGOV_NODE_NAME").as_str()),
                "not on the node"
            );
        }
    }
    Ok(())
}

/// Both replicas are ready endpoints of the Service and each serves the chart's certificate
/// (verified for the Service's host name, mTLS with the API server's client certificate).
/// Returns the TLS Secret.
async fn webhook_replicas_behind_the_service(setup: &Setup) -> Result<Secret> {
    let pods = setup.ready_pods("webhook").await?;
    let mut ips: Vec<String> = pods.iter().map(pod_ip).collect::<Result<_>>()?;
    ips.sort();
    let slices: Api<EndpointSlice> = setup.system.api();
    let selector = format!("kubernetes.io/service-name={RELEASE}-webhook");
    let mut ready: Vec<String> = wait_for(Duration::from_secs(30), || {
        let slices = slices.clone();
        let selector = selector.clone();
        let want = ips.len();
        async move {
            let list = slices
                .list(&ListParams::default().labels(&selector))
                .await
                .ok()?;
            let ready: Vec<String> = list
                .items
                .iter()
                .flat_map(|s| s.endpoints.iter().flatten())
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                .flat_map(|e| e.addresses.clone())
                .collect();
            (ready.len() == want).then_some(ready)
        }
    })
    .await
    .context("the webhook Service's EndpointSlice never listed both replicas ready")?;
    ready.sort();
    ensure!(ready == ips, "endpoints {ready:?}, Pods {ips:?}");
    let secret = Api::<Secret>::namespaced(setup.client.clone(), &setup.system.name)
        .get(&format!("{RELEASE}-webhook-tls"))
        .await?;
    let ca = write_secret_key(setup, &secret, "ca.crt", "ca-first.crt")?;
    for ip in &ips {
        tls_handshake(&format!("{ip}:8443"), &setup.webhook_host(), &ca)?;
    }
    Ok(secret)
}

fn write_secret_key(
    setup: &Setup,
    secret: &Secret,
    key: &str,
    file: &str,
) -> Result<std::path::PathBuf> {
    let data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .with_context(|| format!("the Secret has no {key}"))?;
    let path = log_dir().join(&setup.system.name).join(file);
    std::fs::write(&path, &data.0)?;
    Ok(path)
}

/// A sandbox agent created through the webhook; a dry-run Pod of it is allowed, a Pod naming an
/// agent that does not exist is refused. Returns the agent Pod (for the prober) and the API.
async fn agents_through_the_service(setup: &Setup) -> Result<(Pod, Api<Pod>)> {
    let agents: Api<agentgov_api::Agent> = setup.target.api();
    let agent: agentgov_api::Agent = agentgov_e2e::manifest("examples/agent-sandbox.yaml")?;
    let name = agent.name_any();
    let created = wait_for(Duration::from_secs(30), || {
        let agents = agents.clone();
        let agent = agent.clone();
        async move { agents.create(&PostParams::default(), &agent).await.ok() }
    })
    .await;
    if created.is_err() {
        let last = agents.create(&PostParams::default(), &agent).await;
        bail!("the sandbox agent was not admitted through the webhook Service: {last:?}");
    }
    wait_agent(&agents, &name, "SANDBOX", Duration::from_secs(60), |a| {
        a.status
            .as_ref()
            .and_then(|s| s.governance_status.as_ref())
            .is_some()
    })
    .await?;
    // Containment is on by default: the chart's RBAC lets the operator keep the sandbox's
    // NetworkPolicy (a missing rule would show as a forbidden write in its logs and no policy).
    let policies: Api<NetworkPolicy> = setup.target.api();
    let policy_name = format!("agentgov-{name}");
    wait_for(Duration::from_secs(60), || {
        let policies = policies.clone();
        let policy_name = policy_name.clone();
        async move { policies.get_opt(&policy_name).await.ok().flatten() }
    })
    .await
    .with_context(|| format!("no NetworkPolicy {policy_name} for the sandbox agent"))?;
    let pods: Api<Pod> = setup.target.api();
    let pod = busybox_pod(
        "agent",
        json!({"agentgov.dev/agent": name}),
        &["sleep", "3600"],
    )?;
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    wait_for(Duration::from_secs(30), || {
        let pods = pods.clone();
        let pod = pod.clone();
        let dry = dry.clone();
        async move { pods.create(&dry, &pod).await.ok() }
    })
    .await
    .context("a Pod of the sandbox agent was not allowed")?;
    let tampered = busybox_pod(
        "tampered",
        json!({"agentgov.dev/agent": "no-such-agent"}),
        &["sleep", "3600"],
    )?;
    let refused = pods.create(&dry, &tampered).await;
    let message = refused
        .as_ref()
        .err()
        .map(api_error_message)
        .unwrap_or_default();
    ensure!(
        message.contains("ADMISSION_DENY_AGENT_NOT_FOUND"),
        "a Pod of an unknown agent: {refused:?}"
    );
    Ok((pod, pods))
}

async fn lease_holder(setup: &Setup) -> Result<Option<String>> {
    let lease = Api::<Lease>::namespaced(setup.client.clone(), &setup.system.name)
        .get(&format!("{RELEASE}-operator"))
        .await
        .or(
            Api::<Lease>::namespaced(setup.client.clone(), &setup.system.name)
                .get("agentgov-operator")
                .await,
        )?;
    Ok(lease.spec.and_then(|s| s.holder_identity))
}

async fn leader_election(setup: &Setup) -> Result<()> {
    let names: Vec<String> = setup
        .ready_pods("operator")
        .await?
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let holder = wait_for(Duration::from_secs(60), || async {
        lease_holder(setup)
            .await
            .ok()
            .flatten()
            .filter(|h| names.contains(h))
    })
    .await
    .with_context(|| format!("no operator Pod of {names:?} holds the Lease"))?;
    println!("operator leader: {holder} (standby: the other of {names:?})");
    Ok(())
}

async fn disruption_budgets(setup: &Setup) -> Result<()> {
    let pdbs: Api<PodDisruptionBudget> = setup.system.api();
    for component in ["operator", "webhook"] {
        let name = format!("{RELEASE}-{component}");
        wait_for(Duration::from_secs(30), || {
            let pdbs = pdbs.clone();
            let name = name.clone();
            async move {
                let status = pdbs.get(&name).await.ok()?.status?;
                (status.current_healthy == Some(2) && status.disruptions_allowed == Some(1))
                    .then_some(())
            }
        })
        .await
        .with_context(|| format!("PDB {name} never counted 2 healthy, 1 disruption allowed"))?;
    }
    // Evictions go through the budget (the eviction subresource, as `kubectl drain` uses it):
    // the first of the two webhook Pods may go, the second not until a replacement is Ready.
    let pods = setup.ready_pods("webhook").await?;
    let first = evict(&setup.system.name, &pods[0].name_any())?;
    ensure!(first.is_ok(), "evicting the first webhook Pod: {first:?}");
    let second = evict(&setup.system.name, &pods[1].name_any())?;
    match second {
        Err(message) if message.contains("disruption budget") => {}
        other => bail!("the second eviction was not refused by the budget: {other:?}"),
    }
    wait_two_ready(setup, "webhook").await
}

/// POST pods/<name>/eviction with kubectl; Ok, or Err with the API server's message.
fn evict(namespace: &str, pod: &str) -> Result<std::result::Result<(), String>> {
    let body = serde_json::to_string(&json!({
        "apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": pod, "namespace": namespace}
    }))?;
    let file = log_dir()
        .join(namespace)
        .join(format!("eviction-{pod}.json"));
    std::fs::write(&file, body)?;
    let out = std::process::Command::new("kubectl")
        .args(["create", "--raw"])
        .arg(format!(
            "/api/v1/namespaces/{namespace}/pods/{pod}/eviction"
        ))
        .arg("-f")
        .arg(&file)
        .output()?;
    Ok(match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    })
}

async fn wait_two_ready(setup: &Setup, component: &str) -> Result<()> {
    wait_for(TIMEOUT, || async {
        (setup.ready_pods(component).await.ok()?.len() == 2).then_some(())
    })
    .await
    .with_context(|| format!("{component}: never 2 Ready Pods again"))
}

async fn webhook_rollout(setup: &Setup) -> Result<()> {
    let deployments: Api<Deployment> = setup.system.api();
    let name = format!("{RELEASE}-webhook");
    let before = deployments
        .get(&name)
        .await?
        .metadata
        .generation
        .unwrap_or(0);
    // A new version of the Pod template, as `kubectl rollout restart` makes it.
    deployments
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"metadata": {"annotations": {
                "agentgov.dev/rolled-at": jiff::Timestamp::now().to_string()}}}}})),
        )
        .await?;
    let started = Instant::now();
    wait_for(TIMEOUT, || {
        let deployments = deployments.clone();
        let name = name.clone();
        async move {
            let d = deployments.get(&name).await.ok()?;
            let s = d.status?;
            let done = d.metadata.generation.unwrap_or(0) > before
                && s.observed_generation >= d.metadata.generation
                && s.updated_replicas == Some(2)
                && s.ready_replicas == Some(2)
                && s.replicas == Some(2);
            done.then_some(())
        }
    })
    .await
    .context("the webhook rollout did not complete")?;
    // The old Pods drain (not ready first, then they stop): keep probing until they are gone.
    let selector = setup.component_selector("webhook");
    wait_for(TIMEOUT, || {
        let selector = selector.clone();
        async move {
            let pods = setup
                .pods()
                .list(&ListParams::default().labels(&selector))
                .await
                .ok()?;
            let settled = pods.items.len() == 2
                && pods
                    .items
                    .iter()
                    .all(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p));
            settled.then_some(())
        }
    })
    .await
    .context("the old webhook Pods never went away")?;
    println!(
        "webhook rollout complete, old Pods gone, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn leader_failover(setup: &Setup) -> Result<Duration> {
    let leader = lease_holder(setup).await?.context("no leader")?;
    let started = Instant::now();
    setup
        .pods()
        .delete(&leader, &DeleteParams::default())
        .await
        .with_context(|| format!("delete the leader Pod {leader}"))?;
    let new = wait_for(TIMEOUT, || async {
        lease_holder(setup)
            .await
            .ok()
            .flatten()
            .filter(|h| !h.is_empty() && *h != leader)
    })
    .await
    .context("no other operator Pod took the Lease")?;
    let failover = started.elapsed();
    println!("the Lease moved from {leader} to {new}");
    // Keep probing until the old leader's Pod is gone.
    agentgov_e2e::wait_gone(&setup.pods(), &leader, TIMEOUT)
        .await
        .with_context(|| format!("the deleted leader Pod {leader} never went away"))?;
    wait_two_ready(setup, "operator").await?;
    Ok(failover)
}

/// Rotation of the chart-generated certificate without a window in which the API server and the
/// webhook disagree: a new CA and certificate rendered by the chart (`helm template`), both CAs
/// in caBundle while the kubelet swaps the Secret in the Pods, then `helm upgrade` (which looks
/// the new Secret up and leaves only the new CA). docs/install.md describes the same steps.
async fn certificate_rotation(setup: &Setup, first: &Secret) -> Result<()> {
    let rendered = helm(&[
        "template",
        RELEASE,
        CHART,
        "--namespace",
        &setup.system.name,
        "-f",
        &setup.values,
        "--show-only",
        "templates/webhook/admission.yaml",
    ])?;
    let mut new_secret: Option<Secret> = None;
    for doc in rendered.split("\n---") {
        let value: serde_yaml::Value = serde_yaml::from_str(doc)?;
        if value.get("kind").and_then(|k| k.as_str()) == Some("Secret") {
            new_secret = Some(serde_yaml::from_value(value)?);
        }
    }
    let new_secret = new_secret.context("helm template rendered no Secret")?;
    let key = |s: &Secret, k: &str| -> Result<Vec<u8>> {
        Ok(s.data
            .as_ref()
            .and_then(|d| d.get(k))
            .context("key")?
            .0
            .clone())
    };
    let old_ca = key(first, "ca.crt")?;
    let new_ca = key(&new_secret, "ca.crt")?;
    ensure!(old_ca != new_ca, "helm template rendered the same CA");
    let started = Instant::now();

    // 1. Both CAs in caBundle.
    let vwcs: Api<ValidatingWebhookConfiguration> = Api::all(setup.client.clone());
    let name = format!("{RELEASE}-webhook");
    set_ca_bundle(&vwcs, &name, [old_ca.clone(), new_ca.clone()].concat()).await?;
    // The API server reads webhook configurations through an informer; give it a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 2. The new certificate into the Secret; the kubelet updates the Pods' volume.
    let secrets: Api<Secret> = setup.system.api();
    secrets
        .patch(
            &format!("{RELEASE}-webhook-tls"),
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {
                "tls.crt": ByteString(key(&new_secret, "tls.crt")?),
                "tls.key": ByteString(key(&new_secret, "tls.key")?),
                "ca.crt": ByteString(new_ca.clone()),
            }})),
        )
        .await?;
    let ca_file = log_dir().join(&setup.system.name).join("ca-new.crt");
    std::fs::write(&ca_file, &new_ca)?;
    for pod in setup.ready_pods("webhook").await? {
        let address = format!("{}:8443", pod_ip(&pod)?);
        wait_for(TIMEOUT, || {
            let address = address.clone();
            let host = setup.webhook_host();
            let ca_file = ca_file.clone();
            async move { tls_handshake(&address, &host, Path::new(&ca_file)).ok() }
        })
        .await
        .with_context(|| {
            format!(
                "webhook Pod {} never served the new certificate",
                pod.name_any()
            )
        })?;
    }
    println!(
        "both webhook replicas serve the new certificate {:.1} s after the Secret changed",
        started.elapsed().as_secs_f64()
    );

    // 3. helm upgrade finds the new Secret and leaves only the new CA in caBundle.
    helm(&[
        "upgrade",
        RELEASE,
        CHART,
        "--namespace",
        &setup.system.name,
        "-f",
        &setup.values,
        "--wait",
        "--timeout",
        "3m",
    ])?;
    for hook in vwcs.get(&name).await?.webhooks.unwrap_or_default() {
        ensure!(
            hook.client_config.ca_bundle.map(|b| b.0) == Some(new_ca.clone()),
            "caBundle after the upgrade is not the new CA alone"
        );
    }
    // The old CA no longer verifies what the webhook serves.
    let old_file = log_dir().join(&setup.system.name).join("ca-first.crt");
    let pod = &setup.ready_pods("webhook").await?[0];
    ensure!(
        tls_handshake(
            &format!("{}:8443", pod_ip(pod)?),
            &setup.webhook_host(),
            &old_file
        )
        .is_err(),
        "the old CA still verifies the served certificate"
    );
    Ok(())
}

async fn set_ca_bundle(
    vwcs: &Api<ValidatingWebhookConfiguration>,
    name: &str,
    bundle: Vec<u8>,
) -> Result<()> {
    let mut vwc = vwcs.get(name).await?;
    for hook in vwc.webhooks.iter_mut().flatten() {
        hook.client_config.ca_bundle = Some(ByteString(bundle.clone()));
    }
    vwcs.replace(name, &PostParams::default(), &vwc).await?;
    Ok(())
}
