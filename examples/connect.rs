//! Link a Microsoft 365 tenant: sign in as its admin, consent, and save the connection.
//!
//! ```text
//! cargo run --example connect -- --name "Contoso Germany" --client-id <app id>
//! cargo run --example connect -- --reconnect "Contoso Germany"
//! cargo run --example connect -- --help
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use connection_store::{ConnectionStatus, OwnerId};
use m365_link_app::connect::{
    CloudArg, DEFAULT_SIGN_IN_TIMEOUT, SignIn, check_administrator, create_connection, explain,
    find_connection, open_in_browser, reconnect_connection,
};
use m365_link_app::glue::App;
use m365_link_app::present::status_text;
use secrecy::SecretString;

/// Link a Microsoft 365 tenant: sign in as its admin in the browser (or with a device
/// code), consent to User.Read.All, Group.Read.All and offline_access, and save the
/// connection (its refresh token encrypted) in the store.
#[derive(Parser, Debug)]
#[command(version)]
#[allow(
    clippy::doc_markdown,
    reason = "doc comments are the --help text, shown verbatim"
)]
struct Args {
    /// A meaningful name for the new connection, e.g. "Contoso Germany".
    #[arg(long, required_unless_present = "reconnect")]
    name: Option<String>,

    /// Renew the connection with this name or id (e.g. when its status is "reconnect
    /// needed") instead of creating one.
    #[arg(long, value_name = "NAME|ID", conflicts_with = "name")]
    reconnect: Option<String>,

    /// The tenant to sign in to: `organizations` (any work account), a tenant id or a
    /// domain such as contoso.onmicrosoft.com.
    #[arg(long, default_value = "organizations")]
    tenant: String,

    /// The Microsoft cloud.
    #[arg(long, value_enum, default_value_t = CloudArg::Global)]
    cloud: CloudArg,

    /// Custom sign-in base URL (e.g. a tenant-sim's `login_base`); needs --graph-url.
    #[arg(long, requires = "graph_url", value_name = "URL")]
    login_url: Option<String>,

    /// Custom Graph v1.0 root (e.g. a tenant-sim's `graph_base`); needs --login-url.
    #[arg(long, requires = "login_url", value_name = "URL")]
    graph_url: Option<String>,

    /// The application (client) id of your Entra app registration.
    #[arg(long, env = "ENTRA_CLIENT_ID")]
    client_id: String,

    /// The client secret of a "Web" app registration (omit for a public client).
    #[arg(long, env = "ENTRA_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,

    /// Where connections are stored: a SQLite file, or a postgres:// URL. The key comes
    /// from M365_LINK_STORE_KEY (for a local SQLite file a key file is made if unset).
    #[arg(long, default_value = m365_link_app::store::DEFAULT_STORE)]
    store: String,

    /// The customer account the connection belongs to.
    #[arg(long, default_value = "local")]
    owner: String,

    /// Sign in on another device with a code (for machines without a browser).
    #[arg(long)]
    device_code: bool,

    /// Print the sign-in URL without opening a browser.
    #[arg(long)]
    no_browser: bool,

    /// Suggest this account on the sign-in page.
    #[arg(long, value_name = "UPN")]
    login_hint: Option<String>,

    /// Seconds to wait for the browser sign-in.
    #[arg(long, default_value_t = DEFAULT_SIGN_IN_TIMEOUT.as_secs())]
    timeout: u64,

    /// Connect even when the account that signs in is no administrator of the tenant
    /// (by default, only a Global, Privileged Role, Cloud Application or Application
    /// Administrator may connect it).
    #[arg(long)]
    allow_non_admin: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let opened = m365_link_app::store::open(&args.store)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let store = opened.store;
    let owner = OwnerId::new(args.owner.clone());
    let cloud = match (&args.login_url, &args.graph_url) {
        (Some(login), Some(graph)) => connection_store::Cloud::Custom {
            login: login.clone(),
            graph: graph.clone(),
        },
        _ => args.cloud.cloud(),
    };
    // A reconnect signs in to the connection's own tenant and cloud.
    let existing = match &args.reconnect {
        Some(which) => Some(
            find_connection(store.as_ref(), &owner, which)
                .await
                .map_err(|e| format!("{e:#}"))?,
        ),
        None => None,
    };
    let sign_in = SignIn {
        app: App {
            client_id: args.client_id.clone(),
            client_secret: args.client_secret.clone().map(SecretString::from),
        },
        cloud: existing.as_ref().map_or(cloud, |c| c.cloud.clone()),
        authority: existing
            .as_ref()
            .map_or(args.tenant.clone(), |c| c.tenant.as_str().to_owned()),
    };

    let result = if args.device_code {
        sign_in
            .device_code(|device| eprintln!("{}", device.message()))
            .await
    } else {
        let no_browser = args.no_browser;
        // A connection Microsoft challenged (continuous access evaluation) reconnects with
        // the claims it asked for.
        let claims = existing
            .as_ref()
            .and_then(|existing| match &existing.status {
                ConnectionStatus::NeedsReconnect { claims, .. } => claims.clone(),
                _ => None,
            });
        sign_in
            .browser_with_claims(
                args.login_hint.as_deref(),
                claims.as_deref(),
                Duration::from_secs(args.timeout),
                |url| {
                    if no_browser {
                        eprintln!("Open this URL in a browser to sign in:\n\n  {url}\n");
                    } else {
                        open_in_browser(url);
                    }
                },
            )
            .await
    };
    let (_client, grant) = result.map_err(|e| explain(&e, &sign_in))?;
    if !args.allow_non_admin {
        check_administrator(&sign_in, &grant)
            .await
            .map_err(|e| format!("{e:#}"))?;
    }

    let connection = if let Some(existing) = existing {
        reconnect_connection(store.as_ref(), &owner, existing.id, &grant).await
    } else {
        let Some(name) = args.name.as_deref() else {
            return Err("--name is required".to_owned());
        };
        create_connection(store.as_ref(), &owner, name, sign_in.cloud.clone(), &grant).await
    }
    .map_err(|e| format!("{e:#}"))?;

    let verb = if args.reconnect.is_some() {
        "Reconnected"
    } else {
        "Connected"
    };
    println!(
        "{verb} {:?}: tenant {}, admin {}, status {}.",
        connection.name.as_str(),
        connection.tenant,
        connection.admin.username,
        status_text(&connection.status),
    );
    println!(
        "It is listed under `cargo run --example connections -- list` (store: {}).",
        opened.description
    );
    Ok(())
}
