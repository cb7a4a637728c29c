//! [`Group`]: a Microsoft Entra group, with its `members@delta` slice in delta rounds.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{ObjectId, Removed, RemovedReason, timestamp};

/// A Microsoft Entra group as Graph returns it (`microsoft.graph.group`).
///
/// Every property is optional (see [`User`](crate::User)); other selected properties land
/// in [`extra`](Group::extra).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Group {
    /// Object id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// SMTP address (mail-enabled groups).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mail: Option<String>,
    /// Whether the group is mail-enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mail_enabled: Option<bool>,
    /// Mail alias.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mail_nickname: Option<String>,
    /// Whether the group is a security group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_enabled: Option<bool>,
    /// `Unified` (Microsoft 365 group), `DynamicMembership`, or empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub group_types: Vec<String>,
    /// `Public`, `Private` or `HiddenMembership`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visibility: Option<String>,
    /// Dynamic membership rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub membership_rule: Option<String>,
    /// `On` or `Paused`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub membership_rule_processing_state: Option<String>,
    /// Classification (e.g. low/medium/high business impact).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classification: Option<String>,
    /// Proxy addresses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub proxy_addresses: Vec<String>,
    /// Security identifier (SID) in Entra.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_identifier: Option<String>,
    /// Whether Entra roles can be assigned to the group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_assignable_to_role: Option<bool>,
    /// Preferred language.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_language: Option<String>,
    /// When the group was created.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "timestamp::serialize"
    )]
    pub created_date_time: Option<OffsetDateTime>,
    /// When the group was deleted (deleted items only).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "timestamp::serialize"
    )]
    pub deleted_date_time: Option<OffsetDateTime>,
    /// When the group was last renewed.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "timestamp::serialize"
    )]
    pub renewed_date_time: Option<OffsetDateTime>,
    /// When the group expires, if an expiration policy applies.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "timestamp::serialize"
    )]
    pub expiration_date_time: Option<OffsetDateTime>,
    /// True when synced from on-premises Active Directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_premises_sync_enabled: Option<bool>,
    /// On-premises `sAMAccountName`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_premises_sam_account_name: Option<String>,
    /// On-premises SID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_premises_security_identifier: Option<String>,
    /// On-premises domain (FQDN).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_premises_domain_name: Option<String>,
    /// On-premises `NetBIOS` name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_premises_net_bios_name: Option<String>,
    /// Last on-premises sync.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "timestamp::serialize"
    )]
    pub on_premises_last_sync_date_time: Option<OffsetDateTime>,
    /// Membership changes in a delta round (`members@delta`), merged across pages by the
    /// delta stream (spec 9). Empty outside delta.
    #[serde(rename = "members@delta", skip_serializing_if = "Vec::is_empty")]
    pub members_delta: Vec<MemberChange>,
    /// The delta `@removed` marker.
    #[serde(rename = "@removed", skip_serializing_if = "Option::is_none")]
    pub(crate) removed: Option<Removed>,
    /// Every other property in the response.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

super::decode::deserialize_model!(Group, "a Graph group object", {
    "id" => id: value,
    "displayName" => display_name: value,
    "description" => description: value,
    "mail" => mail: value,
    "mailEnabled" => mail_enabled: value,
    "mailNickname" => mail_nickname: value,
    "securityEnabled" => security_enabled: value,
    "groupTypes" => group_types: list,
    "visibility" => visibility: value,
    "membershipRule" => membership_rule: value,
    "membershipRuleProcessingState" => membership_rule_processing_state: value,
    "classification" => classification: value,
    "proxyAddresses" => proxy_addresses: list,
    "securityIdentifier" => security_identifier: value,
    "isAssignableToRole" => is_assignable_to_role: value,
    "preferredLanguage" => preferred_language: value,
    "createdDateTime" => created_date_time: time,
    "deletedDateTime" => deleted_date_time: time,
    "renewedDateTime" => renewed_date_time: time,
    "expirationDateTime" => expiration_date_time: time,
    "onPremisesSyncEnabled" => on_premises_sync_enabled: value,
    "onPremisesSamAccountName" => on_premises_sam_account_name: value,
    "onPremisesSecurityIdentifier" => on_premises_security_identifier: value,
    "onPremisesDomainName" => on_premises_domain_name: value,
    "onPremisesNetBiosName" => on_premises_net_bios_name: value,
    "onPremisesLastSyncDateTime" => on_premises_last_sync_date_time: time,
    "members@delta" => members_delta: list,
    "@removed" => removed: value,
});

/// One entry of a group's `members@delta`: a member added, or removed (`@removed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MemberChange {
    /// The member's `@odata.type`, e.g. `#microsoft.graph.user`.
    #[serde(rename = "@odata.type", default)]
    pub odata_type: Option<String>,
    /// The member's id (ids only, spec 9).
    pub id: ObjectId,
    /// `None` when the member was added, the reason when removed.
    #[serde(rename = "@removed", default, with = "removed_reason")]
    pub removed: Option<RemovedReason>,
}

impl MemberChange {
    /// True when this entry removes the member from the group.
    pub fn is_removed(&self) -> bool {
        self.removed.is_some()
    }
}

mod removed_reason {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{Removed, RemovedReason};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<RemovedReason>, D::Error> {
        Ok(Option::<Removed>::deserialize(deserializer)?.map(|r| r.0))
    }

    #[expect(
        clippy::ref_option,
        clippy::trivially_copy_pass_by_ref,
        reason = "serde's serialize_with passes &Option<T>"
    )]
    pub(super) fn serialize<S: Serializer>(
        value: &Option<RemovedReason>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire {
            reason: &'static str,
        }
        match value {
            Some(RemovedReason::Deleted) => Some(Wire { reason: "deleted" }).serialize(serializer),
            Some(_) => Some(Wire { reason: "changed" }).serialize(serializer),
            None => serializer.serialize_none(),
        }
    }
}

/// A typed `$select` name for [`Group`]; any `AsRef<str>` works too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GroupProperty {
    /// `id`
    Id,
    /// `displayName`
    DisplayName,
    /// `description`
    Description,
    /// `mail`
    Mail,
    /// `mailEnabled`
    MailEnabled,
    /// `mailNickname`
    MailNickname,
    /// `securityEnabled`
    SecurityEnabled,
    /// `groupTypes`
    GroupTypes,
    /// `visibility`
    Visibility,
    /// `membershipRule`
    MembershipRule,
    /// `membershipRuleProcessingState`
    MembershipRuleProcessingState,
    /// `classification`
    Classification,
    /// `proxyAddresses`
    ProxyAddresses,
    /// `securityIdentifier`
    SecurityIdentifier,
    /// `isAssignableToRole`
    IsAssignableToRole,
    /// `preferredLanguage`
    PreferredLanguage,
    /// `createdDateTime`
    CreatedDateTime,
    /// `deletedDateTime`
    DeletedDateTime,
    /// `renewedDateTime`
    RenewedDateTime,
    /// `expirationDateTime`
    ExpirationDateTime,
    /// `onPremisesSyncEnabled`
    OnPremisesSyncEnabled,
    /// `onPremisesSamAccountName`
    OnPremisesSamAccountName,
    /// `onPremisesSecurityIdentifier`
    OnPremisesSecurityIdentifier,
    /// `onPremisesDomainName`
    OnPremisesDomainName,
    /// `onPremisesNetBiosName`
    OnPremisesNetBiosName,
    /// `onPremisesLastSyncDateTime`
    OnPremisesLastSyncDateTime,
    /// `members` (in delta: asks for `members@delta`).
    Members,
}

impl GroupProperty {
    /// Every property the [`Group`] model types (without `members`).
    pub const ALL: &'static [GroupProperty] = &[
        Self::Id,
        Self::DisplayName,
        Self::Description,
        Self::Mail,
        Self::MailEnabled,
        Self::MailNickname,
        Self::SecurityEnabled,
        Self::GroupTypes,
        Self::Visibility,
        Self::MembershipRule,
        Self::MembershipRuleProcessingState,
        Self::Classification,
        Self::ProxyAddresses,
        Self::SecurityIdentifier,
        Self::IsAssignableToRole,
        Self::PreferredLanguage,
        Self::CreatedDateTime,
        Self::DeletedDateTime,
        Self::RenewedDateTime,
        Self::ExpirationDateTime,
        Self::OnPremisesSyncEnabled,
        Self::OnPremisesSamAccountName,
        Self::OnPremisesSecurityIdentifier,
        Self::OnPremisesDomainName,
        Self::OnPremisesNetBiosName,
        Self::OnPremisesLastSyncDateTime,
    ];

    /// The Graph name of the property.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::DisplayName => "displayName",
            Self::Description => "description",
            Self::Mail => "mail",
            Self::MailEnabled => "mailEnabled",
            Self::MailNickname => "mailNickname",
            Self::SecurityEnabled => "securityEnabled",
            Self::GroupTypes => "groupTypes",
            Self::Visibility => "visibility",
            Self::MembershipRule => "membershipRule",
            Self::MembershipRuleProcessingState => "membershipRuleProcessingState",
            Self::Classification => "classification",
            Self::ProxyAddresses => "proxyAddresses",
            Self::SecurityIdentifier => "securityIdentifier",
            Self::IsAssignableToRole => "isAssignableToRole",
            Self::PreferredLanguage => "preferredLanguage",
            Self::CreatedDateTime => "createdDateTime",
            Self::DeletedDateTime => "deletedDateTime",
            Self::RenewedDateTime => "renewedDateTime",
            Self::ExpirationDateTime => "expirationDateTime",
            Self::OnPremisesSyncEnabled => "onPremisesSyncEnabled",
            Self::OnPremisesSamAccountName => "onPremisesSamAccountName",
            Self::OnPremisesSecurityIdentifier => "onPremisesSecurityIdentifier",
            Self::OnPremisesDomainName => "onPremisesDomainName",
            Self::OnPremisesNetBiosName => "onPremisesNetBiosName",
            Self::OnPremisesLastSyncDateTime => "onPremisesLastSyncDateTime",
            Self::Members => "members",
        }
    }
}

impl AsRef<str> for GroupProperty {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Group {
    /// The object id, if Graph sent one.
    pub fn object_id(&self) -> Option<&ObjectId> {
        self.id.as_ref()
    }
}
