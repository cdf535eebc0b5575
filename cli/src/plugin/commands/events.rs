//! `events`: an agent's governance events, live with `--follow`.

use std::collections::BTreeSet;
use std::pin::pin;

use agentgov_api::{Agent, AgentPromotion};
use clap::Args;
use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};

use crate::plugin::cluster::Scope;
use crate::plugin::events::{self, Line};
use crate::plugin::output::Format;
use crate::plugin::{Error, Global, cluster_and_namespace, print};

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The agent.
    name: String,
    /// Keep watching and print each event and status change as it happens, until interrupted.
    #[arg(short = 'w', long, visible_alias = "watch")]
    follow: bool,
}

/// What the watches report.
enum Change {
    Event(Box<Event>),
    Agent(Box<Agent>),
    Promotion(Box<AgentPromotion>),
}

pub async fn run(global: &Global, args: EventsArgs) -> Result<(), Error> {
    let (cluster, ns) = cluster_and_namespace(global).await?;
    let agent = cluster.get(&ns, &args.name).await?;
    let scope = Scope::One(ns.clone());
    let mut promotions: BTreeSet<String> = cluster
        .list_of::<AgentPromotion>(&scope, "agentpromotions")
        .await?
        .into_iter()
        .filter(|p| p.spec.agent == args.name)
        .filter_map(|p| p.metadata.name)
        .collect();
    let listed: Vec<Event> = cluster.list_of(&scope, "events").await?;
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut lines: Vec<Line> = Vec::new();
    for event in &listed {
        if events::concerns(event, &args.name, &promotions) {
            seen.insert(key(event));
            lines.push(events::from_event(event));
        }
    }
    lines.extend(events::status_changes(
        &args.name,
        None,
        agent.status.as_ref(),
        Timestamp::now(),
    ));
    let lines = events::sorted(lines);
    let format = global.output;
    if !args.follow {
        if lines.is_empty() && format.says_none_found() {
            eprintln!("No events found for agent {ns}/{}.", args.name);
            return Ok(());
        }
        return match format {
            Format::Table | Format::Name => print(&events::table(&lines, Timestamp::now())),
            _ => lines.iter().try_for_each(|l| print(&record(format, l)?)),
        };
    }
    if matches!(format, Format::Table | Format::Name) {
        print(&events::follow_header())?;
    }
    for line in &lines {
        emit(format, line)?;
    }
    let client = cluster.client();
    let not_watched = |what: &str, e: watcher::Error| Error::Api {
        action: format!("watch {what} in {ns}"),
        message: e.to_string(),
    };
    let event_stream = watcher(
        Api::<Event>::namespaced(client.clone(), &ns),
        watcher::Config::default(),
    )
    .default_backoff()
    .applied_objects()
    .map_ok(|event| Change::Event(Box::new(event)))
    .map_err(|e| not_watched("events", e));
    let agent_stream = watcher(
        Api::<Agent>::namespaced(client.clone(), &ns),
        watcher::Config::default().fields(&format!("metadata.name={}", args.name)),
    )
    .default_backoff()
    .applied_objects()
    .map_ok(|agent| Change::Agent(Box::new(agent)))
    .map_err(|e| not_watched("agents", e));
    let promotion_stream = watcher(
        Api::<AgentPromotion>::namespaced(client, &ns),
        watcher::Config::default(),
    )
    .default_backoff()
    .applied_objects()
    .map_ok(|promotion| Change::Promotion(Box::new(promotion)))
    .map_err(|e| not_watched("agentpromotions", e));
    let mut changes = pin!(futures::stream::select(
        event_stream,
        futures::stream::select(agent_stream, promotion_stream)
    ));
    let mut status = agent.status;
    while let Some(change) = changes.next().await {
        match change? {
            Change::Promotion(p) => {
                if p.spec.agent == args.name
                    && let Some(name) = p.metadata.name
                {
                    promotions.insert(name);
                }
            }
            Change::Event(event) => {
                if events::concerns(&event, &args.name, &promotions) && seen.insert(key(&event)) {
                    emit(format, &events::from_event(&event))?;
                }
            }
            Change::Agent(agent) => {
                for line in events::status_changes(
                    &args.name,
                    Some(&status.clone().unwrap_or_default()),
                    agent.status.as_ref(),
                    Timestamp::now(),
                ) {
                    emit(format, &line)?;
                }
                status = agent.status;
            }
        }
    }
    Ok(())
}

/// An Event as of one version (an Event seen again, counted once more, prints again).
fn key(event: &Event) -> String {
    format!(
        "{}/{}",
        event.metadata.uid.as_deref().unwrap_or_default(),
        event
            .metadata
            .resource_version
            .as_deref()
            .unwrap_or_default()
    )
}

/// One line as `--follow` prints it.
fn emit(format: Format, line: &Line) -> Result<(), Error> {
    match format {
        Format::Table | Format::Name => print(&events::follow_line(line, Timestamp::now())),
        _ => print(&record(format, line)?),
    }
}

/// One line as a JSON object on one line (`-o json`) or a YAML document (`-o yaml`).
fn record(format: Format, line: &Line) -> Result<String, Error> {
    match format {
        Format::Yaml => serde_yaml::to_string(line)
            .map(|text| format!("---\n{text}"))
            .map_err(|e| Error::Encode(e.to_string())),
        _ => serde_json::to_string(line)
            .map(|text| text + "\n")
            .map_err(|e| Error::Encode(e.to_string())),
    }
}
