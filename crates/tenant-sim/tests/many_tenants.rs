//! One simulated cloud, many tenants: the login host and the Graph host serve every
//! tenant, tokens are bound to the tenant signed in to, and each tenant's directory,
//! delta links, throttle bucket, grants and counters are its own.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead as _, BufReader};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use sha2::Digest as _;
use tenant_sim::{TenantSim, ThrottleSettings};

const SCOPES: &str = "openid profile offline_access https://graph.microsoft.com/User.Read.All https://graph.microsoft.com/Group.Read.All";
const REDIRECT: &str = "http://localhost:8400/callback";
const VERIFIER: &str = "a-verifier-of-enough-length-0123456789-abcdefghijklmnop";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn three_tenants() -> TenantSim {
    TenantSim::builder()
        .tenants(3)
        .users(30)
        .groups(6)
        .seed(5)
        .start()
        .await
        .unwrap_or_else(|e| panic!("start: {e}"))
}

/// The authorize request at `{authority}` (with a `login_hint` when given): the answer.
async fn authorize(
    sim: &TenantSim,
    http: &reqwest::Client,
    authority: &str,
    hint: Option<&str>,
) -> reqwest::Response {
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(VERIFIER.as_bytes()));
    let mut query = vec![
        ("client_id", sim.client_id()),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", SCOPES),
        ("state", "s"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    if let Some(hint) = hint {
        query.push(("login_hint", hint));
    }
    http.get(format!(
        "{}/{authority}/oauth2/v2.0/authorize",
        sim.login_base()
    ))
    .query(&query)
    .send()
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Signs in at `{authority}` and redeems the code there with `client_info=1`.
async fn sign_in(sim: &TenantSim, authority: &str, hint: Option<&str>) -> Value {
    let http = client();
    let response = authorize(sim, &http, authority, hint).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()["location"]
        .to_str()
        .unwrap_or_default()
        .to_string();
    let location = url::Url::parse(&location).unwrap_or_else(|e| panic!("{location}: {e}"));
    let query: HashMap<String, String> = location.query_pairs().into_owned().collect();
    let code = query
        .get("code")
        .cloned()
        .unwrap_or_else(|| panic!("no code in {location}"));
    let (status, body) = token(
        sim,
        authority,
        &[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// A token request at `{authority}` with the app's credentials and `client_info=1`.
async fn token(sim: &TenantSim, authority: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut form = form.to_vec();
    form.extend([
        ("client_id", sim.client_id()),
        ("client_secret", sim.client_secret().expose_secret()),
        ("client_info", "1"),
    ]);
    let response = client()
        .post(format!(
            "{}/{authority}/oauth2/v2.0/token",
            sim.login_base()
        ))
        .form(&form)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn refresh_token(tokens: &Value) -> &str {
    tokens["refresh_token"].as_str().unwrap_or_default()
}

fn access_token(tokens: &Value) -> &str {
    tokens["access_token"].as_str().unwrap_or_default()
}

/// The JSON inside a base64url value (`client_info`) or a JWT's payload.
fn decode_json(encoded: &str) -> Value {
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .unwrap_or_else(|e| panic!("{encoded}: {e}"));
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

fn id_token_claims(tokens: &Value) -> Value {
    let id_token = tokens["id_token"].as_str().unwrap_or_default();
    decode_json(id_token.split('.').nth(1).unwrap_or_default())
}

async fn graph(sim: &TenantSim, bearer: &str, url: &str) -> (StatusCode, Value) {
    let url = if url.starts_with("http") {
        url.to_string()
    } else {
        format!("{}{url}", sim.graph_base())
    };
    let response = client()
        .get(url)
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn ids(page: &Value) -> BTreeSet<String> {
    page["value"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|object| object["id"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn tenant_zero_is_the_single_tenant_of_the_same_seed_and_the_others_are_distinct() {
    let single = TenantSim::builder()
        .users(30)
        .groups(6)
        .seed(5)
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let many = three_tenants().await;
    assert_eq!(many.tenant_id(), single.tenant_id());
    assert_eq!(many.tenant_domain(), "contoso.onmicrosoft.com");
    assert_eq!(many.admin_upn(), single.admin_upn());
    assert_eq!(many.admin_id(), single.admin_id());
    assert_eq!(many.client_id(), single.client_id());
    assert_eq!(many.control().users(), single.control().users());
    assert_eq!(many.control().groups(), single.control().groups());

    let tenants = many.tenants();
    assert_eq!(tenants.len(), 3);
    assert_eq!(tenants[0].id(), many.tenant_id());
    assert_eq!(tenants[1].domain(), "tenant0001.onmicrosoft.com");
    assert_eq!(tenants[2].domain(), "tenant0002.onmicrosoft.com");
    assert_eq!(tenants[2].admin_upn(), "admin@tenant0002.onmicrosoft.com");
    let distinct: BTreeSet<&str> = tenants.iter().map(tenant_sim::TenantInfo::id).collect();
    assert_eq!(distinct.len(), 3);
    // Each directory has its own people, with its own ids.
    let users_of = |domain: &str| -> BTreeSet<String> {
        many.tenant_control(domain)
            .map(|c| c.users().into_iter().map(|u| u.id).collect())
            .unwrap_or_default()
    };
    let first = users_of("contoso.onmicrosoft.com");
    let second = users_of("TENANT0001.onmicrosoft.com");
    assert_eq!((first.len(), second.len()), (30, 30));
    assert!(first.is_disjoint(&second));
    assert_eq!(
        many.tenant_control(tenants[1].id())
            .map(tenant_sim::Control::tenant_id),
        Some(tenants[1].id())
    );
    assert!(many.tenant_control("nowhere.onmicrosoft.com").is_none());

    // The same seed gives the same other tenants too.
    let again = three_tenants().await;
    assert_eq!(again.tenants(), many.tenants());
}

#[tokio::test]
async fn organizations_signs_a_login_hint_of_another_tenant_into_that_tenant() {
    let sim = three_tenants().await;
    let b = sim.tenants()[1].clone();
    let tokens = sign_in(&sim, "organizations", Some(b.admin_upn())).await;
    let claims = id_token_claims(&tokens);
    assert_eq!(claims["tid"], b.id());
    assert_eq!(claims["oid"], b.admin_id());
    assert_eq!(
        claims["iss"],
        format!("{}/{}/v2.0", sim.login_base(), b.id())
    );
    let info = decode_json(tokens["client_info"].as_str().unwrap_or_default());
    assert_eq!(info, json!({"uid": b.admin_id(), "utid": b.id()}));
    let (status, me) = graph(&sim, access_token(&tokens), "/me").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["id"], b.admin_id());
    assert_eq!(me["userPrincipalName"], b.admin_upn());

    // Without a hint, the automatic mode signs in tenant 0's admin.
    let tokens = sign_in(&sim, "common", None).await;
    assert_eq!(id_token_claims(&tokens)["tid"], sim.tenant_id());
    // A tenant's own URL signs in its own admin, by id or by domain.
    let tokens = sign_in(&sim, b.domain(), None).await;
    assert_eq!(id_token_claims(&tokens)["oid"], b.admin_id());

    // A hint of tenant B on tenant A's URL: AADSTS50034, shown as a page.
    let http = client();
    let refused = authorize(&sim, &http, sim.tenant_id(), Some(b.admin_upn())).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let page = refused.text().await.unwrap_or_default();
    assert!(page.contains("AADSTS50034"), "{page}");
    assert!(page.contains(sim.tenant_id()), "{page}");

    // B's code redeemed at A's URL: AADSTS700005.
    let response = authorize(&sim, &http, "organizations", Some(b.admin_upn())).await;
    let location = response.headers()["location"]
        .to_str()
        .unwrap_or_default()
        .to_string();
    let code = url::Url::parse(&location)
        .ok()
        .and_then(|url| {
            url.query_pairs()
                .find(|(name, _)| name == "code")
                .map(|(_, value)| value.into_owned())
        })
        .unwrap_or_default();
    let (status, body) = token(
        &sim,
        sim.tenant_id(),
        &[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error_codes"], json!([700_005]), "{body}");

    // B's refresh token at A's URL: AADSTS50020; at B's own URL and organizations, B's.
    let b_tokens = sign_in(&sim, "organizations", Some(b.admin_upn())).await;
    let refresh = refresh_token(&b_tokens);
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh)];
    let (status, body) = token(&sim, sim.tenant_domain(), &form).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error_codes"], json!([50_020]), "{body}");
    for authority in [b.id(), "organizations"] {
        let (status, body) = token(&sim, authority, &form).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(id_token_claims(&body)["tid"], b.id());
    }
}

#[tokio::test]
async fn a_token_of_one_tenant_sees_only_that_tenants_users_and_groups() {
    let sim = three_tenants().await;
    let b = sim.tenants()[1].clone();
    let a_tokens = sign_in(&sim, "organizations", None).await;
    let b_tokens = sign_in(&sim, "organizations", Some(b.admin_upn())).await;
    for (tokens, control) in [
        (&a_tokens, sim.control()),
        (
            &b_tokens,
            sim.tenant_control(b.id()).unwrap_or(sim.control()),
        ),
    ] {
        let (status, users) = graph(&sim, access_token(tokens), "/users?$top=999").await;
        assert_eq!(status, StatusCode::OK, "{users}");
        let expected: BTreeSet<String> = control.users().into_iter().map(|u| u.id).collect();
        assert_eq!(ids(&users), expected);
        let (_, groups) = graph(&sim, access_token(tokens), "/groups?$top=999").await;
        let expected: BTreeSet<String> = control.groups().into_iter().map(|g| g.id).collect();
        assert_eq!(ids(&groups), expected);
    }
    // Another tenant's user is not found, as Graph answers for an unknown id.
    let (status, body) = graph(
        &sim,
        access_token(&a_tokens),
        &format!("/users/{}", b.admin_id()),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "Request_ResourceNotFound");
}

#[tokio::test]
async fn delta_links_and_skip_tokens_of_one_tenant_are_refused_with_another_tenants_token() {
    let sim = three_tenants().await;
    let b = sim.tenants()[1].clone();
    let a = access_token(&sign_in(&sim, "organizations", None).await).to_string();
    let b_token =
        access_token(&sign_in(&sim, "organizations", Some(b.admin_upn())).await).to_string();
    let (status, latest) = graph(&sim, &a, "/users/delta?$deltatoken=latest").await;
    assert_eq!(status, StatusCode::OK);
    let delta_link = latest["@odata.deltaLink"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (status, own) = graph(&sim, &a, &delta_link).await;
    assert_eq!(status, StatusCode::OK, "{own}");
    let (status, body) = graph(&sim, &b_token, &delta_link).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "Request_BadRequest");

    let (_, page) = graph(&sim, &a, "/users?$top=5").await;
    let next = page["@odata.nextLink"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (status, _) = graph(&sim, &a, &next).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = graph(&sim, &b_token, &next).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "Request_BadRequest");

    // Expiring A's delta tokens leaves B's working.
    let (_, b_latest) = graph(&sim, &b_token, "/users/delta?$deltatoken=latest").await;
    let b_link = b_latest["@odata.deltaLink"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    sim.control().expire_delta_tokens();
    let (status, body) = graph(&sim, &a, &delta_link).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "syncStateNotFound");
    let (status, _) = graph(&sim, &b_token, &b_link).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn throttling_one_tenant_does_not_slow_another() {
    let sim = three_tenants().await;
    let b = sim.tenants()[1].clone();
    let a = access_token(&sign_in(&sim, "organizations", None).await).to_string();
    let b_token =
        access_token(&sign_in(&sim, "organizations", Some(b.admin_upn())).await).to_string();
    let b_control = sim
        .tenant_control(b.domain())
        .unwrap_or_else(|| panic!("tenant B"));
    b_control.set_throttle(ThrottleSettings::new(1.0, 1.0).ok());
    let mut b_statuses = Vec::new();
    for _ in 0..5 {
        b_statuses.push(graph(&sim, &b_token, "/users?$top=1").await.0);
    }
    assert!(
        b_statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{b_statuses:?}"
    );
    for _ in 0..20 {
        let (status, body) = graph(&sim, &a, "/users?$top=1").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(sim.control().counters().count("GET /users", 429), 0);
    assert_eq!(sim.control().counters().count("GET /users", 200), 20);
    assert!(b_control.counters().count("GET /users", 429) >= 1);
    assert!(sim.control().throttle().is_none());
}

#[tokio::test]
async fn revoking_a_grant_in_one_tenant_leaves_another_tenants_refresh_tokens_working() {
    let sim = three_tenants().await;
    let b = sim.tenants()[1].clone();
    let a_tokens = sign_in(&sim, "organizations", None).await;
    let b_tokens = sign_in(&sim, "organizations", Some(b.admin_upn())).await;
    let b_control = sim
        .tenant_control(b.id())
        .unwrap_or_else(|| panic!("tenant B"));
    // Tenant A's control knows neither B's users nor B's refresh tokens.
    assert!(sim.control().revoke_user_grants(b.admin_id()).is_err());
    assert!(!sim.control().revoke_refresh_token(refresh_token(&b_tokens)));
    assert_eq!(
        sim.control().revoke_user_grants(sim.admin_id()).ok(),
        Some(1)
    );

    let refresh = |tokens: &Value| {
        [
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", refresh_token(tokens).to_string()),
        ]
    };
    let form = refresh(&a_tokens);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body) = token(&sim, "organizations", &form).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error_codes"], json!([50_173]), "{body}");
    let form = refresh(&b_tokens);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body) = token(&sim, "organizations", &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = graph(&sim, access_token(&b_tokens), "/me").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = graph(&sim, access_token(&a_tokens), "/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(b_control.revoke_refresh_token(refresh_token(&b_tokens)));
}

#[tokio::test]
async fn sync_rounds_are_counted_per_tenant() {
    let sim = TenantSim::builder()
        .tenants(2)
        .users(30)
        .groups(4)
        .delta_page_size(10)
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let b = sim.tenants()[1].clone();
    let b_token =
        access_token(&sign_in(&sim, "organizations", Some(b.admin_upn())).await).to_string();
    // One round of three-plus pages, then a second round from its delta link.
    let mut url = "/users/delta".to_string();
    let mut pages = 0;
    let delta_link = loop {
        let (status, page) = graph(&sim, &b_token, &url).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        if let Some(next) = page["@odata.nextLink"].as_str() {
            url = next.to_string();
        } else {
            break page["@odata.deltaLink"]
                .as_str()
                .unwrap_or_default()
                .to_string();
        }
    };
    assert!(pages >= 3, "{pages} pages");
    let (status, _) = graph(&sim, &b_token, &delta_link).await;
    assert_eq!(status, StatusCode::OK);
    let (_, first) = graph(&sim, &b_token, "/users?$top=10").await;
    let next = first["@odata.nextLink"].as_str().unwrap_or_default();
    graph(&sim, &b_token, next).await;

    let b_counters = sim
        .tenant_control(b.id())
        .map(tenant_sim::Control::counters)
        .unwrap_or_default();
    assert_eq!(b_counters.first_pages("GET /users/delta"), 2);
    assert_eq!(
        b_counters.count("GET /users/delta", 200),
        u64::try_from(pages + 1).unwrap_or(0)
    );
    assert_eq!(b_counters.first_pages("GET /users"), 1);
    assert_eq!(b_counters.count("GET /users", 200), 2);
    let a_counters = sim.control().counters();
    assert_eq!(a_counters.first_pages("GET /users/delta"), 0);
    assert_eq!(a_counters.total(), 0);
    let total = sim.counters();
    assert_eq!(total.total(), b_counters.total());
    assert_eq!(total.first_pages("GET /users/delta"), 2);
}

#[tokio::test]
async fn the_control_api_over_http_acts_on_the_tenant_its_path_names() {
    let sim = three_tenants().await;
    let b = sim.tenants()[1].clone();
    let http = client();
    let base = sim.control_base();
    let listed: Value = http
        .get(format!("{base}/tenants"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or(Value::Null);
    let listed = listed.as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[1]["id"], b.id());
    assert_eq!(listed[1]["domain"], b.domain());
    assert_eq!(listed[1]["adminUpn"], b.admin_upn());

    // Added under B's domain: in B only.
    let added = http
        .post(format!("{base}/tenants/{}/users", b.domain()))
        .json(&json!({"displayName": "Nadia Okafor"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(added.status(), StatusCode::CREATED);
    let added: Value = added.json().await.unwrap_or(Value::Null);
    assert_eq!(
        added["userPrincipalName"],
        format!("nadia.okafor@{}", b.domain())
    );
    let b_control = sim
        .tenant_control(b.id())
        .unwrap_or_else(|| panic!("tenant B"));
    assert_eq!(b_control.users().len(), 31);
    assert_eq!(sim.control().users().len(), 30);
    // The same user read back by B's id, not found under tenant 0's unprefixed route.
    let id = added["id"].as_str().unwrap_or_default();
    let found = http
        .get(format!("{base}/tenants/{}/users/{id}", b.id()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found.status(), StatusCode::OK);
    let missing = http
        .get(format!("{base}/users/{id}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let unknown = http
        .get(format!("{base}/tenants/nowhere.example/users"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    // Settings too: B's throttle over HTTP, tenant 0's untouched.
    let put = http
        .put(format!("{base}/tenants/{}/throttle", b.id()))
        .json(&json!({"unitsPerSecond": 5.0}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(put.status(), StatusCode::NO_CONTENT);
    assert!(b_control.throttle().is_some());
    assert!(sim.control().throttle().is_none());
    // And an existing unprefixed route keeps acting on tenant 0.
    let users: Value = http
        .get(format!("{base}/users?limit=500"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or(Value::Null);
    assert_eq!(users.as_array().map(Vec::len), Some(30));

    // Counters per tenant: B had no Graph request.
    let counters: Value = http
        .get(format!("{base}/tenants/{}/counters", b.domain()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or(Value::Null);
    assert_eq!(counters["total"], 0);
}

#[test]
fn the_binary_with_tenants_lists_them_in_its_startup_line() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tenant-sim"))
        .args([
            "--tenants",
            "4",
            "--users",
            "5",
            "--groups",
            "2",
            "--seed",
            "4",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut line = String::new();
    let read = child
        .stdout
        .take()
        .map(|out| BufReader::new(out).read_line(&mut line));
    let _ = child.kill();
    let _ = child.wait();
    assert!(read.is_some_and(|r| r.is_ok()));
    let info: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
    let tenants = info["tenants"].as_array().cloned().unwrap_or_default();
    assert_eq!(tenants.len(), 4, "{line}");
    assert_eq!(tenants[0]["id"], info["tenant_id"]);
    assert_eq!(tenants[0]["domain"], "contoso.onmicrosoft.com");
    assert_eq!(tenants[0]["admin_upn"], info["admin"]);
    assert_eq!(tenants[3]["domain"], "tenant0003.onmicrosoft.com");
    assert_eq!(tenants[3]["admin_upn"], "admin@tenant0003.onmicrosoft.com");
    assert!(tenants[3]["id"].as_str().is_some_and(|id| id.len() == 36));
    assert_eq!(info["admin"], "admin@contoso.onmicrosoft.com");
}
