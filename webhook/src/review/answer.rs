//! The answer sent back, the webhook's one encoder: an `admission.k8s.io/v1` AdmissionReview
//! with the response to one request, serialized straight from the [`Decision`]. Its JSON is
//! that of kube's `AdmissionReview` with its `AdmissionResponse` (a unit test builds kube's
//! types and holds the two equal), without building kube's type on every review: that took a
//! dozen allocations for fields that are constants or borrowed.

use agentgov_api::admission::DecisionCode;
use kube::core::Status;
use kube::core::admission::{META_API_VERSION_V1, META_KIND};
use serde::Serialize;

use super::{MAX_REASON_CHARS, MAX_WARNING_CHARS, MAX_WARNINGS, truncate};
use crate::decision::Decision;

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
                status: status(decision),
                audit_annotations: AuditAnnotations {
                    decision: decision.code.as_str(),
                },
                warnings: warnings(decision),
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

/// The HTTP code and reason of a deny's `status`.
fn status_for(code: DecisionCode) -> (u16, &'static str) {
    match code {
        code if code.is_allow() => (200, ""),
        DecisionCode::DenyBadRequest => (400, "BadRequest"),
        DecisionCode::DenyUnavailable => (503, "ServiceUnavailable"),
        _ => (403, "Forbidden"),
    }
}

/// The message a user sees: the decision code, then the reason.
fn message(decision: &Decision) -> String {
    truncate(
        &format!("{}: {}", decision.code.as_str(), decision.reason),
        MAX_REASON_CHARS,
    )
}

/// The `status` of the response: empty for an allow; for a deny, the message, reason and code.
fn status(decision: &Decision) -> Status {
    if decision.allowed() {
        Status::default()
    } else {
        let (code, reason) = status_for(decision.code);
        Status::failure(&message(decision), reason).with_code(code)
    }
}

/// The admission warnings of the response, bounded in number and length.
fn warnings(decision: &Decision) -> Option<Vec<String>> {
    (!decision.warnings.is_empty()).then(|| {
        decision
            .warnings
            .iter()
            .take(MAX_WARNINGS)
            .map(|w| truncate(w, MAX_WARNING_CHARS - 1))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use agentgov_api::admission::DecisionCode;
    use kube::core::DynamicObject;
    use kube::core::admission::{AdmissionResponse, AdmissionReview};

    use super::*;

    /// The same answer built with kube's own types, field by field from the decision.
    fn kubes(uid: &str, decision: &Decision) -> AdmissionReview<DynamicObject> {
        let mut response = AdmissionResponse::invalid("");
        response.uid = uid.to_string();
        response.allowed = decision.allowed();
        response.result = status(decision);
        response
            .audit_annotations
            .insert("decision".into(), decision.code.as_str().into());
        response.warnings = warnings(decision);
        response.into_review()
    }

    fn same_json(uid: &str, decision: &Decision) {
        let ours = serde_json::to_value(Answer::new(uid, decision)).unwrap();
        let kube = serde_json::to_value(kubes(uid, decision)).unwrap();
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

    #[test]
    fn denies_carry_code_reason_and_bounded_message() {
        let deny = Decision::deny(DecisionCode::DenyUnavailable, Some("bot"), "x".repeat(5000));
        let status = status(&deny);
        assert_eq!(status.code, 503);
        assert_eq!(status.reason, "ServiceUnavailable");
        assert!(
            status
                .message
                .starts_with("ADMISSION_DENY_UNAVAILABLE: xxx")
        );
        assert_eq!(status.message.chars().count(), MAX_REASON_CHARS + 1);
        assert_eq!(status_for(DecisionCode::DenyBadRequest).0, 400);
        assert_eq!(status_for(DecisionCode::DenyPolicy).0, 403);
    }
}
