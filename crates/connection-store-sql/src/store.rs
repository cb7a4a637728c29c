//! `SqlStore`: the [`ConnectionStore`] operations as single SQL statements.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use connection_store::{
    AdminAccount, Backoff, Claim, Claims, Clock, Cloud, Connection, ConnectionId, ConnectionName,
    ConnectionStatus, ConnectionStore, CursorKey, Lease, LeaseHolder, NewConnection, OwnerId,
    Reconnect, StoreError, StoredToken, TenantId, TokenVersion,
};
use secrecy::{ExposeSecret, SecretString};
use sqlx::Row;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use time::OffsetDateTime;

use crate::crypto::{Aad, KeyRing, Purpose, Sealed};

#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The same code for both databases: the statements use `$n` placeholders and column
/// types (TEXT, BIGINT, BLOB/BYTEA) that mean the same in `SQLite` and `PostgreSQL`.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            Pool::Sqlite($pool) => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

/// Reads the columns of [`COLUMNS`] from a row of either database. An error names the
/// column that failed and, when the `id` column is readable, the connection.
macro_rules! raw_connection {
    ($row:expr) => {{
        let row = &$row;
        let id: Option<ConnectionId> = row
            .try_get::<String, _>("id")
            .ok()
            .and_then(|id| id.parse().ok());
        (|| -> Result<RawConnection, StoreError> {
            Ok(RawConnection {
                id: column!(row, id, "id"),
                owner_id: column!(row, id, "owner_id"),
                name: column!(row, id, "name"),
                tenant_id: column!(row, id, "tenant_id"),
                cloud: column!(row, id, "cloud"),
                admin_object_id: column!(row, id, "admin_object_id"),
                admin_username: column!(row, id, "admin_username"),
                admin_display_name: column!(row, id, "admin_display_name"),
                scopes: column!(row, id, "scopes"),
                status: column!(row, id, "status"),
                status_reason: column!(row, id, "status_reason"),
                status_since: column!(row, id, "status_since"),
                status_claims: column!(row, id, "status_claims"),
                created_at: column!(row, id, "created_at"),
                updated_at: column!(row, id, "updated_at"),
                last_synced_at: column!(row, id, "last_synced_at"),
                failures: column!(row, id, "failures"),
                retry_at: column!(row, id, "retry_at"),
                revision: column!(row, id, "revision"),
            })
        })()
        .and_then(RawConnection::into_connection)
    }};
}

/// One column of a row, or [`StoreError::Corrupt`] naming it.
macro_rules! column {
    ($row:expr, $id:expr, $name:literal) => {
        $row.try_get($name)
            .map_err(|err| StoreError::corrupt_with($id, $name, err))?
    };
}

const COLUMNS: &str = "id, owner_id, name, tenant_id, cloud, admin_object_id, admin_username, \
     admin_display_name, scopes, status, status_reason, status_since, status_claims, created_at, \
     updated_at, last_synced_at, failures, retry_at, revision";

/// [`ConnectionStore`] on `SQLite` or `PostgreSQL`, with refresh tokens and sync cursors
/// encrypted by a [`KeyRing`]. Cheap to clone (one pool).
#[derive(Clone)]
pub struct SqlStore {
    pub(crate) pool: Pool,
    pub(crate) keys: Arc<KeyRing>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.backend_name())
            .field("keys", &self.keys)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// The columns of [`COLUMNS`] as read from a row, before they are checked.
pub(crate) struct RawConnection {
    pub(crate) id: String,
    pub(crate) owner_id: String,
    pub(crate) name: String,
    pub(crate) tenant_id: String,
    pub(crate) cloud: String,
    pub(crate) admin_object_id: String,
    pub(crate) admin_username: String,
    pub(crate) admin_display_name: Option<String>,
    pub(crate) scopes: String,
    pub(crate) status: String,
    pub(crate) status_reason: Option<String>,
    pub(crate) status_since: Option<i64>,
    pub(crate) status_claims: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) last_synced_at: Option<i64>,
    pub(crate) failures: i64,
    pub(crate) retry_at: Option<i64>,
    pub(crate) revision: i64,
}

impl RawConnection {
    pub(crate) fn into_connection(self) -> Result<Connection, StoreError> {
        let id: ConnectionId = self
            .id
            .parse()
            .map_err(|err| StoreError::corrupt_with(None, "id", err))?;
        let some = Some(id);
        let name = ConnectionName::parse(&self.name)
            .map_err(|err| StoreError::corrupt_with(some, "name", err))?;
        let cloud: Cloud = serde_json::from_str(&self.cloud)
            .map_err(|err| StoreError::corrupt_with(some, "cloud", err))?;
        let scopes: Vec<String> = serde_json::from_str(&self.scopes)
            .map_err(|err| StoreError::corrupt_with(some, "scopes", err))?;
        let status = match (self.status.as_str(), self.status_reason, self.status_since) {
            ("active", _, _) => ConnectionStatus::Active,
            ("disabled", _, _) => ConnectionStatus::Disabled,
            ("needs_reconnect", Some(reason), Some(since)) => ConnectionStatus::NeedsReconnect {
                reason,
                since: from_micros(some, "status_since", since)?,
                claims: self.status_claims,
            },
            _ => return Err(StoreError::corrupt(some, "status")),
        };
        // Claims that could not have been written (too long, a control character): the
        // row was changed behind the store's back.
        status
            .validate()
            .map_err(|err| StoreError::corrupt_with(some, "status_claims", err))?;
        Ok(Connection {
            id,
            owner: OwnerId::new(self.owner_id),
            name,
            tenant: TenantId::new(self.tenant_id),
            cloud,
            admin: AdminAccount {
                object_id: self.admin_object_id,
                username: self.admin_username,
                display_name: self.admin_display_name,
            },
            scopes,
            status,
            created_at: from_micros(some, "created_at", self.created_at)?,
            updated_at: from_micros(some, "updated_at", self.updated_at)?,
            last_synced_at: self
                .last_synced_at
                .map(|t| from_micros(some, "last_synced_at", t))
                .transpose()?,
            failures: u32::try_from(self.failures)
                .map_err(|err| StoreError::corrupt_with(some, "failures", err))?,
            retry_at: self
                .retry_at
                .map(|t| from_micros(some, "retry_at", t))
                .transpose()?,
            revision: u64::try_from(self.revision)
                .map_err(|err| StoreError::corrupt_with(some, "revision", err))?,
        })
    }
}

/// Times are stored as Unix microseconds, the precision of `PostgreSQL`'s timestamps.
pub(crate) fn to_micros(time: OffsetDateTime) -> Result<i64, StoreError> {
    i64::try_from(time.unix_timestamp_nanos() / 1000)
        .map_err(|_| StoreError::invalid_input("a time is out of range"))
}

fn from_micros(
    id: Option<ConnectionId>,
    what: &str,
    micros: i64,
) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .map_err(|err| StoreError::corrupt_with(id, what, err))
}

/// The longest interval or delay the SQL arithmetic takes, in microseconds (about
/// 146,000 years): any stored time (years -9999 to 9999) plus it stays within `i64`.
const MAX_SPAN_MICROS: i64 = 1 << 62;

fn span_micros(span: Duration) -> i64 {
    i64::try_from(span.as_micros()).map_or(MAX_SPAN_MICROS, |m| m.min(MAX_SPAN_MICROS))
}

/// `backoff` as the parameters of the SQL of `record_failure`, which computes
/// `delay(failures + 1)` from the stored count as `base << failures` while that stays
/// below `max`, else `max`: (`base`, `max`, the count from which it is `max`), in
/// microseconds. Agrees with [`Backoff::delay`] to the microsecond.
fn backoff_micros(backoff: &Backoff) -> (i64, i64, i64) {
    let (base, max) = (span_micros(backoff.base), span_micros(backoff.max));
    if base == 0 {
        return (0, 0, 0);
    }
    let mut capped_from = 0;
    let mut delay = base;
    while delay < max {
        delay = delay.saturating_mul(2);
        capped_from += 1;
    }
    (base, max, capped_from)
}

/// The time a connection is due, as an SQL expression over its row: the order of
/// [`Connection::due_at`]; `$interval` is the placeholder of the interval (microseconds).
fn due_expression(interval: &str) -> String {
    let base = format!("COALESCE(last_synced_at + {interval}, created_at)");
    format!("CASE WHEN retry_at > {base} THEN retry_at ELSE {base} END")
}

pub(crate) fn version_from(id: ConnectionId, version: i64) -> Result<TokenVersion, StoreError> {
    u64::try_from(version)
        .map(TokenVersion::new)
        .map_err(|err| StoreError::corrupt_with(Some(id), "token_version", err))
}

fn version_to(version: TokenVersion) -> Result<i64, StoreError> {
    i64::try_from(version.get())
        .map_err(|_| StoreError::invalid_input("token version out of range"))
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// The columns of a status: `status`, `status_reason`, `status_since`, `status_claims`.
pub(crate) struct StatusColumns {
    pub(crate) kind: &'static str,
    pub(crate) reason: Option<String>,
    pub(crate) since: Option<i64>,
    pub(crate) claims: Option<String>,
}

/// The columns `status` is written as, once it passed [`ConnectionStatus::validate`].
pub(crate) fn status_columns(status: &ConnectionStatus) -> Result<StatusColumns, StoreError> {
    status.validate()?;
    Ok(match status {
        ConnectionStatus::NeedsReconnect {
            reason,
            since,
            claims,
        } => StatusColumns {
            kind: "needs_reconnect",
            reason: Some(reason.clone()),
            since: Some(to_micros(*since)?),
            claims: claims.clone(),
        },
        other => StatusColumns {
            kind: other.kind(),
            reason: None,
            since: None,
            claims: None,
        },
    })
}

pub(crate) fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|err| StoreError::invalid_input(format!("cannot encode: {err}")))
}

impl SqlStore {
    pub(crate) fn from_parts(pool: Pool, keys: Arc<KeyRing>, clock: Arc<dyn Clock>) -> Self {
        Self { pool, keys, clock }
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await);
    }

    pub(crate) fn now(&self) -> Result<(OffsetDateTime, i64), StoreError> {
        let now = self.clock.now();
        let micros = to_micros(now)?;
        Ok((from_micros(None, "now", micros)?, micros))
    }

    fn seal(
        &self,
        id: ConnectionId,
        owner: &OwnerId,
        purpose: Purpose<'_>,
        secret: &SecretString,
    ) -> Result<Sealed, StoreError> {
        self.keys.seal(
            &Aad {
                connection: id,
                owner,
                purpose,
            },
            secret.expose_secret().as_bytes(),
        )
    }

    fn unseal(
        &self,
        id: ConnectionId,
        owner: &OwnerId,
        purpose: Purpose<'_>,
        key_id: &str,
        blob: &[u8],
    ) -> Result<SecretString, StoreError> {
        self.keys.open(
            &Aad {
                connection: id,
                owner,
                purpose,
            },
            key_id,
            blob,
        )
    }

    async fn exists(
        &self,
        op: &'static str,
        owner: &OwnerId,
        id: ConnectionId,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "SELECT 1 AS one FROM connections WHERE id = $1 AND owner_id = $2";
        let found = on_pool!(self, pool => sqlx::query(SQL)
            .bind(id.to_string())
            .bind(owner.as_str())
            .fetch_optional(pool)
            .await
            .map(|row| row.is_some()));
        found.map_err(|err| StoreError::backend(op, err))
    }

    /// The id of the owner's connection whose column `column` equals `value`.
    async fn holder_of(
        &self,
        op: &'static str,
        owner: &OwnerId,
        column: &'static str,
        value: &str,
    ) -> Result<Option<ConnectionId>, StoreError> {
        let sql = format!("SELECT id FROM connections WHERE owner_id = $1 AND {column} = $2");
        let id: Option<String> = on_pool!(self, pool => sqlx::query_scalar(&sql)
            .bind(owner.as_str())
            .bind(value)
            .fetch_optional(pool)
            .await)
        .map_err(|err| StoreError::backend(op, err))?;
        id.map(|id| {
            id.parse()
                .map_err(|err| StoreError::corrupt_with(None, "id", err))
        })
        .transpose()
    }

    /// Re-encrypts every token and cursor written under a previous key with the current
    /// key, so the previous key can be removed from the ring. Each row is swapped only
    /// if nobody changed it meanwhile (the same compare-and-swap as token writes), so it
    /// can run while the service is live: it never changes a token's value or version, so
    /// a concurrent `replace_token` neither conflicts nor is undone. Run it once every
    /// replica has the new ring (a row written meanwhile by a replica on the old ring
    /// stays under the old key until the next pass). Returns how many ciphertexts it
    /// rewrote.
    ///
    /// # Errors
    /// [`StoreError::MissingKey`] or [`StoreError::Corrupt`] for a ciphertext the ring
    /// cannot decrypt (nothing after it is rewritten); [`StoreError::Backend`].
    pub async fn reencrypt(&self) -> Result<u64, StoreError> {
        const OP: &str = "reencrypt";
        const TOKENS: &str = "SELECT id, owner_id, token_version, token_key_id, token_ciphertext \
             FROM connections WHERE token_key_id <> $1";
        const SWAP_TOKEN: &str = "UPDATE connections SET token_key_id = $1, token_ciphertext = $2 \
             WHERE id = $3 AND token_version = $4 AND token_key_id = $5";
        const CURSORS: &str = "SELECT c.connection_id, k.owner_id, c.cursor_key, c.key_id, c.ciphertext \
             FROM cursors c JOIN connections k ON k.id = c.connection_id WHERE c.key_id <> $1";
        const SWAP_CURSOR: &str = "UPDATE cursors SET key_id = $1, ciphertext = $2 \
             WHERE connection_id = $3 AND cursor_key = $4 AND key_id = $5 AND ciphertext = $6";
        let current = self.keys.current_id().as_str().to_owned();
        let mut rewritten = 0;

        let rows: Vec<(String, String, i64, String, Vec<u8>)> = on_pool!(self, pool =>
            sqlx::query_as(TOKENS).bind(&current).fetch_all(pool).await)
        .map_err(|err| StoreError::backend(OP, err))?;
        for (id, owner, version, key_id, blob) in rows {
            let id: ConnectionId = id
                .parse()
                .map_err(|err| StoreError::corrupt_with(None, "id", err))?;
            let owner = OwnerId::new(owner);
            let token = self.unseal(id, &owner, Purpose::RefreshToken, &key_id, &blob)?;
            let sealed = self.seal(id, &owner, Purpose::RefreshToken, &token)?;
            let done = on_pool!(self, pool => sqlx::query(SWAP_TOKEN)
                .bind(&sealed.key_id).bind(&sealed.blob).bind(id.to_string()).bind(version).bind(&key_id)
                .execute(pool).await.map(|r| r.rows_affected()))
            .map_err(|err| StoreError::backend(OP, err))?;
            rewritten += done;
        }

        let rows: Vec<(String, String, String, String, Vec<u8>)> = on_pool!(self, pool =>
            sqlx::query_as(CURSORS).bind(&current).fetch_all(pool).await)
        .map_err(|err| StoreError::backend(OP, err))?;
        for (id, owner, key, key_id, blob) in rows {
            let id: ConnectionId = id
                .parse()
                .map_err(|err| StoreError::corrupt_with(None, "id", err))?;
            let owner = OwnerId::new(owner);
            let cursor = self.unseal(id, &owner, Purpose::Cursor(&key), &key_id, &blob)?;
            let sealed = self.seal(id, &owner, Purpose::Cursor(&key), &cursor)?;
            let done = on_pool!(self, pool => sqlx::query(SWAP_CURSOR)
                .bind(&sealed.key_id).bind(&sealed.blob).bind(id.to_string()).bind(&key).bind(&key_id).bind(&blob)
                .execute(pool).await.map(|r| r.rows_affected()))
            .map_err(|err| StoreError::backend(OP, err))?;
            rewritten += done;
        }
        Ok(rewritten)
    }

    /// Runs one `UPDATE … RETURNING {COLUMNS}` on the owner's connection.
    async fn update_returning(
        &self,
        sql: &str,
        id: ConnectionId,
        owner: &OwnerId,
        bind: Binds,
    ) -> Result<Option<Connection>, Result<sqlx::Error, StoreError>> {
        on_pool!(self, pool => {
            let mut query = sqlx::query(sql).bind(id.to_string()).bind(owner.as_str());
            for value in bind {
                query = match value {
                    Bind::Text(v) => query.bind(v),
                    Bind::Int(v) => query.bind(v),
                    Bind::Bytes(v) => query.bind(v),
                };
            }
            match query.fetch_optional(pool).await {
                Ok(Some(row)) => Ok(Some(raw_connection!(row).map_err(Err)?)),
                Ok(None) => Ok(None),
                Err(err) => Err(Ok(err)),
            }
        })
    }
}

impl SqlStore {
    /// The answer of a fenced write: what it wrote, else `LeaseLost` when the owner's
    /// connection exists (the fence failed) and `NotFound` when it does not.
    async fn fenced<T>(
        &self,
        op: &'static str,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        written: Option<T>,
    ) -> Result<T, StoreError> {
        match written {
            Some(written) => Ok(written),
            None if self.exists(op, owner, id).await? => Err(StoreError::LeaseLost {
                id,
                holder: holder.clone(),
            }),
            None => Err(StoreError::NotFound { id }),
        }
    }

    async fn claim(
        &self,
        limit: usize,
        holder: &LeaseHolder,
        ttl: Duration,
        interval: Duration,
    ) -> Result<Claims, StoreError> {
        const OP: &str = "claim_due";
        let (now, now_micros) = self.now()?;
        let expires = to_micros(Lease::expiry(now, ttl)?)?;
        let expires_at = from_micros(None, "lease_expires_at", expires)?;
        let interval_micros = span_micros(interval);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // $1 last-sync cutoff, $2 now, $3 limit, $4 holder, $5 lease expiry, $6 interval.
        let due = "status = 'active' \
             AND (last_synced_at IS NULL OR last_synced_at <= $1) \
             AND (retry_at IS NULL OR retry_at <= $2) \
             AND (lease_holder IS NULL OR lease_expires_at <= $2)";
        let order = due_expression("$6");
        let sql = match self.pool {
            // One statement: the rows are chosen and locked (skipping rows another
            // claimer has locked, never waiting for them) and then leased. A row whose
            // lease a concurrent claim committed meanwhile fails the re-checked WHERE.
            Pool::Postgres(_) => format!(
                "WITH picked AS (SELECT seq FROM connections WHERE {due} \
                 ORDER BY {order}, id COLLATE \"C\" LIMIT $3 FOR UPDATE SKIP LOCKED) \
                 UPDATE connections SET lease_holder = $4, lease_expires_at = $5 \
                 FROM picked WHERE connections.seq = picked.seq \
                 RETURNING {COLUMNS}, connections.seq AS seq"
            ),
            // One write statement is one write transaction: SQLite takes the write lock
            // before the statement reads (as BEGIN IMMEDIATE does), so claimers in other
            // connections or processes wait for it (busy timeout) and then see its leases.
            Pool::Sqlite(_) => format!(
                "UPDATE connections SET lease_holder = $4, lease_expires_at = $5 \
                 WHERE seq IN (SELECT seq FROM connections WHERE {due} \
                 ORDER BY {order}, id LIMIT $3) RETURNING {COLUMNS}, seq"
            ),
        };
        let cutoff = now_micros.saturating_sub(interval_micros);
        // Each row is decoded on its own: one unreadable row must not fail the batch and
        // strand the leases just taken on the others.
        let decoded: Vec<(Result<Connection, StoreError>, Option<i64>)> = on_pool!(self, pool => {
            let rows = sqlx::query(&sql)
                .bind(cutoff).bind(now_micros).bind(limit).bind(holder.as_str())
                .bind(expires).bind(interval_micros)
                .fetch_all(pool).await
                .map_err(|err| StoreError::backend(OP, err))?;
            rows.iter()
                .map(|row| (raw_connection!(row), row.try_get::<i64, _>("seq").ok()))
                .collect()
        });
        let mut claimed = Vec::with_capacity(decoded.len());
        let mut corrupt = Vec::new();
        for (connection, seq) in decoded {
            match connection {
                Ok(connection) => claimed.push(connection),
                Err(error) => {
                    self.defer_corrupt(holder, now, seq, &error).await;
                    corrupt.push(error);
                }
            }
        }
        // RETURNING comes in no particular order.
        claimed.sort_by_key(|c| (c.due_at(interval), c.id));
        let claims = claimed
            .into_iter()
            .map(|connection| {
                let lease = Lease {
                    id: connection.id,
                    holder: holder.clone(),
                    expires_at,
                };
                Claim::new(connection, lease)
            })
            .collect();
        Ok(Claims::with_corrupt(claims, corrupt))
    }

    /// Frees `holder`'s fresh lease on the claimed row `seq` that could not be read, and
    /// sets its `retry_at` [`CORRUPT_DEFERRAL`] ahead, so it neither waits out the lease
    /// nor, being the oldest due, takes a place in every later batch. Only the lease and
    /// `retry_at` are written: the record stays for someone to repair (or reconnect,
    /// which clears `retry_at`). Best effort: when this write fails, the row's lease
    /// expires after its `ttl` as any other, and the healthy claims of the batch are
    /// still handed out.
    async fn defer_corrupt(
        &self,
        holder: &LeaseHolder,
        now: OffsetDateTime,
        seq: Option<i64>,
        error: &StoreError,
    ) {
        const SQL: &str = "UPDATE connections \
             SET lease_holder = NULL, lease_expires_at = NULL, retry_at = $1 \
             WHERE seq = $2 AND lease_holder = $3";
        let (id, column) = match error {
            StoreError::Corrupt { id, what, .. } => (*id, what.as_str()),
            _ => (None, "?"),
        };
        let id = id.map(|id| id.to_string());
        let retry_at = now.saturating_add(CORRUPT_DEFERRAL);
        let deferred = match (seq, to_micros(retry_at)) {
            (Some(seq), Ok(retry_at)) => on_pool!(self, pool => sqlx::query(SQL)
                .bind(retry_at).bind(seq).bind(holder.as_str())
                .execute(pool).await.map(|r| r.rows_affected()))
            .map_err(|err| StoreError::backend("claim_due", err)),
            (None, _) => Err(StoreError::corrupt(None, "seq")),
            (_, Err(err)) => Err(err),
        };
        match deferred {
            Ok(_) => tracing::warn!(
                connection = id.as_deref(),
                seq,
                column,
                %retry_at,
                "due connection cannot be read: not claimed, lease freed, deferred"
            ),
            Err(defer_error) => tracing::warn!(
                connection = id.as_deref(),
                seq,
                column,
                error = %defer_error,
                "due connection cannot be read: not claimed, and could not be deferred \
                 (its lease expires as usual)"
            ),
        }
    }
}

/// How long [`claim_due`](ConnectionStore::claim_due) puts off a due connection whose
/// record cannot be read: long enough not to crowd every batch, short enough that a
/// repaired row syncs again by itself.
const CORRUPT_DEFERRAL: time::Duration = time::Duration::days(1);

/// The fence of the writes a sync makes, with the holder at `$3` and the store's clock
/// at `$5`: the holder's lease has not expired.
const FENCE: &str = "lease_holder = $3 AND lease_expires_at > $5";

/// Extra parameters after `$1` (id) and `$2` (owner).
type Binds = Vec<Bind>;

enum Bind {
    Text(Option<String>),
    Int(Option<i64>),
    Bytes(Vec<u8>),
}

fn backend(op: &'static str) -> impl Fn(Result<sqlx::Error, StoreError>) -> StoreError {
    move |err| match err {
        Ok(err) => StoreError::backend(op, err),
        Err(err) => err,
    }
}

#[async_trait]
impl ConnectionStore for SqlStore {
    async fn create(&self, owner: &OwnerId, new: NewConnection) -> Result<Connection, StoreError> {
        const OP: &str = "create";
        let name = ConnectionName::parse(&new.name)?;
        let (_, now) = self.now()?;
        let id = ConnectionId::new();
        let sealed = self.seal(id, owner, Purpose::RefreshToken, &new.refresh_token)?;
        let sql = format!(
            "INSERT INTO connections (id, owner_id, name, name_folded, tenant_id, cloud, \
             admin_object_id, admin_username, admin_display_name, scopes, status, created_at, \
             updated_at, revision, token_version, token_key_id, token_ciphertext) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'active', $11, $11, 1, 1, $12, $13) \
             RETURNING {COLUMNS}"
        );
        let binds = vec![
            Bind::Text(Some(name.as_str().to_owned())),
            Bind::Text(Some(name.folded())),
            Bind::Text(Some(new.tenant.as_str().to_owned())),
            Bind::Text(Some(json(&new.cloud)?)),
            Bind::Text(Some(new.admin.object_id.clone())),
            Bind::Text(Some(new.admin.username.clone())),
            Bind::Text(new.admin.display_name.clone()),
            Bind::Text(Some(json(&new.scopes)?)),
            Bind::Int(Some(now)),
            Bind::Text(Some(sealed.key_id)),
            Bind::Bytes(sealed.blob),
        ];
        match self.update_returning(&sql, id, owner, binds).await {
            Ok(Some(connection)) => Ok(connection),
            Ok(None) => Err(StoreError::corrupt(Some(id), "insert returned no row")),
            Err(Ok(err)) if is_unique_violation(&err) => {
                // The unique indexes decided, atomically; now find out which one.
                if let Some(existing) = self
                    .holder_of(OP, owner, "tenant_id", new.tenant.as_str())
                    .await?
                {
                    return Err(StoreError::TenantAlreadyConnected {
                        tenant: new.tenant,
                        existing,
                    });
                }
                if let Some(existing) = self
                    .holder_of(OP, owner, "name_folded", &name.folded())
                    .await?
                {
                    return Err(StoreError::NameTaken {
                        name: name.into(),
                        existing,
                    });
                }
                Err(StoreError::backend(OP, err))
            }
            Err(err) => Err(backend(OP)(err)),
        }
    }

    async fn get(&self, owner: &OwnerId, id: ConnectionId) -> Result<Connection, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM connections WHERE id = $1 AND owner_id = $2");
        let found = on_pool!(self, pool => {
            match sqlx::query(&sql).bind(id.to_string()).bind(owner.as_str()).fetch_optional(pool).await {
                Ok(Some(row)) => raw_connection!(row).map(Some),
                Ok(None) => Ok(None),
                Err(err) => Err(StoreError::backend("get", err)),
            }
        })?;
        found.ok_or(StoreError::NotFound { id })
    }

    async fn list(&self, owner: &OwnerId) -> Result<Vec<Connection>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM connections WHERE owner_id = $1 ORDER BY created_at, seq"
        );
        on_pool!(self, pool => {
            let rows = sqlx::query(&sql).bind(owner.as_str()).fetch_all(pool).await
                .map_err(|err| StoreError::backend("list", err))?;
            rows.iter().map(|row| raw_connection!(row)).collect()
        })
    }

    async fn rename(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        name: &str,
    ) -> Result<Connection, StoreError> {
        const OP: &str = "rename";
        let name = ConnectionName::parse(name)?;
        let (_, now) = self.now()?;
        let sql = format!(
            "UPDATE connections SET name = $3, name_folded = $4, updated_at = $5, revision = revision + 1 \
             WHERE id = $1 AND owner_id = $2 RETURNING {COLUMNS}"
        );
        let binds = vec![
            Bind::Text(Some(name.as_str().to_owned())),
            Bind::Text(Some(name.folded())),
            Bind::Int(Some(now)),
        ];
        match self.update_returning(&sql, id, owner, binds).await {
            Ok(Some(connection)) => Ok(connection),
            Ok(None) => Err(StoreError::NotFound { id }),
            Err(Ok(err)) if is_unique_violation(&err) => {
                match self
                    .holder_of(OP, owner, "name_folded", &name.folded())
                    .await?
                {
                    Some(existing) => Err(StoreError::NameTaken {
                        name: name.into(),
                        existing,
                    }),
                    None => Err(StoreError::backend(OP, err)),
                }
            }
            Err(err) => Err(backend(OP)(err)),
        }
    }

    async fn set_status(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        status: ConnectionStatus,
    ) -> Result<Connection, StoreError> {
        const OP: &str = "set_status";
        let (_, now) = self.now()?;
        let status = status_columns(&status)?;
        let sql = format!(
            "UPDATE connections SET status = $3, status_reason = $4, status_since = $5, updated_at = $6, \
             status_claims = $7, revision = revision + 1 \
             WHERE id = $1 AND owner_id = $2 RETURNING {COLUMNS}"
        );
        let binds = vec![
            Bind::Text(Some(status.kind.to_owned())),
            Bind::Text(status.reason),
            Bind::Int(status.since),
            Bind::Int(Some(now)),
            Bind::Text(status.claims),
        ];
        self.update_returning(&sql, id, owner, binds)
            .await
            .map_err(backend(OP))?
            .ok_or(StoreError::NotFound { id })
    }

    async fn set_status_fenced(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        status: ConnectionStatus,
    ) -> Result<Connection, StoreError> {
        const OP: &str = "set_status_fenced";
        let (_, now) = self.now()?;
        let status = status_columns(&status)?;
        // The fence is part of the WHERE: checked and written in one statement.
        let sql = format!(
            "UPDATE connections SET status = $4, status_reason = $6, status_since = $7, \
             status_claims = $8, updated_at = $5, revision = revision + 1 \
             WHERE id = $1 AND owner_id = $2 AND {FENCE} RETURNING {COLUMNS}"
        );
        let binds = vec![
            Bind::Text(Some(holder.as_str().to_owned())),
            Bind::Text(Some(status.kind.to_owned())),
            Bind::Int(Some(now)),
            Bind::Text(status.reason),
            Bind::Int(status.since),
            Bind::Text(status.claims),
        ];
        let written = self
            .update_returning(&sql, id, owner, binds)
            .await
            .map_err(backend(OP))?;
        self.fenced(OP, owner, id, holder, written).await
    }

    async fn record_sync(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        at: OffsetDateTime,
    ) -> Result<Connection, StoreError> {
        const OP: &str = "record_sync";
        let (_, now) = self.now()?;
        // The fence is part of the WHERE: checked and written in one statement.
        let sql = format!(
            "UPDATE connections SET last_synced_at = $4, failures = 0, retry_at = NULL, \
             updated_at = $5, revision = revision + 1 \
             WHERE id = $1 AND owner_id = $2 AND {FENCE} RETURNING {COLUMNS}"
        );
        let binds = vec![
            Bind::Text(Some(holder.as_str().to_owned())),
            Bind::Int(Some(to_micros(at)?)),
            Bind::Int(Some(now)),
        ];
        let written = self
            .update_returning(&sql, id, owner, binds)
            .await
            .map_err(backend(OP))?;
        self.fenced(OP, owner, id, holder, written).await
    }

    async fn record_failure(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        at: OffsetDateTime,
        backoff: &Backoff,
    ) -> Result<Connection, StoreError> {
        const OP: &str = "record_failure";
        let (_, now) = self.now()?;
        let (base, max, capped_from) = backoff_micros(backoff);
        let at = to_micros(at)?;
        // Any delay is at most `max`: refuse a retry time that could not be read back.
        at.checked_add(max)
            .and_then(|latest| from_micros(None, "retry_at", latest).ok())
            .ok_or_else(|| StoreError::invalid_input("a retry time is out of range"))?;
        // SET reads the row as it was: `failures` is the count before this failure.
        let sql = format!(
            "UPDATE connections SET \
             failures = CASE WHEN failures >= {max_failures} THEN failures ELSE failures + 1 END, \
             retry_at = $4 + CASE WHEN failures >= $6 THEN $7 \
             ELSE $8 * (CAST(1 AS BIGINT) << CAST(failures AS INTEGER)) END, \
             updated_at = $5, revision = revision + 1 \
             WHERE id = $1 AND owner_id = $2 AND {FENCE} RETURNING {COLUMNS}",
            max_failures = u32::MAX,
        );
        let binds = vec![
            Bind::Text(Some(holder.as_str().to_owned())),
            Bind::Int(Some(at)),
            Bind::Int(Some(now)),
            Bind::Int(Some(capped_from)),
            Bind::Int(Some(max)),
            Bind::Int(Some(base)),
        ];
        let written = self
            .update_returning(&sql, id, owner, binds)
            .await
            .map_err(backend(OP))?;
        self.fenced(OP, owner, id, holder, written).await
    }

    async fn load_token(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
    ) -> Result<StoredToken, StoreError> {
        const SQL: &str = "SELECT token_version, token_key_id, token_ciphertext FROM connections \
             WHERE id = $1 AND owner_id = $2";
        let row: Option<(i64, String, Vec<u8>)> = on_pool!(self, pool => sqlx::query_as(SQL)
            .bind(id.to_string()).bind(owner.as_str()).fetch_optional(pool).await)
        .map_err(|err| StoreError::backend("load_token", err))?;
        let (version, key_id, blob) = row.ok_or(StoreError::NotFound { id })?;
        Ok(StoredToken {
            token: self.unseal(id, owner, Purpose::RefreshToken, &key_id, &blob)?,
            version: version_from(id, version)?,
        })
    }

    async fn replace_token(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        expected: TokenVersion,
        token: SecretString,
    ) -> Result<TokenVersion, StoreError> {
        const OP: &str = "replace_token";
        // One statement: the WHERE clause is the compare, so no read-then-write race,
        // across pools and processes too (PostgreSQL re-checks it after a row lock wait).
        const SQL: &str = "UPDATE connections SET token_version = token_version + 1, \
             token_key_id = $4, token_ciphertext = $5 \
             WHERE id = $1 AND owner_id = $2 AND token_version = $3 RETURNING token_version";
        const CURRENT: &str =
            "SELECT token_version FROM connections WHERE id = $1 AND owner_id = $2";
        let sealed = self.seal(id, owner, Purpose::RefreshToken, &token)?;
        let expected_i64 = version_to(expected)?;
        let swapped: Option<i64> = on_pool!(self, pool => sqlx::query_scalar(SQL)
            .bind(id.to_string()).bind(owner.as_str()).bind(expected_i64)
            .bind(&sealed.key_id).bind(&sealed.blob)
            .fetch_optional(pool).await)
        .map_err(|err| StoreError::backend(OP, err))?;
        if let Some(version) = swapped {
            return version_from(id, version);
        }
        let current: Option<i64> = on_pool!(self, pool => sqlx::query_scalar(CURRENT)
            .bind(id.to_string()).bind(owner.as_str()).fetch_optional(pool).await)
        .map_err(|err| StoreError::backend(OP, err))?;
        match current {
            Some(current) => Err(StoreError::Conflict {
                expected,
                current: version_from(id, current)?,
            }),
            None => Err(StoreError::NotFound { id }),
        }
    }

    async fn reconnect(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        grant: Reconnect,
    ) -> Result<(Connection, TokenVersion), StoreError> {
        const OP: &str = "reconnect";
        let (_, now) = self.now()?;
        let sealed = self.seal(id, owner, Purpose::RefreshToken, &grant.refresh_token)?;
        let sql = format!(
            "UPDATE connections SET admin_object_id = $4, admin_username = $5, admin_display_name = $6, \
             scopes = $7, status = 'active', status_reason = NULL, status_since = NULL, \
             status_claims = NULL, failures = 0, retry_at = NULL, updated_at = $8, \
             revision = revision + 1, token_version = token_version + 1, token_key_id = $9, \
             token_ciphertext = $10 WHERE id = $1 AND owner_id = $2 AND tenant_id = $3 \
             RETURNING {COLUMNS}, token_version"
        );
        let row = on_pool!(self, pool => {
            let result = sqlx::query(&sql)
                .bind(id.to_string()).bind(owner.as_str()).bind(grant.tenant.as_str())
                .bind(&grant.admin.object_id).bind(&grant.admin.username).bind(&grant.admin.display_name)
                .bind(json(&grant.scopes)?).bind(now).bind(&sealed.key_id).bind(&sealed.blob)
                .fetch_optional(pool).await
                .map_err(|err| StoreError::backend(OP, err))?;
            match result {
                Some(row) => {
                    let version: i64 = row.try_get("token_version")
                        .map_err(|err| StoreError::corrupt_with(Some(id), "token_version", err))?;
                    Some((raw_connection!(row)?, version_from(id, version)?))
                }
                None => None,
            }
        });
        match row {
            Some(done) => Ok(done),
            None if self.exists(OP, owner, id).await? => Err(StoreError::invalid_input(
                "the sign-in is for another tenant than the connection's",
            )),
            None => Err(StoreError::NotFound { id }),
        }
    }

    async fn load_cursor(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        key: &CursorKey,
    ) -> Result<Option<SecretString>, StoreError> {
        // One query answers both "no such connection" and "no such cursor".
        const SQL: &str = "SELECT c.key_id, c.ciphertext FROM connections k \
             LEFT JOIN cursors c ON c.connection_id = k.id AND c.cursor_key = $3 \
             WHERE k.id = $1 AND k.owner_id = $2";
        let row: Option<(Option<String>, Option<Vec<u8>>)> =
            on_pool!(self, pool => sqlx::query_as(SQL)
            .bind(id.to_string()).bind(owner.as_str()).bind(key.as_str())
            .fetch_optional(pool).await)
            .map_err(|err| StoreError::backend("load_cursor", err))?;
        match row {
            None => Err(StoreError::NotFound { id }),
            Some((Some(key_id), Some(blob))) => Ok(Some(self.unseal(
                id,
                owner,
                Purpose::Cursor(key.as_str()),
                &key_id,
                &blob,
            )?)),
            Some((None, None)) => Ok(None),
            Some(_) => Err(StoreError::corrupt(
                Some(id),
                format!("cursor {:?}", key.as_str()),
            )),
        }
    }

    async fn save_cursor(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        key: &CursorKey,
        cursor: SecretString,
    ) -> Result<(), StoreError> {
        const OP: &str = "save_cursor";
        // The SELECT from connections is the owner check and the fence, in the same
        // statement; on PostgreSQL it also locks the row (FOR SHARE) until the write
        // commits, so the lease cannot be taken over in between.
        let sql = |lock: &str| {
            format!(
                "INSERT INTO cursors (connection_id, cursor_key, key_id, ciphertext, updated_at) \
                 SELECT id, $4, $5, $6, $7 FROM connections \
                 WHERE id = $1 AND owner_id = $2 AND lease_holder = $3 AND lease_expires_at > $7{lock} \
                 ON CONFLICT (connection_id, cursor_key) DO UPDATE SET key_id = excluded.key_id, \
                 ciphertext = excluded.ciphertext, updated_at = excluded.updated_at"
            )
        };
        let sql = match self.pool {
            Pool::Sqlite(_) => sql(""),
            Pool::Postgres(_) => sql(" FOR SHARE"),
        };
        let (_, now) = self.now()?;
        let sealed = self.seal(id, owner, Purpose::Cursor(key.as_str()), &cursor)?;
        let written = on_pool!(self, pool => sqlx::query(&sql)
            .bind(id.to_string()).bind(owner.as_str()).bind(holder.as_str()).bind(key.as_str())
            .bind(&sealed.key_id).bind(&sealed.blob).bind(now)
            .execute(pool).await.map(|r| r.rows_affected()))
        .map_err(|err| StoreError::backend(OP, err))?;
        self.fenced(OP, owner, id, holder, (written > 0).then_some(()))
            .await
    }

    async fn clear_cursor(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        key: &CursorKey,
    ) -> Result<(), StoreError> {
        const OP: &str = "clear_cursor";
        const SQL: &str = "DELETE FROM cursors WHERE connection_id = $1 AND cursor_key = $3 \
             AND EXISTS (SELECT 1 FROM connections WHERE id = $1 AND owner_id = $2)";
        let deleted = on_pool!(self, pool => sqlx::query(SQL)
            .bind(id.to_string()).bind(owner.as_str()).bind(key.as_str())
            .execute(pool).await.map(|r| r.rows_affected()))
        .map_err(|err| StoreError::backend(OP, err))?;
        if deleted == 0 && !self.exists(OP, owner, id).await? {
            return Err(StoreError::NotFound { id });
        }
        Ok(())
    }

    async fn delete(&self, owner: &OwnerId, id: ConnectionId) -> Result<(), StoreError> {
        // Cursors go by ON DELETE CASCADE; the token and lease are columns of the row.
        const SQL: &str = "DELETE FROM connections WHERE id = $1 AND owner_id = $2";
        let deleted = on_pool!(self, pool => sqlx::query(SQL)
            .bind(id.to_string()).bind(owner.as_str())
            .execute(pool).await.map(|r| r.rows_affected()))
        .map_err(|err| StoreError::backend("delete", err))?;
        if deleted == 0 {
            return Err(StoreError::NotFound { id });
        }
        Ok(())
    }

    async fn acquire_lease(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        const OP: &str = "acquire_lease";
        // One statement decides: free, expired, or already ours.
        const SQL: &str = "UPDATE connections SET lease_holder = $3, lease_expires_at = $5 \
             WHERE id = $1 AND owner_id = $2 \
             AND (lease_holder IS NULL OR lease_holder = $3 OR lease_expires_at <= $4) \
             RETURNING lease_expires_at";
        let (now, now_micros) = self.now()?;
        let expires_at = Lease::expiry(now, ttl)?;
        let granted: Option<i64> = on_pool!(self, pool => sqlx::query_scalar(SQL)
            .bind(id.to_string()).bind(owner.as_str()).bind(holder.as_str())
            .bind(now_micros).bind(to_micros(expires_at)?)
            .fetch_optional(pool).await)
        .map_err(|err| StoreError::backend(OP, err))?;
        match granted {
            Some(expires) => Ok(Some(Lease {
                id,
                holder: holder.clone(),
                expires_at: from_micros(Some(id), "lease_expires_at", expires)?,
            })),
            None if self.exists(OP, owner, id).await? => Ok(None),
            None => Err(StoreError::NotFound { id }),
        }
    }

    async fn renew_lease(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        const OP: &str = "renew_lease";
        const SQL: &str = "UPDATE connections SET lease_expires_at = $4 \
             WHERE id = $1 AND owner_id = $2 AND lease_holder = $3 RETURNING lease_expires_at";
        let (now, _) = self.now()?;
        let expires_at = Lease::expiry(now, ttl)?;
        let renewed: Option<i64> = on_pool!(self, pool => sqlx::query_scalar(SQL)
            .bind(id.to_string()).bind(owner.as_str()).bind(holder.as_str()).bind(to_micros(expires_at)?)
            .fetch_optional(pool).await)
        .map_err(|err| StoreError::backend(OP, err))?;
        match renewed {
            Some(expires) => Ok(Lease {
                id,
                holder: holder.clone(),
                expires_at: from_micros(Some(id), "lease_expires_at", expires)?,
            }),
            None if self.exists(OP, owner, id).await? => Err(StoreError::LeaseLost {
                id,
                holder: holder.clone(),
            }),
            None => Err(StoreError::NotFound { id }),
        }
    }

    async fn release_lease(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
    ) -> Result<(), StoreError> {
        const OP: &str = "release_lease";
        const SQL: &str = "UPDATE connections SET lease_holder = NULL, lease_expires_at = NULL \
             WHERE id = $1 AND owner_id = $2 AND lease_holder = $3";
        let released = on_pool!(self, pool => sqlx::query(SQL)
            .bind(id.to_string()).bind(owner.as_str()).bind(holder.as_str())
            .execute(pool).await.map(|r| r.rows_affected()))
        .map_err(|err| StoreError::backend(OP, err))?;
        if released == 0 && !self.exists(OP, owner, id).await? {
            return Err(StoreError::NotFound { id });
        }
        Ok(())
    }

    async fn claim_due(
        &self,
        limit: usize,
        holder: &LeaseHolder,
        ttl: Duration,
        interval: Duration,
    ) -> Result<Claims, StoreError> {
        if limit == 0 {
            return Ok(Claims::default());
        }
        self.claim(limit, holder, ttl, interval).await
    }
}
