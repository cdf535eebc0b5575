//! What the admission e2e tests share: a namespace with its own operator and webhook (both
//! scoped to it) and a registration that sends only its Pods and Agents to that webhook, plus
//! helpers that retry a dry run until the caches catch up and then do it for real. Test support:
//! these helpers panic with the diagnostics (logs) when an expectation fails.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use agentgov_api::agent::{GovernanceStatus, SandboxSpec};
use agentgov_api::{Agent, AgentSpec, PolicyBundleSpec};
use futures::future::BoxFuture;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Config};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::operator::{KeyFile, Operator, log_dir};
use crate::webhook::{
    ClusterCerts, Registration, Webhook, agent_pod, only_namespace, register, wait_enforced,
};
use crate::{TestNamespace, api_error_message, client, install_crds, manifest, wait_for};

/// How long the operator may take to write a status.
pub const WAIT: Duration = Duration::from_secs(60);
/// How long the webhook's caches (and the API server's registration) may take to catch up.
pub const SETTLE: Duration = Duration::from_secs(20);

pub const ALLOW: &str = "ADMISSION_ALLOW";
pub const PROOF_MISSING: &str = "ADMISSION_DENY_PROOF_MISSING";
pub const SPEC_HASH_MISMATCH: &str = "ADMISSION_DENY_SPEC_HASH_MISMATCH";
pub const POLICY_HASH_MISMATCH: &str = "ADMISSION_DENY_POLICY_HASH_MISMATCH";
pub const SIGNER_REVOKED: &str = "ADMISSION_DENY_SIGNER_REVOKED";
pub const SIGNATURE_INVALID: &str = "ADMISSION_DENY_SIGNATURE_INVALID";
pub const SANDBOX_EXPIRED: &str = "ADMISSION_DENY_SANDBOX_EXPIRED";
pub const CONTAINMENT_VIOLATION: &str = "ADMISSION_DENY_CONTAINMENT_VIOLATION";
pub const AGENT_NOT_FOUND: &str = "ADMISSION_DENY_AGENT_NOT_FOUND";
pub const UNAUTHORIZED: &str = "ADMISSION_DENY_UNAUTHORIZED";

pub struct Setup {
    pub client: Client,
    pub ns: TestNamespace,
    pub keys: KeyFile,
    pub operator: Operator,
    pub webhook: Webhook,
    /// Deleted when the setup is dropped.
    pub registration: Registration,
}

/// The kind of signing key a setup's ring holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Ed25519,
    /// HMAC-SHA256, the seed's scheme.
    Hmac,
}

/// A namespace, a key ring, the operator and the webhook (both scoped to the namespace), and a
/// registration that sends only this namespace's Pods and Agents to this webhook.
pub async fn setup(prefix: &str) -> Setup {
    setup_with(prefix, KeyKind::Ed25519, &[]).await
}

/// [`setup`] with this kind of key and these operator flags.
pub async fn setup_with(prefix: &str, key: KeyKind, operator_flags: &[&str]) -> Setup {
    setup_with_flags(prefix, key, operator_flags, &[]).await
}

/// [`setup_with`], with these webhook flags too.
pub async fn setup_with_flags(
    prefix: &str,
    key: KeyKind,
    operator_flags: &[&str],
    webhook_flags: &[&str],
) -> Setup {
    let client = client().await;
    install_crds(&client).await.expect("install the CRDs");
    let ns = TestNamespace::new(&client, prefix)
        .await
        .expect("create the test namespace");
    let dir = log_dir().join(format!("{}-keys", ns.name));
    let keys = match key {
        KeyKind::Ed25519 => KeyFile::new(&dir, "key-1"),
        KeyKind::Hmac => KeyFile::new_hmac(&dir, "key-1"),
    }
    .expect("write a key ring");
    let operator =
        Operator::start(&ns.name, &keys.path, "a", operator_flags).expect("start the operator");
    let webhook = Webhook::start(&ns.name, &keys, "a", webhook_flags)
        .await
        .expect("start the webhook");
    let ca = ClusterCerts::from_env()
        .and_then(|certs| certs.ca_bundle())
        .expect("the cluster CA");
    let registration = register(
        &client,
        &format!("agentgov-e2e-{}", ns.name),
        &webhook.url(),
        &ca,
        only_namespace(&ns.name),
    )
    .await
    .expect("register the webhook");
    wait_enforced(&client, &ns.name)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\nwebhook log:\n{}", webhook.log_tail(30)));
    Setup {
        client,
        ns,
        keys,
        operator,
        webhook,
        registration,
    }
}

impl Setup {
    /// Take the webhook's registration away (as a cluster admin could) and wait until the API
    /// server no longer calls it.
    pub async fn deregister(&mut self) {
        let name = self.registration.name.clone();
        let placeholder = Registration::none(&self.client);
        std::mem::replace(&mut self.registration, placeholder)
            .delete()
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let api: Api<Pod> = self.ns.api();
        let probe = agent_pod("e2e-deregistration-probe", "e2e-no-such-agent");
        crate::wait_for(SETTLE, || {
            let api = api.clone();
            let probe = probe.clone();
            async move {
                let dry_run = PostParams {
                    dry_run: true,
                    ..PostParams::default()
                };
                api.create(&dry_run, &probe).await.ok().map(|_| ())
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the API server still calls the webhook after deleting {name}"));
    }

    /// Register the webhook again and wait until the API server calls it.
    pub async fn reregister(&mut self) {
        let ca = ClusterCerts::from_env()
            .and_then(|certs| certs.ca_bundle())
            .expect("the cluster CA");
        self.registration = register(
            &self.client,
            &format!("agentgov-e2e-{}", self.ns.name),
            &self.webhook.url(),
            &ca,
            only_namespace(&self.ns.name),
        )
        .await
        .expect("register the webhook");
        wait_enforced(&self.client, &self.ns.name)
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}", self.diagnostics()));
    }

    pub fn diagnostics(&self) -> String {
        format!(
            "webhook log ({}):\n{}\noperator log ({}):\n{}",
            self.webhook.log.display(),
            self.webhook.log_tail(15),
            self.operator.log.display(),
            tail(&self.operator.logs(), 15)
        )
    }

    pub fn pods(&self) -> Api<Pod> {
        self.ns.api()
    }

    pub fn agents(&self) -> Api<Agent> {
        self.ns.api()
    }
}

/// The example governed agent with a monthly budget of `usd`.
pub fn costing(usd: f64) -> AgentSpec {
    let mut spec = governed_spec();
    if let Some(economics) = spec.anatomy.economics.as_mut() {
        economics.monthly_budget_usd = usd;
    }
    spec
}

/// The reasons of the Events about the agent `regarding` in the setup's namespace.
pub async fn event_reasons(setup: &Setup, regarding: &str) -> Vec<String> {
    setup
        .ns
        .events_about(regarding)
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .collect()
}

/// The outcome the operator wrote on the AgentPromotion `name`, if any.
pub async fn promotion_outcome(
    setup: &Setup,
    name: &str,
) -> Option<agentgov_api::promotion::PromotionOutcome> {
    setup
        .ns
        .api::<agentgov_api::AgentPromotion>()
        .get(name)
        .await
        .ok()?
        .status?
        .outcome
}

/// Wait until the AgentPromotion `name` has `outcome` (the operator writes an approval's status
/// after its agent's).
pub async fn wait_outcome(
    setup: &Setup,
    name: &str,
    outcome: agentgov_api::promotion::PromotionOutcome,
) {
    let reached = wait_for(WAIT, || async {
        (promotion_outcome(setup, name).await == Some(outcome)).then_some(())
    })
    .await;
    if reached.is_err() {
        let now = setup
            .ns
            .api::<agentgov_api::AgentPromotion>()
            .get(name)
            .await
            .ok();
        panic!(
            "AgentPromotion {name} never became {outcome:?}; it is {:#?}\n{}",
            now.and_then(|p| p.status),
            setup.diagnostics()
        );
    }
}

/// The setup's operator counted `metric` (a series with its labels) at least once and logged a
/// line with the decision code `code` naming `agent`.
pub async fn assert_reported(setup: &Setup, metric: &str, code: &str, agent: &str) {
    let metrics = setup.operator.metrics().await;
    assert!(
        crate::operator::metric_value(&metrics, metric).is_some_and(|v| v >= 1.0),
        "{metric} not counted:\n{metrics}"
    );
    let logs = setup.operator.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains(&format!("\"{code}\"")) && l.contains(&format!("\"{agent}\""))),
        "no {code} line for {agent}:\n{}",
        tail(&logs, 40)
    );
}

pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub fn governed_spec() -> AgentSpec {
    manifest::<Agent>("examples/agent-governed.yaml")
        .expect("examples/agent-governed.yaml")
        .spec
}

pub fn sandbox_spec(ttl_seconds: i64) -> AgentSpec {
    let mut spec = manifest::<Agent>("examples/agent-sandbox.yaml")
        .expect("examples/agent-sandbox.yaml")
        .spec;
    spec.sandbox = Some(SandboxSpec {
        ttl_seconds: Some(ttl_seconds),
        expires_at: None,
    });
    spec
}

pub fn dry_run() -> PostParams {
    PostParams {
        dry_run: true,
        ..PostParams::default()
    }
}

/// `api.create(pp, object)` as a repeatable attempt.
pub fn creating<K>(
    api: &Api<K>,
    object: &K,
) -> impl Fn(PostParams) -> BoxFuture<'static, kube::Result<K>>
where
    K: Clone + DeserializeOwned + Serialize + Debug + Send + Sync + 'static,
{
    let api = api.clone();
    let object = object.clone();
    move |pp| {
        let api = api.clone();
        let object = object.clone();
        Box::pin(async move { api.create(&pp, &object).await })
    }
}

/// A (dry-run or real) merge patch of `name` (of its `subresource`, with a strategic merge
/// patch, as `kubectl debug` adds ephemeral containers), as a repeatable attempt for
/// [`admitted`] and [`refused`].
pub fn patching<K>(
    api: &Api<K>,
    name: &str,
    subresource: Option<&'static str>,
    patch: serde_json::Value,
) -> impl Fn(PostParams) -> BoxFuture<'static, kube::Result<K>>
where
    K: Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (api, name) = (api.clone(), name.to_string());
    move |pp| {
        let (api, name, patch) = (api.clone(), name.clone(), patch.clone());
        Box::pin(async move {
            let params = PatchParams {
                dry_run: pp.dry_run,
                ..PatchParams::default()
            };
            match subresource {
                Some(sub) => {
                    api.patch_subresource(sub, &name, &params, &Patch::Strategic(patch))
                        .await
                }
                None => api.patch(&name, &params, &Patch::Merge(patch)).await,
            }
        })
    }
}

/// Dry-run `attempt` until the API server admits it (the webhook's caches catch up), then do it
/// for real; that must be admitted too.
pub async fn admitted<T, F, Fut>(setup: &Setup, what: &str, attempt: F) -> T
where
    F: Fn(PostParams) -> Fut,
    Fut: Future<Output = kube::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        match attempt(dry_run()).await {
            Ok(_) => break,
            Err(e) if tokio::time::Instant::now() >= deadline => panic!(
                "{what}: expected to be admitted, still refused after {SETTLE:?}: {}\n{}",
                api_error_message(&e),
                setup.diagnostics()
            ),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    attempt(PostParams::default()).await.unwrap_or_else(|e| {
        panic!(
            "{what}: admitted on a dry run, refused for real: {}\n{}",
            api_error_message(&e),
            setup.diagnostics()
        )
    })
}

/// Dry-run `attempt` until it is refused with `expected` in the API server's message, then do it
/// for real; that must be refused the same way. Returns the message.
pub async fn refused<T, F, Fut>(setup: &Setup, what: &str, expected: &str, attempt: F) -> String
where
    F: Fn(PostParams) -> Fut,
    Fut: Future<Output = kube::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let last = match attempt(dry_run()).await {
            Ok(_) => "admitted".to_string(),
            Err(e) => api_error_message(&e),
        };
        if last.contains(expected) {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "{what}: expected a refusal with {expected}, got after {SETTLE:?}: {last}\n{}",
                setup.diagnostics()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    match attempt(PostParams::default()).await {
        Ok(_) => panic!(
            "{what}: refused on a dry run, admitted for real\n{}",
            setup.diagnostics()
        ),
        Err(e) => {
            let message = api_error_message(&e);
            assert!(
                message.contains(expected),
                "{what}: expected {expected}, got: {message}"
            );
            message
        }
    }
}

/// A Pod of `agent` is admitted.
pub async fn pod_admitted(setup: &Setup, pod: &str, agent: &str) -> Pod {
    admitted(
        setup,
        &format!("pod {pod} of agent {agent}"),
        creating(&setup.pods(), &agent_pod(pod, agent)),
    )
    .await
}

/// A Pod of `agent` is denied by the pods webhook with `code`; returns the message.
pub async fn pod_denied(setup: &Setup, pod: &str, agent: &str, code: &str) -> String {
    let message = refused(
        setup,
        &format!("pod {pod} of agent {agent}"),
        code,
        creating(&setup.pods(), &agent_pod(pod, agent)),
    )
    .await;
    assert!(
        message.contains(r#"admission webhook "pods.validate.agentgov.dev" denied the request"#),
        "{message}"
    );
    message
}

/// Apply a bundle and wait until the operator has put it in force (status.activeHash).
pub async fn bundle_in_force(setup: &Setup, spec: &PolicyBundleSpec) {
    crate::apply_bundle_in_force(&setup.ns, spec.clone(), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", setup.diagnostics()));
}

/// Approve the agent `name` as it is now (as the cluster admin, who holds `promote`).
pub async fn approve(setup: &Setup, name: &str) -> agentgov_api::AgentPromotion {
    crate::approve(&setup.agents(), &setup.ns.api(), name)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", setup.diagnostics()))
}

/// Create a governed agent, approve it, and wait until it is GOVERNED_VALID.
pub async fn create_approved(setup: &Setup, name: &str, spec: AgentSpec) -> Agent {
    create_agent(setup, name, spec).await;
    approve(setup, name).await;
    wait_agent(setup, name, "GOVERNED_VALID", |a| {
        a.status.as_ref().and_then(|s| s.governance_status) == Some(GovernanceStatus::GovernedValid)
    })
    .await
}

/// Create an agent through the webhook (admitted, once its caches know the policy in force).
pub async fn create_agent(setup: &Setup, name: &str, spec: AgentSpec) -> Agent {
    admitted(
        setup,
        &format!("agent {name}"),
        creating(&setup.agents(), &Agent::new(name, spec)),
    )
    .await
}

/// Wait until the agent's status satisfies `check`; on timeout, fail with the status and logs.
pub async fn wait_agent(
    setup: &Setup,
    name: &str,
    what: &str,
    check: impl Fn(&Agent) -> bool,
) -> Agent {
    crate::wait_agent(&setup.agents(), name, what, WAIT, check)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", setup.diagnostics()))
}

pub fn governance(agent: &Agent) -> Option<GovernanceStatus> {
    agent.status.as_ref().and_then(|s| s.governance_status)
}

pub fn signed_by(agent: &Agent, key: &str) -> bool {
    governance(agent).is_some_and(GovernanceStatus::is_governed_in_force)
        && agent
            .status
            .as_ref()
            .and_then(|s| s.proof.as_ref())
            .is_some_and(|p| p.key_id == key)
}

/// The webhook's JSON decision lines for `agent` with `code`.
pub fn decision_logged(webhook: &Webhook, agent: &str, code: &str) -> bool {
    webhook.logs().lines().any(|line| {
        line.contains("admission decision")
            && line.contains(&format!("\"{code}\""))
            && line.contains(&format!("\"{agent}\""))
    })
}

/// A client that impersonates `user` (the admin of the test cluster may).
pub async fn client_as(user: &str) -> Client {
    let mut config = Config::infer().await.expect("read KUBECONFIG");
    config.auth_info.impersonate = Some(user.to_string());
    Client::try_from(config).expect("an impersonating client")
}

/// Wait until RBAC allows `user` to `verb` agents in the namespace (role bindings take a moment).
pub async fn wait_rbac(setup: &Setup, user: &str, verb: &str) {
    wait_access(setup, user, "agentgov.dev", "agents", "", verb).await;
}

/// Wait until RBAC allows `user` to `verb` `resource` (`/subresource`) of `group` in the
/// namespace.
pub async fn wait_access(
    setup: &Setup,
    user: &str,
    group: &str,
    resource: &str,
    subresource: &str,
    verb: &str,
) {
    let api: Api<SubjectAccessReview> = Api::all(setup.client.clone());
    let review: SubjectAccessReview = serde_json::from_value(json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "groups": ["system:authenticated"],
            "resourceAttributes": {
                "namespace": setup.ns.name,
                "verb": verb,
                "group": group,
                "resource": resource,
                "subresource": subresource,
            },
        },
    }))
    .expect("a SubjectAccessReview");
    wait_for(WAIT, || {
        let api = api.clone();
        let review = review.clone();
        async move {
            let answer = api.create(&PostParams::default(), &review).await.ok()?;
            answer.status?.allowed.then_some(())
        }
    })
    .await
    .unwrap_or_else(|_| panic!("RBAC never allowed {user} to {verb} {resource}/{subresource}"));
}

/// Give `user` the everyday rights on agents and approvals, and `promote` if `promoter`.
pub async fn person(setup: &Setup, user: &str, promoter: bool) {
    let mut verbs = vec!["get", "list", "watch", "create", "update", "patch"];
    if promoter {
        verbs.push("promote");
    }
    grant(
        setup,
        &format!("{user}-role"),
        user,
        json!([
            {"apiGroups": ["agentgov.dev"], "resources": ["agents"], "verbs": verbs},
            {"apiGroups": ["agentgov.dev"], "resources": ["agentpromotions"],
             "verbs": ["get", "list", "watch", "create"]},
        ]),
    )
    .await;
    wait_rbac(setup, user, if promoter { "promote" } else { "create" }).await;
}

/// Give `user` a Role named `role` in the test namespace with `rules` (RBAC PolicyRules as
/// JSON), bound to them.
pub async fn grant(setup: &Setup, role: &str, user: &str, rules: serde_json::Value) {
    let role_object: Role = serde_json::from_value(json!({
        "metadata": {"name": role},
        "rules": rules,
    }))
    .expect("a Role");
    setup
        .ns
        .api::<Role>()
        .create(&PostParams::default(), &role_object)
        .await
        .unwrap_or_else(|e| panic!("create Role {role}: {e}"));
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("{role}-{user}")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }))
    .expect("a RoleBinding");
    setup
        .ns
        .api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .unwrap_or_else(|e| panic!("bind Role {role} to {user}: {e}"));
}
