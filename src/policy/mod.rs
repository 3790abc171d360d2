//! Rego policies: load every `*.rego` and `data.json`/`data.yaml` under the policy directory, compile
//! once, evaluate per alert, reload atomically.

use serde::{Deserialize, Serialize};

use crate::connectors::Operation;

/// How a decision is to be carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
// TEMP-PLACEHOLDER
#[derive(Debug, Clone, Default, Deserialize)] pub struct PolicyConfig { pub dir: std::path::PathBuf, pub watch: bool }
impl PolicyConfig { pub fn validate(&self, _p: &str, _pr: &mut Vec<crate::config::Problem>) {} }
pub struct Evaluation { pub decisions: Vec<Decision>, pub errors: Vec<String>, pub digest: std::sync::Arc<str> }
pub struct Policies;
impl Policies {
  pub fn load(_c: &PolicyConfig) -> Result<std::sync::Arc<Policies>, std::io::Error> { todo!() }
  pub fn evaluate(&self, _a: &crate::alert::Alert, _n: chrono::DateTime<chrono::Utc>, _c: &serde_json::Value) -> Evaluation { todo!() }
  pub fn reload(&self) -> Result<String, std::io::Error> { todo!() }
  pub fn spawn_watcher(self: std::sync::Arc<Self>, _s: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<()> { todo!() }
}
