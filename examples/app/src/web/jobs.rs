//! Background syncs, one at a time per connection in this process, with their progress
//! for the Manage page. A sync is [`crate::sync::run`] into the connection's directory
//! mirror ([`MirrorSink`](crate::mirror::MirrorSink)). Across processes the store's sync
//! lease (taken by [`crate::sync::run`]) keeps two instances from syncing one connection
//! at once, and fences the mirror's commit: a sync whose lease was taken over commits
//! nothing.
//!
//! A failed sync shows the customer a fixed sentence for its kind, never the error's
//! text (which names server paths, database tables and Graph URLs): an unexpected
//! failure gets a support reference, and the log line with the details carries the
//! same reference ([`failed`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use connection_store::{ConnectionId, LeaseHolder, OwnerId};
use graph_client::sync::{Phase, SyncKind, SyncOptions, SyncProgress, SyncReport, SyncSummary};
use serde::Serialize;
use time::OffsetDateTime;

use super::AppState;
use crate::sync::{self, SyncStop, Target};
use crate::worker::{self, Outcome};

/// What the Manage page shows about a connection's sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum JobState {
    /// No sync has run since the app started.
    Idle,
    /// A sync is running.
    Running {
        /// The phase now (`users`, `groups`, `memberships`, `committing`).
        phase: Option<String>,
        /// Items done per phase.
        counts: BTreeMap<String, u64>,
    },
    /// The last sync finished.
    Done {
        /// `full`, `resync` (a full import because Microsoft expired the delta links) or
        /// `delta`.
        kind: String,
        /// Users in the mirror.
        users: u64,
        /// Groups in the mirror.
        groups: u64,
        /// Users added, updated and removed by this sync.
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
        /// What happened, a fixed sentence per kind of failure (no error text).
        message: String,
        /// The support reference of an unexpected failure, also in the log line that
        /// has the details.
        #[serde(skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
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
    /// the rest; a stopped sync leaves the mirror at its last commit, and its lease
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

/// Runs a sync of `owner`'s connection `id` now, under a lease of its own, and waits for
/// it.
pub async fn run(state: &AppState, owner: &OwnerId, id: ConnectionId) -> Outcome {
    if state.jobs().claim(id).is_none() {
        return Outcome::AlreadyRunning;
    }
    run_claimed(state, owner, id, None).await
}

/// Runs a sync whose job [`Jobs::claim`] marked running: under its own new lease, or
/// under `claimed`, the lease the scheduler claimed it with.
pub(crate) async fn run_claimed(
    state: &AppState,
    owner: &OwnerId,
    id: ConnectionId,
    claimed: Option<LeaseHolder>,
) -> Outcome {
    let jobs = state.jobs().clone();
    let result = sync_once(state, owner, id, claimed).await;
    let outcome = worker::outcome_of(id, &result);
    let next = match (&result, outcome) {
        (Ok(report), _) => done(report.kind, &report.summary),
        (Err(error), Outcome::NeedsReconnect) => JobState::NeedsReconnect {
            message: match error.downcast_ref::<SyncStop>() {
                Some(SyncStop::NeedsReconnect { reason }) => reason.clone(),
                _ => "Microsoft refused the saved sign-in".to_owned(),
            },
        },
        (Err(_), Outcome::LeaseHeld) => fixed(
            "another instance of the app is syncing this connection right now; its result \
             shows here after its next sync",
        ),
        (Err(_), Outcome::LeaseLost) => {
            fixed("another instance of the app took this sync over; nothing was written")
        }
        (Err(_), Outcome::Disabled) => fixed("the connection is disabled"),
        (Err(error), _) => failed(id, error),
    };
    // Removed while it ran: the store took the mirror rows with the connection, and a
    // commit after that is refused (the lease went too); what is left to forget is this
    // process's state and the connection's folder.
    if let Err(connection_store::StoreError::NotFound { .. }) = state.store().get(owner, id).await {
        state.forget_connection(id).await;
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

/// A failure the customer can act on as it is: its sentence is the whole story.
fn fixed(message: &str) -> JobState {
    JobState::Failed {
        message: message.to_owned(),
        reference: None,
    }
}

/// An unexpected failure: the customer reads a fixed sentence for its kind and a support
/// reference; the log gets the error chain under the same reference.
pub(crate) fn failed(id: ConnectionId, error: &anyhow::Error) -> JobState {
    let reference = super::support_reference();
    tracing::error!(
        connection = %id,
        reference = %reference,
        error = %format!("{error:#}"),
        "a sync failed; the Manage page shows its reference"
    );
    let what = if from_microsoft(error) {
        "Microsoft 365 did not complete the import (it may be busy or unreachable)."
    } else {
        "The import failed."
    };
    JobState::Failed {
        message: format!(
            "{what} Try again later; if it keeps failing, contact support with reference \
             {reference}."
        ),
        reference: Some(reference),
    }
}

/// Whether Microsoft's side failed (Graph, or the token endpoint behind it) rather than
/// this app's (the mirror, the store, files).
fn from_microsoft(error: &anyhow::Error) -> bool {
    use graph_client::sync::{SinkError, SyncError};
    let mut microsoft = false;
    for cause in error.chain() {
        if cause.is::<SinkError>() || matches!(cause.downcast_ref(), Some(SyncError::Sink(_))) {
            return false;
        }
        microsoft |= cause.is::<SyncError>()
            || cause.is::<graph_client::GraphError>()
            || cause.is::<graph_client::TokenError>();
    }
    microsoft
}

/// What the page shows of a finished sync.
fn done(kind: SyncKind, summary: &SyncSummary) -> JobState {
    let users = &summary.users;
    JobState::Done {
        kind: kind.as_str().to_owned(),
        users: users.total,
        groups: summary.groups.total,
        changed: users.added + users.updated + users.removed,
        finished_at: OffsetDateTime::now_utc(),
    }
}

/// One sync of connection `id` into the mirror, fenced by the lease it runs under.
async fn sync_once(
    state: &AppState,
    owner: &OwnerId,
    id: ConnectionId,
    claimed: Option<LeaseHolder>,
) -> anyhow::Result<SyncReport> {
    let target = Target {
        store: state.store(),
        owner: owner.clone(),
        id,
    };
    let prepared = async {
        let linked = state.linked(owner, id).await?;
        let options = sync::Options::new()?;
        anyhow::Ok((linked, options))
    };
    let (linked, mut options) = match prepared.await {
        Ok(prepared) => prepared,
        Err(error) => {
            // A claimed connection that cannot even start: back off, free the lease.
            if let Some(holder) = &claimed {
                sync::give_up(&target, holder).await;
            }
            return Err(error);
        }
    };
    options.engine = SyncOptions::new().user_select(super::employees::USER_SELECT);
    if let Some(holder) = &claimed {
        options.holder = holder.clone();
    }
    let mut sink = state
        .mirror()
        .sink(state.sql(), id)
        .with_fence(options.holder.clone());
    let progress = JobProgress {
        jobs: state.jobs().clone(),
        id,
    };
    // The session is this instance's for the connection (photos use it too); while the
    // sync runs, a refused grant is written only under its lease.
    let _fenced = linked.tokens.fence_while(options.holder.clone());
    if claimed.is_some() {
        // Claimed by the scheduler: the lease is held and the status was checked.
        sync::run_leased(&linked.graph, &target, &mut sink, &options, &progress).await
    } else {
        sync::run(&linked.graph, &target, &mut sink, &options, &progress).await
    }
}

/// Feeds a running sync's progress into [`Jobs`], phase by phase.
struct JobProgress {
    jobs: Jobs,
    id: ConnectionId,
}

impl SyncProgress for JobProgress {
    fn started(&self, phase: Phase, _total: Option<u64>) {
        self.jobs.progress(self.id, |now, counts| {
            *now = Some(phase.as_str().to_owned());
            counts.entry(phase.as_str().to_owned()).or_insert(0);
        });
    }

    fn advanced(&self, phase: Phase, count: u64) {
        self.jobs.progress(self.id, |_, counts| {
            *counts.entry(phase.as_str().to_owned()).or_insert(0) += count;
        });
    }
}

#[cfg(test)]
mod tests {
    use graph_client::ObjectId;
    use graph_client::sync::ObjectCounts;

    use super::*;
    use crate::web::pages;

    #[test]
    fn a_finished_sync_shows_its_kind_totals_and_changed_users() {
        let mut summary = SyncSummary::new(
            ObjectCounts::new(2, 3, 1, 40),
            ObjectCounts::new(1, 0, 0, 5),
            ObjectCounts::new(9, 0, 4, 70),
        );
        summary.note_removed_user(ObjectId::new("gone"));
        for (kind, name) in [
            (SyncKind::Full, "full"),
            (SyncKind::Resync, "resync"),
            (SyncKind::Delta, "delta"),
        ] {
            let JobState::Done {
                kind,
                users,
                groups,
                changed,
                ..
            } = done(kind, &summary)
            else {
                panic!("not done");
            };
            assert_eq!((kind.as_str(), users, groups, changed), (name, 40, 5, 6));
        }
    }

    #[test]
    fn progress_is_kept_per_phase_while_the_job_runs() {
        let jobs = Jobs::default();
        let id = ConnectionId::new();
        let progress = JobProgress {
            jobs: jobs.clone(),
            id,
        };
        // Not running: nothing is recorded.
        progress.started(Phase::Users, None);
        assert_eq!(jobs.state(id), JobState::Idle);

        assert_eq!(jobs.claim(id), Some(JobState::Idle));
        progress.started(Phase::Users, None);
        progress.advanced(Phase::Users, 10);
        progress.advanced(Phase::Users, 5);
        progress.started(Phase::Memberships, Some(3));
        progress.advanced(Phase::Memberships, 1);
        progress.started(Phase::Committing, None);
        let JobState::Running { phase, counts } = jobs.state(id) else {
            panic!("not running");
        };
        assert_eq!(phase.as_deref(), Some("committing"));
        assert_eq!(
            counts.into_iter().collect::<Vec<_>>(),
            [
                ("committing".to_owned(), 0),
                ("memberships".to_owned(), 1),
                ("users".to_owned(), 15)
            ]
        );
    }

    /// The events logged while `f` runs, each as its fields (`name=value `).
    fn logged<R>(f: impl FnOnce() -> R) -> (R, Vec<String>) {
        use std::sync::{Arc, Mutex};

        struct Capture(Arc<Mutex<Vec<String>>>);
        struct Fields(String);

        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                use std::fmt::Write as _;
                let _ = write!(self.0, "{}={value:?} ", field.name());
            }
        }

        impl tracing::Subscriber for Capture {
            fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
                tracing::span::Id::from_u64(1)
            }
            fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
            fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
            fn event(&self, event: &tracing::Event<'_>) {
                let mut fields = Fields(String::new());
                event.record(&mut fields);
                self.0.lock().unwrap().push(fields.0);
            }
            fn enter(&self, _: &tracing::span::Id) {}
            fn exit(&self, _: &tracing::span::Id) {}
        }

        let lines = Arc::new(Mutex::new(Vec::new()));
        let result = tracing::subscriber::with_default(Capture(Arc::clone(&lines)), f);
        let lines = lines.lock().unwrap().clone();
        (result, lines)
    }

    #[test]
    fn a_failure_shows_a_fixed_sentence_and_logs_the_detail_under_its_reference() {
        let path = "/var/lib/m365-link/connections/0b1c/mirror-staging.tmp";
        let ours = anyhow::Error::new(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "permission denied (os error 13)",
        ))
        .context(format!("could not write {path}"))
        .context("error returned from database: table mirror_staged_users");
        let microsoft = anyhow::Error::new(graph_client::TokenError::new(
            "https://login.example/tenant/oauth2/v2.0/token answered 503",
        ))
        .context("could not list the users");
        let id = ConnectionId::new();
        for (error, sentence) in [
            (
                &ours,
                "The import failed. Try again later; if it keeps failing, contact support with reference",
            ),
            (
                &microsoft,
                "Microsoft 365 did not complete the import (it may be busy or unreachable). Try again later; if it keeps failing, contact support with reference",
            ),
        ] {
            let (state, lines) = logged(|| failed(id, error));
            let JobState::Failed { message, reference } = state else {
                panic!("not failed: {state:?}");
            };
            let reference = reference.expect("a support reference");
            assert_eq!(reference.len(), 12);
            assert!(
                reference.chars().all(|c| c.is_ascii_hexdigit()),
                "{reference}"
            );
            assert_eq!(message, format!("{sentence} {reference}."));
            for internal in [
                "/var/lib", "mirror", "database", "os error", "https://", "503",
            ] {
                assert!(!message.contains(internal), "{internal}: {message}");
            }
            let line = lines
                .iter()
                .find(|line| line.contains(&format!("reference={reference} ")))
                .unwrap_or_else(|| panic!("no log line with the reference: {lines:?}"));
            assert!(line.contains(&format!("connection={id} ")), "{line}");
            assert!(
                line.contains(&format!("{error:#}")),
                "the detail is logged: {line}"
            );
            // What the page and the status JSON show.
            let job = JobState::Failed {
                message: message.clone(),
                reference: Some(reference.clone()),
            };
            assert_eq!(pages::progress_text(&job), format!("Failed: {message}"));
            let json = serde_json::to_value(&job).unwrap();
            assert_eq!(json["reference"], reference.as_str());
            assert!(!json.to_string().contains("/var/lib"), "{json}");
        }
        assert!(
            ours.to_string().contains("mirror"),
            "the test's error has internals"
        );
        assert!(format!("{ours:#}").contains(path));
        // Two failures, two references.
        let (first, _) = logged(|| failed(id, &ours));
        let (second, _) = logged(|| failed(id, &ours));
        assert_ne!(first, second);
    }
}
