//! Continuous access evaluation over real HTTP on 127.0.0.1: `cp1` in the `claims` of
//! authorize, device code and token requests gets CAE access tokens with their own
//! lifetime; the CAE controls (revoked sessions, disabled user, location change, policy
//! needing interaction) make Graph answer CAE tokens with Microsoft's claims challenge
//! and the token endpoint answer refreshes as Entra does; counters and controls are per
//! tenant.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use sha2::Digest as _;
use tenant_sim::{TenantSim, UserFields};

const SCOPES: &str = "openid profile offline_access https://graph.microsoft.com/User.Read.All https://graph.microsoft.com/Group.Read.All";
const REDIRECT: &str = "http://localhost:8400/callback";
const VERIFIER: &str = "a-verifier-of-enough-length-0123456789-abcdefghijklmnop";
/// The client capability declaration of spec §7.
const CP1: &str = r#"{"access_token":{"xms_cc":{"values":["cp1"]}}}"#;
/// 28 hours, the default CAE lifetime.
const CAE_SECONDS: u64 = 28 * 3600;
/// Microsoft's documented challenge header, up to its claims value.
const CHALLENGE_PREFIX: &str = "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", error=\"insufficient_claims\", claims=\"";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn sim() -> TenantSim {
    TenantSim::builder()
        .users(20)
        .groups(4)
        .seed(11)
        .start()
        .await
        .unwrap()
}

/// Signs tenant `tenant`'s admin in (auto-consent) with these `claims` on the authorize
/// and the token request, and returns the token answer.
async fn sign_in(
    sim: &TenantSim,
    tenant: &str,
    authorize_claims: Option<&str>,
    token_claims: Option<&str>,
) -> Value {
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(VERIFIER.as_bytes()));
    let mut query = vec![
        ("client_id", sim.client_id()),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", SCOPES),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    if let Some(claims) = authorize_claims {
        query.push(("claims", claims));
    }
    let response = client()
        .get(format!(
            "{}/{tenant}/oauth2/v2.0/authorize",
            sim.login_base()
        ))
        .query(&query)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(name, _)| name == "code")
        .map_or_else(
            || panic!("no code in {location}"),
            |(_, code)| code.into_owned(),
        );
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    if let Some(claims) = token_claims {
        form.push(("claims", claims));
    }
    let (status, body) = token(sim, tenant, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn token(sim: &TenantSim, tenant: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut form = form.to_vec();
    form.extend([
        ("client_id", sim.client_id()),
        ("client_secret", sim.client_secret().expose_secret()),
    ]);
    let response = client()
        .post(format!("{}/{tenant}/oauth2/v2.0/token", sim.login_base()))
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn refresh(
    sim: &TenantSim,
    tenant: &str,
    tokens: &Value,
    claims: Option<&str>,
) -> (StatusCode, Value) {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
    ];
    if let Some(claims) = claims {
        form.push(("claims", claims));
    }
    token(sim, tenant, &form).await
}

/// `GET /me` with the tokens' access token.
async fn me(sim: &TenantSim, tokens: &Value) -> (StatusCode, HeaderMap, Value) {
    let response = client()
        .get(format!("{}/me", sim.graph_base()))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.json().await.unwrap())
}

/// The parameters of a `WWW-Authenticate: Bearer k="v", …` value (quoted values may
/// hold commas and escapes).
fn parse_challenge(value: &str) -> HashMap<String, String> {
    let rest = value.strip_prefix("Bearer ").expect("a Bearer challenge");
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ',' || c.is_whitespace()).is_some() {}
        let name: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if name.is_empty() || chars.next() != Some('=') {
            break;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => value.extend(chars.next()),
                    other => value.push(other),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
        }
        params.insert(name.trim().to_owned(), value);
    }
    params
}

/// Checks a Graph answer is Microsoft's claims challenge for an event at `at`, and
/// returns the decoded claims (JSON text).
fn assert_challenge(
    status: StatusCode,
    headers: &HeaderMap,
    body: &Value,
    at: i64,
    code: &str,
) -> String {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let header = headers["www-authenticate"].to_str().unwrap();
    assert!(header.starts_with(CHALLENGE_PREFIX), "{header}");
    assert!(header.ends_with('"'), "{header}");
    let params = parse_challenge(header);
    assert_eq!(params["realm"], "");
    assert_eq!(
        params["authorization_uri"],
        "https://login.microsoftonline.com/common/oauth2/authorize"
    );
    assert_eq!(params["error"], "insufficient_claims");
    assert_eq!(params.len(), 4, "{params:?}");
    let claims = String::from_utf8(STANDARD.decode(&params["claims"]).unwrap()).unwrap();
    let parsed: Value = serde_json::from_str(&claims).unwrap();
    assert_eq!(
        parsed["access_token"]["nbf"],
        json!({"essential": true, "value": at.to_string()}),
        "{claims}"
    );
    assert_eq!(
        body["error"]["code"], "InvalidAuthenticationToken",
        "{body}"
    );
    assert_eq!(
        body["error"]["message"],
        format!(
            "Continuous access evaluation resulted in challenge with result: InteractionRequired and code: {code}"
        )
    );
    assert!(
        body["error"]["innerError"]["request-id"].is_string(),
        "{body}"
    );
    claims
}

fn assert_entra_error(status: StatusCode, body: &Value, error: &str, code: u64) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], json!([code]), "{body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.starts_with(&format!("AADSTS{code}: ")),
        "{description}"
    );
}

/// Claims that answer a challenge, merged with the cp1 declaration as MSAL sends them.
fn merged_with_cp1(challenge_claims: &str) -> String {
    let mut claims: Value = serde_json::from_str(challenge_claims).unwrap();
    claims["access_token"]["xms_cc"] = json!({"values": ["cp1"]});
    claims.to_string()
}

// ---------------------------------------------------------------- issuance

#[tokio::test]
async fn cp1_declared_gets_the_cae_lifetime_and_undeclared_the_normal_one() {
    let sim = sim().await;
    let tenant = sim.tenant_id();
    let plain = sign_in(&sim, tenant, None, None).await;
    assert_eq!(plain["expires_in"], 3600);
    assert_eq!(plain["ext_expires_in"], 3600);
    let at_token = sign_in(&sim, tenant, None, Some(CP1)).await;
    assert_eq!(at_token["expires_in"], CAE_SECONDS);
    // MSAL sends the claims to /authorize too; the code keeps them.
    let at_authorize = sign_in(&sim, tenant, Some(CP1), None).await;
    assert_eq!(at_authorize["expires_in"], CAE_SECONDS);

    // Refreshing declares (or not) on its own.
    let (status, body) = refresh(&sim, tenant, &at_token, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expires_in"], 3600);
    let (status, body) = refresh(&sim, tenant, &plain, Some(CP1)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expires_in"], CAE_SECONDS);

    let info = sim
        .control()
        .access_token_info(body["access_token"].as_str().unwrap())
        .unwrap();
    assert!(info.is_cae());
    assert_eq!(info.user_id(), sim.admin_id());
    assert_eq!(info.expires_at() - info.issued_at(), 28 * 3600);
    let info = sim
        .control()
        .access_token_info(plain["access_token"].as_str().unwrap())
        .unwrap();
    assert!(!info.is_cae());
    assert_eq!(info.expires_at() - info.issued_at(), 3600);
    assert!(sim.control().access_token_info("never-issued").is_none());

    let counters = sim.control().counters();
    let tokens = counters.tokens();
    assert_eq!(tokens.requests("authorization_code"), 3);
    assert_eq!(tokens.requests("refresh_token"), 2);
    assert_eq!(tokens.total(), 5);
    assert_eq!(tokens.access_tokens_issued(), 5);
    assert_eq!(tokens.cae_access_tokens_issued(), 3);
    assert_eq!(tokens.challenge_answers(), 0);
    sim.control().reset_counters();
    assert_eq!(sim.control().counters().tokens().total(), 0);
}

#[tokio::test]
async fn cp1_merged_with_other_claims_or_in_capitals_still_declares_it() {
    let sim = sim().await;
    let tenant = sim.tenant_id();
    let tokens = sign_in(&sim, tenant, None, None).await;
    // Microsoft's merge example [E:claims-challenge.md], and an nbf challenge answer.
    for claims in [
        r#"{"access_token":{"xms_cc":{"values":["cp1"]},"acrs":{"essential":true,"value":"c25"}}}"#,
        r#"{"access_token":{"nbf":{"essential":true, "value":"1604106651"},"xms_cc":{"values":["cp1"]}}}"#,
        r#"{"access_token":{"xms_cc":{"values":["CP1","foo"]}}}"#,
        r#"{"id_token":{"auth_time":{"essential":true}},"access_token":{"xms_cc":{"values":["cp1"]}}}"#,
    ] {
        let (status, body) = refresh(&sim, tenant, &tokens, Some(claims)).await;
        assert_eq!(status, StatusCode::OK, "{claims}: {body}");
        assert_eq!(body["expires_in"], CAE_SECONDS, "{claims}");
    }
    // A challenge answer without cp1 gets a normal token.
    let (status, body) = refresh(
        &sim,
        tenant,
        &tokens,
        Some(r#"{"access_token":{"nbf":{"essential":true,"value":"1"}}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(sim.control().counters().tokens().challenge_answers(), 3);
}

#[tokio::test]
async fn malformed_claims_are_invalid_request_at_token_and_authorize() {
    let sim = sim().await;
    let tenant = sim.tenant_id();
    let tokens = sign_in(&sim, tenant, None, None).await;
    for claims in ["{", "[\"cp1\"]", "cp1", "{\"access_token\":}"] {
        let (status, body) = refresh(&sim, tenant, &tokens, Some(claims)).await;
        assert_entra_error(status, &body, "invalid_request", 90_004);
    }
    assert_eq!(
        sim.control().counters().tokens().errors("invalid_request"),
        4
    );

    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(VERIFIER.as_bytes()));
    let response = client()
        .get(format!(
            "{}/{tenant}/oauth2/v2.0/authorize",
            sim.login_base()
        ))
        .query(&[
            ("client_id", sim.client_id()),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", SCOPES),
            ("state", "s1"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("claims", "{not json"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let query: HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(query["error"], "invalid_request");
    assert!(query["error_description"].starts_with("AADSTS90004: "));
    assert_eq!(query["state"], "s1");
    assert!(!query.contains_key("code"));
}

#[tokio::test]
async fn a_device_code_declared_with_cp1_gets_a_cae_token() {
    let sim = sim().await;
    let tenant = sim.tenant_id();
    let response = client()
        .post(format!(
            "{}/{tenant}/oauth2/v2.0/devicecode",
            sim.login_base()
        ))
        .form(&[
            ("client_id", sim.client_id()),
            ("scope", SCOPES),
            ("claims", CP1),
        ])
        .send()
        .await
        .unwrap();
    let device: Value = response.json().await.unwrap();
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("device_code", device["device_code"].as_str().unwrap()),
    ];
    let (_, pending) = token(&sim, tenant, &form).await;
    assert_eq!(pending["error"], "authorization_pending");
    sim.auth().advance_clock(Duration::from_secs(5));
    let (status, body) = token(&sim, tenant, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expires_in"], CAE_SECONDS);
    assert_eq!(sim.control().counters().tokens().requests("device_code"), 2);
}

#[tokio::test(start_paused = true)]
async fn cae_tokens_live_their_own_lifetime_on_paused_time() {
    let sim = TenantSim::builder()
        .users(5)
        .groups(0)
        .cae_access_token_lifetime(Duration::from_secs(7200))
        .start()
        .await
        .unwrap();
    let tenant = sim.tenant_id();
    let cae = sign_in(&sim, tenant, None, Some(CP1)).await;
    let plain = sign_in(&sim, tenant, None, None).await;
    assert_eq!(cae["expires_in"], 7200);
    tokio::time::advance(Duration::from_secs(3601)).await;
    assert_eq!(me(&sim, &plain).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&sim, &cae).await.0, StatusCode::OK);
    tokio::time::advance(Duration::from_secs(3600)).await;
    let (status, headers, body) = me(&sim, &cae).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body["error"]["message"],
        "Access token has expired or is not yet valid."
    );
    let header = headers["www-authenticate"].to_str().unwrap();
    assert!(!header.contains("insufficient_claims"), "{header}");
}

// ---------------------------------------------------------------- controls

#[tokio::test]
async fn revoked_sessions_challenge_cae_tokens_and_refresh_fails_50173() {
    let sim = sim().await;
    let tenant = sim.tenant_id();
    let cae = sign_in(&sim, tenant, None, Some(CP1)).await;
    let plain = sign_in(&sim, tenant, None, None).await;
    assert_eq!(me(&sim, &cae).await.0, StatusCode::OK);
    let at = sim
        .control()
        .revoke_sign_in_sessions(sim.admin_upn())
        .unwrap();

    let (status, headers, body) = me(&sim, &cae).await;
    let claims = assert_challenge(
        status,
        &headers,
        &body,
        at,
        "TokenIssuedBeforeRevocationTimestamp",
    );
    // Microsoft's documented revocation claims, byte for byte but the time.
    assert_eq!(
        claims,
        format!(r#"{{"access_token":{{"nbf":{{"essential":true, "value":"{at}"}}}}}}"#)
    );
    assert_eq!(
        me(&sim, &cae).await.0,
        StatusCode::UNAUTHORIZED,
        "still challenged"
    );
    // Graph does not challenge clients that did not declare cp1: until it expires.
    assert_eq!(me(&sim, &plain).await.0, StatusCode::OK);

    for tokens in [&cae, &plain] {
        let (status, body) = refresh(&sim, tenant, tokens, Some(&merged_with_cp1(&claims))).await;
        assert_entra_error(status, &body, "invalid_grant", 50_173);
        assert_eq!(body["suberror"], "bad_token");
    }
    let counters = sim.control().counters();
    assert_eq!(counters.claims_challenges(), 2);
    assert_eq!(counters.count("GET /me", 401), 2);
    assert_eq!(counters.tokens().errors("invalid_grant"), 2);
    assert_eq!(counters.tokens().challenge_answers(), 2);

    // A new sign-in works, and its CAE token is not challenged.
    let fresh = sign_in(&sim, tenant, None, Some(CP1)).await;
    assert_eq!(me(&sim, &fresh).await.0, StatusCode::OK);
    sim.auth().advance_clock(Duration::from_secs(3601));
    assert_eq!(me(&sim, &plain).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&sim, &fresh).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_disabled_user_is_challenged_and_cannot_refresh_until_enabled() {
    let sim = sim().await;
    let tenant = sim.tenant_id();
    let cae = sign_in(&sim, tenant, None, Some(CP1)).await;
    let plain = sign_in(&sim, tenant, None, None).await;
    let at = sim.control().disable_user(sim.admin_id()).unwrap();
    assert!(!sim.control().user(sim.admin_id()).unwrap().account_enabled);

    let (status, headers, body) = me(&sim, &cae).await;
    assert_challenge(
        status,
        &headers,
        &body,
        at,
        "TokenIssuedBeforeRevocationTimestamp",
    );
    assert_eq!(me(&sim, &plain).await.0, StatusCode::OK);
    let (status, body) = refresh(&sim, tenant, &cae, Some(CP1)).await;
    assert_entra_error(status, &body, "invalid_grant", 50_057);

    sim.control().enable_user(sim.admin_id()).unwrap();
    let (status, renewed) = refresh(&sim, tenant, &cae, Some(CP1)).await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    assert_eq!(me(&sim, &renewed).await.0, StatusCode::OK);
    assert_eq!(
        me(&sim, &cae).await.0,
        StatusCode::UNAUTHORIZED,
        "issued before"
    );

    // Disabling through an update is the same event.
    let updated = sim
        .control()
        .update_user(sim.admin_id(), &UserFields::new().account_enabled(false))
        .unwrap();
    assert!(!updated.account_enabled);
    let (status, headers, _) = me(&sim, &renewed).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_claims")
    );
}

#[tokio::test]
async fn a_location_change_is_recovered_by_a_refresh_with_the_challenge_claims() {
    let sim = sim().await;
    let tenant = sim.tenant_id();
    let cae = sign_in(&sim, tenant, None, Some(CP1)).await;
    let plain = sign_in(&sim, tenant, None, None).await;
    let at = sim.control().require_fresh_token(sim.admin_upn()).unwrap();
    let (status, headers, body) = me(&sim, &cae).await;
    let claims = assert_challenge(
        status,
        &headers,
        &body,
        at,
        "LocationConditionEvaluationSatisfied",
    );
    let parsed: Value = serde_json::from_str(&claims).unwrap();
    assert_eq!(
        parsed["access_token"]["xms_rp_ipaddr"]["value"],
        "127.0.0.1"
    );
    assert_eq!(me(&sim, &plain).await.0, StatusCode::OK);

    let (status, renewed) = refresh(&sim, tenant, &cae, Some(&merged_with_cp1(&claims))).await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    assert_eq!(renewed["expires_in"], CAE_SECONDS);
    assert_eq!(me(&sim, &renewed).await.0, StatusCode::OK);
    assert_eq!(me(&sim, &cae).await.0, StatusCode::UNAUTHORIZED);
    let tokens = sim.control().counters();
    assert_eq!(tokens.tokens().challenge_answers(), 1);
    assert_eq!(tokens.claims_challenges(), 2);
}

#[tokio::test]
async fn required_interaction_fails_the_refresh_with_interaction_required_and_claims() {
    let sim = sim().await;
    let tenant = sim.tenant_id();
    let cae = sign_in(&sim, tenant, None, Some(CP1)).await;
    let at = sim.control().require_interaction(sim.admin_upn()).unwrap();
    let (status, headers, body) = me(&sim, &cae).await;
    let claims = assert_challenge(
        status,
        &headers,
        &body,
        at,
        "TokenCreatedWithOutdatedPolicies",
    );
    for claims in [Some(merged_with_cp1(&claims)), None] {
        let (status, body) = refresh(&sim, tenant, &cae, claims.as_deref()).await;
        assert_entra_error(status, &body, "interaction_required", 50_076);
        assert!(body.get("suberror").is_none(), "{body}");
        let policy: Value = serde_json::from_str(body["claims"].as_str().unwrap()).unwrap();
        assert_eq!(policy["access_token"]["capolids"]["essential"], true);
        assert!(policy["access_token"]["capolids"]["values"][0].is_string());
    }
    // Signing in again (the interaction) gives tokens that work and refresh.
    let fresh = sign_in(&sim, tenant, Some(&merged_with_cp1(&claims)), Some(CP1)).await;
    assert_eq!(me(&sim, &fresh).await.0, StatusCode::OK);
    let (status, body) = refresh(&sim, tenant, &fresh, Some(CP1)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        sim.control()
            .counters()
            .tokens()
            .errors("interaction_required"),
        2
    );
}

#[tokio::test]
async fn required_mfa_fails_the_refresh_as_invalid_grant_basic_action_with_claims() {
    let sim = sim().await;
    let tenant = sim.tenant_id();
    let cae = sign_in(&sim, tenant, None, Some(CP1)).await;
    let at = sim.control().require_mfa(sim.admin_upn()).unwrap();
    let (status, headers, body) = me(&sim, &cae).await;
    let claims = assert_challenge(
        status,
        &headers,
        &body,
        at,
        "TokenCreatedWithOutdatedPolicies",
    );
    let (status, body) = refresh(&sim, tenant, &cae, Some(&merged_with_cp1(&claims))).await;
    assert_entra_error(status, &body, "invalid_grant", 50_076);
    assert_eq!(body["suberror"], "basic_action");
    assert!(body["claims"].as_str().unwrap().contains("capolids"));
    assert!(body["error_description"].as_str().unwrap().contains(
        "you must use multi-factor authentication to access '00000003-0000-0000-c000-000000000000'"
    ));
}

#[tokio::test]
async fn unknown_users_are_not_found_by_the_cae_controls() {
    let sim = sim().await;
    let control = sim.control();
    assert!(
        control
            .revoke_sign_in_sessions("nobody@contoso.onmicrosoft.com")
            .is_err()
    );
    assert!(control.disable_user("nobody").is_err());
    assert!(control.enable_user("nobody").is_err());
    assert!(control.require_fresh_token("nobody").is_err());
    assert!(control.require_interaction("nobody").is_err());
    assert!(control.require_mfa("nobody").is_err());
}

// ---------------------------------------------------------------- over HTTP, per tenant

#[tokio::test]
async fn http_control_routes_raise_cae_events_and_set_the_cae_lifetime() {
    let sim = TenantSim::builder()
        .tenants(2)
        .users(10)
        .groups(2)
        .start()
        .await
        .unwrap();
    let http = client();
    let second = sim.tenants()[1].clone();
    let control = |path: &str| format!("{}/tenants/{}{path}", sim.control_base(), second.id());

    let response = http
        .put(control("/cae-access-token-lifetime"))
        .json(&json!({"seconds": 5400}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let cae = sign_in(&sim, second.id(), None, Some(CP1)).await;
    assert_eq!(cae["expires_in"], 5400);

    let inspect = http
        .post(control("/access-tokens/inspect"))
        .json(&json!({"accessToken": cae["access_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(inspect.status(), StatusCode::OK);
    let info: Value = inspect.json().await.unwrap();
    assert_eq!(info["cae"], true);
    assert_eq!(info["userId"], second.admin_id());
    assert_eq!(
        info["expiresAt"].as_i64().unwrap() - info["issuedAt"].as_i64().unwrap(),
        5400
    );
    // Tenant 0 does not know tenant 1's tokens.
    let inspect = http
        .post(format!("{}/access-tokens/inspect", sim.control_base()))
        .json(&json!({"accessToken": cae["access_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(inspect.status(), StatusCode::NOT_FOUND);

    for (route, code) in [
        (
            "require-fresh-token",
            "LocationConditionEvaluationSatisfied",
        ),
        ("require-interaction", "TokenCreatedWithOutdatedPolicies"),
        ("require-mfa", "TokenCreatedWithOutdatedPolicies"),
        ("disable", "TokenIssuedBeforeRevocationTimestamp"),
        (
            "revoke-sign-in-sessions",
            "TokenIssuedBeforeRevocationTimestamp",
        ),
    ] {
        let response = http
            .post(control(&format!("/users/{}/{route}", second.admin_upn())))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{route}");
        let at = response.json::<Value>().await.unwrap()["at"]
            .as_i64()
            .unwrap();
        let (status, headers, body) = me(&sim, &cae).await;
        assert_challenge(status, &headers, &body, at, code);
    }
    let response = http
        .post(control(&format!("/users/{}/enable", second.admin_id())))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(
        sim.tenant_control(second.id())
            .unwrap()
            .user(second.admin_id())
            .unwrap()
            .account_enabled
    );
    let response = http
        .post(control("/users/nobody/disable"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let counters: Value = http
        .get(control("/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters["claims_challenges"], 5, "{counters}");
    assert_eq!(
        counters["tokens"]["requests"]["authorization_code"], 1,
        "{counters}"
    );
    assert_eq!(counters["tokens"]["cae_access_tokens"], 1, "{counters}");
}

#[tokio::test]
async fn cae_events_lifetimes_and_token_counters_are_per_tenant() {
    let sim = TenantSim::builder()
        .tenants(2)
        .users(10)
        .groups(2)
        .start()
        .await
        .unwrap();
    let first = sim.tenants()[0].clone();
    let second = sim.tenants()[1].clone();
    let first_tokens = sign_in(&sim, first.id(), None, Some(CP1)).await;
    let second_tokens = sign_in(&sim, second.id(), None, Some(CP1)).await;
    let second_control = sim.tenant_control(second.id()).unwrap();

    let at = second_control
        .revoke_sign_in_sessions(second.admin_upn())
        .unwrap();
    let (status, headers, body) = me(&sim, &second_tokens).await;
    assert_challenge(
        status,
        &headers,
        &body,
        at,
        "TokenIssuedBeforeRevocationTimestamp",
    );
    assert_eq!(me(&sim, &first_tokens).await.0, StatusCode::OK);
    let (status, body) = refresh(&sim, first.id(), &first_tokens, Some(CP1)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Tenant 1's control does not know tenant 0's admin.
    assert!(second_control.disable_user(first.admin_id()).is_err());

    second_control.set_cae_access_token_lifetime(Duration::from_secs(600));
    let (_, body) = refresh(&sim, first.id(), &first_tokens, Some(CP1)).await;
    assert_eq!(body["expires_in"], CAE_SECONDS);
    assert_eq!(
        sign_in(&sim, second.id(), None, Some(CP1)).await["expires_in"],
        600
    );

    let first_counters = sim.control().counters();
    let second_counters = second_control.counters();
    assert_eq!(first_counters.claims_challenges(), 0);
    assert_eq!(second_counters.claims_challenges(), 1);
    assert_eq!(first_counters.tokens().requests("authorization_code"), 1);
    assert_eq!(first_counters.tokens().requests("refresh_token"), 2);
    assert_eq!(second_counters.tokens().requests("authorization_code"), 2);
    assert_eq!(second_counters.tokens().requests("refresh_token"), 0);
    let all = sim.counters();
    assert_eq!(all.tokens().total(), 5);
    assert_eq!(all.claims_challenges(), 1);
    second_control.reset_counters();
    assert_eq!(second_control.counters().tokens().total(), 0);
    assert_eq!(sim.control().counters().tokens().total(), 3);
}
