//! The Manage page of one connection, and what its forms do besides rename, reconnect
//! and remove: "Sync now" (with its status for polling) and the sync scope.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use connection_store::{Connection, ConnectionStatus, StoreError};

use super::connections::row_with;
use super::error::AppError;
use super::extract::{OwnConnection, SignedForm, SignedIn};
use super::imported::{reported, scope_of, users_imported};
use super::{Result, html};
use crate::web::AppState;
use crate::web::employees::{self, EmployeePage, EmployeeQuery, GroupChoices};
use crate::web::jobs;
use crate::web::pages::{self, BASE, ManageView};
use crate::web::scope::SyncScope;

/// A form's error to show on the Manage page rendered again.
#[derive(Default, Clone, Copy)]
pub(super) struct ManageExtras<'a> {
    /// The sync scope form's error.
    pub scope_error: Option<&'a str>,
    /// The name tried, and why it was refused.
    pub rename_error: Option<(&'a str, &'a str)>,
}

/// The Manage page: the connection, its sync, its scope, and the imported employees
/// (searched and paged by `query`'s `q` and `page`, in the mirror).
pub(super) async fn manage_page(
    state: &AppState,
    me: &SignedIn,
    connection: &Connection,
    query: &HashMap<String, String>,
    extras: ManageExtras<'_>,
) -> Result<Html<String>> {
    let id = connection.id;
    let (scope, scope_problem) = scope_of(state, id).await;
    let q = employees::bounded_search(query.get("q").map_or("", String::as_str));
    let page = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let mut problems: Vec<String> = scope_problem.into_iter().collect();
    let employees = employees::page(
        state.mirror(),
        id,
        &scope,
        &EmployeeQuery { q: q.clone(), page },
    )
    .await
    .unwrap_or_else(|error| {
        problems.push(reported(
            id,
            "The imported employees could not be read",
            &error,
        ));
        EmployeePage {
            items: Vec::new(),
            total: 0,
            page: 1,
            pages: 1,
        }
    });
    let groups = employees::group_choices(state.mirror(), id, &scope)
        .await
        .unwrap_or_else(|error| {
            problems.push(reported(
                id,
                "The imported groups could not be read",
                &error,
            ));
            GroupChoices::default()
        });
    // The count the list shows: the page's total when nothing narrows it.
    let users = if !problems.is_empty() {
        None
    } else if q.is_empty() {
        connection.last_synced_at.map(|_| employees.total)
    } else {
        users_imported(state, connection, &scope).await
    };
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
    let job = state.jobs().state(id);
    let problem = (!problems.is_empty()).then(|| problems.join("; "));
    let view = ManageView {
        row: &row,
        reconnect_reason,
        job: &job,
        scope: &scope,
        groups: &groups,
        scope_error: extras.scope_error,
        rename_error: extras.rename_error,
        employees: &employees,
        q: &q,
        flash,
        problem: problem.as_deref(),
    };
    Ok(html(&pages::manage(&me.ctx(), &view)))
}

pub(super) async fn manage(
    State(state): State<AppState>,
    OwnConnection { me, connection }: OwnConnection,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Html<String>> {
    manage_page(&state, &me, &connection, &query, ManageExtras::default()).await
}

pub(super) async fn sync_now(
    State(state): State<AppState>,
    OwnConnection { me, connection }: OwnConnection,
    SignedForm(_): SignedForm,
) -> Redirect {
    let id = connection.id;
    let flash = if jobs::spawn(&state, me.owner, id) {
        "sync"
    } else {
        "running"
    };
    Redirect::to(&format!("{BASE}/connections/{id}?flash={flash}"))
}

/// The sync's state as JSON: the job's fields, and `message`, the words the page shows.
pub(super) async fn sync_status(
    State(state): State<AppState>,
    OwnConnection { connection, .. }: OwnConnection,
) -> Result<Response> {
    let job = state.jobs().state(connection.id);
    let mut status = serde_json::to_value(&job).map_err(|e| AppError::Internal(e.into()))?;
    if let Some(fields) = status.as_object_mut() {
        fields.insert(
            "message".to_owned(),
            serde_json::Value::String(pages::progress_text(&job)),
        );
    }
    Ok(axum::Json(status).into_response())
}

pub(super) async fn save_scope(
    State(state): State<AppState>,
    OwnConnection { me, connection }: OwnConnection,
    SignedForm(fields): SignedForm,
) -> Result<Response> {
    let id = connection.id;
    let parsed = match SyncScope::from_form(&fields) {
        Ok(scope) => {
            let known = employees::known_groups(state.mirror(), id, &scope.groups).await?;
            scope.require_known(|group| known.contains(group))
        }
        Err(error) => Err(error),
    };
    match parsed {
        Ok(scope) => {
            let dir = state.connection_dir(id);
            tokio::task::spawn_blocking(move || scope.save(&dir))
                .await
                .map_err(|e| AppError::Internal(e.into()))?
                .map_err(|e| AppError::Internal(e.into()))?;
            // Removed meanwhile: its folder must not outlive it.
            if let Err(StoreError::NotFound { .. }) = state.store().get(&me.owner, id).await {
                state.forget_connection(id).await;
                return Err(AppError::NotFound);
            }
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
