# Tests of the shipped promotion policy, in the form `kubectl agentgov policy test` and
# `opa test` run: every rule named test_* must hold. Run them against the default bundle, whose
# data (the limits) the policy reads as data.agentgov.limits:
#
#   kubectl agentgov policy test examples/policybundle-default.yaml examples/policy/
#
# Copy this file beside your own bundle and change the limits it expects.
package agentgov.promotion_examples_test

import rego.v1

import data.agentgov.promotion

base_spec := {
	"version": "1.0.0",
	"roleClass": "compliance",
	"anatomy": {
		"reasoning": {"model": "gpt-4o", "temperature": 0.2},
		"inputs": ["erp-invoices"],
		"actions": ["flag-mismatch"],
		"memory": {"kind": "session"},
		"capabilities": ["document-comparison"],
		"economics": {"monthlyBudgetUsd": 250},
	},
}

promoter := {"username": "alice", "groups": [], "roles": [], "authorizedToPromote": true}

request(spec) := {"agent": {"namespace": "team-a", "name": "auditor", "spec": spec}, "actor": promoter}

# The base spec with anatomy.<field> merged with value.
with_anatomy(field, value) := object.union(base_spec, {"anatomy": {field: value}})

codes(d) := [deny.code | some deny in d.denies]

test_a_complete_compliance_agent_is_allowed if {
	d := promotion.decision with input as request(base_spec)
	d.allow
	d.denies == []
	d.warnings == []
}

test_a_compliance_agent_above_its_temperature_limit_is_denied if {
	d := promotion.decision with input as request(with_anatomy("reasoning", {"temperature": 0.9}))
	not d.allow
	codes(d) == ["temperature"]
}

test_a_budget_above_80_percent_of_the_limit_is_restricted if {
	d := promotion.decision with input as request(with_anatomy("economics", {"monthlyBudgetUsd": 900}))
	d.allow
	count(d.warnings) == 1
}

test_a_budget_above_the_limit_is_denied if {
	d := promotion.decision with input as request(with_anatomy("economics", {"monthlyBudgetUsd": 1500}))
	not d.allow
	codes(d) == ["budget"]
}

test_an_actor_without_the_promote_verb_is_denied if {
	actor := {"username": "mallory", "groups": [], "roles": [], "authorizedToPromote": false}
	d := promotion.decision with input as object.union(request(base_spec), {"actor": actor})
	not d.allow
	codes(d) == ["actor_unauthorized"]
}
