//! The direct members of many groups at once: first pages 20 groups per `$batch`, then
//! each large group's next links, with bounded concurrency behind the client's throttle
//! gate, streamed page by page ([`GroupsApi::members_of_many`]).

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};

use crate::api::groups::GroupsApi;
use crate::batch::MAX_BATCH_SIZE;
use crate::client::GraphClient;
use crate::error::{ErrorAction, GraphError};
use crate::models::ObjectId;
use crate::models::directory_object::DirectoryObject;
use crate::paging::{LinkGuard, NextLink, Page, fetch_page};

/// How many batches or next-link chains [`MembersOfMany`] keeps in flight by default.
pub const DEFAULT_MEMBER_CONCURRENCY: usize = 8;

/// One page of one group's direct members, from [`MembersOfMany::stream`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GroupMembers {
    /// The group.
    pub group: ObjectId,
    /// The members on this page (types told apart by [`DirectoryObject::type_name`]).
    pub members: Vec<DirectoryObject>,
    /// True on the group's last page: every member of it has been given.
    pub complete: bool,
    /// False when Graph answered 404: the group was deleted after it was listed (it comes
    /// as removed in the next groups delta round); `members` is empty then.
    pub found: bool,
}

/// The direct members of many groups; `.stream()` runs it. From
/// [`GroupsApi::members_of_many`].
#[must_use = "a request does nothing until streamed"]
#[derive(Debug)]
pub struct MembersOfMany {
    client: GraphClient,
    groups: Vec<ObjectId>,
    select: Vec<String>,
    top: u32,
    concurrency: usize,
}

impl GroupsApi {
    /// The direct members of every group in `groups`, page by page: the first member
    /// pages of 20 groups per `$batch` request, then the next links of the groups that
    /// have more, each as its own chain. Up to [`concurrency`](MembersOfMany::concurrency)
    /// batches or chains are in flight at once, all behind the client's throttle gate (one
    /// 429 pauses them all, spec 10); a chain goes out before further batches, since a
    /// large group's pages come one after another and the longest chain bounds the whole.
    pub fn members_of_many<I>(&self, groups: I) -> MembersOfMany
    where
        I: IntoIterator,
        I::Item: Into<ObjectId>,
    {
        MembersOfMany {
            client: self.client().clone(),
            groups: groups.into_iter().map(Into::into).collect(),
            select: vec!["id".to_owned()],
            top: 999,
            concurrency: DEFAULT_MEMBER_CONCURRENCY,
        }
    }
}

impl MembersOfMany {
    /// `$select` of the members (default `id`: ids and `@odata.type` are all a membership
    /// needs, and `$select` costs one resource unit less, spec 10a). Replaces the default.
    pub fn select<I, S>(mut self, properties: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.select = properties
            .into_iter()
            .map(|p| p.as_ref().to_owned())
            .collect();
        self
    }

    /// `$top`, 1..=999 (default 999, what Microsoft's samples use for members; spec 8a).
    pub fn top(mut self, top: u32) -> Self {
        self.top = top;
        self
    }

    /// Batches or chains in flight at once (default [`DEFAULT_MEMBER_CONCURRENCY`]; 0 is 1).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// The pages, in the order they arrive. Memory: the pages in flight (at most
    /// `concurrency` × 20), never the whole membership.
    ///
    /// A request refused before sending (an invalid `$top`) is the stream's first item.
    pub fn stream(self) -> MemberPages {
        let max_pages = self.client.inner.max_pages;
        let state = Expansion {
            api: self.client.groups(),
            select: self.select,
            top: self.top,
            concurrency: self.concurrency,
            max_pages,
            waiting: self.groups.into(),
            chains: VecDeque::new(),
            in_flight: FuturesUnordered::new(),
            ready: VecDeque::new(),
            failed: false,
        };
        MemberPages(Box::pin(futures::stream::unfold(
            state,
            |mut state| async move {
                let item = state.next().await?;
                Some((item, state))
            },
        )))
    }
}

/// The stream of [`MembersOfMany::stream`]: named and `Unpin`.
#[must_use = "streams do nothing unless polled"]
pub struct MemberPages(Pin<Box<dyn Stream<Item = Result<GroupMembers, GraphError>> + Send>>);

impl Stream for MemberPages {
    type Item = Result<GroupMembers, GraphError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for MemberPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemberPages")
    }
}

/// A group whose next pages are still to be fetched.
struct Chain {
    group: ObjectId,
    next: NextLink,
    guard: LinkGuard,
}

/// A finished request of the expansion.
enum Piece {
    /// The first pages of a chunk of groups, in the chunk's order.
    FirstPages(
        Vec<ObjectId>,
        Result<Vec<Result<Page<DirectoryObject>, GraphError>>, GraphError>,
    ),
    /// The next page of a chain.
    NextPage(Chain, Result<Page<DirectoryObject>, GraphError>),
}

struct Expansion {
    api: GroupsApi,
    select: Vec<String>,
    top: u32,
    concurrency: usize,
    max_pages: u64,
    waiting: VecDeque<ObjectId>,
    chains: VecDeque<Chain>,
    in_flight: FuturesUnordered<BoxFuture<'static, Piece>>,
    ready: VecDeque<Result<GroupMembers, GraphError>>,
    failed: bool,
}

impl Expansion {
    async fn next(&mut self) -> Option<Result<GroupMembers, GraphError>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                self.failed |= item.is_err();
                return Some(item);
            }
            if self.failed {
                // A failed expansion ends: a partial membership must not pass as complete.
                return None;
            }
            self.fill();
            let piece = self.in_flight.next().await?;
            self.absorb(piece);
        }
    }

    /// Starts chains first, then batches, up to the concurrency.
    fn fill(&mut self) {
        while self.in_flight.len() < self.concurrency {
            if let Some(mut chain) = self.chains.pop_front() {
                if let Err(error) = chain.guard.admit(&chain.next) {
                    self.ready.push_back(Err(error));
                    return;
                }
                let client = self.api.client().clone();
                self.in_flight.push(Box::pin(async move {
                    let page = fetch_page(&client, &chain.next).await;
                    Piece::NextPage(chain, page)
                }));
            } else if !self.waiting.is_empty() {
                let take = self.waiting.len().min(MAX_BATCH_SIZE);
                let chunk: Vec<ObjectId> = self.waiting.drain(..take).collect();
                let items = chunk
                    .iter()
                    .map(|id| {
                        self.api
                            .members(id.as_str())
                            .select(&self.select)
                            .top(self.top)
                            .to_batch_item()
                    })
                    .collect::<Result<Vec<_>, _>>();
                let items = match items {
                    Ok(items) => items,
                    Err(error) => {
                        self.ready.push_back(Err(error));
                        return;
                    }
                };
                let client = self.api.client().clone();
                self.in_flight.push(Box::pin(async move {
                    let answers = client.batch_pages::<DirectoryObject>(items).await;
                    Piece::FirstPages(chunk, answers)
                }));
            } else {
                return;
            }
        }
    }

    fn absorb(&mut self, piece: Piece) {
        match piece {
            Piece::FirstPages(_, Err(error)) => self.ready.push_back(Err(error)),
            Piece::FirstPages(chunk, Ok(answers)) => {
                for (group, answer) in chunk.into_iter().zip(answers) {
                    match answer {
                        Ok(page) => {
                            let next = page.next_link().cloned();
                            self.emit(group.clone(), page, next.is_none());
                            if let Some(next) = next {
                                self.chains.push_back(Chain {
                                    group,
                                    next,
                                    guard: LinkGuard::new(self.max_pages),
                                });
                            }
                        }
                        Err(error) if error.action() == ErrorAction::NotFound => {
                            self.ready.push_back(Ok(GroupMembers {
                                group,
                                members: Vec::new(),
                                complete: true,
                                found: false,
                            }));
                        }
                        Err(error) => self.ready.push_back(Err(error)),
                    }
                }
            }
            Piece::NextPage(_, Err(error)) if error.action() != ErrorAction::NotFound => {
                self.ready.push_back(Err(error));
            }
            Piece::NextPage(chain, Err(_)) => {
                // Deleted while its pages were being read: as for its first page, the
                // next groups delta round removes it.
                self.ready.push_back(Ok(GroupMembers {
                    group: chain.group,
                    members: Vec::new(),
                    complete: true,
                    found: false,
                }));
            }
            Piece::NextPage(mut chain, Ok(page)) => {
                let next = page.next_link().cloned();
                self.emit(chain.group.clone(), page, next.is_none());
                if let Some(next) = next {
                    chain.next = next;
                    // Ahead of other chains: finishing a started group frees its memory.
                    self.chains.push_front(chain);
                }
            }
        }
    }

    fn emit(&mut self, group: ObjectId, page: Page<DirectoryObject>, complete: bool) {
        self.ready.push_back(Ok(GroupMembers {
            group,
            members: page.into_items(),
            complete,
            found: true,
        }));
    }
}
