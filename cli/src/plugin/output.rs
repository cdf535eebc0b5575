//! `-o`: a table, YAML or JSON (a `kind: List`, as `kubectl get -o yaml` prints), or names.

use agentgov_api::Agent;
use jiff::Timestamp;
use kube::Resource;
use serde::Serialize;
use serde_json::json;

use super::Error;
use super::cluster::{DryRun, Scope};

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
        Format::Name => Ok(agents.iter().map(|a| name(a) + "\n").collect()),
        Format::Json | Format::Yaml => document(format, &list(agents)),
    }
}

/// What `create` and `promote` print for the object they created (or would create), as
/// `kubectl create` does: the manifest for `-o yaml|json`, `kind.group/NAME` for `-o name`,
/// else `kind.group/NAME created`, with ` (dry run)` or ` (server dry run)`.
pub fn created<K>(format: Format, object: &K, dry_run: DryRun) -> Result<String, Error>
where
    K: Resource<DynamicType = ()> + Serialize,
{
    match format {
        Format::Json | Format::Yaml => document(format, object),
        Format::Name => Ok(name(object) + "\n"),
        Format::Table => Ok(format!("{} created{}\n", name(object), dry_run.suffix())),
    }
}

/// JSON (pretty, ending in a newline) or YAML (`format` anything but `json`).
pub fn document<T: Serialize>(format: Format, value: &T) -> Result<String, Error> {
    let text = match format {
        Format::Json => serde_json::to_string_pretty(value).map(|text| text + "\n"),
        _ => return serde_yaml::to_string(value).map_err(|e| Error::Encode(e.to_string())),
    };
    text.map_err(|e| Error::Encode(e.to_string()))
}

/// `agent.agentgov.dev/NAME`, as `kubectl get -o name` names an object (its `generateName`
/// when it has no name yet).
fn name<K: Resource<DynamicType = ()>>(object: &K) -> String {
    let meta = object.meta();
    format!(
        "{}.{}/{}",
        K::kind(&()).to_lowercase(),
        K::group(&()),
        meta.name
            .as_deref()
            .or(meta.generate_name.as_deref())
            .unwrap_or_default()
    )
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
    fn created_objects_print_like_kubectl_create() {
        let mut agent = sandbox("a", "one", NOW, 60);
        assert_eq!(
            created(Format::Table, &agent, DryRun::None).unwrap(),
            "agent.agentgov.dev/one created\n"
        );
        assert_eq!(
            created(Format::Table, &agent, DryRun::Client).unwrap(),
            "agent.agentgov.dev/one created (dry run)\n"
        );
        assert_eq!(
            created(Format::Name, &agent, DryRun::Server).unwrap(),
            "agent.agentgov.dev/one\n"
        );
        let yaml: serde_json::Value =
            serde_yaml::from_str(&created(Format::Yaml, &agent, DryRun::Client).unwrap()).unwrap();
        assert_eq!(yaml["kind"], "Agent");
        assert_eq!(yaml["metadata"]["name"], "one");
        let json: serde_json::Value =
            serde_json::from_str(&created(Format::Json, &agent, DryRun::Client).unwrap()).unwrap();
        assert_eq!(json, yaml);
        agent.metadata.name = None;
        agent.metadata.generate_name = Some("one-".into());
        assert_eq!(
            created(Format::Name, &agent, DryRun::None).unwrap(),
            "agent.agentgov.dev/one-\n"
        );
    }

    #[test]
    fn empty_lists_are_lists_in_yaml_and_json() {
        assert!(Format::Table.says_none_found() && Format::Name.says_none_found());
        assert!(!Format::Json.says_none_found() && !Format::Yaml.says_none_found());
        let empty = render(Format::Json, &[], &Scope::All, at(NOW)).unwrap();
        assert!(empty.contains("\"items\": []"), "{empty}");
    }
}
