//! How the crates fit together, in three small pieces:
//!
//! 1. [`ConnectionTokens`]: `entra_auth::RefreshTokenStore` over a
//!    `connection_store::ConnectionStore`. The session saves each rotated refresh token
//!    through it (compare-and-swap on the token version), and when Microsoft refuses the
//!    grant for good it sets the connection's status to "reconnect needed", fenced by the
//!    sync lease when the refusal came during a leased sync.
//! 2. [`SessionTokens`]: `graph_client::TokenProvider` over an `entra_auth::TokenSession`,
//!    so Graph requests get fresh access tokens and a token Graph rejects is dropped.
//! 3. [`App`] and [`Linked`]: the app registration, and a stored connection opened into a
//!    session plus a Graph client.
//!
//! The library crates never depend on each other; these adapters are all the wiring a
//! service needs. Copy them into your own service as they are.

use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use async_trait::async_trait;
use connection_store::{
    Connection, ConnectionId, ConnectionStatus, ConnectionStore, LeaseHolder, OwnerId, StoreError,
};
use entra_auth::secrecy::{ExposeSecret as _, SecretString};
use entra_auth::{
    AuthError, ClientCredential, EntraClient, EntraClientBuilder, RefreshTokenStore, SaveOutcome,
    StoredRefreshToken, TokenSession,
};
use graph_client::{ClaimsChallenge, GraphClient, TokenError, TokenProvider};
use time::OffsetDateTime;

/// The Graph resource every simulator and the global cloud use in scope names
/// (`https://graph.microsoft.com/User.Read.All`).
pub(crate) const GLOBAL_GRAPH_RESOURCE: &str = "https://graph.microsoft.com";

// ---------------------------------------------------------------------------------------
// 1. Refresh tokens live in the connection store.
// ---------------------------------------------------------------------------------------

/// One connection's refresh token in a [`ConnectionStore`], for a `TokenSession`.
///
/// The two crates have their own `TokenVersion` types (neither depends on the other);
/// both count the same thing, so the numbers are copied across.
///
/// "Reconnect needed" is written with [`ConnectionStore::set_status`], or, while a sync
/// lease fences it ([`with_fence`](Self::with_fence), [`fence_while`](Self::fence_while)),
/// with [`ConnectionStore::set_status_fenced`]: a worker whose lease expired or was taken
/// over then writes nothing (the lease's new holder decides), like its other sync writes.
#[derive(Clone)]
pub struct ConnectionTokens {
    store: Arc<dyn ConnectionStore>,
    owner: OwnerId,
    id: ConnectionId,
    fence: Arc<Mutex<Option<LeaseHolder>>>,
}

impl ConnectionTokens {
    /// The refresh token of connection `id` of `owner` in `store`; the status write is
    /// not fenced.
    pub fn new(store: Arc<dyn ConnectionStore>, owner: OwnerId, id: ConnectionId) -> Self {
        Self {
            store,
            owner,
            id,
            fence: Arc::default(),
        }
    }

    /// Fences the status write by `holder`'s sync lease, for a session that serves one
    /// leased sync (the worker opens one per claimed connection).
    #[must_use]
    pub fn with_fence(mut self, holder: LeaseHolder) -> Self {
        self.fence = Arc::new(Mutex::new(Some(holder)));
        self
    }

    /// Fences the status write by `holder`'s sync lease until the guard is dropped, for
    /// a session that outlives one sync (the web app keeps one per connection for syncs
    /// and photos): refusals seen meanwhile, by the sync or by any other caller of the
    /// session, are written only while `holder` holds the lease. One leased sync at a
    /// time per session; clones share the fence.
    pub fn fence_while(&self, holder: LeaseHolder) -> FenceGuard {
        *self.fence_slot() = Some(holder.clone());
        FenceGuard {
            fence: Arc::clone(&self.fence),
            holder,
        }
    }

    fn fence_slot(&self) -> std::sync::MutexGuard<'_, Option<LeaseHolder>> {
        // Plain data replaced whole: a poisoned lock still holds a valid value.
        self.fence.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for ConnectionTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionTokens")
            .field("owner", &self.owner)
            .field("id", &self.id)
            .field("fence", &*self.fence_slot())
            .finish_non_exhaustive()
    }
}

/// Ends a [`ConnectionTokens::fence_while`] when dropped (also when the sync's future is
/// dropped), unless another sync set its own fence meanwhile.
#[derive(Debug)]
#[must_use = "the fence ends when the guard is dropped"]
pub struct FenceGuard {
    fence: Arc<Mutex<Option<LeaseHolder>>>,
    holder: LeaseHolder,
}

impl Drop for FenceGuard {
    fn drop(&mut self) {
        let mut slot = self.fence.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref() == Some(&self.holder) {
            *slot = None;
        }
    }
}

#[async_trait]
impl RefreshTokenStore for ConnectionTokens {
    async fn load(&self) -> Result<Option<StoredRefreshToken>, AuthError> {
        let stored = self
            .store
            .load_token(&self.owner, self.id)
            .await
            .map_err(AuthError::store)?;
        Ok(Some(StoredRefreshToken::new(
            stored.token,
            entra_auth::TokenVersion::new(stored.version.get()),
        )))
    }

    async fn save(
        &self,
        token: &SecretString,
        expected: entra_auth::TokenVersion,
    ) -> Result<SaveOutcome, AuthError> {
        let expected = connection_store::TokenVersion::new(expected.get());
        match self
            .store
            .replace_token(&self.owner, self.id, expected, token.clone())
            .await
        {
            Ok(saved) => Ok(SaveOutcome::Saved(entra_auth::TokenVersion::new(
                saved.get(),
            ))),
            // Another replica rotated first: its token stays, the session loads it next
            // time (both tokens are valid, Entra does not revoke a used one, spec §2b).
            Err(error) if error.is_conflict() => Ok(SaveOutcome::Conflict),
            Err(error) => Err(AuthError::store(error)),
        }
    }

    async fn mark_reauthorization_required(&self, reason: &AuthError) -> Result<(), AuthError> {
        // After a claims challenge, the reconnect's sign-in must carry the claims.
        let status = ConnectionStatus::NeedsReconnect {
            reason: plain_reason(reason),
            since: OffsetDateTime::now_utc(),
            claims: reason.reconnect_claims().and_then(reconnect_claims),
        };
        let fence = self.fence_slot().clone();
        let written = match &fence {
            Some(holder) => {
                self.store
                    .set_status_fenced(&self.owner, self.id, holder, status)
                    .await
            }
            None => self.store.set_status(&self.owner, self.id, status).await,
        };
        match written {
            Ok(_) => {
                tracing::warn!(connection = %self.id, "connection needs a reconnect");
                Ok(())
            }
            Err(error) => {
                if matches!(error, StoreError::LeaseLost { .. }) {
                    tracing::warn!(
                        connection = %self.id,
                        "the sync lease was lost: \"reconnect needed\" not written, the new holder decides"
                    );
                }
                Err(AuthError::store(error))
            }
        }
    }
}

/// `claims` (a claims request from Entra or a Graph challenge) as the store keeps it for
/// the reconnect's sign-in: compact JSON, at most
/// [`ConnectionStatus::MAX_CLAIMS_BYTES`]. Anything else is dropped with a warning: the
/// reconnect then signs in without it, and Entra challenges again if it must.
pub fn reconnect_claims(claims: &str) -> Option<String> {
    let compact = serde_json::from_str::<serde_json::Value>(claims)
        .ok()
        .filter(serde_json::Value::is_object)
        .map(|value| value.to_string());
    match compact {
        Some(compact) if compact.len() <= ConnectionStatus::MAX_CLAIMS_BYTES => Some(compact),
        _ => {
            tracing::warn!(
                bytes = claims.len(),
                "claims for the reconnect are not a JSON object within the store's limit; not kept"
            );
            None
        }
    }
}

/// A short, secret-free sentence for "reconnect needed": Entra's first description line
/// (`AADSTS50173: The provided grant has expired ...`), without the trace and correlation
/// ids that follow it. `AuthError` never carries a token, so nothing secret can leak.
pub fn plain_reason(error: &AuthError) -> String {
    const MAX_CHARS: usize = 300;
    let detail = match error.entra_error() {
        Some(entra) => entra
            .description()
            .and_then(|text| text.lines().next())
            .map_or_else(|| entra.error().to_owned(), str::to_owned),
        None => error.to_string(),
    };
    let reason = format!("Microsoft refused the saved sign-in: {}", detail.trim());
    reason.chars().take(MAX_CHARS).collect()
}

// ---------------------------------------------------------------------------------------
// 2. Graph asks the session for access tokens.
// ---------------------------------------------------------------------------------------

/// A [`TokenProvider`] for `graph-client` over one connection's [`TokenSession`].
#[derive(Clone, Debug)]
pub struct SessionTokens {
    session: TokenSession,
}

impl SessionTokens {
    /// Gives `session`'s access tokens to Graph.
    pub fn new(session: TokenSession) -> Self {
        Self { session }
    }
}

#[async_trait]
impl TokenProvider for SessionTokens {
    async fn access_token(&self) -> Result<SecretString, TokenError> {
        match self.session.access_token().await {
            Ok(token) => Ok(token.into_secret()),
            // The session already marked the connection "reconnect needed"; Graph's
            // client turns this into its own reauthorization error.
            Err(error) if error.requires_reauthorization() => {
                Err(TokenError::reauthorization_required(plain_reason(&error)).with_source(error))
            }
            Err(error) => Err(TokenError::new("could not get an access token").with_source(error)),
        }
    }

    async fn rejected(&self, token: &SecretString) {
        // Several requests may be rejected with the same token at once: drop the cached
        // token only while it is still the rejected one, so one refresh serves them all
        // and a late rejection never throws away a token that was just refreshed.
        self.session.invalidate_if_current(token);
    }

    async fn claims_challenge(
        &self,
        token: &SecretString,
        challenge: &ClaimsChallenge,
    ) -> Result<(), TokenError> {
        // Continuous access evaluation: Graph revoked `token` before its expiry. The
        // session refreshes once with the challenge's claims (single flight: concurrent
        // challenges of the same token share it); when Entra then wants a sign-in, the
        // session has marked the connection "reconnect needed", with the claims.
        match self
            .session
            .claims_challenge(token, challenge.claims())
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if error.requires_reauthorization() => {
                Err(TokenError::reauthorization_required(plain_reason(&error)).with_source(error))
            }
            Err(error) => {
                Err(TokenError::new("could not answer the claims challenge").with_source(error))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// 3. The app registration, and a stored connection opened for use.
// ---------------------------------------------------------------------------------------

/// The Entra app registration the examples sign in with.
#[derive(Clone)]
pub struct App {
    /// The application (client) id.
    pub client_id: String,
    /// The client secret of a confidential ("Web") app; `None` for a public client.
    pub client_secret: Option<SecretString>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

impl App {
    /// An Entra client for `cloud`, redirecting to `redirect_uri` when given.
    ///
    /// # Errors
    /// When the cloud's URLs or the client id are invalid.
    pub fn entra_client(
        &self,
        cloud: &connection_store::Cloud,
        redirect_uri: Option<&str>,
    ) -> anyhow::Result<EntraClient> {
        Ok(self.entra_client_builder(cloud, redirect_uri)?.build()?)
    }

    /// The settings [`entra_client`](Self::entra_client) builds, to change before
    /// building: e.g. `.client_capability_cp1(false)` for a service that cannot answer
    /// claims challenges (the default declares `cp1`: CAE tokens, challenges handled by
    /// [`SessionTokens`]).
    ///
    /// # Errors
    /// When the cloud's URLs are invalid.
    pub fn entra_client_builder(
        &self,
        cloud: &connection_store::Cloud,
        redirect_uri: Option<&str>,
    ) -> anyhow::Result<EntraClientBuilder> {
        let mut builder = EntraClient::builder(self.client_id.clone()).cloud(entra_cloud(cloud)?);
        if let Some(secret) = &self.client_secret {
            builder = builder.credential(ClientCredential::secret(secret.expose_secret()));
        }
        if let Some(uri) = redirect_uri {
            builder = builder.redirect_uri(uri);
        }
        Ok(builder)
    }
}

/// The sign-in side of a stored cloud. For custom endpoints (a simulator), `graph` is
/// Graph's API root for `graph-client`, while scopes keep the global Graph resource
/// name, which is what a simulator of the global cloud grants.
///
/// # Errors
/// When a custom login URL is not an absolute http(s) URL.
pub(crate) fn entra_cloud(cloud: &connection_store::Cloud) -> anyhow::Result<entra_auth::Cloud> {
    Ok(match cloud {
        connection_store::Cloud::UsGovernment => entra_auth::Cloud::UsGovernment,
        connection_store::Cloud::UsGovernmentDod => entra_auth::Cloud::UsGovernmentDod,
        connection_store::Cloud::China => entra_auth::Cloud::China,
        connection_store::Cloud::Custom { login, .. } => {
            entra_auth::Cloud::custom(login, GLOBAL_GRAPH_RESOURCE)?
        }
        // Global, and any cloud a newer connection-store adds.
        _ => entra_auth::Cloud::Global,
    })
}

/// Graph's v1.0 root for a stored cloud.
pub(crate) fn graph_base(cloud: &connection_store::Cloud) -> String {
    let national = match cloud {
        connection_store::Cloud::UsGovernment => graph_client::GraphCloud::UsGovernment,
        connection_store::Cloud::UsGovernmentDod => graph_client::GraphCloud::UsGovernmentDod,
        connection_store::Cloud::China => graph_client::GraphCloud::China,
        connection_store::Cloud::Custom { graph, .. } => {
            return graph.trim_end_matches('/').to_owned();
        }
        _ => graph_client::GraphCloud::Global,
    };
    national.base_url().to_owned()
}

/// A stored connection opened for use: its record, its token session and a Graph client
/// whose requests carry the session's tokens.
#[derive(Clone, Debug)]
pub struct Linked {
    /// The connection as stored when opened.
    pub connection: Connection,
    /// Its access tokens.
    pub session: TokenSession,
    /// Where the session keeps the refresh token; fence its status write with
    /// [`ConnectionTokens::fence_while`] while a leased sync runs.
    pub tokens: Arc<ConnectionTokens>,
    /// Microsoft Graph, signed in as the connection's admin.
    pub graph: GraphClient,
}

impl Linked {
    /// Opens connection `id` of `owner`: a session over its stored refresh token and a
    /// Graph client for its cloud. Makes no request; the first Graph call refreshes.
    ///
    /// # Errors
    /// When the connection is not found (or is another owner's), or the app settings
    /// are invalid.
    pub async fn open(
        store: Arc<dyn ConnectionStore>,
        owner: &OwnerId,
        id: ConnectionId,
        app: &App,
    ) -> anyhow::Result<Self> {
        let connection = store.get(owner, id).await.map_err(describe_store_error)?;
        let client = app.entra_client(&connection.cloud, None)?;
        let tokens = Arc::new(ConnectionTokens::new(store, owner.clone(), id));
        let session = session(&client, &connection, Arc::clone(&tokens))?;
        let graph = graph_client(&connection.cloud, session.clone())?;
        Ok(Self {
            connection,
            session,
            tokens,
            graph,
        })
    }
}

/// A token session for `connection`'s tenant over its stored refresh token.
///
/// # Errors
/// When the stored tenant id is not valid.
pub fn session(
    client: &EntraClient,
    connection: &Connection,
    tokens: Arc<ConnectionTokens>,
) -> anyhow::Result<TokenSession> {
    let tenant = entra_auth::TenantId::parse(connection.tenant.as_str())
        .context("the stored tenant id is not valid")?;
    Ok(TokenSession::builder(client.clone(), tenant, tokens).build()?)
}

/// A Graph client for `cloud` over `session`.
///
/// # Errors
/// When the Graph URL is invalid (`http` is accepted only on loopback).
pub fn graph_client(
    cloud: &connection_store::Cloud,
    session: TokenSession,
) -> anyhow::Result<GraphClient> {
    graph_client_with(cloud, SessionTokens::new(session))
}

/// A Graph client for `cloud` over any token provider.
///
/// # Errors
/// When the Graph URL is invalid (`http` is accepted only on loopback).
pub(crate) fn graph_client_with(
    cloud: &connection_store::Cloud,
    tokens: impl TokenProvider + 'static,
) -> anyhow::Result<GraphClient> {
    Ok(GraphClient::builder(tokens)
        .base_url(graph_base(cloud))
        .build()?)
}

/// A store error in plain words, with what to do next.
pub fn describe_store_error(error: StoreError) -> anyhow::Error {
    let hint = match &error {
        StoreError::NotFound { .. } => "run `connections list` to see this owner's connections",
        StoreError::NameTaken { .. } => "choose another --name",
        StoreError::TenantAlreadyConnected { .. } => {
            "this tenant is linked already; use --reconnect with that connection instead"
        }
        StoreError::MissingKey { .. } => {
            "set M365_LINK_STORE_KEY to the key this store was written with"
        }
        _ if error.is_retryable() => "the store is unavailable; try again in a moment",
        _ => "",
    };
    if hint.is_empty() {
        anyhow::Error::new(error)
    } else {
        anyhow::anyhow!("{error}\nnext step: {hint}")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use connection_store::{
        AdminAccount, Cloud, ManualClock, MemoryStore, NewConnection, TenantId,
    };
    use entra_auth::EntraError;

    use super::*;

    const TTL: Duration = Duration::from_secs(30);

    /// A store on a manual clock with one connection, and its owner and id.
    async fn one_connection() -> (Arc<dyn ConnectionStore>, ManualClock, OwnerId, ConnectionId) {
        let clock = ManualClock::default();
        let store: Arc<dyn ConnectionStore> =
            Arc::new(MemoryStore::with_clock(Arc::new(clock.clone())));
        let owner = OwnerId::new("customer-1");
        let connection = store
            .create(
                &owner,
                NewConnection {
                    name: "Contoso".into(),
                    tenant: TenantId::new("72f988bf-86f1-41af-91ab-2d7cd011db47"),
                    cloud: Cloud::Global,
                    admin: AdminAccount {
                        object_id: "6e7b768e-07e2-4810-8459-485f84f8f204".into(),
                        username: "admin@contoso.onmicrosoft.com".into(),
                        display_name: None,
                    },
                    scopes: vec!["User.Read.All".into()],
                    refresh_token: SecretString::from("rt-1"),
                },
            )
            .await
            .expect("create");
        (store, clock, owner, connection.id)
    }

    fn revoked() -> AuthError {
        AuthError::ReauthorizationRequired(Box::new(
            EntraError::new("invalid_grant")
                .with_description("AADSTS50173: The provided grant has expired.\r\nTrace ID: t-1"),
        ))
    }

    fn holder(name: &str) -> LeaseHolder {
        LeaseHolder::new(name).expect("valid holder")
    }

    /// Takes `holder`'s lease, after any earlier one expired.
    async fn take_lease(
        store: &Arc<dyn ConnectionStore>,
        clock: &ManualClock,
        owner: &OwnerId,
        id: ConnectionId,
        holder: &LeaseHolder,
    ) {
        clock.advance(TTL + Duration::from_secs(1));
        let lease = store
            .acquire_lease(owner, id, holder, TTL)
            .await
            .expect("acquire_lease");
        assert!(lease.is_some(), "{holder} gets the lease");
    }

    #[tokio::test]
    async fn reconnect_needed_is_not_written_by_a_holder_whose_lease_was_taken_over() {
        let (store, clock, owner, id) = one_connection().await;
        let (stale, current) = (holder("worker-1"), holder("worker-2"));
        take_lease(&store, &clock, &owner, id, &stale).await;
        let stale_tokens =
            ConnectionTokens::new(Arc::clone(&store), owner.clone(), id).with_fence(stale);
        take_lease(&store, &clock, &owner, id, &current).await;
        let before = store.get(&owner, id).await.expect("get");

        let refused = stale_tokens.mark_reauthorization_required(&revoked()).await;
        assert!(refused.is_err(), "{refused:?}");
        assert_eq!(
            store.get(&owner, id).await.expect("get"),
            before,
            "nothing written"
        );

        let current_tokens =
            ConnectionTokens::new(Arc::clone(&store), owner.clone(), id).with_fence(current);
        current_tokens
            .mark_reauthorization_required(&revoked())
            .await
            .expect("the lease's holder writes the status");
        let marked = store.get(&owner, id).await.expect("get");
        let ConnectionStatus::NeedsReconnect { reason, .. } = &marked.status else {
            panic!("not marked: {:?}", marked.status);
        };
        assert_eq!(
            reason,
            "Microsoft refused the saved sign-in: AADSTS50173: The provided grant has expired."
        );
        assert_eq!(marked.revision, before.revision + 1);
    }

    #[tokio::test]
    async fn a_shared_session_is_fenced_only_while_its_sync_runs() {
        let (store, clock, owner, id) = one_connection().await;
        let tokens = ConnectionTokens::new(Arc::clone(&store), owner.clone(), id);
        let sync = holder("web-sync-1");
        take_lease(&store, &clock, &owner, id, &sync).await;
        let fenced = tokens.clone().fence_while(sync.clone());
        take_lease(&store, &clock, &owner, id, &holder("other-instance")).await;

        // A clone (the session's copy) sees the fence of the running sync.
        let refused = tokens.mark_reauthorization_required(&revoked()).await;
        assert!(refused.is_err(), "{refused:?}");
        assert_eq!(
            store.get(&owner, id).await.expect("get").status,
            ConnectionStatus::Active
        );

        // The sync ended: a refusal seen by a photo request afterwards is written.
        drop(fenced);
        tokens
            .mark_reauthorization_required(&revoked())
            .await
            .expect("unfenced write");
        assert!(matches!(
            store.get(&owner, id).await.expect("get").status,
            ConnectionStatus::NeedsReconnect { .. }
        ));
    }

    #[test]
    fn a_fence_guard_does_not_end_a_later_syncs_fence() {
        let store: Arc<dyn ConnectionStore> = Arc::new(MemoryStore::new());
        let tokens = ConnectionTokens::new(store, OwnerId::new("o"), ConnectionId::new());
        let first = tokens.fence_while(holder("sync-1"));
        let second = tokens.fence_while(holder("sync-2"));
        drop(first);
        assert_eq!(*tokens.fence_slot(), Some(holder("sync-2")));
        drop(second);
        assert_eq!(*tokens.fence_slot(), None);
    }

    #[test]
    fn app_debug_redacts_the_secret() {
        let app = App {
            client_id: "client".into(),
            client_secret: Some(SecretString::from("very-secret-value")),
        };
        let debug = format!("{app:?}");
        assert!(!debug.contains("very-secret-value"), "{debug}");
        assert!(debug.contains("REDACTED"), "{debug}");
    }
}
