//! The one error type of every [`ConnectionStore`](crate::ConnectionStore) method.

use std::error::Error as StdError;

use crate::model::{ConnectionId, LeaseHolder, TenantId, TokenVersion};

/// Boxed cause of a [`StoreError::Backend`] or [`StoreError::Corrupt`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What a connection store can answer instead of a result.
///
/// One variant per thing the caller does differently: show "not found", ask for
/// another name, offer to reconnect the existing connection, reload and retry a token
/// write, retry the whole operation later, fix the configuration, or mark the connection
/// as needing a reconnect. No variant ever carries a token or a cursor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No connection with this id belongs to this owner. Another owner's connection
    /// gives this too, so that its existence is never revealed.
    #[error("connection {id} not found")]
    NotFound {
        /// The id that was asked for.
        id: ConnectionId,
    },

    /// The owner already has a connection whose name equals this one ignoring case.
    #[error("the name {name:?} is already used by connection {existing}")]
    NameTaken {
        /// The name that was asked for (trimmed).
        name: String,
        /// The connection that already carries the name.
        existing: ConnectionId,
    },

    /// The owner already has a connection for this tenant; reconnect it instead.
    #[error("tenant {tenant} is already connected as connection {existing}")]
    TenantAlreadyConnected {
        /// The tenant asked for.
        tenant: TenantId,
        /// The connection that already links this tenant.
        existing: ConnectionId,
    },

    /// The name breaks a naming rule.
    #[error("invalid connection name: {reason}")]
    InvalidName {
        /// Which rule it breaks.
        reason: InvalidNameReason,
    },

    /// Some other input is not acceptable (a cursor key, a lease holder, a reconnect for
    /// another tenant…).
    #[error("invalid input: {message}")]
    InvalidInput {
        /// What is wrong, without any secret.
        message: String,
    },

    /// The token was replaced by someone else since `expected` was read.
    #[error("token version conflict: expected {expected}, current {current}")]
    Conflict {
        /// The version the caller based its write on.
        expected: TokenVersion,
        /// The version now stored; reload the token and decide again.
        current: TokenVersion,
    },

    /// The holder does not hold the sync lease (any more): `renew_lease` found it freed or
    /// taken over, or a fenced write (`record_sync`, `record_failure`, `save_cursor`)
    /// found it expired, freed or taken over and wrote nothing. Stop syncing.
    #[error("sync lease of connection {id} is not held by {holder}")]
    LeaseLost {
        /// The connection.
        id: ConnectionId,
        /// The holder that asked.
        holder: LeaseHolder,
    },

    /// A ciphertext names an encryption key the store was not given. Fix the
    /// configuration (add the old key to the key ring); nothing is lost.
    #[error(
        "record of connection {id} is encrypted with key {key_id:?}, which is not in the key ring"
    )]
    MissingKey {
        /// The connection whose record could not be read.
        id: ConnectionId,
        /// The key id stored with the ciphertext.
        key_id: String,
    },

    /// A stored record cannot be read back: a field does not parse, or a ciphertext
    /// does not authenticate (tampered, copied from another row, or encrypted under a
    /// different key with the same id). Retrying does not help.
    #[error("stored record of {} is corrupt: {what}", display_id(.id.as_ref()))]
    Corrupt {
        /// The connection concerned, when known.
        id: Option<ConnectionId>,
        /// Which part is corrupt (a column or field name, never its value).
        what: String,
        /// The parse error, when there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// The storage itself failed (I/O, database connection, timeout). Often temporary.
    #[error("store backend failed during {operation}")]
    Backend {
        /// The store operation that failed, e.g. `"replace_token"`.
        operation: &'static str,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
}

fn display_id(id: Option<&ConnectionId>) -> String {
    id.map_or_else(
        || "a connection".to_owned(),
        |id| format!("connection {id}"),
    )
}

/// Why a connection name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidNameReason {
    /// Nothing left after trimming.
    #[error("the name is empty")]
    Empty,
    /// More than [`MAX_NAME_CHARS`](crate::MAX_NAME_CHARS) characters after trimming.
    #[error("the name has {chars} characters, at most 120 are allowed")]
    TooLong {
        /// Characters (Unicode scalar values) after trimming.
        chars: usize,
    },
    /// The name contains a control character (line breaks and tabs included).
    #[error("the name contains a control character")]
    ControlCharacter,
    /// The name contains a format character (Unicode category Cf): invisible, or a
    /// bidirectional control that reorders what is shown. The message names its code
    /// point (`U+202E`); neither it nor the name is shown.
    #[error(
        "the name contains the invisible format character {}",
        code_point(*.character)
    )]
    FormatCharacter {
        /// The first such character in the name.
        character: char,
    },
}

/// `U+202E`: a character by its code point, for messages that must not show it.
fn code_point(character: char) -> String {
    format!("U+{:04X}", u32::from(character))
}

impl StoreError {
    /// A [`StoreError::Backend`] for `operation` caused by `source`.
    pub fn backend(operation: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            operation,
            source: source.into(),
        }
    }

    /// A [`StoreError::Corrupt`] for the part `what` of connection `id`.
    pub fn corrupt(id: Option<ConnectionId>, what: impl Into<String>) -> Self {
        Self::Corrupt {
            id,
            what: what.into(),
            source: None,
        }
    }

    /// A [`StoreError::Corrupt`] with the parse error that revealed it.
    pub fn corrupt_with(
        id: Option<ConnectionId>,
        what: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Self::Corrupt {
            id,
            what: what.into(),
            source: Some(source.into()),
        }
    }

    /// An [`StoreError::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::InvalidInput {
            message: message.into(),
        }
    }

    /// The connection does not exist for this owner.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// A token write lost a compare-and-swap; reload the token and decide again.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }

    /// The version stored now, for a [`StoreError::Conflict`].
    pub fn current_version(&self) -> Option<TokenVersion> {
        match self {
            Self::Conflict { current, .. } => Some(*current),
            _ => None,
        }
    }

    /// The same call may succeed later (the backend failed, not the request).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Backend { .. })
    }

    /// The stored record cannot be read: treat the connection as needing a reconnect
    /// (or fix the key ring, for [`StoreError::MissingKey`]).
    pub fn is_corrupt(&self) -> bool {
        matches!(self, Self::Corrupt { .. } | Self::MissingKey { .. })
    }

    /// The request itself is wrong (name, tenant, input); changing it may succeed.
    pub fn is_invalid_request(&self) -> bool {
        matches!(
            self,
            Self::NameTaken { .. }
                | Self::TenantAlreadyConnected { .. }
                | Self::InvalidName { .. }
                | Self::InvalidInput { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates_answer_by_caller_action() {
        let id = ConnectionId::new();
        let conflict = StoreError::Conflict {
            expected: TokenVersion::new(1),
            current: TokenVersion::new(3),
        };
        assert!(conflict.is_conflict());
        assert_eq!(conflict.current_version(), Some(TokenVersion::new(3)));
        assert!(!conflict.is_retryable());
        assert!(StoreError::NotFound { id }.is_not_found());
        assert!(StoreError::backend("get", std::io::Error::other("disk")).is_retryable());
        assert!(StoreError::corrupt(Some(id), "status").is_corrupt());
        assert!(
            StoreError::MissingKey {
                id,
                key_id: "k1".into()
            }
            .is_corrupt()
        );
        assert!(
            StoreError::InvalidName {
                reason: InvalidNameReason::Empty
            }
            .is_invalid_request()
        );
    }

    #[test]
    fn backend_error_keeps_its_source_and_message_names_the_operation() {
        let err = StoreError::backend("replace_token", std::io::Error::other("disk full"));
        assert_eq!(err.to_string(), "store backend failed during replace_token");
        let source = StdError::source(&err).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("disk full"));
    }

    #[test]
    fn corrupt_error_names_the_connection_and_part() {
        let id = ConnectionId::new();
        let err = StoreError::corrupt(Some(id), "status");
        assert_eq!(
            err.to_string(),
            format!("stored record of connection {id} is corrupt: status")
        );
        assert_eq!(
            StoreError::corrupt(None, "row").to_string(),
            "stored record of a connection is corrupt: row"
        );
    }
}
