//! The web app's form bodies (`application/x-www-form-urlencoded`, as axum's
//! `Form<Vec<(String, String)>>` decodes them) read as the sync-scope form and the sign-in
//! form. (The `--customer email:password` option is left out: it hashes the password with
//! Argon2id, far too slow per input.)
//!
//! Properties: never panics; a scope the form gives is normalized (groups sorted, no
//! repeats, at most MAX_GROUPS) and reading it back as a form gives the same scope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use m365_link_app::web::fuzzing;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match pick % 2 {
        0 => {
            if let Ok(scope) = fuzzing::scope_from_form(text) {
                assert!(scope.groups.windows(2).all(|w| w[0] < w[1]), "{scope:?}");
                assert!(scope.groups.len() <= fuzzing::MAX_GROUPS);
                assert_eq!(
                    fuzzing::scope_from_form(&fuzzing::scope_to_form(&scope)).ok(),
                    Some(scope)
                );
            }
        }
        _ => {
            let _ = fuzzing::sign_in_form(text);
        }
    }
});
