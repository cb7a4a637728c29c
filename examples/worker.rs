//! Sync every due connection of a store into the directory mirror, many at once. Run as
//! many workers (and web app instances) on one `PostgreSQL` as you like: each due
//! connection is claimed by exactly one of them.
//!
//! ```text
//! cargo run --example worker -- --store postgres://localhost/m365 --concurrency 32
//! cargo run --example worker -- --once --json      # one round, its report as JSON
//! cargo run --example worker -- --help
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use graph_client::sync::SyncOptions;
use m365_link_app::glue::App;
use m365_link_app::sync;
use m365_link_app::worker::{self, MirrorSyncer, RoundReport, Worker, WorkerOptions};
use secrecy::SecretString;

/// Sync every due linked tenant of a store into its directory mirror, up to --concurrency
/// at once, until stopped (SIGTERM or Ctrl-C: no more connections are claimed, running
/// syncs get --grace to finish and the leases of the rest are freed).
///
/// A connection is due when its last sync is older than --interval (or it was never
/// synced), it is not in failure backoff, and no other worker holds its sync lease.
/// Connections that need a reconnect or are disabled are never synced. Each round prints
/// what it claimed, synced, failed, found needing a reconnect, and how long the most
/// overdue connection had waited.
///
/// Exit codes: 0 done (or stopped), 1 the store could not be opened, 2 bad arguments.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
#[allow(
    clippy::doc_markdown,
    reason = "doc comments are the --help text, shown verbatim"
)]
struct Args {
    /// Where connections and the mirror are stored: a SQLite file, or a postgres:// URL.
    #[arg(long, default_value = m365_link_app::store::DEFAULT_STORE)]
    store: String,

    /// Syncs running at once (default: 16 per core). They mostly wait for Graph, so many
    /// per core is right.
    #[arg(long, default_value_t = m365_link_app::worker::default_concurrency(), value_parser = clap::value_parser!(u16).range(1..=1024))]
    concurrency: u16,

    /// Sync a connection when its last sync is older than this (e.g. 90s, 15m, 1h).
    #[arg(long, default_value = "1h", value_parser = parse_interval)]
    interval: Duration,

    /// How often to look for due connections when idle.
    #[arg(long, default_value = "30s", value_parser = worker::parse_duration)]
    check_every: Duration,

    /// The sync lease's time-to-live; it is renewed every third of it while a sync runs.
    #[arg(long, default_value = "60s", value_parser = parse_lease_ttl)]
    lease_ttl: Duration,

    /// How long running syncs may take to finish after SIGTERM or Ctrl-C.
    #[arg(long, default_value = "30s", value_parser = worker::parse_duration)]
    grace: Duration,

    /// Run one round (until nothing is due), then exit.
    #[arg(long)]
    once: bool,

    /// Print each round's report as one JSON line on stdout (with this worker's lease
    /// holder name and this process's peak memory), instead of a sentence on stderr.
    #[arg(long)]
    json: bool,

    /// The application (client) id of the app registration the connections were made with.
    #[arg(long, env = "ENTRA_CLIENT_ID")]
    client_id: String,

    /// Its client secret, for a "Web" app registration.
    #[arg(long, env = "ENTRA_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("worker failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let opened = m365_link_app::store::open(&args.store).await?;
    let holder = sync::default_holder()?;
    let app = App {
        client_id: args.client_id.clone(),
        client_secret: args.client_secret.clone().map(SecretString::from),
    };
    // The properties the web app's mirror reads, so the worker and the app's own syncs
    // agree (a different selection would make the next sync a full import).
    let engine = SyncOptions::new().user_select(m365_link_app::web::employees::USER_SELECT);
    let syncer = MirrorSyncer::new(
        Arc::clone(&opened.store),
        opened.sql.clone(),
        opened.mirror.clone(),
        app,
        engine,
        args.lease_ttl,
    );
    let options = WorkerOptions {
        concurrency: usize::from(args.concurrency),
        interval: args.interval,
        lease_ttl: args.lease_ttl,
        grace: args.grace,
    };
    let worker = Worker::new(Arc::clone(&opened.store), holder, options, Arc::new(syncer));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let signals = tokio::spawn(stop_on_signal(stop));
    if !args.json {
        eprintln!(
            "worker {} on the {}: concurrency {}, interval {:?}",
            worker.holder(),
            opened.description,
            args.concurrency,
            args.interval
        );
    }
    let holder_name = worker.holder().to_string();
    let print = |report: &RoundReport| print_round(report, &holder_name, args.json);
    if args.once {
        let mut stopped = stopped;
        print(&worker.round(&mut stopped).await);
    } else {
        worker.run(args.check_every, stopped, print).await;
    }
    signals.abort();
    opened.mirror.close().await;
    Ok(())
}

fn print_round(report: &RoundReport, holder: &str, json: bool) {
    if !json {
        if report.claimed > 0 || report.store_errors > 0 {
            eprintln!("round: {report}");
        }
        return;
    }
    let line = serde_json::json!({
        "holder": holder,
        "claimed": report.claimed,
        "synced": report.synced,
        "failed": report.failed,
        "needs_reconnect": report.needs_reconnect,
        "skipped": report.skipped,
        "lag_seconds": report.lag.map(|lag| lag.as_secs_f64()),
        "claims": report.claims,
        "corrupt": report.corrupt,
        "store_errors": report.store_errors,
        "elapsed_seconds": report.elapsed.as_secs_f64(),
        "peak_rss_bytes": peak_rss_bytes(),
        "synced_ids": report
            .visits
            .iter()
            .filter(|(_, outcome)| *outcome == m365_link_app::worker::Outcome::Synced)
            .map(|(id, _)| id.to_string())
            .collect::<Vec<_>>(),
    });
    println!("{line}");
}

/// This process's peak resident memory (Linux `VmHWM`), if known.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Turns `stop` true on SIGTERM or Ctrl-C.
async fn stop_on_signal(stop: tokio::sync::watch::Sender<bool>) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = ctrl_c.await;
            let _ = stop.send(true);
            return;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    eprintln!("stopping: running syncs finish, nothing more is claimed");
    let _ = stop.send(true);
}

/// `--interval`: at least a second (zero would make every connection due forever).
fn parse_interval(text: &str) -> Result<Duration, String> {
    at_least(text, Duration::from_secs(1))
}

/// `--lease-ttl`: at least 3 s, so its renewals (every third) come well before it ends.
fn parse_lease_ttl(text: &str) -> Result<Duration, String> {
    at_least(text, Duration::from_secs(3))
}

fn at_least(text: &str, min: Duration) -> Result<Duration, String> {
    let duration = worker::parse_duration(text)?;
    if duration < min {
        return Err(format!("must be at least {min:?}"));
    }
    Ok(duration)
}
