//! One admission review, from body to decision: parse it ([`crate::review`]), decide
//! ([`crate::decide`]), and keep what the log line and the answer need ([`Reviewed`]). The HTTP
//! handlers ([`crate::server`]) then log and count it ([`crate::decision_log::record`]) and send
//! [`Reviewed::answer`]. A body that is not a usable review is answered with a bad-request deny.

use agentgov_api::expiry::ExpiryPolicy;
use jiff::Timestamp;
use tokio::sync::Semaphore;

use crate::authz::Authorizer;
use crate::decide::{self, View};
use crate::decision::Decision;
use crate::decision_log::Facts;
use crate::review::{self, Answer, ReviewError};

/// One reviewed request: what to answer, log and count.
#[derive(Debug)]
pub struct Reviewed<'a> {
    pub facts: Facts<'a>,
    pub decision: Decision,
}

impl Reviewed<'_> {
    fn rejected(err: ReviewError) -> Self {
        Reviewed {
            facts: Facts::unparsed(&err),
            decision: Decision::bad_request(err.reason),
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
    match review::parse_pod(body) {
        Err(err) => Reviewed::rejected(err),
        Ok(req) => Reviewed {
            decision: decide::decide_pod(&req, view, expiry, now),
            facts: Facts::of_pod(&req),
        },
    }
}

/// Parse and decide an Agent review (a SubjectAccessReview when a sandbox's expiry moves later,
/// the policy when the agent is governed).
pub async fn review_agent(
    body: &[u8],
    view: &dyn View,
    authz: &dyn Authorizer,
    expiry: &ExpiryPolicy,
    now: Timestamp,
    policy_slots: &Semaphore,
) -> Reviewed<'static> {
    match review::parse(body) {
        Err(err) => Reviewed::rejected(err),
        Ok(req) => Reviewed {
            decision: decide::decide_agent(&req, view, authz, expiry, now, policy_slots).await,
            facts: Facts::of(&req),
        },
    }
}

/// Parse and decide an AgentPromotion review (a SubjectAccessReview and the policy).
pub async fn review_promotion(
    body: &[u8],
    view: &dyn View,
    authz: &dyn Authorizer,
    policy_slots: &Semaphore,
) -> Reviewed<'static> {
    match review::parse(body) {
        Err(err) => Reviewed::rejected(err),
        Ok(req) => Reviewed {
            decision: decide::decide_promotion(&req, view, authz, policy_slots).await,
            facts: Facts::of(&req),
        },
    }
}

/// Parse and decide a PolicyBundle review (compile its Rego).
pub async fn review_bundle(
    body: &[u8],
    policy_slots: &Semaphore,
    bundle_keys: Option<&agentgov_runtime::keys::Keys>,
    floor: Option<&agentgov_api::policy_bundle::PolicyData>,
) -> Reviewed<'static> {
    match review::parse(body) {
        Err(err) => Reviewed::rejected(err),
        Ok(req) => Reviewed {
            decision: decide::decide_bundle(&req, policy_slots, bundle_keys, floor).await,
            facts: Facts::of(&req),
        },
    }
}

/// Parse and decide an agent-sandbox Sandbox review (its pod template judged as a Pod CREATE;
/// no I/O).
pub fn review_sandbox(
    body: &[u8],
    view: &dyn View,
    expiry: &ExpiryPolicy,
    now: Timestamp,
) -> Reviewed<'static> {
    match review::parse(body) {
        Err(err) => Reviewed::rejected(err),
        Ok(req) => Reviewed {
            decision: decide::decide_sandbox(&req, view, expiry, now),
            facts: Facts::of(&req),
        },
    }
}
