//! Approvals: held actions (`awaiting_approval`) wait here for a person.
//!
//! An action is held by a policy decision in `approval` mode, by the blast-radius breaker (see
//! [`crate::guard`]), or by a responder who asked for a second person on a lockout. The pipeline
//! stamps each held action with `requested_by` (the API caller, or `policy:<rule>`) and `expires_at`
//! (`[guards] approval_ttl` later) and sends [`Notice::ApprovalNeeded`].
//!
//! - **Approve** → `planned`, due now, handed to the executor; it runs even while the breaker is
//!   open (a person looked at it) and is not counted into the breaker again.
//! - **Reject** → `cancelled`.
//! - **Expire**: an unanswered action is `cancelled` with a note once `expires_at` passes, audited
//!   and notified ([`Notice::ApprovalExpired`]); [`run_expiry`] sweeps for them, and a decision that
//!   arrives after the deadline expires the action itself instead of running it. An expired
//!   approval never executes.
//!
//! The approver must be someone other than the requester (by token name): four eyes, not two.
//!
//! # Races
//!
//! Approve, reject, expiry and other replicas may act on one action at once. Each decision first
//! takes the action's executor claim ([`ActionStore::claim`], `SET NX PX`), re-reads the record,
//! decides on what it finds, writes, and releases the claim, so exactly one of them changes a held
//! action and the others see the result (a second approval gets 409). The executor never claims a
//! held action (it is not due), so the claim costs it nothing.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::audit::{Actor, AuditDraft, AuditKind};
use crate::executor::Handoff;
use crate::guard::Breaker;
use crate::ledger::{
    ActionFilter, ActionRecord, ActionState, ActionStore, AuditStore, StateReason, StoreError,
};
use crate::notify::Notice;
use crate::notify::Notifier;
use crate::telemetry::Metrics;

/// Note prefix of an action cancelled because nobody answered in time.
pub(crate) const EXPIRED_NOTE: &str = "approval expired";
/// Held actions, the service the pipeline (which holds them), the API (which decides them) and the
/// expiry sweep share: it knows only the store and the guards that hold, never the pipeline.
#[derive(Clone)]
pub(crate) struct Approvals {
    /// Held actions: read, decided, claimed while deciding.
    pub actions: Arc<dyn ActionStore>,
    /// Where every decision, expiry and supersession is recorded before it takes effect.
    pub audit: Arc<dyn AuditStore>,
    /// Hands an approved action to this process's executor at once.
    pub handoff: Option<Handoff>,
    /// How long a held action waits for an approver before it is cancelled.
    pub approval_ttl: Duration,
    /// Where `approval_needed` and `approval_expired` notices go.
    pub notifier: Notifier,
    /// The blast-radius breaker; `None` when disabled.
    pub breaker: Option<Arc<Breaker>>,
    pub metrics: Arc<Metrics>,
}

impl Approvals {
    /// Defaults: a 24 h TTL, no breaker, notices dropped.
    pub(crate) fn new(
        actions: Arc<dyn ActionStore>,
        audit: Arc<dyn AuditStore>,
        handoff: Option<Handoff>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            metrics,
            actions,
            audit,
            handoff,
            approval_ttl: Duration::from_secs(24 * 3600),
            notifier: Notifier::disabled(),
            breaker: None,
        }
    }
}

/// How long a decision holds the action's claim: far longer than a read and a write.
const DECISION_CLAIM: Duration = Duration::from_secs(10);

/// Why a decision on a held action was refused. Each maps to one HTTP status and stable `code`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApprovalError {
    /// No action with this key (404).
    #[error("no action with key `{0}`")]
    NotFound(String),
    /// The caller asked for the action (403): someone else must approve it.
    #[error("`{0}` requested this action and cannot approve or reject it; another approver must")]
    SelfApproval(String),
    /// Nobody answered in time: it was cancelled and will never run (409).
    #[error("the approval of `{0}` expired; the action was cancelled and will not run")]
    Expired(String),
    /// The action is not waiting for approval (already decided, or never held) (409).
    #[error("action `{key}` is {state}, not awaiting approval")]
    NotAwaiting { key: String, state: &'static str },
    /// Another decision on the same action is in progress (409); retry.
    #[error("another decision on `{0}` is in progress; retry")]
    Busy(String),
    /// The state store is down (503).
    #[error("state store unavailable: {0}")]
    Unavailable(String),
}

impl ApprovalError {
    pub(crate) fn code(&self) -> &'static str {
        match self {
            ApprovalError::NotFound(_) => "not_found",
            ApprovalError::SelfApproval(_) => "self_approval",
            ApprovalError::Expired(_) => "approval_expired",
            ApprovalError::NotAwaiting { .. } => "not_awaiting_approval",
            ApprovalError::Busy(_) => "busy",
            ApprovalError::Unavailable(_) => "unavailable",
        }
    }
}

impl From<StoreError> for ApprovalError {
    fn from(e: StoreError) -> Self {
        ApprovalError::Unavailable(e.to_string())
    }
}

/// Approve or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Approve,
    Reject,
}

impl Verdict {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approved",
            Verdict::Reject => "rejected",
        }
    }
}

/// When a held action's approval lapses (records from before `expires_at` existed: created + ttl).
pub(crate) fn deadline(a: &ActionRecord, ttl: Duration) -> DateTime<Utc> {
    a.expires_at.unwrap_or_else(|| {
        a.created_at + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(1))
    })
}

/// Held actions, newest first (`limit` 0: all).
pub(crate) async fn list(
    store: &dyn ActionStore,
    limit: usize,
) -> Result<Vec<ActionRecord>, StoreError> {
    store
        .list_actions(&ActionFilter {
            state: Some(ActionState::AwaitingApproval),
            limit,
            ..ActionFilter::default()
        })
        .await
}

/// Whether two token names (a requester and an approver) name the same person: compared trimmed and
/// case-insensitively, the same normalization under which `[api]` token names must be unique
/// ([`crate::identity::normalize_token_name`]), so `Alice` cannot approve what `alice ` asked for.
pub(crate) fn same_person(requester: &str, approver: &str) -> bool {
    crate::identity::normalize_token_name(requester)
        == crate::identity::normalize_token_name(approver)
}

/// Take the action's claim for a decision, retrying briefly while another decision holds it.
async fn claim(store: &dyn ActionStore, key: &str, owner: &str) -> Result<bool, StoreError> {
    let mut attempts = crate::retry::Attempts::new(crate::retry::DECISION_CLAIM);
    for _ in 0..5 {
        if store.claim(key, owner, DECISION_CLAIM).await? {
            return Ok(true);
        }
        tokio::time::sleep(attempts.next_wait()).await;
    }
    Ok(false)
}

/// Decide on held action `key` as `actor` (name = token name, role, source address) with an
/// optional comment. Returns the action as recorded after the decision.
pub(crate) async fn decide(
    approvals: &Approvals,
    key: &str,
    verdict: Verdict,
    actor: Actor,
    comment: Option<String>,
) -> Result<ActionRecord, ApprovalError> {
    let store = approvals.actions.as_ref();
    let owner = format!("approval-{}", uuid::Uuid::new_v4());
    if !claim(store, key, &owner).await? {
        return Err(ApprovalError::Busy(key.to_string()));
    }
    let result = decide_claimed(approvals, key, verdict, &actor, comment).await;
    if let Err(e) = store.release(key, &owner).await {
        warn!(action_key = key, error = %e, "decision claim release failed; it expires by itself");
    }
    let rec = result?;
    if verdict == Verdict::Approve
        && let Some(h) = &approvals.handoff
    {
        h.offer(&rec);
    }
    info!(action_key = key, actor = %actor.name, verdict = verdict.as_str(), "approval decided");
    Ok(rec)
}

async fn decide_claimed(
    approvals: &Approvals,
    key: &str,
    verdict: Verdict,
    actor: &Actor,
    comment: Option<String>,
) -> Result<ActionRecord, ApprovalError> {
    let store = approvals.actions.as_ref();
    let mut rec = store
        .get_action(key)
        .await?
        .ok_or_else(|| ApprovalError::NotFound(key.to_string()))?;
    if rec.state != ActionState::AwaitingApproval {
        if rec.state_reason == Some(StateReason::Expired) {
            return Err(ApprovalError::Expired(key.to_string()));
        }
        return Err(ApprovalError::NotAwaiting {
            key: key.to_string(),
            state: rec.state.as_str(),
        });
    }
    let now = Utc::now();
    if deadline(&rec, approvals.approval_ttl) <= now {
        // The sweeper has not got to it yet; the deadline holds all the same.
        expire_claimed(approvals, &mut rec, now).await?;
        return Err(ApprovalError::Expired(key.to_string()));
    }
    let requester = rec.requester();
    if same_person(&requester, &actor.name) {
        return Err(ApprovalError::SelfApproval(requester));
    }
    let comment = comment
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty());
    let note = match &comment {
        Some(c) => format!("{} by {}: {c}", verdict.as_str(), actor.name),
        None => format!("{} by {}", verdict.as_str(), actor.name),
    };
    match verdict {
        Verdict::Approve => {
            rec.state = ActionState::Planned;
            rec.state_reason = None;
            rec.next_attempt_at = Some(now);
        }
        Verdict::Reject => {
            rec.state = ActionState::Cancelled;
            rec.state_reason = Some(StateReason::Rejected);
            rec.next_attempt_at = None;
        }
    }
    rec.note = Some(note);
    rec.updated_at = now;
    // Audited before the change: an approval that ran but left no trace would defeat the trail.
    let d = guard_audit(
        &rec,
        actor.clone(),
        serde_json::json!({
            "event": verdict.as_str(),
            "comment": comment,
            "requested_by": requester,
            "state": rec.state,
            "connector": rec.connector,
            "operation": rec.operation,
        }),
    );
    approvals.audit.append_audit(vec![d]).await?;
    store.put_action(&rec).await?;
    if verdict == Verdict::Reject {
        approvals.metrics.action_end(
            rec.connector.as_str(),
            rec.operation.as_str(),
            crate::telemetry::ActionEnd::Rejected,
        );
    }
    Ok(rec)
}

/// The guard audit record of a decision on held action `rec`: `detail`, with the action's subject,
/// key and alert.
fn guard_audit(rec: &ActionRecord, actor: Actor, detail: serde_json::Value) -> AuditDraft {
    let mut d = AuditDraft::new(AuditKind::Guard, actor, detail);
    d.subject = Some(rec.subject.clone());
    d.action_key = Some(rec.key.clone());
    if let crate::ledger::Origin::Alert { alert_id, .. } = &rec.origin {
        d.alert_id = Some(alert_id.clone());
    }
    d
}

/// Cancel a held action whose deadline passed (caller holds its claim): audited and notified.
async fn expire_claimed(
    approvals: &Approvals,
    rec: &mut ActionRecord,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let deadline = deadline(rec, approvals.approval_ttl);
    rec.state = ActionState::Cancelled;
    rec.state_reason = Some(StateReason::Expired);
    rec.next_attempt_at = None;
    rec.note = Some(format!(
        "{EXPIRED_NOTE}: nobody approved it by {}",
        deadline.to_rfc3339()
    ));
    rec.updated_at = now;
    approvals.actions.put_action(rec).await?;
    let d = guard_audit(
        rec,
        Actor::system("approvals"),
        serde_json::json!({
            "event": "approval_expired",
            "expired_at": deadline,
            "requested_by": rec.requester(),
            "connector": rec.connector,
            "operation": rec.operation,
        }),
    );
    if let Err(e) = approvals.audit.append_audit(vec![d]).await {
        // The ledger is the source of truth and the action is cancelled either way.
        tracing::error!(action_key = %rec.key, error = %e, "could not audit an approval expiry");
    }
    approvals.metrics.action_end(
        rec.connector.as_str(),
        rec.operation.as_str(),
        crate::telemetry::ActionEnd::Expired,
    );
    approvals.notifier.notify(Notice::ApprovalExpired {
        approval_id: rec.key.clone(),
        connector: rec.connector.clone(),
        operation: rec.operation.as_str().to_string(),
        subject: rec.subject.clone(),
    });
    warn!(action_key = %rec.key, "approval expired; the action was cancelled");
    Ok(())
}

/// Note prefix of a held action cancelled because a runnable action for the same (subject,
/// connector, operation) took its place.
pub(crate) const SUPERSEDED_NOTE: &str = "superseded by";

/// Cancel held action `held_key` because runnable action `by` (a responder's lockout, or an
/// automatic action once the breaker let it run) was recorded for the same (subject, connector,
/// operation) and took its coalesce slot ([`crate::ledger::Inserted::Superseded`]).
///
/// Takes the held action's decision claim like approve, reject and expiry do, so exactly one of
/// them changes it: if a person approved it first, it stays approved (the target then sees the
/// same operation twice, which is harmless for lockouts: the second finds it done); if a decision
/// is in progress, its outcome stands. Returns whether this call cancelled it. Audited before the change.
pub(crate) async fn supersede(
    approvals: &Approvals,
    held_key: &str,
    by: &ActionRecord,
) -> Result<bool, StoreError> {
    let store = approvals.actions.as_ref();
    let owner = format!("supersede-{}", uuid::Uuid::new_v4());
    if !claim(store, held_key, &owner).await? {
        warn!(action_key = held_key, superseded_by = %by.key,
            "a decision on the held action is in progress; its outcome stands");
        return Ok(false);
    }
    let outcome = async {
        let Some(mut rec) = store.get_action(held_key).await? else {
            return Ok(false);
        };
        if rec.state != ActionState::AwaitingApproval {
            return Ok(false);
        }
        let now = Utc::now();
        rec.state = ActionState::Cancelled;
        rec.next_attempt_at = None;
        rec.state_reason = Some(StateReason::Superseded);
        rec.note = Some(format!(
            "{SUPERSEDED_NOTE} {} (requested by {}): it runs without waiting for approval",
            by.key,
            by.requester()
        ));
        rec.updated_at = now;
        let d = guard_audit(
            &rec,
            Actor::system("approvals"),
            serde_json::json!({
                "event": "superseded",
                "superseded_by": by.key,
                "requested_by": rec.requester(),
                "connector": rec.connector,
                "operation": rec.operation,
            }),
        );
        approvals.audit.append_audit(vec![d]).await?;
        store.put_action(&rec).await?;
        approvals.metrics.action_end(
            rec.connector.as_str(),
            rec.operation.as_str(),
            crate::telemetry::ActionEnd::Superseded,
        );
        info!(action_key = held_key, superseded_by = %by.key, "held action superseded");
        Ok::<_, StoreError>(true)
    }
    .await;
    if let Err(e) = store.release(held_key, &owner).await {
        warn!(action_key = held_key, error = %e, "supersede claim release failed; it expires by itself");
    }
    outcome
}

/// Held actions the expiry sweep reads at a time: its memory stays this size however many are
/// held (a breaker holding a flood of 100,000 once made every sweep read them all).
const EXPIRY_PAGE: usize = 256;

/// Cancel every held action whose deadline is at or before `now`; returns how many. Pages through
/// the held actions oldest first and stops at the first page that is not all due: deadlines follow
/// creation (`created_at` + the TTL), so the rest are later still. (After the TTL is shortened, a
/// newer action can lapse before an older one; it is cancelled once those older ones are, and an
/// approval after its deadline is refused meanwhile.)
pub(crate) async fn expire_due(
    approvals: &Approvals,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let mut expired = 0;
    loop {
        let page = approvals
            .actions
            .list_actions(&ActionFilter {
                state: Some(ActionState::AwaitingApproval),
                oldest_first: true,
                limit: EXPIRY_PAGE,
                ..ActionFilter::default()
            })
            .await?;
        let all_due = page
            .iter()
            .all(|a| deadline(a, approvals.approval_ttl) <= now);
        let n = expire_page(approvals, &page, now).await?;
        expired += n;
        // Another page only when this one was full, all due and moved (a due action another
        // decision holds stays listed; the next sweep looks again).
        if page.len() < EXPIRY_PAGE || !all_due || n == 0 {
            return Ok(expired);
        }
    }
}

/// Cancel the due actions of one page; returns how many.
async fn expire_page(
    approvals: &Approvals,
    page: &[ActionRecord],
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let store = approvals.actions.as_ref();
    let mut expired = 0;
    for a in page {
        if deadline(a, approvals.approval_ttl) > now {
            continue;
        }
        let owner = format!("expiry-{}", uuid::Uuid::new_v4());
        if !store.claim(&a.key, &owner, DECISION_CLAIM).await? {
            continue; // someone is deciding on it right now; the next sweep looks again
        }
        let outcome = async {
            match store.get_action(&a.key).await? {
                Some(mut rec) if rec.state == ActionState::AwaitingApproval => {
                    expire_claimed(approvals, &mut rec, now).await?;
                    Ok::<_, StoreError>(1)
                }
                _ => Ok(0),
            }
        }
        .await;
        let _ = store.release(&a.key, &owner).await;
        expired += outcome?;
    }
    Ok(expired)
}

/// How often [`run_expiry`] sweeps: a tenth of the TTL, between 100 ms and 5 s, so a short TTL (in
/// tests) is honoured promptly and a long one costs one listing every few seconds.
pub(crate) fn sweep_interval(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_millis(100), Duration::from_secs(5))
}

/// Until `stop`: expire lapsed approvals and refresh the breaker gauges (another replica may have
/// tripped or reset the breaker).
pub(crate) async fn run_expiry(approvals: Approvals, mut stop: watch::Receiver<bool>) {
    let every = sweep_interval(approvals.approval_ttl);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Err(e) = expire_due(&approvals, Utc::now()).await {
            warn!(error = %e, "cannot sweep expired approvals; retrying");
        }
        if let Some(b) = &approvals.breaker
            && let Err(e) = b.status().await
        {
            warn!(error = %e, "cannot read the breaker state");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Pipeline;

    #[test]
    fn sweep_interval_follows_the_ttl_within_bounds() {
        assert_eq!(
            sweep_interval(Duration::from_secs(1)),
            Duration::from_millis(100)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(20)),
            Duration::from_secs(2)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(24 * 3600)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn error_codes_are_stable() {
        assert_eq!(
            ApprovalError::SelfApproval("a".into()).code(),
            "self_approval"
        );
        assert_eq!(
            ApprovalError::Expired("k".into()).code(),
            "approval_expired"
        );
    }

    async fn pipeline(
        ttl: Duration,
    ) -> (
        tempfile::TempDir,
        Pipeline,
        tokio::sync::mpsc::Receiver<Notice>,
    ) {
        use std::collections::{BTreeMap, BTreeSet};

        use crate::action::Operation;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("p")).unwrap();
        // A policy that never decides: these tests feed held actions in directly.
        std::fs::write(
            dir.path().join("p/p.rego"),
            "package deprovd\nimport rego.v1\ndecisions contains d if {\n  input.never\n  d := {}\n}\n",
        )
        .unwrap();
        let policies = crate::policy::Policies::load(&crate::policy::PolicyConfig {
            dir: Some(dir.path().join("p")),
            watch: false,
            ..Default::default()
        })
        .unwrap();
        let store: Arc<dyn crate::ledger::StateStore> = Arc::new(
            crate::ledger::store::embedded::EmbeddedStore::open(&dir.path().join("l")).unwrap(),
        );
        let caps = BTreeMap::from([(
            "okta".to_string(),
            BTreeSet::from([Operation::DisableAccount, Operation::RevokeSessions]),
        )]);
        let decider = crate::pipeline::Decider::new(
            policies,
            crate::plan::Planner::from_capabilities(caps),
            crate::guard::Guards::new(&crate::guard::GuardConfig::default()).unwrap(),
            Arc::new(crate::telemetry::Metrics::new()),
        );
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let p = Pipeline::new(decider, store, None, Duration::from_secs(600)).with_guards(
            None,
            ttl,
            crate::notify::Notifier::from_sender(tx),
        );
        (dir, p, rx)
    }

    async fn held_lockout(p: &Pipeline, id: &str, subject: &str) -> String {
        let req = crate::lockout::LockoutRequest {
            subject: subject.into(),
            connectors: Some(vec!["okta".into()]),
            operations: Some(vec![crate::action::Operation::DisableAccount]),
            reason: "four eyes".into(),
            ticket: None,
            require_approval: true,
        };
        let created = crate::lockout::create(p, &req, id, "resp-bot")
            .await
            .unwrap();
        assert_eq!(created.actions[0].state, ActionState::AwaitingApproval);
        created.actions[0].key.clone()
    }

    fn person(name: &str) -> Actor {
        Actor {
            name: name.into(),
            role: Some("approver".into()),
            source: Some("127.0.0.1:1".into()),
        }
    }

    /// `verdict` on `key` by the approver `name`, without a comment.
    async fn by(
        p: &Pipeline,
        key: &str,
        verdict: Verdict,
        name: &str,
    ) -> Result<ActionRecord, ApprovalError> {
        decide(&p.approvals, key, verdict, person(name), None).await
    }

    #[tokio::test]
    async fn the_sweep_pages_through_more_held_actions_than_one_page_holds() {
        let (_dir, p, mut rx) = pipeline(Duration::from_secs(60)).await;
        let notices = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let held = EXPIRY_PAGE + 3;
        for i in 0..held {
            held_lockout(&p, &format!("id-{i}"), &format!("user{i}@corp.example")).await;
        }
        assert_eq!(expire_due(&p.approvals, Utc::now()).await.unwrap(), 0);
        let later = Utc::now() + chrono::Duration::seconds(61);
        assert_eq!(expire_due(&p.approvals, later).await.unwrap(), held);
        assert!(list(p.store.as_ref(), 0).await.unwrap().is_empty());
        notices.abort();
    }

    #[tokio::test]
    async fn held_action_is_announced_and_expires_with_a_notice_and_never_runs() {
        let (_dir, p, mut rx) = pipeline(Duration::from_secs(60)).await;
        let key = held_lockout(&p, "id-1", "alice@corp.example").await;
        let Some(Notice::ApprovalNeeded {
            approval_id,
            requested_by,
            expires_at,
            ..
        }) = rx.try_recv().ok()
        else {
            panic!("approval_needed notice expected");
        };
        assert_eq!(
            (approval_id.as_str(), requested_by.as_str()),
            (key.as_str(), "resp-bot")
        );
        let rec = p.store.get_action(&key).await.unwrap().unwrap();
        assert_eq!(rec.requested_by.as_deref(), Some("resp-bot"));
        assert_eq!(rec.expires_at.map(|t| t.to_rfc3339()), Some(expires_at));
        assert_eq!(rec.next_attempt_at, None, "a held action is never due");

        assert_eq!(
            expire_due(&p.approvals, Utc::now()).await.unwrap(),
            0,
            "not yet"
        );
        let later = Utc::now() + chrono::Duration::seconds(61);
        assert_eq!(expire_due(&p.approvals, later).await.unwrap(), 1);
        assert!(
            matches!(rx.try_recv(), Ok(Notice::ApprovalExpired { approval_id, .. }) if approval_id == key)
        );
        let rec = p.store.get_action(&key).await.unwrap().unwrap();
        assert_eq!(rec.state, ActionState::Cancelled);
        assert!(rec.note.unwrap().starts_with(EXPIRED_NOTE));
        assert!(matches!(
            by(&p, &key, Verdict::Approve, "apr-bot").await,
            Err(ApprovalError::Expired(_))
        ));
        assert_eq!(
            expire_due(&p.approvals, later).await.unwrap(),
            0,
            "expired once"
        );
        let trail = p.store.audit_range(1, 0).await.unwrap();
        assert_eq!(
            trail
                .iter()
                .filter(|r| r.detail["event"] == "approval_expired")
                .count(),
            1
        );
    }

    #[tokio::test]
    async fn a_decision_after_the_deadline_expires_the_action_instead_of_running_it() {
        let (_dir, p, _rx) = pipeline(Duration::from_secs(60)).await;
        let key = held_lockout(&p, "id-2", "bob@corp.example").await;
        let mut rec = p.store.get_action(&key).await.unwrap().unwrap();
        rec.expires_at = Some(Utc::now() - chrono::Duration::seconds(1));
        p.store.put_action(&rec).await.unwrap();
        assert!(matches!(
            by(&p, &key, Verdict::Approve, "apr-bot").await,
            Err(ApprovalError::Expired(_))
        ));
        let rec = p.store.get_action(&key).await.unwrap().unwrap();
        assert_eq!(rec.state, ActionState::Cancelled);
        assert!(
            p.store
                .due_actions(Utc::now(), 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn same_person_ignores_case_and_surrounding_spaces() {
        assert!(same_person("resp-bot", "resp-bot"));
        assert!(same_person("Resp-Bot", " resp-bot "));
        assert!(same_person("ÉLISE", "élise"));
        assert!(!same_person("resp-bot", "apr-bot"));
        assert!(!same_person("policy:rule", "rule"));
    }

    #[tokio::test]
    async fn requester_spelled_differently_is_still_refused() {
        let (_dir, p, _rx) = pipeline(Duration::from_secs(60)).await;
        let key = held_lockout(&p, "id-5", "dora@corp.example").await;
        for alias in ["Resp-Bot", " resp-bot", "RESP-BOT "] {
            assert!(
                matches!(
                    by(&p, &key, Verdict::Approve, alias).await,
                    Err(ApprovalError::SelfApproval(r)) if r == "resp-bot"
                ),
                "{alias:?} is the requester"
            );
        }
        let rec = p.store.get_action(&key).await.unwrap().unwrap();
        assert_eq!(rec.state, ActionState::AwaitingApproval);
    }

    #[tokio::test]
    async fn a_runnable_lockout_supersedes_a_held_one_instead_of_waiting_behind_it() {
        let (_dir, p, _rx) = pipeline(Duration::from_secs(60)).await;
        let held = held_lockout(&p, "id-4", "eve@corp.example").await;
        let req = crate::lockout::LockoutRequest {
            subject: "eve@corp.example".into(),
            connectors: Some(vec!["okta".into()]),
            operations: Some(vec![crate::action::Operation::DisableAccount]),
            reason: "now".into(),
            ticket: None,
            require_approval: false,
        };
        let created = crate::lockout::create(&p, &req, "id-4b", "other-bot")
            .await
            .unwrap();
        let new_key = created.actions[0].key.clone();
        assert_ne!(new_key, held, "not absorbed by the held action");
        assert_eq!(created.actions[0].state, ActionState::Planned);
        assert_eq!(
            p.store.due_actions(Utc::now(), 10).await.unwrap(),
            std::slice::from_ref(&new_key),
            "due at once"
        );
        let old = p.store.get_action(&held).await.unwrap().unwrap();
        assert_eq!(old.state, ActionState::Cancelled);
        assert!(
            old.note
                .as_deref()
                .is_some_and(|n| n.starts_with(&format!("{SUPERSEDED_NOTE} {new_key}"))),
            "{:?}",
            old.note
        );
        assert!(list(p.store.as_ref(), 0).await.unwrap().is_empty());
        assert!(matches!(
            by(&p, &held, Verdict::Approve, "apr-bot").await,
            Err(ApprovalError::NotAwaiting {
                state: "cancelled",
                ..
            })
        ));
        let trail = p.store.audit_range(1, 0).await.unwrap();
        let sup: Vec<_> = trail
            .iter()
            .filter(|r| r.detail["event"] == "superseded")
            .collect();
        assert_eq!(sup.len(), 1);
        assert_eq!(sup[0].detail["superseded_by"], new_key.as_str());
        assert_eq!(sup[0].action_key.as_deref(), Some(held.as_str()));
    }

    #[tokio::test]
    async fn requester_is_refused_and_another_person_approves_once() {
        let (_dir, p, _rx) = pipeline(Duration::from_secs(60)).await;
        let key = held_lockout(&p, "id-3", "carol@corp.example").await;
        assert!(matches!(
            by(&p, &key, Verdict::Approve, "resp-bot").await,
            Err(ApprovalError::SelfApproval(r)) if r == "resp-bot"
        ));
        let rec = decide(
            &p.approvals,
            &key,
            Verdict::Approve,
            person("apr-bot"),
            Some(" ok ".into()),
        )
        .await
        .unwrap();
        assert_eq!(rec.state, ActionState::Planned);
        assert_eq!(rec.note.as_deref(), Some("approved by apr-bot: ok"));
        assert_eq!(
            p.store.due_actions(Utc::now(), 10).await.unwrap(),
            std::slice::from_ref(&key)
        );
        assert!(matches!(
            by(&p, &key, Verdict::Reject, "other-bot").await,
            Err(ApprovalError::NotAwaiting {
                state: "planned",
                ..
            })
        ));
        assert!(matches!(
            by(&p, &"0".repeat(64), Verdict::Approve, "apr-bot").await,
            Err(ApprovalError::NotFound(_))
        ));
    }
}
