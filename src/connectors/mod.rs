//! Connectors carry actions out on one target system each.
//!
//! A [`Connector`] instance is built from the config: HTTP targets from a declarative spec file in
//! `connectors/*.yaml` run by [`http`], protocols that are not HTTP (LDAP) natively. Every call returns an
//! [`Outcome`]; the executor alone decides what to do with it (retry, fail, record).

pub(crate) mod aws_iam;
pub(crate) mod http;
pub(crate) mod ldap;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use crate::action::Operation;
use serde::{Deserialize, Serialize};

/// What a connector call achieved. `Retry` and `Failed` carry the target's own words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The change was made.
    Done,
    /// The target was already in the desired state; nothing was changed.
    AlreadyDone,
    /// The subject does not exist on this target. Not an error: other connectors still act.
    NotFound,
    /// A transient failure; try again no sooner than `after` when the target said so.
    Retry {
        #[serde(default, with = "humantime_serde")]
        after: Option<Duration>,
        reason: String,
    },
    /// A terminal failure (bad credentials, validation error); retrying would not help.
    Failed { reason: String },
}

impl Outcome {
    /// Metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::AlreadyDone => "already_done",
            Outcome::NotFound => "not_found",
            Outcome::Retry { .. } => "retry",
            Outcome::Failed { .. } => "failed",
        }
    }

    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Done | Outcome::AlreadyDone)
    }
}

/// One operation to perform.
#[derive(Debug, Clone)]
pub struct OperationRequest {
    pub operation: Operation,
    /// The subject as the policy or responder named it (email, username or a per-system id).
    pub subject: String,
    /// The ledger's idempotency key; sent to targets that accept one.
    pub idempotency_key: String,
    /// For reversals: the pre-state recorded by the action being undone.
    pub pre_state: Option<serde_json::Value>,
    /// Extra values for templates (reason, alert id, rule), never secrets.
    pub context: BTreeMap<String, serde_json::Value>,
}

/// Result of one operation.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationResult {
    pub outcome: Outcome,
    /// State before the change that a reversal needs (prior status, groups removed, …).
    pub pre_state: Option<serde_json::Value>,
    /// Short summary of the target's answer (status code, ids), for the ledger. No secrets.
    pub summary: String,
}

impl OperationResult {
    pub fn new(outcome: Outcome, summary: impl Into<String>) -> Self {
        Self::with_pre_state(outcome, None, summary)
    }

    /// A terminal failure that changed nothing (an operation not offered, a shutting-down connector).
    pub(crate) fn failed(reason: impl Into<String>) -> Self {
        Self::new(
            Outcome::Failed {
                reason: reason.into(),
            },
            "",
        )
    }

    /// A result recording `pre_state`, what a reversal needs.
    pub fn with_pre_state(
        outcome: Outcome,
        pre_state: Option<serde_json::Value>,
        summary: impl Into<String>,
    ) -> Self {
        Self {
            outcome,
            pre_state,
            summary: summary.into(),
        }
    }
}

tokio::task_local! {
    /// Time the current operation spent waiting for its target's announced rate budget (see
    /// [`http::ratelimit`]), summed over its requests; set only inside [`measuring_rate_wait`].
    static RATE_WAIT: std::cell::Cell<Duration>;
}

/// Run `operation` and say how long it waited for its target's rate budget: the executor reports
/// that wait (`deprovd_action_wait_seconds{reason="rate_budget"}`) apart from the call itself.
pub(crate) async fn measuring_rate_wait<F: std::future::Future>(
    operation: F,
) -> (F::Output, Duration) {
    RATE_WAIT
        .scope(std::cell::Cell::new(Duration::ZERO), async move {
            let out = operation.await;
            (out, RATE_WAIT.with(std::cell::Cell::get))
        })
        .await
}

/// Count `waited` towards the current operation's rate-budget wait (nothing outside
/// [`measuring_rate_wait`]).
pub(crate) fn note_rate_wait(waited: Duration) {
    let _ = RATE_WAIT.try_with(|w| w.set(w.get() + waited));
}

/// One line of `deprovd connectors check`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub connector: String,
    pub ok: bool,
    pub detail: String,
    /// What to do about a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl CheckReport {
    /// `connector` passed its preflight: `detail` says what was verified.
    pub(crate) fn passed(connector: &str, detail: impl Into<String>) -> Self {
        Self {
            connector: connector.to_string(),
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    /// `connector` failed its preflight: `detail` says what failed, `fix` what to do about it.
    pub(crate) fn failed(connector: &str, detail: impl Into<String>, fix: Option<&str>) -> Self {
        Self {
            connector: connector.to_string(),
            ok: false,
            detail: detail.into(),
            fix: fix.map(str::to_string),
        }
    }
}

/// What a target knows of a subject's group memberships (for `[guards] protected_groups`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Memberships {
    /// This target type cannot list group memberships (its spec has no `groups` operation).
    Unsupported,
    /// The subject does not exist on this target: it is in no group here.
    NotFound,
    /// Names of the groups the subject belongs to on this target.
    Groups(Vec<String>),
    /// The target could not answer now (transport error, 5xx, 429, credentials). The caller must
    /// not read this as "in no protected group".
    Unavailable(String),
}

/// What a target resolves a subject to, read-only: the identifiers of the account it would act on,
/// for the protected-subject check the executor makes right before a destructive call (see
/// [`Connector::resolve_account`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// This target cannot report the identifiers of the account it resolves (documented per
    /// connector); the guard's check of the action's subject is then the only one.
    Unsupported,
    /// The subject names no account here.
    NotFound,
    /// Identifiers (names, emails, user principal names, ids) of every account the subject
    /// resolves to here.
    Account(Vec<String>),
    /// The target could not answer now; the caller must not read this as "not protected".
    Unavailable(String),
}

/// A configured target system.
#[async_trait]
pub trait Connector: Send + Sync {
    /// Instance name from the config (`okta-prod`); used in decisions and metric labels.
    fn name(&self) -> &str;
    /// Whether this instance can perform `op` (its spec defines it).
    fn supports(&self, op: Operation) -> bool;
    /// Perform one operation. Never panics on target misbehaviour: every failure is an [`Outcome`].
    async fn execute(&self, request: &OperationRequest) -> OperationResult;
    /// Preflight: reachable, credentials valid, permitted; changes nothing.
    async fn check(&self) -> CheckReport;
    /// Whether [`group_memberships`](Self::group_memberships) can answer on this instance.
    fn lists_groups(&self) -> bool {
        false
    }
    /// The names of the groups `subject` belongs to here, read-only. Targets that cannot tell keep
    /// the default, [`Memberships::Unsupported`].
    async fn group_memberships(&self, subject: &str) -> Memberships {
        let _ = subject;
        Memberships::Unsupported
    }
    /// The identifiers of the account `subject` resolves to here, read-only — the same resolution
    /// [`execute`](Self::execute) uses — so the executor can refuse to act on an account that is
    /// protected under a name the action's subject did not spell. Targets that cannot tell keep
    /// the default, [`Resolution::Unsupported`].
    async fn resolve_account(&self, subject: &str) -> Resolution {
        let _ = subject;
        Resolution::Unsupported
    }
}

/// A connector call's limit when the instance sets no `timeout` (every kind).
pub(crate) fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// The limits every native connector instance has: a call timeout, calls in flight, and an optional
/// retry budget (absent: `[executor.retry].max_attempts`).
pub(crate) fn validate_limits(
    path: &str,
    timeout: Duration,
    concurrency: usize,
    max_attempts: Option<u32>,
    problems: &mut Vec<crate::config::Problem>,
) {
    use crate::config::Problem;
    if timeout.is_zero() {
        problems.push(Problem::new(
            format!("{path}.timeout"),
            "must be more than zero",
        ));
    }
    if concurrency == 0 {
        problems.push(Problem::new(
            format!("{path}.concurrency"),
            "must be at least 1",
        ));
    }
    if max_attempts == Some(0) {
        problems.push(Problem::new(
            format!("{path}.max_attempts"),
            "must be at least 1 (or omitted to use [executor.retry].max_attempts)",
        ));
    }
}

/// Checks every connector kind's unit tests share.
#[cfg(test)]
pub(crate) mod contract {
    /// A config table of kind `T`: `minimal` parses; with an unknown key added, or with its secret
    /// reference `secret_ref` replaced by the inline value `inline`, it is refused.
    pub(crate) fn assert_strict_config<T: serde::de::DeserializeOwned>(
        minimal: &str,
        secret_ref: &str,
        inline: &str,
    ) {
        assert!(
            toml::from_str::<T>(minimal).is_ok(),
            "the minimal config parses"
        );
        let unknown = format!("{minimal}\nbogus = 1");
        assert!(
            toml::from_str::<T>(&unknown).is_err(),
            "an unknown key is refused"
        );
        let inline = minimal.replace(secret_ref, inline);
        assert!(
            toml::from_str::<T>(&inline).is_err(),
            "an inline secret is refused"
        );
    }
}

/// The connectors of one running instance, by name.
pub type ConnectorSet = BTreeMap<String, Arc<dyn Connector>>;

/// One `[connectors.<name>]` table, routed by its `type`: `ldap`, `active_directory` and `aws_iam` are
/// native, every other type names an HTTP spec (built-in or from `connector_specs`).
#[derive(Debug, Clone)]
pub enum InstanceConfig {
    Http(http::ConnectorConfig),
    Ldap(ldap::LdapConfig, ldap::LdapFlavor),
    /// IAM's Query API answers XML, which the HTTP spec runtime does not read.
    AwsIam(aws_iam::AwsIamConfig),
}

impl<'de> Deserialize<'de> for InstanceConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(d)?;
        if table.get("type").and_then(|v| v.as_str()) == Some("aws_iam") {
            table.remove("type");
            return aws_iam::AwsIamConfig::deserialize(toml::Value::Table(table))
                .map(InstanceConfig::AwsIam)
                .map_err(D::Error::custom);
        }
        let flavor = match table.get("type").and_then(|v| v.as_str()) {
            Some("ldap") => Some(ldap::LdapFlavor::OpenLdap),
            Some("active_directory") => Some(ldap::LdapFlavor::ActiveDirectory),
            _ => None,
        };
        match flavor {
            Some(flavor) => {
                table.remove("type");
                ldap::LdapConfig::deserialize(toml::Value::Table(table))
                    .map(|c| InstanceConfig::Ldap(c, flavor))
                    .map_err(D::Error::custom)
            }
            None => http::ConnectorConfig::deserialize(toml::Value::Table(table))
                .map(InstanceConfig::Http)
                .map_err(D::Error::custom),
        }
    }
}

impl InstanceConfig {
    pub fn validate(&self, path: &str, problems: &mut Vec<crate::config::Problem>) {
        match self {
            InstanceConfig::Http(c) => c.validate(path, problems),
            InstanceConfig::Ldap(c, flavor) => c.validate_flavor(path, *flavor, problems),
            InstanceConfig::AwsIam(c) => c.validate(path, problems),
        }
    }

    /// Calls in flight at once, and connector calls per action before it fails.
    pub fn limits(&self, default_attempts: u32) -> (usize, u32) {
        match self {
            InstanceConfig::Http(c) => (c.concurrency, c.max_attempts.unwrap_or(default_attempts)),
            InstanceConfig::Ldap(c, _) => {
                (c.concurrency, c.max_attempts.unwrap_or(default_attempts))
            }
            InstanceConfig::AwsIam(c) => {
                (c.concurrency, c.max_attempts.unwrap_or(default_attempts))
            }
        }
    }

    /// The type name as written in the config.
    pub fn kind(&self) -> &str {
        match self {
            InstanceConfig::Http(c) => &c.kind,
            InstanceConfig::Ldap(_, flavor) => flavor.type_name(),
            InstanceConfig::AwsIam(_) => "aws_iam",
        }
    }
}

/// Build every configured instance; all problems (specs, configs, unreadable secrets) at once.
pub fn build_all(
    configs: &BTreeMap<String, InstanceConfig>,
    spec_dir: Option<&std::path::Path>,
) -> Result<ConnectorSet, Vec<crate::config::Problem>> {
    let mut problems = Vec::new();
    let http_configs: BTreeMap<String, http::ConnectorConfig> = configs
        .iter()
        .filter_map(|(n, c)| match c {
            InstanceConfig::Http(h) => Some((n.clone(), h.clone())),
            InstanceConfig::Ldap(..) | InstanceConfig::AwsIam(_) => None,
        })
        .collect();
    let mut set = match http::build_connectors(&http_configs, spec_dir) {
        Ok(s) => s,
        Err(p) => {
            problems.extend(p);
            ConnectorSet::new()
        }
    };
    for (name, c) in configs {
        let built = match c {
            InstanceConfig::Ldap(cfg, flavor) => ldap::build(name, cfg, *flavor),
            InstanceConfig::AwsIam(cfg) => aws_iam::build(name, cfg),
            InstanceConfig::Http(_) => continue,
        };
        match built {
            Ok(conn) => {
                set.insert(name.clone(), conn);
            }
            Err(p) => problems.extend(p),
        }
    }
    if problems.is_empty() {
        Ok(set)
    } else {
        Err(problems)
    }
}
