//! Properties of the AdmissionReview parser + decision path: arbitrary bytes never allow and
//! never panic; a mutated valid review is allowed only when it still says the same thing in
//! every field the decision reads (or is outside what agentgov governs).
#![allow(clippy::unwrap_used)] // tests may unwrap (clippy.toml: allow-unwrap-in-tests)

mod common;

use std::sync::OnceLock;

use agentgov_api::expiry::ExpiryPolicy;
use agentgov_webhook::admit::{
    Reviewed, review_agent, review_bundle, review_pod, review_promotion,
};
use agentgov_webhook::authz::FixedAuthorizer;
use agentgov_webhook::testing::StaticView;
use common::*;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

fn view() -> &'static StaticView {
    static VIEW: OnceLock<StaticView> = OnceLock::new();
    VIEW.get_or_init(|| world().view)
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    })
}

fn pod(body: &[u8]) -> Reviewed<'_> {
    review_pod(body, view(), &ExpiryPolicy::default(), now())
}

fn agent(body: &[u8]) -> Reviewed<'_> {
    let authz = FixedAuthorizer::new(Ok(true));
    let slots = Semaphore::new(1);
    runtime().block_on(review_agent(
        body,
        view(),
        &authz,
        &ExpiryPolicy::default(),
        now(),
        &slots,
    ))
}

fn promotion(body: &[u8]) -> Reviewed<'static> {
    let authz = FixedAuthorizer::new(Ok(true));
    let slots = Semaphore::new(1);
    runtime().block_on(review_promotion(body, view(), &authz, &slots))
}

fn bundle(body: &[u8]) -> Reviewed<'static> {
    let slots = Semaphore::new(1);
    runtime().block_on(review_bundle(body, &slots, None, None))
}

fn valid_promotion() -> Value {
    promotion_create(
        GOVERNED,
        &agentgov_api::hash::spec_hash(&governed_spec()).unwrap(),
    )
}

fn valid_pod(sandbox: bool) -> Value {
    pod_review(Some(if sandbox { SANDBOX } else { GOVERNED }))
}

/// Which request and which agent a review is about: what must not change for an allow.
fn identity(v: &Value) -> Value {
    let req = &v["request"];
    let object = &req["object"];
    let namespace = match &req["namespace"] {
        Value::String(ns) if !ns.is_empty() => json!(ns),
        _ => object["metadata"]["namespace"].clone(),
    };
    json!({
        "apiVersion": v["apiVersion"],
        "kind": v["kind"],
        "gvk": req["kind"],
        "operation": req["operation"],
        "subResource": req["subResource"],
        "namespace": namespace,
        "agent": object["metadata"]["labels"]["agentgov.dev/agent"],
    })
}

/// Containment as the Pod shows it, judged independently of the webhook's code: no volume
/// sets a source outside what a sandbox without persistent writes may use. A key that is no
/// Volume field at all (a byte deletion makes `mptyDir` of `emptyDir`) is not a source: the API
/// server never sends one (it decodes the Pod into its type first), and upstream's checks,
/// which read that type, do not see it either.
fn contained(pod: &Value) -> bool {
    /// The volume sources of core/v1 Volume that a contained sandbox may not set.
    const FORBIDDEN: [&str; 24] = [
        "hostPath",
        "gcePersistentDisk",
        "awsElasticBlockStore",
        "gitRepo",
        "nfs",
        "iscsi",
        "glusterfs",
        "persistentVolumeClaim",
        "rbd",
        "flexVolume",
        "cinder",
        "cephfs",
        "flocker",
        "fc",
        "azureFile",
        "vsphereVolume",
        "quobyte",
        "azureDisk",
        "photonPersistentDisk",
        "portworxVolume",
        "scaleIO",
        "storageos",
        "csi",
        "ephemeral",
    ];
    let spec = &pod["spec"];
    let volumes_ok = match &spec["volumes"] {
        Value::Null => true,
        Value::Array(volumes) => volumes.iter().all(|v| {
            v.as_object().is_some_and(|fields| {
                fields
                    .iter()
                    .all(|(k, value)| value.is_null() || !FORBIDDEN.contains(&k.as_str()))
            })
        }),
        _ => false,
    };
    volumes_ok && spec["hostNetwork"] != json!(true)
}

/// Outside agentgov's remit, so an allow is right whatever else changed.
fn out_of_scope(v: &Value) -> bool {
    let req = &v["request"];
    let op = req["operation"].as_str().unwrap_or_default();
    let sub = req["subResource"].as_str().unwrap_or_default();
    let labelled = req["object"]["metadata"]["labels"]
        .get("agentgov.dev/agent")
        .is_some();
    op == "DELETE" || (!sub.is_empty()) || (op != "CREATE" && !op.is_empty()) || !labelled
}

/// An allow is acceptable only for a body that is valid JSON whose uid the answer carries,
/// and that is either out of scope or about the same request and agent as the valid one
/// (and, for a sandbox, a contained Pod).
fn check_allow(body: &[u8], reviewed: &Reviewed, sandbox: bool) -> Result<(), TestCaseError> {
    if !reviewed.allowed() {
        return Ok(());
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| TestCaseError::fail(format!("allowed a body that is not JSON: {e}")))?;
    let uid = value["request"]["uid"].as_str().unwrap_or_default();
    prop_assert!(!uid.is_empty(), "allowed without a uid");
    prop_assert_eq!(reviewed.answer().uid(), uid);
    if out_of_scope(&value) {
        return Ok(());
    }
    prop_assert!(
        identity(&value) == identity(&valid_pod(sandbox)),
        "allowed a review about another request or agent: {}",
        identity(&value)
    );
    if sandbox {
        prop_assert!(
            contained(&value["request"]["object"]),
            "allowed an uncontained sandbox pod: {}",
            value["request"]["object"]["spec"]
        );
    }
    Ok(())
}

/// Every JSON pointer in a value.
fn pointers(value: &Value, prefix: String, out: &mut Vec<String>) {
    out.push(prefix.clone());
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let escaped = k.replace('~', "~0").replace('/', "~1");
                pointers(v, format!("{prefix}/{escaped}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                pointers(v, format!("{prefix}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn replacement() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None), // remove
        Just(Some(Value::Null)),
        any::<bool>().prop_map(|b| Some(json!(b))),
        any::<i64>().prop_map(|n| Some(json!(n))),
        any::<f64>().prop_map(|n| Some(json!(n))),
        ".{0,24}".prop_map(|s| Some(json!(s))),
        Just(Some(json!([]))),
        Just(Some(json!({}))),
        Just(Some(json!("DELETE"))),
        Just(Some(json!("UPDATE"))),
        Just(Some(json!("nobody"))),
        Just(Some(json!("team-b"))),
        Just(Some(
            json!({"name": "data", "persistentVolumeClaim": {"claimName": "d"}})
        )),
    ]
}

fn mutate(value: &mut Value, pointer: &str, with: Option<Value>) {
    if pointer.is_empty() {
        *value = with.unwrap_or(Value::Null);
        return;
    }
    match with {
        Some(new) => {
            if let Some(slot) = value.pointer_mut(pointer) {
                *slot = new;
            }
        }
        None => {
            let (parent, last) = pointer.rsplit_once('/').unwrap_or(("", pointer));
            let key = last.replace("~1", "/").replace("~0", "~");
            match value.pointer_mut(parent) {
                Some(Value::Object(map)) => {
                    map.remove(&key);
                }
                Some(Value::Array(items)) => {
                    if let Ok(i) = key.parse::<usize>()
                        && i < items.len()
                    {
                        items.remove(i);
                    }
                }
                _ => {}
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_allow_a_pod(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let reviewed = pod(&body);
        prop_assert!(!reviewed.allowed());
    }

    #[test]
    fn arbitrary_json_never_allows_a_pod(text in "\\{\"(apiVersion|kind|request)\":.{0,200}\\}") {
        let reviewed = pod(text.as_bytes());
        prop_assert!(!reviewed.allowed());
    }

    #[test]
    fn byte_mutations_of_a_valid_pod_review(
        sandbox in any::<bool>(),
        edits in proptest::collection::vec((any::<Index>(), any::<u8>()), 1..6),
    ) {
        let mut body = bytes(&valid_pod(sandbox));
        for (at, byte) in edits {
            let i = at.index(body.len());
            body[i] = byte;
        }
        let reviewed = pod(&body);
        check_allow(&body, &reviewed, sandbox)?;
    }

    #[test]
    fn byte_deletions_and_truncations_of_a_valid_pod_review(
        sandbox in any::<bool>(),
        cut in any::<Index>(),
        len in 1usize..64,
    ) {
        let full = bytes(&valid_pod(sandbox));
        let start = cut.index(full.len());
        let end = (start + len).min(full.len());
        let mut body = full[..start].to_vec();
        body.extend_from_slice(&full[end..]);
        let reviewed = pod(&body);
        check_allow(&body, &reviewed, sandbox)?;
        let truncated = &full[..start];
        prop_assert!(!pod(truncated).allowed());
    }

    #[test]
    fn structural_mutations_of_a_valid_pod_review(
        sandbox in any::<bool>(),
        picks in proptest::collection::vec((any::<Index>(), replacement()), 1..4),
    ) {
        let mut value = valid_pod(sandbox);
        for (pick, with) in picks {
            let mut all = Vec::new();
            pointers(&value, String::new(), &mut all);
            let pointer = all[pick.index(all.len())].clone();
            mutate(&mut value, &pointer, with);
        }
        let body = bytes(&value);
        let reviewed = pod(&body);
        check_allow(&body, &reviewed, sandbox)?;
    }

    #[test]
    fn arbitrary_bytes_never_allow_an_agent(body in proptest::collection::vec(any::<u8>(), 0..1024)) {
        prop_assert!(!agent(&body).allowed());
    }

    #[test]
    fn arbitrary_bytes_never_allow_a_promotion_or_a_bundle(
        body in proptest::collection::vec(any::<u8>(), 0..1024),
    ) {
        prop_assert!(!promotion(&body).allowed());
        prop_assert!(!bundle(&body).allowed());
    }

    #[test]
    fn mutations_of_a_promotion_review_allow_only_the_same_approval(
        picks in proptest::collection::vec((any::<Index>(), replacement()), 1..4),
    ) {
        let valid = valid_promotion();
        let mut value = valid.clone();
        for (pick, with) in picks {
            let mut all = Vec::new();
            pointers(&value, String::new(), &mut all);
            let pointer = all[pick.index(all.len())].clone();
            mutate(&mut value, &pointer, with);
        }
        let body = bytes(&value);
        let reviewed = promotion(&body);
        if reviewed.allowed() {
            let parsed = agentgov_webhook::review::parse(&body);
            prop_assert!(parsed.is_ok(), "allowed an unparsable review");
            let req = parsed.unwrap();
            prop_assert_eq!(reviewed.answer().uid(), req.uid.as_str());
            // Either outside what is reviewed, or the approval of the same spec of the same agent.
            let reviewed_create = req.operation == kube::core::admission::Operation::Create
                && req.sub_resource.as_deref().is_none_or(str::is_empty);
            if reviewed_create {
                let spec = &value["request"]["object"]["spec"];
                let want = &valid["request"]["object"]["spec"];
                prop_assert_eq!(&spec["agent"], &want["agent"]);
                prop_assert_eq!(&spec["specHash"], &want["specHash"]);
            }
        }
    }

    #[test]
    fn mutations_of_an_agent_review_never_panic_and_allow_only_parsable_reviews(
        picks in proptest::collection::vec((any::<Index>(), replacement()), 1..4),
    ) {
        let mut value = agent_create("auditor-2", &governed_spec());
        for (pick, with) in picks {
            let mut all = Vec::new();
            pointers(&value, String::new(), &mut all);
            let pointer = all[pick.index(all.len())].clone();
            mutate(&mut value, &pointer, with);
        }
        let body = bytes(&value);
        let reviewed = agent(&body);
        if reviewed.allowed() {
            let parsed = agentgov_webhook::review::parse(&body);
            prop_assert!(parsed.is_ok(), "allowed an unparsable review");
            let uid = parsed.map(|r| r.uid).unwrap_or_default();
            prop_assert_eq!(reviewed.answer().uid(), uid);
        }
    }
}

#[test]
fn the_valid_input_is_allowed() {
    // The property above would be vacuous if the baseline did not pass.
    assert!(pod(&bytes(&valid_pod(false))).allowed());
    assert!(pod(&bytes(&valid_pod(true))).allowed());
    assert!(agent(&bytes(&agent_create("auditor-2", &governed_spec()))).allowed());
    assert!(promotion(&bytes(&valid_promotion())).allowed());
}

/// `POST /v1/admit`'s step from body to decision (an orchestrator outside Kubernetes).
fn external(body: &[u8]) -> agentgov_webhook::external::Admitted {
    agentgov_webhook::external::admit(body, view(), &ExpiryPolicy::default(), now(), "")
}

fn valid_external(sandbox: bool) -> Value {
    json!({"namespace": NS, "agent": if sandbox { SANDBOX } else { GOVERNED }, "images": ["registry.example/agents/invoice-auditor:1.2.0"]})
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_allow_an_external_start(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        prop_assert!(!external(&body).answer.allowed);
    }

    #[test]
    fn byte_mutations_of_an_external_request_allow_only_an_allowed_agent(
        sandbox in any::<bool>(),
        edits in proptest::collection::vec((any::<Index>(), any::<u8>()), 1..6),
    ) {
        let mut body = bytes(&valid_external(sandbox));
        for (at, byte) in edits {
            let i = at.index(body.len());
            body[i] = byte;
        }
        let admitted = external(&body);
        prop_assert_eq!(admitted.answer.allowed, admitted.decision.allowed());
        if admitted.answer.allowed {
            let parsed = agentgov_webhook::external::AdmitRequest::parse(&body);
            prop_assert!(parsed.is_ok(), "allowed an unparsable request");
            let request = parsed.unwrap();
            prop_assert_eq!(request.namespace.as_str(), NS);
            prop_assert!([GOVERNED, SANDBOX].contains(&request.agent.as_str()), "{}", request.agent);
            prop_assert_eq!(&admitted.answer.agent, &request.agent);
        }
    }
}

#[test]
fn the_valid_external_requests_are_allowed() {
    // The property above would be vacuous if the baseline did not pass.
    assert!(external(&bytes(&valid_external(false))).answer.allowed);
    assert!(external(&bytes(&valid_external(true))).answer.allowed);
}
