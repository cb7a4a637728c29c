//! Graph v1.0 directory endpoints: users, groups, members, memberOf, manager, photos, in
//! Graph's response shapes ([spec 8], [spec 11], [spec 13]).
//!
//! Handlers are plain functions over the in-memory directory; `server.rs` wraps them with
//! request ids, bearer checks, throttling and faults, and `$batch` calls them too.

use std::fmt::Write as _;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::auth::BearerGrant;
use crate::data::{Directory, Group, Member, User, photo_png};
use crate::query::{Filter, Query, Search, parse_filter};

/// A Graph error: status, `error.code`, `error.message`, extra headers. The pipeline
/// renders it with `innerError` (`date`, `request-id`, `client-request-id`) ([spec 11]).
#[derive(Debug, Clone)]
pub(crate) struct GraphError {
    status: StatusCode,
    code: String,
    message: String,
    headers: Vec<(HeaderName, String)>,
    /// The throttling body has its own innerError shape (error-throttled-429.json).
    throttled: bool,
}

impl GraphError {
    pub(crate) fn new(
        status: StatusCode,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            headers: Vec::new(),
            throttled: false,
        }
    }

    pub(crate) fn bad_request(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!(
                "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    }

    pub(crate) fn throttled(retry_after: &str) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Please retry again later.",
        );
        error.throttled = true;
        error.with_header(header::RETRY_AFTER, retry_after)
    }

    pub(crate) fn with_header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    #[cfg(test)]
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    #[cfg(test)]
    pub(crate) fn code(&self) -> String {
        self.code.clone()
    }

    #[cfg(test)]
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// The response, with the request's ids in `innerError`.
    pub(crate) fn to_response(&self, ids: &RequestIds) -> Response {
        let date = graph_date(now_unix());
        let body = if self.throttled {
            json!({"error": {
                "code": self.code,
                "innerError": {
                    "code": self.status.as_str(),
                    "date": date,
                    "message": "Please retry after",
                    "request-id": ids.request_id,
                    "status": self.status.as_str(),
                    "client-request-id": ids.client_request_id,
                },
                "message": self.message,
            }})
        } else {
            json!({"error": {
                "code": self.code,
                "message": self.message,
                "innerError": {
                    "date": date,
                    "request-id": ids.request_id,
                    "client-request-id": ids.client_request_id,
                },
            }})
        };
        let mut response = json_response(self.status, body.to_string().into_bytes());
        for (name, value) in &self.headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                response.headers_mut().insert(name.clone(), value);
            }
        }
        response
    }
}

/// The ids Graph puts in every response's headers and error bodies.
#[derive(Debug, Clone)]
pub(crate) struct RequestIds {
    pub request_id: String,
    pub client_request_id: String,
}

pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// `2021-05-18T19:03:10` as in Graph's innerError.
fn graph_date(unix: i64) -> String {
    let mut iso = iso_date(unix);
    iso.pop();
    iso
}

/// `2017-07-31T18:56:16Z`.
pub(crate) fn iso_date(unix: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
}

pub(crate) const JSON_CONTENT_TYPE: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(JSON_CONTENT_TYPE),
    );
    response
        .headers_mut()
        .insert("odata-version", HeaderValue::from_static("4.0"));
    response
}

fn text_response(text: String) -> Response {
    let mut response = Response::new(Body::from(text));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

// ---------------------------------------------------------------- routing

/// Who a `/users/{…}` or `/me` path is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UserRef {
    Me,
    Id(String),
}

/// An `OData` cast segment on a directoryObject collection (`/microsoft.graph.user`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cast {
    User,
    Group,
}

impl Cast {
    fn parse(segment: &str) -> Option<Self> {
        if segment.eq_ignore_ascii_case("microsoft.graph.user") {
            Some(Self::User)
        } else if segment.eq_ignore_ascii_case("microsoft.graph.group") {
            Some(Self::Group)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::User => "microsoft.graph.user",
            Self::Group => "microsoft.graph.group",
        }
    }

    fn admits(self, member: Member) -> bool {
        matches!(
            (self, member),
            (Self::User, Member::User(_)) | (Self::Group, Member::Group(_))
        )
    }
}

/// The tail of a directoryObject collection path: `[cast] [$count]`.
fn collection_tail(rest: &[&str]) -> Option<(bool, Option<Cast>)> {
    match rest {
        [] => Some((false, None)),
        ["$count"] => Some((true, None)),
        [cast] => Some((false, Some(Cast::parse(cast)?))),
        [cast, "$count"] => Some((true, Some(Cast::parse(cast)?))),
        _ => None,
    }
}

/// One Graph endpoint, decoded from the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Users,
    UsersCount,
    UsersDelta,
    User(UserRef),
    UserMemberOf {
        user: UserRef,
        transitive: bool,
        count: bool,
        cast: Option<Cast>,
    },
    Manager(UserRef),
    PhotoMetadata(UserRef),
    PhotoValue {
        user: UserRef,
        size: Option<String>,
    },
    Groups,
    GroupsCount,
    GroupsDelta,
    Group(String),
    GroupMembers {
        group: String,
        transitive: bool,
        count: bool,
        cast: Option<Cast>,
    },
    GroupMemberOf {
        group: String,
        transitive: bool,
        count: bool,
        cast: Option<Cast>,
    },
    Batch,
}

impl Endpoint {
    /// Decodes the path after `/v1.0`; `None` for a path Graph would not serve here.
    pub(crate) fn parse(path: &str) -> Option<Self> {
        let segments: Vec<String> = path
            .trim_matches('/')
            .split('/')
            .map(percent_decode)
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        match segments.as_slice() {
            ["users"] => Some(Self::Users),
            ["users", "$count"] => Some(Self::UsersCount),
            ["users", "delta" | "delta()"] => Some(Self::UsersDelta),
            ["users", id, rest @ ..] => Self::user_path(UserRef::Id((*id).to_string()), rest),
            ["me", rest @ ..] => Self::user_path(UserRef::Me, rest),
            ["groups"] => Some(Self::Groups),
            ["groups", "$count"] => Some(Self::GroupsCount),
            ["groups", "delta" | "delta()"] => Some(Self::GroupsDelta),
            ["groups", id] => Some(Self::Group((*id).to_string())),
            ["groups", id, relation, rest @ ..] => {
                let (count, cast) = collection_tail(rest)?;
                let group = (*id).to_string();
                match *relation {
                    "members" => Some(Self::GroupMembers {
                        group,
                        transitive: false,
                        count,
                        cast,
                    }),
                    "transitiveMembers" => Some(Self::GroupMembers {
                        group,
                        transitive: true,
                        count,
                        cast,
                    }),
                    "memberOf" => Some(Self::GroupMemberOf {
                        group,
                        transitive: false,
                        count,
                        cast,
                    }),
                    "transitiveMemberOf" => Some(Self::GroupMemberOf {
                        group,
                        transitive: true,
                        count,
                        cast,
                    }),
                    _ => None,
                }
            }
            ["$batch"] => Some(Self::Batch),
            _ => None,
        }
    }

    fn user_path(user: UserRef, rest: &[&str]) -> Option<Self> {
        match rest {
            [] => Some(Self::User(user)),
            ["memberOf", tail @ ..] => {
                let (count, cast) = collection_tail(tail)?;
                Some(Self::UserMemberOf {
                    user,
                    transitive: false,
                    count,
                    cast,
                })
            }
            ["transitiveMemberOf", tail @ ..] => {
                let (count, cast) = collection_tail(tail)?;
                Some(Self::UserMemberOf {
                    user,
                    transitive: true,
                    count,
                    cast,
                })
            }
            ["manager"] => Some(Self::Manager(user)),
            ["photo"] => Some(Self::PhotoMetadata(user)),
            ["photo", "$value"] => Some(Self::PhotoValue { user, size: None }),
            ["photos", size, "$value"] => Some(Self::PhotoValue {
                user,
                size: Some((*size).to_string()),
            }),
            _ => None,
        }
    }

    /// The endpoint's name in request counters, ids replaced by placeholders.
    pub(crate) fn name(&self) -> String {
        let user = |u: &UserRef| match u {
            UserRef::Me => "/me",
            UserRef::Id(_) => "/users/{id}",
        };
        let tail = |c: bool, cast: &Option<Cast>| {
            let cast = cast.map(|k| format!("/{}", k.name())).unwrap_or_default();
            format!("{cast}{}", if c { "/$count" } else { "" })
        };
        match self {
            Self::Users => "/users".into(),
            Self::UsersCount => "/users/$count".into(),
            Self::UsersDelta => "/users/delta".into(),
            Self::User(u) => user(u).into(),
            Self::UserMemberOf {
                user: u,
                transitive,
                count: c,
                cast,
            } => {
                format!(
                    "{}/{}{}",
                    user(u),
                    if *transitive {
                        "transitiveMemberOf"
                    } else {
                        "memberOf"
                    },
                    tail(*c, cast)
                )
            }
            Self::Manager(u) => format!("{}/manager", user(u)),
            Self::PhotoMetadata(u) => format!("{}/photo", user(u)),
            Self::PhotoValue {
                user: u,
                size: None,
            } => format!("{}/photo/$value", user(u)),
            Self::PhotoValue {
                user: u,
                size: Some(_),
            } => format!("{}/photos/{{size}}/$value", user(u)),
            Self::Groups => "/groups".into(),
            Self::GroupsCount => "/groups/$count".into(),
            Self::GroupsDelta => "/groups/delta".into(),
            Self::Group(_) => "/groups/{id}".into(),
            Self::GroupMembers {
                transitive,
                count: c,
                cast,
                ..
            } => {
                format!(
                    "/groups/{{id}}/{}{}",
                    if *transitive {
                        "transitiveMembers"
                    } else {
                        "members"
                    },
                    tail(*c, cast)
                )
            }
            Self::GroupMemberOf {
                transitive,
                count: c,
                cast,
                ..
            } => {
                format!(
                    "/groups/{{id}}/{}{}",
                    if *transitive {
                        "transitiveMemberOf"
                    } else {
                        "memberOf"
                    },
                    tail(*c, cast)
                )
            }
            Self::Batch => "/$batch".into(),
        }
    }

    /// Resource-unit cost for the throttle ([spec 10a]): `GET users` 2, members 3,
    /// transitiveMembers 5, memberOf 2, others 1; `$select` −1, `$top` < 20 −1, at least 1.
    pub(crate) fn cost(&self, query: &Query) -> u32 {
        let base: u32 = match self {
            Self::Users | Self::User(_) | Self::UserMemberOf { .. } => 2,
            Self::GroupMembers {
                transitive: false, ..
            } => 3,
            Self::GroupMembers {
                transitive: true, ..
            } => 5,
            Self::Batch => 0,
            _ => 1,
        };
        let mut cost = base;
        if query.select.is_some() {
            cost = cost.saturating_sub(1);
        }
        if query
            .top
            .as_deref()
            .and_then(|t| t.parse::<u32>().ok())
            .is_some_and(|t| t < 20)
        {
            cost = cost.saturating_sub(1);
        }
        if base == 0 { 0 } else { cost.max(1) }
    }

    /// Whether the grant's scopes allow this endpoint; `Err` is Graph's 403.
    pub(crate) fn authorize(&self, grant: &BearerGrant) -> Result<(), GraphError> {
        let (users, groups) = match self {
            Self::Users | Self::UsersCount | Self::UsersDelta => (true, false),
            Self::User(u)
            | Self::Manager(u)
            | Self::PhotoMetadata(u)
            | Self::PhotoValue { user: u, .. } => (*u != UserRef::Me, false),
            // memberOf reads another user and groups: both scopes (README "Permissions").
            Self::UserMemberOf { user, .. } => (*user != UserRef::Me, true),
            Self::Groups
            | Self::GroupsCount
            | Self::GroupsDelta
            | Self::Group(_)
            | Self::GroupMembers { .. }
            | Self::GroupMemberOf { .. } => (false, true),
            Self::Batch => (false, false),
        };
        let has = |accepted: &[&str]| {
            grant
                .scopes
                .iter()
                .any(|s| accepted.iter().any(|a| a.eq_ignore_ascii_case(s)))
        };
        if (users && !has(USER_SCOPES)) || (groups && !has(GROUP_SCOPES)) {
            return Err(GraphError::new(
                StatusCode::FORBIDDEN,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            ));
        }
        Ok(())
    }
}

/// Scopes that allow reading every user.
pub(crate) const USER_SCOPES: &[&str] = &[
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
/// Scopes that allow reading every group and its members.
pub(crate) const GROUP_SCOPES: &[&str] = &[
    "Group.Read.All",
    "Group.ReadWrite.All",
    "GroupMember.Read.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];

pub(crate) fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Percent-encodes a query component, keeping the characters Graph leaves readable in
/// its nextLinks (`$`, `,`, `(`, `)`, `'`, `:`).
pub(crate) fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~$,()':!*@/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

// ---------------------------------------------------------------- properties

/// The `/users` default property set ([spec 8b]).
pub(crate) const USER_DEFAULT: &[&str] = &[
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
pub(crate) const GROUP_DEFAULT: &[&str] = &[
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

fn canonical<'a>(list: &[&'a str], name: &str) -> Option<&'a str> {
    list.iter().copied().find(|p| p.eq_ignore_ascii_case(name))
}

fn text(t: Option<&crate::data::Text>) -> Value {
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

fn is_user_property(name: &str) -> bool {
    contains(USER_PROPERTIES, name) || contains(USER_SINGLE_ONLY, name)
}

fn is_group_property(name: &str) -> bool {
    contains(GROUP_DEFAULT, name) || contains(GROUP_SINGLE_ONLY, name)
}

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
    match select {
        None => {
            for name in USER_DEFAULT {
                if let Some((key, value)) = user_property(dir, slot, user, name) {
                    map.insert(key.into(), value);
                }
            }
        }
        Some(names) => {
            for name in names {
                if let Some((key, value)) = user_property(dir, slot, user, name) {
                    map.insert(key.into(), value);
                }
            }
        }
    }
    map
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
fn member_value(dir: &Directory, member: Member, name: &str) -> Option<Value> {
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

// ---------------------------------------------------------------- request context

/// What a handler needs to know about its request.
pub(crate) struct Request<'a> {
    pub dir: &'a Directory,
    /// The id of the tenant the access token belongs to; page tokens are bound to it.
    pub tenant_id: &'a str,
    pub graph_base: &'a str,
    /// The path after `/v1.0`, as sent (for nextLinks).
    pub path: &'a str,
    pub query: Query,
    pub headers: &'a HeaderMap,
    pub grant: &'a BearerGrant,
}

impl Request<'_> {
    /// `ConsistencyLevel: eventual` was sent ([spec 8c]).
    pub(crate) fn eventual(&self) -> bool {
        self.headers
            .get("consistencylevel")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("eventual"))
    }

    fn advanced(&self) -> bool {
        self.eventual() && self.query.count_requested()
    }

    fn user_slot(&self, user: &UserRef) -> Result<u32, GraphError> {
        let key = match user {
            UserRef::Me => self.grant.user_id.as_str(),
            UserRef::Id(id) => id.as_str(),
        };
        self.dir
            .find_user(key)
            .ok_or_else(|| GraphError::not_found(key))
    }

    fn group_slot(&self, id: &str) -> Result<u32, GraphError> {
        self.dir
            .find_group(id)
            .ok_or_else(|| GraphError::not_found(id))
    }

    fn context(&self, entity_set: &str, select: Option<&[String]>, suffix: &str) -> String {
        match select {
            Some(names) if !names.is_empty() => format!(
                "{}/$metadata#{entity_set}({}){suffix}",
                self.graph_base,
                names.join(",")
            ),
            _ => format!("{}/$metadata#{entity_set}{suffix}", self.graph_base),
        }
    }

    /// `{graph_base}{path}?{original options}&$skiptoken={token}`: the original query
    /// options are carried into the nextLink ([spec 8a]).
    pub(crate) fn next_link(&self, token_name: &str, token: &str) -> String {
        let mut link = format!("{}{}?", self.graph_base, self.path);
        for (key, value) in &self.query.carried {
            let _ = write!(
                link,
                "{}={}&",
                encode_component(key),
                encode_component(value)
            );
        }
        let _ = write!(link, "{token_name}={token}");
        link
    }

    fn no_expand(&self) -> Result<(), GraphError> {
        if self.query.expand.is_some() {
            return Err(GraphError::bad_request(
                "Request_BadRequest",
                "tenant-sim does not simulate $expand.",
            ));
        }
        Ok(())
    }

    fn count_only(&self, count: usize) -> Result<Response, GraphError> {
        if !self.eventual() {
            // error-count-without-consistencylevel.json
            return Err(GraphError::bad_request(
                "Request_BadRequest",
                "$count is not currently supported.",
            ));
        }
        Ok(text_response(count.to_string()))
    }

    fn search(&self, searchable: &dyn Fn(&str) -> bool) -> Result<Option<Search>, GraphError> {
        let Some(search) = &self.query.search else {
            return Ok(None);
        };
        if !self.eventual() {
            // error-search-without-consistencylevel.json
            return Err(GraphError::bad_request(
                "Request_UnsupportedQuery",
                "Request with $search query parameter only works through MSGraph with a special request header: 'ConsistencyLevel: eventual'",
            ));
        }
        Search::parse(search, searchable).map(Some)
    }

    fn filter(&self, filterable: &dyn Fn(&str) -> bool) -> Result<Option<Filter>, GraphError> {
        let Some(text) = &self.query.filter else {
            return Ok(None);
        };
        let filter = parse_filter(text)?;
        filter.check(filterable)?;
        if filter.is_advanced() && !self.advanced() {
            // error-advanced-filter-without-consistencylevel.json
            return Err(GraphError::bad_request(
                "Request_UnsupportedQuery",
                "Unsupported Query.",
            ));
        }
        Ok(Some(filter))
    }

    /// `@odata.count` on the first page when `$count=true` came with the header; without
    /// the header it is silently ignored ([spec 8c]).
    fn wants_count(&self) -> bool {
        self.advanced() && self.query.skiptoken.is_none()
    }
}

/// Page cursor inside a `$skiptoken`, bound to its tenant: opaque to clients
/// ([spec 8a]).
pub(crate) fn encode_skiptoken(tenant_id: &str, tag: &str, position: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("{tenant_id}:{tag}:{position}"))
}

/// The position in a `$skiptoken`; another tenant's token is as invalid as a garbled one.
fn decode_skiptoken(tenant_id: &str, tag: &str, token: Option<&str>) -> Result<usize, GraphError> {
    let Some(token) = token else { return Ok(0) };
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|text| {
            text.strip_prefix(&format!("{tenant_id}:{tag}:"))
                .and_then(|p| p.parse().ok())
        })
        .ok_or_else(|| {
            GraphError::bad_request(
                "Request_BadRequest",
                "The specified page token value has expired or is invalid.",
            )
        })
}

/// Writes `{"@odata.context", "@odata.count"?, "@odata.nextLink"?, "value": [...]}` one
/// object at a time, so a page costs its own bytes and one object.
pub(crate) fn write_page(
    context: &str,
    count: Option<usize>,
    next_link: Option<&str>,
    delta_link: Option<&str>,
    items: impl Iterator<Item = Map<String, Value>>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * 1024);
    out.extend_from_slice(b"{\"@odata.context\":");
    let _ = serde_json::to_writer(&mut out, context);
    if let Some(count) = count {
        let _ = write!(Utf8(&mut out), ",\"@odata.count\":{count}");
    }
    if let Some(link) = next_link {
        out.extend_from_slice(b",\"@odata.nextLink\":");
        let _ = serde_json::to_writer(&mut out, link);
    }
    if let Some(link) = delta_link {
        out.extend_from_slice(b",\"@odata.deltaLink\":");
        let _ = serde_json::to_writer(&mut out, link);
    }
    out.extend_from_slice(b",\"value\":[");
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut out, &item);
    }
    out.extend_from_slice(b"]}");
    out
}

struct Utf8<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Utf8<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// One page of positions `start..len` whose item passes `keep`; the position of the
/// next match, if any, continues the listing.
fn page_positions<T>(
    len: usize,
    start: usize,
    top: usize,
    at: impl Fn(usize) -> Option<T>,
    keep: impl Fn(&T) -> bool,
) -> (Vec<T>, Option<usize>) {
    let mut items = Vec::with_capacity(top.min(len));
    let mut position = start;
    while position < len {
        if let Some(item) = at(position)
            && keep(&item)
        {
            if items.len() == top {
                return (items, Some(position));
            }
            items.push(item);
        }
        position += 1;
    }
    (items, None)
}

fn count_matching<T>(
    len: usize,
    at: impl Fn(usize) -> Option<T>,
    keep: impl Fn(&T) -> bool,
) -> usize {
    (0..len).filter_map(at).filter(|t| keep(t)).count()
}

fn single(select: Option<&[String]>, context: String, mut map: Map<String, Value>) -> Response {
    let _ = select;
    let mut out = Map::new();
    out.insert("@odata.context".into(), Value::String(context));
    out.append(&mut map);
    json_response(StatusCode::OK, Value::Object(out).to_string().into_bytes())
}

// ---------------------------------------------------------------- handlers

/// Answers one Graph request (everything except `$batch` and delta).
#[expect(clippy::too_many_lines, reason = "one dispatch table")]
pub(crate) fn handle(endpoint: &Endpoint, request: &Request<'_>) -> Result<Response, GraphError> {
    match endpoint {
        Endpoint::Users => list_users(request),
        Endpoint::UsersCount => {
            let (filter, search) = (
                request.filter(&|p| contains(USER_FILTERABLE, p))?,
                request.search(&|p| contains(USER_SEARCHABLE, p))?,
            );
            let dir = request.dir;
            let keep = user_predicate(dir, filter.as_ref(), search.as_ref());
            request.count_only(count_matching(dir.users.len(), |i| live_user(dir, i), keep))
        }
        Endpoint::User(user) => get_user(request, user),
        Endpoint::UserMemberOf {
            user,
            transitive,
            count,
            cast,
        } => {
            let slot = request.user_slot(user)?;
            let groups = if *transitive {
                request.dir.transitive_member_of(Member::User(slot))
            } else {
                request.dir.member_of(Member::User(slot))
            };
            let members: Vec<Member> = groups.into_iter().map(Member::Group).collect();
            list_members(request, &members, *count, *cast, *transitive, "memberOf")
        }
        Endpoint::Manager(user) => {
            request.no_expand()?;
            let slot = request.user_slot(user)?;
            let dir = request.dir;
            let manager = dir
                .user(slot)
                .and_then(|u| u.manager)
                .and_then(|m| dir.user(m).map(|u| (m, u)))
                .ok_or_else(|| GraphError::not_found("manager"))?;
            let select = request.query.selected(
                &|p| is_user_property(p) || is_group_property(p),
                "directoryObject",
            )?;
            let map = user_json(dir, manager.0, manager.1, select.as_deref(), true);
            Ok(single(
                select.as_deref(),
                format!("{}/$metadata#directoryObjects/$entity", request.graph_base),
                map,
            ))
        }
        Endpoint::PhotoMetadata(user) => photo_metadata(request, user),
        Endpoint::PhotoValue { user, size } => photo_value(request, user, size.as_deref()),
        Endpoint::Groups => list_groups(request),
        Endpoint::GroupsCount => {
            let (filter, search) = (
                request.filter(&|p| contains(GROUP_FILTERABLE, p))?,
                request.search(&|p| contains(GROUP_SEARCHABLE, p))?,
            );
            let dir = request.dir;
            let keep = group_predicate(dir, filter.as_ref(), search.as_ref());
            request.count_only(count_matching(
                dir.groups.len(),
                |i| live_group(dir, i),
                keep,
            ))
        }
        Endpoint::Group(id) => get_group(request, id),
        Endpoint::GroupMembers {
            group,
            transitive,
            count,
            cast,
        } => {
            let slot = request.group_slot(group)?;
            let members = if *transitive {
                request.dir.transitive_members(slot)
            } else {
                request
                    .dir
                    .group(slot)
                    .map(|g| g.members.clone())
                    .unwrap_or_default()
            };
            list_members(
                request,
                &members,
                *count,
                *cast,
                *transitive,
                if *transitive {
                    "transitiveMembers"
                } else {
                    "members"
                },
            )
        }
        Endpoint::GroupMemberOf {
            group,
            transitive,
            count,
            cast,
        } => {
            let slot = request.group_slot(group)?;
            let groups = if *transitive {
                request.dir.transitive_member_of(Member::Group(slot))
            } else {
                request.dir.member_of(Member::Group(slot))
            };
            let members: Vec<Member> = groups.into_iter().map(Member::Group).collect();
            list_members(
                request,
                &members,
                *count,
                *cast,
                *transitive,
                "groupMemberOf",
            )
        }
        Endpoint::UsersDelta | Endpoint::GroupsDelta | Endpoint::Batch => Err(
            GraphError::bad_request("BadRequest", "Unsupported request."),
        ),
    }
}

fn live_user(dir: &Directory, position: usize) -> Option<u32> {
    let slot = u32::try_from(position).ok()?;
    dir.user(slot).map(|_| slot)
}

fn live_group(dir: &Directory, position: usize) -> Option<u32> {
    let slot = u32::try_from(position).ok()?;
    dir.group(slot).map(|_| slot)
}

fn user_predicate<'a>(
    dir: &'a Directory,
    filter: Option<&'a Filter>,
    search: Option<&'a Search>,
) -> impl Fn(&u32) -> bool + 'a {
    move |slot: &u32| {
        let Some(user) = dir.user(*slot) else {
            return false;
        };
        let property = |name: &str| user_property(dir, *slot, user, name).map(|(_, v)| v);
        filter.is_none_or(|f| f.matches(&property)) && search.is_none_or(|s| s.matches(&property))
    }
}

fn group_predicate<'a>(
    dir: &'a Directory,
    filter: Option<&'a Filter>,
    search: Option<&'a Search>,
) -> impl Fn(&u32) -> bool + 'a {
    move |slot: &u32| {
        let Some(group) = dir.group(*slot) else {
            return false;
        };
        let property = |name: &str| group_property(dir, *slot, group, name).map(|(_, v)| v);
        filter.is_none_or(|f| f.matches(&property)) && search.is_none_or(|s| s.matches(&property))
    }
}

/// `$orderby`: `displayName` (and `userPrincipalName` for users) work without advanced
/// parameters; `$orderby` with `$filter` needs them ([spec 8c]).
fn order_by(
    request: &Request<'_>,
    allowed: &[&str],
    has_filter: bool,
) -> Result<Option<(&'static str, bool)>, GraphError> {
    let Some(orderby) = &request.query.orderby else {
        return Ok(None);
    };
    let mut parts = orderby.split_whitespace();
    let property = parts.next().unwrap_or_default();
    let descending = match parts.next() {
        None => false,
        Some(d) if d.eq_ignore_ascii_case("asc") => false,
        Some(d) if d.eq_ignore_ascii_case("desc") => true,
        Some(_) => {
            return Err(GraphError::bad_request(
                "BadRequest",
                format!("Invalid $orderby: {orderby}"),
            ));
        }
    };
    let Some(property) = ["displayName", "userPrincipalName"]
        .into_iter()
        .find(|p| p.eq_ignore_ascii_case(property) && contains(allowed, p))
    else {
        return Err(GraphError::bad_request(
            "Request_UnsupportedQuery",
            "Sorting not supported for current query.",
        ));
    };
    if has_filter && !request.advanced() {
        return Err(GraphError::bad_request(
            "Request_UnsupportedQuery",
            "Unsupported Query.",
        ));
    }
    Ok(Some((property, descending)))
}

fn list_users(request: &Request<'_>) -> Result<Response, GraphError> {
    request.no_expand()?;
    if request.query.skip.is_some() {
        return Err(GraphError::bad_request(
            "Request_BadRequest",
            "'$skip' is not supported by the service.",
        ));
    }
    let top = request.query.page_size(100)?;
    let select = request.query.selected(&is_user_property, "user")?;
    if let Some(names) = &select
        && names.iter().any(|n| contains(USER_SINGLE_ONLY, n))
    {
        // error-delta-property-not-supported-501.json
        return Err(GraphError::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "This operation target is not yet supported.",
        ));
    }
    let filter = request.filter(&|p| contains(USER_FILTERABLE, p))?;
    let search = request.search(&|p| contains(USER_SEARCHABLE, p))?;
    let order = order_by(
        request,
        &["displayName", "userPrincipalName"],
        filter.is_some(),
    )?;
    let dir = request.dir;
    let start = decode_skiptoken(
        request.tenant_id,
        "users",
        request.query.skiptoken.as_deref(),
    )?;
    let keep = user_predicate(dir, filter.as_ref(), search.as_ref());
    let sorted = match order {
        Some(("displayName", _)) => Some(dir.users_by_display_name()),
        Some((_, _)) => {
            let mut slots: Vec<u32> = (0..dir.users.len())
                .filter_map(|i| live_user(dir, i))
                .collect();
            slots
                .sort_by_cached_key(|s| dir.user(*s).map(|u| u.user_principal_name.to_lowercase()));
            Some(std::sync::Arc::new(slots))
        }
        None => None,
    };
    let descending = order.is_some_and(|(_, d)| d);
    let (len, at): (usize, Box<dyn Fn(usize) -> Option<u32>>) = match &sorted {
        Some(slots) => {
            let slots = std::sync::Arc::clone(slots);
            let len = slots.len();
            (
                len,
                Box::new(move |i| slots.get(if descending { len - 1 - i } else { i }).copied()),
            )
        }
        None => (dir.users.len(), Box::new(|i| live_user(dir, i))),
    };
    let count = request
        .wants_count()
        .then(|| count_matching(len, &at, &keep));
    let (slots, next) = page_positions(len, start, top, &at, &keep);
    let next_link = next.map(|p| {
        request.next_link(
            "$skiptoken",
            &encode_skiptoken(request.tenant_id, "users", p),
        )
    });
    let context = request.context("users", select.as_deref(), "");
    let items = slots.into_iter().filter_map(|s| {
        dir.user(s)
            .map(|u| user_json(dir, s, u, select.as_deref(), false))
    });
    Ok(json_response(
        StatusCode::OK,
        write_page(&context, count, next_link.as_deref(), None, items),
    ))
}

fn get_user(request: &Request<'_>, user: &UserRef) -> Result<Response, GraphError> {
    request.no_expand()?;
    let slot = request.user_slot(user)?;
    let select = request.query.selected(&is_user_property, "user")?;
    let dir = request.dir;
    let Some(u) = dir.user(slot) else {
        return Err(GraphError::not_found("user"));
    };
    let map = user_json(dir, slot, u, select.as_deref(), false);
    Ok(single(
        select.as_deref(),
        request.context("users", select.as_deref(), "/$entity"),
        map,
    ))
}

fn list_groups(request: &Request<'_>) -> Result<Response, GraphError> {
    request.no_expand()?;
    let top = request.query.page_size(100)?;
    let select = request.query.selected(&is_group_property, "group")?;
    if let Some(names) = &select
        && names.iter().any(|n| contains(GROUP_SINGLE_ONLY, n))
    {
        return Err(GraphError::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "This operation target is not yet supported.",
        ));
    }
    let filter = request.filter(&|p| contains(GROUP_FILTERABLE, p))?;
    let search = request.search(&|p| contains(GROUP_SEARCHABLE, p))?;
    let order = order_by(request, &["displayName"], filter.is_some())?;
    let dir = request.dir;
    let start = decode_skiptoken(
        request.tenant_id,
        "groups",
        request.query.skiptoken.as_deref(),
    )?;
    let keep = group_predicate(dir, filter.as_ref(), search.as_ref());
    let mut slots: Vec<u32> = (0..dir.groups.len())
        .filter_map(|i| live_group(dir, i))
        .collect();
    if let Some((_, descending)) = order {
        slots.sort_by_cached_key(|s| dir.group(*s).map(|g| g.display_name.to_lowercase()));
        if descending {
            slots.reverse();
        }
    }
    let at = |i: usize| slots.get(i).copied();
    let count = request
        .wants_count()
        .then(|| count_matching(slots.len(), at, &keep));
    let (page, next) = page_positions(slots.len(), start, top, at, &keep);
    let next_link = next.map(|p| {
        request.next_link(
            "$skiptoken",
            &encode_skiptoken(request.tenant_id, "groups", p),
        )
    });
    let context = request.context("groups", select.as_deref(), "");
    let items = page.into_iter().filter_map(|s| {
        dir.group(s)
            .map(|g| group_json(dir, s, g, select.as_deref(), false))
    });
    Ok(json_response(
        StatusCode::OK,
        write_page(&context, count, next_link.as_deref(), None, items),
    ))
}

fn get_group(request: &Request<'_>, id: &str) -> Result<Response, GraphError> {
    request.no_expand()?;
    let slot = request.group_slot(id)?;
    let select = request.query.selected(&is_group_property, "group")?;
    let dir = request.dir;
    let Some(group) = dir.group(slot) else {
        return Err(GraphError::not_found(id));
    };
    let mut names = select.clone();
    // Exchange-backed properties come back with the id (group-get-select.json).
    if let Some(list) = &mut names
        && list.iter().any(|n| contains(GROUP_SINGLE_ONLY, n))
        && !list.iter().any(|n| n.eq_ignore_ascii_case("id"))
    {
        list.insert(0, "id".into());
    }
    let map = group_json(dir, slot, group, names.as_deref(), false);
    Ok(single(
        select.as_deref(),
        request.context("groups", select.as_deref(), "/$entity"),
        map,
    ))
}

/// A page of a directoryObject collection (members, transitiveMembers, memberOf).
/// A page of a directoryObject collection (members, transitiveMembers, memberOf), or
/// with an `OData` cast only its users or groups, without `@odata.type`.
fn list_members(
    request: &Request<'_>,
    members: &[Member],
    count_only: bool,
    cast: Option<Cast>,
    transitive: bool,
    tag: &str,
) -> Result<Response, GraphError> {
    request.no_expand()?;
    // A cast on a transitive list is an advanced query ([spec 8c]).
    if cast.is_some()
        && transitive
        && !(request.eventual() && (count_only || request.query.count_requested()))
    {
        return Err(GraphError::bad_request(
            "Request_UnsupportedQuery",
            "Unsupported Query.",
        ));
    }
    let (type_name, entity_set) = match cast {
        None => ("directoryObject", "directoryObjects"),
        Some(Cast::User) => ("user", "users"),
        Some(Cast::Group) => ("group", "groups"),
    };
    let known = |p: &str| match cast {
        None => is_user_property(p) || is_group_property(p),
        Some(Cast::User) => is_user_property(p),
        Some(Cast::Group) => is_group_property(p),
    };
    let filter =
        request.filter(&|p| contains(USER_FILTERABLE, p) || contains(GROUP_FILTERABLE, p))?;
    let search =
        request.search(&|p| contains(USER_SEARCHABLE, p) || contains(GROUP_SEARCHABLE, p))?;
    let dir = request.dir;
    let keep = |m: &Member| {
        let property = |name: &str| member_value(dir, *m, name);
        cast.is_none_or(|c| c.admits(*m))
            && filter.as_ref().is_none_or(|f| f.matches(&property))
            && search.as_ref().is_none_or(|s| s.matches(&property))
    };
    let at = |i: usize| members.get(i).copied();
    if count_only {
        return request.count_only(count_matching(members.len(), at, keep));
    }
    let top = request.query.page_size(100)?;
    let select = request.query.selected(&known, type_name)?;
    let start = decode_skiptoken(request.tenant_id, tag, request.query.skiptoken.as_deref())?;
    let count = request
        .wants_count()
        .then(|| count_matching(members.len(), at, keep));
    let (page, next) = page_positions(members.len(), start, top, at, keep);
    let next_link =
        next.map(|p| request.next_link("$skiptoken", &encode_skiptoken(request.tenant_id, tag, p)));
    let context = request.context(entity_set, select.as_deref(), "");
    let items = page.into_iter().filter_map(|m| match (cast, m) {
        (None, m) => object_json(dir, m, select.as_deref()),
        (Some(_), Member::User(s)) => dir
            .user(s)
            .map(|u| user_json(dir, s, u, select.as_deref(), false)),
        (Some(_), Member::Group(s)) => dir
            .group(s)
            .map(|g| group_json(dir, s, g, select.as_deref(), false)),
    });
    Ok(json_response(
        StatusCode::OK,
        write_page(&context, count, next_link.as_deref(), None, items),
    ))
}

/// Photo sizes Graph names ([spec 13]); the stored photo is 96x96, so larger sizes are
/// not available for it.
const PHOTO_SIZES: &[u32] = &[48, 64, 96, 120, 240, 360, 432, 504, 648];
const STORED_PHOTO_SIZE: u32 = 96;

fn no_photo() -> GraphError {
    // [spec 13]: 404 when there is no photo; the code is UNCONFIRMED, third-party mocks use
    // ImageNotFound.
    GraphError::new(
        StatusCode::NOT_FOUND,
        "ImageNotFound",
        "The photo wasn't found.",
    )
}

fn photo_metadata(request: &Request<'_>, user: &UserRef) -> Result<Response, GraphError> {
    let slot = request.user_slot(user)?;
    let dir = request.dir;
    let photo = dir.user(slot).and_then(|u| u.photo).ok_or_else(no_photo)?;
    let id = dir.user_ids[slot as usize];
    let body = json!({
        "@odata.context": format!("{}/$metadata#users('{id}')/photo/$entity", request.graph_base),
        "@odata.id": format!("{}/users('{id}')/photo", request.graph_base),
        "@odata.mediaContentType": "image/png",
        "@odata.mediaEtag": format!("\"{photo:08X}\""),
        "id": format!("{STORED_PHOTO_SIZE}X{STORED_PHOTO_SIZE}"),
        "width": STORED_PHOTO_SIZE,
        "height": STORED_PHOTO_SIZE,
    });
    Ok(json_response(StatusCode::OK, body.to_string().into_bytes()))
}

fn photo_value(
    request: &Request<'_>,
    user: &UserRef,
    requested: Option<&str>,
) -> Result<Response, GraphError> {
    let slot = request.user_slot(user)?;
    let photo = request
        .dir
        .user(slot)
        .and_then(|u| u.photo)
        .ok_or_else(no_photo)?;
    let edge = match requested {
        None => STORED_PHOTO_SIZE,
        Some(name) => {
            let parsed = name
                .to_ascii_lowercase()
                .split_once('x')
                .filter(|(w, h)| w == h)
                .and_then(|(w, _)| w.parse::<u32>().ok())
                .filter(|s| PHOTO_SIZES.contains(s));
            match parsed {
                Some(edge) if edge <= STORED_PHOTO_SIZE => edge,
                _ => return Err(no_photo()),
            }
        }
    };
    let mut response = Response::new(Body::from(photo_png(photo, edge)));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{photo:08X}\"")) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_decode_to_endpoints() {
        assert_eq!(Endpoint::parse("/users"), Some(Endpoint::Users));
        assert_eq!(Endpoint::parse("/users/$count"), Some(Endpoint::UsersCount));
        assert_eq!(Endpoint::parse("/users/delta"), Some(Endpoint::UsersDelta));
        assert_eq!(
            Endpoint::parse("/users/a_b.com%23EXT%23@contoso.com/memberOf"),
            Some(Endpoint::UserMemberOf {
                user: UserRef::Id("a_b.com#EXT#@contoso.com".into()),
                transitive: false,
                count: false,
                cast: None
            })
        );
        assert_eq!(
            Endpoint::parse("/me/photos/48x48/$value"),
            Some(Endpoint::PhotoValue {
                user: UserRef::Me,
                size: Some("48x48".into())
            })
        );
        assert_eq!(
            Endpoint::parse("/groups/g/transitiveMembers/$count"),
            Some(Endpoint::GroupMembers {
                group: "g".into(),
                transitive: true,
                count: true,
                cast: None
            })
        );
        assert_eq!(
            Endpoint::parse("/groups/g/members/microsoft.graph.user/$count"),
            Some(Endpoint::GroupMembers {
                group: "g".into(),
                transitive: false,
                count: true,
                cast: Some(Cast::User)
            })
        );
        assert_eq!(
            Endpoint::parse("/me/memberOf/microsoft.graph.group"),
            Some(Endpoint::UserMemberOf {
                user: UserRef::Me,
                transitive: false,
                count: false,
                cast: Some(Cast::Group)
            })
        );
        assert_eq!(
            Endpoint::parse("/groups/g/members/microsoft.graph.device"),
            None
        );
        assert_eq!(Endpoint::parse("/$batch"), Some(Endpoint::Batch));
        assert_eq!(Endpoint::parse("/sites"), None);
        assert_eq!(Endpoint::parse("/users/x/drive"), None);
    }

    #[test]
    fn costs_follow_the_resource_unit_table() {
        let q = |raw: &str| Query::parse(Some(raw));
        assert_eq!(Endpoint::Users.cost(&q("")), 2);
        assert_eq!(Endpoint::Users.cost(&q("$select=id")), 1);
        assert_eq!(Endpoint::Users.cost(&q("$select=id&$top=5")), 1);
        assert_eq!(
            Endpoint::GroupMembers {
                group: String::new(),
                transitive: false,
                count: false,
                cast: None
            }
            .cost(&q("")),
            3
        );
        assert_eq!(
            Endpoint::GroupMembers {
                group: String::new(),
                transitive: true,
                count: false,
                cast: None
            }
            .cost(&q("$top=10")),
            4
        );
        assert_eq!(Endpoint::Groups.cost(&q("")), 1);
        assert_eq!(Endpoint::Batch.cost(&q("")), 0);
    }

    #[test]
    fn scopes_are_checked_per_endpoint() {
        let grant = |scopes: &[&str]| BearerGrant {
            tenant: 0,
            user_id: "u".into(),
            scopes: scopes.iter().map(|s| (*s).to_string()).collect(),
        };
        let users = grant(&["User.Read.All"]);
        let groups = grant(&["Group.Read.All"]);
        let both = grant(&["user.read.all", "Group.Read.All"]);
        assert!(Endpoint::Users.authorize(&users).is_ok());
        assert!(
            Endpoint::Users
                .authorize(&groups)
                .is_err_and(|e| e.status() == StatusCode::FORBIDDEN
                    && e.code() == "Authorization_RequestDenied")
        );
        assert!(Endpoint::Groups.authorize(&groups).is_ok());
        assert!(Endpoint::Groups.authorize(&users).is_err());
        let member_of = Endpoint::UserMemberOf {
            user: UserRef::Id("x".into()),
            transitive: false,
            count: false,
            cast: None,
        };
        assert!(member_of.authorize(&users).is_err());
        assert!(member_of.authorize(&groups).is_err());
        assert!(member_of.authorize(&both).is_ok());
        assert!(
            Endpoint::User(UserRef::Me)
                .authorize(&grant(&["User.Read"]))
                .is_ok()
        );
    }

    #[test]
    fn components_keep_odata_characters_readable() {
        assert_eq!(encode_component("$filter"), "$filter");
        assert_eq!(
            encode_component("startswith(displayName,'A b')"),
            "startswith(displayName,'A%20b')"
        );
        assert_eq!(encode_component("a&b=c#"), "a%26b%3Dc%23");
    }

    #[test]
    fn page_positions_reports_the_next_match() {
        let items: Vec<u32> = (0..10).collect();
        let (page, next) = page_positions(10, 0, 3, |i| items.get(i).copied(), |x| x % 2 == 0);
        assert_eq!(page, vec![0, 2, 4]);
        assert_eq!(next, Some(6));
        let (page, next) = page_positions(10, 6, 3, |i| items.get(i).copied(), |x| x % 2 == 0);
        assert_eq!(page, vec![6, 8]);
        assert_eq!(next, None);
    }
}
