//! Where the bearer token comes from: [`TokenProvider`], and [`StaticToken`] for examples and tests.

use async_trait::async_trait;
use secrecy::SecretString;

use crate::challenge::ClaimsChallenge;

/// Gives the client a bearer token for Microsoft Graph and hears when Graph rejected one.
///
/// Implement it over whatever holds your tokens (an `entra_auth` session, a cache, a
/// managed identity). The client asks for a token before every request, so the provider
/// should answer from a cache and refresh only when needed. When Graph answers 401, the
/// client calls [`rejected`](TokenProvider::rejected) with the token it sent, asks for a
/// new one and retries once (DESIGN graph-client; spec 11, `InvalidAuthenticationToken`).
///
/// When Graph answers 401 (or 403) with a claims challenge (continuous access evaluation,
/// spec 7), the client calls [`claims_challenge`](TokenProvider::claims_challenge) instead,
/// then asks for a new token and retries once with it; it never resends the challenged
/// token. A provider that declares the `cp1` client capability overrides
/// `claims_challenge` to refresh with the challenge's claims.
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

    /// Graph answered `token` with a claims challenge (spec 7): the token was revoked by
    /// continuous access evaluation, or falls short of a Conditional Access policy.
    ///
    /// Drop `token` from any cache, so that the next
    /// [`access_token`](TokenProvider::access_token) call gives a new token, requested
    /// from the token endpoint with [`ClaimsChallenge::claims`] (merged with the client
    /// capabilities). Many requests may be challenged at once for the same token: refresh
    /// once (single flight) and only while the cached token is still `token`. Refreshing
    /// here or in the next `access_token` call are both fine. The client never resends
    /// `token`: if the next `access_token` call gives it again, the request fails with
    /// [`GraphError::ClaimsChallenge`](crate::GraphError::ClaimsChallenge).
    ///
    /// The default drops the token through [`rejected`](TokenProvider::rejected), which
    /// suits a provider that did not declare `cp1` (Graph then sends no challenges).
    ///
    /// # Errors
    ///
    /// A [`TokenError`] when no token satisfying the claims can be had; mark it with
    /// [`TokenError::reauthorization_required`] when only a new sign-in with the claims can
    /// help (`interaction_required`). The request then fails with
    /// [`GraphError::Token`](crate::GraphError::Token), which keeps the challenge
    /// ([`GraphError::claims_challenge`](crate::GraphError::claims_challenge)).
    async fn claims_challenge(
        &self,
        token: &SecretString,
        challenge: &ClaimsChallenge,
    ) -> Result<(), TokenError> {
        let _ = challenge;
        self.rejected(token).await;
        Ok(())
    }
}

/// A token provider could not give a token.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TokenError {
    message: String,
    reauthorization_required: bool,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
    /// The claims challenge the provider was answering when it failed.
    challenge: Option<Box<ClaimsChallenge>>,
}

impl TokenError {
    /// A token could not be had for now (network, token endpoint down); trying later may work.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            reauthorization_required: false,
            source: None,
            challenge: None,
        }
    }

    /// The grant is gone (revoked, expired, consent withdrawn): only a new sign-in helps.
    pub fn reauthorization_required(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            reauthorization_required: true,
            source: None,
            challenge: None,
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

    /// The claims challenge that asked for the token, when the provider failed while
    /// answering one: a reconnect passes its [`claims`](ClaimsChallenge::claims) to the
    /// authorize request (spec 7). Set by the client.
    pub fn claims_challenge(&self) -> Option<&ClaimsChallenge> {
        self.challenge.as_deref()
    }

    /// Keeps the challenge being answered.
    #[must_use]
    pub(crate) fn with_challenge(mut self, challenge: &ClaimsChallenge) -> Self {
        if self.challenge.is_none() {
            self.challenge = Some(Box::new(challenge.clone()));
        }
        self
    }
}

/// A [`TokenProvider`] that always gives the same token: for examples, scripts and tests.
///
/// It cannot refresh, so a rejected token stays rejected (the client then reports
/// [`GraphError::Unauthorized`](crate::GraphError::Unauthorized) after its one retry), and
/// a claims challenge is [`GraphError::ClaimsChallenge`](crate::GraphError::ClaimsChallenge)
/// at once, since it gives the challenged token again.
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

    async fn claims_challenge(
        &self,
        token: &SecretString,
        challenge: &ClaimsChallenge,
    ) -> Result<(), TokenError> {
        (**self).claims_challenge(token, challenge).await
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
    fn token_error_keeps_the_challenge_it_answered() {
        let challenge = ClaimsChallenge::from_header_values(
            401,
            [r#"Bearer error="insufficient_claims", claims="eyJhIjoxfQ""#],
        )
        .unwrap();
        let error = TokenError::reauthorization_required("interaction_required");
        assert!(error.claims_challenge().is_none());
        let error = error.with_challenge(&challenge);
        assert_eq!(error.claims_challenge().unwrap().claims(), r#"{"a":1}"#);
        assert!(error.requires_reauthorization());
    }

    #[tokio::test]
    async fn default_claims_challenge_reports_the_token_rejected() {
        #[derive(Default)]
        struct Recording(std::sync::Mutex<Vec<String>>);
        #[async_trait]
        impl TokenProvider for Recording {
            async fn access_token(&self) -> Result<SecretString, TokenError> {
                Ok(SecretString::from("t"))
            }
            async fn rejected(&self, token: &SecretString) {
                self.0
                    .lock()
                    .unwrap()
                    .push(token.expose_secret().to_owned());
            }
        }
        let challenge = ClaimsChallenge::from_header_values(
            403,
            [r#"Bearer error=insufficient_claims, claims="e30""#],
        )
        .unwrap();
        let provider = std::sync::Arc::new(Recording::default());
        // Through the `Arc` impl, which forwards to the default.
        TokenProvider::claims_challenge(&provider, &SecretString::from("sent"), &challenge)
            .await
            .unwrap();
        assert_eq!(*provider.0.lock().unwrap(), ["sent"]);
    }

    #[test]
    fn token_provider_is_object_safe() {
        let provider: std::sync::Arc<dyn TokenProvider> =
            std::sync::Arc::new(StaticToken::new("x"));
        drop(provider);
    }
}
