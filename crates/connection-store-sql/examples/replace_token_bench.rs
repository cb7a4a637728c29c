//! Replace-token throughput with concurrent writers, against a floor in the same process.
//!
//! ```text
//! cargo run --release -p connection-store-sql --example replace_token_bench -- [seconds] [writers]
//! TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo run --release -p connection-store-sql --example replace_token_bench
//! ```
//!
//! Each writer owns one connection and replaces its token in a loop (compare-and-swap on
//! the version it last wrote, AES-256-GCM encryption included). The floor is the same
//! `UPDATE … WHERE version = $n RETURNING version` through plain sqlx on the same
//! database with the same settings, without encryption or the store's checks;
//! `MemoryStore` is shown for scale.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use connection_store::testkit::sample_connection;
use connection_store::{ConnectionStore, MemoryStore, OwnerId, SecretString, TokenVersion};
use connection_store_sql::{EncryptionKey, KeyId, KeyRing, SqlStore};
use sqlx::Executor;

const TOKEN_LEN: usize = 1500;

fn ring() -> KeyRing {
    KeyRing::new(
        KeyId::new("bench").expect("key id"),
        EncryptionKey::generate(),
    )
}

/// Runs `writers` loops of `op(writer)` for `seconds`, returning operations per second.
async fn measure<F, Fut>(writers: usize, seconds: f64, op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let (op, stop, count) = (op.clone(), stop.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                op(writer).await;
                count.fetch_add(1, Ordering::Relaxed);
                // MemoryStore never waits; let the timer task run.
                tokio::task::yield_now().await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("writer");
    }
    #[expect(clippy::cast_precision_loss, reason = "an operation count")]
    let ops = count.load(Ordering::Relaxed) as f64;
    ops / start.elapsed().as_secs_f64()
}

/// Replace-token ops/s on `store` with one connection per writer.
async fn store_rate(store: Arc<dyn ConnectionStore>, writers: usize, seconds: f64) -> f64 {
    let owner = OwnerId::new(format!("bench-{}", uuid::Uuid::new_v4()));
    let mut ids = Vec::new();
    for writer in 0..writers {
        let tenant = uuid::Uuid::new_v4().to_string();
        let created = store
            .create(
                &owner,
                sample_connection(&format!("bench {writer}"), &tenant, "rt"),
            )
            .await
            .expect("create");
        ids.push((created.id, Arc::new(AtomicU64::new(1))));
    }
    let ids = Arc::new(ids);
    let token = "t".repeat(TOKEN_LEN);
    measure(writers, seconds, move |writer| {
        let (store, owner, ids, token) = (store.clone(), owner.clone(), ids.clone(), token.clone());
        async move {
            let (id, version) = &ids[writer];
            let expected = TokenVersion::new(version.load(Ordering::Relaxed));
            let next = store
                .replace_token(&owner, *id, expected, SecretString::from(token))
                .await
                .expect("replace");
            version.store(next.get(), Ordering::Relaxed);
        }
    })
    .await
}

const FLOOR_TABLE: &str = "CREATE TABLE bench_floor (id BIGINT PRIMARY KEY, version BIGINT NOT NULL, blob BYTEA NOT NULL)";
const FLOOR_UPDATE: &str = "UPDATE bench_floor SET version = version + 1, blob = $2 WHERE id = $1 AND version = $3 RETURNING version";

macro_rules! floor_rate {
    ($pool:expr, $writers:expr, $seconds:expr) => {{
        let pool = $pool;
        for writer in 0..$writers {
            sqlx::query("INSERT INTO bench_floor (id, version, blob) VALUES ($1, 1, $2)")
                .bind(writer as i64)
                .bind(vec![0u8; TOKEN_LEN + 29])
                .execute(&pool)
                .await
                .expect("insert");
        }
        let versions: Arc<Vec<AtomicU64>> =
            Arc::new((0..$writers).map(|_| AtomicU64::new(1)).collect());
        measure($writers, $seconds, move |writer| {
            let (pool, versions) = (pool.clone(), versions.clone());
            async move {
                let expected = versions[writer].load(Ordering::Relaxed) as i64;
                let next: i64 = sqlx::query_scalar(FLOOR_UPDATE)
                    .bind(writer as i64)
                    .bind(vec![1u8; TOKEN_LEN + 29])
                    .bind(expected)
                    .fetch_one(&pool)
                    .await
                    .expect("floor update");
                versions[writer].store(next as u64, Ordering::Relaxed);
            }
        })
        .await
    }};
}

fn report(label: &str, rate: f64, floor: f64) {
    println!(
        "{label:<44} {rate:>9.0} ops/s   {:>5.2} x floor",
        rate / floor
    );
}

#[tokio::main]
#[expect(
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    reason = "small counters"
)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let writers: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(8);
    println!(
        "replace_token, {writers} concurrent writers, {seconds} s each, token {TOKEN_LEN} bytes\n"
    );

    let memory = store_rate(Arc::new(MemoryStore::new()), writers, seconds).await;
    println!("{:<44} {memory:>9.0} ops/s", "MemoryStore (for scale)");

    // SQLite: same file settings for the store and the floor.
    let dir = std::env::temp_dir().join(format!("replace-token-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("bench.db");
    let store = SqlStore::sqlite(&path)
        .key_ring(ring())
        .max_connections(8)
        .open()
        .await
        .expect("open sqlite");
    let floor_pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10)),
        )
        .await
        .expect("floor pool");
    floor_pool
        .execute(FLOOR_TABLE.replace("BYTEA", "BLOB").as_str())
        .await
        .expect("floor table");
    let floor = floor_rate!(floor_pool.clone(), writers, seconds);
    let rate = store_rate(Arc::new(store), writers, seconds).await;
    println!(
        "{:<44} {floor:>9.0} ops/s",
        "SQLite floor (plain sqlx CAS UPDATE)"
    );
    report("SQLite SqlStore::replace_token", rate, floor);
    let _ = std::fs::remove_dir_all(&dir);

    // PostgreSQL, when a server is configured.
    let Ok(url) = std::env::var("TEST_POSTGRES_URL") else {
        println!("\nPostgreSQL skipped: set TEST_POSTGRES_URL");
        return;
    };
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let store = SqlStore::postgres(&url)
        .schema(&schema)
        .key_ring(ring())
        .max_connections(8)
        .open()
        .await
        .expect("open postgres");
    let options: sqlx::postgres::PgConnectOptions = url.parse().expect("url");
    let floor_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect_with(options.options([("search_path", schema.as_str())]))
        .await
        .expect("floor pool");
    floor_pool.execute(FLOOR_TABLE).await.expect("floor table");
    let floor = floor_rate!(floor_pool.clone(), writers, seconds);
    let rate = store_rate(Arc::new(store), writers, seconds).await;
    println!(
        "{:<44} {floor:>9.0} ops/s",
        "PostgreSQL floor (plain sqlx CAS UPDATE)"
    );
    report("PostgreSQL SqlStore::replace_token", rate, floor);
    floor_pool
        .execute(format!("DROP SCHEMA \"{schema}\" CASCADE").as_str())
        .await
        .expect("drop schema");
}
