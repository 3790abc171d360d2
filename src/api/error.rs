//! JSON errors with a stable `code`: `{"code": "...", "message": "..."}`.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::lockout::LockoutError;

/// Every refusal of the API (but Shared Signals push, which answers in RFC 8935's shape).
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[schemars(rename = "Error")]
pub(crate) struct ErrorBody {
    /// Stable: branch on this.
    code: &'static str,
    /// For people: what failed and what to do.
    message: String,
}

/// An error response with a stable `code`.
pub(crate) struct ApiError(pub StatusCode, pub &'static str, pub String);

/// The `code` of an error response, left in the response's extensions for the audit layer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorCode(pub &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.0,
            Json(ErrorBody {
                code: self.1,
                message: self.2,
            }),
        )
            .into_response();
        r.extensions_mut().insert(ErrorCode(self.1));
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

impl From<LockoutError> for ApiError {
    fn from(e: LockoutError) -> Self {
        let status = match &e {
            LockoutError::Invalid { .. } | LockoutError::IdempotencyKeyReused(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            LockoutError::NotFound(_) => StatusCode::NOT_FOUND,
            LockoutError::NotRestorable(_) | LockoutError::NotRetryable(_) => StatusCode::CONFLICT,
            LockoutError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(status, e.code(), e.to_string())
    }
}

impl From<crate::approval::ApprovalError> for ApiError {
    fn from(e: crate::approval::ApprovalError) -> Self {
        use crate::approval::ApprovalError as E;
        let status = match &e {
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::SelfApproval(_) => StatusCode::FORBIDDEN,
            E::Expired(_) | E::NotAwaiting { .. } | E::Busy(_) => StatusCode::CONFLICT,
            E::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(status, e.code(), e.to_string())
    }
}

/// A query string that does not parse: 400 `bad_query` as JSON, like every other refusal (axum's
/// own rejection is plain text).
pub(crate) fn bad_query(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, "bad_query", e.body_text())
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        e.to_string(),
    )
}
