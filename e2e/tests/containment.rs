//! Containment and quarantine on a real control plane: the operator keeps a NetworkPolicy per
//! contained agent (egress to DNS and the bundle's allow-list only) and puts it back when someone
//! changes or deletes it; a quarantined agent (invalidated, or an expired sandbox) is cut off
//! both ways and its Pods evicted (`quarantine: stop`) or left running (`isolate`), with Events
//! and metrics, and the quarantine is lifted when the agent is valid again; other NetworkPolicies
//! that widen a contained agent are reported on it. (Whether the node enforces such a policy is
//! `e2e/tests/node.rs`'s.)

// Test code: a panic with the value is the failure report, in helpers as in #[test]s.
#![allow(clippy::unwrap_used)]

use agentgov_api::agent::GovernanceStatus;
use agentgov_api::policy_bundle::{EgressDestination, QuarantineAction, RuntimeData};
use agentgov_e2e::admission::{governed_spec, sandbox_spec};
use agentgov_e2e::operator::metric_value;
use agentgov_e2e::scenario::{Setup, WAIT, expired, is, setup};
use agentgov_e2e::wait_for;
use agentgov_e2e::webhook::agent_pod;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

/// Containment is on by default; the tests say so anyway, so a changed default shows here.
const ON: &[&str] = &["--contain-pods=true"];
const OFF: &[&str] = &["--contain-pods=false"];

fn gateway() -> RuntimeData {
    RuntimeData {
        egress: vec![EgressDestination {
            cidr: "10.96.0.10/32".into(),
            ports: vec![443],
        }],
        ..RuntimeData::default()
    }
}

async fn quarantine_actions(setup: &Setup, action: &str) -> f64 {
    metric_value(
        &setup.operator.metrics().await,
        &format!("agentgov_quarantine_actions_total{{action=\"{action}\"}}"),
    )
    .unwrap_or(0.0)
}

/// Wait until the agent's NetworkPolicy satisfies `check`.
async fn wait_policy(
    setup: &Setup,
    agent: &str,
    what: &str,
    check: impl Fn(Option<&NetworkPolicy>) -> bool,
) -> Option<NetworkPolicy> {
    setup
        .wait_object(&format!("agentgov-{agent}"), what, check)
        .await
}

fn state(policy: Option<&NetworkPolicy>) -> Option<&str> {
    policy?
        .metadata
        .labels
        .as_ref()?
        .get("agentgov.dev/network")
        .map(String::as_str)
}

fn is_contained(policy: Option<&NetworkPolicy>) -> bool {
    state(policy) == Some("contained")
}

fn is_quarantined(policy: Option<&NetworkPolicy>) -> bool {
    state(policy) == Some("quarantined")
}

/// The egress peers' CIDRs of a policy (the DNS rule has none).
fn cidrs(policy: &NetworkPolicy) -> Vec<String> {
    let spec = policy.spec.as_ref().unwrap();
    spec.egress
        .iter()
        .flatten()
        .flat_map(|rule| rule.to.iter().flatten())
        .filter_map(|peer| peer.ip_block.as_ref().map(|b| b.cidr.clone()))
        .collect()
}

/// A Pod labelled for the agent (no webhook runs in this suite, and no node: it stays Pending).
async fn create_pod(setup: &Setup, name: &str, agent: &str) {
    setup
        .ns
        .api::<Pod>()
        .create(&PostParams::default(), &agent_pod(name, agent))
        .await
        .unwrap();
}

async fn pod_exists(setup: &Setup, name: &str) -> bool {
    setup
        .ns
        .api::<Pod>()
        .get_opt(name)
        .await
        .unwrap()
        .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
}

#[tokio::test]
async fn a_contained_agent_gets_an_egress_allow_list_that_is_put_back_when_changed() {
    let setup = setup("contain-egress", ON, gateway()).await;
    setup.create_agent("scratchpad", sandbox_spec(3600)).await;
    let policy = wait_policy(&setup, "scratchpad", "contained", is_contained)
        .await
        .unwrap();
    assert_eq!(cidrs(&policy), ["10.96.0.10/32"]);
    let spec = policy.spec.clone().unwrap();
    assert_eq!(spec.policy_types, Some(vec!["Egress".to_string()]));
    assert_eq!(
        spec.pod_selector.unwrap().match_labels.unwrap()["agentgov.dev/agent"],
        "scratchpad"
    );
    let owner = &policy.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Agent", "scratchpad")
    );

    // Looked at again with nothing changed: the stored policy is not written again.
    let version = policy.metadata.resource_version.clone();
    setup.poke("scratchpad").await;
    let api: Api<NetworkPolicy> = setup.ns.api();
    assert_eq!(
        api.get("agentgov-scratchpad")
            .await
            .unwrap()
            .metadata
            .resource_version,
        version,
        "an unchanged policy was written again"
    );

    // Someone widens it: put back as it was.
    api.patch(
        "agentgov-scratchpad",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}})),
    )
    .await
    .unwrap();
    wait_policy(&setup, "scratchpad", "restored", |p| {
        p.is_some_and(|p| cidrs(p) == ["10.96.0.10/32"])
    })
    .await;
    // Someone deletes it: written again.
    api.delete("agentgov-scratchpad", &DeleteParams::default())
        .await
        .unwrap();
    wait_policy(&setup, "scratchpad", "recreated", |p| {
        p.is_some_and(|p| p.metadata.deletion_timestamp.is_none() && cidrs(p) == ["10.96.0.10/32"])
    })
    .await;

    // A sandbox is contained whatever its anatomy says.
    let mut caller = sandbox_spec(3600);
    caller.anatomy.containment.external_calls = true;
    setup.create_agent("caller", caller).await;
    wait_policy(&setup, "caller", "contained", is_contained).await;
}

#[tokio::test]
async fn an_invalidated_agent_is_quarantined_and_stopped_then_restored() {
    let setup = setup("contain-stop", ON, gateway()).await;
    setup.create_agent("auditor", governed_spec()).await;
    setup.approve_valid("auditor").await;
    wait_policy(&setup, "auditor", "contained", is_contained).await;
    create_pod(&setup, "auditor-0", "auditor").await;
    create_pod(&setup, "bystander", "someone-else").await;

    // Stricter: the org budget drops below the agent's; quarantine is `stop` by default.
    setup
        .bundle_then(
            ("1.1.0", 100.0, gateway()),
            "auditor",
            GovernanceStatus::GovernedInvalidated,
        )
        .await;
    let policy = wait_policy(&setup, "auditor", "quarantined", is_quarantined)
        .await
        .unwrap();
    let spec = policy.spec.unwrap();
    assert_eq!(
        spec.policy_types,
        Some(vec!["Ingress".to_string(), "Egress".to_string()])
    );
    assert_eq!(
        (spec.ingress, spec.egress),
        (None, None),
        "nothing in or out"
    );
    wait_for(WAIT, || async {
        (!pod_exists(&setup, "auditor-0").await).then_some(())
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the quarantined agent's Pod was not evicted:\n{}",
            setup.operator.logs()
        )
    });
    assert!(
        pod_exists(&setup, "bystander").await,
        "another agent's Pod was touched"
    );
    setup.wait_event("auditor", "Quarantined").await;
    setup.wait_event("auditor", "Stopped").await;
    assert!(quarantine_actions(&setup, "isolate").await >= 1.0);
    assert!(quarantine_actions(&setup, "stop").await >= 1.0);

    // Looser again: valid, contained, the quarantine lifted.
    setup
        .bundle_then(
            ("1.2.0", 10_000.0, gateway()),
            "auditor",
            GovernanceStatus::GovernedValid,
        )
        .await;
    wait_policy(&setup, "auditor", "contained again", is_contained).await;
    setup.wait_event("auditor", "QuarantineLifted").await;
    assert!(quarantine_actions(&setup, "lift").await >= 1.0);
    assert!(setup.operator.logs().contains("AGENT_QUARANTINED"));
    assert!(setup.operator.logs().contains("AGENT_STOPPED"));
}

#[tokio::test]
async fn a_quarantine_is_not_held_up_by_versions_that_cannot_be_recorded() {
    // ControllerRevisions cannot be created in the namespace (a tenant filled its quota; here a
    // ValidatingAdmissionPolicy refuses them), and a governed agent's spec is edited (it is
    // invalidated: no approval of the new spec). Its new version cannot be recorded; the
    // quarantine comes anyway.
    let setup = setup("contain-quota", ON, gateway()).await;
    setup.create_agent("auditor", governed_spec()).await;
    setup.approve_valid("auditor").await;
    wait_policy(&setup, "auditor", "contained", is_contained).await;
    let revisions: Api<ControllerRevision> = setup.ns.api();
    let of_auditor = ListParams::default().labels("agentgov.dev/agent=auditor");
    let recorded = revisions.list(&of_auditor).await.unwrap().items.len();
    assert!(recorded >= 1, "the approved version is recorded");
    let refusal = refuse_controller_revisions(&setup.ns.name).await;
    // In force once the API server has loaded it: until a probe's create is refused.
    let probe: ControllerRevision = serde_json::from_value(json!({
        "metadata": {"name": "probe"},
        "data": {},
        "revision": 1,
    }))
    .unwrap();
    wait_for(WAIT, || async {
        match revisions.create(&PostParams::default(), &probe).await {
            Err(kube::Error::Api(e)) if e.message.contains(&refusal) => Some(()),
            Ok(_) => {
                revisions
                    .delete("probe", &DeleteParams::default())
                    .await
                    .unwrap();
                None
            }
            Err(e) => panic!("probe: {e}"),
        }
    })
    .await
    .unwrap();

    setup
        .ns
        .api::<agentgov_api::Agent>()
        .patch(
            "auditor",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"description": "edited without approval"}})),
        )
        .await
        .unwrap();
    setup
        .wait_agent(
            "auditor",
            "invalidated",
            is(GovernanceStatus::GovernedInvalidated),
        )
        .await;
    wait_policy(&setup, "auditor", "quarantined", is_quarantined).await;
    setup.wait_event("auditor", "Quarantined").await;
    assert_eq!(
        revisions.list(&of_auditor).await.unwrap().items.len(),
        recorded,
        "the edited version could not be recorded"
    );
    delete_refusal(&setup.ns.name).await;
}

/// A ValidatingAdmissionPolicy and its binding that refuse every ControllerRevision created in
/// `namespace`; the text of the refusal.
async fn refuse_controller_revisions(namespace: &str) -> String {
    let client = agentgov_e2e::client().await;
    let name = format!("e2e-no-revisions-{namespace}");
    let message = format!("no ControllerRevision in {namespace} (e2e)");
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["apps"], "apiVersions": ["v1"],
                "operations": ["CREATE"], "resources": ["controllerrevisions"],
            }]},
            "validations": [{"expression": "false", "message": message}],
        },
    }))
    .unwrap();
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": namespace,
            }}},
        },
    }))
    .unwrap();
    Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    Api::<ValidatingAdmissionPolicyBinding>::all(client)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    message
}

async fn delete_refusal(namespace: &str) {
    let client = agentgov_e2e::client().await;
    let name = format!("e2e-no-revisions-{namespace}");
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    Api::<ValidatingAdmissionPolicy>::all(client)
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn an_expired_sandbox_is_isolated_and_its_pods_keep_running_under_isolate() {
    let runtime = RuntimeData {
        quarantine: Some(QuarantineAction::Isolate),
        ..gateway()
    };
    let setup = setup("contain-isolate", ON, runtime).await;
    setup.create_agent("short-lived", sandbox_spec(4)).await;
    wait_policy(&setup, "short-lived", "contained", is_contained).await;
    create_pod(&setup, "short-lived-0", "short-lived").await;
    setup.wait_agent("short-lived", "expired", expired).await;
    wait_policy(&setup, "short-lived", "quarantined", is_quarantined).await;
    setup.wait_event("short-lived", "Quarantined").await;
    assert!(
        pod_exists(&setup, "short-lived-0").await,
        "quarantine: isolate must leave the Pod running"
    );
    assert!(
        !setup
            .reasons("short-lived")
            .await
            .iter()
            .any(|r| r == "Stopped")
    );
}

/// Another NetworkPolicy that may select a contained agent's Pods and allows more egress widens
/// its containment (NetworkPolicies add up): reported on the agent, by a Warning Event naming
/// it and the gauge, as is one labelled as the operator's that it does not keep (its rules are
/// not read). One that allows DNS only, or leaves agent Pods out by the agent label, is not.
/// When none is left, a Normal Event, and the gauge goes back to 0.
#[tokio::test]
async fn other_network_policies_that_widen_a_contained_agent_are_reported() {
    let setup = setup("contain-widen", ON, gateway()).await;
    setup.create_agent("scratchpad", sandbox_spec(3600)).await;
    wait_policy(&setup, "scratchpad", "contained", is_contained).await;
    let api: Api<NetworkPolicy> = setup.ns.api();
    let create = |name: &str, labels: serde_json::Value, spec: serde_json::Value| {
        let policy: NetworkPolicy = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels}, "spec": spec,
        }))
        .unwrap();
        let api = api.clone();
        async move { api.create(&PostParams::default(), &policy).await.unwrap() }
    };
    let everyone = json!({});
    let not_agents = json!({"matchExpressions": [
        {"key": "agentgov.dev/agent", "operator": "DoesNotExist"}]});
    let allow_all = |selector: &serde_json::Value| json!({"podSelector": selector, "policyTypes": ["Egress"], "egress": [{}]});
    create(
        "dns-only",
        json!({}),
        json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}),
    )
    .await;
    create("web", json!({}), allow_all(&not_agents)).await;
    create("allow-all-egress", json!({}), allow_all(&everyone)).await;
    let note = wait_note(
        &setup,
        "ContainmentWidened",
        "NetworkPolicy allow-all-egress may select this agent's Pods and allows egress",
    )
    .await;
    assert!(note.contains("DoesNotExist"), "says how: {note}");
    wait_widened(&setup, 1.0).await;

    // Labelled as the operator's, for this very agent, but not one it keeps.
    create(
        "sneaky",
        json!({"app.kubernetes.io/managed-by": "agentgov-operator", "agentgov.dev/agent": "scratchpad"}),
        allow_all(&everyone),
    )
    .await;
    let note = wait_note(&setup, "ContainmentWidened", "NetworkPolicy sneaky").await;
    assert!(note.contains("its rules are not read"), "{note}");
    assert!(
        api.get_opt("sneaky").await.unwrap().is_some(),
        "not the operator's to delete"
    );

    // Both mended: the agent's Pods left out of one, the other deleted.
    api.patch(
        "allow-all-egress",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"podSelector": not_agents}})),
    )
    .await
    .unwrap();
    api.delete("sneaky", &DeleteParams::default())
        .await
        .unwrap();
    setup.wait_event("scratchpad", "ContainmentRestored").await;
    wait_widened(&setup, 0.0).await;
    for event in setup.ns.events_about("scratchpad").await {
        let note = event.note.unwrap_or_default();
        assert!(
            !note.contains("dns-only") && !note.contains("web"),
            "reported a policy that widens nothing: {note}"
        );
    }
}

/// Wait for an Event about the agent `scratchpad` with `reason` whose note contains `text`.
async fn wait_note(setup: &Setup, reason: &str, text: &str) -> String {
    wait_for(WAIT, || async {
        setup
            .ns
            .events_about("scratchpad")
            .await
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .filter_map(|e| e.note)
            .find(|note| note.contains(text))
    })
    .await
    .unwrap_or_else(|_| panic!("no {reason} event with {text}:\n{}", setup.operator.logs()))
}

async fn wait_widened(setup: &Setup, agents: f64) {
    wait_for(WAIT, || async {
        let metrics = setup.operator.metrics().await;
        (metric_value(&metrics, "agentgov_containment_widened_agents") == Some(agents))
            .then_some(())
    })
    .await
    .unwrap_or_else(|_| panic!("agentgov_containment_widened_agents never {agents}"));
}

#[tokio::test]
async fn with_containment_off_the_operator_writes_no_network_policy() {
    let setup = setup("contain-off", OFF, gateway()).await;
    setup.create_agent("scratchpad", sandbox_spec(3600)).await;
    setup
        .wait_agent("scratchpad", "SANDBOX", is(GovernanceStatus::Sandbox))
        .await;
    let policies: Api<NetworkPolicy> = setup.ns.api();
    // The reconcile that wrote the status has finished (its duration is counted at its end),
    // and a policy is written within the same reconcile, after the status.
    wait_for(WAIT, || async {
        (setup.reconciles().await >= 1.0).then_some(())
    })
    .await
    .unwrap();
    assert!(
        policies
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "a NetworkPolicy was written with --contain-pods=false"
    );
}
