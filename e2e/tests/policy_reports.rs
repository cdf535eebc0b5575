//! PolicyReports on a real control plane: the upstream PolicyReport CRD (policyreports.wgpolicyk8s.io,
//! fetched from its Go module by `e2e/controlplane/policyreport-crd.sh`) is installed, so the
//! API server validates the operator's writes against the upstream schema (the operator applies
//! with `fieldValidation=Strict`: a field the schema lacks is an error, not pruned), and the
//! operator runs with `--policy-reports`. Before the CRD is installed, the operator judges as
//! ever and logs once that it writes no report.

// Test code: a panic with the value is the failure report, in helpers as in #[test]s.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use agentgov_api::agent::GovernanceStatus;
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::{Agent, AgentSpec};
use agentgov_e2e::admission::{governance, governed_spec, sandbox_spec};
use agentgov_e2e::operator::{KeyFile, Operator};
use agentgov_e2e::{TestNamespace, client, install_crds, wait_for};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const CRD_SCRIPT: &str = "e2e/controlplane/policyreport-crd.sh";
const CRD_NAME: &str = "policyreports.wgpolicyk8s.io";
/// What the operator logs (once) while the CRD is not installed.
const MISSING_CRD: &str = "PolicyReport CRD (policyreports.wgpolicyk8s.io) is not installed";

fn reports(ns: &TestNamespace) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("wgpolicyk8s.io", "v1alpha2", "PolicyReport"),
        "policyreports",
    );
    Api::namespaced_with(ns.api::<Agent>().into_client(), &ns.name, &resource)
}

async fn create_agent(ns: &TestNamespace, name: &str, spec: AgentSpec) {
    ns.api::<Agent>()
        .create(&PostParams::default(), &Agent::new(name, spec))
        .await
        .unwrap();
}

async fn wait_agent(ns: &TestNamespace, operator: &Operator, name: &str, want: GovernanceStatus) {
    agentgov_e2e::wait_agent(&ns.api(), name, want.as_str(), WAIT, |a| {
        governance(a) == Some(want)
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\noperator log:\n{}", operator.logs()));
}

/// The report once `check` holds of it (as JSON); on timeout, fail with the last one seen.
async fn wait_report(
    ns: &TestNamespace,
    operator: &Operator,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let api = reports(ns);
    let last = std::sync::Mutex::new(Value::Null);
    let found = wait_for(WAIT, || async {
        let report = serde_json::to_value(api.get("agentgov").await.ok()?).ok()?;
        *last.lock().unwrap() = report.clone();
        check(&report).then_some(report)
    })
    .await;
    found.unwrap_or_else(|_| {
        panic!(
            "the PolicyReport never showed {what}; last:\n{:#}\noperator log:\n{}",
            last.lock().unwrap(),
            operator.logs()
        )
    })
}

/// (agent, result, rule) of each result, in the report's order (by agent name).
fn rows(report: &Value) -> Vec<(String, String, String)> {
    report["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["resources"][0]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                r["result"].as_str().unwrap_or_default().to_string(),
                r["rule"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn row(agent: &str, result: &str, rule: &str) -> (String, String, String) {
    (agent.into(), result.into(), rule.into())
}

#[tokio::test]
async fn policy_reports_reflect_each_agents_result_and_are_schema_valid_against_the_upstream_crd() {
    let client = client().await;
    install_crds(&client).await.unwrap();
    // The operator starts without the PolicyReport CRD (no other test uses it, and test
    // binaries run one after another): it judges as ever and says so once.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let _ = crds.delete(CRD_NAME, &DeleteParams::default()).await;
    wait_for(WAIT, || async {
        matches!(crds.get(CRD_NAME).await, Err(kube::Error::Api(e)) if e.code == 404).then_some(())
    })
    .await
    .expect("the PolicyReport CRD deleted");
    let ns = TestNamespace::new(&client, "policy-reports").await.unwrap();
    let dir = agentgov_e2e::operator::log_dir().join(format!("{}-keys", ns.name));
    let keys = KeyFile::new(&dir, "key-1").unwrap();
    let operator = Operator::start(&ns.name, &keys.path, "a", &["--policy-reports"]).unwrap();
    agentgov_e2e::apply_bundle_in_force(&ns, default_bundle_spec(), WAIT)
        .await
        .unwrap();

    // valid: passes; restricted: no budget declared (a warning); lab: a sandbox; invalid:
    // promoted, then its budget raised above the org limit (the policy's `budget` rule).
    let mut frugal = governed_spec();
    frugal.anatomy.economics = None;
    for (name, spec) in [
        ("valid", governed_spec()),
        ("restricted", frugal),
        ("invalid", governed_spec()),
    ] {
        create_agent(&ns, name, spec).await;
        agentgov_e2e::approve(&ns.api(), &ns.api(), name)
            .await
            .unwrap();
    }
    create_agent(&ns, "lab", sandbox_spec(3600)).await;
    wait_agent(&ns, &operator, "valid", GovernanceStatus::GovernedValid).await;
    wait_agent(
        &ns,
        &operator,
        "restricted",
        GovernanceStatus::GovernedRestricted,
    )
    .await;
    wait_agent(&ns, &operator, "invalid", GovernanceStatus::GovernedValid).await;
    wait_agent(&ns, &operator, "lab", GovernanceStatus::Sandbox).await;
    wait_for(WAIT, || async {
        operator.logs().contains(MISSING_CRD).then_some(())
    })
    .await
    .unwrap_or_else(|_| panic!("never logged {MISSING_CRD:?}:\n{}", operator.logs()));
    assert_eq!(
        operator.logs().matches(MISSING_CRD).count(),
        1,
        "logged once:\n{}",
        operator.logs()
    );

    // With the upstream CRD installed, the API server validates every write of the operator
    // against its schema; the next change in the namespace writes the report.
    agentgov_e2e::upstream::install_crd(&client, CRD_SCRIPT, CRD_NAME)
        .await
        .unwrap();
    let agents: Api<Agent> = ns.api();
    let approved = agents.get("invalid").await.unwrap().spec;
    let mut costly = approved.clone();
    if let Some(economics) = costly.anatomy.economics.as_mut() {
        economics.monthly_budget_usd = 5_000.0;
    }
    agents
        .patch(
            "invalid",
            &PatchParams::apply("agentgov-e2e").force(),
            &Patch::Apply(json!({
                "apiVersion": "agentgov.dev/v1alpha1", "kind": "Agent", "spec": costly,
            })),
        )
        .await
        .unwrap();
    wait_agent(
        &ns,
        &operator,
        "invalid",
        GovernanceStatus::GovernedInvalidated,
    )
    .await;

    let report = wait_report(&ns, &operator, "pass 1, warn 1, fail 1, skip 1", |r| {
        r["summary"] == json!({"pass": 1, "warn": 1, "fail": 1, "error": 0, "skip": 1})
    })
    .await;
    assert_eq!(
        rows(&report),
        vec![
            row("invalid", "fail", "budget"),
            row("lab", "skip", "promotion"),
            row("restricted", "warn", "promotion"),
            row("valid", "pass", "promotion"),
        ],
        "{report:#}"
    );
    assert_eq!(
        report["metadata"]["labels"]["app.kubernetes.io/managed-by"], "agentgov",
        "{report:#}"
    );
    let valid_uid = agents.get("valid").await.unwrap().metadata.uid.unwrap();
    let results = report["results"].as_array().unwrap();
    for r in results {
        // Every field the operator writes is in the upstream schema (the API server keeps
        // only those), and the result enums are the upstream's.
        assert_eq!(r["source"], "agentgov", "{r:#}");
        // The bundle judged against and its version; a sandbox never judged: the bundle's name.
        let policy = if r["result"] == "skip" {
            "default"
        } else {
            "default/1.0.0"
        };
        assert_eq!(r["policy"], policy, "{r:#}");
        assert_eq!(r["category"], "agentgov", "{r:#}");
        assert_eq!(r["scored"], true, "{r:#}");
        assert!(r["timestamp"]["seconds"].as_i64().unwrap() > 0, "{r:#}");
        assert!(r["timestamp"].get("nanos").is_some(), "{r:#}");
        assert!(r["properties"]["governanceStatus"].is_string(), "{r:#}");
        let resource = &r["resources"][0];
        assert_eq!(resource["apiVersion"], "agentgov.dev/v1alpha1", "{r:#}");
        assert_eq!(resource["kind"], "Agent", "{r:#}");
        assert_eq!(resource["namespace"], ns.name.as_str(), "{r:#}");
        assert!(
            resource["uid"].as_str().is_some_and(|u| !u.is_empty()),
            "{r:#}"
        );
    }
    assert_eq!(results[3]["resources"][0]["uid"], valid_uid.as_str());
    assert!(
        results[0]["message"].as_str().unwrap().contains("5000"),
        "the deny's sentence: {:#}",
        results[0]
    );
    assert_eq!(results[0]["severity"], "high");
    assert!(
        results[2]["message"]
            .as_str()
            .unwrap()
            .contains("no monthly budget is declared"),
        "the warning: {:#}",
        results[2]
    );

    // One agent's result changes (its approved spec back): the report follows.
    agents
        .patch(
            "invalid",
            &PatchParams::apply("agentgov-e2e").force(),
            &Patch::Apply(json!({
                "apiVersion": "agentgov.dev/v1alpha1", "kind": "Agent", "spec": approved,
            })),
        )
        .await
        .unwrap();
    wait_agent(&ns, &operator, "invalid", GovernanceStatus::GovernedValid).await;
    let report = wait_report(&ns, &operator, "pass 2, warn 1, fail 0, skip 1", |r| {
        r["summary"] == json!({"pass": 2, "warn": 1, "fail": 0, "error": 0, "skip": 1})
    })
    .await;
    assert_eq!(
        rows(&report),
        vec![
            row("invalid", "pass", "promotion"),
            row("lab", "skip", "promotion"),
            row("restricted", "warn", "promotion"),
            row("valid", "pass", "promotion"),
        ],
        "{report:#}"
    );
    // Written on change only: the operator applies with its field manager, and no write failed.
    assert!(
        !operator.logs().contains("policy report write failed"),
        "{}",
        operator.logs()
    );
}
