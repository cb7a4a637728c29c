//! [`MemorySink`]: a [`DirectorySink`] in memory, for tests and small tenants.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::sink::{
    Change, DirectorySink, MemberType, ObjectCounts, SinkError, SyncKind, SyncLinks, SyncSummary,
};
use crate::models::ObjectId;
use crate::{Group, User};

/// A tenant's users, groups and direct memberships, by id (sorted, so two directories
/// compare and print the same way).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Directory {
    users: BTreeMap<ObjectId, User>,
    groups: BTreeMap<ObjectId, Group>,
    members: BTreeMap<ObjectId, BTreeMap<ObjectId, MemberType>>,
}

impl Directory {
    /// The users by id.
    pub fn users(&self) -> &BTreeMap<ObjectId, User> {
        &self.users
    }

    /// The groups by id.
    pub fn groups(&self) -> &BTreeMap<ObjectId, Group> {
        &self.groups
    }

    /// Group id → member id → member type, for every group with members.
    pub fn members(&self) -> &BTreeMap<ObjectId, BTreeMap<ObjectId, MemberType>> {
        &self.members
    }

    /// The direct members of `group` (empty when it has none or is unknown).
    pub fn members_of(&self, group: &ObjectId) -> impl Iterator<Item = (&ObjectId, &MemberType)> {
        self.members.get(group).into_iter().flatten()
    }

    /// The number of (group, member) pairs.
    pub fn membership_count(&self) -> u64 {
        self.members.values().map(|m| m.len() as u64).sum()
    }

    /// Applies one change, counting what it did into `counts` (delta semantics: a removal
    /// of an unknown id, or an upsert of the same value, changes nothing).
    fn apply(&mut self, change: &Change, counts: &mut Tally) {
        match change {
            Change::UserUpserted(user) => {
                if let Some(id) = &user.id {
                    counts.users.upserted(
                        self.users.insert(id.clone(), (**user).clone()).as_ref(),
                        user,
                    );
                }
            }
            Change::UserRemoved { id, .. } => {
                if self.users.remove(id).is_some() {
                    counts.users.removed += 1;
                    counts.removed_users.push(id.clone());
                }
                counts.memberships.removed += self.remove_member_everywhere(id);
            }
            Change::GroupUpserted(group) => {
                if let Some(id) = &group.id {
                    counts.groups.upserted(
                        self.groups.insert(id.clone(), (**group).clone()).as_ref(),
                        group,
                    );
                }
            }
            Change::GroupRemoved { id, .. } => {
                if self.groups.remove(id).is_some() {
                    counts.groups.removed += 1;
                }
                if let Some(members) = self.members.remove(id) {
                    counts.memberships.removed += members.len() as u64;
                }
                counts.memberships.removed += self.remove_member_everywhere(id);
            }
            Change::MemberAdded {
                group,
                member,
                member_type,
            } => {
                let members = self.members.entry(group.clone()).or_default();
                match members.insert(member.clone(), member_type.clone()) {
                    None => counts.memberships.added += 1,
                    Some(old) if old != *member_type => counts.memberships.updated += 1,
                    Some(_) => {}
                }
            }
            Change::MemberRemoved { group, member } => {
                if let Some(members) = self.members.get_mut(group) {
                    if members.remove(member).is_some() {
                        counts.memberships.removed += 1;
                    }
                    if members.is_empty() {
                        self.members.remove(group);
                    }
                }
            }
        }
    }

    fn remove_member_everywhere(&mut self, id: &ObjectId) -> u64 {
        let mut removed = 0;
        self.members.retain(|_, members| {
            removed += u64::from(members.remove(id).is_some());
            !members.is_empty()
        });
        removed
    }

    /// Members of groups this directory does not hold (a membership replayed after its
    /// group was removed) are dropped, so memberships always belong to a known group.
    fn drop_orphan_memberships(&mut self, counts: &mut Tally) {
        let groups = &self.groups;
        self.members.retain(|group, members| {
            let keep = groups.contains_key(group);
            if !keep {
                counts.memberships.removed += members.len() as u64;
            }
            keep
        });
    }
}

#[derive(Default)]
struct Tally {
    users: ObjectCounts,
    groups: ObjectCounts,
    memberships: ObjectCounts,
    removed_users: Vec<ObjectId>,
}

trait Upserted<T> {
    fn upserted(&mut self, old: Option<&T>, new: &T);
}

impl<T: PartialEq> Upserted<T> for ObjectCounts {
    fn upserted(&mut self, old: Option<&T>, new: &T) {
        match old {
            None => self.added += 1,
            Some(old) if old != new => self.updated += 1,
            Some(_) => {}
        }
    }
}

/// A [`DirectorySink`] that keeps the tenant in memory: the committed [`Directory`] and
/// its links, plus the changes of the sync in progress, which take effect only at commit
/// (so a sync that fails or is dropped leaves the last commit as it was).
///
/// For tests and small tenants; a service keeps its tenants in its own database with its
/// own sink.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    committed: Directory,
    links: Option<SyncLinks>,
    staged: Option<(SyncKind, Vec<Change>)>,
    commits: u64,
}

impl MemorySink {
    /// An empty sink (its first sync is a full import).
    pub fn new() -> Self {
        Self::default()
    }

    /// What the last commit left.
    pub fn directory(&self) -> &Directory {
        &self.committed
    }

    /// The links of the last commit.
    pub fn committed_links(&self) -> Option<&SyncLinks> {
        self.links.as_ref()
    }

    /// How many commits it has taken.
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// Changes applied and not yet committed.
    pub fn staged_changes(&self) -> usize {
        self.staged.as_ref().map_or(0, |(_, changes)| changes.len())
    }
}

#[async_trait]
impl DirectorySink for MemorySink {
    async fn links(&mut self) -> Result<Option<SyncLinks>, SinkError> {
        Ok(self.links.clone())
    }

    async fn begin(&mut self, kind: SyncKind) -> Result<(), SinkError> {
        self.staged = Some((kind, Vec::new()));
        Ok(())
    }

    async fn apply(&mut self, changes: &[Change]) -> Result<(), SinkError> {
        let Some((_, staged)) = &mut self.staged else {
            return Err(SinkError::new(
                super::SinkErrorKind::Other,
                "changes applied before begin",
            ));
        };
        staged.extend_from_slice(changes);
        Ok(())
    }

    async fn commit(&mut self, links: SyncLinks) -> Result<SyncSummary, SinkError> {
        let Some((kind, changes)) = self.staged.take() else {
            return Err(SinkError::new(
                super::SinkErrorKind::Other,
                "commit without begin",
            ));
        };
        let mut tally = Tally::default();
        if kind.is_snapshot() {
            let mut next = Directory::default();
            let mut ignored = Tally::default();
            for change in &changes {
                next.apply(change, &mut ignored);
            }
            next.drop_orphan_memberships(&mut ignored);
            diff(&self.committed, &next, &mut tally);
            self.committed = next;
        } else {
            for change in &changes {
                self.committed.apply(change, &mut tally);
            }
            self.committed.drop_orphan_memberships(&mut tally);
        }
        tally.users.total = self.committed.users.len() as u64;
        tally.groups.total = self.committed.groups.len() as u64;
        tally.memberships.total = self.committed.membership_count();
        self.links = Some(links);
        self.commits += 1;
        let mut summary = SyncSummary::new(tally.users, tally.groups, tally.memberships);
        for id in tally.removed_users {
            summary.note_removed_user(id);
        }
        Ok(summary)
    }
}

/// Counts what turned `before` into `after`.
fn diff(before: &Directory, after: &Directory, tally: &mut Tally) {
    fn objects<T: PartialEq>(
        before: &BTreeMap<ObjectId, T>,
        after: &BTreeMap<ObjectId, T>,
        counts: &mut ObjectCounts,
        mut removed: impl FnMut(&ObjectId),
    ) {
        for (id, new) in after {
            counts.upserted(before.get(id), new);
        }
        for id in before.keys().filter(|id| !after.contains_key(*id)) {
            counts.removed += 1;
            removed(id);
        }
    }
    let removed_users = &mut tally.removed_users;
    objects(&before.users, &after.users, &mut tally.users, |id| {
        removed_users.push(id.clone());
    });
    objects(&before.groups, &after.groups, &mut tally.groups, |_| {});
    let empty = BTreeMap::new();
    for (group, members) in &after.members {
        let old = before.members.get(group).unwrap_or(&empty);
        for (member, kind) in members {
            tally.memberships.upserted(old.get(member), kind);
        }
    }
    for (group, members) in &before.members {
        let new = after.members.get(group).unwrap_or(&empty);
        tally.memberships.removed +=
            members.keys().filter(|m| !new.contains_key(*m)).count() as u64;
    }
}
