//! agentgov attacked the way a tenant with ordinary namespace rights would (create and update
//! Agents and Pods, no `promote`), on the real control plane: each test is one hole that was
//! open, and stays closed.
//!
//! - Sandbox Pods meet the Pod Security Standards `restricted` level (privileged containers,
//!   host namespaces, added capabilities and host ports are refused), ephemeral containers too.
//! - The agent label cannot be added to a Pod that was never judged, nor removed from one that
//!   was, nor changed through `pods/status` or a Binding at all; unlabelled Pods and unrelated
//!   updates of agent Pods never reach the webhook.
//! - A Binding cannot unconfine a judged Pod's container by an AppArmor annotation.
//! - An expired sandbox cannot be revived by a longer TTL without the verb `extend`.
//! - A stricter PolicyBundle is in force at admission while the operator is down.
//! - A forged refusal written into an agent's status by someone else is healed.
//! - An agent being deleted keeps the spec its proof covers.
//! - A Pod of an agent that approves a runtime runs only its approved images (by digest), on
//!   CREATE, on an image UPDATE and in an ephemeral container.

use std::time::{Duration, Instant};

use agentgov_api::agent::GovernanceStatus;
use agentgov_api::conditions::{EXPIRED, is_true};
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::{Agent, AgentSpec};
use agentgov_e2e::admission::*;
use agentgov_e2e::webhook::plain_pod;
use agentgov_e2e::{api_error_message, apply_bundle, wait_for};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const LABEL_REMOVED: &str = "ADMISSION_DENY_AGENT_LABEL_REMOVED";
/// What the in-process guard of the agent label says of a change through a Pod subresource.
const THROUGH_SUBRESOURCE: &str = "may not add, change or remove the agentgov.dev/agent label";
const BINDING_ANNOTATION: &str = "may not set an AppArmor or mirror-Pod annotation";
/// What both guards of a sandbox's expiry say (the in-process policy and the webhook).
const LENGTHENED: &str = "may not move the expiry of sandbox";
const SANDBOX_EXTENDED: &str = "ADMISSION_ALLOW_SANDBOX_EXTENDED";
/// What both guards of a deleting agent's spec say (the in-process policy and the webhook).
const DELETING: &str = "is being deleted: its spec may not change";
const DENY_POLICY: &str = "ADMISSION_DENY_POLICY";
const RUNTIME_MISMATCH: &str = "ADMISSION_DENY_RUNTIME_MISMATCH";

/// A Pod meeting `restricted` (as `plain_pod`), labelled for `agent` if given, as JSON.
fn pod_json(name: &str, agent: Option<&str>) -> Value {
    let mut pod = serde_json::to_value(plain_pod(name)).expect("a Pod as JSON");
    if let Some(agent) = agent {
        pod["metadata"]["labels"] = json!({"agentgov.dev/agent": agent});
    }
    pod
}

/// `pod` with `value` at the JSON pointer `at` (objects on the way are made).
fn with(mut pod: Value, at: &str, value: Value) -> Value {
    let mut target = &mut pod;
    for key in at.trim_start_matches('/').split('/') {
        target = match target {
            Value::Array(items) => {
                let index: usize = key.parse().expect("an array index");
                &mut items[index]
            }
            other => {
                if !other.is_object() {
                    *other = json!({});
                }
                other
                    .as_object_mut()
                    .expect("an object")
                    .entry(key)
                    .or_insert(Value::Null)
            }
        };
    }
    *target = value;
    pod
}

fn as_pod(value: Value) -> Pod {
    serde_json::from_value(value).expect("a Pod")
}

fn with_temperature(temperature: f64) -> AgentSpec {
    let mut spec = governed_spec();
    if let Some(reasoning) = spec.anatomy.reasoning.as_mut() {
        reasoning.temperature = temperature;
    }
    spec
}

async fn valid_agent(setup: &Setup, name: &str, spec: AgentSpec) {
    create_approved(setup, name, spec).await;
}

#[tokio::test]
async fn sandbox_pods_meet_the_restricted_level_ephemeral_containers_too() {
    let setup = setup("tn-contain").await;
    create_agent(&setup, "lab", sandbox_spec(3600)).await;
    let privileged_init = json!([{
        "name": "init",
        "image": "registry.invalid/init:1",
        "securityContext": {"privileged": true, "allowPrivilegeEscalation": true},
    }]);
    let cases = [
        (
            "privileged",
            "/spec/containers/0/securityContext",
            json!({"privileged": true}),
            "privileged",
        ),
        (
            "privileged-init",
            "/spec/initContainers",
            privileged_init,
            "initContainers[0]",
        ),
        ("host-pid", "/spec/hostPID", json!(true), "hostPID"),
        ("host-ipc", "/spec/hostIPC", json!(true), "hostIPC"),
        (
            "net-admin",
            "/spec/containers/0/securityContext/capabilities/add",
            json!(["NET_ADMIN"]),
            "NET_ADMIN",
        ),
        (
            "sys-admin",
            "/spec/containers/0/securityContext/capabilities/add",
            json!(["SYS_ADMIN"]),
            "SYS_ADMIN",
        ),
        (
            "host-port",
            "/spec/containers/0/ports",
            json!([{"containerPort": 8080, "hostPort": 8080}]),
            "hostPort",
        ),
    ];
    for (name, at, value, field) in cases {
        let pod = as_pod(with(pod_json(name, Some("lab")), at, value));
        let message = refused(
            &setup,
            &format!("sandbox pod {name}"),
            CONTAINMENT_VIOLATION,
            creating(&setup.pods(), &pod),
        )
        .await;
        assert!(message.contains(field), "{name}: {message}");
        assert!(message.contains("restricted"), "{name}: {message}");
    }
    // An ordinary restricted Pod of the sandbox is admitted ...
    let pod = as_pod(pod_json("lab-0", Some("lab")));
    admitted(
        &setup,
        "restricted pod lab-0",
        creating(&setup.pods(), &pod),
    )
    .await;
    // ... and a privileged ephemeral container may not be added to it (kubectl debug),
    let debugger = |privileged: bool| {
        json!({"spec": {"ephemeralContainers": [{
            "name": if privileged { "root-shell" } else { "debugger" },
            "image": "registry.invalid/debug:1",
            "targetContainerName": "agent",
            "securityContext": if privileged {
                json!({"privileged": true})
            } else {
                json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}})
            },
        }]}})
    };
    let message = refused(
        &setup,
        "privileged ephemeral container",
        CONTAINMENT_VIOLATION,
        patching(
            &setup.pods(),
            "lab-0",
            Some("ephemeralcontainers"),
            debugger(true),
        ),
    )
    .await;
    assert!(message.contains("ephemeralContainers[0]"), "{message}");
    // ... while one that meets the level may.
    admitted(
        &setup,
        "restricted ephemeral container",
        patching(
            &setup.pods(),
            "lab-0",
            Some("ephemeralcontainers"),
            debugger(false),
        ),
    )
    .await;
}

#[tokio::test]
async fn the_agent_label_cannot_be_added_to_an_unjudged_pod_nor_removed_from_a_judged_one() {
    let setup = setup("tn-label").await;
    create_agent(&setup, "lab", sandbox_spec(3600)).await;
    let pods = setup.pods();
    // A Pod no one judged: unlabelled, and privileged.
    let loose = with(
        pod_json("loose", None),
        "/spec/containers/0/securityContext",
        json!({"privileged": true}),
    );
    pods.create(&PostParams::default(), &as_pod(loose))
        .await
        .expect("an unlabelled Pod is not an agent's: never reviewed");
    // Labelling it afterwards is judged as creating it would be.
    let label = |agent: Value| json!({"metadata": {"labels": {"agentgov.dev/agent": agent}}});
    refused(
        &setup,
        "label added to a privileged Pod",
        CONTAINMENT_VIOLATION,
        patching(&pods, "loose", None, label(json!("lab"))),
    )
    .await;
    refused(
        &setup,
        "label naming no agent added",
        AGENT_NOT_FOUND,
        patching(&pods, "loose", None, label(json!("ghost"))),
    )
    .await;
    // A judged Pod keeps its label: it can neither lose it nor name another agent.
    admitted(
        &setup,
        "pod lab-0",
        creating(&pods, &as_pod(pod_json("lab-0", Some("lab")))),
    )
    .await;
    let message = refused(
        &setup,
        "label removed from an agent Pod",
        LABEL_REMOVED,
        patching(&pods, "lab-0", None, label(Value::Null)),
    )
    .await;
    assert!(message.contains("delete the Pod"), "{message}");
    refused(
        &setup,
        "label changed to an unknown agent",
        AGENT_NOT_FOUND,
        patching(&pods, "lab-0", None, label(json!("ghost"))),
    )
    .await;
    // Its other metadata changes as usual.
    admitted(
        &setup,
        "annotation on an agent Pod",
        patching(
            &pods,
            "lab-0",
            None,
            json!({"metadata": {"annotations": {"note": "x"}}}),
        ),
    )
    .await;
    // A status write keeps the labels it is sent, and the webhook is not registered for
    // status writes: the API server's own guard refuses each of these label changes there.
    for (what, pod, value) in [
        ("label added through pods/status", "loose", json!("lab")),
        ("label removed through pods/status", "lab-0", Value::Null),
        ("label changed through pods/status", "lab-0", json!("ghost")),
    ] {
        let message = refused(
            &setup,
            what,
            THROUGH_SUBRESOURCE,
            patching(&pods, pod, Some("status"), label(value)),
        )
        .await;
        assert!(message.contains("through pods/status"), "{message}");
    }
    // Nor through a Binding, whose labels the API server copies onto the Pod it binds, by
    // either of its two paths; the Pod stays unbound.
    for (what, path) in [
        ("label added by pods/binding", "pods/loose/binding"),
        ("label added by a Binding", "bindings"),
    ] {
        let labelled = json!({"labels": {"agentgov.dev/agent": "lab"}});
        let message = refused(
            &setup,
            what,
            THROUGH_SUBRESOURCE,
            binding(&setup, path, labelled),
        )
        .await;
        assert!(message.contains("loose"), "{message}");
    }
    // A status write that leaves the label alone, as a kubelet's, is never refused.
    admitted(
        &setup,
        "status message of an agent Pod",
        patching(
            &pods,
            "lab-0",
            Some("status"),
            json!({"status": {"message": "status writes pass"}}),
        ),
    )
    .await;
    for (pod, agent) in [("loose", None), ("lab-0", Some("lab"))] {
        let found = pods.get(pod).await.unwrap();
        assert_eq!(
            found.spec.and_then(|s| s.node_name),
            None,
            "{pod} was bound"
        );
        let labels = found.metadata.labels;
        assert_eq!(
            labels.as_ref().and_then(|l| l.get("agentgov.dev/agent")),
            agent.map(String::from).as_ref(),
            "{pod}: {labels:?}"
        );
    }
}

/// A Binding's annotations are merged into its Pod without the check that forbids adding an
/// AppArmor or mirror-Pod annotation on any other path, and the kubelet prefers the AppArmor
/// annotation to the Pod's own profile: whoever may bind a Pod could run a container judged
/// `restricted` unconfined, or make the Pod pass for a mirror Pod. The API server's own guard
/// refuses both, and the Pod stays unbound and as judged.
#[tokio::test]
async fn a_binding_cannot_annotate_a_judged_pod_out_of_its_security_level() {
    let setup = setup("tn-bind").await;
    create_agent(&setup, "lab", sandbox_spec(3600)).await;
    admitted(
        &setup,
        "pod lab-0",
        creating(&setup.pods(), &as_pod(pod_json("lab-0", Some("lab")))),
    )
    .await;
    for (what, annotation, value) in [
        (
            "AppArmor unconfined by a Binding",
            "container.apparmor.security.beta.kubernetes.io/agent",
            "unconfined",
        ),
        (
            "mirror-Pod annotation added by a Binding",
            "kubernetes.io/config.mirror",
            "x",
        ),
    ] {
        let annotated = json!({"annotations": {annotation: value}});
        let message = refused(
            &setup,
            what,
            BINDING_ANNOTATION,
            binding(&setup, "pods/lab-0/binding", annotated),
        )
        .await;
        assert!(message.contains("lab-0"), "{message}");
    }
    let found = setup.pods().get("lab-0").await.unwrap();
    assert_eq!(
        found.spec.and_then(|s| s.node_name),
        None,
        "lab-0 was bound"
    );
    let annotations = found.metadata.annotations.unwrap_or_default();
    assert!(
        annotations
            .keys()
            .all(|k| !k.starts_with("container.apparmor") && k != "kubernetes.io/config.mirror"),
        "{annotations:?}"
    );
}

/// A Binding to a node with `metadata` (labels, annotations) POSTed to `path` under the setup's
/// namespace, as a repeatable attempt for [`refused`]: to `pods/<pod>/binding`, or to the older
/// `bindings`, which binds the Pod `loose`.
fn binding(
    setup: &Setup,
    path: &'static str,
    mut metadata: Value,
) -> impl Fn(PostParams) -> BoxFuture<'static, kube::Result<Value>> {
    let client = setup.client.clone();
    let url = format!("/api/v1/namespaces/{}/{path}", setup.ns.name);
    let pod = path
        .strip_prefix("pods/")
        .and_then(|p| p.strip_suffix("/binding"))
        .unwrap_or("loose");
    metadata["name"] = json!(pod);
    move |pp| {
        let (client, url) = (client.clone(), url.clone());
        let body = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": metadata,
            "target": {"kind": "Node", "name": "node-1"},
        });
        Box::pin(async move {
            let url = if pp.dry_run {
                format!("{url}?dryRun=All")
            } else {
                url
            };
            let request = http::Request::post(url)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body).expect("JSON"))
                .expect("a request");
            client.request::<Value>(request).await
        })
    }
}

#[tokio::test]
async fn unlabelled_pods_and_unrelated_updates_of_agent_pods_never_reach_the_webhook() {
    let mut setup = setup("tn-reach").await;
    create_agent(&setup, "lab", sandbox_spec(3600)).await;
    let pods = setup.pods();
    admitted(
        &setup,
        "pod lab-0",
        creating(&pods, &as_pod(pod_json("lab-0", Some("lab")))),
    )
    .await;
    pods.create(&PostParams::default(), &as_pod(pod_json("plain-0", None)))
        .await
        .expect("an unlabelled Pod");
    // With the webhook gone and failurePolicy Fail, whatever is sent to it fails ...
    setup.webhook.kill();
    let probe = as_pod(pod_json("probe", Some("lab")));
    wait_for(SETTLE, || {
        let pods = pods.clone();
        let probe = probe.clone();
        async move {
            let dry = PostParams {
                dry_run: true,
                ..PostParams::default()
            };
            let e = pods.create(&dry, &probe).await.err()?;
            api_error_message(&e)
                .contains("failed calling webhook")
                .then_some(())
        }
    })
    .await
    .expect("agent Pods fail closed without the webhook");
    // ... so whatever still succeeds was never sent: unlabelled Pods and their updates,
    pods.create(&PostParams::default(), &as_pod(pod_json("plain-1", None)))
        .await
        .expect("an unlabelled Pod is created without the webhook");
    for (pod, patch) in [
        (
            "plain-0",
            json!({"metadata": {"labels": {"app": "x"}, "annotations": {"a": "b"}}}),
        ),
        // and updates of agent Pods that leave the agent label alone.
        (
            "lab-0",
            json!({"metadata": {"labels": {"app": "x"}, "annotations": {"a": "b"}}}),
        ),
    ] {
        pods.patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("update of {pod} reached the webhook: {e}"));
    }
    // A label change is sent (and fails closed).
    let e = pods
        .patch(
            "lab-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"agentgov.dev/agent": "other"}}})),
        )
        .await
        .expect_err("a label change is reviewed");
    assert!(
        api_error_message(&e).contains("failed calling webhook"),
        "{e}"
    );
}

#[tokio::test]
async fn an_expired_sandbox_cannot_be_revived_without_the_verb_extend() {
    let setup = setup("tn-revive").await;
    create_agent(&setup, "brief", sandbox_spec(3)).await;
    wait_agent(&setup, "brief", "Expired", |a| {
        a.status
            .as_ref()
            .is_some_and(|s| is_true(&s.conditions, EXPIRED))
    })
    .await;
    let pods = setup.pods();
    refused(
        &setup,
        "pod of an expired sandbox",
        SANDBOX_EXPIRED,
        creating(&pods, &as_pod(pod_json("brief-0", Some("brief")))),
    )
    .await;
    // mallory may update agents, not extend them.
    let everyday = ["get", "list", "watch", "create", "update", "patch"];
    grant(
        &setup,
        "agent-writer",
        "mallory",
        json!([{"apiGroups": ["agentgov.dev"], "resources": ["agents"], "verbs": everyday}]),
    )
    .await;
    let mut extender = everyday.to_vec();
    extender.push("extend");
    grant(
        &setup,
        "sandbox-extender",
        "erin",
        json!([{"apiGroups": ["agentgov.dev"], "resources": ["agents"], "verbs": extender}]),
    )
    .await;
    wait_rbac(&setup, "mallory", "update").await;
    wait_rbac(&setup, "erin", "extend").await;
    let longer = json!({"spec": {"sandbox": {"ttlSeconds": 3600}}});
    let mallory: Api<Agent> = Api::namespaced(client_as("mallory").await, &setup.ns.name);
    // Refused by the API server's own admission (the agentgov guards) before the webhook is
    // asked; the webhook refuses the same (ADMISSION_DENY_SANDBOX_EXTENSION) where the guards
    // are not installed (webhook/tests/agent_paths.rs).
    let message = refused(
        &setup,
        "a longer TTL by mallory",
        LENGTHENED,
        patching(&mallory, "brief", None, longer),
    )
    .await;
    assert!(message.contains("recreate it"), "{message}");
    // An expiresAt later than the expiry is the same request in another form.
    let later_at = json!({"spec": {"sandbox": {"ttlSeconds": null,
        "expiresAt": jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_hours(1)).expect("a time").to_string()}}});
    refused(
        &setup,
        "a later expiresAt by mallory",
        LENGTHENED,
        patching(&mallory, "brief", None, later_at),
    )
    .await;
    // Shortening is always allowed (it stays expired).
    refused(
        &setup,
        "a shorter TTL of an expired sandbox",
        SANDBOX_EXPIRED,
        patching(
            &mallory,
            "brief",
            None,
            json!({"spec": {"sandbox": {"ttlSeconds": 1}}}),
        ),
    )
    .await;
    // Nor is a round trip through governed (the governed spec holds no sandbox life; the
    // policy alone judges it, so mallory may ask for it).
    bundle_in_force(&setup, &default_bundle_spec()).await;
    admitted(
        &setup,
        "a promotion request by mallory",
        patching(
            &mallory,
            "brief",
            None,
            json!({"spec": {"mode": "governed"}}),
        ),
    )
    .await;
    refused(
        &setup,
        "back to the sandbox with a longer TTL by mallory",
        LENGTHENED,
        patching(
            &mallory,
            "brief",
            None,
            json!({"spec": {"mode": "sandbox", "sandbox": {"ttlSeconds": 3600}}}),
        ),
    )
    .await;
    // erin holds `extend`: an audited extension (back to the sandbox), after which its Pods
    // run again.
    let erin: Api<Agent> = Api::namespaced(client_as("erin").await, &setup.ns.name);
    let back = json!({"spec": {"mode": "sandbox", "sandbox": {"ttlSeconds": 3600}}});
    admitted(
        &setup,
        "back to the sandbox with a longer TTL by erin",
        patching(&erin, "brief", None, back),
    )
    .await;
    assert!(
        setup
            .webhook
            .logs()
            .lines()
            .any(|l| l.contains(SANDBOX_EXTENDED)
                && l.contains("\"erin\"")
                && l.contains("\"brief\"")),
        "the extension is logged with its own code and its requester\n{}",
        setup.diagnostics()
    );
    admitted(
        &setup,
        "pod of the extended sandbox",
        creating(&pods, &as_pod(pod_json("brief-1", Some("brief")))),
    )
    .await;
}

/// The API server's own guard does not know the default sandbox TTL (a flag of the operator
/// and the webhook, which may be shorter than 72h), so with the webhook away a sandbox of the
/// default life cannot be given a life of its own without `extend`, however short: it was
/// compared with a default of 72h, and a TTL of 48h passed where the default was 1h. Changes
/// that leave the life alone, and shortening a life named, still pass.
#[tokio::test]
async fn without_the_webhook_a_sandbox_of_the_default_life_gets_no_life_of_its_own() {
    let hour = ["--default-sandbox-ttl=1h"];
    let mut setup = setup_with_flags("tn-default", KeyKind::Ed25519, &hour, &hour).await;
    let mut default_life = sandbox_spec(1);
    default_life.sandbox = None;
    let plain = create_agent(&setup, "plain", default_life).await;
    let created = plain.metadata.creation_timestamp.expect("created").0;
    let an_hour = |a: &Agent| {
        a.status
            .as_ref()
            .and_then(|s| s.expires_at.as_ref())
            .map(|t| t.0)
            == Some(created + jiff::SignedDuration::from_hours(1))
    };
    wait_agent(&setup, "plain", "an hour to live", an_hour).await;
    create_agent(&setup, "named", sandbox_spec(3600)).await;
    setup.deregister().await;
    person(&setup, "mallory", false).await;
    let mallory: Api<Agent> = Api::namespaced(client_as("mallory").await, &setup.ns.name);
    let patch = |name: &'static str, body: Value| {
        let mallory = mallory.clone();
        async move {
            mallory
                .patch(name, &PatchParams::default(), &Patch::Merge(body))
                .await
        }
    };
    let refused = patch(
        "plain",
        json!({"spec": {"sandbox": {"ttlSeconds": 172_800}}}),
    )
    .await
    .expect_err("a life of its own without extend");
    let message = api_error_message(&refused);
    assert!(message.contains(LENGTHENED), "{message}");
    patch(
        "plain",
        json!({"spec": {"description": "still the default life"}}),
    )
    .await
    .expect("a change that leaves the life alone");
    let judged_again =
        |a: &Agent| a.status.as_ref().and_then(|s| s.observed_generation) == a.metadata.generation;
    let plain = wait_agent(&setup, "plain", "judged again", judged_again).await;
    assert!(an_hour(&plain), "{:?}", plain.status);
    patch("named", json!({"spec": {"sandbox": {"ttlSeconds": 1800}}}))
        .await
        .expect("a shorter life named");
    let message = api_error_message(
        &patch("named", json!({"spec": {"sandbox": null}}))
            .await
            .expect_err("dropping the life named without extend"),
    );
    assert!(message.contains(LENGTHENED), "{message}");
}

#[tokio::test]
async fn a_stricter_policy_is_in_force_at_admission_while_the_operator_is_down() {
    let mut setup = setup("tn-frozen").await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    valid_agent(&setup, "hot", with_temperature(0.2)).await;
    valid_agent(&setup, "cool", with_temperature(0.1)).await;
    let pods = setup.pods();
    for agent in ["hot", "cool"] {
        admitted(
            &setup,
            &format!("pod of {agent}"),
            creating(&pods, &as_pod(pod_json(&format!("{agent}-0"), Some(agent)))),
        )
        .await;
    }
    setup.operator.kill();
    // Compliance agents may now sample up to 0.1.
    let mut strict = default_bundle_spec();
    strict.version = "1.1.0".into();
    strict.data.temperature_limits.compliance = 0.1;
    apply_bundle(&setup.ns, strict)
        .await
        .expect("apply the stricter bundle");
    let message = refused(
        &setup,
        "pod of an agent the new policy denies",
        POLICY_HASH_MISMATCH,
        creating(&pods, &as_pod(pod_json("hot-1", Some("hot")))),
    )
    .await;
    assert!(
        message.contains("now in force, denies it") && message.contains("temperature"),
        "{message}"
    );
    admitted(
        &setup,
        "pod of an agent the new policy allows",
        creating(&pods, &as_pod(pod_json("cool-1", Some("cool")))),
    )
    .await;
    let message = refused(
        &setup,
        "a new governed agent the new policy denies",
        DENY_POLICY,
        creating(&setup.agents(), &Agent::new("hot-2", with_temperature(0.2))),
    )
    .await;
    assert!(message.contains("temperature"), "{message}");
    // The webhook did this alone: the operator, down, still shows the old judgement.
    let hot = setup.agents().get("hot").await.expect("agent hot");
    assert_eq!(governance(&hot), Some(GovernanceStatus::GovernedValid));
}

#[tokio::test]
async fn a_forged_refusal_is_healed_while_the_operator_runs() {
    let setup = setup("tn-forge").await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    valid_agent(&setup, "auditor", governed_spec()).await;
    grant(
        &setup,
        "status-writer",
        "mallory",
        json!([{"apiGroups": ["agentgov.dev"], "resources": ["agents/status"],
                "verbs": ["get", "update", "patch"]}]),
    )
    .await;
    wait_access(
        &setup,
        "mallory",
        "agentgov.dev",
        "agents",
        "status",
        "patch",
    )
    .await;
    let mallory: Api<Agent> = Api::namespaced(client_as("mallory").await, &setup.ns.name);
    let forged = json!({"status": {
        "governanceStatus": "GOVERNED_INVALIDATED",
        "proof": null,
        "denies": ["quarantined by the security team"],
    }});
    let started = Instant::now();
    let written = mallory
        .patch_status("auditor", &PatchParams::default(), &Patch::Merge(&forged))
        .await
        .expect("mallory may write the status");
    assert_eq!(
        governance(&written),
        Some(GovernanceStatus::GovernedInvalidated),
        "the forged refusal was written"
    );
    let healed = agentgov_e2e::wait_agent(
        &setup.agents(),
        "auditor",
        "healed",
        Duration::from_secs(10),
        |a| {
            governance(a) == Some(GovernanceStatus::GovernedValid)
                && a.status.as_ref().is_some_and(|s| {
                    s.proof.is_some() && !s.denies.iter().any(|d| d.contains("security team"))
                })
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", setup.diagnostics()));
    println!("forged refusal healed in {:?}", started.elapsed());
    assert!(healed.status.is_some());
    admitted(
        &setup,
        "pod of the healed agent",
        creating(
            &setup.pods(),
            &as_pod(pod_json("auditor-0", Some("auditor"))),
        ),
    )
    .await;
}

#[tokio::test]
async fn an_agent_being_deleted_keeps_the_spec_its_proof_covers() {
    let setup = setup("tn-delete").await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    let mut agent = Agent::new("auditor", governed_spec());
    agent.metadata.finalizers = Some(vec!["e2e.agentgov.dev/hold".into()]);
    admitted(
        &setup,
        "agent with a finalizer",
        creating(&setup.agents(), &agent),
    )
    .await;
    approve(&setup, "auditor").await;
    wait_agent(&setup, "auditor", "GOVERNED_VALID", |a| {
        governance(a) == Some(GovernanceStatus::GovernedValid)
    })
    .await;
    let agents = setup.agents();
    agents
        .delete("auditor", &DeleteParams::default())
        .await
        .expect("delete the agent");
    wait_agent(&setup, "auditor", "deleting", |a| {
        a.metadata.deletion_timestamp.is_some()
    })
    .await;
    // Not even a user holding `promote` (the cluster admin here) may change its spec now.
    let message = refused(
        &setup,
        "spec change of a deleting agent",
        DELETING,
        patching(
            &agents,
            "auditor",
            None,
            json!({"spec": {"anatomy": {"reasoning": {"temperature": 0.25}}}}),
        ),
    )
    .await;
    assert!(message.contains("being deleted"), "{message}");
    // The deletion itself goes on: the finalizer can be removed.
    agents
        .patch(
            "auditor",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("remove the finalizer");
    agentgov_e2e::wait_gone(&agents, "auditor", WAIT)
        .await
        .expect("the agent is gone");
}

#[tokio::test]
async fn a_pod_runs_only_the_images_its_agent_approved() {
    let setup = setup("tn-runtime").await;
    // A bundle that requires a runtime: a governed agent without one is refused at apply.
    let mut bundle = default_bundle_spec();
    bundle.version = "require-runtime".into();
    bundle.data.runtime = Some(agentgov_api::policy_bundle::RuntimeData {
        require_images: true,
        ..Default::default()
    });
    bundle_in_force(&setup, &bundle).await;
    let message = refused(
        &setup,
        "a governed agent without a runtime",
        DENY_POLICY,
        creating(&setup.agents(), &Agent::new("unbound", governed_spec())),
    )
    .await;
    assert!(message.contains("spec.runtime.images"), "{message}");
    let digest = "sha256:4f2b9c1e0d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c";
    let approved = format!("registry.invalid/agent@{digest}");
    let mut spec = governed_spec();
    spec.runtime = Some(agentgov_api::runtime::RuntimeSpec {
        images: vec![approved.clone()],
        ..Default::default()
    });
    // The schema refuses a runtime image given by tag alone, and says why.
    let mut tagged = spec.clone();
    tagged.runtime = Some(agentgov_api::runtime::RuntimeSpec {
        images: vec!["registry.invalid/agent:1".into()],
        ..Default::default()
    });
    let e = setup
        .agents()
        .create(&PostParams::default(), &Agent::new("tagged", tagged))
        .await
        .expect_err("a tag alone is refused by the schema");
    assert!(
        api_error_message(&e).contains("must be pinned by digest"),
        "{e}"
    );
    create_approved(&setup, "bound", spec).await;
    let pods = setup.pods();
    let running = |name: &str, image: &str| {
        as_pod(with(
            pod_json(name, Some("bound")),
            "/spec/containers/0/image",
            json!(image),
        ))
    };
    let message = refused(
        &setup,
        "a Pod of another image",
        RUNTIME_MISMATCH,
        creating(&pods, &running("other", "registry.invalid/agent:1")),
    )
    .await;
    assert!(message.contains("spec.containers[0]"), "{message}");
    admitted(
        &setup,
        "a Pod of the approved image",
        creating(&pods, &running("bound-0", &approved)),
    )
    .await;
    // Its image cannot be swapped afterwards, nor another image debugged into it ...
    let set_image = |image: &str| {
        let (pods, image) = (pods.clone(), image.to_string());
        move |pp: PostParams| {
            let (pods, image) = (pods.clone(), image.clone());
            Box::pin(async move {
                let params = PatchParams {
                    dry_run: pp.dry_run,
                    ..PatchParams::default()
                };
                // A strategic merge patch merges containers by name (a merge patch would
                // replace the list, which a Pod update may not).
                let patch = json!({"spec": {"containers": [{"name": "agent", "image": image}]}});
                pods.patch("bound-0", &params, &Patch::Strategic(patch))
                    .await
            }) as BoxFuture<'static, kube::Result<Pod>>
        }
    };
    refused(
        &setup,
        "the image of an agent Pod changed",
        RUNTIME_MISMATCH,
        set_image("registry.invalid/evil:1"),
    )
    .await;
    refused(
        &setup,
        "an ephemeral container of another image",
        RUNTIME_MISMATCH,
        patching(
            &pods,
            "bound-0",
            Some("ephemeralcontainers"),
            json!({"spec": {"ephemeralContainers": [{
                "name": "debugger",
                "image": "busybox:1.36",
                "targetContainerName": "agent",
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]},
                    "runAsNonRoot": true,
                    "seccompProfile": {"type": "RuntimeDefault"}
                }
            }]}}),
        ),
    )
    .await;
    // ... while its other metadata changes as usual.
    admitted(
        &setup,
        "annotation on a bound agent Pod",
        patching(
            &pods,
            "bound-0",
            None,
            json!({"metadata": {"annotations": {"note": "x"}}}),
        ),
    )
    .await;
}
