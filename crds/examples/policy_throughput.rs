//! Policy evaluations per second (one thread and all cores), and what compiling the bundle
//! takes (each thread that evaluates compiles it once more, for its own copy), for `make bench`.
//! Usage: cargo run --release -p agentgov-api --example policy_throughput [-- N]

use std::time::Instant;

use agentgov_api::Agent;
use agentgov_api::policy::{Actor, AgentInput, PolicyEngine, PolicyInput, default_bundle_spec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50_000);
    let agent: Agent = serde_yaml::from_str(include_str!("../../examples/agent-governed.yaml"))?;
    let start = Instant::now();
    let engine = PolicyEngine::compile(&default_bundle_spec())?;
    let compile_ms = start.elapsed().as_secs_f64() * 1e3;
    let actor = Actor {
        username: "bench".into(),
        authorized_to_promote: true,
        ..Default::default()
    };
    let input = PolicyInput {
        agent: AgentInput {
            namespace: "bench",
            name: "agent",
            spec: &agent.spec,
        },
        actor: &actor,
        namespace: None,
    };
    assert!(engine.evaluate(&input)?.allow);
    let start = Instant::now();
    for _ in 0..n {
        engine.evaluate(&input)?;
    }
    let single = n as f64 / start.elapsed().as_secs_f64();
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..n / threads {
                    let _ = engine.evaluate(&input);
                }
            });
        }
    });
    let parallel = (n / threads * threads) as f64 / start.elapsed().as_secs_f64();
    println!(
        "policy evaluations/s: {single:.0} on 1 thread, {parallel:.0} on {threads} threads ({n} evaluations); compiling the bundle: {compile_ms:.1} ms"
    );
    Ok(())
}
