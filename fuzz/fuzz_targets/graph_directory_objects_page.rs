//! A Graph page of directory objects (`members`, `transitiveMembers`, `memberOf`,
//! `manager`), dispatched on `@odata.type`. Property: decode → encode → decode gives an
//! equal page, and the accessors agree with the variant.
#![no_main]

use graph_client::{DirectoryObject, Page};
use libfuzzer_sys::fuzz_target;

#[path = "../src/pages.rs"]
mod pages;

fuzz_target!(|data: &[u8]| {
    let Ok(page) = graph_client::fuzzing::decode::<Page<DirectoryObject>>(data) else {
        return;
    };
    pages::assert_round_trip(&page);
    for object in page.items() {
        let _ = (object.id(), object.display_name());
        let name = object.type_name();
        assert!(!name.is_empty(), "type_name is never empty: {object:?}");
        assert_eq!(object.as_user().is_some(), name == "user");
        assert_eq!(object.as_group().is_some(), name == "group");
    }
    // A single object (`GET /users/{id}/manager`) decodes the same way.
    if let Ok(object) = graph_client::fuzzing::decode::<DirectoryObject>(data) {
        let encoded = serde_json::to_vec(&object).expect("a decoded object encodes");
        let again: DirectoryObject =
            serde_json::from_slice(&encoded).expect("an encoded object decodes");
        assert_eq!(object, again);
    }
});
