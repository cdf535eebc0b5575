//! What a review decides: a [`Decision`] (code, reason, warnings, the agent concerned, whether
//! it is a governance decision or a pass-through, and a refused promotion to count). Made by
//! [`crate::decide`], logged and counted by [`crate::decision_log`], answered by
//! [`crate::review::Answer`]; it depends on none of them.

use std::borrow::Cow;

use agentgov_api::admission::{DecisionCode, Denial};

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

    pub(crate) fn from_denial(agent: &str, denial: Denial) -> Self {
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
