//! A store handle for tests: it delegates to a real store, and lets a test step in at
//! the moments that matter to the sync lease (just before the first `claim_due`; lease
//! renewals that never come back, as on a database stuck for a whole lease).
//!
//! Included by the test crates that need it (`mod support;`); each uses part of it.
#![allow(dead_code, reason = "each test crate that includes it uses part of it")]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use connection_store::{
    Backoff, Claims, Connection, ConnectionId, ConnectionStatus, ConnectionStore, CursorKey, Lease,
    LeaseHolder, NewConnection, OwnerId, Reconnect, StoreError, StoredToken, TokenVersion,
};
use futures::future::BoxFuture;
use secrecy::SecretString;
use time::OffsetDateTime;

/// What runs just before the first `claim_due`.
pub type Hook = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// A store handle over `inner` with the test's hooks.
pub struct HookedStore {
    inner: Arc<dyn ConnectionStore>,
    before_claim: Mutex<Option<Hook>>,
    stall_renewals: AtomicBool,
    failing_renewals: AtomicU64,
    renewals: AtomicU64,
}

impl HookedStore {
    pub fn new(inner: Arc<dyn ConnectionStore>) -> Self {
        Self {
            inner,
            before_claim: Mutex::new(None),
            stall_renewals: AtomicBool::new(false),
            failing_renewals: AtomicU64::new(0),
            renewals: AtomicU64::new(0),
        }
    }

    /// Runs `hook` (once) just before the first `claim_due`: the moment another instance
    /// may finish a sync of the same connection.
    pub fn before_first_claim(self, hook: Hook) -> Self {
        *self
            .before_claim
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(hook);
        self
    }

    /// From now on every lease renewal waits for good, never reaching the store.
    pub fn stall_renewals(&self) {
        self.stall_renewals.store(true, Ordering::SeqCst);
    }

    /// The next `count` lease renewals fail with a retryable backend error (a database
    /// hiccup) without reaching the store.
    pub fn fail_renewals(&self, count: u64) {
        self.failing_renewals.store(count, Ordering::SeqCst);
    }

    /// The lease renewals asked for so far.
    pub fn renewals(&self) -> u64 {
        self.renewals.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl ConnectionStore for HookedStore {
    async fn create(&self, owner: &OwnerId, new: NewConnection) -> Result<Connection, StoreError> {
        self.inner.create(owner, new).await
    }
    async fn get(&self, owner: &OwnerId, id: ConnectionId) -> Result<Connection, StoreError> {
        self.inner.get(owner, id).await
    }
    async fn list(&self, owner: &OwnerId) -> Result<Vec<Connection>, StoreError> {
        self.inner.list(owner).await
    }
    async fn rename(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        name: &str,
    ) -> Result<Connection, StoreError> {
        self.inner.rename(owner, id, name).await
    }
    async fn set_status(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        status: ConnectionStatus,
    ) -> Result<Connection, StoreError> {
        self.inner.set_status(owner, id, status).await
    }
    async fn set_status_fenced(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        status: ConnectionStatus,
    ) -> Result<Connection, StoreError> {
        self.inner
            .set_status_fenced(owner, id, holder, status)
            .await
    }
    async fn record_sync(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        at: OffsetDateTime,
    ) -> Result<Connection, StoreError> {
        self.inner.record_sync(owner, id, holder, at).await
    }
    async fn record_failure(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        at: OffsetDateTime,
        backoff: &Backoff,
    ) -> Result<Connection, StoreError> {
        self.inner
            .record_failure(owner, id, holder, at, backoff)
            .await
    }
    async fn load_token(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
    ) -> Result<StoredToken, StoreError> {
        self.inner.load_token(owner, id).await
    }
    async fn replace_token(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        expected: TokenVersion,
        token: SecretString,
    ) -> Result<TokenVersion, StoreError> {
        self.inner.replace_token(owner, id, expected, token).await
    }
    async fn reconnect(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        grant: Reconnect,
    ) -> Result<(Connection, TokenVersion), StoreError> {
        self.inner.reconnect(owner, id, grant).await
    }
    async fn load_cursor(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        key: &CursorKey,
    ) -> Result<Option<SecretString>, StoreError> {
        self.inner.load_cursor(owner, id, key).await
    }
    async fn save_cursor(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        key: &CursorKey,
        cursor: SecretString,
    ) -> Result<(), StoreError> {
        self.inner.save_cursor(owner, id, holder, key, cursor).await
    }
    async fn clear_cursor(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        key: &CursorKey,
    ) -> Result<(), StoreError> {
        self.inner.clear_cursor(owner, id, key).await
    }
    async fn delete(&self, owner: &OwnerId, id: ConnectionId) -> Result<(), StoreError> {
        self.inner.delete(owner, id).await
    }
    async fn acquire_lease(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        self.inner.acquire_lease(owner, id, holder, ttl).await
    }
    async fn renew_lease(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        self.renewals.fetch_add(1, Ordering::SeqCst);
        if self.stall_renewals.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        let failing = self
            .failing_renewals
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if failing.is_ok() {
            return Err(StoreError::backend(
                "renew_lease",
                std::io::Error::other("a database hiccup"),
            ));
        }
        self.inner.renew_lease(owner, id, holder, ttl).await
    }
    async fn release_lease(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
    ) -> Result<(), StoreError> {
        self.inner.release_lease(owner, id, holder).await
    }
    async fn claim_due(
        &self,
        limit: usize,
        holder: &LeaseHolder,
        ttl: Duration,
        interval: Duration,
    ) -> Result<Claims, StoreError> {
        let hook = self
            .before_claim
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(hook) = hook {
            hook().await;
        }
        self.inner.claim_due(limit, holder, ttl, interval).await
    }
}
