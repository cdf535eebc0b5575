//! `events`: an agent's governance events as lines: the Kubernetes Events about the Agent and
//! its AgentPromotions, and the changes of its status (governance status, conditions). Plain
//! functions; `commands/events.rs` lists and watches.

use std::collections::BTreeSet;

use agentgov_api::agent::{AgentStatus, GovernanceStatus};
use jiff::Timestamp;
use k8s_openapi::api::events::v1::Event;
use serde::Serialize;

use super::table::{human_duration, render};

/// One governance event, as printed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub last_seen: Option<Timestamp>,
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    /// `agent/NAME` or `agentpromotion/NAME`.
    pub object: String,
    pub message: String,
}

/// Whether `event` is about the agent `agent` or one of its AgentPromotions (`promotions`, by
/// name).
pub fn concerns(event: &Event, agent: &str, promotions: &BTreeSet<String>) -> bool {
    let Some(regarding) = event.regarding.as_ref() else {
        return false;
    };
    let name = regarding.name.as_deref().unwrap_or_default();
    match regarding.kind.as_deref() {
        Some("Agent") => name == agent,
        Some("AgentPromotion") => promotions.contains(name),
        _ => false,
    }
}

/// An Event as a line; it was last seen at its series' last time, else its (deprecated) last
/// timestamp, its event time, or its creation.
pub fn from_event(event: &Event) -> Line {
    let regarding = event.regarding.as_ref();
    let last_seen = event
        .series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or_else(|| event.deprecated_last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0));
    Line {
        last_seen,
        type_: event.type_.clone().unwrap_or_else(|| "Normal".into()),
        reason: event.reason.clone().unwrap_or_default(),
        object: format!(
            "{}/{}",
            regarding
                .and_then(|r| r.kind.as_deref())
                .unwrap_or_default()
                .to_lowercase(),
            regarding
                .and_then(|r| r.name.as_deref())
                .unwrap_or_default()
        ),
        message: event.note.clone().unwrap_or_default(),
    }
}

/// What changed from `before` to `after` in an agent's status, seen at `now`: its governance
/// status (`SANDBOX -> GOVERNED_VALID`; a Warning when it is invalidated) and each condition
/// whose status, reason or message changed (`Ready=True: ...`, at its transition time when its
/// status changed). `before` None: every condition as it stands, and no governance line.
pub fn status_changes(
    agent: &str,
    before: Option<&AgentStatus>,
    after: Option<&AgentStatus>,
    now: Timestamp,
) -> Vec<Line> {
    let object = format!("agent/{agent}");
    let mut lines = Vec::new();
    let governance = |s: Option<&AgentStatus>| s.and_then(|s| s.governance_status);
    let (was, is) = (governance(before), governance(after));
    if before.is_some() && was != is {
        let name = |g: Option<GovernanceStatus>| g.map_or("<none>", |g| g.as_str());
        let warning = is == Some(GovernanceStatus::GovernedInvalidated);
        lines.push(Line {
            last_seen: Some(now),
            type_: if warning { "Warning" } else { "Normal" }.into(),
            reason: "GovernanceStatus".into(),
            object: object.clone(),
            message: format!("{} -> {}", name(was), name(is)),
        });
    }
    let old = before.map(|s| s.conditions.as_slice()).unwrap_or_default();
    for condition in after.map(|s| s.conditions.as_slice()).unwrap_or_default() {
        let previous = old.iter().find(|c| c.type_ == condition.type_);
        let same = |c: &&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition| {
            c.status == condition.status
                && c.reason == condition.reason
                && c.message == condition.message
        };
        if previous.is_some_and(|p| same(&p)) {
            continue;
        }
        let flipped = before.is_none() || previous.is_none_or(|p| p.status != condition.status);
        lines.push(Line {
            last_seen: Some(if flipped {
                condition.last_transition_time.0
            } else {
                now
            }),
            type_: "Normal".into(),
            reason: condition.reason.clone(),
            object: object.clone(),
            message: format!(
                "{}={}: {}",
                condition.type_, condition.status, condition.message
            ),
        });
    }
    lines
}

/// The lines oldest first (those without a time first), as `kubectl events` sorts them.
pub fn sorted(mut lines: Vec<Line>) -> Vec<Line> {
    lines.sort_by_key(|l| l.last_seen);
    lines
}

const HEADERS: [&str; 5] = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"];

fn cells(line: &Line, now: Timestamp) -> [String; 5] {
    let seen = line.last_seen.map_or_else(
        || "<unknown>".to_string(),
        |t| human_duration(now.duration_since(t)),
    );
    [
        seen,
        line.type_.clone(),
        line.reason.clone(),
        line.object.clone(),
        line.message.clone(),
    ]
}

/// The lines as a table: LAST SEEN (how long ago), TYPE, REASON, OBJECT, MESSAGE.
pub fn table(lines: &[Line], now: Timestamp) -> String {
    let rows: Vec<Vec<String>> = lines.iter().map(|l| cells(l, now).to_vec()).collect();
    render(&HEADERS, &rows)
}

/// The widths `--follow` pads its columns to (it cannot know the widest cell to come).
const FOLLOW_WIDTHS: [usize; 4] = [12, 10, 22, 36];

/// `--follow`'s header line.
pub fn follow_header() -> String {
    padded(&HEADERS.map(str::to_string))
}

/// One line of `--follow`, padded like its header.
pub fn follow_line(line: &Line, now: Timestamp) -> String {
    padded(&cells(line, now))
}

fn padded(cells: &[String; 5]) -> String {
    let mut out = String::new();
    for (cell, width) in cells.iter().zip(FOLLOW_WIDTHS) {
        out.push_str(cell);
        let pad = width.saturating_sub(cell.chars().count()).max(3);
        out.extend(std::iter::repeat_n(' ', pad));
    }
    out.push_str(&cells[4]);
    out.push('\n');
    out
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
