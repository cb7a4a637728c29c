//! What the pages read about a connection's imported employees: its sync scope (a file)
//! and, through it, the mirror.

use connection_store::{Connection, ConnectionId};

use crate::web::AppState;
use crate::web::employees;
use crate::web::scope::SyncScope;

/// Connection `id`'s sync scope, read off the async workers. A damaged or unreadable
/// file gives the default scope and a `problem` to show, never a failing page.
pub(super) async fn scope_of(state: &AppState, id: ConnectionId) -> (SyncScope, Option<String>) {
    let dir = state.connection_dir(id);
    let read = tokio::task::spawn_blocking(move || SyncScope::load(&dir)).await;
    match read {
        Ok(Ok(scope)) => (scope, None),
        Ok(Err(error)) => (
            SyncScope::default(),
            Some(reported(
                id,
                "The sync scope could not be read; the default one applies",
                &error,
            )),
        ),
        Err(error) => (
            SyncScope::default(),
            Some(reported(
                id,
                "The sync scope could not be read; the default one applies",
                &error,
            )),
        ),
    }
}

/// A problem for a page: `sentence` and a support reference; the error itself (which may
/// name server paths or database details) goes to the log under that reference.
pub(super) fn reported(
    id: ConnectionId,
    sentence: &str,
    error: &(dyn std::error::Error + 'static),
) -> String {
    let reference = crate::web::support_reference();
    tracing::error!(connection = %id, %reference, error = %chain(error), "{sentence}");
    format!("{sentence} (reference {reference}).")
}

/// An error with its causes, `: `-separated, for a page.
pub(super) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The number of employees `connection` imported under `scope`, once it has synced;
/// `None` before, or when it cannot be read (logged).
pub(super) async fn users_imported(
    state: &AppState,
    connection: &Connection,
    scope: &SyncScope,
) -> Option<u64> {
    connection.last_synced_at?;
    match employees::count(state.mirror(), connection.id, scope).await {
        Ok(count) => Some(count),
        Err(error) => {
            tracing::warn!(connection = %connection.id, error = %chain(&error), "could not count the imported employees");
            None
        }
    }
}
