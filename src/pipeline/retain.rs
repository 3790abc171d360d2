//! Alert retention (`[policy] retain_alerts`): every decided alert is kept for a window so that
//! `deprovd policy diff --since` can replay what the service saw.
//!
//! The pipeline hands each alert to a bounded queue and moves on: retention never delays or fails
//! containment. A full queue drops the alert (counted, logged once per burst). One task writes the
//! queue to the store in batches and prunes alerts older than the window every
//! [`PRUNE_EVERY`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, watch};
use tracing::warn;

use crate::alert::Alert;
use crate::ledger::{AlertStore, RetainedAlert};

/// Alerts waiting to be written; beyond this they are dropped, not waited for.
pub(super) const QUEUE: usize = 4096;
/// Written per store round trip.
const BATCH: usize = 256;
/// How often alerts past the window are removed.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// The pipeline's end of the queue.
#[derive(Debug, Clone)]
pub(crate) struct Retainer {
    tx: mpsc::Sender<RetainedAlert>,
    dropped: Arc<AtomicU64>,
}

impl Retainer {
    /// A retainer and the task that drains it into `store`, keeping alerts for `keep`.
    pub(crate) fn new(
        store: Arc<dyn AlertStore>,
        keep: Duration,
        stop: watch::Receiver<bool>,
    ) -> (
        Retainer,
        impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (
            Retainer {
                tx,
                dropped: Arc::default(),
            },
            run(store, rx, keep, stop),
        )
    }

    /// Queue `alert`; never waits. A full or closed queue drops it.
    pub(crate) fn retain(&self, alert: &Alert) {
        let item = RetainedAlert {
            received_at: Utc::now(),
            alert: alert.clone(),
        };
        if self.tx.try_send(item).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                warn!(
                    dropped = n,
                    "alert retention queue full: alerts are not being kept for replay"
                );
            }
        }
    }

    #[cfg(test)]
    /// Alerts dropped since start because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn run(
    store: Arc<dyn AlertStore>,
    mut rx: mpsc::Receiver<RetainedAlert>,
    keep: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let keep = chrono::TimeDelta::from_std(keep).unwrap_or(chrono::TimeDelta::MAX);
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    return;
                }
                if let Err(e) = store.retain_alerts(&batch).await {
                    warn!(error = %e, alerts = batch.len(), "cannot retain alerts for replay");
                }
                batch.clear();
            }
            _ = prune.tick() => {
                let before = Utc::now().checked_sub_signed(keep).unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
                if let Err(e) = store.prune_alerts(before).await {
                    warn!(error = %e, "cannot prune retained alerts");
                }
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    // Write what is queued, then stop.
                    rx.close();
                    while rx.recv_many(&mut batch, BATCH).await > 0 {
                        let _ = store.retain_alerts(&batch).await;
                        batch.clear();
                    }
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::store::embedded::EmbeddedStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_alerts_reach_the_store_and_stop_flushes_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let (stop_tx, stop_rx) = watch::channel(false);
        let (retainer, task) = Retainer::new(store.clone(), Duration::from_secs(3600), stop_rx);
        let alert: Alert = serde_json::from_value(serde_json::json!({
            "id": "r-1", "source": {"vendor": "t"}, "time": "2026-01-01T00:00:00Z",
            "severity": "high", "category": "malware"
        }))
        .unwrap();
        retainer.retain(&alert);
        let handle = tokio::spawn(task);
        stop_tx.send(true).unwrap();
        handle.await.unwrap();
        let kept = store
            .retained_alerts(Utc::now() - chrono::TimeDelta::hours(1), None, 10)
            .await
            .unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].alert, alert);
        assert_eq!(retainer.dropped(), 0);
    }
}
