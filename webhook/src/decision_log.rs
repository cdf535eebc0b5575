//! The decision log: every decision logged as one line and counted. A governance decision is an
//! info line `"admission decision"` with `code`, `allowed`, `agent`, `namespace`, `requester`,
//! `reason`, `operation`, `kind`, `uid`, `dry_run`, `warnings`, and counted in
//! `agent_starts_*` (Pods and Agents) or `policy_bundles_refused_total`; a refused promotion
//! adds the lines `PROMOTION_ATTEMPT` and `PROMOTION_DENIED` and its counters; a pass-through is
//! a debug line, not counted. The lines' format and their way out to stdout are the shared
//! runtime's (`agentgov_runtime::telemetry`, `agentgov_runtime::log_sink`).

use std::borrow::Cow;

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};

use crate::decision::{Decision, Scope};
use crate::metrics::{Metrics, ReviewKind};
use crate::review::{PodRequest, ReviewError};

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

    /// Of a body that is no usable review: its uid if one could be read.
    pub fn unparsed(err: &ReviewError) -> Self {
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

/// Log and count one decision.
pub fn record(metrics: &Metrics, kind: ReviewKind, facts: &Facts<'_>, decision: &Decision) {
    let agent = decision.agent.as_deref().unwrap_or_default();
    let code = decision.code.as_str();
    match decision.scope {
        Scope::Governed => {
            if kind.is_start() {
                metrics.record_decision(decision.code);
            } else if kind == ReviewKind::policybundle && !decision.code.is_allow() {
                metrics.bundles_refused.inc();
            }
            if let Some(attempt) = decision.attempt.as_deref()
                && !facts.dry_run
            {
                metrics.record_attempt(&attempt.deny_codes);
                tracing::info!(
                    code = "PROMOTION_ATTEMPT",
                    agent,
                    namespace = &*facts.namespace,
                    actor = &*facts.requester,
                    outcome = "denied",
                    kind = kind.as_str(),
                    uid = &*facts.uid,
                    "promotion evaluated at admission"
                );
                tracing::warn!(
                    code = "PROMOTION_DENIED",
                    agent,
                    namespace = &*facts.namespace,
                    actor = &*facts.requester,
                    reasons = ?attempt.deny_codes,
                    reason = &*decision.reason,
                    kind = kind.as_str(),
                    uid = &*facts.uid,
                    "promotion refused at admission"
                );
            }
            tracing::info!(
                code,
                allowed = decision.allowed(),
                agent,
                namespace = &*facts.namespace,
                requester = &*facts.requester,
                reason = &*decision.reason,
                operation = facts.operation,
                kind = kind.as_str(),
                uid = &*facts.uid,
                dry_run = facts.dry_run,
                warnings = decision.warnings.len(),
                "admission decision"
            );
        }
        Scope::Passthrough => tracing::debug!(
            code,
            allowed = decision.allowed(),
            namespace = &*facts.namespace,
            requester = &*facts.requester,
            reason = &*decision.reason,
            operation = facts.operation,
            kind = kind.as_str(),
            uid = &*facts.uid,
            dry_run = facts.dry_run,
            "admission pass-through"
        ),
    }
}
