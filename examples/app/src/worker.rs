//! The fleet worker: syncs every due connection of a store into the directory mirror, many
//! at once, sharing the work with any number of other workers and web app instances on
//! the same database.
//!
//! A round claims due connections in batches with the store's service-level
//! [`ConnectionStore::claim_due`] (active, last sync older than the interval or never,
//! past its failure backoff, lease free or expired; oldest due first), which takes their
//! sync leases in the same statement, so two workers never claim one connection. Each
//! claimed connection is synced by [`sync::run_leased`] (the lease renewed while it runs,
//! the sync time or the failure recorded under the lease, the lease freed), up to
//! `concurrency` at once. The round stops claiming when nothing more is due, or once it
//! has claimed the backlog it saw at its start (see [`Worker::round`]), so that under a
//! constant backlog rounds still end and report; the next one starts at once.
//!
//! Key decisions:
//! - The batch is topped up when half the slots are free, so a round costs one claim
//!   query per `concurrency / 2` connections rather than one per connection.
//! - One Entra client and one Graph connection pool per cloud serve every tenant; each
//!   tenant gets its own token session and Graph throttle gate
//!   ([`GraphClient::with_tokens`]), so a throttled tenant waits alone.
//! - A failed sync is retried after the store's growing backoff ([`connection_store::Backoff`]), not every
//!   round; a connection whose grant Microsoft refused is marked "reconnect needed" by the
//!   glue and is never claimed again until an admin reconnects.
//! - On stop, no more connections are claimed; running syncs get `grace` to finish, and
//!   the leases of those that did not are freed, so another worker takes them at once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use connection_store::{
    Claim, Cloud, Connection, ConnectionId, ConnectionStore, LeaseHolder, OwnerId,
};
use connection_store_sql::SqlStore;
use entra_auth::EntraClient;
use graph_client::secrecy::SecretString;
use graph_client::sync::{NoProgress, SyncOptions, SyncReport};
use graph_client::{GraphClient, TokenError, TokenProvider};
use time::OffsetDateTime;
use tokio::task::JoinSet;

use crate::glue::{self, App, ConnectionTokens, Linked, SessionTokens};
use crate::mirror::Mirror;
use crate::sync::{self, SyncStop, Target};

/// What one claimed sync came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// It ran and committed.
    Synced,
    /// A sync of this connection was already running in this process; it was left alone.
    AlreadyRunning,
    /// Another holder had the connection's sync lease.
    LeaseHeld,
    /// The lease was taken over while it ran; nothing was written.
    LeaseLost,
    /// Microsoft refused the grant: "reconnect needed".
    NeedsReconnect,
    /// The connection is disabled.
    Disabled,
    /// It failed; it is retried after the backoff.
    Failed,
}

/// Syncs one claimed connection. The worker's own is [`MirrorSyncer`]; the web app's
/// scheduler wraps it to show progress on the Manage page.
#[async_trait]
pub trait SyncClaimed: Send + Sync {
    /// Syncs `claim`'s connection as `holder`, which holds its sync lease, and frees the
    /// lease before returning.
    async fn sync(&self, claim: &Claim, holder: &LeaseHolder) -> Outcome;
}

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Syncs running at once (I/O bound: mostly waiting for Graph).
    pub concurrency: usize,
    /// A connection is due when its last sync is older than this.
    pub interval: Duration,
    /// The sync lease's time-to-live; renewed every third of it.
    pub lease_ttl: Duration,
    /// How long running syncs may take to finish after a stop.
    pub grace: Duration,
}

impl Default for WorkerOptions {
    /// [`default_concurrency`], hourly, a 60 s lease, 30 s grace.
    fn default() -> Self {
        Self {
            concurrency: usize::from(default_concurrency()),
            interval: Duration::from_secs(60 * 60),
            lease_ttl: sync::DEFAULT_LEASE_TTL,
            grace: Duration::from_secs(30),
        }
    }
}

/// Syncs at once per core by default: a sync mostly waits for Graph and the database.
const SYNCS_PER_CORE: u16 = 16;

/// The default number of syncs at once, sized for the machine: [`SYNCS_PER_CORE`] per
/// core (32 on 2 cores), at least 8 and at most 256.
pub fn default_concurrency() -> u16 {
    let cores = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(16);
    u16::try_from(cores)
        .unwrap_or(16)
        .saturating_mul(SYNCS_PER_CORE)
        .clamp(8, 256)
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Connections claimed.
    pub claimed: usize,
    /// Synced and committed.
    pub synced: usize,
    /// Failed (retried after their backoff).
    pub failed: usize,
    /// Found needing a reconnect.
    pub needs_reconnect: usize,
    /// Skipped: running here already, lease held or lost, disabled meanwhile.
    pub skipped: usize,
    /// How long the most overdue claimed connection had been due.
    pub lag: Option<Duration>,
    /// Claim queries made.
    pub claims: usize,
    /// Due connections whose stored record is corrupt: the store deferred them (a day)
    /// and logged which column; they need a repair or a reconnect.
    pub corrupt: usize,
    /// Claim queries that failed (the round ends early and the next one retries).
    pub store_errors: usize,
    /// It stopped claiming with connections still due: it had claimed the backlog due at
    /// its start, and met one that became due after that, or one it had claimed before
    /// in this round. The next round takes the rest.
    pub capped: bool,
    /// Wall time of the round.
    pub elapsed: Duration,
    /// The claimed connections, in claim order, with their outcomes.
    pub visits: Vec<(ConnectionId, Outcome)>,
}

impl RoundReport {
    fn count(&mut self, id: ConnectionId, outcome: Outcome) {
        match outcome {
            Outcome::Synced => self.synced += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::NeedsReconnect => self.needs_reconnect += 1,
            Outcome::AlreadyRunning
            | Outcome::LeaseHeld
            | Outcome::LeaseLost
            | Outcome::Disabled => self.skipped += 1,
        }
        self.visits.push((id, outcome));
    }

    fn note_claim(&mut self, claim: &Claim, options: &WorkerOptions) {
        self.claimed += 1;
        // The store's clock at the claim, from the lease it gave.
        let claimed_at = claim.lease.expires_at - options.lease_ttl;
        let lag = (claimed_at - claim.connection.due_at(options.interval))
            .try_into()
            .ok();
        self.lag = self.lag.max(lag);
    }
}

impl std::fmt::Display for RoundReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "claimed {}, synced {}, failed {}, needing reconnect {}, skipped {}, oldest due \
             {} ago, in {:.1} s{}",
            self.claimed,
            self.synced,
            self.failed,
            self.needs_reconnect,
            self.skipped,
            self.lag.map_or_else(
                || "-".to_owned(),
                |lag| format!("{:.1} s", lag.as_secs_f64())
            ),
            self.elapsed.as_secs_f64(),
            if self.capped {
                " (more became due meanwhile: next round)"
            } else {
                ""
            },
        )
    }
}

/// Syncs due connections, `options.concurrency` at once, through `syncer`.
pub struct Worker {
    store: Arc<dyn ConnectionStore>,
    holder: LeaseHolder,
    options: WorkerOptions,
    syncer: Arc<dyn SyncClaimed>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("holder", &self.holder)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker claiming from `store` as `holder`.
    pub fn new(
        store: Arc<dyn ConnectionStore>,
        holder: LeaseHolder,
        options: WorkerOptions,
        syncer: Arc<dyn SyncClaimed>,
    ) -> Self {
        Self {
            store,
            holder,
            options,
            syncer,
        }
    }

    /// Who this worker's leases belong to.
    pub fn holder(&self) -> &LeaseHolder {
        &self.holder
    }

    /// One round: claims and syncs until nothing is due, or until `stop` turns true (or
    /// its sender is gone): then no more is claimed, running syncs get the grace time to
    /// finish, and the leases of those that do not are freed.
    ///
    /// A round takes the backlog due at its start and no more, so it ends and reports
    /// even while connections become due faster than they are synced: claims come oldest
    /// due first, so once a claimed connection became due after the round's first claim
    /// (by the store's clock, read from the lease it gave), everything due before has been
    /// claimed, and the round stops claiming. It also stops when it claims a connection
    /// a second time (a sync that freed its lease without recording anything), so it
    /// claims each connection at most once: at most the connections due at its start,
    /// plus the last batch (up to `concurrency`). The rest is the next round's, which
    /// [`run`](Self::run) starts at once ([`RoundReport::capped`]).
    ///
    /// Each sync runs as a task of its own (so syncs use every core and keep renewing
    /// their leases while a claim waits for the database); one that panics counts as
    /// failed and its lease is freed.
    pub async fn round(&self, stop: &mut tokio::sync::watch::Receiver<bool>) -> RoundReport {
        let started = Instant::now();
        let mut report = RoundReport::default();
        let concurrency = self.options.concurrency.max(1);
        let mut running: JoinSet<(ConnectionId, Outcome)> = JoinSet::new();
        // Task → connection, and connection → owner, of the syncs running.
        let mut tasks: HashMap<tokio::task::Id, ConnectionId> = HashMap::new();
        let mut in_flight: HashMap<ConnectionId, OwnerId> = HashMap::new();
        // Every connection this round claimed, and the store's clock at its first claim.
        let mut seen: HashSet<ConnectionId> = HashSet::new();
        let mut started_at: Option<OffsetDateTime> = None;
        let mut exhausted = false;
        let mut stopping = *stop.borrow();
        // Set when the stop is seen: running syncs may finish until then.
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            if !exhausted && !stopping && running.len() <= concurrency / 2 {
                let want = concurrency - running.len();
                report.claims += 1;
                match self
                    .store
                    .claim_due(
                        want,
                        &self.holder,
                        self.options.lease_ttl,
                        self.options.interval,
                    )
                    .await
                {
                    Ok(claims) => {
                        // Corrupt rows count as taken (the store deferred them).
                        exhausted = claims.taken() < want;
                        report.corrupt += claims.corrupt.len();
                        for claim in claims.claims {
                            let id = claim.connection.id;
                            let claimed_at = claim.lease.expires_at - self.options.lease_ttl;
                            let start = *started_at.get_or_insert(claimed_at);
                            let newly_due = claim.connection.due_at(self.options.interval) > start;
                            let again = !seen.insert(id);
                            if (newly_due || again) && !exhausted {
                                // The backlog seen at the start is claimed: this batch is
                                // the round's last.
                                exhausted = true;
                                report.capped = true;
                            }
                            if in_flight.contains_key(&id) {
                                // Re-claimed by this worker while its sync still runs
                                // (the renewals failed for a whole lease): leave it.
                                report.count(id, Outcome::AlreadyRunning);
                                continue;
                            }
                            report.note_claim(&claim, &self.options);
                            in_flight.insert(id, claim.connection.owner.clone());
                            let syncer = Arc::clone(&self.syncer);
                            let holder = self.holder.clone();
                            let task = running
                                .spawn(async move { (id, syncer.sync(&claim, &holder).await) });
                            tasks.insert(task.id(), id);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not claim due connections");
                        report.store_errors += 1;
                        exhausted = true;
                    }
                }
            }
            if running.is_empty() {
                break;
            }
            if stopping && deadline.is_none() {
                deadline = Some(tokio::time::Instant::now() + self.options.grace);
            }
            tokio::select! {
                next = running.join_next_with_id() => match next {
                    Some(Ok((task, (id, outcome)))) => {
                        tasks.remove(&task);
                        in_flight.remove(&id);
                        report.count(id, outcome);
                    }
                    Some(Err(error)) => {
                        // A sync that panicked: failed; its lease is freed below.
                        if let Some(id) = tasks.remove(&error.id()) {
                            tracing::error!(connection = %id, "a sync panicked");
                            report.count(id, Outcome::Failed);
                            if let Some(owner) = in_flight.remove(&id) {
                                self.release(&owner, id).await;
                            }
                        }
                    }
                    None => {}
                },
                // A closed channel stops too. (The guard `wait_for` gives must not live
                // across the awaits of the other arms: it is dropped in here.)
                () = async { drop(stop.wait_for(|stopped| *stopped).await); }, if !stopping => {
                    stopping = true;
                }
                () = sleep_until(deadline), if deadline.is_some() => {
                    tracing::warn!(running = running.len(), "stopping syncs still running");
                    break;
                }
            }
        }
        // Syncs cut off by the stop: abort them (each leaves its mirror at its last
        // commit) and free their leases for the other workers.
        running.shutdown().await;
        for (id, owner) in in_flight {
            self.release(&owner, id).await;
        }
        report.elapsed = started.elapsed();
        report
    }

    async fn release(&self, owner: &OwnerId, id: ConnectionId) {
        if let Err(error) = self.store.release_lease(owner, id, &self.holder).await {
            tracing::warn!(%error, connection = %id, "could not free a sync lease");
        }
    }

    /// Rounds until `stop` turns true: a round, then one every `check_every` (sooner
    /// after a round that found work, so a backlog drains at once). `on_round` sees
    /// each round's report.
    pub async fn run(
        &self,
        check_every: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
        mut on_round: impl FnMut(&RoundReport) + Send,
    ) {
        let every = check_every.max(Duration::from_millis(100));
        loop {
            let report = self.round(&mut stop).await;
            on_round(&report);
            if *stop.borrow() {
                break;
            }
            let busy = report.claimed > 0 && report.store_errors == 0;
            let wait = if busy { Duration::ZERO } else { every };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|stopped| *stopped) => break,
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The worker's own syncer: the claimed connection into its directory mirror, with one
/// Entra client and one Graph connection pool per cloud shared by every tenant.
pub struct MirrorSyncer {
    store: Arc<dyn ConnectionStore>,
    sql: SqlStore,
    mirror: Mirror,
    clients: Clients,
    engine: SyncOptions,
    lease_ttl: Duration,
}

impl MirrorSyncer {
    /// Syncs into `mirror` (beside `sql`, the same store as `store`) with `engine`'s
    /// options, signing in as `app`.
    pub fn new(
        store: Arc<dyn ConnectionStore>,
        sql: SqlStore,
        mirror: Mirror,
        app: App,
        engine: SyncOptions,
        lease_ttl: Duration,
    ) -> Self {
        Self {
            store,
            sql,
            mirror,
            clients: Clients::new(app),
            engine,
            lease_ttl,
        }
    }
}

#[async_trait]
impl SyncClaimed for MirrorSyncer {
    async fn sync(&self, claim: &Claim, holder: &LeaseHolder) -> Outcome {
        let connection = &claim.connection;
        let target = Target {
            store: Arc::clone(&self.store),
            owner: connection.owner.clone(),
            id: connection.id,
        };
        let linked = match self
            .clients
            .link(Arc::clone(&self.store), connection.clone(), holder)
        {
            Ok(linked) => linked,
            Err(error) => {
                tracing::warn!(connection = %connection.id, error = %format!("{error:#}"), "cannot open the connection");
                sync::give_up(&target, holder).await;
                return Outcome::Failed;
            }
        };
        let options = sync::Options {
            engine: self.engine.clone(),
            lease_ttl: self.lease_ttl,
            holder: holder.clone(),
        };
        let mut sink = self
            .mirror
            .sink(&self.sql, connection.id)
            .with_fence(holder.clone());
        let result =
            sync::run_leased(&linked.graph, &target, &mut sink, &options, &NoProgress).await;
        let outcome = outcome_of(connection.id, &result);
        if outcome == Outcome::NeedsReconnect {
            self.clients.forget(connection.id);
        }
        outcome
    }
}

/// What a sync's result means for the round.
pub fn outcome_of(id: ConnectionId, result: &anyhow::Result<SyncReport>) -> Outcome {
    match result {
        Ok(_) => Outcome::Synced,
        Err(error) => match error.downcast_ref::<SyncStop>() {
            Some(SyncStop::NeedsReconnect { .. }) => Outcome::NeedsReconnect,
            Some(SyncStop::LeaseHeld) => Outcome::LeaseHeld,
            Some(SyncStop::LeaseLost) => Outcome::LeaseLost,
            Some(SyncStop::Disabled) => Outcome::Disabled,
            _ => {
                tracing::warn!(connection = %id, error = %format!("{error:#}"), "sync failed");
                Outcome::Failed
            }
        },
    }
}

/// One Entra client and one Graph client per cloud; per tenant, a token session and a
/// Graph client derived from the cloud's (same connection pool, own throttle gate).
///
/// A tenant's session and Graph client are kept across rounds (at most
/// [`SESSION_CACHE_CAPACITY`], the least recently synced dropped first): its access token
/// serves every sync until it is due for refresh, which with continuous access
/// evaluation (a CAE token lives up to 28 hours) is one token request a day instead of
/// one a sync, and its throttle gate remembers Graph's `Retry-After`.
struct Clients {
    app: App,
    by_cloud: Mutex<HashMap<Cloud, (EntraClient, GraphClient)>>,
    sessions: Mutex<hashlink::LruCache<ConnectionId, Open>>,
}

/// How many tenants' sessions a worker keeps open between rounds (a few KiB each).
pub const SESSION_CACHE_CAPACITY: usize = 10_000;

/// A tenant's session as kept between rounds, for the lease holder its status write is
/// fenced by.
#[derive(Clone)]
struct Open {
    holder: LeaseHolder,
    session: entra_auth::TokenSession,
    tokens: Arc<ConnectionTokens>,
    graph: GraphClient,
}

impl Clients {
    fn new(app: App) -> Self {
        Self {
            app,
            by_cloud: Mutex::new(HashMap::new()),
            sessions: Mutex::new(hashlink::LruCache::new(SESSION_CACHE_CAPACITY)),
        }
    }

    /// `connection` opened for a sync under `holder`'s lease: a session over its stored
    /// refresh token (its "reconnect needed" write fenced by the lease) and a Graph
    /// client sharing its cloud's pool; the same ones as last round when still open.
    /// Makes no request.
    fn link(
        &self,
        store: Arc<dyn ConnectionStore>,
        connection: Connection,
        holder: &LeaseHolder,
    ) -> anyhow::Result<Linked> {
        let kept = self
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&connection.id)
            .filter(|open| &open.holder == holder)
            .cloned();
        let open = if let Some(open) = kept {
            open
        } else {
            let open = self.open(store, &connection, holder)?;
            self.sessions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(connection.id, open.clone());
            open
        };
        Ok(Linked {
            connection,
            session: open.session,
            tokens: open.tokens,
            graph: open.graph,
        })
    }

    /// Drops connection `id`'s kept session: after "reconnect needed", the next sync
    /// (after the admin's reconnect) starts from the stored refresh token.
    fn forget(&self, id: ConnectionId) {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    fn open(
        &self,
        store: Arc<dyn ConnectionStore>,
        connection: &Connection,
        holder: &LeaseHolder,
    ) -> anyhow::Result<Open> {
        let (entra, base) = {
            let mut by_cloud = self.by_cloud.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(clients) = by_cloud.get(&connection.cloud) {
                clients.clone()
            } else {
                let entra = self.app.entra_client(&connection.cloud, None)?;
                // The cloud's pool, over no tenant's tokens: each tenant derives its own.
                let base = glue::graph_client_with(&connection.cloud, NoTokens)?;
                by_cloud.insert(connection.cloud.clone(), (entra.clone(), base.clone()));
                (entra, base)
            }
        };
        let tokens = Arc::new(
            ConnectionTokens::new(store, connection.owner.clone(), connection.id)
                .with_fence(holder.clone()),
        );
        let session = glue::session(&entra, connection, Arc::clone(&tokens))?;
        let graph = base.with_tokens(SessionTokens::new(session.clone()));
        Ok(Open {
            holder: holder.clone(),
            session,
            tokens,
            graph,
        })
    }
}

/// The tokens of the per-cloud base client, which sends no request of its own.
struct NoTokens;

#[async_trait]
impl TokenProvider for NoTokens {
    async fn access_token(&self) -> Result<SecretString, TokenError> {
        Err(TokenError::new(
            "the per-cloud base client has no tenant; derive one with with_tokens",
        ))
    }

    async fn rejected(&self, _token: &SecretString) {}
}

/// A duration as the `worker` example's options take it: `90s`, `15m`, `1h`, `500ms`, or
/// plain seconds.
///
/// # Errors
/// Not a number with one of those units, or too long.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 15m or 1h"))?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(number)),
        "" | "s" => number,
        "m" => number.checked_mul(60).ok_or("the duration is too long")?,
        "h" => number.checked_mul(3600).ok_or("the duration is too long")?,
        other => return Err(format!("unknown unit {other:?} (use ms, s, m or h)")),
    };
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use connection_store::{
        AdminAccount, Clock as _, ManualClock, MemoryStore, NewConnection, TenantId,
    };

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    /// Links a new tenant for a new customer, as a sign-in would.
    async fn link(store: &dyn ConnectionStore, n: usize) -> ConnectionId {
        let owner = OwnerId::new(format!("customer-{n}"));
        let new = NewConnection {
            name: "Microsoft 365".into(),
            tenant: TenantId::new(format!("tenant-{n}")),
            cloud: Cloud::Global,
            admin: AdminAccount {
                object_id: format!("admin-{n}"),
                username: format!("admin@tenant-{n}.example"),
                display_name: None,
            },
            scopes: vec!["User.Read.All".into()],
            refresh_token: SecretString::from(format!("rt-{n}")),
        };
        store.create(&owner, new).await.expect("create").id
    }

    /// What each sync of a [`Backlog`] does besides taking a second of the store's clock.
    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        /// Records the sync, and meanwhile one more customer links a tenant: the backlog
        /// never empties.
        Grow,
        /// Records the sync; nobody links.
        Steady,
        /// Frees the lease without recording anything: the connection stays due.
        Forget,
    }

    struct Backlog {
        store: Arc<MemoryStore>,
        clock: ManualClock,
        mode: Mode,
        linked: Mutex<Vec<ConnectionId>>,
        next: std::sync::atomic::AtomicUsize,
    }

    impl Backlog {
        fn new(store: Arc<MemoryStore>, clock: ManualClock, first: usize, mode: Mode) -> Self {
            Self {
                store,
                clock,
                mode,
                linked: Mutex::new(Vec::new()),
                next: first.into(),
            }
        }

        fn linked(&self) -> Vec<ConnectionId> {
            self.linked
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }
    }

    #[async_trait]
    impl SyncClaimed for Backlog {
        async fn sync(&self, claim: &Claim, holder: &LeaseHolder) -> Outcome {
            let (owner, id) = (&claim.connection.owner, claim.connection.id);
            self.clock.advance(Duration::from_secs(1));
            if self.mode == Mode::Forget {
                self.store
                    .release_lease(owner, id, holder)
                    .await
                    .expect("release");
                return Outcome::Failed;
            }
            if self.mode == Mode::Grow {
                let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let new = link(self.store.as_ref(), n).await;
                self.linked
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(new);
            }
            self.store
                .record_sync(owner, id, holder, self.clock.now())
                .await
                .expect("record_sync under the claimed lease");
            self.store
                .release_lease(owner, id, holder)
                .await
                .expect("release");
            Outcome::Synced
        }
    }

    fn worker(store: Arc<MemoryStore>, syncer: Arc<Backlog>, concurrency: usize) -> Worker {
        let options = WorkerOptions {
            concurrency,
            interval: HOUR,
            lease_ttl: Duration::from_secs(60),
            grace: Duration::from_secs(30),
        };
        let holder = LeaseHolder::new("worker-1").expect("holder");
        Worker::new(store, holder, options, syncer)
    }

    /// One round, failing the test instead of hanging when it never ends.
    async fn bounded_round(worker: &Worker) -> RoundReport {
        let (_stop, mut stopped) = tokio::sync::watch::channel(false);
        tokio::time::timeout(Duration::from_secs(60), worker.round(&mut stopped))
            .await
            .expect("the round ends")
    }

    fn visited(report: &RoundReport) -> Vec<ConnectionId> {
        report.visits.iter().map(|(id, _)| *id).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_round_under_a_constant_backlog_ends_after_the_backlog_due_at_its_start() {
        const DUE: usize = 10;
        const CONCURRENCY: usize = 4;
        let clock = ManualClock::default();
        let store = Arc::new(MemoryStore::with_clock(Arc::new(clock.clone())));
        let mut due = Vec::new();
        for n in 0..DUE {
            due.push(link(store.as_ref(), n).await);
            clock.advance(Duration::from_millis(10));
        }
        let syncer = Arc::new(Backlog::new(
            Arc::clone(&store),
            clock.clone(),
            DUE,
            Mode::Grow,
        ));
        let worker = worker(Arc::clone(&store), Arc::clone(&syncer), CONCURRENCY);

        let first = bounded_round(&worker).await;
        assert!(first.capped, "{first:?}");
        assert_eq!(first.store_errors, 0);
        // Each connection due at the start synced exactly once, plus at most the last
        // batch of those linked meanwhile.
        let visits = visited(&first);
        for id in &due {
            assert_eq!(visits.iter().filter(|v| *v == id).count(), 1, "{first:?}");
        }
        assert!(
            (DUE..=DUE + CONCURRENCY).contains(&first.claimed),
            "{first:?}"
        );
        assert_eq!(first.synced, first.claimed);
        let unique: HashSet<ConnectionId> = visits.iter().copied().collect();
        assert_eq!(unique.len(), visits.len(), "none twice: {first:?}");

        // The next round starts with the tenants linked during the first one.
        let left: Vec<ConnectionId> = syncer
            .linked()
            .into_iter()
            .filter(|id| !unique.contains(id))
            .collect();
        assert!(!left.is_empty());
        let second = bounded_round(&worker).await;
        let next_visits = visited(&second);
        for id in &left {
            assert!(next_visits.contains(id), "{id} waits: {second:?}");
        }
        assert!(
            next_visits.iter().all(|id| !due.contains(id)),
            "synced already"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_round_ends_when_it_claims_a_connection_a_second_time() {
        let clock = ManualClock::default();
        let store = Arc::new(MemoryStore::with_clock(Arc::new(clock.clone())));
        let oldest = link(store.as_ref(), 0).await;
        clock.advance(Duration::from_millis(10));
        link(store.as_ref(), 1).await;
        // Syncs that free their leases without recording: the oldest stays first in line.
        let syncer = Arc::new(Backlog::new(
            Arc::clone(&store),
            clock.clone(),
            2,
            Mode::Forget,
        ));
        let worker = worker(Arc::clone(&store), syncer, 1);

        let report = bounded_round(&worker).await;
        assert!(report.capped, "{report:?}");
        assert_eq!(visited(&report), vec![oldest, oldest]);
        assert_eq!((report.claimed, report.failed), (2, 2));
    }

    #[tokio::test]
    async fn a_round_that_drains_the_backlog_is_not_capped() {
        let clock = ManualClock::default();
        let store = Arc::new(MemoryStore::with_clock(Arc::new(clock.clone())));
        for n in 0..3 {
            link(store.as_ref(), n).await;
        }
        let syncer = Arc::new(Backlog::new(
            Arc::clone(&store),
            clock.clone(),
            3,
            Mode::Steady,
        ));
        // Two at once: two claims of a full batch, then one short batch ends the round.
        let worker = worker(Arc::clone(&store), syncer, 2);
        let report = bounded_round(&worker).await;
        assert!(!report.capped, "{report:?}");
        assert_eq!((report.claimed, report.synced), (3, 3), "{report:?}");
    }

    #[test]
    fn durations_read_with_their_units() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration(&format!("{}h", u64::MAX)).is_err());
    }
}
