//! The device code flow (spec §3): `POST /{tenant}/oauth2/v2.0/devicecode` and the
//! verification pages at `{login_base}/devicelogin` where a person enters the user code
//! and picks the account that approves. Polling is in `token.rs`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use rand::Rng as _;
use serde_json::json;

use super::claims::ClaimsRequest;
use super::errors::{Diagnostics, EntraError};
use super::grants::{DEVICE_CODE_INTERVAL, DEVICE_CODE_LIFETIME, DeviceState, Grant};
use super::request::Params;
use super::scopes::ScopeSet;
use super::{Account, Auth, ConsentMode, pages, random_token};

/// Letters and digits people cannot confuse (no 0/O, 1/I/L).
const USER_CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// `POST /{tenant}/oauth2/v2.0/devicecode`.
pub(super) async fn device_code(
    State(auth): State<Arc<Auth>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let diagnostics = Diagnostics::new(&headers, auth.clock.wall());
    let params = Params::parse(&body);
    match start(&auth, &tenant, &params) {
        Ok(body) => {
            let mut response = Json(body).into_response();
            diagnostics.add_headers(response.headers_mut());
            response
        }
        Err(error) => error.into_json_response(&diagnostics, auth.login_base()),
    }
}

fn start(auth: &Auth, tenant: &str, params: &Params) -> Result<serde_json::Value, EntraError> {
    let segment = auth
        .resolve_tenant(tenant)
        .ok_or_else(|| EntraError::tenant_not_found(tenant))?;
    let client_id = params
        .get("client_id")
        .ok_or_else(|| EntraError::missing_parameter("client_id"))?;
    if !auth.is_client(client_id) {
        return Err(EntraError::unknown_client(client_id, tenant));
    }
    let scope = params
        .get("scope")
        .ok_or_else(|| EntraError::missing_parameter("scope"))?;
    let scopes = ScopeSet::parse(scope, &auth.config.graph_resource)?;
    if scopes.is_empty() {
        return Err(EntraError::missing_parameter("scope"));
    }
    let cp1 = ClaimsRequest::parse(params.get("claims"))?.is_some_and(|claims| claims.cp1);
    let device_code = random_token(64);
    let user_code: String = {
        let mut rng = rand::rng();
        (0..9)
            .map(|_| char::from(USER_CODE_ALPHABET[rng.random_range(0..USER_CODE_ALPHABET.len())]))
            .collect()
    };
    let verification_uri = format!("{}/devicelogin", auth.login_base());
    auth.grants().insert_device_code(
        segment.home(),
        &device_code,
        user_code.clone(),
        scopes,
        cp1,
        auth.clock.now(),
    );
    Ok(json!({
        "user_code": user_code,
        "device_code": device_code,
        "verification_uri": verification_uri,
        "expires_in": DEVICE_CODE_LIFETIME.as_secs(),
        "interval": DEVICE_CODE_INTERVAL.as_secs(),
        "message": format!(
            "To sign in, use a web browser to open the page {verification_uri} and enter the code \
             {user_code} to authenticate."
        ),
    }))
}

/// Approves a pending user code as `account` of tenant `tenant`. `Err` when the code is
/// not pending, was asked for another tenant, or the account is disabled.
pub(super) fn approve(
    auth: &Auth,
    tenant: usize,
    user_code: &str,
    account: &Account,
    mode: ConsentMode,
) -> Result<(), ()> {
    if !account.account_enabled {
        return Err(());
    }
    let mut grants = auth.grants();
    let device = grants
        .device_by_user_code(user_code, auth.clock.now())
        .filter(|device| device.home.is_none_or(|home| home == tenant))
        .ok_or(())?;
    let scopes = if mode == ConsentMode::MissingOneScope {
        device.scopes.without_last_graph()
    } else {
        device.scopes.clone()
    };
    device.state = DeviceState::Approved(Grant {
        tenant,
        user_id: account.id.clone(),
        scopes: scopes.clone(),
    });
    if account.is_admin {
        grants.consent_for_tenant(tenant, &scopes.graph);
    }
    Ok(())
}

/// `GET /devicelogin`: "Enter code".
pub(super) async fn verification_page() -> Html<String> {
    Html(pages::device_enter_code(None))
}

/// `POST /devicelogin`: the code entered; pick the account next.
pub(super) async fn enter_code(State(auth): State<Arc<Auth>>, body: Bytes) -> Html<String> {
    let params = Params::parse(&body);
    let user_code = params.get("user_code").unwrap_or_default();
    let scopes = auth
        .grants()
        .device_by_user_code(user_code, auth.clock.now())
        .map(|device| {
            (
                device.user_code.clone(),
                device.home,
                device.scopes.display_list(),
            )
        });
    match scopes {
        Some((user_code, home, scopes)) => {
            let accounts = auth.sign_in_candidates(home.unwrap_or(0), 20);
            Html(pages::device_pick_account(&user_code, &accounts, &scopes))
        }
        None => Html(pages::device_enter_code(Some(
            "That code didn't work. Check the code and try again.",
        ))),
    }
}

/// `POST /devicelogin/confirm`: the account picked, or Cancel.
pub(super) async fn confirm(State(auth): State<Arc<Auth>>, body: Bytes) -> Html<String> {
    let params = Params::parse(&body);
    let user_code = params.get("user_code").unwrap_or_default();
    if params.get("decision") == Some("cancel") {
        auth.decline_device_code(user_code);
        return Html(pages::device_done(false));
    }
    let home = auth
        .grants()
        .device_by_user_code(user_code, auth.clock.now())
        .and_then(|device| device.home);
    let account = params
        .get("account")
        .and_then(|account| auth.account_for(home, account));
    let approved = account.is_some_and(|(tenant, account)| {
        let mode = match auth.consent_mode(tenant) {
            ConsentMode::MissingOneScope => ConsentMode::MissingOneScope,
            _ => ConsentMode::Interactive,
        };
        approve(&auth, tenant, user_code, &account, mode).is_ok()
    });
    if approved {
        Html(pages::device_done(true))
    } else {
        Html(pages::device_enter_code(Some(
            "That code didn't work or the account cannot sign in. Check the code and try again.",
        )))
    }
}
