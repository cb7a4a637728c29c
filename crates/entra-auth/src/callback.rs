//! The redirect back from Entra: parse it, check `state`, map errors, redeem the code
//! (spec §1a, §2a, §5a).

use std::fmt;

use secrecy::{ExposeSecret as _, SecretString};
use subtle::ConstantTimeEq as _;
use url::Url;

use crate::authorize::PendingAuthorization;
use crate::client::EntraClient;
use crate::error::AuthError;
use crate::error::EntraError;
use crate::grant::Grant;

/// AADSTS numbers of "an admin must approve": 65001 (no consent yet, for admin-only
/// scopes), 90094/90095 (admin consent required / workflow), spec §4b. A redirect carries
/// no `error_codes`, so they are read from the description to word the outcome.
const ADMIN_APPROVAL_CODES: &[u64] = &[65001, 90094, 90095];

/// The parameters of a redirect back from Entra (authorize or admin consent), from the
/// redirect URL, its query, or a `form_post` body. The code is kept secret.
#[derive(Clone, Default)]
pub struct CallbackParams {
    pub(crate) code: Option<SecretString>,
    pub(crate) state: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) error_description: Option<String>,
    pub(crate) error_uri: Option<String>,
    pub(crate) admin_consent: Option<String>,
    pub(crate) tenant: Option<String>,
    pub(crate) scope: Option<String>,
}

impl CallbackParams {
    /// From the full redirect URL (its query, or its fragment for `response_mode=fragment`).
    ///
    /// # Errors
    /// [`AuthError::InvalidCallback`] when it is not a URL or a parameter repeats.
    pub fn from_redirect_url(redirect_url: &str) -> Result<Self, AuthError> {
        let url = Url::parse(redirect_url.trim())
            .map_err(|error| AuthError::InvalidCallback(format!("not a URL: {error}")))?;
        match (url.query(), url.fragment()) {
            (Some(query), _) if !query.is_empty() => Self::from_query(query),
            (_, Some(fragment)) => Self::from_query(fragment),
            _ => Self::from_query(""),
        }
    }

    /// From the query string (with or without the leading `?`).
    ///
    /// # Errors
    /// [`AuthError::InvalidCallback`] when a parameter repeats.
    pub fn from_query(query: &str) -> Result<Self, AuthError> {
        let query = query.trim().trim_start_matches(['?', '#']);
        let mut params = Self::default();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match name.as_ref() {
                "code" => {
                    if params.code.is_some() {
                        return Err(repeated("code"));
                    }
                    params.code = Some(SecretString::from(value.into_owned()));
                    continue;
                }
                "state" => &mut params.state,
                "error" => &mut params.error,
                "error_description" => &mut params.error_description,
                "error_uri" => &mut params.error_uri,
                "admin_consent" => &mut params.admin_consent,
                "tenant" => &mut params.tenant,
                "scope" => &mut params.scope,
                _ => continue,
            };
            if slot.is_some() {
                return Err(repeated(&name));
            }
            *slot = Some(value.into_owned());
        }
        Ok(params)
    }

    /// From an `application/x-www-form-urlencoded` body (`response_mode=form_post`).
    ///
    /// # Errors
    /// [`AuthError::InvalidCallback`] when a parameter repeats.
    pub fn from_form_body(body: &str) -> Result<Self, AuthError> {
        Self::from_query(body)
    }

    /// The `state` value, to look up the pending authorization.
    pub fn state(&self) -> Option<&str> {
        self.state.as_deref()
    }

    /// Whether the redirect carries an `error`.
    pub fn is_error(&self) -> bool {
        self.error.is_some()
    }

    pub(crate) fn entra_error(&self) -> Option<EntraError> {
        self.error.as_ref().map(|error| {
            EntraError {
                error: error.clone(),
                description: self.error_description.clone(),
                error_uri: self.error_uri.clone(),
                ..EntraError::default()
            }
            .with_codes_from_description()
        })
    }

    /// Constant-time `state` comparison; a missing `state` never matches.
    pub(crate) fn state_matches(&self, expected: &SecretString) -> bool {
        self.state.as_deref().is_some_and(|state| {
            bool::from(state.as_bytes().ct_eq(expected.expose_secret().as_bytes()))
        })
    }
}

fn repeated(name: &str) -> AuthError {
    AuthError::InvalidCallback(format!("parameter {name} appears more than once"))
}

impl fmt::Debug for CallbackParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackParams")
            .field("code", &self.code.as_ref().map(|_| "[REDACTED]"))
            .field("state", &self.state.as_ref().map(|_| "[REDACTED]"))
            .field("error", &self.error)
            .field("error_description", &self.error_description)
            .field("admin_consent", &self.admin_consent)
            .field("tenant", &self.tenant)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for CallbackParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.error, &self.code) {
            (Some(error), _) => write!(f, "callback with error {error}"),
            (None, Some(_)) => f.write_str("callback with code [REDACTED]"),
            (None, None) => f.write_str("callback without code or error"),
        }
    }
}

impl EntraClient {
    /// Completes a sign-in from its callback.
    ///
    /// In order: `state` is compared in constant time before anything else; an `error`
    /// becomes a typed error; the pending authorization must be younger than 10 minutes;
    /// the code is redeemed with the PKCE verifier; the id token's `aud`, `iss`, `nonce`,
    /// `exp`/`nbf` are checked; the granted scopes must cover the requested ones.
    ///
    /// A redirect without `state` is refused with [`AuthError::StateMismatch`] when it
    /// carries a code; when it carries only an error (Entra's documented error redirect
    /// has no `state`) the typed error is returned, since nothing is redeemed.
    ///
    /// # Errors
    /// [`AuthError::StateMismatch`], [`AuthError::AuthorizationDeclined`],
    /// [`AuthError::AdminApprovalRequired`], [`AuthError::AuthorizationFailed`],
    /// [`AuthError::AuthorizationExpired`], [`AuthError::InvalidCallback`], the token
    /// endpoint's errors, [`AuthError::InvalidIdToken`], [`AuthError::MissingScopes`].
    pub async fn complete_authorization(
        &self,
        pending: &PendingAuthorization,
        callback: &CallbackParams,
    ) -> Result<Grant, AuthError> {
        let state_matches = callback.state_matches(&pending.state);
        let error_without_state = callback.state.is_none() && callback.is_error();
        if !(state_matches || error_without_state) {
            tracing::warn!("callback state mismatch; nothing redeemed");
            return Err(AuthError::StateMismatch);
        }
        if let Some(error) = callback.entra_error() {
            return Err(self.authorize_error(error, pending));
        }
        // A `created_at` whose expiry overflows comes from a corrupted store: expired.
        if pending
            .checked_expires_at()
            .is_none_or(|expires_at| self.now() >= expires_at)
        {
            return Err(AuthError::AuthorizationExpired);
        }
        let code = callback
            .code
            .as_ref()
            .ok_or_else(|| AuthError::InvalidCallback("no code and no error".to_owned()))?;
        let parts = self.redeem_code(pending, code).await?;
        self.grant_from(
            parts,
            &pending.scopes,
            Some(&pending.nonce),
            &pending.authority,
        )
        .await
    }

    fn authorize_error(&self, error: EntraError, pending: &PendingAuthorization) -> AuthError {
        let admin_approval = error.error() == "consent_required"
            || error
                .error_codes()
                .iter()
                .any(|code| ADMIN_APPROVAL_CODES.contains(code));
        if admin_approval {
            return AuthError::AdminApprovalRequired {
                error: Box::new(error),
                admin_consent_url: self.admin_consent_link(&pending.authority),
            };
        }
        if error.error() == "access_denied" {
            return AuthError::AuthorizationDeclined(Box::new(error));
        }
        AuthError::AuthorizationFailed(Box::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_refused() {
        assert!(matches!(
            CallbackParams::from_query("code=a&code=b"),
            Err(AuthError::InvalidCallback(_))
        ));
        assert!(matches!(
            CallbackParams::from_query("state=a&state=b"),
            Err(AuthError::InvalidCallback(_))
        ));
    }

    #[test]
    fn fragment_is_read_when_there_is_no_query() {
        let params =
            CallbackParams::from_redirect_url("https://app.example/cb#code=abc&state=s").unwrap();
        assert_eq!(params.code.unwrap().expose_secret(), "abc");
        assert_eq!(params.state.as_deref(), Some("s"));
    }
}
