//! Graph v1.0 directory endpoints: users, groups, members, memberOf, manager, photos, in
//! Graph's response shapes ([spec 8], [spec 11], [spec 13]).
//!
//! Handlers are plain functions over one tenant's in-memory directory; `server.rs` wraps
//! them with request ids, bearer checks, throttling and faults, and `$batch` calls them
//! too. Delta (`delta.rs`) builds on the same catalogue, request and paging.

mod dates;
mod directory_roles;
mod endpoint;
mod error;
mod handle;
pub(crate) mod list;
mod members;
pub(crate) mod paging;
mod photo;
mod properties;
pub(crate) mod query;
mod request;
mod response;

pub(crate) use self::dates::now_unix;
pub(crate) use self::endpoint::Endpoint;
pub(crate) use self::error::{GraphError, RequestIds};
pub(crate) use self::handle::handle;
pub(crate) use self::paging::write_page;
pub(crate) use self::properties::{GROUPS, USER_PROPERTIES, USERS, group_json, user_property};
pub(crate) use self::query::Query;
pub(crate) use self::request::Request;
pub(crate) use self::response::json_response;
