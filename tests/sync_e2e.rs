//! Syncing a connected tenant end to end, against tenant-sim in process, composed the
//! way `examples/sync.rs` composes the crates: a real sign-in stored as a connection,
//! the glue's Graph client, and `m365_link_app::sync` writing the export.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use connection_store::{
    ConnectionStatus, ConnectionStore, CursorKey, LeaseHolder, MemoryStore, OwnerId,
};
use graph_client::{GraphClient, RetryPolicy};
use m365_link_app::connect::{SignIn, create_connection, simulated_browser};
use m365_link_app::glue::{Linked, SessionTokens};
use m365_link_app::sync::{self, Format, Kind, NoProgress, SyncStop, Target};
use serde_json::Value;
use tenant_sim::{
    Deletion, FaultKind, FaultSettings, GroupFields, TenantSim, ThrottleSettings, UserFields,
};

/// A signed-in connection to a small simulated tenant, and a scratch folder.
struct Fixture {
    sim: TenantSim,
    linked: Linked,
    target: Target,
    dir: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Fixture {
    async fn new() -> Self {
        Self::with_store(Arc::new(MemoryStore::new())).await
    }

    async fn with_store(store: Arc<dyn ConnectionStore>) -> Self {
        Self::with_tenant(store, 60, 12).await
    }

    async fn with_tenant(store: Arc<dyn ConnectionStore>, users: usize, groups: usize) -> Self {
        let sim = TenantSim::builder()
            .users(users)
            .groups(groups)
            .seed(5)
            // Small delta pages, so large groups' members@delta span pages (spec 9).
            .delta_page_size(20)
            .start()
            .await
            .expect("tenant-sim starts");
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
        let dir = std::env::temp_dir().join(format!("m365-sync-e2e-{}", uuid::Uuid::new_v4()));
        Self {
            sim,
            linked,
            target: Target {
                store,
                owner,
                id: connection.id,
            },
            dir,
        }
    }

    fn options(&self, folder: &str) -> sync::Options {
        sync::Options::new(self.dir.join(folder)).expect("options")
    }

    async fn sync(&self, options: &sync::Options) -> anyhow::Result<sync::Report> {
        sync::run(&self.linked.graph, &self.target, options, &NoProgress).await
    }
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

fn memberships(dir: &Path) -> BTreeSet<(String, String)> {
    lines(&dir.join("memberships.jsonl"))
        .iter()
        .map(|row| {
            (
                row["groupId"].as_str().unwrap().to_owned(),
                row["memberId"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn export_files(dir: &Path) -> Vec<String> {
    ["users.jsonl", "groups.jsonl", "memberships.jsonl"]
        .iter()
        .map(|name| std::fs::read_to_string(dir.join(name)).expect("export file"))
        .collect()
}

#[tokio::test]
async fn first_sync_imports_every_user_group_and_membership() {
    let fx = Fixture::new().await;
    let options = fx.options("out");
    let report = fx.sync(&options).await.expect("full sync");

    let control = fx.sim.control();
    let users = control.users();
    let groups = control.groups();
    let expected_memberships: usize = groups.iter().map(|g| g.member_count).sum();
    assert_eq!(report.kind, Kind::Full);
    assert_eq!(report.users.total, users.len() as u64);
    assert_eq!(report.users.added, users.len() as u64);
    assert_eq!(report.groups.total, groups.len() as u64);
    assert_eq!(report.memberships.total, expected_memberships as u64);

    // A sample of users as the directory has them.
    let exported = lines(&options.out_dir.join("users.jsonl"));
    assert_eq!(exported.len(), users.len());
    for user in users.iter().step_by(7) {
        let row = exported
            .iter()
            .find(|row| row["id"] == user.id.as_str())
            .expect("user exported");
        assert_eq!(row["userPrincipalName"], user.user_principal_name.as_str());
        assert_eq!(row["displayName"], user.display_name.as_str());
        assert_eq!(row["accountEnabled"], user.account_enabled);
    }
    // Every group's members, including the large "All Company" group.
    let rows = memberships(&options.out_dir);
    for group in &groups {
        let expected: BTreeSet<String> = control
            .group_member_ids(&group.id)
            .unwrap()
            .into_iter()
            .collect();
        let got: BTreeSet<String> = rows
            .iter()
            .filter(|(g, _)| *g == group.id)
            .map(|(_, m)| m.clone())
            .collect();
        assert_eq!(got, expected, "members of {}", group.display_name);
    }

    // Cursors and the sync time are in the store.
    let store = fx.target.store.as_ref();
    for key in [CursorKey::users(), CursorKey::groups()] {
        assert!(
            store
                .load_cursor(&fx.target.owner, fx.target.id, &key)
                .await
                .unwrap()
                .is_some(),
            "{} cursor saved",
            key.as_str()
        );
    }
    let connection = store.get(&fx.target.owner, fx.target.id).await.unwrap();
    assert!(connection.last_synced_at.is_some());
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(options.out_dir.join("summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["users"]["total"], users.len());
}

#[tokio::test]
async fn delta_sync_applies_adds_updates_deletes_and_membership_changes() {
    let fx = Fixture::new().await;
    let options = fx.options("out");
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
    assert_eq!(report.kind, Kind::Delta);
    assert_eq!(report.users.added, 1);
    assert_eq!(report.users.updated, 1);
    assert_eq!(report.users.deleted, 2);
    let mut deleted = report.deleted_user_ids.clone();
    deleted.sort();
    let mut expected = vec![people[2].id.clone(), people[3].id.clone()];
    expected.sort();
    assert_eq!(deleted, expected);
    assert_eq!(report.groups.added, 1);
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

    let rows = memberships(&options.out_dir);
    assert!(rows.contains(&(team.id.clone(), added.id.clone())));
    assert!(rows.contains(&(team.id.clone(), people[4].id.clone())));
    assert!(!rows.contains(&(small.id.clone(), leaving.clone())));
    assert!(
        rows.iter()
            .all(|(_, m)| *m != people[3].id && *m != people[2].id)
    );
    let users = lines(&options.out_dir.join("users.jsonl"));
    let updated = users
        .iter()
        .find(|u| u["id"] == people[1].id.as_str())
        .unwrap();
    assert_eq!(updated["jobTitle"], "Head of Sales");

    // The delta-maintained export equals a fresh full import of the changed tenant.
    let fresh = fx.options("fresh");
    let full = fx.sync(&fresh).await.expect("fresh full sync");
    assert_eq!(full.kind, Kind::Full);
    assert_eq!(export_files(&options.out_dir), export_files(&fresh.out_dir));
}

#[tokio::test]
async fn expired_delta_links_resync_and_still_report_deletions() {
    let fx = Fixture::new().await;
    let options = fx.options("out");
    fx.sync(&options).await.expect("full sync");
    let control = fx.sim.control();
    let gone = control.users().into_iter().find(|u| !u.is_admin).unwrap();
    control.delete_user(&gone.id, Deletion::Permanent).unwrap();
    control.expire_delta_tokens();

    let report = fx.sync(&options).await.expect("resync");
    assert_eq!(report.kind, Kind::Resync);
    assert_eq!(report.users.deleted, 1);
    assert_eq!(report.deleted_user_ids, vec![gone.id.clone()]);
    assert_eq!(report.users.added, 0);
    assert_eq!(report.users.updated, 0);

    // The new links work: the next sync is a delta again, with nothing to do.
    let next = fx.sync(&options).await.expect("delta after resync");
    assert_eq!(next.kind, Kind::Delta);
    assert_eq!(
        (next.users.added, next.users.updated, next.users.deleted),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn forced_resync_410_is_reconciled_the_same_way() {
    let fx = Fixture::new().await;
    let options = fx.options("out");
    fx.sync(&options).await.expect("full sync");
    let control = fx.sim.control();
    let gone = control.users().into_iter().find(|u| !u.is_admin).unwrap();
    control.delete_user(&gone.id, Deletion::Soft).unwrap();
    control.force_resync();

    let report = fx.sync(&options).await.expect("resync");
    assert_eq!(report.kind, Kind::Resync);
    assert_eq!(report.deleted_user_ids, vec![gone.id.clone()]);
}

#[tokio::test]
async fn throttling_and_faults_give_exactly_the_clean_export() {
    let fx = Fixture::new().await;
    let clean = fx.options("clean");
    fx.sync(&clean).await.expect("clean sync");

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
    let graph = GraphClient::builder(Arc::new(SessionTokens::new(fx.linked.session.clone())))
        .base_url(fx.sim.graph_base())
        .retry_policy(
            RetryPolicy::new()
                .max_retries(10)
                .initial_backoff(Duration::from_millis(20))
                .max_backoff(Duration::from_millis(200)),
        )
        .build()
        .unwrap();
    let mut rough = fx.options("rough");
    rough.full = true;
    let report = sync::run(&graph, &fx.target, &rough, &NoProgress)
        .await
        .expect("sync through throttling and faults");
    assert_eq!(report.kind, Kind::Full);
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
    assert_eq!(export_files(&clean.out_dir), export_files(&rough.out_dir));
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
    let options = fx.options("out");
    let error = fx.sync(&options).await.expect_err("the sync refuses");
    assert_eq!(error.downcast_ref::<SyncStop>(), Some(&SyncStop::LeaseHeld));
    assert!(!options.out_dir.exists(), "nothing written");
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
    let options = fx.options("out");
    fx.sync(&options).await.expect("sync");
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
            },
        )
        .await
        .unwrap();
    let options = fx.options("out");
    let error = fx.sync(&options).await.expect_err("stops");
    let Some(SyncStop::NeedsReconnect { reason }) = error.downcast_ref::<SyncStop>() else {
        panic!("unexpected error: {error:#}");
    };
    assert!(reason.contains("AADSTS50173"));
    assert!(error.to_string().contains("--reconnect"));
    assert!(!options.out_dir.exists());
}

#[tokio::test]
async fn a_revoked_grant_mid_sync_becomes_needs_reconnect_and_keeps_the_old_export() {
    let fx = Fixture::new().await;
    let options = fx.options("out");
    fx.sync(&options).await.expect("full sync");
    let before = export_files(&options.out_dir);
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
    assert_eq!(
        export_files(&options.out_dir),
        before,
        "the previous export stays"
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
async fn csv_export_has_the_selected_columns() {
    let fx = Fixture::new().await;
    let mut options = fx.options("csv");
    options.format = Format::Csv;
    options.select = vec!["displayName".into(), "mail".into(), "businessPhones".into()];
    let report = fx.sync(&options).await.expect("sync");
    let text = std::fs::read_to_string(options.out_dir.join("users.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        ["id", "displayName", "mail", "businessPhones"]
    );
    assert_eq!(reader.records().count() as u64, report.users.total);
    let memberships = std::fs::read_to_string(options.out_dir.join("memberships.csv")).unwrap();
    assert_eq!(
        memberships.lines().count() as u64,
        report.memberships.total + 1
    );

    // A second run with the same columns is a delta; other columns make it full.
    assert_eq!(fx.sync(&options).await.unwrap().kind, Kind::Delta);
    options.select = vec!["displayName".into()];
    let report = fx.sync(&options).await.unwrap();
    assert_eq!(report.kind, Kind::Full);
    assert_eq!(
        report.users.updated, report.users.total,
        "every row lost two columns"
    );
}

#[tokio::test]
async fn switching_the_format_keeps_syncing_by_delta_from_the_latest_export() {
    let fx = Fixture::new().await;
    let mut options = fx.options("out");
    fx.sync(&options).await.expect("full sync as JSON Lines");
    let control = fx.sim.control();
    let people: Vec<_> = control
        .users()
        .into_iter()
        .filter(|u| !u.is_admin)
        .collect();

    control
        .update_user(&people[0].id, &UserFields::new().job_title("First change"))
        .unwrap();
    options.format = Format::Csv;
    let report = fx.sync(&options).await.expect("CSV sync");
    assert_eq!(report.kind, Kind::Delta);
    assert_eq!(report.users.updated, 1);

    control
        .update_user(&people[1].id, &UserFields::new().job_title("Second change"))
        .unwrap();
    options.format = Format::Jsonl;
    let report = fx.sync(&options).await.expect("JSON Lines sync again");
    assert_eq!(report.kind, Kind::Delta);
    // Only the second change: the first is already in the CSV run's state, which the
    // stale JSON Lines files of the first run must not override.
    assert_eq!(report.users.updated, 1);
    let users = lines(&options.out_dir.join("users.jsonl"));
    let first = users
        .iter()
        .find(|u| u["id"] == people[0].id.as_str())
        .unwrap();
    assert_eq!(first["jobTitle"], "First change");
}

#[tokio::test]
async fn a_failed_sync_leaves_the_export_cursors_and_sync_time_as_they_were() {
    use secrecy::ExposeSecret as _;
    let fx = Fixture::new().await;
    let options = fx.options("out");
    fx.sync(&options).await.expect("full sync");
    let store = fx.target.store.as_ref();
    let cursor = async || {
        store
            .load_cursor(&fx.target.owner, fx.target.id, &CursorKey::users())
            .await
            .unwrap()
            .map(|c| c.expose_secret().to_owned())
    };
    let files_before = export_files(&options.out_dir);
    let cursor_before = cursor().await;
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
    assert_eq!(export_files(&options.out_dir), files_before);
    assert_eq!(cursor().await, cursor_before);
    let connection = store.get(&fx.target.owner, fx.target.id).await.unwrap();
    assert_eq!(connection.last_synced_at, synced_before);

    // Once Graph answers again, the next sync picks the change up by delta.
    control.set_faults(FaultSettings::none());
    let report = fx.sync(&options).await.expect("sync");
    assert_eq!(report.kind, Kind::Delta);
    assert_eq!(report.users.added, 1);
    let users = lines(&options.out_dir.join("users.jsonl"));
    assert!(users.iter().any(|u| u["id"] == joiner.id.as_str()));
}

#[tokio::test]
async fn a_lease_taken_over_mid_sync_stops_it_before_any_write() {
    let clock = connection_store::ManualClock::new(time::OffsetDateTime::now_utc());
    let fx = Fixture::with_store(Arc::new(MemoryStore::with_clock(Arc::new(clock.clone())))).await;
    // Slow Graph, a short lease renewed every 100 ms.
    fx.sim
        .control()
        .set_faults(FaultSettings::none().with_latency(Duration::from_millis(300)));
    let mut options = fx.options("out");
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
    assert!(!options.out_dir.exists(), "nothing written");
    let cursor = fx
        .target
        .store
        .load_cursor(&fx.target.owner, fx.target.id, &CursorKey::users())
        .await
        .unwrap();
    assert!(cursor.is_none(), "no cursor saved");
}

#[tokio::test]
async fn groups_larger_than_a_page_are_followed_through_their_next_links() {
    // "All Company" holds every member user: more than one page of 999.
    let fx = Fixture::with_tenant(Arc::new(MemoryStore::new()), 2100, 6).await;
    let control = fx.sim.control();
    let groups = control.groups();
    assert!(groups.iter().any(|g| g.member_count > 999));
    let ids: Vec<String> = groups.iter().map(|g| g.id.clone()).collect();
    control.reset_counters();

    let members = sync::expand_members(&fx.linked.graph, &ids, 2, &NoProgress)
        .await
        .expect("expansion");

    for group in &groups {
        let expected: BTreeSet<String> = control
            .group_member_ids(&group.id)
            .unwrap()
            .into_iter()
            .collect();
        let got: BTreeSet<String> = members[&group.id].keys().cloned().collect();
        assert_eq!(got, expected, "members of {}", group.display_name);
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
