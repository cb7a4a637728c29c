//! Retry policy, `Retry-After` parsing, backoff with full jitter, and the throttle gate
//! shared by all requests of one client (spec 10).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::time::Instant;

/// When and how often the client retries 429, 503, 504, timeouts and connection failures.
///
/// Defaults ([`RetryPolicy::default`]): 5 retries and at most 180 s of waiting per request
/// in total (Kiota's cumulative cap, spec 10b). A `Retry-After` is waited as given; a
/// `Retry-After` longer than the remaining wait budget ends the retries with the error,
/// which carries [`retry_after`](crate::GraphError::retry_after) so the caller can
/// reschedule.
///
/// Without `Retry-After`, the backoff ceiling starts at 1 s and doubles up to 30 s. A
/// 429, 503 or 504 then waits a random time between the floor
/// ([`min_backoff`](Self::min_backoff), 3 s: Kiota's default delay, spec 10b) and that
/// ceiling, so a throttled or unavailable Graph is never asked again within milliseconds;
/// a timeout or connection failure waits a random time between zero and the ceiling
/// (full jitter).
///
/// Every duration is at most [`RetryPolicy::MAX_WAIT`] (one day, the longest
/// `Retry-After` taken): [`GraphClientBuilder::build`](crate::GraphClientBuilder::build)
/// refuses a policy beyond it with [`GraphError::Configuration`](crate::GraphError::Configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub(crate) max_retries: u32,
    pub(crate) initial_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) max_total_wait: Duration,
    pub(crate) min_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            max_total_wait: Duration::from_secs(180),
            min_backoff: DEFAULT_MIN_BACKOFF,
        }
    }
}

/// The default floor of the wait after a 429, 503 or 504 without `Retry-After`: 3 s, the
/// default delay of Microsoft's Kiota retry handler (spec 10b; `defaultDelaySeconds = 3`
/// in microsoft/kiota-http-go `retry_handler.go`, `DefaultDelay = 3` in
/// microsoft/kiota-dotnet `RetryHandlerOption.cs`).
pub const DEFAULT_MIN_BACKOFF: Duration = Duration::from_secs(3);

impl RetryPolicy {
    /// The longest any setting of a policy may be: one day, the longest `Retry-After`
    /// the client takes from Graph. Longer settings would only overflow the clock.
    pub const MAX_WAIT: Duration = MAX_RETRY_AFTER;

    /// The default policy (see the type's docs).
    pub fn new() -> Self {
        Self::default()
    }

    /// A policy that never retries.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// How many times one request is retried after its first attempt (at most 20).
    #[must_use]
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// The first backoff ceiling when the server gives no `Retry-After`; it doubles per
    /// retry (positive, at most [`max_backoff`](Self::max_backoff)).
    #[must_use]
    pub fn initial_backoff(mut self, backoff: Duration) -> Self {
        self.initial_backoff = backoff;
        self
    }

    /// The largest backoff ceiling (at most [`RetryPolicy::MAX_WAIT`]).
    #[must_use]
    pub fn max_backoff(mut self, backoff: Duration) -> Self {
        self.max_backoff = backoff;
        self
    }

    /// The most one request waits in total across its retries (at most
    /// [`RetryPolicy::MAX_WAIT`]).
    #[must_use]
    pub fn max_total_wait(mut self, wait: Duration) -> Self {
        self.max_total_wait = wait;
        self
    }

    /// The shortest wait after a 429, 503 or 504 that came without `Retry-After`
    /// (default [`DEFAULT_MIN_BACKOFF`], 3 s; at most [`RetryPolicy::MAX_WAIT`]). It never
    /// exceeds [`max_backoff`](Self::max_backoff): a policy whose largest backoff is
    /// shorter waits at most that. `Duration::ZERO` turns the floor off (full jitter).
    /// A `Retry-After` is always waited as the server gave it.
    #[must_use]
    pub fn min_backoff(mut self, floor: Duration) -> Self {
        self.min_backoff = floor;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.max_retries > 20 {
            return Err("retry policy: max_retries must be at most 20".into());
        }
        for (name, value) in [
            ("initial_backoff", self.initial_backoff),
            ("max_backoff", self.max_backoff),
            ("max_total_wait", self.max_total_wait),
            ("min_backoff", self.min_backoff),
        ] {
            if value > Self::MAX_WAIT {
                return Err(format!(
                    "retry policy: {name} must be at most one day ({} s)",
                    Self::MAX_WAIT.as_secs()
                ));
            }
        }
        if self.initial_backoff.is_zero() || self.initial_backoff > self.max_backoff {
            return Err(
                "retry policy: initial_backoff must be positive and at most max_backoff".into(),
            );
        }
        Ok(())
    }

    /// The ceiling of the backoff before retry number `retry` (0-based): initial × 2^retry, capped.
    pub(crate) fn backoff_ceiling(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(20));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    /// The floor of the wait after a 429/503/504 without `Retry-After`, never above the
    /// largest backoff.
    pub(crate) fn floor(&self) -> Duration {
        self.min_backoff.min(self.max_backoff)
    }

    /// Full jitter: a uniformly random wait in `0..=ceiling` (AWS "full jitter"), for
    /// timeouts and connection failures.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        random_between(Duration::ZERO, self.backoff_ceiling(retry))
    }

    /// The wait after a 429, 503 or 504 without `Retry-After`: uniformly random between
    /// the floor and the ceiling (the floor when the ceiling is below it).
    pub(crate) fn status_backoff(&self, retry: u32) -> Duration {
        let floor = self.floor();
        random_between(floor, self.backoff_ceiling(retry).max(floor))
    }
}

/// A uniformly random duration in `low..=high`, to the millisecond.
fn random_between(low: Duration, high: Duration) -> Duration {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let (low, high) = (millis(low), millis(high));
    if low >= high {
        return Duration::from_millis(low);
    }
    Duration::from_millis(rand::rng().random_range(low..=high))
}

/// What one request (or one `$batch` item) has spent of its [`RetryPolicy`]: the one
/// place that decides whether another retry is allowed, for `execute` and `$batch` alike.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RetryBudget {
    retries: u32,
    waited: Duration,
}

impl RetryBudget {
    /// The wait before retrying a 429, 503 or 504: the server's `Retry-After` when it
    /// sent one, else the policy's backoff for this retry number, never under its floor.
    pub(crate) fn wait(&self, policy: &RetryPolicy, server_wait: Option<Duration>) -> Duration {
        server_wait.unwrap_or_else(|| policy.status_backoff(self.retries))
    }

    /// The wait before retrying a timeout or connection failure: full jitter.
    pub(crate) fn transport_wait(&self, policy: &RetryPolicy) -> Duration {
        policy.backoff(self.retries)
    }

    /// Spends `wait` on one more retry when the policy allows it (retries left and the
    /// total wait within its cap); false means give up with the error.
    pub(crate) fn spend(&mut self, policy: &RetryPolicy, wait: Duration) -> bool {
        // Checked: a wait near `Duration::MAX` must end the retries, not overflow.
        let Some(waited) = self.waited.checked_add(wait) else {
            return false;
        };
        if self.retries < policy.max_retries && waited <= policy.max_total_wait {
            self.retries += 1;
            self.waited = waited;
            true
        } else {
            false
        }
    }
}

/// The wall clock used to read `Retry-After` HTTP dates; injectable for tests (STYLE, Async).
pub(crate) type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The longest `Retry-After` taken from Graph, in either form.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// Parses `Retry-After` as seconds, fractions kept and rounded up to the millisecond
/// (`2.128` → 2.128 s, `0.0004` → 1 ms: never earlier than asked, as Kiota's truncation
/// would be, and never a whole second late, which would leave the tenant's budget unused
/// after every 429; spec 10a/checklist 6), or as an HTTP date relative to `now` (a past
/// date gives zero); at most a day.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        if !seconds.is_finite() || seconds < 0.0 {
            return None;
        }
        let millis = (seconds * 1000.0).ceil();
        // `millis` is a non-negative whole number; cap it at a day so the cast cannot wrap.
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "non-negative whole number capped at one day"
        )]
        let whole = millis.min(86_400_000.0) as u64;
        return Some(Duration::from_millis(whole));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    // Capped at a day like the seconds form: a far-future date must not tell callers to
    // wait for centuries.
    Some(
        date.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// One gate per client: a 429 (or any `Retry-After`) closes it until the wait has passed,
/// and every request of the client waits at the gate before sending, so siblings pause
/// instead of each finding the limit on its own (spec 10a: Graph keeps counting while throttled).
#[derive(Debug, Default)]
pub(crate) struct ThrottleGate {
    paused_until: Mutex<Option<Instant>>,
}

impl ThrottleGate {
    /// Closes the gate until `until` (never shortens an existing pause).
    pub(crate) fn pause_until(&self, until: Instant) {
        let mut guard = self
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if guard.is_none_or(|current| current < until) {
            *guard = Some(until);
        }
    }

    /// Pauses for `wait` from now (never shortening a longer pause).
    pub(crate) fn pause_for(&self, wait: Duration) {
        if let Some(until) = Instant::now().checked_add(wait) {
            self.pause_until(until);
        }
    }

    fn current(&self) -> Option<Instant> {
        *self
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The end of the current pause, if one is running.
    pub(crate) fn paused_until(&self) -> Option<Instant> {
        self.current().filter(|until| *until > Instant::now())
    }

    /// Waits until the gate is open; returns at once when it is.
    pub(crate) async fn wait(&self) {
        // Loop: a sibling may extend the pause while we sleep.
        while let Some(until) = self.current() {
            if until <= Instant::now() {
                return;
            }
            tokio::time::sleep_until(until).await;
        }
    }
}

/// A budget of Graph resource units per second that the client spends before sending,
/// so a client that knows its tenant's budget paces itself instead of meeting 429s
/// (spec 10a: a token bucket of resource units per app and tenant; Graph keeps counting
/// while a client is throttled).
///
/// Scheduled as a generic cell rate: each request reserves the next instant its cost is
/// available, so concurrent requests queue in order instead of all waking at once. On
/// tokio's clock, like the throttle gate (paused-time tests drive both).
#[derive(Debug)]
pub(crate) struct UnitBudget {
    /// Time for one unit to refill.
    per_unit: Duration,
    /// How far ahead of now the schedule may run: the burst.
    tolerance: Duration,
    /// When the units reserved so far will have refilled (the theoretical arrival time).
    booked_until: Mutex<Option<Instant>>,
}

impl UnitBudget {
    /// `units_per_second` refilled, at most `burst` units at once; `None` unless both are
    /// finite and positive (and the burst at least one unit).
    pub(crate) fn new(units_per_second: f64, burst: f64) -> Option<Self> {
        if !(units_per_second.is_finite()
            && units_per_second > 0.0
            && burst.is_finite()
            && burst >= 1.0)
        {
            return None;
        }
        let per_unit = Duration::try_from_secs_f64(1.0 / units_per_second).ok()?;
        let tolerance = Duration::try_from_secs_f64(burst / units_per_second).ok()?;
        // A unit that takes longer than a day to refill is no budget but a typo; refusing it
        // keeps every instant the schedule computes far from the clock's end.
        if per_unit > MAX_RETRY_AFTER || tolerance > MAX_RETRY_AFTER {
            return None;
        }
        Some(Self {
            per_unit,
            tolerance,
            booked_until: Mutex::new(None),
        })
    }

    /// The same settings, nothing booked (for a client of another tenant).
    pub(crate) fn fresh(&self) -> Self {
        Self {
            per_unit: self.per_unit,
            tolerance: self.tolerance,
            booked_until: Mutex::new(None),
        }
    }

    /// Waits until `units` are available and spends them.
    pub(crate) async fn spend(&self, units: u32) {
        let ready_at = {
            let now = Instant::now();
            let mut booked = self
                .booked_until
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let from = booked.map_or(now, |until| until.max(now));
            // Checked: at most a day per unit, but the instant is still never overflowed.
            let until = self
                .per_unit
                .checked_mul(units.max(1))
                .and_then(|cost| from.checked_add(cost))
                .unwrap_or(from);
            *booked = Some(until);
            // Free once what is booked after this request fits in the burst.
            until.checked_sub(self.tolerance).unwrap_or(now)
        };
        if ready_at > Instant::now() {
            tokio::time::sleep_until(ready_at).await;
        }
    }
}

/// The resource units Graph charges a GET of `url` in the identity and access service
/// (spec 10a, throttling-limits): `users` 2, `groups/{id}/members` 3,
/// `groups/{id}/transitiveMembers` 5, `me/memberOf` and `users/{id}/memberOf` 2, anything
/// else 1; `$select` -1, `$expand` +1, `$top` under 20 -1; never under 1.
pub(crate) fn resource_units(url: &url::Url) -> u32 {
    let segments: Vec<&str> = url
        .path_segments()
        .map(|s| s.filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    // Past the version segment (`v1.0`, `beta`).
    let path = segments.get(1..).unwrap_or_default();
    let base: u32 = match path {
        ["users"] | ["users" | "me", .., "memberOf"] => 2,
        ["users", user] if !matches!(*user, "$count" | "delta") => 2,
        ["groups", _, "members", ..] => 3,
        ["groups", _, "transitiveMembers", ..] => 5,
        _ => 1,
    };
    let mut select = false;
    let mut expand = false;
    let mut small_top = false;
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "$select" => select = true,
            "$expand" => expand = true,
            "$top" => small_top = value.parse::<u32>().is_ok_and(|top| top < 20),
            _ => {}
        }
    }
    let units = base + u32::from(expand);
    units
        .saturating_sub(u32::from(select))
        .saturating_sub(u32::from(small_top))
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch_plus(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn units(url: &str) -> u32 {
        resource_units(&url::Url::parse(url).unwrap())
    }

    #[test]
    fn resource_units_follow_the_documented_costs() {
        let g = "https://graph.microsoft.com/v1.0";
        assert_eq!(units(&format!("{g}/users")), 2);
        assert_eq!(units(&format!("{g}/users?$select=id,mail&$top=999")), 1);
        assert_eq!(units(&format!("{g}/users/u1?$expand=manager")), 3);
        assert_eq!(units(&format!("{g}/groups/g1/members?$top=999")), 3);
        assert_eq!(
            units(&format!("{g}/groups/g1/members?$select=id&$top=5")),
            1
        );
        assert_eq!(units(&format!("{g}/groups/g1/transitiveMembers")), 5);
        assert_eq!(units(&format!("{g}/me/memberOf")), 2);
        assert_eq!(units(&format!("{g}/groups?$select=id")), 1);
        assert_eq!(units(&format!("{g}/users/$count")), 1);
        assert_eq!(units(&format!("{g}/users/delta?$select=id")), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_lets_its_burst_through_then_paces_at_its_rate() {
        let budget = UnitBudget::new(10.0, 3.0).unwrap();
        let start = Instant::now();
        for _ in 0..3 {
            budget.spend(1).await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst");
        budget.spend(1).await;
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        budget.spend(3).await;
        assert_eq!(start.elapsed(), Duration::from_millis(400), "three units");
        // Idle time refills it, up to the burst.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let idle = Instant::now();
        for _ in 0..3 {
            budget.spend(1).await;
        }
        assert_eq!(idle.elapsed(), Duration::ZERO);
        assert!(UnitBudget::new(0.0, 1.0).is_none());
        assert!(UnitBudget::new(10.0, 0.5).is_none());
        assert!(UnitBudget::new(f64::NAN, 1.0).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_queue_in_order_at_the_rate() {
        let budget = std::sync::Arc::new(UnitBudget::new(100.0, 1.0).unwrap());
        let start = Instant::now();
        let waits = futures::future::join_all((0..5).map(|_| {
            let budget = std::sync::Arc::clone(&budget);
            async move {
                budget.spend(1).await;
                start.elapsed()
            }
        }))
        .await;
        assert_eq!(
            waits,
            [0, 10, 20, 30, 40].map(Duration::from_millis),
            "one every 10 ms, none at once"
        );
    }

    #[test]
    fn retry_after_fractions_round_up_to_the_millisecond() {
        let now = SystemTime::now();
        assert_eq!(
            parse_retry_after("2.128", now),
            Some(Duration::from_millis(2128))
        );
        assert_eq!(
            parse_retry_after("0.5", now),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            parse_retry_after("0.0004", now),
            Some(Duration::from_millis(1))
        );
        assert_eq!(
            parse_retry_after("1.0001", now),
            Some(Duration::from_millis(1001))
        );
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn retry_after_http_date_is_relative_to_the_injected_clock() {
        let now = epoch_plus(1_700_000_000);
        let date = httpdate::fmt_http_date(epoch_plus(1_700_000_012));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(12)));
        let past = httpdate::fmt_http_date(epoch_plus(1_699_999_000));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_is_capped_at_a_day_in_both_forms() {
        let now = epoch_plus(1_700_000_000);
        let day = Some(Duration::from_secs(86_400));
        assert_eq!(parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now), day);
        assert_eq!(parse_retry_after("1e300", now), day);
        assert_eq!(
            parse_retry_after("86399", now),
            Some(Duration::from_secs(86_399))
        );
    }

    #[test]
    fn backoff_ceiling_doubles_and_caps() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff_ceiling(0), Duration::from_secs(1));
        assert_eq!(policy.backoff_ceiling(1), Duration::from_secs(2));
        assert_eq!(policy.backoff_ceiling(4), Duration::from_secs(16));
        assert_eq!(policy.backoff_ceiling(5), Duration::from_secs(30));
        assert_eq!(policy.backoff_ceiling(40), Duration::from_secs(30));
        for retry in 0..8 {
            assert!(policy.backoff(retry) <= policy.backoff_ceiling(retry));
        }
    }

    #[test]
    fn policy_validation_rejects_nonsense() {
        assert!(RetryPolicy::default().validate().is_ok());
        assert!(RetryPolicy::default().max_retries(21).validate().is_err());
        assert!(
            RetryPolicy::default()
                .initial_backoff(Duration::ZERO)
                .validate()
                .is_err()
        );
        assert!(
            RetryPolicy::default()
                .initial_backoff(Duration::from_secs(60))
                .validate()
                .is_err()
        );
    }

    #[test]
    fn budget_stops_at_the_retry_count_and_at_the_total_wait() {
        let policy = RetryPolicy::default()
            .max_retries(3)
            .max_total_wait(Duration::from_secs(10));
        let mut budget = RetryBudget::default();
        let server = Some(Duration::from_secs(4));
        assert_eq!(budget.wait(&policy, server), Duration::from_secs(4));
        assert!(budget.spend(&policy, Duration::from_secs(4)));
        assert!(budget.spend(&policy, Duration::from_secs(4)));
        // 8 s spent: another 4 s would pass the 10 s cap.
        assert!(!budget.spend(&policy, Duration::from_secs(4)));
        assert!(budget.spend(&policy, Duration::from_secs(1)));
        // Three retries spent.
        assert!(!budget.spend(&policy, Duration::ZERO));
        assert!(budget.wait(&policy, None) <= policy.backoff_ceiling(3));
    }

    #[test]
    fn status_backoff_stays_between_the_floor_and_the_ceiling() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.floor(), DEFAULT_MIN_BACKOFF);
        for retry in 0..8 {
            for _ in 0..50 {
                let wait = policy.status_backoff(retry);
                assert!(wait >= Duration::from_secs(3), "{retry}: {wait:?}");
                assert!(
                    wait <= policy.backoff_ceiling(retry).max(Duration::from_secs(3)),
                    "{retry}: {wait:?}"
                );
            }
        }
        // The floor yields to a smaller largest backoff; zero turns it off.
        let quick = RetryPolicy::default()
            .initial_backoff(Duration::from_millis(20))
            .max_backoff(Duration::from_millis(200));
        assert_eq!(quick.floor(), Duration::from_millis(200));
        assert_eq!(quick.status_backoff(0), Duration::from_millis(200));
        let off = RetryPolicy::default().min_backoff(Duration::ZERO);
        assert!(off.status_backoff(0) <= Duration::from_secs(1));
        assert_eq!(
            RetryBudget::default().wait(&policy, Some(Duration::from_millis(5))),
            Duration::from_millis(5),
            "a Retry-After is taken as given"
        );
    }

    #[test]
    fn policy_caps_are_validated_at_a_day() {
        for policy in [
            RetryPolicy::default().max_backoff(Duration::MAX),
            RetryPolicy::default().max_total_wait(Duration::MAX),
            RetryPolicy::default().min_backoff(Duration::MAX),
            RetryPolicy::default().max_total_wait(RetryPolicy::MAX_WAIT + Duration::from_nanos(1)),
        ] {
            assert!(policy.validate().is_err(), "{policy:?}");
        }
        assert!(
            RetryPolicy::default()
                .max_backoff(RetryPolicy::MAX_WAIT)
                .max_total_wait(RetryPolicy::MAX_WAIT)
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn spending_huge_waits_gives_up_instead_of_overflowing() {
        // Not a policy `build` accepts; the budget must still not panic on it.
        let policy = RetryPolicy {
            max_retries: 20,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::MAX,
            max_total_wait: Duration::MAX,
            min_backoff: Duration::ZERO,
        };
        let mut budget = RetryBudget::default();
        assert!(budget.spend(&policy, Duration::MAX));
        assert!(
            !budget.spend(&policy, Duration::MAX),
            "no overflow, no retry"
        );
        assert!(!budget.spend(&policy, Duration::from_secs(1)));
        // The gate ignores a pause it cannot represent instead of panicking.
        ThrottleGate::default().pause_for(Duration::MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn a_unit_budget_slower_than_a_unit_a_day_is_refused_and_costs_never_overflow() {
        assert!(UnitBudget::new(1.0 / 86_401.0, 1.0).is_none());
        assert!(UnitBudget::new(1e-300, 1.0).is_none());
        let slowest = UnitBudget::new(1.0 / 86_400.0, 1.0).unwrap();
        let start = Instant::now();
        // Three units at a day each, one of them the burst: two days.
        slowest.spend(3).await;
        assert_eq!(start.elapsed(), Duration::from_secs(2 * 86_400));
    }

    #[tokio::test(start_paused = true)]
    async fn gate_holds_waiters_until_the_pause_ends_and_never_shortens() {
        let gate = ThrottleGate::default();
        let start = Instant::now();
        gate.wait().await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        gate.pause_until(start + Duration::from_secs(5));
        gate.pause_until(start + Duration::from_secs(2));
        gate.wait().await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }
}
