//! One code path for both databases: a pool or transaction on `SQLite` or `PostgreSQL`,
//! statements with `$n` placeholders and column types that mean the same in both, and the
//! mirror's own migrations.

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use connection_store_sql::SqlPool;
use connection_store_sql::sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use connection_store_sql::sqlx::sqlite::SqliteRow;
use connection_store_sql::sqlx::{
    self, Connection as _, FromRow, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool,
};

use super::error::MirrorError;

/// A value bound to a `$n` placeholder.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptBool(Option<bool>),
    Bytes(Vec<u8>),
}

impl From<&str> for Arg {
    fn from(value: &str) -> Self {
        Self::Text(value.to_owned())
    }
}

impl From<String> for Arg {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}

impl From<Option<String>> for Arg {
    fn from(value: Option<String>) -> Self {
        Self::OptText(value)
    }
}

impl From<i64> for Arg {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl From<Option<bool>> for Arg {
    fn from(value: Option<bool>) -> Self {
        Self::OptBool(value)
    }
}

impl From<Vec<u8>> for Arg {
    fn from(value: Vec<u8>) -> Self {
        Self::Bytes(value)
    }
}

/// Binds `$args` in order to the query `$query`.
macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            let arg: &Arg = std::borrow::Borrow::borrow(arg);
            query = match arg {
                Arg::Text(value) => query.bind(value.as_str()),
                Arg::OptText(value) => query.bind(value.as_deref()),
                Arg::Int(value) => query.bind(*value),
                Arg::OptBool(value) => query.bind(*value),
                Arg::Bytes(value) => query.bind(value.as_slice()),
            };
        }
        query
    }};
}

/// A row type both databases decode (tuples of `String`, `i64`, `Option<_>`, `Vec<u8>`).
pub(crate) trait Row:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

impl<T> Row for T where T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{}

/// The mirror's pool: the connection store's own, or one opened on the same database.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// An open transaction; dropped without [`commit`](Tx::commit), it rolls back.
pub(crate) enum Tx<'c> {
    Sqlite(sqlx::Transaction<'c, Sqlite>),
    Postgres(sqlx::Transaction<'c, Postgres>),
}

/// The connection one sink writes through, from [`Pool::writer`]: on `SQLite` a
/// connection of its own, kept while the sink syncs. `SQLite` keeps a page cache per
/// connection and empties it whenever another connection has written, so writes spread
/// over a pool's connections read every page they touch again: a full import of 100,000
/// users took 7.8 s that way and 5.9 s on one connection (`examples/bench.rs --only
/// mirror`, before its writes took positional parameters). On `PostgreSQL`, the pool.
pub(crate) enum Writer {
    Sqlite(Box<SqliteConnection>),
    Postgres(PgPool),
}

impl Writer {
    /// A write transaction on this writer (`BEGIN IMMEDIATE` on `SQLite`).
    pub(crate) async fn write(&mut self) -> Result<Tx<'_>, sqlx::Error> {
        Ok(match self {
            Self::Sqlite(connection) => Tx::Sqlite(connection.begin_with("BEGIN IMMEDIATE").await?),
            Self::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }
}

impl Pool {
    pub(crate) fn from_store(pool: SqlPool) -> Result<Self, MirrorError> {
        match pool {
            SqlPool::Sqlite(pool) => Ok(Self::Sqlite(pool)),
            SqlPool::Postgres(pool) => Ok(Self::Postgres(pool)),
            _ => Err(MirrorError::invalid(
                "the store's database is neither SQLite nor PostgreSQL",
            )),
        }
    }

    /// A pool of its own on the `SQLite` file at `location` or the `PostgreSQL` URL
    /// `location` (the connection store's database; the file must exist).
    pub(crate) async fn connect(location: &str) -> Result<Self, MirrorError> {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(location)
                .map_err(|_| MirrorError::invalid("the PostgreSQL URL does not parse"))?;
            let pool = PgPoolOptions::new()
                .max_connections(4)
                .connect_with(options)
                .await
                .map_err(MirrorError::database("connect"))?;
            return Ok(Self::Postgres(pool));
        }
        let path = Path::new(location);
        if !path.exists() {
            return Err(MirrorError::invalid(format!(
                "there is no store at {}",
                path.display()
            )));
        }
        // The connection store's own settings and release check.
        let options = connection_store_sql::sqlite_connect_options(path, Duration::from_secs(10));
        let pool = connection_store_sql::sqlite_pool_options(4)
            .connect_with(options)
            .await
            .map_err(MirrorError::database("connect"))?;
        Ok(Self::Sqlite(pool))
    }

    /// A [`Writer`]: on `SQLite` a new connection with the pool's settings.
    pub(crate) async fn writer(&self) -> Result<Writer, sqlx::Error> {
        match self {
            Self::Sqlite(pool) => {
                let connection = SqliteConnection::connect_with(&pool.connect_options()).await?;
                Ok(Writer::Sqlite(Box::new(connection)))
            }
            Self::Postgres(pool) => Ok(Writer::Postgres(pool.clone())),
        }
    }

    /// A write transaction: `BEGIN IMMEDIATE` on `SQLite`, so it holds the write lock from
    /// the start (a read first and a write later could fail on a busy snapshot).
    pub(crate) async fn write(&self) -> Result<Tx<'static>, sqlx::Error> {
        Ok(match self {
            Self::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Self::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// A read transaction that sees one commit throughout (`SQLite` WAL snapshots;
    /// `PostgreSQL` repeatable read).
    pub(crate) async fn read(&self) -> Result<Tx<'static>, sqlx::Error> {
        Ok(match self {
            Self::Sqlite(pool) => Tx::Sqlite(pool.begin().await?),
            Self::Postgres(pool) => Tx::Postgres(
                pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?,
            ),
        })
    }

    pub(crate) async fn fetch_all<T: Row>(
        &self,
        sql: &str,
        args: &[Arg],
    ) -> Result<Vec<T>, sqlx::Error> {
        match self {
            Self::Sqlite(pool) => {
                bind_all!(sqlx::query_as::<_, T>(sql), args)
                    .fetch_all(pool)
                    .await
            }
            Self::Postgres(pool) => {
                bind_all!(sqlx::query_as::<_, T>(sql), args)
                    .fetch_all(pool)
                    .await
            }
        }
    }

    pub(crate) async fn fetch_optional<T: Row>(
        &self,
        sql: &str,
        args: &[Arg],
    ) -> Result<Option<T>, sqlx::Error> {
        match self {
            Self::Sqlite(pool) => {
                bind_all!(sqlx::query_as::<_, T>(sql), args)
                    .fetch_optional(pool)
                    .await
            }
            Self::Postgres(pool) => {
                bind_all!(sqlx::query_as::<_, T>(sql), args)
                    .fetch_optional(pool)
                    .await
            }
        }
    }

    pub(crate) async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

impl Tx<'_> {
    /// Runs a statement; answers the rows it changed.
    pub(crate) async fn execute(&mut self, sql: &str, args: &[Arg]) -> Result<u64, sqlx::Error> {
        let args: Vec<&Arg> = args.iter().collect();
        self.execute_borrowed(sql, &args, true).await
    }

    /// [`execute`](Tx::execute) with borrowed arguments (a bulk write binds its rows'
    /// values without copying them); with `keep` false the statement is not kept prepared
    /// in the connection's statement cache (a bulk write's last, shorter statement differs
    /// from write to write, and kept, each would hold its large compiled program until
    /// the cache evicts it).
    pub(crate) async fn execute_borrowed(
        &mut self,
        sql: &str,
        args: &[&Arg],
        keep: bool,
    ) -> Result<u64, sqlx::Error> {
        match self {
            Self::Sqlite(tx) => bind_all!(sqlx::query(sql).persistent(keep), args)
                .execute(&mut **tx)
                .await
                .map(|done| done.rows_affected()),
            Self::Postgres(tx) => bind_all!(sqlx::query(sql).persistent(keep), args)
                .execute(&mut **tx)
                .await
                .map(|done| done.rows_affected()),
        }
    }

    /// Runs a script of statements without parameters (migrations), one at a time.
    pub(crate) async fn execute_script(&mut self, script: &str) -> Result<(), sqlx::Error> {
        for statement in statements(script) {
            self.execute(&statement, &[]).await?;
        }
        Ok(())
    }

    pub(crate) async fn fetch_all<T: Row>(
        &mut self,
        sql: &str,
        args: &[Arg],
    ) -> Result<Vec<T>, sqlx::Error> {
        match self {
            Self::Sqlite(tx) => {
                bind_all!(sqlx::query_as::<_, T>(sql), args)
                    .fetch_all(&mut **tx)
                    .await
            }
            Self::Postgres(tx) => {
                bind_all!(sqlx::query_as::<_, T>(sql), args)
                    .fetch_all(&mut **tx)
                    .await
            }
        }
    }

    pub(crate) async fn fetch_optional<T: Row>(
        &mut self,
        sql: &str,
        args: &[Arg],
    ) -> Result<Option<T>, sqlx::Error> {
        match self {
            Self::Sqlite(tx) => {
                bind_all!(sqlx::query_as::<_, T>(sql), args)
                    .fetch_optional(&mut **tx)
                    .await
            }
            Self::Postgres(tx) => {
                bind_all!(sqlx::query_as::<_, T>(sql), args)
                    .fetch_optional(&mut **tx)
                    .await
            }
        }
    }

    pub(crate) async fn fetch_one<T: Row>(
        &mut self,
        sql: &str,
        args: &[Arg],
    ) -> Result<T, sqlx::Error> {
        match self {
            Self::Sqlite(tx) => {
                bind_all!(sqlx::query_as::<_, T>(sql), args)
                    .fetch_one(&mut **tx)
                    .await
            }
            Self::Postgres(tx) => {
                bind_all!(sqlx::query_as::<_, T>(sql), args)
                    .fetch_one(&mut **tx)
                    .await
            }
        }
    }

    /// The connection under the transaction, for the store's lease check.
    pub(crate) fn connection(&mut self) -> connection_store_sql::SqlConnection<'_> {
        match self {
            Self::Sqlite(tx) => connection_store_sql::SqlConnection::Sqlite(tx),
            Self::Postgres(tx) => connection_store_sql::SqlConnection::Postgres(tx),
        }
    }

    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(tx) => tx.commit().await,
            Self::Postgres(tx) => tx.commit().await,
        }
    }

    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }
}

/// The statements of a migration script: `--` comment lines dropped, split at `;`
/// (the mirror's scripts have no `;` inside a statement).
fn statements(script: &str) -> Vec<String> {
    let code: String = script
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    code.split(';')
        .map(str::trim)
        .filter(|statement| !statement.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `$first, $first+1, ...`: `count` placeholders, comma-separated.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The mirror's migrations: (version, `SQLite` script, `PostgreSQL` script).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        include_str!("../../migrations/mirror/sqlite/0001_mirror.sql"),
        include_str!("../../migrations/mirror/postgres/0001_mirror.sql"),
    ),
    (
        2,
        include_str!("../../migrations/mirror/sqlite/0002_snapshots.sql"),
        include_str!("../../migrations/mirror/postgres/0002_snapshots.sql"),
    ),
];

/// The newest mirror schema this build writes.
pub(crate) const SCHEMA_VERSION: i64 = 2;

/// Any number: it only has to differ from other advisory locks of the same database.
const MIGRATION_LOCK: i64 = 0x6d69_7272_6f72; // "mirror"

/// Runs the mirror's migrations that the database lacks, in one transaction: its own
/// version table (`mirror_schema_version`), since sqlx's `_sqlx_migrations` belongs to the
/// connection store's migrator. Concurrent openers wait for each other (`SQLite`: the
/// write lock; `PostgreSQL`: an advisory lock).
pub(crate) async fn migrate(pool: &Pool) -> Result<(), MirrorError> {
    let failed = MirrorError::database("migrate");
    let mut tx = pool.write().await.map_err(&failed)?;
    if tx.is_postgres() {
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[Arg::Int(MIGRATION_LOCK)],
        )
        .await
        .map_err(&failed)?;
    }
    tx.execute(
        "CREATE TABLE IF NOT EXISTS mirror_schema_version (version BIGINT NOT NULL PRIMARY KEY)",
        &[],
    )
    .await
    .map_err(&failed)?;
    let (current,): (Option<i64>,) = tx
        .fetch_one("SELECT MAX(version) FROM mirror_schema_version", &[])
        .await
        .map_err(&failed)?;
    let current = current.unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(MirrorError::SchemaTooNew {
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    let postgres = tx.is_postgres();
    for (version, sqlite, postgres_script) in MIGRATIONS {
        if *version <= current {
            continue;
        }
        tx.execute_script(if postgres { postgres_script } else { sqlite })
            .await
            .map_err(&failed)?;
        tx.execute(
            "INSERT INTO mirror_schema_version (version) VALUES ($1)",
            &[Arg::Int(*version)],
        )
        .await
        .map_err(&failed)?;
    }
    tx.commit().await.map_err(&failed)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_from_the_first() {
        assert_eq!(placeholders(3, 3), "$3, $4, $5");
        assert_eq!(placeholders(1, 0), "");
    }

    #[test]
    fn scripts_split_into_statements_without_comments() {
        let script = "-- a comment; with a semicolon\nCREATE TABLE a (x TEXT);\n\nCREATE INDEX i ON a (x);\n";
        assert_eq!(
            statements(script),
            ["CREATE TABLE a (x TEXT)", "CREATE INDEX i ON a (x)"]
        );
        for (_, sqlite, postgres) in MIGRATIONS {
            assert!(statements(sqlite).len() > 5);
            assert_eq!(statements(sqlite).len(), statements(postgres).len());
        }
    }

    #[test]
    fn the_migrations_end_at_the_schema_version() {
        assert_eq!(MIGRATIONS.last().map(|m| m.0), Some(SCHEMA_VERSION));
    }
}
