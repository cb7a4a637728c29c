//! Refresh grant, rotation, and how every kind of token-endpoint answer is typed
//! (spec §2b, §4a-§4c).

mod common;

use std::time::Duration;

use common::{CLIENT_ID, GRAPH, TENANT, builder, fixture, form, tenant, token_body};
use entra_auth::AuthError;
use entra_auth::secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn token_path() -> String {
    format!("/{TENANT}/oauth2/v2.0/token")
}

async fn answer(server: &MockServer, response: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(response)
        .expect(1)
        .mount(server)
        .await;
}

async fn refresh_error(response: ResponseTemplate) -> AuthError {
    let server = MockServer::start().await;
    answer(&server, response).await;
    let client = builder(&server).build().unwrap();
    client
        .refresh(&tenant(), &SecretString::from("RT-OLD"))
        .await
        .unwrap_err()
}

fn entra_error(error: &str, codes: &[u64], suberror: Option<&str>) -> Value {
    let mut body = json!({
        "error": error,
        "error_description": format!("AADSTS{}: something.\r\nTrace ID: 0000aaaa-11bb-cccc-dd22-eeeeee333333\r\nCorrelation ID: aaaa0000-bb11-2222-33cc-444444dddddd\r\nTimestamp: 2016-01-09 02:02:12Z", codes[0]),
        "error_codes": codes,
        "timestamp": "2016-01-09 02:02:12Z",
        "trace_id": "0000aaaa-11bb-cccc-dd22-eeeeee333333",
        "correlation_id": "aaaa0000-bb11-2222-33cc-444444dddddd",
        "error_uri": format!("https://login.microsoftonline.com/error?code={}", codes[0]),
    });
    if let Some(suberror) = suberror {
        body["suberror"] = json!(suberror);
    }
    body
}

#[tokio::test]
async fn refresh_uses_the_tenant_authority_and_the_rotated_refresh_token_replaces_the_old_one() {
    let server = MockServer::start().await;
    let mut body = token_body("AT-2", Some("RT-NEW"), None, "User.Read.All Group.Read.All");
    body["refresh_in"] = json!("1800");
    answer(&server, ResponseTemplate::new(200).set_body_json(body)).await;
    let client = builder(&server)
        .credential(entra_auth::ClientCredential::secret("app-secret"))
        .build()
        .unwrap();
    let refreshed = client
        .refresh(&tenant(), &SecretString::from("RT-OLD"))
        .await
        .unwrap();
    assert!(refreshed.rotated());
    assert_eq!(refreshed.refresh_token().expose_secret(), "RT-NEW");
    assert_eq!(refreshed.access_token().secret().expose_secret(), "AT-2");
    assert!(refreshed.refresh_at().unwrap() < refreshed.access_token().expires_at());
    assert_eq!(refreshed.scopes(), &["User.Read.All", "Group.Read.All"]);

    let requests = server.received_requests().await.unwrap();
    let sent = form(&requests[0].body);
    assert_eq!(requests[0].url.path(), token_path());
    assert_eq!(sent["grant_type"], "refresh_token");
    assert_eq!(sent["refresh_token"], "RT-OLD");
    assert_eq!(sent["client_id"], CLIENT_ID);
    assert_eq!(sent["client_secret"], "app-secret");
    assert_eq!(
        sent["scope"],
        format!("openid profile offline_access {GRAPH}/User.Read.All {GRAPH}/Group.Read.All")
    );
    assert_eq!(
        serde_json::from_str::<Value>(&sent["claims"]).unwrap(),
        json!({"access_token": {"xms_cc": {"values": ["cp1"]}}})
    );
    assert_eq!(sent.len(), 6);
}

#[tokio::test]
async fn refresh_with_claims_sends_the_claims_challenge() {
    let server = MockServer::start().await;
    answer(
        &server,
        ResponseTemplate::new(200).set_body_json(token_body("AT", None, None, "x")),
    )
    .await;
    let client = builder(&server).build().unwrap();
    let challenge = r#"{"access_token":{"nbf":{"essential":true,"value":"1604106651"}}}"#;
    client
        .refresh_with_claims(&tenant(), &SecretString::from("RT"), challenge)
        .await
        .unwrap();
    let sent = form(&server.received_requests().await.unwrap()[0].body);
    // The challenge, deep-merged with the cp1 declaration (spec §7).
    assert_eq!(
        serde_json::from_str::<Value>(&sent["claims"]).unwrap(),
        json!({"access_token": {
            "nbf": {"essential": true, "value": "1604106651"},
            "xms_cc": {"values": ["cp1"]},
        }})
    );
    assert_eq!(sent["refresh_token"], "RT");
}

#[tokio::test]
async fn refresh_without_a_new_refresh_token_keeps_the_old_one() {
    let server = MockServer::start().await;
    // Also: expires_in as a string, and no scope at all (means the requested ones).
    let body = json!({"access_token": "AT-2", "token_type": "Bearer", "expires_in": "3599"});
    answer(&server, ResponseTemplate::new(200).set_body_json(body)).await;
    let client = builder(&server).build().unwrap();
    let refreshed = client
        .refresh(&tenant(), &SecretString::from("RT-OLD"))
        .await
        .unwrap();
    assert!(!refreshed.rotated());
    assert_eq!(refreshed.refresh_token().expose_secret(), "RT-OLD");
    assert_eq!(refreshed.scopes().len(), 5);
}

/// Spec §4b/§4c: these need a new sign-in whatever the AADSTS number or suberror.
#[tokio::test]
async fn grant_gone_answers_require_reauthorization_and_keep_diagnostics() {
    let cases: [(&str, &[u64], Option<&str>); 9] = [
        ("interaction_required", &[50076], None),
        ("interaction_required", &[50076], Some("basic_action")),
        ("invalid_grant", &[50173], None),
        ("invalid_grant", &[65001], Some("consent_required")),
        ("consent_required", &[65001], None),
        ("invalid_grant", &[70008], None),
        ("invalid_grant", &[70008], Some("bad_token")),
        ("invalid_grant", &[700_082], Some("token_expired")),
        ("login_required", &[50058], None),
    ];
    for (error_code, codes, suberror) in cases {
        let error = refresh_error(
            ResponseTemplate::new(400).set_body_json(entra_error(error_code, codes, suberror)),
        )
        .await;
        let label = format!("{error_code} {codes:?} {suberror:?}");
        assert!(error.requires_reauthorization(), "{label}: {error:?}");
        assert!(!error.is_retryable(), "{label}");
        assert!(!error.is_configuration(), "{label}");
        let entra = error.entra_error().unwrap();
        assert_eq!(entra.error(), error_code);
        assert_eq!(entra.error_codes(), codes);
        assert_eq!(entra.suberror(), suberror);
        assert_eq!(
            entra.trace_id(),
            Some("0000aaaa-11bb-cccc-dd22-eeeeee333333")
        );
        assert_eq!(
            entra.correlation_id(),
            Some("aaaa0000-bb11-2222-33cc-444444dddddd")
        );
        assert_eq!(entra.status(), Some(400));
        assert!(entra.error_uri().is_some());
        assert_eq!(error.status(), Some(400));
    }
}

/// Fixture `token-error-interaction-required-obo.json` carries a claims challenge.
#[tokio::test]
async fn documented_interaction_required_keeps_its_claims_challenge() {
    let body = fixture("token-error-interaction-required-obo.json");
    let error =
        refresh_error(ResponseTemplate::new(400).set_body_raw(body, "application/json")).await;
    assert!(error.requires_reauthorization());
    let entra = error.entra_error().unwrap();
    assert_eq!(entra.error_codes(), &[50079]);
    assert_eq!(
        entra.claims(),
        Some(
            r#"{"access_token":{"polids":{"essential":true,"values":["00aa00aa-bb11-cc22-dd33-44ee44ee44ee"]}}}"#
        )
    );
    assert_eq!(entra.timestamp(), Some("2017-05-01 22:43:20Z"));
}

#[tokio::test]
async fn server_trouble_is_retryable_and_keeps_retry_after() {
    let error = refresh_error(
        ResponseTemplate::new(503)
            .insert_header("Retry-After", "7")
            .set_body_json(entra_error("temporarily_unavailable", &[90033], None)),
    )
    .await;
    assert!(error.is_retryable(), "{error:?}");
    assert!(!error.requires_reauthorization());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(error.status(), Some(503));

    let error = refresh_error(ResponseTemplate::new(500).set_body_json(entra_error(
        "server_error",
        &[90033],
        None,
    )))
    .await;
    assert!(matches!(error, AuthError::Unavailable { .. }), "{error:?}");

    let error = refresh_error(ResponseTemplate::new(429).set_body_json(entra_error(
        "invalid_request",
        &[50196],
        None,
    )))
    .await;
    assert!(error.is_retryable(), "{error:?}");
}

#[tokio::test]
async fn app_misconfiguration_is_a_configuration_error() {
    let cases: [(u16, &str, u64); 5] = [
        (401, "invalid_client", 7_000_215),
        (400, "unauthorized_client", 700_016),
        (400, "invalid_request", 90002),
        (400, "invalid_request", 50011),
        (400, "invalid_request", 90038),
    ];
    for (status, error_code, code) in cases {
        let error = refresh_error(ResponseTemplate::new(status).set_body_json(entra_error(
            error_code,
            &[code],
            None,
        )))
        .await;
        assert!(error.is_configuration(), "{error_code} {code}: {error:?}");
        assert!(!error.is_retryable());
        assert!(!error.requires_reauthorization());
        assert_eq!(error.status(), Some(status));
    }
    // The documented invalid_scope samples, including the one whose timestamp is the
    // literal placeholder "YYYY-MM-DD HH:MM:SSZ".
    for name in [
        "token-error-invalid-scope.json",
        "token-error-invalid-scope-error-uri.json",
        "token-error-invalid-scope-client-credentials.json",
    ] {
        let error = refresh_error(
            ResponseTemplate::new(400).set_body_raw(fixture(name), "application/json"),
        )
        .await;
        assert!(error.is_configuration(), "{name}: {error:?}");
        assert_eq!(error.entra_error().unwrap().error_codes(), &[70011]);
    }
}

#[tokio::test]
async fn unknown_error_codes_are_rejected_requests() {
    let error = refresh_error(ResponseTemplate::new(400).set_body_json(entra_error(
        "invalid_request",
        &[9_002_313],
        None,
    )))
    .await;
    assert!(matches!(error, AuthError::Rejected(_)), "{error:?}");
    assert!(
        !error.is_retryable() && !error.is_configuration() && !error.requires_reauthorization()
    );
}

#[tokio::test]
async fn html_502_from_a_proxy_is_a_retryable_typed_error_without_the_body() {
    let html =
        "<html><head><title>502 Bad Gateway</title></head><body>upstream RT-OLD</body></html>";
    let error = refresh_error(ResponseTemplate::new(502).set_body_raw(html, "text/html")).await;
    let AuthError::UnexpectedResponse {
        status,
        content_type,
        ..
    } = &error
    else {
        panic!("expected UnexpectedResponse, got {error:?}");
    };
    assert_eq!(*status, 502);
    assert_eq!(content_type.as_deref(), Some("text/html"));
    assert!(error.is_retryable());
    let shown = format!("{error} {error:?}");
    assert!(
        !shown.contains("<html") && !shown.contains("RT-OLD"),
        "{shown}"
    );
}

#[tokio::test]
async fn truncated_json_is_a_typed_error_without_token_content() {
    let truncated = r#"{"access_token":"SECRET-ACCESS-TOKEN","token_type":"Bearer","refresh_token":"SECRET-REFRESH","expi"#;
    let error =
        refresh_error(ResponseTemplate::new(200).set_body_raw(truncated, "application/json")).await;
    assert!(
        matches!(&error, AuthError::UnexpectedResponse { status: 200, detail, .. } if detail.contains("truncated")),
        "{error:?}"
    );
    assert!(error.is_retryable());
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("SECRET"), "{shown}");
}

#[tokio::test]
async fn success_body_of_the_wrong_shape_names_the_field_without_its_value() {
    let body = r#"{"access_token":12345,"token_type":"Bearer","refresh_token":"SECRET-REFRESH"}"#;
    let error =
        refresh_error(ResponseTemplate::new(200).set_body_raw(body, "application/json")).await;
    let AuthError::UnexpectedResponse { detail, .. } = &error else {
        panic!("expected UnexpectedResponse, got {error:?}");
    };
    assert!(detail.contains("access_token"), "{detail}");
    let shown = format!("{error} {error:?}");
    assert!(
        !shown.contains("SECRET") && !shown.contains("12345"),
        "{shown}"
    );

    let error = refresh_error(
        ResponseTemplate::new(400).set_body_raw(r#"{"message":"nope"}"#, "application/json"),
    )
    .await;
    assert!(
        matches!(error, AuthError::UnexpectedResponse { status: 400, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn token_endpoint_redirect_is_not_followed() {
    let server = MockServer::start().await;
    answer(
        &server,
        ResponseTemplate::new(307).insert_header("Location", format!("{}/elsewhere", server.uri())),
    )
    .await;
    Mock::given(path("/elsewhere"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let client = builder(&server).build().unwrap();
    let error = client
        .refresh(&tenant(), &SecretString::from("RT-OLD"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, AuthError::UnexpectedResponse { status: 307, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn timeout_and_refused_connection_are_retryable_transport_errors() {
    let server = MockServer::start().await;
    answer(
        &server,
        ResponseTemplate::new(200)
            .set_body_json(token_body("AT", None, None, "x"))
            .set_delay(Duration::from_secs(2)),
    )
    .await;
    let client = builder(&server)
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let error = client
        .refresh(&tenant(), &SecretString::from("RT"))
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    assert!(error.is_retryable());

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let client = entra_auth::EntraClient::builder(CLIENT_ID)
        .cloud(entra_auth::Cloud::custom(&format!("http://127.0.0.1:{port}"), GRAPH).unwrap())
        .build()
        .unwrap();
    let error = client
        .refresh(&tenant(), &SecretString::from("RT"))
        .await
        .unwrap_err();
    assert!(matches!(error, AuthError::Transport { .. }), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn huge_expires_in_and_refresh_in_saturate_instead_of_panicking() {
    let server = MockServer::start().await;
    let mut body = token_body("AT-2", Some("RT-NEW"), None, "User.Read.All");
    body["expires_in"] = json!(u64::MAX);
    body["refresh_in"] = json!(u64::MAX.to_string());
    answer(&server, ResponseTemplate::new(200).set_body_json(body)).await;
    let client = builder(&server).build().unwrap();
    let refreshed = client
        .refresh(&tenant(), &SecretString::from("RT-OLD"))
        .await
        .unwrap();
    assert_eq!(refreshed.access_token().secret().expose_secret(), "AT-2");
    assert!(refreshed.access_token().expires_at().year() >= 9999);
    assert!(refreshed.refresh_at().unwrap().year() >= 9999);
    let requests = server.received_requests().await.unwrap();
    assert_eq!(form(&requests[0].body)["refresh_token"], "RT-OLD");
}

#[tokio::test]
async fn huge_retry_after_is_capped_at_an_hour() {
    let error = refresh_error(
        ResponseTemplate::new(503)
            .insert_header("Retry-After", u64::MAX.to_string())
            .set_body_json(entra_error("temporarily_unavailable", &[90033], None)),
    )
    .await;
    assert!(error.is_retryable(), "{error:?}");
    let retry_after = error.retry_after().unwrap();
    assert_eq!(retry_after, Duration::from_secs(3600));
    // What a caller does with it must not overflow.
    let _ = tokio::time::Instant::now() + retry_after;
}

#[tokio::test]
async fn refresh_answer_whose_token_type_is_not_bearer_is_refused() {
    // The documented refresh answer (fixture), with a proof-of-possession type: its tokens
    // must not be handed out as bearer tokens (spec §2d: `token_type` is always Bearer).
    let mut body: Value = serde_json::from_str(&fixture("token-response-refresh.json")).unwrap();
    body["token_type"] = json!("pop");
    let error = refresh_error(ResponseTemplate::new(200).set_body_json(body)).await;
    assert!(
        matches!(&error, AuthError::UnsupportedTokenType { endpoint } if *endpoint == token_path()),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    assert!(!error.requires_reauthorization());
    assert_eq!(
        error.to_string(),
        format!("{} answered a token type other than Bearer", token_path())
    );

    // `bearer` in lower case (the docs' table) is accepted.
    let mut body: Value = serde_json::from_str(&fixture("token-response-refresh.json")).unwrap();
    body["token_type"] = json!("bearer");
    let server = MockServer::start().await;
    answer(&server, ResponseTemplate::new(200).set_body_json(body)).await;
    let refreshed = builder(&server)
        .build()
        .unwrap()
        .refresh(&tenant(), &SecretString::from("RT-OLD"))
        .await
        .unwrap();
    assert!(refreshed.rotated());
}
