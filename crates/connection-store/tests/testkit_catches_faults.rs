//! The test kit fails on stores that break a rule: it is not a kit that cannot fail.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connection_store::testkit::{self, DynStore};
use connection_store::{
    Clock, Connection, ConnectionId, ConnectionStatus, ConnectionStore, CursorKey, Lease,
    LeaseHolder, ManualClock, MemoryStore, NewConnection, OwnerId, Reconnect, SecretString,
    StoreError, StoredToken, TokenVersion, async_trait,
};
use time::OffsetDateTime;

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// `get` finds another owner's connection.
    GetIgnoresOwner,
    /// `replace_token` writes whatever the version.
    BlindReplace,
    /// `acquire_lease` always grants.
    LeaseNotExclusive,
    /// `acquire_lease` never lets an expired lease go.
    LeaseNeverExpires,
}

struct Faulty {
    inner: MemoryStore,
    clock: Arc<dyn Clock>,
    fault: Fault,
    owners: Mutex<HashMap<ConnectionId, OwnerId>>,
}

#[async_trait]
impl ConnectionStore for Faulty {
    async fn create(&self, owner: &OwnerId, new: NewConnection) -> Result<Connection, StoreError> {
        let created = self.inner.create(owner, new).await?;
        self.owners
            .lock()
            .unwrap()
            .insert(created.id, owner.clone());
        Ok(created)
    }
    async fn get(&self, owner: &OwnerId, id: ConnectionId) -> Result<Connection, StoreError> {
        if self.fault == Fault::GetIgnoresOwner {
            let real = self.owners.lock().unwrap().get(&id).cloned();
            if let Some(real) = real {
                return self.inner.get(&real, id).await;
            }
        }
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
    async fn record_sync(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        at: OffsetDateTime,
    ) -> Result<Connection, StoreError> {
        self.inner.record_sync(owner, id, at).await
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
        if self.fault == Fault::BlindReplace {
            // Last writer wins: retry on the current version until the write lands.
            loop {
                let current = self.inner.load_token(owner, id).await?.version;
                match self
                    .inner
                    .replace_token(owner, id, current, token.clone())
                    .await
                {
                    Ok(_) => return Ok(expected.next()),
                    Err(StoreError::Conflict { .. }) => {}
                    Err(err) => return Err(err),
                }
            }
        }
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
        key: &CursorKey,
        cursor: SecretString,
    ) -> Result<(), StoreError> {
        self.inner.save_cursor(owner, id, key, cursor).await
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
        match self.fault {
            Fault::LeaseNotExclusive => {
                self.inner.get(owner, id).await?;
                Ok(Some(Lease {
                    id,
                    holder: holder.clone(),
                    expires_at: Lease::expiry(self.clock.now(), ttl)?,
                }))
            }
            Fault::LeaseNeverExpires => {
                // Pretend every lease lasts a year.
                let granted = self
                    .inner
                    .acquire_lease(owner, id, holder, Duration::from_secs(364 * 86_400))
                    .await?;
                Ok(granted.map(|lease| Lease {
                    expires_at: Lease::expiry(self.clock.now(), ttl).unwrap_or(lease.expires_at),
                    ..lease
                }))
            }
            _ => self.inner.acquire_lease(owner, id, holder, ttl).await,
        }
    }
    async fn renew_lease(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
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
}

fn faulty(fault: Fault) -> (DynStore, ManualClock) {
    let clock = ManualClock::default();
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let store = Faulty {
        inner: MemoryStore::with_clock(shared.clone()),
        clock: shared,
        fault,
        owners: Mutex::new(HashMap::new()),
    };
    (Arc::new(store), clock)
}

/// Runs a check in a task and returns whether it panicked.
async fn fails<Fut: Future<Output = ()> + Send + 'static>(check: Fut) -> bool {
    tokio::spawn(check).await.is_err_and(|err| err.is_panic())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn testkit_fails_a_store_whose_get_ignores_the_owner() {
    let (store, clock) = faulty(Fault::GetIgnoresOwner);
    assert!(fails(testkit::owner_isolation_on_every_method(store, clock)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn testkit_fails_a_store_whose_replace_is_not_compare_and_swap() {
    let (store, clock) = faulty(Fault::BlindReplace);
    assert!(
        fails(testkit::replace_token_race_has_exactly_one_winner(
            store, clock
        ))
        .await
    );
    let (store, clock) = faulty(Fault::BlindReplace);
    assert!(fails(testkit::replace_token_is_compare_and_swap(store, clock)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn testkit_fails_a_store_whose_lease_is_not_exclusive() {
    let (store, clock) = faulty(Fault::LeaseNotExclusive);
    assert!(fails(testkit::lease_race_has_exactly_one_holder(store, clock)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn testkit_fails_a_store_whose_leases_never_expire() {
    let (store, clock) = faulty(Fault::LeaseNeverExpires);
    assert!(fails(testkit::expired_lease_can_be_taken_over(store, clock)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn testkit_passes_the_same_wrapper_without_a_fault() {
    for check in 0..4 {
        let (store, clock) = faulty(match check {
            0 => Fault::GetIgnoresOwner,
            1 => Fault::BlindReplace,
            2 => Fault::LeaseNotExclusive,
            _ => Fault::LeaseNeverExpires,
        });
        // Each fault only touches its own method; the other rules still pass.
        let passed = match check {
            0 => {
                !fails(testkit::replace_token_race_has_exactly_one_winner(
                    store, clock,
                ))
                .await
            }
            1 => !fails(testkit::owner_isolation_on_every_method(store, clock)).await,
            2 => {
                !fails(testkit::cursors_are_kept_per_connection_and_key(
                    store, clock,
                ))
                .await
            }
            _ => !fails(testkit::replace_token_is_compare_and_swap(store, clock)).await,
        };
        assert!(passed, "check {check}");
    }
}
