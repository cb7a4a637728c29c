//! The web example's application: the product flow of the help article ("Integrations" →
//! "Microsoft 365 – User Sync" → "Create a new connection" → sign in and consent →
//! "Linked Microsoft 365 accounts" → "Manage"), server-rendered with axum and maud.
//!
//! It composes the crates only through their public APIs and the glue in [`crate::glue`];
//! `examples/web.rs` runs it, and the tests in `tests/web_*.rs` drive it through
//! [`serve`].
//!
//! - [`accounts`]: the service's own customers (the store's owners).
//! - [`session`]: signed session cookies, sessions in the database, CSRF.
//! - `routes` and `pages`: the handlers and their templates.
//! - [`jobs`] and [`scheduler`]: "Sync now" in the background, and the interval sync,
//!   each a sync of the connection into the directory mirror ([`crate::mirror`]) under
//!   its sync lease.
//! - `scope` and [`employees`]: which users are imported, and the employees table, as
//!   queries of the mirror.
//!
//! The app's state lives in the database it is given ([`crate::store::OpenedStore`]: the
//! connections, their mirrors and the browser sessions), except each connection's sync
//! scope, a small file in [`Config::data_dir`], and the sign-in rate limits, kept per
//! instance ([`accounts::SignInLimiter`]). Instances sharing one database, one data folder
//! and one [`Config::cookie_key`] agree on everything: a browser signed in on one is
//! signed in on all.

pub mod accounts;
pub mod employees;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod jobs;
mod pages;
mod routes;
pub mod scheduler;
mod scope;
pub mod session;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum_extra::extract::cookie::Key;
use connection_store::{ConnectionId, ConnectionStore, OwnerId};
use connection_store_sql::SqlStore;
use entra_auth::EntraClient;

use crate::connect::SignIn;
use crate::glue::Linked;
use crate::mirror::Mirror;
use crate::store::OpenedStore;

/// The path Entra redirects back to after the sign-in (register
/// `http://localhost/integrations/microsoft-365/callback` for local runs: Entra ignores
/// the port of loopback redirect URIs).
pub const CALLBACK_PATH: &str = "/integrations/microsoft-365/callback";

/// The default interval of the scheduled sync.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// How the app runs.
#[derive(Clone)]
pub struct Config {
    /// The app registration, cloud and sign-in authority.
    pub sign_in: SignIn,
    /// Where each connection's sync scope is kept (`connections/<id>/scope.json`).
    pub data_dir: PathBuf,
    /// The customer accounts that may sign in.
    pub customers: Vec<accounts::Customer>,
    /// Sync every connection this often; `None` turns the scheduler off.
    pub sync_interval: Option<Duration>,
    /// Signs the session cookie and seals the pending sign-ins in the session rows; every
    /// instance sharing the database needs the same key.
    pub cookie_key: Key,
    /// Mark cookies `Secure` (when served over HTTPS).
    pub secure_cookies: bool,
    /// The URL the browser uses to reach the app, without a trailing slash; `None` =
    /// `http://localhost:<port>`.
    pub public_url: Option<String>,
    /// Let people who are no administrator of their tenant connect it (off: only a
    /// Global, Privileged Role, Cloud Application or Application Administrator may,
    /// checked through Graph after the sign-in; see [`crate::admin`]).
    pub allow_non_admin: bool,
}

impl Config {
    /// The session cookie's name under this configuration: `__Host-m365link_session`
    /// with [`Config::secure_cookies`], `m365link_session` without (plain HTTP).
    pub fn session_cookie(&self) -> &'static str {
        session::cookie_name(self.secure_cookies)
    }

    /// The demo customers, a random cookie key, no scheduler, plain HTTP on localhost.
    pub fn new(sign_in: SignIn, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            sign_in,
            data_dir: data_dir.into(),
            customers: accounts::Customer::demo(),
            sync_interval: None,
            cookie_key: Key::generate(),
            secure_cookies: false,
            public_url: None,
            allow_non_admin: false,
        }
    }
}

/// A new support reference: 12 random hex digits, shown to the customer with a fixed
/// sentence and logged with the details of what failed (`reference` field).
pub(crate) fn support_reference() -> String {
    let mut reference = uuid::Uuid::new_v4().simple().to_string();
    reference.truncate(12);
    reference
}

/// Where connection `id`'s sync scope lives.
pub fn connection_dir(data_dir: &Path, id: ConnectionId) -> PathBuf {
    data_dir.join("connections").join(id.to_string())
}

struct Inner {
    config: Config,
    store: Arc<dyn ConnectionStore>,
    sql: SqlStore,
    mirror: Mirror,
    entra: EntraClient,
    sessions: session::Sessions,
    sign_in_limiter: accounts::SignInLimiter,
    jobs: jobs::Jobs,
    /// The `Content-Security-Policy` of every response, built once from the cloud.
    content_security_policy: axum::http::HeaderValue,
    /// One cell per connection: the first caller opens it, concurrent first callers wait
    /// for that one (single flight), so one token session serves them all.
    linked: std::sync::Mutex<
        std::collections::HashMap<ConnectionId, Arc<tokio::sync::OnceCell<Linked>>>,
    >,
}

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl AppState {
    /// The state for an app reachable at `base_url` (no trailing slash), over `opened`:
    /// its connection store (`opened.store`, which may wrap `opened.sql`), and the SQL
    /// store and mirror the syncs write (`opened.sql`, `opened.mirror`, one database).
    ///
    /// # Errors
    /// When the app registration or cloud settings are invalid.
    pub fn new(config: Config, opened: &OpenedStore, base_url: &str) -> anyhow::Result<Self> {
        let base_url = base_url.trim_end_matches('/');
        let redirect_uri = format!("{base_url}{CALLBACK_PATH}");
        let entra = config
            .sign_in
            .app
            .entra_client(&config.sign_in.cloud, Some(&redirect_uri))?;
        let content_security_policy = routes::content_security_policy(entra.cloud())?;
        Ok(Self {
            inner: Arc::new(Inner {
                sessions: session::Sessions::new(&config.cookie_key),
                sign_in_limiter: accounts::SignInLimiter::default(),
                config,
                store: Arc::clone(&opened.store),
                sql: opened.sql.clone(),
                mirror: opened.mirror.clone(),
                entra,
                jobs: jobs::Jobs::default(),
                content_security_policy,
                linked: std::sync::Mutex::default(),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The connection store.
    pub fn store(&self) -> Arc<dyn ConnectionStore> {
        self.inner.store.clone()
    }

    /// The Entra client redirecting to this app's callback.
    pub fn entra(&self) -> &EntraClient {
        &self.inner.entra
    }

    /// The `Content-Security-Policy` every response carries.
    pub(crate) fn content_security_policy(&self) -> &axum::http::HeaderValue {
        &self.inner.content_security_policy
    }

    /// The pending sign-ins of the browser sessions.
    pub(crate) fn sessions(&self) -> &session::Sessions {
        &self.inner.sessions
    }

    /// This instance's sign-in rate limits.
    pub(crate) fn sign_in_limiter(&self) -> &accounts::SignInLimiter {
        &self.inner.sign_in_limiter
    }

    /// The sync jobs of this process.
    pub fn jobs(&self) -> &jobs::Jobs {
        &self.inner.jobs
    }

    /// The SQL store the mirror's sinks seal their links with and are fenced by.
    pub fn sql(&self) -> &SqlStore {
        &self.inner.sql
    }

    /// The directory mirror: every connection's users, groups and memberships.
    pub fn mirror(&self) -> &Mirror {
        &self.inner.mirror
    }

    /// Where connection `id`'s sync scope lives.
    pub fn connection_dir(&self, id: ConnectionId) -> PathBuf {
        connection_dir(&self.inner.config.data_dir, id)
    }

    /// Forgets connection `id` after it was removed from the store (which took its
    /// mirror rows with it): its job state, its token session, and its folder (the sync
    /// scope). A folder that cannot be deleted is logged.
    pub async fn forget_connection(&self, id: ConnectionId) {
        self.jobs().forget(id);
        self.forget_linked(id);
        let dir = self.connection_dir(id);
        let removed = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err((dir, error)),
            _ => Ok(()),
        })
        .await;
        match removed {
            Ok(Ok(())) => {}
            Ok(Err((dir, error))) => {
                tracing::warn!(%error, folder = %dir.display(), "could not delete a removed connection's files");
            }
            Err(error) => tracing::warn!(%error, "could not delete a removed connection's files"),
        }
    }

    /// Connection `id` of `owner` opened for Graph calls, kept between requests so that
    /// its token session (and its cached access token) serves every sync and photo
    /// instead of redeeming the refresh token each time.
    ///
    /// # Errors
    /// When the connection is not `owner`'s, or the app settings are invalid.
    ///
    /// Single flight per connection: however many requests use a connection for the first
    /// time at once (a page of photo thumbnails), it is opened once, and they share its
    /// one token session (STYLE, Async: check, take the lock, check again).
    pub async fn linked(&self, owner: &OwnerId, id: ConnectionId) -> anyhow::Result<Linked> {
        let cell = Arc::clone(self.linked_map().entry(id).or_default());
        let linked = cell
            .get_or_try_init(|| Linked::open(self.store(), owner, id, &self.config().sign_in.app))
            .await?;
        if &linked.connection.owner == owner {
            Ok(linked.clone())
        } else {
            // Opened for its owner: another customer gets the store's NotFound, uncached.
            Linked::open(self.store(), owner, id, &self.config().sign_in.app).await
        }
    }

    /// Drops connection `id`'s open session (after a reconnect or removal).
    pub fn forget_linked(&self, id: ConnectionId) {
        self.linked_map().remove(&id);
    }

    fn linked_map(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::HashMap<ConnectionId, Arc<tokio::sync::OnceCell<Linked>>>,
    > {
        self.inner
            .linked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running app.
pub struct Running {
    url: String,
    state: AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
    scheduler: Option<tokio::task::JoinHandle<()>>,
    stop_scheduler: tokio::sync::watch::Sender<bool>,
    housekeeping: tokio::task::JoinHandle<()>,
}

/// How long a shutdown waits for running syncs.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

impl Running {
    /// The URL to open, e.g. `http://localhost:8080`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The app's state (tests look at jobs and sessions through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops serving (requests under way finish), stops the scheduler (its running syncs
    /// get half of [`SHUTDOWN_GRACE`] to finish, the leases of the rest are freed), and
    /// waits up to [`SHUTDOWN_GRACE`] for running "Sync now" jobs.
    pub async fn shutdown(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let _ = self.stop_scheduler.send(true);
        let _ = (&mut self.server).await;
        self.housekeeping.abort();
        if let Some(mut scheduler) = self.scheduler.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut scheduler)
                .await
                .is_err()
        {
            scheduler.abort();
        }
        self.state.jobs().drain(SHUTDOWN_GRACE).await;
    }

    /// Waits until the server stops by itself (it failed); see [`Running::shutdown`].
    pub async fn wait_stopped(&mut self) {
        let _ = (&mut self.server).await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.housekeeping.abort();
        if let Some(scheduler) = self.scheduler.take() {
            scheduler.abort();
        }
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Serves the app on `listener` over `opened` (see [`AppState::new`]), with the browser
/// sessions in `opened`'s database (table [`session::TABLE`], created if missing), and
/// starts the scheduler when configured.
///
/// # Errors
/// When the listener has no address, the app settings are invalid, or the sessions table
/// cannot be created.
pub async fn serve(
    config: Config,
    opened: &OpenedStore,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<Running> {
    let port = listener
        .local_addr()
        .context("the listener has no address")?
        .port();
    let url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://localhost:{port}"));
    let interval = config.sync_interval;
    let state = AppState::new(config, opened, &url)?;
    std::fs::create_dir_all(state.config().data_dir.join("connections")).with_context(|| {
        format!(
            "could not create the data folder {}",
            state.config().data_dir.display()
        )
    })?;
    let sessions = session::Store::open(opened.sql.pool()).await?;
    let session_layer = sessions.layer(
        state.config().cookie_key.clone(),
        state.config().secure_cookies,
    );
    let app = routes::router(state.clone(), session_layer)
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let housekeeping = tokio::spawn(housekeeping(state.clone(), sessions));
    let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stop.await;
        });
        if let Err(error) = serve.await {
            tracing::warn!(%error, "the web server stopped");
        }
    });
    let (stop_scheduler, stop) = tokio::sync::watch::channel(false);
    let scheduler = interval.map(|every| scheduler::spawn(state.clone(), every, stop));
    Ok(Running {
        url: url.trim_end_matches('/').to_owned(),
        state,
        shutdown: Some(shutdown),
        server,
        scheduler,
        stop_scheduler,
        housekeeping,
    })
}

/// Every [`session::DELETE_EXPIRED_EVERY`]: deletes the expired sessions (shared by the
/// instances; any of them may do it) and forgets this instance's idle rate-limit counters.
async fn housekeeping(state: AppState, sessions: session::Store) {
    session::delete_expired_every(sessions, session::DELETE_EXPIRED_EVERY, || {
        state.sign_in_limiter().forget_idle();
    })
    .await;
}
