//! The operator's decision about one agent, as a plain function: given the agent, its approvals
//! (AgentPromotions, each with whether its requester still holds `promote`), the policy in force,
//! the key ring, whether the admission guards are in place, and the clock, what should the
//! agent's status be, and each approval's? No I/O here; the controller writes what this returns.
//!
//! A governed agent is signed only under approvals of its current spec hash from at least
//! `data.approvals.required` distinct verified identities, each allowed by the policy with that
//! identity as its actor. A spec changed since it was approved is not signed again: it waits for
//! an approval of the new hash (a governed agent is invalidated meanwhile). Nothing is signed
//! while the admission guards are missing or altered.
//!
//! A spec that comes back (a rollback) is signed again under the approvals of its hash that
//! still hold: an approval names one spec hash, so it can approve nothing else. One that was
//! Approved, then Superseded, counts for `approval_ttl` after it was superseded (one never
//! approved, for `approval_ttl` after it was made), and only if its approver still holds
//! `promote` and the policy in force still allows it, as for a new approval.

use std::collections::BTreeMap;
use std::time::Duration;

use agentgov_api::agent::{
    AgentMode, AgentSpec, AgentStatus, ApprovalStatus, AuditFinding, GovernanceStatus, PolicyRef,
};
use agentgov_api::conditions::{self, ConditionUpdate, EXPIRED, PROMOTED, READY};
use agentgov_api::effective::EffectivePolicy;
use agentgov_api::exception::{AppliedException, next_expiry, waive};

use crate::break_glass::ADMISSION_GUARDED;
use agentgov_api::expiry::{ExpiryPolicy, sandbox_expires_at};
use agentgov_api::keyring::KeyRing;
use agentgov_api::policy::{
    ACTOR_RULE, Actor, AgentInput, NamespaceInput, PolicyDecision, PolicyInput, Standing,
};
use agentgov_api::promotion::{AgentPromotionStatus, PromotionOutcome, ProofLink, Requester};
use agentgov_api::proof::{self, Approver, Claims, ProofBundle, ProofException, ProofSubject};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The deny code of the policy's actor rule (the approver does not hold a promoter role).
pub const ACTOR_CODE: &str = ACTOR_RULE;

/// The compiled policy in force for a namespace: the cluster floor and the namespace's bundle.
#[derive(Clone, Debug)]
pub struct ActivePolicy {
    pub engine: EffectivePolicy,
    /// `data.approvals.required` (the larger of the floor's and the namespace's).
    pub approvals_required: usize,
    /// `data.runtime` within the floor's: containment egress and what quarantine does.
    pub runtime: agentgov_api::policy_bundle::RuntimeData,
}

impl ActivePolicy {
    pub fn new(engine: EffectivePolicy) -> Self {
        ActivePolicy {
            approvals_required: engine.data().approvals_required(),
            runtime: engine.data().runtime.clone().unwrap_or_default(),
            engine,
        }
    }

    pub fn hash(&self) -> &str {
        self.engine.hash()
    }

    fn reference(&self) -> PolicyRef {
        PolicyRef {
            name: self.engine.name(),
            version: self.engine.version(),
            hash: self.hash().to_string(),
        }
    }
}

/// The agent as the operator sees it.
#[derive(Clone, Copy, Debug)]
pub struct AgentFacts<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub generation: Option<i64>,
    pub created: Timestamp,
    pub spec: &'a AgentSpec,
    /// The spec's hash ([`agentgov_api::hash::spec_hash`]), computed once per look by the
    /// caller, which needs it too; why not, if the spec cannot be hashed.
    pub spec_hash: Result<&'a str, &'a str>,
    pub status: Option<&'a AgentStatus>,
    /// The namespace's approved budgets, when its total is to be checked (a policy that sets
    /// one, for an agent not already governed under its spec).
    pub namespace_budget: Option<&'a NamespaceInput>,
    /// The AgentExceptions in force for the agent now (unexpired by the operator's clock).
    pub exceptions: &'a [AppliedException],
}

/// One AgentPromotion of the agent.
#[derive(Clone, Copy, Debug)]
pub struct ApprovalFacts<'a> {
    pub name: &'a str,
    pub uid: &'a str,
    pub spec_hash: &'a str,
    /// Stamped and checked by the API server (None: the guards were not in place).
    pub requester: Option<&'a Requester>,
    pub created: Timestamp,
    /// A SubjectAccessReview for `promote` on the agent, asked by the operator now: a role
    /// revoked since the approval is honoured.
    pub authorized: bool,
    pub status: Option<&'a AgentPromotionStatus>,
}

/// What happened, for logs, events and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A sandbox, not expired.
    Sandbox,
    /// A sandbox past its expiry.
    Expired,
    /// Allowed again; the proof in status still holds.
    Kept,
    /// Approved and signed: GOVERNED_VALID.
    Promoted,
    /// Approved with warnings and signed: GOVERNED_RESTRICTED.
    Restricted,
    /// A governed request the policy denies: it stays in the sandbox tier.
    Denied,
    /// A governed agent that fails (the policy, a spec changed since approval, approvals
    /// withdrawn): GOVERNED_INVALIDATED (quarantine).
    Invalidated,
    /// A governed request that waits for (more) approvals of its current spec.
    AwaitingApproval,
    /// The operator could not sign (no usable key, or the admission guards are missing).
    SigningUnavailable,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Sandbox => "sandbox",
            Outcome::Expired => "expired",
            Outcome::Kept => "kept",
            Outcome::Promoted => "promoted",
            Outcome::Restricted => "restricted",
            Outcome::Denied => "denied",
            Outcome::Invalidated => "invalidated",
            Outcome::AwaitingApproval => "awaiting_approval",
            Outcome::SigningUnavailable => "signing_unavailable",
        }
    }
}

/// An approval decided for the first time in this judgement: a promotion attempt (counted once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub promotion: String,
    /// The AgentPromotion's uid (an attempt is counted once per uid).
    pub uid: String,
    pub requester: String,
    pub outcome: PromotionOutcome,
    /// The policy's deny codes (bounded) and sentences, for a denied attempt.
    pub deny_codes: Vec<String>,
    pub denies: Vec<String>,
}

/// The judgement: the agent's status, each approval's, what happened, and when to look again.
#[derive(Clone, Debug)]
pub struct Judgement {
    pub status: AgentStatus,
    pub outcome: Outcome,
    /// The policy's deny codes of a refusal (bounded metric labels).
    pub deny_codes: Vec<String>,
    /// The status of each AgentPromotion of the agent, by name.
    pub promotions: BTreeMap<String, AgentPromotionStatus>,
    pub attempts: Vec<Attempt>,
    pub requeue_after: Option<Duration>,
}

/// Everything the judgement depends on besides the agent and its approvals.
#[derive(Clone, Copy)]
pub struct Judge<'a> {
    pub policy: Option<&'a ActivePolicy>,
    pub bundle_name: &'a str,
    pub keys: &'a KeyRing,
    pub expiry: &'a ExpiryPolicy,
    /// Why the operator may not sign now, if it may not (the admission guards' problems).
    pub guards_missing: Option<&'a str>,
    /// Why the agents' Pods are not checked at admission (the webhook configuration deleted:
    /// break-glass), if they are not: the `AdmissionGuarded` condition says so.
    pub unguarded: Option<&'a str>,
    /// How long an approval may wait for more approvers before it expires.
    pub approval_ttl: SignedDuration,
    pub now: Timestamp,
}

/// One approval, judged.
struct Verdict<'a> {
    facts: &'a ApprovalFacts<'a>,
    /// It approves this spec, of this Agent object.
    current: bool,
    /// The uid of another Agent object of this name that it approved (one deleted since): it
    /// never counts for this one.
    other_object: Option<&'a str>,
    expired: bool,
    decision: Option<PolicyDecision>,
}

impl Verdict<'_> {
    fn allowed(&self) -> bool {
        self.current
            && !self.expired
            && self.facts.authorized
            && self.decision.as_ref().is_some_and(|d| d.allow)
    }
}

impl Judge<'_> {
    pub fn judge(&self, agent: &AgentFacts<'_>, approvals: &[ApprovalFacts<'_>]) -> Judgement {
        let mut judgement = match agent.spec.mode {
            AgentMode::Sandbox => self.sandbox(agent, approvals),
            AgentMode::Governed => self.governed(agent, approvals),
        };
        // Break-glass is recorded on every agent it leaves unguarded; the condition goes when
        // the webhook configuration is back.
        match self.unguarded {
            Some(why) => self.set(
                &mut judgement.status,
                ADMISSION_GUARDED,
                false,
                "WebhookConfigurationMissing",
                why.to_string(),
            ),
            None => judgement
                .status
                .conditions
                .retain(|c| c.type_ != ADMISSION_GUARDED),
        }
        judgement
    }

    /// A fresh status: only the conditions carry over (for their transition times), and only
    /// those the operator sets.
    fn base_status(&self, agent: &AgentFacts<'_>) -> AgentStatus {
        let mut conditions = agent
            .status
            .map(|s| s.conditions.clone())
            .unwrap_or_default();
        conditions
            .retain(|c| [READY, PROMOTED, EXPIRED, ADMISSION_GUARDED].contains(&c.type_.as_str()));
        AgentStatus {
            observed_generation: agent.generation,
            conditions,
            ..AgentStatus::default()
        }
    }

    fn set(&self, status: &mut AgentStatus, type_: &str, ok: bool, reason: &str, msg: String) {
        conditions::upsert(
            &mut status.conditions,
            ConditionUpdate {
                type_,
                status: ok,
                reason,
                message: msg,
            },
            status.observed_generation,
            self.now,
        );
    }

    fn judgement(&self, status: AgentStatus, outcome: Outcome) -> Judgement {
        Judgement {
            status,
            outcome,
            deny_codes: Vec::new(),
            promotions: BTreeMap::new(),
            attempts: Vec::new(),
            requeue_after: None,
        }
    }

    fn sandbox(&self, agent: &AgentFacts<'_>, approvals: &[ApprovalFacts<'_>]) -> Judgement {
        let mut status = self.base_status(agent);
        status.conditions.retain(|c| c.type_ != PROMOTED);
        status.governance_status = Some(GovernanceStatus::Sandbox);
        let expires_at =
            sandbox_expires_at(agent.created, agent.spec.sandbox.as_ref(), self.expiry);
        status.expires_at = Some(Time(expires_at));
        let mut judgement = if self.now >= expires_at {
            let msg = format!("sandbox expired at {expires_at}; promote it or recreate it");
            self.set(&mut status, EXPIRED, true, "Expired", msg.clone());
            self.set(&mut status, READY, false, "Expired", msg);
            self.judgement(status, Outcome::Expired)
        } else {
            let msg = format!("sandbox until {expires_at}");
            self.set(&mut status, EXPIRED, false, "Active", msg.clone());
            self.set(&mut status, READY, true, "Sandbox", msg);
            let wait = self.now.duration_until(expires_at);
            let mut j = self.judgement(status, Outcome::Sandbox);
            // Wake up at expiry rather than poll; a second late so the clock has passed it.
            j.requeue_after =
                Some(Duration::try_from(wait).unwrap_or_default() + Duration::from_secs(1));
            j
        };
        // A sandbox asks for nothing: its approvals are for a governed spec it no longer has.
        let hash = agent.spec_hash.unwrap_or_default();
        judgement.promotions = approvals
            .iter()
            .map(|a| {
                let status =
                    self.superseded(a, spec_moved_on(a, hash, "the agent is a sandbox now"));
                (a.name.to_string(), status)
            })
            .collect();
        judgement
    }

    fn governed(&self, agent: &AgentFacts<'_>, approvals: &[ApprovalFacts<'_>]) -> Judgement {
        let previous = agent.status.cloned().unwrap_or_default();
        // Governed before: as its status says, or as an approval that stands for this very
        // object records (the proof it produced). The status alone is not enough: whoever may write
        // agents/status could set it back to SANDBOX, and a governed agent that fails would
        // then be denied as a sandbox (contained) instead of invalidated (quarantined).
        let was_governed = previous
            .governance_status
            .is_some_and(|g| g != GovernanceStatus::Sandbox)
            || approvals.iter().any(|a| promoted_this_object(a, agent.uid));
        let hash = match agent.spec_hash {
            Ok(h) => h.to_string(),
            Err(e) => {
                let mut j =
                    self.refuse(agent, was_governed, vec![format!("cannot hash spec: {e}")]);
                j.deny_codes = vec!["other".into()];
                return j;
            }
        };
        let Some(policy) = self.policy else {
            let mut j = self.refuse(
                agent,
                was_governed,
                vec![format!(
                    "no PolicyBundle named {} is in force in namespace {}; ask a policy admin to apply one",
                    self.bundle_name, agent.namespace
                )],
            );
            j.deny_codes = vec!["no_policy".into()];
            j.promotions = approvals
                .iter()
                .map(|a| {
                    (
                        a.name.to_string(),
                        self.pending(a, None, "no policy is in force"),
                    )
                })
                .collect();
            return j;
        };
        // Each approval of this spec, judged by the policy with its approver as the actor.
        // The policy reads the approver's username and groups and whether they hold `promote`:
        // one evaluation per distinct actor, not per username (two approvals by one user may
        // carry other groups, stamped at their creation).
        let mut decisions: BTreeMap<(&str, &[String], bool), PolicyDecision> = BTreeMap::new();
        let verdicts: Vec<Verdict<'_>> = approvals
            .iter()
            .map(|a| {
                let other_object = approved_another_object(a, agent.uid);
                let current = a.spec_hash == hash && other_object.is_none();
                let since = valid_since(a);
                let expired = self.now >= since.saturating_add(self.approval_ttl).unwrap_or(since)
                    && a.status.and_then(|s| s.outcome) != Some(PromotionOutcome::Approved);
                let decision = match (current, a.requester) {
                    (true, Some(r)) => Some(
                        decisions
                            .entry((r.username.as_str(), r.groups.as_slice(), a.authorized))
                            .or_insert_with(|| {
                                waive(evaluate(policy, agent, r, a.authorized), agent.exceptions).0
                            })
                            .clone(),
                    ),
                    _ => None,
                };
                Verdict {
                    facts: a,
                    current,
                    other_object,
                    expired,
                    decision,
                }
            })
            .collect();
        // Distinct approvers the policy allows, each by their earliest approval.
        let mut qualified: BTreeMap<&str, &Verdict<'_>> = BTreeMap::new();
        for v in verdicts.iter().filter(|v| v.allowed()) {
            let user = v.facts.requester.map_or("", |r| r.username.as_str());
            let earlier = qualified
                .get(user)
                .is_some_and(|q| q.facts.created <= v.facts.created);
            if !earlier {
                qualified.insert(user, v);
            }
        }
        let required = policy.approvals_required.max(1);
        let approval = ApprovalStatus {
            spec_hash: hash.clone(),
            required: i32::try_from(required).unwrap_or(i32::MAX),
            approved_by: qualified.keys().map(|u| u.to_string()).collect(),
        };
        // What the policy says of the spec itself (all but the actor rule), approved or not.
        // Rules an AgentException waives for this agent are not denies: each becomes a warning
        // naming the exception (so the agent is GOVERNED_RESTRICTED), and the exception goes
        // into the status and the signed proof.
        let (spec_verdict, excepted) = waive(
            policy.engine.judge_spec_input(
                AgentInput {
                    namespace: agent.namespace,
                    name: agent.name,
                    spec: agent.spec,
                },
                agent.namespace_budget,
            ),
            agent.exceptions,
        );
        // The rule `kubectl agentgov policy preview` predicts with: refused, awaiting approval,
        // or in force (restricted when the policy warns).
        let standing = Standing::of(&spec_verdict, qualified.len(), required);
        // Under an `audit` bundle, what it would have denied or warned: reported, never applied.
        let audit: Vec<AuditFinding> = spec_verdict
            .audit
            .iter()
            .map(|d| AuditFinding {
                code: d.code.clone(),
                message: d.message.clone(),
            })
            .collect();
        let (spec_denies, spec_codes, warnings) = (
            spec_verdict.messages(),
            spec_verdict.codes(),
            spec_verdict.warnings,
        );
        // Only the policy's refusal of the spec denies every approval: the wait for more
        // approvals (which may invalidate a governed agent too) is no reason to deny those
        // that count.
        let spec_refused = standing == Standing::Refused;
        let mut judgement = if spec_refused {
            let mut j = self.refuse(agent, was_governed, spec_denies);
            j.status.policy = Some(policy.reference());
            j.status.warnings = warnings;
            j.deny_codes = spec_codes;
            j
        } else if standing == Standing::AwaitingApproval {
            // An approval of another spec of this agent: its spec changed since (stable from one
            // judgement to the next, unlike the proof, which a refusal keeps only while it
            // verifies).
            let changed = verdicts
                .iter()
                .any(|v| !v.current && v.other_object.is_none() && v.facts.requester.is_some());
            self.await_approval(
                agent,
                was_governed,
                changed,
                &hash,
                qualified.len(),
                required,
            )
        } else {
            let approvers: Vec<Approver> = qualified
                .values()
                .filter_map(|v| v.facts.requester)
                .map(|r| Approver {
                    username: r.username.clone(),
                    uid: r.uid.clone(),
                })
                .collect();
            let promotions: Vec<String> = qualified
                .values()
                .map(|v| v.facts.uid.to_string())
                .collect();
            let signed_exceptions: Vec<ProofException> =
                excepted.iter().map(proof_exception).collect();
            self.promote(
                agent,
                &previous,
                policy,
                &hash,
                Grant {
                    approvers: &approvers,
                    promotions: &promotions,
                    exceptions: &signed_exceptions,
                },
                warnings,
            )
        };
        // An agent the operator could not sign keeps the status it had: it is not judged under
        // this policy until it is signed (so a revalidation waits for it).
        if judgement.outcome != Outcome::SigningUnavailable {
            judgement.status.policy = Some(policy.reference());
            judgement.status.approval = Some(approval);
            judgement.status.audit = audit;
            judgement.status.exceptions = excepted;
        }
        // An exception ends by itself: judge the agent again when the first one in force ends.
        if let Some(at) = next_expiry(agent.exceptions)
            && let Ok(wait) = Duration::try_from(self.now.duration_until(at))
        {
            let wait = wait + Duration::from_secs(1);
            judgement.requeue_after = Some(judgement.requeue_after.map_or(wait, |r| r.min(wait)));
        }
        // Each approval's own status.
        let promoted = judgement
            .status
            .governance_status
            .is_some_and(|g| g.is_governed_in_force());
        let proof = judgement.status.proof.clone();
        let refusal = if spec_refused {
            judgement.status.denies.clone()
        } else {
            Vec::new()
        };
        for v in &verdicts {
            let status = self.approval_status(
                v,
                &hash,
                policy,
                promoted,
                proof.as_ref(),
                &refusal,
                required,
                qualified.len(),
            );
            let first =
                v.facts.status.and_then(|s| s.outcome).is_none() && status.outcome.is_some();
            if first && v.current {
                let (codes, denies) = match &v.decision {
                    Some(d) if !d.allow => (d.codes(), d.messages()),
                    _ if !v.facts.authorized => {
                        (vec![ACTOR_CODE.to_string()], status.denies.clone())
                    }
                    _ => (Vec::new(), Vec::new()),
                };
                judgement.attempts.push(Attempt {
                    promotion: v.facts.name.to_string(),
                    uid: v.facts.uid.to_string(),
                    requester: v
                        .facts
                        .requester
                        .map_or_else(String::new, |r| r.username.clone()),
                    outcome: status.outcome.unwrap_or(PromotionOutcome::Pending),
                    deny_codes: codes,
                    denies,
                });
            }
            judgement
                .promotions
                .insert(v.facts.name.to_string(), status);
        }
        judgement
    }

    /// The agent signed (or its proof kept) under these approvals.
    #[allow(clippy::too_many_arguments)]
    fn promote(
        &self,
        agent: &AgentFacts<'_>,
        previous: &AgentStatus,
        policy: &ActivePolicy,
        hash: &str,
        grant: Grant<'_>,
        warnings: Vec<String>,
    ) -> Judgement {
        let Grant {
            approvers,
            promotions,
            exceptions,
        } = grant;
        let restricted = !warnings.is_empty();
        // A proof that still holds is kept (not signed again): same spec, policy, approvals and
        // object, key not revoked, signature valid.
        let kept = previous.proof.as_ref().filter(|p| {
            previous
                .governance_status
                .is_some_and(|g| g.is_governed_in_force())
                && p.version >= 2
                && p.spec_hash == hash
                && p.policy_hash == policy.hash()
                && p.approvers == sorted(approvers)
                && p.promotions == sorted(promotions)
                && p.exceptions == sorted(exceptions)
                && proof::verify(self.keys, subject(agent), p).is_ok()
        });
        let (proof, outcome) = match kept {
            Some(p) => (p.clone(), Outcome::Kept),
            None => {
                if let Some(why) = self.guards_missing {
                    return self.cannot_sign(previous, format!("the operator signs nothing while the admission guards are not in place: {why}"), "TrustGuardsMissing");
                }
                let claims = Claims {
                    spec_hash: hash,
                    policy_hash: policy.hash(),
                    approvers,
                    promotions,
                    exceptions,
                };
                match proof::sign(self.keys, subject(agent), claims, self.now) {
                    Ok(p) if restricted => (p, Outcome::Restricted),
                    Ok(p) => (p, Outcome::Promoted),
                    Err(e) => {
                        return self.cannot_sign(
                            previous,
                            format!("the operator cannot sign: {e}"),
                            "SigningUnavailable",
                        );
                    }
                }
            }
        };
        let mut status = self.base_status(agent);
        status.conditions.retain(|c| c.type_ != EXPIRED);
        status.governance_status = Some(if restricted {
            GovernanceStatus::GovernedRestricted
        } else {
            GovernanceStatus::GovernedValid
        });
        status.warnings = warnings;
        let (reason, msg) = in_force_reason(&status.warnings, &proof);
        status.proof = Some(proof);
        self.set(&mut status, PROMOTED, true, reason, msg.clone());
        self.set(&mut status, READY, true, reason, msg);
        self.judgement(status, outcome)
    }

    /// Signing is not possible now: everything stays as it was, but Ready says why; look again.
    fn cannot_sign(&self, previous: &AgentStatus, message: String, reason: &str) -> Judgement {
        let mut status = previous.clone();
        self.set(&mut status, READY, false, reason, message);
        let mut j = self.judgement(status, Outcome::SigningUnavailable);
        j.requeue_after = Some(Duration::from_secs(30));
        j
    }

    /// Not (yet) approved by enough identities.
    fn await_approval(
        &self,
        agent: &AgentFacts<'_>,
        was_governed: bool,
        changed: bool,
        hash: &str,
        have: usize,
        required: usize,
    ) -> Judgement {
        let wanted = format!(
            "approve spec hash {hash} with an AgentPromotion ({have} of {required} approvals)"
        );
        if was_governed {
            let why = if changed {
                format!("the spec changed since it was approved; {wanted}")
            } else {
                format!("the agent is no longer approved; {wanted}")
            };
            let mut j = self.refuse(agent, true, vec![why]);
            j.deny_codes = vec!["approval".into()];
            return j;
        }
        let mut status = self.base_status(agent);
        status.conditions.retain(|c| c.type_ != EXPIRED);
        status.governance_status = Some(GovernanceStatus::Sandbox);
        self.set(
            &mut status,
            PROMOTED,
            false,
            "AwaitingApproval",
            wanted.clone(),
        );
        self.set(&mut status, READY, false, "AwaitingApproval", wanted);
        self.judgement(status, Outcome::AwaitingApproval)
    }

    /// Keep the agent out of the governed tier: a first request stays SANDBOX, a governed agent
    /// falls to GOVERNED_INVALIDATED and keeps its last proof as the record of what was approved
    /// (admission refuses it: the checks say what no longer holds).
    fn refuse(&self, agent: &AgentFacts<'_>, was_governed: bool, denies: Vec<String>) -> Judgement {
        let mut status = self.base_status(agent);
        if was_governed {
            // Only a proof the operator's keys signed for this very agent: the status may have
            // been written by someone else.
            status.proof = agent
                .status
                .and_then(|s| s.proof.clone())
                .filter(|p| proof::verify(self.keys, subject(agent), p).is_ok());
        }
        status.conditions.retain(|c| c.type_ != EXPIRED);
        let (governance, outcome, reason) = if was_governed {
            (
                GovernanceStatus::GovernedInvalidated,
                Outcome::Invalidated,
                "Invalidated",
            )
        } else {
            (GovernanceStatus::Sandbox, Outcome::Denied, "PolicyDenied")
        };
        status.governance_status = Some(governance);
        let msg = denies.join("; ");
        status.denies = denies;
        self.set(&mut status, PROMOTED, false, reason, msg.clone());
        self.set(&mut status, READY, false, reason, msg);
        self.judgement(status, outcome)
    }

    /// What became of one approval.
    #[allow(clippy::too_many_arguments)]
    fn approval_status(
        &self,
        v: &Verdict<'_>,
        hash: &str,
        policy: &ActivePolicy,
        promoted: bool,
        proof: Option<&ProofBundle>,
        refusal: &[String],
        required: usize,
        have: usize,
    ) -> AgentPromotionStatus {
        let a = v.facts;
        if let Some(other) = v.other_object {
            return self.superseded(
                a,
                format!(
                    "it approved another Agent object of this name (uid {}), deleted since: a re-created agent needs its own approval",
                    short(other)
                ),
            );
        }
        if !v.current {
            return self.superseded(
                a,
                spec_moved_on(a, hash, "the agent's spec is no longer the one approved"),
            );
        }
        let Some(requester) = a.requester else {
            return self.decided(a, Some(policy), PromotionOutcome::Denied, vec![
                "spec.requestedBy is missing: the API server did not record who asked (are the admission guards installed?)".into(),
            ], None);
        };
        let named = proof.is_some_and(|p| p.promotions.iter().any(|u| u == a.uid));
        if promoted && named {
            let link = proof.map(|p| ProofLink {
                agent_uid: p.agent_uid.clone(),
                key_id: p.key_id.clone(),
                signed_at: p.signed_at.clone(),
            });
            return self.decided(
                a,
                Some(policy),
                PromotionOutcome::Approved,
                Vec::new(),
                link,
            );
        }
        if !a.authorized {
            return self.decided(
                a,
                Some(policy),
                PromotionOutcome::Denied,
                vec![format!(
                    "{} does not hold the verb 'promote' on the agent (now)",
                    requester.username
                )],
                None,
            );
        }
        if let Some(d) = v.decision.as_ref().filter(|d| !d.allow) {
            return self.decided(
                a,
                Some(policy),
                PromotionOutcome::Denied,
                d.messages(),
                None,
            );
        }
        if v.expired {
            return self.decided(
                a,
                Some(policy),
                PromotionOutcome::Expired,
                vec![format!(
                    "it waited longer than {} for more approvers",
                    self.approval_ttl
                )],
                None,
            );
        }
        if !refusal.is_empty() {
            return self.decided(
                a,
                Some(policy),
                PromotionOutcome::Denied,
                refusal.to_vec(),
                None,
            );
        }
        let why = match self.guards_missing {
            Some(g) => format!(
                "the operator signs nothing while the admission guards are not in place: {g}"
            ),
            None => format!("{have} of {required} approvals"),
        };
        self.pending(a, Some(policy), &why)
    }

    fn pending(
        &self,
        a: &ApprovalFacts<'_>,
        policy: Option<&ActivePolicy>,
        why: &str,
    ) -> AgentPromotionStatus {
        self.decided(
            a,
            policy,
            PromotionOutcome::Pending,
            vec![why.to_string()],
            None,
        )
    }

    fn superseded(&self, a: &ApprovalFacts<'_>, why: String) -> AgentPromotionStatus {
        let mut status = self.decided(a, None, PromotionOutcome::Superseded, vec![why], None);
        // The record that it was approved (the proof it produced) stays: a rollback to its spec
        // reuses it for `approval_ttl` after it was superseded ([`valid_since`]).
        status.proof = a
            .status
            .filter(|s| {
                matches!(
                    s.outcome,
                    Some(PromotionOutcome::Approved | PromotionOutcome::Superseded)
                )
            })
            .and_then(|s| s.proof.clone());
        status
    }

    /// An approval's status with `outcome`; the decision time carries over while the outcome
    /// holds.
    fn decided(
        &self,
        a: &ApprovalFacts<'_>,
        policy: Option<&ActivePolicy>,
        outcome: PromotionOutcome,
        denies: Vec<String>,
        proof: Option<ProofLink>,
    ) -> AgentPromotionStatus {
        let previous = a.status.cloned().unwrap_or_default();
        let decided_at = match previous.decided_at {
            Some(t) if previous.outcome == Some(outcome) => Some(t),
            _ => Some(Time(self.now)),
        };
        // An approval that stays Approved keeps the record of its decision: the policy and the
        // proof it was approved with. Re-signing the agent later (a new policy, a new key) shows
        // in the agent's proof, which names this approval; it does not rewrite the approval, so
        // that a revalidation writes each agent once, not its approvals too.
        let (policy_hash, proof) = match previous.proof {
            Some(link)
                if outcome == PromotionOutcome::Approved
                    && previous.outcome == Some(outcome)
                    && proof.is_some() =>
            {
                (previous.policy_hash.clone(), Some(link))
            }
            _ => (policy.map(|p| p.hash().to_string()), proof),
        };
        let mut conditions = previous.conditions.clone();
        conditions.retain(|c| c.type_ == READY);
        // Ready (kstatus, Argo CD): the approval did its job, or has been outlived; Pending waits,
        // Denied and Expired failed.
        let ready = matches!(
            outcome,
            PromotionOutcome::Approved | PromotionOutcome::Superseded
        );
        conditions::upsert(
            &mut conditions,
            ConditionUpdate {
                type_: READY,
                status: ready,
                reason: outcome.as_str(),
                message: if denies.is_empty() {
                    outcome.as_str().to_string()
                } else {
                    denies.join("; ")
                },
            },
            Some(1),
            self.now,
        );
        AgentPromotionStatus {
            outcome: Some(outcome),
            policy_hash,
            denies,
            proof,
            decided_at,
            observed_generation: Some(1),
            conditions,
        }
    }
}

/// What a promotion is granted under: the approvers, their AgentPromotions' uids, and the
/// AgentExceptions that waived rules.
#[derive(Clone, Copy)]
struct Grant<'a> {
    approvers: &'a [Approver],
    promotions: &'a [String],
    exceptions: &'a [ProofException],
}

/// An applied exception as the proof records it.
fn proof_exception(applied: &AppliedException) -> ProofException {
    ProofException {
        name: applied.name.clone(),
        rules: applied.rules.clone(),
        expires_at: proof::format_signed_at(applied.expires_at.0),
        requested_by: applied.requested_by.clone().unwrap_or_default(),
    }
}

/// The policy's answer for this agent with `requester` as the actor (an evaluation that fails
/// is a deny with the code `policy_error`).
fn evaluate(
    policy: &ActivePolicy,
    agent: &AgentFacts<'_>,
    requester: &Requester,
    authorized: bool,
) -> PolicyDecision {
    let actor = Actor::approver(requester, authorized);
    policy.engine.judge_input(&PolicyInput {
        agent: AgentInput {
            namespace: agent.namespace,
            name: agent.name,
            spec: agent.spec,
        },
        actor: &actor,
        namespace: agent.namespace_budget,
    })
}

/// Why an approval of another spec no longer counts.
fn spec_moved_on(a: &ApprovalFacts<'_>, hash: &str, why: &str) -> String {
    format!(
        "{why}: it approves {} but the spec hashes to {}",
        short(a.spec_hash),
        short(hash)
    )
}

/// Whether an approval stands as the one the Agent object `agent_uid` is promoted under (it is
/// `Approved`, linking the proof it produced; once the spec moves on it is `Superseded`).
fn promoted_this_object(a: &ApprovalFacts<'_>, agent_uid: &str) -> bool {
    a.status.is_some_and(|s| {
        s.outcome == Some(PromotionOutcome::Approved)
            && s.proof
                .as_ref()
                .is_some_and(|link| !agent_uid.is_empty() && link.agent_uid == agent_uid)
    })
}

/// The uid of the Agent object an approval produced a proof for, when that is not `agent_uid`:
/// an AgentPromotion names its agent by name, and an Agent deleted and created again under the
/// same name is another object, whose Pods the webhook refuses the old proof
/// (`proof.agentUid`). So its approvals do not carry over either: the new object is promoted
/// only under approvals that have not yet promoted another (a pending one, made before or after
/// it was created, still counts).
fn approved_another_object<'a>(a: &ApprovalFacts<'a>, agent_uid: &str) -> Option<&'a str> {
    let link = a.status?.proof.as_ref()?;
    let approved = matches!(
        a.status?.outcome,
        Some(PromotionOutcome::Approved | PromotionOutcome::Superseded)
    );
    (approved && !link.agent_uid.is_empty() && link.agent_uid != agent_uid)
        .then_some(link.agent_uid.as_str())
}

/// From when an approval's `approval_ttl` runs: its creation, or, for one that was approved
/// (its status links the proof it produced) and then superseded, the time it was superseded. So
/// a rollback to an approved spec soon after it changed reuses the approval however old it is,
/// while one superseded long ago, like one never approved, needs a new approval.
fn valid_since(a: &ApprovalFacts<'_>) -> Timestamp {
    match a.status {
        Some(AgentPromotionStatus {
            outcome: Some(PromotionOutcome::Superseded),
            proof: Some(_),
            decided_at: Some(at),
            ..
        }) => at.0.max(a.created),
        _ => a.created,
    }
}

fn sorted<T: Ord + Clone>(items: &[T]) -> Vec<T> {
    let mut items = items.to_vec();
    items.sort();
    items.dedup();
    items
}

/// The reason and message of Promoted/Ready for an agent whose proof is in force.
fn in_force_reason(warnings: &[String], proof: &ProofBundle) -> (&'static str, String) {
    let approvers: Vec<&str> = proof
        .approvers
        .iter()
        .map(|a| a.username.as_str())
        .collect();
    if warnings.is_empty() {
        (
            "Promoted",
            format!(
                "approved by {}; signed by key {}",
                approvers.join(", "),
                proof.key_id
            ),
        )
    } else {
        (
            "Restricted",
            format!(
                "approved by {}, with restrictions: {}",
                approvers.join(", "),
                warnings.join("; ")
            ),
        )
    }
}

fn subject<'a>(agent: &AgentFacts<'a>) -> ProofSubject<'a> {
    ProofSubject {
        namespace: agent.namespace,
        name: agent.name,
        uid: agent.uid,
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

#[cfg(test)]
#[path = "judge_tests.rs"]
mod tests;
