//! Continuous access evaluation (spec §7): the events an administrator or a policy
//! raises on a user, and the claims challenge Graph answers a CAE access token issued
//! before such an event with.
//!
//! Sources: [E:claims-challenge.md] (header format), [E:app-resilience-continuous-access-evaluation.md]
//! (the `nbf` claims of a revocation), [concept-continuous-access-evaluation] (the
//! critical events), and the messages and claims Graph was seen answering with in
//! public issue threads (named at each event below).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Where Graph's challenge sends a client for interactive sign-in. Microsoft's header
/// names the public cloud's `common` authorize endpoint; the simulator keeps it
/// verbatim (clients use their own authority, not this URI).
const AUTHORIZATION_URI: &str = "https://login.microsoftonline.com/common/oauth2/authorize";

/// Graph's own app id, which Entra names as the resource in its MFA message.
pub(super) const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// An event on one user that continuous access evaluation acts on. Graph challenges
/// every CAE access token of the user issued before it; what a refresh then gets
/// depends on the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CaeEvent {
    /// An administrator revoked the user's sessions (Graph `revokeSignInSessions`):
    /// refresh tokens issued before fail with `invalid_grant` AADSTS50173.
    SessionsRevoked,
    /// The account was disabled: refresh fails with `invalid_grant` AADSTS50057 while it
    /// stays disabled.
    UserDisabled,
    /// The account was deleted: refresh fails with `invalid_grant` AADSTS50034.
    UserDeleted,
    /// The user's network location changed (an IP-based Conditional Access policy):
    /// any refresh gets a token that passes, so the client recovers silently.
    LocationChanged,
    /// A Conditional Access policy now needs the user to sign in again (MFA): refresh
    /// tokens issued before fail with `interaction_required` AADSTS50076 and `claims`.
    InteractionRequired,
    /// As [`CaeEvent::InteractionRequired`], answered as Entra was seen answering a
    /// refresh under a new MFA policy: `invalid_grant` AADSTS50076, `suberror`
    /// `basic_action`, `claims`.
    MfaRequired,
}

impl CaeEvent {
    /// The code in Graph's message "Continuous access evaluation resulted in challenge
    /// with result: `InteractionRequired` and code: `{code}`".
    ///
    /// `TokenIssuedBeforeRevocationTimestamp` is the code seen after
    /// `revokeSignInSessions` (microsoftgraph/msgraph-sdk-powershell#1741); the
    /// simulator uses it for disabled and deleted users too (UNCONFIRMED).
    /// `LocationConditionEvaluationSatisfied` is seen on IP changes
    /// (microsoftgraph/msgraph-sdk-powershell#3322, Azure/azure-cli#31777), and
    /// `TokenCreatedWithOutdatedPolicies` after policy changes
    /// (microsoftgraph/msgraph-sdk-java#2355).
    pub fn graph_code(self) -> &'static str {
        match self {
            Self::SessionsRevoked | Self::UserDisabled | Self::UserDeleted => {
                "TokenIssuedBeforeRevocationTimestamp"
            }
            Self::LocationChanged => "LocationConditionEvaluationSatisfied",
            Self::InteractionRequired | Self::MfaRequired => "TokenCreatedWithOutdatedPolicies",
        }
    }

    /// Whether a refresh token issued before the event stops working because of it
    /// (with the interaction errors; revocation and disabling have their own).
    pub(super) fn blocks_refresh(self) -> bool {
        matches!(self, Self::InteractionRequired | Self::MfaRequired)
    }
}

/// The claims challenge Graph answers a CAE access token with: HTTP 401 and
/// [`ClaimsChallenge::www_authenticate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimsChallenge {
    pub(super) tenant: usize,
    pub(super) not_before: i64,
    pub(super) event: CaeEvent,
}

impl ClaimsChallenge {
    /// The index of the token's tenant.
    pub fn tenant(&self) -> usize {
        self.tenant
    }

    /// The unix time (seconds) of the event: the `nbf` a new token must be issued after.
    pub fn not_before(&self) -> i64 {
        self.not_before
    }

    /// The event the token was issued before.
    pub fn event(&self) -> CaeEvent {
        self.event
    }

    /// The claims request, as JSON text. A revocation's is Microsoft's documented
    /// `{"access_token":{"nbf":{"essential":true, "value":"<nbf>"}}}` (space included,
    /// as in [E:app-resilience-continuous-access-evaluation.md]); a location change's
    /// also names the client's address, as Graph was seen sending
    /// (`xms_rp_ipaddr`, Azure/azure-cli#31777), which on loopback is `127.0.0.1`.
    pub fn claims(&self) -> String {
        let nbf = self.not_before;
        match self.event {
            CaeEvent::LocationChanged => format!(
                r#"{{"access_token":{{"nbf":{{"essential":true,"value":"{nbf}"}},"xms_rp_ipaddr":{{"value":"127.0.0.1"}}}}}}"#
            ),
            _ => format!(r#"{{"access_token":{{"nbf":{{"essential":true, "value":"{nbf}"}}}}}}"#),
        }
    }

    /// The `WWW-Authenticate` value of [E:claims-challenge.md]: `Bearer realm="",
    /// authorization_uri="…/common/oauth2/authorize", error="insufficient_claims",
    /// claims="<base64 of the claims>"` (standard base64 with padding, as in
    /// Microsoft's examples).
    pub fn www_authenticate(&self) -> String {
        format!(
            "Bearer realm=\"\", authorization_uri=\"{AUTHORIZATION_URI}\", error=\"insufficient_claims\", claims=\"{}\"",
            STANDARD.encode(self.claims())
        )
    }

    /// Graph's error message for the challenge.
    pub fn message(&self) -> String {
        format!(
            "Continuous access evaluation resulted in challenge with result: InteractionRequired \
             and code: {}",
            self.event.graph_code()
        )
    }
}

/// One event as recorded: its place in the order of issues and events, its time, and
/// the policy id its `capolids` claims name.
#[derive(Debug, Clone)]
pub(super) struct RecordedEvent {
    pub(super) seq: u64,
    pub(super) unix: i64,
    pub(super) event: CaeEvent,
    pub(super) policy_id: String,
}

/// The `claims` of the AADSTS50076 error: the Conditional Access policy to satisfy, in
/// the shape Entra was seen sending (AzureAD/microsoft-authentication-library-for-js#5491).
pub(super) fn policy_claims(policy_id: &str) -> String {
    format!(r#"{{"access_token":{{"capolids":{{"essential":true,"values":["{policy_id}"]}}}}}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revocation_challenge_is_microsofts_documented_header() {
        let challenge = ClaimsChallenge {
            tenant: 0,
            not_before: 1_604_106_651,
            event: CaeEvent::SessionsRevoked,
        };
        // The claims value of Microsoft's example in
        // app-resilience-continuous-access-evaluation.md, byte for byte.
        assert_eq!(
            challenge.www_authenticate(),
            "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", \
             error=\"insufficient_claims\", \
             claims=\"eyJhY2Nlc3NfdG9rZW4iOnsibmJmIjp7ImVzc2VudGlhbCI6dHJ1ZSwgInZhbHVlIjoiMTYwNDEwNjY1MSJ9fX0=\""
        );
        assert_eq!(
            challenge.message(),
            "Continuous access evaluation resulted in challenge with result: InteractionRequired \
             and code: TokenIssuedBeforeRevocationTimestamp"
        );
    }

    #[test]
    fn challenge_claims_are_json_with_the_nbf() {
        for event in [
            CaeEvent::SessionsRevoked,
            CaeEvent::UserDisabled,
            CaeEvent::LocationChanged,
            CaeEvent::MfaRequired,
        ] {
            let challenge = ClaimsChallenge {
                tenant: 1,
                not_before: 42,
                event,
            };
            let claims: serde_json::Value = serde_json::from_str(&challenge.claims()).unwrap();
            assert_eq!(claims["access_token"]["nbf"]["value"], "42", "{event:?}");
            assert_eq!(claims["access_token"]["nbf"]["essential"], true);
        }
        let claims: serde_json::Value = serde_json::from_str(&policy_claims("p")).unwrap();
        assert_eq!(claims["access_token"]["capolids"]["values"][0], "p");
    }
}
