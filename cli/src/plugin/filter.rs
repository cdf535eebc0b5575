//! `list`'s filters and their flag parsers: plain functions over agents and a clock.

use agentgov_api::Agent;
use agentgov_api::agent::{AgentMode, GovernanceStatus, RoleClass};
use agentgov_api::expiry::{ExpiryPolicy, parse_duration, sandbox_expires_at};
use jiff::{SignedDuration, Timestamp};
use serde::de::DeserializeOwned;

/// What `list` keeps (every field `None` keeps everything).
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub status: Option<GovernanceStatus>,
    pub role: Option<RoleClass>,
    pub mode: Option<AgentMode>,
    pub expiring_within: Option<SignedDuration>,
    pub search: Option<String>,
}

impl Filter {
    /// The agents that match, sorted by namespace then name.
    pub fn apply(&self, mut agents: Vec<Agent>, now: Timestamp) -> Vec<Agent> {
        agents.retain(|agent| self.matches(agent, now));
        agents.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        agents
    }

    pub fn matches(&self, agent: &Agent, now: Timestamp) -> bool {
        let status = agent.status.as_ref().and_then(|s| s.governance_status);
        self.status.is_none_or(|wanted| status == Some(wanted))
            && self
                .role
                .is_none_or(|wanted| agent.spec.role_class == wanted)
            && self.mode.is_none_or(|wanted| agent.spec.mode == wanted)
            && self.expiring_within.is_none_or(|within| {
                expires_at(agent).is_some_and(|at| {
                    at >= now && now.saturating_add(within).is_ok_and(|limit| at <= limit)
                })
            })
            && self
                .search
                .as_deref()
                .is_none_or(|text| mentions(agent, text))
    }
}

/// When a sandbox expires, by agentgov's rule (creationTimestamp and `spec.sandbox` under the
/// default expiry policy); `None` for a governed agent or one not yet created.
pub fn expires_at(agent: &Agent) -> Option<Timestamp> {
    let created = agent.metadata.creation_timestamp.as_ref()?.0;
    (agent.spec.mode == AgentMode::Sandbox).then(|| {
        sandbox_expires_at(
            created,
            agent.spec.sandbox.as_ref(),
            &ExpiryPolicy::default(),
        )
    })
}

/// Whether `text` occurs (in any case) in the agent's name, description or a capability.
fn mentions(agent: &Agent, text: &str) -> bool {
    let needle = text.to_lowercase();
    let name = agent.metadata.name.as_deref().unwrap_or_default();
    std::iter::once(name)
        .chain(std::iter::once(agent.spec.description.as_str()))
        .chain(agent.spec.anatomy.capabilities.iter().map(String::as_str))
        .any(|field| field.to_lowercase().contains(&needle))
}

/// `--status`: a governance status in any case.
pub fn parse_status(text: &str) -> Result<GovernanceStatus, String> {
    GovernanceStatus::ALL
        .into_iter()
        .find(|s| s.as_str().eq_ignore_ascii_case(text.trim()))
        .ok_or_else(|| {
            let known: Vec<&str> = GovernanceStatus::ALL.iter().map(|s| s.as_str()).collect();
            format!("{text:?} is not a governance status ({})", known.join(", "))
        })
}

/// `--role`: a role class in any case.
pub fn parse_role(text: &str) -> Result<RoleClass, String> {
    lowercase_enum(text, "a role class (compliance, analysis, ideation)")
}

/// `--mode`: sandbox or governed, in any case.
pub fn parse_mode(text: &str) -> Result<AgentMode, String> {
    lowercase_enum(text, "a mode (sandbox, governed)")
}

/// An enum the API spells in lowercase, read through its own serde names.
fn lowercase_enum<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(text.trim().to_lowercase()))
        .map_err(|_| format!("{text:?} is not {what}"))
}

/// `--expiring-within`: a duration like 24h, 90m or 1h30m.
pub fn parse_within(text: &str) -> Result<SignedDuration, String> {
    let duration = parse_duration(text)?;
    SignedDuration::try_from(duration).map_err(|_| format!("{text:?} is too long"))
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
