//! Entra's token answers (spec 2d; `expires_in` as number or text, URL-encoded or plain
//! scopes, `token_type` in any case) as the client reads them.
//!
//! Properties: never panics; `Debug` of the result never shows the access, refresh or id
//! token (the answer with marked token values shows no mark).
#![no_main]

use entra_auth::fuzzing::token_response;
use libfuzzer_sys::fuzz_target;

const MARK: &str = "TOKEN-MARK-7f3a";

fn shown(body: &[u8]) -> String {
    match token_response(body) {
        Ok(answer) => format!("{answer:?}"),
        Err(error) => format!("{error:?} {error}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = shown(data);
    let Ok(serde_json::Value::Object(mut object)) = serde_json::from_slice(data) else {
        return;
    };
    if String::from_utf8_lossy(data).contains("MARK") {
        return;
    }
    for name in ["access_token", "refresh_token", "id_token"] {
        if let Some(value @ serde_json::Value::String(_)) = object.get_mut(name) {
            *value = serde_json::Value::String(format!("{MARK}-{name}"));
        }
    }
    let marked = serde_json::to_vec(&object).expect("encodes");
    let shown = shown(&marked);
    assert!(!shown.contains(MARK), "a token shows: {shown}");
});
