//! What a bundle says of agents: one agent's answer (`policy eval`), and a candidate bundle's
//! effect on every live governed agent (`policy preview`), decided as the operator decides when
//! the bundle is applied: the policy's answer for the spec ([`PolicyEngine::judge_spec`]), the
//! approvals of the current spec the policy allows, and the operator's rule
//! ([`Standing::of`]).

use agentgov_api::agent::{AgentMode, GovernanceStatus};
use agentgov_api::hash::spec_hash;
use agentgov_api::policy::{Actor, AgentInput, Deny, PolicyEngine, Standing};
use agentgov_api::promotion::PromotionOutcome;
use agentgov_api::{Agent, AgentPromotion, AgentSpec};
use serde::Serialize;

use crate::plugin::table::render;

/// The bundle an answer comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BundleRef {
    /// The bundle's name (its file's path for a manifest read from a file).
    pub name: String,
    pub version: String,
    pub hash: String,
}

/// `policy eval`: what the policy says of one agent's spec.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    pub namespace: String,
    pub agent: String,
    pub bundle: BundleRef,
    pub allow: bool,
    pub denies: Vec<Deny>,
    /// Allowed with these: the restrictions a governed agent runs under (GOVERNED_RESTRICTED).
    pub warnings: Vec<String>,
    /// The status an approval would give it: GOVERNED_VALID or GOVERNED_RESTRICTED, or none
    /// when the policy denies.
    pub once_approved: Option<GovernanceStatus>,
}

/// The policy's answer for `spec` as the operator asks it (the spec alone: an approver is
/// judged when they approve).
pub fn evaluate(
    engine: &PolicyEngine,
    bundle: BundleRef,
    namespace: &str,
    name: &str,
    spec: &AgentSpec,
) -> Evaluation {
    let decision = engine.judge_spec(AgentInput {
        namespace,
        name,
        spec,
    });
    let once_approved = match Standing::of(&decision, 1, 1) {
        Standing::Refused | Standing::AwaitingApproval => None,
        standing => Some(standing.governance_status(false)),
    };
    Evaluation {
        namespace: namespace.to_string(),
        agent: name.to_string(),
        bundle,
        allow: decision.allow,
        denies: decision.denies,
        warnings: decision.warnings,
        once_approved,
    }
}

/// `policy eval`'s report, one fact a line.
pub fn evaluation_text(e: &Evaluation) -> String {
    let mut out = format!(
        "agent:    {}/{}\nbundle:   {} (version {}, hash {})\n",
        e.namespace,
        e.agent,
        e.bundle.name,
        e.bundle.version,
        short(&e.bundle.hash)
    );
    let answer = match e.once_approved {
        Some(status) => format!("allowed ({} once approved)", status.as_str()),
        None => "denied".to_string(),
    };
    out.push_str(&format!("decision: {answer}\n"));
    for deny in &e.denies {
        out.push_str(&format!("deny:     [{}] {}\n", deny.code, deny.message));
    }
    for warning in &e.warnings {
        out.push_str(&format!("restriction: {warning}\n"));
    }
    out
}

/// One agent's row in `policy preview`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Prediction {
    pub namespace: String,
    pub agent: String,
    /// Its governance status now.
    pub now: Option<GovernanceStatus>,
    /// The status the operator gives it once the bundle is in force.
    pub after: GovernanceStatus,
    /// The denies, the missing approvals, or the restrictions; empty when valid.
    pub why: String,
}

/// What the operator would make of a governed agent once `engine`'s bundle is in force, with
/// `required` approvers needed (the bundle's `approvals.required`) and `promotions` the
/// namespace's AgentPromotions (those of other agents are ignored). `None` for a sandbox or an
/// agent being deleted, which a policy change does not judge.
///
/// An approval counts, as the operator counts it, when it approves the current spec hash, names
/// the requester the API server stamped, and the policy allows that requester; each approver
/// once. Unlike the operator, which asks the API server again, this takes every such requester
/// to still hold `promote` (the operator's last judgement did), and counts no approval the
/// operator marked expired (nor one superseded before it approved anything); it does not know
/// the operator's `--approval-ttl`, so it counts a pending approval that outlived it.
pub fn predict(
    engine: &PolicyEngine,
    required: usize,
    agent: &Agent,
    promotions: &[AgentPromotion],
) -> Option<Prediction> {
    if agent.spec.mode != AgentMode::Governed || agent.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let namespace = agent.metadata.namespace.clone().unwrap_or_default();
    let name = agent.metadata.name.clone().unwrap_or_default();
    let now = agent.status.as_ref().and_then(|s| s.governance_status);
    let was_governed = now.is_some_and(|g| g != GovernanceStatus::Sandbox);
    let input = AgentInput {
        namespace: &namespace,
        name: &name,
        spec: &agent.spec,
    };
    let hash = match spec_hash(&agent.spec) {
        Ok(hash) => hash,
        Err(e) => {
            let after = Standing::Refused.governance_status(was_governed);
            let why = format!("cannot hash spec: {e}");
            return Some(Prediction {
                namespace,
                agent: name,
                now,
                after,
                why,
            });
        }
    };
    let decision = engine.judge_spec(input);
    let mut approvers: Vec<&str> = Vec::new();
    for promotion in promotions {
        let spec = &promotion.spec;
        let outcome = promotion.status.as_ref().and_then(|s| s.outcome);
        let counted = promotion.metadata.namespace.as_deref() == Some(namespace.as_str())
            && spec.agent == name
            && spec.spec_hash == hash
            && outcome != Some(PromotionOutcome::Expired)
            // One superseded without having approved anything approves nothing (a rollback's
            // return to an approved spec reuses only approvals that produced a proof).
            && !(outcome == Some(PromotionOutcome::Superseded)
                && promotion.status.as_ref().is_none_or(|s| s.proof.is_none()));
        let Some(requester) = spec.requested_by.as_ref().filter(|_| counted) else {
            continue;
        };
        if approvers.contains(&requester.username.as_str()) {
            continue;
        }
        if engine.judge(input, &Actor::approver(requester, true)).allow {
            approvers.push(&requester.username);
        }
    }
    let standing = Standing::of(&decision, approvers.len(), required);
    let why = match standing {
        Standing::Refused => decision.messages().join("; "),
        Standing::AwaitingApproval => format!(
            "{} of {} approvals of spec hash {} the policy allows",
            approvers.len(),
            required.max(1),
            short(&hash)
        ),
        Standing::Restricted => decision.warnings.join("; "),
        Standing::Valid => String::new(),
    };
    Some(Prediction {
        after: standing.governance_status(was_governed),
        namespace,
        agent: name,
        now,
        why,
    })
}

/// [`predict`] for every agent, in their order, on up to `threads` threads, each with its own
/// handle on the one compiled engine (a clone shares it).
pub fn preview(
    engine: &PolicyEngine,
    required: usize,
    agents: &[Agent],
    promotions: &[AgentPromotion],
    threads: usize,
) -> Vec<Prediction> {
    let chunk = agents.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = agents
            .chunks(chunk)
            .map(|part| {
                let engine = engine.clone();
                scope.spawn(move || {
                    part.iter()
                        .filter_map(|agent| predict(&engine, required, agent, promotions))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// The preview as a table: AGENT, NOW, AFTER, WHY (NAMESPACE first with `-A`).
pub fn preview_table(rows: &[Prediction], all_namespaces: bool) -> String {
    let mut headers = vec!["NAMESPACE", "AGENT", "NOW", "AFTER", "WHY"];
    if !all_namespaces {
        headers.remove(0);
    }
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|p| {
            let mut row = Vec::with_capacity(headers.len());
            if all_namespaces {
                row.push(p.namespace.clone());
            }
            row.push(p.agent.clone());
            row.push(p.now.map_or("<none>", |s| s.as_str()).to_string());
            row.push(p.after.as_str().to_string());
            row.push(if p.why.is_empty() {
                "-".into()
            } else {
                p.why.clone()
            });
            row
        })
        .collect();
    render(&headers, &rows)
}

/// The preview's counts, for stderr: how many stay valid, become restricted, are invalidated.
pub fn preview_summary(rows: &[Prediction]) -> String {
    let count = |status| rows.iter().filter(|p| p.after == status).count();
    format!(
        "{} governed agents: {} valid, {} restricted, {} invalidated, {} not in force",
        rows.len(),
        count(GovernanceStatus::GovernedValid),
        count(GovernanceStatus::GovernedRestricted),
        count(GovernanceStatus::GovernedInvalidated),
        count(GovernanceStatus::Sandbox),
    )
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

#[cfg(test)]
#[path = "verdict_tests.rs"]
mod tests;
