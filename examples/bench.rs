//! Measures graph-client and the sync engine against tenant-sim in process.
//!
//! ```text
//! cargo run --release --example bench                      # 100,000 users, everything
//! cargo run --release --example bench -- --users 10000 --only listing
//! cargo run --release --example bench -- --help
//! ```
//!
//! Scenarios, each on the same simulated tenant:
//! - `listing`: every user through graph-client (`$top=999`) against a floor written with
//!   plain reqwest + `serde_json` into the same `graph_client::User` over the same pages;
//!   best of `--runs` each, alternating.
//! - `membership`: every group's members with `--latency-ms` per Graph round trip,
//!   one group at a time (each group's pages in turn) against the sync engine's
//!   expansion (`$batch` first pages, `--concurrency` batches or chains in flight).
//! - `delta`: a users delta round after 1 % of the users changed.
//! - `throttled`: every user in pages of 100 under a `--rate-limit` token bucket.
//! - `mirror` (with `--sim-binary`): a full import into the `SQLite` directory mirror, a
//!   delta round with nothing changed, and one after 1 % of the users changed; each sync
//!   runs in a process of its own (the bench re-runs itself), so its wall time and peak
//!   RSS are the syncing process's alone.
//!
//! Peak RSS is `VmHWM` of this process, which also holds the simulator; for the listing
//! it is reset just before (`/proc/self/clear_refs`), so "peak RSS" is the listing's
//! own high-water mark and "+RSS" its growth over the resident size before it. RSS is
//! per process: compare sizes with separate runs (`--only listing --users 10000` and
//! `--users 100000`).

// Figures are shown with a few digits: u64 → f64 loses nothing that is printed.
#![allow(clippy::cast_precision_loss, reason = "figures for display")]

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use connection_store::{ConnectionStore, MemoryStore, OwnerId};
use futures::TryStreamExt as _;
use graph_client::{DeltaRound, GraphClient, User};
use m365_link_app::connect::{SignIn, create_connection, simulated_browser};
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
    /// Simulated Graph round trip for the membership scenario, in milliseconds.
    #[arg(long, default_value_t = 100)]
    latency_ms: u64,
    /// Resource units per second (and burst) for the throttled scenario.
    #[arg(long, default_value_t = 200.0)]
    rate_limit: f64,
    /// Batches or member chains in flight in the concurrent expansion.
    #[arg(long, default_value_t = graph_client::DEFAULT_MEMBER_CONCURRENCY)]
    concurrency: usize,
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
    eprintln!(
        "starting tenant-sim: {} users, {} groups",
        args.users, args.groups
    );
    if let Some(binary) = &args.sim_binary {
        let external = External::start(binary, &args).await?;
        return match args.only {
            Only::Listing => external_listing(external, &args).await,
            Only::Mirror => external_mirror(external, &args).await,
            _ => anyhow::bail!(
                "--sim-binary measures the listing or the mirror; add --only listing or --only mirror"
            ),
        };
    }
    anyhow::ensure!(
        args.only != Only::Mirror,
        "--only mirror needs --sim-binary"
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
}

impl External {
    async fn start(binary: &std::path::Path, args: &Args) -> anyhow::Result<Self> {
        use tokio::io::AsyncBufReadExt as _;
        let mut child = tokio::process::Command::new(binary)
            .args(["--port", "0", "--users", &args.users.to_string()])
            .args([
                "--groups",
                &args.groups.to_string(),
                "--seed",
                &args.seed.to_string(),
            ])
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
    options.engine = graph_client::sync::SyncOptions::new().force_full(args.full);
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
    let exe = std::env::current_exe()?;
    let endpoints = &external.endpoints;
    let child = async |full: bool| -> anyhow::Result<(SyncRun, u64)> {
        counters.reset().await?;
        let mut command = tokio::process::Command::new(&exe);
        command
            .args([
                "--sync-child",
                "--db",
                &db_text,
                "--connection-id",
                &id.to_string(),
            ])
            .args(["--client-id", &endpoints.client_id])
            .args(["--client-secret", endpoints.client_secret.expose_secret()]);
        if full {
            command.arg("--full");
        }
        let output = command.output().await?;
        anyhow::ensure!(
            output.status.success(),
            "the sync process failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let run: SyncRun =
            serde_json::from_slice(&output.stdout).context("the sync process printed no report")?;
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
            "listing: graph-client ($top=999)",
            best_client,
            format!("{ratio:.2}× floor (target ≤ 1.10)"),
        ),
        row(
            "listing: floor (reqwest + serde_json)",
            best_floor,
            format!("1.00; with serde_path_to_error decoding {tracked:.2}×"),
        ),
    ))
}

async fn list_with_client(graph: &GraphClient) -> anyhow::Result<u64> {
    let pages = graph.users().list().top(999).pages();
    let mut pages = std::pin::pin!(pages);
    let mut count = 0;
    while let Some(page) = pages.try_next().await? {
        count += page.items().len() as u64;
    }
    Ok(count)
}

#[derive(serde::Deserialize)]
struct FloorPage {
    value: Vec<User>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

/// The least a client can do: GET, read the body, decode the page, follow the link.
/// `tracked` decodes through `serde_path_to_error`, as graph-client does.
async fn list_floor_with(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    tracked: bool,
) -> anyhow::Result<u64> {
    let mut url = format!("{base}/users?$top=999");
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
    control.set_faults(FaultSettings::none().with_latency(Duration::from_millis(args.latency_ms)));

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
        .concurrency(args.concurrency)
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
                args.latency_ms
            ),
            wall: sequential_wall,
            requests: sequential_requests,
            users: None,
            peak_rss: None,
            ratio: format!("{sequential} memberships"),
        },
        Row {
            scenario: format!("membership: $batch + {} in flight", args.concurrency),
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
