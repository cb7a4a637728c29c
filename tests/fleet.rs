//! The fleet worker (`m365_link_app::worker`) in process, over a multi-tenant tenant-sim
//! and a `SQLite` store: a round syncs every due tenant exactly once, up to its
//! concurrency; a revoked tenant becomes "reconnect needed" while the rest sync; a
//! throttled tenant slows only itself; a failing tenant backs off; a stop frees the
//! leases of the syncs it cut off.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use connection_store::{Claim, ConnectionId, ConnectionStatus, LeaseHolder, OwnerId};
use connection_store_sql::{EncryptionKey, KeyId, KeyRing, SqlStore};
use graph_client::sync::SyncOptions;
use m365_link_app::connect::{SignIn, link_simulated};
use m365_link_app::mirror::{Mirror, UserQuery};
use m365_link_app::store::OpenedStore;
use m365_link_app::worker::{
    MirrorSyncer, Outcome, RoundReport, SyncClaimed as _, Worker, WorkerOptions,
};
use tenant_sim::{FaultKind, FaultSettings, TenantSim, ThrottleSettings};

const HOUR: Duration = Duration::from_secs(3600);
const USERS: usize = 15;

/// A temporary folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("m365-link-fleet-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A simulator of `tenants` tenants, a `SQLite` store with its mirror, and every tenant
/// linked (each by its own customer, so owners differ as in the product).
struct Fleet {
    sim: TenantSim,
    opened: OpenedStore,
    /// Connection id → (owner, tenant id).
    linked: HashMap<ConnectionId, (OwnerId, String)>,
    _dir: TempDir,
}

impl Fleet {
    async fn start(tenants: usize, latency: Duration) -> Self {
        let sim = TenantSim::builder()
            .tenants(tenants)
            .users(USERS)
            .groups(3)
            .seed(11)
            .latency(latency)
            .start()
            .await
            .expect("tenant-sim starts");
        let dir = TempDir::new();
        let keys = KeyRing::new(KeyId::new("test").unwrap(), EncryptionKey::generate());
        let sql = SqlStore::sqlite(dir.0.join("fleet.sqlite"))
            .key_ring(keys)
            .open()
            .await
            .expect("the store opens");
        let mirror = Mirror::open(&sql).await.expect("the mirror opens");
        let opened = OpenedStore {
            store: Arc::new(sql.clone()),
            sql,
            mirror,
            description: "test".to_owned(),
        };
        let sign_in = SignIn::simulated(&sim);
        let mut linked = HashMap::new();
        for (n, tenant) in sim.tenants().iter().enumerate() {
            let owner = OwnerId::new(format!("customer-{n}"));
            let connection = link_simulated(
                &sign_in,
                opened.store.as_ref(),
                &owner,
                tenant.admin_upn(),
                "Microsoft 365",
            )
            .await
            .expect("the tenant links");
            assert_eq!(
                connection.tenant.as_str(),
                tenant.id(),
                "linked the hinted tenant"
            );
            linked.insert(connection.id, (owner, tenant.id().to_owned()));
        }
        Self {
            sim,
            opened,
            linked,
            _dir: dir,
        }
    }

    /// The worker's syncer: into the mirror, signing in as the simulator's app.
    fn syncer(&self) -> MirrorSyncer {
        let app = m365_link_app::glue::App {
            client_id: self.sim.client_id().to_owned(),
            client_secret: Some(self.sim.client_secret().clone()),
        };
        MirrorSyncer::new(
            Arc::clone(&self.opened.store),
            self.opened.sql.clone(),
            self.opened.mirror.clone(),
            app,
            SyncOptions::new(),
            Duration::from_secs(60),
        )
    }

    fn worker(&self, concurrency: usize, grace: Duration) -> Worker {
        let syncer = self.syncer();
        let options = WorkerOptions {
            concurrency,
            interval: HOUR,
            lease_ttl: Duration::from_secs(60),
            grace,
        };
        Worker::new(
            Arc::clone(&self.opened.store),
            LeaseHolder::new(format!("worker-{}", uuid::Uuid::new_v4().simple())).unwrap(),
            options,
            Arc::new(syncer),
        )
    }

    async fn round(&self, worker: &Worker) -> RoundReport {
        let (_stop, mut stopped) = tokio::sync::watch::channel(false);
        worker.round(&mut stopped).await
    }

    fn tenant_of(&self, id: ConnectionId) -> &str {
        &self.linked[&id].1
    }

    fn connection_of(&self, tenant: &str) -> ConnectionId {
        *self
            .linked
            .iter()
            .find(|(_, (_, t))| t == tenant)
            .map(|(id, _)| id)
            .unwrap()
    }

    /// The user ids the mirror holds for `id`, and the ones its tenant has.
    async fn users(&self, id: ConnectionId) -> (BTreeSet<String>, BTreeSet<String>) {
        let mirrored = self
            .opened
            .mirror
            .find_users(id, &UserQuery::new(), 0, 1_000)
            .await
            .unwrap()
            .into_iter()
            .map(|user| user.id.unwrap().as_str().to_owned())
            .collect();
        let directory = self
            .sim
            .tenant_control(self.tenant_of(id))
            .unwrap()
            .users()
            .into_iter()
            .map(|user| user.id)
            .collect();
        (mirrored, directory)
    }

    /// Users delta rounds the simulator saw start, per tenant.
    fn delta_rounds(&self, tenant: &str) -> u64 {
        self.sim
            .tenant_control(tenant)
            .unwrap()
            .counters()
            .first_pages("GET /users/delta")
    }
}

/// Token requests with a refresh token the simulator saw, per tenant.
fn refreshes(fleet: &Fleet, tenant: &str) -> u64 {
    fleet
        .sim
        .tenant_control(tenant)
        .unwrap()
        .counters()
        .tokens()
        .requests("refresh_token")
}

fn outcome_of(report: &RoundReport, id: ConnectionId) -> Option<Outcome> {
    report
        .visits
        .iter()
        .find(|(visited, _)| *visited == id)
        .map(|(_, outcome)| *outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_syncs_every_due_tenant_exactly_once_and_then_nothing_is_due() {
    let fleet = Fleet::start(12, Duration::ZERO).await;
    let worker = fleet.worker(4, Duration::from_secs(30));

    let report = fleet.round(&worker).await;
    assert_eq!(
        (report.claimed, report.synced, report.failed, report.skipped),
        (12, 12, 0, 0),
        "{report:?}"
    );
    // Claimed four at a time, topped up when half were free: more than one claim, far
    // fewer than one per tenant.
    assert!((2..12).contains(&report.claims), "{report:?}");
    assert!(report.lag.is_some());
    for (id, (owner, tenant)) in &fleet.linked {
        assert_eq!(outcome_of(&report, *id), Some(Outcome::Synced));
        let (mirrored, directory) = fleet.users(*id).await;
        assert_eq!(mirrored.len(), USERS, "{tenant}");
        assert_eq!(
            mirrored, directory,
            "{tenant}: the mirror is its own tenant's"
        );
        assert_eq!(fleet.delta_rounds(tenant), 1, "{tenant} synced once");
        let connection = fleet.opened.store.get(owner, *id).await.unwrap();
        assert!(connection.last_synced_at.is_some());
        assert_eq!(connection.failures, 0);
    }

    let again = fleet.round(&worker).await;
    assert_eq!((again.claimed, again.claims), (0, 1), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_tenant_needs_a_reconnect_and_the_others_sync() {
    let fleet = Fleet::start(5, Duration::ZERO).await;
    let revoked = fleet.sim.tenants()[2].clone();
    let control = fleet.sim.tenant_control(revoked.id()).unwrap();
    assert!(control.revoke_user_grants(revoked.admin_upn()).unwrap() > 0);
    let worker = fleet.worker(8, Duration::from_secs(30));

    let report = fleet.round(&worker).await;
    assert_eq!(
        (report.synced, report.needs_reconnect),
        (4, 1),
        "{report:?}"
    );
    let id = fleet.connection_of(revoked.id());
    assert_eq!(outcome_of(&report, id), Some(Outcome::NeedsReconnect));
    let (owner, _) = &fleet.linked[&id];
    let connection = fleet.opened.store.get(owner, id).await.unwrap();
    assert!(
        matches!(connection.status, ConnectionStatus::NeedsReconnect { .. }),
        "{:?}",
        connection.status
    );
    assert!(fleet.users(id).await.0.is_empty(), "nothing mirrored");
    for tenant in fleet
        .sim
        .tenants()
        .iter()
        .filter(|t| t.id() != revoked.id())
    {
        let (mirrored, directory) = fleet.users(fleet.connection_of(tenant.id())).await;
        assert_eq!(mirrored, directory);
    }
    // Never claimed again until an admin reconnects.
    let again = fleet.round(&worker).await;
    assert_eq!(again.claimed, 0, "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_tenant_slows_only_itself() {
    let fleet = Fleet::start(6, Duration::ZERO).await;
    let slow = fleet.sim.tenants()[4].clone();
    // Two resource units a second (burst 1) for this tenant alone: its sync waits out 429s.
    fleet
        .sim
        .tenant_control(slow.id())
        .unwrap()
        .set_throttle(Some(ThrottleSettings::new(2.0, 1.0).unwrap()));
    let worker = fleet.worker(6, Duration::from_secs(30));

    let report = fleet.round(&worker).await;
    assert_eq!(report.synced, 6, "{report:?}");
    let slow_id = fleet.connection_of(slow.id());
    let order: Vec<ConnectionId> = report.visits.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        order.last(),
        Some(&slow_id),
        "the throttled tenant finished last, the others did not wait for it"
    );
    let throttled = |tenant: &str| {
        fleet
            .sim
            .tenant_control(tenant)
            .unwrap()
            .counters()
            .by_status()
            .get(&429)
            .copied()
            .unwrap_or(0)
    };
    assert!(throttled(slow.id()) > 0, "the slow tenant was throttled");
    for tenant in fleet.sim.tenants().iter().filter(|t| t.id() != slow.id()) {
        assert_eq!(
            throttled(tenant.id()),
            0,
            "{} was not throttled",
            tenant.id()
        );
    }
    let (mirrored, directory) = fleet.users(slow_id).await;
    assert_eq!(mirrored, directory);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_tenant_backs_off_instead_of_being_retried_every_round() {
    let fleet = Fleet::start(3, Duration::ZERO).await;
    let failing = fleet.sim.tenants()[1].clone();
    fleet.sim.tenant_control(failing.id()).unwrap().set_faults(
        FaultSettings::none()
            .with_rate(1.0)
            .unwrap()
            .with_kinds(&[FaultKind::InternalServerError])
            .unwrap(),
    );
    let worker = fleet.worker(4, Duration::from_secs(30));

    let report = fleet.round(&worker).await;
    assert_eq!((report.synced, report.failed), (2, 1), "{report:?}");
    let id = fleet.connection_of(failing.id());
    let (owner, _) = &fleet.linked[&id];
    let connection = fleet.opened.store.get(owner, id).await.unwrap();
    assert_eq!(connection.failures, 1);
    assert!(connection.retry_at.is_some(), "a retry time is stored");
    assert!(connection.last_synced_at.is_none());

    // Healthy again, but in backoff: the next round leaves it.
    fleet
        .sim
        .tenant_control(failing.id())
        .unwrap()
        .set_faults(FaultSettings::none());
    let again = fleet.round(&worker).await;
    assert_eq!(again.claimed, 0, "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_frees_the_leases_of_the_syncs_it_cut_off() {
    // Slow Graph: the syncs are still running when the stop comes.
    let fleet = Fleet::start(3, Duration::from_millis(400)).await;
    let worker = fleet.worker(3, Duration::ZERO);
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let round = worker.round(&mut stopped);
    let stop_once_claimed = async {
        // Once all three are claimed (their first Graph requests are in), stop.
        while fleet.sim.counters().total() < 3 {
            tokio::task::yield_now().await;
        }
        stop.send(true).unwrap();
    };
    let (report, ()) = tokio::join!(round, stop_once_claimed);
    assert_eq!((report.claimed, report.synced), (3, 0), "{report:?}");
    // Every lease is free for another worker at once, and nothing was recorded.
    let other = LeaseHolder::new("another-worker").unwrap();
    for (id, (owner, _)) in &fleet.linked {
        let store = &fleet.opened.store;
        assert!(
            store
                .acquire_lease(owner, *id, &other, Duration::from_secs(60))
                .await
                .unwrap()
                .is_some(),
            "{id}: lease freed"
        );
        assert!(
            store
                .get(owner, *id)
                .await
                .unwrap()
                .last_synced_at
                .is_none()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_keeps_each_tenants_session_so_a_cae_token_serves_every_round() {
    let fleet = Fleet::start(4, Duration::ZERO).await;
    let syncer = fleet.syncer();
    let holder = LeaseHolder::new("worker-kept-sessions").unwrap();
    // Three rounds of claimed syncs of every tenant through one syncer, as a worker's
    // rounds run them (each under its own lease).
    let round = |expected: &'static [Outcome]| {
        let (fleet, syncer, holder) = (&fleet, &syncer, &holder);
        async move {
            let mut outcomes = Vec::new();
            for (id, (owner, _)) in &fleet.linked {
                let store = fleet.opened.store.as_ref();
                let connection = store.get(owner, *id).await.unwrap();
                let lease = store
                    .acquire_lease(owner, *id, holder, Duration::from_secs(60))
                    .await
                    .unwrap()
                    .expect("the lease is free");
                let claim = Claim::new(connection, lease);
                outcomes.push((*id, syncer.sync(&claim, holder).await));
            }
            for (_, outcome) in &outcomes {
                assert!(expected.contains(outcome), "{outcomes:?}");
            }
            outcomes
        }
    };
    for n in 1..=3 {
        round(&[Outcome::Synced]).await;
        for tenant in fleet.sim.tenants() {
            assert_eq!(fleet.delta_rounds(tenant.id()), n, "{}", tenant.id());
            // One refresh (the first round's, from the stored refresh token); the CAE
            // token it gave (cp1 is declared) lives 28 hours and serves the next rounds.
            assert_eq!(
                refreshes(&fleet, tenant.id()),
                1,
                "round {n}: {}",
                tenant.id()
            );
        }
    }

    // Revoked: the kept session's token is challenged at the next request, the refresh
    // with the claims is refused, and the tenant needs a reconnect; the others go on.
    let revoked = fleet.sim.tenants()[1].clone();
    let control = fleet.sim.tenant_control(revoked.id()).unwrap();
    control
        .revoke_sign_in_sessions(revoked.admin_upn())
        .unwrap();
    let outcomes = round(&[Outcome::Synced, Outcome::NeedsReconnect]).await;
    let id = fleet.connection_of(revoked.id());
    for (visited, outcome) in &outcomes {
        let expected = if *visited == id {
            Outcome::NeedsReconnect
        } else {
            Outcome::Synced
        };
        assert_eq!(*outcome, expected);
    }
    assert_eq!(control.counters().claims_challenges(), 1);
    assert_eq!(refreshes(&fleet, revoked.id()), 2);
    let (owner, _) = &fleet.linked[&id];
    let connection = fleet.opened.store.get(owner, id).await.unwrap();
    assert!(
        matches!(
            connection.status,
            ConnectionStatus::NeedsReconnect {
                claims: Some(_),
                ..
            }
        ),
        "{:?}",
        connection.status
    );
}
