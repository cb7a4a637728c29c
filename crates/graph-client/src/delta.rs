//! Delta rounds for users and groups (spec 9): a stream of [`DeltaChange`]s, then
//! the delta link to keep.
//!
//! Changes may be replayed in later rounds and one object may appear several times in a
//! round (spec 9, "Replays"), so apply them idempotently: an `Upsert` overwrites the stored
//! object with what it carries, a `Removed` of an unknown id is a no-op, a member added twice
//! stays one member.

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use url::Url;

use crate::client::GraphClient;
use crate::error::GraphError;
use crate::models::group::Group;
use crate::models::user::User;
use crate::models::{ObjectId, RemovedReason};
use crate::paging::{DeltaLink, NextLink, Page, Pages, page_stream};
use crate::request::{Query, with_query};

/// One change of a delta round.
#[derive(Debug, Clone, PartialEq)]
pub enum DeltaChange<T> {
    /// The object was created or changed: store it (it carries at least the changed
    /// properties; unselected ones are `None`).
    Upsert(T),
    /// The object was removed: soft-deleted ([`RemovedReason::Changed`]) or gone for good.
    Removed {
        /// The removed object's id.
        id: ObjectId,
        /// Why.
        reason: RemovedReason,
    },
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::User {}
    impl Sealed for crate::Group {}
}

/// The object types delta works on: [`User`] and [`Group`].
pub trait DeltaObject: sealed::Sealed + DeserializeOwned + Send + 'static {
    #[doc(hidden)]
    fn take_removed(&mut self) -> Option<RemovedReason>;
    #[doc(hidden)]
    fn delta_id(&self) -> Option<&ObjectId>;
    /// Whether this occurrence must be held to merge later slices (groups' `members@delta`).
    #[doc(hidden)]
    fn needs_merge(&self) -> bool {
        false
    }
    /// Merges a later occurrence of the same object into this one.
    #[doc(hidden)]
    fn merge(&mut self, later: Self);
}

impl DeltaObject for User {
    fn take_removed(&mut self) -> Option<RemovedReason> {
        self.removed.take().map(|r| r.0)
    }
    fn delta_id(&self) -> Option<&ObjectId> {
        self.id.as_ref()
    }
    fn merge(&mut self, later: Self) {
        *self = later;
    }
}

impl DeltaObject for Group {
    fn take_removed(&mut self) -> Option<RemovedReason> {
        self.removed.take().map(|r| r.0)
    }
    fn delta_id(&self) -> Option<&ObjectId> {
        self.id.as_ref()
    }
    fn needs_merge(&self) -> bool {
        !self.members_delta.is_empty()
    }
    fn merge(&mut self, later: Self) {
        // A large group comes back on several pages, each with another slice of
        // members@delta: keep the latest properties and all slices (spec 9, "Large groups").
        let mut later = later;
        let mut members = std::mem::take(&mut self.members_delta);
        members.append(&mut later.members_delta);
        *self = later;
        self.members_delta = members;
    }
}

enum Start {
    Initial,
    Latest,
}

/// A delta round for users or groups; `.stream()` runs it.
#[must_use = "a request does nothing until streamed"]
pub struct DeltaRequest<T> {
    client: GraphClient,
    url: Url,
    select: Vec<String>,
    filter: Option<String>,
    start: Start,
    _item: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for DeltaRequest<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeltaRequest")
            .field("path", &self.url.path())
            .field("select", &self.select)
            .finish_non_exhaustive()
    }
}

impl<T: DeltaObject> DeltaRequest<T> {
    pub(crate) fn new(client: GraphClient, url: Url) -> Self {
        Self {
            client,
            url,
            select: Vec::new(),
            filter: None,
            start: Start::Initial,
            _item: PhantomData,
        }
    }

    /// `$select` for the first round (later rounds keep it inside the delta link, spec 9).
    /// For groups, add `members` to get `members@delta`.
    pub fn select<I, S>(mut self, properties: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.select
            .extend(properties.into_iter().map(|p| p.as_ref().to_owned()));
        self
    }

    /// `$filter` for the first round, e.g. `id eq '...' or id eq '...'` (up to 50 ids, spec 9).
    pub fn filter(mut self, filter: impl Into<String>) -> Self {
        self.filter = Some(filter.into());
        self
    }

    /// Starts "from now" (`$deltatoken=latest`): no objects, only a delta link (spec 9).
    pub fn from_now(mut self) -> Self {
        self.start = Start::Latest;
        self
    }

    /// A delta link "from now" (`$deltatoken=latest`, spec 9): no objects, one request. A
    /// full import takes these before it lists, so that changes made while it lists come
    /// in the next round.
    ///
    /// # Errors
    /// Any error of the request; [`GraphError::InvalidResponse`] when the round ended
    /// without a delta link. (Objects Graph might answer "from now" are read and dropped.)
    pub async fn latest_link(self) -> Result<DeltaLink, GraphError> {
        let path = self.url.path().to_owned();
        let mut round = self.from_now().stream();
        while round.next().await.transpose()?.is_some() {}
        round.into_delta_link().ok_or(GraphError::InvalidResponse {
            path,
            reason: "the delta round ended without a delta link",
        })
    }

    fn first_link(&self) -> NextLink {
        let mut query = Query {
            select: self.select.clone(),
            filter: self.filter.clone(),
            ..Query::default()
        };
        if matches!(self.start, Start::Latest) {
            query.extra.push(("$deltatoken", "latest".into()));
        }
        NextLink::new(with_query(self.url.clone(), &query.to_query_string(None)))
    }

    /// Runs the round: its changes as a stream, then its delta link.
    pub fn stream(self) -> DeltaRound<T> {
        let path = self.url.path().to_owned();
        let first = self.first_link();
        DeltaRound::new(self.client, first, path)
    }
}

/// A running delta round: a named, `Unpin` stream of [`DeltaChange`]s, and after its end
/// the delta link to keep for the next round ([`delta_link`](Self::delta_link)).
///
/// Memory: one page, plus the groups whose `members@delta` is still being merged (they
/// come last, since a group can reappear on any later page of the round, spec 9).
#[must_use = "streams do nothing unless polled"]
pub struct DeltaRound<T> {
    inner: Pin<Box<dyn Stream<Item = Result<Step<T>, GraphError>> + Send>>,
    link: Option<DeltaLink>,
}

/// What the inner stream yields: a change, or the end with its link.
enum Step<T> {
    Change(DeltaChange<T>),
    Done(DeltaLink),
}

impl<T> std::fmt::Debug for DeltaRound<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeltaRound")
            .field("finished", &self.link.is_some())
            .finish_non_exhaustive()
    }
}

impl<T: DeltaObject> DeltaRound<T> {
    fn new(client: GraphClient, first: NextLink, path: String) -> Self {
        let state = RoundState {
            base: client.clone(),
            pages: page_stream(client, Ok(first)),
            merge: Merge::new(path),
        };
        let inner = futures::stream::try_unfold(state, |mut state| async move {
            loop {
                if let Some(step) = state.merge.queue.pop_front() {
                    return Ok(Some((step, state)));
                }
                if state.merge.done {
                    return Ok(None);
                }
                match state.pages.next().await {
                    None => return Err(state.merge.ended_without_link()),
                    Some(Err(e)) => return Err(e),
                    Some(Ok(page)) => {
                        let base = &state.base;
                        state
                            .merge
                            .absorb(page, |link| base.check_origin(link).map(drop))?;
                    }
                }
            }
        });
        Self {
            inner: Box::pin(inner),
            link: None,
        }
    }

    /// Resumes from a kept link: the changes since the round that gave it. The link
    /// carries its first round's `$select` and `$filter` (spec 9), so there is nothing to
    /// set here.
    pub(crate) fn resume(client: GraphClient, link: &DeltaLink, path: String) -> Self {
        Self::new(client, NextLink::new(link.expose_secret()), path)
    }
}

impl<T> DeltaRound<T> {
    /// The link for the next round, once the stream has ended without an error; `None`
    /// before (a round cut short has no link: keep the old one).
    pub fn delta_link(&self) -> Option<&DeltaLink> {
        self.link.as_ref()
    }

    /// [`delta_link`](Self::delta_link), taken.
    pub fn into_delta_link(self) -> Option<DeltaLink> {
        self.link
    }
}

impl<T> Stream for DeltaRound<T> {
    type Item = Result<DeltaChange<T>, GraphError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(Step::Change(change)))) => Poll::Ready(Some(Ok(change))),
            Poll::Ready(Some(Ok(Step::Done(link)))) => {
                self.link = Some(link);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

struct RoundState<T> {
    /// The client, whose origin the round's delta link must have.
    base: GraphClient,
    pages: Pages<T>,
    merge: Merge<T>,
}

/// What a round makes of its pages, apart from fetching them: the changes ready to hand
/// out, the groups held to merge their `members@delta` slices, whether the delta link came.
pub(crate) struct Merge<T> {
    queue: VecDeque<Step<T>>,
    held: HashMap<ObjectId, T>,
    done: bool,
    path: String,
}

impl<T: DeltaObject> Merge<T> {
    pub(crate) fn new(path: String) -> Self {
        Self {
            queue: VecDeque::new(),
            held: HashMap::new(),
            done: false,
            path,
        }
    }

    /// The error of a round whose pages ran out before a delta link.
    pub(crate) fn ended_without_link(&self) -> GraphError {
        GraphError::InvalidResponse {
            path: self.path.clone(),
            reason: "the delta round ended without a delta link",
        }
    }

    /// Whether the page with the delta link was absorbed.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// The next change ready, or the delta link once every change was taken.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn next_step(&mut self) -> Option<Result<DeltaChange<T>, DeltaLink>> {
        self.queue.pop_front().map(|step| match step {
            Step::Change(change) => Ok(change),
            Step::Done(link) => Err(link),
        })
    }

    /// Takes one page; `check_origin` refuses a delta link to another origin.
    pub(crate) fn absorb(
        &mut self,
        page: Page<T>,
        check_origin: impl Fn(&str) -> Result<(), GraphError>,
    ) -> Result<(), GraphError> {
        let has_next = page.next_link().is_some();
        let delta_link = page.delta_link().cloned();
        if has_next == delta_link.is_some() {
            // A page has either a next link or a delta link, never both or neither (spec 9).
            return Err(GraphError::InvalidResponse {
                path: self.path.clone(),
                reason: "a delta page needs exactly one of nextLink and deltaLink",
            });
        }
        if let Some(link) = &delta_link {
            // A delta link to another origin is refused when it arrives, before the page's
            // changes, not only when a later round would follow it: kept, it would replace
            // the good link and fail every later round (DESIGN: the bearer token goes only
            // to the configured origin).
            check_origin(link.expose_secret())?;
        }
        for mut item in page.into_items() {
            if let Some(reason) = item.take_removed() {
                let Some(id) = item.delta_id().cloned() else {
                    return Err(GraphError::InvalidResponse {
                        path: self.path.clone(),
                        reason: "a removed delta item has no id",
                    });
                };
                self.held.remove(&id);
                self.queue
                    .push_back(Step::Change(DeltaChange::Removed { id, reason }));
                continue;
            }
            let held_id = item
                .delta_id()
                .filter(|id| item.needs_merge() || self.held.contains_key(*id))
                .cloned();
            match held_id {
                Some(id) => match self.held.get_mut(&id) {
                    Some(existing) => existing.merge(item),
                    None => {
                        self.held.insert(id, item);
                    }
                },
                None => self
                    .queue
                    .push_back(Step::Change(DeltaChange::Upsert(item))),
            }
        }
        if let Some(link) = delta_link {
            self.queue.extend(
                self.held
                    .drain()
                    .map(|(_, item)| Step::Change(DeltaChange::Upsert(item))),
            );
            self.queue.push_back(Step::Done(link));
            self.done = true;
        }
        Ok(())
    }
}
