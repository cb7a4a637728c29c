//! Device code flow on paused tokio time: poll times, `slow_down`, declined, expired,
//! cancellation (spec §3).

mod common;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use common::{CLIENT_ID, GRAPH, TENANT, builder, claims, fixture, form, freeze_time, mint};
use entra_auth::secrecy::ExposeSecret as _;
use entra_auth::{AuthError, Authority, Clock, EntraClient, Grant};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

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

/// The client's clock, which it reads as it builds each poll (for the credential's
/// timestamps): it records the paused second of every read, exactly, whatever the
/// loopback HTTP is doing (time moves only by `advance`).
struct RecordingClock {
    base: Instant,
    seconds: Mutex<BTreeSet<u64>>,
}

impl fmt::Debug for RecordingClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecordingClock")
    }
}

impl Clock for RecordingClock {
    fn now(&self) -> OffsetDateTime {
        self.seconds
            .lock()
            .unwrap()
            .insert(self.base.elapsed().as_secs());
        OffsetDateTime::now_utc()
    }
}

impl RecordingClock {
    /// The paused seconds at which the client read its clock: the start, each poll, the
    /// grant.
    fn seconds(&self) -> Vec<u64> {
        self.seconds.lock().unwrap().iter().copied().collect()
    }
}

/// The device code's start answered once; the client and its recording clock (whose
/// zero is the device code's start: time is frozen in between).
async fn start(
    server: &MockServer,
    interval: u64,
    expires_in: u64,
) -> (EntraClient, Arc<RecordingClock>) {
    Mock::given(method("POST"))
        .and(path(DEVICE_PATH))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(device_code_body(interval, expires_in)),
        )
        .expect(1)
        .mount(server)
        .await;
    let clock = Arc::new(RecordingClock {
        base: Instant::now(),
        seconds: Mutex::new(BTreeSet::new()),
    });
    // Paused time jumps up to an interval at once, possibly while a poll's answer is
    // still on its way: a day-long request timeout never fires in such a jump.
    let client = builder(server)
        .clock(clock.clone())
        .timeout(Duration::from_secs(24 * 3600))
        .build()
        .unwrap();
    (client, clock)
}

/// Answers `answer` and reports each request's arrival.
struct Notifying {
    answer: ResponseTemplate,
    arrived: mpsc::Sender<()>,
}

impl Respond for Notifying {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let _ = self.arrived.send(());
        self.answer.clone()
    }
}

/// Polls arriving at the mock token endpoint.
type Arrivals = Arc<Mutex<mpsc::Receiver<()>>>;

fn notifying(
    answer: ResponseTemplate,
    arrivals: &mut Option<(mpsc::Sender<()>, Arrivals)>,
) -> Notifying {
    let (sender, _) = arrivals.get_or_insert_with(|| {
        let (sender, receiver) = mpsc::channel();
        (sender, Arc::new(Mutex::new(receiver)))
    });
    Notifying {
        answer,
        arrived: sender.clone(),
    }
}

/// Token answers in order, each used once.
async fn script(server: &MockServer, answers: Vec<ResponseTemplate>) -> Arrivals {
    let mut channel = None;
    for answer in answers {
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .respond_with(notifying(answer, &mut channel))
            .up_to_n_times(1)
            .expect(1)
            .mount(server)
            .await;
    }
    channel.map(|(_, arrivals)| arrivals).unwrap()
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
    common::requests_to(server, TOKEN_PATH).await.len()
}

/// Waits for the next poll to arrive (a watchdog of real time only for a poll that never
/// comes).
async fn next_arrival(arrivals: &Arrivals, due: u64) {
    let arrivals = Arc::clone(arrivals);
    let arrived = tokio::task::spawn_blocking(move || {
        arrivals
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert!(arrived.is_ok(), "the poll due at {due} s never arrived");
}

/// Moves paused time to each expected poll: in one jump to a second before it (a poll
/// due earlier would wake there, and the clock would record that second), then a second
/// on, where the poll must arrive. Returns the paused seconds.
async fn expect_polls(arrivals: &Arrivals, expected: &[u64]) -> u64 {
    let mut now = 0;
    for due in expected {
        if due - now > 1 {
            tokio::time::advance(Duration::from_secs(due - now - 1)).await;
            // A poll task woken by the jump runs (and reads the clock) before this task
            // is polled again: the scheduler's queue is first in, first out.
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        now = *due;
        next_arrival(arrivals, *due).await;
    }
    now
}

/// The poll task's outcome and the paused second it finished at (read inside the task,
/// as it finishes).
type Polling = JoinHandle<(Result<Grant, AuthError>, u64)>;

fn spawn_poll(client: &EntraClient, device: entra_auth::DeviceAuthorization) -> Polling {
    let client = client.clone();
    let base = Instant::now();
    tokio::spawn(async move {
        let result = client.poll_device_code(&device).await;
        (result, base.elapsed().as_secs())
    })
}

/// Awaits the poll task (time stays frozen: it can poll no more while awaited); a real
/// time watchdog stops a task that never ends.
async fn finished(task: Polling) -> (Result<Grant, AuthError>, u64) {
    let (stop, stopped) = mpsc::channel::<()>();
    let watchdog =
        tokio::task::spawn_blocking(move || stopped.recv_timeout(Duration::from_secs(60)));
    let outcome = tokio::select! {
        outcome = task => outcome.unwrap(),
        _ = watchdog => panic!("the poll task never finished"),
    };
    // Ends the watchdog's wait at once.
    drop(stop);
    outcome
}

#[tokio::test(start_paused = true)]
async fn device_flow_polls_at_the_interval_slows_down_by_five_seconds_and_returns_the_grant() {
    let _frozen = freeze_time();
    let server = common::entra().await;
    let (client, clock) = start(&server, 5, 900).await;
    let arrivals = script(
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
    expect_polls(&arrivals, &[5, 10, 20, 30]).await;
    let (result, at) = finished(task).await;
    assert_eq!(at, 30);
    // Read at the start, at each poll and for the grant: never a poll in between.
    assert_eq!(clock.seconds(), [0, 5, 10, 20, 30]);
    assert_eq!(token_requests(&server).await, 4);
    let grant = result.unwrap();
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
    let (client, clock) = start(&server, 5, 900).await;
    let arrivals = script(
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
    expect_polls(&arrivals, &[5, 10]).await;
    let (result, at) = finished(task).await;
    assert_eq!(at, 10);
    assert_eq!(clock.seconds(), [0, 5, 10]);
    assert_eq!(token_requests(&server).await, 2);
    let error = result.unwrap_err();
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
        let (client, clock) = start(&server, 5, 900).await;
        let arrivals = script(&server, vec![polling_error(answer)]).await;
        let device = client
            .start_device_code(&Authority::organizations())
            .await
            .unwrap();
        let task = spawn_poll(&client, device);
        expect_polls(&arrivals, &[5]).await;
        let (result, at) = finished(task).await;
        assert_eq!(at, 5, "{answer}");
        assert_eq!(clock.seconds(), [0, 5], "{answer}");
        assert_eq!(token_requests(&server).await, 1, "{answer}");
        let error = result.unwrap_err();
        assert!(check(&error), "{answer}: {error:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn device_code_expires_locally_without_polling_past_its_lifetime() {
    let _frozen = freeze_time();
    let server = common::entra().await;
    let (client, clock) = start(&server, 5, 12).await;
    let arrivals = script(
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
    expect_polls(&arrivals, &[5, 10]).await;
    // The next poll would be at 15, past the lifetime: the task ends at 12 exactly.
    tokio::time::advance(Duration::from_secs(1)).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    let (result, at) = finished(task).await;
    assert_eq!(at, 12);
    assert_eq!(clock.seconds(), [0, 5, 10]);
    assert_eq!(token_requests(&server).await, 2);
    let error = result.unwrap_err();
    assert!(
        matches!(error, AuthError::DeviceCodeExpired(None)),
        "{error:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn cancelled_polling_stops_and_sends_nothing_more() {
    let _frozen = freeze_time();
    let server = common::entra().await;
    let (client, clock) = start(&server, 5, 900).await;
    let mut channel = None;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(notifying(
            polling_error("authorization_pending"),
            &mut channel,
        ))
        .expect(1)
        .mount(&server)
        .await;
    let arrivals = channel.map(|(_, arrivals)| arrivals).unwrap();
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
    expect_polls(&arrivals, &[5]).await;
    tokio::time::advance(Duration::from_secs(2)).await;
    cancel.send(()).unwrap();
    let error = task.await.unwrap().unwrap_err();
    assert!(matches!(error, AuthError::Cancelled), "{error:?}");
    // The polling future is gone with the task: nothing can be sent any more, however
    // long one waits (`expect(1)` is checked when the server drops).
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(token_requests(&server).await, 1);
    assert_eq!(clock.seconds(), [0, 5]);
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
    let arrivals = script(
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
    expect_polls(&arrivals, &[1]).await;
    let (result, at) = finished(task).await;
    assert_eq!(at, 1);
    let grant = result.unwrap();
    assert_eq!(grant.scopes(), &["User.Read", "profile", "openid", "email"]);
}

#[tokio::test(start_paused = true)]
async fn huge_interval_and_expires_in_are_capped_instead_of_panicking() {
    let frozen = freeze_time();
    let server = common::entra().await;
    let (client, _) = start(&server, u64::MAX, u64::MAX).await;
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
    let (client, clock) = start(&server, 5, 900).await;
    let arrivals = script(
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
    expect_polls(&arrivals, &[5, 10, 15, 20]).await;
    let (result, at) = finished(task).await;
    assert_eq!(at, 20);
    assert_eq!(clock.seconds(), [0, 5, 10, 15, 20]);
    assert!(result.is_ok());
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

/// Found by fuzz/ (`entra_device_code`, corpus `crash-664774e4…`): an answer with an empty
/// `message` gave the user an empty instruction. A blank or missing one is made from the
/// user code and the verification URI.
#[tokio::test]
async fn a_blank_or_missing_message_is_made_from_the_code_and_the_uri() {
    let server = common::entra().await;
    for message in [json!(""), json!(" \n\t "), Value::Null] {
        let mut body = device_code_body(5, 900);
        body["message"] = message.clone();
        let mock = Mock::given(method("POST"))
            .and(path(DEVICE_PATH))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .expect(1)
            .mount_as_scoped(&server)
            .await;
        let client = builder(&server).build().unwrap();
        let device = client
            .start_device_code(&Authority::organizations())
            .await
            .unwrap();
        assert_eq!(
            device.message(),
            "To sign in, open https://microsoft.com/devicelogin and enter the code ABCD-EFGH.",
            "{message}"
        );
        assert_eq!(device.to_string(), device.message());
        drop(mock);
    }
}
