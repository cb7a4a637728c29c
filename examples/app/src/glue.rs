//! How the crates fit together, in three small pieces:
//!
//! 1. [`ConnectionTokens`]: `entra_auth::RefreshTokenStore` over a
//!    `connection_store::ConnectionStore`. The session saves each rotated refresh token
//!    through it (compare-and-swap on the token version), and when Microsoft refuses the
//!    grant for good it sets the connection's status to "reconnect needed".
//! 2. [`SessionTokens`]: `graph_client::TokenProvider` over an `entra_auth::TokenSession`,
//!    so Graph requests get fresh access tokens and a token Graph rejects is dropped.
//! 3. [`App`] and [`Linked`]: the app registration, and a stored connection opened into a
//!    session plus a Graph client.
//!
//! The library crates never depend on each other; these adapters are all the wiring a
//! service needs. Copy them into your own service as they are.

use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use connection_store::{
    Connection, ConnectionId, ConnectionStatus, ConnectionStore, OwnerId, StoreError,
};
use entra_auth::secrecy::{ExposeSecret as _, SecretString};
use entra_auth::{
    AuthError, ClientCredential, EntraClient, RefreshTokenStore, SaveOutcome, StoredRefreshToken,
    TokenSession,
};
use graph_client::{GraphClient, TokenError, TokenProvider};
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
#[derive(Clone)]
pub struct ConnectionTokens {
    store: Arc<dyn ConnectionStore>,
    owner: OwnerId,
    id: ConnectionId,
}

impl ConnectionTokens {
    /// The refresh token of connection `id` of `owner` in `store`.
    pub fn new(store: Arc<dyn ConnectionStore>, owner: OwnerId, id: ConnectionId) -> Self {
        Self { store, owner, id }
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
        let status = ConnectionStatus::NeedsReconnect {
            reason: plain_reason(reason),
            since: OffsetDateTime::now_utc(),
        };
        self.store
            .set_status(&self.owner, self.id, status)
            .await
            .map_err(AuthError::store)?;
        tracing::warn!(connection = %self.id, "connection needs a reconnect");
        Ok(())
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
        let mut builder = EntraClient::builder(self.client_id.clone()).cloud(entra_cloud(cloud)?);
        if let Some(secret) = &self.client_secret {
            builder = builder.credential(ClientCredential::secret(secret.expose_secret()));
        }
        if let Some(uri) = redirect_uri {
            builder = builder.redirect_uri(uri);
        }
        Ok(builder.build()?)
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
        let session = session(&client, &connection, tokens)?;
        let graph = graph_client(&connection.cloud, session.clone())?;
        Ok(Self {
            connection,
            session,
            graph,
        })
    }
}

/// A token session for `connection`'s tenant over its stored refresh token.
///
/// # Errors
/// When the stored tenant id is not valid.
pub(crate) fn session(
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
pub(crate) fn graph_client(
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
    use super::*;

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
