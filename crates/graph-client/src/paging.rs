//! Pages, next links and delta links, and the page stream that follows `@odata.nextLink`
//! verbatim (spec 8a, 14).

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
            // A missing `value` is an empty page (paging-nextlink.json has none).
            #[serde(default = "Vec::new")]
            value: Vec<T>,
            #[serde(rename = "@odata.nextLink", default)]
            next_link: Option<String>,
            #[serde(rename = "@odata.deltaLink", default)]
            delta_link: Option<DeltaLink>,
            #[serde(rename = "@odata.count", default)]
            count: Option<u64>,
        }
        let wire = Wire::<T>::deserialize(deserializer)?;
        let eventual = NEXT_LINK_EVENTUAL.get();
        Ok(Page {
            items: wire.value,
            next_link: wire
                .next_link
                .filter(|l| !l.is_empty())
                .map(|url| NextLink::new(url).with_consistency_eventual(eventual)),
            delta_link: wire.delta_link,
            count: wire.count,
        })
    }
}

thread_local! {
    /// Whether pages decoded now answer a `ConsistencyLevel: eventual` request, so that
    /// their next link asks for it again (spec 8c). Set around the synchronous decode of
    /// a `$batch` item, whose type is the caller's `T` (often `Page<_>`).
    static NEXT_LINK_EVENTUAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `decode` with pages' next links marked as `eventual` (see [`NEXT_LINK_EVENTUAL`]).
pub(crate) fn with_next_link_eventual<R>(eventual: bool, decode: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            NEXT_LINK_EVENTUAL.set(self.0);
        }
    }
    let _restore = Restore(NEXT_LINK_EVENTUAL.replace(eventual));
    decode()
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

struct PageState {
    client: GraphClient,
    next: Option<NextLink>,
    error: Option<GraphError>,
}

/// The pages from `first` on, one page in memory at a time (built with `try_unfold`,
/// STYLE Async). Continues past empty pages; stops with an error on a next link equal to
/// the one that fetched the page (spec 14 loop guard) or one to another origin (checked
/// in `execute` before the token is asked for).
pub(crate) fn page_stream<T>(
    client: GraphClient,
    first: Result<NextLink, GraphError>,
) -> impl Stream<Item = Result<Page<T>, GraphError>> + Send + 'static
where
    T: DeserializeOwned + Send + 'static,
{
    let state = match first {
        Ok(link) => PageState {
            client,
            next: Some(link),
            error: None,
        },
        Err(e) => PageState {
            client,
            next: None,
            error: Some(e),
        },
    };
    futures::stream::try_unfold(state, |mut state| async move {
        if let Some(error) = state.error.take() {
            return Err(error);
        }
        let Some(link) = state.next.take() else {
            return Ok(None);
        };
        let page = fetch_page::<T>(&state.client, &link).await?;
        if let Some(next) = &page.next_link {
            if next.url == link.url {
                let path = url::Url::parse(&link.url)
                    .map(|u| u.path().to_owned())
                    .unwrap_or_default();
                return Err(GraphError::NextLinkLoop { path });
            }
            state.next = Some(next.clone());
        }
        Ok(Some((page, state)))
    })
}

/// The items of a page stream, one page buffered.
pub(crate) fn item_stream<T>(
    pages: impl Stream<Item = Result<Page<T>, GraphError>> + Send + 'static,
) -> impl Stream<Item = Result<T, GraphError>> + Send + 'static
where
    T: Send + 'static,
{
    pages
        .map_ok(|page| futures::stream::iter(page.items.into_iter().map(Ok)))
        .try_flatten()
}

impl GraphClient {
    /// Resumes a listing from a saved [`NextLink`]: the pages from that link on.
    /// The link must point at this client's Graph origin.
    pub fn resume_pages<T>(
        &self,
        link: NextLink,
    ) -> impl Stream<Item = Result<Page<T>, GraphError>> + Send + 'static
    where
        T: DeserializeOwned + Send + 'static,
    {
        page_stream(self.clone(), Ok(link))
    }

    /// Resumes a listing from a saved [`NextLink`]: the items from that page on.
    pub fn resume_stream<T>(
        &self,
        link: NextLink,
    ) -> impl Stream<Item = Result<T, GraphError>> + Send + 'static
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
    fn page_without_value_is_empty_and_keeps_its_next_link() {
        let page: Page<crate::User> =
            serde_json::from_slice(include_bytes!("../tests/fixtures/paging-nextlink.json"))
                .unwrap();
        assert!(page.items().is_empty());
        assert!(page.next_link().unwrap().as_str().contains("$skiptoken="));
    }
}
