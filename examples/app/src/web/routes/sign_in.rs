//! The service's own sign-in and sign-out (the customer, not Microsoft).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::Extension;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::SecretString;
use tower_sessions::Session;

use super::error::AppError;
use super::extract::{SignedIn, check_csrf};
use super::{Fields, Result, field, html};
use crate::web::AppState;
use crate::web::accounts;
use crate::web::pages::{self, Ctx};
use crate::web::session;

pub(super) async fn home(me: Option<SignedIn>) -> Redirect {
    match me {
        Some(_) => Redirect::to("/integrations"),
        None => Redirect::to("/sign-in"),
    }
}

pub(super) async fn sign_in_page(session: Session) -> Result<Response> {
    let current = match session::current(&session).await? {
        Some(current) if current.owner.is_some() => {
            return Ok(Redirect::to("/integrations").into_response());
        }
        Some(current) => current,
        None => session::start_anonymous(&session).await?,
    };
    let ctx = Ctx {
        customer: None,
        csrf: current.csrf,
    };
    Ok(html(&pages::sign_in(&ctx, "", None)).into_response())
}

/// Checks the form against the anonymous session the sign-in page started (none: a
/// forged POST), counts the attempt against the email's and the client address's limits
/// (429 with `Retry-After` beyond them), then replaces that session with a signed-in one.
pub(super) async fn sign_in(
    State(state): State<AppState>,
    session: Session,
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
    axum::Form(fields): axum::Form<Fields>,
) -> Result<Response> {
    let Some(current) = session::current(&session).await? else {
        return Err(AppError::Csrf);
    };
    check_csrf(&current, &fields)?;
    let email = field(&fields, "email").unwrap_or_default();
    let password = SecretString::from(field(&fields, "password").unwrap_or_default().to_owned());
    let ctx = Ctx {
        customer: None,
        csrf: current.csrf.clone(),
    };
    // The peer address: behind a proxy it is the proxy's, so all its clients share it.
    let address = client.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.0.ip());
    if let Err(wait) = state.sign_in_limiter().check(email, address) {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let message = format!("Too many sign-in attempts. Wait {seconds} seconds, then try again.");
        let page = pages::sign_in(&ctx, email, Some(&message));
        let mut response = (StatusCode::TOO_MANY_REQUESTS, html(&page)).into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return Ok(response);
    }
    let Some(customer) = accounts::authenticate(&state.config().customers, email, password).await
    else {
        let page = pages::sign_in(&ctx, email, Some("Wrong email or password."));
        return Ok((StatusCode::UNAUTHORIZED, html(&page)).into_response());
    };
    session::sign_in(&session, &customer.owner()).await?;
    Ok(Redirect::to("/integrations").into_response())
}

/// Ends the signed-in session (its row is deleted, so every instance forgets it; the
/// session layer removes the cookie). Without one (expired, or signed out elsewhere) it
/// is signed out anyway.
pub(super) async fn sign_out(
    me: Option<SignedIn>,
    axum::Form(fields): axum::Form<Fields>,
) -> Result<Response> {
    if let Some(me) = me {
        check_csrf(&me.session, &fields)?;
        session::sign_out(&me.session).await?;
    }
    Ok(Redirect::to("/sign-in").into_response())
}
