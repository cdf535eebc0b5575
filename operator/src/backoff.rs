//! Per-object retry backoff that grows (1 s, 2 s, 4 s … up to 5 min) and resets after
//! a quiet period, instead of a fixed retry interval.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const MIN: Duration = Duration::from_secs(1);
const MAX: Duration = Duration::from_secs(300);

fn failures() -> &'static Mutex<HashMap<String, (u32, Instant)>> {
    static FAILURES: OnceLock<Mutex<HashMap<String, (u32, Instant)>>> = OnceLock::new();
    FAILURES.get_or_init(Default::default)
}

/// The delay before the next try for `key`, given one more failure now.
pub fn next(key: &str) -> Duration {
    let Ok(mut map) = failures().lock() else {
        return MAX;
    };
    let now = Instant::now();
    // Forget objects that have not failed for a while, so the map stays small.
    map.retain(|_, (_, at)| now.duration_since(*at) < MAX * 2);
    let entry = map.entry(key.to_string()).or_insert((0, now));
    entry.0 = entry.0.saturating_add(1);
    entry.1 = now;
    delay(entry.0)
}

fn delay(failures: u32) -> Duration {
    MIN.saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps() {
        assert_eq!(delay(1), Duration::from_secs(1));
        assert_eq!(delay(2), Duration::from_secs(2));
        assert_eq!(delay(5), Duration::from_secs(16));
        assert_eq!(delay(40), MAX);
        assert!(next("a") < next("a"));
    }
}
