//! Prometheus metrics with the seed's names. Labels are bounded: decision codes, outcomes,
//! governance statuses and error categories, never object names.

use agentgov_api::GovernanceStatus;
use agentgov_api::policy::{audit_metric_code, metric_reason};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    pub controller: String,
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabel {
    pub action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabel {
    pub namespace: String,
}

/// A gauge of US dollars.
pub type Dollars = Gauge<f64, std::sync::atomic::AtomicU64>;

#[derive(Clone)]
pub struct Metrics {
    pub promotion_attempts: Counter,
    pub promotion_denies: Family<ReasonLabel, Counter>,
    pub policy_reload_success: Counter,
    pub policy_reload_failure: Counter,
    pub agent_invalidations: Counter,
    pub reconcile_duration: Family<ControllerLabel, Histogram>,
    pub reconcile_errors: Family<ErrorLabel, Counter>,
    pub agents_by_status: Family<StatusLabel, Gauge>,
    pub revalidation_duration: Histogram,
    /// 1 while an admission guard is missing or altered (nothing is signed), else 0.
    pub trust_guards_missing: Gauge,
    /// 1 while the webhook's configuration is deleted (break-glass), else 0.
    pub webhook_configuration_missing: Gauge,
    /// What quarantine did to agents' running Pods: isolate, stop (per Pod evicted), lift.
    pub quarantine_actions: Family<ActionLabel, Counter>,
    /// Contained or quarantined agents that another NetworkPolicy may widen.
    pub containment_widened: Gauge,
    /// Findings of policies in `audit` mode, by code (a deny code or `warning`).
    pub audit_findings: Family<CodeLabel, Counter>,
    /// AgentExceptions newly applied to an agent, by the deny code they waive.
    pub exceptions_applied: Family<CodeLabel, Counter>,
    /// Per namespace with a total or a governed agent: the sum of governed agents' monthly
    /// budgets. (Namespaces are a bounded set an admin creates; agents are not labels.)
    pub budget_allocated: Family<NamespaceLabel, Dollars>,
    /// Per namespace whose policy sets `maxNamespaceMonthlyBudgetUsd`: that total.
    pub budget_limit: Family<NamespaceLabel, Dollars>,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Metrics {
            promotion_attempts: Counter::default(),
            promotion_denies: Family::default(),
            policy_reload_success: Counter::default(),
            policy_reload_failure: Counter::default(),
            agent_invalidations: Counter::default(),
            reconcile_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 14))
            }),
            reconcile_errors: Family::default(),
            agents_by_status: Family::default(),
            revalidation_duration: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            trust_guards_missing: Gauge::default(),
            webhook_configuration_missing: Gauge::default(),
            quarantine_actions: Family::default(),
            containment_widened: Gauge::default(),
            audit_findings: Family::default(),
            exceptions_applied: Family::default(),
            budget_allocated: Family::default(),
            budget_limit: Family::default(),
        };
        // prometheus-client appends `_total` to counters.
        registry.register(
            "promotion_attempts",
            "Promotion attempts (policy evaluations of governed agents)",
            metrics.promotion_attempts.clone(),
        );
        registry.register(
            "promotion_denies",
            "Promotion denies, by the deny's code (a rule of the policy, no_policy, policy_error or other)",
            metrics.promotion_denies.clone(),
        );
        registry.register(
            "policy_reload_success",
            "PolicyBundle versions compiled and put in force",
            metrics.policy_reload_success.clone(),
        );
        registry.register(
            "policy_reload_failure",
            "PolicyBundle versions that failed to compile (the last good one stayed in force)",
            metrics.policy_reload_failure.clone(),
        );
        registry.register(
            "agent_invalidation_events",
            "Governed agents moved to GOVERNED_INVALIDATED",
            metrics.agent_invalidations.clone(),
        );
        registry.register(
            "agentgov_reconcile_duration_seconds",
            "Reconcile duration by controller",
            metrics.reconcile_duration.clone(),
        );
        registry.register(
            "agentgov_reconcile_errors",
            "Reconcile errors by controller and error category",
            metrics.reconcile_errors.clone(),
        );
        registry.register(
            "agentgov_agents",
            "Agents by governance status",
            metrics.agents_by_status.clone(),
        );
        registry.register(
            "agentgov_revalidation_duration_seconds",
            "Duration of a revalidation of every governed agent under a bundle",
            metrics.revalidation_duration.clone(),
        );
        registry.register(
            "agentgov_trust_guards_missing",
            "1 while an admission guard (the ValidatingAdmissionPolicies, MutatingAdmissionPolicies and bindings of the chain of trust) is missing or altered: nothing is signed",
            metrics.trust_guards_missing.clone(),
        );
        registry.register(
            "agentgov_webhook_configuration_missing",
            "1 while the webhook's ValidatingWebhookConfiguration is deleted (break-glass: no agent's Pods are checked at admission), else 0; only with --webhook-configuration",
            metrics.webhook_configuration_missing.clone(),
        );
        registry.register(
            "agentgov_quarantine_actions",
            "What quarantine did to agents' running Pods: isolate (network cut), stop (a Pod evicted), lift (quarantine ended)",
            metrics.quarantine_actions.clone(),
        );
        registry.register(
            "agentgov_containment_widened_agents",
            "Contained or quarantined agents whose Pods another NetworkPolicy may select while allowing traffic their own denies (NetworkPolicies add up); only with --contain-pods",
            metrics.containment_widened.clone(),
        );
        registry.register(
            "agentgov_policy_exceptions_applied",
            "AgentExceptions applied to an agent (a policy rule waived for it), by the deny code waived",
            metrics.exceptions_applied.clone(),
        );
        registry.register(
            "agentgov_budget_allocated_usd",
            "The sum of the monthly budgets (US dollars) of a namespace's governed agents",
            metrics.budget_allocated.clone(),
        );
        registry.register(
            "agentgov_budget_limit_usd",
            "A namespace's total monthly budget (US dollars): maxNamespaceMonthlyBudgetUsd of its effective policy; absent without one",
            metrics.budget_limit.clone(),
        );
        registry.register(
            "agentgov_policy_audit_findings",
            "Findings of PolicyBundles in audit mode (what they would have denied or warned, applied to no agent), by deny code or warning, counted when an agent's findings change",
            metrics.audit_findings.clone(),
        );
        for action in ["isolate", "stop", "lift"] {
            metrics.quarantine(action, 0);
        }
        // Not yet checked: nothing is signed until the guard watch says otherwise.
        metrics.trust_guards_missing.set(1);
        for status in GovernanceStatus::ALL {
            metrics.set_agents(status, 0);
        }
        metrics
    }

    pub fn quarantine(&self, action: &'static str, count: u64) {
        self.quarantine_actions
            .get_or_create(&ActionLabel { action })
            .inc_by(count);
    }

    pub fn set_guards_missing(&self, missing: bool) {
        self.trust_guards_missing.set(i64::from(missing));
    }

    pub fn set_agents(&self, status: GovernanceStatus, count: i64) {
        self.agents_by_status
            .get_or_create(&StatusLabel {
                status: status.as_str().to_string(),
            })
            .set(count);
    }

    /// Count a promotion deny by its code: the code itself when agentgov knows it
    /// (`agentgov_api::policy::DENY_CODES`), else `other`, so the label stays bounded whatever a
    /// custom bundle returns.
    pub fn deny(&self, code: &str) {
        self.promotion_denies
            .get_or_create(&ReasonLabel {
                reason: metric_reason(code).to_string(),
            })
            .inc();
    }

    /// Count a finding of a policy in audit mode by its bounded code
    /// (`agentgov_api::policy::audit_metric_code`).
    pub fn audit_finding(&self, code: &str) {
        self.audit_findings
            .get_or_create(&CodeLabel {
                code: audit_metric_code(code),
            })
            .inc();
    }

    /// An exception newly waives `code` for an agent (the label is bounded: a deny code, else
    /// `other`).
    pub fn exception_applied(&self, code: &str) {
        self.exceptions_applied
            .get_or_create(&CodeLabel {
                code: metric_reason(code),
            })
            .inc();
    }

    pub fn reconcile_error(&self, controller: &str, error: &'static str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabel {
                controller: controller.to_string(),
                error: error.to_string(),
            })
            .inc();
    }

    /// Time a reconcile; the duration is recorded when the guard drops.
    pub fn timer(&self, controller: &str) -> ReconcileTimer {
        ReconcileTimer {
            start: std::time::Instant::now(),
            histogram: self
                .reconcile_duration
                .get_or_create(&ControllerLabel {
                    controller: controller.to_string(),
                })
                .clone(),
        }
    }
}

pub struct ReconcileTimer {
    start: std::time::Instant,
    histogram: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    /// Denies are counted by code; a code agentgov does not know (a custom bundle's, or a
    /// sentence passed by mistake) counts as `other`, so the label set stays bounded.
    #[test]
    fn denies_are_counted_by_bounded_code() {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        for code in [
            "temperature",
            "temperature",
            "no_policy",
            "policy_error",
            "budget",
            "other",
            "a_custom_code",
            "alice may not promote agents",
        ] {
            metrics.deny(code);
        }
        let text = encoded(&registry);
        for line in [
            "promotion_denies_total{reason=\"temperature\"} 2",
            "promotion_denies_total{reason=\"no_policy\"} 1",
            "promotion_denies_total{reason=\"policy_error\"} 1",
            "promotion_denies_total{reason=\"budget\"} 1",
            "promotion_denies_total{reason=\"other\"} 3",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        let labels = text
            .lines()
            .filter(|l| l.starts_with("promotion_denies_total{"))
            .count();
        assert_eq!(labels, 5, "{text}");
    }

    #[test]
    fn metric_names_follow_the_seed() {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        metrics.promotion_attempts.inc();
        metrics.deny("actor_unauthorized");
        metrics.policy_reload_success.inc();
        metrics.policy_reload_failure.inc();
        metrics.agent_invalidations.inc();
        metrics.audit_finding("budget");
        metrics.audit_finding("no such rule");
        metrics.audit_finding("warning");
        let text = encoded(&registry);
        for name in [
            "promotion_attempts_total 1",
            "promotion_denies_total{reason=\"actor_unauthorized\"} 1",
            "policy_reload_success_total 1",
            "policy_reload_failure_total 1",
            "agent_invalidation_events_total 1",
            "agentgov_agents{status=\"GOVERNED_VALID\"} 0",
            "agentgov_policy_audit_findings_total{code=\"budget\"} 1",
            "agentgov_policy_audit_findings_total{code=\"other\"} 1",
            "agentgov_policy_audit_findings_total{code=\"warning\"} 1",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
