//! The data model: ids, names, the connection record, tokens, cursors and leases.

use std::fmt;
use std::str::FromStr;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use uuid::Uuid;

use crate::error::{InvalidNameReason, StoreError};

/// The most characters (Unicode scalar values, not bytes) a connection name may have.
pub const MAX_NAME_CHARS: usize = 120;

/// The id of a connection: a random UUID (v4) chosen by the store on create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnectionId(Uuid);

impl ConnectionId {
    /// A new random id.
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    /// Wraps an existing UUID (read back from storage).
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for ConnectionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for ConnectionId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// The service's customer account a connection belongs to: an opaque string, compared
/// exactly. Every store call takes it, and another owner's connections are invisible.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OwnerId(String);

impl OwnerId {
    /// Wraps the service's account id.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Microsoft Entra tenant id (the `tid` claim, a GUID).
///
/// Stored trimmed and lower-cased, because Entra compares tenant ids (GUIDs or domain
/// names) case-insensitively; so one tenant can be connected only once per owner
/// however its id is spelled.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    /// Normalizes (trim, lower-case) and wraps a tenant id.
    pub fn new(id: impl Into<String>) -> Self {
        let id: String = id.into();
        Self(id.trim().to_lowercase())
    }

    /// The normalized id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for TenantId {
    fn from(id: String) -> Self {
        Self::new(id)
    }
}

impl From<TenantId> for String {
    fn from(id: TenantId) -> Self {
        id.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated connection name, as a customer sees it under "Linked Microsoft 365
/// accounts".
///
/// Rules: surrounding whitespace is trimmed; then 1–[`MAX_NAME_CHARS`] characters
/// (counted as Unicode scalar values, so "Microsoft 365 – Deutschland" counts the dash
/// once); no control characters (Unicode category Cc: line breaks, tabs, NUL, DEL…); no
/// format characters (Unicode category Cf), which are invisible or reorder the text around
/// them: bidirectional overrides and isolates (U+202A–U+202E, U+2066–U+2069) that make
/// "Contoso\u{202E}lanretni" show as "Contosointernal", zero-width spaces and joiners
/// (U+200B–U+200D), the byte order mark (U+FEFF), the soft hyphen (U+00AD), tags. So two
/// names that look the same differ in visible characters. The price: emoji joined by
/// U+200D (👨‍👩‍👧) and text that needs a zero-width non-joiner (Persian, some Indic
/// spellings) are refused too.
///
/// Uniqueness per owner ignores case through [`ConnectionName::folded`], which is Rust's
/// [`str::to_lowercase`]: full Unicode lower-case mapping (`"ÄRGER"` equals `"ärger"`,
/// `"ΣΊΣΥΦΟΣ"` equals `"σίσυφος"`), but not full case folding (`"STRASSE"` and
/// `"straße"` stay different) and no normalization (a precomposed `"é"` and `"e"` plus a
/// combining accent stay different).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConnectionName(String);

impl ConnectionName {
    /// Trims and validates a name.
    ///
    /// # Errors
    /// [`StoreError::InvalidName`] when the trimmed name is empty, longer than
    /// [`MAX_NAME_CHARS`] characters, contains a control character, or contains a
    /// format character ([`InvalidNameReason::FormatCharacter`], naming the first one's
    /// code point, never the name).
    pub fn parse(name: &str) -> Result<Self, StoreError> {
        let trimmed = name.trim();
        let reason = if trimmed.is_empty() {
            Some(InvalidNameReason::Empty)
        } else if trimmed.chars().any(char::is_control) {
            Some(InvalidNameReason::ControlCharacter)
        } else if let Some(character) = trimmed
            .chars()
            .find(|c| c.general_category() == GeneralCategory::Format)
        {
            Some(InvalidNameReason::FormatCharacter { character })
        } else {
            let chars = trimmed.chars().count();
            (chars > MAX_NAME_CHARS).then_some(InvalidNameReason::TooLong { chars })
        };
        match reason {
            Some(reason) => Err(StoreError::InvalidName { reason }),
            None => Ok(Self(trimmed.to_owned())),
        }
    }

    /// The name as shown.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key under which names are unique per owner (see the type's docs).
    pub fn folded(&self) -> String {
        self.0.to_lowercase()
    }
}

impl TryFrom<String> for ConnectionName {
    type Error = StoreError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::parse(&name)
    }
}

impl From<ConnectionName> for String {
    fn from(name: ConnectionName) -> Self {
        name.0
    }
}

impl fmt::Display for ConnectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The Microsoft cloud a tenant lives in.
///
/// This crate's own small enum (it does not depend on `entra-auth`); it mirrors
/// `entra_auth::Cloud` so a caller maps one to the other in a `match`. Stored by
/// backends as its serde form (`{"kind":"global"}`, `{"kind":"custom","login":…,"graph":…}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Cloud {
    /// The global Azure cloud (`login.microsoftonline.com`).
    Global,
    /// Azure US Government (L4, GCC High).
    UsGovernment,
    /// Azure US Government `DoD` (L5).
    UsGovernmentDod,
    /// Azure operated by 21Vianet (China).
    China,
    /// Any other endpoints, e.g. a simulated tenant in tests.
    Custom {
        /// Base URL of the login authority.
        login: String,
        /// Base URL of Microsoft Graph.
        graph: String,
    },
}

/// The admin account that connected (or last reconnected) a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AdminAccount {
    /// The user's object id (`oid`) in the tenant.
    pub object_id: String,
    /// The sign-in name (`preferred_username`).
    pub username: String,
    /// The display name (`name`), when the id token had one.
    pub display_name: Option<String>,
}

/// Whether a connection can be synced.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionStatus {
    /// Syncing works.
    Active,
    /// Microsoft refused the grant (revoked consent, expired refresh token…): an admin
    /// has to connect again; shown as "reconnect needed".
    NeedsReconnect {
        /// A short, secret-free reason to show, e.g. an AADSTS code and message.
        reason: String,
        /// When it was noticed.
        since: OffsetDateTime,
        /// The claims request the reconnect's authorize request must carry (its `claims`
        /// parameter), or `None`.
        ///
        /// Set when Microsoft Graph answered with a Continuous Access Evaluation claims
        /// challenge (`WWW-Authenticate: Bearer … claims="…"`, e.g. the admin's sessions
        /// were revoked) and the refresh with those claims failed: Entra then only issues
        /// a token to an interactive sign-in that carries them. The caller passes the
        /// challenge's *decoded* claims JSON (the base64 of the header decoded), as
        /// Entra and Graph send it, e.g.
        /// `{"access_token":{"nbf":{"essential":true,"value":"1726058400"}}}`.
        ///
        /// Not a secret. The store keeps it as text and does not parse the JSON; it
        /// checks on every status write (see [`ConnectionStatus::validate`]) that it is
        /// 1 to [`MAX_CLAIMS_BYTES`](ConnectionStatus::MAX_CLAIMS_BYTES) bytes without
        /// control characters (so compact JSON, not pretty-printed). Every status write
        /// replaces it, and [`reconnect`](crate::ConnectionStore::reconnect) clears it
        /// along with the status. (Not to be confused with [`Claims`], the batch of
        /// connections [`claim_due`](crate::ConnectionStore::claim_due) hands out.)
        claims: Option<String>,
    },
    /// Turned off by the customer; nothing syncs.
    Disabled,
}

impl ConnectionStatus {
    /// The longest [`NeedsReconnect::claims`](ConnectionStatus::NeedsReconnect::claims)
    /// a store accepts, in bytes of UTF-8: 16 KiB, far above the few hundred bytes of
    /// Microsoft's claims challenges.
    pub const MAX_CLAIMS_BYTES: usize = 16 * 1024;

    /// Checks what every store checks before it writes a status, so backends refuse
    /// the same statuses: the claims of
    /// [`NeedsReconnect`](ConnectionStatus::NeedsReconnect), if any, are 1 to
    /// [`MAX_CLAIMS_BYTES`](Self::MAX_CLAIMS_BYTES) bytes without control characters.
    /// (Text is valid UTF-8 by being a `String`.) Backends also check a status they read
    /// back with it, and answer [`StoreError::Corrupt`] for a stored one that fails.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] naming the broken rule (never the claims
    /// themselves).
    pub fn validate(&self) -> Result<(), StoreError> {
        let Self::NeedsReconnect {
            claims: Some(claims),
            ..
        } = self
        else {
            return Ok(());
        };
        if claims.is_empty() {
            return Err(StoreError::invalid_input(
                "the claims of a reconnect are empty (use none instead)",
            ));
        }
        if claims.len() > Self::MAX_CLAIMS_BYTES {
            return Err(StoreError::invalid_input(format!(
                "the claims of a reconnect are {} bytes, at most {} are allowed",
                claims.len(),
                Self::MAX_CLAIMS_BYTES
            )));
        }
        if claims.chars().any(char::is_control) {
            return Err(StoreError::invalid_input(
                "the claims of a reconnect contain a control character",
            ));
        }
        Ok(())
    }

    /// `active`, `needs_reconnect` or `disabled`: a stable name for storage and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::NeedsReconnect { .. } => "needs_reconnect",
            Self::Disabled => "disabled",
        }
    }
}

/// The version of a connection's refresh token: 1 on create, one more on every replace
/// or reconnect. Token writes are compare-and-swap on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenVersion(u64);

impl TokenVersion {
    /// The version of a newly created connection's token.
    pub const FIRST: Self = Self(1);

    /// Wraps a version number.
    pub const fn new(version: u64) -> Self {
        Self(version)
    }

    /// The number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The version after this one.
    #[must_use]
    pub const fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl fmt::Display for TokenVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A linked Microsoft 365 tenant as stored. The refresh token is not in it: it is loaded
/// and replaced on its own ([`crate::ConnectionStore::load_token`]).
///
/// Plain data, built by stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The connection's id.
    pub id: ConnectionId,
    /// The customer account it belongs to.
    pub owner: OwnerId,
    /// Its name, unique per owner ignoring case.
    pub name: ConnectionName,
    /// The linked tenant, unique per owner.
    pub tenant: TenantId,
    /// The cloud the tenant lives in.
    pub cloud: Cloud,
    /// Who connected it.
    pub admin: AdminAccount,
    /// The scopes Microsoft granted, as returned by the token endpoint.
    pub scopes: Vec<String>,
    /// Whether it can be synced.
    pub status: ConnectionStatus,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When any field of this record last changed.
    pub updated_at: OffsetDateTime,
    /// When a sync last completed, if ever.
    pub last_synced_at: Option<OffsetDateTime>,
    /// Consecutive failed syncs ([`crate::ConnectionStore::record_failure`]); 0 after a
    /// successful sync or a reconnect.
    pub failures: u32,
    /// After a failed sync: not claimable before this time (the failure's time plus the
    /// [`Backoff`] delay); `None` after a successful sync or a reconnect.
    pub retry_at: Option<OffsetDateTime>,
    /// 1 on create, one more on every change of this record (not of the token).
    pub revision: u64,
}

impl Connection {
    /// When this connection is due for a sync every `interval`, the order in which
    /// [`crate::ConnectionStore::claim_due`] hands connections out: never synced, its
    /// creation time; synced, its last sync plus `interval`; with a pending retry, the
    /// later of that and [`retry_at`](Self::retry_at). Saturates instead of overflowing.
    ///
    /// Only the status and the sync lease decide besides this whether it is claimable.
    pub fn due_at(&self, interval: std::time::Duration) -> OffsetDateTime {
        let interval = time::Duration::try_from(interval).unwrap_or(time::Duration::MAX);
        let due = self
            .last_synced_at
            .map_or(self.created_at, |last| last.saturating_add(interval));
        match self.retry_at {
            Some(retry) if retry > due => retry,
            _ => due,
        }
    }
}

/// A connection handed out by [`crate::ConnectionStore::claim_due`] together with the
/// sync lease taken for it. Plain data, built by stores ([`Claim::new`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Claim {
    /// The claimed connection (its [`owner`](Connection::owner) is the owner to pass to
    /// the owner-scoped calls of the sync).
    pub connection: Connection,
    /// The lease the claim holds: renew it while syncing, release it afterwards.
    pub lease: Lease,
}

impl Claim {
    /// A claim of `connection` under `lease`; for backends.
    pub fn new(connection: Connection, lease: Lease) -> Self {
        Self { connection, lease }
    }
}

/// What one [`crate::ConnectionStore::claim_due`] took: the claims to sync, and the due
/// connections it found but could not read. Plain data, built by stores
/// ([`Claims::new`], [`Claims::with_corrupt`]); iterating it yields the claims.
///
/// A corrupt connection is not handed out and does not hold up the others: the store
/// freed its lease and deferred it (the SQL store by a day), so it does not fill every
/// later batch, and the record itself stays as it was for someone to repair or
/// reconnect. `claims.len() + corrupt.len()` is at most the `limit` asked for; fewer
/// means nothing more was due.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Claims {
    /// The connections claimed, oldest due first, each with its sync lease.
    pub claims: Vec<Claim>,
    /// One [`StoreError::Corrupt`] per due connection whose record could not be read,
    /// naming the connection (when its id is readable) and the column.
    pub corrupt: Vec<StoreError>,
}

impl Claims {
    /// A batch of `claims` with no corrupt connections; for backends.
    pub fn new(claims: Vec<Claim>) -> Self {
        Self {
            claims,
            corrupt: Vec::new(),
        }
    }

    /// A batch of `claims` and the errors of the due connections that could not be read;
    /// for backends.
    pub fn with_corrupt(claims: Vec<Claim>, corrupt: Vec<StoreError>) -> Self {
        Self { claims, corrupt }
    }

    /// How many connections were claimed.
    pub fn len(&self) -> usize {
        self.claims.len()
    }

    /// Nothing was claimed (there may still be [`corrupt`](Self::corrupt) ones).
    pub fn is_empty(&self) -> bool {
        self.claims.is_empty()
    }

    /// How many due connections the call took up, claimed or corrupt: compare with the
    /// `limit` to learn whether more may be due.
    pub fn taken(&self) -> usize {
        self.claims.len() + self.corrupt.len()
    }

    /// The claims, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Claim> {
        self.claims.iter()
    }
}

impl IntoIterator for Claims {
    type Item = Claim;
    type IntoIter = std::vec::IntoIter<Claim>;

    fn into_iter(self) -> Self::IntoIter {
        self.claims.into_iter()
    }
}

impl<'a> IntoIterator for &'a Claims {
    type Item = &'a Claim;
    type IntoIter = std::slice::Iter<'a, Claim>;

    fn into_iter(self) -> Self::IntoIter {
        self.claims.iter()
    }
}

impl From<Vec<Claim>> for Claims {
    fn from(claims: Vec<Claim>) -> Self {
        Self::new(claims)
    }
}

/// How long a connection waits after failed syncs before it is claimable again: `base`
/// after the first failure, doubling with each further consecutive one, never more than
/// `max`. Deterministic (no jitter): [`claim_due`](crate::ConnectionStore::claim_due)'s
/// oldest-due-first order already spreads retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Backoff {
    /// The delay after the first failure.
    pub base: std::time::Duration,
    /// The longest delay.
    pub max: std::time::Duration,
}

impl Default for Backoff {
    /// One minute after the first failure, at most six hours.
    fn default() -> Self {
        Self::new(
            std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(6 * 3600),
        )
    }
}

impl Backoff {
    /// A backoff from `base`, doubling, capped at `max`.
    pub const fn new(base: std::time::Duration, max: std::time::Duration) -> Self {
        Self { base, max }
    }

    /// The delay after `failures` consecutive failures: zero for none,
    /// `min(base * 2^(failures - 1), max)` otherwise.
    pub fn delay(&self, failures: u32) -> std::time::Duration {
        if failures == 0 || self.base.is_zero() {
            return std::time::Duration::ZERO;
        }
        let mut delay = self.base;
        // At most ~100 doublings before `delay` reaches any `max` (base >= 1 ns).
        for _ in 1..failures {
            if delay >= self.max {
                break;
            }
            delay = delay.saturating_mul(2);
        }
        delay.min(self.max)
    }
}

/// What [`crate::ConnectionStore::create`] needs: the result of a successful sign-in.
#[derive(Debug, Clone)]
pub struct NewConnection {
    /// The name the customer typed (validated and trimmed by the store).
    pub name: String,
    /// The tenant signed in to.
    pub tenant: TenantId,
    /// Its cloud.
    pub cloud: Cloud,
    /// The admin who signed in.
    pub admin: AdminAccount,
    /// The granted scopes.
    pub scopes: Vec<String>,
    /// The refresh token; stored as version [`TokenVersion::FIRST`].
    pub refresh_token: SecretString,
}

/// What [`crate::ConnectionStore::reconnect`] needs: a new sign-in to the same tenant.
#[derive(Debug, Clone)]
pub struct Reconnect {
    /// The tenant signed in to; must be the connection's tenant.
    pub tenant: TenantId,
    /// The admin who signed in.
    pub admin: AdminAccount,
    /// The granted scopes.
    pub scopes: Vec<String>,
    /// The new refresh token.
    pub refresh_token: SecretString,
}

/// A refresh token with the version to pass to
/// [`crate::ConnectionStore::replace_token`].
#[derive(Debug, Clone)]
pub struct StoredToken {
    /// The refresh token (redacted in `Debug`).
    pub token: SecretString,
    /// Its version.
    pub version: TokenVersion,
}

/// The name of a sync cursor (a delta link) of a connection: `users`, `groups`, or any
/// other short key of `a-z`, `0-9`, `_`, `-`, `.`, `:` (1–64 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CursorKey(String);

impl CursorKey {
    /// The most characters a cursor key may have.
    pub const MAX_CHARS: usize = 64;

    /// The cursor of the users delta query.
    pub fn users() -> Self {
        Self("users".to_owned())
    }

    /// The cursor of the groups delta query.
    pub fn groups() -> Self {
        Self("groups".to_owned())
    }

    /// Validates a key.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] when it is empty, too long or has another character.
    pub fn new(key: impl Into<String>) -> Result<Self, StoreError> {
        let key: String = key.into();
        let allowed = |c: char| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.' | ':')
        };
        if key.is_empty() || key.len() > Self::MAX_CHARS || !key.chars().all(allowed) {
            return Err(StoreError::invalid_input(
                "a cursor key is 1-64 characters of a-z, 0-9, '_', '-', '.', ':'",
            ));
        }
        Ok(Self(key))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CursorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who holds a sync lease: a replica or worker id, 1–200 characters, no control
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseHolder(String);

impl LeaseHolder {
    /// The most characters a holder id may have.
    pub const MAX_CHARS: usize = 200;

    /// Validates a holder id.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] when it is empty, too long or has a control character.
    pub fn new(holder: impl Into<String>) -> Result<Self, StoreError> {
        let holder: String = holder.into();
        if holder.is_empty()
            || holder.chars().count() > Self::MAX_CHARS
            || holder.chars().any(char::is_control)
        {
            return Err(StoreError::invalid_input(
                "a lease holder is 1-200 characters without control characters",
            ));
        }
        Ok(Self(holder))
    }

    /// The holder id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LeaseHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A granted sync lease: `holder` may sync connection `id` until `expires_at`, and
/// must renew before then to keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The connection.
    pub id: ConnectionId,
    /// The holder.
    pub holder: LeaseHolder,
    /// When another holder may take it over.
    pub expires_at: OffsetDateTime,
}

impl Lease {
    /// When a lease taken at `now` for `ttl` expires; for backends.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] when `ttl` is zero or so long the time overflows.
    pub fn expiry(
        now: OffsetDateTime,
        ttl: std::time::Duration,
    ) -> Result<OffsetDateTime, StoreError> {
        let invalid = || {
            StoreError::invalid_input("a lease time-to-live is more than zero and less than a year")
        };
        if ttl.is_zero() || ttl > std::time::Duration::from_secs(365 * 24 * 3600) {
            return Err(invalid());
        }
        let ttl = time::Duration::try_from(ttl).map_err(|_| invalid())?;
        now.checked_add(ttl).ok_or_else(invalid)
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn names_are_trimmed_and_counted_in_characters() {
        let name = ConnectionName::parse("  Microsoft 365 – Germany \t").unwrap();
        assert_eq!(name.as_str(), "Microsoft 365 – Germany");
        let wide = "ü".repeat(MAX_NAME_CHARS);
        assert_eq!(ConnectionName::parse(&wide).unwrap().as_str(), wide);
        let too_long = "a".repeat(MAX_NAME_CHARS + 1);
        assert!(matches!(
            ConnectionName::parse(&too_long),
            Err(StoreError::InvalidName {
                reason: InvalidNameReason::TooLong { chars: 121 }
            })
        ));
    }

    #[test]
    fn names_refuse_empty_and_control_characters() {
        for (name, want) in [
            ("", InvalidNameReason::Empty),
            ("   \n ", InvalidNameReason::Empty),
            ("a\nb", InvalidNameReason::ControlCharacter),
            ("a\u{0}b", InvalidNameReason::ControlCharacter),
            ("a\u{7f}b", InvalidNameReason::ControlCharacter),
            ("a\u{85}b", InvalidNameReason::ControlCharacter),
        ] {
            match ConnectionName::parse(name) {
                Err(StoreError::InvalidName { reason }) => assert_eq!(reason, want, "{name:?}"),
                other => panic!("{name:?} gave {other:?}"),
            }
        }
    }

    /// The characters of issue 15 and the other Cf ranges: each refused alone, inside a
    /// name and at its edges (trimming removes white space only), with its code point
    /// named and the name not echoed.
    #[test]
    fn names_refuse_format_characters_naming_the_code_point() {
        for (character, code_point) in [
            ('\u{202E}', "U+202E"),
            ('\u{202A}', "U+202A"),
            ('\u{200B}', "U+200B"),
            ('\u{200C}', "U+200C"),
            ('\u{200D}', "U+200D"),
            ('\u{200E}', "U+200E"),
            ('\u{2066}', "U+2066"),
            ('\u{2067}', "U+2067"),
            ('\u{2068}', "U+2068"),
            ('\u{2069}', "U+2069"),
            ('\u{2060}', "U+2060"),
            ('\u{FEFF}', "U+FEFF"),
            ('\u{00AD}', "U+00AD"),
            ('\u{061C}', "U+061C"),
            ('\u{E0001}', "U+E0001"),
        ] {
            for name in [
                format!("secret-tenant{character}lanretni"),
                format!("{character}Contoso"),
                format!("Contoso {character}"),
                character.to_string(),
            ] {
                let err = match ConnectionName::parse(&name) {
                    Err(err) => err,
                    Ok(parsed) => panic!("{code_point}: accepted {:?}", parsed.as_str()),
                };
                match &err {
                    StoreError::InvalidName {
                        reason: InvalidNameReason::FormatCharacter { character: found },
                    } => assert_eq!(*found, character, "{code_point}"),
                    other => panic!("{code_point}: {other:?}"),
                }
                let message = err.to_string();
                assert!(message.contains(code_point), "{message}");
                assert!(!message.contains(character), "{message}");
                assert!(!message.contains("secret-tenant"), "{message}");
                assert!(!message.contains("Contoso"), "{message}");
                let debug = format!("{err:?}");
                assert!(!debug.contains(character), "{debug}");
            }
        }
        // The first one is named.
        match ConnectionName::parse("a\u{200B}b\u{202E}c") {
            Err(StoreError::InvalidName {
                reason: InvalidNameReason::FormatCharacter { character },
            }) => assert_eq!(character, '\u{200B}'),
            other => panic!("{other:?}"),
        }
        // A control character is reported as such, before any format character.
        assert!(matches!(
            ConnectionName::parse("a\u{202E}\nb"),
            Err(StoreError::InvalidName {
                reason: InvalidNameReason::ControlCharacter
            })
        ));
        // Combining marks (Mn), other scripts and symbols stay valid.
        for name in [
            "e\u{301}",
            "日本のテナント",
            "Microsoft 365 – Deutschland ✓",
            "🦀",
        ] {
            assert_eq!(
                ConnectionName::parse(name)
                    .map(|n| n.as_str().to_owned())
                    .ok()
                    .as_deref(),
                Some(name)
            );
        }
        // Deserializing (serde's `try_from = "String"`) goes through the same rule.
        assert!(ConnectionName::try_from("a\u{202E}b".to_owned()).is_err());
    }

    #[test]
    fn folded_names_ignore_unicode_case() {
        let a = ConnectionName::parse("ÄRGER Σ").unwrap();
        let b = ConnectionName::parse("ärger σ").unwrap();
        assert_eq!(a.folded(), b.folded());
        let strasse = ConnectionName::parse("STRASSE").unwrap();
        let strasse_sharp = ConnectionName::parse("straße").unwrap();
        assert_ne!(strasse.folded(), strasse_sharp.folded());
    }

    #[test]
    fn tenant_ids_are_normalized_to_lower_case() {
        assert_eq!(
            TenantId::new(" 72F988BF-86F1-41AF-91AB-2D7CD011DB47 ").as_str(),
            "72f988bf-86f1-41af-91ab-2d7cd011db47"
        );
    }

    #[test]
    fn cursor_keys_and_lease_holders_are_validated() {
        assert_eq!(CursorKey::new("users").unwrap(), CursorKey::users());
        assert!(CursorKey::new("cursor:groups-2").is_ok());
        assert!(CursorKey::new("").is_err());
        assert!(CursorKey::new("Users").is_err());
        assert!(CursorKey::new("a".repeat(65)).is_err());
        assert!(LeaseHolder::new("replica-1/worker 3").is_ok());
        assert!(LeaseHolder::new("").is_err());
        assert!(LeaseHolder::new("a\nb").is_err());
    }

    #[test]
    fn backoff_doubles_from_base_and_is_capped() {
        let minute = std::time::Duration::from_secs(60);
        let backoff = Backoff::default();
        assert_eq!(backoff.delay(0), std::time::Duration::ZERO);
        assert_eq!(backoff.delay(1), minute);
        assert_eq!(backoff.delay(2), 2 * minute);
        assert_eq!(backoff.delay(3), 4 * minute);
        assert_eq!(backoff.delay(9), 256 * minute);
        assert_eq!(backoff.delay(10), 6 * 60 * minute);
        assert_eq!(backoff.delay(u32::MAX), 6 * 60 * minute);
        let odd = Backoff::new(
            std::time::Duration::from_secs(7),
            std::time::Duration::from_secs(20),
        );
        let delays: Vec<u64> = (1..5).map(|n| odd.delay(n).as_secs()).collect();
        assert_eq!(delays, vec![7, 14, 20, 20]);
        let zero = Backoff::new(std::time::Duration::ZERO, minute);
        assert_eq!(zero.delay(u32::MAX), std::time::Duration::ZERO);
        let huge = Backoff::new(std::time::Duration::MAX, std::time::Duration::MAX);
        assert_eq!(huge.delay(200), std::time::Duration::MAX);
    }

    #[test]
    fn due_time_is_creation_last_sync_plus_interval_or_later_retry() {
        let created = time::macros::datetime!(2026-01-01 00:00:00 UTC);
        let hour = std::time::Duration::from_secs(3600);
        let mut connection = Connection {
            id: ConnectionId::new(),
            owner: OwnerId::new("o"),
            name: ConnectionName::parse("n").unwrap(),
            tenant: TenantId::new("t"),
            cloud: Cloud::Global,
            admin: AdminAccount {
                object_id: "o".into(),
                username: "u".into(),
                display_name: None,
            },
            scopes: vec![],
            status: ConnectionStatus::Active,
            created_at: created,
            updated_at: created,
            last_synced_at: None,
            failures: 0,
            retry_at: None,
            revision: 1,
        };
        assert_eq!(connection.due_at(hour), created);
        connection.last_synced_at = Some(created + time::Duration::minutes(5));
        assert_eq!(
            connection.due_at(hour),
            created + time::Duration::minutes(65)
        );
        connection.retry_at = Some(created + time::Duration::minutes(30));
        assert_eq!(
            connection.due_at(hour),
            created + time::Duration::minutes(65)
        );
        connection.retry_at = Some(created + time::Duration::minutes(90));
        assert_eq!(
            connection.due_at(hour),
            created + time::Duration::minutes(90)
        );
        assert_eq!(
            connection.due_at(std::time::Duration::MAX),
            time::PrimitiveDateTime::MAX.assume_utc()
        );
    }

    #[test]
    fn reconnect_claims_are_at_most_16_kib_without_control_characters() {
        let needs = |claims: Option<String>| ConnectionStatus::NeedsReconnect {
            reason: "r".into(),
            since: OffsetDateTime::UNIX_EPOCH,
            claims,
        };
        let cae = r#"{"access_token":{"nbf":{"essential":true,"value":"1726058400"}}}"#;
        assert!(needs(None).validate().is_ok());
        assert!(needs(Some(cae.into())).validate().is_ok());
        // Bytes, not characters: 8,192 two-byte characters are exactly at the limit.
        let widest = "ü".repeat(ConnectionStatus::MAX_CLAIMS_BYTES / 2);
        assert!(needs(Some(widest.clone())).validate().is_ok());
        for refused in [
            String::new(),
            widest + "a",
            "a".repeat(ConnectionStatus::MAX_CLAIMS_BYTES + 1),
            "{\n}".to_owned(),
            "{\"a\":\"\u{85}\"}".to_owned(),
            "{\"a\":\"\u{0}\"}".to_owned(),
            "{\t}".to_owned(),
        ] {
            match needs(Some(refused.clone())).validate() {
                Err(StoreError::InvalidInput { message }) => {
                    assert!(
                        !message.contains(&refused) || refused.is_empty(),
                        "{message}"
                    );
                }
                other => panic!("{:?}: {other:?}", refused.len()),
            }
        }
        assert!(ConnectionStatus::Active.validate().is_ok());
        assert!(ConnectionStatus::Disabled.validate().is_ok());
    }

    #[test]
    fn connection_id_round_trips_through_text() {
        let id = ConnectionId::new();
        assert_eq!(id.to_string().parse::<ConnectionId>().unwrap(), id);
        assert!("not-a-uuid".parse::<ConnectionId>().is_err());
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let token = StoredToken {
            token: SecretString::from("rt-very-secret"),
            version: TokenVersion::FIRST,
        };
        let new = NewConnection {
            name: "n".into(),
            tenant: TenantId::new("t"),
            cloud: Cloud::Global,
            admin: AdminAccount {
                object_id: "o".into(),
                username: "u".into(),
                display_name: None,
            },
            scopes: vec![],
            refresh_token: SecretString::from("rt-very-secret"),
        };
        let reconnect = Reconnect {
            tenant: new.tenant.clone(),
            admin: new.admin.clone(),
            scopes: vec![],
            refresh_token: SecretString::from("rt-very-secret"),
        };
        for debug in [
            format!("{token:?}"),
            format!("{new:?}"),
            format!("{reconnect:?}"),
        ] {
            assert!(!debug.contains("rt-very-secret"), "{debug}");
            assert!(debug.contains("REDACTED"), "{debug}");
        }
        assert_eq!(token.token.expose_secret(), "rt-very-secret");
    }
}
