//! [`MirrorError`]: what went wrong in the directory mirror, by what the caller does.

use std::path::PathBuf;

use connection_store::{ConnectionId, StoreError};
use graph_client::sync::{SinkError, SinkErrorKind};

/// The cause of an error, kept as its source.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What kind of mirrored object a [`MirrorError::Corrupt`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ObjectKind {
    /// A user row.
    User,
    /// A group row.
    Group,
    /// A membership row.
    Membership,
    /// A staged change of the sync in progress.
    StagedChange,
    /// The committed delta links.
    Links,
    /// The per-connection state row (totals, the sync in progress).
    State,
}

impl ObjectKind {
    /// A lower-case label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Group => "group",
            Self::Membership => "membership",
            Self::StagedChange => "staged change",
            Self::Links => "sync links",
            Self::State => "mirror state",
        }
    }
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error of the directory mirror. It names connections and object ids, never
/// directory content or links.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MirrorError {
    /// The database failed or is unreachable: try again later.
    #[error("the mirror database failed to {operation}")]
    Database {
        /// What the mirror was doing.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: BoxError,
    },

    /// A stored row cannot be read back (damaged JSON, an impossible value, links that do
    /// not decrypt or decode). Nothing was changed; a person should look.
    #[error("the mirror of connection {connection} holds a damaged {kind} {id}: {reason}")]
    Corrupt {
        /// The connection.
        connection: ConnectionId,
        /// What kind of row.
        kind: ObjectKind,
        /// The object's id (a user or group id, `group/member`, a change's number), or
        /// empty when the row has none.
        id: String,
        /// What is wrong with it, without its content.
        reason: String,
    },

    /// The commit is fenced: the sync lease of this connection is not (or no longer)
    /// held by this writer, or another sync of the connection began since. Nothing was
    /// committed; the writer that holds the lease carries on.
    #[error("the mirror of connection {connection} is fenced: {reason}")]
    Fenced {
        /// The connection.
        connection: ConnectionId,
        /// Why.
        reason: &'static str,
    },

    /// The connection is not in the connection store (removed, or never created).
    #[error("connection {connection} is not in the connection store")]
    UnknownConnection {
        /// The connection.
        connection: ConnectionId,
    },

    /// The call itself is wrong: a bad argument, or the sink used out of order (a bug of
    /// the caller).
    #[error("invalid use of the mirror: {message}")]
    Invalid {
        /// What is wrong.
        message: String,
    },

    /// The database was migrated by a newer version of the mirror.
    #[error("the mirror schema version {found} is newer than the supported {supported}")]
    SchemaTooNew {
        /// The version in the database.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },

    /// An export file or folder could not be written.
    #[error("could not write {}", path.display())]
    File {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl MirrorError {
    pub(crate) fn database(
        operation: &'static str,
    ) -> impl Fn(connection_store_sql::sqlx::Error) -> Self {
        move |source| Self::Database {
            operation,
            source: Box::new(source),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid {
            message: message.into(),
        }
    }

    pub(crate) fn corrupt(
        connection: ConnectionId,
        kind: ObjectKind,
        id: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::Corrupt {
            connection,
            kind,
            id: id.into(),
            reason: reason.into(),
        }
    }

    /// A JSON column that does not decode: the category and position of the failure,
    /// never serde's message (which may quote the content).
    pub(crate) fn undecodable(
        connection: ConnectionId,
        kind: ObjectKind,
        id: impl Into<String>,
        error: &serde_json::Error,
    ) -> Self {
        let category = match error.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "JSON that does not fit the model",
            serde_json::error::Category::Eof => "truncated JSON",
        };
        Self::corrupt(
            connection,
            kind,
            id,
            format!(
                "{category} (line {}, column {})",
                error.line(),
                error.column()
            ),
        )
    }

    /// A store error while sealing or opening the links.
    pub(crate) fn links(connection: ConnectionId, error: &StoreError) -> Self {
        let reason = match error {
            StoreError::MissingKey { key_id, .. } => {
                format!("encrypted with key {key_id:?}, which the key ring lacks")
            }
            StoreError::Corrupt { .. } => "the ciphertext does not decrypt".to_owned(),
            _ => "cannot be encrypted or decrypted".to_owned(),
        };
        Self::corrupt(connection, ObjectKind::Links, "", reason)
    }

    /// The caller's question: is the same operation worth trying again later?
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Database { .. } | Self::Fenced { .. })
    }

    /// True when a stored row is damaged.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, Self::Corrupt { .. })
    }

    /// True when another writer holds the right to write this connection.
    pub fn is_fenced(&self) -> bool {
        matches!(self, Self::Fenced { .. })
    }

    /// The sink error the sync engine reports.
    pub(crate) fn into_sink_error(self) -> SinkError {
        let kind = match &self {
            Self::Database { .. } => SinkErrorKind::Unavailable,
            Self::Fenced { .. } => SinkErrorKind::Fenced,
            Self::Corrupt { .. } | Self::SchemaTooNew { .. } => SinkErrorKind::Corrupt,
            _ => SinkErrorKind::Other,
        };
        // The mirror's own error is the source: the message does not repeat it (STYLE, Errors).
        SinkError::new(kind, "the directory mirror failed").with_source(self)
    }
}

impl From<MirrorError> for SinkError {
    fn from(error: MirrorError) -> Self {
        error.into_sink_error()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undecodable_json_names_the_place_never_the_content() {
        let error = serde_json::from_str::<serde_json::Value>("{\"mail\": SECRET-VALUE}")
            .expect_err("not JSON");
        let id = ConnectionId::new();
        let mirror = MirrorError::undecodable(id, ObjectKind::User, "u-1", &error);
        let text = mirror.to_string();
        assert!(
            text.contains(&id.to_string()) && text.contains("u-1"),
            "{text}"
        );
        assert!(!text.contains("SECRET"), "{text}");
        assert!(mirror.is_corrupt());
        assert_eq!(mirror.into_sink_error().kind(), SinkErrorKind::Corrupt);
    }

    #[test]
    fn sink_errors_keep_the_caller_action() {
        let id = ConnectionId::new();
        let fenced = MirrorError::Fenced {
            connection: id,
            reason: "the sync lease is held by another writer",
        };
        assert!(fenced.is_retryable() && fenced.is_fenced());
        assert_eq!(fenced.into_sink_error().kind(), SinkErrorKind::Fenced);
        assert_eq!(
            MirrorError::invalid("x").into_sink_error().kind(),
            SinkErrorKind::Other
        );
    }
}
