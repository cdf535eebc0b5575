//! Logging: tracing with `--log-format json|plain` and `RUST_LOG` (each binary names its
//! default filter).
//!
//! Decision lines carry their facts as fields (`code`, `agent`, `namespace`, `requester`,
//! `reason`, ...), never a formatted sentence alone.
//!
//! JSON lines are written by [`JsonLine`]: the keys of tracing-subscriber's JSON format with
//! `flatten_event(true)` and the span list (`timestamp`, `level`, the event's fields with
//! `message`, `target`, and `spans` when the event happens inside spans, such as a reconcile's),
//! but each field is serialized straight into the line. tracing-subscriber first collects the
//! fields into a map of `serde_json::Value`s, one allocation a field, which made the webhook's
//! decision line cost more than the seven checks (BENCHMARKS-webhook.md).

use std::fmt;

use clap::ValueEnum;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer as _};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::log_sink::Batched;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log collectors).
    Json,
    /// Human-readable lines.
    Plain,
}

/// Install the global subscriber: `format`, filtered by `RUST_LOG`, else by `default_filter`
/// (for example `info`), lines to stdout through a [`Batched`] sink. Call once, first thing in
/// `main`; a second call changes nothing. The sink is returned so that `main` can write what
/// is waiting (`flush`) before the process exits.
pub fn init(format: LogFormat, default_filter: &str) -> Batched {
    let sink = Batched::stdout().unwrap_or_else(|_| Batched::direct(Box::new(std::io::stdout())));
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let writer = sink.clone();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_writer(move || writer.clone());
    // A second init (tests) is not an error worth failing on.
    let _ = match format {
        // Span fields are recorded as JSON, so that `spans` holds them as objects.
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(JsonLine)
            .try_init(),
        LogFormat::Plain => builder.try_init(),
    };
    sink
}

/// One JSON object a line: `timestamp` (RFC 3339, UTC, microseconds), `level`, the event's
/// fields in the order written (the text as `message`), `target`, and inside spans `spans`: one
/// object a span from the outermost, its fields and `name`. Events bridged from the `log`
/// crate take their target from the record, and the bridge's `log.*` fields are left out.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let spans: Vec<SpanFields> = match ctx.event_scope() {
            None => Vec::new(),
            Some(scope) => scope
                .from_root()
                .map(|span| SpanFields {
                    name: span.name(),
                    fields: span
                        .extensions()
                        .get::<FormattedFields<N>>()
                        .map(|f| f.fields.clone())
                        .unwrap_or_default(),
                })
                .collect(),
        };
        let line = json_line(event, &spans, jiff::Timestamp::now()).map_err(|_| fmt::Error)?;
        // serde_json writes UTF-8 only.
        writer.write_str(std::str::from_utf8(&line).map_err(|_| fmt::Error)?)
    }
}

/// A span of the event's scope: its name and its fields as the field formatter wrote them.
struct SpanFields {
    name: &'static str,
    fields: String,
}

impl Serialize for SpanFields {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        // JSON from `JsonFields`; any other field formatter's text is kept as it is.
        match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&self.fields) {
            Ok(fields) => {
                for (key, value) in &fields {
                    map.serialize_entry(key, value)?;
                }
            }
            Err(_) if self.fields.is_empty() => {}
            Err(_) => map.serialize_entry("fields", &self.fields)?,
        }
        map.serialize_entry("name", self.name)?;
        map.end()
    }
}

/// The line of `event` inside `spans` logged at `now`, with its newline.
fn json_line(
    event: &Event<'_>,
    spans: &[SpanFields],
    now: jiff::Timestamp,
) -> Result<Vec<u8>, serde_json::Error> {
    let normalized = event.normalized_metadata();
    let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
    let mut line = Vec::with_capacity(512);
    let mut serializer = serde_json::Serializer::new(&mut line);
    let mut map = serializer.serialize_map(None)?;
    map.serialize_entry("timestamp", &Shown(format_args!("{now:.6}")))?;
    map.serialize_entry("level", metadata.level().as_str())?;
    let mut fields = Fields {
        map: &mut map,
        result: Ok(()),
    };
    event.record(&mut fields);
    fields.result?;
    map.serialize_entry("target", metadata.target())?;
    if !spans.is_empty() {
        map.serialize_entry("spans", spans)?;
    }
    map.end()?;
    line.push(b'\n');
    Ok(line)
}

/// A value serialized as the JSON string of its `Display`, escaped as it is written.
struct Shown<T>(T);

impl<T: fmt::Display> Serialize for Shown<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

type LineMap<'a> =
    serde_json::ser::Compound<'a, &'a mut Vec<u8>, serde_json::ser::CompactFormatter>;

/// Writes each field of an event into the line; keeps the first error.
struct Fields<'m, 'a> {
    map: &'m mut LineMap<'a>,
    result: Result<(), serde_json::Error>,
}

impl Fields<'_, '_> {
    fn entry(&mut self, field: &Field, value: &(impl Serialize + ?Sized)) {
        if self.result.is_ok() && !field.name().starts_with("log.") {
            self.result = self.map.serialize_entry(field.name(), value);
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.entry(field, &value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, &value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, &value);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, &value);
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.entry(field, &Shown(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, &Shown(format_args!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use serde_json::{Value, json};

    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The lines `log` writes under the subscriber [`init`] installs for JSON (on this thread).
    fn lines(log: impl FnOnce()) -> Vec<Value> {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonFields::new())
            .event_format(JsonLine)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[test]
    fn outside_spans_a_line_is_the_event_alone() {
        let lines = lines(|| tracing::warn!(code = "X", count = 2u64, "something"));
        let [line] = lines.as_slice() else {
            panic!("{lines:?}")
        };
        let mut keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["code", "count", "level", "message", "target", "timestamp"]
        );
        assert_eq!(line["level"], json!("WARN"));
        assert_eq!(line["count"], json!(2));
        assert_eq!(line["message"], json!("something"));
    }

    /// Inside a reconcile's span, the line names the object the reconcile is about.
    #[test]
    fn inside_spans_a_line_lists_them_from_the_outermost() {
        let lines = lines(|| {
            let outer = tracing::info_span!("reconciling object", object = "ns/a");
            let _outer = outer.enter();
            let inner = tracing::info_span!("reconcile", agent = "a", namespace = "ns");
            let _inner = inner.enter();
            tracing::info!(code = "PROMOTION_SUCCESS", "promoted");
        });
        let [line] = lines.as_slice() else {
            panic!("{lines:?}")
        };
        assert_eq!(line["code"], json!("PROMOTION_SUCCESS"));
        assert_eq!(
            line["spans"],
            json!([
                {"object": "ns/a", "name": "reconciling object"},
                {"agent": "a", "namespace": "ns", "name": "reconcile"},
            ])
        );
    }
}
