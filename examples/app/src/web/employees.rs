//! The imported employees of a connection, for the Manage page: the users of the
//! connection's directory mirror that its [`SyncScope`] selects, searched and paged by the
//! database ([`Mirror::find_users`], [`Mirror::count_users`]), one page in memory.
//!
//! The data path is typed from end to end: the mirror gives [`graph_client::User`]s, and
//! [`Employee`] is the 19 properties the page shows, read off each `User`.

use std::collections::HashSet;

use connection_store::ConnectionId;
use graph_client::{Group, ObjectId, User};

use super::scope::SyncScope;
use crate::mirror::{MAX_PAGE, MAX_SEARCH_TERMS, MAX_TERM_CHARS, Mirror, MirrorError};

/// The user properties the web sync keeps (its `$select`): what an e-mail signature
/// shows, plus `accountEnabled` and `userType` for the scope. All are Graph v1.0 `user`
/// properties returned in a list with `$select` (spec 8b) and tracked by `users/delta`.
/// `faxNumber` is left out: tenant-sim does not know it and answers 400 to a `$select`
/// that names it.
pub const USER_SELECT: &[&str] = &[
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
pub(crate) const PAGE_SIZE: u32 = 25;

/// The most groups the scope form lists (one mirror page); chosen groups beyond them are
/// listed too, so saving the form keeps them.
pub(crate) const GROUP_CHOICES: u32 = MAX_PAGE;

/// One imported user: the id and the 18 selected properties. Text fields are `None`
/// when the user has no (or a blank) value.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// `accountEnabled`; `None` when Graph did not send it.
    pub account_enabled: Option<bool>,
    /// `userType` (`Member` or `Guest`).
    pub user_type: Option<String>,
}

/// `Some` trimmed text, `None` for a missing or blank value.
fn text(value: Option<String>) -> Option<String> {
    value
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

impl Employee {
    /// The employee of a mirrored user (the mirror's users always carry their id).
    pub(crate) fn from_user(user: User) -> Self {
        Self {
            id: user.id.map(|id| id.as_str().to_owned()).unwrap_or_default(),
            display_name: text(user.display_name),
            given_name: text(user.given_name),
            surname: text(user.surname),
            job_title: text(user.job_title),
            department: text(user.department),
            company_name: text(user.company_name),
            business_phones: user
                .business_phones
                .into_iter()
                .filter_map(|phone| text(Some(phone)))
                .collect(),
            mobile_phone: text(user.mobile_phone),
            mail: text(user.mail),
            user_principal_name: text(user.user_principal_name),
            office_location: text(user.office_location),
            street_address: text(user.street_address),
            city: text(user.city),
            state: text(user.state),
            postal_code: text(user.postal_code),
            country: text(user.country),
            account_enabled: user.account_enabled,
            user_type: text(user.user_type),
        }
    }

    /// The name to show: `displayName`, else given name and surname, else the UPN, the
    /// mail address or the id (the mirror sorts by the same name).
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
}

/// A search of the employee list: the query string `q` and the 1-based `page`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EmployeeQuery {
    /// Whitespace-separated terms; each must occur (case-insensitive) in the name, mail,
    /// UPN, job title, department, company, office or city. Bounded as the mirror bounds
    /// it ([`bounded_search`]).
    pub q: String,
    /// The page, from 1; out of range values are clamped.
    pub page: u64,
}

/// `q` as the mirror searches it: at most [`MAX_SEARCH_TERMS`] terms of at most
/// [`MAX_TERM_CHARS`] characters, one space apart. The page shows this text back, so
/// what it says was searched is what was.
pub(crate) fn bounded_search(q: &str) -> String {
    q.split_whitespace()
        .take(MAX_SEARCH_TERMS)
        .map(|term| term.chars().take(MAX_TERM_CHARS).collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

/// One page of a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EmployeePage {
    /// The employees on this page (at most [`PAGE_SIZE`]).
    pub items: Vec<Employee>,
    /// How many employees match the search.
    pub total: u64,
    /// This page, in `1..=pages`.
    pub page: u64,
    /// The number of pages, at least 1.
    pub pages: u64,
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

/// The page `query.page` of connection `id`'s employees under `scope` that match
/// `query.q` (all of them when it is blank), in the mirror's order (name,
/// case-insensitive, then id). A page past the end is the last page; page 0 is page 1.
///
/// # Errors
/// The mirror's: a database failure, or a damaged user row.
pub(crate) async fn page(
    mirror: &Mirror,
    id: ConnectionId,
    scope: &SyncScope,
    query: &EmployeeQuery,
) -> Result<EmployeePage, MirrorError> {
    let users = scope.to_query().search(bounded_search(&query.q));
    let total = mirror.count_users(id, &users).await?;
    let size = u64::from(PAGE_SIZE);
    let pages = total.div_ceil(size).max(1);
    let page = query.page.clamp(1, pages);
    let items = mirror
        .find_users(id, &users, (page - 1) * size, PAGE_SIZE)
        .await?
        .into_iter()
        .map(Employee::from_user)
        .collect();
    Ok(EmployeePage {
        items,
        total,
        page,
        pages,
    })
}

/// How many employees connection `id` has under `scope` ("users imported").
///
/// # Errors
/// The mirror's.
pub(crate) async fn count(
    mirror: &Mirror,
    id: ConnectionId,
    scope: &SyncScope,
) -> Result<u64, MirrorError> {
    mirror.count_users(id, &scope.to_query()).await
}

/// The employee `user` of connection `id`, if the mirror has that user and `scope`
/// admits it.
///
/// # Errors
/// The mirror's.
pub(crate) async fn employee(
    mirror: &Mirror,
    id: ConnectionId,
    scope: &SyncScope,
    user: &ObjectId,
) -> Result<Option<Employee>, MirrorError> {
    let Some(found) = mirror.user(id, user).await? else {
        return Ok(None);
    };
    if !scope.admits_account(&found) {
        return Ok(None);
    }
    if !scope.groups.is_empty() && !is_member_of(mirror, id, &scope.groups, user).await? {
        return Ok(None);
    }
    Ok(Some(Employee::from_user(found)))
}

/// Whether `member` belongs to one of `groups`, directly or through nested groups: walks
/// up from the groups it is a direct member of, each group once (a cycle ends), so one
/// user costs a query per group above it, not a read of the whole scope.
async fn is_member_of(
    mirror: &Mirror,
    id: ConnectionId,
    groups: &[String],
    member: &ObjectId,
) -> Result<bool, MirrorError> {
    let wanted: HashSet<&str> = groups.iter().map(String::as_str).collect();
    let mut seen: HashSet<ObjectId> = HashSet::new();
    let mut todo = vec![member.clone()];
    while let Some(next) = todo.pop() {
        for group in mirror.groups_of(id, &next).await? {
            if wanted.contains(group.as_str()) {
                return Ok(true);
            }
            if seen.insert(group.clone()) {
                todo.push(group);
            }
        }
    }
    Ok(false)
}

/// The groups the scope form offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GroupChoices {
    /// (id, name), sorted by name (case-insensitive), then id.
    pub groups: Vec<(String, String)>,
    /// How many groups the mirror holds (more than listed in a very large tenant).
    pub total: u64,
}

/// A group as (id, name); a group without a `displayName` shows its mail address or id.
fn choice(group: Group) -> Option<(String, String)> {
    let id = group.id?.as_str().to_owned();
    let name = text(group.display_name)
        .or_else(|| text(group.mail))
        .unwrap_or_else(|| id.clone());
    Some((id, name))
}

/// Connection `id`'s groups for the scope form: the first [`GROUP_CHOICES`] of the
/// mirror, and the groups `scope` names that are beyond them.
///
/// # Errors
/// The mirror's.
pub(crate) async fn group_choices(
    mirror: &Mirror,
    id: ConnectionId,
    scope: &SyncScope,
) -> Result<GroupChoices, MirrorError> {
    let mut groups: Vec<(String, String)> = mirror
        .groups_page(id, 0, GROUP_CHOICES)
        .await?
        .into_iter()
        .filter_map(choice)
        .collect();
    let listed: HashSet<String> = groups.iter().map(|(id, _)| id.clone()).collect();
    for chosen in scope.groups.iter().filter(|g| !listed.contains(*g)) {
        if let Some(group) = mirror.group(id, &ObjectId::new(chosen.as_str())).await? {
            groups.extend(choice(group));
        }
    }
    groups.sort_by_cached_key(|(id, name)| (name.to_lowercase(), id.clone()));
    let total = mirror.state(id).await?.map_or(0, |state| state.groups);
    Ok(GroupChoices { groups, total })
}

/// Which of `groups` connection `id`'s mirror has.
///
/// # Errors
/// The mirror's.
pub(crate) async fn known_groups(
    mirror: &Mirror,
    id: ConnectionId,
    groups: &[String],
) -> Result<HashSet<String>, MirrorError> {
    let mut known = HashSet::new();
    for group in groups {
        if mirror
            .group(id, &ObjectId::new(group.as_str()))
            .await?
            .is_some()
        {
            known.insert(group.clone());
        }
    }
    Ok(known)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use connection_store::{AdminAccount, Cloud, ConnectionStore as _, NewConnection, OwnerId};
    use connection_store_sql::{EncryptionKey, KeyId, KeyRing, SqlStore};
    use graph_client::DeltaLink;
    use graph_client::sync::{Change, DirectorySink as _, MemberType, SyncKind, SyncLinks};
    use secrecy::SecretString;
    use serde_json::json;

    use super::*;

    fn user(value: serde_json::Value) -> User {
        serde_json::from_value(value).expect("a user")
    }

    fn full_user() -> User {
        user(json!({
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
        }))
    }

    #[test]
    fn user_select_has_the_sync_defaults_the_scope_and_the_signature_fields() {
        for name in graph_client::sync::DEFAULT_USER_SELECT {
            if *name != "id" {
                assert!(USER_SELECT.contains(name), "{name} missing");
            }
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
    fn employee_reads_every_selected_property_of_the_user() {
        let employee = Employee::from_user(full_user());
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
        let employee = Employee::from_user(user(json!({
            "id": "u9",
            "givenName": "  ",
            "surname": "Lee",
            "businessPhones": [" "],
            "mobilePhone": "+44 20 5555 0100",
            "city": "London",
            "country": "United Kingdom"
        })));
        assert_eq!(employee.display_name, None);
        assert_eq!(employee.given_name, None);
        assert_eq!(employee.account_enabled, None);
        assert!(employee.business_phones.is_empty());
        assert_eq!(employee.name(), "Lee");
        assert_eq!(employee.address_line(), "London, United Kingdom");
        assert_eq!(employee.phones(), ["+44 20 5555 0100"]);

        let bare = Employee::from_user(user(json!({"id": "u10"})));
        assert_eq!(bare.name(), "u10");
        assert_eq!(bare.address_line(), "");
        assert!(bare.phones().is_empty());

        let same = Employee::from_user(user(
            json!({"id": "u11", "businessPhones": ["1", "1"], "mobilePhone": "1", "postalCode": "1000"}),
        ));
        assert_eq!(same.phones(), ["1"]);
        assert_eq!(same.address_line(), "1000");
    }

    #[test]
    fn the_search_is_bounded_as_the_mirror_bounds_it() {
        assert_eq!(bounded_search("  Ada   LOVELACE "), "Ada LOVELACE");
        assert_eq!(bounded_search("   "), "");
        let many: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
        assert_eq!(
            bounded_search(&many.join(" ")).split(' ').count(),
            MAX_SEARCH_TERMS
        );
        let long = "x".repeat(MAX_TERM_CHARS * 3);
        assert_eq!(bounded_search(&long).chars().count(), MAX_TERM_CHARS);
    }

    // ------------------------------------------------------------------ on a mirror

    /// A `SQLite` store in a folder of its own (removed on drop), with one connection
    /// and its mirror.
    struct Fixture {
        dir: PathBuf,
        store: SqlStore,
        mirror: Mirror,
        id: ConnectionId,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    impl Fixture {
        async fn new() -> Self {
            let dir = std::env::temp_dir().join(format!(
                "webapp-employees-test-{}",
                uuid::Uuid::new_v4().simple()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let keys = KeyRing::new(
                KeyId::new("employees-test").unwrap(),
                EncryptionKey::from_bytes([7; 32]),
            );
            let store = SqlStore::sqlite(dir.join("store.sqlite"))
                .key_ring(keys)
                .open()
                .await
                .unwrap();
            let new = NewConnection {
                name: "Contoso".to_owned(),
                tenant: connection_store::TenantId::new(ConnectionId::new().to_string()),
                cloud: Cloud::Global,
                admin: AdminAccount {
                    object_id: "admin".to_owned(),
                    username: "admin@contoso.example".to_owned(),
                    display_name: None,
                },
                scopes: vec!["https://graph.microsoft.com/User.Read.All".to_owned()],
                refresh_token: SecretString::from("rt".to_owned()),
            };
            let id = store
                .create(&OwnerId::new("owner@example.com"), new)
                .await
                .unwrap()
                .id;
            let mirror = Mirror::open(&store).await.unwrap();
            Self {
                dir,
                store,
                mirror,
                id,
            }
        }

        /// One full import of `changes`.
        async fn import(&self, changes: &[Change]) {
            let mut sink = self.mirror.sink(&self.store, self.id);
            sink.begin(SyncKind::Full).await.unwrap();
            sink.apply(changes).await.unwrap();
            let links = SyncLinks::new(
                DeltaLink::new("https://graph.microsoft.com/v1.0/users/delta?$deltatoken=u"),
                DeltaLink::new("https://graph.microsoft.com/v1.0/groups/delta?$deltatoken=g"),
                vec!["id".to_owned()],
            );
            sink.commit(links).await.unwrap();
        }
    }

    fn upsert(id: &str, name: &str, enabled: bool, kind: &str) -> Change {
        Change::UserUpserted(Box::new(user(json!({
            "id": id, "displayName": name, "accountEnabled": enabled, "userType": kind,
            "companyName": "Contoso", "city": if id == "u1" { "Bellevue" } else { "Redmond" }
        }))))
    }

    fn group(id: &str, name: Option<&str>) -> Change {
        let mut group = Group::default();
        group.id = Some(ObjectId::new(id));
        group.display_name = name.map(str::to_owned);
        Change::GroupUpserted(Box::new(group))
    }

    fn member(group: &str, member: &str, member_type: MemberType) -> Change {
        Change::MemberAdded {
            group: ObjectId::new(group),
            member: ObjectId::new(member),
            member_type,
        }
    }

    /// Users u1..u6 (u5 disabled, u6 a guest). Groups: sales {u1, eu}, eu {u2, emea},
    /// emea {u3, sales (a cycle), c1 (a contact)}, ops {u4}, empty {}, guests {u6, u5},
    /// and one without a name.
    fn directory() -> Vec<Change> {
        use MemberType::{Group as G, OrgContact, User as U};
        let mut changes = vec![
            upsert("u1", "Carol", true, "Member"),
            upsert("u2", "alice", true, "Member"),
            upsert("u3", "Bob", true, "Member"),
            upsert("u4", "Dave", true, "Member"),
            upsert("u5", "Eve", false, "Member"),
            upsert("u6", "frank", true, "Guest"),
        ];
        for (id, name) in [
            ("sales", Some("Sales")),
            ("eu", Some("europe")),
            ("emea", Some("EMEA")),
            ("ops", Some("Operations")),
            ("empty", Some("Empty")),
            ("guests", Some("Guests and leavers")),
            ("zz-no-name", None),
        ] {
            changes.push(group(id, name));
        }
        for (g, m, t) in [
            ("sales", "u1", U),
            ("sales", "eu", G),
            ("eu", "u2", U),
            ("eu", "emea", G),
            ("emea", "u3", U),
            ("emea", "sales", G),
            ("emea", "c1", OrgContact),
            ("ops", "u4", U),
            ("guests", "u6", U),
            ("guests", "u5", U),
        ] {
            changes.push(member(g, m, t));
        }
        changes
    }

    fn scope(groups: &[&str], skip_disabled: bool, skip_guests: bool) -> SyncScope {
        SyncScope {
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            skip_disabled,
            skip_guests,
        }
    }

    async fn ids(fixture: &Fixture, scope: &SyncScope, q: &str) -> Vec<String> {
        let query = EmployeeQuery {
            q: q.to_owned(),
            page: 1,
        };
        let page = page(&fixture.mirror, fixture.id, scope, &query)
            .await
            .unwrap();
        assert_eq!(page.total, page.items.len() as u64);
        page.items.into_iter().map(|e| e.id).collect()
    }

    #[tokio::test]
    async fn the_scope_selects_by_group_transitively_and_skips_disabled_and_guests() {
        let fixture = Fixture::new().await;
        fixture.import(&directory()).await;
        // Sorted by name, case-insensitive: alice, Bob, Carol, Dave, Eve, frank.
        assert_eq!(
            ids(&fixture, &scope(&[], false, false), "").await,
            ["u2", "u3", "u1", "u4", "u5", "u6"]
        );
        assert_eq!(
            ids(&fixture, &SyncScope::default(), "").await,
            ["u2", "u3", "u1", "u4"]
        );
        assert_eq!(
            ids(&fixture, &scope(&[], true, false), "").await,
            ["u2", "u3", "u1", "u4", "u6"]
        );
        assert_eq!(
            ids(&fixture, &scope(&[], false, true), "").await,
            ["u2", "u3", "u1", "u4", "u5"]
        );
        // sales → eu → emea → sales (a cycle); the contact c1 is not a user.
        for start in ["sales", "eu", "emea"] {
            assert_eq!(
                ids(&fixture, &scope(&[start], true, true), "").await,
                ["u2", "u3", "u1"],
                "from {start}"
            );
        }
        assert_eq!(
            ids(&fixture, &scope(&["ops", "emea"], true, true), "").await,
            ["u2", "u3", "u1", "u4"]
        );
        assert!(
            ids(&fixture, &scope(&["guests"], true, true), "")
                .await
                .is_empty()
        );
        assert_eq!(
            ids(&fixture, &scope(&["guests"], false, false), "").await,
            ["u5", "u6"]
        );
        assert!(
            ids(&fixture, &scope(&["empty"], false, false), "")
                .await
                .is_empty()
        );
        assert!(
            ids(&fixture, &scope(&["deleted-group"], false, false), "")
                .await
                .is_empty()
        );
        let all = SyncScope::default();
        assert_eq!(count(&fixture.mirror, fixture.id, &all).await.unwrap(), 4);
    }

    #[tokio::test]
    async fn one_employee_is_found_only_in_scope_as_the_list_finds_it() {
        let fixture = Fixture::new().await;
        fixture.import(&directory()).await;
        let (mirror, id) = (&fixture.mirror, fixture.id);
        for scope in [
            SyncScope::default(),
            scope(&[], false, false),
            scope(&["sales"], true, true),
            scope(&["ops"], true, true),
            scope(&["guests"], false, true),
            scope(&["eu", "guests"], false, false),
            scope(&["empty"], false, false),
        ] {
            let listed = ids(&fixture, &scope, "").await;
            for user in ["u1", "u2", "u3", "u4", "u5", "u6", "c1", "nobody"] {
                let found = employee(mirror, id, &scope, &ObjectId::new(user))
                    .await
                    .unwrap();
                assert_eq!(
                    found.is_some(),
                    listed.iter().any(|l| l == user),
                    "{user} in {scope:?}"
                );
            }
        }
        let carol = employee(mirror, id, &SyncScope::default(), &ObjectId::new("u1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(carol.name(), "Carol");
    }

    #[tokio::test]
    async fn search_terms_must_all_match_and_paging_counts_and_clamps() {
        let fixture = Fixture::new().await;
        fixture.import(&directory()).await;
        let all = scope(&[], false, false);
        assert_eq!(ids(&fixture, &all, "CONTOSO").await.len(), 6);
        assert_eq!(ids(&fixture, &all, "carol").await, ["u1"]);
        assert_eq!(ids(&fixture, &all, "  contoso   BELLEVUE ").await, ["u1"]);
        assert!(ids(&fixture, &all, "bellevue bob").await.is_empty());
        assert!(ids(&fixture, &all, "zz-nobody").await.is_empty());

        let mut many: Vec<Change> = (0..60)
            .map(|i| {
                upsert(
                    &format!("p{i:03}"),
                    &format!("Person {i:03}"),
                    true,
                    "Member",
                )
            })
            .collect();
        many.push(upsert("u1", "Carol", true, "Member"));
        fixture.import(&many).await;
        let (mirror, id) = (&fixture.mirror, fixture.id);
        let at = |page_number: u64, q: &str| {
            let query = EmployeeQuery {
                q: q.to_owned(),
                page: page_number,
            };
            let scope = SyncScope::default();
            async move { page(mirror, id, &scope, &query).await.unwrap() }
        };
        let first = at(1, "person").await;
        assert_eq!((first.total, first.page, first.pages), (60, 1, 3));
        assert_eq!(first.items.len(), 25);
        assert_eq!(first.items[0].id, "p000");
        assert!(!first.has_prev() && first.has_next());
        let last = at(3, "person").await;
        assert_eq!((last.page, last.items.len()), (3, 10));
        assert_eq!(last.items[0].id, "p050");
        assert!(last.has_prev() && !last.has_next());
        assert_eq!(at(99, "person").await, last);
        assert_eq!(at(0, "person").await, first);
        // Two terms: "person" everywhere, "05" in 005 and 050..=059.
        let narrowed = at(7, "person 05").await;
        assert_eq!((narrowed.total, narrowed.page, narrowed.pages), (11, 1, 1));
        assert_eq!(narrowed.items[0].id, "p005");
        let none = at(1, "nobody-at-all").await;
        assert_eq!((none.total, none.page, none.pages), (0, 1, 1));
        assert!(none.items.is_empty() && !none.has_prev() && !none.has_next());
        // The full import above removed the groups: every scope of groups is empty.
        assert!(
            ids(&fixture, &scope(&["sales"], false, false), "")
                .await
                .is_empty()
        );
    }

    #[tokio::test]
    async fn group_choices_are_sorted_by_name_and_keep_the_chosen_ones() {
        let fixture = Fixture::new().await;
        let (mirror, id) = (&fixture.mirror, fixture.id);
        assert_eq!(
            group_choices(mirror, id, &SyncScope::default())
                .await
                .unwrap(),
            GroupChoices::default(),
            "nothing before the first sync"
        );
        fixture.import(&directory()).await;
        let choices = group_choices(mirror, id, &SyncScope::default())
            .await
            .unwrap();
        let names: Vec<&str> = choices.groups.iter().map(|(_, n)| n.as_str()).collect();
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
        assert_eq!(choices.groups[2], ("eu".to_owned(), "europe".to_owned()));
        assert_eq!(choices.total, 7);

        let known = known_groups(mirror, id, &["ops".to_owned(), "gone".to_owned()])
            .await
            .unwrap();
        assert_eq!(known, HashSet::from(["ops".to_owned()]));
    }
}
