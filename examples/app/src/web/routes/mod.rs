//! The handlers, by page group. Every page but sign-in needs a signed-in customer
//! ([`SignedIn`](extract::SignedIn)), every store call passes that customer as the owner
//! (another customer's connection is a 404: [`OwnConnection`](extract::OwnConnection)),
//! and every POST checks the session's CSRF token ([`SignedForm`](extract::SignedForm)).
//!
//! - `extract`: those three extractors.
//! - `error`: why a request was refused, and its error page.
//! - `sign_in`: the service's own sign-in and sign-out.
//! - `connections`: "Integrations", the list, create, reconnect, rename and remove.
//! - `callback`: Entra's redirect back after a Microsoft sign-in.
//! - `manage`: the Manage page, "Sync now", the sync status and the sync scope.
//! - `imported`: a connection's sync scope and its employee count, as the pages read them.
//! - `photos`: the employees' photos.

mod callback;
mod connections;
mod error;
mod extract;
mod imported;
mod manage;
mod photos;
mod sign_in;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, Response};
use axum::routing::{get, post};
use maud::Markup;

use self::error::AppError;
use super::pages::{BASE, Ctx};
use super::{AppState, CALLBACK_PATH, session};

/// Form fields as sent (`application/x-www-form-urlencoded`), repeated keys kept.
pub(super) type Fields = Vec<(String, String)>;

type Result<T, E = AppError> = std::result::Result<T, E>;

/// The app's routes, with each request's browser session loaded and saved by `sessions`
/// (outside the error pages, which look at the session after the handler).
pub(crate) fn router(
    state: AppState,
    sessions: tower_sessions::SessionManagerLayer<
        session::Store,
        tower_sessions::service::SignedCookie,
    >,
) -> Router {
    Router::new()
        .route("/", get(sign_in::home))
        .route(
            "/sign-in",
            get(sign_in::sign_in_page).post(sign_in::sign_in),
        )
        .route("/sign-out", post(sign_in::sign_out))
        .route("/integrations", get(connections::integrations))
        .route(BASE, get(connections::linked_accounts))
        .route(
            &format!("{BASE}/new"),
            get(connections::new_page).post(connections::create),
        )
        .route(CALLBACK_PATH, get(callback::callback))
        .route(&format!("{BASE}/connections/{{id}}"), get(manage::manage))
        .route(
            &format!("{BASE}/connections/{{id}}/rename"),
            post(connections::rename),
        )
        .route(
            &format!("{BASE}/connections/{{id}}/sync"),
            post(manage::sync_now),
        )
        .route(
            &format!("{BASE}/connections/{{id}}/sync/status"),
            get(manage::sync_status),
        )
        .route(
            &format!("{BASE}/connections/{{id}}/scope"),
            post(manage::save_scope),
        )
        .route(
            &format!("{BASE}/connections/{{id}}/reconnect"),
            post(connections::reconnect),
        )
        .route(
            &format!("{BASE}/connections/{{id}}/remove"),
            get(connections::remove_page).post(connections::remove),
        )
        .route(
            &format!("{BASE}/connections/{{id}}/employees/{{user}}/photo"),
            get(photos::photo),
        )
        .fallback(not_found)
        .layer(axum::middleware::from_fn(error::signed_in_error_pages))
        .layer(sessions)
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            security_headers,
        ))
        .with_state(state)
}

/// The content security policy: only this app's own pages, images and inline styles
/// (the pages have no scripts), no framing, and forms that post only to this app or to
/// the cloud's login origin. The login origin is there because `form-action` also
/// governs where a form's answer redirects: "Connect" and "Reconnect" post here and are
/// answered with a redirect to Entra's authorize endpoint, which browsers that check
/// redirects (Chromium) would otherwise block.
///
/// # Errors
/// When the login base is not a URL with an origin, or makes the header invalid.
pub(crate) fn content_security_policy(
    cloud: &entra_auth::Cloud,
) -> anyhow::Result<header::HeaderValue> {
    use anyhow::Context as _;
    let login = url::Url::parse(&cloud.login_base()).context("the login base is not a URL")?;
    let origin = login.origin();
    anyhow::ensure!(
        origin.is_tuple(),
        "the login base {} has no origin",
        login.as_str()
    );
    let policy = format!(
        "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; \
         form-action 'self' {}; frame-ancestors 'none'; base-uri 'none'",
        origin.ascii_serialization()
    );
    header::HeaderValue::from_str(&policy).context("the content security policy is not a header")
}

/// Headers on every response: no framing (clickjacking), no MIME sniffing, the content
/// security policy ([`content_security_policy`], built once at start), no referrer to
/// other sites, no caching of pages; behind https, HSTS.
async fn security_headers(State(state): State<AppState>, mut response: Response) -> Response {
    let headers = response.headers_mut();
    if state.config().secure_cookies {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            header::HeaderValue::from_static("max-age=31536000"),
        );
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        state.content_security_policy().clone(),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
    // Pages carry employee data and CSRF tokens: not kept by browsers or proxies
    // (photos set their own, private caching).
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    response
}

async fn not_found() -> AppError {
    AppError::NotFound
}

/// The page context of a visitor nobody signed in as.
fn anonymous() -> Ctx {
    Ctx {
        customer: None,
        csrf: String::new(),
    }
}

fn html(markup: &Markup) -> Html<String> {
    Html(markup.clone().into_string())
}

pub(super) fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directives(cloud: &entra_auth::Cloud) -> Vec<String> {
        content_security_policy(cloud)
            .unwrap()
            .to_str()
            .unwrap()
            .split(';')
            .map(|directive| directive.trim().to_owned())
            .collect()
    }

    #[test]
    fn forms_may_post_to_the_app_and_to_the_clouds_login_origin_only() {
        for (cloud, login) in [
            (
                entra_auth::Cloud::Global,
                "https://login.microsoftonline.com",
            ),
            (
                entra_auth::Cloud::UsGovernment,
                "https://login.microsoftonline.us",
            ),
            (
                entra_auth::Cloud::China,
                "https://login.partner.microsoftonline.cn",
            ),
            // A custom login base with a path: the origin only, its port kept.
            (
                entra_auth::Cloud::custom(
                    "http://127.0.0.1:8400/sim/",
                    "https://graph.microsoft.com",
                )
                .unwrap(),
                "http://127.0.0.1:8400",
            ),
        ] {
            let directives = directives(&cloud);
            assert!(
                directives.contains(&format!("form-action 'self' {login}")),
                "{directives:?}"
            );
            assert_eq!(
                directives
                    .iter()
                    .filter(|d| d.starts_with("form-action"))
                    .count(),
                1
            );
            for kept in [
                "default-src 'none'",
                "frame-ancestors 'none'",
                "base-uri 'none'",
            ] {
                assert!(directives.iter().any(|d| d == kept), "{directives:?}");
            }
            assert!(
                !directives.iter().any(|d| d.starts_with("script-src")),
                "{directives:?}"
            );
        }
    }
}
