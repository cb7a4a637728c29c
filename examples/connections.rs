//! "Linked Microsoft 365 accounts": list, show, rename and remove connections.
//!
//! ```text
//! cargo run --example connections -- list
//! cargo run --example connections -- show "Contoso Germany"
//! cargo run --example connections -- rename "Contoso Germany" "Contoso DE"
//! cargo run --example connections -- remove "Contoso DE"
//! ```

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use connection_store::{Connection, OwnerId};
use m365_link_app::connect::find_connection;
use m365_link_app::glue::describe_store_error;
use m365_link_app::present::{connections_table, status_text, when};

/// Manage the linked Microsoft 365 accounts (connections) in the store.
#[derive(Parser, Debug)]
#[command(version)]
#[allow(
    clippy::doc_markdown,
    reason = "doc comments are the --help text, shown verbatim"
)]
struct Args {
    /// Where connections are stored: a SQLite file, or a postgres:// URL (key from
    /// M365_LINK_STORE_KEY).
    #[arg(long, global = true, default_value = m365_link_app::store::DEFAULT_STORE)]
    store: String,

    /// The customer account whose connections to manage.
    #[arg(long, global = true, default_value = "local")]
    owner: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// A table of the connections: name, tenant, admin, status, last sync.
    List,
    /// Everything stored about one connection (never its tokens).
    Show {
        /// The connection's name or id.
        connection: String,
    },
    /// Give a connection another name.
    Rename {
        /// The connection's name or id.
        connection: String,
        /// The new name (unique for the owner, ignoring case).
        new_name: String,
    },
    /// Delete a connection with its token, sync cursors and lease. Microsoft's consent
    /// stays; an admin removes it under Entra ID → Enterprise applications.
    Remove {
        /// The connection's name or id.
        connection: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
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
    let store = opened.store.as_ref();
    let owner = OwnerId::new(args.owner);
    match args.command {
        Command::List => {
            let connections = store.list(&owner).await.map_err(describe_store_error)?;
            if connections.is_empty() {
                println!(
                    "No linked Microsoft 365 accounts for owner {owner} in {}.\n\
                     Create one with `cargo run --example connect -- --name <NAME>`.",
                    opened.description
                );
            } else {
                println!("{}", connections_table(&connections));
            }
        }
        Command::Show { connection } => {
            let connection = find_connection(store, &owner, &connection).await?;
            print!("{}", details(&connection));
        }
        Command::Rename {
            connection,
            new_name,
        } => {
            let connection = find_connection(store, &owner, &connection).await?;
            let renamed = store
                .rename(&owner, connection.id, &new_name)
                .await
                .map_err(describe_store_error)?;
            println!(
                "Renamed {:?} to {:?}.",
                connection.name.as_str(),
                renamed.name.as_str()
            );
        }
        Command::Remove { connection, yes } => {
            let connection = find_connection(store, &owner, &connection).await?;
            if !yes && !confirm(&connection)? {
                println!("Nothing removed.");
                return Ok(());
            }
            store
                .delete(&owner, connection.id)
                .await
                .map_err(describe_store_error)?;
            println!("Removed {:?}.", connection.name.as_str());
        }
    }
    Ok(())
}

fn details(connection: &Connection) -> String {
    let admin = match &connection.admin.display_name {
        Some(name) => format!("{name} <{}>", connection.admin.username),
        None => connection.admin.username.clone(),
    };
    let cloud = match &connection.cloud {
        connection_store::Cloud::Custom { login, graph } => {
            format!("custom (login {login}, graph {graph})")
        }
        other => format!("{other:?}"),
    };
    format!(
        "name:       {}\nid:         {}\ntenant:     {}\ncloud:      {cloud}\nadmin:      \
         {admin} (object id {})\nscopes:     {}\nstatus:     {}\ncreated:    {}\nupdated:    \
         {}\nlast sync:  {}\n",
        connection.name.as_str(),
        connection.id,
        connection.tenant,
        connection.admin.object_id,
        connection.scopes.join(" "),
        status_text(&connection.status),
        when(connection.created_at),
        when(connection.updated_at),
        connection
            .last_synced_at
            .map_or_else(|| "never".to_owned(), when),
    )
}

fn confirm(connection: &Connection) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("refusing to remove without confirmation\nnext step: add --yes");
    }
    print!(
        "Remove {:?} (tenant {})? Its stored sign-in and sync state are deleted. [y/N] ",
        connection.name.as_str(),
        connection.tenant
    );
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
