//! Shared Signals receiver: Security Event Tokens pushed to `POST /v1/ssf/{receiver}` (RFC 8935) or
//! polled from a transmitter (RFC 8936) become alerts on the same path as every other source.
//!
//! Each SET goes through one function, [`Receivers::handle`]:
//! 1. verify it ([`crate::ssf::verify`]: signature against the transmitter's JWKS, `alg`, `iss`,
//!    `aud`, `iat`, one event);
//! 2. claim its `jti` in the state store (`SET NX`, per receiver and issuer) so a replay is refused
//!    — and so two replicas receiving the same SET do not both process it;
//! 3. SSF stream-control events (verification, stream-updated) are accepted and end here;
//! 4. the claims go through [`Pipeline::process_verified_set`] — the only way to an alert of format
//!    `ssf` (the format is refused on every other source) — which returns once the actions are in
//!    the ledger;
//! 5. the `jti` is marked done for `max_age` (after which `iat` checks refuse the SET anyway).
//!
//! Acknowledgement follows the ledger, as for Kafka offsets: a push gets its 202, and a polled SET
//! its `ack`, only after step 4 succeeded. When the ledger is down the `jti` claim is released and
//! the transmitter told to retry (push: 503; poll: neither acked nor errored, so it is redelivered).
//! Every refused SET is dead-lettered with its reason and counted by its RFC 8935 error code.
//!
//! Push authentication: the bearer token of an API caller with role `ingest` (RFC 8935 §4 leaves
//! the method to the deployment; tokens are what every other deprovd ingest uses). A missing or
//! wrong token answers 401 `authentication_failed`, a token without the role 403 `access_denied`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::audit::{Actor, AuditDraft, AuditKind};
use crate::deadletter::DeadLetterSink;
use crate::ledger::StateStore;
use crate::pipeline::{Pipeline, PipelineError};
use crate::ssf::verify::{ErrCode, Rejection, Verifier};
use crate::ssf::{ReceiverConfig, SsfConfig};
use crate::telemetry::Metrics;

/// State-store namespace of `jti` claims.
const JTI_NS: &str = "ssf_jti";
/// How long a `jti` stays claimed while its SET is processed; a crash mid-way frees it after this.
const PROCESSING_TTL: Duration = Duration::from_secs(300);
/// Longest poll answer read, per SET asked for (`max_events`): a SET is a few KiB.
const MAX_POLL_BYTES_PER_SET: usize = 64 * 1024;

/// What became of one SET.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Verified and recorded (`alert_id` is `None` for stream-control events).
    Accepted { alert_id: Option<String> },
    /// Its `jti` was seen before; `prior` says what became of the earlier copy.
    Duplicate { prior: Prior },
    /// Refused; dead-lettered.
    Rejected(Rejection),
    /// The ledger is down: the transmitter must deliver it again.
    Unavailable(String),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Accepted { alert_id: Some(_) } => "accepted",
            Outcome::Accepted { alert_id: None } => "control",
            Outcome::Duplicate { .. } => "duplicate",
            Outcome::Rejected(r) => r.code.as_str(),
            Outcome::Unavailable(_) => "unavailable",
        }
    }
}

/// What became of the first copy of a SET whose `jti` arrives again.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Prior {
    /// Recorded: this copy is acknowledged (push 202, poll `ack`) and not acted on again.
    Done,
    /// Still being processed, or released after the ledger was down (or its claim just expired):
    /// the transmitter must deliver it again later (push 503, poll: neither acked nor errored). A
    /// final 400 here would lose the SET if the first attempt then ends unavailable.
    InFlight,
    /// Refused by the pipeline: the same refusal again (push 400, poll `setErrs`).
    Rejected(Rejection),
}

impl Prior {
    /// From the `jti` record in the state store (`None`: it expired since the claim failed).
    fn from_record(doc: Option<&Value>) -> Self {
        let Some(doc) = doc else {
            return Prior::InFlight;
        };
        match doc["state"].as_str() {
            Some("done") => Prior::Done,
            Some("rejected") => {
                let description = doc["description"]
                    .as_str()
                    .unwrap_or("the SET was refused when first received");
                Prior::Rejected(Rejection::new(
                    ErrCode::InvalidRequest,
                    format!("jti already received and refused: {description}"),
                ))
            }
            _ => Prior::InFlight,
        }
    }
}

/// The parts of the running service a SET needs once verified.
pub(crate) struct Sinks<'a> {
    pub pipeline: &'a Arc<Pipeline>,
    pub store: &'a dyn StateStore,
    pub dead_letters: Option<&'a Arc<dyn DeadLetterSink>>,
}

struct Receiver {
    verifier: Arc<Verifier>,
    poll_token: Option<SecretString>,
}

/// Why the receivers cannot be set up, or why one poll request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReceiverError {
    #[error("ssf receiver HTTP client: {0}")]
    Client(#[from] crate::net::ClientError),
    #[error("ssf.receivers[{index}].poll_token: {source}")]
    PollToken {
        index: usize,
        source: crate::config::SecretError,
    },
    /// The poll request got no answer.
    #[error("{0}")]
    Request(#[from] reqwest::Error),
    #[error("HTTP {0}")]
    Status(reqwest::StatusCode),
    #[error("{0}")]
    Read(#[from] crate::net::ReadError),
    #[error("answer has no `sets` object")]
    NoSets,
}

/// Every configured receiver by name. Built at startup (secrets resolved then); shared by the API
/// and the pollers.
pub(crate) struct Receivers {
    by_name: BTreeMap<String, Receiver>,
    metrics: Arc<Metrics>,
    http: reqwest::Client,
}

impl Receivers {
    pub(crate) fn build(
        cfg: &SsfConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, ReceiverError> {
        let http = crate::net::client(Some(Duration::from_secs(15)))?;
        let mut by_name = BTreeMap::new();
        for (i, r) in cfg.receivers.iter().enumerate() {
            let poll_token = match &r.poll_token {
                Some(t) => Some(
                    t.resolve()
                        .map_err(|source| ReceiverError::PollToken { index: i, source })?,
                ),
                None => None,
            };
            by_name.insert(
                r.name.clone(),
                Receiver {
                    verifier: Verifier::new(r.clone(), http.clone()),
                    poll_token,
                },
            );
        }
        Ok(Arc::new(Self {
            by_name,
            metrics,
            http,
        }))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Whether a receiver `name` is configured (unknown names must not become metric labels).
    pub(crate) fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Verify, deduplicate and record one SET for receiver `name` (see the module docs).
    pub(crate) async fn handle(
        &self,
        name: &str,
        token: &str,
        via: &'static str,
        actor: Actor,
        sinks: &Sinks<'_>,
    ) -> Outcome {
        let Some(r) = self.by_name.get(name) else {
            return Outcome::Rejected(Rejection::new(
                ErrCode::InvalidRequest,
                format!("no receiver named `{name}`"),
            ));
        };
        let outcome = if via == "push" && !r.verifier.config().push {
            Outcome::Rejected(Rejection::new(
                ErrCode::AccessDenied,
                format!("receiver `{name}` takes SETs by polling only (`push = false`)"),
            ))
        } else {
            self.handle_inner(r, token, actor.clone(), sinks).await
        };
        self.metrics.ssf_set(name, outcome.label());
        match &outcome {
            Outcome::Rejected(rej) => {
                info!(receiver = name, via, err = rej.code.as_str(), reason = %rej.description, "ssf: SET refused");
                // Refusals before the pipeline are audited here (the pipeline audits its own).
                if !rej.from_pipeline {
                    self.metrics
                        .dead_letter(crate::telemetry::DeadLetterStage::Ingest);
                    let draft = AuditDraft::new(
                        AuditKind::AlertReceived,
                        actor,
                        json!({
                            "source": "ssf",
                            "receiver": name,
                            "delivery": via,
                            "outcome": "rejected",
                            "code": rej.code.as_str(),
                            "reason": rej.description,
                            "bytes": token.len(),
                        }),
                    );
                    if let Err(e) = sinks.store.append_audit(vec![draft]).await {
                        warn!(error = %e, "could not audit a refused SET");
                    }
                }
                if let Some(dlq) = sinks.dead_letters {
                    let origin = [
                        ("deprovd-origin", "ssf"),
                        ("deprovd-ssf-receiver", name),
                        ("deprovd-ssf-delivery", via),
                        ("deprovd-ssf-err", rej.code.as_str()),
                    ];
                    if let Err(e) = dlq.send(token.as_bytes(), &rej.to_string(), &origin).await {
                        warn!(error = %e, "could not dead-letter a refused SET");
                    }
                }
            }
            Outcome::Unavailable(e) => {
                warn!(receiver = name, via, error = %e, "ssf: SET not recorded; the transmitter must retry")
            }
            _ => {}
        }
        outcome
    }

    async fn handle_inner(
        &self,
        r: &Receiver,
        token: &str,
        actor: Actor,
        sinks: &Sinks<'_>,
    ) -> Outcome {
        let cfg = r.verifier.config();
        let set = match r.verifier.verify(token, chrono::Utc::now()).await {
            Ok(s) => s,
            Err(rej) if rej.temporary => return Outcome::Unavailable(rej.description),
            Err(rej) => return Outcome::Rejected(rej),
        };
        let key = jti_key(&cfg.name, &set.iss, &set.jti);
        let remember = cfg.max_age + cfg.clock_skew * 2;
        match sinks
            .store
            .put_json(
                JTI_NS,
                &key,
                &json!({"state": "processing"}),
                true,
                Some(PROCESSING_TTL),
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                // A duplicate is a retry as often as a replay: either way it is never acted on
                // twice; its answer follows what became of the first copy.
                return match sinks.store.get_json(JTI_NS, &key).await {
                    Ok(doc) => Outcome::Duplicate {
                        prior: Prior::from_record(doc.as_ref()),
                    },
                    Err(e) => Outcome::Unavailable(format!("jti lookup: {e}")),
                };
            }
            Err(e) => return Outcome::Unavailable(format!("jti claim: {e}")),
        }
        let mark_with = |record: Value, ttl: Duration| {
            let key = key.clone();
            async move {
                sinks
                    .store
                    .put_json(JTI_NS, &key, &record, false, Some(ttl))
                    .await
            }
        };
        let mark = |state: &'static str, ttl: Duration| mark_with(json!({ "state": state }), ttl);
        if set.event_type.starts_with(crate::alert::ssf::SSF_CONTROL) {
            let _ = mark("done", remember).await;
            info!(receiver = %cfg.name, event_type = %set.event_type, "ssf: stream control event accepted");
            return Outcome::Accepted { alert_id: None };
        }
        match sinks.pipeline.process_verified_set(set.claims, actor).await {
            Ok(p) => {
                if let Err(e) = mark("done", remember).await {
                    // The actions are durable; only replay detection is weaker for this jti (and the
                    // ledger's idempotency keys still make a replay act once).
                    warn!(error = %e, "ssf: could not mark a processed jti");
                }
                Outcome::Accepted {
                    alert_id: Some(p.alert_id),
                }
            }
            Err(PipelineError::Rejected { reason, .. }) => {
                // The reason is kept so a retried copy gets the same refusal.
                let _ = mark_with(
                    json!({"state": "rejected", "description": reason}),
                    remember,
                )
                .await;
                let mut rej = Rejection::new(ErrCode::InvalidRequest, reason);
                rej.from_pipeline = true;
                Outcome::Rejected(rej)
            }
            Err(e @ PipelineError::Unavailable(_)) => {
                // Free the jti at once so the transmitter's retry is processed, not called a replay.
                let _ = mark("released", Duration::from_millis(1)).await;
                Outcome::Unavailable(e.to_string())
            }
        }
    }

    /// Poll every receiver that has a `poll_url` until `stop`.
    pub(crate) async fn run_pollers(
        self: Arc<Self>,
        pipeline: Arc<Pipeline>,
        store: Arc<dyn StateStore>,
        dead_letters: Option<Arc<dyn DeadLetterSink>>,
        stop: watch::Receiver<bool>,
    ) {
        let mut tasks = tokio::task::JoinSet::new();
        for (name, r) in &self.by_name {
            if r.verifier.config().poll_url.is_none() {
                continue;
            }
            tasks.spawn(self.clone().poll_loop(
                name.clone(),
                pipeline.clone(),
                store.clone(),
                dead_letters.clone(),
                stop.clone(),
            ));
        }
        while tasks.join_next().await.is_some() {}
    }

    /// RFC 8936 poll loop for one receiver. Acks and `setErrs` ride on the next request; at stop, a
    /// last request with `maxEvents: 0` delivers pending acks.
    async fn poll_loop(
        self: Arc<Self>,
        name: String,
        pipeline: Arc<Pipeline>,
        store: Arc<dyn StateStore>,
        dead_letters: Option<Arc<dyn DeadLetterSink>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let r = &self.by_name[&name];
        let cfg: &ReceiverConfig = r.verifier.config();
        let url = cfg.poll_url.clone().expect("only receivers with poll_url");
        let mut acks: Vec<String> = Vec::new();
        let mut errs = serde_json::Map::new();
        let mut failures = 0u32;
        // Rounds in a row that left SETs neither acked nor errored (ledger down, still in flight).
        let mut stuck = 0u32;
        info!(receiver = %name, "ssf: polling");
        loop {
            let stopping = *stop.borrow();
            if stopping && acks.is_empty() && errs.is_empty() {
                return;
            }
            let mut body = json!({
                "ack": acks,
                "maxEvents": if stopping { 0 } else { cfg.max_events },
                "returnImmediately": true,
            });
            if !errs.is_empty() {
                body["setErrs"] = Value::Object(errs.clone());
            }
            let cap = MAX_POLL_BYTES_PER_SET.saturating_mul(cfg.max_events.max(1) as usize);
            let answer = self
                .poll_once(&url, r.poll_token.as_ref(), &body, cap)
                .await;
            // `moreAvailable` needs nothing extra: a round with progress re-polls at once anyway.
            let (sets, _more) = match answer {
                Ok(v) => {
                    failures = 0;
                    acks.clear();
                    errs.clear();
                    v
                }
                Err(e) => {
                    failures += 1;
                    warn!(receiver = %name, error = %e, "ssf: poll failed");
                    if stopping {
                        return;
                    }
                    let wait = (cfg.poll_interval * failures.min(12)).min(Duration::from_secs(60));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
            };
            if stopping {
                return;
            }
            let mut retry_later = 0usize;
            for (jti, token) in sets {
                let sinks = Sinks {
                    pipeline: &pipeline,
                    store: store.as_ref(),
                    dead_letters: dead_letters.as_ref(),
                };
                match self
                    .handle(&name, &token, "poll", Actor::system("ssf-poll"), &sinks)
                    .await
                {
                    Outcome::Accepted { .. } | Outcome::Duplicate { prior: Prior::Done } => {
                        acks.push(jti)
                    }
                    Outcome::Rejected(rej)
                    | Outcome::Duplicate {
                        prior: Prior::Rejected(rej),
                    } => {
                        errs.insert(
                            jti,
                            json!({"err": rej.code.as_str(), "description": rej.description}),
                        );
                    }
                    Outcome::Duplicate {
                        prior: Prior::InFlight,
                    }
                    | Outcome::Unavailable(_) => retry_later += 1,
                }
            }
            stuck = if retry_later > 0 && acks.is_empty() && errs.is_empty() {
                stuck + 1
            } else {
                0
            };
            let progress = !acks.is_empty() || !errs.is_empty();
            if let Some(wait) = idle_wait(cfg.poll_interval, progress, stuck) {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }

    /// One poll request; returns the SETs by `jti` and `moreAvailable`.
    async fn poll_once(
        &self,
        url: &str,
        token: Option<&SecretString>,
        body: &Value,
        max_bytes: usize,
    ) -> Result<(Vec<(String, String)>, bool), ReceiverError> {
        let mut req = self
            .http
            .post(url)
            .header("accept", "application/json")
            .json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t.expose_secret());
        }
        let resp = req.send().await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ReceiverError::Status(status));
        }
        let doc = crate::net::read_json_capped(resp, max_bytes).await?;
        let sets = doc
            .get("sets")
            .and_then(Value::as_object)
            .ok_or(ReceiverError::NoSets)?
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
            .collect();
        let more = doc
            .get("moreAvailable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok((sets, more))
    }
}

/// How long the poll loop waits before its next request, if at all. It polls again at once only when
/// that request carries acks or errors (progress to report, and the next SETs to fetch). A round that could not settle any SET (the ledger is
/// down, or copies are still in flight elsewhere) waits `poll_interval`, longer each such round in a
/// row (up to 12×, at most a minute), instead of re-polling the same SETs in a tight loop.
fn idle_wait(poll_interval: Duration, progress: bool, stuck: u32) -> Option<Duration> {
    if progress {
        return None;
    }
    if stuck > 0 {
        return Some((poll_interval * stuck.min(12)).min(Duration::from_secs(60)));
    }
    Some(poll_interval)
}

/// The store key of a `jti`: per receiver and issuer (jtis are unique per issuer only), hashed to a
/// bounded length.
fn jti_key(receiver: &str, iss: &str, jti: &str) -> String {
    let d = Sha256::digest(format!("{iss}\0{jti}"));
    format!("{receiver}:{}", hex::encode(&d[..16]))
}

/// The HTTP answer to a pushed SET (RFC 8935 §2.2–2.4): 202 with no body when accepted; 400 with
/// `{"err", "description"}` when refused; 503 when it must be retried. A copy of a SET already
/// received answers as the first copy did once it settled: 202 when recorded (a transmitter's retry
/// after a lost 202 must not be told "refused" — 400 is final), 400 when refused, 503 while the
/// first copy is still in flight or was released because the ledger was down.
pub(crate) fn push_response(outcome: &Outcome) -> (StatusCode, Option<Value>) {
    match outcome {
        Outcome::Accepted { .. } | Outcome::Duplicate { prior: Prior::Done } => {
            (StatusCode::ACCEPTED, None)
        }
        Outcome::Duplicate {
            prior: Prior::InFlight,
        } => (
            StatusCode::SERVICE_UNAVAILABLE,
            Some(json!({
                "err": "temporarily_unavailable",
                "description": "a SET with this jti is still being processed; deliver it again later",
            })),
        ),
        Outcome::Duplicate {
            prior: Prior::Rejected(r),
        }
        | Outcome::Rejected(r) => (
            StatusCode::BAD_REQUEST,
            Some(json!({"err": r.code.as_str(), "description": r.description})),
        ),
        Outcome::Unavailable(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Some(json!({"err": "temporarily_unavailable", "description": e})),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jti_keys_differ_by_issuer_and_receiver() {
        assert_ne!(
            jti_key("a", "https://x", "1"),
            jti_key("a", "https://y", "1")
        );
        assert_ne!(
            jti_key("a", "https://x", "1"),
            jti_key("b", "https://x", "1")
        );
        assert_eq!(
            jti_key("a", "https://x", "1"),
            jti_key("a", "https://x", "1")
        );
    }

    #[test]
    fn a_duplicate_answers_as_its_first_copy_settled() {
        let dup = |doc: Option<Value>| {
            push_response(&Outcome::Duplicate {
                prior: Prior::from_record(doc.as_ref()),
            })
        };
        // Recorded: a retry after a lost 202 is acknowledged (and not acted on again).
        assert_eq!(
            dup(Some(json!({"state": "done"}))),
            (StatusCode::ACCEPTED, None)
        );
        // Still processing, released after an outage, or the claim just expired: retry later,
        // never the final 400 that would lose the SET if the first copy then fails.
        for doc in [
            Some(json!({"state": "processing"})),
            Some(json!({"state": "released"})),
            None,
        ] {
            let (status, body) = dup(doc.clone());
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{doc:?}");
            assert_eq!(body.unwrap()["err"], "temporarily_unavailable");
        }
        // Refused: the same refusal, with its reason.
        let (status, body) = dup(Some(
            json!({"state": "rejected", "description": "ssf: no user subject"}),
        ));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let body = body.unwrap();
        assert_eq!(body["err"], "invalid_request");
        assert!(
            body["description"]
                .as_str()
                .unwrap()
                .contains("ssf: no user subject"),
            "{body}"
        );
    }

    #[test]
    fn the_poll_loop_waits_whenever_a_round_settles_nothing_and_backs_off_while_stuck() {
        let i = Duration::from_millis(100);
        // Acks or errors to report: the next request goes out at once.
        assert_eq!(idle_wait(i, true, 0), None);
        // Nothing received and nothing to report.
        assert_eq!(idle_wait(i, false, 0), Some(i));
        // SETs received but none could be settled (ledger down, in flight elsewhere): wait, longer
        // each round in a row, capped.
        assert_eq!(idle_wait(i, false, 1), Some(i));
        assert_eq!(idle_wait(i, false, 3), Some(i * 3));
        assert_eq!(idle_wait(i, false, 100), Some(i * 12));
        assert_eq!(
            idle_wait(Duration::from_secs(30), false, 5),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn refusals_answer_400_with_the_rfc_body() {
        let (s, b) = push_response(&Outcome::Rejected(Rejection::new(
            ErrCode::InvalidAudience,
            "nope",
        )));
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(
            b.unwrap(),
            json!({"err": "invalid_audience", "description": "nope"})
        );
        assert_eq!(
            push_response(&Outcome::Accepted { alert_id: None }).0,
            StatusCode::ACCEPTED
        );
    }
}
