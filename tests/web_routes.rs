//! The web example over HTTP: every route's status, redirect target, CSRF refusal and
//! owner check, with the real app on a loopback listener against an in-process
//! tenant-sim. A `reqwest` client that follows no redirects plays the browser: it keeps
//! the session cookie itself (from `set-cookie`) and fills each form's CSRF token from
//! the last page it read; Entra's side is tenant-sim's `AutoConsent` (the authorize URL
//! redirects straight back to the callback) and its error modes. The app runs over a
//! `SQLite` store with its directory mirror, in a temporary folder.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connection_store::{Connection, ConnectionId, ConnectionStatus, MAX_NAME_CHARS, OwnerId};
use connection_store_sql::{EncryptionKey, KeyId, KeyRing, SqlPool, SqlStore, sqlx};
use m365_link_app::connect::SignIn;
use m365_link_app::mirror::{Mirror, MirrorState, UserQuery};
use m365_link_app::store::OpenedStore;
use m365_link_app::web;
use m365_link_app::web::accounts::{ATTEMPTS_PER_EMAIL, Customer, PasswordCost};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use tenant_sim::{ConsentMode, GroupFields, TenantSim, UserFields, UserType};
use url::Url;

use m365_link_app::web::session::{COOKIE as SESSION_COOKIE, SECURE_COOKIE};

const BASE: &str = "/integrations/microsoft-365";
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
const ALICE: (&str, &str) = ("alice@example.com", "alice-demo");
const BOB: (&str, &str) = ("bob@example.com", "bob-demo");

// ---------------------------------------------------------------------------------------
// The app, the simulator, the browser
// ---------------------------------------------------------------------------------------

async fn sim() -> TenantSim {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    TenantSim::builder()
        .users(12)
        .groups(3)
        .seed(7)
        .consent_mode(ConsentMode::AutoConsent)
        .start()
        .await
        .expect("tenant-sim starts")
}

/// A `SQLite` store with its mirror in a temporary folder (removed on drop).
struct Db {
    opened: OpenedStore,
    dir: PathBuf,
}

impl Db {
    async fn new() -> Arc<Self> {
        let dir = std::env::temp_dir().join(format!("m365-link-web-db-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let keys = KeyRing::new(KeyId::new("web-routes").unwrap(), EncryptionKey::generate());
        let sql = SqlStore::sqlite(dir.join("store.sqlite"))
            .key_ring(keys)
            .open()
            .await
            .expect("the SQLite store opens");
        let mirror = Mirror::open(&sql).await.expect("the mirror opens");
        Arc::new(Self {
            opened: OpenedStore {
                store: Arc::new(sql.clone()),
                sql,
                mirror,
                description: "SQLite (test)".to_owned(),
            },
            dir,
        })
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The app running on a loopback port, its database and its data folder (removed on
/// drop).
struct App {
    running: Option<web::Running>,
    db: Arc<Db>,
    data_dir: PathBuf,
    url: String,
    /// The session cookie's name under the app's configuration.
    cookie_name: &'static str,
}

impl App {
    async fn start(sim: &TenantSim) -> Self {
        Self::start_with(sim, Db::new().await).await
    }

    async fn start_with(sim: &TenantSim, db: Arc<Db>) -> Self {
        Self::start_configured(sim, db, |_| {}).await
    }

    /// Started with `configure` applied to the configuration the tests use.
    async fn start_configured(
        sim: &TenantSim,
        db: Arc<Db>,
        configure: impl FnOnce(&mut web::Config),
    ) -> Self {
        let data_dir =
            std::env::temp_dir().join(format!("m365-link-web-routes-{}", uuid::Uuid::new_v4()));
        let mut config = web::Config::new(SignIn::simulated(sim), &data_dir);
        // The demo customers with the lightest Argon2 (a debug build spends about a
        // second on the recommended cost): the tests are about the routes.
        config.customers = Customer::demo_with_cost(PasswordCost::TestOnly);
        configure(&mut config);
        let cookie_name = config.session_cookie();
        assert_eq!(cookie_name, SESSION_COOKIE, "plain HTTP");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = web::serve(config, &db.opened, listener)
            .await
            .expect("the app starts");
        let url = running.url().to_owned();
        Self {
            running: Some(running),
            db,
            data_dir,
            url,
            cookie_name,
        }
    }

    fn browser(&self) -> Browser {
        Browser::new(&self.url, self.cookie_name)
    }

    async fn list(&self, owner: &str) -> Vec<Connection> {
        self.db
            .opened
            .store
            .list(&OwnerId::new(owner))
            .await
            .unwrap()
    }

    async fn get(&self, owner: &str, id: &str) -> Connection {
        self.db
            .opened
            .store
            .get(&OwnerId::new(owner), id.parse().unwrap())
            .await
            .unwrap()
    }

    fn connection_dir(&self, id: &str) -> PathBuf {
        web::connection_dir(&self.data_dir, id.parse().unwrap())
    }

    /// What the mirror holds of connection `id`: its state, and its users' count.
    async fn mirrored(&self, id: &str) -> (Option<MirrorState>, u64) {
        let mirror = &self.db.opened.mirror;
        let id: ConnectionId = id.parse().unwrap();
        (
            mirror.state(id).await.unwrap(),
            mirror.count_users(id, &UserQuery::new()).await.unwrap(),
        )
    }
}

impl Drop for App {
    fn drop(&mut self) {
        drop(self.running.take());
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// One response as the browser saw it.
#[derive(Debug)]
struct Page {
    /// The `Cookie` header the request carried.
    sent_cookie: Option<String>,
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    location: Option<String>,
    set_cookie: Vec<String>,
    content_type: String,
    body: String,
    bytes: Vec<u8>,
}

impl Page {
    fn assert_redirect(&self, to: &str) {
        assert_eq!(self.status, StatusCode::SEE_OTHER, "{}", self.body);
        assert_eq!(self.location.as_deref(), Some(to));
    }

    fn location(&self) -> &str {
        self.location.as_deref().expect("a location header")
    }

    fn has_id(&self, id: &str) -> bool {
        self.body.contains(&format!("id=\"{id}\""))
    }

    /// `tr.<class>` rows' `data-…` attribute values, in order.
    fn rows(&self, class: &str, attribute: &str) -> Vec<String> {
        let marker = format!("<tr class=\"{class}\" {attribute}=\"");
        self.body
            .split(&marker)
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap_or_default().to_owned())
            .collect()
    }

    /// The text of the element with this id: its markup with the tags removed.
    fn text_of(&self, id: &str) -> String {
        const VOID: [&str; 4] = ["br", "input", "img", "meta"];
        let start = self
            .body
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("no #{id} in {}", self.body));
        let rest = &self.body[start..];
        let mut rest = &rest[rest.find('>').unwrap() + 1..];
        let mut text = String::new();
        let mut depth = 0_usize;
        while let Some(open) = rest.find('<') {
            text.push_str(&rest[..open]);
            let close = rest[open..].find('>').unwrap() + open;
            let tag = &rest[open + 1..close];
            rest = &rest[close + 1..];
            if tag.starts_with('/') {
                if depth == 0 {
                    break;
                }
                depth -= 1;
            } else if !VOID.iter().any(|v| tag.split(' ').next() == Some(*v)) {
                depth += 1;
            }
        }
        text.replace("&amp;", "&").trim().to_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }
}

/// A browser without redirects: its session cookie (named `cookie_name`) and the CSRF
/// token of the last page.
struct Browser {
    client: reqwest::Client,
    app: String,
    cookie_name: &'static str,
    cookie: Option<String>,
    csrf: Option<String>,
}

impl Browser {
    fn new(app: &str, cookie_name: &'static str) -> Self {
        Self {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            app: app.to_owned(),
            cookie_name,
            cookie: None,
            csrf: None,
        }
    }

    fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.app)
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder, to_app: bool) -> Page {
        let request = match (&self.cookie, to_app) {
            (Some(cookie), true) => {
                request.header(COOKIE, format!("{}={cookie}", self.cookie_name))
            }
            _ => request,
        };
        let request = request.build().expect("a valid request");
        let request_cookie = request
            .headers()
            .get(COOKIE)
            .map(|v| v.to_str().unwrap().to_owned());
        let response = self
            .client
            .execute(request)
            .await
            .expect("the request is answered");
        let status = response.status();
        let headers = response.headers().clone();
        let set_cookie: Vec<String> = headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        for line in &set_cookie {
            if let Some(rest) = line.strip_prefix(&format!("{}=", self.cookie_name)) {
                let value = rest.split(';').next().unwrap_or_default();
                self.cookie = (!value.is_empty()).then(|| value.to_owned());
            }
        }
        let bytes = response.bytes().await.unwrap().to_vec();
        let body = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(csrf) = csrf_of(&body) {
            self.csrf = Some(csrf);
        }
        Page {
            sent_cookie: request_cookie,
            status,
            headers: headers.clone(),
            location: headers
                .get(LOCATION)
                .map(|v| v.to_str().unwrap().to_owned()),
            set_cookie,
            content_type: headers
                .get(reqwest::header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default(),
            body,
            bytes,
        }
    }

    async fn get(&mut self, path_or_url: &str) -> Page {
        let url = self.url(path_or_url);
        let to_app = url.starts_with(&self.app);
        let request = self.client.get(url);
        self.send(request, to_app).await
    }

    /// POSTs exactly these fields (no CSRF token added).
    async fn post_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let request = self.client.post(self.url(path)).form(fields);
        self.send(request, true).await
    }

    /// POSTs these fields and the CSRF token of the last page read.
    async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self
            .csrf
            .clone()
            .expect("a page with a form was read first");
        let mut all = fields.to_vec();
        all.push(("csrf", &csrf));
        self.post_raw(path, &all).await
    }

    async fn sign_in(&mut self, (email, password): (&str, &str)) {
        let page = self.get("/sign-in").await;
        assert_eq!(page.status, StatusCode::OK);
        self.post_form("/sign-in", &[("email", email), ("password", password)])
            .await
            .assert_redirect("/integrations");
        self.get("/integrations").await;
    }

    /// "Create a new connection" named `name`, consent (the simulator's current mode)
    /// and the callback; returns the callback's answer.
    async fn create(&mut self, name: &str) -> Page {
        let page = self.get(&format!("{BASE}/new")).await;
        assert_eq!(page.status, StatusCode::OK);
        let to_entra = self
            .post_form(&format!("{BASE}/new"), &[("name", name)])
            .await;
        assert_eq!(to_entra.status, StatusCode::SEE_OTHER, "{}", to_entra.body);
        let callback = self.entra(to_entra.location()).await;
        self.get(&callback).await
    }

    /// Plays Entra: the authorize URL answers with a redirect back to the app.
    async fn entra(&mut self, authorize: &str) -> String {
        let answer = self.get(authorize).await;
        assert!(
            answer.status.is_redirection(),
            "the simulator redirects back: {} {}",
            answer.status,
            answer.body
        );
        let back = answer.location().to_owned();
        assert!(back.starts_with(&self.app), "{back}");
        back
    }

    /// Creates a connection with the simulator consenting; returns its id.
    async fn connect(&mut self, name: &str) -> String {
        let page = self.create(name).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        let id = page
            .location()
            .strip_prefix(&format!("{BASE}?created="))
            .unwrap_or_else(|| panic!("unexpected redirect {}", page.location()))
            .to_owned();
        self.get(page.location()).await;
        id
    }
}

fn csrf_of(body: &str) -> Option<String> {
    let marker = "name=\"csrf\" value=\"";
    let start = body.find(marker)? + marker.len();
    Some(body[start..].split('"').next()?.to_owned())
}

fn manage(id: &str) -> String {
    format!("{BASE}/connections/{id}")
}

/// Waits for a sync started with "Sync now" to leave `running`; returns its status JSON.
async fn sync_settles(browser: &mut Browser, id: &str) -> serde_json::Value {
    let deadline = Instant::now() + SYNC_TIMEOUT;
    loop {
        let page = browser.get(&format!("{}/sync/status", manage(id))).await;
        assert_eq!(page.status, StatusCode::OK);
        let status = page.json();
        assert!(status["message"].is_string(), "{status}");
        if status["state"] != "running" && status["state"] != "idle" {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the sync did not finish: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Presses "Sync now" on the Manage page and waits for the sync.
async fn sync_now(browser: &mut Browser, id: &str) -> serde_json::Value {
    browser.get(&manage(id)).await;
    browser
        .post_form(&format!("{}/sync", manage(id)), &[])
        .await
        .assert_redirect(&format!("{}?flash=sync", manage(id)));
    sync_settles(browser, id).await
}

/// What a POST could change: each connection's name, status and last sync.
async fn snapshot(app: &App, owner: &str) -> Vec<String> {
    app.list(owner)
        .await
        .iter()
        .map(|c| {
            format!(
                "{} {} {} {:?}",
                c.id,
                c.name.as_str(),
                c.status.kind(),
                c.last_synced_at
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Sign-in to the service and the session cookie
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn home_and_every_page_send_anonymous_visitors_to_sign_in() {
    let sim = sim().await;
    let app = App::start(&sim).await;
    let mut browser = app.browser();
    let id = uuid::Uuid::new_v4();
    browser.get("/").await.assert_redirect("/sign-in");
    for path in [
        "/integrations".to_owned(),
        BASE.to_owned(),
        format!("{BASE}/new"),
        manage(&id.to_string()),
        format!("{}/sync/status", manage(&id.to_string())),
        format!("{}/remove", manage(&id.to_string())),
        format!("{}/employees/u1/photo", manage(&id.to_string())),
    ] {
        browser.get(&path).await.assert_redirect("/sign-in");
    }
    // Without a session cookie the sign-in form is refused as a forged POST.
    let page = browser
        .post_raw("/sign-in", &[("email", ALICE.0), ("password", ALICE.1)])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);

    browser.sign_in(ALICE).await;
    browser.get("/").await.assert_redirect("/integrations");
    let page = browser.get("/integrations").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.has_id("integrate-m365"));
    assert!(page.body.contains(ALICE.0));
    // Signed in, the sign-in page goes on to the integrations.
    browser
        .get("/sign-in")
        .await
        .assert_redirect("/integrations");
    let page = browser.get(BASE).await;
    assert!(page.has_id("no-connections") && page.has_id("create-connection"));
    assert_eq!(browser.get("/nowhere").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_session_cookie_is_http_only_lax_and_a_tampered_one_is_refused() {
    let sim = sim().await;
    let app = App::start(&sim).await;
    let mut browser = app.browser();
    let page = browser.get("/sign-in").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.has_id("sign-in-form") && page.has_id("email") && page.has_id("password"));
    let cookie = page
        .set_cookie
        .iter()
        .find(|c| c.starts_with(&format!("{SESSION_COOKIE}=")))
        .expect("a session cookie");
    let attributes: Vec<&str> = cookie.split(';').map(str::trim).collect();
    assert!(attributes.contains(&"HttpOnly"), "{cookie}");
    assert!(attributes.contains(&"SameSite=Lax"), "{cookie}");
    assert!(attributes.contains(&"Path=/"), "{cookie}");
    assert!(!attributes.contains(&"Secure"), "plain HTTP: {cookie}");
    assert!(
        !attributes.iter().any(|a| a.starts_with("Domain")),
        "{cookie}"
    );

    browser.sign_in(ALICE).await;
    let good = browser.cookie.clone().unwrap();
    // The bare session id of another signed-in session, Bob's, which works with its
    // signature: the cookie value is the signature (44 base64 characters), then the id.
    let mut bob = app.browser();
    bob.sign_in(BOB).await;
    let bobs = bob.cookie.clone().unwrap();
    let bare = bobs[44..].to_owned();

    // Each forged value goes out as this browser's cookie and is refused, while the same
    // request with the real cookie is answered: the refusal is the forgery's.
    let mut forged: Vec<(&str, String)> = [0, 20, 43, 44, good.len() / 2, good.len() - 1]
        .into_iter()
        .map(|at| {
            let mut tampered: Vec<char> = good.chars().collect();
            tampered[at] = if tampered[at] == 'A' { 'B' } else { 'A' };
            ("a changed character", tampered.into_iter().collect())
        })
        .collect();
    forged.push(("the bare session id", bare.clone()));
    forged.push((
        "Bob's id under Alice's signature",
        format!("{}{bare}", &good[..44]),
    ));
    forged.push(("the signature alone", good[..44].to_owned()));
    for (what, value) in forged {
        assert_ne!(value, good, "{what}");
        browser.cookie = Some(value.clone());
        let page = browser.get("/integrations").await;
        assert_eq!(
            page.sent_cookie,
            Some(format!("{SESSION_COOKIE}={value}")),
            "{what}: the forged cookie was sent"
        );
        page.assert_redirect("/sign-in");
        assert!(!page.body.contains(ALICE.0) && !page.body.contains(BOB.0));

        browser.cookie = Some(good.clone());
        let page = browser.get("/integrations").await;
        assert_eq!(page.sent_cookie, Some(format!("{SESSION_COOKIE}={good}")));
        assert_eq!(page.status, StatusCode::OK, "{what}: the real cookie works");
        assert!(page.body.contains(ALICE.0));
    }
    // Bob's own cookie still signs Bob in (his session was live all along).
    let page = bob.get("/integrations").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(BOB.0));
}

#[tokio::test]
async fn sign_in_needs_the_right_password_and_csrf_and_replaces_the_session() {
    let sim = sim().await;
    let app = App::start(&sim).await;
    let mut browser = app.browser();
    browser.get("/sign-in").await;
    let anonymous = browser.cookie.clone().expect("an anonymous session");

    let page = browser
        .post_form("/sign-in", &[("email", ALICE.0), ("password", "bob-demo")])
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.body.contains("class=\"form-error\""), "{}", page.body);
    assert_eq!(browser.cookie.as_deref(), Some(anonymous.as_str()));
    browser
        .get("/integrations")
        .await
        .assert_redirect("/sign-in");

    for csrf in [None, Some("wrong"), Some("")] {
        let mut fields = vec![("email", ALICE.0), ("password", ALICE.1)];
        if let Some(csrf) = csrf {
            fields.push(("csrf", csrf));
        }
        let page = browser.post_raw("/sign-in", &fields).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "csrf {csrf:?}");
        browser
            .get("/integrations")
            .await
            .assert_redirect("/sign-in");
    }

    browser.get("/sign-in").await;
    browser
        .post_form("/sign-in", &[("email", ALICE.0), ("password", ALICE.1)])
        .await
        .assert_redirect("/integrations");
    let signed_in = browser.cookie.clone().unwrap();
    assert_ne!(signed_in[44..], anonymous[44..], "a new session id");
    assert_eq!(browser.get("/integrations").await.status, StatusCode::OK);

    // The anonymous session is gone: its cookie does not sign anyone in.
    let mut old = app.browser();
    old.cookie = Some(anonymous);
    old.get("/integrations").await.assert_redirect("/sign-in");

    // Signing out ends the session.
    browser
        .post_form("/sign-out", &[])
        .await
        .assert_redirect("/sign-in");
    assert!(browser.cookie.is_none(), "the cookie is removed");
    let mut replay = app.browser();
    replay.cookie = Some(signed_in);
    replay
        .get("/integrations")
        .await
        .assert_redirect("/sign-in");
}

/// Five attempts per email, then 429 with `Retry-After` (even with the right password)
/// and the sign-in page saying how long to wait; other emails are not held back.
#[tokio::test]
async fn sign_in_attempts_beyond_the_limit_are_refused_with_429_and_retry_after() {
    let sim = sim().await;
    let app = App::start(&sim).await;
    let mut browser = app.browser();
    browser.get("/sign-in").await;
    for _ in 0..ATTEMPTS_PER_EMAIL {
        let page = browser
            .post_form("/sign-in", &[("email", ALICE.0), ("password", "guess")])
            .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    }
    for password in ["guess", ALICE.1] {
        let page = browser
            .post_form(
                "/sign-in",
                &[("email", "ALICE@example.com"), ("password", password)],
            )
            .await;
        assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.body);
        let retry_after: u64 = page
            .headers
            .get("retry-after")
            .expect("a Retry-After header")
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=12).contains(&retry_after), "{retry_after}");
        assert!(
            page.body.contains("Too many sign-in attempts")
                && page.body.contains(&format!("Wait {retry_after} seconds")),
            "{}",
            page.body
        );
        assert!(page.has_id("sign-in-form"), "the form is shown again");
        assert!(page.location.is_none(), "not signed in");
    }
    browser
        .get("/integrations")
        .await
        .assert_redirect("/sign-in");
    // Bob, from the same address, signs in.
    browser.sign_in(BOB).await;
    let page = browser.get("/integrations").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(BOB.0));
}

// ---------------------------------------------------------------------------------------
// CSRF
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn every_post_route_refuses_a_missing_or_wrong_csrf_token() {
    let sim = sim().await;
    let app = App::start(&sim).await;
    let mut browser = app.browser();
    browser.sign_in(ALICE).await;
    let id = browser.connect("Germany").await;
    let before = snapshot(&app, ALICE.0).await;
    let dir = app.connection_dir(&id);

    let m = manage(&id);
    let posts: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/sign-out".to_owned(), vec![]),
        (format!("{BASE}/new"), vec![("name", "France")]),
        (format!("{m}/rename"), vec![("name", "Renamed")]),
        (format!("{m}/sync"), vec![]),
        (format!("{m}/scope"), vec![("mode", "all")]),
        (format!("{m}/reconnect"), vec![]),
        (format!("{m}/remove"), vec![]),
    ];
    let other = app.browser().get("/sign-in").await;
    let someone_elses = csrf_of(&other.body).unwrap();
    for (path, fields) in &posts {
        for csrf in [None, Some("wrong"), Some(""), Some(someone_elses.as_str())] {
            let mut fields = fields.clone();
            if let Some(csrf) = csrf {
                fields.push(("csrf", csrf));
            }
            let page = browser.post_raw(path, &fields).await;
            assert_eq!(
                page.status,
                StatusCode::FORBIDDEN,
                "{path} with csrf {csrf:?}"
            );
            assert!(page.location.is_none());
        }
    }
    assert_eq!(snapshot(&app, ALICE.0).await, before, "nothing changed");
    assert_eq!(app.state_job(&id), "idle", "no sync started");
    assert!(!dir.join("scope.json").exists(), "no scope saved");
    // Still signed in (sign-out was refused), and the same token works.
    assert_eq!(browser.get("/integrations").await.status, StatusCode::OK);
}

impl App {
    fn state_job(&self, id: &str) -> &'static str {
        self.running
            .as_ref()
            .unwrap()
            .state()
            .jobs()
            .state(id.parse().unwrap())
            .name()
    }
}

// ---------------------------------------------------------------------------------------
// Create a new connection and the callback
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn create_refuses_invalid_and_taken_names() {
    let sim = sim().await;
    let app = App::start(&sim).await;
    let mut browser = app.browser();
    browser.sign_in(ALICE).await;
    let page = browser.get(&format!("{BASE}/new")).await;
    assert!(page.has_id("new-connection") && page.has_id("name") && page.has_id("connect"));
    assert!(!page.has_id("name-error"));

    let long = "x".repeat(MAX_NAME_CHARS + 1);
    let very_long = "x".repeat(201);
    for name in ["", "   ", &long, &very_long, "bad\u{7}name", "tab\tname"] {
        let page = browser
            .post_form(&format!("{BASE}/new"), &[("name", name)])
            .await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{name:?}");
        assert!(page.has_id("name-error"), "{name:?}");
        let limit = format!("1 to {MAX_NAME_CHARS}");
        assert!(page.text_of("name-error").contains(&limit), "{name:?}");
    }
    assert!(app.list(ALICE.0).await.is_empty());
    // The longest name is fine (on to Microsoft).
    let longest = "x".repeat(MAX_NAME_CHARS);
    let page = browser
        .post_form(&format!("{BASE}/new"), &[("name", &longest)])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);

    browser.connect("Germany").await;
    for taken in ["Germany", "GERMANY", " germany "] {
        let page = browser
            .post_form(&format!("{BASE}/new"), &[("name", taken)])
            .await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{taken:?}");
        assert!(
            page.text_of("name-error").contains("already have"),
            "{taken:?}"
        );
    }
    // Bob may use the name: names are per customer.
    let mut bob = app.browser();
    bob.sign_in(BOB).await;
    bob.get(&format!("{BASE}/new")).await;
    let page = bob
        .post_form(&format!("{BASE}/new"), &[("name", "Germany")])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(app.list(ALICE.0).await.len(), 1);
}

#[tokio::test]
async fn the_name_inputs_allow_what_the_store_allows() {
    let sim = sim().await;
    let app = App::start(&sim).await;
    let mut browser = app.browser();
    browser.sign_in(ALICE).await;
    let id = browser.connect("Germany").await;
    let maxlength = format!("maxlength=\"{MAX_NAME_CHARS}\"");
    let page = browser.get(&format!("{BASE}/new")).await;
    assert!(page.body.contains(&maxlength), "the new connection's name");
    let page = browser.get(&manage(&id)).await;
    assert!(page.body.contains(&maxlength), "the rename field");
}

#[tokio::test]
async fn create_signs_in_with_entra_and_the_callback_stores_the_connection() {
    let sim = sim().await;
    let app = App::start(&sim).await;
    let mut browser = app.browser();
    browser.sign_in(ALICE).await;
    browser.get(&format!("{BASE}/new")).await;
    let to_entra = browser
        .post_form(&format!("{BASE}/new"), &[("name", "Germany")])
        .await;
    assert_eq!(to_entra.status, StatusCode::SEE_OTHER);
    let authorize = Url::parse(to_entra.location()).unwrap();
    let login = Url::parse(sim.login_base()).unwrap();
    assert_eq!(authorize.host_str(), login.host_str());
    assert_eq!(authorize.port(), login.port());
    assert_eq!(authorize.path(), "/organizations/oauth2/v2.0/authorize");
    let query: std::collections::HashMap<String, String> =
        authorize.query_pairs().into_owned().collect();
    assert_eq!(query["client_id"], sim.client_id());
    assert_eq!(
        query["redirect_uri"],
        format!("{}{}", app.url, web::CALLBACK_PATH)
    );
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["code_challenge_method"], "S256");
    assert!(query["code_challenge"].len() >= 43);
    assert!(query["state"].len() >= 16);
    assert!(
        query["scope"].contains("offline_access"),
        "{}",
        query["scope"]
    );
    assert_eq!(query["prompt"], "select_account");
    assert!(
        app.list(ALICE.0).await.is_empty(),
        "nothing stored before consent"
    );

    let callback = browser.entra(authorize.as_str()).await;
    let callback_url = Url::parse(&callback).unwrap();
    assert_eq!(callback_url.path(), web::CALLBACK_PATH);
    let back = browser.get(&callback).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
    let id = back
        .location()
        .strip_prefix(&format!("{BASE}?created="))
        .expect("back to the list")
        .to_owned();

    let stored = app.get(ALICE.0, &id).await;
    assert_eq!(stored.name.as_str(), "Germany");
    assert_eq!(stored.tenant.as_str(), sim.tenant_id().to_lowercase());
    assert_eq!(stored.admin.username, sim.admin_upn());
    assert!(matches!(stored.status, ConnectionStatus::Active));
    assert!(stored.last_synced_at.is_none());
    assert!(app.list(BOB.0).await.is_empty());

    let list = browser.get(back.location()).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.has_id("flash") && list.text_of("flash").contains("Germany"));
    assert_eq!(
        list.rows("connection", "data-connection-id"),
        vec![id.clone()]
    );
    assert!(list.body.contains(&format!(
        "<td class=\"tenant\"><code>{}</code>",
        stored.tenant.as_str()
    )));
    assert!(
        list.body
            .contains(&format!("<td class=\"admin\">{}</td>", sim.admin_upn()))
    );
    assert!(
        list.body
            .contains("<span class=\"status-active\">active</span>")
    );
    assert!(list.body.contains(&format!("href=\"{}\"", manage(&id))));

    let page = browser.get(&manage(&id)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<h1>Germany</h1>"));
    assert!(page.has_id("sync-now") && page.has_id("scope") && page.has_id("rename"));
    assert!(!page.has_id("reconnect"), "active: no reconnect form");
    assert!(page.body.contains("data-state=\"idle\""));
}

#[tokio::test]
async fn a_replayed_callback_or_one_from_another_browser_is_refused() {
    let sim = sim().await;
    let app = App::start(&sim).await;
    let mut browser = app.browser();
    browser.sign_in(ALICE).await;

    // Replay: the same answer again after it made the connection.
    browser.get(&format!("{BASE}/new")).await;
    let to_entra = browser
        .post_form(&format!("{BASE}/new"), &[("name", "Germany")])
        .await;
    let callback = browser.entra(to_entra.location()).await;
    let first = browser.get(&callback).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    let replay = browser.get(&callback).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert!(replay.body.contains("does not match"), "{}", replay.body);
    assert!(replay.has_id("sign-in-error"));
    assert_eq!(app.list(ALICE.0).await.len(), 1);

    // Another browser session (bob's, and alice's own second browser) brings the answer
    // to a sign-in the first browser started.
    browser.get(&format!("{BASE}/new")).await;
    let to_entra = browser
        .post_form(&format!("{BASE}/new"), &[("name", "France")])
        .await;
    let callback = browser.entra(to_entra.location()).await;
    let mut bob = app.browser();
    bob.sign_in(BOB).await;
    let mut alice_elsewhere = app.browser();
    alice_elsewhere.sign_in(ALICE).await;
    let mut anonymous = app.browser();
    for other in [&mut bob, &mut alice_elsewhere, &mut anonymous] {
        let page = other.get(&callback).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST);
        assert!(page.body.contains("does not match"), "{}", page.body);
    }
    assert_eq!(app.list(ALICE.0).await.len(), 1, "no connection made");
    assert!(app.list(BOB.0).await.is_empty());
    // A forged state in the right browser is refused the same way.
    let forged = callback.replace("state=", "state=x");
    assert_eq!(browser.get(&forged).await.status, StatusCode::BAD_REQUEST);
    // A callback without code or state is not a sign-in answer.
    let page = browser.get(web::CALLBACK_PATH).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.list(ALICE.0).await.len(), 1);
}

#[tokio::test]
async fn declined_consent_admin_approval_and_a_missing_scope_explain_and_store_nothing() {
    let sim = sim().await;
    let app = App::start(&sim).await;
    let mut browser = app.browser();
    browser.sign_in(ALICE).await;

    sim.control().set_consent_mode(ConsentMode::UserDeclines);
    let page = browser.create("Germany").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("were not accepted"), "{}", page.body);
    // The person may not be an admin: the link for the IT admin is offered too.
    assert!(page.has_id("sign-in-error") && page.has_id("admin-consent-link"));

    sim.control()
        .set_consent_mode(ConsentMode::AdminApprovalRequired);
    let page = browser.create("Germany").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(
        page.body.contains("An administrator has to approve"),
        "{}",
        page.body
    );
    let link_start = page.body.find("id=\"admin-consent-link\" href=\"").unwrap() + 30;
    let link = page.body[link_start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let link = Url::parse(&link).unwrap();
    let login = Url::parse(sim.login_base()).unwrap();
    assert_eq!(link.host_str(), login.host_str());
    assert_eq!(link.port(), login.port());
    assert!(link.path().ends_with("/v2.0/adminconsent"), "{link}");
    assert!(
        link.query_pairs()
            .any(|(k, v)| k == "client_id" && v == sim.client_id())
    );

    sim.control().set_consent_mode(ConsentMode::MissingOneScope);
    let page = browser.create("Germany").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(
        page.body.contains("Some permissions were not granted"),
        "{}",
        page.body
    );
    assert!(page.text_of("sign-in-error").contains("missing:"));
    assert!(
        page.has_id("admin-consent-link"),
        "an admin approves the rest"
    );
    assert!(app.list(ALICE.0).await.is_empty(), "no connection stored");

    // Consent works again: the same name is free.
    sim.control().set_consent_mode(ConsentMode::AutoConsent);
    browser.connect("Germany").await;
    assert_eq!(app.list(ALICE.0).await.len(), 1);
}

#[tokio::test]
async fn a_sign_in_by_someone_who_is_no_administrator_is_refused_with_the_link_and_stores_nothing()
{
    let sim = sim().await;
    let app = App::start(&sim).await;
    let mut browser = app.browser();
    browser.sign_in(ALICE).await;
    // The admin has consented for the tenant (a first connection), then loses the role:
    // Entra still signs them in and grants the scopes, but they may not connect it.
    let first = browser.connect("Germany").await;
    sim.control()
        .remove_role(
            sim.admin_upn(),
            tenant_sim::DirectoryRole::GlobalAdministrator,
        )
        .unwrap();
    browser
        .post_form(&format!("{}/remove", manage(&first)), &[])
        .await
        .assert_redirect(&format!("{BASE}?removed=1"));

    let page = browser.create("Germany").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert!(
        page.body.contains("Only an administrator can connect"),
        "{}",
        page.body
    );
    assert!(page.has_id("admin-consent-link"), "{}", page.body);
    assert!(app.list(ALICE.0).await.is_empty(), "no connection stored");

    // An Application Administrator may consent to delegated permissions: admitted.
    sim.control()
        .assign_role(
            sim.admin_upn(),
            tenant_sim::DirectoryRole::ApplicationAdministrator,
        )
        .unwrap();
    browser.connect("Germany").await;
    assert_eq!(app.list(ALICE.0).await.len(), 1);
}

/// A service that turns the administrator check off (`Config::allow_non_admin`, `web
/// --allow-non-admin`) links a tenant for someone without an admin role.
#[tokio::test]
async fn with_the_admin_check_off_a_sign_in_without_an_admin_role_connects() {
    let sim = sim().await;
    let app = App::start_configured(&sim, Db::new().await, |config| {
        config.allow_non_admin = true;
    })
    .await;
    let mut browser = app.browser();
    browser.sign_in(ALICE).await;
    // The first connection gives the tenant-wide consent; then the role goes.
    let first = browser.connect("Germany").await;
    sim.control()
        .remove_role(
            sim.admin_upn(),
            tenant_sim::DirectoryRole::GlobalAdministrator,
        )
        .unwrap();
    assert!(
        sim.control()
            .user_roles(sim.admin_upn())
            .unwrap()
            .is_empty()
    );
    browser
        .post_form(&format!("{}/remove", manage(&first)), &[])
        .await
        .assert_redirect(&format!("{BASE}?removed=1"));

    browser.connect("Germany").await;
    let linked = app.list(ALICE.0).await;
    assert_eq!(linked.len(), 1, "linked without an admin role");
    assert_eq!(linked[0].admin.username, sim.admin_upn());
}

#[tokio::test]
async fn the_same_tenant_twice_is_already_linked_and_an_admin_consent_return_is_thanked() {
    let sim = sim().await;
    let app = App::start(&sim).await;
    let mut browser = app.browser();
    browser.sign_in(ALICE).await;
    browser.connect("Germany").await;
    let page = browser.create("Germany again").await;
    assert_eq!(page.status, StatusCode::CONFLICT);
    assert!(page.body.contains("Already linked"), "{}", page.body);
    assert!(page.text_of("sign-in-error").contains("Germany"));
    assert_eq!(app.list(ALICE.0).await.len(), 1);

    // An IT admin who approved through a forwarded link comes back without a state,
    // signed in or not.
    let tenant = sim.tenant_id();
    for mut visitor in [app.browser(), browser] {
        let page = visitor
            .get(&format!(
                "{}?admin_consent=True&tenant={tenant}&scope=https%3A%2F%2Fgraph.microsoft.com%2FUser.Read.All",
                web::CALLBACK_PATH
            ))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("Permissions approved"), "{}", page.body);
        assert!(page.has_id("admin-consent-result"));
        let page = visitor
            .get(&format!(
                "{}?admin_consent=True&tenant={tenant}&error=access_denied&error_description=AADSTS65004",
                web::CALLBACK_PATH
            ))
            .await;
        assert!(
            page.body.contains("Permissions not approved"),
            "{}",
            page.body
        );
    }
    assert_eq!(app.list(ALICE.0).await.len(), 1);
}

// ---------------------------------------------------------------------------------------
// Manage
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn another_customers_connection_and_malformed_ids_are_not_found_everywhere() {
    let sim = sim().await;
    let app = App::start(&sim).await;
    let mut alice = app.browser();
    alice.sign_in(ALICE).await;
    let id = alice.connect("Germany").await;
    sync_now(&mut alice, &id).await;
    let user = sim
        .control()
        .users()
        .into_iter()
        .find(|u| u.has_photo && u.account_enabled && u.user_type == UserType::Member)
        .unwrap();
    let photo = format!("{}/employees/{}/photo", manage(&id), user.id);
    assert_eq!(alice.get(&photo).await.status, StatusCode::OK);
    let before = snapshot(&app, ALICE.0).await;

    let mut bob = app.browser();
    bob.sign_in(BOB).await;
    bob.get(BASE).await;
    for target in [
        id.as_str(),
        "not-a-uuid",
        "..",
        &uuid::Uuid::new_v4().to_string(),
    ] {
        let m = manage(target);
        for path in [
            m.clone(),
            format!("{m}/sync/status"),
            format!("{m}/remove"),
            format!("{m}/employees/{}/photo", user.id),
        ] {
            let page = bob.get(&path).await;
            assert_eq!(page.status, StatusCode::NOT_FOUND, "GET {path}");
            // Bob is still signed in on the error page: his header, not alice's data.
            assert!(
                page.has_id("sign-out") && page.body.contains("bob@example.com"),
                "GET {path}"
            );
            assert!(!page.body.contains("Germany"), "{path}");
        }
        for (path, fields) in [
            (format!("{m}/rename"), vec![("name", "Mine")]),
            (format!("{m}/sync"), vec![]),
            (format!("{m}/scope"), vec![("mode", "all")]),
            (format!("{m}/reconnect"), vec![]),
            (format!("{m}/remove"), vec![]),
        ] {
            let page = bob.post_form(&path, &fields).await;
            assert_eq!(page.status, StatusCode::NOT_FOUND, "POST {path}");
        }
    }
    assert_eq!(snapshot(&app, ALICE.0).await, before, "nothing changed");
    assert!(app.list(BOB.0).await.is_empty());
    assert!(!app.connection_dir(&id).join("scope.json").exists());
    // Bob's list does not show it; alice still has it.
    assert!(bob.get(BASE).await.has_id("no-connections"));
    assert_eq!(alice.get(&manage(&id)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn rename_checks_the_name_and_renames() {
    let sim = sim().await;
    let app = App::start(&sim).await;
    let mut browser = app.browser();
    browser.sign_in(ALICE).await;
    let id = browser.connect("Germany").await;
    let mut bob = app.browser();
    bob.sign_in(BOB).await;
    // Another owner's connection to the same tenant is allowed (one tenant per owner).
    bob.connect("France").await;

    browser.get(&manage(&id)).await;
    let rename = format!("{}/rename", manage(&id));
    browser
        .post_form(&rename, &[("name", "  Deutschland ")])
        .await
        .assert_redirect(&format!("{}?flash=renamed", manage(&id)));
    assert_eq!(app.get(ALICE.0, &id).await.name.as_str(), "Deutschland");
    let page = browser.get(&format!("{}?flash=renamed", manage(&id))).await;
    assert!(page.body.contains("<h1>Deutschland</h1>") && page.has_id("flash"));
    // Its own name in another case is fine.
    browser
        .post_form(&rename, &[("name", "DEUTSCHLAND")])
        .await
        .assert_redirect(&format!("{}?flash=renamed", manage(&id)));

    let page = browser.post_form(&rename, &[("name", "")]).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.has_id("rename-error"));
    let long = "y".repeat(MAX_NAME_CHARS + 1);
    let page = browser.post_form(&rename, &[("name", &long)]).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Bob's name is not taken for alice.
    browser
        .post_form(&rename, &[("name", "France")])
        .await
        .assert_redirect(&format!("{}?flash=renamed", manage(&id)));
    assert_eq!(app.get(ALICE.0, &id).await.name.as_str(), "France");
}

#[tokio::test]
async fn rename_to_another_connections_name_is_refused() {
    let sim = sim().await;
    let second = TenantSim::builder()
        .users(3)
        .groups(1)
        .seed(8)
        .start()
        .await
        .unwrap();
    let app = App::start(&sim).await;
    let mut browser = app.browser();
    browser.sign_in(ALICE).await;
    let germany = browser.connect("Germany").await;
    // A second tenant for alice, linked through an app signing in to the second
    // simulator over the same store.
    let other = App::start_with(&second, app.db.clone()).await;
    let mut via_second = other.browser();
    via_second.sign_in(ALICE).await;
    let france = via_second.connect("France").await;
    assert_eq!(app.list(ALICE.0).await.len(), 2);

    browser.get(&manage(&germany)).await;
    for taken in ["France", "fRANCE"] {
        let page = browser
            .post_form(&format!("{}/rename", manage(&germany)), &[("name", taken)])
            .await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{taken}");
        assert!(page.text_of("rename-error").contains("already have"));
    }
    assert_eq!(app.get(ALICE.0, &germany).await.name.as_str(), "Germany");
    assert_eq!(app.get(ALICE.0, &france).await.name.as_str(), "France");
}

#[tokio::test]
async fn sync_now_imports_the_employees_search_scope_and_photos() {
    let sim = sim().await;
    let app = App::start(&sim).await;
    let mut browser = app.browser();
    browser.sign_in(ALICE).await;
    let id = browser.connect("Germany").await;

    let status = sync_now(&mut browser, &id).await;
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(status["kind"], "full", "{status}");
    assert_eq!(app.state_job(&id), "done");
    assert!(app.get(ALICE.0, &id).await.last_synced_at.is_some());
    // The sync went into the mirror, every user of the tenant, and wrote no files.
    let (state, users) = app.mirrored(&id).await;
    let state = state.expect("the mirror has the connection");
    assert_eq!(state.commits, 1);
    assert_eq!(users, sim.control().users().len() as u64);
    assert_eq!(status["users"], users);
    assert!(
        !app.connection_dir(&id).exists(),
        "a sync writes no data folder"
    );

    // The default scope: enabled members only.
    let users = sim.control().users();
    let expected: Vec<&tenant_sim::UserSummary> = users
        .iter()
        .filter(|u| u.account_enabled && u.user_type == UserType::Member)
        .collect();
    let page = browser.get(&manage(&id)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("data-state=\"done\""));
    assert_eq!(
        page.text_of("employees-count"),
        format!("{} employees", expected.len())
    );
    let mut rows = page.rows("employee", "data-user-id");
    rows.sort();
    let mut want: Vec<String> = expected.iter().map(|u| u.id.clone()).collect();
    want.sort();
    assert_eq!(rows, want);
    assert_ne!(app.get(ALICE.0, &id).await.last_synced_at, None);
    let list = browser.get(BASE).await;
    assert!(
        list.body
            .contains(&format!("<td class=\"users\">{}</td>", expected.len()))
    );

    // Search narrows to the matching employee.
    let someone = expected[0];
    let q: String = url::form_urlencoded::byte_serialize(someone.display_name.as_bytes()).collect();
    let page = browser.get(&format!("{}?q={q}", manage(&id))).await;
    assert!(page.rows("employee", "data-user-id").contains(&someone.id));
    assert!(page.rows("employee", "data-user-id").len() < expected.len());
    assert!(page.text_of("employees-count").contains("matching"));
    let page = browser
        .get(&format!("{}?q=zz-nobody-has-this-zz", manage(&id)))
        .await;
    assert!(page.rows("employee", "data-user-id").is_empty());
    assert_eq!(page.text_of("employees-count"), "0 employees matching");

    // Photos: an imported user with one, an imported user without, a user not imported.
    let with_photo = expected
        .iter()
        .find(|u| u.has_photo)
        .expect("a member with a photo");
    let photo = |user: &str| format!("{}/employees/{user}/photo", manage(&id));
    let page = browser.get(&photo(&with_photo.id)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.content_type, "image/png");
    assert!(page.bytes.starts_with(b"\x89PNG"));
    // One without a photo gets a placeholder with initials.
    if let Some(without) = expected.iter().find(|u| !u.has_photo) {
        let page = browser.get(&photo(&without.id)).await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(page.content_type, "image/svg+xml");
        assert!(page.body.starts_with("<svg"), "{}", page.body);
    }
    if let Some(outside) = users
        .iter()
        .find(|u| !u.account_enabled || u.user_type != UserType::Member)
    {
        assert_eq!(
            browser.get(&photo(&outside.id)).await.status,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        browser.get(&photo("no-such-user")).await.status,
        StatusCode::NOT_FOUND
    );

    scope_narrows_the_employees(&sim, &app, &mut browser, &id, &want).await;

    // A second "Sync now" is a delta.
    let status = sync_now(&mut browser, &id).await;
    assert_eq!(status["state"], "done");
    assert_eq!(status["kind"], "delta", "{status}");
}

/// A sync that fails inside the app (here the mirror's database refuses every write with
/// an error naming a server path) shows the customer a fixed sentence with a support
/// reference, on the page and in the status JSON, and none of the error's text.
#[tokio::test]
async fn a_failed_sync_shows_a_fixed_sentence_with_a_reference_and_no_internals() {
    let sim = sim().await;
    let app = App::start(&sim).await;
    let mut browser = app.browser();
    browser.sign_in(ALICE).await;
    let id = browser.connect("Germany").await;
    let SqlPool::Sqlite(pool) = app.db.opened.sql.pool() else {
        unreachable!("the test's store is SQLite");
    };
    let path = app
        .db
        .dir
        .join("mirror-volume")
        .join("store.sqlite-journal");
    let path = path.display().to_string();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'mirror_%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(!tables.is_empty());
    for table in &tables {
        sqlx::query(&format!(
            "CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} \
             BEGIN SELECT RAISE(ABORT, 'disk I/O error writing {path}'); END"
        ))
        .execute(&pool)
        .await
        .unwrap();
    }

    let status = sync_now(&mut browser, &id).await;
    assert_eq!(status["state"], "failed", "{status}");
    let reference = status["reference"].as_str().expect("a support reference");
    assert!(
        reference.len() == 12 && reference.chars().all(|c| c.is_ascii_hexdigit()),
        "{reference}"
    );
    assert_eq!(
        status["message"],
        format!(
            "Failed: The import failed. Try again later; if it keeps failing, contact support \
             with reference {reference}."
        )
    );
    let page = browser.get(&manage(&id)).await;
    assert_eq!(page.status, StatusCode::OK);
    let shown = page.text_of("sync-progress");
    assert_eq!(shown, status["message"].as_str().unwrap());
    for shown in [status.to_string(), page.body.clone()] {
        for internal in [
            path.as_str(),
            "disk I/O",
            "mirror_",
            "database",
            "sqlite",
            "127.0.0.1",
        ] {
            assert!(!shown.contains(internal), "{internal} shown: {shown}");
        }
    }
    // Another failure, another reference.
    let again = sync_now(&mut browser, &id).await;
    assert_eq!(again["state"], "failed");
    assert_ne!(again["reference"], reference);
}

#[tokio::test]
async fn a_damaged_scope_shows_a_fixed_sentence_with_a_reference_and_no_path() {
    let sim = sim().await;
    let app = App::start(&sim).await;
    let mut browser = app.browser();
    browser.sign_in(ALICE).await;
    let id = browser.connect("Germany").await;
    let dir = app.connection_dir(&id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("scope.json"), b"{ not json").unwrap();

    let page = browser.get(&manage(&id)).await;
    assert_eq!(
        page.status,
        StatusCode::OK,
        "a damaged scope never fails the page"
    );
    let sentence = "The sync scope could not be read; the default one applies (reference ";
    let at = page.body.find(sentence).expect("the fixed sentence");
    let reference: String = page.body[at + sentence.len()..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    assert_eq!(reference.len(), 12, "{}", page.body);
    assert!(
        !page.body.contains("scope.json") && !page.body.contains(&*dir.to_string_lossy()),
        "no server path on the page: {}",
        page.body
    );
}

#[tokio::test]
async fn remove_asks_then_deletes_the_connection_its_mirror_and_its_files() {
    let sim = sim().await;
    let app = App::start(&sim).await;
    let mut browser = app.browser();
    browser.sign_in(ALICE).await;
    let id = browser.connect("Germany").await;
    sync_now(&mut browser, &id).await;
    browser.get(&manage(&id)).await;
    browser
        .post_form(
            &format!("{}/scope", manage(&id)),
            &[("mode", "all"), ("skip_guests", "on")],
        )
        .await
        .assert_redirect(&format!("{}?flash=scope", manage(&id)));
    let dir = app.connection_dir(&id);
    assert!(
        dir.join("scope.json").is_file(),
        "the scope is in {}",
        dir.display()
    );
    let (state, users) = app.mirrored(&id).await;
    assert!(state.is_some() && users > 0, "the mirror has the tenant");

    let page = browser.get(&manage(&id)).await;
    assert!(
        page.body
            .contains(&format!("href=\"{}/remove\"", manage(&id)))
    );
    let page = browser.get(&format!("{}/remove", manage(&id))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.has_id("confirm-remove") && page.has_id("confirm-remove-submit"));
    assert!(page.body.contains("Germany"));
    assert_eq!(app.list(ALICE.0).await.len(), 1, "GET changes nothing");

    browser
        .post_form(&format!("{}/remove", manage(&id)), &[])
        .await
        .assert_redirect(&format!("{BASE}?removed=1"));
    assert!(app.list(ALICE.0).await.is_empty());
    assert!(!dir.exists(), "its data folder is gone");
    assert_eq!(app.mirrored(&id).await, (None, 0), "its mirror is gone");
    let groups = app.db.opened.mirror.groups_page(id.parse().unwrap(), 0, 10);
    assert!(groups.await.unwrap().is_empty());
    let page = browser.get(&format!("{BASE}?removed=1")).await;
    assert!(page.has_id("flash") && page.has_id("no-connections"));
    assert_eq!(
        browser.get(&manage(&id)).await.status,
        StatusCode::NOT_FOUND
    );
    let page = browser
        .post_form(&format!("{}/remove", manage(&id)), &[])
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "removing twice");
    // The tenant can be linked again.
    browser.connect("Germany").await;
}

#[tokio::test]
async fn a_revoked_grant_needs_a_reconnect_and_reconnecting_resumes_the_sync() {
    let sim = sim().await;
    let app = App::start(&sim).await;
    let mut browser = app.browser();
    browser.sign_in(ALICE).await;
    let id = browser.connect("Germany").await;
    assert_eq!(sync_now(&mut browser, &id).await["state"], "done");

    assert!(sim.control().revoke_user_grants(sim.admin_upn()).unwrap() > 0);
    let status = sync_now(&mut browser, &id).await;
    assert_eq!(status["state"], "needs-reconnect", "{status}");
    assert!(matches!(
        app.get(ALICE.0, &id).await.status,
        ConnectionStatus::NeedsReconnect { .. }
    ));
    let page = browser.get(&manage(&id)).await;
    assert!(page.has_id("reconnect") && page.has_id("reconnect-submit"));
    assert!(page.text_of("status").contains("reconnect needed"));
    let list = browser.get(BASE).await;
    assert!(list.body.contains("reconnect needed"));

    browser.get(&manage(&id)).await;
    let to_entra = browser
        .post_form(&format!("{}/reconnect", manage(&id)), &[])
        .await;
    assert_eq!(to_entra.status, StatusCode::SEE_OTHER);
    let authorize = Url::parse(to_entra.location()).unwrap();
    let tenant = app.get(ALICE.0, &id).await.tenant.as_str().to_owned();
    assert_eq!(authorize.path(), format!("/{tenant}/oauth2/v2.0/authorize"));
    let query: std::collections::HashMap<String, String> =
        authorize.query_pairs().into_owned().collect();
    assert_eq!(query["login_hint"], sim.admin_upn());
    assert_eq!(query["code_challenge_method"], "S256");

    let callback = browser.entra(authorize.as_str()).await;
    browser
        .get(&callback)
        .await
        .assert_redirect(&format!("{}?flash=reconnected", manage(&id)));
    assert!(matches!(
        app.get(ALICE.0, &id).await.status,
        ConnectionStatus::Active
    ));
    let page = browser
        .get(&format!("{}?flash=reconnected", manage(&id)))
        .await;
    assert!(!page.has_id("reconnect"));
    assert!(page.text_of("flash").contains("Reconnected"));
    // The last sync's "reconnect needed" is gone with the reconnect.
    assert!(
        page.body
            .contains("id=\"sync-progress\" data-state=\"idle\""),
        "{}",
        page.body
    );
    assert_eq!(sync_now(&mut browser, &id).await["state"], "done");
    assert_eq!(
        app.list(ALICE.0).await.len(),
        1,
        "the same connection, not a new one"
    );
}

/// Scope: groups mode needs a known group; a chosen group narrows the employees to a
/// strict subset, exactly its enabled members, those of the groups nested in it
/// included (scope.rs: "members (through nested groups too)"); "all" brings everyone
/// back. The groups are made for the test so their members are known by construction:
/// "Leads" holds one employee and the group "Team", which holds two more and a disabled
/// account.
#[expect(
    clippy::too_many_lines,
    reason = "one scenario: the groups, the sync, and each scope in turn"
)]
async fn scope_narrows_the_employees(
    sim: &TenantSim,
    app: &App,
    browser: &mut Browser,
    id: &str,
    want: &[String],
) {
    browser.get(&manage(id)).await;
    let scope = format!("{}/scope", manage(id));
    let page = browser.post_form(&scope, &[("mode", "groups")]).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.has_id("scope-error"));
    let page = browser
        .post_form(&scope, &[("mode", "groups"), ("group", "not-a-group")])
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.has_id("scope-error"));

    assert!(
        want.len() > 4,
        "enough employees for a strict subset: {want:?}"
    );
    let (direct, nested) = (&want[0], [&want[1], &want[2]]);
    let control = sim.control();
    let disabled = control
        .add_user(
            &UserFields::new()
                .display_name("Dora Disabled")
                .account_enabled(false),
        )
        .unwrap();
    let leads = control
        .add_group(GroupFields::new().display_name("Leads"))
        .unwrap();
    let team = control
        .add_group(GroupFields::new().display_name("Team"))
        .unwrap();
    for (group, member) in [
        (&leads.id, direct),
        (&leads.id, &team.id),
        (&team.id, nested[0]),
        (&team.id, nested[1]),
        (&team.id, &disabled.id),
    ] {
        assert!(control.add_member(group, member).unwrap());
    }
    let status = sync_now(browser, id).await;
    assert_eq!(status["state"], "done", "{status}");

    // The employees a scope shows: every row, sorted, and the count above them.
    let choose = async |browser: &mut Browser, groups: &[&str], skip_disabled: bool| {
        browser.get(&manage(id)).await;
        let mut fields = vec![("mode", "groups"), ("skip_guests", "on")];
        fields.extend(groups.iter().map(|group| ("group", *group)));
        if skip_disabled {
            fields.push(("skip_disabled", "on"));
        }
        browser
            .post_form(&scope, &fields)
            .await
            .assert_redirect(&format!("{}?flash=scope", manage(id)));
        let page = browser.get(&format!("{}?flash=scope", manage(id))).await;
        for group in groups {
            assert!(
                page.body.contains(&format!("value=\"{group}\" checked")),
                "{group} is ticked"
            );
        }
        let mut rows = page.rows("employee", "data-user-id");
        rows.sort();
        let count = page.text_of("employees-count");
        let noun = if rows.len() == 1 {
            "employee"
        } else {
            "employees"
        };
        assert_eq!(count, format!("{} {noun}", rows.len()), "{rows:?}");
        rows
    };
    let sorted = |ids: &[&String]| {
        let mut ids: Vec<String> = ids.iter().map(|id| (*id).clone()).collect();
        ids.sort();
        ids
    };

    let scoped = choose(browser, &[&leads.id], true).await;
    assert!(app.connection_dir(id).join("scope.json").exists());
    assert_eq!(
        scoped,
        sorted(&[direct, nested[0], nested[1]]),
        "Leads: its member and Team's enabled members"
    );
    assert!(scoped.len() < want.len() && scoped.iter().all(|u| want.contains(u)));
    assert_eq!(
        choose(browser, &[&team.id], true).await,
        sorted(&[nested[0], nested[1]]),
        "Team alone: not the member of the group around it"
    );
    assert_eq!(
        choose(browser, &[&leads.id, &team.id], true).await,
        sorted(&[direct, nested[0], nested[1]]),
        "a member of both counts once"
    );
    assert_eq!(
        choose(browser, &[&leads.id], false).await,
        sorted(&[direct, nested[0], nested[1], &disabled.id]),
        "with disabled accounts, the nested disabled one too"
    );

    // Back to everyone.
    browser.get(&manage(id)).await;
    browser
        .post_form(
            &scope,
            &[
                ("mode", "all"),
                ("skip_disabled", "on"),
                ("skip_guests", "on"),
            ],
        )
        .await
        .assert_redirect(&format!("{}?flash=scope", manage(id)));
    let page = browser.get(&manage(id)).await;
    let mut everyone = page.rows("employee", "data-user-id");
    everyone.sort();
    assert_eq!(everyone, want, "the disabled account stays out");
}

// ---------------------------------------------------------------------------------------
// Response headers
// ---------------------------------------------------------------------------------------

/// The login origin of the simulator, as the CSP's `form-action` names it.
fn login_origin(sim: &TenantSim) -> String {
    Url::parse(sim.login_base())
        .unwrap()
        .origin()
        .ascii_serialization()
}

/// `page` (`what`) carries every security header: a CSP without scripts whose forms go
/// only to the app and to `login` (the redirect to Entra after "Connect"), no framing,
/// no sniffing, no referrer to other sites, and no caching (photos: private caching).
fn assert_security_headers(page: &Page, login: &str, what: &str) {
    let header = |name: &str| {
        page.headers
            .get(name)
            .unwrap_or_else(|| panic!("{what} ({}): no {name}", page.status))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let csp = header("content-security-policy");
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    for directive in [
        "default-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        &format!("form-action 'self' {login}"),
    ] {
        assert!(directives.contains(&directive), "{what}: {csp}");
    }
    assert!(
        !directives.iter().any(|d| d.starts_with("script-src")),
        "{what}: {csp}"
    );
    assert_eq!(header("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(header("x-frame-options"), "DENY", "{what}");
    assert_eq!(header("referrer-policy"), "same-origin", "{what}");
    let cache = header("cache-control");
    if page.content_type.starts_with("image/") {
        assert!(cache.starts_with("private, max-age="), "{what}: {cache}");
    } else {
        assert_eq!(cache, "no-store", "{what}");
    }
}

/// Every response, whatever route and status, carries the security headers: pages,
/// redirects (to the app and to Entra), JSON, photos and placeholders, and the error
/// answers (400, 401, 403, 404, 405, 415, 422, 429).
#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "one request per route and status, in the order a visit makes them"
)]
async fn every_response_carries_the_security_headers() {
    let sim = sim().await;
    let login = login_origin(&sim);
    let app = App::start(&sim).await;
    let mut browser = app.browser();
    let mut seen: Vec<(String, Page)> = Vec::new();
    let id = uuid::Uuid::new_v4().to_string();

    // Anonymous.
    for path in ["/", "/integrations", "/nowhere", web::CALLBACK_PATH] {
        seen.push((format!("anonymous GET {path}"), browser.get(path).await));
    }
    let page = browser.get(&manage(&id)).await;
    seen.push(("anonymous manage".into(), page));
    let page = browser
        .post_raw("/sign-in", &[("email", ALICE.0), ("password", ALICE.1)])
        .await;
    seen.push(("sign-in without a session".into(), page));
    seen.push(("the sign-in page".into(), browser.get("/sign-in").await));
    let page = browser
        .send(browser.client.put(browser.url("/sign-in")), true)
        .await;
    seen.push(("PUT /sign-in".into(), page));
    let request = browser
        .client
        .post(browser.url("/sign-in"))
        .header(reqwest::header::CONTENT_TYPE, "text/plain")
        .body("email=x");
    let page = browser.send(request, true).await;
    seen.push(("a sign-in that is not a form".into(), page));
    let page = browser
        .post_form("/sign-in", &[("email", ALICE.0), ("password", "wrong")])
        .await;
    seen.push(("a wrong password".into(), page));
    let mut guesser = app.browser();
    guesser.get("/sign-in").await;
    for _ in 0..=ATTEMPTS_PER_EMAIL {
        let page = guesser
            .post_form("/sign-in", &[("email", BOB.0), ("password", "guess")])
            .await;
        seen.push(("guessing".into(), page));
    }
    let page = browser
        .post_form("/sign-in", &[("email", ALICE.0), ("password", ALICE.1)])
        .await;
    seen.push(("signing in".into(), page));

    // Signed in.
    for path in [
        "/",
        "/sign-in",
        "/integrations",
        BASE,
        &format!("{BASE}/new"),
    ] {
        seen.push((format!("GET {path}"), browser.get(path).await));
    }
    let page = browser
        .post_form(&format!("{BASE}/new"), &[("name", "")])
        .await;
    seen.push(("an empty connection name".into(), page));
    browser.get(&format!("{BASE}/new")).await;
    let to_entra = browser
        .post_form(&format!("{BASE}/new"), &[("name", "Germany")])
        .await;
    assert!(
        to_entra.location().starts_with(&login),
        "{}",
        to_entra.location()
    );
    let callback = browser.entra(to_entra.location()).await;
    seen.push(("the redirect to Entra".into(), to_entra));
    let created = browser.get(&callback).await;
    let connection = created
        .location()
        .strip_prefix(&format!("{BASE}?created="))
        .expect("a new connection")
        .to_owned();
    seen.push(("the callback".into(), created));
    let replayed = browser.get(&callback).await;
    assert_eq!(replayed.status, StatusCode::BAD_REQUEST);
    seen.push(("a replayed callback".into(), replayed));
    let m = manage(&connection);
    browser.get(&m).await;
    let page = browser.post_form(&format!("{m}/sync"), &[]).await;
    seen.push(("sync now".into(), page));
    sync_settles(&mut browser, &connection).await;
    let page = browser.get(&format!("{m}/sync/status")).await;
    assert_eq!(page.content_type, "application/json");
    seen.push(("the sync status".into(), page));
    seen.push(("manage".into(), browser.get(&m).await));
    let page = browser
        .post_form(&format!("{m}/rename"), &[("name", "")])
        .await;
    seen.push(("an empty new name".into(), page));
    let page = browser
        .post_raw(&format!("{m}/rename"), &[("name", "X")])
        .await;
    seen.push(("a rename without CSRF".into(), page));
    let page = browser
        .post_form(&format!("{m}/scope"), &[("mode", "groups")])
        .await;
    seen.push(("a scope without a group".into(), page));
    seen.push((
        "the remove page".into(),
        browser.get(&format!("{m}/remove")).await,
    ));
    let users = sim.control().users();
    let member = |photo: bool| {
        users
            .iter()
            .find(|u| u.has_photo == photo && u.account_enabled && u.user_type == UserType::Member)
            .map(|u| format!("{m}/employees/{}/photo", u.id))
    };
    let with_photo = member(true).expect("a member with a photo");
    let page = browser.get(&with_photo).await;
    assert_eq!(page.content_type, "image/png");
    seen.push(("a photo".into(), page));
    if let Some(without) = member(false) {
        let page = browser.get(&without).await;
        assert_eq!(page.content_type, "image/svg+xml");
        seen.push(("a placeholder photo".into(), page));
    }
    let page = browser.get(&format!("{m}/employees/nobody/photo")).await;
    seen.push(("an unknown employee's photo".into(), page));
    seen.push((
        "an unknown connection".into(),
        browser.get(&manage(&id)).await,
    ));
    seen.push(("signed in, nowhere".into(), browser.get("/nowhere").await));
    browser.get("/integrations").await;
    let page = browser.post_form("/sign-out", &[]).await;
    seen.push(("signing out".into(), page));

    let mut statuses: Vec<u16> = seen.iter().map(|(_, page)| page.status.as_u16()).collect();
    statuses.sort_unstable();
    statuses.dedup();
    assert_eq!(
        statuses,
        [200, 303, 400, 401, 403, 404, 405, 415, 422, 429],
        "the answers covered"
    );
    for (what, page) in &seen {
        assert_security_headers(page, &login, what);
    }
}

/// Behind https (a `public_url` starting with https, `secure_cookies`) the session
/// cookie is `Secure` with the `__Host-` prefix (so `Path=/` and no `Domain`), HSTS is
/// sent, and only the prefixed cookie is a session; over plain HTTP the cookie has
/// neither `Secure` nor the prefix, and no HSTS.
#[tokio::test]
async fn https_uses_a_secure_host_prefixed_cookie_and_hsts() {
    let sim = sim().await;
    let login = login_origin(&sim);
    let plain = App::start(&sim).await;
    let page = plain.browser().get("/sign-in").await;
    assert_security_headers(&page, &login, "plain HTTP");
    assert!(page.headers.get("strict-transport-security").is_none());
    let [cookie] = page.set_cookie.as_slice() else {
        panic!("one cookie: {:?}", page.set_cookie);
    };
    assert!(
        cookie.starts_with(&format!("{SESSION_COOKIE}=")),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure") && !cookie.contains("__Host-"),
        "{cookie}"
    );

    let data_dir =
        std::env::temp_dir().join(format!("m365-link-web-https-{}", uuid::Uuid::new_v4()));
    let mut config = web::Config::new(SignIn::simulated(&sim), &data_dir);
    config.customers = Customer::demo_with_cost(PasswordCost::TestOnly);
    config.secure_cookies = true;
    config.public_url = Some("https://signatures.example".to_owned());
    assert_eq!(config.session_cookie(), SECURE_COOKIE);
    assert_eq!(SECURE_COOKIE, format!("__Host-{SESSION_COOKIE}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let db = Db::new().await;
    let running = web::serve(config, &db.opened, listener)
        .await
        .expect("the app starts");
    assert_eq!(running.url(), "https://signatures.example");
    let address = format!("http://127.0.0.1:{port}");
    let mut browser = Browser::new(&address, SECURE_COOKIE);
    let page = browser.get("/sign-in").await;
    assert_security_headers(&page, &login, "https");
    assert_eq!(
        page.headers["strict-transport-security"],
        "max-age=31536000"
    );
    let [cookie] = page.set_cookie.as_slice() else {
        panic!("one cookie: {:?}", page.set_cookie);
    };
    assert!(cookie.starts_with(&format!("{SECURE_COOKIE}=")), "{cookie}");
    let attributes: Vec<&str> = cookie.split(';').map(str::trim).collect();
    for wanted in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(attributes.contains(&wanted), "{wanted}: {cookie}");
    }
    assert!(
        !attributes.iter().any(|a| a.starts_with("Domain")),
        "{cookie}"
    );

    // The prefixed cookie carries the session; the same value without the prefix is
    // not the app's cookie.
    browser.sign_in(ALICE).await;
    let session = browser.cookie.clone().expect("a signed-in session");
    let page = browser.get("/integrations").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.sent_cookie, Some(format!("{SECURE_COOKIE}={session}")));
    let mut unprefixed = Browser::new(&address, SESSION_COOKIE);
    unprefixed.cookie = Some(session);
    unprefixed
        .get("/integrations")
        .await
        .assert_redirect("/sign-in");
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(data_dir);
}

/// Stopping the app lets a "Sync now" under way finish (the mirror commits it, its lease
/// is freed) instead of dropping it half-way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_running_sync_finish() {
    let sim = TenantSim::builder()
        .users(30)
        .groups(3)
        .seed(7)
        .latency(Duration::from_millis(30))
        .consent_mode(ConsentMode::AutoConsent)
        .start()
        .await
        .expect("tenant-sim starts");
    let mut app = App::start(&sim).await;
    let mut browser = app.browser();
    browser.sign_in(ALICE).await;
    let id = browser.connect("Germany").await;
    browser.get(&manage(&id)).await;
    browser
        .post_form(&format!("{}/sync", manage(&id)), &[])
        .await
        .assert_redirect(&format!("{}?flash=sync", manage(&id)));
    assert_eq!(app.state_job(&id), "running");

    let running = app.running.take().expect("the app runs");
    let state = running.state().clone();
    running.shutdown().await;
    let connection_id = id.parse().unwrap();
    assert_eq!(state.jobs().state(connection_id).name(), "done");
    let connection = app.get(ALICE.0, &id).await;
    assert!(connection.last_synced_at.is_some());
    let (mirrored, users) = app.mirrored(&id).await;
    assert_eq!(
        mirrored.map(|m| m.commits),
        Some(1),
        "the sync was committed"
    );
    assert_eq!(users, 30);
    let holder = connection_store::LeaseHolder::new("after-shutdown").unwrap();
    assert!(
        app.db
            .opened
            .store
            .acquire_lease(
                &OwnerId::new(ALICE.0),
                connection_id,
                &holder,
                Duration::from_secs(5)
            )
            .await
            .unwrap()
            .is_some(),
        "the sync freed its lease"
    );
}
