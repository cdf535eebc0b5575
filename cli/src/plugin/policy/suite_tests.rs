use agentgov_api::policy::default_bundle_spec;

use super::*;

fn rego(name: &str, text: &str) -> Source {
    Source::Rego {
        name: name.into(),
        text: text.into(),
    }
}

const EXAMPLE: &str = include_str!("../../../../examples/policy/promotion_test.rego");

#[test]
fn test_rules_are_the_heads_named_test_at_the_start_of_a_line() {
    let text = "package p\n\ntest_one if {\n\ttrue\n}\n\ntest_one if false\n\
                test_two := true\nnot_a_test if true\n  test_indented if true\n# test_comment\n";
    assert_eq!(test_rules(text), ["test_one", "test_two"]);
}

#[test]
fn files_are_sorted_by_kind() {
    assert!(classify("README.md", vec![], "x").is_none());
    assert_eq!(
        classify("a.rego", vec![], "package a\n"),
        Some(Ok(rego("a.rego", "package a\n")))
    );
    let data = classify("cases.yaml", vec!["testdata".into()], "promotion: {a: 1}\n");
    assert_eq!(
        data,
        Some(Ok(Source::Data {
            path: vec!["testdata".into()],
            value: serde_json::json!({"promotion": {"a": 1}}),
        }))
    );
    let manifest = include_str!("../../../../examples/policybundle-default.yaml");
    assert_eq!(
        classify("policybundle.yaml", vec![], manifest),
        Some(Ok(Source::Bundle(default_bundle_spec())))
    );
    assert!(matches!(classify("bad.json", vec![], "{"), Some(Err(_))));
}

/// The example tests pass against the shipped bundle, on the engine agentgov evaluates with.
#[test]
fn the_example_tests_pass_against_the_default_bundle() {
    let sources = [
        Source::Bundle(default_bundle_spec()),
        rego("promotion_test.rego", EXAMPLE),
    ];
    let results = run(&sources).unwrap();
    assert_eq!(results.len(), 5, "{results:?}");
    assert!(passed(&results), "{}", report(&results));
    assert!(
        results[0]
            .test
            .starts_with("data.agentgov.promotion_examples_test.test_"),
        "{results:?}"
    );
}

/// The tests see the bundle's data: under a stricter limit, those that expect the shipped one fail.
#[test]
fn the_bundle_data_is_what_the_tests_see() {
    let mut strict = default_bundle_spec();
    strict.data.max_monthly_budget_usd = 100.0;
    let results = run(&[Source::Bundle(strict), rego("t.rego", EXAMPLE)]).unwrap();
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| r.verdict == Verdict::Fail)
        .map(|r| r.test.rsplit('.').next().unwrap())
        .collect();
    // Under a $100 limit the base spec's $250 is denied too: only the over-the-limit test holds.
    assert_eq!(
        failed,
        [
            "test_a_complete_compliance_agent_is_allowed",
            "test_a_compliance_agent_above_its_temperature_limit_is_denied",
            "test_a_budget_above_80_percent_of_the_limit_is_restricted",
            "test_an_actor_without_the_promote_verb_is_denied",
        ]
    );
}

#[test]
fn failures_errors_and_data_files_are_reported_like_opa_test() {
    let module = "package t\n\nimport rego.v1\n\n\
                  test_data if data.fixtures.cases.answer == 42\n\
                  test_fails if 1 == 2\n\
                  test_errors if 1 / 0 == 1\n";
    let sources = [
        rego("t_test.rego", module),
        Source::Data {
            path: vec!["fixtures".into()],
            value: serde_json::json!({"cases": {"answer": 42}}),
        },
    ];
    let results = run(&sources).unwrap();
    assert_eq!(results[0].verdict, Verdict::Pass, "{results:?}");
    assert_eq!(results[1].verdict, Verdict::Fail, "{results:?}");
    assert!(!passed(&results));
    let text = report(&results);
    assert!(
        text.starts_with("data.t.test_data: PASS\ndata.t.test_fails: FAIL\n"),
        "{text}"
    );
    assert!(text.contains("\nPASS: 1/3\nFAIL: 1/3\n"), "{text}");
    let json = serde_json::to_value(&results[1]).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"test": "data.t.test_fails", "result": "fail"})
    );
}

#[test]
fn no_tests_and_broken_modules_are_errors() {
    assert_eq!(
        run(&[rego("p.rego", "package p\n\nallow := true\n")]).unwrap_err(),
        "no test_ rules found"
    );
    assert!(run(&[rego("p.rego", "package p\n\ntest_x if {\n")]).is_err());
}
