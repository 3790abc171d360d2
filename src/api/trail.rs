//! `GET /v1/audit` (viewer): matching records of the trail, newest first, with a bounded scan;
//! `GET /v1/audit/verify` (viewer): the whole chain checked, as `deprovd audit verify` does.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::wire::{AuditPage, AuditQuery, AuditVerdict};
use super::{ApiError, ApiState, Caller, store_of};
use crate::audit::{AuditFilter, AuditRecord};

/// Records read per page while walking the trail backwards.
const AUDIT_PAGE: u64 = 256;
/// Most records one `GET /v1/audit` examines: the trail grows without bound and has no secondary
/// indexes, so a filter that matches little must not scan it all. `complete: false` says the scan
/// stopped here; narrow the time range (`until`) to look further back.
const AUDIT_SCAN_CAP: u64 = 20_000;
/// Records are appended in roughly time order (replica clocks and batching blur it a little), so the
/// backwards walk stops this long before `since`.
const AUDIT_CLOCK_SLACK_SECS: i64 = 60;

/// `GET /v1/audit`: matching records, newest first.
pub(super) async fn list_audit(
    State(s): State<Arc<ApiState>>,
    _caller: Caller,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("{e}; use subject, alert_id, action_key, since/until (RFC 3339) and limit"),
        )
    })?;
    let store = store_of(&s)?;
    let unavailable = |e: crate::ledger::StoreError| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let filter = AuditFilter {
        subject: q.subject.map(|s| crate::plan::normalize_subject(&s)),
        alert_id: q.alert_id,
        action_key: q.action_key,
        since: q.since,
        until: q.until,
    };
    let mut out: Vec<AuditRecord> = Vec::new();
    let mut complete = true;
    let mut end = store
        .audit_head()
        .await
        .map_err(unavailable)?
        .map_or(0, |h| h.seq);
    let mut scanned = 0u64;
    'walk: while end > 0 {
        if scanned >= AUDIT_SCAN_CAP {
            complete = false;
            break;
        }
        let start = end.saturating_sub(AUDIT_PAGE - 1).max(1);
        let page = store
            .audit_range(start, (end - start + 1) as usize)
            .await
            .map_err(unavailable)?;
        for r in page.iter().rev() {
            scanned += 1;
            if filter
                .since
                .is_some_and(|t| r.time < t - chrono::Duration::seconds(AUDIT_CLOCK_SLACK_SECS))
            {
                break 'walk;
            }
            if filter.matches(r) {
                out.push(r.clone());
                if out.len() >= limit {
                    break 'walk;
                }
            }
        }
        end = start - 1;
    }
    Ok(Json(AuditPage {
        records: out,
        complete,
    })
    .into_response())
}

/// `GET /v1/audit/verify`: walk the whole trail and check every link and the head, as `deprovd audit
/// verify` does (page by page; memory stays flat). `{"intact": true, "verified": n}` or
/// `{"intact": false, "verified": null, "error": "..."}` naming the first bad record.
pub(super) async fn verify_audit(
    State(s): State<Arc<ApiState>>,
    _caller: Caller,
) -> Result<Response, ApiError> {
    let store = store_of(&s)?;
    let checked = crate::ledger::audit_check(store.as_ref(), None)
        .await
        .map_err(super::error::unavailable)?;
    Ok(Json(match checked {
        Ok(n) => AuditVerdict {
            intact: true,
            verified: Some(n),
            error: None,
        },
        Err(e) => AuditVerdict {
            intact: false,
            verified: None,
            error: Some(e.to_string()),
        },
    })
    .into_response())
}
