//! The in-process admission guards (`crds/guards/admission-policies.yaml`): the
//! ValidatingAdmissionPolicies, MutatingAdmissionPolicies and their bindings that make the API
//! server itself record and check who asks for a promotion or an exception, or changes a governed
//! spec.
//!
//! The operator signs nothing unless every guard is in the cluster exactly as shipped: [`check`]
//! compares what it watches with [`expected`], after the defaults the API server fills in. A
//! guard that is missing, or whose spec differs (a matchCondition added, an expression changed,
//! a binding narrowed or set to audit only), is reported.
//!
//! Which guards are expected depends on the cluster ([`GuardMode`]): where the API server
//! serves MutatingAdmissionPolicy (Kubernetes 1.36 and later) all of them; where it does not
//! (1.30 to 1.35) the ValidatingAdmissionPolicies alone, which still refuse an AgentPromotion or
//! an AgentException whose `spec.requestedBy` is not its requester (the client fills it in) but
//! stamp no `agentgov.dev/changed-by`.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingAdmissionPolicyBindingSpec, MutatingAdmissionPolicySpec,
    ValidatingAdmissionPolicyBindingSpec, ValidatingAdmissionPolicySpec,
};
use serde::Deserialize;
use serde_json::Value;

use crate::Error;

/// The shipped guards, as YAML (the chart carries a copy written by crdgen).
pub const GUARDS_YAML: &str = include_str!("../guards/admission-policies.yaml");

/// The annotation the guards stamp on every spec change of an Agent or a PolicyBundle, naming
/// the requester as the API server authenticated them, and allow to name no one else.
pub const CHANGED_BY: &str = "agentgov.dev/changed-by";

/// The prefix of the shipped guards' names. The operator's `--guard-prefix` names another set
/// (identical but for the names), for tests that remove guards without touching the shipped ones.
pub const DEFAULT_PREFIX: &str = "agentgov-";

/// The bundle history's actor of a spec change that carries no [`CHANGED_BY`] annotation (on a
/// cluster without MutatingAdmissionPolicy nothing stamps it): never a client-chosen name such as
/// a field manager.
pub const UNKNOWN_ACTOR: &str = "unknown (no changed-by annotation)";

/// The resources of `admissionregistration.k8s.io/v1` that MutatingAdmissionPolicy guards need.
pub const MUTATING_RESOURCES: [&str; 2] = [
    "mutatingadmissionpolicies",
    "mutatingadmissionpolicybindings",
];

/// Which guards a cluster can hold, hence which the operator requires before it signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuardMode {
    /// MutatingAdmissionPolicy is served: every guard is required.
    Full,
    /// MutatingAdmissionPolicy is not served (Kubernetes before 1.36, or switched off): the
    /// ValidatingAdmissionPolicies and their bindings alone are required. Clients fill
    /// `spec.requestedBy` themselves (the VAP still refuses any other identity) and spec changes
    /// carry no verified `agentgov.dev/changed-by`.
    ValidatingOnly,
}

impl GuardMode {
    pub const ALL: [GuardMode; 2] = [GuardMode::Full, GuardMode::ValidatingOnly];

    /// The mode of a cluster whose `admissionregistration.k8s.io/v1` serves `resources` (the
    /// names its discovery lists). Validating-only only when neither MutatingAdmissionPolicy
    /// resource is served: a cluster serving either requires every guard, so that deleting a
    /// MutatingAdmissionPolicy never downgrades what is required.
    pub fn from_served<'a>(resources: impl IntoIterator<Item = &'a str>) -> GuardMode {
        if resources
            .into_iter()
            .any(|name| MUTATING_RESOURCES.contains(&name))
        {
            GuardMode::Full
        } else {
            GuardMode::ValidatingOnly
        }
    }

    /// The kinds of guard this mode requires.
    pub fn kinds(self) -> &'static [GuardKind] {
        match self {
            GuardMode::Full => &GuardKind::ALL,
            GuardMode::ValidatingOnly => {
                &[GuardKind::ValidatingPolicy, GuardKind::ValidatingBinding]
            }
        }
    }

    /// Whether this mode requires guards of `kind`.
    pub fn requires(self, kind: GuardKind) -> bool {
        self.kinds().contains(&kind)
    }

    /// A bounded label value: `full` or `validating-only`.
    pub fn as_str(self) -> &'static str {
        match self {
            GuardMode::Full => "full",
            GuardMode::ValidatingOnly => "validating-only",
        }
    }
}

/// The four kinds of guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GuardKind {
    ValidatingPolicy,
    ValidatingBinding,
    MutatingPolicy,
    MutatingBinding,
}

impl GuardKind {
    pub const ALL: [GuardKind; 4] = [
        GuardKind::ValidatingPolicy,
        GuardKind::ValidatingBinding,
        GuardKind::MutatingPolicy,
        GuardKind::MutatingBinding,
    ];

    /// The Kubernetes kind.
    pub fn kind(self) -> &'static str {
        match self {
            GuardKind::ValidatingPolicy => "ValidatingAdmissionPolicy",
            GuardKind::ValidatingBinding => "ValidatingAdmissionPolicyBinding",
            GuardKind::MutatingPolicy => "MutatingAdmissionPolicy",
            GuardKind::MutatingBinding => "MutatingAdmissionPolicyBinding",
        }
    }

    /// Whether this kind is a MutatingAdmissionPolicy or its binding.
    pub fn is_mutating(self) -> bool {
        matches!(self, GuardKind::MutatingPolicy | GuardKind::MutatingBinding)
    }

    fn of(kind: &str) -> Option<GuardKind> {
        GuardKind::ALL.into_iter().find(|k| k.kind() == kind)
    }
}

/// The guards by (kind, name): each one's `spec`, as JSON.
pub type Guards = BTreeMap<(GuardKind, String), Value>;

/// What is wrong with one guard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuardProblem {
    Missing { kind: GuardKind, name: String },
    Altered { kind: GuardKind, name: String },
}

impl std::fmt::Display for GuardProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuardProblem::Missing { kind, name } => write!(f, "{} {name} is missing", kind.kind()),
            GuardProblem::Altered { kind, name } => {
                write!(f, "{} {name} differs from the shipped one", kind.kind())
            }
        }
    }
}

#[derive(Deserialize)]
struct Document {
    kind: String,
    metadata: Metadata,
    spec: Value,
}

#[derive(Deserialize)]
struct Metadata {
    name: String,
}

/// The shipped guards that `mode` requires, named as [`expected`] names them.
pub fn expected_in(prefix: &str, mode: GuardMode) -> Result<Guards, Error> {
    let mut guards = expected(prefix)?;
    guards.retain(|(kind, _), _| mode.requires(*kind));
    Ok(guards)
}

/// The shipped guards, named with `prefix` instead of [`DEFAULT_PREFIX`] (bindings' policy
/// names too), with the API server's defaults filled in.
pub fn expected(prefix: &str) -> Result<Guards, Error> {
    let mut guards = Guards::new();
    for document in serde_yaml::Deserializer::from_str(GUARDS_YAML) {
        let Document {
            kind,
            metadata,
            mut spec,
        } = Document::deserialize(document).map_err(|e| Error::Guards(e.to_string()))?;
        let kind = GuardKind::of(&kind)
            .ok_or_else(|| Error::Guards(format!("unexpected kind {kind} in the guards")))?;
        if let Some(policy) = spec.get_mut("policyName") {
            *policy = Value::String(renamed(policy.as_str().unwrap_or_default(), prefix));
        }
        let spec = normalized(kind, spec)?;
        guards.insert((kind, renamed(&metadata.name, prefix)), spec);
    }
    Ok(guards)
}

fn renamed(name: &str, prefix: &str) -> String {
    match name.strip_prefix(DEFAULT_PREFIX) {
        Some(rest) => format!("{prefix}{rest}"),
        None => name.to_string(),
    }
}

/// A guard's spec as the API server keeps it: read through its Kubernetes type (so both sides
/// serialize alike) with the defaults the server fills in for a policy's match constraints.
pub fn normalized(kind: GuardKind, spec: Value) -> Result<Value, Error> {
    let typed = |e: serde_json::Error| Error::Guards(format!("{}: {e}", kind.kind()));
    let mut spec = match kind {
        GuardKind::ValidatingPolicy => retyped::<ValidatingAdmissionPolicySpec>(spec),
        GuardKind::ValidatingBinding => retyped::<ValidatingAdmissionPolicyBindingSpec>(spec),
        GuardKind::MutatingPolicy => retyped::<MutatingAdmissionPolicySpec>(spec),
        GuardKind::MutatingBinding => retyped::<MutatingAdmissionPolicyBindingSpec>(spec),
    }
    .map_err(typed)?;
    if let Some(constraints) = spec
        .get_mut("matchConstraints")
        .and_then(Value::as_object_mut)
    {
        constraints
            .entry("matchPolicy")
            .or_insert_with(|| Value::String("Equivalent".into()));
        for selector in ["namespaceSelector", "objectSelector"] {
            constraints
                .entry(selector)
                .or_insert_with(|| Value::Object(Default::default()));
        }
        for rules in ["resourceRules", "excludeResourceRules"] {
            if let Some(rules) = constraints.get_mut(rules).and_then(Value::as_array_mut) {
                for rule in rules.iter_mut().filter_map(Value::as_object_mut) {
                    rule.entry("scope")
                        .or_insert_with(|| Value::String("*".into()));
                }
            }
        }
    }
    Ok(spec)
}

fn retyped<T: serde::de::DeserializeOwned + serde::Serialize>(
    spec: Value,
) -> Result<Value, serde_json::Error> {
    serde_json::to_value(serde_json::from_value::<T>(spec)?)
}

/// Every expected guard that `live` lacks or holds with another spec; empty when all are in
/// place. Guards in `live` that are not expected are none of this check's business.
pub fn check(expected: &Guards, live: &Guards) -> Vec<GuardProblem> {
    expected
        .iter()
        .filter_map(
            |((kind, name), spec)| match live.get(&(*kind, name.clone())) {
                None => Some(GuardProblem::Missing {
                    kind: *kind,
                    name: name.clone(),
                }),
                Some(found) if found != spec => Some(GuardProblem::Altered {
                    kind: *kind,
                    name: name.clone(),
                }),
                Some(_) => None,
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The agent guard computes expiries with the same ceiling as `--max-sandbox-ttl` allows
    /// at most, so it is never looser than the operator and the webhook.
    #[test]
    fn the_agent_guard_s_ceiling_is_the_longest_sandbox_ttl() {
        let hours = crate::expiry::LONGEST_SANDBOX_TTL.as_secs() / 3600;
        let seconds = crate::expiry::LONGEST_SANDBOX_TTL.as_secs();
        assert!(GUARDS_YAML.contains(&format!("duration('{hours}h')")));
        assert_eq!(GUARDS_YAML.matches(&format!("< {seconds} ?")).count(), 2);
        assert_eq!(GUARDS_YAML.matches(&format!(": {seconds})")).count(), 2);
        // No other life is assumed (the default TTL is a flag the guard does not know).
        assert!(!GUARDS_YAML.contains("259200)"), "the old default of 72h");
    }

    #[test]
    fn the_shipped_guards_parse_and_pair_every_policy_with_its_binding() {
        let guards = expected(DEFAULT_PREFIX).unwrap();
        let names = |kind: GuardKind| -> Vec<&str> {
            guards
                .keys()
                .filter(|(k, _)| *k == kind)
                .map(|(_, n)| n.as_str())
                .collect()
        };
        assert_eq!(
            names(GuardKind::ValidatingPolicy),
            names(GuardKind::ValidatingBinding)
        );
        assert_eq!(
            names(GuardKind::MutatingPolicy),
            names(GuardKind::MutatingBinding)
        );
        assert!(names(GuardKind::ValidatingPolicy).contains(&"agentgov-promotion"));
        assert!(names(GuardKind::ValidatingPolicy).contains(&"agentgov-exception"));
        assert!(names(GuardKind::MutatingPolicy).contains(&"agentgov-stamp-requester"));
        for ((kind, name), spec) in &guards {
            match kind {
                GuardKind::ValidatingBinding => {
                    assert_eq!(spec["policyName"], name.as_str());
                    assert_eq!(spec["validationActions"], serde_json::json!(["Deny"]));
                }
                GuardKind::MutatingBinding => assert_eq!(spec["policyName"], name.as_str()),
                _ => assert_eq!(spec["failurePolicy"], "Fail", "{name}"),
            }
        }
    }

    #[test]
    fn without_mutating_admission_policy_the_validating_guards_alone_are_expected() {
        // Discovery of admissionregistration.k8s.io/v1 on a 1.35 cluster, and on 1.36+.
        let old = [
            "mutatingwebhookconfigurations",
            "validatingadmissionpolicies",
            "validatingadmissionpolicies/status",
            "validatingadmissionpolicybindings",
            "validatingwebhookconfigurations",
        ];
        let new = [&old[..], &MUTATING_RESOURCES[..]].concat();
        assert_eq!(GuardMode::from_served(old), GuardMode::ValidatingOnly);
        assert_eq!(GuardMode::from_served(new.clone()), GuardMode::Full);
        // Either resource served is enough to require every guard: never a downgrade.
        for one in MUTATING_RESOURCES {
            assert_eq!(
                GuardMode::from_served(old.into_iter().chain([one])),
                GuardMode::Full
            );
        }

        let all = expected(DEFAULT_PREFIX).unwrap();
        assert_eq!(expected_in(DEFAULT_PREFIX, GuardMode::Full).unwrap(), all);
        let validating = expected_in(DEFAULT_PREFIX, GuardMode::ValidatingOnly).unwrap();
        assert!(validating.keys().all(|(k, _)| !k.is_mutating()));
        assert_eq!(
            validating.len(),
            all.keys().filter(|(k, _)| !k.is_mutating()).count()
        );
        for name in [
            "agentgov-promotion",
            "agentgov-exception",
            "agentgov-changed-by",
            "agentgov-pod-agent-label",
            "agentgov-binding-annotations",
        ] {
            for kind in [GuardKind::ValidatingPolicy, GuardKind::ValidatingBinding] {
                assert!(validating.contains_key(&(kind, name.to_string())), "{name}");
            }
        }
        // The validating-only set still reports a missing VAP binding; a missing MAP is none of
        // its business.
        let mut live = all.clone();
        live.retain(|(k, _), _| !k.is_mutating());
        assert!(check(&validating, &live).is_empty());
        assert!(
            !check(&all, &live).is_empty(),
            "the full set requires the MAPs"
        );
        live.remove(&(GuardKind::ValidatingBinding, "agentgov-promotion".into()));
        assert_eq!(
            check(&validating, &live),
            vec![GuardProblem::Missing {
                kind: GuardKind::ValidatingBinding,
                name: "agentgov-promotion".into()
            }]
        );
        assert_eq!(
            GuardMode::ALL.map(GuardMode::as_str),
            ["full", "validating-only"]
        );
    }

    #[test]
    fn a_prefix_renames_guards_and_their_bindings_policy_names() {
        let guards = expected("e2e-x-").unwrap();
        let binding = &guards[&(GuardKind::ValidatingBinding, "e2e-x-promotion".to_string())];
        assert_eq!(binding["policyName"], "e2e-x-promotion");
        assert!(guards.keys().all(|(_, n)| n.starts_with("e2e-x-")));
    }

    #[test]
    fn missing_and_altered_guards_are_reported_defaults_are_not() {
        let shipped = expected(DEFAULT_PREFIX).unwrap();
        // What the API server returns: the specs with its defaults, which `expected` has too.
        let mut live = shipped.clone();
        assert!(check(&shipped, &live).is_empty());
        live.remove(&(GuardKind::ValidatingBinding, "agentgov-promotion".into()));
        let key = (
            GuardKind::ValidatingPolicy,
            "agentgov-changed-by".to_string(),
        );
        let policy = live.get_mut(&key).unwrap();
        policy["matchConditions"] = serde_json::json!([{"name": "skip", "expression": "false"}]);
        let problems = check(&shipped, &live);
        assert_eq!(
            problems,
            vec![
                GuardProblem::Altered {
                    kind: GuardKind::ValidatingPolicy,
                    name: "agentgov-changed-by".into()
                },
                GuardProblem::Missing {
                    kind: GuardKind::ValidatingBinding,
                    name: "agentgov-promotion".into()
                },
            ]
        );
        // A binding set to warn or audit only is altered too.
        let mut audit = shipped.clone();
        audit
            .get_mut(&(
                GuardKind::ValidatingBinding,
                "agentgov-promotion".to_string(),
            ))
            .unwrap()["validationActions"] = serde_json::json!(["Audit"]);
        assert_eq!(check(&shipped, &audit).len(), 1);
    }

    /// The shipped ValidatingAdmissionPolicy `name`, and the expression of its one validation.
    fn validating(name: &str) -> (Value, String) {
        let guards = expected(DEFAULT_PREFIX).unwrap();
        let policy = guards[&(GuardKind::ValidatingPolicy, name.to_string())].clone();
        let validations = policy["validations"].as_array().unwrap();
        assert_eq!(validations.len(), 1, "{name}");
        let expression = validations[0]["expression"].as_str().unwrap().to_string();
        (policy, expression)
    }

    /// A rule matching core (`v1`) `resources` on `operation`, as the API server stores it.
    fn core_rule(operation: &str, resources: &[&str]) -> Value {
        serde_json::json!({
            "apiGroups": [""], "apiVersions": ["v1"], "operations": [operation],
            "resources": resources, "scope": "*",
        })
    }

    #[test]
    fn the_agent_label_never_changes_through_a_pod_subresource_or_a_binding() {
        let (policy, expression) = validating("agentgov-pod-agent-label");
        let bindings = ["pods/binding", "bindings"];
        assert_eq!(
            policy["matchConstraints"]["resourceRules"],
            serde_json::json!([
                core_rule("UPDATE", &["pods/*"]),
                core_rule("CREATE", &bindings)
            ])
        );
        assert_eq!(
            policy["matchConditions"][0]["expression"],
            "request.resource.resource == 'bindings' || (has(request.subResource) && request.subResource != '')"
        );
        let label = format!("labels[?'{}']", crate::agent::AGENT_LABEL);
        assert!(
            expression.contains(&format!("!object.metadata.?{label}.hasValue()")),
            "{expression}"
        );
        assert!(
            expression.contains(&format!(
                "object.metadata.?{label} == oldObject.metadata.?{label}"
            )),
            "{expression}"
        );
    }

    #[test]
    fn a_binding_carries_no_annotation_kubernetes_forbids_adding_to_a_pod() {
        let (policy, expression) = validating("agentgov-binding-annotations");
        assert_eq!(
            policy["matchConstraints"]["resourceRules"],
            serde_json::json!([core_rule("CREATE", &["pods/binding", "bindings"])])
        );
        // Every Binding is matched: none is left out by a condition.
        assert_eq!(policy.get("matchConditions"), None);
        // The two kinds of annotation the API server's own Pod update validation forbids adding.
        for forbidden in [
            "k.startsWith('container.apparmor.security.beta.kubernetes.io/')",
            "k == 'kubernetes.io/config.mirror'",
        ] {
            assert!(expression.contains(forbidden), "{expression}");
        }
        assert!(
            expression.starts_with("!has(object.metadata.annotations) ||"),
            "{expression}"
        );
    }

    #[test]
    fn exceptions_are_stamped_checked_and_authorized_per_named_agent() {
        let guards = expected(DEFAULT_PREFIX).unwrap();
        let resources = |kind: GuardKind, name: &str| {
            guards[&(kind, name.to_string())]["matchConstraints"]["resourceRules"][0]["resources"]
                .clone()
        };
        // One MAP stamps requestedBy on both kinds that carry it.
        assert_eq!(
            resources(GuardKind::MutatingPolicy, "agentgov-stamp-requester"),
            serde_json::json!(["agentpromotions", "agentexceptions"])
        );
        assert_eq!(
            resources(GuardKind::ValidatingPolicy, "agentgov-exception"),
            serde_json::json!(["agentexceptions"])
        );
        let policy = &guards[&(
            GuardKind::ValidatingPolicy,
            "agentgov-exception".to_string(),
        )];
        let expressions: Vec<&str> = policy["validations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["expression"].as_str().unwrap())
            .collect();
        // Every agent the CRD lets an exception name is checked, one check per expression (the
        // API server's cost limit allows about two), and a selector is checked without a name.
        for i in 0..crate::exception::MAX_NAMED_AGENTS {
            let checked = format!(".name(variables.agents[{i}]).check('except')");
            let found: Vec<&&str> = expressions
                .iter()
                .filter(|e| e.contains(&checked))
                .collect();
            assert_eq!(found.len(), 1, "agents[{i}]");
            assert!(found[0].contains(&format!("size(variables.agents) <= {i}")));
        }
        let checked = format!(
            ".name(variables.agents[{}])",
            crate::exception::MAX_NAMED_AGENTS
        );
        assert!(expressions.iter().all(|e| !e.contains(&checked)));
        assert!(
            expressions
                .iter()
                .all(|e| e.matches(".check(").count() <= 1)
        );
        assert!(
            expressions.iter().any(|e| e.contains(
                ".resource('agents').namespace(object.metadata.namespace).check('except')"
            ) && e.contains("has(object.spec.selector)"))
        );
        assert!(
            expressions
                .iter()
                .any(|e| e.contains("object.spec == oldObject.spec"))
        );
        assert!(
            expressions.iter().any(
                |e| e.contains("object.spec.requestedBy.username == request.userInfo.username")
            )
        );
    }
}
