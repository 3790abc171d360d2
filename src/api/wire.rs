//! Query strings, bodies and answers of the API's routes. Every type here derives `JsonSchema`:
//! the OpenAPI document ([`super::openapi`]) is generated from them, so what a handler serializes
//! and what the document promises cannot drift apart.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use axum::http::StatusCode;

use super::ApiError;
use crate::audit::AuditRecord;
use crate::ledger::{ActionRecord, ActionState, BreakerState};
use crate::pipeline::{Processed, RejectedPart};

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct AlertQuery {
    /// Alert format; `auto` (default) detects it.
    pub format: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct ActionsQuery {
    /// Subject (the canonical spelling is applied).
    pub subject: Option<String>,
    /// Actions in this state.
    pub state: Option<ActionState>,
    /// The alert that caused them or was coalesced into them.
    pub alert_id: Option<String>,
    /// A connector instance.
    pub connector: Option<String>,
    /// RFC 3339: actions created at or after.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Actions whose key starts with this (lower-case hex).
    pub key_prefix: Option<String>,
    /// Most actions returned (default 100, at most 1000).
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
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

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    /// Records about this subject.
    pub subject: Option<String>,
    /// Records about this alert.
    pub alert_id: Option<String>,
    /// Records about this action.
    pub action_key: Option<String>,
    /// RFC 3339; records at or after.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// RFC 3339; records at or before.
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Most records returned (default 100, at most 1000).
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct ApprovalsQuery {
    /// Most held actions returned (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// Optional body of approve / reject.
#[derive(Debug, Default, Deserialize, JsonSchema)]
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

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResetBody {
    /// `global` or a connector instance; absent: every scope.
    pub scope: Option<String>,
}

/// `GET /v1/actions`: matching actions, newest first.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "Actions")]
pub(crate) struct ActionList {
    pub actions: Vec<ActionRecord>,
}

/// `GET /v1/approvals`: actions awaiting approval, newest first, each with `requested_by` and
/// `expires_at`.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "Approvals")]
pub(crate) struct ApprovalList {
    pub approvals: Vec<ActionRecord>,
}

/// `GET /v1/breaker`: the blast-radius breaker, scope by scope.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "Breaker")]
pub(crate) struct BreakerView {
    /// Whether `[guards.breaker]` is configured at all.
    pub enabled: bool,
    /// Whether any scope is open (automatic actions wait for approval).
    pub open: bool,
    pub scopes: Vec<BreakerState>,
}

/// `POST /v1/breaker/reset`: which scopes were open, and every scope after the reset.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct BreakerReset {
    pub was_open: Vec<String>,
    pub scopes: Vec<BreakerState>,
}

/// `GET /v1/audit`: matching records, newest first.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct AuditPage {
    pub records: Vec<AuditRecord>,
    /// `false` when the bounded scan stopped before the start of the trail: narrow the time
    /// range (`until`) to look further back.
    pub complete: bool,
}

/// `GET /v1/audit/verify`: the stored chain checked from its first record.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct AuditVerdict {
    /// Every link and the head check out.
    pub intact: bool,
    /// Records verified; `null` when the chain is broken.
    pub verified: Option<u64>,
    /// The first bad record and how it was tampered with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The `202` answer of `POST /v1/alerts`: one alert, or — for an envelope of several documents
/// (an Okta event hook) — every alert taken and every document refused.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum AlertAnswer {
    One(Processed),
    Many(DeliveryAccepted),
}

/// The answer to an envelope of several documents.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct DeliveryAccepted {
    pub alerts: Vec<Processed>,
    pub rejected: Vec<RejectedPart>,
}

/// `GET /v1/alerts`: Okta's event hook verification, the challenge echoed.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct OktaVerification {
    pub verification: String,
}

/// An RFC 8935 error (`POST /v1/ssf/{receiver}` answers in this shape, not `{code, message}`: the
/// caller is a SET transmitter).
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct SetError {
    pub err: String,
    pub description: String,
}
