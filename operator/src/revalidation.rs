//! The revalidation summary of a namespace after a policy change (the seed's Revalidation
//! Workflow). The Agent controller re-judges every agent of the namespace when the policy in
//! force changes (it is the one writer of agent status); the bundle controller only watches the
//! agents come round and, once every governed agent is judged under the new hash, writes the
//! summary (counts by outcome, and how long it took).

use std::collections::HashMap;

use agentgov_api::agent::{AgentMode, GovernanceStatus};
use agentgov_api::policy_bundle::RevalidationSummary;

use crate::compact::AgentSummary;

/// Where a namespace's revalidation against `policy_hash` stands: the summary so far, and how
/// many governed agents are still to be judged under it.
///
/// `policy_hash` is the bundle's own version; each agent is judged under its namespace's
/// effective policy, whose hash `effective` gives (the floor and the namespace bundle together).
pub fn progress<'a>(
    agents: impl IntoIterator<Item = (&'a str, &'a AgentSummary)>,
    policy_hash: &str,
    effective: impl Fn(&str) -> Option<String>,
) -> (RevalidationSummary, usize) {
    let mut summary = RevalidationSummary {
        policy_hash: policy_hash.to_string(),
        ..Default::default()
    };
    let mut pending = 0;
    // Looked at every 500 ms while thousands of agents come round: each namespace's effective
    // hash once a look (with a floor it is a SHA-256 of canonical JSON).
    let mut expected_in: HashMap<&str, Option<String>> = HashMap::new();
    for (namespace, facts) in agents {
        if facts.mode != AgentMode::Governed || facts.deleting {
            continue;
        }
        let expected = expected_in
            .entry(namespace)
            .or_insert_with(|| effective(namespace));
        let judged = facts
            .policy_hash
            .as_deref()
            .is_some_and(|hash| expected.as_deref() == Some(hash));
        if !judged {
            pending += 1;
            continue;
        }
        match facts.governance_status {
            Some(GovernanceStatus::GovernedValid) => summary.valid += 1,
            Some(GovernanceStatus::GovernedRestricted) => summary.restricted += 1,
            Some(GovernanceStatus::GovernedInvalidated) => summary.invalidated += 1,
            // A request never governed (denied, or awaiting approval) stays in the sandbox tier.
            Some(GovernanceStatus::Sandbox) | None => summary.denied += 1,
        }
    }
    (summary, pending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compact::WatchedAgent;
    use crate::fixtures::compact;
    use agentgov_api::Agent;
    use agentgov_api::agent::{AgentStatus, PolicyRef};

    fn governed(status: Option<GovernanceStatus>, hash: &str) -> WatchedAgent {
        let mut spec = crate::fixtures::governed_spec();
        spec.mode = AgentMode::Governed;
        let mut agent = Agent::new("a", spec);
        agent.status = Some(AgentStatus {
            governance_status: status,
            policy: Some(PolicyRef {
                name: "default".into(),
                version: String::new(),
                hash: hash.into(),
            }),
            ..AgentStatus::default()
        });
        compact(agent)
    }

    #[test]
    fn counts_governed_agents_judged_under_the_hash_and_the_rest_as_pending() {
        let agents = [
            governed(Some(GovernanceStatus::GovernedValid), "new"),
            governed(Some(GovernanceStatus::GovernedRestricted), "new"),
            governed(Some(GovernanceStatus::GovernedInvalidated), "new"),
            governed(Some(GovernanceStatus::Sandbox), "new"),
            governed(Some(GovernanceStatus::GovernedValid), "old"),
            compact(Agent::new("sandbox", crate::fixtures::sandbox_spec())),
        ];
        let mut deleting = governed(Some(GovernanceStatus::GovernedValid), "old");
        deleting.summary.deleting = true;
        let summaries = agents
            .iter()
            .chain([&deleting])
            .map(|a| ("team", &a.summary));
        let (summary, pending) = progress(summaries, "new", |_| Some("new".to_string()));
        assert_eq!(
            (
                summary.valid,
                summary.restricted,
                summary.invalidated,
                summary.denied
            ),
            (1, 1, 1, 1)
        );
        assert_eq!(
            pending, 1,
            "the one still judged under the old hash (not the one being deleted)"
        );
    }
}
