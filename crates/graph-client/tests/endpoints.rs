//! Each endpoint's path and answer handling: members, memberships, manager, photo (spec 13).

mod common;

use common::client;
use futures::TryStreamExt;
use graph_client::{DirectoryObject, GraphError, PhotoSize};
use serde_json::json;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn mount_json(server: &MockServer, at: &str, body: serde_json::Value) {
    Mock::given(method("GET"))
        .and(path(at))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(server)
        .await;
}

#[tokio::test]
async fn members_decode_every_type_and_unknown_types_as_other() {
    let server = MockServer::start().await;
    mount_json(
        &server,
        "/v1.0/groups/g1/members",
        json!({"value": [
            {"@odata.type": "#microsoft.graph.user", "id": "u1", "displayName": "Adele", "mail": "a@contoso.com"},
            {"@odata.type": "#microsoft.graph.group", "id": "g2", "displayName": "Nested"},
            {"@odata.type": "#microsoft.graph.orgContact", "id": "c1", "mail": "c@partner.com"},
            {"@odata.type": "#microsoft.graph.device", "id": "d1", "displayName": null},
            {"@odata.type": "#microsoft.graph.application", "id": "app1", "appId": "x"},
            {"id": "no-type"}
        ]}),
    )
    .await;
    let (client, _) = client(&server);

    let members: Vec<DirectoryObject> = client
        .groups()
        .members("g1")
        .stream()
        .try_collect()
        .await
        .unwrap();

    assert_eq!(members.len(), 6);
    assert_eq!(
        members[0].as_user().unwrap().mail.as_deref(),
        Some("a@contoso.com")
    );
    assert!(members[1].as_group().is_some());
    assert!(
        matches!(&members[2], DirectoryObject::OrgContact(c) if c.mail.as_deref() == Some("c@partner.com"))
    );
    assert!(matches!(&members[3], DirectoryObject::Device(d) if d.display_name.is_none()));
    assert!(
        matches!(&members[4], DirectoryObject::Other { odata_type: Some(t), id: Some(id), .. } if t == "#microsoft.graph.application" && id.as_str() == "app1")
    );
    assert!(matches!(
        &members[5],
        DirectoryObject::Other {
            odata_type: None,
            ..
        }
    ));
}

#[tokio::test]
async fn membership_endpoints_use_their_documented_paths() {
    let server = MockServer::start().await;
    mount_json(
        &server,
        "/v1.0/groups/g1/transitiveMembers",
        common::fixture("group-transitive-members.json"),
    )
    .await;
    mount_json(
        &server,
        "/v1.0/users/u1/memberOf",
        common::fixture("user-memberof.json"),
    )
    .await;
    mount_json(
        &server,
        "/v1.0/users/u1/transitiveMemberOf",
        common::fixture("user-memberof.json"),
    )
    .await;
    mount_json(
        &server,
        "/v1.0/groups/g1",
        common::fixture("group-get.json"),
    )
    .await;
    mount_json(&server, "/v1.0/groups", common::fixture("groups-list.json")).await;
    let (client, _) = client(&server);

    let transitive: Vec<_> = client
        .groups()
        .transitive_members("g1")
        .stream()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        transitive[0].as_user().unwrap().mail.as_deref(),
        Some("group1@contoso.com")
    );
    let member_of: Vec<_> = client
        .users()
        .member_of("u1")
        .stream()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        member_of[0].as_group().unwrap().security_enabled,
        Some(true)
    );
    let transitive_of: Vec<_> = client
        .users()
        .transitive_member_of("u1")
        .stream()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(transitive_of.len(), 1);
    let group = client.groups().get("g1").send().await.unwrap();
    assert_eq!(group.group_types, ["Unified"]);
    assert_eq!(group.visibility.as_deref(), Some("Private"));
    let groups: Vec<_> = client.groups().list().stream().try_collect().await.unwrap();
    assert_eq!(groups[0].mail_nickname.as_deref(), Some("ContosoGroup1"));
    assert_eq!(server.received_requests().await.unwrap().len(), 5);
}

#[tokio::test]
async fn user_by_upn_is_path_encoded_and_selected() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(
            "/v1.0/users/contoso1_gmail.com%23EXT%23@microsoft.onmicrosoft.com",
        ))
        .and(query_param("$select", "id,mail"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "guest", "mail": "contoso1@gmail.com"})),
        )
        .mount(&server)
        .await;
    let (client, _) = client(&server);

    let user = client
        .users()
        .get("contoso1_gmail.com#EXT#@microsoft.onmicrosoft.com")
        .select(["id", "mail"])
        .send()
        .await
        .unwrap();

    assert_eq!(user.id.unwrap().as_str(), "guest");
}

#[tokio::test]
async fn missing_user_is_not_found() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users/nobody"))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(common::graph_error(
                "Request_ResourceNotFound",
                "Resource 'nobody' does not exist",
            )),
        )
        .mount(&server)
        .await;
    let (client, _) = client(&server);

    let err = client.users().get("nobody").send().await.unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.code(), Some("Request_ResourceNotFound"));
    assert!(
        client
            .users()
            .get("nobody")
            .send_optional()
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn manager_is_some_when_assigned_and_none_on_404() {
    let server = MockServer::start().await;
    mount_json(
        &server,
        "/v1.0/users/u1/manager",
        json!({"@odata.type": "#microsoft.graph.user", "id": "7d54cb02-aaa3-4016-9f9c-a4b49422dd9b", "displayName": "Sara Davis"}),
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users/u2/manager"))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(common::graph_error(
                "Request_ResourceNotFound",
                "no manager",
            )),
        )
        .mount(&server)
        .await;
    let (client, _) = client(&server);

    let manager = client.users().manager("u1").send().await.unwrap().unwrap();
    assert_eq!(manager.display_name(), Some("Sara Davis"));
    assert!(manager.as_user().is_some());
    assert!(client.users().manager("u2").send().await.unwrap().is_none());
}

#[tokio::test]
async fn photo_bytes_come_with_their_content_type_and_404_is_none() {
    let server = MockServer::start().await;
    let jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3];
    Mock::given(method("GET"))
        .and(path("/v1.0/users/u1/photos/240x240/$value"))
        .and(header("accept", "image/*"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(jpeg.clone(), "image/jpeg"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users/u1/photo/$value"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(jpeg.clone(), "image/png"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users/u2/photo/$value"))
        .respond_with(ResponseTemplate::new(404).set_body_json(common::graph_error("ImageNotFound", "Exception of type 'Microsoft.Fast.Profile.Core.Exception.ImageNotFoundException' was thrown.")))
        .mount(&server)
        .await;
    let (client, _) = client(&server);

    let sized = client
        .users()
        .photo("u1")
        .size(PhotoSize::S240)
        .send()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sized.content_type, "image/jpeg");
    assert_eq!(sized.bytes.as_ref(), jpeg.as_slice());
    let largest = client.users().photo("u1").send().await.unwrap().unwrap();
    assert_eq!(largest.content_type, "image/png");
    assert!(client.users().photo("u2").send().await.unwrap().is_none());
}

#[tokio::test]
async fn redirects_are_not_followed_so_the_token_stays_home() {
    let server = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users/u1/photo/$value"))
        .respond_with(ResponseTemplate::new(302).insert_header(
            "Location",
            format!("{}/photo.jpg", elsewhere.uri()).as_str(),
        ))
        .mount(&server)
        .await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&elsewhere)
        .await;
    let (client, _) = client(&server);

    let err = client.users().photo("u1").send().await.unwrap_err();

    assert!(
        matches!(err, GraphError::UnexpectedResponse { status: 302, .. }),
        "{err:?}"
    );
    assert_eq!(elsewhere.received_requests().await.unwrap().len(), 0);
}

#[tokio::test]
async fn empty_dot_and_dot_dot_ids_are_refused_instead_of_naming_another_resource() {
    let server = MockServer::start().await;
    // What `/users/..` and `/users/` would reach: the user list, which decodes as a User.
    mount_json(&server, "/v1.0/users", json!({"value": [{"id": "u1"}]})).await;
    mount_json(&server, "/v1.0/users/", json!({"value": [{"id": "u1"}]})).await;
    mount_json(&server, "/v1.0/groups/members", json!({"value": []})).await;
    let (client, _) = client(&server);

    for id in ["", ".", ".."] {
        let user = client.users().get(id).send().await;
        assert!(
            matches!(&user, Err(GraphError::InvalidRequest { .. })),
            "{id:?}: {user:?}"
        );
        let members: Result<Vec<DirectoryObject>, _> =
            client.groups().members(id).stream().try_collect().await;
        assert!(
            matches!(&members, Err(GraphError::InvalidRequest { .. })),
            "{id:?}: {members:?}"
        );
        assert!(matches!(
            client.users().manager(id).send().await,
            Err(GraphError::InvalidRequest { .. })
        ));
        assert!(matches!(
            client.users().photo(id).send().await,
            Err(GraphError::InvalidRequest { .. })
        ));
        assert!(client.groups().members(id).to_batch_item().is_err());
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
    // A real id still goes out.
    mount_json(&server, "/v1.0/users/u1", json!({"id": "u1"})).await;
    let user = client.users().get("u1").send().await.unwrap();
    assert_eq!(
        user.id.as_ref().map(graph_client::ObjectId::as_str),
        Some("u1")
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}
