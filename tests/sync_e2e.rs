//! Syncing a connected tenant end to end into the SQL directory mirror, against
//! tenant-sim in process, composed the way `examples/sync.rs` composes the crates: a real
//! sign-in stored as a connection in a `SQLite` store, the glue's Graph client, the engine
//! of `graph_client::sync`, and the mirror's sink fenced by the sync lease.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use connection_store::{ConnectionStatus, ConnectionStore, LeaseHolder, OwnerId};
use connection_store_sql::{EncryptionKey, KeyId, KeyRing, SqlStore};
use graph_client::sync::{MemorySink, NoProgress, SyncKind, SyncOptions, SyncReport};
use graph_client::{GraphClient, ObjectId, RetryPolicy};
use m365_link_app::connect::{SignIn, create_connection, simulated_browser};
use m365_link_app::glue::{Linked, SessionTokens};
use m365_link_app::mirror::{MAX_PAGE, Mirror};
use m365_link_app::sync::{self, SyncStop, Target};
use rand::{Rng as _, SeedableRng as _};
use serde_json::Value;
use tenant_sim::{
    Deletion, FaultKind, FaultSettings, GroupFields, TenantSim, ThrottleSettings, UserFields,
};

mod support;
use support::HookedStore;

/// A signed-in connection to a small simulated tenant, its `SQLite` store and mirror.
struct Fixture {
    sim: TenantSim,
    linked: Linked,
    target: Target,
    sql: SqlStore,
    mirror: Mirror,
    dir: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("m365-sync-e2e-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn sqlite(dir: &std::path::Path, clock: Option<connection_store::ManualClock>) -> SqlStore {
    let keys = KeyRing::new(KeyId::new("test").unwrap(), EncryptionKey::generate());
    let mut builder = SqlStore::sqlite(dir.join("store.sqlite")).key_ring(keys);
    if let Some(clock) = clock {
        builder = builder.clock(Arc::new(clock));
    }
    builder.open().await.expect("the SQLite store opens")
}

impl Fixture {
    async fn new() -> Self {
        Self::with_tenant(60, 12, None).await
    }

    async fn with_tenant(
        users: usize,
        groups: usize,
        clock: Option<connection_store::ManualClock>,
    ) -> Self {
        let sim = TenantSim::builder()
            .users(users)
            .groups(groups)
            .seed(5)
            // Small delta pages, so large groups' members@delta span pages (spec 9).
            .delta_page_size(20)
            .start()
            .await
            .expect("tenant-sim starts");
        let dir = scratch();
        let sql = sqlite(&dir, clock).await;
        let mirror = Mirror::open(&sql).await.expect("the mirror opens");
        let store: Arc<dyn ConnectionStore> = Arc::new(sql.clone());
        let sign_in = SignIn::simulated(&sim);
        let (_client, grant) = sign_in
            .browser(None, Duration::from_secs(20), simulated_browser)
            .await
            .expect("the simulated admin signs in");
        let owner = OwnerId::new("customer-1");
        let connection = create_connection(
            store.as_ref(),
            &owner,
            "Contoso (simulated)",
            sign_in.cloud.clone(),
            &grant,
        )
        .await
        .expect("the connection is stored");
        let linked = Linked::open(Arc::clone(&store), &owner, connection.id, &sign_in.app)
            .await
            .expect("the connection opens");
        Self {
            sim,
            linked,
            target: Target {
                store,
                owner,
                id: connection.id,
            },
            sql,
            mirror,
            dir,
        }
    }

    async fn sync(&self, options: &sync::Options) -> anyhow::Result<SyncReport> {
        self.sync_with(&self.linked.graph, options).await
    }

    async fn sync_with(
        &self,
        graph: &GraphClient,
        options: &sync::Options,
    ) -> anyhow::Result<SyncReport> {
        let mut sink = self
            .mirror
            .sink(&self.sql, self.target.id)
            .with_fence(options.holder.clone());
        sync::run(graph, &self.target, &mut sink, options, &NoProgress).await
    }

    /// Everything the mirror holds for the connection, row by row.
    async fn mirrored(&self) -> Contents {
        let id = self.target.id;
        let mut contents = Contents::default();
        let mut offset = 0;
        loop {
            let page = self
                .mirror
                .users_page(id, None, offset, MAX_PAGE)
                .await
                .unwrap();
            offset += page.len() as u64;
            for user in &page {
                contents.users.insert(
                    user.id.clone().unwrap().into_string(),
                    serde_json::to_value(user).unwrap(),
                );
            }
            if page.len() < MAX_PAGE as usize {
                break;
            }
        }
        let groups = self.mirror.groups_page(id, 0, MAX_PAGE).await.unwrap();
        for group in &groups {
            let group_id = group.id.clone().unwrap();
            contents.groups.insert(
                group_id.as_str().to_owned(),
                serde_json::to_value(group).unwrap(),
            );
            for member in self.mirror.members(id, &group_id).await.unwrap() {
                contents.memberships.insert((
                    group_id.as_str().to_owned(),
                    member.id.as_str().to_owned(),
                    member.member_type.as_str().to_owned(),
                ));
            }
        }
        contents
    }

    /// A fresh full import of the tenant as it is now, into memory.
    async fn fresh_import(&self, options: &sync::Options) -> Contents {
        let mut sink = MemorySink::new();
        let report =
            graph_client::sync::run(&self.linked.graph, &mut sink, &options.engine, &NoProgress)
                .await
                .expect("a fresh full import");
        assert_eq!(report.kind, SyncKind::Full);
        let directory = sink.directory();
        Contents {
            users: directory
                .users()
                .iter()
                .map(|(id, u)| (id.as_str().to_owned(), serde_json::to_value(u).unwrap()))
                .collect(),
            groups: directory
                .groups()
                .iter()
                .map(|(id, g)| (id.as_str().to_owned(), serde_json::to_value(g).unwrap()))
                .collect(),
            memberships: directory
                .members()
                .iter()
                .flat_map(|(group, members)| {
                    members.iter().map(move |(member, kind)| {
                        (
                            group.as_str().to_owned(),
                            member.as_str().to_owned(),
                            kind.as_str().to_owned(),
                        )
                    })
                })
                .collect(),
        }
    }
}

fn options() -> sync::Options {
    sync::Options::new().expect("options")
}

/// A directory as rows: users and groups as JSON by id, memberships with their type.
#[derive(Debug, Default, PartialEq)]
struct Contents {
    users: BTreeMap<String, Value>,
    groups: BTreeMap<String, Value>,
    memberships: BTreeSet<(String, String, String)>,
}

impl Contents {
    fn has_member(&self, group: &str, member: &str) -> bool {
        self.memberships
            .iter()
            .any(|(g, m, _)| g == group && m == member)
    }
}

#[tokio::test]
async fn first_sync_imports_every_user_group_and_membership() {
    let fx = Fixture::new().await;
    let report = fx.sync(&options()).await.expect("full sync");

    let control = fx.sim.control();
    let users = control.users();
    let groups = control.groups();
    let expected_memberships: usize = groups.iter().map(|g| g.member_count).sum();
    let summary = &report.summary;
    assert_eq!(report.kind, SyncKind::Full);
    assert_eq!(summary.users.total, users.len() as u64);
    assert_eq!(summary.users.added, users.len() as u64);
    assert_eq!(summary.groups.total, groups.len() as u64);
    assert_eq!(summary.memberships.total, expected_memberships as u64);

    // A sample of users as the directory has them.
    let mirrored = fx.mirrored().await;
    assert_eq!(mirrored.users.len(), users.len());
    for user in users.iter().step_by(7) {
        let row = &mirrored.users[&user.id];
        assert_eq!(row["userPrincipalName"], user.user_principal_name.as_str());
        assert_eq!(row["displayName"], user.display_name.as_str());
        assert_eq!(row["accountEnabled"], user.account_enabled);
    }
    // Every group's members, including the large "All Company" group.
    for group in &groups {
        let expected: BTreeSet<String> = control
            .group_member_ids(&group.id)
            .unwrap()
            .into_iter()
            .collect();
        let got: BTreeSet<String> = mirrored
            .memberships
            .iter()
            .filter(|(g, _, _)| *g == group.id)
            .map(|(_, m, _)| m.clone())
            .collect();
        assert_eq!(got, expected, "members of {}", group.display_name);
    }

    // The links are committed with the data, and the sync time is in the store.
    let state = fx
        .mirror
        .state(fx.target.id)
        .await
        .unwrap()
        .expect("a commit");
    assert_eq!(state.commits, 1);
    assert_eq!(state.committed_kind, Some(SyncKind::Full));
    assert_eq!(state.users, users.len() as u64);
    let store = fx.target.store.as_ref();
    let connection = store.get(&fx.target.owner, fx.target.id).await.unwrap();
    assert!(connection.last_synced_at.is_some());
}

#[tokio::test]
async fn delta_sync_applies_adds_updates_deletes_and_membership_changes() {
    let fx = Fixture::new().await;
    let options = options();
    fx.sync(&options).await.expect("full sync");

    let control = fx.sim.control();
    let people: Vec<_> = control
        .users()
        .into_iter()
        .filter(|u| !u.is_admin)
        .collect();
    let added = control
        .add_user(
            &UserFields::new()
                .display_name("Nina Neumann")
                .job_title("Engineer"),
        )
        .unwrap();
    control
        .update_user(&people[1].id, &UserFields::new().job_title("Head of Sales"))
        .unwrap();
    control.delete_user(&people[2].id, Deletion::Soft).unwrap();
    control
        .delete_user(&people[3].id, Deletion::Permanent)
        .unwrap();
    let team = control
        .add_group(GroupFields::new().display_name("Signature Rollout"))
        .unwrap();
    control.add_member(&team.id, &people[4].id).unwrap();
    control.add_member(&team.id, &added.id).unwrap();
    let small = control
        .groups()
        .into_iter()
        .find(|g| g.member_count > 2 && g.member_count < 30)
        .expect("a small group");
    let members = control.group_member_ids(&small.id).unwrap();
    let leaving = members
        .iter()
        .find(|m| **m != people[2].id && **m != people[3].id)
        .unwrap()
        .clone();
    control.remove_member(&small.id, &leaving).unwrap();

    fx.sim.control().reset_counters();
    let report = fx.sync(&options).await.expect("delta sync");
    let summary = &report.summary;
    assert_eq!(report.kind, SyncKind::Delta);
    assert_eq!(summary.users.added, 1);
    assert_eq!(summary.users.updated, 1);
    assert_eq!(summary.users.removed, 2);
    let mut removed: Vec<String> = summary
        .removed_user_ids
        .iter()
        .map(|id| id.as_str().to_owned())
        .collect();
    removed.sort();
    let mut expected = vec![people[2].id.clone(), people[3].id.clone()];
    expected.sort();
    assert_eq!(removed, expected);
    assert_eq!(summary.groups.added, 1);
    // Delta asked only for changes: no member listing.
    let counters = fx.sim.control().counters();
    assert!(
        counters
            .by_endpoint()
            .keys()
            .all(|e| !e.contains("/members")),
        "{:?}",
        counters.by_endpoint()
    );

    let mirrored = fx.mirrored().await;
    assert!(mirrored.has_member(&team.id, &added.id));
    assert!(mirrored.has_member(&team.id, &people[4].id));
    assert!(!mirrored.has_member(&small.id, &leaving));
    assert!(
        mirrored
            .memberships
            .iter()
            .all(|(_, m, _)| *m != people[3].id && *m != people[2].id)
    );
    assert_eq!(mirrored.users[&people[1].id]["jobTitle"], "Head of Sales");

    // The delta-maintained mirror equals a fresh full import of the changed tenant.
    assert_eq!(mirrored, fx.fresh_import(&options).await);
}

#[tokio::test]
async fn after_any_sequence_of_changes_the_delta_mirror_equals_a_fresh_full_import() {
    let fx = Fixture::new().await;
    let options = options();
    fx.sync(&options).await.expect("full sync");
    let control = fx.sim.control();
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    for round in 0..4 {
        for step in 0..12 {
            let people: Vec<_> = control
                .users()
                .into_iter()
                .filter(|u| !u.is_admin)
                .collect();
            let groups = control.groups();
            let person = &people[rng.random_range(0..people.len())];
            let group = &groups[rng.random_range(0..groups.len())];
            match rng.random_range(0..7) {
                0 => {
                    control
                        .add_user(&UserFields::new().display_name(format!("New {round}-{step}")))
                        .unwrap();
                }
                1 => {
                    control
                        .update_user(
                            &person.id,
                            &UserFields::new().job_title(format!("Title {round}-{step}")),
                        )
                        .unwrap();
                }
                2 => control.delete_user(&person.id, Deletion::Soft).unwrap(),
                3 => control
                    .delete_user(&person.id, Deletion::Permanent)
                    .unwrap(),
                4 => {
                    control.add_member(&group.id, &person.id).unwrap();
                }
                5 => {
                    control.remove_member(&group.id, &person.id).unwrap();
                }
                _ => {
                    let team = control
                        .add_group(GroupFields::new().display_name(format!("Team {round}-{step}")))
                        .unwrap();
                    control.add_member(&team.id, &person.id).unwrap();
                }
            }
        }
        let report = fx.sync(&options).await.expect("delta sync");
        assert_eq!(report.kind, SyncKind::Delta, "round {round}");
        assert_eq!(
            fx.mirrored().await,
            fx.fresh_import(&options).await,
            "round {round}"
        );
    }
    // A replayed round changes nothing: the same links again.
    let report = fx.sync(&options).await.expect("a quiet round");
    assert!(report.summary.users.is_unchanged() && report.summary.memberships.is_unchanged());
}

#[tokio::test]
async fn expired_delta_links_resync_and_still_report_deletions() {
    let fx = Fixture::new().await;
    let options = options();
    fx.sync(&options).await.expect("full sync");
    let control = fx.sim.control();
    let gone = control.users().into_iter().find(|u| !u.is_admin).unwrap();
    control.delete_user(&gone.id, Deletion::Permanent).unwrap();
    control.expire_delta_tokens();

    let report = fx.sync(&options).await.expect("resync");
    let summary = &report.summary;
    assert_eq!(report.kind, SyncKind::Resync);
    assert_eq!(summary.users.removed, 1);
    assert_eq!(
        summary.removed_user_ids,
        vec![ObjectId::new(gone.id.clone())]
    );
    assert_eq!(summary.users.added, 0);
    assert_eq!(summary.users.updated, 0);
    assert!(!fx.mirrored().await.users.contains_key(&gone.id));

    // The new links work: the next sync is a delta again, with nothing to do.
    let next = fx.sync(&options).await.expect("delta after resync");
    assert_eq!(next.kind, SyncKind::Delta);
    assert!(next.summary.users.is_unchanged());
}

#[tokio::test]
async fn forced_resync_410_is_reconciled_the_same_way() {
    let fx = Fixture::new().await;
    let options = options();
    fx.sync(&options).await.expect("full sync");
    let control = fx.sim.control();
    let gone = control.users().into_iter().find(|u| !u.is_admin).unwrap();
    control.delete_user(&gone.id, Deletion::Soft).unwrap();
    control.force_resync();

    let report = fx.sync(&options).await.expect("resync");
    assert_eq!(report.kind, SyncKind::Resync);
    assert_eq!(
        report.summary.removed_user_ids,
        vec![ObjectId::new(gone.id.clone())]
    );
}

#[tokio::test]
async fn throttling_and_faults_give_exactly_the_clean_mirror() {
    let fx = Fixture::new().await;
    fx.sync(&options()).await.expect("clean sync");
    let clean = fx.mirrored().await;

    // The same tenant, now throttled and failing: a small bucket, and a fifth of the
    // requests answered 503/504, dropped, truncated or late.
    let control = fx.sim.control();
    control.set_throttle(Some(ThrottleSettings::new(60.0, 12.0).unwrap()));
    control.set_faults(
        FaultSettings::none()
            .with_rate(0.2)
            .unwrap()
            .with_kinds(&[
                FaultKind::ServiceUnavailable,
                FaultKind::GatewayTimeout,
                FaultKind::DroppedConnection,
                FaultKind::TruncatedBody,
                FaultKind::ExtraLatency,
            ])
            .unwrap(),
    );
    control.reset_counters();
    // Quick backoffs when Graph gives no Retry-After, so the test stays fast.
    let graph = GraphClient::builder(SessionTokens::new(fx.linked.session.clone()))
        .base_url(fx.sim.graph_base())
        .retry_policy(
            RetryPolicy::new()
                .max_retries(10)
                .initial_backoff(Duration::from_millis(20))
                .max_backoff(Duration::from_millis(200)),
        )
        .build()
        .unwrap();
    let mut rough = options();
    rough.engine = rough.engine.force_full(true);
    let report = fx
        .sync_with(&graph, &rough)
        .await
        .expect("sync through throttling and faults");
    assert_eq!(report.kind, SyncKind::Full);
    assert!(report.summary.users.is_unchanged(), "{:?}", report.summary);
    let counters = control.counters();
    let throttled = counters.by_status().get(&429).copied().unwrap_or(0);
    let failed: u64 = counters
        .by_status()
        .iter()
        .filter(|(status, _)| matches!(status, 503 | 504))
        .map(|(_, n)| n)
        .sum();
    assert!(
        throttled > 0,
        "the run was throttled: {:?}",
        counters.by_status()
    );
    assert!(
        failed > 0,
        "faults were injected: {:?}",
        counters.by_status()
    );
    assert_eq!(fx.mirrored().await, clean);
}

#[tokio::test]
async fn a_lease_held_by_another_process_stops_the_sync_before_any_write() {
    let fx = Fixture::new().await;
    let other = LeaseHolder::new("sync-other-replica").unwrap();
    fx.target
        .store
        .acquire_lease(
            &fx.target.owner,
            fx.target.id,
            &other,
            Duration::from_secs(60),
        )
        .await
        .unwrap()
        .expect("the other replica takes the lease");
    fx.sim.control().reset_counters();
    let error = fx.sync(&options()).await.expect_err("the sync refuses");
    assert_eq!(error.downcast_ref::<SyncStop>(), Some(&SyncStop::LeaseHeld));
    assert!(
        fx.mirror.state(fx.target.id).await.unwrap().is_none(),
        "nothing written"
    );
    assert_eq!(fx.sim.control().counters().total(), 0, "no Graph request");
    // The other replica still holds it.
    assert!(
        fx.target
            .store
            .renew_lease(
                &fx.target.owner,
                fx.target.id,
                &other,
                Duration::from_secs(60)
            )
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn the_lease_is_released_after_a_sync() {
    let fx = Fixture::new().await;
    fx.sync(&options()).await.expect("sync");
    let other = LeaseHolder::new("sync-next").unwrap();
    let lease = fx
        .target
        .store
        .acquire_lease(
            &fx.target.owner,
            fx.target.id,
            &other,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert!(lease.is_some(), "the lease is free again");
}

#[tokio::test]
async fn a_connection_needing_reconnect_stops_with_its_reason() {
    let fx = Fixture::new().await;
    fx.target
        .store
        .set_status(
            &fx.target.owner,
            fx.target.id,
            ConnectionStatus::NeedsReconnect {
                reason: "AADSTS50173: The provided grant has expired".into(),
                since: time::OffsetDateTime::now_utc(),
                claims: None,
            },
        )
        .await
        .unwrap();
    let error = fx.sync(&options()).await.expect_err("stops");
    let Some(SyncStop::NeedsReconnect { reason }) = error.downcast_ref::<SyncStop>() else {
        panic!("unexpected error: {error:#}");
    };
    assert!(reason.contains("AADSTS50173"));
    assert!(error.to_string().contains("--reconnect"));
    assert!(fx.mirror.state(fx.target.id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_revoked_grant_mid_sync_becomes_needs_reconnect_and_keeps_the_old_mirror() {
    let fx = Fixture::new().await;
    let options = options();
    fx.sync(&options).await.expect("full sync");
    let before = fx.mirrored().await;
    // The admin's grants are revoked and the cached access token dropped: the next
    // refresh fails for good.
    fx.sim
        .control()
        .revoke_user_grants(fx.sim.admin_id())
        .unwrap();
    fx.linked.session.invalidate();
    fx.sim
        .control()
        .add_user(&UserFields::new().display_name("Late Joiner"))
        .unwrap();

    let error = fx.sync(&options).await.expect_err("stops");
    assert!(
        matches!(
            error.downcast_ref::<SyncStop>(),
            Some(SyncStop::NeedsReconnect { .. })
        ),
        "{error:#}"
    );
    assert_eq!(fx.mirrored().await, before, "the previous mirror stays");
    assert_eq!(
        fx.mirror
            .state(fx.target.id)
            .await
            .unwrap()
            .unwrap()
            .commits,
        1
    );
    let connection = fx
        .target
        .store
        .get(&fx.target.owner, fx.target.id)
        .await
        .unwrap();
    assert_eq!(connection.status.kind(), "needs_reconnect");
}

#[tokio::test]
async fn the_selected_user_properties_are_kept_and_changing_them_runs_a_full_import() {
    let fx = Fixture::new().await;
    let mut options = options();
    options.engine = SyncOptions::new().user_select(&["displayName", "mail", "businessPhones"]);
    let report = fx.sync(&options).await.expect("sync");
    let mirrored = fx.mirrored().await;
    let some = mirrored.users.values().next().unwrap();
    assert!(some.get("displayName").is_some());
    assert!(some["jobTitle"].is_null(), "not selected: {some}");
    assert_eq!(mirrored.users.len() as u64, report.summary.users.total);

    // A second run with the same properties is a delta; other properties make it full.
    assert_eq!(fx.sync(&options).await.unwrap().kind, SyncKind::Delta);
    options.engine = SyncOptions::new().user_select(&["displayName"]);
    let report = fx.sync(&options).await.unwrap();
    assert_eq!(report.kind, SyncKind::Full);
    assert_eq!(report.summary.users.removed, 0);
    assert!(report.summary.users.updated > 0, "rows lost properties");
}

#[tokio::test]
async fn a_failed_sync_leaves_the_mirror_its_links_and_the_sync_time_as_they_were() {
    let fx = Fixture::new().await;
    let options = options();
    fx.sync(&options).await.expect("full sync");
    let store = fx.target.store.as_ref();
    let before = fx.mirrored().await;
    let state_before = fx.mirror.state(fx.target.id).await.unwrap().unwrap();
    let synced_before = store
        .get(&fx.target.owner, fx.target.id)
        .await
        .unwrap()
        .last_synced_at;

    let control = fx.sim.control();
    let joiner = control
        .add_user(&UserFields::new().display_name("Nina Neumann"))
        .unwrap();
    // Every Graph request now fails with a 500, which is not retried.
    control.set_faults(
        FaultSettings::none()
            .with_rate(1.0)
            .unwrap()
            .with_kinds(&[FaultKind::InternalServerError])
            .unwrap(),
    );
    let error = fx.sync(&options).await.expect_err("the sync fails");
    assert!(error.downcast_ref::<SyncStop>().is_none(), "{error:#}");
    assert_eq!(fx.mirrored().await, before);
    let state = fx.mirror.state(fx.target.id).await.unwrap().unwrap();
    assert_eq!(state.commits, state_before.commits);
    let connection = store.get(&fx.target.owner, fx.target.id).await.unwrap();
    assert_eq!(connection.last_synced_at, synced_before);

    // Once Graph answers again, the next sync picks the change up by delta: the links
    // of the last commit were kept.
    control.set_faults(FaultSettings::none());
    let report = fx.sync(&options).await.expect("sync");
    assert_eq!(report.kind, SyncKind::Delta);
    assert_eq!(report.summary.users.added, 1);
    assert!(fx.mirrored().await.users.contains_key(&joiner.id));
}

#[tokio::test]
async fn a_lease_taken_over_mid_sync_stops_it_before_any_write() {
    let clock = connection_store::ManualClock::new(time::OffsetDateTime::now_utc());
    let fx = Fixture::with_tenant(60, 12, Some(clock.clone())).await;
    // Slow Graph, a short lease renewed every 100 ms.
    fx.sim
        .control()
        .set_faults(FaultSettings::none().with_latency(Duration::from_millis(300)));
    let mut options = options();
    options.lease_ttl = Duration::from_millis(300);

    let store = Arc::clone(&fx.target.store);
    let (owner, id) = (fx.target.owner.clone(), fx.target.id);
    let thief = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        // The store's clock jumps past the lease, as if the renewals had stalled, and
        // another replica takes the connection over.
        clock.advance(Duration::from_secs(3600));
        let other = LeaseHolder::new("sync-other-replica").unwrap();
        store
            .acquire_lease(&owner, id, &other, Duration::from_secs(3600))
            .await
            .unwrap()
    });
    let error = fx.sync(&options).await.expect_err("the sync stops");
    assert!(
        thief.await.unwrap().is_some(),
        "the other replica got the lease"
    );
    assert_eq!(
        error.downcast_ref::<SyncStop>(),
        Some(&SyncStop::LeaseLost),
        "{error:#}"
    );
    let state = fx.mirror.state(fx.target.id).await.unwrap();
    assert!(state.is_none_or(|s| s.commits == 0), "nothing committed");
}

/// Renewals that never come back (a database stuck for a whole lease; the soak saw
/// renewals fail that long under load): the sync stops with `LeaseLost` once its lease
/// may have run out, before another holder can take it over, instead of running on beside
/// it (its writes would be refused by the fence, but its Graph requests would go on);
/// nothing is committed. Real time, as the sim's Graph answers over loopback: a whole
/// sync takes at least four round trips of 2 s, the lease 600 ms, so stopping within 4 s
/// can only be the lease's doing.
#[tokio::test]
async fn a_sync_whose_lease_renewals_stall_stops_before_its_lease_can_run_out() {
    let mut fx = Fixture::with_tenant(60, 12, None).await;
    fx.sim
        .control()
        .set_faults(FaultSettings::none().with_latency(Duration::from_secs(2)));
    let mut options = options();
    options.lease_ttl = Duration::from_millis(600);
    let hooked = Arc::new(HookedStore::new(Arc::clone(&fx.target.store)));
    hooked.stall_renewals();
    fx.target.store = hooked.clone();

    let started = std::time::Instant::now();
    let error = fx.sync(&options).await.expect_err("the sync stops");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the sync ran on for {:?} after its lease could have run out",
        started.elapsed()
    );
    assert_eq!(
        error.downcast_ref::<SyncStop>(),
        Some(&SyncStop::LeaseLost),
        "{error:#}"
    );
    assert_eq!(
        hooked.renewals(),
        1,
        "one renewal was sent and never came back"
    );
    let state = fx.mirror.state(fx.target.id).await.unwrap();
    assert!(state.is_none_or(|s| s.commits == 0), "nothing committed");
    // The lease was freed on the way out: another holder takes it at once.
    let other = LeaseHolder::new("sync-next-holder").unwrap();
    assert!(
        fx.target
            .store
            .acquire_lease(
                &fx.target.owner,
                fx.target.id,
                &other,
                Duration::from_secs(60)
            )
            .await
            .unwrap()
            .is_some()
    );
}

/// A renewal that fails with a database hiccup is retried while the lease still lasts
/// (halfway to its end), so one hiccup does not stop the sync: the first renewal fails,
/// the retry succeeds, and the sync commits. The claim's lease is only known to last 2/3
/// of the TTL, so without the early retry the next regular tick would already be too
/// late. Real time, as the sim's Graph answers over loopback: 500 ms a request, a lease
/// of 1.5 s.
#[tokio::test]
async fn a_failed_lease_renewal_is_retried_while_the_lease_lasts() {
    let mut fx = Fixture::with_tenant(60, 12, None).await;
    fx.sim
        .control()
        .set_faults(FaultSettings::none().with_latency(Duration::from_millis(500)));
    let mut options = options();
    options.lease_ttl = Duration::from_millis(1500);
    let hooked = Arc::new(HookedStore::new(Arc::clone(&fx.target.store)));
    hooked.fail_renewals(1);
    fx.target.store = hooked.clone();

    let report = fx
        .sync(&options)
        .await
        .expect("the sync survives one failed renewal");
    assert_eq!(report.kind, SyncKind::Full);
    assert!(hooked.renewals() >= 2, "the failed renewal was retried");
    let state = fx.mirror.state(fx.target.id).await.unwrap();
    assert!(state.is_some_and(|s| s.commits == 1), "the sync committed");
}

#[tokio::test]
async fn groups_larger_than_a_page_are_followed_through_their_next_links() {
    use futures::TryStreamExt as _;
    // "All Company" holds every member user: more than one page of 999.
    let fx = Fixture::with_tenant(2100, 6, None).await;
    let control = fx.sim.control();
    let groups = control.groups();
    assert!(groups.iter().any(|g| g.member_count > 999));
    control.reset_counters();

    let pages: Vec<_> = fx
        .linked
        .graph
        .groups()
        .members_of_many(groups.iter().map(|g| g.id.clone()))
        .concurrency(2)
        .stream()
        .try_collect()
        .await
        .expect("expansion");

    for group in &groups {
        let expected: BTreeSet<String> = control
            .group_member_ids(&group.id)
            .unwrap()
            .into_iter()
            .collect();
        let got: BTreeSet<String> = pages
            .iter()
            .filter(|p| p.group.as_str() == group.id)
            .flat_map(|p| {
                p.members
                    .iter()
                    .map(|m| m.id().unwrap().as_str().to_owned())
            })
            .collect();
        assert_eq!(got, expected, "members of {}", group.display_name);
        let last = pages
            .iter()
            .rfind(|p| p.group.as_str() == group.id)
            .unwrap();
        assert!(last.complete, "the group's last page says so");
    }
    // One $batch for the first pages, then the large groups' next pages one by one.
    let counters = control.counters();
    let batches = counters.count("POST /$batch", 200);
    assert_eq!(batches, 1, "{:?}", counters.by_endpoint());
    let large = groups.iter().filter(|g| g.member_count > 999).count() as u64;
    let next_pages: u64 = groups
        .iter()
        .map(|g| (g.member_count as u64).saturating_sub(1) / 999)
        .sum();
    assert!(
        large >= 1 && next_pages >= 2,
        "{large} large groups, {next_pages} next pages"
    );
    assert_eq!(
        counters.total(),
        1 + groups.len() as u64 + next_pages,
        "{:?}",
        counters.by_endpoint()
    );
}
