//! Retry policy, kept apart as in Vector: [`classify`] decides *whether* an outcome is retried, the
//! [`Backoff`] schedule decides *when*.

use std::time::Duration;

use rand::Rng;
use serde::Deserialize;

use crate::config::Problem;

/// Exponential backoff with full jitter (AWS architecture blog): the n-th retry waits a uniformly random
/// time in `[0, min(max, base * 2^n)]`, which spreads retries of many actions instead of synchronising
/// them. A target's own `Retry-After` is a floor: never retry sooner than the target asked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
}

impl Backoff {
    /// Rejects impossible schedules: a zero base never backs off, and `max < base` is a typo.
    pub fn try_new(base: Duration, max: Duration) -> Result<Self, String> {
        if base.is_zero() {
            return Err("retry base delay must be greater than zero".into());
        }
        if max < base {
            return Err(format!(
                "retry max delay ({max:?}) must be at least the base delay ({base:?})"
            ));
        }
        Ok(Self { base, max })
    }

    /// Upper bound of the wait before retry number `attempt` (1-based: the wait after the first failure).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The wait before retry `attempt`, jittered, and no shorter than `floor` (the target's `Retry-After`).
    pub fn delay(&self, attempt: u32, floor: Option<Duration>, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        let jittered = Duration::from_nanos(rng.random_range(0..=ceiling.as_nanos() as u64));
        match floor {
            Some(f) => jittered.max(f),
            None => jittered,
        }
    }
}

/// `[executor.retry]` settings; each connector may override `max_attempts`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    #[serde(with = "humantime_serde")]
    pub base_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// Connector calls per action before it is `failed` and dead-lettered.
    pub max_attempts: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            max_attempts: 8,
        }
    }
}

impl RetryConfig {
    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        if let Err(e) = Backoff::try_new(self.base_delay, self.max_delay) {
            problems.push(Problem::new(format!("{path}.base_delay"), e));
        }
        if self.max_attempts == 0 {
            problems.push(Problem::new(
                format!("{path}.max_attempts"),
                "must be at least 1",
            ));
        }
    }

    pub fn backoff(&self) -> Backoff {
        Backoff::try_new(self.base_delay, self.max_delay).unwrap_or(Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn impossible_schedules_are_rejected() {
        assert!(Backoff::try_new(Duration::ZERO, Duration::from_secs(1)).is_err());
        assert!(Backoff::try_new(Duration::from_secs(2), Duration::from_secs(1)).is_err());
    }

    #[test]
    fn ceiling_doubles_until_the_cap() {
        let b = Backoff::try_new(Duration::from_millis(100), Duration::from_secs(1)).unwrap();
        assert_eq!(b.ceiling(1), Duration::from_millis(100));
        assert_eq!(b.ceiling(2), Duration::from_millis(200));
        assert_eq!(b.ceiling(4), Duration::from_millis(800));
        assert_eq!(b.ceiling(5), Duration::from_secs(1));
        assert_eq!(b.ceiling(200), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_bounds_and_respects_retry_after() {
        let b = Backoff::try_new(Duration::from_millis(100), Duration::from_secs(10)).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut distinct = std::collections::HashSet::new();
        for attempt in 1..=6 {
            for _ in 0..100 {
                let d = b.delay(attempt, None, &mut rng);
                assert!(d <= b.ceiling(attempt));
                distinct.insert(d);
                let floored = b.delay(attempt, Some(Duration::from_secs(2)), &mut rng);
                assert!(floored >= Duration::from_secs(2));
            }
        }
        assert!(distinct.len() > 500, "full jitter spreads delays");
    }
}
