//! Routing: a `/v1.0` path to the endpoint it names, what it costs ([spec 10a]) and
//! which scopes it needs.

use axum::http::StatusCode;

use crate::auth::BearerGrant;
use crate::data::Member;

use super::error::GraphError;
use super::query::Query;

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
    /// Only on a user's `memberOf` / `transitiveMemberOf`: the user's directory roles.
    DirectoryRole,
}

impl Cast {
    pub(super) fn parse(segment: &str) -> Option<Self> {
        if segment.eq_ignore_ascii_case("microsoft.graph.user") {
            Some(Self::User)
        } else if segment.eq_ignore_ascii_case("microsoft.graph.group") {
            Some(Self::Group)
        } else if segment.eq_ignore_ascii_case("microsoft.graph.directoryRole") {
            Some(Self::DirectoryRole)
        } else {
            None
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::User => "microsoft.graph.user",
            Self::Group => "microsoft.graph.group",
            Self::DirectoryRole => "microsoft.graph.directoryRole",
        }
    }

    pub(super) fn admits(self, member: Member) -> bool {
        matches!(
            (self, member),
            (Self::User, Member::User(_)) | (Self::Group, Member::Group(_))
        )
    }
}

/// The tail of a directoryObject collection path: `[cast] [$count]`.
pub(super) fn collection_tail(rest: &[&str]) -> Option<(bool, Option<Cast>)> {
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
                // Role-assignable groups are not simulated: no group holds a role.
                if cast == Some(Cast::DirectoryRole) {
                    return None;
                }
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

    pub(super) fn user_path(user: UserRef, rest: &[&str]) -> Option<Self> {
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
            // The signed-in user's roles need `User.Read` (or a wider user scope), another
            // user's a scope that reads every user (user-list-memberof.md, "Memberships
            // for the signed-in user"); no group scope, since no group is read.
            Self::UserMemberOf {
                user,
                cast: Some(Cast::DirectoryRole),
                ..
            } => {
                let accepted: &[&str] = if *user == UserRef::Me {
                    SIGNED_IN_USER_SCOPES
                } else {
                    USER_SCOPES
                };
                return if has_scope(grant, accepted) {
                    Ok(())
                } else {
                    Err(forbidden())
                };
            }
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
        if (users && !has_scope(grant, USER_SCOPES)) || (groups && !has_scope(grant, GROUP_SCOPES))
        {
            return Err(forbidden());
        }
        Ok(())
    }
}

fn has_scope(grant: &BearerGrant, accepted: &[&str]) -> bool {
    grant
        .scopes
        .iter()
        .any(|s| accepted.iter().any(|a| a.eq_ignore_ascii_case(s)))
}

/// Graph's 403 for a missing scope ([spec 11]).
fn forbidden() -> GraphError {
    GraphError::new(
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    )
}

/// Scopes that allow reading the signed-in user's own memberships.
pub(crate) const SIGNED_IN_USER_SCOPES: &[&str] = &[
    "User.Read",
    "User.ReadWrite",
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];

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

pub(super) fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
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
        assert_eq!(
            Endpoint::parse("/me/transitiveMemberOf/microsoft.graph.directoryRole"),
            Some(Endpoint::UserMemberOf {
                user: UserRef::Me,
                transitive: true,
                count: false,
                cast: Some(Cast::DirectoryRole)
            })
        );
        assert_eq!(
            Endpoint::parse("/groups/g/members/microsoft.graph.directoryRole"),
            None,
            "no group holds a role"
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
        let roles = |user: UserRef| Endpoint::UserMemberOf {
            user,
            transitive: false,
            count: false,
            cast: Some(Cast::DirectoryRole),
        };
        assert!(roles(UserRef::Me).authorize(&grant(&["User.Read"])).is_ok());
        assert!(roles(UserRef::Me).authorize(&users).is_ok());
        assert!(roles(UserRef::Me).authorize(&groups).is_err());
        assert!(
            roles(UserRef::Id("x".into()))
                .authorize(&grant(&["User.Read"]))
                .is_err()
        );
        assert!(roles(UserRef::Id("x".into())).authorize(&users).is_ok());
    }
}
