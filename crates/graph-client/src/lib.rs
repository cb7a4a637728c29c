#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod api;
mod batch;
mod challenge;
mod client;
mod delta;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod members;
mod models;
mod paging;
mod partition;
mod request;
mod retry;
mod token;

pub mod sync;

pub use api::groups::GroupsApi;
pub use api::users::{ManagerRequest, Photo, PhotoRequest, PhotoSize, ProfilePhoto, UsersApi};
pub use batch::{BatchItem, MAX_BATCH_SIZE};
pub use challenge::{ClaimsChallenge, MAX_CLAIMS_BYTES};
pub use client::{
    DEFAULT_MAX_PAGES, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_REQUEST_TIMEOUT, DEFAULT_USER_AGENT,
    GraphClient, GraphClientBuilder, GraphCloud,
};
pub use delta::{DeltaChange, DeltaObject, DeltaRequest, DeltaRound};
pub use error::{DecodeErrorKind, ErrorAction, GraphError, ResyncLocation, ServiceError};
pub use members::{DEFAULT_MEMBER_CONCURRENCY, GroupMembers, MemberPages, MembersOfMany};
pub use models::directory_object::{DirectoryEntry, DirectoryObject};
pub use models::group::{Group, GroupProperty, MemberChange};
pub use models::user::{OnPremisesExtensionAttributes, User, UserProperty};
pub use models::{ObjectId, RemovedReason};
pub use paging::{DeltaLink, Items, NextLink, Page, Pages};
pub use partition::{DEFAULT_MAX_PARTITIONS, PartitionedList};
pub use request::{GetRequest, ListRequest, odata_string, search_clause};
pub use retry::{DEFAULT_MIN_BACKOFF, RetryPolicy};
pub use token::{StaticToken, TokenError, TokenProvider};

/// The `http` crate, whose `HeaderMap` [`ClaimsChallenge::from_headers`] reads.
pub use http;
/// The `secrecy` crate, whose `SecretString` the [`TokenProvider`] trait uses.
pub use secrecy;
