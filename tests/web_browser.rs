//! A real browser walks the web example end to end: headless Chromium driven over
//! `WebDriver` (`fantoccini` talking to `chromedriver`) against an in-process tenant-sim
//! with interactive consent; the app keeps its connections and their directory mirror in
//! a `SQLite` file in a temporary folder.
//!
//! Without `chromedriver` and Chromium on the machine the test prints `skipped: …` and
//! passes, unless `M365_LINK_REQUIRE_BROWSER` is set (CI sets it): then a missing browser
//! fails the test. A screenshot of every page lands in `<target>/web-screenshots/`
//! (`NN-<page>.png`), with the README's two pictures as `linked-accounts.png` and
//! `manage.png`; `M365_LINK_UPDATE_SCREENSHOTS=1` also writes those two to
//! `docs/screenshots/`. `RUST_LOG=info` shows the app's and the simulator's logs.
//!
//! Binaries: `CHROMEDRIVER` (else `/usr/bin/chromedriver`, else `chromedriver` on `PATH`)
//! and `CHROME` (else `/usr/bin/chromium`, else `chromium` on `PATH`).

use std::io::Write as _;
use std::net::{Ipv4Addr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use connection_store_sql::{EncryptionKey, KeyId, KeyRing, SqlStore};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use m365_link_app::connect::SignIn;
use m365_link_app::mirror::Mirror;
use m365_link_app::store::OpenedStore;
use m365_link_app::web;
use tenant_sim::{ConsentMode, TenantSim, UserSummary, UserType};

/// How long a page may take to show an element after a click or a navigation.
const PAGE_TIMEOUT: Duration = Duration::from_secs(15);

/// The window (and so the screenshot) size: small enough for the README's PNGs.
const WINDOW: (u32, u32) = (1100, 800);

/// How long a sync may take to reach the state the test waits for.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// The integration's pages.
const BASE: &str = "/integrations/microsoft-365";

/// The connection the flow creates.
const CONNECTION_NAME: &str = "Signature Microsoft 365 account Germany";

// ---------------------------------------------------------------------------------------
// Finding the browser

/// The two binaries the test drives.
struct Binaries {
    chromedriver: PathBuf,
    chrome: PathBuf,
}

/// `name` in a directory of `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The binary named by `variable`, else the first existing default, else `name` on
/// `PATH`; `Err` says where it looked.
fn locate(variable: &str, defaults: &[&str], name: &str) -> Result<PathBuf, String> {
    if let Some(value) = std::env::var_os(variable).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{variable}={} does not exist", path.display()))
        };
    }
    defaults
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
        .or_else(|| on_path(name))
        .ok_or_else(|| {
            format!(
                "{name} not found (set {variable}, or install it at {} or on PATH)",
                defaults.join(" or ")
            )
        })
}

/// Whether a missing browser fails the test (`M365_LINK_REQUIRE_BROWSER` set to anything
/// but empty or `0`; CI sets it).
fn browser_required() -> bool {
    std::env::var("M365_LINK_REQUIRE_BROWSER").is_ok_and(|value| !value.is_empty() && value != "0")
}

/// The binaries, or `None` after printing why the test is skipped. Panics instead when
/// the browser is required.
fn binaries_or_skip(test: &str) -> Option<Binaries> {
    let chromedriver = locate("CHROMEDRIVER", &["/usr/bin/chromedriver"], "chromedriver");
    let chrome = locate("CHROME", &["/usr/bin/chromium"], "chromium");
    match (chromedriver, chrome) {
        (Ok(chromedriver), Ok(chrome)) => Some(Binaries {
            chromedriver,
            chrome,
        }),
        (chromedriver, chrome) => {
            let missing: Vec<String> = [chromedriver.err(), chrome.err()]
                .into_iter()
                .flatten()
                .collect();
            let missing = missing.join("; ");
            assert!(
                !browser_required(),
                "{test}: M365_LINK_REQUIRE_BROWSER is set but the browser is missing: {missing} \
                 (Debian packages: chromium chromium-driver)"
            );
            // Straight to the process's stderr, past the test harness's capture, so the
            // skip shows in every `cargo test` run.
            let _ = writeln!(
                std::io::stderr(),
                "skipped: {test}: no browser: {missing}. Install the Debian packages chromium \
                 and chromium-driver, or set M365_LINK_REQUIRE_BROWSER=1 to make this a failure."
            );
            None
        }
    }
}

/// The cargo target directory: `CARGO_TARGET_DIR`, else `<manifest dir>/target`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|v| !v.is_empty())
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
            PathBuf::from,
        )
}

/// A fresh folder under cargo's temporary folder for integration tests, removed on drop
/// (also when the test panics).
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> anyhow::Result<Self> {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{prefix}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free loopback port (the listener is closed again; chromedriver binds it next).
fn free_port() -> u16 {
    StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

// ---------------------------------------------------------------------------------------
// chromedriver and the WebDriver session

/// A running `chromedriver` in its own process group: dropping it kills the group
/// (chromedriver and the Chromium it started), also when the test panics.
struct Driver {
    child: std::process::Child,
    profile: TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group id is chromedriver's pid (process_group(0) below).
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session plus where its screenshots go.
struct Browser {
    client: Client,
    shots: PathBuf,
    shot_count: usize,
    // Last: the session is used before the driver goes.
    driver: Driver,
}

impl Browser {
    /// Starts chromedriver on a free port, waits for its `/status`, and opens a session
    /// with a fresh profile. Screenshots go to `<target>/web-screenshots/`.
    async fn start(binaries: &Binaries) -> anyhow::Result<Self> {
        let target = target_dir();
        let shots = target.join("web-screenshots");
        std::fs::create_dir_all(&shots).with_context(|| format!("creating {}", shots.display()))?;
        // The folder shows the last run only.
        for entry in std::fs::read_dir(&shots)?.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".png") && name.as_bytes().first().is_some_and(u8::is_ascii_digit) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let profile = TempDir::new("web-browser-profile")?;
        let port = free_port();
        let log = shots.join("chromedriver.log");
        let child = {
            use std::os::unix::process::CommandExt as _;
            std::process::Command::new(&binaries.chromedriver)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .with_context(|| format!("starting {}", binaries.chromedriver.display()))?
        };
        let mut driver = Driver { child, profile };
        let webdriver = format!("http://127.0.0.1:{port}");
        wait_for_status(&mut driver, &webdriver).await?;

        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": binaries.chrome,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    format!("--window-size={},{}", WINDOW.0, WINDOW.1),
                    format!("--user-data-dir={}", driver.profile.0.display()),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&webdriver)
            .await
            .with_context(|| {
                format!(
                    "opening a WebDriver session (chromedriver log: {})",
                    log.display()
                )
            })?;
        Ok(Self {
            client,
            shots,
            shot_count: 0,
            driver,
        })
    }

    /// Ends the `WebDriver` session (Chromium exits); the driver is killed on drop.
    async fn close(self) {
        let Self { client, driver, .. } = self;
        let _ = client.close().await;
        drop(driver);
    }

    /// Saves a screenshot of the current page as `NN-<name>.png`; returns its path.
    async fn shot(&mut self, name: &str) -> anyhow::Result<PathBuf> {
        self.shot_count += 1;
        let path = self
            .shots
            .join(format!("{:02}-{name}.png", self.shot_count));
        let png = self
            .client
            .screenshot()
            .await
            .context("taking a screenshot")?;
        std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Saves a screenshot of the current page at `path` as well.
    async fn shot_to(&self, path: &Path) -> anyhow::Result<()> {
        let png = self
            .client
            .screenshot()
            .await
            .context("taking a screenshot")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }

    async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("opening {url}"))
    }

    async fn url(&self) -> anyhow::Result<url::Url> {
        Ok(self.client.current_url().await?)
    }

    /// The element matching `css`, waiting up to [`PAGE_TIMEOUT`] for it.
    async fn find(&self, css: &str) -> anyhow::Result<Element> {
        match self
            .client
            .wait()
            .at_most(PAGE_TIMEOUT)
            .every(Duration::from_millis(50))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => Ok(element),
            Err(error) => {
                let url = self.client.current_url().await.map(String::from);
                Err(anyhow!(
                    "no {css} on the page {} after {PAGE_TIMEOUT:?}: {error}",
                    url.unwrap_or_default()
                ))
            }
        }
    }

    /// Every element matching `css` now (no waiting).
    async fn find_all(&self, css: &str) -> anyhow::Result<Vec<Element>> {
        Ok(self.client.find_all(Locator::Css(css)).await?)
    }

    /// Whether an element matches `css` now (no waiting).
    async fn exists(&self, css: &str) -> anyhow::Result<bool> {
        Ok(!self.find_all(css).await?.is_empty())
    }

    /// The visible text of the element matching `css`.
    async fn text(&self, css: &str) -> anyhow::Result<String> {
        Ok(self.find(css).await?.text().await?)
    }

    /// Clicks the element matching `css`, then waits until the page is no longer the one
    /// clicked on (`#browser-test-stale` is a marker put on the old page).
    async fn click(&self, css: &str) -> anyhow::Result<()> {
        self.mark_page().await?;
        self.find(css)
            .await?
            .click()
            .await
            .with_context(|| format!("clicking {css}"))?;
        self.wait_for_new_page(css).await
    }

    /// Types `text` into the (cleared) field matching `css`.
    async fn fill(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let field = self.find(css).await?;
        field.clear().await?;
        field
            .send_keys(text)
            .await
            .with_context(|| format!("typing into {css}"))
    }

    /// Scrolls the element matching `css` near the top of the window (the heading above
    /// it stays in view).
    async fn execute_scroll(&self, css: &str) -> anyhow::Result<()> {
        let element = self.find(css).await?;
        let element = serde_json::to_value(&element)?;
        self.client
            .execute(
                "arguments[0].scrollIntoView({block: 'start'}); window.scrollBy(0, -80);",
                vec![element],
            )
            .await?;
        Ok(())
    }

    /// The HTTP status of a GET of `url` from the page, with its cookies (`fetch`).
    async fn fetch_status(&self, url: &str) -> anyhow::Result<u64> {
        let answer = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];\
                 fetch(arguments[0], {credentials: 'same-origin', redirect: 'manual'})\
                   .then(r => done(r.status), e => done('fetch failed: ' + e));",
                vec![serde_json::Value::String(url.to_owned())],
            )
            .await?;
        answer
            .as_u64()
            .with_context(|| format!("fetching {url} in the browser: {answer}"))
    }

    /// Puts a marker on the current document to notice when it is replaced.
    async fn mark_page(&self) -> anyhow::Result<()> {
        self.client
            .execute("window.__browserTestOldPage = true;", vec![])
            .await?;
        Ok(())
    }

    /// Waits until the marked document is gone and the new one has loaded.
    async fn wait_for_new_page(&self, what: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        loop {
            let state = self
                .client
                .execute(
                    "return window.__browserTestOldPage === true ? 'old' : document.readyState;",
                    vec![],
                )
                .await;
            // A navigation in flight can make the script fail: try again.
            if let Ok(serde_json::Value::String(state)) = state
                && state == "complete"
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                let url = self.client.current_url().await.map(String::from);
                bail!(
                    "after clicking {what} no new page loaded within {PAGE_TIMEOUT:?} (still at {})",
                    url.unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Polls chromedriver's `/status` until it answers ready, it exits, or 20 s pass.
async fn wait_for_status(driver: &mut Driver, webdriver: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last;
    loop {
        if let Some(status) = driver.child.try_wait()? {
            bail!("chromedriver exited before it was ready: {status}");
        }
        match http.get(format!("{webdriver}/status")).send().await {
            Ok(response) => {
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                if body["value"]["ready"] == serde_json::Value::Bool(true) {
                    return Ok(());
                }
                last = body.to_string();
            }
            Err(error) => last = error.to_string(),
        }
        ensure!(
            Instant::now() < deadline,
            "chromedriver at {webdriver} not ready after 20 s: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------
// The flow

/// The app, the simulated tenant and the browser of one run.
struct Run {
    browser: Browser,
    app: web::Running,
    sim: TenantSim,
    data_dir: TempDir,
}

impl Run {
    /// `path` under the app's URL.
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.app.url())
    }

    /// Opens `path` of the app.
    async fn open(&self, path: &str) -> anyhow::Result<()> {
        self.browser.goto(&self.url(path)).await
    }

    /// Signs in to the app as a demo customer, from its sign-in page.
    async fn sign_in(&mut self, email: &str, password: &str, shot: &str) -> anyhow::Result<()> {
        self.open("/").await?;
        let url = self.browser.url().await?;
        ensure!(
            url.path() == "/sign-in",
            "signed out, / should lead to /sign-in, not {url}"
        );
        self.browser.fill("#email", email).await?;
        self.browser.fill("#password", password).await?;
        self.browser.shot(shot).await?;
        self.browser.click("#sign-in").await?;
        let url = self.browser.url().await?;
        ensure!(
            url.path() == "/integrations",
            "after signing in as {email} the browser is at {url}, not /integrations"
        );
        let customer = self.browser.text("#customer").await?;
        ensure!(
            customer == email,
            "the header names {customer:?}, not {email}"
        );
        Ok(())
    }

    /// Clicks through the simulated Microsoft pages as the tenant's admin: "Pick an
    /// account", then "Permissions requested" → Accept (for the organization).
    async fn consent_as_admin(&mut self, shot: &str) -> anyhow::Result<()> {
        let url = self.browser.url().await?;
        ensure!(
            url.as_str().starts_with(self.sim.login_base()),
            "expected the simulated Microsoft sign-in at {}, the browser is at {url}",
            self.sim.login_base()
        );
        let heading = self.browser.text("h1").await?;
        ensure!(
            heading == "Pick an account",
            "the Microsoft sign-in page says {heading:?}"
        );
        self.browser
            .shot(&format!("{shot}-microsoft-sign-in"))
            .await?;
        let admin = format!("#accounts button.account[value='{}']", self.sim.admin_id());
        self.browser.click(&admin).await?;

        let heading = self.browser.text("h1").await?;
        ensure!(
            heading == "Permissions requested",
            "after picking the admin the Microsoft page says {heading:?}"
        );
        let scopes = self.browser.text("#scopes").await?;
        for scope in ["User.Read.All", "Group.Read.All"] {
            ensure!(
                scopes.contains(scope),
                "the consent page does not ask for {scope}: {scopes:?}"
            );
        }
        let organization = self
            .browser
            .find("input[name=organization]")
            .await?
            .is_selected()
            .await?;
        ensure!(
            organization,
            "“Consent on behalf of your organization” is not ticked"
        );
        self.browser
            .shot(&format!("{shot}-microsoft-consent"))
            .await?;
        self.browser
            .click("button[name=decision][value=accept]")
            .await?;
        let url = self.browser.url().await?;
        ensure!(
            url.as_str().starts_with(self.app.url()),
            "after Accept the browser did not come back to the app: {url}"
        );
        Ok(())
    }

    /// Reopens the Manage page until `#sync-progress` shows `want`; fails at once on
    /// another finished state, and after [`SYNC_TIMEOUT`].
    async fn wait_for_sync(&self, manage: &str, want: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + SYNC_TIMEOUT;
        loop {
            let progress = self.browser.find("#sync-progress").await?;
            let state = progress.attr("data-state").await?.unwrap_or_default();
            let text = progress.text().await?;
            if state == want {
                return Ok(());
            }
            ensure!(
                !matches!(state.as_str(), "done" | "failed" | "needs-reconnect"),
                "waiting for the sync to end in {want:?}, it ended in {state:?}: {text}"
            );
            ensure!(
                Instant::now() < deadline,
                "the sync did not reach {want:?} within {SYNC_TIMEOUT:?}; still {state:?}: {text}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            self.open(manage).await?;
        }
    }

    /// Clicks "Sync now" on the Manage page and waits for `want`.
    async fn sync_now(&self, manage: &str, want: &str) -> anyhow::Result<()> {
        self.browser.click("#sync-now-submit").await?;
        let url = self.browser.url().await?;
        ensure!(
            url.path() == manage,
            "“Sync now” should lead back to the Manage page, the browser is at {url}"
        );
        self.wait_for_sync(manage, want).await
    }

    /// The employees table's rows: (user id, name).
    async fn employee_rows(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut rows = Vec::new();
        for row in self.browser.find_all("#employees tr.employee").await? {
            let id = row.attr("data-user-id").await?.unwrap_or_default();
            let name = row.find(Locator::Css("td.name")).await?.text().await?;
            rows.push((id, name));
        }
        Ok(rows)
    }

    /// Checks that every row is an in-scope user of the tenant, by id and name.
    fn check_rows(rows: &[(String, String)], in_scope: &[UserSummary]) -> anyhow::Result<()> {
        for (id, name) in rows {
            let user = in_scope
                .iter()
                .find(|user| &user.id == id)
                .with_context(|| {
                    format!("row {id} ({name}) is not an in-scope user of the tenant")
                })?;
            ensure!(
                &user.display_name == name,
                "row {id} shows {name:?}, the tenant says {:?}",
                user.display_name
            );
        }
        Ok(())
    }
}

/// The app's connections as the list shows them: (id, name, tenant, admin, status).
async fn listed(browser: &Browser) -> anyhow::Result<Vec<[String; 5]>> {
    let mut out = Vec::new();
    for row in browser.find_all("#connections tr.connection").await? {
        let id = row.attr("data-connection-id").await?.unwrap_or_default();
        let mut cells = [
            id,
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ];
        for (slot, css) in
            cells[1..]
                .iter_mut()
                .zip(["td.name", "td.tenant", "td.admin", "td.status"])
        {
            *slot = row.find(Locator::Css(css)).await?.text().await?;
        }
        out.push(cells);
    }
    Ok(out)
}

/// Where the README's screenshot `name` is written: the screenshots folder, and
/// `docs/screenshots/` when `M365_LINK_UPDATE_SCREENSHOTS` is set.
fn readme_screenshot(name: &str) -> Vec<PathBuf> {
    let mut paths = vec![target_dir().join("web-screenshots").join(name)];
    if std::env::var("M365_LINK_UPDATE_SCREENSHOTS").is_ok_and(|v| !v.is_empty() && v != "0") {
        paths.push(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("docs/screenshots")
                .join(name),
        );
    }
    paths
}

/// The whole flow; the test wraps it to screenshot the page it failed on.
#[allow(clippy::too_many_lines)]
async fn flow(run: &mut Run) -> anyhow::Result<()> {
    let users = run.sim.control().users();
    // The default scope skips disabled accounts and guests.
    let in_scope: Vec<UserSummary> = users
        .iter()
        .filter(|user| user.account_enabled && user.user_type == UserType::Member)
        .cloned()
        .collect();
    ensure!(
        in_scope.len() < users.len(),
        "the tenant should have guests or disabled accounts for the scope to skip"
    );

    // Sign in as alice; Integrations → Integrate.
    run.sign_in("alice@example.com", "alice-demo", "sign-in")
        .await?;
    run.browser.shot("integrations").await?;
    run.browser.click("#integrate-m365").await?;
    ensure!(
        run.browser.url().await?.path() == BASE,
        "Integrate leads elsewhere"
    );
    ensure!(
        run.browser.exists("#no-connections").await?,
        "a new customer should see #no-connections"
    );
    run.browser.shot("linked-accounts-empty").await?;

    // Create a connection: a blank name is refused next to the field.
    run.browser.click("#create-connection").await?;
    ensure!(
        run.browser.url().await?.path() == format!("{BASE}/new"),
        "“Create a new connection” leads elsewhere"
    );
    run.browser.fill("#name", "   ").await?;
    run.browser.click("#connect").await?;
    let error = run.browser.text("#name-error").await?;
    ensure!(!error.trim().is_empty(), "#name-error is empty");
    ensure!(
        run.browser.url().await?.as_str().starts_with(run.app.url()),
        "a blank name must not lead to Microsoft"
    );
    run.browser.shot("new-connection-name-error").await?;
    run.browser.fill("#name", CONNECTION_NAME).await?;
    run.browser.shot("new-connection").await?;
    run.browser.click("#connect").await?;

    // The simulated Microsoft pages, then back on the list.
    run.consent_as_admin("connect").await?;
    let url = run.browser.url().await?;
    ensure!(url.path() == BASE, "after consent the browser is at {url}");
    let rows = listed(&run.browser).await?;
    ensure!(
        rows.len() == 1,
        "the list shows {} connections: {rows:?}",
        rows.len()
    );
    let [id, name, tenant, admin, status] = rows[0].clone();
    ensure!(name == CONNECTION_NAME, "td.name is {name:?}");
    ensure!(
        tenant == run.sim.tenant_id(),
        "td.tenant is {tenant:?}, the tenant is {}",
        run.sim.tenant_id()
    );
    ensure!(
        admin == run.sim.admin_upn(),
        "td.admin is {admin:?}, the admin is {}",
        run.sim.admin_upn()
    );
    ensure!(status == "active", "td.status is {status:?}");
    ensure!(
        url.query_pairs().any(|(k, v)| k == "created" && v == id),
        "the list URL {url} should name the created connection {id}"
    );
    run.browser.shot("linked-accounts").await?;

    // Manage → Sync now → the employees.
    let manage = format!("{BASE}/connections/{id}");
    run.browser
        .click(&format!(
            "tr.connection[data-connection-id='{id}'] a.manage"
        ))
        .await?;
    ensure!(
        run.browser.url().await?.path() == manage,
        "Manage leads elsewhere"
    );
    let heading = run.browser.text("h1").await?;
    ensure!(
        heading == CONNECTION_NAME,
        "the Manage page's h1 is {heading:?}"
    );
    let status = run.browser.text("#status").await?;
    ensure!(status.contains("active"), "#status is {status:?}");
    ensure!(
        !run.browser.exists("#reconnect").await?,
        "an active connection offers #reconnect"
    );
    run.browser.shot("manage").await?;
    run.sync_now(&manage, "done").await?;
    let count = run.browser.text("#employees-count").await?;
    ensure!(
        count == format!("{} employees", in_scope.len()),
        "#employees-count says {count:?}, the tenant has {} users in scope (of {})",
        in_scope.len(),
        users.len()
    );
    let first_page = run.employee_rows().await?;
    ensure!(
        first_page.len() == in_scope.len().min(25),
        "the first page shows {} employees",
        first_page.len()
    );
    Run::check_rows(&first_page, &in_scope)?;
    run.browser.shot("manage-employees").await?;
    // The README's picture: the employees table with the page's title above it.
    run.browser.execute_scroll("#employee-search").await?;
    for path in readme_screenshot("manage.png") {
        run.browser.shot_to(&path).await?;
    }

    // The next page holds other users.
    run.browser.click("#employees-pager a.next").await?;
    let second_page = run.employee_rows().await?;
    ensure!(!second_page.is_empty(), "page 2 is empty");
    Run::check_rows(&second_page, &in_scope)?;
    ensure!(
        second_page.iter().all(|row| !first_page.contains(row)),
        "page 2 repeats rows of page 1"
    );
    run.browser.shot("manage-employees-page-2").await?;

    // Search one user by display name.
    let wanted = &in_scope[in_scope.len() / 2];
    run.browser
        .fill("#employee-search input[name=q]", &wanted.display_name)
        .await?;
    run.browser
        .click("#employee-search button[type=submit]")
        .await?;
    let found = run.employee_rows().await?;
    ensure!(
        found.contains(&(wanted.id.clone(), wanted.display_name.clone())),
        "searching {:?} does not show that user: {found:?}",
        wanted.display_name
    );
    ensure!(
        found.len() < first_page.len(),
        "searching {:?} shows {} rows",
        wanted.display_name,
        found.len()
    );
    let count = run.browser.text("#employees-count").await?;
    ensure!(
        count.ends_with("matching"),
        "#employees-count after a search says {count:?}"
    );
    run.browser.shot("manage-search").await?;

    // The list now shows the sync.
    run.open(BASE).await?;
    let users_cell = run.browser.text("tr.connection td.users").await?;
    ensure!(
        users_cell == in_scope.len().to_string(),
        "td.users says {users_cell:?}, expected {}",
        in_scope.len()
    );
    let last_sync = run.browser.text("tr.connection td.last-sync").await?;
    ensure!(
        last_sync != "never",
        "td.last-sync says {last_sync:?} after a sync"
    );
    for path in readme_screenshot("linked-accounts.png") {
        run.browser.shot_to(&path).await?;
    }

    // The tenant revokes the admin's grants (tenant-sim's control API over HTTP).
    let revoked: serde_json::Value = reqwest::Client::new()
        .post(format!(
            "{}/users/{}/revoke",
            run.sim.control_base(),
            run.sim.admin_id()
        ))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    ensure!(
        revoked["revoked"].as_u64().is_some_and(|n| n >= 1),
        "the control API revoked nothing: {revoked}"
    );
    run.open(&manage).await?;
    run.sync_now(&manage, "needs-reconnect").await?;
    let status = run.browser.text("#status").await?;
    ensure!(
        status.contains("reconnect needed"),
        "after the revoked grant #status is {status:?}"
    );
    run.browser.shot("manage-reconnect-needed").await?;
    run.open(BASE).await?;
    let status = run.browser.text("tr.connection td.status").await?;
    ensure!(
        status == "reconnect needed",
        "the list's td.status is {status:?}"
    );
    run.browser.shot("linked-accounts-reconnect-needed").await?;

    // Reconnect: the Microsoft pages again, then active and syncing.
    run.open(&manage).await?;
    run.browser.click("#reconnect-submit").await?;
    run.consent_as_admin("reconnect").await?;
    let url = run.browser.url().await?;
    ensure!(
        url.path() == manage,
        "after the reconnect the browser is at {url}, not the Manage page"
    );
    let status = run.browser.text("#status").await?;
    ensure!(
        status.contains("active") && !status.contains("reconnect needed"),
        "after the reconnect #status is {status:?}"
    );
    ensure!(
        !run.browser.exists("#reconnect").await?,
        "#reconnect is still offered after the reconnect"
    );
    run.browser.shot("manage-reconnected").await?;
    run.sync_now(&manage, "done").await?;
    let count = run.browser.text("#employees-count").await?;
    ensure!(
        count == format!("{} employees", in_scope.len()),
        "after the reconnect #employees-count says {count:?}"
    );
    run.browser.shot("manage-synced-again").await?;
    run.open(BASE).await?;
    let rows = listed(&run.browser).await?;
    ensure!(
        rows.len() == 1 && rows[0][4] == "active",
        "after the reconnect the list shows {rows:?}"
    );

    // Another customer sees none of it.
    run.browser.click("#sign-out").await?;
    ensure!(
        run.browser.url().await?.path() == "/sign-in",
        "signing out leads elsewhere"
    );
    run.sign_in("bob@example.com", "bob-demo", "sign-in-bob")
        .await?;
    run.open(BASE).await?;
    ensure!(
        run.browser.exists("#no-connections").await?,
        "bob sees alice's connections"
    );
    ensure!(
        !run.browser.exists("tr.connection").await?,
        "bob's list has rows"
    );
    run.browser.shot("linked-accounts-bob").await?;
    run.open(&manage).await?;
    let status = run.browser.fetch_status(&run.url(&manage)).await?;
    ensure!(status == 404, "alice's Manage page answers bob {status}");
    let heading = run.browser.text("h1").await?;
    ensure!(
        heading == "Not found",
        "bob sees {heading:?} at alice's Manage URL"
    );
    let page = run.browser.text("body").await?;
    ensure!(
        !page.contains(CONNECTION_NAME),
        "bob's 404 page shows alice's connection name"
    );
    run.browser.shot("manage-bob-404").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_signs_in_connects_syncs_loses_the_grant_and_reconnects() {
    let Some(binaries) = binaries_or_skip("web_browser") else {
        return;
    };
    // The app's and the simulator's logs, with RUST_LOG (e.g. `RUST_LOG=info`).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let started = Instant::now();
    let sim = TenantSim::builder()
        .users(60)
        .groups(8)
        .seed(7)
        .consent_mode(ConsentMode::Interactive)
        .start()
        .await
        .expect("tenant-sim starts");
    let data_dir = TempDir::new("web-browser-data").expect("a data folder");
    let config = web::Config::new(SignIn::simulated(&sim), data_dir.0.join("scopes"));
    let keys = KeyRing::new(
        KeyId::new("web-browser").expect("a key id"),
        EncryptionKey::generate(),
    );
    let sql = SqlStore::sqlite(data_dir.0.join("store.sqlite"))
        .key_ring(keys)
        .open()
        .await
        .expect("the SQLite store opens");
    let mirror = Mirror::open(&sql).await.expect("the mirror opens");
    let opened = OpenedStore {
        store: Arc::new(sql.clone()),
        sql,
        mirror,
        description: "SQLite (test)".to_owned(),
    };
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("a loopback port");
    let app = web::serve(config, &opened, listener)
        .await
        .expect("the app starts");
    let browser = Browser::start(&binaries).await.expect("the browser starts");
    let mut run = Run {
        browser,
        app,
        sim,
        data_dir,
    };
    let result = flow(&mut run).await;
    if let Err(error) = result {
        let url = run
            .browser
            .url()
            .await
            .map_or_else(|e| format!("(unknown: {e})"), String::from);
        let shot = run
            .browser
            .shot("failed")
            .await
            .map_or_else(|e| format!("(none: {e:#})"), |p| p.display().to_string());
        panic!("{error:#}\n  page: {url}\n  screenshot: {shot}");
    }
    let Run {
        browser,
        app,
        sim,
        data_dir,
    } = run;
    let shots = browser.shots.clone();
    browser.close().await;
    app.shutdown().await;
    drop(sim);
    drop(data_dir);
    eprintln!(
        "web_browser: the whole flow took {:?}; screenshots in {}",
        started.elapsed(),
        shots.display()
    );
}
