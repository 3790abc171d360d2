//! The `[notify]` settings: where notices go and what they look like.
//!
//! ```toml
//! [notify]
//! queue = 1024                      # notices waiting for delivery; beyond it they are dropped (counted)
//! [notify.retry]                    # same keys and defaults as [executor.retry]
//! base_delay = "1s"
//! max_delay = "5m"
//! max_attempts = 8
//!
//! [[notify.sinks]]
//! name = "secops-slack"             # appears in metrics and logs (the URL never does)
//! kind = "slack"                    # slack | teams | webhook
//! url = "env:SLACK_WEBHOOK_URL"     # incoming-webhook URLs are secrets: env: or file: only
//! events = ["action_failed", "breaker_tripped"]   # default: every event
//! [notify.sinks.templates]          # optional per-event body templates (minijinja, must yield JSON)
//! action_failed = '{"text": {{ headline | tojson }}}'
//! ```
//!
//! Secret references are kept as strings here and checked in [`NotifyConfig::validate`], so that an
//! inline URL is one problem in the list of every problem rather than a parse error that hides the
//! rest. Templates are compiled and rendered against a sample of every event they serve during
//! validation too: a typo fails startup, never a 3 a.m. notification.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::template;
use crate::config::{Problem, SecretRef};
use crate::retry::RetryConfig;

/// Every event name a sink may subscribe to (the `event` of [`super::Notice`]).
pub(crate) const EVENTS: [&str; 6] = [
    "action_failed",
    "approval_needed",
    "approval_expired",
    "breaker_tripped",
    "lockout_done",
    "restored",
];

/// The sink kinds: how a notice becomes an HTTP request.
pub(crate) const KINDS: [&str; 3] = ["slack", "teams", "webhook"];

/// `[notify]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Notices waiting for the dispatcher, and deliveries waiting per sink. A full queue drops the
    /// notice (counted as `dropped`): containment never waits for a chat message.
    pub queue: usize,
    /// Delivery retries (5xx, 408, 429, timeouts, connection errors): exponential backoff with full
    /// jitter, `Retry-After` as a floor, at most `max_attempts` requests per notice and sink.
    pub retry: RetryConfig,
    pub sinks: Vec<SinkConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            queue: 1024,
            retry: RetryConfig::default(),
            sinks: Vec::new(),
        }
    }
}

/// A string that should hold a secret reference (`env:`/`file:`). `Debug` never shows an inline
/// value, in case one slipped into a file that validation has not yet refused.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct SecretText(pub String);

impl SecretText {
    pub fn parse(&self) -> Result<SecretRef, crate::config::SecretError> {
        SecretRef::parse(&self.0)
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.parse() {
            Ok(r) => write!(f, "{r:?}"),
            Err(_) => f.write_str("SecretText([inline value redacted])"),
        }
    }
}

/// One `[[notify.sinks]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Letters, digits, `-`, `_`: it is a metric label.
    pub name: String,
    /// `slack`, `teams` or `webhook`.
    pub kind: String,
    /// The incoming-webhook URL, by reference: whoever holds it can post to the channel.
    pub url: SecretText,
    /// `webhook` only (and required there): the HMAC-SHA256 key the receiver verifies with.
    #[serde(default)]
    pub secret: Option<SecretText>,
    /// Events this sink hears; absent means all of [`EVENTS`].
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// Body templates by event name, replacing the kind's default for that event.
    #[serde(default)]
    pub templates: BTreeMap<String, String>,
    /// Deliveries in flight at once to this sink.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Bound on one request (connect + answer); a hung receiver costs at most this per attempt.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_concurrency() -> usize {
    2
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl SinkConfig {
    /// The events this sink hears.
    pub fn event_set(&self) -> BTreeSet<&str> {
        match &self.events {
            None => EVENTS.into_iter().collect(),
            Some(list) => EVENTS
                .into_iter()
                .filter(|e| list.iter().any(|l| l == e))
                .collect(),
        }
    }
}

impl NotifyConfig {
    /// Pure validation under `path` (normally `notify`): names, kinds, events, secret references,
    /// limits, and every template compiled and rendered against a sample of each event it serves.
    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        if self.queue == 0 {
            problems.push(Problem::new(format!("{path}.queue"), "must be at least 1"));
        }
        self.retry.validate(&format!("{path}.retry"), problems);
        let mut names = BTreeSet::new();
        for (i, s) in self.sinks.iter().enumerate() {
            let at = format!("{path}.sinks[{i}]");
            if s.name.is_empty()
                || !s
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                problems.push(Problem::new(
                    format!("{at}.name"),
                    "sink names use letters, digits, `-` and `_` only (they appear in metrics)",
                ));
            } else if !names.insert(s.name.as_str()) {
                problems.push(Problem::new(
                    format!("{at}.name"),
                    format!("`{}` is used by another sink", s.name),
                ));
            }
            if !KINDS.contains(&s.kind.as_str()) {
                problems.push(Problem::new(
                    format!("{at}.kind"),
                    format!(
                        "unknown kind `{}`; expected one of {}",
                        s.kind,
                        KINDS.join(", ")
                    ),
                ));
            }
            if let Err(e) = s.url.parse() {
                problems.push(Problem::new(
                    format!("{at}.url"),
                    format!("{e} (an incoming-webhook URL is a credential)"),
                ));
            }
            match (&s.secret, s.kind.as_str()) {
                (None, "webhook") => problems.push(Problem::new(
                    format!("{at}.secret"),
                    "webhook sinks sign every request: set `secret = \"env:NAME\"` (or `file:PATH`)",
                )),
                (Some(_), "slack" | "teams") => problems.push(Problem::new(
                    format!("{at}.secret"),
                    format!(
                        "{} incoming webhooks are not signed; remove `secret`",
                        s.kind
                    ),
                )),
                (Some(sec), _) => {
                    if let Err(e) = sec.parse() {
                        problems.push(Problem::new(format!("{at}.secret"), e.to_string()));
                    }
                }
                (None, _) => {}
            }
            if let Some(events) = &s.events {
                if events.is_empty() {
                    problems.push(Problem::new(
                        format!("{at}.events"),
                        "is empty: the sink would hear nothing (omit `events` for all)",
                    ));
                }
                for (j, e) in events.iter().enumerate() {
                    if !EVENTS.contains(&e.as_str()) {
                        problems.push(Problem::new(
                            format!("{at}.events[{j}]"),
                            format!("unknown event `{e}`; expected one of {}", EVENTS.join(", ")),
                        ));
                    }
                }
            }
            if s.concurrency == 0 {
                problems.push(Problem::new(
                    format!("{at}.concurrency"),
                    "must be at least 1",
                ));
            }
            if s.timeout.is_zero() {
                problems.push(Problem::new(
                    format!("{at}.timeout"),
                    "must be greater than zero",
                ));
            }
            let served = s.event_set();
            for event in s.templates.keys() {
                if !EVENTS.contains(&event.as_str()) {
                    problems.push(Problem::new(
                        format!("{at}.templates.{event}"),
                        format!(
                            "unknown event `{event}`; expected one of {}",
                            EVENTS.join(", ")
                        ),
                    ));
                } else if !served.contains(event.as_str()) {
                    problems.push(Problem::new(
                        format!("{at}.templates.{event}"),
                        format!("the sink does not hear `{event}` (see `events`)"),
                    ));
                }
            }
            if KINDS.contains(&s.kind.as_str()) {
                for (event, message) in template::check(&s.kind, &s.templates) {
                    problems.push(Problem::new(format!("{at}.templates.{event}"), message));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> NotifyConfig {
        #[derive(Deserialize)]
        struct W {
            notify: NotifyConfig,
        }
        toml::from_str::<W>(toml_text).unwrap().notify
    }

    #[test]
    fn every_problem_is_listed_with_its_path() {
        let cfg = parse(
            r#"
[notify]
[[notify.sinks]]
name = "chat"
kind = "slack"
url = "https://hooks.slack.com/services/T000/B000/XXXX"
events = ["action_failed", "lockout_finished"]
secret = "env:X"
[notify.sinks.templates]
action_failed = '{"text": {{ headline | tojson }'
restored = '{"text": "x"}'
[[notify.sinks]]
name = "chat"
kind = "pager"
url = "env:PAGER_URL"
[[notify.sinks]]
name = "hook"
kind = "webhook"
url = "file:/run/secrets/hook"
[notify.sinks.templates]
breaker_tripped = '{"who": {{ notice.subject | tojson }}}'
approval_needed = 'not json {{ headline }}'
"#,
        );
        let mut p = Vec::new();
        cfg.validate("notify", &mut p);
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "notify.sinks[0].url",
            "notify.sinks[0].events[1]",
            "notify.sinks[0].secret",
            "notify.sinks[0].templates.action_failed",
            "notify.sinks[0].templates.restored",
            "notify.sinks[1].name",
            "notify.sinks[1].kind",
            "notify.sinks[2].secret",
            "notify.sinks[2].templates.breaker_tripped",
            "notify.sinks[2].templates.approval_needed",
        ] {
            assert!(paths.contains(&want), "missing {want} in {p:#?}");
        }
        let url = p.iter().find(|p| p.path == "notify.sinks[0].url").unwrap();
        assert!(url.message.contains("never inline"), "{url}");
        assert!(
            !format!("{cfg:?}").contains("hooks.slack.com"),
            "Debug never shows an inline URL"
        );
    }

    #[test]
    fn a_valid_config_has_no_problems() {
        let cfg = parse(
            r#"
[notify]
[[notify.sinks]]
name = "secops-slack"
kind = "slack"
url = "env:SLACK_URL"
[[notify.sinks]]
name = "teams"
kind = "teams"
url = "env:TEAMS_URL"
events = ["breaker_tripped"]
[[notify.sinks]]
name = "soar"
kind = "webhook"
url = "env:SOAR_URL"
secret = "env:SOAR_SECRET"
[notify.sinks.templates]
restored = '{"restored": {{ notice.subject | tojson }}}'
"#,
        );
        let mut p = Vec::new();
        cfg.validate("notify", &mut p);
        assert!(p.is_empty(), "{p:#?}");
        assert_eq!(cfg.sinks[1].event_set().len(), 1);
        assert_eq!(cfg.sinks[0].event_set().len(), EVENTS.len());
    }
}
