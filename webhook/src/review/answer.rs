//! The answer sent back: an `admission.k8s.io/v1` AdmissionReview with the response to one
//! request, serialized straight from the [`Decision`]. Its JSON is that of kube's
//! `AdmissionReview` built by [`respond`](super::respond) (a unit test holds the two equal),
//! without building kube's type on every review: that took a dozen allocations for fields
//! that are constants or borrowed.

use kube::core::Status;
use kube::core::admission::{META_API_VERSION_V1, META_KIND};
use serde::Serialize;

use crate::decide::Decision;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: AnswerResponse<'a>,
}

/// Field for field, kube's `AdmissionResponse` as it serializes (no patch: a validating
/// webhook never patches).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AnswerResponse<'a> {
    uid: &'a str,
    allowed: bool,
    status: Status,
    audit_annotations: AuditAnnotations,
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<Vec<String>>,
}

/// Recorded in the API server's audit log (prefixed with the webhook's name there).
#[derive(Debug, Serialize)]
struct AuditAnnotations {
    decision: &'static str,
}

impl<'a> Answer<'a> {
    /// The answer to the request with this uid.
    pub fn new(uid: &'a str, decision: &Decision) -> Self {
        Answer {
            api_version: META_API_VERSION_V1,
            kind: META_KIND,
            response: AnswerResponse {
                uid,
                allowed: decision.allowed(),
                status: super::status(decision),
                audit_annotations: AuditAnnotations {
                    decision: decision.code.as_str(),
                },
                warnings: super::warnings(decision),
            },
        }
    }

    pub fn uid(&self) -> &'a str {
        self.response.uid
    }

    pub fn allowed(&self) -> bool {
        self.response.allowed
    }
}

#[cfg(test)]
mod tests {
    use agentgov_api::admission::DecisionCode;

    use super::*;
    use crate::review::respond;

    fn same_json(uid: &str, decision: &Decision) {
        let ours = serde_json::to_value(Answer::new(uid, decision)).unwrap();
        let kube = serde_json::to_value(respond(uid, decision)).unwrap();
        assert_eq!(ours, kube, "{decision:?}");
    }

    #[test]
    fn serializes_as_kubes_admission_review() {
        same_json("u-1", &Decision::allow("bot", "passed"));
        let mut restricted = Decision::allow("bot", "passed");
        restricted.warnings = (0..40)
            .map(|i| format!("warning {i} {}", "é".repeat(300)))
            .collect();
        same_json("u-2", &restricted);
        same_json(
            "u\"3",
            &Decision::deny(
                DecisionCode::DenySignatureInvalid,
                Some("bot"),
                "x".repeat(5000),
            ),
        );
        same_json("", &Decision::bad_request("not JSON"));
        same_json(
            "u-4",
            &Decision::deny(DecisionCode::DenyUnavailable, None, "not synced"),
        );
        same_json("u-5", &Decision::pass("DELETE is never denied"));
    }
}
