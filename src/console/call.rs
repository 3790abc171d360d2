//! Calling the `/v1` API in-process as the signed-in caller, and the console's error type.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::de::DeserializeOwned;
use tower::ServiceExt;

use super::ConsoleState;
use super::guard::Signed;
use crate::api::{Caller, Delegated};

/// Why a console page could not be served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConsoleError {
    /// The API refused or failed the call; its status, stable code and message are shown as is.
    #[error("{message}")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
    },
    /// The API's answer did not have the shape this page expects (a bug, not a user error).
    #[error("unexpected answer from {route}: {reason}")]
    Decode { route: String, reason: String },
    /// The state store (sessions) is not reachable.
    #[error("state store unavailable: {0}")]
    Store(#[from] crate::ledger::StoreError),
    /// deprovd is starting: the store or the pipeline is not up yet.
    #[error("deprovd is starting; try again in a moment")]
    NotReady,
    /// The request itself is not acceptable (a cross-site POST, a bad CSRF token).
    #[error("{0}")]
    Refused(#[from] super::session::CsrfError),
    /// The caller's role may not use this screen's action.
    #[error("role `{role}` may not do this; it needs `{needed}`")]
    Forbidden {
        role: &'static str,
        needed: &'static str,
    },
}

impl ConsoleError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ConsoleError::Api { status, .. } => *status,
            ConsoleError::Decode { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            ConsoleError::Store(_) | ConsoleError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            ConsoleError::Refused(_) | ConsoleError::Forbidden { .. } => StatusCode::FORBIDDEN,
        }
    }
}

/// Characters escaped in one path segment (ids, keys): everything but unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `value` as one URL path segment.
pub(crate) fn seg(value: &str) -> String {
    utf8_percent_encode(value, SEGMENT).to_string()
}

/// `pairs` as a query string (`a=1&b=x%20y`), skipping empty values.
pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            q.append_pair(k, v);
        }
    }
    q.finish()
}

/// Largest `/v1` answer a page reads (1,000 actions is well under it).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// One call to the `/v1` router as `caller`, from `peer`: the API's roles and `api_call` audit
/// record apply exactly as for a bearer call. `Ok` only for a 2xx answer, decoded as `T`.
async fn v1<T: DeserializeOwned>(
    router: &Router,
    caller: &Caller,
    peer: SocketAddr,
    method: Method,
    uri: &str,
    body: Option<serde_json::Value>,
    idempotency_key: Option<&str>,
) -> Result<T, ConsoleError> {
    let mut req = Request::builder().method(method).uri(uri);
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    if let Some(k) = idempotency_key {
        req = req.header("idempotency-key", k);
    }
    let body = match body {
        Some(b) => Body::from(serde_json::to_vec(&b).unwrap_or_default()),
        None => Body::empty(),
    };
    let mut req = req.body(body).map_err(|e| ConsoleError::Decode {
        route: uri.to_string(),
        reason: e.to_string(),
    })?;
    req.extensions_mut().insert(Delegated(caller.clone()));
    req.extensions_mut().insert(ConnectInfo(peer));
    let answer = match router.clone().oneshot(req).await {
        Ok(a) => a,
        Err(never) => match never {},
    };
    let status = answer.status();
    let bytes = axum::body::to_bytes(answer.into_body(), MAX_ANSWER)
        .await
        .map_err(|e| ConsoleError::Decode {
            route: uri.to_string(),
            reason: e.to_string(),
        })?;
    if !status.is_success() {
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        return Err(ConsoleError::Api {
            status,
            code: v["code"].as_str().unwrap_or("error").to_string(),
            message: v["message"]
                .as_str()
                .map_or_else(|| status.to_string(), str::to_string),
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| ConsoleError::Decode {
        route: uri.to_string(),
        reason: e.to_string(),
    })
}

/// `GET uri` from the `/v1` API as the signed-in caller (see [`v1`]).
pub(crate) async fn get<T: DeserializeOwned>(
    s: &ConsoleState,
    signed: &Signed,
    uri: &str,
) -> Result<T, ConsoleError> {
    v1(
        &s.v1,
        &signed.session.caller,
        signed.peer,
        Method::GET,
        uri,
        None,
        None,
    )
    .await
}

/// `POST uri` (with an optional JSON `body` and idempotency key) to the `/v1` API as the
/// signed-in caller (see [`v1`]).
pub(crate) async fn post<T: DeserializeOwned>(
    s: &ConsoleState,
    signed: &Signed,
    uri: &str,
    body: Option<serde_json::Value>,
    idempotency_key: Option<&str>,
) -> Result<T, ConsoleError> {
    v1(
        &s.v1,
        &signed.session.caller,
        signed.peer,
        Method::POST,
        uri,
        body,
        idempotency_key,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_filters_are_encoded_never_spliced() {
        assert_eq!(seg("a/b?c#d"), "a%2Fb%3Fc%23d");
        assert_eq!(seg("0192-ab_c.d~"), "0192-ab_c.d~");
        assert_eq!(
            query(&[("subject", "CORP\\jdoe&x=1"), ("state", ""), ("limit", "5")]),
            "subject=CORP%5Cjdoe%26x%3D1&limit=5"
        );
    }
}
