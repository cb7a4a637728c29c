//! [`GraphError`], the crate's one error type, and [`ServiceError`], what Graph said.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::challenge::ClaimsChallenge;
use crate::paging::DeltaLink;
use crate::token::TokenError;

/// The `Location` header of a `410 Gone` forced resync (spec 9): the request to start the
/// sync again with. Microsoft documents it with an empty `$deltaToken`, but nothing
/// promises that it carries no token, so it is held as a [`SecretString`]: its `Debug`
/// shows the URL path only, and the URL is reached through
/// [`expose_secret`](Self::expose_secret).
#[derive(Clone)]
pub struct ResyncLocation {
    url: SecretString,
    path: String,
}

impl ResyncLocation {
    /// A `Location` as the server sent it.
    pub fn new(url: impl Into<String>) -> Self {
        let url = url.into();
        // The path alone, for diagnostics; a relative or unparsable Location shows none.
        let path = url::Url::parse(&url)
            .map(|u| u.path().to_owned())
            .unwrap_or_default();
        Self {
            url: SecretString::from(url),
            path,
        }
    }

    /// The whole URL as the server sent it, query included: send it, never log it.
    pub fn expose_secret(&self) -> &str {
        self.url.expose_secret()
    }

    /// The URL path (no query), e.g. `/v1.0/users/delta`; empty when the `Location` is
    /// not an absolute URL.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The location as a [`DeltaLink`], to start the new round with
    /// ([`UsersApi::delta_from`](crate::UsersApi::delta_from); the client refuses it if it
    /// points at another origin).
    pub fn to_delta_link(&self) -> DeltaLink {
        DeltaLink::new(self.expose_secret())
    }
}

impl std::fmt::Debug for ResyncLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ResyncLocation({:?} [REDACTED])", self.path)
    }
}

impl PartialEq for ResyncLocation {
    fn eq(&self, other: &Self) -> bool {
        self.expose_secret() == other.expose_secret()
    }
}

/// What Microsoft Graph said about a request it refused: the fields of its error JSON
/// (spec 11) plus the HTTP status and the diagnostics headers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceError {
    /// HTTP status code.
    pub status: u16,
    /// Graph's `error.code`, e.g. `Request_ResourceNotFound`. Branch on this, never on `message`.
    pub code: Option<String>,
    /// `error.innerError.code` when Graph sent one (e.g. `"429"`).
    pub inner_code: Option<String>,
    /// Graph's human-readable `error.message` (may change at any time).
    pub message: Option<String>,
    /// `request-id` (body `innerError` or response header): quote it to Microsoft support.
    pub request_id: Option<String>,
    /// `client-request-id` (body `innerError` or response header).
    pub client_request_id: Option<String>,
    /// `innerError.date` as Graph wrote it, or the `Date` header.
    pub date: Option<String>,
    /// The server's `Retry-After`, when it sent one (rounded up to whole seconds).
    pub retry_after: Option<Duration>,
    /// The URL path of the request (never its query: `$skiptoken` and delta tokens stay out).
    pub path: String,
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}",
            self.status,
            self.code.as_deref().unwrap_or("(no code)")
        )?;
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        write!(f, " (path {}", self.path)?;
        if let Some(id) = &self.request_id {
            write!(f, ", request-id {id}")?;
        }
        f.write_str(")")
    }
}

/// Which part of decoding a response failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The body is not valid JSON.
    Syntax,
    /// Valid JSON, but a value does not fit the typed model.
    Data,
    /// The body ended in the middle of a JSON value (truncated).
    Truncated,
}

impl std::fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Syntax => "invalid JSON",
            Self::Data => "value does not fit the model",
            Self::Truncated => "truncated JSON",
        })
    }
}

/// Everything that can go wrong talking to Microsoft Graph, one variant per thing the
/// caller does differently. No variant holds a token, a full URL or a response body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// Graph refused the request with a Graph error (after any retries the policy allows).
    #[error("microsoft graph refused the request: {0}")]
    Service(Box<ServiceError>),
    /// Graph answered 401 again after the provider gave a fresh token: reconnect.
    #[error("microsoft graph rejected the access token twice: {0}")]
    Unauthorized(Box<ServiceError>),
    /// The delta link expired or was reset (400 `syncStateNotFound`, 410 `resyncRequired`):
    /// drop it and run a full sync (spec 9).
    #[error("the delta link is no longer valid, a full resync is required: {error}")]
    ResyncRequired {
        /// What Graph said.
        error: Box<ServiceError>,
        /// The `Location` header of a 410: the request to start again with. Redacted in
        /// `Debug` (it may carry a token); read it with
        /// [`ResyncLocation::expose_secret`] or [`GraphError::resync_location`].
        location: Option<ResyncLocation>,
    },
    /// Graph answered a claims challenge (continuous access evaluation or Conditional
    /// Access, spec 7) that a new token did not meet: the token asked for after the
    /// challenge was challenged again, or the provider gave the challenged token back.
    /// Only a new sign-in helps: reconnect, sending
    /// [`ClaimsChallenge::claims`] with the authorize request.
    #[error("microsoft graph's claims challenge ({}) was not met by a new token: {error}", .challenge.error())]
    ClaimsChallenge {
        /// The last challenge Graph sent (its claims, `error`, status and `authorization_uri`).
        challenge: Box<ClaimsChallenge>,
        /// What Graph said with it (status, code, `request-id`).
        error: Box<ServiceError>,
    },
    /// The token provider could not give a token.
    #[error("the token provider failed")]
    Token(#[source] TokenError),
    /// A non-success answer that is not a Graph error JSON (a proxy's HTML page, a redirect).
    #[error("unexpected {status} response from {path} (content type {content_type:?})")]
    UnexpectedResponse {
        /// HTTP status code.
        status: u16,
        /// The `Content-Type` header, if any.
        content_type: Option<String>,
        /// URL path of the request.
        path: String,
        /// `request-id` header, if any.
        request_id: Option<String>,
    },
    /// The body does not decode into the typed model.
    #[error(
        "could not decode the response from {path} at `{field}`: {kind} (line {line}, column {column})"
    )]
    Decode {
        /// URL path of the request (no query).
        path: String,
        /// The serde path of the bad field, e.g. `value[3].accountEnabled`.
        field: String,
        /// What kind of decode failure.
        kind: DecodeErrorKind,
        /// Line in the body.
        line: usize,
        /// Column in the body.
        column: usize,
    },
    /// The response body is larger than the configured maximum.
    #[error("the response from {path} exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// URL path of the request.
        path: String,
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The request timed out (after any retries).
    #[error("the request to {path} timed out")]
    Timeout {
        /// URL path of the request.
        path: String,
    },
    /// The connection failed or broke (after any retries).
    #[error("the connection for {path} failed")]
    Connection {
        /// URL path of the request.
        path: String,
        /// The transport error, without its URL.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A next or delta link points at another scheme, host or port than the configured
    /// Graph root; it was refused before any token was asked for (spec 8a; DESIGN).
    #[error("refused to follow a link to {origin}: not the configured graph origin")]
    ForeignLink {
        /// `scheme://host:port` of the refused link.
        origin: String,
    },
    /// A page's `@odata.nextLink` is one the listing already followed: a cycle of any
    /// length (spec 14, .NET loop guard).
    #[error("the next links of {path} run in a cycle")]
    NextLinkLoop {
        /// URL path of the repeating link.
        path: String,
    },
    /// A listing ran past the client's page cap
    /// ([`GraphClientBuilder::max_pages`](crate::GraphClientBuilder::max_pages)).
    #[error("the listing of {path} passed the limit of {limit} pages")]
    TooManyPages {
        /// URL path of the listing.
        path: String,
        /// The configured cap.
        limit: u64,
    },
    /// A link is not a valid absolute URL.
    #[error("invalid link: {reason}")]
    InvalidLink {
        /// Why it was refused.
        reason: &'static str,
    },
    /// The request was refused before sending (e.g. `$top` out of 1..=999); nothing was sent.
    #[error("invalid request: {reason}")]
    InvalidRequest {
        /// What is wrong.
        reason: String,
    },
    /// The client builder was given an invalid setting.
    #[error("invalid configuration: {reason}")]
    Configuration {
        /// What is wrong.
        reason: String,
    },
    /// A response broke the protocol (e.g. a delta page with neither next nor delta link).
    #[error("invalid response from {path}: {reason}")]
    InvalidResponse {
        /// URL path of the request.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// What a caller does about an error: the one question every error of this crate (and
/// of [`sync`](crate::sync)) answers through its `action()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorAction {
    /// Only a new sign-in helps (the grant was revoked, consent is missing): show
    /// "reconnect needed" and stop using the connection until an admin reconnects.
    Reconnect,
    /// A passing condition (throttling, an outage, a timeout): try again later, after the
    /// given wait when the server named one.
    RetryLater(Option<Duration>),
    /// The delta link expired or was reset: drop it and run a full import (spec 9).
    Resync,
    /// The object asked for does not exist (any more): drop it.
    NotFound,
    /// The caller's settings are wrong (a base URL, a limit): fix them; retrying will not help.
    FixConfiguration,
    /// Stored data could not be read back (a damaged row or link): a person looks.
    Repair,
    /// A request this crate or its caller should never have made, or an answer that
    /// breaks the protocol: report it with the diagnostics the error carries.
    Bug,
}

impl GraphError {
    /// What the caller does about this error. Every variant maps to exactly one action,
    /// so a caller can `match err.action()` instead of combining predicates.
    pub fn action(&self) -> ErrorAction {
        if self.requires_reauthorization() {
            return ErrorAction::Reconnect;
        }
        if self.requires_resync() {
            return ErrorAction::Resync;
        }
        match self {
            // Missing scope or consent, or the signed-in admin's own rights (spec 11):
            // an admin signs in again and consents.
            Self::Service(e)
                if e.status == 403
                    && e.code
                        .as_deref()
                        .is_some_and(|c| c.eq_ignore_ascii_case("Authorization_RequestDenied")) =>
            {
                ErrorAction::Reconnect
            }
            Self::Service(e) if e.status == 404 => ErrorAction::NotFound,
            // 501 NotImplemented: a property Graph cannot return in a list or delta (spec
            // 11, `skills`); the request must change, retrying will not help.
            Self::Service(e) if e.status == 501 => ErrorAction::FixConfiguration,
            Self::Service(e) if e.status >= 500 => ErrorAction::RetryLater(e.retry_after),
            Self::Service(e) if e.status == 429 => ErrorAction::RetryLater(e.retry_after),
            Self::UnexpectedResponse { status, .. } if *status >= 500 || *status == 429 => {
                ErrorAction::RetryLater(None)
            }
            Self::Timeout { .. } | Self::Connection { .. } | Self::Token(_) => {
                ErrorAction::RetryLater(None)
            }
            Self::Configuration { .. } | Self::BodyTooLarge { .. } | Self::TooManyPages { .. } => {
                ErrorAction::FixConfiguration
            }
            _ => ErrorAction::Bug,
        }
    }

    /// True when trying the same request again later may succeed: 429/503/504,
    /// timeouts and connection failures.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Service(e) => matches!(e.status, 429 | 503 | 504),
            Self::UnexpectedResponse { status, .. } => matches!(status, 429 | 503 | 504),
            Self::Timeout { .. } | Self::Connection { .. } => true,
            Self::Token(e) => !e.requires_reauthorization(),
            _ => false,
        }
    }

    /// True for a 404 (the object, photo or manager does not exist).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// True when the delta link must be dropped and a full sync run.
    pub fn requires_resync(&self) -> bool {
        matches!(self, Self::ResyncRequired { .. })
    }

    /// True when only a new sign-in helps: the provider said so, Graph rejected a fresh
    /// token, or a claims challenge was not met.
    pub fn requires_reauthorization(&self) -> bool {
        match self {
            Self::Unauthorized(_) | Self::ClaimsChallenge { .. } => true,
            Self::Token(e) => e.requires_reauthorization(),
            _ => false,
        }
    }

    /// How long the server asked to wait (`Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        self.service_error().and_then(|e| e.retry_after)
    }

    /// The HTTP status, when Graph answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::UnexpectedResponse { status, .. } => Some(*status),
            _ => self.service_error().map(|e| e.status),
        }
    }

    /// Graph's error `code`, when it sent one.
    pub fn code(&self) -> Option<&str> {
        self.service_error().and_then(|e| e.code.as_deref())
    }

    /// Graph's `request-id`, when known.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::UnexpectedResponse { request_id, .. } => request_id.as_deref(),
            _ => self.service_error().and_then(|e| e.request_id.as_deref()),
        }
    }

    /// The Graph error details, for the variants that carry them.
    pub fn service_error(&self) -> Option<&ServiceError> {
        match self {
            Self::Service(e)
            | Self::Unauthorized(e)
            | Self::ResyncRequired { error: e, .. }
            | Self::ClaimsChallenge { error: e, .. } => Some(e),
            _ => None,
        }
    }

    /// The `Location` of a `410 Gone` forced resync (spec 9): the request to start the
    /// full sync with, when Graph sent one.
    pub fn resync_location(&self) -> Option<&ResyncLocation> {
        match self {
            Self::ResyncRequired { location, .. } => location.as_ref(),
            _ => None,
        }
    }

    /// The claims challenge behind this error: of [`GraphError::ClaimsChallenge`], or of a
    /// [`GraphError::Token`] the provider gave while answering a challenge. Keep its
    /// [`claims`](ClaimsChallenge::claims) for the reconnect's authorize request (spec 7).
    pub fn claims_challenge(&self) -> Option<&ClaimsChallenge> {
        match self {
            Self::ClaimsChallenge { challenge, .. } => Some(challenge),
            Self::Token(e) => e.claims_challenge(),
            _ => None,
        }
    }
}

/// Graph's error JSON, accepting both `innerError` and `innererror`, hyphenated or
/// camel-case ids, and string or number codes (fixtures SOURCES.md, quirks).
#[derive(Deserialize)]
struct Envelope {
    error: Body,
}

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "innerError", alias = "innererror")]
    inner: Option<Inner>,
}

#[derive(Deserialize)]
struct Inner {
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    date: Option<String>,
    #[serde(default, rename = "request-id", alias = "requestId")]
    request_id: Option<String>,
    #[serde(default, rename = "client-request-id", alias = "clientRequestId")]
    client_request_id: Option<String>,
}

fn value_to_string(value: Option<serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Header-derived diagnostics of a response, used when the body lacks them.
#[derive(Debug, Default, Clone)]
pub(crate) struct ResponseMeta {
    pub(crate) request_id: Option<String>,
    pub(crate) client_request_id: Option<String>,
    pub(crate) date: Option<String>,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) content_type: Option<String>,
    pub(crate) location: Option<ResyncLocation>,
}

/// The Graph error details of a non-success answer, also when it has no Graph error JSON
/// (a claims challenge may come with any body).
pub(crate) fn service_error_of(
    status: u16,
    body: &[u8],
    meta: &ResponseMeta,
    path: &str,
) -> Box<ServiceError> {
    match classify(status, body, meta.clone(), path) {
        GraphError::Service(e) | GraphError::ResyncRequired { error: e, .. } => e,
        _ => Box::new(ServiceError {
            status,
            code: None,
            inner_code: None,
            message: None,
            request_id: meta.request_id.clone(),
            client_request_id: meta.client_request_id.clone(),
            date: meta.date.clone(),
            retry_after: meta.retry_after,
            path: path.to_owned(),
        }),
    }
}

/// Turns a non-success answer into the matching [`GraphError`] (spec 9, 11).
pub(crate) fn classify(status: u16, body: &[u8], meta: ResponseMeta, path: &str) -> GraphError {
    let parsed = if status < 400 {
        // A redirect (never followed, DESIGN graph-client) or another non-error status.
        None
    } else if body.iter().all(u8::is_ascii_whitespace) {
        // No body at all (a bare 429 or 404): still a Graph answer, with no code.
        Some(Envelope {
            error: Body {
                code: None,
                message: None,
                inner: None,
            },
        })
    } else {
        serde_json::from_slice::<Envelope>(body).ok()
    };
    let Some(Envelope { error }) = parsed else {
        if status == 410 {
            // A forced resync may come without a JSON body; the status alone says it (spec 9).
            return GraphError::ResyncRequired {
                error: Box::new(ServiceError {
                    status,
                    code: None,
                    inner_code: None,
                    message: None,
                    request_id: meta.request_id,
                    client_request_id: meta.client_request_id,
                    date: meta.date,
                    retry_after: meta.retry_after,
                    path: path.to_owned(),
                }),
                location: meta.location,
            };
        }
        return GraphError::UnexpectedResponse {
            status,
            content_type: meta.content_type,
            path: path.to_owned(),
            request_id: meta.request_id,
        };
    };
    let inner = error.inner;
    let (inner_code, inner_date, inner_request_id, inner_client_request_id) = match inner {
        Some(i) => (
            value_to_string(i.code),
            i.date,
            i.request_id,
            i.client_request_id,
        ),
        None => (None, None, None, None),
    };
    let service = Box::new(ServiceError {
        status,
        code: value_to_string(error.code),
        inner_code,
        message: error.message,
        request_id: inner_request_id.or(meta.request_id),
        client_request_id: inner_client_request_id.or(meta.client_request_id),
        date: inner_date.or(meta.date),
        retry_after: meta.retry_after,
        path: path.to_owned(),
    });
    let resync_code = [service.code.as_deref(), service.inner_code.as_deref()]
        .into_iter()
        .flatten()
        .any(|c| {
            c.eq_ignore_ascii_case("syncStateNotFound") || c.eq_ignore_ascii_case("resyncRequired")
        });
    if status == 410 || (resync_code && (400..500).contains(&status)) {
        return GraphError::ResyncRequired {
            error: service,
            location: meta.location,
        };
    }
    GraphError::Service(service)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_sample_keeps_string_codes_and_hyphenated_request_id() {
        let body = include_bytes!("../tests/fixtures/error-throttled-429.json");
        let err = classify(429, body, ResponseMeta::default(), "/v1.0/users");
        let e = err.service_error().unwrap();
        assert_eq!(e.code.as_deref(), Some("TooManyRequests"));
        assert_eq!(e.inner_code.as_deref(), Some("429"));
        assert_eq!(
            e.request_id.as_deref(),
            Some("94fb3b52-452a-4535-a601-69e0a90e3aa2")
        );
        assert_eq!(e.date.as_deref(), Some("2020-08-18T12:51:51"));
        assert!(err.is_retryable());
    }

    #[test]
    fn lower_case_innererror_and_camel_case_request_id_are_accepted() {
        let body = br#"{"error":{"code":"itemNotFound","message":"gone","innererror":{"requestId":"r-1","clientRequestId":"c-1","date":"d"}}}"#;
        let err = classify(404, body, ResponseMeta::default(), "/v1.0/users/x");
        assert!(err.is_not_found());
        let e = err.service_error().unwrap();
        assert_eq!(e.request_id.as_deref(), Some("r-1"));
        assert_eq!(e.client_request_id.as_deref(), Some("c-1"));
    }

    #[test]
    fn headers_fill_in_missing_request_id() {
        let meta = ResponseMeta {
            request_id: Some("hdr".into()),
            ..ResponseMeta::default()
        };
        let err = classify(
            400,
            br#"{"error":{"code":"Request_BadRequest"}}"#,
            meta,
            "/v1.0/users",
        );
        assert_eq!(err.request_id(), Some("hdr"));
        assert_eq!(err.code(), Some("Request_BadRequest"));
        assert!(!err.is_retryable());
    }

    #[test]
    fn sync_state_not_found_and_gone_require_resync() {
        let err = classify(
            400,
            br#"{"error":{"code":"syncStateNotFound","message":"expired"}}"#,
            ResponseMeta::default(),
            "/v1.0/users/delta",
        );
        assert!(err.requires_resync());
        let meta = ResponseMeta {
            location: Some(ResyncLocation::new(
                "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=",
            )),
            ..ResponseMeta::default()
        };
        let err = classify(
            410,
            br#"{"error":{"code":"resyncRequired"}}"#,
            meta,
            "/v1.0/users/delta",
        );
        match &err {
            GraphError::ResyncRequired { location, .. } => {
                assert!(
                    location
                        .as_ref()
                        .unwrap()
                        .expose_secret()
                        .ends_with("$deltatoken=")
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(err.resync_location().unwrap().path(), "/v1.0/users/delta");
    }

    #[test]
    fn a_resync_location_with_a_token_is_redacted_in_debug_and_display() {
        let url =
            "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=SECRET-TOKEN&$skiptoken=SKIP";
        let meta = ResponseMeta {
            location: Some(ResyncLocation::new(url)),
            ..ResponseMeta::default()
        };
        let err = classify(410, b"", meta.clone(), "/v1.0/users/delta");
        for text in [
            format!("{err:?}"),
            err.to_string(),
            format!("{meta:?}"),
            format!("{:?}", err.resync_location()),
        ] {
            assert!(!text.contains("SECRET-TOKEN"), "{text}");
            assert!(!text.contains("SKIP"), "{text}");
        }
        assert!(format!("{err:?}").contains("/v1.0/users/delta"));
        let location = err.resync_location().unwrap();
        assert_eq!(
            format!("{location:?}"),
            r#"ResyncLocation("/v1.0/users/delta" [REDACTED])"#
        );
        assert_eq!(location.expose_secret(), url);
        assert_eq!(location.to_delta_link().expose_secret(), url);
        assert_eq!(ResyncLocation::new("not a url?$deltatoken=x").path(), "");
        assert!(!format!("{:?}", ResyncLocation::new("not a url?$deltatoken=x")).contains('x'));
    }

    #[test]
    fn html_error_body_is_an_unexpected_response() {
        let meta = ResponseMeta {
            content_type: Some("text/html".into()),
            ..ResponseMeta::default()
        };
        let err = classify(502, b"<html>Bad gateway</html>", meta, "/v1.0/users");
        assert!(matches!(
            err,
            GraphError::UnexpectedResponse { status: 502, .. }
        ));
        assert_eq!(err.status(), Some(502));
        assert!(!err.to_string().contains("Bad gateway"));
    }
}
