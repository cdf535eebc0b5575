//! Break-glass on the real control plane: an operator that watches a ValidatingWebhookConfiguration
//! (`--webhook-configuration`) reports its deletion on every agent (the condition
//! `AdmissionGuarded=False`, reason `WebhookConfigurationMissing`, a Warning Event `BreakGlass`),
//! in its metric `agentgov_webhook_configuration_missing` and its log (BREAK_GLASS), changes
//! nothing else about the agents, and clears the condition when the configuration is back.
//!
//! The test has its own operator, scoped to its own namespace, watching a configuration of its
//! own: a harmless one (it matches only a resource of a group nobody serves, in namespaces
//! nobody labels, and is ignored on failure), deleted when the test ends however it ends.

// Test code: a panic with the value is the failure report, in helpers as in #[test]s.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use agentgov_api::Agent;
use agentgov_api::agent::GovernanceStatus;
use agentgov_api::conditions::find;
use agentgov_api::policy::default_bundle_spec;
use agentgov_e2e::admission::{governance, governed_spec, sandbox_spec, tail};
use agentgov_e2e::operator::{KeyFile, Operator, log_dir, metric_value};
use agentgov_e2e::{TestNamespace, client, install_crds, wait_for};
use futures::FutureExt;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};

const WAIT: Duration = Duration::from_secs(60);
const CONDITION: &str = "AdmissionGuarded";
const REASON: &str = "WebhookConfigurationMissing";
const METRIC: &str = "agentgov_webhook_configuration_missing";
const SANDBOX: &str = "scratch";
const GOVERNED: &str = "auditor";

/// A ValidatingWebhookConfiguration that never applies to anything: its only rule is for a
/// resource of a group no API server serves, in namespaces (and of objects) labelled with a
/// label nobody sets, ignored on failure; the URL is a closed loopback port.
fn inert_configuration(name: &str) -> ValidatingWebhookConfiguration {
    let never = serde_json::json!({"matchLabels": {"agentgov.dev/e2e-break-glass-never": name}});
    serde_json::from_value(serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {"agentgov.dev/e2e": "true"}},
        "webhooks": [{
            "name": "break-glass.e2e.agentgov.dev",
            "clientConfig": {"url": "https://127.0.0.1:1/none"},
            "rules": [{
                "apiGroups": ["e2e-break-glass.agentgov.invalid"],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": ["nothings"],
                "scope": "*"
            }],
            "namespaceSelector": never,
            "objectSelector": never,
            "failurePolicy": "Ignore",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 1
        }]
    }))
    .unwrap()
}

async fn create_configuration(client: &Client, name: &str) {
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &inert_configuration(name))
        .await
        .unwrap_or_else(|e| panic!("create ValidatingWebhookConfiguration {name}: {e}"));
}

/// Delete it; true if it was there.
async fn delete_configuration(client: &Client, name: &str) -> bool {
    match Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await
    {
        Ok(_) => true,
        Err(kube::Error::Api(status)) if status.code == 404 => false,
        Err(e) => panic!("delete ValidatingWebhookConfiguration {name}: {e}"),
    }
}

/// The agent's AdmissionGuarded condition as (status, reason), if it has one.
fn guarded(agent: &Agent) -> Option<(String, String)> {
    let status = agent.status.as_ref()?;
    find(&status.conditions, CONDITION).map(|c| (c.status.clone(), c.reason.clone()))
}

fn unguarded(agent: &Agent) -> bool {
    guarded(agent) == Some(("False".into(), REASON.into()))
}

struct Test {
    client: Client,
    ns: TestNamespace,
    operator: Operator,
    configuration: String,
}

impl Test {
    fn agents(&self) -> Api<Agent> {
        self.ns.api()
    }

    async fn wait_agent(&self, name: &str, what: &str, check: impl Fn(&Agent) -> bool) -> Agent {
        agentgov_e2e::wait_agent(&self.agents(), name, what, WAIT, check)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{e:#}\noperator log ({}):\n{}",
                    self.operator.log.display(),
                    tail(&self.operator.logs(), 30)
                )
            })
    }

    async fn metric(&self) -> Option<f64> {
        metric_value(&self.operator.metrics().await, METRIC)
    }

    async fn wait_metric(&self, value: f64) {
        let seen = wait_for(WAIT, || async {
            (self.metric().await == Some(value)).then_some(())
        })
        .await;
        if seen.is_err() {
            panic!(
                "{METRIC} never became {value}; /metrics:\n{}\noperator log:\n{}",
                self.operator.metrics().await,
                tail(&self.operator.logs(), 30)
            );
        }
    }

    /// The (type, reason) of the Events about the object named `regarding`.
    async fn events(&self, regarding: &str) -> Vec<(String, String)> {
        self.ns
            .events_about(regarding)
            .await
            .into_iter()
            .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default()))
            .collect()
    }

    async fn break_glass_events(&self, regarding: &str) -> usize {
        self.events(regarding)
            .await
            .iter()
            .filter(|(_, reason)| reason == "BreakGlass")
            .count()
    }

    async fn wait_break_glass_event(&self, regarding: &str) {
        let seen = wait_for(WAIT, || async {
            self.events(regarding)
                .await
                .iter()
                .any(|(type_, reason)| type_ == "Warning" && reason == "BreakGlass")
                .then_some(())
        })
        .await;
        if seen.is_err() {
            panic!(
                "no Warning BreakGlass Event about {regarding}; its Events: {:?}\noperator log:\n{}",
                self.events(regarding).await,
                tail(&self.operator.logs(), 30)
            );
        }
    }

    async fn run(&self) {
        // The watch is up and the configuration in place: the metric says 0.
        self.wait_metric(0.0).await;
        let agents = self.agents();
        agents
            .create(
                &PostParams::default(),
                &Agent::new(SANDBOX, sandbox_spec(3600)),
            )
            .await
            .unwrap();
        agents
            .create(
                &PostParams::default(),
                &Agent::new(GOVERNED, governed_spec()),
            )
            .await
            .unwrap();
        agentgov_e2e::approve(&agents, &self.ns.api(), GOVERNED)
            .await
            .unwrap();
        let sandbox = self
            .wait_agent(SANDBOX, "SANDBOX", |a| {
                governance(a) == Some(GovernanceStatus::Sandbox)
            })
            .await;
        let governed = self
            .wait_agent(GOVERNED, "GOVERNED_VALID", |a| {
                governance(a) == Some(GovernanceStatus::GovernedValid)
            })
            .await;
        for agent in [&sandbox, &governed] {
            assert_eq!(
                guarded(agent),
                None,
                "no {CONDITION} condition while the configuration is in place: {:#?}",
                agent.status
            );
        }
        for name in [SANDBOX, GOVERNED] {
            assert_eq!(self.break_glass_events(name).await, 0, "{name}");
        }
        assert!(!self.operator.logs().contains("BREAK_GLASS"));

        // Break-glass: the configuration is deleted.
        assert!(delete_configuration(&self.client, &self.configuration).await);
        let what = format!("{CONDITION}=False ({REASON})");
        let sandbox = self.wait_agent(SANDBOX, &what, unguarded).await;
        let governed = self.wait_agent(GOVERNED, &what, unguarded).await;
        assert_eq!(governance(&sandbox), Some(GovernanceStatus::Sandbox));
        assert_eq!(
            governance(&governed),
            Some(GovernanceStatus::GovernedValid),
            "break-glass changes nothing else about a governed agent: {:#?}",
            governed.status
        );
        let message = find(&governed.status.as_ref().unwrap().conditions, CONDITION)
            .unwrap()
            .message
            .clone();
        assert!(
            message.contains(&self.configuration),
            "the condition names the configuration: {message}"
        );
        for name in [SANDBOX, GOVERNED] {
            self.wait_break_glass_event(name).await;
        }
        self.wait_metric(1.0).await;
        let logs = self.operator.logs();
        assert!(
            logs.lines()
                .any(|l| l.contains("BREAK_GLASS") && l.contains(&self.configuration)),
            "no BREAK_GLASS log line naming {}:\n{}",
            self.configuration,
            tail(&logs, 30)
        );

        // Restored: the condition goes from every agent, the metric says 0.
        create_configuration(&self.client, &self.configuration).await;
        let what = format!("without {CONDITION}");
        let sandbox = self
            .wait_agent(SANDBOX, &what, |a| guarded(a).is_none())
            .await;
        let governed = self
            .wait_agent(GOVERNED, &what, |a| guarded(a).is_none())
            .await;
        assert_eq!(governance(&sandbox), Some(GovernanceStatus::Sandbox));
        assert_eq!(
            governance(&governed),
            Some(GovernanceStatus::GovernedValid),
            "{:#?}",
            governed.status
        );
        self.wait_metric(0.0).await;
    }
}

#[tokio::test]
async fn deleting_the_webhook_configuration_is_reported_on_every_agent_and_cleared_when_restored() {
    let client = client().await;
    install_crds(&client).await.unwrap();
    let ns = TestNamespace::new(&client, "bg").await.unwrap();
    let configuration = format!("agentgov-break-glass-{}", ns.name);
    // In place before the operator starts: it never sees it missing until the test deletes it.
    create_configuration(&client, &configuration).await;
    let test = async {
        let keys = KeyFile::new(&log_dir().join(format!("{}-keys", ns.name)), "key-1").unwrap();
        let operator = Operator::start(
            &ns.name,
            &keys.path,
            "bg",
            &["--webhook-configuration", &configuration],
        )
        .unwrap();
        agentgov_e2e::apply_bundle_in_force(&ns, default_bundle_spec(), WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e:#}\noperator log:\n{}", tail(&operator.logs(), 30)));
        let test = Test {
            client: client.clone(),
            ns,
            operator,
            configuration: configuration.clone(),
        };
        test.run().await;
        drop(keys);
    };
    // Whatever happens, the configuration does not outlive the test.
    let outcome = std::panic::AssertUnwindSafe(test).catch_unwind().await;
    delete_configuration(&client, &configuration).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
