//! Fidelity: for each of Microsoft's documented Graph samples in `tests/fixtures/graph/`,
//! the simulator's answer to the same request has the same keys and `@odata` annotations
//! at every level (values may differ). `tests/fixtures/graph/SOURCES.md` names each sample's
//! source, the request the simulator is sent, and the few keys a trimmed docs sample
//! leaves out that Graph (and the simulator) send.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::Value;

use crate::http_tests::{Harness, small, start};
use crate::{Deletion, GroupFields, TenantSim, ThrottleSettings, UserFields};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/graph/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// The shape of a JSON value: object keys (recursively), array element shapes, or a leaf.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Shape {
    Leaf,
    Object(Vec<(String, Shape)>),
    Array(BTreeSet<Shape>),
}

fn shape(value: &Value, path: &str, allowed_extra: &[&str], fixture: Option<&Value>) -> Shape {
    match value {
        Value::Object(map) => {
            let mut fields: Vec<(String, Shape)> = map
                .iter()
                .filter(|(key, _)| {
                    let key_path = if path.is_empty() {
                        (*key).clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    // Keys Graph sends that a trimmed sample omits are skipped when the
                    // sample lacks them.
                    !(allowed_extra.contains(&key_path.as_str())
                        && fixture.is_some_and(|f| !has_key(f, path, key)))
                })
                .map(|(key, v)| {
                    let key_path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    (key.clone(), shape(v, &key_path, allowed_extra, fixture))
                })
                .collect();
            fields.sort();
            Shape::Object(fields)
        }
        Value::Array(items) => {
            let element_path = format!("{path}[]");
            Shape::Array(
                items
                    .iter()
                    .map(|v| shape(v, &element_path, allowed_extra, fixture))
                    .collect(),
            )
        }
        // A null in one and an object in the other is a value difference, not a key one.
        _ => Shape::Leaf,
    }
}

/// Whether any object at `path` in the fixture has `key`.
fn has_key(fixture: &Value, path: &str, key: &str) -> bool {
    fn walk(value: &Value, parts: &[&str], key: &str) -> bool {
        match (value, parts.first()) {
            (Value::Object(map), None) => map.contains_key(key),
            (Value::Array(items), _) => items.iter().any(|i| walk(i, parts, key)),
            (Value::Object(map), Some(part)) => {
                let name = part.trim_end_matches("[]");
                map.get(name).is_some_and(|v| walk(v, &parts[1..], key))
            }
            _ => false,
        }
    }
    let parts: Vec<&str> = if path.is_empty() {
        Vec::new()
    } else {
        path.split('.').collect()
    };
    walk(fixture, &parts, key)
}

fn normalise(shape: Shape) -> Shape {
    match shape {
        Shape::Object(fields) => {
            Shape::Object(fields.into_iter().map(|(k, s)| (k, normalise(s))).collect())
        }
        Shape::Array(items) => Shape::Array(items.into_iter().map(normalise).collect()),
        Shape::Leaf => Shape::Leaf,
    }
}

/// Asserts the same keys at every level; arrays must hold the same set of element shapes
/// (an empty array matches any).
fn assert_same_shape(name: &str, actual: &Value, allowed_extra: &[&str]) {
    let expected = fixture(name);
    let expected_shape = normalise(shape(&expected, "", &[], None));
    let actual_shape = normalise(shape(actual, "", allowed_extra, Some(&expected)));
    assert!(
        shapes_match(&expected_shape, &actual_shape),
        "{name}: shapes differ\n fixture: {expected_shape:?}\n    sim: {actual_shape:?}\n sim body: {actual}"
    );
}

fn shapes_match(expected: &Shape, actual: &Shape) -> bool {
    match (expected, actual) {
        (Shape::Leaf, Shape::Leaf) => true,
        (Shape::Object(e), Shape::Object(a)) => {
            e.len() == a.len()
                && e.iter()
                    .zip(a)
                    .all(|((ek, es), (ak, as_))| ek == ak && shapes_match(es, as_))
        }
        (Shape::Array(e), Shape::Array(a)) => {
            e.is_empty()
                || a.is_empty()
                || (a.iter().all(|x| e.iter().any(|y| shapes_match(y, x)))
                    && e.iter().all(|y| a.iter().any(|x| shapes_match(y, x))))
        }
        _ => false,
    }
}

async fn get(h: &Harness, path: &str, eventual: bool) -> Value {
    let headers: &[(&str, &str)] = if eventual {
        &[("ConsistencyLevel", "eventual")]
    } else {
        &[]
    };
    let (status, _, body) = h.get_with(path, &h.token, headers).await;
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

async fn get_error(h: &Harness, path: &str, eventual: bool, expected: StatusCode) -> Value {
    let headers: &[(&str, &str)] = if eventual {
        &[("ConsistencyLevel", "eventual")]
    } else {
        &[]
    };
    let (status, _, body) = h.get_with(path, &h.token, headers).await;
    assert_eq!(status, expected, "{path}: {body}");
    body
}

fn assert_plain_count(name: &str, actual: &Value) {
    let sample = fixture(name);
    assert!(sample.is_number(), "{name} is a bare number");
    assert!(
        actual.as_u64().is_some(),
        "{name}: the simulator answered {actual}"
    );
}

#[test]
fn the_shape_comparer_notices_missing_extra_and_nested_keys() {
    let base = serde_json::json!({"a": 1, "value": [{"id": "x", "n": {"k": 1}}]});
    let same_values_differ = serde_json::json!({"a": 2, "value": [{"id": "y", "n": {"k": null}}, {"id": "z", "n": {"k": 3}}]});
    let missing = serde_json::json!({"value": [{"id": "x", "n": {"k": 1}}]});
    let nested_extra = serde_json::json!({"a": 1, "value": [{"id": "x", "n": {"k": 1, "j": 2}}]});
    let shape_of = |v: &Value| normalise(shape(v, "", &[], None));
    assert!(shapes_match(
        &shape_of(&base),
        &shape_of(&same_values_differ)
    ));
    assert!(!shapes_match(&shape_of(&base), &shape_of(&missing)));
    assert!(!shapes_match(&shape_of(&base), &shape_of(&nested_extra)));
    let extra_type =
        serde_json::json!({"a": 1, "value": [{"@odata.type": "t", "id": "x", "n": {"k": 1}}]});
    let allowed = normalise(shape(
        &extra_type,
        "",
        &["value[].@odata.type"],
        Some(&base),
    ));
    assert!(shapes_match(&shape_of(&base), &allowed));
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "one request per sample, in the table's order"
)]
async fn user_samples_have_the_simulators_shape() {
    let h = small().await;
    let users = h.sim.control().users();
    let guest = users
        .iter()
        .find(|u| u.user_type == crate::UserType::Guest)
        .map(|u| u.id.clone())
        .unwrap_or_default();
    let (a, b) = (users[1].id.clone(), users[2].id.clone());
    let admin = h.sim.admin_id().to_string();
    let guest_select =
        "$select=displayName,mail,mailNickname,otherMails,proxyAddresses,userPrincipalName";

    let body = get(
        &h,
        &format!("/users?{guest_select}&$filter=id in ('{guest}')"),
        false,
    )
    .await;
    assert_same_shape("users-list.json", &body, &["@odata.context"]);
    let body = get(&h, &format!("/users?$select=displayName,userPrincipalName,signInActivity&$filter=id in ('{a}','{b}')"), false).await;
    assert_same_shape("users-list-select.json", &body, &[]);
    let body = get(
        &h,
        "/users?$filter=startswith(displayName,'MOD')&$select=displayName,signInActivity",
        false,
    )
    .await;
    assert_same_shape("users-list-filter-startswith-select.json", &body, &[]);
    let body = get(
        &h,
        &format!("/users?$filter=id in ('{guest}')&$count=true&$top=1&{guest_select}"),
        true,
    )
    .await;
    assert_same_shape("users-count-consistencylevel.json", &body, &[]);
    let body = get(
        &h,
        &format!(
            "/users?$count=true&$select=displayName,mail,userPrincipalName&$filter=id in ('{a}')"
        ),
        false,
    )
    .await;
    assert_same_shape(
        "users-count-true-ignored-without-consistencylevel.json",
        &body,
        &[],
    );
    let body = get(&h, "/users?$search=\"displayName:administrator\"&$count=true&$select=displayName,givenName,mail,mailNickname,userPrincipalName", true).await;
    assert_same_shape("users-search-count.json", &body, &[]);
    let body = get(
        &h,
        "/users?$count=true&$filter=endswith(mail,'@contoso.onmicrosoft.com')&$top=1",
        true,
    )
    .await;
    assert_same_shape("users-list-filter-endswith-count-nextlink.json", &body, &[]);
    assert_plain_count(
        "users-count-only.txt",
        &get(&h, "/users/$count", true).await,
    );

    let body = get(&h, &format!("/users/{admin}"), false).await;
    assert_same_shape("user-get.json", &body, &["@odata.context"]);
    assert_same_shape(
        "me-get.json",
        &get(&h, "/me", false).await,
        &["@odata.context"],
    );
    let body = get(
        &h,
        &format!("/users/{a}?$select=displayName,givenName,postalCode,identities"),
        false,
    )
    .await;
    assert_same_shape("user-get-select.json", &body, &[]);
    let body = get(
        &h,
        &format!("/users/{a}/manager?$select=id,displayName,jobTitle,mail,userPrincipalName"),
        false,
    )
    .await;
    assert_same_shape(
        "user-manager.json",
        &body,
        &["@odata.context", "@odata.type"],
    );
    let body = get(
        &h,
        &format!("/users/{a}/memberOf?$select=displayName,mailEnabled,securityEnabled"),
        false,
    )
    .await;
    assert_same_shape("user-memberof.json", &body, &["@odata.context"]);
    assert_plain_count(
        "user-memberof-count-only.txt",
        &get(&h, &format!("/users/{a}/memberOf/$count"), true).await,
    );
    let with_photo = users
        .iter()
        .find(|u| u.has_photo)
        .map(|u| u.id.clone())
        .unwrap_or_default();
    assert_same_shape(
        "profilephoto-metadata.json",
        &get(&h, &format!("/users/{with_photo}/photo"), false).await,
        &[],
    );
}

#[tokio::test]
async fn group_samples_have_the_simulators_shape() {
    let h = small().await;
    let groups = h.sim.control().groups();
    let all_company = groups[0].id.clone();
    let security = groups[1].id.clone();
    let nested = groups
        .iter()
        .find(|g| {
            h.sim
                .control()
                .group_member_ids(&g.id)
                .is_ok_and(|ids| ids.iter().any(|id| h.sim.control().group(id).is_some()))
        })
        .map(|g| g.id.clone())
        .unwrap_or_default();

    let body = get(&h, &format!("/groups?$select=id,mail,mailEnabled,mailNickname,securityEnabled&$filter=id in ('{all_company}')"), false).await;
    assert_same_shape("groups-list.json", &body, &[]);
    let body = get(
        &h,
        "/groups?$filter=startswith(displayName,'sg-')&$count=true&$select=id,displayName",
        true,
    )
    .await;
    assert_same_shape("groups-list-filter-count-select.json", &body, &[]);
    let body = get(&h, &format!("/groups?$filter=id in ('{security}')&$count=true&$top=1&$select=displayName,mailNickname"), true).await;
    assert_same_shape("groups-count-consistencylevel.json", &body, &[]);
    let body = get(
        &h,
        "/groups?$search=\"displayName:company\"&$count=true&$select=displayName,mail,mailNickname",
        true,
    )
    .await;
    assert_same_shape("groups-search-count.json", &body, &[]);
    assert_plain_count(
        "groups-count-only.txt",
        &get(&h, "/groups/$count", true).await,
    );
    assert_same_shape(
        "group-get.json",
        &get(&h, &format!("/groups/{all_company}"), false).await,
        &[],
    );
    let body = get(&h, &format!("/groups/{all_company}?$select=allowExternalSenders,autoSubscribeNewMembers,isSubscribedByMail,unseenCount"), false).await;
    assert_same_shape("group-get-select.json", &body, &[]);
    let body = get(
        &h,
        &format!("/groups/{security}/members?$select=id,mail"),
        false,
    )
    .await;
    assert_same_shape("group-members.json", &body, &["value[].@odata.type"]);
    let body = get(&h, &format!("/groups/{all_company}/members?$count=true&$filter=startswith(displayName,'A')&$select=displayName,mail"), true).await;
    assert!(
        body["value"].as_array().is_some_and(|v| !v.is_empty()),
        "{body}"
    );
    assert_same_shape(
        "group-members-filter-count.json",
        &body,
        &["value[].@odata.type"],
    );
    assert_plain_count(
        "group-members-count-only.txt",
        &get(&h, &format!("/groups/{security}/members/$count"), true).await,
    );
    let body = get(
        &h,
        &format!("/groups/{nested}/transitiveMembers?$select=id,mail"),
        false,
    )
    .await;
    assert_same_shape("group-transitive-members.json", &body, &["@odata.context"]);
    assert_plain_count(
        "group-transitive-members-count-only.txt",
        &get(
            &h,
            &format!("/groups/{nested}/transitiveMembers/$count"),
            true,
        )
        .await,
    );
}

#[tokio::test]
async fn error_samples_have_the_simulators_shape() {
    let h = small().await;
    let body = get_error(&h, "/users/$count", false, StatusCode::BAD_REQUEST).await;
    assert_same_shape("error-count-without-consistencylevel.json", &body, &[]);
    let body = get_error(
        &h,
        "/users?$search=\"displayName:wa\"",
        false,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_same_shape("error-search-without-consistencylevel.json", &body, &[]);
    let body = get_error(
        &h,
        "/users?$filter=endswith(mail,'@outlook.com')",
        false,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_same_shape(
        "error-advanced-filter-without-consistencylevel.json",
        &body,
        &[],
    );
    let body = get_error(
        &h,
        "/users?$filter=id ge '1'&$count=true",
        true,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_same_shape("error-filter-property-not-indexed.json", &body, &[]);
    let body = get_error(
        &h,
        "/users?$select=skills",
        false,
        StatusCode::NOT_IMPLEMENTED,
    )
    .await;
    assert_same_shape(
        "error-delta-property-not-supported-501.json",
        &body,
        &["error.innerError.client-request-id"],
    );
    h.sim.control().set_throttle(Some(
        ThrottleSettings::new(1.0, 1.0).unwrap_or_else(|e| panic!("{e}")),
    ));
    get(&h, "/me", false).await;
    let body = get_error(&h, "/me", false, StatusCode::TOO_MANY_REQUESTS).await;
    assert_same_shape(
        "error-throttled-429.json",
        &body,
        &["error.innerError.client-request-id"],
    );
}

#[tokio::test]
async fn batch_sample_has_the_simulators_shape() {
    let h = small().await;
    let request = fixture("batch-request.json");
    // Item 5 of Microsoft's sample batch is a directory query the simulator answers.
    let item = request["requests"]
        .as_array()
        .and_then(|r| r.iter().find(|i| i["id"] == "5"))
        .cloned()
        .unwrap_or(Value::Null);
    let body = serde_json::json!({"requests": [item]});
    let response = h
        .http
        .post(h.url("/$batch"))
        .bearer_auth(&h.token)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    let sample = fixture("batch-response.json");
    let sample_item = sample["responses"]
        .as_array()
        .and_then(|r| r.iter().find(|i| i["id"] == "5"))
        .cloned()
        .unwrap_or(Value::Null);
    let item = answer["responses"][0].clone();
    let mut item_keys: Vec<&String> = item
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    item_keys.sort();
    assert_eq!(item_keys, ["body", "headers", "id", "status"]);
    assert_eq!(item["status"], 200);
    let expected = normalise(shape(&sample_item["body"], "", &[], None));
    let actual = normalise(shape(&item["body"], "", &[], None));
    assert!(
        shapes_match(&expected, &actual),
        "{expected:?} vs {actual:?}: {item}"
    );
    assert_eq!(keys_of(&answer), ["responses"]);
    assert_eq!(keys_of(&sample), ["responses"]);
}

fn keys_of(value: &Value) -> Vec<String> {
    value
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn users_delta_samples_have_the_simulators_shape() {
    let h = start(TenantSim::builder().users(5).groups(0).delta_page_size(2)).await;
    let control = h.sim.control();
    let users = control.users();
    for user in &users[..2] {
        control
            .update_user(&user.id, &UserFields::new().mobile_phone("+1 425 555 0109"))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let (_, _, pages) = h
        .delta_round(&h.url("/users/delta?$select=displayName,givenName,surname"))
        .await;
    assert_eq!(pages.len(), 3);
    assert_same_shape("users-delta-initial.json", &pages[0], &[]);
    assert_same_shape("users-delta-next.json", &pages[1], &[]);
    let delta_link = pages[2]["@odata.deltaLink"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_same_shape("users-delta-final.json", &pages[2], &[]);
    let (_, delta_link, pages) = h.delta_round(&delta_link).await;
    assert_same_shape("users-delta-nochanges.json", &pages[0], &[]);
    control
        .update_user(&users[3].id, &UserFields::new().display_name("Testuser7"))
        .unwrap_or_else(|e| panic!("{e}"));
    control
        .delete_user(&users[4].id, Deletion::Soft)
        .unwrap_or_else(|e| panic!("{e}"));
    let (_, _, pages) = h.delta_round(&delta_link).await;
    assert_same_shape("users-delta-removed.json", &pages[0], &[]);

    let (_, _, pages) = h.delta_round(&h.url("/users/delta")).await;
    assert_same_shape("users-delta-initial-apiref.json", &pages[0], &[]);
    let (_, _, pages) = h
        .delta_round(&h.url("/users/delta?$select=displayName,jobTitle,mobilePhone"))
        .await;
    assert_same_shape("users-delta-select.json", &pages[0], &["value[].id"]);
}

/// Six groups made through the control API, so that pages hold the mixes of the samples.
async fn delta_groups(page_size: usize) -> (Harness, Vec<String>, Vec<String>) {
    let h = start(
        TenantSim::builder()
            .users(10)
            .groups(0)
            .delta_page_size(page_size),
    )
    .await;
    let control = h.sim.control();
    let users: Vec<String> = control.users().into_iter().map(|u| u.id).collect();
    let add = |name: &str, description: Option<&str>, members: &[usize]| {
        let mut fields = GroupFields::new().display_name(name).unified(true);
        if let Some(description) = description {
            fields = fields.description(description);
        }
        let group = control.add_group(fields).unwrap_or_else(|e| panic!("{e}"));
        for m in members {
            control
                .add_member(&group.id, &users[*m])
                .unwrap_or_else(|e| panic!("{e}"));
        }
        group.id
    };
    let groups = vec![
        add("All Company", Some("Everyone"), &[0, 1]),
        add("sg-HR", Some("All HR personnel"), &[]),
        add("Mark 8 Project Team", Some("Mark 8"), &[2]),
        add("Sales and Marketing", Some("Sales"), &[3, 8]),
        add("All Employees", None, &[]),
        add("Remote living", Some("Remote living"), &[]),
    ];
    (h, groups, users)
}

#[tokio::test]
async fn groups_delta_samples_have_the_simulators_shape() {
    let (h, groups, users) = delta_groups(5).await;
    let control = h.sim.control();
    let (_, delta_link, pages) = h
        .delta_round(&h.url("/groups/delta?$select=displayName,description,members"))
        .await;
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert_same_shape("groups-delta-initial.json", &pages[0], &[]);
    assert_same_shape("groups-delta-next.json", &pages[1], &[]);
    assert_same_shape("groups-delta-final.json", &pages[2], &[]);
    let (_, delta_link, pages) = h.delta_round(&delta_link).await;
    assert_same_shape("groups-delta-nochanges.json", &pages[0], &[]);

    control
        .remove_member(&groups[3], &users[3])
        .unwrap_or_else(|e| panic!("{e}"));
    control
        .add_member(&groups[3], &users[5])
        .unwrap_or_else(|e| panic!("{e}"));
    let (_, delta_link, pages) = h.delta_round(&delta_link).await;
    assert_same_shape("groups-delta-members-removed.json", &pages[0], &[]);

    // A group whose member changes span pages (page size 5 allows 4 member entries): its
    // members are now users 5 and 8; the changes sorted by member are
    // +0 +1 +2 -5 | +6 +7 -8 +9.
    for m in [0, 1, 2, 6, 7, 9] {
        control
            .add_member(&groups[3], &users[m])
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for m in [5, 8] {
        control
            .remove_member(&groups[3], &users[m])
            .unwrap_or_else(|e| panic!("{e}"));
    }
    control
        .update_group(&groups[5], GroupFields::new().description("Remote"))
        .unwrap_or_else(|e| panic!("{e}"));
    let (items, _, pages) = h.delta_round(&delta_link).await;
    assert!(pages.len() >= 2, "{pages:?}");
    assert_eq!(
        items
            .iter()
            .filter(|g| g["id"] == groups[3].as_str())
            .count(),
        2,
        "the group is on two pages"
    );
    let first_slice: Vec<Value> = pages[0]["value"][0]["members@delta"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        first_slice.iter().any(|m| m.get("@removed").is_some())
            && first_slice.iter().any(|m| m.get("@removed").is_none())
    );
    assert_same_shape("groups-delta-large-group-page1.json", &pages[0], &[]);
    assert_same_shape("groups-delta-large-group-page2.json", &pages[1], &[]);

    let (h, _, _) = delta_groups(3).await;
    let (_, _, pages) = h
        .delta_round(&h.url(
            "/groups/delta?$select=createdDateTime,description,displayName,groupTypes,mail,members",
        ))
        .await;
    assert_same_shape(
        "groups-delta-apiref-default.json",
        &pages[0],
        &["value[].id"],
    );
}

#[tokio::test]
async fn odata_cast_samples_have_the_simulators_shape() {
    let h = small().await;
    let groups = h.sim.control().groups();
    let all_company = groups[0].id.clone();
    let nested = groups
        .iter()
        .find(|g| {
            h.sim
                .control()
                .group_member_ids(&g.id)
                .is_ok_and(|ids| ids.iter().any(|id| h.sim.control().group(id).is_some()))
        })
        .map(|g| g.id.clone())
        .unwrap_or_default();
    let user = h.sim.control().users()[1].id.clone();

    let body = get(&h, &format!("/groups/{all_company}/members/microsoft.graph.user?$count=true&$search=\"displayName:administrator\"&$select=displayName,id"), true).await;
    assert_eq!(body["@odata.count"], 1);
    assert_same_shape("group-members-user-cast-search-count.json", &body, &[]);
    let count = get(
        &h,
        &format!("/groups/{all_company}/members/microsoft.graph.user/$count"),
        true,
    )
    .await;
    assert_plain_count("group-members-user-cast-count-only.txt", &count);

    // A name that one of the nested group's users has.
    let users = get(&h, &format!("/groups/{nested}/transitiveMembers/microsoft.graph.user?$count=true&$select=displayName"), true).await;
    let name = users["value"][0]["displayName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let first_letter: String = name.chars().take(1).collect();
    let first_word = name
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let body = get(&h, &format!("/groups/{nested}/transitiveMembers/microsoft.graph.user?$count=true&$filter=startswith(displayName,'{first_letter}')&$select=displayName,mail"), true).await;
    assert!(
        body["value"].as_array().is_some_and(|v| !v.is_empty()),
        "{body}"
    );
    assert_same_shape(
        "group-transitive-members-user-cast-filter-count.json",
        &body,
        &[],
    );
    let body = get(&h, &format!("/groups/{nested}/transitiveMembers/microsoft.graph.user?$count=true&$search=\"displayName:{first_word}\"&$select=displayName,id"), true).await;
    assert!(
        body["value"].as_array().is_some_and(|v| !v.is_empty()),
        "{body}"
    );
    assert_same_shape(
        "group-transitive-members-user-cast-search-count.json",
        &body,
        &[],
    );

    let body = get(&h, &format!("/users/{user}/memberOf/microsoft.graph.group?$count=true&$filter=startswith(displayName,'a')&$select=displayName,mail,mailEnabled,mailNickname,securityEnabled"), true).await;
    assert!(
        body["value"].as_array().is_some_and(|v| !v.is_empty()),
        "{body}"
    );
    assert_same_shape("user-memberof-group-cast-filter-count.json", &body, &[]);
    let body = get(&h, &format!("/users/{user}/memberOf/microsoft.graph.group?$count=true&$search=\"displayName:company\"&$select=displayName,id"), true).await;
    assert_same_shape("user-memberof-group-cast-search-count.json", &body, &[]);
    let count = get(
        &h,
        &format!("/users/{user}/memberOf/microsoft.graph.group/$count"),
        true,
    )
    .await;
    assert_plain_count("user-memberof-group-cast-count-only.txt", &count);
}

#[tokio::test]
async fn minimal_users_delta_sample_has_the_simulators_shape() {
    let h = start(TenantSim::builder().users(5).groups(0).delta_page_size(2)).await;
    let control = h.sim.control();
    let (_, delta_link, _) = h.delta_round(&h.url("/users/delta")).await;
    // Three changed users on pages of two: the first page has a nextLink, as the sample.
    for user in &control.users()[1..4] {
        let fields = UserFields::new()
            .display_name("Vance Adele")
            .job_title("Product Marketing Manager");
        control
            .update_user(&user.id, &fields)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let response = h
        .http
        .get(&delta_link)
        .bearer_auth(&h.token)
        .header("Prefer", "return=minimal")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::OK);
    let page: Value = response.json().await.unwrap_or(Value::Null);
    assert_same_shape("users-delta-minimal.json", &page, &["value[].id"]);
}

/// Restoring from deleted items (`POST /directory/deletedItems/{id}/restore`): a restored
/// user or Microsoft 365 group comes back with its id, properties and memberships, and a
/// delta round hands it out live, never as removed; a security group is deleted for good.
#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "one story: delete, round, restore, round, with the checks between"
)]
async fn restored_objects_come_back_live_in_delta_with_their_memberships() {
    let h = start(TenantSim::builder().users(6).groups(0)).await;
    let control = h.sim.control();
    let users = control.users();
    let team = control
        .add_group(GroupFields::new().display_name("Team").unified(true))
        .unwrap_or_else(|e| panic!("{e}"));
    let security = control
        .add_group(GroupFields::new().display_name("Security"))
        .unwrap_or_else(|e| panic!("{e}"));
    for user in &users[1..3] {
        control
            .add_member(&team.id, &user.id)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    control
        .add_member(&security.id, &team.id)
        .unwrap_or_else(|e| panic!("{e}"));
    let (_, users_link, _) = h.delta_round(&h.url("/users/delta")).await;
    let (_, groups_link, _) = h.delta_round(&h.url("/groups/delta")).await;

    // Deleted and restored within one round: live, with its memberships, not removed.
    control
        .delete_user(&users[1].id, Deletion::Soft)
        .unwrap_or_else(|e| panic!("{e}"));
    let restored = control
        .restore_user(&users[1].id)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(restored.user_principal_name, users[1].user_principal_name);
    let team_members = |control: &crate::Control| -> BTreeSet<String> {
        control
            .group_member_ids(&team.id)
            .unwrap_or_default()
            .into_iter()
            .collect()
    };
    assert_eq!(
        team_members(control),
        [users[1].id.clone(), users[2].id.clone()]
            .into_iter()
            .collect()
    );
    let (items, users_link, _) = h.delta_round(&users_link).await;
    let item = items.iter().find(|i| i["id"] == users[1].id.as_str());
    assert_eq!(
        item.map(|i| (i.get("@removed").is_some(), i["userPrincipalName"].clone())),
        Some((false, Value::from(users[1].user_principal_name.as_str()))),
        "{items:?}"
    );

    // Deleted in one round, restored in the next: removed, then back whole.
    control
        .delete_user(&users[2].id, Deletion::Soft)
        .unwrap_or_else(|e| panic!("{e}"));
    let (items, users_link, _) = h.delta_round(&users_link).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["@removed"]["reason"], "changed");
    control
        .restore_user(&users[2].id)
        .unwrap_or_else(|e| panic!("{e}"));
    let (items, _, _) = h.delta_round(&users_link).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["id"], users[2].id.as_str());
    assert_eq!(items[0]["displayName"], users[2].display_name.as_str());
    assert!(items[0].get("@removed").is_none());

    // Not in deleted items: live, permanently deleted, or restored already.
    assert!(control.restore_user(&users[3].id).is_err(), "live");
    control
        .delete_user(&users[4].id, Deletion::Permanent)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(control.restore_user(&users[4].id).is_err(), "permanent");
    assert!(control.restore_user(&users[1].id).is_err(), "restored");

    // A UPN taken meanwhile: refused, and the user stays restorable.
    control
        .delete_user(&users[5].id, Deletion::Soft)
        .unwrap_or_else(|e| panic!("{e}"));
    let taker = control
        .add_user(
            &UserFields::new()
                .display_name("Taker")
                .user_principal_name(&users[5].user_principal_name),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        control.restore_user(&users[5].id),
        Err(crate::Error::Conflict(_))
    ));
    control
        .delete_user(&taker.id, Deletion::Permanent)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(control.restore_user(&users[5].id).is_ok());

    // A Microsoft 365 group: removed, then back with its members and its membership.
    control
        .delete_group(&team.id, Deletion::Soft)
        .unwrap_or_else(|e| panic!("{e}"));
    let (items, groups_link, _) = h.delta_round(&groups_link).await;
    let team_item = items.iter().find(|i| i["id"] == team.id.as_str());
    assert_eq!(
        team_item.map(|i| i["@removed"]["reason"].clone()),
        Some(Value::from("changed")),
        "{items:?}"
    );
    control
        .restore_group(&team.id)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        control.group_member_ids(&security.id).ok(),
        Some(vec![team.id.clone()])
    );
    let (items, groups_link, _) = h.delta_round(&groups_link).await;
    let team_item = items
        .iter()
        .find(|i| i["id"] == team.id.as_str())
        .unwrap_or_else(|| panic!("the restored group: {items:?}"));
    assert!(team_item.get("@removed").is_none());
    let members: BTreeSet<String> = team_item["members@delta"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m.get("@removed").is_none())
        .filter_map(|m| m["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        members,
        [users[1].id.clone(), users[2].id.clone()]
            .into_iter()
            .collect()
    );

    // A security group asked to be soft-deleted is gone for good.
    control
        .delete_group(&security.id, Deletion::Soft)
        .unwrap_or_else(|e| panic!("{e}"));
    let (items, _, _) = h.delta_round(&groups_link).await;
    let security_item = items.iter().find(|i| i["id"] == security.id.as_str());
    assert_eq!(
        security_item.map(|i| i["@removed"]["reason"].clone()),
        Some(Value::from("deleted")),
        "{items:?}"
    );
    assert!(control.restore_group(&security.id).is_err());
}
