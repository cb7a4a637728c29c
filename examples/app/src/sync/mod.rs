//! Importing a connection's users, groups and memberships, then keeping them in sync.
//!
//! [`run`] is one sync of one stored connection:
//!
//! 1. It checks the connection's status (a "reconnect needed" connection stops with
//!    [`SyncStop::NeedsReconnect`]) and takes its sync lease, renewed while it runs, so
//!    two replicas never sync the same tenant at once.
//! 2. The first time (or with `full`, or when the saved delta links are gone) it runs a
//!    **full import**: it takes "from now" delta links for users and groups first
//!    (`$deltatoken=latest`, spec 9), then lists every user and group and expands every
//!    group's members. Changes made while it lists come again in the next delta round,
//!    where applying them a second time changes nothing (spec 9, "Replays").
//! 3. Afterwards it runs **delta rounds** from the saved links and applies the changes
//!    to the previous export.
//! 4. When Microsoft answers that a delta link expired (`syncStateNotFound`, or 410
//!    `resyncRequired`, spec 9) it runs a full import and reconciles by diff against the
//!    previous export, so users deleted meanwhile are reported deleted.
//! 5. It writes the export to temporary files and renames them into place, then saves
//!    the delta links as the connection's `users` and `groups` cursors, then records the
//!    sync time: a sync that stops half-way leaves the previous export and cursors as
//!    they were.
//!
//! Memberships are expanded with the first member page of 20 groups per `$batch`
//! request, then the groups with more pages follow their next links; up to
//! `concurrency` batches or chains are in flight at once, all behind the Graph client's
//! shared throttle gate (one 429 pauses them all, spec 10).

mod output;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use connection_store::{
    ConnectionId, ConnectionStatus, ConnectionStore, CursorKey, LeaseHolder, OwnerId, SecretString,
    StoreError,
};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{StreamExt as _, TryStreamExt as _};
use graph_client::{
    DeltaChange, DeltaLink, DirectoryObject, GraphClient, GraphError, Group, NextLink, Page, User,
};
use secrecy::ExposeSecret as _;
use serde_json::{Map, Value};

pub use output::{Format, load_previous};

/// One exported object: its selected properties as JSON (nulls dropped), `id` included.
pub type Record = Map<String, Value>;

/// The user attributes exported when `--select` is not given.
pub(crate) const DEFAULT_USER_SELECT: &[&str] = &[
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

/// The group properties exported.
pub(crate) const GROUP_SELECT: &[&str] = &[
    "displayName",
    "description",
    "mail",
    "mailEnabled",
    "securityEnabled",
    "groupTypes",
];

/// How many batches or member chains are in flight at once by default.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// The default time-to-live of the sync lease; it is renewed every third of it.
pub(crate) const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(60);

/// Groups per `$batch` request (Graph's limit, spec 12).
const BATCH_SIZE: usize = graph_client::MAX_BATCH_SIZE;

/// Largest member page Graph serves (spec 8a: 999 is UNCONFIRMED for members but what
/// the SDKs and Microsoft's samples use; a smaller clamp is harmless).
const MEMBER_PAGE: u32 = 999;

/// Which connection to sync, in which store.
#[derive(Clone)]
pub struct Target {
    /// The store holding the connection, its cursors and its lease.
    pub store: Arc<dyn ConnectionStore>,
    /// The customer account the connection belongs to.
    pub owner: OwnerId,
    /// The connection.
    pub id: ConnectionId,
}

/// What to sync and where to write it.
#[derive(Clone, Debug)]
pub struct Options {
    /// Run a full import even when delta links are saved.
    pub full: bool,
    /// The user attributes to export (`id` is always added).
    pub select: Vec<String>,
    /// JSON Lines or CSV.
    pub format: Format,
    /// The export folder.
    pub out_dir: PathBuf,
    /// Batches or member chains in flight at once (at least 1).
    pub concurrency: usize,
    /// The sync lease's time-to-live.
    pub lease_ttl: Duration,
    /// Who holds the lease while this sync runs.
    pub holder: LeaseHolder,
}

impl Options {
    /// The defaults: delta when possible, the default attributes, JSON Lines into
    /// `out_dir`, concurrency 8, a 60 s lease held by this process.
    ///
    /// # Errors
    /// Never in practice: the generated lease holder name is short and valid.
    pub fn new(out_dir: impl Into<PathBuf>) -> anyhow::Result<Self> {
        Ok(Self {
            full: false,
            select: DEFAULT_USER_SELECT
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            format: Format::Jsonl,
            out_dir: out_dir.into(),
            concurrency: DEFAULT_CONCURRENCY,
            lease_ttl: DEFAULT_LEASE_TTL,
            holder: default_holder()?,
        })
    }

    /// `id` followed by the selected attributes, without duplicates.
    pub(crate) fn user_columns(&self) -> Vec<String> {
        let mut columns = vec!["id".to_owned()];
        for name in &self.select {
            let name = name.trim();
            if !name.is_empty() && !columns.iter().any(|c| c == name) {
                columns.push(name.to_owned());
            }
        }
        columns
    }
}

/// `sync-<host>-<pid>-<random>`: unique per run, readable in the store.
///
/// # Errors
/// When the name is rejected by the store's rules (it is short, so never).
pub(crate) fn default_holder() -> anyhow::Result<LeaseHolder> {
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
    /// The lease was taken over while syncing; nothing was written.
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
                "another process took over this connection's sync lease; nothing was \
                 written\nnext step: run the sync again"
            ),
        }
    }
}

impl std::error::Error for SyncStop {}

/// The phases reported to a [`Progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Listing users, or a users delta round.
    Users,
    /// Listing groups, or a groups delta round.
    Groups,
    /// Expanding group memberships.
    Memberships,
    /// Writing the export.
    Writing,
}

impl Phase {
    /// A short label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::Groups => "groups",
            Self::Memberships => "memberships",
            Self::Writing => "writing",
        }
    }
}

/// Progress of a sync, phase by phase. Every method has a no-op default.
pub trait Progress: Send + Sync {
    /// A phase starts; `total` when known (groups to expand).
    fn start(&self, _phase: Phase, _total: Option<u64>) {}
    /// `count` more items of `phase` are done.
    fn advance(&self, _phase: Phase, _count: u64) {}
    /// A phase is done.
    fn finish(&self, _phase: Phase) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}

/// How a sync ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The first import, or `--full`.
    Full,
    /// Delta rounds from the saved links.
    Delta,
    /// A full import because Microsoft expired the delta links; reconciled by diff.
    Resync,
}

impl Kind {
    /// A short label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Delta => "delta",
            Self::Resync => "full (resync: the delta links had expired)",
        }
    }
}

/// Added, updated and deleted objects of one kind, against the previous export.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// New since the previous export.
    pub added: u64,
    /// Changed since the previous export.
    pub updated: u64,
    /// Gone since the previous export.
    pub deleted: u64,
    /// In the new export.
    pub total: u64,
}

/// What one sync did.
#[derive(Debug, Clone)]
pub struct Report {
    /// Full, delta or resync.
    pub kind: Kind,
    /// Users.
    pub users: Counts,
    /// Groups.
    pub groups: Counts,
    /// Memberships (group, member) pairs; `updated` is always 0.
    pub memberships: Counts,
    /// The files written.
    pub files: Vec<PathBuf>,
    /// Wall time.
    pub elapsed: Duration,
    /// Ids of the users deleted since the previous export (for messages and tests).
    pub deleted_user_ids: Vec<String>,
}

/// Everything exported: users and groups by id, members of each group by id with
/// their type (`user`, `group`, ...). Sorted maps, so the files come out in the same
/// order on every run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Users by id.
    pub users: BTreeMap<String, Record>,
    /// Groups by id.
    pub groups: BTreeMap<String, Record>,
    /// Group id → member id → member type.
    pub members: BTreeMap<String, BTreeMap<String, String>>,
}

impl Snapshot {
    /// The number of (group, member) pairs.
    pub(crate) fn membership_count(&self) -> usize {
        self.members.values().map(BTreeMap::len).sum()
    }

    fn remove_member_everywhere(&mut self, id: &str) {
        for members in self.members.values_mut() {
            members.remove(id);
        }
    }
}

/// The delta links of a completed round.
struct Links {
    users: DeltaLink,
    groups: DeltaLink,
}

/// Runs one sync of `target` through `graph` with `options`.
///
/// # Errors
/// A [`SyncStop`] (downcast it) when the connection needs a reconnect, is disabled or
/// its lease is held or lost; otherwise Graph, store or file errors, with context. In
/// every error case the previous export and cursors are left as they were.
pub async fn run(
    graph: &GraphClient,
    target: &Target,
    options: &Options,
    progress: &dyn Progress,
) -> anyhow::Result<Report> {
    let started = Instant::now();
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

    let result = with_lease(graph, target, options, progress).await;
    // Free the lease whatever happened; a failure to free it only delays the next sync
    // until it expires.
    if let Err(error) = store
        .release_lease(&target.owner, target.id, &options.holder)
        .await
    {
        tracing::warn!(%error, "could not release the sync lease");
    }
    let mut report = match result {
        Ok(report) => report,
        Err(error) => return Err(reauthorization(store, target, error).await),
    };
    report.elapsed = started.elapsed();
    Ok(report)
}

/// A Graph error meaning "sign in again" becomes [`SyncStop::NeedsReconnect`] with the
/// reason the glue stored.
async fn reauthorization(
    store: &dyn ConnectionStore,
    target: &Target,
    error: anyhow::Error,
) -> anyhow::Error {
    let needs_sign_in = error.chain().any(|e| {
        e.downcast_ref::<GraphError>()
            .is_some_and(GraphError::requires_reauthorization)
    });
    if !needs_sign_in {
        return error;
    }
    let reason = match store.get(&target.owner, target.id).await {
        Ok(connection) => match connection.status {
            ConnectionStatus::NeedsReconnect { reason, .. } => reason,
            _ => "Microsoft Graph rejected the connection's access".to_owned(),
        },
        Err(_) => "Microsoft Graph rejected the connection's access".to_owned(),
    };
    SyncStop::NeedsReconnect { reason }.into()
}

async fn with_lease(
    graph: &GraphClient,
    target: &Target,
    options: &Options,
    progress: &dyn Progress,
) -> anyhow::Result<Report> {
    let fetched = {
        let fetch = fetch(graph, target, options, progress);
        let renew = keep_lease(target, options);
        tokio::select! {
            fetched = fetch => fetched?,
            lost = renew => return Err(lost),
        }
    };
    // Still ours? Then nothing else writes this connection's export while we commit.
    target
        .store
        .renew_lease(&target.owner, target.id, &options.holder, options.lease_ttl)
        .await
        .map_err(lease_error)?;
    commit(target, options, fetched, progress).await
}

/// Renews the lease every third of its time-to-live; returns only when it is lost.
async fn keep_lease(target: &Target, options: &Options) -> anyhow::Error {
    let every = (options.lease_ttl / 3).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        if let Err(error) = target
            .store
            .renew_lease(&target.owner, target.id, &options.holder, options.lease_ttl)
            .await
        {
            // A backend hiccup is retried at the next tick while the lease lasts.
            if error.is_retryable() {
                tracing::warn!(%error, "could not renew the sync lease; retrying");
                continue;
            }
            return lease_error(error);
        }
    }
}

fn lease_error(error: StoreError) -> anyhow::Error {
    if matches!(error, StoreError::LeaseLost { .. }) {
        SyncStop::LeaseLost.into()
    } else {
        anyhow::Error::new(error).context("could not renew the sync lease")
    }
}

/// The new snapshot with the previous one, before anything is written.
struct Fetched {
    kind: Kind,
    previous: Snapshot,
    next: Snapshot,
    links: Links,
}

async fn fetch(
    graph: &GraphClient,
    target: &Target,
    options: &Options,
    progress: &dyn Progress,
) -> anyhow::Result<Fetched> {
    let columns = options.user_columns();
    let previous = load_previous(&options.out_dir, options.format, target.id)?;
    let saved = if options.full {
        None
    } else {
        load_links(target).await?
    };
    // Delta applies changes to the previous export, so it needs that export, made with
    // the same attributes (a delta link keeps its round's $select, spec 9).
    let delta_from = match (saved, &previous) {
        (Some(links), Some(previous)) if previous.user_columns == columns => Some(links),
        _ => None,
    };
    let previous = previous.map(|p| p.snapshot).unwrap_or_default();

    if let Some(links) = delta_from {
        match delta(graph, &previous, &columns, links, progress).await {
            Ok((next, links)) => {
                return Ok(Fetched {
                    kind: Kind::Delta,
                    previous,
                    next,
                    links,
                });
            }
            Err(error) if is_resync(&error) => {
                tracing::info!("the delta links expired; running a full import");
                let (next, links) = full(graph, &columns, options.concurrency, progress).await?;
                return Ok(Fetched {
                    kind: Kind::Resync,
                    previous,
                    next,
                    links,
                });
            }
            Err(error) => return Err(error),
        }
    }
    let (next, links) = full(graph, &columns, options.concurrency, progress).await?;
    Ok(Fetched {
        kind: Kind::Full,
        previous,
        next,
        links,
    })
}

fn is_resync(error: &anyhow::Error) -> bool {
    error.chain().any(|e| {
        e.downcast_ref::<GraphError>()
            .is_some_and(GraphError::requires_resync)
    })
}

async fn load_links(target: &Target) -> anyhow::Result<Option<Links>> {
    let store = target.store.as_ref();
    let users = store
        .load_cursor(&target.owner, target.id, &CursorKey::users())
        .await
        .context("could not read the users cursor")?;
    let groups = store
        .load_cursor(&target.owner, target.id, &CursorKey::groups())
        .await
        .context("could not read the groups cursor")?;
    Ok(match (users, groups) {
        (Some(users), Some(groups)) => Some(Links {
            users: DeltaLink::new(users.expose_secret()),
            groups: DeltaLink::new(groups.expose_secret()),
        }),
        _ => None,
    })
}

async fn save_links(target: &Target, links: &Links) -> anyhow::Result<()> {
    // Delta links read the tenant's changes: stored like tokens (encrypted in SQL stores).
    for (key, link) in [
        (CursorKey::users(), &links.users),
        (CursorKey::groups(), &links.groups),
    ] {
        target
            .store
            .save_cursor(
                &target.owner,
                target.id,
                &key,
                SecretString::from(link.expose_secret().to_owned()),
            )
            .await
            .with_context(|| format!("could not save the {} cursor", key.as_str()))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Full import
// ---------------------------------------------------------------------------------------

/// Links "from now" first, then everything as it is.
async fn full(
    graph: &GraphClient,
    columns: &[String],
    concurrency: usize,
    progress: &dyn Progress,
) -> anyhow::Result<(Snapshot, Links)> {
    let user_select: Vec<&str> = columns.iter().map(String::as_str).collect();
    let mut group_delta_select: Vec<&str> = GROUP_SELECT.to_vec();
    group_delta_select.push("members");
    let users_link = latest_link(graph.users().delta().select(&user_select).from_now())
        .await
        .context("could not start tracking user changes")?;
    let groups_link = latest_link(
        graph
            .groups()
            .delta()
            .select(&group_delta_select)
            .from_now(),
    )
    .await
    .context("could not start tracking group changes")?;

    let mut snapshot = Snapshot::default();
    progress.start(Phase::Users, None);
    let pages = graph.users().list().select(&user_select).top(999).pages();
    let mut pages = std::pin::pin!(pages);
    while let Some(page) = pages.try_next().await.context("could not list the users")? {
        let items = page.into_items();
        progress.advance(Phase::Users, items.len() as u64);
        for user in items {
            if let Some((id, record)) = user_record(&user, columns) {
                snapshot.users.insert(id, record);
            }
        }
    }
    progress.finish(Phase::Users);

    progress.start(Phase::Groups, None);
    let mut group_select: Vec<&str> = vec!["id"];
    group_select.extend_from_slice(GROUP_SELECT);
    let pages = graph.groups().list().select(&group_select).top(999).pages();
    let mut pages = std::pin::pin!(pages);
    while let Some(page) = pages
        .try_next()
        .await
        .context("could not list the groups")?
    {
        let items = page.into_items();
        progress.advance(Phase::Groups, items.len() as u64);
        for group in items {
            if let Some((id, record)) = group_record(&group) {
                snapshot.groups.insert(id, record);
            }
        }
    }
    progress.finish(Phase::Groups);

    let ids: Vec<String> = snapshot.groups.keys().cloned().collect();
    snapshot.members = expand_members(graph, &ids, concurrency, progress).await?;
    Ok((
        snapshot,
        Links {
            users: users_link,
            groups: groups_link,
        },
    ))
}

async fn latest_link<T: graph_client::DeltaObject>(
    request: graph_client::DeltaRequest<T>,
) -> anyhow::Result<DeltaLink> {
    Ok(request.latest_link().await?)
}

/// The members of every group in `ids`: first pages 20 groups per `$batch`, and the
/// remaining pages of each large group as its own chain of next links. Up to
/// `concurrency` batches or chains are in flight at once; a chain starts as soon as its
/// group's first page is in, before further batches, since a large group's pages come
/// one after another and the longest chain bounds the whole expansion.
///
/// # Errors
/// The first Graph error of any group (after the client's retries): a partial
/// membership list is never returned.
pub async fn expand_members<'a>(
    graph: &'a GraphClient,
    ids: &'a [String],
    concurrency: usize,
    progress: &dyn Progress,
) -> anyhow::Result<BTreeMap<String, BTreeMap<String, String>>> {
    let concurrency = concurrency.max(1);
    progress.start(Phase::Memberships, Some(ids.len() as u64));
    let mut members: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut batches = ids.chunks(BATCH_SIZE);
    let mut chains: VecDeque<(String, NextLink)> = VecDeque::new();
    let mut in_flight: FuturesUnordered<BoxFuture<'a, anyhow::Result<Expanded<'a>>>> =
        FuturesUnordered::new();
    loop {
        while in_flight.len() < concurrency {
            if let Some((id, link)) = chains.pop_front() {
                in_flight.push(Box::pin(follow_chain(graph, id, link)));
            } else if let Some(chunk) = batches.next() {
                in_flight.push(Box::pin(first_pages(graph, chunk)));
            } else {
                break;
            }
        }
        let Some(done) = in_flight.next().await else {
            break;
        };
        match done? {
            Expanded::FirstPages(chunk, answers) => {
                for (id, answer) in chunk.iter().zip(answers) {
                    let page = answer
                        .with_context(|| format!("could not read the members of group {id}"))?;
                    let next = page.next_link().cloned();
                    add_members(members.entry(id.clone()).or_default(), page.into_items());
                    match next {
                        Some(link) => chains.push_back((id.clone(), link)),
                        None => progress.advance(Phase::Memberships, 1),
                    }
                }
            }
            Expanded::Rest(id, found) => {
                members.entry(id).or_default().extend(found);
                progress.advance(Phase::Memberships, 1);
            }
        }
    }
    progress.finish(Phase::Memberships);
    Ok(members)
}

/// A finished piece of the expansion.
enum Expanded<'a> {
    /// The first member pages of a chunk of groups, in the chunk's order.
    FirstPages(&'a [String], Vec<Result<Page<DirectoryObject>, GraphError>>),
    /// The members on a group's later pages.
    Rest(String, BTreeMap<String, String>),
}

async fn first_pages<'a>(graph: &GraphClient, chunk: &'a [String]) -> anyhow::Result<Expanded<'a>> {
    let items = chunk
        .iter()
        .map(|id| member_request(graph, id).to_batch_item())
        .collect::<Result<Vec<_>, _>>()?;
    let answers = graph
        .batch_pages::<DirectoryObject>(items)
        .await
        .context("could not expand group members")?;
    Ok(Expanded::FirstPages(chunk, answers))
}

async fn follow_chain(
    graph: &GraphClient,
    id: String,
    link: NextLink,
) -> anyhow::Result<Expanded<'_>> {
    let mut found = BTreeMap::new();
    let pages = graph.resume_pages::<DirectoryObject>(link);
    let mut pages = std::pin::pin!(pages);
    while let Some(page) = pages
        .try_next()
        .await
        .with_context(|| format!("could not read the members of group {id}"))?
    {
        add_members(&mut found, page.into_items());
    }
    Ok(Expanded::Rest(id, found))
}

/// `GET /groups/{id}/members?$select=id&$top=999`: ids and types are all we keep
/// (`@odata.type` comes with every member, spec 13), and `$select` costs one resource
/// unit less (spec 10a).
pub fn member_request(graph: &GraphClient, id: &str) -> graph_client::ListRequest<DirectoryObject> {
    graph.groups().members(id).select(["id"]).top(MEMBER_PAGE)
}

fn add_members(into: &mut BTreeMap<String, String>, objects: Vec<DirectoryObject>) {
    for object in objects {
        if let Some((id, kind)) = member_of(&object) {
            into.insert(id, kind);
        }
    }
}

/// A member's id and short type name (`user`, `group`, `orgContact`, ...).
fn member_of(object: &DirectoryObject) -> Option<(String, String)> {
    let (id, kind) = match object {
        DirectoryObject::User(user) => (user.id.as_ref()?.as_str().to_owned(), "user".to_owned()),
        DirectoryObject::Group(group) => {
            (group.id.as_ref()?.as_str().to_owned(), "group".to_owned())
        }
        DirectoryObject::OrgContact(e) => (e.id.as_ref()?.as_str().to_owned(), "orgContact".into()),
        DirectoryObject::Device(e) => (e.id.as_ref()?.as_str().to_owned(), "device".into()),
        DirectoryObject::ServicePrincipal(e) => (
            e.id.as_ref()?.as_str().to_owned(),
            "servicePrincipal".into(),
        ),
        DirectoryObject::Other { odata_type, id, .. } => (
            id.as_ref()?.as_str().to_owned(),
            short_type(odata_type.as_deref()),
        ),
        other => (
            other.id()?.as_str().to_owned(),
            "directoryObject".to_owned(),
        ),
    };
    Some((id, kind))
}

fn short_type(odata_type: Option<&str>) -> String {
    odata_type.map_or_else(
        || "directoryObject".to_owned(),
        |t| t.trim_start_matches("#microsoft.graph.").to_owned(),
    )
}

/// The selected columns of a user, nulls dropped; `None` without an id.
pub(crate) fn user_record(user: &User, columns: &[String]) -> Option<(String, Record)> {
    let id = user.id.as_ref()?.as_str().to_owned();
    let Ok(Value::Object(all)) = serde_json::to_value(user) else {
        return None;
    };
    Some((id, pick(all, columns.iter().map(String::as_str))))
}

/// The exported properties of a group, nulls dropped; `None` without an id.
pub(crate) fn group_record(group: &Group) -> Option<(String, Record)> {
    let id = group.id.as_ref()?.as_str().to_owned();
    let Ok(Value::Object(all)) = serde_json::to_value(group) else {
        return None;
    };
    let columns = std::iter::once("id").chain(GROUP_SELECT.iter().copied());
    Some((id, pick(all, columns)))
}

fn pick<'a>(mut all: Record, columns: impl Iterator<Item = &'a str>) -> Record {
    let mut record = Record::new();
    for column in columns {
        if let Some(value) = all.remove(column)
            && !value.is_null()
        {
            record.insert(column.to_owned(), value);
        }
    }
    record
}

// ---------------------------------------------------------------------------------------
// Delta
// ---------------------------------------------------------------------------------------

/// Applies a users round and a groups round to `previous`. Upserts replace the record
/// (a change round carries every selected property, spec 9, without `Prefer:
/// return=minimal`), removals of unknown ids change nothing (replays).
async fn delta(
    graph: &GraphClient,
    previous: &Snapshot,
    columns: &[String],
    links: Links,
    progress: &dyn Progress,
) -> anyhow::Result<(Snapshot, Links)> {
    let mut next = previous.clone();

    progress.start(Phase::Users, None);
    let mut stream = graph.users().delta_from(&links.users);
    while let Some(event) = stream
        .try_next()
        .await
        .context("the users delta round failed")?
    {
        match event {
            DeltaChange::Upsert(user) => {
                // The round's $select lives in its link and is the previous export's
                // columns (delta runs only when they match).
                let Some((id, record)) = user_record(&user, columns) else {
                    continue;
                };
                next.users.insert(id, record);
                progress.advance(Phase::Users, 1);
            }
            DeltaChange::Removed { id, .. } => {
                // Soft ("changed") and permanent ("deleted") removals both leave the
                // export: a soft-deleted user cannot sign in (spec 9).
                next.users.remove(id.as_str());
                next.remove_member_everywhere(id.as_str());
                progress.advance(Phase::Users, 1);
            }
        }
    }
    let users_link = stream.into_delta_link();
    progress.finish(Phase::Users);

    progress.start(Phase::Groups, None);
    let mut stream = graph.groups().delta_from(&links.groups);
    while let Some(event) = stream
        .try_next()
        .await
        .context("the groups delta round failed")?
    {
        match event {
            DeltaChange::Upsert(group) => {
                let Some((id, record)) = group_record(&group) else {
                    continue;
                };
                let members = next.members.entry(id.clone()).or_default();
                for change in &group.members_delta {
                    if change.is_removed() {
                        members.remove(change.id.as_str());
                    } else {
                        members.insert(
                            change.id.as_str().to_owned(),
                            short_type(change.odata_type.as_deref()),
                        );
                    }
                }
                next.groups.insert(id, record);
                progress.advance(Phase::Groups, 1);
            }
            DeltaChange::Removed { id, .. } => {
                next.groups.remove(id.as_str());
                next.members.remove(id.as_str());
                next.remove_member_everywhere(id.as_str());
                progress.advance(Phase::Groups, 1);
            }
        }
    }
    let groups_link = stream.into_delta_link();
    progress.finish(Phase::Groups);
    // Members of groups the export does not have (a replayed change of a deleted group).
    let known: BTreeSet<String> = next.groups.keys().cloned().collect();
    next.members.retain(|id, _| known.contains(id));

    Ok((
        next,
        Links {
            users: users_link.context("the users delta round ended without a delta link")?,
            groups: groups_link.context("the groups delta round ended without a delta link")?,
        },
    ))
}

// ---------------------------------------------------------------------------------------
// Commit
// ---------------------------------------------------------------------------------------

async fn commit(
    target: &Target,
    options: &Options,
    fetched: Fetched,
    progress: &dyn Progress,
) -> anyhow::Result<Report> {
    let Fetched {
        kind,
        previous,
        next,
        links,
    } = fetched;
    let (users, deleted_user_ids) = diff(&previous.users, &next.users);
    let (groups, _) = diff(&previous.groups, &next.groups);
    let memberships = diff_members(&previous.members, &next.members);
    let report = Report {
        kind,
        users,
        groups,
        memberships,
        files: Vec::new(),
        elapsed: Duration::ZERO,
        deleted_user_ids,
    };

    progress.start(Phase::Writing, None);
    let columns = options.user_columns();
    let out_dir = options.out_dir.clone();
    let format = options.format;
    let id = target.id;
    let summary = output::summary_json(&report);
    // File writing blocks: off the async workers.
    let files = tokio::task::spawn_blocking(move || {
        output::write_all(&out_dir, format, id, &columns, &next, &summary)
    })
    .await
    .context("the export writer stopped")??;
    progress.finish(Phase::Writing);

    // Cursors only after the export they belong to is in place.
    save_links(target, &links).await?;
    target
        .store
        .record_sync(&target.owner, target.id, time::OffsetDateTime::now_utc())
        .await
        .context("could not record the sync time")?;
    Ok(Report { files, ..report })
}

fn diff(
    before: &BTreeMap<String, Record>,
    after: &BTreeMap<String, Record>,
) -> (Counts, Vec<String>) {
    let mut counts = Counts {
        total: after.len() as u64,
        ..Counts::default()
    };
    for (id, record) in after {
        match before.get(id) {
            None => counts.added += 1,
            Some(old) if old != record => counts.updated += 1,
            Some(_) => {}
        }
    }
    let deleted: Vec<String> = before
        .keys()
        .filter(|id| !after.contains_key(*id))
        .cloned()
        .collect();
    counts.deleted = deleted.len() as u64;
    (counts, deleted)
}

fn diff_members(
    before: &BTreeMap<String, BTreeMap<String, String>>,
    after: &BTreeMap<String, BTreeMap<String, String>>,
) -> Counts {
    let empty = BTreeMap::new();
    let mut counts = Counts::default();
    for (group, members) in after {
        let old = before.get(group).unwrap_or(&empty);
        counts.total += members.len() as u64;
        counts.added += members.keys().filter(|m| !old.contains_key(*m)).count() as u64;
    }
    for (group, members) in before {
        let new = after.get(group).unwrap_or(&empty);
        counts.deleted += members.keys().filter(|m| !new.contains_key(*m)).count() as u64;
    }
    counts
}
