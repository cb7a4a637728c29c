//! Graph's JSON answers: content type, `OData-Version`, single objects.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value};

pub(crate) const JSON_CONTENT_TYPE: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(JSON_CONTENT_TYPE),
    );
    response
        .headers_mut()
        .insert("odata-version", HeaderValue::from_static("4.0"));
    response
}

pub(super) fn text_response(text: String) -> Response {
    let mut response = Response::new(Body::from(text));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

pub(super) fn single(
    select: Option<&[String]>,
    context: String,
    mut map: Map<String, Value>,
) -> Response {
    let _ = select;
    let mut out = Map::new();
    out.insert("@odata.context".into(), Value::String(context));
    out.append(&mut map);
    json_response(StatusCode::OK, Value::Object(out).to_string().into_bytes())
}
