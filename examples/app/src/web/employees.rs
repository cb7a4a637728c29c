//! The imported employees of a connection, for the Manage page: read from the sync
//! export, narrowed to the connection's `SyncScope`, searched and paged.
//!
//! The export ([`crate::sync`], JSON Lines) is read through
//! [`EmployeeCache`], which re-reads it only when `sync-manifest.json` changes: the sync
//! removes the manifest first and writes it last, so a new manifest means a new export.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use anyhow::Context as _;
use connection_store::ConnectionId;
use serde_json::Value;

use super::scope::SyncScope;
use crate::sync::{Format, Record, Snapshot, load_previous};

/// The user properties the web sync exports (its `$select`): what an e-mail signature
/// shows, plus `accountEnabled` and `userType` for the scope. All are Graph v1.0 `user`
/// properties returned in a list with `$select` (spec 8b) and tracked by `users/delta`.
/// `faxNumber` is left out: tenant-sim does not know it and answers 400 to a `$select`
/// that names it.
pub(crate) const USER_SELECT: &[&str] = &[
    "displayName",
    "givenName",
    "surname",
    "mail",
    "userPrincipalName",
    "jobTitle",
    "department",
    "companyName",
    "officeLocation",
    "businessPhones",
    "mobilePhone",
    "streetAddress",
    "city",
    "state",
    "postalCode",
    "country",
    "accountEnabled",
    "userType",
];

/// Employees per page of the Manage page's list.
pub(crate) const PAGE_SIZE: usize = 25;

/// The manifest the export writes last.
const MANIFEST: &str = "sync-manifest.json";

/// One imported user. Text fields are `None` when the export has no (or a blank) value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Employee {
    /// The Entra object id.
    pub id: String,
    /// `displayName`.
    pub display_name: Option<String>,
    /// `givenName`.
    pub given_name: Option<String>,
    /// `surname`.
    pub surname: Option<String>,
    /// `jobTitle`.
    pub job_title: Option<String>,
    /// `department`.
    pub department: Option<String>,
    /// `companyName`.
    pub company_name: Option<String>,
    /// `businessPhones` (Graph allows one; empty when none).
    pub business_phones: Vec<String>,
    /// `mobilePhone`.
    pub mobile_phone: Option<String>,
    /// `mail`.
    pub mail: Option<String>,
    /// `userPrincipalName`.
    pub user_principal_name: Option<String>,
    /// `officeLocation`.
    pub office_location: Option<String>,
    /// `streetAddress`.
    pub street_address: Option<String>,
    /// `city`.
    pub city: Option<String>,
    /// `state`.
    pub state: Option<String>,
    /// `postalCode`.
    pub postal_code: Option<String>,
    /// `country`.
    pub country: Option<String>,
    /// `accountEnabled`; `None` when the export lacks it.
    pub account_enabled: Option<bool>,
    /// `userType` (`Member` or `Guest`).
    pub user_type: Option<String>,
}

impl Employee {
    /// The employee of the exported user `record` (whose id is `id`).
    pub(crate) fn from_record(id: &str, record: &Record) -> Self {
        let text = |name: &str| match record.get(name) {
            Some(Value::String(value)) if !value.trim().is_empty() => Some(value.trim().to_owned()),
            _ => None,
        };
        let business_phones = match record.get("businessPhones") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::trim)
                .filter(|phone| !phone.is_empty())
                .map(str::to_owned)
                .collect(),
            // A CSV-style single value.
            Some(Value::String(phone)) if !phone.trim().is_empty() => {
                vec![phone.trim().to_owned()]
            }
            _ => Vec::new(),
        };
        Self {
            id: id.to_owned(),
            display_name: text("displayName"),
            given_name: text("givenName"),
            surname: text("surname"),
            job_title: text("jobTitle"),
            department: text("department"),
            company_name: text("companyName"),
            business_phones,
            mobile_phone: text("mobilePhone"),
            mail: text("mail"),
            user_principal_name: text("userPrincipalName"),
            office_location: text("officeLocation"),
            street_address: text("streetAddress"),
            city: text("city"),
            state: text("state"),
            postal_code: text("postalCode"),
            country: text("country"),
            account_enabled: record.get("accountEnabled").and_then(Value::as_bool),
            user_type: text("userType"),
        }
    }

    /// The name to show: `displayName`, else given name and surname, else the UPN, the
    /// mail address or the id.
    pub(crate) fn name(&self) -> String {
        if let Some(name) = &self.display_name {
            return name.clone();
        }
        let parts: Vec<&str> = [&self.given_name, &self.surname]
            .into_iter()
            .filter_map(Option::as_deref)
            .collect();
        if !parts.is_empty() {
            return parts.join(" ");
        }
        self.user_principal_name
            .as_deref()
            .or(self.mail.as_deref())
            .unwrap_or(&self.id)
            .to_owned()
    }

    /// The postal address on one line: "street, postal code city, state, country", the
    /// missing parts left out; empty when there is none.
    pub(crate) fn address_line(&self) -> String {
        let town: Vec<&str> = [&self.postal_code, &self.city]
            .into_iter()
            .filter_map(Option::as_deref)
            .collect();
        let town = town.join(" ");
        [
            self.street_address.as_deref(),
            Some(town.as_str()).filter(|t| !t.is_empty()),
            self.state.as_deref(),
            self.country.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ")
    }

    /// The business phones then the mobile phone, without repeats.
    pub(crate) fn phones(&self) -> Vec<&str> {
        let mut phones: Vec<&str> = Vec::new();
        for phone in self
            .business_phones
            .iter()
            .map(String::as_str)
            .chain(self.mobile_phone.as_deref())
        {
            if !phones.contains(&phone) {
                phones.push(phone);
            }
        }
        phones
    }

    /// True for an account Entra has disabled (`accountEnabled` false).
    pub(crate) fn is_disabled(&self) -> bool {
        self.account_enabled == Some(false)
    }

    /// True for a guest from another organization (`userType` `Guest`).
    pub(crate) fn is_guest(&self) -> bool {
        self.user_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("Guest"))
    }

    /// Does every term (already lower case) occur in one of the searched fields?
    fn matches(&self, terms: &[String]) -> bool {
        let fields: Vec<String> = [
            self.display_name.as_deref(),
            self.given_name.as_deref(),
            self.surname.as_deref(),
            self.mail.as_deref(),
            self.user_principal_name.as_deref(),
            self.job_title.as_deref(),
            self.department.as_deref(),
            self.company_name.as_deref(),
            self.office_location.as_deref(),
            self.city.as_deref(),
        ]
        .into_iter()
        .flatten()
        .map(str::to_lowercase)
        .collect();
        terms
            .iter()
            .all(|term| fields.iter().any(|field| field.contains(term.as_str())))
    }
}

/// The employees of `snapshot` under `scope`: every user, or the users that are members
/// of the chosen groups directly or through nested groups (a group cycle is followed
/// once), without disabled accounts and guests when the scope says so. Sorted by name
/// (case-insensitive), then id.
pub(crate) fn in_scope(snapshot: &Snapshot, scope: &SyncScope) -> Vec<Employee> {
    let keep = |employee: &Employee| {
        !((scope.skip_disabled && employee.is_disabled())
            || (scope.skip_guests && employee.is_guest()))
    };
    let mut employees: Vec<Employee> = if scope.groups.is_empty() {
        snapshot
            .users
            .iter()
            .map(|(id, record)| Employee::from_record(id, record))
            .filter(keep)
            .collect()
    } else {
        let mut users: BTreeSet<&str> = BTreeSet::new();
        let mut seen: BTreeSet<&str> = scope.groups.iter().map(String::as_str).collect();
        let mut queue: VecDeque<&str> = scope.groups.iter().map(String::as_str).collect();
        while let Some(group) = queue.pop_front() {
            for (member, kind) in snapshot.members.get(group).into_iter().flatten() {
                if snapshot.users.contains_key(member) {
                    users.insert(member);
                } else if (kind == "group" || snapshot.members.contains_key(member))
                    && seen.insert(member)
                {
                    queue.push_back(member);
                }
            }
        }
        users
            .into_iter()
            .filter_map(|id| {
                snapshot
                    .users
                    .get(id)
                    .map(|record| Employee::from_record(id, record))
            })
            .filter(keep)
            .collect()
    };
    employees.sort_by_cached_key(|e| (e.name().to_lowercase(), e.id.clone()));
    employees
}

/// The groups of `snapshot` as (id, name) for the scope form, sorted by name
/// (case-insensitive), then id; a group without a `displayName` shows its id.
pub(crate) fn group_choices(snapshot: &Snapshot) -> Vec<(String, String)> {
    let mut choices: Vec<(String, String)> = snapshot
        .groups
        .iter()
        .map(|(id, record)| {
            let name = record
                .get("displayName")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .unwrap_or(id);
            (id.clone(), name.to_owned())
        })
        .collect();
    choices.sort_by_cached_key(|(id, name)| (name.to_lowercase(), id.clone()));
    choices
}

/// A search of the employee list: the query string `q` and the 1-based `page`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default)]
pub(crate) struct EmployeeQuery {
    /// Whitespace-separated terms; each must occur (case-insensitive) in the name, mail,
    /// UPN, job title, department, company, office or city.
    pub q: String,
    /// The page, from 1; out of range values are clamped.
    pub page: usize,
}

/// One page of a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EmployeePage {
    /// The employees on this page (at most [`PAGE_SIZE`]).
    pub items: Vec<Employee>,
    /// How many employees match the search.
    pub total: usize,
    /// This page, in `1..=pages`.
    pub page: usize,
    /// The number of pages, at least 1.
    pub pages: usize,
}

impl EmployeePage {
    /// Is there a page before this one?
    pub(crate) fn has_prev(&self) -> bool {
        self.page > 1
    }

    /// Is there a page after this one?
    pub(crate) fn has_next(&self) -> bool {
        self.page < self.pages
    }
}

/// The page `query.page` of the employees in `all` that match `query.q` (all of them
/// when it is blank), in the order of `all`. A page past the end is the last page; page
/// 0 is page 1.
pub(crate) fn search(all: &[Employee], query: &EmployeeQuery) -> EmployeePage {
    let terms: Vec<String> = query.q.split_whitespace().map(str::to_lowercase).collect();
    let matching: Vec<&Employee> = all.iter().filter(|e| e.matches(&terms)).collect();
    let total = matching.len();
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page = query.page.clamp(1, pages);
    let items = matching
        .into_iter()
        .skip((page - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
        .cloned()
        .collect();
    EmployeePage {
        items,
        total,
        page,
        pages,
    }
}

/// What identifies one version of the export: the manifest's modification time and
/// length (and inode on Unix, since the sync renames a new manifest into place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

/// The stamp of the export in `dir`; `None` while there is no (complete) export.
fn stamp(dir: &Path) -> anyhow::Result<Option<Stamp>> {
    let path = dir.join(MANIFEST);
    let metadata = match std::fs::metadata(&path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(error).with_context(|| format!("could not read {}", path.display()));
        }
    };
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&metadata);
    #[cfg(not(unix))]
    let inode = 0;
    Ok(Some(Stamp {
        modified: metadata.modified().ok(),
        len: metadata.len(),
        inode,
    }))
}

/// One connection's export as last read.
struct Entry {
    stamp: Stamp,
    snapshot: Arc<Snapshot>,
    groups: Arc<Vec<(String, String)>>,
    /// The employees under the scope last asked for.
    employees: Option<(SyncScope, Arc<Vec<Employee>>)>,
}

/// The employees and groups of each connection's export, kept until the export changes,
/// so the connection list ("users imported") and the Manage page do not re-read the files
/// on every request. Cloning shares the cache.
///
/// The methods read files when the export changed: call them from `spawn_blocking` in
/// async code.
#[derive(Clone, Default)]
pub struct EmployeeCache {
    entries: Arc<Mutex<HashMap<ConnectionId, Entry>>>,
}

impl EmployeeCache {
    /// The employees of connection `id` under `scope`, from the export in `dir`; empty
    /// while the connection has no export. The same `Arc` comes back until the export or
    /// the scope changes.
    ///
    /// # Errors
    /// When the export is unreadable or damaged, or `dir` holds another connection's
    /// export.
    pub(crate) fn employees(
        &self,
        dir: &Path,
        id: ConnectionId,
        scope: &SyncScope,
    ) -> anyhow::Result<Arc<Vec<Employee>>> {
        let Some((stamp, snapshot)) = self.snapshot(dir, id)? else {
            return Ok(Arc::new(Vec::new()));
        };
        {
            let entries = self.lock();
            if let Some(Entry {
                stamp: cached,
                employees: Some((cached_scope, employees)),
                ..
            }) = entries.get(&id)
                && *cached == stamp
                && cached_scope == scope
            {
                return Ok(Arc::clone(employees));
            }
        }
        let employees = Arc::new(in_scope(&snapshot, scope));
        let mut entries = self.lock();
        if let Some(entry) = entries.get_mut(&id)
            && entry.stamp == stamp
        {
            entry.employees = Some((scope.clone(), Arc::clone(&employees)));
        }
        Ok(employees)
    }

    /// The groups of connection `id`'s export in `dir` as [`group_choices`] gives them;
    /// empty while the connection has no export.
    ///
    /// # Errors
    /// As [`employees`](Self::employees).
    pub(crate) fn groups(
        &self,
        dir: &Path,
        id: ConnectionId,
    ) -> anyhow::Result<Arc<Vec<(String, String)>>> {
        if self.snapshot(dir, id)?.is_none() {
            return Ok(Arc::new(Vec::new()));
        }
        let entries = self.lock();
        Ok(entries
            .get(&id)
            .map_or_else(|| Arc::new(Vec::new()), |entry| Arc::clone(&entry.groups)))
    }

    /// Drops what is kept for connection `id` (after it is removed).
    pub fn forget(&self, id: ConnectionId) {
        self.lock().remove(&id);
    }

    /// The current export of `id` and its stamp, read again only when the manifest
    /// changed; `None` (and nothing kept) while there is no export.
    fn snapshot(
        &self,
        dir: &Path,
        id: ConnectionId,
    ) -> anyhow::Result<Option<(Stamp, Arc<Snapshot>)>> {
        let Some(before) = stamp(dir)? else {
            self.forget(id);
            return Ok(None);
        };
        if let Some(entry) = self.lock().get(&id)
            && entry.stamp == before
        {
            return Ok(Some((before, Arc::clone(&entry.snapshot))));
        }
        let Some(previous) = load_previous(dir, Format::Jsonl, id)? else {
            self.forget(id);
            return Ok(None);
        };
        let snapshot = Arc::new(previous.snapshot);
        // Keep it only if no sync replaced the export while it was read: otherwise the
        // files may be a mix, and the next call reads them again.
        if stamp(dir)? == Some(before) {
            self.lock().insert(
                id,
                Entry {
                    stamp: before,
                    groups: Arc::new(group_choices(&snapshot)),
                    snapshot: Arc::clone(&snapshot),
                    employees: None,
                },
            );
        }
        Ok(Some((before, snapshot)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, Entry>> {
        // The map stays consistent even if a holder panicked: every write is one insert.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use serde_json::json;

    use super::*;

    fn record(value: serde_json::Value) -> Record {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn user(id: &str, name: &str) -> (String, Record) {
        (
            id.to_owned(),
            record(
                json!({"id": id, "displayName": name, "accountEnabled": true, "userType": "Member"}),
            ),
        )
    }

    fn members(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter()
            .map(|(id, kind)| ((*id).to_owned(), (*kind).to_owned()))
            .collect()
    }

    /// Users u1..u6; u5 disabled, u6 a guest. Groups: sales {u1, eu}, eu {u2, emea},
    /// emea {u3, sales (a cycle), c1 (a contact)}, ops {u4}, empty {}, guests {u6, u5}.
    fn fixture() -> Snapshot {
        let mut snapshot = Snapshot::default();
        snapshot.users.extend([
            user("u1", "Carol"),
            user("u2", "alice"),
            user("u3", "Bob"),
            user("u4", "Dave"),
        ]);
        snapshot.users.insert(
            "u5".into(),
            record(json!({"id": "u5", "displayName": "Eve", "accountEnabled": false, "userType": "Member"})),
        );
        snapshot.users.insert(
            "u6".into(),
            record(json!({"id": "u6", "displayName": "frank", "accountEnabled": true, "userType": "Guest"})),
        );
        for (id, name) in [
            ("sales", "Sales"),
            ("eu", "europe"),
            ("emea", "EMEA"),
            ("ops", "Operations"),
            ("empty", "Empty"),
            ("guests", "Guests and leavers"),
        ] {
            snapshot
                .groups
                .insert(id.into(), record(json!({"id": id, "displayName": name})));
        }
        snapshot
            .members
            .insert("sales".into(), members(&[("u1", "user"), ("eu", "group")]));
        snapshot
            .members
            .insert("eu".into(), members(&[("u2", "user"), ("emea", "group")]));
        snapshot.members.insert(
            "emea".into(),
            members(&[("u3", "user"), ("sales", "group"), ("c1", "orgContact")]),
        );
        snapshot
            .members
            .insert("ops".into(), members(&[("u4", "user")]));
        snapshot
            .members
            .insert("guests".into(), members(&[("u6", "user"), ("u5", "user")]));
        snapshot
    }

    fn ids(employees: &[Employee]) -> Vec<&str> {
        employees.iter().map(|e| e.id.as_str()).collect()
    }

    fn scope(groups: &[&str], skip_disabled: bool, skip_guests: bool) -> SyncScope {
        SyncScope {
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            skip_disabled,
            skip_guests,
        }
    }

    #[test]
    fn user_select_is_a_superset_of_the_sync_default_and_has_the_scope_fields() {
        for name in crate::sync::DEFAULT_USER_SELECT {
            assert!(USER_SELECT.contains(name), "{name} missing");
        }
        for name in [
            "accountEnabled",
            "userType",
            "businessPhones",
            "streetAddress",
        ] {
            assert!(USER_SELECT.contains(&name), "{name} missing");
        }
        let unique: BTreeSet<&&str> = USER_SELECT.iter().collect();
        assert_eq!(unique.len(), USER_SELECT.len());
    }

    #[test]
    fn all_users_scope_sorts_by_name_case_insensitively_then_id() {
        let mut snapshot = fixture();
        snapshot.users.insert("u0".into(), user("u0", "bob").1);
        let all = in_scope(&snapshot, &scope(&[], false, false));
        assert_eq!(ids(&all), ["u2", "u0", "u3", "u1", "u4", "u5", "u6"]);
    }

    #[test]
    fn skip_disabled_and_guests_apply_when_on_and_not_when_off() {
        let snapshot = fixture();
        assert_eq!(
            ids(&in_scope(&snapshot, &scope(&[], true, true))),
            ["u2", "u3", "u1", "u4"]
        );
        assert_eq!(
            ids(&in_scope(&snapshot, &scope(&[], true, false))),
            ["u2", "u3", "u1", "u4", "u6"]
        );
        assert_eq!(
            ids(&in_scope(&snapshot, &scope(&[], false, true))),
            ["u2", "u3", "u1", "u4", "u5"]
        );
        assert_eq!(
            ids(&in_scope(&snapshot, &scope(&["guests"], true, true))),
            Vec::<&str>::new()
        );
        assert_eq!(
            ids(&in_scope(&snapshot, &scope(&["guests"], false, false))),
            ["u5", "u6"]
        );
        // The default scope skips both.
        assert_eq!(
            ids(&in_scope(&snapshot, &SyncScope::default())),
            ["u2", "u3", "u1", "u4"]
        );
    }

    #[test]
    fn group_scope_follows_nested_groups_transitively_through_a_cycle() {
        let snapshot = fixture();
        // sales → eu → emea → sales (cycle); the contact c1 is not a user.
        for start in ["sales", "eu", "emea"] {
            assert_eq!(
                ids(&in_scope(&snapshot, &scope(&[start], true, true))),
                ["u2", "u3", "u1"],
                "from {start}"
            );
        }
        assert_eq!(
            ids(&in_scope(&snapshot, &scope(&["ops", "emea"], true, true))),
            ["u2", "u3", "u1", "u4"]
        );
    }

    #[test]
    fn group_scope_with_no_members_or_an_unknown_group_is_empty() {
        let snapshot = fixture();
        assert!(in_scope(&snapshot, &scope(&["empty"], true, true)).is_empty());
        assert!(in_scope(&snapshot, &scope(&["deleted-group"], false, false)).is_empty());
    }

    #[test]
    fn group_scope_skips_members_missing_from_the_users_export() {
        let mut snapshot = fixture();
        snapshot
            .members
            .insert("ops".into(), members(&[("u4", "user"), ("gone", "user")]));
        assert_eq!(
            ids(&in_scope(&snapshot, &scope(&["ops"], true, true))),
            ["u4"]
        );
    }

    #[test]
    fn group_choices_are_sorted_by_name_and_fall_back_to_the_id() {
        let mut snapshot = fixture();
        snapshot
            .groups
            .insert("zz-no-name".into(), record(json!({"id": "zz-no-name"})));
        let choices = group_choices(&snapshot);
        let names: Vec<&str> = choices.iter().map(|(_, name)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "EMEA",
                "Empty",
                "europe",
                "Guests and leavers",
                "Operations",
                "Sales",
                "zz-no-name"
            ]
        );
        assert_eq!(choices[2], ("eu".to_owned(), "europe".to_owned()));
    }

    fn full_employee() -> Employee {
        Employee::from_record(
            "u1",
            &record(json!({
                "id": "u1",
                "displayName": "Adele Vance",
                "givenName": "Adele",
                "surname": "Vance",
                "jobTitle": "Retail Manager",
                "department": "Retail",
                "companyName": "Contoso",
                "businessPhones": ["+1 425 555 0109"],
                "mobilePhone": "+1 425 555 0110",
                "mail": "AdeleV@contoso.com",
                "userPrincipalName": "AdeleV@contoso.com",
                "officeLocation": "18/2111",
                "streetAddress": "205 108th Ave NE",
                "city": "Bellevue",
                "state": "WA",
                "postalCode": "98004",
                "country": "United States",
                "accountEnabled": true,
                "userType": "Member",
                "preferredLanguage": "en-US"
            })),
        )
    }

    #[test]
    fn employee_reads_every_exported_property() {
        let employee = full_employee();
        assert_eq!(
            employee,
            Employee {
                id: "u1".into(),
                display_name: Some("Adele Vance".into()),
                given_name: Some("Adele".into()),
                surname: Some("Vance".into()),
                job_title: Some("Retail Manager".into()),
                department: Some("Retail".into()),
                company_name: Some("Contoso".into()),
                business_phones: vec!["+1 425 555 0109".into()],
                mobile_phone: Some("+1 425 555 0110".into()),
                mail: Some("AdeleV@contoso.com".into()),
                user_principal_name: Some("AdeleV@contoso.com".into()),
                office_location: Some("18/2111".into()),
                street_address: Some("205 108th Ave NE".into()),
                city: Some("Bellevue".into()),
                state: Some("WA".into()),
                postal_code: Some("98004".into()),
                country: Some("United States".into()),
                account_enabled: Some(true),
                user_type: Some("Member".into()),
            }
        );
        assert_eq!(
            employee.address_line(),
            "205 108th Ave NE, 98004 Bellevue, WA, United States"
        );
        assert_eq!(employee.phones(), ["+1 425 555 0109", "+1 425 555 0110"]);
        assert_eq!(employee.name(), "Adele Vance");
    }

    #[test]
    fn employee_with_missing_or_blank_properties_has_nones_and_sensible_lines() {
        let employee = Employee::from_record(
            "u9",
            &record(json!({
                "id": "u9",
                "givenName": "  ",
                "surname": "Lee",
                "businessPhones": [],
                "mobilePhone": "+44 20 5555 0100",
                "city": "London",
                "country": "United Kingdom",
                "accountEnabled": "yes"
            })),
        );
        assert_eq!(employee.display_name, None);
        assert_eq!(employee.given_name, None);
        assert_eq!(employee.account_enabled, None);
        assert_eq!(employee.name(), "Lee");
        assert_eq!(employee.address_line(), "London, United Kingdom");
        assert_eq!(employee.phones(), ["+44 20 5555 0100"]);

        let bare = Employee::from_record("u10", &Record::new());
        assert_eq!(bare.name(), "u10");
        assert_eq!(bare.address_line(), "");
        assert!(bare.phones().is_empty());
        assert!(!bare.is_disabled());
        assert!(!bare.is_guest());

        let same = Employee::from_record(
            "u11",
            &record(
                json!({"businessPhones": ["1", "1"], "mobilePhone": "1", "postalCode": "1000"}),
            ),
        );
        assert_eq!(same.phones(), ["1"]);
        assert_eq!(same.address_line(), "1000");
    }

    fn many(count: usize) -> Vec<Employee> {
        (0..count)
            .map(|i| {
                let mut e = Employee::from_record(&format!("u{i:03}"), &Record::new());
                e.display_name = Some(format!("Person {i:03}"));
                e
            })
            .collect()
    }

    #[test]
    fn search_terms_must_all_match_case_insensitively_across_fields() {
        let mut adele = full_employee();
        adele.id = "a".into();
        let mut other = full_employee();
        other.id = "b".into();
        other.display_name = Some("Alex Wilber".into());
        other.given_name = Some("Alex".into());
        other.surname = Some("Wilber".into());
        other.mail = Some("AlexW@contoso.com".into());
        other.user_principal_name = Some("AlexW@contoso.com".into());
        other.job_title = Some("Marketing Assistant".into());
        other.department = Some("Marketing".into());
        other.city = Some("Redmond".into());
        let all = vec![adele, other];
        let found = |q: &str| {
            let page = search(
                &all,
                &EmployeeQuery {
                    q: q.into(),
                    page: 1,
                },
            );
            assert_eq!(page.total, page.items.len());
            page.items.into_iter().map(|e| e.id).collect::<Vec<_>>()
        };
        assert_eq!(found(""), ["a", "b"]);
        assert_eq!(found("   "), ["a", "b"]);
        assert_eq!(found("CONTOSO"), ["a", "b"]);
        assert_eq!(found("adele"), ["a"]);
        assert_eq!(found("retail bellevue"), ["a"]);
        assert_eq!(found("  contoso   MARKETING "), ["b"]);
        assert_eq!(found("redmond retail"), Vec::<String>::new());
        assert_eq!(found("18/2111"), ["a", "b"]);
        assert_eq!(found("alexw@"), ["b"]);
        // Phones and street are not searched.
        assert_eq!(found("0109"), Vec::<String>::new());
    }

    #[test]
    fn paging_counts_and_clamps() {
        let all = many(60);
        let page = |page: usize| {
            search(
                &all,
                &EmployeeQuery {
                    q: String::new(),
                    page,
                },
            )
        };
        let first = page(1);
        assert_eq!((first.total, first.page, first.pages), (60, 1, 3));
        assert_eq!(first.items.len(), PAGE_SIZE);
        assert_eq!(first.items[0].id, "u000");
        assert!(!first.has_prev() && first.has_next());

        let last = page(3);
        assert_eq!((last.page, last.items.len()), (3, 10));
        assert_eq!(last.items[0].id, "u050");
        assert!(last.has_prev() && !last.has_next());

        assert_eq!(page(99), last);
        assert_eq!(page(0), first);

        // Two terms: "person" everywhere, "05" in 005 and 050..=059.
        let narrowed = search(
            &all,
            &EmployeeQuery {
                q: "person 05".into(),
                page: 7,
            },
        );
        assert_eq!((narrowed.total, narrowed.page, narrowed.pages), (11, 1, 1));
        assert_eq!(ids(&narrowed.items)[..2], ["u005", "u050"]);

        let none = search(&[], &EmployeeQuery::default());
        assert_eq!((none.total, none.page, none.pages), (0, 1, 1));
        assert!(none.items.is_empty());
        assert!(!none.has_prev() && !none.has_next());

        let exact = search(
            &many(50),
            &EmployeeQuery {
                q: String::new(),
                page: 2,
            },
        );
        assert_eq!((exact.pages, exact.items.len()), (2, 25));
    }

    #[test]
    fn query_deserializes_with_defaults() {
        let query: EmployeeQuery = serde_json::from_value(json!({"q": "ann"})).unwrap();
        assert_eq!(
            query,
            EmployeeQuery {
                q: "ann".into(),
                page: 0
            }
        );
    }

    // ------------------------------------------------------------------ cache

    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            Self(std::env::temp_dir().join(format!(
                "webapp-employees-test-{}",
                uuid::Uuid::new_v4().simple()
            )))
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Writes an export as `crate::sync` does (JSON Lines state + manifest last).
    fn write_export(dir: &Path, id: ConnectionId, snapshot: &Snapshot) {
        std::fs::create_dir_all(dir).unwrap();
        let lines = |records: &BTreeMap<String, Record>| {
            let mut text = String::new();
            for record in records.values() {
                text.push_str(&serde_json::to_string(record).unwrap());
                text.push('\n');
            }
            text
        };
        std::fs::write(dir.join("users.jsonl"), lines(&snapshot.users)).unwrap();
        std::fs::write(dir.join("groups.jsonl"), lines(&snapshot.groups)).unwrap();
        let mut memberships = String::new();
        for (group, list) in &snapshot.members {
            for (member, kind) in list {
                let row = json!({"groupId": group, "memberId": member, "memberType": kind});
                memberships.push_str(&row.to_string());
                memberships.push('\n');
            }
        }
        std::fs::write(dir.join("memberships.jsonl"), memberships).unwrap();
        let mut columns = vec!["id"];
        columns.extend_from_slice(USER_SELECT);
        let manifest = json!({
            "connection": id.to_string(),
            "userColumns": columns,
            "users": snapshot.users.len(),
            "groups": snapshot.groups.len(),
            "memberships": snapshot.membership_count(),
        });
        let tmp = dir.join("sync-manifest.json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
        std::fs::rename(&tmp, dir.join(MANIFEST)).unwrap();
    }

    #[test]
    fn cache_without_an_export_is_empty() {
        let dir = TempDir::new();
        let cache = EmployeeCache::default();
        let id = ConnectionId::new();
        assert!(
            cache
                .employees(&dir.0, id, &SyncScope::default())
                .unwrap()
                .is_empty()
        );
        assert!(cache.groups(&dir.0, id).unwrap().is_empty());
    }

    #[test]
    fn cache_returns_the_same_arc_until_the_manifest_or_scope_changes() {
        let dir = TempDir::new();
        let id = ConnectionId::new();
        let cache = EmployeeCache::default();
        write_export(&dir.0, id, &fixture());

        let default = SyncScope::default();
        let first = cache.employees(&dir.0, id, &default).unwrap();
        assert_eq!(ids(&first), ["u2", "u3", "u1", "u4"]);
        let again = cache.employees(&dir.0, id, &default).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let groups = cache.groups(&dir.0, id).unwrap();
        assert_eq!(groups.len(), 6);
        assert!(Arc::ptr_eq(&groups, &cache.groups(&dir.0, id).unwrap()));
        // A clone shares the cache.
        assert!(Arc::ptr_eq(
            &first,
            &cache.clone().employees(&dir.0, id, &default).unwrap()
        ));

        // Another scope: computed from the kept export.
        let ops = cache
            .employees(&dir.0, id, &scope(&["ops"], true, true))
            .unwrap();
        assert_eq!(ids(&ops), ["u4"]);

        // A new export (users renamed, ten more users, so the manifest differs).
        let mut changed = fixture();
        changed.users.insert("u4".into(), user("u4", "Aaron").1);
        for i in 0..10 {
            let (id, record) = user(&format!("n{i}"), &format!("New {i}"));
            changed.users.insert(id, record);
        }
        write_export(&dir.0, id, &changed);
        let fresh = cache.employees(&dir.0, id, &default).unwrap();
        assert!(!Arc::ptr_eq(&first, &fresh));
        assert_eq!(fresh.len(), 14);
        assert_eq!(fresh[0].display_name.as_deref(), Some("Aaron"));
        assert!(!Arc::ptr_eq(&groups, &cache.groups(&dir.0, id).unwrap()));

        // The export removed: empty, and nothing kept.
        std::fs::remove_file(dir.0.join(MANIFEST)).unwrap();
        assert!(cache.employees(&dir.0, id, &default).unwrap().is_empty());
        assert!(cache.lock().get(&id).is_none());
    }

    #[test]
    fn cache_forget_drops_the_connection() {
        let dir = TempDir::new();
        let id = ConnectionId::new();
        let cache = EmployeeCache::default();
        write_export(&dir.0, id, &fixture());
        let first = cache.employees(&dir.0, id, &SyncScope::default()).unwrap();
        cache.forget(id);
        assert!(cache.lock().get(&id).is_none());
        let again = cache.employees(&dir.0, id, &SyncScope::default()).unwrap();
        assert!(!Arc::ptr_eq(&first, &again));
        assert_eq!(first, again);
    }

    #[test]
    fn cache_refuses_another_connections_export() {
        let dir = TempDir::new();
        write_export(&dir.0, ConnectionId::new(), &fixture());
        let error = EmployeeCache::default()
            .employees(&dir.0, ConnectionId::new(), &SyncScope::default())
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("holds the export of another connection"),
            "{error}"
        );
    }
}
