//! `GET /{tenant}/oauth2/v2.0/authorize` (spec §1a) and the interactive pages behind it:
//! `POST /{tenant}/login` (the account picked) and `POST /{tenant}/Consent/Set`
//! (Accept / Cancel), the paths Microsoft's own pages post to.
//!
//! Errors found before the redirect URI is known to be registered are shown as an error
//! page, never sent to an unregistered URI; later ones go back on the redirect as
//! `error` and `error_description` (spec §1a).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use url::Url;

use super::authorization::{AuthorizeRequest, PkceMethod, Prompt};
use super::claims::ClaimsRequest;
use super::errors::{Diagnostics, EntraError};
use super::grants::Grant;
use super::pages;
use super::redirect::{self, ResponseMode};
use super::request::Params;
use super::scopes::ScopeSet;
use super::{Account, Auth, ConsentMode, TenantSegment, random_token};

/// How many accounts the sign-in page offers.
const CANDIDATES: usize = 20;

impl AuthorizeRequest {
    /// Sends an error back to the app on its redirect URI.
    fn error(&self, error: &EntraError, diagnostics: &Diagnostics) -> Response {
        redirect_error(
            &self.redirect,
            self.response_mode,
            self.state.as_deref(),
            error,
            diagnostics,
        )
    }
}

/// Why a request stops before an account is chosen.
enum Failure {
    /// Shown in the browser: the redirect URI cannot be trusted yet.
    Page(EntraError),
    /// Sent back on a registered redirect URI.
    Redirect(Box<AuthorizeRequest>, EntraError),
}

pub(super) fn redirect_error(
    redirect: &Url,
    mode: ResponseMode,
    state: Option<&str>,
    error: &EntraError,
    diagnostics: &Diagnostics,
) -> Response {
    let description = error.description(diagnostics);
    let mut params = vec![
        ("error", error.error),
        ("error_description", description.as_str()),
    ];
    if let Some(state) = state {
        params.push(("state", state));
    }
    redirect::respond(redirect, mode, &params)
}

pub(super) fn error_page(error: &EntraError, diagnostics: &Diagnostics) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Html(pages::error_page(&error.description(diagnostics))),
    )
        .into_response()
}

/// `GET /{tenant}/oauth2/v2.0/authorize`.
pub(super) async fn authorize(
    State(auth): State<Arc<Auth>>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let diagnostics = Diagnostics::new(&headers, auth.clock.wall());
    let params = Params::from_query(query.as_deref());
    match validate(&auth, &tenant, &params) {
        Err(Failure::Page(error)) => error_page(&error, &diagnostics),
        Err(Failure::Redirect(request, error)) => request.error(&error, &diagnostics),
        Ok(request) => start(&auth, request, &diagnostics),
    }
}

/// The redirect URI of a request, checked before anything is sent to it.
pub(super) fn checked_redirect(auth: &Auth, params: &Params) -> Result<(String, Url), EntraError> {
    let extra = auth.settings().extra_redirect_uris.clone();
    let Some(uri) = params.get("redirect_uri") else {
        // "the endpoint will pick one registered redirect_uri at random" (spec §1a); the
        // loopback set has no single URI to pick.
        return extra
            .iter()
            .find_map(|uri| redirect::registered(uri, &extra).map(|url| (uri.clone(), url)))
            .ok_or_else(|| {
                EntraError::new(
                    "invalid_request",
                    500_113,
                    "No reply address is registered for the application.",
                )
            });
    };
    redirect::registered(uri, &extra)
        .map(|url| (uri.to_owned(), url))
        .ok_or_else(|| {
            EntraError::new(
                "invalid_request",
                50_011,
                format!(
                    "The redirect URI '{uri}' specified in the request does not match the redirect \
                     URIs configured for the application '{}'. Make sure the redirect URI sent in \
                     the request matches one added to your application in the Azure portal. \
                     Navigate to https://aka.ms/redirectUriMismatchError to learn more about how \
                     to fix this.",
                    auth.config.client_id
                ),
            )
        })
}

/// Checks the tenant segment and the app (`client_id`) of a browser request; errors are
/// pages.
pub(super) fn checked_client(
    auth: &Auth,
    tenant: &str,
    params: &Params,
) -> Result<TenantSegment, EntraError> {
    let segment = auth
        .resolve_tenant(tenant)
        .ok_or_else(|| EntraError::tenant_not_found(tenant))?;
    let client_id = params
        .get("client_id")
        .ok_or_else(|| EntraError::missing_parameter("client_id"))?;
    if !auth.is_client(client_id) {
        return Err(EntraError::unknown_client(client_id, tenant));
    }
    Ok(segment)
}

fn validate(auth: &Auth, tenant: &str, params: &Params) -> Result<AuthorizeRequest, Failure> {
    let segment = checked_client(auth, tenant, params).map_err(Failure::Page)?;
    let (redirect_uri, redirect) = checked_redirect(auth, params).map_err(Failure::Page)?;
    let mode = ResponseMode::parse(params.get("response_mode"));
    let mut request = AuthorizeRequest {
        tenant: tenant.to_owned(),
        home: segment.home(),
        redirect_uri,
        redirect,
        response_mode: mode.unwrap_or(ResponseMode::Query),
        state: params.get("state").map(redirect::strip_html),
        nonce: params.get("nonce").map(str::to_owned),
        scopes: ScopeSet::default(),
        code_challenge: None,
        prompt: None,
        login_hint: params.get("login_hint").map(str::to_owned),
        claims: None,
    };
    if mode.is_none() {
        return Err(Failure::Redirect(
            Box::new(request),
            EntraError::malformed("The response_mode is not supported."),
        ));
    }
    match check_parameters(auth, params, &mut request) {
        Ok(()) => Ok(request),
        Err(error) => Err(Failure::Redirect(Box::new(request), error)),
    }
}

fn check_parameters(
    auth: &Auth,
    params: &Params,
    request: &mut AuthorizeRequest,
) -> Result<(), EntraError> {
    let response_type = params
        .get("response_type")
        .ok_or_else(|| EntraError::missing_parameter("response_type"))?;
    if response_type != "code" {
        // The simulated app has neither access nor ID tokens enabled for the implicit or
        // hybrid flows (spec §1a).
        let code = if response_type.split(' ').any(|part| part == "token") {
            700_051
        } else {
            700_054
        };
        return Err(EntraError::new(
            "unsupported_response_type",
            code,
            format!("response_type '{response_type}' is not enabled for the application."),
        ));
    }
    let scope = params
        .get("scope")
        .ok_or_else(|| EntraError::missing_parameter("scope"))?;
    request.scopes = ScopeSet::parse(scope, &auth.config.graph_resource)?;
    if request.scopes.is_empty() {
        return Err(EntraError::missing_parameter("scope"));
    }
    if let Some(challenge) = params.get("code_challenge") {
        // "If the method is omitted but a challenge is present, the challenge is treated
        // as plain" (spec §1a).
        let method = match params.get("code_challenge_method") {
            None | Some("plain") => PkceMethod::Plain,
            Some("S256") => PkceMethod::S256,
            Some(_) => {
                return Err(EntraError::malformed(
                    "The code_challenge_method is not supported.",
                ));
            }
        };
        // RFC 7636 §4.1-4.2: 43 to 128 characters; S256 gives exactly 43.
        let valid_length = match method {
            PkceMethod::S256 => challenge.len() == 43,
            PkceMethod::Plain => (43..=128).contains(&challenge.len()),
        };
        if !valid_length {
            return Err(EntraError::new(
                "invalid_request",
                501_491,
                "Invalid size of Code_Challenge parameter.",
            ));
        }
        request.code_challenge = Some((challenge.to_owned(), method));
    }
    request.claims = ClaimsRequest::parse(params.get("claims"))?;
    request.prompt = match params.get("prompt") {
        None => None,
        Some("login") => Some(Prompt::Login),
        Some("none") => Some(Prompt::None),
        // v1's `admin_consent` is documented only for v1 (spec §1a, UNCONFIRMED for v2).
        Some("consent" | "admin_consent") => Some(Prompt::Consent),
        Some("select_account") => Some(Prompt::SelectAccount),
        Some("create") => Some(Prompt::Create),
        Some(_) => return Err(EntraError::malformed("The prompt value is not supported.")),
    };
    Ok(())
}

fn declined() -> EntraError {
    EntraError::new(
        "access_denied",
        65_004,
        "User declined to consent to access the app.",
    )
}

/// AADSTS90094 with `consent_required`: a non-admin asked for permissions only an
/// administrator can grant (spec §4b: 90094 `AdminConsentRequired`).
pub(super) fn admin_approval_required(scopes: &[String]) -> EntraError {
    let named = if scopes.is_empty() {
        String::new()
    } else {
        format!(" ({})", scopes.join(", "))
    };
    EntraError::new(
        "consent_required",
        90_094,
        format!(
            "Admin consent is required for the permissions requested by this application{named}. \
             An admin consent request may be sent to the admin."
        ),
    )
}

fn start(auth: &Arc<Auth>, request: AuthorizeRequest, diagnostics: &Diagnostics) -> Response {
    // The tenant whose settings answer: the one the URL names, else the hinted
    // account's, else tenant 0 (whose admin the automatic modes sign in).
    let hinted = request
        .login_hint
        .as_deref()
        .map(|hint| auth.account_for(request.home, hint));
    let tenant = request
        .home
        .or_else(|| {
            hinted
                .as_ref()
                .and_then(|found| found.as_ref().map(|(t, _)| *t))
        })
        .unwrap_or(0);
    let mode = auth.consent_mode(tenant);
    let silent = request.prompt == Some(Prompt::None);
    match mode {
        ConsentMode::Interactive if silent => request.error(
            &EntraError::new(
                "login_required",
                50_058,
                "A silent sign-in request was sent but no user is signed in.",
            ),
            diagnostics,
        ),
        ConsentMode::Interactive => {
            let flow = random_token(32);
            let accounts = auth.sign_in_candidates(tenant, CANDIDATES);
            let page = pages::sign_in(
                &request.tenant,
                &flow,
                &accounts,
                request.login_hint.as_deref(),
                None,
            );
            auth.grants()
                .insert_pending(flow, request, auth.clock.now());
            Html(page).into_response()
        }
        ConsentMode::UserDeclines if silent => request.error(&consent_missing(auth), diagnostics),
        ConsentMode::UserDeclines => request.error(&declined(), diagnostics),
        ConsentMode::AdminApprovalRequired => {
            let scopes = request.scopes.admin_only();
            request.error(&admin_approval_required(&scopes), diagnostics)
        }
        ConsentMode::AutoConsent | ConsentMode::MissingOneScope => {
            // A hint of another tenant's user on a tenant's own URL is AADSTS50034, as
            // Entra answers.
            let account = match (request.login_hint.as_deref(), hinted) {
                (Some(_), Some(Some((_, account)))) => account,
                (Some(hint), _) => {
                    return error_page(&no_such_account(auth, tenant, hint), diagnostics);
                }
                (None, _) => match default_account(auth, tenant) {
                    Some(account) => account,
                    None => {
                        return error_page(
                            &no_such_account(auth, tenant, "(no account)"),
                            diagnostics,
                        );
                    }
                },
            };
            let trim = mode == ConsentMode::MissingOneScope;
            complete(auth, &request, tenant, &account, trim, true, diagnostics)
        }
    }
}

fn consent_missing(auth: &Auth) -> EntraError {
    EntraError::new(
        "consent_required",
        65_001,
        format!(
            "The user or administrator has not consented to use the application with ID '{}'. \
             Send an interactive authorization request for this user and resource.",
            auth.config.client_id
        ),
    )
    .with_suberror("consent_required")
}

fn no_such_account(auth: &Auth, tenant: usize, name: &str) -> EntraError {
    EntraError::new(
        "invalid_request",
        50_034,
        format!(
            "The user account {name} does not exist in the {} directory. To sign into this \
             application, the account must be added to the directory.",
            auth.tenant_id(tenant)
        ),
    )
}

/// The account of tenant `tenant` that signs in without a browser: the first enabled
/// administrator, else the first enabled account.
pub(super) fn default_account(auth: &Auth, tenant: usize) -> Option<Account> {
    let candidates = auth.sign_in_candidates(tenant, 100);
    candidates
        .iter()
        .find(|account| account.is_admin && account.account_enabled)
        .or_else(|| candidates.iter().find(|account| account.account_enabled))
        .cloned()
}

/// The signed-in `account` of tenant `tenant` consents: checks it may, records the
/// consent, issues a code bound to the tenant and sends it to the app.
fn complete(
    auth: &Auth,
    request: &AuthorizeRequest,
    tenant: usize,
    account: &Account,
    trim: bool,
    for_organization: bool,
    diagnostics: &Diagnostics,
) -> Response {
    if !account.account_enabled {
        return error_page(&disabled(), diagnostics);
    }
    let admin_only = request.scopes.admin_only();
    let mut grants = auth.grants();
    if account.is_admin {
        if for_organization {
            // The admin ticked "Consent on behalf of your organization".
            grants.consent_for_tenant(tenant, &request.scopes.graph);
        }
    } else {
        let lacking = grants.lacking_tenant_consent(tenant, &admin_only);
        if !lacking.is_empty() {
            drop(grants);
            return request.error(&admin_approval_required(&lacking), diagnostics);
        }
    }
    let scopes = if trim {
        request.scopes.without_last_graph()
    } else {
        request.scopes.clone()
    };
    let code = random_token(48);
    let grant = Grant {
        tenant,
        user_id: account.id.clone(),
        scopes,
    };
    grants.insert_code(&code, grant, request, auth.clock.now());
    drop(grants);
    tracing::debug!(user_id = %account.id, "authorization code issued");
    let mut params = vec![("code", code.as_str())];
    if let Some(state) = request.state.as_deref() {
        params.push(("state", state));
    }
    redirect::respond(&request.redirect, request.response_mode, &params)
}

pub(super) fn disabled() -> EntraError {
    EntraError::new("invalid_grant", 50_057, "The user account is disabled.")
}

fn flow_expired() -> EntraError {
    EntraError::new(
        "invalid_request",
        50_089,
        "Flow token expired. Authentication failed. Have the user try signing-in again.",
    )
}

/// `POST /{tenant}/login`: the account picked (or typed) on the sign-in page.
pub(super) async fn sign_in(
    State(auth): State<Arc<Auth>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let diagnostics = Diagnostics::new(&headers, auth.clock.wall());
    let params = Params::parse(&body);
    let now = auth.clock.now();
    let flow = params.get("flow").unwrap_or_default().to_owned();
    let chosen = params.get("account").or_else(|| params.get("login"));
    let mut grants = auth.grants();
    let Some(pending) = grants.pending_mut(&flow, now) else {
        return error_page(&flow_expired(), &diagnostics);
    };
    // On `organizations`/`common` the account typed names its tenant.
    let home = pending.request.home;
    let found = chosen.and_then(|name| auth.account_for(home, name));
    let Some((account_tenant, account)) = found else {
        let message = format!(
            "This username may be incorrect. Make sure you typed it correctly. ({})",
            chosen.unwrap_or_default()
        );
        let accounts = auth.sign_in_candidates(home.unwrap_or(0), CANDIDATES);
        let page = pages::sign_in(&tenant, &flow, &accounts, chosen, Some(&message));
        return Html(page).into_response();
    };
    if !account.account_enabled {
        return error_page(&disabled(), &diagnostics);
    }
    pending.account = Some((account_tenant, account.clone()));
    let admin_only = pending.request.scopes.admin_only();
    let scopes = pending.request.scopes.display_list();
    let needs_admin = !account.is_admin
        && !grants
            .lacking_tenant_consent(account_tenant, &admin_only)
            .is_empty();
    drop(grants);
    let page = if needs_admin {
        pages::admin_approval(&tenant, &flow, &account, &auth.config.client_id)
    } else {
        pages::consent(&tenant, &flow, &account, &auth.config.client_id, &scopes)
    };
    Html(page).into_response()
}

/// `POST /{tenant}/Consent/Set`: Accept, Cancel, or "return without consent".
pub(super) async fn consent(
    State(auth): State<Arc<Auth>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let diagnostics = Diagnostics::new(&headers, auth.clock.wall());
    let params = Params::parse(&body);
    let flow = params.get("flow").unwrap_or_default();
    let pending = auth.grants().take_pending(flow, auth.clock.now());
    let Some(pending) = pending else {
        return error_page(&flow_expired(), &diagnostics);
    };
    let request = pending.request;
    let Some((tenant, account)) = pending.account else {
        return error_page(&flow_expired(), &diagnostics);
    };
    match params.get("decision") {
        Some("accept") => {
            let for_organization = params.get("organization") == Some("true");
            complete(
                &auth,
                &request,
                tenant,
                &account,
                false,
                for_organization,
                &diagnostics,
            )
        }
        Some("admin_required") => {
            let scopes = request.scopes.admin_only();
            request.error(&admin_approval_required(&scopes), &diagnostics)
        }
        _ => request.error(&declined(), &diagnostics),
    }
}
