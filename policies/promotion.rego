# The promotion policy: may this agent leave the sandbox for the governed tier?
#
# Input:  {"agent": {"namespace", "name", "spec"}, "actor": {"username", "groups", "roles", "authorizedToPromote"}}
# Data:   data.agentgov.limits = the PolicyBundle's spec.data
#         (maxMonthlyBudgetUsd, temperatureLimits, promoterRoles, extra)
# Output: data.agentgov.promotion.decision = {"allow": bool, "denies": [string], "warnings": [string]}
#
# Each deny is a sentence a user can act on. Limits come from data, so a cluster admin changes
# them without touching this file.
package agentgov.promotion

import rego.v1

limits := data.agentgov.limits

spec := input.agent.spec

anatomy := object.get(spec, "anatomy", {})

containment := object.get(anatomy, "containment", {})

# --- Rule 1: the actor is authorized (the seed's agent_admin or policy_admin) -------------------

# The webhook sets authorizedToPromote from a SubjectAccessReview for the verb "promote" on
# agents.agentgov.dev, which the ClusterRoles agentgov-agent-admin and agentgov-policy-admin grant.
default actor_authorized := false

actor_authorized if input.actor.authorizedToPromote == true

actor_authorized if {
	some role in object.get(input.actor, "roles", [])
	role in limits.promoterRoles
}

actor_authorized if {
	some group in object.get(input.actor, "groups", [])
	group in limits.promoterRoles
}

denies contains msg if {
	not actor_authorized
	msg := sprintf(
		"%s may not promote agents: promotion needs one of the roles %s (the Kubernetes verb 'promote' on agents.agentgov.dev, granted by the ClusterRoles agentgov-agent-admin and agentgov-policy-admin)",
		[object.get(input.actor, "username", "an unknown actor"), concat(", ", limits.promoterRoles)],
	)
}

# --- Rule 2: the minimum viable anatomy is complete ----------------------------------------------

mva_fields := ["reasoning", "inputs", "actions", "memory"]

missing(field) if not anatomy[field]

missing(field) if count(anatomy[field]) == 0

denies contains msg if {
	some field in mva_fields
	missing(field)
	msg := sprintf(
		"anatomy is incomplete: add anatomy.%s (the minimum viable anatomy is reasoning, inputs, actions and memory)",
		[field],
	)
}

# --- Rule 3: the sandbox stayed contained --------------------------------------------------------

denies contains "anatomy.containment.externalCalls is true: an agent is promoted only from a contained sandbox; set it to false" if {
	containment.externalCalls == true
}

denies contains "anatomy.containment.persistentWrites is true: an agent is promoted only from a contained sandbox; set it to false" if {
	containment.persistentWrites == true
}

# --- Rule 4: at least one capability -------------------------------------------------------------

denies contains "anatomy.capabilities is empty: declare at least one capability" if {
	count(object.get(anatomy, "capabilities", [])) == 0
}

# --- Rule 5: temperature within the role class's limit -------------------------------------------

denies contains msg if {
	temperature := anatomy.reasoning.temperature
	limit := limits.temperatureLimits[spec.roleClass]
	temperature > limit
	msg := sprintf(
		"anatomy.reasoning.temperature %v is above the limit %v for role class %s; lower it to %v or less",
		[temperature, limit, spec.roleClass, limit],
	)
}

denies contains msg if {
	not limits.temperatureLimits[spec.roleClass]
	msg := sprintf("no temperature limit is set for role class %v in the policy data; ask a policy admin", [spec.roleClass])
}

# --- Rule 6: budget within org limits ------------------------------------------------------------

denies contains msg if {
	budget := anatomy.economics.monthlyBudgetUsd
	budget > limits.maxMonthlyBudgetUsd
	msg := sprintf(
		"anatomy.economics.monthlyBudgetUsd %v is above the org limit of %v; reduce it",
		[budget, limits.maxMonthlyBudgetUsd],
	)
}

# --- Warnings: allowed, but restricted -----------------------------------------------------------

warnings contains "no monthly budget is declared (anatomy.economics.monthlyBudgetUsd); spending is not capped by the agent" if {
	not anatomy.economics.monthlyBudgetUsd
}

warnings contains msg if {
	budget := anatomy.economics.monthlyBudgetUsd
	budget <= limits.maxMonthlyBudgetUsd
	budget > 0.8 * limits.maxMonthlyBudgetUsd
	msg := sprintf("monthly budget %v is above 80%% of the org limit %v", [budget, limits.maxMonthlyBudgetUsd])
}

warnings contains "persistent memory has no retentionDays; memory is kept forever" if {
	anatomy.memory.kind == "persistent"
	not anatomy.memory.retentionDays
}

# --- The decision --------------------------------------------------------------------------------

decision := {
	"allow": count(denies) == 0,
	"denies": sort(denies),
	"warnings": sort(warnings),
}
