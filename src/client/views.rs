//! What responders look for from a terminal — `deprovd actions`, `deprovd lockouts`, `deprovd
//! breaker`, `deprovd audit tail` — each a read (or one fix) through the HTTP API with the caller's
//! token, shown as a table or, with `--format json`, as the server's JSON.

use serde_json::Value;

use super::{Client, ClientError, decode, path_segment, render_action, short, table};
use crate::ledger::{ActionRecord, BreakerState};
use crate::lockout::LockoutPage;

/// Filters of `deprovd actions list` (`GET /v1/actions`).
#[derive(Debug, Clone, Default)]
pub struct ActionsFilter {
    pub subject: Option<String>,
    pub state: Option<String>,
    pub alert: Option<String>,
    pub connector: Option<String>,
    /// RFC 3339.
    pub since: Option<String>,
    pub limit: Option<usize>,
}

/// Filters of `deprovd audit tail` (`GET /v1/audit`).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub subject: Option<String>,
    pub alert: Option<String>,
    pub action: Option<String>,
    /// RFC 3339.
    pub since: Option<String>,
    pub limit: Option<usize>,
}

/// One responder view.
#[derive(Debug, Clone)]
pub enum View {
    Actions(ActionsFilter),
    ActionShow(String),
    ActionRetry(String),
    Lockouts {
        subject: Option<String>,
        limit: Option<usize>,
        before: Option<String>,
    },
    Breaker,
    BreakerReset(Option<String>),
    AuditTail(AuditFilter),
}

/// `?a=1&b=2` from the set pairs, values percent-encoded.
fn query(pairs: &[(&str, Option<String>)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            q.append_pair(k, v);
        }
    }
    let q = q.finish();
    if q.is_empty() { q } else { format!("?{q}") }
}

impl View {
    /// Ask the server.
    pub async fn fetch(&self, client: &Client) -> Result<Value, ClientError> {
        match self {
            View::Actions(f) => {
                client
                    .get(&format!(
                        "/v1/actions{}",
                        query(&[
                            ("subject", f.subject.clone()),
                            ("state", f.state.clone()),
                            ("alert_id", f.alert.clone()),
                            ("connector", f.connector.clone()),
                            ("since", f.since.clone()),
                            ("limit", f.limit.map(|l| l.to_string())),
                        ])
                    ))
                    .await
            }
            View::ActionShow(id) => {
                let key = client.resolve_action(id).await?;
                client.get(&format!("/v1/actions/{key}")).await
            }
            View::ActionRetry(id) => {
                let key = client.resolve_action(id).await?;
                client
                    .post(&format!("/v1/actions/{}/retry", path_segment(&key)), None)
                    .await
            }
            View::Lockouts {
                subject,
                limit,
                before,
            } => {
                client
                    .get(&format!(
                        "/v1/lockouts{}",
                        query(&[
                            ("subject", subject.clone()),
                            ("limit", limit.map(|l| l.to_string())),
                            ("before", before.clone()),
                        ])
                    ))
                    .await
            }
            View::Breaker => client.get("/v1/breaker").await,
            View::BreakerReset(scope) => {
                let body = serde_json::json!({ "scope": scope });
                client.post("/v1/breaker/reset", Some(&body)).await
            }
            View::AuditTail(f) => {
                client
                    .get(&format!(
                        "/v1/audit{}",
                        query(&[
                            ("subject", f.subject.clone()),
                            ("alert_id", f.alert.clone()),
                            ("action_key", f.action.clone()),
                            ("since", f.since.clone()),
                            ("limit", f.limit.map(|l| l.to_string())),
                        ])
                    ))
                    .await
            }
        }
    }

    /// The table for the server's answer `v`.
    pub fn render(&self, v: &Value) -> Result<String, ClientError> {
        Ok(match self {
            View::Actions(_) => render_actions(&decode::<Vec<ActionRecord>>(&v["actions"])?),
            View::ActionShow(_) => render_action(&decode(v)?),
            View::ActionRetry(_) => {
                let a: ActionRecord = decode(v)?;
                format!(
                    "{}\nretry planned; follow it with: deprovd actions show {}\n",
                    render_action(&a),
                    short(&a.key)
                )
            }
            View::Lockouts { .. } => render_lockouts(&decode(v)?),
            View::Breaker => render_breaker(
                v["enabled"].as_bool(),
                &decode::<Vec<BreakerState>>(&v["scopes"])?,
            ),
            View::BreakerReset(_) => {
                let was: Vec<String> = decode(&v["was_open"]).unwrap_or_default();
                let head = if was.is_empty() {
                    "nothing was open; windows emptied\n".to_string()
                } else {
                    format!("closed: {}\n", was.join(", "))
                };
                head + &render_breaker(Some(true), &decode::<Vec<BreakerState>>(&v["scopes"])?)
            }
            View::AuditTail(_) => render_audit(&v["records"], v["complete"].as_bool()),
        })
    }
}

pub fn render_actions(actions: &[ActionRecord]) -> String {
    if actions.is_empty() {
        return "no actions match\n".to_string();
    }
    let rows: Vec<Vec<String>> = actions
        .iter()
        .map(|a| {
            vec![
                short(&a.key),
                a.subject.clone(),
                a.connector.clone(),
                a.operation.to_string(),
                a.state.as_str().to_string(),
                a.attempts.to_string(),
                a.updated_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                a.last_error
                    .clone()
                    .or_else(|| a.note.clone())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "ACTION",
            "SUBJECT",
            "CONNECTOR",
            "OPERATION",
            "STATE",
            "ATTEMPTS",
            "UPDATED (UTC)",
            "DETAIL",
        ],
        &rows,
    )
}

pub fn render_lockouts(page: &LockoutPage) -> String {
    if page.lockouts.is_empty() {
        return "no lockouts\n".to_string();
    }
    let rows: Vec<Vec<String>> = page
        .lockouts
        .iter()
        .map(|l| {
            vec![
                l.id.clone(),
                l.subject.clone(),
                l.requester.clone(),
                l.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                l.actions.len().to_string(),
                l.ticket.clone().unwrap_or_else(|| "-".into()),
                l.reason.clone(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "ID",
            "SUBJECT",
            "BY",
            "CREATED (UTC)",
            "ACTIONS",
            "TICKET",
            "REASON",
        ],
        &rows,
    );
    if let Some(next) = &page.next {
        out.push_str(&format!("older: deprovd lockouts --before {next}\n"));
    }
    out
}

pub fn render_breaker(enabled: Option<bool>, scopes: &[BreakerState]) -> String {
    if enabled == Some(false) {
        return "the blast-radius breaker is disabled ([guards.breaker] enabled = false)\n"
            .to_string();
    }
    let rows: Vec<Vec<String>> = scopes
        .iter()
        .map(|s| {
            vec![
                s.scope.clone(),
                if s.open { "OPEN" } else { "closed" }.to_string(),
                format!("{}/{}", s.subjects, s.threshold),
                humantime::format_duration(s.window).to_string(),
                s.opened_at
                    .map_or_else(|| "-".to_string(), |t| t.to_rfc3339()),
            ]
        })
        .collect();
    let mut out = table(
        &["SCOPE", "STATE", "SUBJECTS", "WINDOW", "OPENED AT"],
        &rows,
    );
    if scopes.iter().any(|s| s.open) {
        out.push_str("while open, automatic actions are held for approval; an admin closes it with: deprovd breaker reset [--scope SCOPE]\n");
    }
    out
}

/// Audit records, oldest first (as `tail` prints), from the server's newest-first answer.
pub fn render_audit(records: &Value, complete: Option<bool>) -> String {
    let records: Vec<&Value> = records.as_array().into_iter().flatten().collect();
    if records.is_empty() {
        return "no audit records match\n".to_string();
    }
    let text = |v: &Value| v.as_str().unwrap_or("-").to_string();
    let rows: Vec<Vec<String>> = records
        .iter()
        .rev()
        .map(|r| {
            let detail = &r["detail"];
            let what = detail["event"]
                .as_str()
                .or_else(|| detail["outcome"].as_str())
                .map(str::to_string)
                .unwrap_or_else(|| {
                    let mut d = detail.to_string();
                    d.truncate(80);
                    d
                });
            vec![
                r["seq"].to_string(),
                text(&r["time"]),
                text(&r["kind"]),
                text(&r["actor"]["name"]),
                text(&r["subject"]),
                r["action_key"].as_str().map(short).unwrap_or("-".into()),
                what,
            ]
        })
        .collect();
    let mut out = table(
        &["SEQ", "TIME", "KIND", "ACTOR", "SUBJECT", "ACTION", "WHAT"],
        &rows,
    );
    if complete == Some(false) {
        out.push_str("(the scan stopped early: narrow it with --since)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_an_encoded_query() {
        assert_eq!(query(&[("a", None)]), "");
        assert_eq!(
            query(&[
                ("subject", Some("a b@x".into())),
                ("since", Some("2026-01-01T00:00:00+01:00".into()))
            ]),
            "?subject=a+b%40x&since=2026-01-01T00%3A00%3A00%2B01%3A00"
        );
    }

    #[test]
    fn an_open_breaker_says_how_to_close_it() {
        let t = render_breaker(
            Some(true),
            &[BreakerState {
                scope: "global".into(),
                open: true,
                opened_at: None,
                subjects: 11,
                threshold: 10,
                window: std::time::Duration::from_secs(600),
            }],
        );
        assert!(t.contains("OPEN") && t.contains("11/10"), "{t}");
        assert!(t.contains("deprovd breaker reset"), "{t}");
    }
}
