//! "Integrations", "Linked Microsoft 365 accounts", and what changes a connection:
//! create, reconnect (both start a Microsoft sign-in; [`super::callback`] finishes it),
//! rename and remove.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use connection_store::{
    Connection, ConnectionId, ConnectionName, ConnectionStatus, OwnerId, StoreError,
};
use entra_auth::{Authority, Prompt};

use super::error::AppError;
use super::extract::{OwnConnection, SignedForm, SignedIn};
use super::imported::{scope_of, users_imported};
use super::manage::{ManageExtras, manage_page};
use super::{Result, field, html};
use crate::present;
use crate::web::AppState;
use crate::web::pages::{self, BASE, ConnectionRow};
use crate::web::session::Intent;

pub(super) async fn integrations(me: SignedIn) -> Html<String> {
    html(&pages::integrations(&me.ctx()))
}

pub(super) async fn linked_accounts(
    State(state): State<AppState>,
    me: SignedIn,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Html<String>> {
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

async fn row(state: &AppState, connection: &Connection) -> ConnectionRow {
    let users = if connection.last_synced_at.is_some() {
        match scope_of(state, connection.id).await {
            (scope, None) => users_imported(state, connection, &scope).await,
            (_, Some(_)) => None,
        }
    } else {
        None
    };
    row_with(connection, users)
}

/// A connection's row, with the number of employees imported when known.
pub(super) fn row_with(connection: &Connection, users: Option<u64>) -> ConnectionRow {
    ConnectionRow {
        id: connection.id.to_string(),
        name: connection.name.as_str().to_owned(),
        tenant: connection.tenant.as_str().to_owned(),
        admin: connection.admin.username.clone(),
        status_kind: connection.status.kind().to_owned(),
        status: present::status_words(&connection.status).to_owned(),
        last_sync: connection
            .last_synced_at
            .map_or_else(|| "never".to_owned(), present::page_time),
        users,
    }
}

pub(super) async fn new_page(me: SignedIn) -> Html<String> {
    html(&pages::new_connection(&me.ctx(), "", None))
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
                "Enter a name of 1 to {} characters, without control or invisible characters.",
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

pub(super) async fn create(
    State(state): State<AppState>,
    me: SignedIn,
    SignedForm(fields): SignedForm,
) -> Result<Response> {
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
        None,
        Intent::Create { name },
    )
    .await
}

pub(super) async fn reconnect(
    State(state): State<AppState>,
    OwnConnection { me, connection }: OwnConnection,
    SignedForm(_): SignedForm,
) -> Result<Response> {
    // Sign in to the connection's own tenant, suggesting the admin who connected it.
    let tenant = Authority::parse(connection.tenant.as_str()).map_err(|e| {
        AppError::Internal(anyhow::Error::new(e).context("the stored tenant id is invalid"))
    })?;
    // After a claims challenge (continuous access evaluation), the sign-in must carry
    // the claims Microsoft asked for.
    let claims = match &connection.status {
        ConnectionStatus::NeedsReconnect { claims, .. } => claims.as_deref(),
        _ => None,
    };
    to_microsoft(
        &state,
        &me,
        tenant,
        Some(&connection.admin.username),
        claims,
        Intent::Reconnect { id: connection.id },
    )
    .await
}

/// Starts a Microsoft sign-in for `intent`: keeps the pending authorization in this
/// browser session and redirects to Entra.
async fn to_microsoft(
    state: &AppState,
    me: &SignedIn,
    authority: Authority,
    login_hint: Option<&str>,
    claims: Option<&str>,
    intent: Intent,
) -> Result<Response> {
    let mut request = state.entra().authorization_request().authority(authority);
    if let Some(claims) = claims {
        request = request.claims(claims);
    }
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
    state
        .sessions()
        .add_pending(&me.session, me.owner.clone(), intent, pending)
        .await?;
    Ok(Redirect::to(url.as_str()).into_response())
}

pub(super) async fn rename(
    State(state): State<AppState>,
    OwnConnection { me, connection }: OwnConnection,
    SignedForm(fields): SignedForm,
) -> Result<Response> {
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

pub(super) async fn remove_page(OwnConnection { me, connection }: OwnConnection) -> Html<String> {
    html(&pages::confirm_remove(
        &me.ctx(),
        &connection.id.to_string(),
        connection.name.as_str(),
    ))
}

pub(super) async fn remove(
    State(state): State<AppState>,
    OwnConnection { me, connection }: OwnConnection,
    SignedForm(_): SignedForm,
) -> Result<Redirect> {
    let id = connection.id;
    // The store deletes the connection's mirror rows with it (a foreign key cascade).
    state.store().delete(&me.owner, id).await?;
    state.forget_connection(id).await;
    Ok(Redirect::to(&format!("{BASE}?removed=1")))
}
