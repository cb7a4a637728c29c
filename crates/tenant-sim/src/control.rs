//! The control API: change the directory, revoke grants, expire delta tokens, set
//! throttle and fault settings, read counters. In process through [`Control`], and over
//! HTTP under `/_sim` on the Graph listener (no bearer needed: it is the test's hand on
//! the tenant, not part of Microsoft's API).

use std::borrow::Cow;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, RawPathParams, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::Error;
use crate::auth::{AccessTokenInfo, CaeEvent, ConsentMode};
use crate::data::{Deletion, Directory, Group, Member, User, UserType};
use crate::faults::{FaultKind, FaultSettings};
use crate::roles::DirectoryRole;
use crate::server::{RequestCounters, Shared, TenantState};
use crate::throttle::ThrottleSettings;

/// Properties to set on a user (control API). Unset fields keep their value (or a
/// generated default when adding).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct UserFields {
    /// `displayName` (required when adding).
    pub display_name: Option<String>,
    /// `givenName`.
    pub given_name: Option<String>,
    /// `surname`.
    pub surname: Option<String>,
    /// `userPrincipalName`; made from the display name on the tenant's domain if unset.
    pub user_principal_name: Option<String>,
    /// `mail`.
    pub mail: Option<String>,
    /// `jobTitle`.
    pub job_title: Option<String>,
    /// `department`.
    pub department: Option<String>,
    /// `officeLocation`.
    pub office_location: Option<String>,
    /// `mobilePhone`.
    pub mobile_phone: Option<String>,
    /// `city`.
    pub city: Option<String>,
    /// `employeeId`.
    pub employee_id: Option<String>,
    /// `accountEnabled`.
    pub account_enabled: Option<bool>,
    /// `userType` (a guest added without a UPN gets an `#EXT#` one).
    pub user_type: Option<UserType>,
    /// The manager's id or UPN; an empty string removes the manager.
    pub manager: Option<String>,
}

impl UserFields {
    /// Nothing set.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets `displayName`.
    #[must_use]
    pub fn display_name(mut self, value: impl Into<String>) -> Self {
        self.display_name = Some(value.into());
        self
    }
    /// Sets `givenName`.
    #[must_use]
    pub fn given_name(mut self, value: impl Into<String>) -> Self {
        self.given_name = Some(value.into());
        self
    }
    /// Sets `surname`.
    #[must_use]
    pub fn surname(mut self, value: impl Into<String>) -> Self {
        self.surname = Some(value.into());
        self
    }
    /// Sets `userPrincipalName`.
    #[must_use]
    pub fn user_principal_name(mut self, value: impl Into<String>) -> Self {
        self.user_principal_name = Some(value.into());
        self
    }
    /// Sets `mail`.
    #[must_use]
    pub fn mail(mut self, value: impl Into<String>) -> Self {
        self.mail = Some(value.into());
        self
    }
    /// Sets `jobTitle`.
    #[must_use]
    pub fn job_title(mut self, value: impl Into<String>) -> Self {
        self.job_title = Some(value.into());
        self
    }
    /// Sets `department`.
    #[must_use]
    pub fn department(mut self, value: impl Into<String>) -> Self {
        self.department = Some(value.into());
        self
    }
    /// Sets `mobilePhone`.
    #[must_use]
    pub fn mobile_phone(mut self, value: impl Into<String>) -> Self {
        self.mobile_phone = Some(value.into());
        self
    }
    /// Sets `accountEnabled`.
    #[must_use]
    pub fn account_enabled(mut self, value: bool) -> Self {
        self.account_enabled = Some(value);
        self
    }
    /// Sets `userType`.
    #[must_use]
    pub fn user_type(mut self, value: UserType) -> Self {
        self.user_type = Some(value);
        self
    }
    /// Sets the manager (id or UPN); `""` removes it.
    #[must_use]
    pub fn manager(mut self, value: impl Into<String>) -> Self {
        self.manager = Some(value.into());
        self
    }
}

/// Properties to set on a group (control API).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct GroupFields {
    /// `displayName` (required when adding).
    pub display_name: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `mailNickname`; made from the display name if unset.
    pub mail_nickname: Option<String>,
    /// A Microsoft 365 group (`groupTypes: ["Unified"]`, mail-enabled) rather than a
    /// security group. Only when adding.
    pub unified: Option<bool>,
}

impl GroupFields {
    /// Nothing set.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets `displayName`.
    #[must_use]
    pub fn display_name(mut self, value: impl Into<String>) -> Self {
        self.display_name = Some(value.into());
        self
    }
    /// Sets `description`.
    #[must_use]
    pub fn description(mut self, value: impl Into<String>) -> Self {
        self.description = Some(value.into());
        self
    }
    /// Sets `mailNickname`.
    #[must_use]
    pub fn mail_nickname(mut self, value: impl Into<String>) -> Self {
        self.mail_nickname = Some(value.into());
        self
    }
    /// Makes a Microsoft 365 group (true) or a security group (false).
    #[must_use]
    pub fn unified(mut self, value: bool) -> Self {
        self.unified = Some(value);
        self
    }
}

/// A user as the control API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct UserSummary {
    /// Object id.
    pub id: String,
    /// `userPrincipalName`.
    pub user_principal_name: String,
    /// `displayName`.
    pub display_name: String,
    /// `accountEnabled`.
    pub account_enabled: bool,
    /// `userType`.
    pub user_type: UserType,
    /// Holds a role that may grant tenant-wide consent (Global Administrator, …; see
    /// [`DirectoryRole::can_grant_tenant_wide_consent`]).
    pub is_admin: bool,
    /// The directory roles the user holds (serialized as their template ids).
    pub roles: Vec<DirectoryRole>,
    /// The manager's id.
    pub manager_id: Option<String>,
    /// Whether `/photo/$value` answers 200.
    pub has_photo: bool,
}

/// A group as the control API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct GroupSummary {
    /// Object id.
    pub id: String,
    /// `displayName`.
    pub display_name: String,
    /// Microsoft 365 group (`Unified`).
    pub unified: bool,
    /// `securityEnabled`.
    pub security_enabled: bool,
    /// Direct members (users and groups).
    pub member_count: usize,
}

fn user_summary(dir: &Directory, slot: u32) -> Option<UserSummary> {
    let user = dir.user(slot)?;
    Some(UserSummary {
        id: dir.user_ids[slot as usize].to_string(),
        user_principal_name: user.user_principal_name.to_string(),
        display_name: user.display_name.to_string(),
        account_enabled: user.account_enabled,
        user_type: user.user_type,
        is_admin: dir.can_consent(slot),
        roles: dir.roles_of(slot).to_vec(),
        manager_id: user.manager.map(|m| dir.user_ids[m as usize].to_string()),
        has_photo: user.photo.is_some(),
    })
}

fn group_summary(dir: &Directory, slot: u32) -> Option<GroupSummary> {
    let group = dir.group(slot)?;
    Some(GroupSummary {
        id: dir.group_ids[slot as usize].to_string(),
        display_name: group.display_name.to_string(),
        unified: group.unified,
        security_enabled: group.security_enabled,
        member_count: group.members.len(),
    })
}

fn not_found(kind: &'static str, id: &str) -> Error {
    Error::NotFound {
        kind,
        id: id.to_string(),
    }
}

fn owned(value: Option<String>) -> Option<Cow<'static, str>> {
    value.map(Cow::Owned)
}

/// The in-process control API of one tenant of a running simulator (cheap to clone):
/// [`crate::TenantSim::control`] is tenant 0's, [`crate::TenantSim::tenant_control`]
/// any tenant's. Every method acts on that tenant only: its directory, grants, delta
/// state, throttle bucket, faults, consent mode and counters.
#[derive(Clone)]
pub struct Control {
    shared: Arc<Shared>,
    tenant: usize,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("graph_base", &self.shared.graph_base)
            .field("tenant_id", &self.state().id)
            .finish_non_exhaustive()
    }
}

impl Control {
    pub(crate) fn new(shared: Arc<Shared>, tenant: usize) -> Self {
        Self { shared, tenant }
    }

    fn state(&self) -> &TenantState {
        self.shared.tenant(self.tenant)
    }

    /// The tenant's id (GUID).
    pub fn tenant_id(&self) -> &str {
        &self.state().id
    }

    /// Every user, in directory order.
    pub fn users(&self) -> Vec<UserSummary> {
        let dir = self.state().read_dir();
        (0..dir.users.len())
            .filter_map(|i| user_summary(&dir, u32::try_from(i).ok()?))
            .collect()
    }

    /// One user by id or UPN.
    pub fn user(&self, id_or_upn: &str) -> Option<UserSummary> {
        let dir = self.state().read_dir();
        dir.find_user(id_or_upn).and_then(|s| user_summary(&dir, s))
    }

    /// Every group, in directory order.
    pub fn groups(&self) -> Vec<GroupSummary> {
        let dir = self.state().read_dir();
        (0..dir.groups.len())
            .filter_map(|i| group_summary(&dir, u32::try_from(i).ok()?))
            .collect()
    }

    /// One group by id.
    pub fn group(&self, id: &str) -> Option<GroupSummary> {
        let dir = self.state().read_dir();
        dir.find_group(id).and_then(|s| group_summary(&dir, s))
    }

    /// The ids of a group's direct members.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown group.
    pub fn group_member_ids(&self, group_id: &str) -> Result<Vec<String>, Error> {
        let dir = self.state().read_dir();
        let slot = dir
            .find_group(group_id)
            .ok_or_else(|| not_found("group", group_id))?;
        Ok(dir
            .group(slot)
            .map(|g| {
                g.members
                    .iter()
                    .map(|m| dir.member_id(*m).to_string())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Adds a user (a change the next delta round reports).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] without a display name; [`Error::Conflict`] when the UPN is
    /// taken; [`Error::NotFound`] for an unknown manager.
    pub fn add_user(&self, fields: &UserFields) -> Result<UserSummary, Error> {
        let mut dir = self.state().write_dir();
        let display_name = fields
            .display_name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| Error::InvalidConfig("a new user needs a display name".into()))?;
        let domain = dir.tenant_domain.clone();
        let guest = fields.user_type == Some(UserType::Guest);
        let nickname: String = display_name
            .split_whitespace()
            .map(|w| {
                w.chars()
                    .filter(char::is_ascii_alphanumeric)
                    .collect::<String>()
                    .to_lowercase()
            })
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(".");
        let nickname = if nickname.is_empty() {
            "user".to_string()
        } else {
            nickname
        };
        let upn = fields.user_principal_name.clone().unwrap_or_else(|| {
            if guest {
                format!("{nickname}_example.com#EXT#@{domain}")
            } else {
                format!("{nickname}@{domain}")
            }
        });
        let mail = fields.mail.clone().unwrap_or_else(|| {
            if guest {
                format!("{nickname}@example.com")
            } else {
                upn.clone()
            }
        });
        let mut user = User {
            display_name: display_name.into(),
            given_name: None,
            surname: None,
            user_principal_name: upn.clone().into(),
            mail: Some(mail.into()),
            mail_nickname: upn.split('@').next().unwrap_or_default().to_string().into(),
            job_title: None,
            department: None,
            office_location: None,
            business_phone: None,
            mobile_phone: None,
            street_address: None,
            city: None,
            state: None,
            postal_code: None,
            country: None,
            usage_location: None,
            employee_id: None,
            company_name: None,
            preferred_language: None,
            user_type: if guest {
                UserType::Guest
            } else {
                UserType::Member
            },
            account_enabled: true,
            manager: None,
            photo: None,
            created: crate::graph::now_unix(),
            last_sign_in: None,
            version: 0,
        };
        apply_user_fields(&dir, &mut user, fields)?;
        let id = dir.random_id();
        let slot = dir
            .insert_user(id, user)
            .ok_or_else(|| Error::Conflict(format!("user principal name '{upn}' is taken")))?;
        user_summary(&dir, slot).ok_or_else(|| not_found("user", &upn))
    }

    /// Changes a user's properties.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown user or manager; [`Error::Conflict`] when the new
    /// UPN is taken.
    ///
    /// Setting `accountEnabled` to false is a CAE critical event, as
    /// [`Control::disable_user`] (the user's CAE tokens are challenged).
    pub fn update_user(&self, id_or_upn: &str, fields: &UserFields) -> Result<UserSummary, Error> {
        let (summary, was_enabled) = self.update_user_fields(id_or_upn, fields)?;
        if was_enabled && !summary.account_enabled {
            self.signal(&summary.id, CaeEvent::UserDisabled);
        }
        Ok(summary)
    }

    /// The update, and whether the account was enabled before it. The directory lock is
    /// released before the Entra half is told (it reads the directory under its own lock).
    fn update_user_fields(
        &self,
        id_or_upn: &str,
        fields: &UserFields,
    ) -> Result<(UserSummary, bool), Error> {
        let mut dir = self.state().write_dir();
        let slot = dir
            .find_user(id_or_upn)
            .ok_or_else(|| not_found("user", id_or_upn))?;
        let mut probe = dir
            .user(slot)
            .cloned()
            .ok_or_else(|| not_found("user", id_or_upn))?;
        let was_enabled = probe.account_enabled;
        apply_user_fields(&dir, &mut probe, fields)?;
        // Which properties changed, for `Prefer: return=minimal` delta rounds ([spec 9]).
        let mut mask = 0u64;
        if let Some(before) = dir.user(slot) {
            for (bit, name) in crate::graph::USER_PROPERTIES.iter().enumerate() {
                let old = crate::graph::user_property(&dir, slot, before, name);
                let new = crate::graph::user_property(&dir, slot, &probe, name);
                if old != new {
                    mask |= 1 << bit;
                }
            }
        }
        if !dir.update_user(slot, |u| *u = probe) {
            return Err(Error::Conflict("user principal name is taken".into()));
        }
        dir.record_user_change(slot, mask);
        let summary = user_summary(&dir, slot).ok_or_else(|| not_found("user", id_or_upn))?;
        Ok((summary, was_enabled))
    }

    /// Deletes a user (soft: `@removed` reason `changed`; permanent: `deleted`), removing
    /// it from its groups and from its reports' manager.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown user.
    ///
    /// A CAE critical event: the user's CAE tokens are challenged from now on.
    pub fn delete_user(&self, id_or_upn: &str, deletion: Deletion) -> Result<(), Error> {
        let id = {
            let mut dir = self.state().write_dir();
            let slot = dir
                .find_user(id_or_upn)
                .ok_or_else(|| not_found("user", id_or_upn))?;
            let id = dir.user_ids[slot as usize].to_string();
            dir.delete_user(slot, deletion);
            id
        };
        self.signal(&id, CaeEvent::UserDeleted);
        Ok(())
    }

    /// Restores a soft-deleted user from deleted items, as Graph's `POST
    /// /directory/deletedItems/{id}/restore` does: the same id and properties, its
    /// memberships of the groups still there, its manager if still there. The next delta
    /// round hands it out as a live user, not as removed.
    ///
    /// # Errors
    /// [`Error::NotFound`] unless the user is in deleted items (a permanently deleted user
    /// never is); [`Error::Conflict`] when its user principal name was taken meanwhile.
    pub fn restore_user(&self, id: &str) -> Result<UserSummary, Error> {
        let mut dir = self.state().write_dir();
        let slot = dir
            .find_deleted_user(id)
            .ok_or_else(|| not_found("deleted user", id))?;
        dir.restore_user(slot).map_err(|()| {
            Error::Conflict("the deleted user's user principal name is taken".into())
        })?;
        user_summary(&dir, slot).ok_or_else(|| not_found("user", id))
    }

    /// Adds a group without members.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] without a display name.
    pub fn add_group(&self, fields: GroupFields) -> Result<GroupSummary, Error> {
        let mut dir = self.state().write_dir();
        let display_name = fields
            .display_name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| Error::InvalidConfig("a new group needs a display name".into()))?;
        let unified = fields.unified.unwrap_or(false);
        let nickname = fields.mail_nickname.clone().unwrap_or_else(|| {
            display_name
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect()
        });
        let group = Group {
            display_name: display_name.into(),
            description: owned(fields.description),
            mail_nickname: nickname.into(),
            unified,
            security_enabled: !unified,
            mail_enabled: unified,
            visibility: unified.then_some(Cow::Borrowed("Private")),
            created: crate::graph::now_unix(),
            members: Vec::new(),
            version: 0,
        };
        let id = dir.random_id();
        let slot = dir.insert_group(id, group);
        group_summary(&dir, slot).ok_or_else(|| not_found("group", &id.to_string()))
    }

    /// Changes a group's display name, description or mail nickname.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown group.
    pub fn update_group(&self, id: &str, fields: GroupFields) -> Result<GroupSummary, Error> {
        let mut dir = self.state().write_dir();
        let slot = dir.find_group(id).ok_or_else(|| not_found("group", id))?;
        let seq = dir.seq + 1;
        dir.seq = seq;
        if let Some(group) = dir.groups.get_mut(slot as usize).and_then(Option::as_mut) {
            if let Some(name) = fields.display_name {
                group.display_name = name.into();
            }
            if let Some(description) = fields.description {
                group.description = Some(description.into());
            }
            if let Some(nickname) = fields.mail_nickname {
                group.mail_nickname = nickname.into();
            }
            group.version = seq;
        }
        group_summary(&dir, slot).ok_or_else(|| not_found("group", id))
    }

    /// Deletes a group. Only a Microsoft 365 group (`unified`) goes to deleted items; a
    /// security group is deleted permanently whatever `deletion` says, as in Entra
    /// (`@removed` reason `deleted`).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown group.
    pub fn delete_group(&self, id: &str, deletion: Deletion) -> Result<(), Error> {
        let mut dir = self.state().write_dir();
        let slot = dir.find_group(id).ok_or_else(|| not_found("group", id))?;
        dir.delete_group(slot, deletion);
        Ok(())
    }

    /// Restores a soft-deleted Microsoft 365 group from deleted items: the same id and
    /// properties, its members still there, its memberships of groups still there.
    ///
    /// # Errors
    /// [`Error::NotFound`] unless the group is in deleted items (security groups never
    /// are).
    pub fn restore_group(&self, id: &str) -> Result<GroupSummary, Error> {
        let mut dir = self.state().write_dir();
        let slot = dir
            .find_deleted_group(id)
            .ok_or_else(|| not_found("deleted group", id))?;
        dir.restore_group(slot);
        group_summary(&dir, slot).ok_or_else(|| not_found("group", id))
    }

    /// Adds a user or group to a group; `Ok(false)` if it was already a member.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown group or member; [`Error::InvalidConfig`] when a
    /// group would contain itself.
    pub fn add_member(&self, group_id: &str, member_id: &str) -> Result<bool, Error> {
        let mut dir = self.state().write_dir();
        let group = dir
            .find_group(group_id)
            .ok_or_else(|| not_found("group", group_id))?;
        let member = dir
            .find_object(member_id)
            .ok_or_else(|| not_found("object", member_id))?;
        if member == Member::Group(group) {
            return Err(Error::InvalidConfig(
                "a group cannot be its own member".into(),
            ));
        }
        Ok(dir.add_member(group, member))
    }

    /// Removes a member from a group; `Ok(false)` if it was not a member.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown group or member.
    pub fn remove_member(&self, group_id: &str, member_id: &str) -> Result<bool, Error> {
        let mut dir = self.state().write_dir();
        let group = dir
            .find_group(group_id)
            .ok_or_else(|| not_found("group", group_id))?;
        let member = dir
            .find_object(member_id)
            .ok_or_else(|| not_found("object", member_id))?;
        Ok(dir.remove_member(group, member))
    }

    /// Revokes every refresh and access token issued to a user (id or UPN); their next
    /// refresh gets `invalid_grant`. Returns how many grants were revoked.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown user.
    pub fn revoke_user_grants(&self, id_or_upn: &str) -> Result<usize, Error> {
        let id = self
            .user(id_or_upn)
            .map(|u| u.id)
            .ok_or_else(|| not_found("user", id_or_upn))?;
        Ok(self.shared.auth.revoke_user_grants(self.tenant, &id))
    }

    /// Graph's `revokeSignInSessions` on a user (id or UPN): every refresh token issued
    /// to the user so far gets `invalid_grant` AADSTS50173, and Graph answers the user's
    /// CAE access tokens issued so far with a claims challenge (401,
    /// `insufficient_claims`, `nbf` = the returned time). Access tokens of clients that
    /// did not declare `cp1` keep working until they expire, as at Microsoft. Returns the
    /// revocation's unix time (seconds).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown user.
    pub fn revoke_sign_in_sessions(&self, id_or_upn: &str) -> Result<i64, Error> {
        let id = self.user_id(id_or_upn)?;
        Ok(self.signal(&id, CaeEvent::SessionsRevoked))
    }

    /// Disables a user's account (`accountEnabled: false`, a change delta reports): the
    /// user's CAE access tokens are challenged, refreshing gets `invalid_grant`
    /// AADSTS50057 and sign-in fails, until [`Control::enable_user`]. Returns the event's
    /// unix time.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown user.
    pub fn disable_user(&self, id_or_upn: &str) -> Result<i64, Error> {
        let (summary, _) =
            self.update_user_fields(id_or_upn, &UserFields::new().account_enabled(false))?;
        Ok(self.signal(&summary.id, CaeEvent::UserDisabled))
    }

    /// Enables a user's account again: refresh and sign-in work again; CAE tokens
    /// issued before the disabling stay challenged.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown user.
    pub fn enable_user(&self, id_or_upn: &str) -> Result<(), Error> {
        self.update_user_fields(id_or_upn, &UserFields::new().account_enabled(true))
            .map(|_| ())
    }

    /// A policy event that a client recovers from silently: the user's network location
    /// changed under an IP-based Conditional Access policy. Graph challenges the user's
    /// CAE tokens issued before (code `LocationConditionEvaluationSatisfied`, claims with
    /// `nbf` and `xms_rp_ipaddr`); a refresh (with the challenge's claims, as MSAL sends)
    /// gets a new token that passes. Returns the event's unix time.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown user.
    pub fn require_fresh_token(&self, id_or_upn: &str) -> Result<i64, Error> {
        let id = self.user_id(id_or_upn)?;
        Ok(self.signal(&id, CaeEvent::LocationChanged))
    }

    /// A policy event a client cannot recover from silently: a Conditional Access policy
    /// now requires the user to sign in again with MFA. Graph challenges the user's CAE
    /// tokens issued before (code `TokenCreatedWithOutdatedPolicies`); refreshing a
    /// refresh token issued before gets `interaction_required` AADSTS50076 with `claims`
    /// (`capolids`); a new interactive sign-in works. Returns the event's unix time.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown user.
    pub fn require_interaction(&self, id_or_upn: &str) -> Result<i64, Error> {
        let id = self.user_id(id_or_upn)?;
        Ok(self.signal(&id, CaeEvent::InteractionRequired))
    }

    /// As [`Control::require_interaction`], with the refresh answered as Entra was seen
    /// answering under a new MFA policy: `invalid_grant` AADSTS50076, `suberror`
    /// `basic_action`, `claims`. Returns the event's unix time.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown user.
    pub fn require_mfa(&self, id_or_upn: &str) -> Result<i64, Error> {
        let id = self.user_id(id_or_upn)?;
        Ok(self.signal(&id, CaeEvent::MfaRequired))
    }

    /// Gives a user (id or UPN) a directory role; from now on Graph lists it in the
    /// user's `memberOf/microsoft.graph.directoryRole`, id tokens carry it in `wids` (when
    /// enabled), and a role that may grant tenant-wide consent makes the sign-in pages
    /// treat the user as an administrator. Returns whether the user did not hold it yet.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown user.
    pub fn assign_role(&self, id_or_upn: &str, role: DirectoryRole) -> Result<bool, Error> {
        let mut dir = self.state().write_dir();
        let slot = dir
            .find_user(id_or_upn)
            .ok_or_else(|| not_found("user", id_or_upn))?;
        Ok(dir.assign_role(slot, role))
    }

    /// Takes a directory role from a user (id or UPN). Returns whether the user held it.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown user.
    pub fn remove_role(&self, id_or_upn: &str, role: DirectoryRole) -> Result<bool, Error> {
        let mut dir = self.state().write_dir();
        let slot = dir
            .find_user(id_or_upn)
            .ok_or_else(|| not_found("user", id_or_upn))?;
        Ok(dir.remove_role(slot, role))
    }

    /// The directory roles a user (id or UPN) holds.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown user.
    pub fn user_roles(&self, id_or_upn: &str) -> Result<Vec<DirectoryRole>, Error> {
        let dir = self.state().read_dir();
        let slot = dir
            .find_user(id_or_upn)
            .ok_or_else(|| not_found("user", id_or_upn))?;
        Ok(dir.roles_of(slot).to_vec())
    }

    /// Whether id tokens this tenant issues from now on carry `wids` (see
    /// [`crate::TenantSimBuilder::wids_claim`]).
    pub fn set_wids_claim(&self, enabled: bool) {
        self.shared.auth.set_wids_claim(self.tenant, enabled);
    }

    /// Whether this tenant's id tokens carry `wids`.
    pub fn wids_claim(&self) -> bool {
        self.shared.auth.wids_claim(self.tenant)
    }

    /// What the simulator recorded about an access token this tenant issued: CAE or
    /// not, issue and expiry time. `None` for an unknown token or one of another tenant.
    pub fn access_token_info(&self, access_token: &str) -> Option<AccessTokenInfo> {
        self.shared
            .auth
            .access_token_info(access_token)
            .filter(|info| info.tenant() == self.tenant)
    }

    fn user_id(&self, id_or_upn: &str) -> Result<String, Error> {
        self.user(id_or_upn)
            .map(|u| u.id)
            .ok_or_else(|| not_found("user", id_or_upn))
    }

    fn signal(&self, user_id: &str, event: CaeEvent) -> i64 {
        self.shared
            .auth
            .signal_cae_event(self.tenant, user_id, event)
    }

    /// Revokes one refresh token; returns whether it existed.
    pub fn revoke_refresh_token(&self, refresh_token: &str) -> bool {
        self.shared
            .auth
            .revoke_refresh_token(self.tenant, refresh_token)
    }

    /// Every delta and skip token issued so far gets 400 `syncStateNotFound` from now on.
    pub fn expire_delta_tokens(&self) {
        self.state().write_dir().expire_delta_tokens();
    }

    /// Every delta and skip token issued so far gets 410 Gone with a `Location` to start
    /// over.
    pub fn force_resync(&self) {
        self.state().write_dir().force_resync();
    }

    /// Sets (or with `None` removes) the throttle.
    pub fn set_throttle(&self, settings: Option<ThrottleSettings>) {
        self.state()
            .throttle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set(settings);
    }

    /// The throttle settings.
    pub fn throttle(&self) -> Option<ThrottleSettings> {
        self.state()
            .throttle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .settings()
    }

    /// Sets fault rate, kinds and latency.
    pub fn set_faults(&self, settings: FaultSettings) {
        self.state()
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set(settings);
    }

    /// The fault settings.
    pub fn faults(&self) -> FaultSettings {
        self.state()
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .settings()
            .clone()
    }

    /// How `/authorize` behaves from now on.
    pub fn set_consent_mode(&self, mode: ConsentMode) {
        self.shared.auth.set_consent_mode(self.tenant, mode);
    }

    /// Lifetime of access tokens issued from now on.
    pub fn set_access_token_lifetime(&self, lifetime: Duration) {
        self.shared
            .auth
            .set_access_token_lifetime(self.tenant, lifetime);
    }

    /// Lifetime of CAE access tokens (requests whose `claims` declare `cp1`) issued from
    /// now on (default 28 hours).
    pub fn set_cae_access_token_lifetime(&self, lifetime: Duration) {
        self.shared
            .auth
            .set_cae_access_token_lifetime(self.tenant, lifetime);
    }

    /// Approves a pending device code as a user (id or UPN), as a person entering the
    /// code would; returns whether the code was pending.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown user.
    pub fn approve_device_code(&self, user_code: &str, id_or_upn: &str) -> Result<bool, Error> {
        let id = self
            .user(id_or_upn)
            .map(|u| u.id)
            .ok_or_else(|| not_found("user", id_or_upn))?;
        Ok(self
            .shared
            .auth
            .approve_device_code(self.tenant, user_code, &id))
    }

    /// Request counters since start or the last reset: Graph requests, and in
    /// [`RequestCounters::tokens`] the token endpoint requests of this tenant.
    pub fn counters(&self) -> RequestCounters {
        let mut counters = self
            .state()
            .counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        counters.set_tokens(self.shared.auth.token_counters(self.tenant));
        counters
    }

    /// Sets every counter (token endpoint ones included) to zero.
    pub fn reset_counters(&self) {
        *self
            .state()
            .counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = RequestCounters::default();
        self.shared.auth.reset_token_counters(self.tenant);
    }
}

fn apply_user_fields(dir: &Directory, user: &mut User, fields: &UserFields) -> Result<(), Error> {
    let set = |target: &mut Option<Cow<'static, str>>, value: &Option<String>| {
        if let Some(value) = value {
            *target = Some(Cow::Owned(value.clone()));
        }
    };
    if let Some(name) = &fields.display_name {
        user.display_name = Cow::Owned(name.clone());
    }
    if let Some(upn) = &fields.user_principal_name {
        user.user_principal_name = Cow::Owned(upn.clone());
    }
    set(&mut user.given_name, &fields.given_name);
    set(&mut user.surname, &fields.surname);
    set(&mut user.mail, &fields.mail);
    set(&mut user.job_title, &fields.job_title);
    set(&mut user.department, &fields.department);
    set(&mut user.office_location, &fields.office_location);
    set(&mut user.mobile_phone, &fields.mobile_phone);
    set(&mut user.city, &fields.city);
    set(&mut user.employee_id, &fields.employee_id);
    if let Some(enabled) = fields.account_enabled {
        user.account_enabled = enabled;
    }
    if let Some(user_type) = fields.user_type {
        user.user_type = user_type;
    }
    match fields.manager.as_deref() {
        None => {}
        Some("") => user.manager = None,
        Some(manager) => {
            user.manager = Some(
                dir.find_user(manager)
                    .ok_or_else(|| not_found("user", manager))?,
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- HTTP

struct ControlError(Error);

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            _ => StatusCode::BAD_REQUEST,
        };
        (status, Json(json!({"error": self.0.to_string()}))).into_response()
    }
}

impl From<Error> for ControlError {
    fn from(error: Error) -> Self {
        Self(error)
    }
}

type ControlResult<T> = Result<T, ControlError>;

#[derive(Deserialize)]
struct Limit {
    limit: Option<usize>,
}

#[derive(Deserialize)]
struct DeleteOptions {
    #[serde(default)]
    permanent: bool,
}

#[derive(Deserialize)]
struct MemberBody {
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefreshTokenBody {
    refresh_token: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ThrottleBody {
    units_per_second: f64,
    burst: Option<f64>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct FaultBody {
    #[serde(default)]
    rate: f64,
    #[serde(default)]
    latency_ms: u64,
    kinds: Option<Vec<FaultKind>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConsentBody {
    mode: String,
}

#[derive(Deserialize)]
struct LifetimeBody {
    seconds: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccessTokenBody {
    access_token: String,
}

fn access_token_json(info: &AccessTokenInfo) -> serde_json::Value {
    json!({
        "userId": info.user_id(),
        "cae": info.is_cae(),
        "issuedAt": info.issued_at(),
        "expiresAt": info.expires_at(),
    })
}

/// The answer of the CAE event routes: the event's unix time, the `nbf` of the claims
/// challenges it causes.
fn event_json(at: i64) -> Json<serde_json::Value> {
    Json(json!({ "at": at }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceCodeBody {
    user_code: String,
    user_id: String,
}

fn deletion(options: &DeleteOptions) -> Deletion {
    if options.permanent {
        Deletion::Permanent
    } else {
        Deletion::Soft
    }
}

/// Parses a consent mode name as the control API spells it.
pub(crate) fn consent_mode(name: &str) -> Option<ConsentMode> {
    match name.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
        "autoconsent" | "auto" => Some(ConsentMode::AutoConsent),
        "interactive" => Some(ConsentMode::Interactive),
        "userdeclines" => Some(ConsentMode::UserDeclines),
        "adminapprovalrequired" => Some(ConsentMode::AdminApprovalRequired),
        "missingonescope" => Some(ConsentMode::MissingOneScope),
        _ => None,
    }
}

fn fault_body(settings: &FaultSettings) -> FaultBody {
    FaultBody {
        rate: settings.rate(),
        latency_ms: u64::try_from(settings.latency().as_millis()).unwrap_or(u64::MAX),
        kinds: Some(settings.kinds().to_vec()),
    }
}

/// The [`Control`] of the tenant a request's path names (`/tenants/{tenant}/...`, by id
/// or domain), tenant 0's for the unprefixed routes; 404 for an unknown tenant.
struct TenantControl(Control);

impl FromRequestParts<Arc<Shared>> for TenantControl {
    type Rejection = ControlError;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Arc<Shared>,
    ) -> Result<Self, Self::Rejection> {
        let params = RawPathParams::from_request_parts(parts, shared)
            .await
            .map_err(|_| ControlError(not_found("tenant", "(unreadable path)")))?;
        let index = match params.iter().find(|(name, _)| *name == "tenant") {
            None => 0,
            Some((_, tenant)) => shared
                .tenant_index(tenant)
                .ok_or_else(|| ControlError(not_found("tenant", tenant)))?,
        };
        Ok(Self(Control::new(Arc::clone(shared), index)))
    }
}

#[derive(Deserialize)]
struct IdPath {
    id: String,
}

#[derive(Deserialize)]
struct MemberPath {
    id: String,
    member: String,
}

/// The control routes, mounted under `/_sim` on the Graph listener: `GET /tenants`,
/// then every per-tenant route twice, unprefixed for tenant 0 and under
/// `/tenants/{tenant}` (id or domain) for any tenant.
pub(crate) fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route(
            "/tenants",
            get(|State(shared): State<Arc<Shared>>| async move {
                Json(shared.tenants.iter().map(tenant_entry).collect::<Vec<_>>())
            }),
        )
        .merge(tenant_routes())
        .nest("/tenants/{tenant}", tenant_routes())
        .with_state(shared)
}

/// One line of `GET /_sim/tenants`.
fn tenant_entry(tenant: &TenantState) -> serde_json::Value {
    let dir = tenant.read_dir();
    let admin = dir.user(0);
    json!({
        "id": tenant.id,
        "domain": dir.tenant_domain,
        "adminUpn": admin.map(|u| u.user_principal_name.to_string()),
        "adminId": dir.user_ids.first().map(ToString::to_string),
        "index": tenant.index,
    })
}

/// The routes that act on one tenant.
#[expect(clippy::too_many_lines, reason = "one route table, read top to bottom")]
fn tenant_routes() -> axum::Router<Arc<Shared>> {
    axum::Router::new()
        .route(
            "/users",
            get(
                |TenantControl(c): TenantControl, Query(l): Query<Limit>| async move {
                    Json(
                        c.users()
                            .into_iter()
                            .take(l.limit.unwrap_or(100))
                            .collect::<Vec<_>>(),
                    )
                },
            )
            .post(
                |TenantControl(c): TenantControl, Json(f): Json<UserFields>| async move {
                    ControlResult::Ok((StatusCode::CREATED, Json(c.add_user(&f)?)))
                },
            ),
        )
        .route(
            "/users/{id}",
            get(
                |TenantControl(c): TenantControl, Path(IdPath { id }): Path<IdPath>| async move {
                    c.user(&id)
                        .map(Json)
                        .ok_or_else(|| ControlError(not_found("user", &id)))
                },
            )
            .patch(
                |TenantControl(c): TenantControl,
                 Path(IdPath { id }): Path<IdPath>,
                 Json(f): Json<UserFields>| async move {
                    ControlResult::Ok(Json(c.update_user(&id, &f)?))
                },
            )
            .delete(
                |TenantControl(c): TenantControl,
                 Path(IdPath { id }): Path<IdPath>,
                 Query(o): Query<DeleteOptions>| async move {
                    c.delete_user(&id, deletion(&o))?;
                    ControlResult::Ok(StatusCode::NO_CONTENT)
                },
            ),
        )
        .route(
            "/users/{id}/restore",
            post(
                |TenantControl(c): TenantControl, Path(IdPath { id }): Path<IdPath>| async move {
                    ControlResult::Ok(Json(c.restore_user(&id)?))
                },
            ),
        )
        .route(
            "/groups/{id}/restore",
            post(
                |TenantControl(c): TenantControl, Path(IdPath { id }): Path<IdPath>| async move {
                    ControlResult::Ok(Json(c.restore_group(&id)?))
                },
            ),
        )
        .route(
            "/users/{id}/revoke",
            post(
                |TenantControl(c): TenantControl, Path(IdPath { id }): Path<IdPath>| async move {
                    ControlResult::Ok(Json(json!({"revoked": c.revoke_user_grants(&id)?})))
                },
            ),
        )
        .merge(cae_routes())
        .merge(role_routes())
        .route(
            "/groups",
            get(
                |TenantControl(c): TenantControl, Query(l): Query<Limit>| async move {
                    Json(
                        c.groups()
                            .into_iter()
                            .take(l.limit.unwrap_or(100))
                            .collect::<Vec<_>>(),
                    )
                },
            )
            .post(
                |TenantControl(c): TenantControl, Json(f): Json<GroupFields>| async move {
                    ControlResult::Ok((StatusCode::CREATED, Json(c.add_group(f)?)))
                },
            ),
        )
        .route(
            "/groups/{id}",
            get(
                |TenantControl(c): TenantControl, Path(IdPath { id }): Path<IdPath>| async move {
                    c.group(&id)
                        .map(Json)
                        .ok_or_else(|| ControlError(not_found("group", &id)))
                },
            )
            .patch(
                |TenantControl(c): TenantControl,
                 Path(IdPath { id }): Path<IdPath>,
                 Json(f): Json<GroupFields>| async move {
                    ControlResult::Ok(Json(c.update_group(&id, f)?))
                },
            )
            .delete(
                |TenantControl(c): TenantControl,
                 Path(IdPath { id }): Path<IdPath>,
                 Query(o): Query<DeleteOptions>| async move {
                    c.delete_group(&id, deletion(&o))?;
                    ControlResult::Ok(StatusCode::NO_CONTENT)
                },
            ),
        )
        .route(
            "/groups/{id}/members",
            get(
                |TenantControl(c): TenantControl, Path(IdPath { id }): Path<IdPath>| async move {
                    ControlResult::Ok(Json(c.group_member_ids(&id)?))
                },
            )
            .post(
                |TenantControl(c): TenantControl,
                 Path(IdPath { id }): Path<IdPath>,
                 Json(m): Json<MemberBody>| async move {
                    ControlResult::Ok(Json(json!({"changed": c.add_member(&id, &m.id)?})))
                },
            ),
        )
        .route(
            "/groups/{id}/members/{member}",
            axum::routing::delete(
                |TenantControl(c): TenantControl,
                 Path(MemberPath { id, member }): Path<MemberPath>| async move {
                    ControlResult::Ok(Json(json!({"changed": c.remove_member(&id, &member)?})))
                },
            ),
        )
        .route(
            "/refresh-tokens/revoke",
            post(
                |TenantControl(c): TenantControl, Json(b): Json<RefreshTokenBody>| async move {
                    Json(json!({"revoked": c.revoke_refresh_token(&b.refresh_token)}))
                },
            ),
        )
        .route(
            "/delta/expire",
            post(|TenantControl(c): TenantControl| async move {
                c.expire_delta_tokens();
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/delta/resync",
            post(|TenantControl(c): TenantControl| async move {
                c.force_resync();
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/throttle",
            get(|TenantControl(c): TenantControl| async move {
                Json(
                    c.throttle().map(
                        |t| json!({"unitsPerSecond": t.units_per_second(), "burst": t.burst()}),
                    ),
                )
            })
            .put(
                |TenantControl(c): TenantControl, Json(b): Json<ThrottleBody>| async move {
                    let settings = ThrottleSettings::new(
                        b.units_per_second,
                        b.burst.unwrap_or(b.units_per_second.max(1.0)),
                    )?;
                    c.set_throttle(Some(settings));
                    ControlResult::Ok(StatusCode::NO_CONTENT)
                },
            )
            .delete(|TenantControl(c): TenantControl| async move {
                c.set_throttle(None);
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/faults",
            get(|TenantControl(c): TenantControl| async move { Json(fault_body(&c.faults())) })
                .put(
                    |TenantControl(c): TenantControl, Json(b): Json<FaultBody>| async move {
                        let mut settings = FaultSettings::none()
                            .with_rate(b.rate)?
                            .with_latency(Duration::from_millis(b.latency_ms));
                        if let Some(kinds) = &b.kinds {
                            settings = settings.with_kinds(kinds)?;
                        }
                        c.set_faults(settings);
                        ControlResult::Ok(StatusCode::NO_CONTENT)
                    },
                ),
        )
        .route(
            "/consent-mode",
            put(
                |TenantControl(c): TenantControl, Json(b): Json<ConsentBody>| async move {
                    let mode = consent_mode(&b.mode).ok_or_else(|| {
                        ControlError(Error::InvalidConfig(format!(
                            "unknown consent mode '{}'",
                            b.mode
                        )))
                    })?;
                    c.set_consent_mode(mode);
                    ControlResult::Ok(StatusCode::NO_CONTENT)
                },
            ),
        )
        .route(
            "/cae-access-token-lifetime",
            put(
                |TenantControl(c): TenantControl, Json(b): Json<LifetimeBody>| async move {
                    c.set_cae_access_token_lifetime(Duration::from_secs(b.seconds));
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/access-tokens/inspect",
            post(
                |TenantControl(c): TenantControl, Json(b): Json<AccessTokenBody>| async move {
                    c.access_token_info(&b.access_token)
                        .map(|info| Json(access_token_json(&info)))
                        .ok_or_else(|| ControlError(not_found("access token", "(given)")))
                },
            ),
        )
        .route(
            "/access-token-lifetime",
            put(
                |TenantControl(c): TenantControl, Json(b): Json<LifetimeBody>| async move {
                    c.set_access_token_lifetime(Duration::from_secs(b.seconds));
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/device-codes/approve",
            post(
                |TenantControl(c): TenantControl, Json(b): Json<DeviceCodeBody>| async move {
                    ControlResult::Ok(Json(
                        json!({"approved": c.approve_device_code(&b.user_code, &b.user_id)?}),
                    ))
                },
            ),
        )
        .route(
            "/counters",
            get(|TenantControl(c): TenantControl| async move { Json(c.counters()) }),
        )
        .route(
            "/counters/reset",
            post(|TenantControl(c): TenantControl| async move {
                c.reset_counters();
                StatusCode::NO_CONTENT
            }),
        )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RolePath {
    id: String,
    role_template_id: String,
}

#[derive(Deserialize)]
struct EnabledBody {
    enabled: bool,
}

fn role_of(template_id: &str) -> Result<DirectoryRole, ControlError> {
    DirectoryRole::from_template_id(template_id).ok_or_else(|| {
        ControlError(Error::InvalidConfig(format!(
            "unknown role template id '{template_id}'"
        )))
    })
}

fn roles_json(roles: &[DirectoryRole]) -> Json<serde_json::Value> {
    Json(json!(
        roles
            .iter()
            .map(|r| json!({"roleTemplateId": r.template_id(), "displayName": r.display_name()}))
            .collect::<Vec<_>>()
    ))
}

/// The directory role routes: `GET /users/{id}/roles`, `PUT` and `DELETE
/// /users/{id}/roles/{roleTemplateId}`, `GET` and `PUT /wids-claim`.
fn role_routes() -> axum::Router<Arc<Shared>> {
    axum::Router::new()
        .route(
            "/users/{id}/roles",
            get(
                |TenantControl(c): TenantControl, Path(IdPath { id }): Path<IdPath>| async move {
                    ControlResult::Ok(roles_json(&c.user_roles(&id)?))
                },
            ),
        )
        .route(
            "/users/{id}/roles/{roleTemplateId}",
            put(
                |TenantControl(c): TenantControl, Path(p): Path<RolePath>| async move {
                    let role = role_of(&p.role_template_id)?;
                    c.assign_role(&p.id, role)?;
                    ControlResult::Ok(roles_json(&c.user_roles(&p.id)?))
                },
            )
            .delete(
                |TenantControl(c): TenantControl, Path(p): Path<RolePath>| async move {
                    let role = role_of(&p.role_template_id)?;
                    c.remove_role(&p.id, role)?;
                    ControlResult::Ok(roles_json(&c.user_roles(&p.id)?))
                },
            ),
        )
        .route(
            "/wids-claim",
            get(|TenantControl(c): TenantControl| async move {
                Json(json!({"enabled": c.wids_claim()}))
            })
            .put(
                |TenantControl(c): TenantControl, Json(b): Json<EnabledBody>| async move {
                    c.set_wids_claim(b.enabled);
                    Json(json!({"enabled": c.wids_claim()}))
                },
            ),
        )
}

/// The CAE event routes: `POST /users/{id}/revoke-sign-in-sessions`, `/disable`,
/// `/enable`, `/require-fresh-token`, `/require-interaction`, `/require-mfa`.
fn cae_routes() -> axum::Router<Arc<Shared>> {
    type Event = fn(&Control, &str) -> Result<i64, Error>;
    let event = |action: Event| {
        post(
            move |TenantControl(c): TenantControl, Path(IdPath { id }): Path<IdPath>| async move {
                ControlResult::Ok(event_json(action(&c, &id)?))
            },
        )
    };
    axum::Router::new()
        .route(
            "/users/{id}/revoke-sign-in-sessions",
            event(Control::revoke_sign_in_sessions),
        )
        .route("/users/{id}/disable", event(Control::disable_user))
        .route(
            "/users/{id}/enable",
            post(
                |TenantControl(c): TenantControl, Path(IdPath { id }): Path<IdPath>| async move {
                    c.enable_user(&id)?;
                    ControlResult::Ok(StatusCode::NO_CONTENT)
                },
            ),
        )
        .route(
            "/users/{id}/require-fresh-token",
            event(Control::require_fresh_token),
        )
        .route(
            "/users/{id}/require-interaction",
            event(Control::require_interaction),
        )
        .route("/users/{id}/require-mfa", event(Control::require_mfa))
}
