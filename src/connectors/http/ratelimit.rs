//! Proactive rate limiting: slow down *before* the target answers 429.
//!
//! Targets announce their budget on every response (Okta `X-Rate-Limit-Remaining` / `X-Rate-Limit-Reset`,
//! GitHub `x-ratelimit-remaining` / `x-ratelimit-reset`, CrowdStrike `X-RateLimit-Remaining` /
//! `X-RateLimit-RetryAfter`, the IETF draft's `RateLimit-Remaining` / `RateLimit-Reset`). A [`RateGate`] per
//! connector *instance* remembers the last announcement and is consulted before every request:
//!
//! - budget exhausted (`remaining` 0, or a 429 with a reset time) → every request waits until the reset;
//! - budget at or below the spec's floor (`min_remaining`) → requests are paced, the remaining budget spread
//!   evenly over the time left until the reset;
//! - otherwise → no wait.
//!
//! Requests admitted since the last response are counted against the budget, so concurrent actions on one
//! instance share it instead of each believing the last number. The gate is per instance: a throttled target
//! never delays another connector. A wait longer than `max_wait` is not slept inside the operation (it would
//! hold a concurrency permit for minutes): the operation ends as `retry` after the reset, and the executor's
//! durable retry takes over.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName};
use serde::Deserialize;
use tokio::time::Instant;

use crate::config::Problem;

/// Header names read when a spec names none (case-insensitive, as all HTTP header names).
pub(crate) const DEFAULT_REMAINING_HEADERS: [&str; 3] = [
    "x-rate-limit-remaining",
    "x-ratelimit-remaining",
    "ratelimit-remaining",
];
/// Reset headers: epoch seconds when the value is large (Okta, GitHub, CrowdStrike), else seconds from now.
pub(crate) const DEFAULT_RESET_HEADERS: [&str; 4] = [
    "x-rate-limit-reset",
    "x-ratelimit-reset",
    "x-ratelimit-retryafter",
    "ratelimit-reset",
];
/// Values above this are Unix timestamps, below it delta-seconds (no window is 30 years long).
const EPOCH_THRESHOLD: f64 = 1_000_000_000.0;
/// A reset this far in the future is not believed (a clock skew or a misread header).
const MAX_RESET: Duration = Duration::from_secs(24 * 3600);

/// The spec's optional `rate_limit:` section.
///
/// ```yaml
/// rate_limit:
///   remaining_headers: [X-Rate-Limit-Remaining]
///   reset_headers: [X-Rate-Limit-Reset]
///   min_remaining: 5     # pace once the budget is this low (0: only wait when exhausted)
///   max_wait: 30s        # longer waits end the operation as `retry` instead
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateLimitSpec {
    #[serde(default)]
    pub remaining_headers: Option<Vec<String>>,
    #[serde(default)]
    pub reset_headers: Option<Vec<String>>,
    #[serde(default = "default_min_remaining")]
    pub min_remaining: u64,
    #[serde(default = "default_max_wait", with = "humantime_serde")]
    pub max_wait: Duration,
    /// `false` turns proactive limiting off (429 handling stays).
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn default_min_remaining() -> u64 {
    2
}
fn default_max_wait() -> Duration {
    Duration::from_secs(30)
}
fn yes() -> bool {
    true
}

impl Default for RateLimitSpec {
    fn default() -> Self {
        RateLimitSpec {
            remaining_headers: None,
            reset_headers: None,
            min_remaining: default_min_remaining(),
            max_wait: default_max_wait(),
            enabled: true,
        }
    }
}

/// The compiled policy (header names parsed once).
#[derive(Debug, Clone)]
pub struct RatePolicy {
    pub remaining: Vec<HeaderName>,
    pub reset: Vec<HeaderName>,
    pub min_remaining: u64,
    pub max_wait: Duration,
    pub enabled: bool,
}

impl Default for RatePolicy {
    fn default() -> Self {
        RateLimitSpec::default()
            .compile("rate_limit", &mut Vec::new())
            .unwrap_or(RatePolicy {
                remaining: Vec::new(),
                reset: Vec::new(),
                min_remaining: 0,
                max_wait: default_max_wait(),
                enabled: false,
            })
    }
}

impl RateLimitSpec {
    /// Parse the header names; problems are reported under `path`.
    pub(crate) fn compile(&self, path: &str, problems: &mut Vec<Problem>) -> Option<RatePolicy> {
        let before = problems.len();
        let mut names = |key: &str, given: &Option<Vec<String>>, defaults: &[&str]| {
            let list: Vec<String> = match given {
                Some(l) => l.clone(),
                None => defaults.iter().map(|s| s.to_string()).collect(),
            };
            let mut out = Vec::new();
            for (i, n) in list.iter().enumerate() {
                match HeaderName::from_bytes(n.trim().to_ascii_lowercase().as_bytes()) {
                    Ok(h) => out.push(h),
                    Err(_) => problems.push(Problem::new(
                        format!("{path}.{key}[{i}]"),
                        format!("`{n}` is not a header name"),
                    )),
                }
            }
            out
        };
        let remaining = names(
            "remaining_headers",
            &self.remaining_headers,
            &DEFAULT_REMAINING_HEADERS,
        );
        let reset = names("reset_headers", &self.reset_headers, &DEFAULT_RESET_HEADERS);
        if self.max_wait > Duration::from_secs(300) {
            problems.push(Problem::new(
                format!("{path}.max_wait"),
                "must be at most 5m (a longer wait belongs to the executor's durable retry)",
            ));
        }
        (problems.len() == before).then(|| RatePolicy {
            remaining,
            reset,
            min_remaining: self.min_remaining,
            max_wait: self.max_wait,
            enabled: self.enabled,
        })
    }
}

/// What the last responses said, minus what was spent since.
#[derive(Debug, Default)]
struct State {
    /// Requests the target will still accept before `reset_at`.
    remaining: Option<u64>,
    reset_at: Option<Instant>,
    /// While pacing: the earliest time the next request may leave.
    next_slot: Option<Instant>,
}

/// One instance's view of its target's budget. See the module docs.
#[derive(Debug)]
pub(crate) struct RateGate {
    policy: RatePolicy,
    state: Mutex<State>,
}

/// The gate's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Send after waiting this long (zero: now).
    After(Duration),
    /// The wait is longer than `max_wait`: give up this attempt and retry after this long.
    TooLong(Duration),
}

impl RateGate {
    pub(crate) fn new(policy: RatePolicy) -> Self {
        RateGate {
            policy,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserve the next request's place: how long it must wait first. Counts it against the budget.
    pub(crate) fn admit(&self, now: Instant) -> Admission {
        if !self.policy.enabled {
            return Admission::After(Duration::ZERO);
        }
        let mut s = self.state();
        if s.reset_at.is_some_and(|r| now >= r) {
            *s = State::default(); // a new window: the next response will say how much it holds
        }
        let (Some(remaining), Some(reset_at)) = (s.remaining, s.reset_at) else {
            return Admission::After(Duration::ZERO);
        };
        let to_reset = reset_at - now;
        let wait = if remaining == 0 {
            to_reset
        } else {
            s.remaining = Some(remaining - 1);
            if remaining > self.policy.min_remaining {
                Duration::ZERO
            } else {
                // Spread what is left evenly over the rest of the window.
                let interval = to_reset / u32::try_from(remaining).unwrap_or(u32::MAX);
                let at = s.next_slot.map_or(now, |n| n.max(now));
                s.next_slot = Some(at + interval);
                at - now
            }
        };
        if wait > self.policy.max_wait {
            Admission::TooLong(wait)
        } else {
            Admission::After(wait)
        }
    }

    #[cfg(test)]
    /// Wait as [`RateGate::admit`] says; `Err(after)` when the wait is too long to sleep here.
    pub(crate) async fn acquire(&self) -> Result<(), Duration> {
        match self.admit(Instant::now()) {
            Admission::After(d) if d.is_zero() => Ok(()),
            Admission::After(d) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            Admission::TooLong(d) => Err(d),
        }
    }

    /// Learn from a response's headers. `wall` converts epoch-second resets.
    pub(crate) fn observe(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        now: Instant,
        wall: SystemTime,
    ) {
        if !self.policy.enabled {
            return;
        }
        let remaining = first_number(headers, &self.policy.remaining).map(|v| v.max(0.0) as u64);
        let reset = first_number(headers, &self.policy.reset).and_then(|v| reset_in(v, wall));
        // A 429 with a reset time but no remaining count still means: nothing left until then.
        let remaining = match remaining {
            None if status == StatusCode::TOO_MANY_REQUESTS && reset.is_some() => Some(0),
            r => r,
        };
        let (Some(remaining), Some(reset)) = (remaining, reset) else {
            return;
        };
        let reset_at = now + reset;
        let mut s = self.state();
        let same_window = s
            .reset_at
            .is_some_and(|old| reset_at <= old + Duration::from_secs(1));
        if same_window {
            // Responses to concurrent requests arrive in any order: within one window the budget only
            // shrinks, and our own count of requests sent since may already be lower.
            s.remaining = Some(s.remaining.map_or(remaining, |r| r.min(remaining)));
        } else {
            s.remaining = Some(remaining);
            s.reset_at = Some(reset_at);
            s.next_slot = None;
        }
    }
}

fn first_number(headers: &HeaderMap, names: &[HeaderName]) -> Option<f64> {
    names.iter().find_map(|n| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite())
    })
}

/// Time until the reset a header announced (epoch seconds or delta seconds); a past reset is zero.
fn reset_in(value: f64, wall: SystemTime) -> Option<Duration> {
    let d = if value >= EPOCH_THRESHOLD {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(value);
        at.duration_since(wall).unwrap_or(Duration::ZERO)
    } else {
        Duration::from_secs_f64(value.max(0.0))
    };
    (d <= MAX_RESET).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn gate(min_remaining: u64) -> RateGate {
        gate_of(RateLimitSpec {
            min_remaining,
            ..RateLimitSpec::default()
        })
    }

    /// The gate of a spec that compiles without problems.
    fn gate_of(spec: RateLimitSpec) -> RateGate {
        RateGate::new(spec.compile("rate_limit", &mut Vec::new()).expect("policy"))
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    /// A 200 carrying `pairs`, seen at `now`.
    fn observe_ok(g: &RateGate, now: Instant, pairs: &[(&'static str, &str)]) {
        g.observe(StatusCode::OK, &headers(pairs), now, SystemTime::now());
    }

    /// What `g` answers after a 200 whose default-named headers announce an exhausted budget
    /// (reset in 9 s).
    fn admit_after_default_headers(g: &RateGate, now: Instant) -> Admission {
        observe_ok(
            g,
            now,
            &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "9")],
        );
        g.admit(now)
    }

    #[tokio::test(start_paused = true)]
    async fn exhausted_budget_waits_for_the_reset_announced_in_epoch_seconds() {
        let g = gate(0);
        let wall = SystemTime::now();
        let reset_epoch = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 7;
        g.observe(
            StatusCode::OK,
            &headers(&[
                ("X-Rate-Limit-Remaining", "0"),
                ("X-Rate-Limit-Reset", &reset_epoch.to_string()),
            ]),
            Instant::now(),
            wall,
        );
        let start = Instant::now();
        g.acquire().await.expect("within max_wait");
        let waited = start.elapsed();
        // Epoch seconds are whole: the wait ends at the announced second, within the sub-second of `wall`.
        assert!(
            waited > Duration::from_secs(6) && waited <= Duration::from_secs(7),
            "{waited:?}"
        );
        // The window is over: no further waiting until a response says otherwise.
        let again = Instant::now();
        g.acquire().await.expect("open");
        assert_eq!(again.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn plenty_of_budget_never_waits_and_each_request_is_counted() {
        let g = gate(2);
        let now = Instant::now();
        observe_ok(
            &g,
            now,
            &[("x-ratelimit-remaining", "4"), ("x-ratelimit-reset", "60")],
        );
        // 4 → 3, 3 → 2: above the floor, no wait.
        assert_eq!(g.admit(now), Admission::After(Duration::ZERO));
        assert_eq!(g.admit(now), Admission::After(Duration::ZERO));
        // 2 left (at the floor): paced over the 60 s left, 30 s apart; the budget is then spent.
        assert_eq!(g.admit(now), Admission::After(Duration::ZERO));
        assert_eq!(g.admit(now), Admission::After(Duration::from_secs(30)));
        assert_eq!(g.admit(now), Admission::TooLong(Duration::from_secs(60)));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_share_one_budget() {
        let g = std::sync::Arc::new(gate(0));
        let now = Instant::now();
        observe_ok(
            &g,
            now,
            &[
                ("x-rate-limit-remaining", "2"),
                ("x-rate-limit-reset", "10"),
            ],
        );
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let g = g.clone();
            tasks.push(tokio::spawn(async move {
                let t = Instant::now();
                g.acquire().await.expect("within max_wait");
                t.elapsed()
            }));
        }
        let mut waits = Vec::new();
        for t in tasks {
            waits.push(t.await.expect("task"));
        }
        waits.sort();
        assert_eq!(
            waits,
            [
                Duration::ZERO,
                Duration::ZERO,
                Duration::from_secs(10),
                Duration::from_secs(10)
            ],
            "two fit in the budget, the others wait for the reset"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_response_from_the_same_window_cannot_raise_the_budget() {
        let g = gate(0);
        let now = Instant::now();
        let wall = SystemTime::now();
        let h = |rem: &str| headers(&[("x-ratelimit-remaining", rem), ("x-ratelimit-reset", "20")]);
        g.observe(StatusCode::OK, &h("0"), now, wall);
        g.observe(StatusCode::OK, &h("5"), now, wall);
        assert_eq!(g.admit(now), Admission::After(Duration::from_secs(20)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_with_only_a_reset_header_closes_the_gate_until_then() {
        let g = gate(0);
        let now = Instant::now();
        g.observe(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("X-RateLimit-RetryAfter", "5")]),
            now,
            SystemTime::now(),
        );
        assert_eq!(g.admit(now), Admission::After(Duration::from_secs(5)));
        assert_eq!(
            g.admit(now + Duration::from_secs(5)),
            Admission::After(Duration::ZERO)
        );
    }

    #[test]
    fn configured_header_names_replace_the_defaults_and_bad_names_are_reported() {
        let spec: RateLimitSpec = yaml_serde::from_str(
            "remaining_headers: [X-Budget-Left]\nreset_headers: ['bad name']\nmax_wait: 10m\n",
        )
        .expect("parses");
        let mut problems = Vec::new();
        assert!(spec.compile("rate_limit", &mut problems).is_none());
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["rate_limit.reset_headers[0]", "rate_limit.max_wait"]
        );

        let spec: RateLimitSpec = yaml_serde::from_str(
            "remaining_headers: [X-Budget-Left]\nreset_headers: [X-Budget-Reset]\n",
        )
        .expect("parses");
        let g = gate_of(spec);
        let now = Instant::now();
        // The default names are not read any more …
        assert_eq!(
            admit_after_default_headers(&g, now),
            Admission::After(Duration::ZERO)
        );
        // … the configured ones are.
        observe_ok(&g, now, &[("x-budget-left", "0"), ("x-budget-reset", "9")]);
        assert_eq!(g.admit(now), Admission::After(Duration::from_secs(9)));
    }

    #[test]
    fn disabled_gate_never_waits() {
        let spec = RateLimitSpec {
            enabled: false,
            ..RateLimitSpec::default()
        };
        assert_eq!(
            admit_after_default_headers(&gate_of(spec), Instant::now()),
            Admission::After(Duration::ZERO)
        );
    }
}
