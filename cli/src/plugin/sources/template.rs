//! `create --template T` / `--cluster-template T` / `--template-file FILE`: a template's
//! defaults with the user's overrides laid over them, each override on the template's
//! allowed-override list or refused.

use agentgov_api::agent::SourceKind;
use agentgov_api::template::{AgentDefaults, OverrideField};
use agentgov_api::{AgentTemplate, AgentTemplateSpec, ClusterAgentTemplate};

use super::{Draft, source};

/// `spec.source.reference` of an agent made from the AgentTemplate `name` in `namespace`.
pub fn namespaced(namespace: &str, name: &str) -> String {
    format!("agenttemplates/{namespace}/{name}")
}

/// `spec.source.reference` of an agent made from the ClusterAgentTemplate `name`.
pub fn cluster(name: &str) -> String {
    format!("clusteragenttemplates/{name}")
}

/// An AgentTemplate or ClusterAgentTemplate manifest (YAML or JSON): its spec and the
/// reference an agent made from it records (`default_namespace` for an AgentTemplate whose
/// manifest names none).
pub fn parse(bytes: &[u8], default_namespace: &str) -> Result<(AgentTemplateSpec, String), String> {
    let document: serde_yaml::Value = serde_yaml::from_slice(bytes).map_err(|e| e.to_string())?;
    match document.get("kind").and_then(serde_yaml::Value::as_str) {
        Some("AgentTemplate") => {
            let t: AgentTemplate = serde_yaml::from_value(document).map_err(|e| e.to_string())?;
            let namespace = t.metadata.namespace.as_deref().unwrap_or(default_namespace);
            let name = t.metadata.name.as_deref().unwrap_or_default();
            Ok((t.spec.clone(), namespaced(namespace, name)))
        }
        Some("ClusterAgentTemplate") => {
            let t: ClusterAgentTemplate =
                serde_yaml::from_value(document).map_err(|e| e.to_string())?;
            let reference = cluster(t.metadata.name.as_deref().unwrap_or_default());
            Ok((t.spec.into(), reference))
        }
        _ => Err("its kind is neither AgentTemplate nor ClusterAgentTemplate".into()),
    }
}

/// The template's defaults with `overrides` laid over them, recorded as made from
/// `reference`; or, when `overrides` sets a field the template does not allow, the sentence
/// saying which.
pub fn apply(
    template: &AgentTemplateSpec,
    reference: &str,
    overrides: AgentDefaults,
) -> Result<Draft, String> {
    let refused: Vec<&str> = overrides
        .fields()
        .into_iter()
        .filter(|f| !template.allowed_overrides.contains(f))
        .map(OverrideField::path)
        .collect();
    if !refused.is_empty() {
        let allowed: Vec<&str> = template
            .allowed_overrides
            .iter()
            .map(|f| f.path())
            .collect();
        let allows = if allowed.is_empty() {
            "none".to_string()
        } else {
            allowed.join(", ")
        };
        return Err(format!(
            "template {reference} does not allow overriding {} (it allows: {allows})",
            refused.join(", ")
        ));
    }
    Ok(Draft {
        spec: template.defaults.clone().merge(overrides),
        source: source(SourceKind::Template, Some(reference.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use agentgov_api::agent::{AgentMode, RoleClass};
    use agentgov_api::template::{AnatomyDefaults, ReasoningDefaults};

    use super::*;

    fn example(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../examples/templates/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(path).unwrap()
    }

    fn temperature(t: f64) -> AgentDefaults {
        AgentDefaults {
            anatomy: Some(AnatomyDefaults {
                reasoning: Some(ReasoningDefaults {
                    model: None,
                    temperature: Some(t),
                }),
                ..AnatomyDefaults::default()
            }),
            ..AgentDefaults::default()
        }
    }

    #[test]
    fn the_shipped_templates_parse_and_take_allowed_overrides() {
        let (spec, reference) =
            parse(&example("agenttemplate-compliance-auditor.yaml"), "team-a").unwrap();
        assert_eq!(reference, "agenttemplates/team-a/compliance-auditor");
        assert_eq!(spec.defaults.role_class, Some(RoleClass::Compliance));
        let draft = apply(&spec, &reference, temperature(0.1)).unwrap();
        let source = draft.source.unwrap();
        assert_eq!(source.kind, SourceKind::Template);
        assert_eq!(source.reference.as_deref(), Some(reference.as_str()));
        let reasoning = draft.spec.anatomy.unwrap().reasoning.unwrap();
        assert_eq!(reasoning.model.as_deref(), Some("gpt-4o"));
        assert_eq!(reasoning.temperature, Some(0.1));
        assert_eq!(draft.spec.mode, Some(AgentMode::Governed));

        let (spec, reference) =
            parse(&example("clusteragenttemplate-sandbox-lab.yaml"), "team-a").unwrap();
        assert_eq!(reference, "clusteragenttemplates/sandbox-lab");
        assert_eq!(spec.defaults.sandbox.unwrap().ttl_seconds, Some(86_400));
    }

    #[test]
    fn an_override_off_the_list_is_refused_in_one_sentence() {
        let (spec, reference) =
            parse(&example("agenttemplate-compliance-auditor.yaml"), "team-a").unwrap();
        let over = AgentDefaults {
            role_class: Some(RoleClass::Ideation),
            ..temperature(0.1)
        };
        let message = apply(&spec, &reference, over).unwrap_err();
        assert_eq!(
            message,
            "template agenttemplates/team-a/compliance-auditor does not allow overriding \
             roleClass (it allows: description, version, anatomy.reasoning.temperature, \
             anatomy.inputs, anatomy.actions, anatomy.capabilities)"
        );
        let fixed = AgentTemplateSpec::default();
        let message = apply(&fixed, "t", temperature(0.1)).unwrap_err();
        assert!(message.ends_with("(it allows: none)"), "{message}");
        // No overrides: the template as it is.
        assert!(apply(&fixed, "t", AgentDefaults::default()).is_ok());
    }

    #[test]
    fn other_kinds_are_not_templates() {
        let agent = b"apiVersion: agentgov.dev/v1alpha1\nkind: Agent\nmetadata: {name: a}\n";
        assert!(parse(agent, "ns").unwrap_err().contains("neither"));
        assert!(parse(b": [", "ns").is_err());
    }
}
