//! The service's own sign-in and sign-out (the customer, not Microsoft).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::SignedCookieJar;
use axum_extra::extract::cookie::Cookie;

use super::error::AppError;
use super::extract::{SignedIn, check_csrf};
use super::{Fields, Result, field, html};
use crate::web::AppState;
use crate::web::accounts;
use crate::web::pages::{self, Ctx};
use crate::web::session::COOKIE;

pub(super) async fn home(me: Option<SignedIn>) -> Redirect {
    match me {
        Some(_) => Redirect::to("/integrations"),
        None => Redirect::to("/sign-in"),
    }
}

pub(super) async fn sign_in_page(State(state): State<AppState>, jar: SignedCookieJar) -> Response {
    let secure = state.config().secure_cookies;
    let (current, jar) = match state.sessions().current(&jar) {
        Some(current) if current.owner.is_some() => {
            return Redirect::to("/integrations").into_response();
        }
        Some(current) => (current, jar),
        None => {
            let (current, cookie) = state.sessions().start(None, None, secure);
            (current, jar.add(cookie))
        }
    };
    let ctx = Ctx {
        customer: None,
        csrf: current.csrf,
    };
    (jar, html(&pages::sign_in(&ctx, "", None))).into_response()
}

/// Checks the form against the anonymous session the sign-in page started (none: a
/// forged POST), then replaces that session with a signed-in one.
pub(super) async fn sign_in(
    State(state): State<AppState>,
    jar: SignedCookieJar,
    axum::Form(fields): axum::Form<Fields>,
) -> Result<Response> {
    let Some(current) = state.sessions().current(&jar) else {
        return Err(AppError::Csrf);
    };
    check_csrf(&current, &fields)?;
    let email = field(&fields, "email").unwrap_or_default();
    let password = field(&fields, "password").unwrap_or_default();
    let Some(customer) = accounts::authenticate(&state.config().customers, email, password) else {
        let ctx = Ctx {
            customer: None,
            csrf: current.csrf.clone(),
        };
        let page = pages::sign_in(&ctx, email, Some("Wrong email or password."));
        return Ok((StatusCode::UNAUTHORIZED, html(&page)).into_response());
    };
    let (_, cookie) = state.sessions().start(
        Some(customer.owner()),
        Some(&current.id),
        state.config().secure_cookies,
    );
    Ok((jar.add(cookie), Redirect::to("/integrations")).into_response())
}

pub(super) async fn sign_out(
    State(state): State<AppState>,
    me: Option<SignedIn>,
    jar: SignedCookieJar,
    axum::Form(fields): axum::Form<Fields>,
) -> Result<Response> {
    // Without a signed-in session (expired, or the app restarted) it is signed out anyway.
    if let Some(me) = me {
        check_csrf(&me.session, &fields)?;
        state.sessions().end(&me.session.id);
    }
    let jar = jar.remove(Cookie::build(COOKIE).path("/"));
    Ok((jar, Redirect::to("/sign-in")).into_response())
}
