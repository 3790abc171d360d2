//! Manual lockouts and reversals for incident responders.
//!
//! A lockout enters the pipeline at the guard step: it becomes ordinary [`ActionRecord`]s
//! (`Origin::Manual`, rule `manual`) with idempotency keys derived from the lockout's request id, so a
//! retried request never duplicates an action, guards skip protected subjects exactly as for alerts,
//! and the executor runs them with the same retries and crash safety. The lockout itself (who asked,
//! why, which actions) is a small JSON document in the state store beside the ledger.
//!
//! A restore creates, for every succeeded action, its reversal ([`Operation::reversal`]) carrying the
//! original's recorded `pre_state` and `reverses = <original key>`; the executor marks the original
//! `restored` once the reversal succeeds. The reversal's key is derived from the original's, so asking
//! twice restores once — and it works the same for alert-caused actions.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::action::Operation;
use crate::ledger::{
    ActionRecord, ActionState, ActionStore, DocStore, NewAction, Origin, StateReason, StoreError,
    action_key,
};
use crate::pipeline::{Pipeline, PipelineError, RecordedAction};
use crate::plan::normalize_subject;

mod create;
mod list;
mod restore;
mod retry;
#[cfg(test)]
mod tests;

pub(crate) use create::{create, plan};
pub(crate) use list::{LockoutPage, LockoutQuery, list};
pub(crate) use restore::{restore_action, restore_key, restore_lockout};
pub(crate) use retry::retry_action;

/// State-store namespace of lockout documents (id → [`Lockout`]).
pub(crate) const LOCKOUT_NS: &str = "lockout";
/// State-store namespace of `Idempotency-Key` claims.
pub(crate) const IDEMPOTENCY_NS: &str = "idempotency";
/// How long an `Idempotency-Key` is remembered: long enough for any client's retries.
pub(crate) const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
/// Rule id of manual lockout actions.
pub(crate) const MANUAL_RULE: &str = "manual";
/// Rule id of reversal actions.
pub(crate) const RESTORE_RULE: &str = "restore";
/// What a lockout does when the request names no operations.
pub(crate) const DEFAULT_OPERATIONS: [Operation; 2] =
    [Operation::DisableAccount, Operation::RevokeSessions];

/// Why a lockout or restore request could not be served. Each variant maps to one HTTP status and a
/// stable `code` ([`LockoutError::code`]).
#[derive(Debug, thiserror::Error)]
pub(crate) enum LockoutError {
    /// The request itself is wrong (HTTP 422); `code` says how.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// No lockout or action with this id (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The action exists but cannot be undone now (HTTP 409).
    #[error("{0}")]
    NotRestorable(String),
    /// The action is not in a state a retry can start from, or is being worked on (HTTP 409).
    #[error("{0}")]
    NotRetryable(String),
    /// The `Idempotency-Key` was used before with a different request (HTTP 422).
    #[error(
        "Idempotency-Key `{0}` was already used with a different request; use a new key for a new request"
    )]
    IdempotencyKeyReused(String),
    /// The state store is down: nothing was (or may have been fully) recorded; retry (HTTP 503).
    #[error("state store unavailable: {0}")]
    Unavailable(String),
}

impl LockoutError {
    /// Stable machine-readable code for API errors.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            LockoutError::Invalid { code, .. } => code,
            LockoutError::NotFound(_) => "not_found",
            LockoutError::NotRestorable(_) => "not_restorable",
            LockoutError::NotRetryable(_) => "not_retryable",
            LockoutError::IdempotencyKeyReused(_) => "idempotency_key_reused",
            LockoutError::Unavailable(_) => "unavailable",
        }
    }

    fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        LockoutError::Invalid {
            code,
            message: message.into(),
        }
    }
}

impl From<StoreError> for LockoutError {
    fn from(e: StoreError) -> Self {
        LockoutError::Unavailable(e.to_string())
    }
}

impl From<PipelineError> for LockoutError {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Rejected { code, reason } => LockoutError::invalid(code, reason),
            PipelineError::Unavailable(m) => LockoutError::Unavailable(m),
        }
    }
}

/// `POST /v1/lockouts` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LockoutRequest {
    /// Email, username or per-system id, as the connectors' lookups understand it.
    pub subject: String,
    /// Connector instances to act on; default: every configured one that can do the operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectors: Option<Vec<String>>,
    /// Operations to perform; default [`DEFAULT_OPERATIONS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations: Option<Vec<Operation>>,
    /// Why: stored with the lockout and sent to targets that take a comment.
    pub reason: String,
    /// Incident or ticket reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// Four eyes: hold every action for an approver other than the requester instead of running it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_approval: bool,
}

impl LockoutRequest {
    /// SHA-256 of the request's canonical JSON: "the same body" for `Idempotency-Key`, whatever the
    /// client's whitespace or field order.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(serde_json::to_vec(self).unwrap_or_default()))
    }
}

/// One action a lockout caused (its own, or the live action that absorbed it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LockoutAction {
    /// Ledger key to follow for this (connector, operation).
    pub key: String,
    pub connector: String,
    pub operation: Operation,
}

/// The stored lockout: who asked, why, and which ledger actions carry it out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Lockout {
    /// Request id (UUIDv7: sortable by time).
    pub id: String,
    pub subject: String,
    pub reason: String,
    #[serde(default)]
    pub ticket: Option<String>,
    /// Name of the API token that asked.
    pub requester: String,
    pub created_at: DateTime<Utc>,
    pub actions: Vec<LockoutAction>,
}

/// One action in a create or restore answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ActionSummary {
    pub key: String,
    pub connector: String,
    pub operation: Operation,
    pub state: ActionState,
    /// Why a guard skipped it, or that it was absorbed by a live action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The `202` answer of `POST /v1/lockouts`. Deterministic for a given request id and body, so a
/// replay with the same `Idempotency-Key` gets the same answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "LockoutCreated")]
pub struct Created {
    pub id: String,
    pub subject: String,
    pub actions: Vec<ActionSummary>,
}

/// The reversal of one action, as `GET /v1/lockouts/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReversalStatus {
    pub key: String,
    pub operation: Operation,
    pub state: ActionState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Live status of one lockout action, read from the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "LockoutActionStatus")]
pub struct ActionStatus {
    pub key: String,
    pub connector: String,
    pub operation: Operation,
    /// `None` only if the ledger lost the record (should not happen).
    pub state: Option<ActionState>,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    /// Set once a restore was requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reversal: Option<ReversalStatus>,
}

/// `GET /v1/lockouts/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "LockoutStatus")]
pub struct Status {
    pub id: String,
    pub subject: String,
    pub reason: String,
    #[serde(default)]
    pub ticket: Option<String>,
    pub requester: String,
    pub created_at: DateTime<Utc>,
    /// No action (nor reversal) has work left to do.
    pub settled: bool,
    pub actions: Vec<ActionStatus>,
}

/// One line of a restore answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RestoreItem {
    /// The action being undone.
    pub original_key: String,
    pub connector: String,
    pub operation: Operation,
    /// The reversal action, when one was (or had already been) recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reversal_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reversal_operation: Option<Operation>,
    /// The reversal's state, or the original's when nothing could be reversed.
    pub state: ActionState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The `202` answer of a restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Restored {
    /// The lockout id, or the action key for `POST /v1/actions/{key}/restore`.
    pub id: String,
    pub actions: Vec<RestoreItem>,
}

/// A new lockout request id: UUIDv7, so ids sort by creation time.
pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The stored lockout `id`.
pub(crate) async fn get(
    store: &(impl DocStore + ?Sized),
    id: &str,
) -> Result<Lockout, LockoutError> {
    let doc = store
        .get_json(LOCKOUT_NS, id)
        .await?
        .ok_or_else(|| LockoutError::NotFound(format!("no lockout with id `{id}`")))?;
    serde_json::from_value(doc).map_err(|e| {
        LockoutError::Unavailable(format!(
            "lockout `{id}` is stored in an unreadable form: {e}"
        ))
    })
}

/// The lockout with every action's live state (and its reversal's, once restored).
pub(crate) async fn status(
    store: &(impl DocStore + ActionStore + ?Sized),
    id: &str,
) -> Result<Status, LockoutError> {
    let lockout = get(store, id).await?;
    let mut actions = Vec::with_capacity(lockout.actions.len());
    let mut settled = true;
    for la in &lockout.actions {
        let rec = store.get_action(&la.key).await?;
        let reversal = match rec
            .as_ref()
            .and_then(|r| r.operation.reversal().map(|op| (r, op)))
        {
            Some((r, op)) => {
                store
                    .get_action(&restore_key(r, op))
                    .await?
                    .map(|rev| ReversalStatus {
                        key: rev.key,
                        operation: rev.operation,
                        state: rev.state,
                        last_error: rev.last_error,
                    })
            }
            None => None,
        };
        settled &= rec.as_ref().is_none_or(|r| !r.state.is_pending())
            && reversal.as_ref().is_none_or(|r| !r.state.is_pending());
        actions.push(ActionStatus {
            key: la.key.clone(),
            connector: la.connector.clone(),
            operation: la.operation,
            state: rec.as_ref().map(|r| r.state),
            attempts: rec.as_ref().map_or(0, |r| r.attempts),
            last_error: rec.as_ref().and_then(|r| r.last_error.clone()),
            note: rec.as_ref().and_then(|r| r.note.clone()),
            updated_at: rec.as_ref().map(|r| r.updated_at),
            reversal,
        });
    }
    Ok(Status {
        id: lockout.id,
        subject: lockout.subject,
        reason: lockout.reason,
        ticket: lockout.ticket,
        requester: lockout.requester,
        created_at: lockout.created_at,
        settled,
        actions,
    })
}

/// Where the claim of `key` (per caller and scope) is stored.
fn idempotency_slot(caller: &str, scope: &str, key: &str) -> String {
    let mut h = Sha256::new();
    for part in [caller, scope, key] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Whether `key` was claimed (per caller and scope), without claiming it: `Some(true)` with the same
/// `fingerprint`, `Some(false)` with another one, `None` when unclaimed. For routes that claim a key
/// only once the request succeeded, so that a refusal is never remembered as an answer.
pub(crate) async fn peek_idempotency_key(
    store: &dyn DocStore,
    caller: &str,
    scope: &str,
    key: &str,
    fingerprint: &str,
) -> Result<Option<bool>, LockoutError> {
    let slot = idempotency_slot(caller, scope, key);
    Ok(store
        .get_json(IDEMPOTENCY_NS, &slot)
        .await?
        .map(|existing| existing["fingerprint"].as_str() == Some(fingerprint)))
}

/// An `Idempotency-Key` claim: the first request to present `key` (per caller and `scope`) stores
/// its `fingerprint` and a fresh request id with `SET NX`; a later one with the same fingerprint gets
/// that id back, so it replays the same request instead of making a second; a different fingerprint
/// is [`LockoutError::IdempotencyKeyReused`].
pub(crate) async fn claim_idempotency_key(
    store: &dyn DocStore,
    caller: &str,
    scope: &str,
    key: &str,
    fingerprint: &str,
    fresh_id: impl Fn() -> String,
) -> Result<String, LockoutError> {
    let slot = idempotency_slot(caller, scope, key);
    // Two rounds: a claim can expire between our failed NX and our read.
    for _ in 0..2 {
        let id = fresh_id();
        let doc = serde_json::json!({"fingerprint": fingerprint, "id": id});
        if store
            .put_json(IDEMPOTENCY_NS, &slot, &doc, true, Some(IDEMPOTENCY_TTL))
            .await?
        {
            return Ok(id);
        }
        if let Some(existing) = store.get_json(IDEMPOTENCY_NS, &slot).await? {
            if existing["fingerprint"].as_str() != Some(fingerprint) {
                return Err(LockoutError::IdempotencyKeyReused(key.to_string()));
            }
            return existing["id"].as_str().map(str::to_string).ok_or_else(|| {
                LockoutError::Unavailable(format!("idempotency claim `{slot}` has no id"))
            });
        }
    }
    Err(LockoutError::Unavailable(
        "idempotency claim kept changing; retry the request".into(),
    ))
}
