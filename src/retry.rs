//! The one backoff schedule, kept apart from the retry *decision* as in Vector: connectors map a
//! target's answer to an `Outcome` (whether to retry), and [`Backoff`] decides *when*. Every retry
//! loop in deprovd uses it: the executor's durable retries and notifications (jittered, `Retry-After`
//! as a floor), and the reconnect loops through [`Attempts`] with the presets below.

use std::time::Duration;

use rand::Rng;
use serde::Deserialize;

use crate::config::Problem;

/// Exponential backoff with full jitter (AWS architecture blog): the n-th retry waits a uniformly random
/// time in `[0, min(max, base * 2^n)]`, which spreads retries of many actions instead of synchronising
/// them. A target's own `Retry-After` is a floor: never retry sooner than the target asked — up to
/// `retry_after_cap`, because the header is the remote side's to choose, and an unbounded one
/// (`Retry-After: 99999999`) would park a notification worker for years or push an action's next
/// attempt out of reach.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    /// Longest `Retry-After` honoured; a longer one is cut to this.
    retry_after_cap: Duration,
}

/// An impossible schedule, refused by [`Backoff::try_new`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackoffError {
    #[error("retry base delay must be greater than zero")]
    ZeroBase,
    #[error("retry max delay ({max:?}) must be at least the base delay ({base:?})")]
    MaxBelowBase { base: Duration, max: Duration },
}

impl Backoff {
    /// Rejects impossible schedules: a zero base never backs off, and `max < base` is a typo.
    pub fn try_new(base: Duration, max: Duration) -> Result<Self, BackoffError> {
        if base.is_zero() {
            return Err(BackoffError::ZeroBase);
        }
        if max < base {
            return Err(BackoffError::MaxBelowBase { base, max });
        }
        Ok(Self {
            base,
            max,
            retry_after_cap: max,
        })
    }

    /// The same schedule honouring `Retry-After` up to `cap` (default: the max delay).
    pub fn with_retry_after_cap(self, cap: Duration) -> Self {
        Self {
            retry_after_cap: cap,
            ..self
        }
    }

    /// Upper bound of the wait before retry number `attempt` (1-based: the wait after the first failure).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The wait before retry `attempt`, jittered, and no shorter than `floor` (the target's
    /// `Retry-After`) cut to the cap: never longer than `max(max delay, cap)`.
    pub fn delay(&self, attempt: u32, floor: Option<Duration>, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        let jittered = Duration::from_nanos(rng.random_range(0..=ceiling.as_nanos() as u64));
        match floor {
            Some(f) => jittered.max(f.min(self.retry_after_cap)),
            None => jittered,
        }
    }
}

impl Backoff {
    /// A schedule fixed at compile time (the presets below); an impossible one fails the build.
    pub const fn preset(base: Duration, max: Duration) -> Self {
        assert!(!base.is_zero() && max.as_nanos() >= base.as_nanos());
        Self {
            base,
            max,
            retry_after_cap: max,
        }
    }
}

/// Reconnecting to a local dependency that is down (the state store at startup, the ledger under the
/// executor, Kafka produce of a dead letter): 100 ms doubling to 5 s.
pub(crate) const RECONNECT: Backoff =
    Backoff::preset(Duration::from_millis(100), Duration::from_secs(5));
/// The audit mirror's Kafka round when it fails: 200 ms doubling to 10 s.
pub(crate) const MIRROR: Backoff =
    Backoff::preset(Duration::from_millis(200), Duration::from_secs(10));
/// Re-appending one audit record the store refused: 50 ms doubling to 200 ms (three tries).
pub(crate) const AUDIT_WRITE: Backoff =
    Backoff::preset(Duration::from_millis(50), Duration::from_millis(200));
/// Waiting for another decision's claim on a held action: 20 ms doubling to 160 ms.
pub(crate) const DECISION_CLAIM: Backoff =
    Backoff::preset(Duration::from_millis(20), Duration::from_millis(160));

/// Consecutive failures of one retried step and the wait each earns: the [`Backoff::ceiling`] of the
/// failure count, without jitter — these loops retry one local dependency from one task, so there is
/// no herd to spread. [`Attempts::reset`] after a success.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempts {
    schedule: Backoff,
    failures: u32,
}

impl Attempts {
    pub(crate) const fn new(schedule: Backoff) -> Self {
        Self {
            schedule,
            failures: 0,
        }
    }

    /// Count one more failure; the wait before the next try.
    pub(crate) fn next_wait(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.schedule.ceiling(self.failures)
    }

    pub(crate) fn reset(&mut self) {
        self.failures = 0;
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
    /// Longest `Retry-After` (or rate-limit reset) a target may impose before the next attempt; a
    /// longer one is cut to this. The executor reschedules the action in the ledger, so waits
    /// longer than `max_delay` are fine there (a rate-limit window of an hour is common). Notification
    /// workers wait in memory, so they never wait longer than `max_delay` whatever this says.
    #[serde(with = "humantime_serde")]
    pub max_retry_after: Duration,
}

/// Longest `max_retry_after` accepted: a week is past any real rate-limit window.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            max_attempts: 8,
            max_retry_after: Duration::from_secs(3600),
        }
    }
}

impl RetryConfig {
    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        if let Err(e) = Backoff::try_new(self.base_delay, self.max_delay) {
            problems.push(Problem::new(format!("{path}.base_delay"), e.to_string()));
        }
        if self.max_attempts == 0 {
            problems.push(Problem::new(
                format!("{path}.max_attempts"),
                "must be at least 1",
            ));
        }
        if self.max_retry_after < Duration::from_secs(1) || self.max_retry_after > MAX_RETRY_AFTER {
            problems.push(Problem::new(
                format!("{path}.max_retry_after"),
                format!(
                    "must be between 1s and 7d (got {:?}): a target's Retry-After is honoured up to it",
                    self.max_retry_after
                ),
            ));
        }
    }

    /// The schedule for retries that are rescheduled durably (the executor): `Retry-After` honoured
    /// up to `max_retry_after`.
    pub fn backoff(&self) -> Backoff {
        Backoff::try_new(self.base_delay, self.max_delay)
            .unwrap_or(Backoff {
                base: Duration::from_secs(1),
                max: Duration::from_secs(300),
                retry_after_cap: Duration::from_secs(300),
            })
            .with_retry_after_cap(self.max_retry_after.min(MAX_RETRY_AFTER))
    }

    /// The schedule for retries waited out in memory (notification workers): `Retry-After` honoured
    /// up to the smaller of `max_delay` and `max_retry_after`, so one hostile receiver cannot park a
    /// worker for longer than the longest backoff.
    pub fn in_memory_backoff(&self) -> Backoff {
        let b = self.backoff();
        b.with_retry_after_cap(b.retry_after_cap.min(b.max))
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn attempts_double_to_the_preset_ceiling_and_reset() {
        let mut a = Attempts::new(RECONNECT);
        let waits: Vec<_> = (0..8).map(|_| a.next_wait().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        a.reset();
        assert_eq!(a.next_wait(), Duration::from_millis(100));
    }

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

    #[test]
    fn a_huge_retry_after_is_cut_to_the_cap() {
        let cfg = RetryConfig::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let huge = Some(Duration::from_secs(99_999_999));
        // Durable (executor): honoured up to max_retry_after, which may exceed max_delay.
        let durable = cfg.backoff();
        for attempt in 1..=8 {
            assert_eq!(
                durable.delay(attempt, huge, &mut rng),
                Duration::from_secs(3600)
            );
        }
        // A Retry-After under the cap is still a floor.
        assert!(
            durable.delay(1, Some(Duration::from_secs(1200)), &mut rng)
                >= Duration::from_secs(1200)
        );
        // In memory (notifications): never longer than max_delay.
        let in_memory = cfg.in_memory_backoff();
        for attempt in 1..=8 {
            assert_eq!(
                in_memory.delay(attempt, huge, &mut rng),
                Duration::from_secs(300)
            );
        }
        let short = RetryConfig {
            max_retry_after: Duration::from_secs(30),
            ..RetryConfig::default()
        };
        assert!(short.in_memory_backoff().delay(1, huge, &mut rng) <= Duration::from_secs(30));
        // u64::MAX seconds must not overflow anything downstream either.
        let d = durable.delay(3, Some(Duration::from_secs(u64::MAX)), &mut rng);
        assert_eq!(d, Duration::from_secs(3600));
        assert!(chrono::Duration::from_std(d).is_ok());
    }

    #[test]
    fn max_retry_after_must_be_sane() {
        for bad in [Duration::ZERO, Duration::from_secs(8 * 24 * 3600)] {
            let cfg = RetryConfig {
                max_retry_after: bad,
                ..RetryConfig::default()
            };
            let mut problems = Vec::new();
            cfg.validate("executor.retry", &mut problems);
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].path, "executor.retry.max_retry_after");
        }
        let mut problems = Vec::new();
        RetryConfig::default().validate("executor.retry", &mut problems);
        assert!(problems.is_empty());
    }
}
