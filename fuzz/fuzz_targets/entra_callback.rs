//! The redirect back from Entra (spec 1a, 2a, 5a): a query, a `form_post` body, or a
//! whole redirect URL (query or fragment), through `entra_auth::CallbackParams` and the
//! admin-consent reading of it.
//!
//! Properties: never panics; `Debug` and `Display` never depend on the code or the state
//! (the same callback with other code and state values shows the same).
#![no_main]

use entra_auth::url::{Url, form_urlencoded};
use entra_auth::{AdminConsent, CallbackParams};
use libfuzzer_sys::fuzz_target;

/// The query with every `code` and `state` value replaced, other pairs kept as decoded.
fn with_other_secrets(query: &str) -> String {
    let query = query.trim().trim_start_matches(['?', '#']);
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "code" => out.append_pair(&name, "replaced-code"),
            "state" => out.append_pair(&name, "replaced-state"),
            _ => out.append_pair(&name, &value),
        };
    }
    out.finish()
}

fn shown(params: &Result<CallbackParams, entra_auth::AuthError>) -> String {
    match params {
        Ok(params) => format!("{params:?} {params}"),
        Err(error) => format!("{error:?} {error}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = CallbackParams::from_query(text);
    let replaced = CallbackParams::from_query(&with_other_secrets(text));
    assert_eq!(
        shown(&parsed),
        shown(&replaced),
        "Debug or Display shows the code or the state"
    );
    if let Ok(params) = &parsed {
        let _ = (params.state(), params.is_error());
        if let Ok(consent) = AdminConsent::from_callback(params) {
            let _ = (
                consent.claimed_tenant(),
                consent.scopes(),
                format!("{consent:?}"),
            );
        }
    }
    let _ = CallbackParams::from_form_body(text);
    if let Ok(params) = CallbackParams::from_redirect_url(text) {
        let _ = format!("{params:?} {params}");
        // The same URL's query or fragment, read alone, gives the same callback.
        if let Ok(url) = Url::parse(text.trim()) {
            let part = match (url.query(), url.fragment()) {
                (Some(query), _) if !query.is_empty() => query.to_owned(),
                (_, Some(fragment)) => fragment.to_owned(),
                _ => String::new(),
            };
            assert_eq!(
                shown(&Ok(params)),
                shown(&CallbackParams::from_query(&part))
            );
        }
    }
});
