//! The directory mirror: a connection's users, groups and memberships in SQL tables
//! beside the connection store (same `SQLite` file or `PostgreSQL` database), kept by the
//! sync engine through [`MirrorSink`], a [`DirectorySink`](graph_client::sync::DirectorySink)
//! per connection, and read by the web app and [`export`].
//!
//! - [`Mirror`]: the tables (own migrations, `mirror_*`, run on open), on the store's
//!   pool ([`Mirror::open`]) or a pool of its own ([`Mirror::connect`], for reading).
//! - [`MirrorSink`]: writes the changes a few thousand at a time in short transactions
//!   (a full import straight into a snapshot of its own) and commits them
//!   and the links (sealed by the store's key ring) in one; optionally fenced by the
//!   connection's sync lease ([`MirrorSink::with_fence`]). Same content and counts as
//!   [`MemorySink`](graph_client::sync::MemorySink).
//! - Reads: [`Mirror::users_page`], [`Mirror::find_users`] with a [`UserQuery`] (bounded
//!   search, group scope, disabled and guest filters), [`Mirror::transitive_members`],
//!   groups, members, [`Mirror::state`].
//! - [`export`]: JSON Lines or CSV files, read in pages, written atomically and privately.
//!
//! ```no_run
//! # async fn example(
//! #     store: connection_store_sql::SqlStore,
//! #     graph: graph_client::GraphClient,
//! #     connection: connection_store::ConnectionId,
//! #     holder: connection_store::LeaseHolder,
//! # ) -> anyhow::Result<()> {
//! use graph_client::sync::{self, NoProgress, SyncOptions};
//! use m365_link_app::mirror::Mirror;
//!
//! let mirror = Mirror::open(&store).await?;
//! let mut sink = mirror.sink(&store, connection).with_fence(holder);
//! let report = sync::run(&graph, &mut sink, &SyncOptions::new(), &NoProgress).await?;
//! println!("{}: {} users", report.kind, report.summary.users.total);
//! let first = mirror.users_page(connection, Some("ada"), 0, 50).await?;
//! # let _ = first;
//! # Ok(())
//! # }
//! ```

mod db;
mod error;
mod export;
mod open;
mod read;
mod rows;
mod sink;

pub use error::{MirrorError, ObjectKind};
pub use export::{
    DEFAULT_USER_COLUMNS, ExportFormat, ExportOptions, ExportReport, GROUP_COLUMNS, export,
    neutralize_cell,
};
pub use open::Mirror;
pub use read::{MAX_PAGE, MAX_SCOPE_GROUPS, Member, MirrorState, UserQuery};
pub use rows::{MAX_SEARCH_TERMS, MAX_TERM_CHARS};
pub use sink::{FLUSH_BYTES, FLUSH_CHANGES, MirrorSink};

#[cfg(test)]
mod tests {
    use super::*;

    fn is_send<T: Send>(_: &T) {}

    /// The web app and the worker run these on spawned tasks.
    #[allow(dead_code, reason = "compiled, not run: the futures must be Send")]
    fn futures_are_send(
        store: &connection_store_sql::SqlStore,
        mirror: &Mirror,
        id: connection_store::ConnectionId,
    ) {
        is_send(&Mirror::open(store));
        is_send(&Mirror::connect("x"));
        is_send(&mirror.users_page(id, None, 0, 1));
        is_send(&mirror.find_users(id, &UserQuery::new(), 0, 1));
        is_send(&mirror.count_users(id, &UserQuery::new()));
        is_send(&mirror.user(id, &graph_client::ObjectId::new("x")));
        is_send(&mirror.groups_page(id, 0, 1));
        is_send(&mirror.members(id, &graph_client::ObjectId::new("x")));
        is_send(&mirror.transitive_members(id, &[]));
        is_send(&mirror.state(id));
        is_send(&export(
            mirror,
            id,
            &ExportOptions::new(ExportFormat::Csv),
            std::path::Path::new("x"),
        ));
    }
}
