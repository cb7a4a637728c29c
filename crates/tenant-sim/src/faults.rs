//! Seeded faults on Graph requests: 500/503/504 answers, dropped connections, truncated
//! bodies and added latency, so clients' retry and error paths can be rehearsed.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::Error;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum FaultKind {
    /// 500 `generalException`.
    InternalServerError,
    /// 503 `serviceNotAvailable`.
    ServiceUnavailable,
    /// 504 `serviceNotAvailable` (gateway timeout).
    GatewayTimeout,
    /// The connection closes before any byte of the response: no status line, no head
    /// (over HTTP/1.1; an HTTP/2 stream is reset). The client's request fails without a
    /// status.
    DroppedConnection,
    /// The status line and head arrive, `Content-Length` promising the whole body, then
    /// half of the body, then the connection closes. The client gets a status, and the
    /// body read fails.
    TruncatedBody,
    /// The answer is correct but comes 50–500 ms late (on top of the fixed latency).
    ExtraLatency,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [Self; 6] = [
        Self::InternalServerError,
        Self::ServiceUnavailable,
        Self::GatewayTimeout,
        Self::DroppedConnection,
        Self::TruncatedBody,
        Self::ExtraLatency,
    ];
}

/// Fault settings: how often, which kinds, and a fixed latency added to every request.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSettings {
    rate: f64,
    kinds: Vec<FaultKind>,
    latency: Duration,
}

impl Default for FaultSettings {
    fn default() -> Self {
        Self {
            rate: 0.0,
            kinds: FaultKind::ALL.to_vec(),
            latency: Duration::ZERO,
        }
    }
}

impl FaultSettings {
    /// No faults, no latency.
    pub fn none() -> Self {
        Self::default()
    }

    /// Each Graph request fails with probability `rate` (0.0..=1.0), by a kind drawn
    /// evenly from [`FaultSettings::kinds`].
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `rate` is not within 0..=1.
    pub fn with_rate(mut self, rate: f64) -> Result<Self, Error> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(Error::InvalidConfig(format!(
                "fault rate must be within 0..=1, got {rate}"
            )));
        }
        self.rate = rate;
        Ok(self)
    }

    /// Only these kinds (all by default).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `kinds` is empty.
    pub fn with_kinds(mut self, kinds: &[FaultKind]) -> Result<Self, Error> {
        if kinds.is_empty() {
            return Err(Error::InvalidConfig(
                "at least one fault kind is needed".into(),
            ));
        }
        self.kinds = kinds.to_vec();
        Ok(self)
    }

    /// A fixed delay before every Graph answer.
    #[must_use]
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Probability of a fault per request.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The kinds drawn from.
    pub fn kinds(&self) -> &[FaultKind] {
        &self.kinds
    }

    /// The fixed latency.
    pub fn latency(&self) -> Duration {
        self.latency
    }
}

/// What to do to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    pub delay: Duration,
    pub fault: Option<FaultKind>,
}

#[derive(Debug)]
pub(crate) struct Faults {
    settings: FaultSettings,
    rng: StdRng,
}

impl Faults {
    pub(crate) fn new(settings: FaultSettings, seed: u64) -> Self {
        // A stream of its own, so that faults do not shift the directory's randomness.
        Self {
            settings,
            rng: StdRng::seed_from_u64(seed ^ 0x6661_756c_7473),
        }
    }

    pub(crate) fn set(&mut self, settings: FaultSettings) {
        self.settings = settings;
    }

    pub(crate) fn settings(&self) -> &FaultSettings {
        &self.settings
    }

    /// The next request's fate, from the seeded sequence.
    pub(crate) fn plan(&mut self) -> Plan {
        let mut plan = Plan {
            delay: self.settings.latency,
            fault: None,
        };
        if self.settings.rate > 0.0 && self.rng.random_bool(self.settings.rate) {
            let kind = self.settings.kinds[self.rng.random_range(0..self.settings.kinds.len())];
            if kind == FaultKind::ExtraLatency {
                plan.delay += Duration::from_millis(self.rng.random_range(50..=500));
            }
            plan.fault = Some(kind);
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_the_same_fault_sequence() {
        let settings = FaultSettings::none()
            .with_rate(0.3)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut a = Faults::new(settings.clone(), 42);
        let mut b = Faults::new(settings, 42);
        let plans_a: Vec<_> = (0..200).map(|_| a.plan()).collect();
        let plans_b: Vec<_> = (0..200).map(|_| b.plan()).collect();
        assert_eq!(plans_a, plans_b);
        let faulted = plans_a.iter().filter(|p| p.fault.is_some()).count();
        assert!(
            (30..=90).contains(&faulted),
            "about 30 % of 200, got {faulted}"
        );
        for kind in FaultKind::ALL {
            assert!(
                plans_a.iter().any(|p| p.fault == Some(kind)),
                "{kind:?} drawn"
            );
        }
    }

    #[test]
    fn rate_zero_never_faults_and_latency_is_always_added() {
        let mut faults = Faults::new(
            FaultSettings::none().with_latency(Duration::from_millis(7)),
            1,
        );
        for _ in 0..100 {
            assert_eq!(
                faults.plan(),
                Plan {
                    delay: Duration::from_millis(7),
                    fault: None
                }
            );
        }
    }

    #[test]
    fn settings_are_validated() {
        assert!(FaultSettings::none().with_rate(1.5).is_err());
        assert!(FaultSettings::none().with_rate(-0.1).is_err());
        assert!(FaultSettings::none().with_kinds(&[]).is_err());
        let only = FaultSettings::none()
            .with_kinds(&[FaultKind::GatewayTimeout])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(only.kinds(), &[FaultKind::GatewayTimeout]);
    }
}
