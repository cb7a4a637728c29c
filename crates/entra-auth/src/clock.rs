//! The wall clock, injectable so that expiry checks are testable.

use std::fmt;

use time::OffsetDateTime;

/// Where this crate reads the current time for id token `exp`/`nbf`, the pending
/// authorization's lifetime, client assertions and the expiry times it reports.
///
/// The token session decides *when* to refresh on `tokio::time`, so paused-time tests
/// drive it without a custom clock.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, in UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}
