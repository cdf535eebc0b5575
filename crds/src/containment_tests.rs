use super::*;
use crate::conditions::EXPIRED;
use crate::testing::{governed_spec, sandbox_spec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

fn status(governance: GovernanceStatus, expired: bool) -> AgentStatus {
    AgentStatus {
        governance_status: Some(governance),
        conditions: if expired {
            vec![Condition {
                type_: EXPIRED.into(),
                status: "True".into(),
                reason: "Expired".into(),
                message: String::new(),
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    jiff::Timestamp::UNIX_EPOCH,
                ),
                observed_generation: None,
            }]
        } else {
            Vec::new()
        },
        ..AgentStatus::default()
    }
}

fn open_spec() -> AgentSpec {
    let mut spec = governed_spec();
    spec.anatomy.containment.external_calls = true;
    spec
}

const AGENT: AgentRef<'static> = AgentRef {
    namespace: "team",
    name: "auditor",
    uid: "u-1",
};

#[test]
fn each_status_has_its_run_state() {
    use GovernanceStatus::*;
    let cases = [
        (sandbox_spec(), Sandbox, false, RunState::Contained),
        (
            sandbox_spec(),
            Sandbox,
            true,
            RunState::Quarantined(QuarantineReason::Expired),
        ),
        // A governed request awaiting approval stays in the sandbox tier.
        (open_spec(), Sandbox, false, RunState::Contained),
        (governed_spec(), GovernedValid, false, RunState::Contained),
        (open_spec(), GovernedValid, false, RunState::Open),
        (open_spec(), GovernedRestricted, false, RunState::Open),
        (
            open_spec(),
            GovernedInvalidated,
            false,
            RunState::Quarantined(QuarantineReason::Invalidated),
        ),
        (
            governed_spec(),
            GovernedInvalidated,
            false,
            RunState::Quarantined(QuarantineReason::Invalidated),
        ),
    ];
    for (spec, governance, expired, want) in cases {
        let s = status(governance, expired);
        assert_eq!(
            RunState::of(&spec, Some(&s)),
            Some(want),
            "{governance:?} expired={expired} externalCalls={}",
            spec.anatomy.containment.external_calls
        );
    }
    assert_eq!(RunState::of(&sandbox_spec(), None), None, "not judged yet");
    assert_eq!(
        RunState::of(&sandbox_spec(), Some(&AgentStatus::default())),
        None
    );
}

#[test]
fn a_contained_agent_reaches_dns_and_the_allow_list_only() {
    let egress = [
        EgressDestination {
            cidr: "10.0.12.7/32".into(),
            ports: vec![443],
        },
        EgressDestination {
            cidr: "fd00::/64".into(),
            ports: vec![],
        },
    ];
    let policy = network_policy(&AGENT, RunState::Contained, &egress).expect("a policy");
    let json = serde_json::to_value(&policy).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {
                "name": "agentgov-auditor",
                "namespace": "team",
                "labels": {
                    "agentgov.dev/agent": "auditor",
                    "agentgov.dev/network": "contained",
                    "app.kubernetes.io/managed-by": "agentgov-operator"
                },
                "ownerReferences": [{
                    "apiVersion": "agentgov.dev/v1alpha1", "kind": "Agent",
                    "name": "auditor", "uid": "u-1", "controller": true
                }]
            },
            "spec": {
                "podSelector": {"matchLabels": {"agentgov.dev/agent": "auditor"}},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
                    },
                    {"to": [{"ipBlock": {"cidr": "10.0.12.7/32"}}], "ports": [{"protocol": "TCP", "port": 443}]},
                    {"to": [{"ipBlock": {"cidr": "fd00::/64"}}]}
                ]
            }
        })
    );
}

#[test]
fn a_quarantined_agent_is_cut_off_both_ways() {
    for reason in [QuarantineReason::Invalidated, QuarantineReason::Expired] {
        let policy = network_policy(
            &AGENT,
            RunState::Quarantined(reason),
            &[EgressDestination {
                cidr: "10.0.12.7/32".into(),
                ports: vec![],
            }],
        )
        .expect("a policy");
        let spec = policy.spec.expect("spec");
        assert_eq!(
            spec.policy_types,
            Some(vec!["Ingress".to_string(), "Egress".to_string()])
        );
        assert_eq!(spec.egress, None, "no egress rule: nothing allowed out");
        assert_eq!(spec.ingress, None, "no ingress rule: nothing allowed in");
        assert_eq!(
            policy.metadata.labels.unwrap()[NETWORK_STATE_LABEL],
            "quarantined"
        );
    }
}

#[test]
fn open_agents_and_unlabellable_names_get_no_policy() {
    assert!(network_policy(&AGENT, RunState::Open, &[]).is_none());
    let long = "a".repeat(64);
    let agent = AgentRef {
        name: &long,
        ..AGENT
    };
    assert!(network_policy(&agent, RunState::Contained, &[]).is_none());
    let longest = "a".repeat(63);
    let agent = AgentRef {
        name: &longest,
        ..AGENT
    };
    assert!(network_policy(&agent, RunState::Contained, &[]).is_some());
}
