//! Token-endpoint etiquette, as MSAL's throttled HTTP client (spec §4c): after a
//! `Retry-After`, a 429 or a 5xx, identical requests wait without being sent; identical
//! requests that got HTTP 400 get the same answer from memory for 60 s, which keeps a
//! fleet of workers out of Entra's "client request loop" (AADSTS50196, spec §4b).
//!
//! One [`Throttle`] per [`EntraClient`](crate::EntraClient), shared by its clones and all
//! its sessions. It keeps a keyed SHA-256 of each request, never a token or secret.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::header::CONTENT_TYPE;
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use crate::clock::Clock;
use crate::error::AuthError;
use crate::http::{Answered, HttpClient, HttpFailure, MAX_RETRY_AFTER};
use crate::random::random_bytes;
use crate::token::EntraErrorResponse;

/// How many requests the throttle of one [`EntraClient`](crate::EntraClient) remembers.
/// When full, expired entries go first, then the one whose wait ends soonest. Each entry
/// is a 32-byte hash, a deadline and at most a 4 KiB error answer: under 20 MiB in the
/// worst case, a few hundred KiB in practice.
pub const MAX_THROTTLE_ENTRIES: usize = 4096;

/// The wait after a 429 or 5xx without `Retry-After` (MSAL's default, spec §4c).
pub const DEFAULT_THROTTLE: Duration = Duration::from_secs(5);

/// How long an identical request's HTTP 400 answer is reused (MSAL, spec §4c).
pub const BAD_REQUEST_CACHE: Duration = Duration::from_secs(60);

/// Larger 400 answers are not kept (Entra's are under 1 KiB); they are sent again.
const MAX_CACHED_ANSWER_BYTES: usize = 4096;

/// The per-call credential parameters: a client assertion differs on every call (its
/// `jti`, `iat`), so "identical" requests ignore them (and the secret is never hashed).
const CREDENTIAL_PARAMS: [&str; 3] = ["client_secret", "client_assertion", "client_assertion_type"];

/// The device-code grant: its `authorization_pending` 400 is the normal poll answer, so
/// its 400s are never reused (MSAL, spec §3).
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Which request this is, as far as the throttle is concerned.
pub(crate) struct RequestKey {
    digest: [u8; 32],
    device_grant: bool,
}

/// A 400 answer kept for identical requests.
#[derive(Clone)]
pub(crate) enum CachedAnswer {
    /// Entra's JSON error, replayed as the same answer.
    Entra(EntraErrorResponse),
    /// Something else (e.g. a proxy's HTML page): the same typed failure.
    Unexpected {
        content_type: Option<String>,
        detail: String,
    },
}

/// Why a request is not sent.
pub(crate) enum Held {
    /// Wait this much longer.
    Wait(Duration),
    /// The answer an identical request got.
    Answer(CachedAnswer),
}

struct Entry {
    until: Instant,
    answer: Option<CachedAnswer>,
}

/// The memory of one client's recent token-endpoint answers.
pub(crate) struct Throttle {
    /// Keys the hash, so that the stored digests say nothing about a request without it.
    salt: [u8; 32],
    capacity: usize,
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

impl Throttle {
    pub(crate) fn new() -> Result<Self, AuthError> {
        Self::with_capacity(MAX_THROTTLE_ENTRIES)
    }

    pub(crate) fn with_capacity(capacity: usize) -> Result<Self, AuthError> {
        Ok(Self {
            salt: random_bytes()?,
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        })
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        // Entries are replaced whole, so a poisoned lock still holds valid data.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The request's key: method, URL and form parameters (sorted) except the credential.
    pub(crate) fn key(&self, request: &http::Request<Vec<u8>>) -> RequestKey {
        let mut params: Vec<(String, String)> = url::form_urlencoded::parse(request.body())
            .into_owned()
            .filter(|(name, _)| !CREDENTIAL_PARAMS.contains(&name.as_str()))
            .collect();
        params.sort();
        let device_grant = params
            .iter()
            .any(|(name, value)| name == "grant_type" && value == DEVICE_CODE_GRANT);
        let mut hasher = Sha256::new();
        hasher.update(self.salt);
        let mut field = |bytes: &[u8]| {
            // Length-prefixed, so that no two parameter lists hash the same bytes.
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        field(request.method().as_str().as_bytes());
        field(request.uri().to_string().as_bytes());
        for (name, value) in &params {
            field(name.as_bytes());
            field(value.as_bytes());
        }
        RequestKey {
            digest: hasher.finalize().into(),
            device_grant,
        }
    }

    /// Whether an identical request must not be sent now, and what to answer instead.
    pub(crate) fn check(&self, key: &RequestKey) -> Option<Held> {
        let now = Instant::now();
        let mut entries = self.entries();
        let entry = entries.get(&key.digest)?;
        if entry.until <= now {
            entries.remove(&key.digest);
            return None;
        }
        Some(match &entry.answer {
            Some(answer) => Held::Answer(answer.clone()),
            None => Held::Wait(entry.until - now),
        })
    }

    /// Remembers what Entra answered: a `Retry-After` (any status) or a 429/5xx holds
    /// identical requests back; a 400 (not of the device grant, and without
    /// `Retry-After`) is kept for [`BAD_REQUEST_CACHE`].
    pub(crate) fn record(
        &self,
        key: &RequestKey,
        status: u16,
        retry_after: Option<Duration>,
        answer: impl FnOnce() -> Option<CachedAnswer>,
    ) {
        let (wait, answer) = if let Some(retry_after) = retry_after {
            (retry_after.min(MAX_RETRY_AFTER), None)
        } else if status == 429 || status >= 500 {
            (DEFAULT_THROTTLE, None)
        } else if status == 400 && !key.device_grant {
            match answer() {
                Some(answer) => (BAD_REQUEST_CACHE, Some(answer)),
                None => return,
            }
        } else {
            return;
        };
        if wait.is_zero() {
            return;
        }
        tracing::debug!(
            status,
            wait_seconds = wait.as_secs(),
            cached_answer = answer.is_some(),
            "holding back identical token requests"
        );
        let now = Instant::now();
        let until = now.checked_add(wait).unwrap_or(now);
        let mut entries = self.entries();
        if entries.len() >= self.capacity && !entries.contains_key(&key.digest) {
            entries.retain(|_, entry| entry.until > now);
            if entries.len() >= self.capacity
                && let Some(soonest) = entries
                    .iter()
                    .min_by_key(|(_, entry)| entry.until)
                    .map(|(digest, _)| *digest)
            {
                entries.remove(&soonest);
            }
        }
        entries.insert(key.digest, Entry { until, answer });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries().len()
    }
}

/// Sends `request` on `http` unless the throttle holds it back, and records the answer.
pub(crate) async fn send(
    throttle: &Throttle,
    http: &HttpClient,
    clock: &dyn Clock,
    request: http::Request<Vec<u8>>,
    answered: &Mutex<Answered>,
) -> Result<http::Response<Vec<u8>>, HttpFailure> {
    let key = throttle.key(&request);
    match throttle.check(&key) {
        Some(Held::Wait(wait)) => {
            tracing::debug!(
                wait_seconds = wait.as_secs(),
                "identical token request held back"
            );
            return Err(HttpFailure::Throttled(wait));
        }
        Some(Held::Answer(answer)) => {
            tracing::debug!("identical token request answered with its recent http 400");
            if let Ok(mut answered) = answered.lock() {
                *answered = Answered {
                    status: Some(400),
                    retry_after: None,
                };
            }
            return replay(answer);
        }
        None => {}
    }
    let result = http.send(request, answered, clock).await;
    let Answered {
        status,
        retry_after,
    } = answered
        .lock()
        .map(|answered| *answered)
        .unwrap_or_default();
    if let Some(status) = status {
        throttle.record(&key, status, retry_after, || match &result {
            Ok(response) if response.body().len() <= MAX_CACHED_ANSWER_BYTES => {
                serde_json::from_slice::<EntraErrorResponse>(response.body())
                    .ok()
                    .map(CachedAnswer::Entra)
            }
            Err(HttpFailure::Unexpected {
                content_type,
                detail,
                ..
            }) => Some(CachedAnswer::Unexpected {
                content_type: content_type.clone(),
                detail: detail.clone(),
            }),
            _ => None,
        });
    }
    result
}

fn replay(answer: CachedAnswer) -> Result<http::Response<Vec<u8>>, HttpFailure> {
    match answer {
        CachedAnswer::Entra(error) => {
            let body = serde_json::to_vec(&error).map_err(|_| HttpFailure::Unexpected {
                status: 400,
                content_type: None,
                detail: "cannot replay the cached answer".to_owned(),
            })?;
            http::Response::builder()
                .status(400)
                .header(CONTENT_TYPE, "application/json")
                .body(body)
                .map_err(|error| HttpFailure::Unexpected {
                    status: 400,
                    content_type: None,
                    detail: format!("cannot replay the cached answer: {error}"),
                })
        }
        CachedAnswer::Unexpected {
            content_type,
            detail,
        } => Err(HttpFailure::Unexpected {
            status: 400,
            content_type,
            detail,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &str) -> http::Request<Vec<u8>> {
        http::Request::post("https://login.example/t/oauth2/v2.0/token")
            .body(body.as_bytes().to_vec())
            .unwrap()
    }

    fn entra_400() -> Option<CachedAnswer> {
        serde_json::from_str(r#"{"error":"invalid_grant"}"#)
            .ok()
            .map(CachedAnswer::Entra)
    }

    #[test]
    fn credentials_and_parameter_order_do_not_change_the_key() {
        let throttle = Throttle::new().unwrap();
        let first = throttle.key(&request(
            "grant_type=refresh_token&refresh_token=RT&client_assertion=A1&client_assertion_type=jwt",
        ));
        let second = throttle.key(&request(
            "refresh_token=RT&client_assertion=A2&grant_type=refresh_token&client_secret=S",
        ));
        let other = throttle.key(&request("grant_type=refresh_token&refresh_token=RT2"));
        assert_eq!(first.digest, second.digest);
        assert_ne!(first.digest, other.digest);
        // Another client's salt gives other digests for the same request.
        let elsewhere = Throttle::new().unwrap().key(&request(
            "grant_type=refresh_token&refresh_token=RT&client_assertion=A1",
        ));
        assert_ne!(first.digest, elsewhere.digest);
    }

    #[test]
    fn the_key_holds_no_request_material() {
        let throttle = Throttle::new().unwrap();
        let key = throttle.key(&request(
            "grant_type=refresh_token&refresh_token=RT-SECRET-XYZ",
        ));
        let digest = String::from_utf8_lossy(&key.digest).into_owned();
        assert!(!digest.contains("RT-SECRET"));
        assert_eq!(key.digest.len(), 32);
    }

    #[tokio::test(start_paused = true)]
    async fn memory_stays_capped_expired_entries_going_first() {
        let throttle = Throttle::with_capacity(8).unwrap();
        // Eight short waits, then let them expire.
        for index in 0..8 {
            let key = throttle.key(&request(&format!("refresh_token=old-{index}")));
            throttle.record(&key, 503, None, || None);
        }
        assert_eq!(throttle.len(), 8);
        tokio::time::advance(DEFAULT_THROTTLE).await;
        // Eight long ones replace the expired ones; nothing long is lost.
        let long: Vec<_> = (0..8)
            .map(|index| throttle.key(&request(&format!("refresh_token=long-{index}"))))
            .collect();
        for key in &long {
            throttle.record(key, 429, Some(Duration::from_secs(600)), || None);
        }
        assert_eq!(throttle.len(), 8);
        assert!(long.iter().all(|key| throttle.check(key).is_some()));
        // Full of live entries: the one ending soonest goes.
        let soonest = throttle.key(&request("refresh_token=soonest"));
        throttle.record(&soonest, 429, Some(Duration::from_secs(1)), || None);
        let newest = throttle.key(&request("refresh_token=newest"));
        throttle.record(&newest, 429, Some(Duration::from_secs(900)), || None);
        assert_eq!(throttle.len(), 8);
        assert!(throttle.check(&soonest).is_none());
        assert!(throttle.check(&newest).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn the_documented_maximum_is_the_bound() {
        let throttle = Throttle::new().unwrap();
        for index in 0..MAX_THROTTLE_ENTRIES + 100 {
            let key = throttle.key(&request(&format!("refresh_token={index}")));
            throttle.record(&key, 400, None, entra_400);
        }
        assert_eq!(throttle.len(), MAX_THROTTLE_ENTRIES);
    }

    #[tokio::test(start_paused = true)]
    async fn device_grant_400s_are_not_kept_but_its_waits_are() {
        let throttle = Throttle::new().unwrap();
        let poll = throttle.key(&request(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&device_code=D",
        ));
        throttle.record(&poll, 400, None, entra_400);
        assert!(throttle.check(&poll).is_none());
        throttle.record(&poll, 429, Some(Duration::from_secs(10)), || None);
        assert!(
            matches!(throttle.check(&poll), Some(Held::Wait(wait)) if wait == Duration::from_secs(10))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_400_with_retry_after_waits_instead_of_being_replayed() {
        let throttle = Throttle::new().unwrap();
        let key = throttle.key(&request("refresh_token=RT"));
        throttle.record(&key, 400, Some(Duration::from_secs(3)), entra_400);
        assert!(matches!(throttle.check(&key), Some(Held::Wait(_))));
        throttle.record(&key, 200, Some(Duration::ZERO), || None);
        assert!(matches!(throttle.check(&key), Some(Held::Wait(_))));
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(throttle.check(&key).is_none());
        assert_eq!(throttle.len(), 0);
    }
}
