//! Partitioned listing: `/users` (or `/groups`) as several `@odata.nextLink` chains over
//! disjoint `startsWith` ranges, run concurrently and merged into one stream in which
//! every object appears once.
//!
//! Why: a single chain runs at one page per round trip, since page N+1's link arrives
//! with page N; Graph's directory budget (8,000 resource units per 10 s for a tenant of
//! more than 500 users, a `$select`ed users page costing 1, spec 10a) allows far more.
//!
//! What Graph allows (docs/research/upn-partitions.md, with sources): on
//! `userPrincipalName`, and on a group's `mailNickname`, `$filter` supports `eq`, `in`
//! and `startsWith` by default; `ge`/`le` are blank in the advanced-queries table
//! ("isn't valid for that property"), `ne`/`not` need advanced queries. So ranges are
//! sets of first characters, and the listing never relies on ordering or `ge`/`le`.
//!
//! Completeness, by construction and checked:
//! - The units are every printable ASCII character as a first character (a UPN may hold
//!   only `A-Z a-z 0-9 ' . - _ ! # ^ ~`, concept-sspr-policy; a `mailNickname` only ASCII,
//!   the group resource page), each letter asked in both cases in the same request. Whether
//!   directory comparisons fold case is UNCONFIRMED in the docs (Microsoft's own sample
//!   answers `startswith(displayName,'a')` with "AAD Contoso Users", user-list-memberof.md
//!   Example 5): asking `'a'` and `'A'` together is right either way and never yields an
//!   object twice.
//! - Before listing, the collection's `$count` is compared with the sum of the units'
//!   counts; if the units hold fewer (a value beginning with a character outside them),
//!   the single chain runs after the ranges for the rest.
//! - Every object is yielded once, by id, even if ranges touch or a fallback re-lists.
//! - A range filter or `$count` the service refuses (400) falls back to the single chain, with a
//!   `tracing` warning; the objects already yielded are not yielded again.

use std::collections::HashSet;

use futures::stream::{self, SelectAll, StreamExt};
use serde::de::DeserializeOwned;

use crate::client::{Call, GraphClient};
use crate::error::GraphError;
use crate::models::ObjectId;
use crate::paging::{Page, Pages, RawPage, raw_page_stream};
use crate::request::{ListRequest, odata_string};
use crate::{Group, User};

/// The most chains a partitioned listing runs at once unless
/// [`PartitionedList::max_partitions`] says otherwise.
pub const DEFAULT_MAX_PARTITIONS: usize = 16;

/// A chain is started for about this many pages: below it, the sizing round trips cost
/// more than the chain saves.
const PAGES_PER_PARTITION: u64 = 4;

/// The most `startsWith` terms in one `$filter`. Graph documents 15 expressions for `in`
/// (known-issues); whether `or` chains share the limit is UNCONFIRMED, so they keep to it.
const MAX_TERMS: usize = 15;

/// How the listing is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Partitions {
    /// From the collection's size: one chain per [`PAGES_PER_PARTITION`] pages, at most
    /// `max`.
    Adaptive { max: usize },
    /// This many (1: the single chain).
    Fixed(usize),
}

/// A listing of all users or all groups split into concurrent ranges; from
/// [`UsersApi::list_partitioned`](crate::UsersApi::list_partitioned) and
/// [`GroupsApi::list_partitioned`](crate::GroupsApi::list_partitioned).
///
/// Use it for a first import or a resync of a large tenant, where one `@odata.nextLink`
/// chain would wait a round trip per page. It yields the same set of objects as the
/// single chain (see the module docs for how that is ensured), in no particular order;
/// pages carry no next link (there are several chains).
///
/// It costs, besides the pages: one `$count` request (`ConsistencyLevel: eventual`), and
/// for a collection big enough to split, 32 more, sent at once (one per letter, one per
/// seven digits and symbols). Unless [`partitions`](Self::partitions) fixes the chains, the
/// collection's `$count` goes out together with the single chain's first page: a
/// collection of one page is listed in that round trip, one of fewer than about four
/// pages goes on as the single chain, and a larger one's ranges list its first page's
/// objects again, dropped as seen.
/// Every request goes through the client's throttle gate: a 429 pauses all chains.
///
/// A chain that fails fails the whole listing with its error; dropping the stream stops
/// every chain.
#[must_use = "a listing does nothing until streamed"]
pub struct PartitionedList<T> {
    client: GraphClient,
    collection: &'static str,
    property: &'static str,
    select: Vec<String>,
    top: u32,
    partitions: Partitions,
    id_of: fn(&T) -> Option<&ObjectId>,
}

impl<T> std::fmt::Debug for PartitionedList<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionedList")
            .field("collection", &self.collection)
            .field("property", &self.property)
            .field("select", &self.select)
            .field("top", &self.top)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl crate::UsersApi {
    /// `GET /users` split by the first character of `userPrincipalName` into concurrent
    /// chains (see [`PartitionedList`]).
    pub fn list_partitioned(&self) -> PartitionedList<User> {
        PartitionedList::new(
            self.client().clone(),
            "users",
            "userPrincipalName",
            |user: &User| user.id.as_ref(),
        )
    }
}

impl crate::GroupsApi {
    /// `GET /groups` split by the first character of `mailNickname` (required and ASCII,
    /// unlike `displayName`) into concurrent chains (see [`PartitionedList`]).
    pub fn list_partitioned(&self) -> PartitionedList<Group> {
        PartitionedList::new(
            self.client().clone(),
            "groups",
            "mailNickname",
            |group: &Group| group.id.as_ref(),
        )
    }
}

impl<T: DeserializeOwned + Send + 'static> PartitionedList<T> {
    fn new(
        client: GraphClient,
        collection: &'static str,
        property: &'static str,
        id_of: fn(&T) -> Option<&ObjectId>,
    ) -> Self {
        Self {
            client,
            collection,
            property,
            select: Vec::new(),
            top: 999,
            partitions: Partitions::Adaptive {
                max: DEFAULT_MAX_PARTITIONS,
            },
            id_of,
        }
    }

    /// `$select` on every chain; calls add up.
    pub fn select<I, S>(mut self, properties: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.select
            .extend(properties.into_iter().map(|p| p.as_ref().to_owned()));
        self
    }

    /// `$top` of every chain's pages, 1..=999 (default 999).
    pub fn top(mut self, top: u32) -> Self {
        self.top = top;
        self
    }

    /// Exactly `count` chains (at least 1; 1 is the single chain), instead of choosing
    /// from the collection's size. More chains than fit the ranges' filters are never run.
    pub fn partitions(mut self, count: usize) -> Self {
        self.partitions = Partitions::Fixed(count.max(1));
        self
    }

    /// The most chains the adaptive choice runs (default [`DEFAULT_MAX_PARTITIONS`]).
    pub fn max_partitions(mut self, max: usize) -> Self {
        self.partitions = Partitions::Adaptive { max: max.max(1) };
        self
    }

    /// All objects, in pages as the chains deliver them, each object once.
    pub fn pages(self) -> Pages<T> {
        let state = State {
            phase: Phase::Start,
            seen: SeenIds::default(),
            list: self,
        };
        Pages::from_stream(stream::unfold(state, State::next))
    }

    /// All objects, each once.
    pub fn stream(self) -> crate::Items<T> {
        crate::paging::item_stream(self.pages())
    }

    fn request(&self) -> ListRequest<T> {
        ListRequest::<T>::new(
            self.client.clone(),
            Ok(self.client.fixed_url(&[self.collection])),
        )
        .select(&self.select)
        .top(self.top)
    }

    /// The single chain, as [`UsersApi::list`](crate::UsersApi::list) would run it.
    fn single(&self) -> Pages<T> {
        self.request().pages()
    }

    /// One range's chain. Its pages wait undecoded while the consumer is busy: with every
    /// chain one page ahead, decoded pages would cost a kilobyte or more an object each.
    fn range(&self, filter: String) -> Result<RawPages, GraphError> {
        let first = self.request().filter(filter).first_link()?;
        Ok(raw_page_stream(self.client.clone(), first))
    }

    /// Decides the chains: the single one, or ranges with whether the rest must follow.
    async fn plan(&self) -> Result<Plan, GraphError> {
        if self.partitions == Partitions::Fixed(1) {
            return Ok(Plan::Single);
        }
        let total = match count(&self.client, self.collection, None).await {
            Ok(total) => total,
            Err(error) if refused(&error) => {
                tracing::warn!(
                    collection = self.collection,
                    status = error.status(),
                    code = error.code(),
                    "$count was refused; the partitioned listing falls back to the single chain"
                );
                return Ok(Plan::Single);
            }
            Err(error) => return Err(error),
        };
        let wanted = match self.partitions {
            Partitions::Fixed(count) => count,
            Partitions::Adaptive { max } => {
                let per_chain = u64::from(self.top.max(1)) * PAGES_PER_PARTITION;
                usize::try_from(total.div_ceil(per_chain))
                    .unwrap_or(usize::MAX)
                    .min(max)
            }
        };
        if wanted <= 1 {
            return Ok(Plan::Single);
        }
        let units = first_characters();
        let filters: Vec<String> = units.iter().map(|u| u.filter(self.property)).collect();
        let counts = futures::future::join_all(
            filters
                .iter()
                .map(|filter| count(&self.client, self.collection, Some(filter.as_str()))),
        )
        .await;
        let mut sized = Vec::with_capacity(units.len());
        for (unit, counted) in units.into_iter().zip(counts) {
            match counted {
                Ok(size) => sized.push((unit, size)),
                Err(error) if refused(&error) => {
                    tracing::warn!(
                        collection = self.collection,
                        property = self.property,
                        status = error.status(),
                        code = error.code(),
                        "a startsWith range was refused; the partitioned listing falls back to the single chain"
                    );
                    return Ok(Plan::Single);
                }
                Err(error) => return Err(error),
            }
        }
        let covered: u64 = sized.iter().map(|(_, size)| size).sum();
        let rest = covered < total;
        if rest {
            tracing::warn!(
                collection = self.collection,
                property = self.property,
                total,
                covered,
                "some objects begin with a character outside the ranges; the single chain lists the rest after them"
            );
        }
        let chains = pack(sized, wanted);
        tracing::debug!(
            collection = self.collection,
            total,
            chains = chains.len(),
            "partitioned listing"
        );
        Ok(Plan::Ranges {
            filters: chains
                .into_iter()
                .map(|chain| chain.filter(self.property))
                .collect(),
            rest,
        })
    }
}

/// True when the service refused the query itself: a 400 (an unsupported filter or
/// `$count`), or a 404, 405 or 501 from a Graph-like service without `$count`. The
/// single chain is right then; a 401, 403, 429 or 5xx would fail it too, so those are
/// the listing's error.
fn refused(error: &GraphError) -> bool {
    matches!(error.status(), Some(400 | 404 | 405 | 501))
}

/// `GET /{collection}/$count[?$filter=...]` with `ConsistencyLevel: eventual` (a `$count`
/// segment is an advanced query, spec 8c); the answer is a bare number.
async fn count(
    client: &GraphClient,
    collection: &'static str,
    filter: Option<&str>,
) -> Result<u64, GraphError> {
    let mut url = client.fixed_url(&[collection, "$count"]);
    if let Some(filter) = filter {
        url.query_pairs_mut().append_pair("$filter", filter);
    }
    let call = Call {
        accept: "text/plain",
        ..Call::get(url.as_str(), true)
    };
    let reply = client.execute(call).await?;
    std::str::from_utf8(&reply.body)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .ok_or(GraphError::InvalidResponse {
            path: reply.path,
            reason: "a $count answer that is not a number",
        })
}

/// One first character: its `startsWith` literals (a letter in both cases).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Unit {
    prefixes: Vec<char>,
}

impl Unit {
    fn filter(&self, property: &str) -> String {
        terms_filter(property, self.prefixes.iter())
    }
}

fn terms_filter<'a>(property: &str, prefixes: impl Iterator<Item = &'a char>) -> String {
    prefixes
        .map(|c| format!("startsWith({property},{})", odata_string(&c.to_string())))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Every printable ASCII character (`!` to `~`) as a first character: each letter a unit
/// with its other case (26 units), the 42 digits and symbols, which begin few UPNs, in
/// units of at most 7 (6 units, so that one fits beside a chain's letters within the 15
/// terms). 32 units of 94 literals: 32 `$count`s to size a listing.
fn first_characters() -> Vec<Unit> {
    let mut units: Vec<Unit> = ('a'..='z')
        .map(|c| Unit {
            prefixes: vec![c, c.to_ascii_uppercase()],
        })
        .collect();
    let others: Vec<char> = (b'!'..=b'~')
        .map(char::from)
        .filter(|c| !c.is_ascii_alphabetic())
        .collect();
    units.extend(others.chunks(SYMBOLS_PER_UNIT).map(|chunk| Unit {
        prefixes: chunk.to_vec(),
    }));
    units
}

/// Digits and symbols counted and listed together in one unit.
const SYMBOLS_PER_UNIT: usize = 7;

/// The literals of one chain and the objects counted in them.
#[derive(Debug, Default)]
struct Chain {
    prefixes: Vec<char>,
    load: u64,
}

impl Chain {
    fn filter(&self, property: &str) -> String {
        terms_filter(property, self.prefixes.iter())
    }
}

/// Packs the units into about `wanted` chains, biggest first onto the lightest chain with
/// room for its literals (longest-processing-time first), so the longest chain is as
/// short as the units allow. Every unit lands in a chain, counted empty or not: counts
/// are eventually consistent, and an object missing from them still has to be listed.
fn pack(mut units: Vec<(Unit, u64)>, wanted: usize) -> Vec<Chain> {
    units.sort_by_key(|unit| std::cmp::Reverse(unit.1));
    let mut chains: Vec<Chain> = (0..wanted.max(1)).map(|_| Chain::default()).collect();
    for (unit, size) in units {
        let fits = chains
            .iter_mut()
            .filter(|chain| chain.prefixes.len() + unit.prefixes.len() <= MAX_TERMS)
            .min_by_key(|chain| chain.load);
        let chain = if let Some(chain) = fits {
            chain
        } else {
            chains.push(Chain::default());
            let last = chains.len() - 1;
            &mut chains[last]
        };
        chain.prefixes.extend(&unit.prefixes);
        chain.load += size;
    }
    chains.retain(|chain| !chain.prefixes.is_empty());
    chains
}

enum Plan {
    Single,
    Ranges { filters: Vec<String>, rest: bool },
}

/// The pages of one range's chain, undecoded.
type RawPages = std::pin::Pin<Box<dyn futures::Stream<Item = Result<RawPage, GraphError>> + Send>>;

enum Phase<T> {
    Start,
    Ranges {
        chains: SelectAll<RawPages>,
        rest: bool,
    },
    Single(Pages<T>),
    Done,
}

struct State<T> {
    phase: Phase<T>,
    seen: SeenIds,
    list: PartitionedList<T>,
}

impl<T: DeserializeOwned + Send + 'static> State<T> {
    async fn next(mut self) -> Option<(Result<Page<T>, GraphError>, Self)> {
        loop {
            match std::mem::replace(&mut self.phase, Phase::Done) {
                // Sized from its `$count`, with the single chain's first page asked at
                // the same time: a collection of one page is then listed in one round
                // trip, and a larger one's first page is not waited for twice.
                Phase::Start if matches!(self.list.partitions, Partitions::Adaptive { .. }) => {
                    let mut single = self.list.single();
                    let (first, plan) =
                        futures::future::join(single.next(), self.list.plan()).await;
                    let page = match first {
                        Some(Ok(page)) => page,
                        Some(Err(error)) => return Some((Err(error), self)),
                        None => return None,
                    };
                    let more = page.next_link().is_some();
                    let page = self.once(page);
                    if more {
                        match plan {
                            Ok(Plan::Single) => self.phase = Phase::Single(single),
                            Ok(Plan::Ranges { filters, rest }) => {
                                match self.ranges(filters, rest) {
                                    Ok(phase) => self.phase = phase,
                                    Err(error) => return Some((Err(error), self)),
                                }
                            }
                            Err(error) => return Some((Err(error), self)),
                        }
                    }
                    return Some((Ok(page), self));
                }
                Phase::Start => match self.list.plan().await {
                    Ok(Plan::Single) => self.phase = Phase::Single(self.list.single()),
                    Ok(Plan::Ranges { filters, rest }) => match self.ranges(filters, rest) {
                        Ok(phase) => self.phase = phase,
                        Err(error) => return Some((Err(error), self)),
                    },
                    Err(error) => return Some((Err(error), self)),
                },
                Phase::Ranges { mut chains, rest } => match chains.next().await {
                    Some(Ok(raw)) => {
                        let page = match raw.decode::<T>() {
                            Ok(page) => self.once(page),
                            Err(error) => return Some((Err(error), self)),
                        };
                        self.phase = Phase::Ranges { chains, rest };
                        return Some((Ok(page), self));
                    }
                    Some(Err(error)) if refused(&error) => {
                        tracing::warn!(
                            collection = self.list.collection,
                            property = self.list.property,
                            status = error.status(),
                            code = error.code(),
                            "a startsWith range was refused; the partitioned listing falls back to the single chain"
                        );
                        // Dropping `chains` cancels the other ranges' requests.
                        self.phase = Phase::Single(self.list.single());
                    }
                    Some(Err(error)) => return Some((Err(error), self)),
                    None if rest => self.phase = Phase::Single(self.list.single()),
                    None => return None,
                },
                Phase::Single(mut pages) => match pages.next().await {
                    Some(Ok(page)) => {
                        let page = self.once(page);
                        self.phase = Phase::Single(pages);
                        return Some((Ok(page), self));
                    }
                    Some(Err(error)) => return Some((Err(error), self)),
                    None => return None,
                },
                Phase::Done => return None,
            }
        }
    }

    /// The phase that runs the range chains of `filters` (then the rest, if `rest`).
    fn ranges(&self, filters: Vec<String>, rest: bool) -> Result<Phase<T>, GraphError> {
        let chains = filters
            .into_iter()
            .map(|filter| self.list.range(filter))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Phase::Ranges {
            chains: stream::select_all(chains),
            rest,
        })
    }

    /// The page's objects not yielded before (objects without an id pass: the caller
    /// decides about those), as a page without links.
    fn once(&mut self, page: Page<T>) -> Page<T> {
        let id_of = self.list.id_of;
        let items = page
            .into_items()
            .into_iter()
            .filter(|item| id_of(item).is_none_or(|id| self.seen.first(id)))
            .collect();
        Page::from_items(items)
    }
}

/// The ids yielded so far: a GUID as its 128 bits (16 bytes an object), any other id as
/// text (Graph's own samples hold ids that are not GUIDs, so both occur).
#[derive(Default)]
struct SeenIds {
    guids: HashSet<u128>,
    others: HashSet<Box<str>>,
}

impl SeenIds {
    /// True the first time `id` is seen.
    fn first(&mut self, id: &ObjectId) -> bool {
        match parse_guid(id.as_str()) {
            Some(bits) => self.guids.insert(bits),
            None => self.others.insert(id.as_str().into()),
        }
    }
}

/// The 128 bits of a GUID in its 8-4-4-4-12 form (either case), or `None`. Two spellings
/// of one GUID that differ in case are one object, as in Graph.
fn parse_guid(text: &str) -> Option<u128> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let mut bits: u128 = 0;
    for (at, byte) in bytes.iter().enumerate() {
        if matches!(at, 8 | 13 | 18 | 23) {
            if *byte != b'-' {
                return None;
            }
            continue;
        }
        let digit = char::from(*byte).to_digit(16)?;
        bits = (bits << 4) | u128::from(digit);
    }
    Some(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_units_cover_every_printable_ascii_first_character_once() {
        let units = first_characters();
        assert_eq!(units.len(), 32);
        let mut all: Vec<char> = units.iter().flat_map(|u| u.prefixes.clone()).collect();
        assert_eq!(all.len(), 94);
        all.sort_unstable();
        all.dedup();
        assert_eq!(all, (b'!'..=b'~').map(char::from).collect::<Vec<_>>());
        // The documented UPN characters are all there, letters paired with their case.
        for c in "AZaz09'.-_!#^~".chars() {
            assert!(all.contains(&c), "{c}");
        }
        assert!(units.contains(&Unit {
            prefixes: vec!['q', 'Q']
        }));
        assert!(units.iter().all(|u| u.prefixes.len() <= SYMBOLS_PER_UNIT));
    }

    #[test]
    fn filters_quote_and_join_their_literals() {
        let unit = Unit {
            prefixes: vec!['\''],
        };
        assert_eq!(
            unit.filter("userPrincipalName"),
            "startsWith(userPrincipalName,'''')"
        );
        let chain = Chain {
            prefixes: vec!['a', 'A', '#'],
            load: 0,
        };
        assert_eq!(
            chain.filter("mailNickname"),
            "startsWith(mailNickname,'a') or startsWith(mailNickname,'A') or startsWith(mailNickname,'#')"
        );
    }

    #[test]
    fn packing_balances_loads_keeps_every_unit_and_the_term_limit() {
        let units: Vec<(Unit, u64)> = first_characters()
            .into_iter()
            .enumerate()
            .map(|(i, unit)| {
                let size = if unit.prefixes.len() == 2 {
                    1_000 + (i as u64 * 37) % 900
                } else {
                    0
                };
                (unit, size)
            })
            .collect();
        let total: u64 = units.iter().map(|(_, s)| s).sum();
        let chains = pack(units, 8);
        assert!(chains.len() >= 8, "{} chains", chains.len());
        assert!(chains.iter().all(|c| c.prefixes.len() <= MAX_TERMS));
        let literals: usize = chains.iter().map(|c| c.prefixes.len()).sum();
        assert_eq!(literals, 94, "every literal in exactly one chain");
        assert_eq!(chains.iter().map(|c| c.load).sum::<u64>(), total);
        let heaviest = chains.iter().map(|c| c.load).max().unwrap_or(0);
        let lightest = chains.iter().take(8).map(|c| c.load).min().unwrap_or(0);
        assert!(heaviest - lightest < 1_900, "{heaviest} vs {lightest}");
        // Fewer chains than the literals need: more are opened, none over the limit.
        let few = pack(first_characters().into_iter().map(|u| (u, 1)).collect(), 2);
        assert!((7..=8).contains(&few.len()), "{} chains", few.len());
        assert!(few.iter().all(|c| c.prefixes.len() <= MAX_TERMS));
        // As many chains as asked when the literals fit: 8 chains hold the 94.
        let eight = pack(first_characters().into_iter().map(|u| (u, 1)).collect(), 8);
        assert_eq!(eight.len(), 8);
    }

    #[test]
    fn guids_are_seen_once_whatever_their_case_and_other_ids_as_text() {
        let mut seen = SeenIds::default();
        let id = ObjectId::from("6e7b768e-07e2-4810-8459-485f84f8f204");
        assert!(seen.first(&id));
        assert!(!seen.first(&id));
        assert!(!seen.first(&ObjectId::from("6E7B768E-07E2-4810-8459-485F84F8F204")));
        assert!(seen.first(&ObjectId::from("6e7b768e-07e2-4810-8459-485f84f8f205")));
        assert!(seen.first(&ObjectId::from("not-a-guid")));
        assert!(!seen.first(&ObjectId::from("not-a-guid")));
        assert_eq!(parse_guid("6e7b768e+07e2-4810-8459-485f84f8f204"), None);
        assert_eq!(parse_guid("6e7b768e-07e2-4810-8459-485f84f8f20g"), None);
    }
}
