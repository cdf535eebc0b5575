//! The webhook through the API server: agent Pods of valid agents are admitted, each of the
//! seven checks denies with its own decision code, a Deployment of an invalid agent reports
//! FailedCreate, only users with `promote` create governed agents, a stopped webhook fails closed
//! for agent Pods only, a quarantined agent can still be deleted, and SIGTERM stops the webhook
//! gracefully (not ready first, reviews answered until its port closes, exit 0).
//!
//! Each test has its own namespace, its own operator (the real one, signing proofs) and its own
//! webhook on a free loopback port, registered by its own ValidatingWebhookConfiguration whose
//! namespaceSelector matches only that namespace, so the tests run in parallel.

use std::time::{Duration, Instant};

use agentgov_api::agent::GovernanceStatus;
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::{Agent, AgentPromotion};
use agentgov_e2e::admission::*;
use agentgov_e2e::operator::{http_get, metric_value};
use agentgov_e2e::webhook::{Webhook, agent_pod, plain_pod, pod_review_request};
use agentgov_e2e::{api_error_message, apply_bundle, wait_for};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn signed_governed_and_sandbox_agent_pods_are_admitted() {
    let setup = setup("wh-admit").await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    create_agent(&setup, "auditor", governed_spec()).await;
    approve(&setup, "auditor").await;
    // No budget declared: the policy allows with a warning (GOVERNED_RESTRICTED).
    let mut frugal = governed_spec();
    frugal.anatomy.economics = None;
    create_agent(&setup, "frugal", frugal).await;
    approve(&setup, "frugal").await;
    create_agent(&setup, "lab", sandbox_spec(3600)).await;
    wait_agent(&setup, "auditor", "GOVERNED_VALID", |a| {
        governance(a) == Some(GovernanceStatus::GovernedValid)
    })
    .await;
    wait_agent(&setup, "frugal", "GOVERNED_RESTRICTED", |a| {
        governance(a) == Some(GovernanceStatus::GovernedRestricted)
    })
    .await;

    let pod = pod_admitted(&setup, "auditor-0", "auditor").await;
    assert_eq!(
        pod.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("agentgov.dev/agent"))
            .map(String::as_str),
        Some("auditor")
    );
    pod_admitted(&setup, "lab-0", "lab").await;
    pod_admitted(&setup, "frugal-0", "frugal").await;

    // A restricted agent's policy warnings come back as admission warnings (the Warning header).
    let body = serde_json::to_vec(&agent_pod("frugal-1", "frugal")).unwrap();
    let request = kube::core::Request::new(format!("/api/v1/namespaces/{}/pods", setup.ns.name))
        .create(&PostParams::default(), body)
        .unwrap();
    let response = setup
        .client
        .send(request.map(kube::client::Body::from))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201, "frugal-1 is created");
    let warnings: Vec<String> = response
        .headers()
        .get_all("warning")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("GOVERNED_RESTRICTED") && w.contains("no monthly budget")),
        "admission warnings: {warnings:?}"
    );

    // Pods that do not claim an agent are not the webhook's business.
    setup
        .pods()
        .create(&PostParams::default(), &plain_pod("plain"))
        .await
        .unwrap();

    let metrics = setup.webhook.metrics().await;
    assert!(
        metric_value(&metrics, "agent_starts_allowed_total").unwrap_or(0.0) >= 4.0,
        "{metrics}"
    );
    for agent in ["auditor", "lab", "frugal"] {
        assert!(
            decision_logged(&setup.webhook, agent, ALLOW),
            "no ADMISSION_ALLOW decision line for {agent}\n{}",
            setup.diagnostics()
        );
    }
}

#[tokio::test]
async fn each_of_the_seven_checks_denies_with_its_own_code() {
    let mut setup = setup("wh-seven").await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    // Created first, so that it has expired by the time its Pod is judged.
    create_agent(&setup, "short-lived", sandbox_spec(1)).await;
    create_agent(&setup, "lab", sandbox_spec(3600)).await;
    // Signed by key-1, which is revoked below.
    create_agent(&setup, "old-signer", governed_spec()).await;
    approve(&setup, "old-signer").await;
    wait_agent(&setup, "old-signer", "signed by key-1", |a| {
        signed_by(a, "key-1")
    })
    .await;
    // Rotate: key-2 signs from now on, key-1 keeps verifying.
    setup.keys.rotate("key-2").unwrap();
    setup.webhook.write_keyring(&setup.keys).unwrap();
    setup
        .operator
        .wait_key_loaded("key-2", WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", setup.diagnostics()));
    for name in ["auditor", "tampered", "forged"] {
        create_agent(&setup, name, governed_spec()).await;
        approve(&setup, name).await;
    }
    for name in ["auditor", "tampered", "forged"] {
        wait_agent(&setup, name, "signed by key-2", |a| signed_by(a, "key-2")).await;
    }
    // Baseline: every signed agent's Pod is admitted, whichever key signed it.
    for name in ["auditor", "tampered", "forged", "old-signer"] {
        pod_admitted(&setup, &format!("{name}-ok"), name).await;
    }
    pod_admitted(&setup, "lab-ok", "lab").await;

    // From here on, nobody re-signs: the operator is down (as during a tamper attempt).
    setup.operator.kill();

    // 1. Proof exists: a governed agent the operator never signed.
    create_agent(&setup, "unsigned", governed_spec()).await;
    let message = pod_denied(&setup, "unsigned-0", "unsigned", PROOF_MISSING).await;
    assert!(message.contains("not yet promoted"), "{message}");

    // 2. Spec hash: the spec changes after signing (an admin may; nobody re-signs it).
    setup
        .agents()
        .patch(
            "tampered",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"description": "changed after signing"}})),
        )
        .await
        .unwrap();
    pod_denied(&setup, "tampered-0", "tampered", SPEC_HASH_MISMATCH).await;

    // 5. Signature: the proof's signature is replaced (status writes are never admission-checked).
    let zeros = "A".repeat(86) + "==";
    setup
        .agents()
        .patch_status(
            "forged",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"proof": {"signature": zeros}}})),
        )
        .await
        .unwrap();
    let message = pod_denied(&setup, "forged-0", "forged", SIGNATURE_INVALID).await;
    assert!(message.contains("does not verify"), "{message}");

    // 6. Sandbox expiry: ttlSeconds 1, judged by the webhook's clock.
    let message = pod_denied(&setup, "short-lived-0", "short-lived", SANDBOX_EXPIRED).await;
    assert!(message.contains("expired at"), "{message}");

    // 7. Containment: a sandbox that may call out is refused at the Agent itself, so no Pod of
    // it can exist; a sandbox Pod that mounts the host is refused too.
    let mut leaky = sandbox_spec(3600);
    leaky.anatomy.containment.external_calls = true;
    let message = refused(
        &setup,
        "sandbox agent with externalCalls",
        CONTAINMENT_VIOLATION,
        creating(&setup.agents(), &Agent::new("leaky", leaky)),
    )
    .await;
    assert!(
        message.contains(r#"admission webhook "agents.validate.agentgov.dev" denied the request"#)
            && message.contains("externalCalls"),
        "{message}"
    );
    assert!(setup.agents().get_opt("leaky").await.unwrap().is_none());
    pod_denied(&setup, "leaky-0", "leaky", AGENT_NOT_FOUND).await;
    let mut host = agent_pod("lab-host", "lab");
    host.spec.as_mut().unwrap().volumes = Some(vec![
        serde_json::from_value(json!({"name": "h", "hostPath": {"path": "/tmp"}})).unwrap(),
    ]);
    refused(
        &setup,
        "sandbox pod with a hostPath volume",
        CONTAINMENT_VIOLATION,
        creating(&setup.pods(), &host),
    )
    .await;

    // 4. Signer revoked: key-1 goes on the revoked list; the webhook reloads it without a restart.
    let reloads = setup.webhook.keyring_reloads().await;
    setup.keys.revoke("key-1").unwrap();
    setup.webhook.write_keyring(&setup.keys).unwrap();
    wait_for(SETTLE, || async {
        (setup.webhook.keyring_reloads().await > reloads).then_some(())
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the webhook never reloaded its key ring\n{}",
            setup.diagnostics()
        )
    });
    pod_denied(&setup, "old-signer-0", "old-signer", SIGNER_REVOKED).await;
    // ... and only key-1: key-2's proofs still hold.
    pod_admitted(&setup, "auditor-1", "auditor").await;

    // 3. Policy hash: a new policy version is put in force, and nobody re-signs against it
    // (the operator is down; the webhook compiles the bundle itself). It denies the agent.
    let mut policy = default_bundle_spec();
    policy.version = "2.0.0".into();
    policy.data.max_monthly_budget_usd = 200.0;
    apply_bundle(&setup.ns, policy.clone()).await.unwrap();
    let message = pod_denied(&setup, "auditor-2", "auditor", POLICY_HASH_MISMATCH).await;
    assert!(
        message.contains("now in force, denies it") && message.contains("monthlyBudgetUsd"),
        "{message}"
    );

    // Each code is counted and logged.
    let metrics = setup.webhook.metrics().await;
    for code in [
        PROOF_MISSING,
        SPEC_HASH_MISMATCH,
        POLICY_HASH_MISMATCH,
        SIGNER_REVOKED,
        SIGNATURE_INVALID,
        SANDBOX_EXPIRED,
        CONTAINMENT_VIOLATION,
    ] {
        let line = format!("agent_starts_denied_total{{reason=\"{code}\"}}");
        assert!(
            metric_value(&metrics, &line).unwrap_or(0.0) >= 1.0,
            "{line} in\n{metrics}"
        );
    }
    for (agent, code) in [
        ("unsigned", PROOF_MISSING),
        ("tampered", SPEC_HASH_MISMATCH),
        ("auditor", POLICY_HASH_MISMATCH),
        ("old-signer", SIGNER_REVOKED),
        ("forged", SIGNATURE_INVALID),
        ("short-lived", SANDBOX_EXPIRED),
        ("leaky", CONTAINMENT_VIOLATION),
    ] {
        assert!(
            decision_logged(&setup.webhook, agent, code),
            "no {code} decision line for {agent}\n{}",
            setup.diagnostics()
        );
    }
}

/// A Deployment of `agent` whose Pods meet the `restricted` level (as `plain_pod`'s do).
fn deployment(name: &str, agent: &str) -> Deployment {
    let pod_spec = plain_pod(name).spec;
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "agentgov.dev/agent": agent}},
                "spec": pod_spec,
            },
        },
    }))
    .expect("a Deployment")
}

/// The ReplicaSet kube-controller-manager made for Deployment `app`.
async fn replica_set(
    setup: &Setup,
    app: &str,
    what: &str,
    check: impl Fn(&ReplicaSet) -> bool,
) -> ReplicaSet {
    let api: Api<ReplicaSet> = setup.ns.api();
    let params = ListParams::default().labels(&format!("app={app}"));
    let result = wait_for(WAIT, || {
        let api = api.clone();
        let params = params.clone();
        let check = &check;
        async move {
            api.list(&params)
                .await
                .ok()?
                .items
                .into_iter()
                .find(|rs| check(rs))
        }
    })
    .await;
    match result {
        Ok(rs) => rs,
        Err(_) => {
            let current = api.list(&params).await.map(|l| l.items);
            panic!(
                "the ReplicaSet of {app} never {what}: {current:#?}\n{}",
                setup.diagnostics()
            )
        }
    }
}

#[tokio::test]
async fn a_deployment_of_an_invalid_agent_reports_failed_create() {
    let setup = setup("wh-deploy").await;
    create_agent(&setup, "short-lived", sandbox_spec(1)).await;
    create_agent(&setup, "lab", sandbox_spec(3600)).await;
    // Wait until the sandbox has expired by the webhook's clock.
    pod_denied(&setup, "short-lived-probe", "short-lived", SANDBOX_EXPIRED).await;
    let deployments: Api<Deployment> = setup.ns.api();
    for (name, agent) in [("expired", "short-lived"), ("contained", "lab")] {
        deployments
            .create(&PostParams::default(), &deployment(name, agent))
            .await
            .unwrap();
    }

    let failing = replica_set(&setup, "expired", "reported FailedCreate", |rs| {
        rs.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter().any(|c| {
                    c.type_.as_deref() == Some("ReplicaFailure")
                        && c.status.as_deref() == Some("True")
                        && c.reason.as_deref() == Some("FailedCreate")
                        && c.message
                            .as_deref()
                            .is_some_and(|m| m.contains(SANDBOX_EXPIRED))
                })
            })
    })
    .await;
    assert_eq!(failing.status.as_ref().map(|s| s.replicas), Some(0));
    let rs_name = failing.metadata.name.clone().unwrap();
    // The same refusal is an Event on the ReplicaSet.
    let events: Api<Event> = setup.ns.api();
    wait_for(WAIT, || {
        let events = events.clone();
        let rs_name = rs_name.clone();
        async move {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some("FailedCreate")
                        && e.involved_object.name.as_deref() == Some(rs_name.as_str())
                        && e.message
                            .as_deref()
                            .is_some_and(|m| m.contains(SANDBOX_EXPIRED))
                })
                .then_some(())
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no FailedCreate event on {rs_name}\n{}",
            setup.diagnostics()
        )
    });

    // The Deployment of a valid agent gets its Pod.
    replica_set(&setup, "contained", "created its Pod", |rs| {
        rs.status.as_ref().is_some_and(|s| s.replicas == 1)
    })
    .await;
    let pods = setup
        .pods()
        .list(&ListParams::default().labels("app=contained,agentgov.dev/agent=lab"))
        .await
        .unwrap();
    assert_eq!(pods.items.len(), 1, "one Pod of the contained agent");
}

#[tokio::test]
async fn only_a_user_with_promote_may_approve_a_governed_agent() {
    let setup = setup("wh-promote").await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    let ns = &setup.ns.name;
    // mallory may write Agents and AgentPromotions, but holds no `promote`.
    grant(
        &setup,
        "agent-writer",
        "mallory",
        json!([{"apiGroups": ["agentgov.dev"], "resources": ["agents", "agentpromotions"],
                "verbs": ["get", "list", "watch", "create", "update", "patch"]}]),
    )
    .await;
    // alice is an agent admin (the chart's agentgov-agent-admin; a name of this test's own, as
    // ClusterRoles are shared by the parallel tests).
    let admin_role = format!("{ns}-agent-admin");
    let cluster_role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": admin_role, "labels": {"agentgov.dev/e2e": "true"}},
        "rules": [
            {"apiGroups": ["agentgov.dev"], "resources": ["agents"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete", "promote"]},
            {"apiGroups": ["agentgov.dev"], "resources": ["agentpromotions"],
             "verbs": ["get", "list", "watch", "create"]},
        ],
    }))
    .unwrap();
    let cluster_roles: Api<ClusterRole> = Api::all(setup.client.clone());
    cluster_roles
        .patch(
            &admin_role,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&cluster_role),
        )
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "alice-agent-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": admin_role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}],
    }))
    .unwrap();
    setup
        .ns
        .api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    wait_rbac(&setup, "mallory", "create").await;
    wait_rbac(&setup, "alice", "promote").await;
    let mallory_client = client_as("mallory").await;
    let mallory: Api<Agent> = Api::namespaced(mallory_client.clone(), ns);
    let alice_promotions: Api<AgentPromotion> = Api::namespaced(client_as("alice").await, ns);

    // mallory may ask for a governed agent (a request): the policy judges its spec at once, and
    // the answer says how it gets promoted ...
    admitted(
        &setup,
        "governed agent created by mallory",
        creating(&mallory, &Agent::new("auditor", governed_spec())),
    )
    .await;
    let waiting = wait_agent(&setup, "auditor", "awaiting approval", |a| {
        a.status.as_ref().is_some_and(|s| s.approval.is_some())
    })
    .await;
    assert_eq!(governance(&waiting), Some(GovernanceStatus::Sandbox));
    pod_denied(&setup, "auditor-0", "auditor", PROOF_MISSING).await;
    // ... but not approve it: the API server itself refuses (no webhook involved).
    let spec_hash = waiting.status.unwrap().approval.unwrap().spec_hash;
    let error = Api::<AgentPromotion>::namespaced(mallory_client, ns)
        .create(
            &PostParams::default(),
            &agentgov_e2e::approval("auditor", &spec_hash),
        )
        .await
        .expect_err("mallory may not approve");
    let message = api_error_message(&error);
    assert!(
        message.contains("ValidatingAdmissionPolicy 'agentgov-promotion'")
            && message.contains("mallory may not approve"),
        "{message}"
    );

    // alice can; the proof names her.
    let approval = alice_promotions
        .create(
            &PostParams::default(),
            &agentgov_e2e::approval("auditor", &spec_hash),
        )
        .await
        .expect("alice approves");
    assert_eq!(
        approval.spec.requested_by.map(|r| r.username),
        Some("alice".to_string())
    );
    let agent = wait_agent(&setup, "auditor", "GOVERNED_VALID", |a| {
        governance(a) == Some(GovernanceStatus::GovernedValid)
    })
    .await;
    let proof = agent.status.unwrap().proof.unwrap();
    assert_eq!(proof.approvers[0].username, "alice");
    pod_admitted(&setup, "auditor-1", "auditor").await;

    // An approval of a spec other than the agent's is refused at once, with both hashes.
    let message = refused(
        &setup,
        "an approval of another spec",
        SPEC_HASH_MISMATCH,
        creating(
            &alice_promotions,
            &agentgov_e2e::approval("auditor", &"a".repeat(64)),
        ),
    )
    .await;
    assert!(message.contains(&spec_hash), "{message}");

    // mallory may still label alice's governed agent (metadata only); a spec change by her is
    // not signed: the agent waits for an approval of the new spec.
    mallory
        .patch(
            "auditor",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "finance"}}})),
        )
        .await
        .expect("a metadata-only update");
    mallory
        .patch(
            "auditor",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"description": "mallory was here"}})),
        )
        .await
        .expect("a spec change is a new request");
    let agent = wait_agent(&setup, "auditor", "GOVERNED_INVALIDATED", |a| {
        governance(a) == Some(GovernanceStatus::GovernedInvalidated)
    })
    .await;
    assert_eq!(
        agent
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("agentgov.dev/changed-by"))
            .map(String::as_str),
        Some("mallory"),
        "the API server recorded who changed the spec"
    );
    pod_denied(&setup, "auditor-2", "auditor", SPEC_HASH_MISMATCH).await;
    let _ = cluster_roles
        .delete(&admin_role, &DeleteParams::default())
        .await;
}

#[tokio::test]
async fn a_stopped_webhook_fails_closed_for_agent_pods_only() {
    let mut setup = setup("wh-down").await;
    create_agent(&setup, "lab", sandbox_spec(3600)).await;
    create_agent(&setup, "doomed", sandbox_spec(3600)).await;
    pod_admitted(&setup, "lab-0", "lab").await;

    // The webhook dies; its registration stays (failurePolicy: Fail).
    setup.webhook.kill();
    let message = refused(
        &setup,
        "agent pod with the webhook down",
        "failed calling webhook",
        creating(&setup.pods(), &agent_pod("lab-1", "lab")),
    )
    .await;
    assert!(
        message.contains("pods.validate.agentgov.dev")
            && (message.contains("connection refused") || message.contains("connect")),
        "{message}"
    );
    // A Pod that claims no agent is not sent to the webhook at all (objectSelector).
    setup
        .pods()
        .create(&PostParams::default(), &plain_pod("plain"))
        .await
        .expect("a pod without the agent label is created with the webhook down");
    // Agents fail closed too ...
    let message = refused(
        &setup,
        "agent created with the webhook down",
        "failed calling webhook",
        creating(&setup.agents(), &Agent::new("lab-2", sandbox_spec(3600))),
    )
    .await;
    assert!(
        message.contains("agents.validate.agentgov.dev"),
        "{message}"
    );
    // ... but metadata-only updates (matchCondition), status writes (not registered) and
    // deletes (not registered) go through.
    setup
        .agents()
        .patch(
            "lab",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "research"}}})),
        )
        .await
        .expect("a metadata-only update with the webhook down");
    setup
        .agents()
        .patch_status(
            "lab",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"warnings": ["written with the webhook down"]}})),
        )
        .await
        .expect("a status write with the webhook down");
    setup
        .agents()
        .delete("doomed", &DeleteParams::default())
        .await
        .expect("a delete with the webhook down");

    // Back up on the same address: agent Pods are judged again.
    let listen = setup.webhook.addr;
    setup.webhook = Webhook::start_on(listen, Some(&setup.ns.name), &setup.keys, "b", &[])
        .await
        .unwrap();
    pod_admitted(&setup, "lab-2", "lab").await;
    pod_denied(&setup, "doomed-0", "doomed", AGENT_NOT_FOUND).await;
}

#[tokio::test]
async fn a_quarantined_agent_is_refused_but_can_be_deleted() {
    let setup = setup("wh-quarantine").await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    create_agent(&setup, "auditor", governed_spec()).await;
    approve(&setup, "auditor").await;
    wait_agent(&setup, "auditor", "GOVERNED_VALID", |a| {
        governance(a) == Some(GovernanceStatus::GovernedValid)
    })
    .await;
    pod_admitted(&setup, "auditor-0", "auditor").await;

    // A stricter policy: compliance agents may not sample above 0.1. The operator revalidates
    // and quarantines the agent (its status write is not admission-checked).
    let mut strict = default_bundle_spec();
    strict.version = "1.1.0".into();
    strict.data.temperature_limits.compliance = 0.1;
    bundle_in_force(&setup, &strict).await;
    wait_agent(&setup, "auditor", "GOVERNED_INVALIDATED", |a| {
        governance(a) == Some(GovernanceStatus::GovernedInvalidated)
    })
    .await;
    // It keeps its last proof as the record of what was approved; the policy now in force says
    // why it no longer holds.
    let message = pod_denied(&setup, "auditor-1", "auditor", POLICY_HASH_MISMATCH).await;
    assert!(message.contains("temperature"), "{message}");

    // Status writes are never blocked, whoever writes them.
    setup
        .agents()
        .patch_status(
            "auditor",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"warnings": ["quarantined; under review"]}})),
        )
        .await
        .expect("a status write of a quarantined agent");

    // The quarantined agent can be deleted; then its Pods are refused as unknown.
    setup
        .agents()
        .delete("auditor", &DeleteParams::default())
        .await
        .expect("a quarantined agent can be deleted");
    agentgov_e2e::wait_gone(&setup.agents(), "auditor", WAIT)
        .await
        .unwrap_or_else(|_| panic!("the agent was never deleted\n{}", setup.diagnostics()));
    pod_denied(&setup, "auditor-2", "auditor", AGENT_NOT_FOUND).await;
}

/// SIGTERM, as the kubelet stops the webhook's Pod: `/readyz` says 503 at once, reviews are
/// still answered for `--shutdown-delay` (while endpoints drop the Pod, so no admission fails;
/// over HTTP/1.1 each answer closes its connection), then the admission port closes, what is
/// in flight finishes and the webhook exits with 0.
#[tokio::test]
async fn sigterm_turns_the_webhook_not_ready_then_it_exits_cleanly() {
    let mut setup = setup("wh-sigterm").await;
    create_agent(&setup, "lab", sandbox_spec(3600)).await;
    // A webhook on the same address with a delay long enough to be watched.
    let delay = Duration::from_secs(5);
    let listen = setup.webhook.addr;
    setup.webhook.kill();
    setup.webhook = Webhook::start_on(
        listen,
        Some(&setup.ns.name),
        &setup.keys,
        "sigterm",
        &["--shutdown-delay", "5s"],
    )
    .await
    .unwrap();
    pod_admitted(&setup, "lab-0", "lab").await;

    let sigterm = Instant::now();
    setup.webhook.process().terminate().unwrap();
    let port = setup.webhook.metrics_port;
    let readyz = wait_for(Duration::from_secs(5), || async move {
        let response = http_get(port, "/readyz").await.ok()?;
        let status = response.lines().next()?;
        (!status.contains(" 200")).then_some(response)
    })
    .await
    .expect("/readyz stops saying ready after SIGTERM");
    assert!(
        readyz.starts_with("HTTP/1.0 503") || readyz.starts_with("HTTP/1.1 503"),
        "{readyz}"
    );
    assert!(readyz.contains("shutting down"), "{readyz}");
    // Not ready, but still answering the API server until its port closes.
    pod_admitted(&setup, "lab-1", "lab").await;
    // Over HTTP/1.1 (how the API server calls a webhook behind a Service) each answer now
    // closes its connection, so that none is left idle for the close to race.
    let answer = http11_review(&setup.webhook, &setup.ns.name).await;
    assert_eq!(
        answer.headers().get(http::header::CONNECTION),
        Some(&http::HeaderValue::from_static("close")),
        "{:?}",
        answer.headers()
    );
    assert!(
        sigterm.elapsed() < delay,
        "the admission took until {:?} after SIGTERM; the test needs a longer delay",
        sigterm.elapsed()
    );
    let status = setup
        .webhook
        .process()
        .exit_within(delay + Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("still running; log:\n{}", setup.webhook.log_tail(20)));
    assert!(
        status.success(),
        "{status}; log:\n{}",
        setup.webhook.log_tail(20)
    );
    assert!(
        sigterm.elapsed() >= delay,
        "its port closed only after the delay"
    );
    let log = setup.webhook.logs();
    assert!(log.contains(r#""signal":"SIGTERM""#), "{log}");
    assert!(log.contains(r#""message":"stopped""#), "{log}");
}

/// A Pod review sent to `webhook` over HTTP/1.1 as the API server sends it; its answer.
async fn http11_review(webhook: &Webhook, namespace: &str) -> http::Response<kube::client::Body> {
    let client = webhook
        .admission_client()
        .await
        .expect("a client for the webhook");
    let request = pod_review_request(namespace, "http11-review", &agent_pod("lab-2", "lab"))
        .expect("a review request")
        .map(kube::client::Body::from);
    let answer = client.send(request).await.expect("an answer over HTTP/1.1");
    assert_eq!(answer.status(), http::StatusCode::OK);
    assert_eq!(answer.version(), http::Version::HTTP_11);
    answer
}
