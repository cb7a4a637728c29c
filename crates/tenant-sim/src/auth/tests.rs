//! The Entra half over real HTTP on 127.0.0.1: every consent mode, the token grants,
//! device code, admin consent, discovery and id tokens, compared with Microsoft's
//! samples in `tests/fixtures/identity/`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use url::Url;

use super::*;

const TENANT_ID: &str = "aaaabbbb-0000-cccc-1111-dddd2222eeee";
const DOMAIN: &str = "contoso.onmicrosoft.com";
const CLIENT_ID: &str = "00001111-aaaa-2222-bbbb-3333cccc4444";
const SECRET: &str = "sim~secret.value_123";
const ADMIN_ID: &str = "11111111-0000-0000-0000-000000000001";
const USER_ID: &str = "11111111-0000-0000-0000-000000000002";
const DISABLED_ID: &str = "11111111-0000-0000-0000-000000000003";
const REDIRECT: &str = "http://localhost:53123/callback";
const SCOPES: &str = "openid profile offline_access User.Read.All Group.Read.All";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// The test tenant's accounts; tests change them to disable or delete a user.
struct Directory(std::sync::Mutex<Vec<Account>>);

impl Directory {
    fn update(&self, change: impl FnOnce(&mut Vec<Account>)) {
        change(&mut self.0.lock().unwrap());
    }
}

impl AccountDirectory for Directory {
    fn account(&self, id_or_upn: &str) -> Option<Account> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find(|account| {
                account.id.eq_ignore_ascii_case(id_or_upn)
                    || account.user_principal_name.eq_ignore_ascii_case(id_or_upn)
            })
            .cloned()
    }

    fn sign_in_candidates(&self, limit: usize) -> Vec<Account> {
        self.0.lock().unwrap().iter().take(limit).cloned().collect()
    }
}

fn account(id: &str, upn: &str, name: &str, is_admin: bool, account_enabled: bool) -> Account {
    Account {
        id: id.into(),
        user_principal_name: upn.into(),
        display_name: name.into(),
        is_admin,
        account_enabled,
    }
}

struct Sim {
    auth: Arc<Auth>,
    directory: Arc<Directory>,
    base: String,
    http: reqwest::Client,
}

async fn start() -> Sim {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let directory = Arc::new(Directory(std::sync::Mutex::new(vec![
        account(
            ADMIN_ID,
            "admin@contoso.onmicrosoft.com",
            "Megan Bowen",
            true,
            true,
        ),
        account(
            USER_ID,
            "adele@contoso.onmicrosoft.com",
            "Adele Vance",
            false,
            true,
        ),
        account(
            DISABLED_ID,
            "gone@contoso.onmicrosoft.com",
            "Gone User",
            false,
            false,
        ),
    ])));
    let config = AuthConfig {
        client_id: CLIENT_ID.into(),
        client_secret: SECRET.into(),
        login_base: base.clone(),
        graph_resource: "https://graph.microsoft.com".into(),
        access_token_lifetime: Duration::from_secs(3600),
        cae_access_token_lifetime: Duration::from_secs(28 * 3600),
        consent_mode: ConsentMode::AutoConsent,
    };
    let tenant = AuthTenant {
        id: TENANT_ID.into(),
        domain: DOMAIN.into(),
        directory: directory.clone(),
    };
    let auth = Auth::new(config, vec![tenant]).unwrap();
    let app = router(auth.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Sim {
        auth,
        directory,
        base,
        http,
    }
}

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

const FIXTURES: &[(&str, &str)] = &[
    (
        "openid-configuration.json",
        include_str!("../../tests/fixtures/identity/openid-configuration.json"),
    ),
    (
        "token-response-authcode.json",
        include_str!("../../tests/fixtures/identity/token-response-authcode.json"),
    ),
    (
        "token-response-refresh.json",
        include_str!("../../tests/fixtures/identity/token-response-refresh.json"),
    ),
    (
        "token-response-devicecode.json",
        include_str!("../../tests/fixtures/identity/token-response-devicecode.json"),
    ),
    (
        "token-error-invalid-scope.json",
        include_str!("../../tests/fixtures/identity/token-error-invalid-scope.json"),
    ),
    (
        "token-error-invalid-scope-error-uri.json",
        include_str!("../../tests/fixtures/identity/token-error-invalid-scope-error-uri.json"),
    ),
    (
        "id-token-claims-v2.json",
        include_str!("../../tests/fixtures/identity/id-token-claims-v2.json"),
    ),
    (
        "id-token-header-v2.json",
        include_str!("../../tests/fixtures/identity/id-token-header-v2.json"),
    ),
];

/// A Microsoft sample from `tests/fixtures/identity/`.
fn fixture(name: &str) -> Value {
    let (_, text) = FIXTURES
        .iter()
        .find(|(file, _)| *file == name)
        .unwrap_or_else(|| panic!("no fixture {name}"));
    serde_json::from_str(text).unwrap()
}

fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

fn query(url: &str) -> HashMap<String, String> {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn location(response: &reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::FOUND, "expected a redirect");
    response.headers()["location"].to_str().unwrap().to_owned()
}

/// The value of the hidden input `name` in an HTML page.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

impl Sim {
    fn authorize_url(&self, tenant: &str, extra: &[(&str, &str)]) -> String {
        let mut url = Url::parse(&format!("{}/{tenant}/oauth2/v2.0/authorize", self.base)).unwrap();
        {
            let mut pairs = url.query_pairs_mut();
            pairs
                .append_pair("client_id", CLIENT_ID)
                .append_pair("response_type", "code")
                .append_pair("redirect_uri", REDIRECT)
                .append_pair("scope", SCOPES)
                .append_pair("state", "12345")
                .append_pair("nonce", "n-0S6_WzA2Mj")
                .append_pair("code_challenge", &challenge(VERIFIER))
                .append_pair("code_challenge_method", "S256");
            for (name, value) in extra {
                pairs.append_pair(name, value);
            }
        }
        url.to_string()
    }

    async fn authorize(&self, extra: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .get(self.authorize_url("organizations", extra))
            .send()
            .await
            .unwrap()
    }

    /// Auto-consent sign-in: the code from the redirect.
    async fn code(&self) -> String {
        let redirect = location(&self.authorize(&[]).await);
        query(&redirect)["code"].clone()
    }

    async fn token(&self, tenant: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}/{tenant}/oauth2/v2.0/token", self.base))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    async fn redeem(&self, code: &str) -> (StatusCode, Value) {
        self.token(
            TENANT_ID,
            &[
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ],
        )
        .await
    }

    async fn refresh(&self, refresh_token: &str, scope: Option<&str>) -> (StatusCode, Value) {
        let mut form = vec![
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        self.token(TENANT_ID, &form).await
    }

    async fn tokens(&self) -> Value {
        let code = self.code().await;
        let (status, body) = self.redeem(&code).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

fn assert_entra_error(
    status: StatusCode,
    body: &Value,
    expected_status: StatusCode,
    error: &str,
    code: u64,
) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], serde_json::json!([code]), "{body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.starts_with(&format!("AADSTS{code}: ")),
        "{description}"
    );
}

fn bearer(body: &Value) -> String {
    format!("Bearer {}", body["access_token"].as_str().unwrap())
}

// ---------------------------------------------------------------- authorize: modes

#[tokio::test]
async fn auto_consent_redirects_to_the_redirect_uri_with_code_and_state() {
    let sim = start().await;
    let redirect = location(&sim.authorize(&[]).await);
    assert!(
        redirect.starts_with("http://localhost:53123/callback?code="),
        "{redirect}"
    );
    let params = query(&redirect);
    assert_eq!(params["state"], "12345");
    assert!(params["code"].len() >= 43);
    assert_eq!(
        params.len(),
        2,
        "only code and state, as authorize-success-redirect.txt"
    );
    assert_eq!(sim.auth.counters().codes_issued, 1);
}

#[tokio::test]
async fn authorize_accepts_every_name_of_the_tenant() {
    let sim = start().await;
    for tenant in [
        "organizations",
        "common",
        TENANT_ID,
        DOMAIN,
        "CONTOSO.onmicrosoft.com",
    ] {
        let response = sim
            .http
            .get(sim.authorize_url(tenant, &[]))
            .send()
            .await
            .unwrap();
        assert!(query(&location(&response)).contains_key("code"), "{tenant}");
    }
    let response = sim
        .http
        .get(sim.authorize_url("fabrikam.com", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("AADSTS90002"));
}

#[tokio::test]
async fn loopback_redirect_uris_are_accepted_on_any_port() {
    let sim = start().await;
    for uri in [
        "http://127.0.0.1:1/",
        "http://localhost:65000/other/path",
        "http://127.0.0.1",
    ] {
        let url = sim.authorize_url("organizations", &[]).replace(
            &url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>(),
            &url::form_urlencoded::byte_serialize(uri.as_bytes()).collect::<String>(),
        );
        let redirect = location(&sim.http.get(url).send().await.unwrap());
        let expected = if uri == "http://127.0.0.1" {
            "http://127.0.0.1/"
        } else {
            uri
        };
        assert!(
            redirect.starts_with(&format!("{expected}?code=")),
            "{redirect}"
        );
    }
}

#[tokio::test]
async fn unregistered_redirect_uri_gets_an_error_page_not_a_redirect() {
    let sim = start().await;
    sim.auth.add_redirect_uri("https://app.example/callback");
    for uri in [
        "https://evil.example/callback",
        "http://[::1]:8080/",
        "https://app.example/Callback",
    ] {
        let url = sim.authorize_url("organizations", &[]).replace(
            &url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>(),
            &url::form_urlencoded::byte_serialize(uri.as_bytes()).collect::<String>(),
        );
        let response = sim.http.get(url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{uri}");
        assert!(response.headers().get("location").is_none());
        let page = response.text().await.unwrap();
        assert!(page.contains("AADSTS50011"), "{page}");
    }
    let url = sim.authorize_url("organizations", &[]).replace(
        &url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>(),
        &url::form_urlencoded::byte_serialize(b"https://app.example/callback").collect::<String>(),
    );
    let redirect = location(&sim.http.get(url).send().await.unwrap());
    assert!(redirect.starts_with("https://app.example/callback?code="));
}

#[tokio::test]
async fn unknown_client_gets_an_error_page() {
    let sim = start().await;
    let url = sim
        .authorize_url("organizations", &[])
        .replace(CLIENT_ID, "ffffffff-0000-0000-0000-000000000000");
    let response = sim.http.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("AADSTS700016"));
}

#[tokio::test]
async fn unsupported_response_type_and_missing_scope_go_back_on_the_redirect() {
    let sim = start().await;
    let url = sim
        .authorize_url("organizations", &[])
        .replace("response_type=code", "response_type=token");
    let params = query(&location(&sim.http.get(url).send().await.unwrap()));
    assert_eq!(params["error"], "unsupported_response_type");
    assert!(params["error_description"].starts_with("AADSTS700051: "));
    assert!(params["error_description"].contains("\r\nTrace ID: "));
    assert_eq!(params["state"], "12345");

    let url = sim
        .authorize_url("organizations", &[])
        .replace("scope=", "unused=");
    let params = query(&location(&sim.http.get(url).send().await.unwrap()));
    assert_eq!(params["error"], "invalid_request");
    assert!(params["error_description"].starts_with("AADSTS900144: "));

    let url = sim.authorize_url("organizations", &[]).replace(
        "User.Read.All",
        "https%3A%2F%2Ffoo.microsoft.com%2Fmail.read",
    );
    let params = query(&location(&sim.http.get(url).send().await.unwrap()));
    assert_eq!(params["error"], "invalid_scope");
    assert!(params["error_description"].starts_with("AADSTS70011: "));
}

#[tokio::test]
async fn documented_prompts_are_accepted_and_unknown_ones_refused() {
    let sim = start().await;
    for prompt in [
        "login",
        "none",
        "consent",
        "select_account",
        "create",
        "admin_consent",
    ] {
        let params = query(&location(&sim.authorize(&[("prompt", prompt)]).await));
        assert!(params.contains_key("code"), "{prompt}: {params:?}");
    }
    let params = query(&location(&sim.authorize(&[("prompt", "bogus")]).await));
    assert_eq!(params["error"], "invalid_request");
}

#[tokio::test]
async fn form_post_mode_answers_an_auto_submitting_form() {
    let sim = start().await;
    let response = sim.authorize(&[("response_mode", "form_post")]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    assert!(
        page.contains("action=\"http://localhost:53123/callback\""),
        "{page}"
    );
    assert!(page.contains("document.forms[0].submit()"));
    assert_eq!(hidden(&page, "state"), "12345");
    let code = hidden(&page, "code");
    assert_eq!(sim.redeem(&code).await.0, StatusCode::OK);
}

#[tokio::test]
async fn fragment_mode_puts_code_and_state_in_the_fragment() {
    let sim = start().await;
    let redirect = location(&sim.authorize(&[("response_mode", "fragment")]).await);
    let url = Url::parse(&redirect).unwrap();
    assert!(url.query().is_none());
    assert!(url.fragment().unwrap().contains("state=12345"));
    assert!(url.fragment().unwrap().starts_with("code="));
}

#[tokio::test]
async fn state_has_html_stripped() {
    let sim = start().await;
    let url = sim
        .authorize_url("organizations", &[])
        .replace("state=12345", "state=ab%3Cb%3Ecd%3C%2Fb%3E");
    let params = query(&location(&sim.http.get(url).send().await.unwrap()));
    assert_eq!(params["state"], "abcd");
}

#[tokio::test]
async fn interactive_mode_shows_sign_in_then_permissions_and_accept_issues_a_code() {
    let sim = start().await;
    sim.auth.set_consent_mode(0, ConsentMode::Interactive);
    let page = sim.authorize(&[]).await.text().await.unwrap();
    assert!(page.contains("Pick an account"));
    assert!(
        page.contains("admin@contoso.onmicrosoft.com")
            && page.contains("adele@contoso.onmicrosoft.com")
    );
    let flow = hidden(&page, "flow");
    let consent = sim
        .http
        .post(format!("{}/organizations/login", sim.base))
        .form(&[("flow", flow.as_str()), ("account", ADMIN_ID)])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(consent.contains("Permissions requested"), "{consent}");
    assert!(
        consent.contains("<li>User.Read.All</li>") && consent.contains("<li>Group.Read.All</li>")
    );
    assert!(consent.contains(">Accept</button>") && consent.contains(">Cancel</button>"));
    let response = sim
        .http
        .post(format!("{}/organizations/Consent/Set", sim.base))
        .form(&[
            ("flow", flow.as_str()),
            ("decision", "accept"),
            ("organization", "true"),
        ])
        .send()
        .await
        .unwrap();
    let params = query(&location(&response));
    assert_eq!(params["state"], "12345");
    let (status, body) = sim.redeem(&params["code"]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        sim.auth
            .validate_bearer(Some(&bearer(&body)))
            .unwrap()
            .user_id,
        ADMIN_ID
    );
    // The flow is used up.
    let again = sim
        .http
        .post(format!("{}/organizations/Consent/Set", sim.base))
        .form(&[("flow", flow.as_str()), ("decision", "accept")])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert!(again.text().await.unwrap().contains("AADSTS50089"));
}

#[tokio::test]
async fn interactive_typed_user_name_signs_in_that_account() {
    let sim = start().await;
    sim.auth.set_consent_mode(0, ConsentMode::Interactive);
    let page = sim
        .authorize(&[("login_hint", "nobody@x")])
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("value=\"nobody@x\""),
        "login_hint pre-fills the field"
    );
    let flow = hidden(&page, "flow");
    let login = |name: &'static str| {
        let sim = &sim;
        let flow = flow.clone();
        async move {
            sim.http
                .post(format!("{}/organizations/login", sim.base))
                .form(&[("flow", flow.as_str()), ("login", name)])
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let again = login("nobody@contoso.onmicrosoft.com").await;
    assert!(again.contains("This username may be incorrect"), "{again}");
    let consent = login("ADMIN@contoso.onmicrosoft.com").await;
    assert!(consent.contains("Permissions requested"), "{consent}");
    assert!(consent.contains("Consent on behalf of your organization"));
}

#[tokio::test]
async fn interactive_cancel_redirects_with_access_denied_65004() {
    let sim = start().await;
    sim.auth.set_consent_mode(0, ConsentMode::Interactive);
    let page = sim.authorize(&[]).await.text().await.unwrap();
    let flow = hidden(&page, "flow");
    sim.http
        .post(format!("{}/organizations/login", sim.base))
        .form(&[
            ("flow", flow.as_str()),
            ("login", "admin@contoso.onmicrosoft.com"),
        ])
        .send()
        .await
        .unwrap();
    let response = sim
        .http
        .post(format!("{}/organizations/Consent/Set", sim.base))
        .form(&[("flow", flow.as_str()), ("decision", "cancel")])
        .send()
        .await
        .unwrap();
    let params = query(&location(&response));
    assert_eq!(params["error"], "access_denied");
    assert!(params["error_description"].starts_with("AADSTS65004: "));
    assert_eq!(params["state"], "12345");
}

#[tokio::test]
async fn interactive_non_admin_sees_need_admin_approval_then_consent_required_90094() {
    let sim = start().await;
    sim.auth.set_consent_mode(0, ConsentMode::Interactive);
    let page = sim.authorize(&[]).await.text().await.unwrap();
    let flow = hidden(&page, "flow");
    let approval = sim
        .http
        .post(format!("{}/organizations/login", sim.base))
        .form(&[("flow", flow.as_str()), ("account", USER_ID)])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(approval.contains("Need admin approval"), "{approval}");
    let response = sim
        .http
        .post(format!("{}/organizations/Consent/Set", sim.base))
        .form(&[("flow", flow.as_str()), ("decision", "admin_required")])
        .send()
        .await
        .unwrap();
    let params = query(&location(&response));
    assert_eq!(params["error"], "consent_required");
    assert!(params["error_description"].starts_with("AADSTS90094: "));
}

#[tokio::test]
async fn interactive_disabled_account_gets_an_error_page_50057() {
    let sim = start().await;
    sim.auth.set_consent_mode(0, ConsentMode::Interactive);
    let flow = hidden(&sim.authorize(&[]).await.text().await.unwrap(), "flow");
    let response = sim
        .http
        .post(format!("{}/organizations/login", sim.base))
        .form(&[("flow", flow.as_str()), ("account", DISABLED_ID)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("AADSTS50057"));
}

#[tokio::test]
async fn interactive_prompt_none_is_login_required_50058() {
    let sim = start().await;
    sim.auth.set_consent_mode(0, ConsentMode::Interactive);
    let params = query(&location(&sim.authorize(&[("prompt", "none")]).await));
    assert_eq!(params["error"], "login_required");
    assert!(params["error_description"].starts_with("AADSTS50058: "));
}

#[tokio::test]
async fn user_declines_mode_redirects_with_access_denied_65004() {
    let sim = start().await;
    sim.auth.set_consent_mode(0, ConsentMode::UserDeclines);
    let params = query(&location(&sim.authorize(&[]).await));
    assert_eq!(params["error"], "access_denied");
    assert!(params["error_description"].starts_with("AADSTS65004: User declined to consent"));
    assert_eq!(params["state"], "12345");
    assert!(!params.contains_key("code"));
}

#[tokio::test]
async fn admin_approval_required_mode_redirects_with_consent_required_90094() {
    let sim = start().await;
    sim.auth
        .set_consent_mode(0, ConsentMode::AdminApprovalRequired);
    let params = query(&location(&sim.authorize(&[]).await));
    assert_eq!(params["error"], "consent_required");
    let description = &params["error_description"];
    assert!(description.starts_with("AADSTS90094: "), "{description}");
    assert!(description.contains("User.Read.All, Group.Read.All"));
}

#[tokio::test]
async fn non_admin_login_hint_needs_tenant_consent_for_admin_only_scopes() {
    let sim = start().await;
    let hint = [("login_hint", "adele@contoso.onmicrosoft.com")];
    let params = query(&location(&sim.authorize(&hint).await));
    assert_eq!(params["error"], "consent_required");
    // After the admin consents for the organization, the same user gets a code.
    sim.tokens().await;
    let params = query(&location(&sim.authorize(&hint).await));
    let (_, body) = sim.redeem(&params["code"]).await;
    assert_eq!(
        sim.auth
            .validate_bearer(Some(&bearer(&body)))
            .unwrap()
            .user_id,
        USER_ID
    );
}

#[tokio::test]
async fn missing_one_scope_mode_grants_all_but_the_last_graph_scope() {
    let sim = start().await;
    sim.auth.set_consent_mode(0, ConsentMode::MissingOneScope);
    let body = sim.tokens().await;
    assert_eq!(
        body["scope"],
        "https://graph.microsoft.com/User.Read.All profile openid offline_access"
    );
    let grant = sim.auth.validate_bearer(Some(&bearer(&body))).unwrap();
    assert_eq!(grant.scopes, vec!["User.Read.All"]);
}

// ---------------------------------------------------------------- token: code grant

#[tokio::test]
async fn code_redemption_answers_the_documented_keys() {
    let sim = start().await;
    let body = sim.tokens().await;
    let mut expected = keys(&fixture("token-response-authcode.json"));
    assert_eq!(keys(&fixture("token-response-refresh.json")), expected);
    // Real answers also carry ext_expires_in (spec §2d).
    expected.insert("ext_expires_in".into());
    assert_eq!(keys(&body), expected);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["ext_expires_in"], 3600);
    assert_eq!(
        body["scope"],
        "https://graph.microsoft.com/User.Read.All https://graph.microsoft.com/Group.Read.All profile openid offline_access"
    );
    let grant = sim.auth.validate_bearer(Some(&bearer(&body))).unwrap();
    assert_eq!(
        grant,
        BearerGrant {
            tenant: 0,
            user_id: ADMIN_ID.into(),
            scopes: vec!["User.Read.All".into(), "Group.Read.All".into()],
        }
    );
}

/// The `uid` and `utid` of a token answer's `client_info`.
fn decoded_client_info(body: &Value) -> (String, String) {
    let encoded = body["client_info"].as_str().unwrap();
    assert!(!encoded.contains('='), "unpadded base64url: {encoded}");
    let info: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).unwrap()).unwrap();
    (
        info["uid"].as_str().unwrap().to_owned(),
        info["utid"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn client_info_is_answered_only_when_asked_for() {
    let sim = start().await;
    // Without client_info=1: none, on the code and the refresh grant.
    let tokens = sim.tokens().await;
    assert!(tokens.get("client_info").is_none(), "{tokens}");
    let (status, refreshed) = sim
        .refresh(tokens["refresh_token"].as_str().unwrap(), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    assert!(refreshed.get("client_info").is_none(), "{refreshed}");

    // With it, as MSAL asks: the signed-in user's oid and the tenant id.
    let code = sim.code().await;
    let (status, body) = sim
        .token(
            TENANT_ID,
            &[
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
                ("client_info", "1"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        decoded_client_info(&body),
        (ADMIN_ID.to_owned(), TENANT_ID.to_owned())
    );
    let (status, refreshed) = sim
        .token(
            TENANT_ID,
            &[
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
                ("grant_type", "refresh_token"),
                ("refresh_token", body["refresh_token"].as_str().unwrap()),
                ("client_info", "1"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    assert_eq!(
        decoded_client_info(&refreshed),
        (ADMIN_ID.to_owned(), TENANT_ID.to_owned())
    );
}

#[tokio::test]
async fn client_info_names_the_user_who_approved_the_device_code() {
    let sim = start().await;
    sim.auth.set_consent_mode(0, ConsentMode::Interactive);
    let device = sim.device_code().await;
    assert_eq!(sim.poll(&device).await.1["error"], "authorization_pending");
    assert!(
        sim.auth
            .approve_device_code(0, device["user_code"].as_str().unwrap(), USER_ID)
    );
    sim.auth.advance_clock(Duration::from_secs(5));
    let (status, body) = sim
        .token(
            "organizations",
            &[
                ("client_id", CLIENT_ID),
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", device["device_code"].as_str().unwrap()),
                ("client_info", "1"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        decoded_client_info(&body),
        (USER_ID.to_owned(), TENANT_ID.to_owned())
    );
}

#[tokio::test]
async fn unprefixed_scope_style_matches_the_device_code_sample() {
    let sim = start().await;
    sim.auth.set_prefixed_scopes(false);
    let body = sim.tokens().await;
    assert_eq!(
        body["scope"],
        "User.Read.All Group.Read.All profile openid offline_access"
    );
}

#[tokio::test]
async fn refresh_token_only_with_offline_access_and_id_token_only_with_openid() {
    let sim = start().await;
    let url = sim.authorize_url("organizations", &[]).replace(
        "scope=openid+profile+offline_access+User.Read.All",
        "scope=User.Read.All",
    );
    let code = query(&location(&sim.http.get(url).send().await.unwrap()))["code"].clone();
    let (status, body) = sim.redeem(&code).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.get("refresh_token").is_none() && body.get("id_token").is_none(),
        "{body}"
    );
    assert_eq!(
        body["scope"],
        "https://graph.microsoft.com/User.Read.All https://graph.microsoft.com/Group.Read.All"
    );
}

#[tokio::test]
async fn pkce_verifier_mismatch_is_invalid_grant() {
    let sim = start().await;
    let code = sim.code().await;
    let (status, body) = sim
        .token(
            "organizations",
            &[
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                (
                    "code_verifier",
                    "wrong-verifier-wrong-verifier-wrong-verifier-x",
                ),
            ],
        )
        .await;
    assert_entra_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        501_481,
    );
}

#[tokio::test]
async fn pkce_missing_verifier_is_invalid_grant() {
    let sim = start().await;
    let code = sim.code().await;
    let (status, body) = sim
        .token(
            TENANT_ID,
            &[
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
            ],
        )
        .await;
    assert_entra_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        501_481,
    );
}

#[tokio::test]
async fn pkce_plain_challenge_is_compared_as_is() {
    let sim = start().await;
    let url = sim
        .authorize_url("organizations", &[])
        .replace(&challenge(VERIFIER), VERIFIER)
        .replace("code_challenge_method=S256", "code_challenge_method=plain");
    let code = query(&location(&sim.http.get(url).send().await.unwrap()))["code"].clone();
    assert_eq!(sim.redeem(&code).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_code_is_single_use_54005() {
    let sim = start().await;
    let code = sim.code().await;
    assert_eq!(sim.redeem(&code).await.0, StatusCode::OK);
    let (status, body) = sim.redeem(&code).await;
    assert_entra_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        54_005,
    );
}

#[tokio::test]
async fn a_code_expires_after_ten_minutes() {
    let sim = start().await;
    let code = sim.code().await;
    sim.auth.advance_clock(Duration::from_secs(601));
    let (status, body) = sim.redeem(&code).await;
    assert_entra_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        70_008,
    );
}

#[tokio::test]
async fn redirect_uri_must_equal_the_authorize_one() {
    let sim = start().await;
    let code = sim.code().await;
    let (status, body) = sim
        .token(
            TENANT_ID,
            &[
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "http://localhost:53124/callback"),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_entra_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        500_112,
    );
}

#[tokio::test]
async fn wrong_client_secret_is_invalid_client_401_7000215() {
    let sim = start().await;
    let code = sim.code().await;
    let (status, body) = sim
        .token(
            TENANT_ID,
            &[
                ("client_id", CLIENT_ID),
                ("client_secret", "not-the-secret"),
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_entra_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        7_000_215,
    );
    // The code was not spent on a failed client authentication.
    assert_eq!(sim.redeem(&code).await.0, StatusCode::OK);
}

#[tokio::test]
async fn missing_client_credentials_are_7000218_unless_public_client_is_allowed() {
    let sim = start().await;
    let code = sim.code().await;
    let form = [
        ("client_id", CLIENT_ID),
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let (status, body) = sim.token(TENANT_ID, &form).await;
    assert_entra_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        7_000_218,
    );
    sim.auth.set_allow_public_client(true);
    let (status, body) = sim.token(TENANT_ID, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A refresh token of a public client refreshes without credentials.
    let (status, _) = sim
        .token(
            TENANT_ID,
            &[
                ("client_id", CLIENT_ID),
                ("grant_type", "refresh_token"),
                ("refresh_token", body["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn client_secret_in_http_basic_is_accepted() {
    let sim = start().await;
    let code = sim.code().await;
    let response = sim
        .http
        .post(format!("{}/{TENANT_ID}/oauth2/v2.0/token", sim.base))
        .basic_auth(
            CLIENT_ID,
            Some(url::form_urlencoded::byte_serialize(SECRET.as_bytes()).collect::<String>()),
        )
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_client_and_grant_type_and_tenant_are_refused_in_entra_shape() {
    let sim = start().await;
    let (status, body) = sim
        .token(
            TENANT_ID,
            &[
                ("client_id", "nope"),
                ("grant_type", "authorization_code"),
                ("code", "x"),
            ],
        )
        .await;
    assert_entra_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
        700_016,
    );
    let (status, body) = sim
        .token(
            TENANT_ID,
            &[
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
                ("grant_type", "password"),
            ],
        )
        .await;
    assert_entra_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
        70_003,
    );
    let (status, body) = sim
        .token(
            "consumers",
            &[("client_id", CLIENT_ID), ("grant_type", "refresh_token")],
        )
        .await;
    assert_entra_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_tenant",
        90_002,
    );
    let (status, body) = sim.token(TENANT_ID, &[("client_id", CLIENT_ID)]).await;
    assert_entra_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900_144,
    );
}

#[tokio::test]
async fn error_body_has_the_documented_keys_and_diagnostic_lines() {
    let sim = start().await;
    let tokens = sim.tokens().await;
    let response = sim
        .http
        .post(format!("{}/{TENANT_ID}/oauth2/v2.0/token", sim.base))
        .header("client-request-id", "aaaa0000-bb11-2222-33cc-444444dddddd")
        .form(&[
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("scope", "https://foo.microsoft.com/mail.read"),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_entra_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_scope",
        70_011,
    );
    assert_eq!(
        keys(&body),
        keys(&fixture("token-error-invalid-scope-error-uri.json"))
    );
    let mut documented = keys(&fixture("token-error-invalid-scope.json"));
    documented.insert("error_uri".into());
    assert_eq!(keys(&body), documented);
    assert_eq!(
        body["correlation_id"],
        "aaaa0000-bb11-2222-33cc-444444dddddd"
    );
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains("The scope https://foo.microsoft.com/mail.read is not valid."));
    let trace = body["trace_id"].as_str().unwrap();
    let timestamp = body["timestamp"].as_str().unwrap();
    assert!(description.ends_with(&format!(
        "\r\nTrace ID: {trace}\r\nCorrelation ID: aaaa0000-bb11-2222-33cc-444444dddddd\r\nTimestamp: {timestamp}"
    )));
    // `2016-01-09 02:02:12Z`
    assert_eq!(timestamp.len(), 20);
    assert_eq!(&timestamp[10..11], " ");
    assert!(timestamp.ends_with('Z'));
    assert!(
        body["error_uri"]
            .as_str()
            .unwrap()
            .ends_with("/error?code=70011")
    );
}

#[tokio::test]
async fn client_assertion_signed_by_a_registered_certificate_authenticates() {
    let sim = start().await;
    let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let certificate = rcgen::CertificateParams::new(vec!["client.example".to_owned()])
        .unwrap()
        .self_signed(&key_pair)
        .unwrap();
    let der = certificate.der().as_ref().to_vec();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pair.serialize_pem().as_bytes()).unwrap();
    let assertion = |algorithm, audience: String| {
        let mut header = jsonwebtoken::Header::new(algorithm);
        if algorithm == jsonwebtoken::Algorithm::PS256 {
            header.x5t_s256 = Some(URL_SAFE_NO_PAD.encode(Sha256::digest(&der)));
        } else {
            header.x5t = Some(super::keys::x5t(&der));
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = serde_json::json!({
            "aud": audience, "iss": CLIENT_ID, "sub": CLIENT_ID,
            "jti": uuid::Uuid::new_v4().to_string(), "nbf": now, "iat": now, "exp": now + 600,
        });
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    let redeem = |assertion: String| {
        let sim = &sim;
        async move {
            let code = sim.code().await;
            sim.token(
                TENANT_ID,
                &[
                    ("client_id", CLIENT_ID),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion.as_str()),
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", VERIFIER),
                ],
            )
            .await
        }
    };
    let audience = format!("{}/{TENANT_ID}/oauth2/v2.0/token", sim.base);
    // Not registered yet.
    let (status, body) = redeem(assertion(jsonwebtoken::Algorithm::PS256, audience.clone())).await;
    assert_entra_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        700_027,
    );
    sim.auth
        .register_client_certificate(&certificate.pem())
        .unwrap();
    for algorithm in [
        jsonwebtoken::Algorithm::PS256,
        jsonwebtoken::Algorithm::RS256,
    ] {
        let (status, body) = redeem(assertion(algorithm, audience.clone())).await;
        assert_eq!(status, StatusCode::OK, "{algorithm:?}: {body}");
    }
    let (status, body) = redeem(assertion(
        jsonwebtoken::Algorithm::PS256,
        "https://login.microsoftonline.com/other/oauth2/v2.0/token".into(),
    ))
    .await;
    assert_entra_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        700_027,
    );
    assert!(
        sim.auth
            .register_client_certificate("not a certificate")
            .is_err()
    );
}

// ---------------------------------------------------------------- token: refresh

#[tokio::test]
async fn refresh_rotates_the_refresh_token_and_the_old_one_keeps_working() {
    let sim = start().await;
    let first = sim.tokens().await;
    let old = first["refresh_token"].as_str().unwrap();
    let (status, second) = sim.refresh(old, Some(SCOPES)).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(keys(&second), keys(&first));
    let new = second["refresh_token"].as_str().unwrap();
    assert_ne!(new, old);
    assert_ne!(second["access_token"], first["access_token"]);
    // Spec §2b: "doesn't revoke old refresh tokens when used".
    assert_eq!(sim.refresh(old, None).await.0, StatusCode::OK);
    assert_eq!(sim.refresh(new, None).await.0, StatusCode::OK);
    assert!(sim.auth.validate_bearer(Some(&bearer(&second))).is_ok());
}

#[tokio::test]
async fn refresh_may_narrow_scopes_but_not_widen_them() {
    let sim = start().await;
    let tokens = sim.tokens().await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let (status, body) = sim
        .refresh(refresh_token, Some("User.Read.All offline_access"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["scope"],
        "https://graph.microsoft.com/User.Read.All offline_access"
    );
    assert!(body.get("id_token").is_none());
    let (status, body) = sim
        .refresh(refresh_token, Some("Mail.Read offline_access"))
        .await;
    assert_entra_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        65_001,
    );
    assert_eq!(body["suberror"], "consent_required");
}

#[tokio::test]
async fn revoked_refresh_token_is_invalid_grant_50173() {
    let sim = start().await;
    let tokens = sim.tokens().await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    assert!(sim.auth.revoke_refresh_token(0, refresh_token));
    assert!(!sim.auth.revoke_refresh_token(0, "never-issued"));
    let (status, body) = sim.refresh(refresh_token, None).await;
    assert_entra_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        50_173,
    );
    assert_eq!(body["suberror"], "bad_token");
    assert_eq!(sim.auth.counters().refresh_tokens_revoked, 1);
}

#[tokio::test]
async fn revoking_a_users_grants_revokes_refresh_and_access_tokens() {
    let sim = start().await;
    let first = sim.tokens().await;
    let second = sim.tokens().await;
    assert_eq!(sim.auth.revoke_user_grants(0, ADMIN_ID), 2);
    assert_eq!(sim.auth.revoke_user_grants(0, USER_ID), 0);
    for tokens in [&first, &second] {
        let (status, body) = sim
            .refresh(tokens["refresh_token"].as_str().unwrap(), None)
            .await;
        assert_entra_error(
            status,
            &body,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            50_173,
        );
        assert_eq!(
            sim.auth.validate_bearer(Some(&bearer(tokens))),
            Err(BearerError::Invalid)
        );
    }
}

#[tokio::test]
async fn unknown_refresh_token_is_invalid_grant() {
    let sim = start().await;
    let (status, body) = sim.refresh("not-a-refresh-token", None).await;
    assert_entra_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        9_002_313,
    );
}

#[tokio::test]
async fn refresh_of_a_confidential_grant_needs_the_secret() {
    let sim = start().await;
    let tokens = sim.tokens().await;
    let (status, body) = sim
        .token(
            TENANT_ID,
            &[
                ("client_id", CLIENT_ID),
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_entra_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        7_000_218,
    );
}

#[tokio::test]
async fn refresh_token_expires_after_ninety_days() {
    let sim = start().await;
    let tokens = sim.tokens().await;
    sim.auth
        .advance_clock(Duration::from_secs(90 * 24 * 3600 + 1));
    let (status, body) = sim
        .refresh(tokens["refresh_token"].as_str().unwrap(), None)
        .await;
    assert_entra_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        700_082,
    );
}

// ---------------------------------------------------------------- bearer validation

#[tokio::test]
async fn validate_bearer_refuses_missing_unknown_and_expired_tokens() {
    let sim = start().await;
    sim.auth
        .set_access_token_lifetime(0, Duration::from_secs(60));
    let body = sim.tokens().await;
    assert_eq!(body["expires_in"], 60);
    let header = bearer(&body);
    assert!(sim.auth.validate_bearer(Some(&header)).is_ok());
    assert!(
        sim.auth
            .validate_bearer(Some(&header.replace("Bearer", "bearer")))
            .is_ok()
    );
    assert_eq!(sim.auth.validate_bearer(None), Err(BearerError::Missing));
    assert_eq!(
        sim.auth.validate_bearer(Some("Basic abc")),
        Err(BearerError::Missing)
    );
    assert_eq!(
        sim.auth.validate_bearer(Some("Bearer ")),
        Err(BearerError::Missing)
    );
    assert_eq!(
        sim.auth.validate_bearer(Some("Bearer forged")),
        Err(BearerError::Invalid)
    );
    sim.auth.advance_clock(Duration::from_secs(61));
    assert_eq!(
        sim.auth.validate_bearer(Some(&header)),
        Err(BearerError::Expired)
    );
}

#[tokio::test(start_paused = true)]
async fn access_tokens_expire_on_paused_tokio_time() {
    let sim = start().await;
    sim.auth
        .set_access_token_lifetime(0, Duration::from_secs(300));
    let body = sim.tokens().await;
    tokio::time::advance(Duration::from_secs(299)).await;
    assert!(sim.auth.validate_bearer(Some(&bearer(&body))).is_ok());
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(
        sim.auth.validate_bearer(Some(&bearer(&body))),
        Err(BearerError::Expired)
    );
}

#[tokio::test]
async fn disabled_login_hint_gets_an_error_page_50057() {
    let sim = start().await;
    let response = sim
        .authorize(&[("login_hint", "gone@contoso.onmicrosoft.com")])
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("AADSTS50057"));
    let response = sim
        .authorize(&[("login_hint", "nobody@contoso.onmicrosoft.com")])
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("AADSTS50034"));
}

#[tokio::test]
async fn disabled_or_deleted_user_cannot_refresh() {
    let sim = start().await;
    let tokens = sim.tokens().await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    sim.directory
        .update(|accounts| accounts[0].account_enabled = false);
    let (status, body) = sim.refresh(refresh_token, None).await;
    assert_entra_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        50_057,
    );
    sim.directory.update(|accounts| {
        accounts.remove(0);
    });
    let (status, body) = sim.refresh(refresh_token, None).await;
    assert_entra_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        50_034,
    );
}

#[tokio::test]
async fn token_endpoint_refuses_get_with_900561() {
    let sim = start().await;
    let response = sim
        .http
        .get(format!("{}/{TENANT_ID}/oauth2/v2.0/token", sim.base))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_entra_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900_561,
    );
}

#[tokio::test]
async fn logout_returns_to_a_loopback_uri_or_shows_a_page() {
    let sim = start().await;
    let response = sim
        .http
        .get(format!(
            "{}/organizations/oauth2/v2.0/logout?post_logout_redirect_uri=http%3A%2F%2Flocalhost%3A4000%2Fbye&state=s1",
            sim.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(location(&response), "http://localhost:4000/bye?state=s1");
    let response = sim
        .http
        .get(format!(
            "{}/organizations/oauth2/v2.0/logout?post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F",
            sim.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("You signed out"));
}

// ---------------------------------------------------------------- id token

#[tokio::test]
async fn id_token_is_signed_with_the_jwks_key_and_has_the_documented_claims() {
    let sim = start().await;
    let body = sim.tokens().await;
    let id_token = body["id_token"].as_str().unwrap();
    let jwks: Value = sim
        .http
        .get(format!("{}/organizations/discovery/v2.0/keys", sim.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk_set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    let header_json: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(id_token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        keys(&header_json),
        keys(&fixture("id-token-header-v2.json"))
    );
    let jwk = jwk_set
        .find(header.kid.as_deref().unwrap())
        .expect("kid published");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[CLIENT_ID]);
    validation.set_issuer(&[format!("{}/{TENANT_ID}/v2.0", sim.base)]);
    let claims = jsonwebtoken::decode::<Value>(id_token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(keys(&claims), keys(&fixture("id-token-claims-v2.json")));
    assert_eq!(claims["tid"], TENANT_ID);
    assert_eq!(claims["oid"], ADMIN_ID);
    assert_eq!(
        claims["preferred_username"],
        "admin@contoso.onmicrosoft.com"
    );
    assert_eq!(claims["name"], "Megan Bowen");
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(claims["ver"], "2.0");
    assert_eq!(claims["iat"], claims["nbf"]);
    assert!(claims["exp"].as_i64().unwrap() > claims["iat"].as_i64().unwrap());
    assert_eq!(claims["sub"].as_str().unwrap().len(), 43);
    // Also checks against the key the simulator holds.
    jsonwebtoken::decode::<Value>(id_token, &sim.auth.key.decoding_key(), &validation).unwrap();
}

#[tokio::test]
async fn refreshed_id_token_has_no_nonce() {
    let sim = start().await;
    let tokens = sim.tokens().await;
    let (_, body) = sim
        .refresh(tokens["refresh_token"].as_str().unwrap(), Some(SCOPES))
        .await;
    let payload = body["id_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert!(claims.get("nonce").is_none());
    assert_eq!(claims["oid"], ADMIN_ID);
}

// ---------------------------------------------------------------- discovery

#[tokio::test]
async fn discovery_document_has_microsofts_keys_and_issuer_template() {
    let sim = start().await;
    let fetch = |tenant: &str| {
        let url = format!(
            "{}/{tenant}/v2.0/.well-known/openid-configuration",
            sim.base
        );
        let http = sim.http.clone();
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let documented = keys(&fixture("openid-configuration.json"));
    let organizations = fetch("organizations").await;
    assert!(
        documented.is_subset(&keys(&organizations)),
        "{organizations}"
    );
    assert_eq!(
        organizations["issuer"],
        format!("{}/{{tenantid}}/v2.0", sim.base)
    );
    assert_eq!(
        organizations["jwks_uri"],
        format!("{}/organizations/discovery/v2.0/keys", sim.base)
    );
    assert_eq!(
        organizations["authorization_endpoint"],
        format!("{}/organizations/oauth2/v2.0/authorize", sim.base)
    );
    assert_eq!(
        fetch("common").await["issuer"],
        format!("{}/{{tenantid}}/v2.0", sim.base)
    );
    for tenant in [TENANT_ID, DOMAIN] {
        let document = fetch(tenant).await;
        assert_eq!(document["issuer"], format!("{}/{TENANT_ID}/v2.0", sim.base));
        assert_eq!(
            document["token_endpoint"],
            format!("{}/{TENANT_ID}/oauth2/v2.0/token", sim.base)
        );
        assert_eq!(keys(&document), keys(&organizations));
    }
    let missing = sim
        .http
        .get(format!(
            "{}/fabrikam.com/v2.0/.well-known/openid-configuration",
            sim.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn jwks_publishes_one_rsa_signing_key_in_microsofts_shape() {
    let sim = start().await;
    let jwks: Value = sim
        .http
        .get(format!("{}/{TENANT_ID}/discovery/v2.0/keys", sim.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    let expected: BTreeSet<String> = ["kty", "use", "kid", "x5t", "n", "e", "x5c", "issuer"]
        .iter()
        .map(|key| (*key).to_owned())
        .collect();
    assert_eq!(keys(key), expected);
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["e"], "AQAB");
    assert_eq!(key["kid"], key["x5t"]);
    assert_eq!(key["issuer"], format!("{}/{TENANT_ID}/v2.0", sim.base));
    // x5t is the SHA-1 thumbprint of the x5c certificate.
    let der = base64::engine::general_purpose::STANDARD
        .decode(key["x5c"][0].as_str().unwrap())
        .unwrap();
    assert_eq!(key["x5t"], super::keys::x5t(&der));
}

#[tokio::test]
async fn instance_discovery_points_msal_at_this_host() {
    let sim = start().await;
    let body: Value = sim
        .http
        .get(format!(
            "{}/common/discovery/instance?api-version=1.1&authorization_endpoint={}/{TENANT_ID}/oauth2/v2.0/authorize",
            sim.base, sim.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["tenant_discovery_endpoint"],
        format!(
            "{}/{TENANT_ID}/v2.0/.well-known/openid-configuration",
            sim.base
        )
    );
}

// ---------------------------------------------------------------- admin consent

fn admin_consent_url(sim: &Sim, tenant: &str) -> String {
    format!(
        "{}/{tenant}/v2.0/adminconsent?client_id={CLIENT_ID}&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default&redirect_uri=http%3A%2F%2Flocalhost%2Fmyapp%2Fpermissions&state=12345",
        sim.base
    )
}

#[tokio::test]
async fn admin_consent_redirects_with_admin_consent_true_tenant_scope_and_state() {
    let sim = start().await;
    let response = sim
        .http
        .get(admin_consent_url(&sim, "organizations"))
        .send()
        .await
        .unwrap();
    let redirect = location(&response);
    assert!(
        redirect.starts_with("http://localhost/myapp/permissions?admin_consent=True&tenant="),
        "{redirect}"
    );
    let params = query(&redirect);
    let names: BTreeSet<&str> = params.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["admin_consent", "tenant", "scope", "state"])
    );
    assert_eq!(params["tenant"], TENANT_ID);
    assert_eq!(params["state"], "12345");
    assert_eq!(
        params["scope"],
        "https://graph.microsoft.com/User.Read https://graph.microsoft.com/User.Read.All \
         https://graph.microsoft.com/Group.Read.All https://graph.microsoft.com/GroupMember.Read.All"
    );
    // Tenant-wide consent now lets a non-admin sign in.
    let params = query(&location(&sim.authorize(&[("login_hint", USER_ID)]).await));
    assert!(params.contains_key("code"), "{params:?}");
}

#[tokio::test]
async fn admin_consent_declined_keeps_admin_consent_true_with_the_error() {
    let sim = start().await;
    sim.auth.set_consent_mode(0, ConsentMode::UserDeclines);
    let redirect = location(
        &sim.http
            .get(admin_consent_url(&sim, TENANT_ID))
            .send()
            .await
            .unwrap(),
    );
    let params = query(&redirect);
    assert_eq!(params["admin_consent"], "True");
    assert_eq!(params["error"], "consent_required");
    assert!(params["error_description"].starts_with("AADSTS65004: "));
    assert_eq!(params["state"], "12345");
    assert!(!params.contains_key("tenant"));
}

#[tokio::test]
async fn admin_consent_on_common_is_refused() {
    let sim = start().await;
    let response = sim
        .http
        .get(admin_consent_url(&sim, "common"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("AADSTS90130"));
}

// ---------------------------------------------------------------- device code

impl Sim {
    async fn device_code(&self) -> Value {
        let response = self
            .http
            .post(format!(
                "{}/organizations/oauth2/v2.0/devicecode",
                self.base
            ))
            .form(&[("client_id", CLIENT_ID), ("scope", SCOPES)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    async fn poll(&self, device_code: &Value) -> (StatusCode, Value) {
        self.token(
            "organizations",
            &[
                ("client_id", CLIENT_ID),
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", device_code["device_code"].as_str().unwrap()),
            ],
        )
        .await
    }
}

#[tokio::test]
async fn device_code_answer_has_the_documented_fields() {
    let sim = start().await;
    let body = sim.device_code().await;
    let expected: BTreeSet<String> = [
        "device_code",
        "user_code",
        "verification_uri",
        "expires_in",
        "interval",
        "message",
    ]
    .iter()
    .map(|key| (*key).to_owned())
    .collect();
    assert_eq!(keys(&body), expected);
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["interval"], 5);
    assert_eq!(
        body["verification_uri"],
        format!("{}/devicelogin", sim.base)
    );
    let user_code = body["user_code"].as_str().unwrap();
    assert_eq!(user_code.len(), 9);
    assert!(body["message"].as_str().unwrap().contains(user_code));
}

#[tokio::test]
async fn device_code_is_pending_until_approved_then_issues_tokens() {
    let sim = start().await;
    sim.auth.set_consent_mode(0, ConsentMode::Interactive);
    let device = sim.device_code().await;
    let (status, body) = sim.poll(&device).await;
    assert_entra_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "authorization_pending",
        70_016,
    );
    sim.auth.advance_clock(Duration::from_secs(5));
    assert_eq!(sim.poll(&device).await.1["error"], "authorization_pending");
    assert!(
        sim.auth
            .approve_device_code(0, device["user_code"].as_str().unwrap(), USER_ID)
    );
    assert!(!sim.auth.approve_device_code(0, "NOTACODE1", USER_ID));
    sim.auth.advance_clock(Duration::from_secs(5));
    let (status, body) = sim.poll(&device).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut expected = keys(&fixture("token-response-devicecode.json"));
    expected.insert("ext_expires_in".into());
    assert_eq!(keys(&body), expected);
    assert_eq!(
        sim.auth
            .validate_bearer(Some(&bearer(&body)))
            .unwrap()
            .user_id,
        USER_ID
    );
    // The refresh token of the device flow (a public client) refreshes without a secret.
    let (status, _) = sim
        .token(
            TENANT_ID,
            &[
                ("client_id", CLIENT_ID),
                ("grant_type", "refresh_token"),
                ("refresh_token", body["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    sim.auth.advance_clock(Duration::from_secs(5));
    let (status, body) = sim.poll(&device).await;
    assert_entra_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        70_000,
    );
}

#[tokio::test]
async fn device_code_polled_too_fast_gets_slow_down() {
    let sim = start().await;
    sim.auth.set_consent_mode(0, ConsentMode::Interactive);
    let device = sim.device_code().await;
    assert_eq!(sim.poll(&device).await.1["error"], "authorization_pending");
    let (status, body) = sim.poll(&device).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "slow_down");
    sim.auth.advance_clock(Duration::from_secs(5));
    assert_eq!(sim.poll(&device).await.1["error"], "authorization_pending");
}

#[tokio::test]
async fn device_code_declined_is_authorization_declined() {
    let sim = start().await;
    sim.auth.set_consent_mode(0, ConsentMode::Interactive);
    let device = sim.device_code().await;
    assert!(
        sim.auth
            .decline_device_code(device["user_code"].as_str().unwrap())
    );
    let (status, body) = sim.poll(&device).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "authorization_declined");
}

#[tokio::test]
async fn device_code_expires_after_fifteen_minutes() {
    let sim = start().await;
    sim.auth.set_consent_mode(0, ConsentMode::Interactive);
    let device = sim.device_code().await;
    sim.auth.advance_clock(Duration::from_secs(901));
    let (status, body) = sim.poll(&device).await;
    assert_entra_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "expired_token",
        70_019,
    );
}

#[tokio::test]
async fn unknown_device_code_is_bad_verification_code() {
    let sim = start().await;
    let (status, body) = sim.poll(&serde_json::json!({"device_code": "nope"})).await;
    assert_entra_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "bad_verification_code",
        70_018,
    );
}

#[tokio::test]
async fn auto_consent_device_code_is_pending_once_then_approved_by_the_admin() {
    let sim = start().await;
    let device = sim.device_code().await;
    assert_eq!(sim.poll(&device).await.1["error"], "authorization_pending");
    sim.auth.advance_clock(Duration::from_secs(5));
    let (status, body) = sim.poll(&device).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        sim.auth
            .validate_bearer(Some(&bearer(&body)))
            .unwrap()
            .user_id,
        ADMIN_ID
    );
}

#[tokio::test]
async fn user_declines_mode_declines_the_device_code() {
    let sim = start().await;
    sim.auth.set_consent_mode(0, ConsentMode::UserDeclines);
    let device = sim.device_code().await;
    assert_eq!(sim.poll(&device).await.1["error"], "authorization_pending");
    sim.auth.advance_clock(Duration::from_secs(5));
    assert_eq!(sim.poll(&device).await.1["error"], "authorization_declined");
}

#[tokio::test]
async fn device_verification_page_takes_the_code_and_an_account() {
    let sim = start().await;
    sim.auth.set_consent_mode(0, ConsentMode::Interactive);
    let device = sim.device_code().await;
    let entry = sim
        .http
        .get(format!("{}/devicelogin", sim.base))
        .send()
        .await
        .unwrap();
    assert!(entry.text().await.unwrap().contains("name=\"user_code\""));
    let typed = device["user_code"].as_str().unwrap().to_ascii_lowercase();
    let pick = sim
        .http
        .post(format!("{}/devicelogin", sim.base))
        .form(&[("user_code", typed.as_str())])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(pick.contains("<li>User.Read.All</li>"), "{pick}");
    let user_code = hidden(&pick, "user_code");
    let done = sim
        .http
        .post(format!("{}/devicelogin/confirm", sim.base))
        .form(&[("user_code", user_code.as_str()), ("account", ADMIN_ID)])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(done.contains("You have signed in"), "{done}");
    let (status, body) = sim.poll(&device).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let wrong = sim
        .http
        .post(format!("{}/devicelogin", sim.base))
        .form(&[("user_code", "WRONGCODE")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(wrong.contains("That code didn"), "{wrong}");
}

// ---------------------------------------------------------------- secrets

#[test]
fn auth_config_debug_redacts_the_client_secret() {
    let config = AuthConfig {
        client_id: CLIENT_ID.into(),
        client_secret: SECRET.into(),
        login_base: "http://127.0.0.1:1".into(),
        graph_resource: "https://graph.microsoft.com".into(),
        access_token_lifetime: Duration::from_secs(60),
        cae_access_token_lifetime: Duration::from_secs(600),
        consent_mode: ConsentMode::AutoConsent,
    };
    let debug = format!("{config:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(debug.contains("[redacted]") && debug.contains(CLIENT_ID));
}

#[tokio::test]
async fn auth_debug_shows_no_secret_or_token() {
    let sim = start().await;
    let tokens = sim.tokens().await;
    let debug = format!("{:?}", sim.auth);
    assert!(!debug.contains(SECRET));
    assert!(!debug.contains(tokens["access_token"].as_str().unwrap()));
    assert!(!debug.contains(tokens["refresh_token"].as_str().unwrap()));
}
