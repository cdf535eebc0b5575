//! One operator in a fresh namespace with a bundle in force, and what the tests of what it keeps
//! for agents (containment, managed workloads) ask of it: agents created and waited for, the
//! Events about them, its metrics.

// Test code: a panic with the value is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use agentgov_api::agent::GovernanceStatus;
use agentgov_api::conditions::{EXPIRED, is_true};
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::policy_bundle::RuntimeData;
use agentgov_api::{Agent, AgentSpec, PolicyBundleSpec};
use kube::api::{Api, PostParams};

use crate::admission::governance;
use crate::operator::{KeyFile, Operator, metric_value};
use crate::{TestNamespace, client, install_crds, wait_for};

pub const WAIT: Duration = Duration::from_secs(60);

pub struct Setup {
    pub ns: TestNamespace,
    _keys: KeyFile,
    pub operator: Operator,
}

/// An operator started with `flags` in a new namespace named from `prefix`, with a bundle
/// (version 1.0.0, budget 1000) whose `data.runtime` is `runtime` in force.
pub async fn setup(prefix: &str, flags: &[&str], runtime: RuntimeData) -> Setup {
    let client = client().await;
    install_crds(&client).await.unwrap();
    let ns = TestNamespace::new(&client, prefix).await.unwrap();
    let dir = crate::operator::log_dir().join(format!("{}-keys", ns.name));
    let keys = KeyFile::new(&dir, "key-1").unwrap();
    let operator = Operator::start(&ns.name, &keys.path, "c", flags).unwrap();
    crate::apply_bundle_in_force(&ns, bundle("1.0.0", 1000.0, runtime), WAIT)
        .await
        .unwrap();
    Setup {
        ns,
        _keys: keys,
        operator,
    }
}

/// The default bundle with another version, org budget and `data.runtime`.
pub fn bundle(version: &str, max_budget: f64, runtime: RuntimeData) -> PolicyBundleSpec {
    let mut spec = default_bundle_spec();
    spec.version = version.into();
    spec.data.max_monthly_budget_usd = max_budget;
    spec.data.runtime = Some(runtime);
    spec
}

impl Setup {
    pub async fn create_agent(&self, name: &str, spec: AgentSpec) {
        self.ns
            .api::<Agent>()
            .create(&PostParams::default(), &Agent::new(name, spec))
            .await
            .unwrap();
    }

    /// Wait for the agent to satisfy `check`; the operator's log on timeout.
    pub async fn wait_agent(&self, name: &str, what: &str, check: impl Fn(&Agent) -> bool) {
        crate::wait_agent(&self.ns.api(), name, what, WAIT, check)
            .await
            .unwrap_or_else(|e| panic!("{e:#}\noperator log:\n{}", self.operator.logs()));
    }

    /// The reasons of the Events about the object named `regarding`.
    pub async fn reasons(&self, regarding: &str) -> Vec<String> {
        self.ns
            .events_about(regarding)
            .await
            .into_iter()
            .filter_map(|e| e.reason)
            .collect()
    }

    pub async fn wait_event(&self, regarding: &str, reason: &str) {
        wait_for(WAIT, || async {
            self.reasons(regarding)
                .await
                .iter()
                .any(|r| r == reason)
                .then_some(())
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no {reason} event for {regarding}:\n{}",
                self.operator.logs()
            )
        });
    }

    /// How many Agent reconciles have finished.
    pub async fn reconciles(&self) -> f64 {
        metric_value(
            &self.operator.metrics().await,
            "agentgov_reconcile_duration_seconds_count{controller=\"agent\"}",
        )
        .unwrap_or(0.0)
    }

    /// Make the operator look at the agent again with nothing changed (an annotation), and
    /// wait until it has.
    pub async fn poke(&self, agent: &str) {
        let before = self.reconciles().await;
        self.ns
            .api::<Agent>()
            .patch(
                agent,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(serde_json::json!({
                    "metadata": {"annotations": {"poke": before.to_string()}}
                })),
            )
            .await
            .unwrap();
        wait_for(WAIT, || async {
            (self.reconciles().await > before).then_some(())
        })
        .await
        .unwrap();
    }
}

impl Setup {
    /// Wait until the namespaced object `name` satisfies `check` (`None`: it does not exist);
    /// its last state and the operator's log on timeout.
    pub async fn wait_object<K>(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(Option<&K>) -> bool,
    ) -> Option<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = self.ns.api();
        let check = &check;
        let found = wait_for(WAIT, || {
            let api = api.clone();
            async move {
                let object = api.get_opt(name).await.ok()?;
                check(object.as_ref()).then_some(object)
            }
        })
        .await;
        match found {
            Ok(object) => object,
            Err(_) => panic!(
                "{name} never became {what}: {:?}\noperator log:\n{}",
                api.get_opt(name).await,
                self.operator.logs()
            ),
        }
    }

    /// Approve the agent (an AgentPromotion of its current spec) and wait until it is
    /// GOVERNED_VALID.
    pub async fn approve_valid(&self, agent: &str) {
        crate::approve(&self.ns.api(), &self.ns.api(), agent)
            .await
            .unwrap();
        self.wait_agent(agent, "GOVERNED_VALID", is(GovernanceStatus::GovernedValid))
            .await;
    }

    /// Put [`bundle`]`(version, max_budget, runtime)` in force, and wait until the agent's
    /// governance status is `then`.
    pub async fn bundle_then(
        &self,
        (version, max_budget, runtime): (&str, f64, RuntimeData),
        agent: &str,
        then: GovernanceStatus,
    ) {
        crate::apply_bundle_in_force(&self.ns, bundle(version, max_budget, runtime), WAIT)
            .await
            .unwrap();
        self.wait_agent(agent, then.as_str(), is(then)).await;
    }
}

/// The agent's governance status is `status`.
pub fn is(status: GovernanceStatus) -> impl Fn(&Agent) -> bool {
    move |a| governance(a) == Some(status)
}

/// The operator has marked the sandbox expired (its `Expired` condition).
pub fn expired(agent: &Agent) -> bool {
    agent
        .status
        .as_ref()
        .is_some_and(|s| is_true(&s.conditions, EXPIRED))
}
