//! `create --from-event FILE|-`: a CloudEvent (v1.0, structured JSON mode) whose `data` is a
//! partial agent spec (the fields of an Agent's `spec`, camelCase, as a template's `defaults`).
//! Its `type` and `source` become the reference (`<type>@<source>`).

use agentgov_api::agent::SourceKind;
use agentgov_api::template::AgentDefaults;
use serde::Deserialize;

use super::{Draft, source};

/// The fields `data` may carry.
const SPEC_FIELDS: [&str; 7] = [
    "description",
    "version",
    "roleClass",
    "mode",
    "anatomy",
    "sandbox",
    "runtime",
];

#[derive(Deserialize)]
struct CloudEvent {
    specversion: String,
    #[serde(rename = "type")]
    kind: String,
    source: String,
    id: String,
    datacontenttype: Option<String>,
    data: Option<serde_json::Value>,
    data_base64: Option<String>,
}

/// A CloudEvent (JSON) as a draft, or the sentence saying what is wrong with it.
pub fn parse(bytes: &[u8]) -> Result<Draft, String> {
    let event: CloudEvent = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if !event.specversion.starts_with("1.") {
        return Err(format!(
            "its specversion is {}; CloudEvents 1.0 is read",
            event.specversion
        ));
    }
    for (attribute, value) in [
        ("type", &event.kind),
        ("source", &event.source),
        ("id", &event.id),
    ] {
        if value.trim().is_empty() {
            return Err(format!("its {attribute} is empty"));
        }
    }
    if event.data_base64.is_some() {
        return Err("its data is binary (data_base64); give the spec fields as JSON data".into());
    }
    if let Some(content) = event.datacontenttype.as_deref()
        && !content.contains("json")
    {
        return Err(format!(
            "its datacontenttype is {content}; the data must be JSON"
        ));
    }
    let Some(serde_json::Value::Object(data)) = event.data else {
        return Err("its data is not a JSON object of spec fields".into());
    };
    if let Some(unknown) = data.keys().find(|k| !SPEC_FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "its data has {unknown:?}, which is no spec field ({})",
            SPEC_FIELDS.join(", ")
        ));
    }
    let spec: AgentDefaults = serde_json::from_value(serde_json::Value::Object(data))
        .map_err(|e| format!("its data is not a partial spec: {e}"))?;
    Ok(Draft {
        spec,
        source: source(
            SourceKind::Event,
            Some(format!("{}@{}", event.kind, event.source)),
        ),
    })
}

#[cfg(test)]
mod tests {
    use agentgov_api::agent::{AgentMode, RoleClass};

    use super::*;

    #[test]
    fn type_and_source_name_it_and_data_carries_the_spec() {
        let path = format!(
            "{}/../e2e/fixtures/cli/cloudevent.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let draft = parse(&std::fs::read(path).unwrap()).unwrap();
        let source = draft.source.unwrap();
        assert_eq!(source.kind, SourceKind::Event);
        assert_eq!(
            source.reference.as_deref(),
            Some("dev.agentgov.agent.requested@/intake/forms")
        );
        assert_eq!(draft.spec.role_class, Some(RoleClass::Analysis));
        assert_eq!(draft.spec.mode, Some(AgentMode::Sandbox));
        let anatomy = draft.spec.anatomy.unwrap();
        assert_eq!(anatomy.inputs, ["sales-ledger"]);
        assert_eq!(anatomy.reasoning.unwrap().temperature, Some(0.5));
    }

    #[test]
    fn what_is_wrong_with_an_event_is_named() {
        let event = |extra: &str| {
            format!(r#"{{"specversion": "1.0", "type": "t", "source": "s", "id": "1"{extra}}}"#)
        };
        let cases = [
            (
                event(r#", "data": {"roleClass": "analysis", "colour": 1}"#),
                "\"colour\"",
            ),
            (event(r#", "data_base64": "AA==""#), "binary"),
            (
                event(r#", "datacontenttype": "text/plain", "data": {}"#),
                "text/plain",
            ),
            (event(""), "not a JSON object"),
            (
                event(r#", "data": {"roleClass": "wizard"}"#),
                "not a partial spec",
            ),
            (
                r#"{"specversion": "0.3", "type": "t", "source": "s", "id": "1"}"#.into(),
                "specversion is 0.3",
            ),
            (
                r#"{"specversion": "1.0", "type": " ", "source": "s", "id": "1"}"#.into(),
                "type is empty",
            ),
        ];
        for (text, expected) in cases {
            let message = parse(text.as_bytes()).unwrap_err();
            assert!(message.contains(expected), "{expected}: {message}");
        }
        assert!(
            parse(event(r#", "datacontenttype": "application/json", "data": {}"#).as_bytes())
                .is_ok()
        );
    }
}
