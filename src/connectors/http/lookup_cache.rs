//! A short-lived cache of `lookup` results (subject → the target's id), per connector instance.
//!
//! Containing one user runs several operations on one target (disable, revoke sessions, remove groups),
//! often at once; each needs the subject resolved. Without a cache every one of them asks the target
//! again, spending its rate budget in the moment it matters most. Entries are kept briefly (`ttl`, default
//! 60 s): long enough for one containment, short enough that a renamed or recreated account is seen soon.
//! "Not found" is kept for less (`not_found_ttl`), so a user created right after an alert is found. Lookups
//! of one subject are single-flight: concurrent operations wait for the first lookup instead of repeating
//! it. An operation that gets a 404 with a cached id drops the entry and runs once more with a fresh lookup.
//! The cache is bounded (`max_entries`); a full cache evicts expired entries, then the oldest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;

use crate::config::Problem;

/// `[connectors.<name>.lookup_cache]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupCacheConfig {
    /// How long a resolved subject is reused. `0s` turns the cache off.
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// How long "no such user here" is reused.
    #[serde(default = "default_not_found_ttl", with = "humantime_serde")]
    pub not_found_ttl: Duration,
    /// Subjects kept at most.
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
}

fn default_ttl() -> Duration {
    Duration::from_secs(60)
}
fn default_not_found_ttl() -> Duration {
    Duration::from_secs(10)
}
fn default_max_entries() -> usize {
    10_000
}

impl Default for LookupCacheConfig {
    fn default() -> Self {
        LookupCacheConfig {
            ttl: default_ttl(),
            not_found_ttl: default_not_found_ttl(),
            max_entries: default_max_entries(),
        }
    }
}

impl LookupCacheConfig {
    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        if self.ttl > Duration::from_secs(3600) {
            problems.push(Problem::new(
                format!("{path}.ttl"),
                "must be at most 1h: a stale id could act on a recreated account",
            ));
        }
        if self.not_found_ttl > self.ttl {
            problems.push(Problem::new(
                format!("{path}.not_found_ttl"),
                "must not be longer than ttl",
            ));
        }
        if !(1..=1_000_000).contains(&self.max_entries) {
            problems.push(Problem::new(
                format!("{path}.max_entries"),
                "must be between 1 and 1000000",
            ));
        }
    }
}

/// A cached lookup result.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cached {
    /// What `lookup` recorded (`{ "id": … }`).
    Found(Value),
    NotFound,
}

/// One subject's slot; its async lock makes lookups of that subject single-flight.
pub(crate) type Slot = Arc<tokio::sync::Mutex<Option<(Instant, Cached)>>>;

#[derive(Debug)]
pub(crate) struct LookupCache {
    cfg: LookupCacheConfig,
    slots: Mutex<HashMap<String, (Instant, Slot)>>,
}

impl LookupCache {
    pub(crate) fn new(cfg: LookupCacheConfig) -> Self {
        LookupCache {
            cfg,
            slots: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        !self.cfg.ttl.is_zero()
    }

    /// Whether a value stored at `at` may still be used at `now`.
    pub(crate) fn fresh(&self, at: Instant, value: &Cached, now: Instant) -> bool {
        let ttl = match value {
            Cached::Found(_) => self.cfg.ttl,
            Cached::NotFound => self.cfg.not_found_ttl,
        };
        now.saturating_duration_since(at) < ttl
    }

    /// The slot of `subject`, created if absent (evicting when full).
    pub(crate) fn slot(&self, subject: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, s)) = slots.get(subject) {
            return s.clone();
        }
        if slots.len() >= self.cfg.max_entries {
            self.evict(&mut slots);
        }
        let slot: Slot = Arc::new(tokio::sync::Mutex::new(None));
        slots.insert(subject.to_string(), (Instant::now(), slot.clone()));
        slot
    }

    /// Forget `subject` (its id turned out stale).
    pub(crate) fn invalidate(&self, subject: &str) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.remove(subject);
    }

    /// Drop expired or empty slots nobody is using; if that is not enough, the oldest unused ones.
    fn evict(&self, slots: &mut HashMap<String, (Instant, Slot)>) {
        let now = Instant::now();
        slots.retain(|_, (_, slot)| {
            if Arc::strong_count(slot) > 1 {
                return true; // someone holds it and is about to use it
            }
            match slot.try_lock() {
                Ok(v) => v.as_ref().is_some_and(|(at, c)| self.fresh(*at, c, now)),
                Err(_) => true, // a lookup is running on it
            }
        });
        if slots.len() < self.cfg.max_entries {
            return;
        }
        let mut by_age: Vec<(Instant, String)> = slots
            .iter()
            .filter(|(_, (_, s))| Arc::strong_count(s) == 1)
            .map(|(k, (t, _))| (*t, k.clone()))
            .collect();
        by_age.sort();
        let excess = slots.len() + 1 - self.cfg.max_entries;
        for (_, k) in by_age.into_iter().take(excess) {
            slots.remove(&k);
        }
    }

    #[cfg(test)]
    /// Subjects held (for tests and metrics).
    pub(crate) fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cache(max: usize) -> LookupCache {
        LookupCache::new(LookupCacheConfig {
            max_entries: max,
            ..LookupCacheConfig::default()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn found_is_kept_for_ttl_and_not_found_for_less() {
        let c = cache(10);
        let t0 = Instant::now();
        let found = Cached::Found(json!({"id": "00u1"}));
        assert!(c.fresh(t0, &found, t0 + Duration::from_secs(59)));
        assert!(!c.fresh(t0, &found, t0 + Duration::from_secs(60)));
        assert!(c.fresh(t0, &Cached::NotFound, t0 + Duration::from_secs(9)));
        assert!(!c.fresh(t0, &Cached::NotFound, t0 + Duration::from_secs(10)));
    }

    #[tokio::test(start_paused = true)]
    async fn one_subject_shares_one_slot_until_invalidated() {
        let c = cache(10);
        let a = c.slot("alice");
        *a.lock().await = Some((Instant::now(), Cached::NotFound));
        assert!(Arc::ptr_eq(&a, &c.slot("alice")));
        c.invalidate("alice");
        assert!(c.slot("alice").lock().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_cache_evicts_expired_then_oldest_and_stays_bounded() {
        let c = cache(3);
        for s in ["a", "b", "c"] {
            let slot = c.slot(s);
            *slot.lock().await = Some((Instant::now(), Cached::Found(json!({"id": s}))));
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        // All fresh: the oldest (`a`) goes.
        let d = c.slot("d");
        *d.lock().await = Some((Instant::now(), Cached::Found(json!({"id": "d"}))));
        drop(d);
        assert_eq!(c.len(), 3);
        assert!(c.slot("a").lock().await.is_none(), "a was evicted");
        // Much later everything has expired: a full cache drops all expired entries at once.
        tokio::time::advance(Duration::from_secs(120)).await;
        c.slot("e");
        assert!(c.len() <= 3, "{}", c.len());
    }

    #[test]
    fn validation_names_each_bad_value() {
        let cfg = LookupCacheConfig {
            ttl: Duration::from_secs(7200),
            not_found_ttl: Duration::from_secs(7201),
            max_entries: 0,
        };
        let mut p = Vec::new();
        cfg.validate("connectors.x.lookup_cache", &mut p);
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "connectors.x.lookup_cache.ttl",
                "connectors.x.lookup_cache.not_found_ttl",
                "connectors.x.lookup_cache.max_entries"
            ]
        );
    }
}
