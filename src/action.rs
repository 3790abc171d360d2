//! What an action *is*, independent of where it is stored or how it is carried out: the
//! [`Operation`] a connector performs, the [`ActionRecord`] the ledger keeps for each (connector,
//! operation, subject), its [`ActionState`] and [`Origin`], and the keys that make side effects
//! effectively-once ([`action_key`]) and alert storms coalesce ([`coalesce_key`]).
//!
//! It sits below the ledger, the connectors, the policy and the planner, which all speak of actions
//! and operations, so none of them has to import another to name one.

use std::fmt;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::alert::Severity;

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

    /// Whether the operation takes access away (disable, revoke, remove, reset, contain): the ones
    /// the protected-groups guard checks before calling a target. Reversals and `notify` are not.
    pub fn is_destructive(self) -> bool {
        matches!(
            self,
            Operation::DisableAccount
                | Operation::RevokeSessions
                | Operation::RevokeTokens
                | Operation::RemoveGroupMemberships
                | Operation::ResetCredentials
                | Operation::ContainHost
        )
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

/// Where an action is in its life.
///
/// `planned → (awaiting_approval) → running → succeeded | failed | skipped | cancelled`, and
/// `restored` once a reversal has undone a succeeded action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionState {
    Planned,
    AwaitingApproval,
    Running,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
    Restored,
}

impl ActionState {
    /// Every state, for code that must enumerate them (the Redis store's Lua state lists, the
    /// lifecycle diagram check). A new state belongs here as well as in the enum.
    pub(crate) const ALL: [ActionState; 8] = [
        ActionState::Planned,
        ActionState::AwaitingApproval,
        ActionState::Running,
        ActionState::Succeeded,
        ActionState::Failed,
        ActionState::Skipped,
        ActionState::Cancelled,
        ActionState::Restored,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionState::Planned => "planned",
            ActionState::AwaitingApproval => "awaiting_approval",
            ActionState::Running => "running",
            ActionState::Succeeded => "succeeded",
            ActionState::Failed => "failed",
            ActionState::Skipped => "skipped",
            ActionState::Cancelled => "cancelled",
            ActionState::Restored => "restored",
        }
    }

    /// Still has work to do (counts towards `deprovd_ledger_pending`).
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            ActionState::Planned | ActionState::AwaitingApproval | ActionState::Running
        )
    }

    /// Holds the coalesce slot for the same (subject, connector, operation) while in this state, so
    /// that later actions may be absorbed by it (see [`absorbs`](Self::absorbs) for which).
    pub fn absorbs_duplicates(self) -> bool {
        matches!(
            self,
            ActionState::Planned
                | ActionState::AwaitingApproval
                | ActionState::Running
                | ActionState::Succeeded
        )
    }

    /// Whether a slot holder in this state absorbs a later action that arrives in state `incoming`.
    ///
    /// A held action (`awaiting_approval`) absorbs only actions that would be held too (another
    /// alert while the breaker is open or under an approval-mode rule): absorbing a runnable one
    /// (`planned`, such as a responder's manual lockout) would make it wait for an approval that may
    /// never come and then expire without running. The runnable action
    /// [`supersedes`](Self::superseded_by) the held one instead.
    pub fn absorbs(self, incoming: ActionState) -> bool {
        self.absorbs_duplicates() && !self.superseded_by(incoming)
    }

    /// A slot holder in this state gives the slot up to a later action in state `incoming`, which is
    /// recorded as new; the caller then cancels the holder (see [`Inserted::Superseded`]).
    pub fn superseded_by(self, incoming: ActionState) -> bool {
        self == ActionState::AwaitingApproval && incoming == ActionState::Planned
    }
}

/// Why an action was skipped, held for approval or cancelled — typed, so that no decision is ever
/// read back from note text (the `note` keeps the words for people). Metrics, approvals and the
/// console branch on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StateReason {
    /// `skipped`: the subject is protected by name or glob (`[guards] protected`).
    Protected,
    /// `skipped`: the subject is in a protected group (`[guards] protected_groups`).
    ProtectedGroup,
    /// `skipped`: dry run — the global switch or the decision's `dry_run` mode.
    DryRun,
    /// `awaiting_approval`: the policy decision asked for approval.
    PolicyApproval,
    /// `awaiting_approval`: the blast-radius breaker is open for its scope.
    Breaker,
    /// `awaiting_approval`: the responder asked for a second person (`require_approval`).
    FourEyes,
    /// `cancelled`: an approver rejected it.
    Rejected,
    /// `cancelled`: nobody approved it before `expires_at`; it never runs.
    Expired,
    /// `cancelled`: a runnable action for the same subject, connector and operation took its place.
    Superseded,
}

impl StateReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StateReason::Protected => "protected",
            StateReason::ProtectedGroup => "protected_group",
            StateReason::DryRun => "dry_run",
            StateReason::PolicyApproval => "policy_approval",
            StateReason::Breaker => "breaker",
            StateReason::FourEyes => "four_eyes",
            StateReason::Rejected => "rejected",
            StateReason::Expired => "expired",
            StateReason::Superseded => "superseded",
        }
    }
}

/// What caused an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// A policy decision on an alert.
    Alert {
        alert_id: String,
        dedup_key: String,
        /// When the vendor saw the detection (for time-to-containment).
        alert_time: DateTime<Utc>,
        /// The alert's severity: how urgent the action is within its connector's lane (see
        /// [`Urgency`]). Absent in records written before it was kept (read as medium).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        severity: Option<Severity>,
    },
    /// A responder's manual lockout or restore.
    Manual { request_id: String, actor: String },
}

/// One (connector, operation, subject) to carry out, with everything needed to resume it after a crash
/// and to reverse it later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Action")]
pub struct ActionRecord {
    /// Idempotency key: see [`action_key`].
    pub key: String,
    pub origin: Origin,
    /// Stable id of the policy rule (or `manual`).
    pub rule: String,
    /// Digest of the policy bundle that decided it (empty for manual actions).
    #[serde(default)]
    pub policy_digest: String,
    pub subject: String,
    pub connector: String,
    pub operation: Operation,
    pub reason: String,
    pub state: ActionState,
    /// Connector calls made so far.
    #[serde(default)]
    pub attempts: u32,
    /// When the executor may next try; `None` once nothing is left to do.
    #[serde(default)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Short summary of the target's last answer (status, ids); never secrets.
    #[serde(default)]
    pub response: Option<String>,
    /// What the reversal needs: prior status, groups removed, keys deactivated.
    #[serde(default)]
    pub pre_state: Option<serde_json::Value>,
    /// For reversal actions: the key of the action being undone.
    #[serde(default)]
    pub reverses: Option<String>,
    /// Later alerts absorbed by this action (coalesced instead of calling the target again).
    #[serde(default)]
    pub linked_alerts: Vec<String>,
    /// Why a guard skipped or held it, or `dry_run`, in words for people.
    #[serde(default)]
    pub note: Option<String>,
    /// Why it is skipped, held or cancelled, typed (see [`StateReason`]); `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<StateReason>,
    /// Who asked for it, set when it is held for approval: the API caller (token name) for manual
    /// actions, `policy:<rule>` for automatic ones. An approver must be someone else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// When a held action's approval lapses: after it, the action is cancelled and never executes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What makes one action: why it exists and what it does. [`ActionRecord::planned`] turns it into a
/// fresh record; everything else on the record is state the ledger and the executor move along.
#[derive(Debug, Clone)]
pub struct NewAction {
    pub key: String,
    pub origin: Origin,
    pub rule: String,
    pub policy_digest: String,
    pub subject: String,
    pub connector: String,
    pub operation: Operation,
    pub reason: String,
}

impl ActionRecord {
    /// A fresh action, planned and due at `now`: no attempts, no answer, nothing to reverse yet.
    /// Callers that hold it (approval) or skip it (dry run) set `state`, `next_attempt_at`, `note`
    /// and `state_reason` after.
    pub fn planned(new: NewAction, now: DateTime<Utc>) -> Self {
        let NewAction {
            key,
            origin,
            rule,
            policy_digest,
            subject,
            connector,
            operation,
            reason,
        } = new;
        Self {
            key,
            origin,
            rule,
            policy_digest,
            subject,
            connector,
            operation,
            reason,
            state: ActionState::Planned,
            attempts: 0,
            next_attempt_at: Some(now),
            last_error: None,
            response: None,
            pre_state: None,
            reverses: None,
            linked_alerts: Vec::new(),
            note: None,
            state_reason: None,
            requested_by: None,
            expires_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// Who asked for this action: the recorded `requested_by`, else derived from its origin (the
    /// API caller of a manual action, `policy:<rule>` for an automatic one).
    pub fn requester(&self) -> String {
        if let Some(r) = &self.requested_by {
            return r.clone();
        }
        match &self.origin {
            Origin::Manual { actor, .. } => actor.clone(),
            Origin::Alert { .. } => format!("policy:{}", self.rule),
        }
    }

    /// Caused by a policy decision on an alert (not by a responder).
    pub fn is_automatic(&self) -> bool {
        matches!(self.origin, Origin::Alert { .. })
    }

    /// How urgent this action is among the due actions of its connector's lane.
    pub fn urgency(&self) -> Urgency {
        Urgency::of(&self.origin)
    }
}

/// The order in which a connector's lane starts its due actions: a responder's manual action
/// (lockout or restore) first, then automatic ones by their alert's severity, critical first; the
/// stores break ties by the time the action became due (oldest first), then by key. So a storm of
/// low-severity notifications never delays a critical disable on the same connector, and nothing
/// on another connector delays either (each connector has its own lane).
///
/// Ranks are small integers, most urgent `0`, [`Urgency::LEVELS`] in all; an automatic action
/// whose severity is unknown ranks as medium.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Urgency(u8);

impl Urgency {
    /// Number of ranks: manual, then critical, high, medium, low, informational.
    pub const LEVELS: u8 = 6;

    pub fn of(origin: &Origin) -> Urgency {
        Urgency(match origin {
            Origin::Manual { .. } => 0,
            Origin::Alert { severity, .. } => match severity.unwrap_or(Severity::Medium) {
                Severity::Critical => 1,
                Severity::High => 2,
                Severity::Medium => 3,
                Severity::Low => 4,
                Severity::Informational => 5,
            },
        })
    }

    /// `0` is the most urgent.
    pub fn rank(self) -> u8 {
        self.0
    }
}

/// `sha256(dedup key, rule, connector, operation, subject)`, hex. Fields are length-prefixed so that no
/// two different tuples can produce the same preimage.
pub(crate) fn action_key(
    dedup_key: &str,
    rule: &str,
    connector: &str,
    operation: Operation,
    subject: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [dedup_key, rule, connector, operation.as_str(), subject] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// The coalescing identity of an action: at most one live action per (subject, connector, operation).
pub(crate) fn coalesce_key(subject: &str, connector: &str, operation: Operation) -> String {
    let mut h = Sha256::new();
    for part in [subject, connector, operation.as_str()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// A planned `disable_account` for `subject` on `connector`, caused by an alert, due now: the record
/// unit tests of the guards, the breaker and the ledger start from.
#[cfg(test)]
pub(crate) fn sample(subject: &str, connector: &str) -> ActionRecord {
    let now = Utc::now();
    let new = NewAction {
        key: action_key("d", "r", connector, Operation::DisableAccount, subject),
        origin: Origin::Alert {
            alert_id: "a".into(),
            dedup_key: "d".into(),
            alert_time: now,
            severity: None,
        },
        rule: "r".into(),
        policy_digest: String::new(),
        subject: subject.into(),
        connector: connector.into(),
        operation: Operation::DisableAccount,
        reason: "test".into(),
    };
    ActionRecord::planned(new, now)
}

#[cfg(test)]
mod tests {
    use super::ActionState;

    #[test]
    fn the_lifecycle_diagram_in_the_docs_names_every_state() {
        let doc = include_str!("../docs/actions.md");
        let diagram = doc
            .split("```mermaid")
            .nth(1)
            .and_then(|d| d.split("```").next())
            .expect("docs/actions.md has a mermaid diagram");
        // Exhaustive: a new state does not compile until it is listed here (and, with it, in
        // `ActionState::ALL` and drawn).
        let every = |s: ActionState| match s {
            ActionState::Planned
            | ActionState::AwaitingApproval
            | ActionState::Running
            | ActionState::Succeeded
            | ActionState::Failed
            | ActionState::Skipped
            | ActionState::Cancelled
            | ActionState::Restored => s.as_str(),
        };
        for state in ActionState::ALL {
            let name = every(state);
            assert!(
                diagram
                    .lines()
                    .any(|l| l.trim_start().starts_with(&format!("{name} -->"))
                        || l.contains(&format!("--> {name}:"))),
                "`{name}` is not drawn in docs/actions.md"
            );
        }
    }
}
