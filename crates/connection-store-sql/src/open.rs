//! Opening a [`SqlStore`]: the `SQLite` file or the `PostgreSQL` pool, and migrations.

use std::fmt;
use std::fs::OpenOptions;
use std::net::IpAddr;
#[cfg(unix)]
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use connection_store::{Clock, SystemClock};
use secrecy::{ExposeSecret, SecretString};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

use crate::crypto::KeyRing;
use crate::error::SqlStoreError;
use crate::store::{Pool, SqlStore};

/// The newest schema version this build writes (the `schema_version` table).
pub const SCHEMA_VERSION: i64 = 3;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

enum Target {
    Sqlite(PathBuf),
    Postgres(SecretString),
}

/// Options for opening a [`SqlStore`]; from [`SqlStore::sqlite`] or [`SqlStore::postgres`].
pub struct SqlStoreBuilder {
    target: Target,
    keys: Option<KeyRing>,
    clock: Arc<dyn Clock>,
    max_connections: u32,
    busy_timeout: Duration,
    schema: Option<String>,
}

impl fmt::Debug for SqlStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match &self.target {
            Target::Sqlite(path) => format!("sqlite:{}", path.display()),
            // The URL may hold a password.
            Target::Postgres(_) => "postgres:[REDACTED]".to_owned(),
        };
        f.debug_struct("SqlStoreBuilder")
            .field("target", &target)
            .field("keys", &self.keys)
            .field("clock", &self.clock)
            .field("max_connections", &self.max_connections)
            .field("busy_timeout", &self.busy_timeout)
            .field("schema", &self.schema)
            .finish()
    }
}

impl SqlStore {
    /// A store in the `SQLite` file at `path`, created (mode 0600) if missing.
    pub fn sqlite(path: impl AsRef<Path>) -> SqlStoreBuilder {
        SqlStoreBuilder::new(Target::Sqlite(path.as_ref().to_owned()))
    }

    /// A store in the `PostgreSQL` database at `url`
    /// (`postgres://user:password@host:5432/database`).
    ///
    /// TLS: a server that is not on this machine (any host but `localhost`, an address in
    /// `127.0.0.0/8` or `::1`, or a Unix socket directory) is reached with at least
    /// `sslmode=require`, never sqlx's default `prefer`, which falls back to plain text
    /// without a word. `require` encrypts but does not authenticate the server: name
    /// `sslmode=verify-full` in the URL (with `sslrootcert=` for a private CA; without it
    /// the Mozilla roots built into sqlx are trusted) to check its certificate and host
    /// name. An `sslmode` (or `ssl-mode`) the URL names is used as written, `disable`
    /// included; `PGSSLMODE` from the environment may raise the floor, not lower it.
    pub fn postgres(url: impl Into<String>) -> SqlStoreBuilder {
        SqlStoreBuilder::new(Target::Postgres(SecretString::from(url.into())))
    }
}

impl SqlStoreBuilder {
    fn new(target: Target) -> Self {
        Self {
            target,
            keys: None,
            clock: Arc::new(SystemClock),
            max_connections: 8,
            busy_timeout: Duration::from_secs(10),
            schema: None,
        }
    }

    /// The keys that encrypt tokens and cursors (required).
    #[must_use]
    pub fn key_ring(mut self, keys: KeyRing) -> Self {
        self.keys = Some(keys);
        self
    }

    /// The clock for timestamps and lease expiry (default: the system clock). Replicas
    /// sharing a database compare lease expiry on their own clocks, so keep them in sync
    /// (NTP) and lease time-to-lives well above the skew.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Most pooled connections (default 8).
    #[must_use]
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// `SQLite`: how long a write waits for another connection's or process's lock
    /// before failing (default 10 s).
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// `PostgreSQL`: keep the tables in this schema (created if missing) instead of the
    /// user's default; 1–63 characters of `a-z`, `0-9`, `_`, starting with a letter.
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// Opens the database and runs the embedded migrations.
    ///
    /// # Errors
    /// [`SqlStoreError::InvalidConfig`] without a key ring or with a bad URL or schema;
    /// [`SqlStoreError::File`], [`SqlStoreError::Connect`], [`SqlStoreError::Migrate`],
    /// [`SqlStoreError::SchemaTooNew`].
    pub async fn open(self) -> Result<SqlStore, SqlStoreError> {
        let keys = self.keys.ok_or_else(|| SqlStoreError::InvalidConfig {
            message: "a key ring is required".to_owned(),
        })?;
        if self.max_connections == 0 {
            return Err(SqlStoreError::InvalidConfig {
                message: "max_connections is at least 1".to_owned(),
            });
        }
        let pool = match self.target {
            Target::Sqlite(path) => {
                if self.schema.is_some() {
                    return Err(SqlStoreError::InvalidConfig {
                        message: "a schema applies to PostgreSQL only".to_owned(),
                    });
                }
                open_sqlite(&path, self.max_connections, self.busy_timeout).await?
            }
            Target::Postgres(url) => {
                open_postgres(&url, self.schema.as_deref(), self.max_connections).await?
            }
        };
        Ok(SqlStore::from_parts(pool, Arc::new(keys), self.clock))
    }
}

fn connect_error(source: sqlx::Error) -> SqlStoreError {
    SqlStoreError::Connect {
        source: Box::new(source),
    }
}

fn migrate_error(source: impl std::error::Error + Send + Sync + 'static) -> SqlStoreError {
    SqlStoreError::Migrate {
        source: Box::new(source),
    }
}

fn check_version(found: Option<i64>) -> Result<(), SqlStoreError> {
    match found {
        Some(found) if found > SCHEMA_VERSION => Err(SqlStoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        }),
        _ => Ok(()),
    }
}

/// Keeps a connection that comes back to the pool only if it is outside any transaction.
///
/// sqlx's `SQLite` transaction start is not cancellation-safe (launchbadge/sqlx#3932): a
/// future dropped after its `BEGIN` ran but before the `Transaction` existed returns the
/// connection still inside that transaction, and with `BEGIN IMMEDIATE` (the mirror's
/// writes) it holds the database's write lock for good; every later write through it
/// fails or is never committed. A `ROLLBACK` that succeeds here means exactly that
/// happened: the connection is rolled back and closed instead of reused. On a connection
/// outside a transaction (every normal release; a dropped `Transaction` queues its own
/// rollback, which runs first) it fails harmlessly and the connection is kept.
async fn release_outside_transaction(
    conn: &mut sqlx::SqliteConnection,
) -> Result<bool, sqlx::Error> {
    match sqlx::query("ROLLBACK").execute(&mut *conn).await {
        Ok(_) => {
            tracing::warn!(
                "a pooled SQLite connection came back inside a transaction (a cancelled begin); rolled back and closed"
            );
            Ok(false)
        }
        Err(_) => Ok(true),
    }
}

/// The store's connection settings for its `SQLite` file at `path`, for a pool of your own
/// on the same database (a table of yours beside the store's, in its transactions): WAL,
/// `synchronous = FULL`, the busy timeout, foreign keys, the statement journal in memory.
/// The file must exist; open the store first to create and migrate it.
#[must_use]
pub fn sqlite_connect_options(path: &Path, busy_timeout: Duration) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        // WAL: readers never block the writer, and several processes may share the file.
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: a committed rotated refresh token survives power loss too, not only a
        // crashed process; the old one may already be revoked.
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(busy_timeout)
        .foreign_keys(true)
        // The statement journal (the pages a multi-row statement changes, kept until it
        // completes) in memory, not a temporary file: a bulk upsert wrote every page it
        // touched to that file too (a third of a 100,000-user import's time).
        .pragma("temp_store", "memory")
}

/// The store's pool options for `SQLite`, for a pool of your own on its database: at most
/// `max_connections`, and a connection that comes back to the pool inside a transaction
/// (a cancelled begin, launchbadge/sqlx#3932) is rolled back and closed instead of reused.
#[must_use]
pub fn sqlite_pool_options(max_connections: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(max_connections)
        .after_release(|conn, _| Box::pin(release_outside_transaction(conn)))
}

async fn open_sqlite(
    path: &Path,
    max_connections: u32,
    busy_timeout: Duration,
) -> Result<Pool, SqlStoreError> {
    create_owner_only(path).map_err(|source| SqlStoreError::File {
        path: path.to_owned(),
        source,
    })?;

    let options = sqlite_connect_options(path, busy_timeout);
    // Switching a brand-new file to WAL needs an exclusive lock, and SQLite may answer
    // SQLITE_BUSY for it at once, without waiting through the busy timeout, while another
    // process opens the same new file. Such a failure is retried a few times; any other
    // error, or a file that stays busy, is returned.
    let mut attempt: u32 = 0;
    let pool = loop {
        match sqlite_pool_options(max_connections)
            .connect_with(options.clone())
            .await
        {
            Ok(pool) => break pool,
            Err(err) if attempt < 10 && is_sqlite_busy(&err) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
            }
            Err(err) => return Err(connect_error(err)),
        }
    };
    let found: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(&pool)
        .await
        .ok()
        .flatten();
    check_version(found)?;
    // SQLite has no migration lock: processes opening a new file at once may both try
    // migration 1, and the loser fails on "table already exists". Each migration is one
    // transaction, so the loser retries and finds it applied.
    let mut attempt = 0;
    loop {
        match SQLITE_MIGRATIONS.run(&pool).await {
            Ok(()) => break,
            Err(_) if attempt < 5 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
            }
            Err(err) => return Err(migrate_error(err)),
        }
    }
    Ok(Pool::Sqlite(pool))
}

/// Creates the database file if missing, readable and writable by its owner only (Unix
/// mode 0600; `SQLite` would use the umask), and warns when an existing file is readable by
/// others. `SQLite` gives its `-wal` and `-shm` files the database file's permissions.
#[cfg(unix)]
fn create_owner_only(path: &Path) -> std::io::Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format_args!("{:o}", mode & 0o777),
            "the connection store file is readable by other users"
        );
    }
    Ok(())
}

/// Creates the database file if missing. Without Unix modes the file inherits its
/// directory's permissions (on Windows its ACL): keep the store in a directory only the
/// service's account can read.
#[cfg(not(unix))]
fn create_owner_only(path: &Path) -> std::io::Result<()> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map(drop)
}

/// `SQLITE_BUSY` (5) or `SQLITE_LOCKED` (6), with or without an extended code.
fn is_sqlite_busy(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6)),
        _ => false,
    }
}

fn valid_schema(schema: &str) -> bool {
    let mut chars = schema.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && schema.len() <= 63
}

/// Whether the URL's query names a TLS mode (the keys sqlx reads: `sslmode`, `ssl-mode`).
fn url_names_sslmode(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|url| {
        url.query_pairs()
            .any(|(key, _)| key == "sslmode" || key == "ssl-mode")
    })
}

/// Whether the server is on this machine: a Unix socket directory, `localhost`, or a
/// loopback address (`127.0.0.0/8`, `::1`, also written as `::ffff:127.x.y.z`).
fn is_local_server(options: &PgConnectOptions) -> bool {
    let host = options.get_host();
    if options.get_socket().is_some() || host.starts_with('/') {
        return true;
    }
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// The options with their TLS floor applied: a server elsewhere gets at least
/// `sslmode=require` unless the URL names a mode (see [`SqlStore::postgres`]).
fn with_tls_floor(url: &str, options: PgConnectOptions) -> PgConnectOptions {
    if url_names_sslmode(url) || is_local_server(&options) {
        return options;
    }
    match options.get_ssl_mode() {
        PgSslMode::Disable | PgSslMode::Allow | PgSslMode::Prefer => {
            options.ssl_mode(PgSslMode::Require)
        }
        PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull => options,
    }
}

fn parse_postgres_url(url: &str) -> Result<PgConnectOptions, SqlStoreError> {
    let options = PgConnectOptions::from_str(url).map_err(|_| SqlStoreError::InvalidConfig {
        message: "the PostgreSQL URL does not parse".to_owned(),
    })?;
    Ok(with_tls_floor(url, options))
}

async fn open_postgres(
    url: &SecretString,
    schema: Option<&str>,
    max_connections: u32,
) -> Result<Pool, SqlStoreError> {
    let mut options = parse_postgres_url(url.expose_secret())?;
    if let Some(schema) = schema {
        if !valid_schema(schema) {
            return Err(SqlStoreError::InvalidConfig {
                message: format!("invalid schema name {schema:?}"),
            });
        }
        let mut setup = options.connect().await.map_err(connect_error)?;
        // The name was validated above, so quoting it is enough.
        let created = sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .execute(&mut setup)
            .await;
        match created {
            // Two replicas opening at once both pass IF NOT EXISTS; the loser gets a
            // unique violation on pg_namespace, which means the schema is there.
            Err(sqlx::Error::Database(db))
                if matches!(db.code().as_deref(), Some("23505" | "42P06")) => {}
            other => {
                other.map_err(connect_error)?;
            }
        }
        setup.close().await.map_err(connect_error)?;
        options = options.options([("search_path", schema)]);
    }
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options)
        .await
        .map_err(connect_error)?;
    let found: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(&pool)
        .await
        .ok()
        .flatten();
    check_version(found)?;
    POSTGRES_MIGRATIONS
        .run(&pool)
        .await
        .map_err(migrate_error)?;
    Ok(Pool::Postgres(pool))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_validated() {
        assert!(valid_schema("cs_test_1"));
        assert!(!valid_schema(""));
        assert!(!valid_schema("1abc"));
        assert!(!valid_schema("a\"; DROP TABLE x; --"));
        assert!(!valid_schema(&"a".repeat(64)));
    }

    #[test]
    fn newer_schema_versions_are_refused() {
        assert!(check_version(None).is_ok());
        assert!(check_version(Some(SCHEMA_VERSION)).is_ok());
        assert!(matches!(
            check_version(Some(SCHEMA_VERSION + 1)),
            Err(SqlStoreError::SchemaTooNew {
                found: 4,
                supported: 3
            })
        ));
    }

    fn mode(url: &str) -> PgSslMode {
        match parse_postgres_url(url) {
            Ok(options) => options.get_ssl_mode(),
            Err(err) => panic!("{url}: {err}"),
        }
    }

    /// What sqlx itself makes of the URL (its default, or `PGSSLMODE`).
    fn sqlx_mode(url: &str) -> PgSslMode {
        match PgConnectOptions::from_str(url) {
            Ok(options) => options.get_ssl_mode(),
            Err(err) => panic!("{url}: {err}"),
        }
    }

    #[test]
    fn local_postgres_servers_keep_sqlx_tls_mode() {
        for url in [
            "postgres://app@localhost/app",
            "postgres://app@LOCALHOST:5432/app",
            "postgres://app@127.0.0.1:5432/app",
            "postgres://app@127.8.9.10/app",
            "postgres://app@[::1]:5432/app",
            "postgres://app@[::ffff:127.0.0.1]/app",
            "postgres://app@%2Fvar%2Frun%2Fpostgresql/app",
            "postgres:///app?host=/var/run/postgresql",
            "postgres://app@db.internal/app?host=/tmp",
        ] {
            assert!(
                is_local_server(&PgConnectOptions::from_str(url).expect("parses")),
                "{url}"
            );
            assert_eq!(
                format!("{:?}", mode(url)),
                format!("{:?}", sqlx_mode(url)),
                "{url}"
            );
        }
    }

    #[test]
    fn remote_postgres_servers_require_tls() {
        for url in [
            "postgres://app@db.internal:5432/app",
            "postgres://app:secret@10.0.0.5/app",
            "postgres://app@192.168.1.20/app",
            "postgres://app@[2001:db8::5]:5432/app",
            "postgres://app@128.0.0.1/app",
            "postgres://app@localhost.example.com/app",
            "postgres://app@localhost/app?hostaddr=10.0.0.5",
            "postgres://app@db.internal/app?application_name=m365",
        ] {
            assert!(
                !is_local_server(&PgConnectOptions::from_str(url).expect("parses")),
                "{url}"
            );
            // At least require: PGSSLMODE=verify-full in the environment stays.
            assert!(
                matches!(
                    mode(url),
                    PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull
                ),
                "{url}: {:?}",
                mode(url)
            );
        }
    }

    #[test]
    fn an_sslmode_in_the_url_is_respected() {
        for (url, want) in [
            ("postgres://app@db.internal/app?sslmode=disable", "Disable"),
            ("postgres://app@db.internal/app?sslmode=prefer", "Prefer"),
            ("postgres://app@db.internal/app?ssl-mode=allow", "Allow"),
            ("postgres://app@db.internal/app?sslmode=require", "Require"),
            (
                "postgres://app@db.internal/app?sslmode=verify-ca",
                "VerifyCa",
            ),
            (
                "postgres://app@db.internal/app?sslmode=verify-full",
                "VerifyFull",
            ),
            ("postgres://app@127.0.0.1/app?sslmode=require", "Require"),
            ("postgres://app@127.0.0.1/app?sslmode=disable", "Disable"),
        ] {
            assert_eq!(format!("{:?}", mode(url)), want, "{url}");
        }
    }

    #[test]
    fn unparsable_postgres_urls_are_invalid_config_without_the_url() {
        for url in [
            "postgres://app:hunter2@db.internal/app?sslmode=sometimes",
            "not a url hunter2",
        ] {
            match parse_postgres_url(url) {
                Err(SqlStoreError::InvalidConfig { message }) => {
                    assert!(!message.contains("hunter2"), "{message}");
                }
                other => panic!("{url}: {:?}", other.map(|o| o.get_ssl_mode())),
            }
        }
    }

    #[test]
    fn builder_debug_hides_the_postgres_url() {
        let builder = SqlStore::postgres("postgres://app:hunter2@db.internal/prod");
        let debug = format!("{builder:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
