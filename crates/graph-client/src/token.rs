//! Where the bearer token comes from: [`TokenProvider`], and [`StaticToken`] for examples and tests.

use async_trait::async_trait;
use secrecy::SecretString;

/// Gives the client a bearer token for Microsoft Graph and hears when Graph rejected one.
///
/// Implement it over whatever holds your tokens (an `entra_auth` session, a cache, a
/// managed identity). The client asks for a token before every request, so the provider
/// should answer from a cache and refresh only when needed. When Graph answers 401, the
/// client calls [`rejected`](TokenProvider::rejected) with the token it sent, asks for a
/// new one and retries once (DESIGN graph-client; spec 11, `InvalidAuthenticationToken`).
#[async_trait]
pub trait TokenProvider: Send + Sync {
    /// A bearer access token for Microsoft Graph.
    ///
    /// # Errors
    ///
    /// A [`TokenError`] when no token can be had; mark it with
    /// [`TokenError::reauthorization_required`] when only a new sign-in can help.
    async fn access_token(&self) -> Result<SecretString, TokenError>;

    /// Graph rejected `token` with 401: drop it from any cache so that the next
    /// [`access_token`](TokenProvider::access_token) call returns a fresh one.
    async fn rejected(&self, token: &SecretString);
}

/// A token provider could not give a token.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TokenError {
    message: String,
    reauthorization_required: bool,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl TokenError {
    /// A token could not be had for now (network, token endpoint down); trying later may work.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            reauthorization_required: false,
            source: None,
        }
    }

    /// The grant is gone (revoked, expired, consent withdrawn): only a new sign-in helps.
    pub fn reauthorization_required(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            reauthorization_required: true,
            source: None,
        }
    }

    /// Keeps the underlying cause as this error's `source()`.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// True when only a new sign-in can give a token again.
    pub fn requires_reauthorization(&self) -> bool {
        self.reauthorization_required
    }
}

/// A [`TokenProvider`] that always gives the same token: for examples, scripts and tests.
///
/// It cannot refresh, so a rejected token stays rejected (the client then reports
/// [`GraphError::Unauthorized`](crate::GraphError::Unauthorized) after its one retry).
#[derive(Clone)]
pub struct StaticToken {
    token: SecretString,
}

impl StaticToken {
    /// A provider for this bearer token.
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: SecretString::from(token.into()),
        }
    }
}

impl std::fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticToken([REDACTED])")
    }
}

/// A shared provider is a provider: pass an `Arc<dyn TokenProvider>` (or an `Arc` of
/// your own type) wherever one is asked for.
#[async_trait]
impl<P: TokenProvider + ?Sized> TokenProvider for std::sync::Arc<P> {
    async fn access_token(&self) -> Result<SecretString, TokenError> {
        (**self).access_token().await
    }

    async fn rejected(&self, token: &SecretString) {
        (**self).rejected(token).await;
    }
}

#[async_trait]
impl TokenProvider for StaticToken {
    async fn access_token(&self) -> Result<SecretString, TokenError> {
        Ok(self.token.clone())
    }

    async fn rejected(&self, _token: &SecretString) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[tokio::test]
    async fn static_token_gives_its_token_and_redacts_debug() {
        let provider = StaticToken::new("secret-token-value");
        let token = provider.access_token().await.unwrap();
        assert_eq!(token.expose_secret(), "secret-token-value");
        let debug = format!("{provider:?}");
        assert!(!debug.contains("secret-token-value"), "{debug}");
        assert!(debug.contains("REDACTED"));
    }

    #[test]
    fn token_error_says_whether_reauthorization_is_needed() {
        assert!(TokenError::reauthorization_required("revoked").requires_reauthorization());
        assert!(!TokenError::new("network").requires_reauthorization());
    }

    #[test]
    fn token_provider_is_object_safe() {
        let provider: std::sync::Arc<dyn TokenProvider> =
            std::sync::Arc::new(StaticToken::new("x"));
        drop(provider);
    }
}
