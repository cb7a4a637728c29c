//! Browser sessions: a random session id in a signed, `HttpOnly`, `SameSite=Lax` cookie,
//! the session itself on the server (who is signed in, the CSRF token, and the pending
//! Microsoft sign-ins started from this browser).
//!
//! Key decisions:
//! - The cookie carries only an id; the pending authorization (its PKCE verifier, nonce
//!   and state) never leaves the server, and a callback is accepted only in the browser
//!   session that started it (its `state` is looked up in that session alone).
//! - Signing in replaces the session id (no session fixation); signing out drops it.
//! - Every form POST carries the session's CSRF token, compared in constant time.
//! - Sessions live in memory: a restart signs everyone out. A service running several
//!   instances keeps them in its shared database or cache instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum_extra::extract::SignedCookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use base64::Engine as _;
use connection_store::{ConnectionId, OwnerId};
use entra_auth::PendingAuthorization;
use rand::RngCore as _;
use secrecy::ExposeSecret as _;
use subtle::ConstantTimeEq as _;

/// The session cookie's name.
pub const COOKIE: &str = "m365link_session";

/// A session unused for this long is gone.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(8 * 60 * 60);

/// A session nobody signed in with is dropped after this long unused (every visit to the
/// sign-in page makes one, so they must not pile up).
pub(crate) const ANONYMOUS_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// At most this many sessions; beyond it the anonymous ones go first.
pub(crate) const MAX_SESSIONS: usize = 100_000;

/// A Microsoft sign-in left unfinished for this long is forgotten.
pub(crate) const PENDING_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Pending sign-ins kept per session (several tabs); the oldest goes first.
const MAX_PENDING: usize = 5;

/// What a pending Microsoft sign-in is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Intent {
    /// "Create a new connection" with this name.
    Create {
        /// The name the customer gave.
        name: String,
    },
    /// "Reconnect" an existing connection.
    Reconnect {
        /// The connection.
        id: ConnectionId,
    },
}

/// A Microsoft sign-in started from this browser, waiting for Entra's redirect.
#[derive(Debug)]
pub(crate) struct Pending {
    /// What the sign-in is for.
    pub intent: Intent,
    /// The PKCE verifier, nonce and state (redacted in `Debug`).
    pub authorization: PendingAuthorization,
    /// The owner who started it.
    pub owner: OwnerId,
    started: Instant,
}

/// One browser session.
pub(crate) struct SessionData {
    /// The signed-in customer, if any.
    pub owner: Option<OwnerId>,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
    pending: HashMap<String, Pending>,
    last_seen: Instant,
}

impl SessionData {
    fn expired(&self, now: Instant) -> bool {
        let timeout = if self.owner.is_some() {
            IDLE_TIMEOUT
        } else {
            ANONYMOUS_IDLE_TIMEOUT
        };
        now.duration_since(self.last_seen) > timeout
    }
}

/// A snapshot of a session for a request: who, and the CSRF token for its forms.
#[derive(Clone)]
pub(crate) struct Current {
    /// The session id (from the verified cookie).
    pub id: String,
    /// The signed-in customer, if any.
    pub owner: Option<OwnerId>,
    /// The CSRF token to put in forms.
    pub csrf: String,
}

// The session id and the CSRF token are credentials: never in logs.
impl std::fmt::Debug for SessionData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionData")
            .field("owner", &self.owner)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Current")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// All sessions of this process.
#[derive(Clone, Default)]
pub(crate) struct Sessions {
    inner: Arc<Mutex<HashMap<String, SessionData>>>,
}

/// 32 random bytes, URL-safe base64.
pub(crate) fn random_token() -> String {
    let mut bytes = [0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionData>> {
        // A panic while holding the lock cannot leave a session half-written (every
        // change is a single insert or remove), so a poisoned map is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The session named by the jar's verified cookie, touched; `None` when there is no
    /// cookie, its signature is wrong, or the session expired.
    pub(crate) fn current(&self, jar: &SignedCookieJar) -> Option<Current> {
        let id = jar.get(COOKIE)?.value().to_owned();
        let mut sessions = self.lock();
        let now = Instant::now();
        let data = sessions.get_mut(&id)?;
        if data.expired(now) {
            sessions.remove(&id);
            return None;
        }
        data.last_seen = now;
        Some(Current {
            owner: data.owner.clone(),
            csrf: data.csrf.clone(),
            id,
        })
    }

    /// Starts a new session for `owner` (or an anonymous one), dropping `replaces` (the
    /// session id before signing in or out). Returns it and the cookie to set.
    pub(crate) fn start(
        &self,
        owner: Option<OwnerId>,
        replaces: Option<&str>,
        secure: bool,
    ) -> (Current, Cookie<'static>) {
        let id = random_token();
        let data = SessionData {
            owner: owner.clone(),
            csrf: random_token(),
            pending: HashMap::new(),
            last_seen: Instant::now(),
        };
        let current = Current {
            id: id.clone(),
            owner,
            csrf: data.csrf.clone(),
        };
        let mut sessions = self.lock();
        if let Some(old) = replaces {
            sessions.remove(old);
        }
        let now = Instant::now();
        sessions.retain(|_, s| !s.expired(now));
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, s| s.owner.is_some());
        }
        sessions.insert(id.clone(), data);
        (current, session_cookie(id, secure))
    }

    /// Ends session `id`.
    pub(crate) fn end(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Keeps a pending sign-in in session `id` under its `state`.
    pub(crate) fn add_pending(
        &self,
        id: &str,
        owner: OwnerId,
        intent: Intent,
        authorization: PendingAuthorization,
    ) -> bool {
        let mut sessions = self.lock();
        let Some(data) = sessions.get_mut(id) else {
            return false;
        };
        let now = Instant::now();
        data.pending
            .retain(|_, p| now.duration_since(p.started) <= PENDING_TIMEOUT);
        while data.pending.len() >= MAX_PENDING {
            let oldest = data
                .pending
                .iter()
                .min_by_key(|(_, p)| p.started)
                .map(|(state, _)| state.clone());
            match oldest {
                Some(state) => data.pending.remove(&state),
                None => break,
            };
        }
        let state = authorization.state().expose_secret().to_owned();
        data.pending.insert(
            state,
            Pending {
                intent,
                authorization,
                owner,
                started: now,
            },
        );
        true
    }

    /// Takes the pending sign-in with this `state` out of session `id` (single use); `None`
    /// when this browser session did not start it, or it is too old.
    pub(crate) fn take_pending(&self, id: &str, state: &str) -> Option<Pending> {
        let mut sessions = self.lock();
        let pending = sessions.get_mut(id)?.pending.remove(state)?;
        (Instant::now().duration_since(pending.started) <= PENDING_TIMEOUT).then_some(pending)
    }
}

/// The session cookie: `HttpOnly`, `SameSite=Lax` (it must come along on Entra's
/// top-level redirect back to the callback), `Secure` when served over HTTPS.
pub(crate) fn session_cookie(id: String, secure: bool) -> Cookie<'static> {
    Cookie::build((COOKIE, id))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .path("/")
        .build()
}

/// Whether `given` is the session's CSRF token (constant time).
pub(crate) fn csrf_matches(current: &Current, given: &str) -> bool {
    let expected = current.csrf.as_bytes();
    expected.len() == given.len() && bool::from(expected.ct_eq(given.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum_extra::extract::cookie::Key;

    fn pending_authorization() -> PendingAuthorization {
        let client = entra_auth::EntraClient::builder("client")
            .redirect_uri("http://localhost:1/callback")
            .build()
            .unwrap();
        let (_url, pending) = client.authorization_request().build().unwrap().into_parts();
        pending
    }

    #[test]
    fn a_session_is_found_only_through_its_signed_cookie() {
        let sessions = Sessions::default();
        let key = Key::generate();
        let (current, cookie) = sessions.start(Some(OwnerId::new("a@x")), None, false);
        assert!(cookie.http_only().unwrap_or(false));
        assert_eq!(cookie.same_site(), Some(SameSite::Lax));

        let jar = SignedCookieJar::new(key.clone()).add(cookie);
        let found = sessions.current(&jar).unwrap();
        assert_eq!(found.id, current.id);
        assert_eq!(found.owner.unwrap().as_str(), "a@x");

        // The same id signed with another key is refused.
        let forged = SignedCookieJar::new(Key::generate()).add(session_cookie(current.id, false));
        let forged_value = forged.get(COOKIE);
        let other = SignedCookieJar::new(key);
        assert!(forged_value.is_some());
        assert!(sessions.current(&other).is_none());
    }

    #[test]
    fn signing_in_replaces_the_session_and_csrf_is_exact() {
        let sessions = Sessions::default();
        let (anonymous, _) = sessions.start(None, None, false);
        let (signed_in, _) = sessions.start(Some(OwnerId::new("a@x")), Some(&anonymous.id), true);
        assert_ne!(anonymous.id, signed_in.id);
        assert_ne!(anonymous.csrf, signed_in.csrf);
        assert!(sessions.lock().get(&anonymous.id).is_none());
        assert!(csrf_matches(&signed_in, &signed_in.csrf.clone()));
        assert!(!csrf_matches(&signed_in, &anonymous.csrf));
        assert!(!csrf_matches(&signed_in, ""));
    }

    #[test]
    fn a_pending_sign_in_is_taken_once_and_only_from_its_session() {
        let sessions = Sessions::default();
        let owner = OwnerId::new("a@x");
        let (mine, _) = sessions.start(Some(owner.clone()), None, false);
        let (theirs, _) = sessions.start(Some(owner.clone()), None, false);
        let authorization = pending_authorization();
        let state = authorization.state().expose_secret().to_owned();
        let intent = Intent::Create {
            name: "Germany".into(),
        };
        assert!(sessions.add_pending(&mine.id, owner, intent.clone(), authorization));
        assert!(sessions.take_pending(&theirs.id, &state).is_none());
        let taken = sessions.take_pending(&mine.id, &state).unwrap();
        assert_eq!(taken.intent, intent);
        assert!(sessions.take_pending(&mine.id, &state).is_none());
    }

    #[test]
    fn at_most_five_pending_sign_ins_are_kept_per_session() {
        let sessions = Sessions::default();
        let owner = OwnerId::new("a@x");
        let (mine, _) = sessions.start(Some(owner.clone()), None, false);
        let mut states = Vec::new();
        for n in 0..7 {
            let authorization = pending_authorization();
            states.push(authorization.state().expose_secret().to_owned());
            let intent = Intent::Create {
                name: format!("n{n}"),
            };
            sessions.add_pending(&mine.id, owner.clone(), intent, authorization);
        }
        let kept = states
            .iter()
            .filter(|s| sessions.take_pending(&mine.id, s).is_some())
            .count();
        assert_eq!(kept, MAX_PENDING);
    }
}
