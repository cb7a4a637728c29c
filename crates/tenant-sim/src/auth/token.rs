//! `POST /{tenant}/oauth2/v2.0/token` (spec §2): the authorization code grant with PKCE,
//! the refresh token grant with rotation, and the device code grant (spec §3); the
//! answer of spec §2d and Entra's error body (spec §4a).
//!
//! Client authentication: the simulated app is confidential. A client secret (form
//! `client_secret` or HTTP Basic) or a client assertion signed by a registered
//! certificate is required to redeem a code unless
//! [`Auth::set_allow_public_client`] is on; refresh tokens issued to an authenticated
//! client need credentials again, those issued without (device code, public client)
//! don't. Credentials that are sent are always checked.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::authorization::PkceMethod;
use super::cae::{CaeEvent, GRAPH_APP_ID, policy_claims};
use super::claims::ClaimsRequest;
use super::errors::{Diagnostics, EntraError};
use super::grants::{CodeLookup, DevicePoll, DeviceState, Grant, RefreshLookup, digest};
use super::request::{Params, basic_credentials};
use super::scopes::ScopeSet;
use super::{Account, Auth, ConsentMode, TenantSegment, authorize, keys, random_token};

const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How long an id token is valid.
const ID_TOKEN_LIFETIME: time::Duration = time::Duration::hours(1);

/// `POST /{tenant}/oauth2/v2.0/token`.
pub(super) async fn token(
    State(auth): State<Arc<Auth>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let diagnostics = Diagnostics::new(&headers, auth.clock.wall());
    let params = Params::parse(&body);
    let mut note = Note::default();
    let answer = grant(&auth, &tenant, &headers, &params, &mut note);
    if let Some(tenant) = note.tenant {
        let grant_type = match params.get("grant_type") {
            None => "missing",
            Some(grant @ ("authorization_code" | "refresh_token")) => grant,
            Some(DEVICE_CODE_GRANT) => "device_code",
            Some(_) => "unsupported",
        };
        let error = answer.as_ref().err().map(|error| error.error);
        auth.with_token_counters(tenant, |counters| {
            counters.record_request(grant_type, error, note.answers_challenge);
        });
    }
    match answer {
        Ok(body) => {
            auth.grants().counters.tokens_issued += 1;
            let mut response = Json(body).into_response();
            diagnostics.add_headers(response.headers_mut());
            response
        }
        Err(error) => {
            auth.grants().counters.token_errors += 1;
            tracing::debug!(
                error = error.error,
                code = error.code,
                "token request refused"
            );
            error.into_json_response(&diagnostics, auth.login_base())
        }
    }
}

/// What a token request learnt for the tenant's counters: the tenant it belongs to (the
/// grant's, else the URL's) and whether its `claims` answered a challenge.
#[derive(Debug, Default)]
struct Note {
    tenant: Option<usize>,
    answers_challenge: bool,
}

/// `GET /{tenant}/oauth2/v2.0/token`: Entra's AADSTS900561.
pub(super) async fn token_get(State(auth): State<Arc<Auth>>, headers: HeaderMap) -> Response {
    let diagnostics = Diagnostics::new(&headers, auth.clock.wall());
    EntraError::new(
        "invalid_request",
        900_561,
        "The endpoint only accepts POST, OPTIONS requests. Received a GET request.",
    )
    .into_json_response(&diagnostics, auth.login_base())
}

fn grant(
    auth: &Auth,
    tenant: &str,
    headers: &HeaderMap,
    params: &Params,
    note: &mut Note,
) -> Result<Value, EntraError> {
    let segment = auth
        .resolve_tenant(tenant)
        .ok_or_else(|| EntraError::tenant_not_found(tenant))?;
    let home = segment.home();
    note.tenant = home;
    let grant_type = params
        .get("grant_type")
        .ok_or_else(|| EntraError::missing_parameter("grant_type"))?;
    let authenticated = client_credentials(auth, tenant, segment, headers, params)?;
    // Spec §7: a client declares cp1 in `claims`, merged with any challenge's claims.
    let claims = ClaimsRequest::parse(params.get("claims"))?.unwrap_or_default();
    note.answers_challenge = claims.answers_challenge;
    let request = GrantRequest {
        home,
        params,
        authenticated,
        cp1: claims.cp1,
    };
    match grant_type {
        "authorization_code" => code_grant(auth, &request, note),
        "refresh_token" => refresh_grant(auth, &request, note),
        DEVICE_CODE_GRANT => device_grant(auth, &request, note),
        other => Err(EntraError::new(
            "unsupported_grant_type",
            70_003,
            format!("The app requested an unsupported grant type '{other}'."),
        )),
    }
}

/// Checks the client id and whatever credentials were sent; `true` when the client
/// authenticated (secret or assertion).
fn client_credentials(
    auth: &Auth,
    tenant: &str,
    segment: TenantSegment,
    headers: &HeaderMap,
    params: &Params,
) -> Result<bool, EntraError> {
    let basic = basic_credentials(headers);
    let client_id = match (params.get("client_id"), basic.as_ref()) {
        (Some(form), Some((header, _))) if form != header => {
            return Err(EntraError::malformed(
                "The client_id in the body and the Authorization header differ.",
            ));
        }
        (Some(form), _) => form.to_owned(),
        (None, Some((header, _))) => header.clone(),
        (None, None) => return Err(EntraError::missing_parameter("client_id")),
    };
    if !auth.is_client(&client_id) {
        return Err(EntraError::unknown_client(&client_id, tenant));
    }
    let secret = params.get("client_secret").or_else(|| {
        basic
            .as_ref()
            .map(|(_, secret)| secret.as_str())
            .filter(|secret| !secret.is_empty())
    });
    let assertion = params.get("client_assertion");
    match (secret, assertion) {
        (Some(_), Some(_)) => Err(EntraError::malformed(
            "Only one of client_secret and client_assertion may be sent.",
        )),
        (Some(secret), None) => {
            if digest(secret) == auth.client_secret_digest {
                Ok(true)
            } else {
                Err(EntraError::new(
                    "invalid_client",
                    7_000_215,
                    format!(
                        "Invalid client secret provided. Ensure the secret being sent in the request \
                         is the client secret value, not the client secret ID, for a secret added to \
                         app '{}'.",
                        auth.config.client_id
                    ),
                ))
            }
        }
        (None, Some(assertion)) => {
            if params.get("client_assertion_type") != Some(JWT_BEARER) {
                return Err(EntraError::missing_parameter("client_assertion_type"));
            }
            let certificates = auth.settings().client_certificates.clone();
            let audiences = token_endpoints(auth, tenant, segment);
            keys::verify_assertion(assertion, &certificates, &auth.config.client_id, &audiences)
                .map(|()| true)
                .map_err(|_| {
                    EntraError::new(
                        "invalid_client",
                        700_027,
                        "Client assertion failed signature validation.",
                    )
                })
        }
        (None, None) => Ok(false),
    }
}

/// The `aud` values a client assertion may carry: this token endpoint under every name
/// of the tenant (MSAL uses the authority's token endpoint, spec §2c); on
/// `organizations`/`common`, tenant 0's names too.
fn token_endpoints(auth: &Auth, tenant: &str, segment: TenantSegment) -> Vec<String> {
    let base = auth.login_base();
    let named = segment.home().unwrap_or(0);
    [
        tenant,
        auth.tenant_id(named),
        auth.tenant_domain(named),
        "organizations",
        "common",
    ]
    .iter()
    .map(|segment| format!("{base}/{segment}/oauth2/v2.0/token"))
    .collect()
}

fn credentials_required() -> EntraError {
    EntraError::new(
        "invalid_client",
        7_000_218,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    )
}

fn invalid_grant_malformed() -> EntraError {
    EntraError::new(
        "invalid_grant",
        9_002_313,
        "Invalid request. Request is malformed or invalid.",
    )
}

/// A token request's common parts, checked before its grant is looked at.
struct GrantRequest<'a> {
    /// The tenant the URL names (`None` for `organizations`/`common`).
    home: Option<usize>,
    params: &'a Params,
    /// The client sent valid credentials.
    authenticated: bool,
    /// Its `claims` declared the `cp1` capability.
    cp1: bool,
}

fn code_grant(
    auth: &Auth,
    request: &GrantRequest<'_>,
    note: &mut Note,
) -> Result<Value, EntraError> {
    let GrantRequest {
        home,
        params,
        authenticated,
        ..
    } = *request;
    let code = params
        .get("code")
        .ok_or_else(|| EntraError::missing_parameter("code"))?;
    if !authenticated && !auth.settings().allow_public_client {
        return Err(credentials_required());
    }
    let redirect_uri = params.get("redirect_uri");
    if let Some(scope) = params.get("scope") {
        // Optional here; it may only name Graph and the OIDC scopes (spec §2a).
        ScopeSet::parse(scope, &auth.config.graph_resource)?;
    }
    let code = match auth.grants().take_code(code, auth.clock.now()) {
        CodeLookup::Valid(code) => code,
        CodeLookup::Redeemed => {
            return Err(EntraError::new(
                "invalid_grant",
                54_005,
                "OAuth2 Authorization code was already redeemed, please retry with a new valid \
                 code or use an existing refresh token.",
            ));
        }
        CodeLookup::Expired => {
            return Err(EntraError::new(
                "invalid_grant",
                70_008,
                "The provided authorization code or refresh token has expired due to inactivity. \
                 Send a new interactive authorization request for this user and resource.",
            ));
        }
        CodeLookup::Unknown => return Err(invalid_grant_malformed()),
    };
    note.tenant = Some(code.grant.tenant);
    if home.is_some_and(|home| home != code.grant.tenant) {
        // "A code must be redeemed against the same tenant segment it was issued for"
        // (spec §2a, AADSTS700005).
        return Err(EntraError::new(
            "invalid_grant",
            700_005,
            "Provided Authorization Code is intended to use against other tenant, thus rejected.",
        ));
    }
    let Some(redirect_uri) = redirect_uri else {
        return Err(EntraError::missing_parameter("redirect_uri"));
    };
    if redirect_uri != code.redirect_uri {
        return Err(EntraError::new(
            "invalid_grant",
            500_112,
            format!(
                "The reply address '{redirect_uri}' does not match the reply address '{}' provided \
                 when requesting Authorization code.",
                code.redirect_uri
            ),
        ));
    }
    if let Some((challenge, method)) = &code.code_challenge {
        let verified = params
            .get("code_verifier")
            .is_some_and(|verifier| match method {
                PkceMethod::Plain => verifier == challenge,
                PkceMethod::S256 => {
                    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == *challenge
                }
            });
        if !verified {
            return Err(EntraError::new(
                "invalid_grant",
                501_481,
                "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
            ));
        }
    }
    let account = signed_in_account(auth, code.grant.tenant, &code.grant.user_id)?;
    let scopes = code.grant.scopes.clone();
    issue(
        auth,
        &account,
        &code.grant,
        &scopes,
        Issue {
            nonce: code.nonce.as_deref(),
            confidential: authenticated,
            with_client_info: wants_client_info(params),
            // MSAL sends the claims to /authorize and with the code; either declares it.
            cae: request.cp1 || code.cp1,
        },
    )
}

fn refresh_grant(
    auth: &Auth,
    request: &GrantRequest<'_>,
    note: &mut Note,
) -> Result<Value, EntraError> {
    let GrantRequest {
        home,
        params,
        authenticated,
        cp1,
    } = *request;
    let token = params
        .get("refresh_token")
        .ok_or_else(|| EntraError::missing_parameter("refresh_token"))?;
    let lookup = auth.grants().refresh_token(token, auth.clock.now());
    let refresh = match lookup {
        RefreshLookup::Valid(refresh) => refresh,
        RefreshLookup::Unknown => return Err(invalid_grant_malformed()),
        RefreshLookup::Expired => {
            return Err(EntraError::new(
                "invalid_grant",
                700_082,
                "The refresh token has expired due to inactivity. The token was issued on a date \
                 more than 90 days ago and was inactive for 90.00:00:00.",
            ));
        }
        RefreshLookup::Revoked {
            tenant,
            issued,
            revoked,
        } => {
            note.tenant = Some(tenant);
            return Err(revoked_grant(issued, revoked));
        }
    };
    note.tenant = Some(refresh.grant.tenant);
    if refresh.confidential && !authenticated {
        return Err(credentials_required());
    }
    if let Some(home) = home.filter(|home| *home != refresh.grant.tenant) {
        // The refresh token's user is not a member (nor a guest) of the tenant the URL
        // names (spec §4b: 50020, user not in tenant).
        let upn = auth
            .account_in(refresh.grant.tenant, &refresh.grant.user_id)
            .map_or_else(|| refresh.grant.user_id.clone(), |a| a.user_principal_name);
        return Err(EntraError::new(
            "invalid_grant",
            50_020,
            format!(
                "User account '{upn}' from identity provider '{}' does not exist in tenant '{}' \
                 and cannot access the application '{}' in that tenant.",
                auth.issuer(refresh.grant.tenant),
                auth.tenant_id(home),
                auth.config.client_id
            ),
        ));
    }
    let granted = &refresh.grant.scopes;
    let requested = match params.get("scope") {
        None => granted.clone(),
        Some(scope) => {
            let requested = ScopeSet::parse(scope, &auth.config.graph_resource)?;
            // "equivalent to or a subset of" the original consent (spec §2b).
            if !requested.graph_within(granted) {
                return Err(EntraError::new(
                    "invalid_grant",
                    65_001,
                    format!(
                        "The user or administrator has not consented to use the application with ID \
                         '{}'. Send an interactive authorization request for this user and resource.",
                        auth.config.client_id
                    ),
                )
                .with_suberror("consent_required"));
            }
            let mut requested = requested;
            if requested.graph.is_empty() {
                requested.graph.clone_from(&granted.graph);
            }
            requested
        }
    };
    let account = signed_in_account(auth, refresh.grant.tenant, &refresh.grant.user_id)?;
    let blocked = auth.grants().refresh_blocked_by(&refresh);
    if let Some(event) = blocked {
        return Err(interaction_needed(event.event, &event.policy_id));
    }
    issue(
        auth,
        &account,
        &refresh.grant,
        &requested,
        Issue {
            nonce: None,
            confidential: refresh.confidential || authenticated,
            with_client_info: wants_client_info(params),
            cae: cp1,
        },
    )
}

/// Spec §4b: 50173 `FreshTokenNeeded`, in the words Entra answers after
/// `revokeSignInSessions` (Azure/azure-cli#23635). The suberror is UNCONFIRMED (§4c);
/// `bad_token` is the one MSAL.js takes to drop the refresh token, which is right here.
fn revoked_grant(issued: time::OffsetDateTime, revoked: time::OffsetDateTime) -> EntraError {
    EntraError::new(
        "invalid_grant",
        50_173,
        format!(
            "The provided grant has expired due to it being revoked, a fresh auth token is \
             needed. The user might have changed or reset their password. The grant was \
             issued on '{}' and the TokensValidFrom date (before which tokens are not valid) \
             for this user is '{}'.",
            super::errors::format_timestamp(issued),
            super::errors::format_timestamp(revoked)
        ),
    )
    .with_suberror("bad_token")
}

/// AADSTS50076 with the policy's `claims` (spec §4b: MFA required by Conditional
/// Access). Entra was seen answering a refresh with `invalid_grant` and `suberror`
/// `basic_action` (AzureAD/microsoft-authentication-library-for-js#5491);
/// [`CaeEvent::InteractionRequired`] answers with the `interaction_required` error value
/// that the error reference lists for "another authentication step is required".
fn interaction_needed(event: CaeEvent, policy_id: &str) -> EntraError {
    let message = format!(
        "Due to a configuration change made by your administrator, or because you moved to a          new location, you must use multi-factor authentication to access '{GRAPH_APP_ID}'."
    );
    let error = if event == CaeEvent::MfaRequired {
        EntraError::new("invalid_grant", 50_076, message).with_suberror("basic_action")
    } else {
        EntraError::new("interaction_required", 50_076, message)
    };
    error.with_claims(policy_claims(policy_id))
}

fn device_grant(
    auth: &Auth,
    request: &GrantRequest<'_>,
    note: &mut Note,
) -> Result<Value, EntraError> {
    let GrantRequest {
        params,
        authenticated,
        cp1,
        ..
    } = *request;
    let device_code = params
        .get("device_code")
        .ok_or_else(|| EntraError::missing_parameter("device_code"))?;
    let poll = auth
        .grants()
        .poll_device_code(device_code, auth.clock.now());
    let pending = || {
        EntraError::new(
            "authorization_pending",
            70_016,
            "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
        )
    };
    match poll {
        DevicePoll::Unknown => Err(EntraError::new(
            "bad_verification_code",
            70_018,
            "The provided value for the input parameter 'device_code' is not valid.",
        )),
        DevicePoll::Redeemed => Err(EntraError::new(
            "invalid_grant",
            70_000,
            "The provided value for the input parameter 'device_code' is not valid: it was already redeemed.",
        )),
        DevicePoll::Expired => Err(EntraError::new(
            "expired_token",
            70_019,
            "Verification code expired.",
        )),
        // Not listed by Microsoft (spec §3); RFC 8628 §3.5. 70016 is the pending code.
        DevicePoll::SlowDown => Err(EntraError::new(
            "slow_down",
            70_016,
            "OAuth 2.0 device flow error. Polling too fast: wait at least 'interval' seconds between polls.",
        )),
        DevicePoll::Pending { first_poll } => {
            if first_poll {
                // Without a browser, the simulated person answers right after the first
                // poll, so a client sees one `authorization_pending` then the outcome.
                resolve_without_browser(auth, device_code);
            }
            Err(pending())
        }
        DevicePoll::Declined { admin_required } => Err(if admin_required {
            let mut error = authorize::admin_approval_required(&[]);
            error.error = "authorization_declined";
            error
        } else {
            EntraError::new(
                "authorization_declined",
                65_004,
                "User declined to consent to access the app.",
            )
        }),
        DevicePoll::Approved {
            grant,
            cp1: device_cp1,
        } => {
            note.tenant = Some(grant.tenant);
            let account = signed_in_account(auth, grant.tenant, &grant.user_id)?;
            let scopes = grant.scopes.clone();
            issue(
                auth,
                &account,
                &grant,
                &scopes,
                Issue {
                    nonce: None,
                    confidential: authenticated,
                    with_client_info: wants_client_info(params),
                    cae: cp1 || device_cp1,
                },
            )
        }
    }
}

/// The device-code outcome of each non-interactive consent mode; on
/// `organizations`/`common` tenant 0's admin is the person.
fn resolve_without_browser(auth: &Auth, device_code: &str) {
    let Some((home, scopes)) = auth.grants().device_request(device_code) else {
        return;
    };
    let tenant = home.unwrap_or(0);
    let mode = auth.consent_mode(tenant);
    let state = match mode {
        ConsentMode::Interactive => return,
        ConsentMode::UserDeclines => DeviceState::Declined {
            admin_required: false,
        },
        ConsentMode::AdminApprovalRequired => DeviceState::Declined {
            admin_required: true,
        },
        ConsentMode::AutoConsent | ConsentMode::MissingOneScope => {
            let Some(account) = authorize::default_account(auth, tenant) else {
                return;
            };
            if account.is_admin {
                auth.grants().consent_for_tenant(tenant, &scopes.graph);
            }
            let scopes = if mode == ConsentMode::MissingOneScope {
                scopes.without_last_graph()
            } else {
                scopes
            };
            DeviceState::Approved(Grant {
                tenant,
                user_id: account.id,
                scopes,
            })
        }
    };
    auth.grants().resolve_device_code(device_code, state);
}

/// The user a grant of tenant `tenant` belongs to, if it can still sign in.
fn signed_in_account(auth: &Auth, tenant: usize, user_id: &str) -> Result<Account, EntraError> {
    let account = auth.account_in(tenant, user_id).ok_or_else(|| {
        EntraError::new(
            "invalid_grant",
            50_034,
            format!(
                "The user account {user_id} does not exist in the {} directory.",
                auth.tenant_id(tenant)
            ),
        )
    })?;
    if !account.account_enabled {
        return Err(authorize::disabled());
    }
    Ok(account)
}

/// Whether the token request asks for `client_info` (MSAL sends `client_info=1`).
fn wants_client_info(params: &Params) -> bool {
    params.get("client_info") == Some("1")
}

/// The v2.0 token endpoint's `client_info`: base64url (no padding) of
/// `{"uid":"<user object id>","utid":"<tenant id>"}`, from which MSAL keys the account
/// as `<uid>.<utid>`.
fn client_info(auth: &Auth, tenant: usize, account: &Account) -> String {
    let info = json!({ "uid": account.id, "utid": auth.tenant_id(tenant) });
    URL_SAFE_NO_PAD.encode(info.to_string())
}

/// Issues the tokens of spec §2d: an access token for `scopes`' Graph permissions, a new
/// refresh token for the whole `grant` when it has `offline_access`, an id token when
/// `scopes` has `openid`, and `client_info` when the request asked for it
/// (`client_info=1`, as Microsoft answers only then), all bound to the grant's tenant.
/// The refresh token is stored before the answer leaves. A CAE access token (the
/// request declared `cp1`) gets the tenant's CAE lifetime, up to 28 hours at Microsoft
/// [E:app-resilience-continuous-access-evaluation.md].
fn issue(
    auth: &Auth,
    account: &Account,
    grant: &Grant,
    scopes: &ScopeSet,
    how: Issue<'_>,
) -> Result<Value, EntraError> {
    let Issue {
        nonce,
        confidential,
        with_client_info,
        cae,
    } = how;
    let tenant = grant.tenant;
    let settings = auth.settings_of(tenant);
    let lifetime = if cae {
        settings.cae_access_token_lifetime
    } else {
        settings.access_token_lifetime
    };
    let prefixed = auth.settings().prefixed_scopes;
    let id_token = if scopes.openid {
        let claims = id_token_claims(auth, tenant, account, scopes, nonce);
        Some(auth.key.sign(&claims).map_err(|_| {
            EntraError::new("server_error", 500_011, "The id token could not be signed.")
        })?)
    } else {
        None
    };
    let access_token = random_token(64);
    let refresh_token = grant.scopes.offline_access.then(|| random_token(96));
    let now = auth.clock.now();
    {
        let mut grants = auth.grants();
        let access = Grant {
            tenant,
            user_id: account.id.clone(),
            scopes: scopes.clone(),
        };
        grants.insert_access_token(
            &access_token,
            &access,
            lifetime,
            cae,
            now,
            auth.clock.wall(),
        );
        if let Some(refresh_token) = &refresh_token {
            grants.insert_refresh_token(
                refresh_token,
                grant.clone(),
                confidential,
                now,
                auth.clock.wall(),
            );
        }
    }
    auth.with_token_counters(tenant, |counters| counters.record_issue(cae));
    tracing::debug!(
        user_id = %account.id,
        cae,
        refresh_token = refresh_token.is_some(),
        id_token = id_token.is_some(),
        "tokens issued"
    );
    let expires_in = lifetime.as_secs();
    let mut body = json!({
        "token_type": "Bearer",
        "scope": scopes.response_scope(prefixed, &auth.config.graph_resource),
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "access_token": access_token,
    });
    if let Some(object) = body.as_object_mut() {
        if let Some(refresh_token) = refresh_token {
            object.insert("refresh_token".into(), refresh_token.into());
        }
        if let Some(id_token) = id_token {
            object.insert("id_token".into(), id_token.into());
        }
        if with_client_info {
            object.insert(
                "client_info".into(),
                client_info(auth, tenant, account).into(),
            );
        }
    }
    Ok(body)
}

/// How [`issue`] answers: the id token's nonce, whether the refresh token needs client
/// credentials, `client_info`, and whether the access token is a CAE token.
#[derive(Debug, Clone, Copy)]
struct Issue<'a> {
    nonce: Option<&'a str>,
    confidential: bool,
    with_client_info: bool,
    cae: bool,
}

/// The v2.0 id token claims of Microsoft's sample (id-token-claims-v2.json): `name`,
/// `preferred_username` and `oid` need the `profile` scope (spec §5a).
fn id_token_claims(
    auth: &Auth,
    tenant: usize,
    account: &Account,
    scopes: &ScopeSet,
    nonce: Option<&str>,
) -> Value {
    let now = auth.clock.wall();
    let issued = now.unix_timestamp();
    let expires = (now + ID_TOKEN_LIFETIME).unix_timestamp();
    // `sub` is pairwise: per user and application (spec §5a).
    let subject = URL_SAFE_NO_PAD.encode(Sha256::digest(
        format!("{}:{}", auth.config.client_id, account.id).as_bytes(),
    ));
    let mut claims = json!({
        "ver": "2.0",
        "iss": auth.issuer(tenant),
        "sub": subject,
        "aud": auth.config.client_id,
        "exp": expires,
        "iat": issued,
        "nbf": issued,
        "tid": auth.tenant_id(tenant),
        "aio": random_token(48),
    });
    if let Some(object) = claims.as_object_mut() {
        if scopes.profile {
            object.insert("name".into(), account.display_name.clone().into());
            object.insert(
                "preferred_username".into(),
                account.user_principal_name.clone().into(),
            );
            object.insert("oid".into(), account.id.clone().into());
        }
        if let Some(nonce) = nonce {
            object.insert("nonce".into(), nonce.into());
        }
        if auth.wids_claim(tenant) {
            // The template ids of the user's roles; a user without roles gets no claim.
            // (Real tokens were seen carrying b79fbf4d-3ef9-4689-8143-76b194e85509 for
            // plain members, a template the built-in roles page does not list: not sent.)
            let wids = auth
                .tenants
                .get(tenant)
                .map(|t| t.directory.role_template_ids(&account.id))
                .unwrap_or_default();
            if !wids.is_empty() {
                object.insert("wids".into(), wids.into());
            }
        }
    }
    claims
}
