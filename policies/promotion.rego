# The promotion policy: may this agent leave the sandbox for the governed tier?
#
# Input:  {"agent": {"namespace", "name", "spec"}, "actor": {"username", "groups", "roles", "authorizedToPromote"},
#          "namespace": {"allocatedMonthlyBudgetUsd"} (only when a promotion is asked for)}
# Data:   data.agentgov.limits = the PolicyBundle's spec.data
#         (maxMonthlyBudgetUsd, maxNamespaceMonthlyBudgetUsd, temperatureLimits, promoterRoles,
#         runtime, extra)
# Output: data.agentgov.promotion.decision = {"allow": bool, "denies": [deny], "warnings": [string]}
#         deny = {"code": string, "message": string}: the code names the rule the deny comes
#         from, one of actor_unauthorized, anatomy_incomplete, containment, capabilities,
#         temperature, budget, runtime, namespace_budget (the operator's promotion_denies_total{reason} label;
#         crds/src/policy.rs DENY_CODES lists them), the message is a sentence. Denies are sorted
#         by message, then code; warnings by text.
#
# Fail closed: each seed rule is an `ok_<rule>` that is true only when the rule positively holds
# for well-typed input and data, and `allow` is their conjunction. A missing, null or wrong-typed
# field (of the input or of the policy data) leaves its ok_ rule false, so it denies, and every
# ok_ rule that is not true adds a deny (its rule's code and a sentence a user can act on,
# naming what is wrong).
# Limits come from data, so a cluster admin changes them without touching this file.
#
# Written to decide the same on OPA and on regorus' Rego VM (what agentgov runs), which
# crds/tests/opa_differential.rs checks. Where the two differ, this file does not go:
#   - the VM runs a rule body on past `x := <undefined>` (OPA stops there), so every value is
#     read with object.get and a default and type-checked (is_object, is_array, is_string,
#     is_number) before use, and no built-in sees a wrong type (OPA makes that undefined,
#     regorus fails the evaluation);
#   - Go and Rust print some floats differently, so numbers are printed with `show`;
#   - OPA computes with 64-bit big floats, regorus with f64, so arithmetic is only where both
#     are exact (`budget_line`);
#   - the order of denies is built from `sort` of arrays of strings ([message, code]), which
#     both engines order element by element, byte by byte (`sorted_denies`).
# Tests: policies/testdata/promotion_cases.yaml, run on the VM by crds/tests/rego_policy.rs and
# on OPA by promotion_test.rego (`make policy-test`).
package agentgov.promotion

import rego.v1

# --- Reading input and data ------------------------------------------------------------------

default limits := null

limits := data.agentgov.limits

# o[k] when o is an object holding k, else null (absent and null read alike).
get(o, k) := object.get(o, k, null) if is_object(o)

else := null

spec := get(get(input, "agent"), "spec")

anatomy := get(spec, "anatomy")

nonempty_string(x) if {
	is_string(x)
	x != ""
}

# A non-empty list of non-empty strings (anatomy.inputs, actions, capabilities).
name_list(x) if {
	is_array(x)
	count(x) > 0
	every s in x {
		nonempty_string(s)
	}
}

string_list(x) if {
	is_array(x)
	every s in x {
		is_string(s)
	}
}

# Not given at all: absent, null, or an empty string, list or object.
empty(x) if x == null

empty(x) if x == ""

empty(x) if x == []

empty(x) if x == {}

# A number as text, the same on every engine: Go (OPA) prints floats of 1e6 or more and below
# 1e-4 in exponent form and Rust (regorus) does not, so those are printed as whole numbers: in
# full when they are whole, as "just over" their whole part when they are positive, and in words
# otherwise (format_int and floor agree on both engines below 2^53).
show(n) := sprintf("%v", [n]) if {
	n == 0
} else := sprintf("%v", [n]) if {
	n >= 0.0001
	n < 1000000
} else := sprintf("%v", [n]) if {
	n <= -0.0001
	n > -1000000
} else := format_int(n, 10) if {
	n > -9007199254740992
	n < 9007199254740992
	floor(n) == n
} else := sprintf("just over %s", [format_int(n, 10)]) if {
	n > 0
	n < 9007199254740992
} else := "(a number too large or too small to print)"

# --- Rule 1: the actor is authorized (the seed's agent_admin or policy_admin) -------------------

# The actor is an approver (an AgentPromotion's requester, as the API server authenticated them).
# authorizedToPromote is a SubjectAccessReview for the verb "promote" on the agent, which the
# ClusterRoles agentgov-agent-admin and agentgov-policy-admin grant: it stands for the seed's roles
# agent_admin and policy_admin. The actor holds a promoter role when one of those (through the
# access review), of its roles or of its groups is in data.promoterRoles; so a bundle can narrow
# promotion to groups of its own (promoterRoles: [release-managers]), and an empty list lets no one.
actor := get(input, "actor")

# The roles the access review stands for.
seed_roles := ["agent_admin", "policy_admin"]

promoter_roles := get(limits, "promoterRoles")

actor_name := name if {
	name := get(actor, "username")
	nonempty_string(name)
} else := "an unknown actor"

# The actor's groups or roles: absent or null is none; anything but a list of strings is
# malformed (and denies).
actor_list_ok(field) if get(actor, field) == null

actor_list_ok(field) if string_list(get(actor, field))

actor_list(field) := list if {
	list := get(actor, field)
	string_list(list)
} else := []

actor_flag_ok if get(actor, "authorizedToPromote") == null

actor_flag_ok if is_boolean(get(actor, "authorizedToPromote"))

actor_well_formed if {
	is_object(actor)
	actor_list_ok("groups")
	actor_list_ok("roles")
	actor_flag_ok
}

actor_holds_role if {
	get(actor, "authorizedToPromote") == true
	some role in seed_roles
	promoter_role(role)
}

actor_holds_role if {
	some role in actor_list("roles")
	promoter_role(role)
}

actor_holds_role if {
	some group in actor_list("groups")
	promoter_role(group)
}

promoter_role(name) if {
	string_list(promoter_roles)
	name in promoter_roles
}

default ok_actor := false

ok_actor if {
	string_list(promoter_roles)
	actor_well_formed
	actor_holds_role
}

roles_text := concat(", ", promoter_roles) if {
	string_list(promoter_roles)
	count(promoter_roles) > 0
} else := "(none are configured)"

actor_problem := "an unknown actor may not promote agents: the request names no actor (input.actor must be an object with username, groups, roles and authorizedToPromote)" if {
	not is_object(actor)
} else := sprintf("%s may not promote agents: the policy data has no promoterRoles list (data.agentgov.limits.promoterRoles, a list of role names); ask a policy admin", [actor_name]) if {
	not string_list(promoter_roles)
} else := sprintf("%s may not promote agents: input.actor.groups must be a list of strings", [actor_name]) if {
	not actor_list_ok("groups")
} else := sprintf("%s may not promote agents: input.actor.roles must be a list of strings", [actor_name]) if {
	not actor_list_ok("roles")
} else := sprintf("%s may not promote agents: input.actor.authorizedToPromote must be true or false", [actor_name]) if {
	not actor_flag_ok
} else := sprintf(
	"%s may not promote agents: promotion needs one of the roles %s (the Kubernetes verb 'promote' on agents.agentgov.dev, granted by the ClusterRoles agentgov-agent-admin and agentgov-policy-admin)",
	[actor_name, roles_text],
)

denies contains {"code": "actor_unauthorized", "message": actor_problem} if not ok_actor

# --- Rule 2: the minimum viable anatomy is complete ----------------------------------------------

mva_fields := ["reasoning", "inputs", "actions", "memory"]

memory_kinds := ["none", "session", "persistent"]

# retentionDays: absent, or a whole number of days (an int32, as the schema says).
retention_ok(r) if r == null

retention_ok(r) if {
	is_number(r)
	r >= 0
	r <= 2147483647
	floor(r) == r
}

complete(field, value) if {
	field == "reasoning"
	nonempty_string(get(value, "model"))
}

complete(field, value) if {
	field in ["inputs", "actions"]
	name_list(value)
}

complete(field, value) if {
	field == "memory"
	get(value, "kind") in memory_kinds
	retention_ok(get(value, "retentionDays"))
}

default ok_anatomy := false

ok_anatomy if {
	every field in mva_fields {
		complete(field, get(anatomy, field))
	}
}

field_shapes := {
	"reasoning": "needs a model (a non-empty string)",
	"inputs": "must be a list of non-empty strings",
	"actions": "must be a list of non-empty strings",
	"memory": "needs a kind (none, session or persistent) and, if it has retentionDays, a whole number of days, 0 or more",
}

anatomy_problem(field) := sprintf(
	"anatomy is incomplete: add anatomy.%s (the minimum viable anatomy is reasoning, inputs, actions and memory)",
	[field],
) if {
	empty(get(anatomy, field))
} else := sprintf("anatomy is incomplete: anatomy.%s %s", [field, field_shapes[field]])

denies contains {"code": "anatomy_incomplete", "message": msg} if {
	not ok_anatomy
	some field in mva_fields
	not complete(field, get(anatomy, field))
	msg := anatomy_problem(field)
}

# --- Rule 3: the sandbox stayed contained --------------------------------------------------------

containment := get(anatomy, "containment")

containment_flags := ["externalCalls", "persistentWrites"]

# Absent or null is contained (the schema defaults both to false); only false is, otherwise.
contained(flag) if get(containment, flag) == null

contained(flag) if get(containment, flag) == false

default ok_containment := false

ok_containment if {
	empty_or_object(containment)
	every flag in containment_flags {
		contained(flag)
	}
}

empty_or_object(x) if x == null

empty_or_object(x) if is_object(x)

denies contains {
	"code": "containment",
	"message": "anatomy.containment must be an object (externalCalls and persistentWrites, both false): an agent is promoted only from a contained sandbox",
} if {
	not ok_containment
	not empty_or_object(containment)
}

denies contains {"code": "containment", "message": msg} if {
	not ok_containment
	some flag in containment_flags
	get(containment, flag) == true
	msg := sprintf("anatomy.containment.%s is true: an agent is promoted only from a contained sandbox; set it to false", [flag])
}

denies contains {"code": "containment", "message": msg} if {
	not ok_containment
	some flag in containment_flags
	not contained(flag)
	not get(containment, flag) == true
	msg := sprintf("anatomy.containment.%s must be true or false: an agent is promoted only from a contained sandbox; set it to false", [flag])
}

# --- Rule 4: at least one capability -------------------------------------------------------------

capabilities := get(anatomy, "capabilities")

default ok_capabilities := false

ok_capabilities if name_list(capabilities)

capabilities_problem := "anatomy.capabilities is empty: declare at least one capability" if {
	empty(capabilities)
} else := "anatomy.capabilities must be a list of non-empty strings: declare at least one capability by name"

denies contains {"code": "capabilities", "message": capabilities_problem} if not ok_capabilities

# --- Rule 5: temperature within the role class's limit -------------------------------------------

role_classes := ["compliance", "analysis", "ideation"]

role_class := get(spec, "roleClass")

temperature := get(get(anatomy, "reasoning"), "temperature")

temperature_limit := get(get(limits, "temperatureLimits"), role_class) if {
	role_class in role_classes
} else := null

default ok_temperature := false

ok_temperature if {
	is_number(temperature_limit)
	is_number(temperature)
	temperature <= temperature_limit
}

temperature_problem := "spec.roleClass is missing or not a string: set it to compliance, analysis or ideation (it decides the temperature limit)" if {
	not is_string(role_class)
} else := sprintf("spec.roleClass %s is not one of compliance, analysis or ideation, so no temperature limit applies; use one of those", [role_class]) if {
	not role_class in role_classes
} else := sprintf("no temperature limit is set for role class %s in the policy data; ask a policy admin", [role_class]) if {
	not is_number(temperature_limit)
} else := sprintf(
	"anatomy.reasoning.temperature is missing or not a number: set it (at most %s for role class %s)",
	[show(temperature_limit), role_class],
) if {
	not is_number(temperature)
} else := sprintf(
	"anatomy.reasoning.temperature %s is above the limit %s for role class %s; lower it to %s or less",
	[show(temperature), show(temperature_limit), role_class, show(temperature_limit)],
)

denies contains {"code": "temperature", "message": temperature_problem} if not ok_temperature

# --- Rule 6: budget within org limits ------------------------------------------------------------

economics := get(anatomy, "economics")

budget := get(economics, "monthlyBudgetUsd")

max_budget := get(limits, "maxMonthlyBudgetUsd")

max_budget_ok if {
	is_number(max_budget)
	max_budget >= 0
}

# No economics, or economics without a budget: allowed (with a warning below).
budget_undeclared if economics == null

budget_undeclared if {
	is_object(economics)
	budget == null
}

budget_nonnegative if {
	is_number(budget)
	budget >= 0
}

budget_within if {
	budget_nonnegative
	max_budget_ok
	budget <= max_budget
}

default ok_budget := false

ok_budget if {
	max_budget_ok
	budget_undeclared
}

ok_budget if {
	max_budget_ok
	budget_within
}

budget_problem := "the policy data has no maxMonthlyBudgetUsd (data.agentgov.limits.maxMonthlyBudgetUsd, a number, 0 or more), so no budget can be checked; ask a policy admin" if {
	not max_budget_ok
} else := "anatomy.economics must be an object with monthlyBudgetUsd (the monthly budget in US dollars)" if {
	not empty_or_object(economics)
} else := "anatomy.economics.monthlyBudgetUsd must be a number of US dollars, 0 or more" if {
	not budget_nonnegative
} else := sprintf(
	"anatomy.economics.monthlyBudgetUsd %s is above the org limit of %s; reduce it",
	[show(budget), show(max_budget)],
)

denies contains {"code": "budget", "message": budget_problem} if not ok_budget

# --- Warnings: allowed, but restricted -----------------------------------------------------------

warnings contains "no monthly budget is declared (anatomy.economics.monthlyBudgetUsd); spending is not capped by the agent" if {
	budget_undeclared
}

# Above 80 % of the limit. The line is 80 % of the limit to a tenth of a cent, computed so both
# engines get the same number: round(limit * 800) is the same integer on OPA (64-bit big floats)
# and regorus (f64) for limits below 10^10 dollars with at most five decimals (limit * 800 is
# then never within rounding error of a half), and that integer / 1000 compares exactly on both.
# `budget > 0.8 * limit` instead rounds either way at the line. Limits of 10^10 dollars or more
# give no 80 % warning.
default budget_line := null

budget_line := round(max_budget * 800) / 1000 if {
	max_budget_ok
	max_budget < 10000000000
}

warnings contains msg if {
	budget_within
	is_number(budget_line)
	budget > budget_line
	msg := sprintf("monthly budget %s is above 80%% of the org limit %s", [show(budget), show(max_budget)])
}

memory := get(anatomy, "memory")

warnings contains "persistent memory has no retentionDays; memory is kept forever" if {
	get(memory, "kind") == "persistent"
	get(memory, "retentionDays") == null
}

# --- Rule 7: the runtime, where the policy requires it -------------------------------------------

# data.runtime.requireImages true: the agent must list the images its Pods may run
# (spec.runtime.images: the webhook then admits only those, by digest), so that what runs is
# bound to what was approved. Absent, or false: not required. Policy data of another shape
# denies, as malformed data does everywhere here.
runtime_data := get(limits, "runtime")

require_images := get(runtime_data, "requireImages")

runtime_data_ok if runtime_data == null

runtime_data_ok if {
	is_object(runtime_data)
	require_images == null
}

runtime_data_ok if {
	is_object(runtime_data)
	is_boolean(require_images)
}

runtime_images := get(get(spec, "runtime"), "images")

default ok_runtime := false

ok_runtime if {
	runtime_data_ok
	not require_images == true
}

ok_runtime if {
	require_images == true
	is_object(runtime_data)
	name_list(runtime_images)
}

runtime_problem := "the policy data's runtime must be an object whose requireImages is true or false (data.agentgov.limits.runtime); ask a policy admin" if {
	not runtime_data_ok
} else := "the policy requires the agent to list the images its Pods may run: set spec.runtime.images, each pinned by digest (name@sha256:<64 hex digits>)"

denies contains {"code": "runtime", "message": runtime_problem} if not ok_runtime

# --- Rule 8: the namespace's total, where the policy sets one -----------------------------------

# data.maxNamespaceMonthlyBudgetUsd: the most the namespace's governed agents may ask for together
# each month. input.namespace.allocatedMonthlyBudgetUsd is what its other governed agents already
# have; the operator leaves input.namespace out for an agent already governed under its spec (a
# total that shrinks stops new promotions, it does not take budgets back). Sums are computed in
# whole cents (round(x * 100), exact on both engines for amounts below 10^10 dollars with at most
# two decimals), so OPA and regorus agree at the line.
max_namespace_budget := get(limits, "maxNamespaceMonthlyBudgetUsd")

namespace_input := get(input, "namespace")

allocated := get(namespace_input, "allocatedMonthlyBudgetUsd")

cents(x) := round(x * 100)

amount_ok(x) if {
	is_number(x)
	x >= 0
	x < 10000000000
}

default ok_namespace_budget := false

ok_namespace_budget if max_namespace_budget == null

ok_namespace_budget if {
	amount_ok(max_namespace_budget)
	namespace_input == null
}

ok_namespace_budget if {
	amount_ok(max_namespace_budget)
	amount_ok(allocated)
	budget_undeclared
}

ok_namespace_budget if {
	amount_ok(max_namespace_budget)
	amount_ok(allocated)
	amount_ok(budget)
	cents(allocated) + cents(budget) <= cents(max_namespace_budget)
}

namespace_budget_problem := "the policy data's maxNamespaceMonthlyBudgetUsd must be a number of US dollars, 0 or more; ask a policy admin" if {
	not amount_ok(max_namespace_budget)
} else := "the namespace's allocated budget is unknown (input.namespace.allocatedMonthlyBudgetUsd must be a number, 0 or more)" if {
	not amount_ok(allocated)
} else := "anatomy.economics.monthlyBudgetUsd must be a number of US dollars, 0 or more" if {
	not amount_ok(budget)
} else := sprintf(
	"namespace %s would allocate %s of its monthly total of %s (%s already approved for other agents + %s for this one); reduce the budget or ask a policy admin for a larger total",
	[
		get(get(input, "agent"), "namespace"),
		show((cents(allocated) + cents(budget)) / 100),
		show(max_namespace_budget),
		show(allocated),
		show(budget),
	],
)

denies contains {"code": "namespace_budget", "message": namespace_budget_problem} if not ok_namespace_budget

# --- The decision --------------------------------------------------------------------------------

default allow := false

allow if {
	ok_actor
	ok_anatomy
	ok_containment
	ok_capabilities
	ok_temperature
	ok_budget
	ok_runtime
	ok_namespace_budget
}

# The denies in a fixed order: by message, then code (the order the sentences had when denies
# were plain strings). Sorting [message, code] pairs rather than the deny objects keeps the
# order independent of how an engine compares objects.
sorted_denies := [{"code": pair[1], "message": pair[0]} |
	some pair in sort([[d.message, d.code] | some d in denies])
]

decision := {
	"allow": allow,
	"denies": sorted_denies,
	"warnings": sort(warnings),
}
