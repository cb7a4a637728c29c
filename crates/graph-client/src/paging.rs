//! Pages, next links and delta links, and the page stream that follows `@odata.nextLink`
//! verbatim (spec 8a, 14).

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Stream, TryStreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::client::{Call, GraphClient, decode};
use crate::error::GraphError;

/// An `@odata.nextLink`: the full URL of the next page, followed verbatim (never parsed
/// for `$skiptoken`, spec 8a), plus whether its requests need `ConsistencyLevel: eventual`
/// (headers are not carried over by Graph, so the client resends it, spec 8a).
///
/// Save it to resume a listing later with [`GraphClient::resume_pages`]. Its `Debug`
/// hides the URL, whose `$skiptoken` grants the next page.
#[derive(Clone, PartialEq, Eq)]
pub struct NextLink {
    url: String,
    eventual: bool,
}

impl NextLink {
    /// A saved next link (no `ConsistencyLevel` header).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            eventual: false,
        }
    }

    /// Whether requests for this link send `ConsistencyLevel: eventual`.
    #[must_use]
    pub fn with_consistency_eventual(mut self, eventual: bool) -> Self {
        self.eventual = eventual;
        self
    }

    /// The URL, to store it.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// Whether requests for this link send `ConsistencyLevel: eventual`.
    pub fn consistency_eventual(&self) -> bool {
        self.eventual
    }
}

impl std::fmt::Debug for NextLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NextLink")
            .field("url", &"[REDACTED]")
            .field("eventual", &self.eventual)
            .finish()
    }
}

/// An `@odata.deltaLink`: keep it to ask for the changes since this round (spec 9).
/// It is a credential-like secret (its `$deltatoken` reads the tenant's changes), so it is
/// held as a [`SecretString`] and its `Debug` is redacted.
#[derive(Clone)]
pub struct DeltaLink(SecretString);

impl DeltaLink {
    /// A saved delta link.
    pub fn new(url: impl Into<String>) -> Self {
        Self(SecretString::from(url.into()))
    }

    /// The URL, to store it (encrypted, like a token).
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for DeltaLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeltaLink([REDACTED])")
    }
}

impl PartialEq for DeltaLink {
    fn eq(&self, other: &Self) -> bool {
        self.expose_secret() == other.expose_secret()
    }
}

impl<'de> Deserialize<'de> for DeltaLink {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

/// One page of a collection: its items and where to go next.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    items: Vec<T>,
    next_link: Option<NextLink>,
    delta_link: Option<DeltaLink>,
    count: Option<u64>,
}

impl<T> Page<T> {
    /// The items of this page (may be empty even when more pages follow, spec 8a).
    pub fn items(&self) -> &[T] {
        &self.items
    }

    /// The items, moved out.
    pub fn into_items(self) -> Vec<T> {
        self.items
    }

    /// The next page's link; `None` on the last page.
    pub fn next_link(&self) -> Option<&NextLink> {
        self.next_link.as_ref()
    }

    /// The delta link on the last page of a delta round.
    pub fn delta_link(&self) -> Option<&DeltaLink> {
        self.delta_link.as_ref()
    }

    /// `@odata.count` (first page only, and only with `$count` and `ConsistencyLevel`, spec 8a).
    pub fn count(&self) -> Option<u64> {
        self.count
    }

    /// A page of these items without links or count.
    pub(crate) fn from_items(items: Vec<T>) -> Self {
        Self {
            items,
            next_link: None,
            delta_link: None,
            count: None,
        }
    }

    pub(crate) fn set_eventual(&mut self, eventual: bool) {
        if let Some(link) = &mut self.next_link {
            link.eventual = eventual;
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Page<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(bound = "T: Deserialize<'de>")]
        struct Wire<T> {
            // A missing `value` is an empty page (paging-nextlink.json has none), and so is
            // `"value": null`: "a page of results may contain zero or more results" (spec 8a).
            #[serde(default = "Vec::new", deserialize_with = "null_as_empty")]
            value: Vec<T>,
            #[serde(rename = "@odata.nextLink", default)]
            next_link: Option<String>,
            #[serde(rename = "@odata.deltaLink", default)]
            delta_link: Option<DeltaLink>,
            #[serde(rename = "@odata.count", default)]
            count: Option<u64>,
        }
        let wire = Wire::<T>::deserialize(deserializer)?;
        // Whether the next link needs `ConsistencyLevel` is known to the request, not the
        // body: `fetch_page` and `batch_pages` mark it after decoding.
        Ok(Page {
            items: wire.value,
            next_link: wire.next_link.filter(|l| !l.is_empty()).map(NextLink::new),
            delta_link: wire.delta_link,
            count: wire.count,
        })
    }
}

/// A JSON list, `null` read as an empty one.
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<Vec<T>>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// Fetches one page at `link`, resending `ConsistencyLevel` when the link needs it.
pub(crate) async fn fetch_page<T: DeserializeOwned>(
    client: &GraphClient,
    link: &NextLink,
) -> Result<Page<T>, GraphError> {
    let reply = client.execute(Call::get(&link.url, link.eventual)).await?;
    let mut page: Page<T> = decode(&reply.body, &reply.path)?;
    page.set_eventual(link.eventual);
    Ok(page)
}

/// The loop guard of one listing (spec 14): every next link it followed, by hash, and a
/// cap on its pages. A link seen before is a cycle however long (A→B→A as well as A→A);
/// a listing longer than the cap is refused with a typed error instead of running on.
pub(crate) struct LinkGuard {
    seen: HashSet<u64>,
    hasher: RandomState,
    max_pages: u64,
}

impl LinkGuard {
    pub(crate) fn new(max_pages: u64) -> Self {
        Self {
            seen: HashSet::new(),
            hasher: RandomState::new(),
            max_pages,
        }
    }

    /// Admits `link` as the next page to fetch, or says why not.
    pub(crate) fn admit(&mut self, link: &NextLink) -> Result<(), GraphError> {
        let path = || {
            url::Url::parse(&link.url)
                .map(|u| u.path().to_owned())
                .unwrap_or_default()
        };
        if self.seen.len() as u64 >= self.max_pages {
            return Err(GraphError::TooManyPages {
                path: path(),
                limit: self.max_pages,
            });
        }
        if !self.seen.insert(self.hasher.hash_one(&link.url)) {
            return Err(GraphError::NextLinkLoop { path: path() });
        }
        Ok(())
    }
}

struct Following<F> {
    client: GraphClient,
    next: Option<NextLink>,
    guard: LinkGuard,
    error: Option<GraphError>,
    fetch: F,
}

/// Follows a listing's links from `first`: `fetch` gets each page and says where the next
/// one is. Continues past empty pages; stops with an error on a next link it followed
/// before (spec 14 loop guard, cycles of any length), after the client's page cap, or on
/// a link to another origin (checked in `execute` before the token is asked for). Built
/// with `try_unfold` (STYLE Async).
fn follow<P, F, Fut>(
    client: GraphClient,
    first: Result<NextLink, GraphError>,
    fetch: F,
) -> impl Stream<Item = Result<P, GraphError>> + Send
where
    P: Send,
    F: Fn(GraphClient, NextLink) -> Fut + Send,
    Fut: std::future::Future<Output = Result<(P, Option<NextLink>), GraphError>> + Send,
{
    let guard = LinkGuard::new(client.inner.max_pages);
    let (next, error) = match first {
        Ok(link) => (Some(link), None),
        Err(e) => (None, Some(e)),
    };
    let state = Following {
        client,
        next,
        guard,
        error,
        fetch,
    };
    futures::stream::try_unfold(state, |mut state| async move {
        if let Some(error) = state.error.take() {
            return Err(error);
        }
        let Some(link) = state.next.take() else {
            return Ok(None);
        };
        state.guard.admit(&link)?;
        let (page, next) = (state.fetch)(state.client.clone(), link).await?;
        state.next = next;
        Ok(Some((page, state)))
    })
}

/// The pages from `first` on, one page in memory at a time (see [`follow`]).
pub(crate) fn page_stream<T>(client: GraphClient, first: Result<NextLink, GraphError>) -> Pages<T>
where
    T: DeserializeOwned + Send + 'static,
{
    Pages(Box::pin(follow(client, first, |client, link| async move {
        let page = fetch_page::<T>(&client, &link).await?;
        let next = page.next_link.clone();
        Ok((page, next))
    })))
}

/// One page's body, read but not decoded, and where its listing goes next: what a
/// partitioned listing's chains hold while the consumer is busy, a few hundred bytes a
/// object instead of a decoded model's kilobyte or more.
pub(crate) struct RawPage {
    pub(crate) body: bytes::Bytes,
    pub(crate) path: String,
    eventual: bool,
}

impl RawPage {
    /// Decodes the page.
    pub(crate) fn decode<T: DeserializeOwned>(&self) -> Result<Page<T>, GraphError> {
        let mut page: Page<T> = decode(&self.body, &self.path)?;
        page.set_eventual(self.eventual);
        Ok(page)
    }
}

/// [`page_stream`], each page read but not decoded: only its next link is, which
/// `serde_json` finds by skipping over `value`.
pub(crate) fn raw_page_stream(
    client: GraphClient,
    first: NextLink,
) -> Pin<Box<dyn Stream<Item = Result<RawPage, GraphError>> + Send>> {
    #[derive(Deserialize)]
    struct Links {
        #[serde(rename = "@odata.nextLink", default)]
        next_link: Option<String>,
    }
    Box::pin(follow(client, Ok(first), |client, link| async move {
        let reply = client.execute(Call::get(&link.url, link.eventual)).await?;
        let links: Links = decode(&reply.body, &reply.path)?;
        let next = links
            .next_link
            .filter(|l| !l.is_empty())
            .map(|url| NextLink::new(url).with_consistency_eventual(link.eventual));
        let page = RawPage {
            body: reply.body,
            path: reply.path,
            eventual: link.eventual,
        };
        Ok((page, next))
    }))
}

/// The items of a page stream, one page buffered.
pub(crate) fn item_stream<T>(pages: Pages<T>) -> Items<T>
where
    T: Send + 'static,
{
    Items(Box::pin(
        pages
            .map_ok(|page| futures::stream::iter(page.items.into_iter().map(Ok)))
            .try_flatten(),
    ))
}

/// The pages of a listing, one in memory at a time: a named, `Unpin` stream (no `pin!`
/// needed), from [`ListRequest::pages`](crate::ListRequest::pages) and
/// [`GraphClient::resume_pages`].
#[must_use = "streams do nothing unless polled"]
pub struct Pages<T>(Pin<Box<dyn Stream<Item = Result<Page<T>, GraphError>> + Send>>);

impl<T> Pages<T> {
    pub(crate) fn from_stream(
        pages: impl Stream<Item = Result<Page<T>, GraphError>> + Send + 'static,
    ) -> Self {
        Self(Box::pin(pages))
    }
}

impl<T> Stream for Pages<T> {
    type Item = Result<Page<T>, GraphError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.as_mut().poll_next(cx)
    }
}

impl<T> std::fmt::Debug for Pages<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pages")
    }
}

/// The items of a listing, one page in memory at a time: a named, `Unpin` stream, from
/// [`ListRequest::stream`](crate::ListRequest::stream) and [`GraphClient::resume_stream`].
#[must_use = "streams do nothing unless polled"]
pub struct Items<T>(Pin<Box<dyn Stream<Item = Result<T, GraphError>> + Send>>);

impl<T> Stream for Items<T> {
    type Item = Result<T, GraphError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.as_mut().poll_next(cx)
    }
}

impl<T> std::fmt::Debug for Items<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Items")
    }
}

impl GraphClient {
    /// Resumes a listing from a saved [`NextLink`]: the pages from that link on.
    /// The link must point at this client's Graph origin.
    pub fn resume_pages<T>(&self, link: NextLink) -> Pages<T>
    where
        T: DeserializeOwned + Send + 'static,
    {
        page_stream(self.clone(), Ok(link))
    }

    /// Resumes a listing from a saved [`NextLink`]: the items from that page on.
    pub fn resume_stream<T>(&self, link: NextLink) -> Items<T>
    where
        T: DeserializeOwned + Send + 'static,
    {
        item_stream(self.resume_pages(link))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_redact_their_tokens_in_debug() {
        let delta =
            DeltaLink::new("https://graph.microsoft.com/v1.0/users/delta?$deltatoken=SECRET");
        assert_eq!(format!("{delta:?}"), "DeltaLink([REDACTED])");
        let next = NextLink::new("https://graph.microsoft.com/v1.0/users?$skiptoken=SECRET");
        assert!(!format!("{next:?}").contains("SECRET"));
        assert!(delta.expose_secret().ends_with("SECRET"));
    }

    #[test]
    fn page_with_a_null_value_is_empty_and_keeps_its_links() {
        let page: Page<crate::User> = serde_json::from_str(
            r#"{"value":null,"@odata.nextLink":"https://graph.microsoft.com/v1.0/users?$skiptoken=x"}"#,
        )
        .unwrap();
        assert!(page.items().is_empty());
        assert!(page.next_link().is_some());
        let page: Page<crate::Group> = serde_json::from_str(
            r#"{"@odata.deltaLink":"https://graph.microsoft.com/v1.0/groups/delta?$deltatoken=x","value":null}"#,
        )
        .unwrap();
        assert!(page.items().is_empty());
        assert!(page.delta_link().is_some());
        // Anything else that is not a list is still a decode error.
        assert!(serde_json::from_str::<Page<crate::User>>(r#"{"value":{}}"#).is_err());
        assert!(serde_json::from_str::<Page<crate::User>>(r#"{"value":"x"}"#).is_err());
    }

    #[test]
    fn page_without_value_is_empty_and_keeps_its_next_link() {
        let page: Page<crate::User> =
            serde_json::from_slice(include_bytes!("../tests/fixtures/paging-nextlink.json"))
                .unwrap();
        assert!(page.items().is_empty());
        assert!(page.next_link().unwrap().as_str().contains("$skiptoken="));
    }
}
