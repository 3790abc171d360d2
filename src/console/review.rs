//! Approvals (why each action is held, who asked; approve or reject with a comment — four eyes is
//! the API's rule) and the breaker (state per scope; reset for admins).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::call::{get, post, seg};
use super::guard::Signed;
use super::overview::{Approvals, Breaker};
use super::page::{self, Nav, csrf, layout, notice, render};
use super::{ConsoleError, ConsoleState};
use crate::ledger::{ActionRecord, StateReason};

/// Why an action is held, in words.
fn why(a: &ActionRecord) -> &'static str {
    match a.state_reason {
        Some(StateReason::PolicyApproval) => "the policy rule asks for approval",
        Some(StateReason::Breaker) => "the blast-radius breaker is open for its scope",
        Some(StateReason::FourEyes) => "the responder asked for a second person (four eyes)",
        _ => "held for approval",
    }
}

#[derive(Deserialize)]
pub(crate) struct Done {
    #[serde(default)]
    done: Option<String>,
}

pub(crate) async fn approvals(
    State(s): State<Arc<ConsoleState>>,
    signed: Signed,
    Query(q): Query<Done>,
) -> Result<Response, ConsoleError> {
    let held: Approvals = get(&s, &signed, "/v1/approvals?limit=1000").await?;
    let may = signed.may(&Method::POST, "/v1/approvals/{id}/approve");
    let me = &signed.session.caller.name;
    let done = match q.done.as_deref() {
        Some("approve") => Some("Approved: the action runs now."),
        Some("reject") => Some("Rejected: the action is cancelled."),
        _ => None,
    };
    let body = html! {
        h1 { "Approvals" }
        @if let Some(d) = done { (notice("ok", d)) }
        @if held.approvals.is_empty() { p.muted { "Nothing is waiting for approval." } }
        @for a in &held.approvals {
            @let requester = a.requester();
            @let mine = crate::approval::same_person(&requester, me);
            article.card data-key=(a.key) {
                h2 { code { (a.operation.as_str()) } " on " (a.connector) " for " (page::subject_link(&a.subject)) }
                dl.kv {
                    dt { "Why held" } dd { (why(a)) }
                    dt { "Requested by" } dd { (requester) }
                    dt { "Reason" } dd { (a.reason) }
                    dt { "Rule" } dd { code { (a.rule) } }
                    @if let Some(t) = a.expires_at { dt { "Expires" } dd { (page::time(t)) } }
                    dt { "Action" } dd { (page::action_link(&a.key)) }
                }
                @if mine {
                    p.notice { "You requested this; another person must approve it." }
                } @else if may {
                    form.stack method="post" action={ "/console/approvals/" (seg(&a.key)) "/approve" } {
                        (csrf(&signed))
                        div.field {
                            label for={ "c-" (a.key) } { "Comment" }
                            input type="text" id={ "c-" (a.key) } name="comment" maxlength="500";
                        }
                        div.row {
                            button type="submit" { "Approve" }
                            button.secondary type="submit" formaction={ "/console/approvals/" (seg(&a.key)) "/reject" } { "Reject" }
                        }
                    }
                }
            }
        }
    };
    Ok(render(layout(
        "Approvals",
        Some(&signed),
        Nav::Approvals,
        body,
    )))
}

#[derive(Deserialize)]
pub(crate) struct CommentForm {
    #[serde(default)]
    comment: String,
}

/// `POST /console/approvals/{key}/{approve|reject}` through `/v1/approvals/{key}/…`: the API
/// refuses the requester (four eyes) and any role below approver.
pub(crate) async fn decide(
    State(s): State<Arc<ConsoleState>>,
    signed: Signed,
    Path((key, verdict)): Path<(String, String)>,
    axum::extract::Form(f): axum::extract::Form<CommentForm>,
) -> Result<Response, ConsoleError> {
    let verdict = match verdict.as_str() {
        "approve" => "approve",
        "reject" => "reject",
        _ => {
            return Err(ConsoleError::Api {
                status: axum::http::StatusCode::NOT_FOUND,
                code: "not_found".into(),
                message: "no such decision".into(),
            });
        }
    };
    let comment = Some(f.comment.trim()).filter(|c| !c.is_empty());
    let _: ActionRecord = post(
        &s,
        &signed,
        &format!("/v1/approvals/{}/{verdict}", seg(&key)),
        Some(serde_json::json!({ "comment": comment })),
        None,
    )
    .await?;
    Ok(Redirect::to(&format!("/console/approvals?done={verdict}")).into_response())
}

pub(crate) async fn breaker(
    State(s): State<Arc<ConsoleState>>,
    signed: Signed,
    Query(q): Query<Done>,
) -> Result<Response, ConsoleError> {
    let b: Breaker = get(&s, &signed, "/v1/breaker").await?;
    let admin = signed.may(&Method::POST, "/v1/breaker/reset");
    let body = html! {
        h1 { "Breaker" }
        @if q.done.as_deref() == Some("reset") { (notice("ok", "Reset: the breaker is closed and its window emptied.")) }
        @if !b.enabled {
            p.muted { "The blast-radius breaker is not enabled (" code { "[guards.breaker]" } ")." }
        } @else {
            div.scroll { table {
                thead { tr { th { "Scope" } th { "State" } th { "Subjects in window" } th { "Window" } th { "Tripped at" } @if admin { th { "Reset" } } } }
                tbody {
                    @for sc in &b.scopes {
                        tr {
                            td { (sc.scope) }
                            td { span class={ "badge " (if sc.open { "s-open" } else { "s-closed" }) } { (if sc.open { "open" } else { "closed" }) } }
                            td { (sc.subjects) " of " (sc.threshold) }
                            td { (humantime::format_duration(sc.window).to_string()) }
                            td { @if let Some(t) = sc.opened_at { (page::time(t)) } }
                            @if admin {
                                td {
                                    form.inline method="post" action="/console/breaker/reset" {
                                        (csrf(&signed))
                                        input type="hidden" name="scope" value=(sc.scope);
                                        button.secondary type="submit" aria-label={ "Reset " (sc.scope) } { "Reset" }
                                    }
                                }
                            }
                        }
                    }
                }
            } }
            p { a href="/console/audit" { "Trips and resets are in the audit trail." } }
        }
    };
    Ok(render(layout("Breaker", Some(&signed), Nav::Breaker, body)))
}

#[derive(Deserialize)]
pub(crate) struct ResetForm {
    #[serde(default)]
    scope: String,
}

pub(crate) async fn reset(
    State(s): State<Arc<ConsoleState>>,
    signed: Signed,
    axum::extract::Form(f): axum::extract::Form<ResetForm>,
) -> Result<Response, ConsoleError> {
    let scope = Some(f.scope.trim()).filter(|x| !x.is_empty());
    let _: serde_json::Value = post(
        &s,
        &signed,
        "/v1/breaker/reset",
        Some(serde_json::json!({ "scope": scope })),
        None,
    )
    .await?;
    Ok(Redirect::to("/console/breaker?done=reset").into_response())
}
