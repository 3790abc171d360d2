//! The one behaviour suite every [`StateStore`] must pass. Each case gets a fresh, empty store; the
//! backends' test modules run every case through [`for_each_case!`], so a case added here runs against
//! both backends. One file per narrow store trait.
//!
//! Cases take `Arc<dyn StateStore>` (rather than `&dyn`) so that the concurrency cases can hand the
//! store to spawned tasks; the others only borrow it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

mod actions;
mod alerts;
mod audit;
mod breaker;
mod docs;
mod transition;

pub(crate) use actions::*;
pub(crate) use alerts::*;
pub(crate) use audit::*;
pub(crate) use breaker::*;
pub(crate) use docs::*;
pub(crate) use transition::*;

use crate::action::Operation;
use crate::ledger::{
    ActionFilter, ActionRecord, ActionState, BreakerScope, Inserted, NewAction, Origin, StateStore,
    action_key,
};

/// Calls `$m!` with the name of every case.
macro_rules! for_each_case {
    ($m:ident) => {
        $m!(
            ping_and_missing_get,
            insert_new_then_duplicate_leaves_record_unchanged,
            live_action_coalesces_later_alert_and_links_it,
            held_action_absorbs_held_ones_but_a_runnable_one_supersedes_it,
            non_absorbing_new_action_takes_no_coalesce_slot,
            failed_action_frees_its_coalesce_slot,
            succeeded_action_keeps_its_coalesce_slot,
            action_that_does_not_hold_the_slot_cannot_free_it,
            coalesce_slot_expires_after_the_window,
            due_index_orders_earliest_first_and_follows_state,
            next_due_at_tracks_the_earliest_due_action,
            claim_is_exclusive_and_released_only_by_its_owner,
            claim_expires_after_its_ttl,
            lanes_claim_per_connector_most_urgent_first,
            list_filters_newest_first,
            pending_count_follows_state,
            put_of_an_unknown_action_is_an_error,
            transition_writes_state_and_audit_and_releases_the_claim,
            transition_of_an_unknown_action_is_an_error,
            concurrent_transitions_and_appends_form_one_chain,
            concurrent_inserts_of_one_key_yield_exactly_one_new,
            concurrent_alerts_for_one_subject_coalesce_into_one_action,
            huge_window_and_ttl_are_accepted,
            json_documents_round_trip_and_nx_keeps_the_first,
            json_document_expires_after_its_ttl,
            concurrent_nx_puts_of_one_document_have_one_winner,
            audit_appends_chain_from_genesis,
            audit_batch_is_consecutive_and_range_reads_page,
            concurrent_audit_appends_form_one_valid_chain,
            breaker_trips_once_when_distinct_subjects_exceed_the_threshold,
            breaker_window_forgets_subjects_admitted_before_it,
            breaker_reset_closes_and_empties_the_window,
            concurrent_admissions_trip_the_breaker_exactly_once,
            retained_alerts_page_oldest_first_from_since,
            pruning_forgets_alerts_received_before_the_cutoff,
        );
    };
}
pub(crate) use for_each_case;

/// Insert `a` with coalescing `window` (for `alert`) and assert the store's answer.
pub(crate) async fn assert_insert(
    store: &dyn StateStore,
    a: &ActionRecord,
    window: Duration,
    alert: Option<&str>,
    expected: Inserted,
) {
    assert_eq!(
        store.insert_action(a, window, alert).await.unwrap(),
        expected,
        "insert_action({})",
        a.key
    );
}

/// Insert `a` with coalescing `window` (for `alert`) and assert that `holder` absorbs it.
pub(crate) async fn assert_coalesced(
    store: &dyn StateStore,
    a: &ActionRecord,
    window: Duration,
    alert: Option<&str>,
    holder: &ActionRecord,
) {
    let expected = Inserted::Coalesced(holder.key.clone());
    assert_insert(store, a, window, alert, expected).await;
}

/// A long window: nothing in a test expires by accident.
pub(crate) const LONG: Duration = Duration::from_secs(600);

/// `t` truncated to whole milliseconds (index precision), so equality after a round trip is exact.
fn ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(t.timestamp_millis()).unwrap()
}

/// A planned `disable_account` on okta for `subject`, caused by alert `alert-{name}`, due at
/// `created`. Its key depends only on `name` and `subject`; records for the same subject share a
/// coalesce key. `pre_state` holds an empty array and a long float, which a store that re-encodes
/// records (e.g. through Lua's cjson) would mangle.
pub(crate) fn record(name: &str, subject: &str, created: DateTime<Utc>) -> ActionRecord {
    let created = ms(created);
    let new = NewAction {
        key: action_key(name, "rule-1", "okta", Operation::DisableAccount, subject),
        origin: Origin::Alert {
            alert_id: format!("alert-{name}"),
            dedup_key: name.to_string(),
            alert_time: created,
            severity: None,
        },
        rule: "rule-1".into(),
        policy_digest: "sha256:0123".into(),
        subject: subject.to_string(),
        connector: "okta".into(),
        operation: Operation::DisableAccount,
        reason: "impossible travel".into(),
    };
    ActionRecord {
        pre_state: Some(
            serde_json::json!({"groups": [], "status": "ACTIVE", "score": 0.123_456_789_012_345_6}),
        ),
        note: Some("ünïcödé ✓".into()),
        ..ActionRecord::planned(new, created)
    }
}

/// Poll `f` until it returns true or `within` passes (then fail with `what`).
async fn eventually<F, Fut>(within: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if f().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn keys(v: &[ActionRecord]) -> Vec<&str> {
    v.iter().map(|a| a.key.as_str()).collect()
}
