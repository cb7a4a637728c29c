//! Why a request was refused, as the page the customer sees.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use connection_store::StoreError;
use futures::future::OptionFuture;
use tower_sessions::Session;

use super::extract::SignedIn;
use super::{anonymous, html};
use crate::mirror::MirrorError;
use crate::web::pages;

/// Why a request was refused.
#[derive(Debug)]
pub(super) enum AppError {
    /// Not signed in: go to the sign-in page.
    SignInRequired,
    /// The form's CSRF token is missing or wrong.
    Csrf,
    /// No such page or connection (or another customer's).
    NotFound,
    /// Something broke; logged with a support reference, shown with only that reference.
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for AppError {
    fn from(error: anyhow::Error) -> Self {
        Self::Internal(error)
    }
}

impl From<tower_sessions::session::Error> for AppError {
    fn from(error: tower_sessions::session::Error) -> Self {
        Self::Internal(error.into())
    }
}

impl From<MirrorError> for AppError {
    fn from(error: MirrorError) -> Self {
        Self::Internal(error.into())
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { .. } => Self::NotFound,
            other => Self::Internal(other.into()),
        }
    }
}

/// An error page's words, kept on the response so that [`signed_in_error_pages`] can
/// render it again with the signed-in customer's header.
#[derive(Clone, Debug)]
struct ErrorPage {
    title: &'static str,
    detail: std::borrow::Cow<'static, str>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let page =
            |status: StatusCode, title: &'static str, detail: std::borrow::Cow<'static, str>| {
                let mut response = (
                    status,
                    Html(pages::error(&anonymous(), title, &detail).into_string()),
                )
                    .into_response();
                response
                    .extensions_mut()
                    .insert(ErrorPage { title, detail });
                response
            };
        match self {
            Self::SignInRequired => Redirect::to("/sign-in").into_response(),
            Self::Csrf => page(
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form was not sent from the current page (or your session ended). Go back, reload the page and try again.".into(),
            ),
            Self::NotFound => page(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no such page, or it belongs to another account.".into(),
            ),
            Self::Internal(error) => {
                let reference = crate::web::support_reference();
                tracing::error!(reference = %reference, error = %format!("{error:#}"), "request failed");
                page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    format!(
                        "The request could not be completed. Try again in a moment; if it \
                         keeps failing, contact support with reference {reference}."
                    )
                    .into(),
                )
            }
        }
    }
}

/// Error pages of a signed-in customer keep the header (who, and "Sign out").
pub(super) async fn signed_in_error_pages(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let session = request.extensions().get::<Session>().cloned();
    let response = next.run(request).await;
    let Some(error) = response.extensions().get::<ErrorPage>().cloned() else {
        return response;
    };
    // Looked up after the handler ran (from the session it already loaded): a session
    // it ended shows no header.
    let Some(Ok(Some(me))) = OptionFuture::from(session.as_ref().map(SignedIn::from_session)).await
    else {
        return response;
    };
    let status = response.status();
    (
        status,
        html(&pages::error(&me.ctx(), error.title, &error.detail)),
    )
        .into_response()
}
