//! Dispatch: one parsed endpoint to its handler.

use axum::response::Response;

use crate::data::Member;

use super::directory_roles::list_roles;
use super::endpoint::{Cast, Endpoint};
use super::error::GraphError;
use super::list::{
    count_users, get_group, get_user, group_predicate, list_groups, list_users, live_group,
};
use super::members::list_members;
use super::paging::count_matching;
use super::photo::{photo_metadata, photo_value};
use super::properties::{GROUPS, USERS, user_json};
use super::request::Request;
use super::response::single;

/// Answers one Graph request (everything except `$batch` and delta).
#[expect(clippy::too_many_lines, reason = "one dispatch table")]
pub(crate) fn handle(endpoint: &Endpoint, request: &Request<'_>) -> Result<Response, GraphError> {
    match endpoint {
        Endpoint::Users => list_users(request),
        Endpoint::UsersCount => {
            let (filter, search) = (
                request.filter(&|p| USERS.is_filterable(p))?,
                request.search(&|p| USERS.is_searchable(p))?,
            );
            request.count_only(count_users(request.dir, filter.as_ref(), search.as_ref()))
        }
        Endpoint::User(user) => get_user(request, user),
        Endpoint::UserMemberOf {
            user,
            transitive,
            count,
            cast,
        } => {
            let slot = request.user_slot(user)?;
            if *cast == Some(Cast::DirectoryRole) {
                return list_roles(request, request.dir.roles_of(slot), *count, *transitive);
            }
            let groups = if *transitive {
                request.dir.transitive_member_of(Member::User(slot))
            } else {
                request.dir.member_of(Member::User(slot))
            };
            let members: Vec<Member> = groups.into_iter().map(Member::Group).collect();
            list_members(request, &members, *count, *cast, *transitive, "memberOf")
        }
        Endpoint::Manager(user) => {
            request.no_expand()?;
            let slot = request.user_slot(user)?;
            let dir = request.dir;
            let manager = dir
                .user(slot)
                .and_then(|u| u.manager)
                .and_then(|m| dir.user(m).map(|u| (m, u)))
                .ok_or_else(|| GraphError::not_found("manager"))?;
            let select = request.query.selected(
                &|p| USERS.is_property(p) || GROUPS.is_property(p),
                "directoryObject",
            )?;
            let map = user_json(dir, manager.0, manager.1, select.as_deref(), true);
            Ok(single(
                select.as_deref(),
                format!("{}/$metadata#directoryObjects/$entity", request.graph_base),
                map,
            ))
        }
        Endpoint::PhotoMetadata(user) => photo_metadata(request, user),
        Endpoint::PhotoValue { user, size } => photo_value(request, user, size.as_deref()),
        Endpoint::Groups => list_groups(request),
        Endpoint::GroupsCount => {
            let (filter, search) = (
                request.filter(&|p| GROUPS.is_filterable(p))?,
                request.search(&|p| GROUPS.is_searchable(p))?,
            );
            let dir = request.dir;
            let keep = group_predicate(dir, filter.as_ref(), search.as_ref());
            request.count_only(count_matching(
                dir.groups.len(),
                |i| live_group(dir, i),
                keep,
            ))
        }
        Endpoint::Group(id) => get_group(request, id),
        Endpoint::GroupMembers {
            group,
            transitive,
            count,
            cast,
        } => {
            let slot = request.group_slot(group)?;
            let members = if *transitive {
                request.dir.transitive_members(slot)
            } else {
                request
                    .dir
                    .group(slot)
                    .map(|g| g.members.clone())
                    .unwrap_or_default()
            };
            list_members(
                request,
                &members,
                *count,
                *cast,
                *transitive,
                if *transitive {
                    "transitiveMembers"
                } else {
                    "members"
                },
            )
        }
        Endpoint::GroupMemberOf {
            group,
            transitive,
            count,
            cast,
        } => {
            let slot = request.group_slot(group)?;
            let groups = if *transitive {
                request.dir.transitive_member_of(Member::Group(slot))
            } else {
                request.dir.member_of(Member::Group(slot))
            };
            let members: Vec<Member> = groups.into_iter().map(Member::Group).collect();
            list_members(
                request,
                &members,
                *count,
                *cast,
                *transitive,
                "groupMemberOf",
            )
        }
        Endpoint::UsersDelta | Endpoint::GroupsDelta | Endpoint::Batch => Err(
            GraphError::bad_request("BadRequest", "Unsupported request."),
        ),
    }
}
