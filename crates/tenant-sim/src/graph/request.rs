//! What a handler knows about its request: the tenant's directory, the query, headers
//! and the bearer's grant.

use axum::http::HeaderMap;
use axum::response::Response;

use crate::auth::BearerGrant;
use crate::data::Directory;

use super::endpoint::UserRef;
use super::error::GraphError;
use super::query::{Filter, Query, Search, parse_filter};
use super::response::text_response;

/// What a handler needs to know about its request.
pub(crate) struct Request<'a> {
    pub dir: &'a Directory,
    /// The id of the tenant the access token belongs to; page tokens are bound to it.
    pub tenant_id: &'a str,
    pub graph_base: &'a str,
    /// The path after `/v1.0`, as sent (for nextLinks).
    pub path: &'a str,
    pub query: Query,
    pub headers: &'a HeaderMap,
    pub grant: &'a BearerGrant,
}

impl Request<'_> {
    /// `ConsistencyLevel: eventual` was sent ([spec 8c]).
    pub(crate) fn eventual(&self) -> bool {
        self.headers
            .get("consistencylevel")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("eventual"))
    }

    pub(super) fn advanced(&self) -> bool {
        self.eventual() && self.query.count_requested()
    }

    pub(super) fn user_slot(&self, user: &UserRef) -> Result<u32, GraphError> {
        let key = match user {
            UserRef::Me => self.grant.user_id.as_str(),
            UserRef::Id(id) => id.as_str(),
        };
        self.dir
            .find_user(key)
            .ok_or_else(|| GraphError::not_found(key))
    }

    pub(super) fn group_slot(&self, id: &str) -> Result<u32, GraphError> {
        self.dir
            .find_group(id)
            .ok_or_else(|| GraphError::not_found(id))
    }

    pub(super) fn context(
        &self,
        entity_set: &str,
        select: Option<&[String]>,
        suffix: &str,
    ) -> String {
        match select {
            Some(names) if !names.is_empty() => format!(
                "{}/$metadata#{entity_set}({}){suffix}",
                self.graph_base,
                names.join(",")
            ),
            _ => format!("{}/$metadata#{entity_set}{suffix}", self.graph_base),
        }
    }

    pub(super) fn no_expand(&self) -> Result<(), GraphError> {
        if self.query.expand.is_some() {
            return Err(GraphError::bad_request(
                "Request_BadRequest",
                "tenant-sim does not simulate $expand.",
            ));
        }
        Ok(())
    }

    pub(super) fn count_only(&self, count: usize) -> Result<Response, GraphError> {
        if !self.eventual() {
            // error-count-without-consistencylevel.json
            return Err(GraphError::bad_request(
                "Request_BadRequest",
                "$count is not currently supported.",
            ));
        }
        Ok(text_response(count.to_string()))
    }

    pub(super) fn search(
        &self,
        searchable: &dyn Fn(&str) -> bool,
    ) -> Result<Option<Search>, GraphError> {
        let Some(search) = &self.query.search else {
            return Ok(None);
        };
        if !self.eventual() {
            // error-search-without-consistencylevel.json
            return Err(GraphError::bad_request(
                "Request_UnsupportedQuery",
                "Request with $search query parameter only works through MSGraph with a special request header: 'ConsistencyLevel: eventual'",
            ));
        }
        Search::parse(search, searchable).map(Some)
    }

    pub(super) fn filter(
        &self,
        filterable: &dyn Fn(&str) -> bool,
    ) -> Result<Option<Filter>, GraphError> {
        let Some(text) = &self.query.filter else {
            return Ok(None);
        };
        let filter = parse_filter(text)?;
        filter.check(filterable)?;
        if filter.is_advanced() && !self.advanced() {
            // error-advanced-filter-without-consistencylevel.json
            return Err(GraphError::bad_request(
                "Request_UnsupportedQuery",
                "Unsupported Query.",
            ));
        }
        Ok(Some(filter))
    }

    /// `@odata.count` on the first page when `$count=true` came with the header; without
    /// the header it is silently ignored ([spec 8c]).
    pub(super) fn wants_count(&self) -> bool {
        self.advanced() && self.query.skiptoken.is_none()
    }
}
