//! The parts of a Pod AdmissionReview that a decision reads, deserialized directly from the
//! body. Everything else (containers, managed fields, annotations, status) is skipped by the
//! parser without being built: a Pod review is mostly fields no decision looks at, and building
//! them into a `DynamicObject` (a `serde_json::Value` behind a flattened map) was most of the
//! cost of a review.
//!
//! Required fields are those kube's `AdmissionRequest` requires, so a body that kube would
//! refuse is refused here too.

use std::collections::BTreeMap;

use kube::core::admission::Operation;
use kube::core::gvk::GroupVersionKind;
use serde::Deserialize;
use serde::de::IgnoredAny;

/// A Pod review's request: plain data for [`crate::decide::decide_pod`].
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRequest {
    pub uid: String,
    pub kind: GroupVersionKind,
    /// Required, as in kube's type; not read.
    #[serde(rename = "resource")]
    _resource: IgnoredAny,
    #[serde(default)]
    pub sub_resource: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    pub operation: Operation,
    pub user_info: Requester,
    #[serde(default)]
    pub object: Option<PodObject>,
    #[serde(default)]
    pub dry_run: bool,
}

/// Who sent the request (the AdmissionReview's userInfo); only the name is logged.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Requester {
    #[serde(default)]
    pub username: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodObject {
    #[serde(default)]
    pub metadata: PodMetadata,
    #[serde(default)]
    pub spec: Option<PodSpecView>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodMetadata {
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}

/// What containment reads of a Pod spec, as JSON values so that a malformed field is reported
/// as such rather than read as absent.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpecView {
    #[serde(default)]
    pub volumes: Option<serde_json::Value>,
    #[serde(default)]
    pub host_network: Option<serde_json::Value>,
}

impl PodRequest {
    /// The namespace of the request, or else of the object; never empty.
    pub fn namespace(&self) -> Option<&str> {
        crate::decide::request_namespace(
            self.namespace.as_deref(),
            self.object
                .as_ref()
                .and_then(|o| o.metadata.namespace.as_deref()),
        )
    }

    /// The value of `label` on the Pod, if the Pod has it.
    pub fn label(&self, label: &str) -> Option<&str> {
        self.object
            .as_ref()?
            .metadata
            .labels
            .as_ref()?
            .get(label)
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_what_decisions_need_and_requires_what_kube_requires() {
        let req: PodRequest = serde_json::from_str(
            r#"{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},
                "resource":{"group":"","version":"v1","resource":"pods"},
                "operation":"CREATE","userInfo":{"username":"alice","groups":["g"]},
                "object":{"metadata":{"namespace":"team","labels":{"agentgov.dev/agent":"a"},
                          "managedFields":[{"x":1}]},
                          "spec":{"containers":[{"name":"c"}],"volumes":[{"name":"v","emptyDir":{}}]}}}"#,
        )
        .unwrap();
        assert_eq!(req.namespace(), Some("team"));
        assert_eq!(req.label("agentgov.dev/agent"), Some("a"));
        assert_eq!(req.user_info.username.as_deref(), Some("alice"));
        assert!(!req.dry_run);
        for missing in ["uid", "kind", "resource", "operation", "userInfo"] {
            let mut value: serde_json::Value = serde_json::json!({
                "uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},
                "resource":{"group":"","version":"v1","resource":"pods"},
                "operation":"CREATE","userInfo":{}
            });
            value.as_object_mut().unwrap().remove(missing);
            assert!(
                serde_json::from_value::<PodRequest>(value).is_err(),
                "{missing} is required"
            );
        }
    }
}
