//! tenant-sim's `$skiptoken` and delta tokens (`$deltatoken`, and the skip cursor inside
//! a delta round's next link), bound to their tenant. The first byte picks the kind; the
//! rest is the token.
//!
//! Properties: never panics; a token that decodes encodes to a token that decodes to
//! the same; another tenant's token never decodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenant_sim::fuzzing;

const TENANT: &str = "fa15d692-e9c7-4460-a743-29f2956fd429";
const OTHER: &str = "0b0c6f1e-7d51-4b7a-a9a2-55c6f31a4c10";

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(token) = std::str::from_utf8(rest) else {
        return;
    };
    match pick % 3 {
        0 => {
            if let Some(position) = fuzzing::decode_skiptoken(TENANT, "users", token) {
                let again = fuzzing::encode_skiptoken(TENANT, "users", position);
                assert_eq!(
                    fuzzing::decode_skiptoken(TENANT, "users", &again),
                    Some(position)
                );
                assert_eq!(fuzzing::decode_skiptoken(OTHER, "users", &again), None);
            }
        }
        1 => {
            if let Some(delta) = fuzzing::decode_delta_token(TENANT, token) {
                let again = delta.encode(TENANT);
                assert_eq!(
                    fuzzing::decode_delta_token(TENANT, &again).as_ref(),
                    Some(&delta)
                );
                assert!(fuzzing::decode_delta_token(OTHER, &again).is_none());
            }
        }
        _ => {
            if let Some(cursor) = fuzzing::decode_delta_cursor(TENANT, token) {
                let again = cursor.encode(TENANT);
                assert_eq!(
                    fuzzing::decode_delta_cursor(TENANT, &again).as_ref(),
                    Some(&cursor)
                );
                assert!(fuzzing::decode_delta_cursor(OTHER, &again).is_none());
            }
        }
    }
});
