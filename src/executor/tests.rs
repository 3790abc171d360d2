use super::effects::success_notice;
use super::run::merge_pre_state;
use crate::action::Operation;
use crate::ledger::{ActionRecord, ActionState, NewAction, Origin};
use crate::notify::Notice;
use serde_json::json;

fn rec(op: Operation, origin: Origin, reverses: Option<&str>) -> ActionRecord {
    let now = chrono::Utc::now();
    let new = NewAction {
        key: "k2".into(),
        origin,
        rule: "r".into(),
        policy_digest: String::new(),
        subject: "alice@example.com".into(),
        connector: "okta".into(),
        operation: op,
        reason: "x".into(),
    };
    ActionRecord {
        state: ActionState::Succeeded,
        attempts: 1,
        next_attempt_at: None,
        reverses: reverses.map(str::to_string),
        ..ActionRecord::planned(new, now)
    }
}

#[test]
fn success_notices_name_the_lockout_only_when_there_is_one() {
    let manual = |id: &str| Origin::Manual {
        request_id: id.into(),
        actor: "bob".into(),
    };
    let alert = Origin::Alert {
        alert_id: "a1".into(),
        dedup_key: "d".into(),
        alert_time: chrono::Utc::now(),
        severity: None,
    };
    match success_notice(&rec(Operation::DisableAccount, manual("L1"), None)) {
        Some(Notice::LockoutDone { lockout_id, .. }) => {
            assert_eq!(lockout_id.as_deref(), Some("L1"))
        }
        other => panic!("{other:?}"),
    }
    match success_notice(&rec(Operation::RevokeSessions, alert.clone(), None)) {
        Some(Notice::LockoutDone { lockout_id, .. }) => assert_eq!(lockout_id, None),
        other => panic!("{other:?}"),
    }
    match success_notice(&rec(Operation::EnableAccount, manual("L1"), Some("k1"))) {
        Some(Notice::Restored { lockout_id, .. }) => {
            assert_eq!(lockout_id.as_deref(), Some("L1"))
        }
        other => panic!("{other:?}"),
    }
    // A single-action restore uses the original's key as its request id: no lockout.
    match success_notice(&rec(Operation::EnableAccount, manual("k1"), Some("k1"))) {
        Some(Notice::Restored { lockout_id, .. }) => assert_eq!(lockout_id, None),
        other => panic!("{other:?}"),
    }
    assert_eq!(success_notice(&rec(Operation::Notify, alert, None)), None);
}

#[test]
fn pre_state_keeps_the_first_values_and_unions_lists() {
    let first = json!({"active": true, "groups": [{"id": "a"}, {"id": "b"}]});
    let retry = json!({"active": false, "groups": [{"id": "c"}, {"id": "a"}], "id": "u1"});
    let merged = merge_pre_state(Some(first), Some(retry)).unwrap();
    assert_eq!(merged["active"], true, "state before any change wins");
    assert_eq!(
        merged["groups"],
        json!([{"id": "a"}, {"id": "b"}, {"id": "c"}])
    );
    assert_eq!(merged["id"], "u1");
    assert_eq!(merge_pre_state(None, Some(json!(1))), Some(json!(1)));
    assert_eq!(merge_pre_state(Some(json!(1)), None), Some(json!(1)));
}
