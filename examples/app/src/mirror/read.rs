//! Typed reads of the mirror: users by name with a bounded search, groups, members,
//! memberships of a member, the transitive members of a scope, and the state of the last
//! commit. A row that does not decode is [`MirrorError::Corrupt`], never skipped.

use std::fmt::Write as _;

use connection_store::ConnectionId;
use graph_client::sync::{MemberType, SyncKind};
use graph_client::{Group, ObjectId, User};
use time::OffsetDateTime;

use super::db::{Arg, Tx, placeholders};
use super::error::{MirrorError, ObjectKind};
use super::open::Mirror;
use super::rows::{decode_group, decode_user, like_patterns, member_type, object_id};

/// The most rows one page read returns; a larger limit reads this many.
pub const MAX_PAGE: u32 = 1_000;

/// The most groups a scope ([`UserQuery::in_groups`], [`Mirror::transitive_members`])
/// may name.
pub const MAX_SCOPE_GROUPS: usize = 1_000;

/// A direct or transitive member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub struct Member {
    /// The member's id.
    pub id: ObjectId,
    /// Its type (`user`, `group`, `orgContact`, ...).
    pub member_type: MemberType,
}

/// What the last commit of a connection left, and whether a sync is in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MirrorState {
    /// How many syncs were committed.
    pub commits: u64,
    /// When the last one was (`None` before the first).
    pub committed_at: Option<OffsetDateTime>,
    /// Its kind.
    pub committed_kind: Option<SyncKind>,
    /// Users held.
    pub users: u64,
    /// Groups held.
    pub groups: u64,
    /// Direct memberships held.
    pub memberships: u64,
    /// A sync has begun and not committed (running, or dropped and not yet discarded).
    pub sync_in_progress: bool,
}

/// Which users [`Mirror::find_users`] and [`Mirror::count_users`] answer: every user,
/// or the members of groups (transitively), without disabled accounts or guests, and
/// matching a search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserQuery {
    search: Option<String>,
    groups: Vec<ObjectId>,
    skip_disabled: bool,
    skip_guests: bool,
}

impl UserQuery {
    /// Every user.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only users matching every term of `search` (whitespace-separated, case-insensitive,
    /// anywhere in the display name, given name, surname, mail, UPN, job title,
    /// department, company, office or city). At most
    /// [`MAX_SEARCH_TERMS`](super::MAX_SEARCH_TERMS) terms of at most
    /// [`MAX_TERM_CHARS`](super::MAX_TERM_CHARS) characters count; a blank search
    /// matches everyone.
    #[must_use]
    pub fn search(mut self, search: impl Into<String>) -> Self {
        self.search = Some(search.into());
        self
    }

    /// Only users that are members of these groups or of groups nested in them (a group
    /// cycle is followed once). Empty: every user.
    #[must_use]
    pub fn in_groups(mut self, groups: impl IntoIterator<Item = ObjectId>) -> Self {
        self.groups = groups.into_iter().collect();
        self
    }

    /// Leave out accounts with `accountEnabled` false.
    #[must_use]
    pub fn skip_disabled(mut self, skip: bool) -> Self {
        self.skip_disabled = skip;
        self
    }

    /// Leave out users whose `userType` is `Guest`.
    #[must_use]
    pub fn skip_guests(mut self, skip: bool) -> Self {
        self.skip_guests = skip;
        self
    }

    /// `WITH ...` prefix, `WHERE` conditions and their arguments (after `$1`, the
    /// connection).
    fn to_sql(&self) -> Result<(String, String, Vec<Arg>), MirrorError> {
        let mut args = Vec::new();
        let mut with = String::new();
        let mut conditions = String::new();
        if !self.groups.is_empty() {
            let (cte, cte_args) = scope_cte(&self.groups, 2)?;
            with = cte;
            args = cte_args;
            conditions.push_str(
                " AND u.id IN (SELECT m.member_id FROM mirror_memberships m \
                 WHERE m.snapshot = (SELECT snapshot FROM mirror_state WHERE connection_id = $1) AND m.group_id IN (SELECT group_id FROM scope))",
            );
        }
        for pattern in like_patterns(self.search.as_deref()) {
            args.push(Arg::Text(pattern));
            let _ = write!(
                conditions,
                " AND u.search_text LIKE ${} ESCAPE '\\'",
                args.len() + 1
            );
        }
        if self.skip_disabled {
            conditions.push_str(" AND u.account_enabled IS NOT FALSE");
        }
        if self.skip_guests {
            conditions.push_str(" AND (u.user_type IS NULL OR LOWER(u.user_type) <> 'guest')");
        }
        Ok((with, conditions, args))
    }
}

/// `WITH RECURSIVE scope(group_id)`: the groups named (parameters from `$first`) and
/// every group nested in them. `UNION` (not `UNION ALL`) drops rows already found, so a
/// cycle of nested groups ends.
fn scope_cte(groups: &[ObjectId], first: usize) -> Result<(String, Vec<Arg>), MirrorError> {
    if groups.len() > MAX_SCOPE_GROUPS {
        return Err(MirrorError::invalid(format!(
            "a scope names at most {MAX_SCOPE_GROUPS} groups"
        )));
    }
    let sql = format!(
        "WITH RECURSIVE scope(group_id) AS ( \
         SELECT id FROM mirror_groups WHERE snapshot = (SELECT snapshot FROM mirror_state WHERE connection_id = $1) AND id IN ({}) \
         UNION \
         SELECT m.member_id FROM mirror_memberships m JOIN scope s ON m.group_id = s.group_id \
         WHERE m.snapshot = (SELECT snapshot FROM mirror_state WHERE connection_id = $1) AND m.member_type = 'group') ",
        placeholders(first, groups.len())
    );
    let args = groups
        .iter()
        .map(|group| Arg::from(group.as_str()))
        .collect();
    Ok((sql, args))
}

fn count(connection: ConnectionId, value: i64) -> Result<u64, MirrorError> {
    u64::try_from(value)
        .map_err(|_| MirrorError::corrupt(connection, ObjectKind::State, "", "a negative count"))
}

fn page_args(offset: u64, limit: u32) -> [Arg; 2] {
    [
        Arg::Int(i64::from(limit.min(MAX_PAGE))),
        Arg::Int(i64::try_from(offset).unwrap_or(i64::MAX)),
    ]
}

impl Mirror {
    fn key(connection: ConnectionId) -> Arg {
        Arg::Text(connection.to_string())
    }

    /// A page of the connection's users ordered by shown name (case-insensitive), then
    /// id; with `search`, only those matching every term (see [`UserQuery::search`]).
    ///
    /// # Errors
    /// [`MirrorError::Corrupt`] for a user row that does not decode;
    /// [`MirrorError::Database`].
    pub async fn users_page(
        &self,
        connection: ConnectionId,
        search: Option<&str>,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<User>, MirrorError> {
        let mut query = UserQuery::new();
        if let Some(search) = search {
            query = query.search(search);
        }
        self.find_users(connection, &query, offset, limit).await
    }

    /// How many users [`users_page`](Self::users_page) pages through.
    ///
    /// # Errors
    /// [`MirrorError::Database`].
    pub async fn user_count(
        &self,
        connection: ConnectionId,
        search: Option<&str>,
    ) -> Result<u64, MirrorError> {
        let mut query = UserQuery::new();
        if let Some(search) = search {
            query = query.search(search);
        }
        self.count_users(connection, &query).await
    }

    /// A page of the users `query` selects, ordered by shown name (case-insensitive),
    /// then id. At most [`MAX_PAGE`] rows.
    ///
    /// # Errors
    /// [`MirrorError::Invalid`] for a scope of more than [`MAX_SCOPE_GROUPS`] groups;
    /// [`MirrorError::Corrupt`] for a user row that does not decode;
    /// [`MirrorError::Database`].
    pub async fn find_users(
        &self,
        connection: ConnectionId,
        query: &UserQuery,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<User>, MirrorError> {
        let (with, conditions, mut args) = query.to_sql()?;
        args.insert(0, Self::key(connection));
        let first = args.len() + 1;
        args.extend(page_args(offset, limit));
        let sql = format!(
            "{with}SELECT u.id, u.data FROM mirror_users u WHERE u.snapshot = (SELECT snapshot FROM mirror_state WHERE connection_id = $1){conditions} \
             ORDER BY u.sort_key, u.id LIMIT ${first} OFFSET ${}",
            first + 1
        );
        let rows: Vec<(String, String)> = self
            .pool
            .fetch_all(&sql, &args)
            .await
            .map_err(MirrorError::database("read users"))?;
        rows.iter()
            .map(|(id, data)| decode_user(connection, id, data))
            .collect()
    }

    /// How many users `query` selects.
    ///
    /// # Errors
    /// [`MirrorError::Invalid`] for a scope of more than [`MAX_SCOPE_GROUPS`] groups;
    /// [`MirrorError::Database`].
    pub async fn count_users(
        &self,
        connection: ConnectionId,
        query: &UserQuery,
    ) -> Result<u64, MirrorError> {
        let (with, conditions, mut args) = query.to_sql()?;
        args.insert(0, Self::key(connection));
        let sql = format!(
            "{with}SELECT COUNT(*) FROM mirror_users u WHERE u.snapshot = (SELECT snapshot FROM mirror_state WHERE connection_id = $1){conditions}"
        );
        let (total,): (i64,) = self
            .pool
            .fetch_optional(&sql, &args)
            .await
            .map_err(MirrorError::database("count users"))?
            .unwrap_or((0,));
        count(connection, total)
    }

    /// One user by id.
    ///
    /// # Errors
    /// [`MirrorError::Corrupt`] when its row does not decode; [`MirrorError::Database`].
    pub async fn user(
        &self,
        connection: ConnectionId,
        id: &ObjectId,
    ) -> Result<Option<User>, MirrorError> {
        let row: Option<(String,)> = self
            .pool
            .fetch_optional(
                "SELECT data FROM mirror_users WHERE snapshot = (SELECT snapshot FROM mirror_state WHERE connection_id = $1) AND id = $2",
                &[Self::key(connection), Arg::from(id.as_str())],
            )
            .await
            .map_err(MirrorError::database("read a user"))?;
        row.map(|(data,)| decode_user(connection, id.as_str(), &data))
            .transpose()
    }

    /// A page of the connection's groups ordered by name (case-insensitive; the mail
    /// address or id when it has none), then id. At most [`MAX_PAGE`] rows.
    ///
    /// # Errors
    /// [`MirrorError::Corrupt`] for a group row that does not decode;
    /// [`MirrorError::Database`].
    pub async fn groups_page(
        &self,
        connection: ConnectionId,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<Group>, MirrorError> {
        let mut args = vec![Self::key(connection)];
        args.extend(page_args(offset, limit));
        let rows: Vec<(String, String)> = self
            .pool
            .fetch_all(
                "SELECT id, data FROM mirror_groups WHERE snapshot = (SELECT snapshot FROM mirror_state WHERE connection_id = $1) \
                 ORDER BY sort_key, id LIMIT $2 OFFSET $3",
                &args,
            )
            .await
            .map_err(MirrorError::database("read groups"))?;
        rows.iter()
            .map(|(id, data)| decode_group(connection, id, data))
            .collect()
    }

    /// One group by id.
    ///
    /// # Errors
    /// [`MirrorError::Corrupt`] when its row does not decode; [`MirrorError::Database`].
    pub async fn group(
        &self,
        connection: ConnectionId,
        id: &ObjectId,
    ) -> Result<Option<Group>, MirrorError> {
        let row: Option<(String,)> = self
            .pool
            .fetch_optional(
                "SELECT data FROM mirror_groups WHERE snapshot = (SELECT snapshot FROM mirror_state WHERE connection_id = $1) AND id = $2",
                &[Self::key(connection), Arg::from(id.as_str())],
            )
            .await
            .map_err(MirrorError::database("read a group"))?;
        row.map(|(data,)| decode_group(connection, id.as_str(), &data))
            .transpose()
    }

    /// The direct members of `group`, by id (empty for an unknown group).
    ///
    /// # Errors
    /// [`MirrorError::Database`].
    pub async fn members(
        &self,
        connection: ConnectionId,
        group: &ObjectId,
    ) -> Result<Vec<Member>, MirrorError> {
        let rows: Vec<(String, String)> = self
            .pool
            .fetch_all(
                "SELECT member_id, member_type FROM mirror_memberships \
                 WHERE snapshot = (SELECT snapshot FROM mirror_state WHERE connection_id = $1) AND group_id = $2 ORDER BY member_id",
                &[Self::key(connection), Arg::from(group.as_str())],
            )
            .await
            .map_err(MirrorError::database("read members"))?;
        Ok(rows.into_iter().map(member).collect())
    }

    /// The groups `member` is a direct member of, by id.
    ///
    /// # Errors
    /// [`MirrorError::Database`].
    pub async fn groups_of(
        &self,
        connection: ConnectionId,
        member: &ObjectId,
    ) -> Result<Vec<ObjectId>, MirrorError> {
        let rows: Vec<(String,)> = self
            .pool
            .fetch_all(
                "SELECT group_id FROM mirror_memberships \
                 WHERE snapshot = (SELECT snapshot FROM mirror_state WHERE connection_id = $1) AND member_id = $2 ORDER BY group_id",
                &[Self::key(connection), Arg::from(member.as_str())],
            )
            .await
            .map_err(MirrorError::database("read memberships"))?;
        Ok(rows.into_iter().map(|(id,)| object_id(id)).collect())
    }

    /// The members of `groups` and of the groups nested in them, each once, by id; a
    /// cycle of nested groups is followed once (a recursive query over the direct
    /// memberships). Nested groups are members too.
    ///
    /// # Errors
    /// [`MirrorError::Invalid`] for more than [`MAX_SCOPE_GROUPS`] groups;
    /// [`MirrorError::Database`].
    pub async fn transitive_members(
        &self,
        connection: ConnectionId,
        groups: &[ObjectId],
    ) -> Result<Vec<Member>, MirrorError> {
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let (with, mut args) = scope_cte(groups, 2)?;
        args.insert(0, Self::key(connection));
        let sql = format!(
            "{with}SELECT DISTINCT m.member_id, m.member_type FROM mirror_memberships m \
             WHERE m.snapshot = (SELECT snapshot FROM mirror_state WHERE connection_id = $1) AND m.group_id IN (SELECT group_id FROM scope) \
             ORDER BY m.member_id, m.member_type"
        );
        let rows: Vec<(String, String)> = self
            .pool
            .fetch_all(&sql, &args)
            .await
            .map_err(MirrorError::database("read transitive members"))?;
        Ok(rows.into_iter().map(member).collect())
    }

    /// What the last commit of `connection` left; `None` before its first sync began.
    ///
    /// # Errors
    /// [`MirrorError::Corrupt`] for an impossible stored value; [`MirrorError::Database`].
    pub async fn state(
        &self,
        connection: ConnectionId,
    ) -> Result<Option<MirrorState>, MirrorError> {
        type StateRow = (
            i64,
            Option<i64>,
            Option<String>,
            i64,
            i64,
            i64,
            Option<String>,
        );
        let row: Option<StateRow> = self
            .pool
            .fetch_optional(
                "SELECT commits, committed_at, committed_kind, users_total, groups_total, \
                 memberships_total, sync_kind FROM mirror_state WHERE connection_id = $1",
                &[Self::key(connection)],
            )
            .await
            .map_err(MirrorError::database("read the mirror state"))?;
        let Some((commits, at, kind, users, groups, memberships, open)) = row else {
            return Ok(None);
        };
        let damaged =
            |reason: &str| MirrorError::corrupt(connection, ObjectKind::State, "", reason);
        let committed_at = at
            .map(|micros| {
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
                    .map_err(|_| damaged("committed_at is out of range"))
            })
            .transpose()?;
        let committed_kind = kind
            .map(|kind| match kind.as_str() {
                "full" => Ok(SyncKind::Full),
                "resync" => Ok(SyncKind::Resync),
                "delta" => Ok(SyncKind::Delta),
                _ => Err(damaged("an unknown sync kind")),
            })
            .transpose()?;
        Ok(Some(MirrorState {
            commits: count(connection, commits)?,
            committed_at,
            committed_kind,
            users: count(connection, users)?,
            groups: count(connection, groups)?,
            memberships: count(connection, memberships)?,
            sync_in_progress: open.is_some(),
        }))
    }
}

fn member((id, kind): (String, String)) -> Member {
    Member {
        id: object_id(id),
        member_type: member_type(&kind),
    }
}

/// Keyset pages for export: the rows after `after` (from the first without it) in key
/// order, read in the export's one read transaction.
pub(crate) async fn users_after(
    tx: &mut Tx<'_>,
    connection: ConnectionId,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<(String, String)>, MirrorError> {
    objects_after(tx, "mirror_users", connection, after, limit)
        .await
        .map_err(MirrorError::database("read users"))
}

pub(crate) async fn groups_after(
    tx: &mut Tx<'_>,
    connection: ConnectionId,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<(String, String)>, MirrorError> {
    objects_after(tx, "mirror_groups", connection, after, limit)
        .await
        .map_err(MirrorError::database("read groups"))
}

async fn objects_after(
    tx: &mut Tx<'_>,
    table: &str,
    connection: ConnectionId,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<(String, String)>, connection_store_sql::sqlx::Error> {
    match after {
        None => {
            tx.fetch_all(
                &format!(
                    "SELECT id, data FROM {table} WHERE snapshot = (SELECT snapshot FROM mirror_state WHERE connection_id = $1) ORDER BY id LIMIT $2"
                ),
                &[Mirror::key(connection), Arg::Int(limit)],
            )
            .await
        }
        Some(after) => {
            tx.fetch_all(
                &format!(
                    "SELECT id, data FROM {table} WHERE snapshot = (SELECT snapshot FROM mirror_state WHERE connection_id = $1) AND id > $2 \
                     ORDER BY id LIMIT $3"
                ),
                &[Mirror::key(connection), Arg::from(after), Arg::Int(limit)],
            )
            .await
        }
    }
}

pub(crate) async fn memberships_after(
    tx: &mut Tx<'_>,
    connection: ConnectionId,
    after: Option<(&str, &str)>,
    limit: i64,
) -> Result<Vec<(String, String, String)>, MirrorError> {
    let rows = match after {
        None => {
            tx.fetch_all(
                "SELECT group_id, member_id, member_type FROM mirror_memberships \
                 WHERE snapshot = (SELECT snapshot FROM mirror_state WHERE connection_id = $1) ORDER BY group_id, member_id LIMIT $2",
                &[Mirror::key(connection), Arg::Int(limit)],
            )
            .await
        }
        Some((group, member)) => {
            tx.fetch_all(
                "SELECT group_id, member_id, member_type FROM mirror_memberships \
                 WHERE snapshot = (SELECT snapshot FROM mirror_state WHERE connection_id = $1) AND (group_id > $2 OR (group_id = $2 AND member_id > $3)) \
                 ORDER BY group_id, member_id LIMIT $4",
                &[
                    Mirror::key(connection),
                    Arg::from(group),
                    Arg::from(member),
                    Arg::Int(limit),
                ],
            )
            .await
        }
    };
    rows.map_err(MirrorError::database("read memberships"))
}
