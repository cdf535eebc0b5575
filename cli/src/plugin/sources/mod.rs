//! The documents `create` builds an agent from, each parsed by a pure function into a
//! [`Draft`]: a partial spec (the API crate's [`AgentDefaults`], the shape a template's
//! defaults have) and the `spec.source` to record. The command lays the user's flags over the
//! draft and checks the result as a whole spec (`create::finish`).
//!
//! - `template`: an AgentTemplate or ClusterAgentTemplate, with its allowed-override list;
//! - `workflow`: an Argo Workflows Workflow/WorkflowTemplate or a GitHub Actions workflow;
//! - `conversation`: a chat transcript (OpenAI's chat-completions request shape, or Anthropic's);
//! - `event`: a CloudEvent in structured JSON mode;
//! - `seed_row`: a row of the seed's `agent_specs` table, as JSON;
//! - `interactive`: the answers to `--scratch`'s prompts at a terminal (a state machine).

pub mod conversation;
pub mod event;
pub mod interactive;
pub mod seed_row;
pub mod template;
pub mod workflow;

use agentgov_api::agent::{AgentSource, SourceKind};
use agentgov_api::template::AgentDefaults;

/// What a source gives: a partial spec and where it came from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Draft {
    pub spec: AgentDefaults,
    pub source: Option<AgentSource>,
}

/// `spec.source` of kind `kind` naming `reference` (none for what has no name, such as stdin).
pub fn source(kind: SourceKind, reference: Option<String>) -> Option<AgentSource> {
    Some(AgentSource { kind, reference })
}

/// A name an agent's spec can hold, from free text: lower-case ASCII letters and digits, any
/// run of other characters one `-` (`Run unit tests` → `run-unit-tests`).
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// `names` without empty ones and without repeats, in their first order.
pub fn unique(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        if !name.is_empty() && !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// The last part of a path, for a reference (`-` for stdin names nothing).
pub fn file_name(path: &str) -> Option<String> {
    (path != "-").then(|| {
        std::path::Path::new(path)
            .file_name()
            .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_and_unique_names() {
        assert_eq!(slug("Run unit tests"), "run-unit-tests");
        assert_eq!(slug("actions/checkout@v4"), "actions-checkout-v4");
        assert_eq!(slug("  --  "), "");
        assert_eq!(
            unique(["a".into(), "".into(), "b".into(), "a".into()]),
            ["a", "b"]
        );
        assert_eq!(file_name("dir/flow.yaml").as_deref(), Some("flow.yaml"));
        assert_eq!(file_name("-"), None);
    }
}
