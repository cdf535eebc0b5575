//! The kubectl plugin's `history`, `diff` and `rollback` on the real control plane, over the
//! ControllerRevisions the operator keeps: a governed agent promoted, then changed, has two
//! revisions; `diff` shows the change (exit 1, as `kubectl diff`); a rollback to the approved
//! revision returns it to GOVERNED_VALID under the same approval, with no new AgentPromotion;
//! a rollback to the unapproved one does not, and says so. With `--revision-history-limit 2`,
//! the operator prunes the oldest revision, never the approved one.
//!
//! Each test has its own namespace, operator and registered webhook (`admission::setup`).

// Test code: a panic with the value is the failure report, in helpers as in #[test]s.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use agentgov_api::Agent;
use agentgov_api::agent::GovernanceStatus;
use agentgov_api::hash::spec_hash;
use agentgov_api::policy::default_bundle_spec;
use agentgov_e2e::admission::*;
use agentgov_e2e::plugin::{GOVERNED, Plugin, promotions};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

/// Create `name` from GOVERNED (once the webhook's caches admit it) and promote it with --wait.
async fn created_and_promoted(plugin: &Plugin, name: &str) {
    let mut args = vec![name];
    args.extend(GOVERNED);
    plugin.create(&args).await;
    plugin
        .ok(&["promote", name, "--wait", "--timeout", "90s"])
        .await;
}

/// `history NAME -o json` until `done` holds of its records (the operator writes them after
/// each judgement).
async fn history_until(plugin: &Plugin, name: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let run = plugin.run(&["history", name, "-o", "json"]).await;
        if run.code == Some(0) {
            let records: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
            if done(&records) {
                return records;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "history {name} never settled: {run:#?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Change the agent's description (a new spec hash).
async fn describe(setup: &Setup, name: &str, description: &str) -> Agent {
    setup
        .agents()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"description": description}})),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn history_diff_and_rollback_reuse_the_approval_of_an_approved_spec_only() {
    let setup = setup("cli-history").await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    let ns = setup.ns.name.as_str();
    let plugin = Plugin::new(ns);

    created_and_promoted(&plugin, "auditor").await;
    let approved = setup.agents().get("auditor").await.unwrap();
    let approved_hash = spec_hash(&approved.spec).unwrap();
    assert_eq!(promotions(&setup).await.len(), 1);

    // One revision, approved by the one who promoted it.
    let records = history_until(&plugin, "auditor", |r| {
        r.len() == 1 && r[0].get("approval").is_some()
    })
    .await;
    assert_eq!(records[0]["revision"], 1);
    assert_eq!(records[0]["specHash"], approved_hash.as_str());
    assert_eq!(records[0]["current"], true);
    assert_eq!(records[0]["approved"], true);

    // Changed: two revisions, the new one current, the old one approved.
    let changed = describe(
        &setup,
        "auditor",
        "Checks supplier invoices and credit notes.",
    )
    .await;
    let changed_hash = spec_hash(&changed.spec).unwrap();
    let records = history_until(&plugin, "auditor", |r| r.len() == 2).await;
    assert_eq!(records[1]["revision"], 2);
    assert_eq!(records[1]["specHash"], changed_hash.as_str());
    assert_eq!(records[1]["current"], true);
    assert_eq!(records[0]["approved"], true);
    let table = plugin.ok(&["history", "auditor"]).await;
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("REVISION"), "{table:#?}");
    assert!(
        lines[1].contains(&approved_hash[..12]) && lines[1].ends_with("approved"),
        "{table:#?}"
    );
    assert!(
        lines[2].contains(&changed_hash[..12]) && lines[2].ends_with("current"),
        "{table:#?}"
    );

    // diff: the current spec against the previous revision; exit 1, as kubectl diff.
    let run = plugin.run(&["diff", "auditor"]).await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stdout
            .starts_with("--- auditor/revision-1\n+++ auditor/current\n"),
        "{run:#?}"
    );
    assert!(
        run.stdout
            .contains("-description: Checks supplier invoices against purchase orders.\n")
            && run
                .stdout
                .contains("+description: Checks supplier invoices and credit notes.\n"),
        "{run:#?}"
    );
    assert!(!run.stdout.contains('\x1b'), "not a terminal: no colour");
    let coloured = plugin
        .run(&["diff", "auditor", "--against-approved", "--color", "always"])
        .await;
    assert!(
        coloured.stdout.contains("\x1b[31m-description"),
        "{coloured:#?}"
    );
    // Against itself: no difference, exit 0.
    plugin.quiet(&["diff", "auditor", "--revision", "2"]).await;

    // -o name lists the ControllerRevisions; -o yaml the records.
    let names = plugin.ok(&["history", "auditor", "-o", "name"]).await;
    assert_eq!(
        names.stdout,
        format!(
            "controllerrevision.apps/auditor-{}\ncontrollerrevision.apps/auditor-{}\n",
            &approved_hash[..10],
            &changed_hash[..10]
        )
    );
    let yaml = plugin.ok(&["history", "auditor", "-o", "yaml"]).await;
    let records: Vec<Value> = serde_yaml::from_str(&yaml.stdout).unwrap();
    assert_eq!(
        records[0]["spec"]["description"],
        "Checks supplier invoices against purchase orders."
    );

    // Dry runs change nothing: the client's prints the agent with the restored spec, the
    // server's has admission judge the change.
    let run = plugin
        .ok(&[
            "rollback",
            "auditor",
            "--to-revision",
            "1",
            "--dry-run=client",
            "-o",
            "yaml",
        ])
        .await;
    let manifest: Agent = serde_yaml::from_str(&run.stdout).unwrap();
    assert_eq!(spec_hash(&manifest.spec).unwrap(), approved_hash);
    let run = plugin
        .ok(&[
            "rollback",
            "auditor",
            "--to-revision",
            "1",
            "--dry-run=server",
        ])
        .await;
    assert_eq!(
        run.stdout, "agent.agentgov.dev/auditor rolled back to revision 1 (server dry run)\n",
        "{run:#?}"
    );
    let unchanged = setup.agents().get("auditor").await.unwrap();
    assert_eq!(spec_hash(&unchanged.spec).unwrap(), changed_hash);

    // Rollback to the approved revision: the same approval, GOVERNED_VALID, no new approval.
    let run = plugin
        .ok(&[
            "rollback",
            "auditor",
            "--to-revision",
            "1",
            "--wait",
            "--timeout",
            "90s",
        ])
        .await;
    assert_eq!(
        run.stdout, "agent.agentgov.dev/auditor rolled back to revision 1\n",
        "{run:#?}"
    );
    assert!(
        run.stderr
            .contains(&format!("approval auditor-{} by ", &approved_hash[..10]))
            && run.stderr.contains(&format!(
                "for spec hash {} is reused; the agent returns to GOVERNED_VALID",
                &approved_hash[..12]
            )),
        "{run:#?}"
    );
    let agent = setup.agents().get("auditor").await.unwrap();
    assert_eq!(spec_hash(&agent.spec).unwrap(), approved_hash);
    assert_eq!(governance(&agent), Some(GovernanceStatus::GovernedValid));
    assert_eq!(
        agent
            .status
            .as_ref()
            .unwrap()
            .proof
            .as_ref()
            .unwrap()
            .spec_hash,
        approved_hash
    );
    assert_eq!(promotions(&setup).await.len(), 1, "no new AgentPromotion");
    // The spec that came back is the newest revision, as a Deployment's rollback is.
    let records = history_until(&plugin, "auditor", |r| {
        r.len() == 2 && r[1]["specHash"] == approved_hash.as_str()
    })
    .await;
    assert_eq!(records[1]["revision"], 3);
    assert_eq!(records[1]["current"], true);
    assert_eq!(records[0]["revision"], 2);

    // Rollback to the unapproved revision: not in force, and it says so (--wait: exit 1).
    let run = plugin
        .run(&[
            "rollback",
            "auditor",
            "--to-revision",
            "2",
            "--wait",
            "--timeout",
            "90s",
        ])
        .await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert_eq!(
        run.stderr.trim_end().lines().last().unwrap(),
        format!(
            "error: no valid approval for spec hash {}: run `kubectl agentgov promote auditor`",
            &changed_hash[..12]
        ),
        "{run:#?}"
    );
    let agent = setup.agents().get("auditor").await.unwrap();
    assert_eq!(spec_hash(&agent.spec).unwrap(), changed_hash);
    assert_eq!(
        governance(&agent),
        Some(GovernanceStatus::GovernedInvalidated)
    );
    assert_eq!(promotions(&setup).await.len(), 1);

    // A revision it never had is refused with a sentence.
    let message = plugin
        .error(&["rollback", "auditor", "--to-revision", "9"])
        .await;
    assert!(message.contains("has no revision 9"), "{message}");
}

#[tokio::test]
async fn revisions_beyond_the_limit_are_pruned_but_never_the_approved_one() {
    let setup = setup_with(
        "cli-history-limit",
        KeyKind::Ed25519,
        &["--revision-history-limit", "2"],
    )
    .await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    let ns = setup.ns.name.as_str();
    let plugin = Plugin::new(ns);

    created_and_promoted(&plugin, "auditor").await;
    let approved = spec_hash(&setup.agents().get("auditor").await.unwrap().spec).unwrap();
    history_until(&plugin, "auditor", |r| {
        r.len() == 1 && r[0].get("approval").is_some()
    })
    .await;
    let mut last = String::new();
    for n in 1..=3 {
        let agent = describe(&setup, "auditor", &format!("Version {n}.")).await;
        last = spec_hash(&agent.spec).unwrap();
        let want = last.clone();
        history_until(&plugin, "auditor", |r| {
            r.last().is_some_and(|x| x["specHash"] == want.as_str())
        })
        .await;
    }
    // Two kept: the approved one (revision 1) and the current one (revision 4).
    let records = history_until(&plugin, "auditor", |r| r.len() == 2).await;
    assert_eq!(records[0]["revision"], 1);
    assert_eq!(records[0]["specHash"], approved.as_str());
    assert_eq!(records[0]["approved"], true);
    assert_eq!(records[1]["revision"], 4);
    assert_eq!(records[1]["specHash"], last.as_str());
}
