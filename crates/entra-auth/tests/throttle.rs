//! Token-endpoint etiquette on paused time (spec §4c): `Retry-After`, 429 and 5xx hold
//! identical requests back without sending them; identical HTTP 400s are answered from
//! memory for 60 s; per client, shared by its clones.

mod common;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use common::{FixedClock, TENANT, builder, form, freeze_time, tenant, token_body};
use entra_auth::secrecy::{ExposeSecret as _, SecretString};
use entra_auth::{AuthError, CertificateCredential, ClientCredential, EntraClient};
use serde_json::json;
use time::macros::datetime;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn token_path() -> String {
    format!("/{TENANT}/oauth2/v2.0/token")
}

fn ok(access: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(token_body(access, Some("RT-NEXT"), None, "x"))
}

fn unavailable(status: u16) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": "temporarily_unavailable",
        "error_description": "AADSTS90033: A transient error has occurred. Please try again.",
        "error_codes": [90033],
        "trace_id": "trace-90033",
        "correlation_id": "corr-90033",
    }))
}

fn invalid_grant() -> ResponseTemplate {
    ResponseTemplate::new(400).set_body_json(json!({
        "error": "invalid_grant",
        "error_description": "AADSTS70008: The refresh token has expired due to inactivity.",
        "error_codes": [70008],
        "suberror": "bad_token",
        "trace_id": "trace-70008",
        "correlation_id": "corr-70008",
    }))
}

/// Answers refreshes of `refresh_token` with `first` once, then with 200.
async fn answer_once(server: &MockServer, refresh_token: &str, first: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(token_path()))
        .and(body_string_contains(format!(
            "refresh_token={refresh_token}"
        )))
        .respond_with(first)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(ok("AT-OK"))
        .with_priority(2)
        .mount(server)
        .await;
}

/// The refresh tokens of the requests Entra received, in order.
async fn sent(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|request| form(&request.body)["refresh_token"].clone())
        .collect()
}

async fn refresh(client: &EntraClient, refresh_token: &str) -> Result<String, AuthError> {
    client
        .refresh(&tenant(), &SecretString::from(refresh_token))
        .await
        .map(|refreshed| refreshed.access_token().secret().expose_secret().to_owned())
}

fn held_for(error: &AuthError) -> Duration {
    match error {
        AuthError::Throttled { retry_after } => *retry_after,
        other => panic!("expected Throttled, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_of_a_429_holds_identical_requests_until_it_passes() {
    let _frozen = freeze_time();
    let server = MockServer::start().await;
    answer_once(
        &server,
        "RT-A",
        unavailable(429).insert_header("Retry-After", "30"),
    )
    .await;
    let client = builder(&server).build().unwrap();

    let first = refresh(&client, "RT-A").await.unwrap_err();
    assert!(first.is_retryable(), "{first:?}");
    assert_eq!(first.retry_after(), Some(Duration::from_secs(30)));
    assert_eq!(first.status(), Some(429));

    // Identical request: not sent, fails fast with the time left.
    let held = refresh(&client, "RT-A").await.unwrap_err();
    assert_eq!(held_for(&held), Duration::from_secs(30));
    assert!(held.is_retryable());
    assert_eq!(held.retry_after(), Some(Duration::from_secs(30)));
    assert!(!held.to_string().contains("RT-A"), "{held}");
    assert_eq!(sent(&server).await, ["RT-A"]);

    tokio::time::advance(Duration::from_secs(10)).await;
    // A clone shares the memory.
    let held = refresh(&client.clone(), "RT-A").await.unwrap_err();
    assert_eq!(held_for(&held), Duration::from_secs(20));
    // Another refresh token is another request: it goes.
    assert_eq!(refresh(&client, "RT-B").await.unwrap(), "AT-OK");
    assert_eq!(sent(&server).await, ["RT-A", "RT-B"]);
    // Another client has its own memory.
    assert_eq!(
        refresh(&builder(&server).build().unwrap(), "RT-A")
            .await
            .unwrap(),
        "AT-OK"
    );
    assert_eq!(sent(&server).await, ["RT-A", "RT-B", "RT-A"]);

    tokio::time::advance(Duration::from_secs(20)).await;
    assert_eq!(refresh(&client, "RT-A").await.unwrap(), "AT-OK");
    assert_eq!(sent(&server).await, ["RT-A", "RT-B", "RT-A", "RT-A"]);
}

#[tokio::test(start_paused = true)]
async fn retry_after_as_an_http_date_holds_until_that_date() {
    let _frozen = freeze_time();
    let now = datetime!(2026-03-02 10:00:00 UTC);
    let date = httpdate::fmt_http_date(
        UNIX_EPOCH + Duration::from_secs(now.unix_timestamp().unsigned_abs() + 20),
    );
    assert_eq!(date, "Mon, 02 Mar 2026 10:00:20 GMT");
    let server = MockServer::start().await;
    answer_once(
        &server,
        "RT-A",
        unavailable(503).insert_header("Retry-After", date.as_str()),
    )
    .await;
    let client = builder(&server)
        .clock(Arc::new(FixedClock(now)))
        .build()
        .unwrap();

    let first = refresh(&client, "RT-A").await.unwrap_err();
    assert_eq!(first.retry_after(), Some(Duration::from_secs(20)));
    let held = refresh(&client, "RT-A").await.unwrap_err();
    assert_eq!(held_for(&held), Duration::from_secs(20));
    tokio::time::advance(Duration::from_secs(20)).await;
    assert_eq!(refresh(&client, "RT-A").await.unwrap(), "AT-OK");
    assert_eq!(sent(&server).await, ["RT-A", "RT-A"]);
}

#[tokio::test(start_paused = true)]
async fn a_503_without_retry_after_holds_identical_requests_for_five_seconds() {
    let _frozen = freeze_time();
    let server = MockServer::start().await;
    answer_once(&server, "RT-A", unavailable(503)).await;
    let client = builder(&server).build().unwrap();

    let first = refresh(&client, "RT-A").await.unwrap_err();
    assert!(first.is_retryable());
    assert_eq!(first.retry_after(), None, "Entra said nothing");
    let held = refresh(&client, "RT-A").await.unwrap_err();
    assert_eq!(held_for(&held), Duration::from_secs(5));
    tokio::time::advance(Duration::from_secs(4)).await;
    let held = refresh(&client, "RT-A").await.unwrap_err();
    assert_eq!(held_for(&held), Duration::from_secs(1));
    assert_eq!(sent(&server).await, ["RT-A"]);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(refresh(&client, "RT-A").await.unwrap(), "AT-OK");
    assert_eq!(sent(&server).await, ["RT-A", "RT-A"]);
}

#[tokio::test(start_paused = true)]
async fn an_html_502_from_a_proxy_also_holds_identical_requests() {
    let _frozen = freeze_time();
    let server = MockServer::start().await;
    answer_once(
        &server,
        "RT-A",
        ResponseTemplate::new(502).set_body_raw("<html>Bad Gateway</html>", "text/html"),
    )
    .await;
    let client = builder(&server).build().unwrap();
    let first = refresh(&client, "RT-A").await.unwrap_err();
    assert!(
        matches!(first, AuthError::UnexpectedResponse { status: 502, .. }),
        "{first:?}"
    );
    let held = refresh(&client, "RT-A").await.unwrap_err();
    assert_eq!(held_for(&held), Duration::from_secs(5));
    assert_eq!(sent(&server).await, ["RT-A"]);
}

#[tokio::test(start_paused = true)]
async fn identical_400_is_answered_from_memory_for_sixty_seconds() {
    let _frozen = freeze_time();
    let server = MockServer::start().await;
    answer_once(&server, "RT-A", invalid_grant()).await;
    let client = builder(&server).build().unwrap();

    let first = refresh(&client, "RT-A").await.unwrap_err();
    assert!(first.requires_reauthorization(), "{first:?}");
    for seconds in [0, 30, 29] {
        tokio::time::advance(Duration::from_secs(seconds)).await;
        let again = refresh(&client, "RT-A").await.unwrap_err();
        // The same error, field for field.
        assert!(again.requires_reauthorization());
        assert_eq!(again.entra_error(), first.entra_error());
        assert_eq!(again.status(), Some(400));
        assert_eq!(again.to_string(), first.to_string());
        assert_eq!(again.entra_error().unwrap().trace_id(), Some("trace-70008"));
    }
    assert_eq!(sent(&server).await, ["RT-A"]);
    // Not identical: another refresh token, or the same one answering a claims challenge.
    assert_eq!(refresh(&client, "RT-B").await.unwrap(), "AT-OK");
    client
        .refresh_with_claims(
            &tenant(),
            &SecretString::from("RT-A"),
            r#"{"access_token":{"nbf":{"essential":true,"value":"1"}}}"#,
        )
        .await
        .unwrap();
    assert_eq!(sent(&server).await, ["RT-A", "RT-B", "RT-A"]);

    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(refresh(&client, "RT-A").await.unwrap(), "AT-OK");
    assert_eq!(sent(&server).await, ["RT-A", "RT-B", "RT-A", "RT-A"]);
}

#[tokio::test(start_paused = true)]
async fn the_per_call_client_assertion_does_not_make_a_request_different() {
    let _frozen = freeze_time();
    let key = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .unwrap();
    let certificate = rcgen::CertificateParams::new(vec!["entra-auth-test".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let credential = CertificateCredential::from_pem(
        certificate.pem().as_bytes(),
        key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let server = MockServer::start().await;
    answer_once(&server, "RT-A", invalid_grant()).await;
    Mock::given(method("POST"))
        .and(path(token_path()))
        .and(body_string_contains("refresh_token=RT-Z"))
        .respond_with(unavailable(429).insert_header("Retry-After", "9"))
        .with_priority(1)
        .mount(&server)
        .await;
    let client = builder(&server)
        .credential(ClientCredential::Certificate(credential))
        .build()
        .unwrap();

    assert!(
        refresh(&client, "RT-A")
            .await
            .unwrap_err()
            .requires_reauthorization()
    );
    assert!(
        refresh(&client, "RT-A")
            .await
            .unwrap_err()
            .requires_reauthorization()
    );
    refresh(&client, "RT-Z").await.unwrap_err();
    let held = refresh(&client, "RT-Z").await.unwrap_err();
    assert_eq!(held_for(&held), Duration::from_secs(9));
    assert_eq!(sent(&server).await, ["RT-A", "RT-Z"]);
    // Each request that went carried its own, fresh assertion.
    let requests = server.received_requests().await.unwrap();
    let assertions: Vec<String> = requests
        .iter()
        .map(|request| form(&request.body)["client_assertion"].clone())
        .collect();
    assert_ne!(assertions[0], assertions[1]);
}

#[tokio::test(start_paused = true)]
async fn a_held_session_refresh_fails_fast_without_a_request() {
    let _frozen = freeze_time();
    let server = MockServer::start().await;
    answer_once(
        &server,
        "RT-A",
        unavailable(429).insert_header("Retry-After", "60"),
    )
    .await;
    let client = builder(&server).build().unwrap();
    let store = common::MemoryStore::with("RT-A", 1);
    let session = entra_auth::TokenSession::builder(client.clone(), tenant(), store)
        .build()
        .unwrap();
    let first = session.access_token().await.unwrap_err();
    assert!(first.is_retryable());
    for _ in 0..10 {
        let held = session.access_token().await.unwrap_err();
        assert!(held.is_retryable());
        assert!(held_for(&held) <= Duration::from_secs(60));
    }
    assert_eq!(sent(&server).await, ["RT-A"]);
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(
        session
            .access_token()
            .await
            .unwrap()
            .secret()
            .expose_secret(),
        "AT-OK"
    );
    assert_eq!(sent(&server).await, ["RT-A", "RT-A"]);
}
