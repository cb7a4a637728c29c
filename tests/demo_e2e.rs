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
    // Nothing secret is printed: not the simulator's client secret, not a token.
    for secret_marker in ["sim~", "refresh_token", "access_token", "code_verifier"] {
        assert!(
            !stdout.contains(secret_marker),
            "{secret_marker} in:\n{stdout}"
        );
        assert!(
            !stderr.contains(secret_marker),
            "{secret_marker} in:\n{stderr}"
        );
    }
}
