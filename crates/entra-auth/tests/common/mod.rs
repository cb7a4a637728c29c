//! Shared test helpers: a wiremock Entra, minted id tokens, fixtures, a memory store.

#![allow(
    dead_code,
    clippy::missing_panics_doc,
    reason = "test helpers, not all used by every test file"
)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use entra_auth::secrecy::{ExposeSecret as _, SecretString};
use entra_auth::{
    AuthError, Clock, Cloud, EntraClient, EntraClientBuilder, RefreshTokenStore, SaveOutcome,
    StoredRefreshToken, TenantId, TokenVersion,
};
use serde_json::{Value, json};
use time::OffsetDateTime;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const CLIENT_ID: &str = "6cb04018-a3f5-46a7-b995-940c78f5aef3";
pub const TENANT: &str = "9122040d-6c67-4c5b-b112-36a304b66dad";
pub const OID: &str = "00000000-0000-0000-66f3-3332eca7ea81";
pub const REDIRECT: &str = "http://localhost:8400/callback";
pub const GRAPH: &str = "https://graph.example.test";

pub fn tenant() -> TenantId {
    TenantId::parse(TENANT).unwrap()
}

/// A fixture file's text.
pub fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/identity/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// A fixture's docs-formatted redirect (`GET http://localhost?` then `code=...` lines)
/// joined into one URL.
pub fn fixture_redirect(name: &str) -> String {
    fixture(name)
        .lines()
        .map(str::trim)
        .collect::<String>()
        .trim_start_matches("GET ")
        .to_owned()
}

/// Entra on wiremock: a custom cloud whose login base is the mock server.
pub fn cloud(server: &MockServer) -> Cloud {
    Cloud::custom(&server.uri(), GRAPH).unwrap()
}

pub fn builder(server: &MockServer) -> EntraClientBuilder {
    EntraClient::builder(CLIENT_ID)
        .cloud(cloud(server))
        .redirect_uri(REDIRECT)
        .timeout(Duration::from_secs(10))
}

pub fn issuer(server: &MockServer) -> String {
    format!("{}/{TENANT}/v2.0", server.uri())
}

/// Claims of a valid id token for this client from the mock login host.
pub fn claims(server: &MockServer, nonce: Option<&str>) -> Value {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let mut claims = json!({
        "ver": "2.0",
        "iss": issuer(server),
        "aud": CLIENT_ID,
        "tid": TENANT,
        "oid": OID,
        "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
        "preferred_username": "admin@contoso.onmicrosoft.com",
        "name": "Megan Bowen",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
    });
    if let Some(nonce) = nonce {
        claims["nonce"] = json!(nonce);
    }
    claims
}

/// The `kid` of the test signing key.
pub const KID: &str = "entra-auth-test-key";

/// An RSA signing key made once per test binary (making one costs far more than a test).
pub struct SigningKey {
    pub encoding: jsonwebtoken::EncodingKey,
    pub n: String,
    pub e: String,
    pub public_pem: String,
}

pub fn signing_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(new_signing_key)
}

/// A second key, not published under `KID` (a forger's, or a rolled-over one).
pub fn other_signing_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(new_signing_key)
}

fn new_signing_key() -> SigningKey {
    let pair = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .unwrap();
    let encoding =
        jsonwebtoken::EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes()).unwrap();
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, jsonwebtoken::Algorithm::RS256)
        .unwrap();
    let jsonwebtoken::jwk::AlgorithmParameters::RSA(rsa) = jwk.algorithm else {
        panic!("not an RSA key");
    };
    SigningKey {
        encoding,
        n: rsa.n,
        e: rsa.e,
        public_pem: pair.public_key_pem(),
    }
}

/// Signs `claims` as Entra does: RS256, header `typ` and `kid`.
pub fn sign_with(key: &SigningKey, kid: &str, claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.typ = Some("JWT".into());
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

/// An id token signed with the test key, as the mock login host's keys publish it.
pub fn mint(claims: &Value) -> String {
    sign_with(signing_key(), KID, claims)
}

/// A JWK in Microsoft's shape (`kty`, `use`, `kid`, `n`, `e`).
pub fn jwk(key: &SigningKey, kid: &str) -> Value {
    json!({ "kty": "RSA", "use": "sig", "kid": kid, "x5t": kid, "n": key.n, "e": key.e })
}

/// The path of the mock login host's key set.
pub const KEYS_PATH: &str = "/common/discovery/v2.0/keys";

/// The documented discovery document (fixture `openid-configuration.json`) for the mock
/// login host; its `jwks_uri` names `KEYS_PATH`.
pub fn discovery_document(server: &MockServer) -> Value {
    let text = fixture("openid-configuration.json").replace(
        "https://login.microsoftonline.com/{tenant}",
        &format!("{}/common", server.uri()),
    );
    serde_json::from_str(&text).unwrap()
}

/// Serves any authority's discovery document and the key set with the test key.
pub async fn mount_signing_keys(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path_regex(
            r"^/[^/]+/v2\.0/\.well-known/openid-configuration$",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(discovery_document(server)))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(KEYS_PATH))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "keys": [jwk(signing_key(), KID)] })),
        )
        .mount(server)
        .await;
}

/// A mock Entra that serves its discovery document and signing keys.
pub async fn entra() -> MockServer {
    let server = MockServer::start().await;
    mount_signing_keys(&server).await;
    server
}

/// Resets the mocks and serves the signing keys again.
pub async fn reset(server: &MockServer) {
    server.reset().await;
    mount_signing_keys(server).await;
}

/// The requests the server received at `path`.
pub async fn requests_to(server: &MockServer, path: &str) -> Vec<wiremock::Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|request| request.url.path() == path)
        .collect()
}

/// The requests the server received, without the discovery and key-set fetches.
pub async fn entra_requests(server: &MockServer) -> Vec<wiremock::Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|request| request.method.as_str() != "GET")
        .collect()
}

/// A token answer shaped like the documented auth-code sample.
pub fn token_body(
    access: &str,
    refresh: Option<&str>,
    id_token: Option<&str>,
    scope: &str,
) -> Value {
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": 3599,
        "ext_expires_in": 3599,
        "scope": scope,
    });
    if let Some(refresh) = refresh {
        body["refresh_token"] = json!(refresh);
    }
    if let Some(id_token) = id_token {
        body["id_token"] = json!(id_token);
    }
    body
}

/// The granted scope string for the default scopes, URL-encoded as in the docs' sample.
pub fn granted_default_scopes() -> String {
    format!("{GRAPH}/User.Read.All {GRAPH}/Group.Read.All openid profile offline_access")
        .replace(':', "%3A")
        .replace('/', "%2F")
        .replace(' ', "%20")
}

/// A form body as a map.
pub fn form(body: &[u8]) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// Query parameters of a URL as a map.
pub fn query(url: &url::Url) -> BTreeMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// A fixed wall clock.
#[derive(Debug)]
pub struct FixedClock(pub OffsetDateTime);

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        self.0
    }
}

/// One connection's refresh token in memory, with counters.
#[derive(Default)]
pub struct MemoryStore {
    pub slot: Mutex<Option<(String, u64)>>,
    pub saves: Mutex<Vec<(String, u64)>>,
    pub marked: Mutex<Vec<String>>,
    /// When set, the next save finds this (token, version) stored by "another replica".
    pub conflict_with: Mutex<Option<(String, u64)>>,
}

impl MemoryStore {
    pub fn with(token: &str, version: u64) -> Arc<Self> {
        let store = Self::default();
        *store.slot.lock().unwrap() = Some((token.to_owned(), version));
        Arc::new(store)
    }

    pub fn current(&self) -> Option<(String, u64)> {
        self.slot.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl RefreshTokenStore for MemoryStore {
    async fn load(&self) -> Result<Option<StoredRefreshToken>, AuthError> {
        Ok(self.current().map(|(token, version)| {
            StoredRefreshToken::new(SecretString::from(token), TokenVersion::new(version))
        }))
    }

    async fn save(
        &self,
        token: &SecretString,
        expected: TokenVersion,
    ) -> Result<SaveOutcome, AuthError> {
        if let Some(newer) = self.conflict_with.lock().unwrap().take() {
            *self.slot.lock().unwrap() = Some(newer);
        }
        let mut slot = self.slot.lock().unwrap();
        let current = slot.as_ref().map_or(0, |(_, version)| *version);
        if current != expected.get() {
            return Ok(SaveOutcome::Conflict);
        }
        let next = (token.expose_secret().to_owned(), current + 1);
        self.saves.lock().unwrap().push(next.clone());
        *slot = Some(next);
        Ok(SaveOutcome::Saved(TokenVersion::new(current + 1)))
    }

    async fn mark_reauthorization_required(&self, reason: &AuthError) -> Result<(), AuthError> {
        self.marked.lock().unwrap().push(reason.to_string());
        Ok(())
    }
}

/// While alive, paused tokio time does not auto-advance (a running blocking task
/// inhibits it), so real loopback HTTP cannot race the clock: time moves only by
/// `tokio::time::advance`.
pub struct FrozenTime(Option<std::sync::mpsc::Sender<()>>);

pub fn freeze_time() -> FrozenTime {
    let (sender, receiver) = std::sync::mpsc::channel::<()>();
    drop(tokio::task::spawn_blocking(move || {
        let _ = receiver.recv();
    }));
    FrozenTime(Some(sender))
}

impl Drop for FrozenTime {
    fn drop(&mut self) {
        self.0.take();
    }
}
