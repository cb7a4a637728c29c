//! A token bucket per app+tenant, in Graph's resource units ([spec 10a]): each request
//! costs its endpoint's units; when the bucket is short, the answer is 429 with a
//! `Retry-After` of the (fractional) seconds until it holds enough.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::Error;

/// Throttle settings: how fast the bucket refills and how much it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThrottleSettings {
    units_per_second: f64,
    burst: f64,
}

impl ThrottleSettings {
    /// A bucket refilling `units_per_second` resource units per second and holding at
    /// most `burst` units (it starts full).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] unless both are finite and positive.
    pub fn new(units_per_second: f64, burst: f64) -> Result<Self, Error> {
        if !(units_per_second.is_finite()
            && units_per_second > 0.0
            && burst.is_finite()
            && burst >= 1.0)
        {
            return Err(Error::InvalidConfig(format!(
                "throttle needs a positive rate and a burst of at least 1 (got {units_per_second}/s, burst {burst})"
            )));
        }
        Ok(Self {
            units_per_second,
            burst,
        })
    }

    /// Resource units added per second.
    pub fn units_per_second(&self) -> f64 {
        self.units_per_second
    }

    /// Largest number of units the bucket holds.
    pub fn burst(&self) -> f64 {
        self.burst
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The buckets, one per app+tenant key.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    settings: Option<ThrottleSettings>,
    buckets: HashMap<String, Bucket>,
}

impl Throttle {
    pub(crate) fn new(settings: Option<ThrottleSettings>) -> Self {
        Self {
            settings,
            buckets: HashMap::new(),
        }
    }

    /// New settings; buckets start full again.
    pub(crate) fn set(&mut self, settings: Option<ThrottleSettings>) {
        self.settings = settings;
        self.buckets.clear();
    }

    pub(crate) fn settings(&self) -> Option<ThrottleSettings> {
        self.settings
    }

    /// Takes `cost` units from `key`'s bucket and returns the share of the bucket now
    /// used (0.0 when unthrottled), or says how long until it could. A refused request
    /// takes nothing, so a client that waits `Retry-After` gets through.
    pub(crate) fn take(&mut self, key: &str, cost: u32, now: Instant) -> Result<f64, Duration> {
        let Some(settings) = self.settings else {
            return Ok(0.0);
        };
        let bucket = self.buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: settings.burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * settings.units_per_second).min(settings.burst);
        bucket.last = now;
        let cost = f64::from(cost).min(settings.burst);
        if bucket.tokens >= cost {
            bucket.tokens -= cost;
            Ok(1.0 - bucket.tokens / settings.burst)
        } else {
            // A tiny rate can mean a wait beyond `Duration`'s range: saturate, never panic.
            Err(
                Duration::try_from_secs_f64((cost - bucket.tokens) / settings.units_per_second)
                    .unwrap_or(Duration::MAX),
            )
        }
    }
}

/// `Retry-After` in seconds with up to three decimals, like Graph's `2.128`; never "0"
/// (rounded up to the millisecond).
pub(crate) fn format_retry_after(wait: Duration) -> String {
    let millis = wait.as_micros().div_ceil(1000).max(1);
    let text = format!("{}.{:03}", millis / 1000, millis % 1000);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_validated() {
        assert!(ThrottleSettings::new(10.0, 5.0).is_ok());
        assert!(ThrottleSettings::new(0.0, 5.0).is_err());
        assert!(ThrottleSettings::new(1.0, 0.5).is_err());
        assert!(ThrottleSettings::new(f64::NAN, 5.0).is_err());
    }

    #[test]
    fn bucket_refuses_when_empty_and_says_when_it_refills() {
        let start = Instant::now();
        let mut throttle = Throttle::new(Some(
            ThrottleSettings::new(2.0, 4.0).unwrap_or_else(|e| panic!("{e}")),
        ));
        assert_eq!(throttle.take("app/tenant", 2, start), Ok(0.5));
        assert_eq!(throttle.take("app/tenant", 2, start), Ok(1.0));
        let wait = throttle.take("app/tenant", 2, start).err();
        assert_eq!(wait, Some(Duration::from_secs(1)));
        // Another app+tenant has its own bucket.
        assert!(throttle.take("other/tenant", 2, start).is_ok());
        // Half a second later one unit is back: still short by one.
        let wait = throttle
            .take("app/tenant", 2, start + Duration::from_millis(500))
            .err();
        assert_eq!(wait, Some(Duration::from_millis(500)));
        assert!(
            throttle
                .take("app/tenant", 2, start + Duration::from_secs(1))
                .is_ok()
        );
    }

    #[test]
    fn a_tiny_refill_rate_gives_a_long_wait_instead_of_a_panic() {
        // The control API accepts any positive rate; 1e-300 units/s means a wait longer
        // than `Duration` can hold, which `from_secs_f64` would panic on.
        let start = Instant::now();
        let mut throttle = Throttle::new(Some(
            ThrottleSettings::new(1e-300, 1.0).unwrap_or_else(|e| panic!("{e}")),
        ));
        assert_eq!(throttle.take("k", 1, start), Ok(1.0));
        assert_eq!(throttle.take("k", 1, start), Err(Duration::MAX));
        assert!(!format_retry_after(Duration::MAX).is_empty());
    }

    #[test]
    fn no_settings_means_no_throttling() {
        let mut throttle = Throttle::new(None);
        for _ in 0..1000 {
            assert!(throttle.take("k", 5, Instant::now()).is_ok());
        }
    }

    #[test]
    fn retry_after_is_fractional_seconds() {
        assert_eq!(format_retry_after(Duration::from_millis(2128)), "2.128");
        assert_eq!(format_retry_after(Duration::from_secs(3)), "3");
        assert_eq!(format_retry_after(Duration::from_micros(1)), "0.001");
        assert_eq!(format_retry_after(Duration::from_millis(500)), "0.5");
    }
}
