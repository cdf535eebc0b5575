//! Status conditions, following the Kubernetes API conventions (a list-map keyed by `type`),
//! so that kstatus (Flux) and Argo CD health checks can read them.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::{Schema, SchemaGenerator, json_schema};

pub const READY: &str = "Ready";
pub const PROMOTED: &str = "Promoted";
pub const EXPIRED: &str = "Expired";
pub const COMPILED: &str = "Compiled";

/// `conditions` as a list-map keyed by `type`, so server-side apply merges by type.
pub fn conditions_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "required": ["lastTransitionTime", "message", "reason", "status", "type"],
            "properties": {
                "lastTransitionTime": {"type": "string", "format": "date-time"},
                "message": {"type": "string", "maxLength": 32768},
                "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
                "reason": {"type": "string", "maxLength": 1024, "minLength": 1},
                "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                "type": {"type": "string", "maxLength": 316}
            }
        }
    })
}

/// A condition as the caller means it; `lastTransitionTime` is filled in by [`upsert`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionUpdate<'a> {
    pub type_: &'a str,
    pub status: bool,
    pub reason: &'a str,
    pub message: String,
}

/// Set a condition in `conditions`, keeping `lastTransitionTime` when the status did not change.
pub fn upsert(
    conditions: &mut Vec<Condition>,
    update: ConditionUpdate<'_>,
    observed_generation: Option<i64>,
    now: Timestamp,
) {
    let status = if update.status { "True" } else { "False" };
    let previous = conditions.iter().position(|c| c.type_ == update.type_);
    let last_transition_time = match previous.map(|i| &conditions[i]) {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(now),
    };
    let condition = Condition {
        type_: update.type_.to_string(),
        status: status.to_string(),
        reason: update.reason.to_string(),
        message: update.message,
        observed_generation,
        last_transition_time,
    };
    match previous {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

/// Find a condition by type.
pub fn find<'c>(conditions: &'c [Condition], type_: &str) -> Option<&'c Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of this type is `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(status: bool, reason: &str) -> ConditionUpdate<'_> {
        ConditionUpdate {
            type_: READY,
            status,
            reason,
            message: String::new(),
        }
    }

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let mut conditions = Vec::new();
        upsert(&mut conditions, update(true, "A"), Some(1), t0);
        upsert(&mut conditions, update(true, "B"), Some(2), t1);
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, Time(t0));
        assert_eq!(conditions[0].reason, "B");
        assert_eq!(conditions[0].observed_generation, Some(2));
        upsert(&mut conditions, update(false, "C"), Some(3), t1);
        assert_eq!(conditions[0].last_transition_time, Time(t1));
        assert!(!is_true(&conditions, READY));
    }
}
