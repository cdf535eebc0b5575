//! `bulk`: what an operation would change on each selected agent (the preview and the patch
//! to send), and the line that reports what it did. Plain functions; `commands/bulk.rs` asks,
//! sends and prints.
//!
//! - `extend --by D`: a sandbox's expiry moves D later, written in the form the agent already
//!   uses (`spec.sandbox.expiresAt` if it has one, else `spec.sandbox.ttlSeconds`, counted from
//!   creation). Governed agents have no expiry and are skipped.
//! - `demote --ttl D`: a governed agent becomes a sandbox that expires D from now: `spec.mode:
//!   sandbox`, `spec.sandbox.expiresAt`, and containment closed (`externalCalls` and
//!   `persistentWrites` false, as every sandbox must be). Sandboxes are skipped.
//! - `delete`: every selected agent.
//! - `promote`: an AgentPromotion for each governed agent's current spec; sandboxes, and agents
//!   already in force for their spec, are skipped.

use agentgov_api::Agent;
use agentgov_api::agent::{AgentMode, GovernanceStatus};
use jiff::{SignedDuration, Timestamp, Unit};
use serde_json::{Value, json};

use super::filter::expires_at;
use super::promote::{current_hash, id, in_force, short};
use super::table::render;

/// The AFTER column of an agent the operation leaves alone.
const SKIPPED: &str = "(skipped)";

/// The operation and its argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Move each sandbox's expiry this much later.
    Extend(SignedDuration),
    /// Make each governed agent a sandbox living this long from now.
    Demote(SignedDuration),
    Delete,
    Promote,
}

/// What to do to one agent.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// A JSON merge patch of the Agent.
    Patch(Value),
    Delete,
    /// Approve its current spec.
    Promote,
    /// Nothing: why not.
    Skip(String),
}

/// One agent's line of the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// `namespace/name`.
    pub agent: String,
    pub namespace: String,
    pub name: String,
    /// The NOW column: what the operation changes, as it is.
    pub now: String,
    /// The AFTER column: as it will be.
    pub after: String,
    pub change: Change,
}

impl Step {
    pub fn is_skipped(&self) -> bool {
        matches!(self.change, Change::Skip(_))
    }
}

/// What `operation` would do to each of `agents` at `now`.
pub fn plan(operation: Operation, agents: &[Agent], now: Timestamp) -> Vec<Step> {
    agents
        .iter()
        .map(|agent| {
            let (now_text, after, change) = match operation {
                Operation::Extend(by) => extend(agent, by),
                Operation::Demote(ttl) => demote(agent, ttl, now),
                Operation::Delete => (state(agent), "deleted".to_string(), Change::Delete),
                Operation::Promote => promote(agent),
            };
            Step {
                agent: id(agent),
                namespace: agent.metadata.namespace.clone().unwrap_or_default(),
                name: agent.metadata.name.clone().unwrap_or_default(),
                now: now_text,
                after,
                change,
            }
        })
        .collect()
}

fn extend(agent: &Agent, by: SignedDuration) -> (String, String, Change) {
    let (Some(was), Some(created)) = (
        expires_at(agent),
        agent.metadata.creation_timestamp.as_ref().map(|t| t.0),
    ) else {
        return skip(agent, "a governed agent does not expire");
    };
    let wanted = was.saturating_add(by).unwrap_or(was);
    let patch = match agent
        .spec
        .sandbox
        .as_ref()
        .and_then(|s| s.expires_at.as_ref())
    {
        Some(_) => json!({"spec": {"sandbox": {"expiresAt": time(wanted)}}}),
        None => {
            json!({"spec": {"sandbox": {"ttlSeconds": wanted.duration_since(created).as_secs()}}})
        }
    };
    let will = expires_of(agent, &patch).unwrap_or(was);
    if will <= was {
        return (
            time(was),
            SKIPPED.to_string(),
            Change::Skip(format!(
                "its expiry {} is already as late as a sandbox may live (the maximum sandbox TTL from creation)",
                time(was)
            )),
        );
    }
    (time(was), time(will), Change::Patch(patch))
}

fn demote(agent: &Agent, ttl: SignedDuration, now: Timestamp) -> (String, String, Change) {
    if agent.spec.mode == AgentMode::Sandbox {
        return skip(agent, "already a sandbox");
    }
    let until = now.saturating_add(ttl).unwrap_or(now);
    let patch = json!({"spec": {
        "mode": "sandbox",
        "sandbox": {"expiresAt": time(until), "ttlSeconds": null},
        "anatomy": {"containment": {"externalCalls": false, "persistentWrites": false}},
    }});
    match expires_of(agent, &patch) {
        Some(will) if will > now => (
            state(agent),
            format!("sandbox until {}, contained", time(will)),
            Change::Patch(patch),
        ),
        _ => skip(
            agent,
            "it was created longer ago than a sandbox may live (the maximum sandbox TTL), so it would be expired at once; clone it (`kubectl agentgov create --clone`) instead",
        ),
    }
}

fn promote(agent: &Agent) -> (String, String, Change) {
    if agent.spec.mode == AgentMode::Sandbox {
        return skip(
            agent,
            "a sandbox cannot be promoted: set its spec.mode to governed first",
        );
    }
    let hash = match current_hash(agent) {
        Ok(hash) => hash,
        Err(e) => return skip(agent, &e.to_string()),
    };
    if let Some(g) = in_force(agent, &hash) {
        return skip(agent, &format!("already {} for its spec", g.as_str()));
    }
    (
        state(agent),
        format!("approved at spec hash {}", short(&hash)),
        Change::Promote,
    )
}

fn skip(agent: &Agent, why: &str) -> (String, String, Change) {
    (
        state(agent),
        SKIPPED.to_string(),
        Change::Skip(why.to_string()),
    )
}

/// `governed GOVERNED_VALID`, `sandbox SANDBOX`: the mode and the governance status.
fn state(agent: &Agent) -> String {
    let mode = match agent.spec.mode {
        AgentMode::Sandbox => "sandbox",
        AgentMode::Governed => "governed",
    };
    let status = agent.status.as_ref().and_then(|s| s.governance_status);
    format!(
        "{mode} {}",
        status.map_or("<none>", GovernanceStatus::as_str)
    )
}

/// A time as the API server writes it (RFC 3339, whole seconds, UTC).
pub fn time(at: Timestamp) -> String {
    at.round(Unit::Second).unwrap_or(at).to_string()
}

/// When `agent` expires once `patch` is applied (`None`: it would not be a sandbox).
fn expires_of(agent: &Agent, patch: &Value) -> Option<Timestamp> {
    expires_at(&patched(agent, patch).ok()?)
}

/// `agent` with the JSON merge patch `patch` (RFC 7386) applied, as the API server applies it.
pub fn patched(agent: &Agent, patch: &Value) -> Result<Agent, serde_json::Error> {
    let mut doc = serde_json::to_value(agent)?;
    merge(&mut doc, patch);
    serde_json::from_value(doc)
}

fn merge(doc: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *doc = patch.clone();
        return;
    };
    if !doc.is_object() {
        *doc = json!({});
    }
    if let Value::Object(target) = doc {
        for (key, value) in fields {
            if value.is_null() {
                target.remove(key);
            } else {
                merge(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// The preview: AGENT, NOW, AFTER, one row per agent (skipped ones say why after the table).
pub fn preview(steps: &[Step]) -> String {
    let rows: Vec<Vec<String>> = steps
        .iter()
        .map(|s| vec![s.agent.clone(), s.now.clone(), s.after.clone()])
        .collect();
    let mut text = render(&["AGENT", "NOW", "AFTER"], &rows);
    for step in steps {
        if let Change::Skip(why) = &step.change {
            text.push_str(&format!("agent {} is skipped: {why}\n", step.agent));
        }
    }
    text
}

/// What was done to one agent, for its result line (`agent ns/name: <this>`).
pub fn done(operation: Operation, after: Option<&Agent>, promotion: Option<&str>) -> String {
    let expiry = || {
        after
            .and_then(expires_at)
            .map_or_else(|| "?".to_string(), time)
    };
    match operation {
        Operation::Extend(_) => format!("extended to {}", expiry()),
        Operation::Demote(_) => format!("demoted to a sandbox until {}", expiry()),
        Operation::Delete => "deleted".to_string(),
        Operation::Promote => format!(
            "approved by agentpromotion {}",
            promotion.unwrap_or("<generated>")
        ),
    }
}

/// Whether a confirmation answer is a yes (`y` or `yes`, any case).
pub fn confirmed(answer: &str) -> bool {
    matches!(answer.trim().to_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
#[path = "bulk_tests.rs"]
mod tests;
