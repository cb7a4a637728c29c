//! Entra's token and error responses, plugged into `oauth2`'s generic client, and the
//! access-token values this crate hands out (spec §2d, §4a).

use std::fmt;
use std::time::Duration;

use secrecy::SecretString;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;

use crate::error::{AuthError, EntraError};

/// `token_type` as Entra sends it (`Bearer`; the docs' table says `bearer`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct EntraTokenType(String);

impl oauth2::TokenType for EntraTokenType {}

/// A successful token-endpoint answer (spec §2d), keeping Entra's extra fields.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct EntraTokenResponse {
    access_token: oauth2::AccessToken,
    token_type: EntraTokenType,
    /// MSAL accepts these as strings too ("AADv1-like endpoint returns a string"), §2d.
    #[serde(default, deserialize_with = "seconds")]
    expires_in: Option<u64>,
    #[serde(default, deserialize_with = "seconds")]
    pub(crate) ext_expires_in: Option<u64>,
    #[serde(default, deserialize_with = "seconds")]
    pub(crate) refresh_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<oauth2::RefreshToken>,
    /// URL-encoded in the auth-code samples, space-separated in the device-code one.
    #[serde(rename = "scope", default, deserialize_with = "scope_list")]
    scopes: Option<Vec<oauth2::Scope>>,
    #[serde(default, skip_serializing)]
    pub(crate) id_token: Option<SecretString>,
}

impl oauth2::TokenResponse for EntraTokenResponse {
    type TokenType = EntraTokenType;

    fn access_token(&self) -> &oauth2::AccessToken {
        &self.access_token
    }

    fn token_type(&self) -> &Self::TokenType {
        &self.token_type
    }

    fn expires_in(&self) -> Option<Duration> {
        self.expires_in.map(Duration::from_secs)
    }

    fn refresh_token(&self) -> Option<&oauth2::RefreshToken> {
        self.refresh_token.as_ref()
    }

    fn scopes(&self) -> Option<&Vec<oauth2::Scope>> {
        self.scopes.as_ref()
    }
}

/// The parts of a token answer this crate keeps, secrets wrapped.
pub(crate) struct TokenParts {
    pub(crate) access_token: SecretString,
    pub(crate) expires_in: Duration,
    pub(crate) refresh_in: Option<Duration>,
    pub(crate) refresh_token: Option<SecretString>,
    pub(crate) scopes: Option<Vec<String>>,
    pub(crate) id_token: Option<SecretString>,
}

/// Entra's access tokens live 60-90 minutes (spec §2b); one hour is assumed when
/// `expires_in` is missing.
const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(3600);

impl EntraTokenResponse {
    /// The parts this crate keeps, once `token_type` is `Bearer` in any case (spec §2d;
    /// RFC 6749 §5.1: the type is case-insensitive; the docs' table says `bearer`, their
    /// samples `Bearer`).
    ///
    /// # Errors
    /// [`AuthError::UnsupportedTokenType`] for another type: a client that sends a `pop`
    /// or `mac` token as a bearer token misuses it.
    pub(crate) fn into_parts(self, endpoint: &url::Url) -> Result<TokenParts, AuthError> {
        if !self.token_type.0.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::UnsupportedTokenType {
                endpoint: endpoint.path().to_owned(),
            });
        }
        Ok(TokenParts {
            access_token: SecretString::from(self.access_token.into_secret()),
            expires_in: self
                .expires_in
                .map_or(DEFAULT_EXPIRES_IN, Duration::from_secs),
            refresh_in: self.refresh_in.map(Duration::from_secs),
            refresh_token: self
                .refresh_token
                .map(|token| SecretString::from(token.into_secret())),
            scopes: self.scopes.map(|scopes| {
                scopes
                    .into_iter()
                    .map(|scope| scope.as_str().to_owned())
                    .collect()
            }),
            id_token: self.id_token,
        })
    }
}

/// Entra's token-endpoint error body (spec §4a), as `oauth2`'s `ErrorResponse`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct EntraErrorResponse {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default, deserialize_with = "codes")]
    error_codes: Vec<u64>,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    trace_id: Option<String>,
    #[serde(default)]
    correlation_id: Option<String>,
    #[serde(default)]
    error_uri: Option<String>,
    #[serde(default)]
    suberror: Option<String>,
    #[serde(default, deserialize_with = "claims")]
    claims: Option<String>,
}

impl fmt::Display for EntraErrorResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.error)
    }
}

impl oauth2::ErrorResponse for EntraErrorResponse {}

impl EntraErrorResponse {
    pub(crate) fn into_entra(self, status: Option<u16>) -> EntraError {
        EntraError {
            error: self.error,
            description: self.error_description,
            error_codes: self.error_codes,
            suberror: self.suberror,
            trace_id: self.trace_id,
            correlation_id: self.correlation_id,
            claims: self.claims,
            error_uri: self.error_uri,
            timestamp: self.timestamp,
            status,
            reconnect_claims: None,
        }
    }
}

/// The `oauth2` client with Entra's types plugged in; wrapped by [`crate::EntraClient`].
pub(crate) type OAuthClient = oauth2::Client<
    EntraErrorResponse,
    EntraTokenResponse,
    oauth2::basic::BasicTokenIntrospectionResponse,
    oauth2::StandardRevocableToken,
    oauth2::basic::BasicRevocationErrorResponse,
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(u64),
    Text(String),
}

fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    match Option::<NumberOrText>::deserialize(deserializer)? {
        None => Ok(None),
        Some(NumberOrText::Number(number)) => Ok(Some(number)),
        Some(NumberOrText::Text(text)) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom("expected a number of seconds")),
    }
}

fn codes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u64>, D::Error> {
    let values = Option::<Vec<NumberOrText>>::deserialize(deserializer)?.unwrap_or_default();
    Ok(values
        .into_iter()
        .filter_map(|value| match value {
            NumberOrText::Number(number) => Some(number),
            NumberOrText::Text(text) => text.trim().parse().ok(),
        })
        .collect())
}

fn claims<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(
        match Option::<serde_json::Value>::deserialize(deserializer)? {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(text)) => Some(text),
            Some(other) => Some(other.to_string()),
        },
    )
}

fn scope_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<oauth2::Scope>>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.map(|text| {
        split_scopes(&text)
            .into_iter()
            .map(oauth2::Scope::new)
            .collect()
    }))
}

/// Splits a `scope` value that may be URL-encoded (`https%3A%2F%2Fgraph...%20...`) or
/// plain space-separated (fixtures `token-response-authcode.json` vs `-devicecode.json`).
pub(crate) fn split_scopes(text: &str) -> Vec<String> {
    let decoded = if text.contains('%') {
        percent_decode(text)
    } else {
        text.to_owned()
    };
    decoded.split_whitespace().map(str::to_owned).collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3])
                    .ok()
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok());
                if let Some(byte) = hex {
                    out.push(byte);
                    index += 3;
                } else {
                    out.push(b'%');
                    index += 1;
                }
            }
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An access token for Microsoft Graph with its expiry. `Debug` and `Display` redact the
/// token.
#[derive(Clone)]
pub struct AccessToken {
    pub(crate) secret: SecretString,
    pub(crate) expires_at: OffsetDateTime,
}

impl AccessToken {
    /// The token, to put in an `Authorization: Bearer` header.
    pub fn secret(&self) -> &SecretString {
        &self.secret
    }

    /// The token, by value.
    pub fn into_secret(self) -> SecretString {
        self.secret
    }

    /// When Entra said it expires.
    pub fn expires_at(&self) -> OffsetDateTime {
        self.expires_at
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &"[REDACTED]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl fmt::Display for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "access token [REDACTED] expiring at {}", self.expires_at)
    }
}

/// The answer to a refresh-token grant (spec §2b).
#[derive(Clone)]
pub struct RefreshedToken {
    pub(crate) access_token: AccessToken,
    pub(crate) refresh_at: Option<OffsetDateTime>,
    pub(crate) refresh_token: SecretString,
    pub(crate) rotated: bool,
    pub(crate) scopes: Vec<String>,
}

impl RefreshedToken {
    /// The new access token.
    pub fn access_token(&self) -> &AccessToken {
        &self.access_token
    }

    /// When Entra asked to refresh ahead of expiry (`refresh_in`), if it did.
    pub fn refresh_at(&self) -> Option<OffsetDateTime> {
        self.refresh_at
    }

    /// The refresh token to keep: the new one when Entra rotated it, else the one sent.
    pub fn refresh_token(&self) -> &SecretString {
        &self.refresh_token
    }

    /// Whether Entra returned a new refresh token (which replaces the old one).
    pub fn rotated(&self) -> bool {
        self.rotated
    }

    /// The scopes of the new access token.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }
}

impl fmt::Debug for RefreshedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshedToken")
            .field("access_token", &self.access_token)
            .field("refresh_at", &self.refresh_at)
            .field("refresh_token", &"[REDACTED]")
            .field("rotated", &self.rotated)
            .field("scopes", &self.scopes)
            .finish()
    }
}

impl fmt::Display for RefreshedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "refreshed tokens [REDACTED] expiring at {}{}",
            self.access_token.expires_at,
            if self.rotated {
                ", refresh token rotated"
            } else {
                ""
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauth2::TokenResponse as _;
    use secrecy::ExposeSecret as _;

    #[test]
    fn scope_is_decoded_when_url_encoded_and_split_when_plain() {
        assert_eq!(
            split_scopes("https%3A%2F%2Fgraph.microsoft.com%2Fmail.read"),
            vec!["https://graph.microsoft.com/mail.read"]
        );
        assert_eq!(
            split_scopes("https%3A%2F%2Fgraph.microsoft.com%2FUser.Read.All%20offline_access"),
            vec![
                "https://graph.microsoft.com/User.Read.All",
                "offline_access"
            ]
        );
        assert_eq!(
            split_scopes("User.Read profile openid email"),
            vec!["User.Read", "profile", "openid", "email"]
        );
        assert_eq!(split_scopes("bad%zzend%"), vec!["bad%zzend%"]);
    }

    #[test]
    fn token_response_accepts_seconds_as_text_and_keeps_entra_fields() {
        let response: EntraTokenResponse = serde_json::from_str(
            r#"{"access_token":"at","token_type":"Bearer","expires_in":"3599",
                "ext_expires_in":"7199","refresh_in":1800,"refresh_token":"rt",
                "scope":"openid User.Read","id_token":"a.b.c"}"#,
        )
        .unwrap();
        assert_eq!(response.expires_in(), Some(Duration::from_secs(3599)));
        assert_eq!(response.ext_expires_in, Some(7199));
        let parts = response.into_parts(&endpoint()).unwrap();
        assert_eq!(parts.refresh_in, Some(Duration::from_secs(1800)));
        assert_eq!(parts.refresh_token.unwrap().expose_secret(), "rt");
        assert_eq!(parts.id_token.unwrap().expose_secret(), "a.b.c");
        assert_eq!(parts.scopes.unwrap(), vec!["openid", "User.Read"]);
    }

    fn endpoint() -> url::Url {
        url::Url::parse("https://login.microsoftonline.com/organizations/oauth2/v2.0/token")
            .unwrap()
    }

    fn with_token_type(token_type: &str) -> EntraTokenResponse {
        let mut sample: serde_json::Value = serde_json::from_str(include_str!(
            "../tests/fixtures/identity/token-response-authcode.json"
        ))
        .unwrap();
        sample["token_type"] = token_type.into();
        serde_json::from_value(sample).unwrap()
    }

    #[test]
    fn token_type_must_be_bearer_in_any_case() {
        // The documented sample says `Bearer`, the docs' table `bearer`.
        for token_type in ["Bearer", "bearer", "BEARER"] {
            let parts = with_token_type(token_type).into_parts(&endpoint()).unwrap();
            assert!(
                parts
                    .access_token
                    .expose_secret()
                    .starts_with("eyJ0eXAiOiJKV1Qi")
            );
        }
        for token_type in ["pop", "mac", "", "Bearer "] {
            let error = with_token_type(token_type)
                .into_parts(&endpoint())
                .err()
                .unwrap();
            assert!(
                matches!(
                    &error,
                    AuthError::UnsupportedTokenType { endpoint }
                        if endpoint == "/organizations/oauth2/v2.0/token"
                ),
                "{token_type:?}: {error:?}"
            );
            assert!(!error.is_retryable());
        }
    }

    #[test]
    fn error_response_keeps_codes_suberror_and_claims() {
        let response: EntraErrorResponse = serde_json::from_str(
            r#"{"error":"invalid_grant","error_codes":[70008,"700082"],"suberror":"bad_token",
                "trace_id":"t","correlation_id":"c","claims":{"access_token":{}}}"#,
        )
        .unwrap();
        let error = response.into_entra(Some(400));
        assert_eq!(error.error_codes(), &[70008, 700_082]);
        assert_eq!(error.suberror(), Some("bad_token"));
        assert_eq!(error.claims(), Some(r#"{"access_token":{}}"#));
        assert_eq!(error.status(), Some(400));
    }
}
