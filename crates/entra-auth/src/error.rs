//! `AuthError`: one variant per thing a caller does differently (reconnect, retry later,
//! fix configuration, restart sign-in), with Entra's diagnostics kept as fields.
//!
//! A leaf module: the other modules' error types live here too ([`IdTokenError`]), so
//! `error` depends on no other module of this crate.

use std::fmt;
use std::time::Duration;

use url::Url;

/// An error answer from Entra: the token endpoint's JSON error body (spec §4a) or the
/// `error`/`error_description` pair of an authorize or admin-consent redirect (spec §1a, §1b).
///
/// Kept whole for diagnostics. Branch on [`AuthError`]'s variants and predicates, not on
/// the AADSTS numbers in here: Microsoft says code numbers change over time (spec §4a).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntraError {
    pub(crate) error: String,
    pub(crate) description: Option<String>,
    pub(crate) error_codes: Vec<u64>,
    pub(crate) suberror: Option<String>,
    pub(crate) trace_id: Option<String>,
    pub(crate) correlation_id: Option<String>,
    pub(crate) claims: Option<String>,
    pub(crate) error_uri: Option<String>,
    pub(crate) timestamp: Option<String>,
    pub(crate) status: Option<u16>,
    /// The claims the reconnect's authorize request must carry when this answered a
    /// claims challenge: Entra's own `claims` if it sent them, else the challenge's.
    pub(crate) reconnect_claims: Option<String>,
}

impl EntraError {
    /// Builds an error from its `error` code; the other fields start empty.
    ///
    /// Useful for tests and for callers that map other sources to this shape.
    pub fn new(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            ..Self::default()
        }
    }

    /// Sets the human-readable description (Entra's `error_description`).
    #[must_use]
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// The OAuth `error` code, e.g. `invalid_grant`.
    pub fn error(&self) -> &str {
        &self.error
    }

    /// Entra's `error_description` (for people, never for control flow).
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The AADSTS numbers (`error_codes`), for diagnostics.
    ///
    /// For redirect errors, which carry no `error_codes`, these are the `AADSTS<n>` numbers
    /// found in the description.
    pub fn error_codes(&self) -> &[u64] {
        &self.error_codes
    }

    /// Entra's `suberror` (e.g. `bad_token`, `basic_action`), spec §4c.
    pub fn suberror(&self) -> Option<&str> {
        self.suberror.as_deref()
    }

    /// Entra's `trace_id`.
    pub fn trace_id(&self) -> Option<&str> {
        self.trace_id.as_deref()
    }

    /// Entra's `correlation_id`.
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }

    /// A Conditional Access claims request (JSON text) to send with the next interactive
    /// sign-in (spec §7).
    pub fn claims(&self) -> Option<&str> {
        self.claims.as_deref()
    }

    /// Entra's `error_uri`, present only sometimes.
    pub fn error_uri(&self) -> Option<&str> {
        self.error_uri.as_deref()
    }

    /// Entra's `timestamp`, verbatim (a documented sample holds a placeholder, so it is not
    /// parsed).
    pub fn timestamp(&self) -> Option<&str> {
        self.timestamp.as_deref()
    }

    /// The HTTP status of the token-endpoint answer; `None` for redirect errors.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    pub(crate) fn with_codes_from_description(mut self) -> Self {
        if self.error_codes.is_empty()
            && let Some(description) = &self.description
        {
            self.error_codes = aadsts_codes(description);
        }
        self
    }

    fn has_code(&self, codes: &[u64]) -> bool {
        self.error_codes.iter().any(|code| codes.contains(code))
    }
}

impl fmt::Display for EntraError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.error)?;
        if let Some(suberror) = &self.suberror {
            write!(f, " ({suberror})")?;
        }
        // The first line of the description is the readable part; the rest repeats the
        // trace and correlation ids (spec §4a sample).
        if let Some(line) = self
            .description
            .as_deref()
            .and_then(|description| description.lines().next())
            .filter(|line| !line.is_empty())
        {
            write!(f, ": {line}")?;
        }
        if let Some(trace_id) = &self.trace_id {
            write!(f, " [trace id {trace_id}")?;
            if let Some(correlation_id) = &self.correlation_id {
                write!(f, ", correlation id {correlation_id}")?;
            }
            f.write_str("]")?;
        }
        Ok(())
    }
}

/// Every error of this crate.
///
/// Match on the variant, or ask the predicates: [`requires_reauthorization`],
/// [`is_retryable`], [`is_configuration`]. No variant's message contains a token, code,
/// verifier, secret or response body.
///
/// [`requires_reauthorization`]: AuthError::requires_reauthorization
/// [`is_retryable`]: AuthError::is_retryable
/// [`is_configuration`]: AuthError::is_configuration
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Entra says the grant can no longer be used silently (`invalid_grant`,
    /// `interaction_required`, `consent_required`, `login_required`, whatever the AADSTS
    /// number or `suberror`): the admin must sign in again (reconnect).
    #[error("reauthorization required: {0}")]
    ReauthorizationRequired(Box<EntraError>),

    /// The refresh-token store holds no token for this connection: reconnect.
    #[error("no refresh token is stored for this connection; reauthorization required")]
    NoRefreshToken,

    /// Entra rejected the app's configuration (`invalid_client`, `unauthorized_client`,
    /// `invalid_scope`, redirect URI mismatch, app not in the tenant, wrong cloud): fix the
    /// app registration or this crate's settings; retrying will not help.
    #[error("entra rejected the app configuration: {0}")]
    Configuration(Box<EntraError>),

    /// A claims request (a caller's, or a claims challenge's decoded JSON) is not a JSON
    /// object, is larger than [`MAX_CLAIMS_BYTES`](crate::MAX_CLAIMS_BYTES), or cannot be
    /// merged with the `cp1` capability declaration. Nothing was sent.
    #[error("invalid claims request: {detail}")]
    InvalidClaims {
        /// What is wrong (a JSON position or member path, never more of the text).
        detail: String,
    },

    /// An identical token request got a `Retry-After`, a 429 or a 5xx a moment ago, and
    /// the wait it asked for has not passed: nothing was sent (MSAL's throttling, spec
    /// §4c). Retry after [`retry_after`](AuthError::Throttled::retry_after).
    #[error("token request not sent: entra asked to wait another {} s", .retry_after.as_secs_f64().ceil())]
    Throttled {
        /// How much longer identical requests are held back.
        retry_after: Duration,
    },

    /// This crate's settings are invalid (found locally, before any request).
    #[error("invalid configuration: {0}")]
    InvalidConfiguration(String),

    /// Entra is unavailable (`temporarily_unavailable`, `server_error`, HTTP 5xx or 429):
    /// retry later, after [`AuthError::retry_after`] when given.
    #[error("entra is temporarily unavailable: {error}")]
    Unavailable {
        /// Entra's answer.
        error: Box<EntraError>,
        /// The `Retry-After` header, in seconds.
        retry_after: Option<Duration>,
    },

    /// Entra rejected the request for another reason (e.g. `invalid_request`).
    #[error("entra rejected the request: {0}")]
    Rejected(Box<EntraError>),

    /// The HTTP request failed (connection, timeout, TLS): retry later.
    #[error("http request to {endpoint} failed{}", if *.timeout { " (timed out)" } else { "" })]
    Transport {
        /// The endpoint path (no query string).
        endpoint: String,
        /// Whether it timed out.
        timeout: bool,
        /// The transport error (from the HTTP client).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// Entra (or a proxy in between) answered with something that is not the documented
    /// JSON: an HTML error page, a truncated body, a redirect. The body is not kept.
    #[error("unexpected response from {endpoint}: http {status}: {detail}")]
    UnexpectedResponse {
        /// The endpoint path (no query string).
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The `Content-Type` header, if any.
        content_type: Option<String>,
        /// What was wrong (a JSON path and error category, never body content).
        detail: String,
    },

    /// The callback's `state` does not match the pending authorization (or is missing):
    /// possible CSRF; no code was redeemed.
    #[error("callback state does not match the pending authorization")]
    StateMismatch,

    /// The pending authorization is older than its 10-minute lifetime: start again.
    #[error("the pending authorization has expired; start the sign-in again")]
    AuthorizationExpired,

    /// The user cancelled or declined the sign-in or consent (`access_denied`).
    #[error("sign-in was declined: {0}")]
    AuthorizationDeclined(Box<EntraError>),

    /// The user may not consent to the requested permissions: an admin must approve.
    /// Forward [`admin_consent_url`](AuthError::AdminApprovalRequired::admin_consent_url)
    /// to the tenant's IT admin.
    #[error("admin approval required: {error}")]
    AdminApprovalRequired {
        /// Entra's answer.
        error: Box<EntraError>,
        /// The admin-consent link to forward (spec §1b).
        admin_consent_url: Url,
    },

    /// The authorize redirect carried another error (e.g. `invalid_request`,
    /// `server_error`).
    #[error("sign-in failed: {0}")]
    AuthorizationFailed(Box<EntraError>),

    /// The callback could not be understood (no code, repeated parameters, bad URL).
    #[error("invalid callback: {0}")]
    InvalidCallback(String),

    /// A token answer's `token_type` is not `Bearer` (spec §2d: "always `Bearer`"); the
    /// tokens were not used. Not a transient fault: the login host is not speaking Entra's
    /// protocol.
    #[error("{endpoint} answered a token type other than Bearer")]
    UnsupportedTokenType {
        /// The endpoint path (no query string).
        endpoint: String,
    },

    /// The id token failed validation (spec §5a).
    #[error("invalid id token: {0}")]
    InvalidIdToken(#[from] IdTokenError),

    /// The granted scopes do not cover the requested ones.
    #[error("the granted permissions are missing: {}", .missing.join(" "))]
    MissingScopes {
        /// The requested scopes that were not granted.
        missing: Vec<String>,
        /// What Entra granted.
        granted: Vec<String>,
    },

    /// The user declined the device-code sign-in (`authorization_declined`).
    #[error("device code sign-in was declined: {0}")]
    DeviceCodeDeclined(Box<EntraError>),

    /// The device code expired before the user signed in (`expired_token`, or its
    /// `expires_in` passed locally).
    #[error("the device code expired before sign-in completed")]
    DeviceCodeExpired(Option<Box<EntraError>>),

    /// Entra did not recognise the device code (`bad_verification_code`).
    #[error("entra did not recognise the device code: {0}")]
    BadVerificationCode(Box<EntraError>),

    /// Device-code polling was cancelled by the caller.
    #[error("device code polling was cancelled")]
    Cancelled,

    /// A grant for another tenant was offered to a session.
    #[error("the grant is for tenant {actual}, this session is for tenant {expected}")]
    TenantMismatch {
        /// The session's tenant.
        expected: String,
        /// The grant's tenant.
        actual: String,
    },

    /// The refresh-token store failed.
    #[error("refresh token store failed")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),

    /// The operating system's random number generator failed.
    #[error("the operating system random number generator failed")]
    Randomness,
}

/// Why an id token was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdTokenError {
    /// The token answer had no `id_token` (was `openid` requested?).
    #[error("the token response has no id token")]
    Missing,
    /// Not a compact JWT with a JSON payload.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// A required claim is absent (`azp` is required when `aud` is an array).
    #[error("claim {0} is missing")]
    MissingClaim(&'static str),
    /// A claim that must be a GUID (`tid`, `oid`) is not one.
    #[error("claim {0} is not a GUID")]
    NotAGuid(&'static str),
    /// `azp` (the authorized party) is not this app's client id (`OpenID` Connect Core
    /// 3.1.3.7, items 4 and 5).
    #[error("authorized party {actual:?} is not this app")]
    WrongAuthorizedParty {
        /// The token's `azp`.
        actual: String,
    },
    /// `aud` is not this app's client id.
    #[error("audience {actual:?} is not this app")]
    WrongAudience {
        /// The token's `aud`.
        actual: Vec<String>,
    },
    /// `iss` is not `{login}/{tid}/v2.0` for this cloud and the token's `tid`.
    #[error("issuer {actual:?} is not {expected:?}")]
    WrongIssuer {
        /// What this cloud's issuer for the token's tenant is.
        expected: String,
        /// The token's `iss`.
        actual: String,
    },
    /// The header names another algorithm than RS256, the one Entra signs id tokens
    /// with (`id_token_signing_alg_values_supported`): `none`, or HS256 keyed with the
    /// public key, are refused before any key is looked at.
    #[error("signed with {0:?}, not RS256")]
    UnsupportedAlgorithm(String),
    /// The header's `kid` is not in the login host's key set, even after fetching it
    /// again.
    #[error("signing key {kid:?} is not one of the login host's keys")]
    UnknownSigningKey {
        /// The header's `kid`.
        kid: String,
    },
    /// The RS256 signature does not verify with the key the header names.
    #[error("the signature does not verify")]
    BadSignature,
    /// The `nonce` does not match the pending authorization's.
    #[error("nonce does not match")]
    NonceMismatch,
    /// `exp` has passed (beyond the allowed skew).
    #[error("expired at {0}")]
    Expired(i64),
    /// `nbf` is in the future (beyond the allowed skew).
    #[error("not valid before {0}")]
    NotYetValid(i64),
    /// The tenant is not the one the sign-in was sent to.
    #[error("tenant {actual} is not the expected tenant {expected}")]
    WrongTenant {
        /// The tenant the authority named.
        expected: String,
        /// The token's `tid`.
        actual: String,
    },
}

/// AADSTS numbers that mean "fix the app or its settings" although Entra sends them with
/// the generic `invalid_request` error: redirect URI mismatch (50011), app or resource not
/// in the tenant (700016, 500011), tenant not found / other cloud (90002, 90038),
/// single-tenant app on /common (50194), grant not supported on /common (9001023, 90124,
/// 90130), public client sending a secret (700025). Spec §4b. Used only to pick the
/// variant when `error` itself is generic.
const CONFIGURATION_CODES: &[u64] = &[
    50011, 50194, 90002, 90038, 500_011, 700_016, 9_001_023, 90124, 90130, 700_025,
];

impl AuthError {
    /// True when the grant is gone and only a new interactive sign-in (reconnect) helps.
    pub fn requires_reauthorization(&self) -> bool {
        matches!(
            self,
            Self::ReauthorizationRequired(_) | Self::NoRefreshToken
        )
    }

    /// True when the same request may succeed later (5xx, 429, `temporarily_unavailable`,
    /// timeouts, connection errors, a proxy's error page or a truncated body).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unavailable { .. } | Self::Transport { .. } | Self::Throttled { .. } => true,
            Self::UnexpectedResponse { status, .. } => {
                // 200 with a body that is not JSON means it was cut short in transit.
                *status >= 500 || *status == 429 || *status == 200
            }
            _ => false,
        }
    }

    /// True when the app registration or this crate's settings must change.
    pub fn is_configuration(&self) -> bool {
        matches!(self, Self::Configuration(_) | Self::InvalidConfiguration(_))
    }

    /// True when the request timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Transport { timeout: true, .. })
    }

    /// How long Entra asked to wait, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } => *retry_after,
            Self::Throttled { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// For a [`requires_reauthorization`](Self::requires_reauthorization) error, the
    /// claims request (JSON text) the reconnect must carry: pass it to
    /// [`AuthorizationRequestBuilder::claims`](crate::AuthorizationRequestBuilder::claims).
    ///
    /// It is Entra's own `claims` when its error answer held them, else the claims of the
    /// challenge the failed refresh answered ([`TokenSession::claims_challenge`],
    /// [`EntraClient::refresh_with_claims`]); `None` when neither exists.
    ///
    /// [`TokenSession::claims_challenge`]: crate::TokenSession::claims_challenge
    /// [`EntraClient::refresh_with_claims`]: crate::EntraClient::refresh_with_claims
    pub fn reconnect_claims(&self) -> Option<&str> {
        match self {
            Self::ReauthorizationRequired(error) => error
                .claims
                .as_deref()
                .or(error.reconnect_claims.as_deref()),
            _ => None,
        }
    }

    /// Keeps `challenge` (the claims a failed refresh sent) for
    /// [`reconnect_claims`](Self::reconnect_claims), unless Entra sent its own.
    pub(crate) fn with_reconnect_claims(mut self, challenge: Option<&str>) -> Self {
        if let (Self::ReauthorizationRequired(error), Some(challenge)) = (&mut self, challenge)
            && error.claims.is_none()
        {
            error.reconnect_claims = Some(challenge.to_owned());
        }
        self
    }

    /// Entra's error answer, when there is one.
    pub fn entra_error(&self) -> Option<&EntraError> {
        match self {
            Self::ReauthorizationRequired(error)
            | Self::Configuration(error)
            | Self::Unavailable { error, .. }
            | Self::Rejected(error)
            | Self::AuthorizationDeclined(error)
            | Self::AdminApprovalRequired { error, .. }
            | Self::AuthorizationFailed(error)
            | Self::DeviceCodeDeclined(error)
            | Self::DeviceCodeExpired(Some(error))
            | Self::BadVerificationCode(error) => Some(error),
            _ => None,
        }
    }

    /// The HTTP status of the answer that caused this error, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::UnexpectedResponse { status, .. } => Some(*status),
            other => other.entra_error().and_then(EntraError::status),
        }
    }

    /// Sorts an error answer of the token endpoint into its variant (spec §4a-§4c):
    /// by `error` first, by HTTP status for server trouble, and by AADSTS number only
    /// when `error` is the generic `invalid_request`.
    pub(crate) fn from_token_endpoint(error: EntraError, retry_after: Option<Duration>) -> Self {
        let status = error.status.unwrap_or(400);
        match error.error.as_str() {
            "invalid_grant" | "interaction_required" | "consent_required" | "login_required" => {
                Self::ReauthorizationRequired(Box::new(error))
            }
            "invalid_client"
            | "unauthorized_client"
            | "unsupported_grant_type"
            | "unsupported_response_type"
            | "invalid_resource"
            | "invalid_scope" => Self::Configuration(Box::new(error)),
            "temporarily_unavailable" | "server_error" => Self::Unavailable {
                error: Box::new(error),
                retry_after,
            },
            _ if status >= 500 || status == 429 => Self::Unavailable {
                error: Box::new(error),
                retry_after,
            },
            _ if error.has_code(CONFIGURATION_CODES) => Self::Configuration(Box::new(error)),
            _ => Self::Rejected(Box::new(error)),
        }
    }

    /// Wraps a store's own error, for implementors of [`crate::RefreshTokenStore`].
    pub fn store(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Store(source.into())
    }
}

/// The `AADSTS<digits>` numbers in a description, in order, without repeats.
pub(crate) fn aadsts_codes(text: &str) -> Vec<u64> {
    let mut codes = Vec::new();
    for (index, _) in text.match_indices("AADSTS") {
        let digits: String = text[index + "AADSTS".len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(code) = digits.parse::<u64>()
            && !codes.contains(&code)
        {
            codes.push(code);
        }
    }
    codes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entra(error: &str, status: u16, codes: &[u64]) -> EntraError {
        EntraError {
            error: error.into(),
            status: Some(status),
            error_codes: codes.to_vec(),
            ..EntraError::default()
        }
    }

    #[test]
    fn aadsts_codes_are_read_from_descriptions() {
        assert_eq!(
            aadsts_codes("AADSTS65004: declined. AADSTS90094 and AADSTS65004 again"),
            vec![65004, 90094]
        );
        assert!(aadsts_codes("no code here").is_empty());
    }

    #[test]
    fn invalid_request_with_a_configuration_code_is_configuration() {
        let error = AuthError::from_token_endpoint(entra("invalid_request", 400, &[90002]), None);
        assert!(error.is_configuration());
        let error =
            AuthError::from_token_endpoint(entra("invalid_request", 400, &[9_002_313]), None);
        assert!(matches!(error, AuthError::Rejected(_)));
    }

    #[test]
    fn unknown_error_with_5xx_is_retryable() {
        let error = AuthError::from_token_endpoint(entra("weird", 503, &[]), None);
        assert!(error.is_retryable());
        assert_eq!(error.status(), Some(503));
    }

    #[test]
    fn display_shows_first_description_line_and_ids() {
        let mut error = entra("invalid_grant", 400, &[70008]);
        error.description = Some("AADSTS70008: expired.\r\nTrace ID: t".into());
        error.suberror = Some("bad_token".into());
        error.trace_id = Some("t".into());
        error.correlation_id = Some("c".into());
        assert_eq!(
            error.to_string(),
            "invalid_grant (bad_token): AADSTS70008: expired. [trace id t, correlation id c]"
        );
    }
}
