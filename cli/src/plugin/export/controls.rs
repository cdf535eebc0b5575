//! The controls mapping (`docs/compliance/controls.yaml`, compiled in): which facts about an
//! agent hold, and which controls of OWASP Top 10 for LLM Applications, MITRE ATLAS and ISO/IEC
//! 42001 Annex A each one evidences.

use std::collections::BTreeMap;

use agentgov_api::Agent;
use agentgov_api::agent::{AgentMode, MemoryKind};
use serde::{Deserialize, Serialize};

/// The mapping file, as shipped.
pub const CONTROLS_YAML: &str = include_str!("../../../../docs/compliance/controls.yaml");

/// The mapping: frameworks, the controls they define, and what each fact evidences.
#[derive(Clone, Debug, Deserialize)]
pub struct Mapping {
    pub frameworks: BTreeMap<String, String>,
    pub controls: BTreeMap<String, Control>,
    pub facts: BTreeMap<String, FactControls>,
}

/// A control: its framework and title.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Control {
    pub framework: String,
    pub title: String,
}

/// What a fact means and the controls it evidences.
#[derive(Clone, Debug, Deserialize)]
pub struct FactControls {
    pub holds: String,
    pub controls: Vec<String>,
}

/// One fact that holds for an agent, with the controls it evidences.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub fact: String,
    pub controls: Vec<String>,
}

/// The facts the export derives, in the order records list them.
pub const FACTS: [&str; 8] = [
    "proofSigned",
    "humanApproval",
    "policyPassed",
    "containment",
    "budget",
    "memoryRetention",
    "sandboxExpiry",
    "imagesPinned",
];

impl Mapping {
    /// The shipped mapping.
    pub fn shipped() -> Result<Mapping, String> {
        serde_yaml::from_str(CONTROLS_YAML)
            .map_err(|e| format!("docs/compliance/controls.yaml does not parse: {e}"))
    }

    /// The facts that hold for `agent`, each with its controls.
    pub fn evidence(&self, agent: &Agent) -> Vec<Evidence> {
        facts(agent)
            .into_iter()
            .map(|fact| Evidence {
                fact: fact.to_string(),
                controls: self
                    .facts
                    .get(fact)
                    .map(|f| f.controls.clone())
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// The controls `evidence` names, with their framework and title (the export's catalog).
    pub fn catalog<'a>(
        &self,
        evidence: impl IntoIterator<Item = &'a Evidence>,
    ) -> BTreeMap<String, Control> {
        evidence
            .into_iter()
            .flat_map(|e| &e.controls)
            .filter_map(|id| Some((id.clone(), self.controls.get(id)?.clone())))
            .collect()
    }
}

/// The names of the facts ([`FACTS`]) that hold for `agent`.
pub fn facts(agent: &Agent) -> Vec<&'static str> {
    let spec = &agent.spec;
    let status = agent.status.as_ref();
    let in_force = status
        .and_then(|s| s.governance_status)
        .is_some_and(|g| g.is_governed_in_force());
    let proof = status.and_then(|s| s.proof.as_ref()).filter(|_| in_force);
    let required = status
        .and_then(|s| s.approval.as_ref())
        .map_or(1, |a| usize::try_from(a.required.max(1)).unwrap_or(1));
    let containment = spec.anatomy.containment;
    let memory = spec.anatomy.memory.as_ref();
    let holds = [
        proof.is_some(),
        proof.is_some_and(|p| p.approvers.len() >= required),
        in_force && status.is_some_and(|s| s.denies.is_empty() && s.policy.is_some()),
        spec.mode == AgentMode::Sandbox
            || (!containment.external_calls && !containment.persistent_writes),
        spec.anatomy.economics.is_some(),
        memory.is_some_and(|m| m.kind != MemoryKind::Persistent || m.retention_days.is_some()),
        spec.mode == AgentMode::Sandbox,
        spec.runtime.as_ref().is_some_and(|r| !r.images.is_empty()),
    ];
    FACTS
        .into_iter()
        .zip(holds)
        .filter_map(|(fact, holds)| holds.then_some(fact))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use agentgov_api::agent::GovernanceStatus;
    use agentgov_api::keyring::KeyRing;

    use super::*;
    use crate::plugin::fixtures::{NOW, governed, key_ring_config, sandbox, signed};

    #[test]
    fn the_shipped_mapping_covers_every_fact_and_defines_every_control() {
        let mapping = Mapping::shipped().unwrap();
        let named: BTreeSet<&str> = mapping.facts.keys().map(String::as_str).collect();
        assert_eq!(named, FACTS.into_iter().collect());
        for (fact, f) in &mapping.facts {
            assert!(!f.controls.is_empty(), "{fact}");
            for control in &f.controls {
                let defined = mapping.controls.get(control);
                assert!(defined.is_some(), "{fact}: {control} is not defined");
                let framework = &defined.unwrap().framework;
                assert!(mapping.frameworks.contains_key(framework), "{control}");
            }
        }
        // The three frameworks are there, OWASP's 2025 list whole.
        for i in 1..=10 {
            assert!(mapping.controls.contains_key(&format!("LLM{i:02}:2025")));
        }
    }

    #[test]
    fn facts_follow_the_spec_and_the_status() {
        let keys = KeyRing::from_config(&key_ring_config()).unwrap();
        let mut valid = signed(&keys);
        if let Some(status) = valid.status.as_mut() {
            status.policy = Some(Default::default());
        }
        assert_eq!(
            facts(&valid),
            [
                "proofSigned",
                "humanApproval",
                "policyPassed",
                "containment",
                "budget",
                "memoryRetention"
            ]
        );
        // Out of force, the proof evidences nothing.
        let invalidated = governed(
            "team-a",
            "gone",
            Some(GovernanceStatus::GovernedInvalidated),
        );
        assert!(!facts(&invalidated).contains(&"proofSigned"));
        let lab = sandbox("team-a", "lab", NOW, 60);
        let lab_facts = facts(&lab);
        assert!(lab_facts.contains(&"sandboxExpiry") && lab_facts.contains(&"containment"));
        let mapping = Mapping::shipped().unwrap();
        let evidence = mapping.evidence(&valid);
        assert_eq!(evidence[0].fact, "proofSigned");
        assert!(evidence[0].controls.contains(&"AML.M0013".to_string()));
        let catalog = mapping.catalog(&evidence);
        assert_eq!(catalog["LLM10:2025"].title, "Unbounded Consumption");
    }
}
