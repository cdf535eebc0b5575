//! Test builders: Pods as JSON, edited by JSON pointer, and what a level says of them.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{PodSecurityLevel, PodView, Violation, evaluate};

/// Each kind of container of the base Pods: its JSON pointer, its field path and its name.
pub(super) const CONTAINERS: [(&str, &str, &str); 3] = [
    ("/spec/initContainers/0", "spec.initContainers[0]", "init"),
    ("/spec/containers/1", "spec.containers[1]", "sidecar"),
    (
        "/spec/ephemeralContainers/0",
        "spec.ephemeralContainers[0]",
        "debug",
    ),
];

/// A Pod that meets baseline and not restricted: every kind of container, nothing set.
pub(super) fn baseline_pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "annotations": {"team": "x"}},
        "spec": {
            "initContainers": [{"name": "init", "image": "i"}],
            "containers": [{"name": "app", "image": "i"}, {"name": "sidecar", "image": "i"}],
            "ephemeralContainers": [{"name": "debug", "image": "i"}],
            "volumes": [{"name": "scratch", "emptyDir": {}}]
        }
    })
}

/// A Pod that meets restricted: the base Pod with what restricted requires, set the least way.
pub(super) fn restricted_pod() -> Value {
    let mut pod = baseline_pod();
    set(&mut pod, "/spec/securityContext/runAsNonRoot", json!(true));
    set(
        &mut pod,
        "/spec/securityContext/seccompProfile",
        json!({"type": "RuntimeDefault"}),
    );
    for pointer in [
        "/spec/initContainers/0",
        "/spec/containers/0",
        "/spec/containers/1",
        "/spec/ephemeralContainers/0",
    ] {
        set(
            &mut pod,
            &format!("{pointer}/securityContext"),
            json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}),
        );
    }
    pod
}

/// Sets the value at a JSON pointer (`~1` for `/`), creating missing objects on the way (array
/// elements must exist).
pub(super) fn set(doc: &mut Value, pointer: &str, value: Value) {
    let mut at = doc;
    for token in pointer.trim_start_matches('/').split('/') {
        let token = token.replace("~1", "/").replace("~0", "~");
        at = match at {
            Value::Array(items) => &mut items[token.parse::<usize>().unwrap()],
            other => {
                if !other.is_object() {
                    *other = json!({});
                }
                other
                    .as_object_mut()
                    .unwrap()
                    .entry(token.as_str())
                    .or_insert(Value::Null)
            }
        };
    }
    *at = value;
}

/// A copy of `doc` with the value at `pointer` set.
pub(super) fn with(doc: &Value, pointer: &str, value: Value) -> Value {
    let mut doc = doc.clone();
    set(&mut doc, pointer, value);
    doc
}

/// The view of a Pod, borrowing from its JSON.
pub(super) fn view(pod: &Value) -> PodView<'_> {
    PodView::deserialize(pod).unwrap()
}

pub(super) fn violations(level: PodSecurityLevel, pod: &Value) -> Vec<Violation> {
    evaluate(level, &view(pod))
}

/// What a level denies of a Pod, as (check, field).
pub(super) fn denied(level: PodSecurityLevel, pod: &Value) -> Vec<(&'static str, String)> {
    violations(level, pod)
        .into_iter()
        .map(|v| (v.check, v.field))
        .collect()
}

/// One expected violation.
pub(super) fn deny(check: &'static str, field: impl Into<String>) -> (&'static str, String) {
    (check, field.into())
}
