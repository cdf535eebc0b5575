//! AdmissionReview `admission.k8s.io/v1` in and out: Agent reviews parsed into kube's types,
//! Pod reviews into the fields decisions read ([`PodRequest`]); every answer is an [`Answer`],
//! the JSON of kube's `AdmissionReview`. A body that is not a v1 AdmissionReview with a request
//! is answered with a deny (`ADMISSION_DENY_BAD_REQUEST`), never an allow, and never a panic.

use std::borrow::Cow;

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

mod answer;
mod pod;

pub use answer::Answer;
pub use pod::{AgentLabel, Gvk, OldPod, PodMetadata, PodObject, PodRequest, Requester, Text};

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

/// The facts a decision log line carries about its request (borrowed from a Pod review's body).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts<'a> {
    pub uid: Cow<'a, str>,
    pub namespace: Cow<'a, str>,
    pub requester: Cow<'a, str>,
    pub operation: &'static str,
    pub dry_run: bool,
}

impl Facts<'static> {
    pub fn of(req: &AdmissionRequest<DynamicObject>) -> Self {
        Facts::from_request(
            Cow::Owned(req.uid.clone()),
            req.namespace.clone().map(Cow::Owned),
            req.user_info.username.clone().map(Cow::Owned),
            &req.operation,
            req.dry_run,
        )
    }

    fn unparsed(err: &ReviewError) -> Self {
        Facts {
            uid: Cow::Owned(err.uid.clone().unwrap_or_default()),
            operation: "UNKNOWN",
            ..Facts::default()
        }
    }
}

impl<'a> Facts<'a> {
    pub fn of_pod(req: &PodRequest<'a>) -> Self {
        Facts::from_request(
            req.uid.clone(),
            req.namespace.as_ref().map(|ns| ns.0.clone()),
            req.user_info.username.as_ref().map(|name| name.0.clone()),
            &req.operation,
            req.dry_run,
        )
    }

    fn from_request(
        uid: Cow<'a, str>,
        namespace: Option<Cow<'a, str>>,
        requester: Option<Cow<'a, str>>,
        operation: &Operation,
        dry_run: bool,
    ) -> Self {
        Facts {
            uid,
            namespace: namespace.unwrap_or_default(),
            requester: requester.unwrap_or_default(),
            operation: match operation {
                Operation::Create => "CREATE",
                Operation::Update => "UPDATE",
                Operation::Delete => "DELETE",
                Operation::Connect => "CONNECT",
            },
            dry_run,
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
    // SIMD validation, as most of the body is fields no decision reads; on failure, std's
    // validator says where the body breaks.
    let body = simdutf8::basic::from_utf8(body).map_err(|_| ReviewError {
        uid: None,
        reason: match std::str::from_utf8(body) {
            Err(e) => format!("the body is not UTF-8: {e}"),
            Ok(_) => "the body is not UTF-8".into(),
        },
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
    parse_request(body, |r: &PodRequest<'_>| &r.uid)
}

fn status_for(code: DecisionCode) -> (u16, &'static str) {
    match code {
        code if code.is_allow() => (200, ""),
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

/// The response to the request with this uid, as kube's type. The server sends the same JSON
/// through [`Answer`].
pub fn respond(uid: &str, decision: &Decision) -> AdmissionReview<DynamicObject> {
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

/// One reviewed request: what to answer, log and count.
#[derive(Debug)]
pub struct Reviewed<'a> {
    pub facts: Facts<'a>,
    pub decision: Decision,
}

impl Reviewed<'_> {
    fn rejected(err: ReviewError) -> Self {
        Reviewed {
            decision: Decision::bad_request(err.reason.clone()),
            facts: Facts::unparsed(&err),
        }
    }

    /// The answer to send: to the request's uid (or, for a body that could not be used, the
    /// uid it was seen to carry, if any).
    pub fn answer(&self) -> Answer<'_> {
        Answer::new(&self.facts.uid, &self.decision)
    }

    /// Whether the answer admits the request.
    pub fn allowed(&self) -> bool {
        self.decision.allowed()
    }
}

/// Parse and decide a Pod review (no I/O).
pub fn review_pod<'a>(
    body: &'a [u8],
    view: &dyn View,
    expiry: &ExpiryPolicy,
    now: Timestamp,
) -> Reviewed<'a> {
    match parse_pod(body) {
        Err(err) => Reviewed::rejected(err),
        Ok(req) => {
            let decision = decide::decide_pod(&req, view, expiry, now);
            Reviewed {
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
) -> Reviewed<'static> {
    match parse(body) {
        Err(err) => Reviewed::rejected(err),
        Ok(req) => {
            let decision = decide::decide_agent(&req, view, authz, expiry, now, policy_slots).await;
            Reviewed {
                facts: Facts::of(&req),
                decision,
            }
        }
    }
}

/// Parse and decide an AgentPromotion review (a SubjectAccessReview and the policy).
pub async fn review_promotion(
    body: &[u8],
    view: &dyn View,
    authz: &dyn Authorizer,
    policy_slots: &Semaphore,
) -> Reviewed<'static> {
    match parse(body) {
        Err(err) => Reviewed::rejected(err),
        Ok(req) => {
            let decision = decide::decide_promotion(&req, view, authz, policy_slots).await;
            Reviewed {
                facts: Facts::of(&req),
                decision,
            }
        }
    }
}

/// Parse and decide a PolicyBundle review (compile its Rego).
pub async fn review_bundle(body: &[u8], policy_slots: &Semaphore) -> Reviewed<'static> {
    match parse(body) {
        Err(err) => Reviewed::rejected(err),
        Ok(req) => {
            let decision = decide::decide_bundle(&req, policy_slots).await;
            Reviewed {
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
