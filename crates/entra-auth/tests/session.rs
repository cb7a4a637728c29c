//! `TokenSession`: single flight, refresh ahead of expiry, rotation saved first,
//! compare-and-swap conflicts, fail-fast after a permanent failure (spec §2b).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    MemoryStore, REDIRECT, TENANT, builder, claims, form, freeze_time, granted_default_scopes,
    mint, tenant, token_body,
};
use entra_auth::secrecy::{ExposeSecret as _, SecretString};
use entra_auth::{
    AuthError, CallbackParams, EntraClient, Grant, RefreshTokenStore, SaveOutcome,
    StoredRefreshToken, TokenSession, TokenVersion,
};
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

fn refresh_path() -> String {
    format!("/{TENANT}/oauth2/v2.0/token")
}

/// Signs in through a mocked code exchange and returns the grant.
async fn sign_in(server: &MockServer, client: &EntraClient, extra: Value, tid: &str) -> Grant {
    let (_, pending) = client.authorization_request().build().unwrap().into_parts();
    let nonce = serde_json::to_value(&pending).unwrap()["nonce"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut id_claims = claims(server, Some(&nonce));
    id_claims["tid"] = json!(tid);
    id_claims["iss"] = json!(format!("{}/{tid}/v2.0", server.uri()));
    let mut body = token_body(
        "AT-GRANT",
        Some("RT-GRANT"),
        Some(&mint(&id_claims)),
        &granted_default_scopes(),
    );
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    Mock::given(method("POST"))
        .and(path("/organizations/oauth2/v2.0/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .up_to_n_times(1)
        .mount(server)
        .await;
    let callback = CallbackParams::from_redirect_url(&format!(
        "{REDIRECT}?code=c&state={}",
        pending.state().expose_secret()
    ))
    .unwrap();
    client
        .complete_authorization(&pending, &callback)
        .await
        .unwrap()
}

fn session(
    client: &EntraClient,
    store: Arc<dyn RefreshTokenStore>,
    grant: Option<Grant>,
) -> TokenSession {
    let mut builder = TokenSession::builder(client.clone(), tenant(), store);
    if let Some(grant) = grant {
        builder = builder.grant(grant);
    }
    builder.build().unwrap()
}

fn refreshed(access: &str, refresh: Option<&str>) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(token_body(access, refresh, None, "x"))
}

fn invalid_grant() -> ResponseTemplate {
    ResponseTemplate::new(400).set_body_json(json!({
        "error": "invalid_grant",
        "error_description": "AADSTS70008: The provided authorization code or refresh token has expired due to inactivity.",
        "error_codes": [70008],
        "trace_id": "trace-70008",
        "correlation_id": "corr-70008",
    }))
}

async fn refresh_bodies(server: &MockServer) -> Vec<std::collections::BTreeMap<String, String>> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|request| request.url.path() == refresh_path())
        .map(|request| form(&request.body))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn hundred_concurrent_callers_on_an_expired_token_make_exactly_one_token_request() {
    let _frozen = freeze_time();
    let server = common::entra().await;
    let client = builder(&server).build().unwrap();
    let grant = sign_in(&server, &client, json!({}), TENANT).await;
    let store = MemoryStore::with("RT-GRANT", 1);
    let session = session(&client, store.clone(), Some(grant));
    Mock::given(method("POST"))
        .and(path(refresh_path()))
        .respond_with(refreshed("AT-NEW", Some("RT-NEW")).set_delay(Duration::from_millis(100)))
        .expect(1)
        .mount(&server)
        .await;

    tokio::time::advance(Duration::from_secs(2 * 3600)).await;
    let callers: Vec<_> = (0..100)
        .map(|_| {
            let session = session.clone();
            tokio::spawn(async move { session.access_token().await })
        })
        .collect();
    let mut tokens = Vec::new();
    for caller in callers {
        tokens.push(caller.await.unwrap().unwrap());
    }
    assert!(
        tokens
            .iter()
            .all(|token| token.secret().expose_secret() == "AT-NEW")
    );
    assert_eq!(refresh_bodies(&server).await.len(), 1);
    assert_eq!(
        refresh_bodies(&server).await[0]["refresh_token"],
        "RT-GRANT"
    );
    assert_eq!(store.current(), Some(("RT-NEW".to_owned(), 2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_callers_on_threads_without_a_cached_token_make_one_request() {
    let server = common::entra().await;
    Mock::given(method("POST"))
        .and(path(refresh_path()))
        .respond_with(refreshed("AT-NEW", Some("RT-NEW")).set_delay(Duration::from_millis(50)))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).build().unwrap();
    let store = MemoryStore::with("RT-0", 1);
    let session = session(&client, store.clone(), None);
    let callers: Vec<_> = (0..100)
        .map(|_| {
            let session = session.clone();
            tokio::spawn(async move { session.access_token().await })
        })
        .collect();
    for caller in callers {
        assert_eq!(
            caller.await.unwrap().unwrap().secret().expose_secret(),
            "AT-NEW"
        );
    }
    assert_eq!(store.saves.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn refreshes_five_minutes_before_expiry() {
    let _frozen = freeze_time();
    let server = common::entra().await;
    let client = builder(&server).build().unwrap();
    let grant = sign_in(&server, &client, json!({}), TENANT).await;
    let session = session(&client, MemoryStore::with("RT-GRANT", 1), Some(grant));
    Mock::given(method("POST"))
        .and(path(refresh_path()))
        .respond_with(refreshed("AT-NEW", None))
        .expect(1)
        .mount(&server)
        .await;
    // expires_in is 3599 s: the cached token is used until 3299 s.
    tokio::time::advance(Duration::from_secs(3297)).await;
    assert_eq!(
        session
            .access_token()
            .await
            .unwrap()
            .secret()
            .expose_secret(),
        "AT-GRANT"
    );
    assert!(refresh_bodies(&server).await.is_empty());
    tokio::time::advance(Duration::from_secs(3)).await;
    assert_eq!(
        session
            .access_token()
            .await
            .unwrap()
            .secret()
            .expose_secret(),
        "AT-NEW"
    );
    assert_eq!(refresh_bodies(&server).await.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn refreshes_at_refresh_in_when_entra_sends_it() {
    let _frozen = freeze_time();
    let server = common::entra().await;
    let client = builder(&server).build().unwrap();
    let grant = sign_in(&server, &client, json!({"refresh_in": 1800}), TENANT).await;
    let session = session(&client, MemoryStore::with("RT-GRANT", 1), Some(grant));
    Mock::given(method("POST"))
        .and(path(refresh_path()))
        .respond_with(refreshed("AT-NEW", None))
        .expect(1)
        .mount(&server)
        .await;
    tokio::time::advance(Duration::from_secs(1798)).await;
    assert_eq!(
        session
            .access_token()
            .await
            .unwrap()
            .secret()
            .expose_secret(),
        "AT-GRANT"
    );
    tokio::time::advance(Duration::from_secs(3)).await;
    assert_eq!(
        session
            .access_token()
            .await
            .unwrap()
            .secret()
            .expose_secret(),
        "AT-NEW"
    );
}

#[tokio::test(start_paused = true)]
async fn transient_failure_of_an_early_refresh_returns_the_current_token() {
    let _frozen = freeze_time();
    let server = common::entra().await;
    let client = builder(&server).build().unwrap();
    let grant = sign_in(&server, &client, json!({}), TENANT).await;
    let session = session(&client, MemoryStore::with("RT-GRANT", 1), Some(grant));
    Mock::given(method("POST"))
        .and(path(refresh_path()))
        .respond_with(ResponseTemplate::new(503).set_body_raw("<html>busy</html>", "text/html"))
        .expect(2)
        .mount(&server)
        .await;
    tokio::time::advance(Duration::from_secs(3400)).await;
    // In the 5-minute window the refresh fails, the current token still works.
    assert_eq!(
        session
            .access_token()
            .await
            .unwrap()
            .secret()
            .expose_secret(),
        "AT-GRANT"
    );
    // Past expiry the failure is the caller's, and retryable.
    tokio::time::advance(Duration::from_secs(300)).await;
    let error = session.access_token().await.unwrap_err();
    assert!(
        error.is_retryable() && !error.requires_reauthorization(),
        "{error:?}"
    );
}

/// A store whose save waits until the test releases it.
struct GatedStore {
    inner: Arc<MemoryStore>,
    save_started: tokio::sync::Notify,
    release: tokio::sync::Semaphore,
}

#[async_trait::async_trait]
impl RefreshTokenStore for GatedStore {
    async fn load(&self) -> Result<Option<StoredRefreshToken>, AuthError> {
        self.inner.load().await
    }
    async fn save(
        &self,
        token: &SecretString,
        expected: TokenVersion,
    ) -> Result<SaveOutcome, AuthError> {
        self.save_started.notify_one();
        let _permit = self.release.acquire().await.map_err(AuthError::store)?;
        self.inner.save(token, expected).await
    }
    async fn mark_reauthorization_required(&self, reason: &AuthError) -> Result<(), AuthError> {
        self.inner.mark_reauthorization_required(reason).await
    }
}

#[tokio::test]
async fn rotated_refresh_token_is_saved_before_the_access_token_is_returned() {
    let server = common::entra().await;
    Mock::given(method("POST"))
        .and(path(refresh_path()))
        .respond_with(refreshed("AT-NEW", Some("RT-NEW")))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).build().unwrap();
    let store = Arc::new(GatedStore {
        inner: MemoryStore::with("RT-0", 1),
        save_started: tokio::sync::Notify::new(),
        release: tokio::sync::Semaphore::new(0),
    });
    let session = session(&client, store.clone(), None);
    let task = tokio::spawn({
        let session = session.clone();
        async move { session.access_token().await }
    });
    store.save_started.notified().await;
    tokio::task::yield_now().await;
    assert!(
        !task.is_finished(),
        "the access token was handed out before the save"
    );
    store.release.add_permits(1);
    let token = task.await.unwrap().unwrap();
    assert_eq!(token.secret().expose_secret(), "AT-NEW");
    assert_eq!(store.inner.current(), Some(("RT-NEW".to_owned(), 2)));
}

#[tokio::test]
async fn dropping_a_refresh_midway_leaves_the_session_usable() {
    let server = common::entra().await;
    Mock::given(method("POST"))
        .and(path(refresh_path()))
        .respond_with(refreshed("AT-NEW", Some("RT-NEW")))
        .expect(2)
        .mount(&server)
        .await;
    let client = builder(&server).build().unwrap();
    let store = Arc::new(GatedStore {
        inner: MemoryStore::with("RT-0", 1),
        save_started: tokio::sync::Notify::new(),
        release: tokio::sync::Semaphore::new(0),
    });
    let session = session(&client, store.clone(), None);
    let task = tokio::spawn({
        let session = session.clone();
        async move { session.access_token().await }
    });
    store.save_started.notified().await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    // The old refresh token is still stored (Entra does not revoke it on use).
    assert_eq!(store.inner.current(), Some(("RT-0".to_owned(), 1)));
    store.release.add_permits(10);
    assert_eq!(
        session
            .access_token()
            .await
            .unwrap()
            .secret()
            .expose_secret(),
        "AT-NEW"
    );
    assert_eq!(store.inner.current(), Some(("RT-NEW".to_owned(), 2)));
}

#[tokio::test]
async fn cas_conflict_keeps_the_newer_token_and_the_next_refresh_uses_it() {
    let server = common::entra().await;
    Mock::given(method("POST"))
        .and(path(refresh_path()))
        .respond_with(refreshed("AT-1", Some("RT-MINE")))
        .expect(2)
        .mount(&server)
        .await;
    let client = builder(&server).build().unwrap();
    let store = MemoryStore::with("RT-A", 1);
    *store.conflict_with.lock().unwrap() = Some(("RT-OTHER".to_owned(), 2));
    let session = session(&client, store.clone(), None);
    assert_eq!(
        session
            .access_token()
            .await
            .unwrap()
            .secret()
            .expose_secret(),
        "AT-1"
    );
    // Another replica's newer token stays.
    assert_eq!(store.current(), Some(("RT-OTHER".to_owned(), 2)));
    assert!(store.saves.lock().unwrap().is_empty());
    session.invalidate();
    session.access_token().await.unwrap();
    let bodies = refresh_bodies(&server).await;
    assert_eq!(bodies[0]["refresh_token"], "RT-A");
    assert_eq!(bodies[1]["refresh_token"], "RT-OTHER");
    assert_eq!(store.current(), Some(("RT-MINE".to_owned(), 3)));
}

/// Entra refuses our token because another replica rotated it meanwhile.
struct RotatedElsewhere(Arc<MemoryStore>);

impl Respond for RotatedElsewhere {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        *self.0.slot.lock().unwrap() = Some(("RT-B".to_owned(), 2));
        invalid_grant()
    }
}

#[tokio::test]
async fn invalid_grant_after_another_replica_rotated_retries_once_with_the_newer_token() {
    let server = common::entra().await;
    let store = MemoryStore::with("RT-A", 1);
    Mock::given(method("POST"))
        .and(path(refresh_path()))
        .and(body_string_contains("refresh_token=RT-A"))
        .respond_with(RotatedElsewhere(store.clone()))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(refresh_path()))
        .and(body_string_contains("refresh_token=RT-B"))
        .respond_with(refreshed("AT-B", Some("RT-C")))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).build().unwrap();
    let session = session(&client, store.clone(), None);
    assert_eq!(
        session
            .access_token()
            .await
            .unwrap()
            .secret()
            .expose_secret(),
        "AT-B"
    );
    assert_eq!(store.current(), Some(("RT-C".to_owned(), 3)));
    assert!(store.marked.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn permanent_failure_marks_the_store_and_fails_fast_until_reconnected() {
    let _frozen = freeze_time();
    let server = common::entra().await;
    let client = builder(&server).build().unwrap();
    let grant = sign_in(&server, &client, json!({}), TENANT).await;
    let store = MemoryStore::with("RT-GRANT", 1);
    let session = session(&client, store.clone(), None);
    Mock::given(method("POST"))
        .and(path(refresh_path()))
        .respond_with(invalid_grant())
        .expect(1)
        .mount(&server)
        .await;

    let first = session.access_token().await.unwrap_err();
    assert!(first.requires_reauthorization(), "{first:?}");
    assert_eq!(store.marked.lock().unwrap().len(), 1);
    assert!(store.marked.lock().unwrap()[0].contains("invalid_grant"));
    for _ in 0..3 {
        let again = session.access_token().await.unwrap_err();
        assert!(again.requires_reauthorization());
        assert_eq!(again.entra_error(), first.entra_error());
        assert_eq!(again.entra_error().unwrap().trace_id(), Some("trace-70008"));
    }
    assert_eq!(
        refresh_bodies(&server).await.len(),
        1,
        "no further calls to Entra"
    );
    // The stored token is not deleted (MSAL keeps it too, spec §2b).
    assert_eq!(store.current(), Some(("RT-GRANT".to_owned(), 1)));

    session.reconnect(&grant).unwrap();
    assert_eq!(
        session
            .access_token()
            .await
            .unwrap()
            .secret()
            .expose_secret(),
        "AT-GRANT"
    );
    assert_eq!(refresh_bodies(&server).await.len(), 1);
}

#[tokio::test]
async fn missing_stored_token_requires_reauthorization_without_calling_entra() {
    let server = common::entra().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let client = builder(&server).build().unwrap();
    let session = session(&client, Arc::new(MemoryStore::default()), None);
    let error = session.access_token().await.unwrap_err();
    assert!(matches!(error, AuthError::NoRefreshToken), "{error:?}");
    assert!(error.requires_reauthorization());
}

#[tokio::test]
async fn refresh_without_a_new_refresh_token_leaves_the_store_unchanged() {
    let server = common::entra().await;
    Mock::given(method("POST"))
        .and(path(refresh_path()))
        .respond_with(refreshed("AT-1", None))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).build().unwrap();
    let store = MemoryStore::with("RT-0", 4);
    let session = session(&client, store.clone(), None);
    assert_eq!(
        session
            .access_token()
            .await
            .unwrap()
            .secret()
            .expose_secret(),
        "AT-1"
    );
    assert_eq!(store.current(), Some(("RT-0".to_owned(), 4)));
    assert!(store.saves.lock().unwrap().is_empty());
}

#[tokio::test]
async fn grant_of_another_tenant_is_refused() {
    let server = common::entra().await;
    let client = builder(&server).build().unwrap();
    let other = sign_in(
        &server,
        &client,
        json!({}),
        "aaaabbbb-0000-cccc-1111-dddd2222eeee",
    )
    .await;
    let session = session(&client, Arc::new(MemoryStore::default()), None);
    let error = session.reconnect(&other).unwrap_err();
    assert!(
        matches!(error, AuthError::TenantMismatch { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn reset_after_a_reconnect_elsewhere_uses_the_newly_stored_token() {
    let server = common::entra().await;
    Mock::given(method("POST"))
        .and(path(refresh_path()))
        .and(body_string_contains("refresh_token=RT-OLD"))
        .respond_with(invalid_grant())
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(refresh_path()))
        .and(body_string_contains("refresh_token=RT-RECONNECTED"))
        .respond_with(refreshed("AT-NEW", None))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).build().unwrap();
    let store = MemoryStore::with("RT-OLD", 1);
    let session = session(&client, store.clone(), None);
    assert!(
        session
            .access_token()
            .await
            .unwrap_err()
            .requires_reauthorization()
    );
    // Another process stores the new grant's refresh token; this one still fails fast.
    *store.slot.lock().unwrap() = Some(("RT-RECONNECTED".to_owned(), 2));
    assert!(
        session
            .access_token()
            .await
            .unwrap_err()
            .requires_reauthorization()
    );
    session.reset();
    assert_eq!(
        session
            .access_token()
            .await
            .unwrap()
            .secret()
            .expose_secret(),
        "AT-NEW"
    );
}

#[tokio::test(start_paused = true)]
async fn session_caches_a_token_with_a_huge_lifetime_without_panicking() {
    let _frozen = freeze_time();
    let server = common::entra().await;
    let client = builder(&server).build().unwrap();
    let mut body = token_body("AT-LONG", None, None, "x");
    body["expires_in"] = json!(u64::MAX);
    Mock::given(method("POST"))
        .and(path(refresh_path()))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(1)
        .mount(&server)
        .await;
    let session = session(&client, MemoryStore::with("RT-1", 1), None);
    let first = session.access_token().await.unwrap();
    tokio::time::advance(Duration::from_secs(30 * 24 * 3600)).await;
    let second = session.access_token().await.unwrap();
    assert_eq!(first.secret().expose_secret(), "AT-LONG");
    assert_eq!(second.secret().expose_secret(), "AT-LONG");
    assert_eq!(refresh_bodies(&server).await.len(), 1);
    assert_eq!(refresh_bodies(&server).await[0]["refresh_token"], "RT-1");
}

#[tokio::test(start_paused = true)]
async fn late_rejection_of_the_old_token_keeps_the_freshly_refreshed_one() {
    let _frozen = freeze_time();
    let server = common::entra().await;
    let client = builder(&server).build().unwrap();
    let grant = sign_in(&server, &client, json!({}), TENANT).await;
    let session = session(&client, MemoryStore::with("RT-GRANT", 1), Some(grant));
    Mock::given(method("POST"))
        .and(path(refresh_path()))
        .respond_with(refreshed("AT-NEW", Some("RT-NEW")))
        .expect(1)
        .mount(&server)
        .await;

    // Two requests went out with the same token; Graph rejects both.
    let first = session.access_token().await.unwrap().into_secret();
    let second = session.access_token().await.unwrap().into_secret();
    assert_eq!(first.expose_secret(), "AT-GRANT");
    assert!(session.invalidate_if_current(&first));
    let fresh = session.access_token().await.unwrap();
    assert_eq!(fresh.secret().expose_secret(), "AT-NEW");
    // The second 401 arrives after the refresh: it names the old token, so the new stays.
    assert!(!session.invalidate_if_current(&second));
    let again = session.access_token().await.unwrap();
    assert_eq!(again.secret().expose_secret(), "AT-NEW");
    let bodies = refresh_bodies(&server).await;
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["refresh_token"], "RT-GRANT");
}
