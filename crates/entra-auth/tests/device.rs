//! Device code flow on paused tokio time: poll times, `slow_down`, declined, expired,
//! cancellation (spec §3).

mod common;

use std::time::Duration;

use common::{CLIENT_ID, GRAPH, TENANT, builder, claims, fixture, form, freeze_time, mint, settle};
use entra_auth::secrecy::ExposeSecret as _;
use entra_auth::{AuthError, Authority, EntraClient, Grant};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const DEVICE_PATH: &str = "/organizations/oauth2/v2.0/devicecode";
const TOKEN_PATH: &str = "/organizations/oauth2/v2.0/token";

fn device_code_body(interval: u64, expires_in: u64) -> Value {
    json!({
        "device_code": "DEVICE-CODE-SECRET",
        "user_code": "ABCD-EFGH",
        "verification_uri": "https://microsoft.com/devicelogin",
        "expires_in": expires_in,
        "interval": interval,
        "message": "To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code ABCD-EFGH to authenticate."
    })
}

fn polling_error(error: &str) -> ResponseTemplate {
    ResponseTemplate::new(400).set_body_json(json!({
        "error": error,
        "error_description": format!("AADSTS70016: {error}"),
        "error_codes": [70016],
        "trace_id": "t",
        "correlation_id": "c",
    }))
}

async fn start(server: &MockServer, interval: u64, expires_in: u64) -> EntraClient {
    Mock::given(method("POST"))
        .and(path(DEVICE_PATH))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(device_code_body(interval, expires_in)),
        )
        .expect(1)
        .mount(server)
        .await;
    builder(server).build().unwrap()
}

/// Token answers in order, each used once.
async fn script(server: &MockServer, answers: Vec<ResponseTemplate>) {
    for answer in answers {
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .respond_with(answer)
            .up_to_n_times(1)
            .expect(1)
            .mount(server)
            .await;
    }
}

fn success(server: &MockServer) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(common::token_body(
        "AT",
        Some("RT"),
        Some(&mint(&claims(server, None))),
        &format!("{GRAPH}/User.Read.All {GRAPH}/Group.Read.All"),
    ))
}

async fn token_requests(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|request| request.url.path() == TOKEN_PATH)
        .count()
}

/// Advances paused time one second at a time up to each expected poll, asserting that no
/// poll comes early and that the poll comes at its second; returns the paused seconds.
async fn expect_polls(server: &MockServer, expected: &[u64]) -> u64 {
    let mut now = 0;
    for (done, due) in expected.iter().enumerate() {
        while now + 1 < *due {
            tokio::time::advance(Duration::from_secs(1)).await;
            now += 1;
            brief_real_pause().await;
            assert_eq!(
                token_requests(server).await,
                done,
                "poll before {due} s, at {now} s"
            );
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        now += 1;
        wait_for_requests(server, done + 1).await;
    }
    now
}

/// Advances until the task finishes (no more polls may come); returns the paused seconds.
async fn until_finished(
    server: &MockServer,
    task: &JoinHandle<Result<Grant, AuthError>>,
    mut now: u64,
    polls: usize,
) -> u64 {
    for _ in 0..60 {
        brief_real_pause().await;
        if task.is_finished() {
            break;
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        now += 1;
    }
    assert!(task.is_finished());
    assert_eq!(token_requests(server).await, polls);
    now
}

async fn brief_real_pause() {
    tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(3)))
        .await
        .unwrap();
}

/// Waits (real time, paused clock frozen) until the server has seen `count` polls.
async fn wait_for_requests(server: &MockServer, count: usize) {
    for _ in 0..2000 {
        if token_requests(server).await >= count {
            return;
        }
        brief_real_pause().await;
    }
    panic!("poll {count} never arrived");
}

fn spawn_poll(
    client: &EntraClient,
    device: entra_auth::DeviceAuthorization,
) -> JoinHandle<Result<Grant, AuthError>> {
    let client = client.clone();
    tokio::spawn(async move { client.poll_device_code(&device).await })
}

#[tokio::test(start_paused = true)]
async fn device_flow_polls_at_the_interval_slows_down_by_five_seconds_and_returns_the_grant() {
    let _frozen = freeze_time();
    let server = common::entra().await;
    let client = start(&server, 5, 900).await;
    script(
        &server,
        vec![
            polling_error("authorization_pending"),
            polling_error("slow_down"),
            polling_error("authorization_pending"),
            success(&server),
        ],
    )
    .await;
    let device = client
        .start_device_code(&Authority::organizations())
        .await
        .unwrap();
    assert_eq!(device.user_code(), "ABCD-EFGH");
    assert_eq!(
        device.verification_uri(),
        "https://microsoft.com/devicelogin"
    );
    assert!(device.message().contains("ABCD-EFGH"));
    assert_eq!(device.interval(), Duration::from_secs(5));
    assert_eq!(device.expires_in(), Duration::from_secs(900));

    let task = spawn_poll(&client, device);
    // pending at 5 s; slow_down at 10 s makes the interval 10 s: pending at 20 s, then 30 s.
    let now = expect_polls(&server, &[5, 10, 20, 30]).await;
    assert_eq!(until_finished(&server, &task, now, 4).await, 30);
    let grant = task.await.unwrap().unwrap();
    assert_eq!(grant.tenant_id().as_str(), TENANT);
    assert_eq!(grant.refresh_token().expose_secret(), "RT");

    // The device code's start and its polls; the custom cloud's keys once, for the grant.
    assert_eq!(
        common::requests_to(&server, common::KEYS_PATH).await.len(),
        1
    );
    let requests = common::entra_requests(&server).await;
    assert_eq!(requests.len(), 5);
    let start_form = form(&requests[0].body);
    assert_eq!(requests[0].url.path(), DEVICE_PATH);
    assert_eq!(start_form["client_id"], CLIENT_ID);
    assert_eq!(
        start_form["scope"],
        format!("openid profile offline_access {GRAPH}/User.Read.All {GRAPH}/Group.Read.All")
    );
    for request in &requests[1..] {
        let poll = form(&request.body);
        assert_eq!(
            poll["grant_type"],
            "urn:ietf:params:oauth:grant-type:device_code"
        );
        assert_eq!(poll["client_id"], CLIENT_ID);
        assert_eq!(poll["device_code"], "DEVICE-CODE-SECRET");
        // Every poll declares cp1 (on by default, spec §7).
        assert_eq!(
            serde_json::from_str::<Value>(&poll["claims"]).unwrap(),
            json!({"access_token": {"xms_cc": {"values": ["cp1"]}}})
        );
        assert_eq!(poll.len(), 4);
    }
}

#[tokio::test(start_paused = true)]
async fn declined_device_sign_in_stops_polling() {
    let _frozen = freeze_time();
    let server = common::entra().await;
    let client = start(&server, 5, 900).await;
    script(
        &server,
        vec![
            polling_error("authorization_pending"),
            polling_error("authorization_declined"),
        ],
    )
    .await;
    let device = client
        .start_device_code(&Authority::organizations())
        .await
        .unwrap();
    let task = spawn_poll(&client, device);
    let now = expect_polls(&server, &[5, 10]).await;
    assert_eq!(until_finished(&server, &task, now, 2).await, 10);
    let error = task.await.unwrap().unwrap_err();
    assert!(
        matches!(&error, AuthError::DeviceCodeDeclined(entra) if entra.trace_id() == Some("t")),
        "{error:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn expired_and_bad_device_codes_stop_polling_with_their_own_errors() {
    for (answer, check) in [
        (
            "expired_token",
            (|e: &AuthError| matches!(e, AuthError::DeviceCodeExpired(Some(_))))
                as fn(&AuthError) -> bool,
        ),
        ("bad_verification_code", |e: &AuthError| {
            matches!(e, AuthError::BadVerificationCode(_))
        }),
    ] {
        let _frozen = freeze_time();
        let server = common::entra().await;
        let client = start(&server, 5, 900).await;
        script(&server, vec![polling_error(answer)]).await;
        let device = client
            .start_device_code(&Authority::organizations())
            .await
            .unwrap();
        let task = spawn_poll(&client, device);
        let now = expect_polls(&server, &[5]).await;
        assert_eq!(until_finished(&server, &task, now, 1).await, 5, "{answer}");
        let error = task.await.unwrap().unwrap_err();
        assert!(check(&error), "{answer}: {error:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn device_code_expires_locally_without_polling_past_its_lifetime() {
    let _frozen = freeze_time();
    let server = common::entra().await;
    let client = start(&server, 5, 12).await;
    script(
        &server,
        vec![
            polling_error("authorization_pending"),
            polling_error("authorization_pending"),
        ],
    )
    .await;
    let device = client
        .start_device_code(&Authority::organizations())
        .await
        .unwrap();
    let task = spawn_poll(&client, device);
    let started = tokio::time::Instant::now();
    let now = expect_polls(&server, &[5, 10]).await;
    assert_eq!(until_finished(&server, &task, now, 2).await, 12);
    let error = task.await.unwrap().unwrap_err();
    assert!(
        matches!(error, AuthError::DeviceCodeExpired(None)),
        "{error:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(12));
}

#[tokio::test(start_paused = true)]
async fn cancelled_polling_stops_and_sends_nothing_more() {
    let _frozen = freeze_time();
    let server = common::entra().await;
    let client = start(&server, 5, 900).await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(polling_error("authorization_pending"))
        .expect(1)
        .mount(&server)
        .await;
    let device = client
        .start_device_code(&Authority::organizations())
        .await
        .unwrap();
    let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .poll_device_code_until(&device, async {
                    let _ = cancelled.await;
                })
                .await
        }
    });
    expect_polls(&server, &[5]).await;
    tokio::time::advance(Duration::from_secs(2)).await;
    cancel.send(()).unwrap();
    let error = task.await.unwrap().unwrap_err();
    assert!(matches!(error, AuthError::Cancelled), "{error:?}");
    tokio::time::advance(Duration::from_secs(30)).await;
    settle(&server).await;
    assert_eq!(token_requests(&server).await, 1);
}

#[tokio::test]
async fn confidential_app_without_public_client_flows_is_a_configuration_error() {
    let server = common::entra().await;
    Mock::given(method("POST"))
        .and(path(DEVICE_PATH))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_client",
            "error_description": "AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            "error_codes": [7_000_218],
        })))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).build().unwrap();
    let error = client
        .start_device_code(&Authority::organizations())
        .await
        .unwrap_err();
    assert!(error.is_configuration(), "{error:?}");
}

/// The documented device-code success answer (fixture) has a space-separated scope.
#[tokio::test(start_paused = true)]
async fn documented_device_code_response_with_space_separated_scope_is_accepted() {
    let _frozen = freeze_time();
    let server = common::entra().await;
    Mock::given(method("POST"))
        .and(path(DEVICE_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(device_code_body(1, 900)))
        .mount(&server)
        .await;
    let mut body: Value = serde_json::from_str(&fixture("token-response-devicecode.json")).unwrap();
    body["id_token"] = json!(mint(&claims(&server, None)));
    script(
        &server,
        vec![ResponseTemplate::new(200).set_body_json(body)],
    )
    .await;
    let client = builder(&server)
        .scopes(["openid", "profile", "offline_access", "User.Read"])
        .build()
        .unwrap();
    let device = client
        .start_device_code(&Authority::organizations())
        .await
        .unwrap();
    let task = spawn_poll(&client, device);
    let now = expect_polls(&server, &[1]).await;
    until_finished(&server, &task, now, 1).await;
    let grant = task.await.unwrap().unwrap();
    assert_eq!(grant.scopes(), &["User.Read", "profile", "openid", "email"]);
}

#[tokio::test(start_paused = true)]
async fn huge_interval_and_expires_in_are_capped_instead_of_panicking() {
    let frozen = freeze_time();
    let server = common::entra().await;
    let client = start(&server, u64::MAX, u64::MAX).await;
    let device = client
        .start_device_code(&Authority::organizations())
        .await
        .unwrap();
    assert_eq!(device.interval(), Duration::from_secs(24 * 3600));
    assert_eq!(device.expires_in(), Duration::from_secs(24 * 3600));
    drop(frozen);
    // The first poll is due a day after the start: nothing is sent within an hour.
    let polled =
        tokio::time::timeout(Duration::from_secs(3600), client.poll_device_code(&device)).await;
    assert!(polled.is_err(), "finished early: {polled:?}");
    assert_eq!(token_requests(&server).await, 0);
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests[0].url.path(), DEVICE_PATH);
    assert_eq!(form(&requests[0].body)["client_id"], CLIENT_ID);
}

/// MSAL does not cache the device grant's 400s (spec §3, §4c): `authorization_pending` is
/// the normal answer of identical polls, so every poll goes to Entra.
#[tokio::test(start_paused = true)]
async fn identical_pending_polls_are_all_sent_never_answered_from_memory() {
    let _frozen = freeze_time();
    let server = common::entra().await;
    let client = start(&server, 5, 900).await;
    script(
        &server,
        vec![
            polling_error("authorization_pending"),
            polling_error("authorization_pending"),
            polling_error("authorization_pending"),
            success(&server),
        ],
    )
    .await;
    let device = client
        .start_device_code(&Authority::organizations())
        .await
        .unwrap();
    let task = spawn_poll(&client, device);
    let now = expect_polls(&server, &[5, 10, 15, 20]).await;
    assert_eq!(until_finished(&server, &task, now, 4).await, 20);
    assert!(task.await.unwrap().is_ok());
    let requests = common::entra_requests(&server).await;
    let polls: Vec<_> = requests[1..]
        .iter()
        .map(|request| form(&request.body))
        .collect();
    assert_eq!(polls.len(), 4);
    assert!(
        polls.iter().all(|poll| poll == &polls[0]),
        "identical polls"
    );
}
