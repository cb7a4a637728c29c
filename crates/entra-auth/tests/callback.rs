//! Callback: state, typed redirect errors, code exchange (secret and certificate), id token
//! checks, scope coverage (spec §1a, §2a, §2c, §5a).

mod common;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{
    CLIENT_ID, FixedClock, GRAPH, OID, REDIRECT, TENANT, builder, claims, fixture,
    fixture_redirect, form, granted_default_scopes, mint, query, token_body,
};
use entra_auth::secrecy::ExposeSecret as _;
use entra_auth::{
    AuthError, CallbackParams, CertificateCredential, ClientCredential, Cloud, EntraClient,
    IdTokenError, PendingAuthorization,
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN_PATH: &str = "/organizations/oauth2/v2.0/token";

fn secret(pending: &PendingAuthorization, name: &str) -> String {
    serde_json::to_value(pending).unwrap()[name]
        .as_str()
        .unwrap()
        .to_owned()
}

fn callback(pending: &PendingAuthorization, code: &str) -> CallbackParams {
    CallbackParams::from_redirect_url(&format!(
        "{REDIRECT}?code={code}&state={}&session_state=abc",
        pending.state().expose_secret()
    ))
    .unwrap()
}

async fn token_mock(server: &MockServer, body: Value, expect: u64) {
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(expect)
        .mount(server)
        .await;
}

async fn no_token_requests(server: &MockServer) {
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(server)
        .await;
}

#[tokio::test]
async fn state_mismatch_makes_no_token_request() {
    let server = common::entra().await;
    no_token_requests(&server).await;
    let client = builder(&server).build().unwrap();
    let (_, pending) = client.authorization_request().build().unwrap().into_parts();
    let forged = CallbackParams::from_query("code=stolen&state=not-the-state").unwrap();
    let error = client
        .complete_authorization(&pending, &forged)
        .await
        .unwrap_err();
    assert!(matches!(error, AuthError::StateMismatch), "{error}");
    // A state differing only in its last character is refused too.
    let mut state = pending.state().expose_secret().to_owned();
    state.pop();
    state.push('!');
    let near = CallbackParams::from_query(&format!("code=c&state={state}")).unwrap();
    assert!(matches!(
        client.complete_authorization(&pending, &near).await,
        Err(AuthError::StateMismatch)
    ));
}

#[tokio::test]
async fn code_without_state_is_refused_without_token_request() {
    let server = common::entra().await;
    no_token_requests(&server).await;
    let client = builder(&server).build().unwrap();
    let (_, pending) = client.authorization_request().build().unwrap().into_parts();
    // The documented success redirect (fixture) carries state=12345, not ours.
    let documented =
        CallbackParams::from_redirect_url(&fixture_redirect("authorize-success-redirect.txt"))
            .unwrap();
    assert_eq!(documented.state(), Some("12345"));
    assert!(matches!(
        client.complete_authorization(&pending, &documented).await,
        Err(AuthError::StateMismatch)
    ));
    let no_state = CallbackParams::from_query("code=abc").unwrap();
    assert!(matches!(
        client.complete_authorization(&pending, &no_state).await,
        Err(AuthError::StateMismatch)
    ));
}

#[tokio::test]
async fn documented_access_denied_redirect_is_a_declined_error() {
    let server = common::entra().await;
    no_token_requests(&server).await;
    let client = builder(&server).build().unwrap();
    let (_, pending) = client.authorization_request().build().unwrap().into_parts();
    let redirect = fixture_redirect("authorize-error-redirect.txt");
    let callback = CallbackParams::from_redirect_url(&redirect).unwrap();
    let error = client
        .complete_authorization(&pending, &callback)
        .await
        .unwrap_err();
    let AuthError::AuthorizationDeclined(entra) = &error else {
        panic!("expected AuthorizationDeclined, got {error:?}");
    };
    assert_eq!(entra.error(), "access_denied");
    assert_eq!(
        entra.description(),
        Some("the user canceled the authentication")
    );
    assert!(!error.requires_reauthorization());
}

#[tokio::test]
async fn consent_required_redirect_asks_for_admin_approval_with_a_forwardable_link() {
    let server = common::entra().await;
    no_token_requests(&server).await;
    let client = builder(&server).build().unwrap();
    let (_, pending) = client.authorization_request().build().unwrap().into_parts();
    let state = pending.state().expose_secret().to_owned();
    for query_text in [
        format!("error=consent_required&error_description=AADSTS65001%3a+no+consent&state={state}"),
        format!(
            "error=access_denied&error_description=AADSTS90094%3a+The+grant+requires+admin+permission.&state={state}"
        ),
    ] {
        let callback = CallbackParams::from_query(&query_text).unwrap();
        let error = client
            .complete_authorization(&pending, &callback)
            .await
            .unwrap_err();
        let AuthError::AdminApprovalRequired {
            error: entra,
            admin_consent_url,
        } = &error
        else {
            panic!("expected AdminApprovalRequired, got {error:?}");
        };
        assert!(!entra.error_codes().is_empty());
        assert_eq!(
            admin_consent_url.as_str().split('?').next().unwrap(),
            format!("{}/organizations/v2.0/adminconsent", server.uri())
        );
        let params = query(admin_consent_url);
        assert_eq!(params["client_id"], CLIENT_ID);
        assert_eq!(params["scope"], format!("{GRAPH}/.default"));
        assert_eq!(params["redirect_uri"], REDIRECT);
    }
}

#[tokio::test]
async fn other_redirect_errors_are_authorization_failed() {
    let server = common::entra().await;
    no_token_requests(&server).await;
    let client = builder(&server).build().unwrap();
    let (_, pending) = client.authorization_request().build().unwrap().into_parts();
    let state = pending.state().expose_secret().to_owned();
    for code in ["invalid_request", "server_error", "interaction_required"] {
        let callback = CallbackParams::from_query(&format!(
            "error={code}&error_description=AADSTS50011%3a+x&state={state}"
        ))
        .unwrap();
        let error = client
            .complete_authorization(&pending, &callback)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, AuthError::AuthorizationFailed(entra) if entra.error() == code),
            "{error:?}"
        );
    }
}

#[tokio::test]
async fn expired_pending_authorization_makes_no_token_request() {
    let server = common::entra().await;
    no_token_requests(&server).await;
    let start = OffsetDateTime::now_utc();
    let before = builder(&server)
        .clock(Arc::new(FixedClock(start)))
        .build()
        .unwrap();
    let (_, pending) = before.authorization_request().build().unwrap().into_parts();
    let after = builder(&server)
        .clock(Arc::new(FixedClock(start + time::Duration::seconds(601))))
        .build()
        .unwrap();
    let error = after
        .complete_authorization(&pending, &callback(&pending, "code"))
        .await
        .unwrap_err();
    assert!(matches!(error, AuthError::AuthorizationExpired), "{error}");
}

#[tokio::test]
async fn code_exchange_with_client_secret_sends_the_exact_form_and_returns_the_grant() {
    let server = common::entra().await;
    let client = builder(&server)
        .credential(ClientCredential::secret("s3cr3t+/="))
        .build()
        .unwrap();
    let (_, pending) = client.authorization_request().build().unwrap().into_parts();
    let id_token = mint(&claims(&server, Some(&secret(&pending, "nonce"))));
    token_mock(
        &server,
        token_body(
            "AT-1",
            Some("RT-1"),
            Some(&id_token),
            &granted_default_scopes(),
        ),
        1,
    )
    .await;

    let grant = client
        .complete_authorization(&pending, &callback(&pending, "the-code"))
        .await
        .unwrap();

    // The code redemption, then the custom cloud's discovery document and keys (once
    // each) to check the id token's signature.
    let requests = server.received_requests().await.unwrap();
    let paths: Vec<&str> = requests.iter().map(|request| request.url.path()).collect();
    assert_eq!(
        paths,
        [
            TOKEN_PATH,
            "/organizations/v2.0/.well-known/openid-configuration",
            common::KEYS_PATH
        ]
    );
    let request = &requests[0];
    assert_eq!(request.url.path(), TOKEN_PATH);
    assert_eq!(
        request.headers.get("content-type").unwrap(),
        "application/x-www-form-urlencoded"
    );
    let sent = form(&request.body);
    let expected: Vec<(&str, String)> = vec![
        // cp1 is declared by default (spec §7).
        (
            "claims",
            r#"{"access_token":{"xms_cc":{"values":["cp1"]}}}"#.to_owned(),
        ),
        ("client_id", CLIENT_ID.to_owned()),
        ("client_secret", "s3cr3t+/=".to_owned()),
        ("code", "the-code".to_owned()),
        ("code_verifier", secret(&pending, "pkce_verifier")),
        ("grant_type", "authorization_code".to_owned()),
        ("redirect_uri", REDIRECT.to_owned()),
        ("scope", pending.scopes().join(" ")),
    ];
    assert_eq!(
        sent,
        expected
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect()
    );

    assert_eq!(grant.tenant_id().as_str(), TENANT);
    assert_eq!(grant.identity().object_id.as_str(), OID);
    assert_eq!(
        grant.identity().preferred_username.as_deref(),
        Some("admin@contoso.onmicrosoft.com")
    );
    assert_eq!(grant.identity().name.as_deref(), Some("Megan Bowen"));
    assert_eq!(grant.access_token().secret().expose_secret(), "AT-1");
    assert_eq!(grant.refresh_token().expose_secret(), "RT-1");
    assert!(grant.scopes().contains(&format!("{GRAPH}/User.Read.All")));
    let lifetime = grant.access_token().expires_at() - OffsetDateTime::now_utc();
    assert!(lifetime > time::Duration::seconds(3500) && lifetime <= time::Duration::seconds(3599));
}

#[tokio::test]
async fn form_post_callback_body_completes_the_sign_in() {
    let server = common::entra().await;
    let client = builder(&server).build().unwrap();
    let (_, pending) = client.authorization_request().build().unwrap().into_parts();
    let id_token = mint(&claims(&server, Some(&secret(&pending, "nonce"))));
    token_mock(
        &server,
        token_body("AT", Some("RT"), Some(&id_token), &granted_default_scopes()),
        1,
    )
    .await;
    let body = format!("code=abc&state={}", pending.state().expose_secret());
    let callback = CallbackParams::from_form_body(&body).unwrap();
    let grant = client
        .complete_authorization(&pending, &callback)
        .await
        .unwrap();
    assert_eq!(grant.access_token().secret().expose_secret(), "AT");
    let sent = form(&server.received_requests().await.unwrap()[0].body);
    assert_eq!(sent["code"], "abc");
    // A public client sends no secret and no assertion.
    assert!(!sent.contains_key("client_secret"));
    assert!(!sent.contains_key("client_assertion"));
}

#[tokio::test]
async fn code_exchange_with_certificate_sends_a_ps256_assertion_signed_by_the_key() {
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
    let thumbprint = URL_SAFE_NO_PAD.encode(Sha256::digest(certificate.der()));
    assert_eq!(credential.thumbprint_sha256(), thumbprint);

    let server = common::entra().await;
    let client = builder(&server)
        .credential(ClientCredential::Certificate(credential))
        .build()
        .unwrap();
    let (_, pending) = client.authorization_request().build().unwrap().into_parts();
    let id_token = mint(&claims(&server, Some(&secret(&pending, "nonce"))));
    token_mock(
        &server,
        token_body("AT", Some("RT"), Some(&id_token), &granted_default_scopes()),
        1,
    )
    .await;
    let started = OffsetDateTime::now_utc().unix_timestamp();
    let grant = client
        .complete_authorization(&pending, &callback(&pending, "code"))
        .await
        .unwrap();
    // A refresh later carries a fresh assertion with its own jti.
    let token_server = format!("{}/{TENANT}/oauth2/v2.0/token", server.uri());
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body("AT2", None, None, "x")))
        .expect(1)
        .mount(&server)
        .await;
    client
        .refresh(grant.tenant_id(), grant.refresh_token())
        .await
        .unwrap();

    let requests = common::entra_requests(&server).await;
    let verify = |body: &[u8], audience: &str| -> Value {
        let sent = form(body);
        assert!(!sent.contains_key("client_secret"));
        assert_eq!(sent["client_id"], CLIENT_ID);
        assert_eq!(
            sent["client_assertion_type"],
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        );
        let assertion = &sent["client_assertion"];
        let header = jsonwebtoken::decode_header(assertion).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::PS256);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(header.x5t_s256.as_deref(), Some(thumbprint.as_str()));
        let raw_header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(assertion.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(raw_header["x5t#S256"], json!(thumbprint));
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::PS256);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[CLIENT_ID]);
        validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
        let decoded = jsonwebtoken::decode::<Value>(
            assertion,
            &jsonwebtoken::DecodingKey::from_rsa_pem(key.public_key_pem().as_bytes()).unwrap(),
            &validation,
        )
        .expect("assertion signature verifies with the certificate's key");
        let claims = decoded.claims;
        assert_eq!(claims["sub"], json!(CLIENT_ID));
        let nbf = claims["nbf"].as_i64().unwrap();
        assert_eq!(claims["iat"].as_i64().unwrap(), nbf);
        assert!(nbf >= started && nbf <= started + 60);
        assert!(claims["exp"].as_i64().unwrap() - nbf <= 600);
        uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).unwrap();
        claims
    };
    let first = verify(&requests[0].body, &format!("{}{TOKEN_PATH}", server.uri()));
    let second = verify(&requests[1].body, &token_server);
    assert_ne!(first["jti"], second["jti"]);
}

#[tokio::test]
async fn id_token_with_wrong_audience_party_ids_issuer_nonce_or_expiry_is_refused() {
    type Edit = fn(&mut Value, &str);
    let server = common::entra().await;
    let client = builder(&server).build().unwrap();
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let cases: [(&str, Edit); 11] = [
        ("wrong aud", |c, _| {
            c["aud"] = json!("11111111-1111-1111-1111-111111111111");
        }),
        ("aud array without azp", |c, _| {
            c["aud"] = json!([CLIENT_ID, "11111111-1111-1111-1111-111111111111"]);
        }),
        ("aud array with another azp", |c, _| {
            c["aud"] = json!([CLIENT_ID, "11111111-1111-1111-1111-111111111111"]);
            c["azp"] = json!("11111111-1111-1111-1111-111111111111");
        }),
        ("oid not a guid", |c, _| c["oid"] = json!("admin@contoso")),
        ("tid not a guid", |c, _| {
            c["tid"] = json!("contoso.onmicrosoft.com");
        }),
        ("wrong iss", |c, _| {
            c["iss"] = json!(format!("https://login.microsoftonline.com/{TENANT}/v2.0"));
        }),
        ("iss of another tenant", |c, issuer| {
            c["iss"] = json!(issuer.replace(TENANT, "aaaabbbb-0000-cccc-1111-dddd2222eeee"));
        }),
        ("wrong nonce", |c, _| c["nonce"] = json!("123523")),
        ("no nonce", |c, _| {
            c.as_object_mut().unwrap().remove("nonce");
        }),
        ("expired", |c, _| {
            let past = OffsetDateTime::now_utc().unix_timestamp() - 3600;
            c["exp"] = json!(past);
        }),
        ("not yet valid", |c, _| {
            let future = OffsetDateTime::now_utc().unix_timestamp() + 3600;
            c["nbf"] = json!(future);
        }),
    ];
    for (name, edit) in cases {
        let (_, pending) = client.authorization_request().build().unwrap().into_parts();
        let mut token_claims = claims(&server, Some(&secret(&pending, "nonce")));
        edit(&mut token_claims, &common::issuer(&server));
        common::reset(&server).await;
        token_mock(
            &server,
            token_body(
                "AT",
                Some("RT"),
                Some(&mint(&token_claims)),
                &granted_default_scopes(),
            ),
            1,
        )
        .await;
        let error = client
            .complete_authorization(&pending, &callback(&pending, "code"))
            .await
            .unwrap_err();
        let AuthError::InvalidIdToken(reason) = &error else {
            panic!("{name}: expected InvalidIdToken, got {error:?}");
        };
        let expected = match name {
            "wrong aud" => matches!(reason, IdTokenError::WrongAudience { .. }),
            "aud array without azp" => *reason == IdTokenError::MissingClaim("azp"),
            "aud array with another azp" => matches!(
                reason,
                IdTokenError::WrongAuthorizedParty { actual }
                    if actual == "11111111-1111-1111-1111-111111111111"
            ),
            "oid not a guid" => *reason == IdTokenError::NotAGuid("oid"),
            "tid not a guid" => *reason == IdTokenError::NotAGuid("tid"),
            "wrong iss" | "iss of another tenant" => {
                matches!(reason, IdTokenError::WrongIssuer { .. })
            }
            "wrong nonce" | "no nonce" => *reason == IdTokenError::NonceMismatch,
            "expired" => matches!(reason, IdTokenError::Expired(exp) if *exp < now),
            _ => matches!(reason, IdTokenError::NotYetValid(_)),
        };
        assert!(expected, "{name}: {reason:?}");
    }
    // No id token at all (openid not granted).
    let (_, pending) = client.authorization_request().build().unwrap().into_parts();
    common::reset(&server).await;
    token_mock(
        &server,
        token_body("AT", Some("RT"), None, &granted_default_scopes()),
        1,
    )
    .await;
    let error = client
        .complete_authorization(&pending, &callback(&pending, "code"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, AuthError::InvalidIdToken(IdTokenError::Missing)),
        "{error:?}"
    );
}

#[tokio::test]
async fn id_token_of_another_tenant_than_the_tenant_authority_is_refused() {
    let server = common::entra().await;
    let client = builder(&server).build().unwrap();
    let other = entra_auth::TenantId::parse("aaaabbbb-0000-cccc-1111-dddd2222eeee").unwrap();
    let (_, pending) = client
        .authorization_request()
        .authority(entra_auth::Authority::tenant(&other))
        .build()
        .unwrap()
        .into_parts();
    let id_token = mint(&claims(&server, Some(&secret(&pending, "nonce"))));
    Mock::given(method("POST"))
        .and(path(
            "/aaaabbbb-0000-cccc-1111-dddd2222eeee/oauth2/v2.0/token",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body(
            "AT",
            Some("RT"),
            Some(&id_token),
            &granted_default_scopes(),
        )))
        .expect(1)
        .mount(&server)
        .await;
    let error = client
        .complete_authorization(&pending, &callback(&pending, "code"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            AuthError::InvalidIdToken(IdTokenError::WrongTenant { .. })
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn missing_scopes_error_names_the_missing_permissions() {
    let server = common::entra().await;
    let client = builder(&server).build().unwrap();
    let (_, pending) = client.authorization_request().build().unwrap().into_parts();
    let id_token = mint(&claims(&server, Some(&secret(&pending, "nonce"))));
    token_mock(
        &server,
        token_body(
            "AT",
            Some("RT"),
            Some(&id_token),
            &format!("{GRAPH}/user.read.all openid"),
        ),
        1,
    )
    .await;
    let error = client
        .complete_authorization(&pending, &callback(&pending, "code"))
        .await
        .unwrap_err();
    let AuthError::MissingScopes { missing, granted } = &error else {
        panic!("expected MissingScopes, got {error:?}");
    };
    assert_eq!(missing, &vec![format!("{GRAPH}/Group.Read.All")]);
    assert_eq!(
        granted,
        &vec![format!("{GRAPH}/user.read.all"), "openid".to_owned()]
    );
    assert!(error.to_string().contains("Group.Read.All"));
}

#[tokio::test]
async fn no_refresh_token_means_offline_access_is_missing() {
    let server = common::entra().await;
    let client = builder(&server).build().unwrap();
    let (_, pending) = client.authorization_request().build().unwrap().into_parts();
    let id_token = mint(&claims(&server, Some(&secret(&pending, "nonce"))));
    token_mock(
        &server,
        token_body("AT", None, Some(&id_token), &granted_default_scopes()),
        1,
    )
    .await;
    let error = client
        .complete_authorization(&pending, &callback(&pending, "code"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, AuthError::MissingScopes { missing, .. } if missing == &vec!["offline_access".to_owned()]),
        "{error:?}"
    );
}

/// The documented auth-code answer (fixture) has a URL-encoded, lower-case scope.
#[tokio::test]
async fn documented_auth_code_response_with_url_encoded_scope_is_accepted() {
    let server = common::entra().await;
    let client = EntraClient::builder(CLIENT_ID)
        .cloud(Cloud::custom(&server.uri(), "https://graph.microsoft.com").unwrap())
        .redirect_uri(REDIRECT)
        .scopes(["openid", "offline_access", "Mail.Read"])
        .build()
        .unwrap();
    let (_, pending) = client.authorization_request().build().unwrap().into_parts();
    let mut body: Value = serde_json::from_str(&fixture("token-response-authcode.json")).unwrap();
    body["id_token"] = json!(mint(&claims(&server, Some(&secret(&pending, "nonce")))));
    token_mock(&server, body, 1).await;
    let grant = client
        .complete_authorization(&pending, &callback(&pending, "code"))
        .await
        .unwrap();
    assert_eq!(
        grant.scopes(),
        &["https://graph.microsoft.com/mail.read".to_owned()]
    );
    assert_eq!(
        grant.refresh_token().expose_secret(),
        "AwABAAAAvPM1KaPlrEqdFSBzjqfTGAMxZGUTdM0t4B4..."
    );
}

#[test]
fn documented_success_redirect_parses_code_and_state() {
    let callback =
        CallbackParams::from_redirect_url(&fixture_redirect("authorize-success-redirect.txt"))
            .unwrap();
    assert_eq!(callback.state(), Some("12345"));
    assert!(!callback.is_error());
    let hybrid = CallbackParams::from_redirect_url(&fixture_redirect(
        "authorize-hybrid-success-redirect.txt",
    ))
    .unwrap();
    assert_eq!(hybrid.state(), Some("12345"));
}

#[tokio::test]
async fn pending_authorization_with_an_overflowing_created_at_is_expired_not_a_panic() {
    let server = common::entra().await;
    no_token_requests(&server).await;
    let client = builder(&server).build().unwrap();
    let (_, pending) = client.authorization_request().build().unwrap().into_parts();
    // As a web service would read it back from a corrupted or tampered session store.
    let mut stored = serde_json::to_value(&pending).unwrap();
    stored["created_at"] = json!("9999-12-31T23:59:59Z");
    let pending: PendingAuthorization = serde_json::from_value(stored).unwrap();
    assert!(pending.expires_at() >= pending.created_at());
    let error = client
        .complete_authorization(&pending, &callback(&pending, "code"))
        .await
        .unwrap_err();
    assert!(matches!(error, AuthError::AuthorizationExpired), "{error}");
}
