//! The `connect` and `connections` commands as a person runs them, against tenant-sim in
//! process: the sign-in URL is taken from `connect --no-browser` and followed the way a
//! browser would, and the store is a `SQLite` file with its generated key file.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use secrecy::ExposeSecret as _;
use tenant_sim::{ConsentMode, TenantSim};

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> TempDir {
    let dir = std::env::temp_dir().join(format!("m365-link-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

fn example(name: &str, store: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO"));
    command
        .args(["run", "--quiet", "-p", "m365-link", "--example", name, "--"])
        .args(args)
        .arg("--store")
        .arg(store)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("M365_LINK_STORE_KEY");
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `connect --no-browser`, follows the URL it prints like a browser, and returns
/// the command's output (stderr included) and the page the browser ended on.
async fn connect(sim: &TenantSim, store: &Path, args: &[&str]) -> (Output, String, String) {
    let mut command = example("connect", store, args);
    command
        .args([
            "--login-url",
            sim.login_base(),
            "--graph-url",
            sim.graph_base(),
        ])
        .args(["--no-browser", "--timeout", "120"])
        .env("ENTRA_CLIENT_ID", sim.client_id())
        .env("ENTRA_CLIENT_SECRET", sim.client_secret().expose_secret())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("cargo runs");
    let stderr = child.stderr.take().unwrap();
    let (url_sender, url_receiver) = tokio::sync::oneshot::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut url_sender = Some(url_sender);
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("/oauth2/v2.0/authorize?")
                && let Some(sender) = url_sender.take()
            {
                let _ = sender.send(line.trim().to_owned());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let url = url_receiver.await.expect("connect printed the sign-in URL");
    let page = reqwest::get(&url).await.unwrap().text().await.unwrap();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = reader.join().unwrap();
    (output, stderr, page)
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_then_list_show_rename_and_remove_through_the_commands() {
    let sim = TenantSim::builder()
        .users(20)
        .groups(2)
        .seed(3)
        .start()
        .await
        .unwrap();
    let dir = temp_dir();
    let store = dir.0.join("links.sqlite");

    let (output, stderr, page) = connect(&sim, &store, &["--name", "Contoso Sim"]).await;
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(page.contains("You can close this tab"), "{page}");
    assert!(stdout.contains("Connected \"Contoso Sim\""), "{stdout}");
    assert!(stdout.contains(sim.admin_upn()), "{stdout}");
    assert!(stderr.contains("generated a key"), "{stderr}");
    assert!(dir.0.join("links.sqlite.key").exists());
    assert!(!stderr.contains(sim.client_secret().expose_secret()));

    let list = example("connections", &store, &["list"]).output().unwrap();
    let listed = text(&list.stdout);
    assert!(list.status.success(), "{listed}{}", text(&list.stderr));
    for expected in [
        "Contoso Sim",
        sim.tenant_id(),
        sim.admin_upn(),
        "active",
        "never",
    ] {
        assert!(listed.contains(expected), "{expected} in {listed}");
    }

    // Reconnect by name: the same connection, signed in again, at the tenant itself.
    let (output, stderr, _page) = connect(&sim, &store, &["--reconnect", "CONTOSO SIM"]).await;
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("Reconnected \"Contoso Sim\""), "{stdout}");
    let authority = format!(
        "{}/{}/oauth2/v2.0/authorize?",
        sim.login_base(),
        sim.tenant_id()
    );
    assert!(stderr.contains(&authority), "{stderr}");

    let rename = example(
        "connections",
        &store,
        &["rename", "contoso sim", "Contoso DE"],
    )
    .output()
    .unwrap();
    assert!(rename.status.success(), "{}", text(&rename.stderr));
    let show = example("connections", &store, &["show", "Contoso DE"])
        .output()
        .unwrap();
    let shown = text(&show.stdout);
    assert!(shown.contains("User.Read.All"), "{shown}");
    assert!(
        shown.contains(&format!("custom (login {}", sim.login_base())),
        "{shown}"
    );

    // Another owner sees nothing.
    let other = example("connections", &store, &["list", "--owner", "someone-else"])
        .output()
        .unwrap();
    assert!(text(&other.stdout).contains("No linked Microsoft 365 accounts"));

    // Removing needs a confirmation; without a terminal it asks for --yes.
    let refused = example("connections", &store, &["remove", "Contoso DE"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("--yes"));
    let removed = example("connections", &store, &["remove", "Contoso DE", "--yes"])
        .output()
        .unwrap();
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    let empty = example("connections", &store, &["list"]).output().unwrap();
    assert!(text(&empty.stdout).contains("No linked Microsoft 365 accounts"));
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_explains_missing_admin_approval_and_exits_non_zero() {
    let sim = TenantSim::builder()
        .users(20)
        .groups(2)
        .seed(4)
        .start()
        .await
        .unwrap();
    sim.control()
        .set_consent_mode(ConsentMode::AdminApprovalRequired);
    let dir = temp_dir();
    let store = dir.0.join("links.sqlite");

    let (output, stderr, _page) = connect(&sim, &store, &["--name", "Contoso"]).await;
    assert!(!output.status.success());
    assert!(stderr.contains("only an administrator"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}/organizations/v2.0/adminconsent?client_id=",
            sim.login_base()
        )),
        "{stderr}"
    );
    let list = example("connections", &store, &["list"]).output().unwrap();
    assert!(text(&list.stdout).contains("No linked Microsoft 365 accounts"));
}

/// The administrator check is on by default: an account Entra signs in and grants the
/// scopes to, but that holds no role that may consent, is refused with the admin-consent
/// link and nothing is stored; `--allow-non-admin` turns the check off.
#[tokio::test(flavor = "multi_thread")]
async fn connect_refuses_a_sign_in_without_an_admin_role_unless_allowed() {
    let sim = TenantSim::builder()
        .users(20)
        .groups(2)
        .seed(4)
        .start()
        .await
        .unwrap();
    let dir = temp_dir();
    let store = dir.0.join("links.sqlite");
    // The admin consents for the tenant (a first connection, removed again), then loses
    // the role: Entra still signs them in and grants the scopes.
    let (output, stderr, _page) = connect(&sim, &store, &["--name", "First"]).await;
    assert!(output.status.success(), "{stderr}");
    let removed = example("connections", &store, &["remove", "First", "--yes"])
        .output()
        .unwrap();
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    sim.control()
        .remove_role(
            sim.admin_upn(),
            tenant_sim::DirectoryRole::GlobalAdministrator,
        )
        .unwrap();

    let (output, stderr, _page) = connect(&sim, &store, &["--name", "Contoso"]).await;
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("next step: sign in with an administrator account"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{}/{}/v2.0/adminconsent?client_id=",
            sim.login_base(),
            sim.tenant_id()
        )),
        "{stderr}"
    );
    let list = example("connections", &store, &["list"]).output().unwrap();
    assert!(text(&list.stdout).contains("No linked Microsoft 365 accounts"));

    let (output, stderr, _page) =
        connect(&sim, &store, &["--name", "Contoso", "--allow-non-admin"]).await;
    assert!(output.status.success(), "{stderr}");
    let list = example("connections", &store, &["list"]).output().unwrap();
    assert!(
        text(&list.stdout).contains("Contoso"),
        "{}",
        text(&list.stdout)
    );
}
