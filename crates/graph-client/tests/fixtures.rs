//! Every Microsoft sample in tests/fixtures decodes into the typed model (SOURCES.md).

mod common;

use graph_client::{BatchItem, DirectoryObject, GraphError, Group, Page, ProfilePhoto, User};
use serde::de::DeserializeOwned;
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
        } else if n == "user-manager.json" {
            let manager: DirectoryObject = decode(n, &bytes);
            assert!(manager.id().is_some(), "{n}");
        } else if n.starts_with("profilephoto-") {
            let photo: ProfilePhoto = decode(n, &bytes);
            assert!(photo.media_content_type.is_some(), "{n}");
        } else if n.starts_with("group") {
            if is_page(&bytes) {
                let _: Page<Group> = decode(n, &bytes);
            } else {
                let group: Group = decode(n, &bytes);
                assert!(group.id.is_some(), "{n}");
            }
        } else if n.starts_with("user") || n.starts_with("me-") || n.starts_with("paging-") {
            if is_page(&bytes) {
                let _: Page<User> = decode(n, &bytes);
            } else {
                let _: User = decode(n, &bytes);
            }
        } else {
            panic!("fixture {n} has no model assigned in this test");
        }
        checked += 1;
    }
    assert_eq!(checked, names.len());
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
