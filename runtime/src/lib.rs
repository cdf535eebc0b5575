//! What the operator and the webhook both run on, written once: files reloaded when they change
//! ([`reload`]) and the key ring read that way ([`keys`]), the log format ([`telemetry`]) and
//! the lines' way out ([`log_sink`]), the
//! plain-HTTP `/healthz`, `/readyz` and `/metrics` server ([`health`]), shutdown on SIGTERM and
//! SIGINT ([`shutdown`]), the flags both binaries take ([`flags`]), and their client of the API
//! server, one HTTP/2 connection for everything ([`api_client`]).
//!
//! The pure rules both binaries apply (the seven checks, the policy call, which bundle version
//! is in force) live in `agentgov-api`; this crate holds the I/O around them.
#![forbid(unsafe_code)]

pub mod api_client;
mod error;
pub mod flags;
pub mod health;
pub mod keys;
pub mod log_sink;
pub mod reload;
pub mod shutdown;
pub mod telemetry;

pub use error::Error;

/// Listen on `addr`: do it before anything else starts, so that a taken port fails the start at
/// once (with the category `bind`).
pub async fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, Error> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}
