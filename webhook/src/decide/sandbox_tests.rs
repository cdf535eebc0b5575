//! Sandbox reviews as plain data: which label names the agent, which UPDATEs are judged, the
//! Pod the controller makes, and the decision for each (a sandbox agent in a view set by hand).

use agentgov_api::Agent;
use agentgov_api::admission::DecisionCode;
use agentgov_api::agent::AGENT_LABEL;
use agentgov_api::expiry::ExpiryPolicy;
use agentgov_api::keyring::{KeyRing, KeyRingConfig, generate_ed25519};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use super::*;
use crate::decision::Scope;
use crate::testing::StaticView;

const NS: &str = "team-a";
const LAB: &str = "lab";

fn now() -> Timestamp {
    "2026-01-10T12:00:00Z".parse().unwrap()
}

/// A view holding the sandbox agent `lab` (the example sandbox, one day's TTL), created an
/// hour ago.
fn view() -> StaticView {
    let config = KeyRingConfig {
        active_key_id: Some("k1".into()),
        keys: vec![generate_ed25519("k1").unwrap()],
        revoked: vec![],
    };
    let ring = KeyRing::from_config(&config.verification_only().unwrap()).unwrap();
    let mut view = StaticView::new(ring);
    let mut agent = Agent::new(LAB, agentgov_api::testing::sandbox_spec());
    agent.metadata.namespace = Some(NS.into());
    agent.metadata.uid = Some("uid-lab".into());
    agent.metadata.creation_timestamp = Some(Time(
        now().checked_sub(SignedDuration::from_hours(1)).unwrap(),
    ));
    view.add_agent(agent);
    view
}

/// A v1beta1 Sandbox `sb` whose template meets `restricted`, with the agent label on the
/// Sandbox and on its template as given.
fn sandbox(on_sandbox: Option<&str>, on_template: Option<&str>) -> Value {
    let labels = |agent: Option<&str>| match agent {
        Some(agent) => json!({"app": "x", AGENT_LABEL: agent}),
        None => json!({"app": "x"}),
    };
    json!({
        "apiVersion": "agents.x-k8s.io/v1beta1",
        "kind": "Sandbox",
        "metadata": {"name": "sb", "namespace": NS, "labels": labels(on_sandbox)},
        "spec": {
            "operatingMode": "Running",
            "podTemplate": {
                "metadata": {"labels": labels(on_template)},
                "spec": {
                    "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "agent",
                        "image": "registry.example/agent:1",
                        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
                    }],
                    "volumes": [{"name": "scratch", "emptyDir": {}}]
                }
            }
        }
    })
}

fn review(operation: &str, object: &Value, old: Option<&Value>) -> Vec<u8> {
    let version = object["apiVersion"]
        .as_str()
        .and_then(|v| v.split('/').nth(1))
        .unwrap_or("v1beta1");
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u1",
            "kind": {"group": GROUP, "version": version, "kind": object["kind"]},
            "resource": {"group": GROUP, "version": version, "resource": "sandboxes"},
            "name": "sb",
            "namespace": NS,
            "operation": operation,
            "userInfo": {"username": "alice"},
            "object": object,
            "oldObject": old,
        }
    }))
    .unwrap()
}

fn decide(body: &[u8], view: &StaticView) -> Decision {
    let req = crate::review::parse(body).unwrap();
    decide_sandbox(&req, view, &ExpiryPolicy::default(), now())
}

fn create(object: &Value) -> Decision {
    decide(&review("CREATE", object, None), &view())
}

fn update(old: &Value, new: &Value) -> Decision {
    decide(&review("UPDATE", new, Some(old)), &view())
}

fn read(object: &Value) -> DynamicObject {
    serde_json::from_value(object.clone()).unwrap()
}

#[test]
fn either_label_names_the_agent_and_two_names_are_refused() {
    let cases = [
        (Some("a"), None, Ok(Some("a"))),
        (None, Some("a"), Ok(Some("a"))),
        (Some("a"), Some("a"), Ok(Some("a"))),
        (None, None, Ok(None)),
        (Some("a"), Some("b"), Err(("a", "b"))),
        (Some(""), Some("a"), Err(("", "a"))),
    ];
    for (on_sandbox, on_template, expected) in cases {
        let object = read(&sandbox(on_sandbox, on_template));
        let got = Read::of(&object).unwrap().agent();
        assert_eq!(got, expected, "{on_sandbox:?} {on_template:?}");
    }
}

#[test]
fn a_template_label_that_is_not_a_string_is_unreadable() {
    let mut object = sandbox(None, None);
    object["spec"]["podTemplate"]["metadata"]["labels"][AGENT_LABEL] = json!(7);
    assert!(Read::of(&read(&object)).is_err());
    object["spec"]["podTemplate"]["metadata"]["labels"] = json!("lab");
    assert!(Read::of(&read(&object)).is_err());
    // Fail closed: the review is a bad request, not a pass.
    let decision = create(&object);
    assert_eq!(decision.code, DecisionCode::DenyBadRequest, "{decision:?}");
}

#[test]
fn a_labelled_sandbox_is_judged_as_a_pod_of_its_agent() {
    for (on_sandbox, on_template) in [(None, Some(LAB)), (Some(LAB), Some(LAB))] {
        let decision = create(&sandbox(on_sandbox, on_template));
        assert!(decision.allowed(), "{decision:?}");
        assert_eq!(decision.scope, Scope::Governed);
        assert_eq!(decision.agent.as_deref(), Some(LAB));
        assert!(decision.warnings.is_empty(), "{:?}", decision.warnings);
    }
    let unknown = create(&sandbox(None, Some("nobody")));
    assert_eq!(unknown.code, DecisionCode::DenyAgentNotFound);
    assert!(
        unknown
            .reason
            .starts_with("Sandbox team-a/sb, judged as the Pod of its spec.podTemplate: agent team-a/nobody does not exist"),
        "{}",
        unknown.reason
    );
}

#[test]
fn a_label_on_the_sandbox_alone_is_judged_then_refused_for_the_unlabelled_pod() {
    let decision = create(&sandbox(Some(LAB), None));
    assert_eq!(decision.code, DecisionCode::DenyContainmentViolation);
    assert!(
        decision
            .reason
            .contains("spec.podTemplate.metadata.labels lack agentgov.dev/agent=lab"),
        "{}",
        decision.reason
    );
    // Judged first: an unknown agent is said to be unknown.
    let unknown = create(&sandbox(Some("nobody"), None));
    assert_eq!(unknown.code, DecisionCode::DenyAgentNotFound);
}

#[test]
fn the_template_is_held_to_the_agents_pod_security_level() {
    let mut object = sandbox(None, Some(LAB));
    object["spec"]["podTemplate"]["spec"]["hostNetwork"] = json!(true);
    let decision = create(&object);
    assert_eq!(decision.code, DecisionCode::DenyContainmentViolation);
    assert!(
        decision.reason.contains("hostNetwork"),
        "{}",
        decision.reason
    );
}

#[test]
fn volume_claim_templates_are_volumes_of_the_pod() {
    let mut object = sandbox(None, Some(LAB));
    object["spec"]["volumeClaimTemplates"] =
        json!([{"metadata": {"name": "scratch"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]);
    // The example sandbox declares no persistent writes: the claim replaces the emptyDir.
    let decision = create(&object);
    assert_eq!(decision.code, DecisionCode::DenyContainmentViolation);
    assert!(
        decision.reason.contains("volumeClaimTemplates")
            && decision
                .reason
                .contains("(scratch) is a persistentVolumeClaim volume"),
        "{}",
        decision.reason
    );
    let template = &object["spec"]["podTemplate"];
    let pod = pod_of(
        template,
        Some(&object["spec"]["volumeClaimTemplates"]),
        "sb",
    );
    assert_eq!(
        pod["spec"]["volumes"],
        json!([{"name": "scratch", "persistentVolumeClaim": {"claimName": "scratch-sb"}}])
    );
    assert!(matches!(pod_of(template, None, "sb"), Cow::Borrowed(_)));
    assert!(matches!(
        pod_of(template, Some(&json!([])), "sb"),
        Cow::Borrowed(_)
    ));
}

#[test]
fn an_unlabelled_sandbox_passes() {
    let decision = create(&sandbox(None, None));
    assert!(decision.allowed());
    assert_eq!(decision.scope, Scope::Passthrough);
}

#[test]
fn two_agent_names_are_refused() {
    let decision = create(&sandbox(Some(LAB), Some("other")));
    assert_eq!(decision.code, DecisionCode::DenyAgentNotFound);
    assert!(decision.reason.contains("make the two labels agree"));
}

#[test]
fn updates_that_change_neither_template_nor_label_pass() {
    // The agent is unknown: anything judged would be refused.
    let old = sandbox(None, Some("nobody"));
    let mut suspended = old.clone();
    suspended["spec"]["operatingMode"] = json!("Suspended");
    suspended["spec"]["shutdownTime"] = json!("2026-01-10T13:00:00Z");
    suspended["metadata"]["labels"]["app"] = json!("y");
    let decision = update(&old, &suspended);
    assert!(decision.allowed(), "{decision:?}");
    assert_eq!(decision.scope, Scope::Passthrough);

    let mut image = old.clone();
    image["spec"]["podTemplate"]["spec"]["containers"][0]["image"] = json!("other:2");
    assert_eq!(
        update(&old, &image).code,
        DecisionCode::DenyAgentNotFound,
        "a template change is judged"
    );
    let mut claims = old.clone();
    claims["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "d"}}]);
    assert_eq!(update(&old, &claims).code, DecisionCode::DenyAgentNotFound);
    // A label added to an unlabelled Sandbox is judged too.
    let unlabelled = sandbox(None, None);
    assert_eq!(
        update(&unlabelled, &sandbox(Some("nobody"), None)).code,
        DecisionCode::DenyAgentNotFound
    );
    assert!(update(&unlabelled, &sandbox(Some(LAB), Some(LAB))).allowed());
}

#[test]
fn taking_the_label_off_is_refused() {
    let both = sandbox(Some(LAB), Some(LAB));
    for new in [sandbox(None, None), sandbox(Some(LAB), None)] {
        let decision = update(&both, &new);
        assert_eq!(decision.code, DecisionCode::DenyAgentLabelRemoved, "{new}");
        assert_eq!(decision.agent.as_deref(), Some(LAB));
    }
    // Off the Sandbox while the template keeps it: judged, and the Pod keeps its label.
    let decision = update(&both, &sandbox(None, Some(LAB)));
    assert!(decision.allowed(), "{decision:?}");
    assert_eq!(decision.scope, Scope::Governed);
}

#[test]
fn an_unreadable_old_object_counts_as_a_change() {
    let mut old = sandbox(None, Some(LAB));
    old["spec"]["podTemplate"]["metadata"]["labels"][AGENT_LABEL] = json!(1);
    let decision = update(&old, &sandbox(None, Some("nobody")));
    assert_eq!(decision.code, DecisionCode::DenyAgentNotFound);
}

#[test]
fn what_is_not_governed_passes_and_other_kinds_are_bad_requests() {
    let object = sandbox(None, Some("nobody"));
    let mut body: Value =
        serde_json::from_slice(&review("UPDATE", &object, Some(&object))).unwrap();
    body["request"]["subResource"] = json!("status");
    let status = decide(&serde_json::to_vec(&body).unwrap(), &view());
    assert_eq!(status.scope, Scope::Passthrough);
    let delete = decide(&review("DELETE", &object, None), &view());
    assert_eq!(delete.scope, Scope::Passthrough);

    let mut alpha = object.clone();
    alpha["apiVersion"] = json!("agents.x-k8s.io/v1alpha1");
    assert_eq!(create(&alpha).code, DecisionCode::DenyAgentNotFound);
    let mut claim = object.clone();
    claim["kind"] = json!("SandboxClaim");
    let decision = create(&claim);
    assert_eq!(decision.code, DecisionCode::DenyBadRequest);
    assert!(
        decision
            .reason
            .contains("not agents.x-k8s.io/v1beta1/SandboxClaim")
    );
}

#[test]
fn a_labelled_sandbox_without_a_template_is_a_bad_request() {
    let mut object = sandbox(Some(LAB), None);
    object["spec"] = json!({});
    assert_eq!(create(&object).code, DecisionCode::DenyBadRequest);
    let mut unlabelled = sandbox(None, None);
    unlabelled["spec"] = json!({});
    assert_eq!(create(&unlabelled).scope, Scope::Passthrough);
}

#[test]
fn unsynced_caches_deny() {
    let mut view = view();
    view.synced = false;
    let decision = decide(&review("CREATE", &sandbox(None, Some(LAB)), None), &view);
    assert_eq!(decision.code, DecisionCode::DenyUnavailable);
}
