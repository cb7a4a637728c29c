//! Directory roles end to end, through the real Entra half: the seeded admin holds Global
//! Administrator, roles are given and taken through the control API, Graph lists them in
//! `memberOf/microsoft.graph.directoryRole`, id tokens carry `wids` when asked, and a
//! non-admin signs in for real (the same pages and token endpoint as the admin) once the
//! tenant has admin consent.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use secrecy::ExposeSecret as _;
use serde_json::Value;
use sha2::Digest as _;
use tenant_sim::{ConsentMode, DirectoryRole, TenantSim, UserSummary, UserType};

const SCOPES: &str = "openid profile offline_access https://graph.microsoft.com/User.Read https://graph.microsoft.com/User.Read.All https://graph.microsoft.com/Group.Read.All";
const VERIFIER: &str = "a-verifier-of-enough-length-0123456789-abcdefghijklmnop";
const REDIRECT_URI: &str = "http://localhost:8400/callback";
const ROLES: &str =
    "/me/memberOf/microsoft.graph.directoryRole?$select=id,displayName,roleTemplateId";
const GLOBAL_ADMINISTRATOR: &str = "62e90394-69f5-4237-9190-012177145e10";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn start(builder: tenant_sim::TenantSimBuilder) -> TenantSim {
    builder
        .users(40)
        .groups(4)
        .seed(11)
        .start()
        .await
        .unwrap_or_else(|e| panic!("start: {e}"))
}

/// `GET /authorize` (code + PKCE) with `extra` parameters such as `login_hint`.
async fn authorize(
    sim: &TenantSim,
    http: &reqwest::Client,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(VERIFIER.as_bytes()));
    let mut query = vec![
        ("client_id", sim.client_id()),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT_URI),
        ("scope", SCOPES),
        ("state", "s1"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    query.extend_from_slice(extra);
    http.get(format!(
        "{}/{}/oauth2/v2.0/authorize",
        sim.login_base(),
        sim.tenant_id()
    ))
    .query(&query)
    .send()
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

fn redirect_query(response: &reqwest::Response) -> HashMap<String, String> {
    assert_eq!(
        response.status(),
        StatusCode::FOUND,
        "a redirect to the app"
    );
    let location = response.headers()["location"].to_str().unwrap_or_default();
    let url = url::Url::parse(location).unwrap_or_else(|e| panic!("{location}: {e}"));
    url.query_pairs().into_owned().collect()
}

/// Redeems a code at the token endpoint; the token response.
async fn redeem(sim: &TenantSim, http: &reqwest::Client, code: &str) -> Value {
    let response = http
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            sim.login_base(),
            sim.tenant_id()
        ))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", sim.client_id()),
            ("client_secret", sim.client_secret().expose_secret()),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap_or(Value::Null)
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    html[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Signs `upn` in through the interactive pages, as a person in a browser would: the
/// "Pick an account" page, the typed user name (`POST /{tenant}/login`), the
/// "Permissions requested" page, Accept (`POST /{tenant}/Consent/Set`, with "on behalf of
/// your organization" ticked when `for_organization`), then the code redeemed. Returns
/// the consent page's HTML and the token response.
async fn sign_in_interactively(
    sim: &TenantSim,
    http: &reqwest::Client,
    upn: &str,
    for_organization: bool,
) -> (String, Value) {
    sim.control().set_consent_mode(ConsentMode::Interactive);
    let page = authorize(sim, http, &[("login_hint", upn)])
        .await
        .text()
        .await
        .unwrap_or_default();
    assert!(page.contains("Pick an account"), "{page}");
    let flow = hidden(&page, "flow");
    let tenant = sim.tenant_id();
    let consent = http
        .post(format!("{}/{tenant}/login", sim.login_base()))
        .form(&[("flow", flow.as_str()), ("login", upn)])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default();
    assert!(consent.contains("Permissions requested"), "{consent}");
    let mut form = vec![("flow", flow.as_str()), ("decision", "accept")];
    if for_organization {
        form.push(("organization", "true"));
    }
    let response = http
        .post(format!("{}/{tenant}/Consent/Set", sim.login_base()))
        .form(&form)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let code = redirect_query(&response)
        .remove("code")
        .unwrap_or_else(|| panic!("no code"));
    (consent, redeem(sim, http, &code).await)
}

fn id_token_claims(tokens: &Value) -> Value {
    let payload = tokens["id_token"]
        .as_str()
        .and_then(|t| t.split('.').nth(1))
        .unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD.decode(payload).unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

async fn graph(
    sim: &TenantSim,
    http: &reqwest::Client,
    path: &str,
    token: &str,
) -> (StatusCode, Value) {
    let response = http
        .get(format!("{}{path}", sim.graph_base()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn access_token(tokens: &Value) -> String {
    tokens["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// An enabled member who holds no role.
fn plain_member(sim: &TenantSim) -> UserSummary {
    sim.control()
        .users()
        .into_iter()
        .find(|u| u.account_enabled && u.user_type == UserType::Member && u.roles.is_empty())
        .unwrap_or_else(|| panic!("no plain member"))
}

fn template_ids(page: &Value) -> Vec<String> {
    page["value"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["roleTemplateId"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_seeded_admin_holds_global_administrator_and_graph_lists_it_as_a_directory_role() {
    let sim = start(TenantSim::builder()).await;
    let http = client();
    let admin = sim
        .control()
        .user(sim.admin_upn())
        .unwrap_or_else(|| panic!("admin"));
    assert_eq!(admin.roles, [DirectoryRole::GlobalAdministrator]);
    assert!(admin.is_admin);
    let params = redirect_query(&authorize(&sim, &http, &[]).await);
    let tokens = redeem(&sim, &http, &params["code"]).await;
    assert_eq!(id_token_claims(&tokens)["oid"], sim.admin_id());
    assert!(
        id_token_claims(&tokens).get("wids").is_none(),
        "wids is off by default, as for an app whose manifest does not ask for it"
    );
    let token = access_token(&tokens);
    for path in [
        ROLES.to_string(),
        ROLES.replace("memberOf", "transitiveMemberOf"),
        format!(
            "/users/{}/memberOf/microsoft.graph.directoryRole?$select=id,displayName,roleTemplateId",
            sim.admin_id()
        ),
    ] {
        let (status, page) = graph(&sim, &http, &path, &token).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        let roles = page["value"].as_array().cloned().unwrap_or_default();
        assert_eq!(roles.len(), 1, "{page}");
        let role = &roles[0];
        assert_eq!(role["@odata.type"], "#microsoft.graph.directoryRole");
        assert_eq!(role["displayName"], "Global Administrator");
        assert_eq!(role["roleTemplateId"], GLOBAL_ADMINISTRATOR);
        // The activated role's object id is the tenant's own, not the template id.
        let id = role["id"].as_str().unwrap_or_default();
        assert!(
            uuid::Uuid::parse_str(id).is_ok() && id != GLOBAL_ADMINISTRATOR,
            "{role}"
        );
        assert!(
            role.get("description").is_none(),
            "only the selected properties"
        );
        assert!(
            page["@odata.context"]
                .as_str()
                .is_some_and(|c| c.ends_with("#directoryRoles(id,displayName,roleTemplateId)")),
            "{page}"
        );
    }
    // Without $select: the directoryRole properties of Graph's resource page.
    let (_, page) = graph(
        &sim,
        &http,
        "/me/memberOf/microsoft.graph.directoryRole",
        &token,
    )
    .await;
    let role = &page["value"][0];
    assert_eq!(
        role["description"],
        "Can manage all aspects of Microsoft Entra ID and Microsoft services that use Microsoft Entra identities."
    );
    assert!(
        role.get("deletedDateTime").is_some_and(Value::is_null),
        "{role}"
    );
}

#[tokio::test]
#[expect(clippy::too_many_lines, reason = "one scenario, step by step")]
async fn roles_are_given_and_taken_per_user_and_listed_in_pages() {
    let sim = start(TenantSim::builder()).await;
    let http = client();
    let member = plain_member(&sim);
    let control = sim.control();
    assert_eq!(control.user_roles(&member.id).ok(), Some(vec![]));
    for role in [
        DirectoryRole::UserAdministrator,
        DirectoryRole::GlobalReader,
        DirectoryRole::ApplicationAdministrator,
    ] {
        assert_eq!(
            control.assign_role(&member.user_principal_name, role).ok(),
            Some(true)
        );
    }
    assert_eq!(
        control
            .assign_role(&member.id, DirectoryRole::GlobalReader)
            .ok(),
        Some(false),
        "already held"
    );
    assert!(
        control
            .assign_role(
                "nobody@contoso.onmicrosoft.com",
                DirectoryRole::GlobalReader
            )
            .is_err()
    );
    // Over HTTP: PUT and DELETE /users/{id}/roles/{roleTemplateId}, GET /users/{id}/roles.
    let roles_url = format!("{}/users/{}/roles", sim.control_base(), member.id);
    let put = http
        .put(format!(
            "{roles_url}/{}",
            DirectoryRole::DirectoryReaders.template_id()
        ))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(put.status(), StatusCode::OK);
    let listed: Value = put.json().await.unwrap_or(Value::Null);
    assert_eq!(listed.as_array().map(Vec::len), Some(4), "{listed}");
    let unknown = http
        .put(format!("{roles_url}/00000000-0000-0000-0000-000000000000"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    let no_user = http
        .put(format!(
            "{}/users/nobody@x/roles/{GLOBAL_ADMINISTRATOR}",
            sim.control_base()
        ))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(no_user.status(), StatusCode::NOT_FOUND);

    // The member signs in (the tenant's admin consents first) and pages its roles.
    let admin = redirect_query(&authorize(&sim, &http, &[]).await);
    let admin_tokens = redeem(&sim, &http, &admin["code"]).await;
    let params = redirect_query(
        &authorize(&sim, &http, &[("login_hint", &member.user_principal_name)]).await,
    );
    let token = access_token(&redeem(&sim, &http, &params["code"]).await);
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut next = Some(format!("{}{ROLES}&$top=3", sim.graph_base()));
    while let Some(link) = next {
        let response = http
            .get(&link)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status(), StatusCode::OK);
        let page: Value = response.json().await.unwrap_or(Value::Null);
        seen.extend(template_ids(&page));
        pages += 1;
        next = page["@odata.nextLink"].as_str().map(str::to_string);
    }
    assert_eq!(pages, 2, "4 roles at $top=3");
    let mut expected: Vec<String> = [
        DirectoryRole::ApplicationAdministrator,
        DirectoryRole::GlobalReader,
        DirectoryRole::UserAdministrator,
        DirectoryRole::DirectoryReaders,
    ]
    .iter()
    .map(|r| r.template_id().to_string())
    .collect();
    expected.sort();
    seen.sort();
    assert_eq!(seen, expected);
    // $filter on roleTemplateId, as an admin check asks "is it this role?".
    let (status, page) = graph(
        &sim,
        &http,
        &format!(
            "/me/memberOf/microsoft.graph.directoryRole?$filter=roleTemplateId eq '{}'",
            DirectoryRole::GlobalReader.template_id()
        ),
        &token,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        template_ids(&page),
        [DirectoryRole::GlobalReader.template_id()]
    );
    // Taking roles away shows at once.
    assert_eq!(
        control
            .remove_role(&member.id, DirectoryRole::GlobalReader)
            .ok(),
        Some(true)
    );
    assert_eq!(
        control
            .remove_role(&member.id, DirectoryRole::GlobalReader)
            .ok(),
        Some(false)
    );
    let delete = http
        .delete(format!(
            "{roles_url}/{}",
            DirectoryRole::DirectoryReaders.template_id()
        ))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(delete.status(), StatusCode::OK);
    let (_, page) = graph(&sim, &http, ROLES, &token).await;
    let mut left = template_ids(&page);
    left.sort();
    assert_eq!(
        left,
        [
            DirectoryRole::ApplicationAdministrator.template_id(),
            DirectoryRole::UserAdministrator.template_id()
        ]
    );
    // The admin's roles are its own.
    let (_, page) = graph(&sim, &http, ROLES, &access_token(&admin_tokens)).await;
    assert_eq!(template_ids(&page), [GLOBAL_ADMINISTRATOR]);
}

#[tokio::test]
async fn listing_roles_needs_a_user_scope_else_403() {
    let sim = start(TenantSim::builder()).await;
    let http = client();
    // A grant with only Group.Read.All: the admin consents to just that.
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(VERIFIER.as_bytes()));
    let response = http
        .get(format!(
            "{}/{}/oauth2/v2.0/authorize",
            sim.login_base(),
            sim.tenant_id()
        ))
        .query(&[
            ("client_id", sim.client_id()),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT_URI),
            ("scope", "openid https://graph.microsoft.com/Group.Read.All"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let code = redirect_query(&response).remove("code").unwrap_or_default();
    let token = access_token(&redeem(&sim, &http, &code).await);
    for path in [
        ROLES.to_string(),
        format!(
            "/users/{}/memberOf/microsoft.graph.directoryRole",
            sim.admin_id()
        ),
    ] {
        let (status, body) = graph(&sim, &http, &path, &token).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(body["error"]["code"], "Authorization_RequestDenied");
    }
    // User.Read reads the signed-in user's roles, not another user's.
    let response = http
        .get(format!(
            "{}/{}/oauth2/v2.0/authorize",
            sim.login_base(),
            sim.tenant_id()
        ))
        .query(&[
            ("client_id", sim.client_id()),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT_URI),
            ("scope", "openid https://graph.microsoft.com/User.Read"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let code = redirect_query(&response).remove("code").unwrap_or_default();
    let token = access_token(&redeem(&sim, &http, &code).await);
    let (status, page) = graph(&sim, &http, ROLES, &token).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(template_ids(&page), [GLOBAL_ADMINISTRATOR]);
    let (status, _) = graph(
        &sim,
        &http,
        &format!(
            "/users/{}/memberOf/microsoft.graph.directoryRole",
            sim.admin_id()
        ),
        &token,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn wids_lists_the_users_role_template_ids_when_switched_on() {
    let sim = start(TenantSim::builder().wids_claim(true)).await;
    let http = client();
    assert!(sim.control().wids_claim());
    let params = redirect_query(&authorize(&sim, &http, &[]).await);
    let tokens = redeem(&sim, &http, &params["code"]).await;
    assert_eq!(
        id_token_claims(&tokens)["wids"],
        serde_json::json!([GLOBAL_ADMINISTRATOR])
    );
    // A member with roles gets theirs; one without gets no claim.
    let member = plain_member(&sim);
    let hint = [("login_hint", member.user_principal_name.as_str())];
    let params = redirect_query(&authorize(&sim, &http, &hint).await);
    let claims = id_token_claims(&redeem(&sim, &http, &params["code"]).await);
    assert_eq!(claims["oid"], member.id.as_str());
    assert!(claims.get("wids").is_none(), "{claims}");
    sim.control()
        .assign_role(&member.id, DirectoryRole::CloudApplicationAdministrator)
        .unwrap_or_else(|e| panic!("{e}"));
    let params = redirect_query(&authorize(&sim, &http, &hint).await);
    let claims = id_token_claims(&redeem(&sim, &http, &params["code"]).await);
    assert_eq!(
        claims["wids"],
        serde_json::json!([DirectoryRole::CloudApplicationAdministrator.template_id()])
    );
    // Off again over HTTP: no claim.
    let off = http
        .put(format!("{}/wids-claim", sim.control_base()))
        .json(&serde_json::json!({"enabled": false}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(off.status(), StatusCode::OK);
    assert!(!sim.control().wids_claim());
    let params = redirect_query(&authorize(&sim, &http, &[]).await);
    assert!(
        id_token_claims(&redeem(&sim, &http, &params["code"]).await)
            .get("wids")
            .is_none()
    );
}

#[tokio::test]
async fn a_non_admin_signs_in_through_the_pages_gets_its_own_tokens_and_holds_no_role() {
    let sim = start(TenantSim::builder()).await;
    let http = client();
    let member = plain_member(&sim);
    // Before the tenant consents, the member cannot: "Need admin approval" (AADSTS90094).
    let params = redirect_query(
        &authorize(&sim, &http, &[("login_hint", &member.user_principal_name)]).await,
    );
    assert_eq!(
        params.get("error").map(String::as_str),
        Some("consent_required")
    );
    // The admin signs in through the same pages and consents for the organization.
    let (consent, admin_tokens) = sign_in_interactively(&sim, &http, sim.admin_upn(), true).await;
    assert!(consent.contains("Consent on behalf of your organization"));
    assert_eq!(id_token_claims(&admin_tokens)["oid"], sim.admin_id());
    // Now the member signs in through the same pages: a real code, real tokens.
    let (consent, tokens) =
        sign_in_interactively(&sim, &http, &member.user_principal_name, false).await;
    assert!(
        !consent.contains("Consent on behalf of your organization"),
        "a non-admin is not offered tenant-wide consent"
    );
    let claims = id_token_claims(&tokens);
    assert_eq!(claims["oid"], member.id.as_str());
    assert_eq!(
        claims["preferred_username"],
        member.user_principal_name.as_str()
    );
    assert_eq!(claims["tid"], sim.tenant_id());
    assert!(tokens["refresh_token"].is_string());
    let token = access_token(&tokens);
    let (status, me) = graph(&sim, &http, "/me", &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["id"], member.id.as_str());
    assert_eq!(me["userPrincipalName"], member.user_principal_name.as_str());
    for path in [
        ROLES.to_string(),
        ROLES.replace("memberOf", "transitiveMemberOf"),
    ] {
        let (status, page) = graph(&sim, &http, &path, &token).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["value"], serde_json::json!([]), "{path}");
    }
    // The same member without the pages: AutoConsent with a login_hint.
    sim.control().set_consent_mode(ConsentMode::AutoConsent);
    let params = redirect_query(
        &authorize(&sim, &http, &[("login_hint", &member.user_principal_name)]).await,
    );
    let tokens = redeem(&sim, &http, &params["code"]).await;
    assert_eq!(id_token_claims(&tokens)["oid"], member.id.as_str());
}

#[tokio::test]
async fn roles_decide_who_may_consent_for_the_tenant() {
    let sim = start(TenantSim::builder()).await;
    let http = client();
    let member = plain_member(&sim);
    // An Application Administrator may consent for the organization.
    sim.control()
        .assign_role(&member.id, DirectoryRole::ApplicationAdministrator)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(sim.control().user(&member.id).is_some_and(|u| u.is_admin));
    let (consent, tokens) =
        sign_in_interactively(&sim, &http, &member.user_principal_name, true).await;
    assert!(
        consent.contains("Consent on behalf of your organization"),
        "{consent}"
    );
    assert_eq!(id_token_claims(&tokens)["oid"], member.id.as_str());

    // In a fresh tenant, an admin whose Global Administrator role is taken is a plain
    // user: "Need admin approval".
    let sim = start(TenantSim::builder().consent_mode(ConsentMode::Interactive)).await;
    sim.control()
        .remove_role(sim.admin_upn(), DirectoryRole::GlobalAdministrator)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        sim.control()
            .user(sim.admin_upn())
            .is_some_and(|u| !u.is_admin)
    );
    let page = authorize(&sim, &http, &[])
        .await
        .text()
        .await
        .unwrap_or_default();
    let flow = hidden(&page, "flow");
    let answer = http
        .post(format!("{}/{}/login", sim.login_base(), sim.tenant_id()))
        .form(&[("flow", flow.as_str()), ("login", sim.admin_upn())])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default();
    assert!(answer.contains("Need admin approval"), "{answer}");
}
