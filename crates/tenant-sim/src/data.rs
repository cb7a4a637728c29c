//! The simulated directory: users, groups, memberships, and the compact change log that
//! delta rounds are answered from.
//!
//! Objects live in slots whose index never changes (a deleted object leaves an empty
//! slot and keeps its id in a parallel vector), so paging cursors and the change log can
//! refer to objects by index. Every change takes the next sequence number; an object
//! remembers the sequence number of its last change, deletions leave a tombstone and
//! membership changes leave one small log entry each, so a delta round is "everything
//! whose number is above the token's" without copying the directory.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use crate::auth::{Account, AccountDirectory};
use crate::roles::DirectoryRole;

/// Text that is usually one of the generator's fixed words (no allocation) but may be
/// replaced through the control API.
pub(crate) type Text = Cow<'static, str>;

/// Whether a user is a member of the tenant or a guest (B2B, `#EXT#`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum UserType {
    /// A member of the tenant.
    Member,
    /// An invited external user (`userType` `Guest`, UPN with `#EXT#`).
    Guest,
}

impl UserType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Member => "Member",
            Self::Guest => "Guest",
        }
    }
}

/// A reference to a member of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Member {
    User(u32),
    Group(u32),
}

/// How an object left the directory; Graph's `@removed.reason` ([spec 9]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Deletion {
    /// Soft-deleted (restorable from deleted items): `@removed: {"reason": "changed"}`.
    Soft,
    /// Permanently deleted: `@removed: {"reason": "deleted"}`.
    Permanent,
}

impl Deletion {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Soft => "changed",
            Self::Permanent => "deleted",
        }
    }
}

#[derive(Debug, Clone)]
#[expect(clippy::struct_field_names, reason = "Graph's property names")]
pub(crate) struct User {
    pub display_name: Text,
    pub given_name: Option<Text>,
    pub surname: Option<Text>,
    pub user_principal_name: Text,
    pub mail: Option<Text>,
    pub mail_nickname: Text,
    pub job_title: Option<Text>,
    pub department: Option<Text>,
    pub office_location: Option<Text>,
    pub business_phone: Option<Text>,
    pub mobile_phone: Option<Text>,
    pub street_address: Option<Text>,
    pub city: Option<Text>,
    pub state: Option<Text>,
    pub postal_code: Option<Text>,
    pub country: Option<Text>,
    pub usage_location: Option<Text>,
    pub employee_id: Option<Text>,
    pub company_name: Option<Text>,
    pub preferred_language: Option<Text>,
    pub user_type: UserType,
    pub account_enabled: bool,
    pub manager: Option<u32>,
    /// Seed of the generated photo; `None` = no photo (404).
    pub photo: Option<u32>,
    /// Unix seconds.
    pub created: i64,
    pub last_sign_in: Option<i64>,
    /// Sequence number of the last change.
    pub version: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub display_name: Text,
    pub description: Option<Text>,
    pub mail_nickname: Text,
    pub unified: bool,
    pub security_enabled: bool,
    pub mail_enabled: bool,
    pub visibility: Option<Text>,
    pub created: i64,
    /// Sorted, no duplicates.
    pub members: Vec<Member>,
    pub version: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    User,
    Group,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Tombstone {
    pub seq: u64,
    pub kind: Kind,
    pub slot: u32,
    pub deletion: Deletion,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct MemberChange {
    pub seq: u64,
    pub group: u32,
    pub member: Member,
    pub added: bool,
}

/// Sizes and seed of a generated tenant.
#[derive(Debug, Clone)]
pub(crate) struct GenerateOptions {
    pub users: usize,
    pub groups: usize,
    pub seed: u64,
    pub tenant_domain: String,
}

pub(crate) struct Directory {
    pub tenant_domain: String,
    pub users: Vec<Option<User>>,
    pub user_ids: Vec<Uuid>,
    pub groups: Vec<Option<Group>>,
    pub group_ids: Vec<Uuid>,
    user_by_id: HashMap<Uuid, u32>,
    /// Lower-case UPN → slot, ordered: `startsWith(userPrincipalName, ..)` filters and
    /// their counts read prefix ranges of it instead of scanning every user.
    user_by_upn: BTreeMap<String, u32>,
    group_by_id: HashMap<Uuid, u32>,
    /// The last sequence number handed out.
    pub seq: u64,
    /// Sorted by `seq`.
    pub tombstones: Vec<Tombstone>,
    /// Sorted by `seq`.
    pub member_log: Vec<MemberChange>,
    /// Delta and skip tokens of rounds that ended before this are expired (400
    /// `syncStateNotFound`).
    pub expired_before: u64,
    /// Tokens of rounds that ended before this must resync (410 Gone).
    pub resync_before: u64,
    /// Which user properties changed at which sequence number (a bit per property of
    /// `graph::USER_PROPERTIES`; all bits for a new user), for `Prefer: return=minimal`.
    pub user_property_changes: HashMap<u32, Vec<(u64, u64)>>,
    /// The directory roles each user holds (users without roles have no entry).
    roles: BTreeMap<u32, Vec<DirectoryRole>>,
    /// Soft-deleted objects, restorable: the object as it was and the groups it was a
    /// member of (Microsoft's deleted items).
    deleted_users: HashMap<u32, (User, Vec<u32>)>,
    deleted_groups: HashMap<u32, (Group, Vec<u32>)>,
    rng: StdRng,
    sorted_users: std::sync::Mutex<Option<(u64, Arc<Vec<u32>>)>>,
}

// Word lists for realistic names; fixed so that a seed always gives the same tenant.
const GIVEN_NAMES: &[&str] = &[
    "Adele",
    "Alex",
    "Allan",
    "Ama",
    "Ben",
    "Bianca",
    "Carlos",
    "Chen",
    "Christie",
    "Debra",
    "Diego",
    "Elena",
    "Emily",
    "Enrico",
    "Fatima",
    "Grady",
    "Hana",
    "Henrietta",
    "Irvin",
    "Isaiah",
    "Jakob",
    "Johanna",
    "Joni",
    "Jun",
    "Kenji",
    "Lee",
    "Lidia",
    "Lynne",
    "Maria",
    "Megan",
    "Miriam",
    "Nestor",
    "Nora",
    "Olga",
    "Oscar",
    "Patti",
    "Pradeep",
    "Priya",
    "Rafael",
    "Raul",
    "Sara",
    "Sofia",
    "Tariq",
    "Thomas",
    "Uma",
    "Victor",
    "Wei",
    "Yuki",
    "Zainab",
    "Zoe",
];
const SURNAMES: &[&str] = &[
    "Adams",
    "Bowen",
    "Brown",
    "Cho",
    "Davis",
    "Diaz",
    "Fernandez",
    "Garcia",
    "Gonzalez",
    "Grant",
    "Hassan",
    "Holt",
    "Ito",
    "Jensen",
    "Johnson",
    "Khan",
    "Kim",
    "Kowalski",
    "Lee",
    "Lopez",
    "Martin",
    "Mendes",
    "Miller",
    "Moreno",
    "Nakamura",
    "Nguyen",
    "Novak",
    "Okafor",
    "Patel",
    "Pisani",
    "Price",
    "Ramos",
    "Rossi",
    "Schmidt",
    "Shah",
    "Silva",
    "Singh",
    "Smith",
    "Sorensen",
    "Suzuki",
    "Tanaka",
    "Taylor",
    "Vance",
    "Wagner",
    "Ward",
    "Wilber",
    "Williams",
    "Wong",
    "Young",
    "Zhang",
];
const DEPARTMENTS: &[(&str, &[&str])] = &[
    (
        "Sales",
        &["Account Executive", "Sales Manager", "Sales Representative"],
    ),
    (
        "Marketing",
        &[
            "Marketing Specialist",
            "Product Marketing Manager",
            "Brand Manager",
        ],
    ),
    (
        "Engineering",
        &[
            "Software Engineer",
            "Senior Software Engineer",
            "Engineering Manager",
            "Site Reliability Engineer",
        ],
    ),
    (
        "Finance",
        &["Accountant", "Financial Analyst", "Finance Manager"],
    ),
    (
        "Human Resources",
        &["HR Generalist", "Recruiter", "HR Manager"],
    ),
    ("Legal", &["Paralegal", "Corporate Counsel"]),
    (
        "Operations",
        &[
            "Operations Analyst",
            "Logistics Coordinator",
            "Operations Manager",
        ],
    ),
    (
        "Research",
        &["Research Scientist", "Data Scientist", "Lab Technician"],
    ),
    ("Retail", &["Retail Manager", "Store Associate"]),
    ("Support", &["Support Engineer", "Customer Success Manager"]),
    (
        "IT",
        &["IT Administrator", "Systems Engineer", "Help Desk Analyst"],
    ),
    ("Executive", &["Chief of Staff", "Vice President"]),
];
/// (office location prefix, city, state, postal code, country, usage location, phone prefix)
const OFFICES: &[(&str, &str, &str, &str, &str, &str, &str)] = &[
    (
        "18",
        "Redmond",
        "WA",
        "98052",
        "United States",
        "US",
        "+1 425 555 ",
    ),
    (
        "20",
        "Seattle",
        "WA",
        "98101",
        "United States",
        "US",
        "+1 206 555 ",
    ),
    (
        "12",
        "New York",
        "NY",
        "10001",
        "United States",
        "US",
        "+1 212 555 ",
    ),
    (
        "4",
        "London",
        "England",
        "EC1A 1BB",
        "United Kingdom",
        "GB",
        "+44 20 7946 ",
    ),
    (
        "7",
        "Berlin",
        "Berlin",
        "10115",
        "Germany",
        "DE",
        "+49 30 901820 ",
    ),
    (
        "3",
        "Tokyo",
        "Tokyo",
        "100-0001",
        "Japan",
        "JP",
        "+81 3 5555 ",
    ),
    (
        "9",
        "Sydney",
        "NSW",
        "2000",
        "Australia",
        "AU",
        "+61 2 5550 ",
    ),
    (
        "5",
        "Bengaluru",
        "Karnataka",
        "560001",
        "India",
        "IN",
        "+91 80 5555 ",
    ),
];
const STREETS: &[&str] = &[
    "Microsoft Way",
    "Pine Street",
    "Main Street",
    "Oak Avenue",
    "Harbour Road",
    "Station Road",
    "Market Street",
    "Park Lane",
    "Lake Shore Drive",
    "Hill Road",
];
const LANGUAGES: &[&str] = &["en-US", "en-GB", "de-DE", "ja-JP", "en-AU", "en-IN"];
const GUEST_DOMAINS: &[&str] = &["gmail.com", "outlook.com", "fabrikam.com", "litware.com"];
const TEAM_WORDS: &[&str] = &[
    "Mark 8",
    "Falcon",
    "Northwind",
    "Contoso Retail",
    "Digital Initiative",
    "Video Production",
    "Tailspin",
    "Atlas",
    "Helios",
    "Orion",
    "Quarterly Planning",
    "Onboarding",
    "Security Council",
    "Design Review",
    "Customer Advisory",
    "Field Readiness",
    "Hackathon",
    "Data Platform",
];

/// 2021-01-01T00:00:00Z; generated creation dates fall after it.
const EPOCH_2021: i64 = 1_609_459_200;
/// Largest number of users in a generated department group before the rest spill over.
const MEMBERS_PER_RANDOM_GROUP: (usize, usize) = (3, 40);

fn random_uuid(rng: &mut StdRng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.random()).into_uuid()
}

fn office(
    i: usize,
) -> &'static (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
) {
    &OFFICES[i % OFFICES.len()]
}

impl Directory {
    /// Builds a seeded tenant: user 0 is the Global Administrator; about 4 % guests,
    /// 3 % disabled accounts, a manager tree with fan-out 7, a third of users with photos;
    /// group 0 is "All Company" (every member user), then one security group per
    /// department (large groups), then Microsoft 365 and security groups, every third
    /// of which nests one or two earlier groups.
    #[expect(clippy::too_many_lines, reason = "one generator, read top to bottom")]
    pub(crate) fn generate(options: &GenerateOptions) -> Self {
        let mut rng = StdRng::seed_from_u64(options.seed);
        let domain = options.tenant_domain.clone();
        let user_count = options.users.max(1);
        let mut users = Vec::with_capacity(user_count);
        let mut user_ids = Vec::with_capacity(user_count);
        let mut user_by_upn = BTreeMap::new();
        let mut name_counts: HashMap<(&str, &str), u32> = HashMap::new();
        let mut departments_of: Vec<u8> = Vec::with_capacity(user_count);
        for index in 0..user_count {
            let id = random_uuid(&mut rng);
            let given = GIVEN_NAMES[rng.random_range(0..GIVEN_NAMES.len())];
            let surname = SURNAMES[rng.random_range(0..SURNAMES.len())];
            let department = rng.random_range(0..DEPARTMENTS.len());
            let (department_name, titles) = DEPARTMENTS[department];
            let office_index = rng.random_range(0..OFFICES.len());
            let (floor, city, state, postal, country, usage, phone_prefix) = *office(office_index);
            let is_admin = index == 0;
            let guest = !is_admin && index % 25 == 7;
            // given.surname, then given.surname2, 3, ...: a counter per name keeps this
            // O(1) (names repeat every ~2,500 users); bases never end in a digit, so
            // numbered names cannot collide with plain ones.
            let repeat = name_counts.entry((given, surname)).or_insert(0u32);
            *repeat += 1;
            let nickname = if *repeat == 1 {
                format!("{}.{}", given.to_lowercase(), surname.to_lowercase())
            } else {
                format!(
                    "{}.{}{}",
                    given.to_lowercase(),
                    surname.to_lowercase(),
                    repeat
                )
            };
            let (display_name, upn, mail, mail_nickname, user_type): (
                Text,
                Text,
                Text,
                Text,
                UserType,
            ) = if is_admin {
                (
                    "MOD Administrator".into(),
                    format!("admin@{domain}").into(),
                    format!("admin@{domain}").into(),
                    "admin".into(),
                    UserType::Member,
                )
            } else if guest {
                let external = GUEST_DOMAINS[rng.random_range(0..GUEST_DOMAINS.len())];
                let mail = format!("{nickname}@{external}");
                let escaped = format!("{nickname}_{external}#EXT#");
                (
                    format!("{given} {surname} (Guest)").into(),
                    format!("{escaped}@{domain}").into(),
                    mail.into(),
                    escaped.into(),
                    UserType::Guest,
                )
            } else {
                (
                    format!("{given} {surname}").into(),
                    format!("{nickname}@{domain}").into(),
                    format!("{nickname}@{domain}").into(),
                    nickname.clone().into(),
                    UserType::Member,
                )
            };
            let member = user_type == UserType::Member;
            let phone_tail = 1000 + (index % 9000);
            let user = User {
                display_name,
                given_name: Some(Cow::Borrowed(given)),
                surname: Some(Cow::Borrowed(surname)),
                user_principal_name: upn,
                mail: Some(mail),
                mail_nickname,
                job_title: if is_admin {
                    Some("IT Admin".into())
                } else if member {
                    Some(Cow::Borrowed(titles[rng.random_range(0..titles.len())]))
                } else {
                    None
                },
                department: if is_admin {
                    Some("IT".into())
                } else if member {
                    Some(Cow::Borrowed(department_name))
                } else {
                    None
                },
                office_location: member
                    .then(|| format!("{floor}/{}", 1000 + rng.random_range(0..2000)).into()),
                business_phone: member.then(|| format!("{phone_prefix}{phone_tail:04}").into()),
                mobile_phone: (member && rng.random_bool(0.6))
                    .then(|| format!("{phone_prefix}{:04}", rng.random_range(1000..10_000)).into()),
                street_address: member.then(|| {
                    format!(
                        "{} {}",
                        rng.random_range(1..9999),
                        STREETS[rng.random_range(0..STREETS.len())]
                    )
                    .into()
                }),
                city: member.then_some(Cow::Borrowed(city)),
                state: member.then_some(Cow::Borrowed(state)),
                postal_code: member.then_some(Cow::Borrowed(postal)),
                country: member.then_some(Cow::Borrowed(country)),
                usage_location: Some(Cow::Borrowed(usage)),
                employee_id: member.then(|| format!("{:06}", 100_000 + index).into()),
                company_name: member.then_some(Cow::Borrowed("Contoso")),
                preferred_language: Some(Cow::Borrowed(LANGUAGES[office_index % LANGUAGES.len()])),
                user_type,
                account_enabled: is_admin || index % 33 != 5,
                // A tree with fan-out 7 among earlier members: depth ~ log7(n).
                manager: (index > 0 && member).then(|| {
                    let mut manager = (index - 1) / 7;
                    // Guests manage nobody: walk up to the nearest member.
                    while manager > 0 && manager % 25 == 7 {
                        manager = (manager - 1) / 7;
                    }
                    u32::try_from(manager).unwrap_or(0)
                }),
                photo: (index % 3 == 0).then(|| rng.random()),
                created: EPOCH_2021 + rng.random_range(0..150_000_000),
                last_sign_in: rng
                    .random_bool(0.9)
                    .then(|| EPOCH_2021 + 150_000_000 + rng.random_range(0..20_000_000)),
                version: 0,
            };
            user_by_upn.insert(
                user.user_principal_name.to_lowercase(),
                u32::try_from(index).unwrap_or(u32::MAX),
            );
            departments_of.push(u8::try_from(department).unwrap_or(0));
            users.push(Some(user));
            user_ids.push(id);
        }
        let user_by_id = user_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, slot(i)))
            .collect();

        let group_count = options.groups;
        let mut groups: Vec<Option<Group>> = Vec::with_capacity(group_count);
        let mut group_ids = Vec::with_capacity(group_count);
        let mut taken_group_nicknames: HashSet<String> = HashSet::new();
        for g in 0..group_count {
            let id = random_uuid(&mut rng);
            let created = EPOCH_2021 + rng.random_range(0..150_000_000);
            let department_groups = DEPARTMENTS.len();
            let group = if g == 0 {
                let members = (0..user_count)
                    .filter(|i| {
                        users[*i]
                            .as_ref()
                            .is_some_and(|u| u.user_type == UserType::Member)
                    })
                    .map(|i| Member::User(slot(i)))
                    .collect();
                Group {
                    display_name: "All Company".into(),
                    description: Some(
                        "This is the default group for everyone in the network".into(),
                    ),
                    mail_nickname: "allcompany".into(),
                    unified: true,
                    security_enabled: false,
                    mail_enabled: true,
                    visibility: Some("Public".into()),
                    created,
                    members,
                    version: 0,
                }
            } else if g <= department_groups {
                let department = g - 1;
                let (name, _) = DEPARTMENTS[department];
                let members = (0..user_count)
                    .filter(|i| {
                        usize::from(departments_of[*i]) == department
                            && users[*i]
                                .as_ref()
                                .is_some_and(|u| u.user_type == UserType::Member)
                    })
                    .map(|i| Member::User(slot(i)))
                    .collect();
                let nickname = format!("sg-{}", name.replace(' ', "-"));
                Group {
                    display_name: format!("sg-{name}").into(),
                    description: Some(format!("All {name} personnel").into()),
                    mail_nickname: nickname.into(),
                    unified: false,
                    security_enabled: true,
                    mail_enabled: false,
                    visibility: None,
                    created,
                    members,
                    version: 0,
                }
            } else {
                let word = TEAM_WORDS[g % TEAM_WORDS.len()];
                let unified = g % 2 == 0;
                let round = g / TEAM_WORDS.len();
                let name = if round == 0 {
                    word.to_string()
                } else {
                    format!("{word} {}", round + 1)
                };
                let mut nickname: String =
                    name.chars().filter(char::is_ascii_alphanumeric).collect();
                while !taken_group_nicknames.insert(nickname.clone()) {
                    nickname.push('x');
                }
                let size = rng
                    .random_range(MEMBERS_PER_RANDOM_GROUP.0..=MEMBERS_PER_RANDOM_GROUP.1)
                    .min(user_count);
                let mut members: Vec<Member> = (0..size)
                    .map(|_| Member::User(slot(rng.random_range(0..user_count))))
                    .collect();
                // Every third such group, from the first, nests one or two earlier groups.
                if (g - department_groups) % 3 == 1 {
                    for _ in 0..rng.random_range(1..=2) {
                        members.push(Member::Group(slot(rng.random_range(1..g))));
                    }
                }
                members.sort_unstable();
                members.dedup();
                Group {
                    display_name: if unified {
                        format!("{name} Team").into()
                    } else {
                        format!("sg-{name}").into()
                    },
                    description: Some(format!("{name} members").into()),
                    mail_nickname: nickname.into(),
                    unified,
                    security_enabled: !unified,
                    mail_enabled: unified,
                    visibility: unified.then_some(Cow::Borrowed(if g % 3 == 0 {
                        "Private"
                    } else {
                        "Public"
                    })),
                    created,
                    members,
                    version: 0,
                }
            };
            groups.push(Some(group));
            group_ids.push(id);
        }
        let group_by_id = group_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, slot(i)))
            .collect();
        Self {
            tenant_domain: domain,
            users,
            user_ids,
            groups,
            group_ids,
            user_by_id,
            user_by_upn,
            group_by_id,
            seq: 1,
            tombstones: Vec::new(),
            member_log: Vec::new(),
            expired_before: 0,
            resync_before: 0,
            user_property_changes: HashMap::new(),
            // User 0, "MOD Administrator", is the tenant's Global Administrator.
            roles: BTreeMap::from([(0, vec![DirectoryRole::GlobalAdministrator])]),
            deleted_users: HashMap::new(),
            deleted_groups: HashMap::new(),
            rng,
            sorted_users: std::sync::Mutex::new(None),
        }
    }

    /// The directory roles a user holds, in template order.
    pub(crate) fn roles_of(&self, slot: u32) -> &[DirectoryRole] {
        self.roles.get(&slot).map_or(&[], Vec::as_slice)
    }

    /// Whether a user holds a role that may grant tenant-wide consent
    /// ([`DirectoryRole::can_grant_tenant_wide_consent`]).
    pub(crate) fn can_consent(&self, slot: u32) -> bool {
        self.roles_of(slot)
            .iter()
            .any(|role| role.can_grant_tenant_wide_consent())
    }

    /// Gives a user a role; returns whether the user did not hold it yet.
    pub(crate) fn assign_role(&mut self, slot: u32, role: DirectoryRole) -> bool {
        let roles = self.roles.entry(slot).or_default();
        if roles.contains(&role) {
            return false;
        }
        roles.push(role);
        roles.sort();
        true
    }

    /// Takes a role from a user; returns whether the user held it.
    pub(crate) fn remove_role(&mut self, slot: u32, role: DirectoryRole) -> bool {
        let Some(roles) = self.roles.get_mut(&slot) else {
            return false;
        };
        let before = roles.len();
        roles.retain(|r| *r != role);
        let removed = roles.len() != before;
        if roles.is_empty() {
            self.roles.remove(&slot);
        }
        removed
    }

    pub(crate) fn user(&self, slot: u32) -> Option<&User> {
        self.users.get(slot as usize).and_then(Option::as_ref)
    }

    pub(crate) fn group(&self, slot: u32) -> Option<&Group> {
        self.groups.get(slot as usize).and_then(Option::as_ref)
    }

    /// A live user by object id or user principal name (case-insensitive).
    pub(crate) fn find_user(&self, id_or_upn: &str) -> Option<u32> {
        let slot = match Uuid::parse_str(id_or_upn) {
            Ok(id) => self.user_by_id.get(&id).copied(),
            Err(_) => self.user_by_upn.get(&id_or_upn.to_lowercase()).copied(),
        }?;
        self.user(slot).map(|_| slot)
    }

    /// The live users whose lower-case UPN starts with `prefix` (lower-case), through
    /// the UPN index.
    pub(crate) fn users_with_upn_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = u32> + 'a {
        self.user_by_upn
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(upn, _)| upn.starts_with(prefix))
            .map(|(_, slot)| *slot)
            .filter(|slot| self.user(*slot).is_some())
    }

    pub(crate) fn find_group(&self, id: &str) -> Option<u32> {
        let slot = self.group_by_id.get(&Uuid::parse_str(id).ok()?).copied()?;
        self.group(slot).map(|_| slot)
    }

    /// A live user or group by id.
    pub(crate) fn find_object(&self, id: &str) -> Option<Member> {
        self.find_user(id)
            .map(Member::User)
            .or_else(|| self.find_group(id).map(Member::Group))
    }

    pub(crate) fn member_id(&self, member: Member) -> Uuid {
        match member {
            Member::User(s) => self.user_ids[s as usize],
            Member::Group(s) => self.group_ids[s as usize],
        }
    }

    /// Live users ordered by display name then slot, cached until the next change.
    pub(crate) fn users_by_display_name(&self) -> Arc<Vec<u32>> {
        let mut cache = self
            .sorted_users
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((seq, sorted)) = cache.as_ref()
            && *seq == self.seq
        {
            return Arc::clone(sorted);
        }
        let mut slots: Vec<u32> = (0..self.users.len())
            .filter(|i| self.users[*i].is_some())
            .map(slot)
            .collect();
        slots.sort_by_cached_key(|s| (self.user(*s).map(|u| u.display_name.to_lowercase()), *s));
        let sorted = Arc::new(slots);
        *cache = Some((self.seq, Arc::clone(&sorted)));
        sorted
    }

    /// The direct groups a user or group is a member of, by slot order.
    pub(crate) fn member_of(&self, member: Member) -> Vec<u32> {
        (0..self.groups.len())
            .filter(|g| {
                self.groups[*g]
                    .as_ref()
                    .is_some_and(|group| group.members.binary_search(&member).is_ok())
            })
            .map(slot)
            .collect()
    }

    /// Every group a user or group is in, directly or through nesting (each once).
    pub(crate) fn transitive_member_of(&self, member: Member) -> Vec<u32> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut frontier = vec![member];
        while let Some(next) = frontier.pop() {
            for group in self.member_of(next) {
                if seen.insert(group) {
                    out.push(group);
                    frontier.push(Member::Group(group));
                }
            }
        }
        out
    }

    /// Every user and group below a group, breadth first, each once (nesting cycles are
    /// cut).
    pub(crate) fn transitive_members(&self, group: u32) -> Vec<Member> {
        let mut seen: HashSet<Member> = HashSet::new();
        seen.insert(Member::Group(group));
        let mut out = Vec::new();
        let mut queue = std::collections::VecDeque::from([group]);
        while let Some(next) = queue.pop_front() {
            let Some(g) = self.group(next) else { continue };
            for member in &g.members {
                if seen.insert(*member) {
                    out.push(*member);
                    if let Member::Group(inner) = member {
                        queue.push_back(*inner);
                    }
                }
            }
        }
        out
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    // ---- changes (control API) ----

    pub(crate) fn random_id(&mut self) -> Uuid {
        random_uuid(&mut self.rng)
    }

    /// Inserts a user; `None` if the UPN is taken.
    pub(crate) fn insert_user(&mut self, id: Uuid, mut user: User) -> Option<u32> {
        let key = user.user_principal_name.to_lowercase();
        if self.user_by_upn.contains_key(&key) {
            return None;
        }
        user.version = self.next_seq();
        let created = (user.version, u64::MAX);
        let slot = slot(self.users.len());
        self.users.push(Some(user));
        self.user_ids.push(id);
        self.user_by_id.insert(id, slot);
        self.user_by_upn.insert(key, slot);
        self.user_property_changes.insert(slot, vec![created]);
        Some(slot)
    }

    /// Applies `change` to a user and records the change; `false` if the new UPN is taken.
    pub(crate) fn update_user(&mut self, slot: u32, change: impl FnOnce(&mut User)) -> bool {
        let Some(user) = self.users.get_mut(slot as usize).and_then(Option::as_mut) else {
            return false;
        };
        let old_upn = user.user_principal_name.to_lowercase();
        let mut updated = user.clone();
        change(&mut updated);
        let new_upn = updated.user_principal_name.to_lowercase();
        if new_upn != old_upn && self.user_by_upn.contains_key(&new_upn) {
            return false;
        }
        updated.version = self.next_seq();
        self.user_by_upn.remove(&old_upn);
        self.user_by_upn.insert(new_upn, slot);
        self.users[slot as usize] = Some(updated);
        true
    }

    pub(crate) fn delete_user(&mut self, slot: u32, deletion: Deletion) {
        let Some(user) = self.users.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        self.user_by_upn
            .remove(&user.user_principal_name.to_lowercase());
        let member = Member::User(slot);
        let member_of: Vec<u32> = (0..self.groups.len())
            .map(slot_u32)
            .filter(|g| self.remove_member(*g, member))
            .collect();
        if deletion == Deletion::Soft {
            self.deleted_users.insert(slot, (user, member_of));
        }
        // Direct reports lose their manager: a change to each of them.
        let reports: Vec<u32> = (0..self.users.len())
            .filter(|i| {
                self.users[*i]
                    .as_ref()
                    .is_some_and(|u| u.manager == Some(slot))
            })
            .map(slot_u32)
            .collect();
        for report in reports {
            self.update_user(report, |u| u.manager = None);
        }
        let seq = self.next_seq();
        self.tombstones.push(Tombstone {
            seq,
            kind: Kind::User,
            slot,
            deletion,
        });
    }

    pub(crate) fn insert_group(&mut self, id: Uuid, mut group: Group) -> u32 {
        group.version = self.next_seq();
        group.members.clear();
        let slot = slot(self.groups.len());
        self.groups.push(Some(group));
        self.group_ids.push(id);
        self.group_by_id.insert(id, slot);
        slot
    }

    /// Deletes a group. Microsoft deletes security groups permanently, whatever was asked
    /// (only Microsoft 365 groups go to deleted items: "This isn't applicable to security
    /// groups, which are deleted permanently",
    /// <https://learn.microsoft.com/en-us/graph/api/directory-deleteditems-restore>).
    pub(crate) fn delete_group(&mut self, slot: u32, deletion: Deletion) {
        let Some(group) = self.groups.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        let deletion = if group.unified {
            deletion
        } else {
            Deletion::Permanent
        };
        let member_of: Vec<u32> = (0..self.groups.len())
            .map(slot_u32)
            .filter(|g| self.remove_member(*g, Member::Group(slot)))
            .collect();
        if deletion == Deletion::Soft {
            self.deleted_groups.insert(slot, (group, member_of));
        }
        let seq = self.next_seq();
        self.tombstones.push(Tombstone {
            seq,
            kind: Kind::Group,
            slot,
            deletion,
        });
    }

    /// A soft-deleted user by object id.
    pub(crate) fn find_deleted_user(&self, id: &str) -> Option<u32> {
        let slot = self.user_by_id.get(&Uuid::parse_str(id).ok()?).copied()?;
        self.deleted_users.contains_key(&slot).then_some(slot)
    }

    /// A soft-deleted group by object id.
    pub(crate) fn find_deleted_group(&self, id: &str) -> Option<u32> {
        let slot = self.group_by_id.get(&Uuid::parse_str(id).ok()?).copied()?;
        self.deleted_groups.contains_key(&slot).then_some(slot)
    }

    /// Restores a soft-deleted user with its properties and its memberships of the groups
    /// still there; its manager only if still there. `Err(())` (and still deleted) if its
    /// user principal name was taken meanwhile, as Graph refuses such a restore.
    pub(crate) fn restore_user(&mut self, slot: u32) -> Result<(), ()> {
        let Some((mut user, member_of)) = self.deleted_users.remove(&slot) else {
            return Err(());
        };
        let key = user.user_principal_name.to_lowercase();
        if self.user_by_upn.contains_key(&key) {
            self.deleted_users.insert(slot, (user, member_of));
            return Err(());
        }
        if user.manager.is_some_and(|m| self.user(m).is_none()) {
            user.manager = None;
        }
        user.version = self.next_seq();
        let version = user.version;
        self.users[slot as usize] = Some(user);
        self.user_by_upn.insert(key, slot);
        // Every property is new to a client that saw the deletion.
        self.user_property_changes
            .entry(slot)
            .or_default()
            .push((version, u64::MAX));
        for group in member_of {
            self.add_member(group, Member::User(slot));
        }
        Ok(())
    }

    /// Restores a soft-deleted Microsoft 365 group with its properties, its members still
    /// there and its memberships of groups still there; `false` if it is not deleted.
    pub(crate) fn restore_group(&mut self, slot: u32) -> bool {
        let Some((mut group, member_of)) = self.deleted_groups.remove(&slot) else {
            return false;
        };
        let members = std::mem::take(&mut group.members);
        group.version = self.next_seq();
        self.groups[slot as usize] = Some(group);
        for member in members {
            let live = match member {
                Member::User(s) => self.user(s).is_some(),
                Member::Group(s) => self.group(s).is_some(),
            };
            if live {
                self.add_member(slot, member);
            }
        }
        for group in member_of {
            self.add_member(group, Member::Group(slot));
        }
        true
    }

    /// Adds a member; `false` if it was already one.
    pub(crate) fn add_member(&mut self, group: u32, member: Member) -> bool {
        let seq = self.seq + 1;
        let Some(g) = self.groups.get_mut(group as usize).and_then(Option::as_mut) else {
            return false;
        };
        match g.members.binary_search(&member) {
            Ok(_) => false,
            Err(at) => {
                g.members.insert(at, member);
                self.seq = seq;
                self.member_log.push(MemberChange {
                    seq,
                    group,
                    member,
                    added: true,
                });
                true
            }
        }
    }

    /// Removes a member; `false` if it was not one.
    pub(crate) fn remove_member(&mut self, group: u32, member: Member) -> bool {
        let seq = self.seq + 1;
        let Some(g) = self.groups.get_mut(group as usize).and_then(Option::as_mut) else {
            return false;
        };
        match g.members.binary_search(&member) {
            Ok(at) => {
                g.members.remove(at);
                self.seq = seq;
                self.member_log.push(MemberChange {
                    seq,
                    group,
                    member,
                    added: false,
                });
                true
            }
            Err(_) => false,
        }
    }

    /// Every delta token issued so far becomes expired; the log entries only they could
    /// need are dropped, which keeps the log small.
    pub(crate) fn expire_delta_tokens(&mut self) {
        self.expired_before = self.next_seq();
        let floor = self.expired_before;
        self.tombstones.retain(|t| t.seq >= floor);
        self.member_log.retain(|c| c.seq >= floor);
        self.user_property_changes.retain(|_, changes| {
            changes.retain(|(seq, _)| *seq >= floor);
            !changes.is_empty()
        });
    }

    /// Records that the properties in `mask` of a user changed at its current version.
    pub(crate) fn record_user_change(&mut self, slot: u32, mask: u64) {
        if let Some(version) = self.user(slot).map(|u| u.version) {
            self.user_property_changes
                .entry(slot)
                .or_default()
                .push((version, mask));
        }
    }

    /// The properties of a user that changed after `from` (all bits: created after it).
    pub(crate) fn user_changes_since(&self, slot: u32, from: u64) -> u64 {
        self.user_property_changes.get(&slot).map_or(0, |changes| {
            changes
                .iter()
                .filter(|(seq, _)| *seq > from)
                .fold(0, |mask, (_, m)| mask | m)
        })
    }

    /// Every delta token issued so far must resync (410 Gone).
    pub(crate) fn force_resync(&mut self) {
        self.resync_before = self.next_seq();
    }
}

fn slot(index: usize) -> u32 {
    // Invariant: the directory holds fewer than u32::MAX objects (the builder caps sizes).
    u32::try_from(index).unwrap_or(u32::MAX)
}

fn slot_u32(index: usize) -> u32 {
    slot(index)
}

/// The Entra half reads accounts through this.
pub(crate) struct DirectoryAccounts(pub Arc<std::sync::RwLock<Directory>>);

impl DirectoryAccounts {
    fn account_of(dir: &Directory, slot: u32) -> Option<Account> {
        let user = dir.user(slot)?;
        Some(Account {
            id: dir.user_ids[slot as usize].to_string(),
            user_principal_name: user.user_principal_name.to_string(),
            display_name: user.display_name.to_string(),
            is_admin: dir.can_consent(slot),
            account_enabled: user.account_enabled,
        })
    }
}

impl AccountDirectory for DirectoryAccounts {
    fn role_template_ids(&self, id_or_upn: &str) -> Vec<String> {
        let dir = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        dir.find_user(id_or_upn)
            .map(|slot| {
                dir.roles_of(slot)
                    .iter()
                    .map(|role| role.template_id().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn account(&self, id_or_upn: &str) -> Option<Account> {
        let dir = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = dir.find_user(id_or_upn)?;
        Self::account_of(&dir, slot)
    }

    fn sign_in_candidates(&self, limit: usize) -> Vec<Account> {
        let dir = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let admin = |i: &usize| dir.users[*i].is_some() && dir.can_consent(slot(*i));
        let other = |i: &usize| dir.users[*i].is_some() && !dir.can_consent(slot(*i));
        let admins = (0..dir.users.len()).filter(admin);
        let others = (0..dir.users.len()).filter(other);
        admins
            .chain(others)
            .take(limit)
            .filter_map(|i| Self::account_of(&dir, slot(i)))
            .collect()
    }
}

/// A small PNG (solid background with a lighter centre square) for a user's photo, made
/// on request from the photo's seed: photos cost no memory. Uncompressed deflate blocks
/// keep the encoder a few lines long.
pub(crate) fn photo_png(seed: u32, edge: u32) -> Vec<u8> {
    let [r, g, b, _] = seed.to_le_bytes();
    let (r, g, b) = (r / 2 + 40, g / 2 + 40, b / 2 + 40);
    let side = edge as usize;
    let mut raw = Vec::with_capacity(side * (side * 3 + 1));
    for y in 0..side {
        raw.push(0); // filter: none
        for x in 0..side {
            let centre =
                (side / 4..side * 3 / 4).contains(&x) && (side / 4..side * 3 / 4).contains(&y);
            if centre {
                raw.extend_from_slice(&[
                    r.saturating_add(90),
                    g.saturating_add(90),
                    b.saturating_add(90),
                ]);
            } else {
                raw.extend_from_slice(&[r, g, b]);
            }
        }
    }
    let mut zlib = vec![0x78, 0x01];
    let chunks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == chunks.len()));
        let len = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(chunk);
    }
    zlib.extend_from_slice(&adler32(&raw).to_be_bytes());

    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&edge.to_be_bytes());
    ihdr.extend_from_slice(&edge.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    png_chunk(&mut png, *b"IHDR", &ihdr);
    png_chunk(&mut png, *b"IDAT", &zlib);
    png_chunk(&mut png, *b"IEND", &[]);
    png
}

fn png_chunk(out: &mut Vec<u8>, kind: [u8; 4], data: &[u8]) {
    out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(&kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for byte in bytes {
        a = (a + u32::from(*byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(users: usize, groups: usize, seed: u64) -> Directory {
        Directory::generate(&GenerateOptions {
            users,
            groups,
            seed,
            tenant_domain: "contoso.onmicrosoft.com".into(),
        })
    }

    #[test]
    fn same_seed_gives_same_tenant_and_other_seed_differs() {
        let a = small(200, 30, 7);
        let b = small(200, 30, 7);
        let c = small(200, 30, 8);
        assert_eq!(a.user_ids, b.user_ids);
        assert_eq!(a.group_ids, b.group_ids);
        assert_ne!(a.user_ids, c.user_ids);
        let names = |d: &Directory| {
            d.users
                .iter()
                .flatten()
                .map(|u| u.display_name.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&a), names(&b));
    }

    #[test]
    fn generated_tenant_has_guests_disabled_accounts_managers_photos_and_nesting() {
        let dir = small(500, 40, 1);
        let users: Vec<&User> = dir.users.iter().flatten().collect();
        let admin = users[0];
        assert!(dir.can_consent(0));
        assert_eq!(dir.roles_of(0), [DirectoryRole::GlobalAdministrator]);
        assert!(dir.roles_of(1).is_empty());
        assert_eq!(admin.user_principal_name, "admin@contoso.onmicrosoft.com");
        let guests: Vec<_> = users
            .iter()
            .filter(|u| u.user_type == UserType::Guest)
            .collect();
        assert!(!guests.is_empty());
        assert!(guests.iter().all(|g| {
            g.user_principal_name
                .contains("#EXT#@contoso.onmicrosoft.com")
        }));
        assert!(users.iter().any(|u| !u.account_enabled));
        assert!(users.iter().filter(|u| u.manager.is_some()).count() > 400);
        assert!(users.iter().any(|u| u.photo.is_some()) && users.iter().any(|u| u.photo.is_none()));
        let upns: HashSet<_> = users
            .iter()
            .map(|u| u.user_principal_name.to_lowercase())
            .collect();
        assert_eq!(upns.len(), users.len(), "UPNs are unique");
        let groups: Vec<&Group> = dir.groups.iter().flatten().collect();
        assert!(groups.iter().any(|g| g.unified) && groups.iter().any(|g| g.security_enabled));
        assert!(
            groups
                .iter()
                .any(|g| g.members.iter().any(|m| matches!(m, Member::Group(_))))
        );
        assert!(groups[0].members.len() > 400, "All Company is large");
        // Guests are members of no department group, managers are never guests.
        for user in &users {
            if let Some(m) = user.manager {
                assert_eq!(dir.user(m).map(|u| u.user_type), Some(UserType::Member));
            }
        }
    }

    #[test]
    fn find_user_by_id_or_upn_case_insensitively() {
        let dir = small(20, 3, 2);
        let id = dir.user_ids[3].to_string();
        let upn = dir
            .user(3)
            .map(|u| u.user_principal_name.to_uppercase())
            .unwrap_or_default();
        assert_eq!(dir.find_user(&id), Some(3));
        assert_eq!(dir.find_user(&upn), Some(3));
        assert_eq!(dir.find_user("nobody@contoso.onmicrosoft.com"), None);
    }

    #[test]
    fn deleting_a_user_logs_membership_removals_and_a_tombstone() {
        let mut dir = small(50, 5, 3);
        let before = dir.seq;
        let groups_of_1 = dir.member_of(Member::User(1));
        assert!(!groups_of_1.is_empty());
        dir.delete_user(1, Deletion::Soft);
        assert!(dir.user(1).is_none());
        assert!(dir.member_of(Member::User(1)).is_empty());
        assert_eq!(
            dir.member_log
                .iter()
                .filter(|c| c.member == Member::User(1) && !c.added)
                .count(),
            groups_of_1.len()
        );
        let stone = dir.tombstones.last().copied();
        assert!(
            stone.is_some_and(|t| t.slot == 1 && t.seq > before && t.deletion == Deletion::Soft)
        );
        // Its direct reports changed (manager cleared).
        assert!(dir.users.iter().flatten().all(|u| u.manager != Some(1)));
    }

    #[test]
    fn transitive_members_follow_nesting_once_even_with_cycles() {
        let mut dir = small(30, 0, 4);
        let g = |name: &'static str| Group {
            display_name: name.into(),
            description: None,
            mail_nickname: name.into(),
            unified: false,
            security_enabled: true,
            mail_enabled: false,
            visibility: None,
            created: 0,
            members: Vec::new(),
            version: 0,
        };
        let a = dir.insert_group(Uuid::new_v4(), g("a"));
        let b = dir.insert_group(Uuid::new_v4(), g("b"));
        dir.add_member(a, Member::User(1));
        dir.add_member(a, Member::Group(b));
        dir.add_member(b, Member::User(2));
        dir.add_member(b, Member::Group(a));
        let members = dir.transitive_members(a);
        assert_eq!(
            members,
            vec![Member::User(1), Member::Group(b), Member::User(2)]
        );
        assert_eq!(dir.transitive_member_of(Member::User(2)).len(), 2);
    }

    #[test]
    fn photo_is_a_valid_png_of_the_requested_size() {
        let png = photo_png(12345, 48);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes([png[16], png[17], png[18], png[19]]), 48);
        assert_eq!(&png[png.len() - 8..png.len() - 4], b"IEND");
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
    }
}
