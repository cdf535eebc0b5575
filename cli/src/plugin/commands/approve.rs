//! `approve`: a further approval of an agent awaiting more approvers (the policy's
//! `approvals.required`), through `promote`'s path.

use clap::Args;
use jiff::SignedDuration;

use crate::plugin::cluster::DryRun;
use crate::plugin::commands::promote::{submit, wait_promoted};
use crate::plugin::{Error, Global, cluster_and_namespace, filter, output, print, promote};

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The agent whose current spec to approve.
    name: String,
    /// Why, for the record (a change ticket, a review link): the AgentPromotion's spec.reason.
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// Follow the agent until it is GOVERNED_VALID or GOVERNED_RESTRICTED for this spec (exit
    /// 0), or the approval is denied or the timeout passes (exit 1).
    #[arg(long)]
    wait: bool,
    /// How long `--wait` waits (like 60s, 5m or 1h30m).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = filter::parse_within)]
    timeout: SignedDuration,
    /// `client`: print the AgentPromotion, create nothing; `server`: have the API server and
    /// admission judge it, persist nothing.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = DryRun::None)]
    dry_run: DryRun,
}

pub async fn run(global: &Global, args: ApproveArgs) -> Result<(), Error> {
    let (cluster, ns) = cluster_and_namespace(global).await?;
    let agent = cluster.get(&ns, &args.name).await?;
    let promotions = cluster.promotions(&ns).await?;
    let me = cluster.username().await?;
    let awaiting = promote::awaiting(&agent, &promotions, &me)?;
    let submitted = submit(&cluster, &agent, args.reason, args.dry_run).await?;
    print(&output::created(
        global.output,
        &submitted.promotion,
        args.dry_run,
    )?)?;
    // Who approved, on stderr as progress, so `-o yaml|json|name` stay documents.
    eprintln!(
        "{}{}",
        awaiting.with(&promote::id(&agent), &me),
        args.dry_run.suffix()
    );
    if !args.wait || args.dry_run != DryRun::None {
        return Ok(());
    }
    let name = submitted.promotion.metadata.name.unwrap_or_default();
    wait_promoted(
        &cluster,
        &ns,
        &args.name,
        &name,
        &submitted.hash,
        args.timeout,
    )
    .await
}
