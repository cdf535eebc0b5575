//! Admission decisions as functions of (request, a [`View`] of the caches, the clock).
//!
//! Fail closed: anything unexpected on a governed path is a deny with a decision code. Requests
//! outside agentgov's remit (DELETE, subresources other than `pods/ephemeralcontainers`, Pods
//! that neither carry nor carried the agent label, metadata-only Agent updates) pass with
//! [`Scope::Passthrough`]: a quarantined agent and its workloads can always be deleted or scaled
//! down. Pod reviews are in [`pod`], Agent reviews in [`agent`], AgentPromotion reviews in
//! [`promotion`], PolicyBundle reviews in [`bundle`].

use std::borrow::Cow;
use std::sync::Arc;

use agentgov_api::Agent;
use agentgov_api::admission::{DecisionCode, Denial};
use agentgov_api::agent::{AgentMode, RoleClass};
use agentgov_api::pod_security::PodSecurityLevel;
use agentgov_api::policy_bundle::PolicyData;
use kube::core::DynamicObject;
use kube::core::admission::AdmissionRequest;
use kube::core::gvk::GroupVersionKind;

use crate::keys::KeySnapshot;
use crate::memo::CheckMemo;
use crate::policy::ActivePolicy;

mod agent;
mod bundle;
mod pod;
mod promotion;

pub use agent::{AgentPlan, Extension, Request, decide_agent, judge_spec, plan_agent};
pub use bundle::decide_bundle;
pub use pod::{EPHEMERAL_CONTAINERS, PERSISTENT_VOLUME_SOURCES, decide_pod, pod_containment};
pub use promotion::decide_promotion;

/// What the decisions read: the caches and the key ring, at one moment.
pub trait View: Send + Sync {
    /// Whether the Agent and PolicyBundle caches have synced. Before that, every decision that
    /// needs them denies with `ADMISSION_DENY_UNAVAILABLE`.
    fn synced(&self) -> bool;
    fn agent(&self, namespace: &str, name: &str) -> Option<Arc<Agent>>;
    /// The promotion policy in force in `namespace` (its hash is the active policy hash).
    fn policy(&self, namespace: &str) -> Option<ActivePolicy>;
    /// The hash of the policy in force in `namespace`, without the engine.
    fn policy_hash(&self, namespace: &str) -> Option<Arc<str>> {
        self.policy(namespace).map(|p| p.engine.shared_hash())
    }
    /// The Pod Security level an agent's Pods must meet under the policy in force in
    /// `namespace` (without one: the defaults, `restricted` for a sandbox, `baseline` else).
    fn pod_security_level(
        &self,
        namespace: &str,
        mode: AgentMode,
        role: RoleClass,
    ) -> PodSecurityLevel {
        match self.policy(namespace) {
            Some(policy) => policy.data.pod_security_level(mode, role),
            None => PolicyData::default().pod_security_level(mode, role),
        }
    }
    /// The key ring in force and its generation.
    fn keys(&self) -> Arc<KeySnapshot>;
    /// Where spec hashes and signature verdicts of cached agents are remembered; `None`
    /// computes them on every review.
    fn memo(&self) -> Option<&CheckMemo> {
        None
    }
}

/// Whether a decision is a governance decision (logged at info, counted) or a pass-through
/// for something agentgov does not govern (logged at debug, not counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Governed,
    Passthrough,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub code: DecisionCode,
    pub reason: Cow<'static, str>,
    /// Returned to the client as admission warnings (GOVERNED_RESTRICTED outcomes).
    pub warnings: Vec<String>,
    /// The agent concerned, when known.
    pub agent: Option<String>,
    pub scope: Scope,
    /// A promotion attempt this decision refuses: counted once, with the policy's deny codes.
    pub attempt: Option<Box<PromotionAttempt>>,
}

/// A promotion refused at admission (a governed spec, or an AgentPromotion, the policy denies):
/// `promotion_attempts_total` and `promotion_denies_total{reason}` count it, by these codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromotionAttempt {
    pub deny_codes: Vec<String>,
}

impl Decision {
    pub fn allow(agent: impl Into<String>, reason: impl Into<Cow<'static, str>>) -> Self {
        Decision {
            code: DecisionCode::Allow,
            reason: reason.into(),
            warnings: Vec::new(),
            agent: Some(agent.into()),
            scope: Scope::Governed,
            attempt: None,
        }
    }

    pub fn deny(
        code: DecisionCode,
        agent: Option<&str>,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Decision {
            code,
            reason: reason.into(),
            warnings: Vec::new(),
            agent: agent.map(str::to_string),
            scope: Scope::Governed,
            attempt: None,
        }
    }

    pub fn bad_request(reason: impl Into<Cow<'static, str>>) -> Self {
        Decision::deny(DecisionCode::DenyBadRequest, None, reason)
    }

    pub fn pass(reason: impl Into<Cow<'static, str>>) -> Self {
        Decision {
            code: DecisionCode::Allow,
            reason: reason.into(),
            warnings: Vec::new(),
            agent: None,
            scope: Scope::Passthrough,
            attempt: None,
        }
    }

    fn from_denial(agent: &str, denial: Denial) -> Self {
        Decision::deny(denial.code, Some(agent), denial.reason)
    }

    pub fn allowed(&self) -> bool {
        self.code.is_allow()
    }

    pub(crate) fn with_warnings(mut self, warnings: Vec<String>) -> Self {
        self.warnings = warnings;
        self
    }

    /// Mark this (refusal) as a promotion attempt, with the policy's deny codes.
    pub(crate) fn attempt(mut self, deny_codes: Vec<String>) -> Self {
        self.attempt = Some(Box::new(PromotionAttempt { deny_codes }));
        self
    }
}

/// `Ok` when the request is about the kind `K` (group, version and kind); else the bad request
/// that says which kind this endpoint reviews.
fn expect_kind<K: kube::Resource<DynamicType = ()>>(
    gvk: &GroupVersionKind,
) -> Result<(), Decision> {
    let expected = crate::review::Gvk {
        group: K::group(&()),
        version: K::version(&()),
        kind: K::kind(&()),
    };
    if gvk.group == expected.group && gvk.version == expected.version && gvk.kind == expected.kind {
        return Ok(());
    }
    let got = crate::review::Gvk {
        group: gvk.group.as_str().into(),
        version: gvk.version.as_str().into(),
        kind: gvk.kind.as_str().into(),
    };
    Err(Decision::bad_request(format!(
        "this endpoint reviews {expected}, not {got}"
    )))
}

/// The namespace a request is about: the request's, or else its object's; never empty.
pub(crate) fn request_namespace<'a>(
    request: Option<&'a str>,
    object: Option<&'a str>,
) -> Option<&'a str> {
    request.or(object).filter(|ns| !ns.is_empty())
}

fn namespace_of(req: &AdmissionRequest<DynamicObject>) -> Option<&str> {
    request_namespace(
        req.namespace.as_deref(),
        req.object
            .as_ref()
            .and_then(|o| o.metadata.namespace.as_deref()),
    )
}
