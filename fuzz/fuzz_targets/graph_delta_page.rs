//! Users and groups delta rounds: pages with `@removed` items, `members@delta` slices of
//! large groups spread over several pages, next and delta links. The input's first byte
//! picks users or groups; the rest is one page per NUL-separated part (JSON holds no raw
//! NUL), fed to the round in order.
//!
//! Properties: each page round-trips (decode → encode → decode); a round without error
//! ends with a delta link on Graph's origin; no upsert still carries `@removed`; a group
//! with `members@delta` is handed out once, with all of its slices merged.
#![no_main]

use std::collections::HashSet;

use graph_client::fuzzing::{DeltaOutcome, decode, delta_round};
use graph_client::{DeltaChange, DeltaObject, Group, Page, User};
use libfuzzer_sys::fuzz_target;

#[path = "../src/pages.rs"]
mod pages;

const ORIGIN: &str = "https://graph.microsoft.com";

fn pages_of<T>(data: &[u8]) -> Vec<Page<T>>
where
    T: DeltaObject + serde::Serialize + PartialEq + std::fmt::Debug,
{
    data.split(|byte| *byte == 0)
        .take(8)
        .filter_map(|part| decode::<Page<T>>(part).ok())
        .inspect(pages::assert_round_trip)
        .collect()
}

fn check_outcome<T: DeltaObject>(outcome: &mut DeltaOutcome<T>) {
    if outcome.error.is_none() {
        let link = outcome
            .delta_link
            .as_ref()
            .expect("a round without error ends with a delta link");
        // Compared as origins: `hTtps://GRAPH.microsoft.com:443/…` is Graph's origin too.
        let origin = url::Url::parse(link.expose_secret()).map(|url| url.origin());
        let graph = url::Url::parse(ORIGIN).map(|url| url.origin());
        assert_eq!(
            origin.ok(),
            graph.ok(),
            "a delta link on another origin was kept"
        );
    }
    for change in &mut outcome.changes {
        if let DeltaChange::Upsert(item) = change {
            assert!(item.take_removed().is_none(), "an upsert carried @removed");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    if kind & 1 == 0 {
        let mut outcome = delta_round(pages_of::<User>(rest), ORIGIN);
        check_outcome(&mut outcome);
    } else {
        let pages = pages_of::<Group>(rest);
        let mut outcome = delta_round(pages, ORIGIN);
        check_outcome(&mut outcome);
        let mut merged = HashSet::new();
        for change in &outcome.changes {
            if let DeltaChange::Upsert(group) = change
                && !group.members_delta.is_empty()
                && let Some(id) = group.object_id()
            {
                assert!(
                    merged.insert(id.clone()),
                    "group {id} with members@delta handed out twice in one round"
                );
            }
        }
    }
});
