//! Crash safety: a writer process is killed with SIGKILL in the middle of token writes,
//! again and again; every connection, token and cursor must stay readable at a
//! committed version.
//!
//! The writer is this test binary itself, re-run with `--ignored --exact
//! crash_writer_child` and the database path in [`CHILD_ENV`].

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{TempDir, open_sqlite, raw_sqlite, ring, secret};
use connection_store::testkit::sample_connection;
use connection_store::{
    ConnectionId, ConnectionStore, CursorKey, ExposeSecret, OwnerId, SystemClock,
};

const CHILD_ENV: &str = "CONNECTION_STORE_SQL_CRASH_WRITER_DB";
const CONNECTIONS: usize = 4;
const ROUNDS: usize = 5;

fn token_for(id: ConnectionId, version: u64) -> String {
    format!("rt-{id}-{version}")
}

fn cursor_for(id: ConnectionId, version: u64) -> String {
    format!("delta-{id}-{version}")
}

/// The writer: one task per connection replaces its token, then saves its cursor, and
/// prints each committed version, forever (until killed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writer process of sqlite_survives_sigkill_of_a_writer_mid_write; does nothing unless spawned by it"]
async fn crash_writer_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = open_sqlite(path.as_ref(), ring(), Arc::new(SystemClock)).await;
    let owner = OwnerId::new("crash-owner");
    let connections = store.list(&owner).await.expect("list");
    let mut tasks = tokio::task::JoinSet::new();
    for connection in connections {
        let (store, owner) = (store.clone(), owner.clone());
        tasks.spawn(async move {
            loop {
                if let Err(err) = write_once(&store, &owner, connection.id).await {
                    return err;
                }
            }
        });
    }
    // The writers run until the parent kills this process; a failing one ends it, and
    // the parent notices the missing output.
    if let Some(done) = tasks.join_next().await {
        panic!("a writer stopped: {:?}", done.map(|err| err.to_string()));
    }
}

/// One committed step: the next token, then the cursor, then a line for the parent.
async fn write_once(
    store: &connection_store_sql::SqlStore,
    owner: &OwnerId,
    id: ConnectionId,
) -> Result<(), connection_store::StoreError> {
    let current = store.load_token(owner, id).await?;
    let next = current.version.next().get();
    store
        .replace_token(owner, id, current.version, secret(&token_for(id, next)))
        .await?;
    let writer = common::writer_lease(store, owner, id).await;
    store
        .save_cursor(
            owner,
            id,
            &writer,
            &CursorKey::users(),
            secret(&cursor_for(id, next)),
        )
        .await?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "committed {id} {next}");
    let _ = out.flush();
    Ok(())
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one scenario: seed, kill repeatedly, verify"
)]
fn sqlite_survives_sigkill_of_a_writer_mid_write() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = TempDir::new();
    let path = dir.file("crash.db");
    let owner = OwnerId::new("crash-owner");
    let ids: Vec<ConnectionId> = runtime.block_on(async {
        let store = open_sqlite(&path, ring(), Arc::new(SystemClock)).await;
        let mut ids = Vec::new();
        for i in 0..CONNECTIONS {
            let tenant = uuid::Uuid::new_v4().to_string();
            let created = store
                .create(
                    &owner,
                    sample_connection(&format!("crash {i}"), &tenant, "placeholder"),
                )
                .await
                .expect("create");
            let v = store
                .load_token(&owner, created.id)
                .await
                .expect("load")
                .version;
            store
                .replace_token(
                    &owner,
                    created.id,
                    v,
                    secret(&token_for(created.id, v.next().get())),
                )
                .await
                .expect("seed token");
            ids.push(created.id);
        }
        store.close().await;
        ids
    });

    let exe = std::env::current_exe().expect("test binary");
    let mut committed: HashMap<ConnectionId, u64> = HashMap::new();
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "crash_writer_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().expect("stdout");
        let wanted = 40 + round * 13;
        let mut seen = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read writer output");
            // libtest may print "test crash_writer_child ... " in front of the first line.
            let Some(at) = line.find("committed ") else {
                continue;
            };
            let rest = &line[at + "committed ".len()..];
            let mut parts = rest.split(' ');
            let id: ConnectionId = parts.next().and_then(|s| s.parse().ok()).expect("id");
            let version: u64 = parts.next().and_then(|s| s.parse().ok()).expect("version");
            let entry = committed.entry(id).or_default();
            *entry = (*entry).max(version);
            seen += 1;
            if seen == wanted {
                break;
            }
        }
        assert_eq!(seen, wanted, "round {round}: the writer stopped early");
        // Let it get back into the middle of a write, then SIGKILL.
        std::thread::sleep(Duration::from_micros(300 * (round as u64 + 1)));
        child.kill().expect("SIGKILL the writer");
        let status = child.wait().expect("reap");
        assert!(!status.success(), "the writer was killed, not finished");

        runtime.block_on(async {
            let store = open_sqlite(&path, ring(), Arc::new(SystemClock)).await;
            let listed = store.list(&owner).await.expect("list after crash");
            assert_eq!(listed.len(), CONNECTIONS, "round {round}");
            for id in &ids {
                let token = store
                    .load_token(&owner, *id)
                    .await
                    .expect("token after crash");
                let version = token.version.get();
                assert_eq!(
                    token.token.expose_secret(),
                    token_for(*id, version),
                    "round {round}"
                );
                let reported = committed.get(id).copied().unwrap_or(0);
                assert!(
                    version >= reported,
                    "round {round}: committed {reported} but found {version}"
                );
                // The cursor is written after the token, so it is at most one behind.
                if let Some(cursor) = store
                    .load_cursor(&owner, *id, &CursorKey::users())
                    .await
                    .expect("cursor")
                {
                    let cursor = cursor.expose_secret().to_owned();
                    assert!(
                        cursor == cursor_for(*id, version)
                            || cursor == cursor_for(*id, version - 1),
                        "round {round}: cursor {cursor} vs token version {version}"
                    );
                }
            }
            store.close().await;
            let raw = raw_sqlite(&path).await;
            let check: String = sqlx::query_scalar("PRAGMA integrity_check")
                .fetch_one(&raw)
                .await
                .expect("integrity");
            assert_eq!(check, "ok");
            raw.close().await;
        });
    }
    let total: u64 = committed.values().sum();
    assert!(
        total > (ROUNDS * 40) as u64,
        "the writer made progress: {committed:?}"
    );
}
