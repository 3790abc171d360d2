//! The lockout screen: subject, connectors, operations, reason and ticket → a confirmation showing
//! exactly which (connector, operation, subject) will be called → `POST /v1/lockouts`.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::Method;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::{Markup, html};
use serde::Deserialize;

use super::call::{post, seg};
use super::guard::Signed;
use super::page::{Nav, csrf, layout, notice, render};
use super::{ConsoleError, ConsoleState};
use crate::ledger::Operation;
use crate::lockout::{Created, DEFAULT_OPERATIONS, LockoutRequest};

/// The lockout form as posted (repeated `connector` and `operation` fields).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct LockoutForm {
    pub(crate) subject: String,
    pub(crate) reason: String,
    pub(crate) ticket: String,
    pub(crate) connectors: BTreeSet<String>,
    pub(crate) operations: BTreeSet<Operation>,
    pub(crate) require_approval: bool,
    /// The `Idempotency-Key` of the confirmation: a double submit is one lockout.
    pub(crate) idempotency_key: String,
}

impl LockoutForm {
    pub(crate) fn parse(body: &[u8]) -> LockoutForm {
        let mut f = LockoutForm::default();
        for (k, v) in form_urlencoded::parse(body) {
            match k.as_ref() {
                "subject" => f.subject = v.into_owned(),
                "reason" => f.reason = v.into_owned(),
                "ticket" => f.ticket = v.into_owned(),
                "connector" => {
                    f.connectors.insert(v.into_owned());
                }
                "operation" => {
                    if let Some(op) = Operation::parse(&v) {
                        f.operations.insert(op);
                    }
                }
                "require_approval" => f.require_approval = v == "on",
                "idempotency_key" => f.idempotency_key = v.into_owned(),
                _ => {}
            }
        }
        f
    }

    /// The API request: every configured connector ticked means "all that can" (the API's default,
    /// which skips connectors that cannot do an operation), as does none.
    pub(crate) fn request(&self, configured: &BTreeSet<String>) -> LockoutRequest {
        let all = self.connectors.is_empty() || self.connectors == *configured;
        LockoutRequest {
            subject: self.subject.clone(),
            connectors: (!all).then(|| self.connectors.iter().cloned().collect()),
            operations: (!self.operations.is_empty())
                .then(|| self.operations.iter().copied().collect()),
            reason: self.reason.clone(),
            ticket: Some(self.ticket.trim().to_string()).filter(|t| !t.is_empty()),
            require_approval: self.require_approval,
        }
    }
}

/// Operations a responder may ask for (reversals are the restore screen's).
fn offered(ops: &BTreeSet<Operation>) -> impl Iterator<Item = Operation> + '_ {
    ops.iter()
        .copied()
        .filter(|o| o.is_destructive() || *o == Operation::Notify)
}

/// The running pipeline, or [`ConsoleError::NotReady`] while deprovd is starting.
fn pipeline(s: &ConsoleState) -> Result<&crate::pipeline::Pipeline, ConsoleError> {
    s.api
        .readiness
        .pipeline
        .get()
        .map(|p| &**p)
        .ok_or(ConsoleError::NotReady)
}

fn configured(s: &ConsoleState) -> Result<BTreeSet<String>, ConsoleError> {
    Ok(pipeline(s)?
        .decider
        .planner
        .capabilities()
        .keys()
        .cloned()
        .collect())
}

fn form_body(s: &ConsoleState, signed: &Signed, f: &LockoutForm, error: Option<&str>) -> Markup {
    let caps = s
        .api
        .readiness
        .pipeline
        .get()
        .map(|p| p.decider.planner.capabilities().clone())
        .unwrap_or_default();
    let all_ops: BTreeSet<Operation> = caps.values().flatten().copied().collect();
    let fresh = f.connectors.is_empty() && f.operations.is_empty();
    html! {
        h1 { "Lock out" }
        @if let Some(e) = error { (notice("error", e)) }
        form.stack method="post" action="/console/lockout/confirm" {
            (csrf(signed))
            div.field {
                label for="subject" { "Subject" }
                span.hint id="subject-hint" { "Email, UPN, DOMAIN\\user or a per-system id; resolved to one spelling per account." }
                input type="text" id="subject" name="subject" required value=(f.subject)
                    aria-describedby="subject-hint" autocomplete="off";
            }
            fieldset {
                legend { "Connectors" }
                div.checks {
                    @for (name, ops) in &caps {
                        label {
                            input type="checkbox" name="connector" value=(name)
                                checked[fresh || f.connectors.contains(name)];
                            " " (name) " "
                            span.hint { (ops.iter().map(|o| o.as_str()).collect::<Vec<_>>().join(", ")) }
                            @if let Some(t) = s.targets.get(name) { " " span.hint { "(" (t) ")" } }
                        }
                    }
                }
            }
            fieldset {
                legend { "Operations" }
                div.checks {
                    @for op in offered(&all_ops) {
                        label {
                            input type="checkbox" name="operation" value=(op.as_str())
                                checked[(fresh && DEFAULT_OPERATIONS.contains(&op)) || f.operations.contains(&op)];
                            " " (op.as_str())
                        }
                    }
                }
            }
            div.field {
                label for="reason" { "Reason" }
                input type="text" id="reason" name="reason" required value=(f.reason) maxlength="500";
            }
            div.field {
                label for="ticket" { "Ticket " span.hint { "(optional)" } }
                input type="text" id="ticket" name="ticket" value=(f.ticket) maxlength="200";
            }
            label {
                input type="checkbox" name="require_approval" checked[f.require_approval];
                " Hold for a second person's approval (four eyes)"
            }
            div { button type="submit" { "Review lockout" } }
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct Prefill {
    #[serde(default)]
    subject: String,
}

pub(crate) async fn form(
    State(s): State<Arc<ConsoleState>>,
    signed: Signed,
    Query(q): Query<Prefill>,
) -> Response {
    let body = if signed.may(&Method::POST, "/v1/lockouts") {
        let f = LockoutForm {
            subject: q.subject,
            ..LockoutForm::default()
        };
        form_body(&s, &signed, &f, None)
    } else {
        html! {
            h1 { "Lock out" }
            (notice("error", &format!(
                "Your role ({}) cannot lock accounts out; a responder or admin token can.",
                signed.session.caller.role.as_str()
            )))
        }
    };
    render(layout("Lock out", Some(&signed), Nav::Lockout, body))
}

/// The role check the API will make, made early so a viewer never sees a confirmation.
fn require_responder(signed: &Signed) -> Result<(), ConsoleError> {
    if signed.may(&Method::POST, "/v1/lockouts") {
        return Ok(());
    }
    Err(ConsoleError::Forbidden {
        role: signed.session.caller.role.as_str(),
        needed: "responder",
    })
}

/// `POST /console/lockout/confirm`: what exactly will be called, planned by the same function the
/// API records with ([`crate::lockout::plan`]), nothing recorded yet.
pub(crate) async fn confirm(
    State(s): State<Arc<ConsoleState>>,
    signed: Signed,
    body: axum::body::Bytes,
) -> Result<Response, ConsoleError> {
    require_responder(&signed)?;
    let f = LockoutForm::parse(&body);
    let pipeline = pipeline(&s)?;
    let req = f.request(&configured(&s)?);
    let planned = pipeline
        .decider
        .planner
        .identity()
        .check(&req.subject)
        .map_err(|e| crate::lockout::LockoutError::Invalid {
            code: "invalid_subject",
            message: format!("`subject`: {e}"),
        })
        .and_then(|subject| {
            let resolved = LockoutRequest {
                subject,
                ..req.clone()
            };
            crate::lockout::plan(
                pipeline.decider.planner.capabilities(),
                &resolved,
                "preview",
                &signed.session.caller.name,
                Utc::now(),
            )
        });
    let planned = match planned {
        Ok(p) => p,
        Err(e) => {
            let body = form_body(&s, &signed, &f, Some(&e.to_string()));
            return Ok(render(layout(
                "Lock out",
                Some(&signed),
                Nav::Lockout,
                body,
            )));
        }
    };
    let key = crate::lockout::new_id();
    let body = html! {
        h1 { "Confirm lockout" }
        dl.kv {
            dt { "Subject" } dd { (req.subject) @if let Some(a) = planned.first().filter(|a| a.subject != req.subject) { " → " strong { (a.subject) } } }
            dt { "Reason" } dd { (req.reason) }
            @if let Some(t) = &req.ticket { dt { "Ticket" } dd { (t) } }
            dt { "Approval" } dd { @if req.require_approval { "held until another person approves" } @else { "runs at once" } }
        }
        h2 { "These calls will be made" }
        div.scroll { table {
            thead { tr { th { "Connector" } th { "Target" } th { "Operation" } th { "Account" } th { "Undo" } } }
            tbody {
                @for a in &planned {
                    tr {
                        td { (a.connector) }
                        td { (s.targets.get(&a.connector).map_or("", String::as_str)) }
                        td { code { (a.operation.as_str()) } }
                        td { (a.subject) }
                        td { @match a.operation.reversal() {
                            Some(r) => { "restorable (" code { (r.as_str()) } ")" },
                            None => { strong.s-bad { "cannot be undone" } },
                        } }
                    }
                }
            }
        } }
        p.hint { "Protected subjects and groups are still skipped by the guards, and the breaker still applies." }
        form.row method="post" action="/console/lockouts" {
            (csrf(&signed))
            input type="hidden" name="idempotency_key" value=(key);
            input type="hidden" name="subject" value=(f.subject);
            input type="hidden" name="reason" value=(f.reason);
            input type="hidden" name="ticket" value=(f.ticket);
            @for c in &f.connectors { input type="hidden" name="connector" value=(c); }
            @for o in &f.operations { input type="hidden" name="operation" value=(o.as_str()); }
            @if f.require_approval { input type="hidden" name="require_approval" value="on"; }
            button.danger type="submit" { "Lock out now" }
            a.button.secondary href={ "/console/lockout?" (super::call::query(&[("subject", f.subject.as_str())])) } { "Change" }
        }
    };
    Ok(render(layout(
        "Confirm lockout",
        Some(&signed),
        Nav::Lockout,
        body,
    )))
}

/// `POST /console/lockouts`: the lockout through `POST /v1/lockouts`, then its live status.
pub(crate) async fn create(
    State(s): State<Arc<ConsoleState>>,
    signed: Signed,
    body: axum::body::Bytes,
) -> Result<Response, ConsoleError> {
    let f = LockoutForm::parse(&body);
    let req = f.request(&configured(&s)?);
    let key = Some(f.idempotency_key.as_str()).filter(|k| !k.is_empty());
    let created: Created = post(
        &s,
        &signed,
        "/v1/lockouts",
        Some(serde_json::to_value(&req).unwrap_or_default()),
        key,
    )
    .await?;
    Ok(Redirect::to(&format!("/console/lockouts/{}", seg(&created.id))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_becomes_the_api_request() {
        let f = LockoutForm::parse(
            b"subject=CORP%5Cjdoe&reason=phished&ticket=+&connector=okta&operation=disable_account\
              &operation=revoke_sessions&operation=bogus&require_approval=on&idempotency_key=k1&csrf=x",
        );
        assert_eq!(f.subject, "CORP\\jdoe");
        assert_eq!(f.operations.len(), 2);
        assert!(f.require_approval);
        let both: BTreeSet<String> = ["okta".to_string(), "ldap".to_string()].into();
        let req = f.request(&both);
        assert_eq!(req.connectors, Some(vec!["okta".to_string()]));
        assert_eq!(
            req.operations,
            Some(vec![Operation::DisableAccount, Operation::RevokeSessions])
        );
        assert_eq!(req.ticket, None);
        let only: BTreeSet<String> = ["okta".to_string()].into();
        assert_eq!(f.request(&only).connectors, None);
    }
}
