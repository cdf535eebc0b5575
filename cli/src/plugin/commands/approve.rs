//! `approve`: a further approval of an agent awaiting more approvers (the policy's
//! `approvals.required`), through `promote`'s path.

use clap::Args;

use crate::plugin::commands::promote::{ApprovalArgs, approve};
use crate::plugin::{Error, Global, cluster_and_namespace, promote};

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The agent whose current spec to approve.
    name: String,
    #[command(flatten)]
    approval: ApprovalArgs,
}

pub async fn run(global: &Global, args: ApproveArgs) -> Result<(), Error> {
    let (cluster, ns) = cluster_and_namespace(global).await?;
    let agent = cluster.get(&ns, &args.name).await?;
    let promotions = cluster.promotions(&ns).await?;
    let me = cluster.username().await?;
    let awaiting = promote::awaiting(&agent, &promotions, &me)?;
    // Who approved, on stderr as progress, so `-o yaml|json|name` stay documents.
    let id = promote::id(&agent);
    approve(global, &cluster, &agent, args.approval, |dry_run| {
        eprintln!("{}{}", awaiting.with(&id, &me), dry_run.suffix());
    })
    .await
}
