//! The one HTTP client of this crate: `reqwest` (rustls), no redirects, a timeout, a body
//! size cap. It also serves as `oauth2`'s async HTTP client, since `oauth2`'s own reqwest
//! feature pins another reqwest major.

use std::sync::Mutex;
use std::time::Duration;

use http::header::{CONTENT_TYPE, RETRY_AFTER};
use time::OffsetDateTime;

use crate::client::ClientInner;
use crate::clock::Clock;
use crate::error::AuthError;

/// Token answers are small; anything larger is not Entra.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The longest `Retry-After` taken from Entra: MSAL's cap of one hour (spec §4c).
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

#[derive(Clone, Debug)]
pub(crate) struct HttpClient {
    client: reqwest::Client,
}

/// Why an HTTP exchange gave no usable JSON. Carries no body content.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpFailure {
    #[error("transport error")]
    Transport(#[source] reqwest::Error),
    /// Held back by the token-endpoint throttle; nothing was sent.
    #[error("held back for {0:?}")]
    Throttled(Duration),
    #[error("{detail}")]
    Unexpected {
        status: u16,
        content_type: Option<String>,
        detail: String,
    },
}

impl HttpFailure {
    /// The failure as the caller's error, naming the endpoint's path.
    pub(crate) fn into_auth_error(self, endpoint: &url::Url) -> AuthError {
        match self {
            Self::Throttled(retry_after) => AuthError::Throttled { retry_after },
            Self::Transport(source) => AuthError::Transport {
                endpoint: endpoint_path(endpoint),
                timeout: source.is_timeout(),
                source: Box::new(source),
            },
            Self::Unexpected {
                status,
                content_type,
                detail,
            } => AuthError::UnexpectedResponse {
                endpoint: endpoint_path(endpoint),
                status,
                content_type,
                detail,
            },
        }
    }
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
    /// `clock` dates a `Retry-After` given as an HTTP date.
    pub(crate) async fn send(
        &self,
        request: http::Request<Vec<u8>>,
        answered: &Mutex<Answered>,
        clock: &dyn Clock,
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
            .and_then(|value| parse_retry_after(value, clock.now()));
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

/// A `Retry-After` value: delay-seconds or an HTTP date (RFC 9110 §10.2.3), as a wait
/// from `now`, at most an hour: MSAL honours at most that (spec §4c), and a huge value
/// would overflow a caller's `Instant::now() + retry_after`. A date in the past is no
/// wait; anything else unreadable is ignored.
pub(crate) fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(seconds) = value.parse::<u64>() {
        Duration::from_secs(seconds)
    } else {
        let date = OffsetDateTime::from(httpdate::parse_http_date(value).ok()?);
        Duration::try_from(date - now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
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

/// An answer of `endpoint` whose JSON body did not decode, as the error a caller gets:
/// the JSON error's category and position only ([`json_error_summary`]), never the body,
/// which may hold tokens.
pub(crate) fn undecodable(
    endpoint: &url::Url,
    status: u16,
    content_type: Option<String>,
    error: &serde_json::Error,
) -> AuthError {
    AuthError::UnexpectedResponse {
        endpoint: endpoint_path(endpoint),
        status,
        content_type,
        detail: format!("cannot decode: {}", json_error_summary(error)),
    }
}

/// The path of a URL, for error messages (never the query, which may hold a code).
pub(crate) fn endpoint_path(url: &url::Url) -> String {
    url.path().to_owned()
}

/// One token-endpoint exchange as `oauth2`'s async HTTP client, through the client's
/// throttle (`crate::throttle`). It records the answer's
/// status and `Retry-After`, which `oauth2` does not pass on. The future is boxed as
/// `Send` so that callers' futures stay `Send` (a closure here defeats the compiler's
/// `Send` proof for the borrowed client).
pub(crate) struct Exchange<'a> {
    client: &'a ClientInner,
    answered: Mutex<Answered>,
}

impl<'a> Exchange<'a> {
    pub(crate) fn new(client: &'a ClientInner) -> Self {
        Self {
            client,
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
        Box::pin(self.client.send(request, &self.answered))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_as_seconds_or_an_http_date_and_capped_at_an_hour() {
        let now = time::macros::datetime!(2015-10-21 07:28:00 UTC);
        assert_eq!(
            parse_retry_after(" 30 ", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:45 GMT", now),
            Some(Duration::from_secs(45))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("99999999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("Thu, 22 Oct 2015 07:28:00 GMT", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
