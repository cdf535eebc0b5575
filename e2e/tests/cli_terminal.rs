//! The kubectl plugin at a terminal (a pseudo-terminal from util-linux `script`), on the real
//! control plane: `create --scratch` without `--role` asks for each field, showing the limits of
//! the policy in force beside the answers they bound, and creates what was answered; `bulk`
//! asks `Proceed? [y/N]` and does nothing unless the answer is yes.
//!
//! Each test has its own namespace, operator and registered webhook (`admission::setup`).

// Test code: a panic with the value is the failure report, in helpers as in #[test]s.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use agentgov_api::Agent;
use agentgov_api::agent::{MemoryKind, RoleClass, SourceKind};
use agentgov_api::policy::default_bundle_spec;
use agentgov_e2e::admission::*;
use agentgov_e2e::plugin::Plugin;
use kube::api::ObjectMeta;

#[tokio::test]
async fn interactive_scratch_shows_the_policy_limits_and_creates_the_answers() {
    let setup = setup("cli-tty-create").await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    let ns = setup.ns.name.as_str();
    let plugin = Plugin::new(ns);
    // The webhook's caches know the policy before the terminal run.
    plugin
        .settled(
            &["create", "probe", "--scratch", "--role", "ideation"],
            |run| run.code == Some(0),
        )
        .await;

    let typed = "compliance\ngpt-4o\n0.2\nerp-invoices, purchase-orders\nflag-mismatch\npersistent\n90\ndocument-comparison\n250\n";
    let run = plugin
        .at_terminal(&["create", "auditor", "--scratch"], typed)
        .await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    for prompt in [
        "Role class (compliance, analysis, ideation): ",
        "Temperature, 0 to 2 [policy: at most 0.3 for compliance]: ",
        "Inputs, comma-separated (empty: none) [policy: at least one]: ",
        "Monthly budget in US dollars (empty: none) [policy: at most 1000]: ",
    ] {
        assert!(run.stdout.contains(prompt), "{prompt:?} missing: {run:#?}");
    }
    assert!(
        run.stdout.contains("agent.agentgov.dev/auditor created"),
        "{run:#?}"
    );

    let agent: Agent = setup.agents().get("auditor").await.unwrap();
    let spec = agent.spec;
    assert_eq!(spec.role_class, RoleClass::Compliance);
    let reasoning = spec.anatomy.reasoning.unwrap();
    assert_eq!(
        (reasoning.model.as_str(), reasoning.temperature),
        ("gpt-4o", 0.2)
    );
    assert_eq!(spec.anatomy.inputs, ["erp-invoices", "purchase-orders"]);
    assert_eq!(spec.anatomy.actions, ["flag-mismatch"]);
    assert_eq!(spec.anatomy.capabilities, ["document-comparison"]);
    let memory = spec.anatomy.memory.unwrap();
    assert_eq!(
        (memory.kind, memory.retention_days),
        (MemoryKind::Persistent, Some(90))
    );
    assert_eq!(spec.anatomy.economics.unwrap().monthly_budget_usd, 250.0);
    assert_eq!(spec.source.unwrap().kind, SourceKind::Scratch);
}

#[tokio::test]
async fn bulk_at_a_terminal_asks_and_acts_only_on_yes() {
    let setup = setup("cli-tty-bulk").await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    let ns = setup.ns.name.as_str();
    let plugin = Plugin::new(ns);
    for name in ["lab-a", "lab-b"] {
        let mut agent = Agent::new(name, sandbox_spec(3_600));
        agent.metadata = ObjectMeta {
            labels: Some(BTreeMap::from([("team".into(), "lab".into())])),
            ..agent.metadata
        };
        admitted(&setup, name, creating(&setup.agents(), &agent)).await;
    }
    let delete = ["bulk", "delete", "-l", "team=lab"];

    // No: nothing deleted.
    let run = plugin.at_terminal(&delete, "n\n").await;
    assert!(run.stdout.contains("Proceed? [y/N] "), "{run:#?}");
    assert_ne!(run.code, Some(0), "{run:#?}");
    for name in ["lab-a", "lab-b"] {
        assert!(
            setup.agents().get_opt(name).await.unwrap().is_some(),
            "{name}"
        );
    }

    // Yes: both deleted, one result line each.
    let run = plugin.at_terminal(&delete, "y\n").await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    for name in ["lab-a", "lab-b"] {
        assert!(
            run.stdout.contains(&format!("agent {ns}/{name}")),
            "{run:#?}"
        );
    }
    for name in ["lab-a", "lab-b"] {
        let gone = agentgov_e2e::wait_for(std::time::Duration::from_secs(20), || async {
            matches!(setup.agents().get_opt(name).await, Ok(None)).then_some(())
        })
        .await;
        assert!(gone.is_ok(), "{name} still there: {gone:?}");
    }
}
