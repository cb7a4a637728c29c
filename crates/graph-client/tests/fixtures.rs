//! Every Microsoft sample in tests/fixtures decodes into the typed model (SOURCES.md).

mod common;

use graph_client::{
    BatchItem, DirectoryEntry, DirectoryObject, GraphError, Group, GroupProperty, Page,
    ProfilePhoto, User, UserProperty,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn decode<T: DeserializeOwned>(name: &str, bytes: &[u8]) -> T {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{name} does not decode: {e}"))
}

fn is_page(bytes: &[u8]) -> bool {
    let value: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    value.get("value").is_some() || value.get("@odata.nextLink").is_some()
}

#[tokio::test]
async fn every_fixture_decodes_into_the_typed_model() {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| {
            std::path::Path::new(n)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        })
        .collect();
    names.sort();
    assert!(names.len() >= 60, "fixtures missing: {}", names.len());
    let server = MockServer::start().await;
    let (client, _) = common::client(&server);
    let mut checked = 0;
    // Typed fields compared with the sample across all fixtures: the check is not vacuous.
    let mut typed = 0;
    for name in &names {
        let bytes = std::fs::read(format!("{dir}/{name}")).unwrap();
        let n = name.as_str();
        if n.starts_with("error-") {
            // Errors decode through the client: served as a 400 they become a typed Service error.
            Mock::given(method("GET"))
                .and(path(format!("/v1.0/users/{n}")))
                .respond_with(
                    ResponseTemplate::new(400).set_body_raw(bytes.clone(), "application/json"),
                )
                .mount(&server)
                .await;
            let err = client.users().get(n).send().await.unwrap_err();
            assert!(matches!(err, GraphError::Service(_)), "{n}: {err:?}");
            assert!(err.code().is_some(), "{n}");
        } else if n == "batch-response.json" {
            check_batch_response(&bytes).await;
        } else if n.starts_with("group-members")
            || n.starts_with("group-transitive-members")
            || n.starts_with("user-memberof")
        {
            let page: Page<DirectoryObject> = decode(n, &bytes);
            assert!(!page.items().is_empty(), "{n}");
            typed += check_page(n, &bytes, &page, check_directory_object);
        } else if n == "user-manager.json" {
            let manager: DirectoryObject = decode(n, &bytes);
            assert!(manager.id().is_some(), "{n}");
            typed += check_directory_object(n, &raw_object(&bytes), &manager);
        } else if n.starts_with("profilephoto-") {
            let photo: ProfilePhoto = decode(n, &bytes);
            assert!(photo.media_content_type.is_some(), "{n}");
            let raw = raw_object(&bytes);
            assert_eq!(
                photo.media_content_type.as_deref(),
                raw["@odata.mediaContentType"].as_str(),
                "{n}"
            );
        } else if n.starts_with("group") {
            if is_page(&bytes) {
                let page: Page<Group> = decode(n, &bytes);
                typed += check_page(n, &bytes, &page, check_group);
            } else {
                let group: Group = decode(n, &bytes);
                assert!(group.id.is_some(), "{n}");
                typed += check_group(n, &raw_object(&bytes), &group);
            }
        } else if n.starts_with("user") || n.starts_with("me-") || n.starts_with("paging-") {
            if is_page(&bytes) {
                let page: Page<User> = decode(n, &bytes);
                typed += check_page(n, &bytes, &page, check_user);
            } else {
                let user: User = decode(n, &bytes);
                typed += check_user(n, &raw_object(&bytes), &user);
            }
        } else {
            panic!("fixture {n} has no model assigned in this test");
        }
        checked += 1;
    }
    assert_eq!(checked, names.len());
    assert!(typed >= 200, "only {typed} typed fields compared");
}

fn raw_object(bytes: &[u8]) -> Map<String, Value> {
    match serde_json::from_slice(bytes).unwrap() {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// The properties the `User` model types (and `@removed`, which delta takes out).
fn user_properties() -> Vec<&'static str> {
    let mut known: Vec<&str> = UserProperty::ALL.iter().map(|p| p.as_str()).collect();
    known.extend(["manager", "@removed"]);
    known
}

fn group_properties() -> Vec<&'static str> {
    let mut known: Vec<&str> = GroupProperty::ALL.iter().map(|p| p.as_str()).collect();
    known.extend(["members@delta", "@removed"]);
    known
}

/// Drops `null`s at any depth: the models write an absent value where the sample has
/// `null` (and `[]` for an empty list), which mean the same to Graph.
fn without_nulls(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) => Some(Value::Array(
            items
                .iter()
                .map(|v| without_nulls(v).unwrap_or(Value::Null))
                .collect(),
        )),
        Value::Object(map) => Some(Value::Object(
            map.iter()
                .filter_map(|(k, v)| without_nulls(v).map(|v| (k.clone(), v)))
                .collect(),
        )),
        other => Some(other.clone()),
    }
}

/// Whether two property values are the same: equal JSON, or the same instant written
/// two ways (`2017-07-31T18:56:16Z` / `...16.0000000Z`).
fn same_value(sample: &Value, typed: &Value) -> bool {
    if sample == typed {
        return true;
    }
    match (sample.as_str(), typed.as_str()) {
        (Some(a), Some(b)) => matches!(
            (OffsetDateTime::parse(a, &Rfc3339), OffsetDateTime::parse(b, &Rfc3339)),
            (Ok(a), Ok(b)) if a == b
        ),
        _ => false,
    }
}

/// Every property of the sample object is where the model promises it: each property
/// the model types in its field, with the sample's value (read back through the model's
/// camel-case serialization, so a misnamed or misrouted field shows), and everything
/// else, only that, in `extra` unchanged. Answers the number of typed fields compared.
fn check_model(
    name: &str,
    sample: &Map<String, Value>,
    model: &impl Serialize,
    extra: &Map<String, Value>,
    known: &[&str],
) -> usize {
    let Value::Object(typed) = serde_json::to_value(model).unwrap() else {
        panic!("{name}: the model does not serialize to an object");
    };
    let mut compared = 0;
    for (key, value) in sample {
        if known.contains(&key.as_str()) {
            assert!(
                !extra.contains_key(key),
                "{name}: typed property {key} landed in extra"
            );
            if key == "@removed" {
                continue; // taken out by delta; checked in tests/delta.rs
            }
            let expected = without_nulls(value);
            let got = typed.get(key).and_then(without_nulls);
            match (&expected, &got) {
                (None, None) => {}
                (Some(e), Some(g)) if same_value(e, g) => compared += 1,
                _ => panic!("{name}: {key} is {got:?} in the model, {expected:?} in the sample"),
            }
        } else {
            assert_eq!(
                extra.get(key),
                Some(value),
                "{name}: untyped property {key} is not kept whole in extra"
            );
        }
    }
    for key in extra.keys() {
        assert!(
            sample.contains_key(key) && !known.contains(&key.as_str()),
            "{name}: extra holds {key}, which the sample has not or the model types"
        );
    }
    compared
}

fn check_user(name: &str, sample: &Map<String, Value>, user: &User) -> usize {
    check_model(name, sample, user, &user.extra, &user_properties())
}

fn check_group(name: &str, sample: &Map<String, Value>, group: &Group) -> usize {
    check_model(name, sample, group, &group.extra, &group_properties())
}

fn check_entry(name: &str, sample: &Map<String, Value>, entry: &DirectoryEntry) -> usize {
    check_model(
        name,
        sample,
        entry,
        &entry.extra,
        &["id", "displayName", "mail"],
    )
}

/// A member or membership decodes as the model its `@odata.type` names, and that model
/// holds the sample's properties; without a type (or an unmodelled one) it is kept whole.
fn check_directory_object(
    name: &str,
    sample: &Map<String, Value>,
    object: &DirectoryObject,
) -> usize {
    let odata_type = sample.get("@odata.type").and_then(Value::as_str);
    let short = odata_type.map(|t| t.trim_start_matches("#microsoft.graph."));
    match object {
        DirectoryObject::User(user) => {
            assert_eq!(short, Some("user"), "{name}");
            check_user(name, sample, user)
        }
        DirectoryObject::Group(group) => {
            assert_eq!(short, Some("group"), "{name}");
            check_group(name, sample, group)
        }
        DirectoryObject::Other {
            odata_type: t,
            id,
            raw,
        } => {
            assert!(
                !matches!(short, Some("user" | "group")),
                "{name}: a {short:?} decoded as Other"
            );
            assert_eq!(t.as_deref(), odata_type, "{name}");
            assert_eq!(
                id.as_ref().map(graph_client::ObjectId::as_str),
                sample.get("id").and_then(Value::as_str),
                "{name}"
            );
            assert_eq!(raw, sample, "{name}: Other keeps the object whole");
            0
        }
        entry => {
            assert_eq!(Some(entry.type_name()), short, "{name}");
            let entry: DirectoryEntry =
                serde_json::from_value(Value::Object(sample.clone())).unwrap();
            check_entry(name, sample, &entry)
        }
    }
}

/// The page's links, count and items are the sample's, and each item holds its sample
/// object's properties (`check`).
fn check_page<T>(
    name: &str,
    bytes: &[u8],
    page: &Page<T>,
    check: impl Fn(&str, &Map<String, Value>, &T) -> usize,
) -> usize {
    let sample = raw_object(bytes);
    assert_eq!(
        page.next_link().map(graph_client::NextLink::as_str),
        sample.get("@odata.nextLink").and_then(Value::as_str),
        "{name}"
    );
    assert_eq!(
        page.delta_link()
            .map(graph_client::DeltaLink::expose_secret),
        sample.get("@odata.deltaLink").and_then(Value::as_str),
        "{name}"
    );
    assert_eq!(
        page.count(),
        sample.get("@odata.count").and_then(Value::as_u64),
        "{name}"
    );
    let items = sample
        .get("value")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    assert_eq!(page.items().len(), items.len(), "{name}");
    page.items()
        .iter()
        .zip(&items)
        .map(|(item, sample)| match sample {
            Value::Object(object) => check(name, object, item),
            other => panic!("{name}: an item is not an object: {other}"),
        })
        .sum()
}

/// The documented batch answer (ids 1..5, out of order, a 302, a 204 with `body: null`,
/// lower-case headers) answers a batch of six items (ids 0..5).
async fn check_batch_response(bytes: &[u8]) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1.0/$batch"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(bytes.to_vec(), "application/json"))
        .mount(&server)
        .await;
    let (client, _) = common::client(&server);
    let items = (0..6)
        .map(|i| BatchItem::get(format!("/item/{i}")))
        .collect();
    let results = client.batch::<serde_json::Value>(items).await.unwrap();
    assert!(
        matches!(results[0], Err(GraphError::InvalidResponse { .. })),
        "id 0 has no answer"
    );
    assert!(matches!(
        results[1],
        Err(GraphError::UnexpectedResponse { status: 302, .. })
    ));
    assert!(
        matches!(&results[3], Err(e) if e.status() == Some(401) && e.code() == Some("Forbidden"))
    );
    assert_eq!(results[2].as_ref().unwrap()["value"], serde_json::json!([]));
    assert_eq!(results[4].as_ref().unwrap(), &serde_json::Value::Null);
    assert_eq!(results[5].as_ref().unwrap()["@odata.count"], 12);
}

#[test]
fn documented_user_and_group_samples_fill_the_typed_fields() {
    let user: User = serde_json::from_slice(include_bytes!("fixtures/user-get.json")).unwrap();
    assert_eq!(
        user.id.as_ref().unwrap().as_str(),
        "87d349ed-44d7-43e1-9a83-5f2406dee5bd"
    );
    assert_eq!(user.business_phones, ["+1 425 555 0109"]);
    assert_eq!(user.office_location.as_deref(), Some("18/2111"));
    assert_eq!(user.preferred_language.as_deref(), Some("en-US"));
    assert!(user.extra.is_empty());

    let chain: User = serde_json::from_slice(include_bytes!(
        "fixtures/user-expand-manager-levels-max.json"
    ))
    .unwrap();
    let DirectoryObject::Other { raw, .. } = chain.manager.as_deref().unwrap() else {
        panic!("the documented chain has no @odata.type");
    };
    assert_eq!(raw["displayName"], "Alex Wilber");

    let group: Group = serde_json::from_slice(include_bytes!("fixtures/group-get.json")).unwrap();
    assert_eq!(group.mail_enabled, Some(true));
    assert_eq!(group.security_enabled, Some(false));
    assert_eq!(group.created_date_time.unwrap().year(), 2017);
    assert_eq!(
        group.extra["resourceProvisioningOptions"],
        serde_json::json!(["Team"])
    );

    let extension: User =
        serde_json::from_slice(include_bytes!("fixtures/user-get-schema-extension.json")).unwrap();
    assert_eq!(extension.extra["ext55gb1l09_msLearnCourses"]["courseId"], 1);
}
