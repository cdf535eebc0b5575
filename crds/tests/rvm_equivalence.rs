//! The promotion policy gives the same decision on regorus' virtual machine (what agentgov runs)
//! as on its tree interpreter (the reference), for generated agents that break any mix of rules.

mod common;

use agentgov_api::agent::{Economics, Memory, MemoryKind, RoleClass};
use agentgov_api::policy::{Actor, AgentInput, PolicyEngine, PolicyInput, default_bundle_spec};
use proptest::prelude::*;

fn engine() -> &'static PolicyEngine {
    static ENGINE: std::sync::OnceLock<PolicyEngine> = std::sync::OnceLock::new();
    ENGINE.get_or_init(|| {
        PolicyEngine::compile(&default_bundle_spec()).expect("the shipped policy compiles")
    })
}

#[test]
fn the_shipped_policy_runs_on_the_vm() {
    assert!(
        engine().uses_vm(),
        "the shipped policy must compile for the RVM"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn vm_and_interpreter_agree(
        authorized in any::<bool>(),
        groups in prop::sample::subsequence(vec!["agent_admin".to_string(), "dev".to_string()], 0..=2),
        role in prop::sample::select(vec![RoleClass::Compliance, RoleClass::Analysis, RoleClass::Ideation]),
        temperature in prop::sample::select(vec![0.0, 0.3, 0.31, 0.7, 0.9, 1.0, 1.5, 2.0]),
        drop_reasoning in any::<bool>(),
        drop_inputs in any::<bool>(),
        drop_actions in any::<bool>(),
        memory in prop::option::of(prop::sample::select(vec![MemoryKind::None, MemoryKind::Session, MemoryKind::Persistent])),
        retention in prop::option::of(0i32..400),
        capabilities in 0usize..3,
        external_calls in any::<bool>(),
        persistent_writes in any::<bool>(),
        budget in prop::option::of(prop::sample::select(vec![0.0, 10.0, 799.0, 801.0, 1000.0, 1000.5, 1e6])),
    ) {
        let mut spec = common::governed_agent().spec;
        spec.role_class = role;
        if let Some(r) = spec.anatomy.reasoning.as_mut() {
            r.temperature = temperature;
        }
        if drop_reasoning { spec.anatomy.reasoning = None; }
        if drop_inputs { spec.anatomy.inputs.clear(); }
        if drop_actions { spec.anatomy.actions.clear(); }
        spec.anatomy.memory = memory.map(|kind| Memory { kind, retention_days: retention });
        spec.anatomy.capabilities = (0..capabilities).map(|i| format!("cap-{i}")).collect();
        spec.anatomy.containment.external_calls = external_calls;
        spec.anatomy.containment.persistent_writes = persistent_writes;
        spec.anatomy.economics = budget.map(|b| Economics { monthly_budget_usd: b });
        let actor = Actor { username: "u".into(), groups, roles: vec![], authorized_to_promote: authorized };
        let input = PolicyInput { agent: AgentInput { namespace: "ns", name: "a", spec: &spec }, actor: &actor, namespace: None };
        let vm = engine().evaluate_raw(&input).unwrap();
        let interpreted = engine().evaluate_interpreted(&input).unwrap();
        prop_assert_eq!(vm.to_json_str().unwrap(), interpreted.to_json_str().unwrap());
    }
}
