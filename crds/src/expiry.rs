//! Sandbox expiry, judged by agentgov's clock from the API server's `creationTimestamp`, never by
//! a time the object asserts beyond what the operator's maximum allows.

use jiff::{SignedDuration, Timestamp};

use crate::agent::SandboxSpec;

/// The operator's and webhook's expiry settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpiryPolicy {
    /// TTL of a sandbox that names none.
    pub default_ttl: SignedDuration,
    /// No sandbox lives longer than this after creation, whatever it asks.
    pub max_ttl: SignedDuration,
}

/// The longest any sandbox may live (`--max-sandbox-ttl` at most): the ceiling the admission
/// guards in the API server compute a sandbox's expiry with (`agentgov-agent-invariants`), so
/// that they are never looser than the operator and the webhook.
pub const LONGEST_SANDBOX_TTL: SignedDuration = SignedDuration::from_hours(720);

impl Default for ExpiryPolicy {
    fn default() -> Self {
        ExpiryPolicy {
            default_ttl: SignedDuration::from_hours(72),
            max_ttl: LONGEST_SANDBOX_TTL,
        }
    }
}

/// A flag's duration: "72h", "1h30m", "500ms", ISO 8601 ("PT10S"), or a plain number of
/// seconds. Negative durations are refused. (Shared by the operator's and webhook's flags.)
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(secs));
    }
    let signed: SignedDuration = text
        .parse()
        .map_err(|e| format!("{text:?} is not a duration (like 10s, 72h or 500ms): {e}"))?;
    std::time::Duration::try_from(signed).map_err(|_| format!("{text:?} must not be negative"))
}

/// When a sandbox created at `created` expires.
pub fn sandbox_expires_at(
    created: Timestamp,
    sandbox: Option<&SandboxSpec>,
    policy: &ExpiryPolicy,
) -> Timestamp {
    let ceiling = created.saturating_add(policy.max_ttl).unwrap_or(created);
    let asked = match sandbox {
        Some(SandboxSpec {
            expires_at: Some(at),
            ..
        }) => at.0,
        Some(SandboxSpec {
            ttl_seconds: Some(ttl),
            ..
        }) => created
            .saturating_add(SignedDuration::from_secs(*ttl))
            .unwrap_or(created),
        _ => created
            .saturating_add(policy.default_ttl)
            .unwrap_or(created),
    };
    asked.min(ceiling)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn flag_durations() {
        use std::time::Duration;
        assert_eq!(
            parse_duration("72h").unwrap(),
            Duration::from_secs(72 * 3600)
        );
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn ttl_default_and_ceiling() {
        let policy = ExpiryPolicy {
            default_ttl: SignedDuration::from_secs(100),
            max_ttl: SignedDuration::from_secs(1_000),
        };
        let created = at(10_000);
        assert_eq!(sandbox_expires_at(created, None, &policy), at(10_100));
        let ttl = SandboxSpec {
            ttl_seconds: Some(50),
            expires_at: None,
        };
        assert_eq!(sandbox_expires_at(created, Some(&ttl), &policy), at(10_050));
        let far = SandboxSpec {
            ttl_seconds: None,
            expires_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(
                99_999_999,
            ))),
        };
        assert_eq!(sandbox_expires_at(created, Some(&far), &policy), at(11_000));
        let huge_ttl = SandboxSpec {
            ttl_seconds: Some(i64::MAX / 2),
            expires_at: None,
        };
        assert_eq!(
            sandbox_expires_at(created, Some(&huge_ttl), &policy),
            at(11_000)
        );
    }
}
