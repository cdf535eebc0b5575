//! The `AgentException` custom resource: a time-boxed waiver of named promotion-policy rules for
//! named agents (docs/exceptions.md).
//!
//! Whoever holds the verb `except` on an agent may waive some of the policy's deny codes for it,
//! for a while, with a justification. The API server records who (`spec.requestedBy`, stamped by
//! the `agentgov-stamp-requester` MutatingAdmissionPolicy and checked by the
//! `agentgov-exception` ValidatingAdmissionPolicy, which also checks `except` on every agent the
//! exception names or selects), and the spec is immutable.
//!
//! Time is judged by agentgov's clock from the API server's `creationTimestamp`: an exception
//! ends at its `expiresAt` or at creation plus the floor's maximum, whichever comes first
//! ([`effective_expiry`]), never later than the object asserts nor later than the floor allows.
//!
//! What may be waived ([`waivable`]): the policy's rule codes, not the actor rule (an exception
//! does not make anyone an approver) and not the codes of a missing or broken policy.
//!
//! Everything here is plain functions over plain data; the operator's judge calls
//! [`applicable`] for an agent and [`waives`] for each deny code.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, ObjectMeta, Time};
use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::conditions::{self, ConditionUpdate, conditions_schema};
use crate::policy::{ACTOR_RULE, DENY_CODES, Deny, PolicyDecision};
use crate::promotion::Requester;

/// How long an exception lasts at most after its creation, unless the floor's
/// `maxExceptionDays` says otherwise.
pub const DEFAULT_MAX_EXCEPTION: SignedDuration =
    SignedDuration::from_hours(crate::policy_bundle::DEFAULT_MAX_EXCEPTION_DAYS as i64 * 24);

/// The most agents an exception may name (`spec.agents`). The admission guard checks the verb
/// `except` once per named agent, and the API server allows a policy only so many authorization
/// checks per request; more agents are selected by label.
pub const MAX_NAMED_AGENTS: usize = 8;

/// The most agent names `status.agents` lists (`status.agentCount` counts them all).
pub const MAX_STATUS_AGENTS: usize = 100;

/// The deny codes no exception can waive: the actor rule (who may approve is not a policy
/// finding to waive) and the codes of an unknown rule, a missing or a broken policy.
const NOT_WAIVABLE: [&str; 4] = [ACTOR_RULE, Deny::OTHER, Deny::NO_POLICY, Deny::POLICY_ERROR];

/// `Ready` reasons.
pub const REASON_ACTIVE: &str = "Active";
pub const REASON_EXPIRED: &str = "Expired";
pub const REASON_NOT_STAMPED: &str = "RequesterNotStamped";

/// A waiver of named policy rules for named (or selected) agents of this namespace, until it
/// expires.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "agentgov.dev",
    version = "v1alpha1",
    kind = "AgentException",
    plural = "agentexceptions",
    shortname = "aex",
    namespaced,
    status = "AgentExceptionStatus",
    printcolumn = r#"{"name":"Rules","type":"string","jsonPath":".spec.rules"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","jsonPath":".status.expiresAt"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Requested-By","type":"string","priority":1,"jsonPath":".spec.requestedBy.username"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("an AgentException's spec is immutable: create a new one"))]
#[x_kube(validation = Rule::new("(has(self.agents) && size(self.agents) > 0) || has(self.selector)").message("an AgentException must name agents, select them by label, or both"))]
#[serde(rename_all = "camelCase")]
pub struct AgentExceptionSpec {
    /// The policy's deny codes waived (see docs/exceptions.md for the list). The actor rule,
    /// `other`, `no_policy` and `policy_error` cannot be waived.
    #[schemars(length(min = 1, max = 16))]
    #[schemars(inner(length(min = 1, max = 64)))]
    #[x_kube(validation = Rule::new("self.all(r, r in ['anatomy_incomplete', 'containment', 'capabilities', 'temperature', 'budget', 'runtime', 'namespace_budget'])").message("rules must be waivable deny codes: anatomy_incomplete, containment, capabilities, temperature, budget, runtime, namespace_budget"))]
    #[x_kube(validation = Rule::new("self.all(r, self.exists_one(s, s == r))").message("rules must not name a code twice"))]
    pub rules: Vec<String>,
    /// Agents of this namespace, by name, the exception applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[schemars(inner(length(min = 1, max = 253)))]
    #[x_kube(validation = Rule::new("self.all(a, self.exists_one(b, b == a))").message("agents must not name an agent twice"))]
    pub agents: Vec<String>,
    /// Agents of this namespace, by label, the exception applies to (besides those named). It
    /// must not be empty: an exception for every agent of a namespace is not offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "selector_schema")]
    pub selector: Option<LabelSelector>,
    /// Why, for the record (a ticket, a review link, the risk accepted).
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new("self.trim().size() > 0").message("justification must not be blank"))]
    pub justification: String,
    /// When the exception ends (RFC 3339). It ends earlier when the floor's maximum since
    /// creation (`maxExceptionDays`, 7 days by default) comes first; `status.expiresAt` shows
    /// when it really ends.
    pub expires_at: Time,
    /// Who asked. Stamped by the API server from the request (a MutatingAdmissionPolicy) and
    /// checked against it (a ValidatingAdmissionPolicy); anything a client writes here is
    /// replaced. An exception without it applies to nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<Requester>,
}

/// `spec.selector`: a Kubernetes label selector with bounded sizes (so the API server can cost
/// its CEL rules), the operators it knows, and not empty.
fn selector_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "description": "A label selector over the namespace's Agents (matchLabels and matchExpressions, ANDed). Must not be empty.",
        "properties": {
            "matchLabels": {
                "type": "object",
                "maxProperties": 16,
                "additionalProperties": {"type": "string", "maxLength": 63}
            },
            "matchExpressions": {
                "type": "array",
                "maxItems": 16,
                "items": {
                    "type": "object",
                    "required": ["key", "operator"],
                    "properties": {
                        "key": {"type": "string", "minLength": 1, "maxLength": 317},
                        "operator": {"type": "string", "enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                        "values": {
                            "type": "array",
                            "maxItems": 64,
                            "items": {"type": "string", "maxLength": 63}
                        }
                    },
                    "x-kubernetes-validations": [{
                        "rule": "(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)",
                        "message": "In and NotIn need values; Exists and DoesNotExist take none"
                    }]
                }
            }
        },
        "x-kubernetes-validations": [{
            "rule": "(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)",
            "message": "selector must not be empty: an empty selector would select every agent of the namespace; name the agents or select them by label"
        }]
    })
}

/// Observed state, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentExceptionStatus {
    /// When the exception really ends: `spec.expiresAt` or creation plus the floor's maximum,
    /// whichever comes first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// The agents it applies to now, sorted by name (the first 100).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub agents: Vec<String>,
    /// How many agents it applies to now (`agents` lists at most 100 of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_count: Option<i64>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// An exception as it applies to one agent: what goes into the Agent's status and its proof.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppliedException {
    /// The AgentException's name (in the agent's namespace).
    pub name: String,
    /// The deny codes it waives.
    pub rules: Vec<String>,
    /// When it ends, by agentgov's clock ([`effective_expiry`]).
    pub expires_at: Time,
    /// Who asked, by username, as the API server authenticated them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

/// Whether an exception may waive the deny code `code`: one of the policy's
/// [`DENY_CODES`] but not the actor rule, `other`, `no_policy` or `policy_error`. The CRD's CEL
/// rule on `spec.rules` lists the same codes (a unit test holds them equal).
pub fn waivable(code: &str) -> bool {
    DENY_CODES.contains(&code) && !NOT_WAIVABLE.contains(&code)
}

/// Every waivable deny code, in the order of [`DENY_CODES`].
pub fn waivable_codes() -> impl Iterator<Item = &'static str> {
    DENY_CODES.into_iter().filter(|code| waivable(code))
}

/// When an exception created at `created` (the API server's `creationTimestamp`) that asks to
/// end at `expires_at` really ends: whichever comes first of that and `created + max`.
pub fn effective_expiry(
    created: Timestamp,
    expires_at: Timestamp,
    max: SignedDuration,
) -> Timestamp {
    let ceiling = created.saturating_add(max).unwrap_or(created);
    expires_at.min(ceiling)
}

/// Whether `selector` selects an object with `labels`, as Kubernetes matches a `LabelSelector`
/// (matchLabels and matchExpressions ANDed; `NotIn` and `DoesNotExist` match an absent label)
/// with two differences, both refusing: an empty selector selects nothing (Kubernetes: all),
/// and a malformed one (an unknown operator, `In`/`NotIn` without values, `Exists`/
/// `DoesNotExist` with values; the CRD's schema refuses them) selects nothing (Kubernetes:
/// an error).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let match_labels = selector.match_labels.as_ref().filter(|m| !m.is_empty());
    let expressions = selector
        .match_expressions
        .as_deref()
        .filter(|e| !e.is_empty());
    if match_labels.is_none() && expressions.is_none() {
        return false;
    }
    let labels_match = match_labels
        .into_iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    let expressions_match = expressions.into_iter().flatten().all(|requirement| {
        let values = requirement.values.as_deref().unwrap_or_default();
        let label = labels.get(&requirement.key);
        match requirement.operator.as_str() {
            "In" => !values.is_empty() && label.is_some_and(|l| values.contains(l)),
            "NotIn" => !values.is_empty() && label.is_none_or(|l| !values.contains(l)),
            "Exists" => values.is_empty() && label.is_some(),
            "DoesNotExist" => values.is_empty() && label.is_none(),
            _ => false,
        }
    });
    labels_match && expressions_match
}

impl AgentException {
    /// When the exception really ends ([`effective_expiry`]); `None` for an object the API
    /// server has not created (no `creationTimestamp`): its time cannot be judged.
    pub fn expiry(&self, max: SignedDuration) -> Option<Timestamp> {
        let created = self.metadata.creation_timestamp.as_ref()?.0;
        Some(effective_expiry(created, self.spec.expires_at.0, max))
    }

    /// Whether the exception names the agent or selects it by its labels.
    pub fn covers(&self, agent_name: &str, agent_labels: &BTreeMap<String, String>) -> bool {
        self.spec.agents.iter().any(|a| a == agent_name)
            || self
                .spec
                .selector
                .as_ref()
                .is_some_and(|s| selector_matches(s, agent_labels))
    }

    /// The verified requester's username; `None` when nothing stamped one.
    fn requester(&self) -> Option<&str> {
        self.spec
            .requested_by
            .as_ref()
            .map(|r| r.username.as_str())
            .filter(|u| !u.is_empty())
    }

    /// The exception as it applies to an agent at `now`, if it does: stamped, created by the
    /// API server, not being deleted, unexpired, covering the agent, waiving some waivable code.
    fn applied_to(
        &self,
        agent_name: &str,
        agent_labels: &BTreeMap<String, String>,
        now: Timestamp,
        max: SignedDuration,
    ) -> Option<AppliedException> {
        let requester = self.requester()?;
        let name = self.metadata.name.as_deref()?;
        if self.metadata.deletion_timestamp.is_some() {
            return None;
        }
        let expires_at = self.expiry(max).filter(|at| *at > now)?;
        if !self.covers(agent_name, agent_labels) {
            return None;
        }
        // The CRD refuses any other code; an object written past it waives nothing more.
        let rules: Vec<String> = self
            .spec
            .rules
            .iter()
            .filter(|r| waivable(r))
            .cloned()
            .collect();
        (!rules.is_empty()).then(|| AppliedException {
            name: name.to_string(),
            rules,
            expires_at: Time(expires_at),
            requested_by: Some(requester.to_string()),
        })
    }
}

/// The exceptions that apply to the agent `agent_name` with `agent_labels` at `now`, sorted by
/// name: unexpired ([`effective_expiry`] after `now`), naming the agent or selecting it, and
/// stamped with their requester (an exception without `requestedBy` did not pass the guards).
/// `exceptions` are the agent's namespace's: the caller lists them there.
pub fn applicable<'a>(
    exceptions: impl IntoIterator<Item = &'a AgentException>,
    agent_name: &str,
    agent_labels: &BTreeMap<String, String>,
    now: Timestamp,
    max: SignedDuration,
) -> Vec<AppliedException> {
    let mut applied: Vec<AppliedException> = exceptions
        .into_iter()
        .filter_map(|e| e.applied_to(agent_name, agent_labels, now, max))
        .collect();
    applied.sort_by(|a, b| a.name.cmp(&b.name));
    applied
}

/// When the first of the applied exceptions ends: when to judge the agent again.
pub fn next_expiry(applied: &[AppliedException]) -> Option<Timestamp> {
    applied.iter().map(|a| a.expires_at.0).min()
}

/// The first applied exception (by name) that waives the deny code `code`; `None` when none
/// does or the code is not waivable.
pub fn waives<'a>(applied: &'a [AppliedException], code: &str) -> Option<&'a AppliedException> {
    if !waivable(code) {
        return None;
    }
    applied.iter().find(|a| a.rules.iter().any(|r| r == code))
}

/// The policy's answer with the denies `exceptions` waive taken out: each becomes the warning
/// `[exception NAME] waives (CODE): message`; and the exceptions that waived something. A
/// decision with no deny left is allowed. Only waivable codes are waived
/// ([`waivable`]: never the actor rule, nor a missing or failing
/// policy).
pub fn waive(
    decision: PolicyDecision,
    exceptions: &[AppliedException],
) -> (PolicyDecision, Vec<AppliedException>) {
    if exceptions.is_empty() || decision.denies.is_empty() {
        return (decision, Vec::new());
    }
    let PolicyDecision {
        allow,
        denies,
        mut warnings,
        audit,
    } = decision;
    let mut kept = Vec::new();
    let mut used: Vec<AppliedException> = Vec::new();
    for deny in denies {
        match waives(exceptions, &deny.code) {
            Some(exception) => {
                warnings.push(format!(
                    "[exception {}] waives ({}): {}",
                    exception.name, deny.code, deny.message
                ));
                if !used.iter().any(|u| u.name == exception.name) {
                    used.push(exception.clone());
                }
            }
            None => kept.push(deny),
        }
    }
    let decision = PolicyDecision {
        allow: allow || kept.is_empty(),
        denies: kept,
        warnings,
        audit,
    };
    (decision, used)
}

/// The status of `exception` at `now`, given the metadata of the agents of its namespace (a
/// name and labels are all it reads): its effective expiry,
/// the agents it applies to, and `Ready` (true while it is stamped and unexpired). Conditions
/// already in its status keep their `lastTransitionTime` while unchanged.
pub fn observe<'a>(
    exception: &AgentException,
    agents: impl IntoIterator<Item = &'a ObjectMeta>,
    now: Timestamp,
    max: SignedDuration,
) -> AgentExceptionStatus {
    let generation = exception.metadata.generation;
    let expires_at = exception.expiry(max);
    let mut covered: Vec<String> = Vec::new();
    let no_labels = BTreeMap::new();
    for agent in agents {
        let Some(name) = agent.name.as_deref() else {
            continue;
        };
        let labels = agent.labels.as_ref().unwrap_or(&no_labels);
        if exception.covers(name, labels) {
            covered.push(name.to_string());
        }
    }
    covered.sort();
    covered.dedup();
    let agent_count = i64::try_from(covered.len()).unwrap_or(i64::MAX);
    covered.truncate(MAX_STATUS_AGENTS);

    let update = match (exception.requester(), expires_at) {
        (None, _) | (_, None) => ConditionUpdate {
            type_: conditions::READY,
            status: false,
            reason: REASON_NOT_STAMPED,
            message: "spec.requestedBy was not stamped by the API server (are the agentgov admission guards installed?): the exception applies to no agent".into(),
        },
        (Some(_), Some(at)) if at <= now => ConditionUpdate {
            type_: conditions::READY,
            status: false,
            reason: REASON_EXPIRED,
            message: format!("expired at {at}; create a new exception to waive the rules again"),
        },
        (Some(by), Some(at)) => ConditionUpdate {
            type_: conditions::READY,
            status: true,
            reason: REASON_ACTIVE,
            message: format!(
                "waives {} for {agent_count} agent(s) until {at}, requested by {by}",
                exception.spec.rules.join(", ")
            ),
        },
    };
    let mut conditions = exception
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    conditions::upsert(&mut conditions, update, generation, now);
    AgentExceptionStatus {
        expires_at: expires_at.map(Time),
        agents: covered,
        agent_count: Some(agent_count),
        observed_generation: generation,
        conditions,
    }
}

#[cfg(test)]
#[path = "exception_tests.rs"]
mod tests;
