//! `$batch` response bodies (spec 12): answers in any order, ids as text, headers in any
//! case with string or number values, bodies of any JSON, claims challenges in an item's
//! own `WWW-Authenticate`, each decoded as a page of directory objects.
//!
//! Properties: a `Retry-After` is at most a day; a challenge only on 401/403 with an
//! object of claims within the cap; a success decodes or is a decode error, a failure is
//! an error with its status.
#![no_main]

use std::time::{Duration, SystemTime};

use graph_client::fuzzing::batch_answers;
use graph_client::{DirectoryObject, GraphError, MAX_CLAIMS_BYTES, Page, RetryPolicy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);
    let Ok(answers) = batch_answers::<Page<DirectoryObject>>(data, now) else {
        return;
    };
    for answer in answers {
        if let Some(wait) = answer.retry_after {
            assert!(
                wait <= RetryPolicy::MAX_WAIT,
                "Retry-After over a day: {wait:?}"
            );
        }
        if let Some(challenge) = &answer.challenge {
            assert!(matches!(answer.status, 401 | 403));
            assert!(challenge.claims().len() <= MAX_CLAIMS_BYTES);
            let claims: Result<serde_json::Map<String, serde_json::Value>, _> =
                serde_json::from_str(challenge.claims());
            assert!(claims.is_ok(), "challenge claims are not a JSON object");
        }
        match &answer.result {
            Ok(page) => {
                assert!(
                    (200..300).contains(&answer.status),
                    "a {} decoded",
                    answer.status
                );
                let _ = page.items().len();
            }
            Err(GraphError::Decode { .. }) => {
                assert!((200..300).contains(&answer.status));
            }
            Err(error) => {
                assert!(
                    !(200..300).contains(&answer.status),
                    "a {} failed: {error:?}",
                    answer.status
                );
                let _ = (error.action(), error.is_retryable(), error.to_string());
                if let Some(status) = error.status() {
                    assert_eq!(status, answer.status);
                }
            }
        }
    }
});
