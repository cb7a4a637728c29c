//! The Graph half over real HTTP (reqwest against the listeners on 127.0.0.1), with a
//! stand-in for the Entra half: bearer `test|{user id}|{scopes}` is valid, `expired` is
//! expired, anything else invalid.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::auth::{BearerError, BearerGrant, ConsentMode};
use crate::server::Authority;
use crate::{
    Deletion, FaultKind, FaultSettings, GroupFields, TenantSim, TenantSimBuilder, ThrottleSettings,
    UserFields,
};

#[derive(Default)]
pub(crate) struct StubAuth {
    pub calls: Mutex<Vec<String>>,
}

impl Authority for StubAuth {
    fn validate_bearer(&self, authorization: Option<&str>) -> Result<BearerGrant, BearerError> {
        let token = authorization
            .ok_or(BearerError::Missing)?
            .strip_prefix("Bearer ")
            .ok_or(BearerError::Invalid)?;
        if token == "expired" {
            return Err(BearerError::Expired);
        }
        let mut parts = token.splitn(3, '|');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("test"), Some(user), Some(scopes)) => Ok(BearerGrant {
                tenant: 0,
                user_id: user.to_string(),
                scopes: scopes
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            }),
            _ => Err(BearerError::Invalid),
        }
    }
    fn revoke_user_grants(&self, _tenant: usize, user_id: &str) -> usize {
        self.calls
            .lock()
            .map(|mut c| c.push(format!("revoke_user_grants {user_id}")))
            .ok();
        2
    }
    fn revoke_refresh_token(&self, _tenant: usize, refresh_token: &str) -> bool {
        self.calls
            .lock()
            .map(|mut c| c.push(format!("revoke_refresh_token {refresh_token}")))
            .ok();
        true
    }
    fn set_consent_mode(&self, _tenant: usize, mode: ConsentMode) {
        self.calls
            .lock()
            .map(|mut c| c.push(format!("set_consent_mode {mode:?}")))
            .ok();
    }
    fn set_access_token_lifetime(&self, _tenant: usize, lifetime: Duration) {
        self.calls
            .lock()
            .map(|mut c| c.push(format!("set_access_token_lifetime {}", lifetime.as_secs())))
            .ok();
    }
    fn approve_device_code(&self, _tenant: usize, user_code: &str, user_id: &str) -> bool {
        self.calls
            .lock()
            .map(|mut c| c.push(format!("approve_device_code {user_code} {user_id}")))
            .ok();
        true
    }
}

pub(crate) struct Harness {
    pub sim: TenantSim,
    pub stub: Arc<StubAuth>,
    pub http: reqwest::Client,
    pub token: String,
}

pub(crate) async fn start(builder: TenantSimBuilder) -> Harness {
    let stub = Arc::new(StubAuth::default());
    let for_sim = Arc::clone(&stub);
    let sim = builder
        .start_with(move |_entra| for_sim as Arc<dyn Authority>)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    let token = format!("test|{}|User.Read.All Group.Read.All", sim.admin_id());
    Harness {
        sim,
        stub,
        http: reqwest::Client::new(),
        token,
    }
}

pub(crate) async fn small() -> Harness {
    start(TenantSim::builder().users(60).groups(16).seed(3)).await
}

impl Harness {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.graph_base())
    }

    pub(crate) async fn get_with(
        &self,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut request = self.http.get(self.url(path)).bearer_auth(token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, body)
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (status, _, body) = self.get_with(path, &self.token, &[]).await;
        (status, body)
    }

    pub(crate) async fn get_eventual(&self, path: &str) -> (StatusCode, Value) {
        let (status, _, body) = self
            .get_with(path, &self.token, &[("ConsistencyLevel", "eventual")])
            .await;
        (status, body)
    }

    /// GETs an absolute link (nextLink / deltaLink / Location).
    pub(crate) async fn follow(&self, link: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(link)
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {link}: {e}"));
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Every item of a paged listing, following nextLinks; returns the items and pages.
    pub(crate) async fn all_pages(&self, path: &str) -> (Vec<Value>, usize) {
        let (status, mut page) = self.get(path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let mut items = Vec::new();
        let mut pages = 1;
        loop {
            items.extend(page["value"].as_array().cloned().unwrap_or_default());
            let Some(next) = page["@odata.nextLink"].as_str().map(str::to_string) else {
                break;
            };
            let (status, next_page) = self.follow(&next).await;
            assert_eq!(status, StatusCode::OK);
            page = next_page;
            pages += 1;
        }
        (items, pages)
    }

    /// Follows a delta round to its deltaLink: (items, deltaLink, pages).
    pub(crate) async fn delta_round(&self, first: &str) -> (Vec<Value>, String, Vec<Value>) {
        let (status, mut page) = self.follow(first).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let mut items = Vec::new();
        let mut pages = Vec::new();
        loop {
            items.extend(page["value"].as_array().cloned().unwrap_or_default());
            pages.push(page.clone());
            if let Some(next) = page["@odata.nextLink"].as_str().map(str::to_string) {
                assert!(page.get("@odata.deltaLink").is_none(), "never both links");
                let (status, next_page) = self.follow(&next).await;
                assert_eq!(status, StatusCode::OK, "{next_page}");
                page = next_page;
            } else {
                let delta = page["@odata.deltaLink"]
                    .as_str()
                    .map_or_else(|| panic!("no deltaLink: {page}"), str::to_string);
                return (items, delta, pages);
            }
        }
    }
}

fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

fn assert_graph_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert_eq!(
        keys(&body["error"]["innerError"]),
        ["client-request-id", "date", "request-id"],
        "{body}"
    );
}

/// Sends one GET over a plain TCP connection and reads until the server closes it (or
/// 5 s pass): the bytes exactly as they came off the wire.
async fn raw_get(h: &Harness, path_and_query: &str, token: &str) -> Vec<u8> {
    raw_request(
        h,
        format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
}

async fn raw_request(h: &Harness, request: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let address = h
        .sim
        .graph_base()
        .trim_start_matches("http://")
        .trim_end_matches("/v1.0")
        .to_string();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .unwrap_or_else(|e| panic!("connect {address}: {e}"));
    stream
        .write_all(request)
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0_u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server neither answered nor closed");
    out
}

/// The head (up to the blank line) as text and the body bytes after it.
fn split_head(raw: &[u8]) -> (String, Vec<u8>) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |i| i + 4);
    (
        String::from_utf8_lossy(&raw[..end]).into_owned(),
        raw[end..].to_vec(),
    )
}

fn content_length(head: &str) -> Option<usize> {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
}

// ------------------------------------------------------------------ users

#[tokio::test]
async fn users_pages_carry_default_properties_options_and_opaque_skiptokens() {
    let h = small().await;
    let (status, headers, page) = h
        .get_with(
            "/users?$top=7",
            &h.token,
            &[("client-request-id", "abc-123")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["client-request-id"], "abc-123");
    assert!(headers.contains_key("request-id"));
    assert_eq!(
        page["@odata.context"],
        format!("{}/$metadata#users", h.sim.graph_base())
    );
    let value = page["value"].as_array().cloned().unwrap_or_default();
    assert_eq!(value.len(), 7);
    let mut expected: Vec<String> = crate::graph::USERS
        .default
        .iter()
        .map(|s| (*s).to_string())
        .collect();
    expected.sort();
    assert!(value.iter().all(|u| keys(u) == expected), "{}", value[0]);
    let next = page["@odata.nextLink"].as_str().unwrap_or_default();
    assert!(
        next.starts_with(&format!("{}/users?$top=7&$skiptoken=", h.sim.graph_base())),
        "{next}"
    );
    let (all, pages) = h.all_pages("/users?$top=7").await;
    assert_eq!(all.len(), 60);
    assert_eq!(pages, 9);
    let mut ids: Vec<&str> = all.iter().filter_map(|u| u["id"].as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 60, "every user once");
}

/// Status and JSON body of one raw HTTP/1.1 response (the body up to `Content-Length`).
fn parse_raw(raw: &[u8]) -> (u16, Value) {
    let (head, body) = split_head(raw);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head:?}"));
    let length = content_length(&head).unwrap_or(body.len()).min(body.len());
    let body = serde_json::from_slice(&body[..length])
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status, body)
}

#[tokio::test]
async fn hostile_queries_get_graphs_400_error_body_never_a_bare_400_or_a_500() {
    let h = small().await;
    let huge_nesting = format!("/v1.0/users?$filter={}", "(".repeat(60_000));
    let huge_quotes = format!("/v1.0/users?$filter={}", "\"".repeat(20_000));
    let huge_search = format!("/v1.0/users?$search=\"displayName:{}", "a".repeat(300_000));
    let cases: Vec<(&[u8], &str)> = vec![
        (
            b"/v1.0/users?$filter=startsWith(displayName,\"a\")",
            "BadRequest",
        ),
        (b"/v1.0/users?$filter=\"", "BadRequest"),
        (b"/v1.0/users?$filter=(accountEnabled eq true", "BadRequest"),
        (
            b"/v1.0/users?$filter=accountEnabled eq true))",
            "BadRequest",
        ),
        (
            b"/v1.0/users?$filter=startswith(displayName,'a'",
            "BadRequest",
        ),
        (b"/v1.0/users?$filter=displayName eq 'abc", "BadRequest"),
        (b"/v1.0/users?$filter=displayName eq 'a'\x00", "BadRequest"),
        (b"/v1.0/users?$filter=displayName%20eq%20%00", "BadRequest"),
        (b"/v1.0/users?$filter=displayName eq \xff\xfe", "BadRequest"),
        (b"/v1.0/users?$filter=<script>\"", "BadRequest"),
        (
            b"/v1.0/users?$search=\"displayName:a",
            "Request_UnsupportedQuery",
        ),
        (b"/v1.0/users?$orderby=displayName \"desc\"", "BadRequest"),
        (
            b"/v1.0/users?$orderby=\"displayName\"",
            "Request_UnsupportedQuery",
        ),
        (b"/v1.0/users?$select=id,\"mail\"", "Request_BadRequest"),
        (b"/v1.0/users?$top=\"5\"", "Request_BadRequest"),
        (b"/v1.0/users?$skiptoken=\"\x00\"", "Request_BadRequest"),
        (huge_nesting.as_bytes(), "BadRequest"),
        (huge_quotes.as_bytes(), "BadRequest"),
    ];
    for (target, code) in cases {
        let mut request = b"GET ".to_vec();
        request.extend_from_slice(target);
        request.extend_from_slice(
            format!(
                " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nConsistencyLevel: eventual\r\nConnection: close\r\n\r\n",
                h.token
            )
            .as_bytes(),
        );
        let shown = String::from_utf8_lossy(&target[..target.len().min(80)]).into_owned();
        let (status, body) = parse_raw(&raw_request(&h, &request).await);
        assert_eq!(status, 400, "{shown}: {body}");
        assert_graph_error(&body, code);
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.len() < 200,
            "hostile input is not echoed whole: {message}"
        );
    }
    // Over hyper's limits (a target of 64 KiB, a head of about 400 KiB), the HTTP layer
    // answers before Graph does, as http.sys does in front of Graph: 414 or 431, never a
    // 5xx or a dropped connection.
    for target in [
        huge_search,
        format!("/v1.0/users?$filter={}", "\"".repeat(30_000)),
    ] {
        let (status, _) = parse_raw(&raw_get(&h, &target, &h.token).await);
        assert!(status == 414 || status == 431, "{status}");
    }
    // Graph's documented `$search` syntax has raw quotes, as curl sends it: it works.
    let raw = raw_request(
        &h,
        format!(
            "GET /v1.0/users?$search=\"displayName:adm\"&$select=displayName HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConsistencyLevel: eventual\r\nConnection: close\r\n\r\n",
            h.token
        )
        .as_bytes(),
    )
    .await;
    let (status, body) = parse_raw(&raw);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["value"][0]["displayName"], "MOD Administrator",
        "{body}"
    );
    // A keep-alive connection: every request line is read, the batch body is not touched.
    let batch = r#"{"requests":[{"id":"1","method":"GET","url":"/users?$filter=id eq \"x\""}]}"#;
    let two = format!(
        "GET /v1.0/users?$filter=\" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\n\r\n\
POST /v1.0/$batch?\"= HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nContent-Type: application/json\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n{batch}",
        t = h.token,
        n = batch.len()
    );
    let raw = raw_request(&h, two.as_bytes()).await;
    let text = String::from_utf8_lossy(&raw);
    assert_eq!(
        text.matches("HTTP/1.1 400 Bad Request\r\n").count(),
        1,
        "{text}"
    );
    assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 1, "{text}");
    assert!(
        text.contains(r#""status":400"#) && text.contains("Invalid filter clause"),
        "{text}"
    );
}

#[tokio::test]
async fn users_default_page_is_100_and_top_must_be_1_to_999() {
    let h = start(TenantSim::builder().users(150).groups(2)).await;
    let (_, page) = h.get("/users").await;
    assert_eq!(page["value"].as_array().map(Vec::len), Some(100));
    assert!(page["@odata.nextLink"].is_string());
    let (_, page) = h.get("/users?$top=999").await;
    assert_eq!(page["value"].as_array().map(Vec::len), Some(150));
    assert!(page.get("@odata.nextLink").is_none());
    for top in ["0", "1000", "abc"] {
        let (status, headers, body) = h
            .get_with(&format!("/users?$top={top}"), &h.token, &[])
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{top}");
        assert_graph_error(&body, "Request_BadRequest");
        assert_eq!(
            body["error"]["innerError"]["request-id"],
            headers["request-id"].to_str().unwrap_or_default()
        );
    }
}

#[tokio::test]
async fn select_returns_exactly_the_selected_properties_and_refuses_unknown_ones() {
    let h = small().await;
    let (_, page) = h
        .get("/users?$select=displayName,accountEnabled,userType,employeeId&$top=3")
        .await;
    assert_eq!(
        page["@odata.context"],
        format!(
            "{}/$metadata#users(displayName,accountEnabled,userType,employeeId)",
            h.sim.graph_base()
        )
    );
    for user in page["value"].as_array().cloned().unwrap_or_default() {
        assert_eq!(
            keys(&user),
            ["accountEnabled", "displayName", "employeeId", "userType"]
        );
    }
    let (status, body) = h.get("/users?$select=displayName,nonsense").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_graph_error(&body, "Request_BadRequest");
    let (status, body) = h.get("/users?$select=skills").await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert_graph_error(&body, "NotImplemented");
}

#[tokio::test]
async fn count_and_search_need_consistency_level_eventual() {
    let h = small().await;
    // Without the header $count=true is silently ignored ([spec 8c]).
    let (status, page) = h.get("/users?$count=true&$top=2").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.get("@odata.count").is_none());
    let (_, page) = h.get_eventual("/users?$count=true&$top=2").await;
    assert_eq!(page["@odata.count"], 60);
    // The count is on the first page only.
    let next = page["@odata.nextLink"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (_, _, second) = h
        .get_with_absolute(&next, &[("ConsistencyLevel", "eventual")])
        .await;
    assert!(second.get("@odata.count").is_none());
    assert!(second["value"].is_array());

    let (status, body) = h.get("/users/$count").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_graph_error(&body, "Request_BadRequest");
    assert_eq!(
        body["error"]["message"],
        "$count is not currently supported."
    );
    let (status, headers, body) = h
        .get_with(
            "/users/$count",
            &h.token,
            &[("ConsistencyLevel", "eventual")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/plain");
    assert_eq!(body, 60);

    let (status, body) = h.get("/users?$search=\"displayName:admin\"").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_graph_error(&body, "Request_UnsupportedQuery");
    let (status, page) = h
        .get_eventual("/users?$search=\"displayName:administrator\"&$count=true")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["@odata.count"], 1);
    assert_eq!(page["value"][0]["displayName"], "MOD Administrator");
}

impl Harness {
    async fn get_with_absolute(
        &self,
        url: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut request = self.http.get(url).bearer_auth(&self.token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = response.status();
        let headers = response.headers().clone();
        (
            status,
            headers,
            response.json().await.unwrap_or(Value::Null),
        )
    }
}

#[tokio::test]
async fn filters_select_the_matching_users() {
    let h = small().await;
    let users = h.sim.control().users();
    let (disabled, _) = h
        .all_pages("/users?$filter=accountEnabled eq false&$select=id,accountEnabled")
        .await;
    assert_eq!(
        disabled.len(),
        users.iter().filter(|u| !u.account_enabled).count()
    );
    assert!(!disabled.is_empty() && disabled.iter().all(|u| u["accountEnabled"] == false));
    let (guests, _) = h
        .all_pages("/users?$filter=userType eq 'Guest'&$select=userPrincipalName,userType")
        .await;
    assert!(!guests.is_empty());
    assert!(guests.iter().all(|u| {
        u["userPrincipalName"]
            .as_str()
            .is_some_and(|p| p.contains("#EXT#"))
    }));
    assert_eq!(
        guests.len(),
        users
            .iter()
            .filter(|u| u.user_type == crate::UserType::Guest)
            .count()
    );
    let (mod_admin, _) = h
        .all_pages("/users?$filter=startswith(displayName,'MOD ')")
        .await;
    assert_eq!(mod_admin.len(), 1);
    let wanted = [users[3].id.clone(), users[5].id.clone()];
    let (listed, _) = h
        .all_pages(&format!(
            "/users?$filter=id in ('{}', '{}')",
            wanted[0], wanted[1]
        ))
        .await;
    let mut got: Vec<&str> = listed.iter().filter_map(|u| u["id"].as_str()).collect();
    got.sort_unstable();
    let mut wanted_sorted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    wanted_sorted.sort_unstable();
    assert_eq!(got, wanted_sorted);
    // endsWith is an advanced query ([spec 8c]).
    let (status, body) = h
        .get("/users?$filter=endswith(mail,'@contoso.onmicrosoft.com')")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["message"], "Unsupported Query.");
    let (status, _) = h
        .get_eventual("/users?$filter=endswith(mail,'@contoso.onmicrosoft.com')&$count=true")
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = h.get("/users?$filter=id ge '1'").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"]["message"],
        "The request uses a filter property that is not indexed"
    );
}

#[tokio::test]
async fn orderby_display_name_sorts_across_pages() {
    let h = small().await;
    let (users, pages) = h
        .all_pages("/users?$orderby=displayName&$top=25&$select=displayName")
        .await;
    assert_eq!((users.len(), pages), (60, 3));
    let names: Vec<String> = users
        .iter()
        .filter_map(|u| u["displayName"].as_str())
        .map(str::to_lowercase)
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    let (status, _) = h
        .get("/users?$orderby=displayName&$filter=accountEnabled eq true")
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "orderby with filter needs advanced parameters"
    );
}

#[tokio::test]
async fn single_user_by_id_or_upn_and_not_found() {
    let h = small().await;
    let guest = h
        .sim
        .control()
        .users()
        .into_iter()
        .find(|u| u.user_type == crate::UserType::Guest)
        .unwrap_or_else(|| panic!("a guest"));
    let (status, by_id) = h.get(&format!("/users/{}", guest.id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        by_id["@odata.context"],
        format!("{}/$metadata#users/$entity", h.sim.graph_base())
    );
    let encoded = guest.user_principal_name.replace('#', "%23");
    let (status, by_upn) = h
        .get(&format!("/users/{encoded}?$select=id,userType"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_upn["id"], guest.id.as_str());
    assert_eq!(by_upn["userType"], "Guest");
    let (status, body) = h.get("/users/00000000-0000-0000-0000-000000000000").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_graph_error(&body, "Request_ResourceNotFound");
    let (status, me) = h.get("/me").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["userPrincipalName"], h.sim.admin_upn());
}

#[tokio::test]
async fn member_of_manager_and_photos() {
    let h = small().await;
    let users = h.sim.control().users();
    let user = &users[8];
    let (status, direct) = h.get(&format!("/users/{}/memberOf", user.id)).await;
    assert_eq!(status, StatusCode::OK);
    let direct = direct["value"].as_array().cloned().unwrap_or_default();
    assert!(!direct.is_empty());
    assert!(
        direct
            .iter()
            .all(|g| g["@odata.type"] == "#microsoft.graph.group")
    );
    let (_, transitive) = h
        .get(&format!("/users/{}/transitiveMemberOf", user.id))
        .await;
    let transitive = transitive["value"].as_array().cloned().unwrap_or_default();
    assert!(transitive.len() >= direct.len());
    for group in &direct {
        assert!(transitive.iter().any(|t| t["id"] == group["id"]));
    }

    let (status, manager) = h.get(&format!("/users/{}/manager", user.id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(manager["@odata.type"], "#microsoft.graph.user");
    assert_eq!(
        Some(manager["id"].as_str().unwrap_or_default().to_string()),
        user.manager_id
    );
    let (status, body) = h.get(&format!("/users/{}/manager", h.sim.admin_id())).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the admin has no manager");
    assert_graph_error(&body, "Request_ResourceNotFound");

    let with_photo = users
        .iter()
        .find(|u| u.has_photo)
        .unwrap_or_else(|| panic!("a photo"));
    let without = users
        .iter()
        .find(|u| !u.has_photo)
        .unwrap_or_else(|| panic!("no photo"));
    let response = h
        .http
        .get(h.url(&format!("/users/{}/photo/$value", with_photo.id)))
        .bearer_auth(&h.token)
        .send()
        .await;
    let response = response.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/png");
    assert!(
        response
            .bytes()
            .await
            .is_ok_and(|b| b.starts_with(b"\x89PNG"))
    );
    let (status, _) = h
        .get(&format!("/users/{}/photos/48x48/$value", with_photo.id))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h
        .get(&format!("/users/{}/photos/648x648/$value", with_photo.id))
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "larger than the stored photo"
    );
    let (status, body) = h.get(&format!("/users/{}/photo/$value", without.id)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_graph_error(&body, "ImageNotFound");
    let (status, meta) = h.get(&format!("/users/{}/photo", with_photo.id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(meta["id"], "96X96");
}

// ------------------------------------------------------------------ groups

#[tokio::test]
async fn groups_members_and_transitive_members_carry_odata_type() {
    let h = small().await;
    let (groups, _) = h.all_pages("/groups").await;
    assert_eq!(groups.len(), 16);
    let nested = h
        .sim
        .control()
        .groups()
        .into_iter()
        .find(|g| {
            h.sim
                .control()
                .group_member_ids(&g.id)
                .is_ok_and(|ids| ids.iter().any(|id| h.sim.control().group(id).is_some()))
        })
        .unwrap_or_else(|| panic!("a nested group"));
    let (status, group) = h.get(&format!("/groups/{}", nested.id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(group["displayName"], nested.display_name.as_str());
    let (members, _) = h.all_pages(&format!("/groups/{}/members", nested.id)).await;
    assert_eq!(members.len(), nested.member_count);
    assert!(
        members
            .iter()
            .all(|m| m["@odata.type"] == "#microsoft.graph.user"
                || m["@odata.type"] == "#microsoft.graph.group")
    );
    assert!(
        members
            .iter()
            .any(|m| m["@odata.type"] == "#microsoft.graph.group")
    );
    let (transitive, _) = h
        .all_pages(&format!("/groups/{}/transitiveMembers", nested.id))
        .await;
    assert!(
        transitive.len() > members.len(),
        "nested members are included"
    );
    assert!(transitive.iter().all(|m| m["@odata.type"].is_string()));
    // A large group pages at 100 by default.
    let all_company = &h.sim.control().groups()[0];
    let (status, page) = h
        .get(&format!("/groups/{}/members?$top=10", all_company.id))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["value"].as_array().map(Vec::len), Some(10));
    let (all, pages) = h
        .all_pages(&format!("/groups/{}/members?$top=10", all_company.id))
        .await;
    assert_eq!(all.len(), all_company.member_count);
    assert!(pages > 1);
    let response = h
        .http
        .get(h.url("/users").replace("/v1.0", "/beta"))
        .bearer_auth(&h.token)
        .send()
        .await;
    assert_eq!(
        response.map(|r| r.status()).ok(),
        Some(StatusCode::BAD_REQUEST),
        "only v1.0 is simulated"
    );
    let (status, body) = h.get("/groups/not-a-group").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_graph_error(&body, "Request_ResourceNotFound");
}

// ------------------------------------------------------------------ auth

#[tokio::test]
async fn bad_bearers_get_401_and_missing_scopes_403() {
    let h = small().await;
    for (token, message) in [
        ("", "Access token is empty."),
        ("expired", "Access token has expired or is not yet valid."),
    ] {
        let mut request = h.http.get(h.url("/users"));
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key("www-authenticate"));
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_graph_error(&body, "InvalidAuthenticationToken");
        assert_eq!(body["error"]["message"], message);
    }
    let (status, _, body) = h.get_with("/users", "forged", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_graph_error(&body, "InvalidAuthenticationToken");
    let users_only = format!("test|{}|User.Read.All", h.sim.admin_id());
    let groups_only = format!("test|{}|Group.Read.All", h.sim.admin_id());
    let (status, _, body) = h.get_with("/groups", &users_only, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_graph_error(&body, "Authorization_RequestDenied");
    let (status, _, _) = h.get_with("/users", &groups_only, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let other = &h.sim.control().users()[4].id;
    let (status, _, _) = h
        .get_with(&format!("/users/{other}/memberOf"), &users_only, &[])
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "memberOf needs Group.Read.All too"
    );
    let (status, _, _) = h.get_with("/users", &users_only, &[]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn requests_without_a_valid_token_count_in_no_tenant_and_meet_no_faults() {
    let h = small().await;
    // Tenant 0 answers every request it serves with a 503.
    h.sim.control().set_faults(
        FaultSettings::none()
            .with_rate(1.0)
            .and_then(|f| f.with_kinds(&[FaultKind::ServiceUnavailable]))
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let response = h
        .http
        .get(h.url("/users"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_graph_error(&body, "InvalidAuthenticationToken");
    assert_eq!(body["error"]["message"], "Access token is empty.");
    for (token, message) in [
        (
            "forged",
            "CompactToken parsing failed with error code: 80049217",
        ),
        ("expired", "Access token has expired or is not yet valid."),
    ] {
        let (status, _, body) = h.get_with("/users", token, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token}: {body}");
        assert_graph_error(&body, "InvalidAuthenticationToken");
        assert_eq!(body["error"]["message"], message);
    }
    let (status, _, body) = h.get_with("/nowhere", "forged", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_graph_error(&body, "BadRequest");

    let counters = h.sim.control().counters();
    assert_eq!(counters.total(), 0, "{counters:?}");
    assert!(counters.by_endpoint().is_empty(), "{counters:?}");
    assert!(counters.by_status().is_empty(), "{counters:?}");
    assert_eq!(h.sim.counters().total(), 0, "nor in the simulator's sum");

    // The tenant's own request still meets its fault and counts.
    let (status, body) = h.get("/users").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let counters = h.sim.control().counters();
    assert_eq!(counters.total(), 1);
    assert_eq!(counters.count("GET /users", 503), 1);
    assert_eq!(counters.count("GET /users", 401), 0);
}

// ------------------------------------------------------------------ batch, throttle, faults

#[tokio::test]
async fn batch_answers_by_id_refuses_more_than_20_and_fails_dependents() {
    let h = small().await;
    let admin = h.sim.admin_id().to_string();
    let body = serde_json::json!({"requests": [
        {"id": "1", "method": "GET", "url": "/users?$top=2"},
        {"id": "2", "method": "GET", "url": format!("/users/{admin}")},
        {"id": "3", "method": "GET", "url": "users/$count", "headers": {"ConsistencyLevel": "eventual"}},
        {"id": "4", "method": "GET", "url": "/users/00000000-0000-0000-0000-000000000000"},
        {"id": "5", "method": "GET", "url": "/groups?$top=1", "dependsOn": ["4"]},
    ]});
    let response = h
        .http
        .post(h.url("/$batch"))
        .bearer_auth(&h.token)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    let responses = answer["responses"].as_array().cloned().unwrap_or_default();
    let order: Vec<&str> = responses.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(order, ["5", "4", "3", "2", "1"], "not in request order");
    let by_id = |id: &str| {
        responses
            .iter()
            .find(|r| r["id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(by_id("1")["status"], 200);
    assert_eq!(
        by_id("1")["body"]["value"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(by_id("2")["body"]["id"], admin.as_str());
    assert_eq!(by_id("3")["body"], "60");
    assert_eq!(by_id("4")["status"], 404);
    assert_eq!(
        by_id("4")["body"]["error"]["code"],
        "Request_ResourceNotFound"
    );
    assert_eq!(by_id("5")["status"], 424);

    let too_many: Vec<Value> = (0..21)
        .map(|i| serde_json::json!({"id": i.to_string(), "method": "GET", "url": "/me"}))
        .collect();
    let response = h
        .http
        .post(h.url("/$batch"))
        .bearer_auth(&h.token)
        .json(&serde_json::json!({"requests": too_many}))
        .send()
        .await;
    let response = response.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = h
        .http
        .post(h.url("/$batch"))
        .bearer_auth(&h.token)
        .body("not json")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn throttle_answers_429_with_fractional_retry_after_per_request_and_per_batch_item() {
    let h = start(
        TenantSim::builder()
            .users(20)
            .groups(3)
            .throttle(ThrottleSettings::new(0.01, 4.0).unwrap_or_else(|e| panic!("{e}"))),
    )
    .await;
    let (status, first, _) = h.get_with("/users", &h.token, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["x-ms-resource-unit"], "2");
    assert!(
        !first.contains_key("x-ms-throttle-limit-percentage"),
        "half the bucket used"
    );
    let (status, second, _) = h.get_with("/users", &h.token, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(second["x-ms-throttle-limit-percentage"], "1.0");
    let (status, headers, body) = h.get_with("/users", &h.token, &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: f64 = headers["retry-after"]
        .to_str()
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0.0);
    // 2 units short at 0.01 units/s: about 200 s, less what refilled meanwhile.
    assert!(retry_after > 150.0 && retry_after <= 200.0, "{retry_after}");
    assert_eq!(body["error"]["code"], "TooManyRequests");
    assert_eq!(body["error"]["innerError"]["code"], "429");
    assert_eq!(body["error"]["innerError"]["status"], "429");
    assert!(headers.contains_key("x-ms-throttle-scope"));

    h.sim.control().set_throttle(Some(
        ThrottleSettings::new(0.01, 3.0).unwrap_or_else(|e| panic!("{e}")),
    ));
    let body = serde_json::json!({"requests": [
        {"id": "a", "method": "GET", "url": "/users"},
        {"id": "b", "method": "GET", "url": "/users"},
    ]});
    let answer: Value = h
        .http
        .post(h.url("/$batch"))
        .bearer_auth(&h.token)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or(Value::Null);
    let responses = answer["responses"].as_array().cloned().unwrap_or_default();
    let by_id = |id: &str| {
        responses
            .iter()
            .find(|r| r["id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(by_id("a")["status"], 200);
    assert_eq!(by_id("b")["status"], 429);
    assert!(by_id("b")["headers"]["retry-after"].is_string());

    h.sim.control().set_throttle(None);
    assert_eq!(h.get("/users").await.0, StatusCode::OK);
    let counters = h.sim.control().counters();
    assert_eq!(counters.count("GET /users", 429), 2);
}

#[tokio::test]
async fn faults_give_5xx_cut_connections_truncated_bodies_and_latency() {
    let h = small().await;
    for (kind, status, code) in [
        (
            FaultKind::InternalServerError,
            StatusCode::INTERNAL_SERVER_ERROR,
            "generalException",
        ),
        (
            FaultKind::ServiceUnavailable,
            StatusCode::SERVICE_UNAVAILABLE,
            "serviceNotAvailable",
        ),
        (
            FaultKind::GatewayTimeout,
            StatusCode::GATEWAY_TIMEOUT,
            "serviceNotAvailable",
        ),
    ] {
        h.sim.control().set_faults(
            FaultSettings::none()
                .with_rate(1.0)
                .and_then(|f| f.with_kinds(&[kind]))
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let (got, body) = h.get("/users").await;
        assert_eq!(got, status);
        assert_graph_error(&body, code);
    }
    h.sim.control().set_faults(
        FaultSettings::none()
            .with_rate(1.0)
            .and_then(|f| f.with_kinds(&[FaultKind::DroppedConnection]))
            .unwrap_or_else(|e| panic!("{e}")),
    );
    // A dropped connection: closed before any byte of a response.
    let raw = raw_get(&h, "/v1.0/users", &h.token).await;
    assert!(
        raw.is_empty(),
        "dropped: {:?}",
        String::from_utf8_lossy(&raw)
    );
    // What an HTTP client makes of it: the request itself fails, no status.
    let sent = h
        .http
        .get(h.url("/users"))
        .bearer_auth(&h.token)
        .send()
        .await;
    assert!(sent.is_err(), "dropped: a response arrived");
    h.sim.control().set_faults(
        FaultSettings::none()
            .with_rate(1.0)
            .and_then(|f| f.with_kinds(&[FaultKind::TruncatedBody]))
            .unwrap_or_else(|e| panic!("{e}")),
    );
    // A truncated body: the whole head, then fewer bytes than Content-Length, then EOF.
    let raw = raw_get(&h, "/v1.0/users", &h.token).await;
    let (head, body) = split_head(&raw);
    assert!(
        head.starts_with("HTTP/1.1 200 OK\r\n"),
        "truncated: {head:?}"
    );
    let promised = content_length(&head).unwrap_or_else(|| panic!("no Content-Length: {head}"));
    assert!(
        !body.is_empty() && body.len() < promised,
        "truncated: {} of {promised} bytes",
        body.len()
    );
    // What an HTTP client makes of it: a 200, then the body read fails.
    let response = h
        .http
        .get(h.url("/users"))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("truncated: the head must arrive: {e}"));
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.is_err(), "truncated: the body read");
    h.sim
        .control()
        .set_faults(FaultSettings::none().with_latency(Duration::from_millis(120)));
    let started = std::time::Instant::now();
    assert_eq!(h.get("/me").await.0, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(120));
    h.sim.control().set_faults(FaultSettings::none());
    assert_eq!(h.get("/me").await.0, StatusCode::OK);
}

// ------------------------------------------------------------------ delta

#[tokio::test]
#[expect(clippy::too_many_lines, reason = "one scenario, step by step")]
async fn users_delta_pages_then_reports_upserts_and_both_removal_reasons() {
    let h = start(TenantSim::builder().users(25).groups(2).delta_page_size(10)).await;
    let start = h.url("/users/delta?$select=displayName,jobTitle");
    let (items, delta_link, pages) = h.delta_round(&start).await;
    assert_eq!(items.len(), 25);
    assert_eq!(pages.len(), 3);
    assert_eq!(
        pages[0]["@odata.context"],
        format!(
            "{}/$metadata#users(displayName,jobTitle)",
            h.sim.graph_base()
        )
    );
    assert_eq!(
        pages[1]["@odata.context"],
        format!("{}/$metadata#users", h.sim.graph_base())
    );
    assert!(items.iter().all(|u| {
        keys(u)
            .iter()
            .all(|k| ["id", "displayName", "jobTitle"].contains(&k.as_str()))
    }));

    let (items, delta_link, _) = h.delta_round(&delta_link).await;
    assert!(items.is_empty(), "no changes: {items:?}");

    let control = h.sim.control();
    let users = control.users();
    let added = control
        .add_user(
            &UserFields::new()
                .display_name("Nina New")
                .job_title("Analyst"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    control
        .update_user(&users[3].id, &UserFields::new().job_title("Chief Tester"))
        .unwrap_or_else(|e| panic!("{e}"));
    control
        .delete_user(&users[5].id, Deletion::Soft)
        .unwrap_or_else(|e| panic!("{e}"));
    control
        .delete_user(&users[6].id, Deletion::Permanent)
        .unwrap_or_else(|e| panic!("{e}"));
    let (items, next_delta, _) = h.delta_round(&delta_link).await;
    let find = |id: &str| items.iter().find(|i| i["id"] == id).cloned();
    assert_eq!(
        find(&added.id).map(|u| u["displayName"].clone()),
        Some(Value::from("Nina New"))
    );
    assert_eq!(
        find(&users[3].id).map(|u| u["jobTitle"].clone()),
        Some(Value::from("Chief Tester"))
    );
    assert_eq!(
        find(&users[5].id).map(|u| u["@removed"]["reason"].clone()),
        Some(Value::from("changed"))
    );
    assert_eq!(
        find(&users[6].id).map(|u| u["@removed"]["reason"].clone()),
        Some(Value::from("deleted"))
    );
    assert!(
        find(&users[9].id).is_none(),
        "unchanged users are not repeated"
    );

    // Sync from now.
    let (status, latest) = h.follow(&h.url("/users/delta?$deltatoken=latest")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(latest["value"], serde_json::json!([]));
    assert!(latest["@odata.deltaLink"].is_string());

    control.expire_delta_tokens();
    let (status, body) = h.follow(&next_delta).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_graph_error(&body, "syncStateNotFound");

    let (_, _, fresh) = h.delta_round(&h.url("/users/delta")).await;
    let fresh_delta = fresh
        .last()
        .and_then(|p| p["@odata.deltaLink"].as_str())
        .unwrap_or_default()
        .to_string();
    control.force_resync();
    let response = h
        .http
        .get(&fresh_delta)
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::GONE);
    let location = response.headers()["location"]
        .to_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        location,
        format!("{}/users/delta?$deltatoken=", h.sim.graph_base())
    );
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_graph_error(&body, "resyncRequired");
    let (items, _, _) = h.delta_round(&location).await;
    assert_eq!(
        items.len(),
        24,
        "a full round again: 25 + 1 added - 2 deleted"
    );
}

#[tokio::test]
async fn groups_delta_splits_large_groups_and_reports_removed_members() {
    let h = start(TenantSim::builder().users(40).groups(3).delta_page_size(8)).await;
    let control = h.sim.control();
    let all_company = control.groups()[0].clone();
    let (items, delta_link, pages) = h
        .delta_round(&h.url("/groups/delta?$select=displayName,members"))
        .await;
    let slices: Vec<&Value> = items
        .iter()
        .filter(|g| g["id"] == all_company.id.as_str())
        .collect();
    assert!(slices.len() > 1, "the large group spans pages");
    let members: usize = slices
        .iter()
        .map(|g| g["members@delta"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(members, all_company.member_count);
    assert!(
        pages
            .iter()
            .all(|p| p["value"].as_array().is_some_and(|v| !v.is_empty()))
    );
    for slice in &slices {
        for member in slice["members@delta"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            assert_eq!(keys(&member), ["@odata.type", "id"]);
        }
    }
    let member_ids = control
        .group_member_ids(&all_company.id)
        .unwrap_or_default();
    assert!(
        control
            .remove_member(&all_company.id, &member_ids[0])
            .unwrap_or(false)
    );
    let newcomer = control
        .add_user(&UserFields::new().display_name("Late Joiner"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        control
            .add_member(&all_company.id, &newcomer.id)
            .unwrap_or(false)
    );
    let renamed = control.groups()[1].clone();
    control
        .update_group(&renamed.id, GroupFields::new().display_name("Renamed"))
        .unwrap_or_else(|e| panic!("{e}"));
    let (items, _, _) = h.delta_round(&delta_link).await;
    let company = items
        .iter()
        .find(|g| g["id"] == all_company.id.as_str())
        .cloned()
        .unwrap_or(Value::Null);
    let changes = company["members@delta"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(changes.len(), 2, "{company}");
    assert!(
        changes
            .iter()
            .any(|m| m["id"] == member_ids[0].as_str() && m["@removed"]["reason"] == "deleted")
    );
    assert!(
        changes
            .iter()
            .any(|m| m["id"] == newcomer.id.as_str() && m.get("@removed").is_none())
    );
    let renamed_item = items
        .iter()
        .find(|g| g["id"] == renamed.id.as_str())
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(renamed_item["displayName"], "Renamed");
    assert!(
        renamed_item.get("members@delta").is_none(),
        "no member changes"
    );
    assert_eq!(items.len(), 2);
}

// ------------------------------------------------------------------ control, counters, TLS

#[tokio::test]
#[expect(clippy::too_many_lines, reason = "one scenario, step by step")]
async fn control_over_http_changes_the_directory_and_reaches_the_entra_half() {
    let h = small().await;
    let base = h.sim.control_base().to_string();
    let created: Value = h
        .http
        .post(format!("{base}/users"))
        .json(&serde_json::json!({"displayName": "Olga Added", "jobTitle": "Pilot"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or(Value::Null);
    let id = created["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        created["userPrincipalName"],
        "olga.added@contoso.onmicrosoft.com"
    );
    let (status, user) = h.get(&format!("/users/{id}")).await;
    assert_eq!(
        (status, user["jobTitle"].clone()),
        (StatusCode::OK, Value::from("Pilot"))
    );
    let patched = h
        .http
        .patch(format!("{base}/users/{id}"))
        .json(&serde_json::json!({"accountEnabled": false}))
        .send()
        .await;
    assert_eq!(patched.map(|r| r.status()).ok(), Some(StatusCode::OK));
    assert_eq!(
        h.sim.control().user(&id).map(|u| u.account_enabled),
        Some(false)
    );
    let group = &h.sim.control().groups()[5];
    let added = h
        .http
        .post(format!("{base}/groups/{}/members", group.id))
        .json(&serde_json::json!({"id": id}))
        .send()
        .await;
    assert_eq!(added.map(|r| r.status()).ok(), Some(StatusCode::OK));
    assert!(
        h.sim
            .control()
            .group_member_ids(&group.id)
            .is_ok_and(|m| m.contains(&id))
    );
    let removed = h
        .http
        .delete(format!("{base}/groups/{}/members/{id}", group.id))
        .send()
        .await;
    assert_eq!(removed.map(|r| r.status()).ok(), Some(StatusCode::OK));
    let deleted = h
        .http
        .delete(format!("{base}/users/{id}?permanent=true"))
        .send()
        .await;
    assert_eq!(
        deleted.map(|r| r.status()).ok(),
        Some(StatusCode::NO_CONTENT)
    );
    assert_eq!(
        h.get(&format!("/users/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    let missing = h.http.delete(format!("{base}/users/{id}")).send().await;
    assert_eq!(
        missing.map(|r| r.status()).ok(),
        Some(StatusCode::NOT_FOUND)
    );

    let admin = h.sim.admin_upn().to_string();
    let calls = [
        (
            h.http.post(format!("{base}/users/{admin}/revoke")),
            StatusCode::OK,
        ),
        (
            h.http
                .post(format!("{base}/refresh-tokens/revoke"))
                .json(&serde_json::json!({"refreshToken": "rt-1"})),
            StatusCode::OK,
        ),
        (
            h.http
                .put(format!("{base}/consent-mode"))
                .json(&serde_json::json!({"mode": "userDeclines"})),
            StatusCode::NO_CONTENT,
        ),
        (
            h.http
                .put(format!("{base}/consent-mode"))
                .json(&serde_json::json!({"mode": "nonsense"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            h.http
                .put(format!("{base}/access-token-lifetime"))
                .json(&serde_json::json!({"seconds": 5})),
            StatusCode::NO_CONTENT,
        ),
        (
            h.http
                .post(format!("{base}/device-codes/approve"))
                .json(&serde_json::json!({"userCode": "ABCD-EFGH", "userId": admin})),
            StatusCode::OK,
        ),
        (
            h.http
                .put(format!("{base}/throttle"))
                .json(&serde_json::json!({"unitsPerSecond": 100.0})),
            StatusCode::NO_CONTENT,
        ),
        (
            h.http
                .put(format!("{base}/faults"))
                .json(&serde_json::json!({"rate": 0.0, "latencyMs": 1})),
            StatusCode::NO_CONTENT,
        ),
        (
            h.http
                .put(format!("{base}/faults"))
                .json(&serde_json::json!({"rate": 2.0})),
            StatusCode::BAD_REQUEST,
        ),
        (
            h.http.post(format!("{base}/delta/expire")),
            StatusCode::NO_CONTENT,
        ),
        (
            h.http.post(format!("{base}/delta/resync")),
            StatusCode::NO_CONTENT,
        ),
    ];
    for (request, expected) in calls {
        let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status(), expected, "{:?}", response.url().path());
    }
    let calls = h.stub.calls.lock().map(|c| c.clone()).unwrap_or_default();
    assert_eq!(
        calls,
        [
            format!("revoke_user_grants {}", h.sim.admin_id()),
            "revoke_refresh_token rt-1".to_string(),
            "set_consent_mode UserDeclines".to_string(),
            "set_access_token_lifetime 5".to_string(),
            format!("approve_device_code ABCD-EFGH {}", h.sim.admin_id()),
        ]
    );
    assert_eq!(
        h.sim.control().throttle().map(|t| t.units_per_second()),
        Some(100.0)
    );
    assert_eq!(h.sim.control().faults().latency(), Duration::from_millis(1));
}

#[tokio::test]
async fn counters_count_per_endpoint_and_status() {
    let h = small().await;
    h.get("/users").await;
    h.get("/users").await;
    h.get("/users/nobody@contoso.onmicrosoft.com").await;
    let counters = h.sim.control().counters();
    assert_eq!(counters.total(), 3);
    assert_eq!(counters.by_endpoint().get("GET /users"), Some(&2));
    assert_eq!(counters.count("GET /users/{id}", 404), 1);
    assert_eq!(counters.by_status().get(&200), Some(&2));
    let over_http: Value = h
        .http
        .get(format!("{}/counters", h.sim.control_base()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or(Value::Null);
    assert_eq!(over_http["total"], 3);
    h.sim.control().reset_counters();
    assert_eq!(h.sim.control().counters().total(), 0);
}

#[tokio::test]
async fn tls_serves_https_with_the_generated_certificate() {
    let h = start(TenantSim::builder().users(5).groups(1).tls(true)).await;
    assert!(h.sim.graph_base().starts_with("https://127.0.0.1:"));
    let pem = h.sim.cert_pem().unwrap_or_default().to_string();
    let path = h
        .sim
        .cert_pem_path()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    assert_eq!(std::fs::read_to_string(&path).ok(), Some(pem.clone()));
    let certificate =
        reqwest::Certificate::from_pem(pem.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let client = reqwest::Client::builder()
        .add_root_certificate(certificate)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let response = client
        .get(format!("{}/me", h.sim.graph_base()))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        h.sim.startup_json()["cert_pem_path"],
        path.display().to_string()
    );
    drop(h);
    assert!(!path.exists(), "the certificate is removed on drop");
}

#[tokio::test]
async fn debug_redacts_the_client_secret_and_shutdown_stops_listening() {
    let h = small().await;
    let secret = secrecy::ExposeSecret::expose_secret(h.sim.client_secret()).to_string();
    assert!(secret.starts_with("sim~"));
    let debug = format!("{:?}", h.sim);
    assert!(!debug.contains(&secret) && debug.contains("REDACTED"));
    assert_eq!(h.sim.startup_json()["client_secret"], secret.as_str());
    let url = h.url("/me");
    h.sim.shutdown().await;
    assert!(h.http.get(url).send().await.is_err());
}

#[tokio::test]
async fn builder_refuses_out_of_range_settings() {
    for builder in [
        TenantSim::builder().users(0),
        TenantSim::builder().fault_rate(1.5),
        TenantSim::builder().rate_limit(0.0),
        TenantSim::builder().delta_page_size(1),
        TenantSim::builder().tenant_domain("not a domain"),
    ] {
        let result = builder
            .start_with(|_| Arc::new(StubAuth::default()) as Arc<dyn Authority>)
            .await;
        assert!(result.is_err_and(|e| e.is_invalid_input()));
    }
}

#[tokio::test]
async fn same_seed_gives_the_same_tenant_and_credentials() {
    let a = start(TenantSim::builder().users(30).seed(9)).await;
    let b = start(TenantSim::builder().users(30).seed(9)).await;
    assert_eq!(a.sim.tenant_id(), b.sim.tenant_id());
    assert_eq!(a.sim.client_id(), b.sim.client_id());
    assert_eq!(a.sim.control().users(), b.sim.control().users());
    assert_ne!(a.sim.graph_base(), b.sim.graph_base());
}

#[tokio::test]
async fn malformed_paging_and_delta_tokens_are_bad_requests() {
    let h = small().await;
    for path in [
        "/users?$skiptoken=not-a-token",
        "/users/delta?$deltatoken=not-a-token",
        "/users/delta?$skiptoken=not-a-token",
        "/groups/delta?$top=5",
    ] {
        let (status, body) = h.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert!(body["error"]["code"].is_string(), "{path}: {body}");
    }
    // A users deltaLink is not a groups deltaLink.
    let (_, delta_link, _) = h.delta_round(&h.url("/users/delta?$select=id")).await;
    let swapped = delta_link.replace("/users/delta", "/groups/delta");
    let (status, _) = h.follow(&swapped).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn listings_report_the_first_bad_option_in_their_own_order() {
    let h = small().await;
    let members = format!("/groups/{}/members", h.sim.control().groups()[0].id);
    let top = "Invalid page size";
    let select = "Could not find a property";
    let filter = "Invalid filter clause";
    let token = "page token value";
    for (path, first) in [
        // users and groups read $top before $select and $filter, $skiptoken last
        ("/users?$skiptoken=x&$select=nope&$top=0".to_string(), top),
        ("/users?$skiptoken=x&$select=nope".to_string(), select),
        ("/users?$skiptoken=x&$filter=nope".to_string(), filter),
        ("/users?$skiptoken=x".to_string(), token),
        ("/groups?$filter=nope&$select=nope&$top=0".to_string(), top),
        ("/groups?$skiptoken=x&$select=nope".to_string(), select),
        ("/groups?$skiptoken=x".to_string(), token),
        // member lists read $filter before $top, and $top before $select
        (format!("{members}?$top=0&$filter=nope"), filter),
        (format!("{members}?$skiptoken=x&$select=nope&$top=0"), top),
        (format!("{members}?$skiptoken=x&$select=nope"), select),
        (format!("{members}?$skiptoken=x"), token),
    ] {
        let (status, body) = h.get(&path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(first), "{path}: {message}");
    }
}

#[tokio::test]
async fn forged_delta_token_with_extreme_issue_time_is_expired_not_a_panic() {
    use base64::Engine as _;
    let h = small().await;
    // A hostile client writes its own token: issued at i64::MIN would overflow the
    // age subtraction and panic the handler.
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        "{}|d|u|0|{}|*",
        h.sim.tenant_id(),
        i64::MIN
    ));
    let (status, body) = h.get(&format!("/users/delta?$deltatoken={forged}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "syncStateNotFound", "{body}");
}

#[tokio::test]
async fn odata_casts_keep_one_type_and_transitive_casts_need_advanced_parameters() {
    let h = small().await;
    let nested = h
        .sim
        .control()
        .groups()
        .into_iter()
        .find(|g| {
            h.sim
                .control()
                .group_member_ids(&g.id)
                .is_ok_and(|ids| ids.iter().any(|id| h.sim.control().group(id).is_some()))
        })
        .unwrap_or_else(|| panic!("a nested group"));
    let (status, users) = h
        .get(&format!(
            "/groups/{}/members/microsoft.graph.user",
            nested.id
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        users["@odata.context"],
        format!("{}/$metadata#users", h.sim.graph_base())
    );
    let users = users["value"].as_array().cloned().unwrap_or_default();
    let (_, groups) = h
        .get(&format!(
            "/groups/{}/members/microsoft.graph.group",
            nested.id
        ))
        .await;
    let groups = groups["value"].as_array().cloned().unwrap_or_default();
    assert!(!users.is_empty() && !groups.is_empty());
    assert_eq!(users.len() + groups.len(), nested.member_count);
    assert!(
        users
            .iter()
            .all(|u| u.get("@odata.type").is_none() && u["userPrincipalName"].is_string())
    );
    assert!(groups.iter().all(|g| g["groupTypes"].is_array()));
    let (status, body) = h
        .get(&format!(
            "/groups/{}/transitiveMembers/microsoft.graph.user",
            nested.id
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "Request_UnsupportedQuery");
    let (status, body) = h
        .get_eventual(&format!(
            "/groups/{}/transitiveMembers/microsoft.graph.user?$count=true",
            nested.id
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body["@odata.count"]
            .as_u64()
            .is_some_and(|c| c >= users.len() as u64)
    );
    let (status, _) = h
        .get(&format!(
            "/groups/{}/members/microsoft.graph.device",
            nested.id
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn dropping_the_simulator_stops_its_listeners() {
    let h = small().await;
    assert_eq!(h.get("/me").await.0, StatusCode::OK);
    let graph = h.url("/me");
    let control = format!("{}/counters", h.sim.control_base());
    let Harness { sim, token, .. } = h;
    drop(sim);
    let fresh = reqwest::Client::new();
    assert!(fresh.get(&graph).bearer_auth(&token).send().await.is_err());
    assert!(fresh.get(&control).send().await.is_err());
}

#[tokio::test]
async fn minimal_delta_returns_only_changed_properties_with_nulls() {
    let h = start(TenantSim::builder().users(6).groups(0)).await;
    let control = h.sim.control();
    let users = control.users();
    let (_, delta_link, _) = h.delta_round(&h.url("/users/delta")).await;
    control
        .update_user(&users[2].id, &UserFields::new().job_title("Pilot"))
        .unwrap_or_else(|e| panic!("{e}"));
    let added = control
        .add_user(&UserFields::new().display_name("New Person"))
        .unwrap_or_else(|e| panic!("{e}"));
    let response = h
        .http
        .get(&delta_link)
        .bearer_auth(&h.token)
        .header("Prefer", "return=minimal")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let page: Value = response.json().await.unwrap_or(Value::Null);
    let items = page["value"].as_array().cloned().unwrap_or_default();
    let changed = items
        .iter()
        .find(|i| i["id"] == users[2].id.as_str())
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(keys(&changed), ["id", "jobTitle"]);
    assert_eq!(changed["jobTitle"], "Pilot");
    let new = items
        .iter()
        .find(|i| i["id"] == added.id.as_str())
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(new["displayName"], "New Person", "a new user comes whole");
    // Without the header the same round returns every selected property.
    let (_, full) = h.follow(&delta_link).await;
    let changed = full["value"]
        .as_array()
        .and_then(|v| v.iter().find(|i| i["id"] == users[2].id.as_str()).cloned())
        .unwrap_or(Value::Null);
    assert!(changed["displayName"].is_string() && changed["userPrincipalName"].is_string());
}
