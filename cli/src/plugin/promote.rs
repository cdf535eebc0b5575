//! `promote`: the AgentPromotion that approves an agent's current spec, and what `--wait` makes
//! of the agent and that promotion as they change. Plain functions; `mod.rs` does the calls.

use agentgov_api::agent::{AgentMode, GovernanceStatus};
use agentgov_api::promotion::PromotionOutcome;
use agentgov_api::{Agent, AgentPromotion, AgentPromotionSpec};

use super::Error;

/// The longest object name Kubernetes accepts (a DNS subdomain).
const MAX_NAME: usize = 253;
/// How many hex digits of the spec hash a promotion's name carries.
const HASH_DIGITS: usize = 10;

/// `namespace/name` of an agent, as the messages name it.
pub fn id(agent: &Agent) -> String {
    format!(
        "{}/{}",
        agent.metadata.namespace.as_deref().unwrap_or_default(),
        agent.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Refuse what cannot be promoted: a sandbox (promotion approves a governed request).
pub fn promotable(agent: &Agent) -> Result<(), Error> {
    match agent.spec.mode {
        AgentMode::Governed => Ok(()),
        AgentMode::Sandbox => Err(Error::Usage(format!(
            "agent {} is a sandbox and cannot be promoted: promotion approves a governed request, so set its spec.mode to governed first",
            id(agent)
        ))),
    }
}

/// The hash of the agent's spec as it is now: what an AgentPromotion approving it names.
pub fn current_hash(agent: &Agent) -> Result<String, Error> {
    agentgov_api::hash::spec_hash(&agent.spec).map_err(|e| Error::Hash {
        agent: id(agent),
        message: e.to_string(),
    })
}

/// `<agent>-<first 10 hex digits of the hash>`, the agent's part shortened so the whole stays
/// a valid name (and does not end in `-` or `.`).
pub fn promotion_name(agent: &str, spec_hash: &str) -> String {
    let hash = spec_hash.get(..HASH_DIGITS).unwrap_or(spec_hash);
    let room = MAX_NAME - HASH_DIGITS - 1;
    let mut head = agent.get(..room.min(agent.len())).unwrap_or(agent);
    head = head.trim_end_matches(['-', '.']);
    format!("{head}-{hash}")
}

/// The AgentPromotion approving `spec_hash` of `agent`. `requestedBy` is left out: the API
/// server stamps it from the request (docs/cli.md).
pub fn promotion(
    agent: &str,
    namespace: &str,
    spec_hash: &str,
    reason: Option<String>,
) -> AgentPromotion {
    let mut promotion = AgentPromotion::new(
        &promotion_name(agent, spec_hash),
        AgentPromotionSpec {
            agent: agent.to_string(),
            spec_hash: spec_hash.to_string(),
            reason,
            requested_by: None,
        },
    );
    promotion.metadata.namespace = Some(namespace.to_string());
    promotion
}

/// The same promotion under a name the API server generates (`<name>-xxxxx`), for when its
/// name is taken.
pub fn with_generated_name(mut promotion: AgentPromotion) -> AgentPromotion {
    let base = promotion.metadata.name.take().unwrap_or_default();
    promotion.metadata.generate_name = Some(format!("{base}-"));
    promotion
}

/// Where the approvals of an agent's current spec stand, when it awaits more approvers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Awaiting {
    /// The current spec hash.
    pub hash: String,
    /// Distinct approvers the policy in force requires.
    pub required: usize,
    /// Who approved it so far (sorted, each once).
    pub approvers: Vec<String>,
}

impl Awaiting {
    /// `agent NS/NAME at spec hash H: approved by alice, bob (2 of 2), none more needed`, once
    /// `me` is counted too.
    pub fn with(&self, agent: &str, me: &str) -> String {
        let mut approvers = self.approvers.clone();
        approvers.push(me.to_string());
        approvers.sort();
        approvers.dedup();
        let missing = self.required.saturating_sub(approvers.len());
        let more = match missing {
            0 => "none more needed".to_string(),
            n => format!("{n} more needed"),
        };
        format!(
            "agent {agent} at spec hash {}: approved by {} ({} of {}), {more}",
            short(&self.hash),
            approvers.join(", "),
            approvers.len(),
            self.required
        )
    }
}

/// Whether `me` may add an approval to `agent`'s current spec: it must await more approvers
/// (someone approved it, not yet enough) and `me` must not be one of them (the operator counts
/// distinct approvers). Approvers are those the agent's status counts and those of the
/// agent's `promotions` for this spec not yet judged otherwise (the status lags behind).
pub fn awaiting(agent: &Agent, promotions: &[AgentPromotion], me: &str) -> Result<Awaiting, Error> {
    promotable(agent)?;
    let id = id(agent);
    let name = agent.metadata.name.as_deref().unwrap_or_default();
    let hash = current_hash(agent)?;
    let not_awaiting = |why: String| {
        Err(Error::Usage(format!(
            "agent {id} is not awaiting approval at spec hash {}: {why}",
            short(&hash)
        )))
    };
    if let Some(g) = in_force(agent, &hash) {
        return not_awaiting(format!("it is {} for this spec", g.as_str()));
    }
    let status = agent.status.as_ref();
    let Some(approval) = status
        .and_then(|s| s.approval.as_ref())
        .filter(|a| a.spec_hash == hash)
    else {
        return not_awaiting(format!(
            "the operator has not judged this spec yet (retry shortly), or start with `kubectl agentgov promote {name}`"
        ));
    };
    let mut approvers: Vec<String> = approval.approved_by.clone();
    approvers.extend(
        promotions
            .iter()
            .filter(|p| p.spec.agent == name && p.spec.spec_hash == hash)
            .filter(|p| {
                matches!(
                    p.status.as_ref().and_then(|s| s.outcome),
                    None | Some(PromotionOutcome::Pending | PromotionOutcome::Approved)
                )
            })
            .filter_map(|p| p.spec.requested_by.as_ref())
            .map(|r| r.username.clone()),
    );
    approvers.sort();
    approvers.dedup();
    let required = usize::try_from(approval.required.max(1)).unwrap_or(1);
    if approvers.is_empty() {
        return not_awaiting(format!(
            "nobody has approved it yet; start with `kubectl agentgov promote {name}`"
        ));
    }
    if approvers.len() >= required {
        return not_awaiting(format!(
            "it has {} of {required} approvals ({}), the operator signs it",
            approvers.len(),
            approvers.join(", ")
        ));
    }
    if approvers.iter().any(|a| a == me) {
        return Err(Error::Usage(format!(
            "{me} already approved agent {id} at spec hash {}: the policy counts distinct approvers, so another identity must approve",
            short(&hash)
        )));
    }
    Ok(Awaiting {
        hash,
        required,
        approvers,
    })
}

/// The governance status, if the agent is in force (valid or restricted) under a proof of
/// `spec_hash`.
pub fn in_force(agent: &Agent, spec_hash: &str) -> Option<GovernanceStatus> {
    let status = agent.status.as_ref()?;
    let signed = status
        .proof
        .as_ref()
        .is_some_and(|p| p.spec_hash == spec_hash);
    status
        .governance_status
        .filter(|g| g.is_governed_in_force() && signed)
}

/// The first 12 hex digits of a spec hash, as messages show it.
pub fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Where a promotion stands, as `--wait` sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// In force for the approved spec: done.
    Promoted(GovernanceStatus),
    /// Not yet; the line to print (printed when it changes).
    Waiting(String),
    /// It will not happen: the sentence to exit with.
    Failed(String),
}

/// What the agent and its promotion say about the approval of `spec_hash`.
pub fn progress(agent: &Agent, promotion: &AgentPromotion, spec_hash: &str) -> Progress {
    let id = id(agent);
    let name = promotion.metadata.name.as_deref().unwrap_or_default();
    let status = agent.status.as_ref();
    let governance = status.and_then(|s| s.governance_status);
    if let Some(g) = in_force(agent, spec_hash) {
        return Progress::Promoted(g);
    }
    let outcome = promotion.status.as_ref().and_then(|s| s.outcome);
    let denies = promotion
        .status
        .as_ref()
        .map(|s| s.denies.join("; "))
        .filter(|d| !d.is_empty());
    match outcome {
        Some(PromotionOutcome::Denied) => {
            return Progress::Failed(format!(
                "the promotion {name} of agent {id} was denied: {}",
                denies.as_deref().unwrap_or("no reason given")
            ));
        }
        Some(o @ (PromotionOutcome::Superseded | PromotionOutcome::Expired)) => {
            return Progress::Failed(format!(
                "the promotion {name} of agent {id} is {}: {}",
                o.as_str().to_lowercase(),
                denies.as_deref().unwrap_or("it no longer counts")
            ));
        }
        _ => {}
    }
    let approvals = status
        .and_then(|s| s.approval.as_ref())
        .filter(|a| a.spec_hash == spec_hash)
        .map(|a| {
            format!(
                ", {} of {} approvals",
                a.approved_by.len(),
                a.required.max(1)
            )
        })
        .unwrap_or_default();
    Progress::Waiting(format!(
        "waiting: agent {id} is {}, promotion {name} is {}{approvals}",
        governance.map_or("without a status", GovernanceStatus::as_str),
        outcome.map_or("not judged yet", PromotionOutcome::as_str),
    ))
}

#[cfg(test)]
mod tests {
    use agentgov_api::agent::{AgentStatus, ApprovalStatus};
    use agentgov_api::keyring::KeyRing;
    use agentgov_api::promotion::AgentPromotionStatus;
    use agentgov_api::testing::{governed_agent, sandbox_agent};

    use super::*;
    use crate::plugin::fixtures::{key_ring_config, signed};

    const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn placed(mut agent: Agent) -> Agent {
        agent.metadata.namespace = Some("team-a".into());
        agent.metadata.name = Some("auditor".into());
        agent
    }

    fn judged(outcome: Option<PromotionOutcome>, denies: &[&str]) -> AgentPromotion {
        let mut p = promotion("auditor", "team-a", HASH, None);
        p.status = Some(AgentPromotionStatus {
            outcome,
            denies: denies.iter().map(|d| d.to_string()).collect(),
            ..AgentPromotionStatus::default()
        });
        p
    }

    fn with_status(status: GovernanceStatus, proof_hash: Option<&str>) -> Agent {
        let ring = KeyRing::from_config(&key_ring_config()).unwrap();
        let mut agent = placed(signed(&ring));
        let s = agent.status.get_or_insert_with(AgentStatus::default);
        s.governance_status = Some(status);
        match proof_hash {
            Some(h) => s.proof.as_mut().unwrap().spec_hash = h.into(),
            None => s.proof = None,
        }
        agent
    }

    /// A governed request whose status awaits `required` approvers, `approved_by` counted.
    fn awaiting_agent(required: i32, approved_by: &[&str]) -> Agent {
        let mut agent = placed(governed_agent());
        let hash = current_hash(&agent).unwrap();
        agent.status = Some(AgentStatus {
            governance_status: Some(GovernanceStatus::Sandbox),
            approval: Some(ApprovalStatus {
                spec_hash: hash,
                required,
                approved_by: approved_by.iter().map(|a| a.to_string()).collect(),
            }),
            ..AgentStatus::default()
        });
        agent
    }

    /// `user`'s approval of `hash` of the auditor, judged `outcome`.
    fn by(user: &str, hash: &str, outcome: Option<PromotionOutcome>) -> AgentPromotion {
        let mut p = promotion("auditor", "team-a", hash, None);
        p.spec.requested_by = Some(agentgov_api::promotion::Requester {
            username: user.into(),
            ..Default::default()
        });
        p.status = Some(AgentPromotionStatus {
            outcome,
            ..AgentPromotionStatus::default()
        });
        p
    }

    #[test]
    fn approve_adds_a_distinct_approver_to_a_spec_awaiting_more() {
        let agent = awaiting_agent(2, &["alice"]);
        let hash = current_hash(&agent).unwrap();
        let short = &hash[..12];
        let waiting = awaiting(&agent, &[], "bob").unwrap();
        assert_eq!(waiting.approvers, ["alice"]);
        assert_eq!(
            waiting.with("team-a/auditor", "bob"),
            format!(
                "agent team-a/auditor at spec hash {short}: approved by alice, bob (2 of 2), none more needed"
            )
        );
        // A pending approval the status does not count yet is counted; a denied one, another
        // spec's and another agent's are not.
        let fresh = awaiting_agent(3, &[]);
        let mut other_agent = by("dave", &hash, None);
        other_agent.spec.agent = "other".into();
        let promotions = [
            by("alice", &hash, None),
            by("carol", &hash, Some(PromotionOutcome::Denied)),
            by("erin", HASH, Some(PromotionOutcome::Pending)),
            other_agent,
        ];
        let waiting = awaiting(&fresh, &promotions, "bob").unwrap();
        assert_eq!(waiting.approvers, ["alice"]);
        assert_eq!(
            waiting.with("team-a/auditor", "bob"),
            format!(
                "agent team-a/auditor at spec hash {short}: approved by alice, bob (2 of 3), 1 more needed"
            )
        );
    }

    #[test]
    fn approve_refuses_the_same_identity_and_specs_not_awaiting_approval() {
        let agent = awaiting_agent(2, &["alice"]);
        let hash = current_hash(&agent).unwrap();
        let short = &hash[..12];
        let message = awaiting(&agent, &[], "alice").unwrap_err().to_string();
        assert_eq!(
            message,
            format!(
                "alice already approved agent team-a/auditor at spec hash {short}: the policy counts distinct approvers, so another identity must approve"
            )
        );
        let pending = [by("alice", &hash, Some(PromotionOutcome::Pending))];
        let message = awaiting(&awaiting_agent(2, &[]), &pending, "alice")
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("alice already approved"), "{message}");
        let not = |agent: &Agent| awaiting(agent, &[], "bob").unwrap_err().to_string();
        let prefix =
            format!("agent team-a/auditor is not awaiting approval at spec hash {short}: ");
        assert_eq!(
            not(&awaiting_agent(2, &[])),
            format!(
                "{prefix}nobody has approved it yet; start with `kubectl agentgov promote auditor`"
            )
        );
        assert_eq!(
            not(&awaiting_agent(2, &["alice", "carol"])),
            format!("{prefix}it has 2 of 2 approvals (alice, carol), the operator signs it")
        );
        let mut unjudged = awaiting_agent(2, &["alice"]);
        if let Some(a) = unjudged.status.as_mut().and_then(|s| s.approval.as_mut()) {
            a.spec_hash = HASH.into();
        }
        assert!(not(&unjudged).contains("the operator has not judged this spec yet"));
        let mut valid = awaiting_agent(2, &["alice", "carol"]);
        let ring = KeyRing::from_config(&key_ring_config()).unwrap();
        let proof = signed(&ring).status.unwrap().proof.unwrap();
        assert_eq!(proof.spec_hash, hash, "the same example spec");
        if let Some(s) = valid.status.as_mut() {
            s.governance_status = Some(GovernanceStatus::GovernedValid);
            s.proof = Some(proof);
        }
        assert_eq!(
            not(&valid),
            format!("{prefix}it is GOVERNED_VALID for this spec")
        );
        let sandbox = not(&placed(sandbox_agent()));
        assert!(sandbox.contains("is a sandbox"), "{sandbox}");
    }

    #[test]
    fn names_carry_the_agent_and_ten_hex_digits_and_stay_valid() {
        assert_eq!(promotion_name("auditor", HASH), "auditor-0123456789");
        let long = "a".repeat(300);
        let name = promotion_name(&long, HASH);
        assert_eq!(name.len(), MAX_NAME);
        assert!(name.ends_with("-0123456789"));
        let dashed = format!("{}-b", "a".repeat(241));
        assert_eq!(
            promotion_name(&dashed, HASH),
            format!("{}-0123456789", "a".repeat(241))
        );
        let p = with_generated_name(promotion("auditor", "team-a", HASH, None));
        assert_eq!(p.metadata.name, None);
        assert_eq!(
            p.metadata.generate_name.as_deref(),
            Some("auditor-0123456789-")
        );
        assert_eq!(p.spec.requested_by, None);
        assert_eq!(p.spec.spec_hash, HASH);
    }

    #[test]
    fn a_sandbox_is_refused_with_a_sentence() {
        let message = promotable(&placed(sandbox_agent()))
            .unwrap_err()
            .to_string();
        assert!(message.contains("team-a/auditor is a sandbox"), "{message}");
        assert!(message.contains("spec.mode to governed"), "{message}");
        promotable(&placed(governed_agent())).unwrap();
    }

    #[test]
    fn promoted_only_when_in_force_for_this_very_spec() {
        let pending = judged(Some(PromotionOutcome::Approved), &[]);
        let valid = with_status(GovernanceStatus::GovernedValid, Some(HASH));
        assert_eq!(
            progress(&valid, &pending, HASH),
            Progress::Promoted(GovernanceStatus::GovernedValid)
        );
        let restricted = with_status(GovernanceStatus::GovernedRestricted, Some(HASH));
        assert_eq!(
            progress(&restricted, &pending, HASH),
            Progress::Promoted(GovernanceStatus::GovernedRestricted)
        );
        // In force, but for an older spec: still waiting.
        let older = with_status(GovernanceStatus::GovernedValid, Some("ff"));
        assert!(matches!(
            progress(&older, &pending, HASH),
            Progress::Waiting(_)
        ));
        let invalid = with_status(GovernanceStatus::GovernedInvalidated, None);
        assert!(matches!(
            progress(&invalid, &pending, HASH),
            Progress::Waiting(_)
        ));
    }

    #[test]
    fn waiting_lines_say_where_it_stands() {
        let mut agent = with_status(GovernanceStatus::GovernedInvalidated, None);
        if let Some(s) = agent.status.as_mut() {
            s.approval = Some(ApprovalStatus {
                spec_hash: HASH.into(),
                required: 2,
                approved_by: vec!["alice".into()],
            });
        }
        let line = progress(&agent, &judged(Some(PromotionOutcome::Pending), &[]), HASH);
        assert_eq!(
            line,
            Progress::Waiting(
                "waiting: agent team-a/auditor is GOVERNED_INVALIDATED, promotion auditor-0123456789 is Pending, 1 of 2 approvals".into()
            )
        );
        let mut fresh = placed(governed_agent());
        fresh.status = None;
        let line = progress(&fresh, &judged(None, &[]), HASH);
        assert_eq!(
            line,
            Progress::Waiting(
                "waiting: agent team-a/auditor is without a status, promotion auditor-0123456789 is not judged yet".into()
            )
        );
    }

    #[test]
    fn denied_superseded_and_expired_end_the_wait() {
        let agent = placed(governed_agent());
        let denied = progress(
            &agent,
            &judged(
                Some(PromotionOutcome::Denied),
                &["budget 250 is above 100", "temperature"],
            ),
            HASH,
        );
        assert_eq!(
            denied,
            Progress::Failed("the promotion auditor-0123456789 of agent team-a/auditor was denied: budget 250 is above 100; temperature".into())
        );
        let Progress::Failed(superseded) = progress(
            &agent,
            &judged(Some(PromotionOutcome::Superseded), &[]),
            HASH,
        ) else {
            panic!("superseded must end the wait");
        };
        assert!(
            superseded.contains("is superseded: it no longer counts"),
            "{superseded}"
        );
        assert!(matches!(
            progress(&agent, &judged(Some(PromotionOutcome::Expired), &["too old"]), HASH),
            Progress::Failed(m) if m.ends_with("is expired: too old")
        ));
    }
}
