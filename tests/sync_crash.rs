//! SIGKILL of the sync process at random points, 20 times: the mirror always holds the
//! last committed sync with the links it was committed with, never a half.
//!
//! The syncing process is this test binary itself, re-run with `--ignored --exact
//! sync_crash_child`; it syncs the connection into the `SQLite` mirror again and again
//! (full imports and delta rounds in turn) until it is killed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use connection_store::{ConnectionId, ConnectionStore, LeaseHolder, OwnerId};
use connection_store_sql::{EncryptionKey, KeyId, KeyRing, SqlStore};
use graph_client::sync::{MemorySink, NoProgress, SyncOptions};
use m365_link_app::connect::{SignIn, create_connection, simulated_browser};
use m365_link_app::glue::{App, Linked};
use m365_link_app::mirror::{MAX_PAGE, Mirror};
use m365_link_app::sync::{self, Target};
use rand::{Rng as _, SeedableRng as _};
use secrecy::{ExposeSecret as _, SecretString};
use tenant_sim::{TenantSim, UserFields};

const CHILD_ENV: &str = "M365_LINK_SYNC_CRASH_CHILD";
const ROUNDS: usize = 20;
const HOLDER: &str = "sync-crash-test";

/// What the child needs, one value per line: database, key, owner, connection, client
/// id, client secret.
fn child_settings(
    db: &std::path::Path,
    key: &EncryptionKey,
    owner: &OwnerId,
    id: ConnectionId,
    sim: &TenantSim,
) -> String {
    [
        db.to_string_lossy().into_owned(),
        key.to_base64().expose_secret().to_owned(),
        owner.as_str().to_owned(),
        id.to_string(),
        sim.client_id().to_owned(),
        sim.client_secret().expose_secret().to_owned(),
    ]
    .join("\n")
}

async fn open(db: &std::path::Path, key: &EncryptionKey) -> (SqlStore, Mirror) {
    // The key is not `Clone`: a copy through its text form.
    let copy = EncryptionKey::from_base64(&key.to_base64()).unwrap();
    let keys = KeyRing::new(KeyId::new("crash").unwrap(), copy);
    let sql = SqlStore::sqlite(db)
        .key_ring(keys)
        .open()
        .await
        .expect("the store opens");
    let mirror = Mirror::open(&sql).await.expect("the mirror opens");
    (sql, mirror)
}

fn options() -> sync::Options {
    let mut options = sync::Options::new().unwrap();
    options.holder = LeaseHolder::new(HOLDER).unwrap();
    options
}

async fn sync_once(
    sql: &SqlStore,
    mirror: &Mirror,
    linked: &Linked,
    owner: &OwnerId,
    id: ConnectionId,
    options: &sync::Options,
) -> anyhow::Result<()> {
    let target = Target {
        store: Arc::new(sql.clone()),
        owner: owner.clone(),
        id,
    };
    let mut sink = mirror.sink(sql, id).with_fence(options.holder.clone());
    sync::run(&linked.graph, &target, &mut sink, options, &NoProgress).await?;
    Ok(())
}

/// The syncing process: full and delta syncs in turn until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "syncing process of a_killed_sync_leaves_the_last_commit_and_its_links; does nothing unless spawned by it"]
async fn sync_crash_child() {
    let Ok(settings) = std::env::var(CHILD_ENV) else {
        return;
    };
    let lines: Vec<&str> = settings.lines().collect();
    let key = EncryptionKey::from_base64(&SecretString::from(lines[1].to_owned())).unwrap();
    let (sql, mirror) = open(lines[0].as_ref(), &key).await;
    let owner = OwnerId::new(lines[2]);
    let id: ConnectionId = lines[3].parse().unwrap();
    let app = App {
        client_id: lines[4].to_owned(),
        client_secret: Some(SecretString::from(lines[5].to_owned())),
    };
    let linked = Linked::open(Arc::new(sql.clone()), &owner, id, &app)
        .await
        .unwrap();
    for run in 0u64.. {
        let mut options = options();
        options.engine = SyncOptions::new().force_full(run % 2 == 0);
        println!("syncing {run}");
        sync_once(&sql, &mirror, &linked, &owner, id, &options)
            .await
            .unwrap();
        println!("committed {run}");
    }
}

/// The mirror's rows, as comparable text.
async fn mirrored(
    mirror: &Mirror,
    id: ConnectionId,
) -> (BTreeMap<String, String>, BTreeSet<(String, String)>) {
    let mut users = BTreeMap::new();
    let mut offset = 0;
    loop {
        let page = mirror
            .users_page(id, None, offset, MAX_PAGE)
            .await
            .expect("users decode");
        offset += page.len() as u64;
        for user in &page {
            users.insert(
                user.id.clone().unwrap().into_string(),
                serde_json::to_string(user).unwrap(),
            );
        }
        if page.len() < MAX_PAGE as usize {
            break;
        }
    }
    let mut memberships = BTreeSet::new();
    for group in mirror
        .groups_page(id, 0, MAX_PAGE)
        .await
        .expect("groups decode")
    {
        let group_id = group.id.unwrap();
        for member in mirror.members(id, &group_id).await.unwrap() {
            memberships.insert((group_id.as_str().to_owned(), member.id.into_string()));
        }
    }
    (users, memberships)
}

/// A fresh full import of the tenant as it is, in the same shape.
async fn fresh(linked: &Linked) -> (BTreeMap<String, String>, BTreeSet<(String, String)>) {
    let mut sink = MemorySink::new();
    graph_client::sync::run(&linked.graph, &mut sink, &SyncOptions::new(), &NoProgress)
        .await
        .unwrap();
    let users = sink
        .directory()
        .users()
        .iter()
        .map(|(id, u)| (id.as_str().to_owned(), serde_json::to_string(u).unwrap()))
        .collect();
    let memberships = sink
        .directory()
        .members()
        .iter()
        .flat_map(|(g, m)| {
            m.keys()
                .map(move |m| (g.as_str().to_owned(), m.as_str().to_owned()))
        })
        .collect();
    (users, memberships)
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one scenario: set up, kill repeatedly, verify"
)]
fn a_killed_sync_leaves_the_last_commit_and_its_links() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("m365-sync-crash-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let db: PathBuf = dir.join("store.sqlite");
    let key = EncryptionKey::generate();
    let owner = OwnerId::new("crash-owner");
    let (sim, sql, mirror, linked, id) = runtime.block_on(async {
        let sim = TenantSim::builder()
            .users(400)
            .groups(20)
            .seed(9)
            .delta_page_size(50)
            .start()
            .await
            .unwrap();
        let (sql, mirror) = open(&db, &key).await;
        let sign_in = SignIn::simulated(&sim);
        let (_client, grant) = sign_in
            .browser(None, Duration::from_secs(20), simulated_browser)
            .await
            .unwrap();
        let connection = create_connection(&sql, &owner, "Crash", sign_in.cloud.clone(), &grant)
            .await
            .unwrap();
        let store: Arc<dyn ConnectionStore> = Arc::new(sql.clone());
        let linked = Linked::open(store, &owner, connection.id, &sign_in.app)
            .await
            .unwrap();
        sync_once(&sql, &mirror, &linked, &owner, connection.id, &options())
            .await
            .unwrap();
        (sim, sql, mirror, linked, connection.id)
    });
    let settings = child_settings(&db, &key, &owner, id, &sim);
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(20);
    let mut killed_mid_sync = 0;
    for round in 0..ROUNDS {
        // Something to sync: a user joins and another changes jobs.
        let control = sim.control();
        control
            .add_user(&UserFields::new().display_name(format!("Joiner {round}")))
            .unwrap();
        let people = control.users();
        let person = &people[rng.random_range(0..people.len())];
        control
            .update_user(
                &person.id,
                &UserFields::new().job_title(format!("Title {round}")),
            )
            .unwrap();
        let before = runtime.block_on(mirrored(&mirror, id));
        let now = runtime.block_on(fresh(&linked));

        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "sync_crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &settings)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        // Wait until a sync is under way, then let it run a random while (a sync of this
        // tenant takes tens of milliseconds) and SIGKILL it.
        let started = lines
            .by_ref()
            .map_while(Result::ok)
            .find(|l| l.contains("syncing "));
        assert!(started.is_some(), "round {round}: the child did not start");
        std::thread::sleep(Duration::from_millis(rng.random_range(0..120)));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "round {round}: killed, not finished");
        let committed = lines
            .map_while(Result::ok)
            .filter(|l| l.contains("committed "))
            .count();
        if committed == 0 {
            killed_mid_sync += 1;
        }

        runtime.block_on(async {
            // What the mirror holds is a whole commit: the one before, or a sync of the
            // tenant as it is now.
            let after = mirrored(&mirror, id).await;
            assert!(
                after == before || after == now,
                "round {round}: a half-written mirror"
            );
            // Its links belong to it: a delta from them (the killed process's lease is
            // taken over by the same holder) gives exactly a fresh import.
            sync_once(&sql, &mirror, &linked, &owner, id, &options())
                .await
                .unwrap();
            assert_eq!(mirrored(&mirror, id).await, now, "round {round}");
            let state = mirror.state(id).await.unwrap().unwrap();
            assert!(!state.sync_in_progress, "round {round}");
        });
    }
    assert!(
        killed_mid_sync > 0,
        "some kills landed before the first commit"
    );
    runtime.block_on(sim.shutdown());
    let _ = std::fs::remove_dir_all(&dir);
}
