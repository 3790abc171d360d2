//! Connectors carry actions out on one target system each.
//!
//! A [`Connector`] instance is built from the config: HTTP targets from a declarative spec file in
//! `connectors/*.yaml` run by [`http`], protocols that are not HTTP (LDAP) natively. Every call returns an
//! [`Outcome`]; the executor alone decides what to do with it (retry, fail, record).

pub mod http;
pub mod ldap;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What can be done to an account or host. The policy's `action` field uses the same names.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    DisableAccount,
    EnableAccount,
    RevokeSessions,
    RevokeTokens,
    RemoveGroupMemberships,
    /// Re-adds the memberships a `remove_group_memberships` recorded as its pre-state.
    RestoreGroupMemberships,
    ResetCredentials,
    ContainHost,
    LiftContainment,
    Notify,
}

impl Operation {
    pub const ALL: [Operation; 10] = [
        Operation::DisableAccount,
        Operation::EnableAccount,
        Operation::RevokeSessions,
        Operation::RevokeTokens,
        Operation::RemoveGroupMemberships,
        Operation::RestoreGroupMemberships,
        Operation::ResetCredentials,
        Operation::ContainHost,
        Operation::LiftContainment,
        Operation::Notify,
    ];

    /// snake_case name, as in policies, specs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::DisableAccount => "disable_account",
            Operation::EnableAccount => "enable_account",
            Operation::RevokeSessions => "revoke_sessions",
            Operation::RevokeTokens => "revoke_tokens",
            Operation::RemoveGroupMemberships => "remove_group_memberships",
            Operation::RestoreGroupMemberships => "restore_group_memberships",
            Operation::ResetCredentials => "reset_credentials",
            Operation::ContainHost => "contain_host",
            Operation::LiftContainment => "lift_containment",
            Operation::Notify => "notify",
        }
    }

    pub fn parse(s: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// The operation that undoes this one, if it can be undone.
    pub fn reversal(self) -> Option<Operation> {
        match self {
            Operation::DisableAccount => Some(Operation::EnableAccount),
            Operation::RemoveGroupMemberships => Some(Operation::RestoreGroupMemberships),
            Operation::ContainHost => Some(Operation::LiftContainment),
            _ => None,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
        Self {
            outcome,
            pre_state: None,
            summary: summary.into(),
        }
    }
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
}

/// The connectors of one running instance, by name.
pub type ConnectorSet = BTreeMap<String, Arc<dyn Connector>>;
