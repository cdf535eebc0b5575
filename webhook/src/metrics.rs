//! Prometheus metrics: one registry for the binary.
//!
//! - `agent_starts_allowed_total`, `agent_starts_denied_total{reason}`: every governance
//!   decision (Pods, Agents, agent-sandbox Sandboxes, and orchestrators outside Kubernetes
//!   asking `POST /v1/admit`); `reason` is the decision code, a bounded set.
//!   An AgentPromotion or a PolicyBundle is no start: not counted there.
//! - `promotion_attempts_total`, `promotion_denies_total{reason}`: promotions (an Agent's
//!   governed spec or an approval) refused at admission; the operator counts those it decides.
//! - `policy_bundles_refused_total`: PolicyBundle versions refused at admission.
//! - `admission_review_duration_seconds{kind}` (kind = pod | agent | agentpromotion |
//!   policybundle | external | sandbox).
//! - `webhook_cache_synced`, `keyring_reload_total{result}`, `certificate_reload_total{result}`,
//!   `policy_bundle_load_total{result}`.

use std::borrow::Cow;
use std::time::Instant;

use agentgov_api::admission::DecisionCode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ReviewKind {
    pod,
    agent,
    agentpromotion,
    policybundle,
    /// `POST /v1/admit`: an agent start asked by an orchestrator outside Kubernetes.
    external,
    /// An agent-sandbox Sandbox (`agents.x-k8s.io`): its pod template judged as a Pod.
    sandbox,
}

impl ReviewKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewKind::pod => "pod",
            ReviewKind::agent => "agent",
            ReviewKind::agentpromotion => "agentpromotion",
            ReviewKind::policybundle => "policybundle",
            ReviewKind::external => "external",
            ReviewKind::sandbox => "sandbox",
        }
    }

    /// Whether this kind's decisions are agent starts (`agent_starts_*`): a Pod, an Agent, a
    /// Sandbox, or an agent started outside Kubernetes. An approval or a bundle is no start;
    /// their refusals have counters of their own.
    pub fn is_start(self) -> bool {
        matches!(
            self,
            ReviewKind::pod | ReviewKind::agent | ReviewKind::external | ReviewKind::sandbox
        )
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: ReviewKind,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    success,
    error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: Outcome,
}

pub struct Metrics {
    registry: Registry,
    pub starts_allowed: Counter,
    pub starts_denied: Family<ReasonLabels, Counter>,
    pub review_duration: Family<KindLabels, Histogram>,
    /// The `review_duration` series of each kind, looked up once (not on every review).
    pod_review_duration: Histogram,
    agent_review_duration: Histogram,
    pub cache_synced: Gauge,
    pub keyring_reload: Family<ResultLabels, Counter>,
    pub certificate_reload: Family<ResultLabels, Counter>,
    pub policy_bundle_load: Family<ResultLabels, Counter>,
    /// Promotions refused at admission (the operator counts those it decides), by code.
    pub promotion_attempts: Counter,
    pub promotion_denies: Family<PromotionReasonLabels, Counter>,
    /// PolicyBundle versions refused at admission (they do not compile).
    pub bundles_refused: Counter,
}

/// A promotion deny's code (bounded: `agentgov_api::policy::metric_reason`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PromotionReasonLabels {
    pub reason: &'static str,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Buckets from 0.5 ms to 5 s: most decisions are sub-millisecond cache look-ups; a
/// SubjectAccessReview plus a policy evaluation takes tens of milliseconds.
const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let starts_allowed = Counter::default();
        // prometheus-client appends `_total` to counters.
        registry.register(
            "agent_starts_allowed",
            "Admission decisions that allowed an agent Pod, Agent or external start (ADMISSION_ALLOW)",
            starts_allowed.clone(),
        );
        let starts_denied = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "agent_starts_denied",
            "Admission decisions that denied, by decision code",
            starts_denied.clone(),
        );
        let review_duration =
            Family::<KindLabels, Histogram>::new_with_constructor(|| -> Histogram {
                Histogram::new(DURATION_BUCKETS)
            });
        registry.register(
            "admission_review_duration_seconds",
            "Time from receiving an AdmissionReview (or an external admission request) to answering it",
            review_duration.clone(),
        );
        let cache_synced = Gauge::default();
        registry.register(
            "webhook_cache_synced",
            "1 when the Agent and PolicyBundle caches have synced (the webhook is ready)",
            cache_synced.clone(),
        );
        let keyring_reload = Family::<ResultLabels, Counter>::default();
        registry.register(
            "keyring_reload",
            "Key ring file reloads by result (an error keeps the previous ring)",
            keyring_reload.clone(),
        );
        let certificate_reload = Family::<ResultLabels, Counter>::default();
        registry.register(
            "certificate_reload",
            "Serving certificate / client CA reloads by result (an error keeps the previous ones)",
            certificate_reload.clone(),
        );
        let policy_bundle_load = Family::<ResultLabels, Counter>::default();
        registry.register(
            "policy_bundle_load",
            "Active PolicyBundle versions loaded by result (an error keeps the last good one)",
            policy_bundle_load.clone(),
        );
        let promotion_attempts = Counter::default();
        registry.register(
            "promotion_attempts",
            "Promotion attempts refused at admission (a governed spec or an AgentPromotion the policy denies); the operator counts the attempts it decides, under the same name",
            promotion_attempts.clone(),
        );
        let promotion_denies = Family::<PromotionReasonLabels, Counter>::default();
        registry.register(
            "promotion_denies",
            "Promotion denies at admission, by the deny's code",
            promotion_denies.clone(),
        );
        let bundles_refused = Counter::default();
        registry.register(
            "policy_bundles_refused",
            "PolicyBundle versions refused at admission (ADMISSION_DENY_BUNDLE_INVALID: they do not compile)",
            bundles_refused.clone(),
        );
        let pod_review_duration = review_duration
            .get_or_create(&KindLabels {
                kind: ReviewKind::pod,
            })
            .clone();
        let agent_review_duration = review_duration
            .get_or_create(&KindLabels {
                kind: ReviewKind::agent,
            })
            .clone();
        Metrics {
            registry,
            starts_allowed,
            starts_denied,
            review_duration,
            pod_review_duration,
            agent_review_duration,
            cache_synced,
            keyring_reload,
            certificate_reload,
            policy_bundle_load,
            promotion_attempts,
            promotion_denies,
            bundles_refused,
        }
    }

    /// Count a promotion refused at admission, once, by its deny codes.
    pub fn record_attempt(&self, deny_codes: &[String]) {
        self.promotion_attempts.inc();
        for code in deny_codes {
            self.promotion_denies
                .get_or_create(&PromotionReasonLabels {
                    reason: agentgov_api::policy::metric_reason(code),
                })
                .inc();
        }
    }

    /// Count one governance decision.
    pub fn record_decision(&self, code: DecisionCode) {
        if code.is_allow() {
            self.starts_allowed.inc();
        } else {
            self.starts_denied
                .get_or_create(&ReasonLabels {
                    reason: code.as_str(),
                })
                .inc();
        }
    }

    /// A timer that records into `admission_review_duration_seconds` when dropped.
    pub fn review_timer(&self, kind: ReviewKind) -> ReviewTimer<'_> {
        ReviewTimer {
            // Pod and Agent reviews are the hot path: their series are resolved once.
            histogram: match kind {
                ReviewKind::pod => Cow::Borrowed(&self.pod_review_duration),
                ReviewKind::agent => Cow::Borrowed(&self.agent_review_duration),
                other => Cow::Owned(
                    self.review_duration
                        .get_or_create(&KindLabels { kind: other })
                        .clone(),
                ),
            },
            start: Instant::now(),
        }
    }

    pub fn reload(family: &Family<ResultLabels, Counter>, ok: bool) {
        let result = if ok { Outcome::success } else { Outcome::error };
        family.get_or_create(&ResultLabels { result }).inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Observes the elapsed time on drop, so every return path is measured.
pub struct ReviewTimer<'a> {
    histogram: Cow<'a, Histogram>,
    start: Instant,
}

impl Drop for ReviewTimer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_seed() {
        let m = Metrics::new();
        m.record_decision(DecisionCode::Allow);
        m.record_decision(DecisionCode::DenyProofMissing);
        drop(m.review_timer(ReviewKind::pod));
        Metrics::reload(&m.keyring_reload, true);
        let text = m.encode().unwrap();
        assert!(text.contains("agent_starts_allowed_total 1"), "{text}");
        assert!(
            text.contains(r#"agent_starts_denied_total{reason="ADMISSION_DENY_PROOF_MISSING"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"admission_review_duration_seconds_count{kind="pod"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"keyring_reload_total{result="success"} 1"#),
            "{text}"
        );
        assert!(text.contains("webhook_cache_synced 0"), "{text}");
    }
}
