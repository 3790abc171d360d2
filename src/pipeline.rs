//! The one path every alert takes, whatever its source: normalize → policy → plan → guards → ledger.
//!
//! [`Pipeline::decide`] is the pure, synchronous part (CPU only: it runs on a blocking thread, and
//! `simulate` and the benchmark call it directly). [`Pipeline::process`] adds the durable part: it writes
//! every action to the ledger and only then returns, so the caller may acknowledge its source.
//!
//! # Audit
//!
//! Every alert leaves one batch in the audit trail, appended in **one** store round trip after its
//! actions are recorded: an `alert_received` record, a `decision` record (all decisions of the alert
//! with the policy digest and what became of each action in the ledger) and a `guard` record per
//! action a guard skipped or held. A rejected alert leaves one `alert_received` record with the reason.
//!
//! If the audit append fails, the alert is **not** acknowledged ([`PipelineError::Unavailable`]): an
//! alert that acted but left no trace would defeat the trail. The source redelivers; the actions are
//! then duplicates in the ledger (no second side effect) and the audit batch is written, so an alert
//! may appear twice in the trail but never zero times.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;
use tracing::{Instrument, debug, warn};

use crate::alert::{Alert, NormalizeError, NormalizerRegistry};
use crate::approval::Approvals;
use crate::audit::{Actor, AuditDraft, AuditKind};
use crate::executor::Handoff;
use crate::guard::{Breaker, GuardHit, Guards};
use crate::ledger::{ActionRecord, ActionState, Inserted, StateStore};
use crate::notify::{Notice, Notifier};
use crate::plan::Planner;
use crate::policy::{Decision, Policies};
use crate::telemetry::Metrics;

/// Why an input could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The input itself is bad: dead-letter it with this reason (HTTP: 400). Retrying cannot help.
    #[error("{reason}")]
    Rejected { reason: String, code: &'static str },
    /// A dependency (the ledger) is down: do not acknowledge; retry later (HTTP: 503).
    #[error("not durable yet: {0}")]
    Unavailable(String),
}

impl PipelineError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, PipelineError::Unavailable(_))
    }
}

/// The result of the pure part: what would be done.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    pub alert: Alert,
    pub decisions: Vec<Decision>,
    pub actions: Vec<ActionRecord>,
    /// Policy problems (bad decision shapes, unknown connectors): counted and logged, never fatal.
    pub problems: Vec<String>,
    pub policy_digest: String,
}

/// What happened to one planned action when it was recorded.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedAction {
    pub key: String,
    pub connector: String,
    pub operation: crate::action::Operation,
    pub subject: String,
    pub state: ActionState,
    /// `new`, `duplicate` (redelivery) or `coalesced` (absorbed by a live action).
    pub disposition: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coalesced_into: Option<String>,
    /// The held (`awaiting_approval`) action this new, runnable one took the place of; that one is
    /// cancelled with a `superseded by` note (see [`crate::approval::supersede`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub superseded: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The result of [`Pipeline::process`]: the HTTP API returns it as the 202 body.
#[derive(Debug, Clone, Serialize)]
pub struct Processed {
    pub alert_id: String,
    pub decisions: Vec<Decision>,
    pub actions: Vec<RecordedAction>,
    pub policy_digest: String,
    /// Policy and planning problems (e.g. a decision no configured connector can carry out).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// One document of a delivery after [`Decider::decide_all`].
#[derive(Debug)]
pub struct DecidedPart {
    /// Where it sat in the delivery (`data.events[3]`); `None` when it is the delivery itself.
    pub at: Option<String>,
    /// Its own bytes when it was cut out of a delivery (dead letters carry just this document).
    pub bytes: Option<Vec<u8>>,
    pub result: Result<Planned, NormalizeError>,
}

/// One document of a split delivery that could not be taken: dead-letter `payload` with `reason`.
#[derive(Debug, Clone, Serialize)]
pub struct RejectedPart {
    /// Where it sat in the delivery (`data.events[3]`).
    pub at: String,
    pub code: &'static str,
    pub reason: String,
    /// The document's own bytes.
    #[serde(skip)]
    pub payload: Vec<u8>,
}

/// The result of [`Pipeline::process_delivery`].
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// Whether the input was an envelope of several documents (its answer is then a list).
    pub split: bool,
    /// Every document taken, in order.
    pub alerts: Vec<Processed>,
    /// Every document refused (only in split deliveries: a refused single document is an error).
    pub rejected: Vec<RejectedPart>,
}

/// The pure part of the path: normalize, evaluate, plan, guard. No I/O, so `simulate` and the
/// benchmark use it directly and the pipeline runs it on a blocking thread.
pub struct Decider {
    pub registry: NormalizerRegistry,
    pub policies: Arc<Policies>,
    pub planner: Planner,
    pub guards: Guards,
    pub metrics: Arc<Metrics>,
}

impl Decider {
    pub fn new(
        policies: Arc<Policies>,
        planner: Planner,
        guards: Guards,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            registry: NormalizerRegistry::new(),
            policies,
            planner,
            guards,
            metrics,
        }
    }

    /// Normalize, evaluate, plan and guard — CPU only, no I/O.
    pub fn decide(&self, bytes: &[u8], format: Option<&str>) -> Result<Planned, NormalizeError> {
        let alert = self.registry.normalize(bytes, format)?;
        Ok(self.decide_alert(alert))
    }

    /// As [`decide`](Self::decide) for a delivery that may carry several documents (an Okta event
    /// hook): one decided part per document. `Err` when the delivery as a whole is unusable.
    pub fn decide_all(
        &self,
        bytes: &[u8],
        format: Option<&str>,
    ) -> Result<Vec<DecidedPart>, NormalizeError> {
        Ok(self
            .registry
            .normalize_all(bytes, format)?
            .into_iter()
            .map(|n| DecidedPart {
                at: n.at,
                bytes: n.bytes,
                result: n.result.map(|alert| self.decide_alert(alert)),
            })
            .collect())
    }

    /// As [`decide`](Self::decide) for the claims of a SET the Shared Signals receiver verified (see
    /// [`NormalizerRegistry::normalize_verified_set`]).
    pub fn decide_verified_set(
        &self,
        claims: serde_json::Value,
    ) -> Result<Planned, NormalizeError> {
        let alert = self.registry.normalize_verified_set(claims)?;
        Ok(self.decide_alert(alert))
    }

    /// As [`decide`](Self::decide) for an already normalized alert (manual lockouts).
    pub fn decide_alert(&self, alert: Alert) -> Planned {
        let now = Utc::now();
        let started = Instant::now();
        let eval = self
            .policies
            .evaluate(&alert, now, &serde_json::Value::Null);
        self.metrics
            .policy_eval_seconds
            .observe(started.elapsed().as_secs_f64());
        let mut problems = eval.errors;
        if !problems.is_empty() {
            self.metrics
                .policy_errors
                .with_label_values(&["evaluation"])
                .inc_by(problems.len() as u64);
        }
        for d in &eval.decisions {
            self.metrics
                .decisions
                .with_label_values(&[d.action.as_str(), d.mode.as_str()])
                .inc();
        }
        let (mut actions, plan_problems) =
            self.planner
                .plan(&alert, &eval.decisions, &eval.digest, now);
        if !plan_problems.is_empty() {
            self.metrics
                .policy_errors
                .with_label_values(&["plan"])
                .inc_by(plan_problems.len() as u64);
        }
        problems.extend(plan_problems);
        for a in &mut actions {
            if let Some(hit) = self.guards.apply(a) {
                self.metrics
                    .guard_blocks
                    .with_label_values(&[hit.as_str()])
                    .inc();
            }
        }
        Planned {
            alert,
            decisions: eval.decisions,
            actions,
            problems,
            policy_digest: eval.digest.to_string(),
        }
    }
}

/// Everything the path needs, shared by every source (`Arc`).
pub struct Pipeline {
    pub decider: Decider,
    pub store: Arc<dyn StateStore>,
    pub metrics: Arc<Metrics>,
    /// Window within which a live action for the same (subject, connector, operation) absorbs new alerts.
    pub coalesce_window: Duration,
    /// Held actions and the guards that hold them: the executor handoff, the blast-radius breaker,
    /// the approval TTL and the notifier that tells approvers.
    pub approvals: Approvals,
    shutting_down: AtomicBool,
}

impl Pipeline {
    pub fn new(
        decider: Decider,
        store: Arc<dyn StateStore>,
        handoff: Option<Handoff>,
        coalesce_window: Duration,
    ) -> Self {
        let metrics = decider.metrics.clone();
        Self {
            approvals: Approvals::new(store.clone(), handoff, metrics.clone()),
            metrics,
            decider,
            store,
            coalesce_window,
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Add the guards that need the store or people: the breaker (`None`: disabled), the approval
    /// TTL of held actions, and the notifier that tells approvers.
    pub fn with_guards(
        mut self,
        breaker: Option<Arc<Breaker>>,
        approval_ttl: Duration,
        notifier: Notifier,
    ) -> Self {
        self.approvals.breaker = breaker;
        self.approvals.approval_ttl = approval_ttl;
        self.approvals.notifier = notifier;
        self
    }

    /// Sources stop retrying (and do not acknowledge) once this is set.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// Decide on a blocking thread, then record every action in the ledger. Returns only when the
    /// input is durable (or rejected): the caller acknowledges its source after this.
    pub async fn process(
        self: &Arc<Self>,
        bytes: &[u8],
        format: Option<&str>,
        source: &'static str,
    ) -> Result<Processed, PipelineError> {
        self.process_as(bytes, format, source, Actor::system(source))
            .await
    }

    /// As [`process`](Self::process), naming who sent the alert in the audit trail (the API's caller
    /// with role and peer address).
    pub async fn process_as(
        self: &Arc<Self>,
        bytes: &[u8],
        format: Option<&str>,
        source: &'static str,
        actor: Actor,
    ) -> Result<Processed, PipelineError> {
        let this = self.clone();
        let owned = bytes.to_vec();
        let format_owned = format.map(str::to_string);
        let decided = tokio::task::spawn_blocking(move || {
            this.decider.decide(&owned, format_owned.as_deref())
        })
        .await
        .map_err(|e| PipelineError::Unavailable(format!("policy evaluation task failed: {e}")))?;
        match decided {
            Ok(planned) => self.accept(planned, source, actor).await,
            Err(e) => Err(self
                .reject(&e, format, source, actor, bytes.len(), None)
                .await?),
        }
    }

    /// The Shared Signals receiver's path, and the only way to an `ssf` alert: as
    /// [`process_as`](Self::process_as) for the claims of a SET whose signature, issuer, audience,
    /// `iat` and `jti` the receiver checked. (`format = ssf` is refused on every other path.)
    pub async fn process_verified_set(
        self: &Arc<Self>,
        claims: serde_json::Value,
        actor: Actor,
    ) -> Result<Processed, PipelineError> {
        let len = serde_json::to_vec(&claims).map_or(0, |v| v.len());
        let this = self.clone();
        let decided = tokio::task::spawn_blocking(move || this.decider.decide_verified_set(claims))
            .await
            .map_err(|e| {
                PipelineError::Unavailable(format!("policy evaluation task failed: {e}"))
            })?;
        match decided {
            Ok(planned) => self.accept(planned, "ssf", actor).await,
            Err(e) => Err(self
                .reject(&e, Some("ssf"), "ssf", actor, len, None)
                .await?),
        }
    }

    /// The path HTTP and Kafka ingest take: like [`process_as`](Self::process_as), but a delivery
    /// that carries several documents (an Okta event hook) becomes one alert per document, and a
    /// document that cannot be normalized is rejected alone — the caller dead-letters each
    /// [`RejectedPart`] with its own bytes and acknowledges the delivery. A single document (every
    /// other format) behaves exactly as `process_as`: accepted, or `Err(Rejected)` for the whole.
    pub async fn process_delivery(
        self: &Arc<Self>,
        bytes: &[u8],
        format: Option<&str>,
        source: &'static str,
        actor: Actor,
    ) -> Result<Delivery, PipelineError> {
        let this = self.clone();
        let owned = bytes.to_vec();
        let format_owned = format.map(str::to_string);
        let decided = tokio::task::spawn_blocking(move || {
            this.decider.decide_all(&owned, format_owned.as_deref())
        })
        .await
        .map_err(|e| PipelineError::Unavailable(format!("policy evaluation task failed: {e}")))?;
        let parts = match decided {
            Ok(parts) => parts,
            Err(e) => {
                return Err(self
                    .reject(&e, format, source, actor, bytes.len(), None)
                    .await?);
            }
        };
        let split = !matches!(parts.as_slice(), [DecidedPart { at: None, .. }]);
        let mut out = Delivery {
            split,
            alerts: Vec::with_capacity(parts.len()),
            rejected: Vec::new(),
        };
        for part in parts {
            match part.result {
                Ok(planned) => out
                    .alerts
                    .push(self.accept(planned, source, actor.clone()).await?),
                Err(e) if !split => {
                    return Err(self
                        .reject(&e, format, source, actor, bytes.len(), None)
                        .await?);
                }
                Err(e) => {
                    let payload = part.bytes.unwrap_or_default();
                    let at = part.at.unwrap_or_default();
                    let rejected = self
                        .reject(&e, format, source, actor.clone(), payload.len(), Some(&at))
                        .await?;
                    if let PipelineError::Rejected { reason, code } = rejected {
                        out.rejected.push(RejectedPart {
                            at,
                            code,
                            reason,
                            payload,
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// Count and audit a document that cannot be normalized; returns the `Rejected` error to give
    /// the source, or `Unavailable` when the audit trail cannot record the rejection.
    async fn reject(
        &self,
        e: &NormalizeError,
        format: Option<&str>,
        source: &'static str,
        actor: Actor,
        len: usize,
        at: Option<&str>,
    ) -> Result<PipelineError, PipelineError> {
        let label = format.unwrap_or("auto");
        self.metrics
            .alerts
            .with_label_values(&[label, "dead_lettered"])
            .inc();
        self.metrics
            .dead_letters
            .with_label_values(&["ingest"])
            .inc();
        let mut details = serde_json::json!({
            "source": source,
            "format": label,
            "outcome": "rejected",
            "code": e.reason_code(),
            "reason": e.to_string(),
            "bytes": len,
        });
        if let Some(at) = at {
            details["at"] = at.into();
        }
        let draft = AuditDraft::new(AuditKind::AlertReceived, actor, details);
        self.store
            .append_audit(vec![draft])
            .await
            .map_err(|e| PipelineError::Unavailable(format!("audit trail: {e}")))?;
        Ok(PipelineError::Rejected {
            code: e.reason_code(),
            reason: e.to_string(),
        })
    }

    /// Record a decided alert (ledger, then its audit batch) and count it.
    async fn accept(
        &self,
        planned: Planned,
        source: &'static str,
        actor: Actor,
    ) -> Result<Processed, PipelineError> {
        let span = tracing::info_span!("alert", alert_id = %planned.alert.id, source);
        for p in &planned.problems {
            warn!(parent: &span, problem = %p, "policy problem");
        }
        let recorded = self.record_as(&planned, actor).instrument(span).await?;
        self.metrics
            .alerts
            .with_label_values(&[planned.alert.source.format.as_str(), "accepted"])
            .inc();
        Ok(Processed {
            alert_id: planned.alert.id,
            decisions: planned.decisions,
            actions: recorded,
            policy_digest: planned.policy_digest,
            problems: planned.problems,
        })
    }

    /// Write planned actions to the ledger and the alert's audit batch; hand the ones that can run
    /// now to the executor.
    pub async fn record(&self, planned: &Planned) -> Result<Vec<RecordedAction>, PipelineError> {
        self.record_as(planned, Actor::system("pipeline")).await
    }

    /// As [`record`](Self::record), naming who sent the alert in the audit trail.
    pub async fn record_as(
        &self,
        planned: &Planned,
        actor: Actor,
    ) -> Result<Vec<RecordedAction>, PipelineError> {
        let out = self
            .record_actions(&planned.actions, &planned.alert.id, self.coalesce_window)
            .await?;
        self.store
            .append_audit(audit_batch(planned, &out, actor))
            .await
            .map_err(|e| PipelineError::Unavailable(format!("audit trail: {e}")))?;
        Ok(out)
    }

    /// Guard and record actions that did not come from a policy — manual lockouts and reversals —
    /// with the same ledger guarantees as alert-caused ones: each is inserted under its idempotency
    /// key (a retried request is a `duplicate`), live actions for the same (subject, connector,
    /// operation) absorb it (`coalesced`, linked to `request_id`), and the executor is woken. A held
    /// action never absorbs a runnable manual one: the lockout is recorded and runs, and the held
    /// action is cancelled as superseded (a responder's lockout must not wait for an approval).
    ///
    /// `coalesce = false` is for reversals: they neither take a coalesce slot (a later lockout's
    /// restore must not be absorbed by an earlier, finished reversal) nor are meant to be absorbed.
    pub async fn record_manual(
        &self,
        mut actions: Vec<ActionRecord>,
        request_id: &str,
        coalesce: bool,
    ) -> Result<Vec<RecordedAction>, PipelineError> {
        let mut hits: HashMap<String, GuardHit> = HashMap::new();
        for a in &mut actions {
            if let Some(hit) = self.decider.guards.apply(a) {
                self.metrics
                    .guard_blocks
                    .with_label_values(&[hit.as_str()])
                    .inc();
                hits.insert(a.key.clone(), hit);
            }
        }
        let window = if coalesce {
            self.coalesce_window
        } else {
            Duration::ZERO
        };
        let out = self.record_actions(&actions, request_id, window).await?;
        // Held manual actions (a lockout that asked for a second person) and refused ones (a
        // protected subject, dry run) are guard events; alert batches carry their own. Recorded
        // once, when the action is new: a replayed request changes nothing and records nothing.
        let held: Vec<AuditDraft> = out
            .iter()
            .filter(|r| r.disposition == "new")
            .filter_map(|r| {
                let event = match hits.get(&r.key) {
                    Some(hit) => hit.as_str(),
                    None if r.state == ActionState::AwaitingApproval => "held_for_approval",
                    None => return None,
                };
                let actor = actions
                    .iter()
                    .find(|a| a.key == r.key)
                    .map_or_else(|| "manual".to_string(), ActionRecord::requester);
                let mut g = AuditDraft::new(
                    AuditKind::Guard,
                    Actor::system(&actor),
                    serde_json::json!({
                        "event": event,
                        "guard": hits.get(&r.key).map(|h| h.as_str()),
                        "state": r.state,
                        "note": r.note,
                        "connector": r.connector,
                        "operation": r.operation,
                        "request_id": request_id,
                        "requested_by": actor,
                    }),
                );
                g.subject = Some(r.subject.clone());
                g.action_key = Some(r.key.clone());
                Some(g)
            })
            .collect();
        if !held.is_empty() {
            self.store
                .append_audit(held)
                .await
                .map_err(|e| PipelineError::Unavailable(format!("audit trail: {e}")))?;
        }
        Ok(out)
    }

    /// Apply the breaker and the approval bookkeeping to one action about to be recorded: count its
    /// subject (runnable, non-reversal actions only), hold it when automatic and a scope is open,
    /// and stamp every held action with its requester and approval deadline. Borrowed unless changed.
    async fn hold<'a>(
        &self,
        action: &'a ActionRecord,
    ) -> Result<Cow<'a, ActionRecord>, PipelineError> {
        let mut a = Cow::Borrowed(action);
        if let Some(breaker) = &self.approvals.breaker
            && crate::guard::breaker_counts(action)
        {
            let open = breaker
                .admit(action)
                .await
                .map_err(|e| PipelineError::Unavailable(format!("breaker: {e}")))?;
            if !open.is_empty() && action.is_automatic() {
                let m = a.to_mut();
                m.state = ActionState::AwaitingApproval;
                m.next_attempt_at = None;
                m.note = Some(crate::guard::breaker_note(&open));
                self.metrics
                    .guard_blocks
                    .with_label_values(&[GuardHit::Breaker.as_str()])
                    .inc();
            }
        }
        if a.state == ActionState::AwaitingApproval && a.expires_at.is_none() {
            let m = a.to_mut();
            m.requested_by = Some(m.requester());
            let ttl = chrono::Duration::from_std(self.approvals.approval_ttl)
                .unwrap_or(chrono::Duration::days(1));
            m.expires_at = Some(Utc::now() + ttl);
            if m.note.is_none() {
                m.note = Some("approval required by policy".into());
            }
        }
        Ok(a)
    }

    /// Insert each action (linking `link` when coalesced); wake the executor if any can run now.
    async fn record_actions(
        &self,
        actions: &[ActionRecord],
        link: &str,
        window: Duration,
    ) -> Result<Vec<RecordedAction>, PipelineError> {
        let mut out = Vec::with_capacity(actions.len());
        for a in actions {
            let a = self.hold(a).await?;
            let a = a.as_ref();
            let inserted = self
                .store
                .insert_action(a, window, Some(link))
                .await
                .map_err(|e| PipelineError::Unavailable(e.to_string()))?;
            let superseded = match &inserted {
                Inserted::Superseded(held) => Some(held.clone()),
                _ => None,
            };
            let (disposition, coalesced_into) = match inserted {
                Inserted::New | Inserted::Superseded(_) => {
                    if a.state == ActionState::Planned
                        && let Some(h) = &self.approvals.handoff
                    {
                        h.offer(a.key.clone());
                    }
                    if a.state == ActionState::AwaitingApproval {
                        self.approvals.notifier.notify(Notice::ApprovalNeeded {
                            approval_id: a.key.clone(),
                            connector: a.connector.clone(),
                            operation: a.operation.as_str().to_string(),
                            subject: a.subject.clone(),
                            reason: a.note.clone().unwrap_or_else(|| a.reason.clone()),
                            requested_by: a.requester(),
                            expires_at: a.expires_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                        });
                    }
                    if matches!(a.state, ActionState::Skipped) {
                        let outcome = if a
                            .note
                            .as_deref()
                            .is_some_and(|n| n.starts_with("protected"))
                        {
                            "skipped"
                        } else {
                            "dry_run"
                        };
                        self.metrics
                            .actions
                            .with_label_values(&[
                                a.connector.as_str(),
                                a.operation.as_str(),
                                outcome,
                            ])
                            .inc();
                    }
                    ("new", None)
                }
                Inserted::Duplicate => ("duplicate", None),
                Inserted::Coalesced(into) => {
                    self.metrics
                        .actions
                        .with_label_values(&[
                            a.connector.as_str(),
                            a.operation.as_str(),
                            "coalesced",
                        ])
                        .inc();
                    ("coalesced", Some(into))
                }
            };
            if let Some(held) = &superseded {
                // The new action is recorded and due whatever happens here: a failure only leaves
                // the held one to its approver or its expiry.
                if let Err(e) = crate::approval::supersede(&self.approvals, held, a).await {
                    warn!(action_key = %a.key, held = %held, error = %e,
                        "could not cancel the held action this one supersedes");
                }
            }
            debug!(origin = %link, action_key = %a.key, connector = %a.connector, disposition, "action recorded");
            out.push(RecordedAction {
                key: a.key.clone(),
                connector: a.connector.clone(),
                operation: a.operation,
                subject: a.subject.clone(),
                state: a.state,
                disposition,
                coalesced_into,
                superseded,
                note: a.note.clone(),
            });
        }
        Ok(out)
    }
}

/// The audit records of one alert: received, decisions, and one per guard intervention. Batched so
/// that the alert costs one audit round trip.
fn audit_batch(planned: &Planned, recorded: &[RecordedAction], actor: Actor) -> Vec<AuditDraft> {
    let alert = &planned.alert;
    let digest = Some(planned.policy_digest.clone());
    let subjects: Vec<String> = alert
        .subjects
        .iter()
        .filter_map(|s| s.email.as_deref().or(s.username.as_deref()))
        .map(crate::plan::normalize_subject)
        .collect();
    // A record names a subject only when it concerns exactly one, so `?subject=` finds it.
    let mut decided: Vec<String> = planned
        .decisions
        .iter()
        .map(|d| crate::plan::normalize_subject(&d.subject))
        .collect();
    decided.sort_unstable();
    decided.dedup();
    let only = |v: &[String]| match v {
        [one] => Some(one.clone()),
        _ => None,
    };
    let mut received = AuditDraft::new(
        AuditKind::AlertReceived,
        actor.clone(),
        serde_json::json!({
            "outcome": "accepted",
            "format": alert.source.format,
            "title": alert.title,
            "category": alert.category,
            "severity": alert.severity,
            "time": alert.time,
            "subjects": subjects,
            "problems": planned.problems,
        }),
    );
    received.alert_id = Some(alert.id.clone());
    received.subject = only(&subjects);
    received.policy_digest = digest.clone();
    let mut decision = AuditDraft::new(
        AuditKind::Decision,
        actor.clone(),
        serde_json::json!({ "decisions": planned.decisions, "actions": recorded }),
    );
    decision.time = received.time;
    decision.alert_id = Some(alert.id.clone());
    decision.subject = only(&decided);
    decision.policy_digest = digest.clone();
    let mut out = vec![received, decision];
    for (a, r) in planned.actions.iter().zip(recorded) {
        // The recorded state and note: the breaker may have held what the plan said to run.
        if r.disposition != "new"
            || !matches!(
                r.state,
                ActionState::Skipped | ActionState::AwaitingApproval
            )
        {
            continue;
        }
        let mut g = AuditDraft::new(
            AuditKind::Guard,
            actor.clone(),
            serde_json::json!({
                "state": r.state,
                "note": r.note,
                "connector": a.connector,
                "operation": a.operation,
                "rule": a.rule,
            }),
        );
        g.time = out[0].time;
        g.alert_id = Some(alert.id.clone());
        g.subject = Some(a.subject.clone());
        g.action_key = Some(a.key.clone());
        g.policy_digest = digest.clone();
        out.push(g);
    }
    out
}
