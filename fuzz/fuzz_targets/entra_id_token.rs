//! Id-token claims (spec 5a: `aud` one or many with `azp`, `iss` for the tenant,
//! `tid`/`oid` GUIDs, `nonce`, `exp`/`nbf` with skew). The input is the claims JSON; the
//! target wraps it in a token (`header.payload.signature`, base64url) as Entra would, and
//! also tries the input as a whole token.
//!
//! Properties: never panics; an accepted token's tenant and object ids are GUIDs and its
//! `aud` names the client; a token for another nonce is refused.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entra_auth::fuzzing::id_token;
use libfuzzer_sys::fuzz_target;

const CLIENT_ID: &str = "6731de76-14a6-49ae-97bc-6eba6914391e";
const NOW: i64 = 1_700_000_000;

fn is_guid(text: &str) -> bool {
    uuid::Uuid::try_parse(text).is_ok() && text.len() == 36
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = id_token(text, CLIENT_ID, None, None, NOW);
    }
    let token = format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"RS256","kid":"k"}"#),
        URL_SAFE_NO_PAD.encode(data)
    );
    if let Ok(identity) = id_token(&token, CLIENT_ID, None, None, NOW) {
        assert!(is_guid(identity.tenant_id.as_str()), "{identity:?}");
        assert!(is_guid(identity.object_id.as_str()), "{identity:?}");
        let claims: serde_json::Value =
            serde_json::from_slice(data).expect("accepted claims are JSON");
        let aud = &claims["aud"];
        assert!(
            aud.as_str()
                .is_some_and(|a| a.eq_ignore_ascii_case(CLIENT_ID))
                || aud.as_array().is_some_and(|l| l.iter().any(|a| a
                    .as_str()
                    .is_some_and(|a| a.eq_ignore_ascii_case(CLIENT_ID)))),
            "accepted for another audience"
        );
        assert!(
            id_token(
                &token,
                CLIENT_ID,
                Some("a-nonce-nobody-sent-0451"),
                None,
                NOW
            )
            .is_err()
                || claims["nonce"] == "a-nonce-nobody-sent-0451",
            "a token without our nonce was accepted"
        );
    }
});
