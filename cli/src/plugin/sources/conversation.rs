//! `create --from-conversation FILE`: a chat transcript export as a partial spec. The shape is
//! OpenAI's chat-completions request (`model`, `temperature`, `messages` with `system` or
//! `developer` ones, `tools` of type `function`, or the older `functions`); Anthropic's
//! messages request (a top-level `system`, `tools` with a `name`) reads the same way.
//!
//! The system prompt (every system or developer message, in order) becomes the description;
//! each tool's name becomes an action and a capability; the model and temperature become the
//! reasoning (a transcript without a temperature ran at the API's default, 1). Reference: the
//! transcript's `id`, else the file's name (none for stdin).

use agentgov_api::agent::SourceKind;
use agentgov_api::template::{AgentDefaults, AnatomyDefaults, ReasoningDefaults};
use serde::Deserialize;

use super::{Draft, file_name, source, unique};

/// The temperature a chat API samples at when the request names none.
const DEFAULT_TEMPERATURE: f64 = 1.0;

#[derive(Deserialize)]
struct Transcript {
    id: Option<String>,
    model: Option<String>,
    temperature: Option<f64>,
    /// Anthropic's system prompt.
    system: Option<Content>,
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    tools: Vec<Tool>,
    /// OpenAI's function calling before `tools`.
    #[serde(default)]
    functions: Vec<Named>,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    content: Option<Content>,
}

/// A message's content: text, or parts of which the text ones count.
#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Tool {
    /// `{"type": "function", "function": {"name": ...}}`
    Function { function: Named },
    /// `{"name": ..., "input_schema": ...}`
    Named(Named),
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

impl Content {
    fn text(&self) -> String {
        match self {
            Content::Text(text) => text.trim().to_string(),
            Content::Parts(parts) => parts
                .iter()
                .filter_map(|p| p.text.as_deref())
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// A transcript (JSON) as a draft, or why it is none.
pub fn parse(bytes: &[u8], file: &str) -> Result<Draft, String> {
    let t: Transcript = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if t.model.is_none() && t.messages.is_empty() && t.tools.is_empty() {
        return Err("it has no model, messages or tools: not a chat transcript".into());
    }
    let prompts: Vec<String> = t
        .system
        .iter()
        .map(Content::text)
        .chain(
            t.messages
                .iter()
                .filter(|m| m.role == "system" || m.role == "developer")
                .filter_map(|m| m.content.as_ref().map(Content::text)),
        )
        .filter(|text| !text.is_empty())
        .collect();
    let tools = unique(
        t.tools
            .into_iter()
            .map(|tool| match tool {
                Tool::Function { function } => function.name,
                Tool::Named(named) => named.name,
            })
            .chain(t.functions.into_iter().map(|f| f.name)),
    );
    let reasoning = t.model.map(|model| ReasoningDefaults {
        model: Some(model),
        temperature: Some(t.temperature.unwrap_or(DEFAULT_TEMPERATURE)),
    });
    let reference = t.id.filter(|id| !id.is_empty()).or_else(|| file_name(file));
    Ok(Draft {
        spec: AgentDefaults {
            description: (!prompts.is_empty()).then(|| prompts.join("\n\n")),
            anatomy: Some(AnatomyDefaults {
                reasoning,
                actions: tools.clone(),
                capabilities: tools,
                ..AnatomyDefaults::default()
            }),
            ..AgentDefaults::default()
        },
        source: source(SourceKind::Conversation, reference),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_openai_request_gives_description_tools_and_reasoning() {
        let path = format!(
            "{}/../e2e/fixtures/cli/conversation-openai.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let draft = parse(&std::fs::read(path).unwrap(), "conversation-openai.json").unwrap();
        let source = draft.source.unwrap();
        assert_eq!(source.kind, SourceKind::Conversation);
        assert_eq!(
            source.reference.as_deref(),
            Some("chatcmpl-invoice-triage-01")
        );
        assert_eq!(
            draft.spec.description.as_deref(),
            Some(
                "You triage supplier invoices: compare each with its purchase order and flag mismatches.\n\n\
                 Never pay an invoice yourself."
            )
        );
        let anatomy = draft.spec.anatomy.unwrap();
        assert_eq!(anatomy.actions, ["lookup_purchase_order", "flag_mismatch"]);
        assert_eq!(anatomy.capabilities, anatomy.actions);
        let reasoning = anatomy.reasoning.unwrap();
        assert_eq!(reasoning.model.as_deref(), Some("gpt-4o"));
        assert_eq!(reasoning.temperature, Some(0.2));
    }

    #[test]
    fn an_anthropic_request_and_defaults() {
        let text =
            br#"{"model": "claude-sonnet", "system": [{"type": "text", "text": "Be brief."}],
            "tools": [{"name": "search", "input_schema": {}}], "messages": []}"#;
        let draft = parse(text, "-").unwrap();
        assert_eq!(draft.spec.description.as_deref(), Some("Be brief."));
        assert_eq!(draft.source.unwrap().reference, None);
        let anatomy = draft.spec.anatomy.unwrap();
        assert_eq!(anatomy.actions, ["search"]);
        assert_eq!(anatomy.reasoning.unwrap().temperature, Some(1.0));
        let legacy =
            br#"{"messages": [{"role": "user", "content": "hi"}], "functions": [{"name": "f"}]}"#;
        let draft = parse(legacy, "t.json").unwrap();
        assert_eq!(draft.spec.description, None);
        assert_eq!(draft.spec.anatomy.clone().unwrap().reasoning, None);
        assert_eq!(draft.spec.anatomy.unwrap().capabilities, ["f"]);
        assert!(
            parse(b"{}", "x")
                .unwrap_err()
                .contains("not a chat transcript")
        );
        assert!(parse(b"not json", "x").is_err());
    }
}
