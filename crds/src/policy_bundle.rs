//! The `PolicyBundle` custom resource: the Rego modules, data and entrypoint of a namespace's
//! promotion policy (the seed's policy snapshot), with its version history in status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent::{AgentMode, RoleClass};
use crate::conditions::conditions_schema;
use crate::pod_security::PodSecurityLevel;

/// The entrypoint of the shipped promotion policy.
pub const DEFAULT_ENTRYPOINT: &str = "data.agentgov.promotion.decision";

/// The PolicyBundle in force for a namespace has this name (operator and webhook flag
/// `--bundle-name` changes it).
pub const DEFAULT_BUNDLE_NAME: &str = "default";

/// How many versions `status.history` keeps.
pub const HISTORY_LIMIT: usize = 10;

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "agentgov.dev",
    version = "v1alpha1",
    kind = "PolicyBundle",
    plural = "policybundles",
    shortname = "pb",
    namespaced,
    status = "PolicyBundleStatus",
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"Active","type":"string","jsonPath":".status.activeVersion"}"#,
    printcolumn = r#"{"name":"Action","type":"string","jsonPath":".spec.enforcementAction"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PolicyBundleSpec {
    /// A version label for people (the hash is what proofs bind to).
    #[x_kube(validation = Rule::new("self.size() > 0").message("version must not be empty"))]
    pub version: String,
    /// The rule that returns `{allow, denies, warnings}`.
    #[serde(default = "default_entrypoint")]
    #[x_kube(validation = Rule::new("self.startsWith('data.')").message("entrypoint must be a rule path starting with data."))]
    pub entrypoint: String,
    /// Rego modules (Rego v1 syntax).
    #[x_kube(validation = Rule::new("self.size() > 0").message("at least one Rego module is required"))]
    pub modules: Vec<RegoModule>,
    /// The data document: org limits the policy reads as `data.agentgov.limits`.
    #[serde(default)]
    pub data: PolicyData,
    /// What the policy's denies do: `enforce` (unset; they refuse the promotion and invalidate
    /// a governed agent), `warn` (each becomes a warning naming the rule, so the agent is
    /// promoted GOVERNED_RESTRICTED) or `audit` (agents are not affected; the would-be denies
    /// and warnings go to `status.audit`, an Event and a metric only). The actor rule (who may
    /// promote) is enforced in every mode. Covered by the policy hash when set.
    #[serde(default, skip_serializing_if = "EnforcementAction::is_enforce")]
    pub enforcement_action: EnforcementAction,
    /// A policy-signing key's signature over the bundle's content hash (the spec without this
    /// field): `proof sign-bundle` writes it. Required when the operator and the webhook run
    /// with `--require-signed-bundles`; otherwise not checked. Left out when absent, so an
    /// unsigned bundle hashes as it always did.
    // Boxed: the spec stays small where it is moved around.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Box<crate::bundle_signature::BundleSignature>>,
}

/// The cluster's policy floor: a cluster-scoped bundle (the one named `default` is in force)
/// that governs every namespace. A namespace's `PolicyBundle` adds its rules on top: an agent
/// passes only if both allow, so a namespace can tighten the floor and never loosen it. Its
/// `data` bounds the namespaces' (a namespace bundle that sets a limit above the floor's is
/// refused at admission), and a namespace with no bundle is governed by the floor alone.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "agentgov.dev",
    version = "v1alpha1",
    kind = "ClusterPolicyBundle",
    plural = "clusterpolicybundles",
    shortname = "cpb",
    status = "PolicyBundleStatus",
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"Active","type":"string","jsonPath":".status.activeVersion"}"#,
    printcolumn = r#"{"name":"Action","type":"string","jsonPath":".spec.enforcementAction"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPolicyBundleSpec {
    /// The policy itself, as in a `PolicyBundle` (version, entrypoint, modules, data,
    /// enforcementAction, signature). Its `data.maxNamespaceMonthlyBudgetUsd` caps the sum of a
    /// namespace's approved budgets.
    #[serde(flatten)]
    pub policy: PolicyBundleSpec,
    /// The longest an `AgentException` may waive rules, in days from its creation (default 7):
    /// a later `expiresAt` is cut to this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 90").message("maxExceptionDays must be between 1 and 90"))]
    pub max_exception_days: Option<i32>,
}

/// The default longest exception, in days.
pub const DEFAULT_MAX_EXCEPTION_DAYS: i32 = 7;

impl ClusterPolicyBundleSpec {
    /// The longest an exception may last.
    pub fn max_exception(&self) -> jiff::SignedDuration {
        let days = self
            .max_exception_days
            .unwrap_or(DEFAULT_MAX_EXCEPTION_DAYS)
            .clamp(1, 90);
        jiff::SignedDuration::from_hours(i64::from(days) * 24)
    }
}

/// A bundle object of either scope, as the controllers and the webhook read it.
pub trait BundleObject {
    /// The policy the object carries.
    fn policy_spec(&self) -> &PolicyBundleSpec;
    /// What the operator recorded of it.
    fn policy_status(&self) -> Option<&PolicyBundleStatus>;
}

impl BundleObject for PolicyBundle {
    fn policy_spec(&self) -> &PolicyBundleSpec {
        &self.spec
    }
    fn policy_status(&self) -> Option<&PolicyBundleStatus> {
        self.status.as_ref()
    }
}

impl BundleObject for ClusterPolicyBundle {
    fn policy_spec(&self) -> &PolicyBundleSpec {
        &self.spec.policy
    }
    fn policy_status(&self) -> Option<&PolicyBundleStatus> {
        self.status.as_ref()
    }
}

/// What a bundle's denies do to agents ([`PolicyBundleSpec::enforcement_action`]).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum EnforcementAction {
    /// Denies refuse (today's behaviour).
    #[default]
    Enforce,
    /// Denies become warnings: the agent is promoted GOVERNED_RESTRICTED.
    Warn,
    /// Denies and warnings are reported only.
    Audit,
}

impl EnforcementAction {
    pub fn as_str(self) -> &'static str {
        match self {
            EnforcementAction::Enforce => "enforce",
            EnforcementAction::Warn => "warn",
            EnforcementAction::Audit => "audit",
        }
    }

    /// The default, left out of the serialized spec (so of the policy hash).
    pub fn is_enforce(&self) -> bool {
        *self == EnforcementAction::Enforce
    }
}

fn default_entrypoint() -> String {
    DEFAULT_ENTRYPOINT.to_string()
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RegoModule {
    /// A file name for error messages, such as `promotion.rego`.
    #[x_kube(validation = Rule::new("self.size() > 0").message("module name must not be empty"))]
    pub name: String,
    /// The Rego source.
    pub rego: String,
}

/// Org limits. A cluster admin changes these without touching Rego.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyData {
    /// The largest monthly budget an agent may ask for, in US dollars.
    #[serde(default = "default_max_budget")]
    #[x_kube(validation = Rule::new("self >= 0.0").message("maxMonthlyBudgetUsd must not be negative"))]
    pub max_monthly_budget_usd: f64,
    /// The most a namespace's governed agents may ask for together each month, in US dollars:
    /// a promotion that would take the namespace's sum of approved budgets above it is denied
    /// (`namespace_budget`). Unset: no total. Usually set on the cluster floor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0.0").message("maxNamespaceMonthlyBudgetUsd must not be negative"))]
    pub max_namespace_monthly_budget_usd: Option<f64>,
    /// The highest temperature each role class may use.
    #[serde(default)]
    pub temperature_limits: TemperatureLimits,
    /// Roles that may promote (the seed's agent_admin and policy_admin). An actor holds a role
    /// when the webhook's SubjectAccessReview for the verb `promote` allows it, or when one of the
    /// actor's Kubernetes groups carries the role's name.
    #[serde(default = "default_promoter_roles")]
    pub promoter_roles: Vec<String>,
    /// Free-form data for custom modules, available as `data.agentgov.limits.extra`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub extra: Option<serde_json::Value>,
    /// The Pod Security Standards level agents' Pods must meet at admission. Unset: sandbox
    /// agents' Pods `restricted`, governed agents' Pods `baseline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security: Option<PodSecurityData>,
    /// How many approvals a promotion needs. Unset: one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<ApprovalsData>,
    /// What a promotion requires of the agent's runtime (`spec.runtime`). Unset: nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeData>,
}

/// What a promotion requires of the agent's runtime, and how the operator contains and
/// quarantines agents' running Pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeData {
    /// A governed agent is promoted only if it lists the images its Pods may run
    /// (`spec.runtime.images`, not empty), so that what runs is bound to what was approved.
    #[serde(default)]
    pub require_images: bool,
    /// Where a contained agent's Pods may connect besides the cluster DNS (a sandbox agent, or
    /// a governed one whose anatomy says `externalCalls: false`): a model gateway, say. The
    /// operator writes a NetworkPolicy per contained agent that allows egress only there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub egress: Vec<EgressDestination>,
    /// What quarantine (GOVERNED_INVALIDATED, or a sandbox past its expiry) does to an agent's
    /// running Pods besides cutting their network: `stop` (the default) evicts them, `isolate`
    /// only cuts their network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<QuarantineAction>,
}

impl QuarantineAction {
    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineAction::Isolate => "isolate",
            QuarantineAction::Stop => "stop",
        }
    }
}

impl RuntimeData {
    pub fn quarantine(&self) -> QuarantineAction {
        self.quarantine.unwrap_or_default()
    }
}

/// An address block (and TCP ports) contained agents may reach.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct EgressDestination {
    /// An IPv4 or IPv6 block, such as `10.0.12.7/32`.
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("isCIDR(self)").message("cidr must be an address block such as 10.0.12.7/32"))]
    pub cidr: String,
    /// TCP ports; empty: every port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(range(min = 1, max = 65535)))]
    pub ports: Vec<i32>,
}

/// What quarantine does to an agent's running Pods.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum QuarantineAction {
    /// Cut their network only (a deny-all NetworkPolicy): the Pods keep running, for forensics.
    Isolate,
    /// Cut their network and evict them (the Eviction API, which honours
    /// PodDisruptionBudgets); their replacements are refused at admission.
    #[default]
    Stop,
}

/// Approvals a promotion needs: `required` AgentPromotions for the agent's current spec hash,
/// from that many distinct identities the API server verified, each allowed by the policy (2 is
/// four-eyes).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalsData {
    #[serde(default = "one")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 10").message("approvals.required must be between 1 and 10"))]
    pub required: i32,
}

fn one() -> i32 {
    1
}

impl Default for PolicyData {
    fn default() -> Self {
        PolicyData {
            max_monthly_budget_usd: default_max_budget(),
            max_namespace_monthly_budget_usd: None,
            temperature_limits: TemperatureLimits::default(),
            promoter_roles: default_promoter_roles(),
            extra: None,
            pod_security: None,
            approvals: None,
            runtime: None,
        }
    }
}

impl PolicyData {
    /// How many distinct approvers a promotion needs (at least one).
    pub fn approvals_required(&self) -> usize {
        self.approvals
            .as_ref()
            .map_or(1, |a| usize::try_from(a.required.max(1)).unwrap_or(1))
    }

    /// The Pod Security level an agent's Pods must meet under this data: `restricted` for a
    /// sandbox (whatever the data says: a sandbox is contained), for a governed agent its role
    /// class's level, else `governed`, else `baseline`. Nothing lower than `baseline` exists.
    pub fn pod_security_level(&self, mode: AgentMode, role: RoleClass) -> PodSecurityLevel {
        if mode == AgentMode::Sandbox {
            return PodSecurityLevel::Restricted;
        }
        let Some(data) = self.pod_security.as_ref() else {
            return PodSecurityLevel::Baseline;
        };
        let by_role = data.role_classes.as_ref().and_then(|r| match role {
            RoleClass::Compliance => r.compliance,
            RoleClass::Analysis => r.analysis,
            RoleClass::Ideation => r.ideation,
        });
        by_role.unwrap_or(data.governed)
    }
}

/// The Pod Security Standards levels of governed agents' Pods (sandbox agents' Pods always meet
/// `restricted`). There is no level below `baseline`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodSecurityData {
    /// The level of every governed agent's Pods, unless its role class has its own.
    #[serde(default = "baseline")]
    pub governed: PodSecurityLevel,
    /// Levels per role class, for governed agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_classes: Option<PodSecurityByRole>,
}

/// A Pod Security level per role class; an unset class takes `governed`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodSecurityByRole {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compliance: Option<PodSecurityLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<PodSecurityLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ideation: Option<PodSecurityLevel>,
}

fn baseline() -> PodSecurityLevel {
    PodSecurityLevel::Baseline
}

fn default_max_budget() -> f64 {
    1000.0
}

fn default_promoter_roles() -> Vec<String> {
    vec!["agent_admin".into(), "policy_admin".into()]
}

fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

/// Temperature ceilings per role class (the seed's 0.3 / 0.7 / 1.0).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TemperatureLimits {
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 2.0").message("limit must be between 0 and 2"))]
    pub compliance: f64,
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 2.0").message("limit must be between 0 and 2"))]
    pub analysis: f64,
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 2.0").message("limit must be between 0 and 2"))]
    pub ideation: f64,
}

impl Default for TemperatureLimits {
    fn default() -> Self {
        TemperatureLimits {
            compliance: 0.3,
            analysis: 0.7,
            ideation: 1.0,
        }
    }
}

/// Observed state of a bundle: what is in force, and what came before (the seed's policy_versions).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyBundleStatus {
    /// Hash of the version in force (the last one that compiled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_hash: Option<String>,
    /// Version label of the version in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_version: Option<String>,
    /// The version in force itself: the last spec that compiled. A spec that fails to compile
    /// never replaces it, so one bad edit cannot take the policy (or admission) down, and the
    /// operator and webhook recover it after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_spec: Option<PolicyBundleSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Recent versions, newest first, at most ten.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<PolicyVersion>,
    /// Outcome of the last revalidation of governed agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_revalidation: Option<RevalidationSummary>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyVersion {
    pub hash: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    pub time: Time,
    /// Who changed it, where known (the last field manager).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    pub reason: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevalidationSummary {
    /// The policy hash the agents were revalidated against.
    pub policy_hash: String,
    pub valid: i64,
    pub restricted: i64,
    pub invalidated: i64,
    /// Promotion requests that were never governed and are still denied.
    #[serde(default)]
    pub denied: i64,
    pub errors: i64,
    pub duration_ms: i64,
    pub finished_at: Option<Time>,
}

/// Push a version onto a history list, newest first, keeping at most [`HISTORY_LIMIT`].
/// A hash already at the head is not added twice.
pub fn push_history(history: &mut Vec<PolicyVersion>, entry: PolicyVersion) {
    if history.first().is_some_and(|h| h.hash == entry.hash) {
        return;
    }
    history.insert(0, entry);
    history.truncate(HISTORY_LIMIT);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(hash: &str) -> PolicyVersion {
        PolicyVersion {
            hash: hash.into(),
            version: String::new(),
            time: Time(jiff::Timestamp::UNIX_EPOCH),
            actor: None,
            reason: "test".into(),
        }
    }

    #[test]
    fn pod_security_levels_never_go_below_baseline_and_sandboxes_are_restricted() {
        use PodSecurityLevel::{Baseline, Restricted};
        let mut data = PolicyData::default();
        assert_eq!(
            data.pod_security_level(AgentMode::Sandbox, RoleClass::Ideation),
            Restricted
        );
        assert_eq!(
            data.pod_security_level(AgentMode::Governed, RoleClass::Ideation),
            Baseline
        );
        data.pod_security = Some(PodSecurityData {
            governed: Baseline,
            role_classes: Some(PodSecurityByRole {
                compliance: Some(Restricted),
                ..Default::default()
            }),
        });
        assert_eq!(
            data.pod_security_level(AgentMode::Governed, RoleClass::Compliance),
            Restricted
        );
        assert_eq!(
            data.pod_security_level(AgentMode::Governed, RoleClass::Analysis),
            Baseline
        );
        // Data cannot loosen a sandbox.
        assert_eq!(
            data.pod_security_level(AgentMode::Sandbox, RoleClass::Analysis),
            Restricted
        );
        let parsed: PodSecurityData =
            serde_json::from_str(r#"{"roleClasses":{"analysis":"restricted"}}"#).unwrap();
        assert_eq!(parsed.governed, Baseline);
        assert!(serde_json::from_str::<PodSecurityData>(r#"{"governed":"privileged"}"#).is_err());
    }

    #[test]
    fn history_is_bounded_newest_first_and_deduplicated() {
        let mut history = Vec::new();
        for i in 0..(HISTORY_LIMIT + 5) {
            push_history(&mut history, version(&i.to_string()));
        }
        push_history(&mut history, version(&(HISTORY_LIMIT + 4).to_string()));
        assert_eq!(history.len(), HISTORY_LIMIT);
        assert_eq!(history[0].hash, (HISTORY_LIMIT + 4).to_string());
        assert_eq!(history[HISTORY_LIMIT - 1].hash, "5");
    }
}
