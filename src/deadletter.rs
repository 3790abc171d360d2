//! Dead-letter destinations: where malformed input and failed actions go, with the reason and where
//! they came from, so nothing is dropped silently. The trait lives below the sources and the
//! executor, which both write to it; the Kafka sink is in [`crate::ingest::kafka`].

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

/// Where malformed input and failed actions go, with the reason and where they came from.
#[async_trait]
pub(crate) trait DeadLetterSink: Send + Sync {
    /// Durably record `payload` (the original bytes) with `reason` and `origin` key/values. Only returns
    /// `Ok` once the record is stored: callers acknowledge the source after it.
    async fn send(
        &self,
        payload: &[u8],
        reason: &str,
        origin: &[(&str, &str)],
    ) -> Result<(), DeadLetterError>;
}

/// Why a dead letter could not be stored; the caller keeps the source unacknowledged and retries.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeadLetterError {
    #[error("{0}")]
    Encode(#[from] serde_json::Error),
    #[error("cannot open dead-letter file {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Creating the file's directory, writing or syncing failed.
    #[error("{0}")]
    Write(#[from] std::io::Error),
    #[error("dead-letter produce to `{topic}` failed: {source}")]
    Produce {
        topic: String,
        source: rdkafka::error::KafkaError,
    },
}

/// Dead letters appended as JSON lines to a file (the default without Kafka): one object per line with
/// `time`, `reason`, `origin` and the payload (`payload` when UTF-8, else `payload_hex`).
pub(crate) struct FileDeadLetter {
    path: PathBuf,
    file: tokio::sync::Mutex<Option<tokio::fs::File>>,
}

impl FileDeadLetter {
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            file: tokio::sync::Mutex::new(None),
        }
    }

    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// The JSON line written for one dead letter (shared by the file sink and tests).
pub(crate) fn dead_letter_record(
    payload: &[u8],
    reason: &str,
    origin: &[(&str, &str)],
) -> serde_json::Value {
    let mut rec = serde_json::json!({
        "time": chrono::Utc::now().to_rfc3339(),
        "reason": reason,
        "origin": origin.iter().map(|(k, v)| ((*k).to_string(), serde_json::Value::from(*v)))
            .collect::<serde_json::Map<_, _>>(),
    });
    match std::str::from_utf8(payload) {
        Ok(s) => rec["payload"] = s.into(),
        Err(_) => rec["payload_hex"] = hex::encode(payload).into(),
    }
    rec
}

#[async_trait]
impl DeadLetterSink for FileDeadLetter {
    async fn send(
        &self,
        payload: &[u8],
        reason: &str,
        origin: &[(&str, &str)],
    ) -> Result<(), DeadLetterError> {
        let mut line = serde_json::to_vec(&dead_letter_record(payload, reason, origin))?;
        line.push(b'\n');
        let mut guard = self.file.lock().await;
        if guard.is_none() {
            if let Some(dir) = self.path.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            let f = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .await
                .map_err(|source| DeadLetterError::Open {
                    path: self.path.clone(),
                    source,
                })?;
            *guard = Some(f);
        }
        let f = guard.as_mut().expect("opened above");
        f.write_all(&line).await?;
        f.sync_data().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_dead_letter_keeps_payload_reason_and_origin() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileDeadLetter::new(&dir.path().join("dlq.jsonl"));
        sink.send(b"{not json", "not valid JSON", &[("source", "http")])
            .await
            .unwrap();
        sink.send(&[0xff, 0x00], "binary", &[]).await.unwrap();
        let text = std::fs::read_to_string(sink.path()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["payload"], "{not json");
        assert_eq!(lines[0]["reason"], "not valid JSON");
        assert_eq!(lines[0]["origin"]["source"], "http");
        assert_eq!(lines[1]["payload_hex"], "ff00");
    }
}
