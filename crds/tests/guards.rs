//! The shipped admission guards (`crds/guards/admission-policies.yaml`) as the API server will
//! read them. `agentgov_api::guards`' own tests cover the pairing of every policy with its
//! binding, `validationActions: [Deny]` and `failurePolicy: Fail`, on the specs read through
//! their Kubernetes types. What they cannot see is here:
//!
//! - each whole document is its k8s-openapi `admissionregistration.k8s.io/v1` type (apiVersion
//!   and kind included), and reading it through that type drops nothing: the types ignore
//!   unknown fields, so a misspelt one (`failurPolicy`, `validationAction`) would vanish from
//!   both sides of the operator's comparison and from the cluster, unnoticed;
//! - every binding applies wherever its policy does (no `matchResources` narrowing it, no
//!   parameters that could be missing);
//! - every resource rule names a resource and version that a committed CRD serves, or one of
//!   the few built-in ones listed (a typo there matches nothing, and the guard never runs).

mod common;

use std::collections::BTreeSet;

use agentgov_api::guards::GUARDS_YAML;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
};
use serde_json::Value;

/// Every document of the guards file, as JSON.
fn documents() -> Vec<Value> {
    serde_yaml::Deserializer::from_str(GUARDS_YAML)
        .map(|doc| {
            let value: Value = serde::Deserialize::deserialize(doc).expect("valid YAML");
            value
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// `document` read as `T` and written back.
fn through<T: serde::de::DeserializeOwned + serde::Serialize>(document: &Value) -> Value {
    let typed: T = serde_json::from_value(document.clone()).unwrap_or_else(|e| {
        panic!(
            "{} {} is not a {}: {e}",
            document["kind"],
            document["metadata"]["name"],
            std::any::type_name::<T>()
        )
    });
    serde_json::to_value(typed).expect("serializes")
}

fn name(document: &Value) -> &str {
    document["metadata"]["name"].as_str().unwrap_or_default()
}

#[test]
fn every_guard_is_its_kubernetes_type_and_nothing_is_dropped() {
    let documents = documents();
    let kinds: BTreeSet<&str> = documents
        .iter()
        .filter_map(|d| d["kind"].as_str())
        .collect();
    assert_eq!(kinds.len(), 4, "all four kinds of guard: {kinds:?}");
    for document in &documents {
        assert_eq!(
            document["apiVersion"],
            "admissionregistration.k8s.io/v1",
            "{}",
            name(document)
        );
        let read = match document["kind"].as_str().unwrap_or_default() {
            "ValidatingAdmissionPolicy" => through::<ValidatingAdmissionPolicy>(document),
            "ValidatingAdmissionPolicyBinding" => {
                through::<ValidatingAdmissionPolicyBinding>(document)
            }
            "MutatingAdmissionPolicy" => through::<MutatingAdmissionPolicy>(document),
            "MutatingAdmissionPolicyBinding" => through::<MutatingAdmissionPolicyBinding>(document),
            other => panic!("{}: unexpected kind {other}", name(document)),
        };
        assert_eq!(
            &read,
            document,
            "{} {} loses or changes fields when read as its Kubernetes type",
            document["kind"],
            name(document)
        );
    }
}

#[test]
fn bindings_apply_wherever_their_policy_does() {
    for document in documents() {
        let spec = &document["spec"];
        match document["kind"].as_str().unwrap_or_default() {
            "ValidatingAdmissionPolicyBinding" | "MutatingAdmissionPolicyBinding" => {
                for narrowing in ["matchResources", "paramRef"] {
                    assert!(
                        spec.get(narrowing).is_none(),
                        "binding {} has {narrowing}: a guard binds everywhere",
                        name(&document)
                    );
                }
            }
            _ => assert!(
                spec.get("paramKind").is_none(),
                "policy {} takes parameters",
                name(&document)
            ),
        }
    }
}

#[test]
fn every_resource_rule_names_a_served_crd() {
    // (group, version, plural) of every committed CRD.
    let mut served = BTreeSet::new();
    for file in [
        "agents.agentgov.dev.yaml",
        "policybundles.agentgov.dev.yaml",
        "agentpromotions.agentgov.dev.yaml",
        "agentexceptions.agentgov.dev.yaml",
        "clusterpolicybundles.agentgov.dev.yaml",
    ] {
        let crd: Value =
            serde_yaml::from_str(&common::read(&format!("crds/{file}"))).expect("a CRD");
        let group = crd["spec"]["group"].as_str().expect("group").to_string();
        let plural = crd["spec"]["names"]["plural"]
            .as_str()
            .expect("plural")
            .to_string();
        for version in crd["spec"]["versions"].as_array().expect("versions") {
            let version = version["name"].as_str().expect("version name").to_string();
            served.insert((group.clone(), version, plural.clone()));
        }
    }
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    // Built-in resources a guard may name, besides the CRDs: every Pod subresource and the
    // Bindings (the agent label never changes through one).
    let built_in: BTreeSet<(String, String, String)> = ["pods/*", "pods/binding", "bindings"]
        .into_iter()
        .map(|resource| (String::new(), "v1".to_string(), resource.to_string()))
        .collect();
    let mut covered = BTreeSet::new();
    for document in documents() {
        let Some(rules) = document["spec"]["matchConstraints"]["resourceRules"].as_array() else {
            continue;
        };
        assert!(!rules.is_empty(), "{} matches nothing", name(&document));
        for rule in rules {
            for group in strings(&rule["apiGroups"]) {
                for version in strings(&rule["apiVersions"]) {
                    for resource in strings(&rule["resources"]) {
                        let key = (group.clone(), version.clone(), resource);
                        if built_in.contains(&key) {
                            continue;
                        }
                        assert!(
                            served.contains(&key),
                            "{}: {key:?} is not a resource a committed CRD serves",
                            name(&document)
                        );
                        covered.insert(key.2);
                    }
                }
            }
            assert!(
                !strings(&rule["operations"]).is_empty(),
                "{}: a rule without operations",
                name(&document)
            );
        }
    }
    // Each of agentgov's resources is guarded by some policy.
    assert_eq!(
        covered,
        served.into_iter().map(|(_, _, plural)| plural).collect()
    );
}
