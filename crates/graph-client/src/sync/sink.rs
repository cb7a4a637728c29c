//! [`DirectorySink`]: where a sync puts the tenant, and the typed [`Change`]s it hands over.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use crate::error::ErrorAction;
use crate::models::{ObjectId, RemovedReason};
use crate::paging::DeltaLink;
use crate::{Group, User};

/// What kind of sync a sink is being given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SyncKind {
    /// The first import (the sink had no links), or one the caller asked for: the changes
    /// are a complete snapshot of the tenant.
    Full,
    /// A full import because Microsoft expired or reset the delta links (spec 9): a
    /// complete snapshot, and whatever the sink held that it does not contain is gone.
    Resync,
    /// The changes since the sink's links: apply them to what it holds.
    Delta,
}

impl SyncKind {
    /// True for [`Full`](Self::Full) and [`Resync`](Self::Resync): the changes are the
    /// whole tenant, so at commit the sink removes (and reports) every user, group and
    /// membership it held that the snapshot did not contain.
    pub fn is_snapshot(self) -> bool {
        matches!(self, Self::Full | Self::Resync)
    }

    /// A short label: `full`, `resync` or `delta`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Resync => "resync",
            Self::Delta => "delta",
        }
    }
}

impl std::fmt::Display for SyncKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A member's object type, from its `@odata.type` (spec 13).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum MemberType {
    /// `#microsoft.graph.user`
    User,
    /// `#microsoft.graph.group` (a nested group)
    Group,
    /// `#microsoft.graph.orgContact`
    OrgContact,
    /// `#microsoft.graph.device`
    Device,
    /// `#microsoft.graph.servicePrincipal`
    ServicePrincipal,
    /// Any other type, by its short name (`application`, ...), or `directoryObject` when
    /// Graph sent none.
    Other(String),
}

impl MemberType {
    /// The type of a short type name as [`DirectoryObject::type_name`](crate::DirectoryObject::type_name)
    /// gives it, or of a full `@odata.type` (`#microsoft.graph.user`).
    pub fn from_type_name(name: &str) -> Self {
        let short = crate::models::directory_object::short_type(name);
        match short {
            s if s.eq_ignore_ascii_case("user") => Self::User,
            s if s.eq_ignore_ascii_case("group") => Self::Group,
            s if s.eq_ignore_ascii_case("orgContact") => Self::OrgContact,
            s if s.eq_ignore_ascii_case("device") => Self::Device,
            s if s.eq_ignore_ascii_case("servicePrincipal") => Self::ServicePrincipal,
            "" => Self::Other("directoryObject".to_owned()),
            other => Self::Other(other.to_owned()),
        }
    }

    /// The short type name: `user`, `group`, `orgContact`, ...
    pub fn as_str(&self) -> &str {
        match self {
            Self::User => "user",
            Self::Group => "group",
            Self::OrgContact => "orgContact",
            Self::Device => "device",
            Self::ServicePrincipal => "servicePrincipal",
            Self::Other(name) => name,
        }
    }
}

impl std::fmt::Display for MemberType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change to the directory a sink holds. Apply changes idempotently: the same change
/// may come twice, in one round or in later ones (spec 9, "Replays").
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Change {
    /// A user as it is now, with the selected properties: insert it or replace it whole
    /// (delta rounds carry every selected property, spec 9).
    UserUpserted(Box<User>),
    /// A user is gone: soft-deleted ([`RemovedReason::Changed`]) or deleted for good. It
    /// also leaves every group it was a member of. An unknown id changes nothing.
    UserRemoved {
        /// The user's id.
        id: ObjectId,
        /// Why.
        reason: RemovedReason,
    },
    /// A group as it is now, with the selected properties (its `members_delta` is always
    /// empty: member changes come as [`MemberAdded`](Self::MemberAdded) and
    /// [`MemberRemoved`](Self::MemberRemoved)).
    GroupUpserted(Box<Group>),
    /// A group is gone, and with it its memberships (as a group and as a member).
    GroupRemoved {
        /// The group's id.
        id: ObjectId,
        /// Why.
        reason: RemovedReason,
    },
    /// `member` is a direct member of `group`.
    MemberAdded {
        /// The group.
        group: ObjectId,
        /// The member's id.
        member: ObjectId,
        /// The member's type.
        member_type: MemberType,
    },
    /// `member` is no longer a direct member of `group`.
    MemberRemoved {
        /// The group.
        group: ObjectId,
        /// The member's id.
        member: ObjectId,
    },
}

/// The delta links of a completed sync, which the sink commits with the data they
/// belong to: the users round, the groups round, and the user properties they were
/// started with (a delta link keeps its first round's `$select`, spec 9, so a sync with
/// other properties starts again with a full import).
///
/// They are secrets (their `$deltatoken` reads the tenant's changes): store them like
/// tokens. [`encode`](Self::encode) and [`decode`](Self::decode) give one opaque text for
/// a single column.
#[derive(Clone, PartialEq)]
pub struct SyncLinks {
    users: DeltaLink,
    groups: DeltaLink,
    user_select: Vec<String>,
}

impl std::fmt::Debug for SyncLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncLinks")
            .field("users", &self.users)
            .field("groups", &self.groups)
            .field("user_select", &self.user_select)
            .finish()
    }
}

/// Why a stored [`SyncLinks`] text could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the stored sync links are not readable: {reason}")]
pub struct LinksDecodeError {
    reason: &'static str,
}

impl SyncLinks {
    /// Links as a sink stored them.
    pub fn new(users: DeltaLink, groups: DeltaLink, user_select: Vec<String>) -> Self {
        Self {
            users,
            groups,
            user_select,
        }
    }

    /// The users delta link.
    pub fn users(&self) -> &DeltaLink {
        &self.users
    }

    /// The groups delta link.
    pub fn groups(&self) -> &DeltaLink {
        &self.groups
    }

    /// The user properties the users link was started with.
    pub fn user_select(&self) -> &[String] {
        &self.user_select
    }

    /// One opaque text holding all three (JSON), to store in one column.
    pub fn encode(&self) -> SecretString {
        let value = serde_json::json!({
            "v": 1,
            "users": self.users.expose_secret(),
            "groups": self.groups.expose_secret(),
            "userSelect": self.user_select,
        });
        SecretString::from(value.to_string())
    }

    /// Reads back what [`encode`](Self::encode) gave.
    ///
    /// # Errors
    /// [`LinksDecodeError`] when the text is not such a value (damaged or from another
    /// program); the error never quotes the text.
    pub fn decode(text: &SecretString) -> Result<Self, LinksDecodeError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire {
            v: u32,
            users: String,
            groups: String,
            user_select: Vec<String>,
        }
        let wire: Wire =
            serde_json::from_str(text.expose_secret()).map_err(|_| LinksDecodeError {
                reason: "not the JSON that SyncLinks::encode writes",
            })?;
        if wire.v != 1 {
            return Err(LinksDecodeError {
                reason: "unknown version",
            });
        }
        if wire.users.is_empty() || wire.groups.is_empty() {
            return Err(LinksDecodeError {
                reason: "a delta link is empty",
            });
        }
        Ok(Self::new(
            DeltaLink::new(wire.users),
            DeltaLink::new(wire.groups),
            wire.user_select,
        ))
    }
}

/// Added, updated and removed objects of one kind in one commit, and how many the sink
/// holds after it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ObjectCounts {
    /// New to the sink.
    pub added: u64,
    /// Held before, and different now.
    pub updated: u64,
    /// Held before, and gone now (removed by a delta, or not seen by a snapshot).
    pub removed: u64,
    /// Held after the commit.
    pub total: u64,
}

impl ObjectCounts {
    /// Counts from their four numbers.
    pub fn new(added: u64, updated: u64, removed: u64, total: u64) -> Self {
        Self {
            added,
            updated,
            removed,
            total,
        }
    }

    /// True when the commit changed nothing of this kind.
    pub fn is_unchanged(&self) -> bool {
        self.added == 0 && self.updated == 0 && self.removed == 0
    }
}

/// What a commit changed, as the sink counted it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncSummary {
    /// Users.
    pub users: ObjectCounts,
    /// Groups.
    pub groups: ObjectCounts,
    /// (group, member) pairs; `updated` counts members whose type changed.
    pub memberships: ObjectCounts,
    /// The users removed by this commit, at most [`SyncSummary::MAX_REMOVED_IDS`] of them
    /// (for messages and audits; `users.removed` has the full count).
    pub removed_user_ids: Vec<ObjectId>,
}

impl SyncSummary {
    /// How many removed user ids a summary lists.
    pub const MAX_REMOVED_IDS: usize = 1_000;

    /// A summary from its counts; add removed ids with [`note_removed_user`](Self::note_removed_user).
    pub fn new(users: ObjectCounts, groups: ObjectCounts, memberships: ObjectCounts) -> Self {
        Self {
            users,
            groups,
            memberships,
            removed_user_ids: Vec::new(),
        }
    }

    /// Lists a removed user (beyond [`MAX_REMOVED_IDS`](Self::MAX_REMOVED_IDS), only counted
    /// in `users.removed`).
    pub fn note_removed_user(&mut self, id: ObjectId) {
        if self.removed_user_ids.len() < Self::MAX_REMOVED_IDS {
            self.removed_user_ids.push(id);
        }
    }
}

/// What went wrong in a sink, by what the caller does about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SinkErrorKind {
    /// A passing failure (a busy or unreachable database): try the sync again later.
    Unavailable,
    /// Another writer holds the right to write this tenant (a lease taken over, a fence
    /// token that moved on): nothing was committed; run again when it is free.
    Fenced,
    /// What the sink holds cannot be read back (a damaged row or link): nothing was
    /// changed, and a person should look.
    Corrupt,
    /// The sink refused the changes for another reason (a bug, a constraint).
    Other,
}

/// An error of a [`DirectorySink`]. It never carries directory data or links: say what
/// failed in `what`, and keep the cause as the source.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct SinkError {
    kind: SinkErrorKind,
    what: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl SinkError {
    /// An error of `kind`, described by `what` (lower-case, no data in it).
    pub fn new(kind: SinkErrorKind, what: impl Into<String>) -> Self {
        Self {
            kind,
            what: what.into(),
            source: None,
        }
    }

    /// Keeps `source` as the cause.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// What kind of failure.
    pub fn kind(&self) -> SinkErrorKind {
        self.kind
    }

    /// What the caller does: retry later, fix the damaged sink, or report a bug.
    pub fn action(&self) -> ErrorAction {
        match self.kind {
            SinkErrorKind::Unavailable | SinkErrorKind::Fenced => ErrorAction::RetryLater(None),
            SinkErrorKind::Corrupt => ErrorAction::Repair,
            SinkErrorKind::Other => ErrorAction::Bug,
        }
    }

    /// True when the same sync may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self.action(), ErrorAction::RetryLater(_))
    }
}

/// Where a sync puts the tenant: a service implements it over its own database (the
/// extension point, like `ConnectionStore` for connections).
///
/// The sink owns the delta links, so the data and the links it was synced to can never
/// drift apart. One sync calls, in order: [`links`](Self::links) once, then
/// [`begin`](Self::begin), any number of [`apply`](Self::apply), and [`commit`](Self::commit)
/// with the new links. A sync that fails or is dropped half-way (an error, a cancelled
/// future, a killed process) never calls `commit`: what the sink held and its links must
/// then be exactly as they were. `begin` may come again before a `commit` (a delta round
/// that turned into a resync): it discards whatever was applied since the last commit.
///
/// Object safe: use it as `&mut dyn DirectorySink` or `Box<dyn DirectorySink>`.
#[async_trait]
pub trait DirectorySink: Send {
    /// The links of the last commit; `None` before the first one (a full import follows).
    ///
    /// # Errors
    /// When they cannot be read; a damaged value is [`SinkErrorKind::Corrupt`], never `None`.
    async fn links(&mut self) -> Result<Option<SyncLinks>, SinkError>;

    /// A sync of `kind` starts; anything applied and not committed is discarded.
    ///
    /// # Errors
    /// When the sink cannot start one (unreachable, fenced).
    async fn begin(&mut self, kind: SyncKind) -> Result<(), SinkError>;

    /// Changes, in the order they came from Graph (a page at a time). Apply them
    /// idempotently; they take effect only at [`commit`](Self::commit).
    ///
    /// # Errors
    /// When they cannot be staged.
    async fn apply(&mut self, changes: &[Change]) -> Result<(), SinkError>;

    /// Makes every change since [`begin`](Self::begin) and the new `links` durable,
    /// together and atomically, and says what changed. For a snapshot kind
    /// ([`SyncKind::is_snapshot`]) it first removes what it held and the snapshot did not
    /// contain.
    ///
    /// # Errors
    /// When nothing was committed (the previous state and links stand).
    async fn commit(&mut self, links: SyncLinks) -> Result<SyncSummary, SinkError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_round_trip_through_one_text_and_hide_in_debug() {
        let links = SyncLinks::new(
            DeltaLink::new("https://g/v1.0/users/delta?$deltatoken=SECRET-U"),
            DeltaLink::new("https://g/v1.0/groups/delta?$deltatoken=SECRET-G"),
            vec!["id".into(), "displayName".into()],
        );
        let text = links.encode();
        let back = SyncLinks::decode(&text).unwrap();
        assert_eq!(back, links);
        assert_eq!(back.user_select(), ["id", "displayName"]);
        let debug = format!("{links:?}");
        assert!(!debug.contains("SECRET"), "{debug}");
    }

    #[test]
    fn damaged_links_are_a_typed_error_without_the_text() {
        for bad in [
            "",
            "{",
            r#"{"v":2,"users":"a","groups":"b","userSelect":[]}"#,
            r#"{"v":1,"users":"","groups":"b","userSelect":[]}"#,
            "SECRET-not-json",
        ] {
            let err = SyncLinks::decode(&SecretString::from(bad.to_owned())).unwrap_err();
            assert!(!err.to_string().contains("SECRET"), "{err}");
        }
    }

    #[test]
    fn member_types_come_from_short_and_full_type_names() {
        assert_eq!(MemberType::from_type_name("user"), MemberType::User);
        assert_eq!(
            MemberType::from_type_name("#microsoft.graph.group"),
            MemberType::Group
        );
        assert_eq!(
            MemberType::from_type_name("#microsoft.graph.application").as_str(),
            "application"
        );
        assert_eq!(MemberType::from_type_name("").as_str(), "directoryObject");
    }

    #[test]
    fn sink_errors_map_to_caller_actions() {
        assert!(SinkError::new(SinkErrorKind::Unavailable, "db busy").is_retryable());
        assert_eq!(
            SinkError::new(SinkErrorKind::Corrupt, "bad row").action(),
            ErrorAction::Repair
        );
        assert_eq!(
            SinkError::new(SinkErrorKind::Other, "x").action(),
            ErrorAction::Bug
        );
    }
}
