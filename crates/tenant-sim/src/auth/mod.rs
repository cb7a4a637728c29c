//! The simulated Microsoft Entra v2.0 endpoints: authorize (auto-consent, interactive
//! pages, failure modes), token (authorization code + PKCE, refresh with rotation,
//! device code), device code, admin consent, discovery, JWKS, id tokens.
//!
//! This module is the contract between the Entra half and the Graph half of the
//! simulator: the Graph half gives it an [`AccountDirectory`] to sign users in from,
//! serves [`router`] on the login listener, and asks [`Auth::validate_bearer`] about
//! every Graph request.

use std::sync::Arc;
use std::time::Duration;

/// One account of the simulated tenant, as the sign-in page and the id token see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The user's object id (`oid`, Graph `user.id`).
    pub id: String,
    /// The user principal name (`preferred_username`).
    pub user_principal_name: String,
    /// The display name (`name`).
    pub display_name: String,
    /// Whether the account may consent for the whole tenant (Global Administrator).
    pub is_admin: bool,
    /// Disabled accounts cannot sign in (AADSTS50057).
    pub account_enabled: bool,
}

/// Where the Entra half reads the tenant's accounts from; the Graph half implements it
/// over its directory.
pub trait AccountDirectory: Send + Sync {
    /// The account with this object id or user principal name (case-insensitive).
    fn account(&self, id_or_upn: &str) -> Option<Account>;
    /// Accounts to offer on the interactive sign-in page, admins first, at most `limit`.
    fn sign_in_candidates(&self, limit: usize) -> Vec<Account>;
}

/// How `/authorize` answers a sign-in without a browser choosing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ConsentMode {
    /// The tenant's admin signs in and consents at once: redirect with `code` and `state`.
    #[default]
    AutoConsent,
    /// Render a sign-in page (pick an account) then a "Permissions requested" page with
    /// Accept / Cancel, like Microsoft's.
    Interactive,
    /// The user cancels on the consent page: `error=access_denied` (AADSTS65004).
    UserDeclines,
    /// A non-admin signs in to an app that needs admin consent: AADSTS90094 / 65001
    /// ("admin approval required").
    AdminApprovalRequired,
    /// Consent succeeds but the granted scopes lack one requested Graph scope
    /// (the last requested one that is not an OpenID scope).
    MissingOneScope,
}

/// Settings of the Entra half.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The tenant's id (`tid`), a GUID string.
    pub tenant_id: String,
    /// The tenant's primary domain, e.g. `contoso.onmicrosoft.com` (accepted as `{tenant}`).
    pub tenant_domain: String,
    /// The registered app's client id.
    pub client_id: String,
    /// The registered app's client secret (confidential clients must send it).
    pub client_secret: String,
    /// The login listener's base URL, e.g. `http://127.0.0.1:4321` (no trailing slash);
    /// `iss` is `{login_base}/{tid}/v2.0`.
    pub login_base: String,
    /// The Graph root the scopes are for, e.g. `https://graph.microsoft.com`.
    pub graph_resource: String,
    /// Access token lifetime (`expires_in`).
    pub access_token_lifetime: Duration,
    /// How `/authorize` behaves.
    pub consent_mode: ConsentMode,
}

/// What Graph learns from a valid bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerGrant {
    /// The signed-in user's object id.
    pub user_id: String,
    /// The granted delegated Graph scopes, without resource prefix (`User.Read.All`).
    pub scopes: Vec<String>,
}

/// Why a bearer token was refused; Graph answers each with 401
/// `InvalidAuthenticationToken`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Not a token this simulator issued, or revoked.
    Invalid,
    /// Issued here, but past its expiry.
    Expired,
}

/// The Entra half's state: codes, refresh tokens, device codes, signing key.
pub struct Auth {
    // owned by the Entra half
}

impl Auth {
    /// Builds the Entra half: makes the RS256 signing key, empty grant tables.
    ///
    /// # Errors
    /// When the signing key cannot be made.
    pub fn new(
        config: AuthConfig,
        directory: Arc<dyn AccountDirectory>,
    ) -> Result<Arc<Self>, crate::Error> {
        let _ = (config, directory);
        todo!("Entra half")
    }

    /// Checks an `Authorization` header value (`Bearer …`) as Graph would.
    ///
    /// # Errors
    /// [`BearerError`] when it is missing, unknown, revoked or expired.
    pub fn validate_bearer(&self, authorization: Option<&str>) -> Result<BearerGrant, BearerError> {
        let _ = authorization;
        todo!("Entra half")
    }

    /// Revokes every refresh token (and access token) issued to this user: the next
    /// refresh gets `invalid_grant` (AADSTS50173). Returns how many were revoked.
    pub fn revoke_user_grants(&self, user_id: &str) -> usize {
        let _ = user_id;
        todo!("Entra half")
    }

    /// Revokes one refresh token by its value. Returns whether it existed.
    pub fn revoke_refresh_token(&self, refresh_token: &str) -> bool {
        let _ = refresh_token;
        todo!("Entra half")
    }

    /// Changes how `/authorize` behaves from now on.
    pub fn set_consent_mode(&self, mode: ConsentMode) {
        let _ = mode;
        todo!("Entra half")
    }

    /// Sets the access token lifetime for tokens issued from now on.
    pub fn set_access_token_lifetime(&self, lifetime: Duration) {
        let _ = lifetime;
        todo!("Entra half")
    }

    /// Approves a pending device code as this user (what a person typing the user code
    /// at the verification URI does). Returns whether the user code was pending.
    pub fn approve_device_code(&self, user_code: &str, user_id: &str) -> bool {
        let _ = (user_code, user_id);
        todo!("Entra half")
    }
}

/// The login listener's routes: `/{tenant}/oauth2/v2.0/{authorize,token,devicecode}`,
/// `/{tenant}/v2.0/adminconsent`, `/{tenant}/v2.0/.well-known/openid-configuration`,
/// `/{tenant}/discovery/v2.0/keys`, and the interactive pages.
pub fn router(auth: Arc<Auth>) -> axum::Router {
    let _ = auth;
    axum::Router::new()
}
