//! The `ConnectionStore` trait every backend implements.

use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::model::{
    Connection, ConnectionId, ConnectionStatus, CursorKey, Lease, LeaseHolder, NewConnection,
    OwnerId, Reconnect, StoredToken, TokenVersion,
};

/// Linked Microsoft 365 accounts with their refresh tokens, sync cursors and sync leases.
///
/// Object safe and `Send + Sync`: services hold an `Arc<dyn ConnectionStore>`.
///
/// Rules every implementation keeps (and [`testkit`](crate#test-kit) checks):
/// - Every method takes the owner; a connection of another owner is
///   [`StoreError::NotFound`] and is never read, changed or deleted.
/// - Names go through [`ConnectionName::parse`](crate::ConnectionName::parse) (trimmed,
///   1–120 characters, no control characters) and are unique per owner by
///   [`ConnectionName::folded`](crate::ConnectionName::folded), else
///   [`StoreError::NameTaken`].
/// - One connection per (owner, tenant), else [`StoreError::TenantAlreadyConnected`]
///   naming the existing one. A tenant check comes before the name check.
/// - Token writes are compare-and-swap on [`TokenVersion`]: of many concurrent
///   `replace_token` calls with the same expected version exactly one succeeds.
/// - Deleting a connection deletes its token, cursors and lease.
/// - Record changes (rename, status, sync time, reconnect) set `updated_at` to the
///   store's clock and add one to `revision`; token and cursor writes do not.
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
    /// refused the refresh token.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Backend`].
    async fn set_status(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        status: ConnectionStatus,
    ) -> Result<Connection, StoreError>;

    /// Records that a sync completed at `at`.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Backend`].
    async fn record_sync(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        at: OffsetDateTime,
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
    /// [`ConnectionStatus::Active`]. Name, cursors and lease stay.
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

    /// Saves (or overwrites) the sync cursor under `key`.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Backend`].
    async fn save_cursor(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
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
}
