use super::*;
use crate::agent::AgentSpec;
use crate::policy::default_bundle_spec;
use crate::policy_bundle::{ApprovalsData, EgressDestination, QuarantineAction};

fn bundle_with(max_budget: f64, version: &str) -> PolicyBundleSpec {
    let mut spec = default_bundle_spec();
    spec.version = version.into();
    spec.data.max_monthly_budget_usd = max_budget;
    spec
}

fn layer(name: &str, spec: &PolicyBundleSpec) -> Layer {
    Layer::compile(name, spec).expect("compiles")
}

fn governed_agent(budget: f64) -> AgentSpec {
    let mut spec = crate::testing::governed_spec();
    if let Some(economics) = spec.anatomy.economics.as_mut() {
        economics.monthly_budget_usd = budget;
    }
    spec
}

fn judge(policy: &EffectivePolicy, budget: f64) -> PolicyDecision {
    let spec = governed_agent(budget);
    policy.judge_spec(AgentInput {
        namespace: "team",
        name: "a",
        spec: &spec,
    })
}

#[test]
fn one_layer_keeps_its_own_hash_and_two_hash_together() {
    let floor = layer("default", &bundle_with(1000.0, "floor-1"));
    let ns = layer("default", &bundle_with(500.0, "ns-1"));
    let alone = EffectivePolicy::new(None, Some(ns.clone()))
        .unwrap()
        .unwrap();
    assert_eq!(alone.hash(), ns.hash(), "no floor: hashes as it always did");
    let floor_only = EffectivePolicy::new(Some(floor.clone()), None)
        .unwrap()
        .unwrap();
    assert_eq!(floor_only.hash(), floor.hash());
    let both = EffectivePolicy::new(Some(floor.clone()), Some(ns.clone()))
        .unwrap()
        .unwrap();
    assert_ne!(both.hash(), floor.hash());
    assert_ne!(both.hash(), ns.hash());
    // Canonical: the hash of {"cluster": <floor>, "namespace": <ns>}.
    let expected = sha256_hex(
        format!(
            r#"{{"cluster":"{}","namespace":"{}"}}"#,
            floor.hash(),
            ns.hash()
        )
        .as_bytes(),
    );
    assert_eq!(both.hash(), expected);
    // Either layer changing changes it.
    let ns2 = layer("default", &bundle_with(400.0, "ns-2"));
    let both2 = EffectivePolicy::new(Some(floor), Some(ns2))
        .unwrap()
        .unwrap();
    assert_ne!(both.hash(), both2.hash());
    assert!(EffectivePolicy::new(None, None).unwrap().is_none());
    assert_eq!(both.name(), "ClusterPolicyBundle/default+default");
    assert_eq!(both.version(), "floor-1+ns-1");
}

#[test]
fn an_agent_passes_only_if_every_layer_allows_and_denies_name_their_bundle() {
    let floor = layer("default", &bundle_with(1000.0, "floor"));
    let ns = layer("default", &bundle_with(500.0, "ns"));
    let both = EffectivePolicy::new(Some(floor.clone()), Some(ns))
        .unwrap()
        .unwrap();
    assert!(judge(&both, 400.0).allow);
    let over_ns = judge(&both, 700.0);
    assert!(!over_ns.allow);
    assert_eq!(over_ns.codes(), vec!["budget"]);
    assert!(
        over_ns.denies[0]
            .message
            .starts_with("[PolicyBundle/default] "),
        "{:?}",
        over_ns.denies
    );
    let over_both = judge(&both, 1500.0);
    assert_eq!(over_both.codes(), vec!["budget", "budget"]);
    assert!(
        over_both.denies[0]
            .message
            .starts_with("[ClusterPolicyBundle/default] ")
    );
    // A floor alone: untagged, as a single bundle always was.
    let floor_only = EffectivePolicy::new(Some(floor), None).unwrap().unwrap();
    let denied = judge(&floor_only, 1500.0);
    assert!(!denied.denies[0].message.starts_with('['));
}

#[test]
fn each_layer_applies_its_own_enforcement_action() {
    let floor = layer("default", &bundle_with(1000.0, "floor"));
    let mut audit = bundle_with(500.0, "ns");
    audit.enforcement_action = crate::policy_bundle::EnforcementAction::Audit;
    let both = EffectivePolicy::new(Some(floor), Some(layer("default", &audit)))
        .unwrap()
        .unwrap();
    let decision = judge(&both, 700.0);
    assert!(decision.allow, "the namespace's audit bundle only reports");
    assert_eq!(decision.audit.len(), 1);
    assert!(!judge(&both, 1500.0).allow, "the floor enforces");
}

#[test]
fn a_namespace_may_lower_limits_never_raise_them() {
    let mut floor = PolicyData {
        max_monthly_budget_usd: 800.0,
        max_namespace_monthly_budget_usd: Some(5000.0),
        approvals: Some(ApprovalsData { required: 2 }),
        ..PolicyData::default()
    };
    floor.temperature_limits.analysis = 0.5;
    let mut ns = floor.clone();
    assert!(above_floor(&ns, &floor).is_empty());
    ns.max_monthly_budget_usd = 300.0;
    ns.temperature_limits.analysis = 0.4;
    ns.max_namespace_monthly_budget_usd = Some(1000.0);
    assert!(above_floor(&ns, &floor).is_empty(), "lower is fine");
    ns.max_monthly_budget_usd = 1000.0;
    ns.temperature_limits.analysis = 0.9;
    ns.max_namespace_monthly_budget_usd = None;
    ns.approvals = Some(ApprovalsData { required: 1 });
    let found = above_floor(&ns, &floor);
    let fields: Vec<&str> = found.iter().map(|f| f.field).collect();
    assert_eq!(
        fields,
        vec![
            "maxMonthlyBudgetUsd",
            "maxNamespaceMonthlyBudgetUsd",
            "temperatureLimits.analysis",
            "approvals.required (fewer approvers than the floor)"
        ]
    );
    assert_eq!(
        found[0].to_string(),
        "spec.data.maxMonthlyBudgetUsd is 1000 but the cluster floor (ClusterPolicyBundle) allows at most 800"
    );
}

#[test]
fn effective_data_is_the_stricter_of_each_limit() {
    let gateway = EgressDestination {
        cidr: "10.0.0.1/32".into(),
        ports: vec![443],
    };
    let other = EgressDestination {
        cidr: "10.0.0.2/32".into(),
        ports: vec![],
    };
    let floor = PolicyData {
        max_monthly_budget_usd: 800.0,
        approvals: Some(ApprovalsData { required: 2 }),
        runtime: Some(RuntimeData {
            require_images: true,
            egress: vec![gateway.clone()],
            quarantine: None,
        }),
        ..PolicyData::default()
    };
    let ns = PolicyData {
        max_monthly_budget_usd: 900.0,
        max_namespace_monthly_budget_usd: Some(2000.0),
        promoter_roles: vec!["agent_admin".into(), "team_lead".into()],
        runtime: Some(RuntimeData {
            require_images: false,
            egress: vec![gateway.clone(), other],
            quarantine: Some(QuarantineAction::Isolate),
        }),
        ..PolicyData::default()
    };
    let data = ns.within(&floor);
    assert_eq!(data.max_monthly_budget_usd, 800.0);
    assert_eq!(data.max_namespace_monthly_budget_usd, Some(2000.0));
    assert_eq!(data.approvals_required(), 2);
    assert_eq!(data.promoter_roles, vec!["agent_admin".to_string()]);
    let runtime = data.runtime.unwrap();
    assert!(runtime.require_images);
    assert_eq!(runtime.egress, vec![gateway]);
    assert_eq!(runtime.quarantine, Some(QuarantineAction::Isolate));
}

#[test]
fn the_pod_security_level_is_the_strictest_layers() {
    use crate::policy_bundle::PodSecurityData;
    let mut floor = bundle_with(1000.0, "floor");
    floor.data.pod_security = Some(PodSecurityData {
        governed: PodSecurityLevel::Restricted,
        role_classes: None,
    });
    let both = EffectivePolicy::new(
        Some(layer("default", &floor)),
        Some(layer("default", &bundle_with(500.0, "ns"))),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        both.pod_security_level(AgentMode::Governed, RoleClass::Analysis),
        PodSecurityLevel::Restricted
    );
}
