//! The subject timeline (everything about one person, newest first) and the audit view (filterable,
//! with the chain's verification on request).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::Method;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::call::{get, query, seg};
use super::guard::Signed;
use super::overview::Actions;
use super::page::{self, Nav, layout, notice, render, state_badge};
use super::{ConsoleError, ConsoleState};
use crate::audit::{AuditKind, AuditRecord};
use crate::ledger::Origin;

#[derive(Deserialize)]
struct Records {
    records: Vec<AuditRecord>,
    complete: bool,
}

#[derive(Deserialize)]
struct Verified {
    intact: bool,
    verified: Option<u64>,
    #[serde(default)]
    error: Option<String>,
}

fn text(v: &serde_json::Value, key: &str) -> String {
    match &v[key] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// One line saying what an audit record is about (its fields as text; maud escapes them).
pub(crate) fn summary(r: &AuditRecord) -> String {
    let d = &r.detail;
    match r.kind {
        AuditKind::AlertReceived => format!(
            "{} alert “{}” ({})",
            text(d, "outcome"),
            text(d, "title"),
            text(d, "severity")
        ),
        AuditKind::ApiCall => format!(
            "{} {} → {}{}",
            text(d, "method"),
            text(d, "path"),
            text(d, "status"),
            if d["via"].is_null() {
                String::new()
            } else {
                format!(" via {}", text(d, "via"))
            }
        ),
        _ => {
            let mut s = d.to_string();
            if s.len() > 240 {
                let cut = (0..=240)
                    .rev()
                    .find(|&i| s.is_char_boundary(i))
                    .unwrap_or(0);
                s.truncate(cut);
                s.push('…');
            }
            s
        }
    }
}

fn records_table(records: &[AuditRecord]) -> Markup {
    html! {
        div.scroll { table {
            thead { tr { th { "#" } th { "Time" } th { "Kind" } th { "Who" } th { "Subject" } th { "What" } } }
            tbody {
                @for r in records {
                    tr {
                        td.mono { (r.seq) }
                        td { (page::time(r.time)) }
                        td { code { (r.kind.as_str()) } }
                        td { (r.actor.name) @if let Some(role) = &r.actor.role { " (" (role) ")" } }
                        td { @if let Some(s) = &r.subject { (page::subject_link(s)) } }
                        td {
                            (summary(r))
                            @if let Some(k) = &r.action_key { " " (page::action_link(k)) }
                        }
                    }
                }
            }
        } }
    }
}

#[derive(Deserialize)]
pub(crate) struct SubjectQuery {
    #[serde(default)]
    q: String,
}

pub(crate) async fn subject(
    State(s): State<Arc<ConsoleState>>,
    signed: Signed,
    Query(q): Query<SubjectQuery>,
) -> Result<Response, ConsoleError> {
    let asked = q.q.trim();
    let canonical = match (asked.is_empty(), s.api.readiness.pipeline.get()) {
        (true, _) => String::new(),
        (false, Some(p)) => p.decider.planner.identity().canonical(asked),
        (false, None) => asked.to_string(),
    };
    let found = if canonical.is_empty() {
        None
    } else {
        let actions: Actions = get(
            &s,
            &signed,
            &format!(
                "/v1/actions?{}",
                query(&[("subject", canonical.as_str()), ("limit", "200")])
            ),
        )
        .await?;
        let records: Records = get(
            &s,
            &signed,
            &format!(
                "/v1/audit?{}",
                query(&[("subject", canonical.as_str()), ("limit", "200")])
            ),
        )
        .await?;
        Some((actions.actions, records))
    };
    let may_lock = signed.may(&Method::POST, "/v1/lockouts");
    let body = html! {
        h1 { "Subjects" }
        form.row method="get" action="/console/subject" role="search" {
            div.field {
                label for="q" { "Subject" }
                input type="search" id="q" name="q" value=(asked) placeholder="jdoe@corp.example or CORP\\jdoe";
            }
            button type="submit" { "Search" }
        }
        @if let Some((actions, records)) = &found {
            h2 { (canonical) }
            @if canonical != asked { p.hint { "“" (asked) "” is " strong { (canonical) } " (identity resolution)." } }
            @if may_lock {
                p { a.button href={ "/console/lockout?" (query(&[("subject", canonical.as_str())])) } { "Lock out " (canonical) } }
            }
            h2 { "Actions" }
            @if actions.is_empty() { p.muted { "No actions for this subject." } }
            @else {
                div.scroll { table {
                    thead { tr { th { "Updated" } th { "Connector" } th { "Operation" } th { "State" } th { "Why" } th { "Attempts" } th { "Error" } } }
                    tbody {
                        @for a in actions {
                            tr {
                                td { (page::time(a.updated_at)) }
                                td { (a.connector) }
                                td { code { (a.operation.as_str()) } " " (page::action_link(&a.key)) }
                                td { (state_badge(Some(a.state))) }
                                td {
                                    @match &a.origin {
                                        Origin::Manual { request_id, actor } => {
                                            "manual by " (actor) " — "
                                            a href={ "/console/lockouts/" (seg(request_id)) } { "lockout" }
                                        },
                                        Origin::Alert { alert_id, .. } => {
                                            "rule " code { (a.rule) } " on alert "
                                            a href={ "/console/audit?" (query(&[("alert_id", alert_id.as_str())])) } { (alert_id) }
                                        },
                                    }
                                    @if !a.policy_digest.is_empty() {
                                        br; span.hint.mono { "policy " (a.policy_digest.chars().take(12).collect::<String>()) }
                                    }
                                }
                                td { (a.attempts) }
                                td { (a.last_error.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                } }
            }
            h2 { "Timeline" }
            @if records.records.is_empty() { p.muted { "No audit records name this subject." } }
            @else { (records_table(&records.records)) }
        }
    };
    Ok(render(layout(
        "Subjects",
        Some(&signed),
        Nav::Subject,
        body,
    )))
}

#[derive(Deserialize, Default)]
pub(crate) struct AuditForm {
    #[serde(default)]
    subject: String,
    #[serde(default)]
    alert_id: String,
    #[serde(default)]
    action_key: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    verify: Option<String>,
}

pub(crate) async fn audit(
    State(s): State<Arc<ConsoleState>>,
    signed: Signed,
    Query(f): Query<AuditForm>,
) -> Result<Response, ConsoleError> {
    let subject = f.subject.trim();
    let subject = match (subject.is_empty(), s.api.readiness.pipeline.get()) {
        (false, Some(p)) => p.decider.planner.identity().canonical(subject),
        _ => subject.to_string(),
    };
    let q = query(&[
        ("subject", subject.as_str()),
        ("alert_id", f.alert_id.trim()),
        ("action_key", f.action_key.trim()),
        ("since", f.since.trim()),
        ("until", f.until.trim()),
        ("limit", "200"),
    ]);
    let records: Result<Records, ConsoleError> = get(&s, &signed, &format!("/v1/audit?{q}")).await;
    let verified: Option<Verified> = match f.verify {
        Some(_) => Some(get(&s, &signed, "/v1/audit/verify").await?),
        None => None,
    };
    let body = html! {
        h1 { "Audit trail" }
        @if let Some(v) = &verified {
            @if v.intact {
                (notice("ok", &format!("Chain intact: {} records verified, every link and the head.", v.verified.unwrap_or(0))))
            } @else {
                (notice("error", &format!("Chain BROKEN: {}", v.error.as_deref().unwrap_or("unknown"))))
            }
        }
        form.row method="get" action="/console/audit" {
            div.field { label for="subject" { "Subject" } input type="text" id="subject" name="subject" value=(f.subject); }
            div.field { label for="alert_id" { "Alert id" } input type="text" id="alert_id" name="alert_id" value=(f.alert_id); }
            div.field { label for="action_key" { "Action key" } input type="text" id="action_key" name="action_key" value=(f.action_key); }
            div.field { label for="since" { "Since " span.hint { "(RFC 3339)" } } input type="text" id="since" name="since" value=(f.since) placeholder="2026-01-31T00:00:00Z"; }
            div.field { label for="until" { "Until" } input type="text" id="until" name="until" value=(f.until); }
            button type="submit" { "Filter" }
            button.secondary type="submit" name="verify" value="1" { "Verify chain" }
        }
        @match &records {
            Ok(r) => {
                @if !r.complete { p.hint { "The scan stopped before the start of the trail; narrow the time range to look further back." } }
                @if r.records.is_empty() { p.muted { "No matching records." } } @else { (records_table(&r.records)) }
            },
            Err(e) => { (notice("error", &e.to_string())) },
        }
    };
    Ok(render(layout("Audit", Some(&signed), Nav::Audit, body)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Actor, AuditDraft};

    #[test]
    fn summaries_name_alert_titles_and_api_calls_as_plain_text() {
        let mut d = AuditDraft::new(
            AuditKind::AlertReceived,
            Actor::system("http"),
            serde_json::json!({"outcome": "accepted", "title": "<script>x</script>", "severity": "high"}),
        );
        d.subject = Some("a@b".into());
        let r = AuditRecord::seal(d, 1, crate::audit::GENESIS);
        assert_eq!(summary(&r), "accepted alert “<script>x</script>” (high)");
        let html = records_table(std::slice::from_ref(&r)).into_string();
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;") && !html.contains("<script>"));

        let call = AuditRecord::seal(
            AuditDraft::new(
                AuditKind::ApiCall,
                Actor::system("rita"),
                serde_json::json!({"method": "POST", "path": "/v1/lockouts", "status": 202, "via": "console"}),
            ),
            2,
            &r.hash,
        );
        assert_eq!(summary(&call), "POST /v1/lockouts → 202 via console");
    }
}
