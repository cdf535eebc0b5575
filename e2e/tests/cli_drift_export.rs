//! The kubectl plugin's `drift`, `export` and `verify --export` on the real control plane: a
//! governed agent promoted (GOVERNED_VALID) is no drift, so `drift --exit-code` exits 0; then an
//! agent whose spec changed after approval, a stricter bundle that invalidates another, and a
//! sandbox expiring within the hour make `drift -o json` list exactly that drift and
//! `--exit-code` exit 1. `export` (JSON, CSV, HTML) records every agent with its proof and the
//! policy in force; the JSON verifies offline with `verify --export` once the agents are deleted
//! and without any kubeconfig, and a copy with one byte flipped inside an agent's proof
//! signature fails naming that agent. A Pod admitted for an agent that runs an image the agent
//! no longer lists is drift too.

// Test code: a panic with the value is the failure report, in helpers as in #[test]s.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use agentgov_api::agent::{AgentSpec, GovernanceStatus};
use agentgov_api::hash::{policy_hash, spec_hash};
use agentgov_api::policy::default_bundle_spec;
use agentgov_e2e::admission::*;
use agentgov_e2e::operator::log_dir;
use agentgov_e2e::plugin::{Plugin, Run, write};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

/// The governed example with a monthly budget of `usd`.
fn governed_with_budget(usd: f64) -> AgentSpec {
    let mut spec = governed_spec();
    if let Some(economics) = spec.anatomy.economics.as_mut() {
        economics.monthly_budget_usd = usd;
    }
    spec
}

/// `drift -o json`'s findings as (agent, kind).
fn findings(run: &Run) -> BTreeSet<(String, String)> {
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    report["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["agent"].as_str().unwrap().to_string(),
                f["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The detail of `agent`'s finding of `kind`.
fn detail(run: &Run, agent: &str, kind: &str) -> String {
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    report["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["agent"] == agent && f["kind"] == kind)
        .map(|f| f["detail"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no {kind} for {agent}: {run:#?}"))
}

#[tokio::test]
async fn drift_lists_what_changed_and_the_export_verifies_offline() {
    let setup = setup("cli-drift").await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    let ns = setup.ns.name.as_str();
    let plugin = Plugin::new(ns);

    // A governed agent as approved, under the policy in force: no drift, exit 0.
    create_approved(&setup, "auditor", governed_with_budget(50.0)).await;
    let run = plugin.ok(&["drift", "--exit-code"]).await;
    assert_eq!(run.stdout, "", "{run:#?}");
    assert_eq!(run.stderr, "No drift found in 1 agents.\n", "{run:#?}");
    let clean = plugin.quiet(&["drift", "-o", "json", "--exit-code"]).await;
    assert_eq!(findings(&clean), BTreeSet::new());

    // An agent whose spec changed after its approval: invalidated, its last proof kept.
    create_approved(&setup, "changed", governed_with_budget(50.0)).await;
    let mut edited = governed_with_budget(50.0);
    edited.description = "now it also reads the general ledger".into();
    let edited_hash = spec_hash(&edited).unwrap();
    setup
        .agents()
        .patch(
            "changed",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"description": edited.description}})),
        )
        .await
        .unwrap();
    wait_agent(&setup, "changed", "GOVERNED_INVALIDATED", |a| {
        governance(a) == Some(GovernanceStatus::GovernedInvalidated)
    })
    .await;

    // A stricter bundle (100 US dollars a month at most) invalidates the spender; the auditor
    // (50) is signed again under it.
    create_approved(&setup, "spender", governed_with_budget(250.0)).await;
    let mut strict = default_bundle_spec();
    strict.version = "strict-1".into();
    strict.data.max_monthly_budget_usd = 100.0;
    let strict_hash = policy_hash(&strict).unwrap();
    bundle_in_force(&setup, &strict).await;
    wait_agent(&setup, "spender", "GOVERNED_INVALIDATED", |a| {
        governance(a) == Some(GovernanceStatus::GovernedInvalidated)
    })
    .await;
    wait_agent(&setup, "auditor", "signed under the strict bundle", |a| {
        governance(a) == Some(GovernanceStatus::GovernedValid)
            && a.status
                .as_ref()
                .and_then(|s| s.proof.as_ref())
                .is_some_and(|p| p.policy_hash == strict_hash)
    })
    .await;

    // A sandbox expiring within the hour, and one with three days to live.
    create_agent(&setup, "lab", sandbox_spec(3_600)).await;
    create_agent(&setup, "later", sandbox_spec(3 * 86_400)).await;

    // drift -o json: exactly that drift.
    let run = plugin.quiet(&["drift", "-o", "json"]).await;
    let expected: BTreeSet<(String, String)> = [
        ("changed", "SpecChanged"),
        ("changed", "PolicyChanged"),
        ("changed", "Invalidated"),
        ("lab", "SandboxExpiring"),
        ("spender", "PolicyChanged"),
        ("spender", "Invalidated"),
    ]
    .into_iter()
    .map(|(a, k)| (a.to_string(), k.to_string()))
    .collect();
    assert_eq!(findings(&run), expected, "{run:#?}");
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["agentsChecked"], 5);
    assert_eq!(report["drift"], true);
    assert!(
        detail(&run, "changed", "SpecChanged")
            .starts_with(&format!("spec hash {}", &edited_hash[..12])),
        "{run:#?}"
    );
    assert!(
        detail(&run, "changed", "Invalidated").contains("the spec changed since it was approved"),
        "{run:#?}"
    );
    assert!(
        detail(&run, "spender", "PolicyChanged").ends_with(&format!(
            "but default strict-1 ({}) is in force",
            &strict_hash[..12]
        )),
        "{run:#?}"
    );
    assert!(
        detail(&run, "spender", "Invalidated").contains("above the org limit of 100"),
        "{run:#?}"
    );
    assert!(
        detail(&run, "lab", "SandboxExpiring").starts_with("sandbox expires in "),
        "{run:#?}"
    );

    // The table, exit 0 without --exit-code; exit 1 with it, naming the agents.
    let table = plugin.quiet(&["drift"]).await;
    assert!(table.stdout.starts_with("AGENT     DRIFT"), "{table:#?}");
    assert_eq!(
        table.names(0),
        ["changed", "changed", "changed", "lab", "spender", "spender"]
    );
    let gate = plugin.run(&["drift", "--exit-code"]).await;
    assert_eq!(gate.code, Some(1), "{gate:#?}");
    assert_eq!(gate.stdout, table.stdout);
    assert_eq!(
        gate.stderr,
        format!(
            "error: drift found: 6 finding(s) for 3 agent(s): {ns}/changed, {ns}/lab, {ns}/spender\n"
        )
    );

    // export: JSON, the verifiable one.
    let keys = setup.keys.path.to_str().unwrap();
    let json_run = plugin.quiet(&["export", "--keys", keys]).await;
    let export: Value = serde_json::from_str(&json_run.stdout).unwrap();
    assert_eq!(export["kind"], "ComplianceExport");
    assert_eq!(export["scope"], ns);
    let names: Vec<&str> = export["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["auditor", "changed", "lab", "later", "spender"]);
    let auditor = &export["agents"][0];
    assert_eq!(auditor["status"], "GOVERNED_VALID");
    assert_eq!(auditor["proof"]["policyHash"], strict_hash.as_str());
    assert_eq!(auditor["proof"]["keyId"], "key-1");
    assert_eq!(auditor["proof"]["algorithm"], "Ed25519");
    assert_eq!(auditor["policyInForce"]["hash"], strict_hash.as_str());
    assert_eq!(auditor["policyInForce"]["version"], "strict-1");
    assert_eq!(
        auditor["approval"]["approvedBy"].as_array().unwrap().len(),
        1
    );
    assert_eq!(auditor["evidence"][0]["fact"], "proofSigned");
    let spender = &export["agents"][4];
    assert_eq!(spender["status"], "GOVERNED_INVALIDATED");
    assert!(
        spender["denies"][0]
            .as_str()
            .unwrap()
            .contains("above the org limit of 100"),
        "{spender:#}"
    );
    let history = export["policies"][0]["history"].as_array().unwrap();
    assert_eq!(history[0]["hash"], strict_hash.as_str());
    assert_eq!(
        history[1]["hash"],
        policy_hash(&default_bundle_spec()).unwrap().as_str()
    );
    let ring = export["keyRing"]["keys"].as_array().unwrap();
    assert_eq!(ring.len(), 1);
    assert!(ring[0].get("privateKey").is_none() && ring[0]["publicKey"].is_string());
    assert!(export["digest"].as_str().unwrap().starts_with("sha256:"));
    assert!(export["controls"]["LLM10:2025"]["title"] == "Unbounded Consumption");

    // CSV and HTML, renderings for people that carry the digest.
    let csv = plugin
        .quiet(&["export", "--keys", keys, "--format", "csv"])
        .await;
    let lines: Vec<&str> = csv.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{csv:#?}");
    assert!(lines[0].starts_with("namespace,name,uid,mode,roleClass,status,specHash"));
    assert!(lines[1].starts_with(&format!("{ns},auditor,")), "{csv:#?}");
    assert!(lines[1].contains(",key-1,Ed25519,"), "{csv:#?}");
    // Each run is its own export (its own generatedAt): every row carries that run's digest.
    let digests: BTreeSet<&str> = lines
        .iter()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap())
        .collect();
    assert_eq!(digests.len(), 1, "{csv:#?}");
    assert!(digests.iter().all(|d| d.starts_with("sha256:")), "{csv:#?}");
    let html = plugin
        .quiet(&["export", "--keys", keys, "--format", "html"])
        .await;
    assert!(html.stdout.starts_with("<!DOCTYPE html>"), "{html:#?}");
    for name in names {
        assert!(html.stdout.contains(&format!("<td>{name}</td>")), "{name}");
    }
    assert!(html.stdout.contains(". Export digest <code>sha256:"));
    assert!(html.stdout.contains("<td>Unbounded Consumption</td>"));
    let digest = export["digest"].as_str().unwrap();

    // The export verifies offline: the agents deleted, no kubeconfig at all.
    let dir = log_dir();
    let file = write(&dir, &format!("{ns}-export.json"), &json_run.stdout);
    setup
        .agents()
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();
    let agents = setup.agents();
    agentgov_e2e::wait_for(WAIT, || {
        let agents = agents.clone();
        async move {
            let left = agents.list(&ListParams::default()).await.ok()?;
            left.items.is_empty().then_some(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("the agents are not gone: {e:#}"));
    let offline = Plugin {
        kubeconfig: dir.join(format!("{ns}-no-such-kubeconfig")),
    };
    let verified = offline.quiet(&["verify", "--export", &file]).await;
    assert!(
        verified
            .stdout
            .starts_with(&format!("export digest: ok, {digest}\n")),
        "{verified:#?}"
    );
    let results: Vec<(String, String)> = verified
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("RESULT"))
        .skip(1)
        .map(|l| {
            let mut words = l.split_whitespace();
            let result = words.next().unwrap().to_string();
            (words.next().unwrap().to_string(), result)
        })
        .collect();
    let all_ok: Vec<(String, String)> = ["auditor", "changed", "lab", "later", "spender"]
        .iter()
        .map(|a| (format!("{ns}/{a}"), "ok".to_string()))
        .collect();
    assert_eq!(results, all_ok, "{verified:#?}");
    assert!(
        verified
            .stdout
            .contains("proof verified: key key-1 (Ed25519)"),
        "{verified:#?}"
    );
    // Pinned to the keys the operator signs with, the same.
    offline
        .quiet(&["verify", "--export", &file, "--keys", keys])
        .await;

    // One byte flipped inside the auditor's proof signature (the first record with a proof).
    let start = json_run.stdout.find("\"signature\": \"").unwrap() + "\"signature\": \"".len() + 10;
    let mut bytes = json_run.stdout.clone().into_bytes();
    bytes[start] = if bytes[start] == b'A' { b'B' } else { b'A' };
    let flipped = write(
        &dir,
        &format!("{ns}-export-flipped.json"),
        &String::from_utf8(bytes).unwrap(),
    );
    let run = offline.run(&["verify", "--export", &flipped]).await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stdout.contains(&format!("FAILED    {ns}/auditor")),
        "{run:#?}"
    );
    assert!(
        run.stderr.starts_with(&format!(
            "error: the export {flipped} does not verify: agent {ns}/auditor: its record's digest does not match its content; the signature check failed"
        )),
        "{run:#?}"
    );
    assert_eq!(run.stderr.lines().count(), 1, "{run:#?}");
}

#[tokio::test]
async fn drift_names_a_pod_running_an_image_its_agent_no_longer_lists() {
    let setup = setup("cli-drift-images").await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    let ns = setup.ns.name.as_str();
    let plugin = Plugin::new(ns);
    let digest = |d: char| format!("registry.invalid/agent@sha256:{}", d.to_string().repeat(64));
    let (first, second) = (digest('a'), digest('b'));

    // A sandbox bound to its first image, and a Pod of it running that image: no drift.
    let mut spec = sandbox_spec(3 * 86_400);
    spec.runtime = Some(agentgov_api::runtime::RuntimeSpec {
        images: vec![first.clone()],
        ..Default::default()
    });
    create_agent(&setup, "bound", spec).await;
    let mut pod = agentgov_e2e::webhook::agent_pod("bound-0", "bound");
    pod.spec.as_mut().unwrap().containers[0].image = Some(first.clone());
    admitted(
        &setup,
        "a Pod of the bound image",
        creating(&setup.pods(), &pod),
    )
    .await;
    let run = plugin.quiet(&["drift", "-o", "json"]).await;
    assert_eq!(findings(&run), BTreeSet::new(), "{run:#?}");

    // The agent now lists only its second image: the Pod admitted before runs what it no
    // longer lists.
    setup
        .agents()
        .patch(
            "bound",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"runtime": {"images": [second]}}})),
        )
        .await
        .unwrap();
    let run = plugin.quiet(&["drift", "-o", "json"]).await;
    let expected = BTreeSet::from([("bound".to_string(), "UnapprovedImages".to_string())]);
    assert_eq!(findings(&run), expected, "{run:#?}");
    assert_eq!(
        detail(&run, "bound", "UnapprovedImages"),
        format!(
            "pod bound-0: spec.containers[0] (agent) runs {first:?}, which is not among the agent's approved images"
        )
    );
    let run = plugin.run(&["drift", "--exit-code"]).await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stdout.contains("UnapprovedImages"), "{run:#?}");
}
