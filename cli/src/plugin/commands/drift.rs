//! `drift`: the seed's drift dashboard as a report.

use agentgov_api::agent::AGENT_LABEL;
use agentgov_api::{Agent, PolicyBundle};
use clap::Args;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Pod;

use crate::plugin::cluster::{Cluster, Scope};
use crate::plugin::drift::{self, Report};
use crate::plugin::output::{self, Format};
use crate::plugin::{Error, Global, cluster_and_scope, filter, print};

#[derive(Debug, Args)]
pub struct DriftArgs {
    /// Report sandboxes that expire within this long from now (like 24h or 90m), and those
    /// already expired.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = filter::parse_within)]
    expiring_within: SignedDuration,
    /// Exit 1 when there is drift (0 when there is none), to gate a pipeline. Without it the
    /// command exits 0 whatever it finds.
    #[arg(long)]
    exit_code: bool,
}

/// What `drift` and `export` read: the scope (`-A`, `-n`, else the context's namespace), the
/// agents and PolicyBundles in it, and the cluster floor (the ClusterPolicyBundle `default`, if
/// there is one the user may read).
pub struct Read {
    pub cluster: Cluster,
    pub scope: Scope,
    pub agents: Vec<Agent>,
    pub bundles: Vec<PolicyBundle>,
    pub floor: Option<agentgov_api::ClusterPolicyBundle>,
}

pub async fn agents_and_bundles(global: &Global) -> Result<Read, Error> {
    let (cluster, scope) = cluster_and_scope(global).await?;
    let agents = cluster.list(&scope, None).await?;
    let bundles = cluster.list_of(&scope, "policybundles").await?;
    let floor = cluster
        .get_floor(agentgov_api::policy_bundle::DEFAULT_BUNDLE_NAME)
        .await;
    Ok(Read {
        cluster,
        scope,
        agents,
        bundles,
        floor,
    })
}

pub async fn run(global: &Global, args: DriftArgs) -> Result<(), Error> {
    let Read {
        cluster,
        scope,
        agents,
        bundles,
        floor,
    } = agents_and_bundles(global).await?;
    // The Pods labelled for an agent, whatever the agent (the label's presence, selected by
    // the API server).
    let pods: Vec<Pod> = cluster
        .list_selected(&scope, "pods", Some(AGENT_LABEL))
        .await?;
    let policies = drift::policies_in_force(&bundles, floor.as_ref());
    let mut found = drift::findings(&agents, &policies, args.expiring_within, Timestamp::now());
    found.extend(drift::image_findings(&agents, &pods));
    drift::sort(&mut found);
    let text = match global.output {
        Format::Table if found.is_empty() => {
            eprintln!("No drift found in {} agents.", agents.len());
            String::new()
        }
        Format::Table => drift::table(&found, scope == Scope::All),
        Format::Name => {
            let mut names: Vec<String> = found
                .iter()
                .map(|f| format!("agent.agentgov.dev/{}\n", f.agent))
                .collect();
            names.dedup();
            names.concat()
        }
        Format::Json | Format::Yaml => {
            let report = Report {
                agents_checked: agents.len(),
                drift: !found.is_empty(),
                items: &found,
            };
            output::document(global.output, &report)?
        }
    };
    print(&text)?;
    if args.exit_code && !found.is_empty() {
        let mut agents: Vec<String> = found
            .iter()
            .map(|f| format!("{}/{}", f.namespace, f.agent))
            .collect();
        agents.dedup();
        return Err(Error::Drift(format!(
            "{} finding(s) for {} agent(s): {}",
            found.len(),
            agents.len(),
            agents.join(", ")
        )));
    }
    Ok(())
}
