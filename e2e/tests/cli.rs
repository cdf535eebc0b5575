//! The kubectl plugin (`kubectl-agentgov`) on the real control plane, run as a user runs it:
//! with `--kubeconfig` (a copy of the test cluster's, with a second context whose namespace is
//! the test's), against agents the real operator governs. `list` prints like `kubectl get`
//! (headers, sorting, `-A`), each filter narrows, `-o name|json|yaml` print names and a List;
//! `verify` checks the proof the operator signed with the webhook's public key ring, names the
//! spec hash when a dumped manifest's spec was changed, and a missing agent is one line of error.
//!
//! Each test has its own namespace, operator and registered webhook (`admission::setup`).

// Test code: a panic with the value is the failure report, in helpers as in #[test]s.
#![allow(clippy::unwrap_used)]

use agentgov_api::agent::GovernanceStatus;
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::{Agent, AgentSpec};
use agentgov_e2e::admission::*;
use agentgov_e2e::operator::{KeyFile, log_dir};
use agentgov_e2e::plugin::{CONTEXT, Plugin, write};
use kube::api::ObjectMeta;
use serde_json::Value;

/// The table's columns (`-A` puts NAMESPACE first).
const COLUMNS: [&str; 6] = ["NAME", "MODE", "ROLE", "STATUS", "EXPIRES", "AGE"];

/// The agent names `list` prints with `args` (a table in the test's namespace).
async fn listed(plugin: &Plugin, ns: &str, args: &[&str]) -> Vec<String> {
    let mut all = vec!["list", "-n", ns];
    all.extend(args);
    plugin.quiet(&all).await.names(0)
}

/// An agent named `name` with `labels`, created through the webhook.
async fn create_labelled(setup: &Setup, name: &str, spec: AgentSpec, labels: &[(&str, &str)]) {
    let mut agent = Agent::new(name, spec);
    agent.metadata = ObjectMeta {
        labels: Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..agent.metadata
    };
    admitted(
        setup,
        &format!("agent {name}"),
        creating(&setup.agents(), &agent),
    )
    .await;
}

async fn sandbox_status(setup: &Setup, name: &str) {
    wait_agent(setup, name, "SANDBOX", |a| {
        governance(a) == Some(GovernanceStatus::Sandbox)
    })
    .await;
}

#[tokio::test]
async fn list_prints_like_kubectl_get_and_each_filter_narrows() {
    let setup = setup("cli-list").await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    // Created out of order: the listing sorts by name.
    create_agent(&setup, "lab-short", sandbox_spec(3_600)).await;
    create_labelled(
        &setup,
        "lab-long",
        sandbox_spec(7 * 86_400),
        &[("team", "research")],
    )
    .await;
    create_approved(&setup, "auditor", governed_spec()).await;
    sandbox_status(&setup, "lab-short").await;
    sandbox_status(&setup, "lab-long").await;
    let ns = setup.ns.name.as_str();
    let plugin = Plugin::new(ns);

    // The table: kubectl's headers, aligned columns, sorted rows.
    let run = plugin.quiet(&["list", "-n", ns]).await;
    let lines: Vec<&str> = run.stdout.lines().collect();
    let headers: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(headers, COLUMNS, "{run:#?}");
    assert_eq!(
        run.names(0),
        ["auditor", "lab-long", "lab-short"],
        "{run:#?}"
    );
    let status_at = lines[0].find("STATUS").unwrap();
    let expires_at = lines[0].find("EXPIRES").unwrap();
    let cell = |line: &str, at: usize| line[at..].split_whitespace().next().unwrap().to_string();
    assert_eq!(cell(lines[1], status_at), "GOVERNED_VALID", "{run:#?}");
    assert_eq!(cell(lines[1], expires_at), "<none>", "{run:#?}");
    assert!(lines[1].contains(" governed ") && lines[1].contains(" compliance "));
    assert_eq!(cell(lines[3], status_at), "SANDBOX", "{run:#?}");
    // An hour to live: "in 59m" (or "in 60m" within the first second).
    assert!(lines[3][expires_at..].starts_with("in "), "{run:#?}");
    assert!(lines[2][expires_at..].starts_with("in 6d"), "{run:#?}");

    // The namespace of the current context, then of another context (`--context`), without -n.
    let run = plugin.quiet(&["list"]).await;
    assert_eq!(run.names(0), ["auditor", "lab-long", "lab-short"]);
    let current = plugin.current_context();
    plugin.set_namespace(&current, "no-agents-here");
    let run = plugin.quiet(&["--context", CONTEXT, "list"]).await;
    assert_eq!(run.names(0), ["auditor", "lab-long", "lab-short"]);
    plugin.set_namespace(&current, ns);

    // Each filter narrows (flags in any case, as documented).
    let cases: [(&[&str], &[&str]); 9] = [
        (&["--status", "sandbox"], &["lab-long", "lab-short"]),
        (&["--status", "GOVERNED_VALID"], &["auditor"]),
        (&["--role", "compliance"], &["auditor"]),
        (&["--mode", "Governed"], &["auditor"]),
        (&["--expiring-within", "24h"], &["lab-short"]),
        (&["--search", "SUMMARISATION"], &["lab-long", "lab-short"]),
        (&["--search", "purchase orders"], &["auditor"]),
        (&["-l", "team=research"], &["lab-long"]),
        (&["--mode", "sandbox", "--search", "long"], &["lab-long"]),
    ];
    for (args, expected) in cases {
        assert_eq!(listed(&plugin, ns, args).await, expected, "{args:?}");
    }

    // Nothing found: kubectl's sentence on stderr, exit 0.
    let run = plugin
        .run(&["list", "-n", ns, "--search", "no-such-agent"])
        .await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        format!("No resources found in {ns} namespace.\n")
    );
    let run = plugin
        .run(&["list", "-n", ns, "--status", "governed_invalidated"])
        .await;
    assert_eq!(
        run.stderr,
        format!("No resources found in {ns} namespace.\n")
    );

    // -o name, json and yaml.
    let run = plugin.quiet(&["list", "-n", ns, "-o", "name"]).await;
    assert_eq!(
        run.stdout,
        "agent.agentgov.dev/auditor\nagent.agentgov.dev/lab-long\nagent.agentgov.dev/lab-short\n"
    );
    let run = plugin
        .quiet(&["list", "-n", ns, "-o", "json", "--mode", "governed"])
        .await;
    let list: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(list["kind"], "List", "{list:#}");
    assert_eq!(list["apiVersion"], "v1");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list:#}");
    assert_eq!(items[0]["kind"], "Agent");
    assert_eq!(items[0]["metadata"]["name"], "auditor");
    assert_eq!(items[0]["status"]["governanceStatus"], "GOVERNED_VALID");
    let run = plugin.quiet(&["list", "-n", ns, "-o", "yaml"]).await;
    let list: Value = serde_yaml::from_str(&run.stdout).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().unwrap().len(), 3, "{list:#}");

    // -A: the NAMESPACE column first (other tests' agents may be listed too).
    let run = plugin.quiet(&["list", "-A"]).await;
    let header: Vec<&str> = run
        .stdout
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(header[0], "NAMESPACE", "{run:#?}");
    assert_eq!(header[1..], COLUMNS, "{run:#?}");
    let ours: Vec<String> = run
        .stdout
        .lines()
        .filter(|line| line.split_whitespace().next() == Some(ns))
        .map(|line| line.split_whitespace().nth(1).unwrap().to_string())
        .collect();
    assert_eq!(ours, ["auditor", "lab-long", "lab-short"], "{run:#?}");

    // A flag value it does not know: clap's usage error, exit 2.
    let run = plugin.run(&["list", "--status", "valid"]).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(run.stderr.starts_with("error: "), "{run:#?}");
}

#[tokio::test]
async fn verify_checks_the_signed_proof_offline_and_names_what_failed() {
    let setup = setup("cli-verify").await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    let auditor = create_approved(&setup, "auditor", governed_spec()).await;
    create_agent(&setup, "lab", sandbox_spec(3_600)).await;
    let ns = setup.ns.name.as_str();
    let plugin = Plugin::new(ns);
    // The webhook's ring: public keys only.
    let keys = setup.webhook.keyring.display().to_string();
    let proof = auditor.status.as_ref().unwrap().proof.clone().unwrap();

    // From the cluster: verified, with what the proof says.
    let run = plugin
        .quiet(&["verify", "auditor", "-n", ns, "--keys", &keys])
        .await;
    assert!(
        run.stdout
            .starts_with(&format!("verified: agent {ns}/auditor (GOVERNED_VALID)\n")),
        "{run:#?}"
    );
    for expected in [
        &proof.spec_hash,
        &proof.policy_hash,
        &proof.key_id,
        &proof.signed_at,
        &proof.approvers[0].username,
    ] {
        assert!(
            run.stdout.contains(expected.as_str()),
            "{expected}: {run:#?}"
        );
    }

    // Offline, from the manifest as `kubectl get -o yaml` dumps it, on stdin and from a file.
    let stored = setup.agents().get("auditor").await.unwrap();
    let yaml = serde_yaml::to_string(&stored).unwrap();
    let run = plugin
        .run_with_input(&["verify", "-f", "-", "--keys", &keys], yaml.as_bytes())
        .await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(run.stdout.starts_with("verified: "), "{run:#?}");
    let dir = log_dir().join(format!("{ns}-cli"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut changed = stored.clone();
    changed.spec.description = "changed after the approval".into();
    let file = write(
        &dir,
        "changed.yaml",
        &serde_yaml::to_string(&changed).unwrap(),
    );
    let message = plugin
        .error(&["verify", "-f", &file, "--keys", &keys])
        .await;
    assert!(
        message.starts_with("error: the spec hash check failed: ")
            && message.contains(&format!("spec of {ns}/auditor changed after signing"))
            && message.contains(&proof.spec_hash[..12]),
        "{message}"
    );
    // JSON too; with a ring that does not hold the signing key, the signature fails.
    let file = write(&dir, "agent.json", &serde_json::to_string(&stored).unwrap());
    let stranger = KeyFile::new(&dir.join("stranger"), &proof.key_id).unwrap();
    let stranger = stranger.path.display().to_string();
    let message = plugin
        .error(&["verify", "-f", &file, "--keys", &stranger])
        .await;
    assert!(
        message.starts_with("error: the signature check failed: "),
        "{message}"
    );
    plugin
        .quiet(&["verify", "-f", &file, "--keys", &keys])
        .await;

    // A sandbox has no proof; a missing agent is one line.
    let message = plugin
        .error(&["verify", "lab", "-n", ns, "--keys", &keys])
        .await;
    assert!(message.contains("sandbox"), "{message}");
    let message = plugin
        .error(&["verify", "nobody", "-n", ns, "--keys", &keys])
        .await;
    assert_eq!(
        message,
        format!("error: agent \"nobody\" not found in namespace \"{ns}\"")
    );
    // A key ring that is not there.
    let message = plugin
        .error(&[
            "verify",
            "auditor",
            "-n",
            ns,
            "--keys",
            "/nonexistent/keyring.json",
        ])
        .await;
    assert!(message.contains("/nonexistent/keyring.json"), "{message}");
}
