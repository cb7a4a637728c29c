//! JSON `$batch` (spec 12): splitting, matching by id, per-item retry through the gate.

mod common;

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use common::client;
use futures::TryStreamExt as _;
use graph_client::{BatchItem, DirectoryObject, Page};
use serde_json::{Value, json};
use tokio::time::Instant;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Answers every item of a batch in reverse order; the item with `throttle_url` gets one
/// 429 with `Retry-After: 3` the first time it is seen.
struct Batcher {
    throttle_url: Option<String>,
    throttled: Mutex<HashSet<String>>,
}

impl Respond for Batcher {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let mut responses: Vec<Value> = body["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let url = r["url"].as_str().unwrap().to_owned();
                let group = url.split('/').nth(2).unwrap().to_owned();
                if self.throttle_url.as_deref() == Some(url.as_str()) && self.throttled.lock().unwrap().insert(url.clone()) {
                    return json!({"id": r["id"], "status": 429, "headers": {"retry-after": "3"},
                        "body": common::fixture("error-throttled-429.json")});
                }
                json!({"id": r["id"], "status": 200, "headers": {"Content-Type": "application/json"},
                    "body": {"value": [{"@odata.type": "#microsoft.graph.user", "id": format!("member-of-{group}")}]}})
            })
            .collect();
        responses.reverse();
        ResponseTemplate::new(200).set_body_json(json!({ "responses": responses }))
    }
}

fn batch_sizes(requests: &[Request]) -> Vec<usize> {
    requests
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["requests"]
                .as_array()
                .unwrap()
                .len()
        })
        .collect()
}

#[tokio::test]
async fn forty_five_requests_go_out_as_20_20_5_and_answers_are_matched_by_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1.0/$batch"))
        .respond_with(Batcher {
            throttle_url: None,
            throttled: Mutex::default(),
        })
        .mount(&server)
        .await;
    let (client, _) = client(&server);
    let items: Vec<BatchItem> = (0..45)
        .map(|i| BatchItem::get(format!("/groups/g{i}/members")))
        .collect();

    let results = client.batch::<Page<DirectoryObject>>(items).await.unwrap();

    assert_eq!(results.len(), 45);
    for (i, result) in results.iter().enumerate() {
        let page = result.as_ref().unwrap();
        assert_eq!(
            page.items()[0].id().unwrap().as_str(),
            format!("member-of-g{i}"),
            "answer {i} matched by id"
        );
    }
    let requests = server.received_requests().await.unwrap();
    assert_eq!(batch_sizes(&requests), [20, 20, 5]);
    let first: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(
        first["requests"][0],
        json!({"id": "0", "method": "GET", "url": "/groups/g0/members"})
    );
    assert_eq!(
        requests[0].headers.get("content-type").unwrap(),
        "application/json"
    );
}

#[tokio::test(start_paused = true)]
async fn throttled_item_is_retried_alone_in_a_later_batch_after_its_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1.0/$batch"))
        .respond_with(Batcher {
            throttle_url: Some("/groups/g7/members".into()),
            throttled: Mutex::default(),
        })
        .mount(&server)
        .await;
    let (client, _) = client(&server);
    let items: Vec<BatchItem> = (0..10)
        .map(|i| BatchItem::get(format!("/groups/g{i}/members")))
        .collect();

    let start = Instant::now();
    let results = client.batch::<Page<DirectoryObject>>(items).await.unwrap();

    assert_eq!(
        start.elapsed(),
        Duration::from_secs(3),
        "waited the item's own Retry-After"
    );
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(
        results[7].as_ref().unwrap().items()[0]
            .id()
            .unwrap()
            .as_str(),
        "member-of-g7"
    );
    let requests = server.received_requests().await.unwrap();
    assert_eq!(batch_sizes(&requests), [10, 1]);
    let retry: Value = serde_json::from_slice(&requests[1].body).unwrap();
    assert_eq!(retry["requests"][0]["url"], "/groups/g7/members");
    assert_eq!(retry["requests"][0]["id"], "7");
}

#[tokio::test]
async fn list_requests_become_batch_items_with_their_consistency_header() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1.0/$batch"))
        .respond_with(Batcher {
            throttle_url: None,
            throttled: Mutex::default(),
        })
        .mount(&server)
        .await;
    let (client, _) = client(&server);
    let item = client
        .groups()
        .members("g1")
        .select(["id"])
        .count()
        .to_batch_item()
        .unwrap();
    assert_eq!(item.url(), "/groups/g1/members?$select=id&$count=true");

    let results = client
        .batch::<Page<DirectoryObject>>(vec![item, BatchItem::get("/groups/g2/members")])
        .await
        .unwrap();

    assert_eq!(results.len(), 2);
    let body: Value =
        serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(
        body["requests"][0]["headers"],
        json!({"ConsistencyLevel": "eventual"})
    );
    assert!(body["requests"][1].get("headers").is_none());
}

#[tokio::test]
async fn item_errors_are_typed_per_item() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1.0/$batch"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"responses": [
            {"id": "1", "status": 404, "headers": {"request-id": "r-404"}, "body": common::graph_error("Request_ResourceNotFound", "gone")},
            {"id": "0", "status": 200, "body": {"value": []}}
        ]})))
        .mount(&server)
        .await;
    let (client, _) = client(&server);

    let results = client
        .batch::<Page<DirectoryObject>>(vec![
            BatchItem::get("/groups/a/members"),
            BatchItem::get("/groups/b/members"),
        ])
        .await
        .unwrap();

    assert!(results[0].as_ref().unwrap().items().is_empty());
    let err = results[1].as_ref().unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.service_error().unwrap().path, "/v1.0/groups/b/members");
}

#[tokio::test(start_paused = true)]
async fn outer_424_is_retried_like_a_throttled_batch() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1.0/$batch"))
        .respond_with(ResponseTemplate::new(424).insert_header("Retry-After", "2"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1.0/$batch"))
        .respond_with(Batcher {
            throttle_url: None,
            throttled: Mutex::default(),
        })
        .mount(&server)
        .await;
    let (client, _) = client(&server);

    let start = Instant::now();
    let results = client
        .batch::<Page<DirectoryObject>>(vec![BatchItem::get("/groups/g1/members")])
        .await
        .unwrap();

    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert!(results[0].is_ok());
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn next_links_of_eventual_batch_items_send_consistency_level_again() {
    let server = MockServer::start().await;
    let base = common::base(&server);
    Mock::given(method("POST"))
        .and(path("/v1.0/$batch"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"responses": [
            {"id": "1", "status": 200, "body": {"value": [],
                "@odata.nextLink": format!("{base}/groups/g2/members?$skiptoken=plain")}},
            {"id": "0", "status": 200, "body": {"value": [],
                "@odata.nextLink": format!("{base}/groups/g1/members?$count=true&$skiptoken=advanced")}},
        ]})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/groups/g1/members"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"value": [{"@odata.type": "#microsoft.graph.user", "id": "u1"}]}),
        ))
        .mount(&server)
        .await;
    let (client, _) = client(&server);
    let eventual = client
        .groups()
        .members("g1")
        .count()
        .to_batch_item()
        .unwrap();
    assert!(eventual.url().contains("$count=true"));

    let mut results = client
        .batch_pages::<DirectoryObject>(vec![eventual, BatchItem::get("/groups/g2/members")])
        .await
        .unwrap();
    let plain = results.pop().unwrap().unwrap();
    let advanced = results.pop().unwrap().unwrap();
    assert!(!plain.next_link().unwrap().consistency_eventual());
    let link = advanced.next_link().unwrap().clone();
    assert!(link.consistency_eventual());

    let members: Vec<DirectoryObject> = client.resume_stream(link).try_collect().await.unwrap();
    assert_eq!(members.len(), 1);
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[1].url.query(),
        Some("$count=true&$skiptoken=advanced")
    );
    assert_eq!(
        requests[1].headers.get("consistencylevel").unwrap(),
        "eventual"
    );
}

/// Answers the first batch with item "0" twice, both 429; later batches normally.
struct Repeater {
    calls: Mutex<u32>,
}

impl Respond for Repeater {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let mut calls = self.calls.lock().unwrap();
        *calls += 1;
        let ids: Vec<Value> = body["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].clone())
            .collect();
        let responses: Vec<Value> = if *calls == 1 {
            let throttled =
                json!({"id": "0", "status": 429, "headers": {"Retry-After": "1"}, "body": {}});
            vec![throttled.clone(), throttled]
        } else {
            ids.iter()
                .map(|id| json!({"id": id, "status": 200, "body": {"value": []}}))
                .collect()
        };
        ResponseTemplate::new(200).set_body_json(json!({ "responses": responses }))
    }
}

#[tokio::test(start_paused = true)]
async fn a_repeated_answer_never_sends_an_id_twice_in_one_batch() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1.0/$batch"))
        .respond_with(Repeater {
            calls: Mutex::new(0),
        })
        .mount(&server)
        .await;
    let (client, _) = client(&server);

    let results = client
        .batch_pages::<DirectoryObject>(vec![BatchItem::get("/groups/g1/members")])
        .await
        .unwrap();

    assert_eq!(results.len(), 1);
    assert!(results[0].as_ref().unwrap().items().is_empty());
    let requests = server.received_requests().await.unwrap();
    assert_eq!(
        batch_sizes(&requests),
        [1, 1],
        "the retry carries the item once"
    );
}

/// Answers each item by its URL from a script: the n-th time an URL is seen it gets the
/// n-th `(status, Retry-After)` of its script (the last one once the script is spent).
/// An item's answers in order: its status and its `Retry-After`, if any.
type Script = Vec<(u16, Option<&'static str>)>;

struct Scripted {
    scripts: Vec<(&'static str, Script)>,
    seen: Mutex<std::collections::HashMap<String, usize>>,
}

impl Respond for Scripted {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let responses: Vec<Value> = body["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let url = r["url"].as_str().unwrap();
                let script = &self.scripts.iter().find(|(u, _)| *u == url).unwrap().1;
                let mut seen = self.seen.lock().unwrap();
                let n = seen.entry(url.to_owned()).or_default();
                let (status, retry_after) = script[(*n).min(script.len() - 1)];
                *n += 1;
                let mut headers = json!({"Content-Type": "application/json"});
                if let Some(wait) = retry_after {
                    headers["Retry-After"] = json!(wait);
                }
                let body = if status == 200 {
                    json!({"value": [{"id": format!("answer-for-{url}")}]})
                } else {
                    common::graph_error("serviceNotAvailable", "The service is unavailable.")
                };
                json!({"id": r["id"], "status": status, "headers": headers, "body": body})
            })
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({ "responses": responses }))
    }
}

/// The item URLs of every batch the server received, in order.
fn batch_urls(requests: &[Request]) -> Vec<Vec<String>> {
    requests
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["requests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item["url"].as_str().unwrap().to_owned())
                .collect()
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn items_answered_503_and_504_are_retried_after_their_retry_after_then_reported() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1.0/$batch"))
        .respond_with(Scripted {
            scripts: vec![
                ("/a", vec![(503, Some("2")), (200, None)]),
                ("/b", vec![(504, Some("4")), (504, Some("4")), (200, None)]),
                // Always unavailable: reported once the retries are spent.
                ("/c", vec![(503, Some("1"))]),
                ("/d", vec![(200, None)]),
            ],
            seen: Mutex::default(),
        })
        .mount(&server)
        .await;
    let tokens = std::sync::Arc::new(common::CountingTokens::default());
    let client = common::builder(&server, tokens.clone())
        .retry_policy(graph_client::RetryPolicy::new().max_retries(3))
        .build()
        .unwrap();
    let items = ["/a", "/b", "/c", "/d"].map(BatchItem::get).to_vec();

    let start = Instant::now();
    let results = client
        .batch::<Page<serde_json::Value>>(items)
        .await
        .unwrap();

    let urls = batch_urls(&server.received_requests().await.unwrap());
    assert_eq!(
        urls,
        [
            vec!["/a", "/b", "/c", "/d"],
            vec!["/a", "/b", "/c"],
            vec!["/b", "/c"],
            vec!["/c"],
        ],
        "each unavailable item alone goes again, the answered ones never"
    );
    // Each later batch waits for the longest Retry-After of the one before (the gate).
    assert_eq!(
        tokens.waits(),
        [4, 4, 1].map(Duration::from_secs),
        "the items' own Retry-After, no more"
    );
    assert_eq!(start.elapsed(), Duration::from_secs(9));
    for (index, url) in [(0, "/a"), (1, "/b"), (3, "/d")] {
        let page = results[index].as_ref().unwrap();
        assert_eq!(page.items()[0]["id"], format!("answer-for-{url}"));
    }
    let err = results[2].as_ref().unwrap_err();
    assert_eq!(err.status(), Some(503), "{err:?}");
    assert_eq!(err.code(), Some("serviceNotAvailable"));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    assert!(err.is_retryable());
}

#[tokio::test(start_paused = true)]
async fn items_answered_503_without_retry_after_wait_the_floor() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1.0/$batch"))
        .respond_with(Scripted {
            scripts: vec![
                ("/a", vec![(503, None), (504, None), (200, None)]),
                ("/b", vec![(200, None)]),
            ],
            seen: Mutex::default(),
        })
        .mount(&server)
        .await;
    let tokens = std::sync::Arc::new(common::CountingTokens::default());
    let client = common::builder(&server, tokens.clone()).build().unwrap();

    let results = client
        .batch::<Page<serde_json::Value>>(vec![BatchItem::get("/a"), BatchItem::get("/b")])
        .await
        .unwrap();

    assert!(results.iter().all(Result::is_ok));
    assert_eq!(
        batch_urls(&server.received_requests().await.unwrap()),
        [vec!["/a", "/b"], vec!["/a"], vec!["/a"]]
    );
    // Ceilings of 1 s and 2 s are under the 3 s floor (spec 10b, Kiota's default delay).
    assert_eq!(tokens.waits(), [Duration::from_secs(3); 2]);
}
