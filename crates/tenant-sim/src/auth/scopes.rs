//! Scope parsing (spec §1a): space-separated; a scope without a resource prefix is a
//! Graph scope; `openid`, `profile`, `email`, `offline_access` are the OIDC scopes;
//! `{graph}/.default` stands for the app's configured permissions. Scopes of any other
//! resource are refused (this tenant serves only Graph).

use std::collections::HashSet;

use super::errors::EntraError;

/// The Graph permissions the simulated app registration is configured with: what
/// `/.default` grants.
pub(super) const CONFIGURED_PERMISSIONS: &[&str] = &[
    "User.Read",
    "User.Read.All",
    "Group.Read.All",
    "GroupMember.Read.All",
];

/// Delegated Graph permissions that only an administrator can consent to (Graph
/// permissions reference: "Admin consent required: Yes"). A non-admin asking for one of
/// these without tenant-wide consent gets AADSTS90094.
const ADMIN_ONLY: &[&str] = &[
    "User.Read.All",
    "User.ReadWrite.All",
    "Group.Read.All",
    "Group.ReadWrite.All",
    "GroupMember.Read.All",
    "GroupMember.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
    "Directory.AccessAsUser.All",
    "AuditLog.Read.All",
    "Application.Read.All",
    "Application.ReadWrite.All",
    "RoleManagement.Read.Directory",
];

/// A parsed scope request or grant.
#[expect(
    clippy::struct_excessive_bools,
    reason = "one flag per OIDC scope, as requested"
)]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ScopeSet {
    /// Graph permissions without prefix, in request order, unique (case-insensitive).
    pub(super) graph: Vec<String>,
    pub(super) openid: bool,
    pub(super) profile: bool,
    pub(super) email: bool,
    pub(super) offline_access: bool,
}

impl ScopeSet {
    /// Parses a `scope` parameter.
    pub(super) fn parse(raw: &str, graph_resource: &str) -> Result<Self, EntraError> {
        let mut set = Self::default();
        // Lower-cased Graph scopes already in `set`: a set, so that a hostile list of
        // many distinct scopes costs linear time, not a scan per scope.
        let mut seen = HashSet::new();
        let mut add = |set: &mut Self, name: &str| {
            if seen.insert(name.to_ascii_lowercase()) {
                set.graph.push(name.to_owned());
            }
        };
        let mut default_requested = false;
        let prefix = format!("{}/", graph_resource.trim_end_matches('/'));
        for scope in raw.split(' ').filter(|scope| !scope.is_empty()) {
            match scope.to_ascii_lowercase().as_str() {
                "openid" => set.openid = true,
                "profile" => set.profile = true,
                "email" => set.email = true,
                "offline_access" => set.offline_access = true,
                _ => {
                    let name = strip_prefix_ignore_case(scope, &prefix)
                        .or_else(|| strip_prefix_ignore_case(scope, "https://graph.microsoft.com/"))
                        .unwrap_or(scope);
                    if name.eq_ignore_ascii_case(".default") {
                        default_requested = true;
                    } else if is_permission_name(name) {
                        add(&mut set, name);
                    } else {
                        return Err(invalid_scope(scope));
                    }
                }
            }
        }
        if default_requested {
            // `.default` cannot be mixed with named permissions of the same resource.
            if let Some(named) = set.graph.first() {
                return Err(invalid_scope(named));
            }
            for permission in CONFIGURED_PERMISSIONS {
                add(&mut set, permission);
            }
        }
        Ok(set)
    }

    pub(super) fn has_graph(&self, name: &str) -> bool {
        self.graph
            .iter()
            .any(|have| have.eq_ignore_ascii_case(name))
    }

    /// Whether nothing at all was asked for.
    pub(super) fn is_empty(&self) -> bool {
        self.graph.is_empty()
            && !self.openid
            && !self.profile
            && !self.email
            && !self.offline_access
    }

    /// The grant of [`super::ConsentMode::MissingOneScope`]: the last Graph scope dropped.
    pub(super) fn without_last_graph(&self) -> Self {
        let mut set = self.clone();
        set.graph.pop();
        set
    }

    /// The Graph scopes of this request that need an administrator's consent.
    pub(super) fn admin_only(&self) -> Vec<String> {
        self.graph
            .iter()
            .filter(|scope| {
                ADMIN_ONLY
                    .iter()
                    .any(|admin| admin.eq_ignore_ascii_case(scope))
            })
            .cloned()
            .collect()
    }

    /// Whether every Graph scope here is in `granted` (case-insensitive).
    pub(super) fn graph_within(&self, granted: &Self) -> bool {
        self.graph.iter().all(|scope| granted.has_graph(scope))
    }

    /// The Graph scopes, each with the resource prefix (`https://graph.microsoft.com/X`),
    /// space-separated, as the admin-consent redirect gives them (spec §1b).
    pub(super) fn prefixed_graph(&self, graph_resource: &str) -> String {
        let resource = graph_resource.trim_end_matches('/');
        self.graph
            .iter()
            .map(|scope| format!("{resource}/{scope}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The token response's `scope`: the Graph scopes (prefixed or not) then the OIDC
    /// scopes, space-separated (spec §2d).
    pub(super) fn response_scope(&self, prefixed: bool, graph_resource: &str) -> String {
        let resource = graph_resource.trim_end_matches('/');
        let mut parts: Vec<String> = self
            .graph
            .iter()
            .map(|scope| {
                if prefixed {
                    format!("{resource}/{scope}")
                } else {
                    scope.clone()
                }
            })
            .collect();
        for (on, name) in [
            (self.profile, "profile"),
            (self.openid, "openid"),
            (self.email, "email"),
            (self.offline_access, "offline_access"),
        ] {
            if on {
                parts.push(name.to_owned());
            }
        }
        parts.join(" ")
    }

    /// Every scope as the consent page lists it.
    pub(super) fn display_list(&self) -> Vec<String> {
        let mut list = self.graph.clone();
        if self.openid {
            list.push("Sign you in (openid)".into());
        }
        if self.profile {
            list.push("View your basic profile (profile)".into());
        }
        if self.email {
            list.push("View your email address (email)".into());
        }
        if self.offline_access {
            list.push(
                "Maintain access to data you have given it access to (offline_access)".into(),
            );
        }
        list
    }
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

/// A Graph permission name: `User.Read.All`, `Mail.Send`, `RoleManagement.Read.Directory`.
fn is_permission_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
}

/// AADSTS70011, Entra's answer to a scope it does not know (the fixture
/// `token-error-invalid-scope.json`).
pub(super) fn invalid_scope(scope: &str) -> EntraError {
    EntraError::new(
        "invalid_scope",
        70_011,
        format!(
            "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRAPH: &str = "https://graph.microsoft.com";

    #[test]
    fn many_distinct_scopes_parse_in_linear_time() {
        // A hostile `/token` body (2 MB) can name some 200,000 distinct permissions; a
        // linear duplicate check per scope made that tens of billions of comparisons,
        // holding a runtime worker for minutes.
        let raw = (0..100_000)
            .map(|i| format!("P{i}.Read"))
            .collect::<Vec<_>>()
            .join(" ");
        let started = std::time::Instant::now();
        let set = ScopeSet::parse(&raw, GRAPH).unwrap_or_else(|e| panic!("{e:?}"));
        let took = started.elapsed();
        assert_eq!(set.graph.len(), 100_000);
        assert_eq!(set.graph[99_999], "P99999.Read");
        assert!(took < std::time::Duration::from_secs(5), "took {took:?}");
        // Duplicates still collapse, ignoring case, keeping the first spelling.
        let set = ScopeSet::parse("User.Read user.read USER.READ Mail.Send", GRAPH)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            set.graph,
            vec!["User.Read".to_string(), "Mail.Send".to_string()]
        );
    }

    #[test]
    fn unprefixed_and_prefixed_graph_scopes_are_the_same_permission() {
        let set = ScopeSet::parse(
            "openid profile offline_access User.Read.All https://graph.microsoft.com/user.read.all Group.Read.All",
            GRAPH,
        )
        .unwrap();
        assert_eq!(set.graph, vec!["User.Read.All", "Group.Read.All"]);
        assert!(set.openid && set.profile && set.offline_access && !set.email);
    }

    #[test]
    fn default_scope_grants_the_configured_permissions() {
        let set =
            ScopeSet::parse("https://graph.microsoft.com/.default offline_access", GRAPH).unwrap();
        assert_eq!(set.graph, CONFIGURED_PERMISSIONS);
        assert!(ScopeSet::parse(".default User.Read", GRAPH).is_err());
    }

    #[test]
    fn another_resource_is_invalid_scope_70011() {
        let error = ScopeSet::parse("https://foo.microsoft.com/mail.read", GRAPH).unwrap_err();
        assert_eq!((error.error, error.code), ("invalid_scope", 70_011));
        assert!(
            error
                .message
                .contains("https://foo.microsoft.com/mail.read")
        );
    }

    #[test]
    fn response_scope_prefixes_graph_scopes_on_request() {
        let set = ScopeSet::parse("openid User.Read", GRAPH).unwrap();
        assert_eq!(
            set.response_scope(true, GRAPH),
            "https://graph.microsoft.com/User.Read openid"
        );
        assert_eq!(set.response_scope(false, GRAPH), "User.Read openid");
    }

    #[test]
    fn missing_one_scope_drops_the_last_graph_scope() {
        let set =
            ScopeSet::parse("openid User.Read.All Group.Read.All offline_access", GRAPH).unwrap();
        let granted = set.without_last_graph();
        assert_eq!(granted.graph, vec!["User.Read.All"]);
        assert!(granted.openid && granted.offline_access);
        assert_eq!(set.admin_only(), vec!["User.Read.All", "Group.Read.All"]);
    }
}
