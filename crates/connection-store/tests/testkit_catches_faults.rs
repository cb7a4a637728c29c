//! The test kit fails on stores that break a rule: it is not a kit that cannot fail.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connection_store::testkit::{self, DynStore};
use connection_store::{
    Backoff, Claim, Claims, Clock, Connection, ConnectionId, ConnectionStatus, ConnectionStore,
    CursorKey, Lease, LeaseHolder, ManualClock, MemoryStore, NewConnection, OwnerId, Reconnect,
    SecretString, StoreError, StoredToken, TokenVersion, async_trait,
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
    /// `claim_due` hands a connection another holder claimed out once more.
    ClaimIgnoresLease,
    /// Fenced writes land whoever holds the lease (as the last known holder).
    UnfencedWrites,
    /// `set_status_fenced` writes as `set_status` does, without the fence.
    UnfencedStatus,
    /// Status writes lose the claims of a "reconnect needed".
    DroppedClaims,
    /// A "reconnect needed" without claims gets the last claims written, even after a
    /// reconnect (as `SET status_claims = COALESCE($n, status_claims)` would).
    StickyClaims,
    /// Claims a store must refuse are accepted (and dropped).
    UncheckedClaims,
}

struct Faulty {
    inner: MemoryStore,
    clock: Arc<dyn Clock>,
    fault: Fault,
    owners: Mutex<HashMap<ConnectionId, OwnerId>>,
    /// Claims handed out, not yet handed out twice (`ClaimIgnoresLease`).
    claimed: Mutex<Vec<Claim>>,
    /// The last holder given each connection's lease (`UnfencedWrites`).
    holders: Mutex<HashMap<ConnectionId, LeaseHolder>>,
    /// The last claims written per connection (`StickyClaims`).
    claims: Mutex<HashMap<ConnectionId, String>>,
}

/// `status` with its claims, if it is a "reconnect needed", replaced by `claims`.
fn with_claims(status: ConnectionStatus, claims: Option<String>) -> ConnectionStatus {
    match status {
        ConnectionStatus::NeedsReconnect { reason, since, .. } => {
            ConnectionStatus::NeedsReconnect {
                reason,
                since,
                claims,
            }
        }
        other => other,
    }
}

impl Faulty {
    /// The status a status write stores, after this store's claims fault.
    fn status_written(&self, id: ConnectionId, status: ConnectionStatus) -> ConnectionStatus {
        let ConnectionStatus::NeedsReconnect { claims, .. } = &status else {
            return status;
        };
        match self.fault {
            Fault::DroppedClaims => with_claims(status, None),
            Fault::UncheckedClaims if status.validate().is_err() => with_claims(status, None),
            Fault::StickyClaims => {
                let mut remembered = self.claims.lock().unwrap();
                if let Some(claims) = claims {
                    remembered.insert(id, claims.clone());
                    status
                } else {
                    let old = remembered.get(&id).cloned();
                    with_claims(status, old)
                }
            }
            _ => status,
        }
    }

    /// The holder a fenced write runs as: the caller, or with `UnfencedWrites` whoever
    /// last got the lease, its lease renewed (or the caller's taken) so the write lands.
    async fn writer(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
    ) -> Result<LeaseHolder, StoreError> {
        if self.fault != Fault::UnfencedWrites {
            return Ok(holder.clone());
        }
        let hour = Duration::from_secs(3600);
        let last = self.holders.lock().unwrap().get(&id).cloned();
        if let Some(last) = last
            && self.inner.renew_lease(owner, id, &last, hour).await.is_ok()
        {
            return Ok(last);
        }
        self.inner.acquire_lease(owner, id, holder, hour).await?;
        Ok(holder.clone())
    }
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
        let status = self.status_written(id, status);
        self.inner.set_status(owner, id, status).await
    }
    async fn set_status_fenced(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        status: ConnectionStatus,
    ) -> Result<Connection, StoreError> {
        let status = self.status_written(id, status);
        if self.fault == Fault::UnfencedStatus {
            return self.inner.set_status(owner, id, status).await;
        }
        let writer = self.writer(owner, id, holder).await?;
        self.inner
            .set_status_fenced(owner, id, &writer, status)
            .await
    }
    async fn record_sync(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        at: OffsetDateTime,
    ) -> Result<Connection, StoreError> {
        let writer = self.writer(owner, id, holder).await?;
        self.inner.record_sync(owner, id, &writer, at).await
    }
    async fn record_failure(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        at: OffsetDateTime,
        backoff: &Backoff,
    ) -> Result<Connection, StoreError> {
        let writer = self.writer(owner, id, holder).await?;
        self.inner
            .record_failure(owner, id, &writer, at, backoff)
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
        holder: &LeaseHolder,
        key: &CursorKey,
        cursor: SecretString,
    ) -> Result<(), StoreError> {
        let writer = self.writer(owner, id, holder).await?;
        self.inner
            .save_cursor(owner, id, &writer, key, cursor)
            .await
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
            _ => {
                let granted = self.inner.acquire_lease(owner, id, holder, ttl).await?;
                if granted.is_some() {
                    self.holders.lock().unwrap().insert(id, holder.clone());
                }
                Ok(granted)
            }
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
    async fn claim_due(
        &self,
        limit: usize,
        holder: &LeaseHolder,
        ttl: Duration,
        interval: Duration,
    ) -> Result<Claims, StoreError> {
        let mut batch = self.inner.claim_due(limit, holder, ttl, interval).await?;
        let claims = &mut batch.claims;
        let mut holders = self.holders.lock().unwrap();
        for claim in claims.iter() {
            holders.insert(claim.connection.id, holder.clone());
        }
        drop(holders);
        let mut claimed = self.claimed.lock().unwrap();
        if self.fault == Fault::ClaimIgnoresLease
            && claims.len() < limit
            && let Some(at) = claimed.iter().position(|c| c.lease.holder != *holder)
        {
            let again = claimed.remove(at);
            let lease = Lease {
                holder: holder.clone(),
                ..again.lease
            };
            claims.push(Claim::new(again.connection, lease));
        }
        claimed.extend(claims.iter().filter(|c| c.lease.holder == *holder).cloned());
        Ok(batch)
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
        claimed: Mutex::new(Vec::new()),
        holders: Mutex::new(HashMap::new()),
        claims: Mutex::new(HashMap::new()),
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
async fn testkit_fails_a_store_that_claims_a_connection_twice() {
    let (store, clock) = faulty(Fault::ClaimIgnoresLease);
    assert!(
        fails(testkit::claim_race_claims_each_due_connection_exactly_once(
            store, clock
        ))
        .await
    );
    let (store, clock) = faulty(Fault::ClaimIgnoresLease);
    assert!(
        fails(
            testkit::claimed_connection_is_claimable_again_only_after_its_lease_expires(
                store, clock
            )
        )
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn testkit_fails_a_store_whose_sync_writes_ignore_the_fence() {
    let (store, clock) = faulty(Fault::UnfencedWrites);
    assert!(
        fails(testkit::fenced_writes_fail_with_lease_lost_after_expiry_or_takeover(store, clock))
            .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn testkit_fails_a_store_whose_status_write_ignores_the_fence() {
    let (store, clock) = faulty(Fault::UnfencedStatus);
    assert!(
        fails(testkit::fenced_writes_fail_with_lease_lost_after_expiry_or_takeover(store, clock))
            .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn testkit_fails_a_store_that_loses_the_reconnect_claims() {
    let (store, clock) = faulty(Fault::DroppedClaims);
    assert!(
        fails(testkit::reconnect_claims_round_trip_and_reconnect_clears_them(store, clock)).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn testkit_fails_a_store_whose_claims_outlive_a_write_without_them_or_a_reconnect() {
    let (store, clock) = faulty(Fault::StickyClaims);
    assert!(
        fails(testkit::reconnect_claims_round_trip_and_reconnect_clears_them(store, clock)).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn testkit_fails_a_store_that_accepts_oversized_or_invalid_claims() {
    let (store, clock) = faulty(Fault::UncheckedClaims);
    assert!(
        fails(testkit::invalid_reconnect_claims_are_refused_and_write_nothing(store, clock)).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn testkit_passes_the_same_wrapper_without_a_fault() {
    for check in 0..10 {
        let (store, clock) = faulty(match check {
            0 => Fault::GetIgnoresOwner,
            1 => Fault::BlindReplace,
            2 => Fault::LeaseNotExclusive,
            3 => Fault::LeaseNeverExpires,
            4 => Fault::ClaimIgnoresLease,
            5 => Fault::UnfencedWrites,
            6 => Fault::UnfencedStatus,
            7 => Fault::DroppedClaims,
            8 => Fault::StickyClaims,
            _ => Fault::UncheckedClaims,
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
            // Its leases are fake, so no check of fenced writes.
            2 => {
                !fails(testkit::names_are_unique_per_owner_ignoring_case(
                    store, clock,
                ))
                .await
            }
            3 => !fails(testkit::replace_token_is_compare_and_swap(store, clock)).await,
            // Claims by one holder only: nothing another holder claimed to hand out again.
            4 => {
                !fails(testkit::failure_backoff_grows_and_resets_on_success(
                    store, clock,
                ))
                .await
            }
            5 => {
                !fails(testkit::claim_race_claims_each_due_connection_exactly_once(
                    store, clock,
                ))
                .await
            }
            // Only the fenced status write is broken: the unfenced one still works. And
            // statuses without claims are written as given despite the claims faults.
            6..=8 => {
                !fails(testkit::status_and_sync_time_update_the_record(
                    store, clock,
                ))
                .await
            }
            // Valid claims are kept as written.
            _ => {
                !fails(testkit::reconnect_claims_round_trip_and_reconnect_clears_them(store, clock))
                    .await
            }
        };
        assert!(passed, "check {check}");
    }
}
