//! The fault soak: a fleet of simulated tenants changing all the time, fleet workers
//! syncing them through 5 % injected faults, throttling, grant revocations and workers
//! killed mid-round, with the sync's invariants checked after every sync and every round.
//!
//! ```text
//! cargo run --release --example soak -- --duration 60s
//! cargo run --release --example soak -- --duration 30m --tenants 50 --workers 3 --seed 7 --json
//! ```
//!
//! Everything runs in this process: a multi-tenant tenant-sim, a `SQLite` store with its
//! mirror in a temporary folder (or `PostgreSQL` with `--postgres URL`), every tenant
//! linked through the simulated sign-in, a changer task, `--workers` fleet workers (each
//! a `Worker` with its own lease holder and `MirrorSyncer`) and a controller that kills
//! workers, revokes grants, reconnects and checks.
//!
//! The invariants, and why each check is exact:
//!
//! (a) *Each mirror equals its tenant at its sync's delta link.* Every sync goes through
//!     [`SoakSyncer`], which freezes its tenant for the changer from before the sync's
//!     first request until its check is done: the changer changes a tenant only under
//!     the tenant's [`Freeze`] lock and counts every change there. When no change was
//!     counted between the sync's start and the check, the directory the check reads is
//!     the one the whole sync saw, i.e. the state its delta link stands for, and the
//!     mirror (users with id, UPN, name, enabled, type; groups with name; every group's
//!     direct member ids) must equal it exactly. To exercise changes *during* a round
//!     too, the changer changes a tenant that is being synced now and then; such a sync
//!     is not checked (no single directory state is its truth: Graph may report a change
//!     made mid-round in this round or the next), and the tenant's next undisturbed sync
//!     must converge. The last phase syncs every tenant once more without changes.
//! (b) *No tenant synced by two workers at once.* [`SoakSyncer`] registers each sync
//!     (connection, lease holder) from before its first request until the syncer
//!     returns (after it freed the lease); a second sync of a connection that starts
//!     while one is registered is a violation. A killed worker's syncs are dropped with
//!     its tasks, which unregisters them; their leases expire and other workers take
//!     over, which must not overlap.
//! (c) *No refresh token lost.* After every round the controller looks at each
//!     connection a sync touched since the last check (and at every connection every
//!     `--sweep-every` and at the end): one that says "reconnect needed" must be one
//!     whose grant the soak revoked (and did not reconnect since); an active one must
//!     refresh with its stored refresh token (a real token request; Entra does not
//!     revoke a used refresh token, so this disturbs no worker), unless the soak revoked
//!     its grant and no sync has noticed yet. A sync that *started* after its grant was
//!     revoked must not succeed, and at the end every revoked grant not reconnected must
//!     say "reconnect needed". The controller does the revocations, reconnects and these
//!     checks one after another, so none races another.
//!
//! Exit codes: 0 no violation, 1 a violation or a check that could not be made, 2 the
//! soak could not start.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use clap::Parser;
use connection_store::{
    Claim, ConnectionId, ConnectionStatus, ConnectionStore, LeaseHolder, OwnerId,
};
use connection_store_sql::{EncryptionKey, KeyId, KeyRing, SqlStore};
use entra_auth::EntraClient;
use futures::FutureExt as _;
use graph_client::sync::SyncOptions;
use m365_link_app::connect::{SignIn, link_simulated, reconnect_connection, simulated_browser};
use m365_link_app::mirror::{Mirror, UserQuery};
use m365_link_app::worker::{
    self, MirrorSyncer, Outcome, RoundReport, SyncClaimed, Worker, WorkerOptions,
};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tenant_sim::{
    Control, Deletion, FaultKind, FaultSettings, GroupFields, TenantSim, ThrottleSettings,
    UserFields, UserType,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Run the fault soak: simulated tenants changing continuously, fleet workers syncing
/// them through injected faults, throttling, grant revocations and killed workers; the
/// sync's invariants checked after every sync and round. Exits 1 on any violation.
#[derive(Parser, Debug)]
#[command(about, long_about)]
#[allow(
    clippy::doc_markdown,
    reason = "doc comments are the --help text, shown verbatim"
)]
struct Args {
    /// How long to soak (e.g. 60s, 30m, 1h).
    #[arg(long, default_value = "60s", value_parser = worker::parse_duration)]
    duration: Duration,

    /// Simulated tenants, each linked by a customer of its own.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=1000))]
    tenants: u16,

    /// Users per tenant at the start (user 0 is the admin).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(2..=5000))]
    users: u16,

    /// Groups per tenant at the start.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=500))]
    groups: u16,

    /// Fleet workers syncing at once, each with its own lease holder.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: u16,

    /// Syncs at once per worker.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: u16,

    /// Seed of the directories, the faults and every choice the soak makes.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// A tenant is due again once its last sync is older than this.
    #[arg(long, default_value = "3s", value_parser = worker::parse_duration)]
    interval: Duration,

    /// The sync lease's time-to-live (renewed every third): how long a killed worker's
    /// tenants wait before another worker takes them.
    #[arg(long, default_value = "6s", value_parser = worker::parse_duration)]
    lease_ttl: Duration,

    /// Share of Graph requests answered with a fault (503, dropped connection, truncated
    /// body).
    #[arg(long, default_value_t = 0.05)]
    fault_rate: f64,

    /// Directory changes per second over all tenants.
    #[arg(long, default_value_t = 25.0)]
    changes_per_second: f64,

    /// Share of changes the changer makes to a tenant while it is being synced.
    #[arg(long, default_value_t = 0.2)]
    mid_sync_changes: f64,

    /// Kill a worker mid-round (and start a fresh one) this often.
    #[arg(long, default_value = "12s", value_parser = worker::parse_duration)]
    kill_every: Duration,

    /// Revoke one tenant's grant this often (alternately all the admin's grants and its
    /// sign-in sessions); reconnect a revoked one as often.
    #[arg(long, default_value = "6s", value_parser = worker::parse_duration)]
    revoke_every: Duration,

    /// Throttle a new tenth of the tenants this often.
    #[arg(long, default_value = "10s", value_parser = worker::parse_duration)]
    throttle_every: Duration,

    /// Check every connection's refresh token this often (besides those a round touched).
    #[arg(long, default_value = "15s", value_parser = worker::parse_duration)]
    sweep_every: Duration,

    /// Use this PostgreSQL database (an empty one of its own) instead of a temporary
    /// SQLite file.
    #[arg(long)]
    postgres: Option<String>,

    /// Print the final summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
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
    let args = Args::parse();
    if !(0.0..=1.0).contains(&args.fault_rate) || !(0.0..=1.0).contains(&args.mid_sync_changes) {
        eprintln!("soak: --fault-rate and --mid-sync-changes must be within 0..=1");
        return ExitCode::from(2);
    }
    let soak = match Soak::start(&args).await {
        Ok(soak) => Arc::new(soak),
        Err(error) => {
            eprintln!("soak could not start: {error:#}");
            return ExitCode::from(2);
        }
    };
    let summary = run(&args, &soak).await;
    soak.mirror.close().await;
    if args.json {
        println!("{}", summary.to_json());
    } else {
        println!("{summary}");
    }
    if summary.violations.is_empty() && summary.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

// ---------------------------------------------------------------------------------------
// The fleet: simulator, store, mirror, tenants.
// ---------------------------------------------------------------------------------------

/// A temporary folder, removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the changer may do to a tenant: the changes it made (counted under the lock it
/// makes them under), and the syncs and checks running.
#[derive(Debug, Default)]
struct Freeze {
    syncing: usize,
    checking: usize,
    changes: u64,
}

/// One linked tenant.
struct Tenant {
    id: String,
    admin_upn: String,
    admin_id: String,
    owner: OwnerId,
    connection: ConnectionId,
    control: Control,
    freeze: Mutex<Freeze>,
}

impl Tenant {
    fn freeze(&self) -> std::sync::MutexGuard<'_, Freeze> {
        self.freeze.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A grant the soak revoked and has not reconnected.
#[derive(Debug, Clone, Copy)]
struct Revocation {
    at: Instant,
}

#[derive(Default)]
struct Stats {
    syncs_started: AtomicU64,
    synced: AtomicU64,
    failed: AtomicU64,
    needs_reconnect: AtomicU64,
    lease_lost: AtomicU64,
    skipped: AtomicU64,
    mirror_checks: AtomicU64,
    mirror_unchecked_mid_sync_change: AtomicU64,
    overlap_checks: AtomicU64,
    token_checks: AtomicU64,
    token_checks_pending_revoked: AtomicU64,
    changes: AtomicU64,
    changes_mid_sync: AtomicU64,
    changes_refused: AtomicU64,
    changes_deferred: AtomicU64,
}

fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

struct Soak {
    started: Instant,
    sim: TenantSim,
    store: Arc<dyn ConnectionStore>,
    sql: SqlStore,
    mirror: Mirror,
    sign_in: SignIn,
    /// For the token checks: refreshes with a stored refresh token.
    entra: EntraClient,
    tenants: Vec<Tenant>,
    by_connection: HashMap<ConnectionId, usize>,
    options: WorkerOptions,
    /// (b): the syncs running, per connection, by lease holder.
    in_flight: Mutex<HashMap<ConnectionId, Vec<LeaseHolder>>>,
    /// (c): grants revoked by the soak and not reconnected since.
    revoked: Mutex<HashMap<ConnectionId, Revocation>>,
    /// Connections a sync ended on (or was cut off on) since the last token check.
    touched: Mutex<HashSet<ConnectionId>>,
    stats: Stats,
    violations: Mutex<Vec<String>>,
    errors: Mutex<Vec<String>>,
    _dir: Option<TempDir>,
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data changed in single steps: a poisoned lock still holds a valid value.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Soak {
    #[expect(
        clippy::too_many_lines,
        reason = "the fleet's set-up, read top to bottom"
    )]
    async fn start(args: &Args) -> anyhow::Result<Self> {
        let tenants = usize::from(args.tenants);
        let sim = TenantSim::builder()
            .tenants(tenants)
            .users(usize::from(args.users))
            .groups(usize::from(args.groups))
            .seed(args.seed)
            .start()
            .await
            .context("tenant-sim did not start")?;
        let keys = KeyRing::new(KeyId::new("soak")?, EncryptionKey::generate());
        let (sql, dir) = if let Some(url) = &args.postgres {
            let sql = SqlStore::postgres(url.clone())
                .key_ring(keys)
                .max_connections(8)
                .open()
                .await
                .context("the PostgreSQL store did not open")?;
            (sql, None)
        } else {
            let dir = TempDir(
                std::env::temp_dir().join(format!("m365-link-soak-{}", uuid::Uuid::new_v4())),
            );
            std::fs::create_dir_all(&dir.0).context("no temporary folder")?;
            let sql = SqlStore::sqlite(dir.0.join("soak.sqlite"))
                .key_ring(keys)
                .open()
                .await
                .context("the SQLite store did not open")?;
            (sql, Some(dir))
        };
        let mirror = Mirror::open(&sql)
            .await
            .context("the mirror did not open")?;
        let store: Arc<dyn ConnectionStore> = Arc::new(sql.clone());
        let sign_in = SignIn::simulated(&sim);
        let entra = sign_in.app.entra_client(&sign_in.cloud, None)?;
        let run = uuid::Uuid::new_v4().simple().to_string();
        let mut linked = Vec::with_capacity(tenants);
        for (n, info) in sim.tenants().iter().enumerate() {
            let owner = OwnerId::new(format!("soak-{}-customer-{n}", &run[..8]));
            let connection = link_simulated(
                &sign_in,
                store.as_ref(),
                &owner,
                info.admin_upn(),
                "Microsoft 365",
            )
            .await
            .with_context(|| format!("tenant {n} did not link"))?;
            let control = sim
                .tenant_control(info.id())
                .with_context(|| format!("no control for tenant {n}"))?
                .clone();
            linked.push(Tenant {
                id: info.id().to_owned(),
                admin_upn: info.admin_upn().to_owned(),
                admin_id: info.admin_id().to_owned(),
                owner,
                connection: connection.id,
                control,
                freeze: Mutex::new(Freeze::default()),
            });
        }
        let faults = FaultSettings::none()
            .with_rate(args.fault_rate)?
            .with_kinds(&FAULT_KINDS)?;
        for tenant in &linked {
            tenant.control.set_faults(faults.clone());
            tenant.control.reset_counters();
        }
        let by_connection = linked
            .iter()
            .enumerate()
            .map(|(n, tenant)| (tenant.connection, n))
            .collect();
        Ok(Self {
            started: Instant::now(),
            sim,
            store,
            sql,
            mirror,
            sign_in,
            entra,
            tenants: linked,
            by_connection,
            options: WorkerOptions {
                concurrency: usize::from(args.concurrency),
                interval: args.interval,
                lease_ttl: args.lease_ttl,
                grace: Duration::from_secs(5),
            },
            in_flight: Mutex::default(),
            revoked: Mutex::default(),
            touched: Mutex::default(),
            stats: Stats::default(),
            violations: Mutex::default(),
            errors: Mutex::default(),
            _dir: dir,
        })
    }

    fn tenant(&self, id: ConnectionId) -> Option<&Tenant> {
        self.by_connection.get(&id).map(|n| &self.tenants[*n])
    }

    fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn violation(&self, text: String) {
        eprintln!("[{:7.1}s] VIOLATION: {text}", self.elapsed());
        locked(&self.violations).push(text);
    }

    fn error(&self, text: String) {
        eprintln!("[{:7.1}s] CHECK ERROR: {text}", self.elapsed());
        locked(&self.errors).push(text);
    }

    fn revocation(&self, id: ConnectionId) -> Option<Revocation> {
        locked(&self.revoked).get(&id).copied()
    }

    /// A worker (a fresh lease holder, a fresh syncer with empty session caches).
    fn worker(self: &Arc<Self>, name: &str) -> anyhow::Result<Worker> {
        let holder = LeaseHolder::new(format!(
            "soak-{name}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ))?;
        Ok(Worker::new(
            Arc::clone(&self.store),
            holder,
            self.options.clone(),
            Arc::new(self.syncer()),
        ))
    }

    fn syncer(self: &Arc<Self>) -> SoakSyncer {
        let inner = MirrorSyncer::new(
            Arc::clone(&self.store),
            self.sql.clone(),
            self.mirror.clone(),
            self.sign_in.app.clone(),
            SyncOptions::new(),
            self.options.lease_ttl,
        );
        SoakSyncer {
            inner,
            soak: Arc::clone(self),
        }
    }
}

const FAULT_KINDS: [FaultKind; 3] = [
    FaultKind::ServiceUnavailable,
    FaultKind::DroppedConnection,
    FaultKind::TruncatedBody,
];

// ---------------------------------------------------------------------------------------
// Every sync, watched: (a) and (b).
// ---------------------------------------------------------------------------------------

/// The worker's own syncer, wrapped: registers the sync (b), freezes its tenant for the
/// changer and checks the mirror after a successful sync (a).
struct SoakSyncer {
    inner: MirrorSyncer,
    soak: Arc<Soak>,
}

/// Unregisters a sync from [`Soak::in_flight`], also when its task is aborted.
struct InFlight<'a> {
    soak: &'a Soak,
    id: ConnectionId,
    holder: LeaseHolder,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut in_flight = locked(&self.soak.in_flight);
        if let Some(holders) = in_flight.get_mut(&self.id) {
            if let Some(at) = holders.iter().position(|h| *h == self.holder) {
                holders.remove(at);
            }
            if holders.is_empty() {
                in_flight.remove(&self.id);
            }
        }
        locked(&self.soak.touched).insert(self.id);
    }
}

/// Ends a sync's (or a check's) share of its tenant's [`Freeze`], also when aborted.
struct Frozen<'a> {
    tenant: &'a Tenant,
    checking: bool,
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        let mut freeze = self.tenant.freeze();
        if self.checking {
            freeze.checking = freeze.checking.saturating_sub(1);
        } else {
            freeze.syncing = freeze.syncing.saturating_sub(1);
        }
    }
}

#[async_trait]
impl SyncClaimed for SoakSyncer {
    async fn sync(&self, claim: &Claim, holder: &LeaseHolder) -> Outcome {
        let soak = self.soak.as_ref();
        let id = claim.connection.id;
        let Some(tenant) = soak.tenant(id) else {
            soak.violation(format!(
                "a worker claimed connection {id}, which the soak never linked"
            ));
            return self.inner.sync(claim, holder).await;
        };
        let started = Instant::now();
        add(&soak.stats.syncs_started);
        // (a) From here until the check, the changer leaves the tenant alone (or, when it
        // does not, the change is counted and this sync is not checked).
        let changes_at_start = {
            let mut freeze = tenant.freeze();
            freeze.syncing += 1;
            freeze.changes
        };
        let syncing = Frozen {
            tenant,
            checking: false,
        };
        // (b) No other sync of this connection may be running.
        let flight = {
            let mut in_flight = locked(&soak.in_flight);
            let holders = in_flight.entry(id).or_default();
            if !holders.is_empty() {
                let others: Vec<String> = holders.iter().map(ToString::to_string).collect();
                soak.violation(format!(
                    "{}: synced by {holder} while {} still synced it",
                    tenant.id,
                    others.join(", ")
                ));
            }
            holders.push(holder.clone());
            add(&soak.stats.overlap_checks);
            InFlight {
                soak,
                id,
                holder: holder.clone(),
            }
        };
        let outcome = match AssertUnwindSafe(self.inner.sync(claim, holder))
            .catch_unwind()
            .await
        {
            Ok(outcome) => outcome,
            Err(panic) => {
                soak.violation(format!(
                    "{}: the sync by {holder} panicked: {}",
                    tenant.id,
                    panic_text(panic.as_ref())
                ));
                drop(flight);
                drop(syncing);
                // The worker counts it failed and frees the lease.
                std::panic::resume_unwind(panic);
            }
        };
        drop(flight);
        count_outcome(&soak.stats, outcome);
        if outcome == Outcome::Synced {
            if let Some(revocation) = soak.revocation(id)
                && revocation.at < started
            {
                soak.violation(format!(
                    "{}: a sync that started {:.1} s after its grant was revoked succeeded",
                    tenant.id,
                    (started - revocation.at).as_secs_f64()
                ));
            }
            check_mirror(soak, tenant, changes_at_start).await;
        }
        drop(syncing);
        outcome
    }
}

fn count_outcome(stats: &Stats, outcome: Outcome) {
    match outcome {
        Outcome::Synced => add(&stats.synced),
        Outcome::Failed => add(&stats.failed),
        Outcome::NeedsReconnect => add(&stats.needs_reconnect),
        Outcome::LeaseLost => add(&stats.lease_lost),
        _ => add(&stats.skipped),
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(not a string)".to_owned())
}

/// (a) after a successful sync whose tenant is still frozen: the mirror must equal the
/// directory, unless the changer changed the tenant since the sync began.
async fn check_mirror(soak: &Soak, tenant: &Tenant, changes_at_start: u64) {
    {
        let mut freeze = tenant.freeze();
        if freeze.changes != changes_at_start {
            add(&soak.stats.mirror_unchecked_mid_sync_change);
            return;
        }
        freeze.checking += 1;
    }
    let _checking = Frozen {
        tenant,
        checking: true,
    };
    match retried(|| mirror_differences(soak, tenant)).await {
        Ok(differences) if differences.is_empty() => add(&soak.stats.mirror_checks),
        Ok(differences) => {
            add(&soak.stats.mirror_checks);
            soak.violation(format!(
                "{}: the mirror differs from the directory at its delta link: {}",
                tenant.id,
                differences.join("; ")
            ));
        }
        Err(error) => soak.error(format!(
            "{}: could not compare the mirror: {error:#}",
            tenant.id
        )),
    }
}

/// A user as both sides can tell it: UPN, name, enabled, type.
type UserView = (Option<String>, Option<String>, Option<bool>, Option<String>);

/// What differs between the mirror and the directory of `tenant` (at most a few of
/// each kind, named by id).
async fn mirror_differences(soak: &Soak, tenant: &Tenant) -> anyhow::Result<Vec<String>> {
    let connection = tenant.connection;
    let directory_users: BTreeMap<String, UserView> = tenant
        .control
        .users()
        .into_iter()
        .map(|user| {
            let kind = match user.user_type {
                UserType::Guest => "Guest",
                _ => "Member",
            };
            (
                user.id,
                (
                    Some(user.user_principal_name),
                    Some(user.display_name),
                    Some(user.account_enabled),
                    Some(kind.to_owned()),
                ),
            )
        })
        .collect();
    let mut mirror_users: BTreeMap<String, UserView> = BTreeMap::new();
    let mut offset = 0;
    loop {
        let page = soak
            .mirror
            .find_users(connection, &UserQuery::new(), offset, 1_000)
            .await
            .context("reading the mirror's users")?;
        let len = page.len();
        for user in page {
            let id = user
                .id
                .as_ref()
                .map_or_else(|| "(no id)".to_owned(), |id| id.as_str().to_owned());
            mirror_users.insert(
                id,
                (
                    user.user_principal_name,
                    user.display_name,
                    user.account_enabled,
                    user.user_type,
                ),
            );
        }
        if len < 1_000 {
            break;
        }
        offset += 1_000;
    }
    let mut differences = compare("user", &directory_users, &mirror_users);

    let mut directory_groups: BTreeMap<String, (Option<String>, BTreeSet<String>)> =
        BTreeMap::new();
    for group in tenant.control.groups() {
        let members = tenant
            .control
            .group_member_ids(&group.id)
            .context("reading a group's members in the simulator")?;
        directory_groups.insert(
            group.id,
            (Some(group.display_name), members.into_iter().collect()),
        );
    }
    let mut mirror_groups: BTreeMap<String, (Option<String>, BTreeSet<String>)> = BTreeMap::new();
    let mut offset = 0;
    loop {
        let page = soak
            .mirror
            .groups_page(connection, offset, 1_000)
            .await
            .context("reading the mirror's groups")?;
        let len = page.len();
        for group in page {
            let Some(id) = group.id else {
                differences.push("a mirrored group without an id".to_owned());
                continue;
            };
            let members = soak
                .mirror
                .members(connection, &id)
                .await
                .context("reading the mirror's members")?
                .into_iter()
                .map(|member| member.id.as_str().to_owned())
                .collect();
            mirror_groups.insert(id.as_str().to_owned(), (group.display_name, members));
        }
        if len < 1_000 {
            break;
        }
        offset += 1_000;
    }
    differences.extend(compare("group", &directory_groups, &mirror_groups));
    Ok(differences)
}

/// The objects missing from the mirror, extra in it, or different, at most 5 of each.
fn compare<V: PartialEq + std::fmt::Debug>(
    kind: &str,
    directory: &BTreeMap<String, V>,
    mirror: &BTreeMap<String, V>,
) -> Vec<String> {
    const SHOWN: usize = 5;
    let missing: Vec<&String> = directory
        .keys()
        .filter(|id| !mirror.contains_key(*id))
        .collect();
    let extra: Vec<&String> = mirror
        .keys()
        .filter(|id| !directory.contains_key(*id))
        .collect();
    let changed: Vec<String> = directory
        .iter()
        .filter_map(|(id, want)| {
            let have = mirror.get(id)?;
            (have != want).then(|| format!("{kind} {id}: directory {want:?}, mirror {have:?}"))
        })
        .collect();
    let mut out = Vec::new();
    if !missing.is_empty() {
        out.push(format!(
            "{} {kind}(s) missing from the mirror, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(SHOWN)]
        ));
    }
    if !extra.is_empty() {
        out.push(format!(
            "{} {kind}(s) in the mirror but not in the directory, e.g. {:?}",
            extra.len(),
            &extra[..extra.len().min(SHOWN)]
        ));
    }
    out.extend(changed.into_iter().take(SHOWN));
    out
}

/// `attempt`, tried up to three times 100 ms apart (a busy database is not a finding).
async fn retried<T, F, Fut>(mut attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if tries >= 2 => return Err(error),
            Err(_) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// (c) Refresh tokens.
// ---------------------------------------------------------------------------------------

/// What a token check of a connection found.
enum TokenState {
    Works,
    NeedsReconnect,
    RevokedNotNoticed,
}

/// (c) for each of `ids`: "reconnect needed" only for a grant the soak revoked; an
/// active connection's stored refresh token refreshes, unless the soak revoked it.
async fn check_tokens(soak: &Soak, ids: impl IntoIterator<Item = ConnectionId>) {
    for id in ids {
        let Some(tenant) = soak.tenant(id) else {
            continue;
        };
        match token_state(soak, tenant).await {
            Ok(TokenState::Works | TokenState::NeedsReconnect) => {
                add(&soak.stats.token_checks);
            }
            Ok(TokenState::RevokedNotNoticed) => {
                add(&soak.stats.token_checks);
                add(&soak.stats.token_checks_pending_revoked);
            }
            Err(Finding::Violation(text)) => {
                add(&soak.stats.token_checks);
                soak.violation(format!("{}: {text}", tenant.id));
            }
            Err(Finding::Error(error)) => soak.error(format!(
                "{}: could not check the refresh token: {error:#}",
                tenant.id
            )),
        }
    }
}

enum Finding {
    Violation(String),
    Error(anyhow::Error),
}

async fn token_state(soak: &Soak, tenant: &Tenant) -> Result<TokenState, Finding> {
    let (owner, id) = (&tenant.owner, tenant.connection);
    let connection = retried(|| async { Ok(soak.store.get(owner, id).await?) })
        .await
        .map_err(Finding::Error)?;
    let revoked = soak.revocation(id).is_some();
    match connection.status {
        ConnectionStatus::Active => {}
        ConnectionStatus::NeedsReconnect { reason, .. } => {
            return if revoked {
                Ok(TokenState::NeedsReconnect)
            } else {
                Err(Finding::Violation(format!(
                    "says \"reconnect needed\" ({reason}) but the soak did not revoke its grant"
                )))
            };
        }
        other => {
            return Err(Finding::Violation(format!(
                "unexpected status {other:?} (the soak never disables)"
            )));
        }
    }
    let stored = retried(|| async { Ok(soak.store.load_token(owner, id).await?) })
        .await
        .map_err(Finding::Error)?;
    let tenant_id = entra_auth::TenantId::parse(&tenant.id)
        .map_err(|error| Finding::Error(anyhow::Error::new(error)))?;
    match soak.entra.refresh(&tenant_id, &stored.token).await {
        Ok(_) => Ok(TokenState::Works),
        Err(error) if revoked && error.requires_reauthorization() => {
            Ok(TokenState::RevokedNotNoticed)
        }
        Err(error) if error.requires_reauthorization() => Err(Finding::Violation(format!(
            "refresh token lost: active, its grant not revoked, and its stored refresh \
             token (version {}) is refused: {error}",
            stored.version.get()
        ))),
        Err(error) => Err(Finding::Error(
            anyhow::Error::new(error).context("the token request failed"),
        )),
    }
}

// ---------------------------------------------------------------------------------------
// The changer.
// ---------------------------------------------------------------------------------------

/// Changes the tenants at `per_second` until `stop`: users added, renamed, disabled or
/// enabled, deleted (soft or for good), groups added or renamed, members added and
/// removed. Never touches a tenant while its mirror is being checked; changes a tenant
/// being synced with probability `mid_sync` (and counts it, so that sync goes unchecked).
async fn changer(
    soak: Arc<Soak>,
    seed: u64,
    per_second: f64,
    mid_sync: f64,
    initial_users: usize,
    mut stop: watch::Receiver<bool>,
) {
    if per_second <= 0.0 {
        return;
    }
    let mut rng = StdRng::seed_from_u64(seed ^ 0x00c4_a75e);
    let mut every = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut serial = 0_u64;
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.changed() => return,
        }
        let tenant = &soak.tenants[rng.random_range(0..soak.tenants.len())];
        let mut freeze = tenant.freeze();
        if freeze.checking > 0 || (freeze.syncing > 0 && !rng.random_bool(mid_sync)) {
            add(&soak.stats.changes_deferred);
            continue;
        }
        if freeze.syncing > 0 {
            add(&soak.stats.changes_mid_sync);
        }
        // Counted whether or not the simulator takes it: a refused change makes a
        // sync unchecked, never wrongly checked.
        freeze.changes += 1;
        serial += 1;
        match change(tenant, &mut rng, serial, initial_users) {
            Ok(()) => add(&soak.stats.changes),
            Err(_) => add(&soak.stats.changes_refused),
        }
        drop(freeze);
    }
}

/// One random change to `tenant`'s directory (never to its admin, whose grant the
/// connection holds).
fn change(
    tenant: &Tenant,
    rng: &mut StdRng,
    serial: u64,
    initial_users: usize,
) -> Result<(), tenant_sim::Error> {
    let control = &tenant.control;
    let users: Vec<_> = control
        .users()
        .into_iter()
        .filter(|user| user.id != tenant.admin_id)
        .collect();
    let groups = control.groups();
    let some_user = |rng: &mut StdRng| {
        (!users.is_empty()).then(|| users[rng.random_range(0..users.len())].clone())
    };
    let some_group = |rng: &mut StdRng| {
        (!groups.is_empty()).then(|| groups[rng.random_range(0..groups.len())].clone())
    };
    let roll = rng.random_range(0..100);
    match roll {
        0..20 if users.len() < initial_users * 3 / 2 => {
            let fields = UserFields::new()
                .display_name(format!("Soak Person {serial}"))
                .job_title("Soak tester");
            control.add_user(&fields).map(drop)
        }
        0..35 => match some_user(rng) {
            Some(user) => control
                .update_user(
                    &user.id,
                    &UserFields::new().display_name(format!("Renamed Person {serial}")),
                )
                .map(drop),
            None => Ok(()),
        },
        35..45 => match some_user(rng) {
            Some(user) => control
                .update_user(
                    &user.id,
                    &UserFields::new().account_enabled(!user.account_enabled),
                )
                .map(drop),
            None => Ok(()),
        },
        45..55 if users.len() > initial_users / 2 => match some_user(rng) {
            Some(user) => {
                let deletion = if rng.random_bool(0.5) {
                    Deletion::Soft
                } else {
                    Deletion::Permanent
                };
                control.delete_user(&user.id, deletion)
            }
            None => Ok(()),
        },
        55..60 => {
            if rng.random_bool(0.5) || groups.is_empty() {
                control
                    .add_group(GroupFields::new().display_name(format!("Soak Team {serial}")))
                    .map(drop)
            } else {
                match some_group(rng) {
                    Some(group) => control
                        .update_group(
                            &group.id,
                            GroupFields::new().display_name(format!("Renamed Team {serial}")),
                        )
                        .map(drop),
                    None => Ok(()),
                }
            }
        }
        60..80 => match (some_group(rng), some_user(rng)) {
            (Some(group), Some(user)) => {
                // Now and then a nested group instead of a user.
                let member = match some_group(rng) {
                    Some(other) if rng.random_bool(0.2) && other.id != group.id => other.id,
                    _ => user.id,
                };
                control.add_member(&group.id, &member).map(drop)
            }
            _ => Ok(()),
        },
        _ => match some_group(rng) {
            Some(group) => {
                let members = control.group_member_ids(&group.id)?;
                if members.is_empty() {
                    Ok(())
                } else {
                    let member = &members[rng.random_range(0..members.len())];
                    control.remove_member(&group.id, member).map(drop)
                }
            }
            None => Ok(()),
        },
    }
}

// ---------------------------------------------------------------------------------------
// Workers, and the controller that kills them, revokes, reconnects and checks.
// ---------------------------------------------------------------------------------------

/// A worker's round, as the controller hears of it.
struct Round {
    worker: String,
    report: RoundReport,
}

/// Rounds until `stop`, as `Worker::run` does, each report sent to the controller.
async fn run_worker(
    worker: Worker,
    check_every: Duration,
    reports: mpsc::UnboundedSender<Round>,
    mut stop: watch::Receiver<bool>,
) {
    let name = worker.holder().to_string();
    loop {
        let report = worker.round(&mut stop).await;
        let busy = report.claimed > 0 && report.store_errors == 0;
        let _ = reports.send(Round {
            worker: name.clone(),
            report,
        });
        if *stop.borrow() {
            return;
        }
        let wait = if busy { Duration::ZERO } else { check_every };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

struct Slot {
    holder: String,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Tally {
    rounds: u64,
    idle_rounds: u64,
    store_errors: u64,
    rounds_capped: u64,
    kills: u64,
    kills_mid_sync: u64,
    syncs_cut_off: u64,
    revocations: u64,
    reconnects: u64,
    throttled_tenants: u64,
    final_syncs: u64,
}

struct Controller<'a> {
    soak: &'a Arc<Soak>,
    rng: StdRng,
    slots: Vec<Slot>,
    reports: mpsc::UnboundedSender<Round>,
    stop: watch::Receiver<bool>,
    tally: Tally,
    revoke_next_sessions: bool,
    throttled: Vec<usize>,
    next_worker: usize,
}

impl Controller<'_> {
    fn spawn_worker(&mut self) -> anyhow::Result<Slot> {
        self.next_worker += 1;
        let worker = self.soak.worker(&format!("w{}", self.next_worker))?;
        let holder = worker.holder().to_string();
        let task = tokio::spawn(run_worker(
            worker,
            Duration::from_millis(200),
            self.reports.clone(),
            self.stop.clone(),
        ));
        Ok(Slot { holder, task })
    }

    /// Kills a worker while it has syncs under way (waiting up to 3 s for one that
    /// has), and starts a fresh one in its place.
    async fn kill_one(&mut self) -> anyhow::Result<()> {
        let waited = Instant::now();
        let victim = loop {
            let busy: Vec<usize> = {
                let in_flight = locked(&self.soak.in_flight);
                (0..self.slots.len())
                    .filter(|n| {
                        in_flight
                            .values()
                            .flatten()
                            .any(|holder| holder.to_string() == self.slots[*n].holder)
                    })
                    .collect()
            };
            if !busy.is_empty() {
                break Some(busy[self.rng.random_range(0..busy.len())]);
            }
            if waited.elapsed() > Duration::from_secs(3) {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let n = victim.unwrap_or_else(|| self.rng.random_range(0..self.slots.len()));
        let fresh = self.spawn_worker()?;
        let old = std::mem::replace(&mut self.slots[n], fresh);
        let cut_off = locked(&self.soak.in_flight)
            .values()
            .flatten()
            .filter(|holder| holder.to_string() == old.holder)
            .count();
        old.task.abort();
        match old.task.await {
            Err(error) if error.is_panic() => self.soak.violation(format!(
                "worker {} panicked: {}",
                old.holder,
                panic_text(error.into_panic().as_ref())
            )),
            _ => {}
        }
        self.tally.kills += 1;
        self.tally.syncs_cut_off += cut_off as u64;
        if victim.is_some() {
            self.tally.kills_mid_sync += 1;
        }
        eprintln!(
            "[{:7.1}s] killed worker {} with {cut_off} sync(s) under way; started {}",
            self.soak.elapsed(),
            old.holder,
            self.slots[n].holder
        );
        Ok(())
    }

    /// Revokes the grant of a random active tenant not revoked yet.
    fn revoke_one(&mut self) {
        let candidates: Vec<usize> = {
            let revoked = locked(&self.soak.revoked);
            (0..self.soak.tenants.len())
                .filter(|n| !revoked.contains_key(&self.soak.tenants[*n].connection))
                .collect()
        };
        // Keep most of the fleet linked.
        if candidates.len() * 4 < self.soak.tenants.len() * 3 || candidates.is_empty() {
            return;
        }
        let tenant = &self.soak.tenants[candidates[self.rng.random_range(0..candidates.len())]];
        let sessions = self.revoke_next_sessions;
        self.revoke_next_sessions = !sessions;
        let done = if sessions {
            tenant
                .control
                .revoke_sign_in_sessions(&tenant.admin_upn)
                .map(drop)
        } else {
            tenant
                .control
                .revoke_user_grants(&tenant.admin_upn)
                .map(drop)
        };
        match done {
            Ok(()) => {
                locked(&self.soak.revoked)
                    .insert(tenant.connection, Revocation { at: Instant::now() });
                self.tally.revocations += 1;
                eprintln!(
                    "[{:7.1}s] revoked {} ({})",
                    self.soak.elapsed(),
                    tenant.id,
                    if sessions {
                        "sign-in sessions"
                    } else {
                        "all grants"
                    }
                );
            }
            Err(error) => self
                .soak
                .error(format!("{}: could not revoke: {error}", tenant.id)),
        }
    }

    /// Reconnects a revoked tenant that says "reconnect needed" and is not being synced,
    /// through the simulated sign-in (with the claims its status keeps).
    async fn reconnect_one(&mut self) {
        let revoked: Vec<ConnectionId> = locked(&self.soak.revoked).keys().copied().collect();
        let mut ready = Vec::new();
        for id in revoked {
            let Some(tenant) = self.soak.tenant(id) else {
                continue;
            };
            if locked(&self.soak.in_flight).contains_key(&id) {
                continue;
            }
            if let Ok(connection) = self.soak.store.get(&tenant.owner, id).await
                && let ConnectionStatus::NeedsReconnect { claims, .. } = connection.status
            {
                ready.push((tenant, claims));
            }
        }
        if ready.is_empty() {
            return;
        }
        let (tenant, claims) = ready.swap_remove(self.rng.random_range(0..ready.len()));
        let reconnected = async {
            let (_client, grant) = self
                .soak
                .sign_in
                .browser_with_claims(
                    Some(&tenant.admin_upn),
                    claims.as_deref(),
                    Duration::from_secs(30),
                    simulated_browser,
                )
                .await?;
            reconnect_connection(
                self.soak.store.as_ref(),
                &tenant.owner,
                tenant.connection,
                &grant,
            )
            .await
        }
        .await;
        match reconnected {
            Ok(_) => {
                locked(&self.soak.revoked).remove(&tenant.connection);
                self.tally.reconnects += 1;
                eprintln!("[{:7.1}s] reconnected {}", self.soak.elapsed(), tenant.id);
            }
            Err(error) => self
                .soak
                .error(format!("{}: could not reconnect: {error:#}", tenant.id)),
        }
    }

    /// Lifts the throttle of the tenants throttled last time and throttles a new tenth
    /// (one resource unit a second, burst 2: a delta round meets 429s).
    fn rethrottle(&mut self) {
        for n in self.throttled.drain(..) {
            self.soak.tenants[n].control.set_throttle(None);
        }
        let count = (self.soak.tenants.len() / 10).max(1);
        for _ in 0..count {
            let n = self.rng.random_range(0..self.soak.tenants.len());
            self.soak.tenants[n]
                .control
                .set_throttle(ThrottleSettings::new(1.0, 2.0).ok());
            self.throttled.push(n);
            self.tally.throttled_tenants += 1;
        }
    }

    fn on_round(&mut self, round: &Round) {
        if round.report.claimed == 0 {
            self.tally.idle_rounds += 1;
            self.tally.store_errors += round.report.store_errors as u64;
            return;
        }
        self.tally.store_errors += round.report.store_errors as u64;
        self.tally.rounds += 1;
        if round.report.capped {
            self.tally.rounds_capped += 1;
        }
        let stats = &self.soak.stats;
        let report = &round.report;
        {
            eprintln!(
                "[{:7.1}s] round {} {}: claimed {}, synced {}, failed {}, reconnect needed {}, \
                 skipped {}, store errors {} | syncs {}, mirror checks {}, token checks {}, \
                 violations {}",
                self.soak.elapsed(),
                self.tally.rounds,
                round.worker,
                report.claimed,
                report.synced,
                report.failed,
                report.needs_reconnect,
                report.skipped,
                report.store_errors,
                get(&stats.syncs_started),
                get(&stats.mirror_checks),
                get(&stats.token_checks),
                locked(&self.soak.violations).len(),
            );
        }
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "the soak's timeline, read top to bottom"
)]
async fn run(args: &Args, soak: &Arc<Soak>) -> Summary {
    let (stop_tx, stop) = watch::channel(false);
    let (reports, mut rounds) = mpsc::unbounded_channel();
    let mut controller = Controller {
        soak,
        rng: StdRng::seed_from_u64(args.seed ^ 0x50a4),
        slots: Vec::new(),
        reports,
        stop: stop.clone(),
        tally: Tally::default(),
        revoke_next_sessions: false,
        throttled: Vec::new(),
        next_worker: 0,
    };
    eprintln!(
        "soak: {} tenants x {} users, {} workers x {} syncs, interval {:?}, lease {:?}, \
         faults {:.0} %, {} changes/s, for {:?} on {}",
        soak.tenants.len(),
        args.users,
        args.workers,
        args.concurrency,
        args.interval,
        args.lease_ttl,
        args.fault_rate * 100.0,
        args.changes_per_second,
        args.duration,
        if args.postgres.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
    );
    let changer_task = tokio::spawn(changer(
        Arc::clone(soak),
        args.seed,
        args.changes_per_second,
        args.mid_sync_changes,
        usize::from(args.users),
        stop.clone(),
    ));
    for _ in 0..args.workers {
        match controller.spawn_worker() {
            Ok(slot) => controller.slots.push(slot),
            Err(error) => soak.error(format!("could not start a worker: {error:#}")),
        }
    }
    let deadline = tokio::time::Instant::now() + args.duration;
    let ticker = |every: Duration| {
        let every = every.max(Duration::from_millis(100));
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    };
    let mut kill = ticker(args.kill_every);
    let mut revoke = ticker(args.revoke_every);
    let mut reconnect = ticker(args.revoke_every + args.revoke_every / 3);
    let mut throttle = ticker(args.throttle_every);
    let mut sweep = ticker(args.sweep_every);
    controller.rethrottle();
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => break,
            Some(round) = rounds.recv() => {
                controller.on_round(&round);
                let touched: Vec<ConnectionId> = locked(&soak.touched).drain().collect();
                check_tokens(soak, touched).await;
            }
            _ = kill.tick() => {
                if let Err(error) = controller.kill_one().await {
                    soak.error(format!("could not replace a killed worker: {error:#}"));
                }
            }
            _ = revoke.tick() => controller.revoke_one(),
            _ = reconnect.tick() => controller.reconnect_one().await,
            _ = throttle.tick() => controller.rethrottle(),
            _ = sweep.tick() => {
                check_tokens(soak, soak.tenants.iter().map(|t| t.connection)).await;
            }
        }
    }

    // The end: no more changes, kills or revocations; the workers finish their rounds.
    eprintln!("[{:7.1}s] stopping: changer and workers", soak.elapsed());
    let _ = stop_tx.send(true);
    if let Err(error) = changer_task.await
        && error.is_panic()
    {
        soak.violation(format!(
            "the changer panicked: {}",
            panic_text(error.into_panic().as_ref())
        ));
    }
    for slot in std::mem::take(&mut controller.slots) {
        let grace = soak.options.grace + Duration::from_secs(10);
        match tokio::time::timeout(grace, slot.task).await {
            Ok(Err(error)) if error.is_panic() => soak.violation(format!(
                "worker {} panicked: {}",
                slot.holder,
                panic_text(error.into_panic().as_ref())
            )),
            Ok(_) => {}
            Err(_) => soak.error(format!(
                "worker {} did not stop within its grace",
                slot.holder
            )),
        }
    }
    while let Ok(round) = rounds.try_recv() {
        controller.on_round(&round);
    }
    let touched: Vec<ConnectionId> = locked(&soak.touched).drain().collect();
    check_tokens(soak, touched).await;

    // A last sync of every tenant, without faults, throttling or changes: every mirror
    // converges to its directory (a), every revoked grant ends "reconnect needed" (c).
    for tenant in &soak.tenants {
        tenant.control.set_faults(FaultSettings::none());
        tenant.control.set_throttle(None);
    }
    controller.tally.final_syncs = final_syncs(soak).await;
    check_tokens(soak, soak.tenants.iter().map(|t| t.connection)).await;
    Summary::of(soak, &controller.tally, args)
}

/// Syncs every active tenant once more (waiting out leases a killed worker left); a
/// revoked one must end "reconnect needed", the others must sync and match.
async fn final_syncs(soak: &Arc<Soak>) -> u64 {
    let syncer = soak.syncer();
    let holder = match LeaseHolder::new("soak-final") {
        Ok(holder) => holder,
        Err(error) => {
            soak.error(format!("no lease holder for the last syncs: {error}"));
            return 0;
        }
    };
    let mut last_syncs = 0;
    for tenant in &soak.tenants {
        let (owner, id) = (&tenant.owner, tenant.connection);
        let waited = Instant::now();
        let claim = loop {
            let attempt = async {
                let connection = soak.store.get(owner, id).await?;
                if !matches!(connection.status, ConnectionStatus::Active) {
                    return Ok::<_, anyhow::Error>(Some(None));
                }
                let lease = soak
                    .store
                    .acquire_lease(owner, id, &holder, soak.options.lease_ttl)
                    .await?;
                Ok(lease.map(|lease| Some(Claim::new(connection, lease))))
            };
            match attempt.await {
                Ok(Some(claim)) => break Ok(claim),
                Ok(None) if waited.elapsed() < soak.options.lease_ttl * 3 => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(None) => break Err(anyhow::anyhow!("its lease stayed held")),
                Err(error) => break Err(error),
            }
        };
        let claim = match claim {
            Ok(Some(claim)) => claim,
            Ok(None) => continue,
            Err(error) => {
                soak.error(format!("{}: no last sync: {error:#}", tenant.id));
                continue;
            }
        };
        let outcome = syncer.sync(&claim, &holder).await;
        last_syncs += 1;
        let revoked = soak.revocation(id).is_some();
        match (revoked, outcome) {
            (false, Outcome::Synced) | (true, Outcome::NeedsReconnect) => {}
            (true, other) => soak.violation(format!(
                "{}: its grant was revoked, and its last sync ended {other:?}, not \
                 \"reconnect needed\"",
                tenant.id
            )),
            (false, other) => soak.error(format!(
                "{}: its last sync (no faults, no throttling) ended {other:?}",
                tenant.id
            )),
        }
    }
    last_syncs
}

// ---------------------------------------------------------------------------------------
// The summary.
// ---------------------------------------------------------------------------------------

struct Summary {
    seconds: f64,
    tenants: usize,
    workers: u16,
    rounds: u64,
    rounds_capped: u64,
    idle_rounds: u64,
    store_errors: u64,
    syncs: u64,
    synced: u64,
    failed: u64,
    needs_reconnect: u64,
    lease_lost: u64,
    skipped: u64,
    final_syncs: u64,
    graph_requests: u64,
    faults_503: u64,
    faults_estimated: u64,
    throttled_429: u64,
    claims_challenges: u64,
    token_refreshes: u64,
    changes: u64,
    changes_mid_sync: u64,
    changes_refused: u64,
    revocations: u64,
    reconnects: u64,
    kills: u64,
    kills_mid_sync: u64,
    syncs_cut_off: u64,
    throttled_tenants: u64,
    mirror_checks: u64,
    mirror_unchecked: u64,
    overlap_checks: u64,
    token_checks: u64,
    token_checks_pending: u64,
    violations: Vec<String>,
    errors: Vec<String>,
}

impl Summary {
    fn of(soak: &Soak, tally: &Tally, args: &Args) -> Self {
        let counters = soak.sim.counters();
        let answered = |code: u16| counters.by_status().get(&code).copied().unwrap_or(0);
        let stats = &soak.stats;
        let faults_503 = answered(503);
        Self {
            seconds: soak.elapsed(),
            tenants: soak.tenants.len(),
            workers: args.workers,
            rounds: tally.rounds,
            rounds_capped: tally.rounds_capped,
            idle_rounds: tally.idle_rounds,
            store_errors: tally.store_errors,
            syncs: get(&stats.syncs_started),
            synced: get(&stats.synced),
            failed: get(&stats.failed),
            needs_reconnect: get(&stats.needs_reconnect),
            lease_lost: get(&stats.lease_lost),
            skipped: get(&stats.skipped),
            final_syncs: tally.final_syncs,
            graph_requests: counters.total(),
            faults_503,
            // The kinds are drawn evenly; the simulator counts dropped connections and
            // truncated bodies under the status they would have had.
            faults_estimated: faults_503 * FAULT_KINDS.len() as u64,
            throttled_429: answered(429),
            claims_challenges: counters.claims_challenges(),
            token_refreshes: counters.tokens().requests("refresh_token"),
            changes: get(&stats.changes),
            changes_mid_sync: get(&stats.changes_mid_sync),
            changes_refused: get(&stats.changes_refused),
            revocations: tally.revocations,
            reconnects: tally.reconnects,
            kills: tally.kills,
            kills_mid_sync: tally.kills_mid_sync,
            syncs_cut_off: tally.syncs_cut_off,
            throttled_tenants: tally.throttled_tenants,
            mirror_checks: get(&stats.mirror_checks),
            mirror_unchecked: get(&stats.mirror_unchecked_mid_sync_change),
            overlap_checks: get(&stats.overlap_checks),
            token_checks: get(&stats.token_checks),
            token_checks_pending: get(&stats.token_checks_pending_revoked),
            violations: locked(&soak.violations).clone(),
            errors: locked(&soak.errors).clone(),
        }
    }

    fn invariants_checked(&self) -> u64 {
        self.mirror_checks + self.overlap_checks + self.token_checks
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "seconds": self.seconds,
            "tenants": self.tenants,
            "workers": self.workers,
            "rounds": self.rounds,
            "rounds_capped": self.rounds_capped,
            "idle_rounds": self.idle_rounds,
            "claim_store_errors": self.store_errors,
            "syncs": self.syncs,
            "outcomes": {
                "synced": self.synced,
                "failed": self.failed,
                "needs_reconnect": self.needs_reconnect,
                "lease_lost": self.lease_lost,
                "skipped": self.skipped,
            },
            "final_syncs": self.final_syncs,
            "graph_requests": self.graph_requests,
            "faults_503": self.faults_503,
            "faults_estimated": self.faults_estimated,
            "throttled_429": self.throttled_429,
            "claims_challenges": self.claims_challenges,
            "token_refreshes": self.token_refreshes,
            "changes": self.changes,
            "changes_mid_sync": self.changes_mid_sync,
            "changes_refused": self.changes_refused,
            "revocations": self.revocations,
            "reconnects": self.reconnects,
            "worker_kills": self.kills,
            "worker_kills_mid_sync": self.kills_mid_sync,
            "syncs_cut_off": self.syncs_cut_off,
            "throttled_tenants": self.throttled_tenants,
            "invariants_checked": {
                "total": self.invariants_checked(),
                "mirror_equals_directory": self.mirror_checks,
                "mirror_unchecked_mid_sync_change": self.mirror_unchecked,
                "no_overlapping_sync": self.overlap_checks,
                "refresh_token_kept": self.token_checks,
                "refresh_token_revoked_not_yet_noticed": self.token_checks_pending,
            },
            "violations": self.violations.len(),
            "violation_details": self.violations,
            "check_errors": self.errors.len(),
            "check_error_details": self.errors,
        })
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "soak: {:.0} s, {} tenants, {} workers",
            self.seconds, self.tenants, self.workers
        )?;
        writeln!(
            f,
            "rounds {} ({} capped; {} idle, claim store errors {}), syncs {} (synced {}, \
             failed {}, reconnect needed {}, lease lost {}, skipped {}), last syncs {}",
            self.rounds,
            self.rounds_capped,
            self.idle_rounds,
            self.store_errors,
            self.syncs,
            self.synced,
            self.failed,
            self.needs_reconnect,
            self.lease_lost,
            self.skipped,
            self.final_syncs
        )?;
        writeln!(
            f,
            "graph requests {}, faults injected: 503 {} (with dropped connections and \
             truncated bodies about {}), 429 {}, claims challenges {}, token refreshes {}",
            self.graph_requests,
            self.faults_503,
            self.faults_estimated,
            self.throttled_429,
            self.claims_challenges,
            self.token_refreshes
        )?;
        writeln!(
            f,
            "changes {} ({} during a sync, {} refused), revocations {}, reconnects {}, \
             worker kills {} ({} mid-sync, {} syncs cut off), tenants throttled {}",
            self.changes,
            self.changes_mid_sync,
            self.changes_refused,
            self.revocations,
            self.reconnects,
            self.kills,
            self.kills_mid_sync,
            self.syncs_cut_off,
            self.throttled_tenants
        )?;
        writeln!(
            f,
            "invariants checked {}: mirror = directory {} ({} syncs unchecked after a \
             mid-sync change), no overlap {}, refresh token kept {} ({} revoked, not yet \
             noticed)",
            self.invariants_checked(),
            self.mirror_checks,
            self.mirror_unchecked,
            self.overlap_checks,
            self.token_checks,
            self.token_checks_pending
        )?;
        write!(
            f,
            "violations {}, check errors {}",
            self.violations.len(),
            self.errors.len()
        )?;
        for violation in &self.violations {
            write!(f, "\n  violation: {violation}")?;
        }
        for error in &self.errors {
            write!(f, "\n  check error: {error}")?;
        }
        Ok(())
    }
}
