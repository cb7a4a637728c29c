//! Tracing output holds no secret. Alone in its test binary: tracing caches callsite
//! interest process-wide, so other tests running without a subscriber would hide events.

mod common;

use std::sync::Arc;

use common::{MemoryStore, builder, claims, mint, token_body};
use entra_auth::secrecy::SecretString;
use entra_auth::{CallbackParams, ClientCredential, TokenSession};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

const SECRETS: [&str; 5] = [
    "SECRET-ACCESS",
    "SECRET-REFRESH",
    "SECRET-CODE",
    "SECRET-CLIENT",
    "SECRET-ROTATED",
];

/// Captures everything logged at TRACE level, from this crate and its HTTP stack.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn tracing_output_at_trace_level_shows_no_secret() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = common::entra().await;
    let client = builder(&server)
        .credential(ClientCredential::secret("SECRET-CLIENT"))
        .build()
        .unwrap();
    let request = client.authorization_request().build().unwrap();
    let serialized = serde_json::to_value(request.pending()).unwrap();
    let nonce = serialized["nonce"].as_str().unwrap().to_owned();
    let state = serialized["state"].as_str().unwrap().to_owned();
    let verifier = serialized["pkce_verifier"].as_str().unwrap().to_owned();
    Mock::given(method("POST"))
        .and(path("/organizations/oauth2/v2.0/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body(
            "SECRET-ACCESS",
            Some("SECRET-REFRESH"),
            Some(&mint(&claims(&server, Some(&nonce)))),
            &common::granted_default_scopes(),
        )))
        .mount(&server)
        .await;
    let callback = CallbackParams::from_query(&format!("code=SECRET-CODE&state={state}")).unwrap();
    let grant = client
        .complete_authorization(request.pending(), &callback)
        .await
        .unwrap();

    let refresh_path = format!("/{}/oauth2/v2.0/token", common::TENANT);
    Mock::given(method("POST"))
        .and(path(refresh_path.clone()))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body(
            "SECRET-ACCESS",
            Some("SECRET-ROTATED"),
            None,
            "x",
        )))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(refresh_path))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant", "error_codes": [70008], "trace_id": "t"
        })))
        .mount(&server)
        .await;
    let store = MemoryStore::with("SECRET-REFRESH", 1);
    let session = TokenSession::builder(client.clone(), grant.tenant_id().clone(), store)
        .build()
        .unwrap();
    let token = session.access_token().await.unwrap();
    session
        .claims_challenge(
            token.secret(),
            r#"{"access_token":{"nbf":{"essential":true,"value":"1604106651"}}}"#,
        )
        .await
        .unwrap();
    session.invalidate();
    assert!(
        session
            .access_token()
            .await
            .unwrap_err()
            .requires_reauthorization()
    );
    // The identical refresh is answered from the throttle's memory.
    let again = client
        .refresh(grant.tenant_id(), &SecretString::from("SECRET-ROTATED"))
        .await
        .unwrap_err();
    assert!(again.requires_reauthorization());

    let output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        output.contains("sign-in completed"),
        "nothing captured: {output}"
    );
    assert!(output.contains("reauthorization required"));
    assert!(output.contains("refreshed access token"));
    assert!(output.contains("answering a claims challenge"));
    assert!(output.contains("holding back identical token requests"));
    assert!(output.contains("answered with its recent http 400"));
    for secret in SECRETS
        .iter()
        .map(|s| (*s).to_owned())
        .chain([nonce, state, verifier])
    {
        assert!(!output.contains(&secret), "tracing shows {secret}");
    }
}
