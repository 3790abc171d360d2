//! The one layer in front of every console page: security headers on every answer; on every POST the
//! same-origin check and (once signed in) the session's CSRF token; the session found from its
//! cookie and handed to handlers as [`Signed`]. Handlers cannot skip any of it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;

use super::session::{self, CsrfError, Session};
use super::{ConsoleError, ConsoleState};

/// The page's Content-Security-Policy: only this origin's script and style files, no inline script
/// or style, no framing, no `<base>`, forms only to this origin.
pub(crate) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'";

/// Largest console form body (a lockout form is well under 4 KiB).
const MAX_FORM: usize = 64 * 1024;

/// The signed-in caller of a console request, and where the request came from.
#[derive(Debug, Clone)]
pub(crate) struct Signed {
    pub(crate) session: Session,
    pub(crate) peer: SocketAddr,
}

impl Signed {
    /// Whether this caller's role may call `method route` of the `/v1` API (what a screen offers).
    pub(crate) fn may(&self, method: &Method, route: &str) -> bool {
        crate::api::access(method, route).is_some_and(|a| self.session.caller.role.allows(a.role))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Signed>()
            .cloned()
            .ok_or_else(|| Redirect::to("/console/signin").into_response())
    }
}

pub(crate) async fn layer(
    State(s): State<Arc<ConsoleState>>,
    req: Request,
    next: Next,
) -> Response {
    let mut response = match checked(&s, req).await {
        Ok(req) => next.run(req).await,
        Err(refusal) => refusal,
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The request with its [`Signed`] caller, or the answer that refuses it.
async fn checked(s: &ConsoleState, req: Request) -> Result<Request, Response> {
    let (mut parts, body) = req.into_parts();
    let peer = crate::api::caller::peer(&parts);
    let post = parts.method == Method::POST;
    if post {
        session::same_origin(&parts.headers)
            .map_err(|e| ConsoleError::Refused(e).into_response())?;
    }
    let store = s
        .api
        .store
        .get()
        .cloned()
        .ok_or_else(|| ConsoleError::NotReady.into_response())?;
    let found = match session::cookie(&parts.headers) {
        Some(id) => session::load(store.as_ref(), &s.api.tokens, &id, &s.config, Utc::now())
            .await
            .map_err(|e| ConsoleError::Store(e).into_response())?,
        None => None,
    };
    let mut body = body;
    if post && parts.uri.path() != "/console/signin" {
        let Some(session) = &found else {
            return Err(Redirect::to("/console/signin").into_response());
        };
        let bytes = axum::body::to_bytes(body, MAX_FORM)
            .await
            .map_err(|_| ConsoleError::Refused(CsrfError::Token).into_response())?;
        let presented = form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if !session.csrf_matches(&presented) {
            return Err(ConsoleError::Refused(CsrfError::Token).into_response());
        }
        body = Body::from(bytes);
    }
    if let Some(session) = found {
        parts.extensions.insert(Signed { session, peer });
    }
    Ok(Request::from_parts(parts, body))
}

impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for Signed {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Signed>().cloned())
    }
}
