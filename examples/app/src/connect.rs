//! The connect flow: sign in as the tenant's admin (browser with a loopback redirect, or
//! a device code), then save the grant as a connection (new, or a reconnect).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::extract::{RawQuery, State};
use axum::response::{Html, IntoResponse};
use connection_store::{
    AdminAccount, Connection, ConnectionId, ConnectionStore, NewConnection, OwnerId, Reconnect,
    TenantId,
};
use entra_auth::secrecy::{ExposeSecret as _, SecretString};
use entra_auth::{AuthError, Authority, CallbackParams, EntraClient, Grant, Prompt};
use subtle::ConstantTimeEq as _;
use tokio::sync::mpsc;

use crate::glue::{App, describe_store_error};

/// How long the browser sign-in may take before `connect` gives up.
pub const DEFAULT_SIGN_IN_TIMEOUT: Duration = Duration::from_secs(300);

const DONE_PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>m365-link</title>\
    </head><body style=\"font-family:sans-serif;margin:3em\"><h1>Sign-in received</h1>\
    <p>You can close this tab and return to the terminal.</p></body></html>";

/// The `--cloud` option of the examples.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum CloudArg {
    /// Global (including GCC Moderate).
    Global,
    /// US Government L4 (GCC High).
    UsGovernment,
    /// US Government L5 (Department of Defense).
    UsGovernmentDod,
    /// China (21Vianet).
    China,
}

impl CloudArg {
    /// The stored cloud.
    pub fn cloud(self) -> connection_store::Cloud {
        match self {
            Self::Global => connection_store::Cloud::Global,
            Self::UsGovernment => connection_store::Cloud::UsGovernment,
            Self::UsGovernmentDod => connection_store::Cloud::UsGovernmentDod,
            Self::China => connection_store::Cloud::China,
        }
    }
}

/// A one-shot HTTP server on the loopback addresses receiving Entra's redirect.
///
/// The redirect URI is `http://localhost:{port}/`: Entra matches loopback redirect URIs
/// without their port (spec §1c), so registering `http://localhost` once covers every
/// port this picks. `localhost` may resolve to `127.0.0.1` or `::1`, so both are served
/// on the same port (`::1` where the machine has IPv6).
///
/// Only the redirect of the sign-in this command started is taken: after
/// [`expect_state`](Self::expect_state), a request whose `state` differs or is missing
/// (any local process can send one, also a forged `?error=…`) is answered 400, its text
/// is never shown, and the wait goes on. RFC 6749 §4.1.2.1 requires `state` in error
/// redirects; Microsoft's sample error redirect omits it (UNCONFIRMED whether Entra
/// ever does), so a timeout says how many such redirects were ignored.
pub struct LoopbackRedirect {
    port: u16,
    shared: Arc<Shared>,
    callbacks: mpsc::Receiver<String>,
    shutdown: tokio::sync::watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

/// What the redirect server's handler needs.
struct Shared {
    sender: mpsc::Sender<String>,
    expected: std::sync::OnceLock<SecretString>,
    ignored: std::sync::atomic::AtomicU64,
}

/// How often `start` tries another port when `::1` has the `127.0.0.1` port taken.
const BIND_ATTEMPTS: usize = 5;

impl LoopbackRedirect {
    /// Binds `127.0.0.1` and `::1` on one free port and starts serving.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start() -> anyhow::Result<Self> {
        let (listeners, port) = bind_loopback().await?;
        let (sender, callbacks) = mpsc::channel::<String>(4);
        let shared = Arc::new(Shared {
            sender,
            expected: std::sync::OnceLock::new(),
            ignored: std::sync::atomic::AtomicU64::new(0),
        });
        let (shutdown, stop) = tokio::sync::watch::channel(false);
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(Arc::clone(&shared));
        let servers = listeners
            .into_iter()
            .map(|listener| {
                let app = app.clone();
                let mut stop = stop.clone();
                tokio::spawn(async move {
                    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|stopped| *stopped).await;
                    });
                    if let Err(error) = serve.await {
                        tracing::warn!(%error, "sign-in redirect server stopped");
                    }
                })
            })
            .collect();
        Ok(Self {
            port,
            shared,
            callbacks,
            shutdown,
            servers,
        })
    }

    /// The redirect URI to give Entra.
    pub fn redirect_uri(&self) -> String {
        format!("http://localhost:{}/", self.port)
    }

    /// Takes only the redirect that carries `state` (the pending authorization's): until
    /// this is called, and for any other `state`, redirects are refused.
    ///
    /// # Errors
    /// When a state was set already (one server serves one sign-in).
    pub fn expect_state(&self, state: &SecretString) -> anyhow::Result<()> {
        self.shared
            .expected
            .set(state.clone())
            .map_err(|_| anyhow::anyhow!("the sign-in redirect server already expects a sign-in"))
    }

    /// Waits for Entra's redirect (a request carrying `code` or `error` and the expected
    /// `state`) for at most `timeout`, then stops the server. Other requests (a favicon,
    /// another process's redirect) are answered and ignored.
    ///
    /// # Errors
    /// When the time runs out.
    pub async fn wait(mut self, timeout: Duration) -> anyhow::Result<CallbackParams> {
        let received = tokio::time::timeout(timeout, self.callbacks.recv()).await;
        self.stop().await;
        match received {
            Ok(Some(query)) => Ok(CallbackParams::from_query(&query)?),
            Ok(None) => bail!("the sign-in redirect server stopped unexpectedly"),
            Err(_) => {
                let ignored = self
                    .shared
                    .ignored
                    .load(std::sync::atomic::Ordering::Relaxed);
                let ignored = if ignored == 0 {
                    String::new()
                } else {
                    format!(" ({ignored} redirect(s) without this sign-in's state were ignored)")
                };
                bail!(
                    "no sign-in arrived within {} seconds{ignored}\nnext step: run the command \
                     again and finish signing in in the browser, or use --device-code on a \
                     machine without a browser",
                    timeout.as_secs()
                )
            }
        }
    }

    async fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        // Give the browser its "you can close this tab" page before returning.
        for server in &mut self.servers {
            let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
        }
    }
}

impl Drop for LoopbackRedirect {
    fn drop(&mut self) {
        // Not waited for (the sign-in failed before the redirect): stop serving anyway.
        let _ = self.shutdown.send(true);
    }
}

/// `127.0.0.1` on a free port, and `::1` on the same port when the machine has IPv6.
async fn bind_loopback() -> anyhow::Result<(Vec<tokio::net::TcpListener>, u16)> {
    for _ in 0..BIND_ATTEMPTS {
        let v4 = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .await
            .context("could not open a local port for the sign-in redirect")?;
        let port = v4.local_addr()?.port();
        match tokio::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, port)).await {
            Ok(v6) => return Ok((vec![v4, v6], port)),
            // Someone holds this port on ::1: another port, so both addresses serve.
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {}
            // No IPv6 here: `localhost` can only be 127.0.0.1.
            Err(_) => return Ok((vec![v4], port)),
        }
    }
    bail!("could not open the same local port on 127.0.0.1 and ::1 for the sign-in redirect")
}

/// The redirect this sign-in waits for, or a refusal that shows nothing of the request.
async fn receive(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
) -> axum::response::Response {
    let query = query.unwrap_or_default();
    let keys: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if !(keys.contains_key("code") || keys.contains_key("error")) {
        return (axum::http::StatusCode::NOT_FOUND, "not found").into_response();
    }
    let ours = match (shared.expected.get(), keys.get("state")) {
        (Some(expected), Some(state)) => {
            bool::from(state.as_bytes().ct_eq(expected.expose_secret().as_bytes()))
        }
        _ => false,
    };
    if !ours {
        shared
            .ignored
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return (
            axum::http::StatusCode::BAD_REQUEST,
            "This is not the sign-in the connect command is waiting for.",
        )
            .into_response();
    }
    let _ = shared.sender.send(query).await;
    Html(DONE_PAGE).into_response()
}

/// Where to sign in: the app, the cloud, and the authority (`organizations`, a tenant id
/// or a domain).
#[derive(Clone, Debug)]
pub struct SignIn {
    /// The app registration.
    pub app: App,
    /// The cloud, as stored with the connection.
    pub cloud: connection_store::Cloud,
    /// `organizations` (any work account), a tenant id or a domain.
    pub authority: String,
}

impl SignIn {
    fn authority(&self) -> anyhow::Result<Authority> {
        Authority::parse(&self.authority).with_context(|| {
            format!(
                "{:?} is not a tenant id, domain or organizations",
                self.authority
            )
        })
    }

    /// Browser sign-in: starts the loopback server, hands the authorization URL to
    /// `open_browser` (which opens it, or in tests drives it), and waits for the redirect.
    ///
    /// # Errors
    /// [`AuthError`]s of the callback (declined, admin approval required, ...), timeouts
    /// and configuration errors; explain them with [`explain`].
    pub async fn browser<F>(
        &self,
        login_hint: Option<&str>,
        timeout: Duration,
        open_browser: F,
    ) -> anyhow::Result<(EntraClient, Grant)>
    where
        F: FnOnce(&url::Url),
    {
        self.browser_with_claims(login_hint, None, timeout, open_browser)
            .await
    }

    /// [`browser`](Self::browser) carrying a claims request: the reconnect of a
    /// connection that Microsoft challenged (continuous access evaluation) passes the
    /// claims kept with its "reconnect needed".
    ///
    /// # Errors
    /// As [`browser`](Self::browser); claims that are not a JSON object are a
    /// configuration error.
    pub async fn browser_with_claims<F>(
        &self,
        login_hint: Option<&str>,
        claims: Option<&str>,
        timeout: Duration,
        open_browser: F,
    ) -> anyhow::Result<(EntraClient, Grant)>
    where
        F: FnOnce(&url::Url),
    {
        let redirect = LoopbackRedirect::start().await?;
        let client = self
            .app
            .entra_client(&self.cloud, Some(&redirect.redirect_uri()))?;
        let mut request = client.authorization_request().authority(self.authority()?);
        if let Some(claims) = claims {
            request = request.claims(claims);
        }
        // With a hint the account is chosen already; without one the admin picks it
        // (Entra refuses `login_hint` together with `prompt=select_account`).
        let request = match login_hint {
            Some(hint) => request.login_hint(hint),
            None => request.prompt(Prompt::SelectAccount),
        };
        let (url, pending) = request.build()?.into_parts();
        redirect.expect_state(pending.state())?;
        open_browser(&url);
        let callback = redirect.wait(timeout).await?;
        let grant = client.complete_authorization(&pending, &callback).await?;
        Ok((client, grant))
    }

    /// Device-code sign-in: shows the code through `show` and polls until the admin
    /// signs in elsewhere, declines, the code expires, or Ctrl-C.
    ///
    /// # Errors
    /// The device-code errors of [`AuthError`].
    pub async fn device_code<F>(&self, show: F) -> anyhow::Result<(EntraClient, Grant)>
    where
        F: FnOnce(&entra_auth::DeviceAuthorization),
    {
        let client = self.app.entra_client(&self.cloud, None)?;
        let device = client.start_device_code(&self.authority()?).await?;
        show(&device);
        let cancel = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let grant = client.poll_device_code_until(&device, cancel).await?;
        Ok((client, grant))
    }
}

/// Opens `url` in the system browser and prints it, for when no browser opens.
pub fn open_in_browser(url: &url::Url) {
    eprintln!("Opening your browser to sign in. If it does not open, visit:\n\n  {url}\n");
    if let Err(error) = webbrowser::open(url.as_str()) {
        eprintln!("(could not open a browser: {error})");
    }
}

impl SignIn {
    /// Signing in to an in-process tenant-sim as its app registration, through the
    /// `organizations` authority, as the demo and the end-to-end tests do.
    pub fn simulated(sim: &tenant_sim::TenantSim) -> Self {
        Self {
            app: App {
                client_id: sim.client_id().to_owned(),
                client_secret: Some(sim.client_secret().clone()),
            },
            cloud: connection_store::Cloud::Custom {
                login: sim.login_base().to_owned(),
                graph: sim.graph_base().to_owned(),
            },
            authority: "organizations".to_owned(),
        }
    }
}

/// Plays the browser against a simulator that consents by itself (tenant-sim's
/// `AutoConsent`): follows the authorization URL and its redirect to the loopback server.
/// For the demo and tests; a person uses [`open_in_browser`].
pub fn simulated_browser(url: &url::Url) {
    let url = url.clone();
    tokio::spawn(async move {
        if let Err(error) = reqwest::get(url).await {
            tracing::warn!(%error, "simulated browser could not finish the sign-in");
        }
    });
}

/// Links the tenant of `admin` (a user principal name) on a simulator that consents by
/// itself, for `owner`: the admin signs in through `sign_in` with a `login_hint` (which
/// tells a multi-tenant simulator's `organizations` authority the tenant), and the
/// connection is stored as `name`. For the demo, the fleet benchmark and tests.
///
/// # Errors
/// A failed sign-in, or the store refusing the connection (name taken, tenant linked).
pub async fn link_simulated(
    sign_in: &SignIn,
    store: &dyn ConnectionStore,
    owner: &OwnerId,
    admin: &str,
    name: &str,
) -> anyhow::Result<Connection> {
    let (_client, grant) = sign_in
        .browser(Some(admin), Duration::from_secs(30), simulated_browser)
        .await
        .with_context(|| format!("the simulated sign-in of {admin} failed"))?;
    create_connection(store, owner, name, sign_in.cloud.clone(), &grant).await
}

/// The connection fields a grant gives: tenant, admin, scopes.
pub(crate) fn admin_of(grant: &Grant) -> AdminAccount {
    let identity = grant.identity();
    AdminAccount {
        object_id: identity.object_id.as_str().to_owned(),
        username: identity
            .preferred_username
            .clone()
            .unwrap_or_else(|| identity.object_id.as_str().to_owned()),
        display_name: identity.name.clone(),
    }
}

/// Saves a fresh grant as a new connection named `name`.
///
/// # Errors
/// Store errors in plain words (name taken, tenant already linked, ...).
pub async fn create_connection(
    store: &dyn ConnectionStore,
    owner: &OwnerId,
    name: &str,
    cloud: connection_store::Cloud,
    grant: &Grant,
) -> anyhow::Result<Connection> {
    store
        .create(owner, new_connection(name, cloud, grant))
        .await
        .map_err(describe_store_error)
}

/// The new connection a fresh grant makes: its tenant, admin, scopes and refresh token.
pub fn new_connection(name: &str, cloud: connection_store::Cloud, grant: &Grant) -> NewConnection {
    NewConnection {
        name: name.to_owned(),
        tenant: TenantId::new(grant.tenant_id().as_str()),
        cloud,
        admin: admin_of(grant),
        scopes: grant.scopes().to_vec(),
        refresh_token: grant.refresh_token().clone(),
    }
}

/// Whether `grant` signed in to `connection`'s tenant (a reconnect must).
pub(crate) fn same_tenant(connection: &Connection, grant: &Grant) -> bool {
    connection.tenant.as_str() == TenantId::new(grant.tenant_id().as_str()).as_str()
}

/// The reconnect a new grant makes for `connection` (check [`same_tenant`] first).
pub(crate) fn reconnect_of(connection: &Connection, grant: &Grant) -> Reconnect {
    Reconnect {
        tenant: connection.tenant.clone(),
        admin: admin_of(grant),
        scopes: grant.scopes().to_vec(),
        refresh_token: grant.refresh_token().clone(),
    }
}

/// Saves a new grant for an existing connection (status back to active).
///
/// # Errors
/// When the grant is for another tenant than the connection's, and store errors.
pub async fn reconnect_connection(
    store: &dyn ConnectionStore,
    owner: &OwnerId,
    id: ConnectionId,
    grant: &Grant,
) -> anyhow::Result<Connection> {
    let connection = store.get(owner, id).await.map_err(describe_store_error)?;
    if !same_tenant(&connection, grant) {
        bail!(
            "you signed in to tenant {}, but connection {:?} is for tenant {}\nnext step: sign \
             in with an admin account of tenant {} (use --tenant {})",
            grant.tenant_id(),
            connection.name.as_str(),
            connection.tenant,
            connection.tenant,
            connection.tenant,
        );
    }
    let (connection, _version) = store
        .reconnect(owner, id, reconnect_of(&connection, grant))
        .await
        .map_err(describe_store_error)?;
    Ok(connection)
}

/// Finds a connection of `owner` by id or by name (ignoring case, as names are unique).
///
/// # Errors
/// When there is none, in plain words.
pub async fn find_connection(
    store: &dyn ConnectionStore,
    owner: &OwnerId,
    name_or_id: &str,
) -> anyhow::Result<Connection> {
    if let Ok(id) = name_or_id.parse::<ConnectionId>() {
        return store.get(owner, id).await.map_err(describe_store_error);
    }
    let wanted = name_or_id.trim().to_lowercase();
    let all = store.list(owner).await.map_err(describe_store_error)?;
    all.into_iter()
        .find(|c| c.name.folded() == wanted)
        .with_context(|| {
            format!(
                "no connection named {name_or_id:?} for owner {owner}\nnext step: run \
                 `cargo run --example connections -- list` to see the names"
            )
        })
}

/// The administrator check of a connect ([`crate::admin`]): `Ok` when the person who
/// signed in for `grant` holds a role that can consent for the tenant; otherwise an
/// error in plain words with the admin-consent link to forward.
///
/// # Errors
/// When they are no administrator, or Graph could not tell.
pub async fn check_administrator(sign_in: &SignIn, grant: &Grant) -> anyhow::Result<()> {
    match crate::admin::require_administrator(&sign_in.cloud, grant).await {
        Ok(role) => {
            tracing::debug!(role, "the signed-in account may consent for the tenant");
            Ok(())
        }
        Err(crate::admin::AdminCheckError::NotAnAdministrator(refused)) => {
            let mut text = format!(
                "{refused}.\nnext step: sign in with an administrator account, or forward this \
                 link to your IT admin"
            );
            let authority = Authority::tenant(grant.tenant_id());
            if let Ok(client) = sign_in.app.entra_client(&sign_in.cloud, None) {
                let _ = write!(text, ":\n\n  {}", client.admin_consent_link(&authority));
            }
            bail!(text)
        }
        Err(error) => Err(anyhow::Error::new(error)),
    }
}

/// A sign-in error in plain words, with the next step (and the admin-consent link when
/// an admin must approve).
pub fn explain(error: &anyhow::Error, sign_in: &SignIn) -> String {
    let Some(auth) = error.downcast_ref::<AuthError>() else {
        return format!("{error:#}");
    };
    let link = |sign_in: &SignIn| -> Option<String> {
        let client = sign_in.app.entra_client(&sign_in.cloud, None).ok()?;
        let authority = sign_in.authority().ok()?;
        Some(client.admin_consent_link(&authority).to_string())
    };
    match auth {
        AuthError::AdminApprovalRequired {
            admin_consent_url, ..
        } => {
            // The error's link names this run's loopback redirect, which is gone once
            // connect exits; the forwarded link leaves it out so Entra uses a registered
            // one (spec §1b).
            let forward = link(sign_in).unwrap_or_else(|| admin_consent_url.to_string());
            format!(
                "The account you signed in with may not approve these permissions: only an \
                 administrator of the Microsoft 365 tenant can.\nnext step: sign in with an \
                 admin account, or forward this link to your IT admin, then run connect \
                 again:\n\n  {forward}"
            )
        }
        AuthError::MissingScopes { missing, .. } => {
            let mut text = format!(
                "Microsoft did not grant all the permissions the sync needs (missing: {}).\n\
                 next step: an administrator approves them for the organization",
                missing.join(", ")
            );
            if let Some(link) = link(sign_in) {
                let _ = write!(text, " with this link, then run connect again:\n\n  {link}");
            }
            text
        }
        AuthError::AuthorizationDeclined(_) | AuthError::DeviceCodeDeclined(_) => {
            "The sign-in was cancelled or the permissions were declined.\nnext step: run connect \
             again and accept the permissions (User.Read.All, Group.Read.All, offline_access)"
                .to_owned()
        }
        AuthError::DeviceCodeExpired(_) | AuthError::AuthorizationExpired => {
            "The sign-in took too long and expired.\nnext step: run connect again".to_owned()
        }
        AuthError::Cancelled => "Sign-in cancelled.".to_owned(),
        AuthError::StateMismatch => "The sign-in answer did not match this request (another \
             browser tab?).\nnext step: run connect again and use the tab it opens"
            .to_owned(),
        _ if auth.is_configuration() => format!(
            "Microsoft rejected the app's configuration: {auth}\nnext step: check the app \
             registration (client id, secret, redirect URI http://localhost, public client \
             flows for --device-code) and --cloud"
        ),
        _ if auth.is_retryable() => format!(
            "Microsoft's sign-in service could not be reached or is busy: {auth}\nnext step: \
             try again in a minute"
        ),
        _ => format!("Sign-in failed: {auth}"),
    }
}
