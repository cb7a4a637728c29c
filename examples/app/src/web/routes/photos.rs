//! The employees' photos on the Manage page: Graph's thumbnail when there is one, else
//! their initials.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use connection_store::ConnectionStatus;
use graph_client::{ObjectId, PhotoSize};

use super::Result;
use super::error::AppError;
use super::extract::OwnConnection;
use super::imported::scope_of;
use crate::web::{AppState, employees, pages};

pub(super) async fn photo(
    State(state): State<AppState>,
    OwnConnection { me, connection }: OwnConnection,
    Path((_, user)): Path<(String, String)>,
) -> Result<Response> {
    let id = connection.id;
    // Only the photos of this connection's employees: users in its mirror, in its scope
    // (a damaged scope file is the default scope, as the Manage page shows it).
    let (scope, _) = scope_of(&state, id).await;
    let Some(employee) =
        employees::employee(state.mirror(), id, &scope, &ObjectId::new(user.as_str())).await?
    else {
        return Err(AppError::NotFound);
    };
    let placeholder = || {
        (
            [
                (header::CONTENT_TYPE, "image/svg+xml".to_owned()),
                (header::CACHE_CONTROL, "private, max-age=600".to_owned()),
            ],
            pages::initials_svg(&employee.name()).into_string(),
        )
            .into_response()
    };
    if !matches!(connection.status, ConnectionStatus::Active) {
        return Ok(placeholder());
    }
    let linked = state.linked(&me.owner, id).await?;
    match linked
        .graph
        .users()
        .photo(&user)
        .size(PhotoSize::S48)
        .send()
        .await
    {
        // Raster images only: an SVG or HTML answer is never served from this origin.
        Ok(Some(photo)) if RASTER_IMAGES.contains(&photo.content_type.as_str()) => Ok((
            [
                (header::CONTENT_TYPE, photo.content_type),
                (header::CACHE_CONTROL, "private, max-age=3600".to_owned()),
            ],
            photo.bytes,
        )
            .into_response()),
        Ok(_) => Ok(placeholder()),
        Err(error) => {
            if error.requires_reauthorization() {
                state.forget_linked(id);
            }
            tracing::debug!(%error, "photo not available");
            Ok(placeholder())
        }
    }
}

/// The photo types passed through.
const RASTER_IMAGES: &[&str] = &["image/jpeg", "image/png", "image/gif"];
