//! The Kafka consumer's client context: says which partitions this replica was given and lost, and
//! which offset commits failed, so an operator can tell which replica owns a stalled partition.

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::topic_partition_list::TopicPartitionList;
use tracing::{info, warn};

/// The context of deprovd's consumer (librdkafka's own log lines go through `ClientContext`'s
/// default, the `log` facade, as before).
pub(crate) struct GroupContext;

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                info!(partitions = %partitions(tpl), "kafka partitions assigned")
            }
            Rebalance::Revoke(tpl) => {
                info!(partitions = %partitions(tpl), "kafka partitions revoked")
            }
            Rebalance::Error(e) => warn!(error = %e, "kafka rebalance failed"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            warn!(error = %e, offsets = %partitions(offsets), "kafka offset commit failed");
        }
    }
}

/// `topic[partition]@offset, …` for a log line.
fn partitions(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| match e.offset().to_raw() {
            Some(o) if o >= 0 => format!("{}[{}]@{o}", e.topic(), e.partition()),
            _ => format!("{}[{}]", e.topic(), e.partition()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Offset;

    #[test]
    fn a_partition_list_reads_as_topic_partition_and_offset() {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("alerts", 0);
        tpl.add_partition_offset("alerts", 3, Offset::Offset(42))
            .unwrap();
        assert_eq!(partitions(&tpl), "alerts[0], alerts[3]@42");
    }
}
