//! [`User`]: the profile properties a directory or e-mail-signature product reads.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::directory_object::DirectoryObject;
use super::{ObjectId, Removed, timestamp};

/// A Microsoft Entra user as Graph returns it (`microsoft.graph.user`).
///
/// Every property is optional: Graph returns only the default set unless `$select` asks
/// for more (spec 8b), "limited information" objects carry only the id, and some documented
/// delta items even lack the id. Any other selected property lands in [`extra`](User::extra).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct User {
    /// Object id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    /// Name shown in the address book.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// First name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// Last name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub surname: Option<String>,
    /// Primary SMTP address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mail: Option<String>,
    /// Sign-in name (UPN).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_principal_name: Option<String>,
    /// Mail alias.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mail_nickname: Option<String>,
    /// Additional e-mail addresses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_mails: Vec<String>,
    /// Proxy addresses (`SMTP:` is the primary).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub proxy_addresses: Vec<String>,
    /// Instant-messaging (SIP) addresses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub im_addresses: Vec<String>,
    /// Job title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_title: Option<String>,
    /// Department.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Company name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub company_name: Option<String>,
    /// Office location.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub office_location: Option<String>,
    /// Business phone numbers (Graph allows one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub business_phones: Vec<String>,
    /// Mobile phone number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mobile_phone: Option<String>,
    /// Fax number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fax_number: Option<String>,
    /// Street address of the place of business.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub street_address: Option<String>,
    /// City.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// State or province.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Postal code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    /// Country or region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Two-letter usage location (licensing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_location: Option<String>,
    /// Employee id from the HR system.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub employee_id: Option<String>,
    /// Employee type (Employee, Contractor, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub employee_type: Option<String>,
    /// Hire date.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "timestamp::serialize"
    )]
    pub employee_hire_date: Option<OffsetDateTime>,
    /// Whether the account can sign in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_enabled: Option<bool>,
    /// `Member` or `Guest`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_type: Option<String>,
    /// Invitation state of a guest (`PendingAcceptance`, `Accepted`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_user_state: Option<String>,
    /// When the user was created.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "timestamp::serialize"
    )]
    pub created_date_time: Option<OffsetDateTime>,
    /// When the user was deleted (deleted items only).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "timestamp::serialize"
    )]
    pub deleted_date_time: Option<OffsetDateTime>,
    /// Preferred language (ISO 639-1, e.g. `en-US`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_language: Option<String>,
    /// True when synced from on-premises Active Directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_premises_sync_enabled: Option<bool>,
    /// On-premises immutable id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_premises_immutable_id: Option<String>,
    /// On-premises `sAMAccountName`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_premises_sam_account_name: Option<String>,
    /// On-premises UPN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_premises_user_principal_name: Option<String>,
    /// On-premises domain (FQDN).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_premises_domain_name: Option<String>,
    /// On-premises distinguished name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_premises_distinguished_name: Option<String>,
    /// On-premises SID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_premises_security_identifier: Option<String>,
    /// Last on-premises sync.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "timestamp::serialize"
    )]
    pub on_premises_last_sync_date_time: Option<OffsetDateTime>,
    /// `onPremisesExtensionAttributes` (extension attributes 1-15 from Exchange / AD),
    /// boxed: fifteen strings inline would make every user of a page 360 bytes larger.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_premises_extension_attributes: Option<Box<OnPremisesExtensionAttributes>>,
    /// The manager, when the request used `$expand=manager`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manager: Option<Box<DirectoryObject>>,
    /// The delta `@removed` marker; delta turns it into [`DeltaChange::Removed`](crate::DeltaChange::Removed).
    #[serde(rename = "@removed", skip_serializing_if = "Option::is_none")]
    pub(crate) removed: Option<Removed>,
    /// Every other property in the response (`@odata.*` annotations, schema extensions,
    /// properties selected by name that this model does not type).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

super::decode::deserialize_model!(User, "a Graph user object", {
    "id" => id: value,
    "displayName" => display_name: value,
    "givenName" => given_name: value,
    "surname" => surname: value,
    "mail" => mail: value,
    "userPrincipalName" => user_principal_name: value,
    "mailNickname" => mail_nickname: value,
    "otherMails" => other_mails: list,
    "proxyAddresses" => proxy_addresses: list,
    "imAddresses" => im_addresses: list,
    "jobTitle" => job_title: value,
    "department" => department: value,
    "companyName" => company_name: value,
    "officeLocation" => office_location: value,
    "businessPhones" => business_phones: list,
    "mobilePhone" => mobile_phone: value,
    "faxNumber" => fax_number: value,
    "streetAddress" => street_address: value,
    "city" => city: value,
    "state" => state: value,
    "postalCode" => postal_code: value,
    "country" => country: value,
    "usageLocation" => usage_location: value,
    "employeeId" => employee_id: value,
    "employeeType" => employee_type: value,
    "employeeHireDate" => employee_hire_date: time,
    "accountEnabled" => account_enabled: value,
    "userType" => user_type: value,
    "externalUserState" => external_user_state: value,
    "createdDateTime" => created_date_time: time,
    "deletedDateTime" => deleted_date_time: time,
    "preferredLanguage" => preferred_language: value,
    "onPremisesSyncEnabled" => on_premises_sync_enabled: value,
    "onPremisesImmutableId" => on_premises_immutable_id: value,
    "onPremisesSamAccountName" => on_premises_sam_account_name: value,
    "onPremisesUserPrincipalName" => on_premises_user_principal_name: value,
    "onPremisesDomainName" => on_premises_domain_name: value,
    "onPremisesDistinguishedName" => on_premises_distinguished_name: value,
    "onPremisesSecurityIdentifier" => on_premises_security_identifier: value,
    "onPremisesLastSyncDateTime" => on_premises_last_sync_date_time: time,
    "onPremisesExtensionAttributes" => on_premises_extension_attributes: value,
    "manager" => manager: value,
    "@removed" => removed: value,
});

/// `onPremisesExtensionAttributes`: the fifteen Exchange custom attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
#[expect(
    missing_docs,
    reason = "fifteen numbered attributes named as Graph names them"
)]
pub struct OnPremisesExtensionAttributes {
    pub extension_attribute1: Option<String>,
    pub extension_attribute2: Option<String>,
    pub extension_attribute3: Option<String>,
    pub extension_attribute4: Option<String>,
    pub extension_attribute5: Option<String>,
    pub extension_attribute6: Option<String>,
    pub extension_attribute7: Option<String>,
    pub extension_attribute8: Option<String>,
    pub extension_attribute9: Option<String>,
    pub extension_attribute10: Option<String>,
    pub extension_attribute11: Option<String>,
    pub extension_attribute12: Option<String>,
    pub extension_attribute13: Option<String>,
    pub extension_attribute14: Option<String>,
    pub extension_attribute15: Option<String>,
}

/// A typed `$select` name for [`User`]; any `AsRef<str>` works too for other properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UserProperty {
    /// `id`
    Id,
    /// `displayName`
    DisplayName,
    /// `givenName`
    GivenName,
    /// `surname`
    Surname,
    /// `mail`
    Mail,
    /// `userPrincipalName`
    UserPrincipalName,
    /// `mailNickname`
    MailNickname,
    /// `otherMails`
    OtherMails,
    /// `proxyAddresses`
    ProxyAddresses,
    /// `imAddresses`
    ImAddresses,
    /// `jobTitle`
    JobTitle,
    /// `department`
    Department,
    /// `companyName`
    CompanyName,
    /// `officeLocation`
    OfficeLocation,
    /// `businessPhones`
    BusinessPhones,
    /// `mobilePhone`
    MobilePhone,
    /// `faxNumber`
    FaxNumber,
    /// `streetAddress`
    StreetAddress,
    /// `city`
    City,
    /// `state`
    State,
    /// `postalCode`
    PostalCode,
    /// `country`
    Country,
    /// `usageLocation`
    UsageLocation,
    /// `employeeId`
    EmployeeId,
    /// `employeeType`
    EmployeeType,
    /// `employeeHireDate`
    EmployeeHireDate,
    /// `accountEnabled`
    AccountEnabled,
    /// `userType`
    UserType,
    /// `externalUserState`
    ExternalUserState,
    /// `createdDateTime`
    CreatedDateTime,
    /// `deletedDateTime`
    DeletedDateTime,
    /// `preferredLanguage`
    PreferredLanguage,
    /// `onPremisesSyncEnabled`
    OnPremisesSyncEnabled,
    /// `onPremisesImmutableId`
    OnPremisesImmutableId,
    /// `onPremisesSamAccountName`
    OnPremisesSamAccountName,
    /// `onPremisesUserPrincipalName`
    OnPremisesUserPrincipalName,
    /// `onPremisesDomainName`
    OnPremisesDomainName,
    /// `onPremisesDistinguishedName`
    OnPremisesDistinguishedName,
    /// `onPremisesSecurityIdentifier`
    OnPremisesSecurityIdentifier,
    /// `onPremisesLastSyncDateTime`
    OnPremisesLastSyncDateTime,
    /// `onPremisesExtensionAttributes`
    OnPremisesExtensionAttributes,
}

impl UserProperty {
    /// Every property the [`User`] model types: `.select(UserProperty::ALL)` reads a full profile.
    pub const ALL: &'static [UserProperty] = &[
        Self::Id,
        Self::DisplayName,
        Self::GivenName,
        Self::Surname,
        Self::Mail,
        Self::UserPrincipalName,
        Self::MailNickname,
        Self::OtherMails,
        Self::ProxyAddresses,
        Self::ImAddresses,
        Self::JobTitle,
        Self::Department,
        Self::CompanyName,
        Self::OfficeLocation,
        Self::BusinessPhones,
        Self::MobilePhone,
        Self::FaxNumber,
        Self::StreetAddress,
        Self::City,
        Self::State,
        Self::PostalCode,
        Self::Country,
        Self::UsageLocation,
        Self::EmployeeId,
        Self::EmployeeType,
        Self::EmployeeHireDate,
        Self::AccountEnabled,
        Self::UserType,
        Self::ExternalUserState,
        Self::CreatedDateTime,
        Self::DeletedDateTime,
        Self::PreferredLanguage,
        Self::OnPremisesSyncEnabled,
        Self::OnPremisesImmutableId,
        Self::OnPremisesSamAccountName,
        Self::OnPremisesUserPrincipalName,
        Self::OnPremisesDomainName,
        Self::OnPremisesDistinguishedName,
        Self::OnPremisesSecurityIdentifier,
        Self::OnPremisesLastSyncDateTime,
        Self::OnPremisesExtensionAttributes,
    ];

    /// The Graph name of the property.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::DisplayName => "displayName",
            Self::GivenName => "givenName",
            Self::Surname => "surname",
            Self::Mail => "mail",
            Self::UserPrincipalName => "userPrincipalName",
            Self::MailNickname => "mailNickname",
            Self::OtherMails => "otherMails",
            Self::ProxyAddresses => "proxyAddresses",
            Self::ImAddresses => "imAddresses",
            Self::JobTitle => "jobTitle",
            Self::Department => "department",
            Self::CompanyName => "companyName",
            Self::OfficeLocation => "officeLocation",
            Self::BusinessPhones => "businessPhones",
            Self::MobilePhone => "mobilePhone",
            Self::FaxNumber => "faxNumber",
            Self::StreetAddress => "streetAddress",
            Self::City => "city",
            Self::State => "state",
            Self::PostalCode => "postalCode",
            Self::Country => "country",
            Self::UsageLocation => "usageLocation",
            Self::EmployeeId => "employeeId",
            Self::EmployeeType => "employeeType",
            Self::EmployeeHireDate => "employeeHireDate",
            Self::AccountEnabled => "accountEnabled",
            Self::UserType => "userType",
            Self::ExternalUserState => "externalUserState",
            Self::CreatedDateTime => "createdDateTime",
            Self::DeletedDateTime => "deletedDateTime",
            Self::PreferredLanguage => "preferredLanguage",
            Self::OnPremisesSyncEnabled => "onPremisesSyncEnabled",
            Self::OnPremisesImmutableId => "onPremisesImmutableId",
            Self::OnPremisesSamAccountName => "onPremisesSamAccountName",
            Self::OnPremisesUserPrincipalName => "onPremisesUserPrincipalName",
            Self::OnPremisesDomainName => "onPremisesDomainName",
            Self::OnPremisesDistinguishedName => "onPremisesDistinguishedName",
            Self::OnPremisesSecurityIdentifier => "onPremisesSecurityIdentifier",
            Self::OnPremisesLastSyncDateTime => "onPremisesLastSyncDateTime",
            Self::OnPremisesExtensionAttributes => "onPremisesExtensionAttributes",
        }
    }
}

impl AsRef<str> for UserProperty {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl User {
    /// The object id, if Graph sent one.
    pub fn object_id(&self) -> Option<&ObjectId> {
        self.id.as_ref()
    }
}
