//! AdmissionReview `admission.k8s.io/v1` in and out, with kube's types. A body that is not a v1
//! AdmissionReview with a request is answered with a deny (`ADMISSION_DENY_BAD_REQUEST`),
//! never an allow, and never a panic.

use agentgov_api::admission::DecisionCode;
use agentgov_api::expiry::ExpiryPolicy;
use jiff::Timestamp;
use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, META_API_VERSION_V1, META_KIND, Operation,
};
use kube::core::{DynamicObject, Status, TypeMeta};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::authz::Authorizer;
use crate::decide::{self, Decision, View};

mod pod;

pub use pod::{AgentLabel, Gvk, PodMetadata, PodObject, PodRequest, PodSpecView, Requester};

/// Reasons longer than this are cut (a parser error can quote a whole field).
pub const MAX_REASON_CHARS: usize = 1024;
/// The API server truncates longer warnings anyway.
pub const MAX_WARNING_CHARS: usize = 256;
/// At most this many warnings are returned.
pub const MAX_WARNINGS: usize = 16;

/// Why a body is not a usable review, and its uid if one could be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviewError {
    pub uid: Option<String>,
    pub reason: String,
}

/// The facts a decision log line carries about its request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    pub uid: String,
    pub namespace: String,
    pub requester: String,
    pub operation: &'static str,
    pub dry_run: bool,
}

impl Facts {
    pub fn of(req: &AdmissionRequest<DynamicObject>) -> Self {
        Facts::from_request(
            &req.uid,
            req.namespace.as_deref(),
            req.user_info.username.as_deref(),
            &req.operation,
            req.dry_run,
        )
    }

    pub fn of_pod(req: &PodRequest<'_>) -> Self {
        Facts::from_request(
            &req.uid,
            req.namespace.as_deref(),
            req.user_info.username.as_deref(),
            &req.operation,
            req.dry_run,
        )
    }

    fn from_request(
        uid: &str,
        namespace: Option<&str>,
        requester: Option<&str>,
        operation: &Operation,
        dry_run: bool,
    ) -> Self {
        Facts {
            uid: uid.to_string(),
            namespace: namespace.unwrap_or_default().to_string(),
            requester: requester.unwrap_or_default().to_string(),
            operation: match operation {
                Operation::Create => "CREATE",
                Operation::Update => "UPDATE",
                Operation::Delete => "DELETE",
                Operation::Connect => "CONNECT",
            },
            dry_run,
        }
    }

    fn unparsed(err: &ReviewError) -> Self {
        Facts {
            uid: err.uid.clone().unwrap_or_default(),
            operation: "UNKNOWN",
            ..Facts::default()
        }
    }
}

/// Cut `text` to at most `max` characters, on a character boundary.
pub fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((at, _)) => format!("{}…", &text[..at]),
    }
}

#[derive(Deserialize)]
struct UidProbe {
    request: Option<UidProbeRequest>,
}

#[derive(Deserialize)]
struct UidProbeRequest {
    uid: Option<String>,
}

/// The request uid of a body that is JSON but not a valid review, so the deny can carry it.
fn probe_uid(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<UidProbe>(body)
        .ok()?
        .request?
        .uid
        .filter(|uid| !uid.is_empty() && uid.len() <= 256)
}

/// An AdmissionReview read field by field (kube's type flattens its TypeMeta, which makes serde
/// buffer the whole body before reading it).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<R> {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default = "Option::default")]
    request: Option<R>,
}

/// Parse an `admission.k8s.io/v1` AdmissionReview and take its request, of type `R`; `uid`
/// reads a parsed request's uid.
fn parse_request<'a, R: Deserialize<'a>>(
    body: &'a [u8],
    uid: impl Fn(&R) -> &str,
) -> Result<R, ReviewError> {
    // JSON is UTF-8 (RFC 8259), and serde_json does not check the bytes of fields it skips:
    // check the whole body, so malformed input is never half-read into an allow.
    let body = std::str::from_utf8(body).map_err(|e| ReviewError {
        uid: None,
        reason: format!("the body is not UTF-8: {e}"),
    })?;
    let review: Envelope<R> = serde_json::from_str(body).map_err(|e| ReviewError {
        uid: probe_uid(body.as_bytes()),
        reason: truncate(
            &format!("the body is not a valid AdmissionReview: {e}"),
            MAX_REASON_CHARS,
        ),
    })?;
    if review.api_version != META_API_VERSION_V1 || review.kind != META_KIND {
        return Err(ReviewError {
            uid: review
                .request
                .as_ref()
                .map(|r| uid(r).to_string())
                .filter(|u| !u.is_empty()),
            reason: truncate(
                &format!(
                    "expected apiVersion {META_API_VERSION_V1} kind {META_KIND}, got apiVersion {:?} kind {:?} (register the webhook with admissionReviewVersions: [v1])",
                    review.api_version, review.kind
                ),
                MAX_REASON_CHARS,
            ),
        });
    }
    let Some(request) = review.request else {
        return Err(ReviewError {
            uid: None,
            reason: "the AdmissionReview has no request".into(),
        });
    };
    if uid(&request).is_empty() {
        return Err(ReviewError {
            uid: None,
            reason: "the AdmissionReview request has no uid".into(),
        });
    }
    Ok(request)
}

/// Parse an `admission.k8s.io/v1` AdmissionReview and take its request, with the whole object.
pub fn parse(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, ReviewError> {
    let mut request: AdmissionRequest<DynamicObject> =
        parse_request(body, |r: &AdmissionRequest<DynamicObject>| r.uid.as_str())?;
    request.types = TypeMeta {
        api_version: META_API_VERSION_V1.into(),
        kind: META_KIND.into(),
    };
    Ok(request)
}

/// Parse an `admission.k8s.io/v1` AdmissionReview of a Pod, reading only what decisions need.
pub fn parse_pod(body: &[u8]) -> Result<PodRequest<'_>, ReviewError> {
    parse_request(body, |r: &PodRequest<'_>| r.uid.as_str())
}

fn status_for(code: DecisionCode) -> (u16, &'static str) {
    match code {
        DecisionCode::Allow => (200, ""),
        DecisionCode::DenyBadRequest => (400, "BadRequest"),
        DecisionCode::DenyUnavailable => (503, "ServiceUnavailable"),
        _ => (403, "Forbidden"),
    }
}

/// The message a user sees: the decision code, then the reason.
pub fn message(decision: &Decision) -> String {
    truncate(
        &format!("{}: {}", decision.code.as_str(), decision.reason),
        MAX_REASON_CHARS,
    )
}

/// The response to the request with this uid.
pub fn respond(uid: &str, decision: &Decision) -> AdmissionReview<DynamicObject> {
    let mut response = AdmissionResponse::invalid("");
    response.uid = uid.to_string();
    if decision.allowed() {
        response.allowed = true;
        response.result = Status::default();
    } else {
        let (code, reason) = status_for(decision.code);
        response.allowed = false;
        response.result = Status::failure(&message(decision), reason).with_code(code);
    }
    response
        .audit_annotations
        .insert("decision".into(), decision.code.as_str().into());
    if !decision.warnings.is_empty() {
        response.warnings = Some(
            decision
                .warnings
                .iter()
                .take(MAX_WARNINGS)
                .map(|w| truncate(w, MAX_WARNING_CHARS - 1))
                .collect(),
        );
    }
    response.into_review()
}

/// The response to a body that could not be used: always a deny.
pub fn reject(uid: Option<&str>, decision: &Decision) -> AdmissionReview<DynamicObject> {
    debug_assert!(!decision.allowed());
    respond(uid.unwrap_or_default(), decision)
}

/// One reviewed request: the answer, and what to log and count.
#[derive(Debug)]
pub struct Reviewed {
    pub review: AdmissionReview<DynamicObject>,
    pub facts: Facts,
    pub decision: Decision,
}

impl Reviewed {
    fn rejected(err: ReviewError) -> Self {
        let decision = Decision::bad_request(err.reason.clone());
        Reviewed {
            review: reject(err.uid.as_deref(), &decision),
            facts: Facts::unparsed(&err),
            decision,
        }
    }

    /// Whether the answer admits the request.
    pub fn allowed(&self) -> bool {
        self.review.response.as_ref().is_some_and(|r| r.allowed)
    }
}

/// Parse and decide a Pod review (no I/O).
pub fn review_pod(body: &[u8], view: &dyn View, expiry: &ExpiryPolicy, now: Timestamp) -> Reviewed {
    match parse_pod(body) {
        Err(err) => Reviewed::rejected(err),
        Ok(req) => {
            let decision = decide::decide_pod(&req, view, expiry, now);
            Reviewed {
                review: respond(&req.uid, &decision),
                facts: Facts::of_pod(&req),
                decision,
            }
        }
    }
}

/// Parse and decide an Agent review (a SubjectAccessReview when the agent is governed).
pub async fn review_agent(
    body: &[u8],
    view: &dyn View,
    authz: &dyn Authorizer,
    expiry: &ExpiryPolicy,
    now: Timestamp,
    policy_slots: &Semaphore,
) -> Reviewed {
    match parse(body) {
        Err(err) => Reviewed::rejected(err),
        Ok(req) => {
            let decision = decide::decide_agent(&req, view, authz, expiry, now, policy_slots).await;
            Reviewed {
                review: respond(&req.uid, &decision),
                facts: Facts::of(&req),
                decision,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("ééééé", 2), "éé…");
    }

    #[test]
    fn parse_errors_keep_the_uid_when_readable() {
        let err = parse(br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u1"}}"#)
            .unwrap_err();
        assert_eq!(err.uid.as_deref(), Some("u1"));
        let err = parse(b"{not json").unwrap_err();
        assert_eq!(err.uid, None);
        assert!(err.reason.contains("not a valid AdmissionReview"));
    }
}
