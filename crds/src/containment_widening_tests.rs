use super::*;
use crate::containment::QuarantineReason;
use serde_json::json;

const CONTAINED: RunState = RunState::Contained;
const QUARANTINED: RunState = RunState::Quarantined(QuarantineReason::Expired);

fn spec(value: serde_json::Value) -> NetworkPolicySpec {
    serde_json::from_value(value).expect("a NetworkPolicy spec")
}

fn allow_all_egress(selector: serde_json::Value) -> NetworkPolicySpec {
    spec(json!({"podSelector": selector, "policyTypes": ["Egress"], "egress": [{}]}))
}

fn bundle_egress() -> Vec<EgressDestination> {
    serde_json::from_value(json!([{"cidr": "10.0.12.7/32", "ports": [443]}])).unwrap()
}

#[test]
fn a_selector_may_select_an_agent_unless_it_rules_out_the_agent_label() {
    for (selector, selects) in [
        (json!({}), true),
        (json!({"matchLabels": {"app": "web"}}), true),
        (
            json!({"matchLabels": {"agentgov.dev/agent": "auditor"}}),
            true,
        ),
        (
            json!({"matchLabels": {"agentgov.dev/agent": "other"}}),
            false,
        ),
        (
            json!({"matchExpressions": [{"key": "agentgov.dev/agent", "operator": "Exists"}]}),
            true,
        ),
        (
            json!({"matchExpressions": [{"key": "agentgov.dev/agent", "operator": "DoesNotExist"}]}),
            false,
        ),
        (
            json!({"matchExpressions": [{"key": "agentgov.dev/agent", "operator": "In", "values": ["a", "auditor"]}]}),
            true,
        ),
        (
            json!({"matchExpressions": [{"key": "agentgov.dev/agent", "operator": "In", "values": ["a"]}]}),
            false,
        ),
        (
            json!({"matchExpressions": [{"key": "agentgov.dev/agent", "operator": "NotIn", "values": ["auditor"]}]}),
            false,
        ),
        (
            json!({"matchExpressions": [{"key": "agentgov.dev/agent", "operator": "NotIn", "values": ["a"]}]}),
            true,
        ),
        (
            json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}),
            true,
        ),
    ] {
        let policy = allow_all_egress(selector.clone());
        assert_eq!(
            widening(&policy, "auditor", CONTAINED, &[]),
            selects.then_some(Widening::Egress),
            "{selector}"
        );
    }
    let mut no_selector = allow_all_egress(json!({}));
    no_selector.pod_selector = None;
    assert_eq!(
        widening(&no_selector, "auditor", CONTAINED, &[]),
        Some(Widening::Egress)
    );
}

#[test]
fn a_contained_agent_is_widened_by_egress_beyond_dns_and_the_bundles_destinations() {
    let egress = bundle_egress();
    let with_rules = |rules: serde_json::Value| {
        spec(json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": rules}))
    };
    // What the agent's own policy allows already: the cluster DNS, in any of its usual
    // spellings, and the bundle's destinations.
    for rules in [
        json!([]),
        json!([{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]),
        json!([{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                "ports": [{"protocol": "UDP", "port": 53}]}]),
        json!([{"to": [{"ipBlock": {"cidr": "10.0.12.7/32"}}], "ports": [{"protocol": "TCP", "port": 443}]}]),
    ] {
        assert_eq!(
            widening(&with_rules(rules.clone()), "auditor", CONTAINED, &egress),
            None,
            "{rules}"
        );
    }
    // Anything more.
    for rules in [
        json!([{}]),
        json!([{"ports": [{"protocol": "UDP", "port": 53}]}]),
        json!([{"to": [{"namespaceSelector": {}}], "ports": [{"protocol": "UDP", "port": 53}]}]),
        json!([{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                "ports": [{"protocol": "TCP", "port": 53, "endPort": 80}]}]),
        json!([{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}]}]),
        json!([{"to": [{"ipBlock": {"cidr": "10.0.12.7/32"}}], "ports": [{"protocol": "TCP", "port": 80}]}]),
        json!([{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]),
    ] {
        assert_eq!(
            widening(&with_rules(rules.clone()), "auditor", CONTAINED, &egress),
            Some(Widening::Egress),
            "{rules}"
        );
    }
    // Ingress is not limited for a contained agent: allowing it widens nothing.
    let ingress = spec(json!({"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]}));
    assert_eq!(widening(&ingress, "auditor", CONTAINED, &egress), None);
}

#[test]
fn a_quarantined_agent_is_widened_by_any_traffic_allowed() {
    let dns = json!([{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                      "ports": [{"protocol": "UDP", "port": 53}]}]);
    let egress = spec(json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": dns}));
    assert_eq!(
        widening(&egress, "auditor", QUARANTINED, &[]),
        Some(Widening::Egress)
    );
    let ingress = spec(json!({"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]}));
    assert_eq!(
        widening(&ingress, "auditor", QUARANTINED, &[]),
        Some(Widening::Ingress)
    );
    // A default-deny policy allows nothing.
    let deny = spec(json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}));
    assert_eq!(widening(&deny, "auditor", QUARANTINED, &[]), None);
    assert_eq!(widening(&deny, "auditor", CONTAINED, &[]), None);
}

#[test]
fn rules_count_only_in_the_directions_the_policy_limits() {
    // Egress rules under policyTypes [Ingress] are ignored by the network.
    let ignored = spec(json!({"podSelector": {}, "policyTypes": ["Ingress"], "egress": [{}]}));
    assert_eq!(widening(&ignored, "auditor", CONTAINED, &[]), None);
    // Without policyTypes: egress when it has egress rules, ingress always.
    let untyped = spec(json!({"podSelector": {}, "egress": [{}]}));
    assert_eq!(
        widening(&untyped, "auditor", CONTAINED, &[]),
        Some(Widening::Egress)
    );
    let untyped_ingress = spec(json!({"podSelector": {}, "ingress": [{}]}));
    assert_eq!(
        widening(&untyped_ingress, "auditor", QUARANTINED, &[]),
        Some(Widening::Ingress)
    );
}

#[test]
fn an_open_agent_has_nothing_to_widen() {
    assert_eq!(
        widening(&allow_all_egress(json!({})), "auditor", RunState::Open, &[]),
        None
    );
}
