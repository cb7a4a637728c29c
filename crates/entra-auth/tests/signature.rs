//! Id-token signatures for a custom cloud: discovery document → `jwks_uri` → RS256 keys,
//! cached per client (1 hour, the last good keys up to 24 hours while a refresh fails),
//! fetched once more for an unknown `kid` (not within 5 minutes of the last fetch), and
//! every refusal typed (Microsoft's signing-key-rollover.md; spec §5a).

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{
    KEYS_PATH, KID, REDIRECT, builder, claims, discovery_document, freeze_time,
    granted_default_scopes, jwk, mint, other_signing_key, sign_with, signing_key, token_body,
};
use entra_auth::secrecy::ExposeSecret as _;
use entra_auth::{AuthError, CallbackParams, EntraClient, Grant, IdTokenError};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN_PATH: &str = "/organizations/oauth2/v2.0/token";
const DISCOVERY_PATH: &str = "/organizations/v2.0/.well-known/openid-configuration";

/// Serves the documented discovery document, `times` times.
async fn discovery(server: &MockServer, times: u64) {
    let mock = Mock::given(method("GET"))
        .and(path(DISCOVERY_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(discovery_document(server)));
    let mock = if times == 0 {
        mock
    } else {
        mock.up_to_n_times(times)
    };
    mock.expect(times).mount(server).await;
}

/// Answers the next fetch of the key set (once) with `response`.
async fn keys_once(server: &MockServer, response: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path(KEYS_PATH))
        .respond_with(response)
        .up_to_n_times(1)
        .expect(1)
        .mount(server)
        .await;
}

fn key_set(keys: &[Value]) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({ "keys": keys }))
}

/// One sign-in whose code redemption answers `id_token` (made from the claims with the
/// pending authorization's nonce).
async fn sign_in(
    server: &MockServer,
    client: &EntraClient,
    id_token: impl FnOnce(&Value) -> String,
) -> Result<Grant, AuthError> {
    let (_, pending) = client.authorization_request().build().unwrap().into_parts();
    let nonce = serde_json::to_value(&pending).unwrap()["nonce"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = id_token(&claims(server, Some(&nonce)));
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body(
            "AT",
            Some("RT"),
            Some(&token),
            &granted_default_scopes(),
        )))
        .up_to_n_times(1)
        .expect(1)
        .mount(server)
        .await;
    let callback = CallbackParams::from_redirect_url(&format!(
        "{REDIRECT}?code=the-code&state={}",
        pending.state().expose_secret()
    ))
    .unwrap();
    client.complete_authorization(&pending, &callback).await
}

async fn count(server: &MockServer, path: &str) -> usize {
    common::requests_to(server, path).await.len()
}

fn invalid_id_token(result: Result<Grant, AuthError>) -> IdTokenError {
    match result {
        Err(AuthError::InvalidIdToken(reason)) => reason,
        other => panic!("expected InvalidIdToken, got {other:?}"),
    }
}

#[tokio::test]
async fn a_signed_id_token_is_accepted_and_the_keys_are_fetched_once_per_client() {
    let server = MockServer::start().await;
    discovery(&server, 1).await;
    keys_once(&server, key_set(&[jwk(signing_key(), KID)])).await;
    let client = builder(&server).build().unwrap();
    let grant = sign_in(&server, &client, mint).await.unwrap();
    assert_eq!(grant.identity().object_id.as_str(), common::OID);
    // A clone shares the cache: no second fetch.
    let grant = sign_in(&server, &client.clone(), mint).await.unwrap();
    assert_eq!(grant.tenant_id().as_str(), common::TENANT);
    assert_eq!(count(&server, DISCOVERY_PATH).await, 1);
    assert_eq!(count(&server, KEYS_PATH).await, 1);
    let keys = &common::requests_to(&server, KEYS_PATH).await[0];
    assert_eq!(keys.headers.get("accept").unwrap(), "application/json");
}

#[tokio::test]
async fn a_wrong_signature_is_refused() {
    let server = MockServer::start().await;
    discovery(&server, 1).await;
    keys_once(&server, key_set(&[jwk(signing_key(), KID)])).await;
    let client = builder(&server).build().unwrap();
    // Another key under the published kid.
    let other = other_signing_key();
    let reason =
        invalid_id_token(sign_in(&server, &client, |claims| sign_with(other, KID, claims)).await);
    assert_eq!(reason, IdTokenError::BadSignature);
    // A validly signed token whose claims were changed afterwards (another oid).
    let reason = invalid_id_token(
        sign_in(&server, &client, |claims| {
            let token = mint(claims);
            let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
            let mut edited = claims.clone();
            edited["oid"] = json!("11111111-2222-3333-4444-555555555555");
            parts[1] = URL_SAFE_NO_PAD.encode(edited.to_string());
            parts.join(".")
        })
        .await,
    );
    assert_eq!(reason, IdTokenError::BadSignature);
    // No signature at all.
    let reason = invalid_id_token(
        sign_in(&server, &client, |claims| {
            let token = mint(claims);
            format!("{}.", &token[..token.rfind('.').unwrap()])
        })
        .await,
    );
    assert_eq!(reason, IdTokenError::BadSignature);
}

#[tokio::test]
async fn alg_none_and_hs256_with_the_public_key_are_refused_before_any_key_is_fetched() {
    let server = MockServer::start().await;
    discovery(&server, 0).await;
    let client = builder(&server).build().unwrap();
    // `alg: none`, unsigned.
    let reason = invalid_id_token(
        sign_in(&server, &client, |claims| {
            let header = URL_SAFE_NO_PAD
                .encode(br#"{"typ":"JWT","alg":"none","kid":"entra-auth-test-key"}"#);
            format!("{header}.{}.", URL_SAFE_NO_PAD.encode(claims.to_string()))
        })
        .await,
    );
    assert_eq!(reason, IdTokenError::UnsupportedAlgorithm("none".into()));
    // HS256 keyed with the public key (PEM and the JWK's modulus): the classic confusion.
    for secret in [
        signing_key().public_pem.clone().into_bytes(),
        URL_SAFE_NO_PAD.decode(&signing_key().n).unwrap(),
    ] {
        let reason = invalid_id_token(
            sign_in(&server, &client, |claims| {
                let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
                header.kid = Some(KID.into());
                jsonwebtoken::encode(
                    &header,
                    claims,
                    &jsonwebtoken::EncodingKey::from_secret(&secret),
                )
                .unwrap()
            })
            .await,
        );
        assert_eq!(reason, IdTokenError::UnsupportedAlgorithm("HS256".into()));
    }
    assert_eq!(count(&server, KEYS_PATH).await, 0);
}

/// Paused time, frozen: only `advance` moves the cache's clock while loopback HTTP runs.
#[tokio::test(start_paused = true)]
async fn an_unknown_kid_fetches_the_keys_again_once_but_not_within_five_minutes() {
    let _frozen = freeze_time();
    let server = MockServer::start().await;
    discovery(&server, 3).await;
    let rolled = other_signing_key();
    // First fetch: the current key; second: the current and the rolled-over one; third:
    // the same again.
    keys_once(&server, key_set(&[jwk(signing_key(), KID)])).await;
    keys_once(
        &server,
        key_set(&[jwk(signing_key(), KID), jwk(rolled, "rolled")]),
    )
    .await;
    keys_once(
        &server,
        key_set(&[jwk(signing_key(), KID), jwk(rolled, "rolled")]),
    )
    .await;
    let client = builder(&server).build().unwrap();

    sign_in(&server, &client, mint).await.unwrap();
    assert_eq!(count(&server, KEYS_PATH).await, 1);

    // Within 5 minutes of that fetch, an unknown kid is refused without asking again.
    tokio::time::advance(Duration::from_secs(299)).await;
    let reason = invalid_id_token(
        sign_in(&server, &client, |claims| {
            sign_with(rolled, "rolled", claims)
        })
        .await,
    );
    assert_eq!(
        reason,
        IdTokenError::UnknownSigningKey {
            kid: "rolled".into()
        }
    );
    assert_eq!(count(&server, KEYS_PATH).await, 1);

    // Later, the same token makes one fetch, which finds the rolled-over key.
    tokio::time::advance(Duration::from_secs(2)).await;
    let grant = sign_in(&server, &client, |claims| {
        sign_with(rolled, "rolled", claims)
    })
    .await
    .unwrap();
    assert_eq!(grant.identity().object_id.as_str(), common::OID);
    assert_eq!(count(&server, KEYS_PATH).await, 2);

    // A kid no key set has: one more fetch (5 minutes on), then refused.
    tokio::time::advance(Duration::from_secs(301)).await;
    let reason = invalid_id_token(
        sign_in(&server, &client, |claims| {
            sign_with(rolled, "forged", claims)
        })
        .await,
    );
    assert_eq!(
        reason,
        IdTokenError::UnknownSigningKey {
            kid: "forged".into()
        }
    );
    assert_eq!(count(&server, KEYS_PATH).await, 3);
    assert_eq!(count(&server, DISCOVERY_PATH).await, 3);
}

#[tokio::test(start_paused = true)]
async fn keys_are_refreshed_after_an_hour_and_the_last_good_ones_serve_up_to_a_day() {
    let _frozen = freeze_time();
    let server = MockServer::start().await;
    discovery(&server, 3).await;
    keys_once(&server, key_set(&[jwk(signing_key(), KID)])).await;
    keys_once(&server, ResponseTemplate::new(503).set_body_json(json!({}))).await;
    keys_once(&server, ResponseTemplate::new(503).set_body_json(json!({}))).await;
    let client = builder(&server).build().unwrap();
    sign_in(&server, &client, mint).await.unwrap();

    // Used as they are for an hour.
    tokio::time::advance(Duration::from_secs(3599)).await;
    sign_in(&server, &client, mint).await.unwrap();
    assert_eq!(count(&server, KEYS_PATH).await, 1);

    // Then fetched again; the refresh fails, the last good keys still serve.
    tokio::time::advance(Duration::from_secs(1)).await;
    sign_in(&server, &client, mint).await.unwrap();
    assert_eq!(count(&server, KEYS_PATH).await, 2);

    // After 24 hours they are too old: the failed fetch is the answer.
    tokio::time::advance(Duration::from_secs(23 * 3600)).await;
    let error = sign_in(&server, &client, mint).await.unwrap_err();
    assert!(
        matches!(
            &error,
            AuthError::UnexpectedResponse { endpoint, status: 503, .. } if endpoint == KEYS_PATH
        ),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert_eq!(count(&server, KEYS_PATH).await, 3);
}

/// The discovery document's answer and, if it gets that far, the key set's.
type Answers = fn(&MockServer) -> (ResponseTemplate, Option<ResponseTemplate>);

#[tokio::test]
async fn key_fetch_failures_are_typed_errors() {
    let cases: [(&str, Answers); 5] = [
        ("discovery 404", |_| {
            (
                ResponseTemplate::new(404).set_body_json(json!({"error": "not_found"})),
                None,
            )
        }),
        ("discovery html", |_| {
            (
                ResponseTemplate::new(200).set_body_raw("<html>", "text/html"),
                None,
            )
        }),
        ("no jwks_uri", |_| {
            (
                ResponseTemplate::new(200).set_body_json(json!({"issuer": "x"})),
                None,
            )
        }),
        ("jwks_uri over http off loopback", |_| {
            (
                ResponseTemplate::new(200)
                    .set_body_json(json!({"jwks_uri": "http://login.example.com/keys"})),
                None,
            )
        }),
        ("keys not a key set", |server| {
            (
                ResponseTemplate::new(200).set_body_json(discovery_document(server)),
                Some(ResponseTemplate::new(200).set_body_json(json!({"keys": "none"}))),
            )
        }),
    ];
    for (name, answers) in cases {
        let server = MockServer::start().await;
        let (document, keys) = answers(&server);
        Mock::given(method("GET"))
            .and(path(DISCOVERY_PATH))
            .respond_with(document)
            .expect(1)
            .mount(&server)
            .await;
        if let Some(keys) = keys {
            keys_once(&server, keys).await;
        }
        let client = builder(&server).build().unwrap();
        let error = sign_in(&server, &client, mint).await.unwrap_err();
        let AuthError::UnexpectedResponse {
            endpoint,
            status,
            detail,
            ..
        } = &error
        else {
            panic!("{name}: expected UnexpectedResponse, got {error:?}");
        };
        let (expected_endpoint, expected_status) = match name {
            "discovery 404" => (DISCOVERY_PATH, 404),
            "keys not a key set" => (KEYS_PATH, 200),
            _ => (DISCOVERY_PATH, 200),
        };
        assert_eq!(
            (endpoint.as_str(), *status),
            (expected_endpoint, expected_status),
            "{name}"
        );
        if name == "jwks_uri over http off loopback" {
            assert_eq!(
                detail,
                "jwks_uri is not an https url (nor http on loopback)"
            );
            assert_eq!(count(&server, "/keys").await, 0);
        }
        // No token material in the error.
        assert!(!format!("{error:?} {error}").contains("eyJ"), "{name}");
    }

    // The key set's host does not answer: a retryable transport error.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(DISCOVERY_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"jwks_uri": format!("http://127.0.0.1:{closed_port}/keys")})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).build().unwrap();
    let error = sign_in(&server, &client, mint).await.unwrap_err();
    assert!(
        matches!(&error, AuthError::Transport { endpoint, .. } if endpoint == "/keys"),
        "{error:?}"
    );
    assert!(error.is_retryable());
}

#[tokio::test(start_paused = true)]
async fn the_device_code_flow_checks_the_signature_too() {
    let _frozen = freeze_time();
    let server = MockServer::start().await;
    discovery(&server, 1).await;
    keys_once(&server, key_set(&[jwk(signing_key(), KID)])).await;
    Mock::given(method("POST"))
        .and(path("/organizations/oauth2/v2.0/devicecode"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "device_code": "DEVICE-CODE", "user_code": "ABCD-EFGH",
            "verification_uri": "https://microsoft.com/devicelogin",
            "expires_in": 900, "interval": 1, "message": "Enter ABCD-EFGH",
        })))
        .expect(1)
        .mount(&server)
        .await;
    let forged = sign_with(other_signing_key(), KID, &claims(&server, None));
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body(
            "AT",
            Some("RT"),
            Some(&forged),
            &granted_default_scopes(),
        )))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).build().unwrap();
    let device = client
        .start_device_code(&entra_auth::Authority::organizations())
        .await
        .unwrap();
    let poll = tokio::spawn({
        let client = client.clone();
        async move { client.poll_device_code(&device).await }
    });
    // The first poll is due one interval after the start.
    tokio::time::advance(Duration::from_secs(1)).await;
    let error = poll.await.unwrap().unwrap_err();
    assert!(
        matches!(error, AuthError::InvalidIdToken(IdTokenError::BadSignature)),
        "{error:?}"
    );
}
