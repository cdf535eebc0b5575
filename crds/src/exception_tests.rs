use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
use kube::CustomResourceExt;
use serde_json::Value;

use super::*;

/// `examples/exception.yaml`: `invoice-auditor-q4-pilot`, waiving temperature and budget for
/// `invoice-auditor` and agents labelled `team=finance-pilot`, asking to end 2026-12-31T18:00Z.
const EXAMPLE_YAML: &str = include_str!("../../examples/exception.yaml");

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// The example as the API server keeps it: created at `created`, stamped for alice.
fn example(created: &str) -> AgentException {
    let mut e: AgentException = serde_yaml::from_str(EXAMPLE_YAML).unwrap();
    e.metadata.namespace = Some("finance".into());
    e.metadata.generation = Some(1);
    e.metadata.creation_timestamp = Some(Time(at(created)));
    e.spec.requested_by = Some(Requester {
        username: "alice".into(),
        ..Requester::default()
    });
    e
}

fn named(mut e: AgentException, name: &str) -> AgentException {
    e.metadata.name = Some(name.into());
    e
}

fn labels<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn requirement(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.into(),
        operator: operator.into(),
        values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
    }
}

fn expressions(requirements: Vec<LabelSelectorRequirement>) -> LabelSelector {
    LabelSelector {
        match_expressions: Some(requirements),
        match_labels: None,
    }
}

/// The spec's schema in the generated CRD.
fn spec_schema() -> Value {
    let crd = serde_json::to_value(AgentException::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

fn rules_of(schema: &Value) -> Vec<String> {
    schema["x-kubernetes-validations"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|r| r["rule"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_waivable_codes_are_the_policy_rules_but_the_actor_rule() {
    assert_eq!(
        waivable_codes().collect::<Vec<_>>(),
        [
            "anatomy_incomplete",
            "containment",
            "capabilities",
            "temperature",
            "budget",
            "runtime",
            "namespace_budget"
        ]
    );
    for code in [
        ACTOR_RULE,
        Deny::OTHER,
        Deny::NO_POLICY,
        Deny::POLICY_ERROR,
        "warning",
        "",
        "Temperature",
    ] {
        assert!(!waivable(code), "{code}");
    }
}

#[test]
fn the_crds_cel_list_of_waivable_codes_is_waivable() {
    let rules = rules_of(&spec_schema()["properties"]["rules"]);
    let list = rules
        .iter()
        .find_map(|r| r.strip_prefix("self.all(r, r in ["))
        .and_then(|r| r.strip_suffix("])"))
        .expect("a CEL rule listing the waivable codes");
    let listed: Vec<&str> = list
        .split(',')
        .map(|c| c.trim().trim_matches('\''))
        .collect();
    assert_eq!(listed, waivable_codes().collect::<Vec<_>>());
    let message = spec_schema()["properties"]["rules"]["x-kubernetes-validations"][0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.ends_with(&waivable_codes().collect::<Vec<_>>().join(", ")));
}

#[test]
fn the_crd_bounds_and_guards_the_spec() {
    let spec = spec_schema();
    assert_eq!(
        spec["required"],
        serde_json::json!(["expiresAt", "justification", "rules"])
    );
    let rules = &spec["properties"]["rules"];
    assert_eq!(
        (rules["minItems"].as_u64(), rules["maxItems"].as_u64()),
        (Some(1), Some(16))
    );
    assert_eq!(
        spec["properties"]["agents"]["maxItems"].as_u64(),
        Some(MAX_NAMED_AGENTS as u64)
    );
    let justification = &spec["properties"]["justification"];
    assert_eq!(
        (
            justification["minLength"].as_u64(),
            justification["maxLength"].as_u64()
        ),
        (Some(1), Some(1024))
    );
    assert!(rules_of(justification).contains(&"self.trim().size() > 0".to_string()));
    let top = rules_of(&spec);
    assert!(top.contains(&"self == oldSelf".to_string()), "{top:?}");
    assert!(
        top.iter().any(|r| r.contains("has(self.selector)")),
        "{top:?}"
    );
    let selector = &spec["properties"]["selector"];
    assert!(rules_of(selector)[0].contains("size(self.matchLabels) > 0"));
    assert_eq!(
        selector["properties"]["matchExpressions"]["items"]["properties"]["operator"]["enum"],
        serde_json::json!(["In", "NotIn", "Exists", "DoesNotExist"])
    );
    let crd = AgentException::crd();
    assert_eq!(crd.spec.names.short_names, Some(vec!["aex".to_string()]));
    assert_eq!(crd.spec.scope, "Namespaced");
    let status = serde_json::to_value(&crd).unwrap()["spec"]["versions"][0]["schema"]
        ["openAPIV3Schema"]["properties"]["status"]["properties"]["agents"]["maxItems"]
        .as_u64();
    assert_eq!(status, Some(MAX_STATUS_AGENTS as u64));
}

#[test]
fn the_effective_expiry_is_capped_by_the_maximum_since_creation() {
    let created = at("2026-12-01T00:00:00Z");
    // Asked within the maximum: as asked.
    assert_eq!(
        effective_expiry(created, at("2026-12-03T00:00:00Z"), DEFAULT_MAX_EXCEPTION),
        at("2026-12-03T00:00:00Z")
    );
    // Asked beyond it: the maximum, exactly 7 days.
    assert_eq!(
        effective_expiry(created, at("2027-06-01T00:00:00Z"), DEFAULT_MAX_EXCEPTION),
        at("2026-12-08T00:00:00Z")
    );
    assert_eq!(DEFAULT_MAX_EXCEPTION, SignedDuration::from_hours(168));
    // A smaller floor maximum wins; an expiry already past stays past.
    assert_eq!(
        effective_expiry(
            created,
            at("2026-12-05T00:00:00Z"),
            SignedDuration::from_hours(1)
        ),
        at("2026-12-01T01:00:00Z")
    );
    assert_eq!(
        effective_expiry(created, at("2020-01-01T00:00:00Z"), DEFAULT_MAX_EXCEPTION),
        at("2020-01-01T00:00:00Z")
    );
    // No overflow at the end of time.
    assert_eq!(
        effective_expiry(Timestamp::MAX, Timestamp::MAX, SignedDuration::MAX),
        Timestamp::MAX
    );
    // On the object: no creationTimestamp, no expiry.
    let mut e = example("2026-12-01T00:00:00Z");
    assert_eq!(
        e.expiry(DEFAULT_MAX_EXCEPTION),
        Some(at("2026-12-08T00:00:00Z"))
    );
    e.metadata.creation_timestamp = None;
    assert_eq!(e.expiry(DEFAULT_MAX_EXCEPTION), None);
}

#[test]
fn selectors_match_as_kubernetes_matches_them_but_empty_selects_nothing() {
    let agent = labels([("team", "finance-pilot"), ("tier", "gold")]);
    let by_labels = |pairs: BTreeMap<String, String>| LabelSelector {
        match_labels: Some(pairs),
        match_expressions: None,
    };
    assert!(selector_matches(
        &by_labels(labels([("team", "finance-pilot")])),
        &agent
    ));
    assert!(!selector_matches(
        &by_labels(labels([("team", "other")])),
        &agent
    ));
    assert!(!selector_matches(
        &by_labels(labels([("team", "finance-pilot"), ("zone", "a")])),
        &agent
    ));
    // Empty, in any spelling: nothing (Kubernetes: everything).
    assert!(!selector_matches(&LabelSelector::default(), &agent));
    assert!(!selector_matches(&by_labels(BTreeMap::new()), &agent));
    assert!(!selector_matches(&expressions(vec![]), &agent));
    assert!(!selector_matches(
        &LabelSelector::default(),
        &BTreeMap::new()
    ));

    let one = |r| selector_matches(&expressions(vec![r]), &agent);
    assert!(one(requirement("tier", "In", &["gold", "silver"])));
    assert!(!one(requirement("tier", "In", &["silver"])));
    assert!(!one(requirement("zone", "In", &["a"])));
    assert!(one(requirement("tier", "NotIn", &["silver"])));
    assert!(!one(requirement("tier", "NotIn", &["gold"])));
    assert!(
        one(requirement("zone", "NotIn", &["a"])),
        "NotIn matches an absent label"
    );
    assert!(one(requirement("team", "Exists", &[])));
    assert!(!one(requirement("zone", "Exists", &[])));
    assert!(one(requirement("zone", "DoesNotExist", &[])));
    assert!(!one(requirement("team", "DoesNotExist", &[])));
    // Malformed: nothing.
    assert!(!one(requirement("tier", "In", &[])));
    assert!(!one(requirement("zone", "NotIn", &[])));
    assert!(!one(requirement("team", "Exists", &["finance-pilot"])));
    assert!(!one(requirement("zone", "DoesNotExist", &["x"])));
    assert!(!one(requirement("tier", "in", &["gold"])));
    assert!(!one(requirement("tier", "Gt", &["1"])));
    // Labels and expressions are ANDed.
    let both = LabelSelector {
        match_labels: Some(labels([("team", "finance-pilot")])),
        match_expressions: Some(vec![requirement("tier", "In", &["silver"])]),
    };
    assert!(!selector_matches(&both, &agent));
    let both = LabelSelector {
        match_labels: Some(labels([("team", "finance-pilot")])),
        match_expressions: Some(vec![
            requirement("tier", "In", &["gold"]),
            requirement("zone", "DoesNotExist", &[]),
        ]),
    };
    assert!(selector_matches(&both, &agent));
}

#[test]
fn applicable_exceptions_name_or_select_the_agent_unexpired_and_stamped() {
    let now = at("2026-12-02T00:00:00Z");
    let max = DEFAULT_MAX_EXCEPTION;
    let pilot = labels([("team", "finance-pilot")]);
    let none = BTreeMap::new();
    let e = example("2026-12-01T00:00:00Z");

    // Named; selected; neither.
    let applied = applicable([&e], "invoice-auditor", &none, now, max);
    assert_eq!(
        applied,
        vec![AppliedException {
            name: "invoice-auditor-q4-pilot".into(),
            rules: vec!["temperature".into(), "budget".into()],
            expires_at: Time(at("2026-12-08T00:00:00Z")),
            requested_by: Some("alice".into()),
        }]
    );
    assert_eq!(applicable([&e], "ledger-bot", &pilot, now, max).len(), 1);
    assert!(applicable([&e], "ledger-bot", &none, now, max).is_empty());

    // Expired by the maximum since creation, whatever expiresAt says; at the instant itself too.
    let old = example("2026-11-20T00:00:00Z");
    assert!(applicable([&old], "invoice-auditor", &none, now, max).is_empty());
    let ends_now = example("2026-11-25T00:00:00Z");
    assert!(applicable([&ends_now], "invoice-auditor", &none, now, max).is_empty());
    assert_eq!(
        applicable(
            [&ends_now],
            "invoice-auditor",
            &none,
            at("2026-12-01T23:59:59Z"),
            max
        )
        .len(),
        1
    );

    // Not stamped, stamped with no one, or never created by the API server: not applied.
    let mut unstamped = example("2026-12-01T00:00:00Z");
    unstamped.spec.requested_by = None;
    let mut nobody = example("2026-12-01T00:00:00Z");
    nobody.spec.requested_by = Some(Requester::default());
    let mut uncreated = example("2026-12-01T00:00:00Z");
    uncreated.metadata.creation_timestamp = None;
    let mut deleting = example("2026-12-01T00:00:00Z");
    deleting.metadata.deletion_timestamp = Some(Time(now));
    for e in [&unstamped, &nobody, &uncreated, &deleting] {
        assert!(applicable([e], "invoice-auditor", &none, now, max).is_empty());
    }

    // Codes the CRD refuses are dropped; an exception left with none applies to nothing.
    let mut sneaky = example("2026-12-01T00:00:00Z");
    sneaky.spec.rules = vec![ACTOR_RULE.into(), "budget".into()];
    let applied = applicable([&sneaky], "invoice-auditor", &none, now, max);
    assert_eq!(applied[0].rules, ["budget"]);
    sneaky.spec.rules = vec![ACTOR_RULE.into(), Deny::NO_POLICY.into()];
    assert!(applicable([&sneaky], "invoice-auditor", &none, now, max).is_empty());

    // Sorted by name, whatever the order given.
    let b = named(example("2026-12-01T12:00:00Z"), "b-later");
    let a = named(example("2026-12-01T06:00:00Z"), "a-earlier");
    let applied = applicable([&b, &e, &a], "invoice-auditor", &none, now, max);
    let names: Vec<&str> = applied.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["a-earlier", "b-later", "invoice-auditor-q4-pilot"]);
    assert_eq!(next_expiry(&applied), Some(at("2026-12-08T00:00:00Z")));
    assert_eq!(next_expiry(&[]), None);
}

#[test]
fn an_empty_selector_waives_for_no_agent() {
    let now = at("2026-12-02T00:00:00Z");
    let mut e = example("2026-12-01T00:00:00Z");
    e.spec.agents.clear();
    e.spec.selector = Some(LabelSelector::default());
    let any = labels([("team", "finance-pilot")]);
    assert!(applicable([&e], "invoice-auditor", &any, now, DEFAULT_MAX_EXCEPTION).is_empty());
}

#[test]
fn waives_finds_the_first_exception_by_name_for_a_waivable_code() {
    let applied = vec![
        AppliedException {
            name: "a".into(),
            rules: vec!["budget".into()],
            expires_at: Time(at("2026-12-03T00:00:00Z")),
            requested_by: Some("alice".into()),
        },
        AppliedException {
            name: "b".into(),
            rules: vec!["budget".into(), "temperature".into(), ACTOR_RULE.into()],
            expires_at: Time(at("2026-12-02T00:00:00Z")),
            requested_by: Some("bob".into()),
        },
    ];
    assert_eq!(
        waives(&applied, "budget").map(|a| a.name.as_str()),
        Some("a")
    );
    assert_eq!(
        waives(&applied, "temperature").map(|a| a.name.as_str()),
        Some("b")
    );
    assert_eq!(waives(&applied, "runtime"), None);
    // Never the actor rule, even if an applied exception lists it.
    assert_eq!(waives(&applied, ACTOR_RULE), None);
    assert_eq!(waives(&[], "budget"), None);
    assert_eq!(next_expiry(&applied), Some(at("2026-12-02T00:00:00Z")));
}

#[test]
fn an_applied_exception_serializes_in_camel_case() {
    let applied = AppliedException {
        name: "x".into(),
        rules: vec!["budget".into()],
        expires_at: Time(at("2026-12-03T00:00:00Z")),
        requested_by: Some("alice".into()),
    };
    let json = serde_json::to_value(&applied).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "name": "x",
            "rules": ["budget"],
            "expiresAt": "2026-12-03T00:00:00Z",
            "requestedBy": "alice"
        })
    );
    assert_eq!(
        serde_json::from_value::<AppliedException>(json).unwrap(),
        applied
    );
}

#[test]
fn the_status_reports_the_covered_agents_the_expiry_and_ready() {
    let agent = |name: &str, team: Option<&str>| {
        let mut a = crate::Agent::new(name, crate::testing::governed_spec());
        a.metadata.labels = team.map(|t| labels([("team", t)]));
        a
    };
    let agents = [
        agent("zeta", Some("finance-pilot")),
        agent("invoice-auditor", None),
        agent("alpha", Some("finance-pilot")),
        agent("other", Some("sales")),
    ];
    let e = example("2026-12-01T00:00:00Z");
    let now = at("2026-12-02T00:00:00Z");
    let status = observe(
        &e,
        agents.iter().map(|a| &a.metadata),
        now,
        DEFAULT_MAX_EXCEPTION,
    );
    assert_eq!(status.agents, ["alpha", "invoice-auditor", "zeta"]);
    assert_eq!(status.agent_count, Some(3));
    assert_eq!(status.expires_at, Some(Time(at("2026-12-08T00:00:00Z"))));
    assert_eq!(status.observed_generation, Some(1));
    let ready = conditions::find(&status.conditions, conditions::READY).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", REASON_ACTIVE)
    );
    assert_eq!(ready.observed_generation, Some(1));

    // Later: expired; the transition time moves.
    let mut e2 = e.clone();
    e2.status = Some(status);
    let later = at("2026-12-09T00:00:00Z");
    let expired = observe(
        &e2,
        agents.iter().map(|a| &a.metadata),
        later,
        DEFAULT_MAX_EXCEPTION,
    );
    let ready = conditions::find(&expired.conditions, conditions::READY).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", REASON_EXPIRED)
    );
    assert_eq!(ready.last_transition_time, Time(later));

    // Not stamped: not ready.
    let mut unstamped = e.clone();
    unstamped.spec.requested_by = None;
    let status = observe(
        &unstamped,
        agents.iter().map(|a| &a.metadata),
        now,
        DEFAULT_MAX_EXCEPTION,
    );
    assert!(!conditions::is_true(&status.conditions, conditions::READY));
    assert_eq!(
        conditions::find(&status.conditions, conditions::READY).map(|c| c.reason.as_str()),
        Some(REASON_NOT_STAMPED)
    );
}

#[test]
fn the_status_lists_a_bounded_number_of_agents() {
    let mut e = example("2026-12-01T00:00:00Z");
    e.spec.agents.clear();
    let agents: Vec<crate::Agent> = (0..MAX_STATUS_AGENTS + 5)
        .map(|i| {
            let mut a =
                crate::Agent::new(&format!("agent-{i:04}"), crate::testing::governed_spec());
            a.metadata.labels = Some(labels([("team", "finance-pilot")]));
            a
        })
        .rev()
        .collect();
    let status = observe(
        &e,
        agents.iter().map(|a| &a.metadata),
        at("2026-12-02T00:00:00Z"),
        DEFAULT_MAX_EXCEPTION,
    );
    assert_eq!(status.agents.len(), MAX_STATUS_AGENTS);
    assert_eq!(status.agents[0], "agent-0000");
    assert_eq!(status.agent_count, Some((MAX_STATUS_AGENTS + 5) as i64));
}
