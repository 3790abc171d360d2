//! Notifications to people: Slack and Microsoft Teams incoming webhooks and a generic signed webhook.
//!
//! Every layer that has news for a responder (executor: action failed / done; guards: approval
//! needed, approval expired, breaker tripped; lockouts: done, restored) hands a [`Notice`] to the
//! [`Notifier`] and moves on. `notify` never blocks and never fails: notices go onto a bounded queue
//! that a background task delivers (with retries) to the configured sinks. A full queue drops the
//! notice and counts it — containment must never wait for a chat message.
//!
//! [`Notice`] and [`Notifier`] depend on nothing else in the crate, like [`crate::audit`], so every
//! layer may hold a notifier. The delivery side ([`deliver`]: sinks, retries, signing) reuses the HTTP
//! connectors' client, signing and `Retry-After` parsing and the executor's backoff schedule rather
//! than a second copy of each; [`config`] is the `[notify]` section and [`template`] turns a notice
//! into a Slack, Teams or webhook body.

pub(crate) mod config;
pub(crate) mod deliver;
pub(crate) mod template;

pub(crate) use config::NotifyConfig;
pub(crate) use deliver::NotifyService;

use serde::Serialize;
use tokio::sync::mpsc;

/// What happened, for a person. Fields are plain strings so templates can use them as they are; no
/// secrets and no raw alert documents ever go in here.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Notice {
    /// An action reached `failed` (retry budget spent or a terminal error).
    ActionFailed {
        action_key: String,
        connector: String,
        operation: String,
        subject: String,
        error: String,
        alert_id: Option<String>,
    },
    /// An action is held for a person's approval (approval mode or the breaker).
    ApprovalNeeded {
        approval_id: String,
        connector: String,
        operation: String,
        subject: String,
        reason: String,
        requested_by: String,
        expires_at: String,
    },
    /// A held action was not answered in time and will never execute.
    ApprovalExpired {
        approval_id: String,
        connector: String,
        operation: String,
        subject: String,
    },
    /// The blast-radius breaker opened: further automatic actions in `scope` wait for approval.
    /// `scope` is `global` or a connector instance name.
    BreakerTripped {
        scope: String,
        subjects: u64,
        threshold: u64,
        window_secs: u64,
    },
    /// A containment action succeeded (manual lockout or automatic).
    LockoutDone {
        lockout_id: Option<String>,
        action_key: String,
        connector: String,
        operation: String,
        subject: String,
    },
    /// A reversal succeeded: the subject's access is back as it was on this connector.
    Restored {
        lockout_id: Option<String>,
        action_key: String,
        connector: String,
        operation: String,
        subject: String,
    },
}

impl Notice {
    /// The event name used in config (`events = [...]`) and templates.
    pub(crate) fn event(&self) -> &'static str {
        match self {
            Notice::ActionFailed { .. } => "action_failed",
            Notice::ApprovalNeeded { .. } => "approval_needed",
            Notice::ApprovalExpired { .. } => "approval_expired",
            Notice::BreakerTripped { .. } => "breaker_tripped",
            Notice::LockoutDone { .. } => "lockout_done",
            Notice::Restored { .. } => "restored",
        }
    }
}

/// Cheap to clone; hand one to every part that has news.
#[derive(Clone, Debug, Default)]
pub(crate) struct Notifier {
    tx: Option<mpsc::Sender<Notice>>,
    /// Counts notices dropped on a full queue (`deprovd_notifications_total{sink="all",outcome="dropped"}`).
    dropped: Option<prometheus::IntCounter>,
}

impl Notifier {
    /// A notifier with no sinks: every notice is dropped (nothing is configured to hear it).
    pub(crate) fn disabled() -> Self {
        Self {
            tx: None,
            dropped: None,
        }
    }

    /// A notifier feeding `tx`; the receiving side delivers.
    pub(crate) fn from_sender(tx: mpsc::Sender<Notice>) -> Self {
        Self {
            tx: Some(tx),
            dropped: None,
        }
    }

    /// Count notices dropped because the queue was full.
    pub(crate) fn with_drop_counter(mut self, counter: prometheus::IntCounter) -> Self {
        self.dropped = Some(counter);
        self
    }

    /// Queue a notice without waiting. Returns false when it was dropped (no sinks, or the queue is
    /// full).
    pub(crate) fn notify(&self, notice: Notice) -> bool {
        match &self.tx {
            None => false,
            Some(tx) => match tx.try_send(notice) {
                Ok(()) => true,
                Err(e) => {
                    if let Some(c) = &self.dropped {
                        c.inc();
                    }
                    tracing::warn!(
                        event = e.into_inner().event(),
                        "notification queue full: notice dropped"
                    );
                    false
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Notice {
        Notice::BreakerTripped {
            scope: "global".into(),
            subjects: 11,
            threshold: 10,
            window_secs: 600,
        }
    }

    #[test]
    fn disabled_notifier_drops_without_blocking() {
        assert!(!Notifier::disabled().notify(breaker()));
    }

    #[tokio::test]
    async fn full_queue_drops_instead_of_waiting() {
        let (tx, mut rx) = mpsc::channel(1);
        let n = Notifier::from_sender(tx);
        assert!(n.notify(breaker()));
        assert!(!n.notify(breaker()));
        assert_eq!(rx.recv().await.unwrap().event(), "breaker_tripped");
    }

    #[test]
    fn notices_serialize_with_their_event_name() {
        let v = serde_json::to_value(breaker()).unwrap();
        assert_eq!(v["event"], "breaker_tripped");
        assert_eq!(v["threshold"], 10);
    }
}
