//! The property catalogue of users and groups, one for list, get and delta: which
//! names exist, the default set, which a list or a delta may not select, which filter
//! and search; and an object's JSON with `$select` applied ([spec 8b]).

use serde_json::{Map, Value, json};

use crate::data::{Directory, Group, Member, User};

use super::dates::iso_date;

/// The `/users` default property set ([spec 8b]).
const USER_DEFAULT: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];

pub(crate) const USER_PROPERTIES: &[&str] = &[
    "id",
    "displayName",
    "givenName",
    "surname",
    "userPrincipalName",
    "mail",
    "mailNickname",
    "jobTitle",
    "department",
    "officeLocation",
    "businessPhones",
    "mobilePhone",
    "preferredLanguage",
    "streetAddress",
    "city",
    "state",
    "postalCode",
    "country",
    "usageLocation",
    "companyName",
    "employeeId",
    "userType",
    "accountEnabled",
    "createdDateTime",
    "otherMails",
    "proxyAddresses",
    "identities",
    "signInActivity",
    "manager",
];

/// Properties only a single-user GET returns; in a list `$select` they are 501 ([spec 8b]).
const USER_SINGLE_ONLY: &[&str] = &[
    "aboutMe",
    "birthday",
    "hireDate",
    "interests",
    "mySite",
    "pastProjects",
    "preferredName",
    "responsibilities",
    "schools",
    "skills",
    "mailboxSettings",
];

const USER_FILTERABLE: &[&str] = &[
    "id",
    "displayName",
    "givenName",
    "surname",
    "userPrincipalName",
    "mail",
    "mailNickname",
    "jobTitle",
    "department",
    "accountEnabled",
    "userType",
    "employeeId",
    "city",
    "country",
    "state",
    "officeLocation",
    "companyName",
    "usageLocation",
    "preferredLanguage",
];

const USER_SEARCHABLE: &[&str] = &[
    "displayName",
    "givenName",
    "surname",
    "mail",
    "mailNickname",
    "userPrincipalName",
];

/// The default group property set, as in group-get.json.
const GROUP_DEFAULT: &[&str] = &[
    "id",
    "deletedDateTime",
    "classification",
    "createdDateTime",
    "description",
    "displayName",
    "expirationDateTime",
    "groupTypes",
    "isAssignableToRole",
    "mail",
    "mailEnabled",
    "mailNickname",
    "membershipRule",
    "membershipRuleProcessingState",
    "onPremisesDomainName",
    "onPremisesLastSyncDateTime",
    "onPremisesNetBiosName",
    "onPremisesSamAccountName",
    "onPremisesSecurityIdentifier",
    "onPremisesSyncEnabled",
    "preferredDataLocation",
    "preferredLanguage",
    "proxyAddresses",
    "renewedDateTime",
    "resourceBehaviorOptions",
    "resourceProvisioningOptions",
    "securityEnabled",
    "securityIdentifier",
    "theme",
    "visibility",
    "onPremisesProvisioningErrors",
];

/// Exchange-backed group properties: only on a single-group GET, which then also returns
/// `id` (group-get-select.json).
const GROUP_SINGLE_ONLY: &[&str] = &[
    "allowExternalSenders",
    "autoSubscribeNewMembers",
    "isSubscribedByMail",
    "unseenCount",
];

const GROUP_FILTERABLE: &[&str] = &[
    "id",
    "displayName",
    "description",
    "mail",
    "mailNickname",
    "mailEnabled",
    "securityEnabled",
    "visibility",
];

const GROUP_SEARCHABLE: &[&str] = &["displayName", "description", "mail", "mailNickname"];

fn contains(list: &[&str], name: &str) -> bool {
    list.iter().any(|p| p.eq_ignore_ascii_case(name))
}

pub(super) fn canonical<'a>(list: &[&'a str], name: &str) -> Option<&'a str> {
    list.iter().copied().find(|p| p.eq_ignore_ascii_case(name))
}

pub(super) fn text(t: Option<&crate::data::Text>) -> Value {
    t.map_or(Value::Null, |t| Value::String(t.to_string()))
}

/// One user property by (case-insensitive) name: `None` if users have no such property.
pub(crate) fn user_property(
    dir: &Directory,
    slot: u32,
    user: &User,
    name: &str,
) -> Option<(&'static str, Value)> {
    let key = canonical(USER_PROPERTIES, name).or_else(|| canonical(USER_SINGLE_ONLY, name))?;
    let id = || dir.user_ids[slot as usize].to_string();
    let value = match key {
        "id" => Value::String(id()),
        "displayName" => Value::String(user.display_name.to_string()),
        "givenName" => text(user.given_name.as_ref()),
        "surname" => text(user.surname.as_ref()),
        "userPrincipalName" => Value::String(user.user_principal_name.to_string()),
        "mail" => text(user.mail.as_ref()),
        "mailNickname" => Value::String(user.mail_nickname.to_string()),
        "jobTitle" => text(user.job_title.as_ref()),
        "department" => text(user.department.as_ref()),
        "officeLocation" => text(user.office_location.as_ref()),
        "businessPhones" => Value::Array(
            user.business_phone
                .iter()
                .map(|p| Value::String(p.to_string()))
                .collect(),
        ),
        "mobilePhone" => text(user.mobile_phone.as_ref()),
        "preferredLanguage" => text(user.preferred_language.as_ref()),
        "streetAddress" => text(user.street_address.as_ref()),
        "city" => text(user.city.as_ref()),
        "state" => text(user.state.as_ref()),
        "postalCode" => text(user.postal_code.as_ref()),
        "country" => text(user.country.as_ref()),
        "usageLocation" => text(user.usage_location.as_ref()),
        "companyName" => text(user.company_name.as_ref()),
        "employeeId" => text(user.employee_id.as_ref()),
        "userType" => Value::String(user.user_type.as_str().to_string()),
        "accountEnabled" => Value::Bool(user.account_enabled),
        "createdDateTime" => Value::String(iso_date(user.created)),
        "otherMails" => match (&user.user_type, &user.mail) {
            (crate::data::UserType::Guest, Some(mail)) => json!([mail.to_string()]),
            _ => json!([]),
        },
        "proxyAddresses" => user
            .mail
            .as_ref()
            .map_or(json!([]), |m| json!([format!("SMTP:{m}")])),
        "identities" => json!([{
            "signInType": "userPrincipalName",
            "issuer": dir.tenant_domain,
            "issuerAssignedId": user.user_principal_name.to_string(),
        }]),
        "signInActivity" => match user.last_sign_in {
            Some(t) => json!({
                "lastSignInDateTime": iso_date(t),
                "lastSignInRequestId": uuid::Uuid::from_u64_pair(u64::from(slot), u64::try_from(t).unwrap_or(0)).to_string(),
            }),
            None => json!({"lastSignInDateTime": null, "lastSignInRequestId": null}),
        },
        "manager" => return None,
        _ => Value::Null,
    };
    Some((key, value))
}

/// One group property by (case-insensitive) name.
pub(crate) fn group_property(
    dir: &Directory,
    slot: u32,
    group: &Group,
    name: &str,
) -> Option<(&'static str, Value)> {
    let key = canonical(GROUP_DEFAULT, name).or_else(|| canonical(GROUP_SINGLE_ONLY, name))?;
    let id = dir.group_ids[slot as usize];
    let mail = group
        .mail_enabled
        .then(|| format!("{}@{}", group.mail_nickname, dir.tenant_domain));
    let value = match key {
        "id" => Value::String(id.to_string()),
        "createdDateTime" | "renewedDateTime" => Value::String(iso_date(group.created)),
        "description" => text(group.description.as_ref()),
        "displayName" => Value::String(group.display_name.to_string()),
        "groupTypes" => {
            if group.unified {
                json!(["Unified"])
            } else {
                json!([])
            }
        }
        "mail" => mail.clone().map_or(Value::Null, Value::String),
        "mailEnabled" => Value::Bool(group.mail_enabled),
        "mailNickname" => Value::String(group.mail_nickname.to_string()),
        "proxyAddresses" => mail.map_or(json!([]), |m| json!([format!("SMTP:{m}")])),
        "resourceBehaviorOptions" | "onPremisesProvisioningErrors" => json!([]),
        "resourceProvisioningOptions" => {
            if group.unified {
                json!(["Team"])
            } else {
                json!([])
            }
        }
        "securityEnabled" => Value::Bool(group.security_enabled),
        "securityIdentifier" => {
            let b = id.as_bytes();
            let part = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
            Value::String(format!(
                "S-1-12-1-{}-{}-{}-{}",
                part(0),
                part(4),
                part(8),
                part(12)
            ))
        }
        "visibility" => text(group.visibility.as_ref()),
        "allowExternalSenders" | "autoSubscribeNewMembers" | "isSubscribedByMail" => {
            Value::Bool(false)
        }
        "unseenCount" => json!(0),
        _ => Value::Null,
    };
    Some((key, value))
}

/// What Graph knows about one kind's properties: the one catalogue that list, get and
/// delta consult, so they cannot drift apart.
pub(crate) struct Catalogue {
    /// The `@odata.type` name (`user`, `group`), for `$select` errors.
    pub(crate) type_name: &'static str,
    /// Returned without `$select`.
    pub(crate) default: &'static [&'static str],
    /// Selectable in lists, gets and (less `not_in_delta`) delta.
    properties: &'static [&'static str],
    /// Only a single-object GET returns these; a list `$select` of one is 501.
    single_only: &'static [&'static str],
    filterable: &'static [&'static str],
    searchable: &'static [&'static str],
    /// Properties delta does not track.
    not_in_delta: &'static [&'static str],
    /// The relationship delta reports (`manager@delta`, `members@delta`, [spec 9]).
    delta_relationship: &'static str,
}

impl Catalogue {
    /// Whether objects of this kind have the property (case-insensitive).
    pub(crate) fn is_property(&self, name: &str) -> bool {
        contains(self.properties, name) || contains(self.single_only, name)
    }

    /// Whether only a single-object GET returns it.
    pub(crate) fn is_single_only(&self, name: &str) -> bool {
        contains(self.single_only, name)
    }

    pub(crate) fn is_filterable(&self, name: &str) -> bool {
        contains(self.filterable, name)
    }

    pub(crate) fn is_searchable(&self, name: &str) -> bool {
        contains(self.searchable, name)
    }

    /// Whether a delta query may `$select` it.
    pub(crate) fn in_delta(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case(self.delta_relationship)
            || ((contains(self.default, name) || contains(self.properties, name))
                && !contains(self.not_in_delta, name))
    }
}

/// Users ([spec 8b]).
pub(crate) const USERS: Catalogue = Catalogue {
    type_name: "user",
    default: USER_DEFAULT,
    properties: USER_PROPERTIES,
    single_only: USER_SINGLE_ONLY,
    filterable: USER_FILTERABLE,
    searchable: USER_SEARCHABLE,
    not_in_delta: &["signInActivity"],
    delta_relationship: "manager",
};

/// Groups.
pub(crate) const GROUPS: Catalogue = Catalogue {
    type_name: "group",
    default: GROUP_DEFAULT,
    properties: GROUP_DEFAULT,
    single_only: GROUP_SINGLE_ONLY,
    filterable: GROUP_FILTERABLE,
    searchable: GROUP_SEARCHABLE,
    not_in_delta: &[],
    delta_relationship: "members",
};

/// A user as Graph writes it, with `$select` applied (default set otherwise).
pub(crate) fn user_json(
    dir: &Directory,
    slot: u32,
    user: &User,
    select: Option<&[String]>,
    typed: bool,
) -> Map<String, Value> {
    let mut map = Map::new();
    if typed {
        map.insert("@odata.type".into(), json!("#microsoft.graph.user"));
    }
    for (key, value) in user_fields(dir, slot, user, select).0 {
        map.insert(key.into(), value);
    }
    map
}

/// A user's selected properties in the order asked, written as a JSON object without
/// building a map first (what a listing's pages are made of).
pub(crate) struct Fields(Vec<(&'static str, Value)>);

impl serde::Serialize for Fields {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// [`user_json`] of a listing: the same properties, each once.
pub(crate) fn user_fields(
    dir: &Directory,
    slot: u32,
    user: &User,
    select: Option<&[String]>,
) -> Fields {
    let mut fields: Vec<(&'static str, Value)> = Vec::with_capacity(24);
    let mut add = |name: &str| {
        if let Some((key, value)) = user_property(dir, slot, user, name)
            && !fields.iter().any(|(k, _)| *k == key)
        {
            fields.push((key, value));
        }
    };
    match select {
        None => USER_DEFAULT.iter().for_each(|name| add(name)),
        Some(names) => names.iter().for_each(|name| add(name)),
    }
    Fields(fields)
}

/// A group as Graph writes it.
pub(crate) fn group_json(
    dir: &Directory,
    slot: u32,
    group: &Group,
    select: Option<&[String]>,
    typed: bool,
) -> Map<String, Value> {
    let mut map = Map::new();
    if typed {
        map.insert("@odata.type".into(), json!("#microsoft.graph.group"));
    }
    let names: Vec<&str> = match select {
        None => GROUP_DEFAULT.to_vec(),
        Some(names) => names.iter().map(String::as_str).collect(),
    };
    for name in names {
        if let Some((key, value)) = group_property(dir, slot, group, name) {
            map.insert(key.into(), value);
        }
    }
    map
}

/// A member of a directoryObject collection, always with `@odata.type` ([spec 13]).
pub(crate) fn object_json(
    dir: &Directory,
    member: Member,
    select: Option<&[String]>,
) -> Option<Map<String, Value>> {
    match member {
        Member::User(s) => dir.user(s).map(|u| user_json(dir, s, u, select, true)),
        Member::Group(s) => dir.group(s).map(|g| group_json(dir, s, g, select, true)),
    }
}

/// Property values of a member, for `$filter` and `$search` over mixed collections.
pub(super) fn member_value(dir: &Directory, member: Member, name: &str) -> Option<Value> {
    match member {
        Member::User(s) => dir
            .user(s)
            .and_then(|u| user_property(dir, s, u, name))
            .map(|(_, v)| v),
        Member::Group(s) => dir
            .group(s)
            .and_then(|g| group_property(dir, s, g, name))
            .map(|(_, v)| v),
    }
}
