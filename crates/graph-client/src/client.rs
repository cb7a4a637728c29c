//! [`GraphClient`], its builder, and the one place where requests are sent: origin check,
//! throttle gate, token, 401 refresh, claims challenges, retries, body size limit, tracing.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use tracing::Instrument;
use url::Url;

use crate::challenge::{Challenged, ClaimsChallenge};
use crate::error::{
    DecodeErrorKind, GraphError, ResponseMeta, ResyncLocation, classify, service_error_of,
};
use crate::retry::{
    Clock, RetryBudget, RetryPolicy, ThrottleGate, UnitBudget, parse_retry_after, resource_units,
};
use crate::token::{TokenError, TokenProvider};

/// The Microsoft Graph national clouds (spec 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GraphCloud {
    /// Global service (including GCC Moderate): `https://graph.microsoft.com`.
    Global,
    /// US Government L4 (GCC High): `https://graph.microsoft.us`.
    UsGovernment,
    /// US Government L5 (DoD): `https://dod-graph.microsoft.us`.
    UsGovernmentDod,
    /// China, operated by 21Vianet: `https://microsoftgraph.chinacloudapi.cn`.
    China,
}

impl GraphCloud {
    /// The cloud's Graph v1.0 root, e.g. `https://graph.microsoft.com/v1.0`.
    pub fn base_url(self) -> &'static str {
        match self {
            Self::Global => "https://graph.microsoft.com/v1.0",
            Self::UsGovernment => "https://graph.microsoft.us/v1.0",
            Self::UsGovernmentDod => "https://dod-graph.microsoft.us/v1.0",
            Self::China => "https://microsoftgraph.chinacloudapi.cn/v1.0",
        }
    }
}

/// Default request timeout: Kiota's HTTP client uses 100 s (spec 10b).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(100);
/// Default largest response body read: 32 MiB (a page of 999 users with every property is a few MiB).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// Default cap on the pages of one listing or delta round: 100,000 (100 million objects
/// at 999 a page, 10 million at Graph's default 100).
pub const DEFAULT_MAX_PAGES: u64 = 100_000;
/// Default `User-Agent`.
pub const DEFAULT_USER_AGENT: &str = concat!("graph-client/", env!("CARGO_PKG_VERSION"));

/// A Microsoft Graph v1.0 client. Cheap to clone: clones share the connection pool and the
/// throttle gate.
#[derive(Clone)]
pub struct GraphClient {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("base_url", &self.inner.base.as_str())
            .field("retry", &self.inner.retry)
            .field("page_size", &self.inner.page_size)
            .field("max_response_bytes", &self.inner.max_body)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    http: reqwest::Client,
    /// The Graph root without a trailing slash, e.g. `https://graph.microsoft.com/v1.0`.
    pub(crate) base: Url,
    pub(crate) tokens: Arc<dyn TokenProvider>,
    pub(crate) retry: RetryPolicy,
    pub(crate) page_size: Option<u32>,
    max_body: usize,
    pub(crate) max_pages: u64,
    pub(crate) gate: ThrottleGate,
    /// Resource units spent before each attempt, when the builder set a budget.
    budget: Option<UnitBudget>,
    pub(crate) clock: Clock,
}

/// Builds a [`GraphClient`]; [`build`](GraphClientBuilder::build) checks the settings.
#[must_use]
pub struct GraphClientBuilder {
    tokens: Arc<dyn TokenProvider>,
    base_url: String,
    retry: RetryPolicy,
    page_size: Option<u32>,
    timeout: Option<Duration>,
    pool_idle_timeout: Option<Duration>,
    max_body: usize,
    max_pages: u64,
    user_agent: String,
    clock: Clock,
    budget: Option<(f64, f64)>,
}

impl std::fmt::Debug for GraphClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClientBuilder")
            .field("base_url", &self.base_url)
            .field("retry", &self.retry)
            .field("page_size", &self.page_size)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl GraphClient {
    /// Starts a builder with the global cloud and the defaults; `tokens` is any
    /// [`TokenProvider`] (an `Arc<dyn TokenProvider>` included).
    pub fn builder(tokens: impl TokenProvider + 'static) -> GraphClientBuilder {
        GraphClientBuilder {
            tokens: Arc::new(tokens),
            base_url: GraphCloud::Global.base_url().to_owned(),
            retry: RetryPolicy::default(),
            page_size: None,
            timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            pool_idle_timeout: Some(Duration::from_secs(90)),
            max_body: DEFAULT_MAX_RESPONSE_BYTES,
            max_pages: DEFAULT_MAX_PAGES,
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            clock: Arc::new(SystemTime::now),
            budget: None,
        }
    }

    /// The instant until which the client's throttle gate holds every request, while a
    /// `Retry-After` is running; `None` when requests go out at once.
    pub fn throttled_until(&self) -> Option<tokio::time::Instant> {
        self.inner.gate.paused_until()
    }

    /// The Graph root this client talks to.
    pub fn base_url(&self) -> &str {
        self.inner.base.as_str()
    }

    /// A client for another signed-in tenant (or user) that shares this one's HTTP
    /// connection pool and settings but has its own `tokens` and its own throttle gate,
    /// so one tenant's `Retry-After` never holds another's requests. A service syncing
    /// many tenants builds one client and derives one per tenant from it, instead of
    /// paying for a new connection pool and TLS configuration per tenant.
    #[must_use]
    pub fn with_tokens(&self, tokens: impl TokenProvider + 'static) -> GraphClient {
        let inner = &self.inner;
        GraphClient {
            inner: Arc::new(Inner {
                http: inner.http.clone(),
                base: inner.base.clone(),
                tokens: Arc::new(tokens),
                retry: inner.retry.clone(),
                page_size: inner.page_size,
                max_body: inner.max_body,
                max_pages: inner.max_pages,
                gate: ThrottleGate::default(),
                budget: inner.budget.as_ref().map(UnitBudget::fresh),
                clock: Arc::clone(&inner.clock),
            }),
        }
    }
}

impl GraphClientBuilder {
    /// A national cloud's Graph root (default [`GraphCloud::Global`]).
    pub fn cloud(mut self, cloud: GraphCloud) -> Self {
        cloud.base_url().clone_into(&mut self.base_url);
        self
    }

    /// Any Graph root including the version segment, e.g. `http://127.0.0.1:8080/v1.0` for
    /// a simulator. `http` is accepted only for loopback hosts, so a bearer token never
    /// travels in clear text over a network.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// Retry policy for throttling and transient faults (default [`RetryPolicy::default`]).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// `$top` sent on list requests that set none (1..=999; default: Graph's own, 100 for users).
    pub fn page_size(mut self, size: u32) -> Self {
        self.page_size = Some(size);
        self
    }

    /// Timeout of one attempt, from sending to the end of the body (default 100 s);
    /// `None` disables it.
    pub fn request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long an idle pooled connection is kept (default 90 s); `None` keeps it until
    /// the server closes it (and runs no idle timer, which tests on paused time need).
    pub fn pool_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// The largest response body read (default 32 MiB); a larger one is
    /// [`GraphError::BodyTooLarge`].
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// The most pages one listing or delta round follows (default [`DEFAULT_MAX_PAGES`]);
    /// the next one is [`GraphError::TooManyPages`].
    pub fn max_pages(mut self, pages: u64) -> Self {
        self.max_pages = pages;
        self
    }

    /// The `User-Agent` header.
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Spends Graph's resource units before sending: at most `units_per_second`, with
    /// bursts of up to `burst` units (default: no budget; the client only reacts to 429).
    ///
    /// Graph throttles each app and tenant on a token bucket of resource units (spec
    /// 10a: 3,500, 5,000 or 8,000 units per 10 s for tenants of under 50, up to 500 and
    /// more users; a `$select`ed users page costs 1, a members page 2 or 3). A client
    /// given its tenant's budget paces itself at it instead of meeting 429s, which Graph
    /// keeps counting while it throttles. Costs are the documented ones: `$batch` items
    /// each cost their own.
    pub fn resource_unit_budget(mut self, units_per_second: f64, burst: f64) -> Self {
        self.budget = Some((units_per_second, burst));
        self
    }

    /// The wall clock used to read `Retry-After` HTTP dates (default `SystemTime::now`).
    pub fn clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the settings and builds the client.
    ///
    /// # Errors
    ///
    /// [`GraphError::Configuration`] for an invalid base URL (not absolute, has a query or
    /// fragment, `http` to a non-loopback host), a page size outside 1..=999, a zero body
    /// limit or timeout, an invalid retry policy or user agent, or when the HTTP client
    /// cannot be created.
    pub fn build(self) -> Result<GraphClient, GraphError> {
        let config = |reason: String| GraphError::Configuration { reason };
        let base = parse_base_url(&self.base_url).map_err(|r| config(r.to_owned()))?;
        if let Some(size) = self.page_size
            && !(1..=999).contains(&size)
        {
            return Err(config(format!("page size {size} is outside 1..=999")));
        }
        if self.max_pages == 0 {
            return Err(config("max pages must be positive".into()));
        }
        if self.max_body == 0 {
            return Err(config("max response bytes must be positive".into()));
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(config("request timeout must be positive".into()));
        }
        self.retry.validate().map_err(config)?;
        let budget = match self.budget {
            None => None,
            Some((rate, burst)) => Some(UnitBudget::new(rate, burst).ok_or_else(|| {
                config(format!(
                    "resource unit budget needs a positive rate, a burst of at least 1 and a unit refilling within a day (got {rate}/s, burst {burst})"
                ))
            })?),
        };
        let user_agent = HeaderValue::from_str(&self.user_agent)
            .map_err(|_| config("user agent is not a valid header value".into()))?;
        // Redirects are never followed: a redirected request would carry the bearer token to
        // wherever the Location points (DESIGN graph-client). rustls and gzip come from the
        // workspace features.
        let mut http = reqwest::Client::builder()
            .user_agent(user_agent)
            .redirect(reqwest::redirect::Policy::none())
            .gzip(true)
            .referer(false)
            .pool_idle_timeout(self.pool_idle_timeout);
        if let Some(timeout) = self.timeout {
            http = http.timeout(timeout);
        }
        let http = http
            .build()
            .map_err(|_| config("the HTTP client could not be created".into()))?;
        Ok(GraphClient {
            inner: Arc::new(Inner {
                http,
                base,
                tokens: self.tokens,
                retry: self.retry,
                page_size: self.page_size,
                max_body: self.max_body,
                max_pages: self.max_pages,
                gate: ThrottleGate::default(),
                budget,
                clock: self.clock,
            }),
        })
    }
}

fn parse_base_url(text: &str) -> Result<Url, &'static str> {
    let mut url =
        Url::parse(text.trim_end_matches('/')).map_err(|_| "base URL is not an absolute URL")?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err("base URL must not have a query or fragment");
    }
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err("base URL must have a host");
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(
                "base URL uses http to a non-loopback host: the bearer token would travel in clear text",
            );
        }
        _ => return Err("base URL must be http(s)"),
    }
    let trimmed = url.path().trim_end_matches('/').to_owned();
    url.set_path(&trimmed);
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// One request to send: the URL exactly as given (a next link verbatim), never rebuilt.
pub(crate) struct Call<'a> {
    pub(crate) method: Method,
    pub(crate) url: &'a str,
    /// Send `ConsistencyLevel: eventual` (spec 8c; resent on every next link, spec 8a).
    pub(crate) eventual: bool,
    pub(crate) json_body: Option<Bytes>,
    pub(crate) accept: &'static str,
    /// A `$batch` POST: an outer 424 is retried like a 429 (spec 12: the throttling doc says
    /// a throttled batch fails with 424, the batching doc says 200; handle both).
    pub(crate) batch: bool,
    /// The resource units the call costs, when not those of a GET of `url` (a `$batch`
    /// costs its items).
    pub(crate) units: Option<u32>,
}

impl<'a> Call<'a> {
    /// A JSON GET.
    pub(crate) fn get(url: &'a str, eventual: bool) -> Self {
        Self {
            method: Method::GET,
            url,
            eventual,
            json_body: None,
            accept: "application/json",
            batch: false,
            units: None,
        }
    }
}

/// A successful answer with its body read (within the size limit).
pub(crate) struct Reply {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) path: String,
    /// The token the answer was sent with: a `$batch` item's claims challenge is about it.
    pub(crate) token: SecretString,
}

enum Attempt {
    Done(Reply),
    Status {
        status: StatusCode,
        body: Bytes,
        meta: ResponseMeta,
        /// A usable claims challenge of a 401 or 403 (spec 7).
        challenge: Option<ClaimsChallenge>,
    },
    /// A timeout or connection failure: retried on idempotent requests.
    Transport(GraphError),
    /// Not worth retrying (body over the limit, unusable token).
    Fatal(GraphError),
}

impl GraphClient {
    /// Joins path segments to the base URL, percent-encoding each segment (a UPN with `#EXT#`).
    pub(crate) fn url_for(&self, segments: &[&str]) -> Result<Url, String> {
        // `Url` drops `.` and `..` segments and an empty one ends the path in `/`: an id or
        // UPN like that would silently name another resource (`/users/..` is `/users`).
        if let Some(bad) = segments.iter().find(|s| matches!(**s, "" | "." | "..")) {
            return Err(format!("{bad:?} is not a valid id or user principal name"));
        }
        let mut url = self.inner.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        Ok(url)
    }

    /// [`url_for`](Self::url_for) for this crate's own constant segments.
    pub(crate) fn fixed_url(&self, segments: &[&'static str]) -> Url {
        self.url_for(segments)
            .unwrap_or_else(|_| unreachable!("constant segments are never empty, . or .."))
    }

    /// Refuses a URL whose scheme, host or port differ from the base URL, before any token
    /// is asked for (DESIGN graph-client: the bearer must never leave for another host).
    pub(crate) fn check_origin(&self, url: &str) -> Result<Url, GraphError> {
        let parsed = Url::parse(url).map_err(|_| GraphError::InvalidLink {
            reason: "not an absolute URL",
        })?;
        if parsed.origin() != self.inner.base.origin() {
            return Err(GraphError::ForeignLink {
                origin: parsed.origin().ascii_serialization(),
            });
        }
        Ok(parsed)
    }

    /// Sends a request with the gate, token, 401 refresh, claims challenge and retry
    /// rules; answers a 2xx reply or the classified error.
    pub(crate) async fn execute(&self, call: Call<'_>) -> Result<Reply, GraphError> {
        self.execute_with(call, None).await
    }

    /// [`execute`](Self::execute) for a request whose caller already answered a claims
    /// challenge (a `$batch` item's): its token is never sent, and a challenge of this
    /// request is the second one, the typed error.
    pub(crate) async fn execute_with(
        &self,
        call: Call<'_>,
        challenged: Option<&Challenged>,
    ) -> Result<Reply, GraphError> {
        let url = self.check_origin(call.url)?;
        let path = url.path().to_owned();
        let policy = &self.inner.retry;
        let mut attempt: u32 = 0;
        let mut budget = RetryBudget::default();
        let mut refreshed = false;
        // The claims challenge answered for this request, with the token it challenged
        // (spec 7): that token is never sent again, and another challenge is final.
        let mut challenged: Option<Challenged> = challenged.cloned();
        loop {
            attempt += 1;
            self.inner.gate.wait().await;
            if let Some(budget) = &self.inner.budget {
                budget
                    .spend(call.units.unwrap_or_else(|| resource_units(&url)))
                    .await;
            }
            let token = self.token_after(challenged.as_ref()).await?;
            let span = tracing::debug_span!(
                "graph_request",
                method = %call.method,
                path = %path,
                attempt,
                status = tracing::field::Empty,
                request_id = tracing::field::Empty,
                client_request_id = tracing::field::Empty,
            );
            let outcome = self
                .attempt(&call, &url, &token, &path)
                .instrument(span.clone())
                .await;
            let (status, body, meta) = match outcome {
                Attempt::Done(reply) => return Ok(reply),
                Attempt::Status {
                    status,
                    body,
                    meta,
                    challenge: Some(challenge),
                } => {
                    let error = service_error_of(status.as_u16(), &body, &meta, &path);
                    self.answer_challenge(&mut challenged, &token, challenge, error)
                        .await?;
                    continue;
                }
                Attempt::Status {
                    status, body, meta, ..
                } => (status, body, meta),
                Attempt::Fatal(err) => return Err(err),
                Attempt::Transport(err) => {
                    // Only idempotent requests are retried: GETs, and $batch POSTs of GETs.
                    let wait = budget.transport_wait(policy);
                    if budget.spend(policy, wait) {
                        span.in_scope(|| {
                            tracing::debug!(
                                wait_ms = wait.as_millis(),
                                "transport failure, retrying"
                            );
                        });
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Err(err);
                }
            };
            if status == StatusCode::UNAUTHORIZED {
                if !refreshed {
                    // One refresh per request: report the rejected token and ask for a new one (spec 11).
                    self.inner.tokens.rejected(&token).await;
                    refreshed = true;
                    continue;
                }
                return Err(match classify(status.as_u16(), &body, meta, &path) {
                    GraphError::Service(e) => GraphError::Unauthorized(e),
                    other => other,
                });
            }
            let throttled = status == StatusCode::TOO_MANY_REQUESTS
                || (call.batch && status == StatusCode::FAILED_DEPENDENCY);
            if throttled || matches!(status.as_u16(), 503 | 504) {
                let server_wait = meta.retry_after;
                let wait = budget.wait(policy, server_wait);
                let gated = throttled || server_wait.is_some();
                if gated {
                    // The gate pauses every request of this client, this one included (spec
                    // 10a), also when this one gives up below: its siblings must not keep
                    // hitting a throttled Graph. Never longer than the total-wait budget.
                    self.inner.gate.pause_for(wait.min(policy.max_total_wait));
                }
                if budget.spend(policy, wait) {
                    span.in_scope(|| {
                        tracing::debug!(
                            wait_ms = wait.as_millis(),
                            "throttled or unavailable, retrying"
                        );
                    });
                    if !gated {
                        tokio::time::sleep(wait).await;
                    }
                    continue;
                }
            }
            return Err(classify(status.as_u16(), &body, meta, &path));
        }
    }

    async fn attempt(
        &self,
        call: &Call<'_>,
        url: &Url,
        token: &SecretString,
        path: &str,
    ) -> Attempt {
        let Ok(mut bearer) = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
        else {
            return Attempt::Fatal(GraphError::Token(TokenError::new(
                "the access token is not a valid header value",
            )));
        };
        bearer.set_sensitive(true);
        let mut request = self
            .inner
            .http
            .request(call.method.clone(), url.clone())
            .header(header::AUTHORIZATION, bearer)
            .header(header::ACCEPT, call.accept);
        if call.eventual {
            request = request.header("ConsistencyLevel", "eventual");
        }
        // A fresh client-request-id per attempt: Graph echoes it in errors, which lets a
        // failure be matched with this client's logs.
        let client_request_id = client_request_id();
        tracing::Span::current().record("client_request_id", client_request_id.as_str());
        request = request.header("client-request-id", client_request_id);
        if let Some(body) = &call.json_body {
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Attempt::Transport(transport_error(e, path)),
        };
        let status = response.status();
        let span = tracing::Span::current();
        span.record("status", status.as_u16());
        let meta = self.meta(response.headers());
        if let Some(id) = &meta.request_id {
            span.record("request_id", id.as_str());
        }
        let headers = response.headers().clone();
        let challenge = if matches!(status.as_u16(), 401 | 403) {
            ClaimsChallenge::from_headers(status.as_u16(), &headers)
        } else {
            None
        };
        let body = match read_body(response, self.inner.max_body, path).await {
            Ok(b) => b,
            Err(e @ GraphError::BodyTooLarge { .. }) => return Attempt::Fatal(e),
            Err(e) => return Attempt::Transport(e),
        };
        tracing::debug!(bytes = body.len(), "response");
        if status.is_success() {
            Attempt::Done(Reply {
                headers,
                body,
                path: path.to_owned(),
                token: token.clone(),
            })
        } else {
            Attempt::Status {
                status,
                body,
                meta,
                challenge,
            }
        }
    }

    pub(crate) fn meta(&self, headers: &HeaderMap) -> ResponseMeta {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        ResponseMeta {
            request_id: text("request-id"),
            client_request_id: text("client-request-id"),
            date: text("date"),
            retry_after: text("retry-after")
                .and_then(|v| parse_retry_after(&v, (self.inner.clock)())),
            content_type: text("content-type"),
            location: text("location").map(ResyncLocation::new),
        }
    }
}

/// A random version-4 UUID in its hyphenated form.
fn client_request_id() -> String {
    use rand::Rng;
    let bits: u128 = rand::rng().random();
    // Version 4, variant 10xx (RFC 9562).
    let v = (bits & !(0xF << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let hex = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn transport_error(e: reqwest::Error, path: &str) -> GraphError {
    if e.is_timeout() {
        GraphError::Timeout {
            path: path.to_owned(),
        }
    } else {
        // without_url: reqwest's message would otherwise carry the full URL with its $skiptoken.
        GraphError::Connection {
            path: path.to_owned(),
            source: Box::new(e.without_url()),
        }
    }
}

/// Reads the body chunk by chunk and stops as soon as it exceeds `limit`. A body that
/// arrives in one chunk is returned without a copy.
async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
    path: &str,
) -> Result<Bytes, GraphError> {
    let too_large = || GraphError::BodyTooLarge {
        path: path.to_owned(),
        limit,
    };
    let declared = response.content_length();
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let mut first: Option<Bytes> = None;
    let mut buffer: Option<BytesMut> = None;
    let mut total = 0usize;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(e, path))?
    {
        total = total.saturating_add(chunk.len());
        if total > limit {
            return Err(too_large());
        }
        match (&mut buffer, first.take()) {
            (Some(buf), _) => buf.extend_from_slice(&chunk),
            (None, None) => first = Some(chunk),
            (None, Some(prev)) => {
                let capacity = declared
                    .map_or(total, |d| usize::try_from(d).unwrap_or(total))
                    .max(total);
                let mut buf = BytesMut::with_capacity(capacity);
                buf.extend_from_slice(&prev);
                buf.extend_from_slice(&chunk);
                buffer = Some(buf);
            }
        }
    }
    Ok(match (buffer, first) {
        (Some(buf), _) => buf.freeze(),
        (None, Some(only)) => only,
        (None, None) => Bytes::new(),
    })
}

/// Decodes JSON straight from the body bytes; an error names the URL path and the serde
/// path of the bad field, never the body (STYLE, Errors).
pub(crate) fn decode<T: DeserializeOwned>(body: &[u8], path: &str) -> Result<T, GraphError> {
    // The common case decodes straight from the bytes: tracking the serde path on every
    // field costs 13-35 % of a listing's throughput (examples/bench.rs). Only a body that
    // fails is decoded a second time, to name the field that failed.
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| decode_error(path, e.path().to_string(), e.inner()))?;
    deserializer
        .end()
        .map_err(|e| decode_error(path, String::new(), &e))?;
    Ok(value)
}

pub(crate) fn decode_error(path: &str, field: String, inner: &serde_json::Error) -> GraphError {
    // Only the category and position of serde_json's error are kept: its message can quote
    // a value from the body ("invalid type: string \"...\"").
    let kind = match inner.classify() {
        serde_json::error::Category::Eof => DecodeErrorKind::Truncated,
        serde_json::error::Category::Data => DecodeErrorKind::Data,
        serde_json::error::Category::Syntax | serde_json::error::Category::Io => {
            DecodeErrorKind::Syntax
        }
    };
    GraphError::Decode {
        path: path.to_owned(),
        field,
        kind,
        line: inner.line(),
        column: inner.column(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::StaticToken;

    fn builder() -> GraphClientBuilder {
        GraphClient::builder(Arc::new(StaticToken::new("t")))
    }

    #[test]
    fn client_request_ids_are_version_4_uuids() {
        let a = client_request_id();
        let b = client_request_id();
        assert_ne!(a, b);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "{a}");
        assert!(
            matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
            "{a}"
        );
    }

    #[test]
    fn clouds_have_their_documented_graph_roots() {
        assert_eq!(
            GraphCloud::Global.base_url(),
            "https://graph.microsoft.com/v1.0"
        );
        assert_eq!(
            GraphCloud::UsGovernment.base_url(),
            "https://graph.microsoft.us/v1.0"
        );
        assert_eq!(
            GraphCloud::UsGovernmentDod.base_url(),
            "https://dod-graph.microsoft.us/v1.0"
        );
        assert_eq!(
            GraphCloud::China.base_url(),
            "https://microsoftgraph.chinacloudapi.cn/v1.0"
        );
        let client = builder().cloud(GraphCloud::China).build().unwrap();
        assert_eq!(
            client.base_url(),
            "https://microsoftgraph.chinacloudapi.cn/v1.0"
        );
    }

    #[test]
    fn build_rejects_invalid_settings() {
        for b in [
            builder().base_url("not a url"),
            builder().base_url("http://graph.example.com/v1.0"),
            builder().base_url("https://graph.microsoft.com/v1.0?x=1"),
            builder().base_url("ftp://127.0.0.1/v1.0"),
            builder().page_size(0),
            builder().page_size(1000),
            builder().max_response_bytes(0),
            builder().max_pages(0),
            builder().request_timeout(Some(Duration::ZERO)),
            builder().retry_policy(RetryPolicy::default().max_retries(50)),
            builder().user_agent("bad\nagent"),
        ] {
            assert!(matches!(b.build(), Err(GraphError::Configuration { .. })));
        }
    }

    #[test]
    fn loopback_http_is_accepted_and_trailing_slash_dropped() {
        let client = builder()
            .base_url("http://127.0.0.1:9/v1.0/")
            .build()
            .unwrap();
        assert_eq!(client.base_url(), "http://127.0.0.1:9/v1.0");
        assert_eq!(
            client.url_for(&["users", "a#EXT#@b.com"]).unwrap().as_str(),
            "http://127.0.0.1:9/v1.0/users/a%23EXT%23@b.com"
        );
    }

    #[test]
    fn origin_check_compares_scheme_host_and_port() {
        let client = builder()
            .base_url("http://127.0.0.1:9000/v1.0")
            .build()
            .unwrap();
        assert!(
            client
                .check_origin("http://127.0.0.1:9000/v1.0/users?$skiptoken=x")
                .is_ok()
        );
        for foreign in [
            "http://127.0.0.1:9001/v1.0/users",
            "https://127.0.0.1:9000/v1.0/users",
            "http://localhost:9000/v1.0/users",
        ] {
            assert!(
                matches!(
                    client.check_origin(foreign),
                    Err(GraphError::ForeignLink { .. })
                ),
                "{foreign}"
            );
        }
    }

    #[test]
    fn decode_errors_name_the_field_and_not_the_body() {
        #[derive(Debug, serde::Deserialize)]
        struct Wire {
            #[expect(dead_code, reason = "only decoded")]
            value: Vec<crate::User>,
        }
        let body = br#"{"value":[{"id":"1"},{"id":"2","accountEnabled":"secret-ish-value"}]}"#;
        let err = decode::<Wire>(body, "/v1.0/users").unwrap_err();
        match &err {
            GraphError::Decode {
                path, field, kind, ..
            } => {
                assert_eq!(path, "/v1.0/users");
                assert_eq!(field, "value[1].accountEnabled");
                assert_eq!(*kind, DecodeErrorKind::Data);
            }
            other => panic!("{other:?}"),
        }
        assert!(!err.to_string().contains("secret-ish-value"));
        assert!(!format!("{err:?}").contains("secret-ish-value"));
        let truncated = decode::<Wire>(br#"{"value":[{"id":"1"#, "/v1.0/users").unwrap_err();
        assert!(matches!(
            truncated,
            GraphError::Decode {
                kind: DecodeErrorKind::Truncated,
                ..
            }
        ));
        let html = decode::<Wire>(b"<html>", "/v1.0/users").unwrap_err();
        assert!(matches!(
            html,
            GraphError::Decode {
                kind: DecodeErrorKind::Syntax,
                ..
            }
        ));
    }
}
