//! The CRDs as installed: the generated schema, with every `format: date-time` string held to
//! what our own types read.
//!
//! The API server's `date-time` check is wider than the RFC 3339 our types parse (jiff, through
//! k8s-openapi's `Time`): it stores `2026-01-01T00:00:00.0000000001Z` (ten fraction digits) and
//! offsets up to `+99:00`, which no Rust client of the CRD can read. One such value written into
//! any object's status (say, an Agent's `status.expiresAt`) made that object unreadable to the
//! operator's and the webhook's watches: its later changes and its deletion went unseen, and a
//! relist failed on it for every object of the kind. A `pattern` beside the format has the API
//! server refuse what we cannot read.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::Value;

/// RFC 3339 as the operator and the webhook read it: `T` and `Z` (either case, as the API server
/// allows), at most nine fraction digits, an offset of at most 25:59.
pub const DATE_TIME_PATTERN: &str = "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-5]):[0-5][0-9])$";

/// `K`'s CRD as it is installed (crdgen writes it; the e2e suite applies it).
pub fn installed<K: CustomResourceExt>() -> CustomResourceDefinition {
    let crd = K::crd();
    let Ok(mut value) = serde_json::to_value(&crd) else {
        return crd;
    };
    constrain_date_times(&mut value);
    serde_json::from_value(value).unwrap_or(crd)
}

/// Every CRD of the API group as installed, in the order crdgen writes them.
pub fn all() -> Vec<CustomResourceDefinition> {
    use crate::{
        Agent, AgentException, AgentPromotion, AgentTemplate, ClusterAgentTemplate,
        ClusterPolicyBundle, PolicyBundle,
    };
    vec![
        installed::<Agent>(),
        installed::<PolicyBundle>(),
        installed::<ClusterPolicyBundle>(),
        installed::<AgentPromotion>(),
        installed::<AgentTemplate>(),
        installed::<ClusterAgentTemplate>(),
        installed::<AgentException>(),
    ]
}

/// Add [`DATE_TIME_PATTERN`] to every string schema of format `date-time` below `schema`.
fn constrain_date_times(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let date_time = map.get("type").and_then(Value::as_str) == Some("string")
                && map.get("format").and_then(Value::as_str) == Some("date-time");
            if date_time && !map.contains_key("pattern") {
                map.insert("pattern".into(), Value::from(DATE_TIME_PATTERN));
            }
            map.values_mut().for_each(constrain_date_times);
        }
        Value::Array(items) => items.iter_mut().for_each(constrain_date_times),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn matches(text: &str) -> bool {
        jsonschema::draft4::options()
            .build(&serde_json::json!({"type": "string", "pattern": DATE_TIME_PATTERN}))
            .unwrap()
            .is_valid(&Value::from(text))
    }

    fn reads(text: &str) -> bool {
        serde_json::from_value::<Time>(Value::from(text)).is_ok()
    }

    #[test]
    fn what_the_pattern_admits_our_types_read() {
        for text in [
            "2026-01-01T00:00:00Z",
            "2026-01-01t00:00:00z",
            "2026-01-01T00:00:00.123456789Z",
            "2026-01-01T00:00:00.1+01:00",
            "2026-01-01T00:00:00-25:59",
            "0000-01-01T00:00:00Z",
        ] {
            assert!(matches(text), "{text} should match");
            assert!(reads(text), "{text} should read");
        }
    }

    #[test]
    fn what_the_api_server_stores_and_our_types_cannot_read_is_refused() {
        // Each accepted by kube-apiserver 1.37 for a `format: date-time` field (measured).
        for text in [
            "2026-01-01T00:00:00.0000000001Z",
            "2026-01-01T00:00:00+99:00",
        ] {
            assert!(!reads(text), "{text} unreadable");
            assert!(!matches(text), "{text} refused");
        }
    }

    #[test]
    fn every_date_time_of_every_crd_has_the_pattern() {
        let crds = all();
        assert_eq!(crds.len(), 7);
        let mut seen = 0;
        for crd in crds {
            let text = serde_json::to_string(&crd).unwrap();
            let formats = text.matches(r#""format":"date-time""#).count();
            let patterns = text
                .matches(&serde_json::to_string(DATE_TIME_PATTERN).unwrap())
                .count();
            assert_eq!(
                formats,
                patterns,
                "{}",
                crd.metadata.name.unwrap_or_default()
            );
            seen += formats;
        }
        assert!(seen >= 17, "the date-times of the status types: {seen}");
    }
}
