//! [`MirrorSink`]: the mirror as the [`DirectorySink`] of one connection.
//!
//! - `begin` opens a sync (a new sync id in `mirror_state`) and discards whatever an
//!   earlier, uncommitted sync of the connection staged.
//! - `apply` stages each page in a short transaction of its own, so `SQLite`'s single
//!   writer stays free between pages: a delta's changes are appended, in order, to
//!   `mirror_staged`; a snapshot's (full import, resync) build the directory it has seen
//!   in `mirror_staged_users`/`_groups`/`_memberships`.
//! - `commit` takes one transaction: it checks the fence, replays the delta's changes in
//!   order (counting as `MemorySink` counts) or diffs the snapshot against the mirror
//!   (removing and counting what it did not contain), writes the links, and closes the
//!   sync. A delta with no changes touches only the state row. The staging is cleared
//!   after the commit.
//!
//! A sync dropped anywhere before the commit leaves the mirror and its links as they
//! were; its staging is discarded by the next `begin`.

use async_trait::async_trait;
use connection_store::{ConnectionId, LeaseHolder};
use connection_store_sql::{SealedSecret, SqlStore};
use graph_client::ObjectId;
use graph_client::sync::{
    Change, DirectorySink, ObjectCounts, SinkError, SyncKind, SyncLinks, SyncSummary,
};

use super::db::{Arg, Pool, Tx, placeholders};
use super::error::{MirrorError, ObjectKind};
use super::rows::{
    GROUP_COLUMN_COUNT, GROUP_COLUMNS, Staged, StagedRow, USER_COLUMN_COUNT, USER_COLUMNS, excluded,
};

/// The purpose the links are sealed under (part of the ciphertext's associated data).
const LINKS_PURPOSE: &str = "mirror-links";

/// The tables a sync in progress writes.
const STAGING_TABLES: [&str; 4] = [
    "mirror_staged",
    "mirror_staged_users",
    "mirror_staged_groups",
    "mirror_staged_memberships",
];

/// Staged changes read back per query while a delta commits.
const REPLAY_CHUNK: i64 = 500;

/// Bound parameters per multi-row statement (`SQLite` allows 32766, `PostgreSQL` 65535).
/// Kept small: sqlx looks each `$N` up by name in `SQLite`, which costs O(parameters) per
/// parameter (960 spent 12 % of a full import's time there; 240 a quarter of that).
const MAX_PARAMS: usize = 240;

/// The sync in progress of a sink.
#[derive(Debug, Clone, Copy)]
struct OpenSync {
    id: i64,
    kind: SyncKind,
    applied: i64,
}

/// The directory mirror of one connection as a [`DirectorySink`]: what
/// [`graph_client::sync::run`] imports goes into the `mirror_*` tables beside the
/// connection store, with the links sealed by the store's key ring. Made by
/// [`Mirror::sink`](super::Mirror::sink).
///
/// Content and [`SyncSummary`] counts are those [`graph_client::sync::MemorySink`] gives
/// for the same changes.
#[derive(Debug)]
pub struct MirrorSink {
    pool: Pool,
    store: SqlStore,
    connection: ConnectionId,
    fence: Option<LeaseHolder>,
    open: Option<OpenSync>,
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
            pool,
            store,
            connection,
            fence: None,
            open: None,
        }
    }

    /// Fences this sink by the connection's sync lease: `begin` and `commit` check,
    /// inside their transaction, that `holder` still holds an unexpired lease
    /// (`ConnectionStore::acquire_lease`), and otherwise change nothing and fail with
    /// [`SinkErrorKind::Fenced`](graph_client::sync::SinkErrorKind::Fenced). Without it
    /// (tests, a single process) the sink writes unfenced.
    #[must_use]
    pub fn with_fence(mut self, holder: LeaseHolder) -> Self {
        self.fence = Some(holder);
        self
    }

    /// The connection this sink mirrors.
    pub fn connection(&self) -> ConnectionId {
        self.connection
    }

    /// The lease holder that fences it, if any.
    pub fn fence(&self) -> Option<&LeaseHolder> {
        self.fence.as_ref()
    }

    fn id(&self) -> Arg {
        Arg::Text(self.connection.to_string())
    }

    async fn check_fence(&self, tx: &mut Tx) -> Result<(), MirrorError> {
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

    async fn begin_sync(&mut self, kind: SyncKind) -> Result<(), MirrorError> {
        let failed = MirrorError::database("begin a sync");
        let mut tx = self.pool.write().await.map_err(&failed)?;
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
        let (id,): (i64,) = tx
            .fetch_one(
                "UPDATE mirror_state SET sync_id = sync_id + 1, sync_kind = $2, staged = 0 \
                 WHERE connection_id = $1 RETURNING sync_id",
                &[self.id(), Arg::from(kind.as_str())],
            )
            .await
            .map_err(&failed)?;
        // A crashed or dropped sync's staging goes (any sync id of this connection).
        for table in STAGING_TABLES {
            tx.execute(
                &format!("DELETE FROM {table} WHERE connection_id = $1"),
                &[self.id()],
            )
            .await
            .map_err(&failed)?;
        }
        tx.commit().await.map_err(&failed)?;
        self.open = Some(OpenSync {
            id,
            kind,
            applied: 0,
        });
        Ok(())
    }

    async fn apply_changes(&mut self, changes: &[Change]) -> Result<(), MirrorError> {
        let Some(open) = self.open else {
            return Err(MirrorError::invalid("changes applied before begin"));
        };
        let mut staged = Vec::with_capacity(changes.len());
        for change in changes {
            if let Some(change) = Staged::of(change)? {
                staged.push(change);
            }
        }
        if staged.is_empty() {
            return Ok(());
        }
        let count = i64::try_from(staged.len()).unwrap_or(i64::MAX);
        let failed = MirrorError::database("stage changes");
        let mut tx = self.pool.write().await.map_err(&failed)?;
        // Not needed for safety (the commit checks again), but a writer that lost its
        // lease stops at its next page instead of staging the rest for nothing.
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
        let (connection, sync) = (self.id(), Arg::Int(open.id));
        if open.kind.is_snapshot() {
            stage_snapshot(&mut tx, &connection, &sync, &staged)
                .await
                .map_err(&failed)?;
        } else {
            stage_delta(&mut tx, &connection, &sync, total - count, &staged)
                .await
                .map_err(&failed)?;
        }
        tx.commit().await.map_err(&failed)?;
        if let Some(open) = &mut self.open {
            open.applied += count;
        }
        Ok(())
    }

    async fn commit_sync(
        &mut self,
        open: OpenSync,
        links: &SyncLinks,
    ) -> Result<SyncSummary, MirrorError> {
        let sealed = self
            .store
            .seal_secret(self.connection, LINKS_PURPOSE, &links.encode())
            .map_err(|error| MirrorError::links(self.connection, &error))?;
        let failed = MirrorError::database("commit the sync");
        let (connection, sync) = (self.id(), Arg::Int(open.id));
        let mut tx = self.pool.write().await.map_err(&failed)?;
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
        if staged != open.applied {
            return Err(MirrorError::invalid(
                "the staged changes are not the ones this sink applied",
            ));
        }

        let mut tally = Tally::default();
        if open.kind.is_snapshot() {
            commit_snapshot(&mut tx, &connection, &sync, &mut tally)
                .await
                .map_err(&failed)?;
        } else {
            let before = [users_before, groups_before, memberships_before]
                .map(|count| to_u64(self.connection, count));
            let [users, groups, memberships] = before;
            if staged > 0 {
                self.replay_delta(&mut tx, open.id, &mut tally).await?;
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
             groups_total = $7, memberships_total = $8, sync_kind = NULL, staged = 0 \
             WHERE connection_id = $1",
            &[
                connection.clone(),
                Arg::from(sealed.key_id()),
                Arg::Bytes(sealed.ciphertext().to_vec()),
                Arg::Int(i64::try_from(now).unwrap_or(i64::MAX)),
                Arg::from(open.kind.as_str()),
                Arg::Int(to_i64(tally.users.total)),
                Arg::Int(to_i64(tally.groups.total)),
                Arg::Int(to_i64(tally.memberships.total)),
            ],
        )
        .await
        .map_err(&failed)?;
        tx.commit().await.map_err(&failed)?;

        if staged > 0 {
            // The sync is closed (sync_kind is NULL), so its staging can never be
            // replayed again: clearing it is housekeeping, and the next begin does it too.
            if let Err(error) = self.clear_staging(&connection, &sync).await {
                tracing::warn!(
                    connection = %self.connection,
                    error = %error,
                    "could not clear the staging of a committed sync; the next sync will"
                );
            }
        }
        Ok(tally.into_summary())
    }

    async fn clear_staging(&self, connection: &Arg, sync: &Arg) -> Result<(), MirrorError> {
        let failed = MirrorError::database("clear the staging");
        let mut tx = self.pool.write().await.map_err(&failed)?;
        for table in STAGING_TABLES {
            tx.execute(
                &format!("DELETE FROM {table} WHERE connection_id = $1 AND sync_id = $2"),
                &[connection.clone(), sync.clone()],
            )
            .await
            .map_err(&failed)?;
        }
        tx.commit().await.map_err(&failed)
    }

    /// Replays the delta's staged changes in order, a chunk at a time, counting each one
    /// as `MemorySink` does; then drops memberships of groups the mirror does not hold.
    async fn replay_delta(
        &self,
        tx: &mut Tx,
        sync: i64,
        tally: &mut Tally,
    ) -> Result<(), MirrorError> {
        let failed = MirrorError::database("replay the staged changes");
        let connection = self.id();
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
            for row in rows {
                let change = Staged::from_row(self.connection, row)?;
                replay(tx, &connection, change, tally)
                    .await
                    .map_err(&failed)?;
            }
        }
        // A membership replayed after its group was removed (or for a group the mirror
        // never held) is dropped, so memberships always belong to a known group. Only
        // groups this delta added members to can be such a group.
        tally.memberships.removed += tx
            .execute(
                "DELETE FROM mirror_memberships WHERE connection_id = $1 AND group_id IN \
                 (SELECT object_id FROM mirror_staged WHERE connection_id = $1 AND sync_id = $2 \
                  AND kind = 'member_added') \
                 AND NOT EXISTS (SELECT 1 FROM mirror_groups g WHERE g.connection_id = $1 \
                  AND g.id = mirror_memberships.group_id)",
                &[connection, Arg::Int(sync)],
            )
            .await
            .map_err(&failed)?;
        Ok(())
    }
}

type SqlResult<T> = Result<T, connection_store_sql::sqlx::Error>;

/// One staged change into the mirror, counted.
async fn replay(tx: &mut Tx, connection: &Arg, change: Staged, tally: &mut Tally) -> SqlResult<()> {
    match change {
        Staged::UserUpserted(row) => {
            let sql = format!(
                "INSERT INTO mirror_users (connection_id, {USER_COLUMNS}) VALUES ($1, {}) \
                 ON CONFLICT (connection_id, id) DO UPDATE SET {}",
                placeholders(2, USER_COLUMN_COUNT),
                excluded(USER_COLUMNS)
            );
            let (id, data, args) = (&row.id, &row.data, row.args());
            let counts = &mut tally.users;
            upsert_object(
                tx,
                connection,
                "mirror_users",
                (id, data, args),
                &sql,
                counts,
            )
            .await
        }
        Staged::GroupUpserted(row) => {
            let sql = format!(
                "INSERT INTO mirror_groups (connection_id, {GROUP_COLUMNS}) VALUES ($1, {}) \
                 ON CONFLICT (connection_id, id) DO UPDATE SET {}",
                placeholders(2, GROUP_COLUMN_COUNT),
                excluded(GROUP_COLUMNS)
            );
            let (id, data, args) = (&row.id, &row.data, row.args());
            let counts = &mut tally.groups;
            upsert_object(
                tx,
                connection,
                "mirror_groups",
                (id, data, args),
                &sql,
                counts,
            )
            .await
        }
        Staged::UserRemoved(id) => {
            let args = [connection.clone(), Arg::Text(id.clone())];
            let sql = "DELETE FROM mirror_users WHERE connection_id = $1 AND id = $2";
            if tx.execute(sql, &args).await? > 0 {
                tally.removed_user(id);
            }
            let sql = "DELETE FROM mirror_memberships WHERE connection_id = $1 AND member_id = $2";
            tally.memberships.removed += tx.execute(sql, &args).await?;
            Ok(())
        }
        Staged::GroupRemoved(id) => {
            let args = [connection.clone(), Arg::Text(id)];
            let sql = "DELETE FROM mirror_groups WHERE connection_id = $1 AND id = $2";
            tally.groups.removed += tx.execute(sql, &args).await?;
            let sql = "DELETE FROM mirror_memberships WHERE connection_id = $1 \
                 AND (group_id = $2 OR member_id = $2)";
            tally.memberships.removed += tx.execute(sql, &args).await?;
            Ok(())
        }
        Staged::MemberAdded {
            group,
            member,
            member_type,
        } => add_member(tx, connection, [group, member, member_type], tally).await,
        Staged::MemberRemoved { group, member } => {
            let sql = "DELETE FROM mirror_memberships \
                 WHERE connection_id = $1 AND group_id = $2 AND member_id = $3";
            let args = [connection.clone(), Arg::Text(group), Arg::Text(member)];
            tally.memberships.removed += tx.execute(sql, &args).await?;
            Ok(())
        }
    }
}

/// A user or group into `table` by `upsert`, counted as added, updated (different JSON)
/// or nothing (the same JSON: a replay).
async fn upsert_object(
    tx: &mut Tx,
    connection: &Arg,
    table: &str,
    (id, data, args): (&str, &str, &[Arg]),
    upsert: &str,
    counts: &mut ObjectCounts,
) -> SqlResult<()> {
    let old: Option<(String,)> = tx
        .fetch_optional(
            &format!("SELECT data FROM {table} WHERE connection_id = $1 AND id = $2"),
            &[connection.clone(), Arg::from(id)],
        )
        .await?;
    match old {
        Some((old,)) if old == data => return Ok(()),
        Some(_) => counts.updated += 1,
        None => counts.added += 1,
    }
    let mut all = vec![connection.clone()];
    all.extend_from_slice(args);
    tx.execute(upsert, &all).await?;
    Ok(())
}

/// A direct membership, counted as added, updated (another member type) or nothing.
async fn add_member(
    tx: &mut Tx,
    connection: &Arg,
    [group, member, member_type]: [String; 3],
    tally: &mut Tally,
) -> SqlResult<()> {
    let old: Option<(String,)> = tx
        .fetch_optional(
            "SELECT member_type FROM mirror_memberships \
             WHERE connection_id = $1 AND group_id = $2 AND member_id = $3",
            &[
                connection.clone(),
                Arg::Text(group.clone()),
                Arg::Text(member.clone()),
            ],
        )
        .await?;
    match old {
        Some((old,)) if old == member_type => return Ok(()),
        Some(_) => tally.memberships.updated += 1,
        None => tally.memberships.added += 1,
    }
    tx.execute(
        "INSERT INTO mirror_memberships (connection_id, group_id, member_id, member_type) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (connection_id, group_id, member_id) \
         DO UPDATE SET member_type = excluded.member_type",
        &[
            connection.clone(),
            Arg::Text(group),
            Arg::Text(member),
            Arg::Text(member_type),
        ],
    )
    .await?;
    Ok(())
}

/// Appends a delta's changes to `mirror_staged`, numbered from `first` + 1.
async fn stage_delta(
    tx: &mut Tx,
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

/// Inserts or replaces `rows` (each `per_row` values of `columns`) in a staging table,
/// several rows per statement.
async fn upsert_staged(
    tx: &mut Tx,
    connection: &Arg,
    sync: &Arg,
    table: &str,
    (columns, per_row, key): (&str, usize, &str),
    rows: &[&[Arg]],
) -> SqlResult<()> {
    let set = if key == "id" {
        excluded(columns)
    } else {
        "member_type = excluded.member_type".to_owned()
    };
    for chunk in rows.chunks(MAX_PARAMS / per_row) {
        let mut args = vec![connection.clone(), sync.clone()];
        let mut values = Vec::with_capacity(chunk.len());
        for row in chunk {
            values.push(format!(
                "($1, $2, {})",
                placeholders(args.len() + 1, per_row)
            ));
            args.extend_from_slice(row);
        }
        let sql = format!(
            "INSERT INTO {table} (connection_id, sync_id, {columns}) VALUES {} \
             ON CONFLICT (connection_id, sync_id, {key}) DO UPDATE SET {set}",
            values.join(", ")
        );
        tx.execute(&sql, &args).await?;
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

/// Applies a snapshot's changes to the directory it has seen so far, in order; runs of
/// upserts go several rows per statement.
async fn stage_snapshot(
    tx: &mut Tx,
    connection: &Arg,
    sync: &Arg,
    changes: &[Staged],
) -> SqlResult<()> {
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
                let rows: Vec<&[Arg]> = last_of_each(batch, |change| match change {
                    Staged::UserUpserted(row) => row.id.clone(),
                    _ => String::new(),
                })
                .into_iter()
                .filter_map(|change| match change {
                    Staged::UserUpserted(row) => Some(row.args()),
                    _ => None,
                })
                .collect();
                let shape = (USER_COLUMNS, USER_COLUMN_COUNT, "id");
                upsert_staged(tx, connection, sync, "mirror_staged_users", shape, &rows).await?;
            }
            Staged::GroupUpserted(_) => {
                let rows: Vec<&[Arg]> = last_of_each(batch, |change| match change {
                    Staged::GroupUpserted(row) => row.id.clone(),
                    _ => String::new(),
                })
                .into_iter()
                .filter_map(|change| match change {
                    Staged::GroupUpserted(row) => Some(row.args()),
                    _ => None,
                })
                .collect();
                let shape = (GROUP_COLUMNS, GROUP_COLUMN_COUNT, "id");
                upsert_staged(tx, connection, sync, "mirror_staged_groups", shape, &rows).await?;
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
                let rows: Vec<&[Arg]> = owned.iter().map(<[Arg; 3]>::as_slice).collect();
                let shape = ("group_id, member_id, member_type", 3, "group_id, member_id");
                upsert_staged(
                    tx,
                    connection,
                    sync,
                    "mirror_staged_memberships",
                    shape,
                    &rows,
                )
                .await?;
            }
            _ => {
                for change in batch {
                    stage_removal(tx, connection, sync, change).await?;
                }
            }
        }
    }
    Ok(())
}

/// A removal of a snapshot's change from the directory it has seen so far.
async fn stage_removal(
    tx: &mut Tx,
    connection: &Arg,
    sync: &Arg,
    change: &Staged,
) -> SqlResult<()> {
    let with = |id: &str| [connection.clone(), sync.clone(), Arg::from(id)];
    match change {
        Staged::UserRemoved(id) => {
            tx.execute(
                "DELETE FROM mirror_staged_users WHERE connection_id = $1 AND sync_id = $2 AND id = $3",
                &with(id),
            )
            .await?;
            tx.execute(
                "DELETE FROM mirror_staged_memberships \
                 WHERE connection_id = $1 AND sync_id = $2 AND member_id = $3",
                &with(id),
            )
            .await?;
        }
        Staged::GroupRemoved(id) => {
            tx.execute(
                "DELETE FROM mirror_staged_groups WHERE connection_id = $1 AND sync_id = $2 AND id = $3",
                &with(id),
            )
            .await?;
            tx.execute(
                "DELETE FROM mirror_staged_memberships WHERE connection_id = $1 AND sync_id = $2 \
                 AND (group_id = $3 OR member_id = $3)",
                &with(id),
            )
            .await?;
        }
        Staged::MemberRemoved { group, member } => {
            tx.execute(
                "DELETE FROM mirror_staged_memberships WHERE connection_id = $1 AND sync_id = $2 \
                 AND group_id = $3 AND member_id = $4",
                &[
                    connection.clone(),
                    sync.clone(),
                    Arg::from(group.as_str()),
                    Arg::from(member.as_str()),
                ],
            )
            .await?;
        }
        // Upserts are staged by runs in `stage_snapshot`.
        Staged::UserUpserted(_) | Staged::GroupUpserted(_) | Staged::MemberAdded { .. } => {}
    }
    Ok(())
}

/// (total, added, updated) of a staged table against its mirror table.
async fn diff_counts(
    tx: &mut Tx,
    args: &[Arg],
    sql: &str,
) -> Result<(u64, u64, u64), connection_store_sql::sqlx::Error> {
    let (total, added, updated): (i64, i64, i64) = tx.fetch_one(sql, args).await?;
    let count = |value: i64| u64::try_from(value).unwrap_or_default();
    Ok((count(total), count(added), count(updated)))
}

/// Makes the mirror what the snapshot saw: counts what it adds, changes and removes
/// (removed user ids in id order, as `MemorySink` lists them), then writes it, each
/// table in a few set-based statements.
async fn commit_snapshot(
    tx: &mut Tx,
    connection: &Arg,
    sync: &Arg,
    tally: &mut Tally,
) -> SqlResult<()> {
    let args = [connection.clone(), sync.clone()];
    // Memberships of groups the snapshot does not hold are not part of it.
    tx.execute(
        "DELETE FROM mirror_staged_memberships WHERE connection_id = $1 AND sync_id = $2 \
         AND NOT EXISTS (SELECT 1 FROM mirror_staged_groups g WHERE g.connection_id = $1 \
         AND g.sync_id = $2 AND g.id = mirror_staged_memberships.group_id)",
        &args,
    )
    .await?;
    let users = ("mirror_users", "mirror_staged_users", USER_COLUMNS);
    tally.users = commit_objects(tx, &args, users, Some(&mut tally.removed_users)).await?;
    let groups = ("mirror_groups", "mirror_staged_groups", GROUP_COLUMNS);
    tally.groups = commit_objects(tx, &args, groups, None).await?;
    tally.memberships = commit_memberships(tx, &args).await?;
    Ok(())
}

/// One object table of a snapshot commit: counts, removed ids (users), then the writes.
async fn commit_objects(
    tx: &mut Tx,
    args: &[Arg],
    (table, staged, columns): (&str, &str, &str),
    removed_ids: Option<&mut Vec<ObjectId>>,
) -> SqlResult<ObjectCounts> {
    let (total, added, updated) = diff_counts(
        tx,
        args,
        &format!(
            "SELECT COUNT(*), \
             COALESCE(SUM(CASE WHEN o.id IS NULL THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN o.id IS NOT NULL AND o.data <> n.data THEN 1 ELSE 0 END), 0) \
             FROM {staged} n LEFT JOIN {table} o ON o.connection_id = n.connection_id AND o.id = n.id \
             WHERE n.connection_id = $1 AND n.sync_id = $2"
        ),
    )
    .await?;
    let unseen = format!(
        "{table}.connection_id = $1 AND NOT EXISTS (SELECT 1 FROM {staged} n \
         WHERE n.connection_id = $1 AND n.sync_id = $2 AND n.id = {table}.id)"
    );
    if let Some(removed_ids) = removed_ids {
        let ids: Vec<(String,)> = tx
            .fetch_all(
                &format!(
                    "SELECT id FROM {table} WHERE {unseen} ORDER BY id LIMIT {}",
                    SyncSummary::MAX_REMOVED_IDS
                ),
                args,
            )
            .await?;
        removed_ids.extend(ids.into_iter().map(|(id,)| ObjectId::new(id)));
    }
    let removed = tx
        .execute(&format!("DELETE FROM {table} WHERE {unseen}"), args)
        .await?;
    tx.execute(
        &format!(
            "INSERT INTO {table} (connection_id, {columns}) \
             SELECT connection_id, {columns} FROM {staged} WHERE connection_id = $1 AND sync_id = $2 \
             ON CONFLICT (connection_id, id) DO UPDATE SET {} WHERE {table}.data <> excluded.data",
            excluded(columns)
        ),
        args,
    )
    .await?;
    Ok(ObjectCounts::new(added, updated, removed, total))
}

/// The memberships of a snapshot commit: counts (a changed member type is an update),
/// then the writes.
async fn commit_memberships(tx: &mut Tx, args: &[Arg]) -> SqlResult<ObjectCounts> {
    let (total, added, updated) = diff_counts(
        tx,
        args,
        "SELECT COUNT(*), \
         COALESCE(SUM(CASE WHEN o.group_id IS NULL THEN 1 ELSE 0 END), 0), \
         COALESCE(SUM(CASE WHEN o.group_id IS NOT NULL AND o.member_type <> n.member_type \
         THEN 1 ELSE 0 END), 0) \
         FROM mirror_staged_memberships n LEFT JOIN mirror_memberships o \
         ON o.connection_id = n.connection_id AND o.group_id = n.group_id AND o.member_id = n.member_id \
         WHERE n.connection_id = $1 AND n.sync_id = $2",
    )
    .await?;
    let removed = tx
        .execute(
            "DELETE FROM mirror_memberships WHERE connection_id = $1 AND NOT EXISTS \
             (SELECT 1 FROM mirror_staged_memberships n WHERE n.connection_id = $1 AND n.sync_id = $2 \
             AND n.group_id = mirror_memberships.group_id AND n.member_id = mirror_memberships.member_id)",
            args,
        )
        .await?;
    tx.execute(
        "INSERT INTO mirror_memberships (connection_id, group_id, member_id, member_type) \
         SELECT connection_id, group_id, member_id, member_type FROM mirror_staged_memberships \
         WHERE connection_id = $1 AND sync_id = $2 \
         ON CONFLICT (connection_id, group_id, member_id) DO UPDATE \
         SET member_type = excluded.member_type \
         WHERE mirror_memberships.member_type <> excluded.member_type",
        args,
    )
    .await?;
    Ok(ObjectCounts::new(added, updated, removed, total))
}

#[async_trait]
impl DirectorySink for MirrorSink {
    async fn links(&mut self) -> Result<Option<SyncLinks>, SinkError> {
        Ok(self.read_links().await?)
    }

    async fn begin(&mut self, kind: SyncKind) -> Result<(), SinkError> {
        self.open = None;
        Ok(self.begin_sync(kind).await?)
    }

    async fn apply(&mut self, changes: &[Change]) -> Result<(), SinkError> {
        Ok(self.apply_changes(changes).await?)
    }

    async fn commit(&mut self, links: SyncLinks) -> Result<SyncSummary, SinkError> {
        let Some(open) = self.open.take() else {
            return Err(MirrorError::invalid("commit without begin").into());
        };
        match self.commit_sync(open, &links).await {
            Ok(summary) => Ok(summary),
            Err(error) => {
                // Nothing was committed: the sync stays open, its staging intact.
                self.open = Some(open);
                Err(error.into())
            }
        }
    }
}
