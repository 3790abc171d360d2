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
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;
use tracing::{Instrument, debug, warn};

mod audit;
mod decide;
mod decision_log;
mod diff;
mod record;
mod retain;
mod shadow;

pub use decide::Decider;
pub(crate) use decision_log::DecisionLog;
pub use diff::Replay;
pub(crate) use retain::Retainer;
pub use shadow::Shadow;
pub(crate) use shadow::ShadowReport;

use crate::alert::{Alert, NormalizeError, NormalizerRegistry};
use crate::approval::Approvals;
use crate::audit::{Actor, AuditDraft, AuditKind};
use crate::executor::Handoff;
use crate::guard::{Breaker, GuardHit, Guards};
use crate::ledger::{ActionRecord, ActionState, Inserted, StateReason, StateStore};
use crate::notify::{Notice, Notifier};
use crate::plan::Planner;
use crate::policy::{Decision, Policies};
use crate::telemetry::{ActionEnd, Metrics, PolicyErrorKind};

/// Why an input could not be taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PipelineError {
    /// The input itself is bad: dead-letter it with this reason (HTTP: 400). Retrying cannot help.
    #[error("{reason}")]
    Rejected { reason: String, code: &'static str },
    /// A dependency (the ledger) is down: do not acknowledge; retry later (HTTP: 503).
    #[error("not durable yet: {0}")]
    Unavailable(String),
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

/// What recording did with one planned action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Disposition {
    /// Recorded as a new action (possibly superseding a held one).
    New,
    /// An action with the same idempotency key exists (a redelivery): nothing changed.
    Duplicate,
    /// A live action for the same (subject, connector, operation) absorbed it.
    Coalesced,
}

impl Disposition {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Disposition::New => "new",
            Disposition::Duplicate => "duplicate",
            Disposition::Coalesced => "coalesced",
        }
    }
}

/// What happened to one planned action when it was recorded.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub(crate) struct RecordedAction {
    pub key: String,
    pub connector: String,
    pub operation: crate::action::Operation,
    pub subject: String,
    pub state: ActionState,
    pub disposition: Disposition,
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
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[schemars(rename = "AlertAccepted")]
pub(crate) struct Processed {
    pub alert_id: String,
    pub decisions: Vec<Decision>,
    pub actions: Vec<RecordedAction>,
    pub policy_digest: String,
    /// Policy and planning problems (e.g. a decision no configured connector can carry out).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// What was odd about the alert document itself (a time in seconds, a severity guessed, a
    /// time of receipt standing in): the alert was taken, but the sender should know.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alert_problems: Vec<crate::alert::AlertProblem>,
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
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub(crate) struct RejectedPart {
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
pub(crate) struct Delivery {
    /// Whether the input was an envelope of several documents (its answer is then a list).
    pub split: bool,
    /// Every document taken, in order.
    pub alerts: Vec<Processed>,
    /// Every document refused (only in split deliveries: a refused single document is an error).
    pub rejected: Vec<RejectedPart>,
}

/// Everything the path needs, shared by every source (`Arc`).
pub(crate) struct Pipeline {
    pub decider: Decider,
    pub store: Arc<dyn StateStore>,
    pub metrics: Arc<Metrics>,
    /// Window within which a live action for the same (subject, connector, operation) absorbs new alerts.
    pub coalesce_window: Duration,
    /// Held actions and the guards that hold them: the executor handoff, the blast-radius breaker,
    /// the approval TTL and the notifier that tells approvers.
    pub approvals: Approvals,
    /// Keeps decided alerts for replay (`[policy] retain_alerts`); `None`: not kept.
    pub retainer: Option<Retainer>,
    /// One permit per core: at most this many alerts are decided at once, on tokio's blocking pool.
    /// Without it every in-flight message (`max_in_flight`, HTTP requests) could hold a blocking
    /// thread — each with its own policy VM and allocator cache — so a storm grew memory with the
    /// pool instead of queueing; with it the same few warm threads take every decision.
    deciding: tokio::sync::Semaphore,
    shutting_down: AtomicBool,
}

/// How many alerts are decided at once: the cores this process may use (at least 1).
fn decide_parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

impl Pipeline {
    pub(crate) fn new(
        decider: Decider,
        store: Arc<dyn StateStore>,
        handoff: Option<Handoff>,
        coalesce_window: Duration,
    ) -> Self {
        let metrics = decider.metrics.clone();
        Self {
            approvals: Approvals::new(store.clone(), store.clone(), handoff, metrics.clone()),
            metrics,
            decider,
            store,
            coalesce_window,
            retainer: None,
            deciding: tokio::sync::Semaphore::new(decide_parallelism()),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Add the guards that need the store or people: the breaker (`None`: disabled), the approval
    /// TTL of held actions, and the notifier that tells approvers.
    pub(crate) fn with_guards(
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
    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// Run `decide` on tokio's blocking pool once one of the per-core permits is free (see
    /// `deciding`). Waiting for a permit is back-pressure: the Kafka source stops taking messages
    /// at `max_in_flight`, and HTTP requests wait within their deadline.
    async fn decide_blocking<T: Send + 'static>(
        self: &Arc<Self>,
        decide: impl FnOnce(&Decider) -> T + Send + 'static,
    ) -> Result<T, PipelineError> {
        let unavailable = |e: &dyn std::fmt::Display| {
            PipelineError::Unavailable(format!("policy evaluation: {e}"))
        };
        let permit = self.deciding.acquire().await.map_err(|e| unavailable(&e))?;
        let this = self.clone();
        let decided = tokio::task::spawn_blocking(move || decide(&this.decider))
            .await
            .map_err(|e| unavailable(&e));
        drop(permit);
        decided
    }

    /// The Shared Signals receiver's path, and the only way to an `ssf` alert: as
    /// [`process_delivery`](Self::process_delivery) for the claims of a SET whose signature, issuer, audience,
    /// `iat` and `jti` the receiver checked. (`format = ssf` is refused on every other path.)
    pub(crate) async fn process_verified_set(
        self: &Arc<Self>,
        claims: serde_json::Value,
        actor: Actor,
    ) -> Result<Processed, PipelineError> {
        let len = serde_json::to_vec(&claims).map_or(0, |v| v.len());
        let decided = self
            .decide_blocking(move |decider| decider.decide_verified_set(claims))
            .await?;
        match decided {
            Ok(planned) => self.accept(planned, "ssf", actor).await,
            Err(e) => Err(self
                .reject(&e, Some("ssf"), "ssf", actor, len, None)
                .await?),
        }
    }

    /// The path HTTP and Kafka ingest take: decide on a blocking thread, then record every action in
    /// the ledger, returning only when the input is durable (or rejected) — but a delivery
    /// that carries several documents (an Okta event hook) becomes one alert per document, and a
    /// document that cannot be normalized is rejected alone — the caller dead-letters each
    /// [`RejectedPart`] with its own bytes and acknowledges the delivery. A single document (every
    /// other format) is accepted, or `Err(Rejected)` for the whole. `received_at` (the Kafka
    /// record's timestamp, the HTTP request's arrival) times an alert that carries no time.
    pub(crate) async fn process_delivery(
        self: &Arc<Self>,
        bytes: &[u8],
        format: Option<&str>,
        source: &'static str,
        actor: Actor,
        received_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Delivery, PipelineError> {
        let owned = bytes.to_vec();
        let format_owned = format.map(str::to_string);
        let decided = self
            .decide_blocking(move |decider| {
                decider.decide_all_received(&owned, format_owned.as_deref(), received_at)
            })
            .await?;
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
            .alert(label, crate::telemetry::AlertOutcome::DeadLettered);
        self.metrics
            .dead_letter(crate::telemetry::DeadLetterStage::Ingest);
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
        if let Some(r) = &self.retainer {
            r.retain(&planned.alert);
        }
        self.metrics.alert(
            planned.alert.source.format.as_str(),
            crate::telemetry::AlertOutcome::Accepted,
        );
        Ok(Processed {
            alert_id: planned.alert.id,
            decisions: planned.decisions,
            actions: recorded,
            policy_digest: planned.policy_digest,
            problems: planned.problems,
            alert_problems: planned.alert.problems,
        })
    }
}
