//! The scheduled sync: every connection of every customer is synced by delta once per
//! interval (default one hour).
//!
//! Key decisions:
//! - "Due" is read from the store (`last_synced_at` older than the interval, or never),
//!   so every instance of the app sharing one database agrees on what is due, and a
//!   connection synced by one instance is not due for the others.
//! - The sync itself holds the store's sync lease (`common::sync::run`), so two
//!   instances that find the same connection due at the same moment never sync it at
//!   once: the second gets "lease held" and skips it.
//! - Connections that need a reconnect or are disabled are skipped until an admin acts.
//! - A round checks every minute (or every interval, if shorter); connections are
//!   synced one after another, to stay gentle with Graph's throttling.

use std::time::Duration;

use connection_store::{ConnectionId, ConnectionStatus};
use time::OffsetDateTime;

use super::AppState;
use super::jobs::{self, Outcome};

/// How often the scheduler looks for due connections, at most.
pub const CHECK_EVERY: Duration = Duration::from_secs(60);

/// What a round did with one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visit {
    /// The connection.
    pub id: ConnectionId,
    /// Its owner's email.
    pub owner: String,
    /// What happened; `None` when it was not due (or needs an admin first).
    pub outcome: Option<Outcome>,
}

/// Starts the scheduler: a round now, then every [`CHECK_EVERY`] (or `interval`).
pub fn spawn(state: AppState, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval.min(CHECK_EVERY));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let visits = round(&state, interval, OffsetDateTime::now_utc()).await;
            let synced = visits
                .iter()
                .filter(|v| v.outcome == Some(Outcome::Synced))
                .count();
            if synced > 0 {
                tracing::info!(synced, "scheduled sync round done");
            }
        }
    })
}

/// One round at time `now`: syncs each active connection whose last sync is older than
/// `interval`.
pub async fn round(state: &AppState, interval: Duration, now: OffsetDateTime) -> Vec<Visit> {
    let store = state.store();
    let mut visits = Vec::new();
    for customer in &state.config().customers {
        let owner = customer.owner();
        let connections = match store.list(&owner).await {
            Ok(connections) => connections,
            Err(error) => {
                tracing::warn!(%error, "scheduled sync could not list connections");
                continue;
            }
        };
        for listed in connections {
            // Read it again just before syncing: another instance may have synced it
            // while this round worked through earlier connections.
            let Ok(connection) = store.get(&owner, listed.id).await else {
                continue;
            };
            let due = matches!(connection.status, ConnectionStatus::Active)
                && connection
                    .last_synced_at
                    .is_none_or(|last| now - last >= interval);
            let outcome = if due {
                Some(jobs::run(state, &owner, connection.id).await)
            } else {
                None
            };
            visits.push(Visit {
                id: connection.id,
                owner: customer.email.clone(),
                outcome,
            });
        }
    }
    visits
}
