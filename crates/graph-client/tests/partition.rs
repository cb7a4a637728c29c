//! The partitioned listing against a fake directory that answers `$count`, `startsWith`
//! ranges and `$skiptoken` pages the way Graph documents them, folding case or not (the
//! docs do not say, so both are tested).

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use graph_client::{GraphError, User};
use serde_json::json;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// UPNs a tenant can hold: mixed case, digits, every documented symbol, guests.
const UPNS: &[&str] = &[
    "adele@contoso.test",
    "Alex@contoso.test",
    "ALLAN@contoso.test",
    "bianca@contoso.test",
    "Björn.Bauer@contoso.test",
    "christie@contoso.test",
    "0800.helpdesk@contoso.test",
    "9lives@contoso.test",
    "'quoted@contoso.test",
    ".dot@contoso.test",
    "-dash@contoso.test",
    "_under@contoso.test",
    "!bang@contoso.test",
    "#hash@contoso.test",
    "^caret@contoso.test",
    "~tilde@contoso.test",
    "megan_fabrikam.com#EXT#@contoso.test",
    "Zoe_fabrikam.com#EXT#@contoso.test",
    "zz@contoso.test",
    "Quinn@contoso.test",
];

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Seen>>>);

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    filter: Option<String>,
    skiptoken: Option<String>,
    eventual: bool,
}

impl Log {
    fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
}

/// A directory of users answering `/users`, `/users/$count`, `$filter` of `startsWith`
/// terms joined by `or`, and pages of `page` users.
struct Directory {
    users: Vec<(String, String)>,
    fold_case: bool,
    page: usize,
    refuse_filters: bool,
    fail_filtered_page: Option<usize>,
    log: Log,
    /// The server's own origin, for next links (wiremock's request URL lacks the port).
    origin: String,
}

impl Directory {
    fn new(upns: &[&str], fold_case: bool) -> Self {
        Self {
            users: upns
                .iter()
                .enumerate()
                .map(|(i, upn)| {
                    (
                        format!("00000000-0000-4000-8000-{i:012}"),
                        (*upn).to_owned(),
                    )
                })
                .collect(),
            fold_case,
            page: 3,
            refuse_filters: false,
            fail_filtered_page: None,
            log: Log::default(),
            origin: String::new(),
        }
    }

    fn matches(&self, upn: &str, filter: Option<&str>) -> bool {
        let Some(filter) = filter else { return true };
        filter.split(" or ").any(|term| {
            let literal = term
                .strip_prefix("startsWith(userPrincipalName,'")
                .and_then(|rest| rest.strip_suffix("')"))
                .map_or_else(
                    || panic!("unexpected term {term}"),
                    |l| l.replace("''", "'"),
                );
            if self.fold_case {
                upn.to_lowercase().starts_with(&literal.to_lowercase())
            } else {
                upn.starts_with(&literal)
            }
        })
    }

    fn ids(&self) -> HashSet<String> {
        self.users.iter().map(|(id, _)| id.clone()).collect()
    }
}

impl Respond for Directory {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let query: Vec<(String, String)> = request.url.query_pairs().into_owned().collect();
        let get = |key: &str| query.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let filter = get("$filter");
        let skiptoken = get("$skiptoken");
        self.log.0.lock().unwrap().push(Seen {
            path: request.url.path().to_owned(),
            filter: filter.clone(),
            skiptoken: skiptoken.clone(),
            eventual: request
                .headers
                .get("ConsistencyLevel")
                .is_some_and(|v| v == "eventual"),
        });
        if filter.is_some() && self.refuse_filters {
            return ResponseTemplate::new(400).set_body_json(json!({"error": {
                "code": "Request_UnsupportedQuery", "message": "Unsupported Query."}}));
        }
        let matching: Vec<&(String, String)> = self
            .users
            .iter()
            .filter(|(_, upn)| self.matches(upn, filter.as_deref()))
            .collect();
        if request.url.path().ends_with("/$count") {
            return ResponseTemplate::new(200).set_body_string(matching.len().to_string());
        }
        let start: usize = skiptoken.as_deref().map_or(0, |t| t.parse().unwrap());
        if filter.is_some() && start > 0 && self.fail_filtered_page == Some(start) {
            return ResponseTemplate::new(403).set_body_json(json!({"error": {
                "code": "Authorization_RequestDenied", "message": "Insufficient privileges."}}));
        }
        let end = (start + self.page).min(matching.len());
        let value: Vec<_> = matching[start..end]
            .iter()
            .map(|(id, upn)| json!({"id": id, "userPrincipalName": upn}))
            .collect();
        let mut body = json!({"value": value});
        if end < matching.len() {
            let mut next =
                url::Url::parse(&format!("{}{}", self.origin, request.url.path())).unwrap();
            let kept: Vec<(String, String)> = query
                .iter()
                .filter(|(k, _)| k != "$skiptoken")
                .cloned()
                .chain([("$skiptoken".to_owned(), end.to_string())])
                .collect();
            next.query_pairs_mut().clear().extend_pairs(kept);
            body["@odata.nextLink"] = json!(next.as_str());
        }
        ResponseTemplate::new(200).set_body_json(body)
    }
}

async fn serve(mut directory: Directory) -> (MockServer, Log, HashSet<String>) {
    let server = MockServer::start().await;
    directory.origin = server.uri();
    let log = directory.log.clone();
    let ids = directory.ids();
    Mock::given(wiremock::matchers::method("GET"))
        .respond_with(directory)
        .mount(&server)
        .await;
    (server, log, ids)
}

fn ids_once(users: &[User]) -> HashSet<String> {
    let ids: Vec<String> = users
        .iter()
        .map(|u| u.id.as_ref().unwrap().to_string())
        .collect();
    let set: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(set.len(), ids.len(), "an id was yielded twice");
    set
}

#[tokio::test]
async fn every_user_comes_once_whether_or_not_the_service_folds_case() {
    for fold_case in [true, false] {
        let (server, log, expected) = serve(Directory::new(UPNS, fold_case)).await;
        let (client, _) = common::client(&server);

        let users: Vec<User> = client
            .users()
            .list_partitioned()
            .select(["id", "userPrincipalName"])
            .top(3)
            .partitions(4)
            .stream()
            .try_collect()
            .await
            .unwrap();

        assert_eq!(ids_once(&users), expected, "fold_case {fold_case}");
        let seen = log.all();
        // One $count of the whole collection and 32 for the ranges (a letter each, digits and symbols seven at a time), advanced queries.
        let counts: Vec<&Seen> = seen
            .iter()
            .filter(|s| s.path.ends_with("/$count"))
            .collect();
        assert_eq!(counts.len(), 1 + 32);
        assert!(counts.iter().all(|s| s.eventual));
        assert_eq!(counts.iter().filter(|s| s.filter.is_none()).count(), 1);
        // The ranges: plain queries (no ConsistencyLevel), at most 15 terms each, and
        // together every printable ASCII character once.
        let ranges: Vec<&Seen> = seen
            .iter()
            .filter(|s| s.path == "/v1.0/users" && s.skiptoken.is_none())
            .collect();
        assert!(ranges.len() >= 7, "{} ranges", ranges.len());
        assert!(ranges.iter().all(|s| !s.eventual));
        let mut literals: Vec<String> = Vec::new();
        for range in &ranges {
            let filter = range.filter.as_deref().expect("every range is filtered");
            let terms: Vec<&str> = filter.split(" or ").collect();
            assert!(terms.len() <= 15, "{filter}");
            literals.extend(terms.iter().map(|t| (*t).to_owned()));
        }
        assert_eq!(literals.len(), 94);
        assert!(literals.contains(&"startsWith(userPrincipalName,'''')".to_owned()));
        assert!(literals.contains(&"startsWith(userPrincipalName,'#')".to_owned()));
        // No unfiltered chain ran: the ranges covered every user.
        assert!(
            seen.iter()
                .all(|s| s.path.ends_with("/$count") || s.filter.is_some())
        );
    }
}

#[tokio::test]
async fn a_user_outside_the_ranges_is_listed_by_the_single_chain_after_them() {
    let mut upns = UPNS.to_vec();
    upns.push("élodie@contoso.test");
    let (server, log, expected) = serve(Directory::new(&upns, true)).await;
    let (client, _) = common::client(&server);

    let users: Vec<User> = client
        .users()
        .list_partitioned()
        .top(3)
        .partitions(3)
        .stream()
        .try_collect()
        .await
        .unwrap();

    assert_eq!(ids_once(&users), expected);
    let unfiltered: Vec<Seen> = log
        .all()
        .into_iter()
        .filter(|s| s.path == "/v1.0/users" && s.filter.is_none())
        .collect();
    // The whole chain (21 users in pages of 3), its known users dropped as seen.
    assert_eq!(unfiltered.len(), 7);
}

#[tokio::test]
async fn a_refused_range_falls_back_to_the_single_chain_and_says_so() {
    let mut directory = Directory::new(UPNS, true);
    directory.refuse_filters = true;
    let (server, log, expected) = serve(directory).await;
    let (client, _) = common::client(&server);
    let captured = common::Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let users: Vec<User> = client
        .users()
        .list_partitioned()
        .top(3)
        .partitions(4)
        .stream()
        .try_collect()
        .await
        .unwrap();

    assert_eq!(ids_once(&users), expected);
    let text = captured.text();
    assert!(
        text.contains("falls back to the single chain"),
        "no warning in {text:?}"
    );
    let seen = log.all();
    assert!(
        seen.iter()
            .any(|s| s.path == "/v1.0/users" && s.filter.is_none())
    );
}

#[tokio::test]
async fn a_range_failing_mid_way_fails_the_whole_listing() {
    let mut directory = Directory::new(UPNS, true);
    directory.fail_filtered_page = Some(3);
    directory.page = 3;
    // Three users begin with 'a': the range holding 'a' has a second page, which fails.
    let (server, _, _) = serve(directory).await;
    let (client, _) = common::client(&server);

    let result: Result<Vec<User>, GraphError> = client
        .users()
        .list_partitioned()
        .top(3)
        .partitions(2)
        .stream()
        .try_collect()
        .await;

    let error = result.unwrap_err();
    assert_eq!(error.status(), Some(403), "{error:?}");
    assert_eq!(error.code(), Some("Authorization_RequestDenied"));
}

#[tokio::test]
async fn a_small_collection_is_listed_beside_its_count_in_one_round_trip() {
    let mut directory = Directory::new(&UPNS[..5], true);
    directory.page = 10;
    let (server, log, expected) = serve(directory).await;
    let (client, _) = common::client(&server);

    let users: Vec<User> = client
        .users()
        .list_partitioned()
        .stream()
        .try_collect()
        .await
        .unwrap();

    assert_eq!(ids_once(&users), expected);
    // The count and the single chain's first page go out together (in either order);
    // the page has no next link, so the listing is done.
    let seen = log.all();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.iter()
            .any(|s| s.path.ends_with("/users/$count") && s.eventual)
    );
    assert!(seen.iter().any(|s| s.path == "/v1.0/users"
        && s.filter.is_none()
        && s.skiptoken.is_none()
        && !s.eventual));
}

#[tokio::test]
async fn a_large_collection_is_split_after_its_first_page_and_yields_each_user_once() {
    let mut directory = Directory::new(UPNS, true);
    directory.page = 3;
    let (server, log, expected) = serve(directory).await;
    let (client, _) = common::client(&server);

    let users: Vec<User> = client
        .users()
        .list_partitioned()
        .top(3)
        .stream()
        .try_collect()
        .await
        .unwrap();

    // The first page's users come again in the ranges and are dropped as seen.
    assert_eq!(ids_once(&users), expected);
    let seen = log.all();
    let unfiltered: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.path == "/v1.0/users" && s.filter.is_none())
        .collect();
    assert_eq!(unfiltered.len(), 1, "only the first page: {unfiltered:?}");
    assert!(unfiltered[0].skiptoken.is_none());
    assert!(
        seen.iter()
            .filter(|s| s.path == "/v1.0/users" && s.filter.is_some())
            .count()
            >= 2,
        "the ranges ran"
    );
}

#[tokio::test]
async fn a_refused_count_falls_back_to_the_single_chain() {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::path("/v1.0/users/$count"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "code": "Request_BadRequest", "message": "$count is not currently supported."}})))
        .mount(&server)
        .await;
    Mock::given(wiremock::matchers::path("/v1.0/users"))
        .and(wiremock::matchers::query_param_is_missing("$filter"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [{"id": "u1"}]})))
        .expect(1)
        .mount(&server)
        .await;
    let (client, _) = common::client(&server);

    let users: Vec<User> = client
        .users()
        .list_partitioned()
        .partitions(8)
        .stream()
        .try_collect()
        .await
        .unwrap();

    assert_eq!(users.len(), 1);
    assert_eq!(users[0].id.as_ref().unwrap().as_str(), "u1");
}

#[tokio::test]
async fn a_count_that_is_not_a_number_is_a_typed_error() {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::path("/v1.0/users/$count"))
        .respond_with(ResponseTemplate::new(200).set_body_string("many"))
        .mount(&server)
        .await;
    // The first page has a next link, so the listing needs the count to go on.
    let next = format!("{}/v1.0/users?$skiptoken=2", server.uri());
    Mock::given(wiremock::matchers::path("/v1.0/users"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"value": [{"id": "u1"}], "@odata.nextLink": next})),
        )
        .mount(&server)
        .await;
    let (client, _) = common::client(&server);

    let error = client
        .users()
        .list_partitioned()
        .stream()
        .try_collect::<Vec<User>>()
        .await
        .unwrap_err();

    assert!(
        matches!(error, GraphError::InvalidResponse { ref path, .. } if path.ends_with("/users/$count")),
        "{error:?}"
    );
}
