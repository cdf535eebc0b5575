//! The promotion policy on the engine and mode production uses (regorus' RVM, through
//! `PolicyEngine`): every case of the test table policies/testdata/promotion_cases.yaml (which
//! `opa test policies/` also runs, on OPA), and the shipped bundle end to end on the examples.

mod common;
#[path = "common/promotion_cases.rs"]
mod promotion_cases;

use agentgov_api::AgentSpec;
use agentgov_api::policy::{
    Actor, AgentInput, DENY_CODES, Deny, NamespaceInput, PolicyDecision, PolicyEngine, PolicyInput,
    default_bundle_spec, metric_reason,
};
use agentgov_api::policy_bundle::PolicyData;
use common::{NAMESPACE, governed_agent, sandbox_agent};
use promotion_cases::{Engines, SHIPPED_CODES, denies_match, matches, problems};

#[test]
fn every_case_of_the_table_passes_on_the_rvm() {
    let table = promotion_cases::load();
    assert!(table.cases.len() >= 60, "only {} cases", table.cases.len());
    let mut engines = Engines::default();
    let mut failures = Vec::new();
    for case in &table.cases {
        let engine = engines.get(&case.limits(&table.limits));
        let input = case.input(&table.base);
        let outcome = match engine.evaluate_json(&input.to_string()) {
            Ok(decision) => {
                let wrong = problems(&decision, &case.expect);
                if wrong.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{wrong:?} (got {decision:?})"))
                }
            }
            Err(e) => Err(format!("error: {e}")),
        };
        match outcome {
            Ok(()) => println!("ok   {}", case.name),
            Err(why) => {
                println!("FAIL {}: {why}", case.name);
                failures.push(format!("{}: {why}", case.name));
            }
        }
    }
    println!("{} cases, {} failed", table.cases.len(), failures.len());
    assert!(
        failures.is_empty(),
        "failing cases:\n{}",
        failures.join("\n")
    );
}

#[test]
fn case_names_are_unique() {
    let table = promotion_cases::load();
    let mut names: Vec<&str> = table.cases.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    let count = names.len();
    names.dedup();
    assert_eq!(names.len(), count, "a case name is used twice");
}

/// The table's limits are what agentgov ships (`PolicyData::default()`).
#[test]
fn the_table_limits_are_the_shipped_ones() {
    let table = promotion_cases::load();
    let limits: PolicyData = serde_json::from_value(table.limits.clone()).expect("typed limits");
    assert_eq!(limits, PolicyData::default());
}

/// Where a case's input and limits are well-typed, the typed path the operator and webhook use
/// (`PolicyEngine::compile` and `evaluate`) decides exactly as the raw JSON path does.
#[test]
fn typed_cases_decide_the_same_through_the_typed_path() {
    let table = promotion_cases::load();
    let mut engines = Engines::default();
    let mut typed = 0;
    for case in &table.cases {
        let limits = case.limits(&table.limits);
        let input = case.input(&table.base);
        // serde also reads a struct from a JSON list (["alice"] as an Actor): not well-typed.
        if !input["actor"].is_object() || !input["agent"]["spec"].is_object() {
            continue;
        }
        // PolicyData fills in defaults for absent limits: only complete limits are the same data.
        let complete = ["maxMonthlyBudgetUsd", "temperatureLimits", "promoterRoles"]
            .iter()
            .all(|k| limits.get(k).is_some());
        if !complete {
            continue;
        }
        let (Ok(data), Ok(spec), Ok(actor)) = (
            serde_json::from_value::<PolicyData>(limits.clone()),
            serde_json::from_value::<AgentSpec>(input["agent"]["spec"].clone()),
            serde_json::from_value::<Actor>(input["actor"].clone()),
        ) else {
            continue;
        };
        // input.namespace, where a case gives one, typed too (a wrong-typed one is not).
        let namespace = match input.get("namespace") {
            None => None,
            Some(value) => match serde_json::from_value::<TypedNamespace>(value.clone()) {
                Ok(typed) => Some(NamespaceInput {
                    allocated_monthly_budget_usd: typed.allocated_monthly_budget_usd,
                }),
                Err(_) => continue,
            },
        };
        let mut bundle = default_bundle_spec();
        bundle.data = data;
        let engine = PolicyEngine::compile(&bundle).expect("compiles");
        let typed_input = PolicyInput {
            agent: AgentInput {
                namespace: input["agent"]["namespace"].as_str().unwrap_or(NAMESPACE),
                name: input["agent"]["name"].as_str().unwrap_or("agent"),
                spec: &spec,
            },
            actor: &actor,
            namespace: namespace.as_ref(),
        };
        let via_types = engine.evaluate(&typed_input).expect("evaluates");
        let via_json = engines
            .get(&limits)
            .evaluate_json(&input.to_string())
            .expect("evaluates");
        assert_eq!(via_types, via_json, "{}", case.name);
        assert!(
            problems(&via_types, &case.expect).is_empty(),
            "{}: {via_types:?}",
            case.name
        );
        typed += 1;
    }
    println!("{typed} well-typed cases decided alike");
    assert!(typed >= 40, "only {typed} cases are well-typed");
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypedNamespace {
    allocated_monthly_budget_usd: f64,
}

/// The matcher: as many texts as patterns, each pattern found, each text explained.
#[test]
fn the_matcher_is_strict() {
    let got = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(matches(&got(&[]), &got(&[])));
    assert!(matches(&got(&["abc", "xyz"]), &got(&["y", "b"])));
    assert!(!matches(&got(&["abc"]), &got(&[])));
    assert!(!matches(&got(&[]), &got(&["a"])));
    assert!(!matches(&got(&["abc", "abd"]), &got(&["ab"])));
    assert!(!matches(&got(&["abc", "xyz"]), &got(&["b", "q"])));
}

/// Denies match per code: the right sentences under another code do not match.
#[test]
fn the_deny_matcher_checks_codes() {
    let want = |pairs: &[(&str, &[&str])]| {
        pairs
            .iter()
            .map(|(code, texts)| {
                (
                    code.to_string(),
                    texts.iter().map(|t| t.to_string()).collect(),
                )
            })
            .collect()
    };
    let got = [Deny::new("budget", "abc"), Deny::new("temperature", "xyz")];
    assert!(denies_match(
        &got,
        &want(&[("budget", &["b"]), ("temperature", &["y"])])
    ));
    assert!(denies_match(&[], &want(&[])));
    assert!(denies_match(&[], &want(&[("budget", &[])])));
    assert!(!denies_match(&got, &want(&[("budget", &["b", "y"])])));
    assert!(!denies_match(
        &got,
        &want(&[("budget", &["y"]), ("temperature", &["b"])])
    ));
    assert!(!denies_match(&got, &want(&[("budget", &["b"])])));
    assert!(!denies_match(
        &got[..1],
        &want(&[("budget", &["b"]), ("temperature", &["y"])])
    ));
}

/// The shipped policy's codes are metric labels of their own, and the table expects each.
#[test]
fn every_shipped_code_is_a_label_and_in_the_table() {
    let table = promotion_cases::load();
    for code in SHIPPED_CODES {
        assert!(DENY_CODES.contains(&code), "{code} is not in DENY_CODES");
        assert_eq!(metric_reason(code), code);
        assert!(
            table
                .cases
                .iter()
                .any(|c| c.expect.denies.contains_key(code)),
            "no case of the table expects a {code} deny"
        );
    }
    for case in &table.cases {
        for code in case.expect.denies.keys() {
            assert!(
                SHIPPED_CODES.contains(&code.as_str()),
                "{}: {code} is not a code the policy gives",
                case.name
            );
        }
    }
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
        namespace: None,
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
            warnings: vec![],
            audit: vec![],
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
        decision.denies[0]
            .message
            .starts_with("mallory may not promote agents"),
        "{decision:?}"
    );
    assert_eq!(decision.denies[0].code, "actor_unauthorized");
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
    assert_eq!(
        decision.denies,
        vec![Deny::new(
            "temperature",
            "anatomy.reasoning.temperature 0.9 is above the limit 0.5 for role class ideation; \
             lower it to 0.5 or less"
        )]
    );
}
