//! Connecting requires an administrator: the person who signs in must hold a directory
//! role that can grant tenant-wide consent to the app's delegated Microsoft Graph
//! permissions, as the help article says ("You must be an admin of the O365 account").
//!
//! Without this check, anyone in a tenant whose admin consented once could link that
//! tenant to their own customer account and keep a synced copy of its directory.
//!
//! How it tells, within the granted scopes (`User.Read.All`): Graph's
//! `GET /users/{oid}/transitiveMemberOf/microsoft.graph.directoryRole` lists the roles the
//! signed-in user holds, directly or through a role-assignable group
//! ([user-list-transitivememberof]), each with its `roleTemplateId`, which is the same in
//! every tenant ([permissions-reference of the built-in roles]). The roles that can
//! grant tenant-wide admin consent to delegated permissions of Microsoft Graph are
//! Global Administrator, Privileged Role Administrator, Cloud Application Administrator
//! and Application Administrator ([grant-admin-consent]).
//!
//! - Only active role assignments are listed: an admin who is merely eligible through
//!   Privileged Identity Management must activate the role first (the refusal says so).
//! - The id token's `wids` claim carries the same role template ids, but only when the
//!   app registration's `groupMembershipClaims` asks for directory roles; whether v2.0
//!   id tokens carry it then is UNCONFIRMED, so the check asks Graph, which always works.
//! - A custom role with `microsoft.directory/servicePrincipals/managePermissionGrantsForAll.*`
//!   permissions can also consent; custom roles have their own template ids, so they are
//!   not recognised here (UNCONFIRMED how to tell them apart within these scopes).
//!
//! A service turns the check off where its customers are not administrators (the web
//! app's `Config::allow_non_admin`, `connect --allow-non-admin`).
//!
//! [user-list-transitivememberof]: https://learn.microsoft.com/graph/api/user-list-transitivememberof
//! [permissions-reference of the built-in roles]: https://learn.microsoft.com/entra/identity/role-based-access-control/permissions-reference
//! [grant-admin-consent]: https://learn.microsoft.com/entra/identity/enterprise-apps/grant-admin-consent

use entra_auth::Grant;
use entra_auth::secrecy::ExposeSecret as _;
use futures::TryStreamExt as _;
use graph_client::{DirectoryObject, GraphError, StaticToken};

/// The built-in roles that can grant tenant-wide admin consent to delegated Microsoft
/// Graph permissions: (role template id, name).
pub const CONSENTING_ROLES: [(&str, &str); 4] = [
    (
        "62e90394-69f5-4237-9190-012177145e10",
        "Global Administrator",
    ),
    (
        "e8611ab8-c189-46e8-94e1-60213ab1f814",
        "Privileged Role Administrator",
    ),
    (
        "158c047a-c907-4556-b7ef-446551a6b5f7",
        "Cloud Application Administrator",
    ),
    (
        "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3",
        "Application Administrator",
    ),
];

/// The signed-in person holds none of [`CONSENTING_ROLES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{account} is not an administrator of this Microsoft 365 tenant: connecting it needs \
     one of the roles Global Administrator, Privileged Role Administrator, Cloud \
     Application Administrator or Application Administrator (activated, if it is assigned \
     through Privileged Identity Management)"
)]
pub struct NotAnAdministrator {
    /// Who signed in (their username, or their object id).
    pub account: String,
}

/// Why the administrator check could not decide.
#[derive(Debug, thiserror::Error)]
pub enum AdminCheckError {
    /// The signed-in person is no administrator.
    #[error(transparent)]
    NotAnAdministrator(#[from] NotAnAdministrator),
    /// Graph could not list the roles (its error says whether trying again helps).
    #[error("could not read the signed-in account's directory roles")]
    Graph(#[source] GraphError),
    /// The Graph client for the cloud could not be built.
    #[error("could not reach Microsoft Graph for the administrator check: {0}")]
    Configuration(String),
}

/// The name of the consenting role the person who signed in for `grant` holds, asking
/// Graph of `cloud` with the grant's own access token.
///
/// # Errors
/// [`AdminCheckError::NotAnAdministrator`] when they hold none; the others when Graph
/// could not tell.
pub async fn require_administrator(
    cloud: &connection_store::Cloud,
    grant: &Grant,
) -> Result<&'static str, AdminCheckError> {
    let token = StaticToken::new(grant.access_token().secret().expose_secret());
    let graph = crate::glue::graph_client_with(cloud, token)
        .map_err(|error| AdminCheckError::Configuration(format!("{error:#}")))?;
    let identity = grant.identity();
    let mut roles = graph
        .users()
        .directory_roles(identity.object_id.as_str())
        .stream();
    while let Some(object) = roles.try_next().await.map_err(AdminCheckError::Graph)? {
        if let DirectoryObject::DirectoryRole(role) = object
            && let Some(name) = role
                .extra
                .get("roleTemplateId")
                .and_then(serde_json::Value::as_str)
                .and_then(consenting_role)
        {
            return Ok(name);
        }
    }
    Err(NotAnAdministrator {
        account: identity
            .preferred_username
            .clone()
            .unwrap_or_else(|| identity.object_id.as_str().to_owned()),
    }
    .into())
}

/// The name of the consenting role with template id `template`, if it is one.
pub fn consenting_role(template: &str) -> Option<&'static str> {
    CONSENTING_ROLES
        .iter()
        .find(|(id, _)| id.eq_ignore_ascii_case(template))
        .map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_consenting_roles_are_recognised_by_template_id_in_any_case() {
        assert_eq!(
            consenting_role("62E90394-69F5-4237-9190-012177145E10"),
            Some("Global Administrator")
        );
        assert_eq!(
            consenting_role("9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3"),
            Some("Application Administrator")
        );
        // User Administrator can manage users but not consent for the organization.
        assert_eq!(
            consenting_role("fe930be7-5e62-47db-91af-98c3a49a38b1"),
            None
        );
        assert_eq!(consenting_role(""), None);
    }
}
