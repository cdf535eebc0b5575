//! `create --import FILE` of a row of the seed's `agent_specs` table (JSON, as a database
//! export writes it: snake_case columns, `anatomy` a JSON object or the JSON text of one).
//!
//! Read: `version`, `description`, `role_class`, `mode` and `anatomy` (its fields camelCase as
//! the seed's API writes them, or snake_case). Not read: `name` (NAME names the agent),
//! `governance_status` and `governance` (a status and a proof belong to the original),
//! `workspace_id`, `created_*`, `updated_at`. Reference: `agent_specs/<id>`, else the file's
//! name.

use agentgov_api::agent::{AgentMode, Containment, Economics, Memory, RoleClass, SourceKind};
use agentgov_api::template::{AgentDefaults, AnatomyDefaults, ReasoningDefaults};
use serde::Deserialize;

use super::{Draft, file_name, source};

/// Whether a document is a seed row rather than a manifest: no `kind`, an `anatomy` and one
/// of the seed's own columns.
pub fn is_seed_row(document: &serde_json::Value) -> bool {
    document.get("kind").is_none()
        && document.get("anatomy").is_some()
        && (document.get("role_class").is_some() || document.get("workspace_id").is_some())
}

#[derive(Deserialize)]
struct Row {
    id: Option<serde_json::Value>,
    version: Option<String>,
    description: Option<String>,
    role_class: Option<RoleClass>,
    mode: Option<AgentMode>,
    anatomy: Column,
}

/// A JSON column: the value, or its text.
#[derive(Deserialize)]
#[serde(untagged)]
enum Column {
    Value(Box<SeedAnatomy>),
    Text(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SeedAnatomy {
    reasoning: Option<ReasoningDefaults>,
    #[serde(default)]
    inputs: Vec<String>,
    #[serde(default)]
    actions: Vec<String>,
    memory: Option<SeedMemory>,
    #[serde(default)]
    capabilities: Vec<String>,
    containment: Option<SeedContainment>,
    economics: Option<SeedEconomics>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SeedMemory {
    #[serde(alias = "type")]
    kind: agentgov_api::agent::MemoryKind,
    #[serde(alias = "retention_days")]
    retention_days: Option<i32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SeedContainment {
    #[serde(default, alias = "external_calls")]
    external_calls: bool,
    #[serde(default, alias = "persistent_writes")]
    persistent_writes: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SeedEconomics {
    #[serde(alias = "monthly_budget_usd")]
    monthly_budget_usd: f64,
}

/// A seed row (JSON) as a draft, or why it is none.
pub fn parse(document: serde_json::Value, file: &str) -> Result<Draft, String> {
    let row: Row = serde_json::from_value(document).map_err(|e| e.to_string())?;
    let anatomy = match row.anatomy {
        Column::Value(anatomy) => *anatomy,
        Column::Text(text) => serde_json::from_str(&text)
            .map_err(|e| format!("its anatomy column is not an anatomy: {e}"))?,
    };
    let reference = match row.id {
        Some(serde_json::Value::Number(id)) => Some(format!("agent_specs/{id}")),
        Some(serde_json::Value::String(id)) if !id.is_empty() => Some(format!("agent_specs/{id}")),
        _ => file_name(file),
    };
    Ok(Draft {
        spec: AgentDefaults {
            description: row.description.filter(|d| !d.is_empty()),
            version: row.version,
            role_class: row.role_class,
            mode: row.mode,
            anatomy: Some(AnatomyDefaults {
                reasoning: anatomy.reasoning,
                inputs: anatomy.inputs,
                actions: anatomy.actions,
                memory: anatomy.memory.map(|m| Memory {
                    kind: m.kind,
                    retention_days: m.retention_days,
                }),
                capabilities: anatomy.capabilities,
                containment: anatomy.containment.map(|c| Containment {
                    external_calls: c.external_calls,
                    persistent_writes: c.persistent_writes,
                }),
                economics: anatomy.economics.map(|e| Economics {
                    monthly_budget_usd: e.monthly_budget_usd,
                }),
            }),
            ..AgentDefaults::default()
        },
        source: source(SourceKind::Import, reference),
    })
}

#[cfg(test)]
mod tests {
    use agentgov_api::agent::MemoryKind;

    use super::*;

    fn fixture() -> serde_json::Value {
        let path = format!(
            "{}/../e2e/fixtures/cli/seed-agent-spec-row.json",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn a_seed_row_becomes_a_draft_without_its_status() {
        let row = fixture();
        assert!(is_seed_row(&row));
        let draft = parse(row, "row.json").unwrap();
        let source = draft.source.unwrap();
        assert_eq!(source.kind, SourceKind::Import);
        assert_eq!(source.reference.as_deref(), Some("agent_specs/42"));
        assert_eq!(draft.spec.role_class, Some(RoleClass::Compliance));
        assert_eq!(draft.spec.mode, Some(AgentMode::Governed));
        assert_eq!(draft.spec.version.as_deref(), Some("2.1.0"));
        let anatomy = draft.spec.anatomy.unwrap();
        assert_eq!(anatomy.inputs, ["contracts"]);
        assert_eq!(
            anatomy.memory,
            Some(Memory {
                kind: MemoryKind::Persistent,
                retention_days: Some(30)
            })
        );
        assert_eq!(anatomy.economics.unwrap().monthly_budget_usd, 120.0);
        assert_eq!(anatomy.containment, Some(Containment::default()));
    }

    #[test]
    fn an_anatomy_given_as_text_and_snake_case_reads_the_same() {
        let row = serde_json::json!({
            "workspace_id": "ws-1",
            "version": "1.0.0",
            "role_class": "analysis",
            "anatomy": "{\"inputs\": [\"a\"], \"memory\": {\"type\": \"session\"}, \
                        \"containment\": {\"external_calls\": false, \"persistent_writes\": false}, \
                        \"economics\": {\"monthly_budget_usd\": 5}}"
        });
        assert!(is_seed_row(&row));
        let draft = parse(row, "-").unwrap();
        assert_eq!(draft.source.unwrap().reference, None);
        let anatomy = draft.spec.anatomy.unwrap();
        assert_eq!(anatomy.memory.unwrap().kind, MemoryKind::Session);
        assert_eq!(anatomy.economics.unwrap().monthly_budget_usd, 5.0);
        let manifest = serde_json::json!({"kind": "Agent", "anatomy": {}, "role_class": "x"});
        assert!(!is_seed_row(&manifest));
        let bad = serde_json::json!({"role_class": "analysis", "anatomy": "[1"});
        assert!(parse(bad, "x").unwrap_err().contains("anatomy column"));
    }
}
