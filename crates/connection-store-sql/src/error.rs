//! Errors of opening and configuring a [`SqlStore`](crate::SqlStore). Store operations
//! answer [`StoreError`](connection_store::StoreError).

use std::path::PathBuf;

use connection_store::BoxError;

/// Why a [`SqlStore`](crate::SqlStore) could not be opened or configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqlStoreError {
    /// A key, key id or key ring is not acceptable. Fix the configuration.
    #[error("invalid encryption key: {reason}")]
    InvalidKey {
        /// What is wrong (never the key).
        reason: &'static str,
    },

    /// An option is missing or wrong (no key ring, a bad URL or schema name…).
    #[error("invalid store configuration: {message}")]
    InvalidConfig {
        /// What is wrong (never a password).
        message: String,
    },

    /// The `SQLite` file could not be created or opened.
    #[error("cannot create or open the database file {}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The database refused the connection or a setup statement. Often temporary.
    #[error("cannot connect to the database")]
    Connect {
        /// The driver's error.
        #[source]
        source: BoxError,
    },

    /// The embedded migrations failed.
    #[error("database migration failed")]
    Migrate {
        /// The migrator's error.
        #[source]
        source: BoxError,
    },

    /// The database was migrated by a newer version of this crate; refuse rather than
    /// misread it.
    #[error("database schema version {found} is newer than the supported {supported}")]
    SchemaTooNew {
        /// The version in the database.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
}

impl SqlStoreError {
    /// Trying again later may help (the database was unreachable).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Connect { .. })
    }
}
