# OPA's run of the promotion policy's test table, policies/testdata/promotion_cases.yaml (which
# `opa test policies/` loads as data.testdata). The same table runs on regorus' Rego VM, what
# agentgov evaluates with, in crds/tests/rego_policy.rs; this module uses `with`, which the VM
# does not support, so only OPA runs it (`make policy-test`).
package agentgov.promotion_test

import rego.v1

import data.agentgov.promotion

table := data.testdata.promotion

# --- Building a case's input and limits (the conventions are in the table's header) -------------

# o without the keys in c[field] (none when c has no such field).
removed(o, c, field) := object.remove(o, object.get(c, field, []))

# o with the keys of c[field] replaced, not merged (none when c has no such field).
replaced(o, c, field) := overlay(o, object.get(c, field, {}))

overlay(o, patch) := object.union(object.remove(o, object.keys(patch)), patch)

case_input(c) := c.input if "input" in object.keys(c)

else := removed(replaced_namespace(replaced_actor(overlay(table.base, {"agent": case_agent(c)}), c), c), c, "input_remove")

case_agent(c) := overlay(table.base.agent, {"spec": spec}) if {
	base_spec := removed(table.base.agent.spec, c, "spec_remove")
	anatomy := replaced(removed(base_spec.anatomy, c, "anatomy_remove"), c, "anatomy")
	spec := replaced(overlay(base_spec, {"anatomy": anatomy}), c, "spec")
}

replaced_actor(i, c) := overlay(i, {"actor": c.actor}) if "actor" in object.keys(c)

else := i

replaced_namespace(i, c) := overlay(i, {"namespace": c.namespace}) if "namespace" in object.keys(c)

else := i

case_limits(c) := c.limits if "limits" in object.keys(c)

else := replaced(removed(table.limits, c, "limits_remove"), c, "limits_patch")

decision(c) := d if {
	d := promotion.decision with input as case_input(c) with data.agentgov.limits as case_limits(c)
}

# --- Matching a decision (see the table's header) ------------------------------------------------

# As many texts as patterns, each pattern part of a text and each text containing a pattern.
matches(got, want) if {
	count(got) == count(want)
	every w in want {
		some g in got
		contains(g, w)
	}
	every g in got {
		some w in want
		contains(g, w)
	}
}

problems(c) := {p |
	d := decision(c)
	some p in ["allow", "denies", "warnings", "unsorted", "deny shape"]
	wrong(p, d, c.expect)
}

wrong("allow", d, want) if d.allow != want.allow

# Expected denies are a map from code to message substrings.
wrong("denies", _, want) if not is_object(object.get(want, "denies", {}))

wrong("denies", d, want) if {
	want_denies := object.get(want, "denies", {})
	is_object(want_denies)
	codes := {x.code | some x in d.denies} | object.keys(want_denies)
	some code in codes
	not matches(messages(d, code), object.get(want_denies, code, []))
}

wrong("warnings", d, want) if not matches(d.warnings, object.get(want, "warnings", []))

# By message, then code.
wrong("unsorted", d, _) if {
	pairs := [[x.message, x.code] | some x in d.denies]
	pairs != sort(pairs)
}

wrong("unsorted", d, _) if d.warnings != sort(d.warnings)

# Each deny is exactly {"code": one of the shipped codes, "message": a string}.
wrong("deny shape", d, _) if {
	some x in d.denies
	not deny_shaped(x)
}

deny_codes := {"actor_unauthorized", "anatomy_incomplete", "containment", "capabilities", "temperature", "budget", "runtime", "namespace_budget"}

deny_shaped(x) if {
	is_object(x)
	object.keys(x) == {"code", "message"}
	x.code in deny_codes
	is_string(x.message)
}

# The messages of the decision's denies with this code.
messages(d, code) := [x.message | some x in d.denies; x.code == code]

failures contains sprintf("%s: %v (got %v)", [c.name, problems(c), decision(c)]) if {
	some c in table.cases
	count(problems(c)) > 0
}

# A case whose decision is undefined fails too.
undecided contains c.name if {
	some c in table.cases
	not decision(c)
}

# --- Tests ---------------------------------------------------------------------------------------

test_every_case_passes if {
	count(table.cases) >= 60
	print_failures
	count(failures) == 0
	count(undecided) == 0
}

print_failures if {
	every f in failures {
		print(f)
	}
	every u in undecided {
		print("undefined decision:", u)
	}
}

test_case_names_are_unique if {
	names := [c.name | some c in table.cases]
	count(names) == count({n | some n in names})
}
