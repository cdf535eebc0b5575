//! `list`: agents as `kubectl get agents` prints them, narrowed by filters. The filters
//! ([`SelectArgs`]) are `bulk`'s selection too.

use agentgov_api::Agent;
use clap::Args;
use jiff::Timestamp;

use agentgov_api::agent::{AgentMode, GovernanceStatus, RoleClass};

use crate::plugin::cluster::{Cluster, Scope};
use crate::plugin::filter::{self, Filter};
use crate::plugin::{Error, Global, cluster_and_scope, output, print};

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    select: SelectArgs,
}

/// Which agents a command covers, besides `-n`/`-A`: the flags of `list` and `bulk`.
#[derive(Debug, Args)]
pub struct SelectArgs {
    /// Only agents with this governance status (SANDBOX, GOVERNED_VALID, GOVERNED_RESTRICTED,
    /// GOVERNED_INVALIDATED; any case).
    #[arg(long, value_name = "STATUS", value_parser = filter::parse_status)]
    status: Option<GovernanceStatus>,
    /// Only agents of this role class (compliance, analysis, ideation).
    #[arg(long, value_name = "ROLE", value_parser = filter::parse_role)]
    role: Option<RoleClass>,
    /// Only agents in this mode (sandbox or governed).
    #[arg(long, value_name = "MODE", value_parser = filter::parse_mode)]
    mode: Option<AgentMode>,
    /// Only sandboxes that expire within this long from now (like 24h or 90m).
    #[arg(long, value_name = "DURATION", value_parser = filter::parse_within)]
    expiring_within: Option<jiff::SignedDuration>,
    /// Only agents whose name, description or capabilities contain TEXT (any case).
    #[arg(long, value_name = "TEXT")]
    search: Option<String>,
    /// A label selector, passed to the API server (like `team=finance,tier!=test`).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    selector: Option<String>,
}

/// The agents a selection names, sorted by namespace and name, read at `now`.
pub struct Selection {
    pub cluster: Cluster,
    pub scope: Scope,
    pub agents: Vec<Agent>,
    pub now: Timestamp,
}

/// Connect, list the agents in scope (`-A`, `-n`, else the context's namespace) matching the
/// label selector, and keep those the other filters match.
pub async fn select(global: &Global, args: SelectArgs) -> Result<Selection, Error> {
    let (cluster, scope) = cluster_and_scope(global).await?;
    let agents = cluster.list(&scope, args.selector.as_deref()).await?;
    let now = Timestamp::now();
    let filter = Filter {
        status: args.status,
        role: args.role,
        mode: args.mode,
        expiring_within: args.expiring_within,
        search: args.search,
    };
    Ok(Selection {
        agents: filter.apply(agents, now),
        cluster,
        scope,
        now,
    })
}

pub async fn run(global: &Global, args: ListArgs) -> Result<(), Error> {
    let Selection {
        scope, agents, now, ..
    } = select(global, args.select).await?;
    if agents.is_empty() && global.output.says_none_found() {
        eprintln!("{}", scope.none_found());
        return Ok(());
    }
    let text = output::render(global.output, &agents, &scope, now)?;
    print(&text)
}
