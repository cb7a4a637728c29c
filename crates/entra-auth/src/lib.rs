#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod admin_consent;
mod authorize;
mod callback;
mod claims;
mod client;
mod clock;
mod cloud;
mod credentials;
mod device;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod grant;
mod http;
mod id_token;
mod random;
mod session;
mod signing_keys;
mod throttle;
mod token;

pub use admin_consent::{AdminConsent, AdminConsentRequest};
pub use authorize::{
    AuthorizationRequest, AuthorizationRequestBuilder, PENDING_AUTHORIZATION_LIFETIME,
    PendingAuthorization, Prompt, ResponseMode,
};
pub use callback::CallbackParams;
pub use claims::MAX_CLAIMS_BYTES;
pub use client::{
    DEFAULT_ID_TOKEN_SKEW, DEFAULT_SCOPES, DEFAULT_TIMEOUT, EntraClient, EntraClientBuilder,
};
pub use clock::{Clock, SystemClock};
pub use cloud::{Authority, Cloud, ObjectId, TenantId};
pub use credentials::{CertificateCredential, ClientCredential};
pub use device::DeviceAuthorization;
pub use error::{AuthError, EntraError, IdTokenError};
pub use grant::Grant;
pub use id_token::Identity;
pub use session::{
    DEFAULT_REFRESH_SKEW, RefreshTokenStore, SaveOutcome, StoredRefreshToken, TokenSession,
    TokenSessionBuilder, TokenVersion,
};
pub use throttle::{BAD_REQUEST_CACHE, DEFAULT_THROTTLE, MAX_THROTTLE_ENTRIES};
pub use token::{AccessToken, RefreshedToken};

/// Re-exported because [`Cloud::Custom`] and the authorization and admin-consent links
/// use [`Url`](url::Url).
pub use url;

/// Re-exported because [`TokenSession::access_token`] and [`Grant`] hand out
/// [`SecretString`](secrecy::SecretString)s.
pub use secrecy;
