//! Opening the connection store named by `--store`: a `SQLite` file (the default,
//! `./m365-link.sqlite`) or a `PostgreSQL` URL, with the encryption key from
//! `M365_LINK_STORE_KEY`.
//!
//! Key decision: refresh tokens are encrypted at rest, so a store always needs a key.
//! A service sets `M365_LINK_STORE_KEY` (standard base64 of 32 random bytes) from its
//! secret manager. For a local `SQLite` file without that variable, the examples keep a
//! generated key in a file next to the database (`<db>.key`, mode 0600) and say so on
//! stderr, so `connect` followed by `sync` works with no set-up; anyone who can read
//! both files can read the tokens, which is why `PostgreSQL` never falls back to it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use connection_store::ConnectionStore;
use connection_store_sql::{EncryptionKey, KeyId, KeyRing, SqlStore};
use secrecy::{ExposeSecret as _, SecretString};

use crate::mirror::Mirror;

/// The store used when `--store` is not given.
pub const DEFAULT_STORE: &str = "m365-link.sqlite";

/// The environment variable holding the store's key (standard base64 of 32 bytes).
pub const KEY_VARIABLE: &str = "M365_LINK_STORE_KEY";

/// The id stored next to every ciphertext. The same for the key file and the variable,
/// so a key moved from the file into the variable keeps working; a process that opens
/// the store itself (the fleet benchmark, tests) seals under it too.
pub const KEY_ID: &str = "m365-link-1";

/// An opened store with its directory mirror, and where it is.
pub struct OpenedStore {
    /// The store.
    pub store: Arc<dyn ConnectionStore>,
    /// The same store, as the SQL type the mirror's sinks are fenced and sealed by.
    pub sql: SqlStore,
    /// The directory mirror in the same database (its tables made on first open).
    pub mirror: Mirror,
    /// `SQLite file …` or `PostgreSQL` (no password), for messages.
    pub description: String,
}

/// Opens `location`: a `postgres://` or `postgresql://` URL, or else a `SQLite` path.
///
/// # Errors
/// No usable key, an unreadable key file, or a database that cannot be opened or
/// migrated; each says what to do.
pub async fn open(location: &str) -> anyhow::Result<OpenedStore> {
    if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        let Some(keys) = key_from_env()? else {
            bail!(
                "{KEY_VARIABLE} is not set\nnext step: a PostgreSQL store needs its key from the \
                 environment, e.g. `export {KEY_VARIABLE}=$(openssl rand -base64 32)`, kept in \
                 your secret manager"
            );
        };
        let store = SqlStore::postgres(location)
            .key_ring(keys)
            .open()
            .await
            .context("could not open the PostgreSQL store (is the server up and the URL right?)")?;
        return opened(store, "PostgreSQL".to_owned()).await;
    }
    let path = PathBuf::from(location);
    let keys = match key_from_env()? {
        Some(keys) => keys,
        None => key_from_file(&path)?,
    };
    let store = SqlStore::sqlite(&path)
        .key_ring(keys)
        .open()
        .await
        .with_context(|| format!("could not open the SQLite store {}", path.display()))?;
    opened(store, format!("SQLite file {}", path.display())).await
}

async fn opened(sql: SqlStore, description: String) -> anyhow::Result<OpenedStore> {
    let mirror = Mirror::open(&sql)
        .await
        .with_context(|| format!("could not open the directory mirror in the {description}"))?;
    Ok(OpenedStore {
        store: Arc::new(sql.clone()),
        sql,
        mirror,
        description,
    })
}

fn ring(key: EncryptionKey) -> anyhow::Result<KeyRing> {
    Ok(KeyRing::new(KeyId::new(KEY_ID)?, key))
}

fn key_from_env() -> anyhow::Result<Option<KeyRing>> {
    match std::env::var(KEY_VARIABLE) {
        Ok(encoded) => {
            let key = EncryptionKey::from_base64(&SecretString::from(encoded.trim().to_owned()))
                .with_context(|| format!("{KEY_VARIABLE} is not base64 of 32 bytes"))?;
            Ok(Some(ring(key)?))
        }
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => bail!("{KEY_VARIABLE} is not valid text"),
    }
}

/// Where the development key of a `SQLite` store lives: `<db>.key`.
pub fn key_file_for(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(ToOwned::to_owned).unwrap_or_default();
    name.push(".key");
    db.with_file_name(name)
}

fn key_from_file(db: &Path) -> anyhow::Result<KeyRing> {
    let path = key_file_for(db);
    match std::fs::read_to_string(&path) {
        Ok(encoded) => {
            let key = EncryptionKey::from_base64(&SecretString::from(encoded.trim().to_owned()))
                .with_context(|| format!("the key file {} is damaged", path.display()))?;
            ring(key)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if db.exists() {
                bail!(
                    "the store {} exists but its key file {} does not\nnext step: set \
                     {KEY_VARIABLE} to the key it was created with",
                    db.display(),
                    path.display()
                );
            }
            let key = EncryptionKey::generate();
            write_private(&path, key.to_base64().expose_secret())?;
            eprintln!(
                "note: {KEY_VARIABLE} is not set; generated a key for this development store in \
                 {} (mode 0600). Set {KEY_VARIABLE} instead in production.",
                path.display()
            );
            ring(key)
        }
        Err(error) => Err(error).with_context(|| format!("could not read {}", path.display())),
    }
}

/// Creates `path` readable by its owner only, failing if it exists.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("could not create the key file {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    Ok(())
}
