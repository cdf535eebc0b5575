//! Logging: tracing with `--log-format json|plain` and `RUST_LOG` (default `info`).
//!
//! Decision lines carry the fields `code`, `agent`, `namespace`, `requester`, `reason`,
//! `operation`, `kind` (and `uid`, `allowed`, `dry_run`), never a formatted sentence alone.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Install the global subscriber. Call once, first thing in `main`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    // A second init (tests) is not an error worth failing on.
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Plain => builder.try_init(),
    };
}
