//! agentgov's validating admission webhook: the seed's Interceptor Framework and Admission
//! Interceptor as a stateless Kubernetes webhook.
//!
//! - `POST /validate/pods`: a Pod labelled `agentgov.dev/agent: <name>` is admitted only if that
//!   Agent passes the seven checks (and, for a sandbox, the Pod itself stays contained).
//! - `POST /validate/agents`: sandbox containment and expiry before signing, and for governed
//!   agents the `promote` SubjectAccessReview and the promotion policy.
//! - `POST /validate/sandboxes`: an agent-sandbox `Sandbox` (`agents.x-k8s.io`) labelled for an
//!   agent (on itself or its pod template) is judged as a Pod CREATE of its pod template.
//! - `POST /v1/admit` ([`external`]): an orchestrator outside Kubernetes asks whether an agent
//!   may start, running some images; answered with the decision of that agent's Pod CREATE.
//!   Only the clients `--admit-clients` lists may ask ([`admit_clients`], [`peer`]).
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
pub mod admit_clients;
pub mod authz;
pub mod cache;
pub mod config;
pub mod decide;
pub mod decision;
pub mod decision_log;
pub mod error;
pub mod external;
pub mod head_deadline;
pub use agentgov_runtime::keys;
pub mod memo;
pub mod metrics;
pub mod peer;
pub mod policy;
pub mod review;
pub mod server;
pub use agentgov_runtime::telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;

pub use error::Error;
