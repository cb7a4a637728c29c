//! `/users` and `/groups` (filter, search, order, page) and single users and groups.

use axum::http::StatusCode;
use axum::response::Response;

use crate::data::Directory;

use super::endpoint::UserRef;
use super::error::GraphError;
use super::paging::{Pager, count_matching};
use super::properties::{
    Catalogue, GROUPS, USERS, group_json, group_property, user_fields, user_json, user_property,
};
use super::query::{Filter, Search};
use super::request::Request;
use super::response::single;

pub(super) fn live_user(dir: &Directory, position: usize) -> Option<u32> {
    let slot = u32::try_from(position).ok()?;
    dir.user(slot).map(|_| slot)
}

pub(super) fn live_group(dir: &Directory, position: usize) -> Option<u32> {
    let slot = u32::try_from(position).ok()?;
    dir.group(slot).map(|_| slot)
}

/// The live users a `startsWith(userPrincipalName, ..)` filter can match, from the UPN
/// index, each once; `None` for any other filter.
fn upn_candidates(dir: &Directory, filter: Option<&Filter>) -> Option<Vec<u32>> {
    let prefixes = filter?.prefixes_of("userPrincipalName")?;
    let mut slots: Vec<u32> = prefixes
        .iter()
        .flat_map(|prefix| {
            let prefix = prefix.to_lowercase();
            dir.users_with_upn_prefix(&prefix).collect::<Vec<_>>()
        })
        .collect();
    slots.sort_unstable();
    slots.dedup();
    Some(slots)
}

/// `GET /users/$count`: the users the filter and search admit, as the listing would
/// return them; a UPN prefix filter counts its index candidates instead of every user.
pub(super) fn count_users(
    dir: &Directory,
    filter: Option<&Filter>,
    search: Option<&Search>,
) -> usize {
    let admits = user_matches(dir, filter, search);
    match upn_candidates(dir, filter) {
        Some(slots) => slots.iter().filter(|slot| admits(slot)).count(),
        None => count_matching(dir.users.len(), |i| live_user(dir, i), admits),
    }
}

/// Whether a user passes the listing's filter and search.
pub(super) fn user_predicate<'a>(
    dir: &'a Directory,
    filter: Option<&'a Filter>,
    search: Option<&'a Search>,
) -> impl Fn(&u32) -> bool + 'a {
    // A filter of `startsWith(userPrincipalName, ..)` terms reads its candidates from the
    // UPN index (as Graph's indexed properties do); the filter still decides, so lists
    // and counts answer the same as a scan would.
    let candidates = upn_candidates(dir, filter).map(|slots| {
        let mut marked = vec![false; dir.users.len()];
        for slot in slots {
            if let Some(mark) = marked.get_mut(slot as usize) {
                *mark = true;
            }
        }
        marked
    });
    let admits = user_matches(dir, filter, search);
    move |slot: &u32| {
        candidates
            .as_ref()
            .is_none_or(|marked| marked.get(*slot as usize).copied().unwrap_or(false))
            && admits(slot)
    }
}

/// The filter and search on one user, without the index.
fn user_matches<'a>(
    dir: &'a Directory,
    filter: Option<&'a Filter>,
    search: Option<&'a Search>,
) -> impl Fn(&u32) -> bool + 'a {
    move |slot: &u32| {
        let Some(user) = dir.user(*slot) else {
            return false;
        };
        let property = |name: &str| user_property(dir, *slot, user, name).map(|(_, v)| v);
        filter.is_none_or(|f| f.matches(&property)) && search.is_none_or(|s| s.matches(&property))
    }
}

pub(super) fn group_predicate<'a>(
    dir: &'a Directory,
    filter: Option<&'a Filter>,
    search: Option<&'a Search>,
) -> impl Fn(&u32) -> bool + 'a {
    move |slot: &u32| {
        let Some(group) = dir.group(*slot) else {
            return false;
        };
        let property = |name: &str| group_property(dir, *slot, group, name).map(|(_, v)| v);
        filter.is_none_or(|f| f.matches(&property)) && search.is_none_or(|s| s.matches(&property))
    }
}

/// `$orderby`: `displayName` (and `userPrincipalName` for users) work without advanced
/// parameters; `$orderby` with `$filter` needs them ([spec 8c]).
pub(super) fn order_by(
    request: &Request<'_>,
    allowed: &[&str],
    has_filter: bool,
) -> Result<Option<(&'static str, bool)>, GraphError> {
    order_by_text(
        request.query.orderby.as_deref(),
        allowed,
        has_filter,
        &|| request.advanced(),
    )
}

/// [`order_by`] on the `$orderby` text itself (`None`: not sent), `advanced` telling
/// whether the request has the advanced query parameters (asked only with a filter): the
/// sorted property among `allowed` and whether it is descending. Apart from the request so
/// that the fuzz targets read any text as a listing does.
pub(crate) fn order_by_text(
    orderby: Option<&str>,
    allowed: &[&str],
    has_filter: bool,
    advanced: &dyn Fn() -> bool,
) -> Result<Option<(&'static str, bool)>, GraphError> {
    let Some(orderby) = orderby else {
        return Ok(None);
    };
    let mut parts = orderby.split_whitespace();
    let property = parts.next().unwrap_or_default();
    let descending = match parts.next() {
        None => false,
        Some(d) if d.eq_ignore_ascii_case("asc") => false,
        Some(d) if d.eq_ignore_ascii_case("desc") => true,
        Some(_) => {
            return Err(GraphError::bad_request(
                "BadRequest",
                format!("Invalid $orderby: {orderby}"),
            ));
        }
    };
    let Some(property) = ["displayName", "userPrincipalName"].into_iter().find(|p| {
        p.eq_ignore_ascii_case(property) && allowed.iter().any(|a| a.eq_ignore_ascii_case(p))
    }) else {
        return Err(GraphError::bad_request(
            "Request_UnsupportedQuery",
            "Sorting not supported for current query.",
        ));
    };
    if has_filter && !advanced() {
        return Err(GraphError::bad_request(
            "Request_UnsupportedQuery",
            "Unsupported Query.",
        ));
    }
    Ok(Some((property, descending)))
}

/// The `$select` of a users or groups listing: properties only a single object returns
/// are refused (error-delta-property-not-supported-501.json).
fn listed_select(
    request: &Request<'_>,
    catalogue: &Catalogue,
) -> Result<Option<Vec<String>>, GraphError> {
    let select = request
        .query
        .selected(&|p| catalogue.is_property(p), catalogue.type_name)?;
    if let Some(names) = &select
        && names.iter().any(|n| catalogue.is_single_only(n))
    {
        return Err(GraphError::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "This operation target is not yet supported.",
        ));
    }
    Ok(select)
}

pub(super) fn list_users(request: &Request<'_>) -> Result<Response, GraphError> {
    request.no_expand()?;
    if request.query.skip.is_some() {
        return Err(GraphError::bad_request(
            "Request_BadRequest",
            "'$skip' is not supported by the service.",
        ));
    }
    let pager = Pager::new(request, "users")?;
    let select = listed_select(request, &USERS)?;
    let filter = request.filter(&|p| USERS.is_filterable(p))?;
    let search = request.search(&|p| USERS.is_searchable(p))?;
    let order = order_by(
        request,
        &["displayName", "userPrincipalName"],
        filter.is_some(),
    )?;
    let dir = request.dir;
    let keep = user_predicate(dir, filter.as_ref(), search.as_ref());
    let sorted = match order {
        Some(("displayName", _)) => Some(dir.users_by_display_name()),
        Some((_, _)) => {
            let mut slots: Vec<u32> = (0..dir.users.len())
                .filter_map(|i| live_user(dir, i))
                .collect();
            slots
                .sort_by_cached_key(|s| dir.user(*s).map(|u| u.user_principal_name.to_lowercase()));
            Some(std::sync::Arc::new(slots))
        }
        None => None,
    };
    let descending = order.is_some_and(|(_, d)| d);
    let (len, at): (usize, Box<dyn Fn(usize) -> Option<u32>>) = match &sorted {
        Some(slots) => {
            let slots = std::sync::Arc::clone(slots);
            let len = slots.len();
            (
                len,
                Box::new(move |i| slots.get(if descending { len - 1 - i } else { i }).copied()),
            )
        }
        None => (dir.users.len(), Box::new(|i| live_user(dir, i))),
    };
    pager.page(
        &request.context("users", select.as_deref(), ""),
        len,
        at,
        keep,
        |s| {
            dir.user(s)
                .map(|u| user_fields(dir, s, u, select.as_deref()))
        },
    )
}

pub(super) fn get_user(request: &Request<'_>, user: &UserRef) -> Result<Response, GraphError> {
    request.no_expand()?;
    let slot = request.user_slot(user)?;
    let select = request
        .query
        .selected(&|p| USERS.is_property(p), USERS.type_name)?;
    let dir = request.dir;
    let Some(u) = dir.user(slot) else {
        return Err(GraphError::not_found("user"));
    };
    let map = user_json(dir, slot, u, select.as_deref(), false);
    Ok(single(
        select.as_deref(),
        request.context("users", select.as_deref(), "/$entity"),
        map,
    ))
}

pub(super) fn list_groups(request: &Request<'_>) -> Result<Response, GraphError> {
    request.no_expand()?;
    let pager = Pager::new(request, "groups")?;
    let select = listed_select(request, &GROUPS)?;
    let filter = request.filter(&|p| GROUPS.is_filterable(p))?;
    let search = request.search(&|p| GROUPS.is_searchable(p))?;
    let order = order_by(request, &["displayName"], filter.is_some())?;
    let dir = request.dir;
    let keep = group_predicate(dir, filter.as_ref(), search.as_ref());
    let mut slots: Vec<u32> = (0..dir.groups.len())
        .filter_map(|i| live_group(dir, i))
        .collect();
    if let Some((_, descending)) = order {
        slots.sort_by_cached_key(|s| dir.group(*s).map(|g| g.display_name.to_lowercase()));
        if descending {
            slots.reverse();
        }
    }
    pager.page(
        &request.context("groups", select.as_deref(), ""),
        slots.len(),
        |i| slots.get(i).copied(),
        keep,
        |s| {
            dir.group(s)
                .map(|g| group_json(dir, s, g, select.as_deref(), false))
        },
    )
}

pub(super) fn get_group(request: &Request<'_>, id: &str) -> Result<Response, GraphError> {
    request.no_expand()?;
    let slot = request.group_slot(id)?;
    let select = request
        .query
        .selected(&|p| GROUPS.is_property(p), GROUPS.type_name)?;
    let dir = request.dir;
    let Some(group) = dir.group(slot) else {
        return Err(GraphError::not_found(id));
    };
    let mut names = select.clone();
    // Exchange-backed properties come back with the id (group-get-select.json).
    if let Some(list) = &mut names
        && list.iter().any(|n| GROUPS.is_single_only(n))
        && !list.iter().any(|n| n.eq_ignore_ascii_case("id"))
    {
        list.insert(0, "id".into());
    }
    let map = group_json(dir, slot, group, names.as_deref(), false);
    Ok(single(
        select.as_deref(),
        request.context("groups", select.as_deref(), "/$entity"),
        map,
    ))
}
