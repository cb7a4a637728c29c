//! The sync engine: import a tenant's users, groups and memberships into any
//! [`DirectorySink`], then keep it in sync by delta.
//!
//! [`run`] is one sync. The sink is the extension point: a service implements it over its
//! own database (the changes become visible together with their links, in one commit),
//! and the engine hands it typed [`Change`]s page by page, so memory stays bounded by the
//! pages in flight, not by the number of users or memberships (the engine keeps only the
//! group ids to expand, and in a delta round the large groups whose `members@delta` it is
//! still merging). [`MemorySink`] keeps a tenant in memory, for tests
//! and small tenants.
//!
//! ```rust,no_run
//! use graph_client::sync::{self, MemorySink, NoProgress, SyncOptions};
//! # async fn example(client: graph_client::GraphClient) -> Result<(), sync::SyncError> {
//! let mut sink = MemorySink::new();
//! let options = SyncOptions::new().user_select(&["displayName", "mail", "jobTitle"]);
//! // The first run is a full import; later runs are delta rounds from the sink's links.
//! let report = sync::run(&client, &mut sink, &options, &NoProgress).await?;
//! println!("{}: {} users", report.kind, report.summary.users.total);
//! # Ok(())
//! # }
//! ```

/// The `async-trait` macro, to implement [`DirectorySink`] without adding the crate.
pub use async_trait::async_trait;

mod engine;
mod memory;
mod sink;

pub use engine::{
    DEFAULT_GROUP_SELECT, DEFAULT_SYNC_PARTITIONS, DEFAULT_USER_SELECT, NoProgress, Phase,
    SyncError, SyncOptions, SyncProgress, SyncReport, SyncStep, run,
};
pub use memory::{Directory, MemorySink};
pub use sink::{
    Change, DirectorySink, LinksDecodeError, MemberType, ObjectCounts, SinkError, SinkErrorKind,
    SyncKind, SyncLinks, SyncSummary,
};
