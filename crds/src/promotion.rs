//! The `AgentPromotion` custom resource: the seed's `promoteToGoverned({agentId, actorId,
//! actorRole})` as an object, like a CertificateSigningRequest. Someone who holds the verb
//! `promote` on an agent approves exactly one spec of it (its hash); the API server records who
//! (`spec.requestedBy`, stamped by a MutatingAdmissionPolicy from the request's userInfo and
//! checked by a ValidatingAdmissionPolicy, so no client can name someone else), and the spec is
//! immutable. The operator signs an agent only under approvals for its current spec hash.
//!
//! The promotions of an agent are its approval history (the seed's `agent_proofs`); the operator
//! prunes the oldest that no longer back a proof.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::conditions::conditions_schema;

/// An approval of one spec of one agent.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "agentgov.dev",
    version = "v1alpha1",
    kind = "AgentPromotion",
    plural = "agentpromotions",
    shortname = "promotion",
    namespaced,
    status = "AgentPromotionStatus",
    printcolumn = r#"{"name":"Agent","type":"string","jsonPath":".spec.agent"}"#,
    printcolumn = r#"{"name":"Outcome","type":"string","jsonPath":".status.outcome"}"#,
    printcolumn = r#"{"name":"Requested-By","type":"string","jsonPath":".spec.requestedBy.username"}"#,
    printcolumn = r#"{"name":"Spec-Hash","type":"string","priority":1,"jsonPath":".spec.specHash"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("an AgentPromotion's spec is immutable: create a new one"))]
#[serde(rename_all = "camelCase")]
pub struct AgentPromotionSpec {
    /// The name of the Agent (in this namespace) being approved.
    #[x_kube(validation = Rule::new("self.size() > 0").message("agent must name an Agent"))]
    pub agent: String,
    /// The SHA-256 (hex) of the canonical JSON of the agent's spec being approved: exactly that
    /// spec, no other. The Agent's `status.approval.specHash` names it; offline, `proof spec-hash`
    /// computes it from a manifest.
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-f]{64}$')").message("specHash must be 64 lowercase hex digits (the SHA-256 of the agent's canonical spec)"))]
    pub spec_hash: String,
    /// Why, for the record (a change ticket, a review link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who asked. Stamped by the API server from the request (a MutatingAdmissionPolicy) and
    /// checked against it (a ValidatingAdmissionPolicy); anything a client writes here is
    /// replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<Requester>,
}

/// A verified identity, as the API server authenticated it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Requester {
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// What became of an approval.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum PromotionOutcome {
    /// Counted; the agent waits for more approvers (the policy's `approvals.required`).
    Pending,
    /// The agent is promoted under this approval: its proof names it.
    Approved,
    /// The policy, or the approver's authorization, refused it (see `denies`).
    Denied,
    /// The agent's spec is no longer the one approved.
    Superseded,
    /// Pending for longer than the operator keeps approvals waiting.
    Expired,
}

impl PromotionOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            PromotionOutcome::Pending => "Pending",
            PromotionOutcome::Approved => "Approved",
            PromotionOutcome::Denied => "Denied",
            PromotionOutcome::Superseded => "Superseded",
            PromotionOutcome::Expired => "Expired",
        }
    }

    /// Whether the approval can still count towards a promotion.
    pub fn is_live(self) -> bool {
        matches!(self, PromotionOutcome::Pending | PromotionOutcome::Approved)
    }
}

/// Observed state, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentPromotionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<PromotionOutcome>,
    /// The policy it was judged against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_hash: Option<String>,
    /// Why it was denied, superseded or is pending.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denies: Vec<String>,
    /// The proof it produced: the agent's uid and the proof's signature time and key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<ProofLink>,
    /// When the outcome was decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// Which proof an approval produced.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProofLink {
    pub agent_uid: String,
    pub key_id: String,
    pub signed_at: String,
}
