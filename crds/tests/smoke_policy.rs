use agentgov_api::policy::{Actor, AgentInput, PolicyEngine, PolicyInput, default_bundle_spec};

#[test]
fn example_governed_agent_is_allowed() {
    let agent: agentgov_api::Agent =
        serde_yaml::from_str(include_str!("../../examples/agent-governed.yaml")).unwrap();
    let engine = PolicyEngine::compile(&default_bundle_spec()).unwrap();
    let actor = Actor { username: "alice".into(), authorized_to_promote: true, ..Default::default() };
    let d = engine
        .evaluate(&PolicyInput { agent: AgentInput { namespace: "ns", name: "a", spec: &agent.spec }, actor: &actor })
        .unwrap();
    println!("{d:?}");
    assert!(d.allow, "{d:?}");
    let n = 20000;
    let t = std::time::Instant::now();
    for _ in 0..n {
        engine.evaluate(&PolicyInput { agent: AgentInput { namespace: "ns", name: "a", spec: &agent.spec }, actor: &actor }).unwrap();
    }
    println!("{:.0} evals/s", n as f64 / t.elapsed().as_secs_f64());
    let bad = Actor::default();
    let d = engine
        .evaluate(&PolicyInput { agent: AgentInput { namespace: "ns", name: "a", spec: &agent.spec }, actor: &bad })
        .unwrap();
    println!("{d:?}");
}
