//! tenant-sim (work in progress).

pub mod auth;

/// Errors of the simulator (work in progress).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Something failed while starting.
    #[error("tenant-sim failed to start: {0}")]
    Start(String),
}
