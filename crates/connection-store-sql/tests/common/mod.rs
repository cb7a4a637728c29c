//! Helpers shared by the integration tests.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use connection_store::testkit::{RACERS, sample_connection, unique_owner};
use connection_store::{
    Clock, ConnectionId, ConnectionStore, LeaseHolder, ManualClock, OwnerId, SecretString,
    StoreError, TokenVersion,
};
use connection_store_sql::{EncryptionKey, KeyId, KeyRing, SqlStore};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let path =
            std::env::temp_dir().join(format!("connection-store-sql-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn key(id: &str, byte: u8) -> (KeyId, EncryptionKey) {
    (
        KeyId::new(id).expect("key id"),
        EncryptionKey::from_bytes([byte; 32]),
    )
}

pub fn ring() -> KeyRing {
    let (id, key) = key("test-1", 7);
    KeyRing::new(id, key)
}

pub async fn open_sqlite(path: &Path, keys: KeyRing, clock: Arc<dyn Clock>) -> SqlStore {
    SqlStore::sqlite(path)
        .key_ring(keys)
        .clock(clock)
        .max_connections(4)
        .open()
        .await
        .expect("open sqlite store")
}

pub async fn raw_sqlite(path: &Path) -> sqlx::SqlitePool {
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(path)
                .busy_timeout(Duration::from_secs(10)),
        )
        .await
        .expect("raw sqlite pool")
}

pub fn secret(value: &str) -> SecretString {
    SecretString::from(value.to_owned())
}

/// Creates a connection in `store` and returns (owner, id).
pub async fn seeded(store: &SqlStore, token: &str) -> (OwnerId, ConnectionId) {
    let owner = unique_owner("owner");
    let tenant = ConnectionId::new().to_string();
    let connection = store
        .create(&owner, sample_connection("seeded", &tenant, token))
        .await
        .expect("create");
    (owner, connection.id)
}

/// [`RACERS`] tasks spread over `stores` (separate pools on one database) replace the
/// same token version: exactly one must win.
pub async fn race_replace_token_across(stores: &[SqlStore]) {
    let (owner, id) = seeded(&stores[0], "rt-1").await;
    let barrier = Arc::new(Barrier::new(RACERS));
    let mut tasks = JoinSet::new();
    for racer in 0..RACERS {
        let store = stores[racer % stores.len()].clone();
        let (owner, barrier) = (owner.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            let result = store
                .replace_token(
                    &owner,
                    id,
                    TokenVersion::FIRST,
                    secret(&format!("rt-{racer}")),
                )
                .await;
            (racer, result)
        });
    }
    let mut winners = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task") {
            (racer, Ok(version)) => {
                assert_eq!(version, TokenVersion::new(2));
                winners.push(racer);
            }
            (_, Err(StoreError::Conflict { current, .. })) => {
                assert_eq!(current, TokenVersion::new(2));
            }
            (racer, Err(err)) => panic!("racer {racer}: {err:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners {winners:?}");
    for store in stores {
        let loaded = store.load_token(&owner, id).await.expect("load");
        assert_eq!(loaded.version, TokenVersion::new(2));
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&loaded.token),
            format!("rt-{}", winners[0])
        );
    }
}

/// [`RACERS`] holders spread over `stores` race for one lease: exactly one gets it.
pub async fn race_lease_across(stores: &[SqlStore]) {
    let (owner, id) = seeded(&stores[0], "rt-1").await;
    let barrier = Arc::new(Barrier::new(RACERS));
    let mut tasks = JoinSet::new();
    for racer in 0..RACERS {
        let store = stores[racer % stores.len()].clone();
        let (owner, barrier) = (owner.clone(), barrier.clone());
        tasks.spawn(async move {
            let me = LeaseHolder::new(format!("replica-{racer}")).expect("holder");
            barrier.wait().await;
            store
                .acquire_lease(&owner, id, &me, Duration::from_secs(60))
                .await
        });
    }
    let mut granted = 0;
    while let Some(joined) = tasks.join_next().await {
        if joined.expect("task").expect("acquire").is_some() {
            granted += 1;
        }
    }
    assert_eq!(granted, 1);
}

/// Takes (or extends) the sync lease of the tests' writer for an hour: cursor writes are
/// fenced by it.
pub async fn writer_lease(store: &SqlStore, owner: &OwnerId, id: ConnectionId) -> LeaseHolder {
    let writer = LeaseHolder::new("test-writer").expect("holder");
    store
        .acquire_lease(owner, id, &writer, Duration::from_secs(3600))
        .await
        .expect("acquire_lease")
        .expect("the writer's lease is free");
    writer
}

/// [`RACERS`] claimers spread over `stores` (separate pools on one database, which has no
/// other due connections) loop `claim_due(7)` until nothing is due: each of `count` new
/// connections is claimed exactly once.
pub async fn race_claims_across(stores: &[SqlStore], count: usize) {
    let owner = unique_owner("owner");
    let mut ids = std::collections::HashSet::new();
    for i in 0..count {
        let tenant = ConnectionId::new().to_string();
        let created = stores[0]
            .create(
                &owner,
                sample_connection(&format!("due {i}"), &tenant, "rt"),
            )
            .await
            .expect("create");
        ids.insert(created.id);
    }
    let barrier = Arc::new(Barrier::new(RACERS));
    let mut tasks = JoinSet::new();
    for racer in 0..RACERS {
        let store = stores[racer % stores.len()].clone();
        let barrier = barrier.clone();
        tasks.spawn(async move {
            let me = LeaseHolder::new(format!("claimer-{racer}")).expect("holder");
            barrier.wait().await;
            let mut claimed = Vec::new();
            loop {
                let batch = store
                    .claim_due(7, &me, Duration::from_secs(300), Duration::from_secs(3600))
                    .await
                    .expect("claim_due");
                if batch.is_empty() {
                    return claimed;
                }
                claimed.extend(batch.into_iter().map(|c| c.connection.id));
            }
        });
    }
    let mut seen = std::collections::HashSet::new();
    while let Some(joined) = tasks.join_next().await {
        for id in joined.expect("claimer") {
            assert!(seen.insert(id), "{id} claimed twice");
        }
    }
    assert_eq!(seen, ids, "every due connection claimed once");
}

pub fn manual_clock() -> (ManualClock, Arc<dyn Clock>) {
    let clock = ManualClock::default();
    (clock.clone(), Arc::new(clock))
}

/// The oldest due connection of a batch cannot be read: `corrupt` breaks its `column` by
/// raw SQL. `claim_due` still hands out the healthy ones, reports the corrupt one naming
/// it and the column, frees its lease in the same call and defers it by a day (it is not
/// claimed again when the healthy leases expire), and leaves its record (and token) as
/// they were.
pub async fn claim_batch_with_a_corrupt_row<F, Fut>(
    store: &SqlStore,
    clock: &ManualClock,
    column: &str,
    corrupt: F,
) where
    F: FnOnce(ConnectionId) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let ttl = Duration::from_secs(300);
    let interval = Duration::from_secs(3600);
    let (bad_owner, bad) = seeded(store, "rt-bad").await;
    let mut healthy = Vec::new();
    for _ in 0..3 {
        clock.advance(Duration::from_secs(1));
        healthy.push(seeded(store, "rt-good").await);
    }
    corrupt(bad).await;
    let first = LeaseHolder::new("first").expect("holder");
    let batch = store
        .claim_due(10, &first, ttl, interval)
        .await
        .expect("one corrupt row does not fail the batch");
    let claimed: Vec<_> = batch.iter().map(|c| c.connection.id).collect();
    let want: Vec<_> = healthy.iter().map(|(_, id)| *id).collect();
    assert_eq!(
        claimed, want,
        "{column}: the healthy connections are claimed"
    );
    match batch.corrupt.as_slice() {
        [StoreError::Corrupt { id, what, .. }] => {
            assert_eq!((*id, what.as_str()), (Some(bad), column));
        }
        other => panic!("{column}: expected one Corrupt, got {other:?}"),
    }
    assert_eq!(batch.taken(), 4);

    // The healthy leases are the caller's; the corrupt row's was freed at once.
    let other = LeaseHolder::new("other").expect("holder");
    for (owner, id) in &healthy {
        assert!(
            store
                .acquire_lease(owner, *id, &other, ttl)
                .await
                .expect("acquire")
                .is_none(),
            "{column}: a healthy claim keeps its lease"
        );
    }
    assert!(
        store
            .acquire_lease(&bad_owner, bad, &other, ttl)
            .await
            .expect("acquire")
            .is_some(),
        "{column}: the corrupt row's lease is free"
    );
    store
        .release_lease(&bad_owner, bad, &other)
        .await
        .expect("release");

    // Deferred: not claimed again at once, nor when the healthy leases expire.
    let again = store
        .claim_due(10, &other, ttl, interval)
        .await
        .expect("claim again");
    assert!(again.is_empty() && again.corrupt.is_empty(), "{again:?}");
    clock.advance(ttl + Duration::from_secs(1));
    let after_ttl = store
        .claim_due(10, &other, ttl, interval)
        .await
        .expect("claim after ttl");
    let reclaimed: Vec<_> = after_ttl.iter().map(|c| c.connection.id).collect();
    assert_eq!(reclaimed, want, "{column}: the expired healthy leases");
    assert!(
        after_ttl.corrupt.is_empty(),
        "{column}: the corrupt row stays out of the due set: {after_ttl:?}"
    );

    // Nothing is lost: the record still reads as corrupt, the token is intact.
    assert!(matches!(
        store.get(&bad_owner, bad).await,
        Err(StoreError::Corrupt { id: Some(found), what, .. }) if found == bad && what == column
    ));
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(
            &store
                .load_token(&bad_owner, bad)
                .await
                .expect("token")
                .token
        ),
        "rt-bad"
    );

    // A day later it is due again, and reported again (never silently dropped).
    clock.advance(Duration::from_secs(24 * 3600));
    let next_day = store
        .claim_due(
            10,
            &LeaseHolder::new("later").expect("holder"),
            ttl,
            interval,
        )
        .await
        .expect("claim a day later");
    assert_eq!(next_day.len(), 3);
    assert!(
        matches!(next_day.corrupt.as_slice(), [StoreError::Corrupt { id: Some(found), .. }] if *found == bad),
        "{next_day:?}"
    );
}

/// The claims of a Continuous Access Evaluation challenge, decoded.
pub const CAE_CLAIMS: &str = r#"{"access_token":{"nbf":{"essential":true,"value":"1726058400"}}}"#;

/// A "reconnect needed" status carrying `claims`.
pub fn needs_reconnect(claims: Option<&str>) -> connection_store::ConnectionStatus {
    connection_store::ConnectionStatus::NeedsReconnect {
        reason: "AADSTS50173: the provided grant has expired".to_owned(),
        since: time::OffsetDateTime::UNIX_EPOCH,
        claims: claims.map(str::to_owned),
    }
}

/// Stored claims a store could not have written, put in a "reconnect needed" row's
/// `status_claims` by `corrupt` (raw SQL, binding the text): `get` and `list` answer
/// `Corrupt` naming `status_claims` and the connection, the token stays readable, and a
/// reconnect (which clears the claims) repairs the record.
pub async fn corrupt_claims_are_typed_errors<F, Fut>(store: &SqlStore, corrupt: F)
where
    F: Fn(ConnectionId, String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let max = connection_store::ConnectionStatus::MAX_CLAIMS_BYTES;
    for (what, value) in [
        ("one byte over 16 KiB", "a".repeat(max + 1)),
        ("over 16 KiB in bytes", "ü".repeat(max / 2) + "a"),
        ("empty", String::new()),
        ("a line break", "{\n}".to_owned()),
        ("a C1 control", "{\u{9b}}".to_owned()),
    ] {
        let owner = unique_owner("owner");
        let tenant = ConnectionId::new().to_string();
        let new = sample_connection("corrupt claims", &tenant, "rt");
        let admin = new.admin.clone();
        let id = store.create(&owner, new).await.expect("create").id;
        store
            .set_status(&owner, id, needs_reconnect(Some(CAE_CLAIMS)))
            .await
            .expect("set_status with claims");
        corrupt(id, value).await;
        for result in [
            store.get(&owner, id).await.map(|_| ()),
            store.list(&owner).await.map(|_| ()),
        ] {
            match result {
                Err(StoreError::Corrupt {
                    id: Some(found),
                    what: part,
                    ..
                }) => assert_eq!((found, part.as_str()), (id, "status_claims"), "{what}"),
                other => panic!("claims {what}: expected Corrupt, got {other:?}"),
            }
        }
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(
                &store.load_token(&owner, id).await.expect("token").token
            ),
            "rt",
            "claims {what}: the token is intact"
        );
        let (reconnected, _) = store
            .reconnect(
                &owner,
                id,
                connection_store::Reconnect {
                    tenant: connection_store::TenantId::new(tenant),
                    admin,
                    scopes: vec!["User.Read.All".to_owned()],
                    refresh_token: secret("rt-reconnected"),
                },
            )
            .await
            .expect("a reconnect repairs corrupt claims");
        assert_eq!(
            reconnected.status,
            connection_store::ConnectionStatus::Active
        );
        assert_eq!(
            store.get(&owner, id).await.expect("get after reconnect"),
            reconnected
        );
    }
}

/// Tasks replacing tokens while a `reencrypt` pass runs.
pub const REPLACERS: usize = 8;

/// The old ring (`test-1`), the rotated one (`test-2` current, `test-1` previous) and the
/// new one alone (`test-2`), for key-rotation tests.
pub fn rotation_rings() -> (KeyRing, KeyRing, KeyRing) {
    let old = ring();
    let (new_id, new_key) = key("test-2", 8);
    let (old_id, old_key) = key("test-1", 7);
    let rotated = KeyRing::builder(new_id, new_key)
        .previous(old_id, old_key)
        .build()
        .expect("rotated ring");
    let (new_id, new_key) = key("test-2", 8);
    (old, rotated, KeyRing::new(new_id, new_key))
}

/// The key id of every token of `owner`, read on the store's own pool.
pub async fn token_key_ids(store: &SqlStore, owner: &OwnerId) -> Vec<String> {
    const SQL: &str = "SELECT token_key_id FROM connections WHERE owner_id = $1";
    match store.pool() {
        connection_store_sql::SqlPool::Sqlite(pool) => sqlx::query_scalar(SQL)
            .bind(owner.as_str())
            .fetch_all(&pool)
            .await
            .expect("key ids"),
        connection_store_sql::SqlPool::Postgres(pool) => sqlx::query_scalar(SQL)
            .bind(owner.as_str())
            .fetch_all(&pool)
            .await
            .expect("key ids"),
        _ => panic!("unknown pool"),
    }
}

/// Connections written under the old key; then one `reencrypt` pass on `rotated[0]` and
/// [`REPLACERS`] tasks replacing tokens through `rotated` (all on the rotated ring; each
/// task owns its connections and walks them in the opposite order of the pass, so the two
/// meet: the pass rewrites rows nobody replaced yet and loses its swap on rows replaced
/// after it read them) run at once, the replacers until the pass has ended and two rounds
/// more. Each load a replacer makes returns the value and version it last wrote: the pass
/// changes neither. Afterwards `new_only` (the new key alone) reads every token as the
/// last value written, at version 1 + the replacements made; a stale version still
/// conflicts; every row is under `test-2`; a second pass has nothing to do.
#[expect(clippy::too_many_lines, reason = "one scenario: seed, race, verify")]
pub async fn reencrypt_during_token_replacements(
    old: &SqlStore,
    rotated: &[SqlStore],
    new_only: &SqlStore,
) {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    const CONNECTIONS: usize = 160;
    let owner = unique_owner("rotation");
    let mut ids = Vec::new();
    for i in 0..CONNECTIONS {
        let created = old
            .create(
                &owner,
                sample_connection(
                    &format!("rotation {i}"),
                    &ConnectionId::new().to_string(),
                    &format!("rt-{i}-0"),
                ),
            )
            .await
            .expect("create under the old key");
        ids.push(created.id);
    }
    assert!(
        token_key_ids(old, &owner)
            .await
            .iter()
            .all(|key| key == "test-1")
    );

    let started = Arc::new(Barrier::new(REPLACERS + 1));
    let reencrypting = Arc::new(AtomicBool::new(false));
    let reencrypted = Arc::new(AtomicBool::new(false));
    let during = Arc::new(AtomicUsize::new(0));
    let mut replacers = JoinSet::new();
    for replacer in 0..REPLACERS {
        let store = rotated[replacer % rotated.len()].clone();
        // Newest first: the pass reads the table in creation order.
        let mut mine: Vec<(usize, ConnectionId)> = ids
            .iter()
            .copied()
            .enumerate()
            .filter(|(i, _)| i % REPLACERS == replacer)
            .collect();
        mine.reverse();
        let (owner, started) = (owner.clone(), started.clone());
        let (reencrypting, reencrypted, during) =
            (reencrypting.clone(), reencrypted.clone(), during.clone());
        replacers.spawn(async move {
            // The last value and version written, per connection, with the count.
            let mut last: HashMap<ConnectionId, (String, TokenVersion, u64)> = mine
                .iter()
                .map(|(i, id)| (*id, (format!("rt-{i}-0"), TokenVersion::FIRST, 0)))
                .collect();
            started.wait().await;
            let mut extra_rounds = 0;
            for round in 1.. {
                if reencrypted.load(Ordering::SeqCst) {
                    extra_rounds += 1;
                    if extra_rounds > 2 {
                        break;
                    }
                }
                for (i, id) in &mine {
                    let current = store.load_token(&owner, *id).await.expect("load");
                    let Some(entry) = last.get_mut(id) else {
                        panic!("connection {i} is not this replacer's");
                    };
                    assert_eq!(
                        (
                            secrecy::ExposeSecret::expose_secret(&current.token),
                            current.version
                        ),
                        (entry.0.as_str(), entry.1),
                        "connection {i}: a load returns the last value and version written"
                    );
                    let value = format!("rt-{i}-{round}");
                    let got = store
                        .replace_token(&owner, *id, current.version, secret(&value))
                        .await
                        .unwrap_or_else(|err| {
                            panic!("replacer {replacer}, connection {i}: {err:?}")
                        });
                    assert_eq!(got, current.version.next(), "connection {i}");
                    if reencrypting.load(Ordering::SeqCst) && !reencrypted.load(Ordering::SeqCst) {
                        during.fetch_add(1, Ordering::SeqCst);
                    }
                    *entry = (value, got, entry.2 + 1);
                }
            }
            last
        });
    }
    started.wait().await;
    reencrypting.store(true, Ordering::SeqCst);
    let rewritten = rotated[0].reencrypt().await.expect("reencrypt");
    reencrypted.store(true, Ordering::SeqCst);
    let mut last = HashMap::new();
    while let Some(joined) = replacers.join_next().await {
        last.extend(joined.expect("replacer task"));
    }
    assert!(
        during.load(Ordering::SeqCst) > 0,
        "no replacement completed while the pass ran"
    );
    // Both meetings happened: rows the pass re-encrypted itself, rows a replacement had
    // moved to the new key first.
    assert!(
        rewritten > 0 && rewritten < CONNECTIONS as u64,
        "the pass rewrote {rewritten} of {CONNECTIONS}"
    );

    for (i, id) in ids.iter().enumerate() {
        let (value, version, replaced) = last
            .get(id)
            .unwrap_or_else(|| panic!("connection {i} was never replaced"));
        let token = new_only
            .load_token(&owner, *id)
            .await
            .unwrap_or_else(|err| panic!("connection {i} with the new key alone: {err:?}"));
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&token.token),
            value.as_str(),
            "connection {i}"
        );
        assert_eq!(token.version, *version, "connection {i}");
        assert_eq!(token.version.get(), 1 + replaced, "connection {i}");
        // A writer holding the first version still loses its compare-and-swap.
        match new_only
            .replace_token(&owner, *id, TokenVersion::FIRST, secret("stale"))
            .await
        {
            Err(StoreError::Conflict { current, .. }) => assert_eq!(current, *version),
            other => panic!("connection {i}: stale write gave {other:?}"),
        }
    }
    let keys = token_key_ids(new_only, &owner).await;
    assert_eq!(keys.len(), CONNECTIONS);
    assert!(keys.iter().all(|key| key == "test-2"), "{keys:?}");
    assert_eq!(
        rotated[0].reencrypt().await.expect("second pass"),
        0,
        "nothing left under the old key"
    );
}
