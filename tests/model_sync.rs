//! Model-based tests of the sync (issue 15, part 2). Proptest generates sequences of
//! directory changes in tenant-sim (users added, updated, soft and permanently deleted;
//! groups added, renamed, deleted; soft-deleted users and Microsoft 365 groups restored
//! with their memberships; users and nested groups added to and removed from groups), delta links expired (400 `syncStateNotFound`) or reset (410 `resyncRequired`),
//! faults (500/503/504, dropped connections, truncated bodies) and throttling switched on
//! and off, and the synced user properties switched, interleaved with syncs. The test
//! keeps its own model of the directory, checked against the simulator's control API, and
//! after every sync:
//!
//! - that succeeded: the sink holds exactly the directory (the same user ids with the same
//!   synced properties, the same groups, the same direct memberships with their types),
//!   the sync was of the kind the engine must choose (full without links or after the
//!   user properties changed, resync after the links expired, else delta), its summary's
//!   totals are what the sink holds, and it counted one commit;
//! - that failed: faults or throttling were on (throttling alone fails only with a 429),
//!   the error says "retry later", and the sink holds exactly what the last successful
//!   sync left: no partial commit.
//!
//! Each sequence ends with faults and throttling off and two syncs, which must converge and
//! then find nothing to change. Shrunk failures are kept in
//! `tests/model_sync.proptest-regressions` and replayed first on every run.
//!
//! Sizes: [`MEMORY_CASES`], [`MIRROR_CASES`] and the sequence lengths beside them, about
//! 25 s for both in a debug build on 2 cores; `PROPTEST_CASES=N` sets the cases of each.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use connection_store::testkit::{sample_connection, unique_owner};
use connection_store::{ConnectionId, ConnectionStore as _, LeaseHolder};
use connection_store_sql::{EncryptionKey, KeyId, KeyRing, SqlPool, SqlStore, sqlx};
use futures::TryStreamExt as _;
use graph_client::sync::{
    self, DEFAULT_GROUP_SELECT, DEFAULT_USER_SELECT, MemorySink, Phase, SyncError, SyncKind,
    SyncOptions, SyncProgress, SyncReport,
};
use graph_client::{ErrorAction, GraphClient, GraphError, Group, RetryPolicy, StaticToken, User};
use m365_link_app::connect::{SignIn, simulated_browser};
use m365_link_app::mirror::{FLUSH_CHANGES, MAX_PAGE, Mirror};
use proptest::prelude::*;
use proptest::sample::{Index, select, subsequence};
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use secrecy::ExposeSecret as _;
use tenant_sim::{
    Control, Deletion, FaultKind, FaultSettings, GroupFields, TenantSim, ThrottleSettings,
    UserFields, UserType,
};

/// Cases of the `MemorySink` test.
const MEMORY_CASES: u32 = 64;
/// Most operations in one sequence of the `MemorySink` test.
const MEMORY_OPS: usize = 48;
/// Cases of the `SQLite` mirror test.
const MIRROR_CASES: u32 = 24;
/// Most operations in one sequence of the mirror test.
const MIRROR_OPS: usize = 32;

/// Where shrunk failures are kept (relative to the package root, where cargo runs tests).
const REGRESSIONS: &str = "tests/model_sync.proptest-regressions";

/// The seeded tenant each case starts from: the admin and 7 people, "All Company" and 4
/// department groups.
const SEEDED_USERS: usize = 8;
const SEEDED_GROUPS: usize = 5;

/// The other user selection a sequence may switch to: the next sync is a full import that
/// keeps only these (without given name, surname, mail, department).
const REDUCED_USER_SELECT: &[&str] = &[
    "displayName",
    "userPrincipalName",
    "jobTitle",
    "accountEnabled",
    "userType",
];

/// Texts an update writes: a repeated value (an update that changes nothing), an empty
/// one, a quote and non-ASCII letters.
const TEXTS: &[&str] = &[
    "Sales",
    "Legal",
    "",
    "O'Brien & Co",
    "Zoë Ærøskøbing",
    "Sales",
];

/// The faults a sync meets (not `ExtraLatency`: it only slows the test down).
const FAULTS: [FaultKind; 5] = [
    FaultKind::InternalServerError,
    FaultKind::ServiceUnavailable,
    FaultKind::GatewayTimeout,
    FaultKind::DroppedConnection,
    FaultKind::TruncatedBody,
];

// ---------------------------------------------------------------------------------------
// Operations

/// One step of a sequence. Objects are picked by [`Index`] among those alive when the
/// step runs, so a shrunk sequence still names real objects.
#[derive(Debug, Clone)]
enum Op {
    /// One sync (full import, delta round, or resync: the engine decides).
    Sync,
    AddUser {
        guest: bool,
        job_title: &'static str,
        department: &'static str,
    },
    UpdateUser {
        user: Index,
        change: UserChange,
    },
    DeleteUser {
        user: Index,
        permanent: bool,
    },
    AddGroup {
        unified: bool,
    },
    UpdateGroup {
        group: Index,
        change: GroupChange,
    },
    DeleteGroup {
        group: Index,
        permanent: bool,
    },
    /// Adds a user, or (`nested`) another group, to a group.
    AddMember {
        group: Index,
        member: Index,
        nested: bool,
    },
    RemoveMember {
        group: Index,
        member: Index,
    },
    /// Brings a soft-deleted user back from deleted items, with its memberships.
    RestoreUser {
        user: Index,
    },
    /// Brings a soft-deleted Microsoft 365 group back from deleted items.
    RestoreGroup {
        group: Index,
    },
    /// The next delta request gets 400 `syncStateNotFound`.
    ExpireDeltaTokens,
    /// The next delta request gets 410 `resyncRequired`.
    ForceResync,
    /// Faults on (rate, kinds) or off.
    Faults(Option<(f64, Vec<FaultKind>)>),
    /// Throttling on (units per second, burst) or off.
    Throttle(Option<(f64, f64)>),
    /// Syncs from now on keep [`REDUCED_USER_SELECT`] (or again [`DEFAULT_USER_SELECT`]).
    SelectUsers {
        reduced: bool,
    },
    /// A sync during which the directory changes: `change` is made when the engine
    /// starts `phase` (or after the sync, if it never does). What that sync commits may
    /// miss the change; the next one must not (spec 9: a change made during a round comes
    /// in the next).
    SyncDuring {
        phase: Phase,
        change: Box<Op>,
    },
}

#[derive(Debug, Clone)]
enum UserChange {
    DisplayName(&'static str),
    GivenName(&'static str),
    Surname(&'static str),
    Mail(&'static str),
    JobTitle(&'static str),
    Department(&'static str),
    Enabled(bool),
    Guest(bool),
}

#[derive(Debug, Clone)]
enum GroupChange {
    DisplayName(&'static str),
    Description(&'static str),
}

fn text() -> impl Strategy<Value = &'static str> {
    select(TEXTS)
}

fn user_change() -> impl Strategy<Value = UserChange> {
    prop_oneof![
        text().prop_map(UserChange::DisplayName),
        text().prop_map(UserChange::GivenName),
        text().prop_map(UserChange::Surname),
        text().prop_map(UserChange::Mail),
        text().prop_map(UserChange::JobTitle),
        text().prop_map(UserChange::Department),
        any::<bool>().prop_map(UserChange::Enabled),
        any::<bool>().prop_map(UserChange::Guest),
    ]
}

fn group_change() -> impl Strategy<Value = GroupChange> {
    prop_oneof![
        text().prop_map(GroupChange::DisplayName),
        text().prop_map(GroupChange::Description),
    ]
}

fn faults() -> impl Strategy<Value = Option<(f64, Vec<FaultKind>)>> {
    prop_oneof![
        1 => Just(None),
        2 => (
            select(&[0.1, 0.3, 0.6][..]),
            subsequence(FAULTS.to_vec(), 1..=FAULTS.len())
        )
            .prop_map(Some),
    ]
}

/// Buckets of at least 6 units (the dearest request a sync sends costs 2), refilled fast
/// enough that a `Retry-After` is a few milliseconds.
fn throttle() -> impl Strategy<Value = Option<(f64, f64)>> {
    prop_oneof![
        Just(None),
        (select(&[300.0, 1000.0][..]), select(&[6.0, 20.0][..])).prop_map(Some),
    ]
}

/// The changes to users, groups and memberships.
fn directory_change() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<bool>(), text(), text()).prop_map(|(guest, job_title, department)| {
            Op::AddUser { guest, job_title, department }
        }),
        4 => (any::<Index>(), user_change())
            .prop_map(|(user, change)| Op::UpdateUser { user, change }),
        2 => (any::<Index>(), any::<bool>())
            .prop_map(|(user, permanent)| Op::DeleteUser { user, permanent }),
        2 => any::<bool>().prop_map(|unified| Op::AddGroup { unified }),
        2 => (any::<Index>(), group_change())
            .prop_map(|(group, change)| Op::UpdateGroup { group, change }),
        1 => (any::<Index>(), any::<bool>())
            .prop_map(|(group, permanent)| Op::DeleteGroup { group, permanent }),
        4 => (any::<Index>(), any::<Index>(), any::<bool>())
            .prop_map(|(group, member, nested)| Op::AddMember { group, member, nested }),
        2 => (any::<Index>(), any::<Index>())
            .prop_map(|(group, member)| Op::RemoveMember { group, member }),
        1 => any::<Index>().prop_map(|user| Op::RestoreUser { user }),
        2 => any::<Index>().prop_map(|group| Op::RestoreGroup { group }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => Just(Op::Sync),
        20 => directory_change(),
        2 => (
            select(&[Phase::Users, Phase::Groups, Phase::Memberships, Phase::Committing][..]),
            directory_change(),
        )
            .prop_map(|(phase, change)| Op::SyncDuring { phase, change: Box::new(change) }),
        1 => Just(Op::ExpireDeltaTokens),
        1 => Just(Op::ForceResync),
        3 => faults().prop_map(Op::Faults),
        1 => throttle().prop_map(Op::Throttle),
        1 => any::<bool>().prop_map(|reduced| Op::SelectUsers { reduced }),
    ]
}

/// A case: the tenant's seed and the operations.
fn sequence(max_ops: usize) -> impl Strategy<Value = (u64, Vec<Op>)> {
    (0..16u64, proptest::collection::vec(op(), 1..=max_ops))
}

// ---------------------------------------------------------------------------------------
// What a sink holds, and what the directory holds

/// A user's synced properties ([`DEFAULT_USER_SELECT`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct UserRow {
    user_principal_name: Option<String>,
    display_name: Option<String>,
    given_name: Option<String>,
    surname: Option<String>,
    mail: Option<String>,
    job_title: Option<String>,
    department: Option<String>,
    account_enabled: Option<bool>,
    user_type: Option<String>,
}

impl UserRow {
    /// The properties a sync keeps: all, or those of [`REDUCED_USER_SELECT`].
    fn selected(&self, reduced: bool) -> Self {
        if !reduced {
            return self.clone();
        }
        Self {
            given_name: None,
            surname: None,
            mail: None,
            department: None,
            ..self.clone()
        }
    }
}

impl From<&User> for UserRow {
    fn from(user: &User) -> Self {
        Self {
            user_principal_name: user.user_principal_name.clone(),
            display_name: user.display_name.clone(),
            given_name: user.given_name.clone(),
            surname: user.surname.clone(),
            mail: user.mail.clone(),
            job_title: user.job_title.clone(),
            department: user.department.clone(),
            account_enabled: user.account_enabled,
            user_type: user.user_type.clone(),
        }
    }
}

/// A group's synced properties ([`DEFAULT_GROUP_SELECT`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct GroupRow {
    display_name: Option<String>,
    description: Option<String>,
    mail: Option<String>,
    mail_enabled: Option<bool>,
    security_enabled: Option<bool>,
    group_types: Vec<String>,
}

impl From<&Group> for GroupRow {
    fn from(group: &Group) -> Self {
        Self {
            display_name: group.display_name.clone(),
            description: group.description.clone(),
            mail: group.mail.clone(),
            mail_enabled: group.mail_enabled,
            security_enabled: group.security_enabled,
            group_types: group.group_types.clone(),
        }
    }
}

/// Users, groups and direct memberships (group, member, member type) by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Tenant {
    users: BTreeMap<String, UserRow>,
    groups: BTreeMap<String, GroupRow>,
    memberships: BTreeSet<(String, String, String)>,
}

/// What differs, object by object, for a readable failure.
fn diff(got: &Tenant, want: &Tenant) -> String {
    fn rows<T: PartialEq + std::fmt::Debug>(
        out: &mut String,
        kind: &str,
        got: &BTreeMap<String, T>,
        want: &BTreeMap<String, T>,
    ) {
        for (id, row) in want {
            match got.get(id) {
                None => {
                    let _ = writeln!(out, "  {kind} {id} missing: {row:?}");
                }
                Some(held) if held != row => {
                    let _ = writeln!(out, "  {kind} {id}\n    held {held:?}\n    want {row:?}");
                }
                Some(_) => {}
            }
        }
        for (id, row) in got.iter().filter(|(id, _)| !want.contains_key(*id)) {
            let _ = writeln!(out, "  {kind} {id} should be gone: {row:?}");
        }
    }
    let mut out = String::new();
    rows(&mut out, "user", &got.users, &want.users);
    rows(&mut out, "group", &got.groups, &want.groups);
    for m in want.memberships.difference(&got.memberships) {
        let _ = writeln!(out, "  membership missing: {m:?}");
    }
    for m in got.memberships.difference(&want.memberships) {
        let _ = writeln!(out, "  membership should be gone: {m:?}");
    }
    out
}

fn same(got: &Tenant, want: &Tenant, what: &str) -> Result<(), TestCaseError> {
    if got == want {
        Ok(())
    } else {
        Err(TestCaseError::fail(format!("{what}:\n{}", diff(got, want))))
    }
}

/// An error with its sources, for failure messages.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

fn user_type(kind: UserType) -> &'static str {
    if kind == UserType::Guest {
        "Guest"
    } else {
        "Member"
    }
}

/// The test's model of the directory: every live object with its synced properties, and
/// what the next sync must be.
#[derive(Debug, Default)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent switches: the simulator's faults and throttle, the engine's inputs"
)]
struct Model {
    users: BTreeMap<String, UserRow>,
    groups: BTreeMap<String, GroupRow>,
    /// Soft-deleted users and Microsoft 365 groups (Microsoft's deleted items), as they
    /// were: a restore brings the row back unchanged.
    deleted_users: BTreeMap<String, UserRow>,
    deleted_groups: BTreeMap<String, GroupRow>,
    /// Users and groups added by the test so far (for unique names).
    added: usize,
    faults: bool,
    throttled: bool,
    /// Syncs keep [`REDUCED_USER_SELECT`] instead of [`DEFAULT_USER_SELECT`].
    reduced: bool,
    /// The selection of the last commit (whose links keep it); `None` before one.
    committed: Option<bool>,
    /// The links were expired or reset after the last commit.
    links_reset: bool,
}

impl Model {
    /// The engine's choice: a full import without links or when the user properties
    /// changed (a delta link keeps its `$select`, spec 9), a resync when Microsoft expired
    /// or reset the links, else a delta round.
    fn next_kind(&self) -> SyncKind {
        if self.committed != Some(self.reduced) {
            SyncKind::Full
        } else if self.links_reset {
            SyncKind::Resync
        } else {
            SyncKind::Delta
        }
    }

    /// The directory as the model has it, after checking it against what the control API
    /// says the tenant holds (ids, names, flags and every membership come from there).
    fn expected(&self, control: &Control) -> Result<Tenant, TestCaseError> {
        let users = control.users();
        let groups = control.groups();
        let user_ids: BTreeSet<&str> = users.iter().map(|u| u.id.as_str()).collect();
        let group_ids: BTreeSet<&str> = groups.iter().map(|g| g.id.as_str()).collect();
        prop_assert_eq!(
            self.users
                .keys()
                .map(String::as_str)
                .collect::<BTreeSet<_>>(),
            user_ids.clone(),
            "the model's users are the tenant's"
        );
        prop_assert_eq!(
            self.groups
                .keys()
                .map(String::as_str)
                .collect::<BTreeSet<_>>(),
            group_ids.clone(),
            "the model's groups are the tenant's"
        );
        for user in &users {
            let row = &self.users[&user.id];
            prop_assert_eq!(
                (
                    row.user_principal_name.as_deref(),
                    row.display_name.as_deref(),
                    row.account_enabled,
                    row.user_type.as_deref()
                ),
                (
                    Some(user.user_principal_name.as_str()),
                    Some(user.display_name.as_str()),
                    Some(user.account_enabled),
                    Some(user_type(user.user_type))
                ),
                "the model's user {} is the tenant's",
                &user.id
            );
        }
        let mut memberships = BTreeSet::new();
        for group in &groups {
            let row = &self.groups[&group.id];
            prop_assert_eq!(
                (
                    row.display_name.as_deref(),
                    row.security_enabled,
                    row.group_types.iter().any(|t| t == "Unified")
                ),
                (
                    Some(group.display_name.as_str()),
                    Some(group.security_enabled),
                    group.unified
                ),
                "the model's group {} is the tenant's",
                &group.id
            );
            let members = control
                .group_member_ids(&group.id)
                .map_err(|e| TestCaseError::fail(format!("members of {}: {e}", group.id)))?;
            for member in members {
                let kind = if user_ids.contains(member.as_str()) {
                    "user"
                } else if group_ids.contains(member.as_str()) {
                    "group"
                } else {
                    return Err(TestCaseError::fail(format!(
                        "group {} has member {member}, neither a live user nor a live group",
                        group.id
                    )));
                };
                memberships.insert((group.id.clone(), member, kind.to_owned()));
            }
        }
        let reduced = self.reduced;
        Ok(Tenant {
            users: self
                .users
                .iter()
                .map(|(id, row)| (id.clone(), row.selected(reduced)))
                .collect(),
            groups: self.groups.clone(),
            memberships,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Sinks

/// The `SQLite` store and mirror shared by the mirror test's cases (a connection each).
struct MirrorEnv {
    store: SqlStore,
    mirror: Mirror,
    dir: PathBuf,
}

impl Drop for MirrorEnv {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl MirrorEnv {
    async fn open() -> Self {
        let dir = std::env::temp_dir().join(format!("m365-model-sync-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        let keys = KeyRing::new(
            KeyId::new("model").expect("key id"),
            EncryptionKey::generate(),
        );
        let store = SqlStore::sqlite(dir.join("store.sqlite"))
            .key_ring(keys)
            .open()
            .await
            .expect("the SQLite store opens");
        let mirror = Mirror::open(&store).await.expect("the mirror opens");
        Self { store, mirror, dir }
    }

    /// A new connection, its sync lease held for the whole case; its sinks write every
    /// `gather` changes.
    async fn target(&self, gather: usize) -> Target {
        let owner = unique_owner("model-sync");
        let connection = self
            .store
            .create(
                &owner,
                sample_connection("Contoso", &ConnectionId::new().to_string(), "rt"),
            )
            .await
            .expect("a connection")
            .id;
        let holder = LeaseHolder::new("model-sync-worker").expect("holder");
        self.store
            .acquire_lease(&owner, connection, &holder, Duration::from_secs(3600))
            .await
            .expect("acquire the lease")
            .expect("the lease is free");
        Target::Mirror {
            store: self.store.clone(),
            mirror: self.mirror.clone(),
            connection,
            holder,
            gather,
        }
    }
}

/// The sink under test.
enum Target {
    Memory(MemorySink),
    /// The app's SQL mirror, a fenced sink made anew for each sync as the app's worker does.
    Mirror {
        store: SqlStore,
        mirror: Mirror,
        connection: ConnectionId,
        holder: LeaseHolder,
        /// [`MirrorSink::gather`](m365_link_app::mirror::MirrorSink::gather).
        gather: usize,
    },
}

impl Target {
    async fn sync(
        &mut self,
        graph: &GraphClient,
        options: &SyncOptions,
        progress: &dyn SyncProgress,
    ) -> Result<SyncReport, SyncError> {
        match self {
            Self::Memory(sink) => sync::run(graph, sink, options, progress).await,
            Self::Mirror {
                store,
                mirror,
                connection,
                holder,
                gather,
            } => {
                let mut sink = mirror
                    .sink(store, *connection)
                    .with_fence(holder.clone())
                    .gather(*gather);
                sync::run(graph, &mut sink, options, progress).await
            }
        }
    }

    /// What the sink's last commit left, and its commit count and stored totals.
    async fn contents(&self) -> (Tenant, u64, Option<[u64; 3]>) {
        match self {
            Self::Memory(sink) => {
                let directory = sink.directory();
                let tenant = Tenant {
                    users: directory
                        .users()
                        .iter()
                        .map(|(id, u)| (id.as_str().to_owned(), UserRow::from(u)))
                        .collect(),
                    groups: directory
                        .groups()
                        .iter()
                        .map(|(id, g)| (id.as_str().to_owned(), GroupRow::from(g)))
                        .collect(),
                    memberships: directory
                        .members()
                        .iter()
                        .flat_map(|(group, members)| {
                            members.iter().map(move |(member, kind)| {
                                (
                                    group.as_str().to_owned(),
                                    member.as_str().to_owned(),
                                    kind.as_str().to_owned(),
                                )
                            })
                        })
                        .collect(),
                };
                (tenant, sink.commits(), None)
            }
            Self::Mirror {
                store,
                mirror,
                connection,
                ..
            } => {
                let connection = *connection;
                let mut tenant = Tenant::default();
                let mut offset = 0;
                loop {
                    let page = mirror
                        .users_page(connection, None, offset, MAX_PAGE)
                        .await
                        .expect("read users");
                    offset += page.len() as u64;
                    for user in &page {
                        let id = user.id.as_ref().expect("a stored user has an id");
                        tenant.users.insert(id.as_str().to_owned(), user.into());
                    }
                    if page.len() < MAX_PAGE as usize {
                        break;
                    }
                }
                let mut offset = 0;
                loop {
                    let page = mirror
                        .groups_page(connection, offset, MAX_PAGE)
                        .await
                        .expect("read groups");
                    offset += page.len() as u64;
                    for group in &page {
                        let id = group.id.as_ref().expect("a stored group has an id");
                        tenant.groups.insert(id.as_str().to_owned(), group.into());
                    }
                    if page.len() < MAX_PAGE as usize {
                        break;
                    }
                }
                // Every membership row of the committed snapshot, also any whose group
                // the mirror no longer lists (which `members(group)` would not show).
                let SqlPool::Sqlite(pool) = store.pool() else {
                    panic!("the mirror test runs on SQLite");
                };
                let rows: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT group_id, member_id, member_type FROM mirror_memberships \
                     WHERE snapshot = (SELECT snapshot FROM mirror_state WHERE connection_id = ?1)",
                )
                .bind(connection.to_string())
                .fetch_all(&pool)
                .await
                .expect("read memberships");
                tenant.memberships = rows.into_iter().collect();
                let state = mirror.state(connection).await.expect("read the state");
                let commits = state.as_ref().map_or(0, |s| s.commits);
                let totals = state.map(|s| [s.users, s.groups, s.memberships]);
                (tenant, commits, totals)
            }
        }
    }
}

/// What a test's cases did, printed at its end (`--nocapture`), to see that the sequences
/// reach every kind of sync and fail some.
#[derive(Debug, Default)]
struct Stats {
    full: AtomicU64,
    delta: AtomicU64,
    resync: AtomicU64,
    failed: AtomicU64,
    changes: AtomicU64,
    during: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Stats {
    fn print(&self, test: &str) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        eprintln!(
            "{test}: {} changes, {} syncs with a change during them; syncs: {} full, {} delta, \
             {} resync committed, {} failed",
            get(&self.changes),
            get(&self.during),
            get(&self.full),
            get(&self.delta),
            get(&self.resync),
            get(&self.failed),
        );
    }
}

fn sizes(tenant: &Tenant) -> [u64; 3] {
    [
        tenant.users.len() as u64,
        tenant.groups.len() as u64,
        tenant.memberships.len() as u64,
    ]
}

// ---------------------------------------------------------------------------------------
// One case

/// The simulated tenant and the test's model of it.
struct Scene {
    sim: TenantSim,
    model: Model,
}

struct World {
    scene: Scene,
    graph: GraphClient,
    options: SyncOptions,
}

/// Makes one directory change from inside a sync, when the engine starts its phase (the
/// engine calls its progress from the sync's own task, between requests).
struct During<'a> {
    phase: Option<Phase>,
    pending: Mutex<Option<(&'a mut Scene, Op)>>,
}

impl<'a> During<'a> {
    fn take(&self) -> Option<(&'a mut Scene, Op)> {
        self.pending.lock().ok()?.take()
    }
}

impl SyncProgress for During<'_> {
    fn started(&self, phase: Phase, _total: Option<u64>) {
        if self.phase == Some(phase)
            && let Some((scene, change)) = self.take()
        {
            scene.change(&change);
        }
    }
}

/// Short waits, so faults and throttling cost milliseconds: `Retry-After` (a few ms from
/// the small buckets) is waited as given, other retries after 1–4 ms.
fn retry_policy() -> RetryPolicy {
    RetryPolicy::new()
        .max_retries(2)
        .initial_backoff(Duration::from_millis(1))
        .max_backoff(Duration::from_millis(4))
        .min_backoff(Duration::from_millis(1))
        .max_total_wait(Duration::from_secs(2))
}

impl World {
    async fn start(seed: u64, options: SyncOptions) -> Self {
        let sim = TenantSim::builder()
            .users(SEEDED_USERS)
            .groups(SEEDED_GROUPS)
            .seed(seed)
            // Small delta pages: members@delta and changes span pages (spec 9).
            .delta_page_size(4)
            .start()
            .await
            .expect("tenant-sim starts");
        let (_client, grant) = SignIn::simulated(&sim)
            .browser(None, Duration::from_secs(20), simulated_browser)
            .await
            .expect("the simulated admin signs in");
        let token = grant.access_token().secret().expose_secret().to_owned();
        let graph = GraphClient::builder(StaticToken::new(token))
            .base_url(sim.graph_base())
            .retry_policy(retry_policy())
            .page_size(5)
            .request_timeout(Some(Duration::from_secs(20)))
            .build()
            .expect("a Graph client");
        // The seeded directory's synced properties, read before any fault is switched on;
        // from here on the model follows the test's own changes.
        let users: Vec<User> = graph
            .users()
            .list()
            .select(std::iter::once("id").chain(DEFAULT_USER_SELECT.iter().copied()))
            .stream()
            .try_collect()
            .await
            .expect("list the seeded users");
        let groups: Vec<Group> = graph
            .groups()
            .list()
            .select(std::iter::once("id").chain(DEFAULT_GROUP_SELECT.iter().copied()))
            .stream()
            .try_collect()
            .await
            .expect("list the seeded groups");
        let model = Model {
            users: users
                .iter()
                .map(|u| (u.id.as_ref().expect("id").as_str().to_owned(), u.into()))
                .collect(),
            groups: groups
                .iter()
                .map(|g| (g.id.as_ref().expect("id").as_str().to_owned(), g.into()))
                .collect(),
            ..Model::default()
        };
        Self {
            scene: Scene { sim, model },
            graph,
            options,
        }
    }
}

impl Scene {
    /// Users the test may change: everyone but the signed-in admin (deleting or disabling
    /// the admin revokes the test's own token, a CAE critical event).
    fn people(&self) -> Vec<String> {
        let admin = self.sim.admin_id();
        self.sim
            .control()
            .users()
            .into_iter()
            .map(|u| u.id)
            .filter(|id| id != admin)
            .collect()
    }

    fn group_ids(&self) -> Vec<String> {
        self.sim
            .control()
            .groups()
            .into_iter()
            .map(|g| g.id)
            .collect()
    }

    /// Applies one directory change to the simulator and to the model.
    #[expect(clippy::too_many_lines, reason = "one arm per operation")]
    fn change(&mut self, op: &Op) {
        let control = self.sim.control().clone();
        let domain = self.sim.tenant_domain().to_owned();
        match op {
            Op::Sync | Op::SyncDuring { .. } => unreachable!("syncs are run by the caller"),
            Op::AddUser {
                guest,
                job_title,
                department,
            } => {
                self.model.added += 1;
                let n = self.model.added;
                let (upn, mail) = if *guest {
                    (
                        format!("model.guest{n}_example.com#EXT#@{domain}"),
                        format!("model.guest{n}@example.com"),
                    )
                } else {
                    let upn = format!("model.user{n}@{domain}");
                    (upn.clone(), upn)
                };
                let mut fields = UserFields::new()
                    .display_name(format!("Model User {n}"))
                    .user_principal_name(&upn)
                    .mail(&mail)
                    .given_name("Model")
                    .surname(format!("User {n}"))
                    .job_title(*job_title)
                    .department(*department);
                if *guest {
                    fields = fields.user_type(UserType::Guest);
                }
                let added = control.add_user(&fields).expect("add a user");
                self.model.users.insert(
                    added.id,
                    UserRow {
                        user_principal_name: Some(upn),
                        display_name: Some(format!("Model User {n}")),
                        given_name: Some("Model".to_owned()),
                        surname: Some(format!("User {n}")),
                        mail: Some(mail),
                        job_title: Some((*job_title).to_owned()),
                        department: Some((*department).to_owned()),
                        account_enabled: Some(true),
                        user_type: Some(if *guest { "Guest" } else { "Member" }.to_owned()),
                    },
                );
            }
            Op::UpdateUser { user, change } => {
                let people = self.people();
                if people.is_empty() {
                    return;
                }
                let id = &people[user.index(people.len())];
                let row = self.model.users.get_mut(id).expect("a modelled user");
                let set = |value: &str| Some(value.to_owned());
                let fields = match change {
                    UserChange::DisplayName(v) => {
                        row.display_name = set(v);
                        UserFields::new().display_name(*v)
                    }
                    UserChange::GivenName(v) => {
                        row.given_name = set(v);
                        UserFields::new().given_name(*v)
                    }
                    UserChange::Surname(v) => {
                        row.surname = set(v);
                        UserFields::new().surname(*v)
                    }
                    UserChange::Mail(v) => {
                        row.mail = set(v);
                        UserFields::new().mail(*v)
                    }
                    UserChange::JobTitle(v) => {
                        row.job_title = set(v);
                        UserFields::new().job_title(*v)
                    }
                    UserChange::Department(v) => {
                        row.department = set(v);
                        UserFields::new().department(*v)
                    }
                    UserChange::Enabled(enabled) => {
                        row.account_enabled = Some(*enabled);
                        UserFields::new().account_enabled(*enabled)
                    }
                    UserChange::Guest(guest) => {
                        let kind = if *guest {
                            UserType::Guest
                        } else {
                            UserType::Member
                        };
                        row.user_type = Some(user_type(kind).to_owned());
                        UserFields::new().user_type(kind)
                    }
                };
                control.update_user(id, &fields).expect("update a user");
            }
            Op::DeleteUser { user, permanent } => {
                let people = self.people();
                if people.is_empty() {
                    return;
                }
                let id = &people[user.index(people.len())];
                let deletion = if *permanent {
                    Deletion::Permanent
                } else {
                    Deletion::Soft
                };
                control.delete_user(id, deletion).expect("delete a user");
                if let Some(row) = self.model.users.remove(id)
                    && !*permanent
                {
                    self.model.deleted_users.insert(id.clone(), row);
                }
            }
            Op::AddGroup { unified } => {
                self.model.added += 1;
                let n = self.model.added;
                let name = format!("Model Group {n}");
                let nickname = format!("modelgroup{n}");
                let description = format!("Made by step {n}");
                let added = control
                    .add_group(
                        GroupFields::new()
                            .display_name(&name)
                            .mail_nickname(&nickname)
                            .description(&description)
                            .unified(*unified),
                    )
                    .expect("add a group");
                // A Microsoft 365 group is mail-enabled; a security group is not
                // (tenant-sim README, `unified`).
                self.model.groups.insert(
                    added.id,
                    GroupRow {
                        display_name: Some(name),
                        description: Some(description),
                        mail: unified.then(|| format!("{nickname}@{domain}")),
                        mail_enabled: Some(*unified),
                        security_enabled: Some(!unified),
                        group_types: if *unified {
                            vec!["Unified".to_owned()]
                        } else {
                            Vec::new()
                        },
                    },
                );
            }
            Op::UpdateGroup { group, change } => {
                let groups = self.group_ids();
                if groups.is_empty() {
                    return;
                }
                let id = &groups[group.index(groups.len())];
                let row = self.model.groups.get_mut(id).expect("a modelled group");
                let fields = match change {
                    GroupChange::DisplayName(v) => {
                        row.display_name = Some((*v).to_owned());
                        GroupFields::new().display_name(*v)
                    }
                    GroupChange::Description(v) => {
                        row.description = Some((*v).to_owned());
                        GroupFields::new().description(*v)
                    }
                };
                control.update_group(id, fields).expect("update a group");
            }
            Op::DeleteGroup { group, permanent } => {
                let groups = self.group_ids();
                if groups.is_empty() {
                    return;
                }
                let id = &groups[group.index(groups.len())];
                let deletion = if *permanent {
                    Deletion::Permanent
                } else {
                    Deletion::Soft
                };
                control.delete_group(id, deletion).expect("delete a group");
                // Only a Microsoft 365 group goes to deleted items; a security group is
                // gone for good (tenant-sim README, `restore_group`).
                if let Some(row) = self.model.groups.remove(id)
                    && !*permanent
                    && row.group_types.iter().any(|t| t == "Unified")
                {
                    self.model.deleted_groups.insert(id.clone(), row);
                }
            }
            Op::AddMember {
                group,
                member,
                nested,
            } => {
                let groups = self.group_ids();
                if groups.is_empty() {
                    return;
                }
                let target = &groups[group.index(groups.len())];
                let candidates: Vec<String> = if *nested {
                    groups.iter().filter(|g| *g != target).cloned().collect()
                } else {
                    control.users().into_iter().map(|u| u.id).collect()
                };
                if candidates.is_empty() {
                    return;
                }
                let member = &candidates[member.index(candidates.len())];
                control.add_member(target, member).expect("add a member");
            }
            Op::RemoveMember { group, member } => {
                let groups = self.group_ids();
                if groups.is_empty() {
                    return;
                }
                let target = &groups[group.index(groups.len())];
                let members = control.group_member_ids(target).expect("members");
                if members.is_empty() {
                    return;
                }
                let member = &members[member.index(members.len())];
                let removed = control.remove_member(target, member).expect("remove");
                assert!(removed, "{member} was a member of {target}");
            }
            Op::RestoreUser { user } => {
                let deleted: Vec<String> = self.model.deleted_users.keys().cloned().collect();
                if deleted.is_empty() {
                    return;
                }
                let id = &deleted[user.index(deleted.len())];
                // The model's names are never reused, so no restore meets a taken UPN.
                control.restore_user(id).expect("restore a user");
                if let Some(row) = self.model.deleted_users.remove(id) {
                    self.model.users.insert(id.clone(), row);
                }
            }
            Op::RestoreGroup { group } => {
                let deleted: Vec<String> = self.model.deleted_groups.keys().cloned().collect();
                if deleted.is_empty() {
                    return;
                }
                let id = &deleted[group.index(deleted.len())];
                control.restore_group(id).expect("restore a group");
                if let Some(row) = self.model.deleted_groups.remove(id) {
                    self.model.groups.insert(id.clone(), row);
                }
            }
            Op::ExpireDeltaTokens => {
                control.expire_delta_tokens();
                self.model.links_reset = true;
            }
            Op::ForceResync => {
                control.force_resync();
                self.model.links_reset = true;
            }
            Op::Faults(settings) => {
                let settings = match settings {
                    None => FaultSettings::none(),
                    Some((rate, kinds)) => FaultSettings::none()
                        .with_rate(*rate)
                        .and_then(|s| s.with_kinds(kinds))
                        .expect("fault settings"),
                };
                self.model.faults = settings.rate() > 0.0;
                control.set_faults(settings);
            }
            Op::Throttle(settings) => {
                let settings = settings.map(|(rate, burst)| {
                    ThrottleSettings::new(rate, burst).expect("throttle settings")
                });
                self.model.throttled = settings.is_some();
                control.set_throttle(settings);
            }
            Op::SelectUsers { reduced } => self.model.reduced = *reduced,
        }
    }
}

impl World {
    /// One sync into `target`, checked against the model (see the file's docs); with
    /// `during`, a change made while it runs (see [`Op::SyncDuring`]).
    async fn sync(
        &mut self,
        target: &mut Target,
        step: &str,
        stats: &Stats,
        during: Option<(Phase, &Op)>,
    ) -> Result<Option<SyncReport>, TestCaseError> {
        let (before, commits, _) = target.contents().await;
        let kind = self.scene.model.next_kind();
        let select = if self.scene.model.reduced {
            REDUCED_USER_SELECT
        } else {
            DEFAULT_USER_SELECT
        };
        let options = self.options.clone().user_select(select);
        let hook = During {
            phase: during.map(|(phase, _)| phase),
            pending: Mutex::new(during.map(|(_, change)| (&mut self.scene, change.clone()))),
        };
        let result = target.sync(&self.graph, &options, &hook).await;
        let unmade = hook.take().map(|(_, change)| change);
        if during.is_some() && unmade.is_none() {
            bump(&stats.during);
        }
        let checked = self
            .check(
                target,
                step,
                stats,
                result,
                before,
                commits,
                kind,
                during.is_some() && unmade.is_none(),
            )
            .await;
        if let Some(change) = &unmade {
            // The sync never reached the phase: the change comes after it.
            self.scene.change(change);
        }
        checked
    }

    /// Checks one sync's outcome; `changed_during`: the directory changed while it ran,
    /// so what it committed may miss that change.
    #[expect(
        clippy::too_many_arguments,
        reason = "the sync's outcome and what came before"
    )]
    async fn check(
        &mut self,
        target: &Target,
        step: &str,
        stats: &Stats,
        result: Result<SyncReport, SyncError>,
        before: Tenant,
        commits: u64,
        kind: SyncKind,
        changed_during: bool,
    ) -> Result<Option<SyncReport>, TestCaseError> {
        let (after, commits_after, totals) = target.contents().await;
        match result {
            Ok(report) => {
                prop_assert_eq!(report.kind, kind, "{}: the kind of sync", step);
                let want = self.scene.model.expected(self.scene.sim.control())?;
                if !changed_during {
                    same(
                        &after,
                        &want,
                        &format!("{step}: after a {kind} sync the sink differs from the directory"),
                    )?;
                }
                prop_assert_eq!(commits_after, commits + 1, "{}: one commit", step);
                let summary = &report.summary;
                prop_assert_eq!(
                    [
                        summary.users.total,
                        summary.groups.total,
                        summary.memberships.total
                    ],
                    sizes(&after),
                    "{}: the summary's totals",
                    step
                );
                if let Some(totals) = totals {
                    prop_assert_eq!(totals, sizes(&after), "{}: the stored totals", step);
                }
                self.scene.model.committed = Some(self.scene.model.reduced);
                self.scene.model.links_reset = false;
                bump(match report.kind {
                    SyncKind::Full => &stats.full,
                    SyncKind::Resync => &stats.resync,
                    _ => &stats.delta,
                });
                Ok(Some(report))
            }
            Err(error) => {
                let text = chain(&error);
                prop_assert!(
                    self.scene.model.faults || self.scene.model.throttled,
                    "{}: a sync failed without faults or throttling: {}",
                    step,
                    text
                );
                prop_assert!(
                    self.scene.model.faults
                        || error.graph_error().and_then(GraphError::status) == Some(429),
                    "{}: with throttling alone only a 429 fails a sync, got: {}",
                    step,
                    text
                );
                prop_assert!(
                    error.graph_error().is_some()
                        && matches!(error.action(), ErrorAction::RetryLater(_)),
                    "{}: an injected fault is a Graph error to retry later, got {:?}: {}",
                    step,
                    error.action(),
                    text
                );
                same(
                    &after,
                    &before,
                    &format!("{step}: a failed sync ({text}) changed the sink"),
                )?;
                prop_assert_eq!(commits_after, commits, "{}: no commit", step);
                bump(&stats.failed);
                Ok(None)
            }
        }
    }
}

async fn run_case(
    seed: u64,
    ops: Vec<Op>,
    mut target: Target,
    options: SyncOptions,
    stats: &Stats,
) -> Result<(), TestCaseError> {
    let mut world = World::start(seed, options).await;
    let outcome = async {
        for (n, op) in ops.iter().enumerate() {
            match op {
                Op::Sync => {
                    world
                        .sync(&mut target, &format!("step {n}"), stats, None)
                        .await?;
                }
                Op::SyncDuring { phase, change } => {
                    world
                        .sync(
                            &mut target,
                            &format!("step {n}"),
                            stats,
                            Some((*phase, change)),
                        )
                        .await?;
                }
                other => {
                    world.scene.change(other);
                    bump(&stats.changes);
                }
            }
        }
        // Without faults the next sync converges, and the one after finds nothing to do.
        world.scene.change(&Op::Faults(None));
        world.scene.change(&Op::Throttle(None));
        world
            .sync(&mut target, "the converging sync", stats, None)
            .await?;
        let quiet = world
            .sync(&mut target, "the quiet sync", stats, None)
            .await?
            .expect("it succeeded");
        prop_assert_eq!(quiet.kind, SyncKind::Delta);
        let summary = &quiet.summary;
        prop_assert!(
            summary.users.is_unchanged()
                && summary.groups.is_unchanged()
                && summary.memberships.is_unchanged(),
            "a delta round after the converging sync changed something: {:?}",
            summary
        );
        Ok(())
    }
    .await;
    world.scene.sim.shutdown().await;
    outcome
}

// ---------------------------------------------------------------------------------------
// The tests

fn config(default_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        // Each shrink step replays a whole sequence against a new simulator.
        max_shrink_iters: 2_000,
        max_shrink_time: 300_000,
        ..Config::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

fn check(
    runner: &mut TestRunner,
    max_ops: usize,
    case: impl Fn(u64, Vec<Op>) -> Result<(), TestCaseError>,
) {
    if let Err(failure) = runner.run(&sequence(max_ops), |(seed, ops)| case(seed, ops)) {
        panic!("{failure}");
    }
}

/// Against `MemorySink`, one request at a time (one listing chain, one member batch in
/// flight), so a seed gives the same faults on every run and a shrunk case replays
/// (throttling, which depends on the clock, aside).
#[test]
fn memory_sink_equals_the_directory_after_every_sync() {
    let rt = runtime();
    let stats = Stats::default();
    let mut runner = TestRunner::new(config(MEMORY_CASES));
    let options = SyncOptions::new().concurrency(1).max_partitions(1);
    check(&mut runner, MEMORY_OPS, |seed, ops| {
        rt.block_on(run_case(
            seed,
            ops,
            Target::Memory(MemorySink::new()),
            options.clone(),
            &stats,
        ))
    });
    stats.print("MemorySink");
}

/// Against the app's `SQLite` mirror through its fenced sink, with the engine's default
/// concurrency (partitioned listings, member batches in parallel), as the worker syncs.
#[test]
fn sqlite_mirror_equals_the_directory_after_every_sync() {
    let rt = runtime();
    let env = rt.block_on(MirrorEnv::open());
    let stats = Stats::default();
    let mut runner = TestRunner::new(config(MIRROR_CASES));
    check(&mut runner, MIRROR_OPS, |seed, ops| {
        rt.block_on(async {
            // Writes of a change or a few at a time (many short transactions before the
            // commit, where a partial commit would show), or the default's one write.
            let gather = [1, 3, 50, FLUSH_CHANGES][usize::try_from(seed % 4).expect("small")];
            let target = env.target(gather).await;
            run_case(seed, ops, target, SyncOptions::new(), &stats).await
        })
    });
    stats.print("SQLite mirror");
}
