//! agent-sandbox Sandboxes (`agents.x-k8s.io`, kubernetes-sigs/agent-sandbox) through the API
//! server, with the upstream CRD installed as its Go module publishes it: a Sandbox labelled
//! for an agent (on itself or on its pod template) is judged like that agent's Pod, by the
//! webhook registered from `deploy/webhook/validating-webhook-configuration.yaml`.
//!
//! - Refused with the Pod path's codes: an unknown agent, a governed agent with no proof in
//!   force, an expired sandbox, two agent names, a pod template that breaks containment or runs
//!   an image the agent did not approve.
//! - Refused CONTAINMENT_VIOLATION: a Sandbox labelled for an agent whose pod template lacks
//!   the label (its Pod would escape the Pod checks, containment and quarantine).
//! - Admitted: a valid sandbox agent's Sandbox running its approved image; an unlabelled
//!   Sandbox, which never reaches the webhook.
//! - Updates: suspending and status writes pass (even once the agent is gone), a template or
//!   label change is judged again, taking the label off is refused.

use agentgov_api::policy::default_bundle_spec;
use agentgov_api::runtime::RuntimeSpec;
use agentgov_e2e::admission::*;
use agentgov_e2e::operator::metric_value;
use agentgov_e2e::sandbox::{api, install_crd, sandbox};
use agentgov_e2e::scenario::expired;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use serde_json::json;

const RUNTIME_MISMATCH: &str = "ADMISSION_DENY_RUNTIME_MISMATCH";
const LABEL_REMOVED: &str = "ADMISSION_DENY_AGENT_LABEL_REMOVED";
const WEBHOOK: &str = r#"admission webhook "sandboxes.validate.agentgov.dev" denied the request"#;
const APPROVED: &str = "registry.invalid/agent@sha256:4f2b9c1e0d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c";
const OTHER: &str = "registry.invalid/agent:1";
const REVIEWS: &str = r#"admission_review_duration_seconds_count{kind="sandbox"}"#;

/// The test's namespace, operator and webhook (see `admission::setup`), with the Sandbox CRD
/// installed and the default bundle in force.
async fn sandbox_setup(prefix: &str) -> (Setup, Api<DynamicObject>) {
    let setup = setup(prefix).await;
    install_crd(&setup.client)
        .await
        .unwrap_or_else(|e| panic!("install the agent-sandbox CRD: {e:#}"));
    bundle_in_force(&setup, &default_bundle_spec()).await;
    let sandboxes = api(&setup.client, &setup.ns.name);
    (setup, sandboxes)
}

/// A Sandbox labelled for `agent` (on both) running `image` is refused with `code` by the
/// sandboxes webhook; the message.
async fn sandbox_refused(
    setup: &Setup,
    sandboxes: &Api<DynamicObject>,
    object: DynamicObject,
    code: &str,
) -> String {
    let name = object.metadata.name.clone().unwrap_or_default();
    let message = refused(
        setup,
        &format!("Sandbox {name}"),
        code,
        creating(sandboxes, &object),
    )
    .await;
    assert!(message.contains(WEBHOOK), "{message}");
    let stored = sandboxes
        .get_opt(&name)
        .await
        .unwrap_or_else(|e| panic!("get {name}: {e}"));
    assert!(stored.is_none(), "{name} was stored");
    message
}

/// How many Sandbox reviews the webhook has answered.
async fn reviews(setup: &Setup) -> f64 {
    metric_value(&setup.webhook.metrics().await, REVIEWS).unwrap_or(0.0)
}

#[tokio::test]
async fn a_labelled_sandbox_of_an_invalid_agent_is_refused() {
    let (setup, sandboxes) = sandbox_setup("sbx-deny").await;
    create_agent(&setup, "short-lived", sandbox_spec(1)).await;
    // Governed, never approved: no proof in force.
    create_agent(&setup, "unsigned", governed_spec()).await;
    create_agent(&setup, "lab", sandbox_spec(3600)).await;
    // The sandbox's second is over by the operator's clock (and so by the webhook's).
    wait_agent(&setup, "short-lived", "expired", expired).await;

    let message = sandbox_refused(
        &setup,
        &sandboxes,
        sandbox("sb-unknown", Some("nobody"), Some("nobody"), OTHER),
        AGENT_NOT_FOUND,
    )
    .await;
    assert!(
        message.contains("judged as the Pod of its spec.podTemplate")
            && message.contains("does not exist"),
        "{message}"
    );
    // Either label names the agent: the pod template's alone (what the Pod would carry), or
    // the Sandbox's alone.
    sandbox_refused(
        &setup,
        &sandboxes,
        sandbox("sb-template", None, Some("nobody"), OTHER),
        AGENT_NOT_FOUND,
    )
    .await;
    sandbox_refused(
        &setup,
        &sandboxes,
        sandbox("sb-metadata", Some("nobody"), None, OTHER),
        AGENT_NOT_FOUND,
    )
    .await;
    let message = sandbox_refused(
        &setup,
        &sandboxes,
        sandbox("sb-two", Some("lab"), Some("unsigned"), OTHER),
        AGENT_NOT_FOUND,
    )
    .await;
    assert!(message.contains("make the two labels agree"), "{message}");
    // (What its status says by then depends on how far the operator has got.)
    sandbox_refused(
        &setup,
        &sandboxes,
        sandbox("sb-unsigned", Some("unsigned"), Some("unsigned"), OTHER),
        PROOF_MISSING,
    )
    .await;
    let message = sandbox_refused(
        &setup,
        &sandboxes,
        sandbox("sb-expired", None, Some("short-lived"), OTHER),
        SANDBOX_EXPIRED,
    )
    .await;
    assert!(message.contains("expired at"), "{message}");
    // The template is held to the sandbox's Pod Security level (restricted).
    let mut privileged = sandbox("sb-privileged", None, Some("lab"), OTHER);
    privileged.data["spec"]["podTemplate"]["spec"]["containers"][0]["securityContext"]["privileged"] =
        json!(true);
    let message = sandbox_refused(&setup, &sandboxes, privileged, CONTAINMENT_VIOLATION).await;
    assert!(message.contains("privileged"), "{message}");
    // Labelled on the Sandbox alone: its Pod would carry no label, and escape containment.
    let message = sandbox_refused(
        &setup,
        &sandboxes,
        sandbox("sb-bare", Some("lab"), None, OTHER),
        CONTAINMENT_VIOLATION,
    )
    .await;
    assert!(message.contains("lack agentgov.dev/agent=lab"), "{message}");

    assert!(
        decision_logged(&setup.webhook, "nobody", AGENT_NOT_FOUND)
            && decision_logged(&setup.webhook, "short-lived", SANDBOX_EXPIRED),
        "no decision lines\n{}",
        setup.diagnostics()
    );
    assert!(
        setup
            .webhook
            .logs()
            .lines()
            .any(|l| l.contains("admission decision") && l.contains(r#""sandbox""#)),
        "no decision line of kind sandbox\n{}",
        setup.diagnostics()
    );
}

#[tokio::test]
async fn a_sandbox_of_a_valid_agent_runs_only_its_approved_images() {
    let (setup, sandboxes) = sandbox_setup("sbx-run").await;
    let mut spec = sandbox_spec(3600);
    spec.runtime = Some(RuntimeSpec {
        images: vec![APPROVED.into()],
        ..RuntimeSpec::default()
    });
    create_agent(&setup, "lab", spec).await;

    admitted(
        &setup,
        "Sandbox lab-0 running the approved image",
        creating(
            &sandboxes,
            &sandbox("lab-0", Some("lab"), Some("lab"), APPROVED),
        ),
    )
    .await;
    let message = sandbox_refused(
        &setup,
        &sandboxes,
        sandbox("lab-other", Some("lab"), Some("lab"), OTHER),
        RUNTIME_MISMATCH,
    )
    .await;
    assert!(message.contains("spec.containers[0] (agent)"), "{message}");

    // An unlabelled Sandbox is no agent's: admitted without reaching the webhook.
    let before = reviews(&setup).await;
    assert!(
        before >= 2.0,
        "the webhook answered {before} Sandbox reviews"
    );
    sandboxes
        .create(&PostParams::default(), &sandbox("plain", None, None, OTHER))
        .await
        .unwrap_or_else(|e| panic!("an unlabelled Sandbox: {e}\n{}", setup.diagnostics()));
    assert_eq!(reviews(&setup).await, before, "the webhook saw it");

    // Updates: a template change is judged again; taking the label off is refused. (A merge
    // patch replaces lists: the whole template, as it was but for the image.)
    let other = sandbox("lab-0", Some("lab"), Some("lab"), OTHER);
    let image = json!({"spec": {"podTemplate": other.data["spec"]["podTemplate"]}});
    refused(
        &setup,
        "Sandbox lab-0 switched to an unapproved image",
        RUNTIME_MISMATCH,
        patching(&sandboxes, "lab-0", None, image),
    )
    .await;
    let unlabel = json!({
        "metadata": {"labels": {"agentgov.dev/agent": null}},
        "spec": {"podTemplate": {"metadata": {"labels": {"agentgov.dev/agent": null}}}}
    });
    refused(
        &setup,
        "Sandbox lab-0 unlabelled",
        LABEL_REMOVED,
        patching(&sandboxes, "lab-0", None, unlabel),
    )
    .await;

    // The agent gone, its Sandbox can still be suspended and its status written: neither
    // reaches the webhook, which would refuse anything it judged now.
    setup
        .agents()
        .delete("lab", &DeleteParams::default())
        .await
        .unwrap();
    sandbox_refused(
        &setup,
        &sandboxes,
        sandbox("lab-1", Some("lab"), Some("lab"), APPROVED),
        AGENT_NOT_FOUND,
    )
    .await;
    let before = reviews(&setup).await;
    sandboxes
        .patch(
            "lab-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"operatingMode": "Suspended"}})),
        )
        .await
        .unwrap_or_else(|e| panic!("suspend lab-0: {e}\n{}", setup.diagnostics()));
    sandboxes
        .patch_status(
            "lab-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"podIPs": []}})),
        )
        .await
        .unwrap_or_else(|e| panic!("write lab-0's status: {e}\n{}", setup.diagnostics()));
    assert_eq!(reviews(&setup).await, before, "the webhook saw them");
}
