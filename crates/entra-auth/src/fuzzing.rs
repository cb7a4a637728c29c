//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, never on by default):
//! thin wrappers over the crate's private decoders of what Entra answers (token answers,
//! token-endpoint errors, device-code answers, id tokens, `Retry-After`) and of the
//! `claims` parameter, so that the targets run the code the client runs on a response.
//! Not a stable API.

use std::fmt;
use std::time::Duration;

use secrecy::SecretString;
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::client::DEFAULT_ID_TOKEN_SKEW;
use crate::cloud::{Authority, Cloud, TenantId};
use crate::device::{DeviceAuthorization, DeviceCodeResponse};
use crate::error::{AuthError, IdTokenError};
use crate::http::undecodable;
use crate::id_token::{self, Expectations, Identity};
use crate::token::{EntraErrorResponse, EntraTokenResponse, TokenParts};

/// The parts of a token answer the client keeps (what it builds a grant or a refreshed
/// token from). The tokens are [`SecretString`]s, so `Debug` shows none of them.
#[derive(Debug)]
#[non_exhaustive]
pub struct TokenAnswer {
    /// `access_token`.
    pub access_token: SecretString,
    /// `expires_in`, an hour when Entra left it out.
    pub expires_in: Duration,
    /// `refresh_in`, when Entra asked to refresh ahead of expiry.
    pub refresh_in: Option<Duration>,
    /// `refresh_token`, when Entra sent one (a rotation).
    pub refresh_token: Option<SecretString>,
    /// `scope`, split (and URL-decoded when it came encoded).
    pub scopes: Option<Vec<String>>,
    /// `id_token`, not yet validated.
    pub id_token: Option<SecretString>,
}

impl From<TokenParts> for TokenAnswer {
    fn from(parts: TokenParts) -> Self {
        Self {
            access_token: parts.access_token,
            expires_in: parts.expires_in,
            refresh_in: parts.refresh_in,
            refresh_token: parts.refresh_token,
            scopes: parts.scopes,
            id_token: parts.id_token,
        }
    }
}

impl fmt::Display for TokenAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "token answer [REDACTED] expiring in {} s",
            self.expires_in.as_secs()
        )
    }
}

/// The global cloud's token endpoint for `organizations`, which names the endpoint in the
/// errors of the entry points as it would for a first connect.
fn token_endpoint() -> url::Url {
    Cloud::Global.token_endpoint(&Authority::organizations())
}

/// A `200` token answer's body as the client reads it: decoded, then its parts taken
/// once `token_type` is `Bearer`.
///
/// # Errors
/// [`AuthError::UnexpectedResponse`] when the body does not decode (its JSON error's
/// category and position only), [`AuthError::UnsupportedTokenType`] for another type.
pub fn token_response(body: &[u8]) -> Result<TokenAnswer, AuthError> {
    let endpoint = token_endpoint();
    let response = serde_json::from_slice::<EntraTokenResponse>(body).map_err(|error| {
        undecodable(&endpoint, 200, Some("application/json".to_owned()), &error)
    })?;
    response.into_parts(&endpoint).map(TokenAnswer::from)
}

/// The error the client makes of a token-endpoint error answer with this status, body and
/// `Retry-After` (already parsed, as [`parse_retry_after`] reads the header); `None` when
/// the body is not Entra's error JSON (the client then reports the answer as
/// unexpected).
pub fn error_response(
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
) -> Option<AuthError> {
    let error = serde_json::from_slice::<EntraErrorResponse>(body)
        .ok()?
        .into_entra(Some(status));
    Some(AuthError::from_token_endpoint(error, retry_after))
}

/// A `200` device-code answer's body as
/// [`EntraClient::start_device_code`](crate::EntraClient::start_device_code) reads it,
/// for `organizations` and the default scopes, on a fixed clock.
///
/// # Errors
/// [`AuthError::UnexpectedResponse`] when the body does not decode.
pub fn device_code_response(body: &[u8]) -> Result<DeviceAuthorization, AuthError> {
    let authority = Authority::organizations();
    let endpoint = Cloud::Global.device_code_endpoint(&authority);
    let response = serde_json::from_slice::<DeviceCodeResponse>(body).map_err(|error| {
        undecodable(&endpoint, 200, Some("application/json".to_owned()), &error)
    })?;
    let scopes = crate::client::DEFAULT_SCOPES
        .iter()
        .map(|scope| Cloud::Global.graph_scope(scope))
        .collect();
    let now = time::macros::datetime!(2025-01-01 00:00 UTC);
    Ok(DeviceAuthorization::from_response(
        response, now, authority, scopes,
    ))
}

/// An id token checked as a sign-in in the global cloud checks it (the signature is not:
/// the Microsoft clouds' id tokens come straight from their token endpoint), at the Unix
/// time `now_unix` (clamped to the dates `time` can hold) with the default skew.
/// `tenant` is the authority's: one that is not a tenant id (`organizations`, a domain)
/// names no tenant to compare, as for the client.
///
/// # Errors
/// The [`IdTokenError`] the sign-in would fail with.
pub fn id_token(
    token: &str,
    client_id: &str,
    nonce: Option<&str>,
    tenant: Option<&str>,
    now_unix: i64,
) -> Result<Identity, IdTokenError> {
    let nonce = nonce.map(SecretString::from);
    let tenant = tenant.and_then(|tenant| TenantId::parse(tenant).ok());
    let earliest = PrimitiveDateTime::MIN.assume_utc();
    let latest = PrimitiveDateTime::MAX.assume_utc();
    let now = OffsetDateTime::from_unix_timestamp(now_unix).unwrap_or(if now_unix < 0 {
        earliest
    } else {
        latest
    });
    id_token::validate(
        &SecretString::from(token),
        &Expectations {
            client_id,
            cloud: &Cloud::Global,
            nonce: nonce.as_ref(),
            tenant: tenant.as_ref(),
            now,
            skew: DEFAULT_ID_TOKEN_SKEW,
        },
    )
}

/// A `Retry-After` value (seconds or HTTP date) as the client reads it from an answer of
/// Entra, `now` being the client's clock: at most an hour.
pub fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    crate::http::parse_retry_after(value, now)
}

/// The `claims` parameter the client sends: `extra` (a caller's or a claims challenge's
/// claims) with the `cp1` declaration merged in when `declare_cp1`.
///
/// # Errors
/// [`AuthError::InvalidClaims`] when `extra` is not a JSON object within
/// [`MAX_CLAIMS_BYTES`](crate::MAX_CLAIMS_BYTES) or cannot be merged.
pub fn merge_claims(declare_cp1: bool, extra: Option<&str>) -> Result<Option<String>, AuthError> {
    crate::claims::merged(declare_cp1, extra)
}
