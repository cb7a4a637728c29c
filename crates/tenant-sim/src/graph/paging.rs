//! Paging: `$top`, `$skiptoken`s bound to their tenant and listing, nextLinks that carry
//! the query, `@odata.count`, pages written one object at a time ([spec 8a]). Users,
//! groups and directoryObject collections all page through one [`Pager`].

use std::fmt::Write as _;

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::error::GraphError;
use super::request::Request;
use super::response::json_response;

/// Graph's page size when `$top` is not sent ([spec 8a]).
const DEFAULT_PAGE_SIZE: usize = 100;

/// The paging of one listing (users, groups, a directoryObject collection). `$top` is
/// read when the pager is made, so each listing makes it where Graph reports a bad
/// `$top` among its other options; [`Pager::page`] does the rest.
pub(super) struct Pager<'r> {
    request: &'r Request<'r>,
    /// Binds the listing's `$skiptoken`s to it, as well as to the tenant.
    tag: &'r str,
    top: usize,
}

impl<'r> Pager<'r> {
    /// Reads `$top`: [`DEFAULT_PAGE_SIZE`] unless sent, 1..=999 when sent.
    pub(super) fn new(request: &'r Request<'r>, tag: &'r str) -> Result<Self, GraphError> {
        let top = request.query.page_size(DEFAULT_PAGE_SIZE)?;
        Ok(Self { request, tag, top })
    }

    /// The page of the listing's positions `0..len` where `$skiptoken` left off: the items
    /// at `at` that `keep` admits, written by `render` under `context`, with
    /// `@odata.count` on a first page that asked for it and a nextLink while more match.
    /// `$skiptoken` is read here, after every other option of the listing.
    pub(super) fn page<T, R: serde::Serialize>(
        &self,
        context: &str,
        len: usize,
        at: impl Fn(usize) -> Option<T>,
        keep: impl Fn(&T) -> bool,
        render: impl FnMut(T) -> Option<R>,
    ) -> Result<Response, GraphError> {
        let request = self.request;
        let start = decode_skiptoken(
            request.tenant_id,
            self.tag,
            request.query.skiptoken.as_deref(),
        )?;
        let count = request
            .wants_count()
            .then(|| count_matching(len, &at, &keep));
        let (page, next) = page_positions(len, start, self.top, &at, &keep);
        let next_link =
            next.map(|p| next_link(request, &encode_skiptoken(request.tenant_id, self.tag, p)));
        let items = page.into_iter().filter_map(render);
        Ok(json_response(
            StatusCode::OK,
            write_page(context, count, next_link.as_deref(), None, items),
        ))
    }
}

/// `{graph_base}{path}?{original options}&$skiptoken={token}`: the original query
/// options are carried into the nextLink ([spec 8a]).
fn next_link(request: &Request<'_>, token: &str) -> String {
    let mut link = format!("{}{}?", request.graph_base, request.path);
    for (key, value) in &request.query.carried {
        let _ = write!(
            link,
            "{}={}&",
            encode_component(key),
            encode_component(value)
        );
    }
    let _ = write!(link, "$skiptoken={token}");
    link
}

/// Percent-encodes a query component, keeping the characters Graph leaves readable in
/// its nextLinks (`$`, `,`, `(`, `)`, `'`, `:`).
fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~$,()':!*@/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Page cursor inside a `$skiptoken`, bound to its tenant: opaque to clients
/// ([spec 8a]).
pub(crate) fn encode_skiptoken(tenant_id: &str, tag: &str, position: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("{tenant_id}:{tag}:{position}"))
}

/// The position in a `$skiptoken`; another tenant's token is as invalid as a garbled one.
pub(crate) fn decode_skiptoken(
    tenant_id: &str,
    tag: &str,
    token: Option<&str>,
) -> Result<usize, GraphError> {
    let Some(token) = token else { return Ok(0) };
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|text| {
            text.strip_prefix(&format!("{tenant_id}:{tag}:"))
                .and_then(|p| p.parse().ok())
        })
        .ok_or_else(|| {
            GraphError::bad_request(
                "Request_BadRequest",
                "The specified page token value has expired or is invalid.",
            )
        })
}

/// Writes `{"@odata.context", "@odata.count"?, "@odata.nextLink"?, "value": [...]}` one
/// object at a time, so a page costs its own bytes and one object.
pub(crate) fn write_page<R: serde::Serialize>(
    context: &str,
    count: Option<usize>,
    next_link: Option<&str>,
    delta_link: Option<&str>,
    items: impl Iterator<Item = R>,
) -> Vec<u8> {
    // About 600 bytes an object of a listing's selected properties: one allocation for
    // most pages instead of a dozen doublings.
    let mut out = Vec::with_capacity(16 * 1024 + items.size_hint().1.unwrap_or(0) * 640);
    out.extend_from_slice(b"{\"@odata.context\":");
    let _ = serde_json::to_writer(&mut out, context);
    if let Some(count) = count {
        let _ = write!(Utf8(&mut out), ",\"@odata.count\":{count}");
    }
    if let Some(link) = next_link {
        out.extend_from_slice(b",\"@odata.nextLink\":");
        let _ = serde_json::to_writer(&mut out, link);
    }
    if let Some(link) = delta_link {
        out.extend_from_slice(b",\"@odata.deltaLink\":");
        let _ = serde_json::to_writer(&mut out, link);
    }
    out.extend_from_slice(b",\"value\":[");
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut out, &item);
    }
    out.extend_from_slice(b"]}");
    out
}

pub(super) struct Utf8<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Utf8<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// One page of positions `start..len` whose item passes `keep`; the position of the
/// next match, if any, continues the listing.
fn page_positions<T>(
    len: usize,
    start: usize,
    top: usize,
    at: impl Fn(usize) -> Option<T>,
    keep: impl Fn(&T) -> bool,
) -> (Vec<T>, Option<usize>) {
    let mut items = Vec::with_capacity(top.min(len));
    let mut position = start;
    while position < len {
        if let Some(item) = at(position)
            && keep(&item)
        {
            if items.len() == top {
                return (items, Some(position));
            }
            items.push(item);
        }
        position += 1;
    }
    (items, None)
}

pub(super) fn count_matching<T>(
    len: usize,
    at: impl Fn(usize) -> Option<T>,
    keep: impl Fn(&T) -> bool,
) -> usize {
    (0..len).filter_map(at).filter(|t| keep(t)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_keep_odata_characters_readable() {
        assert_eq!(encode_component("$filter"), "$filter");
        assert_eq!(
            encode_component("startswith(displayName,'A b')"),
            "startswith(displayName,'A%20b')"
        );
        assert_eq!(encode_component("a&b=c#"), "a%26b%3Dc%23");
    }

    #[test]
    fn page_positions_reports_the_next_match() {
        let items: Vec<u32> = (0..10).collect();
        let (page, next) = page_positions(10, 0, 3, |i| items.get(i).copied(), |x| x % 2 == 0);
        assert_eq!(page, vec![0, 2, 4]);
        assert_eq!(next, Some(6));
        let (page, next) = page_positions(10, 6, 3, |i| items.get(i).copied(), |x| x % 2 == 0);
        assert_eq!(page, vec![6, 8]);
        assert_eq!(next, None);
    }
}
