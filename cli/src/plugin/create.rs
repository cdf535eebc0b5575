//! `create`: a new Agent cloned from another, imported from a manifest, or built from flags.
//! Plain functions; `mod.rs` reads the source agent and sends the result.

use std::collections::BTreeMap;

use agentgov_api::Agent;
use agentgov_api::agent::{
    AgentMode, AgentSource, AgentSpec, Anatomy, Containment, Economics, Memory, MemoryKind,
    Reasoning, RoleClass, SandboxSpec, SourceKind,
};
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

/// What `--scratch` builds a spec from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scratch {
    pub description: Option<String>,
    pub version: String,
    pub role: Option<RoleClass>,
    pub mode: AgentMode,
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

/// A spec from the flags that the CRD's schema accepts, or the sentence saying which flag is
/// wrong. A sandbox stays contained (no external calls, no persistent writes).
pub fn scratch_spec(s: Scratch) -> Result<AgentSpec, Error> {
    let usage = |m: &str| Err(Error::Usage(m.to_string()));
    let Some(role_class) = s.role else {
        return usage("--scratch needs --role (compliance, analysis or ideation)");
    };
    if s.version.trim().is_empty() {
        return usage("--agent-version must not be empty");
    }
    let reasoning = match (s.model, s.temperature) {
        (None, None) => None,
        (Some(model), Some(t)) if !model.trim().is_empty() && (0.0..=2.0).contains(&t) => {
            Some(Reasoning {
                model,
                temperature: t,
            })
        }
        (Some(model), Some(_)) if model.trim().is_empty() => {
            return usage("--model must not be empty");
        }
        (Some(_), Some(t)) => {
            return Err(Error::Usage(format!(
                "--temperature {t} is out of range: it must be between 0 and 2"
            )));
        }
        (Some(_), None) => return usage("--model needs --temperature (0 to 2)"),
        (None, Some(_)) => return usage("--temperature needs --model"),
    };
    for (flag, names) in [
        ("--input", &s.inputs),
        ("--action", &s.actions),
        ("--capability", &s.capabilities),
    ] {
        if names.iter().any(|n| n.trim().is_empty()) {
            return Err(Error::Usage(format!("{flag} must not be empty")));
        }
    }
    if s.retention_days.is_some() && s.memory != Some(MemoryKind::Persistent) {
        return usage("--retention-days needs --memory persistent");
    }
    if s.retention_days.is_some_and(|d| d < 0) {
        return usage("--retention-days must not be negative");
    }
    if s.budget_usd.is_some_and(|b| !(b >= 0.0 && b.is_finite())) {
        return usage("--budget must be a number of US dollars, 0 or more");
    }
    let sandbox = match (s.mode, s.ttl_seconds) {
        (AgentMode::Governed, Some(_)) => {
            return usage("--ttl is for sandboxes: a governed agent does not expire");
        }
        (_, Some(ttl)) if ttl <= 0 => return usage("--ttl must be positive"),
        (_, ttl) => ttl.map(|ttl| SandboxSpec {
            ttl_seconds: Some(ttl),
            expires_at: None,
        }),
    };
    Ok(AgentSpec {
        description: s.description.unwrap_or_default(),
        version: s.version,
        role_class,
        mode: s.mode,
        anatomy: Anatomy {
            reasoning,
            inputs: s.inputs,
            actions: s.actions,
            memory: s.memory.map(|kind| Memory {
                kind,
                retention_days: s.retention_days,
            }),
            capabilities: s.capabilities,
            containment: Containment::default(),
            economics: s
                .budget_usd
                .map(|monthly_budget_usd| Economics { monthly_budget_usd }),
        },
        sandbox,
        source: Some(AgentSource {
            kind: SourceKind::Scratch,
            reference: None,
        }),
        runtime: None,
    })
}

/// `--memory`: none, session or persistent, in any case.
pub fn parse_memory(text: &str) -> Result<MemoryKind, String> {
    serde_json::from_value(serde_json::Value::String(text.trim().to_lowercase()))
        .map_err(|_| format!("{text:?} is not a memory kind (none, session, persistent)"))
}

#[cfg(test)]
mod tests {
    use agentgov_api::agent::{AgentStatus, GovernanceStatus};
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
            version: "1.0.0".into(),
            role: Some(RoleClass::Compliance),
            mode: AgentMode::Governed,
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
            version: "0.1.0".into(),
            role: Some(RoleClass::Ideation),
            ttl_seconds: Some(3_600),
            ..Scratch::default()
        })
        .unwrap();
        assert_eq!(bare.mode, AgentMode::Sandbox);
        assert_eq!(bare.anatomy, Anatomy::default());
        assert_eq!(bare.sandbox.unwrap().ttl_seconds, Some(3_600));
        assert_eq!(bare.description, "");
    }

    #[test]
    fn scratch_flags_the_schema_would_refuse_are_named() {
        type Change = fn(&mut Scratch);
        let cases: [(Change, &str); 10] = [
            (|s| s.role = None, "--role"),
            (|s| s.version = " ".into(), "--agent-version"),
            (|s| s.temperature = Some(2.5), "between 0 and 2"),
            (|s| s.temperature = None, "--model needs --temperature"),
            (|s| s.model = None, "--temperature needs --model"),
            (|s| s.model = Some("".into()), "--model must not be empty"),
            (|s| s.actions.push(" ".into()), "--action must not be empty"),
            (
                |s| s.memory = Some(MemoryKind::Session),
                "--retention-days needs",
            ),
            (|s| s.budget_usd = Some(-1.0), "--budget"),
            (|s| s.ttl_seconds = Some(60), "--ttl is for sandboxes"),
        ];
        for (change, expected) in cases {
            let mut flags = governed_flags();
            change(&mut flags);
            let message = scratch_spec(flags).unwrap_err().to_string();
            assert!(message.contains(expected), "{expected}: {message}");
        }
        let mut zero = governed_flags();
        zero.mode = AgentMode::Sandbox;
        zero.ttl_seconds = Some(0);
        assert!(
            scratch_spec(zero)
                .unwrap_err()
                .to_string()
                .contains("--ttl must be positive")
        );
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
