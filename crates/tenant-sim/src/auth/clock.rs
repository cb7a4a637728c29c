//! The Entra half's clock: tokio time (so paused-time tests work) plus an offset that
//! [`super::Auth::advance_clock`] moves forward, so tests can expire codes and tokens
//! without sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

#[derive(Debug, Default)]
pub(super) struct Clock {
    /// Milliseconds added to the real (or paused) time.
    offset_millis: AtomicU64,
}

impl Clock {
    pub(super) fn advance(&self, by: Duration) {
        let millis = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.offset_millis.fetch_add(millis, Ordering::Relaxed);
    }

    fn offset(&self) -> Duration {
        Duration::from_millis(self.offset_millis.load(Ordering::Relaxed))
    }

    /// The instant used for every expiry decision.
    pub(super) fn now(&self) -> Instant {
        Instant::now() + self.offset()
    }

    /// Wall-clock time for `iat`/`exp` claims and error timestamps.
    pub(super) fn wall(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + self.offset()
    }
}
