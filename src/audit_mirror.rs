//! Mirror the audit trail to a Kafka topic, so the chain's head is anchored outside the state store
//! (see [`crate::audit`]: someone who rewrites every record *and* the head in the store is caught by
//! comparing with the mirror) and so SIEMs can consume the trail.
//!
//! ```toml
//! [audit]
//! kafka_topic = "deprovd.audit"   # uses the [kafka] connection settings; the topic must exist
//! ```
//!
//! A background task tails the trail from its cursor (`audit_range` from the last mirrored `seq`),
//! produces each record as its JSON (key = `seq` in decimal) in order, and only after the broker has
//! acknowledged a batch moves the cursor, which lives in the state store (`put_json`). So a restart
//! resumes where the last acknowledged batch ended: no gaps; a crash between the acknowledgement and
//! the cursor write repeats records, which consumers recognise by key (at-least-once, like every
//! Kafka producer without transactions). Replicas sharing a Redis store take a lease first, so one
//! of them mirrors at a time.
//!
//! It never blocks the pipeline: it only reads the trail, on its own task, and a broker outage only
//! delays the mirror (the trail itself is complete in the store).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Problem;
use crate::ledger::{AuditStore, DocStore, StoreError};

/// Why a mirroring round stopped; the next round retries from the cursor.
#[derive(Debug, thiserror::Error)]
enum MirrorError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Encode(#[from] serde_json::Error),
    #[error("queueing audit record {seq}: {source}")]
    Queue { seq: u64, source: KafkaError },
    #[error("producing audit record {seq}: {source}")]
    Produce { seq: u64, source: KafkaError },
    #[error("producing audit record {seq}: cancelled")]
    Cancelled { seq: u64 },
}

/// State-store namespace of the mirror's cursor (key: topic → `{"seq": n}`).
pub(crate) const CURSOR_NS: &str = "audit_mirror";
/// State-store namespace of the mirror's lease (key: topic → `{"owner": id}`).
pub(crate) const LEASE_NS: &str = "audit_mirror_lease";
/// Records read and produced per round.
const BATCH: usize = 256;
/// How long a lease lasts without renewal; renewed every round.
const LEASE_TTL: Duration = Duration::from_secs(30);
/// How often to look for new records when the mirror has caught up.
const POLL: Duration = Duration::from_millis(200);

/// `[audit]` settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Kafka topic receiving a copy of every audit record; absent: no mirror. Needs `[kafka]`.
    pub kafka_topic: Option<String>,
}

impl AuditConfig {
    pub fn validate(&self, path: &str, kafka_configured: bool, problems: &mut Vec<Problem>) {
        let Some(topic) = &self.kafka_topic else {
            return;
        };
        let at = format!("{path}.kafka_topic");
        // Kafka's own rule: 1–249 characters of [a-zA-Z0-9._-].
        if topic.is_empty()
            || topic.len() > 249
            || !topic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            problems.push(Problem::new(
                &at,
                format!(
                    "`{topic}` is not a Kafka topic name (1–249 of letters, digits, `.`, `_`, `-`)"
                ),
            ));
        }
        if !kafka_configured {
            problems.push(Problem::new(
                &at,
                "needs the [kafka] section (brokers and client properties) to produce to",
            ));
        }
    }
}

/// The mirror task.
pub struct AuditMirror {
    /// The trail it copies.
    trail: Arc<dyn AuditStore>,
    /// The cursor and the lease.
    docs: Arc<dyn DocStore>,
    producer: FutureProducer,
    topic: String,
    owner: String,
}

impl AuditMirror {
    pub fn new(
        trail: Arc<dyn AuditStore>,
        docs: Arc<dyn DocStore>,
        producer: FutureProducer,
        topic: String,
    ) -> Self {
        Self {
            trail,
            docs,
            producer,
            topic,
            owner: format!("mirror-{}", uuid::Uuid::new_v4()),
        }
    }

    /// The last `seq` acknowledged by the broker (0: none yet).
    pub async fn cursor(store: &dyn DocStore, topic: &str) -> Result<u64, StoreError> {
        Ok(store
            .get_json(CURSOR_NS, topic)
            .await?
            .and_then(|d| d["seq"].as_u64())
            .unwrap_or(0))
    }

    /// Mirror until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        info!(topic = %self.topic, "audit mirror started");
        let mut trouble = crate::retry::Attempts::new(crate::retry::MIRROR);
        loop {
            let wait = match self.round().await {
                Ok(true) => {
                    trouble.reset();
                    Duration::ZERO
                }
                Ok(false) => {
                    trouble.reset();
                    POLL
                }
                Err(e) => {
                    warn!(topic = %self.topic, error = %e, "audit mirror stalled; will retry");
                    trouble.next_wait()
                }
            };
            if *stop.borrow() {
                return;
            }
            if !wait.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    }

    /// One batch. `Ok(true)` when records were mirrored (more may be waiting).
    async fn round(&self) -> Result<bool, MirrorError> {
        if !self.hold_lease().await? {
            return Ok(false);
        }
        let cursor = Self::cursor(self.docs.as_ref(), &self.topic).await?;
        let head = self.trail.audit_head().await?;
        if head.is_none_or(|h| h.seq <= cursor) {
            return Ok(false);
        }
        let records = self.trail.audit_range(cursor + 1, BATCH).await?;
        let Some(last) = records.last().map(|r| r.seq) else {
            return Ok(false);
        };
        // Queue the whole batch, then wait for every acknowledgement: the idempotent producer keeps
        // them in order on the partition and retries without duplicating.
        let mut pending = Vec::with_capacity(records.len());
        for r in &records {
            let payload = serde_json::to_vec(r)?;
            let key = r.seq.to_string();
            let send = self
                .producer
                .send_result(FutureRecord::to(&self.topic).key(&key).payload(&payload))
                .map_err(|(source, _)| MirrorError::Queue { seq: r.seq, source })?;
            pending.push(send);
        }
        for (r, p) in records.iter().zip(pending) {
            match p.await {
                Ok(Ok(_)) => {}
                Ok(Err((source, _))) => return Err(MirrorError::Produce { seq: r.seq, source }),
                Err(_) => return Err(MirrorError::Cancelled { seq: r.seq }),
            }
        }
        self.docs
            .put_json(
                CURSOR_NS,
                &self.topic,
                &serde_json::json!({ "seq": last }),
                false,
                None,
            )
            .await?;
        Ok(true)
    }

    /// Take or renew the lease; false while another replica holds it.
    async fn hold_lease(&self) -> Result<bool, StoreError> {
        let doc = serde_json::json!({ "owner": self.owner });
        if self
            .docs
            .put_json(LEASE_NS, &self.topic, &doc, true, Some(LEASE_TTL))
            .await?
        {
            return Ok(true);
        }
        match self.docs.get_json(LEASE_NS, &self.topic).await? {
            Some(d) if d["owner"].as_str() == Some(self.owner.as_str()) => {
                self.docs
                    .put_json(LEASE_NS, &self.topic, &doc, false, Some(LEASE_TTL))
                    .await?;
                Ok(true)
            }
            Some(_) => Ok(false),
            // Expired between the two calls: take it next round.
            None => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_without_kafka_or_with_a_bad_name_is_a_problem() {
        let mut p = Vec::new();
        AuditConfig {
            kafka_topic: Some("audit trail".into()),
        }
        .validate("audit", false, &mut p);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p.iter().all(|p| p.path == "audit.kafka_topic"));
        let mut p = Vec::new();
        AuditConfig {
            kafka_topic: Some("deprovd.audit".into()),
        }
        .validate("audit", true, &mut p);
        assert!(p.is_empty(), "{p:?}");
        AuditConfig::default().validate("audit", false, &mut p);
        assert!(p.is_empty());
    }
}
