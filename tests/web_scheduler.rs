//! The web example's scheduled sync: every connection is synced by delta once per
//! interval into the directory mirror, under the store's sync lease, so that two
//! instances of the app sharing one database never sync the same connection at once,
//! and instances that take turns keep one consistent mirror. Two `AppState`s (two app
//! instances, each with its own store handle, mirror pool and data folder) over one
//! `SQLite` file, and the same over `PostgreSQL` when `TEST_POSTGRES_URL` is set.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connection_store::{
    Clock, ConnectionId, ConnectionStatus, LeaseHolder, ManualClock, OwnerId, SystemClock,
};
use connection_store_sql::{EncryptionKey, KeyId, KeyRing, SqlStore};
use entra_auth::{Authority, CallbackParams};
use graph_client::sync::{Directory, MemberType, MemorySink, NoProgress, SyncOptions};
use graph_client::{Group, ObjectId, User};
use m365_link_app::connect::{SignIn, new_connection};
use m365_link_app::mirror::{Mirror, UserQuery};
use m365_link_app::store::OpenedStore;
use m365_link_app::web;
use m365_link_app::web::AppState;
use m365_link_app::web::accounts::Customer;
use m365_link_app::web::jobs::JobState;
use m365_link_app::web::scheduler::round;
use m365_link_app::worker::{Outcome, RoundReport};
use secrecy::SecretString as Secret;
use tenant_sim::{ConsentMode, Deletion, TenantSim, UserFields};
use time::OffsetDateTime;

mod support;
use support::{Hook, HookedStore};

const HOUR: Duration = web::DEFAULT_SYNC_INTERVAL;

async fn sim() -> TenantSim {
    TenantSim::builder()
        .users(12)
        .groups(3)
        .seed(7)
        .consent_mode(ConsentMode::AutoConsent)
        .start()
        .await
        .expect("tenant-sim starts")
}

/// A temporary folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("m365-link-web-sched-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `n` customers, unique per run (so runs sharing a database never meet).
fn customers(n: usize) -> Vec<Customer> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    (0..n)
        .map(|i| {
            Customer::new(
                &format!("c{i}-{}@example.com", &run[..8]),
                &Secret::from("pw"),
            )
        })
        .collect()
}

/// One app instance: its state over `opened`, its own data folder under `dir`.
fn instance(
    sim: &TenantSim,
    opened: &OpenedStore,
    customers: &[Customer],
    dir: &Path,
    name: &str,
) -> AppState {
    let mut config = web::Config::new(SignIn::simulated(sim), dir.join(name));
    config.customers = customers.to_vec();
    config.sync_interval = Some(HOUR);
    AppState::new(config, opened, "http://localhost:1").expect("the app state")
}

/// Links the simulator's tenant for `owner` as the callback would: the authorize URL
/// (the simulator consents at once), the code redeemed, the connection stored.
async fn link(state: &AppState, owner: &OwnerId, name: &str) -> ConnectionId {
    let authority = Authority::parse(&state.config().sign_in.authority).unwrap();
    let (url, pending) = state
        .entra()
        .authorization_request()
        .authority(authority)
        .build()
        .unwrap()
        .into_parts();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = browser.get(url.as_str()).send().await.unwrap();
    let location = answer.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap();
    let query = url::Url::parse(location)
        .unwrap()
        .query()
        .unwrap()
        .to_owned();
    let params = CallbackParams::from_query(&query).unwrap();
    let grant = state
        .entra()
        .complete_authorization(&pending, &params)
        .await
        .expect("the code is redeemed");
    let new = new_connection(name, state.config().sign_in.cloud.clone(), &grant);
    state.store().create(owner, new).await.unwrap().id
}

/// How many syncs of connection `id` the mirror committed, as instance `state` reads it.
async fn commits(state: &AppState, id: ConnectionId) -> u64 {
    state
        .mirror()
        .state(id)
        .await
        .expect("the mirror state")
        .map_or(0, |mirrored| mirrored.commits)
}

/// What the round did with connection `id`; `None` when it did not claim it (not due,
/// leased elsewhere, or needing an admin).
fn outcome_of(report: &RoundReport, id: ConnectionId) -> Option<Outcome> {
    let mut visits = report.visits.iter().filter(|(visited, _)| *visited == id);
    let outcome = visits.next().map(|(_, outcome)| *outcome);
    assert!(
        visits.next().is_none(),
        "{id} was claimed twice: {report:?}"
    );
    outcome
}

/// A store and its mirror as `m365_link_app::store::open` gives them.
async fn opened(sql: SqlStore) -> OpenedStore {
    let mirror = Mirror::open(&sql).await.expect("the mirror opens");
    OpenedStore {
        store: Arc::new(sql.clone()),
        sql,
        mirror,
        description: "test".to_owned(),
    }
}

async fn sqlite(path: &Path, key: &EncryptionKey) -> OpenedStore {
    sqlite_with_clock(path, key, Arc::new(SystemClock)).await
}

async fn sqlite_with_clock(path: &Path, key: &EncryptionKey, clock: Arc<dyn Clock>) -> OpenedStore {
    let keys = KeyRing::new(
        KeyId::new("test").unwrap(),
        EncryptionKey::from_base64(&key.to_base64()).unwrap(),
    );
    let sql = SqlStore::sqlite(path)
        .key_ring(keys)
        .clock(clock)
        .open()
        .await
        .expect("the SQLite store opens");
    opened(sql).await
}

/// The `PostgreSQL` tests keep their tables in this schema; every run uses its own
/// customers and deletes its connections at the end.
const PG_SCHEMA: &str = "m365_link_web_scheduler";

async fn postgres(key: &EncryptionKey) -> OpenedStore {
    let url = std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("set TEST_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run the PostgreSQL tests")
    });
    let keys = KeyRing::new(
        KeyId::new("test").unwrap(),
        EncryptionKey::from_base64(&key.to_base64()).unwrap(),
    );
    let sql = SqlStore::postgres(url)
        .schema(PG_SCHEMA)
        .key_ring(keys)
        .max_connections(4)
        .open()
        .await
        .expect("the PostgreSQL store opens");
    opened(sql).await
}

// ---------------------------------------------------------------------------------------
// Two instances, one database
// ---------------------------------------------------------------------------------------

/// Two instances over two handles on one database run a round at the same moment:
/// every connection is synced exactly once in all (the other instance finds its lease
/// held, or finds it no longer due under the lease), and then is not due for either.
async fn two_instances_sync_each_connection(first: &OpenedStore, second: &OpenedStore) {
    let sim = sim().await;
    let dir = TempDir::new();
    let customers = customers(4);
    let a = instance(&sim, first, &customers, &dir.0, "a");
    let b = instance(&sim, second, &customers, &dir.0, "b");
    // One connection per customer (a tenant is linked once per owner), created through
    // either instance.
    let mut ids = Vec::new();
    for (n, customer) in customers.iter().enumerate() {
        let via = if n % 2 == 0 { &a } else { &b };
        ids.push((
            customer.owner(),
            link(via, &customer.owner(), "Tenant").await,
        ));
    }

    let now = OffsetDateTime::now_utc();
    let (visits_a, visits_b) = tokio::join!(round(&a, HOUR), round(&b, HOUR));
    // Each connection is claimed by exactly one of them, and synced.
    assert_eq!(
        visits_a.claimed + visits_b.claimed,
        ids.len(),
        "{visits_a:?} {visits_b:?}"
    );
    for (owner, id) in &ids {
        let outcomes = [outcome_of(&visits_a, *id), outcome_of(&visits_b, *id)];
        let synced = outcomes
            .iter()
            .filter(|o| **o == Some(Outcome::Synced))
            .count();
        assert_eq!(synced, 1, "{id}: {outcomes:?}");
        assert!(
            outcomes.contains(&None),
            "{id}: claimed by both: {outcomes:?}"
        );
        // One commit in the mirror, as both instances read it, and no data folder.
        for instance in [&a, &b] {
            assert_eq!(commits(instance, *id).await, 1, "{id}");
            assert!(!instance.connection_dir(*id).exists(), "{id}");
        }
        let connection = a.store().get(owner, *id).await.unwrap();
        assert!(connection.last_synced_at.is_some_and(|at| at >= now));
    }
    // Nothing is due for either instance any more.
    let (again_a, again_b) = tokio::join!(round(&a, HOUR), round(&b, HOUR));
    assert_eq!(
        (again_a.claimed, again_b.claimed),
        (0, 0),
        "{again_a:?} {again_b:?}"
    );

    for (owner, id) in ids {
        a.store().delete(&owner, id).await.unwrap();
        assert_eq!(
            commits(&b, id).await,
            0,
            "the mirror went with the connection"
        );
    }
}

async fn shared_sqlite(dir: &TempDir) -> (OpenedStore, OpenedStore) {
    let key = EncryptionKey::generate();
    let path = dir.0.join("connections.sqlite");
    (sqlite(&path, &key).await, sqlite(&path, &key).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_sqlite_file_sync_each_connection_exactly_once() {
    let dir = TempDir::new();
    let (first, second) = shared_sqlite(&dir).await;
    Box::pin(two_instances_sync_each_connection(&first, &second)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_sqlite_file_taking_turns_keep_the_mirror_a_fresh_import() {
    let dir = TempDir::new();
    let (first, second) = shared_sqlite(&dir).await;
    Box::pin(two_instances_take_turns(&first, &second)).await;
}

/// Runs with CI's `-- --include-ignored postgres`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs TEST_POSTGRES_URL (PostgreSQL)"]
async fn two_instances_on_one_postgres_database_sync_every_connection_under_the_lease() {
    let key = EncryptionKey::generate();
    let first = postgres(&key).await;
    let second = postgres(&key).await;
    Box::pin(two_instances_sync_each_connection(&first, &second)).await;
    Box::pin(two_instances_take_turns(&first, &second)).await;
}

/// A connection's directory: users, groups and direct memberships by id.
#[derive(Debug, PartialEq)]
struct Content {
    users: BTreeMap<ObjectId, User>,
    groups: BTreeMap<ObjectId, Group>,
    members: BTreeMap<ObjectId, BTreeMap<ObjectId, MemberType>>,
}

impl Content {
    fn of(directory: &Directory) -> Self {
        Self {
            users: directory.users().clone(),
            groups: directory.groups().clone(),
            members: directory.members().clone(),
        }
    }

    /// What `mirror` holds of connection `id`, read page by page.
    async fn mirrored(mirror: &Mirror, id: ConnectionId) -> Self {
        let mut users = BTreeMap::new();
        loop {
            let page = mirror
                .find_users(id, &UserQuery::new(), users.len() as u64, 7)
                .await
                .expect("a page of users");
            if page.is_empty() {
                break;
            }
            for user in page {
                let key = user.id.clone().expect("an id");
                assert!(users.insert(key, user).is_none(), "a user twice");
            }
        }
        let groups: BTreeMap<ObjectId, Group> = mirror
            .groups_page(id, 0, 1_000)
            .await
            .expect("the groups")
            .into_iter()
            .map(|group| (group.id.clone().expect("an id"), group))
            .collect();
        let mut members = BTreeMap::new();
        for group in groups.keys() {
            let of: BTreeMap<ObjectId, MemberType> = mirror
                .members(id, group)
                .await
                .expect("the members")
                .into_iter()
                .map(|member| (member.id, member.member_type))
                .collect();
            if !of.is_empty() {
                members.insert(group.clone(), of);
            }
        }
        Self {
            users,
            groups,
            members,
        }
    }
}

/// Instance a imports a connection; the tenant changes (a user edited, one added, one
/// deleted, a membership added and one removed); instance b, over its own handle on the
/// same database, syncs it by delta. The mirror, as either instance reads it, then holds
/// exactly what a fresh full import of the tenant gives.
async fn two_instances_take_turns(first: &OpenedStore, second: &OpenedStore) {
    let sim = sim().await;
    let dir = TempDir::new();
    let customers = customers(1);
    let owner = customers[0].owner();
    let a = instance(&sim, first, &customers, &dir.0, "a");
    let b = instance(&sim, second, &customers, &dir.0, "b");
    let id = link(&a, &owner, "Germany").await;

    assert_eq!(web::jobs::run(&a, &owner, id).await, Outcome::Synced);
    assert!(matches!(a.jobs().state(id), JobState::Done { ref kind, .. } if kind == "full"));
    let imported = Content::mirrored(b.mirror(), id).await;
    assert_eq!(imported.users.len(), sim.control().users().len());

    let control = sim.control();
    let users: Vec<_> = control
        .users()
        .into_iter()
        .filter(|u| !u.is_admin)
        .collect();
    let mut groups = control.groups();
    groups.sort_by_key(|g| std::cmp::Reverse(g.member_count));
    let mut edit = UserFields::new().job_title("Chief Turn Taker");
    edit.city = Some("Zürich".to_owned());
    control.update_user(&users[0].id, &edit).unwrap();
    let new = UserFields::new()
        .display_name("Nina Neu")
        .department("Sales");
    let added = control.add_user(&new).unwrap();
    control
        .delete_user(&users[1].id, Deletion::Permanent)
        .unwrap();
    assert!(control.add_member(&groups[1].id, &added.id).unwrap());
    let leaving = control.group_member_ids(&groups[0].id).unwrap()[0].clone();
    assert!(control.remove_member(&groups[0].id, &leaving).unwrap());

    assert_eq!(web::jobs::run(&b, &owner, id).await, Outcome::Synced);
    let JobState::Done { kind, changed, .. } = b.jobs().state(id) else {
        panic!("b's sync did not finish: {:?}", b.jobs().state(id));
    };
    assert_eq!(kind, "delta");
    assert!(changed >= 3, "edited, added and deleted: {changed}");
    assert_eq!(commits(&a, id).await, 2);

    let linked = b.linked(&owner, id).await.unwrap();
    let mut fresh = MemorySink::new();
    let options = SyncOptions::new().user_select(web::employees::USER_SELECT);
    graph_client::sync::run(&linked.graph, &mut fresh, &options, &NoProgress)
        .await
        .expect("a fresh full import");
    let expected = Content::of(fresh.directory());
    for state in [&a, &b] {
        let mirrored = Content::mirrored(state.mirror(), id).await;
        assert_eq!(mirrored, expected, "the mirror equals a fresh import");
    }
    assert_ne!(imported, expected, "the tenant did change");
    let edited = &expected.users[&ObjectId::new(users[0].id.as_str())];
    assert_eq!(edited.job_title.as_deref(), Some("Chief Turn Taker"));
    assert!(
        !expected
            .users
            .contains_key(&ObjectId::new(users[1].id.as_str()))
    );

    a.store().delete(&owner, id).await.unwrap();
    assert_eq!(
        commits(&b, id).await,
        0,
        "the mirror went with the connection"
    );
}

// ---------------------------------------------------------------------------------------
// The lease, and what is due
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_held_lease_skips_the_connection_until_it_is_released() {
    let sim = sim().await;
    let dir = TempDir::new();
    let opened = sqlite(
        &dir.0.join("connections.sqlite"),
        &EncryptionKey::generate(),
    )
    .await;
    let store = Arc::clone(&opened.store);
    let customers = customers(1);
    let owner = customers[0].owner();
    let app = instance(&sim, &opened, &customers, &dir.0, "a");
    let id = link(&app, &owner, "Germany").await;

    let other = LeaseHolder::new("other-instance").unwrap();
    let lease = store
        .acquire_lease(&owner, id, &other, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(lease.is_some());
    let visits = round(&app, HOUR).await;
    assert_eq!(
        outcome_of(&visits, id),
        None,
        "a leased connection is not claimed"
    );
    assert_eq!(
        commits(&app, id).await,
        0,
        "nothing committed to the mirror"
    );
    assert!(
        store
            .get(&owner, id)
            .await
            .unwrap()
            .last_synced_at
            .is_none()
    );
    // Another instance's sync is not this instance's failure: the page stays as it was.
    assert_eq!(app.jobs().state(id).name(), "idle");

    // Still held at the next round; then released.
    let visits = round(&app, HOUR).await;
    assert_eq!(outcome_of(&visits, id), None);
    store.release_lease(&owner, id, &other).await.unwrap();
    let visits = round(&app, HOUR).await;
    assert_eq!(outcome_of(&visits, id), Some(Outcome::Synced));
    assert_eq!(commits(&app, id).await, 1);
    assert!(
        store
            .get(&owner, id)
            .await
            .unwrap()
            .last_synced_at
            .is_some()
    );
    // The sync freed the lease again.
    let free = store
        .acquire_lease(&owner, id, &other, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(free.is_some(), "the lease was released after the sync");
}

#[tokio::test]
async fn a_round_syncs_what_is_due_by_delta_and_skips_what_needs_an_admin() {
    let sim = sim().await;
    let dir = TempDir::new();
    // The store's clock decides what is due; it is moved by hand.
    let clock = ManualClock::new(OffsetDateTime::now_utc());
    let opened = sqlite_with_clock(
        &dir.0.join("connections.sqlite"),
        &EncryptionKey::generate(),
        Arc::new(clock.clone()),
    )
    .await;
    let store = Arc::clone(&opened.store);
    let customers = customers(3);
    let app = instance(&sim, &opened, &customers, &dir.0, "a");
    let mut ids = Vec::new();
    for customer in &customers {
        ids.push(link(&app, &customer.owner(), "Tenant").await);
    }

    // Never synced: all due, a full import each.
    let visits = round(&app, HOUR).await;
    for id in &ids {
        assert_eq!(outcome_of(&visits, *id), Some(Outcome::Synced));
        assert!(matches!(app.jobs().state(*id), JobState::Done { ref kind, .. } if kind == "full"));
    }
    let synced_at: HashMap<ConnectionId, OffsetDateTime> = {
        let mut map = HashMap::new();
        for (customer, id) in customers.iter().zip(&ids) {
            let connection = store.get(&customer.owner(), *id).await.unwrap();
            map.insert(*id, connection.last_synced_at.unwrap());
        }
        map
    };

    // Right after: nothing is due, nothing runs.
    let visits = round(&app, HOUR).await;
    assert_eq!(visits.claimed, 0, "{visits:?}");
    // Just short of the interval: still not due.
    let earliest = synced_at.values().min().unwrap();
    clock.set(*earliest + HOUR - Duration::from_secs(1));
    let visits = round(&app, HOUR).await;
    assert_eq!(visits.claimed, 0, "{visits:?}");

    // One connection needs a reconnect, one is disabled: skipped until an admin acts.
    let needs = ConnectionStatus::NeedsReconnect {
        reason: "AADSTS50173".to_owned(),
        since: OffsetDateTime::now_utc(),
        claims: None,
    };
    store
        .set_status(&customers[1].owner(), ids[1], needs)
        .await
        .unwrap();
    store
        .set_status(&customers[2].owner(), ids[2], ConnectionStatus::Disabled)
        .await
        .unwrap();

    // An interval later the active one is synced again, by delta.
    clock.set(*synced_at.values().max().unwrap() + HOUR);
    let visits = round(&app, HOUR).await;
    assert_eq!(visits.claimed, 1, "{visits:?}");
    assert_eq!(outcome_of(&visits, ids[0]), Some(Outcome::Synced));
    assert!(
        matches!(app.jobs().state(ids[0]), JobState::Done { ref kind, .. } if kind == "delta"),
        "{:?}",
        app.jobs().state(ids[0])
    );
    assert_eq!(outcome_of(&visits, ids[1]), None);
    assert_eq!(outcome_of(&visits, ids[2]), None);
    let first = store.get(&customers[0].owner(), ids[0]).await.unwrap();
    assert!(first.last_synced_at.unwrap() > synced_at[&ids[0]]);
    for (customer, id) in customers.iter().zip(&ids).skip(1) {
        let skipped = store.get(&customer.owner(), *id).await.unwrap();
        assert_eq!(
            skipped.last_synced_at,
            Some(synced_at[id]),
            "{id} not synced"
        );
    }
}

// ---------------------------------------------------------------------------------------
// A connection synced by another instance between "due" and the lease
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_connection_synced_by_another_instance_meanwhile_is_not_synced_again() {
    let sim = sim().await;
    let dir = TempDir::new();
    let opened = sqlite(
        &dir.0.join("connections.sqlite"),
        &EncryptionKey::generate(),
    )
    .await;
    let store = Arc::clone(&opened.store);
    let customers = customers(1);
    let owner = customers[0].owner();
    let a = instance(&sim, &opened, &customers, &dir.0, "a");
    let id = link(&a, &owner, "Germany").await;

    // Instance b's round starts; before b claims, instance a syncs the connection
    // completely (takes the lease, writes, records the sync, frees the lease).
    let synced_by_a = Arc::new(Mutex::new(None));
    let hook: Hook = {
        let (a, owner, synced_by_a) = (a.clone(), owner.clone(), synced_by_a.clone());
        Box::new(move || {
            Box::pin(async move {
                let outcome = web::jobs::run(&a, &owner, id).await;
                *synced_by_a.lock().unwrap() = Some(outcome);
            })
        })
    };
    let racing = OpenedStore {
        store: Arc::new(HookedStore::new(store.clone()).before_first_claim(hook)),
        sql: opened.sql.clone(),
        mirror: opened.mirror.clone(),
        description: "racing".to_owned(),
    };
    let b = instance(&sim, &racing, &customers, &dir.0, "b");
    let visits = round(&b, HOUR).await;
    assert_eq!(*synced_by_a.lock().unwrap(), Some(Outcome::Synced));
    assert_eq!(
        outcome_of(&visits, id),
        None,
        "synced twice: b claimed a connection a had just synced"
    );
    assert_eq!(commits(&b, id).await, 1, "b committed a second sync");
}

// ---------------------------------------------------------------------------------------
// The scheduler and this instance's own syncs
// ---------------------------------------------------------------------------------------

/// A "Sync now" running in this instance: the scheduler leaves the connection alone
/// (it frees the lease it claimed at once, so that sync does not find it "held"), and
/// syncs it at the next round once it is free.
#[tokio::test]
async fn a_sync_running_here_is_left_alone_and_its_lease_untouched() {
    let sim = sim().await;
    let dir = TempDir::new();
    let opened = sqlite(
        &dir.0.join("connections.sqlite"),
        &EncryptionKey::generate(),
    )
    .await;
    let store = Arc::clone(&opened.store);
    let customers = customers(1);
    let owner = customers[0].owner();
    let app = instance(&sim, &opened, &customers, &dir.0, "a");
    let id = link(&app, &owner, "Germany").await;

    // What `jobs::spawn` does first when "Sync now" is pressed.
    let before = app.jobs().claim(id).expect("nothing runs yet");
    assert_eq!(before, JobState::Idle);
    let visits = round(&app, HOUR).await;
    assert_eq!(outcome_of(&visits, id), Some(Outcome::AlreadyRunning));
    // The lease is free for that sync: the scheduler gave back what it claimed.
    let other = LeaseHolder::new("the-sync-now").unwrap();
    assert!(
        store
            .acquire_lease(&owner, id, &other, Duration::from_secs(60))
            .await
            .unwrap()
            .is_some()
    );
    store.release_lease(&owner, id, &other).await.unwrap();
    assert_eq!(app.jobs().state(id).name(), "running");

    app.jobs().unclaim(id, before);
    let visits = round(&app, HOUR).await;
    assert_eq!(outcome_of(&visits, id), Some(Outcome::Synced));
    assert_eq!(commits(&app, id).await, 1);
}

/// A connection removed while its sync runs leaves no mirror rows and no files behind,
/// whatever point the sync had reached, and no job state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_connection_while_it_syncs_leaves_no_mirror_rows_and_no_files() {
    let sim = TenantSim::builder()
        .users(40)
        .groups(4)
        .seed(7)
        .latency(Duration::from_millis(40))
        .consent_mode(ConsentMode::AutoConsent)
        .start()
        .await
        .expect("tenant-sim starts");
    let dir = TempDir::new();
    let opened = sqlite(
        &dir.0.join("connections.sqlite"),
        &EncryptionKey::generate(),
    )
    .await;
    let store = Arc::clone(&opened.store);
    let customers = customers(1);
    let owner = customers[0].owner();
    let app = instance(&sim, &opened, &customers, &dir.0, "a");
    let id = link(&app, &owner, "Germany").await;

    let sync = tokio::spawn({
        let (app, owner) = (app.clone(), owner.clone());
        async move { web::jobs::run(&app, &owner, id).await }
    });
    // Remove it once the sync is under way, as the remove route does.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !matches!(
        app.jobs().state(id),
        JobState::Running { phase: Some(_), .. }
    ) {
        assert!(
            std::time::Instant::now() < deadline,
            "the sync never started"
        );
        tokio::task::yield_now().await;
    }
    // A scope saved just before, as the Manage page does.
    let dir_of_connection = app.connection_dir(id);
    std::fs::create_dir_all(&dir_of_connection).unwrap();
    std::fs::write(dir_of_connection.join("scope.json"), "{}").unwrap();
    store.delete(&owner, id).await.unwrap();
    app.forget_connection(id).await;

    let outcome = sync.await.unwrap();
    assert_ne!(
        outcome,
        Outcome::Synced,
        "a removed connection is not synced"
    );
    assert!(
        !dir_of_connection.exists(),
        "the removed connection's folder came back"
    );
    assert_eq!(app.jobs().state(id), JobState::Idle);
    let mirror = app.mirror();
    assert_eq!(mirror.state(id).await.unwrap(), None, "no mirror state");
    assert_eq!(mirror.count_users(id, &UserQuery::new()).await.unwrap(), 0);
    assert!(mirror.groups_page(id, 0, 10).await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------
// One token session per connection
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_uses_of_a_connection_redeem_its_refresh_token_once() {
    let sim = sim().await;
    let dir = TempDir::new();
    let opened = sqlite(
        &dir.0.join("connections.sqlite"),
        &EncryptionKey::generate(),
    )
    .await;
    let store = Arc::clone(&opened.store);
    let customers = customers(1);
    let owner = customers[0].owner();
    let app = instance(&sim, &opened, &customers, &dir.0, "a");
    let id = link(&app, &owner, "Germany").await;
    let version_before = store.load_token(&owner, id).await.unwrap().version;

    // Six photo thumbnails of a page that opens the connection for the first time.
    let uses = (0..6).map(|_| {
        let app = app.clone();
        let owner = owner.clone();
        tokio::spawn(async move {
            let linked = app.linked(&owner, id).await.unwrap();
            linked.graph.users().list().top(1).send().await.unwrap();
        })
    });
    for used in futures::future::join_all(uses).await {
        used.unwrap();
    }

    // Each redemption rotates the refresh token, which bumps its stored version.
    let version_after = store.load_token(&owner, id).await.unwrap().version;
    assert_eq!(
        version_after.get(),
        version_before.get() + 1,
        "one refresh for six first uses"
    );
    // Another customer gets a 404-like error, not the cached session.
    let stranger = OwnerId::new("someone-else@example.com");
    assert!(app.linked(&stranger, id).await.is_err());
}
