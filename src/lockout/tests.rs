use std::collections::BTreeSet;

use super::restore::{Plan, reversal_for};
use super::*;

fn caps() -> BTreeMap<String, BTreeSet<Operation>> {
    BTreeMap::from([
        (
            "okta".to_string(),
            BTreeSet::from([
                Operation::DisableAccount,
                Operation::EnableAccount,
                Operation::RevokeSessions,
            ]),
        ),
        (
            "scim".to_string(),
            BTreeSet::from([
                Operation::DisableAccount,
                Operation::EnableAccount,
                Operation::RemoveGroupMemberships,
            ]),
        ),
        ("hook".to_string(), BTreeSet::from([Operation::Notify])),
    ])
}

fn req() -> LockoutRequest {
    LockoutRequest {
        subject: " Alice@Corp.Example ".into(),
        connectors: None,
        operations: None,
        reason: "phished".into(),
        ticket: Some("INC-1".into()),
        require_approval: false,
    }
}

fn ops(actions: &[ActionRecord]) -> Vec<(String, Operation)> {
    actions
        .iter()
        .map(|a| (a.connector.clone(), a.operation))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[test]
fn default_lockout_disables_and_revokes_wherever_supported() {
    let a = plan(&caps(), &req(), "id-1", "alice-responder", Utc::now()).unwrap();
    assert_eq!(
        ops(&a),
        vec![
            ("okta".into(), Operation::DisableAccount),
            ("okta".into(), Operation::RevokeSessions),
            ("scim".into(), Operation::DisableAccount),
        ]
    );
    for x in &a {
        assert_eq!(x.subject, "alice@corp.example");
        assert_eq!(x.rule, MANUAL_RULE);
        assert_eq!(x.state, ActionState::Planned);
        assert!(matches!(&x.origin, Origin::Manual { request_id, actor }
            if request_id == "id-1" && actor == "alice-responder"));
    }
}

#[test]
fn keys_derive_from_the_request_id() {
    let now = Utc::now();
    let a = plan(&caps(), &req(), "id-1", "r", now).unwrap();
    let again = plan(&caps(), &req(), "id-1", "r", now).unwrap();
    let other = plan(&caps(), &req(), "id-2", "r", now).unwrap();
    let keys = |v: &[ActionRecord]| v.iter().map(|a| a.key.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&a), keys(&again));
    assert!(keys(&a).iter().all(|k| !keys(&other).contains(k)));
}

#[test]
fn bad_requests_are_refused_with_stable_codes() {
    let now = Utc::now();
    let code = |r: LockoutRequest| plan(&caps(), &r, "i", "r", now).unwrap_err().code();
    let mut r = req();
    r.connectors = Some(vec!["okta-typo".into()]);
    assert_eq!(code(r), "unknown_connector");
    let mut r = req();
    r.connectors = Some(vec!["scim".into()]);
    r.operations = Some(vec![Operation::RevokeSessions]);
    assert_eq!(code(r), "unsupported_operation");
    let mut r = req();
    r.connectors = Some(vec!["hook".into()]);
    assert_eq!(code(r), "nothing_to_do");
    let mut r = req();
    r.operations = Some(vec![Operation::EnableAccount]);
    assert_eq!(code(r), "invalid_operation");
    let mut r = req();
    r.reason = "  ".into();
    assert_eq!(code(r), "invalid_request");
    let mut r = req();
    r.subject = String::new();
    assert_eq!(code(r), "invalid_request");
    for bad in ["breakglass\0", "break\u{200B}glass"] {
        let mut r = req();
        r.subject = bad.into();
        assert_eq!(code(r), "invalid_subject", "{bad:?}");
    }
    let mut r = req();
    r.subject = "a".repeat(crate::identity::MAX_SUBJECT_BYTES + 1);
    assert_eq!(code(r), "invalid_subject");
}

#[test]
fn explicit_connector_with_default_operations_skips_what_it_cannot_do() {
    let mut r = req();
    r.connectors = Some(vec!["scim".into()]);
    let a = plan(&caps(), &r, "i", "r", Utc::now()).unwrap();
    assert_eq!(ops(&a), vec![("scim".into(), Operation::DisableAccount)]);
}

#[test]
fn reversal_carries_pre_state_and_a_key_derived_from_the_original() {
    let mut o = plan(&caps(), &req(), "i", "r", Utc::now())
        .unwrap()
        .remove(0);
    o.state = ActionState::Succeeded;
    o.pre_state = Some(serde_json::json!({"prior_active": true}));
    let Plan::Reverse(r) = reversal_for(&o, "i", "bob") else {
        panic!("succeeded disable must be reversible");
    };
    assert_eq!(r.operation, Operation::EnableAccount);
    assert_eq!(r.reverses.as_deref(), Some(o.key.as_str()));
    assert_eq!(r.pre_state, o.pre_state);
    let Plan::Reverse(again) = reversal_for(&o, "other-request", "carol") else {
        panic!()
    };
    assert_eq!(r.key, again.key, "restore is idempotent whoever asks");
    o.state = ActionState::Running;
    assert!(matches!(reversal_for(&o, "i", "bob"), Plan::Report(_)));
    o.state = ActionState::Succeeded;
    o.operation = Operation::RevokeSessions;
    assert!(matches!(reversal_for(&o, "i", "bob"), Plan::Report(_)));
}

#[test]
fn fingerprint_ignores_formatting_but_not_content() {
    let a: LockoutRequest = serde_json::from_str(r#"{"subject":"a@b.c","reason":"r"}"#).unwrap();
    let b: LockoutRequest =
        serde_json::from_str("{ \"reason\": \"r\",\n \"subject\": \"a@b.c\" }").unwrap();
    let c: LockoutRequest =
        serde_json::from_str(r#"{"subject":"a@b.c","reason":"other"}"#).unwrap();
    assert_eq!(a.fingerprint(), b.fingerprint());
    assert_ne!(a.fingerprint(), c.fingerprint());
    assert!(
        serde_json::from_str::<LockoutRequest>(r#"{"subject":"a","reason":"r","x":1}"#).is_err()
    );
}
