//! Shadow mode (`[policy] shadow_dir`): a candidate bundle evaluated on live traffic beside the live
//! one. Its decisions are planned (to compare connectors) but never recorded or executed; where they
//! differ from the live bundle's, the difference is counted
//! (`deprovd_shadow_disagreements_total{kind}`) and the latest are kept for `GET /v1/policy/shadow`.
//! Promote a candidate by moving its files into `policy.dir`; both directories hot-reload.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::diff::{ChangeKind, DiffCounts, compare, sides};
use crate::alert::Alert;
use crate::ledger::ActionRecord;
use crate::plan::Planner;
use crate::policy::{Decision, Policies};
use crate::telemetry::{Metrics, ShadowDisagreement};

/// Disagreements kept for the API, newest last.
const RECENT: usize = 100;

/// One (subject, action) on which the shadow bundle disagreed with the live one.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Disagreement {
    pub at: DateTime<Utc>,
    pub alert_id: String,
    pub subject: String,
    pub action: crate::action::Operation,
    pub kind: ChangeKind,
    pub detail: String,
    /// The shadow's rules (the live bundle's when the shadow no longer decides it).
    pub rules: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    evaluated: u64,
    disagreeing_alerts: u64,
    errors: u64,
    counts: DiffCounts,
    recent: VecDeque<Disagreement>,
}

/// What `GET /v1/policy/shadow` shows.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ShadowReport {
    pub live_digest: String,
    pub shadow_digest: String,
    pub dir: String,
    /// Alerts evaluated by both bundles since start.
    pub evaluated: u64,
    /// Of those, alerts on which they disagreed.
    pub disagreeing_alerts: u64,
    /// Shadow evaluations that reported policy errors.
    pub errors: u64,
    pub counts: DiffCounts,
    /// The latest disagreements (at most 100), oldest first.
    pub recent: Vec<Disagreement>,
}

/// The shadow bundle and what it has disagreed on.
pub struct Shadow {
    pub policies: Arc<Policies>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Shadow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shadow")
            .field("policies", &self.policies)
            .finish()
    }
}

fn label(kind: ChangeKind) -> ShadowDisagreement {
    match kind {
        ChangeKind::NewlyContained => ShadowDisagreement::NewlyContained,
        ChangeKind::NoLongerContained => ShadowDisagreement::NoLongerContained,
        ChangeKind::ModeChanged => ShadowDisagreement::ModeChanged,
        ChangeKind::ConnectorsChanged => ShadowDisagreement::ConnectorsChanged,
    }
}

impl Shadow {
    pub fn new(policies: Arc<Policies>) -> Self {
        Self {
            policies,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Evaluate `alert` with the shadow bundle at `now` and compare with what the live bundle
    /// decided (`decisions`, planned as `actions`). CPU only; nothing is recorded in the ledger.
    pub(super) fn observe(
        &self,
        planner: &Planner,
        metrics: &Metrics,
        alert: &Alert,
        now: DateTime<Utc>,
        decisions: &[Decision],
        actions: &[ActionRecord],
    ) {
        let eval = self.policies.evaluate(alert, now, &serde_json::Value::Null);
        let (shadow_actions, _) = planner.plan(alert, &eval.decisions, &eval.digest, now);
        let identity = planner.identity();
        let live = sides(identity, alert, decisions, actions);
        let shadow = sides(identity, alert, &eval.decisions, &shadow_actions);
        let differences = compare(&live, &shadow);
        for d in &differences {
            metrics.shadow_disagreement(label(d.kind));
        }
        let mut st = self.state();
        st.evaluated += 1;
        if !eval.errors.is_empty() {
            st.errors += 1;
        }
        if differences.is_empty() {
            return;
        }
        st.disagreeing_alerts += 1;
        for d in differences {
            match d.kind {
                ChangeKind::NewlyContained => st.counts.newly_contained += 1,
                ChangeKind::NoLongerContained => st.counts.no_longer_contained += 1,
                ChangeKind::ModeChanged => st.counts.mode_changed += 1,
                ChangeKind::ConnectorsChanged => st.counts.connectors_changed += 1,
            }
            if st.recent.len() == RECENT {
                st.recent.pop_front();
            }
            st.recent.push_back(Disagreement {
                at: now,
                alert_id: alert.id.clone(),
                subject: d.key.0.clone(),
                action: d.key.1,
                kind: d.kind,
                detail: d.detail,
                rules: d.rules.into_iter().collect(),
            });
        }
    }

    /// The counts and latest disagreements, with both bundles' digests.
    pub fn report(&self, live_digest: &str) -> ShadowReport {
        let st = self.state();
        ShadowReport {
            live_digest: live_digest.to_string(),
            shadow_digest: self.policies.digest().to_string(),
            dir: self.policies.config().location(),
            evaluated: st.evaluated,
            disagreeing_alerts: st.disagreeing_alerts,
            errors: st.errors,
            counts: st.counts.clone(),
            recent: st.recent.iter().cloned().collect(),
        }
    }
}
