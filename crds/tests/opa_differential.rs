//! The promotion policy decides exactly as OPA does. A fixed-seed generator makes a few thousand
//! inputs and data documents — the test table's cases, the boundaries of every rule
//! (temperature and budget at, one float step above and below each limit, the 80 % line),
//! missing, null and wrong-typed fields at every level of the input and of the data, odd actors
//! and lists, and random combinations — and each is evaluated by agentgov's engine (regorus'
//! RVM, through `PolicyEngine`) and by real OPA, all in one `opa eval` process. `allow`, the
//! denies (each `{code, message}`, in order) and the warnings (in order) must be identical, and
//! every code one the shipped policy gives; where our engine errs, OPA must have no decision
//! either (there should be none of those).
//!
//! OPA is `$AGENTGOV_OPA` or `<repo>/.cache/tools/bin/opa` (`make tools` builds it); without it
//! this test fails rather than skips. The OPA/RVM differences the policy steers around are
//! written down in policies/promotion.rego's header; one is shown below
//! (`an_undefined_assignment_is_where_the_rvm_and_opa_differ`).

mod common;
#[path = "common/promotion_cases.rs"]
mod promotion_cases;
#[path = "common/promotion_generator.rs"]
mod promotion_generator;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use agentgov_api::policy::{Deny, PolicyDecision, PolicyEngine};
use agentgov_api::policy_bundle::{PolicyBundleSpec, PolicyData, RegoModule};
use common::repo_root;
use promotion_cases::{Engines, SHIPPED_CODES};
use promotion_generator::{Case, generate, set};
use serde_json::{Value, json};

/// `$AGENTGOV_OPA`, else where hack/tools.sh installs it (`$AGENTGOV_TOOLS_DIR/bin`, by
/// default `<repo>/.cache/tools/bin`).
fn opa() -> PathBuf {
    let tools = std::env::var_os("AGENTGOV_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache/tools"));
    let path = std::env::var_os("AGENTGOV_OPA")
        .map(PathBuf::from)
        .unwrap_or_else(|| tools.join("bin/opa"));
    if !path.is_file() {
        panic!(
            "OPA not found: run `make tools` (looked for {}; set AGENTGOV_OPA to use another)",
            path.display()
        );
    }
    path
}

/// Every case's decision from one `opa eval`, by index; a case OPA leaves undefined is absent.
fn opa_decisions(cases: &[Case]) -> BTreeMap<usize, Value> {
    let documents: Vec<Value> = cases
        .iter()
        .map(|c| json!({"input": c.input, "limits": c.limits}))
        .collect();
    let file = std::env::temp_dir().join(format!(
        "agentgov-opa-differential-{}.json",
        std::process::id()
    ));
    let data = json!({"difftest": {"cases": documents}});
    std::fs::write(&file, data.to_string()).expect("the case file is written");
    // The `with` values are bound to variables first: OPA 1.22.3 evaluates `with input as
    // c.input` inside a comprehension as if the reference were undefined.
    let query = "{i: d | some i, c in data.difftest.cases; case_input := c.input; \
                 case_limits := c.limits; \
                 d := data.agentgov.promotion.decision with input as case_input \
                 with data.agentgov.limits as case_limits}";
    let output = Command::new(opa())
        .arg("eval")
        .args(["--format", "json", "--strict", "--show-builtin-errors"])
        .arg("--data")
        .arg(repo_root().join("policies/promotion.rego"))
        .arg("--data")
        .arg(&file)
        .arg(query)
        .output()
        .expect("opa runs");
    let _ = std::fs::remove_file(&file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "opa eval failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_str(&stdout).expect("opa prints JSON");
    // Built-in errors would mean the policy relied on OPA turning an error into "undefined",
    // where regorus fails the whole evaluation.
    assert!(
        result.get("errors").is_none(),
        "OPA reported built-in errors: {}",
        result["errors"]
    );
    let decisions = &result["result"][0]["expressions"][0]["value"];
    let decisions = decisions.as_object().expect("an object of decisions");
    decisions
        .iter()
        .map(|(i, d)| (i.parse().expect("an index"), d.clone()))
        .collect()
}

/// How our decision and OPA's differ, if they do: the whole decision, as JSON (denies as
/// `{code, message}` objects), order included.
fn difference(ours: &PolicyDecision, theirs: &Value) -> Option<String> {
    let ours_json = json!({
        "allow": ours.allow,
        "denies": ours.denies,
        "warnings": ours.warnings,
    });
    let unknown: Vec<&Deny> = ours
        .denies
        .iter()
        .filter(|d| !SHIPPED_CODES.contains(&d.code.as_str()))
        .collect();
    if !unknown.is_empty() {
        return Some(format!("codes the policy should not give: {unknown:?}"));
    }
    (&ours_json != theirs).then(|| format!("ours {ours_json}\n  OPA  {theirs}"))
}

#[test]
fn the_promotion_policy_decides_as_opa_does() {
    let cases = generate();
    assert!(cases.len() >= 1000, "only {} cases", cases.len());
    let theirs = opa_decisions(&cases);
    let mut engines = Engines::default();
    let (mut allowed, mut denied, mut both_refused) = (0, 0, 0);
    let mut codes = BTreeMap::<String, usize>::new();
    let mut mismatches = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let ours = engines
            .get(&case.limits)
            .evaluate_json(&case.input.to_string());
        let why = match (&ours, theirs.get(&i)) {
            (Ok(ours), Some(theirs)) => {
                if ours.allow {
                    allowed += 1;
                } else {
                    denied += 1;
                }
                for d in &ours.denies {
                    *codes.entry(d.code.clone()).or_default() += 1;
                }
                difference(ours, theirs)
            }
            (Err(_), None) => {
                both_refused += 1;
                None
            }
            (Ok(ours), None) => Some(format!("OPA has no decision; ours {ours:?}")),
            (Err(e), Some(theirs)) => Some(format!("our engine failed ({e}); OPA {theirs}")),
        };
        if let Some(why) = why {
            mismatches.push(format!(
                "{}\n  input  {}\n  limits {}\n  {why}",
                case.label, case.input, case.limits
            ));
        }
    }
    println!(
        "compared {} cases with OPA ({} data documents): {allowed} allowed, {denied} denied, \
         {both_refused} without a decision on both, {} different",
        cases.len(),
        engines.len(),
        mismatches.len()
    );
    println!("denies by code: {codes:?}");
    for m in mismatches.iter().take(20) {
        println!("DIFFERENT {m}");
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} cases decide differently on OPA (first: {})",
        mismatches.len(),
        cases.len(),
        mismatches[0]
    );
    // The generator reaches both sides of the decision.
    assert!(
        allowed >= 100 && denied >= 500,
        "{allowed} allowed, {denied} denied"
    );
    // And every rule's code, more than once.
    for code in SHIPPED_CODES {
        assert!(codes.get(code).is_some_and(|n| *n >= 10), "{codes:?}");
    }
}

/// A module showing where regorus' RVM (0.14) and OPA differ, which is why promotion.rego reads
/// every value with `object.get` and a default: OPA stops a rule body at an assignment of an
/// undefined value, the RVM runs on past it (and so an `else` is not taken either).
const UNDEFINED_ASSIGNMENT: &str = r#"package probe

import rego.v1

denies contains "ran past" if {
	x := input.missing
	true
}

fallback := v if {
	v := input.missing
} else := "else"

denies contains fallback

decision := {"allow": false, "denies": denies, "warnings": []}
"#;

/// OPA's and the RVM's decision for the module above. When a regorus upgrade makes this fail,
/// the RVM stops at undefined assignments as OPA does.
#[test]
fn an_undefined_assignment_is_where_the_rvm_and_opa_differ() {
    let input = r#"{"present": 1}"#;
    let spec = PolicyBundleSpec {
        version: "1".into(),
        entrypoint: "data.probe.decision".into(),
        modules: vec![RegoModule {
            name: "probe.rego".into(),
            rego: UNDEFINED_ASSIGNMENT.into(),
        }],
        data: PolicyData::default(),
        enforcement_action: Default::default(),
        signature: None,
    };
    let engine = PolicyEngine::compile(&spec).expect("the probe compiles");
    assert!(engine.uses_vm());
    let ours = engine.evaluate_json(input).expect("the probe evaluates");
    let dir = std::env::temp_dir().join(format!("agentgov-opa-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    std::fs::write(dir.join("probe.rego"), UNDEFINED_ASSIGNMENT).expect("written");
    std::fs::write(dir.join("input.json"), input).expect("written");
    let output = Command::new(opa())
        .args(["eval", "--format", "values", "--data"])
        .arg(dir.join("probe.rego"))
        .arg("--input")
        .arg(dir.join("input.json"))
        .arg("data.probe.decision.denies")
        .output()
        .expect("opa runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(output.status.success(), "{output:?}");
    let theirs: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    println!("OPA: {theirs}; RVM: {:?}", ours.denies);
    assert_eq!(theirs, json!([["else"]]));
    // The probe's denies are plain strings, read as code `other`.
    assert_eq!(ours.denies, vec![Deny::new(Deny::OTHER, "ran past")]);
}

/// The path setter the generator relies on.
#[test]
fn set_replaces_removes_and_nulls() {
    let mut doc = json!({"a": {"b": 1, "c": 2}});
    set(&mut doc, &["a", "b"], Some(json!(3)));
    set(&mut doc, &["a", "c"], None);
    assert_eq!(doc, json!({"a": {"b": 3}}));
    set(&mut doc, &[], None);
    assert_eq!(doc, Value::Null);
}
