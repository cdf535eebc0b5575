//! The kubectl plugin's `create` modes beyond clone/import/scratch, on the real control plane:
//! `--template` (the namespace's AgentTemplate, else the ClusterAgentTemplate of that name),
//! `--cluster-template`, an override off the template's list refused in one sentence;
//! `--from-workflow` (Argo and GitHub Actions), `--from-conversation`, `--from-event` (from
//! stdin) and `--import` of a seed `agent_specs` row, each printed on a client dry run and
//! created for real, its `spec.source` and spec fields asserted; `--check` against the
//! namespace's bundle in force and against a bundle file, for a spec the policy allows and one
//! it denies; the template CRDs' CEL rules refusing a template without a role class and one
//! naming an override twice.
//!
//! Each test has its own namespace, operator and registered webhook (`admission::setup`).

// Test code: a panic with the value is the failure report, in helpers as in #[test]s.
#![allow(clippy::unwrap_used)]

use agentgov_api::agent::{AgentMode, RoleClass, SourceKind};
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::template::OverrideField;
use agentgov_api::{Agent, AgentTemplate, ClusterAgentTemplate};
use agentgov_e2e::admission::*;
use agentgov_e2e::plugin::Plugin;
use agentgov_e2e::repo_root;
use kube::api::{Api, DeleteParams, PostParams};

fn path(relative: &str) -> String {
    repo_root().join(relative).display().to_string()
}

fn read<T: serde::de::DeserializeOwned>(relative: &str) -> T {
    serde_yaml::from_str(&std::fs::read_to_string(repo_root().join(relative)).unwrap()).unwrap()
}

/// `create args... --dry-run=client -o yaml`: the Agent printed.
async fn printed(plugin: &Plugin, args: &[&str]) -> Agent {
    let mut all = vec!["create"];
    all.extend(args);
    all.extend(["--dry-run=client", "-o", "yaml"]);
    let run = plugin.ok(&all).await;
    serde_yaml::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:#?}"))
}

fn source(agent: &Agent) -> (SourceKind, String) {
    let source = agent.spec.source.clone().unwrap();
    (source.kind, source.reference.unwrap_or_default())
}

const AUDITOR: [&str; 10] = [
    "--template",
    "compliance-auditor",
    "--input",
    "erp-invoices",
    "--action",
    "flag-mismatch",
    "--capability",
    "document-comparison",
    "--temperature",
    "0.1",
];

#[tokio::test]
async fn templates_namespaced_then_cluster_overrides_and_check() {
    let setup = setup("cli-create-tpl").await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    let ns = setup.ns.name.as_str();
    let plugin = Plugin::new(ns);

    let template: AgentTemplate = read("examples/templates/agenttemplate-compliance-auditor.yaml");
    let templates: Api<AgentTemplate> = setup.ns.api();
    templates
        .create(&PostParams::default(), &template)
        .await
        .unwrap();
    // Cluster-scoped: a name of this test's own.
    let lab = format!("sandbox-lab-{ns}");
    let mut cluster_template: ClusterAgentTemplate =
        read("examples/templates/clusteragenttemplate-sandbox-lab.yaml");
    cluster_template.metadata.name = Some(lab.clone());
    let cluster_templates: Api<ClusterAgentTemplate> = Api::all(setup.client.clone());
    cluster_templates
        .create(&PostParams::default(), &cluster_template)
        .await
        .unwrap();

    // --template, client dry run: the template's defaults with the allowed overrides.
    let mut args = vec!["auditor"];
    args.extend(AUDITOR);
    let agent = printed(&plugin, &args).await;
    let reference = format!("agenttemplates/{ns}/compliance-auditor");
    assert_eq!(source(&agent), (SourceKind::Template, reference.clone()));
    assert_eq!(agent.spec.mode, AgentMode::Governed);
    assert_eq!(agent.spec.version, "1.0.0");
    let reasoning = agent.spec.anatomy.reasoning.clone().unwrap();
    assert_eq!(
        (reasoning.model.as_str(), reasoning.temperature),
        ("gpt-4o", 0.1)
    );
    assert_eq!(agent.spec.anatomy.inputs, ["erp-invoices"]);
    assert_eq!(
        agent
            .spec
            .anatomy
            .economics
            .clone()
            .unwrap()
            .monthly_budget_usd,
        250.0
    );
    assert!(
        setup.agents().get_opt("auditor").await.unwrap().is_none(),
        "a client dry run creates nothing"
    );

    // For real.
    let run = plugin.create(&args).await;
    assert_eq!(
        run.stdout, "agent.agentgov.dev/auditor created\n",
        "{run:#?}"
    );
    let stored = setup.agents().get("auditor").await.unwrap();
    assert_eq!(source(&stored), (SourceKind::Template, reference));
    assert_eq!(stored.spec.anatomy.capabilities, ["document-comparison"]);
    assert_eq!(stored.spec.anatomy.memory, agent.spec.anatomy.memory);

    // An override off the list: refused in one sentence, nothing created.
    let error = plugin
        .error(&[
            "create",
            "other",
            "--template",
            "compliance-auditor",
            "--role",
            "ideation",
        ])
        .await;
    assert_eq!(
        error,
        format!(
            "error: template agenttemplates/{ns}/compliance-auditor does not allow overriding \
             roleClass (it allows: description, version, anatomy.reasoning.temperature, \
             anatomy.inputs, anatomy.actions, anatomy.capabilities)"
        )
    );
    assert!(setup.agents().get_opt("other").await.unwrap().is_none());

    // --template falls back to the ClusterAgentTemplate; --cluster-template names it.
    let run = plugin
        .create(&[
            "lab",
            "--template",
            &lab,
            "--role",
            "ideation",
            "--temperature",
            "0.9",
        ])
        .await;
    assert_eq!(run.stdout, "agent.agentgov.dev/lab created\n", "{run:#?}");
    let stored = setup.agents().get("lab").await.unwrap();
    assert_eq!(
        source(&stored),
        (SourceKind::Template, format!("clusteragenttemplates/{lab}"))
    );
    assert_eq!(stored.spec.role_class, RoleClass::Ideation);
    assert_eq!(stored.spec.mode, AgentMode::Sandbox);
    assert_eq!(
        stored.spec.sandbox.clone().unwrap().ttl_seconds,
        Some(86_400)
    );
    assert_eq!(
        stored.spec.anatomy.reasoning.clone().unwrap().temperature,
        0.9
    );
    let agent = printed(
        &plugin,
        &["lab2", "--cluster-template", &lab, "--ttl", "2h"],
    )
    .await;
    assert_eq!(agent.spec.sandbox.unwrap().ttl_seconds, Some(7_200));
    assert_eq!(agent.spec.role_class, RoleClass::Analysis);
    let error = plugin
        .error(&["create", "x", "--template", "no-such-template"])
        .await;
    assert!(
        error.contains("no AgentTemplate no-such-template in namespace"),
        "{error}"
    );

    // --check against the namespace's bundle in force: allowed, then denied (the lab template
    // leaves the anatomy incomplete); the manifest stays alone on stdout.
    let mut args = vec!["create", "auditor2"];
    args.extend(AUDITOR);
    args.extend(["--check", "--dry-run=client", "-o", "yaml"]);
    let run = plugin.ok(&args).await;
    let agent: Agent = serde_yaml::from_str(&run.stdout).unwrap();
    assert_eq!(agent.metadata.name.as_deref(), Some("auditor2"));
    assert!(
        run.stderr
            .contains(&format!("bundle:   {ns}/default (version 1.0.0")),
        "{run:#?}"
    );
    assert!(
        run.stderr
            .contains("decision: allowed (GOVERNED_VALID once approved)"),
        "{run:#?}"
    );
    let run = plugin
        .ok(&[
            "create",
            "lab3",
            "--cluster-template",
            &lab,
            "--check",
            "--dry-run=client",
        ])
        .await;
    assert_eq!(run.stdout, "agent.agentgov.dev/lab3 created (dry run)\n");
    assert!(run.stderr.contains("decision: denied"), "{run:#?}");
    assert!(
        run.stderr.contains("deny:     [anatomy_incomplete]"),
        "{run:#?}"
    );
    assert!(run.stderr.contains("deny:     [capabilities]"), "{run:#?}");

    // The schema's CEL rules refuse obvious mistakes: no role class anywhere, a field twice.
    let mut broken = template.clone();
    broken.metadata.name = Some("no-role".into());
    broken.spec.defaults.role_class = None;
    let error = templates
        .create(&PostParams::default(), &broken)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("must set defaults.roleClass"), "{error}");
    broken.spec.allowed_overrides = vec![OverrideField::RoleClass, OverrideField::RoleClass];
    let error = templates
        .create(&PostParams::default(), &broken)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("must not name a field twice"), "{error}");

    cluster_templates
        .delete(&lab, &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn workflow_conversation_event_and_seed_row() {
    let setup = setup("cli-create-src").await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    let ns = setup.ns.name.as_str();
    let plugin = Plugin::new(ns);
    let argo = path("e2e/fixtures/cli/workflow-argo.yaml");
    let github = path("e2e/fixtures/cli/workflow-github.yaml");
    let conversation = path("e2e/fixtures/cli/conversation-openai.json");
    let event = path("e2e/fixtures/cli/cloudevent.json");
    let row = path("e2e/fixtures/cli/seed-agent-spec-row.json");
    let reasoning = [
        "--role",
        "compliance",
        "--model",
        "gpt-4o",
        "--temperature",
        "0.2",
    ];

    // --from-workflow, Argo: offline client dry run (-n, no cluster read), then for real.
    let mut args = vec!["recon", "-n", ns, "--from-workflow", &argo];
    args.extend(reasoning);
    let agent = printed(&plugin, &args).await;
    assert_eq!(
        source(&agent),
        (
            SourceKind::Workflow,
            "WorkflowTemplate/invoice-reconciliation".into()
        )
    );
    assert_eq!(
        agent.spec.anatomy.actions,
        ["fetch-invoices", "compare", "open-ticket"]
    );
    plugin.create(&args).await;
    let stored = setup.agents().get("recon").await.unwrap();
    assert_eq!(stored.spec, agent.spec);
    assert_eq!(
        stored.spec.anatomy.inputs,
        ["supplier", "erp-invoices", "purchase-orders"]
    );

    // --from-workflow, GitHub Actions.
    let mut args = vec!["nightly", "--from-workflow", &github];
    args.extend(reasoning);
    plugin.create(&args).await;
    let stored = setup.agents().get("nightly").await.unwrap();
    assert_eq!(
        source(&stored),
        (SourceKind::Workflow, "github-actions/nightly-report".into())
    );
    assert_eq!(stored.spec.anatomy.inputs, ["report-date", "dataset"]);
    assert_eq!(stored.spec.description, "Nightly report");

    // --from-conversation: description, tools, reasoning.
    let args = [
        "triage",
        "--from-conversation",
        &conversation,
        "--role",
        "analysis",
    ];
    let agent = printed(&plugin, &args).await;
    assert_eq!(
        source(&agent),
        (
            SourceKind::Conversation,
            "chatcmpl-invoice-triage-01".into()
        )
    );
    plugin.create(&args).await;
    let stored = setup.agents().get("triage").await.unwrap();
    assert!(
        stored
            .spec
            .description
            .starts_with("You triage supplier invoices"),
        "{:?}",
        stored.spec.description
    );
    assert_eq!(
        stored.spec.anatomy.actions,
        ["lookup_purchase_order", "flag_mismatch"]
    );
    assert_eq!(
        stored.spec.anatomy.capabilities,
        stored.spec.anatomy.actions
    );
    let reasoning_stored = stored.spec.anatomy.reasoning.unwrap();
    assert_eq!(
        (
            reasoning_stored.model.as_str(),
            reasoning_stored.temperature
        ),
        ("gpt-4o", 0.2)
    );

    // --from-event from stdin: type@source, data's spec fields.
    let text = std::fs::read(&event).unwrap();
    let run = plugin
        .run_with_input(
            &[
                "create",
                "summary",
                "--from-event",
                "-",
                "--dry-run=client",
                "-o",
                "yaml",
            ],
            &text,
        )
        .await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    let agent: Agent = serde_yaml::from_str(&run.stdout).unwrap();
    assert_eq!(
        source(&agent),
        (
            SourceKind::Event,
            "dev.agentgov.agent.requested@/intake/forms".into()
        )
    );
    plugin.create(&["summary", "--from-event", &event]).await;
    let stored = setup.agents().get("summary").await.unwrap();
    assert_eq!(stored.spec, agent.spec);
    assert_eq!(stored.spec.role_class, RoleClass::Analysis);
    assert_eq!(stored.spec.version, "0.3.0");
    assert_eq!(
        stored.spec.sandbox.clone().unwrap().ttl_seconds,
        Some(7_200)
    );

    // --import of a seed agent_specs row: governed, its status dropped; --check offline
    // against the shipped bundle (allowed), then with a budget over its limit (denied).
    let bundle = path("examples/policybundle-default.yaml");
    let args = [
        "reviewer", "-n", ns, "--import", &row, "--check", "--bundle", &bundle,
    ];
    let mut dry = args.to_vec();
    dry.extend(["--dry-run=client", "-o", "yaml"]);
    let run = plugin.ok(&[&["create"], dry.as_slice()].concat()).await;
    let agent: Agent = serde_yaml::from_str(&run.stdout).unwrap();
    assert_eq!(
        source(&agent),
        (SourceKind::Import, "agent_specs/42".into())
    );
    assert_eq!(agent.spec.mode, AgentMode::Governed);
    assert!(agent.status.is_none());
    assert!(
        run.stderr
            .contains("decision: allowed (GOVERNED_VALID once approved)"),
        "{run:#?}"
    );
    let run = plugin.create(&args).await;
    assert!(run.stderr.contains("decision: allowed"), "{run:#?}");
    let stored = setup.agents().get("reviewer").await.unwrap();
    assert_eq!(stored.spec, agent.spec);
    assert_eq!(stored.spec.anatomy.capabilities, ["clause-detection"]);
    let mut over = dry.clone();
    over.extend(["--budget", "100000"]);
    let run = plugin.ok(&[&["create"], over.as_slice()].concat()).await;
    assert!(run.stderr.contains("decision: denied"), "{run:#?}");
    assert!(run.stderr.contains("deny:     [budget]"), "{run:#?}");

    // --scratch without --role and stdin no terminal: no prompts, the missing flag named.
    let error = plugin.error(&["create", "x", "--scratch"]).await;
    assert_eq!(
        error,
        "error: the agent needs a role class: give --role (compliance, analysis or ideation)"
    );

    // What is no workflow is named.
    let error = plugin
        .error(&[
            "create",
            "x",
            "--from-workflow",
            &event,
            "--role",
            "analysis",
        ])
        .await;
    assert!(error.contains("is not a workflow"), "{error}");
}
