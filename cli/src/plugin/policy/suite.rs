//! `policy test`: a bundle's `test_` rules run like `opa test` runs them. The files given are
//! Rego modules, PolicyBundle manifests (their modules, and their data as `data.agentgov.limits`,
//! as the operator loads it) and data files (JSON or YAML, loaded at the path of their directory
//! below the directory named on the command line, as OPA loads them). Every rule whose name
//! starts with `test_` is evaluated on regorus, the engine agentgov evaluates policies with: a
//! test passes when it is defined and not `false`.

use agentgov_api::PolicyBundleSpec;
use agentgov_api::policy::data_document;
use serde::Serialize;

/// One file given to `policy test`, read and sorted by kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// A Rego module: its file name and text.
    Rego { name: String, text: String },
    /// A PolicyBundle manifest's spec.
    Bundle(PolicyBundleSpec),
    /// A data document, loaded at `path` under `data` (its directory below the root given).
    Data {
        path: Vec<String>,
        value: serde_json::Value,
    },
}

/// Sort a file by its name and text: `.rego` is Rego, `.json`, `.yaml` and `.yml` are a
/// PolicyBundle manifest when their kind says so, else data at `dir` (the file's directory
/// below the root given, one element per directory). `None`: a file `policy test` ignores.
pub fn classify(name: &str, dir: Vec<String>, text: &str) -> Option<Result<Source, String>> {
    let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match extension.as_deref() {
        Some("rego") => Some(Ok(Source::Rego {
            name: name.to_string(),
            text: text.to_string(),
        })),
        Some("json" | "yaml" | "yml") => Some(document(dir, text)),
        _ => None,
    }
}

fn document(dir: Vec<String>, text: &str) -> Result<Source, String> {
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    if super::bundle::is_bundle(&value) {
        let bundle = super::bundle::parse(text)?;
        return Ok(Source::Bundle(bundle.spec));
    }
    let value = serde_json::to_value(value).map_err(|e| e.to_string())?;
    Ok(Source::Data { path: dir, value })
}

/// What one test did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "result", content = "error")]
pub enum Verdict {
    Pass,
    Fail,
    /// The evaluation failed (a built-in's error, a conflict): the message.
    Error(String),
}

/// A test and its verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TestResult {
    /// The rule's full name, `data.<package>.test_<name>`.
    pub test: String,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// Load every source into one engine (as `opa test` loads its files into one store) and run
/// every `test_` rule, in the order the files and rules come. An error: a module that does not
/// parse, data that conflicts, or no test at all.
pub fn run(sources: &[Source]) -> Result<Vec<TestResult>, String> {
    let mut engine = regorus::Engine::new();
    // As agentgov compiles bundles: Rego v1.
    engine.set_rego_v0(false);
    let mut tests: Vec<String> = Vec::new();
    let mut add_module = |engine: &mut regorus::Engine, name: &str, text: &str| {
        let package = engine
            .add_policy(name.to_string(), text.to_string())
            .map_err(|e| format!("{e}"))?;
        for rule in test_rules(text) {
            let test = format!("{package}.{rule}");
            if !tests.contains(&test) {
                tests.push(test);
            }
        }
        Ok::<(), String>(())
    };
    for source in sources {
        match source {
            Source::Rego { name, text } => add_module(&mut engine, name, text)?,
            Source::Bundle(spec) => {
                for module in &spec.modules {
                    add_module(&mut engine, &module.name, &module.rego)?;
                }
                let data = data_document(&spec.data).map_err(|e| e.to_string())?;
                let data = regorus::Value::from_json_str(&data).map_err(|e| format!("{e}"))?;
                engine
                    .add_data(data)
                    .map_err(|e| format!("bundle data: {e}"))?;
            }
            Source::Data { path, value } => {
                let nested = path.iter().rev().fold(
                    value.clone(),
                    |inner, key| serde_json::json!({ key: inner }),
                );
                let data = regorus::Value::from_json_str(&nested.to_string())
                    .map_err(|e| format!("{e}"))?;
                engine.add_data(data).map_err(|e| format!("data: {e}"))?;
            }
        }
    }
    if tests.is_empty() {
        return Err("no test_ rules found".into());
    }
    Ok(tests
        .into_iter()
        .map(|test| {
            let verdict = match engine.eval_rule(test.clone()) {
                Ok(regorus::Value::Undefined | regorus::Value::Bool(false)) => Verdict::Fail,
                Ok(_) => Verdict::Pass,
                Err(e) => Verdict::Error(format!("{e}")),
            };
            TestResult { test, verdict }
        })
        .collect())
}

/// The names of a module's `test_` rules: rule heads at the start of a line (as `opa fmt`
/// writes them) whose name starts with `test_`, each once, in order.
pub fn test_rules(rego: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in rego.lines() {
        if !line.starts_with("test_") {
            continue;
        }
        let name: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Whether every test passed.
pub fn passed(results: &[TestResult]) -> bool {
    results.iter().all(|r| r.verdict == Verdict::Pass)
}

/// One line per test (`data.pkg.test_x: PASS`, `FAIL`, or `ERROR (why)`), then OPA's summary:
/// a rule of dashes and `PASS: n/total`, with `FAIL: n/total` and `ERROR: n/total` when any.
pub fn report(results: &[TestResult]) -> String {
    let mut out = String::new();
    for result in results {
        let verdict = match &result.verdict {
            Verdict::Pass => "PASS".to_string(),
            Verdict::Fail => "FAIL".to_string(),
            Verdict::Error(why) => format!("ERROR ({why})"),
        };
        out.push_str(&format!("{}: {verdict}\n", result.test));
    }
    out.push_str(&"-".repeat(80));
    out.push('\n');
    let total = results.len();
    let count = |f: fn(&Verdict) -> bool| results.iter().filter(|r| f(&r.verdict)).count();
    let counts = [
        ("PASS", count(|v| *v == Verdict::Pass)),
        ("FAIL", count(|v| *v == Verdict::Fail)),
        ("ERROR", count(|v| matches!(v, Verdict::Error(_)))),
    ];
    for (i, (label, n)) in counts.into_iter().enumerate() {
        if i == 0 || n > 0 {
            out.push_str(&format!("{label}: {n}/{total}\n"));
        }
    }
    out
}

#[cfg(test)]
#[path = "suite_tests.rs"]
mod tests;
