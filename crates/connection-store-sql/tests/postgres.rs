//! `SqlStore` on `PostgreSQL`. These tests need a server: they are ignored by default and
//! run with
//! `TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo test -p connection-store-sql -- --include-ignored postgres`.
//! Each store lives in a schema of its own, dropped when the test ends (pass or fail).

mod common;

use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use common::{
    claim_batch_with_a_corrupt_row, corrupt_claims_are_typed_errors, key, manual_clock, ring,
    secret, seeded,
};
use connection_store::testkit;
use connection_store::{
    Clock, ConnectionStore, ExposeSecret, StoreError, SystemClock, TokenVersion,
};
use connection_store_sql::{KeyRing, SCHEMA_VERSION, SqlStore};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

fn url() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("set TEST_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run the PostgreSQL tests")
    })
}

/// The schemas a test created; all dropped at its end.
struct Schemas {
    url: String,
    names: Mutex<Vec<String>>,
}

impl Schemas {
    fn fresh(&self) -> String {
        let name = format!("cs_test_{}", uuid::Uuid::new_v4().simple());
        self.names.lock().expect("lock").push(name.clone());
        name
    }

    async fn open(&self, schema: &str, keys: KeyRing, clock: Arc<dyn Clock>) -> SqlStore {
        SqlStore::postgres(&self.url)
            .schema(schema)
            .key_ring(keys)
            .clock(clock)
            .max_connections(4)
            .open()
            .await
            .expect("open postgres store")
    }

    async fn raw(&self, schema: &str) -> sqlx::PgPool {
        let options = PgConnectOptions::from_str(&self.url)
            .expect("url")
            .options([("search_path", schema)]);
        PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .expect("raw pool")
    }
}

/// Runs `test` (in a task, so a panic is caught), then drops its schemas, then re-raises.
async fn with_schemas<F, Fut>(test: F)
where
    F: FnOnce(Arc<Schemas>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let schemas = Arc::new(Schemas {
        url: url(),
        names: Mutex::new(Vec::new()),
    });
    let outcome = tokio::spawn(test(schemas.clone())).await;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&schemas.url)
        .await
        .expect("cleanup connection");
    let names = schemas.names.lock().expect("lock").clone();
    for name in names {
        sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
            .execute(&pool)
            .await
            .expect("drop schema");
    }
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs TEST_POSTGRES_URL (PostgreSQL), see the crate README"]
async fn postgres_store_passes_the_whole_testkit() {
    with_schemas(|schemas| async move {
        testkit::run(|clock| {
            let schemas = schemas.clone();
            async move {
                let schema = schemas.fresh();
                schemas.open(&schema, ring(), Arc::new(clock)).await
            }
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs TEST_POSTGRES_URL (PostgreSQL), see the crate README"]
async fn postgres_replace_token_race_across_two_pools_has_one_winner() {
    with_schemas(|schemas| async move {
        let schema = schemas.fresh();
        let one = schemas.open(&schema, ring(), Arc::new(SystemClock)).await;
        let two = schemas.open(&schema, ring(), Arc::new(SystemClock)).await;
        common::race_replace_token_across(&[one, two]).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs TEST_POSTGRES_URL (PostgreSQL), see the crate README"]
async fn postgres_lease_race_across_two_pools_has_one_holder() {
    with_schemas(|schemas| async move {
        let schema = schemas.fresh();
        let one = schemas.open(&schema, ring(), Arc::new(SystemClock)).await;
        let two = schemas.open(&schema, ring(), Arc::new(SystemClock)).await;
        common::race_lease_across(&[one, two]).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs TEST_POSTGRES_URL (PostgreSQL), see the crate README"]
async fn postgres_claims_across_two_pools_take_each_connection_once() {
    with_schemas(|schemas| async move {
        let schema = schemas.fresh();
        let one = schemas.open(&schema, ring(), Arc::new(SystemClock)).await;
        let two = schemas.open(&schema, ring(), Arc::new(SystemClock)).await;
        common::race_claims_across(&[one, two], 300).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs TEST_POSTGRES_URL (PostgreSQL), see the crate README"]
async fn postgres_concurrent_opens_migrate_once_and_record_the_schema_version() {
    with_schemas(|schemas| async move {
        let schema = schemas.fresh();
        let (one, two) = tokio::join!(
            schemas.open(&schema, ring(), Arc::new(SystemClock)),
            schemas.open(&schema, ring(), Arc::new(SystemClock)),
        );
        let (owner, id) = seeded(&one, "rt-1").await;
        assert_eq!(
            two.load_token(&owner, id)
                .await
                .expect("load")
                .token
                .expose_secret(),
            "rt-1"
        );
        let raw = schemas.raw(&schema).await;
        let version: i64 = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
            .fetch_one(&raw)
            .await
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM schema_version")
            .fetch_one(&raw)
            .await
            .expect("count");
        assert_eq!(rows, 1, "migrations ran once");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs TEST_POSTGRES_URL (PostgreSQL), see the crate README"]
async fn postgres_claim_batch_with_a_corrupt_row_returns_the_healthy_claims_and_defers_it() {
    with_schemas(|schemas| async move {
        for (column, value) in [("scopes", "'42'"), ("revision", "-1")] {
            let schema = schemas.fresh();
            let (clock, shared) = manual_clock();
            let store = schemas.open(&schema, ring(), shared).await;
            let raw = schemas.raw(&schema).await;
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
            store.close().await;
            raw.close().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs TEST_POSTGRES_URL (PostgreSQL), see the crate README"]
async fn postgres_corrupt_claims_are_typed_errors_and_a_reconnect_repairs_them() {
    with_schemas(|schemas| async move {
        let schema = schemas.fresh();
        let store = schemas.open(&schema, ring(), Arc::new(SystemClock)).await;
        let raw = schemas.raw(&schema).await;
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
        store.close().await;
        raw.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs TEST_POSTGRES_URL (PostgreSQL), see the crate README"]
async fn postgres_tokens_are_encrypted_and_bound_to_their_row() {
    with_schemas(|schemas| async move {
        let schema = schemas.fresh();
        let store = schemas.open(&schema, ring(), Arc::new(SystemClock)).await;
        let raw = schemas.raw(&schema).await;
        let (owner, victim) = seeded(&store, "rt-victim-marker").await;
        let (_, other) = {
            let attacker = store
                .create(
                    &owner,
                    testkit::sample_connection(
                        "attacker",
                        &uuid::Uuid::new_v4().to_string(),
                        "rt-attacker",
                    ),
                )
                .await
                .expect("create");
            (owner.clone(), attacker.id)
        };
        let blob: Vec<u8> =
            sqlx::query_scalar("SELECT token_ciphertext FROM connections WHERE id = $1")
                .bind(victim.to_string())
                .fetch_one(&raw)
                .await
                .expect("blob");
        assert!(
            !blob.windows(6).any(|w| w == b"victim"),
            "plaintext in the row"
        );
        sqlx::query("UPDATE connections SET token_ciphertext = $1 WHERE id = $2")
            .bind(&blob)
            .bind(other.to_string())
            .execute(&raw)
            .await
            .expect("copy");
        assert!(matches!(
            store.load_token(&owner, other).await,
            Err(StoreError::Corrupt { .. })
        ));
        assert_eq!(
            store
                .load_token(&owner, victim)
                .await
                .expect("intact")
                .token
                .expose_secret(),
            "rt-victim-marker"
        );
        // Rotation on PostgreSQL: old key readable as previous, writes use the new key.
        let (new_id, new_key) = key("test-2", 8);
        let (old_id, old_key) = key("test-1", 7);
        let rotated = KeyRing::builder(new_id, new_key)
            .previous(old_id, old_key)
            .build()
            .expect("ring");
        let store = schemas.open(&schema, rotated, Arc::new(SystemClock)).await;
        let token = store
            .load_token(&owner, victim)
            .await
            .expect("old key reads");
        store
            .replace_token(&owner, victim, token.version, secret("rt-2"))
            .await
            .expect("replace");
        let key_id: String =
            sqlx::query_scalar("SELECT token_key_id FROM connections WHERE id = $1")
                .bind(victim.to_string())
                .fetch_one(&raw)
                .await
                .expect("key id");
        assert_eq!(key_id, "test-2");
        assert_eq!(
            store
                .load_token(&owner, victim)
                .await
                .expect("load")
                .version,
            TokenVersion::new(2)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs TEST_POSTGRES_URL (PostgreSQL), see the crate README"]
async fn postgres_reencrypt_during_token_replacements_leaves_every_token_on_the_new_key_at_its_last_version()
 {
    with_schemas(|schemas| async move {
        let schema = schemas.fresh();
        let (old, rotated, new_only) = common::rotation_rings();
        let old = schemas.open(&schema, old, Arc::new(SystemClock)).await;
        let one = schemas.open(&schema, rotated, Arc::new(SystemClock)).await;
        let two = schemas
            .open(&schema, common::rotation_rings().1, Arc::new(SystemClock))
            .await;
        let new_only = schemas.open(&schema, new_only, Arc::new(SystemClock)).await;
        common::reencrypt_during_token_replacements(&old, &[one, two], &new_only).await;
    })
    .await;
}
