//! [`run`]: one sync of one tenant into a [`DirectorySink`]: full import, delta round or
//! resync, streamed page by page, committed with its delta links.

use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};

use super::sink::{Change, DirectorySink, MemberType, SinkError, SyncKind, SyncLinks, SyncSummary};
use crate::client::GraphClient;
use crate::delta::{DeltaChange, DeltaRound};
use crate::error::{ErrorAction, GraphError};
use crate::models::ObjectId;
use crate::paging::{DeltaLink, Page};
use crate::{Group, User};

/// The user properties a first import keeps when [`SyncOptions::user_select`] is not set.
pub const DEFAULT_USER_SELECT: &[&str] = &[
    "displayName",
    "userPrincipalName",
    "mail",
    "givenName",
    "surname",
    "jobTitle",
    "department",
    "accountEnabled",
    "userType",
];

/// The group properties a sync keeps when [`SyncOptions::group_select`] is not set.
pub const DEFAULT_GROUP_SELECT: &[&str] = &[
    "displayName",
    "description",
    "mail",
    "mailEnabled",
    "securityEnabled",
    "groupTypes",
];

/// The most concurrent chains a full import lists with unless
/// [`SyncOptions::max_partitions`] says otherwise. Fewer than a bare listing's
/// [`DEFAULT_MAX_PARTITIONS`](crate::DEFAULT_MAX_PARTITIONS): an import is bound by the
/// sink's writes (100,000 users take the `SQLite` mirror about 3 s), which 8 chains keep
/// fed at 100 ms a page, and each chain holds a page and a connection's buffers while the
/// sink works (16 chains took the mirror's import from 54 to 68 MiB; examples/bench.rs).
pub const DEFAULT_SYNC_PARTITIONS: usize = 8;

/// How many changes of a delta round are handed to the sink at once.
const DELTA_CHUNK: usize = 500;

/// The fewest changes of a full import handed to the sink at once (small member pages are
/// gathered up to it, so a database sink writes in few transactions): about two pages in
/// memory.
const APPLY_CHUNK: usize = 1_000;

/// What to sync: which properties, how hard to push Graph, and whether to start over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOptions {
    /// `None`: the properties of the sink's links, or the default for a first import.
    user_select: Option<Vec<String>>,
    group_select: Vec<String>,
    force_full: bool,
    concurrency: usize,
    max_partitions: usize,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            user_select: None,
            group_select: normalized(DEFAULT_GROUP_SELECT),
            force_full: false,
            concurrency: crate::members::DEFAULT_MEMBER_CONCURRENCY,
            max_partitions: DEFAULT_SYNC_PARTITIONS,
        }
    }
}

/// `id` first, then each name once, blanks dropped.
fn normalized<S: AsRef<str>>(names: &[S]) -> Vec<String> {
    let mut out = vec!["id".to_owned()];
    for name in names {
        let name = name.as_ref().trim();
        if !name.is_empty() && !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
    }
    out
}

impl SyncOptions {
    /// The defaults: the user properties the sink's links were made with (or
    /// [`DEFAULT_USER_SELECT`] for a first import), [`DEFAULT_GROUP_SELECT`], delta when the
    /// sink has links, 8 member requests in flight.
    pub fn new() -> Self {
        Self::default()
    }

    /// The user properties to keep (`id` is always added). A sink whose links were made
    /// with other properties (in any order) gets a full import (a delta link keeps its
    /// `$select`, spec 9). Without it, a sync keeps what the sink's links were made with.
    #[must_use]
    pub fn user_select<S: AsRef<str>>(mut self, properties: &[S]) -> Self {
        self.user_select = Some(normalized(properties));
        self
    }

    /// The group properties to keep (`id` is always added; `members` is added to the
    /// delta rounds for `members@delta`).
    #[must_use]
    pub fn group_select<S: AsRef<str>>(mut self, properties: &[S]) -> Self {
        self.group_select = normalized(properties);
        self
    }

    /// Run a full import even when the sink has links.
    #[must_use]
    pub fn force_full(mut self, full: bool) -> Self {
        self.force_full = full;
        self
    }

    /// Member batches or next-link chains in flight at once (default 8; 0 is 1).
    #[must_use]
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// The most concurrent chains a full import lists users and groups with (default
    /// [`DEFAULT_SYNC_PARTITIONS`]; 1 lists each as the single `@odata.nextLink` chain).
    /// See [`PartitionedList`](crate::PartitionedList).
    #[must_use]
    pub fn max_partitions(mut self, max: usize) -> Self {
        self.max_partitions = max.max(1);
        self
    }

    /// The user properties asked for, `id` first; `None` when a sync keeps the sink's.
    pub fn user_properties(&self) -> Option<&[String]> {
        self.user_select.as_deref()
    }

    /// The group properties kept, `id` first.
    pub fn group_properties(&self) -> &[String] {
        &self.group_select
    }
}

/// The phases a [`SyncProgress`] hears about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Listing users, or the users delta round.
    Users,
    /// Listing groups, or the groups delta round.
    Groups,
    /// Expanding the members of every group (full imports).
    Memberships,
    /// The sink commits.
    Committing,
}

impl Phase {
    /// A short label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::Groups => "groups",
            Self::Memberships => "memberships",
            Self::Committing => "committing",
        }
    }
}

/// Hears how a sync goes, for progress bars. Every method has a no-op default; calls
/// come from the sync's own task, so keep them quick.
pub trait SyncProgress: Send + Sync {
    /// A phase starts; `total` when known (the groups to expand).
    fn started(&self, _phase: Phase, _total: Option<u64>) {}
    /// `count` more objects of `phase` are in (users, groups, or groups expanded).
    fn advanced(&self, _phase: Phase, _count: u64) {}
    /// A phase is done.
    fn finished(&self, _phase: Phase) {}
}

/// Hears nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl SyncProgress for NoProgress {}

/// What one sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncReport {
    /// Full import, delta round or resync.
    pub kind: SyncKind,
    /// What the sink changed, as it counted.
    pub summary: SyncSummary,
    /// Wall time.
    pub elapsed: Duration,
}

/// The step of a sync that Graph failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SyncStep {
    /// Taking the "from now" delta links of a full import.
    StartTracking,
    /// Listing the users.
    ListUsers,
    /// Listing the groups.
    ListGroups,
    /// Expanding group members.
    ExpandMembers,
    /// The users delta round.
    UsersDelta,
    /// The groups delta round.
    GroupsDelta,
}

impl std::fmt::Display for SyncStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::StartTracking => "start tracking changes",
            Self::ListUsers => "list the users",
            Self::ListGroups => "list the groups",
            Self::ExpandMembers => "expand the group members",
            Self::UsersDelta => "run the users delta round",
            Self::GroupsDelta => "run the groups delta round",
        })
    }
}

/// Why a sync stopped. In every case the sink's last commit stands as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// Microsoft Graph failed a step (after the client's retries).
    #[error("could not {step}")]
    Graph {
        /// The step.
        step: SyncStep,
        /// What Graph said.
        #[source]
        source: GraphError,
    },
    /// The sink failed.
    #[error("the directory sink failed")]
    Sink(#[source] SinkError),
}

impl SyncError {
    /// What the caller does: reconnect, retry later, fix configuration, repair the sink,
    /// or report a bug. (A resync never surfaces: the engine runs it.)
    pub fn action(&self) -> ErrorAction {
        match self {
            Self::Graph { source, .. } => source.action(),
            Self::Sink(error) => error.action(),
        }
    }

    /// True when only a new sign-in helps: show "reconnect needed".
    pub fn requires_reauthorization(&self) -> bool {
        self.action() == ErrorAction::Reconnect
    }

    /// The Graph error, when Graph failed.
    pub fn graph_error(&self) -> Option<&GraphError> {
        match self {
            Self::Graph { source, .. } => Some(source),
            Self::Sink(_) => None,
        }
    }
}

impl From<SinkError> for SyncError {
    fn from(error: SinkError) -> Self {
        Self::Sink(error)
    }
}

fn graph(step: SyncStep) -> impl FnOnce(GraphError) -> SyncError {
    move |source| SyncError::Graph { step, source }
}

/// Runs one sync of the tenant `client` reads into `sink`:
///
/// - **Full import** when the sink has no links (or with
///   [`force_full`](SyncOptions::force_full), or when its links were made with other user
///   properties): "from now" delta links for users and groups first
///   (`$deltatoken=latest`, spec 9), then users and groups listed and every group's
///   members expanded ([`GroupsApi::members_of_many`](crate::GroupsApi::members_of_many)),
///   each page handed to the sink as it arrives. Changes made while it lists come again in
///   the next delta round, where applying them once more changes nothing (spec 9, "Replays").
/// - **Delta round** from the sink's links: the users round, then the groups round with
///   `members@delta`, each change handed over as it arrives. A round with nothing changed
///   costs two Graph requests and a commit, whatever the tenant's size.
/// - **Resync** when Microsoft says a link expired or was reset (`syncStateNotFound`,
///   410 `resyncRequired`): a full import of kind [`SyncKind::Resync`], after which the
///   sink removes and reports what it held and the import did not see.
///
/// The sink commits the changes and the new links together. Memory is bounded by the
/// pages in flight (plus the group ids of a full import), not by the users or the
/// memberships. Dropping the future at any await point commits nothing.
///
/// # Errors
/// [`SyncError`]: Graph failed a step (see [`SyncError::action`]: a revoked grant is
/// [`ErrorAction::Reconnect`]), or the sink failed. The sink's last commit stands.
pub async fn run(
    client: &GraphClient,
    sink: &mut dyn DirectorySink,
    options: &SyncOptions,
    progress: &dyn SyncProgress,
) -> Result<SyncReport, SyncError> {
    let started = Instant::now();
    // A forced full import does not read the links at all, so it also gets past links the
    // sink can no longer read (a retired key).
    let saved = if options.force_full {
        None
    } else {
        sink.links().await?
    };
    // The properties this sync keeps: the ones asked for, else those of the sink's links.
    let user_select = match (&options.user_select, &saved) {
        (Some(asked), _) => asked.clone(),
        (None, Some(links)) => links.user_select().to_vec(),
        (None, None) => normalized(DEFAULT_USER_SELECT),
    };
    let options = &SyncOptions {
        user_select: Some(user_select.clone()),
        ..options.clone()
    };
    let delta_from = saved.filter(|links| same_properties(links.user_select(), &user_select));
    let (kind, summary) = if let Some(links) = delta_from {
        match delta(client, sink, links, progress).await {
            Ok(summary) => (SyncKind::Delta, summary),
            Err(SyncError::Graph { source, .. }) if source.requires_resync() => {
                tracing::info!("the delta links expired or were reset; running a full import");
                let summary = full(client, sink, SyncKind::Resync, options, progress).await?;
                (SyncKind::Resync, summary)
            }
            Err(error) => return Err(error),
        }
    } else {
        let summary = full(client, sink, SyncKind::Full, options, progress).await?;
        (SyncKind::Full, summary)
    };
    Ok(SyncReport {
        kind,
        summary,
        elapsed: started.elapsed(),
    })
}

async fn full(
    client: &GraphClient,
    sink: &mut dyn DirectorySink,
    kind: SyncKind,
    options: &SyncOptions,
    progress: &dyn SyncProgress,
) -> Result<SyncSummary, SyncError> {
    sink.begin(kind).await?;
    let mut group_delta_select = options.group_select.clone();
    group_delta_select.push("members".to_owned());
    let users_link = client
        .users()
        .delta()
        .select(options.user_properties().unwrap_or_default())
        .latest_link()
        .await
        .map_err(graph(SyncStep::StartTracking))?;
    let groups_link = client
        .groups()
        .delta()
        .select(&group_delta_select)
        .latest_link()
        .await
        .map_err(graph(SyncStep::StartTracking))?;

    progress.started(Phase::Users, None);
    // Both listings run as concurrent ranges (each object once, the same set as the
    // single chain; see `PartitionedList`), so a large tenant's import is not one page
    // per round trip.
    let users = client
        .users()
        .list_partitioned()
        .select(options.user_properties().unwrap_or_default())
        .max_partitions(options.max_partitions)
        .pages();
    pump(sink, users, SyncStep::ListUsers, |page: Page<User>| {
        let changes = page
            .into_items()
            .into_iter()
            .filter(|user| id_of(user.id.as_ref(), "/users").is_some())
            .map(|user| Change::UserUpserted(Box::new(user)))
            .collect::<Vec<_>>();
        progress.advanced(Phase::Users, changes.len() as u64);
        Ok(changes)
    })
    .await?;
    progress.finished(Phase::Users);

    progress.started(Phase::Groups, None);
    let mut group_ids: Vec<ObjectId> = Vec::new();
    let groups = client
        .groups()
        .list_partitioned()
        .select(&options.group_select)
        .max_partitions(options.max_partitions)
        .pages();
    pump(sink, groups, SyncStep::ListGroups, |page: Page<Group>| {
        let changes = page
            .into_items()
            .into_iter()
            .filter_map(|group| {
                group_ids.push(id_of(group.id.as_ref(), "/groups")?);
                Some(Change::GroupUpserted(Box::new(group)))
            })
            .collect::<Vec<_>>();
        progress.advanced(Phase::Groups, changes.len() as u64);
        Ok(changes)
    })
    .await?;
    progress.finished(Phase::Groups);

    progress.started(Phase::Memberships, Some(group_ids.len() as u64));
    let members = client
        .groups()
        .members_of_many(group_ids)
        .concurrency(options.concurrency)
        .stream();
    pump(sink, members, SyncStep::ExpandMembers, |page| {
        if page.complete {
            progress.advanced(Phase::Memberships, 1);
        }
        let group = page.group;
        Ok(page
            .members
            .into_iter()
            .filter_map(|member| {
                let id = id_of(member.id(), "/groups/{id}/members")?;
                Some(Change::MemberAdded {
                    group: group.clone(),
                    member: id,
                    member_type: MemberType::from_type_name(member.type_name()),
                })
            })
            .collect::<Vec<_>>())
    })
    .await?;
    progress.finished(Phase::Memberships);

    commit(
        sink,
        SyncLinks::new(
            users_link,
            groups_link,
            options.user_properties().unwrap_or_default().to_vec(),
        ),
        progress,
    )
    .await
}

/// Hands each item of `stream` to the sink as changes, fetching the next item while the
/// sink applies the current one (the network and the sink's writes overlap).
async fn pump<T, S>(
    sink: &mut dyn DirectorySink,
    stream: S,
    step: SyncStep,
    mut to_changes: impl FnMut(T) -> Result<Vec<Change>, GraphError>,
) -> Result<(), SyncError>
where
    S: Stream<Item = Result<T, GraphError>> + Unpin,
{
    let mut stream = stream;
    let mut pending: Vec<Change> = Vec::new();
    let mut next = stream.next().await;
    while let Some(item) = next {
        pending.extend(to_changes(item.map_err(graph(step))?).map_err(graph(step))?);
        if pending.len() < APPLY_CHUNK {
            next = stream.next().await;
            continue;
        }
        let changes = std::mem::take(&mut pending);
        // The next item is fetched while the sink applies these; a sink error ends the
        // sync at once instead of waiting for Graph.
        let ((), following) = futures::future::try_join(
            async { sink.apply(&changes).await.map_err(SyncError::from) },
            async { Ok(stream.next().await) },
        )
        .await?;
        next = following;
    }
    if !pending.is_empty() {
        sink.apply(&pending).await?;
    }
    Ok(())
}

/// The same properties, in any order.
fn same_properties(a: &[String], b: &[String]) -> bool {
    let mut a: Vec<&str> = a.iter().map(String::as_str).collect();
    let mut b: Vec<&str> = b.iter().map(String::as_str).collect();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

/// The object's id; an object without one cannot be stored, so it is skipped with a
/// warning (failing the round would repeat in every round until the link expires).
fn id_of(id: Option<&ObjectId>, path: &str) -> Option<ObjectId> {
    if id.is_none() {
        tracing::warn!(path, "skipped an object without an id");
    }
    id.cloned()
}

async fn delta(
    client: &GraphClient,
    sink: &mut dyn DirectorySink,
    links: SyncLinks,
    progress: &dyn SyncProgress,
) -> Result<SyncSummary, SyncError> {
    sink.begin(SyncKind::Delta).await?;

    progress.started(Phase::Users, None);
    let round = client.users().delta_from(links.users());
    let users_link = apply_round(
        sink,
        round,
        SyncStep::UsersDelta,
        progress,
        Phase::Users,
        |event, out| {
            match event {
                DeltaChange::Upsert(user) => {
                    if id_of(user.id.as_ref(), "/users/delta").is_some() {
                        out.push(Change::UserUpserted(Box::new(user)));
                    }
                }
                DeltaChange::Removed { id, reason } => out.push(Change::UserRemoved { id, reason }),
            }
            Ok(())
        },
    )
    .await?;
    progress.finished(Phase::Users);

    progress.started(Phase::Groups, None);
    let round = client.groups().delta_from(links.groups());
    let groups_link = apply_round(
        sink,
        round,
        SyncStep::GroupsDelta,
        progress,
        Phase::Groups,
        |event, out| {
            match event {
                DeltaChange::Upsert(mut group) => {
                    let Some(id) = id_of(group.id.as_ref(), "/groups/delta") else {
                        return Ok(());
                    };
                    let members = std::mem::take(&mut group.members_delta);
                    out.push(Change::GroupUpserted(Box::new(group)));
                    for change in members {
                        out.push(if change.is_removed() {
                            Change::MemberRemoved {
                                group: id.clone(),
                                member: change.id,
                            }
                        } else {
                            Change::MemberAdded {
                                group: id.clone(),
                                member: change.id,
                                member_type: MemberType::from_type_name(
                                    change.odata_type.as_deref().unwrap_or_default(),
                                ),
                            }
                        });
                    }
                }
                DeltaChange::Removed { id, reason } => {
                    out.push(Change::GroupRemoved { id, reason });
                }
            }
            Ok(())
        },
    )
    .await?;
    progress.finished(Phase::Groups);

    commit(
        sink,
        SyncLinks::new(users_link, groups_link, links.user_select().to_vec()),
        progress,
    )
    .await
}

/// Runs one delta round into the sink, in chunks of [`DELTA_CHUNK`] changes; answers
/// the round's new delta link.
async fn apply_round<T>(
    sink: &mut dyn DirectorySink,
    mut round: DeltaRound<T>,
    step: SyncStep,
    progress: &dyn SyncProgress,
    phase: Phase,
    mut to_changes: impl FnMut(DeltaChange<T>, &mut Vec<Change>) -> Result<(), GraphError>,
) -> Result<DeltaLink, SyncError> {
    let mut chunk: Vec<Change> = Vec::new();
    let mut objects = 0u64;
    while let Some(change) = round.next().await {
        to_changes(change.map_err(graph(step))?, &mut chunk).map_err(graph(step))?;
        objects += 1;
        if chunk.len() >= DELTA_CHUNK {
            sink.apply(&chunk).await?;
            progress.advanced(phase, objects);
            objects = 0;
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        sink.apply(&chunk).await?;
    }
    progress.advanced(phase, objects);
    // The stream ended without an error, so the round has its link (`DeltaRound`
    // refuses a round that ends without one).
    round.into_delta_link().ok_or_else(|| {
        graph(step)(GraphError::InvalidResponse {
            path: String::new(),
            reason: "the delta round ended without a delta link",
        })
    })
}

async fn commit(
    sink: &mut dyn DirectorySink,
    links: SyncLinks,
    progress: &dyn SyncProgress,
) -> Result<SyncSummary, SyncError> {
    progress.started(Phase::Committing, None);
    let summary = sink.commit(links).await?;
    progress.finished(Phase::Committing);
    Ok(summary)
}
