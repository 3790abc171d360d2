//! Query strings and bodies of the API's routes.

use serde::Deserialize;

use axum::http::StatusCode;

use super::ApiError;
use crate::ledger::ActionState;

#[derive(Debug, Deserialize)]
pub(crate) struct AlertQuery {
    /// Alert format; `auto` (default) detects it.
    pub format: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ActionsQuery {
    pub subject: Option<String>,
    pub state: Option<ActionState>,
    pub alert_id: Option<String>,
    /// A connector instance.
    pub connector: Option<String>,
    /// RFC 3339: actions created at or after.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Actions whose key starts with this (lower-case hex).
    pub key_prefix: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LockoutsQuery {
    /// Most lockouts returned (default 50, at most 200).
    pub limit: Option<usize>,
    /// The `next` of the previous page: only lockouts older than this id.
    pub before: Option<String>,
    /// Lockouts whose id starts with this.
    pub id_prefix: Option<String>,
    /// Lockouts of this subject.
    pub subject: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    pub subject: Option<String>,
    pub alert_id: Option<String>,
    pub action_key: Option<String>,
    /// RFC 3339; records at or after.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// RFC 3339; records at or before.
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Most records returned (default 100, at most 1000).
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ApprovalsQuery {
    pub limit: Option<usize>,
}

/// Optional body of approve / reject.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecisionBody {
    pub comment: Option<String>,
}

/// An optional JSON body: empty means the default.
pub(crate) fn optional_body<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
    shape: &str,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    crate::json::from_slice_as(body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("body must be empty or JSON {shape}: {e}"),
        )
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResetBody {
    /// `global` or a connector instance; absent: every scope.
    pub scope: Option<String>,
}
