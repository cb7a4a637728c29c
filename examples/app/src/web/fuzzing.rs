//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, never on by default):
//! the web app's reading of its form bodies (the sync-scope form and the sign-in form),
//! as its handlers read them. Not a stable API.

use secrecy::SecretString;

use super::routes::{Fields, field};
use super::scope;
pub use super::scope::SyncScope;

/// The most groups one scope may name.
pub const MAX_GROUPS: usize = scope::MAX_GROUPS;

/// An `application/x-www-form-urlencoded` body as the handlers' `axum::Form<Fields>`
/// decodes it: axum's `serde_urlencoded` reads the pairs with `form_urlencoded::parse`,
/// which this calls directly (the same pairs, in order, repeated keys kept).
fn fields(body: &str) -> Fields {
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

/// The scope a posted scope form sets, as the Manage page's handler reads it (before it
/// checks that the groups exist).
///
/// # Errors
/// The sentence the page shows for a refused form.
pub fn scope_from_form(body: &str) -> Result<SyncScope, String> {
    SyncScope::from_form(&fields(body)).map_err(|error| error.to_string())
}

/// The form body the scope page posts for `scope`: `mode=all` or `mode=groups` with one
/// `group` per id, and the ticked checkboxes (`skip_disabled=on`, `skip_guests=on`).
pub fn scope_to_form(scope: &SyncScope) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair(
        "mode",
        if scope.groups.is_empty() {
            "all"
        } else {
            "groups"
        },
    );
    for group in &scope.groups {
        form.append_pair("group", group);
    }
    if scope.skip_disabled {
        form.append_pair("skip_disabled", "on");
    }
    if scope.skip_guests {
        form.append_pair("skip_guests", "on");
    }
    form.finish()
}

/// The email and the password a posted sign-in form holds, as the sign-in handler reads
/// them (a missing field is empty); the password stays a [`SecretString`].
pub fn sign_in_form(body: &str) -> (String, SecretString) {
    let fields = fields(body);
    let email = field(&fields, "email").unwrap_or_default().to_owned();
    let password = SecretString::from(field(&fields, "password").unwrap_or_default().to_owned());
    (email, password)
}
