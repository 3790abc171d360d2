//! Sources of raw alert bytes: Kafka (primary), a JSONL file, the Shared Signals receiver. Dead letters
//! go to a [`crate::deadletter::DeadLetterSink`].
//!
//! A source hands bytes to the [`crate::pipeline::Pipeline`] and acknowledges them (Kafka offset, HTTP
//! 202) only once the pipeline says the actions are in the ledger — or once the bytes are in the
//! dead-letter destination with their reason. Nothing is dropped silently.

pub(crate) mod file;
pub(crate) mod kafka;
mod rebalance;
pub(crate) mod ssf;
