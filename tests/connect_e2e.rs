//! Connecting a tenant end to end, against tenant-sim in process, composed the way the
//! examples compose the crates (`m365_link_app`): sign in through the loopback
//! redirect, store the connection, refresh and rotate, lose the grant, reconnect, and
//! keep owners apart. Both `MemoryStore` and `SqlStore` on a temporary `SQLite` file.

use std::sync::Arc;
use std::time::Duration;

use connection_store::{
    Connection, ConnectionStatus, ConnectionStore, ExposeSecret, MemoryStore, OwnerId,
    SecretString, TokenVersion,
};
use connection_store_sql::{EncryptionKey, KeyId, KeyRing, SqlStore};
use entra_auth::{AuthError, RefreshTokenStore, SaveOutcome, TokenSession};
use graph_client::TokenProvider;
use m365_link_app::connect::{
    LoopbackRedirect, SignIn, check_administrator, create_connection, explain, find_connection,
    reconnect_connection, simulated_browser,
};
use m365_link_app::glue::{ConnectionTokens, Linked, SessionTokens, plain_reason};
use tenant_sim::{ConsentMode, TenantSim};
use tokio::sync::oneshot;

const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(20);

async fn sim() -> TenantSim {
    sim_with(|b| b).await
}

async fn sim_with(
    configure: impl FnOnce(tenant_sim::TenantSimBuilder) -> tenant_sim::TenantSimBuilder,
) -> TenantSim {
    configure(TenantSim::builder().users(40).groups(5).seed(11))
        .start()
        .await
        .expect("tenant-sim starts")
}

fn sign_in(sim: &TenantSim) -> SignIn {
    SignIn::simulated(sim)
}

fn memory_store() -> Arc<dyn ConnectionStore> {
    Arc::new(MemoryStore::new())
}

/// A fresh `SQLite` store in a temporary directory (removed by the caller's guard).
struct TempSqlite {
    dir: std::path::PathBuf,
    store: Arc<dyn ConnectionStore>,
}

impl Drop for TempSqlite {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn sqlite_store() -> TempSqlite {
    let dir = std::env::temp_dir().join(format!("m365-link-e2e-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let keys = KeyRing::new(KeyId::new("test").unwrap(), EncryptionKey::generate());
    let store = SqlStore::sqlite(dir.join("connections.sqlite"))
        .key_ring(keys)
        .open()
        .await
        .expect("sqlite store opens");
    TempSqlite {
        dir,
        store: Arc::new(store),
    }
}

/// Plays the browser: follows the authorization URL through the simulator's redirect to
/// the loopback server, and reports the page the loopback server showed.
/// What the simulated browser saw at the end: the loopback page's status and text.
type BrowserPage = oneshot::Receiver<Result<(reqwest::StatusCode, String), String>>;

fn browser() -> (impl FnOnce(&url::Url), BrowserPage) {
    let (sender, receiver) = oneshot::channel();
    let open = move |url: &url::Url| {
        let url = url.clone();
        tokio::spawn(async move {
            let result = async {
                let response = reqwest::get(url).await.map_err(|e| e.to_string())?;
                let status = response.status();
                Ok((status, response.text().await.map_err(|e| e.to_string())?))
            }
            .await;
            let _ = sender.send(result);
        });
    };
    (open, receiver)
}

/// Signs in through the browser flow and saves a new connection named `name`.
async fn connect(
    sim: &TenantSim,
    store: &Arc<dyn ConnectionStore>,
    owner: &OwnerId,
    name: &str,
) -> Connection {
    let sign_in = sign_in(sim);
    let (open_browser, page) = browser();
    let (_client, grant) = sign_in
        .browser(None, SIGN_IN_TIMEOUT, open_browser)
        .await
        .expect("sign-in succeeds");
    let (status, body) = page
        .await
        .unwrap()
        .expect("browser reached the loopback server");
    assert_eq!(status, reqwest::StatusCode::OK);
    assert!(body.contains("You can close this tab"), "{body}");
    create_connection(store.as_ref(), owner, name, sign_in.cloud.clone(), &grant)
        .await
        .expect("connection saved")
}

async fn open(
    sim: &TenantSim,
    store: &Arc<dyn ConnectionStore>,
    owner: &OwnerId,
    c: &Connection,
) -> Linked {
    Linked::open(Arc::clone(store), owner, c.id, &sign_in(sim).app)
        .await
        .expect("connection opens")
}

async fn version(
    store: &Arc<dyn ConnectionStore>,
    owner: &OwnerId,
    c: &Connection,
) -> TokenVersion {
    store.load_token(owner, c.id).await.unwrap().version
}

async fn connect_stores_the_connection(store: Arc<dyn ConnectionStore>) {
    let sim = sim().await;
    let owner = OwnerId::new("customer-1");
    let connection = connect(&sim, &store, &owner, "Contoso Germany").await;

    assert_eq!(connection.name.as_str(), "Contoso Germany");
    assert_eq!(connection.tenant.as_str(), sim.tenant_id());
    assert_eq!(connection.admin.username, sim.admin_upn());
    assert_eq!(connection.admin.object_id, sim.admin_id());
    assert_eq!(connection.status, ConnectionStatus::Active);
    for scope in ["User.Read.All", "Group.Read.All"] {
        assert!(
            connection.scopes.iter().any(|s| s.ends_with(scope)),
            "{scope} in {:?}",
            connection.scopes
        );
    }
    let listed = store.list(&owner).await.unwrap();
    assert_eq!(listed, vec![connection.clone()]);
    assert_eq!(
        version(&store, &owner, &connection).await,
        TokenVersion::FIRST
    );

    // The stored refresh token works: Graph answers with the tenant's users.
    let linked = open(&sim, &store, &owner, &connection).await;
    let page = linked
        .graph
        .users()
        .list()
        .send()
        .await
        .expect("users listed");
    assert!(!page.items().is_empty());
    // The first access token came from a refresh, whose rotated token was saved.
    assert_eq!(
        version(&store, &owner, &connection).await,
        TokenVersion::new(2)
    );
}

#[tokio::test]
async fn connect_stores_the_connection_in_memory() {
    connect_stores_the_connection(memory_store()).await;
}

#[tokio::test]
async fn connect_stores_the_connection_in_sqlite() {
    let sqlite = sqlite_store().await;
    connect_stores_the_connection(Arc::clone(&sqlite.store)).await;
}

#[tokio::test]
async fn access_token_past_its_refresh_point_is_refreshed_and_the_rotated_token_persists() {
    // Tokens live an hour; the session refreshes 30 minutes before expiry. The two first
    // calls are well inside that window; then tokio's clock (which the session and the
    // simulator both read) is moved past the refresh point, without waiting.
    // (The examples' app declares cp1, so the simulator issues CAE tokens: both lifetimes
    // are an hour here.)
    let sim = sim_with(|b| {
        b.access_token_lifetime(Duration::from_secs(3600))
            .cae_access_token_lifetime(Duration::from_secs(3600))
    })
    .await;
    let sqlite = sqlite_store().await;
    let store = Arc::clone(&sqlite.store);
    let owner = OwnerId::new("customer-1");
    let connection = connect(&sim, &store, &owner, "Contoso").await;

    let client = sign_in(&sim)
        .app
        .entra_client(&connection.cloud, None)
        .unwrap();
    let tokens = Arc::new(ConnectionTokens::new(
        Arc::clone(&store),
        owner.clone(),
        connection.id,
    ));
    let session = TokenSession::builder(
        client,
        entra_auth::TenantId::parse(connection.tenant.as_str()).unwrap(),
        tokens.clone(),
    )
    .refresh_skew(Duration::from_secs(1800))
    .build()
    .unwrap();
    let provider = SessionTokens::new(session);

    let first = provider.access_token().await.unwrap();
    assert_eq!(
        version(&store, &owner, &connection).await,
        TokenVersion::new(2)
    );
    let again = provider.access_token().await.unwrap();
    assert_eq!(
        again.expose_secret(),
        first.expose_secret(),
        "cached while fresh"
    );
    assert_eq!(
        version(&store, &owner, &connection).await,
        TokenVersion::new(2)
    );

    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(1801)).await;
    tokio::time::resume();
    let refreshed = provider.access_token().await.unwrap();
    assert_ne!(refreshed.expose_secret(), first.expose_secret());
    assert_eq!(
        version(&store, &owner, &connection).await,
        TokenVersion::new(3)
    );

    // A writer still holding version 2 loses the compare-and-swap, in both vocabularies.
    let stale = store
        .replace_token(
            &owner,
            connection.id,
            TokenVersion::new(2),
            SecretString::from("stale"),
        )
        .await
        .unwrap_err();
    assert!(stale.is_conflict());
    assert_eq!(stale.current_version(), Some(TokenVersion::new(3)));
    let outcome = tokens
        .save(
            &SecretString::from("stale"),
            entra_auth::TokenVersion::new(2),
        )
        .await
        .unwrap();
    assert_eq!(outcome, SaveOutcome::Conflict);
    let stored = store.load_token(&owner, connection.id).await.unwrap();
    assert_ne!(stored.token.expose_secret(), "stale");
    assert_eq!(stored.version, TokenVersion::new(3));
}

#[tokio::test]
async fn token_graph_rejects_as_expired_is_dropped_and_refreshed_once() {
    let sim = sim().await;
    let store = memory_store();
    let owner = OwnerId::new("customer-1");
    let connection = connect(&sim, &store, &owner, "Contoso").await;
    let linked = open(&sim, &store, &owner, &connection).await;
    linked.graph.users().list().send().await.unwrap();
    assert_eq!(
        version(&store, &owner, &connection).await,
        TokenVersion::new(2)
    );
    let issued = sim.auth().counters().tokens_issued;

    // The simulator's clock moves past the access token's expiry (a CAE token's 28
    // hours, since the app declares cp1): Graph answers 401, the provider drops the
    // token, the session refreshes, the request is retried.
    sim.auth().advance_clock(Duration::from_secs(29 * 3600));
    let page = linked
        .graph
        .users()
        .list()
        .send()
        .await
        .expect("retried with a fresh token");
    assert!(!page.items().is_empty());
    assert_eq!(
        sim.auth().counters().tokens_issued,
        issued + 1,
        "exactly one refresh"
    );
    assert_eq!(
        version(&store, &owner, &connection).await,
        TokenVersion::new(3)
    );
}

async fn revoked_grant_needs_reconnect_then_reconnect_works(store: Arc<dyn ConnectionStore>) {
    let sim = sim().await;
    let owner = OwnerId::new("customer-1");
    let connection = connect(&sim, &store, &owner, "Contoso").await;
    let linked = open(&sim, &store, &owner, &connection).await;
    linked.graph.users().list().send().await.unwrap();

    // The admin's refresh token is revoked (sign-out everywhere, password reset, ...).
    let stored = store.load_token(&owner, connection.id).await.unwrap();
    assert!(
        sim.control()
            .revoke_refresh_token(stored.token.expose_secret())
    );
    linked.session.invalidate();
    let error = linked.graph.users().list().send().await.unwrap_err();
    assert!(error.requires_reauthorization(), "{error}");

    let marked = store.get(&owner, connection.id).await.unwrap();
    let ConnectionStatus::NeedsReconnect { reason, .. } = &marked.status else {
        panic!("status is {:?}", marked.status);
    };
    assert!(reason.contains("AADSTS50173"), "{reason}");
    assert!(!reason.contains(stored.token.expose_secret()));
    assert!(
        !reason.contains("Trace ID"),
        "only the first line: {reason}"
    );

    // Fail fast: no further token requests while the grant is gone.
    let token_requests = sim.auth().counters();
    let again = linked.session.access_token().await.unwrap_err();
    assert!(again.requires_reauthorization());
    let after = sim.auth().counters();
    assert_eq!(
        after.tokens_issued + after.token_errors,
        token_requests.tokens_issued + token_requests.token_errors
    );

    // Reconnect: sign in again, store the new grant, and the same session works again.
    let found = find_connection(store.as_ref(), &owner, "contoso")
        .await
        .unwrap();
    assert_eq!(found.id, connection.id);
    let (open_browser, _page) = browser();
    let (_client, grant) = sign_in(&sim)
        .browser(None, SIGN_IN_TIMEOUT, open_browser)
        .await
        .unwrap();
    let before = version(&store, &owner, &connection).await;
    let reconnected = reconnect_connection(store.as_ref(), &owner, connection.id, &grant)
        .await
        .unwrap();
    assert_eq!(reconnected.status, ConnectionStatus::Active);
    assert_eq!(reconnected.name.as_str(), "Contoso");
    assert_eq!(version(&store, &owner, &connection).await, before.next());
    linked.session.reconnect(&grant).unwrap();
    let page = linked
        .graph
        .users()
        .list()
        .send()
        .await
        .expect("works again");
    assert!(!page.items().is_empty());
}

#[tokio::test]
async fn revoked_refresh_token_marks_needs_reconnect_and_reconnect_restores_in_memory() {
    revoked_grant_needs_reconnect_then_reconnect_works(memory_store()).await;
}

#[tokio::test]
async fn revoked_refresh_token_marks_needs_reconnect_and_reconnect_restores_in_sqlite() {
    let sqlite = sqlite_store().await;
    revoked_grant_needs_reconnect_then_reconnect_works(Arc::clone(&sqlite.store)).await;
}

#[tokio::test]
async fn revoked_user_grants_mark_needs_reconnect_through_graph_and_a_fresh_process_sees_it() {
    let sim = sim().await;
    let sqlite = sqlite_store().await;
    let store = Arc::clone(&sqlite.store);
    let owner = OwnerId::new("customer-1");
    let connection = connect(&sim, &store, &owner, "Contoso").await;
    let linked = open(&sim, &store, &owner, &connection).await;
    linked.graph.users().list().send().await.unwrap();

    // Every token of the admin is revoked: Graph rejects the access token, the refresh
    // fails for good, and the connection is marked.
    assert!(sim.control().revoke_user_grants(sim.admin_id()).unwrap() > 0);
    let error = linked.graph.users().list().send().await.unwrap_err();
    assert!(error.requires_reauthorization(), "{error}");
    let marked = store.get(&owner, connection.id).await.unwrap();
    assert_eq!(marked.status.kind(), "needs_reconnect");

    // Another process opening the connection from the store fails the same way.
    let other = open(&sim, &store, &owner, &connection).await;
    assert!(
        other
            .graph
            .users()
            .list()
            .send()
            .await
            .unwrap_err()
            .requires_reauthorization()
    );
}

#[tokio::test]
async fn owners_cannot_see_or_use_each_others_connections() {
    let sim = sim().await;
    let sqlite = sqlite_store().await;
    let store = Arc::clone(&sqlite.store);
    let alice = OwnerId::new("customer-alice");
    let bob = OwnerId::new("customer-bob");
    let connection = connect(&sim, &store, &alice, "Contoso").await;

    assert!(store.list(&bob).await.unwrap().is_empty());
    let by_name = find_connection(store.as_ref(), &bob, "Contoso")
        .await
        .unwrap_err();
    assert!(
        format!("{by_name:#}").contains("no connection named"),
        "{by_name:#}"
    );
    let by_id = find_connection(store.as_ref(), &bob, &connection.id.to_string())
        .await
        .unwrap_err();
    assert!(format!("{by_id:#}").contains("not found"), "{by_id:#}");
    assert!(
        Linked::open(Arc::clone(&store), &bob, connection.id, &sign_in(&sim).app)
            .await
            .is_err()
    );
    assert!(
        store
            .rename(&bob, connection.id, "Mine")
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        store
            .delete(&bob, connection.id)
            .await
            .unwrap_err()
            .is_not_found()
    );

    // Bob may link the same tenant under his own account; Alice's is untouched.
    let bobs = connect(&sim, &store, &bob, "Contoso").await;
    assert_ne!(bobs.id, connection.id);
    assert_eq!(store.list(&alice).await.unwrap(), vec![connection.clone()]);
    assert_eq!(store.list(&bob).await.unwrap(), vec![bobs]);

    // Alice connecting the same tenant twice is refused with the next step.
    let (open_browser, _page) = browser();
    let (_client, grant) = sign_in(&sim)
        .browser(None, SIGN_IN_TIMEOUT, open_browser)
        .await
        .unwrap();
    let twice = create_connection(
        store.as_ref(),
        &alice,
        "Contoso 2",
        sign_in(&sim).cloud,
        &grant,
    )
    .await
    .unwrap_err();
    assert!(format!("{twice:#}").contains("--reconnect"), "{twice:#}");
}

/// Signs in with the simulator in `mode` and returns the failure and its explanation.
async fn failed_sign_in(mode: ConsentMode) -> (anyhow::Error, String, TenantSim) {
    let sim = sim().await;
    sim.control().set_consent_mode(mode);
    let sign_in = sign_in(&sim);
    let (open_browser, page) = browser();
    let error = sign_in
        .browser(None, SIGN_IN_TIMEOUT, open_browser)
        .await
        .expect_err("sign-in fails");
    // The browser still got the "close this tab" page: the error travels on the redirect.
    let (status, _) = page.await.unwrap().unwrap();
    assert_eq!(status, reqwest::StatusCode::OK);
    let explained = explain(&error, &sign_in);
    (error, explained, sim)
}

#[tokio::test]
async fn non_admin_sign_in_gives_admin_approval_required_and_the_admin_consent_link() {
    let (error, explained, sim) = failed_sign_in(ConsentMode::AdminApprovalRequired).await;
    let Some(AuthError::AdminApprovalRequired {
        admin_consent_url, ..
    }) = error.downcast_ref::<AuthError>()
    else {
        panic!("{error:?}");
    };
    assert!(
        admin_consent_url.path().ends_with("/v2.0/adminconsent"),
        "{admin_consent_url}"
    );
    assert!(admin_consent_url.as_str().starts_with(sim.login_base()));
    assert!(
        admin_consent_url
            .query_pairs()
            .any(|(k, v)| k == "client_id" && v == sim.client_id())
    );
    assert!(explained.contains("only an administrator"), "{explained}");
    // The forwarded link is the error's, without this run's (gone) loopback redirect.
    let forwarded = format!(
        "{}/organizations/v2.0/adminconsent?client_id={}&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default",
        sim.login_base(),
        sim.client_id()
    );
    assert!(explained.ends_with(&forwarded), "{explained}");
    assert!(!explained.contains("localhost"), "{explained}");
}

#[tokio::test]
async fn declined_consent_gives_a_declined_error_in_plain_words() {
    let (error, explained, _sim) = failed_sign_in(ConsentMode::UserDeclines).await;
    assert!(
        matches!(
            error.downcast_ref::<AuthError>(),
            Some(AuthError::AuthorizationDeclined(_))
        ),
        "{error:?}"
    );
    assert!(explained.contains("declined"), "{explained}");
    assert!(explained.contains("run connect again"), "{explained}");
}

#[tokio::test]
async fn missing_permission_names_it_and_gives_the_admin_consent_link() {
    let (error, explained, sim) = failed_sign_in(ConsentMode::MissingOneScope).await;
    let Some(AuthError::MissingScopes { missing, .. }) = error.downcast_ref::<AuthError>() else {
        panic!("{error:?}");
    };
    assert!(
        missing.iter().any(|s| s.ends_with("Group.Read.All")),
        "{missing:?}"
    );
    assert!(explained.contains("Group.Read.All"), "{explained}");
    assert!(
        explained.contains(&format!(
            "{}/organizations/v2.0/adminconsent",
            sim.login_base()
        )),
        "{explained}"
    );
}

#[tokio::test]
async fn device_code_sign_in_creates_the_connection() {
    let sim = sim().await;
    let store = memory_store();
    let owner = OwnerId::new("customer-1");
    let sign_in = sign_in(&sim);
    let mut shown = String::new();
    let (_client, grant) = sign_in
        .device_code(|device| {
            shown = device.message().to_owned();
            // The admin enters the code on another device before the first poll.
            assert!(
                sim.control()
                    .approve_device_code(device.user_code(), sim.admin_upn())
                    .unwrap()
            );
        })
        .await
        .expect("the approved device code gives a grant");
    assert!(shown.contains("devicelogin"), "{shown}");
    let connection = create_connection(
        store.as_ref(),
        &owner,
        "Contoso",
        sign_in.cloud.clone(),
        &grant,
    )
    .await
    .unwrap();
    assert_eq!(connection.admin.username, sim.admin_upn());
    assert_eq!(connection.status, ConnectionStatus::Active);
}

#[tokio::test]
async fn loopback_redirect_ignores_other_requests_and_times_out_cleanly() {
    let redirect = LoopbackRedirect::start().await.unwrap();
    let uri = redirect.redirect_uri();
    assert!(uri.starts_with("http://localhost:"), "{uri}");
    let port: u16 = uri
        .trim_start_matches("http://localhost:")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let favicon = reqwest::get(format!("http://127.0.0.1:{port}/favicon.ico"))
        .await
        .unwrap();
    assert_eq!(favicon.status(), reqwest::StatusCode::NOT_FOUND);

    let error = redirect.wait(Duration::from_millis(200)).await.unwrap_err();
    let text = format!("{error:#}");
    assert!(text.contains("no sign-in arrived"), "{text}");
    assert!(text.contains("--device-code"), "{text}");
    // The server is gone afterwards.
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn loopback_redirect_hands_over_the_callback_query() {
    let redirect = LoopbackRedirect::start().await.unwrap();
    redirect
        .expect_state(&SecretString::from("xyz".to_owned()))
        .unwrap();
    let callback = format!("{}?code=abc&state=xyz", redirect.redirect_uri());
    let request =
        tokio::spawn(async move { reqwest::get(callback).await.unwrap().text().await.unwrap() });
    let params = redirect.wait(Duration::from_secs(5)).await.unwrap();
    assert_eq!(params.state(), Some("xyz"));
    assert!(!params.is_error());
    assert!(request.await.unwrap().contains("You can close this tab"));
}

fn port_of(redirect: &LoopbackRedirect) -> u16 {
    redirect
        .redirect_uri()
        .trim_start_matches("http://localhost:")
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

#[tokio::test]
async fn loopback_redirect_refuses_redirects_without_its_state_and_keeps_waiting() {
    let redirect = LoopbackRedirect::start().await.unwrap();
    let port = port_of(&redirect);
    let base = format!("http://127.0.0.1:{port}/");
    // Before the sign-in's state is known, nothing is taken.
    let early = reqwest::get(format!("{base}?code=abc&state=xyz"))
        .await
        .unwrap();
    assert_eq!(early.status(), reqwest::StatusCode::BAD_REQUEST);
    redirect
        .expect_state(&SecretString::from("the-state".to_owned()))
        .unwrap();
    assert!(
        redirect
            .expect_state(&SecretString::from("other".to_owned()))
            .is_err(),
        "one server serves one sign-in"
    );
    // Another local process's forged error, without state or with the wrong one: refused,
    // and its text is not echoed.
    for forged in [
        "?error=access_denied&error_description=Call+0800-SCAM+now",
        "?error=access_denied&error_description=Call+0800-SCAM+now&state=guess",
        "?code=stolen&state=guess",
    ] {
        let answer = reqwest::get(format!("{base}{forged}")).await.unwrap();
        assert_eq!(
            answer.status(),
            reqwest::StatusCode::BAD_REQUEST,
            "{forged}"
        );
        let body = answer.text().await.unwrap();
        assert!(!body.contains("SCAM") && !body.contains("stolen"), "{body}");
    }
    // The real redirect still ends the wait, with its own parameters.
    let real = format!("{base}?error=access_denied&error_description=declined&state=the-state");
    let request = tokio::spawn(async move { reqwest::get(real).await.unwrap().status() });
    let params = redirect.wait(Duration::from_secs(5)).await.unwrap();
    assert!(params.is_error());
    assert_eq!(params.state(), Some("the-state"));
    assert_eq!(request.await.unwrap(), reqwest::StatusCode::OK);
}

#[tokio::test]
async fn loopback_redirect_timeout_counts_the_redirects_it_ignored() {
    let redirect = LoopbackRedirect::start().await.unwrap();
    redirect
        .expect_state(&SecretString::from("the-state".to_owned()))
        .unwrap();
    let port = port_of(&redirect);
    let forged = reqwest::get(format!("http://127.0.0.1:{port}/?error=access_denied"))
        .await
        .unwrap();
    assert_eq!(forged.status(), reqwest::StatusCode::BAD_REQUEST);
    let error = redirect.wait(Duration::from_millis(200)).await.unwrap_err();
    let text = format!("{error:#}");
    assert!(
        text.contains("1 redirect(s) without this sign-in's state were ignored"),
        "{text}"
    );
    assert!(!text.contains("access_denied"), "{text}");
}

#[tokio::test]
async fn loopback_redirect_serves_localhost_on_ipv6_too() {
    if std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, 0)).is_err() {
        eprintln!("skipped: this machine has no IPv6 loopback");
        return;
    }
    let redirect = LoopbackRedirect::start().await.unwrap();
    redirect
        .expect_state(&SecretString::from("v6".to_owned()))
        .unwrap();
    let callback = format!("http://[::1]:{}/?code=abc&state=v6", port_of(&redirect));
    let request = tokio::spawn(async move { reqwest::get(callback).await.unwrap().status() });
    let params = redirect.wait(Duration::from_secs(5)).await.unwrap();
    assert_eq!(params.state(), Some("v6"));
    assert_eq!(request.await.unwrap(), reqwest::StatusCode::OK);
}

#[tokio::test]
async fn only_an_administrator_passes_the_admin_check_and_a_member_is_told_why_with_the_link() {
    let sim = sim().await;
    let store = memory_store();
    // The admin connects first: the tenant has consented, so a member can sign in too.
    connect(&sim, &store, &OwnerId::new("customer-1"), "Contoso").await;
    let sign_in = sign_in(&sim);
    let (_client, admin_grant) = sign_in
        .browser(Some(sim.admin_upn()), SIGN_IN_TIMEOUT, simulated_browser)
        .await
        .unwrap();
    check_administrator(&sign_in, &admin_grant)
        .await
        .expect("a Global Administrator may connect");

    let member = sim
        .control()
        .users()
        .into_iter()
        .find(|user| {
            user.roles.is_empty()
                && user.account_enabled
                && user.user_principal_name != sim.admin_upn()
        })
        .expect("a member without roles");
    let (_client, member_grant) = sign_in
        .browser(
            Some(&member.user_principal_name),
            SIGN_IN_TIMEOUT,
            simulated_browser,
        )
        .await
        .expect("a member of a consented tenant signs in for real");
    assert_eq!(member_grant.identity().object_id.as_str(), member.id);
    let refused = format!(
        "{:#}",
        check_administrator(&sign_in, &member_grant)
            .await
            .unwrap_err()
    );
    assert!(
        refused.contains(&format!(
            "{} is not an administrator",
            member.user_principal_name
        )),
        "{refused}"
    );
    assert!(
        refused.contains("/adminconsent?"),
        "the admin-consent link: {refused}"
    );

    // An Application Administrator may consent to delegated permissions: admitted.
    sim.control()
        .assign_role(
            &member.id,
            tenant_sim::DirectoryRole::ApplicationAdministrator,
        )
        .unwrap();
    check_administrator(&sign_in, &member_grant)
        .await
        .expect("an Application Administrator may connect");
}

#[test]
fn needs_reconnect_reason_is_entras_first_line_without_ids() {
    let entra = entra_auth::EntraError::new("invalid_grant").with_description(
        "AADSTS50173: The provided grant has expired due to it being revoked.\r\nTrace ID: 1\r\nCorrelation ID: 2",
    );
    let reason = plain_reason(&AuthError::ReauthorizationRequired(Box::new(entra)));
    assert_eq!(
        reason,
        "Microsoft refused the saved sign-in: AADSTS50173: The provided grant has expired due to it being revoked."
    );
    assert_eq!(
        plain_reason(&AuthError::NoRefreshToken),
        "Microsoft refused the saved sign-in: no refresh token is stored for this connection; reauthorization required"
    );
}

#[tokio::test]
async fn a_dev_sqlite_store_gets_a_private_key_file_once_and_reopens_with_it() {
    if std::env::var_os(m365_link_app::store::KEY_VARIABLE).is_some() {
        eprintln!("skipped: {} is set", m365_link_app::store::KEY_VARIABLE);
        return;
    }
    let dir = std::env::temp_dir().join(format!("m365-link-store-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("links.sqlite");
    let owner = OwnerId::new("o");

    let first = m365_link_app::store::open(db.to_str().unwrap())
        .await
        .unwrap();
    let key_file = m365_link_app::store::key_file_for(&db);
    assert_eq!(key_file, dir.join("links.sqlite.key"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let created = first
        .store
        .create(
            &owner,
            connection_store::testkit::sample_connection("A", "t-1", "rt-1"),
        )
        .await
        .unwrap();
    drop(first);

    let reopened = m365_link_app::store::open(db.to_str().unwrap())
        .await
        .unwrap();
    let token = reopened.store.load_token(&owner, created.id).await.unwrap();
    assert_eq!(token.token.expose_secret(), "rt-1");
    drop(reopened);

    // Without its key file the store is refused with the next step, not re-keyed.
    std::fs::remove_file(&key_file).unwrap();
    let refused = m365_link_app::store::open(db.to_str().unwrap())
        .await
        .err()
        .unwrap();
    assert!(
        format!("{refused:#}").contains(m365_link_app::store::KEY_VARIABLE),
        "{refused:#}"
    );
    assert!(!key_file.exists());
    let _ = std::fs::remove_dir_all(&dir);
}
