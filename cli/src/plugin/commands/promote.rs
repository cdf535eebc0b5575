//! `promote`: the policy's answer by a server dry run, then the AgentPromotion for the
//! current spec hash; `--wait` follows it to the outcome.

use clap::Args;
use jiff::SignedDuration;

use crate::plugin::cluster::{Cluster, DryRun};
use crate::plugin::promote::{self, Progress};
use crate::plugin::{Error, Global, cluster_and_namespace, filter, output, print, warn};

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The agent to approve, as its spec is now.
    name: String,
    /// Follow the agent until it is GOVERNED_VALID or GOVERNED_RESTRICTED for this spec (exit
    /// 0), or the promotion is denied or the timeout passes (exit 1).
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
    let id = promote::id(&agent);
    promote::promotable(&agent)?;
    let hash = agentgov_api::hash::spec_hash(&agent.spec).map_err(|e| Error::Hash {
        agent: id.clone(),
        message: e.to_string(),
    })?;
    let short = hash.get(..12).unwrap_or(&hash);
    let mut promotion = promote::promotion(&args.name, &ns, &hash, args.reason);
    if args.dry_run == DryRun::Client {
        return print(&output::created(global.output, &promotion, args.dry_run)?);
    }
    // The policy's answer first: a dry run that the webhook (the policy in force, with this
    // user as the approver) and the API server's guards judge. A name already taken (this
    // spec approved before) gets a generated one.
    let action = format!("approve agent {id} at spec hash {short}");
    let judged = match cluster.create(&ns, &promotion, true, &action).await {
        Err(Error::AlreadyExists { .. }) => {
            promotion = promote::with_generated_name(promotion);
            cluster.create(&ns, &promotion, true, &action).await?
        }
        answer => answer?,
    };
    eprintln!("the policy in force allows approving agent {id} at spec hash {short}");
    warn(&judged.warnings);
    if args.dry_run == DryRun::Server {
        return print(&output::created(
            global.output,
            &judged.object,
            args.dry_run,
        )?);
    }
    let created = cluster.create(&ns, &promotion, false, &action).await?;
    print(&output::created(
        global.output,
        &created.object,
        args.dry_run,
    )?)?;
    if !args.wait {
        return Ok(());
    }
    let name = created.object.metadata.name.unwrap_or_default();
    wait_promoted(&cluster, &ns, &args.name, &name, &hash, args.timeout).await
}

/// `promote --wait`: poll the agent and its promotion until `promote::progress` decides,
/// printing each new progress line on stderr.
async fn wait_promoted(
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
                    hash.get(..12).unwrap_or(hash)
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
