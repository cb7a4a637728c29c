//! What the last sync imported for a connection, as the pages read it.

use std::sync::Arc;

use connection_store::ConnectionId;

use crate::web::employees::Employee;
use crate::web::scope::SyncScope;
use crate::web::{AppState, connection_dir};

/// What the last sync imported for a connection, read off the async workers: its scope,
/// the employees in scope and the groups. A damaged file gives the defaults and a
/// `problem` to show, never a failing page.
pub(super) struct Imported {
    /// The sync scope.
    pub scope: SyncScope,
    /// The employees in scope.
    pub employees: Arc<Vec<Employee>>,
    /// The groups (id, name).
    pub groups: Arc<Vec<(String, String)>>,
    /// Why the imported data could not be read.
    pub problem: Option<String>,
}

pub(super) async fn imported(state: &AppState, id: ConnectionId) -> Imported {
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
