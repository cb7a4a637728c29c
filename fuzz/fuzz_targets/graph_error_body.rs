//! Graph's error JSON (`{"error":{"code","message","innerError":{…}}}` and its quirks:
//! `innererror`, number codes, hyphenated or camel-case ids) with any status, as the
//! client classifies it. The first two bytes are the status, the rest the body.
//!
//! Properties: the error keeps the status it came with; a 410 or a resync code is a
//! resync; a token in the `Location` of a resync never shows in `Debug` or `Display`.
#![no_main]

use std::time::Duration;

use graph_client::GraphError;
use graph_client::fuzzing::classify;
use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "fuzz-delta-token-0123456789";

fuzz_target!(|data: &[u8]| {
    let Some((status, body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let status = 200 + u16::from_le_bytes(*status) % 400;
    let location = format!("https://graph.microsoft.com/v1.0/users/delta?$deltatoken={TOKEN}");
    let error = classify(status, body, Some(Duration::from_secs(3)), Some(&location));
    let shown = format!("{error:?} {error}");
    assert!(!shown.contains(TOKEN), "the Location token shows: {shown}");
    let _ = (
        error.action(),
        error.is_retryable(),
        error.is_not_found(),
        error.requires_reauthorization(),
        error.code(),
        error.request_id(),
        error.retry_after(),
    );
    match &error {
        GraphError::Service(service) => {
            assert!(status >= 400, "{status} classified as a service error");
            assert_eq!(service.status, status);
        }
        GraphError::ResyncRequired {
            error: service,
            location,
        } => {
            assert_eq!(service.status, status);
            assert!((400..500).contains(&status));
            if let Some(location) = location {
                assert_eq!(
                    location.expose_secret(),
                    format!("https://graph.microsoft.com/v1.0/users/delta?$deltatoken={TOKEN}")
                );
            }
        }
        _ => {}
    }
    if status == 410 {
        assert!(error.requires_resync(), "a 410 is a resync: {error:?}");
    }
    if let Some(service) = error.service_error() {
        let _ = service.to_string();
    }
});
