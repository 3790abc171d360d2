//! Kafka source: a consumer-group member with at-least-once delivery.
//!
//! `enable.auto.offset.store=false`: an offset is stored (and later committed by librdkafka's
//! auto-commit) only after the pipeline has put the alert's actions in the ledger, or after the bytes
//! are in the dead-letter topic. Messages are processed concurrently but their offsets are stored in
//! arrival order ([`futures::StreamExt::buffered`] keeps order), so a crash can only redeliver, never
//! skip. A ledger outage stalls the stream (retrying with backoff) rather than losing anything.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};

use super::rebalance::GroupContext;
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::audit::Actor;
use crate::config::{Problem, SecretRef};
use crate::deadletter::{DeadLetterError, DeadLetterSink};
use crate::pipeline::{Pipeline, PipelineError};

/// `[kafka]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port]` bootstrap servers.
    pub brokers: String,
    /// Topics carrying alerts.
    pub topics: Vec<String>,
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Alert format for these topics; `auto` detects per message.
    #[serde(default = "default_format")]
    pub format: String,
    /// Dead-letter topic is `<topic><dlq_suffix>`.
    #[serde(default = "default_dlq_suffix")]
    pub dlq_suffix: String,
    /// Where failed actions are dead-lettered (the action record as JSON, reason in a header).
    #[serde(default = "default_actions_dlq")]
    pub actions_dlq_topic: String,
    /// Where alerts rejected by the HTTP API are dead-lettered.
    #[serde(default = "default_http_dlq")]
    pub http_dlq_topic: String,
    /// Messages processed concurrently (their offsets are still stored in order).
    #[serde(default = "default_inflight")]
    pub max_in_flight: usize,
    /// librdkafka properties passed through as-is (TLS, SASL, fetch tuning). Values of keys that hold
    /// secrets (`*password*`, `*secret*`, `*.key.pem`) must be `env:`/`file:` references.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_group() -> String {
    "deprovd".into()
}
fn default_format() -> String {
    "auto".into()
}
fn default_dlq_suffix() -> String {
    ".dlq".into()
}
fn default_actions_dlq() -> String {
    "deprovd.actions.dlq".into()
}
fn default_http_dlq() -> String {
    "deprovd.http.dlq".into()
}
fn default_inflight() -> usize {
    64
}

/// Set `key` unless the operator already chose a value in `properties`.
fn set_default(cc: &mut ClientConfig, key: &str, value: &str) {
    if cc.get(key).is_none() {
        cc.set(key, value);
    }
}

fn is_secret_property(key: &str) -> bool {
    key.contains("password") || key.contains("secret") || key.ends_with(".key.pem")
}

impl KafkaConfig {
    pub fn validate(&self, path: &str, known_formats: &[&str], problems: &mut Vec<Problem>) {
        if self.brokers.trim().is_empty() {
            problems.push(Problem::new(
                format!("{path}.brokers"),
                "must name at least one broker",
            ));
        }
        if self.topics.is_empty() {
            problems.push(Problem::new(
                format!("{path}.topics"),
                "must name at least one topic",
            ));
        }
        if self.group_id.is_empty() {
            problems.push(Problem::new(
                format!("{path}.group_id"),
                "must not be empty",
            ));
        }
        if self.format == "ssf" {
            problems.push(Problem::new(
                format!("{path}.format"),
                crate::alert::SSF_ONLY_VERIFIED,
            ));
        } else if self.format != "auto" && !known_formats.contains(&self.format.as_str()) {
            problems.push(Problem::new(
                format!("{path}.format"),
                format!(
                    "unknown format `{}` (known: auto, {})",
                    self.format,
                    known_formats.join(", ")
                ),
            ));
        }
        if self.dlq_suffix.is_empty() {
            problems.push(Problem::new(
                format!("{path}.dlq_suffix"),
                "must not be empty: the dead-letter topic must differ from the source",
            ));
        }
        if self.max_in_flight == 0 {
            problems.push(Problem::new(
                format!("{path}.max_in_flight"),
                "must be at least 1",
            ));
        }
        for (k, v) in &self.properties {
            if matches!(
                k.as_str(),
                "enable.auto.offset.store" | "group.id" | "bootstrap.servers"
            ) {
                problems.push(Problem::new(
                    format!("{path}.properties.\"{k}\""),
                    "is managed by deprovd (at-least-once delivery depends on it); remove it",
                ));
            }
            if is_secret_property(k)
                && let Err(e) = SecretRef::parse(v)
            {
                problems.push(Problem::new(
                    format!("{path}.properties.\"{k}\""),
                    e.to_string(),
                ));
            }
        }
    }

    /// librdkafka config with secrets resolved. Errors name the property, never its value.
    fn client_config(&self) -> Result<ClientConfig, KafkaSetupError> {
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.properties {
            if is_secret_property(k) {
                let secret = SecretRef::parse(v)
                    .and_then(|r| r.resolve())
                    .map_err(|source| KafkaSetupError::Secret {
                        property: k.clone(),
                        source,
                    })?;
                use secrecy::ExposeSecret;
                cc.set(k, secret.expose_secret());
            } else {
                cc.set(k, v);
            }
        }
        Ok(cc)
    }

    pub(crate) fn consumer(&self) -> Result<StreamConsumer<GroupContext>, KafkaSetupError> {
        let mut cc = self.client_config()?;
        cc.set("group.id", &self.group_id)
            .set("enable.auto.offset.store", "false");
        for (k, v) in [
            ("enable.auto.commit", "true"),
            ("auto.commit.interval.ms", "1000"),
            ("auto.offset.reset", "earliest"),
            ("enable.partition.eof", "false"),
            // Memory stays bounded in a storm: librdkafka prefetches at most this much of the
            // backlog (its defaults, 64 MB and 100,000 messages per partition, are most of a
            // replica's memory once a topic is far behind). Still minutes of work at full speed.
            ("queued.max.messages.kbytes", "16384"),
            ("queued.min.messages", "10000"),
        ] {
            set_default(&mut cc, k, v);
        }
        cc.create_with_context(GroupContext)
            .map_err(|source| KafkaSetupError::Create {
                client: "consumer",
                source,
            })
    }

    pub fn producer(&self) -> Result<FutureProducer, KafkaSetupError> {
        let mut cc = self.client_config()?;
        for (k, v) in [
            ("acks", "all"),
            ("enable.idempotence", "true"),
            ("message.timeout.ms", "30000"),
        ] {
            set_default(&mut cc, k, v);
        }
        // Consumer-only tuning must not reach the producer (librdkafka warns on it).
        for k in [
            "fetch.wait.max.ms",
            "fetch.min.bytes",
            "session.timeout.ms",
            "auto.offset.reset",
        ] {
            cc.remove(k);
        }
        cc.create().map_err(|source| KafkaSetupError::Create {
            client: "producer",
            source,
        })
    }
}

/// Why a Kafka client could not be set up. Messages name the property, never its value.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("kafka property `{property}`: {source}")]
    Secret {
        property: String,
        source: crate::config::SecretError,
    },
    #[error("cannot create Kafka {client}: {source}")]
    Create {
        client: &'static str,
        source: rdkafka::error::KafkaError,
    },
    #[error("cannot subscribe to {topics:?}: {source}")]
    Subscribe {
        topics: Vec<String>,
        source: rdkafka::error::KafkaError,
    },
}

/// Dead letters produced to a Kafka topic: original bytes as the value, reason and origin as headers.
pub(crate) struct KafkaDeadLetter {
    producer: FutureProducer,
    topic: String,
}

impl KafkaDeadLetter {
    pub(crate) fn new(producer: FutureProducer, topic: impl Into<String>) -> Self {
        Self {
            producer,
            topic: topic.into(),
        }
    }

    async fn send_to(
        &self,
        topic: &str,
        payload: &[u8],
        reason: &str,
        origin: &[(&str, &str)],
    ) -> Result<(), DeadLetterError> {
        let mut headers = OwnedHeaders::new().insert(Header {
            key: "deprovd-reason",
            value: Some(reason),
        });
        for (k, v) in origin {
            headers = headers.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        let record: FutureRecord<'_, (), [u8]> =
            FutureRecord::to(topic).payload(payload).headers(headers);
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(source, _)| DeadLetterError::Produce {
                topic: topic.to_string(),
                source,
            })
    }
}

#[async_trait]
impl DeadLetterSink for KafkaDeadLetter {
    async fn send(
        &self,
        payload: &[u8],
        reason: &str,
        origin: &[(&str, &str)],
    ) -> Result<(), DeadLetterError> {
        self.send_to(&self.topic, payload, reason, origin).await
    }
}

/// Consume until `shutdown`, processing every message through `pipeline`.
/// How often the consumer lag gauge is refreshed.
const LAG_INTERVAL: Duration = Duration::from_secs(2);

pub(crate) struct KafkaSource {
    cfg: KafkaConfig,
    consumer: StreamConsumer<GroupContext>,
    dlq: KafkaDeadLetter,
    /// Cleared while the broker cannot be reached; read by `/readyz`.
    pub healthy: Arc<AtomicBool>,
}

impl KafkaSource {
    pub(crate) fn new(cfg: KafkaConfig) -> Result<Self, KafkaSetupError> {
        let consumer = cfg.consumer()?;
        let producer = cfg.producer()?;
        let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|source| KafkaSetupError::Subscribe {
                topics: cfg.topics.clone(),
                source,
            })?;
        Ok(Self {
            dlq: KafkaDeadLetter::new(producer, String::new()),
            consumer,
            cfg,
            healthy: Arc::new(AtomicBool::new(false)),
        })
    }

    pub(crate) async fn run(
        self: Arc<Self>,
        pipeline: Arc<Pipeline>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let health = tokio::spawn(self.clone().watch_health(shutdown.clone()));
        let lag = tokio::spawn(
            self.clone()
                .watch_lag(pipeline.metrics.clone(), shutdown.clone()),
        );
        info!(topics = ?self.cfg.topics, group = %self.cfg.group_id, "kafka source started");
        let format = (self.cfg.format != "auto").then(|| self.cfg.format.clone());
        let mut inflight = FuturesOrdered::new();
        let max = self.cfg.max_in_flight;
        loop {
            tokio::select! {
                biased;
                Some((msg, durable)) = inflight.next(), if !inflight.is_empty() => {
                    self.store_offset(&msg, durable);
                }
                received = self.consumer.recv(), if inflight.len() < max => match received {
                    Ok(m) => {
                        let msg = m.detach();
                        let (this, pipeline, format) = (self.clone(), pipeline.clone(), format.clone());
                        inflight.push_back(async move {
                            let durable = this.handle(&pipeline, &msg, format.as_deref()).await;
                            (msg, durable)
                        });
                    }
                    Err(e) => warn!(error = %e, "kafka consume error"),
                },
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        // In-flight messages finish (or give up without storing when the ledger is down).
        while let Some((msg, durable)) = inflight.next().await {
            self.store_offset(&msg, durable);
        }
        health.abort();
        lag.abort();
        // Commit what was stored before leaving the group, so a clean restart does not redeliver.
        if let Err(e) = self
            .consumer
            .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
        {
            info!(error = %e, "final offset commit skipped");
        }
        info!("kafka source stopped");
    }

    fn store_offset(&self, msg: &OwnedMessage, durable: bool) {
        if durable
            && let Err(e) = self
                .consumer
                .store_offset(msg.topic(), msg.partition(), msg.offset())
        {
            warn!(error = %e, "cannot store offset; the message will be redelivered");
        }
    }

    /// Process one message until it is durable: in the ledger, or in the dead-letter topic. Returns
    /// `false` only when shutting down first (the offset is then not stored: it will be redelivered).
    async fn handle(
        &self,
        pipeline: &Arc<Pipeline>,
        msg: &OwnedMessage,
        format: Option<&str>,
    ) -> bool {
        let payload = msg.payload().unwrap_or_default();
        let received_at = received_at(msg.timestamp(), chrono::Utc::now());
        let mut trouble = crate::retry::Attempts::new(crate::retry::RECONNECT);
        // What to dead-letter: the whole message, or (for an envelope such as an Okta event hook)
        // each event that could not be taken, with its own bytes and where it sat.
        let refused: Vec<(Vec<u8>, String, Option<String>)> = loop {
            match pipeline
                .process_delivery(
                    payload,
                    format,
                    "kafka",
                    Actor::system("kafka"),
                    received_at,
                )
                .await
            {
                Ok(d) => {
                    break d
                        .rejected
                        .into_iter()
                        .map(|r| (r.payload, r.reason, Some(r.at)))
                        .collect();
                }
                Err(PipelineError::Rejected { reason, .. }) => {
                    break vec![(payload.to_vec(), reason, None)];
                }
                Err(e) => {
                    warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(),
                        error = %e, "alert not yet durable; retrying");
                    if pipeline.is_shutting_down() {
                        return false;
                    }
                    tokio::time::sleep(trouble.next_wait()).await;
                }
            }
        };
        let topic = format!("{}{}", msg.topic(), self.cfg.dlq_suffix);
        let partition = msg.partition().to_string();
        let offset = msg.offset().to_string();
        for (bytes, reason, at) in refused {
            let mut origin = vec![
                ("deprovd-origin-topic", msg.topic()),
                ("deprovd-origin-partition", partition.as_str()),
                ("deprovd-origin-offset", offset.as_str()),
            ];
            if let Some(at) = at.as_deref() {
                origin.push(("deprovd-origin-part", at));
            }
            loop {
                match self.dlq.send_to(&topic, &bytes, &reason, &origin).await {
                    Ok(()) => {
                        warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(),
                            part = at.as_deref().unwrap_or(""), reason = %reason, dlq = %topic,
                            "message dead-lettered");
                        break;
                    }
                    Err(e) => {
                        warn!(error = %e, "dead-letter produce failed; retrying");
                        if pipeline.is_shutting_down() {
                            return false;
                        }
                        tokio::time::sleep(trouble.next_wait()).await;
                    }
                }
            }
        }
        true
    }

    /// Export the consumer lag every [`LAG_INTERVAL`]: for each assigned partition, its high
    /// watermark minus this consumer's position. Messages taken but not yet durable (at most
    /// `max_in_flight`) are not counted; a partition not fetched yet counts 0. One watermark query
    /// per assigned partition, on a blocking thread.
    async fn watch_lag(
        self: Arc<Self>,
        metrics: Arc<crate::telemetry::Metrics>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let this = self.clone();
            if let Ok(Some(lag)) = tokio::task::spawn_blocking(move || this.lag()).await {
                metrics.kafka_lag(lag);
            }
            tokio::select! {
                _ = tokio::time::sleep(LAG_INTERVAL) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    fn lag(&self) -> Option<u64> {
        let positions = self.consumer.position().ok()?;
        let mut total = 0u64;
        for e in positions.elements() {
            let rdkafka::Offset::Offset(position) = e.offset() else {
                continue;
            };
            if let Ok((_, high)) =
                self.consumer
                    .fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(1))
            {
                total += u64::try_from(high - position).unwrap_or(0);
            }
        }
        Some(total)
    }

    async fn watch_health(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let this = self.clone();
            let ok = tokio::task::spawn_blocking(move || {
                this.consumer
                    .fetch_metadata(
                        this.cfg.topics.first().map(String::as_str),
                        Duration::from_secs(3),
                    )
                    .is_ok()
            })
            .await
            .unwrap_or(false);
            if self.healthy.swap(ok, Ordering::Relaxed) != ok {
                if ok {
                    info!("kafka reachable");
                } else {
                    warn!("kafka unreachable; not ready");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(if ok { 5 } else { 1 })) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// When a record was received: its Kafka timestamp (`CreateTime` set by the producer, or
/// `LogAppendTime` by the broker), which is when the alert entered the pipeline even when this
/// consumer reads it late (after a restart, behind a lag). A record without one, or with one after
/// `now` (a producer's clock, which nothing vouches for), is received `now`.
fn received_at(
    ts: rdkafka::Timestamp,
    now: chrono::DateTime<chrono::Utc>,
) -> chrono::DateTime<chrono::Utc> {
    ts.to_millis()
        .filter(|ms| *ms > 0)
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or(now, |t| t.min(now))
}

#[cfg(test)]
mod received_tests {
    use super::*;
    use rdkafka::Timestamp;

    #[test]
    fn a_record_is_received_at_its_kafka_timestamp_never_later_than_now() {
        let now = chrono::DateTime::from_timestamp_millis(1_767_225_600_000).unwrap();
        let earlier = 1_767_225_000_123;
        for ts in [
            Timestamp::CreateTime(earlier),
            Timestamp::LogAppendTime(earlier),
        ] {
            assert_eq!(received_at(ts, now).timestamp_millis(), earlier);
        }
        assert_eq!(received_at(Timestamp::NotAvailable, now), now);
        assert_eq!(received_at(Timestamp::CreateTime(-1), now), now);
        let future = Timestamp::CreateTime(now.timestamp_millis() + 60_000);
        assert_eq!(received_at(future, now), now);
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn format_ssf_is_refused_because_only_the_receiver_verifies_sets() {
        let cfg: KafkaConfig =
            toml::from_str("brokers = \"127.0.0.1:9092\"\ntopics = [\"alerts\"]\nformat = \"ssf\"")
                .unwrap();
        let known = crate::alert::NormalizerRegistry::new().names();
        let mut p = Vec::new();
        cfg.validate("kafka", &known, &mut p);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].path, "kafka.format");
        assert!(p[0].message.contains("Shared Signals receiver"), "{p:?}");
    }
}
