//! Delta rounds for users and groups (spec 9).

mod common;

use common::{base, client};
use futures::TryStreamExt;
use graph_client::{DeltaChange, DeltaLink, DeltaRound, GraphError, Group, RemovedReason, User};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A documented delta page with its links moved onto the mock server and the skip token replaced.
fn page(name: &str, b: &str, next_token: Option<&str>) -> Value {
    let text = serde_json::to_string(&common::fixture(name))
        .unwrap()
        .replace("https://graph.microsoft.com/v1.0", b);
    let mut value: Value = serde_json::from_str(&text).unwrap();
    if let Some(token) = next_token {
        let resource = if name.starts_with("users") {
            "users"
        } else {
            "groups"
        };
        value["@odata.nextLink"] = json!(format!("{b}/{resource}/delta?$skiptoken={token}"));
    }
    value
}

async fn mount_page(server: &MockServer, resource: &str, skiptoken: Option<&str>, body: Value) {
    let mock = Mock::given(method("GET")).and(path(format!("/v1.0/{resource}/delta")));
    let mock = match skiptoken {
        Some(token) => mock.and(query_param("$skiptoken", token)),
        None => mock
            .and(query_param_is_missing("$skiptoken"))
            .and(query_param_is_missing("$deltatoken")),
    };
    mock.respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(server)
        .await;
}

fn upserted_ids<T>(events: &[DeltaChange<T>], id: impl Fn(&T) -> Option<&str>) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            DeltaChange::Upsert(t) => id(t).map(str::to_owned),
            DeltaChange::Removed { .. } => None,
        })
        .collect()
}

/// Runs a round to its end: its changes, and the link it ended with.
async fn finish<T>(mut round: DeltaRound<T>) -> (Vec<DeltaChange<T>>, DeltaLink) {
    let mut changes = Vec::new();
    while let Some(change) = round.try_next().await.unwrap() {
        assert!(round.delta_link().is_none(), "no link before the end");
        changes.push(change);
    }
    let link = round
        .into_delta_link()
        .expect("a finished round has its link");
    (changes, link)
}

#[tokio::test]
async fn user_round_over_several_pages_yields_upserts_both_removals_and_the_delta_link() {
    let server = MockServer::start().await;
    let b = base(&server);
    mount_page(
        &server,
        "users",
        None,
        page("users-delta-initial.json", &b, Some("p2")),
    )
    .await;
    mount_page(
        &server,
        "users",
        Some("p2"),
        page("users-delta-next.json", &b, Some("p3")),
    )
    .await;
    // An empty page with a next link continues the round (spec 9).
    mount_page(
        &server,
        "users",
        Some("p3"),
        json!({"@odata.nextLink": format!("{b}/users/delta?$skiptoken=p4"), "value": []}),
    )
    .await;
    let mut last = page("users-delta-final.json", &b, None);
    last["value"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "soft", "@removed": {"reason": "changed"}}));
    last["value"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "hard", "@removed": {"reason": "deleted"}}));
    mount_page(&server, "users", Some("p4"), last).await;
    let (client, _) = client(&server);

    let (events, link) = finish(
        client
            .users()
            .delta()
            .select(["displayName", "givenName", "surname"])
            .stream(),
    )
    .await;

    let ids = upserted_ids(&events, |u: &User| {
        u.id.as_ref().map(graph_client::ObjectId::as_str)
    });
    assert_eq!(ids.len(), 6);
    assert_eq!(ids[0], "ffff7b1a-13b6-477b-8c0c-380905cd99f7");
    assert!(events.contains(&DeltaChange::Removed {
        id: "soft".into(),
        reason: RemovedReason::Changed
    }));
    assert!(events.contains(&DeltaChange::Removed {
        id: "hard".into(),
        reason: RemovedReason::Deleted
    }));
    assert!(
        link.expose_secret()
            .starts_with(&format!("{b}/users/delta?$deltatoken=oEcOySpF"))
    );
    assert!(
        !format!("{events:?}").contains("oEcOySpF"),
        "the delta link is redacted in Debug"
    );

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 4);
    assert_eq!(
        requests[0].url.query(),
        Some("$select=displayName,givenName,surname")
    );
}

#[tokio::test]
async fn group_whose_members_delta_spans_pages_is_merged_into_one_upsert() {
    let server = MockServer::start().await;
    let b = base(&server);
    mount_page(
        &server,
        "groups",
        None,
        page("groups-delta-large-group-page1.json", &b, Some("p2")),
    )
    .await;
    let mut second = page("groups-delta-large-group-page2.json", &b, Some("p3"));
    second["value"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "old-group", "@removed": {"reason": "changed"}}));
    mount_page(&server, "groups", Some("p2"), second).await;
    mount_page(
        &server,
        "groups",
        Some("p3"),
        page("groups-delta-final.json", &b, None),
    )
    .await;
    let (client, _) = client(&server);

    let (events, _link) = finish(
        client
            .groups()
            .delta()
            .select(["displayName", "description", "members"])
            .stream(),
    )
    .await;

    let large: Vec<&Group> = events
        .iter()
        .filter_map(|e| match e {
            DeltaChange::Upsert(g)
                if g.id
                    .as_ref()
                    .is_some_and(|i| i.as_str() == "2e5807ce-58f3-4a94-9b37-ffff2e085957") =>
            {
                Some(g)
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        large.len(),
        1,
        "one upsert for the group that came on two pages"
    );
    let members = &large[0].members_delta;
    let ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "632f6bb2-3ec8-4c1f-9073-0027a8c6859",
            "37de1ae3-408f-4702-8636-20824abda004",
            "c08a463b-7b8a-40a4-aa31-f9bf690b9551",
            "23423fa6-821e-44b2-aae4-d039d33884c2"
        ]
    );
    assert_eq!(
        members[0].removed,
        Some(RemovedReason::Deleted),
        "an id that is not a GUID is kept as is"
    );
    assert!(members[1].removed.is_none());
    assert_eq!(members.iter().filter(|m| m.is_removed()).count(), 2);
    assert!(events.contains(&DeltaChange::Removed {
        id: "old-group".into(),
        reason: RemovedReason::Changed
    }));
    assert_eq!(
        upserted_ids(&events, |g: &Group| g
            .id
            .as_ref()
            .map(graph_client::ObjectId::as_str))
        .len(),
        3
    );
}

#[tokio::test]
async fn from_now_asks_for_latest_and_the_kept_link_is_followed_verbatim() {
    let server = MockServer::start().await;
    let b = base(&server);
    Mock::given(method("GET"))
        .and(path("/v1.0/users/delta"))
        .and(query_param("$deltatoken", "latest"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(
            "users-delta-nochanges.json",
            &b,
            None,
        )))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users/delta"))
        .and(query_param("$deltatoken", "MF1LuFYbK6Lw4DtZ4o9PDrcGekRP65WEJfDmM0H26l4v9zILCPFiPwSAAeRBghxgiwsXEfywcVQ9R8VEWuYAB50Yw3KvJ-8Z1zamVotGX2b_AHVS_Z-3b0NAtmGpod"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page("users-delta-removed.json", &b, None)))
        .mount(&server)
        .await;
    let (client, _) = client(&server);

    let (first, link) = finish(client.users().delta().from_now().stream()).await;
    assert!(first.is_empty(), "from now: no objects, only the link");
    let latest = client.users().delta().latest_link().await.unwrap();
    assert_eq!(latest, link, "latest_link is the same request");

    let saved = DeltaLink::new(link.expose_secret());
    let (next, _) = finish(client.users().delta_from(&saved)).await;
    assert_eq!(next.len(), 2);
    assert!(
        matches!(&next[0], DeltaChange::Upsert(u) if u.display_name.as_deref() == Some("Testuser7"))
    );
    assert_eq!(
        next[1],
        DeltaChange::Removed {
            id: "8ffff70c-1c63-4860-b963-e34ec660931d".into(),
            reason: RemovedReason::Changed
        }
    );
    let requests = server.received_requests().await.unwrap();
    let sent = &requests[2].url;
    assert!(
        link.expose_secret()
            .ends_with(&format!("{}?{}", sent.path(), sent.query().unwrap())),
        "the delta link is sent verbatim"
    );
}

#[tokio::test]
async fn expired_delta_token_400_sync_state_not_found_requires_resync() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users/delta"))
        .respond_with(ResponseTemplate::new(400).set_body_json(common::graph_error(
            "syncStateNotFound",
            "The sync state generation is not found. The delta token is expired and data must be synchronized again.",
        )))
        .mount(&server)
        .await;
    let (client, _) = client(&server);
    let link = DeltaLink::new(format!("{}/users/delta?$deltatoken=tok-XYZ", base(&server)));

    let err = client
        .users()
        .delta_from(&link)
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();

    assert!(err.requires_resync(), "{err:?}");
    assert_eq!(err.status(), Some(400));
    assert!(
        !format!("{err} {err:?}").contains("tok-XYZ"),
        "no delta token in the error: {err}"
    );
}

#[tokio::test]
async fn gone_410_with_location_requires_resync_and_keeps_the_location() {
    let server = MockServer::start().await;
    // Microsoft documents an empty `$deltaToken`; nothing promises it, so this one carries one.
    let restart = format!("{}/groups/delta?$deltatoken=LOCATION-SECRET", base(&server));
    Mock::given(method("GET"))
        .and(path("/v1.0/groups/delta"))
        .respond_with(
            ResponseTemplate::new(410)
                .insert_header("Location", restart.as_str())
                .set_body_json(common::graph_error(
                    "resyncRequired",
                    "The delta token is no longer valid, and the app must reset the sync state.",
                )),
        )
        .mount(&server)
        .await;
    let (client, _) = client(&server);
    let link = DeltaLink::new(format!(
        "{}/groups/delta?$deltatoken=OLD-DELTA-SECRET",
        base(&server)
    ));

    let err = client
        .groups()
        .delta_from(&link)
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();

    match &err {
        GraphError::ResyncRequired { error, location } => {
            assert_eq!(error.status, 410);
            assert_eq!(error.code.as_deref(), Some("resyncRequired"));
            let location = location.as_ref().unwrap();
            assert_eq!(location.expose_secret(), restart);
            assert_eq!(location.path(), "/v1.0/groups/delta");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.resync_location()
            .map(graph_client::ResyncLocation::expose_secret),
        Some(restart.as_str())
    );
    for text in [format!("{err:?}"), err.to_string()] {
        assert!(!text.contains("LOCATION-SECRET"), "{text}");
        assert!(!text.contains("OLD-DELTA-SECRET"), "{text}");
    }
    assert!(err.requires_resync());
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "not retried"
    );
}

#[tokio::test]
async fn delta_page_with_neither_link_is_an_invalid_response() {
    let server = MockServer::start().await;
    mount_page(&server, "users", None, json!({"value": [{"id": "1"}]})).await;
    let (client, _) = client(&server);

    let err = client
        .users()
        .delta()
        .stream()
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();

    assert!(matches!(err, GraphError::InvalidResponse { .. }), "{err:?}");
}

/// A server that answers anything, to prove nothing reached it.
async fn elsewhere() -> MockServer {
    let other = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [], "@odata.deltaLink": format!("{}/v1.0/users/delta?$deltatoken=x", other.uri())
        })))
        .mount(&other)
        .await;
    other
}

fn foreign_origin(err: &GraphError) -> &str {
    match err {
        GraphError::ForeignLink { origin } => origin,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_kept_delta_link_to_another_host_or_scheme_is_refused_before_any_request() {
    let server = MockServer::start().await;
    let other = elsewhere().await;
    let (client, tokens) = client(&server);
    // Another host and port; the same host and port over https.
    let https_here = server.uri().replace("http://", "https://");
    for root in [other.uri(), https_here.clone()] {
        let link = DeltaLink::new(format!("{root}/v1.0/users/delta?$deltatoken=STOLEN"));
        let err = client
            .users()
            .delta_from(&link)
            .try_collect::<Vec<_>>()
            .await
            .unwrap_err();
        assert_eq!(foreign_origin(&err), root);
        assert!(!format!("{err:?}").contains("STOLEN"));
        let link = DeltaLink::new(format!("{root}/v1.0/groups/delta?$deltatoken=STOLEN"));
        let err = client
            .groups()
            .delta_from(&link)
            .try_collect::<Vec<_>>()
            .await
            .unwrap_err();
        assert_eq!(foreign_origin(&err), root);
    }
    assert_eq!(other.received_requests().await.unwrap().len(), 0);
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
    assert_eq!(tokens.calls(), 0, "no token was even asked for");
}

#[tokio::test]
async fn a_foreign_next_link_inside_a_delta_round_is_refused_and_the_round_keeps_no_link() {
    let server = MockServer::start().await;
    let other = elsewhere().await;
    mount_page(
        &server,
        "users",
        None,
        json!({
            "value": [{"id": "u1", "displayName": "Adele Vance"}],
            "@odata.nextLink": format!("{}/v1.0/users/delta?$skiptoken=STOLEN", other.uri())
        }),
    )
    .await;
    let (client, tokens) = client(&server);

    let mut round = client.users().delta().stream();
    let first = round.try_next().await.unwrap();
    assert!(
        matches!(first, Some(DeltaChange::Upsert(ref u)) if u.id.as_ref().unwrap().as_str() == "u1")
    );
    let err = round.try_next().await.unwrap_err();

    assert_eq!(foreign_origin(&err), other.uri());
    assert!(
        round.delta_link().is_none(),
        "a round cut short has no link"
    );
    assert_eq!(other.received_requests().await.unwrap().len(), 0);
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    assert_eq!(
        tokens.calls(),
        1,
        "the token was asked for the first page only"
    );
}

#[tokio::test]
async fn a_foreign_delta_link_ending_a_round_is_refused_instead_of_kept() {
    let server = MockServer::start().await;
    let other = elsewhere().await;
    mount_page(
        &server,
        "groups",
        None,
        json!({
            "value": [{"id": "g1", "displayName": "Sales"}],
            "@odata.deltaLink": format!("{}/v1.0/groups/delta?$deltatoken=STOLEN", other.uri())
        }),
    )
    .await;
    let (client, _) = client(&server);

    let mut round = client.groups().delta().stream();
    let err = round.try_next().await.unwrap_err();

    assert_eq!(foreign_origin(&err), other.uri());
    assert!(
        round.delta_link().is_none(),
        "the old link stays the one to keep"
    );
    assert_eq!(other.received_requests().await.unwrap().len(), 0);
}
