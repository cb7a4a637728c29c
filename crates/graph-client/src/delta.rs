//! Delta rounds for users and groups (spec 9): a stream of [`DeltaEvent`]s ending with
//! the delta link to keep.
//!
//! Changes may be replayed in later rounds and one object may appear several times in a
//! round (spec 9, "Replays"), so apply them idempotently: an `Upsert` overwrites the stored
//! object with what it carries, a `Removed` of an unknown id is a no-op, a member added twice
//! stays one member.

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use url::Url;

use crate::client::GraphClient;
use crate::error::GraphError;
use crate::models::group::Group;
use crate::models::user::User;
use crate::models::{ObjectId, RemovedReason};
use crate::paging::{DeltaLink, NextLink, Page, page_stream};
use crate::request::{Query, with_query};

/// One change of a delta round, or its end.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DeltaEvent<T> {
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
    /// The round is complete: keep this link for the next round (it replaces the old one).
    Complete(DeltaLink),
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
    Link(DeltaLink),
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

    pub(crate) fn from_link(client: GraphClient, url: Url, link: DeltaLink) -> Self {
        Self {
            start: Start::Link(link),
            ..Self::new(client, url)
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
    /// Any error of the request; [`GraphError::InvalidResponse`] when Graph answered
    /// objects or pages instead of a delta link.
    pub async fn latest_link(self) -> Result<DeltaLink, GraphError> {
        let path = self.url.path().to_owned();
        let mut round = std::pin::pin!(self.from_now().stream());
        while let Some(event) = round.next().await {
            if let DeltaEvent::Complete(link) = event? {
                return Ok(link);
            }
        }
        Err(GraphError::InvalidResponse {
            path,
            reason: "the delta round ended without a delta link",
        })
    }

    fn first_link(&self) -> Result<NextLink, GraphError> {
        let mut query = Query {
            select: self.select.clone(),
            filter: self.filter.clone(),
            ..Query::default()
        };
        match &self.start {
            Start::Link(link) => {
                if !self.select.is_empty() || self.filter.is_some() {
                    return Err(GraphError::InvalidRequest {
                        reason: "a delta link carries its own $select and $filter; start a new round to change them".into(),
                    });
                }
                return Ok(NextLink::new(link.expose_secret()));
            }
            Start::Latest => query.extra.push(("$deltatoken", "latest".into())),
            Start::Initial => {}
        }
        Ok(NextLink::new(with_query(
            self.url.clone(),
            &query.to_query_string(None),
        )))
    }

    /// The round's changes, ending with [`DeltaEvent::Complete`].
    ///
    /// Memory: one page, plus the groups whose `members@delta` is still being merged
    /// (they are emitted just before `Complete`, since a group can reappear on any later
    /// page of the round, spec 9).
    pub fn stream(self) -> impl Stream<Item = Result<DeltaEvent<T>, GraphError>> + Send + 'static {
        let path = self.url.path().to_owned();
        let first = self.first_link();
        let pages: Pin<Box<dyn Stream<Item = Result<Page<T>, GraphError>> + Send>> =
            Box::pin(page_stream(self.client, first));
        let state = RoundState {
            pages,
            queue: VecDeque::new(),
            held: HashMap::new(),
            done: false,
            path,
        };
        futures::stream::try_unfold(state, |mut state| async move {
            loop {
                if let Some(event) = state.queue.pop_front() {
                    return Ok(Some((event, state)));
                }
                if state.done {
                    return Ok(None);
                }
                match state.pages.next().await {
                    None => {
                        return Err(GraphError::InvalidResponse {
                            path: state.path,
                            reason: "the delta round ended without a delta link",
                        });
                    }
                    Some(Err(e)) => return Err(e),
                    Some(Ok(page)) => state.absorb(page)?,
                }
            }
        })
    }
}

struct RoundState<T> {
    pages: Pin<Box<dyn Stream<Item = Result<Page<T>, GraphError>> + Send>>,
    queue: VecDeque<DeltaEvent<T>>,
    held: HashMap<ObjectId, T>,
    done: bool,
    path: String,
}

impl<T: DeltaObject> RoundState<T> {
    fn absorb(&mut self, page: Page<T>) -> Result<(), GraphError> {
        let has_next = page.next_link().is_some();
        let delta_link = page.delta_link().cloned();
        if has_next == delta_link.is_some() {
            // A page has either a next link or a delta link, never both or neither (spec 9).
            return Err(GraphError::InvalidResponse {
                path: self.path.clone(),
                reason: "a delta page needs exactly one of nextLink and deltaLink",
            });
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
                self.queue.push_back(DeltaEvent::Removed { id, reason });
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
                None => self.queue.push_back(DeltaEvent::Upsert(item)),
            }
        }
        if let Some(link) = delta_link {
            self.queue
                .extend(self.held.drain().map(|(_, item)| DeltaEvent::Upsert(item)));
            self.queue.push_back(DeltaEvent::Complete(link));
            self.done = true;
        }
        Ok(())
    }
}
