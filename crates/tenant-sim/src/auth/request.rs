//! Reading form and query parameters the way Entra does: form-urlencoded, the first
//! value of a repeated name wins, no extractor rejections (a malformed body is a
//! missing parameter, answered in Entra's shape).

use axum::http::HeaderMap;

/// The decoded `name=value` pairs of a query string or form body.
#[derive(Default)]
pub(super) struct Params(Vec<(String, String)>);

impl Params {
    pub(super) fn parse(raw: &[u8]) -> Self {
        Self(url::form_urlencoded::parse(raw).into_owned().collect())
    }

    pub(super) fn from_query(raw: Option<&str>) -> Self {
        raw.map(|query| Self::parse(query.as_bytes()))
            .unwrap_or_default()
    }

    /// The first value of `name`, treating an empty value as absent.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
    }
}

/// The client id and secret of an `Authorization: Basic` header (RFC 6749 §2.3.1: both
/// form-urlencoded before base64), which Entra also accepts (spec §2a).
pub(super) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine as _;
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let decode = |part: &str| -> String {
        url::form_urlencoded::parse(format!("v={part}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    };
    Some((decode(id), decode(secret)))
}
