//! Conformance test kit: every rule of [`ConnectionStore`], run against any backend.
//!
//! Call [`run`] from one test of your backend with a factory that returns a fresh, empty
//! store on the given [`ManualClock`]; it runs every check below on its own store, and
//! panics (with the check's name and the failed expectation) on the first broken rule.
//! Each check also uses owner ids of its own, so a factory may hand out stores that
//! share one database as long as the checks run one after another, as [`run`] runs
//! them. The claim checks call the service-level
//! [`claim_due`](ConnectionStore::claim_due), which claims every owner's due
//! connections: they ignore other checks' leftovers, but they would claim (lease) the
//! connections of tests running at the same time on the same database, so give those
//! tests a database (file, schema) of their own.
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

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::clock::{Clock, ManualClock};
use crate::error::{InvalidNameReason, StoreError};
use crate::model::{
    AdminAccount, Backoff, Claim, Cloud, Connection, ConnectionId, ConnectionStatus, CursorKey,
    LeaseHolder, NewConnection, OwnerId, Reconnect, TenantId, TokenVersion,
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
        reconnect_claims_round_trip_and_reconnect_clears_them,
        invalid_reconnect_claims_are_refused_and_write_nothing,
        cursors_are_kept_per_connection_and_key,
        long_and_unicode_secrets_round_trip,
        delete_cascades_to_token_cursors_and_lease,
        lease_is_exclusive_renewable_and_releasable,
        expired_lease_can_be_taken_over,
        lease_race_has_exactly_one_holder,
        claim_race_claims_each_due_connection_exactly_once,
        claims_come_oldest_due_first,
        claimed_connection_is_claimable_again_only_after_its_lease_expires,
        claim_skips_recent_disabled_reconnect_needed_and_backing_off,
        failure_backoff_grows_and_resets_on_success,
        fenced_writes_fail_with_lease_lost_after_expiry_or_takeover,
        claims_change_no_record_and_owner_calls_ignore_the_lease,
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

/// The claims of a Continuous Access Evaluation challenge, decoded, as Microsoft Graph
/// sends them after an admin's sessions were revoked.
const CAE_CLAIMS: &str = r#"{"access_token":{"nbf":{"essential":true,"value":"1726058400"}}}"#;

/// Claims of exactly [`ConnectionStatus::MAX_CLAIMS_BYTES`] bytes, with quotes,
/// backslashes and two-byte characters, which a store must keep byte for byte.
fn largest_claims() -> String {
    let mut claims =
        r#"{"access_token":{"acrs":{"essential":true,"value":"c1"},"note":{"value":"\"Grüße\" "#
            .to_owned();
    let end = r#""}}}"#;
    while claims.len() + end.len() + 2 <= ConnectionStatus::MAX_CLAIMS_BYTES {
        claims.push('ü');
    }
    while claims.len() + end.len() < ConnectionStatus::MAX_CLAIMS_BYTES {
        claims.push('a');
    }
    claims.push_str(end);
    claims
}

fn needs_reconnect(since: OffsetDateTime, claims: Option<&str>) -> ConnectionStatus {
    ConnectionStatus::NeedsReconnect {
        reason: "AADSTS50173: the provided grant has expired".to_owned(),
        since,
        claims: claims.map(str::to_owned),
    }
}

fn tenant() -> String {
    ConnectionId::new().to_string()
}

fn holder(name: &str) -> LeaseHolder {
    // A fixed, valid id: cannot fail.
    LeaseHolder::new(name).unwrap_or_else(|_| unreachable!("valid holder id"))
}

/// The sync lease for `holder`, for an hour: the fenced writes of a check need it.
async fn lease(store: &DynStore, owner: &OwnerId, id: ConnectionId, holder: &LeaseHolder) {
    match store
        .acquire_lease(owner, id, holder, Duration::from_secs(3600))
        .await
    {
        Ok(Some(_)) => {}
        other => panic!("acquire_lease for {holder}: expected a lease, got {other:?}"),
    }
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
    assert_eq!(created.failures, 0);
    assert_eq!(created.retry_at, None);
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

/// Names are trimmed, 1–120 characters (not bytes), without control characters (Cc) or
/// format characters (Cf: bidi overrides and isolates, zero-width characters, the byte
/// order mark, the soft hyphen), on create and on rename; a refused name creates nothing
/// and a refused rename changes nothing.
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
    ]
    .into_iter()
    .chain(
        [
            '\u{202E}', '\u{202D}', '\u{200B}', '\u{200D}', '\u{2066}', '\u{2069}', '\u{FEFF}',
            '\u{00AD}',
        ]
        .into_iter()
        .flat_map(|character| {
            let reason = InvalidNameReason::FormatCharacter { character };
            [
                (format!("Contoso{character}lanretni"), reason),
                (format!("{character}Contoso EU"), reason),
            ]
        }),
    ) {
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
    let mine = holder("owner-replica");
    store
        .acquire_lease(&owner, id, &mine, Duration::from_secs(60))
        .await
        .expect("acquire")
        .expect("lease is free");
    store
        .save_cursor(&owner, id, &mine, &users, secret("delta-mine"))
        .await
        .expect("save_cursor");
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
        store
            .set_status_fenced(&intruder, id, &mine, ConnectionStatus::Disabled)
            .await,
        id,
        "set_status_fenced",
    );
    assert_not_found(
        store.record_sync(&intruder, id, &mine, clock.now()).await,
        id,
        "record_sync",
    );
    assert_not_found(
        store
            .record_failure(&intruder, id, &mine, clock.now(), &Backoff::default())
            .await,
        id,
        "record_failure",
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
            .save_cursor(&intruder, id, &mine, &users, secret("delta-evil"))
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
        store
            .set_status_fenced(&owner, id, &h, ConnectionStatus::Active)
            .await,
        id,
        "set_status_fenced",
    );
    assert_not_found(
        store.record_sync(&owner, id, &h, clock.now()).await,
        id,
        "record_sync",
    );
    assert_not_found(
        store
            .record_failure(&owner, id, &h, clock.now(), &Backoff::default())
            .await,
        id,
        "record_failure",
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
        store.save_cursor(&owner, id, &h, &key, secret("d")).await,
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

/// `set_status`, `record_sync` and (under the lease) `set_status_fenced` store what they
/// are given, set `updated_at` and bump the revision.
pub async fn status_and_sync_time_update_the_record(store: DynStore, clock: ManualClock) {
    let owner = unique_owner("owner");
    let created = create(&store, &owner, "status").await;
    clock.advance(Duration::from_secs(60));
    let since = clock.now();
    let needs = ConnectionStatus::NeedsReconnect {
        reason: "AADSTS700082: the refresh token has expired".to_owned(),
        since,
        claims: None,
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
    let me = holder("replica-1");
    lease(&store, &owner, created.id, &me).await;
    clock.advance(Duration::from_millis(250));
    let synced = store
        .record_sync(&owner, created.id, &me, synced_at)
        .await
        .expect("record_sync");
    assert_eq!(synced.last_synced_at, Some(synced_at));
    assert_eq!(synced.revision, 4);
    assert_eq!(synced.updated_at, clock.now());
    assert_eq!(synced.status, ConnectionStatus::Disabled);
    assert_eq!(store.get(&owner, created.id).await.expect("get"), synced);

    clock.advance(Duration::from_secs(5));
    let revoked = ConnectionStatus::NeedsReconnect {
        reason: "AADSTS50173: the provided grant has expired".to_owned(),
        since: clock.now(),
        claims: None,
    };
    let marked = store
        .set_status_fenced(&owner, created.id, &me, revoked.clone())
        .await
        .expect("set_status_fenced under the lease");
    assert_eq!(marked.status, revoked);
    assert_eq!(marked.revision, 5);
    assert_eq!(marked.updated_at, clock.now());
    assert_eq!(marked.last_synced_at, Some(synced_at));
    assert_eq!(store.get(&owner, created.id).await.expect("get"), marked);
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
    let me = holder("replica-1");
    lease(&store, &owner, id, &me).await;
    store
        .save_cursor(&owner, id, &me, &CursorKey::users(), secret("delta-u"))
        .await
        .expect("save_cursor");
    store
        .set_status(
            &owner,
            id,
            ConnectionStatus::NeedsReconnect {
                reason: "invalid_grant".to_owned(),
                since: clock.now(),
                claims: Some(CAE_CLAIMS.to_owned()),
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

/// The claims of a "reconnect needed" status (a CAE claims challenge the reconnect must
/// carry) come back from `get` and `list` as written by `set_status` and, under the
/// lease, `set_status_fenced`, byte for byte up to [`ConnectionStatus::MAX_CLAIMS_BYTES`];
/// every status write replaces them (a write without claims leaves none), and
/// `reconnect` clears them with the status, so a later "reconnect needed" without
/// claims has none.
pub async fn reconnect_claims_round_trip_and_reconnect_clears_them(
    store: DynStore,
    clock: ManualClock,
) {
    let owner = unique_owner("owner");
    let created = create(&store, &owner, "claims challenge").await;
    let id = created.id;
    let read_back = |what: &'static str| {
        let (store, owner) = (store.clone(), owner.clone());
        async move {
            let got = store.get(&owner, id).await.expect("get").status;
            let listed = store.list(&owner).await.expect("list");
            assert_eq!(listed.len(), 1, "{what}");
            assert_eq!(listed[0].status, got, "{what}: list and get agree");
            got
        }
    };

    clock.advance(Duration::from_secs(1));
    let challenged = needs_reconnect(clock.now(), Some(CAE_CLAIMS));
    let written = store
        .set_status(&owner, id, challenged.clone())
        .await
        .expect("set_status with claims");
    assert_eq!(written.status, challenged);
    assert_eq!(read_back("set_status").await, challenged);

    let me = holder("replica-1");
    lease(&store, &owner, id, &me).await;
    clock.advance(Duration::from_secs(1));
    let largest = largest_claims();
    assert_eq!(largest.len(), ConnectionStatus::MAX_CLAIMS_BYTES);
    let fenced = needs_reconnect(clock.now(), Some(&largest));
    let written = store
        .set_status_fenced(&owner, id, &me, fenced.clone())
        .await
        .expect("set_status_fenced with the largest claims");
    assert!(
        written.status == fenced,
        "set_status_fenced: the largest claims did not come back as written"
    );
    assert!(
        read_back("set_status_fenced").await == fenced,
        "get: the largest claims did not come back as written"
    );

    clock.advance(Duration::from_secs(1));
    let without = needs_reconnect(clock.now(), None);
    store
        .set_status_fenced(&owner, id, &me, without.clone())
        .await
        .expect("set_status_fenced without claims");
    assert_eq!(
        read_back("a status write without claims").await,
        without,
        "a status write without claims leaves none"
    );

    store
        .set_status(&owner, id, needs_reconnect(clock.now(), Some(CAE_CLAIMS)))
        .await
        .expect("set_status with claims");
    clock.advance(Duration::from_secs(1));
    let (reconnected, _) = store
        .reconnect(
            &owner,
            id,
            Reconnect {
                tenant: created.tenant.clone(),
                admin: created.admin.clone(),
                scopes: created.scopes.clone(),
                refresh_token: secret("rt-reconnected"),
            },
        )
        .await
        .expect("reconnect");
    assert_eq!(reconnected.status, ConnectionStatus::Active);
    assert_eq!(read_back("reconnect").await, ConnectionStatus::Active);

    // The next "reconnect needed" has only the claims it is given.
    let later = needs_reconnect(clock.now(), None);
    store
        .set_status(&owner, id, later.clone())
        .await
        .expect("set_status after the reconnect");
    assert_eq!(
        read_back("after the reconnect").await,
        later,
        "reconnect clears the claims"
    );
}

/// Claims that are empty, longer than [`ConnectionStatus::MAX_CLAIMS_BYTES`] bytes (also
/// when fewer characters) or hold a control character are refused by `set_status` and
/// `set_status_fenced` with [`StoreError::InvalidInput`], and nothing is written.
pub async fn invalid_reconnect_claims_are_refused_and_write_nothing(
    store: DynStore,
    clock: ManualClock,
) {
    let owner = unique_owner("owner");
    let id = create(&store, &owner, "bad claims").await.id;
    let me = holder("replica-1");
    lease(&store, &owner, id, &me).await;
    let kept = needs_reconnect(clock.now(), Some(CAE_CLAIMS));
    store
        .set_status(&owner, id, kept)
        .await
        .expect("set_status with claims");
    let before = store.get(&owner, id).await.expect("get");
    clock.advance(Duration::from_secs(1));
    let max = ConnectionStatus::MAX_CLAIMS_BYTES;
    for (what, claims) in [
        ("one byte over 16 KiB", "a".repeat(max + 1)),
        (
            "over 16 KiB in bytes, not in characters",
            "ü".repeat(max / 2) + "a",
        ),
        ("far over 16 KiB", "{".repeat(4 * max)),
        ("empty", String::new()),
        ("with a line break", "{\n}".to_owned()),
        ("with a NUL", "{\"a\":\"\u{0}\"}".to_owned()),
        ("with a C1 control", "{\"a\":\"\u{9b}\"}".to_owned()),
    ] {
        let status = needs_reconnect(clock.now(), Some(&claims));
        let unfenced = store.set_status(&owner, id, status.clone()).await;
        assert!(
            matches!(unfenced, Err(StoreError::InvalidInput { .. })),
            "set_status with claims {what}: expected InvalidInput, got {:?}",
            unfenced.map(|c| c.revision)
        );
        let fenced = store.set_status_fenced(&owner, id, &me, status).await;
        assert!(
            matches!(fenced, Err(StoreError::InvalidInput { .. })),
            "set_status_fenced with claims {what}: expected InvalidInput, got {:?}",
            fenced.map(|c| c.revision)
        );
        assert_eq!(
            store.get(&owner, id).await.expect("get"),
            before,
            "claims {what}: nothing is written"
        );
    }
}

/// Cursors are absent until saved, overwritten by save, removed by clear, and kept apart
/// per key and per connection.
pub async fn cursors_are_kept_per_connection_and_key(store: DynStore, _clock: ManualClock) {
    let owner = unique_owner("owner");
    let a = create(&store, &owner, "a").await.id;
    let b = create(&store, &owner, "b").await.id;
    let users = CursorKey::users();
    let groups = CursorKey::groups();
    let me = holder("replica-1");
    lease(&store, &owner, a, &me).await;
    lease(&store, &owner, b, &me).await;
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
            &me,
            &users,
            secret("https://graph.microsoft.com/v1.0/users/delta?$deltatoken=a1"),
        )
        .await
        .expect("save");
    store
        .save_cursor(
            &owner,
            a,
            &me,
            &groups,
            secret("https://graph.microsoft.com/v1.0/groups/delta?$deltatoken=g1"),
        )
        .await
        .expect("save");
    store
        .save_cursor(&owner, b, &me, &users, secret("b-users"))
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
        .save_cursor(&owner, a, &me, &users, secret("a-users-2"))
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
        .save_cursor(&owner, b, &me, &custom, secret("custom"))
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
    let me = holder("replica-1");
    lease(&store, &owner, id, &me).await;
    store
        .save_cursor(&owner, id, &me, &CursorKey::users(), secret(&long))
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
    let me = holder("replica-1");
    store
        .acquire_lease(&owner, id, &me, Duration::from_secs(600))
        .await
        .expect("acquire")
        .expect("free");
    store
        .save_cursor(&owner, id, &me, &CursorKey::users(), secret("delta-old"))
        .await
        .expect("save");

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

/// The sync interval of the claim checks.
const INTERVAL: Duration = Duration::from_secs(3600);

async fn claim(
    store: &DynStore,
    limit: usize,
    holder: &LeaseHolder,
    ttl: Duration,
    interval: Duration,
) -> Vec<Claim> {
    let batch = match store.claim_due(limit, holder, ttl, interval).await {
        Ok(batch) => batch,
        Err(err) => panic!("claim_due by {holder}: {err:?}"),
    };
    assert!(
        batch.taken() <= limit,
        "claim_due({limit}) gave {} claims and {} corrupt",
        batch.claims.len(),
        batch.corrupt.len()
    );
    let claims = batch.claims;
    let keys: Vec<_> = claims
        .iter()
        .map(|c| (c.connection.due_at(interval), c.connection.id))
        .collect();
    assert!(
        keys.windows(2).all(|pair| pair[0] < pair[1]),
        "claims are oldest due first, then by id, without repeats: {keys:?}"
    );
    for claim in &claims {
        assert_eq!(
            claim.lease.id, claim.connection.id,
            "the lease is the claim's"
        );
        assert_eq!(&claim.lease.holder, holder, "the lease is the claimer's");
        assert_eq!(
            claim.connection.status,
            ConnectionStatus::Active,
            "only active connections are claimed"
        );
    }
    claims
}

/// The ids of `owner`'s connections among `claims`, in order: the checks ignore
/// connections other checks left in a shared database.
fn own(claims: &[Claim], owner: &OwnerId) -> Vec<ConnectionId> {
    claims
        .iter()
        .filter(|c| c.connection.owner == *owner)
        .map(|c| c.connection.id)
        .collect()
}

/// Records a sync at `at` under a lease of its own, then frees it.
async fn synced_at(store: &DynStore, owner: &OwnerId, id: ConnectionId, at: OffsetDateTime) {
    let setup = holder("setup");
    lease(store, owner, id, &setup).await;
    store
        .record_sync(owner, id, &setup, at)
        .await
        .expect("record_sync");
    store
        .release_lease(owner, id, &setup)
        .await
        .expect("release_lease");
}

fn assert_lease_lost<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    id: ConnectionId,
    by: &LeaseHolder,
    what: &str,
) {
    match result {
        Err(StoreError::LeaseLost { id: lost, holder }) => {
            assert_eq!((lost, &holder), (id, by), "{what}");
        }
        other => panic!("{what}: expected LeaseLost, got {other:?}"),
    }
}

/// [`RACERS`] claimers loop `claim_due(7)` at once, each under its own holder, until
/// nothing is due: each of 200 due connections (of several owners) is claimed exactly
/// once, by the claimer whose lease it then has.
pub async fn claim_race_claims_each_due_connection_exactly_once(
    store: DynStore,
    clock: ManualClock,
) {
    const CONNECTIONS: usize = 200;
    let owners: Vec<OwnerId> = (0..4)
        .map(|i| unique_owner(&format!("owner-{i}")))
        .collect();
    let mut ids = std::collections::HashSet::new();
    for i in 0..CONNECTIONS {
        let owner = &owners[i % owners.len()];
        ids.insert(create(&store, owner, &format!("due {i}")).await.id);
    }
    clock.advance(Duration::from_secs(1));
    let ttl = Duration::from_secs(300);
    let barrier = Arc::new(Barrier::new(RACERS));
    let racers = (0..RACERS).map(|racer| {
        let (store, barrier) = (store.clone(), barrier.clone());
        tokio::spawn(async move {
            let me = holder(&format!("claimer-{racer}"));
            barrier.wait().await;
            let mut claimed = Vec::new();
            for _ in 0..=CONNECTIONS * 4 {
                let batch = claim(&store, 7, &me, ttl, INTERVAL).await;
                if batch.is_empty() {
                    return claimed;
                }
                claimed.extend(batch);
            }
            panic!("{me}: claim_due never ran out of due connections");
        })
    });
    let mut seen: HashMap<ConnectionId, LeaseHolder> = HashMap::new();
    for joined in futures::future::join_all(racers).await {
        for claim in joined.expect("claimer task panicked") {
            assert_eq!(claim.lease.expires_at, clock.now() + ttl);
            if let Some(first) = seen.insert(claim.connection.id, claim.lease.holder.clone()) {
                panic!(
                    "connection {} claimed twice, by {first} and {}",
                    claim.connection.id, claim.lease.holder
                );
            }
        }
    }
    let missing: Vec<_> = ids.iter().filter(|id| !seen.contains_key(id)).collect();
    assert!(missing.is_empty(), "never claimed: {missing:?}");
    let late = claim(&store, 1000, &holder("late"), ttl, INTERVAL).await;
    for owner in &owners {
        assert!(
            own(&late, owner).is_empty(),
            "claimed connections stay claimed"
        );
    }
}

/// Claims come oldest due first: never synced by creation time, synced by last sync +
/// interval, with a pending retry by the later of that and the retry time; equal due
/// times by id; across batches too.
pub async fn claims_come_oldest_due_first(store: DynStore, clock: ManualClock) {
    let owner = unique_owner("owner");
    let start = clock.now();
    let minutes = |m: i64| start + time::Duration::minutes(m);
    let never_synced_oldest = create(&store, &owner, "created first").await.id;
    clock.advance(Duration::from_secs(2 * 3600));
    // Due 00:30 (synced at 23:30 the day before).
    let synced_long_ago = create(&store, &owner, "synced long ago").await.id;
    synced_at(&store, &owner, synced_long_ago, minutes(-30)).await;
    // Synced at 23:00 (due 00:00), then failed at 01:30 with a minute's backoff: 01:31.
    let retrying = create(&store, &owner, "retrying").await.id;
    synced_at(&store, &owner, retrying, minutes(-60)).await;
    let setup = holder("setup");
    lease(&store, &owner, retrying, &setup).await;
    let failed = store
        .record_failure(
            &owner,
            retrying,
            &setup,
            minutes(90),
            &Backoff::new(Duration::from_secs(60), Duration::from_secs(600)),
        )
        .await
        .expect("record_failure");
    assert_eq!(failed.retry_at, Some(minutes(91)));
    store
        .release_lease(&owner, retrying, &setup)
        .await
        .expect("release");
    // Three created at 02:00, never synced: equal due times, ordered by id.
    let mut same_time = Vec::new();
    for name in ["same time 1", "same time 2", "same time 3"] {
        same_time.push(create(&store, &owner, name).await.id);
    }
    same_time.sort();
    // Synced at 01:45: due 02:45, after everything above.
    let synced_recently = create(&store, &owner, "synced recently").await.id;
    synced_at(&store, &owner, synced_recently, minutes(105)).await;
    clock.advance(Duration::from_secs(3600));

    let mut expected = vec![never_synced_oldest, synced_long_ago, retrying];
    expected.extend(&same_time);
    expected.push(synced_recently);
    let me = holder("claimer");
    let mut order = Vec::new();
    let mut last_key = None;
    for _ in 0..1000 {
        let batch = claim(&store, 2, &me, Duration::from_secs(60), INTERVAL).await;
        let Some(first) = batch.first() else { break };
        let key = (first.connection.due_at(INTERVAL), first.connection.id);
        assert!(
            last_key < Some(key),
            "a later batch starts after the previous one ended"
        );
        last_key = batch
            .last()
            .map(|c| (c.connection.due_at(INTERVAL), c.connection.id));
        order.extend(own(&batch, &owner));
    }
    assert_eq!(order, expected, "oldest due first, then by id");
}

/// A claimed connection is not claimable (by anyone, its claimer included) until its
/// lease expires; then the next claimer gets it and the first one's lease is lost. A
/// connection leased with `acquire_lease` is not claimable either, and is again as soon
/// as it is released.
pub async fn claimed_connection_is_claimable_again_only_after_its_lease_expires(
    store: DynStore,
    clock: ManualClock,
) {
    let owner = unique_owner("owner");
    let id = create(&store, &owner, "claimed").await.id;
    let (one, two) = (holder("replica-1"), holder("replica-2"));
    let ttl = Duration::from_secs(30);
    let first = claim(&store, 1000, &one, ttl, INTERVAL).await;
    assert_eq!(own(&first, &owner), vec![id]);
    assert_eq!(first[first.len() - 1].lease.expires_at, clock.now() + ttl);
    assert!(own(&claim(&store, 1000, &two, ttl, INTERVAL).await, &owner).is_empty());
    assert!(
        own(&claim(&store, 1000, &one, ttl, INTERVAL).await, &owner).is_empty(),
        "a claim does not hand out its claimer's own leases again"
    );
    clock.advance(Duration::from_millis(29_999));
    assert!(
        own(&claim(&store, 1000, &two, ttl, INTERVAL).await, &owner).is_empty(),
        "one millisecond before expiry the claim still holds"
    );
    clock.advance(Duration::from_millis(1));
    let second = claim(&store, 1000, &two, ttl, INTERVAL).await;
    assert_eq!(
        own(&second, &owner),
        vec![id],
        "an expired claim is due again"
    );
    let lease = second
        .iter()
        .find(|c| c.connection.id == id)
        .map(|c| c.lease.clone())
        .expect("claimed");
    assert_eq!(lease.expires_at, clock.now() + ttl);
    assert!(
        matches!(
            store.renew_lease(&owner, id, &one, ttl).await,
            Err(StoreError::LeaseLost { .. })
        ),
        "the first claimer lost the lease"
    );
    store
        .renew_lease(&owner, id, &two, ttl)
        .await
        .expect("the second claimer holds it");

    store
        .release_lease(&owner, id, &two)
        .await
        .expect("release");
    let three = holder("replica-3");
    store
        .acquire_lease(&owner, id, &three, ttl)
        .await
        .expect("acquire")
        .expect("free");
    assert!(
        own(&claim(&store, 1000, &one, ttl, INTERVAL).await, &owner).is_empty(),
        "a lease from acquire_lease keeps it from being claimed"
    );
    store
        .release_lease(&owner, id, &three)
        .await
        .expect("release");
    assert_eq!(
        own(&claim(&store, 1000, &one, ttl, INTERVAL).await, &owner),
        vec![id],
        "a released connection is claimable at once"
    );
}

/// Not claimed: connections synced within the interval, disabled ones, "reconnect
/// needed" ones, and ones in failure backoff; each becomes claimable once that ends. A
/// `limit` of 0 claims nothing.
pub async fn claim_skips_recent_disabled_reconnect_needed_and_backing_off(
    store: DynStore,
    clock: ManualClock,
) {
    let owner = unique_owner("owner");
    // Claims here last beyond the check, so what they took stays taken.
    let ttl = Duration::from_secs(24 * 3600);
    clock.advance(Duration::from_secs(2 * 3600));
    let now = clock.now();
    let due = create(&store, &owner, "never synced").await.id;
    let exactly = create(&store, &owner, "synced an interval ago").await.id;
    synced_at(&store, &owner, exactly, now - INTERVAL).await;
    let recent = create(&store, &owner, "synced 59 minutes ago").await.id;
    synced_at(&store, &owner, recent, now - time::Duration::minutes(59)).await;
    let disabled = create(&store, &owner, "disabled").await.id;
    store
        .set_status(&owner, disabled, ConnectionStatus::Disabled)
        .await
        .expect("set_status");
    let needs = create(&store, &owner, "reconnect needed").await.id;
    store
        .set_status(
            &owner,
            needs,
            ConnectionStatus::NeedsReconnect {
                reason: "AADSTS70000: invalid_grant".to_owned(),
                since: now,
                claims: Some(CAE_CLAIMS.to_owned()),
            },
        )
        .await
        .expect("set_status");
    let backing = create(&store, &owner, "backing off").await.id;
    let setup = holder("setup");
    lease(&store, &owner, backing, &setup).await;
    store
        .record_failure(
            &owner,
            backing,
            &setup,
            now,
            &Backoff::new(Duration::from_secs(600), Duration::from_secs(3600)),
        )
        .await
        .expect("record_failure");
    store
        .release_lease(&owner, backing, &setup)
        .await
        .expect("release");

    let me = holder("claimer");
    assert!(
        store
            .claim_due(0, &me, ttl, INTERVAL)
            .await
            .expect("claim_due(0)")
            .is_empty(),
        "a limit of 0 claims nothing"
    );
    let mut first = own(&claim(&store, 1000, &me, ttl, INTERVAL).await, &owner);
    first.sort();
    let mut want = vec![due, exactly];
    want.sort();
    assert_eq!(first, want, "only the due connections are claimed");

    clock.advance(Duration::from_secs(60));
    assert_eq!(
        own(&claim(&store, 1000, &me, ttl, INTERVAL).await, &owner),
        vec![recent],
        "an interval after its last sync it is due"
    );
    clock.advance(Duration::from_secs(539));
    assert!(own(&claim(&store, 1000, &me, ttl, INTERVAL).await, &owner).is_empty());
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        own(&claim(&store, 1000, &me, ttl, INTERVAL).await, &owner),
        vec![backing],
        "after its retry time it is due"
    );
    assert!(
        own(&claim(&store, 1000, &me, ttl, INTERVAL).await, &owner).is_empty(),
        "disabled and reconnect-needed connections are never claimed"
    );
    store
        .set_status(&owner, disabled, ConnectionStatus::Active)
        .await
        .expect("set_status");
    assert_eq!(
        own(&claim(&store, 1000, &me, ttl, INTERVAL).await, &owner),
        vec![disabled],
        "re-enabled, it is due"
    );
}

/// Each `record_failure` adds one to `failures` and sets `retry_at` to its time plus the
/// doubling, capped delay (a record change); the connection is claimable from then on,
/// not before. A successful `record_sync` and a `reconnect` reset both.
pub async fn failure_backoff_grows_and_resets_on_success(store: DynStore, clock: ManualClock) {
    let owner = unique_owner("owner");
    let created = create(&store, &owner, "flaky").await;
    let id = created.id;
    let backoff = Backoff::new(Duration::from_secs(60), Duration::from_secs(300));
    let ttl = Duration::from_secs(30);
    let me = holder("worker");
    let mut revision = created.revision;
    for (failures, delay) in [(1, 60), (2, 120), (3, 240), (4, 300), (5, 300)] {
        assert_eq!(
            own(&claim(&store, 1000, &me, ttl, INTERVAL).await, &owner),
            vec![id]
        );
        clock.advance(Duration::from_secs(5));
        let at = clock.now();
        clock.advance(Duration::from_secs(1));
        let failed = store
            .record_failure(&owner, id, &me, at, &backoff)
            .await
            .expect("record_failure");
        revision += 1;
        assert_eq!(failed.failures, failures);
        let retry_at = at + Duration::from_secs(delay);
        assert_eq!(failed.retry_at, Some(retry_at));
        assert_eq!(failed.revision, revision);
        assert_eq!(failed.updated_at, clock.now());
        assert_eq!(failed.last_synced_at, None);
        assert_eq!(store.get(&owner, id).await.expect("get"), failed);
        store.release_lease(&owner, id, &me).await.expect("release");
        assert!(
            own(&claim(&store, 1000, &me, ttl, INTERVAL).await, &owner).is_empty(),
            "failure {failures}: not claimable before its retry time"
        );
        clock.set(retry_at - Duration::from_millis(1));
        assert!(own(&claim(&store, 1000, &me, ttl, INTERVAL).await, &owner).is_empty());
        clock.set(retry_at);
    }
    assert_eq!(
        own(&claim(&store, 1000, &me, ttl, INTERVAL).await, &owner),
        vec![id]
    );
    let at = clock.now();
    let synced = store
        .record_sync(&owner, id, &me, at)
        .await
        .expect("record_sync");
    assert_eq!(
        (synced.failures, synced.retry_at, synced.last_synced_at),
        (0, None, Some(at)),
        "a successful sync resets the backoff"
    );
    let failed = store
        .record_failure(&owner, id, &me, at, &backoff)
        .await
        .expect("record_failure");
    assert_eq!(
        (failed.failures, failed.retry_at),
        (1, Some(at + Duration::from_secs(60))),
        "after a success the backoff starts again from its base"
    );
    store.release_lease(&owner, id, &me).await.expect("release");
    let (reconnected, _) = store
        .reconnect(
            &owner,
            id,
            Reconnect {
                tenant: created.tenant.clone(),
                admin: created.admin.clone(),
                scopes: created.scopes.clone(),
                refresh_token: secret("rt-reconnected"),
            },
        )
        .await
        .expect("reconnect");
    assert_eq!(
        (reconnected.failures, reconnected.retry_at),
        (0, None),
        "a reconnect resets the backoff"
    );
    assert_eq!(reconnected.last_synced_at, Some(at));
}

/// `record_sync`, `record_failure`, `set_status_fenced` and `save_cursor` succeed only
/// under an unexpired lease of the given holder: without a lease, after it expired, after
/// a takeover, after a release and for another holder they fail with `LeaseLost` and
/// change nothing; in particular a stale holder cannot set the status ("reconnect
/// needed" found by a worker whose lease was taken over is not written).
#[expect(
    clippy::too_many_lines,
    reason = "one block per way of losing the lease"
)]
pub async fn fenced_writes_fail_with_lease_lost_after_expiry_or_takeover(
    store: DynStore,
    clock: ManualClock,
) {
    let owner = unique_owner("owner");
    let id = create(&store, &owner, "fenced").await.id;
    let users = CursorKey::users();
    let (one, two, three) = (holder("worker-1"), holder("worker-2"), holder("worker-3"));
    let ttl = Duration::from_secs(30);
    let backoff = Backoff::default();
    let cursor = |store: DynStore, owner: OwnerId| async move {
        store
            .load_cursor(&owner, id, &CursorKey::users())
            .await
            .expect("load_cursor")
            .map(|c| c.expose_secret().to_owned())
    };
    // Every fenced write by `by` fails and leaves record and cursor as they were.
    let refused = |by: LeaseHolder, what: &'static str| {
        let (store, owner, users) = (store.clone(), owner.clone(), users.clone());
        async move {
            let before = store.get(&owner, id).await.expect("get");
            let before_cursor = cursor(store.clone(), owner.clone()).await;
            // Any time will do: the write must be refused whatever it says.
            let now = before.updated_at;
            assert_lease_lost(
                store.record_sync(&owner, id, &by, now).await,
                id,
                &by,
                &format!("record_sync {what}"),
            );
            assert_lease_lost(
                store
                    .record_failure(&owner, id, &by, now, &Backoff::default())
                    .await,
                id,
                &by,
                &format!("record_failure {what}"),
            );
            let revoked = ConnectionStatus::NeedsReconnect {
                reason: "AADSTS50173: stale".to_owned(),
                since: now,
                claims: Some(CAE_CLAIMS.to_owned()),
            };
            assert_lease_lost(
                store.set_status_fenced(&owner, id, &by, revoked).await,
                id,
                &by,
                &format!("set_status_fenced {what}"),
            );
            assert_lease_lost(
                store
                    .set_status_fenced(&owner, id, &by, ConnectionStatus::Disabled)
                    .await,
                id,
                &by,
                &format!("set_status_fenced (disabled) {what}"),
            );
            assert_lease_lost(
                store
                    .save_cursor(&owner, id, &by, &users, secret("stale-cursor"))
                    .await,
                id,
                &by,
                &format!("save_cursor {what}"),
            );
            assert_eq!(
                store.get(&owner, id).await.expect("get"),
                before,
                "{what}: record unchanged"
            );
            assert_eq!(
                cursor(store.clone(), owner.clone()).await,
                before_cursor,
                "{what}: cursor unchanged"
            );
        }
    };

    refused(one.clone(), "without any lease").await;

    let claimed = claim(&store, 1000, &one, ttl, INTERVAL).await;
    assert_eq!(own(&claimed, &owner), vec![id]);
    store
        .save_cursor(&owner, id, &one, &users, secret("cursor-1"))
        .await
        .expect("save_cursor under the lease");
    refused(two.clone(), "by a holder without the lease").await;

    clock.advance(ttl);
    refused(one.clone(), "after the lease expired").await;
    // Renewing an expired lease nobody took over makes it unexpired again.
    store
        .renew_lease(&owner, id, &one, ttl)
        .await
        .expect("renew after expiry without takeover");
    let failed = store
        .record_failure(&owner, id, &one, clock.now(), &backoff)
        .await
        .expect("record_failure under the renewed lease");
    assert_eq!(failed.failures, 1);

    clock.advance(ttl + Duration::from_secs(1));
    store
        .acquire_lease(&owner, id, &two, ttl)
        .await
        .expect("acquire")
        .expect("an expired lease is taken over");
    refused(one.clone(), "after a takeover").await;
    assert!(
        matches!(
            store.renew_lease(&owner, id, &one, ttl).await,
            Err(StoreError::LeaseLost { .. })
        ),
        "the old holder cannot renew either"
    );
    refused(three.clone(), "by a third holder").await;
    store
        .save_cursor(&owner, id, &two, &users, secret("cursor-2"))
        .await
        .expect("the new holder writes");
    let at = clock.now();
    let synced = store
        .record_sync(&owner, id, &two, at)
        .await
        .expect("record_sync by the new holder");
    assert_eq!((synced.failures, synced.last_synced_at), (0, Some(at)));
    assert_eq!(
        cursor(store.clone(), owner.clone()).await.as_deref(),
        Some("cursor-2")
    );
    let revoked = ConnectionStatus::NeedsReconnect {
        reason: "AADSTS50173: the provided grant has expired".to_owned(),
        since: at,
        claims: None,
    };
    let marked = store
        .set_status_fenced(&owner, id, &two, revoked.clone())
        .await
        .expect("set_status_fenced by the new holder");
    assert_eq!(marked.status, revoked);
    refused(
        one.clone(),
        "after a takeover, once the new holder set the status",
    )
    .await;
    assert_eq!(
        store.get(&owner, id).await.expect("get").status,
        revoked,
        "the stale holder did not overwrite the status"
    );

    store
        .release_lease(&owner, id, &two)
        .await
        .expect("release");
    refused(two.clone(), "after a release").await;
}

/// Claiming changes no record (revision and `updated_at` stay; the claim carries the
/// record as `get` returns it), and the owner-scoped calls work on a claimed connection
/// as before, without its lease: reads, rename, status, tokens, clearing a cursor,
/// delete. A deleted connection is never claimed.
pub async fn claims_change_no_record_and_owner_calls_ignore_the_lease(
    store: DynStore,
    clock: ManualClock,
) {
    let owner = unique_owner("owner");
    let created = create(&store, &owner, "claimed").await;
    let id = created.id;
    let one = holder("worker-1");
    lease(&store, &owner, id, &one).await;
    store
        .save_cursor(&owner, id, &one, &CursorKey::groups(), secret("g-1"))
        .await
        .expect("save_cursor");
    store
        .release_lease(&owner, id, &one)
        .await
        .expect("release");
    clock.advance(Duration::from_secs(10));
    let ttl = Duration::from_secs(120);
    let claims = claim(&store, 1000, &one, ttl, INTERVAL).await;
    let mine: Vec<&Claim> = claims
        .iter()
        .filter(|c| c.connection.owner == owner)
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].connection, created, "the claim carries the record");
    assert_eq!(mine[0].lease.expires_at, clock.now() + ttl);
    assert_eq!(
        store.get(&owner, id).await.expect("get"),
        created,
        "claiming is not a record change"
    );
    assert_eq!(store.list(&owner).await.expect("list"), vec![created]);

    let renamed = store
        .rename(&owner, id, "claimed, renamed")
        .await
        .expect("rename while claimed");
    assert_eq!(renamed.revision, 2);
    store
        .set_status(&owner, id, ConnectionStatus::Disabled)
        .await
        .expect("set_status while claimed");
    store
        .replace_token(&owner, id, TokenVersion::FIRST, secret("rt-2"))
        .await
        .expect("replace_token while claimed");
    assert_eq!(token_of(&store, &owner, id).await.0, "rt-2");
    assert!(
        store
            .load_cursor(&owner, id, &CursorKey::groups())
            .await
            .expect("load_cursor")
            .is_some()
    );
    store
        .clear_cursor(&owner, id, &CursorKey::groups())
        .await
        .expect("clear_cursor while claimed");
    assert_eq!(
        store
            .acquire_lease(&owner, id, &holder("worker-2"), ttl)
            .await
            .expect("acquire"),
        None,
        "a claim is a sync lease"
    );
    store
        .renew_lease(&owner, id, &one, ttl)
        .await
        .expect("the claimer renews");
    store
        .delete(&owner, id)
        .await
        .expect("delete while claimed");
    clock.advance(ttl + INTERVAL);
    assert!(
        own(&claim(&store, 1000, &one, ttl, INTERVAL).await, &owner).is_empty(),
        "a deleted connection is never claimed"
    );
}
