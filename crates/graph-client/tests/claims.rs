//! Claims challenges (continuous access evaluation, spec 7): the provider hears the
//! challenge with the token sent, the request is retried once with a new token, the
//! challenged token is never resent, and a second challenge is the typed error.

mod common;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{CountingTokens, builder};
use graph_client::secrecy::{ExposeSecret, SecretString};
use graph_client::{
    BatchItem, ClaimsChallenge, ErrorAction, GraphError, StaticToken, TokenError, TokenProvider,
    User,
};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// Microsoft's example challenge (claims-challenge.md) and its decoded claims.
const CHALLENGE: &str = r#"Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnsibmJmIjp7ImVzc2VudGlhbCI6dHJ1ZSwgInZhbHVlIjoiMTYwNDEwNjY1MSJ9fX0=""#;
const CLAIMS: &str = r#"{"access_token":{"nbf":{"essential":true, "value":"1604106651"}}}"#;

/// What Graph says with a CAE challenge (the message the Graph SDK samples match on).
fn cae_body() -> Value {
    json!({"error": {
        "code": "InvalidAuthenticationToken",
        "message": "Continuous access evaluation resulted in claims challenge",
        "innerError": {"request-id": "req-cae", "date": "2024-01-01T00:00:00"}
    }})
}

fn challenge_response(status: u16) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("WWW-Authenticate", CHALLENGE)
        .set_body_json(cae_body())
}

fn users_page() -> Value {
    json!({"value": [{"id": "u1", "displayName": "Adele Vance"}]})
}

/// The bearer tokens of the requests the server received, in order.
async fn sent_tokens(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            r.headers
                .get("authorization")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// A CAE-aware provider: gives `token-1`, `token-2`, ...; on a challenge it refreshes once
/// (single flight), and only while its cached token is still the challenged one. It
/// records every challenge it hears, and can hold its first `n` token requests until all
/// `n` have asked, so that they all send the same token.
struct CaeTokens {
    current: tokio::sync::Mutex<u32>,
    refreshes: AtomicUsize,
    heard: Mutex<Vec<(String, String, u16)>>,
    hold_first: Option<(usize, tokio::sync::Barrier)>,
    asked: AtomicUsize,
    /// Refreshes give this token instead of a new one (a provider that cannot refresh).
    stuck: bool,
}

impl CaeTokens {
    fn new() -> Self {
        Self {
            current: tokio::sync::Mutex::new(1),
            refreshes: AtomicUsize::new(0),
            heard: Mutex::new(Vec::new()),
            hold_first: None,
            asked: AtomicUsize::new(0),
            stuck: false,
        }
    }

    fn holding_first(n: usize) -> Self {
        Self {
            hold_first: Some((n, tokio::sync::Barrier::new(n))),
            ..Self::new()
        }
    }

    fn refreshes(&self) -> usize {
        self.refreshes.load(Ordering::SeqCst)
    }

    fn heard(&self) -> Vec<(String, String, u16)> {
        self.heard.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl TokenProvider for CaeTokens {
    async fn access_token(&self) -> Result<SecretString, TokenError> {
        if let Some((n, barrier)) = &self.hold_first
            && self.asked.fetch_add(1, Ordering::SeqCst) < *n
        {
            barrier.wait().await;
        }
        let current = self.current.lock().await;
        Ok(SecretString::from(format!("token-{current}")))
    }

    async fn rejected(&self, _token: &SecretString) {
        panic!("a claims challenge must not go through rejected");
    }

    async fn claims_challenge(
        &self,
        token: &SecretString,
        challenge: &ClaimsChallenge,
    ) -> Result<(), TokenError> {
        self.heard.lock().unwrap().push((
            token.expose_secret().to_owned(),
            challenge.claims().to_owned(),
            challenge.status(),
        ));
        // Check, take the lock, check again: only the first of many callers refreshes.
        let mut current = self.current.lock().await;
        if !self.stuck && format!("token-{current}") == token.expose_secret() {
            *current += 1;
            self.refreshes.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// `/v1.0/users` answers `token-1` with `challenge` and `token-2` with a page.
async fn mount_challenge_for_token_1(server: &MockServer, challenge: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .and(header("authorization", "Bearer token-1"))
        .respond_with(challenge)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .and(header("authorization", "Bearer token-2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(users_page()))
        .mount(server)
        .await;
}

#[tokio::test]
async fn documented_challenge_is_answered_and_retried_once_with_the_new_token() {
    let server = MockServer::start().await;
    mount_challenge_for_token_1(&server, challenge_response(401)).await;
    let tokens = Arc::new(CaeTokens::new());
    let client = builder(&server, tokens.clone()).build().unwrap();

    let page = client.users().list().send().await.unwrap();

    assert_eq!(page.items()[0].display_name.as_deref(), Some("Adele Vance"));
    assert_eq!(
        sent_tokens(&server).await,
        ["Bearer token-1", "Bearer token-2"]
    );
    assert_eq!(
        tokens.heard(),
        [("token-1".to_owned(), CLAIMS.to_owned(), 401)]
    );
    assert_eq!(tokens.refreshes(), 1);
}

#[tokio::test]
async fn forbidden_with_insufficient_claims_is_a_challenge_too() {
    let server = MockServer::start().await;
    mount_challenge_for_token_1(&server, challenge_response(403)).await;
    let tokens = Arc::new(CaeTokens::new());
    let client = builder(&server, tokens.clone()).build().unwrap();

    client.users().list().send().await.unwrap();

    assert_eq!(
        sent_tokens(&server).await,
        ["Bearer token-1", "Bearer token-2"]
    );
    assert_eq!(
        tokens.heard(),
        [("token-1".to_owned(), CLAIMS.to_owned(), 403)]
    );
}

#[tokio::test]
async fn challenge_in_a_second_header_after_another_scheme_is_found() {
    let server = MockServer::start().await;
    let template = ResponseTemplate::new(401)
        .append_header("WWW-Authenticate", r#"PoP nonce="n1""#)
        .append_header(
            "WWW-Authenticate",
            r#"bearer claims="eyJhY2Nlc3NfdG9rZW4iOnsibmJmIjp7ImVzc2VudGlhbCI6dHJ1ZSwgInZhbHVlIjoiMTYwNDEwNjY1MSJ9fX0", error=insufficient_claims"#,
        )
        .set_body_json(cae_body());
    mount_challenge_for_token_1(&server, template).await;
    let tokens = Arc::new(CaeTokens::new());
    let client = builder(&server, tokens.clone()).build().unwrap();

    client.users().list().send().await.unwrap();

    assert_eq!(tokens.heard()[0].1, CLAIMS);
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn second_challenge_is_the_typed_error_after_exactly_two_requests() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .respond_with(challenge_response(401))
        .mount(&server)
        .await;
    let tokens = Arc::new(CaeTokens::new());
    let client = builder(&server, tokens.clone()).build().unwrap();

    let err = client.users().list().send().await.unwrap_err();

    assert!(matches!(err, GraphError::ClaimsChallenge { .. }), "{err:?}");
    assert!(err.requires_reauthorization());
    assert_eq!(err.action(), ErrorAction::Reconnect);
    assert!(!err.is_retryable());
    let challenge = err.claims_challenge().unwrap();
    assert_eq!(challenge.claims(), CLAIMS);
    assert_eq!(challenge.error(), "insufficient_claims");
    assert_eq!(
        challenge.authorization_uri(),
        Some("https://login.microsoftonline.com/common/oauth2/authorize")
    );
    assert_eq!(err.status(), Some(401));
    assert_eq!(err.code(), Some("InvalidAuthenticationToken"));
    assert_eq!(err.request_id(), Some("req-cae"));
    assert_eq!(
        sent_tokens(&server).await,
        ["Bearer token-1", "Bearer token-2"]
    );
    assert_eq!(tokens.refreshes(), 1, "the provider heard only the first");
    // The claims may show; the tokens never do.
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(
            !text.contains("token-1") && !text.contains("token-2"),
            "{text}"
        );
    }
    assert!(format!("{err:?}").contains("1604106651"));
}

#[tokio::test]
async fn the_challenged_token_is_never_sent_again() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .respond_with(challenge_response(401))
        .mount(&server)
        .await;
    // A StaticToken cannot refresh and does not override claims_challenge: it gives the
    // challenged token back, so the request fails without resending it.
    let client = builder(&server, Arc::new(StaticToken::new("static-secret")))
        .build()
        .unwrap();

    let err = client.users().list().send().await.unwrap_err();

    assert!(matches!(err, GraphError::ClaimsChallenge { .. }), "{err:?}");
    assert_eq!(err.claims_challenge().unwrap().claims(), CLAIMS);
    assert_eq!(sent_tokens(&server).await, ["Bearer static-secret"]);
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains("static-secret"), "{text}");
    }

    // The same for a CAE provider that cannot get a different token.
    let tokens = Arc::new(CaeTokens {
        stuck: true,
        ..CaeTokens::new()
    });
    let client = builder(&server, tokens.clone()).build().unwrap();
    let err = client.users().list().send().await.unwrap_err();
    assert!(err.claims_challenge().is_some(), "{err:?}");
    assert_eq!(tokens.heard().len(), 1);
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn provider_without_claims_support_drops_the_token_through_rejected() {
    let server = MockServer::start().await;
    mount_challenge_for_token_1(&server, challenge_response(401)).await;
    // CountingTokens implements only access_token and rejected.
    let tokens = Arc::new(CountingTokens::default());
    let client = builder(&server, tokens.clone()).build().unwrap();

    client.users().list().send().await.unwrap();

    assert_eq!(CountingTokens::rejected(&tokens), ["token-1"]);
    assert_eq!(
        sent_tokens(&server).await,
        ["Bearer token-1", "Bearer token-2"]
    );
}

/// A provider whose refresh with the claims fails as Entra's `interaction_required` does.
struct RevokedTokens {
    fail_in: &'static str,
    challenged: AtomicUsize,
}

#[async_trait::async_trait]
impl TokenProvider for RevokedTokens {
    async fn access_token(&self) -> Result<SecretString, TokenError> {
        if self.fail_in == "access_token" && self.challenged.load(Ordering::SeqCst) > 0 {
            return Err(TokenError::reauthorization_required(
                "interaction_required: the session was revoked",
            ));
        }
        Ok(SecretString::from("token-1".to_owned()))
    }

    async fn rejected(&self, _token: &SecretString) {}

    async fn claims_challenge(
        &self,
        _token: &SecretString,
        _challenge: &ClaimsChallenge,
    ) -> Result<(), TokenError> {
        self.challenged.fetch_add(1, Ordering::SeqCst);
        if self.fail_in == "claims_challenge" {
            return Err(TokenError::reauthorization_required(
                "interaction_required: the session was revoked",
            ));
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_provider_failing_on_the_challenge_is_a_token_error_keeping_the_claims() {
    for fail_in in ["claims_challenge", "access_token"] {
        let server = MockServer::start().await;
        mount_challenge_for_token_1(&server, challenge_response(401)).await;
        let tokens = Arc::new(RevokedTokens {
            fail_in,
            challenged: AtomicUsize::new(0),
        });
        let client = builder(&server, tokens.clone()).build().unwrap();

        let err = client.users().list().send().await.unwrap_err();

        assert!(matches!(err, GraphError::Token(_)), "{fail_in}: {err:?}");
        assert!(err.requires_reauthorization(), "{fail_in}");
        assert_eq!(err.action(), ErrorAction::Reconnect);
        assert_eq!(
            err.claims_challenge().map(ClaimsChallenge::claims),
            Some(CLAIMS),
            "{fail_in}: the reconnect needs the claims"
        );
        assert_eq!(tokens.challenged.load(Ordering::SeqCst), 1);
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn hundred_concurrent_calls_on_one_challenge_refresh_once() {
    const CALLS: usize = 100;
    let server = MockServer::start().await;
    mount_challenge_for_token_1(&server, challenge_response(401)).await;
    // All 100 calls get token-1 before any is sent, so all 100 are challenged.
    let tokens = Arc::new(CaeTokens::holding_first(CALLS));
    let client = builder(&server, tokens.clone()).build().unwrap();

    let results = futures::future::join_all((0..CALLS).map(|_| client.users().list().send())).await;

    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(tokens.refreshes(), 1, "one refresh for 100 challenges");
    assert_eq!(tokens.heard().len(), CALLS);
    assert!(
        tokens
            .heard()
            .iter()
            .all(|(token, claims, _)| token == "token-1" && claims == CLAIMS)
    );
    let sent = sent_tokens(&server).await;
    assert_eq!(sent.len(), 2 * CALLS);
    assert_eq!(
        sent.iter().filter(|t| *t == "Bearer token-1").count(),
        CALLS
    );
    assert_eq!(
        sent.iter().filter(|t| *t == "Bearer token-2").count(),
        CALLS
    );
}

#[tokio::test]
async fn unauthorized_without_claims_keeps_the_rejected_path() {
    for www_authenticate in [
        // Graph's answer to a missing or bad token (MSAL.NET docs): no claims.
        r#"Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000""#,
        // insufficient_claims with claims that are not base64 JSON: no usable challenge.
        r#"Bearer error="insufficient_claims", claims="not base64!""#,
    ] {
        let server = MockServer::start().await;
        mount_challenge_for_token_1(
            &server,
            ResponseTemplate::new(401)
                .insert_header("WWW-Authenticate", www_authenticate)
                .set_body_json(common::graph_error(
                    "InvalidAuthenticationToken",
                    "Access token has expired or is not yet valid.",
                )),
        )
        .await;
        let tokens = Arc::new(CountingTokens::default());
        let client = builder(&server, tokens.clone()).build().unwrap();

        client.users().list().send().await.unwrap();

        assert_eq!(
            CountingTokens::rejected(&tokens),
            ["token-1"],
            "{www_authenticate}"
        );
        assert_eq!(
            sent_tokens(&server).await,
            ["Bearer token-1", "Bearer token-2"]
        );
    }
}

#[tokio::test]
async fn forbidden_without_a_challenge_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .respond_with(
            ResponseTemplate::new(403).set_body_json(common::graph_error(
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )),
        )
        .mount(&server)
        .await;
    let tokens = Arc::new(CaeTokens::new());
    let client = builder(&server, tokens.clone()).build().unwrap();

    let err = client.users().list().send().await.unwrap_err();

    assert!(matches!(err, GraphError::Service(_)), "{err:?}");
    assert!(err.claims_challenge().is_none());
    assert!(tokens.heard().is_empty());
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

/// The ids of a `$batch` request body.
fn batch_ids(request: &Request) -> Vec<String> {
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    body["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

fn ok_item(id: &str) -> Value {
    json!({"id": id, "status": 200, "headers": {"Content-Type": "application/json"},
           "body": {"id": format!("user-{id}"), "displayName": format!("User {id}")}})
}

fn challenged_item(id: &str, status: u16) -> Value {
    json!({"id": id, "status": status,
           "headers": {"Content-Type": "application/json", "WWW-Authenticate": CHALLENGE},
           "body": cae_body()})
}

#[tokio::test]
async fn batch_items_challenged_are_answered_once_and_sent_again_with_the_new_token() {
    let server = MockServer::start().await;
    // token-1: item 0 succeeds, items 1 and 2 are challenged (401 and 403).
    Mock::given(method("POST"))
        .and(path("/v1.0/$batch"))
        .and(header("authorization", "Bearer token-1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"responses": [
                challenged_item("2", 403), ok_item("0"), challenged_item("1", 401),
            ]})),
        )
        .mount(&server)
        .await;
    // token-2: every item sent succeeds.
    Mock::given(method("POST"))
        .and(path("/v1.0/$batch"))
        .and(header("authorization", "Bearer token-2"))
        .respond_with(|request: &Request| {
            let responses: Vec<Value> = batch_ids(request).iter().map(|id| ok_item(id)).collect();
            ResponseTemplate::new(200).set_body_json(json!({"responses": responses}))
        })
        .mount(&server)
        .await;
    let tokens = Arc::new(CaeTokens::new());
    let client = builder(&server, tokens.clone()).build().unwrap();
    let items = ["a", "b", "c"]
        .iter()
        .map(|id| BatchItem::get(format!("/users/{id}")))
        .collect();

    let results = client.batch::<User>(items).await.unwrap();

    let names: Vec<_> = results
        .iter()
        .map(|r| r.as_ref().unwrap().display_name.clone().unwrap())
        .collect();
    assert_eq!(names, ["User 0", "User 1", "User 2"]);
    assert_eq!(
        tokens.heard(),
        [("token-1".to_owned(), CLAIMS.to_owned(), 403)],
        "one challenge heard for the batch"
    );
    let requests = server.received_requests().await.unwrap();
    assert_eq!(
        sent_tokens(&server).await,
        ["Bearer token-1", "Bearer token-2"]
    );
    assert_eq!(batch_ids(&requests[0]), ["0", "1", "2"]);
    let mut again = batch_ids(&requests[1]);
    again.sort();
    assert_eq!(
        again,
        ["1", "2"],
        "only the challenged items are sent again"
    );
}

#[tokio::test]
async fn batch_item_challenged_again_gets_the_typed_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1.0/$batch"))
        .respond_with(|request: &Request| {
            let responses: Vec<Value> = batch_ids(request)
                .iter()
                .map(|id| {
                    if id == "1" {
                        challenged_item(id, 401)
                    } else {
                        ok_item(id)
                    }
                })
                .collect();
            ResponseTemplate::new(200).set_body_json(json!({"responses": responses}))
        })
        .mount(&server)
        .await;
    let tokens = Arc::new(CaeTokens::new());
    let client = builder(&server, tokens.clone()).build().unwrap();
    let items = vec![BatchItem::get("/users/a"), BatchItem::get("/users/b")];

    let results = client.batch::<User>(items).await.unwrap();

    assert!(results[0].is_ok());
    let err = results[1].as_ref().unwrap_err();
    assert!(matches!(err, GraphError::ClaimsChallenge { .. }), "{err:?}");
    assert!(err.requires_reauthorization());
    assert_eq!(err.claims_challenge().unwrap().claims(), CLAIMS);
    assert_eq!(err.service_error().unwrap().path, "/v1.0/users/b");
    assert_eq!(tokens.refreshes(), 1);
    assert_eq!(
        sent_tokens(&server).await,
        ["Bearer token-1", "Bearer token-2"]
    );
}

#[tokio::test]
async fn batch_never_resends_the_challenged_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1.0/$batch"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"responses": [
                challenged_item("0", 401),
            ]})),
        )
        .mount(&server)
        .await;
    let client = builder(&server, Arc::new(StaticToken::new("static-secret")))
        .build()
        .unwrap();

    let err = client
        .batch::<User>(vec![BatchItem::get("/users/a")])
        .await
        .unwrap_err();

    assert!(matches!(err, GraphError::ClaimsChallenge { .. }), "{err:?}");
    assert_eq!(err.claims_challenge().unwrap().claims(), CLAIMS);
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}
