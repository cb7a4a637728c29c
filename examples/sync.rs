//! Import a linked tenant's users, groups and memberships, then keep them in sync.
//!
//! ```text
//! cargo run --example sync -- --connection "Contoso Germany" --out export/
//! cargo run --example sync -- --connection "Contoso Germany" --full --format csv
//! cargo run --example sync -- --help
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use connection_store::OwnerId;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use m365_link_app::connect::find_connection;
use m365_link_app::glue::{App, Linked};
use m365_link_app::sync::{self, Format, Kind, Phase, Progress, SyncStop};
use secrecy::SecretString;

/// Import a linked Microsoft 365 tenant's users, groups and group memberships into
/// JSON Lines or CSV files: a full import the first time, only the changes (delta)
/// afterwards. The delta links are kept in the connection store.
///
/// Exit codes: 0 done, 1 failed, 3 the connection needs a reconnect (an admin signs in
/// again with `connect --reconnect`), 4 another sync of the connection is running.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
#[allow(
    clippy::doc_markdown,
    reason = "doc comments are the --help text, shown verbatim"
)]
struct Args {
    /// The connection to sync, by name or id (see `connections list`).
    #[arg(long, value_name = "NAME|ID")]
    connection: String,

    /// Run a full import even when a delta sync is possible.
    #[arg(long)]
    full: bool,

    /// The user attributes to export, comma-separated (id is always included), e.g.
    /// displayName,mail,jobTitle. Changing them runs a full import.
    #[arg(long, value_delimiter = ',', value_name = "ATTRIBUTES")]
    select: Option<Vec<String>>,

    /// The export format.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    format: Format,

    /// The export folder (one per connection).
    #[arg(long, default_value = "m365-export", value_name = "DIR")]
    out: std::path::PathBuf,

    /// Where connections are stored: a SQLite file, or a postgres:// URL.
    #[arg(long, default_value = m365_link_app::store::DEFAULT_STORE)]
    store: String,

    /// The customer account the connection belongs to.
    #[arg(long, default_value = "local")]
    owner: String,

    /// Group batches or member chains in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,

    /// The application (client) id of the app registration the connection was made with.
    #[arg(long, env = "ENTRA_CLIENT_ID")]
    client_id: String,

    /// Its client secret, for a "Web" app registration.
    #[arg(long, env = "ENTRA_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,

    /// No progress bars.
    #[arg(long)]
    quiet: bool,
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
            if let Some(stop) = error.downcast_ref::<SyncStop>() {
                // Distinct codes for "an admin must reconnect" and "another sync is
                // running", for schedulers.
                return match stop {
                    SyncStop::NeedsReconnect { .. } => ExitCode::from(3),
                    SyncStop::LeaseHeld => {
                        eprintln!("sync stopped: {stop}");
                        ExitCode::from(4)
                    }
                    _ => {
                        eprintln!("sync stopped: {stop}");
                        ExitCode::FAILURE
                    }
                };
            }
            eprintln!("sync failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let opened = m365_link_app::store::open(&args.store).await?;
    let owner = OwnerId::new(args.owner.clone());
    let connection = find_connection(opened.store.as_ref(), &owner, &args.connection).await?;
    let app = App {
        client_id: args.client_id.clone(),
        client_secret: args.client_secret.clone().map(SecretString::from),
    };
    let linked = Linked::open(Arc::clone(&opened.store), &owner, connection.id, &app).await?;

    let mut options = sync::Options::new(&args.out)?;
    options.full = args.full;
    options.format = args.format;
    options.concurrency = usize::from(args.concurrency);
    if let Some(select) = args.select {
        options.select = select;
    }
    let target = sync::Target {
        store: Arc::clone(&opened.store),
        owner,
        id: connection.id,
    };
    println!(
        "Syncing {:?} ({}) from {} into {}",
        connection.name.as_str(),
        connection.tenant,
        opened.description,
        args.out.display()
    );
    let bars = Bars::new(args.quiet);
    let result = sync::run(&linked.graph, &target, &options, &bars).await;
    bars.multi.clear().ok();
    let report = result.inspect_err(|error| {
        // Said here, where the connection's name is known; `main` only sets the exit code.
        if let Some(stop @ SyncStop::NeedsReconnect { .. }) = error.downcast_ref::<SyncStop>() {
            eprintln!("sync stopped: {stop}");
            eprintln!(
                "for this connection: cargo run --example connect -- --reconnect {:?} --store {:?} --owner {:?}",
                connection.name.as_str(),
                args.store,
                args.owner
            );
        }
    })?;

    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(["", "added", "updated", "deleted", "total"]);
    for (name, counts) in [
        ("users", report.users),
        ("groups", report.groups),
        ("memberships", report.memberships),
    ] {
        table.add_row([
            name.to_owned(),
            counts.added.to_string(),
            counts.updated.to_string(),
            counts.deleted.to_string(),
            counts.total.to_string(),
        ]);
    }
    println!(
        "{} sync done in {:.1?}",
        report.kind.label(),
        report.elapsed
    );
    if report.kind == Kind::Resync {
        println!("(the delta links had expired: compared with the previous export instead)");
    }
    println!("{table}");
    for file in &report.files {
        println!("  {}", file.display());
    }
    Ok(())
}

/// One `indicatif` bar per phase: count and rate.
struct Bars {
    multi: MultiProgress,
    phases: std::sync::Mutex<Vec<(Phase, ProgressBar)>>,
    quiet: bool,
}

impl Bars {
    fn new(quiet: bool) -> Self {
        Self {
            multi: MultiProgress::new(),
            phases: std::sync::Mutex::new(Vec::new()),
            quiet,
        }
    }

    fn with(&self, phase: Phase, action: impl FnOnce(&ProgressBar)) {
        // A poisoned lock only means another progress call panicked: keep going.
        let bars = self
            .phases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, bar)) = bars.iter().find(|(p, _)| *p == phase) {
            action(bar);
        }
    }
}

impl Progress for Bars {
    fn start(&self, phase: Phase, total: Option<u64>) {
        if self.quiet {
            return;
        }
        let (bar, template) = match total {
            Some(total) => (
                ProgressBar::new(total),
                "{prefix:>12} [{bar:30}] {pos}/{len} groups, {per_sec} ({elapsed})",
            ),
            None => (
                ProgressBar::no_length(),
                "{prefix:>12} {spinner} {pos} changes/objects, {per_sec} ({elapsed})",
            ),
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(phase.label());
        let bar = self.multi.add(bar);
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        self.phases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((phase, bar));
    }

    fn advance(&self, phase: Phase, count: u64) {
        self.with(phase, |bar| bar.inc(count));
    }

    fn finish(&self, phase: Phase) {
        self.with(phase, ProgressBar::finish);
    }
}
