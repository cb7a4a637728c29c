//! The crate's one error type.

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Something failed while starting (key generation, TLS setup, a task).
    #[error("tenant-sim failed to start: {0}")]
    Start(String),
    /// A listener could not be bound on 127.0.0.1.
    #[error("tenant-sim could not listen on 127.0.0.1")]
    Bind(#[source] std::io::Error),
    /// A builder or control setting is out of range; fix the value.
    #[error("invalid tenant-sim setting: {0}")]
    InvalidConfig(String),
    /// A control call named a user or group the directory does not have.
    #[error("no {kind} '{id}' in the simulated tenant")]
    NotFound {
        /// `user`, `group` or `object`.
        kind: &'static str,
        /// The id or UPN asked for.
        id: String,
    },
    /// A control call would break a directory rule (a taken user principal name).
    #[error("conflict in the simulated tenant: {0}")]
    Conflict(String),
}

impl Error {
    /// The named user or group does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// The caller passed a value to fix (out-of-range setting or a directory conflict).
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Self::InvalidConfig(_) | Self::Conflict(_))
    }
}
