//! Kafka helpers against the real broker the test script started (tansu on 127.0.0.1:9092, or
//! `DEPROVD_TEST_KAFKA`).

use std::time::Duration;

use deprovd::KafkaConfig;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

pub(crate) fn brokers() -> String {
    std::env::var("DEPROVD_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// A `[kafka]` source on the test broker reading `topics` as `group`, with librdkafka `properties`
/// (a JSON object of strings), parsed by the service's own deserializer.
pub(crate) fn source(topics: &[&str], group: &str, properties: serde_json::Value) -> KafkaConfig {
    serde_json::from_value(serde_json::json!({
        "brokers": brokers(),
        "topics": topics,
        "group_id": group,
        "properties": properties,
    }))
    .expect("kafka config")
}

pub(crate) async fn create_topics(names: &[&str]) {
    create_partitioned_topics(names, 1).await;
}

/// As [`create_topics`], each topic with `partitions` partitions.
pub(crate) async fn create_partitioned_topics(names: &[&str], partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("admin client");
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
        .collect();
    let res = admin
        .create_topics(
            &topics,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create topics (is the Kafka-protocol broker running? see scripts/test.sh)");
    for r in res {
        if let Err((t, e)) = r {
            assert_eq!(
                e,
                rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists,
                "create topic {t}: {e}"
            );
        }
    }
}

pub(crate) async fn produce(topic: &str, payload: &[u8]) {
    send(&producer(), topic, payload).await;
}

/// A producer to the test broker, for tests that send many messages.
pub(crate) fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer")
}

/// Send one message through `p` and wait for the broker's acknowledgement.
pub(crate) async fn send(p: &FutureProducer, topic: &str, payload: &[u8]) {
    p.send(
        FutureRecord::<(), [u8]>::to(topic).payload(payload),
        Duration::from_secs(10),
    )
    .await
    .map_err(|(e, _)| e)
    .expect("produce");
}

/// A consumer on the test broker in consumer group `group` (subscribed to nothing).
fn consumer(group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer")
}

/// A consumer of a fresh group assigned partition 0 of `topic` from its first record.
pub(crate) fn partition0_reader(topic: &str) -> BaseConsumer {
    let c = consumer(&super::unique("reader"));
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    c
}

/// Committed offset of partition 0 of `topic` for `group` (None when nothing was committed).
pub(crate) fn committed(group: &str, topic: &str) -> Option<i64> {
    let c = consumer(group);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let got = c
        .committed_offsets(tpl, Duration::from_secs(5))
        .expect("committed offsets");
    match got.find_partition(topic, 0).map(|p| p.offset()) {
        Some(Offset::Offset(o)) => Some(o),
        _ => None,
    }
}

/// For each of the `partitions` partitions of `topic`: (offset `group` committed, high watermark).
pub(crate) fn progress(group: &str, topic: &str, partitions: i32) -> Vec<(Option<i64>, i64)> {
    let c = consumer(group);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(5))
        .expect("committed offsets");
    (0..partitions)
        .map(|p| {
            let committed = match got.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            };
            let (_, high) = c
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .expect("watermarks");
            (committed, high)
        })
        .collect()
}

/// A consumed record: payload and headers as (key, value) pairs.
pub(crate) type Record = (Vec<u8>, Vec<(String, String)>);

/// Every record of partition 0 of `topic`.
pub(crate) fn read_all(topic: &str, want: usize, timeout: Duration) -> Vec<Record> {
    let c = partition0_reader(topic);
    let deadline = std::time::Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < want && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push((m.payload().unwrap_or_default().to_vec(), headers));
        }
    }
    out
}
