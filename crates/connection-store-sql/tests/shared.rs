//! Tables of your own beside the store: the shared pool, the lease as a fence inside
//! your transaction, and secrets sealed by the store's key ring. `SQLite` always;
//! `PostgreSQL` with `TEST_POSTGRES_URL` and `--include-ignored postgres` (see
//! `tests/postgres.rs`).

mod common;

use std::str::FromStr as _;
use std::time::Duration;

use common::{TempDir, manual_clock, open_sqlite, ring, secret, seeded};
use connection_store::{ConnectionId, ConnectionStore, ExposeSecret, LeaseHolder, StoreError};
use connection_store_sql::{SealedSecret, SqlConnection, SqlPool, SqlStore};

fn holder(name: &str) -> LeaseHolder {
    LeaseHolder::new(name).expect("holder")
}

#[tokio::test]
async fn the_shared_pool_reaches_the_store_database() {
    let dir = TempDir::new();
    let (_, clock) = manual_clock();
    let store = open_sqlite(&dir.file("store.db"), ring(), clock).await;
    let (_, id) = seeded(&store, "rt-1").await;
    let SqlPool::Sqlite(pool) = store.pool() else {
        panic!("a SQLite store gives a SQLite pool");
    };
    let found: String = sqlx::query_scalar("SELECT id FROM connections")
        .fetch_one(&pool)
        .await
        .expect("query the store's table");
    assert_eq!(found, id.to_string());
}

#[tokio::test]
async fn holds_lease_answers_for_the_unexpired_holder_only() {
    let dir = TempDir::new();
    let (clock, shared) = manual_clock();
    let store = open_sqlite(&dir.file("store.db"), ring(), shared).await;
    let (owner, id) = seeded(&store, "rt-1").await;
    let SqlPool::Sqlite(pool) = store.pool() else {
        panic!("sqlite");
    };
    let (me, other) = (holder("worker-a"), holder("worker-b"));
    let check = |holder: LeaseHolder| {
        let (store, pool) = (store.clone(), pool.clone());
        async move {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.expect("begin");
            let held = store
                .holds_lease(SqlConnection::Sqlite(&mut tx), id, &holder)
                .await
                .expect("check");
            tx.rollback().await.expect("rollback");
            held
        }
    };

    assert!(!check(me.clone()).await, "nobody holds it yet");
    store
        .acquire_lease(&owner, id, &me, Duration::from_secs(30))
        .await
        .expect("acquire")
        .expect("granted");
    assert!(check(me.clone()).await);
    assert!(!check(other.clone()).await);

    clock.advance(Duration::from_secs(31));
    assert!(!check(me.clone()).await, "an expired lease fences");
    store
        .acquire_lease(&owner, id, &other, Duration::from_secs(30))
        .await
        .expect("acquire")
        .expect("taken over");
    assert!(!check(me).await);
    assert!(check(other).await);
    assert!(
        !store
            .holds_lease(
                SqlConnection::Sqlite(&mut pool.acquire().await.expect("acquire")),
                ConnectionId::new(),
                &holder("worker-b"),
            )
            .await
            .expect("unknown connection"),
        "an unknown connection has no lease"
    );
}

#[tokio::test]
async fn sealed_secrets_open_only_for_their_connection_and_purpose() {
    let dir = TempDir::new();
    let (_, clock) = manual_clock();
    let store = open_sqlite(&dir.file("store.db"), ring(), clock).await;
    let id = ConnectionId::new();
    let sealed = store
        .seal_secret(id, "mirror-links", &secret("SECRET-delta-link"))
        .expect("seal");
    assert_eq!(sealed.key_id(), "test-1");
    assert!(
        !sealed
            .ciphertext()
            .windows(6)
            .any(|window| window == b"SECRET"),
        "encrypted"
    );
    let opened = store
        .open_secret(id, "mirror-links", &sealed)
        .expect("open");
    assert_eq!(opened.expose_secret(), "SECRET-delta-link");

    for (other_id, purpose) in [(ConnectionId::new(), "mirror-links"), (id, "other")] {
        let err = store.open_secret(other_id, purpose, &sealed).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert!(!format!("{err}").contains("SECRET"), "{err}");
    }
    let unknown_key = SealedSecret::new("gone", sealed.ciphertext().to_vec());
    assert!(matches!(
        store.open_secret(id, "mirror-links", &unknown_key),
        Err(StoreError::MissingKey { .. })
    ));
    assert!(!format!("{sealed:?}").contains("SECRET"));
}

fn postgres_url() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("set TEST_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run the PostgreSQL tests")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs TEST_POSTGRES_URL (PostgreSQL), see the crate README"]
async fn postgres_holds_lease_keeps_the_lease_until_the_transaction_ends() {
    let url = postgres_url();
    let schema = format!("cs_test_{}", uuid::Uuid::new_v4().simple());
    let (clock, shared) = manual_clock();
    let (test_url, test_schema) = (url.clone(), schema.clone());
    let test = async move {
        let open = |clock| {
            SqlStore::postgres(&test_url)
                .schema(&test_schema)
                .key_ring(ring())
                .clock(clock)
                .max_connections(4)
                .open()
        };
        let store = open(shared.clone()).await.expect("open");
        let replica = open(shared.clone()).await.expect("open a second pool");
        let (owner, id) = seeded(&store, "rt-1").await;
        let SqlPool::Postgres(pool) = store.pool() else {
            panic!("a PostgreSQL store gives a PostgreSQL pool");
        };
        let (me, other) = (holder("worker-a"), holder("worker-b"));
        store
            .acquire_lease(&owner, id, &me, Duration::from_secs(30))
            .await
            .expect("acquire")
            .expect("granted");

        let mut tx = pool.begin().await.expect("begin");
        assert!(
            store
                .holds_lease(SqlConnection::Postgres(&mut tx), id, &me)
                .await
                .expect("check")
        );
        assert!(
            !store
                .holds_lease(SqlConnection::Postgres(&mut tx), id, &other)
                .await
                .expect("check")
        );
        // The lease expires while the fenced transaction is still open: the take-over
        // waits for it to end.
        clock.advance(Duration::from_secs(31));
        let take_over = tokio::spawn({
            let (owner, other) = (owner.clone(), other.clone());
            async move {
                replica
                    .acquire_lease(&owner, id, &other, Duration::from_secs(30))
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !take_over.is_finished(),
            "the take-over waits for the fence"
        );
        tx.commit().await.expect("commit");
        let taken = take_over.await.expect("task").expect("acquire");
        assert!(taken.is_some(), "then the expired lease is taken over");

        let mut tx = pool.begin().await.expect("begin");
        assert!(
            !store
                .holds_lease(SqlConnection::Postgres(&mut tx), id, &me)
                .await
                .expect("check")
        );
        tx.rollback().await.expect("rollback");
        store.close().await;
    };
    let outcome = tokio::spawn(test).await;
    let options = sqlx::postgres::PgConnectOptions::from_str(&url).expect("url");
    let cleanup = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("cleanup connection");
    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&cleanup)
        .await
        .expect("drop schema");
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}
