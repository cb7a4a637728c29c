//! The sync engine (`graph_client::sync`) against a scripted Graph: full import, delta
//! with every kind of change, `members@delta` across pages, resync, and cancellation.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::{base, client};
use graph_client::sync::{
    self, Change, DirectorySink, MemorySink, NoProgress, SinkError, SyncKind, SyncLinks,
    SyncOptions, SyncSummary,
};
use graph_client::{ErrorAction, GraphClient, ObjectId};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

fn user(id: &str, name: &str) -> Value {
    json!({"id": id, "displayName": name, "mail": format!("{id}@contoso.com"), "accountEnabled": true})
}

fn group(id: &str, name: &str) -> Value {
    json!({"id": id, "displayName": name, "securityEnabled": true})
}

fn member(kind: &str, id: &str) -> Value {
    json!({"@odata.type": format!("#microsoft.graph.{kind}"), "id": id})
}

/// A tenant as the full import sees it: users, and groups with their direct members.
struct Tenant {
    users: Vec<Value>,
    groups: Vec<(Value, Vec<Value>)>,
}

fn contoso() -> Tenant {
    Tenant {
        users: vec![
            user("u1", "Adele Vance"),
            user("u2", "Alex Wilber"),
            user("u3", "Megan Bowen"),
        ],
        groups: vec![
            // Three members: the first page has two and a next link (a chain).
            (
                group("g1", "Sales"),
                vec![
                    member("user", "u1"),
                    member("user", "u2"),
                    member("group", "g2"),
                ],
            ),
            (group("g2", "Sales Germany"), vec![member("user", "u3")]),
            (group("g3", "Empty"), vec![]),
        ],
    }
}

/// Answers `$batch` member requests from the tenant: up to two members a page.
struct MemberBatches {
    base: String,
    members: BTreeMap<String, Vec<Value>>,
}

impl Respond for MemberBatches {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let responses: Vec<Value> = body["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let url = r["url"].as_str().unwrap();
                assert!(
                    url.contains("$select=id") && url.contains("$top=999"),
                    "{url}"
                );
                let group = url.split('/').nth(2).unwrap();
                let members = &self.members[group];
                let mut page = json!({"value": members.iter().take(2).collect::<Vec<_>>()});
                if members.len() > 2 {
                    page["@odata.nextLink"] = json!(format!(
                        "{}/groups/{group}/members?$skiptoken=more",
                        self.base
                    ));
                }
                json!({"id": r["id"], "status": 200, "body": page})
            })
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({ "responses": responses }))
    }
}

/// Mounts what a full import asks for, with delta links `…$deltatoken=<users_token>` and
/// `<groups_token>`.
async fn mount_full_import(
    server: &MockServer,
    tenant: &Tenant,
    users_token: &str,
    groups_token: &str,
) {
    let b = base(server);
    for (resource, token) in [("users", users_token), ("groups", groups_token)] {
        Mock::given(method("GET"))
            .and(path(format!("/v1.0/{resource}/delta")))
            .and(query_param("$deltatoken", "latest"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "value": [],
                "@odata.deltaLink": format!("{b}/{resource}/delta?$deltatoken={token}"),
            })))
            .mount(server)
            .await;
    }
    // A small tenant: the partitioned listing sizes each collection and lists it as the
    // single chain.
    for (resource, size) in [
        ("users", tenant.users.len()),
        ("groups", tenant.groups.len()),
    ] {
        Mock::given(method("GET"))
            .and(path(format!("/v1.0/{resource}/$count")))
            .and(header("ConsistencyLevel", "eventual"))
            .respond_with(ResponseTemplate::new(200).set_body_string(size.to_string()))
            .mount(server)
            .await;
    }
    let (first, rest) = tenant.users.split_at(tenant.users.len().min(2));
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .and(query_param_is_missing("$skiptoken"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": first, "@odata.nextLink": format!("{b}/users?$skiptoken=page2"),
        })))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .and(query_param("$skiptoken", "page2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "value": rest })))
        .mount(server)
        .await;
    let groups: Vec<&Value> = tenant.groups.iter().map(|(g, _)| g).collect();
    Mock::given(method("GET"))
        .and(path("/v1.0/groups"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "value": groups })))
        .mount(server)
        .await;
    let members: BTreeMap<String, Vec<Value>> = tenant
        .groups
        .iter()
        .map(|(g, m)| (g["id"].as_str().unwrap().to_owned(), m.clone()))
        .collect();
    for (id, list) in &members {
        if list.len() > 2 {
            Mock::given(method("GET"))
                .and(path(format!("/v1.0/groups/{id}/members")))
                .and(query_param("$skiptoken", "more"))
                .respond_with(
                    ResponseTemplate::new(200).set_body_json(json!({"value": list[2..].to_vec()})),
                )
                .mount(server)
                .await;
        }
    }
    Mock::given(method("POST"))
        .and(path("/v1.0/$batch"))
        .respond_with(MemberBatches { base: b, members })
        .mount(server)
        .await;
}

fn ids(sink: &MemorySink) -> Vec<&str> {
    sink.directory()
        .users()
        .keys()
        .map(ObjectId::as_str)
        .collect()
}

fn members_of<'a>(sink: &'a MemorySink, group: &str) -> Vec<(&'a str, &'a str)> {
    sink.directory()
        .members_of(&ObjectId::new(group))
        .map(|(id, kind)| (id.as_str(), kind.as_str()))
        .collect()
}

fn paths(requests: &[Request]) -> Vec<String> {
    requests
        .iter()
        .map(|r| {
            let query = r.url.query().unwrap_or_default();
            format!("{} {}?{}", r.method, r.url.path(), query)
        })
        .collect()
}

async fn full_import(server: &MockServer, client: &GraphClient) -> MemorySink {
    mount_full_import(server, &contoso(), "U1", "G1").await;
    let mut sink = MemorySink::new();
    let report = sync::run(client, &mut sink, &SyncOptions::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.kind, SyncKind::Full);
    server.reset().await;
    sink
}

#[tokio::test]
async fn full_import_takes_links_from_now_first_then_lists_and_expands_every_group() {
    let server = MockServer::start().await;
    mount_full_import(&server, &contoso(), "U1", "G1").await;
    let (client, _) = client(&server);
    let mut sink = MemorySink::new();

    let report = sync::run(&client, &mut sink, &SyncOptions::new(), &NoProgress)
        .await
        .unwrap();

    assert_eq!(report.kind, SyncKind::Full);
    assert_eq!(ids(&sink), ["u1", "u2", "u3"]);
    assert_eq!(sink.directory().groups().len(), 3);
    assert_eq!(
        members_of(&sink, "g1"),
        [("g2", "group"), ("u1", "user"), ("u2", "user")]
    );
    assert_eq!(members_of(&sink, "g2"), [("u3", "user")]);
    assert!(members_of(&sink, "g3").is_empty());
    let summary = &report.summary;
    assert_eq!((summary.users.added, summary.users.total), (3, 3));
    assert_eq!((summary.groups.added, summary.memberships.total), (3, 4));
    let links = sink.committed_links().unwrap();
    assert!(links.users().expose_secret().ends_with("$deltatoken=U1"));
    assert!(links.groups().expose_secret().ends_with("$deltatoken=G1"));
    assert_eq!(links.user_select()[0], "id");

    let sent = paths(&server.received_requests().await.unwrap());
    // The "from now" links come before any listing (spec 9), then users, groups, members.
    assert!(
        sent[0].starts_with("GET /v1.0/users/delta?") && sent[0].contains("$deltatoken=latest")
    );
    assert!(sent[1].starts_with("GET /v1.0/groups/delta?") && sent[1].contains("members"));
    // Each listing is sized by a count sent beside its first page (in either order);
    // three users are one chain, which goes on from that page.
    let (count, first) = if sent[2].contains("$count") {
        (&sent[2], &sent[3])
    } else {
        (&sent[3], &sent[2])
    };
    assert_eq!(count, "GET /v1.0/users/$count?");
    assert!(first.starts_with("GET /v1.0/users?") && first.contains("$top=999"));
    assert!(first.contains("$select=id,displayName"), "{first}");
    assert!(!first.contains("$filter"), "{first}");
    assert_eq!(sent[4], "GET /v1.0/users?$skiptoken=page2");
    let mut groups = [sent[5].as_str(), sent[6].as_str()];
    groups.sort_unstable();
    assert_eq!(groups[0], "GET /v1.0/groups/$count?");
    assert!(groups[1].starts_with("GET /v1.0/groups?"), "{}", groups[1]);
    assert_eq!(sent[7], "POST /v1.0/$batch?");
    assert_eq!(sent[8], "GET /v1.0/groups/g1/members?$skiptoken=more");
    assert_eq!(sent.len(), 9);
}

/// The documented large-group delta pages (one group over two pages, each with a slice
/// of `members@delta`), with links onto the mock server.
fn documented_group_pages(b: &str) -> (Value, Value) {
    let page = |name: &str| {
        let text = serde_json::to_string(&common::fixture(name))
            .unwrap()
            .replace("https://graph.microsoft.com/v1.0", b);
        serde_json::from_str::<Value>(&text).unwrap()
    };
    let mut first = page("groups-delta-large-group-page1.json");
    first["@odata.nextLink"] = json!(format!("{b}/groups/delta?$skiptoken=gp2"));
    let mut second = page("groups-delta-large-group-page2.json");
    // The sample's page 2 has a next link too; here it is the round's last page.
    second.as_object_mut().unwrap().remove("@odata.nextLink");
    second["@odata.deltaLink"] = json!(format!("{b}/groups/delta?$deltatoken=G2"));
    (first, second)
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "one scenario: set-up, round, checks, replay"
)]
async fn delta_applies_every_kind_of_change_and_merges_members_delta_across_pages() {
    let server = MockServer::start().await;
    let (client, _) = client(&server);
    let mut sink = full_import(&server, &client).await;
    let b = base(&server);
    let (page1, page2) = documented_group_pages(&b);
    let large = page1["value"][0]["id"].as_str().unwrap().to_owned();
    let slices: Vec<Value> = [&page1, &page2]
        .iter()
        .flat_map(|p| p["value"][0]["members@delta"].as_array().unwrap().clone())
        .collect();

    Mock::given(method("GET"))
        .and(path("/v1.0/users/delta"))
        .and(query_param("$deltatoken", "U1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [
            {"id": "u2", "displayName": "Alex Wilber (Sales)", "mail": "u2@contoso.com", "accountEnabled": false},
            {"id": "u4", "displayName": "Diego Siciliani"},
            {"id": "u3", "@removed": {"reason": "deleted"}},
            {"id": "unknown", "@removed": {"reason": "changed"}},
        ], "@odata.deltaLink": format!("{b}/users/delta?$deltatoken=U2")})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/groups/delta"))
        .and(query_param("$deltatoken", "G1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [
            {"id": "g3", "@removed": {"reason": "deleted"}},
            {"id": "g1", "displayName": "Sales", "members@delta": [
                {"@odata.type": "#microsoft.graph.user", "id": "u1", "@removed": {"reason": "deleted"}},
                {"@odata.type": "#microsoft.graph.user", "id": "u4"},
            ]},
        ], "@odata.nextLink": format!("{b}/groups/delta?$skiptoken=gp1")})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/groups/delta"))
        .and(query_param("$skiptoken", "gp1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page1))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/groups/delta"))
        .and(query_param("$skiptoken", "gp2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page2))
        .mount(&server)
        .await;

    let report = sync::run(&client, &mut sink, &SyncOptions::new(), &NoProgress)
        .await
        .unwrap();

    assert_eq!(report.kind, SyncKind::Delta);
    assert_eq!(ids(&sink), ["u1", "u2", "u4"]);
    let alex = &sink.directory().users()[&ObjectId::new("u2")];
    assert_eq!(alex.display_name.as_deref(), Some("Alex Wilber (Sales)"));
    assert_eq!(alex.account_enabled, Some(false));
    assert!(!sink.directory().groups().contains_key(&ObjectId::new("g3")));
    // u1 left g1, u4 joined it; g2 stays a member.
    assert_eq!(
        members_of(&sink, "g1"),
        [("g2", "group"), ("u2", "user"), ("u4", "user")]
    );
    // u3 was deleted: it left g2 too.
    assert!(members_of(&sink, "g2").is_empty());
    // The large group got the members added on both pages, none of the removed ones.
    let expected: Vec<String> = slices
        .iter()
        .filter(|m| m.get("@removed").is_none())
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    let got: Vec<String> = members_of(&sink, &large)
        .into_iter()
        .map(|(id, _)| id.to_owned())
        .collect();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(got, expected_sorted);
    assert!(expected.len() >= 2, "both pages add members");

    let s = &report.summary;
    assert_eq!(
        (
            s.users.added,
            s.users.updated,
            s.users.removed,
            s.users.total
        ),
        (1, 1, 1, 3)
    );
    assert_eq!(s.removed_user_ids, [ObjectId::new("u3")]);
    assert_eq!((s.groups.added, s.groups.removed), (1, 1));
    let links = sink.committed_links().unwrap();
    assert!(links.users().expose_secret().ends_with("U2"));
    assert!(links.groups().expose_secret().ends_with("G2"));
    assert_eq!(server.received_requests().await.unwrap().len(), 4);

    // Replaying the same round changes nothing (spec 9, "Replays").
    let before = sink.directory().clone();
    server.reset().await;
    for (resource, token) in [("users", "U2"), ("groups", "G2")] {
        Mock::given(method("GET"))
            .and(path(format!("/v1.0/{resource}/delta")))
            .and(query_param("$deltatoken", token))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [
                {"id": "u3", "@removed": {"reason": "deleted"}},
                {"id": "g3", "@removed": {"reason": "deleted"}},
            ], "@odata.deltaLink": format!("{b}/{resource}/delta?$deltatoken={token}")})))
            .mount(&server)
            .await;
    }
    let replay = sync::run(&client, &mut sink, &SyncOptions::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(sink.directory(), &before);
    assert!(replay.summary.users.is_unchanged() && replay.summary.groups.is_unchanged());
}

#[tokio::test]
async fn a_round_with_nothing_changed_costs_two_requests() {
    let server = MockServer::start().await;
    let (client, _) = client(&server);
    let mut sink = full_import(&server, &client).await;
    let before = sink.directory().clone();
    let b = base(&server);
    for (resource, token) in [("users", "U1"), ("groups", "G1")] {
        Mock::given(method("GET"))
            .and(path(format!("/v1.0/{resource}/delta")))
            .and(query_param("$deltatoken", token))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "value": [], "@odata.deltaLink": format!("{b}/{resource}/delta?$deltatoken={token}x"),
            })))
            .expect(1)
            .mount(&server)
            .await;
    }

    let report = sync::run(&client, &mut sink, &SyncOptions::new(), &NoProgress)
        .await
        .unwrap();

    assert_eq!(report.kind, SyncKind::Delta);
    assert_eq!(sink.directory(), &before);
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
    assert!(
        sink.committed_links()
            .unwrap()
            .users()
            .expose_secret()
            .ends_with("U1x")
    );
    assert_eq!(sink.commits(), 2);
}

#[tokio::test]
async fn an_expired_link_runs_a_resync_that_removes_and_reports_what_is_gone() {
    let server = MockServer::start().await;
    let (client, _) = client(&server);
    let mut sink = full_import(&server, &client).await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users/delta"))
        .and(query_param("$deltatoken", "U1"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "code": "syncStateNotFound",
            "message": "The sync state generation is not found."
        }})))
        .mount(&server)
        .await;
    // Meanwhile u3 and g3 were deleted and g2 lost u3.
    let mut tenant = contoso();
    tenant.users.pop();
    tenant.groups.pop();
    tenant.groups[1].1.clear();
    mount_full_import(&server, &tenant, "U9", "G9").await;

    let report = sync::run(&client, &mut sink, &SyncOptions::new(), &NoProgress)
        .await
        .unwrap();

    assert_eq!(report.kind, SyncKind::Resync);
    assert_eq!(ids(&sink), ["u1", "u2"]);
    assert_eq!(sink.directory().groups().len(), 2);
    assert!(members_of(&sink, "g2").is_empty());
    let s = &report.summary;
    assert_eq!((s.users.removed, s.users.total), (1, 2));
    assert_eq!(s.removed_user_ids, [ObjectId::new("u3")]);
    assert_eq!((s.groups.removed, s.memberships.removed), (1, 1));
    assert!(
        sink.committed_links()
            .unwrap()
            .users()
            .expose_secret()
            .ends_with("U9")
    );
}

#[tokio::test]
async fn a_revoked_grant_mid_sync_says_reconnect_and_keeps_the_last_commit() {
    let server = MockServer::start().await;
    let (client, _) = client(&server);
    let mut sink = full_import(&server, &client).await;
    let before = sink.directory().clone();
    let b = base(&server);
    Mock::given(method("GET"))
        .and(path("/v1.0/users/delta"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [{"id": "u1", "displayName": "changed"}],
            "@odata.deltaLink": format!("{b}/users/delta?$deltatoken=U2"),
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/groups/delta"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {
            "code": "InvalidAuthenticationToken", "message": "Access token has expired."
        }})))
        .mount(&server)
        .await;

    let error = sync::run(&client, &mut sink, &SyncOptions::new(), &NoProgress)
        .await
        .unwrap_err();

    assert_eq!(error.action(), ErrorAction::Reconnect);
    assert!(error.requires_reauthorization());
    assert_eq!(sink.directory(), &before);
    assert!(
        sink.committed_links()
            .unwrap()
            .users()
            .expose_secret()
            .ends_with("U1")
    );
}

#[tokio::test]
async fn other_user_properties_start_again_with_a_full_import() {
    let server = MockServer::start().await;
    let (client, _) = client(&server);
    let mut sink = full_import(&server, &client).await;
    mount_full_import(&server, &contoso(), "U5", "G5").await;

    let options = SyncOptions::new().user_select(&["displayName", "jobTitle"]);
    let report = sync::run(&client, &mut sink, &options, &NoProgress)
        .await
        .unwrap();

    assert_eq!(report.kind, SyncKind::Full);
    assert_eq!(
        sink.committed_links().unwrap().user_select(),
        ["id", "displayName", "jobTitle"]
    );
    let sent = paths(&server.received_requests().await.unwrap());
    assert!(
        sent[0].contains("$select=id,displayName,jobTitle"),
        "{}",
        sent[0]
    );

    // Without a select, the next sync keeps the sink's properties: a delta round.
    let b = base(&server);
    for (resource, token) in [("users", "U5"), ("groups", "G5")] {
        Mock::given(method("GET"))
            .and(path(format!("/v1.0/{resource}/delta")))
            .and(query_param("$deltatoken", token))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "value": [], "@odata.deltaLink": format!("{b}/{resource}/delta?$deltatoken={token}")
            })))
            .mount(&server)
            .await;
    }
    let report = sync::run(&client, &mut sink, &SyncOptions::new(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.kind, SyncKind::Delta);
    // The same properties in another order are the same properties.
    let reordered = SyncOptions::new().user_select(&["jobTitle", "displayName"]);
    let report = sync::run(&client, &mut sink, &reordered, &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.kind, SyncKind::Delta);
}

/// A sink that forwards to a [`MemorySink`] but, at its `stop_at`-th call, says so and
/// never answers: the test then drops the sync there.
struct StopAt {
    inner: Arc<Mutex<MemorySink>>,
    calls: usize,
    at: usize,
    stopped: Option<tokio::sync::oneshot::Sender<()>>,
}

impl StopAt {
    async fn call(&mut self) {
        self.calls += 1;
        if self.calls == self.at {
            if let Some(stopped) = self.stopped.take() {
                let _ = stopped.send(());
            }
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait]
impl DirectorySink for StopAt {
    async fn links(&mut self) -> Result<Option<SyncLinks>, SinkError> {
        self.call().await;
        let links = self.inner.lock().unwrap().committed_links().cloned();
        Ok(links)
    }
    async fn begin(&mut self, kind: SyncKind) -> Result<(), SinkError> {
        self.call().await;
        let mut inner = std::mem::take(&mut *self.inner.lock().unwrap());
        inner.begin(kind).await?;
        *self.inner.lock().unwrap() = inner;
        Ok(())
    }
    async fn apply(&mut self, changes: &[Change]) -> Result<(), SinkError> {
        self.call().await;
        let mut inner = std::mem::take(&mut *self.inner.lock().unwrap());
        let result = inner.apply(changes).await;
        *self.inner.lock().unwrap() = inner;
        result
    }
    async fn commit(&mut self, links: SyncLinks) -> Result<SyncSummary, SinkError> {
        self.call().await;
        let mut inner = std::mem::take(&mut *self.inner.lock().unwrap());
        let result = inner.commit(links).await;
        *self.inner.lock().unwrap() = inner;
        result
    }
}

/// Tells the test of every request it answers, and holds the `hold_at`-th one forever.
struct Watch {
    seen: Mutex<usize>,
    hold_at: usize,
    tell: tokio::sync::mpsc::UnboundedSender<usize>,
    inner: ResponseTemplate,
}

impl Respond for Watch {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut seen = self.seen.lock().unwrap();
        *seen += 1;
        let _ = self.tell.send(*seen);
        if *seen == self.hold_at {
            self.inner.clone().set_delay(Duration::from_secs(3600))
        } else {
            self.inner.clone()
        }
    }
}

#[tokio::test]
async fn a_sync_dropped_at_any_await_point_leaves_the_last_commit_and_links() {
    let server = MockServer::start().await;
    let (client, _) = client(&server);
    let committed = full_import(&server, &client).await;
    let before = committed.directory().clone();
    let links_before = committed.committed_links().cloned();
    let b = base(&server);
    let changes = json!({"value": [{"id": "u9", "displayName": "New"}, {"id": "u1", "@removed": {"reason": "deleted"}}]});

    // Every sink call: links, begin, the applies, commit.
    let mut stop_at = 1;
    loop {
        server.reset().await;
        for (resource, token) in [("users", "U1"), ("groups", "G1")] {
            let mut page = changes.clone();
            page["@odata.deltaLink"] = json!(format!("{b}/{resource}/delta?$deltatoken={token}x"));
            Mock::given(method("GET"))
                .and(path(format!("/v1.0/{resource}/delta")))
                .respond_with(ResponseTemplate::new(200).set_body_json(page))
                .mount(&server)
                .await;
        }
        let inner = Arc::new(Mutex::new(committed.clone()));
        let (tell, stopped) = tokio::sync::oneshot::channel();
        let mut sink = StopAt {
            inner: inner.clone(),
            calls: 0,
            at: stop_at,
            stopped: Some(tell),
        };
        let options = SyncOptions::new();
        let finished = tokio::select! {
            result = sync::run(&client, &mut sink, &options, &NoProgress) => Some(result),
            _ = stopped => None,
        };
        let inner = inner.lock().unwrap();
        match finished {
            None => {
                assert_eq!(inner.directory(), &before, "stopped at sink call {stop_at}");
                assert_eq!(inner.committed_links(), links_before.as_ref());
                stop_at += 1;
            }
            Some(result) => {
                result.unwrap();
                assert_ne!(inner.directory(), &before);
                break;
            }
        }
    }
    assert!(
        stop_at >= 5,
        "links, begin, two applies and the commit were all tried"
    );

    // Every Graph request: held forever, the sync dropped while it waits.
    let mut hold_at = 1;
    loop {
        server.reset().await;
        let (tell, mut told) = tokio::sync::mpsc::unbounded_channel();
        let mut page = changes.clone();
        page["@odata.deltaLink"] = json!(format!("{b}/users/delta?$deltatoken=U1x"));
        Mock::given(method("GET"))
            .respond_with(Watch {
                seen: Mutex::new(0),
                hold_at,
                tell,
                inner: ResponseTemplate::new(200).set_body_json(page),
            })
            .mount(&server)
            .await;
        let mut sink = committed.clone();
        let options = SyncOptions::new();
        let held = async {
            while let Some(seen) = told.recv().await {
                if seen == hold_at {
                    return;
                }
            }
            std::future::pending::<()>().await;
        };
        let finished = tokio::select! {
            result = sync::run(&client, &mut sink, &options, &NoProgress) => Some(result),
            () = held => None,
        };
        if finished.is_some() {
            break;
        }
        assert_eq!(sink.directory(), &before, "dropped at request {hold_at}");
        assert_eq!(sink.committed_links(), links_before.as_ref());
        hold_at += 1;
    }
    assert_eq!(hold_at, 3, "both delta requests were held once");
}

#[tokio::test]
async fn an_object_without_an_id_is_skipped_and_the_rest_is_applied() {
    let server = MockServer::start().await;
    let (client, _) = client(&server);
    let mut sink = full_import(&server, &client).await;
    let b = base(&server);
    Mock::given(method("GET"))
        .and(path("/v1.0/users/delta"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [{"displayName": "No id"}, {"id": "u9", "displayName": "Nina"}],
            "@odata.deltaLink": format!("{b}/users/delta?$deltatoken=U2"),
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/groups/delta"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [{"displayName": "No id either"}],
            "@odata.deltaLink": format!("{b}/groups/delta?$deltatoken=G2"),
        })))
        .mount(&server)
        .await;

    let report = sync::run(&client, &mut sink, &SyncOptions::new(), &NoProgress)
        .await
        .unwrap();

    assert_eq!(report.kind, SyncKind::Delta);
    assert_eq!(ids(&sink), ["u1", "u2", "u3", "u9"]);
    assert_eq!(report.summary.users.added, 1);
    assert_eq!(sink.directory().groups().len(), 3);
    assert!(
        sink.committed_links()
            .unwrap()
            .users()
            .expose_secret()
            .ends_with("U2")
    );
}
