//! `SqlStore` on `SQLite`: the whole test kit, the file, two pools on one file, corrupt rows.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    CAE_CLAIMS, TempDir, claim_batch_with_a_corrupt_row, corrupt_claims_are_typed_errors,
    manual_clock, needs_reconnect, open_sqlite, raw_sqlite, ring, secret, seeded,
};
use connection_store::testkit::{self, sample_connection, unique_owner};
use connection_store::{
    Clock, ConnectionStore, ExposeSecret, StoreError, SystemClock, TokenVersion,
};
use connection_store_sql::{SCHEMA_VERSION, SqlStore, SqlStoreError};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_passes_the_whole_testkit() {
    let dir = TempDir::new();
    let dir_path = dir.path().to_owned();
    testkit::run(|clock| {
        let path = dir_path.join(format!("{}.db", uuid::Uuid::new_v4()));
        async move { open_sqlite(&path, ring(), Arc::new(clock)).await }
    })
    .await;
}

#[tokio::test]
async fn sqlite_file_is_created_owner_only_in_wal_mode() {
    let dir = TempDir::new();
    let path = dir.file("store.db");
    let store = open_sqlite(&path, ring(), Arc::new(SystemClock)).await;
    seeded(&store, "rt").await;
    let wal = dir.file("store.db-wal");
    assert!(wal.exists(), "wal file exists in WAL mode");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)
            .expect("db file")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "database file mode {mode:o}");
        let wal_mode = std::fs::metadata(&wal)
            .expect("wal file")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(wal_mode, 0o600, "wal file mode {wal_mode:o}");
    }
    let raw = raw_sqlite(&path).await;
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&raw)
        .await
        .expect("pragma");
    assert_eq!(journal, "wal");
}

#[tokio::test]
async fn sqlite_store_keeps_connections_tokens_and_cursors_across_reopen() {
    let dir = TempDir::new();
    let path = dir.file("store.db");
    let (owner, id, created) = {
        let store = open_sqlite(&path, ring(), Arc::new(SystemClock)).await;
        let owner = unique_owner("owner");
        let created = store
            .create(&owner, sample_connection("Contoso", "tenant-1", "rt-1"))
            .await
            .expect("create");
        store
            .replace_token(&owner, created.id, TokenVersion::FIRST, secret("rt-2"))
            .await
            .expect("replace");
        let writer = common::writer_lease(&store, &owner, created.id).await;
        store
            .save_cursor(
                &owner,
                created.id,
                &writer,
                &connection_store::CursorKey::users(),
                secret("delta"),
            )
            .await
            .expect("cursor");
        store.close().await;
        (owner, created.id, created)
    };
    let store = open_sqlite(&path, ring(), Arc::new(SystemClock)).await;
    assert_eq!(store.get(&owner, id).await.expect("get"), created);
    let token = store.load_token(&owner, id).await.expect("token");
    assert_eq!(
        (token.token.expose_secret(), token.version),
        ("rt-2", TokenVersion::new(2))
    );
    let cursor = store
        .load_cursor(&owner, id, &connection_store::CursorKey::users())
        .await
        .expect("cursor")
        .expect("present");
    assert_eq!(cursor.expose_secret(), "delta");
}

#[tokio::test]
async fn sqlite_records_schema_version_and_refuses_a_newer_schema() {
    let dir = TempDir::new();
    let path = dir.file("store.db");
    open_sqlite(&path, ring(), Arc::new(SystemClock))
        .await
        .close()
        .await;
    let raw = raw_sqlite(&path).await;
    let version: i64 = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(&raw)
        .await
        .expect("version");
    assert_eq!(version, SCHEMA_VERSION);
    sqlx::query("UPDATE schema_version SET version = $1")
        .bind(SCHEMA_VERSION + 1)
        .execute(&raw)
        .await
        .expect("bump");
    raw.close().await;
    let err = SqlStore::sqlite(&path)
        .key_ring(ring())
        .open()
        .await
        .expect_err("newer schema");
    assert!(
        matches!(err, SqlStoreError::SchemaTooNew { found, supported } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err:?}"
    );
}

#[tokio::test]
async fn sqlite_open_without_key_ring_or_in_missing_directory_fails_typed() {
    let dir = TempDir::new();
    let err = SqlStore::sqlite(dir.file("a.db"))
        .open()
        .await
        .expect_err("no keys");
    assert!(
        matches!(err, SqlStoreError::InvalidConfig { .. }),
        "{err:?}"
    );
    let err = SqlStore::sqlite(dir.file("missing/dir/a.db"))
        .key_ring(ring())
        .open()
        .await
        .expect_err("no dir");
    assert!(matches!(err, SqlStoreError::File { .. }), "{err:?}");
    assert!(
        !dir.file("a.db").exists(),
        "nothing created without a key ring"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_replace_token_race_across_two_pools_has_one_winner() {
    let dir = TempDir::new();
    let path = dir.file("store.db");
    let one = open_sqlite(&path, ring(), Arc::new(SystemClock)).await;
    let two = open_sqlite(&path, ring(), Arc::new(SystemClock)).await;
    common::race_replace_token_across(&[one, two]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_lease_race_across_two_pools_has_one_holder() {
    let dir = TempDir::new();
    let path = dir.file("store.db");
    let one = open_sqlite(&path, ring(), Arc::new(SystemClock)).await;
    let two = open_sqlite(&path, ring(), Arc::new(SystemClock)).await;
    common::race_lease_across(&[one, two]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_claims_across_two_pools_take_each_connection_once() {
    let dir = TempDir::new();
    let path = dir.file("store.db");
    let one = open_sqlite(&path, ring(), Arc::new(SystemClock)).await;
    let two = open_sqlite(&path, ring(), Arc::new(SystemClock)).await;
    common::race_claims_across(&[one, two], 150).await;
}

/// A file written by schema version 1 (migration 0001 only) opens at the current version:
/// its rows have no failures and no retry time, and are claimable.
#[tokio::test]
async fn sqlite_upgrade_from_schema_1_keeps_rows_without_failures() {
    let dir = TempDir::new();
    let path = dir.file("store.db");
    let v1 = dir.file("migrations-v1");
    std::fs::create_dir_all(&v1).expect("dir");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/sqlite/0001_connections.sql"
        ),
        v1.join("0001_connections.sql"),
    )
    .expect("copy migration 1");
    std::fs::File::create(&path).expect("file");
    let raw = raw_sqlite(&path).await;
    sqlx::migrate::Migrator::new(v1.as_path())
        .await
        .expect("migrator")
        .run(&raw)
        .await
        .expect("migrate to 1");
    let id = connection_store::ConnectionId::new();
    sqlx::query(
        "INSERT INTO connections (id, owner_id, name, name_folded, tenant_id, cloud, \
         admin_object_id, admin_username, scopes, status, created_at, updated_at, \
         last_synced_at, revision, token_version, token_key_id, token_ciphertext) \
         VALUES ($1, 'owner-v1', 'Old', 'old', 't-1', '{\"kind\":\"global\"}', 'o', 'u', '[]', \
         'active', 1000000, 1000000, 2000000, 3, 1, 'test-1', x'00')",
    )
    .bind(id.to_string())
    .execute(&raw)
    .await
    .expect("a version 1 row");
    raw.close().await;

    let store = open_sqlite(&path, ring(), Arc::new(SystemClock)).await;
    let owner = connection_store::OwnerId::new("owner-v1");
    let old = store.get(&owner, id).await.expect("get");
    assert_eq!((old.failures, old.retry_at, old.revision), (0, None, 3));
    let me = connection_store::LeaseHolder::new("worker").expect("holder");
    let claims = store
        .claim_due(
            10,
            &me,
            std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(60),
        )
        .await
        .expect("claim_due");
    assert_eq!(claims.len(), 1);
    assert_eq!(claims.claims[0].connection, old);
    let raw = raw_sqlite(&path).await;
    let version: i64 = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(&raw)
        .await
        .expect("version");
    assert_eq!(version, SCHEMA_VERSION);
}

/// A file written by schema version 2 (migrations 0001 and 0002) opens at the current
/// version: its "reconnect needed" rows read back without claims, and claims can be
/// written to them.
#[tokio::test]
async fn sqlite_upgrade_from_schema_2_reads_reconnect_needed_rows_without_claims() {
    let dir = TempDir::new();
    let path = dir.file("store.db");
    let v2 = dir.file("migrations-v2");
    std::fs::create_dir_all(&v2).expect("dir");
    for migration in ["0001_connections.sql", "0002_claims_and_backoff.sql"] {
        std::fs::copy(
            format!(
                "{}/migrations/sqlite/{migration}",
                env!("CARGO_MANIFEST_DIR")
            ),
            v2.join(migration),
        )
        .expect("copy migration");
    }
    std::fs::File::create(&path).expect("file");
    let raw = raw_sqlite(&path).await;
    sqlx::migrate::Migrator::new(v2.as_path())
        .await
        .expect("migrator")
        .run(&raw)
        .await
        .expect("migrate to 2");
    let id = connection_store::ConnectionId::new();
    sqlx::query(
        "INSERT INTO connections (id, owner_id, name, name_folded, tenant_id, cloud, \
         admin_object_id, admin_username, scopes, status, status_reason, status_since, \
         created_at, updated_at, revision, token_version, token_key_id, token_ciphertext) \
         VALUES ($1, 'owner-v2', 'Old', 'old', 't-2', '{\"kind\":\"global\"}', 'o', 'u', '[]', \
         'needs_reconnect', 'AADSTS50173', 1000000, 1000000, 1000000, 2, 1, 'test-1', x'00')",
    )
    .bind(id.to_string())
    .execute(&raw)
    .await
    .expect("a version 2 row");
    raw.close().await;

    let store = open_sqlite(&path, ring(), Arc::new(SystemClock)).await;
    let owner = connection_store::OwnerId::new("owner-v2");
    let old = store.get(&owner, id).await.expect("get");
    assert_eq!(
        old.status,
        connection_store::ConnectionStatus::NeedsReconnect {
            reason: "AADSTS50173".to_owned(),
            since: time::OffsetDateTime::from_unix_timestamp(1).expect("time"),
            claims: None,
        }
    );
    let challenged = needs_reconnect(Some(CAE_CLAIMS));
    let written = store
        .set_status(&owner, id, challenged.clone())
        .await
        .expect("set_status with claims");
    assert_eq!(written.status, challenged);
    let raw = raw_sqlite(&path).await;
    let version: i64 = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(&raw)
        .await
        .expect("version");
    assert_eq!(version, SCHEMA_VERSION);
}

/// The claims column is NULL for statuses without claims and after a reconnect: nothing
/// of an old challenge stays in the row.
#[tokio::test]
async fn sqlite_claims_column_is_null_after_a_status_without_claims_or_a_reconnect() {
    let dir = TempDir::new();
    let path = dir.file("store.db");
    let store = open_sqlite(&path, ring(), Arc::new(SystemClock)).await;
    let raw = raw_sqlite(&path).await;
    let owner = unique_owner("owner");
    let created = store
        .create(&owner, sample_connection("Contoso", "tenant-1", "rt-1"))
        .await
        .expect("create");
    let id = created.id;
    let stored = || {
        let raw = raw.clone();
        async move {
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT status_claims FROM connections WHERE id = $1",
            )
            .bind(id.to_string())
            .fetch_one(&raw)
            .await
            .expect("status_claims")
        }
    };
    let with_claims = needs_reconnect(Some(CAE_CLAIMS));
    store
        .set_status(&owner, id, with_claims.clone())
        .await
        .expect("set_status");
    assert_eq!(stored().await.as_deref(), Some(CAE_CLAIMS));
    store
        .set_status(&owner, id, connection_store::ConnectionStatus::Disabled)
        .await
        .expect("set_status");
    assert_eq!(stored().await, None, "disabled");
    store
        .set_status(&owner, id, with_claims)
        .await
        .expect("set_status");
    store
        .reconnect(
            &owner,
            id,
            connection_store::Reconnect {
                tenant: created.tenant.clone(),
                admin: created.admin.clone(),
                scopes: created.scopes.clone(),
                refresh_token: secret("rt-2"),
            },
        )
        .await
        .expect("reconnect");
    assert_eq!(stored().await, None, "reconnected");
}

#[tokio::test]
async fn sqlite_corrupt_claims_are_typed_errors_and_a_reconnect_repairs_them() {
    let dir = TempDir::new();
    let path = dir.file("store.db");
    let store = open_sqlite(&path, ring(), Arc::new(SystemClock)).await;
    let raw = raw_sqlite(&path).await;
    corrupt_claims_are_typed_errors(&store, |id, claims| {
        let raw = raw.clone();
        async move {
            sqlx::query("UPDATE connections SET status_claims = $1 WHERE id = $2")
                .bind(claims)
                .bind(id.to_string())
                .execute(&raw)
                .await
                .expect("corrupt the claims");
        }
    })
    .await;
    // SQLite keeps what it is given: bytes that are not UTF-8, as text or as a blob.
    for value in ["CAST(x'7bff7d' AS TEXT)", "x'7b7d'"] {
        let (owner, id) = seeded(&store, "rt").await;
        store
            .set_status(&owner, id, needs_reconnect(Some(CAE_CLAIMS)))
            .await
            .expect("set_status");
        sqlx::query(&format!(
            "UPDATE connections SET status_claims = {value} WHERE id = $1"
        ))
        .bind(id.to_string())
        .execute(&raw)
        .await
        .expect("corrupt the claims");
        assert!(
            matches!(
                store.get(&owner, id).await,
                Err(StoreError::Corrupt { id: Some(found), what, .. })
                    if found == id && what == "status_claims"
            ),
            "{value}"
        );
    }
}

#[tokio::test]
async fn sqlite_corrupt_rows_are_typed_errors_naming_the_part() {
    let dir = TempDir::new();
    let path = dir.file("store.db");
    let (_, clock) = manual_clock();
    let store = open_sqlite(&path, ring(), clock).await;
    let raw = raw_sqlite(&path).await;
    for (column, value, part) in [
        ("status", "'bogus'", "status"),
        ("cloud", "'{not json'", "cloud"),
        ("scopes", "'42'", "scopes"),
        ("name", "''", "name"),
        ("revision", "-1", "revision"),
        ("created_at", "9223372036854775807", "created_at"),
        ("failures", "-1", "failures"),
        ("retry_at", "9223372036854775807", "retry_at"),
    ] {
        let (owner, id) = seeded(&store, "rt").await;
        sqlx::query(&format!(
            "UPDATE connections SET {column} = {value} WHERE id = $1"
        ))
        .bind(id.to_string())
        .execute(&raw)
        .await
        .expect("corrupt the row");
        for result in [
            store.get(&owner, id).await.map(|_| ()),
            store.list(&owner).await.map(|_| ()),
        ] {
            match result {
                Err(StoreError::Corrupt {
                    id: Some(found),
                    what,
                    ..
                }) => {
                    assert_eq!(found, id);
                    assert_eq!(what, part);
                }
                other => panic!("{column}: expected Corrupt, got {other:?}"),
            }
        }
        // The token is still readable: one bad field loses nothing else.
        assert_eq!(
            store
                .load_token(&owner, id)
                .await
                .expect("token")
                .token
                .expose_secret(),
            "rt"
        );
    }
    let (owner, id) = seeded(&store, "rt").await;
    sqlx::query("UPDATE connections SET token_version = -5 WHERE id = $1")
        .bind(id.to_string())
        .execute(&raw)
        .await
        .expect("corrupt");
    assert!(matches!(
        store.load_token(&owner, id).await,
        Err(StoreError::Corrupt { what, .. }) if what == "token_version"
    ));
}

/// A name with a format character (bidi override) that an earlier version could store, or
/// that was written behind the store's back, reads back as `Corrupt` naming `name`, and a
/// rename repairs it.
#[tokio::test]
async fn sqlite_stored_name_with_a_format_character_is_corrupt_until_renamed() {
    let dir = TempDir::new();
    let path = dir.file("store.db");
    let (_, clock) = manual_clock();
    let store = open_sqlite(&path, ring(), clock).await;
    let raw = raw_sqlite(&path).await;
    let (owner, id) = seeded(&store, "rt").await;
    sqlx::query("UPDATE connections SET name = $1, name_folded = $1 WHERE id = $2")
        .bind("Contoso\u{202E}lanretni")
        .bind(id.to_string())
        .execute(&raw)
        .await
        .expect("store the name");
    for result in [
        store.get(&owner, id).await.map(|_| ()),
        store.list(&owner).await.map(|_| ()),
    ] {
        match result {
            Err(StoreError::Corrupt {
                id: Some(found),
                what,
                ..
            }) => {
                assert_eq!(found, id);
                assert_eq!(what, "name");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
    let renamed = store
        .rename(&owner, id, "Contoso internal")
        .await
        .expect("rename repairs the row");
    assert_eq!(renamed.name.as_str(), "Contoso internal");
    assert_eq!(store.get(&owner, id).await.expect("get"), renamed);
}

#[tokio::test]
async fn sqlite_claim_batch_with_a_corrupt_row_returns_the_healthy_claims_and_defers_it() {
    // Due rows (status active, times in range) whose other columns do not read back: a
    // bad value, and (SQLite keeps what it is given) text in an integer column.
    for (column, value) in [
        ("scopes", "'42'"),
        ("cloud", "'{not json'"),
        ("name", "''"),
        ("revision", "-1"),
        ("failures", "'many'"),
        ("admin_username", "x'00ff'"),
    ] {
        let dir = TempDir::new();
        let path = dir.file("store.db");
        let (clock, shared) = manual_clock();
        let store = open_sqlite(&path, ring(), shared).await;
        let raw = raw_sqlite(&path).await;
        claim_batch_with_a_corrupt_row(&store, &clock, column, |id| {
            let raw = raw.clone();
            async move {
                sqlx::query(&format!(
                    "UPDATE connections SET {column} = {value} WHERE id = $1"
                ))
                .bind(id.to_string())
                .execute(&raw)
                .await
                .expect("corrupt the row");
            }
        })
        .await;
    }
}

#[tokio::test]
async fn sqlite_claim_defers_a_corrupt_row_by_writing_only_its_lease_and_retry_at() {
    let dir = TempDir::new();
    let path = dir.file("store.db");
    let (clock, shared) = manual_clock();
    let store = open_sqlite(&path, ring(), shared).await;
    let raw = raw_sqlite(&path).await;
    let (_, id) = seeded(&store, "rt").await;
    sqlx::query("UPDATE connections SET scopes = 'not json' WHERE id = $1")
        .bind(id.to_string())
        .execute(&raw)
        .await
        .expect("corrupt");
    let before: (String, i64, i64, i64) = sqlx::query_as(
        "SELECT scopes, revision, updated_at, failures FROM connections WHERE id = $1",
    )
    .bind(id.to_string())
    .fetch_one(&raw)
    .await
    .expect("row");
    let me = connection_store::LeaseHolder::new("worker").expect("holder");
    let batch = store
        .claim_due(5, &me, Duration::from_secs(60), Duration::from_secs(60))
        .await
        .expect("claim_due");
    assert!(batch.is_empty());
    assert_eq!(batch.corrupt.len(), 1);
    let after: (String, i64, i64, i64) = sqlx::query_as(
        "SELECT scopes, revision, updated_at, failures FROM connections WHERE id = $1",
    )
    .bind(id.to_string())
    .fetch_one(&raw)
    .await
    .expect("row");
    assert_eq!(after, before, "the record is left for repair");
    let (holder, expires, retry_at): (Option<String>, Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT lease_holder, lease_expires_at, retry_at FROM connections WHERE id = $1",
    )
    .bind(id.to_string())
    .fetch_one(&raw)
    .await
    .expect("row");
    assert_eq!((holder, expires), (None, None), "the lease is free");
    let day_ahead = clock.now() + Duration::from_secs(24 * 3600);
    assert_eq!(
        retry_at,
        Some(i64::try_from(day_ahead.unix_timestamp_nanos() / 1000).expect("micros"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_opens_of_a_new_file_migrate_once() {
    for _ in 0..5 {
        let dir = TempDir::new();
        let path = dir.file("store.db");
        let opens = (0..4).map(|_| {
            let path = path.clone();
            async move { open_sqlite(&path, ring(), Arc::new(SystemClock)).await }
        });
        let stores = futures_join_all(opens).await;
        let (owner, id) = seeded(&stores[0], "rt").await;
        for store in &stores {
            assert_eq!(
                store
                    .load_token(&owner, id)
                    .await
                    .expect("load")
                    .token
                    .expose_secret(),
                "rt"
            );
        }
        let raw = raw_sqlite(&path).await;
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM schema_version")
            .fetch_one(&raw)
            .await
            .expect("count");
        assert_eq!(rows, 1);
    }
}

async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.expect("task"));
    }
    out
}

/// A connection that comes back to the pool still inside a transaction (what sqlx leaves
/// when a `BEGIN IMMEDIATE` future is cancelled at the wrong await, launchbadge/sqlx#3932;
/// the soak found it wedging every later write) is rolled back and closed, so the next
/// write, through the same one-connection pool or another process, goes through.
#[tokio::test]
async fn a_connection_returned_inside_a_transaction_is_not_reused() {
    let dir = TempDir::new();
    let path = dir.file("store.db");
    let store = SqlStore::sqlite(&path)
        .key_ring(ring())
        .max_connections(1)
        .busy_timeout(Duration::from_millis(200))
        .open()
        .await
        .expect("open sqlite store");
    let connection_store_sql::SqlPool::Sqlite(pool) = store.pool() else {
        unreachable!("a SQLite store");
    };
    let mut orphan = pool.acquire().await.expect("the pool's one connection");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *orphan)
        .await
        .expect("a write transaction");
    drop(orphan);

    // The store's next write uses the pool's (one) connection again.
    let owner = unique_owner("orphan");
    store
        .create(
            &owner,
            sample_connection("After the orphan", "t-orphan", "rt-orphan"),
        )
        .await
        .expect("the store writes after a connection came back mid-transaction");
    // And the file's write lock is free for another process.
    let raw = raw_sqlite(&path).await;
    sqlx::query("BEGIN IMMEDIATE; COMMIT")
        .execute(&raw)
        .await
        .expect("another process takes the write lock");
    assert_eq!(store.list(&owner).await.unwrap().len(), 1);
}

/// A pool of one's own on the store's file, from `sqlite_pool_options` and
/// `sqlite_connect_options` (the directory mirror's), has the same release check: a
/// connection back inside a transaction does not keep the file's write lock.
#[tokio::test]
async fn a_pool_of_ones_own_from_the_stores_options_has_its_release_check() {
    let dir = TempDir::new();
    let path = dir.file("store.db");
    let store = SqlStore::sqlite(&path)
        .key_ring(ring())
        // Long enough for the other pool's release check to run, which is not awaited by
        // the drop below; without the check the lock is held for good.
        .busy_timeout(Duration::from_secs(2))
        .open()
        .await
        .expect("open sqlite store");
    let options = connection_store_sql::sqlite_connect_options(&path, Duration::from_millis(200));
    let own = connection_store_sql::sqlite_pool_options(1)
        .connect_with(options)
        .await
        .expect("a pool of one's own");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&own)
        .await
        .expect("journal mode");
    assert_eq!(mode, "wal");
    let mut orphan = own.acquire().await.expect("the pool's one connection");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *orphan)
        .await
        .expect("a write transaction");
    drop(orphan);

    // The store writes through its own pool: the lock the orphan took is gone.
    let owner = unique_owner("own-pool");
    store
        .create(&owner, sample_connection("Own pool", "t-own", "rt-own"))
        .await
        .expect("the store writes after the other pool's connection came back mid-transaction");
    // And the own pool's connection (a new one) writes too.
    sqlx::query("BEGIN IMMEDIATE; COMMIT")
        .execute(&own)
        .await
        .expect("the own pool takes the write lock");
    assert_eq!(store.list(&owner).await.unwrap().len(), 1);
}

/// Options for a file that is not there do not create it: the store creates and migrates.
#[tokio::test]
async fn the_stores_connect_options_do_not_create_a_file() {
    let dir = TempDir::new();
    let path = dir.file("missing.db");
    let options = connection_store_sql::sqlite_connect_options(&path, Duration::from_millis(50));
    let result = connection_store_sql::sqlite_pool_options(1)
        .connect_with(options)
        .await;
    assert!(result.is_err(), "connected to a file that is not there");
    assert!(!path.exists());
}
