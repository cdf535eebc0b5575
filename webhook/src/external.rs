//! The admission API for orchestrators outside Kubernetes: `POST /v1/admit` on the TLS port
//! asks "may agent A in namespace N start, running these images?". The answer is the decision
//! the webhook makes for a CREATE of a Pod labelled `agentgov.dev/agent: A` in N running those
//! images ([`crate::decide::decide_start`]: the seven checks, the approved runtime, unknown and
//! deleted agents, unsynced caches), with the same codes. A Pod-only check (the Pod Security
//! level, a sandbox's persistent volumes) has no Pod spec to read and does not apply.
//!
//! This module is the wire format ([`AdmitRequest`] in, shared with the `agentgov admit` client,
//! and [`AdmitAnswer`] out), the step from body to decision ([`admit`]), the refusal of a client
//! `--admit-clients` does not list ([`unlisted`]) and the HTTP status of each answer
//! ([`Admitted::http_status`]); the HTTP handler is in [`crate::server`], which logs and counts
//! the decision like every other one (`kind="external"`).

use agentgov_api::admission::DecisionCode;
use agentgov_api::agent::GovernanceStatus;
use agentgov_api::expiry::ExpiryPolicy;
use agentgov_api::proof::ProofBundle;
use agentgov_api::{Agent, AgentSpec};
use axum::http::StatusCode;
use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};

use crate::admit_clients::AdmitClients;
use crate::decide::{self, View, Workload};
use crate::decision::Decision;
use crate::decision_log::Facts;
use crate::peer::Identity;
use crate::review::{MAX_REASON_CHARS, MAX_WARNING_CHARS, MAX_WARNINGS, truncate};

/// Where the API is served, on the admission (TLS) port.
pub const ADMIT_PATH: &str = "/v1/admit";
/// A request is a few names and at most [`MAX_IMAGES`] images: far below the webhook's
/// `--max-body-bytes`, which is sized for AdmissionReviews.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// More images than a Pod of an agent plausibly runs; a bound on the work of one request.
pub const MAX_IMAGES: usize = 64;
/// An image reference is a repository (at most 255 characters by Docker's grammar), a tag
/// and a digest: a few hundred bytes.
pub const MAX_IMAGE_BYTES: usize = 512;
/// A namespace is a DNS-1123 label.
const MAX_NAMESPACE_BYTES: usize = 63;
/// An Agent's name is an object name: a DNS-1123 subdomain.
const MAX_AGENT_BYTES: usize = 253;

/// The question: may `agent` in `namespace` start, running `images`?
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmitRequest {
    pub namespace: String,
    pub agent: String,
    /// The images it would run (optional; `null` is read as none). An agent that binds its
    /// runtime (`spec.runtime.images`) is refused when none is named.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub images: Vec<String>,
}

fn nullable<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(deserializer)?.unwrap_or_default())
}

/// Why a body is not a usable [`AdmitRequest`]: answered with HTTP 400 and
/// `ADMISSION_DENY_BAD_REQUEST`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(
        "the body is not an admission request (JSON {{\"namespace\", \"agent\", \"images\"}}): {0}"
    )]
    Json(String),
    #[error(
        "namespace {0:?} is not a namespace name (lowercase letters, digits and '-', at most {MAX_NAMESPACE_BYTES})"
    )]
    Namespace(String),
    #[error(
        "agent {0:?} is not an Agent name (lowercase letters, digits, '-' and '.', at most {MAX_AGENT_BYTES})"
    )]
    Agent(String),
    #[error("at most {MAX_IMAGES} images may be named, not {0}")]
    TooManyImages(usize),
    #[error("images[{0}] is empty, longer than {MAX_IMAGE_BYTES} bytes, or holds whitespace")]
    Image(usize),
}

impl AdmitRequest {
    /// Parse and bound a request body.
    pub fn parse(body: &[u8]) -> Result<Self, RequestError> {
        // serde would also read a struct from a JSON array (its fields in order): only the
        // object form is the API.
        if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(RequestError::Json(
                "a JSON object is expected, not an array".into(),
            ));
        }
        let request: AdmitRequest = serde_json::from_slice(body)
            .map_err(|e| RequestError::Json(truncate(&e.to_string(), MAX_REASON_CHARS)))?;
        request.validate()?;
        Ok(request)
    }

    /// The bounds a request must meet (names quoted back in an error are bounded first).
    pub fn validate(&self) -> Result<(), RequestError> {
        if !is_dns_label(&self.namespace) {
            return Err(RequestError::Namespace(truncate(&self.namespace, 80)));
        }
        if !is_dns_subdomain(&self.agent) {
            return Err(RequestError::Agent(truncate(&self.agent, 80)));
        }
        if self.images.len() > MAX_IMAGES {
            return Err(RequestError::TooManyImages(self.images.len()));
        }
        if let Some(index) = self.images.iter().position(|image| {
            image.is_empty()
                || image.len() > MAX_IMAGE_BYTES
                || image.chars().any(|c| c.is_whitespace() || c.is_control())
        }) {
            return Err(RequestError::Image(index));
        }
        Ok(())
    }
}

/// A DNS-1123 label: what a namespace's name is.
fn is_dns_label(name: &str) -> bool {
    name.len() <= MAX_NAMESPACE_BYTES && is_label(name)
}

/// A DNS-1123 subdomain: what an object's name is (dot-separated labels, at most 253 in all;
/// as in Kubernetes' own check, one label may be longer than 63).
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= MAX_AGENT_BYTES && name.split('.').all(is_label)
}

/// Lowercase letters, digits and '-', starting and ending with a letter or digit.
fn is_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// The answer: the decision, and the agent's proof and status as they were judged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmitAnswer {
    pub allowed: bool,
    /// The decision code (`ADMISSION_ALLOW`, `ADMISSION_DENY_*`).
    pub code: String,
    /// Why, in a sentence a user can act on.
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub agent: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// The spec hash the agent's proof signs, when it has a proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_hash: Option<String>,
    /// The agent's governance status, as the operator last wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governance_status: Option<GovernanceStatus>,
    /// A GOVERNED_RESTRICTED agent's warnings (as a Pod's admission warnings).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// When allowed: the spec that may run, as the webhook's cache holds it (for a governed
    /// agent the approved one: its canonical JSON, RFC 8785, hashes with SHA-256 to `specHash`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<AgentSpec>,
    /// When allowed and the agent has one (governed agents): the signed proof that allowed it
    /// (`status.proof`), for the orchestrator to keep as the evidence of the approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<ProofBundle>,
}

impl AdmitAnswer {
    /// The answer to `request` (absent when it could not be read), decided as `decision`, about
    /// `agent` as the decision read it from the cache.
    pub fn new(request: Option<&AdmitRequest>, decision: &Decision, agent: Option<&Agent>) -> Self {
        let status = agent.and_then(|a| a.status.as_ref());
        // The spec and the proof are what the start is allowed to run under; a denied start
        // runs nothing, and its answer names only the spec hash as evidence. Cloned here, on
        // this endpoint's path only: the Pod path drops the agent without copying it.
        let allowed = decision.allowed();
        AdmitAnswer {
            allowed: decision.allowed(),
            code: decision.code.as_str().to_string(),
            message: truncate(&decision.reason, MAX_REASON_CHARS),
            agent: request.map(|r| r.agent.clone()).unwrap_or_default(),
            namespace: request.map(|r| r.namespace.clone()).unwrap_or_default(),
            spec_hash: status
                .and_then(|s| s.proof.as_ref())
                .map(|p| p.spec_hash.clone()),
            governance_status: status.and_then(|s| s.governance_status),
            warnings: decision
                .warnings
                .iter()
                .take(MAX_WARNINGS)
                .map(|w| truncate(w, MAX_WARNING_CHARS))
                .collect(),
            spec: agent.filter(|_| allowed).map(|a| a.spec.clone()),
            proof: status.filter(|_| allowed).and_then(|s| s.proof.clone()),
        }
    }
}

/// One external request: what to answer, log and count.
#[derive(Debug)]
pub struct Admitted {
    pub facts: Facts<'static>,
    pub decision: Decision,
    pub answer: AdmitAnswer,
}

impl Admitted {
    /// A request that could not be used (a body that is no [`AdmitRequest`], too large, too
    /// slow): a bad-request deny, logged with who asked.
    pub fn rejected(reason: String, requester: &str) -> Self {
        Self::refused(DecisionCode::DenyBadRequest, reason, requester)
    }

    fn refused(code: DecisionCode, reason: String, requester: &str) -> Self {
        let decision = Decision::deny(code, None, reason);
        Admitted {
            facts: facts(None, requester),
            answer: AdmitAnswer::new(None, &decision, None),
            decision,
        }
    }

    /// The HTTP status of the answer to a request that was read: 200 for a decision about the
    /// agent, allow or deny; 400 for a request that is not usable; 403 for a client not allowed
    /// to ask; 503 while the caches have not synced, which is no decision about the agent (a
    /// client retries a 5xx, as after a webhook restart, and would not retry a 200 deny).
    pub fn http_status(&self) -> StatusCode {
        match self.decision.code {
            DecisionCode::DenyBadRequest => StatusCode::BAD_REQUEST,
            DecisionCode::DenyUnauthorized => StatusCode::FORBIDDEN,
            DecisionCode::DenyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::OK,
        }
    }
}

/// The refusal of a client `clients` does not list, which presented `identity` (none: no
/// certificate): `ADMISSION_DENY_UNAUTHORIZED`, answered 403 before the body is read, so that
/// a client not allowed to ask learns nothing of any agent. `None` for a listed client.
pub fn unlisted(identity: Option<&Identity>, clients: &AdmitClients) -> Option<Admitted> {
    if clients.allows(identity) {
        return None;
    }
    let requester = identity.map(|i| i.subject.as_str()).unwrap_or_default();
    let reason = if clients.is_empty() {
        "no client may ask: the webhook's --admit-clients (chart: webhook.admitClients) is empty"
            .to_string()
    } else if identity.is_none() {
        "this client presented no certificate; only those the webhook's --admit-clients lists may ask"
            .to_string()
    } else {
        format!(
            "the client certificate {} is not one the webhook's --admit-clients (chart: webhook.admitClients) lists",
            truncate(requester, 200)
        )
    };
    Some(Admitted::refused(
        DecisionCode::DenyUnauthorized,
        reason,
        requester,
    ))
}

/// The decision log's facts: no uid (the request has none); the operation is the Pod CREATE it
/// is judged as; the requester is the client certificate's subject.
fn facts(request: Option<&AdmitRequest>, requester: &str) -> Facts<'static> {
    Facts {
        namespace: request
            .map(|r| r.namespace.clone())
            .unwrap_or_default()
            .into(),
        requester: requester.to_string().into(),
        operation: "CREATE",
        ..Facts::default()
    }
}

/// Parse and decide one request (no I/O): the decision of a Pod CREATE of the agent running the
/// images. `requester` is who asked, for the log.
pub fn admit(
    body: &[u8],
    view: &dyn View,
    expiry: &ExpiryPolicy,
    now: Timestamp,
    requester: &str,
) -> Admitted {
    let request = match AdmitRequest::parse(body) {
        Ok(request) => request,
        Err(e) => return Admitted::rejected(e.to_string(), requester),
    };
    let start = decide::decide_start(
        &request.namespace,
        &request.agent,
        Workload::Images(&request.images),
        view,
        expiry,
        now,
    );
    Admitted {
        facts: facts(Some(&request), requester),
        answer: AdmitAnswer::new(Some(&request), &start.decision, start.agent.as_deref()),
        decision: start.decision,
    }
}

#[cfg(test)]
#[path = "external_tests.rs"]
mod tests;
