//! When to try again. Only a failure that may pass is retried (the caller asks
//! [`AdmitError::retryable`](super::client::AdmitError::retryable)); then the wait grows
//! ([`Backoff`]) and two bounds end the retries, whichever comes first: the number of retries,
//! and the deadline of the whole call. The deadline is what an orchestrator plans with ("within
//! 10 s I know whether the agent may start"): each attempt's timeout is cut to what is left of
//! it, and no attempt is started that could not finish before it.

use std::time::Duration;

use super::backoff::Backoff;

/// The least time an attempt is given: connecting, a TLS handshake and an answer take a few
/// milliseconds on a local network and tens across regions. With less left before the deadline
/// an attempt could only time out, so it is not started.
pub const MIN_ATTEMPT: Duration = Duration::from_millis(100);

/// The bounds of one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Attempts after the first.
    pub retries: u32,
    pub backoff: Backoff,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// How long the whole call may take, from its start, waits and attempts included.
    pub deadline: Duration,
}

/// What follows a failed attempt that may pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Wait this long, then try again.
    Wait(Duration),
    /// The retries are used up.
    OutOfRetries,
    /// The next attempt could not finish before the deadline.
    Deadline,
}

impl Retry {
    /// At most this many attempts.
    pub fn attempts(&self) -> u32 {
        self.retries.saturating_add(1)
    }

    /// The timeout of an attempt started `elapsed` after the call began: `timeout`, or what is
    /// left of the deadline when that is less.
    pub fn attempt_timeout(&self, elapsed: Duration) -> Duration {
        self.timeout.min(self.deadline.saturating_sub(elapsed))
    }

    /// After the `failed`-th attempt failed, `elapsed` after the call began, with `jitter` in
    /// [0, 1) for the wait: try again after a wait, or give up.
    pub fn after(&self, failed: u32, elapsed: Duration, jitter: f64) -> Next {
        if failed >= self.attempts() {
            return Next::OutOfRetries;
        }
        let wait = self.backoff.delay(failed, jitter);
        let needed = self.timeout.min(MIN_ATTEMPT);
        if elapsed.saturating_add(wait).saturating_add(needed) > self.deadline {
            return Next::Deadline;
        }
        Next::Wait(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    const RETRY: Retry = Retry {
        retries: 5,
        backoff: Backoff {
            initial: ms(200),
            max: ms(5_000),
        },
        timeout: ms(2_000),
        deadline: ms(3_000),
    };

    #[test]
    fn retries_end_at_their_number() {
        assert_eq!(RETRY.attempts(), 6);
        let many = Retry {
            deadline: Duration::from_secs(3_600),
            ..RETRY
        };
        for failed in 1..6 {
            assert!(matches!(many.after(failed, ms(0), 0.0), Next::Wait(_)));
        }
        assert_eq!(many.after(6, ms(0), 0.0), Next::OutOfRetries);
        let none = Retry { retries: 0, ..many };
        assert_eq!(none.after(1, ms(0), 0.0), Next::OutOfRetries);
        let endless = Retry {
            retries: u32::MAX,
            ..many
        };
        assert_eq!(endless.attempts(), u32::MAX);
    }

    #[test]
    fn no_attempt_starts_that_could_not_finish_before_the_deadline() {
        // The third wait is 400 ms (no jitter): from 2.4 s it ends at 2.8 s, leaving 200 ms.
        assert_eq!(RETRY.after(3, ms(2_400), 0.0), Next::Wait(ms(400)));
        // From 2.6 s it would end at 3.0 s: no time left for the attempt.
        assert_eq!(RETRY.after(3, ms(2_600), 0.0), Next::Deadline);
        // Exactly the least an attempt needs is enough.
        assert_eq!(RETRY.after(3, ms(2_500), 0.0), Next::Wait(ms(400)));
        assert_eq!(RETRY.after(3, ms(2_501), 0.0), Next::Deadline);
        // Past the deadline, nothing.
        assert_eq!(RETRY.after(1, ms(4_000), 0.0), Next::Deadline);
        // A timeout below the least an attempt needs is all an attempt needs.
        let quick = Retry {
            timeout: ms(20),
            ..RETRY
        };
        assert_eq!(quick.after(3, ms(2_580), 0.0), Next::Wait(ms(400)));
        assert_eq!(quick.after(3, ms(2_581), 0.0), Next::Deadline);
    }

    #[test]
    fn an_attempt_times_out_at_the_deadline_at_the_latest() {
        assert_eq!(RETRY.attempt_timeout(ms(0)), ms(2_000));
        assert_eq!(RETRY.attempt_timeout(ms(1_000)), ms(2_000));
        assert_eq!(RETRY.attempt_timeout(ms(2_500)), ms(500));
        assert_eq!(RETRY.attempt_timeout(ms(3_500)), ms(0));
    }
}
