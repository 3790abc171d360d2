//! The `[state.redis]` table: where the Redis ledger lives (one node, a Cluster, or a primary found
//! through Sentinel) and how durable an acknowledged write must be.
//!
//! ```toml
//! [state.redis]
//! url = "redis://:PASSWORD@10.0.0.5:6379/0"    # one node (the default: redis://127.0.0.1:6379/0)
//! # cluster = ["redis://10.0.0.5:6379", "redis://10.0.0.6:6379"]   # or: Redis Cluster seed nodes
//! # sentinel = { master_name = "deprovd", urls = ["redis://10.0.0.7:26379", "redis://10.0.0.8:26379"] }
//! key_prefix = "deprovd:"
//! durability = "aof"          # relaxed | aof | replicas
//! # replicas = 1              # replicas mode: WAIT for this many replicas …
//! # wait_timeout = "500ms"    # … at most this long, else the write is retried, never acknowledged
//! # aof_always_asserted = false   # aof mode, when CONFIG is renamed or forbidden: the operator vouches
//! ```

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::super::redact_url;
use crate::config::{Problem, SecretRef};

/// How durable a ledger write must be before deprovd treats it as acknowledged (and so before a
/// Kafka offset or an HTTP 202 follows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Whatever the server does: with Redis' defaults (no AOF, or `appendfsync everysec`) a crash
    /// or a failover loses up to a second of acknowledged writes. For development and tests;
    /// `deprovd validate` warns about it.
    #[default]
    Relaxed,
    /// The server must run `appendonly yes` with `appendfsync always`, so that every write is on
    /// disk before Redis answers; checked at startup (`CONFIG GET`, else `INFO persistence` plus
    /// [`RedisConfig::aof_always_asserted`]) and refused otherwise.
    Aof,
    /// Every write is followed, in the same round trip, by `WAIT replicas wait_timeout`: it is
    /// acknowledged only once that many replicas hold it, so a failover to one of them loses
    /// nothing acknowledged. Too few acks in time is a retryable error, never an acknowledgement.
    Replicas,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Relaxed => "relaxed",
            Durability::Aof => "aof",
            Durability::Replicas => "replicas",
        }
    }
}

/// `sentinel = { master_name, urls }`: the primary is whichever node the sentinels name for
/// `master_name`; deprovd asks again after a connection error or a `READONLY` answer (a failover).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelConfig {
    /// The monitored master's name (`sentinel monitor <name> …`).
    pub master_name: String,
    /// Sentinel nodes, `redis://[:password@]host:port` (the password is the sentinels' own).
    pub urls: Vec<String>,
    /// Database on the data nodes.
    #[serde(default)]
    pub db: i64,
    /// ACL user on the data nodes.
    #[serde(default)]
    pub username: Option<String>,
    /// Password of the data nodes, by reference (`env:NAME` or `file:/path`).
    #[serde(default)]
    pub password: Option<String>,
}

impl fmt::Debug for SentinelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelConfig")
            .field("master_name", &self.master_name)
            .field(
                "urls",
                &self.urls.iter().map(|u| redact_url(u)).collect::<Vec<_>>(),
            )
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

/// Where the nodes are: exactly one of `url`, `cluster` or `sentinel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology<'a> {
    Single(&'a str),
    Cluster(&'a [String]),
    Sentinel(&'a SentinelConfig),
}

/// The `[state.redis]` table. `Debug` redacts credentials in every URL.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// One node: `redis://[user][:password@]host[:port][/db]`. A plain string because operators
    /// paste it from their Redis provider; logged only through [`redact_url`]. Defaults to
    /// `redis://127.0.0.1:6379/0` when neither `cluster` nor `sentinel` is set.
    pub url: Option<String>,
    /// Redis Cluster seed nodes (any reachable subset of the cluster; database 0 only).
    pub cluster: Vec<String>,
    /// A primary found through Redis Sentinel.
    pub sentinel: Option<SentinelConfig>,
    /// Prefix of every key, so that several deployments (or tests) can share one Redis.
    pub key_prefix: String,
    /// See [`Durability`].
    pub durability: Durability,
    /// `replicas` mode: how many replicas must hold a write before it counts.
    pub replicas: u32,
    /// `replicas` mode: how long a write waits for them (the `WAIT` timeout).
    #[serde(with = "humantime_serde")]
    pub wait_timeout: Duration,
    /// `aof` mode: the operator vouches for `appendonly yes` + `appendfsync always` where the
    /// server cannot show it (`CONFIG` renamed or denied by ACL, as managed services do). Only
    /// fills in what cannot be read: a server that answers `CONFIG GET` with other settings is
    /// still refused.
    pub aof_always_asserted: bool,
}

/// The single-node URL used when nothing else is configured.
const DEFAULT_URL: &str = "redis://127.0.0.1:6379/0";

/// Longest `wait_timeout`: `WAIT` holds the connection it is sent on, and each command has a
/// response timeout of 5 s; a longer wait would look like a dead server.
const MAX_WAIT: Duration = Duration::from_secs(4);

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            cluster: Vec::new(),
            sentinel: None,
            key_prefix: "deprovd:".to_string(),
            durability: Durability::default(),
            replicas: 1,
            wait_timeout: Duration::from_millis(500),
            aof_always_asserted: false,
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.url.as_deref().map(redact_url))
            .field(
                "cluster",
                &self
                    .cluster
                    .iter()
                    .map(|u| redact_url(u))
                    .collect::<Vec<_>>(),
            )
            .field("sentinel", &self.sentinel)
            .field("key_prefix", &self.key_prefix)
            .field("durability", &self.durability)
            .field("replicas", &self.replicas)
            .field("wait_timeout", &self.wait_timeout)
            .field("aof_always_asserted", &self.aof_always_asserted)
            .finish()
    }
}

impl RedisConfig {
    /// One node at `url` under `key_prefix`, relaxed (tests and tools).
    pub fn single(url: &str, key_prefix: &str) -> Self {
        Self {
            url: Some(url.to_string()),
            key_prefix: key_prefix.to_string(),
            ..Self::default()
        }
    }

    /// The configured topology; the default single node when none is set (an invalid mix is a
    /// [`validate`](Self::validate) problem; this then prefers `sentinel`, then `cluster`).
    pub fn topology(&self) -> Topology<'_> {
        if let Some(s) = &self.sentinel {
            Topology::Sentinel(s)
        } else if !self.cluster.is_empty() {
            Topology::Cluster(&self.cluster)
        } else {
            Topology::Single(self.url.as_deref().unwrap_or(DEFAULT_URL))
        }
    }

    /// Check every value without touching the network; `path` is the dotted key of this table.
    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        let set = [
            self.url.is_some(),
            !self.cluster.is_empty(),
            self.sentinel.is_some(),
        ];
        if set.iter().filter(|s| **s).count() > 1 {
            problems.push(Problem::new(
                path,
                "set one of `url` (one node), `cluster` (Redis Cluster seeds) or `sentinel` \
                 (a primary found through Sentinel), not several",
            ));
        }
        if let Some(url) = &self.url {
            check_url(&format!("{path}.url"), url, problems);
        }
        for (i, url) in self.cluster.iter().enumerate() {
            let at = format!("{path}.cluster[{i}]");
            if check_url(&at, url, problems) && db_of(url).is_some_and(|db| db != 0) {
                problems.push(Problem::new(
                    at,
                    format!(
                        "`{}` names a database; Redis Cluster has only database 0",
                        redact_url(url)
                    ),
                ));
            }
        }
        if let Some(s) = &self.sentinel {
            if s.master_name.trim().is_empty() {
                problems.push(Problem::new(
                    format!("{path}.sentinel.master_name"),
                    "must name the master the sentinels monitor",
                ));
            }
            if s.urls.is_empty() {
                problems.push(Problem::new(
                    format!("{path}.sentinel.urls"),
                    "must list at least one sentinel (`redis://host:26379`); list them all",
                ));
            }
            for (i, url) in s.urls.iter().enumerate() {
                check_url(&format!("{path}.sentinel.urls[{i}]"), url, problems);
            }
            if s.db < 0 {
                problems.push(Problem::new(
                    format!("{path}.sentinel.db"),
                    "must not be negative",
                ));
            }
            if let Some(p) = &s.password
                && let Err(e) = SecretRef::parse(p)
            {
                problems.push(Problem::new(
                    format!("{path}.sentinel.password"),
                    e.to_string(),
                ));
            }
        }
        if self.key_prefix.is_empty() {
            problems.push(Problem::new(
                format!("{path}.key_prefix"),
                "must not be empty: the prefix keeps deprovd's keys apart from other users of the Redis",
            ));
        } else if self
            .key_prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '{' || c == '}')
        {
            problems.push(Problem::new(
                format!("{path}.key_prefix"),
                format!(
                    "`{}` contains whitespace, control characters or braces (braces would move \
                     the keys' Cluster hash tag)",
                    self.key_prefix.escape_debug()
                ),
            ));
        }
        if self.durability == Durability::Replicas {
            if self.replicas == 0 {
                problems.push(Problem::new(
                    format!("{path}.replicas"),
                    "must be at least 1 with durability = \"replicas\"",
                ));
            }
            if self.wait_timeout.is_zero() || self.wait_timeout > MAX_WAIT {
                problems.push(Problem::new(
                    format!("{path}.wait_timeout"),
                    format!(
                        "must be more than 0 and at most {MAX_WAIT:?} (WAIT holds the connection)"
                    ),
                ));
            }
        }
        if self.aof_always_asserted && self.durability != Durability::Aof {
            problems.push(Problem::new(
                format!("{path}.aof_always_asserted"),
                "applies only with durability = \"aof\"",
            ));
        }
    }

    /// What is allowed but unsafe in production: `relaxed` durability.
    pub fn warnings(&self, path: &str, warnings: &mut Vec<Problem>) {
        if self.durability == Durability::Relaxed {
            warnings.push(Problem::new(
                format!("{path}.durability"),
                "is \"relaxed\": a Redis crash or failover can lose acknowledged actions whose \
                 Kafka offsets are already committed; use \"aof\" (appendfsync always) or \
                 \"replicas\" (WAIT) in production, see docs/production.md",
            ));
        }
    }
}

/// A problem at `at` unless `url` is a plain-TCP Redis URL; `true` when it is.
fn check_url(at: &str, url: &str, problems: &mut Vec<Problem>) -> bool {
    let shown = redact_url(url);
    if let Err(e) = ::redis::Client::open(url) {
        problems.push(Problem::new(
            at,
            format!(
                "`{shown}` is not a usable Redis URL ({e}); expected \
                 `redis://[user][:password@]host[:port][/db]`"
            ),
        ));
        false
    } else if url.starts_with("rediss") || url.starts_with("valkeys") {
        problems.push(Problem::new(
            at,
            format!("`{shown}` asks for TLS, which this build does not include; use `redis://`"),
        ));
        false
    } else {
        true
    }
}

/// The database a URL names (`/N`), if any.
fn db_of(url: &str) -> Option<i64> {
    let info = ::redis::IntoConnectionInfo::into_connection_info(url).ok()?;
    Some(info.redis_settings().db())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> RedisConfig {
        toml::from_str(src).unwrap()
    }

    fn problems(c: &RedisConfig) -> Vec<String> {
        let mut p = Vec::new();
        c.validate("state.redis", &mut p);
        p.into_iter().map(|p| p.path).collect()
    }

    #[test]
    fn defaults_are_one_local_node_relaxed_with_a_warning() {
        let c = parse("");
        assert_eq!(c.topology(), Topology::Single(DEFAULT_URL));
        assert_eq!(c.durability, Durability::Relaxed);
        assert!(problems(&c).is_empty());
        let mut w = Vec::new();
        c.warnings("state.redis", &mut w);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].path, "state.redis.durability");
        assert!(w[0].message.contains("relaxed"), "{}", w[0].message);
    }

    #[test]
    fn each_topology_parses() {
        let c = parse("cluster = [\"redis://a:7000\", \"redis://b:7001\"]\ndurability = \"aof\"\n");
        assert!(matches!(c.topology(), Topology::Cluster(s) if s.len() == 2));
        assert!(problems(&c).is_empty());
        let mut w = Vec::new();
        c.warnings("state.redis", &mut w);
        assert!(w.is_empty(), "aof is not warned about");
        let c = parse(
            "sentinel = { master_name = \"m\", urls = [\"redis://s:26379\"], password = \"env:RP\" }\ndurability = \"replicas\"\nreplicas = 2\nwait_timeout = \"1s\"\n",
        );
        assert!(matches!(c.topology(), Topology::Sentinel(s) if s.master_name == "m"));
        assert!(problems(&c).is_empty(), "{:?}", problems(&c));
    }

    #[test]
    fn every_bad_value_is_reported_at_its_path() {
        let c = parse(
            "url = \"redis://x/0\"\ncluster = [\"redis://a:7000/3\", \"http://b\"]\nsentinel = { master_name = \"\", urls = [], password = \"hunter2\" }\nkey_prefix = \"a{b}\"\ndurability = \"replicas\"\nreplicas = 0\nwait_timeout = \"10s\"\n",
        );
        assert_eq!(
            problems(&c),
            [
                "state.redis",
                "state.redis.cluster[0]",
                "state.redis.cluster[1]",
                "state.redis.sentinel.master_name",
                "state.redis.sentinel.urls",
                "state.redis.sentinel.password",
                "state.redis.key_prefix",
                "state.redis.replicas",
                "state.redis.wait_timeout",
            ]
        );
        let c = parse("aof_always_asserted = true\n");
        assert_eq!(problems(&c), ["state.redis.aof_always_asserted"]);
        assert!(toml::from_str::<RedisConfig>("durability = \"fsync\"\n").is_err());
    }

    #[test]
    fn debug_never_shows_a_password() {
        let c = parse(
            "sentinel = { master_name = \"m\", urls = [\"redis://:sentpw@s:26379\"] }\ncluster = [\"redis://:clupw@a:7000\"]\nurl = \"redis://:onepw@x\"\n",
        );
        let shown = format!("{c:?}");
        for pw in ["sentpw", "clupw", "onepw"] {
            assert!(!shown.contains(pw), "{shown}");
        }
    }
}
