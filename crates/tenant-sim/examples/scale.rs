//! Measures a large tenant: start-up time, time to page every user 999 at a time, and
//! peak memory (`VmHWM`). Run in release:
//! `cargo run --release -p tenant-sim --example scale -- 100000`

use std::time::Instant;

use base64::Engine as _;
use secrecy::ExposeSecret as _;
use sha2::Digest as _;
use tenant_sim::TenantSim;

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let users: usize = std::env::args().nth(1).map_or(Ok(100_000), |a| a.parse())?;
    let groups = users / 500 + 20;
    let started = Instant::now();
    let sim = TenantSim::builder()
        .users(users)
        .groups(groups)
        .start()
        .await?;
    let start_up = started.elapsed();
    let after_start = peak_rss_kib();

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let verifier = "scale-example-verifier-0123456789-0123456789-abcdef";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let redirect_uri = "http://localhost:1/cb";
    let authorize = http
        .get(format!(
            "{}/{}/oauth2/v2.0/authorize",
            sim.login_base(),
            sim.tenant_id()
        ))
        .query(&[
            ("client_id", sim.client_id()),
            ("response_type", "code"),
            ("redirect_uri", redirect_uri),
            ("scope", "https://graph.microsoft.com/User.Read.All"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await?;
    let location = url::Url::parse(authorize.headers()["location"].to_str()?)?;
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .ok_or("no code")?;
    let tokens: serde_json::Value = http
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            sim.login_base(),
            sim.tenant_id()
        ))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", sim.client_id()),
            ("client_secret", sim.client_secret().expose_secret()),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ])
        .send()
        .await?
        .json()
        .await?;
    let access = tokens["access_token"]
        .as_str()
        .ok_or("no access token")?
        .to_string();

    let paging = Instant::now();
    let mut link = Some(format!("{}/users?$top=999", sim.graph_base()));
    let (mut pages, mut seen, mut largest_page) = (0, 0, 0);
    while let Some(url) = link {
        let body = http
            .get(&url)
            .bearer_auth(&access)
            .send()
            .await?
            .bytes()
            .await?;
        largest_page = largest_page.max(body.len());
        let page: serde_json::Value = serde_json::from_slice(&body)?;
        seen += page["value"].as_array().map_or(0, Vec::len);
        pages += 1;
        link = page["@odata.nextLink"].as_str().map(str::to_string);
    }
    let paging_time = paging.elapsed();
    println!("users: {users}, groups: {groups}");
    println!(
        "start-up (generate + listen): {:.3} s",
        start_up.as_secs_f64()
    );
    println!(
        "peak RSS after start-up: {} MiB",
        after_start.unwrap_or(0) / 1024
    );
    println!(
        "paged {seen} users in {pages} pages of up to 999 in {:.3} s (largest page {} KiB)",
        paging_time.as_secs_f64(),
        largest_page / 1024
    );
    println!(
        "peak RSS overall: {} MiB",
        peak_rss_kib().unwrap_or(0) / 1024
    );
    sim.shutdown().await;
    Ok(())
}
