//! Rego policies: load every `*.rego` and `data.json`/`data.yaml` under the policy directory, compile
//! once, evaluate per alert, reload atomically.
//!
//! # Using it
//!
//! ```text
//! let policies = Policies::load(&settings.policy)?;          // Arc<Policies>, compiled once
//! let eval = policies.evaluate(&alert, Utc::now(), &ctx);   // on a blocking thread: CPU work
//! policies.reload()?;                                        // on SIGHUP; old version keeps serving on error
//! policies.clone().spawn_watcher(shutdown_rx);               // reload on file change (if `watch`)
//! run_tests(dir, &TestOptions::default())?;                // `deprovd policy test`
//! ```
//!
//! # Contract with policy authors
//!
//! The input document is `{"alert": <Alert without raw>, "raw": <original document>, "now": RFC 3339,
//! "context": {...}}`; the output is the set `data.deprovd.decisions`, each element a [`Decision`].
//! Undefined means "no decisions". Elements that do not match the [`Decision`] schema are reported in
//! [`Evaluation::errors`] and dropped; the valid ones are kept. Data files go under `data` at their
//! directory's path (`dir/data.yaml` at the root, `dir/a/data.json` under `data.a`), as in OPA bundles.
//!
//! # Engines
//!
//! The hot path runs regorus' bytecode VM (about 3× the tree-walking interpreter on the starter policies): the bundle is compiled
//! once to a program, and every thread that evaluates keeps its own VM, loaded with program and data once
//! and rebuilt only when the bundle changes. The VM compiler does not yet accept all of Rego (e.g. `with`
//! and `walk` reachable from the entrypoint); such a bundle falls back to the interpreter with a warning.
//! Either way an evaluation is bounded by `eval_timeout` (and an instruction limit on the VM).

mod ast;
mod bundle;
mod coverage;
mod debug;
mod eval;
mod explain;
mod lint;
mod signature;
pub(crate) mod starter;
mod testing;
#[cfg(test)]
mod tests;
mod value;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::action::Operation;
use crate::config::Problem;

pub use eval::Policies;
pub(crate) use eval::{Evaluation, WatchEvent};
pub(crate) use explain::Explanation;
pub(crate) use lint::{Severity, check_bundle};
pub(crate) use signature::{
    SIGNATURE_FILE, SignatureError, generate_key, sign_bundle, verify_bundle,
};
pub(crate) use testing::{TestOptions, run_tests, write_report};

/// The rule every bundle must define: the set of decisions for the input alert.
pub(crate) const ENTRYPOINT: &str = "data.deprovd.decisions";

/// `[policy]` section of the configuration.
///
/// ```toml
/// [policy]
/// dir = "./policies"        # every *.rego + data.json/data.yaml below it
/// eval_timeout = "50ms"     # per-alert evaluation budget (humantime)
/// watch = true              # reload when the files change
/// engine = "auto"           # auto | vm | interpreter
/// max_instructions = 1000000
/// retain_alerts = "30d"     # keep decided alerts for `policy diff --since` (default: not kept)
/// shadow_dir = "./candidate" # evaluate a candidate beside the live bundle, never executed
/// verify_key = "/etc/deprovd/policy.pub"  # load only bundles signed by its private key
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Directory holding the bundle (searched recursively; hidden entries skipped). Unset: the
    /// starter policies compiled into the binary ([`starter`]), logged as such.
    pub dir: Option<PathBuf>,
    /// Time budget for one evaluation; exceeding it yields an error for that alert, never a hang.
    #[serde(with = "humantime_serde")]
    pub eval_timeout: Duration,
    /// Poll the directory (about once a second) and reload when its digest changes.
    pub watch: bool,
    /// Which evaluator to use; `auto` prefers the VM and falls back to the interpreter.
    pub engine: Backend,
    /// VM instruction budget per evaluation: a second, clock-independent bound next to `eval_timeout`.
    pub max_instructions: usize,
    /// Keep every decided alert this long in the state store, for `deprovd policy diff --since`
    /// (e.g. `"30d"`); absent: alerts are not kept.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub retain_alerts: Option<Duration>,
    /// A candidate bundle evaluated on live traffic beside `dir`, its decisions compared and never
    /// executed (`GET /v1/policy/shadow`); hot-reloaded like `dir`. Absent: no shadow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_dir: Option<PathBuf>,
    /// Ed25519 public key (base64 file, `deprovd policy keygen`): when set, a bundle loads (and
    /// reloads) only with a valid `.signature` by the matching private key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_key: Option<PathBuf>,
    /// Export every evaluation in OPA's decision-log shape (`[policy.decision_log]`); absent: not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_log: Option<DecisionLogConfig>,
}

/// `[policy.decision_log]`: where evaluations are exported, OPA style.
///
/// ```toml
/// [policy.decision_log]
/// url = "https://logs.example/v1/decisions"   # takes a JSON array of OPA decision-log events
/// include_input = false                        # the input holds personal data: off by default
/// queue = 10000                                # events waiting; beyond, new ones are dropped
/// timeout = "5s"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionLogConfig {
    pub url: String,
    #[serde(default)]
    pub include_input: bool,
    #[serde(default = "DecisionLogConfig::default_queue")]
    pub queue: usize,
    #[serde(
        default = "DecisionLogConfig::default_timeout",
        with = "humantime_serde"
    )]
    pub timeout: Duration,
}

impl DecisionLogConfig {
    fn default_queue() -> usize {
        10_000
    }
    fn default_timeout() -> Duration {
        Duration::from_secs(5)
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            dir: None,
            eval_timeout: Duration::from_millis(50),
            watch: true,
            engine: Backend::Auto,
            max_instructions: 1_000_000,
            retain_alerts: None,
            shadow_dir: None,
            verify_key: None,
            decision_log: None,
        }
    }
}

impl PolicyConfig {
    /// Pure validation: report every problem under `path` (normally `"policy"`).
    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        if self.dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
            problems.push(Problem::new(
                format!("{path}.dir"),
                "must name the policy directory (or leave it unset for the embedded starter policies)",
            ));
        }
        if self.eval_timeout.is_zero() {
            problems.push(Problem::new(
                format!("{path}.eval_timeout"),
                "must be greater than zero (e.g. \"50ms\")",
            ));
        } else if self.eval_timeout > Duration::from_secs(10) {
            problems.push(Problem::new(
                format!("{path}.eval_timeout"),
                "is over 10s: evaluation is per alert and blocks a worker thread; use at most \"10s\"",
            ));
        }
        if self.retain_alerts.is_some_and(|d| d.is_zero()) {
            problems.push(Problem::new(
                format!("{path}.retain_alerts"),
                "must be greater than zero (e.g. \"30d\"), or absent to keep no alerts",
            ));
        }
        if let Some(log) = &self.decision_log {
            let url = reqwest::Url::parse(&log.url);
            let ok = url.as_ref().is_ok_and(|u| {
                u.scheme() == "https" || (u.scheme() == "http" && crate::net::is_loopback_url(u))
            });
            if !ok {
                problems.push(Problem::new(
                    format!("{path}.decision_log.url"),
                    "must be an https URL (http only to a loopback address)",
                ));
            }
            if log.queue == 0 {
                problems.push(Problem::new(
                    format!("{path}.decision_log.queue"),
                    "must be greater than zero",
                ));
            }
        }
        if self.max_instructions == 0 {
            problems.push(Problem::new(
                format!("{path}.max_instructions"),
                "must be greater than zero",
            ));
        }
    }

    /// Read the bundle's files: the directory, or the embedded starter set when none is set.
    pub(crate) fn scan(&self) -> Result<bundle::Scan, PolicyError> {
        match &self.dir {
            Some(dir) => bundle::scan(dir),
            None => Ok(starter::scan()),
        }
    }

    /// Where the bundle comes from, for log lines and messages: `` `./policies` `` or
    /// "the embedded starter policies".
    pub fn location(&self) -> String {
        match &self.dir {
            Some(dir) => format!("`{}`", dir.display()),
            None => starter::EMBEDDED_NAME.to_string(),
        }
    }

    pub(crate) fn timer(&self) -> regorus::utils::limits::ExecutionTimerConfig {
        regorus::utils::limits::ExecutionTimerConfig {
            limit: self.eval_timeout,
            // Read the clock every 32 work units: negligible cost, sub-millisecond overshoot.
            check_interval: std::num::NonZeroU32::new(32).unwrap_or(std::num::NonZeroU32::MIN),
        }
    }
}

/// Evaluator choice (`policy.engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// VM if the bundle compiles to bytecode, else the interpreter (with a warning).
    #[default]
    Auto,
    /// VM only: a bundle the VM cannot compile is rejected.
    Vm,
    /// The tree-walking interpreter only (slower; accepts all of regorus' Rego).
    Interpreter,
}

/// Why a policy bundle could not be loaded, reloaded or tested.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The OS error is part of the message, not a `source`, so `{:#}` chains do not print it twice.
    #[error("cannot read `{path}`: {error} (check that it is readable)")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "policy directory `{dir}` does not exist: set `[policy] dir` to your bundle, write the starter \
         set there with `deprovd policy init {dir}`, or leave `dir` unset to serve the embedded starter policies"
    )]
    MissingDir { dir: PathBuf },
    #[error("`{dir}` is not a directory: `[policy] dir` names the folder holding the *.rego files")]
    NotADir { dir: PathBuf },
    #[error("no *.rego files in {dir}: point `[policy] dir` at the policy directory")]
    NoPolicies { dir: String },
    #[error("policy bundle {dir} has {} problem(s):\n  - {}", problems.len(), problems.join("\n  - "))]
    Invalid { dir: String, problems: Vec<String> },
    #[error("cannot write the report: {0}")]
    Output(#[source] std::io::Error),
    #[error("cannot build the policy input: {0}")]
    Input(String),
    #[error("policy bundle signature: {0}")]
    Signature(#[from] SignatureError),
}

/// How a decision is to be carried out.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Act now.
    #[default]
    Enforce,
    /// Record what would be done; call nothing.
    DryRun,
    /// Hold for an approver.
    Approval,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::DryRun => "dry_run",
            Mode::Approval => "approval",
        }
    }
}

/// One element of the policy's `data.deprovd.decisions` set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub action: Operation,
    /// Email, username or per-system id of the account (or host, for `contain_host`).
    pub subject: String,
    /// Connector instances to use; absent means every connector that supports the action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectors: Option<Vec<String>>,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub mode: Mode,
    /// Stable rule id; part of the idempotency key.
    pub rule: String,
}
