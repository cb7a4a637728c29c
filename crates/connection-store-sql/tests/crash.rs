//! Crash safety: a writer process is killed with SIGKILL while token and cursor writes
//! are in flight, again and again; every connection, token and cursor must then be at a
//! version the writer had started, never behind one it reported committed, and intact.
//!
//! The writer is this test binary itself, re-run with `--ignored --exact
//! crash_writer_child` and the database path in [`CHILD_ENV`]. It reports on stdout:
//! the durability settings of every connection of its pool (`pragmas <journal_mode>
//! <synchronous>`), then for each write `writing-token <id> <version>` before the write
//! and `committed-token <id> <version>` after it returned (the same for `cursor`). The
//! parent kills it right after reading a `writing-token` line, so the kill point is one
//! it observed, and reads the rest of the pipe afterwards: it then knows every write the
//! writer started and every one it saw committed.
//!
//! SIGKILL leaves the page cache to the kernel, so it does not test `synchronous` (only
//! power loss would); the settings that make a commit survive power loss are instead read
//! back from each of the writer's own connections and asserted.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use common::{TempDir, open_sqlite, raw_sqlite, ring, secret};
use connection_store::testkit::sample_connection;
use connection_store::{
    ConnectionId, ConnectionStore, CursorKey, ExposeSecret, OwnerId, SystemClock,
};
use connection_store_sql::{SqlPool, SqlStore};

const CHILD_ENV: &str = "CONNECTION_STORE_SQL_CRASH_WRITER_DB";
const CONNECTIONS: usize = 4;
const ROUNDS: usize = 5;
/// `PRAGMA synchronous` answers FULL as 2 (the store's documented durability setting).
const SYNCHRONOUS_FULL: i64 = 2;
/// The pool size of `common::open_sqlite`.
const POOL_SIZE: usize = 4;

fn token_for(id: ConnectionId, version: u64) -> String {
    format!("rt-{id}-{version}")
}

fn cursor_for(id: ConnectionId, version: u64) -> String {
    format!("delta-{id}-{version}")
}

/// The version in a cursor written by [`cursor_for`] for `id`.
fn cursor_version(id: ConnectionId, cursor: &str) -> Option<u64> {
    cursor
        .strip_prefix(&format!("delta-{id}-"))
        .and_then(|v| v.parse().ok())
}

fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `journal_mode` and `synchronous` of every connection the store's pool may open: all
/// of them are acquired at once, so each is a different connection.
async fn pool_pragmas(store: &SqlStore) -> Vec<(String, i64)> {
    let SqlPool::Sqlite(pool) = store.pool() else {
        panic!("not a SQLite store");
    };
    let size = pool.options().get_max_connections();
    let mut held = Vec::new();
    for _ in 0..size {
        held.push(pool.acquire().await.expect("acquire a pooled connection"));
    }
    let mut pragmas = Vec::new();
    for connection in &mut held {
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut **connection)
            .await
            .expect("journal_mode");
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut **connection)
            .await
            .expect("synchronous");
        pragmas.push((journal, synchronous));
    }
    pragmas
}

fn assert_durable(pragmas: &[(String, i64)], context: &str) {
    assert_eq!(
        pragmas.len(),
        POOL_SIZE,
        "{context}: one line per pooled connection"
    );
    for (journal, synchronous) in pragmas {
        assert_eq!(journal, "wal", "{context}: journal_mode");
        assert_eq!(
            *synchronous, SYNCHRONOUS_FULL,
            "{context}: synchronous (2 = FULL)"
        );
    }
}

/// The writer: reports its pool's settings, then one task per connection replaces its
/// token, then saves its cursor, reporting each write before and after, forever (until
/// killed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writer process of sqlite_survives_sigkill_of_a_writer_mid_write; does nothing unless spawned by it"]
async fn crash_writer_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = open_sqlite(path.as_ref(), ring(), Arc::new(SystemClock)).await;
    for (journal, synchronous) in pool_pragmas(&store).await {
        report(&format!("pragmas {journal} {synchronous}"));
    }
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

/// One step: the next token, then the cursor of the same version, each reported before
/// it starts and after it committed.
async fn write_once(
    store: &SqlStore,
    owner: &OwnerId,
    id: ConnectionId,
) -> Result<(), connection_store::StoreError> {
    let current = store.load_token(owner, id).await?;
    let next = current.version.next().get();
    report(&format!("writing-token {id} {next}"));
    store
        .replace_token(owner, id, current.version, secret(&token_for(id, next)))
        .await?;
    report(&format!("committed-token {id} {next}"));
    let writer = common::writer_lease(store, owner, id).await;
    report(&format!("writing-cursor {id} {next}"));
    store
        .save_cursor(
            owner,
            id,
            &writer,
            &CursorKey::users(),
            secret(&cursor_for(id, next)),
        )
        .await?;
    report(&format!("committed-cursor {id} {next}"));
    Ok(())
}

/// What the writer reported for one connection: the highest version it started and the
/// highest it saw committed, for the token and for the cursor.
#[derive(Debug, Clone, Copy, Default)]
struct Reported {
    token_started: u64,
    token_committed: u64,
    cursor_started: u64,
    cursor_committed: u64,
}

impl Reported {
    fn in_flight(&self) -> bool {
        self.token_started > self.token_committed || self.cursor_started > self.cursor_committed
    }
}

/// Everything the writer said.
#[derive(Debug, Default)]
struct Transcript {
    pragmas: Vec<(String, i64)>,
    writes: HashMap<ConnectionId, Reported>,
    tokens_committed: usize,
}

impl Transcript {
    /// Takes one line in; returns whether it announced a token write.
    fn take(&mut self, line: &str) -> bool {
        // libtest may print "test crash_writer_child ... " in front of the first line.
        let Some(at) = ["pragmas ", "writing-", "committed-"]
            .iter()
            .filter_map(|word| line.find(word))
            .min()
        else {
            return false;
        };
        let words: Vec<&str> = line[at..].split(' ').collect();
        if let ["pragmas", journal, synchronous] = words[..] {
            let synchronous = synchronous
                .parse()
                .unwrap_or_else(|_| panic!("writer line {line:?}"));
            self.pragmas.push((journal.to_owned(), synchronous));
            return false;
        }
        let [what, id, version] = words[..] else {
            panic!("writer line {line:?}");
        };
        let (Ok(id), Ok(version)) = (id.parse::<ConnectionId>(), version.parse::<u64>()) else {
            panic!("writer line {line:?}");
        };
        let entry = self.writes.entry(id).or_default();
        let field = match what {
            "writing-token" => &mut entry.token_started,
            "committed-token" => {
                self.tokens_committed += 1;
                &mut entry.token_committed
            }
            "writing-cursor" => &mut entry.cursor_started,
            "committed-cursor" => &mut entry.cursor_committed,
            _ => panic!("writer line {line:?}"),
        };
        *field = (*field).max(version);
        what == "writing-token"
    }
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one scenario: seed, kill repeatedly at observed points, verify"
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
    // What the store holds between rounds: (token version, cursor version) per connection.
    let mut stored: HashMap<ConnectionId, (u64, u64)> = runtime.block_on(async {
        let store = open_sqlite(&path, ring(), Arc::new(SystemClock)).await;
        assert_durable(&pool_pragmas(&store).await, "the parent's store");
        let mut stored = HashMap::new();
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
            let next = v.next().get();
            store
                .replace_token(&owner, created.id, v, secret(&token_for(created.id, next)))
                .await
                .expect("seed token");
            let writer = common::writer_lease(&store, &owner, created.id).await;
            store
                .save_cursor(
                    &owner,
                    created.id,
                    &writer,
                    &CursorKey::users(),
                    secret(&cursor_for(created.id, next)),
                )
                .await
                .expect("seed cursor");
            stored.insert(created.id, (next, next));
        }
        store.close().await;
        stored
    });

    let exe = std::env::current_exe().expect("test binary");
    let mut killed_mid_write = 0;
    let mut total_committed = 0;
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
        let mut lines = BufReader::new(stdout).lines();
        let mut transcript = Transcript::default();
        for (id, (token, cursor)) in &stored {
            transcript.writes.insert(
                *id,
                Reported {
                    token_started: *token,
                    token_committed: *token,
                    cursor_started: *cursor,
                    cursor_committed: *cursor,
                },
            );
        }
        let wanted = 40 + round * 13;
        let mut killed = false;
        for line in lines.by_ref() {
            let line = line.expect("read writer output");
            let announced_token = transcript.take(&line);
            if announced_token && transcript.tokens_committed >= wanted {
                // The writer has just started a token write: kill it now.
                child.kill().expect("SIGKILL the writer");
                killed = true;
                break;
            }
        }
        assert!(
            killed,
            "round {round}: the writer stopped after {} committed tokens",
            transcript.tokens_committed
        );
        let status = child.wait().expect("reap");
        assert!(!status.success(), "the writer was killed, not finished");
        // Whatever it wrote to the pipe before it died.
        for line in lines {
            let Ok(line) = line else { break };
            transcript.take(&line);
        }
        assert_durable(
            &transcript.pragmas,
            &format!("round {round}: the writer's store"),
        );
        if transcript.writes.values().any(Reported::in_flight) {
            killed_mid_write += 1;
        }
        total_committed += transcript.tokens_committed;

        runtime.block_on(async {
            let store = open_sqlite(&path, ring(), Arc::new(SystemClock)).await;
            let listed = store.list(&owner).await.expect("list after crash");
            assert_eq!(listed.len(), CONNECTIONS, "round {round}");
            for (id, reported) in &transcript.writes {
                let token = store
                    .load_token(&owner, *id)
                    .await
                    .expect("token after crash");
                let version = token.version.get();
                assert_eq!(
                    token.token.expose_secret(),
                    token_for(*id, version),
                    "round {round}: the token matches its version"
                );
                assert!(
                    reported.token_committed <= version && version <= reported.token_started,
                    "round {round}: token version {version}, reported {reported:?}"
                );
                let cursor = store
                    .load_cursor(&owner, *id, &CursorKey::users())
                    .await
                    .expect("cursor")
                    .unwrap_or_else(|| panic!("round {round}: the cursor of {id} is gone"));
                let cursor = cursor.expose_secret();
                let Some(cursor_version) = cursor_version(*id, cursor) else {
                    panic!("round {round}: cursor {cursor:?} is not one the writer wrote");
                };
                assert!(
                    reported.cursor_committed <= cursor_version
                        && cursor_version <= reported.cursor_started,
                    "round {round}: cursor version {cursor_version}, reported {reported:?}"
                );
                // The cursor is written after the token of the same version.
                assert!(
                    cursor_version == version || cursor_version + 1 == version,
                    "round {round}: cursor {cursor_version} vs token {version}"
                );
                stored.insert(*id, (version, cursor_version));
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
    assert!(
        total_committed >= (0..ROUNDS).map(|round| 40 + round * 13).sum::<usize>(),
        "the writer made progress: {total_committed}"
    );
    eprintln!(
        "killed mid-write in {killed_mid_write} of {ROUNDS} rounds; {total_committed} tokens committed"
    );
    // The kill follows a "writing-token" line at once, so a write is almost always in
    // flight; never in five rounds would mean the kill point is not what it claims.
    assert!(
        killed_mid_write > 0,
        "no round killed the writer with a write in flight"
    );
}
