//! The `AgentTemplate` (namespaced) and `ClusterAgentTemplate` (cluster-scoped) custom
//! resources: a partial agent spec with defaults, and the spec fields a user may set over it
//! (`kubectl agentgov create NAME --template T`; docs/templates.md).
//!
//! The partial spec ([`AgentDefaults`]) is also the shape the plugin's other creation sources
//! (a workflow, a conversation, a CloudEvent's data) fill before the user's flags are laid over
//! it and the result is checked as a whole spec.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent::{AgentMode, Containment, Economics, Memory, RoleClass, SandboxSpec};
use crate::runtime::RuntimeSpec;

/// A namespace's template for new agents: defaults, and what a user may change.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "agentgov.dev",
    version = "v1alpha1",
    kind = "AgentTemplate",
    plural = "agenttemplates",
    shortname = "agtpl",
    namespaced,
    printcolumn = r#"{"name":"Role","type":"string","jsonPath":".spec.defaults.roleClass"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.defaults.mode"}"#,
    printcolumn = r#"{"name":"Model","type":"string","jsonPath":".spec.defaults.anatomy.reasoning.model"}"#,
    printcolumn = r#"{"name":"Overrides","type":"string","jsonPath":".spec.allowedOverrides"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.defaults) && has(self.defaults.roleClass)) || (has(self.allowedOverrides) && 'roleClass' in self.allowedOverrides)").message("a template must set defaults.roleClass or allow roleClass as an override: an agent needs a role class"))]
pub struct AgentTemplateSpec {
    /// What the template is for (shown to whoever picks a template; an agent's own description
    /// is `defaults.description`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The spec fields an agent made from the template starts with.
    #[serde(default)]
    pub defaults: AgentDefaults,
    /// The spec fields a user may set over the defaults; any other is refused. Empty: the
    /// template is used as it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 12))]
    #[x_kube(validation = Rule::new("self.all(f, self.exists_one(g, g == f))").message("allowedOverrides must not name a field twice"))]
    pub allowed_overrides: Vec<OverrideField>,
}

/// An organisation-wide template, the same as an [`AgentTemplate`] but readable from every
/// namespace (`--cluster-template T`, or `--template T` when the namespace has no template T).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "agentgov.dev",
    version = "v1alpha1",
    kind = "ClusterAgentTemplate",
    plural = "clusteragenttemplates",
    shortname = "cagtpl",
    printcolumn = r#"{"name":"Role","type":"string","jsonPath":".spec.defaults.roleClass"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.defaults.mode"}"#,
    printcolumn = r#"{"name":"Model","type":"string","jsonPath":".spec.defaults.anatomy.reasoning.model"}"#,
    printcolumn = r#"{"name":"Overrides","type":"string","jsonPath":".spec.allowedOverrides"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.defaults) && has(self.defaults.roleClass)) || (has(self.allowedOverrides) && 'roleClass' in self.allowedOverrides)").message("a template must set defaults.roleClass or allow roleClass as an override: an agent needs a role class"))]
pub struct ClusterAgentTemplateSpec {
    /// What the template is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The spec fields an agent made from the template starts with.
    #[serde(default)]
    pub defaults: AgentDefaults,
    /// The spec fields a user may set over the defaults; any other is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 12))]
    #[x_kube(validation = Rule::new("self.all(f, self.exists_one(g, g == f))").message("allowedOverrides must not name a field twice"))]
    pub allowed_overrides: Vec<OverrideField>,
}

impl From<ClusterAgentTemplateSpec> for AgentTemplateSpec {
    fn from(c: ClusterAgentTemplateSpec) -> Self {
        AgentTemplateSpec {
            description: c.description,
            defaults: c.defaults,
            allowed_overrides: c.allowed_overrides,
        }
    }
}

/// A partial agent spec: every field optional. Laid over another (`merge`), then checked as a
/// whole spec by whoever builds the Agent.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.mode) || self.mode != 'governed' || !has(self.sandbox)").message("a governed template sets no sandbox lifetime: a governed agent does not expire"))]
pub struct AgentDefaults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.size() > 0").message("version must not be empty"))]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_class: Option<RoleClass>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<AgentMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anatomy: Option<AnatomyDefaults>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeSpec>,
}

/// A partial anatomy. An empty list leaves the field to whatever is laid over it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AnatomyDefaults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<ReasoningDefaults>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1)))]
    pub inputs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1)))]
    pub actions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1)))]
    pub capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containment: Option<Containment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub economics: Option<Economics>,
}

/// A model, a temperature, or both (a template may fix the model and leave the temperature).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReasoningDefaults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.size() > 0").message("model must not be empty"))]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 2.0").message("temperature must be between 0 and 2"))]
    pub temperature: Option<f64>,
}

/// A spec field a user may set over a template, by its path in the Agent's spec.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum OverrideField {
    #[serde(rename = "description")]
    Description,
    #[serde(rename = "version")]
    Version,
    #[serde(rename = "roleClass")]
    RoleClass,
    #[serde(rename = "mode")]
    Mode,
    #[serde(rename = "anatomy.reasoning.model")]
    Model,
    #[serde(rename = "anatomy.reasoning.temperature")]
    Temperature,
    #[serde(rename = "anatomy.inputs")]
    Inputs,
    #[serde(rename = "anatomy.actions")]
    Actions,
    #[serde(rename = "anatomy.memory")]
    Memory,
    #[serde(rename = "anatomy.capabilities")]
    Capabilities,
    #[serde(rename = "anatomy.economics.monthlyBudgetUsd")]
    Budget,
    #[serde(rename = "sandbox.ttlSeconds")]
    Ttl,
}

impl OverrideField {
    /// Every field a template may allow, in the order of the spec.
    pub const ALL: [OverrideField; 12] = [
        OverrideField::Description,
        OverrideField::Version,
        OverrideField::RoleClass,
        OverrideField::Mode,
        OverrideField::Model,
        OverrideField::Temperature,
        OverrideField::Inputs,
        OverrideField::Actions,
        OverrideField::Memory,
        OverrideField::Capabilities,
        OverrideField::Budget,
        OverrideField::Ttl,
    ];

    /// The field's path in the spec, as the template names it.
    pub fn path(self) -> &'static str {
        match self {
            OverrideField::Description => "description",
            OverrideField::Version => "version",
            OverrideField::RoleClass => "roleClass",
            OverrideField::Mode => "mode",
            OverrideField::Model => "anatomy.reasoning.model",
            OverrideField::Temperature => "anatomy.reasoning.temperature",
            OverrideField::Inputs => "anatomy.inputs",
            OverrideField::Actions => "anatomy.actions",
            OverrideField::Memory => "anatomy.memory",
            OverrideField::Capabilities => "anatomy.capabilities",
            OverrideField::Budget => "anatomy.economics.monthlyBudgetUsd",
            OverrideField::Ttl => "sandbox.ttlSeconds",
        }
    }
}

impl AgentDefaults {
    /// `over` laid over `self`: every field `over` sets replaces this one's (a list replaces
    /// the whole list; a reasoning's model and temperature are replaced one by one).
    pub fn merge(self, over: AgentDefaults) -> AgentDefaults {
        let anatomy = match (self.anatomy, over.anatomy) {
            (Some(base), Some(over)) => Some(base.merge(over)),
            (base, over) => over.or(base),
        };
        AgentDefaults {
            description: over.description.or(self.description),
            version: over.version.or(self.version),
            role_class: over.role_class.or(self.role_class),
            mode: over.mode.or(self.mode),
            anatomy,
            sandbox: over.sandbox.or(self.sandbox),
            runtime: over.runtime.or(self.runtime),
        }
    }

    /// The fields this partial spec sets, as override paths (what a template must allow for
    /// it to be laid over the template).
    pub fn fields(&self) -> Vec<OverrideField> {
        let mut fields = Vec::new();
        let mut set = |yes: bool, field| {
            if yes {
                fields.push(field);
            }
        };
        set(self.description.is_some(), OverrideField::Description);
        set(self.version.is_some(), OverrideField::Version);
        set(self.role_class.is_some(), OverrideField::RoleClass);
        set(self.mode.is_some(), OverrideField::Mode);
        let anatomy = self.anatomy.clone().unwrap_or_default();
        let reasoning = anatomy.reasoning.unwrap_or_default();
        set(reasoning.model.is_some(), OverrideField::Model);
        set(reasoning.temperature.is_some(), OverrideField::Temperature);
        set(!anatomy.inputs.is_empty(), OverrideField::Inputs);
        set(!anatomy.actions.is_empty(), OverrideField::Actions);
        set(anatomy.memory.is_some(), OverrideField::Memory);
        set(
            !anatomy.capabilities.is_empty(),
            OverrideField::Capabilities,
        );
        set(anatomy.economics.is_some(), OverrideField::Budget);
        set(self.sandbox.is_some(), OverrideField::Ttl);
        // Containment and runtime are never user overrides: a template fixes them.
        fields
    }
}

impl AnatomyDefaults {
    fn merge(self, over: AnatomyDefaults) -> AnatomyDefaults {
        let reasoning = match (self.reasoning, over.reasoning) {
            (Some(base), Some(over)) => Some(ReasoningDefaults {
                model: over.model.or(base.model),
                temperature: over.temperature.or(base.temperature),
            }),
            (base, over) => over.or(base),
        };
        let list = |base: Vec<String>, over: Vec<String>| if over.is_empty() { base } else { over };
        AnatomyDefaults {
            reasoning,
            inputs: list(self.inputs, over.inputs),
            actions: list(self.actions, over.actions),
            memory: over.memory.or(self.memory),
            capabilities: list(self.capabilities, over.capabilities),
            containment: over.containment.or(self.containment),
            economics: over.economics.or(self.economics),
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;

    use super::*;
    use crate::agent::MemoryKind;

    #[test]
    fn a_later_layer_wins_field_by_field() {
        let base = AgentDefaults {
            role_class: Some(RoleClass::Compliance),
            version: Some("1.0.0".into()),
            anatomy: Some(AnatomyDefaults {
                reasoning: Some(ReasoningDefaults {
                    model: Some("gpt-4o".into()),
                    temperature: Some(0.2),
                }),
                inputs: vec!["erp".into()],
                memory: Some(Memory {
                    kind: MemoryKind::Session,
                    retention_days: None,
                }),
                ..AnatomyDefaults::default()
            }),
            ..AgentDefaults::default()
        };
        let over = AgentDefaults {
            anatomy: Some(AnatomyDefaults {
                reasoning: Some(ReasoningDefaults {
                    model: None,
                    temperature: Some(0.1),
                }),
                actions: vec!["flag".into()],
                ..AnatomyDefaults::default()
            }),
            ..AgentDefaults::default()
        };
        assert_eq!(
            over.fields(),
            [OverrideField::Temperature, OverrideField::Actions]
        );
        let merged = base.merge(over);
        let anatomy = merged.anatomy.unwrap();
        let reasoning = anatomy.reasoning.unwrap();
        assert_eq!(reasoning.model.as_deref(), Some("gpt-4o"));
        assert_eq!(reasoning.temperature, Some(0.1));
        assert_eq!(anatomy.inputs, ["erp"]);
        assert_eq!(anatomy.actions, ["flag"]);
        assert_eq!(merged.role_class, Some(RoleClass::Compliance));
        assert_eq!(merged.version.as_deref(), Some("1.0.0"));
    }

    #[test]
    fn override_paths_read_as_the_schema_spells_them() {
        for field in OverrideField::ALL {
            let json = serde_json::to_value(field).unwrap();
            assert_eq!(json, field.path());
        }
        let crd = serde_json::to_value(ClusterAgentTemplate::crd()).unwrap();
        assert_eq!(crd["spec"]["scope"], "Cluster");
        let crd = serde_json::to_value(AgentTemplate::crd()).unwrap();
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let items = &schema["properties"]["allowedOverrides"]["items"]["enum"];
        let paths: Vec<&str> = OverrideField::ALL.iter().map(|f| f.path()).collect();
        assert_eq!(*items, serde_json::json!(paths), "{schema:#}");
        assert!(schema["x-kubernetes-validations"].is_array(), "{schema:#}");
    }
}
