//! The authorization request: URL with PKCE S256, state and nonce, and the pending
//! authorization a web service keeps until the callback (spec §1a).

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use time::OffsetDateTime;
use url::Url;

use crate::client::EntraClient;
use crate::cloud::Authority;
use crate::error::AuthError;
use crate::random::random_token;

/// A pending authorization expires after this long: codes themselves live about
/// 10 minutes (spec §1a).
pub const PENDING_AUTHORIZATION_LIFETIME: Duration = Duration::from_secs(600);

/// The `prompt` parameter (spec §1a).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Prompt {
    /// Let the user pick an account.
    SelectAccount,
    /// Show the consent page again; an admin consenting with it consents for the whole
    /// tenant (spec §1a).
    Consent,
    /// Ask for credentials even with a session.
    Login,
    /// No interaction; fails with `interaction_required`/`login_required` if needed.
    None,
}

impl Prompt {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SelectAccount => "select_account",
            Self::Consent => "consent",
            Self::Login => "login",
            Self::None => "none",
        }
    }
}

/// The `response_mode` parameter (spec §1a).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ResponseMode {
    /// The code comes in the redirect's query (default for `response_type=code`).
    Query,
    /// The code comes in the redirect's fragment.
    Fragment,
    /// The code comes in a form POST to the redirect URI (recommended for web apps).
    FormPost,
}

impl ResponseMode {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Fragment => "fragment",
            Self::FormPost => "form_post",
        }
    }
}

/// What a web service keeps between the redirect to Entra and the callback: state, nonce,
/// PKCE verifier, redirect URI, authority and scopes.
///
/// It serializes (to keep it in a session store) and expires after
/// [`PENDING_AUTHORIZATION_LIFETIME`]. `Debug` and `Display` redact its secrets; its
/// serialized form holds them, so store it server-side only.
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingAuthorization {
    #[serde(serialize_with = "expose")]
    pub(crate) state: SecretString,
    #[serde(serialize_with = "expose")]
    pub(crate) nonce: SecretString,
    #[serde(serialize_with = "expose")]
    pub(crate) pkce_verifier: SecretString,
    pub(crate) redirect_uri: Url,
    pub(crate) authority: Authority,
    pub(crate) scopes: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) created_at: OffsetDateTime,
    /// The caller's claims request (without `cp1`), repeated by the code redemption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) claims: Option<String>,
}

fn expose<S: Serializer>(secret: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose_secret())
}

impl PendingAuthorization {
    /// The authority the request went to.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The redirect URI of the request (the code exchange repeats it).
    pub fn redirect_uri(&self) -> &Url {
        &self.redirect_uri
    }

    /// The requested scopes, as sent.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// The claims request given to
    /// [`AuthorizationRequestBuilder::claims`], if any (without the `cp1` declaration,
    /// which is added to each request); the code redemption sends it again.
    pub fn claims(&self) -> Option<&str> {
        self.claims.as_deref()
    }

    /// When the request was made.
    pub fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }

    /// When it stops being accepted.
    pub fn expires_at(&self) -> OffsetDateTime {
        self.checked_expires_at()
            .unwrap_or(OffsetDateTime::new_utc(time::Date::MAX, time::Time::MAX))
    }

    /// `created_at` plus the lifetime; `None` when that overflows, which only a tampered
    /// or corrupted `created_at` (deserialized from the caller's session store) can cause.
    pub(crate) fn checked_expires_at(&self) -> Option<OffsetDateTime> {
        time::Duration::try_from(PENDING_AUTHORIZATION_LIFETIME)
            .ok()
            .and_then(|lifetime| self.created_at.checked_add(lifetime))
    }

    /// The `state` value, to find this pending authorization again when the callback
    /// arrives (e.g. as a session-store key). It is compared in constant time on callback.
    pub fn state(&self) -> &SecretString {
        &self.state
    }
}

impl fmt::Debug for PendingAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingAuthorization")
            .field("state", &"[REDACTED]")
            .field("nonce", &"[REDACTED]")
            .field("pkce_verifier", &"[REDACTED]")
            .field("redirect_uri", &self.redirect_uri.as_str())
            .field("authority", &self.authority)
            .field("scopes", &self.scopes)
            .field("created_at", &self.created_at)
            .field("claims", &self.claims)
            .finish()
    }
}

impl fmt::Display for PendingAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pending authorization at {} created {} [secrets REDACTED]",
            self.authority, self.created_at
        )
    }
}

/// An authorization URL to send the browser to, and the pending authorization to keep.
pub struct AuthorizationRequest {
    url: Url,
    pending: PendingAuthorization,
}

impl AuthorizationRequest {
    /// The URL of `/{tenant}/oauth2/v2.0/authorize` with every parameter.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The pending authorization.
    pub fn pending(&self) -> &PendingAuthorization {
        &self.pending
    }

    /// Both parts, by value.
    pub fn into_parts(self) -> (Url, PendingAuthorization) {
        (self.url, self.pending)
    }
}

impl fmt::Debug for AuthorizationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationRequest")
            .field("endpoint", &self.url.path())
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for AuthorizationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "authorization request to {}", self.url.path())
    }
}

/// Options of an authorization request; made by [`EntraClient::authorization_request`].
#[derive(Debug)]
#[must_use]
pub struct AuthorizationRequestBuilder<'a> {
    client: &'a EntraClient,
    authority: Authority,
    scopes: Option<Vec<String>>,
    prompt: Option<Prompt>,
    login_hint: Option<String>,
    domain_hint: Option<String>,
    response_mode: Option<ResponseMode>,
    claims: Option<String>,
}

impl EntraClient {
    /// Starts an authorization request to the `organizations` authority with the client's
    /// scopes.
    pub fn authorization_request(&self) -> AuthorizationRequestBuilder<'_> {
        AuthorizationRequestBuilder {
            client: self,
            authority: Authority::organizations(),
            scopes: None,
            prompt: None,
            login_hint: None,
            domain_hint: None,
            response_mode: None,
            claims: None,
        }
    }
}

impl AuthorizationRequestBuilder<'_> {
    /// The authority (default `organizations`; a tenant id when reconnecting).
    pub fn authority(mut self, authority: Authority) -> Self {
        self.authority = authority;
        self
    }

    /// Scopes for this request instead of the client's.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// The `prompt` parameter.
    pub fn prompt(mut self, prompt: Prompt) -> Self {
        self.prompt = Some(prompt);
        self
    }

    /// The `login_hint` parameter (pre-fills the username).
    pub fn login_hint(mut self, login_hint: impl Into<String>) -> Self {
        self.login_hint = Some(login_hint.into());
        self
    }

    /// The `domain_hint` parameter (e.g. the tenant id of an earlier sign-in).
    pub fn domain_hint(mut self, domain_hint: impl Into<String>) -> Self {
        self.domain_hint = Some(domain_hint.into());
        self
    }

    /// The `response_mode` parameter.
    pub fn response_mode(mut self, response_mode: ResponseMode) -> Self {
        self.response_mode = Some(response_mode);
        self
    }

    /// A claims request (JSON object text), e.g. [`AuthError::reconnect_claims`] after a
    /// claims challenge ended in "reconnect needed" (spec §7). It is deep-merged with the
    /// `cp1` declaration when the client makes it, and sent again when the code is
    /// redeemed. Checked by [`build`](Self::build).
    pub fn claims(mut self, claims: impl Into<String>) -> Self {
        self.claims = Some(claims.into());
        self
    }

    /// The URL and pending authorization, with a fresh state, nonce and PKCE verifier
    /// from the OS RNG.
    ///
    /// # Errors
    /// [`AuthError::InvalidConfiguration`] when the client has no redirect URI, no
    /// scopes are given, or `login_hint` is combined with `prompt=select_account` (which
    /// Entra does not allow, spec §1a); [`AuthError::InvalidClaims`] when the claims are
    /// not a JSON object of at most [`MAX_CLAIMS_BYTES`](crate::MAX_CLAIMS_BYTES);
    /// [`AuthError::Randomness`] if the OS RNG fails.
    pub fn build(self) -> Result<AuthorizationRequest, AuthError> {
        let client = self.client;
        let redirect_uri = client.redirect_uri()?.clone();
        let scopes = client.qualified_scopes(self.scopes.as_deref());
        if scopes.is_empty() {
            return Err(AuthError::InvalidConfiguration(
                "an authorization request needs at least one scope".to_owned(),
            ));
        }
        if self.login_hint.is_some() && self.prompt == Some(Prompt::SelectAccount) {
            return Err(AuthError::InvalidConfiguration(
                "login_hint cannot be combined with prompt=select_account".to_owned(),
            ));
        }
        let claims = client.claims_param(self.claims.as_deref())?;
        let state = random_token()?;
        let nonce = random_token()?;
        let verifier = oauth2::PkceCodeVerifier::new(random_token()?);
        let challenge = oauth2::PkceCodeChallenge::from_code_verifier_sha256(&verifier);

        let oauth = client.oauth_client(&self.authority);
        let mut request = oauth
            .authorize_url(|| oauth2::CsrfToken::new(state.clone()))
            .set_redirect_uri(Cow::Owned(oauth2::RedirectUrl::from_url(
                redirect_uri.clone(),
            )))
            .set_pkce_challenge(challenge)
            .add_scopes(scopes.iter().cloned().map(oauth2::Scope::new))
            .add_extra_param("nonce", nonce.clone());
        if let Some(mode) = self.response_mode {
            request = request.add_extra_param("response_mode", mode.as_str());
        }
        if let Some(prompt) = self.prompt {
            request = request.add_extra_param("prompt", prompt.as_str());
        }
        if let Some(hint) = self.login_hint {
            request = request.add_extra_param("login_hint", hint);
        }
        if let Some(hint) = self.domain_hint {
            request = request.add_extra_param("domain_hint", hint);
        }
        if let Some(claims) = claims {
            request = request.add_extra_param("claims", claims);
        }
        let (url, _) = request.url();

        Ok(AuthorizationRequest {
            url,
            pending: PendingAuthorization {
                state: SecretString::from(state),
                nonce: SecretString::from(nonce),
                pkce_verifier: SecretString::from(verifier.into_secret()),
                redirect_uri,
                authority: self.authority,
                scopes,
                created_at: client.now(),
                claims: self.claims,
            },
        })
    }
}
