//! Continuous access evaluation: the `cp1` client capability in every authorize and token
//! request, claims merged with it, and `TokenSession::claims_challenge` (spec §7).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    MemoryStore, REDIRECT, TENANT, builder, claims, form, freeze_time, granted_default_scopes,
    mint, query, tenant, token_body,
};
use entra_auth::secrecy::{ExposeSecret as _, SecretString};
use entra_auth::{AuthError, CallbackParams, EntraClient, Grant, MAX_CLAIMS_BYTES, TokenSession};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The challenge of Microsoft's CAE sample: the token must be issued after a time
/// [app-resilience-continuous-access-evaluation.md].
const NBF_CHALLENGE: &str = r#"{"access_token":{"nbf":{"essential":true,"value":"1604106651"}}}"#;

fn cp1() -> Value {
    json!({"access_token": {"xms_cc": {"values": ["cp1"]}}})
}

fn nbf_with_cp1() -> Value {
    json!({"access_token": {
        "nbf": {"essential": true, "value": "1604106651"},
        "xms_cc": {"values": ["cp1"]},
    }})
}

fn decoded(claims: &str) -> Value {
    serde_json::from_str(claims).unwrap()
}

fn refresh_path() -> String {
    format!("/{TENANT}/oauth2/v2.0/token")
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

/// Signs in through a mocked code exchange (authorize request with `claims`, if given)
/// and returns the grant and the code redemption's form.
async fn sign_in(
    server: &MockServer,
    client: &EntraClient,
    authorize_claims: Option<&str>,
) -> (Grant, std::collections::BTreeMap<String, String>) {
    let mut request = client.authorization_request();
    if let Some(authorize_claims) = authorize_claims {
        request = request.claims(authorize_claims);
    }
    let (_, pending) = request.build().unwrap().into_parts();
    let nonce = serde_json::to_value(&pending).unwrap()["nonce"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = token_body(
        "AT-GRANT",
        Some("RT-GRANT"),
        Some(&mint(&claims(server, Some(&nonce)))),
        &granted_default_scopes(),
    );
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
    let grant = client
        .complete_authorization(&pending, &callback)
        .await
        .unwrap();
    let redemption = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .rev()
        .find(|request| request.url.path() == "/organizations/oauth2/v2.0/token")
        .map(|request| form(&request.body))
        .unwrap();
    (grant, redemption)
}

fn refreshed(access: &str, refresh: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(token_body(access, Some(refresh), None, "x"))
}

fn session_with_grant(client: &EntraClient, store: Arc<MemoryStore>, grant: Grant) -> TokenSession {
    TokenSession::builder(client.clone(), tenant(), store)
        .grant(grant)
        .build()
        .unwrap()
}

#[test]
fn authorize_url_declares_cp1_by_default_and_merges_the_callers_claims() {
    let client = EntraClient::builder(common::CLIENT_ID)
        .redirect_uri(REDIRECT)
        .build()
        .unwrap();
    assert!(client.declares_cp1());
    let url = client
        .authorization_request()
        .build()
        .unwrap()
        .into_parts()
        .0;
    assert_eq!(decoded(&query(&url)["claims"]), cp1());

    let request = client
        .authorization_request()
        .claims(NBF_CHALLENGE)
        .build()
        .unwrap();
    assert_eq!(decoded(&query(request.url())["claims"]), nbf_with_cp1());
    // The pending authorization keeps the caller's claims (not cp1) for the redemption.
    assert_eq!(request.pending().claims(), Some(NBF_CHALLENGE));
}

#[test]
fn authorize_url_unites_client_capabilities_already_in_the_claims() {
    let client = EntraClient::builder(common::CLIENT_ID)
        .redirect_uri(REDIRECT)
        .build()
        .unwrap();
    let claims =
        r#"{"access_token":{"xms_cc":{"values":["cp2"]},"acrs":{"essential":true,"value":"c1"}}}"#;
    let url = client
        .authorization_request()
        .claims(claims)
        .build()
        .unwrap()
        .into_parts()
        .0;
    assert_eq!(
        decoded(&query(&url)["claims"]),
        json!({"access_token": {
            "xms_cc": {"values": ["cp2", "cp1"]},
            "acrs": {"essential": true, "value": "c1"},
        }})
    );
}

#[tokio::test]
async fn without_cp1_no_claims_are_sent_unless_the_caller_asks() {
    let server = common::entra().await;
    let client = builder(&server)
        .client_capability_cp1(false)
        .build()
        .unwrap();
    assert!(!client.declares_cp1());
    let url = client
        .authorization_request()
        .build()
        .unwrap()
        .into_parts()
        .0;
    assert!(!query(&url).contains_key("claims"));
    let url = client
        .authorization_request()
        .claims(NBF_CHALLENGE)
        .build()
        .unwrap()
        .into_parts()
        .0;
    assert_eq!(decoded(&query(&url)["claims"]), decoded(NBF_CHALLENGE));

    let (_, redemption) = sign_in(&server, &client, None).await;
    assert!(!redemption.contains_key("claims"));
    Mock::given(method("POST"))
        .and(path(refresh_path()))
        .respond_with(refreshed("AT", "RT"))
        .expect(2)
        .mount(&server)
        .await;
    client
        .refresh(&tenant(), &SecretString::from("RT-1"))
        .await
        .unwrap();
    client
        .refresh_with_claims(&tenant(), &SecretString::from("RT-2"), NBF_CHALLENGE)
        .await
        .unwrap();
    let bodies = refresh_bodies(&server).await;
    assert!(!bodies[0].contains_key("claims"));
    assert_eq!(decoded(&bodies[1]["claims"]), decoded(NBF_CHALLENGE));
}

#[tokio::test]
async fn code_redemption_repeats_the_authorize_claims_merged_with_cp1() {
    let server = common::entra().await;
    let client = builder(&server).build().unwrap();
    let (_, redemption) = sign_in(&server, &client, Some(NBF_CHALLENGE)).await;
    assert_eq!(redemption["grant_type"], "authorization_code");
    assert_eq!(decoded(&redemption["claims"]), nbf_with_cp1());
    let (_, redemption) = sign_in(&server, &client, None).await;
    assert_eq!(decoded(&redemption["claims"]), cp1());
}

#[tokio::test]
async fn claims_that_are_not_a_json_object_are_a_typed_error_and_nothing_is_sent() {
    let server = common::entra().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let client = builder(&server).build().unwrap();
    let oversized = format!(
        r#"{{"access_token":{{"x":"{}"}}}}"#,
        "a".repeat(MAX_CLAIMS_BYTES)
    );
    for bad in [
        "not json",
        "[\"cp1\"]",
        "\"x\"",
        r#"{"access_token":["cp1"]}"#,
        oversized.as_str(),
    ] {
        let error = client
            .authorization_request()
            .claims(bad)
            .build()
            .unwrap_err();
        assert!(
            matches!(error, AuthError::InvalidClaims { .. }),
            "{error:?}"
        );
        assert!(!error.is_retryable() && !error.requires_reauthorization());
        let error = client
            .refresh_with_claims(&tenant(), &SecretString::from("RT-SECRET"), bad)
            .await
            .unwrap_err();
        assert!(
            matches!(error, AuthError::InvalidClaims { .. }),
            "{error:?}"
        );
        assert!(!error.to_string().contains("RT-SECRET"));
    }

    // A session keeps its token when the challenge cannot be understood.
    let store = MemoryStore::with("RT-GRANT", 1);
    let session = TokenSession::builder(client.clone(), tenant(), store)
        .build()
        .unwrap();
    let error = session
        .claims_challenge(&SecretString::from("AT"), "[]")
        .await
        .unwrap_err();
    assert!(
        matches!(error, AuthError::InvalidClaims { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("not an object"), "{error}");
    // JSON that parses but cannot carry cp1 is refused up front too, and does not stick:
    // the next plain refresh works.
    let error = session
        .claims_challenge(&SecretString::from("AT"), r#"{"access_token":"x"}"#)
        .await
        .unwrap_err();
    assert!(
        matches!(error, AuthError::InvalidClaims { .. }),
        "{error:?}"
    );
    common::reset(&server).await;
    Mock::given(method("POST"))
        .and(path(refresh_path()))
        .respond_with(refreshed("AT-OK", "RT-OK"))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(
        session
            .access_token()
            .await
            .unwrap()
            .secret()
            .expose_secret(),
        "AT-OK"
    );
    assert_eq!(decoded(&refresh_bodies(&server).await[0]["claims"]), cp1());
}

#[tokio::test]
async fn claims_challenge_drops_the_token_and_refreshes_once_with_the_merged_claims() {
    let server = common::entra().await;
    let client = builder(&server).build().unwrap();
    let (grant, _) = sign_in(&server, &client, None).await;
    let store = MemoryStore::with("RT-GRANT", 1);
    let session = session_with_grant(&client, store.clone(), grant);
    Mock::given(method("POST"))
        .and(path(refresh_path()))
        .respond_with(refreshed("AT-CAE", "RT-CAE"))
        .expect(1)
        .mount(&server)
        .await;

    let token = session
        .claims_challenge(&SecretString::from("AT-GRANT"), NBF_CHALLENGE)
        .await
        .unwrap();
    assert_eq!(token.secret().expose_secret(), "AT-CAE");
    let bodies = refresh_bodies(&server).await;
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["grant_type"], "refresh_token");
    assert_eq!(bodies[0]["refresh_token"], "RT-GRANT");
    assert_eq!(decoded(&bodies[0]["claims"]), nbf_with_cp1());
    // The rotated refresh token was saved; the new token is cached.
    assert_eq!(store.current(), Some(("RT-CAE".to_owned(), 2)));
    assert_eq!(
        session
            .access_token()
            .await
            .unwrap()
            .secret()
            .expose_secret(),
        "AT-CAE"
    );
    assert_eq!(refresh_bodies(&server).await.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn hundred_concurrent_claims_challenges_for_one_rejected_token_make_one_token_request() {
    let _frozen = freeze_time();
    let server = common::entra().await;
    let client = builder(&server).build().unwrap();
    let (grant, _) = sign_in(&server, &client, None).await;
    let store = MemoryStore::with("RT-GRANT", 1);
    let session = session_with_grant(&client, store.clone(), grant);
    Mock::given(method("POST"))
        .and(path(refresh_path()))
        .respond_with(refreshed("AT-CAE", "RT-CAE").set_delay(Duration::from_millis(100)))
        .expect(1)
        .mount(&server)
        .await;

    let rejected = SecretString::from("AT-GRANT");
    let callers: Vec<_> = (0..100)
        .map(|_| {
            let session = session.clone();
            let rejected = rejected.clone();
            tokio::spawn(async move { session.claims_challenge(&rejected, NBF_CHALLENGE).await })
        })
        .collect();
    for caller in callers {
        let token = caller.await.unwrap().unwrap();
        assert_eq!(token.secret().expose_secret(), "AT-CAE");
    }
    let bodies = refresh_bodies(&server).await;
    assert_eq!(bodies.len(), 1, "exactly one token request");
    assert_eq!(decoded(&bodies[0]["claims"]), nbf_with_cp1());
    assert_eq!(store.saves.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn claims_challenge_for_a_token_already_replaced_returns_the_newer_one_without_a_request() {
    let server = common::entra().await;
    let client = builder(&server).build().unwrap();
    let (grant, _) = sign_in(&server, &client, None).await;
    let session = session_with_grant(&client, MemoryStore::with("RT-GRANT", 1), grant);
    Mock::given(method("POST"))
        .and(path(refresh_path()))
        .respond_with(refreshed("AT-CAE", "RT-CAE"))
        .expect(1)
        .mount(&server)
        .await;
    session
        .claims_challenge(&SecretString::from("AT-GRANT"), NBF_CHALLENGE)
        .await
        .unwrap();
    // A late challenge for the old token (another request that was in flight).
    let token = session
        .claims_challenge(&SecretString::from("AT-GRANT"), NBF_CHALLENGE)
        .await
        .unwrap();
    assert_eq!(token.secret().expose_secret(), "AT-CAE");
    assert_eq!(refresh_bodies(&server).await.len(), 1);
}

/// Entra's documented `interaction_required` answer carrying its own claims request
/// (fixture `token-error-interaction-required-obo.json`).
fn interaction_required_with_claims() -> ResponseTemplate {
    ResponseTemplate::new(400).set_body_raw(
        common::fixture("token-error-interaction-required-obo.json"),
        "application/json",
    )
}

const FIXTURE_CLAIMS: &str = r#"{"access_token":{"polids":{"essential":true,"values":["00aa00aa-bb11-cc22-dd33-44ee44ee44ee"]}}}"#;

#[tokio::test(start_paused = true)]
async fn challenge_ending_in_interaction_required_fails_permanently_with_entras_reconnect_claims() {
    let _frozen = freeze_time();
    let server = common::entra().await;
    let client = builder(&server).build().unwrap();
    let (grant, _) = sign_in(&server, &client, None).await;
    let store = MemoryStore::with("RT-GRANT", 1);
    let session = session_with_grant(&client, store.clone(), grant);
    Mock::given(method("POST"))
        .and(path(refresh_path()))
        .respond_with(interaction_required_with_claims())
        .expect(1)
        .mount(&server)
        .await;

    let error = session
        .claims_challenge(&SecretString::from("AT-GRANT"), NBF_CHALLENGE)
        .await
        .unwrap_err();
    assert!(error.requires_reauthorization(), "{error:?}");
    assert_eq!(error.entra_error().unwrap().error(), "interaction_required");
    // Entra's own claims win over the challenge's.
    assert_eq!(error.reconnect_claims(), Some(FIXTURE_CLAIMS));
    assert_eq!(store.marked.lock().unwrap().len(), 1);

    // Later calls fail fast with the same claims; nothing more reaches Entra.
    for _ in 0..3 {
        let again = session.access_token().await.unwrap_err();
        assert_eq!(again.reconnect_claims(), Some(FIXTURE_CLAIMS));
        let again = session
            .claims_challenge(&SecretString::from("AT-OTHER"), NBF_CHALLENGE)
            .await
            .unwrap_err();
        assert_eq!(again.reconnect_claims(), Some(FIXTURE_CLAIMS));
    }
    assert_eq!(refresh_bodies(&server).await.len(), 1);
    assert_eq!(store.marked.lock().unwrap().len(), 1, "marked once");

    // The reconnect's authorize request carries them, with cp1.
    let url = client
        .authorization_request()
        .claims(error.reconnect_claims().unwrap())
        .build()
        .unwrap()
        .into_parts()
        .0;
    assert_eq!(
        decoded(&query(&url)["claims"]),
        json!({"access_token": {
            "polids": {"essential": true, "values": ["00aa00aa-bb11-cc22-dd33-44ee44ee44ee"]},
            "xms_cc": {"values": ["cp1"]},
        }})
    );
}

#[tokio::test]
async fn challenge_ending_in_invalid_grant_keeps_the_challenge_claims_for_the_reconnect() {
    let server = common::entra().await;
    let client = builder(&server).build().unwrap();
    let (grant, _) = sign_in(&server, &client, None).await;
    let store = MemoryStore::with("RT-GRANT", 1);
    let session = session_with_grant(&client, store.clone(), grant);
    Mock::given(method("POST"))
        .and(path(refresh_path()))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant",
            "error_description": "AADSTS50173: The provided grant has expired due to it being revoked.",
            "error_codes": [50173],
            "trace_id": "trace-50173",
            "correlation_id": "corr-50173",
        })))
        .mount(&server)
        .await;

    let error = session
        .claims_challenge(&SecretString::from("AT-GRANT"), NBF_CHALLENGE)
        .await
        .unwrap_err();
    assert!(error.requires_reauthorization());
    assert_eq!(error.reconnect_claims(), Some(NBF_CHALLENGE));
    assert_eq!(error.entra_error().unwrap().claims(), None);
    let again = session.access_token().await.unwrap_err();
    assert_eq!(again.reconnect_claims(), Some(NBF_CHALLENGE));
    assert_eq!(again.entra_error().unwrap().trace_id(), Some("trace-50173"));
    assert_eq!(store.marked.lock().unwrap().len(), 1);
    assert_eq!(refresh_bodies(&server).await.len(), 1);

    // A plain refresh failure has no claims to carry.
    let plain = builder(&server).build().unwrap();
    let error = plain
        .refresh(&tenant(), &SecretString::from("RT-GRANT"))
        .await
        .unwrap_err();
    assert!(error.requires_reauthorization());
    assert_eq!(error.reconnect_claims(), None);
}

#[tokio::test]
async fn refresh_with_claims_failure_offers_the_challenge_as_reconnect_claims() {
    let server = common::entra().await;
    Mock::given(method("POST"))
        .and(path(refresh_path()))
        .respond_with(interaction_required_with_claims())
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(refresh_path()))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"})))
        .mount(&server)
        .await;
    let client = builder(&server).build().unwrap();
    let error = client
        .refresh_with_claims(&tenant(), &SecretString::from("RT-1"), NBF_CHALLENGE)
        .await
        .unwrap_err();
    assert_eq!(error.reconnect_claims(), Some(FIXTURE_CLAIMS));
    let error = client
        .refresh_with_claims(&tenant(), &SecretString::from("RT-2"), NBF_CHALLENGE)
        .await
        .unwrap_err();
    assert_eq!(error.reconnect_claims(), Some(NBF_CHALLENGE));
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_keeps_the_challenge_for_the_next_refresh_and_never_the_revoked_token()
{
    let _frozen = freeze_time();
    let server = common::entra().await;
    let client = builder(&server).build().unwrap();
    let (grant, _) = sign_in(&server, &client, None).await;
    let session = session_with_grant(&client, MemoryStore::with("RT-GRANT", 1), grant);
    Mock::given(method("POST"))
        .and(path(refresh_path()))
        .respond_with(ResponseTemplate::new(503).set_body_json(json!({
            "error": "temporarily_unavailable", "error_codes": [90033],
        })))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(refresh_path()))
        .respond_with(refreshed("AT-CAE", "RT-CAE"))
        .mount(&server)
        .await;

    let error = session
        .claims_challenge(&SecretString::from("AT-GRANT"), NBF_CHALLENGE)
        .await
        .unwrap_err();
    // Not the still-unexpired but revoked token: an error to retry.
    assert!(error.is_retryable(), "{error:?}");
    // The 503 holds the identical request back for 5 s (spec §4c) ...
    let held = session.access_token().await.unwrap_err();
    assert!(matches!(held, AuthError::Throttled { .. }), "{held:?}");
    assert_eq!(refresh_bodies(&server).await.len(), 1);
    tokio::time::advance(Duration::from_secs(5)).await;
    // ... then the next refresh still carries the challenge, and once answered, no more.
    let token = session.access_token().await.unwrap();
    assert_eq!(token.secret().expose_secret(), "AT-CAE");
    let bodies = refresh_bodies(&server).await;
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0], bodies[1]);
    assert_eq!(decoded(&bodies[1]["claims"]), nbf_with_cp1());
    tokio::time::advance(Duration::from_secs(2 * 3600)).await;
    session.access_token().await.unwrap();
    let bodies = refresh_bodies(&server).await;
    assert_eq!(bodies.len(), 3);
    assert_eq!(bodies[2]["refresh_token"], "RT-CAE");
    assert_eq!(decoded(&bodies[2]["claims"]), cp1());
}
