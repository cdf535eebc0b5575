//! How long to wait before trying again: exponential, capped, and jittered so that many
//! orchestrators refused by the same outage do not come back in step.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// The delays between attempts: `initial`, doubled per attempt, at most `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after the `failures`-th failed attempt (1 for the first), with `jitter` in
    /// [0, 1): between half the exponential step and the whole step ("equal jitter": it still
    /// grows, unlike full jitter, which may wait nothing).
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        let step = self.initial.saturating_mul(1u32 << doublings).min(self.max);
        let half = step / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// A number in [0, 1) that differs between calls and between processes. Jitter needs no
/// cryptographic randomness; std's hasher keys are random per process and advance per call.
pub fn jitter() -> f64 {
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    // The top 53 bits, as the fraction of an f64.
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Backoff = Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(2),
    };

    #[test]
    fn doubles_up_to_the_cap_within_its_jitter() {
        let bounds = |failures| {
            (
                BACKOFF.delay(failures, 0.0),
                BACKOFF.delay(failures, 0.999_999),
            )
        };
        assert_eq!(bounds(1).0, Duration::from_millis(100));
        assert!(bounds(1).1 <= Duration::from_millis(200) && bounds(1).1 > bounds(1).0);
        assert_eq!(bounds(2).0, Duration::from_millis(200));
        assert_eq!(bounds(3).0, Duration::from_millis(400));
        assert_eq!(bounds(4).0, Duration::from_millis(800));
        // Capped: 200 ms × 2^4 = 3.2 s > 2 s.
        assert_eq!(
            bounds(5),
            (Duration::from_secs(1), BACKOFF.delay(5, 0.999_999))
        );
        assert!(bounds(5).1 <= Duration::from_secs(2));
        // No overflow, however many failures.
        assert!(BACKOFF.delay(u32::MAX, 0.5) <= Duration::from_secs(2));
        assert_eq!(BACKOFF.delay(0, 0.0), Duration::from_millis(100));
    }

    #[test]
    fn jitter_is_a_fraction_that_varies() {
        let samples: Vec<f64> = (0..64).map(|_| jitter()).collect();
        assert!(
            samples.iter().all(|j| (0.0..1.0).contains(j)),
            "{samples:?}"
        );
        let first = samples[0];
        assert!(samples.iter().any(|j| *j != first), "{samples:?}");
    }
}
