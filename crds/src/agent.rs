//! The `Agent` custom resource: one AI agent in a namespace (the seed's workspace).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::conditions::conditions_schema;
use crate::proof::ProofBundle;
use crate::runtime::RuntimeSpec;

/// Desired state of an agent: what it is, how it reasons and what it may touch.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "agentgov.dev",
    version = "v1alpha1",
    kind = "Agent",
    plural = "agents",
    shortname = "agent",
    namespaced,
    status = "AgentStatus",
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.governanceStatus"}"#,
    printcolumn = r#"{"name":"Role","type":"string","jsonPath":".spec.roleClass"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AgentSpec {
    /// What the agent is for, in a sentence or two.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The agent's own version label (for example `1.2.0`).
    #[x_kube(validation = Rule::new("self.size() > 0").message("version must not be empty"))]
    pub version: String,
    /// The role class decides the policy limits that apply (temperature, for one).
    pub role_class: RoleClass,
    /// The desired tier: `sandbox` (contained, expiring) or `governed` (a promotion request).
    #[serde(default)]
    pub mode: AgentMode,
    /// The agent's anatomy: reasoning, inputs, actions, memory, capabilities, containment, economics.
    pub anatomy: Anatomy,
    /// Sandbox lifetime. Give `ttlSeconds` or `expiresAt`, not both; the operator's default applies otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxSpec>,
    /// How the agent was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<AgentSource>,
    /// What the agent's Pods may run, bound by its approval: Pods labelled for the agent run
    /// only these images. Without it the agent's Pods are not bound to images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeSpec>,
}

/// The seed's role classes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoleClass {
    Compliance,
    Analysis,
    Ideation,
}

impl RoleClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleClass::Compliance => "compliance",
            RoleClass::Analysis => "analysis",
            RoleClass::Ideation => "ideation",
        }
    }
}

/// The tier an agent asks for.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgentMode {
    #[default]
    Sandbox,
    Governed,
}

/// The anatomy. Fields the Minimum Viable Anatomy needs (reasoning, inputs, actions, memory)
/// are optional in the schema on purpose: the promotion policy names what is missing.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Anatomy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Reasoning>,
    /// Data sources the agent reads (non-empty names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1)))]
    pub inputs: Vec<String>,
    /// Actions the agent may take (non-empty names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1)))]
    pub actions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// Capabilities the agent declares (non-empty names); promotion needs at least one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1)))]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub containment: Containment,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub economics: Option<Economics>,
}

/// The model and how it samples.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Reasoning {
    #[x_kube(validation = Rule::new("self.size() > 0").message("model must not be empty"))]
    pub model: String,
    /// Sampling temperature, 0 to 2.
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 2.0").message("temperature must be between 0 and 2"))]
    pub temperature: f64,
}

/// Memory the agent keeps.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Memory {
    /// The kind of memory.
    pub kind: MemoryKind,
    /// How long memory is kept, in days (persistent memory only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub retention_days: Option<i32>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemoryKind {
    None,
    Session,
    Persistent,
}

/// What the agent may reach outside itself. A sandbox agent has both false.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Containment {
    #[serde(default)]
    pub external_calls: bool,
    #[serde(default)]
    pub persistent_writes: bool,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Economics {
    /// Monthly budget in US dollars; the bundle's `maxMonthlyBudgetUsd` caps it.
    #[x_kube(validation = Rule::new("self >= 0.0").message("monthlyBudgetUsd must not be negative"))]
    pub monthly_budget_usd: f64,
}

/// Sandbox lifetime: a TTL from creation, or an absolute time. Expiry is judged by agentgov's clock
/// against the API server's `creationTimestamp`, capped by the operator's maximum TTL.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.ttlSeconds) && has(self.expiresAt))").message("give sandbox.ttlSeconds or sandbox.expiresAt, not both"))]
pub struct SandboxSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0").message("ttlSeconds must be positive"))]
    pub ttl_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
}

/// How the agent came to be (the seed's seven creation modes).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentSource {
    pub kind: SourceKind,
    /// What it was made from: a template name, the agent cloned, a workflow or event id, an import URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Template,
    Scratch,
    Clone,
    Workflow,
    Conversation,
    Event,
    Import,
}

/// The governance tiers of the seed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum GovernanceStatus {
    #[serde(rename = "SANDBOX")]
    Sandbox,
    #[serde(rename = "GOVERNED_VALID")]
    GovernedValid,
    #[serde(rename = "GOVERNED_RESTRICTED")]
    GovernedRestricted,
    #[serde(rename = "GOVERNED_INVALIDATED")]
    GovernedInvalidated,
}

impl GovernanceStatus {
    pub const ALL: [GovernanceStatus; 4] = [
        GovernanceStatus::Sandbox,
        GovernanceStatus::GovernedValid,
        GovernanceStatus::GovernedRestricted,
        GovernanceStatus::GovernedInvalidated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GovernanceStatus::Sandbox => "SANDBOX",
            GovernanceStatus::GovernedValid => "GOVERNED_VALID",
            GovernanceStatus::GovernedRestricted => "GOVERNED_RESTRICTED",
            GovernanceStatus::GovernedInvalidated => "GOVERNED_INVALIDATED",
        }
    }

    /// Valid or restricted: the agent holds a proof that admission accepts.
    pub fn is_governed_in_force(self) -> bool {
        matches!(
            self,
            GovernanceStatus::GovernedValid | GovernanceStatus::GovernedRestricted
        )
    }
}

/// The policy an agent was last judged against.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRef {
    /// The PolicyBundle's name.
    pub name: String,
    /// The bundle's version label.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// SHA-256 (hex) of the bundle's canonical form.
    pub hash: String,
}

/// Observed state, written by the operator through the status subresource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governance_status: Option<GovernanceStatus>,
    /// The signed proof bundle (governed agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<ProofBundle>,
    /// The policy of the last evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRef>,
    /// Deny reasons of the last evaluation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denies: Vec<String>,
    /// Warnings of the last evaluation (GOVERNED_RESTRICTED).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Under a PolicyBundle whose `enforcementAction` is `audit`: what the policy would have
    /// denied or warned (code `warning`) of the last evaluation. Reported only: it changes
    /// nothing for the agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit: Vec<AuditFinding>,
    /// The AgentExceptions that waived policy rules in the last evaluation (the proof records
    /// them too); each waived deny is a warning naming its exception.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exceptions: Vec<crate::exception::AppliedException>,
    /// When the sandbox expires, by agentgov's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// A governed agent's approvals: the spec hash an AgentPromotion must name, how many
    /// approvers the policy requires, and who has approved this spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalStatus>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// One finding of a policy in `audit` mode: the rule's deny code (or `warning`) and its sentence.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditFinding {
    pub code: String,
    pub message: String,
}

/// Where a governed agent's approvals stand.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalStatus {
    /// The hash of the current spec: what an AgentPromotion's `specHash` must be to approve it.
    pub spec_hash: String,
    /// Distinct approvers the policy in force requires (`data.approvals.required`).
    pub required: i32,
    /// Who has approved this spec (verified identities the policy allows), by username.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approved_by: Vec<String>,
}

impl AgentStatus {
    /// The status as the value of a JSON merge patch that replaces a stored status whole: every
    /// field of the schema, those this status does not set as null (which a merge patch
    /// removes). Whoever may write the status subresource may have added fields; this leaves
    /// none of them.
    pub fn as_merge_patch(&self) -> serde_json::Result<serde_json::Value> {
        let mut value = serde_json::to_value(self)?;
        if let Some(fields) = value.as_object_mut() {
            for field in status_fields() {
                fields
                    .entry(field.as_str())
                    .or_insert(serde_json::Value::Null);
            }
        }
        Ok(value)
    }
}

/// The names of the fields of `AgentStatus`, from its schema (a new field is covered).
fn status_fields() -> &'static [String] {
    static FIELDS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    FIELDS.get_or_init(|| {
        schemars::schema_for!(AgentStatus)
            .get("properties")
            .and_then(serde_json::Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    })
}

/// The label that ties a Pod to the Agent it runs.
pub const AGENT_LABEL: &str = "agentgov.dev/agent";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merge_patch_names_every_status_field() {
        let status = AgentStatus {
            governance_status: Some(GovernanceStatus::Sandbox),
            ..AgentStatus::default()
        };
        let patch = status.as_merge_patch().unwrap();
        let fields = patch.as_object().unwrap();
        assert_eq!(fields["governanceStatus"], "SANDBOX");
        for absent in [
            "proof",
            "policy",
            "denies",
            "warnings",
            "expiresAt",
            "conditions",
        ] {
            assert_eq!(fields[absent], serde_json::Value::Null, "{absent}");
        }
        // Every field of the type is named (so a merge patch removes any other writer's value).
        let full = serde_json::to_value(AgentStatus {
            governance_status: Some(GovernanceStatus::Sandbox),
            proof: Some(crate::proof::ProofBundle {
                version: 2,
                agent_uid: String::new(),
                approvers: Vec::new(),
                promotions: Vec::new(),
                exceptions: Vec::new(),
                spec_hash: String::new(),
                policy_hash: String::new(),
                signature: String::new(),
                algorithm: crate::keyring::Algorithm::Ed25519,
                key_id: String::new(),
                signed_at: String::new(),
            }),
            policy: Some(PolicyRef::default()),
            denies: vec!["d".into()],
            warnings: vec!["w".into()],
            audit: vec![AuditFinding::default()],
            exceptions: vec![crate::exception::AppliedException {
                name: "e".into(),
                rules: vec!["budget".into()],
                expires_at: Time(jiff::Timestamp::UNIX_EPOCH),
                requested_by: None,
            }],
            expires_at: Some(Time(jiff::Timestamp::UNIX_EPOCH)),
            approval: Some(ApprovalStatus::default()),
            observed_generation: Some(1),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: "r".into(),
                message: String::new(),
                last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
                observed_generation: None,
            }],
        })
        .unwrap();
        let mut named: Vec<&String> = fields.keys().collect();
        let mut all: Vec<&String> = full.as_object().unwrap().keys().collect();
        named.sort();
        all.sort();
        assert_eq!(named, all);
    }
}
