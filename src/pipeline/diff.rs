//! Replay diff: what a candidate bundle would decide differently from the live one, on the same alerts.
//!
//! Each alert is decided by both [`Decider`]s at the same `now` (the alert's own time, so a replay is
//! reproducible and policies that look at the alert's age see what they saw live). Per alert, the
//! (subject, action) pairs of both sides are compared:
//! - **newly contained**: the candidate decides the pair, the live bundle does not;
//! - **no longer contained**: the reverse;
//! - **mode changed**: both decide it, in different modes (enforce ↔ approval ↔ dry_run);
//! - **connectors changed**: same modes, different connector instances planned.
//!
//! Changes are then counted per (subject, action, kind, detail), with the rules responsible (the
//! candidate's for what it adds or changes, the live bundle's for what it drops) and a few alert ids.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use chrono::Utc;
use serde::Serialize;

use super::{Decider, Planned};
use crate::action::Operation;
use crate::alert::Alert;

/// What one side decided for one (subject, action) on one alert.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Side {
    modes: BTreeSet<&'static str>,
    connectors: BTreeSet<String>,
    rules: BTreeSet<String>,
}

/// What one bundle decided for one alert, per (subject, action).
pub(super) type Sides = BTreeMap<(String, Operation), Side>;

pub(super) fn sides(
    identity: &crate::identity::Identity,
    alert: &Alert,
    decisions: &[crate::policy::Decision],
    actions: &[crate::ledger::ActionRecord],
) -> Sides {
    let mut out: Sides = BTreeMap::new();
    for d in decisions {
        let subject = identity.resolve(&d.subject, &alert.subjects);
        let side = out.entry((subject, d.action)).or_default();
        side.modes.insert(d.mode.as_str());
        side.rules.insert(d.rule.clone());
    }
    for a in actions {
        if let Some(side) = out.get_mut(&(a.subject.clone(), a.operation)) {
            side.connectors.insert(a.connector.clone());
        }
    }
    out
}

fn planned_sides(decider: &Decider, planned: &Planned) -> Sides {
    sides(
        decider.planner.identity(),
        &planned.alert,
        &planned.decisions,
        &planned.actions,
    )
}

/// One difference between two bundles' decisions on one alert.
pub(super) struct Difference<'a> {
    pub key: &'a (String, Operation),
    pub kind: ChangeKind,
    pub detail: String,
    /// The candidate's rules, or the live bundle's for what the candidate no longer decides.
    pub rules: BTreeSet<String>,
    /// The candidate contains the subject where the live bundle did not (not `notify`, not
    /// `dry_run` only).
    pub contains: bool,
}

/// Every difference between `live` and `candidate`, in key order.
pub(super) fn compare<'a>(live: &'a Sides, candidate: &'a Sides) -> Vec<Difference<'a>> {
    let keys: BTreeSet<&(String, Operation)> = live.keys().chain(candidate.keys()).collect();
    let mut out = Vec::new();
    for key in keys {
        let (kind, detail, rules) = match (live.get(key), candidate.get(key)) {
            (None, Some(c)) => (ChangeKind::NewlyContained, modes(c), c.rules.clone()),
            (Some(l), None) => (ChangeKind::NoLongerContained, modes(l), l.rules.clone()),
            (Some(l), Some(c)) if l.modes != c.modes => (
                ChangeKind::ModeChanged,
                format!("{} → {}", modes(l), modes(c)),
                c.rules.clone(),
            ),
            (Some(l), Some(c)) if l.connectors != c.connectors => (
                ChangeKind::ConnectorsChanged,
                format!("{} → {}", connectors(l), connectors(c)),
                c.rules.clone(),
            ),
            _ => continue,
        };
        let contains = kind == ChangeKind::NewlyContained
            && key.1 != Operation::Notify
            && candidate
                .get(key)
                .is_some_and(|s| s.modes.iter().any(|m| *m != "dry_run"));
        out.push(Difference {
            key,
            kind,
            detail,
            rules,
            contains,
        });
    }
    out
}

/// The four kinds of change, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    NewlyContained,
    NoLongerContained,
    ModeChanged,
    ConnectorsChanged,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::NewlyContained => "newly_contained",
            ChangeKind::NoLongerContained => "no_longer_contained",
            ChangeKind::ModeChanged => "mode_changed",
            ChangeKind::ConnectorsChanged => "connectors_changed",
        }
    }

    fn title(self) -> &'static str {
        match self {
            ChangeKind::NewlyContained => "NEWLY CONTAINED",
            ChangeKind::NoLongerContained => "NO LONGER CONTAINED",
            ChangeKind::ModeChanged => "MODE CHANGED",
            ChangeKind::ConnectorsChanged => "CONNECTORS CHANGED",
        }
    }
}

/// One line of the diff: a change for one subject and action, over every alert that showed it.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub subject: String,
    pub action: Operation,
    pub kind: ChangeKind,
    /// `enforce → approval`, `okta → okta, entra`, or the mode(s) of the side that has the pair.
    pub detail: String,
    /// Alerts on which this change showed.
    pub count: usize,
    /// Rules responsible: the candidate's, except for what is no longer contained (the live one's).
    pub rules: BTreeSet<String>,
    /// Up to five of the alerts' ids.
    pub alerts: Vec<String>,
}

/// Totals per kind (alert × subject × action occurrences).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct DiffCounts {
    pub newly_contained: usize,
    pub no_longer_contained: usize,
    pub mode_changed: usize,
    pub connectors_changed: usize,
}

/// The whole replay.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    pub live_digest: String,
    pub candidate_digest: String,
    pub alerts: usize,
    /// Alerts (or lines) that could not be normalized; skipped.
    pub unreadable: usize,
    pub counts: DiffCounts,
    /// Distinct subjects the candidate would newly contain: an action other than `notify`, in a
    /// mode other than `dry_run`. What `--max-new` limits.
    pub new_contained_subjects: usize,
    pub changes: Vec<Change>,
    pub seconds: f64,
    pub alerts_per_second: f64,
}

type ChangeKey = (ChangeKind, String, Operation, String);

/// Replays alerts through two deciders and accumulates the changes.
pub struct Replay<'a> {
    live: &'a Decider,
    candidate: &'a Decider,
    changes: BTreeMap<ChangeKey, Change>,
    counts: DiffCounts,
    new_subjects: BTreeSet<String>,
    alerts: usize,
    unreadable: usize,
    started: std::time::Instant,
}

fn modes(s: &Side) -> String {
    s.modes.iter().copied().collect::<Vec<_>>().join(", ")
}

fn connectors(s: &Side) -> String {
    if s.connectors.is_empty() {
        "(none)".into()
    } else {
        s.connectors.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

impl<'a> Replay<'a> {
    pub fn new(live: &'a Decider, candidate: &'a Decider) -> Self {
        Self {
            live,
            candidate,
            changes: BTreeMap::new(),
            counts: DiffCounts::default(),
            new_subjects: BTreeSet::new(),
            alerts: 0,
            unreadable: 0,
            started: std::time::Instant::now(),
        }
    }

    /// Count an input that could not be normalized.
    pub fn unreadable(&mut self) {
        self.unreadable += 1;
    }

    /// Decide `alert` with both bundles (at the alert's time) and record what differs.
    pub fn add(&mut self, alert: Alert) {
        let now = alert.time.min(Utc::now());
        self.add_at(alert, now);
    }

    /// As [`add`](Self::add) at a given `now` (for retained alerts: when they were received).
    pub fn add_at(&mut self, alert: Alert, now: chrono::DateTime<Utc>) {
        self.alerts += 1;
        let id = alert.id.clone();
        let live = self.live.decide_alert_at(alert.clone(), now);
        let cand = self.candidate.decide_alert_at(alert, now);
        let (l, c) = (
            planned_sides(self.live, &live),
            planned_sides(self.candidate, &cand),
        );
        for Difference {
            key,
            kind,
            detail,
            rules,
            contains,
        } in compare(&l, &c)
        {
            match kind {
                ChangeKind::NewlyContained => self.counts.newly_contained += 1,
                ChangeKind::NoLongerContained => self.counts.no_longer_contained += 1,
                ChangeKind::ModeChanged => self.counts.mode_changed += 1,
                ChangeKind::ConnectorsChanged => self.counts.connectors_changed += 1,
            }
            if contains {
                self.new_subjects.insert(key.0.clone());
            }
            let change = self
                .changes
                .entry((kind, key.0.clone(), key.1, detail.clone()))
                .or_insert_with(|| Change {
                    subject: key.0.clone(),
                    action: key.1,
                    kind,
                    detail,
                    count: 0,
                    rules: BTreeSet::new(),
                    alerts: Vec::new(),
                });
            change.count += 1;
            change.rules.extend(rules);
            if change.alerts.len() < 5 && !change.alerts.contains(&id) {
                change.alerts.push(id.clone());
            }
        }
    }

    pub fn finish(self) -> DiffReport {
        let seconds = self.started.elapsed().as_secs_f64();
        DiffReport {
            live_digest: self.live.policies.digest().to_string(),
            candidate_digest: self.candidate.policies.digest().to_string(),
            alerts: self.alerts,
            unreadable: self.unreadable,
            counts: self.counts,
            new_contained_subjects: self.new_subjects.len(),
            changes: self.changes.into_values().collect(),
            seconds,
            alerts_per_second: if seconds > 0.0 {
                self.alerts as f64 / seconds
            } else {
                0.0
            },
        }
    }
}

impl DiffReport {
    /// Whether the candidate decides anything differently.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The human report.
    pub fn write_text(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let short = |d: &str| d.chars().take(12).collect::<String>();
        writeln!(
            out,
            "replayed {} alerts ({} unreadable) through live {} and candidate {} in {:.2}s ({:.0} alerts/s)",
            self.alerts,
            self.unreadable,
            short(&self.live_digest),
            short(&self.candidate_digest),
            self.seconds,
            self.alerts_per_second
        )?;
        writeln!(
            out,
            "newly contained: {} ({} distinct subjects)   no longer contained: {}   mode changed: {}   connectors changed: {}",
            self.counts.newly_contained,
            self.new_contained_subjects,
            self.counts.no_longer_contained,
            self.counts.mode_changed,
            self.counts.connectors_changed
        )?;
        if self.changes.is_empty() {
            return writeln!(
                out,
                "no change: the candidate decides every alert as the live bundle does"
            );
        }
        let mut kind = None;
        for c in &self.changes {
            if kind != Some(c.kind) {
                writeln!(out, "\n{}", c.kind.title())?;
                kind = Some(c.kind);
            }
            writeln!(
                out,
                "  {}  {}  ×{}  [{}]  rules: {}  alerts: {}",
                c.subject,
                c.action,
                c.count,
                c.detail,
                c.rules.iter().cloned().collect::<Vec<_>>().join(", "),
                c.alerts.join(", ")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(modes: &[&'static str], connectors: &[&str], rule: &str) -> Side {
        Side {
            modes: modes.iter().copied().collect(),
            connectors: connectors.iter().map(|c| c.to_string()).collect(),
            rules: [rule.to_string()].into_iter().collect(),
        }
    }

    #[test]
    fn every_kind_of_change_is_found_with_the_responsible_rules() {
        let key = |s: &str, op| (s.to_string(), op);
        let live: Sides = [
            (
                key("a", Operation::DisableAccount),
                side(&["enforce"], &["okta"], "live.a"),
            ),
            (
                key("b", Operation::DisableAccount),
                side(&["enforce"], &["okta"], "live.b"),
            ),
            (
                key("c", Operation::RevokeSessions),
                side(&["enforce"], &["okta"], "live.c"),
            ),
            (
                key("same", Operation::RevokeSessions),
                side(&["enforce"], &["okta"], "x"),
            ),
        ]
        .into_iter()
        .collect();
        let candidate: Sides = [
            (
                key("a", Operation::DisableAccount),
                side(&["approval"], &["okta"], "cand.a"),
            ),
            (
                key("c", Operation::RevokeSessions),
                side(&["enforce"], &["okta", "entra"], "cand.c"),
            ),
            (
                key("d", Operation::DisableAccount),
                side(&["enforce"], &[], "cand.d"),
            ),
            (
                key("e", Operation::Notify),
                side(&["enforce"], &["chat"], "cand.e"),
            ),
            (
                key("f", Operation::DisableAccount),
                side(&["dry_run"], &["okta"], "cand.f"),
            ),
            (
                key("same", Operation::RevokeSessions),
                side(&["enforce"], &["okta"], "x"),
            ),
        ]
        .into_iter()
        .collect();
        let found: Vec<(String, ChangeKind, String, bool)> = compare(&live, &candidate)
            .into_iter()
            .map(|d| {
                let rules: Vec<String> = d.rules.into_iter().collect();
                (
                    d.key.0.clone(),
                    d.kind,
                    format!("{} {}", d.detail, rules.join(",")),
                    d.contains,
                )
            })
            .collect();
        assert_eq!(
            found,
            vec![
                (
                    "a".into(),
                    ChangeKind::ModeChanged,
                    "enforce → approval cand.a".into(),
                    false
                ),
                (
                    "b".into(),
                    ChangeKind::NoLongerContained,
                    "enforce live.b".into(),
                    false
                ),
                (
                    "c".into(),
                    ChangeKind::ConnectorsChanged,
                    "okta → entra, okta cand.c".into(),
                    false
                ),
                (
                    "d".into(),
                    ChangeKind::NewlyContained,
                    "enforce cand.d".into(),
                    true
                ),
                // `notify` and dry-run-only decisions are new, but contain no one.
                (
                    "e".into(),
                    ChangeKind::NewlyContained,
                    "enforce cand.e".into(),
                    false
                ),
                (
                    "f".into(),
                    ChangeKind::NewlyContained,
                    "dry_run cand.f".into(),
                    false
                ),
            ]
        );
    }
}
