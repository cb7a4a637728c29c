//! The extractors that open the handlers: who is signed in ([`SignedIn`]), which of
//! their connections the path names ([`OwnConnection`]), and a form sent with the
//! session's CSRF token ([`SignedForm`]). Each rejects with the page the customer sees:
//! the redirect to `/sign-in`, the 404 page, the 403 "Form expired" page.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use connection_store::{Connection, ConnectionId, OwnerId};
use tower_sessions::Session;

use super::error::AppError;
use super::{Fields, Result, field};
use crate::web::AppState;
use crate::web::pages::Ctx;
use crate::web::session::{self, Current};

/// A signed-in customer: the store's owner, and their session (its CSRF token).
///
/// Rejection: [`AppError::SignInRequired`], the redirect to `/sign-in`;
/// [`AppError::Internal`] when the session cannot be read. As an `Option`, `None` for
/// both. Looked up once per request however many extractors ask (kept in the request's
/// extensions).
#[derive(Clone)]
pub(super) struct SignedIn {
    /// The customer, the owner of every store call.
    pub owner: OwnerId,
    /// The session, and the CSRF token its forms carry.
    pub session: Current,
}

impl SignedIn {
    /// The customer signed in with this request's session, if any.
    pub(super) async fn from_session(session: &Session) -> Result<Option<Self>> {
        let Some(current) = session::current(session).await? else {
            return Ok(None);
        };
        Ok(current.owner.clone().map(|owner| Self {
            owner,
            session: current,
        }))
    }

    /// This request's session (the session layer puts it in every request).
    pub(super) fn session_of(parts: &Parts) -> Result<Session> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("no session layer")))
    }

    /// What the pages need: who, and the CSRF token for their forms.
    pub(super) fn ctx(&self) -> Ctx {
        Ctx {
            customer: Some(self.owner.as_str().to_owned()),
            csrf: self.session.csrf.clone(),
        }
    }
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self> {
        if let Some(me) = parts.extensions.get::<Self>() {
            return Ok(me.clone());
        }
        let session = Self::session_of(parts)?;
        let me = Self::from_session(&session)
            .await?
            .ok_or(AppError::SignInRequired)?;
        parts.extensions.insert(me.clone());
        Ok(me)
    }
}

impl axum::extract::OptionalFromRequestParts<AppState> for SignedIn {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Infallible> {
        Ok(
            <Self as FromRequestParts<AppState>>::from_request_parts(parts, state)
                .await
                .ok(),
        )
    }
}

/// The signed-in customer's connection named by the path's `{id}`, looked up with them
/// as the owner.
///
/// Rejections: [`SignedIn`]'s first (the redirect to `/sign-in`), then
/// [`AppError::NotFound`] for a malformed id, an unknown one, or another customer's.
pub(super) struct OwnConnection {
    /// Who asked.
    pub me: SignedIn,
    /// Their connection.
    pub connection: Connection,
}

impl FromRequestParts<AppState> for OwnConnection {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let me = SignedIn::from_request_parts(parts, state).await?;
        let id = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .ok()
            .and_then(|Path(params)| params.get("id")?.parse::<ConnectionId>().ok())
            .ok_or(AppError::NotFound)?;
        let connection = state.store().get(&me.owner, id).await?;
        Ok(Self { me, connection })
    }
}

/// A signed-in customer's form, sent with their session's CSRF token: the fields as
/// sent.
///
/// Rejections: [`SignedIn`]'s first (the redirect to `/sign-in`), then axum's for a body
/// that is not a form, then [`AppError::Csrf`] for a missing or wrong token.
pub(super) struct SignedForm(pub Fields);

impl FromRequest<AppState> for SignedForm {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let me = SignedIn::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let request = Request::from_parts(parts, body);
        let axum::Form(fields) = axum::Form::<Fields>::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        check_csrf(&me.session, &fields).map_err(IntoResponse::into_response)?;
        Ok(Self(fields))
    }
}

/// Refuses a form without `session`'s CSRF token.
pub(super) fn check_csrf(session: &Current, fields: &Fields) -> Result<()> {
    match field(fields, "csrf") {
        Some(token) if session::csrf_matches(session, token) => Ok(()),
        _ => Err(AppError::Csrf),
    }
}
