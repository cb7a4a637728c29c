//! Id-token signatures for custom clouds: the discovery document's `jwks_uri`, its RS256
//! keys cached per client, and the check of a token's signature against the key its
//! header names.
//!
//! Caching follows Microsoft's signing-key-rollover.md ("Keys metadata caching
//! algorithm"): keys are used for [`KEYS_REFRESH`] (1 hour) and then fetched again; if
//! that fetch fails, the last good keys serve until they are [`KEYS_MAX_AGE`] (24 hours)
//! old. A token whose `kid` is unknown makes one fetch on the spot, but not within
//! [`KEYS_MIN_REFETCH`] (5 minutes) of the last one.

use std::collections::HashMap;
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use base64::Engine as _;
use http::header::ACCEPT;
use jsonwebtoken::{Algorithm, DecodingKey};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use crate::clock::Clock;
use crate::error::{AuthError, IdTokenError};
use crate::http::{Answered, HttpClient, endpoint_path, json_error_summary};
use crate::id_token::LENIENT_URL_SAFE;

/// Keys younger than this are used without asking again (Microsoft: refresh hourly).
pub(crate) const KEYS_REFRESH: Duration = Duration::from_secs(3600);
/// The last good keys serve while a refresh fails, up to this age (Microsoft: a 24-hour
/// time-to-live).
pub(crate) const KEYS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// An unknown `kid` fetches the keys again only if they are at least this old
/// (Microsoft: "no more frequently than 5 mins").
pub(crate) const KEYS_MIN_REFETCH: Duration = Duration::from_secs(300);
/// Key sets kept per client, one per authority; the oldest is dropped beyond this.
const MAX_KEY_SETS: usize = 64;
/// Keys kept per set (Microsoft: a cache "capable of storing many distinct keys").
const MAX_KEYS: usize = 256;
/// The longest `alg` quoted back in an error.
const MAX_ALG_CHARS: usize = 32;

/// The signing keys of the login host, per discovery document, shared by a client's
/// clones. One fetch at a time (a second caller waits and finds the keys).
#[derive(Default)]
pub(crate) struct SigningKeys {
    sets: Mutex<HashMap<String, KeySet>>,
}

struct KeySet {
    keys: Vec<(String, DecodingKey)>,
    fetched: Instant,
}

impl KeySet {
    fn find(&self, kid: &str) -> Option<&DecodingKey> {
        self.keys
            .iter()
            .find(|(candidate, _)| candidate == kid)
            .map(|(_, key)| key)
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

#[derive(Deserialize)]
struct Discovery {
    jwks_uri: String,
}

#[derive(Deserialize)]
struct KeyDocument {
    keys: Vec<serde_json::Value>,
}

/// The members of a JWK this crate reads (Microsoft's keys carry more: `x5t`, `x5c`,
/// `issuer`).
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(rename = "use")]
    usage: Option<String>,
    alg: Option<String>,
    kid: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

impl SigningKeys {
    /// Checks that `token` is RS256-signed by one of the keys that `discovery`'s
    /// `jwks_uri` lists.
    ///
    /// # Errors
    /// [`AuthError::InvalidIdToken`] for a token that is malformed, uses another
    /// algorithm, names an unknown key or fails the signature check;
    /// [`AuthError::Transport`] or [`AuthError::UnexpectedResponse`] (naming the
    /// discovery or keys path) when the keys cannot be fetched.
    pub(crate) async fn verify(
        &self,
        http: &HttpClient,
        clock: &dyn Clock,
        discovery: &Url,
        token: &SecretString,
    ) -> Result<(), AuthError> {
        let token = token.expose_secret();
        let (message, signature) = token
            .rsplit_once('.')
            .ok_or(IdTokenError::Malformed("not three dot-separated segments"))?;
        let header = message
            .split_once('.')
            .map(|(header, _)| header)
            .ok_or(IdTokenError::Malformed("not three dot-separated segments"))?;
        let header = LENIENT_URL_SAFE
            .decode(header)
            .map_err(|_| IdTokenError::Malformed("header is not base64url"))?;
        let header: Header = serde_json::from_slice(&header)
            .map_err(|_| IdTokenError::Malformed("header is not a JSON object with alg"))?;
        if header.alg != "RS256" {
            let alg = header.alg.chars().take(MAX_ALG_CHARS).collect();
            return Err(IdTokenError::UnsupportedAlgorithm(alg).into());
        }
        let kid = header
            .kid
            .ok_or(IdTokenError::Malformed("header has no kid"))?;

        let key = self.key(http, clock, discovery, &kid).await?;
        match jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key, Algorithm::RS256) {
            Ok(true) => Ok(()),
            Ok(false) | Err(_) => Err(IdTokenError::BadSignature.into()),
        }
    }

    /// The key named `kid`, from the cache or fetched (module docs).
    async fn key(
        &self,
        http: &HttpClient,
        clock: &dyn Clock,
        discovery: &Url,
        kid: &str,
    ) -> Result<DecodingKey, AuthError> {
        let mut sets = self.sets.lock().await;
        let cached = sets
            .get(discovery.as_str())
            .map(|set| set.fetched.elapsed());
        let mut asked_now = false;
        match cached {
            Some(age) if age < KEYS_REFRESH => {}
            Some(age) if age < KEYS_MAX_AGE => match fetch(http, clock, discovery).await {
                Ok(set) => {
                    insert(&mut sets, discovery, set);
                    asked_now = true;
                }
                Err(error) => {
                    asked_now = true;
                    tracing::warn!(
                        discovery = discovery.path(),
                        age_seconds = age.as_secs(),
                        error = %error,
                        "signing keys not refreshed; using the last good ones"
                    );
                }
            },
            _ => {
                let set = fetch(http, clock, discovery).await?;
                insert(&mut sets, discovery, set);
                asked_now = true;
            }
        }
        let Some(set) = sets.get(discovery.as_str()) else {
            return Err(unknown(kid));
        };
        if let Some(key) = set.find(kid) {
            return Ok(key.clone());
        }
        // A key rolled over since the last fetch (signing-key-rollover.md): ask once more.
        if asked_now || set.fetched.elapsed() < KEYS_MIN_REFETCH {
            return Err(unknown(kid));
        }
        let set = fetch(http, clock, discovery).await?;
        let key = set.find(kid).cloned();
        insert(&mut sets, discovery, set);
        key.ok_or_else(|| unknown(kid))
    }
}

fn unknown(kid: &str) -> AuthError {
    IdTokenError::UnknownSigningKey {
        kid: kid.chars().take(MAX_ALG_CHARS * 4).collect(),
    }
    .into()
}

fn insert(sets: &mut HashMap<String, KeySet>, discovery: &Url, set: KeySet) {
    if sets.len() >= MAX_KEY_SETS && !sets.contains_key(discovery.as_str()) {
        let oldest = sets
            .iter()
            .min_by_key(|(_, set)| set.fetched)
            .map(|(name, _)| name.clone());
        if let Some(oldest) = oldest {
            sets.remove(&oldest);
        }
    }
    sets.insert(discovery.as_str().to_owned(), set);
}

/// Discovery document, then its `jwks_uri`; both must be `https`, or `http` on loopback
/// (the rule of `Cloud::custom`).
async fn fetch(http: &HttpClient, clock: &dyn Clock, discovery: &Url) -> Result<KeySet, AuthError> {
    let document: Discovery = get_json(http, clock, discovery).await?;
    let jwks_uri = Url::parse(&document.jwks_uri)
        .ok()
        .filter(|url| {
            url.scheme() == "https" || (url.scheme() == "http" && crate::cloud::is_loopback(url))
        })
        .ok_or_else(|| AuthError::UnexpectedResponse {
            endpoint: endpoint_path(discovery),
            status: 200,
            content_type: None,
            detail: "jwks_uri is not an https url (nor http on loopback)".to_owned(),
        })?;
    let document: KeyDocument = get_json(http, clock, &jwks_uri).await?;
    let keys: Vec<(String, DecodingKey)> = document
        .keys
        .into_iter()
        .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
        .filter(|jwk| {
            jwk.kty == "RSA"
                && jwk.usage.as_deref().is_none_or(|usage| usage == "sig")
                && jwk.alg.as_deref().is_none_or(|alg| alg == "RS256")
        })
        .filter_map(|jwk| {
            let key = DecodingKey::from_rsa_components(jwk.n.as_deref()?, jwk.e.as_deref()?);
            Some((jwk.kid?, key.ok()?))
        })
        .take(MAX_KEYS)
        .collect();
    tracing::debug!(
        keys = keys.len(),
        jwks = jwks_uri.path(),
        "fetched id token signing keys"
    );
    Ok(KeySet {
        keys,
        fetched: Instant::now(),
    })
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &HttpClient,
    clock: &dyn Clock,
    url: &Url,
) -> Result<T, AuthError> {
    let request = http::Request::get(url.as_str())
        .header(ACCEPT, "application/json")
        .body(Vec::new())
        .map_err(|error| AuthError::InvalidConfiguration(format!("bad request: {error}")))?;
    let answered = StdMutex::new(Answered::default());
    let response = http
        .send(request, &answered, clock)
        .await
        .map_err(|failure| failure.into_auth_error(url))?;
    let status = response.status().as_u16();
    let unexpected = |detail: String| AuthError::UnexpectedResponse {
        endpoint: endpoint_path(url),
        status,
        content_type: response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
        detail,
    };
    if status != 200 {
        return Err(unexpected("not served".to_owned()));
    }
    serde_json::from_slice(response.body())
        .map_err(|error| unexpected(format!("cannot decode: {}", json_error_summary(&error))))
}
