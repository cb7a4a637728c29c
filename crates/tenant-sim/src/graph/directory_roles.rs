//! A user's directory roles as Graph lists them: `memberOf/microsoft.graph.directoryRole`
//! and `transitiveMemberOf/microsoft.graph.directoryRole` ([spec 13]), `directoryRole`
//! objects (`@odata.type`, `id`, `deletedDateTime`, `description`, `displayName`,
//! `roleTemplateId`; Graph `resources/directoryrole.md`), paged like the other
//! directoryObject collections.

use axum::response::Response;
use serde_json::{Map, Value};

use crate::roles::DirectoryRole;

use super::error::GraphError;
use super::paging::{Pager, count_matching};
use super::request::Request;

/// The properties of a `directoryRole`.
const PROPERTIES: [&str; 5] = [
    "id",
    "deletedDateTime",
    "description",
    "displayName",
    "roleTemplateId",
];

fn is_property(name: &str) -> bool {
    PROPERTIES.iter().any(|p| p.eq_ignore_ascii_case(name))
}

fn value(tenant_id: &str, role: DirectoryRole, name: &str) -> Option<Value> {
    let name = PROPERTIES.iter().find(|p| p.eq_ignore_ascii_case(name))?;
    Some(match *name {
        "id" => Value::String(role.object_id(tenant_id)),
        "deletedDateTime" => Value::Null,
        "description" => Value::String(role.description().into()),
        "displayName" => Value::String(role.display_name().into()),
        _ => Value::String(role.template_id().into()),
    })
}

fn role_json(tenant_id: &str, role: DirectoryRole, select: Option<&[String]>) -> Value {
    let mut map = Map::new();
    map.insert(
        "@odata.type".into(),
        Value::String("#microsoft.graph.directoryRole".into()),
    );
    let names: Vec<&str> = match select {
        Some(names) if !names.is_empty() => names.iter().map(String::as_str).collect(),
        _ => PROPERTIES.to_vec(),
    };
    for name in names {
        if let (Some(canonical), Some(v)) = (
            PROPERTIES.iter().find(|p| p.eq_ignore_ascii_case(name)),
            value(tenant_id, role, name),
        ) {
            map.insert((*canonical).to_string(), v);
        }
    }
    Value::Object(map)
}

/// A page of the user's roles. Roles are direct memberships here (role-assignable groups
/// are not simulated), so the transitive list is the direct one. Unlike the user and
/// group casts, the directoryRole cast on `transitiveMemberOf` needs no advanced query
/// parameters: Microsoft's own Azure CLI reads
/// `/servicePrincipals/{id}/transitiveMemberOf/microsoft.graph.directoryRole` without
/// `ConsistencyLevel` (Azure/azure-cli `_directory_role_list`).
pub(super) fn list_roles(
    request: &Request<'_>,
    roles: &[DirectoryRole],
    count_only: bool,
    transitive: bool,
) -> Result<Response, GraphError> {
    request.no_expand()?;
    let tenant_id = request.tenant_id;
    let filter = request.filter(&is_property)?;
    let search = request.search(&|p| {
        p.eq_ignore_ascii_case("displayName") || p.eq_ignore_ascii_case("description")
    })?;
    let keep = |role: &DirectoryRole| {
        let property = |name: &str| value(tenant_id, *role, name);
        filter.as_ref().is_none_or(|f| f.matches(&property))
            && search.as_ref().is_none_or(|s| s.matches(&property))
    };
    let at = |i: usize| roles.get(i).copied();
    if count_only {
        return request.count_only(count_matching(roles.len(), at, keep));
    }
    let tag = if transitive {
        "transitiveMemberOf/directoryRole"
    } else {
        "memberOf/directoryRole"
    };
    let pager = Pager::new(request, tag)?;
    let select = request.query.selected(&is_property, "directoryRole")?;
    pager.page(
        &request.context("directoryRoles", select.as_deref(), ""),
        roles.len(),
        at,
        keep,
        |role| Some(role_json(tenant_id, role, select.as_deref())),
    )
}
