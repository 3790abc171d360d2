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
