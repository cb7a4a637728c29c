//! Measures graph-client and the sync engine against tenant-sim in process.
//!
//! ```text
//! cargo run --release --example bench                      # 100,000 users, everything
//! cargo run --release --example bench -- --users 10000 --only listing
//! cargo run --release --example bench -- --help
//! cargo build --release -p m365-link --example bench --example worker -p tenant-sim --bin tenant-sim
//! target/release/examples/bench --only fleet --sim-binary target/release/tenant-sim
//! target/release/examples/bench --only partitioned --sim-binary target/release/tenant-sim
//! target/release/examples/bench --only cae --tenants 10 --tenant-users 20 --tenant-groups 3
//! ```
//!
//! Scenarios, each on the same simulated tenant (but `fleet` and `cae`, whose tenants are
//! their own; `cae` counts token requests over a compressed day of hourly syncs, with
//! and without `cp1`):
//! - `listing`: every user through graph-client (22 properties selected, `$top=999`)
//!   against a floor written with plain reqwest + `serde_json` into a plain struct of
//!   exactly the selected fields, over the same pages; best of `--runs` each, alternating.
//! - `membership`: every group's members with `--latency-ms` per Graph round trip,
//!   one group at a time (each group's pages in turn) against the sync engine's
//!   expansion (`$batch` first pages, `--concurrency` batches or chains in flight).
//! - `delta`: a users delta round after 1 % of the users changed.
//! - `throttled`: every user in pages of 100 under a `--rate-limit` token bucket.
//! - `mirror` (with `--sim-binary`): a full import into the `SQLite` directory mirror, a
//!   delta round with nothing changed, and one after 1 % of the users changed; each sync
//!   runs in a process of its own (the bench re-runs itself), so its wall time and peak
//!   RSS are the syncing process's alone.
//! - `partitioned` (with `--sim-binary`): the listing against the plain-struct floor; with
//!   `--latency-ms` (100) on every Graph request the single chain against the partitioned
//!   listing (identical id sets required), and a whole first import into a fresh mirror
//!   each way (single chain and member concurrency 8, against the defaults or
//!   `--concurrency`), each in a process of its own; then the partitioned listing in pages
//!   of 50 under an 800 units/s throttle (burst 80) with the client given that budget.
//! - `fleet` (with `--sim-binary`; `--worker-binary`, `--postgres`): `--tenants` tenants
//!   (default 1,000) of `--tenant-users` users (100) and `--tenant-groups` groups (5) in
//!   one simulator process, `--latency-ms` (50) on every Graph request; each linked by a
//!   customer of its own into a `PostgreSQL` database made for the run (dropped after).
//!   Then `worker --once --json` processes: a full import by one, a delta round by one
//!   and one by three at once (every last sync moved back two hours before each), each
//!   `--concurrency` (32) syncs at once. It reports their wall times, peak RSS, the
//!   database's transactions (`pg_stat_database`: store and mirror) and the simulator's
//!   Graph requests per tenant, beside the issue's targets.
//!
//! Peak RSS is `VmHWM` of this process, which also holds the simulator; for the listing
//! it is reset just before (`/proc/self/clear_refs`), so "peak RSS" is the listing's
//! own high-water mark and "+RSS" its growth over the resident size before it. RSS is
//! per process: compare sizes with separate runs (`--only listing --users 10000` and
//! `--users 100000`).

// Figures are shown with a few digits: u64 → f64 loses nothing that is printed.
#![allow(clippy::cast_precision_loss, reason = "figures for display")]

use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use connection_store::{ConnectionStore, MemoryStore, OwnerId};
use connection_store_sql::sqlx::{self, PgPool, postgres::PgPoolOptions};
use connection_store_sql::{EncryptionKey, KeyId, KeyRing, SqlPool, SqlStore};
use futures::{StreamExt as _, TryStreamExt as _};
use graph_client::sync::{MemorySink, NoProgress};
use graph_client::{DeltaRound, GraphClient, User};
use m365_link_app::connect::{SignIn, create_connection, link_simulated, simulated_browser};
use m365_link_app::glue::{App, Linked};
use secrecy::ExposeSecret as _;
use tenant_sim::{FaultSettings, TenantSim, ThrottleSettings, UserFields};

/// Measure graph-client and the sync engine against a simulated tenant in process.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// Users in the simulated tenant.
    #[arg(long, default_value_t = 100_000)]
    users: usize,
    /// Groups in the simulated tenant.
    #[arg(long, default_value_t = 500)]
    groups: usize,
    /// Simulated Graph round trip, in milliseconds: of the membership scenario (default
    /// 100), and of every Graph request of the fleet (default 50).
    #[arg(long)]
    latency_ms: Option<u64>,
    /// Resource units per second (and burst) for the throttled scenario.
    #[arg(long, default_value_t = 200.0)]
    rate_limit: f64,
    /// Batches or member chains in flight in the concurrent expansion (default 8); for
    /// the fleet, each worker's syncs at once (default 32).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Runs of each listing (the best is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Run one scenario only (separate processes give separate peak RSS figures).
    #[arg(long, value_enum, default_value_t = Only::All)]
    only: Only,
    /// Seed of the simulated directory.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Run the simulator as this `tenant-sim` binary in its own process instead of in
    /// this one, so peak RSS is the client's alone (`--only listing` only), e.g.
    /// `target/release/tenant-sim`.
    #[arg(long, value_name = "PATH")]
    sim_binary: Option<std::path::PathBuf>,
    /// Fleet: tenants in the simulator, each linked by a customer of its own.
    #[arg(long, default_value_t = 1000)]
    tenants: usize,
    /// Fleet: users in each tenant.
    #[arg(long, default_value_t = 100)]
    tenant_users: usize,
    /// Fleet: groups in each tenant.
    #[arg(long, default_value_t = 5)]
    tenant_groups: usize,
    /// Fleet: the release `worker` example the rounds run.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "target/release/examples/worker"
    )]
    worker_binary: std::path::PathBuf,
    /// Fleet: the `PostgreSQL` server (a database on it); the bench creates a database of
    /// its own there for the run and drops it afterwards.
    #[arg(
        long,
        value_name = "URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres: String,
    /// Cae: how long a simulated hour lasts, in milliseconds (token lifetimes, the
    /// session's refresh skew and the sync interval scale with it).
    #[arg(long, default_value_t = 1000)]
    hour_ms: u64,
    /// Internal: run one sync of `--connection-id` in the `SQLite` store `--db` into its
    /// mirror and print what it took (the `mirror` scenario starts the bench itself so).
    #[arg(long, hide = true, requires_all = ["db", "connection_id", "client_id", "client_secret"])]
    sync_child: bool,
    #[arg(long, hide = true)]
    db: Option<String>,
    #[arg(long, hide = true)]
    connection_id: Option<String>,
    #[arg(long, hide = true)]
    client_id: Option<String>,
    #[arg(long, hide = true)]
    client_secret: Option<String>,
    #[arg(long, hide = true)]
    full: bool,
    /// Internal: the sync child's `SyncOptions::max_partitions` (1: the single chain).
    #[arg(long, hide = true)]
    max_partitions: Option<usize>,
    /// Internal: the sync child's member concurrency.
    #[arg(long, hide = true)]
    member_concurrency: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Only {
    All,
    Listing,
    Membership,
    Delta,
    Throttled,
    /// Full import, quiet delta and 1 % delta into the `SQLite` mirror, each sync in a
    /// process of its own (needs `--sim-binary`).
    Mirror,
    /// Issue 14 (needs `--sim-binary`): the listing against the plain-struct floor, then
    /// with `--latency-ms` (100) on every Graph request the single chain against the
    /// partitioned listing, a whole first import into the mirror both ways (each in a
    /// process of its own), and the partitioned listing under an 800 units/s throttle.
    Partitioned,
    /// `--tenants` tenants synced by worker processes into `PostgreSQL`: a full import,
    /// a delta round with one worker and one with three (needs `--sim-binary`).
    Fleet,
    /// Issue 16: token requests per tenant over a simulated day of hourly delta syncs,
    /// with `cp1` declared (CAE tokens of 28 hours) and without (one-hour tokens), the
    /// day compressed so that an hour lasts `--hour-ms`.
    Cae,
}

/// One row of the table.
struct Row {
    scenario: String,
    wall: Duration,
    requests: u64,
    users: Option<u64>,
    peak_rss: Option<String>,
    ratio: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.sync_child {
        return sync_child(&args).await;
    }
    if args.only == Only::Fleet {
        return fleet(&args).await;
    }
    if args.only == Only::Cae {
        return cae(&args).await;
    }
    eprintln!(
        "starting tenant-sim: {} users, {} groups",
        args.users, args.groups
    );
    if let Some(binary) = &args.sim_binary {
        let external = External::start(binary, &args).await?;
        return match args.only {
            Only::Listing => external_listing(external, &args).await,
            Only::Mirror => external_mirror(external, &args).await,
            Only::Partitioned => partitioned(external, &args).await,
            _ => anyhow::bail!(
                "--sim-binary measures the listing, the mirror or the partitioned listing; add --only listing, mirror or partitioned"
            ),
        };
    }
    anyhow::ensure!(
        !matches!(args.only, Only::Mirror | Only::Partitioned),
        "--only mirror and --only partitioned need --sim-binary"
    );
    let sim = TenantSim::builder()
        .users(args.users)
        .groups(args.groups)
        .seed(args.seed)
        .start()
        .await
        .context("could not start tenant-sim")?;
    let linked = connect(&Endpoints {
        login_base: sim.login_base().to_owned(),
        graph_base: sim.graph_base().to_owned(),
        client_id: sim.client_id().to_owned(),
        client_secret: sim.client_secret().clone(),
    })
    .await?;
    let graph = linked.graph.clone();
    // The floor uses the same access token as graph-client.
    let token = linked
        .session
        .access_token()
        .await
        .context("no access token")?
        .into_secret();
    let mut rows = Vec::new();
    let mut listing_requests = None;

    if matches!(args.only, Only::All | Only::Listing) {
        let counters = Counters::Local(&sim);
        let (listing, floor) = listing(
            &counters,
            sim.graph_base(),
            &graph,
            token.expose_secret(),
            args.runs,
        )
        .await?;
        listing_requests = Some(listing.requests);
        rows.push(listing);
        rows.push(floor);
    }
    if matches!(args.only, Only::All | Only::Membership) {
        rows.extend(membership(&sim, &graph, &args).await?);
    }
    if matches!(args.only, Only::All | Only::Delta) {
        rows.extend(delta(&sim, &graph, args.users, listing_requests).await?);
    }
    if matches!(args.only, Only::All | Only::Throttled) {
        rows.push(throttled(&sim, &graph, args.rate_limit).await?);
    }

    print_table(
        &format!(
            "tenant-sim in process: {} users, {} groups, seed {}",
            args.users, args.groups, args.seed
        ),
        rows,
    );
    sim.shutdown().await;
    Ok(())
}

fn print_table(title: &str, rows: Vec<Row>) {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "scenario",
        "wall time",
        "requests",
        "users/s",
        "peak RSS",
        "ratio / note",
    ]);
    for row in rows {
        let per_second = row.users.map_or_else(String::new, |users| {
            format!("{:.0}", users as f64 / row.wall.as_secs_f64().max(1e-9))
        });
        table.add_row([
            row.scenario,
            format!("{:.3} s", row.wall.as_secs_f64()),
            row.requests.to_string(),
            per_second,
            row.peak_rss.unwrap_or_default(),
            row.ratio,
        ]);
    }
    println!(
        "{title}; process peak RSS (VmHWM) {}",
        rss("VmHWM").map_or_else(|| "n/a".to_owned(), mib)
    );
    println!("{table}");
}

/// Where a simulator listens, and the app registered in it.
struct Endpoints {
    login_base: String,
    graph_base: String,
    client_id: String,
    client_secret: secrecy::SecretString,
}

/// A connection as the examples make it: the simulated admin signs in and consents.
async fn connect(sim: &Endpoints) -> anyhow::Result<Linked> {
    connect_in(sim, Arc::new(MemoryStore::new())).await
}

/// [`connect`], stored in `store`.
async fn connect_in(sim: &Endpoints, store: Arc<dyn ConnectionStore>) -> anyhow::Result<Linked> {
    let sign_in = SignIn {
        app: App {
            client_id: sim.client_id.clone(),
            client_secret: Some(sim.client_secret.clone()),
        },
        cloud: connection_store::Cloud::Custom {
            login: sim.login_base.clone(),
            graph: sim.graph_base.clone(),
        },
        authority: "organizations".to_owned(),
    };
    let (_client, grant) = sign_in
        .browser(None, Duration::from_secs(30), simulated_browser)
        .await
        .context("the simulated sign-in failed")?;
    let owner = OwnerId::new(BENCH_OWNER);
    let connection = create_connection(
        store.as_ref(),
        &owner,
        "Bench",
        sign_in.cloud.clone(),
        &grant,
    )
    .await?;
    Linked::open(store, &owner, connection.id, &sign_in.app).await
}

/// The owner of the bench's connection.
const BENCH_OWNER: &str = "bench";

/// The simulator's request counters: in process, or over its control API.
enum Counters<'a> {
    Local(&'a TenantSim),
    Remote {
        http: reqwest::Client,
        control_base: String,
    },
}

impl Counters<'_> {
    async fn reset(&self) -> anyhow::Result<()> {
        match self {
            Self::Local(sim) => sim.control().reset_counters(),
            Self::Remote { http, control_base } => {
                http.post(format!("{control_base}/counters/reset"))
                    .send()
                    .await?
                    .error_for_status()?;
            }
        }
        Ok(())
    }

    async fn total(&self) -> anyhow::Result<u64> {
        match self {
            Self::Local(sim) => Ok(sim.control().counters().total()),
            Self::Remote { http, control_base } => {
                let counters: serde_json::Value = http
                    .get(format!("{control_base}/counters"))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                counters["total"]
                    .as_u64()
                    .context("the simulator's counters have no total")
            }
        }
    }
}

/// A `tenant-sim` binary started by the bench, stopped when dropped.
struct External {
    child: tokio::process::Child,
    endpoints: Endpoints,
    control_base: String,
    /// Its start-up line.
    started: serde_json::Value,
}

impl External {
    async fn start(binary: &std::path::Path, args: &Args) -> anyhow::Result<Self> {
        let options = [
            "--users".to_owned(),
            args.users.to_string(),
            "--groups".to_owned(),
            args.groups.to_string(),
            "--seed".to_owned(),
            args.seed.to_string(),
        ];
        Self::spawn(binary, &options).await
    }

    /// Starts `binary` on free ports with `options`, and reads its start-up line.
    async fn spawn(binary: &std::path::Path, options: &[String]) -> anyhow::Result<Self> {
        use tokio::io::AsyncBufReadExt as _;
        let mut child = tokio::process::Command::new(binary)
            .args(["--port", "0"])
            .args(options)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("could not start {}", binary.display()))?;
        let stdout = child.stdout.take().context("no stdout from tenant-sim")?;
        let mut first = String::new();
        tokio::io::BufReader::new(stdout)
            .read_line(&mut first)
            .await
            .context("tenant-sim printed nothing")?;
        let started: serde_json::Value =
            serde_json::from_str(&first).context("tenant-sim's first line is not JSON")?;
        let field = |name: &str| {
            started[name]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("tenant-sim's start-up line has no {name}"))
        };
        Ok(Self {
            endpoints: Endpoints {
                login_base: field("login_base")?,
                graph_base: field("graph_base")?,
                client_id: field("client_id")?,
                client_secret: field("client_secret")?.into(),
            },
            control_base: field("control_base")?,
            child,
            started,
        })
    }
}

/// The listing against a simulator in another process: this process holds only the
/// client, so its peak RSS is the client's.
async fn external_listing(mut external: External, args: &Args) -> anyhow::Result<()> {
    let linked = connect(&external.endpoints).await?;
    let token = linked
        .session
        .access_token()
        .await
        .context("no access token")?
        .into_secret();
    let counters = Counters::Remote {
        http: reqwest::Client::new(),
        control_base: external.control_base.clone(),
    };
    let (listing, floor) = listing(
        &counters,
        &external.endpoints.graph_base,
        &linked.graph,
        token.expose_secret(),
        args.runs,
    )
    .await?;
    print_table(
        &format!(
            "tenant-sim in another process: {} users, {} groups, seed {}",
            args.users, args.groups, args.seed
        ),
        vec![listing, floor],
    );
    // The bench started this child; it stops it.
    external.child.kill().await.ok();
    Ok(())
}

// ---------------------------------------------------------------------------------------
// the mirror: full import, quiet delta, 1 % delta, each sync a process of its own
// ---------------------------------------------------------------------------------------

/// What one sync process reported about itself.
#[derive(serde::Serialize, serde::Deserialize)]
struct SyncRun {
    wall_ms: f64,
    peak_rss: u64,
    kind: String,
    users: u64,
    changed: u64,
    /// Milliseconds per phase (users, groups, memberships, committing).
    phases: Vec<(String, f64)>,
}

/// Times each phase of a sync.
#[derive(Default)]
struct PhaseTimes(std::sync::Mutex<Vec<(String, Instant, Option<Duration>)>>);

impl graph_client::sync::SyncProgress for PhaseTimes {
    fn started(&self, phase: graph_client::sync::Phase, _total: Option<u64>) {
        if let Ok(mut phases) = self.0.lock() {
            phases.push((phase.as_str().to_owned(), Instant::now(), None));
        }
    }

    fn finished(&self, phase: graph_client::sync::Phase) {
        if let Ok(mut phases) = self.0.lock()
            && let Some(entry) = phases
                .iter_mut()
                .rev()
                .find(|(name, _, _)| name == phase.as_str())
        {
            entry.2 = Some(entry.1.elapsed());
        }
    }
}

/// One sync of the bench's connection into the mirror, in this (child) process; prints
/// a [`SyncRun`] as JSON.
async fn sync_child(args: &Args) -> anyhow::Result<()> {
    let (Some(db), Some(id), Some(client_id), Some(secret)) = (
        &args.db,
        &args.connection_id,
        &args.client_id,
        &args.client_secret,
    ) else {
        anyhow::bail!("--sync-child needs --db, --connection-id, --client-id, --client-secret");
    };
    let started = Instant::now();
    let opened = m365_link_app::store::open(db).await?;
    let owner = OwnerId::new(BENCH_OWNER);
    let id: connection_store::ConnectionId = id.parse().context("not a connection id")?;
    let app = App {
        client_id: client_id.clone(),
        client_secret: Some(secret.clone().into()),
    };
    let linked = Linked::open(Arc::clone(&opened.store), &owner, id, &app).await?;
    let mut options = m365_link_app::sync::Options::new()?;
    let mut engine = graph_client::sync::SyncOptions::new().force_full(args.full);
    if let Some(max) = args.max_partitions {
        engine = engine.max_partitions(max);
    }
    if let Some(concurrency) = args.member_concurrency {
        engine = engine.concurrency(concurrency);
    }
    options.engine = engine;
    let target = m365_link_app::sync::Target {
        store: Arc::clone(&opened.store),
        owner,
        id,
    };
    let mut sink = opened
        .mirror
        .sink(&opened.sql, id)
        .with_fence(options.holder.clone());
    let times = PhaseTimes::default();
    let report =
        m365_link_app::sync::run(&linked.graph, &target, &mut sink, &options, &times).await?;
    let phases = times
        .0
        .lock()
        .map(|phases| {
            phases
                .iter()
                .map(|(name, _, took)| {
                    (
                        name.clone(),
                        took.unwrap_or_default().as_secs_f64() * 1000.0,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let summary = &report.summary;
    let run = SyncRun {
        wall_ms: started.elapsed().as_secs_f64() * 1000.0,
        peak_rss: rss("VmHWM").unwrap_or(0),
        kind: report.kind.to_string(),
        users: summary.users.total,
        changed: summary.users.added + summary.users.updated + summary.users.removed,
        phases,
    };
    println!("{}", serde_json::to_string(&run)?);
    Ok(())
}

/// Runs one sync of connection `id` in the store `db` in a process of its own (this bench
/// with `--sync-child` and `flags`) and reads what it reported.
async fn sync_process(
    db: &str,
    id: connection_store::ConnectionId,
    endpoints: &Endpoints,
    flags: &[&str],
) -> anyhow::Result<SyncRun> {
    let output = tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "--sync-child",
            "--db",
            db,
            "--connection-id",
            &id.to_string(),
        ])
        .args(["--client-id", &endpoints.client_id])
        .args(["--client-secret", endpoints.client_secret.expose_secret()])
        .args(flags)
        .output()
        .await?;
    anyhow::ensure!(
        output.status.success(),
        "the sync process failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).context("the sync process printed no report")
}

#[expect(
    clippy::too_many_lines,
    reason = "one scenario: set up, four syncs, the table"
)]
async fn external_mirror(mut external: External, args: &Args) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("m365-link-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("bench.sqlite");
    let db_text = db.to_string_lossy().into_owned();
    // The store's key goes into a key file next to it, which the sync processes read.
    let opened = m365_link_app::store::open(&db_text).await?;
    let linked = connect_in(&external.endpoints, Arc::clone(&opened.store)).await?;
    let id = linked.connection.id;
    drop(linked);
    let counters = Counters::Remote {
        http: reqwest::Client::new(),
        control_base: external.control_base.clone(),
    };
    let endpoints = &external.endpoints;
    let child = async |full: bool| -> anyhow::Result<(SyncRun, u64)> {
        counters.reset().await?;
        let flags: &[&str] = if full { &["--full"] } else { &[] };
        let run = sync_process(&db_text, id, endpoints, flags).await?;
        Ok((run, counters.total().await?))
    };
    let (full, full_requests) = child(true).await?;
    let phases = |run: &SyncRun| {
        run.phases
            .iter()
            .map(|(name, ms)| format!("{name} {ms:.0} ms"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    eprintln!("full import phases: {}", phases(&full));
    let (quiet, quiet_requests) = child(false).await?;
    // 1 % of the users change their job title, through the simulator's control API.
    let http = reqwest::Client::new();
    let changes = (args.users / 100).max(1);
    let people: Vec<serde_json::Value> = http
        .get(format!(
            "{}/users?limit={}",
            external.control_base,
            changes + 1
        ))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    for (index, person) in people
        .iter()
        .filter(|p| p["isAdmin"] != true)
        .take(changes)
        .enumerate()
    {
        let id = person["id"].as_str().context("a user without an id")?;
        http.patch(format!("{}/users/{id}", external.control_base))
            .json(&serde_json::json!({"jobTitle": format!("Benchmark {index}")}))
            .send()
            .await?
            .error_for_status()?;
    }
    let (one_percent, one_percent_requests) = child(false).await?;
    eprintln!("1 % delta phases: {}", phases(&one_percent));
    // A forced full import into the mirror that holds the tenant: the new snapshot is
    // compared with the committed one (what a resync costs).
    let (again, again_requests) = child(true).await?;
    eprintln!("full import again phases: {}", phases(&again));
    anyhow::ensure!(
        full.kind == "full"
            && quiet.kind == "delta"
            && one_percent.kind == "delta"
            && again.kind == "full",
        "unexpected kinds: {}, {}, {}, {}",
        full.kind,
        quiet.kind,
        one_percent.kind,
        again.kind
    );
    anyhow::ensure!(
        again.changed == 0 && again.users == full.users,
        "the second full import changed {} users",
        again.changed
    );
    anyhow::ensure!(
        one_percent.changed == changes as u64 && quiet.changed == 0,
        "the delta rounds saw {} and {} changes",
        quiet.changed,
        one_percent.changed
    );
    let ms = |run: &SyncRun| Duration::from_secs_f64(run.wall_ms / 1000.0);
    let row = |name: String, run: &SyncRun, requests: u64, ratio: String| Row {
        scenario: name,
        wall: ms(run),
        requests,
        users: Some(run.users),
        peak_rss: Some(mib(run.peak_rss)),
        ratio,
    };
    let rows = vec![
        row(
            format!("mirror: full import of {} users (SQLite)", full.users),
            &full,
            full_requests,
            "peak RSS target ≤ 64 MiB".to_owned(),
        ),
        row(
            "mirror: delta, nothing changed".to_owned(),
            &quiet,
            quiet_requests,
            format!(
                "targets ≤ 100 ms, ≤ 2 requests, ≤ 40 MiB{}",
                if quiet_requests <= 2 {
                    ""
                } else {
                    " (requests over)"
                }
            ),
        ),
        row(
            format!("mirror: delta after {changes} users changed"),
            &one_percent,
            one_percent_requests,
            format!(
                "{:.1}× the quiet round (target ≤ 10×)",
                one_percent.wall_ms / quiet.wall_ms
            ),
        ),
        row(
            "mirror: full import again, into the mirror holding the tenant".to_owned(),
            &again,
            again_requests,
            format!("{:.2}× the first import", again.wall_ms / full.wall_ms),
        ),
    ];
    print_table(
        &format!(
            "tenant-sim in another process, each sync a process of its own: {} users, {} groups, seed {}",
            args.users, args.groups, args.seed
        ),
        rows,
    );
    external.child.kill().await.ok();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// the fleet: many tenants synced by worker processes into PostgreSQL
// ---------------------------------------------------------------------------------------

/// The fleet's Graph latency when `--latency-ms` is not given.
const FLEET_LATENCY_MS: u64 = 50;

/// Each worker's syncs at once when `--concurrency` is not given (the worker's default).
const FLEET_CONCURRENCY: usize = 32;

/// Tenants signed in and linked at once while the fleet is set up.
const LINKS_AT_ONCE: usize = 16;

/// Counter requests to the simulator's control API at once.
const COUNTER_REQUESTS_AT_ONCE: usize = 32;

/// How far a delta round moves every last sync back: past the workers' `--interval 1h`.
/// The store keeps times as Unix microseconds (`migrations/postgres/0001_connections.sql`).
const MOVE_BACK_MICROS: i64 = 2 * 60 * 60 * 1_000_000;

/// The issue's targets.
const DELTA_TARGET_SECONDS: f64 = 30.0;
const DELTA_TARGET_TENANTS: usize = 1000;
const THREE_WORKERS_TARGET: f64 = 2.5;
const PEAK_RSS_TARGET_MIB: f64 = 150.0;

/// One tenant of the simulator's start-up line.
struct SimTenant {
    id: String,
    admin_upn: String,
}

fn sim_tenants(started: &serde_json::Value) -> anyhow::Result<Vec<SimTenant>> {
    started["tenants"]
        .as_array()
        .context("tenant-sim's start-up line has no tenants")?
        .iter()
        .map(|tenant| {
            let field = |name: &str| {
                tenant[name].as_str().map(str::to_owned).with_context(|| {
                    format!("a tenant in tenant-sim's start-up line has no {name}")
                })
            };
            Ok(SimTenant {
                id: field("id")?,
                admin_upn: field("admin_upn")?,
            })
        })
        .collect()
}

/// The database the fleet runs in, made for the run on the `--postgres` server.
struct BenchDatabase {
    /// A pool on the `--postgres` database: it creates and drops this one and reads its
    /// statistics, without adding transactions to them.
    server: PgPool,
    name: String,
    url: String,
}

impl BenchDatabase {
    async fn create(server_url: &str) -> anyhow::Result<Self> {
        let name = format!("m365_bench_{}", uuid::Uuid::new_v4().simple());
        let mut url = url::Url::parse(server_url).context("--postgres is not a URL")?;
        url.set_path(&name);
        let server = PgPoolOptions::new()
            .max_connections(1)
            .connect(server_url)
            .await
            .context("could not connect to PostgreSQL at --postgres (is it up?)")?;
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&server)
            .await
            .with_context(|| format!("could not create the database {name}"))?;
        Ok(Self {
            server,
            name,
            url: url.into(),
        })
    }

    /// Transactions committed or rolled back in the database so far, read once the
    /// counts are still: a backend reports its counts when it exits, a moment after
    /// its client (a worker process) has.
    async fn transactions(&self) -> anyhow::Result<i64> {
        let read = async || -> anyhow::Result<i64> {
            sqlx::query_scalar::<_, i64>(
                "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database \
                 WHERE datname = $1",
            )
            .bind(self.name.as_str())
            .fetch_one(&self.server)
            .await
            .context("could not read pg_stat_database")
        };
        let mut last = read().await?;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = read().await?;
            if now == last {
                return Ok(now);
            }
            last = now;
        }
        Ok(last)
    }

    /// Drops the database, ending its connections; says so when it cannot.
    async fn drop_now(self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        match sqlx::raw_sql(&sql).execute(&self.server).await {
            Ok(_) => eprintln!("dropped the database {}", self.name),
            Err(error) => eprintln!("could not drop the database {}: {error}", self.name),
        }
        self.server.close().await;
    }
}

/// Makes every synced connection due again: its last sync moves back two hours.
async fn make_due(pool: &PgPool, tenants: usize) -> anyhow::Result<()> {
    let mut connection = pool.acquire().await?;
    let moved = sqlx::query(
        "UPDATE connections SET last_synced_at = last_synced_at - $1 \
         WHERE last_synced_at IS NOT NULL",
    )
    .bind(MOVE_BACK_MICROS)
    .execute(&mut *connection)
    .await
    .context("could not move the last syncs back")?
    .rows_affected();
    // This backend's counts go out now rather than when it is next idle for a while, so
    // the round's transactions are the workers' alone (PostgreSQL 15+; before, best
    // effort).
    if let Err(error) = sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&mut *connection)
        .await
    {
        eprintln!("(pg_stat_force_next_flush: {error})");
    }
    anyhow::ensure!(
        moved == tenants as u64,
        "moved {moved} last syncs back, {tenants} tenants were synced"
    );
    Ok(())
}

/// Every tenant's Graph request counters, over the simulator's control API
/// (`/tenants/{id}/counters`; the unprefixed `/counters` are tenant 0's alone).
struct FleetCounters<'a> {
    http: reqwest::Client,
    control_base: &'a str,
    tenants: &'a [SimTenant],
}

impl FleetCounters<'_> {
    async fn reset(&self) -> anyhow::Result<()> {
        futures::stream::iter(self.tenants)
            .map(|tenant| async move {
                self.http
                    .post(format!(
                        "{}/tenants/{}/counters/reset",
                        self.control_base, tenant.id
                    ))
                    .send()
                    .await?
                    .error_for_status()?;
                anyhow::Ok(())
            })
            .buffer_unordered(COUNTER_REQUESTS_AT_ONCE)
            .try_collect::<Vec<()>>()
            .await
            .context("could not reset the simulator's counters")?;
        Ok(())
    }

    /// Every tenant's Graph requests since the reset, and per endpoint.
    async fn totals(&self) -> anyhow::Result<(u64, BTreeMap<String, u64>)> {
        let all: Vec<serde_json::Value> = futures::stream::iter(self.tenants)
            .map(|tenant| async move {
                let counters: serde_json::Value = self
                    .http
                    .get(format!(
                        "{}/tenants/{}/counters",
                        self.control_base, tenant.id
                    ))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                anyhow::Ok(counters)
            })
            .buffer_unordered(COUNTER_REQUESTS_AT_ONCE)
            .try_collect()
            .await
            .context("could not read the simulator's counters")?;
        let mut total = 0;
        let mut by_endpoint = BTreeMap::new();
        for counters in &all {
            total += counters["total"]
                .as_u64()
                .context("a tenant's counters have no total")?;
            for (endpoint, count) in counters["by_endpoint"].as_object().into_iter().flatten() {
                *by_endpoint.entry(endpoint.clone()).or_default() += count.as_u64().unwrap_or(0);
            }
        }
        Ok((total, by_endpoint))
    }
}

/// The `worker` example as the bench runs it: one round (`--once`) on the bench's
/// database, every never-synced or hour-old connection due.
struct WorkerCommand<'a> {
    binary: &'a std::path::Path,
    store: &'a str,
    key: &'a secrecy::SecretString,
    endpoints: &'a Endpoints,
    concurrency: usize,
}

/// The JSON line of `worker --once --json`, and the process's wall time.
#[derive(serde::Deserialize)]
struct WorkerReport {
    claimed: usize,
    synced: usize,
    failed: usize,
    needs_reconnect: usize,
    skipped: usize,
    claims: usize,
    store_errors: usize,
    elapsed_seconds: f64,
    peak_rss_bytes: Option<u64>,
    synced_ids: Vec<String>,
    #[serde(skip)]
    wall: Duration,
}

impl WorkerCommand<'_> {
    /// Starts `count` workers together and waits for them all; the wall time is until
    /// the last one exits.
    async fn round(&self, count: usize) -> anyhow::Result<(Duration, Vec<WorkerReport>)> {
        let started = Instant::now();
        let children = (0..count)
            .map(|_| self.spawn())
            .collect::<anyhow::Result<Vec<_>>>()?;
        let reports = futures::future::try_join_all(
            children
                .into_iter()
                .enumerate()
                .map(|(index, child)| finish_worker(index, child, started)),
        )
        .await?;
        Ok((started.elapsed(), reports))
    }

    fn spawn(&self) -> anyhow::Result<tokio::process::Child> {
        tokio::process::Command::new(self.binary)
            .args([
                "--store",
                self.store,
                "--once",
                "--json",
                "--interval",
                "1h",
            ])
            .args(["--concurrency", &self.concurrency.to_string()])
            .args(["--client-id", &self.endpoints.client_id])
            .env(
                "ENTRA_CLIENT_SECRET",
                self.endpoints.client_secret.expose_secret(),
            )
            .env(m365_link_app::store::KEY_VARIABLE, self.key.expose_secret())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("could not start {}", self.binary.display()))
    }
}

async fn finish_worker(
    index: usize,
    child: tokio::process::Child,
    started: Instant,
) -> anyhow::Result<WorkerReport> {
    let output = child
        .wait_with_output()
        .await
        .with_context(|| format!("could not wait for worker {index}"))?;
    let wall = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    anyhow::ensure!(
        output.status.success(),
        "worker {index} failed ({}): {}",
        output.status,
        stderr.trim()
    );
    let logged: Vec<&str> = stderr.lines().collect();
    if !logged.is_empty() {
        eprintln!("worker {index} logged {} lines, the last:", logged.len());
        for line in &logged[logged.len().saturating_sub(5)..] {
            eprintln!("  {line}");
        }
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .with_context(|| format!("worker {index} printed no report"))?;
    let mut report: WorkerReport = serde_json::from_str(line)
        .with_context(|| format!("worker {index}'s report is not what --json prints"))?;
    report.wall = wall;
    Ok(report)
}

/// One measured round of the fleet.
struct FleetRound {
    wall: Duration,
    reports: Vec<WorkerReport>,
    /// Transactions in the bench's database during the round (store and mirror).
    transactions: i64,
    /// Graph requests of every tenant during the round.
    requests: u64,
}

impl FleetRound {
    fn synced(&self) -> usize {
        self.reports.iter().map(|report| report.synced).sum()
    }

    fn peak_rss(&self) -> u64 {
        self.reports
            .iter()
            .filter_map(|report| report.peak_rss_bytes)
            .max()
            .unwrap_or(0)
    }

    fn per_tenant(&self, count: f64) -> f64 {
        count / self.synced().max(1) as f64
    }
}

/// Runs `count` workers together; checks every tenant was synced once.
async fn measured_round(
    name: &str,
    workers: &WorkerCommand<'_>,
    count: usize,
    database: &BenchDatabase,
    counters: &FleetCounters<'_>,
) -> anyhow::Result<FleetRound> {
    counters.reset().await?;
    let before = database.transactions().await?;
    eprintln!("{name}: {count} worker(s)…");
    let (wall, reports) = workers.round(count).await?;
    let transactions = database.transactions().await? - before;
    let (requests, by_endpoint) = counters.totals().await?;
    let tenants = counters.tenants.len();
    for (index, report) in reports.iter().enumerate() {
        eprintln!(
            "{name}: worker {index}: {:.1} s (its round {:.1} s), claimed {}, synced {}, failed \
             {}, needing reconnect {}, skipped {}, {} claim queries, {} store errors, peak RSS {}",
            report.wall.as_secs_f64(),
            report.elapsed_seconds,
            report.claimed,
            report.synced,
            report.failed,
            report.needs_reconnect,
            report.skipped,
            report.claims,
            report.store_errors,
            report.peak_rss_bytes.map_or_else(|| "n/a".to_owned(), mib)
        );
    }
    let per_endpoint = by_endpoint
        .iter()
        .map(|(endpoint, requests)| format!("{endpoint} {:.2}", *requests as f64 / tenants as f64))
        .collect::<Vec<_>>()
        .join(", ");
    eprintln!(
        "{name}: {:.1} s; {transactions} PostgreSQL transactions; Graph requests per tenant: \
         {per_endpoint}",
        wall.as_secs_f64()
    );
    let mut seen = HashSet::new();
    let twice = reports
        .iter()
        .flat_map(|report| &report.synced_ids)
        .filter(|id| !seen.insert(id.as_str()))
        .count();
    let distinct = seen.len();
    anyhow::ensure!(twice == 0, "{name}: {twice} connections were synced twice");
    let round = FleetRound {
        wall,
        reports,
        transactions,
        requests,
    };
    anyhow::ensure!(
        round.synced() == tenants && distinct == tenants,
        "{name}: the workers synced {} of {tenants} tenants",
        round.synced()
    );
    Ok(round)
}

/// The `fleet` scenario: `--tenants` tenants in one simulator process, each linked by a
/// customer of its own into a fresh `PostgreSQL` database; a full import by one worker
/// process, a delta round by one, and one by three at once.
async fn fleet(args: &Args) -> anyhow::Result<()> {
    let binary = args
        .sim_binary
        .as_deref()
        .context("--only fleet needs --sim-binary PATH (the release tenant-sim)")?;
    anyhow::ensure!(
        args.worker_binary.is_file(),
        "no worker at {} (cargo build --release --example worker, or --worker-binary PATH)",
        args.worker_binary.display()
    );
    anyhow::ensure!(args.tenants > 0, "--tenants is at least 1");
    let latency_ms = args.latency_ms.unwrap_or(FLEET_LATENCY_MS);
    let concurrency = args.concurrency.unwrap_or(FLEET_CONCURRENCY);
    eprintln!(
        "starting tenant-sim: {} tenants of {} users and {} groups, {latency_ms} ms per Graph \
         request",
        args.tenants, args.tenant_users, args.tenant_groups
    );
    let starting = Instant::now();
    let options = [
        "--tenants".to_owned(),
        args.tenants.to_string(),
        "--users".to_owned(),
        args.tenant_users.to_string(),
        "--groups".to_owned(),
        args.tenant_groups.to_string(),
        "--seed".to_owned(),
        args.seed.to_string(),
        "--latency-ms".to_owned(),
        latency_ms.to_string(),
    ];
    let mut external = External::spawn(binary, &options).await?;
    let tenants = sim_tenants(&external.started)?;
    anyhow::ensure!(
        tenants.len() == args.tenants,
        "tenant-sim serves {} tenants, not {}",
        tenants.len(),
        args.tenants
    );
    eprintln!(
        "tenant-sim ready in {:.1} s",
        starting.elapsed().as_secs_f64()
    );
    let database = BenchDatabase::create(&args.postgres).await?;
    eprintln!("created the database {}", database.name);
    let run = FleetRun {
        external: &external,
        tenants: &tenants,
        database: &database,
        worker_binary: &args.worker_binary,
        concurrency,
    };
    let figures = run.rounds().await;
    database.drop_now().await;
    external.child.kill().await.ok();
    let figures = figures?;
    print_fleet_table(
        &format!(
            "fleet: {} tenants × {} users, {} groups, {latency_ms} ms per Graph request, \
             tenant-sim and workers in processes of their own, PostgreSQL, worker \
             --concurrency {concurrency}",
            args.tenants, args.tenant_users, args.tenant_groups
        ),
        &figures,
        concurrency,
    );
    Ok(())
}

/// What the fleet scenario runs on.
struct FleetRun<'a> {
    external: &'a External,
    tenants: &'a [SimTenant],
    database: &'a BenchDatabase,
    worker_binary: &'a std::path::Path,
    concurrency: usize,
}

/// What the fleet scenario measured.
struct FleetFigures {
    tenants: usize,
    link: Duration,
    full: FleetRound,
    delta_one: FleetRound,
    delta_three: FleetRound,
}

impl FleetRun<'_> {
    async fn rounds(&self) -> anyhow::Result<FleetFigures> {
        let key = EncryptionKey::generate();
        let key_text = key.to_base64();
        let store = SqlStore::postgres(self.database.url.clone())
            .key_ring(KeyRing::new(KeyId::new(m365_link_app::store::KEY_ID)?, key))
            // One for each sign-in at once.
            .max_connections(16)
            .open()
            .await
            .context("could not open the store in the bench's database")?;
        // The mirror's tables, made before the first worker starts.
        let mirror = m365_link_app::mirror::Mirror::open(&store)
            .await
            .context("could not make the mirror's tables")?;
        let SqlPool::Postgres(pool) = store.pool() else {
            anyhow::bail!("the bench's store is not PostgreSQL");
        };
        let endpoints = &self.external.endpoints;
        let sign_in = SignIn {
            app: App {
                client_id: endpoints.client_id.clone(),
                client_secret: Some(endpoints.client_secret.clone()),
            },
            cloud: connection_store::Cloud::Custom {
                login: endpoints.login_base.clone(),
                graph: endpoints.graph_base.clone(),
            },
            authority: "organizations".to_owned(),
        };
        let linking = Instant::now();
        futures::stream::iter(self.tenants.iter().enumerate())
            .map(|(index, tenant)| link_customer(&sign_in, &store, index, tenant))
            .buffer_unordered(LINKS_AT_ONCE)
            .try_collect::<Vec<()>>()
            .await?;
        let link = linking.elapsed();
        eprintln!(
            "linked {} tenants, one customer each, {LINKS_AT_ONCE} at a time, in {:.1} s",
            self.tenants.len(),
            link.as_secs_f64()
        );
        let workers = WorkerCommand {
            binary: self.worker_binary,
            store: &self.database.url,
            key: &key_text,
            endpoints,
            concurrency: self.concurrency,
        };
        let counters = FleetCounters {
            http: reqwest::Client::new(),
            control_base: &self.external.control_base,
            tenants: self.tenants,
        };
        let tenants = self.tenants.len();
        let full = measured_round("full import", &workers, 1, self.database, &counters).await?;
        make_due(&pool, tenants).await?;
        let delta_one =
            measured_round("delta round", &workers, 1, self.database, &counters).await?;
        make_due(&pool, tenants).await?;
        let delta_three =
            measured_round("delta round", &workers, 3, self.database, &counters).await?;
        mirror.close().await;
        Ok(FleetFigures {
            tenants,
            link,
            full,
            delta_one,
            delta_three,
        })
    }
}

/// Links `tenant` for a customer of its own, as a real customer would.
async fn link_customer(
    sign_in: &SignIn,
    store: &SqlStore,
    index: usize,
    tenant: &SimTenant,
) -> anyhow::Result<()> {
    let owner = OwnerId::new(format!("customer-{index:04}"));
    let name = format!("Customer {index:04}");
    let connection = link_simulated(sign_in, store, &owner, &tenant.admin_upn, &name).await?;
    anyhow::ensure!(
        connection.tenant.as_str() == tenant.id,
        "signing in {} linked the tenant {}, not {}",
        tenant.admin_upn,
        connection.tenant.as_str(),
        tenant.id
    );
    Ok(())
}

#[expect(clippy::too_many_lines, reason = "one table, row by row")]
fn print_fleet_table(title: &str, figures: &FleetFigures, concurrency: usize) {
    let met = |yes: bool| if yes { "yes" } else { "NO" }.to_owned();
    let seconds = |round: &FleetRound| round.wall.as_secs_f64();
    let rate = |round: &FleetRound| round.synced() as f64 / seconds(round).max(1e-9);
    let tenants = figures.tenants;
    let (full, one, three) = (&figures.full, &figures.delta_one, &figures.delta_three);
    // The delta target is for 1,000 tenants; another count is held to the same rate.
    let delta_target = DELTA_TARGET_SECONDS * tenants as f64 / DELTA_TARGET_TENANTS as f64;
    let ratio = rate(three) / rate(one);
    let rss_of = |round: &FleetRound| {
        round
            .reports
            .iter()
            .map(|report| report.peak_rss_bytes.map_or_else(|| "n/a".to_owned(), mib))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let peak = full.peak_rss().max(one.peak_rss()).max(three.peak_rss()) as f64 / 1_048_576.0;
    let transactions = |round: &FleetRound| round.per_tenant(round.transactions as f64);
    let requests = |round: &FleetRound| round.per_tenant(round.requests as f64);
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "figure",
        "measured",
        "target (the issue's)",
        "met",
    ]);
    table.add_row([
        format!("link {tenants} tenants ({LINKS_AT_ONCE} at a time; set-up)"),
        format!("{:.1} s", figures.link.as_secs_f64()),
        "-".to_owned(),
        String::new(),
    ]);
    table.add_row([
        "full import, 1 worker".to_owned(),
        format!(
            "{:.1} s, {:.0} tenants/s, {} synced",
            seconds(full),
            rate(full),
            full.synced()
        ),
        "-".to_owned(),
        String::new(),
    ]);
    table.add_row([
        "delta round, 1 worker".to_owned(),
        format!(
            "{:.1} s, {:.0} tenants/s, {} synced",
            seconds(one),
            rate(one),
            one.synced()
        ),
        if tenants == DELTA_TARGET_TENANTS {
            format!("≤ {DELTA_TARGET_SECONDS:.0} s for 1,000 tenants")
        } else {
            format!(
                "≤ {DELTA_TARGET_SECONDS:.0} s for 1,000 tenants (≤ {delta_target:.1} s for \
                 {tenants})"
            )
        },
        met(seconds(one) <= delta_target),
    ]);
    table.add_row([
        "delta round, 3 workers at once".to_owned(),
        format!(
            "{:.1} s, {:.0} tenants/s ({} synced); {ratio:.2}× the throughput of 1",
            seconds(three),
            rate(three),
            three
                .reports
                .iter()
                .map(|report| report.synced.to_string())
                .collect::<Vec<_>>()
                .join(" + ")
        ),
        format!("≥ {THREE_WORKERS_TARGET}× the throughput of 1"),
        met(ratio >= THREE_WORKERS_TARGET),
    ]);
    table.add_row([
        format!("worker peak RSS at --concurrency {concurrency} (max over processes)"),
        format!(
            "{peak:.1} MiB (full import {}; delta {}; delta × 3 {})",
            rss_of(full),
            rss_of(one),
            rss_of(three)
        ),
        format!("≤ {PEAK_RSS_TARGET_MIB:.0} MiB at concurrency 32"),
        if concurrency == 32 {
            met(peak <= PEAK_RSS_TARGET_MIB)
        } else {
            "(not at 32)".to_owned()
        },
    ]);
    table.add_row([
        "PostgreSQL transactions per synced tenant (store + mirror, every worker's)".to_owned(),
        format!(
            "delta 1 worker {:.2}, 3 workers {:.2}; full import {:.2}",
            transactions(one),
            transactions(three),
            transactions(full)
        ),
        "O(1), as a number".to_owned(),
        "stated".to_owned(),
    ]);
    table.add_row([
        "Graph requests per tenant".to_owned(),
        format!(
            "delta 1 worker {:.2}, 3 workers {:.2}; full import {:.2}",
            requests(one),
            requests(three),
            requests(full)
        ),
        "-".to_owned(),
        String::new(),
    ]);
    println!("{title}");
    println!("{table}");
}

// ---------------------------------------------------------------------------------------
// partitioned listing (issue 14)
// ---------------------------------------------------------------------------------------

/// The engine's member concurrency before issue 14 tuned it: the import it is compared with.
const MEMBER_CONCURRENCY_BEFORE: usize = 8;

/// The simulator's control API, for the scenarios that drive it from outside.
struct SimControl {
    http: reqwest::Client,
    base: String,
}

impl SimControl {
    async fn latency(&self, ms: u64) -> anyhow::Result<()> {
        self.http
            .put(format!("{}/faults", self.base))
            .json(&serde_json::json!({"rate": 0.0, "latencyMs": ms}))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    async fn throttle(&self, bucket: Option<(f64, f64)>) -> anyhow::Result<()> {
        let url = format!("{}/throttle", self.base);
        let request = match bucket {
            Some((rate, burst)) => self
                .http
                .put(url)
                .json(&serde_json::json!({"unitsPerSecond": rate, "burst": burst})),
            None => self.http.delete(url),
        };
        request.send().await?.error_for_status()?;
        Ok(())
    }

    async fn counters(&self) -> anyhow::Result<serde_json::Value> {
        Ok(self
            .http
            .get(format!("{}/counters", self.base))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}

/// Every user id of a listing, and how long it took.
async fn timed_ids(
    pages: graph_client::Pages<User>,
) -> anyhow::Result<(Duration, HashSet<String>, u64)> {
    let started = Instant::now();
    let mut pages = pages;
    let mut ids = HashSet::new();
    let mut listed = 0;
    while let Some(page) = pages.try_next().await? {
        for user in page.items() {
            listed += 1;
            if let Some(id) = &user.id {
                ids.insert(id.to_string());
            }
        }
    }
    Ok((started.elapsed(), ids, listed))
}

#[expect(
    clippy::too_many_lines,
    reason = "one scenario: four measures and the table"
)]
async fn partitioned(external: External, args: &Args) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("m365-link-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    // Each import runs into a store and mirror of its own, so both are first imports.
    let mut imports = Vec::new();
    for name in ["single", "partitioned"] {
        let db = dir
            .join(format!("{name}.sqlite"))
            .to_string_lossy()
            .into_owned();
        let opened = m365_link_app::store::open(&db).await?;
        let linked = connect_in(&external.endpoints, Arc::clone(&opened.store)).await?;
        imports.push((db, linked));
    }
    let linked = &imports[0].1;
    let graph = linked.graph.clone();
    let token = linked
        .session
        .access_token()
        .await
        .context("no access token")?
        .into_secret();
    let control = SimControl {
        http: reqwest::Client::new(),
        base: external.control_base.clone(),
    };
    let counters = Counters::Remote {
        http: reqwest::Client::new(),
        control_base: external.control_base.clone(),
    };
    let mut rows = Vec::new();

    // 1. Decoding at the floor, no added latency.
    let (listing_row, floor_row) = listing(
        &counters,
        &external.endpoints.graph_base,
        &graph,
        token.expose_secret(),
        args.runs,
    )
    .await?;
    rows.push(listing_row);
    rows.push(floor_row);

    // 2. The single chain against the partitioned listing, with latency on every request.
    let latency_ms = args.latency_ms.unwrap_or(100);
    control.latency(latency_ms).await?;
    counters.reset().await?;
    let (single_wall, single_ids, single_listed) =
        timed_ids(graph.users().list().select(LISTING_SELECT).top(999).pages()).await?;
    let single_requests = counters.total().await?;
    counters.reset().await?;
    let (split_wall, split_ids, split_listed) = timed_ids(
        graph
            .users()
            .list_partitioned()
            .select(LISTING_SELECT)
            .pages(),
    )
    .await?;
    let split_requests = counters.total().await?;
    anyhow::ensure!(
        split_ids == single_ids && split_listed == single_listed,
        "the partitioned listing returned {} ids ({} items), the single chain {} ({})",
        split_ids.len(),
        split_listed,
        single_ids.len(),
        single_listed
    );
    let speedup = single_wall.as_secs_f64() / split_wall.as_secs_f64();
    rows.push(Row {
        scenario: format!("users listing, single chain ({latency_ms} ms a request)"),
        wall: single_wall,
        requests: single_requests,
        users: Some(single_listed),
        peak_rss: None,
        ratio: "1.00".to_owned(),
    });
    rows.push(Row {
        scenario: format!("users listing, partitioned ({latency_ms} ms a request)"),
        wall: split_wall,
        requests: split_requests,
        users: Some(split_listed),
        peak_rss: None,
        ratio: format!("{speedup:.1}× faster, identical id sets (target ≥ 8×)"),
    });

    // 3. A whole first import into the mirror, each in a process of its own: the single
    //    chain with the member concurrency of before, and the defaults.
    let before = MEMBER_CONCURRENCY_BEFORE.to_string();
    counters.reset().await?;
    let old = sync_process(
        &imports[0].0,
        imports[0].1.connection.id,
        &external.endpoints,
        &[
            "--full",
            "--max-partitions",
            "1",
            "--member-concurrency",
            &before,
        ],
    )
    .await?;
    let old_requests = counters.total().await?;
    counters.reset().await?;
    let member_concurrency = args
        .concurrency
        .unwrap_or(graph_client::DEFAULT_MEMBER_CONCURRENCY)
        .to_string();
    let new = sync_process(
        &imports[1].0,
        imports[1].1.connection.id,
        &external.endpoints,
        &["--full", "--member-concurrency", &member_concurrency],
    )
    .await?;
    let new_requests = counters.total().await?;
    anyhow::ensure!(
        old.users == new.users && new.users == single_listed,
        "the imports saw {} and {} users, the listing {single_listed}",
        old.users,
        new.users
    );
    for (name, run) in [("single chain", &old), ("partitioned", &new)] {
        let phases: Vec<String> = run
            .phases
            .iter()
            .map(|(phase, ms)| format!("{phase} {ms:.0} ms"))
            .collect();
        eprintln!("first import, {name}: {}", phases.join(", "));
    }
    let ms = |run: &SyncRun| Duration::from_secs_f64(run.wall_ms / 1000.0);
    let import_speedup = old.wall_ms / new.wall_ms;
    let rss_growth = new.peak_rss.saturating_sub(old.peak_rss);
    rows.push(Row {
        scenario: format!(
            "first import into the mirror, single chain, member concurrency {before} ({latency_ms} ms)"
        ),
        wall: ms(&old),
        requests: old_requests,
        users: Some(old.users),
        peak_rss: Some(mib(old.peak_rss)),
        ratio: "1.00".to_owned(),
    });
    rows.push(Row {
        scenario: format!(
            "first import into the mirror, partitioned, member concurrency {member_concurrency} ({latency_ms} ms)"
        ),
        wall: ms(&new),
        requests: new_requests,
        users: Some(new.users),
        peak_rss: Some(mib(new.peak_rss)),
        ratio: format!(
            "{import_speedup:.1}× faster (target ≥ 5×); RSS +{} (target ≤ 16 MiB)",
            mib(rss_growth)
        ),
    });

    // 4. Under Graph's large-tenant budget (8,000 units per 10 s), no added latency, pages
    //    of 50 so the listing (some 2,000 units) is bound by the budget rather than by the
    //    round trips, and a burst of a tenth of a second so it cannot coast on a full
    //    bucket.
    let rate = 800.0;
    let burst = rate / 10.0;
    control.latency(0).await?;
    control.throttle(Some((rate, burst))).await?;
    counters.reset().await?;
    // The client is told the budget, so it paces itself instead of meeting 429s.
    let paced = GraphClient::builder(m365_link_app::glue::SessionTokens::new(
        linked.session.clone(),
    ))
    .base_url(&external.endpoints.graph_base)
    .resource_unit_budget(rate, burst)
    .build()?;
    let outcome = timed_ids(
        paced
            .users()
            .list_partitioned()
            .select(LISTING_SELECT)
            .top(50)
            .pages(),
    )
    .await;
    let counted = control.counters().await?;
    control.throttle(None).await?;
    let (throttled_wall, throttled_ids, throttled_listed) = outcome?;
    anyhow::ensure!(
        throttled_ids == single_ids,
        "the throttled listing returned {} ids, the single chain {}",
        throttled_ids.len(),
        single_ids.len()
    );
    let status = |code: &str| counted["by_status"][code].as_u64().unwrap_or(0);
    let ok = status("200");
    let throttled = status("429");
    let total = counted["total"].as_u64().unwrap_or(0);
    // Every successful request of the listing costs 1 unit ($select; $count is 1): the
    // bucket allows its burst plus the rate over the wall time.
    let allowed = burst + rate * throttled_wall.as_secs_f64();
    let used = ok as f64 / allowed;
    rows.push(Row {
        scenario: format!(
            "users listing, partitioned, $top=50, throttled to {rate:.0} units/s (burst {burst:.0}), client budget the same"
        ),
        wall: throttled_wall,
        requests: total,
        users: Some(throttled_listed),
        peak_rss: None,
        ratio: format!(
            "{:.0} % of the allowed rate used (target ≥ 90 %); 0 failed, {throttled} answered 429 and retried",
            used * 100.0
        ),
    });

    print_table(
        &format!(
            "issue 14: tenant-sim in another process: {} users, {} groups, seed {}",
            args.users, args.groups, args.seed
        ),
        rows,
    );
    drop(imports);
    drop(external);
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

// ---------------------------------------------------------------------------------------
// listing vs floor
// ---------------------------------------------------------------------------------------

async fn listing(
    counters: &Counters<'_>,
    graph_base: &str,
    graph: &GraphClient,
    token: &str,
    runs: usize,
) -> anyhow::Result<(Row, Row)> {
    let http = reqwest::Client::builder()
        .build()
        .context("could not build the reqwest client")?;
    // Warm both up (connections, allocator), uncounted.
    list_with_client(graph).await?;
    list_floor_with(&http, graph_base, token, false).await?;

    let mut best_client = (Duration::MAX, 0, 0, 0, 0);
    let mut best_floor = (Duration::MAX, 0, 0, 0, 0);
    let mut best_tracked = Duration::MAX;
    for _ in 0..runs.max(1) {
        // The floor again, decoding through serde_path_to_error as graph-client does,
        // to show what that costs.
        let started = Instant::now();
        list_floor_with(&http, graph_base, token, true).await?;
        best_tracked = best_tracked.min(started.elapsed());
        for which in [true, false] {
            counters.reset().await?;
            let before = rss("VmRSS").unwrap_or(0);
            reset_peak_rss();
            let started = Instant::now();
            let users = if which {
                list_with_client(graph).await?
            } else {
                list_floor_with(&http, graph_base, token, false).await?
            };
            let wall = started.elapsed();
            let peak = rss("VmHWM").unwrap_or(0);
            let requests = counters.total().await?;
            let best = if which {
                &mut best_client
            } else {
                &mut best_floor
            };
            if wall < best.0 {
                *best = (wall, requests, users, peak, peak.saturating_sub(before));
            }
        }
    }
    anyhow::ensure!(
        best_client.2 == best_floor.2,
        "graph-client listed {} users, the floor {}",
        best_client.2,
        best_floor.2
    );
    let ratio = best_client.0.as_secs_f64() / best_floor.0.as_secs_f64();
    let row = |name: &str, best: (Duration, u64, u64, u64, u64), ratio: String| Row {
        scenario: name.to_owned(),
        wall: best.0,
        requests: best.1,
        users: Some(best.2),
        peak_rss: Some(format!("{} (+{})", mib(best.3), mib(best.4))),
        ratio,
    };
    let tracked = best_tracked.as_secs_f64() / best_floor.0.as_secs_f64();
    Ok((
        row(
            "listing: graph-client (22 selected, $top=999)",
            best_client,
            format!("{ratio:.2}× floor (target ≤ 1.10)"),
        ),
        row(
            "listing: floor (reqwest + serde_json, plain struct)",
            best_floor,
            format!("1.00; with serde_path_to_error decoding {tracked:.2}×"),
        ),
    ))
}

/// The 22 properties both sides of the listing select: an e-mail signature's profile.
const LISTING_SELECT: [&str; 22] = [
    "id",
    "displayName",
    "givenName",
    "surname",
    "mail",
    "userPrincipalName",
    "mailNickname",
    "jobTitle",
    "department",
    "companyName",
    "officeLocation",
    "businessPhones",
    "mobilePhone",
    "streetAddress",
    "city",
    "state",
    "postalCode",
    "country",
    "usageLocation",
    "employeeId",
    "accountEnabled",
    "userType",
];

async fn list_with_client(graph: &GraphClient) -> anyhow::Result<u64> {
    let pages = graph.users().list().select(LISTING_SELECT).top(999).pages();
    let mut pages = std::pin::pin!(pages);
    let mut count = 0;
    while let Some(page) = pages.try_next().await? {
        count += page.items().len() as u64;
    }
    Ok(count)
}

/// The floor's user: exactly the selected properties, nothing kept for unknown ones.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[expect(dead_code, reason = "decoded to be measured, never read")]
struct FloorUser {
    id: Option<String>,
    display_name: Option<String>,
    given_name: Option<String>,
    surname: Option<String>,
    mail: Option<String>,
    user_principal_name: Option<String>,
    mail_nickname: Option<String>,
    job_title: Option<String>,
    department: Option<String>,
    company_name: Option<String>,
    office_location: Option<String>,
    #[serde(default)]
    business_phones: Vec<String>,
    mobile_phone: Option<String>,
    street_address: Option<String>,
    city: Option<String>,
    state: Option<String>,
    postal_code: Option<String>,
    country: Option<String>,
    usage_location: Option<String>,
    employee_id: Option<String>,
    account_enabled: Option<bool>,
    user_type: Option<String>,
}

#[derive(serde::Deserialize)]
struct FloorPage {
    value: Vec<FloorUser>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

/// The least a client can do: GET, read the body, decode the page into a plain struct of
/// the selected fields, follow the link. `tracked` decodes through `serde_path_to_error`,
/// as graph-client does.
async fn list_floor_with(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    tracked: bool,
) -> anyhow::Result<u64> {
    let mut url = format!("{base}/users?$select={}&$top=999", LISTING_SELECT.join(","));
    let mut count = 0;
    loop {
        let body = http
            .get(&url)
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        let page: FloorPage = if tracked {
            let mut deserializer = serde_json::Deserializer::from_slice(&body);
            serde_path_to_error::deserialize(&mut deserializer)?
        } else {
            serde_json::from_slice(&body)?
        };
        count += page.value.len() as u64;
        match page.next_link {
            Some(next) => url = next,
            None => return Ok(count),
        }
    }
}

// ---------------------------------------------------------------------------------------
// membership expansion
// ---------------------------------------------------------------------------------------

async fn membership(sim: &TenantSim, graph: &GraphClient, args: &Args) -> anyhow::Result<Vec<Row>> {
    let control = sim.control();
    let ids: Vec<String> = control.groups().into_iter().map(|g| g.id).collect();
    let expected: usize = control.groups().iter().map(|g| g.member_count).sum();
    let latency_ms = args.latency_ms.unwrap_or(100);
    let concurrency = args
        .concurrency
        .unwrap_or(graph_client::DEFAULT_MEMBER_CONCURRENCY);
    control.set_faults(FaultSettings::none().with_latency(Duration::from_millis(latency_ms)));

    control.reset_counters();
    let started = Instant::now();
    let mut sequential = 0u64;
    for id in &ids {
        let mut pages = graph.groups().members(id).select(["id"]).top(999).pages();
        while let Some(page) = pages.try_next().await? {
            sequential += page.items().len() as u64;
        }
    }
    let sequential_wall = started.elapsed();
    let sequential_requests = control.counters().total();

    control.reset_counters();
    let started = Instant::now();
    let mut pages = graph
        .groups()
        .members_of_many(ids.clone())
        .concurrency(concurrency)
        .stream();
    let mut concurrent = 0u64;
    while let Some(page) = pages.try_next().await? {
        concurrent += page.members.len() as u64;
    }
    let concurrent_wall = started.elapsed();
    let concurrent_requests = control.counters().total();
    control.set_faults(FaultSettings::none());
    anyhow::ensure!(
        sequential == concurrent && concurrent == expected as u64,
        "memberships: sequential {sequential}, concurrent {concurrent}, directory {expected}"
    );
    let speedup = sequential_wall.as_secs_f64() / concurrent_wall.as_secs_f64();
    Ok(vec![
        Row {
            scenario: format!(
                "membership: one group at a time ({} groups, {} ms latency)",
                ids.len(),
                latency_ms
            ),
            wall: sequential_wall,
            requests: sequential_requests,
            users: None,
            peak_rss: None,
            ratio: format!("{sequential} memberships"),
        },
        Row {
            scenario: format!("membership: $batch + {concurrency} in flight"),
            wall: concurrent_wall,
            requests: concurrent_requests,
            users: None,
            peak_rss: None,
            ratio: format!("{speedup:.1}× faster (target ≥ 5×)"),
        },
    ])
}

// ---------------------------------------------------------------------------------------
// delta after 1 % changes
// ---------------------------------------------------------------------------------------

async fn delta(
    sim: &TenantSim,
    graph: &GraphClient,
    users: usize,
    listing_requests: Option<u64>,
) -> anyhow::Result<Vec<Row>> {
    let control = sim.control();
    // The full round as a first sync by delta would run it (its link is the start).
    control.reset_counters();
    let started = Instant::now();
    let (initial_count, link) = delta_round(graph.users().delta().stream()).await?;
    let initial_wall = started.elapsed();
    let initial_requests = control.counters().total();

    let changes = (users / 100).max(1);
    let people: Vec<String> = control
        .users()
        .into_iter()
        .filter(|u| !u.is_admin)
        .take(changes)
        .map(|u| u.id)
        .collect();
    for (index, id) in people.iter().enumerate() {
        control.update_user(
            id,
            &UserFields::new().job_title(format!("Bench title {index}")),
        )?;
    }

    control.reset_counters();
    let started = Instant::now();
    let (seen, _) = delta_round(graph.users().delta_from(&link)).await?;
    let wall = started.elapsed();
    let requests = control.counters().total();
    anyhow::ensure!(
        seen >= people.len() as u64,
        "the delta round saw {seen} changes, {} were made",
        people.len()
    );
    let versus_listing = listing_requests.map_or_else(String::new, |listing| {
        format!(
            "{:.1} % of the $top=999 listing's {listing} requests; ",
            100.0 * requests as f64 / listing as f64
        )
    });
    Ok(vec![
        Row {
            scenario: "delta: initial users round".to_owned(),
            wall: initial_wall,
            requests: initial_requests,
            users: Some(initial_count),
            peak_rss: None,
            ratio: String::new(),
        },
        Row {
            scenario: format!("delta: round after 1 % changes ({changes} users)"),
            wall,
            requests,
            users: Some(seen),
            peak_rss: None,
            ratio: format!(
                "{versus_listing}{:.1} % of the initial round's (target ≤ 3 %)",
                100.0 * requests as f64 / initial_requests as f64
            ),
        },
    ])
}

async fn delta_round(
    mut round: DeltaRound<User>,
) -> anyhow::Result<(u64, graph_client::DeltaLink)> {
    let mut count = 0;
    while round.try_next().await?.is_some() {
        count += 1;
    }
    let link = round
        .into_delta_link()
        .context("the delta round ended without a link")?;
    Ok((count, link))
}

// ---------------------------------------------------------------------------------------
// throttled
// ---------------------------------------------------------------------------------------

/// Resource units of `GET /users?$top=100` (spec 10a: users 2, no discount at $top ≥ 20).
const USERS_PAGE_UNITS: f64 = 2.0;

async fn throttled(sim: &TenantSim, graph: &GraphClient, rate: f64) -> anyhow::Result<Row> {
    let control = sim.control();
    control.set_throttle(Some(ThrottleSettings::new(rate, rate)?));
    control.reset_counters();
    let started = Instant::now();
    let pages = graph.users().list().top(100).pages();
    let mut pages = std::pin::pin!(pages);
    let mut count = 0u64;
    let mut failed = 0u64;
    loop {
        match pages.try_next().await {
            Ok(Some(page)) => count += page.items().len() as u64,
            Ok(None) => break,
            Err(error) => {
                failed += 1;
                eprintln!("throttled run: request failed: {error}");
                break;
            }
        }
    }
    let wall = started.elapsed();
    control.set_throttle(None);
    let counters = control.counters();
    let throttled = counters.by_status().get(&429).copied().unwrap_or(0);
    let ok = counters.by_status().get(&200).copied().unwrap_or(0);
    // What the bucket allowed in that time: its burst plus the refill.
    let allowed = rate + rate * wall.as_secs_f64();
    let used = ok as f64 * USERS_PAGE_UNITS;
    Ok(Row {
        scenario: format!("throttled: users in pages of 100 at {rate} units/s"),
        wall,
        requests: counters.total(),
        users: Some(count),
        peak_rss: None,
        ratio: format!(
            "{failed} failed, {throttled} × 429; {:.0} % of the allowed units used (target ≥ 90 %)",
            100.0 * used / allowed
        ),
    })
}

// ---------------------------------------------------------------------------------------
// memory
// ---------------------------------------------------------------------------------------

/// A `/proc/self/status` figure in bytes (`VmRSS`, `VmHWM`), on Linux.
fn rss(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Resets `VmHWM` to the current RSS (Linux ≥ 4.0: write 5 to `clear_refs`).
fn reset_peak_rss() {
    if let Err(error) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!("(could not reset the peak RSS: {error})");
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Token requests per tenant over a day of hourly syncs, with and without `cp1`.
///
/// Everything that decides when a session refreshes is scaled by the same factor: an
/// hour lasts `--hour-ms`, the simulator's tokens live one such hour (28 with `cp1`, as
/// CAE tokens at Microsoft), the session refreshes 5 scaled minutes before expiry (its
/// default skew), and each tenant syncs once per scaled hour, 24 times. The sessions
/// and Graph clients are the glue's, kept across the day as the worker keeps them.
async fn cae(args: &Args) -> anyhow::Result<()> {
    let hour = Duration::from_millis(args.hour_ms.max(100));
    let mut rows = Vec::new();
    for cp1 in [false, true] {
        rows.push(cae_day(args, hour, cp1).await?);
    }
    print_table(
        &format!(
            "issue 16: token requests over a simulated day (an hour = {} ms)",
            hour.as_millis()
        ),
        rows,
    );
    Ok(())
}

/// One simulated day of hourly syncs of every tenant, `cp1` declared or not.
async fn cae_day(args: &Args, hour: Duration, cp1: bool) -> anyhow::Result<Row> {
    let tenants = args.tenants.min(50);
    let sim = TenantSim::builder()
        .tenants(tenants)
        .users(args.tenant_users.min(200))
        .groups(args.tenant_groups)
        .seed(args.seed)
        .access_token_lifetime(hour)
        .cae_access_token_lifetime(hour * 28)
        .start()
        .await
        .context("could not start tenant-sim")?;
    let mut syncs = cae_link(&sim, hour, cp1).await?;
    for tenant in sim.tenants() {
        if let Some(control) = sim.tenant_control(tenant.id()) {
            control.reset_counters();
        }
    }
    let options = m365_link_app::sync::Options {
        engine: graph_client::sync::SyncOptions::default(),
        lease_ttl: Duration::from_secs(60),
        holder: connection_store::LeaseHolder::new("bench-cae")?,
    };
    let started = Instant::now();
    for sync_hour in 0..24u32 {
        tokio::time::sleep_until((started + hour * sync_hour).into()).await;
        for (tenant, graph, target, sink) in &mut syncs {
            m365_link_app::sync::run(graph, target, sink, &options, &NoProgress)
                .await
                .with_context(|| format!("hour {sync_hour}: the sync of {tenant}"))?;
        }
    }
    let wall = started.elapsed();
    let mut refreshes = Vec::new();
    let mut graph_requests = 0;
    for tenant in sim.tenants() {
        if let Some(control) = sim.tenant_control(tenant.id()) {
            let counters = control.counters();
            refreshes.push(counters.tokens().requests("refresh_token"));
            graph_requests += counters.total();
        }
    }
    sim.shutdown().await;
    let (min, max) = (
        refreshes.iter().copied().min().unwrap_or(0),
        refreshes.iter().copied().max().unwrap_or(0),
    );
    let total: u64 = refreshes.iter().sum();
    Ok(Row {
        scenario: format!(
            "24 hourly syncs of {tenants} tenants, cp1 {}",
            if cp1 { "declared" } else { "not declared" }
        ),
        wall,
        requests: graph_requests,
        users: None,
        peak_rss: None,
        ratio: format!(
            "token requests per tenant: {:.1} (min {min}, max {max}; {total} in all)",
            total as f64 / refreshes.len().max(1) as f64
        ),
    })
}

/// A tenant of the `cae` scenario: its name, Graph client, sync target and sink.
type CaeSync = (String, GraphClient, m365_link_app::sync::Target, MemorySink);

/// Links every tenant of `sim` and opens it as the glue does, on an Entra client that
/// declares `cp1` or not and sessions refreshing 5 scaled minutes before expiry.
async fn cae_link(sim: &TenantSim, hour: Duration, cp1: bool) -> anyhow::Result<Vec<CaeSync>> {
    let store: Arc<dyn ConnectionStore> = Arc::new(MemoryStore::new());
    let sign_in = SignIn::simulated(sim);
    let client = sign_in
        .app
        .entra_client_builder(&sign_in.cloud, None)?
        .client_capability_cp1(cp1)
        .build()?;
    let mut syncs = Vec::new();
    for (n, tenant) in sim.tenants().iter().enumerate() {
        let owner = connection_store::OwnerId::new(format!("customer-{n}"));
        let connection = link_simulated(
            &sign_in,
            store.as_ref(),
            &owner,
            tenant.admin_upn(),
            "Microsoft 365",
        )
        .await?;
        let tokens = Arc::new(m365_link_app::glue::ConnectionTokens::new(
            Arc::clone(&store),
            owner.clone(),
            connection.id,
        ));
        let tenant_id = entra_auth::TenantId::parse(connection.tenant.as_str())?;
        let session = entra_auth::TokenSession::builder(client.clone(), tenant_id, tokens)
            .refresh_skew(hour / 12)
            .build()?;
        let graph = m365_link_app::glue::graph_client(&connection.cloud, session)?;
        let target = m365_link_app::sync::Target {
            store: Arc::clone(&store),
            owner,
            id: connection.id,
        };
        syncs.push((tenant.id().to_owned(), graph, target, MemorySink::new()));
    }
    Ok(syncs)
}
