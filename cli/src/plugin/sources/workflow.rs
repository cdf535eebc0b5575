//! `create --from-workflow FILE`: an Argo Workflows Workflow, WorkflowTemplate,
//! ClusterWorkflowTemplate or CronWorkflow, or a GitHub Actions workflow, as a partial spec.
//!
//! Argo: the workflow's arguments (parameters and artifacts) and the templates' input
//! artifacts become inputs; every template that does work (container, script, resource, http,
//! plugin, data, containerSet) becomes an action, by its name; `steps`, `dag` and `suspend`
//! templates only order the others. The annotation `workflows.argoproj.io/description` becomes
//! the description. Reference: `<kind>/<name>`.
//!
//! GitHub Actions: the inputs of `workflow_dispatch` and `workflow_call` become inputs; every
//! step (its `id`, else its `name`, else the action it `uses`, else `<job>-step-<n>`) and every
//! job that calls a reusable workflow becomes an action; the workflow's `name` becomes the
//! description. Reference: `github-actions/<name, else the file's name>` (`.../workflow` for an
//! unnamed one read from stdin).

use std::collections::BTreeMap;

use agentgov_api::agent::SourceKind;
use agentgov_api::template::{AgentDefaults, AnatomyDefaults};
use serde::Deserialize;
use serde_yaml::Value;

use super::{Draft, slug, source, unique};

const ARGO_KINDS: [&str; 4] = [
    "Workflow",
    "WorkflowTemplate",
    "ClusterWorkflowTemplate",
    "CronWorkflow",
];
/// What a template holds when it does work itself.
const WORK: [&str; 7] = [
    "container",
    "script",
    "resource",
    "http",
    "plugin",
    "data",
    "containerSet",
];

/// A workflow definition as a draft, or why it is none (`file` names it in the reference when
/// the workflow has no name).
pub fn parse(bytes: &[u8], file: &str) -> Result<Draft, String> {
    let document: Value = serde_yaml::from_slice(bytes).map_err(|e| e.to_string())?;
    let kind = document.get("kind").and_then(Value::as_str);
    let api_version = document.get("apiVersion").and_then(Value::as_str);
    match (kind, api_version) {
        (Some(kind), Some(api))
            if api.starts_with("argoproj.io/") && ARGO_KINDS.contains(&kind) =>
        {
            argo(document)
        }
        _ if document.get("jobs").is_some() => github(document, file),
        _ => Err(
            "it is neither an Argo Workflows workflow (apiVersion argoproj.io/v1alpha1, kind \
                  Workflow or WorkflowTemplate) nor a GitHub Actions workflow (jobs:)"
                .into(),
        ),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Argo {
    kind: String,
    #[serde(default)]
    metadata: ArgoMeta,
    #[serde(default)]
    spec: ArgoSpec,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArgoMeta {
    name: Option<String>,
    generate_name: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArgoSpec {
    #[serde(default)]
    arguments: Arguments,
    #[serde(default)]
    templates: Vec<BTreeMap<String, Value>>,
    /// A CronWorkflow's workflow.
    workflow_spec: Option<Box<ArgoSpec>>,
}

#[derive(Default, Deserialize)]
struct Arguments {
    #[serde(default)]
    parameters: Vec<Named>,
    #[serde(default)]
    artifacts: Vec<Named>,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

fn argo(document: Value) -> Result<Draft, String> {
    let workflow: Argo = serde_yaml::from_value(document).map_err(|e| e.to_string())?;
    let spec = match workflow.spec.workflow_spec {
        Some(inner) => *inner,
        None => workflow.spec,
    };
    let name = workflow
        .metadata
        .name
        .or(workflow
            .metadata
            .generate_name
            .map(|g| g.trim_end_matches('-').to_string()))
        .unwrap_or_default();
    let mut inputs: Vec<String> = spec
        .arguments
        .parameters
        .iter()
        .chain(&spec.arguments.artifacts)
        .map(|n| n.name.clone())
        .collect();
    let mut actions = Vec::new();
    for template in &spec.templates {
        let artifacts = template
            .get("inputs")
            .and_then(|i| i.get("artifacts"))
            .cloned()
            .map(serde_yaml::from_value::<Vec<Named>>)
            .transpose()
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        inputs.extend(artifacts.into_iter().map(|a| a.name));
        if WORK.iter().any(|w| template.contains_key(*w)) {
            let Some(name) = template.get("name").and_then(Value::as_str) else {
                return Err("a template has no name".into());
            };
            actions.push(name.to_string());
        }
    }
    if actions.is_empty() {
        return Err(format!(
            "the {} {name} has no template that does work (container, script, resource, ...)",
            workflow.kind
        ));
    }
    Ok(Draft {
        spec: draft(
            workflow
                .metadata
                .annotations
                .get("workflows.argoproj.io/description")
                .cloned(),
            inputs,
            actions,
        ),
        source: source(
            SourceKind::Workflow,
            Some(format!("{}/{name}", workflow.kind)),
        ),
    })
}

#[derive(Deserialize)]
struct GitHub {
    name: Option<String>,
    #[serde(default, rename = "on")]
    triggers: Value,
    jobs: serde_yaml::Mapping,
}

#[derive(Default, Deserialize)]
struct Job {
    /// A call of a reusable workflow.
    uses: Option<String>,
    #[serde(default)]
    steps: Vec<Step>,
}

#[derive(Deserialize)]
struct Step {
    id: Option<String>,
    name: Option<String>,
    uses: Option<String>,
}

fn github(document: Value, file: &str) -> Result<Draft, String> {
    let workflow: GitHub = serde_yaml::from_value(document).map_err(|e| e.to_string())?;
    let mut inputs = Vec::new();
    for trigger in ["workflow_dispatch", "workflow_call"] {
        if let Some(Value::Mapping(declared)) =
            workflow.triggers.get(trigger).and_then(|t| t.get("inputs"))
        {
            inputs.extend(
                declared
                    .keys()
                    .filter_map(Value::as_str)
                    .map(str::to_string),
            );
        }
    }
    let mut actions = Vec::new();
    for (id, job) in &workflow.jobs {
        let id = id.as_str().unwrap_or_default();
        let job: Job = serde_yaml::from_value(job.clone()).map_err(|e| format!("job {id}: {e}"))?;
        if let Some(called) = &job.uses {
            // `org/repo/.github/workflows/notify.yml@main` → `notify`.
            let file = without_version(called)
                .rsplit('/')
                .next()
                .unwrap_or_default();
            let stem = file.trim_end_matches(".yml").trim_end_matches(".yaml");
            actions.push(slug(stem));
        }
        for (n, step) in job.steps.iter().enumerate() {
            let named = step
                .id
                .as_deref()
                .or(step.name.as_deref())
                .or(step.uses.as_deref().map(without_version))
                .map(slug)
                .filter(|s| !s.is_empty());
            actions.push(named.unwrap_or_else(|| format!("{}-step-{}", slug(id), n + 1)));
        }
    }
    if actions.is_empty() {
        return Err("the workflow has no job with steps".into());
    }
    let reference = workflow
        .name
        .as_deref()
        .map(slug)
        .filter(|s| !s.is_empty())
        .or_else(|| super::file_name(file));
    Ok(Draft {
        spec: draft(workflow.name.clone(), inputs, actions),
        source: source(
            SourceKind::Workflow,
            Some(format!(
                "github-actions/{}",
                reference.as_deref().unwrap_or("workflow")
            )),
        ),
    })
}

/// `actions/checkout@v4` → `actions/checkout`.
fn without_version(uses: &str) -> &str {
    uses.split_once('@').map_or(uses, |(name, _)| name)
}

fn draft(description: Option<String>, inputs: Vec<String>, actions: Vec<String>) -> AgentDefaults {
    AgentDefaults {
        description,
        anatomy: Some(AnatomyDefaults {
            inputs: unique(inputs),
            actions: unique(actions),
            ..AnatomyDefaults::default()
        }),
        ..AgentDefaults::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/../e2e/fixtures/cli/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(path).unwrap()
    }

    fn anatomy(draft: &Draft) -> AnatomyDefaults {
        draft.spec.anatomy.clone().unwrap()
    }

    #[test]
    fn an_argo_workflow_template_s_work_becomes_actions() {
        let draft = parse(&fixture("workflow-argo.yaml"), "workflow-argo.yaml").unwrap();
        let source = draft.source.clone().unwrap();
        assert_eq!(source.kind, SourceKind::Workflow);
        assert_eq!(
            source.reference.as_deref(),
            Some("WorkflowTemplate/invoice-reconciliation")
        );
        assert_eq!(
            anatomy(&draft).inputs,
            ["supplier", "erp-invoices", "purchase-orders"]
        );
        assert_eq!(
            anatomy(&draft).actions,
            ["fetch-invoices", "compare", "open-ticket"]
        );
        assert_eq!(
            draft.spec.description.as_deref(),
            Some("Reconciles supplier invoices against purchase orders.")
        );
    }

    #[test]
    fn a_github_actions_workflow_s_steps_become_actions() {
        let draft = parse(&fixture("workflow-github.yaml"), "ci.yaml").unwrap();
        assert_eq!(
            draft.source.clone().unwrap().reference.as_deref(),
            Some("github-actions/nightly-report")
        );
        assert_eq!(anatomy(&draft).inputs, ["report-date", "dataset"]);
        assert_eq!(
            anatomy(&draft).actions,
            [
                "actions-checkout",
                "build-report",
                "collect-step-3",
                "publish",
                "notify"
            ]
        );
        assert_eq!(draft.spec.description.as_deref(), Some("Nightly report"));
    }

    #[test]
    fn what_is_no_workflow_is_named() {
        let agent = b"apiVersion: agentgov.dev/v1alpha1\nkind: Agent\n";
        assert!(parse(agent, "a.yaml").unwrap_err().contains("neither"));
        let empty = b"apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {name: w}\nspec:\n  templates:\n  - name: main\n    steps: []\n";
        assert!(
            parse(empty, "w.yaml")
                .unwrap_err()
                .contains("no template that does work")
        );
        let no_steps = b"on: push\njobs:\n  a: {runs-on: x}\n";
        assert!(
            parse(no_steps, "-")
                .unwrap_err()
                .contains("no job with steps")
        );
        // Unnamed and read from stdin: the reference names neither.
        let bare = b"on: push\njobs:\n  a:\n    steps:\n    - run: make\n";
        let draft = parse(bare, "-").unwrap();
        assert_eq!(
            draft.source.unwrap().reference.as_deref(),
            Some("github-actions/workflow")
        );
    }
}
