//! `bulk`: extend, demote, delete or promote every agent a selection names (`list`'s filters),
//! with a preview, a confirmation and one result line per agent.

use std::io::{BufRead, IsTerminal, Write};

use agentgov_api::Agent;
use clap::{Args, Subcommand};
use jiff::SignedDuration;

use crate::plugin::bulk::{self, Change, Operation, Step};
use crate::plugin::cluster::{Cluster, DryRun};
use crate::plugin::commands::list::{SelectArgs, Selection, select};
use crate::plugin::commands::promote::submit;
use crate::plugin::{Error, Global, filter, print, warn};

#[derive(Debug, Args)]
pub struct BulkArgs {
    #[command(subcommand)]
    operation: BulkCommand,
}

#[derive(Debug, Subcommand)]
enum BulkCommand {
    /// Move each selected sandbox's expiry later by --by (spec.sandbox.expiresAt if it has
    /// one, else spec.sandbox.ttlSeconds). Admission allows it only to someone holding the verb
    /// `extend` on agents, and no sandbox outlives the maximum sandbox TTL from its creation.
    /// Governed agents are skipped.
    #[command(after_help = "Examples:\n  \
        kubectl agentgov bulk extend --by 24h -l team=finance\n  \
        kubectl agentgov bulk extend --by 2h --expiring-within 1h -A --yes")]
    Extend {
        /// How much later (like 24h, 90m or 1h30m).
        #[arg(long, value_name = "DURATION", value_parser = filter::parse_within)]
        by: SignedDuration,
        #[command(flatten)]
        common: Common,
    },
    /// Take each selected governed agent out of the governed tier: it becomes a sandbox
    /// (spec.mode: sandbox) that expires --ttl from now (spec.sandbox.expiresAt), with its
    /// containment closed (externalCalls and persistentWrites false, as every sandbox must
    /// be); the rest of its spec stays. Its proof no longer covers it, so its Pods are held to
    /// sandbox rules; `promote` it again to return. Admission treats the new life as an
    /// extension (the verb `extend`). Sandboxes are skipped.
    #[command(after_help = "Examples:\n  \
        kubectl agentgov bulk demote --status governed_invalidated\n  \
        kubectl agentgov bulk demote -l team=finance --ttl 72h --yes")]
    Demote {
        /// How long each demoted agent lives as a sandbox (like 24h or 72h).
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = filter::parse_within)]
        ttl: SignedDuration,
        #[command(flatten)]
        common: Common,
    },
    /// Delete every selected agent.
    #[command(after_help = "Examples:\n  \
        kubectl agentgov bulk delete --mode sandbox -l team=lab\n  \
        kubectl agentgov bulk delete --search scratch --dry-run=server")]
    Delete {
        #[command(flatten)]
        common: Common,
    },
    /// Approve each selected governed agent's current spec with an AgentPromotion, as
    /// `promote` does (the policy's answer first). Sandboxes and agents already in force for
    /// their spec are skipped.
    #[command(after_help = "Examples:\n  \
        kubectl agentgov bulk promote -l release=2026-q4 --reason CHG-1234\n  \
        kubectl agentgov bulk promote --status sandbox --mode governed --yes")]
    Promote {
        /// Why, for the record: each AgentPromotion's spec.reason.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        #[command(flatten)]
        common: Common,
    },
}

/// The selection and the flags every operation takes.
#[derive(Debug, Args)]
struct Common {
    #[command(flatten)]
    select: SelectArgs,
    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    yes: bool,
    /// `client`: show what would change, send nothing; `server`: have the API server and
    /// admission judge each change, persist nothing. No confirmation is asked for either.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = DryRun::None)]
    dry_run: DryRun,
}

pub async fn run(global: &Global, args: BulkArgs) -> Result<(), Error> {
    let (operation, reason, common) = match args.operation {
        BulkCommand::Extend { by, common } => (Operation::Extend(by), None, common),
        BulkCommand::Demote { ttl, common } => (Operation::Demote(ttl), None, common),
        BulkCommand::Delete { common } => (Operation::Delete, None, common),
        BulkCommand::Promote { reason, common } => (Operation::Promote, reason, common),
    };
    let Selection {
        cluster,
        scope,
        agents,
        now,
    } = select(global, common.select).await?;
    if agents.is_empty() {
        eprintln!("{}", scope.none_found());
        return Ok(());
    }
    let steps = bulk::plan(operation, &agents, now);
    eprint!("{}", bulk::preview(&steps));
    if steps.iter().all(Step::is_skipped) {
        eprintln!("nothing to change");
        return Ok(());
    }
    if common.dry_run == DryRun::None && !common.yes {
        confirm()?;
    }
    let mut failed = 0;
    for (step, agent) in steps.iter().zip(&agents) {
        let line = match apply(
            &cluster,
            operation,
            step,
            agent,
            reason.clone(),
            common.dry_run,
        )
        .await
        {
            Ok(Some(done)) => format!("{done}{}", common.dry_run.suffix()),
            Ok(None) => continue,
            Err(e) => {
                failed += 1;
                format!("error: {e}")
            }
        };
        print(&format!("agent {}: {line}\n", step.agent))?;
    }
    let tried = steps.iter().filter(|s| !s.is_skipped()).count();
    match failed {
        0 => Ok(()),
        n => Err(Error::Usage(format!("{n} of {tried} agents failed"))),
    }
}

/// Ask on the terminal; refuse when there is none to ask on.
fn confirm() -> Result<(), Error> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Error::Usage(
            "stdin is not a terminal, so there is no one to confirm: pass --yes to proceed (nothing was changed)".into(),
        ));
    }
    eprint!("Proceed? [y/N] ");
    std::io::stderr().flush().map_err(Error::Output)?;
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Error::Usage(format!("cannot read the answer: {e}")))?;
    if bulk::confirmed(&answer) {
        Ok(())
    } else {
        Err(Error::Usage("not confirmed: nothing was changed".into()))
    }
}

/// Do one step; what was done, for its result line (`None`: skipped, nothing to report).
async fn apply(
    cluster: &Cluster,
    operation: Operation,
    step: &Step,
    agent: &Agent,
    reason: Option<String>,
    dry_run: DryRun,
) -> Result<Option<String>, Error> {
    let (ns, name) = (step.namespace.as_str(), step.name.as_str());
    let action = |verb: &str| format!("{verb} agent {}", step.agent);
    match &step.change {
        Change::Skip(_) => Ok(None),
        Change::Patch(patch) => {
            let after = match dry_run {
                DryRun::Client => {
                    bulk::patched(agent, patch).map_err(|e| Error::Encode(e.to_string()))?
                }
                _ => {
                    let verb = match operation {
                        Operation::Demote(_) => "demote",
                        _ => "extend",
                    };
                    let answer = cluster
                        .patch_agent(ns, name, patch, dry_run == DryRun::Server, &action(verb))
                        .await?;
                    warn(&answer.warnings);
                    answer.object
                }
            };
            Ok(Some(bulk::done(operation, Some(&after), None)))
        }
        Change::Delete => {
            if dry_run != DryRun::Client {
                cluster
                    .delete_agent(ns, name, dry_run == DryRun::Server, &action("delete"))
                    .await?;
            }
            Ok(Some(bulk::done(operation, None, None)))
        }
        Change::Promote => {
            let submitted = submit(cluster, agent, reason, dry_run).await?;
            let meta = &submitted.promotion.metadata;
            let promotion = meta.name.as_deref().or(meta.generate_name.as_deref());
            Ok(Some(bulk::done(operation, None, promotion)))
        }
    }
}
