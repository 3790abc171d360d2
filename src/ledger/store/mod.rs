//! [`StateStore`](super::StateStore) implementations and the `[state]` settings that pick one.
//!
//! Both backends keep the same indexes, for the same reasons, and pass one conformance suite
//! (`conformance.rs`, test-only):
//!
//! - **records** by action key: the source of truth; everything else can be rebuilt from it.
//! - **due index** ordered by `next_attempt_at` (ms): the executor asks "what is due now, earliest first"
//!   and "when is the next one due" on every loop; both must be a range read, never a scan.
//! - **lane index**, one per connector instance, holding the same entries as the due index ordered
//!   by ([`Urgency`](crate::ledger::Urgency) rank, `next_attempt_at`): the executor claims each
//!   connector's most urgent due actions without reading past another connector's backlog, so a
//!   throttled or hanging target's queue costs nothing to the others' claims. A store written before
//!   lanes existed is indexed at open (from the due index), so no pending action is stranded.
//! - **pending set**: `deprovd_ledger_pending` is scraped every few seconds; it must be O(1).
//! - **coalesce slots** with an expiry (the coalesce window): an alert storm for one subject must find
//!   the live action in one lookup, inside the same atomic step as the insert, so two replicas racing
//!   on two alerts for the same subject still produce one action.
//! - **claims** with an expiry: one executor runs an action at a time; a crashed holder's claim lapses.
//! - **created index** (newest first) plus per-**subject**, per-**alert** and per-**state** indexes,
//!   each ordered by `created_at`: `GET /v1/actions` and `GET /v1/approvals` list by these filters, and
//!   the ledger grows without bound, so a filtered listing walks the narrowest index instead of every
//!   record. Listing always re-checks the full filter on the record itself, so an index only needs to
//!   be a superset (a stale entry costs a wasted read, never a wrong answer).
//!
//! # Semantics shared by both backends (beyond the trait's rustdoc)
//!
//! - Times in indexes are whole milliseconds since the Unix epoch; ties order by action key.
//! - `ActionFilter::alert_id` matches the alert that caused an action *and* alerts coalesced into it
//!   (its `linked_alerts`): a responder asking "what happened for alert X" wants both.
//! - `ActionFilter::limit == 0` means "no limit".
//! - Linked alerts are append-only history: once linked, `put_action` cannot drop one.
//! - `put_action` on a key that was never inserted is an error ([`StoreError::Other`]): the executor
//!   only ever updates what it read, and silently creating a record here would bypass coalescing.

pub(crate) mod embedded;
pub(crate) mod redis;

#[cfg(test)]
mod conformance;

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{
    ActionFilter, ActionRecord, ActionState, Origin, StateStore, StoreError, coalesce_key,
};
use crate::audit::AuditHead;
use crate::config::Problem;

/// Which [`StateStore`] to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// On-disk [`embedded::EmbeddedStore`]: single node, zero setup. The default, so that a first run
    /// needs nothing but the binary.
    #[default]
    Embedded,
    /// Shared [`redis::RedisStore`]: required to run more than one replica.
    Redis,
}

/// The `[state]` table:
///
/// ```toml
/// [state]
/// backend = "embedded"              # or "redis"
/// path = "./deprovd-data"           # embedded only: directory holding the ledger file
///
/// [state.redis]                     # redis only; see redis::RedisConfig
/// url = "redis://127.0.0.1:6379/0"  # or cluster = [...], or sentinel = { master_name, urls }
/// key_prefix = "deprovd:"
/// durability = "aof"                # relaxed (default) | aof | replicas
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Which backend holds the ledger.
    #[serde(default)]
    pub backend: Backend,
    /// Directory of the embedded store's file (created if missing).
    #[serde(default = "default_path")]
    pub path: PathBuf,
    /// The Redis ledger: topology, key prefix, durability. `Debug` redacts its credentials.
    #[serde(default)]
    pub redis: redis::RedisConfig,
}

fn default_path() -> PathBuf {
    PathBuf::from("./deprovd-data")
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: Backend::default(),
            path: default_path(),
            redis: redis::RedisConfig::default(),
        }
    }
}

impl StoreConfig {
    /// Check every value without touching the disk or the network; `path` is the dotted key of this
    /// table (`state`). Only the selected backend's settings are checked.
    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        match self.backend {
            Backend::Embedded => {
                if self.path.as_os_str().is_empty() {
                    problems.push(Problem::new(
                        format!("{path}.path"),
                        "must name the directory for the embedded ledger (default `./deprovd-data`)",
                    ));
                }
            }
            Backend::Redis => self.redis.validate(&format!("{path}.redis"), problems),
        }
    }

    /// Settings that are valid but unsafe in production (`deprovd validate` prints them, startup
    /// logs them): relaxed Redis durability.
    pub fn warnings(&self, path: &str, warnings: &mut Vec<Problem>) {
        if self.backend == Backend::Redis {
            self.redis.warnings(&format!("{path}.redis"), warnings);
        }
    }

    /// Open the configured backend: the embedded file (on a blocking thread) or a Redis connection
    /// (bounded connect timeout, so a down Redis fails startup in seconds with
    /// [`StoreError::Unavailable`]).
    pub async fn open(&self) -> Result<Arc<dyn StateStore>, StoreError> {
        match self.backend {
            Backend::Embedded => {
                let dir = self.path.clone();
                let store =
                    tokio::task::spawn_blocking(move || self::embedded::EmbeddedStore::open(&dir))
                        .await
                        .map_err(|e| {
                            StoreError::Other(format!("opening the embedded store panicked: {e}"))
                        })??;
                Ok(Arc::new(store))
            }
            Backend::Redis => {
                let store = self::redis::RedisStore::open(&self.redis).await?;
                Ok(Arc::new(store))
            }
        }
    }
}

/// `url` with its credentials replaced by `***`, safe to log: the userinfo (`user:password@`) and the
/// values of `password`/`pass`/`user`/`username` query parameters. A string that is not a URL at all
/// is hidden entirely, since it may be a bare password pasted into the wrong field.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return "***".to_string();
    };
    let (scheme, rest) = url.split_at(scheme_end + 3);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    match authority.rfind('@') {
        Some(at) => {
            out.push_str("***");
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    // Query parameters (`redis+unix:///sock?pass=...`).
    match tail.split_once('?') {
        None => out.push_str(tail),
        Some((before, query)) => {
            out.push_str(before);
            out.push('?');
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, Some(f)),
                None => (query, None),
            };
            for (i, pair) in query.split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                match pair.split_once('=') {
                    Some((name, _))
                        if ["password", "pass", "user", "username"]
                            .iter()
                            .any(|s| name.eq_ignore_ascii_case(s)) =>
                    {
                        out.push_str(name);
                        out.push_str("=***");
                    }
                    _ => out.push_str(pair),
                }
            }
            if let Some(f) = fragment {
                out.push('#');
                out.push_str(f);
            }
        }
    }
    out
}

/// Width of one urgency rank in a lane score (ms): ten trillion milliseconds, about 317 years past
/// the epoch, so `rank * LANE_SPAN_MS + due ms` orders by rank, then time, and stays an exact
/// integer in an f64 (Redis scores) for every rank.
pub(crate) const LANE_SPAN_MS: i64 = 10_000_000_000_000;

/// A lane-index score: `rank`, then `due_ms` (clamped into the rank's span).
pub(crate) fn lane_score(rank: u8, due_ms: i64) -> i64 {
    i64::from(rank) * LANE_SPAN_MS + due_ms.clamp(0, LANE_SPAN_MS - 1)
}

/// What the indexes need to know about a record, computed in one place so that both backends apply
/// exactly the trait's rules.
pub(crate) struct Derived<'a> {
    /// Due-index score: `Some` exactly when `planned` or `running` with a `next_attempt_at`.
    pub due_ms: Option<i64>,
    /// The lane (connector instance) it is indexed under while due.
    pub connector: &'a str,
    /// Urgency rank within the lane ([`Urgency::rank`](crate::ledger::Urgency::rank)).
    pub rank: u8,
    /// Counts towards `pending_count`.
    pub pending: bool,
    /// Holds (or may take) the coalesce slot.
    pub absorbs: bool,
    pub state: &'static str,
    pub subject: &'a str,
    /// The alert that caused it, if any.
    pub alert_id: Option<&'a str>,
    pub created_ms: i64,
    /// [`coalesce_key`] of the record.
    pub coalesce: String,
}

impl<'a> Derived<'a> {
    pub(crate) fn of(a: &'a ActionRecord) -> Self {
        Derived {
            due_ms: match a.state {
                ActionState::Planned | ActionState::Running => {
                    a.next_attempt_at.map(|t| t.timestamp_millis())
                }
                _ => None,
            },
            connector: &a.connector,
            rank: a.urgency().rank(),
            pending: a.state.is_pending(),
            absorbs: a.state.absorbs_duplicates(),
            state: a.state.as_str(),
            subject: &a.subject,
            alert_id: match &a.origin {
                Origin::Alert { alert_id, .. } => Some(alert_id),
                Origin::Manual { .. } => None,
            },
            created_ms: a.created_at.timestamp_millis(),
            coalesce: coalesce_key(&a.subject, &a.connector, a.operation),
        }
    }
}

impl Derived<'_> {
    /// Lane-index score while due ([`lane_score`]).
    pub(crate) fn lane_score(&self) -> Option<i64> {
        self.due_ms.map(|ms| lane_score(self.rank, ms))
    }
}

/// Does `a` satisfy every set field of `f` (ignoring `limit`)?
pub(crate) fn matches(f: &ActionFilter, a: &ActionRecord) -> bool {
    if f.subject.as_deref().is_some_and(|s| s != a.subject) {
        return false;
    }
    if f.state.is_some_and(|s| s != a.state) {
        return false;
    }
    if f.connector.as_deref().is_some_and(|c| c != a.connector)
        || f.rule.as_deref().is_some_and(|r| r != a.rule)
        || f.since.is_some_and(|t| a.created_at < t)
        || f.key_prefix
            .as_deref()
            .is_some_and(|p| !a.key.starts_with(p))
    {
        return false;
    }
    if let Some(id) = f.alert_id.as_deref() {
        let caused = matches!(&a.origin, Origin::Alert { alert_id, .. } if alert_id == id);
        if !caused && !a.linked_alerts.iter().any(|l| l == id) {
            return false;
        }
    }
    true
}

/// Milliseconds since the epoch back to a timestamp (index scores are whole milliseconds).
pub(crate) fn from_ms(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::<Utc>::from_timestamp_millis(ms).ok_or_else(|| StoreError::Corrupt {
        key: "due index".into(),
        reason: format!("{ms} is not a valid timestamp in milliseconds"),
    })
}

/// `limit == 0` means no limit.
pub(crate) fn effective_limit(limit: usize) -> usize {
    if limit == 0 { usize::MAX } else { limit }
}

/// Decode a stored record, naming the key when it is not a valid record.
pub(crate) fn decode(key: &str, bytes: &[u8]) -> Result<ActionRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        reason: format!("not a valid action record: {e}"),
    })
}

/// Encode a record for storage.
pub(crate) fn encode(a: &ActionRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(a)
        .map_err(|e| StoreError::Other(format!("cannot encode action `{}` as JSON: {e}", a.key)))
}

/// Encode a [`DocStore`](super::DocStore) document stored under (`ns`, `key`).
pub(crate) fn encode_doc(
    ns: &str,
    key: &str,
    doc: &serde_json::Value,
) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(doc)
        .map_err(|e| StoreError::Other(format!("cannot encode document `{ns}/{key}`: {e}")))
}

/// Decode the document stored under (`ns`, `key`), naming it when it is not JSON.
pub(crate) fn decode_doc(
    ns: &str,
    key: &str,
    bytes: &[u8],
) -> Result<serde_json::Value, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: format!("{ns}/{key}"),
        reason: format!("not a JSON document: {e}"),
    })
}

/// `<seq>:<hash>`, the stored form of an [`AuditHead`].
pub(crate) fn head_string(h: Option<&AuditHead>) -> String {
    h.map(|h| format!("{}:{}", h.seq, h.hash))
        .unwrap_or_default()
}

pub(crate) fn parse_head(s: &str) -> Result<Option<AuditHead>, StoreError> {
    if s.is_empty() {
        return Ok(None);
    }
    let corrupt = || StoreError::Corrupt {
        key: "audit:head".into(),
        reason: format!("`{s}` is not `<seq>:<hash>`"),
    };
    let (seq, hash) = s.split_once(':').ok_or_else(corrupt)?;
    Ok(Some(AuditHead {
        seq: seq.parse().map_err(|_| corrupt())?,
        hash: hash.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_src: &str) -> Result<StoreConfig, toml::de::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Root {
            state: StoreConfig,
        }
        toml::from_str::<Root>(toml_src).map(|r| r.state)
    }

    #[test]
    fn empty_state_table_defaults_to_embedded_in_deprovd_data() {
        let c = parse("[state]\n").unwrap();
        assert_eq!(c, StoreConfig::default());
        assert_eq!(c.backend, Backend::Embedded);
        assert_eq!(c.path, PathBuf::from("./deprovd-data"));
        assert_eq!(
            c.redis.topology(),
            redis::Topology::Single("redis://127.0.0.1:6379/0")
        );
        assert_eq!(c.redis.key_prefix, "deprovd:");
    }

    #[test]
    fn redis_table_parses_and_validates() {
        let c = parse(
            "[state]\nbackend = \"redis\"\n[state.redis]\nurl = \"redis://:pw@10.0.0.1:6380/2\"\nkey_prefix = \"prod:\"\n",
        )
        .unwrap();
        assert_eq!(c.backend, Backend::Redis);
        let mut problems = Vec::new();
        c.validate("state", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn unknown_keys_and_backends_are_rejected() {
        assert!(parse("[state]\nbakend = \"redis\"\n").is_err());
        assert!(parse("[state]\nbackend = \"postgres\"\n").is_err());
    }

    #[test]
    fn validate_reports_every_redis_problem_with_its_path_and_no_password() {
        let c = StoreConfig {
            backend: Backend::Redis,
            redis: redis::RedisConfig::single("http://admin:s3cret@host/", ""),
            ..StoreConfig::default()
        };
        let mut problems = Vec::new();
        c.validate("state", &mut problems);
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["state.redis.url", "state.redis.key_prefix"]);
        assert!(
            problems.iter().all(|p| !p.message.contains("s3cret")),
            "{problems:?}"
        );
    }

    #[test]
    fn validate_checks_only_the_selected_backend() {
        let c = StoreConfig {
            backend: Backend::Embedded,
            redis: redis::RedisConfig::single("nonsense", "p:"),
            path: PathBuf::new(),
        };
        let mut problems = Vec::new();
        c.validate("state", &mut problems);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "state.path");
    }

    #[test]
    fn redact_url_hides_userinfo_and_password_parameters() {
        assert_eq!(
            redact_url("redis://:hunter2@127.0.0.1:6379/0"),
            "redis://***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("redis://alice:p@ss@redis.internal/1"),
            "redis://***@redis.internal/1"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("redis+unix:///run/redis.sock?db=1&pass=hunter2#x"),
            "redis+unix:///run/redis.sock?db=1&pass=***#x"
        );
        assert_eq!(redact_url("hunter2"), "***");
    }

    #[test]
    fn debug_of_config_never_shows_the_redis_password() {
        let c = StoreConfig {
            redis: redis::RedisConfig::single("redis://user:hunter2@localhost/0", "p:"),
            ..StoreConfig::default()
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redis://***@localhost/0"), "{shown}");
    }

    #[tokio::test]
    async fn open_embedded_from_config_gives_a_working_store() {
        let dir = tempfile::tempdir().unwrap();
        let c = StoreConfig {
            path: dir.path().join("ledger"),
            ..StoreConfig::default()
        };
        let store = c.open().await.unwrap();
        store.ping().await.unwrap();
        assert_eq!(store.pending_count().await.unwrap(), 0);
    }
}
