//! The scheduled sync: every connection of every customer is synced by delta once per
//! interval (default one hour).
//!
//! Key decisions:
//! - "Due" is read from the store (`last_synced_at` older than the interval, or never),
//!   so every instance of the app sharing one database agrees on what is due, and a
//!   connection synced by one instance is not due for the others.
//! - A due connection's sync lease is taken first, then the connection is read again
//!   under it, and the sync runs as that lease's holder ([`crate::sync::run`] extends
//!   it while it works). So two instances that find the same connection due at the same
//!   moment never sync it at once, nor one after the other: the second gets "lease
//!   held", or finds it no longer due.
//! - Connections that need a reconnect or are disabled are skipped until an admin acts.
//! - It visits the connections of the customers this app knows (`Config::customers`);
//!   a service iterates its own customer table here.
//! - A round checks every minute (or every interval, if shorter); connections are
//!   synced one after another, to stay gentle with Graph's throttling.

use std::time::Duration;

use connection_store::{Connection, ConnectionId, ConnectionStatus, OwnerId};
use time::OffsetDateTime;

use super::AppState;
use super::jobs::{self, Outcome};
use crate::sync;

/// How often the scheduler looks for due connections, at most.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(60);

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

/// Starts the scheduler: a round now, then every [`CHECK_EVERY`] (or `interval`), until
/// `stop` turns true (a round under way finishes first, so its syncs free their leases).
pub(crate) fn spawn(
    state: AppState,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // At least a second between rounds (a zero period would spin).
        let every = interval.min(CHECK_EVERY).max(Duration::from_secs(1));
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.wait_for(|stopped| *stopped) => break,
            }
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
            let outcome = visit(state, &owner, &listed, interval, now).await;
            visits.push(Visit {
                id: listed.id,
                owner: customer.email.clone(),
                outcome,
            });
        }
    }
    visits
}

fn is_due(connection: &Connection, interval: Duration, now: OffsetDateTime) -> bool {
    matches!(connection.status, ConnectionStatus::Active)
        && connection
            .last_synced_at
            .is_none_or(|last| now - last >= interval)
}

/// Syncs one connection if it is due: takes its sync lease first, then reads it again
/// under the lease (the listed copy may be old by now), so a connection another
/// instance synced meanwhile is not synced a second time.
async fn visit(
    state: &AppState,
    owner: &OwnerId,
    listed: &Connection,
    interval: Duration,
    now: OffsetDateTime,
) -> Option<Outcome> {
    if !is_due(listed, interval, now) {
        return None;
    }
    let store = state.store();
    let id = listed.id;
    // This process's own "Sync now" first, then the lease shared with other instances.
    let Some(before) = state.jobs().claim(id) else {
        return Some(Outcome::AlreadyRunning);
    };
    let holder = match sync::default_holder() {
        Ok(holder) => holder,
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "no lease holder name");
            state.jobs().unclaim(id, before);
            return Some(Outcome::Failed);
        }
    };
    match store
        .acquire_lease(owner, id, &holder, sync::DEFAULT_LEASE_TTL)
        .await
    {
        Ok(Some(_)) => {}
        Ok(None) => {
            state.jobs().unclaim(id, before);
            return Some(Outcome::LeaseHeld);
        }
        Err(error) => {
            tracing::warn!(%error, connection = %id, "could not take the sync lease");
            state.jobs().unclaim(id, before);
            return Some(Outcome::Failed);
        }
    }
    // Under the lease: another instance may have finished a sync just before.
    let outcome = match store.get(owner, id).await {
        Ok(connection) if is_due(&connection, interval, now) => {
            Some(jobs::run_claimed(state, owner, id, Some(holder.clone())).await)
        }
        _ => {
            state.jobs().unclaim(id, before);
            None
        }
    };
    // `crate::sync::run` frees the lease when it ran; free it in the other cases too.
    if let Err(error) = store.release_lease(owner, id, &holder).await {
        tracing::warn!(%error, connection = %id, "could not free the sync lease");
    }
    outcome
}
