//! Browser sessions, kept in the app's database so that every instance sharing that
//! database (and the cookie key) serves every browser: a random session id in a signed,
//! `HttpOnly`, `SameSite=Lax` cookie (behind https `Secure` and named
//! `__Host-m365link_session`, [`cookie_name`]), the session itself in the
//! table `web_sessions` (who is signed in, the CSRF token, and the pending Microsoft
//! sign-ins started from this browser). `tower-sessions` runs the cookie and the
//! session's lifecycle; `tower-sessions-sqlx-store` keeps the rows on the store's own
//! pool (the same `SQLite` file or `PostgreSQL` database and schema), creating its table
//! with its own `migrate()` at start.
//!
//! Key decisions:
//! - The cookie carries only the id (128 random bits) and its HMAC under the cookie key;
//!   a database reader who sees the ids cannot make a cookie without that key.
//! - Expiry is on inactivity: 8 hours for a signed-in session, 30 minutes for an
//!   anonymous one (every visit to the sign-in page makes one). The row's expiry is
//!   pushed forward at most once a minute of use, so browsing is not a write per
//!   request; loads ignore expired rows and a housekeeping task deletes them (see
//!   [`DELETE_EXPIRED_EVERY`]). The app checks the same limit on the time of the last
//!   push, on an injectable clock, deleting the row of a session found idle.
//! - Signing in replaces the session id, deleting the anonymous row at once (no session
//!   fixation); signing out deletes the row, which signs the browser out on every
//!   instance.
//! - Every form POST carries the session's CSRF token, compared in constant time.
//! - The pending authorization (its PKCE verifier, nonce and state) never leaves the
//!   server, and a callback is accepted only in the browser session that started it
//!   (its `state` is looked up in that session alone). It is taken out and the session
//!   saved before the code is redeemed, so a callback that comes after that save, on any
//!   instance, finds no pending sign-in. That is all the session gives: a save writes
//!   the whole row (last writer wins, no compare-and-swap), so two callbacks of the same
//!   browser session with the same `state` that both load the row before either saves
//!   (a double-submitted redirect, on one instance or two) can both take it; then only
//!   one of them gets tokens and saves a connection, because Entra redeems an
//!   authorization code once (AADSTS54005 for the other, spec §1a).
//! - The verifier and nonce are secrets that, with a leaked authorization code, would
//!   redeem it; the 15-minute lifetime is not enough for database backups and replicas,
//!   which keep rows far longer. So each pending sign-in is stored sealed with
//!   AES-256-GCM under a key derived from the cookie key (SHA-256 with a purpose label),
//!   bound to its slot (a SHA-256 of its `state`, which is the slot's name, so the state
//!   itself is not stored either): a database reader sees neither. The cookie key
//!   is what instances already share; rotating it signs everyone out and drops pending
//!   sign-ins alike.
//! - A save writes the whole session (last writer wins). The writes are signing in and
//!   out, adding and taking a pending sign-in, and the once-a-minute touch, so two
//!   requests of one browser rarely race; a request under way while another instance
//!   signs the browser out could write its session back only if it was one of those
//!   writes.

use std::collections::HashMap;
use std::time::Duration;

use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::Context as _;
use async_trait::async_trait;
use base64::Engine as _;
use connection_store::{ConnectionId, OwnerId};
use connection_store_sql::{SqlPool, sqlx};
use entra_auth::PendingAuthorization;
use rand::RngCore as _;
use secrecy::ExposeSecret as _;
use secrecy::zeroize::Zeroizing;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use time::OffsetDateTime;
use tower_sessions::cookie::{Key, SameSite};
use tower_sessions::service::SignedCookie;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};
use tower_sessions::{Expiry, Session, SessionManagerLayer};
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

/// The session cookie's name over plain HTTP (local runs): see [`cookie_name`].
pub const COOKIE: &str = "m365link_session";

/// The session cookie's name when cookies are `Secure`: the `__Host-` prefix makes the
/// browser take it only from a secure origin, with `Secure`, `Path=/` and no `Domain`,
/// so neither a sibling subdomain nor a plain-HTTP response can set or shadow it
/// (RFC 6265bis §4.1.3.2).
pub const SECURE_COOKIE: &str = "__Host-m365link_session";

/// The session cookie's name: [`SECURE_COOKIE`] when cookies are `secure`, else
/// [`COOKIE`] (browsers refuse `__Host-` cookies from plain-HTTP origins).
pub fn cookie_name(secure: bool) -> &'static str {
    if secure { SECURE_COOKIE } else { COOKIE }
}

/// The sessions' table (in the store's schema on `PostgreSQL`).
pub const TABLE: &str = "web_sessions";

/// A signed-in session unused for this long is gone.
pub const IDLE_TIMEOUT: time::Duration = time::Duration::hours(8);

/// A session nobody signed in with is gone after this long unused (every visit to the
/// sign-in page makes one, so they must not pile up).
pub const ANONYMOUS_IDLE_TIMEOUT: time::Duration = time::Duration::minutes(30);

/// A session's expiry is pushed forward when it is used this long after the last push.
pub(crate) const TOUCH_EVERY: time::Duration = time::Duration::minutes(1);

/// How often expired sessions are deleted from the table.
pub const DELETE_EXPIRED_EVERY: Duration = Duration::from_secs(5 * 60);

/// A Microsoft sign-in left unfinished for this long is forgotten.
pub(crate) const PENDING_TIMEOUT: time::Duration = time::Duration::minutes(15);

/// Pending sign-ins kept per session (several tabs); the oldest goes first.
const MAX_PENDING: usize = 5;

// The session record's keys.
const OWNER: &str = "owner";
const CSRF: &str = "csrf";
const TOUCHED: &str = "touched";
const PENDING: &str = "pending";

/// What a pending Microsoft sign-in is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Intent {
    /// "Create a new connection" with this name.
    Create {
        /// The name the customer gave.
        name: String,
    },
    /// "Reconnect" an existing connection.
    Reconnect {
        /// The connection.
        id: ConnectionId,
    },
}

/// A Microsoft sign-in started from this browser, waiting for Entra's redirect.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Pending {
    /// What the sign-in is for.
    pub intent: Intent,
    /// The PKCE verifier, nonce and state (redacted in `Debug`).
    pub authorization: PendingAuthorization,
    /// The owner who started it.
    pub owner: OwnerId,
}

/// A pending sign-in as the session row keeps it: when it started (to drop old ones
/// unopened) and the sealed [`Pending`].
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SealedPending {
    started: i64,
    sealed: String,
}

/// This request's session, loaded: who, and the CSRF token for its forms.
#[derive(Clone)]
pub(crate) struct Current {
    session: Session,
    /// The signed-in customer, if any.
    pub owner: Option<OwnerId>,
    /// The CSRF token to put in forms.
    pub csrf: String,
}

// The session (its id) and the CSRF token are credentials: never in logs.
impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Current")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// 32 random bytes, URL-safe base64.
pub(crate) fn random_token() -> String {
    let mut bytes = [0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Sets the idle timeout the row gets when this request saves it (`tower-sessions`
/// keeps a session's expiry setting per request, not in the row).
fn keep(session: &Session, signed_in: bool) {
    session.set_expiry(Some(Expiry::OnInactivity(idle_timeout(signed_in))));
}

/// [`IDLE_TIMEOUT`] for a signed-in session, [`ANONYMOUS_IDLE_TIMEOUT`] for another.
fn idle_timeout(signed_in: bool) -> time::Duration {
    if signed_in {
        IDLE_TIMEOUT
    } else {
        ANONYMOUS_IDLE_TIMEOUT
    }
}

/// Deletes the expired sessions of `store` now and then every `every` (shared by the
/// instances; any of them may do it), calling `after_each` after each round. Runs until
/// dropped.
pub(crate) async fn delete_expired_every(
    store: impl ExpiredDeletion,
    every: Duration,
    mut after_each: impl FnMut(),
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = store.delete_expired().await {
            tracing::warn!(%error, "could not delete the expired sessions");
        }
        after_each();
    }
}

/// The request's session, if it has one (a verified cookie naming an unexpired row, used
/// within its idle timeout); pushes its expiry forward when [`TOUCH_EVERY`] has passed
/// since the last push.
///
/// # Errors
/// When the database fails or the row does not decode.
pub(crate) async fn current(session: &Session) -> anyhow::Result<Option<Current>> {
    current_at(session, OffsetDateTime::now_utc()).await
}

/// [`current`] at `now`. Besides the row's own expiry (which the database compares with
/// the wall clock), a session whose last push is more than its idle timeout before
/// `now` is refused and its row deleted: the same limit, on the clock given here, which
/// tests move forward. The row's expiry is at least as late (every save pushes it, a
/// push records the time), so this refuses at most [`TOUCH_EVERY`] sooner.
async fn current_at(session: &Session, now: OffsetDateTime) -> anyhow::Result<Option<Current>> {
    let Some(csrf) = session.get::<String>(CSRF).await? else {
        return Ok(None);
    };
    let owner = session.get::<OwnerId>(OWNER).await?;
    let idle = now
        .unix_timestamp()
        .saturating_sub(session.get::<i64>(TOUCHED).await?.unwrap_or(i64::MIN));
    if idle > idle_timeout(owner.is_some()).whole_seconds() {
        session.flush().await?;
        return Ok(None);
    }
    if idle >= TOUCH_EVERY.whole_seconds() {
        session.insert(TOUCHED, now.unix_timestamp()).await?;
        keep(session, owner.is_some());
    }
    Ok(Some(Current {
        session: session.clone(),
        owner,
        csrf,
    }))
}

/// Starts an anonymous session (the sign-in page's), with its CSRF token.
///
/// # Errors
/// When the session cannot be read.
pub(crate) async fn start_anonymous(session: &Session) -> anyhow::Result<Current> {
    session.clear().await;
    let csrf = random_token();
    session.insert(CSRF, &csrf).await?;
    session
        .insert(TOUCHED, OffsetDateTime::now_utc().unix_timestamp())
        .await?;
    keep(session, false);
    Ok(Current {
        session: session.clone(),
        owner: None,
        csrf,
    })
}

/// Signs `owner` in: a new session id (the old row is deleted now, the new one written
/// with the response) and a new CSRF token; nothing of the anonymous session is kept.
///
/// # Errors
/// When the database fails.
pub(crate) async fn sign_in(session: &Session, owner: &OwnerId) -> anyhow::Result<Current> {
    session.cycle_id().await?;
    session.clear().await;
    let csrf = random_token();
    session.insert(OWNER, owner).await?;
    session.insert(CSRF, &csrf).await?;
    session
        .insert(TOUCHED, OffsetDateTime::now_utc().unix_timestamp())
        .await?;
    keep(session, true);
    Ok(Current {
        session: session.clone(),
        owner: Some(owner.clone()),
        csrf,
    })
}

/// Ends the session: its row is deleted (on every instance) and the cookie removed.
///
/// # Errors
/// When the database fails.
pub(crate) async fn sign_out(current: &Current) -> anyhow::Result<()> {
    current.session.flush().await?;
    Ok(())
}

/// Whether `given` is the session's CSRF token (constant time).
pub(crate) fn csrf_matches(current: &Current, given: &str) -> bool {
    let expected = current.csrf.as_bytes();
    expected.len() == given.len() && bool::from(expected.ct_eq(given.as_bytes()))
}

/// Seals and opens the pending sign-ins kept in session rows.
pub(crate) struct Sessions {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

/// The label of the key derived from the cookie key (a new label is a new key).
const SEAL_PURPOSE: &[u8] = b"m365-link web app: pending Microsoft sign-ins, AES-256-GCM, v1\0";

/// The slot of a pending sign-in: SHA-256 of its `state`, URL-safe base64.
fn slot_of(state: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(state.as_bytes()))
}

impl Sessions {
    /// Sealing under a key derived from `cookie_key` (which instances share).
    pub(crate) fn new(cookie_key: &Key) -> Self {
        let mut derive = Sha256::new();
        derive.update(SEAL_PURPOSE);
        derive.update(cookie_key.master());
        let key = Zeroizing::new(<[u8; 32]>::from(derive.finalize()));
        Self {
            cipher: Aes256Gcm::new(&aes_gcm::Key::<Aes256Gcm>::from(*key)),
        }
    }

    /// Nonce (12 random bytes) then ciphertext and tag, URL-safe base64.
    fn seal(&self, slot: &str, plain: &[u8]) -> anyhow::Result<String> {
        let mut nonce = [0_u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: slot.as_bytes(),
                },
            )
            .map_err(|_| anyhow::anyhow!("could not seal a pending sign-in"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out))
    }

    /// The plaintext, or `None` when it does not authenticate (another key, another
    /// slot, damaged).
    fn open(&self, slot: &str, sealed: &str) -> Option<Zeroizing<Vec<u8>>> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sealed)
            .ok()?;
        if bytes.len() < 12 {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: slot.as_bytes(),
                },
            )
            .ok()
            .map(Zeroizing::new)
    }

    /// Keeps a pending sign-in in `current`'s session, sealed, under its `state`; drops
    /// those older than [`PENDING_TIMEOUT`] and, beyond [`MAX_PENDING`], the oldest.
    ///
    /// # Errors
    /// When the session cannot be read or the sign-in sealed.
    pub(crate) async fn add_pending(
        &self,
        current: &Current,
        owner: OwnerId,
        intent: Intent,
        authorization: PendingAuthorization,
    ) -> anyhow::Result<()> {
        self.add_pending_at(
            current,
            Pending {
                intent,
                authorization,
                owner,
            },
            OffsetDateTime::now_utc(),
        )
        .await
    }

    async fn add_pending_at(
        &self,
        current: &Current,
        pending: Pending,
        now: OffsetDateTime,
    ) -> anyhow::Result<()> {
        let session = &current.session;
        let mut kept: HashMap<String, SealedPending> =
            session.get(PENDING).await?.unwrap_or_default();
        let now = now.unix_timestamp();
        kept.retain(|_, p| now.saturating_sub(p.started) <= PENDING_TIMEOUT.whole_seconds());
        while kept.len() >= MAX_PENDING {
            let oldest = kept
                .iter()
                .min_by_key(|(_, p)| p.started)
                .map(|(slot, _)| slot.clone());
            match oldest {
                Some(slot) => kept.remove(&slot),
                None => break,
            };
        }
        let slot = slot_of(pending.authorization.state().expose_secret());
        let plain = Zeroizing::new(serde_json::to_vec(&pending)?);
        let sealed = self.seal(&slot, &plain)?;
        kept.insert(
            slot,
            SealedPending {
                started: now,
                sealed,
            },
        );
        session.insert(PENDING, kept).await?;
        keep(session, current.owner.is_some());
        Ok(())
    }

    /// Takes the pending sign-in with this `state` out of `current`'s session (the
    /// session is saved without it before this returns, so a later call, on any
    /// instance, gets `None`; two calls racing on copies of the session loaded before
    /// that save can both get it, see the module docs); `None` when this browser session
    /// did not start it, or it is too old.
    ///
    /// # Errors
    /// When the database fails.
    pub(crate) async fn take_pending(
        &self,
        current: &Current,
        state: &str,
    ) -> anyhow::Result<Option<Pending>> {
        self.take_pending_at(current, state, OffsetDateTime::now_utc())
            .await
    }

    async fn take_pending_at(
        &self,
        current: &Current,
        state: &str,
        now: OffsetDateTime,
    ) -> anyhow::Result<Option<Pending>> {
        let session = &current.session;
        let Some(mut kept) = session
            .get::<HashMap<String, SealedPending>>(PENDING)
            .await?
        else {
            return Ok(None);
        };
        let slot = slot_of(state);
        let Some(taken) = kept.remove(&slot) else {
            return Ok(None);
        };
        session.insert(PENDING, kept).await?;
        keep(session, current.owner.is_some());
        session.save().await?;
        if now.unix_timestamp().saturating_sub(taken.started) > PENDING_TIMEOUT.whole_seconds() {
            return Ok(None);
        }
        let Some(plain) = self.open(&slot, &taken.sealed) else {
            tracing::warn!("a pending sign-in did not decrypt (the cookie key changed?)");
            return Ok(None);
        };
        match serde_json::from_slice::<Pending>(&plain) {
            Ok(pending) => Ok(Some(pending)),
            Err(error) => {
                tracing::warn!(%error, "a pending sign-in did not decode");
                Ok(None)
            }
        }
    }
}

/// The sessions' table: `SQLite` or `PostgreSQL`, on the store's pool.
#[derive(Debug, Clone)]
pub(crate) enum Store {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Store {
    /// The session store in `pool`'s database, its table created if missing (on
    /// `PostgreSQL` in the pool's current schema, the store's).
    ///
    /// # Errors
    /// When the database fails, or is neither `SQLite` nor `PostgreSQL`.
    pub(crate) async fn open(pool: SqlPool) -> anyhow::Result<Self> {
        let store = match pool {
            SqlPool::Sqlite(pool) => Self::Sqlite(
                SqliteStore::new(pool)
                    .with_table_name(TABLE)
                    .map_err(anyhow::Error::msg)?,
            ),
            SqlPool::Postgres(pool) => {
                let schema: Option<String> = sqlx::query_scalar("SELECT current_schema()")
                    .fetch_one(&pool)
                    .await
                    .context("could not read the database's schema")?;
                let schema = schema.context("the database connection has no current schema")?;
                Self::Postgres(
                    PostgresStore::new(pool)
                        .with_schema_name(schema)
                        .and_then(|store| store.with_table_name(TABLE))
                        .map_err(anyhow::Error::msg)?,
                )
            }
            _ => anyhow::bail!("the sessions need a SQLite or PostgreSQL database"),
        };
        match &store {
            Self::Sqlite(store) => store.migrate().await,
            Self::Postgres(store) => store.migrate().await,
        }
        .context("could not create the sessions table")?;
        Ok(store)
    }

    /// The layer that loads and saves each request's session: the cookie
    /// [`cookie_name`]`(secure)`, signed with `key`, `HttpOnly`, `SameSite=Lax` (it must
    /// come along on Entra's top-level redirect back to the callback), `Path=/` without
    /// a `Domain`, and `Secure` (then named with the `__Host-` prefix) when served over
    /// HTTPS.
    pub(crate) fn layer(&self, key: Key, secure: bool) -> SessionManagerLayer<Self, SignedCookie> {
        SessionManagerLayer::new(self.clone())
            .with_name(cookie_name(secure))
            .with_http_only(true)
            .with_same_site(SameSite::Lax)
            .with_secure(secure)
            .with_path("/")
            .with_expiry(Expiry::OnInactivity(IDLE_TIMEOUT))
            .with_signed(key)
    }
}

#[async_trait]
impl SessionStore for Store {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match self {
            Self::Sqlite(store) => store.create(record).await,
            Self::Postgres(store) => store.create(record).await,
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self {
            Self::Sqlite(store) => store.save(record).await,
            Self::Postgres(store) => store.save(record).await,
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match self {
            Self::Sqlite(store) => store.load(id).await,
            Self::Postgres(store) => store.load(id).await,
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match self {
            Self::Sqlite(store) => store.delete(id).await,
            Self::Postgres(store) => store.delete(id).await,
        }
    }
}

#[async_trait]
impl ExpiredDeletion for Store {
    async fn delete_expired(&self) -> session_store::Result<()> {
        match self {
            Self::Sqlite(store) => store.delete_expired().await,
            Self::Postgres(store) => store.delete_expired().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn pending_authorization() -> PendingAuthorization {
        let client = entra_auth::EntraClient::builder("client")
            .redirect_uri("http://localhost:1/callback")
            .build()
            .unwrap();
        let (_url, pending) = client.authorization_request().build().unwrap().into_parts();
        pending
    }

    async fn store() -> (Store, std::path::PathBuf) {
        let (store, _, dir) = store_and_pool().await;
        (store, dir)
    }

    async fn store_and_pool() -> (Store, sqlx::SqlitePool, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("m365-link-sessions-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .connect_with(
                sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(dir.join("sessions.sqlite"))
                    .create_if_missing(true),
            )
            .await
            .unwrap();
        let store = Store::open(SqlPool::Sqlite(pool.clone())).await.unwrap();
        (store, pool, dir)
    }

    /// A session as a request on any instance sees it: a new handle on the row `id`.
    fn request(store: &Store, id: Option<Id>) -> Session {
        Session::new(
            id,
            Arc::new(store.clone()),
            Some(Expiry::OnInactivity(IDLE_TIMEOUT)),
        )
    }

    /// Ends a request: what the layer does with a modified session.
    async fn respond(session: &Session) -> Option<Id> {
        if session.is_modified() && !session.is_empty().await {
            session.save().await.unwrap();
        }
        session.id()
    }

    #[tokio::test]
    async fn signing_in_replaces_the_session_and_csrf_is_exact() {
        let (store, dir) = store().await;
        let page = request(&store, None);
        let anonymous = start_anonymous(&page).await.unwrap();
        let anonymous_id = respond(&page).await.unwrap();

        let form = request(&store, Some(anonymous_id));
        let found = current(&form)
            .await
            .unwrap()
            .expect("the anonymous session");
        assert_eq!(found.csrf, anonymous.csrf);
        assert!(found.owner.is_none());
        let signed_in = sign_in(&form, &OwnerId::new("a@x")).await.unwrap();
        let signed_in_id = respond(&form).await.unwrap();
        assert_ne!(anonymous_id, signed_in_id, "a new session id");
        assert_ne!(anonymous.csrf, signed_in.csrf);
        assert!(
            store.load(&anonymous_id).await.unwrap().is_none(),
            "the old row is gone"
        );
        assert!(
            current(&request(&store, Some(anonymous_id)))
                .await
                .unwrap()
                .is_none()
        );

        let again = current(&request(&store, Some(signed_in_id)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.owner.as_ref().map(OwnerId::as_str), Some("a@x"));
        assert!(csrf_matches(&again, &signed_in.csrf));
        assert!(!csrf_matches(&again, &anonymous.csrf));
        assert!(!csrf_matches(&again, ""));
        assert!(!format!("{again:?}").contains(&again.csrf));

        sign_out(&again).await.unwrap();
        assert!(store.load(&signed_in_id).await.unwrap().is_none());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn anonymous_sessions_expire_sooner_and_use_pushes_the_expiry_once_a_minute() {
        let (store, dir) = store().await;
        let page = request(&store, None);
        start_anonymous(&page).await.unwrap();
        let id = respond(&page).await.unwrap();
        let expires_in = |record: Record| record.expiry_date - OffsetDateTime::now_utc();
        let left = expires_in(store.load(&id).await.unwrap().unwrap());
        assert!(
            left <= ANONYMOUS_IDLE_TIMEOUT
                && left > ANONYMOUS_IDLE_TIMEOUT - time::Duration::minutes(1)
        );

        let form = request(&store, Some(id));
        current(&form).await.unwrap().unwrap();
        sign_in(&form, &OwnerId::new("a@x")).await.unwrap();
        let id = respond(&form).await.unwrap();
        let first = store.load(&id).await.unwrap().unwrap().expiry_date;
        assert!(first - OffsetDateTime::now_utc() > IDLE_TIMEOUT - time::Duration::minutes(1));

        // Used again within the minute: nothing to write.
        let soon = request(&store, Some(id));
        current_at(
            &soon,
            OffsetDateTime::now_utc() + time::Duration::seconds(30),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(!soon.is_modified());
        // A minute later: the row's expiry moves on.
        let later = request(&store, Some(id));
        current_at(&later, OffsetDateTime::now_utc() + TOUCH_EVERY)
            .await
            .unwrap()
            .unwrap();
        assert!(later.is_modified());
        respond(&later).await;
        assert!(store.load(&id).await.unwrap().unwrap().expiry_date > first);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_pending_sign_in_is_taken_once_only_from_its_session_and_sealed_in_the_row() {
        let (store, dir) = store().await;
        let owner = OwnerId::new("a@x");
        let start = |store: Store, owner: OwnerId| async move {
            let session = request(&store, None);
            start_anonymous(&session).await.unwrap();
            sign_in(&session, &owner).await.unwrap();
            respond(&session).await.unwrap()
        };
        let mine = start(store.clone(), owner.clone()).await;
        let theirs = start(store.clone(), owner.clone()).await;
        let sessions = Sessions::new(&Key::generate());
        let authorization = pending_authorization();
        let state = authorization.state().expose_secret().to_owned();
        let intent = Intent::Create {
            name: "Germany".into(),
        };
        let session = request(&store, Some(mine));
        let current_mine = current(&session).await.unwrap().unwrap();
        sessions
            .add_pending(&current_mine, owner.clone(), intent.clone(), authorization)
            .await
            .unwrap();
        respond(&session).await;

        // The row holds neither the state nor the verifier in the clear.
        let row = serde_json::to_string(&store.load(&mine).await.unwrap().unwrap().data).unwrap();
        assert!(!row.contains(&state), "{row}");
        assert!(!row.contains("pkce") && !row.contains("nonce"), "{row}");

        let other = current(&request(&store, Some(theirs)))
            .await
            .unwrap()
            .unwrap();
        assert!(
            sessions
                .take_pending(&other, &state)
                .await
                .unwrap()
                .is_none()
        );
        // Another instance with another cookie key cannot open it.
        let stranger = Sessions::new(&Key::generate());
        let session = request(&store, Some(mine));
        let mine_again = current(&session).await.unwrap().unwrap();
        assert!(
            stranger
                .take_pending(&mine_again, &state)
                .await
                .unwrap()
                .is_none()
        );

        // Put back by the right instance, it is taken once.
        let authorization = pending_authorization();
        let state = authorization.state().expose_secret().to_owned();
        sessions
            .add_pending(&mine_again, owner.clone(), intent.clone(), authorization)
            .await
            .unwrap();
        respond(&session).await;
        let session = request(&store, Some(mine));
        let current_mine = current(&session).await.unwrap().unwrap();
        let taken = sessions
            .take_pending(&current_mine, &state)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(taken.intent, intent);
        assert_eq!(taken.owner, owner);
        assert!(!format!("{taken:?}").contains(&state), "redacted");
        assert_eq!(format!("{sessions:?}"), "Sessions { .. }");
        let session = request(&store, Some(mine));
        let current_mine = current(&session).await.unwrap().unwrap();
        assert!(
            sessions
                .take_pending(&current_mine, &state)
                .await
                .unwrap()
                .is_none()
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn pending_sign_ins_expire_after_fifteen_minutes_and_at_most_five_are_kept() {
        let (store, dir) = store().await;
        let owner = OwnerId::new("a@x");
        let session = request(&store, None);
        start_anonymous(&session).await.unwrap();
        let current_mine = sign_in(&session, &owner).await.unwrap();
        let sessions = Sessions::new(&Key::generate());
        let now = OffsetDateTime::now_utc();
        let mut states = Vec::new();
        for n in 0..7 {
            let authorization = pending_authorization();
            states.push(authorization.state().expose_secret().to_owned());
            let pending = Pending {
                intent: Intent::Create {
                    name: format!("n{n}"),
                },
                authorization,
                owner: owner.clone(),
            };
            let at = now + time::Duration::seconds(n);
            sessions
                .add_pending_at(&current_mine, pending, at)
                .await
                .unwrap();
        }
        respond(&session).await;
        let mut kept = 0;
        for state in &states {
            if sessions
                .take_pending_at(&current_mine, state, now + time::Duration::seconds(10))
                .await
                .unwrap()
                .is_some()
            {
                kept += 1;
            }
        }
        assert_eq!(kept, MAX_PENDING);
        assert!(
            sessions
                .take_pending_at(&current_mine, &states[0], now)
                .await
                .unwrap()
                .is_none(),
            "the oldest went first"
        );

        let authorization = pending_authorization();
        let state = authorization.state().expose_secret().to_owned();
        let pending = Pending {
            intent: Intent::Reconnect {
                id: "00000000-0000-4000-8000-000000000000".parse().unwrap(),
            },
            authorization,
            owner,
        };
        sessions
            .add_pending_at(&current_mine, pending, now)
            .await
            .unwrap();
        let too_late = now + PENDING_TIMEOUT + time::Duration::seconds(1);
        assert!(
            sessions
                .take_pending_at(&current_mine, &state, too_late)
                .await
                .unwrap()
                .is_none()
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn expired_rows_are_not_loaded_and_are_deleted() {
        let (store, pool, dir) = store_and_pool().await;
        let rows = || async {
            sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {TABLE}"))
                .fetch_one(&pool)
                .await
                .unwrap()
        };
        let session = request(&store, None);
        start_anonymous(&session).await.unwrap();
        let expired = respond(&session).await.unwrap();
        let mut record = store.load(&expired).await.unwrap().unwrap();
        record.expiry_date = OffsetDateTime::now_utc() - time::Duration::seconds(1);
        store.save(&record).await.unwrap();
        let live = request(&store, None);
        start_anonymous(&live).await.unwrap();
        let live = respond(&live).await.unwrap();
        assert_eq!(rows().await, 2);

        assert!(
            store.load(&expired).await.unwrap().is_none(),
            "expired: not loaded"
        );
        assert!(
            current(&request(&store, Some(expired)))
                .await
                .unwrap()
                .is_none()
        );
        store.delete_expired().await.unwrap();
        assert_eq!(rows().await, 1, "the expired row is deleted");
        assert!(
            store.load(&live).await.unwrap().is_some(),
            "unexpired rows stay"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn an_idle_session_is_refused_and_its_row_deleted_and_a_pending_sign_in_expires_sooner() {
        let (store, dir) = store().await;
        let second = time::Duration::seconds(1);

        // Anonymous: alive just within its 30 minutes, refused and deleted past them.
        let page = request(&store, None);
        start_anonymous(&page).await.unwrap();
        let t0 = OffsetDateTime::now_utc();
        let anonymous = respond(&page).await.unwrap();
        let just_in = t0 + ANONYMOUS_IDLE_TIMEOUT - second;
        let alive = request(&store, Some(anonymous));
        assert!(current_at(&alive, just_in).await.unwrap().is_some());
        let past = t0 + ANONYMOUS_IDLE_TIMEOUT + second;
        let idle = request(&store, Some(anonymous));
        assert!(current_at(&idle, past).await.unwrap().is_none());
        assert!(
            store.load(&anonymous).await.unwrap().is_none(),
            "the idle anonymous row is deleted"
        );

        // Signed in: eight hours, counted from the last use that pushed the expiry.
        let page = request(&store, None);
        start_anonymous(&page).await.unwrap();
        let owner = OwnerId::new("a@x");
        sign_in(&page, &owner).await.unwrap();
        let t0 = OffsetDateTime::now_utc();
        let id = respond(&page).await.unwrap();
        assert!(ANONYMOUS_IDLE_TIMEOUT < IDLE_TIMEOUT);
        let after_anonymous_timeout = request(&store, Some(id));
        let found = current_at(
            &after_anonymous_timeout,
            t0 + ANONYMOUS_IDLE_TIMEOUT + second,
        )
        .await
        .unwrap()
        .expect("a signed-in session outlives the anonymous timeout");
        assert_eq!(found.owner.as_ref(), Some(&owner));
        respond(&after_anonymous_timeout).await;
        // That use pushed the limit: eight hours after it, not after signing in.
        let used = t0 + ANONYMOUS_IDLE_TIMEOUT + second;
        let later = request(&store, Some(id));
        assert!(
            current_at(&later, t0 + IDLE_TIMEOUT + second)
                .await
                .unwrap()
                .is_some()
        );
        let idle = request(&store, Some(id));
        assert!(
            current_at(&idle, used + IDLE_TIMEOUT + second)
                .await
                .unwrap()
                .is_none(),
            "unused for longer than the idle timeout"
        );
        assert!(
            store.load(&id).await.unwrap().is_none(),
            "the idle row is deleted"
        );
        assert!(
            current(&request(&store, Some(id))).await.unwrap().is_none(),
            "and stays refused"
        );

        // A pending sign-in lasts 15 minutes inside a session that lasts longer.
        let sessions = Sessions::new(&Key::generate());
        let page = request(&store, None);
        start_anonymous(&page).await.unwrap();
        let current_mine = sign_in(&page, &owner).await.unwrap();
        let t0 = OffsetDateTime::now_utc();
        let authorization = pending_authorization();
        let state = authorization.state().expose_secret().to_owned();
        let pending = Pending {
            intent: Intent::Create {
                name: "Germany".into(),
            },
            authorization,
            owner: owner.clone(),
        };
        sessions
            .add_pending_at(&current_mine, pending, t0)
            .await
            .unwrap();
        let id = respond(&page).await.unwrap();
        let too_late = t0 + PENDING_TIMEOUT + second;
        assert!(PENDING_TIMEOUT < IDLE_TIMEOUT);
        let session = request(&store, Some(id));
        let current_mine = current_at(&session, too_late)
            .await
            .unwrap()
            .expect("the session is alive");
        assert!(
            sessions
                .take_pending_at(&current_mine, &state, too_late)
                .await
                .unwrap()
                .is_none(),
            "the pending sign-in is not"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Sessions in memory, for the deletion schedule on paused time (no I/O).
    #[derive(Debug, Clone, Default)]
    struct Memory {
        records: Arc<std::sync::Mutex<HashMap<Id, Record>>>,
    }

    impl Memory {
        fn ids(&self) -> Vec<Id> {
            let mut ids: Vec<Id> = self.records.lock().unwrap().keys().copied().collect();
            ids.sort_by_key(|id| id.0);
            ids
        }

        fn put(&self, id: i128, expires_in: time::Duration) -> Id {
            let id = Id(id);
            let record = Record {
                id,
                data: HashMap::new(),
                expiry_date: OffsetDateTime::now_utc() + expires_in,
            };
            self.records.lock().unwrap().insert(id, record);
            id
        }
    }

    #[async_trait]
    impl SessionStore for Memory {
        async fn save(&self, record: &Record) -> session_store::Result<()> {
            self.records
                .lock()
                .unwrap()
                .insert(record.id, record.clone());
            Ok(())
        }

        async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
            Ok(self.records.lock().unwrap().get(id).cloned())
        }

        async fn delete(&self, id: &Id) -> session_store::Result<()> {
            self.records.lock().unwrap().remove(id);
            Ok(())
        }
    }

    #[async_trait]
    impl ExpiredDeletion for Memory {
        async fn delete_expired(&self) -> session_store::Result<()> {
            let now = OffsetDateTime::now_utc();
            self.records
                .lock()
                .unwrap()
                .retain(|_, record| record.expiry_date > now);
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn expired_sessions_are_deleted_at_start_and_then_every_period() {
        let store = Memory::default();
        let expired = store.put(1, -time::Duration::seconds(1));
        let live = store.put(2, time::Duration::hours(1));
        let (rounds, mut round) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(delete_expired_every(
            store.clone(),
            DELETE_EXPIRED_EVERY,
            move || {
                let _ = rounds.send(tokio::time::Instant::now());
            },
        ));
        let start = tokio::time::Instant::now();
        assert_eq!(round.recv().await, Some(start), "a round at start");
        assert_eq!(store.ids(), [live], "the expired row went, {expired:?}");

        // A row that expires now waits for the next round.
        let soon = store.put(3, time::Duration::ZERO);
        let almost = DELETE_EXPIRED_EVERY
            .checked_sub(Duration::from_millis(1))
            .unwrap();
        tokio::time::advance(almost).await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(round.try_recv().is_err(), "no round before the period");
        assert_eq!(store.ids(), [live, soon]);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(round.recv().await, Some(start + DELETE_EXPIRED_EVERY));
        assert_eq!(store.ids(), [live]);
        task.abort();
    }
}
