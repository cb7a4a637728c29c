//! Conformance test kit: every rule of [`ConnectionStore`], run against any backend.
//!
//! Call [`run`] from one test of your backend with a factory that returns a fresh, empty
//! store on the given [`ManualClock`]; it runs every check below on its own store, and
//! panics (with the check's name and the failed expectation) on the first broken rule.
//! Each check also uses owner ids of its own, so a factory may hand out stores that
//! share one database.
//!
//! Run it on a multi-threaded runtime so that the concurrency checks really race:
//!
//! ```
//! use std::sync::Arc;
//! use connection_store::{MemoryStore, testkit};
//!
//! #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
//! async fn memory_store_passes_the_testkit() {
//!     testkit::run(|clock| async move { MemoryStore::with_clock(Arc::new(clock)) }).await;
//! }
//! # fn main() {}
//! ```
//!
//! The finer functions (one per rule) take the store and its clock, for a backend that
//! wants one test per rule or to debug one.

#![expect(
    clippy::missing_panics_doc,
    reason = "every check panics on a broken rule by design, as documented on `run`"
)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::clock::{Clock, ManualClock};
use crate::error::{InvalidNameReason, StoreError};
use crate::model::{
    AdminAccount, Cloud, Connection, ConnectionId, ConnectionStatus, CursorKey, LeaseHolder,
    NewConnection, OwnerId, Reconnect, TenantId, TokenVersion,
};
use crate::store::ConnectionStore;

/// How many tasks race in the concurrency checks.
pub const RACERS: usize = 32;

/// A store under test, as the finer check functions take it.
pub type DynStore = Arc<dyn ConnectionStore>;

/// Runs every check, each on a fresh store from `make_store`.
///
/// `make_store` gets the clock the store must read the time from (for timestamps and
/// lease expiry); the checks move it instead of sleeping.
///
/// # Panics
/// When the store breaks a rule; the message names the check.
pub async fn run<F, Fut, S>(make_store: F)
where
    F: Fn(ManualClock) -> Fut,
    Fut: Future<Output = S>,
    S: ConnectionStore + 'static,
{
    macro_rules! checks {
        ($($check:ident),* $(,)?) => {$(
            {
                let clock = ManualClock::default();
                let store: DynStore = Arc::new(make_store(clock.clone()).await);
                eprintln!("testkit: {}", stringify!($check));
                $check(store, clock).await;
            }
        )*};
    }
    checks!(
        create_get_and_list,
        list_is_per_owner_and_oldest_first,
        names_are_trimmed_and_validated,
        names_are_unique_per_owner_ignoring_case,
        one_connection_per_owner_and_tenant,
        owner_isolation_on_every_method,
        unknown_connection_is_not_found,
        replace_token_is_compare_and_swap,
        replace_token_race_has_exactly_one_winner,
        status_and_sync_time_update_the_record,
        reconnect_replaces_grant_and_reactivates,
        cursors_are_kept_per_connection_and_key,
        long_and_unicode_secrets_round_trip,
        delete_cascades_to_token_cursors_and_lease,
        lease_is_exclusive_renewable_and_releasable,
        expired_lease_can_be_taken_over,
        lease_race_has_exactly_one_holder,
    );
}

/// An owner id unique to this run, so checks never meet each other's data.
pub fn unique_owner(label: &str) -> OwnerId {
    OwnerId::new(format!("{label}-{}", ConnectionId::new()))
}

/// A sample sign-in result for `tenant` named `name`, with refresh token `token`.
pub fn sample_connection(name: &str, tenant: &str, token: &str) -> NewConnection {
    NewConnection {
        name: name.to_owned(),
        tenant: TenantId::new(tenant),
        cloud: Cloud::Global,
        admin: AdminAccount {
            object_id: "00000000-0000-0000-0000-0000000000a1".to_owned(),
            username: "admin@contoso.onmicrosoft.com".to_owned(),
            display_name: Some("Megan Bowen".to_owned()),
        },
        scopes: vec![
            "https://graph.microsoft.com/User.Read.All".to_owned(),
            "https://graph.microsoft.com/Group.Read.All".to_owned(),
        ],
        refresh_token: SecretString::from(token.to_owned()),
    }
}

fn tenant() -> String {
    ConnectionId::new().to_string()
}

fn holder(name: &str) -> LeaseHolder {
    // A fixed, valid id: cannot fail.
    LeaseHolder::new(name).unwrap_or_else(|_| unreachable!("valid holder id"))
}

fn secret(value: &str) -> SecretString {
    SecretString::from(value.to_owned())
}

async fn create(store: &DynStore, owner: &OwnerId, name: &str) -> Connection {
    match store
        .create(owner, sample_connection(name, &tenant(), "rt-1"))
        .await
    {
        Ok(connection) => connection,
        Err(err) => panic!("create {name:?} failed: {err:?}"),
    }
}

async fn token_of(store: &DynStore, owner: &OwnerId, id: ConnectionId) -> (String, TokenVersion) {
    let stored = store.load_token(owner, id).await.expect("load_token");
    (stored.token.expose_secret().to_owned(), stored.version)
}

/// Create stores every field, status active, revision 1, token version 1, and get and
/// list return the same record.
pub async fn create_get_and_list(store: DynStore, clock: ManualClock) {
    let owner = unique_owner("owner");
    let tenant = tenant();
    let mut new = sample_connection("Microsoft 365 – Germany", &tenant, "rt-first");
    new.cloud = Cloud::Custom {
        login: "http://127.0.0.1:1234/".to_owned(),
        graph: "http://127.0.0.1:1234/graph/".to_owned(),
    };
    new.admin.display_name = None;
    let created = store.create(&owner, new).await.expect("create");
    assert_eq!(created.owner, owner);
    assert_eq!(created.name.as_str(), "Microsoft 365 – Germany");
    assert_eq!(created.tenant, TenantId::new(&tenant));
    assert_eq!(
        created.cloud,
        Cloud::Custom {
            login: "http://127.0.0.1:1234/".to_owned(),
            graph: "http://127.0.0.1:1234/graph/".to_owned(),
        }
    );
    assert_eq!(created.admin.username, "admin@contoso.onmicrosoft.com");
    assert_eq!(created.admin.display_name, None);
    assert_eq!(created.scopes.len(), 2);
    assert_eq!(created.status, ConnectionStatus::Active);
    assert_eq!(created.created_at, clock.now());
    assert_eq!(created.updated_at, clock.now());
    assert_eq!(created.last_synced_at, None);
    assert_eq!(created.revision, 1);

    let got = store.get(&owner, created.id).await.expect("get");
    assert_eq!(got, created);
    let listed = store.list(&owner).await.expect("list");
    assert_eq!(listed, vec![created.clone()]);
    assert_eq!(
        token_of(&store, &owner, created.id).await,
        ("rt-first".to_owned(), TokenVersion::FIRST)
    );
    // Every cloud round-trips.
    for (i, cloud) in [
        Cloud::Global,
        Cloud::UsGovernment,
        Cloud::UsGovernmentDod,
        Cloud::China,
    ]
    .into_iter()
    .enumerate()
    {
        let mut new = sample_connection(&format!("cloud {i}"), &self::tenant(), "rt");
        new.cloud = cloud.clone();
        let created = store.create(&owner, new).await.expect("create");
        assert_eq!(
            store.get(&owner, created.id).await.expect("get").cloud,
            cloud
        );
    }
}

/// List shows only the owner's connections, oldest first, creation order on equal times.
pub async fn list_is_per_owner_and_oldest_first(store: DynStore, clock: ManualClock) {
    let owner = unique_owner("owner");
    let other = unique_owner("other");
    assert!(store.list(&owner).await.expect("list").is_empty());
    let first = create(&store, &owner, "first").await;
    clock.advance(Duration::from_secs(1));
    let others = create(&store, &other, "other's").await;
    let second = create(&store, &owner, "second").await;
    let third = create(&store, &owner, "third, same time").await;
    clock.advance(Duration::from_millis(1));
    let fourth = create(&store, &owner, "fourth").await;
    let ids: Vec<_> = store
        .list(&owner)
        .await
        .expect("list")
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, vec![first.id, second.id, third.id, fourth.id]);
    let other_ids: Vec<_> = store
        .list(&other)
        .await
        .expect("list")
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(other_ids, vec![others.id]);
}

fn assert_invalid_name(
    result: Result<Connection, StoreError>,
    want: InvalidNameReason,
    name: &str,
) {
    match result {
        Err(StoreError::InvalidName { reason }) => assert_eq!(reason, want, "name {name:?}"),
        other => panic!("name {name:?}: expected InvalidName({want:?}), got {other:?}"),
    }
}

/// Names are trimmed, 1–120 characters (not bytes), without control characters, on
/// create and on rename; a refused rename changes nothing.
pub async fn names_are_trimmed_and_validated(store: DynStore, _clock: ManualClock) {
    let owner = unique_owner("owner");
    let padded = store
        .create(
            &owner,
            sample_connection("  \t Contoso EU \n", &tenant(), "rt"),
        )
        .await
        .expect("create");
    assert_eq!(padded.name.as_str(), "Contoso EU");

    for name in [
        "ü".repeat(120),
        "🦀".repeat(120),
        "e\u{301}".repeat(60),
        "Microsoft 365 – Deutschland ✓".to_owned(),
        "日本のテナント".to_owned(),
        "x".to_owned(),
    ] {
        let created = store
            .create(
                &owner,
                sample_connection(&format!(" {name} "), &tenant(), "rt"),
            )
            .await
            .unwrap_or_else(|err| panic!("create {name:?}: {err:?}"));
        assert_eq!(created.name.as_str(), name);
        let got = store.get(&owner, created.id).await.expect("get");
        assert_eq!(got.name.as_str(), name);
    }

    for (name, want) in [
        (String::new(), InvalidNameReason::Empty),
        ("  \t\n ".to_owned(), InvalidNameReason::Empty),
        ("a".repeat(121), InvalidNameReason::TooLong { chars: 121 }),
        ("ü".repeat(121), InvalidNameReason::TooLong { chars: 121 }),
        (
            "line\nbreak".to_owned(),
            InvalidNameReason::ControlCharacter,
        ),
        ("bell\u{7}".to_owned(), InvalidNameReason::ControlCharacter),
        (
            "nul\u{0}byte".to_owned(),
            InvalidNameReason::ControlCharacter,
        ),
        ("del\u{7f}".to_owned(), InvalidNameReason::ControlCharacter),
    ] {
        let result = store
            .create(&owner, sample_connection(&name, &tenant(), "rt"))
            .await;
        assert_invalid_name(result, want, &name);
        let result = store.rename(&owner, padded.id, &name).await;
        assert_invalid_name(result, want, &name);
    }
    let unchanged = store.get(&owner, padded.id).await.expect("get");
    assert_eq!(unchanged, padded);
    assert_eq!(store.list(&owner).await.expect("list").len(), 7);
}

/// Names are unique per owner ignoring (Unicode lower-case) case; another owner may use
/// the same name; a connection may be renamed to its own name in another case.
pub async fn names_are_unique_per_owner_ignoring_case(store: DynStore, clock: ManualClock) {
    let owner = unique_owner("owner");
    let other = unique_owner("other");
    let germany = create(&store, &owner, "Microsoft 365 – Germany").await;
    let arger = create(&store, &owner, "ärger Σ").await;
    for (name, existing) in [
        ("MICROSOFT 365 – GERMANY", germany.id),
        ("  microsoft 365 – germany ", germany.id),
        ("ÄRGER σ", arger.id),
    ] {
        match store
            .create(&owner, sample_connection(name, &tenant(), "rt"))
            .await
        {
            Err(StoreError::NameTaken {
                name: taken,
                existing: found,
            }) => {
                assert_eq!(taken, name.trim());
                assert_eq!(found, existing, "{name:?}");
            }
            other => panic!("create {name:?}: expected NameTaken, got {other:?}"),
        }
    }
    match store
        .rename(&owner, arger.id, "microsoft 365 – GERMANY")
        .await
    {
        Err(StoreError::NameTaken { existing, .. }) => assert_eq!(existing, germany.id),
        other => panic!("rename onto a taken name: expected NameTaken, got {other:?}"),
    }
    assert_eq!(store.get(&owner, arger.id).await.expect("get"), arger);

    // Same name under another owner is fine.
    create(&store, &other, "Microsoft 365 – Germany").await;

    // Own name in another case is fine, and bumps the revision.
    clock.advance(Duration::from_secs(5));
    let renamed = store
        .rename(&owner, germany.id, "MICROSOFT 365 – GERMANY")
        .await
        .expect("rename to own name");
    assert_eq!(renamed.name.as_str(), "MICROSOFT 365 – GERMANY");
    assert_eq!(renamed.revision, 2);
    assert_eq!(renamed.updated_at, clock.now());
    assert_eq!(renamed.created_at, germany.created_at);
    assert_eq!(store.get(&owner, germany.id).await.expect("get"), renamed);

    // After a rename the old name is free.
    let moved = store
        .rename(&owner, arger.id, "Contoso")
        .await
        .expect("rename");
    assert_eq!(moved.name.as_str(), "Contoso");
    create(&store, &owner, "ÄRGER σ").await;
    // Names differing only in full case folding are different names (documented).
    create(&store, &owner, "STRASSE").await;
    create(&store, &owner, "straße").await;
}

/// A second create for the same (owner, tenant), in any case, points at the existing
/// connection; another owner may connect the same tenant; after delete it can be
/// connected again.
pub async fn one_connection_per_owner_and_tenant(store: DynStore, _clock: ManualClock) {
    let owner = unique_owner("owner");
    let other = unique_owner("other");
    let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let first = store
        .create(&owner, sample_connection("one", tenant, "rt-1"))
        .await
        .expect("create");
    for (name, spelling) in [("two", tenant.to_owned()), ("one", tenant.to_uppercase())] {
        match store
            .create(&owner, sample_connection(name, &spelling, "rt-2"))
            .await
        {
            Err(StoreError::TenantAlreadyConnected {
                tenant: found,
                existing,
            }) => {
                assert_eq!(existing, first.id);
                assert_eq!(found, TenantId::new(tenant));
            }
            other => panic!("second create: expected TenantAlreadyConnected, got {other:?}"),
        }
    }
    assert_eq!(token_of(&store, &owner, first.id).await.0, "rt-1");
    assert_eq!(store.list(&owner).await.expect("list").len(), 1);

    store
        .create(&other, sample_connection("one", tenant, "rt-other"))
        .await
        .expect("another owner may connect the same tenant");

    store.delete(&owner, first.id).await.expect("delete");
    let again = store
        .create(&owner, sample_connection("one", tenant, "rt-3"))
        .await
        .expect("create after delete");
    assert_ne!(again.id, first.id);
}

fn assert_not_found<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    id: ConnectionId,
    what: &str,
) {
    match result {
        Err(StoreError::NotFound { id: found }) => assert_eq!(found, id, "{what}"),
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

/// Every method called with another owner answers `NotFound` and changes nothing.
#[expect(clippy::too_many_lines, reason = "one assertion per trait method")]
pub async fn owner_isolation_on_every_method(store: DynStore, clock: ManualClock) {
    let owner = unique_owner("owner");
    let intruder = unique_owner("intruder");
    let connection = create(&store, &owner, "mine").await;
    let id = connection.id;
    let users = CursorKey::users();
    store
        .save_cursor(&owner, id, &users, secret("delta-mine"))
        .await
        .expect("save_cursor");
    let mine = holder("owner-replica");
    store
        .acquire_lease(&owner, id, &mine, Duration::from_secs(60))
        .await
        .expect("acquire")
        .expect("lease is free");
    let theirs = holder("intruder-replica");

    assert_not_found(store.get(&intruder, id).await, id, "get");
    assert!(store.list(&intruder).await.expect("list").is_empty());
    assert_not_found(store.rename(&intruder, id, "stolen").await, id, "rename");
    assert_not_found(
        store
            .set_status(&intruder, id, ConnectionStatus::Disabled)
            .await,
        id,
        "set_status",
    );
    assert_not_found(
        store.record_sync(&intruder, id, clock.now()).await,
        id,
        "record_sync",
    );
    assert_not_found(store.load_token(&intruder, id).await, id, "load_token");
    assert_not_found(
        store
            .replace_token(&intruder, id, TokenVersion::FIRST, secret("rt-evil"))
            .await,
        id,
        "replace_token",
    );
    assert_not_found(
        store
            .reconnect(
                &intruder,
                id,
                Reconnect {
                    tenant: connection.tenant.clone(),
                    admin: connection.admin.clone(),
                    scopes: vec![],
                    refresh_token: secret("rt-evil"),
                },
            )
            .await,
        id,
        "reconnect",
    );
    assert_not_found(
        store.load_cursor(&intruder, id, &users).await,
        id,
        "load_cursor",
    );
    assert_not_found(
        store
            .save_cursor(&intruder, id, &users, secret("delta-evil"))
            .await,
        id,
        "save_cursor",
    );
    assert_not_found(
        store.clear_cursor(&intruder, id, &users).await,
        id,
        "clear_cursor",
    );
    assert_not_found(
        store
            .acquire_lease(&intruder, id, &theirs, Duration::from_secs(60))
            .await,
        id,
        "acquire_lease",
    );
    assert_not_found(
        store
            .renew_lease(&intruder, id, &mine, Duration::from_secs(60))
            .await,
        id,
        "renew_lease",
    );
    assert_not_found(
        store.release_lease(&intruder, id, &mine).await,
        id,
        "release_lease",
    );
    assert_not_found(store.delete(&intruder, id).await, id, "delete");

    // Nothing changed.
    assert_eq!(store.get(&owner, id).await.expect("get"), connection);
    assert_eq!(
        token_of(&store, &owner, id).await,
        ("rt-1".to_owned(), TokenVersion::FIRST)
    );
    let cursor = store
        .load_cursor(&owner, id, &users)
        .await
        .expect("load_cursor")
        .expect("cursor kept");
    assert_eq!(cursor.expose_secret(), "delta-mine");
    // The owner's lease is still held by the owner's replica.
    let other_replica = holder("owner-replica-2");
    assert_eq!(
        store
            .acquire_lease(&owner, id, &other_replica, Duration::from_secs(60))
            .await
            .expect("acquire"),
        None
    );
    store
        .renew_lease(&owner, id, &mine, Duration::from_secs(60))
        .await
        .expect("lease still ours");
}

/// An id that was never created is `NotFound` for every method.
pub async fn unknown_connection_is_not_found(store: DynStore, clock: ManualClock) {
    let owner = unique_owner("owner");
    create(&store, &owner, "exists").await;
    let id = ConnectionId::new();
    let key = CursorKey::groups();
    let h = holder("replica");
    assert_not_found(store.get(&owner, id).await, id, "get");
    assert_not_found(store.rename(&owner, id, "x").await, id, "rename");
    assert_not_found(
        store.set_status(&owner, id, ConnectionStatus::Active).await,
        id,
        "set_status",
    );
    assert_not_found(
        store.record_sync(&owner, id, clock.now()).await,
        id,
        "record_sync",
    );
    assert_not_found(store.load_token(&owner, id).await, id, "load_token");
    assert_not_found(
        store
            .replace_token(&owner, id, TokenVersion::FIRST, secret("rt"))
            .await,
        id,
        "replace_token",
    );
    assert_not_found(store.load_cursor(&owner, id, &key).await, id, "load_cursor");
    assert_not_found(
        store.save_cursor(&owner, id, &key, secret("d")).await,
        id,
        "save_cursor",
    );
    assert_not_found(
        store.clear_cursor(&owner, id, &key).await,
        id,
        "clear_cursor",
    );
    assert_not_found(
        store
            .acquire_lease(&owner, id, &h, Duration::from_secs(1))
            .await,
        id,
        "acquire_lease",
    );
    assert_not_found(
        store
            .renew_lease(&owner, id, &h, Duration::from_secs(1))
            .await,
        id,
        "renew_lease",
    );
    assert_not_found(
        store.release_lease(&owner, id, &h).await,
        id,
        "release_lease",
    );
    assert_not_found(store.delete(&owner, id).await, id, "delete");
}

/// `replace_token` succeeds on the current version only; a stale version is a
/// `Conflict` carrying the current version and leaves the token alone; token writes do
/// not change the record.
pub async fn replace_token_is_compare_and_swap(store: DynStore, clock: ManualClock) {
    let owner = unique_owner("owner");
    let connection = create(&store, &owner, "cas").await;
    let id = connection.id;
    clock.advance(Duration::from_secs(3));
    let v2 = store
        .replace_token(&owner, id, TokenVersion::FIRST, secret("rt-2"))
        .await
        .expect("replace v1");
    assert_eq!(v2, TokenVersion::new(2));
    assert_eq!(token_of(&store, &owner, id).await, ("rt-2".to_owned(), v2));

    match store
        .replace_token(&owner, id, TokenVersion::FIRST, secret("rt-stale"))
        .await
    {
        Err(StoreError::Conflict { expected, current }) => {
            assert_eq!(expected, TokenVersion::FIRST);
            assert_eq!(current, v2);
        }
        other => panic!("stale replace: expected Conflict, got {other:?}"),
    }
    match store
        .replace_token(&owner, id, TokenVersion::new(7), secret("rt-future"))
        .await
    {
        Err(StoreError::Conflict { current, .. }) => assert_eq!(current, v2),
        other => panic!("future version replace: expected Conflict, got {other:?}"),
    }
    assert_eq!(token_of(&store, &owner, id).await, ("rt-2".to_owned(), v2));

    let v3 = store
        .replace_token(&owner, id, v2, secret("rt-3"))
        .await
        .expect("replace v2");
    assert_eq!(v3, TokenVersion::new(3));
    assert_eq!(token_of(&store, &owner, id).await, ("rt-3".to_owned(), v3));
    assert_eq!(store.get(&owner, id).await.expect("get"), connection);
}

/// [`RACERS`] tasks replace the same version at once: exactly one wins, every other gets
/// `Conflict` with the winner's version, and the stored token is the winner's.
pub async fn replace_token_race_has_exactly_one_winner(store: DynStore, _clock: ManualClock) {
    let owner = unique_owner("owner");
    let id = create(&store, &owner, "race").await.id;
    let barrier = Arc::new(Barrier::new(RACERS));
    let mut tasks = JoinSet::new();
    for racer in 0..RACERS {
        let (store, owner, barrier) = (store.clone(), owner.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            let result = store
                .replace_token(
                    &owner,
                    id,
                    TokenVersion::FIRST,
                    secret(&format!("rt-racer-{racer}")),
                )
                .await;
            (racer, result)
        });
    }
    let mut winners = Vec::new();
    let mut conflicts = 0;
    while let Some(joined) = tasks.join_next().await {
        let (racer, result) = joined.expect("racer task panicked");
        match result {
            Ok(version) => {
                assert_eq!(version, TokenVersion::new(2));
                winners.push(racer);
            }
            Err(StoreError::Conflict { current, .. }) => {
                assert_eq!(current, TokenVersion::new(2));
                conflicts += 1;
            }
            Err(other) => panic!("racer {racer}: unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    assert_eq!(conflicts, RACERS - 1);
    assert_eq!(
        token_of(&store, &owner, id).await,
        (format!("rt-racer-{}", winners[0]), TokenVersion::new(2))
    );
}

/// `set_status` and `record_sync` store what they are given, set `updated_at` and bump
/// the revision.
pub async fn status_and_sync_time_update_the_record(store: DynStore, clock: ManualClock) {
    let owner = unique_owner("owner");
    let created = create(&store, &owner, "status").await;
    clock.advance(Duration::from_secs(60));
    let since = clock.now();
    let needs = ConnectionStatus::NeedsReconnect {
        reason: "AADSTS700082: the refresh token has expired".to_owned(),
        since,
    };
    let updated = store
        .set_status(&owner, created.id, needs.clone())
        .await
        .expect("set_status");
    assert_eq!(updated.status, needs);
    assert_eq!(updated.revision, 2);
    assert_eq!(updated.updated_at, since);
    assert_eq!(store.get(&owner, created.id).await.expect("get"), updated);

    clock.advance(Duration::from_secs(60));
    let disabled = store
        .set_status(&owner, created.id, ConnectionStatus::Disabled)
        .await
        .expect("set_status");
    assert_eq!(disabled.status, ConnectionStatus::Disabled);
    assert_eq!(disabled.revision, 3);

    clock.advance(Duration::from_millis(1500));
    let synced_at = clock.now();
    clock.advance(Duration::from_millis(250));
    let synced = store
        .record_sync(&owner, created.id, synced_at)
        .await
        .expect("record_sync");
    assert_eq!(synced.last_synced_at, Some(synced_at));
    assert_eq!(synced.revision, 4);
    assert_eq!(synced.updated_at, clock.now());
    assert_eq!(synced.status, ConnectionStatus::Disabled);
    assert_eq!(store.get(&owner, created.id).await.expect("get"), synced);
}

/// `reconnect` stores the new token (version + 1, whatever was expected), admin and
/// scopes, sets status active, keeps name and cursors; a sign-in to another tenant is
/// refused and changes nothing.
pub async fn reconnect_replaces_grant_and_reactivates(store: DynStore, clock: ManualClock) {
    let owner = unique_owner("owner");
    let created = create(&store, &owner, "reconnect me").await;
    let id = created.id;
    store
        .replace_token(&owner, id, TokenVersion::FIRST, secret("rt-2"))
        .await
        .expect("replace");
    store
        .save_cursor(&owner, id, &CursorKey::users(), secret("delta-u"))
        .await
        .expect("save_cursor");
    store
        .set_status(
            &owner,
            id,
            ConnectionStatus::NeedsReconnect {
                reason: "invalid_grant".to_owned(),
                since: clock.now(),
            },
        )
        .await
        .expect("set_status");

    let admin = AdminAccount {
        object_id: "00000000-0000-0000-0000-0000000000b2".to_owned(),
        username: "it@contoso.onmicrosoft.com".to_owned(),
        display_name: Some("Isaiah Langer".to_owned()),
    };
    let wrong_tenant = store
        .reconnect(
            &owner,
            id,
            Reconnect {
                tenant: TenantId::new(tenant()),
                admin: admin.clone(),
                scopes: vec!["User.Read.All".to_owned()],
                refresh_token: secret("rt-wrong-tenant"),
            },
        )
        .await;
    assert!(
        matches!(wrong_tenant, Err(StoreError::InvalidInput { .. })),
        "reconnect to another tenant: {wrong_tenant:?}"
    );
    assert_eq!(token_of(&store, &owner, id).await.0, "rt-2");

    clock.advance(Duration::from_secs(10));
    let (reconnected, version) = store
        .reconnect(
            &owner,
            id,
            Reconnect {
                tenant: TenantId::new(created.tenant.as_str().to_uppercase()),
                admin: admin.clone(),
                scopes: vec!["User.Read.All".to_owned()],
                refresh_token: secret("rt-reconnected"),
            },
        )
        .await
        .expect("reconnect");
    assert_eq!(version, TokenVersion::new(3));
    assert_eq!(reconnected.status, ConnectionStatus::Active);
    assert_eq!(reconnected.admin, admin);
    assert_eq!(reconnected.scopes, vec!["User.Read.All".to_owned()]);
    assert_eq!(reconnected.name, created.name);
    assert_eq!(reconnected.revision, 3);
    assert_eq!(reconnected.updated_at, clock.now());
    assert_eq!(store.get(&owner, id).await.expect("get"), reconnected);
    assert_eq!(
        token_of(&store, &owner, id).await,
        ("rt-reconnected".to_owned(), version)
    );
    let cursor = store
        .load_cursor(&owner, id, &CursorKey::users())
        .await
        .expect("load_cursor");
    assert_eq!(
        cursor.map(|c| c.expose_secret().to_owned()).as_deref(),
        Some("delta-u")
    );
}

/// Cursors are absent until saved, overwritten by save, removed by clear, and kept apart
/// per key and per connection.
pub async fn cursors_are_kept_per_connection_and_key(store: DynStore, _clock: ManualClock) {
    let owner = unique_owner("owner");
    let a = create(&store, &owner, "a").await.id;
    let b = create(&store, &owner, "b").await.id;
    let users = CursorKey::users();
    let groups = CursorKey::groups();
    let load = |id, key: CursorKey| {
        let (store, owner) = (store.clone(), owner.clone());
        async move {
            store
                .load_cursor(&owner, id, &key)
                .await
                .expect("load_cursor")
                .map(|c| c.expose_secret().to_owned())
        }
    };
    assert_eq!(load(a, users.clone()).await, None);
    store
        .save_cursor(
            &owner,
            a,
            &users,
            secret("https://graph.microsoft.com/v1.0/users/delta?$deltatoken=a1"),
        )
        .await
        .expect("save");
    store
        .save_cursor(
            &owner,
            a,
            &groups,
            secret("https://graph.microsoft.com/v1.0/groups/delta?$deltatoken=g1"),
        )
        .await
        .expect("save");
    store
        .save_cursor(&owner, b, &users, secret("b-users"))
        .await
        .expect("save");
    assert_eq!(
        load(a, users.clone()).await.as_deref(),
        Some("https://graph.microsoft.com/v1.0/users/delta?$deltatoken=a1")
    );
    assert_eq!(
        load(a, groups.clone()).await.as_deref(),
        Some("https://graph.microsoft.com/v1.0/groups/delta?$deltatoken=g1")
    );
    assert_eq!(load(b, users.clone()).await.as_deref(), Some("b-users"));
    assert_eq!(load(b, groups.clone()).await, None);

    store
        .save_cursor(&owner, a, &users, secret("a-users-2"))
        .await
        .expect("overwrite");
    assert_eq!(load(a, users.clone()).await.as_deref(), Some("a-users-2"));

    store.clear_cursor(&owner, a, &users).await.expect("clear");
    store
        .clear_cursor(&owner, a, &users)
        .await
        .expect("clearing a missing cursor is fine");
    assert_eq!(load(a, users.clone()).await, None);
    assert!(load(a, groups.clone()).await.is_some());
    assert_eq!(load(b, users.clone()).await.as_deref(), Some("b-users"));

    let custom = CursorKey::new("users:filtered").expect("valid key");
    store
        .save_cursor(&owner, b, &custom, secret("custom"))
        .await
        .expect("save");
    assert_eq!(load(b, custom).await.as_deref(), Some("custom"));
}

/// Long (16 KiB) and non-ASCII tokens and cursors come back byte for byte.
pub async fn long_and_unicode_secrets_round_trip(store: DynStore, _clock: ManualClock) {
    let owner = unique_owner("owner");
    let id = create(&store, &owner, "long").await.id;
    let long: String = "0.AXoA-long-refresh-token_".repeat(640);
    let v2 = store
        .replace_token(&owner, id, TokenVersion::FIRST, secret(&long))
        .await
        .expect("replace");
    assert_eq!(token_of(&store, &owner, id).await, (long.clone(), v2));
    let unicode = "rt-ünïcødé-🦀-\u{0}-end";
    store
        .replace_token(&owner, id, v2, secret(unicode))
        .await
        .expect("replace");
    assert_eq!(token_of(&store, &owner, id).await.0, unicode);
    store
        .save_cursor(&owner, id, &CursorKey::users(), secret(&long))
        .await
        .expect("save");
    let cursor = store
        .load_cursor(&owner, id, &CursorKey::users())
        .await
        .expect("load")
        .expect("present");
    assert_eq!(cursor.expose_secret(), long);
}

/// Delete removes the connection with its token, cursors and lease; the same name and
/// tenant can be connected again, starting afresh.
pub async fn delete_cascades_to_token_cursors_and_lease(store: DynStore, _clock: ManualClock) {
    let owner = unique_owner("owner");
    let tenant = tenant();
    let keep = create(&store, &owner, "keep").await;
    let doomed = store
        .create(&owner, sample_connection("Doomed", &tenant, "rt-old"))
        .await
        .expect("create");
    let id = doomed.id;
    store
        .replace_token(&owner, id, TokenVersion::FIRST, secret("rt-old-2"))
        .await
        .expect("replace");
    store
        .save_cursor(&owner, id, &CursorKey::users(), secret("delta-old"))
        .await
        .expect("save");
    store
        .acquire_lease(&owner, id, &holder("replica-1"), Duration::from_secs(600))
        .await
        .expect("acquire")
        .expect("free");

    store.delete(&owner, id).await.expect("delete");
    assert_not_found(store.get(&owner, id).await, id, "get after delete");
    assert_not_found(
        store.load_token(&owner, id).await,
        id,
        "load_token after delete",
    );
    assert_not_found(
        store.load_cursor(&owner, id, &CursorKey::users()).await,
        id,
        "load_cursor after delete",
    );
    assert_not_found(
        store
            .acquire_lease(&owner, id, &holder("replica-2"), Duration::from_secs(1))
            .await,
        id,
        "acquire_lease after delete",
    );
    assert_not_found(store.delete(&owner, id).await, id, "second delete");
    assert_eq!(store.list(&owner).await.expect("list"), vec![keep]);

    let again = store
        .create(&owner, sample_connection("DOOMED", &tenant, "rt-new"))
        .await
        .expect("create again");
    assert_ne!(again.id, id);
    assert_eq!(
        token_of(&store, &owner, again.id).await,
        ("rt-new".to_owned(), TokenVersion::FIRST)
    );
    assert!(
        store
            .load_cursor(&owner, again.id, &CursorKey::users())
            .await
            .expect("load_cursor")
            .is_none(),
        "a new connection starts without cursors"
    );
    assert!(
        store
            .acquire_lease(
                &owner,
                again.id,
                &holder("replica-2"),
                Duration::from_secs(1)
            )
            .await
            .expect("acquire")
            .is_some(),
        "a new connection starts without a lease"
    );
}

/// A lease is granted when free, refused to others while held, re-granted (extended) to
/// its holder, renewed only by its holder, and freed only by its holder.
pub async fn lease_is_exclusive_renewable_and_releasable(store: DynStore, clock: ManualClock) {
    let owner = unique_owner("owner");
    let id = create(&store, &owner, "leased").await.id;
    let (one, two) = (holder("replica-1"), holder("replica-2"));
    let ttl = Duration::from_secs(30);

    let lease = store
        .acquire_lease(&owner, id, &one, ttl)
        .await
        .expect("acquire")
        .expect("free lease is granted");
    assert_eq!(lease.id, id);
    assert_eq!(lease.holder, one);
    assert_eq!(lease.expires_at, clock.now() + ttl);

    clock.advance(Duration::from_secs(29));
    assert_eq!(
        store
            .acquire_lease(&owner, id, &two, ttl)
            .await
            .expect("acquire"),
        None,
        "a held lease is refused to another holder"
    );
    match store.renew_lease(&owner, id, &two, ttl).await {
        Err(StoreError::LeaseLost { id: lost, holder }) => {
            assert_eq!(lost, id);
            assert_eq!(holder, two);
        }
        other => panic!("renew by non-holder: expected LeaseLost, got {other:?}"),
    }
    let renewed = store
        .renew_lease(&owner, id, &one, ttl)
        .await
        .expect("holder renews");
    assert_eq!(renewed.expires_at, clock.now() + ttl);
    clock.advance(Duration::from_secs(20));
    let again = store
        .acquire_lease(&owner, id, &one, Duration::from_secs(60))
        .await
        .expect("acquire")
        .expect("holder re-acquires");
    assert_eq!(again.expires_at, clock.now() + Duration::from_secs(60));

    store
        .release_lease(&owner, id, &two)
        .await
        .expect("release by non-holder is a no-op");
    assert_eq!(
        store
            .acquire_lease(&owner, id, &two, ttl)
            .await
            .expect("acquire"),
        None,
        "a non-holder's release does not free the lease"
    );
    store
        .release_lease(&owner, id, &one)
        .await
        .expect("release");
    assert!(
        matches!(
            store.renew_lease(&owner, id, &one, ttl).await,
            Err(StoreError::LeaseLost { .. })
        ),
        "a released lease cannot be renewed"
    );
    let taken = store
        .acquire_lease(&owner, id, &two, ttl)
        .await
        .expect("acquire")
        .expect("a released lease is free");
    assert_eq!(taken.holder, two);
    assert!(
        matches!(
            store.acquire_lease(&owner, id, &one, Duration::ZERO).await,
            Err(StoreError::InvalidInput { .. })
        ),
        "a zero time-to-live is refused"
    );
}

/// Once its time-to-live has passed, a lease goes to the next holder who asks, and the
/// old holder's renew fails with `LeaseLost`; until then it is refused.
pub async fn expired_lease_can_be_taken_over(store: DynStore, clock: ManualClock) {
    let owner = unique_owner("owner");
    let id = create(&store, &owner, "expiring").await.id;
    let (one, two) = (holder("replica-1"), holder("replica-2"));
    let ttl = Duration::from_secs(30);
    store
        .acquire_lease(&owner, id, &one, ttl)
        .await
        .expect("acquire")
        .expect("free");
    clock.advance(Duration::from_millis(29_999));
    assert_eq!(
        store
            .acquire_lease(&owner, id, &two, ttl)
            .await
            .expect("acquire"),
        None,
        "one millisecond before expiry the lease is still held"
    );
    clock.advance(Duration::from_millis(1));
    let taken = store
        .acquire_lease(&owner, id, &two, ttl)
        .await
        .expect("acquire")
        .expect("an expired lease can be taken over");
    assert_eq!(taken.holder, two);
    assert_eq!(taken.expires_at, clock.now() + ttl);
    assert!(
        matches!(
            store.renew_lease(&owner, id, &one, ttl).await,
            Err(StoreError::LeaseLost { .. })
        ),
        "the old holder lost the lease"
    );
    store
        .release_lease(&owner, id, &one)
        .await
        .expect("old holder's release is a no-op");
    assert_eq!(
        store
            .acquire_lease(&owner, id, &one, ttl)
            .await
            .expect("acquire"),
        None,
        "the new holder keeps it"
    );
    // An expired lease nobody took over can still be renewed by its holder.
    clock.advance(ttl + Duration::from_secs(1));
    let renewed = store
        .renew_lease(&owner, id, &two, ttl)
        .await
        .expect("renew after expiry without takeover");
    assert_eq!(renewed.expires_at, clock.now() + ttl);
}

/// [`RACERS`] holders race for one free lease: exactly one gets it.
pub async fn lease_race_has_exactly_one_holder(store: DynStore, clock: ManualClock) {
    let owner = unique_owner("owner");
    let id = create(&store, &owner, "contended").await.id;
    for round in 0..2 {
        let barrier = Arc::new(Barrier::new(RACERS));
        let mut tasks = JoinSet::new();
        for racer in 0..RACERS {
            let (store, owner, barrier) = (store.clone(), owner.clone(), barrier.clone());
            tasks.spawn(async move {
                let me = holder(&format!("round-{round}-replica-{racer}"));
                barrier.wait().await;
                let result = store
                    .acquire_lease(&owner, id, &me, Duration::from_secs(30))
                    .await;
                (me, result)
            });
        }
        let mut holders = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (me, result) = joined.expect("racer task panicked");
            match result {
                Ok(Some(lease)) => {
                    assert_eq!(lease.holder, me);
                    holders.push(me);
                }
                Ok(None) => {}
                Err(err) => panic!("{me}: unexpected {err:?}"),
            }
        }
        assert_eq!(holders.len(), 1, "round {round}: holders {holders:?}");
        store
            .renew_lease(&owner, id, &holders[0], Duration::from_secs(30))
            .await
            .expect("the winner holds the lease");
        // Second round: the lease has expired and everyone races for the takeover.
        clock.advance(Duration::from_secs(31));
    }
}
