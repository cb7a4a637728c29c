//! Microsoft Entra built-in directory roles a simulated user can hold, by template id.
//!
//! Template ids, names and descriptions are those of Learn, *Microsoft Entra built-in
//! roles* (MicrosoftDocs/entra-docs `docs/identity/role-based-access-control/permissions-reference.md`
//! @00fe95d6, table "All roles"). Graph lists the roles a user holds as
//! `directoryRole` objects in `memberOf` (`/me/memberOf/microsoft.graph.directoryRole`);
//! Entra puts their template ids in the `wids` claim when the app's manifest asks for
//! directory roles (`groupMembershipClaims` `DirectoryRole` or `All`;
//! access-token-claims-reference.md, reference-app-manifest.md).

use serde::{Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A built-in Microsoft Entra role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DirectoryRole {
    /// Global Administrator: manages everything; may grant tenant-wide consent.
    GlobalAdministrator,
    /// Privileged Role Administrator: manages role assignments; may grant tenant-wide
    /// consent to any permission.
    PrivilegedRoleAdministrator,
    /// Cloud Application Administrator: manages app registrations and enterprise apps
    /// (not App Proxy); may grant tenant-wide consent to delegated permissions.
    CloudApplicationAdministrator,
    /// Application Administrator: manages app registrations and enterprise apps; may grant
    /// tenant-wide consent to delegated permissions.
    ApplicationAdministrator,
    /// Global Reader: reads what a Global Administrator can, changes nothing.
    GlobalReader,
    /// User Administrator: manages users and groups.
    UserAdministrator,
    /// Directory Readers: reads basic directory information.
    DirectoryReaders,
}

impl DirectoryRole {
    /// Every role the simulator knows.
    pub const ALL: [Self; 7] = [
        Self::GlobalAdministrator,
        Self::PrivilegedRoleAdministrator,
        Self::CloudApplicationAdministrator,
        Self::ApplicationAdministrator,
        Self::GlobalReader,
        Self::UserAdministrator,
        Self::DirectoryReaders,
    ];

    /// The role's template id (`roleTemplateId`, the value in `wids`), the same in every
    /// tenant.
    pub fn template_id(self) -> &'static str {
        match self {
            Self::GlobalAdministrator => "62e90394-69f5-4237-9190-012177145e10",
            Self::PrivilegedRoleAdministrator => "e8611ab8-c189-46e8-94e1-60213ab1f814",
            Self::CloudApplicationAdministrator => "158c047a-c907-4556-b7ef-446551a6b5f7",
            Self::ApplicationAdministrator => "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3",
            Self::GlobalReader => "f2ef992c-3afb-46b9-b7cf-a126ee74c451",
            Self::UserAdministrator => "fe930be7-5e62-47db-91af-98c3a49a38b1",
            Self::DirectoryReaders => "88d8e3e3-8f55-4a1e-953a-9b9898b8876b",
        }
    }

    /// The role's `displayName`.
    pub fn display_name(self) -> &'static str {
        match self {
            Self::GlobalAdministrator => "Global Administrator",
            Self::PrivilegedRoleAdministrator => "Privileged Role Administrator",
            Self::CloudApplicationAdministrator => "Cloud Application Administrator",
            Self::ApplicationAdministrator => "Application Administrator",
            Self::GlobalReader => "Global Reader",
            Self::UserAdministrator => "User Administrator",
            Self::DirectoryReaders => "Directory Readers",
        }
    }

    /// The role's `description`, as the built-in roles table gives it.
    pub fn description(self) -> &'static str {
        match self {
            Self::GlobalAdministrator => {
                "Can manage all aspects of Microsoft Entra ID and Microsoft services that use Microsoft Entra identities."
            }
            Self::PrivilegedRoleAdministrator => {
                "Can manage role assignments in Microsoft Entra ID, and all aspects of Privileged Identity Management."
            }
            Self::CloudApplicationAdministrator => {
                "Can create and manage all aspects of app registrations and enterprise apps except App Proxy."
            }
            Self::ApplicationAdministrator => {
                "Can create and manage all aspects of app registrations and enterprise apps."
            }
            Self::GlobalReader => {
                "Can read everything that a Global Administrator can, but not update anything."
            }
            Self::UserAdministrator => {
                "Can manage all aspects of users and groups, including resetting passwords for limited admins."
            }
            Self::DirectoryReaders => {
                "Can read basic directory information. Commonly used to grant directory read access to applications and guests."
            }
        }
    }

    /// The role with this template id (case-insensitive).
    pub fn from_template_id(template_id: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|role| role.template_id().eq_ignore_ascii_case(template_id.trim()))
    }

    /// Whether a holder may grant tenant-wide (admin) consent to the delegated Graph
    /// permissions a directory-sync app asks for: Global Administrator, Privileged Role
    /// Administrator, Cloud Application Administrator and Application Administrator
    /// (the built-in roles page: the two application roles "grant the ability to consent
    /// for delegated permissions and application permissions, with the exception of
    /// application permissions for Microsoft Graph"). The simulator's sign-in pages
    /// treat such a user as an administrator.
    pub fn can_grant_tenant_wide_consent(self) -> bool {
        matches!(
            self,
            Self::GlobalAdministrator
                | Self::PrivilegedRoleAdministrator
                | Self::CloudApplicationAdministrator
                | Self::ApplicationAdministrator
        )
    }

    /// The object id of the activated role in one tenant (Graph `directoryRole.id`,
    /// distinct from the template id and different in every tenant): derived from the
    /// tenant id and the template id, so it is stable for a seed.
    pub(crate) fn object_id(self, tenant_id: &str) -> String {
        let digest = Sha256::digest(format!("{tenant_id}/{}", self.template_id()).as_bytes());
        let mut bytes = [0_u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }
}

/// Serialized as its template id.
impl Serialize for DirectoryRole {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.template_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_ids_round_trip_and_object_ids_differ_per_tenant() {
        for role in DirectoryRole::ALL {
            assert_eq!(
                DirectoryRole::from_template_id(role.template_id()),
                Some(role)
            );
            assert_eq!(
                DirectoryRole::from_template_id(&role.template_id().to_ascii_uppercase()),
                Some(role)
            );
            assert_ne!(role.object_id("a"), role.object_id("b"));
            assert_eq!(role.object_id("a"), role.object_id("a"));
            assert!(uuid::Uuid::parse_str(&role.object_id("a")).is_ok());
        }
        assert_eq!(DirectoryRole::from_template_id("x"), None);
        assert!(DirectoryRole::GlobalAdministrator.can_grant_tenant_wide_consent());
        assert!(!DirectoryRole::GlobalReader.can_grant_tenant_wide_consent());
    }
}
