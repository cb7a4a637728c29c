//! Request builders ending in `.send()`, `.stream()` or `.pages()`, and the `OData` query
//! options with the `ConsistencyLevel` rule (spec 8c).

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use url::Url;

use crate::batch::BatchItem;
use crate::client::{Call, GraphClient, decode};
use crate::error::GraphError;
use crate::models::user::User;
use crate::paging::{Items, NextLink, Page, Pages, fetch_page, item_stream, page_stream};

/// `OData` query options of one request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Query {
    pub(crate) select: Vec<String>,
    pub(crate) filter: Option<String>,
    pub(crate) search: Option<String>,
    pub(crate) order_by: Vec<String>,
    pub(crate) top: Option<u32>,
    pub(crate) count: bool,
    pub(crate) expand: Option<String>,
    pub(crate) force_eventual: bool,
    /// Extra parameters in order, e.g. `$deltatoken=latest`.
    pub(crate) extra: Vec<(&'static str, String)>,
}

/// `$orderby` properties that work without advanced query parameters (spec 8c).
const PLAIN_ORDER_BY: [&str; 2] = ["displayName", "userPrincipalName"];

impl Query {
    /// Whether the query is an "advanced query" needing `ConsistencyLevel: eventual` and
    /// `$count=true` (spec 8c). Rule set: `$count`, `$search`, a `$filter` using `ne`,
    /// `not`, `endsWith` or `/$count`, `$filter` together with `$orderby`, and `$orderby`
    /// on anything but `displayName` / `userPrincipalName`.
    pub(crate) fn is_advanced(&self) -> bool {
        self.advanced_without_search() || self.search.is_some()
    }

    fn advanced_without_search(&self) -> bool {
        let filter_advanced = self.filter.as_deref().is_some_and(filter_is_advanced);
        let order_advanced = self.order_by.iter().any(|o| {
            let property = o.split_whitespace().next().unwrap_or("");
            !PLAIN_ORDER_BY
                .iter()
                .any(|p| p.eq_ignore_ascii_case(property))
        });
        self.count
            || filter_advanced
            || order_advanced
            || (self.filter.is_some() && !self.order_by.is_empty())
    }

    /// Whether requests send `ConsistencyLevel: eventual`.
    pub(crate) fn eventual(&self) -> bool {
        self.force_eventual || self.is_advanced()
    }

    /// Checks the options before anything is sent.
    pub(crate) fn validate(&self) -> Result<(), GraphError> {
        if let Some(top) = self.top
            && !(1..=999).contains(&top)
        {
            // Graph: "Invalid page size specified: '1000'. Must be between 1 and 999 inclusive." (spec 8a)
            return Err(GraphError::InvalidRequest {
                reason: format!("$top {top} is outside 1..=999"),
            });
        }
        if self.expand.is_some() && self.is_advanced() {
            return Err(GraphError::InvalidRequest {
                reason: "$expand cannot be combined with an advanced query ($count, $search, advanced $filter or $orderby)".into(),
            });
        }
        Ok(())
    }

    /// The query string, each value percent-encoded.
    pub(crate) fn to_query_string(&self, default_top: Option<u32>) -> String {
        let mut out = String::new();
        let mut push = |key: &str, value: &str| {
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(key);
            out.push('=');
            encode_into(&mut out, value);
        };
        if !self.select.is_empty() {
            push("$select", &self.select.join(","));
        }
        if let Some(filter) = &self.filter {
            push("$filter", filter);
        }
        if let Some(search) = &self.search {
            push("$search", search);
        }
        if !self.order_by.is_empty() {
            push("$orderby", &self.order_by.join(","));
        }
        if let Some(top) = self.top.or(default_top) {
            push("$top", &top.to_string());
        }
        // Advanced queries need $count=true besides the header, except $search alone (spec 8c).
        if self.count || self.advanced_without_search() {
            push("$count", "true");
        }
        if let Some(expand) = &self.expand {
            push("$expand", expand);
        }
        for (key, value) in &self.extra {
            push(key, value);
        }
        out
    }
}

/// True when a `$filter` uses an operator that needs advanced query parameters: `ne`,
/// `not`, `endsWith`, or a `/$count` segment. Words inside quoted literals do not count.
pub(crate) fn filter_is_advanced(filter: &str) -> bool {
    let mut in_string = false;
    let mut word = String::new();
    let check = |word: &mut String| {
        let hit = ["ne", "not", "endswith"]
            .iter()
            .any(|w| word.eq_ignore_ascii_case(w));
        word.clear();
        hit
    };
    let mut chars = filter.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            if c == '\'' {
                // '' is an escaped quote inside a literal.
                if chars.peek() == Some(&'\'') {
                    chars.next();
                } else {
                    in_string = false;
                }
            }
            continue;
        }
        if c == '\'' {
            if check(&mut word) {
                return true;
            }
            in_string = true;
        } else if c.is_ascii_alphanumeric() || c == '_' || c == '$' {
            word.push(c);
        } else {
            if c == '/' && filter_rest_starts_with_count(&mut chars) {
                return true;
            }
            if check(&mut word) {
                return true;
            }
        }
    }
    check(&mut word)
}

fn filter_rest_starts_with_count(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> bool {
    let rest: String = chars.clone().take(6).collect();
    rest.eq_ignore_ascii_case("$count")
}

/// Percent-encodes a query value, keeping the characters `OData` expressions use readable.
fn encode_into(out: &mut String, value: &str) {
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~'(),:@/$*!".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Quotes a text as an `OData` string literal for `$filter`: `O'Neil` → `'O''Neil'`.
pub fn odata_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// One `$search` clause, `"property:text"`, with `"` and `\` escaped by a backslash
/// (Graph's `$search` syntax, spec 8c).
pub fn search_clause(property: &str, text: &str) -> String {
    let mut out = String::with_capacity(property.len() + text.len() + 3);
    out.push('"');
    out.push_str(property);
    out.push(':');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Builds the full URL for `base` + query.
pub(crate) fn with_query(mut url: Url, query: &str) -> String {
    if !query.is_empty() {
        url.set_query(Some(query));
    }
    url.into()
}

/// A list request: `.send()` for the first page, `.pages()` or `.stream()` for all of them.
#[must_use = "a request does nothing until sent"]
pub struct ListRequest<T> {
    client: GraphClient,
    /// Or why the id or UPN in it is invalid (reported when sent).
    url: Result<Url, String>,
    query: Query,
    _item: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for ListRequest<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListRequest")
            .field("path", &self.url.as_ref().map(Url::path).ok())
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned + Send + 'static> ListRequest<T> {
    pub(crate) fn new(client: GraphClient, url: Result<Url, String>) -> Self {
        Self {
            client,
            url,
            query: Query::default(),
            _item: PhantomData,
        }
    }

    /// `$select`: the properties to return. Takes typed names ([`UserProperty`](crate::UserProperty),
    /// [`GroupProperty`](crate::GroupProperty)) or any text; calls add up.
    pub fn select<I, S>(mut self, properties: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.query
            .select
            .extend(properties.into_iter().map(|p| p.as_ref().to_owned()));
        self
    }

    /// `$filter`, as an `OData` expression (quote literals with [`odata_string`]).
    pub fn filter(mut self, filter: impl Into<String>) -> Self {
        self.query.filter = Some(filter.into());
        self
    }

    /// `$search` for one property: `"property:text"`, quoted and escaped for you.
    pub fn search(mut self, property: impl AsRef<str>, text: impl AsRef<str>) -> Self {
        self.query.search = Some(search_clause(property.as_ref(), text.as_ref()));
        self
    }

    /// `$search` as a raw expression, e.g. `"displayName:wa" OR "displayName:to"`.
    pub fn search_raw(mut self, expression: impl Into<String>) -> Self {
        self.query.search = Some(expression.into());
        self
    }

    /// `$orderby`, e.g. `displayName` or `createdDateTime desc`; calls add up.
    pub fn order_by(mut self, order: impl Into<String>) -> Self {
        self.query.order_by.push(order.into());
        self
    }

    /// `$top`: the page size, 1..=999 (checked before sending).
    pub fn top(mut self, top: u32) -> Self {
        self.query.top = Some(top);
        self
    }

    /// `$count=true`: the first page carries `@odata.count` (adds `ConsistencyLevel: eventual`).
    pub fn count(mut self) -> Self {
        self.query.count = true;
        self
    }

    /// Sends `ConsistencyLevel: eventual` even when the query does not need it.
    pub fn consistency_eventual(mut self) -> Self {
        self.query.force_eventual = true;
        self
    }

    /// Whether the requests will send `ConsistencyLevel: eventual`.
    pub fn is_consistency_eventual(&self) -> bool {
        self.query.eventual()
    }

    /// The first page's link, the query checked.
    pub(crate) fn first_link(&self) -> Result<NextLink, GraphError> {
        self.query.validate()?;
        let url = self.url.clone().map_err(invalid_id)?;
        let query = self.query.to_query_string(self.client.inner.page_size);
        Ok(NextLink::new(with_query(url, &query)).with_consistency_eventual(self.query.eventual()))
    }

    /// The first page.
    ///
    /// # Errors
    ///
    /// [`GraphError::InvalidRequest`] before sending (e.g. `$top` out of range), or any
    /// error of the request (see [`GraphError`]).
    pub async fn send(self) -> Result<Page<T>, GraphError> {
        let link = self.first_link()?;
        fetch_page(&self.client, &link).await
    }

    /// All pages, one in memory at a time, following `@odata.nextLink`.
    pub fn pages(self) -> Pages<T> {
        let first = self.first_link();
        page_stream(self.client, first)
    }

    /// All items of all pages, one page in memory at a time.
    pub fn stream(self) -> Items<T> {
        item_stream(self.pages())
    }

    /// This request's first page as a `$batch` item (see [`GraphClient::batch`]).
    ///
    /// # Errors
    ///
    /// [`GraphError::InvalidRequest`] when the query is invalid.
    pub fn to_batch_item(&self) -> Result<BatchItem, GraphError> {
        let link = self.first_link()?;
        let relative = relative_url(&self.client, link.as_str());
        Ok(BatchItem::get(relative).with_consistency_eventual(link.consistency_eventual()))
    }
}

impl ListRequest<User> {
    /// `$expand=manager`: each user carries its manager in [`User::manager`].
    pub fn expand_manager(mut self) -> Self {
        self.query.expand = Some("manager".into());
        self
    }
}

/// The part of `url` after the Graph root, for `$batch` (`/users?$top=5`).
pub(crate) fn invalid_id(reason: String) -> GraphError {
    GraphError::InvalidRequest { reason }
}

pub(crate) fn relative_url(client: &GraphClient, url: &str) -> String {
    let base = client.inner.base.as_str();
    url.strip_prefix(base)
        .map_or_else(|| url.to_owned(), str::to_owned)
}

/// A request for one object: `.send()`.
#[must_use = "a request does nothing until sent"]
pub struct GetRequest<T> {
    client: GraphClient,
    /// Or why the id or UPN in it is invalid (reported when sent).
    url: Result<Url, String>,
    query: Query,
    _item: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for GetRequest<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetRequest")
            .field("path", &self.url.as_ref().map(Url::path).ok())
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned> GetRequest<T> {
    pub(crate) fn new(client: GraphClient, url: Result<Url, String>) -> Self {
        Self {
            client,
            url,
            query: Query::default(),
            _item: PhantomData,
        }
    }

    /// `$select`: the properties to return; calls add up.
    pub fn select<I, S>(mut self, properties: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.query
            .select
            .extend(properties.into_iter().map(|p| p.as_ref().to_owned()));
        self
    }

    /// The object.
    ///
    /// # Errors
    ///
    /// Any error of the request; a missing object is a [`GraphError::Service`] with
    /// [`is_not_found`](GraphError::is_not_found).
    pub async fn send(self) -> Result<T, GraphError> {
        self.query.validate()?;
        let url = self.url.map_err(invalid_id)?;
        let url = with_query(url, &self.query.to_query_string(None));
        let reply = self
            .client
            .execute(Call::get(&url, self.query.eventual()))
            .await?;
        decode(&reply.body, &reply.path)
    }

    /// Like [`send`](Self::send), but a 404 is `Ok(None)`.
    ///
    /// # Errors
    ///
    /// Any error of the request other than 404.
    pub async fn send_optional(self) -> Result<Option<T>, GraphError> {
        match self.send().await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl GetRequest<User> {
    /// `$expand=manager`: the user carries its manager in [`User::manager`].
    pub fn expand_manager(mut self) -> Self {
        self.query.expand = Some("manager".into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advanced_filter_detection_follows_spec_8c() {
        assert!(filter_is_advanced("endsWith(mail,'@contoso.com')"));
        assert!(filter_is_advanced("userType ne 'Guest'"));
        assert!(filter_is_advanced("NOT(startswith(displayName,'a'))"));
        assert!(filter_is_advanced("owners/$count eq 0"));
        assert!(!filter_is_advanced(
            "startswith(displayName,'ne not endsWith')"
        ));
        assert!(!filter_is_advanced(
            "accountEnabled eq true and department eq 'Sales'"
        ));
        assert!(!filter_is_advanced("displayName eq 'O''Neil ne'"));
    }

    #[test]
    fn count_search_and_order_rules() {
        let q = Query {
            count: true,
            ..Query::default()
        };
        assert!(q.eventual());
        assert_eq!(q.to_query_string(None), "$count=true");
        let q = Query {
            search: Some(search_clause("displayName", "wa")),
            ..Query::default()
        };
        assert!(q.eventual());
        assert_eq!(q.to_query_string(None), "$search=%22displayName:wa%22");
        let q = Query {
            order_by: vec!["displayName".into()],
            ..Query::default()
        };
        assert!(!q.eventual());
        let q = Query {
            order_by: vec!["createdDateTime desc".into()],
            ..Query::default()
        };
        assert!(q.eventual());
        assert_eq!(
            q.to_query_string(None),
            "$orderby=createdDateTime%20desc&$count=true"
        );
        let q = Query {
            filter: Some("startswith(displayName,'a')".into()),
            order_by: vec!["displayName".into()],
            ..Query::default()
        };
        assert!(q.eventual());
        let q = Query {
            filter: Some("startswith(displayName,'a')".into()),
            ..Query::default()
        };
        assert!(!q.eventual());
    }

    #[test]
    fn top_is_checked_and_expand_conflicts_with_advanced_queries() {
        assert!(
            Query {
                top: Some(999),
                ..Query::default()
            }
            .validate()
            .is_ok()
        );
        assert!(
            Query {
                top: Some(1000),
                ..Query::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            Query {
                top: Some(0),
                ..Query::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            Query {
                expand: Some("manager".into()),
                count: true,
                ..Query::default()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn literals_are_quoted_and_escaped() {
        assert_eq!(odata_string("O'Neil"), "'O''Neil'");
        assert_eq!(
            search_clause("displayName", r#"a "b" \c"#),
            r#""displayName:a \"b\" \\c""#
        );
        let mut out = String::new();
        encode_into(&mut out, "a b&c=d+e#f\"é");
        assert_eq!(out, "a%20b%26c%3Dd%2Be%23f%22%C3%A9");
    }
}
