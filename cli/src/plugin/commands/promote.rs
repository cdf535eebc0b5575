//! `promote`: the policy's answer by a server dry run, then the AgentPromotion for the
//! current spec hash; `--wait` follows it to the outcome.

use agentgov_api::{Agent, AgentPromotion};
use clap::Args;
use jiff::SignedDuration;

use crate::plugin::cluster::{Cluster, DryRun};
use crate::plugin::promote::{self, Progress};
use crate::plugin::{Error, Global, cluster_and_namespace, filter, output, print, warn};

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The agent to approve, as its spec is now.
    name: String,
    #[command(flatten)]
    approval: ApprovalArgs,
}

/// The flags `promote` and `approve` share.
#[derive(Debug, Args)]
pub struct ApprovalArgs {
    /// Follow the agent until it is GOVERNED_VALID or GOVERNED_RESTRICTED for this spec (exit
    /// 0), or the approval is denied or the timeout passes (exit 1).
    #[arg(long)]
    wait: bool,
    /// How long `--wait` waits (like 60s, 5m or 1h30m).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = filter::parse_within)]
    timeout: SignedDuration,
    /// Why, for the record (a change ticket, a review link): the AgentPromotion's spec.reason.
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// `client`: print the AgentPromotion, create nothing; `server`: have the API server and
    /// admission judge it, persist nothing.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = DryRun::None)]
    dry_run: DryRun,
}

pub async fn run(global: &Global, args: PromoteArgs) -> Result<(), Error> {
    let (cluster, ns) = cluster_and_namespace(global).await?;
    let agent = cluster.get(&ns, &args.name).await?;
    promote::promotable(&agent)?;
    approve(global, &cluster, &agent, args.approval, |_| {}).await
}

/// Submit an approval of `agent`'s current spec ([`submit`]), print it, call `then` with what
/// was submitted (before any waiting), and with `--wait` follow it to the outcome.
pub async fn approve(
    global: &Global,
    cluster: &Cluster,
    agent: &Agent,
    args: ApprovalArgs,
    then: impl FnOnce(DryRun),
) -> Result<(), Error> {
    let submitted = submit(cluster, agent, args.reason, args.dry_run).await?;
    print(&output::created(
        global.output,
        &submitted.promotion,
        args.dry_run,
    )?)?;
    then(args.dry_run);
    if !args.wait || args.dry_run != DryRun::None {
        return Ok(());
    }
    let ns = agent.metadata.namespace.as_deref().unwrap_or_default();
    let name = agent.metadata.name.as_deref().unwrap_or_default();
    let promotion = submitted.promotion.metadata.name.unwrap_or_default();
    wait_promoted(cluster, ns, name, &promotion, &submitted.hash, args.timeout).await
}

/// What [`submit`] made: the AgentPromotion as created (as it would be, on a dry run), and the
/// spec hash it approves.
pub struct Submitted {
    pub promotion: AgentPromotion,
    pub hash: String,
}

/// Approve `agent`'s current spec: on `--dry-run=client` only the AgentPromotion built; else
/// first the policy's answer (a server dry run that the webhook, with this user as the
/// approver, and the API server's guards judge; its warnings printed), then, unless
/// `--dry-run=server`, the AgentPromotion created. A name already taken (this spec approved
/// before) gets a generated one. `promote`, `approve` and `bulk promote` share it.
pub async fn submit(
    cluster: &Cluster,
    agent: &Agent,
    reason: Option<String>,
    dry_run: DryRun,
) -> Result<Submitted, Error> {
    let id = promote::id(agent);
    let ns = agent.metadata.namespace.as_deref().unwrap_or_default();
    let name = agent.metadata.name.as_deref().unwrap_or_default();
    let hash = promote::current_hash(agent)?;
    let mut promotion = promote::promotion(name, ns, &hash, reason);
    if dry_run == DryRun::Client {
        return Ok(Submitted { promotion, hash });
    }
    let short = promote::short(&hash);
    let action = format!("approve agent {id} at spec hash {short}");
    let judged = match cluster.create(ns, &promotion, true, &action).await {
        Err(Error::AlreadyExists { .. }) => {
            promotion = promote::with_generated_name(promotion);
            cluster.create(ns, &promotion, true, &action).await?
        }
        answer => answer?,
    };
    eprintln!("the policy in force allows approving agent {id} at spec hash {short}");
    warn(&judged.warnings);
    if dry_run == DryRun::Server {
        return Ok(Submitted {
            promotion: judged.object,
            hash,
        });
    }
    let created = cluster.create(ns, &promotion, false, &action).await?;
    Ok(Submitted {
        promotion: created.object,
        hash,
    })
}

/// `promote --wait` (and `approve --wait`): poll the agent and its promotion until `promote::progress` decides,
/// printing each new progress line on stderr.
pub async fn wait_promoted(
    cluster: &Cluster,
    ns: &str,
    agent: &str,
    promotion: &str,
    hash: &str,
    timeout: SignedDuration,
) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + timeout.unsigned_abs();
    let mut last = String::new();
    loop {
        let current = cluster.get(ns, agent).await?;
        let approval = cluster.get_promotion(ns, promotion).await?;
        match promote::progress(&current, &approval, hash) {
            Progress::Promoted(status) => {
                eprintln!(
                    "agent {} is {} for spec hash {}",
                    promote::id(&current),
                    status.as_str(),
                    promote::short(hash)
                );
                return Ok(());
            }
            Progress::Failed(sentence) => return Err(Error::NotPromoted(sentence)),
            Progress::Waiting(line) if line != last => {
                eprintln!("{line}");
                last = line;
            }
            Progress::Waiting(_) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            let state = last.strip_prefix("waiting: ").unwrap_or(&last);
            return Err(Error::NotPromoted(format!(
                "agent {ns}/{agent} was not promoted within {timeout:#}: {state}"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}
