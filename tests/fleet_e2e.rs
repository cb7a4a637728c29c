//! The fleet end to end on `PostgreSQL`: 200 tenants of one multi-tenant tenant-sim,
//! three `worker` processes (the example, as built) on one fresh database, one round.
//! One worker is killed (SIGKILL) mid-round: its leases expire and the other two finish
//! its tenants. In the end every tenant was synced, its mirror equals its directory, no
//! tenant was synced by both survivors, and only the syncs the killed worker had under
//! way were redone.
//!
//! Needs `PostgreSQL`: `TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo
//! test --test fleet_e2e -- --include-ignored postgres` (the run makes a database of its
//! own and drops it at the end).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use connection_store::{ConnectionId, OwnerId};
use connection_store_sql::{EncryptionKey, KeyId, KeyRing, SqlStore, sqlx};
use futures::StreamExt as _;
use m365_link_app::connect::{SignIn, link_simulated};
use m365_link_app::mirror::{Mirror, UserQuery};
use secrecy::ExposeSecret as _;
use tenant_sim::TenantSim;
use tokio::io::AsyncBufReadExt as _;

const TENANTS: usize = 200;
const CONCURRENCY: usize = 8;

/// The `worker` example, built if it is not (an integration test does not build the
/// examples by itself).
fn worker_binary() -> PathBuf {
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "m365-link", "--example", "worker"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the worker example builds");
    // target/<profile>/deps/fleet_e2e-… → target/<profile>/examples/worker
    let exe = std::env::current_exe().expect("the test's path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    profile.join("examples").join("worker")
}

/// A fresh database on the server of `TEST_POSTGRES_URL`, dropped on `drop_it`.
struct Database {
    admin_url: String,
    name: String,
    url: String,
}

impl Database {
    async fn create() -> Self {
        let admin_url = std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| {
            panic!("set TEST_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/test)")
        });
        let name = format!("fleet_e2e_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&admin_url).await.expect("PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("a fresh database");
        admin.close().await;
        let mut url = url::Url::parse(&admin_url).expect("a URL");
        url.set_path(&name);
        Self {
            admin_url,
            name,
            url: url.to_string(),
        }
    }

    async fn drop_it(self) {
        if let Ok(admin) = sqlx::PgPool::connect(&self.admin_url).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&admin)
            .await;
            admin.close().await;
        }
    }
}

/// One worker process and the JSON round reports it printed.
struct Worker {
    child: tokio::process::Child,
    reports: tokio::task::JoinHandle<Vec<serde_json::Value>>,
}

impl Worker {
    fn start(binary: &PathBuf, sim: &TenantSim, db: &str, key: &str) -> Self {
        let mut child = tokio::process::Command::new(binary)
            .args(["--store", db, "--json", "--interval", "1h"])
            .args(["--concurrency", &CONCURRENCY.to_string()])
            .args([
                "--lease-ttl",
                "3s",
                "--check-every",
                "200ms",
                "--grace",
                "10s",
            ])
            .env("ENTRA_CLIENT_ID", sim.client_id())
            .env("ENTRA_CLIENT_SECRET", sim.client_secret().expose_secret())
            .env("M365_LINK_STORE_KEY", key)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the worker starts");
        let stdout = child.stdout.take().expect("its stdout");
        let reports = tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            let mut reports = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                reports.push(serde_json::from_str(&line).expect("a JSON report"));
            }
            reports
        });
        Self { child, reports }
    }

    /// SIGTERM, then its exit status and reports.
    async fn stop(mut self) -> (std::process::ExitStatus, Vec<serde_json::Value>) {
        let pid = self.child.id().expect("still running");
        let signalled = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(signalled.success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("it stops within its grace")
            .expect("its status");
        (status, self.reports.await.expect("its reports"))
    }
}

fn synced_ids(reports: &[serde_json::Value]) -> Vec<String> {
    reports
        .iter()
        .flat_map(|report| report["synced_ids"].as_array().cloned().unwrap_or_default())
        .filter_map(|id| id.as_str().map(str::to_owned))
        .collect()
}

/// Polls `done` every 100 ms (the workers are other processes) for up to `within`.
async fn wait_until<F, Fut>(within: Duration, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops `workers` with SIGTERM (each must exit cleanly): the ids they synced, and
/// their lease holder names.
async fn stop_all(workers: impl IntoIterator<Item = Worker>) -> (Vec<String>, HashSet<String>) {
    let mut by_survivors = Vec::new();
    let mut survivor_holders = HashSet::new();
    for worker in workers {
        let (status, reports) = worker.stop().await;
        assert!(
            status.success(),
            "a SIGTERM stops a worker cleanly: {status}"
        );
        by_survivors.extend(synced_ids(&reports));
        for report in &reports {
            survivor_holders.insert(report["holder"].as_str().expect("a holder").to_owned());
        }
    }
    (by_survivors, survivor_holders)
}

/// Checks that every tenant was synced, without failures, its mirror equal to its
/// directory, in one or two delta rounds and commits; returns how many took two.
async fn check_every_tenant(
    sim: &TenantSim,
    store: &dyn connection_store::ConnectionStore,
    mirror: &Mirror,
    linked: &HashMap<ConnectionId, (OwnerId, String)>,
) -> usize {
    let delta_rounds = |tenant: &str| {
        sim.tenant_control(tenant)
            .unwrap()
            .counters()
            .first_pages("GET /users/delta")
    };
    let mut redone = 0;
    for (id, (owner, tenant)) in linked {
        let connection = store.get(owner, *id).await.unwrap();
        assert!(connection.last_synced_at.is_some(), "{tenant}");
        assert_eq!(connection.failures, 0, "{tenant}");
        let mirrored: BTreeSet<String> = mirror
            .find_users(*id, &UserQuery::new(), 0, 1_000)
            .await
            .unwrap()
            .into_iter()
            .map(|user| user.id.unwrap().as_str().to_owned())
            .collect();
        let directory: BTreeSet<String> = sim
            .tenant_control(tenant)
            .unwrap()
            .users()
            .into_iter()
            .map(|user| user.id)
            .collect();
        assert_eq!(mirrored, directory, "{tenant}: its mirror is its directory");
        let rounds = delta_rounds(tenant);
        assert!((1..=2).contains(&rounds), "{tenant}: {rounds} rounds");
        if rounds == 2 {
            redone += 1;
        }
        let commits = mirror.state(*id).await.unwrap().map_or(0, |s| s.commits);
        assert!((1..=2).contains(&commits), "{tenant}: {commits} commits");
    }
    redone
}

/// The simulator, the fresh database with the store and its mirror, and every tenant
/// linked by a customer of its own.
struct Fleet {
    sim: TenantSim,
    /// The fresh database's URL.
    db: String,
    key: EncryptionKey,
    sql: SqlStore,
    mirror: Mirror,
    store: Arc<dyn connection_store::ConnectionStore>,
    /// Connection id → (owner, tenant id).
    linked: HashMap<ConnectionId, (OwnerId, String)>,
}

impl Fleet {
    async fn start(db: &Database) -> Self {
        // Each Graph request takes 60 ms, so the round lasts long enough to kill a worker
        // in the middle of it.
        let sim = TenantSim::builder()
            .tenants(TENANTS)
            .users(8)
            .groups(2)
            .seed(3)
            .latency(Duration::from_millis(60))
            .start()
            .await
            .expect("tenant-sim starts");
        let key = EncryptionKey::generate();
        let ring = KeyRing::new(
            KeyId::new(m365_link_app::store::KEY_ID).unwrap(),
            EncryptionKey::from_base64(&key.to_base64()).unwrap(),
        );
        let sql = SqlStore::postgres(&db.url)
            .key_ring(ring)
            .max_connections(4)
            .open()
            .await
            .expect("the store opens");
        let mirror = Mirror::open(&sql).await.expect("the mirror opens");
        let store: Arc<dyn connection_store::ConnectionStore> = Arc::new(sql.clone());

        // Every tenant linked by a customer of its own.
        let sign_in = SignIn::simulated(&sim);
        let linked: HashMap<ConnectionId, (OwnerId, String)> =
            futures::stream::iter(sim.tenants().iter().enumerate())
                .map(|(n, tenant)| {
                    let (sign_in, store) = (sign_in.clone(), Arc::clone(&store));
                    async move {
                        let owner = OwnerId::new(format!("customer-{n}"));
                        let connection = link_simulated(
                            &sign_in,
                            store.as_ref(),
                            &owner,
                            tenant.admin_upn(),
                            "M365",
                        )
                        .await
                        .expect("the tenant links");
                        (connection.id, (owner, tenant.id().to_owned()))
                    }
                })
                .buffer_unordered(16)
                .collect()
                .await;
        assert_eq!(linked.len(), TENANTS);
        for tenant in sim.tenants() {
            sim.tenant_control(tenant.id()).unwrap().reset_counters();
        }
        Self {
            sim,
            db: db.url.clone(),
            key,
            sql,
            mirror,
            store,
            linked,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs TEST_POSTGRES_URL (PostgreSQL)"]
async fn three_worker_processes_on_postgres_sync_200_tenants_once_and_survive_a_sigkill() {
    let binary = worker_binary();
    let db = Database::create().await;
    let fleet = Fleet::start(&db).await;
    // The database goes whatever happens in the scenario.
    let outcome = tokio::spawn(kill_one_of_three_workers(binary, fleet)).await;
    db.drop_it().await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

/// The scenario: three workers, one killed (SIGKILL) mid-round, the other two finish.
async fn kill_one_of_three_workers(binary: PathBuf, fleet: Fleet) {
    let Fleet {
        sim,
        db,
        key,
        sql,
        mirror,
        store,
        linked,
    } = fleet;
    let key_text = key.to_base64();
    let key_text = key_text.expose_secret();
    let killed = Worker::start(&binary, &sim, &db, key_text);
    let survivors = [
        Worker::start(&binary, &sim, &db, key_text),
        Worker::start(&binary, &sim, &db, key_text),
    ];
    let delta_rounds = |tenant: &str| {
        sim.tenant_control(tenant)
            .unwrap()
            .counters()
            .first_pages("GET /users/delta")
    };
    let started = || {
        sim.tenants()
            .iter()
            .map(|t| delta_rounds(t.id()))
            .sum::<u64>()
    };
    // A quarter of the tenants under way: kill one worker in the middle of its syncs.
    wait_until(
        Duration::from_secs(60),
        "a quarter of the syncs started",
        || {
            let n = started();
            async move { n >= (TENANTS / 4) as u64 }
        },
    )
    .await;
    let mut killed = killed;
    killed.child.start_kill().expect("SIGKILL");
    let status = killed.child.wait().await.expect("its status");
    assert!(!status.success(), "killed");
    let killed_reports = killed.reports.await.expect("its reports");
    // The syncs it had under way: the connections still leased and not yet synced.
    let connection_store_sql::SqlPool::Postgres(pool) = sql.pool() else {
        panic!("a PostgreSQL pool")
    };
    let leased: Vec<(String, String)> = sqlx::query_as(
        "SELECT id, lease_holder FROM connections \
         WHERE lease_holder IS NOT NULL AND last_synced_at IS NULL",
    )
    .fetch_all(&pool)
    .await
    .expect("the leases");

    // The survivors finish every tenant, the killed worker's included once its leases
    // expire (3 s).
    let synced_count = || {
        let pool = pool.clone();
        async move {
            let count: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM connections WHERE last_synced_at IS NOT NULL",
            )
            .fetch_one(&pool)
            .await
            .expect("the count");
            count
        }
    };
    wait_until(Duration::from_secs(120), "every tenant synced", || {
        let count = synced_count();
        async move { usize::try_from(count.await) == Ok(TENANTS) }
    })
    .await;

    let (by_survivors, survivor_holders) = stop_all(survivors).await;
    let unique: HashSet<&String> = by_survivors.iter().collect();
    assert_eq!(
        unique.len(),
        by_survivors.len(),
        "a tenant synced by both survivors"
    );
    assert!(killed_reports.is_empty(), "killed before its round ended");
    // The killed worker held leases when it died (it was killed mid-round), and each of
    // those tenants was synced by a survivor once its lease expired.
    let cut_off: Vec<&String> = leased
        .iter()
        .filter(|(_, holder)| !survivor_holders.contains(holder))
        .map(|(id, _)| id)
        .collect();
    assert!(!cut_off.is_empty(), "the kill cut no sync off: {leased:?}");
    for id in &cut_off {
        assert!(
            unique.contains(id),
            "{id}: the killed worker's tenant was taken over"
        );
    }

    // Every tenant: synced, its mirror equals its directory, and at most the killed
    // worker's syncs in flight were redone (a delta round started twice).
    let redone = check_every_tenant(&sim, store.as_ref(), &mirror, &linked).await;
    assert!(
        redone <= CONCURRENCY,
        "only the killed worker's {CONCURRENCY} syncs in flight may be redone: {redone}"
    );

    mirror.close().await;
}
