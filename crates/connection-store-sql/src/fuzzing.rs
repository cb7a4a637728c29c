//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, never on by default):
//! thin wrappers over the store's private decoding of what it reads back (ciphertexts,
//! the columns of a connection row, a token version), and the encoding it writes, for
//! round trips. Not a stable API.

use connection_store::{Connection, ConnectionId, OwnerId, StoreError, TokenVersion};
use secrecy::SecretString;

use crate::crypto::{Aad, KeyRing, Purpose};
use crate::store::{RawConnection, json, status_columns, to_micros, version_from};

/// What a ciphertext was sealed for.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum CiphertextPurpose<'a> {
    /// A connection's refresh token.
    RefreshToken,
    /// A sync cursor under this key.
    Cursor(&'a str),
    /// A secret of the store's user under this label.
    External(&'a str),
}

impl<'a> From<CiphertextPurpose<'a>> for Purpose<'a> {
    fn from(purpose: CiphertextPurpose<'a>) -> Self {
        match purpose {
            CiphertextPurpose::RefreshToken => Purpose::RefreshToken,
            CiphertextPurpose::Cursor(key) => Purpose::Cursor(key),
            CiphertextPurpose::External(label) => Purpose::External(label),
        }
    }
}

/// Decrypts a stored ciphertext as the store does when it reads one back.
///
/// # Errors
/// [`StoreError::MissingKey`] or [`StoreError::Corrupt`].
pub fn open(
    ring: &KeyRing,
    connection: ConnectionId,
    owner: &OwnerId,
    purpose: CiphertextPurpose<'_>,
    key_id: &str,
    blob: &[u8],
) -> Result<SecretString, StoreError> {
    let aad = Aad {
        connection,
        owner,
        purpose: purpose.into(),
    };
    ring.open(&aad, key_id, blob)
}

/// Encrypts as the store does when it writes: `(key id, ciphertext)`.
///
/// # Errors
/// [`StoreError::InvalidInput`] when the value cannot be encrypted.
pub fn seal(
    ring: &KeyRing,
    connection: ConnectionId,
    owner: &OwnerId,
    purpose: CiphertextPurpose<'_>,
    plaintext: &[u8],
) -> Result<(String, Vec<u8>), StoreError> {
    let aad = Aad {
        connection,
        owner,
        purpose: purpose.into(),
    };
    ring.seal(&aad, plaintext)
        .map(|sealed| (sealed.key_id, sealed.blob))
}

/// The columns of a `connections` row as the database hands them over.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[expect(missing_docs, reason = "named as the columns")]
pub struct Row {
    pub id: String,
    pub owner_id: String,
    pub name: String,
    pub tenant_id: String,
    pub cloud: String,
    pub admin_object_id: String,
    pub admin_username: String,
    pub admin_display_name: Option<String>,
    pub scopes: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub status_since: Option<i64>,
    pub status_claims: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_synced_at: Option<i64>,
    pub failures: i64,
    pub retry_at: Option<i64>,
    pub revision: i64,
}

/// The connection the store makes of a row's columns.
///
/// # Errors
/// [`StoreError::Corrupt`] naming the column.
pub fn connection_from_row(row: Row) -> Result<Connection, StoreError> {
    RawConnection {
        id: row.id,
        owner_id: row.owner_id,
        name: row.name,
        tenant_id: row.tenant_id,
        cloud: row.cloud,
        admin_object_id: row.admin_object_id,
        admin_username: row.admin_username,
        admin_display_name: row.admin_display_name,
        scopes: row.scopes,
        status: row.status,
        status_reason: row.status_reason,
        status_since: row.status_since,
        status_claims: row.status_claims,
        created_at: row.created_at,
        updated_at: row.updated_at,
        last_synced_at: row.last_synced_at,
        failures: row.failures,
        retry_at: row.retry_at,
        revision: row.revision,
    }
    .into_connection()
}

/// The columns the store writes for a connection, with the encoders its statements use.
///
/// # Errors
/// [`StoreError::InvalidInput`] for a value the store refuses to write.
pub fn row_from_connection(connection: &Connection) -> Result<Row, StoreError> {
    let status = status_columns(&connection.status)?;
    Ok(Row {
        id: connection.id.to_string(),
        owner_id: connection.owner.as_str().to_owned(),
        name: connection.name.as_str().to_owned(),
        tenant_id: connection.tenant.as_str().to_owned(),
        cloud: json(&connection.cloud)?,
        admin_object_id: connection.admin.object_id.clone(),
        admin_username: connection.admin.username.clone(),
        admin_display_name: connection.admin.display_name.clone(),
        scopes: json(&connection.scopes)?,
        status: status.kind.to_owned(),
        status_reason: status.reason,
        status_since: status.since,
        status_claims: status.claims,
        created_at: to_micros(connection.created_at)?,
        updated_at: to_micros(connection.updated_at)?,
        last_synced_at: connection.last_synced_at.map(to_micros).transpose()?,
        failures: i64::from(connection.failures),
        retry_at: connection.retry_at.map(to_micros).transpose()?,
        revision: i64::try_from(connection.revision)
            .map_err(|_| StoreError::invalid_input("revision out of range"))?,
    })
}

/// The token version the store makes of a `token_version` column.
///
/// # Errors
/// [`StoreError::Corrupt`] for a negative one.
pub fn token_version_from_column(
    connection: ConnectionId,
    version: i64,
) -> Result<TokenVersion, StoreError> {
    version_from(connection, version)
}
