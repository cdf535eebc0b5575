//! Pods bound to the approved runtime (`spec.runtime.images`): every image a Pod of the agent
//! runs, on every path into the Pod (CREATE, an UPDATE that changes an image, an ephemeral
//! container), must be one the agent approved by digest, else `ADMISSION_DENY_RUNTIME_MISMATCH`.
#![allow(clippy::unwrap_used)] // tests may unwrap (clippy.toml: allow-unwrap-in-tests)

mod common;

use agentgov_api::admission::DecisionCode;
use agentgov_api::runtime::RuntimeSpec;
use agentgov_webhook::testing::StaticView;
use common::*;
use serde_json::{Value, json};

const DIGEST: &str = "sha256:4f2b9c1e0d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c";
const BOUND: &str = "bound-agent";

fn approved() -> String {
    format!("registry.example/agents/invoice-auditor@{DIGEST}")
}

/// A world holding, besides the usual agents, the governed agent `bound-agent` signed with
/// `images` as its approved runtime.
fn bound_world(images: &[&str]) -> StaticView {
    let w = world();
    let mut spec = governed_spec();
    spec.runtime = Some(RuntimeSpec {
        images: images.iter().map(|i| i.to_string()).collect(),
        ..RuntimeSpec::default()
    });
    let agent = signed_agent(BOUND, spec, &w.keys.ring, policy().hash());
    let mut view = w.view;
    view.add_agent(agent);
    view
}

/// A Pod CREATE of `agent` whose (only) container runs `image`.
fn pod_running(agent: &str, image: &str) -> Value {
    let mut review = pod_review(Some(agent));
    review["request"]["object"]["spec"]["containers"][0]["image"] = json!(image);
    review
}

/// The same Pod updated from running `old` to running `new`.
fn image_update(agent: &str, old: &str, new: &str) -> Value {
    pod_update(pod_running(agent, new), pod_running(agent, old))
}

#[tokio::test]
async fn an_approved_digest_runs_and_anything_else_is_refused() {
    let view = || bound_world(&[&approved()]);
    let ok = pods_answer(view(), &pod_running(BOUND, &approved())).await;
    assert!(allowed(&ok), "{ok:#}");
    // The same digest with a tag beside it names the same content.
    let tagged = approved().replace("@", ":1.2.0@");
    let ok = pods_answer(view(), &pod_running(BOUND, &tagged)).await;
    assert!(allowed(&ok), "{ok:#}");
    for image in [
        "registry.example/agents/invoice-auditor:1.2.0".to_string(),
        approved().replace("4f2b", "0000"),
        format!("registry.example/agents/other@{DIGEST}"),
    ] {
        let denied = pods_answer(view(), &pod_running(BOUND, &image)).await;
        assert_denied(&denied, DecisionCode::DenyRuntimeMismatch);
        assert!(
            message(&denied).contains("spec.containers[0] (agent)"),
            "{denied:#}"
        );
    }
}

#[tokio::test]
async fn init_containers_are_bound_too_and_an_empty_list_approves_nothing() {
    let mut review = pod_running(BOUND, &approved());
    review["request"]["object"]["spec"]["initContainers"] =
        json!([{"name": "setup", "image": "busybox:1.36"}]);
    let denied = pods_answer(bound_world(&[&approved()]), &review).await;
    assert_denied(&denied, DecisionCode::DenyRuntimeMismatch);
    assert!(
        message(&denied).contains("spec.initContainers[0] (setup)"),
        "{denied:#}"
    );
    let nothing = pods_answer(bound_world(&[]), &pod_running(BOUND, &approved())).await;
    assert_denied(&nothing, DecisionCode::DenyRuntimeMismatch);
}

#[tokio::test]
async fn an_agent_without_a_runtime_binds_no_image() {
    let ok = pods_answer(
        bound_world(&[]),
        &pod_running(GOVERNED, "anything.example/tool:latest"),
    )
    .await;
    assert!(allowed(&ok), "{ok:#}");
}

#[tokio::test]
async fn an_ephemeral_container_with_another_image_is_refused() {
    let ephemeral = |image: &str| {
        let mut review = image_update(BOUND, &approved(), &approved());
        review["request"]["subResource"] = json!("ephemeralcontainers");
        review["request"]["object"]["spec"]["ephemeralContainers"] =
            json!([{"name": "debugger", "image": image, "targetContainerName": "agent"}]);
        review
    };
    let denied = pods_answer(bound_world(&[&approved()]), &ephemeral("busybox:1.36")).await;
    assert_denied(&denied, DecisionCode::DenyRuntimeMismatch);
    assert!(
        message(&denied).contains("spec.ephemeralContainers[0] (debugger)"),
        "{denied:#}"
    );
    let ok = pods_answer(bound_world(&[&approved()]), &ephemeral(&approved())).await;
    assert!(allowed(&ok), "{ok:#}");
}

#[tokio::test]
async fn an_update_that_changes_an_image_is_judged() {
    let swapped = pods_answer(
        bound_world(&[&approved()]),
        &image_update(BOUND, &approved(), "registry.example/agents/evil:1"),
    )
    .await;
    assert_denied(&swapped, DecisionCode::DenyRuntimeMismatch);
    let other = approved().replace("invoice-auditor", "invoice-helper");
    let to_approved = pods_answer(
        bound_world(&[&approved(), &other]),
        &image_update(BOUND, &approved(), &other),
    )
    .await;
    assert!(allowed(&to_approved), "{to_approved:#}");
    assert_eq!(code(&to_approved), "ADMISSION_ALLOW");
    // Of an unknown agent's Pod, an image change is judged too (and the agent is not found).
    let unknown = pods_answer(
        bound_world(&[]),
        &image_update("nobody", &approved(), &other),
    )
    .await;
    assert_denied(&unknown, DecisionCode::DenyAgentNotFound);
    // An update that changes no image passes unjudged.
    let same = pods_answer(
        bound_world(&[]),
        &image_update("nobody", &approved(), &approved()),
    )
    .await;
    assert!(allowed(&same), "{same:#}");
}
