//! The admin-consent link for "forward this to your IT admin", and its callback
//! (spec §1b).
//!
//! The callback's `tenant` can be forged and is never an identity: only a sign-in (its
//! validated id token `tid`) makes a connection. The API calls it `claimed_tenant`.

use std::fmt;

use secrecy::SecretString;
use url::Url;

use crate::callback::CallbackParams;
use crate::client::EntraClient;
use crate::cloud::Authority;
use crate::error::AuthError;
use crate::random::random_token;
use crate::token::split_scopes;

/// An admin-consent request made by this app, with the `state` to check on return.
pub struct AdminConsentRequest {
    url: Url,
    state: SecretString,
}

impl AdminConsentRequest {
    /// The `/{tenant}/v2.0/adminconsent` URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The `state` sent (to find this request again on return).
    pub fn state(&self) -> &SecretString {
        &self.state
    }

    /// Checks the callback's `state` (constant time) and reads its outcome.
    ///
    /// # Errors
    /// [`AuthError::StateMismatch`]; otherwise as [`AdminConsent::from_callback`].
    pub fn complete(&self, callback: &CallbackParams) -> Result<AdminConsent, AuthError> {
        if !callback.state_matches(&self.state) {
            return Err(AuthError::StateMismatch);
        }
        AdminConsent::from_callback(callback)
    }
}

impl fmt::Debug for AdminConsentRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConsentRequest")
            .field("endpoint", &self.url.path())
            .field("state", &"[REDACTED]")
            .finish()
    }
}

impl fmt::Display for AdminConsentRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "admin consent request to {}", self.url.path())
    }
}

/// A successful admin-consent callback. Informational only: it tells the app to run a
/// sign-in now; it is not a connection and its tenant is not trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdminConsent {
    claimed_tenant: Option<String>,
    scopes: Vec<String>,
}

impl AdminConsent {
    /// Reads an admin-consent callback without a `state` check (for links forwarded to
    /// an admin, which the app cannot tie to a request).
    ///
    /// # Errors
    /// [`AuthError::AuthorizationDeclined`] for `access_denied`, `consent_required` or
    /// `permission_denied` (Entra sends `admin_consent=True` even then, spec §1b),
    /// [`AuthError::AuthorizationFailed`] for other errors, [`AuthError::InvalidCallback`]
    /// when `admin_consent` is not `True`.
    pub fn from_callback(callback: &CallbackParams) -> Result<Self, AuthError> {
        if let Some(error) = callback.entra_error() {
            return Err(
                if matches!(
                    error.error(),
                    "access_denied" | "consent_required" | "permission_denied"
                ) {
                    AuthError::AuthorizationDeclined(Box::new(error))
                } else {
                    AuthError::AuthorizationFailed(Box::new(error))
                },
            );
        }
        if !callback
            .admin_consent
            .as_deref()
            .is_some_and(|value| value.eq_ignore_ascii_case("true"))
        {
            return Err(AuthError::InvalidCallback(
                "admin_consent is not True".to_owned(),
            ));
        }
        Ok(Self {
            claimed_tenant: callback.tenant.clone(),
            scopes: callback
                .scope
                .as_deref()
                .map(split_scopes)
                .unwrap_or_default(),
        })
    }

    /// The tenant the redirect *claims* consented. It can be forged: never use it to
    /// identify or authorize anyone (spec §1b); take the tenant from a sign-in's id token.
    pub fn claimed_tenant(&self) -> Option<&str> {
        self.claimed_tenant.as_deref()
    }

    /// The scopes the redirect lists as granted (not all variants send them).
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }
}

impl EntraClient {
    /// An admin-consent request for `tenant` (a tenant id, a domain or `organizations`;
    /// never `common`, spec §1b) with scope `{graph root}/.default` and a random `state`.
    ///
    /// # Errors
    /// [`AuthError::InvalidConfiguration`] without a redirect URI or for `common`;
    /// [`AuthError::Randomness`].
    pub fn admin_consent_request(
        &self,
        tenant: &Authority,
    ) -> Result<AdminConsentRequest, AuthError> {
        if tenant.as_str() == "common" || tenant.as_str() == "consumers" {
            return Err(AuthError::InvalidConfiguration(
                "admin consent needs a tenant or organizations, not common or consumers".to_owned(),
            ));
        }
        let redirect_uri = self.redirect_uri()?;
        let state = random_token()?;
        let mut url = self.inner.cloud.admin_consent_endpoint(tenant);
        url.query_pairs_mut()
            .append_pair("client_id", self.client_id())
            .append_pair("scope", &self.default_scope())
            .append_pair("redirect_uri", redirect_uri.as_str())
            .append_pair("state", &state);
        Ok(AdminConsentRequest {
            url,
            state: SecretString::from(state),
        })
    }

    /// An admin-consent link without `state`, to forward to an IT admin (used in
    /// [`AuthError::AdminApprovalRequired`]). Without a redirect URI the link has none and
    /// Entra uses a registered one.
    pub fn admin_consent_link(&self, tenant: &Authority) -> Url {
        let tenant = if tenant.as_str() == "common" || tenant.as_str() == "consumers" {
            Authority::organizations()
        } else {
            tenant.clone()
        };
        let mut url = self.inner.cloud.admin_consent_endpoint(&tenant);
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("client_id", self.client_id())
                .append_pair("scope", &self.default_scope());
            if let Some(redirect_uri) = &self.inner.redirect_uri {
                query.append_pair("redirect_uri", redirect_uri.as_str());
            }
        }
        url
    }

    fn default_scope(&self) -> String {
        format!("{}/.default", self.inner.cloud.graph_root())
    }
}
