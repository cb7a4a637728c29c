//! The grant tables: pending interactive sign-ins, authorization codes, refresh tokens,
//! access tokens and device codes. Codes and tokens are stored under the SHA-256 of
//! their value, so the tables (and any dump of them) hold no usable secret.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use super::authorization::{AuthorizeRequest, PkceMethod};
use super::cae::{CaeEvent, ClaimsChallenge, RecordedEvent};
use super::scopes::ScopeSet;
use super::{AccessTokenInfo, Account, AuthCounters, BearerError, BearerGrant};

pub(super) type Digest = [u8; 32];

/// A time no token outlives: about a century after `now`.
fn far_future(now: Instant) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);
    now.checked_add(CENTURY).unwrap_or(now)
}

pub(super) fn digest(value: &str) -> Digest {
    Sha256::digest(value.as_bytes()).into()
}

/// "Authorization codes are short lived. Typically, they expire after about 10 minutes"
/// (spec §1a); also how long an interactive sign-in may take.
pub(super) const CODE_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// Refresh tokens: "90 days for all other scenarios" (spec §2b), counted from issue.
pub(super) const REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(90 * 24 * 60 * 60);
/// Device codes: `expires_in` default 900 s (spec §3).
pub(super) const DEVICE_CODE_LIFETIME: Duration = Duration::from_secs(900);
/// Device code polling `interval`.
pub(super) const DEVICE_CODE_INTERVAL: Duration = Duration::from_secs(5);
/// How long an expired access token is still recognised as "expired" rather than
/// "unknown".
const EXPIRED_MEMORY: Duration = Duration::from_secs(24 * 60 * 60);

/// An interactive sign-in between its pages, keyed by an unguessable flow id.
pub(super) struct PendingSignIn {
    pub(super) request: AuthorizeRequest,
    /// The account picked, with its tenant's index.
    pub(super) account: Option<(usize, Account)>,
    pub(super) expires: Instant,
}

/// What a code, refresh token or device code lets its holder get.
#[derive(Debug, Clone)]
pub(super) struct Grant {
    /// The tenant the user signed in to (index): tokens are bound to it.
    pub(super) tenant: usize,
    pub(super) user_id: String,
    pub(super) scopes: ScopeSet,
}

pub(super) struct AuthCode {
    pub(super) grant: Grant,
    pub(super) redirect_uri: String,
    pub(super) code_challenge: Option<(String, PkceMethod)>,
    pub(super) nonce: Option<String>,
    /// The authorize request declared `cp1` in its `claims`.
    pub(super) cp1: bool,
    expires: Instant,
}

pub(super) enum CodeLookup {
    Valid(AuthCode),
    Redeemed,
    Expired,
    Unknown,
}

#[derive(Debug, Clone)]
pub(super) struct RefreshGrant {
    pub(super) grant: Grant,
    /// Issued to an authenticated (confidential) client: refreshing needs credentials.
    pub(super) confidential: bool,
    pub(super) issued: time::OffsetDateTime,
    /// Its place in the order of issues and CAE events.
    pub(super) seq: u64,
    expires: Instant,
    revoked: Option<time::OffsetDateTime>,
}

pub(super) enum RefreshLookup {
    Valid(RefreshGrant),
    Revoked {
        tenant: usize,
        issued: time::OffsetDateTime,
        revoked: time::OffsetDateTime,
    },
    Expired,
    Unknown,
}

struct AccessGrant {
    tenant: usize,
    user_id: String,
    scopes: Vec<String>,
    expires: Instant,
    /// A CAE token (the request declared `cp1`): Graph challenges it after a CAE event.
    cae: bool,
    /// Its place in the order of issues and CAE events.
    seq: u64,
    issued_unix: i64,
    expires_unix: i64,
}

#[derive(Debug, Clone)]
pub(super) enum DeviceState {
    Pending,
    Approved(Grant),
    Declined { admin_required: bool },
}

pub(super) struct DeviceCode {
    /// The tenant the `{tenant}` segment named; `None` for `organizations`/`common`
    /// (the approving account's tenant then counts).
    pub(super) home: Option<usize>,
    pub(super) user_code: String,
    pub(super) scopes: ScopeSet,
    pub(super) state: DeviceState,
    /// The device code request declared `cp1` in its `claims`.
    pub(super) cp1: bool,
    expires: Instant,
    last_poll: Option<Instant>,
}

pub(super) enum DevicePoll {
    Unknown,
    Redeemed,
    Expired,
    SlowDown,
    Pending { first_poll: bool },
    Declined { admin_required: bool },
    Approved { grant: Grant, cp1: bool },
}

#[derive(Default)]
pub(super) struct Grants {
    pending: HashMap<String, PendingSignIn>,
    codes: HashMap<Digest, AuthCode>,
    redeemed_codes: HashMap<Digest, Instant>,
    refresh_tokens: HashMap<Digest, RefreshGrant>,
    access_tokens: HashMap<Digest, AccessGrant>,
    device_codes: HashMap<Digest, DeviceCode>,
    redeemed_device_codes: HashMap<Digest, Instant>,
    /// Graph scopes an administrator consented to for a whole tenant (tenant index,
    /// scope in lower case).
    tenant_consent: HashSet<(usize, String)>,
    /// CAE events per (tenant index, user id): the latest of each kind.
    cae_events: HashMap<(usize, String), Vec<RecordedEvent>>,
    /// Orders token issues and CAE events: a token is "issued before" an event when its
    /// number is smaller, even when (paused) time stands still between them.
    seq: u64,
    pub(super) counters: AuthCounters,
}

impl Grants {
    // ---- interactive sign-ins

    pub(super) fn insert_pending(&mut self, flow: String, request: AuthorizeRequest, now: Instant) {
        self.pending.retain(|_, pending| pending.expires > now);
        self.pending.insert(
            flow,
            PendingSignIn {
                request,
                account: None,
                expires: now + CODE_LIFETIME,
            },
        );
    }

    pub(super) fn pending_mut(&mut self, flow: &str, now: Instant) -> Option<&mut PendingSignIn> {
        self.pending
            .get_mut(flow)
            .filter(|pending| pending.expires > now)
    }

    pub(super) fn take_pending(&mut self, flow: &str, now: Instant) -> Option<PendingSignIn> {
        self.pending
            .remove(flow)
            .filter(|pending| pending.expires > now)
    }

    // ---- consent

    pub(super) fn consent_for_tenant(&mut self, tenant: usize, scopes: &[String]) {
        self.tenant_consent.extend(
            scopes
                .iter()
                .map(|scope| (tenant, scope.to_ascii_lowercase())),
        );
    }

    /// The admin-only scopes of `scopes` the tenant has not consented to.
    pub(super) fn lacking_tenant_consent(
        &self,
        tenant: usize,
        admin_only: &[String],
    ) -> Vec<String> {
        admin_only
            .iter()
            .filter(|scope| {
                !self
                    .tenant_consent
                    .contains(&(tenant, scope.to_ascii_lowercase()))
            })
            .cloned()
            .collect()
    }

    // ---- authorization codes

    pub(super) fn insert_code(
        &mut self,
        code: &str,
        grant: Grant,
        request: &AuthorizeRequest,
        now: Instant,
    ) {
        self.codes.retain(|_, code| code.expires > now);
        self.redeemed_codes.retain(|_, expires| *expires > now);
        self.codes.insert(
            digest(code),
            AuthCode {
                grant,
                redirect_uri: request.redirect_uri.clone(),
                code_challenge: request.code_challenge.clone(),
                nonce: request.nonce.clone(),
                cp1: request.claims.is_some_and(|claims| claims.cp1),
                expires: now + CODE_LIFETIME,
            },
        );
        self.counters.codes_issued += 1;
    }

    /// Takes a code out: it is single-use (AADSTS54005 on reuse, spec §1a).
    pub(super) fn take_code(&mut self, code: &str, now: Instant) -> CodeLookup {
        let key = digest(code);
        if self.redeemed_codes.contains_key(&key) {
            return CodeLookup::Redeemed;
        }
        match self.codes.remove(&key) {
            None => CodeLookup::Unknown,
            Some(code) if code.expires <= now => CodeLookup::Expired,
            Some(code) => {
                self.redeemed_codes.insert(key, now + CODE_LIFETIME);
                CodeLookup::Valid(code)
            }
        }
    }

    // ---- refresh tokens

    pub(super) fn insert_refresh_token(
        &mut self,
        token: &str,
        grant: Grant,
        confidential: bool,
        now: Instant,
        wall: time::OffsetDateTime,
    ) {
        self.refresh_tokens
            .retain(|_, refresh| refresh.expires > now || refresh.revoked.is_some());
        let seq = self.next_seq();
        self.refresh_tokens.insert(
            digest(token),
            RefreshGrant {
                grant,
                confidential,
                issued: wall,
                seq,
                expires: now + REFRESH_TOKEN_LIFETIME,
                revoked: None,
            },
        );
    }

    /// Looks a refresh token up; using it does not revoke it (spec §2b: "doesn't revoke
    /// old refresh tokens when used").
    pub(super) fn refresh_token(&self, token: &str, now: Instant) -> RefreshLookup {
        match self.refresh_tokens.get(&digest(token)) {
            None => RefreshLookup::Unknown,
            Some(refresh) => match refresh.revoked {
                Some(revoked) => RefreshLookup::Revoked {
                    tenant: refresh.grant.tenant,
                    issued: refresh.issued,
                    revoked,
                },
                None if refresh.expires <= now => RefreshLookup::Expired,
                None => RefreshLookup::Valid(refresh.clone()),
            },
        }
    }

    pub(super) fn revoke_refresh_token(&mut self, tenant: usize, key: &Digest) -> bool {
        let wall = time::OffsetDateTime::now_utc();
        match self
            .refresh_tokens
            .get_mut(key)
            .filter(|refresh| refresh.grant.tenant == tenant)
        {
            Some(refresh) => {
                if refresh.revoked.is_none() {
                    refresh.revoked = Some(wall);
                    self.counters.refresh_tokens_revoked += 1;
                }
                true
            }
            None => false,
        }
    }

    /// Revokes every refresh and access token of a user of a tenant; returns how many
    /// refresh tokens were still valid.
    pub(super) fn revoke_user(&mut self, tenant: usize, user_id: &str) -> usize {
        let wall = time::OffsetDateTime::now_utc();
        let mut revoked = 0;
        for refresh in self.refresh_tokens.values_mut() {
            if refresh.revoked.is_none()
                && refresh.grant.tenant == tenant
                && refresh.grant.user_id == user_id
            {
                refresh.revoked = Some(wall);
                revoked += 1;
            }
        }
        self.access_tokens
            .retain(|_, access| access.tenant != tenant || access.user_id != user_id);
        self.counters.refresh_tokens_revoked += revoked as u64;
        revoked
    }

    // ---- access tokens

    pub(super) fn insert_access_token(
        &mut self,
        token: &str,
        grant: &Grant,
        lifetime: Duration,
        cae: bool,
        now: Instant,
        wall: time::OffsetDateTime,
    ) {
        if self.access_tokens.len() > 10_000 {
            self.access_tokens.retain(|_, access| {
                access
                    .expires
                    .checked_add(EXPIRED_MEMORY)
                    .is_none_or(|forgotten| forgotten > now)
            });
        }
        let seq = self.next_seq();
        let issued_unix = wall.unix_timestamp();
        let seconds = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
        self.access_tokens.insert(
            digest(token),
            AccessGrant {
                tenant: grant.tenant,
                user_id: grant.user_id.clone(),
                scopes: grant.scopes.graph.clone(),
                // The lifetime is set over the control API and may be absurd
                // (u64::MAX seconds): saturate rather than panic on `Instant` overflow.
                expires: now.checked_add(lifetime).unwrap_or_else(|| far_future(now)),
                cae,
                seq,
                issued_unix,
                expires_unix: issued_unix.saturating_add(seconds),
            },
        );
    }

    /// What the simulator recorded about an access token it issued.
    pub(super) fn access_token_info(&self, key: &Digest) -> Option<AccessTokenInfo> {
        self.access_tokens.get(key).map(|access| AccessTokenInfo {
            tenant: access.tenant,
            user_id: access.user_id.clone(),
            cae: access.cae,
            issued_at: access.issued_unix,
            expires_at: access.expires_unix,
        })
    }

    pub(super) fn validate_access_token(
        &self,
        key: &Digest,
        now: Instant,
    ) -> Result<BearerGrant, BearerError> {
        let access = self.access_tokens.get(key).ok_or(BearerError::Invalid)?;
        if access.expires <= now {
            return Err(BearerError::Expired);
        }
        // Graph challenges only tokens of clients that declared cp1 (spec §7); others
        // keep working until they expire.
        if access.cae
            && let Some(event) = self.latest_event_after(access.tenant, &access.user_id, access.seq)
        {
            return Err(BearerError::Challenged(ClaimsChallenge {
                tenant: access.tenant,
                not_before: event.unix,
                event: event.event,
            }));
        }
        Ok(BearerGrant {
            tenant: access.tenant,
            user_id: access.user_id.clone(),
            scopes: access.scopes.clone(),
        })
    }

    // ---- device codes

    pub(super) fn insert_device_code(
        &mut self,
        home: Option<usize>,
        device_code: &str,
        user_code: String,
        scopes: ScopeSet,
        cp1: bool,
        now: Instant,
    ) {
        self.device_codes.retain(|_, device| device.expires > now);
        self.redeemed_device_codes
            .retain(|_, expires| *expires > now);
        self.device_codes.insert(
            digest(device_code),
            DeviceCode {
                home,
                user_code,
                scopes,
                state: DeviceState::Pending,
                cp1,
                expires: now + DEVICE_CODE_LIFETIME,
                last_poll: None,
            },
        );
    }

    /// The pending device code with this user code (case-insensitive, dashes and spaces
    /// ignored, as people type it).
    pub(super) fn device_by_user_code(
        &mut self,
        user_code: &str,
        now: Instant,
    ) -> Option<&mut DeviceCode> {
        let wanted: String = user_code
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_uppercase())
            .collect();
        self.device_codes.values_mut().find(|device| {
            device.user_code == wanted
                && device.expires > now
                && matches!(device.state, DeviceState::Pending)
        })
    }

    pub(super) fn decline_device_code(&mut self, user_code: &str, now: Instant) -> bool {
        match self.device_by_user_code(user_code, now) {
            Some(device) => {
                device.state = DeviceState::Declined {
                    admin_required: false,
                };
                true
            }
            None => false,
        }
    }

    /// One poll of the token endpoint with a device code (spec §3).
    pub(super) fn poll_device_code(&mut self, device_code: &str, now: Instant) -> DevicePoll {
        let key = digest(device_code);
        if self.redeemed_device_codes.contains_key(&key) {
            return DevicePoll::Redeemed;
        }
        let Some(device) = self.device_codes.get_mut(&key) else {
            return DevicePoll::Unknown;
        };
        if device.expires <= now {
            return DevicePoll::Expired;
        }
        let previous = device.last_poll.replace(now);
        let first_poll = previous.is_none();
        // RFC 8628 §3.5: polling faster than `interval` gets `slow_down`. The first poll
        // may come at once (MSAL polls before its first sleep), and a second of slack
        // keeps clients that wait exactly `interval` out of it.
        if let Some(previous) = previous
            && now.saturating_duration_since(previous) + Duration::from_secs(1)
                < DEVICE_CODE_INTERVAL
            && matches!(device.state, DeviceState::Pending)
        {
            return DevicePoll::SlowDown;
        }
        match device.state.clone() {
            DeviceState::Pending => DevicePoll::Pending { first_poll },
            DeviceState::Declined { admin_required } => DevicePoll::Declined { admin_required },
            DeviceState::Approved(grant) => {
                let cp1 = device.cp1;
                self.device_codes.remove(&key);
                self.redeemed_device_codes
                    .insert(key, now + DEVICE_CODE_LIFETIME);
                DevicePoll::Approved { grant, cp1 }
            }
        }
    }

    /// The tenant a device code was asked for (`None`: organizations or common) and
    /// its scopes.
    pub(super) fn device_request(&self, device_code: &str) -> Option<(Option<usize>, ScopeSet)> {
        self.device_codes
            .get(&digest(device_code))
            .map(|device| (device.home, device.scopes.clone()))
    }

    // ---- continuous access evaluation

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Records a CAE event on a user at `wall` (it replaces an earlier event of the
    /// same kind, which the new one outdates). Revoking sessions also revokes every
    /// refresh token of the user issued so far. Returns the event's unix time.
    pub(super) fn record_event(
        &mut self,
        tenant: usize,
        user_id: &str,
        event: CaeEvent,
        wall: time::OffsetDateTime,
    ) -> i64 {
        if event == CaeEvent::SessionsRevoked {
            let mut revoked = 0;
            for refresh in self.refresh_tokens.values_mut() {
                if refresh.revoked.is_none()
                    && refresh.grant.tenant == tenant
                    && refresh.grant.user_id == user_id
                {
                    refresh.revoked = Some(wall);
                    revoked += 1;
                }
            }
            self.counters.refresh_tokens_revoked += revoked;
        }
        let recorded = RecordedEvent {
            seq: self.next_seq(),
            unix: wall.unix_timestamp(),
            event,
            policy_id: uuid::Uuid::new_v4().to_string(),
        };
        let unix = recorded.unix;
        let events = self
            .cae_events
            .entry((tenant, user_id.to_owned()))
            .or_default();
        events.retain(|earlier| earlier.event != event);
        events.push(recorded);
        unix
    }

    /// The latest CAE event on the user after `seq`.
    fn latest_event_after(&self, tenant: usize, user_id: &str, seq: u64) -> Option<&RecordedEvent> {
        self.cae_events
            .get(&(tenant, user_id.to_owned()))?
            .iter()
            .filter(|event| event.seq > seq)
            .max_by_key(|event| event.seq)
    }

    /// The latest event after a refresh token was issued that makes it fail.
    pub(super) fn refresh_blocked_by(&self, refresh: &RefreshGrant) -> Option<RecordedEvent> {
        self.cae_events
            .get(&(refresh.grant.tenant, refresh.grant.user_id.clone()))?
            .iter()
            .filter(|event| event.seq > refresh.seq && event.event.blocks_refresh())
            .max_by_key(|event| event.seq)
            .cloned()
    }

    /// Resolves a device code on its first poll (the simulated person in the
    /// non-interactive consent modes).
    pub(super) fn resolve_device_code(&mut self, device_code: &str, state: DeviceState) {
        if let Some(device) = self.device_codes.get_mut(&digest(device_code)) {
            device.state = state;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absurd_access_token_lifetime_saturates_instead_of_panicking() {
        let mut grants = Grants::default();
        let now = Instant::now();
        let grant = Grant {
            tenant: 0,
            user_id: "u".into(),
            scopes: ScopeSet::default(),
        };
        let wall = time::OffsetDateTime::now_utc();
        grants.insert_access_token("at", &grant, Duration::MAX, false, now, wall);
        let found = grants.validate_access_token(&digest("at"), now + Duration::from_secs(3600));
        assert!(found.is_ok(), "a token with a huge lifetime is valid");
        // Cleaning up (past 10,000 tokens) must not overflow on it either.
        for i in 0..10_001 {
            let token = format!("t{i}");
            grants.insert_access_token(&token, &grant, Duration::from_secs(1), false, now, wall);
        }
        assert!(grants.validate_access_token(&digest("at"), now).is_ok());
    }
}
