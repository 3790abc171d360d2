//! The blast-radius breaker at run time: admissions counted in the shared store, trips audited,
//! gauged and notified once, resets by an admin (see the [module docs](super)).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use tracing::warn;

use super::{BreakerConfig, GLOBAL_SCOPE};
use crate::audit::{Actor, AuditDraft, AuditKind};
use crate::ledger::{
    ActionRecord, ActionState, AuditStore, BreakerScope, BreakerState, BreakerStore, StoreError,
};
use crate::notify::{Notice, Notifier};
use crate::telemetry::Metrics;

/// Why a breaker reset was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BreakerError {
    #[error("no breaker scope `{0}` (scopes: `global` and each connector instance)")]
    UnknownScope(String),
    #[error("the blast-radius breaker is disabled (`[guards.breaker] enabled = false`)")]
    Disabled,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The blast-radius breaker at run time (see the module docs). Cheap to share (`Arc`).
pub(crate) struct Breaker {
    /// `[global, <connector>]` per connector instance, built once so an admission allocates no
    /// scope list.
    by_connector: HashMap<String, Arc<[BreakerScope]>>,
    /// Global scope alone, for an action whose connector is not configured (it fails anyway).
    global_only: Arc<[BreakerScope]>,
    /// Every scope, global first, then connectors by name.
    all: Vec<BreakerScope>,
    /// The shared windows and open flags.
    windows: Arc<dyn BreakerStore>,
    /// Where trips and resets are recorded.
    audit: Arc<dyn AuditStore>,
    metrics: Arc<Metrics>,
    notifier: Notifier,
}

impl Breaker {
    /// `None` when the breaker is disabled: then the pipeline makes no breaker round trip at all.
    pub(crate) fn new<'a>(
        cfg: &BreakerConfig,
        connectors: impl IntoIterator<Item = &'a String>,
        windows: Arc<dyn BreakerStore>,
        audit: Arc<dyn AuditStore>,
        metrics: Arc<Metrics>,
        notifier: Notifier,
    ) -> Option<Breaker> {
        if !cfg.enabled {
            return None;
        }
        let global = BreakerScope {
            name: GLOBAL_SCOPE.to_string(),
            threshold: cfg.threshold,
            window: cfg.window,
        };
        let mut names: Vec<&String> = connectors.into_iter().collect();
        names.sort();
        names.dedup();
        let mut all = vec![global.clone()];
        let mut by_connector = HashMap::new();
        for name in names {
            let o = cfg.connectors.get(name).cloned().unwrap_or_default();
            let scope = BreakerScope {
                name: name.clone(),
                threshold: o.threshold.unwrap_or(cfg.threshold),
                window: o.window.unwrap_or(cfg.window),
            };
            all.push(scope.clone());
            by_connector.insert(name.clone(), Arc::from([global.clone(), scope]));
        }
        for s in &all {
            metrics.breaker_open(&s.name, false);
        }
        Some(Breaker {
            by_connector,
            global_only: Arc::from([global]),
            all,
            windows,
            audit,
            metrics,
            notifier,
        })
    }

    #[cfg(test)]
    /// Every scope with its limits, global first.
    pub(crate) fn scopes(&self) -> &[BreakerScope] {
        &self.all
    }

    /// Count `action`'s subject into the global scope and its connector's, in one atomic store
    /// call; returns the names of the scopes whose breaker is open (empty: go ahead). A trip is
    /// audited and notified here, by the one admission that caused it. A redelivered alert's
    /// actions are admitted again before the ledger finds them duplicates; that only refreshes the
    /// subject's place in the window (a subject is never counted twice).
    pub(crate) async fn admit(&self, action: &ActionRecord) -> Result<Vec<String>, StoreError> {
        let scopes = self
            .by_connector
            .get(&action.connector)
            .unwrap_or(&self.global_only);
        let admitted = self
            .windows
            .breaker_admit(scopes, &action.subject, Utc::now())
            .await?;
        let mut open = Vec::new();
        for (a, s) in admitted.into_iter().zip(scopes.iter()) {
            if !a.open {
                continue;
            }
            self.metrics.breaker_open(&a.scope, true);
            if a.tripped {
                warn!(scope = %a.scope, subjects = a.subjects, threshold = s.threshold,
                    window_secs = s.window.as_secs(), action_key = %action.key,
                    "blast-radius breaker tripped: automatic actions in this scope now wait for approval");
                let mut d = AuditDraft::new(
                    AuditKind::Guard,
                    Actor::system("breaker"),
                    serde_json::json!({
                        "event": "breaker_tripped",
                        "scope": a.scope,
                        "subjects": a.subjects,
                        "threshold": s.threshold,
                        "window_secs": s.window.as_secs(),
                    }),
                );
                d.subject = Some(action.subject.clone());
                d.action_key = Some(action.key.clone());
                // Best effort: the flag is already set in the store, so failing the alert here would
                // not record the trip on redelivery either (that admission no longer trips it).
                if let Err(e) = self.audit.append_audit(vec![d]).await {
                    tracing::error!(scope = %a.scope, error = %e, "could not audit a breaker trip");
                }
                self.notifier.notify(Notice::BreakerTripped {
                    scope: a.scope.clone(),
                    subjects: a.subjects,
                    threshold: s.threshold,
                    window_secs: s.window.as_secs(),
                });
            }
            open.push(a.scope);
        }
        Ok(open)
    }

    /// Every scope's state; refreshes `deprovd_breaker_open` (another replica may have tripped or
    /// reset it).
    pub(crate) async fn status(&self) -> Result<Vec<BreakerState>, StoreError> {
        let states = self.windows.breaker_status(&self.all, Utc::now()).await?;
        for s in &states {
            self.metrics.breaker_open(&s.scope, s.open);
        }
        Ok(states)
    }

    /// Close `scope` (or every scope) and empty its window; audited with `actor`. Returns the scopes
    /// that were open. Held actions stay held: each still needs an approver.
    pub(crate) async fn reset(
        &self,
        scope: Option<&str>,
        actor: Actor,
    ) -> Result<Vec<String>, BreakerError> {
        let names: Vec<String> = match scope {
            Some(s) if self.all.iter().any(|x| x.name == s) => vec![s.to_string()],
            Some(s) => return Err(BreakerError::UnknownScope(s.to_string())),
            None => self.all.iter().map(|s| s.name.clone()).collect(),
        };
        let d = AuditDraft::new(
            AuditKind::Guard,
            actor,
            serde_json::json!({ "event": "breaker_reset", "scopes": names }),
        );
        // Audited before it happens: a reset that left no trace would defeat the trail.
        self.audit.append_audit(vec![d]).await?;
        let was_open = self.windows.breaker_reset(&names).await?;
        for n in &names {
            self.metrics.breaker_open(n, false);
        }
        tracing::info!(scopes = ?names, was_open = ?was_open, "blast-radius breaker reset");
        Ok(was_open)
    }
}

/// A held action's note when the breaker held it.
pub(crate) fn breaker_note(open: &[String]) -> String {
    format!(
        "held by the blast-radius breaker (open: {}); an approver must approve it",
        open.join(", ")
    )
}

/// Whether `state` is the one [`Breaker::admit`] looks at: runnable, not a reversal.
pub(crate) fn breaker_counts(action: &ActionRecord) -> bool {
    action.state == ActionState::Planned && action.reverses.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use crate::guard::BreakerOverride;

    fn action(subject: &str, connector: &str) -> ActionRecord {
        crate::action::sample(subject, connector)
    }

    #[tokio::test]
    async fn breaker_trip_is_notified_audited_and_gauged_once_and_reset_only_names_known_scopes() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn crate::ledger::StateStore> =
            Arc::new(crate::ledger::store::embedded::EmbeddedStore::open(dir.path()).unwrap());
        let metrics = Arc::new(Metrics::new());
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let cfg = BreakerConfig {
            threshold: 2,
            connectors: BTreeMap::from([(
                "okta".to_string(),
                BreakerOverride {
                    threshold: Some(1),
                    window: None,
                },
            )]),
            ..BreakerConfig::default()
        };
        let names = ["okta".to_string(), "scim".to_string()];
        let b = Breaker::new(
            &cfg,
            &names,
            store.clone(),
            store.clone(),
            metrics.clone(),
            Notifier::from_sender(tx),
        )
        .unwrap();
        assert_eq!(
            b.scopes()
                .iter()
                .map(|s| (s.name.as_str(), s.threshold))
                .collect::<Vec<_>>(),
            [("global", 2), ("okta", 1), ("scim", 2)]
        );
        assert!(b.admit(&action("a@x", "okta")).await.unwrap().is_empty());
        assert_eq!(b.admit(&action("b@x", "okta")).await.unwrap(), ["okta"]);
        assert_eq!(
            b.admit(&action("c@x", "scim")).await.unwrap(),
            ["global"],
            "scim's own scope is still closed"
        );
        assert_eq!(
            b.admit(&action("d@x", "okta")).await.unwrap(),
            ["global", "okta"]
        );
        let mut trips = Vec::new();
        while let Ok(n) = rx.try_recv() {
            trips.push(n);
        }
        assert_eq!(trips.len(), 2, "one notice per trip: {trips:?}");
        assert!(
            matches!(&trips[0], Notice::BreakerTripped { scope, subjects: 2, threshold: 1, .. } if scope == "okta")
        );
        assert!(
            matches!(&trips[1], Notice::BreakerTripped { scope, subjects: 3, threshold: 2, .. } if scope == "global")
        );
        let text = metrics.render();
        assert!(
            text.contains("deprovd_breaker_open{scope=\"global\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("deprovd_breaker_open{scope=\"scim\"} 0"),
            "{text}"
        );
        let trail = store.audit_range(1, 0).await.unwrap();
        assert_eq!(trail.len(), 2);
        assert!(
            trail
                .iter()
                .all(|r| r.kind == AuditKind::Guard && r.detail["event"] == "breaker_tripped")
        );

        assert!(matches!(
            b.reset(Some("nope"), Actor::system("t")).await,
            Err(BreakerError::UnknownScope(_))
        ));
        let was = b.reset(Some("okta"), Actor::system("admin")).await.unwrap();
        assert_eq!(was, ["okta"]);
        let st = b.status().await.unwrap();
        assert!(st[0].open && !st[1].open);
        assert!(
            metrics
                .render()
                .contains("deprovd_breaker_open{scope=\"okta\"} 0")
        );
        let trail = store.audit_range(1, 0).await.unwrap();
        assert_eq!(trail.last().unwrap().detail["event"], "breaker_reset");
        assert_eq!(trail.last().unwrap().actor.name, "admin");
    }
}
