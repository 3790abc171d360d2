//! The overview: containment at a glance, from the latest 1,000 actions, the approval queue and the
//! breaker (all through `/v1`), plus the serving policy bundle.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Duration, Timelike, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use super::call::get;
use super::guard::Signed;
use super::page::{self, Bar, Nav, layout, render};
use super::{ConsoleError, ConsoleState};
use crate::ledger::{ActionRecord, ActionState, BreakerState};

/// Actions the overview reads (the API's largest page).
pub(crate) const SAMPLE: usize = 1000;

#[derive(Deserialize)]
pub(crate) struct Actions {
    pub(crate) actions: Vec<ActionRecord>,
}

#[derive(Deserialize)]
pub(crate) struct Approvals {
    pub(crate) approvals: Vec<ActionRecord>,
}

#[derive(Deserialize)]
pub(crate) struct Breaker {
    pub(crate) enabled: bool,
    pub(crate) scopes: Vec<BreakerState>,
}

/// Per connector: succeeded, failed in the last day, and the latest error.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Health {
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    pub(crate) last_error: Option<String>,
}

/// What the overview computes from the actions (pure; tested).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// State → count, for actions last changed within the hour / the day.
    pub(crate) hour: BTreeMap<&'static str, u64>,
    pub(crate) day: BTreeMap<&'static str, u64>,
    /// Planned or running now.
    pub(crate) pending: u64,
    /// Failed within the day, newest first (at most 10).
    pub(crate) failed: Vec<ActionRecord>,
    /// Recorded → succeeded, over the day's succeeded containment actions (not reversals).
    pub(crate) ttc_p50: Option<f64>,
    pub(crate) ttc_p95: Option<f64>,
    /// 24 hourly bars, oldest first.
    pub(crate) hourly: Vec<Bar>,
    pub(crate) connectors: BTreeMap<String, Health>,
}

/// Nearest-rank percentile of sorted `v`.
fn percentile(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

pub(crate) fn stats(actions: &[ActionRecord], now: DateTime<Utc>) -> Stats {
    let mut st = Stats::default();
    let day_ago = now - Duration::hours(24);
    let this_hour = now
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(now);
    st.hourly = (0..24)
        .map(|i| Bar {
            label: (this_hour - Duration::hours(23 - i))
                .format("%H")
                .to_string(),
            ok: 0,
            bad: 0,
            other: 0,
        })
        .collect();
    let mut ttc = Vec::new();
    for a in actions {
        if a.state.is_pending() {
            st.pending += u64::from(a.state != ActionState::AwaitingApproval);
        }
        if a.updated_at < day_ago {
            continue;
        }
        *st.day.entry(a.state.as_str()).or_default() += 1;
        if a.updated_at >= now - Duration::hours(1) {
            *st.hour.entry(a.state.as_str()).or_default() += 1;
        }
        let hours_back = (this_hour - a.updated_at).num_seconds().div_euclid(3600) + 1;
        let slot = if a.updated_at >= this_hour {
            Some(23)
        } else {
            usize::try_from(23 - hours_back).ok()
        };
        if let Some(b) = slot.and_then(|i| st.hourly.get_mut(i)) {
            match a.state {
                ActionState::Succeeded | ActionState::Restored => b.ok += 1,
                ActionState::Failed => b.bad += 1,
                _ => b.other += 1,
            }
        }
        let h = st.connectors.entry(a.connector.clone()).or_default();
        match a.state {
            ActionState::Succeeded | ActionState::Restored => h.ok += 1,
            ActionState::Failed => {
                h.failed += 1;
                if h.last_error.is_none() {
                    h.last_error = a.last_error.clone();
                }
            }
            _ => {}
        }
        if a.state == ActionState::Failed && st.failed.len() < 10 {
            st.failed.push(a.clone());
        }
        if a.state == ActionState::Succeeded && a.reverses.is_none() {
            ttc.push((a.updated_at - a.created_at).num_milliseconds().max(0) as f64 / 1000.0);
        }
    }
    ttc.sort_by(f64::total_cmp);
    st.ttc_p50 = percentile(&ttc, 50.0);
    st.ttc_p95 = percentile(&ttc, 95.0);
    st
}

fn counts(m: &BTreeMap<&'static str, u64>) -> Markup {
    html! {
        @if m.is_empty() { p.muted { "none" } }
        @else {
            ul {
                @for (state, n) in m {
                    li { span class={ "badge s-" (state) } { (state.replace('_', " ")) } " " (n) }
                }
            }
        }
    }
}

pub(crate) async fn overview(
    State(s): State<Arc<ConsoleState>>,
    signed: Signed,
) -> Result<Response, ConsoleError> {
    let actions: Actions = get(&s, &signed, &format!("/v1/actions?limit={SAMPLE}")).await?;
    let held: Approvals = get(&s, &signed, "/v1/approvals?limit=1000").await?;
    let breaker: Breaker = get(&s, &signed, "/v1/breaker").await?;
    let now = Utc::now();
    let st = stats(&actions.actions, now);
    let pipeline = s.api.readiness.pipeline.get();
    let body = html! {
        h1 { "Overview" }
        div.grid {
            div.card { div.label { "Last hour" } (counts(&st.hour)) }
            div.card { div.label { "Last 24 hours" } (counts(&st.day)) }
            div.card {
                div.label { "Pending" } div.big { (st.pending) }
                div.label { "Held for approval" }
                div.big { a href="/console/approvals" { (held.approvals.len()) } }
            }
            div.card {
                div.label { "Time to containment (24 h)" }
                div { "p50 " strong { (st.ttc_p50.map_or("–".into(), page::duration)) } }
                div { "p95 " strong { (st.ttc_p95.map_or("–".into(), page::duration)) } }
                div.hint { "recorded → succeeded" }
            }
        }
        h2 { "Actions per hour" }
        (page::bar_chart("Actions per hour, last 24 hours", &st.hourly))
        @if actions.actions.len() >= SAMPLE {
            p.hint { "From the latest " (SAMPLE) " actions." }
        }
        h2 { "Breaker" }
        @if !breaker.enabled { p.muted { "The blast-radius breaker is not enabled." } }
        @else {
            ul {
                @for b in &breaker.scopes {
                    li {
                        strong { (b.scope) } " "
                        span class={ "badge " (if b.open { "s-open" } else { "s-closed" }) } {
                            (if b.open { "open" } else { "closed" })
                        }
                        " " (b.subjects) " of " (b.threshold) " subjects in the window"
                    }
                }
            }
        }
        h2 { "Policy bundle" }
        @if let Some(p) = pipeline {
            dl.kv {
                dt { "Digest" } dd.mono { (p.decider.policies.digest().to_string()) }
                dt { "Loaded" } dd { (page::time(p.decider.policies.loaded_at())) }
            }
        } @else { p.muted { "Not loaded yet." } }
        h2 { "Connectors" }
        p.hint { "Outcomes over the last 24 hours. For a live preflight (reachability, credentials) run "
            code { "deprovd connectors check" } "." }
        div.scroll { table {
            thead { tr { th { "Connector" } th { "Operations" } th { "Succeeded" } th { "Failed" } th { "Latest error" } } }
            tbody {
                @if let Some(p) = pipeline {
                    @for (name, ops) in p.decider.planner.capabilities() {
                        @let h = st.connectors.get(name);
                        tr {
                            td { (name) }
                            td { @for op in ops { code { (op.as_str()) } " " } }
                            td { (h.map_or(0, |h| h.ok)) }
                            td { span class=(if h.is_some_and(|h| h.failed > 0) { "s-bad" } else { "" }) { (h.map_or(0, |h| h.failed)) } }
                            td { (h.and_then(|h| h.last_error.as_deref()).unwrap_or("")) }
                        }
                    }
                }
            }
        } }
        @if !st.failed.is_empty() {
            h2 { "Failed (24 h)" }
            div.scroll { table {
                thead { tr { th { "Action" } th { "Subject" } th { "Connector" } th { "Operation" } th { "Error" } } }
                tbody {
                    @for a in &st.failed {
                        tr {
                            td { (page::action_link(&a.key)) }
                            td { (page::subject_link(&a.subject)) }
                            td { (a.connector) }
                            td { (a.operation.as_str()) }
                            td { (a.last_error.as_deref().unwrap_or("")) }
                        }
                    }
                }
            } }
        }
    };
    Ok(render(layout(
        "Overview",
        Some(&signed),
        Nav::Overview,
        body,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Operation, Origin};

    fn action(state: ActionState, created: DateTime<Utc>, took_secs: i64) -> ActionRecord {
        ActionRecord {
            key: format!("k{}", created.timestamp_nanos_opt().unwrap_or(0)),
            origin: Origin::Manual {
                request_id: "r".into(),
                actor: "rita".into(),
            },
            rule: "manual".into(),
            policy_digest: String::new(),
            subject: "a@corp.example".into(),
            connector: "okta".into(),
            operation: Operation::DisableAccount,
            reason: "test".into(),
            state,
            attempts: 1,
            next_attempt_at: None,
            last_error: (state == ActionState::Failed).then(|| "boom".to_string()),
            response: None,
            pre_state: None,
            reverses: None,
            linked_alerts: vec![],
            note: None,
            state_reason: None,
            requested_by: None,
            expires_at: None,
            created_at: created,
            updated_at: created + Duration::seconds(took_secs),
        }
    }

    #[test]
    fn overview_counts_by_window_and_takes_containment_percentiles() {
        let now = Utc::now();
        let mut v = Vec::new();
        for i in 1..=20 {
            v.push(action(
                ActionState::Succeeded,
                now - Duration::minutes(30),
                i,
            ));
        }
        v.push(action(ActionState::Failed, now - Duration::hours(5), 3));
        v.push(action(ActionState::Running, now - Duration::hours(30), 0));
        v.push(action(ActionState::Succeeded, now - Duration::hours(40), 1));
        let st = stats(&v, now);
        assert_eq!(st.hour.get("succeeded"), Some(&20));
        assert_eq!(st.day.get("succeeded"), Some(&20));
        assert_eq!(st.day.get("failed"), Some(&1));
        assert_eq!(st.pending, 1);
        assert_eq!(st.ttc_p50, Some(10.0));
        assert_eq!(st.ttc_p95, Some(19.0));
        assert_eq!(st.failed.len(), 1);
        assert_eq!(st.hourly.len(), 24);
        let charted: u64 = st.hourly.iter().map(|b| b.ok + b.bad + b.other).sum();
        assert_eq!(charted, 21);
        assert_eq!(st.hourly.iter().map(|b| b.bad).sum::<u64>(), 1);
        let okta = &st.connectors["okta"];
        assert_eq!((okta.ok, okta.failed), (20, 1));
        assert_eq!(okta.last_error.as_deref(), Some("boom"));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
