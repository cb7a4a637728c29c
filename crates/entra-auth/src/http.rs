//! The one HTTP client of this crate: `reqwest` (rustls), no redirects, a timeout, a body
//! size cap. It also serves as `oauth2`'s async HTTP client, since `oauth2`'s own reqwest
//! feature pins another reqwest major.

use std::sync::Mutex;
use std::time::Duration;

use http::header::{CONTENT_TYPE, RETRY_AFTER};

use crate::AuthError;

/// Token answers are small; anything larger is not Entra.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The longest `Retry-After` taken from Entra: MSAL's cap of one hour (spec §4c).
const MAX_RETRY_AFTER_SECONDS: u64 = 3600;

#[derive(Clone, Debug)]
pub(crate) struct HttpClient {
    client: reqwest::Client,
}

/// Why an HTTP exchange gave no usable JSON. Carries no body content.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpFailure {
    #[error("transport error")]
    Transport(#[source] reqwest::Error),
    #[error("{detail}")]
    Unexpected {
        status: u16,
        content_type: Option<String>,
        detail: String,
    },
}

/// What the last exchange answered, beyond what `oauth2` passes on.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Answered {
    pub(crate) status: Option<u16>,
    pub(crate) retry_after: Option<Duration>,
}

impl HttpClient {
    pub(crate) fn new(timeout: Duration) -> Result<Self, AuthError> {
        let client = reqwest::Client::builder()
            // Security: a token request must never be replayed to wherever a redirect
            // points (it carries the code, verifier, refresh token or client secret).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("entra-auth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| {
                AuthError::InvalidConfiguration(format!("cannot build the http client: {error}"))
            })?;
        Ok(Self { client })
    }

    /// Sends one request and returns the answer whose body is valid JSON; anything else
    /// (an HTML 502 from a proxy, a truncated body, a redirect) is an `Unexpected` failure.
    pub(crate) async fn send(
        &self,
        request: http::Request<Vec<u8>>,
        answered: &Mutex<Answered>,
    ) -> Result<http::Response<Vec<u8>>, HttpFailure> {
        let request = reqwest::Request::try_from(request).map_err(HttpFailure::Transport)?;
        let mut response = self
            .client
            .execute(request)
            .await
            .map_err(HttpFailure::Transport)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            // MSAL honours at most an hour (spec §4c); a huge value would overflow a
            // caller's `Instant::now() + retry_after`.
            .map(|seconds| Duration::from_secs(seconds.min(MAX_RETRY_AFTER_SECONDS)));
        if let Ok(mut answered) = answered.lock() {
            *answered = Answered {
                status: Some(status.as_u16()),
                retry_after,
            };
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let unexpected = |detail: String| HttpFailure::Unexpected {
            status: status.as_u16(),
            content_type: content_type.clone(),
            detail,
        };
        if response
            .content_length()
            .is_some_and(|length| length > MAX_BODY_BYTES as u64)
        {
            return Err(unexpected("response body too large".to_owned()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(HttpFailure::Transport)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(unexpected("response body too large".to_owned()));
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_redirection() {
            return Err(unexpected("redirect not followed".to_owned()));
        }
        if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
            return Err(unexpected(format!(
                "body is not JSON ({})",
                json_error_summary(&error)
            )));
        }
        let mut builder = http::Response::builder().status(status);
        if let Some(headers) = builder.headers_mut() {
            *headers = response.headers().clone();
        }
        builder
            .body(body)
            .map_err(|error| unexpected(format!("invalid response: {error}")))
    }
}

/// A JSON error without the text that `serde_json` quotes from the input (which may be
/// token material): category and position only.
pub(crate) fn json_error_summary(error: &serde_json::Error) -> String {
    let category = match error.classify() {
        serde_json::error::Category::Io => "i/o error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Eof => "truncated",
    };
    format!(
        "{category} at line {} column {}",
        error.line(),
        error.column()
    )
}

/// The path of a URL, for error messages (never the query, which may hold a code).
pub(crate) fn endpoint_path(url: &url::Url) -> String {
    url.path().to_owned()
}

/// One token-endpoint exchange as `oauth2`'s async HTTP client. It records the answer's
/// status and `Retry-After`, which `oauth2` does not pass on. The future is boxed as
/// `Send` so that callers' futures stay `Send` (a closure here defeats the compiler's
/// `Send` proof for the borrowed client).
pub(crate) struct Exchange<'a> {
    http: &'a HttpClient,
    answered: Mutex<Answered>,
}

impl<'a> Exchange<'a> {
    pub(crate) fn new(http: &'a HttpClient) -> Self {
        Self {
            http,
            answered: Mutex::new(Answered::default()),
        }
    }

    pub(crate) fn answered(&self) -> Answered {
        self.answered
            .lock()
            .map(|answered| *answered)
            .unwrap_or_default()
    }
}

type BoxedResponse<'c> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<oauth2::HttpResponse, HttpFailure>> + Send + 'c>,
>;

impl<'c> oauth2::AsyncHttpClient<'c> for Exchange<'_> {
    type Error = HttpFailure;
    type Future = BoxedResponse<'c>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(self.http.send(request, &self.answered))
    }
}
