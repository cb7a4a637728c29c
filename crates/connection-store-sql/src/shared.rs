//! Sharing the store's database with tables of your own: its pool, its sync lease as a
//! fence inside your transactions, and its key ring for your secrets.

use std::fmt;

use connection_store::{ConnectionId, LeaseHolder, OwnerId, StoreError};
use secrecy::{ExposeSecret, SecretString};

use crate::crypto::{Aad, Purpose};
use crate::store::{Pool, SqlStore};

/// The connection pool under a [`SqlStore`], for tables of your own in the same
/// database (cheap to clone: a handle to the same pool).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SqlPool {
    /// The `SQLite` file (WAL, busy timeout and foreign keys on, as the store set them).
    Sqlite(sqlx::SqlitePool),
    /// The `PostgreSQL` pool (with the store's `search_path` when it has a schema).
    Postgres(sqlx::PgPool),
}

/// A connection of the store's database, usually a transaction of yours (`&mut *tx`),
/// for [`SqlStore::holds_lease`].
#[derive(Debug)]
#[non_exhaustive]
pub enum SqlConnection<'c> {
    /// On `SQLite`.
    Sqlite(&'c mut sqlx::SqliteConnection),
    /// On `PostgreSQL`.
    Postgres(&'c mut sqlx::PgConnection),
}

/// A secret of yours encrypted by the store's key ring ([`SqlStore::seal_secret`]): the
/// id of the key and the ciphertext, to keep in two columns.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    key_id: String,
    ciphertext: Vec<u8>,
}

impl SealedSecret {
    /// A sealed secret as you stored it.
    pub fn new(key_id: impl Into<String>, ciphertext: Vec<u8>) -> Self {
        Self {
            key_id: key_id.into(),
            ciphertext,
        }
    }

    /// The id of the key that encrypted it.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The ciphertext (format byte, nonce, ciphertext, tag).
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSecret")
            .field("key_id", &self.key_id)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

/// The owner in the associated data of external secrets: they are bound to the
/// connection and the purpose; the `external:` purpose keeps them apart from the
/// store's own tokens and cursors.
fn no_owner() -> OwnerId {
    OwnerId::new("")
}

impl SqlStore {
    /// The pool this store uses, to keep tables of your own in the same database (the
    /// same `SQLite` file or `PostgreSQL` database and schema). Run your own migrations on
    /// it; keep away from the store's tables.
    pub fn pool(&self) -> SqlPool {
        match &self.pool {
            Pool::Sqlite(pool) => SqlPool::Sqlite(pool.clone()),
            Pool::Postgres(pool) => SqlPool::Postgres(pool.clone()),
        }
    }

    /// Whether `holder` holds an unexpired sync lease on connection `id` now (by the
    /// store's clock), read on `connection`. Call it inside the transaction whose writes
    /// the lease must fence, and commit only on `true`:
    ///
    /// - `PostgreSQL`: the connection's row is locked (`FOR SHARE`) until that
    ///   transaction ends, so nobody can take the lease over before it commits.
    /// - `SQLite`: one writer at a time, so in a write transaction (`BEGIN IMMEDIATE`, or
    ///   after its first write) the lease cannot change before it commits.
    ///
    /// A connection that does not exist has no lease: `false`.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the database fails.
    pub async fn holds_lease(
        &self,
        connection: SqlConnection<'_>,
        id: ConnectionId,
        holder: &LeaseHolder,
    ) -> Result<bool, StoreError> {
        const OP: &str = "holds_lease";
        const SQL: &str = "SELECT 1 FROM connections \
             WHERE id = $1 AND lease_holder = $2 AND lease_expires_at > $3";
        let (_, now) = self.now()?;
        let id = id.to_string();
        let found = match connection {
            SqlConnection::Sqlite(conn) => sqlx::query_scalar::<_, i32>(SQL)
                .bind(&id)
                .bind(holder.as_str())
                .bind(now)
                .fetch_optional(conn)
                .await
                .map(|row| row.is_some()),
            SqlConnection::Postgres(conn) => {
                sqlx::query_scalar::<_, i32>(&format!("{SQL} FOR SHARE"))
                    .bind(&id)
                    .bind(holder.as_str())
                    .bind(now)
                    .fetch_optional(conn)
                    .await
                    .map(|row| row.is_some())
            }
        };
        found.map_err(|err| StoreError::backend(OP, err))
    }

    /// Encrypts a secret of yours (kept in a table of your own) with the store's current
    /// key, bound to the connection `id` and to `purpose` (a label of yours, such as
    /// `"mirror-links"`): a ciphertext copied to another connection or purpose does not
    /// decrypt. [`SqlStore::reencrypt`] does not see your tables: rewrite your secrets
    /// to move them to a new key.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] when the ring has no current key or the secret is too
    /// large.
    pub fn seal_secret(
        &self,
        id: ConnectionId,
        purpose: &str,
        secret: &SecretString,
    ) -> Result<SealedSecret, StoreError> {
        let owner = no_owner();
        let sealed = self.keys.seal(
            &Aad {
                connection: id,
                owner: &owner,
                purpose: Purpose::External(purpose),
            },
            secret.expose_secret().as_bytes(),
        )?;
        Ok(SealedSecret {
            key_id: sealed.key_id,
            ciphertext: sealed.blob,
        })
    }

    /// Decrypts what [`seal_secret`](Self::seal_secret) gave for the same `id` and
    /// `purpose`.
    ///
    /// # Errors
    /// [`StoreError::MissingKey`] when its key is not in the ring; [`StoreError::Corrupt`]
    /// when it does not authenticate (damaged, or sealed for another connection or
    /// purpose).
    pub fn open_secret(
        &self,
        id: ConnectionId,
        purpose: &str,
        sealed: &SealedSecret,
    ) -> Result<SecretString, StoreError> {
        let owner = no_owner();
        self.keys.open(
            &Aad {
                connection: id,
                owner: &owner,
                purpose: Purpose::External(purpose),
            },
            &sealed.key_id,
            &sealed.ciphertext,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secret_debug_shows_no_ciphertext() {
        let sealed = SealedSecret::new("k1", vec![1, 2, 3, 4]);
        let debug = format!("{sealed:?}");
        assert!(
            debug.contains("k1") && debug.contains("ciphertext_len: 4"),
            "{debug}"
        );
        assert!(!debug.contains("[1, 2"), "{debug}");
    }
}
