//! Profile photos: metadata and `$value` ([spec 13]).

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::json;

use crate::data::photo_png;

use super::endpoint::UserRef;
use super::error::GraphError;
use super::request::Request;
use super::response::json_response;

/// Photo sizes Graph names ([spec 13]); the stored photo is 96x96, so larger sizes are
/// not available for it.
pub(super) const PHOTO_SIZES: &[u32] = &[48, 64, 96, 120, 240, 360, 432, 504, 648];
pub(super) const STORED_PHOTO_SIZE: u32 = 96;

pub(super) fn no_photo() -> GraphError {
    // [spec 13]: 404 when there is no photo; the code is UNCONFIRMED, third-party mocks use
    // ImageNotFound.
    GraphError::new(
        StatusCode::NOT_FOUND,
        "ImageNotFound",
        "The photo wasn't found.",
    )
}

pub(super) fn photo_metadata(
    request: &Request<'_>,
    user: &UserRef,
) -> Result<Response, GraphError> {
    let slot = request.user_slot(user)?;
    let dir = request.dir;
    let photo = dir.user(slot).and_then(|u| u.photo).ok_or_else(no_photo)?;
    let id = dir.user_ids[slot as usize];
    let body = json!({
        "@odata.context": format!("{}/$metadata#users('{id}')/photo/$entity", request.graph_base),
        "@odata.id": format!("{}/users('{id}')/photo", request.graph_base),
        "@odata.mediaContentType": "image/png",
        "@odata.mediaEtag": format!("\"{photo:08X}\""),
        "id": format!("{STORED_PHOTO_SIZE}X{STORED_PHOTO_SIZE}"),
        "width": STORED_PHOTO_SIZE,
        "height": STORED_PHOTO_SIZE,
    });
    Ok(json_response(StatusCode::OK, body.to_string().into_bytes()))
}

pub(super) fn photo_value(
    request: &Request<'_>,
    user: &UserRef,
    requested: Option<&str>,
) -> Result<Response, GraphError> {
    let slot = request.user_slot(user)?;
    let photo = request
        .dir
        .user(slot)
        .and_then(|u| u.photo)
        .ok_or_else(no_photo)?;
    let edge = match requested {
        None => STORED_PHOTO_SIZE,
        Some(name) => {
            let parsed = name
                .to_ascii_lowercase()
                .split_once('x')
                .filter(|(w, h)| w == h)
                .and_then(|(w, _)| w.parse::<u32>().ok())
                .filter(|s| PHOTO_SIZES.contains(s));
            match parsed {
                Some(edge) if edge <= STORED_PHOTO_SIZE => edge,
                _ => return Err(no_photo()),
            }
        }
    };
    let mut response = Response::new(Body::from(photo_png(photo, edge)));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{photo:08X}\"")) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}
