//! Decision-log export (`[policy.decision_log]`): every evaluation as an event in OPA's decision-log
//! shape, POSTed in batches (a JSON array, as OPA's `/logs` body, uncompressed) to an HTTP sink.
//!
//! ```json
//! {"decision_id": "…", "timestamp": "…", "path": "deprovd/decisions",
//!  "labels": {"app": "deprovd", "version": "0.1.0"},
//!  "bundles": {"deprovd": {"revision": "<bundle digest>"}},
//!  "input_sha256": "…", "input": {…}?, "result": [decisions], "errors": [..]?,
//!  "metrics": {"timer_rego_query_eval_ns": 41000}}
//! ```
//!
//! `input_sha256` (an extension; OPA readers ignore unknown keys) is the SHA-256 of the canonical
//! alert JSON; `input` itself is sent only with `include_input`. The decider hands events to a bounded
//! queue and moves on: export never delays or fails containment. A full queue drops the event, a
//! failed POST drops its batch; both are counted and logged once per power of two.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};
use tracing::warn;

use crate::alert::Alert;
use crate::policy::{DecisionLogConfig, Evaluation, Policies};

/// Events per POST.
const BATCH: usize = 100;

/// The decider's end of the export queue.
#[derive(Debug, Clone)]
pub struct DecisionLog {
    tx: mpsc::Sender<serde_json::Value>,
    include_input: bool,
    dropped: Arc<AtomicU64>,
}

fn count(counter: &AtomicU64, what: &str) {
    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        warn!(count = n, "decision log: {what}");
    }
}

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("decision log: {0}")]
pub struct DecisionLogError(#[from] crate::net::ClientError);

impl DecisionLog {
    /// The exporter and the task that delivers its queue, until `stop` (then what is queued is sent).
    pub fn new(
        cfg: &DecisionLogConfig,
        stop: watch::Receiver<bool>,
    ) -> Result<
        (
            DecisionLog,
            impl std::future::Future<Output = ()> + Send + 'static,
        ),
        DecisionLogError,
    > {
        let client = crate::net::client(Some(cfg.timeout))?;
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let log = DecisionLog {
            tx,
            include_input: cfg.include_input,
            dropped: dropped.clone(),
        };
        Ok((log, deliver(client, cfg.url.clone(), rx, dropped, stop)))
    }

    /// Queue one evaluation's event; never waits.
    pub(super) fn record(
        &self,
        policies: &Policies,
        alert: &Alert,
        now: DateTime<Utc>,
        eval: &Evaluation,
        eval_ns: u64,
    ) {
        let input_sha256 = serde_json::to_vec(alert)
            .map(|b| hex::encode(Sha256::digest(b)))
            .unwrap_or_default();
        let mut event = serde_json::json!({
            "decision_id": uuid::Uuid::now_v7().to_string(),
            "timestamp": now.to_rfc3339_opts(SecondsFormat::Micros, true),
            "path": "deprovd/decisions",
            "labels": {"app": "deprovd", "version": env!("CARGO_PKG_VERSION")},
            "bundles": {"deprovd": {"revision": eval.digest.as_ref()}},
            "input_sha256": input_sha256,
            "result": eval.decisions,
            "metrics": {"timer_rego_query_eval_ns": eval_ns},
        });
        if !eval.errors.is_empty() {
            event["errors"] = serde_json::json!(eval.errors);
        }
        if self.include_input {
            if let Ok(input) = policies.input_document(alert, now, &serde_json::Value::Null) {
                event["input"] = input;
            }
        }
        if self.tx.try_send(event).is_err() {
            count(&self.dropped, "queue full, events dropped");
        }
    }

    /// Events dropped (queue full or delivery failed) since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn deliver(
    client: reqwest::Client,
    url: String,
    mut rx: mpsc::Receiver<serde_json::Value>,
    dropped: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let more = tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => n > 0,
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    rx.close();
                }
                continue;
            }
        };
        if !more {
            return;
        }
        let sent = client
            .post(&url)
            .json(&batch)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        if let Err(e) = sent {
            warn!(error = %e, events = batch.len(), "decision log: delivery failed; batch dropped");
            for _ in 0..batch.len() {
                count(&dropped, "events dropped after failed delivery");
            }
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyConfig;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_reach_the_sink_in_opas_shape() {
        let (got_tx, mut got_rx) = mpsc::channel::<serde_json::Value>(4);
        let app = axum::Router::new().route(
            "/logs",
            axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                let got = got_tx.clone();
                async move {
                    let _ = got.send(body).await;
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let (stop_tx, stop_rx) = watch::channel(false);
        let cfg = DecisionLogConfig {
            url: format!("http://{addr}/logs"),
            include_input: true,
            queue: 16,
            timeout: std::time::Duration::from_secs(5),
        };
        let (log, task) = DecisionLog::new(&cfg, stop_rx).unwrap();
        let task = tokio::spawn(task);
        let policies = Policies::load(&PolicyConfig {
            dir: Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")),
            ..PolicyConfig::default()
        })
        .unwrap();
        let alert: Alert = serde_json::from_value(serde_json::json!({
            "id": "dl-1", "source": {"vendor": "t"}, "time": "2026-01-01T00:00:00Z",
            "severity": "critical", "category": "credential_theft",
            "subjects": [{"email": "jdoe@example.com"}]
        }))
        .unwrap();
        let now = Utc::now();
        let eval = policies.evaluate(&alert, now, &serde_json::Value::Null);
        log.record(&policies, &alert, now, &eval, 1234);
        let body = got_rx.recv().await.expect("one batch");
        let e = &body[0];
        assert_eq!(e["path"], "deprovd/decisions");
        assert_eq!(e["bundles"]["deprovd"]["revision"], eval.digest.as_ref());
        assert_eq!(e["metrics"]["timer_rego_query_eval_ns"], 1234);
        assert_eq!(e["result"].as_array().unwrap().len(), eval.decisions.len());
        assert_eq!(e["input"]["alert"]["id"], "dl-1");
        assert_eq!(e["input_sha256"].as_str().unwrap().len(), 64);
        assert!(e["decision_id"].as_str().is_some());
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        assert_eq!(log.dropped(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_drops_instead_of_waiting() {
        let (_stop_tx, stop_rx) = watch::channel(false);
        let cfg = DecisionLogConfig {
            url: "http://127.0.0.1:9/logs".into(),
            include_input: false,
            queue: 1,
            timeout: std::time::Duration::from_secs(1),
        };
        // The delivery task is never started: the queue holds one event, the second is dropped.
        let (log, _task) = DecisionLog::new(&cfg, stop_rx).unwrap();
        let policies = Policies::load(&PolicyConfig {
            dir: Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")),
            ..PolicyConfig::default()
        })
        .unwrap();
        let alert: Alert = serde_json::from_value(serde_json::json!({
            "id": "dl-2", "source": {"vendor": "t"}, "time": "2026-01-01T00:00:00Z",
            "severity": "low", "category": "malware"
        }))
        .unwrap();
        let eval = policies.evaluate(&alert, Utc::now(), &serde_json::Value::Null);
        log.record(&policies, &alert, Utc::now(), &eval, 1);
        log.record(&policies, &alert, Utc::now(), &eval, 1);
        assert_eq!(log.dropped(), 1);
    }
}
