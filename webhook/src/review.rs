//! AdmissionReview `admission.k8s.io/v1` in and out, the wire format and nothing else: Agent,
//! AgentPromotion and PolicyBundle reviews parsed into kube's types, Pod reviews into the fields
//! decisions read ([`PodRequest`]); every answer is an [`Answer`], whose JSON is that of kube's
//! `AdmissionReview`. A body that is not a v1 AdmissionReview with a request is a
//! [`ReviewError`], which [`crate::admit`] answers with a deny (`ADMISSION_DENY_BAD_REQUEST`),
//! never an allow, and never a panic.

use kube::core::admission::{AdmissionRequest, META_API_VERSION_V1, META_KIND};
use kube::core::{DynamicObject, TypeMeta};
use serde::Deserialize;

mod answer;
mod pod;

pub use answer::Answer;
pub use pod::{AgentLabel, Gvk, OldPod, PodMetadata, PodObject, PodRequest, Requester, Text};

/// Reasons longer than this are cut (a parser error can quote a whole field).
pub(crate) const MAX_REASON_CHARS: usize = 1024;
/// The API server truncates longer warnings anyway.
pub(crate) const MAX_WARNING_CHARS: usize = 256;
/// At most this many warnings are returned.
pub(crate) const MAX_WARNINGS: usize = 16;

/// Why a body is not a usable review, and its uid if one could be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviewError {
    pub uid: Option<String>,
    pub reason: String,
}

/// Cut `text` to at most `max` characters, on a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> String {
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
// Never inlined: `make bench`'s profile (e2e/bench/profile.py) charges a review's CPU to this
// frame; one call per review.
#[inline(never)]
pub fn parse_pod(body: &[u8]) -> Result<PodRequest<'_>, ReviewError> {
    parse_request(body, |r: &PodRequest<'_>| &r.uid)
}

/// The namespace a request is about: the request's, or else its object's; never empty.
pub(crate) fn request_namespace<'a>(
    request: Option<&'a str>,
    object: Option<&'a str>,
) -> Option<&'a str> {
    request.or(object).filter(|ns| !ns.is_empty())
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
