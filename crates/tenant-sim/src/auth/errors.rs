//! Entra's error answers: the token endpoint's JSON body (spec §4a) and the
//! `error`/`error_description` pair on redirects (spec §1a), both with an
//! `error_description` that starts with `AADSTS<code>:` and ends with the Trace ID,
//! Correlation ID and Timestamp lines, as Microsoft's samples show.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;
use time::macros::format_description;
use uuid::Uuid;

/// One Entra error: what `error` says, the AADSTS number and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct EntraError {
    pub(super) status: StatusCode,
    pub(super) error: &'static str,
    pub(super) code: u32,
    pub(super) message: String,
    pub(super) suberror: Option<&'static str>,
    /// A claims request the client must send to `/authorize` (spec §4a `claims`).
    pub(super) claims: Option<String>,
}

impl EntraError {
    /// An error answered with 400, or 401 for `invalid_client` (spec §4a: "often 401").
    pub(super) fn new(error: &'static str, code: u32, message: impl Into<String>) -> Self {
        let status = if error == "invalid_client" {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        };
        Self {
            status,
            error,
            code,
            message: message.into(),
            suberror: None,
            claims: None,
        }
    }

    pub(super) fn with_suberror(mut self, suberror: &'static str) -> Self {
        self.suberror = Some(suberror);
        self
    }

    pub(super) fn with_claims(mut self, claims: String) -> Self {
        self.claims = Some(claims);
        self
    }

    /// AADSTS900144, Entra's answer to a missing required parameter.
    pub(super) fn missing_parameter(name: &str) -> Self {
        Self::new(
            "invalid_request",
            900_144,
            format!("The request body must contain the following parameter: '{name}'."),
        )
    }

    /// AADSTS9002313, Entra's answer to a request it cannot parse.
    pub(super) fn malformed(detail: &str) -> Self {
        Self::new(
            "invalid_request",
            9_002_313,
            format!("Invalid request. Request is malformed or invalid. {detail}"),
        )
    }

    /// AADSTS90002, for a `{tenant}` segment that is not this tenant.
    pub(super) fn tenant_not_found(tenant: &str) -> Self {
        Self::new(
            "invalid_tenant",
            90_002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID \
                 and are signing into the correct cloud. Check with your subscription \
                 administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        )
    }

    /// AADSTS700016, for a `client_id` that is not the registered app.
    pub(super) fn unknown_client(client_id: &str, tenant: &str) -> Self {
        Self::new(
            "unauthorized_client",
            700_016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory \
                 '{tenant}'. This can happen if the application has not been installed by the \
                 administrator of the tenant or consented to by any user in the tenant. You may \
                 have sent your authentication request to the wrong tenant."
            ),
        )
    }

    /// The `error_description` text with Entra's diagnostic lines.
    pub(super) fn description(&self, diagnostics: &Diagnostics) -> String {
        format!(
            "AADSTS{}: {}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}",
            self.code,
            self.message,
            diagnostics.trace_id,
            diagnostics.correlation_id,
            diagnostics.timestamp
        )
    }

    /// The token endpoint's JSON error answer (spec §4a).
    pub(super) fn into_json_response(
        self,
        diagnostics: &Diagnostics,
        login_base: &str,
    ) -> Response {
        let mut body = serde_json::json!({
            "error": self.error,
            "error_description": self.description(diagnostics),
            "error_codes": [self.code],
            "timestamp": diagnostics.timestamp,
            "trace_id": diagnostics.trace_id,
            "correlation_id": diagnostics.correlation_id,
            "error_uri": format!("{login_base}/error?code={}", self.code),
        });
        if let Some(object) = body.as_object_mut() {
            if let Some(suberror) = self.suberror {
                object.insert("suberror".into(), suberror.into());
            }
            if let Some(claims) = self.claims {
                object.insert("claims".into(), claims.into());
            }
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        diagnostics.add_headers(response.headers_mut());
        response
    }
}

/// The ids and time Entra stamps on every answer.
#[derive(Debug, Clone)]
pub(super) struct Diagnostics {
    pub(super) trace_id: String,
    pub(super) correlation_id: String,
    pub(super) timestamp: String,
}

impl Diagnostics {
    /// New ids; the correlation id echoes the client's `client-request-id` when it is a
    /// GUID, as Entra does (MSAL sends one on every request).
    pub(super) fn new(headers: &HeaderMap, now: OffsetDateTime) -> Self {
        let correlation_id = headers
            .get("client-request-id")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| Uuid::parse_str(value).ok())
            .unwrap_or_else(Uuid::new_v4);
        Self {
            trace_id: Uuid::new_v4().to_string(),
            correlation_id: correlation_id.to_string(),
            timestamp: format_timestamp(now),
        }
    }

    /// `x-ms-request-id` and `client-request-id`, plus no caching of token answers.
    pub(super) fn add_headers(&self, headers: &mut HeaderMap) {
        if let Ok(value) = HeaderValue::from_str(&self.trace_id) {
            headers.insert("x-ms-request-id", value);
        }
        if let Ok(value) = HeaderValue::from_str(&self.correlation_id) {
            headers.insert("client-request-id", value);
        }
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store, no-cache"),
        );
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    }
}

/// Entra's error timestamp format: `2016-01-09 02:02:12Z`.
pub(super) fn format_timestamp(now: OffsetDateTime) -> String {
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    now.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| String::from("1970-01-01 00:00:00Z"))
}
