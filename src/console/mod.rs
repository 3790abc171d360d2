//! The responders' console: server-rendered HTML under `/console` on the API's port, shipped inside
//! the binary (no separate server, no CDN, nothing fetched at run time).
//!
//! **Same API, same roles.** Every screen reads and writes by calling the `/v1` router in-process
//! ([`call`]) as the signed-in token's holder ([`crate::api::Delegated`]): the route's role rule,
//! its `api_call` audit record (marked `"via": "console"`), `Idempotency-Key` handling and errors
//! are the API's own, so nothing is possible here that the token cannot do with curl. What the
//! console shows beyond the API's answers is read-only and needs `viewer` (the policy digest, the
//! configured connectors' capabilities for the lockout form).
//!
//! **Sessions** ([`session`]): a deprovd token is exchanged once for a random session id (256 bits
//! from the OS-seeded CSPRNG) in an `HttpOnly; SameSite=Strict; Path=/console` cookie (`Secure`
//! with `[api.tls]` or `[console] secure_cookie`). The session lives in the state store's document space under
//! the SHA-256 of its id, so every replica sharing the store shares sessions; it holds the token's
//! SHA-256 (never the token), and each request finds the holder again in the configured tokens, so
//! a token removed from the config ends its sessions at the next restart. Idle and absolute
//! expiry; sign-out revokes.
//!
//! **CSRF** ([`guard`]): every POST must come from this origin (`Sec-Fetch-Site: same-origin` and
//! `Origin` equal to the `Host`, when the browser sends them) and, once signed in, carry the
//! session's CSRF token in the form. The check runs in one layer before any handler, so no
//! handler can forget it.
//!
//! **Escaping and CSP**: pages are [`maud`] templates, which escape every interpolated value at
//! compile time — alert titles and subjects are attacker-controlled and always render as text.
//! Pages carry a strict Content-Security-Policy (`script-src 'self'`, no inline script or style)
//! and load two files from [`assets`]: one small stylesheet and htmx (vendored, pinned by SHA-256),
//! used only to refresh live status; everything works without JavaScript.
//!
//! Layout: [`session`] (cookies, sessions, CSRF and origin checks), [`call`] (the `/v1` dispatch
//! and [`ConsoleError`]), [`guard`] (the layer every page passes), [`page`] (the layout, shared
//! widgets, charts), [`assets`], and one file per screen group: [`signin`], [`overview`],
//! [`lockout`] (form and confirmation), [`restore`] (live status, action page, restores),
//! [`review`] (approvals, breaker), [`history`] (subject timeline, audit).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::Redirect;
use axum::routing::{get, post};
use serde::Deserialize;

use crate::api::ApiState;
use crate::config::Problem;
use crate::connectors::InstanceConfig;

mod assets;
mod call;
mod guard;
mod history;
mod lockout;
mod overview;
mod page;
mod restore;
mod review;
mod session;
mod signin;

pub(crate) use call::ConsoleError;

/// `[console]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Serve the console (and redirect `/` to it). On by default: it adds no access of its own.
    pub enabled: bool,
    /// A session unused for this long ends.
    #[serde(with = "humantime_serde")]
    pub session_idle: Duration,
    /// A session ends this long after sign-in, however busy.
    #[serde(with = "humantime_serde")]
    pub session_max: Duration,
    /// Mark the session cookie `Secure` (never sent over plain HTTP). Automatic with `[api.tls]`;
    /// set it when a TLS proxy in front serves browsers HTTPS while deprovd itself speaks HTTP.
    pub secure_cookie: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            session_idle: Duration::from_secs(30 * 60),
            session_max: Duration::from_secs(12 * 3600),
            secure_cookie: false,
        }
    }
}

impl ConsoleConfig {
    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        if self.session_idle < Duration::from_secs(60) || self.session_idle > self.session_max {
            problems.push(Problem::new(
                format!("{path}.session_idle"),
                "must be at least 1m and at most session_max",
            ));
        }
        if self.session_max > Duration::from_secs(7 * 24 * 3600) {
            problems.push(Problem::new(
                format!("{path}.session_max"),
                "must be at most 7d: a stolen cookie must not outlive an incident",
            ));
        }
    }
}

/// What every console handler shares.
pub(crate) struct ConsoleState {
    pub(crate) api: Arc<ApiState>,
    /// The `/v1` router every screen calls through (without the console's own routes).
    pub(crate) v1: Router,
    pub(crate) config: ConsoleConfig,
    /// Connector instance → what it calls (`okta at https://…`), for the lockout confirmation.
    pub(crate) targets: BTreeMap<String, String>,
}

/// What each configured connector instance calls, in words: its type and where.
pub(crate) fn targets(connectors: &BTreeMap<String, InstanceConfig>) -> BTreeMap<String, String> {
    connectors
        .iter()
        .map(|(name, c)| {
            let what = match c {
                InstanceConfig::Http(h) => format!("{} at {}", h.kind, h.base_url),
                InstanceConfig::Ldap(l, _) => format!("directory at {}", l.url),
                InstanceConfig::AwsIam(a) => format!("aws_iam at {}", a.endpoint),
            };
            (name.clone(), what)
        })
        .collect()
}

/// The console's routes, to merge beside the API's; `v1` is the API router they call through.
pub(crate) fn router(
    api: Arc<ApiState>,
    v1: Router,
    config: ConsoleConfig,
    targets: BTreeMap<String, String>,
) -> Router {
    if !config.enabled {
        return Router::new();
    }
    let state = Arc::new(ConsoleState {
        api,
        v1,
        config,
        targets,
    });
    let pages = Router::new()
        .route("/console", get(overview::overview))
        .route(
            "/console/",
            get(|| async { Redirect::permanent("/console") }),
        )
        .route(
            "/console/signin",
            get(signin::signin_form).post(signin::signin),
        )
        .route("/console/signout", post(signin::signout))
        .route("/console/lockout", get(lockout::form))
        .route("/console/lockout/confirm", post(lockout::confirm))
        .route("/console/lockouts", post(lockout::create))
        .route("/console/lockouts/{id}", get(restore::status))
        .route("/console/lockouts/{id}/live", get(restore::live))
        .route(
            "/console/lockouts/{id}/restore",
            get(restore::restore_lockout_form).post(restore::restore_lockout),
        )
        .route("/console/actions/{key}", get(restore::action))
        .route(
            "/console/actions/{key}/restore",
            post(restore::restore_action),
        )
        .route("/console/subject", get(history::subject))
        .route("/console/audit", get(history::audit))
        .route("/console/approvals", get(review::approvals))
        .route("/console/approvals/{key}/{verdict}", post(review::decide))
        .route("/console/breaker", get(review::breaker))
        .route("/console/breaker/reset", post(review::reset))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::layer,
        ))
        .with_state(state);
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/console/assets/{name}", get(assets::serve))
        .merge(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_lifetimes_must_be_sane() {
        let mut p = Vec::new();
        ConsoleConfig::default().validate("console", &mut p);
        assert!(p.is_empty(), "{p:?}");
        let bad = ConsoleConfig {
            session_idle: Duration::from_secs(5),
            session_max: Duration::from_secs(30 * 24 * 3600),
            ..ConsoleConfig::default()
        };
        bad.validate("console", &mut p);
        let text: Vec<String> = p.iter().map(|x| x.to_string()).collect();
        assert_eq!(p.len(), 2, "{text:?}");
        assert!(text[0].contains("console.session_idle"));
        assert!(text[1].contains("console.session_max"));
    }
}
