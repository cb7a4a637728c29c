//! The public API end to end: sign in through the Entra half (authorization code with
//! PKCE, device code), call Graph with the bearer, revoke, expire; the binary; a tenant
//! of moderate size.

use std::io::{BufRead as _, BufReader};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use secrecy::ExposeSecret as _;
use serde_json::Value;
use sha2::Digest as _;
use tenant_sim::{ConsentMode, TenantSim};

const SCOPES: &str = "openid profile offline_access https://graph.microsoft.com/User.Read.All https://graph.microsoft.com/Group.Read.All";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Authorization code + PKCE S256 against the simulator; returns the token response.
async fn sign_in(sim: &TenantSim, http: &reqwest::Client) -> Value {
    let verifier = "a-verifier-of-enough-length-0123456789-abcdefghijklmnop";
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let redirect_uri = "http://localhost:8400/callback";
    let authorize = format!(
        "{}/{}/oauth2/v2.0/authorize",
        sim.login_base(),
        sim.tenant_id()
    );
    let response = http
        .get(&authorize)
        .query(&[
            ("client_id", sim.client_id()),
            ("response_type", "code"),
            ("redirect_uri", redirect_uri),
            ("scope", SCOPES),
            ("state", "state-1"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()["location"]
        .to_str()
        .unwrap_or_default()
        .to_string();
    let location = url::Url::parse(&location).unwrap_or_else(|e| panic!("{location}: {e}"));
    let query: std::collections::HashMap<String, String> =
        location.query_pairs().into_owned().collect();
    assert_eq!(query.get("state").map(String::as_str), Some("state-1"));
    let code = query
        .get("code")
        .cloned()
        .unwrap_or_else(|| panic!("no code in {location}"));
    let token = format!("{}/{}/oauth2/v2.0/token", sim.login_base(), sim.tenant_id());
    let response = http
        .post(&token)
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", sim.client_id()),
            ("client_secret", sim.client_secret().expose_secret()),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap_or(Value::Null)
}

async fn graph(
    http: &reqwest::Client,
    sim: &TenantSim,
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

#[tokio::test]
async fn signed_in_admin_reads_users_and_groups_until_revoked() {
    let sim = TenantSim::builder()
        .users(30)
        .groups(8)
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let http = client();
    let tokens = sign_in(&sim, &http).await;
    let access = tokens["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(tokens["refresh_token"].is_string());
    let (status, users) = graph(&http, &sim, "/users?$top=5", &access).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(users["value"].as_array().map(Vec::len), Some(5));
    let (status, me) = graph(&http, &sim, "/me", &access).await;
    assert_eq!(
        (status, me["userPrincipalName"].as_str()),
        (StatusCode::OK, Some(sim.admin_upn()))
    );
    let (status, groups) = graph(&http, &sim, "/groups", &access).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(groups["value"].as_array().map(Vec::len), Some(8));

    let revoked = sim
        .control()
        .revoke_user_grants(sim.admin_upn())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(revoked >= 1);
    let (status, body) = graph(&http, &sim, "/users", &access).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    let refresh = http
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            sim.login_base(),
            sim.tenant_id()
        ))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", sim.client_id()),
            ("client_secret", sim.client_secret().expose_secret()),
            (
                "refresh_token",
                tokens["refresh_token"].as_str().unwrap_or_default(),
            ),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(refresh.status(), StatusCode::BAD_REQUEST);
    let error: Value = refresh.json().await.unwrap_or(Value::Null);
    assert_eq!(error["error"], "invalid_grant");
}

#[tokio::test]
async fn expired_bearers_get_401_and_a_missing_scope_403() {
    let sim = TenantSim::builder()
        .users(10)
        .groups(2)
        .access_token_lifetime(Duration::from_secs(60))
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let http = client();
    let access = sign_in(&sim, &http).await["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        graph(&http, &sim, "/users", &access).await.0,
        StatusCode::OK
    );
    sim.auth().advance_clock(Duration::from_secs(61));
    let (status, body) = graph(&http, &sim, "/users", &access).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body["error"]["message"],
        "Access token has expired or is not yet valid."
    );

    // Consent that lacks the last requested Graph scope (Group.Read.All).
    sim.control().set_consent_mode(ConsentMode::MissingOneScope);
    let tokens = sign_in(&sim, &http).await;
    let access = tokens["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        graph(&http, &sim, "/users", &access).await.0,
        StatusCode::OK
    );
    let (status, body) = graph(&http, &sim, "/groups", &access).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "Authorization_RequestDenied");
}

#[tokio::test]
async fn device_code_approved_through_the_control_api_gives_a_working_bearer() {
    let sim = TenantSim::builder()
        .users(10)
        .groups(2)
        .consent_mode(ConsentMode::Interactive)
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let http = client();
    let devicecode: Value = http
        .post(format!(
            "{}/organizations/oauth2/v2.0/devicecode",
            sim.login_base()
        ))
        .form(&[("client_id", sim.client_id()), ("scope", SCOPES)])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or(Value::Null);
    let user_code = devicecode["user_code"].as_str().unwrap_or_default();
    let user = sim.control().users()[0].clone();
    assert!(
        sim.control()
            .approve_device_code(user_code, &user.user_principal_name)
            .unwrap_or(false)
    );
    let response = http
        .post(format!(
            "{}/organizations/oauth2/v2.0/token",
            sim.login_base()
        ))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("client_id", sim.client_id()),
            (
                "device_code",
                devicecode["device_code"].as_str().unwrap_or_default(),
            ),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::OK);
    let tokens: Value = response.json().await.unwrap_or(Value::Null);
    let access = tokens["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (status, me) = graph(&http, &sim, "/me", &access).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["id"], user.id.as_str());
}

#[tokio::test]
async fn a_tenant_of_20000_users_pages_999_at_a_time() {
    let sim = TenantSim::builder()
        .users(20_000)
        .groups(40)
        .seed(5)
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let http = client();
    let access = sign_in(&sim, &http).await["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut link = format!(
        "{}/users?$top=999&$select=id,userPrincipalName",
        sim.graph_base()
    );
    let mut seen = std::collections::HashSet::new();
    let mut pages = 0;
    loop {
        let response = http
            .get(&link)
            .bearer_auth(&access)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status(), StatusCode::OK);
        let page: Value = response.json().await.unwrap_or(Value::Null);
        pages += 1;
        for user in page["value"].as_array().cloned().unwrap_or_default() {
            assert!(seen.insert(user["id"].as_str().unwrap_or_default().to_string()));
        }
        match page["@odata.nextLink"].as_str() {
            Some(next) => link = next.to_string(),
            None => break,
        }
    }
    assert_eq!((seen.len(), pages), (20_000, 21));
    let all_company = &sim.control().groups()[0];
    assert!(all_company.member_count > 18_000, "a very large group");
}

#[test]
fn the_binary_prints_one_json_line_with_urls_and_credentials() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tenant-sim"))
        .args([
            "--port",
            "0",
            "--users",
            "12",
            "--groups",
            "3",
            "--seed",
            "4",
            "--rate-limit",
            "100",
            "--latency-ms",
            "1",
            "--fault-rate",
            "0",
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
    for key in [
        "login_base",
        "graph_base",
        "control_base",
        "tenant_id",
        "client_id",
        "client_secret",
        "admin",
    ] {
        assert!(
            info[key].as_str().is_some_and(|v| !v.is_empty()),
            "{key} in {line}"
        );
    }
    assert!(
        info["graph_base"]
            .as_str()
            .is_some_and(|g| g.starts_with("http://127.0.0.1:") && g.ends_with("/v1.0"))
    );
    assert_eq!(info["admin"], "admin@contoso.onmicrosoft.com");
}

#[test]
fn the_binary_with_tls_names_its_certificate() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tenant-sim"))
        .args(["--port", "0", "--users", "3", "--groups", "1", "--tls"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut line = String::new();
    let read = child
        .stdout
        .take()
        .map(|out| BufReader::new(out).read_line(&mut line));
    assert!(read.is_some_and(|r| r.is_ok()));
    let info: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
    let path = info["cert_pem_path"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let pem = std::fs::read_to_string(&path).unwrap_or_default();
    // SIGTERM, not a kill, so that the certificate folder is removed.
    #[cfg(unix)]
    terminate(&mut child);
    #[cfg(not(unix))]
    {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{path}");
    assert!(
        info["graph_base"]
            .as_str()
            .is_some_and(|g| g.starts_with("https://127.0.0.1:"))
    );
    assert!(
        info["login_base"]
            .as_str()
            .is_some_and(|g| g.starts_with("https://127.0.0.1:"))
    );
}

/// Sends SIGTERM to the child with `kill`, and waits (at most 20 s) for it to exit.
#[cfg(unix)]
fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    let sent = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(sent.success(), "kill -TERM failed: {sent}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap_or_else(|e| panic!("{e}")) {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tenant-sim did not exit within 20 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(unix)]
#[test]
fn the_binary_stops_on_sigterm_and_removes_its_certificate_folder() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tenant-sim"))
        .args(["--port", "0", "--users", "3", "--groups", "1", "--tls"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut line = String::new();
    let read = child
        .stdout
        .take()
        .map(|out| BufReader::new(out).read_line(&mut line));
    assert!(read.is_some_and(|r| r.is_ok()));
    let info: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
    let path = std::path::PathBuf::from(info["cert_pem_path"].as_str().unwrap_or_default());
    let folder = path
        .parent()
        .unwrap_or_else(|| panic!("{}", path.display()))
        .to_path_buf();
    assert!(path.is_file(), "{}", path.display());
    assert!(
        folder
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("tenant-sim-")),
        "{}",
        folder.display()
    );
    let status = terminate(&mut child);
    assert!(status.success(), "exit status {status}");
    assert!(!folder.exists(), "{} left behind", folder.display());
}

#[cfg(unix)]
#[test]
fn the_binary_stops_on_sigterm_while_a_client_is_connected() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tenant-sim"))
        .args(["--port", "0", "--users", "3", "--groups", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut line = String::new();
    let read = child
        .stdout
        .take()
        .map(|out| BufReader::new(out).read_line(&mut line));
    assert!(read.is_some_and(|r| r.is_ok()));
    let info: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
    let login = info["login_base"].as_str().unwrap_or_default();
    let address = login.trim_start_matches("http://");
    // An idle keep-alive connection must not hold the shutdown beyond its grace period.
    let mut idle = std::net::TcpStream::connect(address).unwrap_or_else(|e| panic!("{e}"));
    std::io::Write::write_all(
        &mut idle,
        b"GET /common/discovery/instance HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let started = std::time::Instant::now();
    let status = terminate(&mut child);
    assert!(status.success(), "exit status {status}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
