//! The Graph listener's request pipeline: request ids, faults and latency, bearer check,
//! scope check, throttle, then the endpoint; `$batch` runs its items through the same
//! pipeline; counters see every request that carries a valid access token.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{
    AccessTokenInfo, BearerError, BearerGrant, CaeEvent, ConsentMode, TokenCounters,
};
use crate::data::{Directory, Kind};

use crate::faults::{FaultKind, Faults};
use crate::graph::{Endpoint, GraphError, Query, RequestIds, json_response};
use crate::throttle::{Throttle, format_retry_after};

/// What the Graph half needs from the Entra half; [`crate::auth::Auth`] implements it,
/// and unit tests use a stand-in.
/// Every method but `validate_bearer` acts on one tenant, by index.
pub(crate) trait Authority: Send + Sync {
    fn validate_bearer(&self, authorization: Option<&str>) -> Result<BearerGrant, BearerError>;
    fn revoke_user_grants(&self, tenant: usize, user_id: &str) -> usize;
    fn revoke_refresh_token(&self, tenant: usize, refresh_token: &str) -> bool;
    fn set_consent_mode(&self, tenant: usize, mode: ConsentMode);
    fn set_access_token_lifetime(&self, tenant: usize, lifetime: Duration);
    fn approve_device_code(&self, tenant: usize, user_code: &str, user_id: &str) -> bool;
    /// Records a CAE event on a user; returns its unix time. The stand-ins of unit
    /// tests record nothing.
    fn signal_cae_event(&self, _tenant: usize, _user_id: &str, _event: CaeEvent) -> i64 {
        crate::graph::now_unix()
    }
    fn set_cae_access_token_lifetime(&self, _tenant: usize, _lifetime: Duration) {}
    fn access_token_info(&self, _access_token: &str) -> Option<AccessTokenInfo> {
        None
    }
    fn token_counters(&self, _tenant: usize) -> TokenCounters {
        TokenCounters::default()
    }
    fn reset_token_counters(&self, _tenant: usize) {}
    fn set_wids_claim(&self, _tenant: usize, _enabled: bool) {}
    fn wids_claim(&self, _tenant: usize) -> bool {
        false
    }
}

impl Authority for crate::auth::Auth {
    fn validate_bearer(&self, authorization: Option<&str>) -> Result<BearerGrant, BearerError> {
        Self::validate_bearer(self, authorization)
    }
    fn revoke_user_grants(&self, tenant: usize, user_id: &str) -> usize {
        Self::revoke_user_grants(self, tenant, user_id)
    }
    fn revoke_refresh_token(&self, tenant: usize, refresh_token: &str) -> bool {
        Self::revoke_refresh_token(self, tenant, refresh_token)
    }
    fn set_consent_mode(&self, tenant: usize, mode: ConsentMode) {
        Self::set_consent_mode(self, tenant, mode);
    }
    fn set_access_token_lifetime(&self, tenant: usize, lifetime: Duration) {
        Self::set_access_token_lifetime(self, tenant, lifetime);
    }
    fn approve_device_code(&self, tenant: usize, user_code: &str, user_id: &str) -> bool {
        Self::approve_device_code(self, tenant, user_code, user_id)
    }
    fn signal_cae_event(&self, tenant: usize, user_id: &str, event: CaeEvent) -> i64 {
        Self::signal_cae_event(self, tenant, user_id, event)
    }
    fn set_cae_access_token_lifetime(&self, tenant: usize, lifetime: Duration) {
        Self::set_cae_access_token_lifetime(self, tenant, lifetime);
    }
    fn access_token_info(&self, access_token: &str) -> Option<AccessTokenInfo> {
        Self::access_token_info(self, access_token)
    }
    fn token_counters(&self, tenant: usize) -> TokenCounters {
        Self::token_counters(self, tenant)
    }
    fn reset_token_counters(&self, tenant: usize) {
        Self::reset_token_counters(self, tenant);
    }
    fn set_wids_claim(&self, tenant: usize, enabled: bool) {
        Self::set_wids_claim(self, tenant, enabled);
    }
    fn wids_claim(&self, tenant: usize) -> bool {
        Self::wids_claim(self, tenant)
    }
}

/// Request counts since start (or the last reset), by endpoint and by status; one set
/// per tenant (a request counts in its access token's tenant; one without a valid token
/// belongs to no tenant and counts nowhere, except that a challenged CAE token counts
/// in its tenant), and their sum for the whole simulator. [`RequestCounters::tokens`]
/// holds the tenant's token endpoint requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestCounters {
    total: u64,
    by_endpoint: BTreeMap<String, u64>,
    by_status: BTreeMap<u16, u64>,
    by_endpoint_status: BTreeMap<String, BTreeMap<u16, u64>>,
    first_pages: BTreeMap<String, u64>,
    claims_challenges: u64,
    tokens: TokenCounters,
}

impl RequestCounters {
    fn record(&mut self, endpoint: &str, status: StatusCode, first_page: bool) {
        if first_page && status.is_success() {
            *self.first_pages.entry(endpoint.to_string()).or_default() += 1;
        }
        self.total += 1;
        *self.by_endpoint.entry(endpoint.to_string()).or_default() += 1;
        *self.by_status.entry(status.as_u16()).or_default() += 1;
        *self
            .by_endpoint_status
            .entry(endpoint.to_string())
            .or_default()
            .entry(status.as_u16())
            .or_default() += 1;
    }

    /// Graph requests answered with a CAE claims challenge (401 `insufficient_claims`).
    pub fn claims_challenges(&self) -> u64 {
        self.claims_challenges
    }

    /// The tenant's token endpoint requests (by grant type, by error, tokens issued).
    pub fn tokens(&self) -> &TokenCounters {
        &self.tokens
    }

    pub(crate) fn set_tokens(&mut self, tokens: TokenCounters) {
        self.tokens = tokens;
    }

    /// Every Graph request answered (`$batch` items count on their own too).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Requests per endpoint, named like `GET /users/{id}/memberOf`.
    pub fn by_endpoint(&self) -> &BTreeMap<String, u64> {
        &self.by_endpoint
    }

    /// Requests per HTTP status.
    pub fn by_status(&self) -> &BTreeMap<u16, u64> {
        &self.by_status
    }

    /// Requests to one endpoint that got one status.
    pub fn count(&self, endpoint: &str, status: u16) -> u64 {
        self.by_endpoint_status
            .get(endpoint)
            .and_then(|s| s.get(&status))
            .copied()
            .unwrap_or(0)
    }

    /// Successful requests to one endpoint without `$skiptoken`: the first pages. For
    /// `GET /users/delta` and `GET /groups/delta` that is the rounds started (the
    /// initial request, `$deltatoken=latest`, or a saved delta link), not their
    /// continuation pages; for `GET /users` and `GET /groups`, the listings started.
    pub fn first_pages(&self, endpoint: &str) -> u64 {
        self.first_pages.get(endpoint).copied().unwrap_or(0)
    }

    /// Adds another set of counts to this one.
    pub(crate) fn add(&mut self, other: &Self) {
        self.total += other.total;
        for (endpoint, count) in &other.by_endpoint {
            *self.by_endpoint.entry(endpoint.clone()).or_default() += count;
        }
        for (status, count) in &other.by_status {
            *self.by_status.entry(*status).or_default() += count;
        }
        for (endpoint, statuses) in &other.by_endpoint_status {
            let mine = self.by_endpoint_status.entry(endpoint.clone()).or_default();
            for (status, count) in statuses {
                *mine.entry(*status).or_default() += count;
            }
        }
        for (endpoint, count) in &other.first_pages {
            *self.first_pages.entry(endpoint.clone()).or_default() += count;
        }
        self.claims_challenges += other.claims_challenges;
        self.tokens.add(&other.tokens);
    }
}

/// One tenant's half of the Graph host: its directory (with its delta state), its
/// app+tenant throttle bucket, its faults and its counters.
pub(crate) struct TenantState {
    pub index: usize,
    pub id: String,
    pub dir: Arc<RwLock<Directory>>,
    pub throttle: Mutex<Throttle>,
    pub faults: Mutex<Faults>,
    pub counters: Mutex<RequestCounters>,
    /// The app+tenant bucket key ([spec 10a]: Graph throttles per app per tenant).
    pub throttle_key: String,
}

impl TenantState {
    pub(crate) fn read_dir(&self) -> std::sync::RwLockReadGuard<'_, Directory> {
        self.dir.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write_dir(&self) -> std::sync::RwLockWriteGuard<'_, Directory> {
        self.dir.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// State shared by the Graph listener, the control API and [`crate::TenantSim`]: one
/// Graph host serving every tenant, as Microsoft's does.
pub(crate) struct Shared {
    /// Never empty; index 0 is the first tenant.
    pub tenants: Vec<TenantState>,
    /// Tenant ids and domains, lower case, to the tenant's index.
    pub tenant_names: HashMap<String, usize>,
    pub auth: Arc<dyn Authority>,
    /// `http://127.0.0.1:{port}/v1.0`
    pub graph_base: String,
    pub delta_page_size: usize,
}

impl Shared {
    /// The tenant with this index, tenant 0 for an unknown one.
    pub(crate) fn tenant(&self, index: usize) -> &TenantState {
        self.tenants.get(index).unwrap_or(&self.tenants[0])
    }

    /// The index of the tenant with this id or domain (case-insensitive).
    pub(crate) fn tenant_index(&self, id_or_domain: &str) -> Option<usize> {
        self.tenant_names
            .get(&id_or_domain.to_ascii_lowercase())
            .copied()
    }
}

/// The Graph listener's fallback handler: everything under `/v1.0`.
pub(crate) async fn graph_entry(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
) -> Response {
    serve_graph(&shared, request, false).await
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// One Graph request through the whole pipeline.
pub(crate) async fn serve_graph(
    shared: &Shared,
    request: axum::extract::Request,
    in_batch: bool,
) -> Response {
    let ids = RequestIds {
        request_id: uuid::Uuid::new_v4().to_string(),
        client_request_id: header_str(request.headers(), "client-request-id")
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string),
    };
    // Only `/v1.0/...` is Graph; anything else is an unknown segment.
    let versioned = request.uri().path().strip_prefix("/v1.0");
    let path = versioned.unwrap_or(request.uri().path()).to_string();
    let endpoint = versioned.and_then(Endpoint::parse);
    let counter_name = format!(
        "{} {}",
        request.method(),
        endpoint
            .as_ref()
            .map_or_else(|| "(unknown)".to_string(), Endpoint::name)
    );
    let first_page = Query::parse(request.uri().query())
        .skiptoken
        .is_none_or(|token| token.is_empty());
    // The access token names the tenant whose directory, faults, throttle and counters
    // serve the request. One without a valid token belongs to no tenant: it gets its 401
    // (or the 400/405 of a bad path or method) without any tenant's faults or latency,
    // and counts in no tenant's counters, so a client's bad token never skews another
    // tenant's figures.
    let bearer = shared
        .auth
        .validate_bearer(header_str(request.headers(), "authorization"));
    let (tenant, challenged) = match &bearer {
        Ok(grant) => (Some(shared.tenant(grant.tenant)), false),
        // A challenged CAE token is the tenant's: its challenge counts there, without
        // the tenant's faults, so a client's recovery is measured exactly.
        Err(BearerError::Challenged(challenge)) => (Some(shared.tenant(challenge.tenant())), true),
        Err(_) => (None, false),
    };
    // Faults hit the outer request only: a batch item is part of its batch's answer.
    let plan = match tenant {
        Some(tenant) if !in_batch && !challenged => Some(
            tenant
                .faults
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .plan(),
        ),
        _ => None,
    };
    if let Some(plan) = plan
        && !plan.delay.is_zero()
    {
        tokio::time::sleep(plan.delay).await;
    }
    let fault = plan.and_then(|p| p.fault);
    let status_fault = match fault {
        Some(FaultKind::InternalServerError) => Some(GraphError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "generalException",
            "General exception while processing.",
        )),
        Some(FaultKind::ServiceUnavailable) => Some(GraphError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "serviceNotAvailable",
            "The service is temporarily unavailable. Please retry later.",
        )),
        Some(FaultKind::GatewayTimeout) => Some(GraphError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "serviceNotAvailable",
            "The gateway timed out.",
        )),
        _ => None,
    };
    let mut response = if let Some(error) = status_fault {
        error.to_response(&ids)
    } else {
        let call = Call {
            endpoint,
            path: &path,
            ids: &ids,
            bearer,
        };
        match process(shared, request, call).await {
            Ok(response) => response,
            Err(error) => error.to_response(&ids),
        }
    };
    if let Some(tenant) = tenant {
        let mut counters = tenant
            .counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        counters.record(&counter_name, response.status(), first_page);
        if challenged && response.status() == StatusCode::UNAUTHORIZED {
            counters.claims_challenges += 1;
        }
    }
    for (name, value) in [
        ("request-id", &ids.request_id),
        ("client-request-id", &ids.client_request_id),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            response.headers_mut().insert(name, value);
        }
    }
    match fault {
        Some(FaultKind::DroppedConnection) => cut_body(response, true).await,
        Some(FaultKind::TruncatedBody) => cut_body(response, false).await,
        _ => response,
    }
}

/// A response that breaks off, as the client sees it over HTTP/1.1:
/// - dropped (`nothing`): the connection closes before any byte of the response. The
///   body fails on its first poll; hyper has only buffered the head then, and a body
///   error ends the connection without writing what is buffered, so the head never
///   leaves (`faults_give_5xx_cut_connections_truncated_bodies_and_latency` reads the
///   wire to hold this).
/// - truncated: the head with `Content-Length` promising the whole body, half of the
///   body, then the connection closes. The body pauses once after the half, which makes
///   hyper flush the head and the half to the socket before the error ends the
///   connection; without the pause the error would discard them too and a truncated
///   body would look like a dropped connection.
async fn cut_body(response: Response, nothing: bool) -> Response {
    use futures::StreamExt as _;
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let keep = if nothing { 0 } else { bytes.len() / 2 };
    parts.headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(bytes.len().max(1)),
    );
    let half = (keep > 0).then(|| Ok::<Bytes, std::io::Error>(bytes.slice(..keep)));
    let cut = futures::stream::once(async move {
        if !nothing {
            tokio::task::yield_now().await;
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "tenant-sim fault: connection cut",
        ))
    });
    let stream = futures::stream::iter(half).chain(cut);
    Response::from_parts(parts, Body::from_stream(stream))
}

fn bearer_error(error: BearerError) -> GraphError {
    // [spec 11]: the messages Graph gives for each case.
    let message = match error {
        BearerError::Missing => "Access token is empty.",
        BearerError::Expired => "Access token has expired or is not yet valid.",
        BearerError::Challenged(challenge) => {
            // [spec 7]: 401 with the claims challenge in the WWW-Authenticate header;
            // the body's code is UNCONFIRMED (Graph's 401 code), its message is the one
            // Graph SDK users report.
            return GraphError::new(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                challenge.message(),
            )
            .with_header(header::WWW_AUTHENTICATE, challenge.www_authenticate());
        }
        _ => "CompactToken parsing failed with error code: 80049217",
    };
    GraphError::new(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", message)
        .with_header(header::WWW_AUTHENTICATE, "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"")
}

/// What the pipeline learnt about a request before its endpoint runs.
struct Call<'a> {
    endpoint: Option<Endpoint>,
    path: &'a str,
    ids: &'a RequestIds,
    bearer: Result<BearerGrant, BearerError>,
}

async fn process(
    shared: &Shared,
    request: axum::extract::Request,
    call: Call<'_>,
) -> Result<Response, GraphError> {
    let Call {
        endpoint,
        path,
        ids,
        bearer,
    } = call;
    let Some(endpoint) = endpoint else {
        let segment = path
            .trim_matches('/')
            .split('/')
            .next_back()
            .unwrap_or_default();
        return Err(GraphError::bad_request(
            "BadRequest",
            format!("Resource not found for the segment '{segment}'."),
        ));
    };
    let expected = if endpoint == Endpoint::Batch {
        Method::POST
    } else {
        Method::GET
    };
    if request.method() != expected {
        return Err(GraphError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Request_BadRequest",
            "Specified HTTP method is not allowed for the request target.",
        ));
    }
    let (parts, body) = request.into_parts();
    let grant = bearer.map_err(bearer_error)?;
    let tenant = shared.tenant(grant.tenant);
    endpoint.authorize(&grant)?;
    let query = Query::parse(parts.uri.query());
    let cost = endpoint.cost(&query);
    let mut used_share = 0.0;
    if cost > 0 {
        let taken = tenant
            .throttle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(&tenant.throttle_key, cost, tokio::time::Instant::now());
        if let Err(wait) = taken {
            return Err(GraphError::throttled(&format_retry_after(wait))
                .with_header(
                    header::HeaderName::from_static("x-ms-throttle-scope"),
                    format!("Tenant_Application/ReadWrite/{}", tenant.throttle_key),
                )
                .with_header(
                    header::HeaderName::from_static("x-ms-throttle-information"),
                    "ResourceUnitLimitExceeded",
                ));
        }
        used_share = taken.unwrap_or(0.0);
    }
    if endpoint == Endpoint::Batch {
        let body = axum::body::to_bytes(body, 4 * 1024 * 1024)
            .await
            .map_err(|_| {
                GraphError::bad_request("BadRequest", "The batch body could not be read.")
            })?;
        return batch(shared, &parts.headers, &body, ids).await;
    }
    let dir = tenant.read_dir();
    let graph_request = crate::graph::Request {
        dir: &dir,
        tenant_id: &tenant.id,
        graph_base: &shared.graph_base,
        path,
        query,
        headers: &parts.headers,
        grant: &grant,
    };
    let mut response = match endpoint {
        Endpoint::UsersDelta => {
            crate::delta::handle(&graph_request, Kind::User, shared.delta_page_size)
        }
        Endpoint::GroupsDelta => {
            crate::delta::handle(&graph_request, Kind::Group, shared.delta_page_size)
        }
        _ => crate::graph::handle(&endpoint, &graph_request),
    }?;
    response
        .headers_mut()
        .insert("x-ms-resource-unit", HeaderValue::from(cost));
    // [spec 10a]: once more than 80 % of the quota is used, Graph says how much.
    if used_share > 0.8
        && let Ok(value) = HeaderValue::from_str(&format!("{used_share:.1}"))
    {
        response
            .headers_mut()
            .insert("x-ms-throttle-limit-percentage", value);
    }
    Ok(response)
}

#[derive(Deserialize)]
struct BatchBody {
    requests: Vec<BatchItem>,
}

#[derive(Deserialize)]
struct BatchItem {
    id: String,
    method: String,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default, rename = "dependsOn")]
    depends_on: Vec<String>,
}

/// Most requests in one `$batch` ([spec 12]).
const BATCH_LIMIT: usize = 20;

/// `/$batch`: at most 20 items, each through the pipeline (so each is throttled on its
/// own and may get its own 429), `dependsOn` failures give 424, and the answers come back
/// in a different order than asked, to be matched by id ([spec 12]).
async fn batch(
    shared: &Shared,
    outer: &HeaderMap,
    body: &[u8],
    ids: &RequestIds,
) -> Result<Response, GraphError> {
    let invalid =
        |why: &str| GraphError::bad_request("BadRequest", format!("Invalid batch payload: {why}"));
    let parsed: BatchBody = serde_json::from_slice(body).map_err(|e| invalid(&e.to_string()))?;
    if parsed.requests.len() > BATCH_LIMIT {
        return Err(GraphError::bad_request(
            "BadRequest",
            format!(
                "The batch contains {} requests; the limit is {BATCH_LIMIT}.",
                parsed.requests.len()
            ),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for item in &parsed.requests {
        if !seen.insert(item.id.as_str()) {
            return Err(invalid(&format!("duplicate id '{}'", item.id)));
        }
    }
    let mut statuses: BTreeMap<String, u16> = BTreeMap::new();
    let mut answers = Vec::with_capacity(parsed.requests.len());
    for item in &parsed.requests {
        let failed_dependency = item
            .depends_on
            .iter()
            .any(|d| statuses.get(d).is_none_or(|s| *s >= 400));
        let answer = if failed_dependency {
            json!({"id": item.id, "status": 424, "body": {"error": {"code": "FailedDependency", "message": "A request this one depends on failed."}}})
        } else {
            run_item(shared, outer, item, ids).await
        };
        statuses.insert(
            item.id.clone(),
            answer
                .get("status")
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(500),
        );
        answers.push(answer);
    }
    // Any order is allowed; reversing makes clients that assume request order fail fast.
    answers.reverse();
    Ok(json_response(
        StatusCode::OK,
        json!({"responses": answers}).to_string().into_bytes(),
    ))
}

async fn run_item(shared: &Shared, outer: &HeaderMap, item: &BatchItem, ids: &RequestIds) -> Value {
    // Batch item URLs are written by hand, spaces and quotes included: encode them.
    let encoded: String = item
        .url
        .chars()
        .map(|c| match c {
            ' ' | '"' | '<' | '>' | '{' | '}' | '|' | '\\' | '^' | '`' => {
                format!("%{:02X}", u32::from(c))
            }
            other => other.to_string(),
        })
        .collect();
    let url = if encoded.starts_with('/') {
        format!("/v1.0{encoded}")
    } else {
        format!("/v1.0/{encoded}")
    };
    let method =
        Method::from_bytes(item.method.to_ascii_uppercase().as_bytes()).unwrap_or(Method::GET);
    let mut builder = axum::http::Request::builder()
        .method(method)
        .uri(url.as_str());
    if let Some(authorization) = outer.get(header::AUTHORIZATION) {
        builder = builder.header(header::AUTHORIZATION, authorization);
    }
    builder = builder.header("client-request-id", ids.client_request_id.as_str());
    for (name, value) in &item.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let Ok(request) = builder.body(Body::empty()) else {
        return json!({"id": item.id, "status": 400, "body": {"error": {"code": "BadRequest", "message": "Invalid request URL or headers."}}});
    };
    if Endpoint::parse(request.uri().path().trim_start_matches("/v1.0")) == Some(Endpoint::Batch) {
        return json!({"id": item.id, "status": 400, "body": {"error": {"code": "BadRequest", "message": "A batch cannot contain a batch."}}});
    }
    let response = Box::pin(serve_graph(shared, request, true)).await;
    let status = response.status().as_u16();
    let mut headers = serde_json::Map::new();
    for name in [
        header::CONTENT_TYPE,
        header::RETRY_AFTER,
        header::LOCATION,
        header::ETAG,
    ] {
        if let Some(value) = response.headers().get(&name).and_then(|v| v.to_str().ok()) {
            headers.insert(name.as_str().to_string(), Value::String(value.to_string()));
        }
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let body = if bytes.is_empty() {
        Value::Null
    } else if is_json {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    } else if let Ok(text) = std::str::from_utf8(&bytes) {
        Value::String(text.to_string())
    } else {
        // Binary bodies (photos) are base64 inside a batch ([spec 12]).
        Value::String(base64::engine::general_purpose::STANDARD.encode(&bytes))
    };
    json!({"id": item.id, "status": status, "headers": headers, "body": body})
}
