//! A validated authorization request (spec §1a), kept between the interactive pages and
//! stored with the code it leads to: what `authorize.rs` checks and `grants.rs` keeps.

use url::Url;

use super::claims::ClaimsRequest;
use super::redirect::ResponseMode;
use super::scopes::ScopeSet;

/// `prompt` values documented for v2 (spec §1a), plus MSAL's `create`; v1's
/// `admin_consent` is read as `consent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Prompt {
    Login,
    None,
    Consent,
    SelectAccount,
    Create,
}

/// A validated authorization request.
#[derive(Debug, Clone)]
pub(super) struct AuthorizeRequest {
    /// The `{tenant}` segment as sent (the interactive forms post back to it).
    pub(super) tenant: String,
    /// The tenant the segment names; `None` for `organizations`/`common`, where the
    /// account that signs in decides.
    pub(super) home: Option<usize>,
    /// The redirect URI exactly as sent: `/token` compares against it (spec §2a).
    pub(super) redirect_uri: String,
    pub(super) redirect: Url,
    pub(super) response_mode: ResponseMode,
    pub(super) state: Option<String>,
    pub(super) nonce: Option<String>,
    pub(super) scopes: ScopeSet,
    pub(super) code_challenge: Option<(String, PkceMethod)>,
    pub(super) prompt: Option<Prompt>,
    pub(super) login_hint: Option<String>,
    /// The `claims` parameter (spec §7), kept for the code's token request: its `cp1`
    /// makes the code's access token a CAE token.
    pub(super) claims: Option<ClaimsRequest>,
}

/// The PKCE `code_challenge_method` (RFC 7636 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PkceMethod {
    Plain,
    S256,
}
