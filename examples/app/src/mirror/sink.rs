//! [`MirrorSink`]: the mirror as the [`DirectorySink`] of one connection.
//!
//! Rows belong to a snapshot (`mirror_snapshots`); readers see only the connection's
//! committed one (`mirror_state.snapshot`).
//! - `begin` opens a sync (a new sync id in `mirror_state`), discards whatever an earlier,
//!   uncommitted sync of the connection left, and for a full import or resync creates the
//!   snapshot it writes.
//! - `apply` gathers the changes and writes them once it holds [`FLUSH_CHANGES`] or
//!   [`FLUSH_BYTES`], in one short transaction, so `SQLite`'s single writer stays free
//!   between writes: a delta's changes are appended, in order, to `mirror_staged`; a
//!   snapshot's go straight into its own rows (users and memberships in key order),
//!   written once. The write runs in a task of its own while the sync gathers the next
//!   batch (at most one write in flight, so two batches in memory); its error ends the
//!   sync at the next `apply` or the `commit`. Every write of a sink goes through one
//!   connection of its own ([`Writer`]), which keeps its page cache warm.
//! - `commit` takes one transaction: it checks the fence, replays the delta's changes
//!   into the committed snapshot in order (counting as `MemorySink` counts; a chunk at a
//!   time: the rows a chunk touches are read, changed in memory and written back, a few
//!   statements a table), or counts what the new snapshot adds, changes and removes
//!   against the committed one and makes it the committed one; writes the links, and
//!   closes the sync. A delta with no changes touches only the state row. The staged
//!   changes and the replaced snapshot are deleted after the commit.
//!
//! A sync dropped anywhere before the commit leaves the mirror and its links as they
//! were; what it wrote is discarded by the next `begin`.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use connection_store::{ConnectionId, LeaseHolder};
use connection_store_sql::{SealedSecret, SqlStore};
use graph_client::ObjectId;
use graph_client::sync::{
    Change, DirectorySink, ObjectCounts, SinkError, SyncKind, SyncLinks, SyncSummary,
};

use super::db::{Arg, Pool, Tx, Writer, placeholders};
use super::error::{MirrorError, ObjectKind};
use super::rows::{
    GROUP_COLUMN_COUNT, GROUP_COLUMNS, GroupRow, Staged, StagedRow, USER_COLUMN_COUNT,
    USER_COLUMNS, UserRow, excluded, text_of,
};

/// The purpose the links are sealed under (part of the ciphertext's associated data).
const LINKS_PURPOSE: &str = "mirror-links";

/// A sink writes the changes it gathered once it holds this many (by default,
/// [`MirrorSink::gather`])...
pub const FLUSH_CHANGES: usize = 20_000;
/// ...or about this many bytes of them: one transaction per 1,000-change page cost a
/// full import of 100,000 users twice the time (`SQLite` writes each page it dirties
/// once per transaction, and the indexes are keyed by random ids). A sink holds two such
/// batches, one being written while it gathers the next.
pub const FLUSH_BYTES: usize = 2 << 20;

/// Staged changes read back per query while a delta commits.
const REPLAY_CHUNK: i64 = 500;

/// Bound parameters per multi-row statement with `$N` placeholders (`SQLite` allows
/// 32766, `PostgreSQL` 65535). Kept small: sqlx looks each `$N` up by name in `SQLite`,
/// which costs O(parameters) per parameter (960 spent 12 % of a full import's time there;
/// 240 a quarter of that).
const MAX_PARAMS: usize = 240;

/// Bound parameters per multi-row upsert with positional `?` placeholders on `SQLite`,
/// which sqlx binds in order without a lookup. A 100,000-user full import took 5.0–6.6 s
/// at 1,000, 4.1–5.9 s at 2,000 and 4.3–4.7 s at 4,000, whose larger statements took the
/// peak RSS to 64 MiB (`examples/bench.rs --only mirror`).
const SQLITE_MAX_PARAMS: usize = 2_000;

/// The sync in progress of a sink.
#[derive(Debug, Clone, Copy)]
struct OpenSync {
    id: i64,
    kind: SyncKind,
    applied: i64,
    /// The snapshot it writes: a new one for a full import or resync (and for a delta
    /// when the connection has none committed), else the committed one, which a delta
    /// changes when it commits.
    snapshot: i64,
    /// The committed snapshot when it began.
    committed: Option<i64>,
    /// A write failed: some of its changes were lost, so it cannot commit.
    lost: bool,
}

/// The directory mirror of one connection as a [`DirectorySink`]: what
/// [`graph_client::sync::run`] imports goes into the `mirror_*` tables beside the
/// connection store, with the links sealed by the store's key ring. Made by
/// [`Mirror::sink`](super::Mirror::sink).
///
/// Content and [`SyncSummary`] counts are those [`graph_client::sync::MemorySink`] gives
/// for the same changes.
pub struct MirrorSink {
    target: Target,
    open: Option<OpenSync>,
    /// What the sync in progress applied and this sink has not written yet.
    pending: Pending,
    /// Changes gathered before a write.
    flush_changes: usize,
    writing: Writing,
}

/// Where a sink writes and who may: what a batch write takes into its task.
#[derive(Clone)]
struct Target {
    pool: Pool,
    store: SqlStore,
    connection: ConnectionId,
    fence: Option<LeaseHolder>,
}

/// The sink's [`Writer`], or the batch write that holds it.
enum Writing {
    /// No write running; the writer, once opened.
    Idle(Option<Writer>),
    /// A batch being written in a task of its own, which hands the writer back.
    Busy(BatchWrite),
}

/// A batch write in flight: the writer it took back, and how many changes it wrote.
/// Dropped, it is cancelled and its transaction rolls back.
struct BatchWrite(tokio::task::JoinHandle<(Writer, Result<i64, MirrorError>)>);

impl Drop for BatchWrite {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Changes gathered for one write.
#[derive(Default)]
struct Pending {
    changes: Vec<Staged>,
    /// Their [`Staged::weight`].
    bytes: usize,
}

impl std::fmt::Debug for MirrorSink {
    /// The gathered changes by number only: they hold people's data.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorSink")
            .field("connection", &self.target.connection)
            .field("fence", &self.target.fence)
            .field("open", &self.open)
            .field("writing", &matches!(self.writing, Writing::Busy(_)))
            .field("pending", &self.pending.changes.len())
            .finish_non_exhaustive()
    }
}

/// Counts of one commit, as `MemorySink` counts them.
#[derive(Default)]
struct Tally {
    users: ObjectCounts,
    groups: ObjectCounts,
    memberships: ObjectCounts,
    removed_users: Vec<ObjectId>,
}

impl Tally {
    fn removed_user(&mut self, id: String) {
        self.users.removed += 1;
        if self.removed_users.len() < SyncSummary::MAX_REMOVED_IDS {
            self.removed_users.push(ObjectId::new(id));
        }
    }

    fn into_summary(self) -> SyncSummary {
        let mut summary = SyncSummary::new(self.users, self.groups, self.memberships);
        for id in self.removed_users {
            summary.note_removed_user(id);
        }
        summary
    }
}

fn to_u64(connection: ConnectionId, value: i64) -> Result<u64, MirrorError> {
    u64::try_from(value)
        .map_err(|_| MirrorError::corrupt(connection, ObjectKind::State, "", "a negative count"))
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn is_foreign_key_violation(error: &connection_store_sql::sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(connection_store_sql::sqlx::error::DatabaseError::is_foreign_key_violation)
}

impl MirrorSink {
    pub(crate) fn new(pool: Pool, store: SqlStore, connection: ConnectionId) -> Self {
        Self {
            target: Target {
                pool,
                store,
                connection,
                fence: None,
            },
            open: None,
            pending: Pending::default(),
            flush_changes: FLUSH_CHANGES,
            writing: Writing::Idle(None),
        }
    }

    /// Fences this sink by the connection's sync lease: `begin` and `commit` check,
    /// inside their transaction, that `holder` still holds an unexpired lease
    /// (`ConnectionStore::acquire_lease`), and otherwise change nothing and fail with
    /// [`SinkErrorKind::Fenced`](graph_client::sync::SinkErrorKind::Fenced). Without it
    /// (tests, a single process) the sink writes unfenced.
    #[must_use]
    pub fn with_fence(mut self, holder: LeaseHolder) -> Self {
        self.target.fence = Some(holder);
        self
    }

    /// Writes the changes it gathered once it holds `changes` of them (at least 1), or
    /// about [`FLUSH_BYTES`] (2 MiB) of them, whichever comes first; the default is
    /// [`FLUSH_CHANGES`] (20,000). Fewer mean more, smaller transactions: a slower full
    /// import, less memory.
    #[must_use]
    pub fn gather(mut self, changes: usize) -> Self {
        self.flush_changes = changes.max(1);
        self
    }

    /// The connection this sink mirrors.
    pub fn connection(&self) -> ConnectionId {
        self.target.connection
    }

    /// The lease holder that fences it, if any.
    pub fn fence(&self) -> Option<&LeaseHolder> {
        self.target.fence.as_ref()
    }

    /// Waits for the batch write in flight, if any, and counts what it wrote; its error
    /// ends the sync (its changes may be lost).
    async fn settle(&mut self) -> Result<(), MirrorError> {
        let Writing::Busy(write) = &mut self.writing else {
            return Ok(());
        };
        let (writer, result) = match (&mut write.0).await {
            Ok((writer, result)) => (Some(writer), result),
            Err(error) => (
                None,
                Err(MirrorError::Database {
                    operation: "stage changes",
                    source: Box::new(error),
                }),
            ),
        };
        self.writing = Writing::Idle(writer);
        match result {
            Ok(count) => {
                if let Some(open) = &mut self.open {
                    open.applied += count;
                }
                Ok(())
            }
            Err(error) => {
                self.lose_changes();
                Err(error)
            }
        }
    }

    /// The writer, once no batch write holds it; opened on first use.
    async fn writer(&mut self) -> Result<Writer, MirrorError> {
        self.settle().await?;
        match std::mem::replace(&mut self.writing, Writing::Idle(None)) {
            Writing::Idle(Some(writer)) => Ok(writer),
            _ => self
                .target
                .pool
                .writer()
                .await
                .map_err(MirrorError::database("open a connection to write with")),
        }
    }

    async fn begin_sync(&mut self, kind: SyncKind) -> Result<(), MirrorError> {
        let mut writer = self.writer().await?;
        let opened = self.target.begin_sync(&mut writer, kind).await;
        self.writing = Writing::Idle(Some(writer));
        self.open = Some(opened?);
        Ok(())
    }

    /// Gathers `changes`; writes what it gathered once it holds [`FLUSH_CHANGES`] or
    /// [`FLUSH_BYTES`]. After any error the sync cannot commit (its changes may be
    /// lost): begin again.
    async fn apply_changes(&mut self, changes: &[Change]) -> Result<(), MirrorError> {
        if self.open.is_none() {
            return Err(MirrorError::invalid("changes applied before begin"));
        }
        for change in changes {
            match Staged::of(change) {
                Ok(Some(change)) => {
                    self.pending.bytes += change.weight();
                    self.pending.changes.push(change);
                }
                Ok(None) => {}
                Err(error) => {
                    self.lose_changes();
                    return Err(error);
                }
            }
        }
        if self.pending.changes.len() >= self.flush_changes || self.pending.bytes >= FLUSH_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Drops the sync in progress, what it gathered and the batch write in flight.
    fn end_sync(&mut self) {
        self.open = None;
        self.pending = Pending::default();
        if matches!(self.writing, Writing::Busy(_)) {
            self.writing = Writing::Idle(None);
        }
    }

    /// Marks the sync in progress as one that cannot commit.
    fn lose_changes(&mut self) {
        self.pending = Pending::default();
        if let Some(open) = &mut self.open {
            open.lost = true;
        }
    }

    /// Hands the gathered changes to a batch write of their own, in one transaction, once
    /// the write before it is done: the sync gathers the next changes while they are
    /// written (Graph's pages and `SQLite`'s writes overlap). Its failure ends the sync,
    /// at the next flush or the commit.
    async fn flush(&mut self) -> Result<(), MirrorError> {
        if self.open.is_none() {
            return Err(MirrorError::invalid("changes applied before begin"));
        }
        let mut writer = self.writer().await?;
        let staged = std::mem::take(&mut self.pending).changes;
        // A sync that lost changes cannot commit: writing more is for nothing.
        let Some(open) = self.open.filter(|open| !open.lost && !staged.is_empty()) else {
            self.writing = Writing::Idle(Some(writer));
            return Ok(());
        };
        let target = self.target.clone();
        self.writing = Writing::Busy(BatchWrite(tokio::spawn(async move {
            let written = target.write_staged(&mut writer, open, &staged).await;
            (writer, written)
        })));
        Ok(())
    }
}

impl Target {
    fn id(&self) -> Arg {
        Arg::Text(self.connection.to_string())
    }

    async fn check_fence(&self, tx: &mut Tx<'_>) -> Result<(), MirrorError> {
        let Some(holder) = &self.fence else {
            return Ok(());
        };
        let held = self
            .store
            .holds_lease(tx.connection(), self.connection, holder)
            .await
            .map_err(|source| MirrorError::Database {
                operation: "check the sync lease",
                source: Box::new(source),
            })?;
        if held {
            Ok(())
        } else {
            Err(MirrorError::Fenced {
                connection: self.connection,
                reason: "this writer does not hold the connection's sync lease (expired or taken over)",
            })
        }
    }

    fn superseded(&self) -> MirrorError {
        MirrorError::Fenced {
            connection: self.connection,
            reason: "another sync of this connection began since",
        }
    }

    async fn read_links(&self) -> Result<Option<SyncLinks>, MirrorError> {
        let row: Option<(Option<String>, Option<Vec<u8>>)> = self
            .pool
            .fetch_optional(
                "SELECT links_key_id, links_ciphertext FROM mirror_state WHERE connection_id = $1",
                &[self.id()],
            )
            .await
            .map_err(MirrorError::database("read the sync links"))?;
        match row {
            None | Some((None, None)) => Ok(None),
            Some((Some(key_id), Some(ciphertext))) => {
                let sealed = SealedSecret::new(key_id, ciphertext);
                let text = self
                    .store
                    .open_secret(self.connection, LINKS_PURPOSE, &sealed)
                    .map_err(|error| MirrorError::links(self.connection, &error))?;
                SyncLinks::decode(&text).map(Some).map_err(|error| {
                    MirrorError::corrupt(self.connection, ObjectKind::Links, "", error.to_string())
                })
            }
            Some(_) => Err(MirrorError::corrupt(
                self.connection,
                ObjectKind::Links,
                "",
                "a key id without a ciphertext, or the reverse",
            )),
        }
    }

    /// Opens a sync of `kind` (see the module docs).
    async fn begin_sync(
        &self,
        writer: &mut Writer,
        kind: SyncKind,
    ) -> Result<OpenSync, MirrorError> {
        let failed = MirrorError::database("begin a sync");
        let mut tx = writer.write().await.map_err(&failed)?;
        let created = tx
            .execute(
                "INSERT INTO mirror_state (connection_id) VALUES ($1) \
                 ON CONFLICT (connection_id) DO NOTHING",
                &[self.id()],
            )
            .await;
        match created {
            Err(error) if is_foreign_key_violation(&error) => {
                return Err(MirrorError::UnknownConnection {
                    connection: self.connection,
                });
            }
            other => other.map_err(&failed)?,
        };
        self.check_fence(&mut tx).await?;
        let (id, committed): (i64, Option<i64>) = tx
            .fetch_one(
                "UPDATE mirror_state SET sync_id = sync_id + 1, sync_kind = $2, staged = 0 \
                 WHERE connection_id = $1 RETURNING sync_id, snapshot",
                &[self.id(), Arg::from(kind.as_str())],
            )
            .await
            .map_err(&failed)?;
        // What a crashed or dropped sync of the connection left goes: its staged delta
        // changes, and every snapshot but the committed one.
        tx.execute(
            "DELETE FROM mirror_staged WHERE connection_id = $1",
            &[self.id()],
        )
        .await
        .map_err(&failed)?;
        let stale: Vec<(i64,)> = tx
            .fetch_all(
                "SELECT id FROM mirror_snapshots WHERE connection_id = $1 AND id <> $2",
                &[self.id(), Arg::Int(committed.unwrap_or(-1))],
            )
            .await
            .map_err(&failed)?;
        let stale: Vec<i64> = stale.into_iter().map(|(id,)| id).collect();
        drop_snapshots(&mut tx, &stale).await.map_err(&failed)?;
        let snapshot = match committed {
            Some(committed) if !kind.is_snapshot() => committed,
            _ => {
                let (snapshot,): (i64,) = tx
                    .fetch_one(
                        "INSERT INTO mirror_snapshots (connection_id, sync_id) VALUES ($1, $2) \
                         RETURNING id",
                        &[self.id(), Arg::Int(id)],
                    )
                    .await
                    .map_err(&failed)?;
                snapshot
            }
        };
        tx.commit().await.map_err(&failed)?;
        Ok(OpenSync {
            id,
            kind,
            applied: 0,
            snapshot,
            committed,
            lost: false,
        })
    }

    /// Stages `staged` in a transaction of its own: a delta's changes are appended to
    /// `mirror_staged`, a snapshot's written into its rows. Answers how many there were.
    async fn write_staged(
        &self,
        writer: &mut Writer,
        open: OpenSync,
        staged: &[Staged],
    ) -> Result<i64, MirrorError> {
        let count = i64::try_from(staged.len()).unwrap_or(i64::MAX);
        let failed = MirrorError::database("stage changes");
        let mut tx = writer.write().await.map_err(&failed)?;
        // Not needed for safety (the commit checks again), but a writer that lost its
        // lease stops at its next write instead of staging the rest for nothing.
        self.check_fence(&mut tx).await?;
        let total: Option<(i64,)> = tx
            .fetch_optional(
                "UPDATE mirror_state SET staged = staged + $3 \
                 WHERE connection_id = $1 AND sync_id = $2 AND sync_kind IS NOT NULL \
                 RETURNING staged",
                &[self.id(), Arg::Int(open.id), Arg::Int(count)],
            )
            .await
            .map_err(&failed)?;
        let Some((total,)) = total else {
            return Err(self.superseded());
        };
        if open.kind.is_snapshot() {
            stage_snapshot(&mut tx, &Arg::Int(open.snapshot), staged)
                .await
                .map_err(&failed)?;
        } else {
            let (connection, sync) = (self.id(), Arg::Int(open.id));
            stage_delta(&mut tx, &connection, &sync, total - count, staged)
                .await
                .map_err(&failed)?;
        }
        tx.commit().await.map_err(&failed)?;
        Ok(count)
    }

    async fn commit_sync(
        &self,
        writer: &mut Writer,
        open: OpenSync,
        links: &SyncLinks,
    ) -> Result<SyncSummary, MirrorError> {
        let sealed = self
            .store
            .seal_secret(self.connection, LINKS_PURPOSE, &links.encode())
            .map_err(|error| MirrorError::links(self.connection, &error))?;
        let failed = MirrorError::database("commit the sync");
        let (connection, sync) = (self.id(), Arg::Int(open.id));
        let mut tx = writer.write().await.map_err(&failed)?;
        // The fence first: PostgreSQL then locks the connection row before the state
        // row, in the order a connection's deletion (which cascades to the state) takes
        // them, so the two cannot deadlock.
        self.check_fence(&mut tx).await?;
        // This write locks the state row and proves the sync is still the connection's
        // current one.
        let state: Option<(i64, i64, i64, i64)> = tx
            .fetch_optional(
                "UPDATE mirror_state SET staged = staged \
                 WHERE connection_id = $1 AND sync_id = $2 AND sync_kind IS NOT NULL \
                 RETURNING staged, users_total, groups_total, memberships_total",
                &[connection.clone(), sync.clone()],
            )
            .await
            .map_err(&failed)?;
        let Some((staged, users_before, groups_before, memberships_before)) = state else {
            return Err(self.superseded());
        };
        if open.lost {
            return Err(MirrorError::invalid(
                "a write of this sync failed and lost changes: begin again",
            ));
        }
        if staged != open.applied {
            return Err(MirrorError::invalid(
                "the staged changes are not the ones this sink applied",
            ));
        }

        let mut tally = Tally::default();
        if open.kind.is_snapshot() {
            commit_snapshot(
                &mut tx,
                &Arg::Int(open.snapshot),
                open.committed,
                &mut tally,
            )
            .await
            .map_err(&failed)?;
        } else {
            let before = [users_before, groups_before, memberships_before]
                .map(|count| to_u64(self.connection, count));
            let [users, groups, memberships] = before;
            if staged > 0 {
                self.replay_delta(&mut tx, open, &mut tally).await?;
            }
            let total = |before: u64, counts: &ObjectCounts| {
                (before + counts.added)
                    .checked_sub(counts.removed)
                    .ok_or_else(|| {
                        MirrorError::corrupt(
                            self.connection,
                            ObjectKind::State,
                            "",
                            "the totals do not match the rows",
                        )
                    })
            };
            tally.users.total = total(users?, &tally.users)?;
            tally.groups.total = total(groups?, &tally.groups)?;
            tally.memberships.total = total(memberships?, &tally.memberships)?;
        }

        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000;
        tx.execute(
            "UPDATE mirror_state SET links_key_id = $2, links_ciphertext = $3, \
             commits = commits + 1, committed_at = $4, committed_kind = $5, users_total = $6, \
             groups_total = $7, memberships_total = $8, sync_kind = NULL, staged = 0, \
             snapshot = $9 WHERE connection_id = $1",
            &[
                connection.clone(),
                Arg::from(sealed.key_id()),
                Arg::Bytes(sealed.ciphertext().to_vec()),
                Arg::Int(i64::try_from(now).unwrap_or(i64::MAX)),
                Arg::from(open.kind.as_str()),
                Arg::Int(to_i64(tally.users.total)),
                Arg::Int(to_i64(tally.groups.total)),
                Arg::Int(to_i64(tally.memberships.total)),
                Arg::Int(open.snapshot),
            ],
        )
        .await
        .map_err(&failed)?;
        tx.commit().await.map_err(&failed)?;

        // The sync is closed (sync_kind is NULL): what it leaves behind can never be
        // read or replayed again, so deleting it is housekeeping, which the next begin
        // does too.
        let replaced = open.committed.filter(|old| *old != open.snapshot);
        if (staged > 0 || replaced.is_some())
            && let Err(error) = self.clear(writer, &sync, replaced).await
        {
            tracing::warn!(
                connection = %self.connection,
                error = %error,
                "could not clear what a committed sync left; the next sync will"
            );
        }
        Ok(tally.into_summary())
    }

    /// Deletes the staged changes of `sync` and the `replaced` snapshot.
    async fn clear(
        &self,
        writer: &mut Writer,
        sync: &Arg,
        replaced: Option<i64>,
    ) -> Result<(), MirrorError> {
        let failed = MirrorError::database("clear what a committed sync left");
        let mut tx = writer.write().await.map_err(&failed)?;
        tx.execute(
            "DELETE FROM mirror_staged WHERE connection_id = $1 AND sync_id = $2",
            &[self.id(), sync.clone()],
        )
        .await
        .map_err(&failed)?;
        if let Some(replaced) = replaced {
            drop_snapshots(&mut tx, &[replaced])
                .await
                .map_err(&failed)?;
        }
        tx.commit().await.map_err(&failed)
    }

    /// Replays the delta's staged changes in order, a chunk at a time, counting each one
    /// as `MemorySink` does; then drops memberships of groups the mirror does not hold.
    async fn replay_delta(
        &self,
        tx: &mut Tx<'_>,
        open: OpenSync,
        tally: &mut Tally,
    ) -> Result<(), MirrorError> {
        let failed = MirrorError::database("replay the staged changes");
        let (connection, sync, snapshot) = (self.id(), open.id, Arg::Int(open.snapshot));
        let mut after = -1;
        loop {
            let rows: Vec<StagedRow> = tx
                .fetch_all(
                    "SELECT seq, kind, object_id, member_id, member_type, data FROM mirror_staged \
                     WHERE connection_id = $1 AND sync_id = $2 AND seq > $3 ORDER BY seq LIMIT $4",
                    &[
                        connection.clone(),
                        Arg::Int(sync),
                        Arg::Int(after),
                        Arg::Int(REPLAY_CHUNK),
                    ],
                )
                .await
                .map_err(&failed)?;
            let Some(last) = rows.last() else {
                break;
            };
            after = last.0;
            let changes = rows
                .into_iter()
                .map(|row| Staged::from_row(self.connection, row))
                .collect::<Result<Vec<_>, _>>()?;
            replay_chunk(tx, &snapshot, &changes, tally)
                .await
                .map_err(&failed)?;
        }
        // A membership replayed after its group was removed (or for a group the mirror
        // never held) is dropped, so memberships always belong to a known group. Only
        // groups this delta added members to can be such a group.
        tally.memberships.removed += tx
            .execute(
                "DELETE FROM mirror_memberships WHERE snapshot = $3 AND group_id IN \
                 (SELECT object_id FROM mirror_staged WHERE connection_id = $1 AND sync_id = $2 \
                  AND kind = 'member_added') \
                 AND NOT EXISTS (SELECT 1 FROM mirror_groups g WHERE g.snapshot = $3 \
                  AND g.id = mirror_memberships.group_id)",
                &[connection, Arg::Int(sync), snapshot],
            )
            .await
            .map_err(&failed)?;
        Ok(())
    }
}

type SqlResult<T> = Result<T, connection_store_sql::sqlx::Error>;

/// `keys` (`per_key` values each) in batches that bind at most [`MAX_PARAMS`] values,
/// `snapshot` as `$1` included: each batch's number of keys and its arguments.
fn batches<'k>(
    snapshot: &'k Arg,
    keys: &'k [Arg],
    per_key: usize,
) -> impl Iterator<Item = (usize, Vec<Arg>)> + 'k {
    keys.chunks((MAX_PARAMS - 1) / per_key * per_key)
        .map(move |batch| {
            let mut args = Vec::with_capacity(batch.len() + 1);
            args.push(snapshot.clone());
            args.extend_from_slice(batch);
            (batch.len() / per_key, args)
        })
}

/// `(group_id = $2 AND member_id = $3) OR ...` for `count` pairs. An `OR` of keys, not
/// a row-value `IN (VALUES ...)`: `SQLite` looks each key up in the primary key only in
/// this form (the other scans the snapshot's memberships).
fn pairs_condition(count: usize) -> String {
    (0..count)
        .map(|n| format!("(group_id = ${} AND member_id = ${})", 2 + 2 * n, 3 + 2 * n))
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// Replays a chunk of staged changes: reads the rows they touch (a few statements a
/// table), applies the changes to those rows in order, in memory, counting as
/// `MemorySink` does, then writes the net effect (a few multi-row statements a table).
async fn replay_chunk(
    tx: &mut Tx<'_>,
    snapshot: &Arg,
    changes: &[Staged],
    tally: &mut Tally,
) -> SqlResult<()> {
    let mut touched = Touched::load(tx, snapshot, changes).await?;
    for change in changes {
        touched.apply(change, tally);
    }
    touched.write(tx, snapshot).await
}

/// The rows of the mirror a chunk of staged changes touches, as the changes applied so
/// far make them.
struct Touched<'a> {
    users: Objects<'a, UserRow>,
    groups: Objects<'a, GroupRow>,
    memberships: Memberships,
}

impl<'a> Touched<'a> {
    async fn load(tx: &mut Tx<'_>, snapshot: &Arg, changes: &'a [Staged]) -> SqlResult<Self> {
        let (mut users, mut groups) = (BTreeSet::new(), BTreeSet::new());
        for change in changes {
            match change {
                Staged::UserUpserted(row) => users.insert(row.id()),
                Staged::UserRemoved(id) => users.insert(id.as_str()),
                Staged::GroupUpserted(row) => groups.insert(row.id()),
                Staged::GroupRemoved(id) => groups.insert(id.as_str()),
                Staged::MemberAdded { .. } | Staged::MemberRemoved { .. } => false,
            };
        }
        Ok(Self {
            users: Objects::load(tx, snapshot, "mirror_users", users).await?,
            groups: Objects::load(tx, snapshot, "mirror_groups", groups).await?,
            memberships: Memberships::load(tx, snapshot, changes).await?,
        })
    }

    /// One change, counted as `MemorySink` counts it.
    fn apply(&mut self, change: &'a Staged, tally: &mut Tally) {
        let memberships = &mut self.memberships;
        match change {
            Staged::UserUpserted(row) => self.users.upsert(row.id(), row, &mut tally.users),
            Staged::UserRemoved(id) => {
                if self.users.remove(id) {
                    tally.removed_user(id.clone());
                }
                tally.memberships.removed += memberships.remove_member(id);
            }
            Staged::GroupUpserted(row) => self.groups.upsert(row.id(), row, &mut tally.groups),
            Staged::GroupRemoved(id) => {
                if self.groups.remove(id) {
                    tally.groups.removed += 1;
                }
                tally.memberships.removed += memberships.remove_group(id);
            }
            Staged::MemberAdded {
                group,
                member,
                member_type,
            } => memberships.add(group, member, member_type, &mut tally.memberships),
            Staged::MemberRemoved { group, member } => {
                tally.memberships.removed += memberships.remove(group, member);
            }
        }
    }

    async fn write(&self, tx: &mut Tx<'_>, snapshot: &Arg) -> SqlResult<()> {
        let users = (USER_COLUMNS, USER_COLUMN_COUNT, "id");
        self.users
            .write(tx, snapshot, "mirror_users", users)
            .await?;
        let groups = (GROUP_COLUMNS, GROUP_COLUMN_COUNT, "id");
        self.groups
            .write(tx, snapshot, "mirror_groups", groups)
            .await?;
        self.memberships.write(tx, snapshot).await
    }
}

/// A user or group row as a chunk replays it.
trait ObjectRow {
    fn data(&self) -> &str;
    fn args(&self) -> &[Arg];

    /// The second of [`args`](Self::args) for users and groups alike.
    fn sort_key(&self) -> Option<&str> {
        match self.args().get(1) {
            Some(Arg::Text(sort_key)) => Some(sort_key),
            _ => None,
        }
    }
}

impl ObjectRow for UserRow {
    fn data(&self) -> &str {
        UserRow::data(self)
    }

    fn args(&self) -> &[Arg] {
        UserRow::args(self)
    }
}

impl ObjectRow for GroupRow {
    fn data(&self) -> &str {
        GroupRow::data(self)
    }

    fn args(&self) -> &[Arg] {
        GroupRow::args(self)
    }
}

/// The users (or groups) a chunk names, by id.
struct Objects<'a, R> {
    rows: BTreeMap<&'a str, Object<'a, R>>,
}

/// The JSON and sort key an object had before the chunk, and what the chunk made of it.
struct Object<'a, R> {
    stored: Option<String>,
    sort_key: Option<String>,
    now: Now<'a, R>,
}

enum Now<'a, R> {
    Stored,
    Absent,
    Staged(&'a R),
}

impl<R: ObjectRow> Object<'_, R> {
    fn data(&self) -> Option<&str> {
        match self.now {
            Now::Stored => self.stored.as_deref(),
            Now::Absent => None,
            Now::Staged(row) => Some(row.data()),
        }
    }
}

impl<'a, R: ObjectRow> Objects<'a, R> {
    /// The rows of `ids` in `table` (an id it lacks is absent).
    async fn load(
        tx: &mut Tx<'_>,
        snapshot: &Arg,
        table: &str,
        ids: BTreeSet<&'a str>,
    ) -> SqlResult<Self> {
        let keys: Vec<Arg> = ids.iter().map(|id| Arg::from(*id)).collect();
        let absent = || Object {
            stored: None,
            sort_key: None,
            now: Now::Absent,
        };
        let mut rows: BTreeMap<&'a str, Object<'a, R>> =
            ids.into_iter().map(|id| (id, absent())).collect();
        for (count, args) in batches(snapshot, &keys, 1) {
            let found: Vec<(String, String, String)> = tx
                .fetch_all(
                    &format!(
                        "SELECT id, data, sort_key FROM {table} \
                         WHERE snapshot = $1 AND id IN ({})",
                        placeholders(2, count)
                    ),
                    &args,
                )
                .await?;
            for (id, data, sort_key) in found {
                if let Some(row) = rows.get_mut(id.as_str()) {
                    row.stored = Some(data);
                    row.sort_key = Some(sort_key);
                    row.now = Now::Stored;
                }
            }
        }
        Ok(Self { rows })
    }

    /// Counted as added, updated (different JSON) or nothing (the same JSON: a replay).
    fn upsert(&mut self, id: &str, row: &'a R, counts: &mut ObjectCounts) {
        // Every id the chunk names is loaded.
        let Some(object) = self.rows.get_mut(id) else {
            return;
        };
        match object.data() {
            Some(old) if old == row.data() => return,
            Some(_) => counts.updated += 1,
            None => counts.added += 1,
        }
        object.now = Now::Staged(row);
    }

    /// Whether there was an object to remove.
    fn remove(&mut self, id: &str) -> bool {
        match self.rows.get_mut(id) {
            Some(object) if object.data().is_some() => {
                object.now = Now::Absent;
                true
            }
            _ => false,
        }
    }

    /// Deletes what the chunk removed and upserts what it added or changed.
    async fn write(
        &self,
        tx: &mut Tx<'_>,
        snapshot: &Arg,
        table: &str,
        shape: (&str, usize, &str),
    ) -> SqlResult<()> {
        let mut removed = Vec::new();
        let (mut upserted, mut same_sort_key) = (Vec::new(), Vec::new());
        for (id, object) in &self.rows {
            match object.now {
                Now::Absent if object.stored.is_some() => removed.push(Arg::from(*id)),
                Now::Staged(row) if object.stored.as_deref() != Some(row.data()) => {
                    if object.stored.is_some() && object.sort_key.as_deref() == row.sort_key() {
                        same_sort_key.push(row.args());
                    } else {
                        upserted.push(row.args());
                    }
                }
                _ => {}
            }
        }
        for (count, args) in batches(snapshot, &removed, 1) {
            let sql = format!(
                "DELETE FROM {table} WHERE snapshot = $1 AND id IN ({})",
                placeholders(2, count)
            );
            tx.execute(&sql, &args).await?;
        }
        let scope = ("snapshot", std::slice::from_ref(snapshot));
        let set = excluded(shape.0);
        upsert_rows(tx, table, scope, shape, &set, &upserted).await?;
        // Setting a sort key, even to its value, rewrites the row's entry in the by-name
        // index in SQLite: the rows whose name did not change leave it out (half the
        // pages a commit writes when 1 % of the users changed their job title).
        let set = set
            .split(", ")
            .filter(|column| !column.starts_with("sort_key "))
            .collect::<Vec<_>>()
            .join(", ");
        upsert_rows(tx, table, scope, shape, &set, &same_sort_key).await
    }
}

/// The memberships a chunk touches, by (member, group): those its member changes name,
/// and every one of the users and groups it removes as member. Those of a removed group
/// as the group are counted, not loaded (a group may have any number of members).
#[derive(Default)]
struct Memberships {
    rows: BTreeMap<(String, String), Membership>,
    /// The groups the chunk removed, whose memberships all go, loaded or not.
    removed_groups: BTreeSet<String>,
    /// Of each group the chunk removes, how many stored memberships are not loaded.
    unloaded: BTreeMap<String, u64>,
}

/// The member type a membership had before the chunk, and after its changes so far.
struct Membership {
    stored: Option<String>,
    now: Option<String>,
}

impl Memberships {
    async fn load(tx: &mut Tx<'_>, snapshot: &Arg, changes: &[Staged]) -> SqlResult<Self> {
        let mut pairs = BTreeSet::new();
        let (mut members, mut groups) = (BTreeSet::new(), BTreeSet::new());
        for change in changes {
            match change {
                Staged::MemberAdded { group, member, .. }
                | Staged::MemberRemoved { group, member } => {
                    pairs.insert((member.clone(), group.clone()));
                }
                Staged::UserRemoved(id) => {
                    members.insert(id.as_str());
                }
                Staged::GroupRemoved(id) => {
                    members.insert(id.as_str());
                    groups.insert(id.as_str());
                }
                Staged::UserUpserted(_) | Staged::GroupUpserted(_) => {}
            }
        }
        // By member, only the keys: their index covers them (and `SQLite` uses it only
        // then); the member types come with the other pairs.
        let members: Vec<Arg> = members.into_iter().map(Arg::from).collect();
        for (count, args) in batches(snapshot, &members, 1) {
            let found: Vec<(String, String)> = tx
                .fetch_all(
                    &format!(
                        "SELECT member_id, group_id FROM mirror_memberships \
                         WHERE snapshot = $1 AND member_id IN ({})",
                        placeholders(2, count)
                    ),
                    &args,
                )
                .await?;
            pairs.extend(found);
        }
        let keys: Vec<Arg> = pairs
            .iter()
            .flat_map(|(member, group)| [Arg::from(group.as_str()), Arg::from(member.as_str())])
            .collect();
        let mut loaded = Self {
            rows: pairs
                .into_iter()
                .map(|pair| {
                    let absent = Membership {
                        stored: None,
                        now: None,
                    };
                    (pair, absent)
                })
                .collect(),
            ..Self::default()
        };
        for (count, args) in batches(snapshot, &keys, 2) {
            let found: Vec<(String, String, String)> = tx
                .fetch_all(
                    &format!(
                        "SELECT member_id, group_id, member_type FROM mirror_memberships \
                         WHERE snapshot = $1 AND ({})",
                        pairs_condition(count)
                    ),
                    &args,
                )
                .await?;
            for (member, group, member_type) in found {
                if let Some(row) = loaded.rows.get_mut(&(member, group)) {
                    row.stored = Some(member_type.clone());
                    row.now = Some(member_type);
                }
            }
        }
        let groups: Vec<Arg> = groups.into_iter().map(Arg::from).collect();
        for (count, args) in batches(snapshot, &groups, 1) {
            let totals: Vec<(String, i64)> = tx
                .fetch_all(
                    &format!(
                        "SELECT group_id, COUNT(*) FROM mirror_memberships \
                         WHERE snapshot = $1 AND group_id IN ({}) GROUP BY group_id",
                        placeholders(2, count)
                    ),
                    &args,
                )
                .await?;
            for (group, total) in totals {
                let in_rows = loaded
                    .rows
                    .iter()
                    .filter(|((_, of), row)| *of == group && row.stored.is_some())
                    .count();
                let unloaded = u64::try_from(total)
                    .unwrap_or_default()
                    .saturating_sub(in_rows as u64);
                loaded.unloaded.insert(group, unloaded);
            }
        }
        Ok(loaded)
    }

    /// Counted as added, updated (another member type) or nothing.
    fn add(&mut self, group: &str, member: &str, member_type: &str, counts: &mut ObjectCounts) {
        // Every pair the chunk names is loaded.
        let Some(row) = self.rows.get_mut(&(member.to_owned(), group.to_owned())) else {
            return;
        };
        match &row.now {
            Some(old) if old == member_type => return,
            Some(_) => counts.updated += 1,
            None => counts.added += 1,
        }
        row.now = Some(member_type.to_owned());
    }

    /// How many were removed (0 or 1).
    fn remove(&mut self, group: &str, member: &str) -> u64 {
        self.rows
            .get_mut(&(member.to_owned(), group.to_owned()))
            .map_or(0, |row| u64::from(row.now.take().is_some()))
    }

    /// Removes `member` from every group; answers how many memberships went.
    fn remove_member(&mut self, member: &str) -> u64 {
        self.rows
            .range_mut((member.to_owned(), String::new())..)
            .take_while(|((of, _), _)| of == member)
            .map(|(_, row)| u64::from(row.now.take().is_some()))
            .sum()
    }

    /// Removes `group`'s members and its own memberships; answers how many went.
    fn remove_group(&mut self, group: &str) -> u64 {
        let mut removed = if self.removed_groups.insert(group.to_owned()) {
            self.unloaded.get(group).copied().unwrap_or_default()
        } else {
            // The unloaded ones went the first time.
            0
        };
        for ((_, of), row) in &mut self.rows {
            if of == group {
                removed += u64::from(row.now.take().is_some());
            }
        }
        removed + self.remove_member(group)
    }

    /// Deletes the removed groups' memberships and those the chunk removed, then upserts
    /// those it added or changed (and re-added to a removed group).
    async fn write(&self, tx: &mut Tx<'_>, snapshot: &Arg) -> SqlResult<()> {
        let groups: Vec<Arg> = self
            .removed_groups
            .iter()
            .map(|group| Arg::from(group.as_str()))
            .collect();
        for (count, args) in batches(snapshot, &groups, 1) {
            let sql = format!(
                "DELETE FROM mirror_memberships WHERE snapshot = $1 AND group_id IN ({})",
                placeholders(2, count)
            );
            tx.execute(&sql, &args).await?;
        }
        let mut removed = Vec::new();
        let mut upserted = Vec::new();
        for ((member, group), row) in &self.rows {
            let group_removed = self.removed_groups.contains(group);
            match &row.now {
                None if row.stored.is_some() && !group_removed => {
                    removed.extend([Arg::from(group.as_str()), Arg::from(member.as_str())]);
                }
                Some(now) if group_removed || row.stored.as_ref() != Some(now) => {
                    upserted.push([
                        Arg::from(group.as_str()),
                        Arg::from(member.as_str()),
                        Arg::from(now.as_str()),
                    ]);
                }
                _ => {}
            }
        }
        for (count, args) in batches(snapshot, &removed, 2) {
            let sql = format!(
                "DELETE FROM mirror_memberships WHERE snapshot = $1 AND ({})",
                pairs_condition(count)
            );
            tx.execute(&sql, &args).await?;
        }
        let rows: Vec<&[Arg]> = upserted.iter().map(<[Arg; 3]>::as_slice).collect();
        let scope = ("snapshot", std::slice::from_ref(snapshot));
        let shape = ("group_id, member_id, member_type", 3, "group_id, member_id");
        upsert_rows(
            tx,
            "mirror_memberships",
            scope,
            shape,
            MEMBER_TYPE_SET,
            &rows,
        )
        .await
    }
}

/// Appends a delta's changes to `mirror_staged`, numbered from `first` + 1.
async fn stage_delta(
    tx: &mut Tx<'_>,
    connection: &Arg,
    sync: &Arg,
    first: i64,
    changes: &[Staged],
) -> SqlResult<()> {
    const PER_ROW: usize = 6;
    let mut seq = first;
    for chunk in changes.chunks(MAX_PARAMS / PER_ROW) {
        let mut args = vec![connection.clone(), sync.clone()];
        let mut rows = Vec::with_capacity(chunk.len());
        for change in chunk {
            seq += 1;
            rows.push(format!(
                "($1, $2, {})",
                placeholders(args.len() + 1, PER_ROW)
            ));
            args.push(Arg::Int(seq));
            args.extend(change.columns());
        }
        let sql = format!(
            "INSERT INTO mirror_staged \
             (connection_id, sync_id, seq, kind, object_id, member_id, member_type, data) \
             VALUES {}",
            rows.join(", ")
        );
        tx.execute(&sql, &args).await?;
    }
    Ok(())
}

/// The `SET` of a membership upsert.
const MEMBER_TYPE_SET: &str = "member_type = excluded.member_type";

/// Inserts `rows` (each `per_row` values of `columns`) in `table`, or updates the `set`
/// columns of those whose `key` it holds, many rows per statement, each after the `scope`
/// values of `scope_columns` (the snapshot, or the connection and the sync). `PostgreSQL`
/// binds the scope once a statement (`$1`...); `SQLite` takes positional `?`s, each row
/// its own copy of the scope, since sqlx looks every `$N` up by name there, which costs
/// O(parameters) per parameter (see [`SQLITE_MAX_PARAMS`]).
async fn upsert_rows(
    tx: &mut Tx<'_>,
    table: &str,
    (scope_columns, scope): (&str, &[Arg]),
    (columns, per_row, key): (&str, usize, &str),
    set: &str,
    rows: &[&[Arg]],
) -> SqlResult<()> {
    let postgres = tx.is_postgres();
    let rows_per_statement = if postgres {
        (MAX_PARAMS - scope.len()) / per_row
    } else {
        SQLITE_MAX_PARAMS / (scope.len() + per_row)
    }
    .max(1);
    let prefix = placeholders(1, scope.len());
    let positional = vec!["?"; scope.len() + per_row].join(", ");
    for chunk in rows.chunks(rows_per_statement) {
        let mut args: Vec<&Arg> = Vec::with_capacity(chunk.len() * (scope.len() + per_row));
        let mut values = Vec::with_capacity(chunk.len());
        if postgres {
            args.extend(scope);
        }
        for row in chunk {
            if postgres {
                values.push(format!(
                    "({prefix}, {})",
                    placeholders(args.len() + 1, per_row)
                ));
            } else {
                values.push(format!("({positional})"));
                args.extend(scope);
            }
            args.extend(row.iter());
        }
        let sql = format!(
            "INSERT INTO {table} ({scope_columns}, {columns}) VALUES {} \
             ON CONFLICT ({scope_columns}, {key}) DO UPDATE SET {set}",
            values.join(", ")
        );
        // Only the full-size statement is kept prepared.
        tx.execute_borrowed(&sql, &args, chunk.len() == rows_per_statement)
            .await?;
    }
    Ok(())
}

/// The last of each key in `items`, in their order (one statement may not upsert a key
/// twice, and the last value wins, as applying them one by one would).
fn last_of_each<T, K: Eq + std::hash::Hash>(items: &[T], key: impl Fn(&T) -> K) -> Vec<&T> {
    let mut seen = std::collections::HashSet::new();
    let mut kept: Vec<&T> = items
        .iter()
        .rev()
        .filter(|item| seen.insert(key(item)))
        .collect();
    kept.reverse();
    kept
}

/// Writes a snapshot's changes into its rows (those of the directory it has seen so
/// far), in order; runs of upserts go several rows per statement.
async fn stage_snapshot(tx: &mut Tx<'_>, snapshot: &Arg, changes: &[Staged]) -> SqlResult<()> {
    let scope = ("snapshot", std::slice::from_ref(snapshot));
    let mut rest = changes;
    while let Some(first) = rest.first() {
        let same_kind =
            |change: &Staged| std::mem::discriminant(change) == std::mem::discriminant(first);
        let run = rest.iter().take_while(|change| same_kind(change)).count();
        let (batch, next) = rest.split_at(run);
        rest = next;
        let id = |arg: String| Arg::Text(arg);
        match first {
            Staged::UserUpserted(_) => {
                let mut rows: Vec<&[Arg]> = last_of_each(batch, |change| match change {
                    Staged::UserUpserted(row) => row.id().to_owned(),
                    _ => String::new(),
                })
                .into_iter()
                .filter_map(|change| match change {
                    Staged::UserUpserted(row) => Some(row.args()),
                    _ => None,
                })
                .collect();
                // In key order, the rows go into the primary key's pages one after the
                // other instead of all over it (ids are random).
                rows.sort_by(|a, b| text_of(&a[0]).cmp(text_of(&b[0])));
                let shape = (USER_COLUMNS, USER_COLUMN_COUNT, "id");
                let set = excluded(USER_COLUMNS);
                upsert_rows(tx, "mirror_users", scope, shape, &set, &rows).await?;
            }
            Staged::GroupUpserted(_) => {
                let rows: Vec<&[Arg]> = last_of_each(batch, |change| match change {
                    Staged::GroupUpserted(row) => row.id().to_owned(),
                    _ => String::new(),
                })
                .into_iter()
                .filter_map(|change| match change {
                    Staged::GroupUpserted(row) => Some(row.args()),
                    _ => None,
                })
                .collect();
                let shape = (GROUP_COLUMNS, GROUP_COLUMN_COUNT, "id");
                let set = excluded(GROUP_COLUMNS);
                upsert_rows(tx, "mirror_groups", scope, shape, &set, &rows).await?;
            }
            Staged::MemberAdded { .. } => {
                let owned: Vec<[Arg; 3]> = last_of_each(batch, |change| match change {
                    Staged::MemberAdded { group, member, .. } => (group.clone(), member.clone()),
                    _ => (String::new(), String::new()),
                })
                .into_iter()
                .filter_map(|change| match change {
                    Staged::MemberAdded {
                        group,
                        member,
                        member_type,
                    } => Some([
                        id(group.clone()),
                        id(member.clone()),
                        id(member_type.clone()),
                    ]),
                    _ => None,
                })
                .collect();
                let mut rows: Vec<&[Arg]> = owned.iter().map(<[Arg; 3]>::as_slice).collect();
                // By member: the by-member index is written in order, and the primary
                // key (by group) at one place per group of the run.
                rows.sort_by(|a, b| {
                    (text_of(&a[1]), text_of(&a[0])).cmp(&(text_of(&b[1]), text_of(&b[0])))
                });
                let shape = ("group_id, member_id, member_type", 3, "group_id, member_id");
                let set = MEMBER_TYPE_SET;
                upsert_rows(tx, "mirror_memberships", scope, shape, set, &rows).await?;
            }
            _ => {
                for change in batch {
                    stage_removal(tx, snapshot, change).await?;
                }
            }
        }
    }
    Ok(())
}

/// A removal of a snapshot's change from the directory it has seen so far.
async fn stage_removal(tx: &mut Tx<'_>, snapshot: &Arg, change: &Staged) -> SqlResult<()> {
    let with = |id: &str| [snapshot.clone(), Arg::from(id)];
    match change {
        Staged::UserRemoved(id) => {
            tx.execute(
                "DELETE FROM mirror_users WHERE snapshot = $1 AND id = $2",
                &with(id),
            )
            .await?;
            tx.execute(
                "DELETE FROM mirror_memberships WHERE snapshot = $1 AND member_id = $2",
                &with(id),
            )
            .await?;
        }
        Staged::GroupRemoved(id) => {
            tx.execute(
                "DELETE FROM mirror_groups WHERE snapshot = $1 AND id = $2",
                &with(id),
            )
            .await?;
            tx.execute(
                "DELETE FROM mirror_memberships WHERE snapshot = $1 \
                 AND (group_id = $2 OR member_id = $2)",
                &with(id),
            )
            .await?;
        }
        Staged::MemberRemoved { group, member } => {
            tx.execute(
                "DELETE FROM mirror_memberships WHERE snapshot = $1 \
                 AND group_id = $2 AND member_id = $3",
                &[
                    snapshot.clone(),
                    Arg::from(group.as_str()),
                    Arg::from(member.as_str()),
                ],
            )
            .await?;
        }
        // Upserts are written by runs in `stage_snapshot`.
        Staged::UserUpserted(_) | Staged::GroupUpserted(_) | Staged::MemberAdded { .. } => {}
    }
    Ok(())
}

/// Deletes the rows of `snapshots`, then the snapshots.
async fn drop_snapshots(tx: &mut Tx<'_>, snapshots: &[i64]) -> SqlResult<()> {
    for snapshot in snapshots {
        for table in ["mirror_memberships", "mirror_groups", "mirror_users"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE snapshot = $1"),
                &[Arg::Int(*snapshot)],
            )
            .await?;
        }
        tx.execute(
            "DELETE FROM mirror_snapshots WHERE id = $1",
            &[Arg::Int(*snapshot)],
        )
        .await?;
    }
    Ok(())
}

/// A count from the database as `u64`.
fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

/// Counts what the snapshot `new` adds to, changes in and removes from the committed
/// `old` (removed user ids in id order, as `MemorySink` lists them). The rows are
/// already written: the commit only makes `new` the committed snapshot.
async fn commit_snapshot(
    tx: &mut Tx<'_>,
    new: &Arg,
    old: Option<i64>,
    tally: &mut Tally,
) -> SqlResult<()> {
    // Memberships of groups the snapshot does not hold are not part of it.
    tx.execute(
        "DELETE FROM mirror_memberships WHERE snapshot = $1 AND NOT EXISTS \
         (SELECT 1 FROM mirror_groups g WHERE g.snapshot = $1 AND g.id = mirror_memberships.group_id)",
        std::slice::from_ref(new),
    )
    .await?;
    let users = Diffed {
        table: "mirror_users",
        key: &["id"],
        compared: "data",
    };
    let groups = Diffed {
        table: "mirror_groups",
        ..users
    };
    let memberships = Diffed {
        table: "mirror_memberships",
        key: &["group_id", "member_id"],
        compared: "member_type",
    };
    tally.users = users
        .counts(tx, new, old, Some(&mut tally.removed_users))
        .await?;
    tally.groups = groups.counts(tx, new, old, None).await?;
    tally.memberships = memberships.counts(tx, new, old, None).await?;
    Ok(())
}

/// A table of snapshot rows, as a commit compares two snapshots of it.
#[derive(Clone, Copy)]
struct Diffed<'a> {
    table: &'a str,
    key: &'a [&'a str],
    /// The column that differs when a row changed.
    compared: &'a str,
}

impl Diffed<'_> {
    /// `n.k = o.k AND ...` over the key.
    fn same_key(&self) -> String {
        self.key
            .iter()
            .map(|column| format!("n.{column} = o.{column}"))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// Counts of `new` against `old` (every row added when there is none); the ids
    /// `old` holds and `new` does not go into `removed_ids` (at most
    /// [`SyncSummary::MAX_REMOVED_IDS`]).
    async fn counts(
        &self,
        tx: &mut Tx<'_>,
        new: &Arg,
        old: Option<i64>,
        removed_ids: Option<&mut Vec<ObjectId>>,
    ) -> SqlResult<ObjectCounts> {
        let table = self.table;
        let Some(old) = old else {
            let (total,): (i64,) = tx
                .fetch_one(
                    &format!("SELECT COUNT(*) FROM {table} WHERE snapshot = $1"),
                    std::slice::from_ref(new),
                )
                .await?;
            return Ok(ObjectCounts::new(count(total), 0, 0, count(total)));
        };
        let args = [new.clone(), Arg::Int(old)];
        let (same, compared, first) = (self.same_key(), self.compared, self.key[0]);
        let (total, added, updated): (i64, i64, i64) = tx
            .fetch_one(
                &format!(
                    "SELECT COUNT(*), \
                     COALESCE(SUM(CASE WHEN o.{first} IS NULL THEN 1 ELSE 0 END), 0), \
                     COALESCE(SUM(CASE WHEN o.{first} IS NOT NULL AND o.{compared} <> n.{compared} \
                     THEN 1 ELSE 0 END), 0) \
                     FROM {table} n LEFT JOIN {table} o ON o.snapshot = $2 AND {same} \
                     WHERE n.snapshot = $1"
                ),
                &args,
            )
            .await?;
        let unseen = format!(
            "FROM {table} o WHERE o.snapshot = $2 AND NOT EXISTS \
             (SELECT 1 FROM {table} n WHERE n.snapshot = $1 AND {same})"
        );
        let (removed,): (i64,) = tx
            .fetch_one(&format!("SELECT COUNT(*) {unseen}"), &args)
            .await?;
        if let Some(removed_ids) = removed_ids
            && removed > 0
        {
            let ids: Vec<(String,)> = tx
                .fetch_all(
                    &format!(
                        "SELECT o.{first} {unseen} ORDER BY o.{first} LIMIT {}",
                        SyncSummary::MAX_REMOVED_IDS
                    ),
                    &args,
                )
                .await?;
            removed_ids.extend(ids.into_iter().map(|(id,)| ObjectId::new(id)));
        }
        Ok(ObjectCounts::new(
            count(added),
            count(updated),
            count(removed),
            count(total),
        ))
    }
}

#[async_trait]
impl DirectorySink for MirrorSink {
    async fn links(&mut self) -> Result<Option<SyncLinks>, SinkError> {
        Ok(self.target.read_links().await?)
    }

    async fn begin(&mut self, kind: SyncKind) -> Result<(), SinkError> {
        self.end_sync();
        Ok(self.begin_sync(kind).await?)
    }

    async fn apply(&mut self, changes: &[Change]) -> Result<(), SinkError> {
        Ok(self.apply_changes(changes).await?)
    }

    async fn commit(&mut self, links: SyncLinks) -> Result<SyncSummary, SinkError> {
        self.flush().await?;
        // The last batch is written (or its error ends the sync) before the commit.
        let mut writer = self.writer().await?;
        let Some(open) = self.open.take() else {
            return Err(MirrorError::invalid("commit without begin").into());
        };
        match self.target.commit_sync(&mut writer, open, &links).await {
            // The writer goes with the sync: an idle sink holds no connection or cache.
            Ok(summary) => Ok(summary),
            Err(error) => {
                // Nothing was committed: the sync stays open, its staging intact (all
                // of it written before the commit).
                self.writing = Writing::Idle(Some(writer));
                self.open = Some(open);
                Err(error.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use connection_store::{
        AdminAccount, Cloud, ConnectionStore as _, NewConnection, OwnerId, SecretString, TenantId,
    };
    use connection_store_sql::{EncryptionKey, KeyId, KeyRing, SqlPool};
    use graph_client::sync::{MemberType, MemorySink};
    use graph_client::{DeltaLink, Group, RemovedReason, User};
    use rand::rngs::StdRng;
    use rand::{Rng as _, SeedableRng as _};

    use super::*;
    use crate::mirror::Mirror;

    const USERS: usize = 120;
    const GROUPS: usize = 8;

    fn links(round: usize) -> SyncLinks {
        SyncLinks::new(
            DeltaLink::new(format!(
                "https://graph.test/users/delta?$deltatoken={round}"
            )),
            DeltaLink::new(format!(
                "https://graph.test/groups/delta?$deltatoken={round}"
            )),
            vec!["id".to_owned(), "displayName".to_owned()],
        )
    }

    async fn sink_on(store: SqlStore) -> MirrorSink {
        let new = NewConnection {
            name: "Contoso".to_owned(),
            tenant: TenantId::new(ConnectionId::new().to_string()),
            cloud: Cloud::Global,
            admin: AdminAccount {
                object_id: "00000000-0000-0000-0000-0000000000a1".to_owned(),
                username: "admin@contoso.test".to_owned(),
                display_name: None,
            },
            scopes: vec!["https://graph.microsoft.com/User.Read.All".to_owned()],
            refresh_token: SecretString::from("rt".to_owned()),
        };
        let owner = OwnerId::new(format!("sink-{}", ConnectionId::new()));
        let connection = store.create(&owner, new).await.expect("a connection").id;
        let mirror = Mirror::open(&store).await.expect("the mirror");
        mirror.sink(&store, connection)
    }

    fn ring() -> KeyRing {
        KeyRing::new(
            KeyId::new("sink-test-1").expect("key id"),
            EncryptionKey::from_bytes([7; 32]),
        )
    }

    fn user(rng: &mut StdRng) -> Change {
        let id = format!("u{}", rng.random_range(0..USERS));
        // Few variants, so that many upserts repeat what the mirror holds.
        let title = ["Engineer", "Admiral", "100% remote"][rng.random_range(0..3)];
        let user: User = serde_json::from_value(serde_json::json!({
            "id": id,
            "displayName": format!("Person {id}"),
            "jobTitle": title,
            "accountEnabled": rng.random_bool(0.8),
        }))
        .expect("a user");
        Change::UserUpserted(Box::new(user))
    }

    fn group(rng: &mut StdRng) -> Change {
        let id = format!("g{}", rng.random_range(0..GROUPS));
        let name = ["Staff", "Engineering"][rng.random_range(0..2)];
        let group: Group =
            serde_json::from_value(serde_json::json!({"id": id, "displayName": name}))
                .expect("a group");
        Change::GroupUpserted(Box::new(group))
    }

    /// A member id (users, groups, one device, and ids no one holds) with its usual
    /// type, sometimes another.
    fn member(rng: &mut StdRng) -> (ObjectId, MemberType) {
        let (id, usual) = match rng.random_range(0..10) {
            0..=6 => (
                format!("u{}", rng.random_range(0..USERS + 5)),
                MemberType::User,
            ),
            7 | 8 => (
                format!("g{}", rng.random_range(0..GROUPS + 1)),
                MemberType::Group,
            ),
            _ => ("d1".to_owned(), MemberType::Device),
        };
        let member_type = if rng.random_bool(0.1) {
            MemberType::OrgContact
        } else {
            usual
        };
        (ObjectId::new(id), member_type)
    }

    fn group_id(rng: &mut StdRng) -> ObjectId {
        // One more than the tenant holds: memberships of an unknown group.
        ObjectId::new(format!("g{}", rng.random_range(0..=GROUPS)))
    }

    fn change(rng: &mut StdRng, snapshot: bool) -> Change {
        let roll = rng.random_range(0..100);
        match roll {
            0..=24 => user(rng),
            25..=32 if !snapshot => Change::UserRemoved {
                id: ObjectId::new(format!("u{}", rng.random_range(0..USERS + 5))),
                reason: RemovedReason::Deleted,
            },
            33..=40 => group(rng),
            41..=43 if !snapshot => Change::GroupRemoved {
                id: group_id(rng),
                reason: RemovedReason::Changed,
            },
            44..=84 => {
                let (member, member_type) = member(rng);
                Change::MemberAdded {
                    group: group_id(rng),
                    member,
                    member_type,
                }
            }
            _ if !snapshot => Change::MemberRemoved {
                group: group_id(rng),
                member: member(rng).0,
            },
            _ => user(rng),
        }
    }

    /// A sync of `changes` random changes, in pages of at most 100.
    fn pages(rng: &mut StdRng, changes: usize, snapshot: bool) -> Vec<Vec<Change>> {
        let all: Vec<Change> = (0..changes).map(|_| change(rng, snapshot)).collect();
        all.chunks(100).map(<[Change]>::to_vec).collect()
    }

    async fn drive(
        sink: &mut dyn DirectorySink,
        kind: SyncKind,
        pages: &[Vec<Change>],
        round: usize,
    ) -> SyncSummary {
        sink.begin(kind).await.expect("begin");
        for page in pages {
            sink.apply(page).await.expect("apply");
        }
        sink.commit(links(round)).await.expect("commit")
    }

    type UserColumns = (String, String, String, Option<bool>, Option<String>, String);

    type GroupColumns = (String, String, String);

    /// Every row of the mirror, derived columns included, as the rows of `memory`'s
    /// directory would be.
    async fn assert_same_rows(sink: &MirrorSink, memory: &MemorySink, round: usize) {
        const COMMITTED: &str = "(SELECT snapshot FROM mirror_state WHERE connection_id = $1)";
        let connection = [sink.target.id()];
        let directory = memory.directory();
        let users: Vec<UserColumns> = sink
            .target
            .pool
            .fetch_all(
                &format!(
                    "SELECT {USER_COLUMNS} FROM mirror_users WHERE snapshot = {COMMITTED} ORDER BY id"
                ),
                &connection,
            )
            .await
            .expect("users");
        let users: Vec<Vec<Arg>> = users
            .into_iter()
            .map(|u| {
                vec![
                    Arg::Text(u.0),
                    Arg::Text(u.1),
                    Arg::Text(u.2),
                    Arg::OptBool(u.3),
                    Arg::OptText(u.4),
                    Arg::Text(u.5),
                ]
            })
            .collect();
        let expected: Vec<Vec<Arg>> = directory
            .users()
            .values()
            .map(|user| UserRow::of(user).expect("row").expect("id").args().to_vec())
            .collect();
        assert_eq!(users, expected, "users after round {round}");

        let groups: Vec<GroupColumns> = sink
            .target
            .pool
            .fetch_all(
                &format!(
                    "SELECT {GROUP_COLUMNS} FROM mirror_groups WHERE snapshot = {COMMITTED} ORDER BY id"
                ),
                &connection,
            )
            .await
            .expect("groups");
        let groups: Vec<Vec<Arg>> = groups
            .into_iter()
            .map(|g| vec![Arg::Text(g.0), Arg::Text(g.1), Arg::Text(g.2)])
            .collect();
        let expected: Vec<Vec<Arg>> = directory
            .groups()
            .values()
            .map(|group| {
                GroupRow::of(group)
                    .expect("row")
                    .expect("id")
                    .args()
                    .to_vec()
            })
            .collect();
        assert_eq!(groups, expected, "groups after round {round}");

        let memberships: Vec<(String, String, String)> = sink
            .target
            .pool
            .fetch_all(
                &format!(
                    "SELECT group_id, member_id, member_type FROM mirror_memberships \
                     WHERE snapshot = {COMMITTED} ORDER BY group_id, member_id"
                ),
                &connection,
            )
            .await
            .expect("memberships");
        let expected: Vec<(String, String, String)> = directory
            .members()
            .iter()
            .flat_map(|(group, members)| {
                members.iter().map(|(member, member_type)| {
                    (
                        group.as_str().to_owned(),
                        member.as_str().to_owned(),
                        member_type.as_str().to_owned(),
                    )
                })
            })
            .collect();
        assert_eq!(memberships, expected, "memberships after round {round}");
    }

    /// Random deltas of up to three replay chunks over a small directory (so changes
    /// cancel, repeat, name unknown ids and remove groups with members the chunk does not
    /// name) give `MemorySink`'s rows and summaries.
    async fn random_deltas_replay_as_memory_sink_does(store: SqlStore) {
        let mut rng = StdRng::seed_from_u64(20_260_401);
        // Writes every 97 changes: in the middle of pages and of runs of one kind, so
        // an object is upserted again (and removed) after it was written.
        let mut mirror = sink_on(store).await.gather(97);
        let mut memory = MemorySink::new();
        let full = pages(&mut rng, 900, true);
        let expected = drive(&mut memory, SyncKind::Full, &full, 0).await;
        let actual = drive(&mut mirror, SyncKind::Full, &full, 0).await;
        assert_eq!(actual, expected, "the full import");
        assert_same_rows(&mirror, &memory, 0).await;
        let chunk = usize::try_from(REPLAY_CHUNK).expect("chunk");
        for (round, changes) in [1, 40, chunk, chunk + 1, 3 * chunk - 7, 2 * chunk]
            .into_iter()
            .enumerate()
        {
            let round = round + 1;
            let delta = pages(&mut rng, changes, false);
            let expected = drive(&mut memory, SyncKind::Delta, &delta, round).await;
            let actual = drive(&mut mirror, SyncKind::Delta, &delta, round).await;
            assert_eq!(actual, expected, "the summary of round {round}");
            assert_same_rows(&mirror, &memory, round).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn random_deltas_replay_as_memory_sink_does_on_sqlite() {
        on_sqlite(random_deltas_replay_as_memory_sink_does).await;
    }

    /// Runs `scenario` on a `SQLite` store in a folder of its own, removed afterwards.
    async fn on_sqlite<F, Fut>(scenario: F)
    where
        F: FnOnce(SqlStore) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let dir = std::env::temp_dir().join(format!("m365-sink-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let store = SqlStore::sqlite(dir.join("store.sqlite"))
            .key_ring(ring())
            .open()
            .await
            .expect("the SQLite store");
        scenario(store.clone()).await;
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A snapshot of more users and memberships than one statement holds, in one write:
    /// full-size statements (kept prepared) and a shorter last one (run once) of each,
    /// then a resync that upserts them all again and drops some. Answers the store.
    async fn large_writes_split_into_statements_as_memory_sink_counts(store: SqlStore) {
        // Two full user statements and a part; two groups of every user, so the
        // memberships too (4 values a row) fill two statements and a part.
        let users = SQLITE_MAX_PARAMS / (1 + USER_COLUMN_COUNT) * 2 + 17;
        assert!(2 * users > SQLITE_MAX_PARAMS / 4 * 2);
        let user = |n: usize, title: &str| {
            let user: User = serde_json::from_value(serde_json::json!({
                "id": format!("big-u{n:05}"),
                "displayName": format!("Person {n}"),
                "jobTitle": title,
            }))
            .expect("a user");
            Change::UserUpserted(Box::new(user))
        };
        let snapshot = |title: &str, keep: usize| {
            let mut changes: Vec<Change> = (0..keep).map(|n| user(n, title)).collect();
            for id in ["big-g", "big-h"] {
                let group: Group =
                    serde_json::from_value(serde_json::json!({"id": id, "displayName": id}))
                        .expect("a group");
                changes.push(Change::GroupUpserted(Box::new(group)));
                changes.extend((0..keep).map(|n| Change::MemberAdded {
                    group: ObjectId::new(id),
                    member: ObjectId::new(format!("big-u{n:05}")),
                    member_type: MemberType::User,
                }));
            }
            vec![changes]
        };
        let mut mirror = sink_on(store).await;
        let mut memory = MemorySink::new();
        let full = snapshot("Engineer", users);
        let expected = drive(&mut memory, SyncKind::Full, &full, 0).await;
        let actual = drive(&mut mirror, SyncKind::Full, &full, 0).await;
        assert_eq!(actual, expected, "the full import");
        assert_eq!(actual.users.added, users as u64);
        assert_eq!(actual.memberships.added, 2 * users as u64);
        assert_same_rows(&mirror, &memory, 0).await;
        let resync = snapshot("Admiral", users - 40);
        let expected = drive(&mut memory, SyncKind::Resync, &resync, 1).await;
        let actual = drive(&mut mirror, SyncKind::Resync, &resync, 1).await;
        assert_eq!(actual, expected, "the resync");
        assert_eq!(actual.users.removed, 40);
        assert_eq!(actual.memberships.removed, 80);
        assert_same_rows(&mirror, &memory, 1).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_writes_split_into_statements_as_memory_sink_counts_on_sqlite() {
        on_sqlite(large_writes_split_into_statements_as_memory_sink_counts).await;
    }

    /// With `TEST_POSTGRES_URL`, in a schema of its own (dropped at the end if it passes).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs TEST_POSTGRES_URL (PostgreSQL)"]
    async fn postgres_random_deltas_replay_as_memory_sink_does() {
        let url = std::env::var("TEST_POSTGRES_URL").expect("TEST_POSTGRES_URL");
        let schema = format!("sink_test_{}", uuid::Uuid::new_v4().simple());
        let store = SqlStore::postgres(&url)
            .schema(&schema)
            .key_ring(ring())
            .max_connections(4)
            .open()
            .await
            .expect("the PostgreSQL store");
        random_deltas_replay_as_memory_sink_does(store.clone()).await;
        large_writes_split_into_statements_as_memory_sink_counts(store.clone()).await;
        if let SqlPool::Postgres(pool) = store.pool() {
            connection_store_sql::sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                .execute(&pool)
                .await
                .expect("drop the schema");
        }
        store.close().await;
    }
}
