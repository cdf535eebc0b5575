//! `POST /validate/pods` through the axum router (no TLS, no cluster): the seven checks, the
//! fail-closed cases, and what always passes.
#![allow(clippy::unwrap_used)] // tests may unwrap (clippy.toml: allow-unwrap-in-tests)

mod common;

use std::time::Duration;

use agentgov_api::admission::DecisionCode;
use agentgov_api::agent::{Containment, GovernanceStatus};
use agentgov_api::keyring::KeyRing;
use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use common::*;
use futures::StreamExt as _;
use serde_json::json;

async fn pod_answer(view: agentgov_webhook::testing::StaticView, agent: &str) -> serde_json::Value {
    let app = app(view);
    let (status, answer) = post(
        &app.router,
        "/validate/pods",
        bytes(&pod_review(Some(agent))),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["response"]["uid"], json!(POD_UID));
    assert_eq!(answer["apiVersion"], json!("admission.k8s.io/v1"));
    assert_eq!(answer["kind"], json!("AdmissionReview"));
    answer
}

/// The answer to a Pod of `agent`, once `agent` is in `w`'s view.
async fn pod_of(mut w: World, agent: agentgov_api::Agent) -> serde_json::Value {
    let name = agent.metadata.name.clone().expect("a name");
    w.view.add_agent(agent);
    pod_answer(w.view, &name).await
}

#[tokio::test]
async fn valid_governed_agent_pod_is_allowed_and_counted() {
    let app = app(world().view);
    let (status, answer) = post(
        &app.router,
        "/validate/pods",
        bytes(&pod_review(Some(GOVERNED))),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(allowed(&answer), "{answer:#}");
    assert_eq!(answer["response"]["uid"], json!(POD_UID));
    assert_eq!(code(&answer), "ADMISSION_ALLOW");
    let metrics = app.metrics.encode().unwrap();
    assert!(
        metrics.contains("agent_starts_allowed_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"admission_review_duration_seconds_count{kind="pod"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn valid_sandbox_agent_pod_is_allowed() {
    let answer = pod_answer(world().view, SANDBOX).await;
    assert!(allowed(&answer), "{answer:#}");
}

#[tokio::test]
async fn deny_proof_missing() {
    let w = world();
    // Governed in the spec, never signed by the operator.
    let answer = pod_of(w, agent("unsigned", governed_spec(), None, hours_ago(1))).await;
    assert_denied(&answer, DecisionCode::DenyProofMissing);
}

#[tokio::test]
async fn deny_proof_missing_when_invalidated() {
    let w = world();
    let mut agent = w.signed("quarantined");
    if let Some(status) = agent.status.as_mut() {
        status.governance_status = Some(GovernanceStatus::GovernedInvalidated);
        status.denies = vec!["temperature too high".into()];
    }
    let answer = pod_of(w, agent).await;
    assert_denied(&answer, DecisionCode::DenyProofMissing);
    let text = message(&answer);
    assert!(
        text.contains("no proof bundle in force (GOVERNED_INVALIDATED): temperature too high"),
        "{text}"
    );
}

/// A signed agent the operator then held out of force (GOVERNED_INVALIDATED), keeping its proof.
fn invalidated(
    name: &str,
    spec: agentgov_api::agent::AgentSpec,
    w: &World,
    policy_hash: &str,
) -> agentgov_api::Agent {
    let mut agent = signed_agent(name, spec, &w.keys.ring, policy_hash);
    if let Some(status) = agent.status.as_mut() {
        status.governance_status = Some(GovernanceStatus::GovernedInvalidated);
        status.denies = vec!["the agent is no longer approved".into()];
    }
    agent
}

#[tokio::test]
async fn an_invalidated_agent_whose_spec_changed_is_a_spec_hash_mismatch() {
    // Its old proof is kept as a record; the checks say what no longer holds, first.
    let w = world();
    let mut agent = invalidated("edited", governed_spec(), &w, policy().hash());
    agent.spec.anatomy.capabilities.push("payments".into());
    let answer = pod_of(w, agent).await;
    assert_denied(&answer, DecisionCode::DenySpecHashMismatch);
}

#[tokio::test]
async fn an_invalidated_agent_a_newer_policy_denies_is_a_policy_hash_mismatch() {
    let w = world();
    let mut spec = governed_spec();
    spec.anatomy.capabilities.clear();
    let agent = invalidated("outlawed", spec, &w, &"0".repeat(64));
    let answer = pod_of(w, agent).await;
    assert_denied(&answer, DecisionCode::DenyPolicyHashMismatch);
    assert!(message(&answer).contains("capabilit"), "{answer:#}");
}

#[tokio::test]
async fn an_invalidated_agent_with_an_intact_proof_has_no_proof_in_force() {
    // Every check of its proof holds, and still: the operator holds it out of force.
    let w = world();
    let agent = invalidated("withdrawn", governed_spec(), &w, policy().hash());
    let answer = pod_of(w, agent).await;
    assert_denied(&answer, DecisionCode::DenyProofMissing);
    let text = message(&answer);
    assert!(text.contains("no proof bundle in force"), "{text}");
    assert!(text.contains("no longer approved"), "{text}");
}

#[tokio::test]
async fn a_proof_signed_for_another_uid_is_invalid() {
    // The agent deleted and re-created under the same name: a new uid. Its old proof (kept
    // in a restored status, say) does not carry over.
    let w = world();
    let mut recreated = w.signed("reborn");
    recreated.metadata.uid = Some("uid-reborn-2".into());
    let answer = pod_of(w, recreated.clone()).await;
    assert_denied(&answer, DecisionCode::DenySignatureInvalid);
    assert!(
        message(&answer).contains("signed for another Agent object"),
        "{answer:#}"
    );
    // Rewriting the proof's agentUid to the new uid does not help: the signature covers it.
    let w = world();
    let mut relabelled = recreated;
    if let Some(proof) = relabelled.status.as_mut().and_then(|s| s.proof.as_mut()) {
        proof.agent_uid = "uid-reborn-2".into();
    }
    let answer = pod_of(w, relabelled).await;
    assert_denied(&answer, DecisionCode::DenySignatureInvalid);
    assert!(message(&answer).contains("does not verify"), "{answer:#}");
    // Signed for its own uid (approved again): admitted.
    let w = world();
    let agent = signed_agent_uid(
        "reborn",
        "uid-reborn-2",
        governed_spec(),
        &w.keys.ring,
        policy().hash(),
    );
    let answer = pod_of(w, agent).await;
    assert!(allowed(&answer), "{answer:#}");
}

#[tokio::test]
async fn a_proof_of_payload_version_1_names_no_approval() {
    // A proof as the operator signed before approvals existed: its signature verifies, but it
    // shows no authorized identity asked for this spec.
    let w = world();
    let mut old = w.signed("legacy");
    if let Some(proof) = old.status.as_mut().and_then(|s| s.proof.as_mut()) {
        *proof = v1_proof("legacy", proof, &w.keys.ring);
        let subject = agentgov_api::proof::ProofSubject {
            namespace: NS,
            name: "legacy",
            uid: "uid-legacy",
        };
        assert_eq!(
            agentgov_api::proof::verify(&w.keys.verification(&[]), subject, proof),
            Ok(()),
            "a genuine version 1 proof"
        );
    }
    let answer = pod_of(w, old).await;
    assert_denied(&answer, DecisionCode::DenyProofMissing);
    let text = message(&answer);
    assert!(text.contains("names no approval"), "{text}");
    assert!(text.contains("payload version 1"), "{text}");
}

#[tokio::test]
async fn a_proof_without_approvers_names_no_approval() {
    let w = world();
    let mut agent = w.signed("unapproved");
    if let Some(proof) = agent.status.as_mut().and_then(|s| s.proof.as_mut()) {
        proof.approvers.clear();
    }
    let answer = pod_of(w, agent).await;
    assert_denied(&answer, DecisionCode::DenyProofMissing);
    assert!(message(&answer).contains("names no approval"), "{answer:#}");
}

#[tokio::test]
async fn deny_spec_hash_mismatch() {
    let w = world();
    let mut agent = w.signed("tampered");
    agent.spec.anatomy.reasoning.as_mut().unwrap().temperature = 0.29;
    let answer = pod_of(w, agent).await;
    assert_denied(&answer, DecisionCode::DenySpecHashMismatch);
}

#[tokio::test]
async fn deny_policy_hash_mismatch() {
    // Signed under another policy, and the policy in force denies the agent: refused, with the
    // new policy's reasons. (An agent the policy in force allows: tests/pod_paths.rs.)
    let w = world();
    let old_policy = "0".repeat(64);
    let mut spec = governed_spec();
    spec.anatomy.capabilities.clear();
    let agent = signed_agent("drifted", spec, &w.keys.ring, &old_policy);
    let answer = pod_of(w, agent).await;
    assert_denied(&answer, DecisionCode::DenyPolicyHashMismatch);
    assert!(
        message(&answer).contains("now in force, denies it"),
        "{answer:#}"
    );
    assert!(message(&answer).contains("capabilit"), "{answer:#}");
}

#[tokio::test]
async fn deny_policy_hash_mismatch_when_no_policy_in_force() {
    let keys = SigningKeys::new("k1");
    let mut view = agentgov_webhook::testing::StaticView::new(keys.verification(&[]));
    view.add_agent(signed_agent(
        GOVERNED,
        governed_spec(),
        &keys.ring,
        policy().hash(),
    ));
    let answer = pod_answer(view, GOVERNED).await;
    assert_denied(&answer, DecisionCode::DenyPolicyHashMismatch);
    assert!(message(&answer).contains("no policy is in force"));
}

#[tokio::test]
async fn deny_signer_revoked() {
    let keys = SigningKeys::new("k1");
    let mut view = agentgov_webhook::testing::StaticView::new(keys.verification(&["k1"]));
    view.add_agent(signed_agent(
        GOVERNED,
        governed_spec(),
        &keys.ring,
        policy().hash(),
    ));
    view.policies.insert(NS, policy());
    let answer = pod_answer(view, GOVERNED).await;
    assert_denied(&answer, DecisionCode::DenySignerRevoked);
}

#[tokio::test]
async fn deny_signature_invalid() {
    let w = world();
    let mut agent = w.signed("forged");
    // A proof copied from another agent: valid signature, wrong subject.
    let other = w.signed(GOVERNED);
    agent.status = other.status.clone();
    let answer = pod_of(w, agent).await;
    assert_denied(&answer, DecisionCode::DenySignatureInvalid);
}

#[tokio::test]
async fn deny_signature_from_unknown_key() {
    let w = world();
    let stranger = SigningKeys::new("k-stranger");
    let answer = pod_of(
        w,
        signed_agent("stranger", governed_spec(), &stranger.ring, policy().hash()),
    )
    .await;
    assert_denied(&answer, DecisionCode::DenySignatureInvalid);
    assert!(message(&answer).contains("not in the key ring"));
}

#[tokio::test]
async fn deny_sandbox_expired() {
    let w = world();
    // Created four days ago with a one-day TTL.
    let answer = pod_of(w, agent("stale", sandbox_spec(), None, hours_ago(96))).await;
    assert_denied(&answer, DecisionCode::DenySandboxExpired);
}

#[tokio::test]
async fn expiry_ignores_a_far_future_expires_at() {
    let w = world();
    let mut spec = sandbox_spec();
    spec.sandbox = Some(agentgov_api::agent::SandboxSpec {
        ttl_seconds: None,
        expires_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2099-01-01T00:00:00Z".parse().unwrap(),
        )),
    });
    // 31 days old: past the default 30-day ceiling, whatever expiresAt says.
    let answer = pod_of(w, agent("immortal", spec, None, hours_ago(31 * 24))).await;
    assert_denied(&answer, DecisionCode::DenySandboxExpired);
}

#[tokio::test]
async fn deny_containment_violation_in_the_agent() {
    let w = world();
    let mut spec = sandbox_spec();
    spec.anatomy.containment = Containment {
        external_calls: true,
        persistent_writes: false,
    };
    let answer = pod_of(w, agent("leaky", spec, None, hours_ago(1))).await;
    assert_denied(&answer, DecisionCode::DenyContainmentViolation);
}

#[tokio::test]
async fn deny_containment_violation_in_the_pod() {
    for (volume, expected) in [
        (
            json!({"name": "data", "persistentVolumeClaim": {"claimName": "data"}}),
            "persistentVolumeClaim",
        ),
        (
            json!({"name": "host", "hostPath": {"path": "/var/lib"}}),
            "hostPath",
        ),
        (
            json!({"name": "eph", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}),
            "ephemeral",
        ),
        (
            json!({"name": "share", "nfs": {"server": "nfs", "path": "/"}}),
            "nfs",
        ),
    ] {
        let one = app(world().view);
        let mut review = pod_review(Some(SANDBOX));
        review["request"]["object"]["spec"]["volumes"]
            .as_array_mut()
            .unwrap()
            .push(volume);
        let (_, answer) = post(&one.router, "/validate/pods", bytes(&review)).await;
        assert_denied(&answer, DecisionCode::DenyContainmentViolation);
        assert!(message(&answer).contains(expected), "{}", message(&answer));
    }
    // hostNetwork bypasses NetworkPolicy: not contained when externalCalls is false.
    let fresh = app(world().view);
    let mut review = pod_review(Some(SANDBOX));
    review["request"]["object"]["spec"]["hostNetwork"] = json!(true);
    let (_, answer) = post(&fresh.router, "/validate/pods", bytes(&review)).await;
    assert_denied(&answer, DecisionCode::DenyContainmentViolation);
    // A governed agent's pod may mount a claim.
    let mut review = pod_review(Some(GOVERNED));
    review["request"]["object"]["spec"]["volumes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "data", "persistentVolumeClaim": {"claimName": "data"}}));
    let (_, answer) = post(&fresh.router, "/validate/pods", bytes(&review)).await;
    assert!(allowed(&answer), "{answer:#}");
}

#[tokio::test]
async fn deny_unknown_agent_and_empty_label() {
    let answer = pod_answer(world().view, "nobody").await;
    assert_denied(&answer, DecisionCode::DenyAgentNotFound);
    let answer = pod_answer(world().view, "").await;
    assert_denied(&answer, DecisionCode::DenyAgentNotFound);
}

#[tokio::test]
async fn deny_agent_in_another_namespace() {
    let app = app(world().view);
    let mut review = pod_review(Some(GOVERNED));
    review["request"]["namespace"] = json!("team-b");
    review["request"]["object"]["metadata"]["namespace"] = json!("team-b");
    let (_, answer) = post(&app.router, "/validate/pods", bytes(&review)).await;
    assert_denied(&answer, DecisionCode::DenyAgentNotFound);
}

#[tokio::test]
async fn deny_while_caches_are_not_synced() {
    let mut w = world();
    w.view.synced = false;
    let answer = pod_answer(w.view, GOVERNED).await;
    assert_denied(&answer, DecisionCode::DenyUnavailable);
}

#[tokio::test]
async fn deny_malformed_json() {
    let app = app(world().view);
    for body in [
        &b"{"[..],
        b"",
        b"null",
        b"[]",
        b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\"}",
        b"\xff\xfe\x00garbage",
    ] {
        let (status, answer) = post(&app.router, "/validate/pods", body.to_vec()).await;
        assert_eq!(status, StatusCode::OK);
        assert_denied(&answer, DecisionCode::DenyBadRequest);
    }
    // Valid JSON, broken request: the deny keeps the uid so the API server can match it.
    let mut review = pod_review(Some(GOVERNED));
    review["request"]["operation"] = json!("EXPLODE");
    let (_, answer) = post(&app.router, "/validate/pods", bytes(&review)).await;
    assert_denied(&answer, DecisionCode::DenyBadRequest);
    assert_eq!(answer["response"]["uid"], json!(POD_UID));
    let metrics = app.metrics.encode().unwrap();
    assert!(
        metrics.contains(r#"agent_starts_denied_total{reason="ADMISSION_DENY_BAD_REQUEST"} 7"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn deny_wrong_kind() {
    let app = app(world().view);
    let mut review = pod_review(Some(GOVERNED));
    review["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    let (_, answer) = post(&app.router, "/validate/pods", bytes(&review)).await;
    assert_denied(&answer, DecisionCode::DenyBadRequest);
    assert!(message(&answer).contains("apps/v1/Deployment"));
    // A pod review sent to the agents endpoint.
    let (_, answer) = post(
        &app.router,
        "/validate/agents",
        bytes(&pod_review(Some(GOVERNED))),
    )
    .await;
    assert_denied(&answer, DecisionCode::DenyBadRequest);
}

#[tokio::test]
async fn deny_wrong_review_version() {
    let app = app(world().view);
    let mut review = pod_review(Some(GOVERNED));
    review["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let (_, answer) = post(&app.router, "/validate/pods", bytes(&review)).await;
    assert_denied(&answer, DecisionCode::DenyBadRequest);
    assert_eq!(answer["response"]["uid"], json!(POD_UID));
    let mut review = pod_review(Some(GOVERNED));
    review["kind"] = json!("TokenReview");
    let (_, answer) = post(&app.router, "/validate/pods", bytes(&review)).await;
    assert_denied(&answer, DecisionCode::DenyBadRequest);
}

#[tokio::test]
async fn oversized_body_is_refused() {
    let app = app(world().view);
    let mut review = pod_review(Some(GOVERNED));
    review["request"]["object"]["metadata"]["annotations"] =
        json!({"padding": "x".repeat(TEST_MAX_BODY)});
    let (status, answer) = post(&app.router, "/validate/pods", bytes(&review)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_denied(&answer, DecisionCode::DenyBadRequest);
}

#[tokio::test]
async fn slow_body_times_out() {
    let app = app_with(world().view, Ok(true), Duration::from_millis(200));
    let head = Bytes::from_static(b"{\"apiVersion\":");
    let stream =
        futures::stream::iter([Ok::<_, std::io::Error>(head)]).chain(futures::stream::pending());
    let (status, answer) = post(&app.router, "/validate/pods", Body::from_stream(stream)).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert_denied(&answer, DecisionCode::DenyBadRequest);
}

#[tokio::test]
async fn delete_and_unlabelled_pods_pass() {
    let app = app(world().view);
    // DELETE never reaches a deny, even naming an unknown agent and with caches unsynced.
    let mut w = world();
    w.view.synced = false;
    let unsynced = app_with(w.view, Ok(true), Duration::from_secs(5));
    for router in [&app.router, &unsynced.router] {
        let mut review = pod_review(Some("nobody"));
        review["request"]["operation"] = json!("DELETE");
        review["request"]["oldObject"] = review["request"]["object"].take();
        let (_, answer) = post(router, "/validate/pods", bytes(&review)).await;
        assert!(allowed(&answer), "{answer:#}");
    }
    let (_, answer) = post(&app.router, "/validate/pods", bytes(&pod_review(None))).await;
    assert!(allowed(&answer), "{answer:#}");
    // Pod UPDATEs that leave the agent label alone, and subresources other than
    // ephemeralcontainers, are not governed.
    let mut review = pod_review(Some("nobody"));
    review["request"]["operation"] = json!("UPDATE");
    review["request"]["oldObject"] = review["request"]["object"].clone();
    let (_, answer) = post(&app.router, "/validate/pods", bytes(&review)).await;
    assert!(allowed(&answer), "{answer:#}");
    let mut review = pod_review(Some("nobody"));
    review["request"]["subResource"] = json!("status");
    let (_, answer) = post(&app.router, "/validate/pods", bytes(&review)).await;
    assert!(allowed(&answer), "{answer:#}");
    // Pass-throughs are not governance decisions: not counted.
    let metrics = app.metrics.encode().unwrap();
    assert!(
        metrics.contains("agent_starts_allowed_total 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn dry_run_gets_the_same_answer() {
    for (agent, expect_allowed) in [(GOVERNED, true), ("nobody", false)] {
        let app = app(world().view);
        let mut review = pod_review(Some(agent));
        review["request"]["dryRun"] = json!(true);
        let (status, answer) = post(&app.router, "/validate/pods", bytes(&review)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(allowed(&answer), expect_allowed, "{answer:#}");
        assert_eq!(app.authz.calls(), 0);
    }
}

#[tokio::test]
async fn restricted_agent_pod_carries_warnings() {
    let w = world();
    let mut agent = w.signed("restricted");
    if let Some(status) = agent.status.as_mut() {
        status.governance_status = Some(GovernanceStatus::GovernedRestricted);
        status.warnings = vec!["no monthly budget is declared".into()];
    }
    let answer = pod_of(w, agent).await;
    assert!(allowed(&answer), "{answer:#}");
    let warnings = warnings(&answer);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("GOVERNED_RESTRICTED"));
}

#[tokio::test]
async fn key_rotation_and_revocation_without_restart() {
    let keys = SigningKeys::new("k1");
    let mut view = agentgov_webhook::testing::StaticView::new(keys.verification(&[]));
    view.add_agent(signed_agent(
        GOVERNED,
        governed_spec(),
        &keys.ring,
        policy().hash(),
    ));
    view.policies.insert(NS, policy());
    let ring_holder = view.keys.clone();
    let app = app(view);
    let ask = || {
        post(
            &app.router,
            "/validate/pods",
            bytes(&pod_review(Some(GOVERNED))),
        )
    };

    // Rotation: a new active key k2 joins; k1's proofs still verify (overlap).
    let new = agentgov_api::keyring::generate_ed25519("k2").unwrap();
    let mut rotated = keys.config.clone();
    rotated.keys.push(new);
    rotated.active_key_id = Some("k2".into());
    let verification = rotated.verification_only().unwrap();
    ring_holder.store(KeyRing::from_config(&verification).unwrap());
    let (_, answer) = ask().await;
    assert!(allowed(&answer), "{answer:#}");

    // Revocation of k1 takes effect at once.
    let mut revoked = verification.clone();
    revoked.revoked = vec!["k1".into()];
    ring_holder.store(KeyRing::from_config(&revoked).unwrap());
    let (_, answer) = ask().await;
    assert_denied(&answer, DecisionCode::DenySignerRevoked);
}

#[tokio::test]
async fn agent_being_deleted_admits_no_new_pods() {
    let w = world();
    let mut agent = agent("leaving", sandbox_spec(), None, hours_ago(1));
    agent.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        hours_ago(0),
    ));
    let answer = pod_of(w, agent).await;
    assert_denied(&answer, DecisionCode::DenyAgentNotFound);
}

#[tokio::test]
async fn methods_and_paths() {
    let app = app(world().view);
    let request = axum::http::Request::get("/validate/pods")
        .body(Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(app.router.clone(), request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let (status, _) = post(&app.router, "/validate/other", b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_code_is_reachable_and_distinct() {
    // Guard for the reason label: all decision codes are distinct strings.
    let codes: std::collections::HashSet<_> =
        DecisionCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(codes.len(), DecisionCode::ALL.len());
}
