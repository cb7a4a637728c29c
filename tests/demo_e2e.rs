//! `cargo run --example demo` is the README's first command: it must work offline on a
//! fresh machine and show the whole flow. This runs it as a newcomer would.

use std::process::Command;

#[test]
fn demo_runs_offline_and_shows_connect_full_sync_and_delta_changes() {
    let output = Command::new(env!("CARGO"))
        .args(["run", "--quiet", "-p", "m365-link", "--example", "demo"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        // A newcomer's environment: no store key, no app registration.
        .env_remove("M365_LINK_STORE_KEY")
        .env_remove("ENTRA_CLIENT_ID")
        .env_remove("ENTRA_CLIENT_SECRET")
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");

    for expected in [
        "Linked Microsoft 365 accounts",
        "Contoso (simulated)",
        "signed in as admin@contoso.onmicrosoft.com",
        "full sync in",
        "│ users       ┆ 3000  ┆ 3000",
        "delta sync in",
        "+ user nina.neumann@contoso.onmicrosoft.com",
        "~ user ",
        "jobTitle",
        "\"Head of Sales\"",
        "- user ",
        "+ group \"Signature Rollout\"",
        "+ member ",
        "- member ",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    // The delta round is a handful of requests, not a second full listing.
    let delta = stdout
        .split("delta sync in")
        .nth(1)
        .and_then(|rest| rest.split(" Graph requests").next())
        .and_then(|text| text.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .expect("the delta line names its request count");
    assert!(delta <= 10, "delta sync used {delta} requests");
    // Nothing secret is printed: not the simulator's client secret, and no token, code
    // or verifier. The simulator's are random base64url values of 48 bytes or more (64
    // characters and up; a PKCE verifier is 43 or more): runs of 40 or more base64url
    // characters with a stretch of more than 12 between hyphens. Ids (GUIDs) and
    // hyphenated names have short stretches.
    for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(
            !text.contains("sim~"),
            "the client secret in {name}:\n{text}"
        );
        let opaque = opaque_values(text);
        assert!(
            opaque.is_empty(),
            "secret-like values {opaque:?} in {name}:\n{text}"
        );
    }
}

/// Runs of 40 or more base64url characters with a stretch of more than 12 between
/// hyphens: what a random token, code or verifier looks like (a hyphen is one character
/// in 64 of those), unlike a GUID or `m365-link-demo-{guid}`.
fn opaque_values(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|run| run.len() >= 40 && run.split('-').any(|stretch| stretch.len() > 12))
        .collect()
}

#[test]
fn the_secret_check_finds_a_token_among_ids_and_paths() {
    let token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9_x-4yTg3Zb9mQv2Lw8Hk1JpR6sNc";
    let printed = format!(
        "connection 3f2504e0-4f89-11d3-9a0c-0305e82c3301 at /tmp/m365-link/links.sqlite\n\
         Authorization: Bearer {token}\n"
    );
    assert_eq!(opaque_values(&printed), [token]);
    assert!(
        opaque_values(
            "connection 3f2504e0-4f89-11d3-9a0c-0305e82c3301 synced into \
             /tmp/m365-link-demo-e730c453-7ae6-4df7-af07-9d91ccfa6658/mirror"
        )
        .is_empty()
    );
}
