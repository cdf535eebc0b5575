//! The API on a real kube-apiserver: CRDs install and become Established, examples are accepted,
//! bad manifests are rejected with the API server's own message, status is written through the
//! status subresource.

// Test code: a panic with the value is the failure report, in helpers as in #[test]s.
#![allow(clippy::unwrap_used)]

use agentgov_api::agent::GovernanceStatus;
use agentgov_api::{Agent, PolicyBundle};
use agentgov_e2e::{TestNamespace, api_error_message, client, install_crds, manifest};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn crds_install_and_examples_are_accepted() {
    let client = client().await;
    install_crds(&client)
        .await
        .expect("CRDs install and become Established");
    let ns = TestNamespace::new(&client, "api-examples").await.unwrap();
    let agents: Api<Agent> = ns.api();
    let bundles: Api<PolicyBundle> = ns.api();
    for path in [
        "examples/agent-sandbox.yaml",
        "examples/agent-governed.yaml",
        "examples/agent-managed.yaml",
    ] {
        let agent: Agent = manifest(path).unwrap();
        let created = agents
            .create(&PostParams::default(), &agent)
            .await
            .unwrap_or_else(|e| panic!("{path} rejected: {e}"));
        assert_eq!(created.spec, agent.spec, "{path} round-trips unchanged");
    }
    let bundle: PolicyBundle = manifest("examples/policybundle-default.yaml").unwrap();
    let created = bundles
        .create(&PostParams::default(), &bundle)
        .await
        .unwrap();
    assert_eq!(created.spec, bundle.spec);
}

async fn rejection(agents: &Api<Agent>, name: &str, spec: serde_json::Value) -> String {
    let object = json!({
        "apiVersion": "agentgov.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": name},
        "spec": spec,
    });
    let agent: Result<Agent, _> = serde_json::from_value(object.clone());
    // Some broken manifests cannot even be typed; send those as raw JSON.
    let dynamic_api: Api<kube::core::DynamicObject> = Api::namespaced_with(
        agents.clone().into_client(),
        agents.namespace().unwrap_or("default"),
        &kube::core::ApiResource::erase::<Agent>(&()),
    );
    let result = match agent {
        Ok(agent) => agents
            .create(&PostParams::default(), &agent)
            .await
            .map(|_| ()),
        Err(_) => dynamic_api
            .create(
                &PostParams::default(),
                &serde_json::from_value(object).unwrap(),
            )
            .await
            .map(|_| ()),
    };
    let error = result.expect_err("the API server must reject this manifest");
    api_error_message(&error)
}

fn valid_spec() -> serde_json::Value {
    json!({
        "version": "1.0.0",
        "roleClass": "analysis",
        "anatomy": {"reasoning": {"model": "m", "temperature": 0.5}}
    })
}

#[tokio::test]
async fn schema_violations_are_rejected_with_the_api_servers_message() {
    let client = client().await;
    install_crds(&client).await.unwrap();
    let ns = TestNamespace::new(&client, "api-schema").await.unwrap();
    let agents: Api<Agent> = ns.api();

    let mut hot = valid_spec();
    hot["anatomy"]["reasoning"]["temperature"] = json!(2.5);
    let message = rejection(&agents, "too-hot", hot).await;
    assert!(
        message.contains("temperature must be between 0 and 2"),
        "{message}"
    );

    let mut wizard = valid_spec();
    wizard["roleClass"] = json!("wizard");
    let message = rejection(&agents, "wizard", wizard).await;
    assert!(
        message.contains("spec.roleClass") && message.contains("Unsupported value"),
        "{message}"
    );

    let mut unversioned = valid_spec();
    unversioned.as_object_mut().unwrap().remove("version");
    let message = rejection(&agents, "unversioned", unversioned).await;
    assert!(
        message.contains("spec.version") && message.contains("Required"),
        "{message}"
    );

    let mut both = valid_spec();
    both["sandbox"] = json!({"ttlSeconds": 60, "expiresAt": "2030-01-01T00:00:00Z"});
    let message = rejection(&agents, "both-expiries", both).await;
    assert!(message.contains("not both"), "{message}");

    let mut budget = valid_spec();
    budget["anatomy"]["economics"] = json!({"monthlyBudgetUsd": -1});
    let message = rejection(&agents, "negative-budget", budget).await;
    assert!(message.contains("must not be negative"), "{message}");
}

#[tokio::test]
async fn status_is_written_through_the_status_subresource() {
    let client = client().await;
    install_crds(&client).await.unwrap();
    let ns = TestNamespace::new(&client, "api-status").await.unwrap();
    let agents: Api<Agent> = ns.api();
    let agent: Agent = manifest("examples/agent-sandbox.yaml").unwrap();
    agents.create(&PostParams::default(), &agent).await.unwrap();

    // A status in the main resource is ignored: status belongs to the subresource.
    let ignored = json!({"status": {"governanceStatus": "GOVERNED_VALID"}});
    let after = agents
        .patch(
            "research-scratchpad",
            &PatchParams::default(),
            &Patch::Merge(&ignored),
        )
        .await
        .unwrap();
    assert!(
        after.status.is_none(),
        "status must not be writable through the main resource"
    );

    let status = json!({
        "apiVersion": "agentgov.dev/v1alpha1",
        "kind": "Agent",
        "status": {"governanceStatus": "SANDBOX", "observedGeneration": 1}
    });
    let written = agents
        .patch_status(
            "research-scratchpad",
            &PatchParams::apply("agentgov-e2e").force(),
            &Patch::Apply(&status),
        )
        .await
        .unwrap();
    let written = written.status.expect("status written");
    assert_eq!(written.governance_status, Some(GovernanceStatus::Sandbox));
    assert_eq!(written.observed_generation, Some(1));

    let bad = json!({
        "apiVersion": "agentgov.dev/v1alpha1",
        "kind": "Agent",
        "status": {"governanceStatus": "PROMOTED_BY_ME"}
    });
    let error = agents
        .patch_status(
            "research-scratchpad",
            &PatchParams::apply("agentgov-e2e").force(),
            &Patch::Apply(&bad),
        )
        .await
        .expect_err("an unknown governance status is rejected");
    assert!(api_error_message(&error).contains("Unsupported value"));

    // Times the API server's date-time check alone would store and no Rust client of the CRD can
    // read (an object nobody can read drops out of every watch): refused. One that reads: kept.
    for unreadable in [
        "2026-01-01T00:00:00.0000000001Z",
        "2026-01-01T00:00:00+99:00",
    ] {
        let error = agents
            .patch_status(
                "research-scratchpad",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"expiresAt": unreadable}})),
            )
            .await
            .expect_err(unreadable);
        assert!(
            api_error_message(&error).contains("status.expiresAt"),
            "{unreadable}: {}",
            api_error_message(&error)
        );
    }
    let readable = agents
        .patch_status(
            "research-scratchpad",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"expiresAt": "2026-01-01T00:00:00.123+01:00"}})),
        )
        .await
        .expect("a readable time is stored, and read back");
    assert!(readable.status.unwrap().expires_at.is_some());
}
