//! `WWW-Authenticate` claims challenges (spec 7; RFC 9110 11.6.1): several headers,
//! several challenges per header, parameters in any order, quoted strings with escapes,
//! base64 claims (standard or URL-safe, padded or not) or plain JSON. The first byte
//! picks the status (401, 403 or another); the rest is one header value per line.
//!
//! Properties: never panics; a parsed challenge has status 401 or 403, error
//! `insufficient_claims`, and claims that are a JSON object of at most MAX_CLAIMS_BYTES;
//! the `HeaderMap` entry point agrees with the text one.
#![no_main]

use graph_client::http::{HeaderMap, HeaderValue, header::WWW_AUTHENTICATE};
use graph_client::{ClaimsChallenge, MAX_CLAIMS_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let status = match pick % 4 {
        0 | 1 => 401,
        2 => 403,
        _ => 400 + u16::from(pick),
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let values: Vec<&str> = text.split('\n').collect();
    let challenge = ClaimsChallenge::from_header_values(status, values.iter().copied());
    if let Some(challenge) = &challenge {
        assert!(matches!(challenge.status(), 401 | 403));
        assert_eq!(challenge.status(), status);
        assert!(
            challenge
                .error()
                .eq_ignore_ascii_case("insufficient_claims")
        );
        assert!(
            challenge.claims().len() <= MAX_CLAIMS_BYTES,
            "claims of {} bytes",
            challenge.claims().len()
        );
        let claims: Result<serde_json::Map<String, serde_json::Value>, _> =
            serde_json::from_str(challenge.claims());
        assert!(
            claims.is_ok(),
            "claims are not a JSON object: {:?}",
            challenge.claims()
        );
        let _ = (
            challenge.authorization_uri(),
            challenge.realm(),
            challenge.to_string(),
        );
    }
    let mut headers = HeaderMap::new();
    for value in &values {
        match HeaderValue::from_str(value) {
            Ok(value) => {
                headers.append(WWW_AUTHENTICATE, value);
            }
            Err(_) => return,
        }
    }
    assert_eq!(ClaimsChallenge::from_headers(status, &headers), challenge);
});
