//! Upstream's Pod Security Standards conformance corpus, through the webhook: every fixture of
//! the newest version, for each level, is reviewed as the Pod of a governed agent whose bundle
//! requires that level (`data.podSecurity.governed`), and must be admitted if it is under
//! `pass/` and refused with ADMISSION_DENY_CONTAINMENT_VIOLATION if under `fail/`.
#![allow(clippy::unwrap_used)] // tests may unwrap (clippy.toml: allow-unwrap-in-tests)

mod common;
#[path = "../../crds/tests/psa_fixtures/mod.rs"]
mod psa_fixtures;

use agentgov_api::admission::DecisionCode;
use agentgov_api::pod_security::PodSecurityLevel;
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::policy_bundle::PodSecurityData;
use agentgov_webhook::policy::ActivePolicy;
use agentgov_webhook::testing::StaticView;
use common::*;
use serde_json::{Value, json};

/// A view where the bundle in force requires `level` of governed agents' Pods.
fn view_requiring(level: PodSecurityLevel) -> StaticView {
    let mut spec = default_bundle_spec();
    spec.data.pod_security = Some(PodSecurityData {
        governed: level,
        role_classes: None,
    });
    let policy = ActivePolicy::compile(&spec).unwrap();
    let keys = SigningKeys::new("k1");
    let mut view = StaticView::new(keys.verification(&[]));
    view.add_agent(signed_agent(
        GOVERNED,
        governed_spec(),
        &keys.ring,
        policy.hash(),
    ));
    view.policies.insert(NS, policy);
    view
}

/// The fixture as the object of a Pod CREATE review, labelled for the governed agent.
fn review_of(mut pod: Value) -> Value {
    let mut review = pod_review(Some(GOVERNED));
    pod["metadata"]["namespace"] = json!(NS);
    pod["metadata"]["labels"]["agentgov.dev/agent"] = json!(GOVERNED);
    review["request"]["object"] = pod;
    review
}

async fn run(level: PodSecurityLevel) {
    let (version, dir) = psa_fixtures::newest_version_dir(level);
    let app = app(view_requiring(level));
    let mut disagreements = Vec::new();
    let mut total = 0;
    for folder in ["pass", "fail"] {
        let fixtures = psa_fixtures::fixtures(&dir.join(folder));
        println!("{level} {version} {folder}: {} fixtures", fixtures.len());
        total += fixtures.len();
        for (name, pod) in fixtures {
            let (_, answer) = post(&app.router, "/validate/pods", bytes(&review_of(pod))).await;
            let agrees = match folder {
                "pass" => allowed(&answer),
                _ => {
                    !allowed(&answer)
                        && code(&answer) == DecisionCode::DenyContainmentViolation.as_str()
                }
            };
            if !agrees {
                disagreements.push(format!("{folder}/{name}: {}", message(&answer)));
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {total} {level} fixtures in {} disagree:\n{}",
        disagreements.len(),
        dir.display(),
        disagreements.join("\n")
    );
}

#[tokio::test]
async fn baseline_fixtures_as_agent_pods() {
    run(PodSecurityLevel::Baseline).await;
}

#[tokio::test]
async fn restricted_fixtures_as_agent_pods() {
    run(PodSecurityLevel::Restricted).await;
}
