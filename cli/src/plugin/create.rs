//! `create`: a new Agent cloned from another, imported from a manifest, or built from a
//! partial spec (a source's draft, see `sources`) with the spec flags laid over it, then checked
//! as a whole spec (`finish`). Plain functions; `commands/create.rs` reads and sends.

use std::collections::BTreeMap;

use agentgov_api::Agent;
use agentgov_api::agent::{
    AgentMode, AgentSource, AgentSpec, Anatomy, Economics, Memory, MemoryKind, Reasoning,
    RoleClass, SandboxSpec, SourceKind,
};
use agentgov_api::template::{AgentDefaults, AnatomyDefaults, ReasoningDefaults};
use kube::api::ObjectMeta;

use super::Error;

/// The prefix of agentgov's own annotations (the operator's bookkeeping), which a copy drops.
const AGENTGOV_PREFIX: &str = "agentgov.dev/";
/// kubectl's record of the last `apply`, which belongs to the original.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// `agent` as a new Agent `name` in `namespace`: its spec (with `source` set to `source`), its
/// labels and its other annotations; no status (and so no proof), uid, resourceVersion,
/// managedFields, owners or finalizers, and none of agentgov's annotations.
pub fn copy(agent: Agent, name: &str, namespace: &str, source: AgentSource) -> Agent {
    let annotations: BTreeMap<String, String> = agent
        .metadata
        .annotations
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !k.starts_with(AGENTGOV_PREFIX) && k != LAST_APPLIED)
        .collect();
    let mut spec = agent.spec;
    spec.source = Some(source);
    let mut copy = Agent::new(name, spec);
    copy.metadata = ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        labels: agent.metadata.labels.filter(|l| !l.is_empty()),
        annotations: (!annotations.is_empty()).then_some(annotations),
        ..ObjectMeta::default()
    };
    copy
}

/// `spec.source` of a clone of `name` in `namespace`.
pub fn cloned_from(namespace: &str, name: &str) -> AgentSource {
    AgentSource {
        kind: SourceKind::Clone,
        reference: Some(format!("{namespace}/{name}")),
    }
}

/// `spec.source` of an import from `file` (none recorded for stdin).
pub fn imported_from(file: &str) -> AgentSource {
    AgentSource {
        kind: SourceKind::Import,
        reference: (file != "-").then(|| file.to_string()),
    }
}

/// The spec flags (`--scratch`'s, and the overrides every other built mode takes).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scratch {
    pub description: Option<String>,
    pub version: Option<String>,
    pub role: Option<RoleClass>,
    pub mode: Option<AgentMode>,
    pub model: Option<String>,
    pub temperature: Option<f64>,
    pub inputs: Vec<String>,
    pub actions: Vec<String>,
    pub capabilities: Vec<String>,
    pub memory: Option<MemoryKind>,
    pub retention_days: Option<i32>,
    pub budget_usd: Option<f64>,
    pub ttl_seconds: Option<i64>,
}

/// The version an agent gets when neither its source nor `--agent-version` names one.
pub const DEFAULT_VERSION: &str = "0.1.0";

/// The partial spec the flags set, or the sentence saying which flag is wrong.
pub fn flags(s: Scratch) -> Result<AgentDefaults, Error> {
    let usage = |m: &str| Err(Error::Usage(m.to_string()));
    if s.version.as_deref().is_some_and(|v| v.trim().is_empty()) {
        return usage("--agent-version must not be empty");
    }
    if s.model.as_deref().is_some_and(|m| m.trim().is_empty()) {
        return usage("--model must not be empty");
    }
    if let Some(t) = s.temperature.filter(|t| !(0.0..=2.0).contains(t)) {
        return Err(Error::Usage(format!(
            "--temperature {t} is out of range: it must be between 0 and 2"
        )));
    }
    for (flag, names) in [
        ("--input", &s.inputs),
        ("--action", &s.actions),
        ("--capability", &s.capabilities),
    ] {
        if names.iter().any(|n| n.trim().is_empty()) {
            return Err(Error::Usage(format!("{flag} must not be empty")));
        }
    }
    if s.retention_days.is_some_and(|d| d < 0) {
        return usage("--retention-days must not be negative");
    }
    if s.budget_usd.is_some_and(|b| !(b >= 0.0 && b.is_finite())) {
        return usage("--budget must be a number of US dollars, 0 or more");
    }
    if s.ttl_seconds.is_some_and(|ttl| ttl <= 0) {
        return usage("--ttl must be positive");
    }
    let reasoning = (s.model.is_some() || s.temperature.is_some()).then_some(ReasoningDefaults {
        model: s.model,
        temperature: s.temperature,
    });
    let anatomy = AnatomyDefaults {
        reasoning,
        inputs: s.inputs,
        actions: s.actions,
        memory: s.memory.map(|kind| Memory {
            kind,
            retention_days: s.retention_days,
        }),
        capabilities: s.capabilities,
        containment: None,
        economics: s
            .budget_usd
            .map(|monthly_budget_usd| Economics { monthly_budget_usd }),
    };
    Ok(AgentDefaults {
        description: s.description,
        version: s.version,
        role_class: s.role,
        mode: s.mode,
        anatomy: (anatomy != AnatomyDefaults::default()).then_some(anatomy),
        sandbox: s.ttl_seconds.map(|ttl| SandboxSpec {
            ttl_seconds: Some(ttl),
            expires_at: None,
        }),
        runtime: None,
    })
}

/// A whole spec from a partial one (a source's draft with the flags laid over it) that the
/// CRD's schema accepts, recording `source`; or the sentence saying what is missing or wrong.
/// An agent is a sandbox unless something says governed, and contained unless its source
/// says otherwise.
pub fn finish(d: AgentDefaults, source: Option<AgentSource>) -> Result<AgentSpec, Error> {
    let usage = |m: &str| Err(Error::Usage(m.to_string()));
    let Some(role_class) = d.role_class else {
        return usage(
            "the agent needs a role class: give --role (compliance, analysis or ideation)",
        );
    };
    let anatomy = d.anatomy.unwrap_or_default();
    let reasoning = match anatomy.reasoning.map(|r| (r.model, r.temperature)) {
        None | Some((None, None)) => None,
        Some((Some(model), Some(t))) if !model.trim().is_empty() && (0.0..=2.0).contains(&t) => {
            Some(Reasoning {
                model,
                temperature: t,
            })
        }
        Some((Some(model), Some(_))) if model.trim().is_empty() => {
            return usage("the model must not be empty (--model)");
        }
        Some((Some(_), Some(t))) => {
            return Err(Error::Usage(format!(
                "the temperature {t} is out of range: it must be between 0 and 2 (--temperature)"
            )));
        }
        Some((Some(_), None)) => {
            return usage("the model needs a temperature: give --temperature (0 to 2)");
        }
        Some((None, Some(_))) => return usage("the temperature needs a model: give --model"),
    };
    if let Some(memory) = &anatomy.memory
        && memory.retention_days.is_some()
        && memory.kind != MemoryKind::Persistent
    {
        return usage(
            "--retention-days needs --memory persistent (only persistent memory is kept for days)",
        );
    }
    let mode = d.mode.unwrap_or_default();
    if mode == AgentMode::Governed && d.sandbox.is_some() {
        return usage(
            "a governed agent does not expire: --ttl (or a sandbox lifetime from the source) is for sandboxes",
        );
    }
    let version = d.version.unwrap_or_else(|| DEFAULT_VERSION.to_string());
    if version.trim().is_empty() {
        return usage("the version must not be empty (--agent-version)");
    }
    Ok(AgentSpec {
        description: d.description.unwrap_or_default(),
        version,
        role_class,
        mode,
        anatomy: Anatomy {
            reasoning,
            inputs: anatomy.inputs,
            actions: anatomy.actions,
            memory: anatomy.memory,
            capabilities: anatomy.capabilities,
            containment: anatomy.containment.unwrap_or_default(),
            economics: anatomy.economics,
        },
        sandbox: d.sandbox,
        source,
        runtime: d.runtime,
    })
}

/// A spec from the flags alone (what `--scratch` makes).
#[cfg(test)]
pub fn scratch_spec(s: Scratch) -> Result<AgentSpec, Error> {
    finish(
        flags(s)?,
        Some(AgentSource {
            kind: SourceKind::Scratch,
            reference: None,
        }),
    )
}

/// A new Agent `name` in `namespace` with `spec`.
pub fn agent(name: &str, namespace: &str, spec: AgentSpec) -> Agent {
    let mut agent = Agent::new(name, spec);
    agent.metadata.namespace = Some(namespace.to_string());
    agent
}

/// `--memory`: none, session or persistent, in any case.
pub fn parse_memory(text: &str) -> Result<MemoryKind, String> {
    serde_json::from_value(serde_json::Value::String(text.trim().to_lowercase()))
        .map_err(|_| format!("{text:?} is not a memory kind (none, session, persistent)"))
}

#[cfg(test)]
mod tests {
    use agentgov_api::agent::{AgentStatus, Containment, GovernanceStatus};
    use agentgov_api::testing::{governed_agent, governed_spec};

    use super::*;

    fn stored() -> Agent {
        let mut agent = governed_agent();
        agent.metadata = ObjectMeta {
            name: Some("auditor".into()),
            namespace: Some("team-a".into()),
            uid: Some("uid-1".into()),
            resource_version: Some("42".into()),
            generation: Some(3),
            managed_fields: Some(vec![Default::default()]),
            finalizers: Some(vec!["agentgov.dev/proof".into()]),
            labels: Some(BTreeMap::from([("team".into(), "finance".into())])),
            annotations: Some(BTreeMap::from([
                ("agentgov.dev/approved-by".into(), "alice".into()),
                (LAST_APPLIED.into(), "{}".into()),
                ("owner".into(), "finance".into()),
            ])),
            ..ObjectMeta::default()
        };
        agent.status = Some(AgentStatus {
            governance_status: Some(GovernanceStatus::GovernedValid),
            ..AgentStatus::default()
        });
        agent
    }

    #[test]
    fn a_copy_keeps_spec_and_labels_and_drops_what_belongs_to_the_original() {
        let original = stored();
        let copy = copy(
            original.clone(),
            "copy",
            "team-b",
            cloned_from("team-a", "auditor"),
        );
        assert_eq!(copy.status, None);
        assert_eq!(copy.metadata.name.as_deref(), Some("copy"));
        assert_eq!(copy.metadata.namespace.as_deref(), Some("team-b"));
        assert_eq!(copy.metadata.uid, None);
        assert_eq!(copy.metadata.resource_version, None);
        assert_eq!(copy.metadata.generation, None);
        assert_eq!(copy.metadata.managed_fields, None);
        assert_eq!(copy.metadata.finalizers, None);
        assert_eq!(copy.metadata.labels, original.metadata.labels);
        assert_eq!(
            copy.metadata.annotations,
            Some(BTreeMap::from([("owner".into(), "finance".into())]))
        );
        let source = copy.spec.source.clone().unwrap();
        assert_eq!(source.kind, SourceKind::Clone);
        assert_eq!(source.reference.as_deref(), Some("team-a/auditor"));
        let mut spec = copy.spec.clone();
        spec.source = original.spec.source.clone();
        assert_eq!(spec, original.spec);
        let json = serde_json::to_value(&copy).unwrap();
        assert_eq!(json["kind"], "Agent");
        assert_eq!(json["apiVersion"], "agentgov.dev/v1alpha1");
        assert!(json.get("status").is_none(), "{json:#}");
    }

    #[test]
    fn imports_name_their_file_but_not_stdin() {
        assert_eq!(
            imported_from("agent.yaml").reference.as_deref(),
            Some("agent.yaml")
        );
        assert_eq!(imported_from("-").reference, None);
        assert_eq!(imported_from("-").kind, SourceKind::Import);
        let bare = copy(governed_agent(), "x", "ns", imported_from("-"));
        assert_eq!(bare.metadata.labels, None);
        assert_eq!(bare.metadata.annotations, None);
    }

    fn governed_flags() -> Scratch {
        Scratch {
            description: Some("Checks invoices.".into()),
            version: Some("1.0.0".into()),
            role: Some(RoleClass::Compliance),
            mode: Some(AgentMode::Governed),
            model: Some("gpt-4o".into()),
            temperature: Some(0.2),
            inputs: vec!["erp-invoices".into()],
            actions: vec!["flag-mismatch".into()],
            capabilities: vec!["document-comparison".into()],
            memory: Some(MemoryKind::Persistent),
            retention_days: Some(90),
            budget_usd: Some(250.0),
            ttl_seconds: None,
        }
    }

    #[test]
    fn scratch_flags_make_a_complete_spec() {
        let spec = scratch_spec(governed_flags()).unwrap();
        let example = governed_spec();
        assert_eq!(spec.role_class, example.role_class);
        assert_eq!(spec.mode, AgentMode::Governed);
        assert_eq!(spec.anatomy.reasoning, example.anatomy.reasoning);
        assert_eq!(spec.anatomy.memory, example.anatomy.memory);
        assert_eq!(spec.anatomy.economics, example.anatomy.economics);
        assert_eq!(spec.anatomy.containment, Containment::default());
        assert_eq!(spec.sandbox, None);
        assert_eq!(spec.source.unwrap().kind, SourceKind::Scratch);
        // A bare sandbox: only the role (and the version's default).
        let bare = scratch_spec(Scratch {
            role: Some(RoleClass::Ideation),
            ttl_seconds: Some(3_600),
            ..Scratch::default()
        })
        .unwrap();
        assert_eq!(bare.mode, AgentMode::Sandbox);
        assert_eq!(bare.anatomy, Anatomy::default());
        assert_eq!(bare.sandbox.unwrap().ttl_seconds, Some(3_600));
        assert_eq!(bare.description, "");
        assert_eq!(bare.version, DEFAULT_VERSION);
    }

    #[test]
    fn scratch_flags_the_schema_would_refuse_are_named() {
        type Change = fn(&mut Scratch);
        let cases: [(Change, &str); 10] = [
            (|s| s.role = None, "--role"),
            (|s| s.version = Some(" ".into()), "--agent-version"),
            (|s| s.temperature = Some(2.5), "between 0 and 2"),
            (|s| s.temperature = None, "give --temperature"),
            (|s| s.model = None, "give --model"),
            (|s| s.model = Some("".into()), "--model must not be empty"),
            (|s| s.actions.push(" ".into()), "--action must not be empty"),
            (
                |s| s.memory = Some(MemoryKind::Session),
                "--retention-days needs",
            ),
            (|s| s.budget_usd = Some(-1.0), "--budget"),
            (|s| s.ttl_seconds = Some(60), "is for sandboxes"),
        ];
        for (change, expected) in cases {
            let mut flags = governed_flags();
            change(&mut flags);
            let message = scratch_spec(flags).unwrap_err().to_string();
            assert!(message.contains(expected), "{expected}: {message}");
        }
        let mut zero = governed_flags();
        zero.mode = Some(AgentMode::Sandbox);
        zero.ttl_seconds = Some(0);
        assert!(
            scratch_spec(zero)
                .unwrap_err()
                .to_string()
                .contains("--ttl must be positive")
        );
    }

    #[test]
    fn flags_lie_over_a_draft_and_the_whole_is_checked() {
        let draft = AgentDefaults {
            role_class: Some(RoleClass::Analysis),
            anatomy: Some(AnatomyDefaults {
                reasoning: Some(ReasoningDefaults {
                    model: Some("gpt-4o".into()),
                    temperature: None,
                }),
                inputs: vec!["ledger".into()],
                containment: Some(Containment {
                    external_calls: true,
                    persistent_writes: false,
                }),
                ..AnatomyDefaults::default()
            }),
            ..AgentDefaults::default()
        };
        // The draft alone lacks a temperature; a flag gives it.
        let message = finish(draft.clone(), None).unwrap_err().to_string();
        assert!(message.contains("give --temperature"), "{message}");
        let over = flags(Scratch {
            temperature: Some(0.3),
            actions: vec!["summarise".into()],
            ..Scratch::default()
        })
        .unwrap();
        let source = AgentSource {
            kind: SourceKind::Event,
            reference: Some("t@s".into()),
        };
        let spec = finish(draft.merge(over), Some(source.clone())).unwrap();
        assert_eq!(spec.anatomy.reasoning.unwrap().temperature, 0.3);
        assert_eq!(spec.anatomy.inputs, ["ledger"]);
        assert_eq!(spec.anatomy.actions, ["summarise"]);
        assert!(
            spec.anatomy.containment.external_calls,
            "the source's containment stays"
        );
        assert_eq!(spec.source, Some(source));
        assert_eq!(spec.mode, AgentMode::Sandbox);
        // No flags set nothing.
        assert_eq!(flags(Scratch::default()).unwrap(), AgentDefaults::default());
    }

    #[test]
    fn memory_kinds_in_any_case() {
        assert_eq!(parse_memory("Persistent"), Ok(MemoryKind::Persistent));
        assert_eq!(parse_memory("none"), Ok(MemoryKind::None));
        assert!(
            parse_memory("forever")
                .unwrap_err()
                .contains("none, session, persistent")
        );
    }
}
