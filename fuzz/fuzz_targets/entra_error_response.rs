//! Entra's token-endpoint error bodies (spec 4a: `error_codes` as numbers or text,
//! `claims` as text or JSON) with any status and `Retry-After`, classified as the client
//! does. The first two bytes are the status, the next two the `Retry-After` seconds (read
//! as the client reads the header), the rest the body.
//!
//! Properties: never panics; the predicates agree (a reauthorization is not retryable);
//! a `Retry-After` stays within the hour MSAL honours.
#![no_main]

use std::time::Duration;

use entra_auth::fuzzing::{error_response, parse_retry_after};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

fuzz_target!(|data: &[u8]| {
    let Some((head, body)) = data.split_first_chunk::<4>() else {
        return;
    };
    let status = 400 + u16::from_le_bytes([head[0], head[1]]) % 200;
    // The header as sent, parsed as the client parses it (it caps the wait at an hour).
    let seconds = u16::from_le_bytes([head[2], head[3]]).to_string();
    let retry_after = parse_retry_after(&seconds, OffsetDateTime::UNIX_EPOCH);
    let Some(error) = error_response(status, body, retry_after) else {
        return;
    };
    let _ = (
        format!("{error:?} {error}"),
        error.is_configuration(),
        error.is_timeout(),
        error.reconnect_claims(),
    );
    if error.requires_reauthorization() {
        assert!(!error.is_retryable(), "{error:?}");
    }
    if let Some(wait) = error.retry_after() {
        assert!(wait <= Duration::from_secs(3600), "{wait:?}");
    }
    if let Some(entra) = error.entra_error() {
        let _ = (
            entra.error_codes(),
            entra.claims(),
            entra.trace_id(),
            entra.status(),
        );
    }
});
