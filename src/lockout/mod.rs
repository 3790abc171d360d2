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
    ActionRecord, ActionState, Origin, StateReason, StateStore, StoreError, action_key,
};
use crate::pipeline::{Pipeline, PipelineError, RecordedAction};
use crate::plan::normalize_subject;

/// State-store namespace of lockout documents (id → [`Lockout`]).
pub const LOCKOUT_NS: &str = "lockout";
/// State-store namespace of `Idempotency-Key` claims.
pub const IDEMPOTENCY_NS: &str = "idempotency";
/// How long an `Idempotency-Key` is remembered: long enough for any client's retries.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
/// Rule id of manual lockout actions.
pub const MANUAL_RULE: &str = "manual";
/// Rule id of reversal actions.
pub const RESTORE_RULE: &str = "restore";
/// What a lockout does when the request names no operations.
pub const DEFAULT_OPERATIONS: [Operation; 2] =
    [Operation::DisableAccount, Operation::RevokeSessions];

/// Why a lockout or restore request could not be served. Each variant maps to one HTTP status and a
/// stable `code` ([`LockoutError::code`]).
#[derive(Debug, thiserror::Error)]
pub enum LockoutError {
    /// The request itself is wrong (HTTP 422); `code` says how.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// No lockout or action with this id (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The action exists but cannot be undone now (HTTP 409).
    #[error("{0}")]
    NotRestorable(String),
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
    pub fn code(&self) -> &'static str {
        match self {
            LockoutError::Invalid { code, .. } => code,
            LockoutError::NotFound(_) => "not_found",
            LockoutError::NotRestorable(_) => "not_restorable",
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockoutAction {
    /// Ledger key to follow for this (connector, operation).
    pub key: String,
    pub connector: String,
    pub operation: Operation,
}

/// The stored lockout: who asked, why, and which ledger actions carry it out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Created {
    pub id: String,
    pub subject: String,
    pub actions: Vec<ActionSummary>,
}

/// The reversal of one action, as `GET /v1/lockouts/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReversalStatus {
    pub key: String,
    pub operation: Operation,
    pub state: ActionState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Live status of one lockout action, read from the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Restored {
    /// The lockout id, or the action key for `POST /v1/actions/{key}/restore`.
    pub id: String,
    pub actions: Vec<RestoreItem>,
}

/// A new lockout request id: UUIDv7, so ids sort by creation time.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Key of the reversal of `original`: derived from it alone, so any number of restore requests (for
/// a lockout or for the action directly) record one reversal.
pub fn restore_key(original: &ActionRecord, reversal: Operation) -> String {
    action_key(
        &original.key,
        RESTORE_RULE,
        &original.connector,
        reversal,
        &original.subject,
    )
}

/// Expand a request into actions: validate it against the configured connectors and key every action
/// by the request id. Pure: guards are applied when recording.
pub fn plan(
    capabilities: &BTreeMap<String, std::collections::BTreeSet<Operation>>,
    req: &LockoutRequest,
    id: &str,
    requester: &str,
    now: DateTime<Utc>,
) -> Result<Vec<ActionRecord>, LockoutError> {
    // Control and invisible characters, or an absurd length: 422 with the reason, nothing recorded.
    crate::identity::check_subject(&req.subject)
        .map_err(|e| LockoutError::invalid("invalid_subject", format!("`subject`: {e}")))?;
    let subject = normalize_subject(&req.subject);
    if subject.is_empty() {
        return Err(LockoutError::invalid(
            "invalid_request",
            "`subject` must not be empty",
        ));
    }
    if req.reason.trim().is_empty() {
        return Err(LockoutError::invalid(
            "invalid_request",
            "`reason` must not be empty: say why, for the audit trail and the account owner",
        ));
    }
    let ops: Vec<Operation> = match &req.operations {
        Some(ops) if ops.is_empty() => {
            return Err(LockoutError::invalid(
                "invalid_request",
                "`operations` must not be empty (omit it for disable_account + revoke_sessions)",
            ));
        }
        Some(ops) => ops.clone(),
        None => DEFAULT_OPERATIONS.to_vec(),
    };
    for op in &ops {
        if matches!(
            op,
            Operation::EnableAccount
                | Operation::RestoreGroupMemberships
                | Operation::LiftContainment
        ) {
            return Err(LockoutError::invalid(
                "invalid_operation",
                format!("`{op}` undoes a lockout; use POST /v1/lockouts/{{id}}/restore instead"),
            ));
        }
    }
    let connectors: Vec<&str> = match &req.connectors {
        Some(names) if names.is_empty() => {
            return Err(LockoutError::invalid(
                "invalid_request",
                "`connectors` must not be empty (omit it for every configured connector)",
            ));
        }
        Some(names) => {
            for n in names {
                if !capabilities.contains_key(n) {
                    return Err(LockoutError::invalid(
                        "unknown_connector",
                        format!(
                            "connector `{n}` is not configured (configured: {})",
                            capabilities.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
            names.iter().map(String::as_str).collect()
        }
        None => capabilities.keys().map(String::as_str).collect(),
    };
    let both_explicit = req.connectors.is_some() && req.operations.is_some();
    let mut actions = BTreeMap::new();
    for connector in connectors {
        for op in &ops {
            let capable = capabilities
                .get(connector)
                .is_some_and(|caps| caps.contains(op));
            if !capable {
                if both_explicit {
                    return Err(LockoutError::invalid(
                        "unsupported_operation",
                        format!("connector `{connector}` cannot {op}"),
                    ));
                }
                continue;
            }
            let key = action_key(id, MANUAL_RULE, connector, *op, &subject);
            actions.entry(key.clone()).or_insert_with(|| ActionRecord {
                key,
                origin: Origin::Manual {
                    request_id: id.to_string(),
                    actor: requester.to_string(),
                },
                rule: MANUAL_RULE.to_string(),
                policy_digest: String::new(),
                subject: subject.clone(),
                connector: connector.to_string(),
                operation: *op,
                reason: req.reason.trim().to_string(),
                state: if req.require_approval {
                    ActionState::AwaitingApproval
                } else {
                    ActionState::Planned
                },
                attempts: 0,
                next_attempt_at: (!req.require_approval).then_some(now),
                last_error: None,
                response: None,
                pre_state: None,
                reverses: None,
                linked_alerts: Vec::new(),
                note: None,
                state_reason: req.require_approval.then_some(StateReason::FourEyes),
                requested_by: None,
                expires_at: None,
                created_at: now,
                updated_at: now,
            });
        }
    }
    if actions.is_empty() {
        return Err(LockoutError::invalid(
            "nothing_to_do",
            format!(
                "no configured connector can {}",
                ops.iter()
                    .map(|o| o.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        ));
    }
    Ok(actions.into_values().collect())
}

fn summary(r: &RecordedAction) -> ActionSummary {
    let (key, note) = match &r.coalesced_into {
        Some(into) => (
            into.clone(),
            Some("absorbed by a live action for the same subject, connector and operation".into()),
        ),
        None => (r.key.clone(), r.note.clone()),
    };
    ActionSummary {
        key,
        connector: r.connector.clone(),
        operation: r.operation,
        state: r.state,
        note,
    }
}

/// Record a lockout under request id `id` (a fresh [`new_id`], or the one an `Idempotency-Key`
/// claim holds). Recording again with the same id and request changes nothing and answers the same.
pub async fn create(
    pipeline: &Pipeline,
    req: &LockoutRequest,
    id: &str,
    requester: &str,
) -> Result<Created, LockoutError> {
    let now = Utc::now();
    // One spelling per account, as for alerts: a lockout of `CORP\jdoe` coalesces with an alert's
    // action for `jdoe@corp.example`. The request itself (and its fingerprint) keeps the original.
    let mut resolved = req.clone();
    resolved.subject = pipeline
        .decider
        .planner
        .identity()
        .check(&req.subject)
        .map_err(|e| LockoutError::invalid("invalid_subject", format!("`subject`: {e}")))?;
    let actions = plan(
        pipeline.decider.planner.capabilities(),
        &resolved,
        id,
        requester,
        now,
    )?;
    let subject = actions[0].subject.clone();
    let recorded = pipeline.record_manual(actions, id, true).await?;
    let summaries: Vec<ActionSummary> = recorded.iter().map(summary).collect();
    let lockout = Lockout {
        id: id.to_string(),
        subject: subject.clone(),
        reason: req.reason.trim().to_string(),
        ticket: req.ticket.clone().filter(|t| !t.trim().is_empty()),
        requester: requester.to_string(),
        created_at: now,
        actions: summaries
            .iter()
            .map(|s| LockoutAction {
                key: s.key.clone(),
                connector: s.connector.clone(),
                operation: s.operation,
            })
            .collect(),
    };
    let doc = serde_json::to_value(&lockout)
        .map_err(|e| LockoutError::Unavailable(format!("cannot encode lockout: {e}")))?;
    // NX: a replay keeps the first document (and its creation time).
    pipeline
        .store
        .put_json(LOCKOUT_NS, id, &doc, true, None)
        .await?;
    tracing::info!(lockout_id = %id, requester, subject = %subject, actions = summaries.len(), "lockout recorded");
    Ok(Created {
        id: id.to_string(),
        subject,
        actions: summaries,
    })
}

/// The stored lockout `id`.
pub async fn get(store: &dyn StateStore, id: &str) -> Result<Lockout, LockoutError> {
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
pub async fn status(store: &dyn StateStore, id: &str) -> Result<Status, LockoutError> {
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

/// What to do about one original action when restoring.
enum Plan {
    Reverse(Box<ActionRecord>),
    Report(RestoreItem),
}

fn reversal_for(original: &ActionRecord, request_id: &str, actor: &str) -> Plan {
    let report = |note: String| {
        Plan::Report(RestoreItem {
            original_key: original.key.clone(),
            connector: original.connector.clone(),
            operation: original.operation,
            reversal_key: None,
            reversal_operation: None,
            state: original.state,
            note: Some(note),
        })
    };
    let Some(op) = original.operation.reversal() else {
        return report(format!("{} cannot be undone", original.operation));
    };
    match original.state {
        ActionState::Succeeded | ActionState::Restored => {}
        s if s.is_pending() => {
            return report(format!(
                "still {}: restore again once it has settled",
                s.as_str()
            ));
        }
        s => {
            return report(format!(
                "{}: nothing was changed, nothing to undo",
                s.as_str()
            ));
        }
    }
    let now = Utc::now();
    Plan::Reverse(Box::new(ActionRecord {
        key: restore_key(original, op),
        origin: Origin::Manual {
            request_id: request_id.to_string(),
            actor: actor.to_string(),
        },
        rule: RESTORE_RULE.to_string(),
        policy_digest: String::new(),
        subject: original.subject.clone(),
        connector: original.connector.clone(),
        operation: op,
        reason: format!("restore: {}", original.reason),
        state: ActionState::Planned,
        attempts: 0,
        next_attempt_at: Some(now),
        last_error: None,
        response: None,
        pre_state: original.pre_state.clone(),
        reverses: Some(original.key.clone()),
        linked_alerts: Vec::new(),
        note: None,
        state_reason: None,
        requested_by: None,
        expires_at: None,
        created_at: now,
        updated_at: now,
    }))
}

/// Record the reversals of `originals` and report, per original, what happened.
async fn restore_all(
    pipeline: &Pipeline,
    id: &str,
    originals: Vec<ActionRecord>,
    actor: &str,
) -> Result<Restored, LockoutError> {
    let mut items = Vec::new();
    let mut reversals = Vec::new();
    for o in &originals {
        match reversal_for(o, id, actor) {
            Plan::Reverse(r) => reversals.push((o.key.clone(), *r)),
            Plan::Report(item) => items.push(item),
        }
    }
    // Reversals never coalesce: an earlier, unrelated enable must not absorb this one.
    let recorded = pipeline
        .record_manual(
            reversals.iter().map(|(_, r)| r.clone()).collect(),
            id,
            false,
        )
        .await?;
    for ((original_key, r), rec) in reversals.iter().zip(recorded) {
        // Report the reversal's live state: a replayed restore shows how far the first one got.
        let key = rec.coalesced_into.clone().unwrap_or(rec.key.clone());
        let live = pipeline.store.get_action(&key).await?;
        let original_op = originals
            .iter()
            .find(|o| &o.key == original_key)
            .map_or(r.operation, |o| o.operation);
        items.push(RestoreItem {
            original_key: original_key.clone(),
            connector: r.connector.clone(),
            operation: original_op,
            reversal_key: Some(key),
            reversal_operation: Some(r.operation),
            state: live.as_ref().map_or(rec.state, |l| l.state),
            note: live.and_then(|l| l.note).or(rec.note),
        });
    }
    Ok(Restored {
        id: id.to_string(),
        actions: items,
    })
}

/// Reverse every succeeded action of lockout `id`. Idempotent: each reversal's key derives from the
/// action it undoes.
pub async fn restore_lockout(
    pipeline: &Pipeline,
    id: &str,
    actor: &str,
) -> Result<Restored, LockoutError> {
    let lockout = get(pipeline.store.as_ref(), id).await?;
    let mut originals = Vec::new();
    for la in &lockout.actions {
        if let Some(rec) = pipeline.store.get_action(&la.key).await? {
            originals.push(rec);
        }
    }
    let restored = restore_all(pipeline, id, originals, actor).await?;
    tracing::info!(lockout_id = %id, actor, "lockout restore recorded");
    Ok(restored)
}

/// Reverse one action, automatic or manual. Unlike a lockout restore, an action that cannot be
/// reversed now is an error ([`LockoutError::NotRestorable`]): the caller asked for exactly this one.
pub async fn restore_action(
    pipeline: &Pipeline,
    key: &str,
    actor: &str,
) -> Result<Restored, LockoutError> {
    let original = pipeline
        .store
        .get_action(key)
        .await?
        .ok_or_else(|| LockoutError::NotFound(format!("no action with key `{key}`")))?;
    if let Plan::Report(item) = reversal_for(&original, key, actor) {
        return Err(LockoutError::NotRestorable(format!(
            "action `{key}` ({} on {}) cannot be restored: {}",
            original.operation,
            original.connector,
            item.note.unwrap_or_default()
        )));
    }
    let restored = restore_all(pipeline, key, vec![original], actor).await?;
    tracing::info!(action_key = %key, actor, "action restore recorded");
    Ok(restored)
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
pub async fn peek_idempotency_key(
    store: &dyn StateStore,
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
pub async fn claim_idempotency_key(
    store: &dyn StateStore,
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn caps() -> BTreeMap<String, BTreeSet<Operation>> {
        BTreeMap::from([
            (
                "okta".to_string(),
                BTreeSet::from([
                    Operation::DisableAccount,
                    Operation::EnableAccount,
                    Operation::RevokeSessions,
                ]),
            ),
            (
                "scim".to_string(),
                BTreeSet::from([
                    Operation::DisableAccount,
                    Operation::EnableAccount,
                    Operation::RemoveGroupMemberships,
                ]),
            ),
            ("hook".to_string(), BTreeSet::from([Operation::Notify])),
        ])
    }

    fn req() -> LockoutRequest {
        LockoutRequest {
            subject: " Alice@Corp.Example ".into(),
            connectors: None,
            operations: None,
            reason: "phished".into(),
            ticket: Some("INC-1".into()),
            require_approval: false,
        }
    }

    fn ops(actions: &[ActionRecord]) -> Vec<(String, Operation)> {
        actions
            .iter()
            .map(|a| (a.connector.clone(), a.operation))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    #[test]
    fn default_lockout_disables_and_revokes_wherever_supported() {
        let a = plan(&caps(), &req(), "id-1", "alice-responder", Utc::now()).unwrap();
        assert_eq!(
            ops(&a),
            vec![
                ("okta".into(), Operation::DisableAccount),
                ("okta".into(), Operation::RevokeSessions),
                ("scim".into(), Operation::DisableAccount),
            ]
        );
        for x in &a {
            assert_eq!(x.subject, "alice@corp.example");
            assert_eq!(x.rule, MANUAL_RULE);
            assert_eq!(x.state, ActionState::Planned);
            assert!(matches!(&x.origin, Origin::Manual { request_id, actor }
                if request_id == "id-1" && actor == "alice-responder"));
        }
    }

    #[test]
    fn keys_derive_from_the_request_id() {
        let now = Utc::now();
        let a = plan(&caps(), &req(), "id-1", "r", now).unwrap();
        let again = plan(&caps(), &req(), "id-1", "r", now).unwrap();
        let other = plan(&caps(), &req(), "id-2", "r", now).unwrap();
        let keys = |v: &[ActionRecord]| v.iter().map(|a| a.key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&a), keys(&again));
        assert!(keys(&a).iter().all(|k| !keys(&other).contains(k)));
    }

    #[test]
    fn bad_requests_are_refused_with_stable_codes() {
        let now = Utc::now();
        let code = |r: LockoutRequest| plan(&caps(), &r, "i", "r", now).unwrap_err().code();
        let mut r = req();
        r.connectors = Some(vec!["okta-typo".into()]);
        assert_eq!(code(r), "unknown_connector");
        let mut r = req();
        r.connectors = Some(vec!["scim".into()]);
        r.operations = Some(vec![Operation::RevokeSessions]);
        assert_eq!(code(r), "unsupported_operation");
        let mut r = req();
        r.connectors = Some(vec!["hook".into()]);
        assert_eq!(code(r), "nothing_to_do");
        let mut r = req();
        r.operations = Some(vec![Operation::EnableAccount]);
        assert_eq!(code(r), "invalid_operation");
        let mut r = req();
        r.reason = "  ".into();
        assert_eq!(code(r), "invalid_request");
        let mut r = req();
        r.subject = String::new();
        assert_eq!(code(r), "invalid_request");
        for bad in ["breakglass\0", "break\u{200B}glass"] {
            let mut r = req();
            r.subject = bad.into();
            assert_eq!(code(r), "invalid_subject", "{bad:?}");
        }
        let mut r = req();
        r.subject = "a".repeat(crate::identity::MAX_SUBJECT_BYTES + 1);
        assert_eq!(code(r), "invalid_subject");
    }

    #[test]
    fn explicit_connector_with_default_operations_skips_what_it_cannot_do() {
        let mut r = req();
        r.connectors = Some(vec!["scim".into()]);
        let a = plan(&caps(), &r, "i", "r", Utc::now()).unwrap();
        assert_eq!(ops(&a), vec![("scim".into(), Operation::DisableAccount)]);
    }

    #[test]
    fn reversal_carries_pre_state_and_a_key_derived_from_the_original() {
        let mut o = plan(&caps(), &req(), "i", "r", Utc::now())
            .unwrap()
            .remove(0);
        o.state = ActionState::Succeeded;
        o.pre_state = Some(serde_json::json!({"prior_active": true}));
        let Plan::Reverse(r) = reversal_for(&o, "i", "bob") else {
            panic!("succeeded disable must be reversible");
        };
        assert_eq!(r.operation, Operation::EnableAccount);
        assert_eq!(r.reverses.as_deref(), Some(o.key.as_str()));
        assert_eq!(r.pre_state, o.pre_state);
        let Plan::Reverse(again) = reversal_for(&o, "other-request", "carol") else {
            panic!()
        };
        assert_eq!(r.key, again.key, "restore is idempotent whoever asks");
        o.state = ActionState::Running;
        assert!(matches!(reversal_for(&o, "i", "bob"), Plan::Report(_)));
        o.state = ActionState::Succeeded;
        o.operation = Operation::RevokeSessions;
        assert!(matches!(reversal_for(&o, "i", "bob"), Plan::Report(_)));
    }

    #[test]
    fn fingerprint_ignores_formatting_but_not_content() {
        let a: LockoutRequest =
            serde_json::from_str(r#"{"subject":"a@b.c","reason":"r"}"#).unwrap();
        let b: LockoutRequest =
            serde_json::from_str("{ \"reason\": \"r\",\n \"subject\": \"a@b.c\" }").unwrap();
        let c: LockoutRequest =
            serde_json::from_str(r#"{"subject":"a@b.c","reason":"other"}"#).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
        assert!(
            serde_json::from_str::<LockoutRequest>(r#"{"subject":"a","reason":"r","x":1}"#)
                .is_err()
        );
    }
}
