//! The kubectl plugin's `create` and `promote` on the real control plane, run as a user runs
//! them (`--kubeconfig`, a copy of the test cluster's): a governed agent built from flags is
//! promoted with `--wait` to GOVERNED_VALID under the proof the operator signs; `--clone` prints
//! a cleaned manifest on a client dry run and creates the copy for real; `--import` on a server
//! dry run persists nothing; a sandbox is refused with a sentence; and a promotion the policy in
//! force denies (a budget above a stricter bundle's limit) exits 1 naming the reason, with no
//! AgentPromotion created.
//!
//! Each test has its own namespace, operator and registered webhook (`admission::setup`).

// Test code: a panic with the value is the failure report, in helpers as in #[test]s.
#![allow(clippy::unwrap_used)]

use agentgov_api::agent::{AgentMode, GovernanceStatus, SourceKind};
use agentgov_api::hash::spec_hash;
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::{Agent, AgentPromotion};
use agentgov_e2e::admission::*;
use agentgov_e2e::plugin::{GOVERNED, Plugin, Run, promotions};
use agentgov_e2e::repo_root;
use serde_json::Value;

#[tokio::test]
async fn create_from_scratch_promote_and_wait_then_clone_and_import() {
    let setup = setup("cli-promote").await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    let ns = setup.ns.name.as_str();
    let plugin = Plugin::new(ns);

    // --scratch, governed: created (the webhook's warnings on stderr), source scratch.
    let mut args = vec!["auditor"];
    args.extend(GOVERNED);
    let run = plugin.create(&args).await;
    assert_eq!(
        run.stdout, "agent.agentgov.dev/auditor created\n",
        "{run:#?}"
    );
    assert!(run.stderr.contains("Warning: "), "{run:#?}");
    let auditor = setup.agents().get("auditor").await.unwrap();
    assert_eq!(auditor.spec.mode, AgentMode::Governed);
    assert_eq!(
        auditor.spec.source.as_ref().unwrap().kind,
        SourceKind::Scratch
    );
    assert_eq!(auditor.spec.anatomy.capabilities, ["document-comparison"]);
    let hash = spec_hash(&auditor.spec).unwrap();

    // promote --dry-run=client: the AgentPromotion, without requestedBy (the API server's).
    let run = plugin
        .ok(&["promote", "auditor", "--dry-run=client", "-o", "yaml"])
        .await;
    let manifest: Value = serde_yaml::from_str(&run.stdout).unwrap();
    assert_eq!(manifest["kind"], "AgentPromotion", "{manifest:#}");
    assert_eq!(
        manifest["metadata"]["name"],
        format!("auditor-{}", &hash[..10])
    );
    assert_eq!(manifest["spec"]["agent"], "auditor");
    assert_eq!(manifest["spec"]["specHash"], hash.as_str());
    assert!(
        manifest["spec"].get("requestedBy").is_none(),
        "{manifest:#}"
    );
    assert_eq!(
        promotions(&setup).await.len(),
        0,
        "a client dry run creates nothing"
    );

    // promote --wait: the policy's answer, the AgentPromotion, then GOVERNED_VALID.
    let run = plugin
        .ok(&["promote", "auditor", "--wait", "--timeout", "90s"])
        .await;
    assert_eq!(
        run.stdout,
        format!(
            "agentpromotion.agentgov.dev/auditor-{} created\n",
            &hash[..10]
        ),
        "{run:#?}"
    );
    assert!(
        run.stderr.contains(&format!(
            "the policy in force allows approving agent {ns}/auditor at spec hash {}",
            &hash[..12]
        )),
        "{run:#?}"
    );
    assert!(
        run.stderr.trim_end().ends_with(&format!(
            "agent {ns}/auditor is GOVERNED_VALID for spec hash {}",
            &hash[..12]
        )),
        "{run:#?}"
    );
    let auditor = setup.agents().get("auditor").await.unwrap();
    assert_eq!(governance(&auditor), Some(GovernanceStatus::GovernedValid));
    let status = auditor.status.as_ref().unwrap();
    assert_eq!(status.proof.as_ref().unwrap().spec_hash, hash);
    let promotion = setup
        .ns
        .api::<AgentPromotion>()
        .get(&format!("auditor-{}", &hash[..10]))
        .await
        .unwrap();
    assert!(promotion.spec.requested_by.is_some(), "{promotion:#?}");

    // --clone on a client dry run: a clean manifest, nothing created.
    let run = plugin
        .ok(&[
            "create",
            "copy",
            "--clone",
            "auditor",
            "--dry-run=client",
            "-o",
            "yaml",
        ])
        .await;
    let manifest: Value = serde_yaml::from_str(&run.stdout).unwrap();
    assert_eq!(manifest["kind"], "Agent", "{manifest:#}");
    assert!(manifest.get("status").is_none(), "{manifest:#}");
    let meta = &manifest["metadata"];
    assert_eq!(meta["name"], "copy");
    assert_eq!(meta["namespace"], ns);
    for dropped in [
        "uid",
        "resourceVersion",
        "managedFields",
        "creationTimestamp",
        "generation",
    ] {
        assert!(meta.get(dropped).is_none(), "{dropped}: {manifest:#}");
    }
    assert_eq!(manifest["spec"]["source"]["kind"], "clone");
    assert_eq!(
        manifest["spec"]["source"]["reference"],
        format!("{ns}/auditor")
    );
    let mut spec = serde_json::to_value(&auditor.spec).unwrap();
    spec["source"] = manifest["spec"]["source"].clone();
    assert_eq!(manifest["spec"], spec);
    assert!(setup.agents().get_opt("copy").await.unwrap().is_none());

    // --clone for real: a new governed request, not approved (its own spec hash: the source).
    let run = plugin.ok(&["create", "copy", "--clone", "auditor"]).await;
    assert_eq!(run.stdout, "agent.agentgov.dev/copy created\n", "{run:#?}");
    let copy = setup.agents().get("copy").await.unwrap();
    assert_eq!(copy.spec.source.as_ref().unwrap().kind, SourceKind::Clone);
    assert_ne!(spec_hash(&copy.spec).unwrap(), hash);
    assert!(
        copy.status
            .as_ref()
            .and_then(|s| s.proof.as_ref())
            .is_none(),
        "{copy:#?}"
    );

    // --import on a server dry run: judged, reported, persisted nowhere.
    let example = repo_root().join("examples/agent-governed.yaml");
    let run = plugin
        .ok(&[
            "create",
            "imported",
            "--import",
            example.to_str().unwrap(),
            "--dry-run=server",
        ])
        .await;
    assert_eq!(
        run.stdout, "agent.agentgov.dev/imported created (server dry run)\n",
        "{run:#?}"
    );
    assert!(setup.agents().get_opt("imported").await.unwrap().is_none());

    // A sandbox is not promoted: one sentence, exit 1, nothing created.
    let run = plugin
        .create(&["lab", "--scratch", "--role", "ideation", "--ttl", "1h"])
        .await;
    assert_eq!(run.stdout, "agent.agentgov.dev/lab created\n", "{run:#?}");
    let lab: Agent = setup.agents().get("lab").await.unwrap();
    assert_eq!(lab.spec.sandbox.as_ref().unwrap().ttl_seconds, Some(3_600));
    let message = plugin.error(&["promote", "lab", "--wait"]).await;
    assert_eq!(
        message,
        format!(
            "error: agent {ns}/lab is a sandbox and cannot be promoted: promotion approves a governed request, so set its spec.mode to governed first"
        )
    );
    let message = plugin.error(&["promote", "nobody"]).await;
    assert_eq!(
        message,
        format!("error: agent \"nobody\" not found in namespace \"{ns}\"")
    );
    assert_eq!(promotions(&setup).await.len(), 1, "only the auditor's");
}

#[tokio::test]
async fn a_promotion_the_policy_denies_exits_1_naming_the_reason() {
    let setup = setup("cli-promote-deny").await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    let ns = setup.ns.name.as_str();
    let plugin = Plugin::new(ns);
    // The governed example (a budget of 250) from a file, under the default bundle.
    let example = repo_root().join("examples/agent-governed.yaml");
    let run = plugin
        .create(&["spender", "--import", example.to_str().unwrap()])
        .await;
    assert_eq!(
        run.stdout, "agent.agentgov.dev/spender created\n",
        "{run:#?}"
    );
    let spender = setup.agents().get("spender").await.unwrap();
    let source = spender.spec.source.clone().unwrap();
    assert_eq!(source.kind, SourceKind::Import);
    assert_eq!(source.reference.as_deref(), example.to_str());

    // A stricter bundle: 100 US dollars a month at most.
    let mut strict = default_bundle_spec();
    strict.data.max_monthly_budget_usd = 100.0;
    bundle_in_force(&setup, &strict).await;
    let denied = |run: &Run| run.code == Some(1) && run.stderr.contains("above the org limit");
    plugin.settled(&["promote", "spender"], denied).await;

    let args = ["promote", "spender", "--wait"];
    let message = plugin.error(&args).await;
    assert!(
        message.starts_with(&format!(
            "error: the API server refused to approve agent {ns}/spender at spec hash "
        )),
        "{message}"
    );
    assert!(
        message.contains("anatomy.economics.monthlyBudgetUsd 250 is above the org limit of 100"),
        "{message}"
    );
    assert_eq!(
        promotions(&setup).await.len(),
        0,
        "a denied promotion creates nothing"
    );
}
