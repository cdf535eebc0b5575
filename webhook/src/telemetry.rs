//! Logging: tracing with `--log-format json|plain` and `RUST_LOG` (default `info`).
//!
//! Decision lines carry the fields `code`, `agent`, `namespace`, `requester`, `reason`,
//! `operation`, `kind` (and `uid`, `allowed`, `dry_run`), never a formatted sentence alone.
//!
//! JSON lines are written by [`JsonLine`]: the same keys as tracing-subscriber's JSON format
//! with `flatten_event(true)` and no spans (`timestamp`, `level`, the event's fields with
//! `message`, `target`), but each field is serialized straight into the line. tracing-subscriber
//! first collects the fields into a map of `serde_json::Value`s, one allocation a field, which
//! made the decision line cost more than the seven checks (BENCHMARKS-webhook.md).

use std::fmt;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer as _};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogFormat;

/// Install the global subscriber. Call once, first thing in `main`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    // A second init (tests) is not an error worth failing on.
    let _ = match format {
        LogFormat::Json => builder.event_format(JsonLine).try_init(),
        LogFormat::Plain => builder.try_init(),
    };
}

/// One JSON object a line: `timestamp` (RFC 3339, UTC, microseconds), `level`, the event's
/// fields in the order written (the text as `message`), `target`. Events bridged from the `log`
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
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let line = json_line(event, jiff::Timestamp::now()).map_err(|_| fmt::Error)?;
        // serde_json writes UTF-8 only.
        writer.write_str(std::str::from_utf8(&line).map_err(|_| fmt::Error)?)
    }
}

/// The line of `event` logged at `now`, with its newline.
fn json_line(event: &Event<'_>, now: jiff::Timestamp) -> Result<Vec<u8>, serde_json::Error> {
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
