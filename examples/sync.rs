//! Import a linked tenant's users, groups and memberships into the directory mirror (in
//! the store's database), then keep them in sync.
//!
//! ```text
//! cargo run --example sync -- --connection "Contoso Germany"
//! cargo run --example sync -- --connection "Contoso Germany" --full --select displayName,mail,jobTitle
//! cargo run --example sync -- --help
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use connection_store::OwnerId;
use graph_client::sync::{Phase, SyncKind, SyncOptions, SyncProgress};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use m365_link_app::connect::find_connection;
use m365_link_app::glue::{App, Linked};
use m365_link_app::sync::{self, SyncStop};
use secrecy::SecretString;

/// Import a linked Microsoft 365 tenant's users, groups and group memberships into the
/// directory mirror, in the same database as the connection store: a full import the
/// first time, only the changes (delta) afterwards, a full import again when Microsoft
/// expired the delta links (deletions are still reported). The changes and their delta
/// links are committed together; `export` writes the mirror to files.
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

    /// The user attributes the mirror keeps, comma-separated (id is always included), e.g.
    /// displayName,mail,jobTitle. Changing them runs a full import.
    #[arg(long, value_delimiter = ',', value_name = "ATTRIBUTES")]
    select: Option<Vec<String>>,

    /// Where connections and the mirror are stored: a SQLite file, or a postgres:// URL.
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

    let mut options = sync::Options::new()?;
    options.engine = SyncOptions::new()
        .force_full(args.full)
        .concurrency(usize::from(args.concurrency));
    if let Some(select) = &args.select {
        options.engine = options.engine.user_select(select);
    }
    let target = sync::Target {
        store: Arc::clone(&opened.store),
        owner,
        id: connection.id,
    };
    println!(
        "Syncing {:?} ({}) into the mirror in the {}",
        connection.name.as_str(),
        connection.tenant,
        opened.description,
    );
    let mut sink = opened
        .mirror
        .sink(&opened.sql, connection.id)
        .with_fence(options.holder.clone());
    let bars = Bars::new(args.quiet);
    let result = sync::run(&linked.graph, &target, &mut sink, &options, &bars).await;
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
        .set_header(["", "added", "updated", "removed", "total"]);
    let summary = &report.summary;
    for (name, counts) in [
        ("users", summary.users),
        ("groups", summary.groups),
        ("memberships", summary.memberships),
    ] {
        table.add_row([
            name.to_owned(),
            counts.added.to_string(),
            counts.updated.to_string(),
            counts.removed.to_string(),
            counts.total.to_string(),
        ]);
    }
    println!("{} sync done in {:.1?}", report.kind, report.elapsed);
    if report.kind == SyncKind::Resync {
        println!("(the delta links had expired: a full import removed what was gone)");
    }
    println!("{table}");
    if !summary.removed_user_ids.is_empty() {
        let shown: Vec<&str> = summary
            .removed_user_ids
            .iter()
            .take(10)
            .map(graph_client::ObjectId::as_str)
            .collect();
        let more = summary.users.removed.saturating_sub(shown.len() as u64);
        println!(
            "removed users: {}{}",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
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

impl SyncProgress for Bars {
    fn started(&self, phase: Phase, total: Option<u64>) {
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
        bar.set_prefix(phase.as_str());
        let bar = self.multi.add(bar);
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        self.phases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((phase, bar));
    }

    fn advanced(&self, phase: Phase, count: u64) {
        self.with(phase, |bar| bar.inc(count));
    }

    fn finished(&self, phase: Phase) {
        self.with(phase, ProgressBar::finish);
    }
}
