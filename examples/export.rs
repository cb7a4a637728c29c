//! Export a connection's directory mirror (what `sync` imported into the store's
//! database) as JSON Lines or CSV: `users`, `groups` and `memberships` files in a private
//! folder.
//!
//! ```text
//! cargo run --example export -- --connection "Contoso Germany" --out ./contoso
//! cargo run --example export -- --connection "Contoso Germany" --format csv --out ./contoso-csv
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use connection_store::OwnerId;
use m365_link_app::connect::find_connection;
use m365_link_app::mirror::{ExportFormat, ExportOptions, export};

/// Write a connection's mirrored users, groups and memberships to files.
#[derive(Parser, Debug)]
#[command(version)]
#[allow(
    clippy::doc_markdown,
    reason = "doc comments are the --help text, shown verbatim"
)]
struct Args {
    /// Where connections and the mirror are stored: a SQLite file, or a postgres:// URL
    /// (key from M365_LINK_STORE_KEY).
    #[arg(long, default_value = m365_link_app::store::DEFAULT_STORE)]
    store: String,

    /// The customer account the connection belongs to.
    #[arg(long, default_value = "local")]
    owner: String,

    /// The connection's name or id.
    #[arg(long)]
    connection: String,

    /// jsonl (one JSON object per line) or csv (a header row; formula-like cells are
    /// prefixed with ').
    #[arg(long, value_enum, default_value = "jsonl")]
    format: ExportFormat,

    /// The folder to write into: created with mode 0700 if missing, or an existing one
    /// that only you can open. Earlier export files there are replaced.
    #[arg(long)]
    out: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let opened = m365_link_app::store::open(&args.store).await?;
    let owner = OwnerId::new(args.owner);
    let connection = find_connection(opened.store.as_ref(), &owner, &args.connection).await?;
    let mirror = &opened.mirror;
    let Some(state) = mirror.state(connection.id).await? else {
        anyhow::bail!(
            "{:?} has no mirror yet: no sync has committed into it",
            connection.name.as_str()
        );
    };
    let report = export(
        mirror,
        connection.id,
        &ExportOptions::new(args.format),
        &args.out,
    )
    .await?;
    println!(
        "Exported {:?} ({} sync{} committed): {} users, {} groups, {} memberships.",
        connection.name.as_str(),
        state.commits,
        if state.commits == 1 { "" } else { "s" },
        report.users,
        report.groups,
        report.memberships
    );
    for file in &report.files {
        println!("  {}", file.display());
    }
    Ok(())
}
