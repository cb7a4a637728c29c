//! Paging: `$skiptoken`s bound to their tenant, nextLinks that carry the query, pages
//! written one object at a time ([spec 8a]).

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::error::GraphError;

/// Percent-encodes a query component, keeping the characters Graph leaves readable in
/// its nextLinks (`$`, `,`, `(`, `)`, `'`, `:`).
pub(crate) fn encode_component(text: &str) -> String {
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
pub(super) fn decode_skiptoken(
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
pub(crate) fn write_page(
    context: &str,
    count: Option<usize>,
    next_link: Option<&str>,
    delta_link: Option<&str>,
    items: impl Iterator<Item = Map<String, Value>>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * 1024);
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
pub(super) fn page_positions<T>(
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
