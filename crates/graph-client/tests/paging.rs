//! Paging (spec 8a, 14), query options and `ConsistencyLevel` (spec 8c), body limits and decode errors.

mod common;

use std::sync::Arc;

use common::{base, builder, client};
use futures::{StreamExt, TryStreamExt};
use graph_client::{DecodeErrorKind, GraphError, NextLink, User, UserProperty};
use serde_json::json;
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn user(id: &str) -> serde_json::Value {
    json!({"id": id, "displayName": format!("User {id}")})
}

#[tokio::test]
async fn three_pages_with_an_empty_middle_page_are_all_followed() {
    let server = MockServer::start().await;
    let b = base(&server);
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .and(query_param_is_missing("$skiptoken"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "@odata.nextLink": format!("{b}/users?$top=2&$skiptoken=page2"),
            "value": [user("1"), user("2")]
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .and(query_param("$skiptoken", "page2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "@odata.nextLink": format!("{b}/users?$top=2&$skiptoken=page3"),
            "value": []
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .and(query_param("$skiptoken", "page3"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [user("3")]})))
        .mount(&server)
        .await;
    let (client, _) = client(&server);

    let users: Vec<User> = client
        .users()
        .list()
        .top(2)
        .stream()
        .try_collect()
        .await
        .unwrap();
    let ids: Vec<&str> = users
        .iter()
        .map(|u| u.id.as_ref().unwrap().as_str())
        .collect();
    assert_eq!(ids, ["1", "2", "3"]);

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].url.query(), Some("$top=2"));
    // The next link is followed verbatim, with its own query.
    assert_eq!(requests[1].url.query(), Some("$top=2&$skiptoken=page2"));

    let sizes: Vec<usize> = client
        .users()
        .list()
        .top(2)
        .pages()
        .map_ok(|p| p.items().len())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(sizes, [2, 0, 1]);
}

#[tokio::test]
async fn consistency_level_is_sent_on_every_page() {
    let server = MockServer::start().await;
    let b = base(&server);
    let first = common::fixture("users-list-filter-endswith-count-nextlink.json");
    let mut first = first;
    // The documented next link, moved onto the mock server (its query kept as documented).
    let documented = first["@odata.nextLink"].as_str().unwrap().to_owned();
    first["@odata.nextLink"] = json!(documented.replace("https://graph.microsoft.com/v1.0", &b));
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .and(query_param_is_missing("$skiptoken"))
        .and(query_param("$filter", "endsWith(mail,'@contoso.com')"))
        .and(query_param("$count", "true"))
        .and(header("ConsistencyLevel", "eventual"))
        .respond_with(ResponseTemplate::new(200).set_body_json(first))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .and(query_param(
            "$skiptoken",
            "m~AQAnOzEyN2NjN2I3NTQzYzQ0YzA4NjlhYjU5MzUzYmNhNGI2OzswOzA7",
        ))
        .and(header("ConsistencyLevel", "eventual"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [user("2")]})))
        .mount(&server)
        .await;
    let (client, _) = client(&server);

    let request = client
        .users()
        .list()
        .filter("endsWith(mail,'@contoso.com')");
    assert!(request.is_consistency_eventual());
    let pages: Vec<_> = request.pages().try_collect().await.unwrap();

    assert_eq!(pages.len(), 2);
    assert_eq!(pages[0].count(), Some(1350));
    assert!(pages[0].next_link().unwrap().consistency_eventual());
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!(r.headers.get("consistencylevel").unwrap(), "eventual");
    }
}

#[tokio::test]
async fn foreign_next_link_is_refused_before_the_token_is_asked() {
    let server = MockServer::start().await;
    let other = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "@odata.nextLink": format!("{}/v1.0/users?$skiptoken=stolen", other.uri()),
            "value": [user("1")]
        })))
        .mount(&server)
        .await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": []})))
        .mount(&other)
        .await;
    let (client, tokens) = client(&server);

    let results: Vec<Result<User, GraphError>> = client.users().list().stream().collect().await;

    assert_eq!(results.len(), 2);
    assert!(results[0].is_ok());
    match &results[1] {
        Err(GraphError::ForeignLink { origin }) => assert_eq!(origin, &other.uri()),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        other.received_requests().await.unwrap().len(),
        0,
        "nothing reached the other host"
    );
    assert_eq!(
        tokens.calls(),
        1,
        "the token was asked for the first page only"
    );
}

#[tokio::test]
async fn next_link_equal_to_the_previous_one_is_an_error() {
    let server = MockServer::start().await;
    let b = base(&server);
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .and(query_param_is_missing("$skiptoken"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "@odata.nextLink": format!("{b}/users?$skiptoken=same"), "value": [user("1")]
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .and(query_param("$skiptoken", "same"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "@odata.nextLink": format!("{b}/users?$skiptoken=same"), "value": [user("2")]
        })))
        .mount(&server)
        .await;
    let (client, _) = client(&server);

    let results: Vec<Result<graph_client::Page<User>, GraphError>> =
        client.users().list().pages().collect().await;

    // Both pages are given; the repeated link is refused before it is requested again.
    assert_eq!(results.len(), 3, "the stream ends after the error");
    assert!(results[0].is_ok() && results[1].is_ok());
    assert!(matches!(&results[2], Err(GraphError::NextLinkLoop { path }) if path == "/v1.0/users"));
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

/// Serves `/v1.0/users?$skiptoken=<from>` with a next link to `to` (none for "end").
async fn chain(server: &MockServer, links: &[(&str, &str)]) {
    let b = base(server);
    for (from, to) in links {
        let next = if *to == "end" {
            json!({"value": [user(from)]})
        } else {
            json!({"@odata.nextLink": format!("{b}/users?$skiptoken={to}"), "value": [user(from)]})
        };
        let mock = Mock::given(method("GET")).and(path("/v1.0/users"));
        let mock = if *from == "first" {
            mock.and(query_param_is_missing("$skiptoken"))
        } else {
            mock.and(query_param("$skiptoken", *from))
        };
        mock.respond_with(ResponseTemplate::new(200).set_body_json(next))
            .mount(server)
            .await;
    }
}

#[tokio::test]
async fn a_cycle_longer_than_one_page_is_an_error() {
    let server = MockServer::start().await;
    // first → B → C → B → ...: the .NET guard (next == previous) never sees it.
    chain(&server, &[("first", "B"), ("B", "C"), ("C", "B")]).await;
    let (client, _) = client(&server);

    let results: Vec<Result<graph_client::Page<User>, GraphError>> =
        client.users().list().pages().collect().await;

    assert_eq!(results.len(), 4);
    assert!(results[..3].iter().all(Result::is_ok));
    assert!(matches!(&results[3], Err(GraphError::NextLinkLoop { .. })));
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_listing_past_the_page_cap_is_a_typed_error() {
    let server = MockServer::start().await;
    chain(
        &server,
        &[("first", "2"), ("2", "3"), ("3", "4"), ("4", "end")],
    )
    .await;
    let tokens = std::sync::Arc::new(common::CountingTokens::default());
    let capped = common::builder(&server, tokens.clone())
        .max_pages(3)
        .build()
        .unwrap();

    let results: Vec<Result<graph_client::Page<User>, GraphError>> =
        capped.users().list().pages().collect().await;

    assert_eq!(results.len(), 4);
    assert!(
        matches!(&results[3], Err(GraphError::TooManyPages { path, limit: 3 }) if path == "/v1.0/users")
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
    assert_eq!(
        results[3].as_ref().unwrap_err().action(),
        graph_client::ErrorAction::FixConfiguration
    );

    let uncapped = common::builder(&server, tokens).build().unwrap();
    let users: Vec<User> = uncapped
        .users()
        .list()
        .stream()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(users.len(), 4);
}

#[tokio::test]
async fn top_outside_1_to_999_is_rejected_without_sending() {
    let server = MockServer::start().await;
    let (client, tokens) = client(&server);

    let err = client.users().list().top(1000).send().await.unwrap_err();
    assert!(matches!(err, GraphError::InvalidRequest { .. }), "{err:?}");
    let streamed: Vec<Result<User, GraphError>> =
        client.users().list().top(0).stream().collect().await;
    assert_eq!(streamed.len(), 1);
    assert!(matches!(
        streamed[0],
        Err(GraphError::InvalidRequest { .. })
    ));

    assert_eq!(server.received_requests().await.unwrap().len(), 0);
    assert_eq!(tokens.calls(), 0);
}

#[tokio::test]
async fn saved_next_link_resumes_the_listing_with_its_header() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .and(query_param("$skiptoken", "saved"))
        .and(header("ConsistencyLevel", "eventual"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [user("9")]})))
        .mount(&server)
        .await;
    let (client, _) = client(&server);
    let saved = NextLink::new(format!(
        "{}/users?$count=true&$skiptoken=saved",
        base(&server)
    ))
    .with_consistency_eventual(true);

    let users: Vec<User> = client.resume_stream(saved).try_collect().await.unwrap();

    assert_eq!(users.len(), 1);
    assert_eq!(users[0].id.as_ref().unwrap().as_str(), "9");
}

#[tokio::test]
async fn query_options_are_encoded_and_selected_extras_kept() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .and(query_param(
            "$select",
            "id,displayName,extension_abc_costCenter",
        ))
        .and(query_param("$search", "\"displayName:wa\"")) // Graph's $search quoting (spec 8c)
        .and(query_param("$top", "50"))
        .and(query_param_is_missing("$count"))
        .and(header("ConsistencyLevel", "eventual"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [
            {"id": "1", "displayName": "Wanda", "extension_abc_costCenter": "CC-7"}
        ]})))
        .mount(&server)
        .await;
    let (client, _) = client(&server);

    let page = client
        .users()
        .list()
        .select([UserProperty::Id, UserProperty::DisplayName])
        .select(["extension_abc_costCenter"])
        .search("displayName", "wa")
        .top(50)
        .send()
        .await
        .unwrap();

    assert_eq!(page.items()[0].extra["extension_abc_costCenter"], "CC-7");
    let query = server.received_requests().await.unwrap()[0]
        .url
        .query()
        .unwrap()
        .to_owned();
    assert!(query.contains("$search=%22displayName:wa%22"), "{query}");
}

#[tokio::test]
async fn order_by_with_filter_adds_count_and_the_header_and_default_page_size_applies() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/groups"))
        .and(query_param("$filter", "startswith(displayName,'a')"))
        .and(query_param("$orderby", "displayName"))
        .and(query_param("$count", "true"))
        .and(query_param("$top", "999"))
        .and(header("ConsistencyLevel", "eventual"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(common::fixture("groups-count-consistencylevel.json")),
        )
        .mount(&server)
        .await;
    let tokens = Arc::new(common::CountingTokens::default());
    let client = builder(&server, tokens).page_size(999).build().unwrap();

    let page = client
        .groups()
        .list()
        .filter("startswith(displayName,'a')")
        .order_by("displayName")
        .send()
        .await
        .unwrap();

    assert_eq!(page.count(), Some(1));
    assert_eq!(page.items()[0].mail_nickname.as_deref(), Some("a241"));
}

#[tokio::test]
async fn expand_manager_decodes_the_manager() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .and(query_param("$expand", "manager"))
        .and(query_param_is_missing("$count"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [{
            "id": "1",
            "manager": {"@odata.type": "#microsoft.graph.user", "id": "m", "displayName": "Sara Davis"}
        }]})))
        .mount(&server)
        .await;
    let (client, _) = client(&server);

    let users: Vec<User> = client
        .users()
        .list()
        .expand_manager()
        .stream()
        .try_collect()
        .await
        .unwrap();

    let manager = users[0].manager.as_deref().unwrap();
    assert_eq!(
        manager.as_user().unwrap().display_name.as_deref(),
        Some("Sara Davis")
    );
    assert!(
        server.received_requests().await.unwrap()[0]
            .headers
            .get("consistencylevel")
            .is_none()
    );
}

#[tokio::test]
async fn body_over_the_size_limit_is_a_typed_error() {
    let server = MockServer::start().await;
    let big: Vec<serde_json::Value> = (0..200).map(|i| user(&i.to_string())).collect();
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": big})))
        .mount(&server)
        .await;
    let tokens = Arc::new(common::CountingTokens::default());
    let client = builder(&server, tokens)
        .max_response_bytes(1024)
        .build()
        .unwrap();

    let err = client.users().list().send().await.unwrap_err();

    assert!(
        matches!(&err, GraphError::BodyTooLarge { limit: 1024, path } if path == "/v1.0/users"),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "not retried"
    );
}

#[tokio::test]
async fn truncated_and_malformed_json_are_decode_errors_naming_path_and_field() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .and(query_param("$skiptoken", "secret-skip"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"{"value":[{"id":"1"},{"id":"2","displayNa"#,
            "application/json",
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/groups"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"{"value":[{"id":"g1"},{"id":"g2","securityEnabled":"PRIVATE-VALUE"}]}"#,
            "application/json",
        ))
        .mount(&server)
        .await;
    let (client, _) = client(&server);

    let link = NextLink::new(format!("{}/users?$skiptoken=secret-skip", base(&server)));
    let mut pages = std::pin::pin!(client.resume_pages::<User>(link));
    let truncated = pages.next().await.unwrap().unwrap_err();
    match &truncated {
        GraphError::Decode { path, kind, .. } => {
            assert_eq!(path, "/v1.0/users");
            assert_eq!(*kind, DecodeErrorKind::Truncated);
        }
        other => panic!("{other:?}"),
    }
    assert!(!truncated.to_string().contains("secret-skip"));

    let malformed = client.groups().list().send().await.unwrap_err();
    match &malformed {
        GraphError::Decode {
            path, field, kind, ..
        } => {
            assert_eq!(path, "/v1.0/groups");
            assert_eq!(field, "value[1].securityEnabled");
            assert_eq!(*kind, DecodeErrorKind::Data);
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{malformed} {malformed:?}").contains("PRIVATE-VALUE"));
}

#[tokio::test]
async fn large_page_arriving_in_many_chunks_decodes_whole() {
    let server = MockServer::start().await;
    let users: Vec<serde_json::Value> = (0..999)
        .map(|i| json!({"id": format!("{i:08}"), "displayName": format!("User {i}"), "mail": format!("user{i}@contoso.com"),
            "businessPhones": ["+1 425 555 0109"], "jobTitle": "Retail Manager", "officeLocation": "18/2111"}))
        .collect();
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": users})))
        .mount(&server)
        .await;
    let (client, _) = client(&server);

    let page = client.users().list().top(999).send().await.unwrap();

    assert_eq!(page.items().len(), 999);
    assert_eq!(
        page.items()[998].mail.as_deref(),
        Some("user998@contoso.com")
    );
}

#[tokio::test]
async fn a_null_value_is_an_empty_page_for_users_groups_members_and_delta() {
    let server = MockServer::start().await;
    let b = base(&server);
    // Users: a first page of `null`, its next link followed to one user.
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .and(query_param_is_missing("$skiptoken"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "@odata.nextLink": format!("{b}/users?$skiptoken=p2"),
            "value": null
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .and(query_param("$skiptoken", "p2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [user("1")]})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/groups"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": null})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/groups/g1/members"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": null})))
        .mount(&server)
        .await;
    for resource in ["users", "groups"] {
        Mock::given(method("GET"))
            .and(path(format!("/v1.0/{resource}/delta")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "value": null,
                "@odata.deltaLink": format!("{b}/{resource}/delta?$deltatoken=next")
            })))
            .mount(&server)
            .await;
    }
    let (client, _) = client(&server);

    let sizes: Vec<usize> = client
        .users()
        .list()
        .pages()
        .map_ok(|p| p.items().len())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        sizes,
        [0, 1],
        "the null page is empty and its next link followed"
    );
    let groups: Vec<graph_client::Group> =
        client.groups().list().stream().try_collect().await.unwrap();
    assert!(groups.is_empty());
    let members = client.groups().members("g1").send().await.unwrap();
    assert!(members.items().is_empty());
    assert!(members.next_link().is_none());

    let mut users_round = client.users().delta().stream();
    assert!(users_round.try_next().await.unwrap().is_none());
    assert_eq!(
        users_round.delta_link().unwrap().expose_secret(),
        format!("{b}/users/delta?$deltatoken=next")
    );
    let mut groups_round = client.groups().delta().stream();
    assert!(groups_round.try_next().await.unwrap().is_none());
    assert_eq!(
        groups_round.delta_link().unwrap().expose_secret(),
        format!("{b}/groups/delta?$deltatoken=next")
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 6);
}

#[tokio::test]
async fn a_saved_next_link_to_another_host_or_scheme_is_refused_before_any_request() {
    let server = MockServer::start().await;
    let other = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [user("x")]})))
        .mount(&other)
        .await;
    let (client, tokens) = client(&server);
    let https_here = server.uri().replace("http://", "https://");
    for root in [other.uri(), https_here] {
        let link = NextLink::new(format!("{root}/v1.0/users?$skiptoken=STOLEN"));
        let items: Vec<Result<User, GraphError>> = client.resume_stream(link).collect().await;
        assert_eq!(items.len(), 1);
        match &items[0] {
            Err(err @ GraphError::ForeignLink { origin }) => {
                assert_eq!(origin, &root);
                assert!(!format!("{err:?}").contains("STOLEN"));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(other.received_requests().await.unwrap().len(), 0);
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
    assert_eq!(tokens.calls(), 0);
}

/// Serves `pages` pages of two users each, counting the page requests as they arrive.
struct CountingPages {
    base: String,
    pages: usize,
    served: Arc<std::sync::atomic::AtomicUsize>,
}

impl wiremock::Respond for CountingPages {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let page: usize = request
            .url
            .query_pairs()
            .find(|(k, _)| k == "$skiptoken")
            .map_or(0, |(_, v)| v.parse().unwrap());
        self.served
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut body = json!({"value": [user(&format!("{page}-a")), user(&format!("{page}-b"))]});
        if page + 1 < self.pages {
            body["@odata.nextLink"] = json!(format!("{}/users?$skiptoken={}", self.base, page + 1));
        }
        ResponseTemplate::new(200).set_body_json(body)
    }
}

#[tokio::test]
async fn a_stream_over_many_pages_asks_for_a_page_only_when_its_items_are_wanted() {
    let server = MockServer::start().await;
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .respond_with(CountingPages {
            base: base(&server),
            pages: 10,
            served: asked.clone(),
        })
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users/probe"))
        .respond_with(ResponseTemplate::new(200).set_body_json(user("probe")))
        .mount(&server)
        .await;
    let (client, _) = client(&server);
    let pages_asked = || asked.load(std::sync::atomic::Ordering::SeqCst);

    let mut users = client.users().list().stream();
    assert_eq!(pages_asked(), 0, "nothing is asked before the first poll");
    for taken in 1..=20usize {
        let user = users.try_next().await.unwrap().unwrap();
        let page = (taken - 1) / 2;
        let side = if taken % 2 == 1 { "a" } else { "b" };
        assert_eq!(user.id.unwrap().as_str(), format!("{page}-{side}"));
        // A request of our own after this item, answered before we look: a prefetch started
        // when the item was handed out would have reached the server by then.
        client.users().get("probe").send().await.unwrap();
        assert_eq!(
            pages_asked(),
            page + 1,
            "after item {taken} only the page holding it was asked for"
        );
    }
    assert!(users.try_next().await.unwrap().is_none());
    assert_eq!(pages_asked(), 10);

    // The same for `.pages()`: page k is asked for when page k is wanted.
    asked.store(0, std::sync::atomic::Ordering::SeqCst);
    let mut pages = client.users().list().pages();
    for wanted in 1..=10 {
        let page = pages.try_next().await.unwrap().unwrap();
        assert_eq!(page.items().len(), 2);
        client.users().get("probe").send().await.unwrap();
        assert_eq!(pages_asked(), wanted);
    }
    assert!(pages.try_next().await.unwrap().is_none());
}
