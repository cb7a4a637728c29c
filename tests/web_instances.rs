//! Two instances of the web app behind one address, sharing one database and one cookie
//! key: a browser signed in on one is signed in on the other, a form read on one is
//! accepted by the other (the CSRF token is the session's, in the database), a Microsoft
//! sign-in started on one completes on the other (the pending authorization is in the
//! session row), and signing out on one signs out on both.
//!
//! Each instance opens the database itself (its own pool), as separate processes would.
//! The `SQLite` test runs on a file in a temporary folder; the `PostgreSQL` one with
//! `TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo test --test
//! web_instances -- --include-ignored postgres` (in a schema of its own, dropped at its
//! end). A `reqwest` client that follows no redirects plays the browser, sending its one
//! session cookie to whichever instance it asks.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum_extra::extract::cookie::Key;
use connection_store::{ConnectionId, OwnerId};
use connection_store_sql::{EncryptionKey, KeyId, KeyRing, SqlPool, SqlStore, sqlx};
use m365_link_app::connect::SignIn;
use m365_link_app::mirror::Mirror;
use m365_link_app::store::OpenedStore;
use m365_link_app::web;
use m365_link_app::web::accounts::{Customer, PasswordCost};
use m365_link_app::web::session::TABLE;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use tenant_sim::{ConsentMode, TenantSim};

const BASE: &str = "/integrations/microsoft-365";
const ALICE: (&str, &str) = ("alice@example.com", "alice-demo");

/// Where the instances' database is.
#[derive(Clone)]
enum Database {
    Sqlite(PathBuf),
    Postgres { url: String, schema: String },
}

impl Database {
    /// Opens it as one instance does: its own pool, the store's migrations, the mirror.
    async fn open(&self, keys: KeyRing) -> OpenedStore {
        let sql = match self {
            Self::Sqlite(path) => SqlStore::sqlite(path).key_ring(keys).open().await,
            Self::Postgres { url, schema } => {
                SqlStore::postgres(url)
                    .schema(schema)
                    .key_ring(keys)
                    .max_connections(4)
                    .open()
                    .await
            }
        }
        .expect("the store opens");
        let mirror = Mirror::open(&sql).await.expect("the mirror opens");
        OpenedStore {
            store: Arc::new(sql.clone()),
            sql,
            mirror,
            description: "test".to_owned(),
        }
    }
}

/// One running instance and its own pool on the shared database.
struct Instance {
    running: web::Running,
    opened: OpenedStore,
}

impl Instance {
    async fn start(sim: &TenantSim, database: &Database, key: &Key, data_dir: &Path) -> Self {
        let keys = KeyRing::new(KeyId::new("web-instances").unwrap(), fixed_store_key());
        let opened = database.open(keys).await;
        let mut config = web::Config::new(SignIn::simulated(sim), data_dir);
        config.customers = Customer::demo_with_cost(PasswordCost::TestOnly);
        config.cookie_key = key.clone();
        assert_eq!(
            config.session_cookie(),
            "m365link_session",
            "plain HTTP: no __Host- prefix"
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = web::serve(config, &opened, listener)
            .await
            .expect("the instance starts");
        Self { running, opened }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.url())
    }

    /// How many session rows the shared table holds.
    async fn session_rows(&self) -> i64 {
        let sql = format!("SELECT count(*) FROM {TABLE}");
        match self.opened.sql.pool() {
            SqlPool::Sqlite(pool) => sqlx::query_scalar(&sql).fetch_one(&pool).await,
            SqlPool::Postgres(pool) => sqlx::query_scalar(&sql).fetch_one(&pool).await,
            _ => unreachable!("the test opens SQLite or PostgreSQL"),
        }
        .unwrap()
    }
}

/// The store's encryption key, the same for both instances (as the secret manager gives).
fn fixed_store_key() -> EncryptionKey {
    EncryptionKey::from_bytes([7; 32])
}

/// One response as the browser saw it.
#[derive(Debug)]
struct Page {
    status: StatusCode,
    location: Option<String>,
    set_cookie: Vec<String>,
    body: String,
}

impl Page {
    fn assert_redirect(&self, to: &str) {
        assert_eq!(self.status, StatusCode::SEE_OTHER, "{}", self.body);
        assert_eq!(self.location.as_deref(), Some(to));
    }

    fn location(&self) -> &str {
        self.location.as_deref().expect("a location header")
    }

    fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("a form with a CSRF token") + marker.len();
        self.body[start..].split('"').next().unwrap().to_owned()
    }
}

/// A browser without redirects and with one session cookie, named `cookie_name`, for
/// both instances (they are one address to it).
struct Browser {
    client: reqwest::Client,
    cookie_name: &'static str,
    cookie: Option<String>,
}

impl Browser {
    fn new(instance: &Instance) -> Self {
        Self {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie_name: instance.running.state().config().session_cookie(),
            cookie: None,
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let request = match &self.cookie {
            Some(cookie) => request.header(COOKIE, format!("{}={cookie}", self.cookie_name)),
            None => request,
        };
        let response = request.send().await.expect("the request is answered");
        let status = response.status();
        let set_cookie: Vec<String> = response
            .headers()
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
        let location = response
            .headers()
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.text().await.unwrap();
        Page {
            status,
            location,
            set_cookie,
            body,
        }
    }

    async fn get(&mut self, url: &str) -> Page {
        let request = self.client.get(url);
        self.send(request).await
    }

    async fn post(&mut self, url: &str, fields: &[(&str, &str)]) -> Page {
        let request = self.client.post(url).form(fields);
        self.send(request).await
    }
}

async fn sim() -> TenantSim {
    TenantSim::builder()
        .users(6)
        .groups(2)
        .seed(11)
        .consent_mode(ConsentMode::AutoConsent)
        .start()
        .await
        .expect("tenant-sim starts")
}

/// A form read on A, sent to B: "Create a new connection" goes to Entra; Entra's answer
/// comes back to A, which finds the sign-in B started in the shared session. Returns the
/// new connection.
async fn create_on_b_complete_on_a(
    browser: &mut Browser,
    sim: &TenantSim,
    a: &Instance,
    b: &Instance,
) -> ConnectionId {
    let page = browser.get(&a.url(&format!("{BASE}/new"))).await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = page.csrf();
    let to_entra = browser
        .post(
            &b.url(&format!("{BASE}/new")),
            &[("name", "Germany"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(to_entra.status, StatusCode::SEE_OTHER, "{}", to_entra.body);
    assert!(
        to_entra
            .location()
            .starts_with(sim.login_base().trim_end_matches('/')),
        "{}",
        to_entra.location()
    );
    let answer = browser.get(to_entra.location()).await;
    assert!(answer.status.is_redirection(), "{}", answer.body);
    let callback = answer.location().to_owned();
    assert!(
        callback.starts_with(&b.url(web::CALLBACK_PATH)),
        "{callback}"
    );
    let on_a = callback.replacen(b.running.url(), a.running.url(), 1);
    let done = browser.get(&on_a).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert!(
        done.location().starts_with(&format!("{BASE}?created=")),
        "{}",
        done.location()
    );
    let connections = b.opened.store.list(&OwnerId::new(ALICE.0)).await.unwrap();
    assert_eq!(connections.len(), 1);
    assert_eq!(connections[0].name.as_str(), "Germany");
    // Used once: the same answer on B is refused.
    let replay = browser.get(&callback).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert!(replay.body.contains("does not match"), "{}", replay.body);

    connections[0].id
}

/// The scenario on `database`: instances A and B share it and the cookie key.
async fn two_instances_share_sessions(database: Database, dir: &Path) {
    let sim = sim().await;
    let key = Key::generate();
    let a = Instance::start(&sim, &database, &key, &dir.join("data")).await;
    let b = Instance::start(&sim, &database, &key, &dir.join("data")).await;
    assert_ne!(a.running.url(), b.running.url());
    let mut browser = Browser::new(&a);

    // Signed in on A.
    let page = browser.get(&a.url("/sign-in")).await;
    assert_eq!(page.status, StatusCode::OK);
    let anonymous = browser.cookie.clone().expect("an anonymous session from A");
    let csrf = page.csrf();
    browser
        .post(
            &a.url("/sign-in"),
            &[("email", ALICE.0), ("password", ALICE.1), ("csrf", &csrf)],
        )
        .await
        .assert_redirect("/integrations");
    let signed_in = browser.cookie.clone().expect("a signed-in session from A");
    assert_ne!(signed_in, anonymous, "a new session id on sign-in");
    assert_eq!(a.session_rows().await, 1, "the anonymous row was replaced");

    // The same cookie is signed in on B.
    let page = browser.get(&b.url("/integrations")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains(ALICE.0), "{}", page.body);
    let page = browser.get(&b.url(BASE)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"no-connections\""), "{}", page.body);
    assert_eq!(browser.cookie.as_deref(), Some(signed_in.as_str()));

    let owner = OwnerId::new(ALICE.0);
    let id = create_on_b_complete_on_a(&mut browser, &sim, &a, &b).await;

    // A token from A's page, a rename on B.
    let manage = format!("{BASE}/connections/{id}");
    let csrf = browser.get(&a.url(&manage)).await.csrf();
    browser
        .post(
            &b.url(&format!("{manage}/rename")),
            &[("name", "Deutschland"), ("csrf", &csrf)],
        )
        .await
        .assert_redirect(&format!("{manage}?flash=renamed"));
    let renamed = a.opened.store.get(&owner, id).await.unwrap();
    assert_eq!(renamed.name.as_str(), "Deutschland");
    // A wrong token is refused on B as on A.
    let page = browser
        .post(
            &b.url(&format!("{manage}/rename")),
            &[("name", "Nope"), ("csrf", "wrong")],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);

    // Signing out on B signs out on A.
    let csrf = browser.get(&b.url("/integrations")).await.csrf();
    let page = browser.post(&b.url("/sign-out"), &[("csrf", &csrf)]).await;
    page.assert_redirect("/sign-in");
    assert!(
        page.set_cookie
            .iter()
            .any(|c| c.starts_with(&format!("{}=;", browser.cookie_name))),
        "the cookie is removed: {:?}",
        page.set_cookie
    );
    assert!(browser.cookie.is_none());
    assert_eq!(a.session_rows().await, 0, "the row is deleted");
    let mut old = Browser::new(&a);
    old.cookie = Some(signed_in);
    old.get(&a.url("/integrations"))
        .await
        .assert_redirect("/sign-in");
    old.get(&b.url("/integrations"))
        .await
        .assert_redirect("/sign-in");

    a.running.shutdown().await;
    b.running.shutdown().await;
}

fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_sqlite_file_share_sign_in_csrf_pending_sign_ins_and_sign_out() {
    let dir = temp_dir("m365-link-web-instances");
    let database = Database::Sqlite(dir.join("store.sqlite"));
    let outcome = tokio::spawn({
        let dir = dir.clone();
        async move { two_instances_share_sessions(database, &dir).await }
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs TEST_POSTGRES_URL (PostgreSQL)"]
async fn postgres_two_instances_share_sign_in_csrf_pending_sign_ins_and_sign_out() {
    let url = std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("set TEST_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run the PostgreSQL tests")
    });
    let schema = format!("web_instances_{}", uuid::Uuid::new_v4().simple());
    let dir = temp_dir("m365-link-web-instances-pg");
    let database = Database::Postgres {
        url: url.clone(),
        schema: schema.clone(),
    };
    let outcome = tokio::spawn({
        let dir = dir.clone();
        async move { two_instances_share_sessions(database, &dir).await }
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    let cleanup = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("cleanup connection");
    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&cleanup)
        .await
        .expect("drop the schema");
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}
