//! Graph's error answer: status, `error.code`, `error.message`, `innerError` ([spec 11]).

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::json;

use super::dates::{graph_date, now_unix};
use super::response::json_response;

/// A Graph error: status, `error.code`, `error.message`, extra headers. The pipeline
/// renders it with `innerError` (`date`, `request-id`, `client-request-id`) ([spec 11]).
#[derive(Debug, Clone)]
pub(crate) struct GraphError {
    status: StatusCode,
    code: String,
    message: String,
    headers: Vec<(HeaderName, String)>,
    /// The throttling body has its own innerError shape (error-throttled-429.json).
    throttled: bool,
}

impl GraphError {
    pub(crate) fn new(
        status: StatusCode,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            headers: Vec::new(),
            throttled: false,
        }
    }

    pub(crate) fn bad_request(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!(
                "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    }

    pub(crate) fn throttled(retry_after: &str) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Please retry again later.",
        );
        error.throttled = true;
        error.with_header(header::RETRY_AFTER, retry_after)
    }

    pub(crate) fn with_header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    #[cfg(test)]
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    #[cfg(test)]
    pub(crate) fn code(&self) -> String {
        self.code.clone()
    }

    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// The response, with the request's ids in `innerError`.
    pub(crate) fn to_response(&self, ids: &RequestIds) -> Response {
        let date = graph_date(now_unix());
        let body = if self.throttled {
            json!({"error": {
                "code": self.code,
                "innerError": {
                    "code": self.status.as_str(),
                    "date": date,
                    "message": "Please retry after",
                    "request-id": ids.request_id,
                    "status": self.status.as_str(),
                    "client-request-id": ids.client_request_id,
                },
                "message": self.message,
            }})
        } else {
            json!({"error": {
                "code": self.code,
                "message": self.message,
                "innerError": {
                    "date": date,
                    "request-id": ids.request_id,
                    "client-request-id": ids.client_request_id,
                },
            }})
        };
        let mut response = json_response(self.status, body.to_string().into_bytes());
        for (name, value) in &self.headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                response.headers_mut().insert(name.clone(), value);
            }
        }
        response
    }
}

/// The ids Graph puts in every response's headers and error bodies.
#[derive(Debug, Clone)]
pub(crate) struct RequestIds {
    pub request_id: String,
    pub client_request_id: String,
}
