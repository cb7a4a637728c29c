//! The product flow in a browser: a small web app where a customer links Microsoft 365
//! tenants ("Integrations" → "Microsoft 365 – User Sync" → "Create a new connection"),
//! manages them, and sees the imported employees.
//!
//! ```text
//! cargo run --example web                      # against a simulated tenant, in process
//! cargo run --example web -- --client-id <id>  # against Microsoft Entra (see the README)
//! cargo run --example web -- --help
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use axum_extra::extract::cookie::Key;
use base64::Engine as _;
use clap::Parser;
use m365_link_app::connect::{CloudArg, SignIn};
use m365_link_app::glue::App;
use m365_link_app::web;
use m365_link_app::web::accounts::{Customer, DEMO_CUSTOMERS};
use secrecy::SecretString;

/// A web app showing the whole flow: sign in as a customer of the service, link a
/// Microsoft 365 tenant (sign in as its admin and consent), manage the connection,
/// sync its users and see the imported employees.
///
/// Without --client-id it runs against a simulated tenant started in process (with
/// Microsoft-like sign-in and consent pages), with a fresh temporary store.
// No `Debug`: the arguments hold the client secret and the cookie key.
#[derive(Parser)]
#[command(version)]
#[allow(
    clippy::doc_markdown,
    reason = "doc comments are the --help text, shown verbatim"
)]
struct Args {
    /// The port to serve on (localhost).
    #[arg(long, default_value_t = 8080)]
    port: u16,

    /// The application (client) id of your Entra app registration; without it, a
    /// simulated tenant is used. Register the redirect URI
    /// http://localhost/integrations/microsoft-365/callback (Web platform).
    #[arg(long, env = "ENTRA_CLIENT_ID")]
    client_id: Option<String>,

    /// The client secret of the app registration.
    #[arg(long, env = "ENTRA_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,

    /// Who may sign in to connect a tenant: `organizations` (any work account), a
    /// tenant id or a domain.
    #[arg(long, default_value = "organizations")]
    tenant: String,

    /// The Microsoft cloud.
    #[arg(long, value_enum, default_value_t = CloudArg::Global)]
    cloud: CloudArg,

    /// Where connections and their imported directories (the mirror) are stored: a
    /// SQLite file or a postgres:// URL (key from M365_LINK_STORE_KEY). Default:
    /// m365-link.sqlite, or a temporary file with the simulated tenant.
    #[arg(long)]
    store: Option<String>,

    /// Where each connection's sync scope is kept. Default: m365-link-web/, or a
    /// temporary folder with the simulated tenant.
    #[arg(long)]
    data_dir: Option<PathBuf>,

    /// A customer account that may sign in, as email:password (repeat for more; a
    /// password given here is visible in the process list: this is a demo sign-in; it
    /// is kept as an Argon2id hash).
    /// Default: the two demo customers printed at start.
    #[arg(long = "customer", value_name = "EMAIL:PASSWORD", value_parser = Customer::parse)]
    customers: Vec<Customer>,

    /// Sync every connection this often, in minutes (0 turns the scheduled sync off).
    #[arg(
        long,
        default_value_t = web::DEFAULT_SYNC_INTERVAL.as_secs() / 60,
        value_parser = clap::value_parser!(u64).range(0..=525_600)
    )]
    sync_every_minutes: u64,

    /// The key signing session cookies (and sealing the pending Microsoft sign-ins kept in
    /// the sessions, which live in the store's database): base64 of at least 64 bytes.
    /// Instances sharing the store need the same key to share the sessions. Default: a
    /// random key (everyone is signed out when the app restarts).
    #[arg(long, env = "M365_LINK_COOKIE_KEY", hide_env_values = true)]
    cookie_key: Option<String>,

    /// The URL browsers use to reach the app, when it runs behind a proxy (https://...
    /// marks cookies Secure). Default: http://localhost:<port>.
    #[arg(long)]
    public_url: Option<String>,

    /// Let people who are no administrator of their Microsoft 365 tenant connect it (by
    /// default only a Global, Privileged Role, Cloud Application or Application
    /// Administrator may).
    #[arg(long)]
    allow_non_admin: bool,

    /// Users in the simulated tenant.
    #[arg(long, default_value_t = 60)]
    sim_users: usize,
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
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn cookie_key(encoded: Option<&str>) -> anyhow::Result<Key> {
    let Some(encoded) = encoded else {
        return Ok(Key::generate());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .context("M365_LINK_COOKIE_KEY is not base64")?;
    Key::try_from(bytes.as_slice())
        .map_err(|_| anyhow::anyhow!("M365_LINK_COOKIE_KEY must be at least 64 bytes"))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("could not listen on port {} (try --port)", args.port))?;

    // The tenant: Microsoft Entra, or a simulated one kept alive while the app runs.
    let (sign_in, sim, default_store, default_data) = if let Some(client_id) = &args.client_id {
        let cloud = args.cloud.cloud();
        let sign_in = SignIn {
            app: App {
                client_id: client_id.clone(),
                client_secret: args.client_secret.clone().map(SecretString::from),
            },
            cloud,
            authority: args.tenant.clone(),
        };
        let store = m365_link_app::store::DEFAULT_STORE.to_owned();
        (sign_in, None, store, PathBuf::from("m365-link-web"))
    } else {
        let sim = tenant_sim::TenantSim::builder()
            .users(args.sim_users)
            .groups(8)
            .consent_mode(tenant_sim::ConsentMode::Interactive)
            .start()
            .await
            .context("could not start the simulated tenant")?;
        let scratch = std::env::temp_dir().join(format!("m365-link-web-{}", std::process::id()));
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("could not create {}", scratch.display()))?;
        let store = scratch.join("store.sqlite").display().to_string();
        (
            SignIn::simulated(&sim),
            Some(sim),
            store,
            scratch.join("data"),
        )
    };

    let store_location = args.store.clone().unwrap_or(default_store);
    let opened = m365_link_app::store::open(&store_location).await?;
    let mut config = web::Config::new(sign_in, args.data_dir.clone().unwrap_or(default_data));
    if !args.customers.is_empty() {
        config.customers.clone_from(&args.customers);
    }
    config.sync_interval =
        (args.sync_every_minutes > 0).then(|| Duration::from_secs(args.sync_every_minutes * 60));
    config.cookie_key = cookie_key(args.cookie_key.as_deref())?;
    config.secure_cookies = args
        .public_url
        .as_deref()
        .is_some_and(|url| url.starts_with("https://"));
    config.public_url.clone_from(&args.public_url);
    config.allow_non_admin = args.allow_non_admin;
    let data_dir = config.data_dir.clone();

    let mut running = web::serve(config, &opened, listener).await?;

    println!("m365-link web example");
    match &sim {
        Some(sim) => println!(
            "  tenant:     simulated ({}, admin {}), in process",
            sim.tenant_domain(),
            sim.admin_upn()
        ),
        None => println!("  tenant:     Microsoft Entra ({})", args.tenant),
    }
    println!("  store:      {}", opened.description);
    println!("  scopes:     {}", data_dir.display());
    if args.customers.is_empty() {
        for (email, password) in DEMO_CUSTOMERS {
            println!("  customer:   {email} / {password}");
        }
    }
    println!("\nOpen {}/ in your browser. Ctrl-C stops.", running.url());

    let stopped_by_itself = tokio::select! {
        () = running.wait_stopped() => true,
        _ = tokio::signal::ctrl_c() => false,
    };
    if !stopped_by_itself {
        eprintln!("stopping…");
        running.shutdown().await;
    }
    if sim.is_some() && args.store.is_none() && args.data_dir.is_none() {
        // The simulated tenant's store, mirror and scopes are of no use once it is gone.
        opened.mirror.close().await;
        if let Some(scratch) = data_dir.parent() {
            let _ = std::fs::remove_dir_all(scratch);
        }
    }
    Ok(())
}
