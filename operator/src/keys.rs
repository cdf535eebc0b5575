//! The signing key ring: read from a file (the mounted Secret) and reloaded when it changes,
//! without a restart, by the reloader both binaries share. A new active key signs the next
//! proof; a new ring (a rotation, a revocation) makes every agent be judged again.

pub use agentgov_runtime::keys::Keys as KeyRingSource;
