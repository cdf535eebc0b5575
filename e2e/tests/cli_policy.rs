//! The kubectl plugin's `policy` and `events` on the real control plane, run as a user runs them
//! (`--kubeconfig`, a copy of the test cluster's):
//!
//! - `policy test` passes the example tests shipped beside the default bundle and fails a file
//!   with a failing test (exit 1, a FAIL line, the summary), and agrees with real OPA's
//!   `opa test` on which tests fail, for the same files;
//! - `policy eval` allows one agent and denies another, offline with a bundle file and against
//!   the bundle in force;
//! - `policy preview` of a stricter bundle over several live agents names exactly the agents the
//!   operator then invalidates (and restricts) once the bundle is applied;
//! - `events NAME` lists an agent's promotion events, and `events NAME --follow` prints a status
//!   change that happens after it started.
//!
//! Each cluster test has its own namespace, operator and registered webhook
//! (`admission::setup`).

// Test code: a panic with the value is the failure report, in helpers as in #[test]s.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use agentgov_api::agent::GovernanceStatus;
use agentgov_api::hash::policy_hash;
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::{Agent, AgentSpec, PolicyBundle, PolicyBundleSpec};
use agentgov_e2e::admission::*;
use agentgov_e2e::operator::{binary, log_dir};
use agentgov_e2e::plugin::{Plugin, Run, golden};
use agentgov_e2e::{repo_root, wait_for};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A fresh directory under the e2e log folder.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = log_dir().join(format!("cli-policy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `data.<pkg>.test_x` names of the lines of `output` that say FAIL (ours and OPA's alike:
/// `data.p.test_x: FAIL` with or without a duration).
fn failures(output: &str) -> Vec<String> {
    let mut names: Vec<String> = output
        .lines()
        .filter(|l| l.contains(": FAIL"))
        .filter_map(|l| l.split(": FAIL").next())
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

fn opa() -> PathBuf {
    let path = std::env::var_os("AGENTGOV_OPA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache/tools/bin/opa"));
    assert!(
        path.is_file(),
        "OPA not found at {}: run `make tools`",
        path.display()
    );
    path
}

/// `opa test DIR`: its exit code and the tests it says fail.
fn opa_test(dir: &Path) -> (Option<i32>, Vec<String>) {
    let output = std::process::Command::new(opa())
        .arg("test")
        .arg(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    (output.status.code(), failures(&stdout))
}

const FAILING: &str = "package team.checks_test\n\nimport rego.v1\n\n\
    test_holds if 1 + 1 == 2\n\n\
    test_does_not_hold if count([1, 2]) == 3\n";

#[tokio::test]
async fn policy_test_passes_and_fails_like_opa_test() {
    // `policy test` reads files only: the kubeconfig is never used.
    let plugin = Plugin::new("cli-policy-offline");
    let root = repo_root();
    let bundle = root.join("examples/policybundle-default.yaml");
    let examples = root.join("examples/policy");
    let (bundle_arg, examples_arg) = (
        bundle.to_str().unwrap().to_string(),
        examples.to_str().unwrap().to_string(),
    );

    // The examples beside the default bundle pass: one PASS line each and the summary.
    let run = plugin
        .quiet(&["policy", "test", &bundle_arg, &examples_arg])
        .await;
    golden("policy-test-examples.txt", &run.stdout);

    // A failing test: exit 1, its FAIL line, the counts, one error sentence.
    let failing = scratch_dir("failing");
    std::fs::write(failing.join("checks_test.rego"), FAILING).unwrap();
    let args = ["policy", "test", failing.to_str().unwrap()];
    let run = plugin.run(&args).await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stdout
            .contains("data.team.checks_test.test_holds: PASS\ndata.team.checks_test.test_does_not_hold: FAIL\n"),
        "{run:#?}"
    );
    assert!(run.stdout.ends_with("\nPASS: 1/2\nFAIL: 1/2\n"), "{run:#?}");
    assert_eq!(
        run.stderr, "error: 1 of 2 policy tests failed\n",
        "{run:#?}"
    );

    // -o json: one record per test.
    let mut json_args = args.to_vec();
    json_args.extend(["-o", "json"]);
    let run = plugin.run(&json_args).await;
    let results: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        results[1]["test"],
        "data.team.checks_test.test_does_not_hold"
    );
    assert_eq!(results[1]["result"], "fail");

    // OPA agrees, on the same files: the repository's policy tests (policy, test table as
    // data), the examples with the default limits as a data file, and the failing file.
    let examples_dir = scratch_dir("examples");
    std::fs::copy(
        root.join("policies/promotion.rego"),
        examples_dir.join("promotion.rego"),
    )
    .unwrap();
    std::fs::copy(
        examples.join("promotion_test.rego"),
        examples_dir.join("promotion_test.rego"),
    )
    .unwrap();
    let limits = serde_json::json!({"agentgov": {"limits": default_bundle_spec().data}});
    std::fs::write(examples_dir.join("data.json"), limits.to_string()).unwrap();
    // The examples again, under a $100 budget limit: some of them fail.
    let strict_dir = scratch_dir("examples-strict");
    for file in ["promotion.rego", "promotion_test.rego"] {
        std::fs::copy(examples_dir.join(file), strict_dir.join(file)).unwrap();
    }
    let mut strict = default_bundle_spec().data;
    strict.max_monthly_budget_usd = 100.0;
    let limits = serde_json::json!({"agentgov": {"limits": strict}});
    std::fs::write(strict_dir.join("data.json"), limits.to_string()).unwrap();
    for dir in [root.join("policies"), examples_dir, strict_dir, failing] {
        let ours = plugin.run(&["policy", "test", dir.to_str().unwrap()]).await;
        let (code, opa_failures) = opa_test(&dir);
        assert_eq!(
            ours.code == Some(0),
            code == Some(0),
            "{}: opa exit {code:?}, ours {ours:#?}",
            dir.display()
        );
        assert_eq!(
            failures(&ours.stdout),
            opa_failures,
            "{}: {ours:#?}",
            dir.display()
        );
    }
}

/// The default bundle with a $500 budget limit and a 0.25 temperature limit for compliance.
fn stricter() -> PolicyBundleSpec {
    let mut spec = default_bundle_spec();
    spec.version = "1.1.0".into();
    spec.data.max_monthly_budget_usd = 500.0;
    spec.data.temperature_limits.compliance = 0.25;
    spec
}

/// The governed example with this budget and temperature.
fn spec(budget: f64, temperature: f64) -> AgentSpec {
    let mut spec = governed_spec();
    spec.anatomy.economics.as_mut().unwrap().monthly_budget_usd = budget;
    spec.anatomy.reasoning.as_mut().unwrap().temperature = temperature;
    spec
}

fn manifest(bundle: &PolicyBundleSpec) -> String {
    serde_yaml::to_string(&PolicyBundle::new("default", bundle.clone())).unwrap()
}

/// An agent as `kubectl get agent NAME -o yaml` prints it, written to a file.
async fn agent_file(setup: &Setup, dir: &Path, name: &str) -> String {
    let agent: Agent = setup.agents().get(name).await.unwrap();
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, serde_yaml::to_string(&agent).unwrap()).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test]
async fn policy_eval_and_preview_predict_what_applying_a_bundle_does() {
    let setup = setup("cli-policy").await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    let ns = setup.ns.name.clone();
    let plugin = Plugin::new(&ns);
    let dir = scratch_dir(&ns);

    // Four governed agents, all GOVERNED_VALID under the default bundle ($1000, 0.3), and a
    // sandbox. Under the stricter bundle ($500, 0.25): steady stays valid, near is above 80 %
    // of the limit (restricted), costly is above it and hot above the temperature limit
    // (both invalidated).
    let agents = [
        ("steady", spec(250.0, 0.2)),
        ("near", spec(450.0, 0.2)),
        ("costly", spec(800.0, 0.2)),
        ("hot", spec(250.0, 0.28)),
    ];
    for (name, spec) in &agents {
        create_approved(&setup, name, spec.clone()).await;
    }
    create_agent(&setup, "lab", sandbox_spec(3_600)).await;

    let strict = stricter();
    let strict_file = dir.join("strict.yaml");
    std::fs::write(&strict_file, manifest(&strict)).unwrap();
    let strict_arg = strict_file.to_str().unwrap().to_string();

    // policy eval, offline with the candidate: costly is denied (exit 1, the budget deny),
    // steady allowed; near restricted.
    let costly = agent_file(&setup, &dir, "costly").await;
    let run = plugin
        .run(&["policy", "eval", "-f", &costly, "--bundle", &strict_arg])
        .await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stdout.contains(&format!("agent:    {ns}/costly\n")),
        "{run:#?}"
    );
    assert!(run.stdout.contains("decision: denied\n"), "{run:#?}");
    assert!(
        run.stdout
            .contains("deny:     [budget] anatomy.economics.monthlyBudgetUsd 800 is above the org limit of 500"),
        "{run:#?}"
    );
    assert_eq!(
        run.stderr,
        format!("error: the policy denies agent {ns}/costly (1 denies)\n"),
        "{run:#?}"
    );
    let steady = agent_file(&setup, &dir, "steady").await;
    let run = plugin
        .quiet(&["policy", "eval", "-f", &steady, "--bundle", &strict_arg])
        .await;
    assert!(
        run.stdout
            .contains("decision: allowed (GOVERNED_VALID once approved)\n"),
        "{run:#?}"
    );
    let near = agent_file(&setup, &dir, "near").await;
    let run = plugin
        .quiet(&[
            "policy",
            "eval",
            "-f",
            &near,
            "--bundle",
            &strict_arg,
            "-o",
            "json",
        ])
        .await;
    let answer: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(answer["allow"], true, "{answer:#}");
    assert_eq!(answer["onceApproved"], "GOVERNED_RESTRICTED", "{answer:#}");
    assert_eq!(answer["bundle"]["hash"], policy_hash(&strict).unwrap());

    // policy eval against the bundle in force (no --bundle): costly is allowed there.
    let run = plugin
        .quiet(&["policy", "eval", "-f", &costly, "-o", "json"])
        .await;
    let answer: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(answer["allow"], true, "{answer:#}");
    assert_eq!(answer["bundle"]["name"], format!("{ns}/default"));
    assert_eq!(
        answer["bundle"]["hash"],
        policy_hash(&default_bundle_spec()).unwrap()
    );
    let error = plugin
        .error(&["policy", "eval", "-f", &costly, "--bundle", "missing"])
        .await;
    assert!(
        error.contains(&format!("PolicyBundle {ns}/missing")),
        "{error}"
    );

    // policy preview: the table, then the rows as JSON.
    let run = plugin.ok(&["policy", "preview", &strict_arg]).await;
    golden("policy-preview.txt", &run.stdout);
    assert!(
        run.stderr
            .contains("4 governed agents: 1 valid, 1 restricted, 2 invalidated, 0 not in force"),
        "{run:#?}"
    );
    let run = plugin
        .ok(&["policy", "preview", "-f", &strict_arg, "-o", "json"])
        .await;
    let rows: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    let predicted: BTreeMap<String, String> = rows
        .iter()
        .map(|r| {
            assert_eq!(r["now"], "GOVERNED_VALID", "{r:#}");
            (
                r["agent"].as_str().unwrap().to_string(),
                r["after"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: BTreeMap<String, String> = [
        ("costly", "GOVERNED_INVALIDATED"),
        ("hot", "GOVERNED_INVALIDATED"),
        ("near", "GOVERNED_RESTRICTED"),
        ("steady", "GOVERNED_VALID"),
    ]
    .into_iter()
    .map(|(a, s)| (a.to_string(), s.to_string()))
    .collect();
    assert_eq!(predicted, expected, "{rows:#?}");
    let why = |agent: &str| {
        rows.iter().find(|r| r["agent"] == agent).unwrap()["why"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        why("hot").contains("temperature 0.28 is above the limit 0.25"),
        "{rows:#?}"
    );
    assert!(
        why("near").contains("above 80% of the org limit 500"),
        "{rows:#?}"
    );

    // events --follow on near, started before the bundle changes: it prints near's change.
    let mut follow = tokio::process::Command::new(binary("kubectl-agentgov").unwrap())
        .arg("--kubeconfig")
        .arg(&plugin.kubeconfig)
        .args(["events", "near", "--follow", "-o", "json"])
        .env_remove("KUBECONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    // Its first lines are what happened so far: near's promotion.
    let mut before = Vec::new();
    while !before.iter().any(|l: &Value| l["reason"] == "Promoted") {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("events --follow prints the existing events")
            .unwrap()
            .expect("events --follow keeps running");
        before.push(serde_json::from_str(&line).unwrap());
    }

    // Apply the candidate; the operator judges every agent under it.
    bundle_in_force(&setup, &strict).await;
    let hash = policy_hash(&strict).unwrap();
    let mut judged = BTreeMap::new();
    for (name, _) in &agents {
        let agent = wait_agent(&setup, name, "judged under the stricter bundle", |a| {
            a.status
                .as_ref()
                .and_then(|s| s.policy.as_ref())
                .is_some_and(|p| p.hash == hash)
        })
        .await;
        judged.insert(
            name.to_string(),
            governance(&agent).unwrap().as_str().to_string(),
        );
    }
    assert_eq!(
        judged, predicted,
        "what preview said is what the operator did"
    );
    wait_agent(&setup, "lab", "still a sandbox", |a| {
        governance(a) == Some(GovernanceStatus::Sandbox)
    })
    .await;

    // The follower saw near become restricted, after it started.
    let mut after = Vec::new();
    while !after
        .iter()
        .any(|l: &Value| l["message"] == "GOVERNED_VALID -> GOVERNED_RESTRICTED")
    {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no status change printed; so far {after:#?}"))
            .unwrap()
            .expect("events --follow keeps running");
        after.push(serde_json::from_str(&line).unwrap());
    }
    follow.start_kill().unwrap();
    let _ = follow.wait().await;

    // events NAME: the promotion and the invalidation, as a table. The status (and so the
    // condition lines the plugin derives from it) is written before the operator records its
    // Warning Event, so read until that Event is listed.
    let events = || plugin.quiet(&["events", "costly"]);
    let run: Run = match wait_for(WAIT, || async {
        let run = events().await;
        run.stdout.contains("Warning   Invalidated").then_some(run)
    })
    .await
    {
        Ok(run) => run,
        Err(_) => events().await,
    };
    let mut rows = run.stdout.lines();
    let header = rows.next().unwrap();
    assert!(
        header.starts_with("LAST SEEN   TYPE      REASON"),
        "{run:#?}"
    );
    assert!(header.ends_with("MESSAGE"), "{run:#?}");
    let reasons: Vec<&str> = run
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    for reason in ["Promoted", "Invalidated"] {
        assert!(reasons.contains(&reason), "{reason}: {run:#?}");
    }
    // The operator's Events (a condition's line is Normal and reads `Ready=...`).
    assert!(run.stdout.contains("Warning   Invalidated"), "{run:#?}");
    assert!(
        run.stdout
            .lines()
            .any(|l| l.contains("Normal    Promoted") && l.contains("GOVERNED_VALID: approved by")),
        "{run:#?}"
    );
    let error = plugin.error(&["events", "nobody"]).await;
    assert!(error.contains("agent \"nobody\" not found"), "{error}");
}
