//! Decoded models encode back to what they were decoded from: the property the fuzz
//! targets `graph_users_page`, `graph_groups_page` and `graph_delta_page` check, here on
//! the inputs that broke it (kept in `fuzz/corpus/`).

use graph_client::{DeltaObject, Group, Page, RemovedReason, User};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    items: &[T],
) -> Vec<T> {
    let encoded = serde_json::to_vec(items).unwrap();
    let again: Vec<T> = serde_json::from_slice(&encoded).unwrap();
    assert_eq!(
        items,
        again.as_slice(),
        "decode -> encode -> decode changed the items"
    );
    again
}

#[test]
fn a_removed_delta_user_encodes_its_removed_marker() {
    // users-delta-removed.json: the fuzz target's first crash (its seed, as sent by Graph).
    let page: Page<User> =
        serde_json::from_slice(include_bytes!("fixtures/users-delta-removed.json")).unwrap();
    let mut again = round_trip(page.items());
    let removed: Vec<Option<RemovedReason>> =
        again.iter_mut().map(DeltaObject::take_removed).collect();
    assert!(
        removed.contains(&Some(RemovedReason::Changed)),
        "{removed:?}"
    );
    let encoded = serde_json::to_value(page.items()).unwrap();
    let markers: Vec<&Value> = encoded
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|user| user.get("@removed"))
        .collect();
    assert_eq!(markers, [&serde_json::json!({"reason": "changed"})]);
}

#[test]
fn removed_markers_of_both_reasons_survive_encoding_users_and_groups() {
    let body = r#"{"value":[
        {"id":"u1","@removed":{"reason":"deleted"}},
        {"id":"u2","@removed":{"reason":"changed"}},
        {"id":"u3","@removed":{"reason":"some-later-reason"}},
        {"id":"u4","displayName":"Kept"}]}"#;
    let users: Page<User> = serde_json::from_str(body).unwrap();
    let mut users = round_trip(users.items());
    let reasons: Vec<Option<RemovedReason>> =
        users.iter_mut().map(DeltaObject::take_removed).collect();
    assert_eq!(
        reasons,
        [
            Some(RemovedReason::Deleted),
            Some(RemovedReason::Changed),
            Some(RemovedReason::Changed),
            None
        ]
    );
    let groups: Page<Group> = serde_json::from_str(body).unwrap();
    let mut groups = round_trip(groups.items());
    let reasons: Vec<Option<RemovedReason>> =
        groups.iter_mut().map(DeltaObject::take_removed).collect();
    assert_eq!(reasons[0], Some(RemovedReason::Deleted));
    // An item without the marker encodes without it.
    let plain = serde_json::to_value(&users[3]).unwrap();
    assert_eq!(
        plain,
        serde_json::json!({"id": "u4", "displayName": "Kept"})
    );
}

#[test]
fn a_removed_delta_group_and_its_member_changes_round_trip() {
    for fixture in [
        &include_bytes!("fixtures/groups-delta-members-removed.json")[..],
        &include_bytes!("fixtures/groups-delta-large-group-page1.json")[..],
    ] {
        let page: Page<Group> = serde_json::from_slice(fixture).unwrap();
        round_trip(page.items());
    }
}

#[test]
fn numbers_beyond_u64_in_extra_properties_decode_to_what_they_encode_to() {
    // fuzz/corpus/graph_directory_objects_page/crash-dccc0ade…: 184467440737590516165 is
    // read as an f64; without exact float parsing it came back one ULP off after encoding.
    for body in [
        r#"{ "": 184467440737590516165}"#,
        r##"{"id":"u1","@odata.type":"#microsoft.graph.user","x":184467440737590516165}"##,
        r##"{"@odata.type":"#microsoft.graph.device","n":[1.7976931348623157e308,5e-324,0.30000000000000004]}"##,
    ] {
        let object: graph_client::DirectoryObject = serde_json::from_str(body).unwrap();
        let encoded = serde_json::to_string(&object).unwrap();
        let again: graph_client::DirectoryObject = serde_json::from_str(&encoded).unwrap();
        assert_eq!(object, again, "{body} encoded as {encoded}");
        let user: User = serde_json::from_str(body).unwrap();
        round_trip(std::slice::from_ref(&user));
    }
}
