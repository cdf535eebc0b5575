//! The promotion policy: runs the Rego unit tests (policies/*_test.rego) against
//! policies/promotion.rego in regorus, and the shipped bundle end to end through `PolicyEngine`.

mod common;

use agentgov_api::policy::{
    Actor, AgentInput, PolicyDecision, PolicyEngine, PolicyInput, default_bundle_spec,
};
use common::{NAMESPACE, governed_agent, read, repo_root, sandbox_agent};

/// policies/*_test.rego, sorted: (path from the root, text).
fn test_modules() -> Vec<(String, String)> {
    let mut paths: Vec<String> = std::fs::read_dir(repo_root().join("policies"))
        .expect("policies/ is listable")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with("_test.rego"))
        .map(|name| format!("policies/{name}"))
        .collect();
    paths.sort();
    paths.into_iter().map(|p| (p.clone(), read(&p))).collect()
}

/// The rule paths of the tests in a module: `data.<package>.<rule>` for every line that starts
/// with `test_` (a rule head at the start of a line).
fn discover(path: &str, text: &str) -> Vec<String> {
    let package = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("package "))
        .unwrap_or_else(|| panic!("{path} has no package"))
        .trim();
    text.lines()
        .filter(|l| l.starts_with("test_"))
        .map(|l| {
            let name: String = l
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            format!("data.{package}.{name}")
        })
        .collect()
}

/// Load the modules into a fresh engine (Rego v1, as `PolicyEngine` does) and evaluate every
/// rule. A rule passes only when it is exactly `true`; undefined and errors fail.
fn run(modules: &[(String, String)], rules: &[String]) -> Vec<(String, Result<(), String>)> {
    let mut engine = regorus::Engine::new();
    engine.set_rego_v0(false);
    for (name, text) in modules {
        if let Err(e) = engine.add_policy(name.clone(), text.clone()) {
            panic!("{name} does not compile: {e}");
        }
    }
    rules
        .iter()
        .map(|rule| {
            let outcome = match engine.eval_rule(rule.clone()) {
                Ok(v) if v == regorus::Value::from(true) => Ok(()),
                Ok(regorus::Value::Undefined) => Err("undefined".to_string()),
                Ok(v) => Err(format!("evaluated to {v}")),
                Err(e) => Err(format!("error: {e}")),
            };
            (rule.clone(), outcome)
        })
        .collect()
}

/// Print one line per test and return the failures.
fn report(results: &[(String, Result<(), String>)]) -> Vec<String> {
    let mut failures = Vec::new();
    for (rule, outcome) in results {
        let name = rule.rsplit('.').next().unwrap_or(rule);
        match outcome {
            Ok(()) => println!("ok   {name}"),
            Err(why) => {
                println!("FAIL {name} ({why})");
                failures.push(format!("{rule}: {why}"));
            }
        }
    }
    failures
}

#[test]
fn rego_unit_tests_pass() {
    let tests = test_modules();
    assert!(!tests.is_empty(), "no policies/*_test.rego");
    let mut rules = Vec::new();
    for (path, text) in &tests {
        rules.extend(discover(path, text));
    }
    let mut unique = rules.clone();
    unique.sort();
    unique.dedup();
    // Two heads with one name are OR-ed by Rego: one passing body would hide a failing one.
    assert_eq!(unique.len(), rules.len(), "a test rule name is used twice");
    assert!(rules.len() >= 20, "only {} Rego tests found", rules.len());
    let mut modules = vec![(
        "policies/promotion.rego".to_string(),
        read("policies/promotion.rego"),
    )];
    modules.extend(tests);
    let failures = report(&run(&modules, &rules));
    println!("{} Rego tests, {} failed", rules.len(), failures.len());
    assert!(
        failures.is_empty(),
        "failing Rego tests:\n{}",
        failures.join("\n")
    );
}

/// The runner itself: only `true` passes; false, undefined, other values and errors fail.
#[test]
fn rego_runner_reports_every_kind_of_failure() {
    let module = "package runner_check\n\nimport rego.v1\n\n\
                  test_true if true\n\ntest_false := false\n\ntest_undefined if false\n\n\
                  test_number := 1\n\ntest_error := 1 / 0\n";
    let rules = discover("runner_check.rego", module);
    assert_eq!(rules.len(), 5, "{rules:?}");
    assert_eq!(rules[0], "data.runner_check.test_true");
    let results = run(&[("runner_check.rego".into(), module.into())], &rules);
    let failures = report(&results);
    assert_eq!(failures.len(), 4, "{failures:?}");
    assert!(results[0].1.is_ok());
    assert!(
        failures.iter().all(|f| !f.contains("test_true")),
        "{failures:?}"
    );
}

fn admin() -> Actor {
    Actor {
        username: "alice".into(),
        authorized_to_promote: true,
        ..Actor::default()
    }
}

fn evaluate(engine: &PolicyEngine, agent: &agentgov_api::Agent, actor: &Actor) -> PolicyDecision {
    let name = agent
        .metadata
        .name
        .as_deref()
        .expect("the example has a name");
    let input = PolicyInput {
        agent: AgentInput {
            namespace: NAMESPACE,
            name,
            spec: &agent.spec,
        },
        actor,
    };
    engine.evaluate(&input).expect("the policy evaluates")
}

#[test]
fn shipped_bundle_allows_the_example_governed_agent() {
    let engine =
        PolicyEngine::compile(&default_bundle_spec()).expect("the shipped bundle compiles");
    let decision = evaluate(&engine, &governed_agent(), &admin());
    assert_eq!(
        decision,
        PolicyDecision {
            allow: true,
            denies: vec![],
            warnings: vec![]
        }
    );
    assert!(!decision.is_restricted());
}

#[test]
fn shipped_bundle_denies_an_unauthorized_actor() {
    let engine = PolicyEngine::compile(&default_bundle_spec()).expect("compiles");
    let actor = Actor {
        username: "mallory".into(),
        groups: vec!["dev".into()],
        ..Actor::default()
    };
    let decision = evaluate(&engine, &governed_agent(), &actor);
    assert!(!decision.allow);
    assert_eq!(decision.denies.len(), 1, "{decision:?}");
    assert!(
        decision.denies[0].starts_with("mallory may not promote agents"),
        "{decision:?}"
    );
    // A group named after a promoter role is enough.
    let actor = Actor {
        username: "carol".into(),
        groups: vec!["policy_admin".into()],
        ..Actor::default()
    };
    assert!(evaluate(&engine, &governed_agent(), &actor).allow);
}

#[test]
fn shipped_bundle_restricts_the_example_sandbox_agent() {
    // No budget: allowed, with a warning (GOVERNED_RESTRICTED once promoted).
    let engine = PolicyEngine::compile(&default_bundle_spec()).expect("compiles");
    let decision = evaluate(&engine, &sandbox_agent(), &admin());
    assert!(decision.is_restricted(), "{decision:?}");
    assert_eq!(decision.warnings.len(), 1, "{decision:?}");
    assert!(
        decision.warnings[0].contains("no monthly budget"),
        "{decision:?}"
    );
    // Limits come from the bundle's data: a lower ideation limit denies its temperature 0.9.
    let mut spec = default_bundle_spec();
    spec.data.temperature_limits.ideation = 0.5;
    let engine = PolicyEngine::compile(&spec).expect("compiles");
    let decision = evaluate(&engine, &sandbox_agent(), &admin());
    assert!(!decision.allow);
    assert!(
        decision.denies[0].contains("0.9 is above the limit 0.5"),
        "{decision:?}"
    );
}
