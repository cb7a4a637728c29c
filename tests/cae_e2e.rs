//! Continuous access evaluation end to end (issue 16): the examples' app declares `cp1`,
//! Graph (tenant-sim) challenges a revoked admin's token at the next request, the session
//! answers the challenge with one refresh carrying its claims, and a grant Microsoft
//! refuses becomes "reconnect needed" with the claims the reconnect's sign-in carries.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use connection_store::{
    Connection, ConnectionStatus, ConnectionStore, LeaseHolder, MemoryStore, OwnerId,
};
use graph_client::sync::{MemorySink, NoProgress, SyncOptions};
use m365_link_app::connect::{SignIn, create_connection, reconnect_connection, simulated_browser};
use m365_link_app::glue::{ConnectionTokens, Linked};
use m365_link_app::sync::{self, SyncStop, Target};
use serde_json::Value;
use tenant_sim::TenantSim;

const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(20);

struct Fixture {
    sim: TenantSim,
    store: Arc<dyn ConnectionStore>,
    owner: OwnerId,
    connection: Connection,
    sign_in: SignIn,
}

impl Fixture {
    async fn new() -> Self {
        let sim = TenantSim::builder()
            .users(30)
            .groups(4)
            .seed(16)
            .start()
            .await
            .expect("tenant-sim starts");
        let store: Arc<dyn ConnectionStore> = Arc::new(MemoryStore::new());
        let owner = OwnerId::new("customer-1");
        let sign_in = SignIn::simulated(&sim);
        let (_client, grant) = sign_in
            .browser(None, SIGN_IN_TIMEOUT, simulated_browser)
            .await
            .expect("the admin signs in");
        let connection = create_connection(
            store.as_ref(),
            &owner,
            "Contoso",
            sign_in.cloud.clone(),
            &grant,
        )
        .await
        .expect("the connection is stored");
        Self {
            sim,
            store,
            owner,
            connection,
            sign_in,
        }
    }

    async fn linked(&self) -> Linked {
        Linked::open(
            Arc::clone(&self.store),
            &self.owner,
            self.connection.id,
            &self.sign_in.app,
        )
        .await
        .expect("the connection opens")
    }

    fn target(&self) -> Target {
        Target {
            store: Arc::clone(&self.store),
            owner: self.owner.clone(),
            id: self.connection.id,
        }
    }

    async fn sync(&self, graph: &graph_client::GraphClient) -> anyhow::Result<()> {
        let options = sync::Options {
            engine: SyncOptions::default(),
            lease_ttl: Duration::from_secs(30),
            holder: LeaseHolder::new("cae-test").unwrap(),
        };
        let mut sink = MemorySink::new();
        sync::run(graph, &self.target(), &mut sink, &options, &NoProgress)
            .await
            .map(|_| ())
    }

    async fn status(&self) -> ConnectionStatus {
        self.store
            .get(&self.owner, self.connection.id)
            .await
            .unwrap()
            .status
    }

    fn counters(&self) -> tenant_sim::RequestCounters {
        self.sim.control().counters()
    }
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[tokio::test]
async fn a_revoked_admin_stops_the_next_sync_with_reconnect_needed_within_one_request() {
    let fixture = Fixture::new().await;
    let linked = fixture.linked().await;
    fixture.sync(&linked.graph).await.expect("the first sync");

    fixture.sim.control().reset_counters();
    let revoked_at = fixture
        .sim
        .control()
        .revoke_sign_in_sessions(fixture.sim.admin_upn())
        .unwrap();
    let error = fixture.sync(&linked.graph).await.unwrap_err();
    assert!(
        matches!(
            error.downcast_ref::<SyncStop>(),
            Some(SyncStop::NeedsReconnect { .. })
        ),
        "{error:#}"
    );
    let counters = fixture.counters();
    // One Graph request, challenged; one refresh answering the challenge, refused.
    assert_eq!(counters.total(), 1, "{counters:?}");
    assert_eq!(counters.claims_challenges(), 1);
    assert_eq!(counters.tokens().requests("refresh_token"), 1);
    assert_eq!(counters.tokens().challenge_answers(), 1);

    let ConnectionStatus::NeedsReconnect { reason, claims, .. } = fixture.status().await else {
        panic!("the connection needs a reconnect");
    };
    assert!(reason.contains("AADSTS50173"), "{reason}");
    // The claims kept for the reconnect are the challenge's: nbf = the revocation time.
    let claims = json(&claims.expect("claims kept for the reconnect"));
    assert_eq!(claims["access_token"]["nbf"]["essential"], true);
    assert_eq!(
        claims["access_token"]["nbf"]["value"],
        revoked_at.to_string()
    );
}

#[tokio::test]
async fn the_reconnect_signs_in_with_the_kept_claims_and_clears_them() {
    let fixture = Fixture::new().await;
    let linked = fixture.linked().await;
    fixture.sync(&linked.graph).await.expect("the first sync");
    let revoked_at = fixture
        .sim
        .control()
        .revoke_sign_in_sessions(fixture.sim.admin_upn())
        .unwrap();
    fixture.sync(&linked.graph).await.unwrap_err();
    let ConnectionStatus::NeedsReconnect { claims, .. } = fixture.status().await else {
        panic!("the connection needs a reconnect");
    };

    // The CLI's reconnect passes them to the authorize request, merged with cp1.
    let seen = Arc::new(Mutex::new(None));
    let url_seen = Arc::clone(&seen);
    let (_client, grant) = fixture
        .sign_in
        .browser_with_claims(None, claims.as_deref(), SIGN_IN_TIMEOUT, move |url| {
            *url_seen.lock().unwrap() = Some(url.clone());
            simulated_browser(url);
        })
        .await
        .expect("the admin signs in again");
    let url = seen.lock().unwrap().clone().expect("a sign-in URL");
    let sent = url
        .query_pairs()
        .find(|(name, _)| name == "claims")
        .map(|(_, value)| json(&value))
        .expect("the authorize request carries claims");
    assert_eq!(sent["access_token"]["nbf"]["value"], revoked_at.to_string());
    assert_eq!(
        sent["access_token"]["xms_cc"]["values"],
        serde_json::json!(["cp1"])
    );

    reconnect_connection(
        fixture.store.as_ref(),
        &fixture.owner,
        fixture.connection.id,
        &grant,
    )
    .await
    .expect("reconnected");
    assert_eq!(fixture.status().await, ConnectionStatus::Active);
    let fresh = fixture.linked().await;
    fixture
        .sync(&fresh.graph)
        .await
        .expect("syncs again after the reconnect");
}

#[tokio::test]
async fn a_location_change_is_answered_silently_by_one_refresh_with_the_claims() {
    let fixture = Fixture::new().await;
    let linked = fixture.linked().await;
    fixture.sync(&linked.graph).await.expect("the first sync");

    fixture.sim.control().reset_counters();
    fixture
        .sim
        .control()
        .require_fresh_token(fixture.sim.admin_upn())
        .unwrap();
    fixture
        .sync(&linked.graph)
        .await
        .expect("the sync goes on after the refresh");
    let counters = fixture.counters();
    assert_eq!(counters.claims_challenges(), 1);
    assert_eq!(counters.tokens().requests("refresh_token"), 1);
    assert_eq!(counters.tokens().challenge_answers(), 1);
    assert_eq!(fixture.status().await, ConnectionStatus::Active);
}

#[tokio::test]
async fn a_policy_requiring_interaction_keeps_entras_claims_for_the_reconnect() {
    let fixture = Fixture::new().await;
    let linked = fixture.linked().await;
    fixture.sync(&linked.graph).await.expect("the first sync");
    fixture
        .sim
        .control()
        .require_interaction(fixture.sim.admin_upn())
        .unwrap();
    fixture.sync(&linked.graph).await.unwrap_err();
    let ConnectionStatus::NeedsReconnect { reason, claims, .. } = fixture.status().await else {
        panic!("the connection needs a reconnect");
    };
    assert!(reason.contains("AADSTS50076"), "{reason}");
    let claims = json(&claims.expect("Entra's claims kept"));
    assert!(claims["access_token"].is_object(), "{claims}");
}

#[tokio::test]
async fn a_hundred_concurrent_calls_on_one_challenge_make_one_refresh() {
    let fixture = Fixture::new().await;
    let linked = fixture.linked().await;
    linked.graph.users().list().send().await.expect("warm");
    fixture.sim.control().reset_counters();
    fixture
        .sim
        .control()
        .require_fresh_token(fixture.sim.admin_upn())
        .unwrap();
    let calls = (0..100).map(|_| {
        let graph = linked.graph.clone();
        tokio::spawn(async move { graph.users().list().top(1).send().await })
    });
    for call in futures::future::join_all(calls).await {
        call.unwrap().expect("every call succeeds");
    }
    let counters = fixture.counters();
    assert_eq!(counters.tokens().requests("refresh_token"), 1);
    assert!(counters.claims_challenges() >= 1);
}

#[tokio::test]
async fn without_cp1_a_revoked_admin_is_seen_only_when_the_token_expires() {
    let fixture = Fixture::new().await;
    // A service that turned cp1 off: ordinary one-hour tokens, never challenged.
    let client = fixture
        .sign_in
        .app
        .entra_client_builder(&fixture.connection.cloud, None)
        .unwrap()
        .client_capability_cp1(false)
        .build()
        .unwrap();
    let tokens = Arc::new(ConnectionTokens::new(
        Arc::clone(&fixture.store),
        fixture.owner.clone(),
        fixture.connection.id,
    ));
    let session = m365_link_app::glue::session(&client, &fixture.connection, tokens).unwrap();
    let graph = m365_link_app::glue::graph_client(&fixture.connection.cloud, session).unwrap();
    fixture.sync(&graph).await.expect("the first sync");

    fixture
        .sim
        .control()
        .revoke_sign_in_sessions(fixture.sim.admin_upn())
        .unwrap();
    fixture
        .sync(&graph)
        .await
        .expect("the revoked admin's token still works until it expires");
    assert_eq!(fixture.counters().claims_challenges(), 0);
    assert_eq!(fixture.status().await, ConnectionStatus::Active);

    // An hour later the token has expired: the refresh is refused.
    fixture
        .sim
        .auth()
        .advance_clock(Duration::from_secs(2 * 3600));
    fixture.sync(&graph).await.unwrap_err();
    assert!(matches!(
        fixture.status().await,
        ConnectionStatus::NeedsReconnect { claims: None, .. }
    ));
}
