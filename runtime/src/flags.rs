//! Flags both binaries take, with the same names, environment variables and meaning:
//! `#[command(flatten)]` them into each binary's flags.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agentgov_api::expiry::{ExpiryPolicy, LONGEST_SANDBOX_TTL};
use clap::Args;
use jiff::SignedDuration;

use crate::Error;
use crate::keys::Keys;
use crate::telemetry::LogFormat;

/// Sandbox expiry: how long a sandbox agent lives.
#[derive(Args, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpiryFlags {
    /// TTL of a sandbox agent that names none (for example 72h, 30m, 3600s).
    #[arg(long, env = "AGENTGOV_DEFAULT_SANDBOX_TTL", default_value = "72h", value_parser = positive_duration)]
    pub default_sandbox_ttl: SignedDuration,

    /// No sandbox lives longer than this after creation, whatever it asks.
    #[arg(long, env = "AGENTGOV_MAX_SANDBOX_TTL", default_value = "720h", value_parser = positive_duration)]
    pub max_sandbox_ttl: SignedDuration,
}

impl ExpiryFlags {
    /// A default TTL longer than the maximum is refused, and so is a maximum longer than the
    /// admission guards' ceiling ([`LONGEST_SANDBOX_TTL`]).
    pub fn check(&self) -> Result<(), Error> {
        if self.max_sandbox_ttl > LONGEST_SANDBOX_TTL {
            return Err(Error::Config(format!(
                "--max-sandbox-ttl ({}) is longer than {}, the longest sandbox life the admission guards in the API server allow for",
                self.max_sandbox_ttl, LONGEST_SANDBOX_TTL
            )));
        }
        if self.default_sandbox_ttl > self.max_sandbox_ttl {
            return Err(Error::Config(format!(
                "--default-sandbox-ttl ({}) is longer than --max-sandbox-ttl ({})",
                self.default_sandbox_ttl, self.max_sandbox_ttl
            )));
        }
        Ok(())
    }

    /// The expiry policy the flags name (see [`ExpiryFlags::check`]).
    pub fn policy(&self) -> ExpiryPolicy {
        ExpiryPolicy {
            default_ttl: self.default_sandbox_ttl,
            max_ttl: self.max_sandbox_ttl,
        }
    }
}

/// Signed PolicyBundles: whether a bundle version must be signed, and the key ring that
/// verifies it.
#[derive(Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct BundleSigningFlags {
    /// Put in force only PolicyBundle versions whose `spec.signature` verifies with the
    /// policy-signing key ring of --bundle-keys (`proof sign-bundle` signs). The webhook refuses
    /// the others at admission, naming the key. The operator, the check that holds when the
    /// webhook is bypassed, reports them on the bundle (Ready False, SignatureMissing or
    /// SignatureInvalid, and an Event) and keeps the last good version in force. Versions already
    /// in force when this is turned on stay until replaced.
    #[arg(long, env = "AGENTGOV_REQUIRE_SIGNED_BUNDLES", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", requires = "bundle_keys")]
    pub require_signed_bundles: bool,

    /// The public policy-signing key ring (`keygen public` of a `keygen new --policy` ring; a
    /// ring separate from the proof keys), for --require-signed-bundles. Re-read when it changes,
    /// like --keyring-file.
    #[arg(long, env = "AGENTGOV_BUNDLE_KEYS_FILE")]
    pub bundle_keys: Option<PathBuf>,
}

impl BundleSigningFlags {
    /// The policy-signing key ring, loaded, when bundles must be signed; none when they need
    /// not be (a --bundle-keys given without --require-signed-bundles is not read).
    pub fn keys(&self) -> Result<Option<Arc<Keys>>, Error> {
        match (self.require_signed_bundles, &self.bundle_keys) {
            (true, Some(path)) => Ok(Some(Arc::new(Keys::load(path)?))),
            (true, None) => Err(Error::Config(
                "--require-signed-bundles needs --bundle-keys".into(),
            )),
            (false, _) => Ok(None),
        }
    }
}

/// Logs and shutdown.
#[derive(Args, Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuntimeFlags {
    /// Log format.
    #[arg(long, env = "AGENTGOV_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,

    /// After SIGTERM or SIGINT (readiness is off at once), how long the work in flight
    /// (reconciles, admission reviews) may take to finish before the process exits anyway.
    #[arg(long, env = "AGENTGOV_SHUTDOWN_GRACE", default_value = "10s", value_parser = duration)]
    pub shutdown_grace: Duration,
}

/// A flag's duration: "72h", "1h30m", "500ms", ISO 8601 ("PT10S"), or a plain number of
/// seconds; zero allowed, negative refused.
pub fn duration(text: &str) -> Result<Duration, String> {
    agentgov_api::expiry::parse_duration(text)
}

/// A duration as [`duration`] reads it, which must be more than zero.
pub fn positive_duration(text: &str) -> Result<SignedDuration, String> {
    let d = duration(text)?;
    if d.is_zero() {
        return Err(format!("{text:?}: the duration must be more than zero"));
    }
    SignedDuration::try_from(d).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Flags {
        #[command(flatten)]
        expiry: ExpiryFlags,
        #[command(flatten)]
        runtime: RuntimeFlags,
        #[command(flatten)]
        bundles: BundleSigningFlags,
    }

    #[test]
    fn durations() {
        assert_eq!(duration("72h").unwrap(), Duration::from_secs(72 * 3600));
        assert_eq!(duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(duration("0s").unwrap(), Duration::ZERO);
        assert!(duration("-5s").is_err());
        assert!(duration("soon").is_err());
        assert_eq!(
            positive_duration("72h").unwrap(),
            SignedDuration::from_hours(72)
        );
        assert!(positive_duration("0s").is_err());
        assert!(positive_duration("-5s").is_err());
    }

    #[test]
    fn defaults_and_the_expiry_rule() {
        let flags = Flags::try_parse_from(["x"]).unwrap();
        flags.expiry.check().unwrap();
        assert_eq!(flags.expiry.policy(), ExpiryPolicy::default());
        assert_eq!(flags.runtime.log_format, LogFormat::Json);
        assert_eq!(flags.runtime.shutdown_grace, Duration::from_secs(10));

        let flags = Flags::try_parse_from([
            "x",
            "--default-sandbox-ttl=1h",
            "--max-sandbox-ttl=2h",
            "--log-format=plain",
            "--shutdown-grace=1s",
        ])
        .unwrap();
        flags.expiry.check().unwrap();
        assert_eq!(
            flags.expiry.policy().default_ttl,
            SignedDuration::from_hours(1)
        );
        assert_eq!(flags.runtime.log_format, LogFormat::Plain);
        assert_eq!(flags.runtime.shutdown_grace, Duration::from_secs(1));

        let longer =
            Flags::try_parse_from(["x", "--default-sandbox-ttl=3h", "--max-sandbox-ttl=2h"])
                .unwrap();
        assert_eq!(longer.expiry.check().unwrap_err().category(), "config");
        assert!(Flags::try_parse_from(["x", "--max-sandbox-ttl=0s"]).is_err());
        let beyond_the_guards = Flags::try_parse_from(["x", "--max-sandbox-ttl=721h"]).unwrap();
        assert_eq!(
            beyond_the_guards.expiry.check().unwrap_err().category(),
            "config"
        );
        let at_the_guards = Flags::try_parse_from(["x", "--max-sandbox-ttl=720h"]).unwrap();
        at_the_guards.expiry.check().unwrap();
    }

    #[test]
    fn signed_bundles_need_their_key_ring() {
        let flags = Flags::try_parse_from(["x"]).unwrap();
        assert_eq!(flags.bundles, BundleSigningFlags::default());
        assert!(flags.bundles.keys().unwrap().is_none());
        // clap refuses the flag alone; so does `keys` for flags made another way.
        assert!(Flags::try_parse_from(["x", "--require-signed-bundles"]).is_err());
        let alone = BundleSigningFlags {
            require_signed_bundles: true,
            bundle_keys: None,
        };
        assert_eq!(alone.keys().unwrap_err().category(), "config");
        // Not required: the ring is not read.
        let unread = Flags::try_parse_from(["x", "--bundle-keys=/nonexistent"]).unwrap();
        assert!(unread.bundles.keys().unwrap().is_none());
        let missing = Flags::try_parse_from([
            "x",
            "--require-signed-bundles",
            "--bundle-keys=/nonexistent",
        ])
        .unwrap();
        assert_eq!(missing.bundles.keys().unwrap_err().category(), "read_file");
    }
}
