//! directoryObject collections: members, transitiveMembers, memberOf ([spec 13]).

use axum::response::Response;

use crate::data::Member;

use super::endpoint::Cast;
use super::error::GraphError;
use super::paging::{Pager, count_matching};
use super::properties::{GROUPS, USERS, group_json, member_value, object_json, user_json};
use super::request::Request;

/// A page of a directoryObject collection (members, transitiveMembers, memberOf), or
/// with an `OData` cast only its users or groups, without `@odata.type`.
pub(super) fn list_members(
    request: &Request<'_>,
    members: &[Member],
    count_only: bool,
    cast: Option<Cast>,
    transitive: bool,
    tag: &str,
) -> Result<Response, GraphError> {
    request.no_expand()?;
    // A cast on a transitive list is an advanced query ([spec 8c]).
    if cast.is_some()
        && transitive
        && !(request.eventual() && (count_only || request.query.count_requested()))
    {
        return Err(GraphError::bad_request(
            "Request_UnsupportedQuery",
            "Unsupported Query.",
        ));
    }
    let (type_name, entity_set) = match cast {
        None => ("directoryObject", "directoryObjects"),
        Some(Cast::User) => ("user", "users"),
        Some(Cast::Group) => ("group", "groups"),
        // Answered by `directory_roles::list_roles`; no user or group is a role.
        Some(Cast::DirectoryRole) => ("directoryRole", "directoryRoles"),
    };
    let known = |p: &str| match cast {
        None => USERS.is_property(p) || GROUPS.is_property(p),
        Some(Cast::User) => USERS.is_property(p),
        Some(Cast::Group) => GROUPS.is_property(p),
        Some(Cast::DirectoryRole) => false,
    };
    let filter = request.filter(&|p| USERS.is_filterable(p) || GROUPS.is_filterable(p))?;
    let search = request.search(&|p| USERS.is_searchable(p) || GROUPS.is_searchable(p))?;
    let dir = request.dir;
    let keep = |m: &Member| {
        let property = |name: &str| member_value(dir, *m, name);
        cast.is_none_or(|c| c.admits(*m))
            && filter.as_ref().is_none_or(|f| f.matches(&property))
            && search.as_ref().is_none_or(|s| s.matches(&property))
    };
    let at = |i: usize| members.get(i).copied();
    if count_only {
        return request.count_only(count_matching(members.len(), at, keep));
    }
    let pager = Pager::new(request, tag)?;
    let select = request.query.selected(&known, type_name)?;
    pager.page(
        &request.context(entity_set, select.as_deref(), ""),
        members.len(),
        at,
        keep,
        |m| match (cast, m) {
            (None, m) => object_json(dir, m, select.as_deref()),
            (Some(_), Member::User(s)) => dir
                .user(s)
                .map(|u| user_json(dir, s, u, select.as_deref(), false)),
            (Some(_), Member::Group(s)) => dir
                .group(s)
                .map(|g| group_json(dir, s, g, select.as_deref(), false)),
        },
    )
}
