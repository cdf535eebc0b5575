//! agentgov's validating admission webhook: the seed's Interceptor Framework and Admission
//! Interceptor as a stateless Kubernetes webhook.
//!
//! - `POST /validate/pods`: a Pod labelled `agentgov.dev/agent: <name>` is admitted only if that
//!   Agent passes the seven checks (and, for a sandbox, the Pod itself stays contained).
//! - `POST /validate/agents`: sandbox containment and expiry before signing, and for governed
//!   agents the `promote` SubjectAccessReview and the promotion policy.
//!
//! A review goes one way: [`server`] (HTTP: routes, body limits) hands the body to [`admit`],
//! which parses it ([`review`]: the AdmissionReview wire format, in and out) and decides
//! ([`decide`]: pure functions over a [`decide::View`] of in-memory caches, [`cache`], with the
//! costly deterministic steps of the checks remembered in [`memo`]) into a [`decision::Decision`];
//! [`decision_log`] logs and counts it, and [`review::Answer`] encodes the answer. `review` and
//! `decide` do not import each other's way back: `decide` reads `review`'s parsed requests.
//! Other I/O lives in [`tls`], [`authz`] and the reloaders.
#![forbid(unsafe_code)]

pub mod admit;
pub mod authz;
pub mod cache;
pub mod config;
pub mod decide;
pub mod decision;
pub mod decision_log;
pub mod error;
pub use agentgov_runtime::keys;
pub mod memo;
pub mod metrics;
pub mod policy;
pub mod review;
pub mod server;
pub use agentgov_runtime::telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;

pub use error::Error;
