//! The simulated Microsoft Entra v2.0 endpoints: authorize (auto-consent, interactive
//! pages, failure modes), token (authorization code + PKCE, refresh with rotation,
//! device code), device code, admin consent, discovery, JWKS, id tokens.
//!
//! This module is the contract between the Entra half and the Graph half of the
//! simulator: the Graph half gives it an [`AccountDirectory`] to sign users in from,
//! serves [`router`] on the login listener, and asks [`Auth::validate_bearer`] about
//! every Graph request.
//!
//! The endpoints and the decisions taken where Microsoft's documentation is silent are
//! listed in `README-entra.md` next to this file.

mod admin_consent;
mod authorization;
mod authorize;
mod cae;
mod claims;
mod clock;
mod device;
mod discovery;
mod errors;
mod grants;
mod keys;
mod pages;
mod redirect;
mod request;
mod scopes;
mod token;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};

use self::clock::Clock;
use self::grants::{Grants, digest};
use self::keys::SigningKey;

pub use self::cae::{CaeEvent, ClaimsChallenge};

/// One account of the simulated tenant, as the sign-in page and the id token see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The user's object id (`oid`, Graph `user.id`).
    pub id: String,
    /// The user principal name (`preferred_username`).
    pub user_principal_name: String,
    /// The display name (`name`).
    pub display_name: String,
    /// Whether the account may consent for the whole tenant: it holds Global
    /// Administrator or another role that may ([`crate::DirectoryRole::can_grant_tenant_wide_consent`]).
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
    /// The template ids of the directory roles the account holds (the `wids` claim of
    /// its id tokens when the tenant asks for it); none by default.
    fn role_template_ids(&self, id_or_upn: &str) -> Vec<String> {
        let _ = id_or_upn;
        Vec::new()
    }
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
    /// (the last requested one that is not an OIDC scope).
    MissingOneScope,
}

/// Settings of the Entra half: the one multi-tenant app and the login host it is
/// registered on; [`AuthTenant`] names the tenants it serves.
#[derive(Clone)]
pub struct AuthConfig {
    /// The registered app's client id.
    pub client_id: String,
    /// The registered app's client secret (confidential clients must send it).
    pub client_secret: String,
    /// The login listener's base URL, e.g. `http://127.0.0.1:4321` (no trailing slash);
    /// `iss` is `{login_base}/{tid}/v2.0`.
    pub login_base: String,
    /// The Graph root the scopes are for, e.g. `https://graph.microsoft.com`.
    pub graph_resource: String,
    /// Access token lifetime (`expires_in`) every tenant starts with.
    pub access_token_lifetime: Duration,
    /// Lifetime of CAE access tokens (the request declared `cp1`) every tenant starts
    /// with; Microsoft's run up to 28 hours [E:app-resilience-continuous-access-evaluation.md].
    pub cae_access_token_lifetime: Duration,
    /// How `/authorize` behaves in every tenant at start.
    pub consent_mode: ConsentMode,
}

/// One tenant (directory) the login host serves, as Microsoft's one login host serves
/// every tenant of its cloud.
#[derive(Clone)]
pub struct AuthTenant {
    /// The tenant's id (`tid`), a GUID string.
    pub id: String,
    /// The tenant's primary domain, e.g. `contoso.onmicrosoft.com` (accepted as `{tenant}`,
    /// and the domain of its users' UPNs).
    pub domain: String,
    /// Where its accounts are read from.
    pub directory: Arc<dyn AccountDirectory>,
}

impl fmt::Debug for AuthTenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthTenant")
            .field("id", &self.id)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("login_base", &self.login_base)
            .field("graph_resource", &self.graph_resource)
            .field("access_token_lifetime", &self.access_token_lifetime)
            .field("cae_access_token_lifetime", &self.cae_access_token_lifetime)
            .field("consent_mode", &self.consent_mode)
            .finish()
    }
}

/// What Graph learns from a valid bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerGrant {
    /// The index of the tenant the token was issued in (the order of [`Auth::new`]'s
    /// tenants).
    pub tenant: usize,
    /// The signed-in user's object id.
    pub user_id: String,
    /// The granted delegated Graph scopes, without resource prefix (`User.Read.All`).
    pub scopes: Vec<String>,
}

/// Why a bearer token was refused; Graph answers each with 401
/// `InvalidAuthenticationToken`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BearerError {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Not a token this simulator issued, or revoked.
    Invalid,
    /// Issued here, but past its expiry.
    Expired,
    /// A CAE token issued before a CAE event on its user: Graph answers with a claims
    /// challenge (spec §7).
    Challenged(ClaimsChallenge),
}

/// What the simulator recorded about an access token it issued.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccessTokenInfo {
    tenant: usize,
    user_id: String,
    cae: bool,
    issued_at: i64,
    expires_at: i64,
}

impl AccessTokenInfo {
    /// The index of the tenant it was issued in.
    pub fn tenant(&self) -> usize {
        self.tenant
    }

    /// The signed-in user's object id.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// Whether it is a CAE token (the request declared `cp1`), which Graph challenges
    /// after a CAE event instead of honouring it until it expires.
    pub fn is_cae(&self) -> bool {
        self.cae
    }

    /// When it was issued (unix seconds of the simulator's clock).
    pub fn issued_at(&self) -> i64 {
        self.issued_at
    }

    /// When it expires (unix seconds of the simulator's clock).
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }
}

/// One tenant's token endpoint requests since start (or the last reset). A request
/// counts in the tenant whose grant it redeems, or, when it fails before one is found,
/// in the tenant its URL names; on `organizations`/`common` with an unknown grant it
/// counts nowhere (only in [`AuthCounters`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct TokenCounters {
    requests: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    access_tokens: u64,
    cae_access_tokens: u64,
    challenge_answers: u64,
}

impl TokenCounters {
    /// Every token request (all grant types, answered with tokens or an error).
    pub fn total(&self) -> u64 {
        self.requests.values().sum()
    }

    /// Requests of one grant type: `authorization_code`, `refresh_token`,
    /// `device_code` (the `urn:ietf:params:oauth:grant-type:device_code` grant), or
    /// `unsupported` / `missing`.
    pub fn requests(&self, grant_type: &str) -> u64 {
        self.requests.get(grant_type).copied().unwrap_or(0)
    }

    /// Requests per grant type.
    pub fn by_grant_type(&self) -> &BTreeMap<String, u64> {
        &self.requests
    }

    /// Requests answered with this `error` (`invalid_grant`, `interaction_required`, …).
    pub fn errors(&self, error: &str) -> u64 {
        self.errors.get(error).copied().unwrap_or(0)
    }

    /// Error answers per `error`.
    pub fn by_error(&self) -> &BTreeMap<String, u64> {
        &self.errors
    }

    /// Access tokens issued (CAE ones included).
    pub fn access_tokens_issued(&self) -> u64 {
        self.access_tokens
    }

    /// CAE access tokens issued (the request declared `cp1`).
    pub fn cae_access_tokens_issued(&self) -> u64 {
        self.cae_access_tokens
    }

    /// Requests whose `claims` answered a claims challenge (held more than `xms_cc`
    /// under `access_token`, such as the challenge's `nbf`).
    pub fn challenge_answers(&self) -> u64 {
        self.challenge_answers
    }

    fn record_request(&mut self, grant_type: &str, error: Option<&str>, answers_challenge: bool) {
        *self.requests.entry(grant_type.to_owned()).or_default() += 1;
        if let Some(error) = error {
            *self.errors.entry(error.to_owned()).or_default() += 1;
        }
        if answers_challenge {
            self.challenge_answers += 1;
        }
    }

    fn record_issue(&mut self, cae: bool) {
        self.access_tokens += 1;
        if cae {
            self.cae_access_tokens += 1;
        }
    }

    /// Adds another set of counts to this one.
    pub(crate) fn add(&mut self, other: &Self) {
        for (grant_type, count) in &other.requests {
            *self.requests.entry(grant_type.clone()).or_default() += count;
        }
        for (error, count) in &other.errors {
            *self.errors.entry(error.clone()).or_default() += count;
        }
        self.access_tokens += other.access_tokens;
        self.cae_access_tokens += other.cae_access_tokens;
        self.challenge_answers += other.challenge_answers;
    }
}

/// How many requests each Entra endpoint answered, by outcome; read with
/// [`Auth::counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthCounters {
    /// Authorization codes issued.
    pub codes_issued: u64,
    /// Token endpoint answers with tokens.
    pub tokens_issued: u64,
    /// Token endpoint answers with an error body.
    pub token_errors: u64,
    /// Refresh tokens revoked through the control methods.
    pub refresh_tokens_revoked: u64,
}

/// Settings of one tenant that the control methods change while the simulator runs.
#[derive(Debug, Clone, Copy)]
struct TenantSettings {
    consent_mode: ConsentMode,
    access_token_lifetime: Duration,
    cae_access_token_lifetime: Duration,
    /// Id tokens carry `wids` (the app manifest's `groupMembershipClaims` asks for
    /// directory roles); off by default, as for a new app registration.
    wids_claim: bool,
}

/// A served tenant and its settings.
struct Tenant {
    id: String,
    domain: String,
    directory: Arc<dyn AccountDirectory>,
    settings: Mutex<TenantSettings>,
    token_counters: Mutex<TokenCounters>,
}

/// Settings of the app registration that the control methods change while the
/// simulator runs.
#[derive(Debug, Clone)]
struct Settings {
    prefixed_scopes: bool,
    allow_public_client: bool,
    extra_redirect_uris: Vec<String>,
    client_certificates: Vec<keys::ClientCertificate>,
}

/// The Entra half's state: codes, refresh tokens, device codes, signing key.
pub struct Auth {
    config: AuthConfig,
    /// SHA-256 of the client secret: the secret itself is not kept.
    client_secret_digest: [u8; 32],
    tenants: Vec<Tenant>,
    /// Tenant ids and domains, lower case, to the tenant's index.
    tenant_names: HashMap<String, usize>,
    key: Arc<SigningKey>,
    clock: Clock,
    settings: Mutex<Settings>,
    grants: Mutex<Grants>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("config", &self.config)
            .field("tenants", &self.tenants.len())
            .field("kid", &self.key.kid())
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Builds the Entra half serving `tenants` (index 0 first): empty grant tables and
    /// the RS256 signing key (made on first use and shared by every simulator in the
    /// process, as Microsoft's keys are shared by the tenants of a cloud).
    ///
    /// # Errors
    /// [`crate::Error::InvalidConfig`] without tenants or when two share an id or domain;
    /// [`crate::Error::Start`] when the signing key cannot be made.
    pub fn new(config: AuthConfig, tenants: Vec<AuthTenant>) -> Result<Arc<Self>, crate::Error> {
        if tenants.is_empty() {
            return Err(crate::Error::InvalidConfig(
                "the login host needs at least one tenant".into(),
            ));
        }
        let mut tenant_names = HashMap::with_capacity(tenants.len() * 2);
        for (index, tenant) in tenants.iter().enumerate() {
            for name in [&tenant.id, &tenant.domain] {
                if tenant_names
                    .insert(name.to_ascii_lowercase(), index)
                    .is_some_and(|other| other != index)
                {
                    return Err(crate::Error::InvalidConfig(format!(
                        "two tenants are named '{name}'"
                    )));
                }
            }
        }
        let key = SigningKey::shared().map_err(crate::Error::Start)?;
        let initial = TenantSettings {
            consent_mode: config.consent_mode,
            access_token_lifetime: config.access_token_lifetime,
            cae_access_token_lifetime: config.cae_access_token_lifetime,
            wids_claim: false,
        };
        let tenants = tenants
            .into_iter()
            .map(|tenant| Tenant {
                id: tenant.id,
                domain: tenant.domain,
                directory: tenant.directory,
                settings: Mutex::new(initial),
                token_counters: Mutex::new(TokenCounters::default()),
            })
            .collect();
        let settings = Settings {
            prefixed_scopes: true,
            allow_public_client: false,
            extra_redirect_uris: Vec::new(),
            client_certificates: Vec::new(),
        };
        Ok(Arc::new(Self {
            client_secret_digest: digest(&config.client_secret),
            config,
            tenants,
            tenant_names,
            key,
            clock: Clock::default(),
            settings: Mutex::new(settings),
            grants: Mutex::new(Grants::default()),
        }))
    }

    /// The configuration this was built with (the control methods' changes are not
    /// reflected here).
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Checks an `Authorization` header value (`Bearer …`) as Graph would.
    ///
    /// # Errors
    /// [`BearerError`] when it is missing, unknown, revoked or expired.
    pub fn validate_bearer(&self, authorization: Option<&str>) -> Result<BearerGrant, BearerError> {
        let header = authorization.map(str::trim).ok_or(BearerError::Missing)?;
        let (scheme, token) = header.split_once(' ').ok_or(BearerError::Missing)?;
        // The scheme is case-insensitive (RFC 7235 §2.1).
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(BearerError::Missing);
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(BearerError::Missing);
        }
        let now = self.clock.now();
        self.grants().validate_access_token(&digest(token), now)
    }

    /// Revokes every refresh token (and access token) issued to this user of tenant
    /// `tenant`: the next refresh gets `invalid_grant` (AADSTS50173). Returns how many
    /// refresh tokens were revoked.
    pub fn revoke_user_grants(&self, tenant: usize, user_id: &str) -> usize {
        self.grants().revoke_user(tenant, user_id)
    }

    /// Records a CAE event on this user of tenant `tenant` now, and returns its unix time
    /// (the `nbf` of the challenges it causes). Graph challenges the user's CAE access
    /// tokens issued before it; [`CaeEvent::SessionsRevoked`] also revokes the user's
    /// refresh tokens (AADSTS50173), the interaction events make those issued before
    /// fail (AADSTS50076). Non-CAE access tokens keep working until they expire.
    ///
    /// Disabling or deleting the account is the directory's business: this only records
    /// the event (the control API does both).
    pub fn signal_cae_event(&self, tenant: usize, user_id: &str, event: CaeEvent) -> i64 {
        let wall = self.clock.wall();
        self.grants().record_event(tenant, user_id, event, wall)
    }

    /// Graph's `revokeSignInSessions` for this user of tenant `tenant`: every refresh
    /// token issued so far stops working and CAE access tokens issued so far are
    /// challenged. Returns the revocation's unix time.
    pub fn revoke_sign_in_sessions(&self, tenant: usize, user_id: &str) -> i64 {
        self.signal_cae_event(tenant, user_id, CaeEvent::SessionsRevoked)
    }

    /// What the simulator recorded about an access token it issued (CAE or not, when
    /// issued, when it expires); `None` for a token it does not know.
    pub fn access_token_info(&self, access_token: &str) -> Option<AccessTokenInfo> {
        self.grants().access_token_info(&digest(access_token))
    }

    /// Tenant `tenant`'s token endpoint counts (empty for an unknown index).
    pub fn token_counters(&self, tenant: usize) -> TokenCounters {
        self.tenants
            .get(tenant)
            .map(|tenant| {
                tenant
                    .token_counters
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            })
            .unwrap_or_default()
    }

    /// Sets tenant `tenant`'s token endpoint counts to zero.
    pub fn reset_token_counters(&self, tenant: usize) {
        self.with_token_counters(tenant, |counters| *counters = TokenCounters::default());
    }

    fn with_token_counters(&self, tenant: usize, change: impl FnOnce(&mut TokenCounters)) {
        if let Some(tenant) = self.tenants.get(tenant) {
            change(
                &mut tenant
                    .token_counters
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
        }
    }

    /// Revokes one refresh token of tenant `tenant` by its value. Returns whether it
    /// existed there.
    ///
    /// Only this token is revoked; tokens rotated from it before, and after, keep
    /// working (Entra itself only revokes per user; this is the simulator's finer tool).
    pub fn revoke_refresh_token(&self, tenant: usize, refresh_token: &str) -> bool {
        self.grants()
            .revoke_refresh_token(tenant, &digest(refresh_token))
    }

    /// Changes how `/authorize` behaves in tenant `tenant` from now on (an unknown index
    /// changes nothing).
    pub fn set_consent_mode(&self, tenant: usize, mode: ConsentMode) {
        if let Some(mut settings) = self.tenant_settings(tenant) {
            settings.consent_mode = mode;
        }
    }

    /// Whether id tokens tenant `tenant` issues from now on carry `wids`, the template ids
    /// of the user's directory roles, as Entra adds them when the app manifest's
    /// `groupMembershipClaims` is `DirectoryRole` or `All` (access-token-claims-reference.md;
    /// that page documents `wids` for access tokens, in id tokens it is UNCONFIRMED).
    /// Off by default. An unknown index changes nothing.
    pub fn set_wids_claim(&self, tenant: usize, enabled: bool) {
        if let Some(mut settings) = self.tenant_settings(tenant) {
            settings.wids_claim = enabled;
        }
    }

    /// Whether id tokens of tenant `tenant` carry `wids`.
    pub fn wids_claim(&self, tenant: usize) -> bool {
        self.settings_of(tenant).wids_claim
    }

    /// Sets the access token lifetime for tokens tenant `tenant` issues from now on.
    pub fn set_access_token_lifetime(&self, tenant: usize, lifetime: Duration) {
        if let Some(mut settings) = self.tenant_settings(tenant) {
            settings.access_token_lifetime = lifetime;
        }
    }

    /// Sets the lifetime of CAE access tokens (requests that declare `cp1`) that tenant
    /// `tenant` issues from now on.
    pub fn set_cae_access_token_lifetime(&self, tenant: usize, lifetime: Duration) {
        if let Some(mut settings) = self.tenant_settings(tenant) {
            settings.cae_access_token_lifetime = lifetime;
        }
    }

    /// Approves a pending device code as this user of tenant `tenant` (what a person
    /// typing the user code at the verification URI does). Returns whether the user code
    /// was pending and may be approved in this tenant.
    pub fn approve_device_code(&self, tenant: usize, user_code: &str, user_id: &str) -> bool {
        let Some(account) = self.account_in(tenant, user_id) else {
            return false;
        };
        let mode = self.consent_mode(tenant);
        device::approve(self, tenant, user_code, &account, mode).is_ok()
    }

    /// Declines a pending device code (the person pressed Cancel): the next poll gets
    /// `authorization_declined`. Returns whether the user code was pending.
    pub fn decline_device_code(&self, user_code: &str) -> bool {
        self.grants()
            .decline_device_code(user_code, self.clock.now())
    }

    /// The consent mode in force in tenant `tenant` (tenant 0's for an unknown index).
    pub fn consent_mode(&self, tenant: usize) -> ConsentMode {
        self.settings_of(tenant).consent_mode
    }

    /// Whether token responses name Graph scopes with their resource prefix
    /// (`https://graph.microsoft.com/User.Read.All`, the default) or without it
    /// (`User.Read.All`, as in Microsoft's device-code sample). Clients must accept both.
    pub fn set_prefixed_scopes(&self, prefixed: bool) {
        self.settings().prefixed_scopes = prefixed;
    }

    /// Lets the app redeem codes and refresh tokens without a client secret or assertion
    /// (the app registration's "Allow public client flows"). Off by default: the app is
    /// confidential. The device code grant never needs credentials.
    pub fn set_allow_public_client(&self, allow: bool) {
        self.settings().allow_public_client = allow;
    }

    /// Registers one more redirect URI besides the loopback ones (which are accepted on
    /// any port and path). Matching is exact and case-sensitive; for loopback hosts the
    /// port is ignored, as Entra does.
    pub fn add_redirect_uri(&self, uri: impl Into<String>) {
        self.settings().extra_redirect_uris.push(uri.into());
    }

    /// Registers a certificate (PEM, `-----BEGIN CERTIFICATE-----`) whose key may sign
    /// client assertions (`private_key_jwt`, RS256 with `x5t` or PS256 with `x5t#S256`).
    ///
    /// # Errors
    /// When the PEM is not an RSA certificate.
    pub fn register_client_certificate(&self, pem: &str) -> Result<(), AuthControlError> {
        let certificate = keys::ClientCertificate::from_pem(pem)?;
        self.settings().client_certificates.push(certificate);
        Ok(())
    }

    /// Moves the simulator's clock forward: codes, access tokens, refresh tokens and
    /// device codes expire as if this much time had passed. For tests. Id tokens issued
    /// afterwards carry the moved time in `iat`/`nbf`/`exp` too.
    pub fn advance_clock(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// How many requests each endpoint answered, by outcome.
    pub fn counters(&self) -> AuthCounters {
        self.grants().counters
    }

    /// The PEM of the certificate holding the id-token signing key (its public key is the
    /// one published at `jwks_uri`).
    pub fn signing_certificate_pem(&self) -> &str {
        self.key.certificate_pem()
    }

    /// Which tenant a `{tenant}` path segment names (spec §1a): `organizations`,
    /// `common`, a served tenant's id or domain (case-insensitive). `consumers` and
    /// unknown tenants are not served by this (work-account-only) login host.
    fn resolve_tenant(&self, segment: &str) -> Option<TenantSegment> {
        if segment.eq_ignore_ascii_case("organizations") {
            Some(TenantSegment::Organizations)
        } else if segment.eq_ignore_ascii_case("common") {
            Some(TenantSegment::Common)
        } else {
            self.tenant_names
                .get(&segment.to_ascii_lowercase())
                .map(|index| TenantSegment::Tenant(*index))
        }
    }

    /// The tenant's id (`tid`); tenant 0's for an unknown index.
    fn tenant_id(&self, tenant: usize) -> &str {
        self.tenants
            .get(tenant)
            .or_else(|| self.tenants.first())
            .map_or("", |tenant| tenant.id.as_str())
    }

    /// The tenant's primary domain; tenant 0's for an unknown index.
    fn tenant_domain(&self, tenant: usize) -> &str {
        self.tenants
            .get(tenant)
            .or_else(|| self.tenants.first())
            .map_or("", |tenant| tenant.domain.as_str())
    }

    /// The account with this object id or UPN in tenant `tenant`.
    fn account_in(&self, tenant: usize, id_or_upn: &str) -> Option<Account> {
        self.tenants.get(tenant)?.directory.account(id_or_upn)
    }

    /// The account with this object id or UPN in whichever tenant holds it: a UPN's
    /// domain names its tenant (guests' `#EXT#@domain` too), an object id is looked up
    /// in every tenant. This is how `/organizations` and `/common` learn the tenant from
    /// who signs in.
    fn account_anywhere(&self, id_or_upn: &str) -> Option<(usize, Account)> {
        if let Some((_, domain)) = id_or_upn.rsplit_once('@') {
            let tenant = *self.tenant_names.get(&domain.to_ascii_lowercase())?;
            return self.account_in(tenant, id_or_upn).map(|a| (tenant, a));
        }
        self.tenants
            .iter()
            .enumerate()
            .find_map(|(index, tenant)| tenant.directory.account(id_or_upn).map(|a| (index, a)))
    }

    /// The account named on a request to `home` (a tenant the URL names, or `None` for
    /// `organizations`/`common`).
    fn account_for(&self, home: Option<usize>, id_or_upn: &str) -> Option<(usize, Account)> {
        match home {
            Some(tenant) => self.account_in(tenant, id_or_upn).map(|a| (tenant, a)),
            None => self.account_anywhere(id_or_upn),
        }
    }

    /// Accounts to offer on a sign-in page of tenant `tenant`.
    fn sign_in_candidates(&self, tenant: usize, limit: usize) -> Vec<Account> {
        self.tenants
            .get(tenant)
            .map(|tenant| tenant.directory.sign_in_candidates(limit))
            .unwrap_or_default()
    }

    /// `{login_base}/{tid}/v2.0`, the id token's `iss` (spec §5a).
    fn issuer(&self, tenant: usize) -> String {
        format!("{}/{}/v2.0", self.login_base(), self.tenant_id(tenant))
    }

    fn login_base(&self) -> &str {
        self.config.login_base.trim_end_matches('/')
    }

    fn is_client(&self, client_id: &str) -> bool {
        client_id.eq_ignore_ascii_case(&self.config.client_id)
    }

    fn settings(&self) -> MutexGuard<'_, Settings> {
        // A poisoned lock means a panic in a short critical section that holds no
        // invariant across the panic point; keep serving.
        self.settings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn tenant_settings(&self, tenant: usize) -> Option<MutexGuard<'_, TenantSettings>> {
        self.tenants.get(tenant).map(|tenant| {
            tenant
                .settings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        })
    }

    /// The settings of tenant `tenant` (tenant 0's for an unknown index).
    fn settings_of(&self, tenant: usize) -> TenantSettings {
        self.tenant_settings(tenant)
            .or_else(|| self.tenant_settings(0))
            .map_or(
                TenantSettings {
                    consent_mode: self.config.consent_mode,
                    access_token_lifetime: self.config.access_token_lifetime,
                    cae_access_token_lifetime: self.config.cae_access_token_lifetime,
                    wids_claim: false,
                },
                |settings| *settings,
            )
    }

    fn grants(&self) -> MutexGuard<'_, Grants> {
        self.grants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The kinds of `{tenant}` path segment the login host answers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TenantSegment {
    Organizations,
    Common,
    /// A served tenant, by index.
    Tenant(usize),
}

impl TenantSegment {
    /// The tenant the URL names, `None` for `organizations` and `common` (the tenant
    /// then comes from who signs in).
    fn home(self) -> Option<usize> {
        match self {
            Self::Tenant(index) => Some(index),
            Self::Organizations | Self::Common => None,
        }
    }
}

/// A random, unguessable value of `bytes` random bytes, base64url without padding.
fn random_token(bytes: usize) -> String {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buffer)
}

/// Why a control method refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthControlError {
    /// The certificate could not be read.
    #[error("invalid client certificate: {0}")]
    InvalidCertificate(String),
}

/// The login listener's routes: `/{tenant}/oauth2/v2.0/{authorize,token,devicecode,logout}`,
/// `/{tenant}/v2.0/adminconsent`, `/{tenant}/v2.0/.well-known/openid-configuration`,
/// `/{tenant}/discovery/v2.0/keys`, `/common/discovery/instance`, and the interactive
/// pages (`/{tenant}/login`, `/{tenant}/Consent/Set`, `/devicelogin`).
pub fn router(auth: Arc<Auth>) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/authorize", get(authorize::authorize))
        .route("/{tenant}/login", post(authorize::sign_in))
        .route("/{tenant}/Consent/Set", post(authorize::consent))
        .route(
            "/{tenant}/oauth2/v2.0/token",
            post(token::token).get(token::token_get),
        )
        .route(
            "/{tenant}/oauth2/v2.0/devicecode",
            post(device::device_code),
        )
        .route("/{tenant}/oauth2/v2.0/logout", get(discovery::logout))
        .route(
            "/devicelogin",
            get(device::verification_page).post(device::enter_code),
        )
        .route("/devicelogin/confirm", post(device::confirm))
        .route(
            "/{tenant}/v2.0/adminconsent",
            get(admin_consent::admin_consent),
        )
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(discovery::openid_configuration),
        )
        .route("/{tenant}/discovery/v2.0/keys", get(discovery::keys))
        .route("/common/discovery/instance", get(discovery::instance))
        .with_state(auth)
}
