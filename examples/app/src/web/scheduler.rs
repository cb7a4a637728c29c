//! The scheduled sync: every due connection in the store is synced by delta once per
//! interval (default one hour), by the same [`Worker`](crate::worker::Worker) the
//! `worker` example runs.
//!
//! Key decisions:
//! - What is due comes from the store's service-level
//!   [`claim_due`](connection_store::ConnectionStore::claim_due), which takes the sync
//!   leases of the connections it returns in the same statement. So every instance of the
//!   app (and every `worker` process) on one database shares the work: each due
//!   connection is claimed by exactly one of them, and a connection synced by one is not
//!   due for the others. The app needs no list of its customers to schedule.
//! - Syncs run up to [`WorkerOptions::concurrency`](crate::worker::WorkerOptions) at
//!   once, each with its own throttle gate, and show their progress on the Manage page
//!   like a "Sync now".
//! - A connection whose "Sync now" is running in this instance is left alone (its lease
//!   is freed again at once); one that needs a reconnect or is disabled is never claimed.
//! - A round runs until nothing is due, or until it has claimed the backlog due at its
//!   start ([`Worker::round`](crate::worker::Worker::round)); the next starts at once
//!   after a round that found work (a backlog drains without waiting), else after
//!   [`CHECK_EVERY`] (or the interval, if shorter).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use connection_store::{Claim, LeaseHolder};

use super::AppState;
use super::jobs;
use crate::sync;
use crate::worker::{Outcome, RoundReport, SyncClaimed, Worker, WorkerOptions};

/// How often the scheduler looks for due connections, at most.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(60);

/// Starts the scheduler: a round now, then every [`CHECK_EVERY`] (or `interval`), until
/// `stop` turns true (running syncs finish first, or their leases are freed).
pub(crate) fn spawn(
    state: AppState,
    interval: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let worker = match worker(&state, interval) {
            Ok(worker) => worker,
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "the scheduler cannot start");
                return;
            }
        };
        // At least a second between rounds (a zero period would spin).
        let every = interval.min(CHECK_EVERY).max(Duration::from_secs(1));
        worker
            .run(every, stop, |report| {
                if report.claimed > 0 {
                    tracing::info!(%report, "scheduled sync round done");
                }
            })
            .await;
    })
}

/// One round: claims and syncs every connection whose last sync is older than
/// `interval` (or that was never synced), until none is due.
pub async fn round(state: &AppState, interval: Duration) -> RoundReport {
    let (_stop, mut stopped) = tokio::sync::watch::channel(false);
    match worker(state, interval) {
        Ok(worker) => worker.round(&mut stopped).await,
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "no scheduler round");
            RoundReport::default()
        }
    }
}

fn worker(state: &AppState, interval: Duration) -> anyhow::Result<Worker> {
    let options = WorkerOptions {
        interval,
        // Within the app's shutdown grace, so the leases of cut-off syncs are freed
        // before the task is dropped.
        grace: super::SHUTDOWN_GRACE / 2,
        ..WorkerOptions::default()
    };
    Ok(Worker::new(
        state.store(),
        sync::default_holder()?,
        options,
        Arc::new(Scheduled {
            state: state.clone(),
        }),
    ))
}

/// A claimed connection synced as this app's job, shown on its Manage page.
struct Scheduled {
    state: AppState,
}

#[async_trait]
impl SyncClaimed for Scheduled {
    async fn sync(&self, claim: &Claim, holder: &LeaseHolder) -> Outcome {
        let connection = &claim.connection;
        let (owner, id) = (&connection.owner, connection.id);
        // This process's own "Sync now" first: leave it alone and free the lease.
        let Some(_before) = self.state.jobs().claim(id) else {
            if let Err(error) = self.state.store().release_lease(owner, id, holder).await {
                tracing::warn!(%error, connection = %id, "could not free the sync lease");
            }
            return Outcome::AlreadyRunning;
        };
        jobs::run_claimed(&self.state, owner, id, Some(holder.clone())).await
    }
}
