//! `EntraClient`: one Entra app registration in one cloud, wrapping `oauth2`'s typestate
//! client behind named methods.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{ACCEPT, CONTENT_TYPE};
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use url::Url;

use crate::authorize::PendingAuthorization;
use crate::claims;
use crate::clock::{Clock, SystemClock};
use crate::cloud::{Authority, Cloud, TenantId, is_openid_scope};
use crate::credentials::{ClientCredential, expose};
use crate::error::{AuthError, EntraError, IdTokenError};
use crate::grant::Grant;
use crate::http::{
    Answered, Exchange, HttpClient, HttpFailure, endpoint_path, json_error_summary, undecodable,
};
use crate::id_token::{self, Expectations};
use crate::signing_keys::SigningKeys;
use crate::throttle::{self, Throttle};
use crate::token::{
    AccessToken, EntraErrorResponse, EntraTokenResponse, OAuthClient, RefreshedToken, TokenParts,
};

/// The scopes a connection asks for by default: sign-in, a refresh token, and reading
/// the directory's users and groups.
pub const DEFAULT_SCOPES: [&str; 5] = [
    "openid",
    "profile",
    "offline_access",
    "User.Read.All",
    "Group.Read.All",
];

/// Default HTTP timeout for one request to Entra.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Default allowance for clock differences when checking id token `exp`/`nbf`.
pub const DEFAULT_ID_TOKEN_SKEW: Duration = Duration::from_secs(300);

/// An app registration in one cloud: builds authorization URLs, redeems codes, refreshes,
/// runs the device-code flow and builds admin-consent links. Cheap to clone.
#[derive(Clone)]
pub struct EntraClient {
    pub(crate) inner: Arc<ClientInner>,
}

pub(crate) struct ClientInner {
    pub(crate) client_id: String,
    pub(crate) cloud: Cloud,
    pub(crate) credential: ClientCredential,
    pub(crate) redirect_uri: Option<Url>,
    pub(crate) scopes: Vec<String>,
    pub(crate) http: HttpClient,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) id_token_skew: Duration,
    /// Whether every authorize and token request declares client capability `cp1`.
    pub(crate) declare_cp1: bool,
    /// Token-endpoint etiquette, shared by the clones of this client (spec §4c).
    pub(crate) throttle: Throttle,
    /// A custom cloud's id-token signing keys, shared by the clones of this client.
    pub(crate) signing_keys: SigningKeys,
}

impl ClientInner {
    /// Sends a request to Entra through the throttle.
    pub(crate) async fn send(
        &self,
        request: http::Request<Vec<u8>>,
        answered: &Mutex<Answered>,
    ) -> Result<http::Response<Vec<u8>>, HttpFailure> {
        throttle::send(
            &self.throttle,
            &self.http,
            self.clock.as_ref(),
            request,
            answered,
        )
        .await
    }
}

impl fmt::Debug for EntraClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraClient")
            .field("client_id", &self.inner.client_id)
            .field("cloud", &self.inner.cloud)
            .field("credential", &self.inner.credential)
            .field(
                "redirect_uri",
                &self.inner.redirect_uri.as_ref().map(Url::as_str),
            )
            .field("scopes", &self.inner.scopes)
            .field("declares_cp1", &self.inner.declare_cp1)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for EntraClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "entra app {} at {} ({})",
            self.inner.client_id,
            self.inner.cloud.login_base(),
            self.inner.credential
        )
    }
}

/// Settings of an [`EntraClient`]; `build()` validates them.
#[must_use]
pub struct EntraClientBuilder {
    client_id: String,
    cloud: Cloud,
    credential: ClientCredential,
    redirect_uri: Option<String>,
    scopes: Vec<String>,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    id_token_skew: Duration,
    declare_cp1: bool,
}

impl fmt::Debug for EntraClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraClientBuilder")
            .field("client_id", &self.client_id)
            .field("cloud", &self.cloud)
            .field("credential", &self.credential)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for EntraClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "entra client builder for app {}", self.client_id)
    }
}

impl EntraClient {
    /// Starts configuring a client for an app registration (its Application (client) ID).
    pub fn builder(client_id: impl Into<String>) -> EntraClientBuilder {
        EntraClientBuilder {
            client_id: client_id.into(),
            cloud: Cloud::Global,
            credential: ClientCredential::Public,
            redirect_uri: None,
            scopes: DEFAULT_SCOPES
                .iter()
                .map(|scope| (*scope).to_owned())
                .collect(),
            timeout: DEFAULT_TIMEOUT,
            clock: Arc::new(SystemClock),
            id_token_skew: DEFAULT_ID_TOKEN_SKEW,
            declare_cp1: true,
        }
    }

    /// The application (client) id.
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// The cloud.
    pub fn cloud(&self) -> &Cloud {
        &self.inner.cloud
    }

    /// Whether this client declares client capability `cp1` (continuous access
    /// evaluation) in its authorize and token requests; see
    /// [`EntraClientBuilder::client_capability_cp1`].
    pub fn declares_cp1(&self) -> bool {
        self.inner.declare_cp1
    }

    /// The `claims` parameter for a request: `extra` merged with `cp1` when declared.
    pub(crate) fn claims_param(&self, extra: Option<&str>) -> Result<Option<String>, AuthError> {
        claims::merged(self.inner.declare_cp1, extra)
    }

    /// The scopes asked for, qualified with this cloud's Graph root.
    pub fn scopes(&self) -> Vec<String> {
        self.qualified_scopes(None)
    }

    /// Refreshes with a refresh token against the tenant's authority (spec §2b, §5b).
    ///
    /// The answer's refresh token replaces the one sent (rotation); when Entra returns
    /// none, the one sent stays ([`RefreshedToken::rotated`] is false).
    ///
    /// # Errors
    /// [`AuthError`]; `requires_reauthorization()` when the grant is gone.
    pub async fn refresh(
        &self,
        tenant: &TenantId,
        refresh_token: &SecretString,
    ) -> Result<RefreshedToken, AuthError> {
        self.refresh_inner(tenant, refresh_token, None).await
    }

    /// Refreshes answering a Conditional Access claims challenge: `claims` is the decoded
    /// JSON of a Graph `WWW-Authenticate: ... claims="..."` challenge, sent as the
    /// `claims` parameter, deep-merged with the `cp1` declaration when this client makes
    /// it (spec §7). When this fails with [`AuthError::requires_reauthorization`], send
    /// the admin to sign in with
    /// [`AuthorizationRequestBuilder::claims`](crate::AuthorizationRequestBuilder::claims)
    /// given [`AuthError::reconnect_claims`].
    ///
    /// A [`TokenSession`](crate::TokenSession) does this for you in
    /// [`claims_challenge`](crate::TokenSession::claims_challenge).
    ///
    /// # Errors
    /// As [`refresh`](Self::refresh), and [`AuthError::InvalidClaims`] (nothing sent) when
    /// `claims` is not a JSON object of at most
    /// [`MAX_CLAIMS_BYTES`](crate::MAX_CLAIMS_BYTES).
    pub async fn refresh_with_claims(
        &self,
        tenant: &TenantId,
        refresh_token: &SecretString,
        claims: &str,
    ) -> Result<RefreshedToken, AuthError> {
        self.refresh_inner(tenant, refresh_token, Some(claims))
            .await
    }

    pub(crate) async fn refresh_inner(
        &self,
        tenant: &TenantId,
        refresh_token: &SecretString,
        challenge: Option<&str>,
    ) -> Result<RefreshedToken, AuthError> {
        let claims = self.claims_param(challenge)?;
        self.refresh_sending(tenant, refresh_token, claims)
            .await
            .map_err(|error| error.with_reconnect_claims(challenge))
    }

    async fn refresh_sending(
        &self,
        tenant: &TenantId,
        refresh_token: &SecretString,
        claims: Option<String>,
    ) -> Result<RefreshedToken, AuthError> {
        let authority = Authority::tenant(tenant);
        let scopes = self.qualified_scopes(None);
        let oauth = self.oauth_client(&authority);
        let endpoint = self.inner.cloud.token_endpoint(&authority);
        let credential = self.inner.credential.form_params(
            &self.inner.client_id,
            endpoint.as_str(),
            self.now(),
        )?;
        let exchange = Exchange::new(&self.inner);
        let old = oauth2::RefreshToken::new(expose(refresh_token));
        let mut request = oauth
            .exchange_refresh_token(&old)
            .add_scopes(scopes.iter().cloned().map(oauth2::Scope::new));
        if let Some(claims) = claims {
            request = request.add_extra_param("claims", claims);
        }
        for (name, value) in credential {
            request = request.add_extra_param(name, expose(&value));
        }
        let result = request.request_async(&exchange).await;
        let parts =
            map_oauth_result(result, exchange.answered(), &endpoint)?.into_parts(&endpoint)?;
        tracing::debug!(
            tenant = tenant.as_str(),
            rotated = parts.refresh_token.is_some(),
            "refreshed access token"
        );
        let now = self.now();
        let rotated = parts.refresh_token.is_some();
        Ok(RefreshedToken {
            access_token: AccessToken {
                secret: parts.access_token,
                expires_at: after(now, parts.expires_in),
            },
            refresh_at: parts.refresh_in.map(|refresh_in| after(now, refresh_in)),
            refresh_token: parts.refresh_token.unwrap_or_else(|| refresh_token.clone()),
            rotated,
            scopes: parts.scopes.unwrap_or(scopes),
        })
    }

    pub(crate) fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    pub(crate) fn redirect_uri(&self) -> Result<&Url, AuthError> {
        self.inner.redirect_uri.as_ref().ok_or_else(|| {
            AuthError::InvalidConfiguration("the client has no redirect URI".to_owned())
        })
    }

    /// Scopes as sent: Graph permissions qualified with this cloud's Graph root (spec §6).
    pub(crate) fn qualified_scopes(&self, scopes: Option<&[String]>) -> Vec<String> {
        scopes
            .unwrap_or(&self.inner.scopes)
            .iter()
            .map(|scope| self.inner.cloud.graph_scope(scope))
            .collect()
    }

    pub(crate) fn oauth_client(&self, authority: &Authority) -> OAuthClient {
        // oauth2 has no private_key_jwt support, so every credential travels as extra
        // form parameters (`ClientCredential::form_params`) and oauth2 puts `client_id`
        // in the body.
        oauth2::Client::new(oauth2::ClientId::new(self.inner.client_id.clone()))
            .set_auth_type(oauth2::AuthType::RequestBody)
            .set_auth_uri(oauth2::AuthUrl::from_url(
                self.inner.cloud.authorize_endpoint(authority),
            ))
            .set_token_uri(oauth2::TokenUrl::from_url(
                self.inner.cloud.token_endpoint(authority),
            ))
    }

    /// Redeems an authorization code with the PKCE verifier (spec §2a), repeating the
    /// authorize request's claims (with `cp1` when declared), as MSAL does.
    pub(crate) async fn redeem_code(
        &self,
        pending: &PendingAuthorization,
        code: &SecretString,
    ) -> Result<TokenParts, AuthError> {
        let claims = self.claims_param(pending.claims.as_deref())?;
        let oauth = self.oauth_client(&pending.authority);
        let endpoint = self.inner.cloud.token_endpoint(&pending.authority);
        let credential = self.inner.credential.form_params(
            &self.inner.client_id,
            endpoint.as_str(),
            self.now(),
        )?;
        let exchange = Exchange::new(&self.inner);
        let mut request = oauth
            .exchange_code(oauth2::AuthorizationCode::new(expose(code)))
            .set_pkce_verifier(oauth2::PkceCodeVerifier::new(expose(
                &pending.pkce_verifier,
            )))
            .set_redirect_uri(Cow::Owned(oauth2::RedirectUrl::from_url(
                pending.redirect_uri.clone(),
            )))
            .add_extra_param("scope", pending.scopes.join(" "));
        if let Some(claims) = claims {
            request = request.add_extra_param("claims", claims);
        }
        for (name, value) in credential {
            request = request.add_extra_param(name, expose(&value));
        }
        let result = request.request_async(&exchange).await;
        map_oauth_result(result, exchange.answered(), &endpoint)?.into_parts(&endpoint)
    }

    /// Posts a form to an Entra endpoint without `oauth2` (device code flow) and decodes
    /// the answer: `Ok(Ok(T))` on 200, `Ok(Err(..))` for Entra's JSON error.
    pub(crate) async fn post_form<T: DeserializeOwned>(
        &self,
        endpoint: &Url,
        params: &[(&str, String)],
    ) -> Result<Result<T, Box<(EntraError, Option<Duration>)>>, AuthError> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter().map(|(name, value)| (*name, value.as_str())))
            .finish();
        let request = http::Request::post(endpoint.as_str())
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body.into_bytes())
            .map_err(|error| AuthError::InvalidConfiguration(format!("bad request: {error}")))?;
        let answered = Mutex::new(Answered::default());
        let response = self
            .inner
            .send(request, &answered)
            .await
            .map_err(|failure| failure.into_auth_error(endpoint))?;
        let status = response.status().as_u16();
        let decode_error = |error: &serde_json::Error| {
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            undecodable(endpoint, status, content_type, error)
        };
        if status == 200 {
            serde_json::from_slice::<T>(response.body())
                .map(Ok)
                .map_err(|error| decode_error(&error))
        } else {
            let retry_after = answered
                .lock()
                .ok()
                .and_then(|answered| answered.retry_after);
            serde_json::from_slice::<EntraErrorResponse>(response.body())
                .map(|error| Err(Box::new((error.into_entra(Some(status)), retry_after))))
                .map_err(|error| decode_error(&error))
        }
    }

    /// Builds a grant from a token answer: id token checks (spec §5a; for a custom cloud
    /// its signature first, against the keys of `authority`'s discovery document), then
    /// the check that the granted scopes cover the requested ones.
    pub(crate) async fn grant_from(
        &self,
        parts: TokenParts,
        requested: &[String],
        nonce: Option<&SecretString>,
        authority: &Authority,
    ) -> Result<Grant, AuthError> {
        let id_token = parts.id_token.as_ref().ok_or(IdTokenError::Missing)?;
        if self.inner.cloud.verifies_id_token_signatures() {
            self.inner
                .signing_keys
                .verify(
                    &self.inner.http,
                    self.inner.clock.as_ref(),
                    &self.inner.cloud.discovery_endpoint(authority),
                    id_token,
                )
                .await?;
        }
        let now = self.now();
        let tenant = authority.tenant_id();
        let identity = id_token::validate(
            id_token,
            &Expectations {
                client_id: &self.inner.client_id,
                cloud: &self.inner.cloud,
                nonce,
                tenant: tenant.as_ref(),
                now,
                skew: self.inner.id_token_skew,
            },
        )?;
        // An omitted `scope` means the scopes of the request (spec §2d).
        let granted = parts.scopes.unwrap_or_else(|| requested.to_vec());
        let missing = missing_scopes(
            &self.inner.cloud,
            requested,
            &granted,
            parts.refresh_token.is_some(),
        );
        if !missing.is_empty() {
            return Err(AuthError::MissingScopes { missing, granted });
        }
        let Some(refresh_token) = parts.refresh_token else {
            // A connection lives on its refresh token; without `offline_access` it has none.
            return Err(AuthError::MissingScopes {
                missing: vec!["offline_access".to_owned()],
                granted,
            });
        };
        tracing::info!(
            tenant = identity.tenant_id.as_str(),
            object_id = identity.object_id.as_str(),
            "sign-in completed"
        );
        Ok(Grant {
            identity,
            cloud: self.inner.cloud.clone(),
            access_token: AccessToken {
                secret: parts.access_token,
                expires_at: after(now, parts.expires_in),
            },
            refresh_at: parts.refresh_in.map(|refresh_in| after(now, refresh_in)),
            refresh_token,
            scopes: granted,
        })
    }
}

/// `now` plus a lifetime Entra sent (`expires_in`, `refresh_in`), saturating: a huge value
/// from the network (e.g. `u64::MAX` seconds) must not overflow and panic.
pub(crate) fn after(now: OffsetDateTime, lifetime: Duration) -> OffsetDateTime {
    now.saturating_add(time::Duration::try_from(lifetime).unwrap_or(time::Duration::MAX))
}

/// The requested scopes that the granted ones do not cover, comparing Graph permissions
/// without the Graph prefix and case (Entra answers `https://graph.microsoft.com/mail.read`
/// for `Mail.Read`). `OpenID` scopes are not listed by Entra reliably; `offline_access` is
/// proven by a refresh token.
pub(crate) fn missing_scopes(
    cloud: &Cloud,
    requested: &[String],
    granted: &[String],
    has_refresh_token: bool,
) -> Vec<String> {
    let root = format!("{}/", cloud.graph_root().to_ascii_lowercase());
    let normalize = |scope: &str| {
        let lower = scope.to_ascii_lowercase();
        lower
            .strip_prefix(&root)
            .map_or_else(|| lower.clone(), str::to_owned)
    };
    let granted: Vec<String> = granted.iter().map(|scope| normalize(scope)).collect();
    requested
        .iter()
        .filter(|scope| {
            if scope.eq_ignore_ascii_case("offline_access") {
                !has_refresh_token
            } else if is_openid_scope(scope) {
                false
            } else {
                !granted.contains(&normalize(scope))
            }
        })
        .cloned()
        .collect()
}

type OAuthResult =
    Result<EntraTokenResponse, oauth2::RequestTokenError<HttpFailure, EntraErrorResponse>>;

/// `oauth2`'s outcome as an [`AuthError`]. `RequestTokenError::Parse` holds the body,
/// which may contain tokens: only its JSON path and error category are kept.
fn map_oauth_result(
    result: OAuthResult,
    answered: Answered,
    endpoint: &Url,
) -> Result<EntraTokenResponse, AuthError> {
    let status = answered.status.unwrap_or(0);
    match result {
        Ok(response) => Ok(response),
        Err(oauth2::RequestTokenError::ServerResponse(error)) => Err(
            AuthError::from_token_endpoint(error.into_entra(answered.status), answered.retry_after),
        ),
        Err(oauth2::RequestTokenError::Request(failure)) => Err(failure.into_auth_error(endpoint)),
        Err(oauth2::RequestTokenError::Parse(error, _body)) => Err(AuthError::UnexpectedResponse {
            endpoint: endpoint_path(endpoint),
            status,
            content_type: None,
            detail: format!(
                "cannot decode at {}: {}",
                error.path(),
                json_error_summary(error.inner())
            ),
        }),
        Err(oauth2::RequestTokenError::Other(detail)) => Err(AuthError::UnexpectedResponse {
            endpoint: endpoint_path(endpoint),
            status,
            content_type: None,
            detail,
        }),
    }
}

impl EntraClientBuilder {
    /// The cloud (default [`Cloud::Global`]).
    pub fn cloud(mut self, cloud: Cloud) -> Self {
        self.cloud = cloud;
        self
    }

    /// The redirect URI registered for the app (needed for authorization and admin
    /// consent; not for device code).
    pub fn redirect_uri(mut self, redirect_uri: impl Into<String>) -> Self {
        self.redirect_uri = Some(redirect_uri.into());
        self
    }

    /// The app's credential (default [`ClientCredential::Public`]).
    pub fn credential(mut self, credential: ClientCredential) -> Self {
        self.credential = credential;
        self
    }

    /// Scopes to ask for (default [`DEFAULT_SCOPES`]); Graph permissions may be given
    /// without the Graph prefix.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Timeout of one HTTP request (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The wall clock (default [`SystemClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Allowed clock difference for id token `exp`/`nbf` (default 5 minutes).
    pub fn id_token_skew(mut self, skew: Duration) -> Self {
        self.id_token_skew = skew;
        self
    }

    /// Whether to declare client capability `cp1` (default on), as MSAL with the Graph
    /// SDKs does: every authorize URL and token request then carries
    /// `claims={"access_token":{"xms_cc":{"values":["cp1"]}}}`, merged with any other
    /// claims [claims-challenge.md]. Entra then issues continuous-access-evaluation
    /// tokens that can live up to 28 hours, and Graph answers a revoked one with a claims
    /// challenge at once [app-resilience-continuous-access-evaluation.md].
    ///
    /// A client that declares `cp1` must answer every challenge
    /// ([`TokenSession::claims_challenge`](crate::TokenSession::claims_challenge)), or it
    /// loops on a revoked but unexpired token. Turn it off if your Graph caller cannot.
    pub fn client_capability_cp1(mut self, declare: bool) -> Self {
        self.declare_cp1 = declare;
        self
    }

    /// Validates the settings and builds the client.
    ///
    /// # Errors
    /// [`AuthError::InvalidConfiguration`] for an empty client id, a redirect URI that is
    /// not `https` (or `http` on loopback), is longer than 256 characters or holds a
    /// character Entra refuses (spec §1c), an invalid custom cloud, no scopes, or a zero
    /// timeout; [`AuthError::Randomness`] if the OS RNG fails (it keys the throttle's
    /// hashes).
    pub fn build(self) -> Result<EntraClient, AuthError> {
        let invalid = |what: String| Err(AuthError::InvalidConfiguration(what));
        let client_id = self.client_id.trim().to_owned();
        if client_id.is_empty()
            || client_id
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return invalid("the client id must be non-empty without spaces".to_owned());
        }
        self.cloud.validate()?;
        if self.scopes.is_empty() {
            return invalid("at least one scope is needed".to_owned());
        }
        if self.timeout.is_zero() {
            return invalid("the timeout must be positive".to_owned());
        }
        let redirect_uri = self
            .redirect_uri
            .as_deref()
            .map(validate_redirect_uri)
            .transpose()?;
        Ok(EntraClient {
            inner: Arc::new(ClientInner {
                client_id,
                cloud: self.cloud,
                credential: self.credential,
                redirect_uri,
                scopes: self.scopes,
                http: HttpClient::new(self.timeout)?,
                clock: self.clock,
                id_token_skew: self.id_token_skew,
                declare_cp1: self.declare_cp1,
                throttle: Throttle::new()?,
                signing_keys: SigningKeys::default(),
            }),
        })
    }
}

/// Redirect URI rules of spec §1c.
fn validate_redirect_uri(text: &str) -> Result<Url, AuthError> {
    let invalid = |what: &str| AuthError::InvalidConfiguration(format!("redirect uri: {what}"));
    if text.len() > 256 {
        return Err(invalid("longer than 256 characters"));
    }
    if text.chars().any(|c| "!$'(),;".contains(c)) {
        return Err(invalid("contains one of ! $ ' ( ) , ; which Entra refuses"));
    }
    let url = Url::parse(text).map_err(|error| invalid(&error.to_string()))?;
    if url.fragment().is_some() {
        return Err(invalid("must not have a fragment"));
    }
    let loopback = matches!(
        url.host(),
        Some(url::Host::Domain("localhost") | url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST))
    );
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(invalid(
            "must be https, or http on localhost or 127.0.0.1 only",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uri_rules_follow_spec_1c() {
        assert!(validate_redirect_uri("http://localhost").is_ok());
        assert!(validate_redirect_uri("http://127.0.0.1:8400/callback").is_ok());
        assert!(validate_redirect_uri("https://app.example.com/cb").is_ok());
        assert!(validate_redirect_uri("http://app.example.com/cb").is_err());
        assert!(validate_redirect_uri("https://app.example.com/cb;x").is_err());
        assert!(validate_redirect_uri("https://app.example.com/#frag").is_err());
        assert!(validate_redirect_uri(&format!("https://a.example/{}", "x".repeat(250))).is_err());
    }

    #[test]
    fn missing_scopes_normalise_prefix_and_case() {
        let requested: Vec<String> = [
            "openid",
            "offline_access",
            "https://graph.microsoft.com/User.Read.All",
            "https://graph.microsoft.com/Group.Read.All",
        ]
        .map(String::from)
        .to_vec();
        let granted = vec![
            "user.read.all".to_owned(),
            "https://graph.microsoft.com/GROUP.READ.ALL".to_owned(),
        ];
        assert!(missing_scopes(&Cloud::Global, &requested, &granted, true).is_empty());
        assert_eq!(
            missing_scopes(&Cloud::Global, &requested, &granted[..1], false),
            vec![
                "offline_access".to_owned(),
                "https://graph.microsoft.com/Group.Read.All".to_owned()
            ]
        );
    }
}
