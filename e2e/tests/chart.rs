//! The Helm chart (charts/agentgov) on the loopback control plane:
//!
//! - every values variant of e2e/chart/values/ passes a server-side dry run with strict field
//!   validation (the API server itself validates every object, CRDs included);
//! - `helm install` into a namespace that enforces the restricted Pod Security Standard: the
//!   ReplicaSets create their Pods (no kubelet, so they stay Pending), objects read back as
//!   configured, the service accounts can do exactly what they need (SubjectAccessReviews), the
//!   webhook registration fails closed for selected namespaces only, the real binaries start
//!   and get ready with the chart's environment, Secrets and certificate, and `helm upgrade`
//!   keeps the generated certificate.
//!
//! Needs helm (hack/tools.sh) and the binaries (`make build`); fails, never skips, without them.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use agentgov_api::keyring::KeyRingConfig;
use agentgov_e2e::operator::{KeyFile, binary, free_port, log_dir};
use agentgov_e2e::{TestNamespace, api_error_message, client, install_crds, repo_root, wait_for};
use anyhow::{Context as _, Result, bail, ensure};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

const CHART: &str = "charts/agentgov";

// ---------------------------------------------------------------------------------------------
// helm, kubectl and the release

fn helm_path() -> PathBuf {
    let path = repo_root().join(".cache/tools/bin/helm");
    assert!(
        path.exists(),
        "{} is missing: run hack/tools.sh (it builds helm into .cache/tools)",
        path.display()
    );
    path
}

/// Run a command in the repository root; its stdout, or an error with its stderr.
fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", program.display()))?;
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{} {} failed: {}",
            program.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn helm(args: &[&str]) -> Result<String> {
    run(&helm_path(), args, None)
}

fn kubectl(args: &[&str], stdin: Option<&str>) -> Result<String> {
    run(Path::new("kubectl"), args, stdin)
        .context("kubectl comes with the control plane: run through `make e2e`")
}

/// A Helm release, uninstalled when dropped (the webhook registration is cluster-wide).
struct Release {
    name: String,
    namespace: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = helm(&[
            "uninstall",
            &self.name,
            "--namespace",
            &self.namespace,
            "--wait",
        ]);
    }
}

fn values_variants() -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo_root().join("e2e/chart/values"))? {
        let path = entry?.path();
        let name = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        out.push((name, path));
    }
    out.sort();
    ensure!(
        out.len() >= 5,
        "e2e/chart/values/ holds only {} variants",
        out.len()
    );
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// 1. Server-side validation of every variant

/// API groups whose CRDs this control plane does not have (prometheus-operator, cert-manager):
/// those objects are checked by e2e/chart/test.sh (PromQL, names) and left out here.
const NOT_SERVED: [&str; 2] = ["monitoring.coreos.com/", "cert-manager.io/"];

#[tokio::test]
async fn every_values_variant_passes_server_side_dry_run() -> Result<()> {
    let client = client().await;
    install_crds(&client).await?;
    let ns = TestNamespace::new(&client, "chart-dry").await?;
    for (variant, path) in values_variants()? {
        let path = path.to_string_lossy();
        let mut args = vec![
            "template",
            "agentgov",
            CHART,
            "--include-crds",
            "--namespace",
            &ns.name,
        ];
        args.extend(["-f", "e2e/chart/values/minimal.yaml", "-f", &path]);
        let watch = format!("watchNamespace={}", ns.name);
        if variant == "namespaced" {
            args.extend(["--set", &watch]);
        }
        let rendered = helm(&args).with_context(|| format!("render {variant}"))?;
        let (served, skipped): (Vec<&str>, Vec<&str>) = rendered
            .split("\n---")
            .filter(|doc| doc.contains("kind:"))
            .partition(|doc| {
                !NOT_SERVED
                    .iter()
                    .any(|g| doc.contains(&format!("apiVersion: {g}")))
            });
        let out = kubectl(
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "--force-conflicts",
                "--validate=strict",
                "--field-manager=agentgov-chart-e2e",
                "-n",
                &ns.name,
                "-f",
                "-",
            ],
            Some(&served.join("\n---\n")),
        )
        .with_context(|| format!("variant {variant}: the API server refused the rendered chart"))?;
        let applied = out
            .lines()
            .filter(|l| l.contains("(server dry run)"))
            .count();
        ensure!(
            applied == served.len(),
            "variant {variant}: {applied} of {} objects validated:\n{out}",
            served.len()
        );
        println!(
            "{variant}: {applied} objects validated by the API server, {} not served here",
            skipped.len()
        );
    }
    // The GitOps example's Agent is valid against the CRD.
    let agent: agentgov_api::Agent =
        agentgov_e2e::manifest("examples/gitops/agents/research-scratchpad.yaml")?;
    ns.api::<agentgov_api::Agent>()
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &agent,
        )
        .await
        .context("examples/gitops/agents/research-scratchpad.yaml")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2. Install, read back, use, upgrade

#[tokio::test]
async fn install_read_back_and_upgrade() -> Result<()> {
    let client = client().await;
    install_crds(&client).await?;
    let system = TestNamespace::new(&client, "chart").await?;
    let target = TestNamespace::new(&client, "chart-target").await?;
    // Only namespaces labelled for this release are selected (other tests' namespaces are left
    // alone); the release namespace carries the label too, so only the chart's own exclusion
    // keeps the webhook out of it. It also enforces the restricted Pod Security Standard.
    let opt_in = json!({"agentgov.dev/chart-e2e": system.name});
    label_namespace(&client, &target.name, opt_in.clone()).await?;
    label_namespace(&client, &system.name, opt_in).await?;
    label_namespace(
        &client,
        &system.name,
        json!({"pod-security.kubernetes.io/enforce": "restricted"}),
    )
    .await?;

    let dir = log_dir().join(&system.name);
    std::fs::create_dir_all(&dir)?;
    let keys = KeyFile::new(&dir.join("keys"), "chart-e2e")?;
    let values = dir.join("values.yaml");
    let client_ca = std::fs::read_to_string(env("AGENTGOV_WEBHOOK_CLIENT_CA")?)?;
    std::fs::write(
        &values,
        serde_yaml::to_string(&json!({
            "signingKeys": {"create": true, "keyring": serde_json::to_string_pretty(&keys.config)?},
            // The suite installed the (cluster-scoped) guards already, and every other test
            // relies on them: this release must not own them (its uninstall would delete them).
            // The rendered guards are checked by the dry run above and by e2e/chart/test.sh.
            "admissionGuards": {"install": false},
            "webhook": {
                "clientCA": {"pem": client_ca},
                "namespaceSelectorExpressions": [
                    {"key": "agentgov.dev/chart-e2e", "operator": "In", "values": [system.name]}
                ],
            },
        }))?,
    )?;
    let release = Release {
        name: format!("agentgov-{}", system.name.trim_start_matches("chart-")),
        namespace: system.name.clone(),
    };
    let values = values.to_string_lossy();
    let install = [
        "install",
        &release.name,
        CHART,
        "--namespace",
        &system.name,
        "-f",
        &values,
    ];
    let notes = helm(&install)?;
    ensure!(
        notes.contains("clientAuth is \"required\""),
        "NOTES: {notes}"
    );
    let names = Names::new(&release.name, &system.name);

    let first_tls = read_back(&client, &names, &keys.config, &dir).await?;
    println!("ok: read back: Deployments, Pods admitted as restricted, certificate, key rings");
    service_accounts_can_do_what_they_need_and_no_more(&client, &names, &target.name).await?;
    println!("ok: RBAC of the operator and webhook ServiceAccounts");
    admin_roles_grant_promote(&client, &target.name).await?;
    println!("ok: agentgov-agent-admin and agentgov-policy-admin");
    webhook_fails_closed_for_selected_namespaces_only(&client, &names, &target.name).await?;
    println!("ok: webhook registration: fails closed where selected, only there");
    binaries_run_with_the_charts_settings(&client, &names, &dir).await?;
    println!("ok: operator and webhook binaries ready with the chart's settings; mTLS handshake");

    // An upgrade keeps the generated certificate (lookup), and applies the change.
    helm(&[
        "upgrade",
        &release.name,
        CHART,
        "--namespace",
        &system.name,
        "-f",
        &values,
        "--set",
        "operator.concurrency=4",
    ])?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &system.name);
    let tls = secrets.get(&names.tls_secret).await?;
    ensure!(
        tls.data == first_tls.data,
        "helm upgrade generated a new webhook certificate"
    );
    let vwc: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let ca = secret_value(&tls, "ca.crt")?;
    for hook in vwc.get(&names.webhook).await?.webhooks.unwrap_or_default() {
        ensure!(
            hook.client_config.ca_bundle.map(|b| b.0) == Some(ca.clone()),
            "caBundle changed on upgrade"
        );
    }
    let operator = Api::<Deployment>::namespaced(client.clone(), &system.name)
        .get(&names.operator)
        .await?;
    ensure!(
        container_env(&operator)?
            .get("AGENTGOV_CONCURRENCY")
            .map(String::as_str)
            == Some("4"),
        "upgrade not applied"
    );

    // Uninstall removes the cluster-wide objects.
    drop(release);
    ensure!(
        vwc.get_opt(&names.webhook).await?.is_none(),
        "the webhook registration survived helm uninstall"
    );
    Ok(())
}

struct Names {
    namespace: String,
    operator: String,
    webhook: String,
    tls_secret: String,
}

impl Names {
    fn new(release: &str, namespace: &str) -> Self {
        Names {
            namespace: namespace.into(),
            operator: format!("{release}-operator"),
            webhook: format!("{release}-webhook"),
            tls_secret: format!("{release}-webhook-tls"),
        }
    }
    fn service_host(&self) -> String {
        format!("{}.{}.svc", self.webhook, self.namespace)
    }
}

fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set: run through `make e2e`"))
}

async fn label_namespace(client: &Client, name: &str, labels: serde_json::Value) -> Result<()> {
    Api::<Namespace>::all(client.clone())
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": labels}})),
        )
        .await?;
    Ok(())
}

fn secret_value(secret: &Secret, key: &str) -> Result<Vec<u8>> {
    Ok(secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .with_context(|| format!("{} has no {key}", secret.name_any()))?
        .0
        .clone())
}

fn container_env(deployment: &Deployment) -> Result<BTreeMap<String, String>> {
    let spec = deployment
        .spec
        .template
        .spec
        .as_ref()
        .context("no pod spec")?;
    Ok(spec.containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect())
}

/// Deployments, Pods admitted under the restricted standard, certificate, key rings.
/// Returns the webhook's TLS Secret.
async fn read_back(
    client: &Client,
    names: &Names,
    ring: &KeyRingConfig,
    dir: &Path,
) -> Result<Secret> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &names.namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &names.namespace);
    for (name, component) in [(&names.operator, "operator"), (&names.webhook, "webhook")] {
        let d = deployments.get(name).await?;
        ensure!(d.spec.replicas == Some(2), "{name}: replicas");
        let selector = format!(
            "app.kubernetes.io/component={component},app.kubernetes.io/instance={}",
            names.operator.trim_end_matches("-operator")
        );
        wait_for(Duration::from_secs(60), || {
            let pods = pods.clone();
            let selector = selector.clone();
            async move { (pods.list(&ListParams::default().labels(&selector)).await.ok()?.items.len() == 2).then_some(()) }
        })
        .await
        .with_context(|| format!("{name}: the ReplicaSet did not create 2 Pods; `kubectl -n {} describe rs` shows why (the restricted Pod Security Standard?)", names.namespace))?;
    }
    let operator_env = container_env(&deployments.get(&names.operator).await?)?;
    ensure!(
        operator_env.contains_key("POD_NAME") && operator_env.contains_key("POD_NAMESPACE"),
        "operator env"
    );

    // The serving certificate: signed by the CA in caBundle, for the Service's host name.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &names.namespace);
    let tls = secrets.get(&names.tls_secret).await?;
    let ca = secret_value(&tls, "ca.crt")?;
    let vwc = Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .get(&names.webhook)
        .await?;
    let hooks = vwc.webhooks.unwrap_or_default();
    let mut hook_names: Vec<&str> = hooks.iter().map(|h| h.name.as_str()).collect();
    hook_names.sort_unstable();
    ensure!(
        hook_names
            == [
                "agentpromotions.validate.agentgov.dev",
                "agents.validate.agentgov.dev",
                "pods.validate.agentgov.dev",
                "policybundles.validate.agentgov.dev",
                "sandboxes.validate.agentgov.dev",
            ],
        "the webhooks: {hook_names:?}"
    );
    for hook in &hooks {
        ensure!(
            hook.client_config.ca_bundle.as_ref().map(|b| &b.0) == Some(&ca),
            "{}: caBundle is not the Secret's CA",
            hook.name
        );
        ensure!(
            hook.failure_policy.as_deref() == Some("Fail"),
            "{}: failurePolicy",
            hook.name
        );
    }
    std::fs::write(dir.join("ca.crt"), &ca)?;
    std::fs::write(dir.join("tls.crt"), secret_value(&tls, "tls.crt")?)?;
    let verify = run(
        Path::new("openssl"),
        &[
            "verify",
            "-CAfile",
            &dir.join("ca.crt").to_string_lossy(),
            "-verify_hostname",
            &names.service_host(),
            "-purpose",
            "sslserver",
            &dir.join("tls.crt").to_string_lossy(),
        ],
        None,
    )?;
    ensure!(verify.contains("OK"), "openssl verify: {verify}");

    // Key rings: the operator's as given; the webhook's is what `keygen public` would print.
    let release = names.operator.trim_end_matches("-operator");
    let signing: KeyRingConfig = serde_json::from_slice(&secret_value(
        &secrets.get(&format!("{release}-signing-keys")).await?,
        "keyring.json",
    )?)?;
    ensure!(&signing == ring, "signing key ring differs from the values");
    let verification: KeyRingConfig = serde_json::from_slice(&secret_value(
        &secrets.get(&format!("{release}-verification-keys")).await?,
        "keyring.json",
    )?)?;
    ensure!(
        verification == ring.verification_only()?,
        "the chart's verification ring is not `keygen public`'s:\n{verification:?}"
    );
    Ok(tls)
}

/// What the chart's ServiceAccounts may do, one check a line: who, verb, `group/resource`
/// (`core` for the core group, `resource/subresource` too), resource name (`-`: any), namespace
/// (`release`, `target`, or `-` for cluster scope), allowed. Exactly what the binaries use.
const RBAC: &str = "
    operator watch  agentgov.dev/agents                       -                 target  yes
    operator list   agentgov.dev/policybundles                -                 target  yes
    operator patch  agentgov.dev/agents/status                -                 target  yes
    operator patch  agentgov.dev/policybundles/status         -                 target  yes
    operator create events.k8s.io/events                      -                 target  yes
    operator patch  events.k8s.io/events                      -                 target  yes
    operator create coordination.k8s.io/leases                -                 release yes
    operator update coordination.k8s.io/leases                agentgov-operator release yes
    operator update coordination.k8s.io/leases                kube-scheduler    release no
    operator create coordination.k8s.io/leases                -                 target  no
    operator get    core/secrets                              -                 release no
    operator list   core/secrets                              -                 target  no
    operator update agentgov.dev/agents                       -                 target  no
    operator patch  agentgov.dev/agents                       -                 target  no
    operator promote agentgov.dev/agents                      -                 target  no
    operator create authorization.k8s.io/subjectaccessreviews -                 -       yes
    operator watch  agentgov.dev/agentpromotions              -                 target  yes
    operator patch  agentgov.dev/agentpromotions/status       -                 target  yes
    operator delete agentgov.dev/agentpromotions              -                 target  yes
    operator update agentgov.dev/agentpromotions              -                 target  no
    operator watch  agentgov.dev/agentexceptions              -                 target  yes
    operator patch  agentgov.dev/agentexceptions/status       -                 target  yes
    operator update agentgov.dev/agentexceptions              -                 target  no
    operator create agentgov.dev/agentexceptions              -                 target  no
    operator list   admissionregistration.k8s.io/validatingadmissionpolicies - - yes
    operator watch  admissionregistration.k8s.io/mutatingadmissionpolicybindings - - yes
    operator update admissionregistration.k8s.io/validatingadmissionpolicies - - no
    webhook  watch  agentgov.dev/agents                       -                 target  yes
    webhook  list   agentgov.dev/policybundles                -                 target  yes
    webhook  list   agentgov.dev/agentexceptions              -                 target  yes
    webhook  watch  agentgov.dev/agentexceptions              -                 target  yes
    webhook  update agentgov.dev/agentexceptions              -                 target  no
    webhook  create authorization.k8s.io/subjectaccessreviews -                 -       yes
    webhook  patch  agentgov.dev/agents/status                -                 target  no
    webhook  create events.k8s.io/events                      -                 target  no
    webhook  get    core/secrets                              -                 release no
    webhook  create coordination.k8s.io/leases                -                 release no
";

/// SubjectAccessReviews for the chart's ServiceAccounts, line by line of [`RBAC`].
async fn service_accounts_can_do_what_they_need_and_no_more(
    client: &Client,
    names: &Names,
    target: &str,
) -> Result<()> {
    let mut wrong = Vec::new();
    for line in RBAC.lines().filter(|l| !l.trim().is_empty()) {
        let &[who, verb, resource, name, namespace, allowed] =
            line.split_whitespace().collect::<Vec<_>>().as_slice()
        else {
            bail!("bad RBAC line {line:?}");
        };
        let account = if who == "operator" {
            &names.operator
        } else {
            &names.webhook
        };
        let user = format!("system:serviceaccount:{}:{account}", names.namespace);
        let (group, resource) = resource.split_once('/').context("group/resource")?;
        let group = if group == "core" { "" } else { group };
        let name = (name != "-").then_some(name);
        let namespace = match namespace {
            "release" => names.namespace.as_str(),
            "target" => target,
            _ => "",
        };
        let got = can(client, &user, verb, group, resource, name, namespace).await?;
        if got != (allowed == "yes") {
            wrong.push(format!("{}: got {got}", line.trim()));
        }
    }
    ensure!(wrong.is_empty(), "RBAC:\n{}", wrong.join("\n"));
    Ok(())
}

/// The ClusterRoles for people: `promote` where bound, and only there.
async fn admin_roles_grant_promote(client: &Client, target: &str) -> Result<()> {
    let roles: Api<ClusterRole> = Api::all(client.clone());
    for role in ["agentgov-agent-admin", "agentgov-policy-admin"] {
        roles
            .get(role)
            .await
            .with_context(|| format!("ClusterRole {role}"))?;
        let user = format!("{role}-user");
        kubectl(
            &[
                "create",
                "rolebinding",
                &user,
                "-n",
                target,
                "--clusterrole",
                role,
                "--user",
                &user,
            ],
            None,
        )?;
        // The API server's RBAC cache sees a new RoleBinding a moment after it is created.
        let promote = agentgov_e2e::wait_for(std::time::Duration::from_secs(15), || async {
            can(
                client,
                &user,
                "promote",
                "agentgov.dev",
                "agents",
                None,
                target,
            )
            .await
            .ok()
            .filter(|allowed| *allowed)
        })
        .await;
        ensure!(promote.is_ok(), "{role}: no promote");
        ensure!(
            !can(
                client,
                &user,
                "promote",
                "agentgov.dev",
                "agents",
                None,
                "default"
            )
            .await?,
            "{role}: promote outside its binding"
        );
        let bundles = can(
            client,
            &user,
            "create",
            "agentgov.dev",
            "policybundles",
            None,
            target,
        )
        .await?;
        ensure!(
            bundles == (role == "agentgov-policy-admin"),
            "{role}: create policybundles is {bundles}"
        );
        let agents = can(
            client,
            &user,
            "create",
            "agentgov.dev",
            "agents",
            None,
            target,
        )
        .await?;
        ensure!(
            agents == (role == "agentgov-agent-admin"),
            "{role}: create agents is {agents}"
        );
    }
    Ok(())
}

/// May `user` do `verb` on `group`/`resource` (a "resource/subresource" too)?
async fn can(
    client: &Client,
    user: &str,
    verb: &str,
    group: &str,
    resource: &str,
    name: Option<&str>,
    namespace: &str,
) -> Result<bool> {
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_string())),
        None => (resource, None),
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource,
                name: name.map(str::to_string),
                namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// No webhook Pod runs here (no kubelet), so the registration must fail closed where it applies
/// (failurePolicy Fail), and nowhere else.
async fn webhook_fails_closed_for_selected_namespaces_only(
    client: &Client,
    names: &Names,
    target: &str,
) -> Result<()> {
    let pod = |labelled: bool| -> Result<Pod> {
        let labels = if labelled {
            json!({"agentgov.dev/agent": "research-scratchpad"})
        } else {
            json!({})
        };
        Ok(serde_json::from_value(json!({
            "metadata": {"generateName": "chart-e2e-", "labels": labels},
            "spec": {
                "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "agent", "image": "registry.invalid/agent:1",
                    "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]
            }
        }))?)
    };
    let in_target: Api<Pod> = Api::namespaced(client.clone(), target);
    let denied = in_target.create(&PostParams::default(), &pod(true)?).await;
    let message = denied
        .as_ref()
        .err()
        .map(api_error_message)
        .unwrap_or_default();
    ensure!(
        message.contains("pods.validate.agentgov.dev"),
        "an agent Pod in a selected namespace was not sent to the webhook: {denied:?}"
    );
    in_target
        .create(&PostParams::default(), &pod(false)?)
        .await
        .context("a Pod without the agent label must not be intercepted")?;
    let agents: Api<agentgov_api::Agent> = Api::namespaced(client.clone(), target);
    let agent: agentgov_api::Agent = agentgov_e2e::manifest("examples/agent-sandbox.yaml")?;
    let denied = agents.create(&PostParams::default(), &agent).await;
    let message = denied
        .as_ref()
        .err()
        .map(api_error_message)
        .unwrap_or_default();
    ensure!(
        message.contains("agents.validate.agentgov.dev"),
        "an Agent in a selected namespace was not sent to the webhook: {denied:?}"
    );
    // The release namespace is always excluded, and unlabelled namespaces are not selected.
    for namespace in [names.namespace.as_str(), "default"] {
        let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let created = api
            .create(&PostParams::default(), &pod(true)?)
            .await
            .with_context(|| format!("an agent Pod in {namespace} was intercepted"))?;
        api.delete(&created.name_any(), &DeleteParams::default())
            .await?;
    }
    Ok(())
}

/// A child process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start the real operator and webhook with the Deployments' environment: the same variables,
/// the Secrets and ConfigMaps written where the Pods would mount them (under `dir`), listening
/// on loopback. Both must get ready; the webhook must complete an mTLS handshake as the
/// Service's host name with the chart's certificate.
async fn binaries_run_with_the_charts_settings(
    client: &Client,
    names: &Names,
    dir: &Path,
) -> Result<()> {
    let mut started = Vec::new();
    let webhook_https = free_port()?;
    for (component, name) in [("operator", &names.operator), ("webhook", &names.webhook)] {
        let deployment = Api::<Deployment>::namespaced(client.clone(), &names.namespace)
            .get(name)
            .await?;
        let root = dir.join(component);
        let spec = deployment.spec.template.spec.context("pod spec")?;
        for mount in spec.containers[0].volume_mounts.iter().flatten() {
            let volume = spec
                .volumes
                .iter()
                .flatten()
                .find(|v| v.name == mount.name)
                .context("volume")?;
            let files: BTreeMap<String, Vec<u8>> = if let Some(secret) = &volume.secret {
                let name = secret.secret_name.as_deref().unwrap_or_default();
                let s = Api::<Secret>::namespaced(client.clone(), &names.namespace)
                    .get(name)
                    .await?;
                s.data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect()
            } else if let Some(cm) = &volume.config_map {
                let c = Api::<ConfigMap>::namespaced(client.clone(), &names.namespace)
                    .get(&cm.name)
                    .await?;
                c.data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect()
            } else {
                bail!(
                    "{component}: volume {} is neither a Secret nor a ConfigMap",
                    mount.name
                );
            };
            let path = root.join(mount.mount_path.trim_start_matches('/'));
            std::fs::create_dir_all(&path)?;
            for (key, value) in files {
                std::fs::write(path.join(key), value)?;
            }
        }
        let mut command = Command::new(binary(&format!("agentgov-{component}"))?);
        let metrics = free_port()?;
        for var in spec.containers[0].env.iter().flatten() {
            let value = match (var.name.as_str(), &var.value) {
                ("POD_NAME", _) => format!("{name}-e2e"),
                ("POD_NAMESPACE", _) => names.namespace.clone(),
                ("AGENTGOV_METRICS_LISTEN" | "AGENTGOV_WEBHOOK_METRICS_LISTEN", _) => {
                    format!("127.0.0.1:{metrics}")
                }
                ("AGENTGOV_WEBHOOK_LISTEN", _) => format!("127.0.0.1:{webhook_https}"),
                (_, Some(v)) if v.starts_with('/') => root
                    .join(v.trim_start_matches('/'))
                    .to_string_lossy()
                    .into_owned(),
                (_, Some(v)) => v.clone(),
                (other, None) => {
                    bail!("{component}: env {other} has no value and is not from the downward API")
                }
            };
            command.env(&var.name, value);
        }
        let log = std::fs::File::create(dir.join(format!("{component}.log")))?;
        command
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null());
        started.push((component, metrics, Process(command.spawn()?)));
    }
    // Ready within 60 s; a binary that exits (a flag the chart sets that it does not know, a
    // file it cannot read) fails at once, with the end of its log.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for (component, metrics, child) in &mut started {
        let log = dir.join(format!("{component}.log"));
        while !ready(*metrics).await {
            if let Some(status) = child.0.try_wait()? {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(5).collect();
                bail!(
                    "the {component} exited ({status}) with the chart's settings:\n{}",
                    tail.join("\n")
                );
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "the {component} did not get ready with the chart's settings; see {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let host = names.service_host();
    let ca = dir.join("webhook/etc/agentgov/tls/ca.crt");
    run(
        Path::new("openssl"),
        &[
            "s_client",
            "-connect",
            &format!("127.0.0.1:{webhook_https}"),
            "-servername",
            &host,
            "-verify_hostname",
            &host,
            "-CAfile",
            &ca.to_string_lossy(),
            "-verify_return_error",
            "-cert",
            &env("AGENTGOV_WEBHOOK_CLIENT_CERT")?,
            "-key",
            &env("AGENTGOV_WEBHOOK_CLIENT_KEY")?,
            "-brief",
        ],
        Some(""),
    )
    .context("mTLS handshake with the webhook as the Service's host name")?;
    Ok(())
}

/// GET /readyz on a loopback port answers 200.
async fn ready(port: u16) -> bool {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if stream
        .write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.is_ok() && head.ends_with(b"200")
}
