//! The result of a sign-in: tokens, granted scopes and the identity.

use std::fmt;

use secrecy::SecretString;
use time::OffsetDateTime;

use crate::cloud::{Cloud, TenantId};
use crate::id_token::Identity;
use crate::token::AccessToken;

/// What a completed sign-in (authorization code or device code) yields: the admin's
/// identity, an access token with its expiry, the refresh token to store, and the granted
/// scopes. `Debug` and `Display` redact the tokens.
#[derive(Clone)]
pub struct Grant {
    pub(crate) identity: Identity,
    pub(crate) cloud: Cloud,
    pub(crate) access_token: AccessToken,
    pub(crate) refresh_at: Option<OffsetDateTime>,
    pub(crate) refresh_token: SecretString,
    pub(crate) scopes: Vec<String>,
}

impl Grant {
    /// Who signed in (validated id token claims).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The tenant (`tid`): use it as the authority for every later refresh (spec §5b).
    pub fn tenant_id(&self) -> &TenantId {
        &self.identity.tenant_id
    }

    /// The cloud the sign-in happened in.
    pub fn cloud(&self) -> &Cloud {
        &self.cloud
    }

    /// The access token for Microsoft Graph.
    pub fn access_token(&self) -> &AccessToken {
        &self.access_token
    }

    /// When Entra asked to refresh ahead of expiry (`refresh_in`), if it did.
    pub fn refresh_at(&self) -> Option<OffsetDateTime> {
        self.refresh_at
    }

    /// The refresh token, to store (encrypted) for the connection.
    pub fn refresh_token(&self) -> &SecretString {
        &self.refresh_token
    }

    /// The granted scopes, as Entra listed them.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("identity", &self.identity)
            .field("cloud", &self.cloud)
            .field("access_token", &self.access_token)
            .field("refresh_at", &self.refresh_at)
            .field("refresh_token", &"[REDACTED]")
            .field("scopes", &self.scopes)
            .finish()
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "grant for {} [tokens REDACTED], access token expiring at {}",
            self.identity, self.access_token.expires_at
        )
    }
}
