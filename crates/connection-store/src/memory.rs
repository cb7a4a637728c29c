//! `MemoryStore`: the reference backend, for tests and single-process demos.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;
use time::OffsetDateTime;

use crate::clock::{Clock, SystemClock};
use crate::error::StoreError;
use crate::model::{
    Backoff, Claim, Claims, Connection, ConnectionId, ConnectionName, ConnectionStatus, CursorKey,
    Lease, LeaseHolder, NewConnection, OwnerId, Reconnect, StoredToken, TokenVersion,
};
use crate::store::ConnectionStore;

/// A [`ConnectionStore`] in memory: nothing survives the process. Clones share the same
/// data.
#[derive(Clone, Debug)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<ConnectionId, Entry>,
    next_sequence: u64,
}

#[derive(Debug)]
struct Entry {
    connection: Connection,
    sequence: u64,
    token: SecretString,
    version: TokenVersion,
    cursors: HashMap<CursorKey, SecretString>,
    lease: Option<(LeaseHolder, OffsetDateTime)>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty store on the given clock (e.g. a [`ManualClock`](crate::ManualClock)).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner::default())),
            clock,
        }
    }

    // Every critical section is short and never awaits, so a std mutex is right; a
    // poisoned lock only means a panic elsewhere, the data itself stays consistent
    // because each method validates before it mutates.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn entry_mut(&mut self, owner: &OwnerId, id: ConnectionId) -> Result<&mut Entry, StoreError> {
        match self.entries.get_mut(&id) {
            Some(entry) if entry.connection.owner == *owner => Ok(entry),
            _ => Err(StoreError::NotFound { id }),
        }
    }

    fn name_holder(&self, owner: &OwnerId, folded: &str) -> Option<ConnectionId> {
        self.entries
            .values()
            .find(|e| e.connection.owner == *owner && e.connection.name.folded() == folded)
            .map(|e| e.connection.id)
    }
}

impl Entry {
    /// The fence of every write a sync makes: `holder` holds an unexpired lease.
    fn check_fence(&self, holder: &LeaseHolder, now: OffsetDateTime) -> Result<(), StoreError> {
        match &self.lease {
            Some((current, until)) if current == holder && *until > now => Ok(()),
            _ => Err(StoreError::LeaseLost {
                id: self.connection.id,
                holder: holder.clone(),
            }),
        }
    }

    fn lease_free(&self, now: OffsetDateTime) -> bool {
        self.lease.as_ref().is_none_or(|(_, until)| *until <= now)
    }
}

fn touch(connection: &mut Connection, now: OffsetDateTime) {
    connection.updated_at = now;
    connection.revision += 1;
}

#[async_trait]
impl ConnectionStore for MemoryStore {
    async fn create(&self, owner: &OwnerId, new: NewConnection) -> Result<Connection, StoreError> {
        let name = ConnectionName::parse(&new.name)?;
        let now = self.clock.now();
        let mut inner = self.lock();
        if let Some(existing) = inner
            .entries
            .values()
            .find(|e| e.connection.owner == *owner && e.connection.tenant == new.tenant)
        {
            return Err(StoreError::TenantAlreadyConnected {
                tenant: new.tenant,
                existing: existing.connection.id,
            });
        }
        if let Some(existing) = inner.name_holder(owner, &name.folded()) {
            return Err(StoreError::NameTaken {
                name: name.into(),
                existing,
            });
        }
        let connection = Connection {
            id: ConnectionId::new(),
            owner: owner.clone(),
            name,
            tenant: new.tenant,
            cloud: new.cloud,
            admin: new.admin,
            scopes: new.scopes,
            status: ConnectionStatus::Active,
            created_at: now,
            updated_at: now,
            last_synced_at: None,
            failures: 0,
            retry_at: None,
            revision: 1,
        };
        let sequence = inner.next_sequence;
        inner.next_sequence += 1;
        inner.entries.insert(
            connection.id,
            Entry {
                connection: connection.clone(),
                sequence,
                token: new.refresh_token,
                version: TokenVersion::FIRST,
                cursors: HashMap::new(),
                lease: None,
            },
        );
        Ok(connection)
    }

    async fn get(&self, owner: &OwnerId, id: ConnectionId) -> Result<Connection, StoreError> {
        Ok(self.lock().entry_mut(owner, id)?.connection.clone())
    }

    async fn list(&self, owner: &OwnerId) -> Result<Vec<Connection>, StoreError> {
        let inner = self.lock();
        let mut entries: Vec<&Entry> = inner
            .entries
            .values()
            .filter(|e| e.connection.owner == *owner)
            .collect();
        entries.sort_by_key(|e| (e.connection.created_at, e.sequence));
        Ok(entries.into_iter().map(|e| e.connection.clone()).collect())
    }

    async fn rename(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        name: &str,
    ) -> Result<Connection, StoreError> {
        let name = ConnectionName::parse(name)?;
        let now = self.clock.now();
        let mut inner = self.lock();
        inner.entry_mut(owner, id)?;
        if let Some(existing) = inner.name_holder(owner, &name.folded())
            && existing != id
        {
            return Err(StoreError::NameTaken {
                name: name.into(),
                existing,
            });
        }
        let entry = inner.entry_mut(owner, id)?;
        entry.connection.name = name;
        touch(&mut entry.connection, now);
        Ok(entry.connection.clone())
    }

    async fn set_status(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        status: ConnectionStatus,
    ) -> Result<Connection, StoreError> {
        status.validate()?;
        let now = self.clock.now();
        let mut inner = self.lock();
        let entry = inner.entry_mut(owner, id)?;
        entry.connection.status = status;
        touch(&mut entry.connection, now);
        Ok(entry.connection.clone())
    }

    async fn set_status_fenced(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        status: ConnectionStatus,
    ) -> Result<Connection, StoreError> {
        status.validate()?;
        let now = self.clock.now();
        let mut inner = self.lock();
        let entry = inner.entry_mut(owner, id)?;
        entry.check_fence(holder, now)?;
        entry.connection.status = status;
        touch(&mut entry.connection, now);
        Ok(entry.connection.clone())
    }

    async fn record_sync(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        at: OffsetDateTime,
    ) -> Result<Connection, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let entry = inner.entry_mut(owner, id)?;
        entry.check_fence(holder, now)?;
        entry.connection.last_synced_at = Some(at);
        entry.connection.failures = 0;
        entry.connection.retry_at = None;
        touch(&mut entry.connection, now);
        Ok(entry.connection.clone())
    }

    async fn record_failure(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        at: OffsetDateTime,
        backoff: &Backoff,
    ) -> Result<Connection, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let entry = inner.entry_mut(owner, id)?;
        entry.check_fence(holder, now)?;
        // Any delay is at most `max`: refuse a backoff whose retry time could overflow,
        // whatever the count, as the SQL stores do.
        let out_of_range = || StoreError::invalid_input("a retry time is out of range");
        time::Duration::try_from(backoff.max)
            .ok()
            .and_then(|max| at.checked_add(max))
            .ok_or_else(out_of_range)?;
        let failures = entry.connection.failures.saturating_add(1);
        let retry_at = time::Duration::try_from(backoff.delay(failures))
            .ok()
            .and_then(|delay| at.checked_add(delay))
            .ok_or_else(out_of_range)?;
        entry.connection.failures = failures;
        entry.connection.retry_at = Some(retry_at);
        touch(&mut entry.connection, now);
        Ok(entry.connection.clone())
    }

    async fn load_token(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
    ) -> Result<StoredToken, StoreError> {
        let mut inner = self.lock();
        let entry = inner.entry_mut(owner, id)?;
        Ok(StoredToken {
            token: entry.token.clone(),
            version: entry.version,
        })
    }

    async fn replace_token(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        expected: TokenVersion,
        token: SecretString,
    ) -> Result<TokenVersion, StoreError> {
        let mut inner = self.lock();
        let entry = inner.entry_mut(owner, id)?;
        if entry.version != expected {
            return Err(StoreError::Conflict {
                expected,
                current: entry.version,
            });
        }
        entry.token = token;
        entry.version = expected.next();
        Ok(entry.version)
    }

    async fn reconnect(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        grant: Reconnect,
    ) -> Result<(Connection, TokenVersion), StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let entry = inner.entry_mut(owner, id)?;
        if entry.connection.tenant != grant.tenant {
            return Err(StoreError::invalid_input(
                "the sign-in is for another tenant than the connection's",
            ));
        }
        entry.connection.admin = grant.admin;
        entry.connection.scopes = grant.scopes;
        // Active: the reason and the claims of a "reconnect needed" go with it.
        entry.connection.status = ConnectionStatus::Active;
        entry.connection.failures = 0;
        entry.connection.retry_at = None;
        touch(&mut entry.connection, now);
        entry.token = grant.refresh_token;
        entry.version = entry.version.next();
        Ok((entry.connection.clone(), entry.version))
    }

    async fn load_cursor(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        key: &CursorKey,
    ) -> Result<Option<SecretString>, StoreError> {
        Ok(self.lock().entry_mut(owner, id)?.cursors.get(key).cloned())
    }

    async fn save_cursor(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        key: &CursorKey,
        cursor: SecretString,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let entry = inner.entry_mut(owner, id)?;
        entry.check_fence(holder, now)?;
        entry.cursors.insert(key.clone(), cursor);
        Ok(())
    }

    async fn clear_cursor(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        key: &CursorKey,
    ) -> Result<(), StoreError> {
        self.lock().entry_mut(owner, id)?.cursors.remove(key);
        Ok(())
    }

    async fn delete(&self, owner: &OwnerId, id: ConnectionId) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.entry_mut(owner, id)?;
        inner.entries.remove(&id);
        Ok(())
    }

    async fn acquire_lease(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let now = self.clock.now();
        let expires_at = Lease::expiry(now, ttl)?;
        let mut inner = self.lock();
        let entry = inner.entry_mut(owner, id)?;
        let free = entry.lease_free(now)
            || entry
                .lease
                .as_ref()
                .is_some_and(|(current, _)| current == holder);
        if !free {
            return Ok(None);
        }
        entry.lease = Some((holder.clone(), expires_at));
        Ok(Some(Lease {
            id,
            holder: holder.clone(),
            expires_at,
        }))
    }

    async fn renew_lease(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let now = self.clock.now();
        let expires_at = Lease::expiry(now, ttl)?;
        let mut inner = self.lock();
        let entry = inner.entry_mut(owner, id)?;
        match &mut entry.lease {
            Some((current, until)) if current == holder => {
                *until = expires_at;
                Ok(Lease {
                    id,
                    holder: holder.clone(),
                    expires_at,
                })
            }
            _ => Err(StoreError::LeaseLost {
                id,
                holder: holder.clone(),
            }),
        }
    }

    async fn release_lease(
        &self,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let entry = inner.entry_mut(owner, id)?;
        if entry
            .lease
            .as_ref()
            .is_some_and(|(current, _)| current == holder)
        {
            entry.lease = None;
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
        let now = self.clock.now();
        let expires_at = Lease::expiry(now, ttl)?;
        let mut inner = self.lock();
        // One critical section: the choice and the leases are one atomic step.
        let mut due: Vec<(OffsetDateTime, ConnectionId)> = inner
            .entries
            .values()
            .filter(|e| {
                e.connection.status == ConnectionStatus::Active
                    && e.connection.due_at(interval) <= now
                    && e.lease_free(now)
            })
            .map(|e| (e.connection.due_at(interval), e.connection.id))
            .collect();
        due.sort_unstable();
        due.truncate(limit);
        let mut claims = Vec::with_capacity(due.len());
        for (_, id) in due {
            if let Some(entry) = inner.entries.get_mut(&id) {
                entry.lease = Some((holder.clone(), expires_at));
                claims.push(Claim::new(
                    entry.connection.clone(),
                    Lease {
                        id,
                        holder: holder.clone(),
                        expires_at,
                    },
                ));
            }
        }
        // Records in memory are always readable: nothing is ever corrupt.
        Ok(Claims::new(claims))
    }
}
