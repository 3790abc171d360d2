//! A lockout's live status, one action's page, and restores (lockout or single action) with the
//! recorded pre-state and what cannot be undone.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::call::{get, post, seg};
use super::guard::Signed;
use super::page::{self, Nav, csrf, layout, notice, render, state_badge};
use super::{ConsoleError, ConsoleState};
use crate::ledger::{ActionRecord, ActionState};
use crate::lockout::{Restored, Status};

/// How often an unsettled lockout's status is refreshed (htmx polling of [`live`]).
const POLL: &str = "every 1s";

async fn lockout_status(
    s: &ConsoleState,
    signed: &Signed,
    id: &str,
) -> Result<Status, ConsoleError> {
    get(s, signed, &format!("/v1/lockouts/{}", seg(id))).await
}

async fn get_action(
    s: &ConsoleState,
    signed: &Signed,
    key: &str,
) -> Result<ActionRecord, ConsoleError> {
    get(s, signed, &format!("/v1/actions/{}", seg(key))).await
}

/// The per-connector table; while unsettled it re-fetches itself (`hx-get`, every second) and is
/// swapped in place; once settled it carries no trigger, so polling stops.
fn live_table(st: &Status) -> Markup {
    let url = format!("/console/lockouts/{}/live", seg(&st.id));
    html! {
        section id="live" aria-live="polite" aria-busy=(if st.settled { "false" } else { "true" })
            hx-get=[(!st.settled).then_some(url.as_str())]
            hx-trigger=[(!st.settled).then_some(POLL)]
            hx-swap=[(!st.settled).then_some("outerHTML")] {
            p {
                "Status: "
                @if st.settled { strong.s-ok { "settled" } } @else { strong.s-warn { "in progress" } " — updates by itself" }
            }
            div.scroll { table {
                thead { tr { th { "Connector" } th { "Operation" } th { "State" } th.hide-narrow { "Attempts" } th { "Detail" } th { "Restore" } } }
                tbody {
                    @for a in &st.actions {
                        tr data-connector=(a.connector) data-state=(a.state.map_or("unknown", ActionState::as_str)) {
                            td { (a.connector) }
                            td { code { (a.operation.as_str()) } " " (page::action_link(&a.key)) }
                            td { (state_badge(a.state)) }
                            td.hide-narrow { (a.attempts) }
                            td { (a.last_error.as_deref().or(a.note.as_deref()).unwrap_or("")) }
                            td { @if let Some(r) = &a.reversal { code { (r.operation.as_str()) } " " (state_badge(Some(r.state))) } }
                        }
                    }
                }
            } }
        }
    }
}

pub(crate) async fn status(
    State(s): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let st = lockout_status(&s, &signed, &id).await?;
    let restorable = st
        .actions
        .iter()
        .any(|a| a.state == Some(ActionState::Succeeded));
    let body = html! {
        h1 { "Lockout of " (st.subject) }
        dl.kv {
            dt { "Subject" } dd { (page::subject_link(&st.subject)) }
            dt { "Reason" } dd { (st.reason) }
            @if let Some(t) = &st.ticket { dt { "Ticket" } dd { (t) } }
            dt { "Requested by" } dd { (st.requester) }
            dt { "At" } dd { (page::time(st.created_at)) }
            dt { "Id" } dd.mono { (st.id) }
        }
        (live_table(&st))
        @if restorable && signed.may(&Method::POST, "/v1/lockouts/{id}/restore") {
            p { a.button.secondary href={ "/console/lockouts/" (seg(&st.id)) "/restore" } { "Restore…" } }
        }
    };
    Ok(render(layout("Lockout", Some(&signed), Nav::Lockout, body)))
}

/// The live fragment alone (htmx swaps it in).
pub(crate) async fn live(
    State(s): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let st = lockout_status(&s, &signed, &id).await?;
    Ok(render(live_table(&st)))
}

/// What undoing `a` does, or that it cannot be undone, with its recorded pre-state.
fn undo_row(a: &ActionRecord) -> Markup {
    html! {
        tr {
            td { (a.connector) }
            td { code { (a.operation.as_str()) } }
            td { (state_badge(Some(a.state))) }
            td { @match (a.state, a.operation.reversal()) {
                (ActionState::Succeeded, Some(r)) => { code { (r.as_str()) } },
                (ActionState::Succeeded, None) => { strong.s-bad { "cannot be undone" } },
                _ => { span.muted { "nothing to undo" } },
            } }
            td { @match &a.pre_state {
                Some(p) => { pre { (serde_json::to_string_pretty(p).unwrap_or_default()) } },
                None => { span.muted { "none recorded" } },
            } }
        }
    }
}

fn undo_table(actions: &[ActionRecord]) -> Markup {
    html! {
        div.scroll { table {
            thead { tr { th { "Connector" } th { "Operation" } th { "State" } th { "Undo with" } th { "Recorded pre-state" } } }
            tbody { @for a in actions { (undo_row(a)) } }
        } }
        p.hint { "Cleared sessions, revoked tokens and reset credentials cannot be given back; the account owner signs in again." }
    }
}

pub(crate) async fn restore_lockout_form(
    State(s): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let st = lockout_status(&s, &signed, &id).await?;
    let mut actions = Vec::new();
    for a in &st.actions {
        actions.push(get_action(&s, &signed, &a.key).await?);
    }
    let may = signed.may(&Method::POST, "/v1/lockouts/{id}/restore");
    let body = html! {
        h1 { "Restore " (st.subject) }
        (undo_table(&actions))
        @if may {
            form.row method="post" action={ "/console/lockouts/" (seg(&st.id)) "/restore" } {
                (csrf(&signed))
                input type="hidden" name="idempotency_key" value=(crate::lockout::new_id());
                button type="submit" { "Restore now" }
                a.button.secondary href={ "/console/lockouts/" (seg(&st.id)) } { "Cancel" }
            }
        } @else {
            (notice("error", "Your role cannot restore; a responder or admin token can."))
        }
    };
    Ok(render(layout("Restore", Some(&signed), Nav::Lockout, body)))
}

fn idempotency_key(body: &[u8]) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "idempotency_key")
        .map(|(_, v)| v.into_owned())
        .filter(|k| !k.is_empty())
}

pub(crate) async fn restore_lockout(
    State(s): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ConsoleError> {
    restore(&s, &signed, "lockouts", &id, &body).await
}

/// `POST /v1/{kind}/{id}/restore` (`kind`: `lockouts` or `actions`) with the form's idempotency
/// key, then back to that lockout's or action's page.
async fn restore(
    s: &ConsoleState,
    signed: &Signed,
    kind: &str,
    id: &str,
    body: &[u8],
) -> Result<Response, ConsoleError> {
    let _: Restored = post(
        s,
        signed,
        &format!("/v1/{kind}/{}/restore", seg(id)),
        None,
        idempotency_key(body).as_deref(),
    )
    .await?;
    Ok(Redirect::to(&format!("/console/{kind}/{}", seg(id))).into_response())
}

pub(crate) async fn action(
    State(s): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(key): Path<String>,
) -> Result<Response, ConsoleError> {
    let a = get_action(&s, &signed, &key).await?;
    let can_restore = a.state == ActionState::Succeeded
        && a.operation.reversal().is_some()
        && signed.may(&Method::POST, "/v1/actions/{key}/restore");
    let body = html! {
        h1 { code { (a.operation.as_str()) } " on " (a.connector) }
        dl.kv {
            dt { "State" } dd { (state_badge(Some(a.state))) @if let Some(r) = a.state_reason { " " span.muted { (r.as_str()) } } }
            dt { "Subject" } dd { (page::subject_link(&a.subject)) }
            dt { "Rule" } dd { code { (a.rule) } }
            @if !a.policy_digest.is_empty() { dt { "Policy digest" } dd.mono { (a.policy_digest) } }
            dt { "Reason" } dd { (a.reason) }
            dt { "Requested by" } dd { (a.requester()) }
            dt { "Attempts" } dd { (a.attempts) }
            @if let Some(e) = &a.last_error { dt { "Last error" } dd { (e) } }
            @if let Some(r) = &a.response { dt { "Target answered" } dd { (r) } }
            @if let Some(n) = &a.note { dt { "Note" } dd { (n) } }
            @if let Some(r) = &a.reverses { dt { "Reverses" } dd { (page::action_link(r)) } }
            @if !a.linked_alerts.is_empty() { dt { "Linked alerts" } dd { (a.linked_alerts.join(", ")) } }
            dt { "Created" } dd { (page::time(a.created_at)) }
            dt { "Updated" } dd { (page::time(a.updated_at)) }
            dt { "Key" } dd.mono { (a.key) }
        }
        p { a href={ "/console/audit?" (super::call::query(&[("action_key", a.key.as_str())])) } { "Audit records of this action" } }
        h2 { "Restore" }
        (undo_table(std::slice::from_ref(&a)))
        @if can_restore {
            form.row method="post" action={ "/console/actions/" (seg(&a.key)) "/restore" } {
                (csrf(&signed))
                input type="hidden" name="idempotency_key" value=(crate::lockout::new_id());
                button type="submit" { "Restore this action" }
            }
        }
    };
    Ok(render(layout("Action", Some(&signed), Nav::Other, body)))
}

pub(crate) async fn restore_action(
    State(s): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ConsoleError> {
    restore(&s, &signed, "actions", &key, &body).await
}
