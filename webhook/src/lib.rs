//! agentgov's validating admission webhook: the seed's Interceptor Framework and Admission
//! Interceptor as a stateless Kubernetes webhook.
//!
//! - `POST /validate/pods`: a Pod labelled `agentgov.dev/agent: <name>` is admitted only if that
//!   Agent passes the seven checks (and, for a sandbox, the Pod itself stays contained).
//! - `POST /validate/agents`: sandbox containment and expiry before signing, and for governed
//!   agents the `promote` SubjectAccessReview and the promotion policy.
//!
//! Decisions are pure functions ([`decide`]) over a [`decide::View`] of in-memory caches
//! ([`cache`]), with the costly deterministic steps of the checks remembered in [`memo`]; I/O
//! lives in [`server`], [`tls`], [`authz`] and the reloaders.
#![forbid(unsafe_code)]

pub mod authz;
pub mod cache;
pub mod config;
pub mod decide;
pub mod error;
pub mod keys;
pub mod memo;
pub mod metrics;
pub mod policy;
pub mod reload;
pub mod review;
pub mod server;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;

pub use error::Error;
