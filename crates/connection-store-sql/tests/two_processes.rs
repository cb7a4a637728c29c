//! Compare-and-swap and leases across two processes on one `SQLite` file.
//!
//! The racers are this test binary itself, re-run with `--ignored --exact race_child`
//! and [`CHILD_ENV`] naming the database, the connection and the "go" file.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{TempDir, open_sqlite, ring, secret};
use connection_store::testkit::sample_connection;
use connection_store::{
    ConnectionId, ConnectionStore, ExposeSecret, LeaseHolder, OwnerId, StoreError, SystemClock,
    TokenVersion,
};

const CHILD_ENV: &str = "CONNECTION_STORE_SQL_RACE_CHILD";
const TASKS_PER_PROCESS: usize = 16;

/// One racing process: opens the store, says "ready", waits for the go file, then
/// races [`TASKS_PER_PROCESS`] token replacements and lease acquisitions and prints
/// each outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "racer process of sqlite_two_processes_*; does nothing unless spawned by it"]
async fn race_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.split('|');
    let (Some(path), Some(id), Some(go), Some(name)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        panic!("bad {CHILD_ENV}");
    };
    let id: ConnectionId = id.parse().expect("id");
    let store = open_sqlite(path.as_ref(), ring(), Arc::new(SystemClock)).await;
    let owner = OwnerId::new("race-owner");
    println!("ready");
    // Never hang the parent: give up (and exit, closing stdout) after 30 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !Path::new(go).exists() {
        assert!(tokio::time::Instant::now() < deadline, "no go signal");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS_PER_PROCESS {
        let (store, owner) = (store.clone(), owner.clone());
        let me = format!("{name}-{task}");
        tasks.spawn(async move {
            let replaced = store
                .replace_token(&owner, id, TokenVersion::FIRST, secret(&format!("rt-{me}")))
                .await;
            let holder = LeaseHolder::new(&me).expect("holder");
            let lease = store
                .acquire_lease(&owner, id, &holder, Duration::from_secs(60))
                .await;
            (me, replaced, lease)
        });
    }
    let mut out = std::io::stdout().lock();
    while let Some(joined) = tasks.join_next().await {
        let (me, replaced, lease) = joined.expect("task");
        let replaced = match replaced {
            Ok(version) => format!("won:{version}"),
            Err(StoreError::Conflict { current, .. }) => format!("conflict:{current}"),
            Err(err) => format!("error:{err}"),
        };
        let lease = match lease {
            Ok(Some(_)) => "lease".to_owned(),
            Ok(None) => "no-lease".to_owned(),
            Err(err) => format!("error:{err}"),
        };
        writeln!(out, "result {me} {replaced} {lease}").expect("stdout");
    }
    writeln!(out, "done").expect("stdout");
}

fn spawn_racer(spec: &str) -> (Child, BufReader<ChildStdout>) {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "race_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn racer");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    (child, stdout)
}

/// Reads lines until `until`, returning the `result …` lines.
fn read_until(reader: &mut BufReader<ChildStdout>, until: &str) -> Vec<String> {
    let mut results = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        let read = reader.read_line(&mut line).expect("read racer output");
        assert!(read > 0, "racer exited before {until:?}");
        // libtest may print "test race_child ... " in front of the first line.
        let trimmed = line.trim_end();
        if trimmed == until || trimmed.ends_with(&format!(" {until}")) {
            return results;
        }
        if let Some(at) = trimmed.find("result ") {
            results.push(trimmed[at + "result ".len()..].to_owned());
        }
    }
}

#[test]
fn sqlite_two_processes_racing_replace_token_and_lease_have_one_winner_each() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = TempDir::new();
    let path = dir.file("race.db");
    let owner = OwnerId::new("race-owner");
    let id = runtime.block_on(async {
        let store = open_sqlite(&path, ring(), Arc::new(SystemClock)).await;
        let created = store
            .create(&owner, sample_connection("raced", "tenant-race", "rt-1"))
            .await
            .expect("create");
        store.close().await;
        created.id
    });
    let go = dir.file("go");
    let spec = |name: &str| format!("{}|{id}|{}|{name}", path.display(), go.display());
    let (mut first, mut first_out) = spawn_racer(&spec("p1"));
    let (mut second, mut second_out) = spawn_racer(&spec("p2"));
    read_until(&mut first_out, "ready");
    read_until(&mut second_out, "ready");
    std::fs::File::create(&go).expect("go");
    let mut results = read_until(&mut first_out, "done");
    results.extend(read_until(&mut second_out, "done"));
    assert!(first.wait().expect("wait").success());
    assert!(second.wait().expect("wait").success());

    assert_eq!(results.len(), 2 * TASKS_PER_PROCESS, "{results:?}");
    let winners: Vec<&String> = results.iter().filter(|r| r.contains(" won:2 ")).collect();
    let conflicts = results
        .iter()
        .filter(|r| r.contains(" conflict:2 "))
        .count();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert_eq!(conflicts, 2 * TASKS_PER_PROCESS - 1, "{results:?}");
    let holders = results.iter().filter(|r| r.ends_with(" lease")).count();
    assert_eq!(holders, 1, "{results:?}");

    let winner = winners[0].split(' ').next().expect("name").to_owned();
    runtime.block_on(async {
        let store = open_sqlite(&path, ring(), Arc::new(SystemClock)).await;
        let token = store.load_token(&owner, id).await.expect("load");
        assert_eq!(token.version, TokenVersion::new(2));
        assert_eq!(token.token.expose_secret(), format!("rt-{winner}"));
    });
}
