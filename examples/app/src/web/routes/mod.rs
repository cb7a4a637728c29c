//! The handlers. Every page but sign-in needs a signed-in customer, every store call
//! passes that customer as the owner (another customer's connection is a 404), and
//! every POST checks the session's CSRF token.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::SignedCookieJar;
use axum_extra::extract::cookie::Cookie;
use connection_store::{
    Connection, ConnectionId, ConnectionName, ConnectionStatus, OwnerId, StoreError,
};
use entra_auth::{AdminConsent, AuthError, Authority, CallbackParams, Prompt};
use graph_client::PhotoSize;
use maud::Markup;
use time::OffsetDateTime;

use super::employees::{self, Employee, EmployeeQuery};
use super::jobs;
use super::pages::{self, BASE, ConnectionRow, Ctx, ManageView};
use super::scope::SyncScope;
use super::session::{self, COOKIE, Current, Intent};
use super::{AppState, CALLBACK_PATH, connection_dir};
use crate::connect::{new_connection, reconnect_of, same_tenant};

/// Form fields as sent (`application/x-www-form-urlencoded`), repeated keys kept.
type Fields = Vec<(String, String)>;

/// The app's routes.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/integrations", get(integrations))
        .route(BASE, get(linked_accounts))
        .route(&format!("{BASE}/new"), get(new_page).post(create))
        .route(CALLBACK_PATH, get(callback))
        .route(&format!("{BASE}/connections/{{id}}"), get(manage))
        .route(&format!("{BASE}/connections/{{id}}/rename"), post(rename))
        .route(&format!("{BASE}/connections/{{id}}/sync"), post(sync_now))
        .route(
            &format!("{BASE}/connections/{{id}}/sync/status"),
            get(sync_status),
        )
        .route(
            &format!("{BASE}/connections/{{id}}/scope"),
            post(save_scope),
        )
        .route(
            &format!("{BASE}/connections/{{id}}/reconnect"),
            post(reconnect),
        )
        .route(
            &format!("{BASE}/connections/{{id}}/remove"),
            get(remove_page).post(remove),
        )
        .route(
            &format!("{BASE}/connections/{{id}}/employees/{{user}}/photo"),
            get(photo),
        )
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            signed_in_error_pages,
        ))
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            security_headers,
        ))
        .with_state(state)
}

/// Error pages of a signed-in customer keep the header (who, and "Sign out").
async fn signed_in_error_pages(
    State(state): State<AppState>,
    jar: SignedCookieJar,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let Some(error) = response.extensions().get::<ErrorPage>().cloned() else {
        return response;
    };
    let Ok(me) = signed_in(&state, &jar) else {
        return response;
    };
    let status = response.status();
    (
        status,
        html(&pages::error(&me.ctx(), error.title, error.detail)),
    )
        .into_response()
}

/// Headers on every response: no framing (clickjacking), no MIME sniffing, and a
/// content security policy that allows only this app's own pages, images and inline
/// styles (the pages have no scripts); behind https, HSTS.
async fn security_headers(State(state): State<AppState>, mut response: Response) -> Response {
    let headers = response.headers_mut();
    if state.config().secure_cookies {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            header::HeaderValue::from_static("max-age=31536000"),
        );
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
    // Pages carry employee data and CSRF tokens: not kept by browsers or proxies
    // (photos set their own, private caching).
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    response
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// Why a request was refused.
#[derive(Debug)]
pub(crate) enum AppError {
    /// Not signed in: go to the sign-in page.
    SignInRequired,
    /// The form's CSRF token is missing or wrong.
    Csrf,
    /// No such page or connection (or another customer's).
    NotFound,
    /// Something broke; logged, shown without details.
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for AppError {
    fn from(error: anyhow::Error) -> Self {
        Self::Internal(error)
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { .. } => Self::NotFound,
            other => Self::Internal(other.into()),
        }
    }
}

fn anonymous() -> Ctx {
    Ctx {
        customer: None,
        csrf: String::new(),
    }
}

/// An error page's words, kept on the response so that [`signed_in_error_pages`] can
/// render it again with the signed-in customer's header.
#[derive(Clone, Debug)]
struct ErrorPage {
    title: &'static str,
    detail: &'static str,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let page = |status: StatusCode, title: &'static str, detail: &'static str| {
            let mut response = (
                status,
                Html(pages::error(&anonymous(), title, detail).into_string()),
            )
                .into_response();
            response
                .extensions_mut()
                .insert(ErrorPage { title, detail });
            response
        };
        match self {
            Self::SignInRequired => Redirect::to("/sign-in").into_response(),
            Self::Csrf => page(
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form was not sent from the current page (or your session ended). Go back, reload the page and try again.",
            ),
            Self::NotFound => page(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no such page, or it belongs to another account.",
            ),
            Self::Internal(error) => {
                tracing::error!(error = %format!("{error:#}"), "request failed");
                page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The request could not be completed. Try again in a moment.",
                )
            }
        }
    }
}

type Result<T, E = AppError> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------

/// A signed-in customer's request.
struct Me {
    session: Current,
    owner: OwnerId,
}

impl Me {
    fn ctx(&self) -> Ctx {
        Ctx {
            customer: Some(self.owner.as_str().to_owned()),
            csrf: self.session.csrf.clone(),
        }
    }
}

fn signed_in(state: &AppState, jar: &SignedCookieJar) -> Result<Me> {
    let session = state
        .sessions()
        .current(jar)
        .ok_or(AppError::SignInRequired)?;
    let owner = session.owner.clone().ok_or(AppError::SignInRequired)?;
    Ok(Me { session, owner })
}

fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn check_csrf(session: &Current, fields: &Fields) -> Result<()> {
    match field(fields, "csrf") {
        Some(token) if session::csrf_matches(session, token) => Ok(()),
        _ => Err(AppError::Csrf),
    }
}

/// A signed-in customer's form POST, CSRF checked.
fn signed_form(state: &AppState, jar: &SignedCookieJar, fields: &Fields) -> Result<Me> {
    let me = signed_in(state, jar)?;
    check_csrf(&me.session, fields)?;
    Ok(me)
}

fn html(markup: &Markup) -> Html<String> {
    Html(markup.clone().into_string())
}

fn parse_id(id: &str) -> Result<ConnectionId> {
    id.parse().map_err(|_| AppError::NotFound)
}

/// The signed-in customer's connection `id`: 404 for a malformed id, an unknown one, or
/// another customer's.
async fn own_connection(state: &AppState, me: &Me, id: &str) -> Result<Connection> {
    Ok(state.store().get(&me.owner, parse_id(id)?).await?)
}

/// `2026-11-25 08:15 UTC`.
pub(crate) fn format_time(at: OffsetDateTime) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| at.to_string())
}

fn status_words(status: &ConnectionStatus) -> &'static str {
    match status {
        ConnectionStatus::Active => "active",
        ConnectionStatus::NeedsReconnect { .. } => "reconnect needed",
        ConnectionStatus::Disabled => "disabled",
        _ => "unknown",
    }
}

/// What the last sync imported for a connection, read off the async workers: its scope,
/// the employees in scope and the groups. A damaged file gives the defaults and a
/// `problem` to show, never a failing page.
struct Imported {
    scope: SyncScope,
    employees: Arc<Vec<Employee>>,
    groups: Arc<Vec<(String, String)>>,
    problem: Option<String>,
}

async fn imported(state: &AppState, id: ConnectionId) -> Imported {
    let cache = state.employees().clone();
    let dir = connection_dir(&state.config().data_dir, id);
    let read = tokio::task::spawn_blocking(move || {
        let mut problems = Vec::new();
        let scope = SyncScope::load(&dir).unwrap_or_else(|error| {
            problems.push(format!("{error:#}"));
            SyncScope::default()
        });
        let employees = cache.employees(&dir, id, &scope).unwrap_or_else(|error| {
            problems.push(format!("{error:#}"));
            Arc::default()
        });
        let groups = cache.groups(&dir, id).unwrap_or_default();
        Imported {
            scope,
            employees,
            groups,
            problem: (!problems.is_empty()).then(|| problems.join("; ")),
        }
    })
    .await;
    read.unwrap_or_else(|error| Imported {
        scope: SyncScope::default(),
        employees: Arc::default(),
        groups: Arc::default(),
        problem: Some(format!("the imported data could not be read: {error}")),
    })
}

async fn row(state: &AppState, connection: &Connection) -> ConnectionRow {
    let users = if connection.last_synced_at.is_some() {
        let imported = imported(state, connection.id).await;
        imported.problem.is_none().then(|| imported.employees.len())
    } else {
        None
    };
    row_with(connection, users)
}

/// A connection's row, with the number of employees imported when known.
fn row_with(connection: &Connection, users: Option<usize>) -> ConnectionRow {
    ConnectionRow {
        id: connection.id.to_string(),
        name: connection.name.as_str().to_owned(),
        tenant: connection.tenant.as_str().to_owned(),
        admin: connection.admin.username.clone(),
        status_kind: connection.status.kind().to_owned(),
        status: status_words(&connection.status).to_owned(),
        last_sync: connection
            .last_synced_at
            .map_or_else(|| "never".to_owned(), format_time),
        users,
    }
}

// ---------------------------------------------------------------------------------------
// Sign-in to the service
// ---------------------------------------------------------------------------------------

async fn home(State(state): State<AppState>, jar: SignedCookieJar) -> Redirect {
    match signed_in(&state, &jar) {
        Ok(_) => Redirect::to("/integrations"),
        Err(_) => Redirect::to("/sign-in"),
    }
}

async fn sign_in_page(State(state): State<AppState>, jar: SignedCookieJar) -> Response {
    let secure = state.config().secure_cookies;
    let (current, jar) = match state.sessions().current(&jar) {
        Some(current) if current.owner.is_some() => {
            return Redirect::to("/integrations").into_response();
        }
        Some(current) => (current, jar),
        None => {
            let (current, cookie) = state.sessions().start(None, None, secure);
            (current, jar.add(cookie))
        }
    };
    let ctx = Ctx {
        customer: None,
        csrf: current.csrf,
    };
    (jar, html(&pages::sign_in(&ctx, "", None))).into_response()
}

async fn sign_in(
    State(state): State<AppState>,
    jar: SignedCookieJar,
    axum::Form(fields): axum::Form<Fields>,
) -> Result<Response> {
    let Some(current) = state.sessions().current(&jar) else {
        return Err(AppError::Csrf);
    };
    check_csrf(&current, &fields)?;
    let email = field(&fields, "email").unwrap_or_default();
    let password = field(&fields, "password").unwrap_or_default();
    let Some(customer) = super::accounts::authenticate(&state.config().customers, email, password)
    else {
        let ctx = Ctx {
            customer: None,
            csrf: current.csrf.clone(),
        };
        let page = pages::sign_in(&ctx, email, Some("Wrong email or password."));
        return Ok((StatusCode::UNAUTHORIZED, html(&page)).into_response());
    };
    let (_, cookie) = state.sessions().start(
        Some(customer.owner()),
        Some(&current.id),
        state.config().secure_cookies,
    );
    Ok((jar.add(cookie), Redirect::to("/integrations")).into_response())
}

async fn sign_out(
    State(state): State<AppState>,
    jar: SignedCookieJar,
    axum::Form(fields): axum::Form<Fields>,
) -> Result<Response> {
    match signed_form(&state, &jar, &fields) {
        Ok(me) => state.sessions().end(&me.session.id),
        // The session is gone already (expired, or the app restarted): signed out anyway.
        Err(AppError::SignInRequired) => {}
        Err(error) => return Err(error),
    }
    let jar = jar.remove(Cookie::build(COOKIE).path("/"));
    Ok((jar, Redirect::to("/sign-in")).into_response())
}

// ---------------------------------------------------------------------------------------
// Integrations and the list
// ---------------------------------------------------------------------------------------

async fn integrations(State(state): State<AppState>, jar: SignedCookieJar) -> Result<Html<String>> {
    let me = signed_in(&state, &jar)?;
    Ok(html(&pages::integrations(&me.ctx())))
}

async fn linked_accounts(
    State(state): State<AppState>,
    jar: SignedCookieJar,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Html<String>> {
    let me = signed_in(&state, &jar)?;
    let connections = state.store().list(&me.owner).await?;
    let mut rows = Vec::with_capacity(connections.len());
    for connection in &connections {
        rows.push(row(&state, connection).await);
    }
    let flash = if let Some(id) = query.get("created") {
        rows.iter().find(|r| &r.id == id).map(|r| {
            format!(
                "Connected “{}”. Press Manage to choose what to sync and import the employees.",
                r.name
            )
        })
    } else if query.contains_key("removed") {
        Some("The connection was removed.".to_owned())
    } else {
        None
    };
    Ok(html(&pages::linked_accounts(
        &me.ctx(),
        &rows,
        flash.as_deref(),
    )))
}

// ---------------------------------------------------------------------------------------
// Create a new connection, and Entra's redirect back
// ---------------------------------------------------------------------------------------

async fn new_page(State(state): State<AppState>, jar: SignedCookieJar) -> Result<Html<String>> {
    let me = signed_in(&state, &jar)?;
    Ok(html(&pages::new_connection(&me.ctx(), "", None)))
}

/// The name error shown next to the field, if any.
async fn name_problem(
    state: &AppState,
    owner: &OwnerId,
    name: &str,
    except: Option<ConnectionId>,
) -> Result<Option<String>> {
    let parsed = match ConnectionName::parse(name) {
        Ok(parsed) => parsed,
        Err(StoreError::InvalidName { .. }) => {
            return Ok(Some(format!(
                "Enter a name of 1 to {} characters, without control characters.",
                connection_store::MAX_NAME_CHARS
            )));
        }
        Err(error) => return Err(error.into()),
    };
    let taken = state
        .store()
        .list(owner)
        .await?
        .iter()
        .any(|c| Some(c.id) != except && c.name.folded() == parsed.folded());
    Ok(taken.then(|| "You already have a connection with this name; choose another.".to_owned()))
}

fn authority(state: &AppState) -> Result<Authority> {
    Authority::parse(&state.config().sign_in.authority).map_err(|e| {
        AppError::Internal(
            anyhow::Error::new(e).context("the configured sign-in authority is invalid"),
        )
    })
}

async fn create(
    State(state): State<AppState>,
    jar: SignedCookieJar,
    axum::Form(fields): axum::Form<Fields>,
) -> Result<Response> {
    let me = signed_form(&state, &jar, &fields)?;
    let name = field(&fields, "name").unwrap_or_default().trim().to_owned();
    if let Some(problem) = name_problem(&state, &me.owner, &name, None).await? {
        let page = pages::new_connection(&me.ctx(), &name, Some(&problem));
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, html(&page)).into_response());
    }
    to_microsoft(
        &state,
        &me,
        authority(&state)?,
        None,
        Intent::Create { name },
    )
}

/// Starts a Microsoft sign-in for `intent`: keeps the pending authorization in this
/// browser session and redirects to Entra.
fn to_microsoft(
    state: &AppState,
    me: &Me,
    authority: Authority,
    login_hint: Option<&str>,
    intent: Intent,
) -> Result<Response> {
    let request = state.entra().authorization_request().authority(authority);
    // Suggest the admin who connected it (a reconnect), or let the person pick an
    // account (Entra refuses both at once).
    let request = match login_hint {
        Some(hint) => request.login_hint(hint),
        None => request.prompt(Prompt::SelectAccount),
    };
    let (url, pending) = request
        .build()
        .map_err(|e| AppError::Internal(e.into()))?
        .into_parts();
    if !state
        .sessions()
        .add_pending(&me.session.id, me.owner.clone(), intent, pending)
    {
        return Err(AppError::SignInRequired);
    }
    Ok(Redirect::to(url.as_str()).into_response())
}

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

async fn callback(
    State(state): State<AppState>,
    jar: SignedCookieJar,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let current = state.sessions().current(&jar);
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
    let Some(pending) = current
        .as_ref()
        .and_then(|c| state.sessions().take_pending(&c.id, &state_param))
    else {
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
    match pending.intent {
        Intent::Create { name } => finish_create(&state, &ctx, &pending.owner, &name, &grant).await,
        Intent::Reconnect { id } => {
            finish_reconnect(&state, &ctx, &pending.owner, id, &grant).await
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

// ---------------------------------------------------------------------------------------
// Manage
// ---------------------------------------------------------------------------------------

#[derive(Default, Clone, Copy)]
struct ManageExtras<'a> {
    scope_error: Option<&'a str>,
    rename_error: Option<(&'a str, &'a str)>,
}

async fn manage_page(
    state: &AppState,
    me: &Me,
    connection: &Connection,
    query: &HashMap<String, String>,
    extras: ManageExtras<'_>,
) -> Result<Html<String>> {
    let Imported {
        scope,
        employees: all,
        groups,
        problem,
    } = imported(state, connection.id).await;
    let q = query.get("q").map_or("", |q| q.trim());
    let page = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let employees = employees::search(
        &all,
        &EmployeeQuery {
            q: q.to_owned(),
            page,
        },
    );
    // The count the list shows, from what was just read (not read a second time).
    let users = (connection.last_synced_at.is_some() && problem.is_none()).then(|| all.len());
    let row = row_with(connection, users);
    let reconnect_reason = match &connection.status {
        ConnectionStatus::NeedsReconnect { reason, .. } => Some(reason.as_str()),
        _ => None,
    };
    let flash = match query.get("flash").map(String::as_str) {
        Some("renamed") => Some("The connection was renamed."),
        Some("scope") => Some("The sync scope was saved. The employees below follow it."),
        Some("reconnected") => Some("Reconnected: the sync works again."),
        Some("sync") => Some("The sync started."),
        Some("running") => Some("A sync of this connection is already running."),
        _ => None,
    };
    let job = state.jobs().state(connection.id);
    let view = ManageView {
        row: &row,
        reconnect_reason,
        job: &job,
        scope: &scope,
        groups: &groups,
        scope_error: extras.scope_error,
        rename_error: extras.rename_error,
        employees: &employees,
        q,
        flash,
        problem: problem.as_deref(),
    };
    Ok(html(&pages::manage(&me.ctx(), &view)))
}

async fn manage(
    State(state): State<AppState>,
    jar: SignedCookieJar,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Html<String>> {
    let me = signed_in(&state, &jar)?;
    let connection = own_connection(&state, &me, &id).await?;
    manage_page(&state, &me, &connection, &query, ManageExtras::default()).await
}

async fn rename(
    State(state): State<AppState>,
    jar: SignedCookieJar,
    Path(id): Path<String>,
    axum::Form(fields): axum::Form<Fields>,
) -> Result<Response> {
    let me = signed_form(&state, &jar, &fields)?;
    let connection = own_connection(&state, &me, &id).await?;
    let id = connection.id;
    let name = field(&fields, "name").unwrap_or_default().trim().to_owned();
    if let Some(problem) = name_problem(&state, &me.owner, &name, Some(id)).await? {
        let extras = ManageExtras {
            rename_error: Some((&name, &problem)),
            ..ManageExtras::default()
        };
        let page = manage_page(&state, &me, &connection, &HashMap::new(), extras).await?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    }
    match state.store().rename(&me.owner, id, &name).await {
        Ok(_) => {
            Ok(Redirect::to(&format!("{BASE}/connections/{id}?flash=renamed")).into_response())
        }
        Err(StoreError::NameTaken { .. }) => {
            let problem = "You already have a connection with this name; choose another.";
            let extras = ManageExtras {
                rename_error: Some((&name, problem)),
                ..ManageExtras::default()
            };
            let page = manage_page(&state, &me, &connection, &HashMap::new(), extras).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
        Err(error) => Err(error.into()),
    }
}

async fn sync_now(
    State(state): State<AppState>,
    jar: SignedCookieJar,
    Path(id): Path<String>,
    axum::Form(fields): axum::Form<Fields>,
) -> Result<Redirect> {
    let me = signed_form(&state, &jar, &fields)?;
    let id = own_connection(&state, &me, &id).await?.id;
    let flash = if jobs::spawn(&state, me.owner.clone(), id) {
        "sync"
    } else {
        "running"
    };
    Ok(Redirect::to(&format!(
        "{BASE}/connections/{id}?flash={flash}"
    )))
}

async fn sync_status(
    State(state): State<AppState>,
    jar: SignedCookieJar,
    Path(id): Path<String>,
) -> Result<Response> {
    let me = signed_in(&state, &jar)?;
    let id = own_connection(&state, &me, &id).await?.id;
    let job = state.jobs().state(id);
    let mut status = serde_json::to_value(&job).map_err(|e| AppError::Internal(e.into()))?;
    if let Some(fields) = status.as_object_mut() {
        fields.insert(
            "message".to_owned(),
            serde_json::Value::String(pages::progress_text(&job)),
        );
    }
    Ok(axum::Json(status).into_response())
}

async fn save_scope(
    State(state): State<AppState>,
    jar: SignedCookieJar,
    Path(id): Path<String>,
    axum::Form(fields): axum::Form<Fields>,
) -> Result<Response> {
    let me = signed_form(&state, &jar, &fields)?;
    let connection = own_connection(&state, &me, &id).await?;
    let id = connection.id;
    let dir = connection_dir(&state.config().data_dir, id);
    let known = imported(&state, id).await.groups;
    match SyncScope::from_form(&fields, |group| known.iter().any(|(k, _)| k == group)) {
        Ok(scope) => {
            tokio::task::spawn_blocking(move || scope.save(&dir))
                .await
                .map_err(|e| AppError::Internal(e.into()))??;
            Ok(Redirect::to(&format!("{BASE}/connections/{id}?flash=scope")).into_response())
        }
        Err(error) => {
            let message = error.to_string();
            let extras = ManageExtras {
                scope_error: Some(&message),
                ..ManageExtras::default()
            };
            let page = manage_page(&state, &me, &connection, &HashMap::new(), extras).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

async fn reconnect(
    State(state): State<AppState>,
    jar: SignedCookieJar,
    Path(id): Path<String>,
    axum::Form(fields): axum::Form<Fields>,
) -> Result<Response> {
    let me = signed_form(&state, &jar, &fields)?;
    let connection = own_connection(&state, &me, &id).await?;
    let id = connection.id;
    // Sign in to the connection's own tenant, suggesting the admin who connected it.
    let tenant = Authority::parse(connection.tenant.as_str()).map_err(|e| {
        AppError::Internal(anyhow::Error::new(e).context("the stored tenant id is invalid"))
    })?;
    to_microsoft(
        &state,
        &me,
        tenant,
        Some(&connection.admin.username),
        Intent::Reconnect { id },
    )
}

async fn remove_page(
    State(state): State<AppState>,
    jar: SignedCookieJar,
    Path(id): Path<String>,
) -> Result<Html<String>> {
    let me = signed_in(&state, &jar)?;
    let connection = own_connection(&state, &me, &id).await?;
    Ok(html(&pages::confirm_remove(
        &me.ctx(),
        &connection.id.to_string(),
        connection.name.as_str(),
    )))
}

async fn remove(
    State(state): State<AppState>,
    jar: SignedCookieJar,
    Path(id): Path<String>,
    axum::Form(fields): axum::Form<Fields>,
) -> Result<Redirect> {
    let me = signed_form(&state, &jar, &fields)?;
    let id = parse_id(&id)?;
    state.store().delete(&me.owner, id).await?;
    state.jobs().forget(id);
    state.employees().forget(id);
    state.forget_linked(id);
    let dir = connection_dir(&state.config().data_dir, id);
    if let Err(error) = std::fs::remove_dir_all(&dir)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(%error, folder = %dir.display(), "could not delete a removed connection's files");
    }
    Ok(Redirect::to(&format!("{BASE}?removed=1")))
}

async fn photo(
    State(state): State<AppState>,
    jar: SignedCookieJar,
    Path((id, user)): Path<(String, String)>,
) -> Result<Response> {
    let me = signed_in(&state, &jar)?;
    let connection = own_connection(&state, &me, &id).await?;
    let id = connection.id;
    // Only the photos of this connection's imported users.
    let known = imported(&state, id).await.employees;
    let Some(employee) = known.iter().find(|e| e.id == user) else {
        return Err(AppError::NotFound);
    };
    let placeholder = || {
        (
            [
                (header::CONTENT_TYPE, "image/svg+xml".to_owned()),
                (header::CACHE_CONTROL, "private, max-age=600".to_owned()),
            ],
            pages::initials_svg(&employee.name()).into_string(),
        )
            .into_response()
    };
    if !matches!(connection.status, ConnectionStatus::Active) {
        return Ok(placeholder());
    }
    let linked = state.linked(&me.owner, id).await?;
    match linked
        .graph
        .users()
        .photo(&user)
        .size(PhotoSize::S48)
        .send()
        .await
    {
        // Raster images only: an SVG or HTML answer is never served from this origin.
        Ok(Some(photo)) if RASTER_IMAGES.contains(&photo.content_type.as_str()) => Ok((
            [
                (header::CONTENT_TYPE, photo.content_type),
                (header::CACHE_CONTROL, "private, max-age=3600".to_owned()),
            ],
            photo.bytes,
        )
            .into_response()),
        Ok(_) => Ok(placeholder()),
        Err(error) => {
            if error.requires_reauthorization() {
                state.forget_linked(id);
            }
            tracing::debug!(%error, "photo not available");
            Ok(placeholder())
        }
    }
}

/// The photo types passed through.
const RASTER_IMAGES: &[&str] = &["image/jpeg", "image/png", "image/gif"];

async fn not_found() -> AppError {
    AppError::NotFound
}
