//! National clouds, authorities and the ids that name tenants and users (spec §5b, §6).

use std::fmt;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::AuthError;

/// A Microsoft cloud: where to sign in and which Microsoft Graph to ask (spec §6).
///
/// Apps are registered per cloud and tokens do not cross clouds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Cloud {
    /// The global cloud (including Microsoft 365 GCC Moderate).
    Global,
    /// US Government L4 (GCC High).
    UsGovernment,
    /// US Government L5 (`DoD`).
    UsGovernmentDod,
    /// China, operated by 21Vianet.
    China,
    /// Another login host, e.g. a simulated tenant on loopback, with the Graph resource
    /// identifier its tokens are for. Build it with [`Cloud::custom`], which validates both.
    ///
    /// `graph` is only the *resource identifier* that prefixes Graph scopes
    /// (`{graph}/User.Read.All`) and that granted scopes are compared against; this crate
    /// never sends a request to it. Where Graph is actually served is the Graph client's
    /// base URL, configured separately. For a simulator that issues tokens for Microsoft
    /// Graph, `graph` is `https://graph.microsoft.com` while its Graph API listens elsewhere
    /// (e.g. `http://127.0.0.1:8400/v1.0`).
    Custom {
        /// The login base (scheme, host, port and an optional path prefix).
        login: Url,
        /// The Graph resource identifier used as the scope prefix (not a request URL).
        graph: Url,
    },
}

impl Cloud {
    /// A custom cloud from a login base and a Graph resource identifier, e.g.
    /// `http://127.0.0.1:8400` and `https://graph.microsoft.com` for a simulated tenant.
    ///
    /// `graph` only prefixes Graph scopes (see [`Cloud::Custom`]); it is not where Graph
    /// requests go.
    ///
    /// `login` may use plain `http` only on a loopback host (`localhost`, 127.0.0.0/8,
    /// `::1`): it receives the app's secret, codes and refresh tokens.
    ///
    /// # Errors
    /// [`AuthError::InvalidConfiguration`] when either is not an absolute `http(s)` URL
    /// without query or fragment, or `login` uses `http` to a host that is not loopback.
    pub fn custom(login: &str, graph: &str) -> Result<Self, AuthError> {
        Ok(Self::Custom {
            login: base_url("login", login)?,
            graph: base_url("graph", graph)?,
        })
    }

    /// The login base, e.g. `https://login.microsoftonline.com`, without a trailing slash.
    ///
    /// China uses `login.partner.microsoftonline.cn`, the host that Entra's own docs and the
    /// id token issuer use (`login.chinacloudapi.cn` is an alias), spec §6.
    pub fn login_base(&self) -> String {
        match self {
            Self::Global => "https://login.microsoftonline.com".to_owned(),
            Self::UsGovernment | Self::UsGovernmentDod => {
                "https://login.microsoftonline.us".to_owned()
            }
            Self::China => "https://login.partner.microsoftonline.cn".to_owned(),
            Self::Custom { login, .. } => login.as_str().trim_end_matches('/').to_owned(),
        }
    }

    /// The Microsoft Graph resource identifier, e.g. `https://graph.microsoft.com`, without a
    /// trailing slash: the prefix of Graph scopes. For the fixed clouds it is also the
    /// host Graph is served from; for [`Cloud::Custom`] it need not be.
    pub fn graph_root(&self) -> String {
        match self {
            Self::Global => "https://graph.microsoft.com".to_owned(),
            Self::UsGovernment => "https://graph.microsoft.us".to_owned(),
            Self::UsGovernmentDod => "https://dod-graph.microsoft.us".to_owned(),
            Self::China => "https://microsoftgraph.chinacloudapi.cn".to_owned(),
            Self::Custom { graph, .. } => graph.as_str().trim_end_matches('/').to_owned(),
        }
    }

    /// A Graph permission named for this cloud's Graph, e.g.
    /// `https://graph.microsoft.us/User.Read.All`.
    ///
    /// `OpenID` scopes (`openid`, `profile`, `email`, `offline_access`) and scopes that
    /// already name a resource are returned unchanged. Scopes are always qualified because
    /// whether a bare scope means the local Graph in a national cloud is unconfirmed
    /// (spec §6); in the global cloud both forms are equal (spec §1a).
    pub fn graph_scope(&self, scope: &str) -> String {
        if is_openid_scope(scope) || scope.contains("://") {
            scope.to_owned()
        } else {
            format!("{}/{scope}", self.graph_root())
        }
    }

    /// `{login}/{authority}/oauth2/v2.0/authorize`.
    pub fn authorize_endpoint(&self, authority: &Authority) -> Url {
        self.endpoint(authority, "oauth2/v2.0/authorize")
    }

    /// `{login}/{authority}/oauth2/v2.0/token`.
    pub fn token_endpoint(&self, authority: &Authority) -> Url {
        self.endpoint(authority, "oauth2/v2.0/token")
    }

    /// `{login}/{authority}/oauth2/v2.0/devicecode`.
    pub fn device_code_endpoint(&self, authority: &Authority) -> Url {
        self.endpoint(authority, "oauth2/v2.0/devicecode")
    }

    /// `{login}/{authority}/v2.0/adminconsent`.
    pub fn admin_consent_endpoint(&self, authority: &Authority) -> Url {
        self.endpoint(authority, "v2.0/adminconsent")
    }

    /// `{login}/{authority}/v2.0/.well-known/openid-configuration`: the `OpenID` Connect
    /// discovery document, whose `jwks_uri` names the id-token signing keys (spec §5a).
    pub fn discovery_endpoint(&self, authority: &Authority) -> Url {
        self.endpoint(authority, "v2.0/.well-known/openid-configuration")
    }

    /// Whether this client checks id-token signatures against the login host's keys: for
    /// [`Cloud::Custom`], whose login host is no fixed Microsoft host. For the Microsoft
    /// clouds the id token comes straight from their token endpoint over TLS
    /// (`OpenID` Connect Core 3.1.3.7, item 6).
    pub(crate) fn verifies_id_token_signatures(&self) -> bool {
        matches!(self, Self::Custom { .. })
    }

    /// The v2.0 id token issuer for a tenant: `{login}/{tid}/v2.0` (spec §5a).
    pub fn issuer(&self, tenant: &TenantId) -> String {
        format!("{}/{}/v2.0", self.login_base(), tenant.as_str())
    }

    fn endpoint(&self, authority: &Authority, path: &str) -> Url {
        let text = format!("{}/{}/{path}", self.login_base(), authority.as_str());
        // Invariant: the login base is a serialized `Url` (or a fixed host), and what is
        // appended holds only [A-Za-z0-9./-], so the text always parses again.
        Url::parse(&text).unwrap_or_else(|_| unreachable!("validated login base and authority"))
    }

    pub(crate) fn validate(&self) -> Result<(), AuthError> {
        if let Self::Custom { login, graph } = self {
            base_url("login", login.as_str())?;
            base_url("graph", graph.as_str())?;
        }
        Ok(())
    }
}

fn base_url(what: &str, text: &str) -> Result<Url, AuthError> {
    let url = Url::parse(text)
        .map_err(|error| AuthError::InvalidConfiguration(format!("{what} url: {error}")))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host().is_none()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(AuthError::InvalidConfiguration(format!(
            "{what} url must be an absolute http(s) url without query or fragment"
        )));
    }
    // The login host receives the client secret, codes, PKCE verifiers and refresh
    // tokens, and issues the id tokens: plain http only where nothing leaves the machine,
    // the rule graph-client applies to its base URL. The Graph resource identifier is
    // never contacted (see `Cloud::Custom`), so it may name any host.
    if what == "login" && url.scheme() == "http" && !is_loopback(&url) {
        return Err(AuthError::InvalidConfiguration(format!(
            "{what} url uses http to a non-loopback host: the client secret, codes and tokens would travel in clear text"
        )));
    }
    Ok(url)
}

/// `localhost`, 127.0.0.0/8 or `::1`, as graph-client's base URL check.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

pub(crate) fn is_openid_scope(scope: &str) -> bool {
    ["openid", "profile", "email", "offline_access"]
        .iter()
        .any(|openid| openid.eq_ignore_ascii_case(scope))
}

/// The tenant segment of Entra's URLs: `organizations` for a first connect, then the
/// tenant id (spec §5b).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Authority(String);

impl Authority {
    /// `organizations`: any Entra tenant (work or school accounts), for a first connect.
    pub fn organizations() -> Self {
        Self("organizations".to_owned())
    }

    /// `common`: work, school and personal accounts.
    pub fn common() -> Self {
        Self("common".to_owned())
    }

    /// One tenant, by id: what every refresh uses after the first sign-in.
    pub fn tenant(tenant: &TenantId) -> Self {
        Self(tenant.as_str().to_owned())
    }

    /// Parses `organizations`, `common`, `consumers`, a tenant GUID or a domain name.
    ///
    /// # Errors
    /// [`AuthError::InvalidConfiguration`] for anything else (the value goes into a URL path).
    pub fn parse(text: &str) -> Result<Self, AuthError> {
        let valid = !text.is_empty()
            && text.len() <= 253
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            && !text.starts_with('.')
            && !text.contains("..");
        if valid {
            Ok(Self(text.to_ascii_lowercase()))
        } else {
            Err(AuthError::InvalidConfiguration(format!(
                "authority {text:?} is not a tenant id, domain, organizations, common or consumers"
            )))
        }
    }

    /// The path segment.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tenant id, when this authority names one by GUID.
    pub fn tenant_id(&self) -> Option<TenantId> {
        TenantId::parse(&self.0).ok()
    }
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Authority({})", self.0)
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Authority {
    type Error = AuthError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Authority> for String {
    fn from(value: Authority) -> Self {
        value.0
    }
}

/// A Microsoft Entra tenant id (`tid`, a GUID), lower-case.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    /// Parses a GUID (any case; kept lower-case).
    ///
    /// # Errors
    /// [`AuthError::InvalidConfiguration`] when `text` is not a GUID.
    pub fn parse(text: &str) -> Result<Self, AuthError> {
        if is_guid(text) {
            Ok(Self(text.to_ascii_lowercase()))
        } else {
            Err(AuthError::InvalidConfiguration(format!(
                "tenant id {text:?} is not a GUID"
            )))
        }
    }

    /// The GUID text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", self.0)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for TenantId {
    type Error = AuthError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<TenantId> for String {
    fn from(value: TenantId) -> Self {
        value.0
    }
}

/// A user's object id in one tenant (`oid`; equals Graph `user.id`), opaque text.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ObjectId(String);

impl ObjectId {
    /// Wraps an object id.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.0)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) fn is_guid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(index, byte)| match index {
            8 | 13 | 18 | 23 => *byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_rejects_path_characters() {
        assert!(Authority::parse("contoso.onmicrosoft.com").is_ok());
        assert!(Authority::parse("a/b").is_err());
        assert!(Authority::parse("a?b").is_err());
        assert!(Authority::parse("").is_err());
        assert!(Authority::parse("..").is_err());
    }

    #[test]
    fn tenant_id_is_a_lower_case_guid() {
        let tenant = TenantId::parse("9122040D-6C67-4C5B-B112-36A304B66DAD").unwrap();
        assert_eq!(tenant.as_str(), "9122040d-6c67-4c5b-b112-36a304b66dad");
        assert!(TenantId::parse("contoso.com").is_err());
        assert_eq!(Authority::tenant(&tenant).tenant_id(), Some(tenant));
    }

    #[test]
    fn custom_cloud_keeps_a_path_prefix_and_rejects_queries() {
        let cloud = Cloud::custom("http://127.0.0.1:9/entra/", "http://127.0.0.1:9/graph").unwrap();
        assert_eq!(
            cloud.token_endpoint(&Authority::organizations()).as_str(),
            "http://127.0.0.1:9/entra/organizations/oauth2/v2.0/token"
        );
        assert!(Cloud::custom("http://x/?a=b", "http://x").is_err());
        assert!(Cloud::custom("ftp://x", "http://x").is_err());
    }

    #[test]
    fn custom_login_takes_http_only_on_loopback() {
        for login in [
            "http://127.0.0.1:8400",
            "http://127.9.8.7",
            "http://localhost:8400/entra",
            "http://LOCALHOST",
            "http://[::1]:8400",
            "https://login.example.com",
        ] {
            assert!(
                Cloud::custom(login, "https://graph.microsoft.com").is_ok(),
                "{login}"
            );
        }
        for login in [
            "http://login.example.com",
            "http://10.0.0.1:8400",
            "http://128.0.0.1",
            "http://localhost.example.com",
            "http://[::2]",
            "http://0.0.0.0:8400",
        ] {
            let error = Cloud::custom(login, "https://graph.microsoft.com").unwrap_err();
            assert_eq!(
                error.to_string(),
                "invalid configuration: login url uses http to a non-loopback host: the client \
                 secret, codes and tokens would travel in clear text",
                "{login}"
            );
        }
        // The Graph resource identifier is never contacted.
        assert!(Cloud::custom("https://login.example.com", "http://graph.example.com").is_ok());
    }

    #[test]
    fn graph_scope_leaves_openid_and_qualified_scopes_alone() {
        let cloud = Cloud::China;
        assert_eq!(
            cloud.graph_scope("User.Read.All"),
            "https://microsoftgraph.chinacloudapi.cn/User.Read.All"
        );
        assert_eq!(cloud.graph_scope("offline_access"), "offline_access");
        assert_eq!(
            cloud.graph_scope("https://example.com/x"),
            "https://example.com/x"
        );
    }
}
