//! One sync of one stored connection: the engine of `graph_client::sync` into a
//! directory sink, under the connection's sync lease.
//!
//! [`run`] checks the connection's status (a "reconnect needed" connection stops with
//! [`SyncStop::NeedsReconnect`]), takes its sync lease (renewed every third of its
//! time-to-live while the sync runs, so two replicas never sync one tenant at once),
//! runs [`graph_client::sync::run`] into the sink (a full import the first time, delta
//! afterwards, a resync when Microsoft expired the links), records the sync time (or the
//! failure, for the backoff) while still holding the lease, and frees it. The sink
//! commits the changes with their delta links in one transaction; give the SQL mirror's
//! sink the lease holder
//! ([`MirrorSink::with_fence`](crate::mirror::MirrorSink::with_fence)) and that commit
//! is fenced too: a sync whose lease was taken over writes nothing.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use connection_store::{
    Backoff, ConnectionId, ConnectionStatus, ConnectionStore, LeaseHolder, OwnerId, StoreError,
};
use graph_client::sync::{
    DirectorySink, SinkErrorKind, SyncError, SyncOptions, SyncProgress, SyncReport,
};
use graph_client::{GraphClient, GraphError};

/// The default time-to-live of the sync lease; it is renewed every third of it.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(60);

/// Which connection to sync, in which store.
#[derive(Clone)]
pub struct Target {
    /// The store holding the connection and its lease.
    pub store: Arc<dyn ConnectionStore>,
    /// The customer account the connection belongs to.
    pub owner: OwnerId,
    /// The connection.
    pub id: ConnectionId,
}

/// How to sync.
#[derive(Clone, Debug)]
pub struct Options {
    /// What the engine reads (user properties, concurrency, a forced full import).
    pub engine: SyncOptions,
    /// The sync lease's time-to-live.
    pub lease_ttl: Duration,
    /// Who holds the lease while this sync runs.
    pub holder: LeaseHolder,
}

impl Options {
    /// The engine's defaults, a 60 s lease held by this process.
    ///
    /// # Errors
    /// Never in practice: the generated lease holder name is short and valid.
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            engine: SyncOptions::new(),
            lease_ttl: DEFAULT_LEASE_TTL,
            holder: default_holder()?,
        })
    }
}

/// `sync-<host>-<pid>-<random>`: unique per run, readable in the store.
///
/// # Errors
/// When the name is rejected by the store's rules (it is short, so never).
pub fn default_holder() -> anyhow::Result<LeaseHolder> {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".to_owned());
    let host: String = host.chars().take(60).collect();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    Ok(LeaseHolder::new(format!(
        "sync-{host}-{}-{}",
        std::process::id(),
        &suffix[..8]
    ))?)
}

/// Why a sync did not run, for callers that act on it (exit codes, messages).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncStop {
    /// Microsoft refused the saved sign-in: an admin has to reconnect.
    NeedsReconnect {
        /// Why, secret-free.
        reason: String,
    },
    /// The connection is turned off.
    Disabled,
    /// Another process holds the connection's sync lease.
    LeaseHeld,
    /// The lease was taken over while syncing, or ran out without a renewal; nothing was
    /// written.
    LeaseLost,
}

impl std::fmt::Display for SyncStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NeedsReconnect { reason } => write!(
                f,
                "the connection needs a reconnect ({reason})\nnext step: run `cargo run \
                 --example connect -- --reconnect <name>` and sign in as an admin again"
            ),
            Self::Disabled => write!(f, "the connection is disabled; nothing was synced"),
            Self::LeaseHeld => write!(
                f,
                "another sync of this connection is running (it holds the sync lease)\n\
                 next step: wait for it to finish, or try again when its lease expires"
            ),
            Self::LeaseLost => write!(
                f,
                "another process took over this connection's sync lease, or it ran out \
                 without a renewal; nothing was written\nnext step: run the sync again"
            ),
        }
    }
}

impl std::error::Error for SyncStop {}

/// Runs one sync of `target` through `graph` into `sink`.
///
/// # Errors
/// A [`SyncStop`] (downcast it) when the connection needs a reconnect, is disabled, or
/// its lease is held or lost; otherwise the engine's [`SyncError`] or a store error,
/// with context. In every error case the sink's last commit stands as it was.
pub async fn run(
    graph: &GraphClient,
    target: &Target,
    sink: &mut dyn DirectorySink,
    options: &Options,
    progress: &dyn SyncProgress,
) -> anyhow::Result<SyncReport> {
    let store = target.store.as_ref();
    let connection = store
        .get(&target.owner, target.id)
        .await
        .map_err(crate::glue::describe_store_error)?;
    match connection.status {
        ConnectionStatus::NeedsReconnect { reason, .. } => {
            return Err(SyncStop::NeedsReconnect { reason }.into());
        }
        ConnectionStatus::Disabled => return Err(SyncStop::Disabled.into()),
        _ => {}
    }
    let Some(_lease) = store
        .acquire_lease(&target.owner, target.id, &options.holder, options.lease_ttl)
        .await
        .context("could not take the connection's sync lease")?
    else {
        return Err(SyncStop::LeaseHeld.into());
    };
    run_leased(graph, target, sink, options, progress).await
}

/// [`run`] for a connection whose sync lease `options.holder` holds already (a worker
/// claimed it with `ConnectionStore::claim_due`, which also checked its status): renews
/// the lease while the engine runs, records the sync time or the failure under it, and
/// frees it.
///
/// # Errors
/// As [`run`], but never [`SyncStop::LeaseHeld`] or [`SyncStop::Disabled`].
pub async fn run_leased(
    graph: &GraphClient,
    target: &Target,
    sink: &mut dyn DirectorySink,
    options: &Options,
    progress: &dyn SyncProgress,
) -> anyhow::Result<SyncReport> {
    let store = target.store.as_ref();
    let result = tokio::select! {
        synced = graph_client::sync::run(graph, sink, &options.engine, progress) => {
            synced.map_err(Failure::Engine)
        }
        lost = keep_lease(target, options) => Err(Failure::Lease(lost)),
    };
    // Record the outcome while the lease is still held (the writes are fenced by it),
    // then free the lease whatever happened; a failure to free it only delays the next
    // sync until it expires.
    let outcome = match result {
        Ok(report) => store
            .record_sync(
                &target.owner,
                target.id,
                &options.holder,
                time::OffsetDateTime::now_utc(),
            )
            .await
            .map(|_| report)
            .map_err(record_error),
        Err(Failure::Engine(error)) => {
            let stop = stop_of(store, target, &options.holder, error).await;
            // A lost lease is not this sync's failure to record: the new holder's is.
            let lease_lost = matches!(stop.downcast_ref(), Some(SyncStop::LeaseLost));
            if !lease_lost
                && let Err(error) = store
                    .record_failure(
                        &target.owner,
                        target.id,
                        &options.holder,
                        time::OffsetDateTime::now_utc(),
                        &Backoff::default(),
                    )
                    .await
            {
                tracing::warn!(%error, "could not record the failed sync");
            }
            Err(stop)
        }
        Err(Failure::Lease(error)) => Err(error),
    };
    if let Err(error) = store
        .release_lease(&target.owner, target.id, &options.holder)
        .await
    {
        tracing::warn!(%error, "could not release the sync lease");
    }
    outcome
}

/// Gives up on a claimed connection whose sync could not start (its settings are
/// invalid): records the failure for the backoff and frees `holder`'s lease.
pub async fn give_up(target: &Target, holder: &LeaseHolder) {
    let store = target.store.as_ref();
    let (owner, id) = (&target.owner, target.id);
    let now = time::OffsetDateTime::now_utc();
    if let Err(error) = store
        .record_failure(owner, id, holder, now, &Backoff::default())
        .await
    {
        tracing::warn!(%error, connection = %id, "could not record the failed sync");
    }
    if let Err(error) = store.release_lease(owner, id, holder).await {
        tracing::warn!(%error, connection = %id, "could not release the sync lease");
    }
}

/// A failed `record_sync`: the lease lost meanwhile is [`SyncStop::LeaseLost`].
fn record_error(error: StoreError) -> anyhow::Error {
    if matches!(error, StoreError::LeaseLost { .. }) {
        SyncStop::LeaseLost.into()
    } else {
        anyhow::Error::new(error).context("could not record the sync time")
    }
}

enum Failure {
    Engine(SyncError),
    Lease(anyhow::Error),
}

/// What an engine error means here: a revoked grant is [`SyncStop::NeedsReconnect`] with
/// the reason the glue stored; a fenced commit is [`SyncStop::LeaseLost`].
///
/// When Graph itself refused the connection (a fresh token rejected again, or a claims
/// challenge that the refresh with its claims did not satisfy), no refresh failed, so
/// nothing marked the connection yet: "reconnect needed" is written here, under the
/// lease, with the challenge's claims for the reconnect's sign-in.
async fn stop_of(
    store: &dyn ConnectionStore,
    target: &Target,
    holder: &LeaseHolder,
    error: SyncError,
) -> anyhow::Error {
    if let SyncError::Sink(sink) = &error
        && sink.kind() == SinkErrorKind::Fenced
    {
        return SyncStop::LeaseLost.into();
    }
    if !error.requires_reauthorization() {
        return anyhow::Error::new(error);
    }
    if let Ok(connection) = store.get(&target.owner, target.id).await
        && let ConnectionStatus::NeedsReconnect { reason, .. } = connection.status
    {
        return SyncStop::NeedsReconnect { reason }.into();
    }
    let challenge = error.graph_error().and_then(GraphError::claims_challenge);
    let reason = match challenge {
        Some(challenge) => format!(
            "Microsoft Graph asked for a new sign-in (continuous access evaluation: {})",
            challenge.error()
        ),
        None => "Microsoft Graph rejected the connection's access".to_owned(),
    };
    let status = ConnectionStatus::NeedsReconnect {
        reason: reason.clone(),
        since: time::OffsetDateTime::now_utc(),
        claims: challenge.and_then(|challenge| crate::glue::reconnect_claims(challenge.claims())),
    };
    match store
        .set_status_fenced(&target.owner, target.id, holder, status)
        .await
    {
        Ok(_) => tracing::warn!(connection = %target.id, "connection needs a reconnect"),
        Err(StoreError::LeaseLost { .. }) => return SyncStop::LeaseLost.into(),
        Err(error) => tracing::warn!(%error, "could not mark the connection \"reconnect needed\""),
    }
    SyncStop::NeedsReconnect { reason }.into()
}

/// Renews the lease every third of its time-to-live; returns only when it is lost, or
/// when it may have run out: once no renewal has succeeded for as long as the lease could
/// last, another holder may take the connection over, and this sync must stop before that
/// rather than run beside it (its writes are fenced anyway, but two syncs of one tenant
/// at once double its Graph traffic and the soak counts it a violation). The soak saw
/// exactly that: renewals that failed for a whole lease under load, with the sync going
/// on while another worker had claimed the connection.
///
/// How long the lease lasts is reckoned on this process's clock alone (the store may
/// keep another one): the claim it started with was taken at most a third of the
/// time-to-live before (a worker starts its claims at once), and a renewal sent at `t`
/// lasts until at least `t + ttl` (the store dates it when it runs the statement). A
/// renewal still waiting for the database at that point is given up; a failed one is
/// retried halfway to that point, again and again, until then.
async fn keep_lease(target: &Target, options: &Options) -> anyhow::Error {
    let ttl = options.lease_ttl;
    let every = (ttl / 3).max(Duration::from_millis(1));
    let mut lasts_until = tokio::time::Instant::now() + ttl.saturating_sub(every);
    loop {
        // Every third of the TTL, and after a failed renewal halfway to the end of the
        // lease, so that a hiccup is retried while the lease still lasts.
        let now = tokio::time::Instant::now();
        let wake = now
            + every
                .min(lasts_until.saturating_duration_since(now) / 2)
                .max(Duration::from_millis(1));
        tokio::time::sleep_until(wake).await;
        let sent = tokio::time::Instant::now();
        if sent >= lasts_until {
            return lease_ran_out();
        }
        let renewed = tokio::time::timeout_at(
            lasts_until,
            target
                .store
                .renew_lease(&target.owner, target.id, &options.holder, ttl),
        )
        .await;
        match renewed {
            Ok(Ok(_)) => lasts_until = sent + ttl,
            // A backend hiccup is retried while the lease lasts.
            Ok(Err(error)) if error.is_retryable() => {
                tracing::warn!(%error, "could not renew the sync lease; retrying");
            }
            Ok(Err(error)) => return lease_error(error),
            Err(_) => return lease_ran_out(),
        }
    }
}

/// The lease may have expired without a renewal: stop as if it was lost.
fn lease_ran_out() -> anyhow::Error {
    tracing::warn!("no renewal of the sync lease succeeded for a whole lease; stopping the sync");
    SyncStop::LeaseLost.into()
}

fn lease_error(error: StoreError) -> anyhow::Error {
    if matches!(error, StoreError::LeaseLost { .. }) {
        SyncStop::LeaseLost.into()
    } else {
        anyhow::Error::new(error).context("could not renew the sync lease")
    }
}
