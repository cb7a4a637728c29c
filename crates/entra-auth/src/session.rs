//! `TokenSession`: one per connection; hands out valid access tokens, refreshing ahead of
//! expiry with exactly one refresh in flight, and stores each rotated refresh token
//! through [`RefreshTokenStore`] (spec §2b).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret as _, SecretString};
use subtle::ConstantTimeEq as _;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::client::EntraClient;
use crate::cloud::TenantId;
use crate::error::AuthError;
use crate::error::EntraError;
use crate::grant::Grant;
use crate::token::{AccessToken, RefreshedToken};

/// MSAL treats a cached access token as expired 5 minutes early (spec §2b).
pub const DEFAULT_REFRESH_SKEW: Duration = Duration::from_secs(300);

/// The version of a stored refresh token, for compare-and-swap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenVersion(u64);

impl TokenVersion {
    /// Wraps a version number.
    pub fn new(version: u64) -> Self {
        Self(version)
    }

    /// The version number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TokenVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// A refresh token as stored, with its version.
#[derive(Clone)]
pub struct StoredRefreshToken {
    /// The refresh token.
    pub token: SecretString,
    /// Its version.
    pub version: TokenVersion,
}

impl StoredRefreshToken {
    /// A stored token.
    pub fn new(token: SecretString, version: TokenVersion) -> Self {
        Self { token, version }
    }
}

impl fmt::Debug for StoredRefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredRefreshToken")
            .field("token", &"[REDACTED]")
            .field("version", &self.version)
            .finish()
    }
}

impl fmt::Display for StoredRefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refresh token [REDACTED] {}", self.version)
    }
}

/// The outcome of a compare-and-swap save.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveOutcome {
    /// Saved; the new version.
    Saved(TokenVersion),
    /// The stored version was no longer the expected one: someone else saved a newer
    /// token, which stays.
    Conflict,
}

/// Where a session keeps its connection's refresh token. Implement it over your store
/// (e.g. a `ConnectionStore`); one instance per connection.
#[async_trait]
pub trait RefreshTokenStore: Send + Sync {
    /// The current refresh token and its version; `None` when there is none.
    async fn load(&self) -> Result<Option<StoredRefreshToken>, AuthError>;

    /// Saves `token` if the stored version is still `expected`.
    async fn save(
        &self,
        token: &SecretString,
        expected: TokenVersion,
    ) -> Result<SaveOutcome, AuthError>;

    /// Records that the connection needs a new sign-in (show "reconnect needed").
    /// `reason` requires reauthorization; its `Display` holds no secret. Keep
    /// [`reason.reconnect_claims()`](AuthError::reconnect_claims) with the mark when it is
    /// `Some`: the reconnect's authorize request must carry those claims (spec §7).
    async fn mark_reauthorization_required(&self, reason: &AuthError) -> Result<(), AuthError>;
}

#[derive(Clone)]
struct CachedToken {
    token: AccessToken,
    /// When to stop handing it out and refresh: `expires - skew`, or `refresh_in`.
    refresh_after: Instant,
    expires: Instant,
}

#[derive(Clone)]
enum Failure {
    Entra(Box<EntraError>),
}

impl Failure {
    fn to_error(&self) -> AuthError {
        match self {
            Self::Entra(error) => AuthError::ReauthorizationRequired(error.clone()),
        }
    }
}

#[derive(Default)]
struct State {
    cached: Option<CachedToken>,
    failure: Option<Failure>,
    /// A claims challenge not answered yet: every refresh carries it until one succeeds
    /// (so a transient failure or a dropped future does not lose it).
    pending_claims: Option<String>,
}

/// One connection's access tokens: valid on return, refreshed ahead of expiry (5 minutes,
/// or at `refresh_in`), one refresh at a time however many callers wait. Cheap to clone;
/// clones share state.
///
/// After a refresh fails with [`AuthError::requires_reauthorization`], it marks the
/// store and returns that error at once, without calling Entra, until
/// [`reconnect`](Self::reconnect).
#[derive(Clone)]
pub struct TokenSession {
    inner: Arc<SessionInner>,
}

struct SessionInner {
    client: EntraClient,
    tenant: TenantId,
    store: Arc<dyn RefreshTokenStore>,
    refresh_skew: Duration,
    state: Mutex<State>,
    refresh_lock: tokio::sync::Mutex<()>,
}

/// Settings of a [`TokenSession`].
#[must_use]
pub struct TokenSessionBuilder {
    client: EntraClient,
    tenant: TenantId,
    store: Arc<dyn RefreshTokenStore>,
    refresh_skew: Duration,
    grant: Option<Grant>,
}

impl TokenSession {
    /// A session for the connection to `tenant`, whose refresh token lives in `store`.
    pub fn builder(
        client: EntraClient,
        tenant: TenantId,
        store: Arc<dyn RefreshTokenStore>,
    ) -> TokenSessionBuilder {
        TokenSessionBuilder {
            client,
            tenant,
            store,
            refresh_skew: DEFAULT_REFRESH_SKEW,
            grant: None,
        }
    }

    /// The connection's tenant.
    pub fn tenant_id(&self) -> &TenantId {
        &self.inner.tenant
    }

    /// A valid access token: the cached one, or a refreshed one.
    ///
    /// Single flight: check, take the lock, check again, refresh. A rotated refresh token
    /// is saved before the access token is handed out; if this future is dropped midway,
    /// the stored token is still valid (Entra does not revoke a used refresh token, spec
    /// §2b) and the next caller refreshes.
    ///
    /// # Errors
    /// [`AuthError`]: `requires_reauthorization()` when the grant is gone (then every
    /// call fails fast until [`reconnect`](Self::reconnect)); `is_retryable()` for
    /// transient trouble.
    pub async fn access_token(&self) -> Result<AccessToken, AuthError> {
        if let Some(token) = self.fresh()? {
            return Ok(token);
        }
        let _guard = self.inner.refresh_lock.lock().await;
        if let Some(token) = self.fresh()? {
            return Ok(token);
        }
        self.refresh_locked().await
    }

    /// Answers a claims challenge: Graph rejected `rejected` with `401` (or `403`) and
    /// `WWW-Authenticate: Bearer ... error="insufficient_claims", claims="<base64>"`;
    /// `claims` is that parameter base64-decoded (JSON text) [claims-challenge.md].
    ///
    /// Single flight with [`access_token`](Self::access_token): when the cached token is
    /// already another one than `rejected` (a concurrent caller answered the challenge),
    /// it is returned without a request. Otherwise the cached token is dropped and the
    /// refresh token is redeemed with `claims` (deep-merged with the `cp1` declaration),
    /// as Microsoft prescribes [app-resilience-continuous-access-evaluation.md]. Until a
    /// refresh succeeds, every refresh of this session carries the challenge. Never retry
    /// a Graph call with `rejected` itself.
    ///
    /// # Errors
    /// [`AuthError::InvalidClaims`] (nothing dropped, nothing sent) for claims that are not
    /// a JSON object of at most [`MAX_CLAIMS_BYTES`](crate::MAX_CLAIMS_BYTES). When Entra
    /// answers `interaction_required` or `invalid_grant`, the error
    /// [`requires_reauthorization`](AuthError::requires_reauthorization): the store is
    /// marked, the session fails fast like after any permanent failure, and
    /// [`AuthError::reconnect_claims`] (on this and every later error) gives the claims
    /// the reconnect's
    /// [`AuthorizationRequestBuilder::claims`](crate::AuthorizationRequestBuilder::claims)
    /// must carry. Transient trouble is [`is_retryable`](AuthError::is_retryable).
    pub async fn claims_challenge(
        &self,
        rejected: &SecretString,
        claims: &str,
    ) -> Result<AccessToken, AuthError> {
        // The whole merge, not just the parse: a challenge that cannot be merged with cp1
        // must not become the pending claims of every later refresh.
        self.inner.client.claims_param(Some(claims))?;
        if let Some(token) = self.answered_elsewhere(rejected)? {
            return Ok(token);
        }
        let _guard = self.inner.refresh_lock.lock().await;
        if let Some(token) = self.answered_elsewhere(rejected)? {
            return Ok(token);
        }
        {
            let mut state = self.state();
            state.cached = None;
            state.pending_claims = Some(claims.to_owned());
        }
        tracing::info!(
            tenant = self.inner.tenant.as_str(),
            "answering a claims challenge"
        );
        self.refresh_locked().await
    }

    /// The cached token when it is fresh and not `rejected` (constant-time comparison).
    fn answered_elsewhere(
        &self,
        rejected: &SecretString,
    ) -> Result<Option<AccessToken>, AuthError> {
        Ok(self
            .fresh()?
            .filter(|token| !same_secret(token.secret(), rejected)))
    }

    /// Forgets the cached access token whatever it is, so the next call refreshes.
    ///
    /// When Graph rejected a particular token, prefer
    /// [`invalidate_if_current`](Self::invalidate_if_current): with several requests in
    /// flight, a late 401 for the old token would otherwise drop the token another caller
    /// has just refreshed, and cost one more refresh.
    pub fn invalidate(&self) {
        self.state().cached = None;
    }

    /// Forgets the cached access token only if it is `token` (the one Graph rejected), so
    /// the next call refreshes; a newer token already cached stays. Returns whether the
    /// cached token was dropped. The comparison is in constant time.
    pub fn invalidate_if_current(&self, token: &SecretString) -> bool {
        let mut state = self.state();
        let current = state
            .cached
            .as_ref()
            .is_some_and(|cached| same_secret(&cached.token.secret, token));
        if current {
            state.cached = None;
        }
        current
    }

    /// Installs a new grant after the admin signed in again, clearing a permanent failure.
    /// The caller stores the grant's refresh token first (e.g. `ConnectionStore::reconnect`).
    ///
    /// # Errors
    /// [`AuthError::TenantMismatch`] when the grant is for another tenant.
    pub fn reconnect(&self, grant: &Grant) -> Result<(), AuthError> {
        self.check_tenant(grant)?;
        let cached = self.cache_from(&grant.access_token, grant.refresh_at);
        let mut state = self.state();
        state.failure = None;
        state.pending_claims = None;
        state.cached = Some(cached);
        tracing::info!(tenant = self.inner.tenant.as_str(), "session reconnected");
        Ok(())
    }

    /// Clears a permanent failure and the cached token, so the next call loads the stored
    /// refresh token again: for when another process reconnected the connection and saved
    /// the new grant's refresh token in the store.
    pub fn reset(&self) {
        let mut state = self.state();
        state.failure = None;
        state.pending_claims = None;
        state.cached = None;
    }

    fn check_tenant(&self, grant: &Grant) -> Result<(), AuthError> {
        if grant.tenant_id() == &self.inner.tenant {
            Ok(())
        } else {
            Err(AuthError::TenantMismatch {
                expected: self.inner.tenant.to_string(),
                actual: grant.tenant_id().to_string(),
            })
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain data replaced whole, so a poisoned lock holds a valid value.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn fresh(&self) -> Result<Option<AccessToken>, AuthError> {
        let state = self.state();
        if let Some(failure) = &state.failure {
            return Err(failure.to_error());
        }
        Ok(state
            .cached
            .as_ref()
            .filter(|cached| Instant::now() < cached.refresh_after)
            .map(|cached| cached.token.clone()))
    }

    fn cache_from(&self, token: &AccessToken, refresh_at: Option<OffsetDateTime>) -> CachedToken {
        let now = self.inner.client.now();
        let remaining = duration_until(now, token.expires_at);
        let instant_now = Instant::now();
        let expires = later(instant_now, remaining);
        let mut refresh_after = later(
            instant_now,
            remaining.saturating_sub(self.inner.refresh_skew),
        );
        if let Some(refresh_at) = refresh_at {
            refresh_after = refresh_after.min(later(instant_now, duration_until(now, refresh_at)));
        }
        CachedToken {
            token: token.clone(),
            refresh_after,
            expires,
        }
    }

    async fn refresh_locked(&self) -> Result<AccessToken, AuthError> {
        let current = self.state().cached.clone();
        match self.refresh_and_store().await {
            Ok(token) => Ok(token),
            Err(error) if error.requires_reauthorization() => {
                if let Some(entra) = error.entra_error() {
                    self.state().failure = Some(Failure::Entra(Box::new(entra.clone())));
                }
                self.state().cached = None;
                tracing::warn!(
                    tenant = self.inner.tenant.as_str(),
                    error = %error,
                    "refresh failed permanently; reauthorization required"
                );
                if let Err(store_error) =
                    self.inner.store.mark_reauthorization_required(&error).await
                {
                    tracing::error!(error = %store_error, "could not mark reauthorization required");
                }
                Err(error)
            }
            Err(error) => match current {
                // A proactive refresh failed transiently: the current token still works.
                Some(cached) if error.is_retryable() && Instant::now() < cached.expires => {
                    tracing::warn!(error = %error, "refresh failed; using the current token");
                    Ok(cached.token)
                }
                _ => Err(error),
            },
        }
    }

    async fn refresh_and_store(&self) -> Result<AccessToken, AuthError> {
        let stored = self
            .inner
            .store
            .load()
            .await?
            .ok_or(AuthError::NoRefreshToken)?;
        let claims = self.state().pending_claims.clone();
        let claims = claims.as_deref();
        let refreshed = match self
            .inner
            .client
            .refresh_inner(&self.inner.tenant, &stored.token, claims)
            .await
        {
            Ok(refreshed) => Ok((refreshed, stored.version)),
            Err(error) if error.requires_reauthorization() => {
                // Another replica may have rotated the token since we loaded it; its newer
                // token decides (compare-and-swap conflict path, read side).
                match self.inner.store.load().await? {
                    Some(newer) if newer.version != stored.version => self
                        .inner
                        .client
                        .refresh_inner(&self.inner.tenant, &newer.token, claims)
                        .await
                        .map(|refreshed| (refreshed, newer.version)),
                    _ => Err(error),
                }
            }
            Err(error) => Err(error),
        };
        let (refreshed, version) = refreshed?;
        self.save_rotated(&refreshed, version).await?;
        let cached = self.cache_from(&refreshed.access_token, refreshed.refresh_at);
        let token = cached.token.clone();
        let mut state = self.state();
        state.cached = Some(cached);
        // Answered: later refreshes go without the challenge.
        state.pending_claims = None;
        Ok(token)
    }

    async fn save_rotated(
        &self,
        refreshed: &RefreshedToken,
        version: TokenVersion,
    ) -> Result<(), AuthError> {
        if !refreshed.rotated {
            // No new refresh token: the stored one stays (spec §2b).
            return Ok(());
        }
        match self
            .inner
            .store
            .save(&refreshed.refresh_token, version)
            .await?
        {
            SaveOutcome::Saved(new_version) => {
                tracing::debug!(version = new_version.get(), "saved rotated refresh token");
            }
            SaveOutcome::Conflict => {
                // Someone saved a newer token meanwhile. Both are valid (Entra does not
                // revoke on use); keep theirs, and the next refresh loads it.
                tracing::debug!("refresh token saved concurrently elsewhere; keeping theirs");
            }
        }
        Ok(())
    }
}

fn same_secret(first: &SecretString, second: &SecretString) -> bool {
    bool::from(
        first
            .expose_secret()
            .as_bytes()
            .ct_eq(second.expose_secret().as_bytes()),
    )
}

/// `instant + duration`, capped at a century: lifetimes come from Entra and `Instant`
/// addition panics on overflow.
fn later(instant: Instant, duration: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    instant
        .checked_add(duration.min(CENTURY))
        .unwrap_or(instant)
}

fn duration_until(now: OffsetDateTime, then: OffsetDateTime) -> Duration {
    Duration::try_from(then - now).unwrap_or(Duration::ZERO)
}

impl fmt::Debug for TokenSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("TokenSession")
            .field("tenant", &self.inner.tenant)
            .field("has_cached_token", &state.cached.is_some())
            .field("reauthorization_required", &state.failure.is_some())
            .field("claims_challenge_pending", &state.pending_claims.is_some())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for TokenSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "token session for tenant {}", self.inner.tenant)
    }
}

impl TokenSessionBuilder {
    /// How long before expiry to refresh (default 5 minutes).
    pub fn refresh_skew(mut self, skew: Duration) -> Self {
        self.refresh_skew = skew;
        self
    }

    /// Starts with the access token of a fresh grant (its refresh token must already be
    /// in the store).
    pub fn grant(mut self, grant: Grant) -> Self {
        self.grant = Some(grant);
        self
    }

    /// Builds the session.
    ///
    /// # Errors
    /// [`AuthError::TenantMismatch`] when the grant is for another tenant.
    pub fn build(self) -> Result<TokenSession, AuthError> {
        let session = TokenSession {
            inner: Arc::new(SessionInner {
                client: self.client,
                tenant: self.tenant,
                store: self.store,
                refresh_skew: self.refresh_skew,
                state: Mutex::new(State::default()),
                refresh_lock: tokio::sync::Mutex::new(()),
            }),
        };
        if let Some(grant) = &self.grant {
            session.reconnect(grant)?;
        }
        Ok(session)
    }
}
