//! A Graph page of users (`GET /users`, `/users/{id}/memberOf/microsoft.graph.user`…)
//! as the client decodes it. Property: decode → encode → decode gives an equal page.
#![no_main]

use graph_client::{Page, User};
use libfuzzer_sys::fuzz_target;

#[path = "../src/pages.rs"]
mod pages;

fuzz_target!(|data: &[u8]| {
    let Ok(page) = graph_client::fuzzing::decode::<Page<User>>(data) else {
        return;
    };
    pages::assert_round_trip(&page);
    for user in page.items() {
        let _ = user.object_id();
    }
});
