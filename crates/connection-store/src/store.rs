//! The `ConnectionStore` trait every backend implements.

use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::model::{
    Backoff, Claims, Connection, ConnectionId, ConnectionStatus, CursorKey, Lease, LeaseHolder,
    NewConnection, OwnerId, Reconnect, StoredToken, TokenVersion,
};

/// Linked Microsoft 365 accounts with their refresh tokens, sync cursors and sync leases.
///
/// Object safe and `Send + Sync`: services hold an `Arc<dyn ConnectionStore>`.
///
/// Rules every implementation keeps (and [`testkit`](crate#test-kit) checks):
/// - Every method but the service-level [`claim_due`](Self::claim_due) takes the owner;
///   a connection of another owner is [`StoreError::NotFound`] and is never read, changed
///   or deleted.
/// - Names go through [`ConnectionName::parse`](crate::ConnectionName::parse) (trimmed,
///   1–120 characters, no control or format characters) and are unique per owner by
///   [`ConnectionName::folded`](crate::ConnectionName::folded), else
///   [`StoreError::NameTaken`].
/// - One connection per (owner, tenant), else [`StoreError::TenantAlreadyConnected`]
///   naming the existing one. A tenant check comes before the name check.
/// - Token writes are compare-and-swap on [`TokenVersion`]: of many concurrent
///   `replace_token` calls with the same expected version exactly one succeeds.
/// - Deleting a connection deletes its token, cursors and lease.
/// - Record changes (rename, status, sync time, failure, reconnect) set `updated_at` to
///   the store's clock and add one to `revision`; token, cursor and lease writes do not.
/// - A status is checked with [`ConnectionStatus::validate`] before it is written
///   ([`StoreError::InvalidInput`], nothing written). A "reconnect needed" status is
///   read back as written, its claims included; [`reconnect`](Self::reconnect) clears
///   them with the status.
/// - Fenced writes ([`record_sync`](Self::record_sync),
///   [`record_failure`](Self::record_failure), [`save_cursor`](Self::save_cursor),
///   [`set_status_fenced`](Self::set_status_fenced)) take the [`LeaseHolder`] the sync
///   runs under and succeed only while it holds an *unexpired* sync lease, checked in the
///   same statement or transaction as the write; otherwise they change nothing and
///   answer [`StoreError::LeaseLost`]. So a stalled worker whose lease expired or was
///   taken over never overwrites newer work.
///
/// # Service-level operations
///
/// [`claim_due`](Self::claim_due) is the only method that is not owner-scoped: it is for
/// the service's scheduler (workers, replicas), never for a customer's request, and it
/// looks at every owner's connections. Each [`Claim`](crate::Claim) names the connection's owner for
/// the owner-scoped calls that follow. A service runs its syncs like this:
///
/// 1. `claim_due(limit, holder, ttl, interval)` takes a batch of due connections, oldest
///    due first, each with its sync lease for `holder` (replicas claiming at once never
///    get the same connection);
/// 2. it syncs each one, calling [`renew_lease`](Self::renew_lease) well before `ttl`
///    passes (every third of it) and saving cursors with
///    [`save_cursor`](Self::save_cursor) under the same holder;
/// 3. it records the outcome while still holding the lease:
///    [`record_sync`](Self::record_sync) on success, or
///    [`record_failure`](Self::record_failure) (with a [`Backoff`]) on a failure other
///    than [`StoreError::LeaseLost`], after which the connection is not claimable until
///    its [`retry_at`](Connection::retry_at);
/// 4. it frees the lease with [`release_lease`](Self::release_lease).
///
/// A connection is due when its status is [`ConnectionStatus::Active`], it was never
/// synced or last synced at least `interval` ago, its `retry_at` (if any) has passed,
/// and its sync lease is free or expired. "Reconnect needed" and disabled connections
/// are never claimed.
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Stores a new connection with its first refresh token (version 1), status
    /// [`ConnectionStatus::Active`] and revision 1.
    ///
    /// # Errors
    /// [`StoreError::InvalidName`], [`StoreError::TenantAlreadyConnected`],
    /// [`StoreError::NameTaken`], [`StoreError::Backend`].
    async fn create(&self, owner: &OwnerId, new: NewConnection) -> Result<Connection, StoreError>;

    /// One connection of the owner.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Corrupt`], [`StoreError::Backend`].
    async fn get(&self, owner: &OwnerId, id: ConnectionId) -> Result<Connection, StoreError>;

    /// All connections of the owner, oldest first (creation order for equal times).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`], [`StoreError::Backend`].
    async fn list(&self, owner: &OwnerId) -> Result<Vec<Connection>, StoreError>;

    /// Renames a connection (same rules as on create; its own name in another case is
    /// allowed).
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::InvalidName`], [`StoreError::NameTaken`],
    /// [`StoreError::Backend`].
    async fn rename(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        name: &str,
    ) -> Result<Connection, StoreError>;

    /// Sets the status, e.g. [`ConnectionStatus::NeedsReconnect`] after Microsoft
    /// refused the refresh token, with the claims its reconnect must carry, if any
    /// (they replace any stored before).
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] when the status fails
    /// [`ConnectionStatus::validate`] (claims too long, empty or with a control
    /// character; nothing is written); [`StoreError::NotFound`], [`StoreError::Backend`].
    async fn set_status(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        status: ConnectionStatus,
    ) -> Result<Connection, StoreError>;

    /// [`set_status`](Self::set_status) for a sync running under `holder`'s lease, e.g.
    /// "reconnect needed" when Microsoft refused the refresh token during the sync.
    /// Fenced like [`record_sync`](Self::record_sync): only while `holder` holds an
    /// unexpired sync lease on the connection, so a stalled worker cannot overwrite the
    /// status after another one took the connection over.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when `holder`'s lease expired, was taken over or
    /// released (nothing is written); [`StoreError::NotFound`],
    /// [`StoreError::InvalidInput`] (a time out of range, or a status that fails
    /// [`ConnectionStatus::validate`]), [`StoreError::Backend`].
    async fn set_status_fenced(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        status: ConnectionStatus,
    ) -> Result<Connection, StoreError>;

    /// Records that a sync under `holder`'s lease completed at `at`: sets
    /// `last_synced_at`, and resets `failures` to 0 and `retry_at` to none. Fenced: only
    /// while `holder` holds an unexpired sync lease on the connection.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when `holder`'s lease expired, was taken over or
    /// released (nothing is written: stop, the sync's result is someone else's to
    /// record); [`StoreError::NotFound`], [`StoreError::InvalidInput`] (a time out of
    /// range), [`StoreError::Backend`].
    async fn record_sync(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        at: OffsetDateTime,
    ) -> Result<Connection, StoreError>;

    /// Records that a sync under `holder`'s lease failed at `at`: `failures` goes up by
    /// one and `retry_at` becomes `at + backoff.delay(failures)`, before which
    /// [`claim_due`](Self::claim_due) skips the connection. Fenced like
    /// [`record_sync`](Self::record_sync). Not for a lost lease: whoever holds it now
    /// records that sync.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when `holder`'s lease expired, was taken over or
    /// released (nothing is written); [`StoreError::NotFound`],
    /// [`StoreError::InvalidInput`] (a time out of range), [`StoreError::Backend`].
    async fn record_failure(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        at: OffsetDateTime,
        backoff: &Backoff,
    ) -> Result<Connection, StoreError>;

    /// The current refresh token and its version.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Corrupt`], [`StoreError::MissingKey`],
    /// [`StoreError::Backend`].
    async fn load_token(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
    ) -> Result<StoredToken, StoreError>;

    /// Replaces the refresh token if its version is still `expected`, in one atomic step;
    /// returns the new version (`expected` + 1).
    ///
    /// # Errors
    /// [`StoreError::Conflict`] with the current version when another writer was first;
    /// [`StoreError::NotFound`], [`StoreError::Backend`].
    async fn replace_token(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        expected: TokenVersion,
        token: SecretString,
    ) -> Result<TokenVersion, StoreError>;

    /// Stores a new sign-in for an existing connection: the token (whatever its
    /// version was; the new version is one more), the admin and scopes, and status
    /// [`ConnectionStatus::Active`] (a "reconnect needed" reason and claims are
    /// cleared); `failures` goes back to 0 and `retry_at` to none, so
    /// it is claimable at once. Name, cursors and lease stay.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] when `grant.tenant` is not the connection's tenant;
    /// [`StoreError::NotFound`], [`StoreError::Backend`].
    async fn reconnect(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        grant: Reconnect,
    ) -> Result<(Connection, TokenVersion), StoreError>;

    /// The sync cursor (delta link) saved under `key`, if any.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Corrupt`], [`StoreError::MissingKey`],
    /// [`StoreError::Backend`].
    async fn load_cursor(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        key: &CursorKey,
    ) -> Result<Option<SecretString>, StoreError>;

    /// Saves (or overwrites) the sync cursor under `key`, for the sync running under
    /// `holder`'s lease. Fenced like [`record_sync`](Self::record_sync).
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when `holder`'s lease expired, was taken over or
    /// released (the cursor stays as it was); [`StoreError::NotFound`],
    /// [`StoreError::Backend`].
    async fn save_cursor(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        key: &CursorKey,
        cursor: SecretString,
    ) -> Result<(), StoreError>;

    /// Forgets the sync cursor under `key` (the next sync is a full one). No cursor is
    /// not an error.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Backend`].
    async fn clear_cursor(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        key: &CursorKey,
    ) -> Result<(), StoreError>;

    /// Deletes the connection with its token, cursors and lease.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Backend`].
    async fn delete(&self, owner: &OwnerId, id: ConnectionId) -> Result<(), StoreError>;

    /// Takes the sync lease for `holder` until now + `ttl`, in one atomic step, if it is
    /// free, expired, or already `holder`'s (then it is extended). `None` when another
    /// holder has it.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Backend`].
    async fn acquire_lease(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError>;

    /// Extends `holder`'s lease to now + `ttl`. Works while nobody else took the lease
    /// over, even just after it expired.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when the lease is free or another holder's: stop
    /// syncing. [`StoreError::NotFound`], [`StoreError::Backend`].
    async fn renew_lease(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        ttl: Duration,
    ) -> Result<Lease, StoreError>;

    /// Frees `holder`'s lease. Does nothing when `holder` does not hold it.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Backend`].
    async fn release_lease(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
    ) -> Result<(), StoreError>;

    /// Service-level (not owner-scoped, see the trait docs): claims up to `limit` due
    /// connections of any owner for `holder`, taking each one's sync lease until now +
    /// `ttl`, in one atomic step. Due: status [`ConnectionStatus::Active`], never synced
    /// or last synced at least `interval` ago, past its `retry_at`, and its lease free or
    /// expired. Oldest due first, by [`Connection::due_at`] then id, so every connection
    /// gets its turn. Concurrent claimers (tasks, processes, replicas) never claim one
    /// connection twice and never wait for each other's rows. A `limit` of 0 returns
    /// nothing without touching the storage.
    ///
    /// Claiming is a lease write, not a record change: `revision` and `updated_at` stay.
    ///
    /// A due connection whose record cannot be read is not claimed and does not fail the
    /// call: it comes back in [`Claims::corrupt`] as a [`StoreError::Corrupt`] (naming
    /// the connection and the column), and in the same call its lease is freed and it is
    /// deferred (not due again for a while, the SQL store's a day) so it does not take
    /// a place in every later batch. Its record stays as it was (only its lease and
    /// `retry_at` are written): owner calls still answer [`StoreError::Corrupt`], and a
    /// [`reconnect`](Self::reconnect) makes it claimable at once.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] when `ttl` is zero or longer than a year;
    /// [`StoreError::Backend`].
    async fn claim_due(
        &self,
        limit: usize,
        holder: &LeaseHolder,
        ttl: Duration,
        interval: Duration,
    ) -> Result<Claims, StoreError>;
}
