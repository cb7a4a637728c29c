//! A Graph page of groups (`GET /groups`, `/users/{id}/memberOf/microsoft.graph.group`…)
//! as the client decodes it. Property: decode → encode → decode gives an equal page.
#![no_main]

use graph_client::{Group, Page};
use libfuzzer_sys::fuzz_target;

#[path = "../src/pages.rs"]
mod pages;

fuzz_target!(|data: &[u8]| {
    let Ok(page) = graph_client::fuzzing::decode::<Page<Group>>(data) else {
        return;
    };
    pages::assert_round_trip(&page);
    for group in page.items() {
        let _ = group.object_id();
        for member in &group.members_delta {
            let _ = member.is_removed();
        }
    }
});
