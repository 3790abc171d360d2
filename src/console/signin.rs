//! Sign-in (a deprovd API token exchanged for a session cookie) and sign-out, both audited as
//! `api_call` records like the API's own calls.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Form, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::html;
use serde::Deserialize;
use tracing::{info, warn};

use super::guard::Signed;
use super::page::{Nav, layout, notice, render};
use super::session;
use super::{ConsoleError, ConsoleState};
use crate::api::{Caller, Role};
use crate::audit::{AuditDraft, AuditKind};

fn form_page(error: Option<&str>) -> Response {
    let body = html! {
        h1 { "Sign in" }
        @if let Some(e) = error { (notice("error", e)) }
        form.stack method="post" action="/console/signin" {
            div.field {
                label for="token" { "API token" }
                span.hint id="token-hint" {
                    "Your deprovd API token. It is exchanged for a session cookie and never stored in this browser."
                }
                input type="password" id="token" name="token" required autocomplete="off"
                    aria-describedby="token-hint" autofocus;
            }
            div { button type="submit" { "Sign in" } }
        }
    };
    render(layout("Sign in", None, Nav::Other, body))
}

pub(crate) async fn signin_form(signed: Option<Signed>) -> Response {
    if signed.is_some() {
        return Redirect::to("/console").into_response();
    }
    form_page(None)
}

#[derive(Deserialize)]
pub(crate) struct SigninForm {
    token: String,
}

/// The `api_call` record of a sign-in or sign-out.
async fn record(
    s: &ConsoleState,
    caller: &Caller,
    peer: SocketAddr,
    route: &str,
    status: StatusCode,
) -> Result<(), ConsoleError> {
    let store = s.api.store.get().ok_or(ConsoleError::NotReady)?;
    let outcome = if status.is_success() || status.is_redirection() {
        "ok"
    } else {
        "forbidden"
    };
    let d = AuditDraft::new(
        AuditKind::ApiCall,
        caller.actor(peer),
        serde_json::json!({
            "method": "POST",
            "route": route,
            "path": route,
            "query": null,
            "status": status.as_u16(),
            "outcome": outcome,
            "code": null,
            "via": "console",
        }),
    );
    store.append_audit(vec![d]).await?;
    Ok(())
}

pub(crate) async fn signin(
    State(s): State<Arc<ConsoleState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(f): Form<SigninForm>,
) -> Result<Response, ConsoleError> {
    let token = f.token.trim();
    let Some(caller) = s.api.tokens.verify(token) else {
        // Nobody to name, as for a 401 from the API: logged, not recorded in the trail.
        warn!(%peer, "console sign-in with an unknown token");
        let mut r = form_page(Some("That token is not valid."));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(r);
    };
    if caller.role == Role::Ingest {
        record(&s, &caller, peer, "/console/signin", StatusCode::FORBIDDEN).await?;
        let mut r = form_page(Some(
            "Ingest tokens send alerts; they cannot use the console. Use a viewer, responder, approver or admin token.",
        ));
        *r.status_mut() = StatusCode::FORBIDDEN;
        return Ok(r);
    }
    let store = s.api.store.get().ok_or(ConsoleError::NotReady)?;
    let hash = crate::api::hash_token(token);
    let (id, _) =
        session::create(store.as_ref(), caller.clone(), &hash, &s.config, Utc::now()).await?;
    // Nothing is granted unrecorded: without the record there is no cookie.
    record(&s, &caller, peer, "/console/signin", StatusCode::SEE_OTHER).await?;
    info!(caller = %caller.name, role = caller.role.as_str(), %peer, "console sign-in");
    let mut r = Redirect::to("/console").into_response();
    if let Ok(v) = session::set_cookie(&id, &s.config).parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

pub(crate) async fn signout(
    State(s): State<Arc<ConsoleState>>,
    signed: Signed,
) -> Result<Response, ConsoleError> {
    let store = s.api.store.get().ok_or(ConsoleError::NotReady)?;
    session::revoke(store.as_ref(), &signed.session, &s.config).await?;
    record(
        &s,
        &signed.session.caller,
        signed.peer,
        "/console/signout",
        StatusCode::SEE_OTHER,
    )
    .await?;
    let mut r = Redirect::to("/console/signin").into_response();
    if let Ok(v) = session::clear_cookie(&s.config).parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}
