//! The promotion policy's test table, `policies/testdata/promotion_cases.yaml`: loading it,
//! building each case's input and limits, and matching a decision against its expectation, by
//! the conventions in the table's header (which `policies/promotion_test.rego` follows for OPA).
//! Included with `#[path]` by the test crates that use it, next to `mod common;`.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use agentgov_api::policy::{Deny, PolicyDecision, PolicyEngine, default_bundle_spec};
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub const TABLE: &str = "policies/testdata/promotion_cases.yaml";

/// The keys a case may use to change the base input and limits.
const CHANGES: [&str; 11] = [
    "input",
    "actor",
    "namespace",
    "spec_remove",
    "spec",
    "anatomy_remove",
    "anatomy",
    "input_remove",
    "limits",
    "limits_remove",
    "limits_patch",
];

#[derive(Deserialize)]
struct File {
    promotion: Table,
}

#[derive(Deserialize, Debug)]
pub struct Table {
    /// The shipped data.agentgov.limits.
    pub limits: Value,
    pub base: Value,
    pub cases: Vec<Case>,
}

#[derive(Deserialize, Debug)]
pub struct Case {
    pub name: String,
    pub expect: Expect,
    #[serde(flatten)]
    pub changes: Map<String, Value>,
}

#[derive(Deserialize, Debug)]
pub struct Expect {
    pub allow: bool,
    /// Deny code → substrings of that code's messages.
    #[serde(default)]
    pub denies: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub warnings: Vec<String>,
}

pub fn load() -> Table {
    let text = crate::common::read(TABLE);
    let file: File = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{TABLE}: {e}"));
    for case in &file.promotion.cases {
        for key in case.changes.keys() {
            assert!(
                CHANGES.contains(&key.as_str()),
                "{TABLE}: case {:?} has an unknown key {key}",
                case.name
            );
        }
    }
    file.promotion
}

/// `o` with `patch`'s keys replaced, not merged.
fn overlay(o: &mut Value, patch: Option<&Value>) {
    if let (Some(o), Some(Value::Object(patch))) = (o.as_object_mut(), patch) {
        for (k, v) in patch {
            o.insert(k.clone(), v.clone());
        }
    }
}

/// `o` without the keys listed in `keys`.
fn remove(o: &mut Value, keys: Option<&Value>) {
    if let (Some(o), Some(Value::Array(keys))) = (o.as_object_mut(), keys) {
        for k in keys.iter().filter_map(Value::as_str) {
            o.remove(k);
        }
    }
}

impl Case {
    fn change(&self, key: &str) -> Option<&Value> {
        self.changes.get(key)
    }

    /// The input document: the case's own, or the table's base changed as the header says.
    pub fn input(&self, base: &Value) -> Value {
        if let Some(input) = self.change("input") {
            return input.clone();
        }
        let mut spec = base["agent"]["spec"].clone();
        remove(&mut spec, self.change("spec_remove"));
        let mut anatomy = spec["anatomy"].clone();
        remove(&mut anatomy, self.change("anatomy_remove"));
        overlay(&mut anatomy, self.change("anatomy"));
        overlay(&mut spec, Some(&json!({ "anatomy": anatomy })));
        overlay(&mut spec, self.change("spec"));
        let mut agent = base["agent"].clone();
        overlay(&mut agent, Some(&json!({ "spec": spec })));
        let mut input = base.clone();
        overlay(&mut input, Some(&json!({ "agent": agent })));
        if let Some(actor) = self.change("actor") {
            overlay(&mut input, Some(&json!({ "actor": actor })));
        }
        if let Some(namespace) = self.change("namespace") {
            overlay(&mut input, Some(&json!({ "namespace": namespace })));
        }
        remove(&mut input, self.change("input_remove"));
        input
    }

    /// data.agentgov.limits: the case's own, or the table's changed as the header says.
    pub fn limits(&self, table_limits: &Value) -> Value {
        if let Some(limits) = self.change("limits") {
            return limits.clone();
        }
        let mut limits = table_limits.clone();
        remove(&mut limits, self.change("limits_remove"));
        overlay(&mut limits, self.change("limits_patch"));
        limits
    }
}

/// Exactly as many texts as patterns, each pattern part of a text and each text containing a
/// pattern.
pub fn matches(got: &[String], want: &[String]) -> bool {
    got.len() == want.len()
        && want
            .iter()
            .all(|w| got.iter().any(|g| g.contains(w.as_str())))
        && got
            .iter()
            .all(|g| want.iter().any(|w| g.contains(w.as_str())))
}

/// The deny codes the shipped policy gives, one per seed rule.
pub const SHIPPED_CODES: [&str; 8] = [
    "actor_unauthorized",
    "anatomy_incomplete",
    "containment",
    "capabilities",
    "temperature",
    "budget",
    "runtime",
    "namespace_budget",
];

/// Per code, the decision's messages match the expected substrings (see `matches`), and no deny
/// has a code that is not expected.
pub fn denies_match(got: &[Deny], want: &BTreeMap<String, Vec<String>>) -> bool {
    let codes: BTreeSet<&str> = got
        .iter()
        .map(|d| d.code.as_str())
        .chain(want.keys().map(String::as_str))
        .collect();
    codes.into_iter().all(|code| {
        let messages: Vec<String> = got
            .iter()
            .filter(|d| d.code == code)
            .map(|d| d.message.clone())
            .collect();
        matches(&messages, want.get(code).map_or(&[][..], Vec::as_slice))
    })
}

/// Denies in the policy's order: by message, then code.
pub fn sorted_denies(denies: &[Deny]) -> Vec<Deny> {
    let mut sorted = denies.to_vec();
    sorted.sort_by(|a, b| (&a.message, &a.code).cmp(&(&b.message, &b.code)));
    sorted
}

/// What is wrong with a decision, as the OPA runner names it: allow, denies, warnings, unsorted,
/// deny shape (a code the shipped policy does not give).
pub fn problems(decision: &PolicyDecision, expect: &Expect) -> Vec<&'static str> {
    let mut warnings = decision.warnings.clone();
    warnings.sort();
    [
        ("allow", decision.allow != expect.allow),
        ("denies", !denies_match(&decision.denies, &expect.denies)),
        ("warnings", !matches(&decision.warnings, &expect.warnings)),
        (
            "unsorted",
            sorted_denies(&decision.denies) != decision.denies || warnings != decision.warnings,
        ),
        (
            "deny shape",
            decision
                .denies
                .iter()
                .any(|d| !SHIPPED_CODES.contains(&d.code.as_str())),
        ),
    ]
    .into_iter()
    .filter_map(|(name, wrong)| wrong.then_some(name))
    .collect()
}

/// The whole data document for some limits.
pub fn data_document(limits: &Value) -> Value {
    json!({ "agentgov": { "limits": limits } })
}

/// Engines for the shipped policy, one per distinct data document, compiled on first use.
#[derive(Default)]
pub struct Engines {
    compiled: HashMap<String, PolicyEngine>,
}

impl Engines {
    pub fn get(&mut self, limits: &Value) -> &PolicyEngine {
        let data = data_document(limits);
        self.compiled.entry(data.to_string()).or_insert_with(|| {
            let engine = PolicyEngine::compile_with_raw_data(&default_bundle_spec(), &data)
                .unwrap_or_else(|e| panic!("the shipped policy compiles with {data}: {e}"));
            assert!(engine.uses_vm(), "the shipped policy must run on the RVM");
            engine
        })
    }

    pub fn len(&self) -> usize {
        self.compiled.len()
    }
}
