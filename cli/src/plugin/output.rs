//! `-o`: a table, YAML or JSON (a `kind: List`, as `kubectl get -o yaml` prints), or names.

use agentgov_api::Agent;
use jiff::Timestamp;
use kube::Resource;
use serde_json::json;

use super::Error;
use super::cluster::Scope;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Yaml,
    Json,
    Name,
}

impl Format {
    /// Whether an empty answer is reported as kubectl does ("No resources found"), rather than
    /// printed as an empty List.
    pub fn says_none_found(self) -> bool {
        matches!(self, Format::Table | Format::Name)
    }
}

/// The agents in `format`, ending in a newline.
pub fn render(
    format: Format,
    agents: &[Agent],
    scope: &Scope,
    now: Timestamp,
) -> Result<String, Error> {
    match format {
        Format::Table => Ok(super::table::agents(agents, *scope == Scope::All, now)),
        Format::Name => Ok(agents
            .iter()
            .map(|a| {
                format!(
                    "{}/{}\n",
                    resource_prefix(),
                    a.metadata.name.as_deref().unwrap_or_default()
                )
            })
            .collect()),
        Format::Json => serde_json::to_string_pretty(&list(agents))
            .map(|text| text + "\n")
            .map_err(|e| Error::Encode(e.to_string())),
        Format::Yaml => {
            serde_yaml::to_string(&list(agents)).map_err(|e| Error::Encode(e.to_string()))
        }
    }
}

/// `agent.agentgov.dev`, as `kubectl get -o name` prefixes names.
fn resource_prefix() -> String {
    format!("{}.{}", Agent::kind(&()).to_lowercase(), Agent::group(&()))
}

fn list(agents: &[Agent]) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": agents,
        "metadata": {"resourceVersion": ""},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::fixtures::{NOW, at, sandbox};

    #[test]
    fn names_json_and_yaml() {
        let agents = [sandbox("a", "one", NOW, 60), sandbox("a", "two", NOW, 60)];
        let scope = Scope::One("a".into());
        let names = render(Format::Name, &agents, &scope, at(NOW)).unwrap();
        assert_eq!(names, "agent.agentgov.dev/one\nagent.agentgov.dev/two\n");
        let json: serde_json::Value =
            serde_json::from_str(&render(Format::Json, &agents, &scope, at(NOW)).unwrap()).unwrap();
        assert_eq!(json["kind"], "List");
        assert_eq!(json["items"][1]["metadata"]["name"], "two");
        assert_eq!(json["items"][0]["kind"], "Agent");
        assert_eq!(json["items"][0]["apiVersion"], "agentgov.dev/v1alpha1");
        let yaml: serde_json::Value =
            serde_yaml::from_str(&render(Format::Yaml, &agents, &scope, at(NOW)).unwrap()).unwrap();
        assert_eq!(yaml, json);
    }

    #[test]
    fn empty_lists_are_lists_in_yaml_and_json() {
        assert!(Format::Table.says_none_found() && Format::Name.says_none_found());
        assert!(!Format::Json.says_none_found() && !Format::Yaml.says_none_found());
        let empty = render(Format::Json, &[], &Scope::All, at(NOW)).unwrap();
        assert!(empty.contains("\"items\": []"), "{empty}");
    }
}
