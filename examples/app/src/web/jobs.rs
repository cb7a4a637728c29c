//! Background syncs, one at a time per connection in this process, with their progress
//! for the Manage page. Across processes the store's sync lease (taken by
//! [`crate::sync::run`]) keeps two instances from syncing one connection at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use connection_store::{ConnectionId, LeaseHolder, OwnerId};
use serde::Serialize;
use time::OffsetDateTime;

use super::AppState;
use crate::sync::{self, Phase, Progress, SyncStop, Target};

/// What the Manage page shows about a connection's sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum JobState {
    /// No sync has run since the app started.
    Idle,
    /// A sync is running.
    Running {
        /// The phase now (`users`, `groups`, `memberships`, `writing`).
        phase: Option<String>,
        /// Items done per phase.
        counts: BTreeMap<String, u64>,
    },
    /// The last sync finished.
    Done {
        /// "full" or "delta".
        kind: String,
        /// Users in the export.
        users: u64,
        /// Groups in the export.
        groups: u64,
        /// Users added, updated and deleted by this sync.
        changed: u64,
        /// When it finished (RFC 3339).
        #[serde(with = "time::serde::rfc3339")]
        finished_at: OffsetDateTime,
    },
    /// Microsoft refused the saved sign-in: an admin must reconnect.
    NeedsReconnect {
        /// Why, secret-free.
        message: String,
    },
    /// The last sync failed.
    Failed {
        /// Why, in plain words.
        message: String,
    },
}

impl JobState {
    /// `idle`, `running`, `done`, `needs-reconnect` or `failed` (the page's `data-state`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Running { .. } => "running",
            Self::Done { .. } => "done",
            Self::NeedsReconnect { .. } => "needs-reconnect",
            Self::Failed { .. } => "failed",
        }
    }
}

/// How a requested sync went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It ran and finished.
    Synced,
    /// A sync of this connection was already running in this process.
    AlreadyRunning,
    /// Another instance holds the connection's sync lease.
    LeaseHeld,
    /// The connection needs a reconnect (or just turned out to).
    NeedsReconnect,
    /// The connection is disabled.
    Disabled,
    /// It failed.
    Failed,
}

/// The sync jobs of this process.
#[derive(Clone, Default)]
pub struct Jobs {
    states: Arc<Mutex<HashMap<ConnectionId, JobState>>>,
    /// The background ("Sync now") tasks, so a shutdown can let them finish.
    tasks: Arc<Mutex<tokio::task::JoinSet<()>>>,
}

impl Jobs {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<ConnectionId, JobState>) -> R) -> R {
        f(&mut self.states.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Waits up to `within` for the background syncs to finish (a shutdown), then stops
    /// the rest; a stopped sync leaves its export and cursors as they were, and its lease
    /// expires by itself.
    pub(crate) async fn drain(&self, within: Duration) {
        let mut tasks =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        let all = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(within, all).await.is_err() {
            tracing::warn!("stopping syncs still running at shutdown");
        }
    }

    /// The state of connection `id`'s sync.
    pub fn state(&self, id: ConnectionId) -> JobState {
        self.with(|states| states.get(&id).cloned().unwrap_or(JobState::Idle))
    }

    /// Forgets connection `id` (it was removed).
    pub fn forget(&self, id: ConnectionId) {
        self.with(|states| states.remove(&id));
    }

    /// Marks `id` running unless it already is: the state before, to put back with
    /// [`Jobs::unclaim`] when the sync does not run after all; `None` when one runs.
    pub fn claim(&self, id: ConnectionId) -> Option<JobState> {
        self.with(|states| {
            if matches!(states.get(&id), Some(JobState::Running { .. })) {
                return None;
            }
            let before = states.insert(
                id,
                JobState::Running {
                    phase: None,
                    counts: BTreeMap::new(),
                },
            );
            Some(before.unwrap_or(JobState::Idle))
        })
    }

    /// Puts back the state from before [`Jobs::claim`] (the sync did not run).
    pub fn unclaim(&self, id: ConnectionId, before: JobState) {
        self.set(id, before);
    }

    fn set(&self, id: ConnectionId, state: JobState) {
        self.with(|states| states.insert(id, state));
    }

    fn progress(
        &self,
        id: ConnectionId,
        update: impl FnOnce(&mut Option<String>, &mut BTreeMap<String, u64>),
    ) {
        self.with(|states| {
            if let Some(JobState::Running { phase, counts }) = states.get_mut(&id) {
                update(phase, counts);
            }
        });
    }
}

/// Starts a sync of `owner`'s connection `id` in the background ("Sync now"); false when
/// one is already running in this process.
pub(crate) fn spawn(state: &AppState, owner: OwnerId, id: ConnectionId) -> bool {
    if state.jobs().claim(id).is_none() {
        return false;
    }
    let jobs = state.jobs().clone();
    let state = state.clone();
    let mut tasks = jobs.tasks.lock().unwrap_or_else(PoisonError::into_inner);
    // Forget the finished ones.
    while tasks.try_join_next().is_some() {}
    tasks.spawn(async move {
        let outcome = run_claimed(&state, &owner, id, None).await;
        tracing::info!(connection = %id, ?outcome, "sync finished");
    });
    true
}

/// Runs a sync of `owner`'s connection `id` now and waits for it (the scheduler), as
/// `holder` of the sync lease when given (the scheduler took it already).
pub async fn run(
    state: &AppState,
    owner: &OwnerId,
    id: ConnectionId,
    holder: Option<LeaseHolder>,
) -> Outcome {
    if state.jobs().claim(id).is_none() {
        return Outcome::AlreadyRunning;
    }
    run_claimed(state, owner, id, holder).await
}

/// Runs a sync whose job [`Jobs::claim`] marked running.
pub(crate) async fn run_claimed(
    state: &AppState,
    owner: &OwnerId,
    id: ConnectionId,
    holder: Option<LeaseHolder>,
) -> Outcome {
    let jobs = state.jobs().clone();
    let (outcome, next) = match sync_once(state, owner, id, holder).await {
        Ok(report) => {
            let changed = report.users.added + report.users.updated + report.users.deleted;
            let done = JobState::Done {
                kind: match report.kind {
                    sync::Kind::Delta => "delta".to_owned(),
                    _ => "full".to_owned(),
                },
                users: report.users.total,
                groups: report.groups.total,
                changed,
                finished_at: OffsetDateTime::now_utc(),
            };
            (Outcome::Synced, done)
        }
        Err(error) => match error.downcast_ref::<SyncStop>() {
            Some(SyncStop::NeedsReconnect { reason }) => (
                Outcome::NeedsReconnect,
                JobState::NeedsReconnect {
                    message: reason.clone(),
                },
            ),
            Some(SyncStop::LeaseHeld) => (
                Outcome::LeaseHeld,
                JobState::Failed {
                    message: "another instance of the app is syncing this connection right \
                              now; its result shows here after its next sync"
                        .to_owned(),
                },
            ),
            Some(SyncStop::Disabled) => (
                Outcome::Disabled,
                JobState::Failed {
                    message: "the connection is disabled".to_owned(),
                },
            ),
            _ => {
                tracing::warn!(connection = %id, error = %format!("{error:#}"), "sync failed");
                (
                    Outcome::Failed,
                    JobState::Failed {
                        message: first_line(&error),
                    },
                )
            }
        },
    };
    // Removed while it ran: the export it may just have written must not outlive the
    // connection (the remove deleted the folder before the sync wrote it again).
    if let Err(connection_store::StoreError::NotFound { .. }) = state.store().get(owner, id).await {
        let dir = super::connection_dir(&state.config().data_dir, id);
        let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        if let Ok(Err(error)) = removed
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%error, connection = %id, "could not delete a removed connection's files");
        }
        jobs.forget(id);
        state.employees().forget(id);
        state.forget_linked(id);
        return outcome;
    }
    if outcome == Outcome::NeedsReconnect {
        // Its token session remembers the refused grant: open a fresh one next time, so
        // a reconnect made on another instance is picked up.
        state.forget_linked(id);
    }
    jobs.set(id, next);
    outcome
}

/// The first line of an error chain: plain words without the CLI's "next step" lines.
fn first_line(error: &anyhow::Error) -> String {
    let text = format!("{error:#}");
    text.lines()
        .next()
        .unwrap_or("the sync failed")
        .chars()
        .take(300)
        .collect()
}

async fn sync_once(
    state: &AppState,
    owner: &OwnerId,
    id: ConnectionId,
    holder: Option<LeaseHolder>,
) -> anyhow::Result<sync::Report> {
    let store = state.store();
    let linked = state.linked(owner, id).await?;
    let mut options = sync::Options::new(super::connection_dir(&state.config().data_dir, id))?;
    options.select = super::employees::USER_SELECT
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    if let Some(holder) = holder {
        options.holder = holder;
    }
    let target = Target {
        store,
        owner: owner.clone(),
        id,
    };
    let progress = JobProgress {
        jobs: state.jobs().clone(),
        id,
    };
    let report = sync::run(&linked.graph, &target, &options, &progress).await?;
    state.employees().forget(id);
    Ok(report)
}

/// Feeds a running sync's progress into [`Jobs`].
struct JobProgress {
    jobs: Jobs,
    id: ConnectionId,
}

impl Progress for JobProgress {
    fn start(&self, phase: Phase, _total: Option<u64>) {
        self.jobs.progress(self.id, |now, counts| {
            *now = Some(phase.label().to_owned());
            counts.entry(phase.label().to_owned()).or_insert(0);
        });
    }

    fn advance(&self, phase: Phase, count: u64) {
        self.jobs.progress(self.id, |_, counts| {
            *counts.entry(phase.label().to_owned()).or_insert(0) += count;
        });
    }
}
