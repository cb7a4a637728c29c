//! Throttling, transient faults, the shared throttle gate and the 401 refresh (spec 10, 11),
//! on paused tokio time.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{builder, client, graph_error};
use graph_client::{GraphError, RetryPolicy};
use serde_json::json;
use tokio::time::Instant;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn users_page() -> serde_json::Value {
    json!({"value": [{"id": "u1", "displayName": "Adele Vance"}]})
}

async fn mount_ok(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .respond_with(ResponseTemplate::new(200).set_body_json(users_page()))
        .mount(server)
        .await;
}

#[tokio::test(start_paused = true)]
async fn retry_after_fraction_is_waited_to_the_millisecond() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "0.4991")
                .set_body_json(common::fixture("error-throttled-429.json")),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_ok(&server).await;
    let (client, _) = client(&server);

    let start = Instant::now();
    let page = client.users().list().send().await.unwrap();

    assert_eq!(page.items().len(), 1);
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(500),
        "0.4991 s is waited as 500 ms: never earlier, never a whole second later"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn retry_after_http_date_is_waited_until_that_date() {
    let server = MockServer::start().await;
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let date = httpdate::fmt_http_date(now + Duration::from_secs(7));
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", date.as_str()))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_ok(&server).await;
    let tokens = Arc::new(common::CountingTokens::default());
    let client = builder(&server, tokens).clock(move || now).build().unwrap();

    let start = Instant::now();
    client.users().list().send().await.unwrap();

    assert_eq!(start.elapsed(), Duration::from_secs(7));
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn service_unavailable_without_retry_after_backs_off_with_jitter() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_ok(&server).await;
    let tokens = Arc::new(common::CountingTokens::default());
    let policy = RetryPolicy::new()
        .initial_backoff(Duration::from_secs(2))
        .max_backoff(Duration::from_secs(60))
        .min_backoff(Duration::from_secs(1));
    let client = builder(&server, tokens.clone())
        .retry_policy(policy)
        .build()
        .unwrap();

    let start = Instant::now();
    let page = client.users().list().send().await.unwrap();

    assert_eq!(page.items().len(), 1);
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
    assert_eq!(tokens.calls(), 3, "one token per attempt: two retries");
    let waits = tokens.waits();
    assert_eq!(waits.len(), 2);
    // Jitter between the floor (1 s) and the ceiling: 2 s, then 4 s.
    assert!(
        (Duration::from_secs(1)..=Duration::from_secs(2)).contains(&waits[0]),
        "{waits:?}"
    );
    assert!(
        (Duration::from_secs(1)..=Duration::from_secs(4)).contains(&waits[1]),
        "{waits:?}"
    );
    assert_eq!(start.elapsed(), waits[0] + waits[1], "no other wait");
}

/// Answers `status` without `Retry-After` `times` times, then the users page.
async fn mount_failing(server: &MockServer, status: u16, times: u64) {
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .respond_with(ResponseTemplate::new(status))
        .up_to_n_times(times)
        .with_priority(1)
        .mount(server)
        .await;
    mount_ok(server).await;
}

#[tokio::test(start_paused = true)]
async fn without_retry_after_the_default_policy_waits_at_least_three_seconds() {
    // Kiota waits 3 s, 6 s, 12 s (+ jitter) without Retry-After (spec 10b); an earlier
    // version of this client retried a 429 after 69 ms and a 503 after 9 ms.
    for status in [429, 503, 504] {
        let server = MockServer::start().await;
        mount_failing(&server, status, 3).await;
        let tokens = Arc::new(common::CountingTokens::default());
        let client = builder(&server, tokens.clone()).build().unwrap();

        let start = Instant::now();
        let page = client.users().list().send().await.unwrap();

        assert_eq!(page.items().len(), 1);
        assert_eq!(
            server.received_requests().await.unwrap().len(),
            4,
            "{status}"
        );
        let waits = tokens.waits();
        assert_eq!(waits.len(), 3, "{status}: three retries");
        // Ceilings 1 s and 2 s are under the 3 s floor: exactly the floor. Then the
        // ceiling is 4 s: between the floor and it.
        assert_eq!(waits[..2], [Duration::from_secs(3); 2], "{status}");
        assert!(
            (Duration::from_secs(3)..=Duration::from_secs(4)).contains(&waits[2]),
            "{status}: {waits:?}"
        );
        assert_eq!(start.elapsed(), waits.iter().sum::<Duration>());
    }
}

#[tokio::test(start_paused = true)]
async fn the_floor_is_configurable_and_never_above_the_largest_backoff() {
    let cases = [
        // (policy, the exact waits of two retries)
        (
            RetryPolicy::new().min_backoff(Duration::from_secs(5)),
            [Duration::from_secs(5); 2],
        ),
        (
            // A policy for quick tests: the floor yields to the 200 ms largest backoff.
            RetryPolicy::new()
                .initial_backoff(Duration::from_millis(200))
                .max_backoff(Duration::from_millis(200)),
            [Duration::from_millis(200); 2],
        ),
        (
            RetryPolicy::new()
                .min_backoff(Duration::from_secs(7))
                .initial_backoff(Duration::from_secs(7))
                .max_backoff(Duration::from_secs(7)),
            [Duration::from_secs(7); 2],
        ),
    ];
    for (policy, expected) in cases {
        let server = MockServer::start().await;
        mount_failing(&server, 503, 2).await;
        let tokens = Arc::new(common::CountingTokens::default());
        let client = builder(&server, tokens.clone())
            .retry_policy(policy.clone())
            .build()
            .unwrap();

        client.users().list().send().await.unwrap();

        assert_eq!(tokens.waits(), expected, "{policy:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_waited_as_given_even_under_the_floor() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_ok(&server).await;
    let tokens = Arc::new(common::CountingTokens::default());
    let client = builder(&server, tokens.clone()).build().unwrap();

    client.users().list().send().await.unwrap();

    assert_eq!(tokens.waits(), [Duration::from_secs(1)]);
}

#[test]
fn policies_beyond_a_day_are_refused_by_the_builder() {
    let server_less = |policy: RetryPolicy| {
        graph_client::GraphClient::builder(graph_client::StaticToken::new("t"))
            .retry_policy(policy)
            .build()
    };
    for policy in [
        RetryPolicy::new().max_backoff(Duration::MAX),
        RetryPolicy::new().max_total_wait(Duration::MAX),
        RetryPolicy::new().min_backoff(Duration::MAX),
        RetryPolicy::new()
            .initial_backoff(Duration::MAX)
            .max_backoff(Duration::MAX),
        RetryPolicy::new().max_backoff(RetryPolicy::MAX_WAIT + Duration::from_millis(1)),
    ] {
        match server_less(policy.clone()) {
            Err(GraphError::Configuration { reason }) => {
                assert!(reason.contains("one day"), "{reason}");
            }
            other => panic!("{policy:?}: {other:?}"),
        }
    }
    let longest = RetryPolicy::new()
        .max_backoff(RetryPolicy::MAX_WAIT)
        .max_total_wait(RetryPolicy::MAX_WAIT)
        .min_backoff(RetryPolicy::MAX_WAIT);
    assert!(server_less(longest).is_ok());
}

#[tokio::test(start_paused = true)]
async fn the_longest_policy_allowed_waits_without_overflowing_the_clock() {
    // With every setting at the one-day cap, a batch item answered 503 again and again
    // (no Retry-After) waits a day per retry until the total wait is spent; nothing
    // overflows `Instant + Duration`.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1.0/$batch"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "responses": [{"id": "0", "status": 503, "body": {"error": {"code": "serviceNotAvailable"}}}]
        })))
        .mount(&server)
        .await;
    let tokens = Arc::new(common::CountingTokens::default());
    let day = RetryPolicy::MAX_WAIT;
    let client = builder(&server, tokens.clone())
        .retry_policy(
            RetryPolicy::new()
                .max_retries(20)
                .initial_backoff(day)
                .max_backoff(day)
                .min_backoff(day)
                .max_total_wait(day),
        )
        .build()
        .unwrap();

    let start = Instant::now();
    let results = client
        .batch::<serde_json::Value>(vec![graph_client::BatchItem::get("/users")])
        .await
        .unwrap();

    assert_eq!(results[0].as_ref().unwrap_err().status(), Some(503));
    assert_eq!(tokens.waits(), [day], "one day, then the budget is spent");
    assert_eq!(start.elapsed(), day);
}

#[tokio::test(start_paused = true)]
async fn retries_exhausted_returns_the_throttling_error_with_its_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "2")
                .set_body_json(common::fixture("error-throttled-429.json")),
        )
        .mount(&server)
        .await;
    let tokens = Arc::new(common::CountingTokens::default());
    let client = builder(&server, tokens)
        .retry_policy(RetryPolicy::new().max_retries(3))
        .build()
        .unwrap();

    let start = Instant::now();
    let err = client.users().list().send().await.unwrap_err();

    assert_eq!(
        start.elapsed(),
        Duration::from_secs(6),
        "three waits of 2 s"
    );
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        4,
        "first attempt + 3 retries"
    );
    assert!(err.is_retryable());
    assert_eq!(err.status(), Some(429));
    assert_eq!(err.code(), Some("TooManyRequests"));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
    assert_eq!(
        err.request_id(),
        Some("94fb3b52-452a-4535-a601-69e0a90e3aa2")
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_beyond_the_total_wait_cap_is_not_waited() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "600"))
        .mount(&server)
        .await;
    let (client, _) = client(&server);

    let start = Instant::now();
    let err = client.users().list().send().await.unwrap_err();

    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(600)));
}

#[tokio::test(start_paused = true)]
async fn one_throttled_request_pauses_its_concurrent_siblings() {
    // A throttled request, and siblings started while it waits for its Retry-After.
    let server2 = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users/slow"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "3"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server2)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users/slow"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "slow"})))
        .mount(&server2)
        .await;
    for id in ["s1", "s2", "s3"] {
        Mock::given(method("GET"))
            .and(path(format!("/v1.0/users/{id}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": id})))
            .mount(&server2)
            .await;
    }
    let (client2, _) = common::client(&server2);
    let start = Instant::now();
    let first = tokio::spawn({
        let c = client2.clone();
        async move { c.users().get("slow").send().await.map(|_| Instant::now()) }
    });
    // Wait until the 429 has closed the gate, then start three siblings at once.
    assert_eq!(client2.throttled_until(), None);
    while client2.throttled_until().is_none() {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        client2.throttled_until(),
        Some(start + Duration::from_secs(3))
    );
    let siblings: Vec<_> = ["s1", "s2", "s3"]
        .into_iter()
        .map(|id| {
            let c = client2.clone();
            tokio::spawn(async move { c.users().get(id).send().await.map(|_| Instant::now()) })
        })
        .collect();
    let first_done = first.await.unwrap().unwrap();
    assert!(first_done >= start + Duration::from_secs(3));
    for sibling in siblings {
        let done = sibling.await.unwrap().unwrap();
        assert!(
            done >= start + Duration::from_secs(3),
            "a sibling went out during the pause"
        );
    }
    assert_eq!(
        server2.received_requests().await.unwrap().len(),
        5,
        "no sibling was itself throttled"
    );
}

#[tokio::test]
async fn rejected_token_is_reported_refreshed_and_retried_once() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .and(header("authorization", "Bearer token-1"))
        .respond_with(ResponseTemplate::new(401).set_body_json(graph_error(
            "InvalidAuthenticationToken",
            "Access token has expired or is not yet valid.",
        )))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .and(header("authorization", "Bearer token-2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(users_page()))
        .mount(&server)
        .await;
    let (client, tokens) = client(&server);

    let page = client.users().list().send().await.unwrap();

    assert_eq!(page.items().len(), 1);
    assert_eq!(tokens.rejected(), vec!["token-1".to_owned()]);
    assert_eq!(tokens.issued(), 2);
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn second_401_after_refresh_is_unauthorized() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .respond_with(ResponseTemplate::new(401).set_body_json(graph_error(
            "InvalidAuthenticationToken",
            "Access token is empty.",
        )))
        .mount(&server)
        .await;
    let (client, tokens) = client(&server);

    let err = client.users().list().send().await.unwrap_err();

    assert!(matches!(err, GraphError::Unauthorized(_)), "{err:?}");
    assert!(err.requires_reauthorization());
    assert_eq!(err.code(), Some("InvalidAuthenticationToken"));
    assert_eq!(tokens.rejected(), vec!["token-1".to_owned()]);
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        2,
        "exactly one retry"
    );
}

#[tokio::test]
async fn html_error_page_is_a_typed_unexpected_response() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .respond_with(
            ResponseTemplate::new(502)
                .insert_header("request-id", "proxy-req")
                .set_body_raw("<html><body>Bad Gateway</body></html>", "text/html"),
        )
        .mount(&server)
        .await;
    let (client, _) = client(&server);

    let err = client.users().list().send().await.unwrap_err();

    match &err {
        GraphError::UnexpectedResponse {
            status,
            content_type,
            path,
            request_id,
        } => {
            assert_eq!(*status, 502);
            assert_eq!(content_type.as_deref(), Some("text/html"));
            assert_eq!(path, "/v1.0/users");
            assert_eq!(request_id.as_deref(), Some("proxy-req"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.to_string().contains("Bad Gateway"));
}

#[tokio::test]
async fn graph_error_fields_are_kept() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("client-request-id", "from-header")
                .set_body_json(common::fixture("error-count-without-consistencylevel.json")),
        )
        .mount(&server)
        .await;
    let (client, _) = client(&server);

    let err = client.users().list().send().await.unwrap_err();

    let e = err.service_error().unwrap();
    assert_eq!(e.status, 400);
    assert_eq!(e.code.as_deref(), Some("Request_BadRequest"));
    assert_eq!(
        e.message.as_deref(),
        Some("$count is not currently supported.")
    );
    assert_eq!(
        e.request_id.as_deref(),
        Some("d9bbd4d8-bb2d-44e6-99a1-71a9516da744")
    );
    assert_eq!(
        e.client_request_id.as_deref(),
        Some("539da3bd-942f-25db-636b-27f6f6e8eae4")
    );
    assert_eq!(e.date.as_deref(), Some("2021-05-18T19:03:10"));
    assert!(!err.is_retryable());
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "a 400 is not retried"
    );
}

#[tokio::test(start_paused = true)]
async fn connection_failures_are_retried_then_reported() {
    // A port that was just free: nothing listens, so every attempt is refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let tokens = Arc::new(common::CountingTokens::default());
    let client = graph_client::GraphClient::builder(tokens.clone())
        .base_url(format!("http://127.0.0.1:{port}/v1.0"))
        .request_timeout(None)
        .pool_idle_timeout(None)
        .retry_policy(RetryPolicy::new().max_retries(2))
        .build()
        .unwrap();

    let start = Instant::now();
    let err = client.users().list().send().await.unwrap_err();

    assert!(matches!(err, GraphError::Connection { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(tokens.calls(), 3, "the first attempt and two retries");
    let waits = tokens.waits();
    // Full jitter under the default ceilings, 1 s then 2 s (no floor for a transport
    // failure: it is not Graph asking to slow down).
    assert_eq!(waits.len(), 2);
    assert!(waits[0] <= Duration::from_secs(1), "{waits:?}");
    assert!(waits[1] <= Duration::from_secs(2), "{waits:?}");
    assert_eq!(start.elapsed(), waits[0] + waits[1]);
    assert!(!format!("{err:?}").contains("token-1"));
    assert!(
        !err.to_string().contains(&port.to_string()),
        "no URL in the message: {err}"
    );
}

#[tokio::test]
async fn timed_out_attempts_are_retried_then_reported_as_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(users_page())
                .set_delay(Duration::from_millis(500)),
        )
        .mount(&server)
        .await;
    let tokens = Arc::new(common::CountingTokens::default());
    let client = graph_client::GraphClient::builder(tokens)
        .base_url(common::base(&server))
        .request_timeout(Some(Duration::from_millis(50)))
        .retry_policy(
            RetryPolicy::new()
                .max_retries(2)
                .initial_backoff(Duration::from_millis(1)),
        )
        .build()
        .unwrap();

    let err = client.users().list().send().await.unwrap_err();

    assert!(
        matches!(&err, GraphError::Timeout { path } if path == "/v1.0/users"),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        3,
        "first attempt + 2 retries"
    );
}

struct FailingTokens(bool);

#[async_trait::async_trait]
impl graph_client::TokenProvider for FailingTokens {
    async fn access_token(
        &self,
    ) -> Result<graph_client::secrecy::SecretString, graph_client::TokenError> {
        Err(if self.0 {
            graph_client::TokenError::reauthorization_required("refresh token revoked")
        } else {
            graph_client::TokenError::new("token endpoint unreachable")
        })
    }

    async fn rejected(&self, _token: &graph_client::secrecy::SecretString) {}
}

#[tokio::test]
async fn token_provider_failure_is_reported_without_any_request() {
    let server = MockServer::start().await;
    for revoked in [true, false] {
        let client = builder(&server, Arc::new(FailingTokens(revoked)))
            .build()
            .unwrap();
        let err = client.users().list().send().await.unwrap_err();
        assert!(matches!(err, GraphError::Token(_)), "{err:?}");
        assert_eq!(err.requires_reauthorization(), revoked);
        assert_eq!(err.is_retryable(), !revoked);
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
}

#[tokio::test]
async fn every_attempt_sends_a_fresh_client_request_id() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "0"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_ok(&server).await;
    let (client, _) = client(&server);

    client.users().list().send().await.unwrap();

    let requests = server.received_requests().await.unwrap();
    let ids: Vec<&str> = requests
        .iter()
        .map(|r| {
            r.headers
                .get("client-request-id")
                .unwrap()
                .to_str()
                .unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    assert_eq!(ids[0].len(), 36);
}

#[tokio::test(start_paused = true)]
async fn request_giving_up_on_a_long_retry_after_still_pauses_its_siblings() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users/throttled"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "600"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users/sibling"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "sibling"})))
        .mount(&server)
        .await;
    let (client, _) = client(&server);

    let start = Instant::now();
    let err = client.users().get("throttled").send().await.unwrap_err();
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "600 s is beyond the budget"
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(600)));
    // The gate stays closed for the rest of the budget (180 s by default), not 600 s.
    assert_eq!(
        client.throttled_until(),
        Some(start + Duration::from_secs(180))
    );

    let sibling = client.users().get("sibling").send().await.unwrap();
    assert_eq!(
        sibling.id.as_ref().map(graph_client::ObjectId::as_str),
        Some("sibling")
    );
    assert_eq!(start.elapsed(), Duration::from_secs(180));
    let requests = server.received_requests().await.unwrap();
    let paths: Vec<&str> = requests.iter().map(|r| r.url.path()).collect();
    assert_eq!(paths, ["/v1.0/users/throttled", "/v1.0/users/sibling"]);
}

/// Gives one fixed access token.
struct FixedToken(&'static str);

#[async_trait::async_trait]
impl graph_client::TokenProvider for FixedToken {
    async fn access_token(
        &self,
    ) -> Result<graph_client::secrecy::SecretString, graph_client::TokenError> {
        Ok(graph_client::secrecy::SecretString::from(self.0))
    }

    async fn rejected(&self, _token: &graph_client::secrecy::SecretString) {}
}

#[tokio::test(start_paused = true)]
async fn a_client_derived_for_another_tenant_has_its_own_tokens_and_throttle_gate() {
    let server = MockServer::start().await;
    // Tenant A is throttled for 600 s (beyond the budget: the gate stays closed).
    Mock::given(method("GET"))
        .and(path("/v1.0/users/a"))
        .and(header("authorization", "Bearer token-of-a"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "600"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users/b"))
        .and(header("authorization", "Bearer token-of-b"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "b"})))
        .expect(1)
        .mount(&server)
        .await;
    let tenant_a = builder(&server, Arc::new(FixedToken("token-of-a")))
        .build()
        .unwrap();
    let tenant_b = tenant_a.with_tokens(FixedToken("token-of-b"));
    assert_eq!(tenant_b.base_url(), tenant_a.base_url());

    let throttled = tenant_a.users().get("a").send().await.unwrap_err();
    assert_eq!(throttled.retry_after(), Some(Duration::from_secs(600)));
    assert!(tenant_a.throttled_until().is_some(), "A's gate is closed");
    assert_eq!(tenant_b.throttled_until(), None, "B's gate is its own");

    let start = Instant::now();
    let user = tenant_b.users().get("b").send().await.unwrap();
    assert_eq!(
        user.id.as_ref().map(graph_client::ObjectId::as_str),
        Some("b")
    );
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "B is not held by A's Retry-After"
    );
}
