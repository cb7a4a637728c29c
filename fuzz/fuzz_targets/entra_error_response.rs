//! WAITING for `entra_auth::fuzzing` (see fuzz/README.md): Entra's token-endpoint error
//! bodies (spec 4a: `error_codes` as numbers or text, `claims` as text or JSON) with any
//! status and `Retry-After`, classified as the client does. The first two bytes are the
//! status, the next two the `Retry-After` seconds, the rest the body.
//!
//! Properties: never panics; the predicates agree (a reauthorization is not retryable);
//! a `Retry-After` stays within the hour MSAL honours.
#![no_main]

use std::time::Duration;

use entra_auth::fuzzing::error_response;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((head, body)) = data.split_first_chunk::<4>() else {
        return;
    };
    let status = 400 + u16::from_le_bytes([head[0], head[1]]) % 200;
    let retry_after = Some(Duration::from_secs(u64::from(u16::from_le_bytes([head[2], head[3]]))));
    let Some(error) = error_response(status, body, retry_after) else {
        return;
    };
    let _ = (format!("{error:?} {error}"), error.is_configuration(), error.is_timeout(), error.reconnect_claims());
    if error.requires_reauthorization() {
        assert!(!error.is_retryable(), "{error:?}");
    }
    if let Some(wait) = error.retry_after() {
        assert!(wait <= Duration::from_secs(3600), "{wait:?}");
    }
    if let Some(entra) = error.entra_error() {
        let _ = (entra.error_codes(), entra.claims(), entra.trace_id(), entra.status());
    }
});
