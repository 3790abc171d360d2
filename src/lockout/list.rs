//! Listing lockouts (`GET /v1/lockouts`, `deprovd lockouts`): newest first, a page at a time.
//!
//! Lockouts are found through their actions: every action a lockout records carries its request id
//! (`Origin::Manual`) and the rule `manual`, and the ledger lists actions newest first. A lockout
//! whose every action was absorbed by a live action for the same subject recorded none of its own and
//! is not listed (`deprovd status ID` still shows it).

use serde::{Deserialize, Serialize};

use super::{Lockout, LockoutError, MANUAL_RULE};
use crate::ledger::{ActionFilter, ActionStore, DocStore, Origin};

/// Most lockouts one page holds.
pub(crate) const MAX_PAGE: usize = 200;
/// Actions examined per page asked for: a lockout is a few actions (operations × connectors).
const ACTIONS_PER_LOCKOUT: usize = 16;

/// One page of lockouts, newest first; `next` is the `before` of the following page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LockoutPage {
    pub lockouts: Vec<Lockout>,
    /// Pass as `before` to get the next (older) page; absent on the last page.
    pub next: Option<String>,
}

/// Which lockouts to list.
#[derive(Debug, Clone, Default)]
pub(crate) struct LockoutQuery {
    /// Most lockouts returned (1..=[`MAX_PAGE`]).
    pub limit: usize,
    /// Only lockouts older than this id (ids are UUIDv7, so they sort by creation time).
    pub before: Option<String>,
    /// Only lockouts whose id starts with this: how the CLI finds one by a short prefix.
    pub id_prefix: Option<String>,
    /// Only lockouts of this subject (canonical spelling).
    pub subject: Option<String>,
}

/// Lockouts matching `q`, newest first.
pub(crate) async fn list(
    store: &(impl ActionStore + DocStore + ?Sized),
    q: &LockoutQuery,
) -> Result<LockoutPage, LockoutError> {
    let limit = q.limit.clamp(1, MAX_PAGE);
    let actions = store
        .list_actions(&ActionFilter {
            rule: Some(MANUAL_RULE.to_string()),
            subject: q.subject.clone(),
            limit: (limit + 1) * ACTIONS_PER_LOCKOUT,
            ..ActionFilter::default()
        })
        .await?;
    let mut ids: Vec<String> = Vec::new();
    for a in &actions {
        let Origin::Manual { request_id, .. } = &a.origin else {
            continue;
        };
        if q.before
            .as_deref()
            .is_some_and(|b| request_id.as_str() >= b)
            || q.id_prefix
                .as_deref()
                .is_some_and(|p| !request_id.starts_with(p))
            || ids.contains(request_id)
        {
            continue;
        }
        ids.push(request_id.clone());
    }
    // Newest first by id (UUIDv7), whatever order the actions were updated in.
    ids.sort_by(|a, b| b.cmp(a));
    let more = ids.len() > limit;
    ids.truncate(limit);
    let mut lockouts = Vec::with_capacity(ids.len());
    for id in &ids {
        match super::get(store, id).await {
            Ok(l) => lockouts.push(l),
            // Actions recorded, document not (a crash in between): nothing to show.
            Err(LockoutError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(LockoutPage {
        next: more.then(|| ids.last().cloned()).flatten(),
        lockouts,
    })
}
