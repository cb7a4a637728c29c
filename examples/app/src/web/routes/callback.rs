//! Entra's redirect back after a Microsoft sign-in (create or reconnect), and a
//! forwarded admin-consent link's return: the pending sign-in of this browser session
//! is completed and the connection saved, or the failure explained in plain words.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use connection_store::{ConnectionId, OwnerId, StoreError};
use entra_auth::{AdminConsent, AuthError, Authority, CallbackParams};
use tower_sessions::Session;

use super::{Result, anonymous, html};
use crate::connect::{new_connection, reconnect_of, same_tenant};
use crate::web::AppState;
use crate::web::pages::{self, BASE, Ctx};
use crate::web::session::{self, Intent};

/// A sign-in error in plain words: headline, detail, and the admin-consent link to
/// forward when an administrator has to approve.
fn explain(
    state: &AppState,
    error: &AuthError,
    authority: &Authority,
) -> (String, String, Option<String>) {
    let consent_link = || Some(state.entra().admin_consent_link(authority).to_string());
    match error {
        AuthError::AuthorizationDeclined(_) => (
            "The permissions were not accepted".to_owned(),
            "The sign-in was cancelled, or the permissions were declined. To connect, press “Create a new connection” again and accept the permissions (read all users' profiles, read all groups, and keep access). If you are not an administrator of your Microsoft 365 tenant, forward the link below to your IT administrator."
                .to_owned(),
            consent_link(),
        ),
        AuthError::AdminApprovalRequired { .. } => (
            "An administrator has to approve".to_owned(),
            "The account you signed in with may not approve these permissions for your organization: only an administrator of your Microsoft 365 tenant can. Sign in with an administrator account, or forward the link below to your IT administrator."
                .to_owned(),
            consent_link(),
        ),
        AuthError::MissingScopes { missing, .. } => (
            "Some permissions were not granted".to_owned(),
            format!(
                "Microsoft did not grant all the permissions the sync needs (missing: {}). An administrator of your tenant approves them for the organization with the link below; then connect again.",
                missing.join(", ")
            ),
            consent_link(),
        ),
        AuthError::AuthorizationExpired => (
            "The sign-in took too long".to_owned(),
            "The sign-in expired before it was finished. Press “Create a new connection” again.".to_owned(),
            None,
        ),
        AuthError::StateMismatch => (
            "This sign-in does not match".to_owned(),
            "The answer from Microsoft does not belong to the sign-in started in this browser. Start again from “Create a new connection”.".to_owned(),
            None,
        ),
        _ if error.is_retryable() => (
            "Microsoft could not be reached".to_owned(),
            "Microsoft's sign-in service is busy or could not be reached. Try again in a minute.".to_owned(),
            None,
        ),
        _ if error.is_configuration() => {
            tracing::error!(%error, "the app registration was rejected");
            (
                "The app is not set up correctly".to_owned(),
                "Microsoft rejected this app's registration settings. The service's operators have been told; try again later.".to_owned(),
                None,
            )
        }
        _ => {
            tracing::warn!(%error, "sign-in failed");
            (
                "The sign-in failed".to_owned(),
                "Microsoft did not complete the sign-in. Try again; if it keeps failing, contact support.".to_owned(),
                None,
            )
        }
    }
}

fn failed_page(
    ctx: &Ctx,
    status: StatusCode,
    headline: &str,
    detail: &str,
    link: Option<&str>,
) -> Response {
    (
        status,
        html(&pages::sign_in_failed(ctx, headline, detail, link)),
    )
        .into_response()
}

/// Any browser session may arrive here (Entra redirects the top-level page), signed in
/// or not: the pending sign-in is looked up in this session alone.
pub(super) async fn callback(
    State(state): State<AppState>,
    session: Session,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let current = session::current(&session).await?;
    let ctx = current.as_ref().map_or_else(anonymous, |c| Ctx {
        customer: c.owner.as_ref().map(|o| o.as_str().to_owned()),
        csrf: c.csrf.clone(),
    });
    let Ok(params) = CallbackParams::from_query(query.as_deref().unwrap_or_default()) else {
        return Ok(failed_page(
            &ctx,
            StatusCode::BAD_REQUEST,
            "Not a sign-in answer",
            "This page only receives Microsoft's answer to a sign-in.",
            None,
        ));
    };
    let Some(state_param) = params.state().map(str::to_owned) else {
        // A forwarded admin-consent link comes back without a state.
        return Ok(match AdminConsent::from_callback(&params) {
            Ok(_) => html(&pages::admin_consent_done(
                &ctx,
                true,
                "Thank you: the permissions are approved for your organization. The person who asked can now press “Create a new connection” and sign in.",
            ))
            .into_response(),
            Err(AuthError::AuthorizationDeclined(_)) => html(&pages::admin_consent_done(
                &ctx,
                false,
                "The permissions were not approved. Nothing was connected.",
            ))
            .into_response(),
            Err(_) => failed_page(&ctx, StatusCode::BAD_REQUEST, "Not a sign-in answer", "This page only receives Microsoft's answer to a sign-in.", None),
        });
    };
    let pending = match &current {
        Some(current) => state.sessions().take_pending(current, &state_param).await?,
        None => None,
    };
    let Some(pending) = pending else {
        return Ok(failed_page(
            &ctx,
            StatusCode::BAD_REQUEST,
            "This sign-in does not match",
            "This answer from Microsoft does not belong to a sign-in started in this browser, or it is more than 15 minutes old. Start again from “Create a new connection”.",
            None,
        ));
    };
    let authority = pending.authorization.authority().clone();
    let grant = match state
        .entra()
        .complete_authorization(&pending.authorization, &params)
        .await
    {
        Ok(grant) => grant,
        Err(error) => {
            let (headline, detail, link) = explain(&state, &error, &authority);
            return Ok(failed_page(
                &ctx,
                StatusCode::BAD_REQUEST,
                &headline,
                &detail,
                link.as_deref(),
            ));
        }
    };
    if !state.config().allow_non_admin
        && let Some(refused) = refuse_non_admin(&state, &ctx, &grant).await
    {
        return Ok(refused);
    }
    match pending.intent {
        Intent::Create { name } => finish_create(&state, &ctx, &pending.owner, &name, &grant).await,
        Intent::Reconnect { id } => {
            finish_reconnect(&state, &ctx, &pending.owner, id, &grant).await
        }
    }
}

/// The page refusing a sign-in by someone who may not connect the tenant (no
/// consenting role, [`crate::admin`]), or who could not be checked; `None` for an
/// administrator.
async fn refuse_non_admin(
    state: &AppState,
    ctx: &Ctx,
    grant: &entra_auth::Grant,
) -> Option<Response> {
    let cloud = &state.config().sign_in.cloud;
    match crate::admin::require_administrator(cloud, grant).await {
        Ok(_) => None,
        Err(crate::admin::AdminCheckError::NotAnAdministrator(_)) => {
            let authority = Authority::tenant(grant.tenant_id());
            let link = state.entra().admin_consent_link(&authority).to_string();
            Some(failed_page(
                ctx,
                StatusCode::FORBIDDEN,
                "Only an administrator can connect",
                "The account you signed in with is not an administrator of your Microsoft 365 tenant. Connecting it needs a Global Administrator, Privileged Role Administrator, Cloud Application Administrator or Application Administrator (activated, if your organization uses Privileged Identity Management). Sign in with an administrator account, or forward the link below to your IT administrator. Nothing was saved.",
                Some(&link),
            ))
        }
        Err(error) => {
            let reference = crate::web::support_reference();
            tracing::error!(%reference, error = %format!("{error:#}"), "the administrator check failed");
            Some(failed_page(
                ctx,
                StatusCode::SERVICE_UNAVAILABLE,
                "Microsoft could not be reached",
                &format!(
                    "Whether the account you signed in with is an administrator could not be checked. Try again in a minute; if it keeps failing, contact support with reference {reference}. Nothing was saved."
                ),
                None,
            ))
        }
    }
}

/// Saves a new connection from a completed sign-in.
async fn finish_create(
    state: &AppState,
    ctx: &Ctx,
    owner: &OwnerId,
    name: &str,
    grant: &entra_auth::Grant,
) -> Result<Response> {
    let store = state.store();
    let new = new_connection(name, state.config().sign_in.cloud.clone(), grant);
    match store.create(owner, new).await {
        Ok(connection) => {
            Ok(Redirect::to(&format!("{BASE}?created={}", connection.id)).into_response())
        }
        Err(StoreError::NameTaken { .. }) => Ok(failed_page(
            ctx,
            StatusCode::CONFLICT,
            "The name is taken",
            "Another connection got this name meanwhile. Create the connection again with another name.",
            None,
        )),
        Err(StoreError::TenantAlreadyConnected { .. }) => {
            let tenant = connection_store::TenantId::new(grant.tenant_id().as_str());
            let existing = store
                .list(owner)
                .await?
                .into_iter()
                .find(|c| c.tenant == tenant);
            let detail = existing.map_or_else(
                || "This Microsoft 365 tenant is already linked to your account.".to_owned(),
                |c| {
                    format!(
                        "This Microsoft 365 tenant is already linked as “{}”. Open it with Manage; if it needs a reconnect, use Reconnect there.",
                        c.name.as_str()
                    )
                },
            );
            Ok(failed_page(
                ctx,
                StatusCode::CONFLICT,
                "Already linked",
                &detail,
                None,
            ))
        }
        Err(error) => Err(error.into()),
    }
}

/// Saves a new grant for an existing connection (status back to active).
async fn finish_reconnect(
    state: &AppState,
    ctx: &Ctx,
    owner: &OwnerId,
    id: ConnectionId,
    grant: &entra_auth::Grant,
) -> Result<Response> {
    let store = state.store();
    let connection = match store.get(owner, id).await {
        Ok(connection) => connection,
        Err(StoreError::NotFound { .. }) => {
            return Ok(failed_page(
                ctx,
                StatusCode::NOT_FOUND,
                "The connection is gone",
                "This connection was removed while you signed in. Nothing was saved; create a new connection instead.",
                None,
            ));
        }
        Err(error) => return Err(error.into()),
    };
    if !same_tenant(&connection, grant) {
        return Ok(failed_page(
            ctx,
            StatusCode::CONFLICT,
            "Another tenant",
            &format!(
                "You signed in to another Microsoft 365 tenant than the one “{}” imports ({}). Reconnect with an administrator account of that tenant.",
                connection.name.as_str(),
                connection.tenant.as_str()
            ),
            None,
        ));
    }
    store
        .reconnect(owner, id, reconnect_of(&connection, grant))
        .await?;
    state.forget_linked(id);
    // The last sync's "reconnect needed" no longer applies.
    state.jobs().forget(id);
    Ok(Redirect::to(&format!("{BASE}/connections/{id}?flash=reconnected")).into_response())
}
