//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, never on by default):
//! thin wrappers over the simulator's private readers of what a client sends (the query
//! options, `$filter`, `$search`, `$orderby`, the `$skiptoken`s and delta tokens it
//! minted, the raw request line), so that the targets run the code a request runs. Not a
//! stable API.

use crate::delta::{Cursor, DeltaToken};
use crate::graph::list::order_by_text;
use crate::graph::paging;
use crate::graph::query::{self, Filter, Query, Search};

/// A `$filter` as the simulator parsed it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedFilter(Filter);

impl ParsedFilter {
    /// The filter in `OData` syntax, as the parser reads it back to an equal filter
    /// (`and`/`or`/`not` parenthesized where the grouping needs it, text literals quoted
    /// with `''` for a quote, `in (…)`, `startswith(p,'…')`).
    pub fn to_odata(&self) -> String {
        self.0.to_odata()
    }

    /// Whether Graph treats the filter as an advanced query (`ne`, `not`, `endsWith`: it
    /// needs `ConsistencyLevel: eventual` and `$count=true`).
    pub fn is_advanced(&self) -> bool {
        self.0.is_advanced()
    }
}

/// A `$filter` as a listing parses it.
///
/// # Errors
/// The message of Graph's 400 answer.
pub fn parse_filter(input: &str) -> Result<ParsedFilter, String> {
    query::parse_filter(input)
        .map(ParsedFilter)
        .map_err(|error| error.message().to_owned())
}

/// A `$search` as a listing parses it, every property searchable.
///
/// # Errors
/// The message of Graph's 400 answer.
pub fn parse_search(input: &str) -> Result<(), String> {
    Search::parse(input, &|_| true)
        .map(|_| ())
        .map_err(|error| error.message().to_owned())
}

/// A `$orderby` as the users listing reads it (`displayName` and `userPrincipalName`
/// sortable), with or without a `$filter` and the advanced query parameters: the sorted
/// property and whether it is descending.
///
/// # Errors
/// The message of Graph's 400 answer.
pub fn order_by(
    orderby: &str,
    has_filter: bool,
    advanced: bool,
) -> Result<Option<(&'static str, bool)>, String> {
    order_by_text(
        Some(orderby),
        &["displayName", "userPrincipalName"],
        has_filter,
        &|| advanced,
    )
    .map_err(|error| error.message().to_owned())
}

/// A whole query string as each endpoint reads its options: `$top` (a page size of 100
/// when absent), `$select` (every property known), `$count`.
pub fn parse_query(raw: &str) {
    let query = Query::parse(Some(raw));
    let _ = query.page_size(100);
    let _ = query.selected(&|_| true, "user");
    let _ = query.count_requested();
}

/// The position in a listing's `$skiptoken` (the listing tagged `tag`, of `tenant_id`);
/// `None` for a token the simulator refuses.
pub fn decode_skiptoken(tenant_id: &str, tag: &str, token: &str) -> Option<usize> {
    paging::decode_skiptoken(tenant_id, tag, Some(token)).ok()
}

/// The `$skiptoken` the simulator mints for `position` in the listing tagged `tag`.
pub fn encode_skiptoken(tenant_id: &str, tag: &str, position: usize) -> String {
    paging::encode_skiptoken(tenant_id, tag, position)
}

/// A `$deltatoken` (a delta link's) as the simulator read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaTokenValue(DeltaToken);

impl DeltaTokenValue {
    /// The token the simulator mints for this value in `tenant_id`.
    pub fn encode(&self, tenant_id: &str) -> String {
        self.0.encode(tenant_id)
    }
}

/// The skip cursor inside a delta round's next link, as the simulator read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorValue(Cursor);

impl CursorValue {
    /// The token the simulator mints for this cursor in `tenant_id`.
    pub fn encode(&self, tenant_id: &str) -> String {
        self.0.encode(tenant_id)
    }
}

/// A `$deltatoken` as the delta endpoints read it; `None` for a token the simulator
/// refuses (garbled, or another tenant's).
pub fn decode_delta_token(tenant_id: &str, token: &str) -> Option<DeltaTokenValue> {
    DeltaToken::decode(tenant_id, token).map(DeltaTokenValue)
}

/// The skip cursor of a delta round's next link as the delta endpoints read it; `None`
/// for one the simulator refuses.
pub fn decode_delta_cursor(tenant_id: &str, token: &str) -> Option<CursorValue> {
    Cursor::decode(tenant_id, token).map(CursorValue)
}

/// A raw HTTP/1 request line (without its line end) with the bytes hyper refuses in its
/// target percent-encoded, as the lenient acceptor rewrites it; `None` for a line that is
/// not an HTTP/1 request line (the connection then passes through unchanged).
pub fn rewrite_request_line(line: &[u8]) -> Option<Vec<u8>> {
    crate::request_target::rewrite_request_line(line)
}
