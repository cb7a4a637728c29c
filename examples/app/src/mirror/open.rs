//! [`Mirror`]: the mirror tables in the connection store's database.

use connection_store::ConnectionId;
use connection_store_sql::SqlStore;

use super::db::{self, Pool};
use super::error::MirrorError;
use super::sink::MirrorSink;

/// The directory mirror in the connection store's database (`SQLite` file or
/// `PostgreSQL`): the `mirror_*` tables, migrated on open; a [`MirrorSink`] per
/// connection for syncs; typed reads; and [`export`](super::export). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Mirror {
    pub(crate) pool: Pool,
}

impl Mirror {
    /// The mirror beside `store`, on the store's own pool (same file or database and
    /// schema); runs the mirror's migrations.
    ///
    /// # Errors
    /// [`MirrorError::Database`] when the migrations fail; [`MirrorError::SchemaTooNew`].
    pub async fn open(store: &SqlStore) -> Result<Self, MirrorError> {
        let pool = Pool::from_store(store.pool())?;
        db::migrate(&pool).await?;
        Ok(Self { pool })
    }

    /// The mirror in the connection store at `location` (a `SQLite` path, or a
    /// `postgres://` URL), on a pool of its own: for reading and export, which need no
    /// key. Runs the mirror's migrations.
    ///
    /// # Errors
    /// [`MirrorError::Invalid`] for a missing file or a bad URL; [`MirrorError::Database`];
    /// [`MirrorError::SchemaTooNew`].
    pub async fn connect(location: &str) -> Result<Self, MirrorError> {
        let pool = Pool::connect(location).await?;
        db::migrate(&pool).await?;
        Ok(Self { pool })
    }

    /// The sink that syncs `connection` into this mirror. `store` is the connection store
    /// in the same database: its key ring seals the links, and its sync lease fences the
    /// commits once [`MirrorSink::with_fence`] names the holder.
    pub fn sink(&self, store: &SqlStore, connection: ConnectionId) -> MirrorSink {
        MirrorSink::new(self.pool.clone(), store.clone(), connection)
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Closes the pool (the connection store's too, when it is the store's).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
