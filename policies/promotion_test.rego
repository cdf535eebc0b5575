# Unit tests of promotion.rego: the allow and the deny side of every rule, and the warnings.
# Run by `cargo test -p agentgov-api --test rego_policy` (regorus); written to OPA semantics, so
# `opa test policies/` should run them too.
# Every test_ rule must evaluate to true; an undefined rule is a failure.
package agentgov.promotion_test

import rego.v1

import data.agentgov.promotion

# --- Fixtures ------------------------------------------------------------------------------------

seed_limits := {
	"maxMonthlyBudgetUsd": 1000,
	"temperatureLimits": {"compliance": 0.3, "analysis": 0.7, "ideation": 1.0},
	"promoterRoles": ["agent_admin", "policy_admin"],
}

admin := {"username": "alice", "groups": [], "roles": [], "authorizedToPromote": true}

nobody := {"username": "mallory", "groups": ["system:authenticated"], "roles": ["viewer"], "authorizedToPromote": false}

complete := {
	"reasoning": {"model": "gpt-4o", "temperature": 0.2},
	"inputs": ["erp-invoices"],
	"actions": ["flag-mismatch"],
	"memory": {"kind": "persistent", "retentionDays": 90},
	"capabilities": ["document-comparison"],
	"containment": {"externalCalls": false, "persistentWrites": false},
	"economics": {"monthlyBudgetUsd": 250},
}

request(role, anatomy, actor) := {
	"agent": {
		"namespace": "finance",
		"name": "invoice-auditor",
		"spec": {"version": "1.0.0", "roleClass": role, "mode": "governed", "anatomy": anatomy},
	},
	"actor": actor,
}

# The decision for a request under the seed's limits, and under custom limits.
decide(req) := d if {
	d := promotion.decision with input as req with data.agentgov.limits as seed_limits
}

decide_with(req, lim) := d if {
	d := promotion.decision with input as req with data.agentgov.limits as lim
}

# Top-level fields of `base` replaced by those of `patch` (object.union would merge them).
overlay(base, patch) := object.union(object.remove(base, patch), patch)

# The decision for the complete anatomy with some fields replaced, for an admin.
patched(role, patch) := decide(request(role, overlay(complete, patch), admin))

without(field) := decide(request("compliance", object.remove(complete, [field]), admin))

temperature(role, t) := patched(role, {"reasoning": {"model": "gpt-4o", "temperature": t}})

budget(b) := patched("compliance", {"economics": {"monthlyBudgetUsd": b}})

denied_for(d, text) if {
	d.allow == false
	some msg in d.denies
	contains(msg, text)
}

warned(d, text) if {
	some msg in d.warnings
	contains(msg, text)
}

clean(d) if {
	d.allow == true
	d.denies == []
	d.warnings == []
}

# --- The decision --------------------------------------------------------------------------------

test_decision_allows_complete_agent if {
	decide(request("compliance", complete, admin)) == {"allow": true, "denies": [], "warnings": []}
}

test_decision_lists_every_deny_sorted if {
	d := decide(request("compliance", {"containment": {"externalCalls": true}}, nobody))
	d.allow == false
	d.denies == sort(d.denies)
	count(d.denies) == 7 # actor, 4 anatomy fields, externalCalls, capabilities
}

test_decision_warnings_do_not_deny if {
	d := without("economics")
	d.allow == true
	d.denies == []
	count(d.warnings) == 1
}

# --- Rule 1: the actor -------------------------------------------------------------------------

test_actor_authorized_by_access_review if {
	clean(decide(request("compliance", complete, admin)))
}

test_actor_authorized_by_role if {
	actor := {"username": "bob", "roles": ["agent_admin"], "authorizedToPromote": false}
	clean(decide(request("compliance", complete, actor)))
}

test_actor_authorized_by_group if {
	actor := {"username": "carol", "groups": ["dev", "policy_admin"]}
	clean(decide(request("compliance", complete, actor)))
}

test_actor_unauthorized_denied if {
	d := decide(request("compliance", complete, nobody))
	denied_for(d, "mallory may not promote agents")
	denied_for(d, "agent_admin, policy_admin")
	count(d.denies) == 1
}

test_actor_without_username_denied if {
	d := decide(request("compliance", complete, {}))
	denied_for(d, "an unknown actor may not promote agents")
}

test_actor_roles_come_from_data if {
	lim := object.union(seed_limits, {"promoterRoles": ["release_manager"]})
	old := {"username": "bob", "roles": ["agent_admin"]}
	new := {"username": "dan", "groups": ["release_manager"]}
	denied_for(decide_with(request("compliance", complete, old), lim), "bob may not promote")
	clean(decide_with(request("compliance", complete, new), lim))
}

# --- Rule 2: the minimum viable anatomy --------------------------------------------------------

test_anatomy_missing_reasoning_denied if {
	denied_for(without("reasoning"), "add anatomy.reasoning")
}

test_anatomy_missing_inputs_denied if {
	denied_for(without("inputs"), "add anatomy.inputs")
}

test_anatomy_missing_actions_denied if {
	denied_for(without("actions"), "add anatomy.actions")
}

test_anatomy_missing_memory_denied if {
	d := without("memory")
	denied_for(d, "add anatomy.memory")
	count(d.denies) == 1
}

test_anatomy_empty_fields_denied if {
	d := patched("compliance", {"reasoning": {}, "inputs": [], "actions": [], "memory": {}})
	denied_for(d, "add anatomy.reasoning")
	denied_for(d, "add anatomy.inputs")
	denied_for(d, "add anatomy.actions")
	denied_for(d, "add anatomy.memory")
	count(d.denies) == 4
}

test_anatomy_without_anatomy_names_every_field if {
	d := decide({"agent": {"spec": {"roleClass": "analysis"}}, "actor": admin})
	every field in ["reasoning", "inputs", "actions", "memory"] {
		denied_for(d, sprintf("add anatomy.%s ", [field]))
	}
}

# --- Rule 3: containment -----------------------------------------------------------------------

test_containment_external_calls_denied if {
	d := patched("compliance", {"containment": {"externalCalls": true, "persistentWrites": false}})
	denied_for(d, "anatomy.containment.externalCalls is true")
	count(d.denies) == 1
}

test_containment_persistent_writes_denied if {
	d := patched("compliance", {"containment": {"externalCalls": false, "persistentWrites": true}})
	denied_for(d, "anatomy.containment.persistentWrites is true")
	count(d.denies) == 1
}

test_containment_absent_allowed if {
	clean(without("containment"))
}

# --- Rule 4: capabilities ----------------------------------------------------------------------

test_capabilities_missing_denied if {
	denied_for(without("capabilities"), "anatomy.capabilities is empty")
}

test_capabilities_empty_denied if {
	denied_for(patched("compliance", {"capabilities": []}), "anatomy.capabilities is empty")
}

test_capabilities_one_allowed if {
	clean(patched("compliance", {"capabilities": ["ticketing"]}))
}

# --- Rule 5: temperature per role class (at the limit is allowed) ------------------------------

test_temperature_compliance_at_limit_allowed if {
	clean(temperature("compliance", 0.3))
}

test_temperature_compliance_above_limit_denied if {
	d := temperature("compliance", 0.31)
	denied_for(d, "temperature 0.31 is above the limit 0.3 for role class compliance")
	count(d.denies) == 1
}

test_temperature_analysis_at_limit_allowed if {
	clean(temperature("analysis", 0.7))
}

test_temperature_analysis_above_limit_denied if {
	denied_for(temperature("analysis", 0.71), "above the limit 0.7 for role class analysis")
}

test_temperature_ideation_at_limit_allowed if {
	clean(temperature("ideation", 1.0))
}

test_temperature_ideation_above_limit_denied if {
	denied_for(temperature("ideation", 1.01), "above the limit 1 for role class ideation")
}

test_temperature_limits_come_from_data if {
	lim := object.union(seed_limits, {"temperatureLimits": {"compliance": 0.5}})
	req := request("compliance", object.union(complete, {"reasoning": {"temperature": 0.45}}), admin)
	clean(decide_with(req, lim))
	denied_for(decide(req), "above the limit 0.3")
}

test_temperature_limit_missing_for_role_denied if {
	lim := overlay(seed_limits, {"temperatureLimits": {"compliance": 0.3, "analysis": 0.7}})
	d := decide_with(request("ideation", complete, admin), lim)
	denied_for(d, "no temperature limit is set for role class ideation")
}

# --- Rule 6: budget (at the limit is allowed) --------------------------------------------------

test_budget_at_limit_allowed if {
	d := budget(1000)
	d.allow == true
	d.denies == []
}

test_budget_above_limit_denied if {
	d := budget(1000.01)
	denied_for(d, "monthlyBudgetUsd 1000.01 is above the org limit of 1000")
	count(d.denies) == 1
}

test_budget_limit_comes_from_data if {
	lim := object.union(seed_limits, {"maxMonthlyBudgetUsd": 200})
	d := decide_with(request("compliance", complete, admin), lim)
	denied_for(d, "monthlyBudgetUsd 250 is above the org limit of 200")
}

# --- Warnings: allowed, but restricted ---------------------------------------------------------

test_warning_no_budget if {
	d := without("economics")
	d.allow == true
	warned(d, "no monthly budget is declared")
}

test_warning_budget_above_80_percent if {
	d := budget(801)
	d.allow == true
	warned(d, "monthly budget 801 is above 80% of the org limit 1000")
	count(d.warnings) == 1
}

test_warning_budget_at_limit if {
	warned(budget(1000), "above 80% of the org limit")
}

test_no_warning_budget_at_80_percent if {
	clean(budget(800))
}

test_no_budget_warning_when_over_limit if {
	# Over the limit is a deny, not also a warning.
	budget(1001).warnings == []
}

test_warning_persistent_memory_without_retention if {
	d := patched("compliance", {"memory": {"kind": "persistent"}})
	d.allow == true
	warned(d, "persistent memory has no retentionDays")
	count(d.warnings) == 1
}

test_no_warning_persistent_memory_with_retention if {
	clean(patched("compliance", {"memory": {"kind": "persistent", "retentionDays": 30}}))
}

test_no_warning_session_memory_without_retention if {
	clean(patched("compliance", {"memory": {"kind": "session"}}))
}
