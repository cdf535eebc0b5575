//! PolicyReports (`wgpolicyk8s.io/v1alpha2`, the Policy WG's report format that Policy Reporter
//! and other dashboards read): one per namespace, named [`REPORT_NAME`], summarising every
//! agent's result as its status says (`--policy-reports`).
//!
//! [`build`] is the report as a pure function of the namespace's agents; [`Reports`] collects
//! which namespaces changed (every watch event of an agent, the operator's own status writes
//! included) and the deny codes of the last judgements (the status keeps only the sentences);
//! [`run`] recomputes each changed namespace's report from the agent cache at most once a
//! second and writes it only when its content changed. Without the CRD the operator logs once
//! and writes no report; judging never waits for a report.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use agentgov_api::conditions::{PROMOTED, READY};
use agentgov_api::{Agent, GovernanceStatus};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher::Event;
use kube::{Client, ResourceExt};
use serde::Serialize;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::agents::Agents;
use crate::compact::{CachedAgent, WatchedAgent};
use crate::context::MANAGER;
use crate::written::{Fingerprint, fingerprint};

/// The name of the one report per namespace.
pub const REPORT_NAME: &str = "agentgov";
/// Every result's `source`, and the `app.kubernetes.io/managed-by` label of the reports.
pub const SOURCE: &str = "agentgov";
/// The rule of a result that is about the promotion as a whole, not one deny.
pub const PROMOTION_RULE: &str = "promotion";
/// At most one write per namespace this often: a revalidation of thousands of agents makes one
/// report write a second, not one per agent.
pub const DEBOUNCE: Duration = Duration::from_secs(1);

const GROUP: &str = "wgpolicyk8s.io";
const VERSION: &str = "v1alpha2";
const KIND: &str = "PolicyReport";

/// PolicyReport as the upstream CRD serves it.
pub fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GROUP, VERSION, KIND),
        "policyreports",
    )
}

/// A PolicyReport, as much of the upstream schema as agentgov fills.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyReport {
    pub api_version: String,
    pub kind: String,
    pub metadata: ReportMeta,
    pub summary: Summary,
    pub results: Vec<ReportResult>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct ReportMeta {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

/// Results by outcome (`error` is never used: an agent the policy could not judge fails).
#[derive(Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub pass: i64,
    pub fail: i64,
    pub warn: i64,
    pub error: i64,
    pub skip: i64,
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    Warn,
    Skip,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReportResult {
    /// The PolicyBundle judged against: `<name>/<version>` (`<name>` when it has no version).
    pub policy: String,
    /// The deny code of a failed rule, else [`PROMOTION_RULE`].
    pub rule: String,
    pub category: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<&'static str>,
    pub result: Outcome,
    pub scored: bool,
    pub message: String,
    pub source: String,
    pub resources: Vec<ResourceRef>,
    pub timestamp: ReportTime,
    /// The agent's governance status and the policy hash.
    pub properties: BTreeMap<String, String>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

/// The upstream's `{seconds, nanos}` timestamp.
#[derive(Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReportTime {
    pub seconds: i64,
    pub nanos: i32,
}

/// The report of `namespace`: one result per agent that has a status (one per deny for a
/// failing agent), sorted by agent name. `codes` gives the deny codes of an agent's last
/// judgement by uid (aligned with `status.denies`); a deny without one has the rule
/// [`PROMOTION_RULE`]. An agent never judged against a policy (a sandbox) names `bundle_name`,
/// the PolicyBundle in force in each namespace. The content depends only on the agents' statuses (the timestamps are
/// their Ready conditions' transitions), so an unchanged namespace builds an equal report.
pub fn build<'a>(
    namespace: &str,
    bundle_name: &str,
    agents: impl IntoIterator<Item = &'a Agent>,
    codes: impl Fn(&str) -> Option<Vec<String>>,
) -> PolicyReport {
    let mut agents: Vec<&Agent> = agents
        .into_iter()
        .filter(|a| a.namespace().as_deref() == Some(namespace))
        .filter(|a| {
            a.status
                .as_ref()
                .is_some_and(|s| s.governance_status.is_some())
        })
        .collect();
    agents.sort_by_key(|a| a.name_any());
    let mut results = Vec::new();
    for agent in agents {
        results.extend(results_of(agent, bundle_name, &codes));
    }
    let mut summary = Summary::default();
    for r in &results {
        *match r.result {
            Outcome::Pass => &mut summary.pass,
            Outcome::Fail => &mut summary.fail,
            Outcome::Warn => &mut summary.warn,
            Outcome::Skip => &mut summary.skip,
        } += 1;
    }
    PolicyReport {
        api_version: format!("{GROUP}/{VERSION}"),
        kind: KIND.into(),
        metadata: ReportMeta {
            name: REPORT_NAME.into(),
            namespace: namespace.into(),
            labels: BTreeMap::from([("app.kubernetes.io/managed-by".into(), SOURCE.into())]),
        },
        summary,
        results,
    }
}

/// An agent's results: pass (GOVERNED_VALID), warn (GOVERNED_RESTRICTED, the warnings), fail
/// (GOVERNED_INVALIDATED, one per deny), skip (SANDBOX: not judged for promotion, or its
/// request refused, which leaves it in the sandbox).
fn results_of(
    agent: &Agent,
    bundle_name: &str,
    codes: &impl Fn(&str) -> Option<Vec<String>>,
) -> Vec<ReportResult> {
    let Some(status) = agent.status.as_ref() else {
        return Vec::new();
    };
    let Some(governance) = status.governance_status else {
        return Vec::new();
    };
    let uid = agent.metadata.uid.clone().unwrap_or_default();
    let policy = status.policy.as_ref().map_or_else(
        || bundle_name.to_string(),
        |p| {
            if p.version.is_empty() {
                p.name.clone()
            } else {
                format!("{}/{}", p.name, p.version)
            }
        },
    );
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
        .or_else(|| status.conditions.iter().find(|c| c.type_ == PROMOTED));
    let timestamp = ready
        .map(|c| c.last_transition_time.0)
        .or_else(|| agent.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .map_or_else(ReportTime::default, |t| ReportTime {
            seconds: t.as_second(),
            nanos: t.subsec_nanosecond(),
        });
    let mut properties = BTreeMap::from([(
        "governanceStatus".to_string(),
        governance.as_str().to_string(),
    )]);
    if let Some(p) = &status.policy {
        properties.insert("policyHash".into(), p.hash.clone());
    }
    let result = |outcome, rule: &str, severity, message: String| ReportResult {
        policy: policy.clone(),
        rule: rule.to_string(),
        category: "agentgov".into(),
        severity,
        result: outcome,
        scored: true,
        message,
        source: SOURCE.into(),
        resources: vec![ResourceRef {
            api_version: "agentgov.dev/v1alpha1".into(),
            kind: "Agent".into(),
            name: agent.name_any(),
            namespace: agent.namespace().unwrap_or_default(),
            uid: uid.clone(),
        }],
        timestamp,
        properties: properties.clone(),
    };
    let condition_message = || ready.map(|c| c.message.clone()).unwrap_or_default();
    match governance {
        GovernanceStatus::GovernedValid => vec![result(
            Outcome::Pass,
            PROMOTION_RULE,
            None,
            non_empty(condition_message(), "promoted under the policy in force"),
        )],
        GovernanceStatus::GovernedRestricted => vec![result(
            Outcome::Warn,
            PROMOTION_RULE,
            Some("medium"),
            non_empty(status.warnings.join("; "), "promoted with warnings"),
        )],
        GovernanceStatus::GovernedInvalidated if status.denies.is_empty() => vec![result(
            Outcome::Fail,
            PROMOTION_RULE,
            Some("high"),
            non_empty(condition_message(), "invalidated"),
        )],
        GovernanceStatus::GovernedInvalidated => {
            let codes = codes(&uid).filter(|c| c.len() == status.denies.len());
            status
                .denies
                .iter()
                .enumerate()
                .map(|(i, deny)| {
                    let rule = codes.as_ref().map_or(PROMOTION_RULE, |c| c[i].as_str());
                    result(Outcome::Fail, rule, Some("high"), deny.clone())
                })
                .collect()
        }
        GovernanceStatus::Sandbox => vec![result(
            Outcome::Skip,
            PROMOTION_RULE,
            None,
            non_empty(
                if status.denies.is_empty() {
                    condition_message()
                } else {
                    format!("promotion refused: {}", status.denies.join("; "))
                },
                "sandbox: not judged for promotion",
            ),
        )],
    }
}

fn non_empty(message: String, otherwise: &str) -> String {
    if message.is_empty() {
        otherwise.to_string()
    } else {
        message
    }
}

/// What the report writer needs to know: which namespaces changed, and the deny codes of each
/// agent's last judgement. Does nothing unless enabled.
#[derive(Default)]
pub struct Reports {
    enabled: bool,
    dirty: Mutex<HashSet<String>>,
    codes: Mutex<HashMap<String, Vec<String>>>,
    changed: Notify,
}

impl Reports {
    pub fn new(enabled: bool) -> Self {
        Reports {
            enabled,
            ..Reports::default()
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The namespace's report is to be recomputed.
    pub fn mark(&self, namespace: &str) {
        if !self.enabled {
            return;
        }
        self.dirty
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(namespace.to_string());
        self.changed.notify_one();
    }

    /// A watch event of an agent: its namespace's report may change.
    pub fn observe(&self, event: &Event<WatchedAgent>) {
        if !self.enabled {
            return;
        }
        match event {
            Event::Apply(agent) | Event::InitApply(agent) => {
                self.mark(&agent.namespace().unwrap_or_default());
            }
            Event::Delete(agent) => {
                if let Some(uid) = agent.metadata.uid.as_deref() {
                    self.codes
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(uid);
                }
                self.mark(&agent.namespace().unwrap_or_default());
            }
            Event::Init | Event::InitDone => {}
        }
    }

    /// The deny codes of an agent's judgement (the agent controller's, after its write).
    pub fn judged(&self, uid: &str, deny_codes: &[String]) {
        if !self.enabled {
            return;
        }
        let mut codes = self.codes.lock().unwrap_or_else(PoisonError::into_inner);
        if deny_codes.is_empty() {
            codes.remove(uid);
        } else if codes.get(uid).map(Vec::as_slice) != Some(deny_codes) {
            codes.insert(uid.to_string(), deny_codes.to_vec());
        }
    }

    fn codes(&self, uid: &str) -> Option<Vec<String>> {
        self.codes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(uid)
            .cloned()
    }

    fn take_dirty(&self) -> HashSet<String> {
        std::mem::take(&mut *self.dirty.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Keep each namespace's report in step with the agent cache, until the process exits: after
/// the cache has synced, every namespace with agents once, then each namespace that changed, at
/// most once per [`DEBOUNCE`], written (server-side apply) only when its content differs from
/// what this process last wrote. A namespace left with no judged agent has its report deleted.
pub async fn run(
    client: Client,
    bundle_name: String,
    agents: Arc<Agents>,
    synced: crate::cache::Synced,
    reports: Arc<Reports>,
) {
    synced.wait().await;
    let mut last: HashMap<String, Fingerprint> = HashMap::new();
    let mut missing_crd_logged = false;
    let namespaces: Vec<String> = agents.lock().keys().map(|ns| ns.to_string()).collect();
    for namespace in namespaces {
        reports.mark(&namespace);
    }
    loop {
        reports.changed.notified().await;
        tokio::time::sleep(DEBOUNCE).await;
        let dirty = reports.take_dirty();
        for namespace in dirty {
            let held: Vec<(Box<str>, Arc<CachedAgent>)> = agents
                .lock()
                .get(namespace.as_str())
                .map(|names| {
                    names
                        .iter()
                        .filter(|(_, a)| a.summary.governance_status.is_some())
                        .map(|(name, a)| (name.clone(), Arc::clone(a)))
                        .collect()
                })
                .unwrap_or_default();
            // Each agent of the namespace read whole again (its denies, warnings, conditions).
            let judged: Vec<Agent> = held
                .iter()
                .filter_map(|(name, a)| {
                    a.object()
                        .inspect_err(|e| warn!(agent = %name, namespace, error = %e, "left out of the PolicyReport"))
                        .ok()
                })
                .collect();
            let report = build(&namespace, &bundle_name, &judged, |uid| reports.codes(uid));
            let empty = report.results.is_empty();
            let content = fingerprint(&serde_json::to_string(&report).unwrap_or_default());
            if last.get(&namespace) == Some(&content) {
                continue;
            }
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &namespace, &resource());
            let written = if empty {
                match api.delete(REPORT_NAME, &DeleteParams::default()).await {
                    Err(kube::Error::Api(e)) if e.code == 404 && !crd_missing(&e) => Ok(()),
                    other => other.map(|_| ()),
                }
            } else {
                api.patch(
                    REPORT_NAME,
                    // Strict: a field the upstream schema does not have is an error, not
                    // silently pruned.
                    &PatchParams::apply(MANAGER).force().validation_strict(),
                    &Patch::Apply(&report),
                )
                .await
                .map(|_| ())
            };
            match written {
                Ok(()) => {
                    debug!(%namespace, pass = report.summary.pass, warn = report.summary.warn,
                        fail = report.summary.fail, skip = report.summary.skip, "policy report written");
                    last.insert(namespace, content);
                    if missing_crd_logged {
                        info!("the PolicyReport CRD is installed: policy reports are written");
                        missing_crd_logged = false;
                    }
                }
                Err(kube::Error::Api(e)) if crd_missing(&e) => {
                    // Logged once; the next change of an agent tries again (the CRD may be
                    // installed by then).
                    if !missing_crd_logged {
                        warn!(error = %e, "the PolicyReport CRD (policyreports.wgpolicyk8s.io) is not installed: no policy reports are written");
                        missing_crd_logged = true;
                    }
                }
                Err(e) => {
                    warn!(%namespace, error = %e, "policy report write failed; retrying");
                    reports.mark(&namespace);
                }
            }
        }
    }
}

/// A 404 for the resource type itself (the CRD is not served), rather than for the object.
fn crd_missing(e: &kube::core::Status) -> bool {
    e.code == 404 && e.details.as_ref().is_none_or(|d| d.name.is_empty())
}

#[cfg(test)]
#[path = "policy_report_tests.rs"]
mod tests;
