//! The `aws_iam` connector against a real moto IAM server with SigV4 checking on (see `moto.rs`). Effects
//! are observed with a separate read-only identity (`auditor`) and with the victim's own access key.

use std::collections::BTreeMap;
use std::sync::Arc;

use deprovd::{
    AwsIamConfig, Connector, IAM_DENY_POLICY_NAME, IAM_REVOKE_POLICY_NAME, IamClient,
    InstanceConfig, Memberships, Operation, Outcome, build_aws_iam_connector, build_connectors,
};
use serde_json::Value;

use crate::kit::connector::{RunExt, request};
use crate::moto::{self, ALICE_GROUPS, ALICE_POLICY, Key, Moto};

fn connector(server: &Moto, key: &Key) -> Arc<dyn Connector> {
    let cfg: AwsIamConfig = toml::from_str(&server.connector_toml(key)).expect("config parses");
    build_aws_iam_connector("aws", &cfg).unwrap_or_else(|p| panic!("connector builds: {p:?}"))
}

/// What an independent observer sees of alice.
#[derive(Debug, PartialEq)]
struct Snapshot {
    keys: Vec<(String, String)>,
    policies: Vec<String>,
    login_profile: bool,
}

async fn snapshot(auditor: &IamClient, user: &str) -> Snapshot {
    let mut keys: Vec<(String, String)> = auditor
        .list_access_keys(user)
        .await
        .expect("auditor lists keys")
        .into_iter()
        .map(|k| (k.access_key_id, k.status))
        .collect();
    keys.sort();
    let mut policies = auditor
        .list_user_policies(user)
        .await
        .expect("auditor lists inline policies");
    policies.sort();
    let login_profile = auditor
        .has_login_profile(user)
        .await
        .expect("auditor reads the login profile");
    Snapshot {
        keys,
        policies,
        login_profile,
    }
}

#[tokio::test]
async fn moto_refuses_requests_signed_with_a_wrong_secret() {
    let server = Moto::start().await;
    // Proof that authentication is really on: the right key id with a wrong secret is refused.
    let forged = moto::client(
        &server.endpoint,
        &Key {
            id: server.deprovd.id.clone(),
            secret: "not-the-secret".into(),
        },
    );
    let err = forged
        .get_user("alice")
        .await
        .expect_err("forged signature refused");
    assert_eq!(err.code(), Some("SignatureDoesNotMatch"), "{err}");
    let unknown = moto::client(
        &server.endpoint,
        &Key {
            id: "AKIAUNKNOWN000000000".into(),
            secret: "x".into(),
        },
    );
    let err = unknown
        .get_user("alice")
        .await
        .expect_err("unknown key refused");
    assert_eq!(err.code(), Some("InvalidClientTokenId"), "{err}");
    // And correctly signed requests pass.
    assert!(
        moto::client(&server.endpoint, &server.deprovd)
            .get_user("alice")
            .await
            .expect("signed request accepted")
            .is_some()
    );

    // Through the connector: terminal failures with the fix, and a failing preflight.
    let bad = connector(
        &server,
        &Key {
            id: server.deprovd.id.clone(),
            secret: "not-the-secret".into(),
        },
    );
    let r = bad
        .execute(&request(Operation::DisableAccount, "alice", None))
        .await;
    let Outcome::Failed { reason } = &r.outcome else {
        panic!("wrong secret must fail terminally: {r:?}");
    };
    assert!(
        reason.contains("SignatureDoesNotMatch") && reason.contains("fix:"),
        "{reason}"
    );
    let report = bad.check().await;
    assert!(!report.ok, "{report:?}");
    assert!(report.fix.is_some_and(|f| f.contains("secret_access_key")));
    // Nothing changed for alice.
    let auditor = moto::client(&server.endpoint, &server.auditor);
    assert!(snapshot(&auditor, "alice").await.login_profile);
}

#[tokio::test]
async fn contain_locks_the_user_out_and_restore_puts_it_back_as_it_was() {
    let server = Moto::start().await;
    let iam = connector(&server, &server.deprovd);
    let auditor = moto::client(&server.endpoint, &server.auditor);
    let alice_self = moto::client(&server.endpoint, &server.alice);
    let before = snapshot(&auditor, "alice").await;
    assert_eq!(before.policies, vec![ALICE_POLICY.to_string()]);
    assert!(before.login_profile);
    alice_self
        .get_user("alice")
        .await
        .expect("alice's key works before containment");

    assert!(
        iam.check().await.ok,
        "preflight passes with least privilege"
    );

    // Contain, naming alice by ARN.
    let arn = "arn:aws:iam::123456789012:user/alice";
    let r = iam
        .expecting(Operation::DisableAccount, arn, None, Outcome::Done)
        .await;
    let pre = r.pre_state.clone().expect("contain records its pre-state");
    assert_eq!(
        pre["keys_deactivated"],
        serde_json::json!([server.alice.id])
    );
    assert_eq!(pre["had_login_profile"], true);
    assert_eq!(pre["policy_attached"], true);

    let contained = snapshot(&auditor, "alice").await;
    assert!(
        contained.keys.iter().all(|(_, s)| s == "Inactive"),
        "every key inactive: {contained:?}"
    );
    assert!(
        contained
            .policies
            .contains(&IAM_DENY_POLICY_NAME.to_string())
    );
    assert!(!contained.login_profile, "console password deleted");
    // moto does not refuse inactive keys by itself; the refusal here is IAM's explicit deny.
    let err = alice_self
        .get_user("alice")
        .await
        .expect_err("alice's own key is refused once contained");
    assert_eq!(err.code(), Some("AccessDenied"), "{err}");

    // A repeat finds everything in place; a retry carrying the first attempt's pre-state keeps it.
    iam.expecting(
        Operation::DisableAccount,
        "alice",
        None,
        Outcome::AlreadyDone,
    )
    .await;
    let retry = iam
        .expecting(
            Operation::DisableAccount,
            "alice",
            Some(pre.clone()),
            Outcome::AlreadyDone,
        )
        .await;
    assert_eq!(retry.pre_state.as_ref(), Some(&pre));

    // Restore from the recorded pre-state.
    let r = iam
        .expecting(
            Operation::EnableAccount,
            "alice",
            Some(pre.clone()),
            Outcome::Done,
        )
        .await;
    assert!(r.summary.contains("cannot be restored"), "{}", r.summary);
    alice_self
        .get_user("alice")
        .await
        .expect("alice's key works again after restore");
    let after = snapshot(&auditor, "alice").await;
    assert_eq!(
        after.keys, before.keys,
        "exactly the recorded key reactivated"
    );
    assert_eq!(
        after.policies, before.policies,
        "deny-all gone, alice's own policy kept"
    );
    assert!(
        auditor
            .get_user_policy("alice", IAM_DENY_POLICY_NAME)
            .await
            .expect("auditor reads")
            .is_none()
    );
    // The one documented difference: a deleted console password cannot come back.
    assert!(!after.login_profile);

    iam.expecting(
        Operation::EnableAccount,
        "alice",
        Some(pre),
        Outcome::AlreadyDone,
    )
    .await;
}

#[tokio::test]
async fn unknown_users_are_not_found_and_bad_subjects_fail() {
    let server = Moto::start().await;
    let iam = connector(&server, &server.deprovd);
    for op in [
        Operation::DisableAccount,
        Operation::EnableAccount,
        Operation::RevokeSessions,
    ] {
        let r = iam.execute(&request(op, "nobody@example.org", None)).await;
        assert_eq!(r.outcome, Outcome::NotFound, "{op}: {r:?}");
    }
    // An email is taken as the whole user name, never cut to its local part (`alice` exists).
    iam.expecting(
        Operation::DisableAccount,
        "alice@example.org",
        None,
        Outcome::NotFound,
    )
    .await;
    let r = iam
        .execute(&request(
            Operation::DisableAccount,
            "arn:aws:iam::123456789012:role/admin",
            None,
        ))
        .await;
    assert!(matches!(r.outcome, Outcome::Failed { .. }), "{r:?}");
    let r = iam
        .execute(&request(Operation::RemoveGroupMemberships, "alice", None))
        .await;
    assert!(matches!(r.outcome, Outcome::Failed { .. }), "{r:?}");
}

#[tokio::test]
async fn revoke_sessions_denies_tokens_issued_before_now() {
    let server = Moto::start().await;
    let iam = connector(&server, &server.deprovd);
    let auditor = moto::client(&server.endpoint, &server.auditor);
    iam.expecting(Operation::RevokeSessions, "alice", None, Outcome::Done)
        .await;
    let doc = auditor
        .get_user_policy("alice", IAM_REVOKE_POLICY_NAME)
        .await
        .expect("auditor reads")
        .expect("revoke policy attached");
    let doc: Value = serde_json::from_str(&doc).expect("policy is JSON");
    let cutoff = doc["Statement"][0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
        .as_str()
        .expect("TokenIssueTime condition");
    let cutoff = chrono::DateTime::parse_from_rfc3339(cutoff).expect("RFC 3339 cut-off");
    let age = chrono::Utc::now().signed_duration_since(cutoff);
    assert!(age.num_seconds().abs() < 60, "cut-off is now: {cutoff}");
    assert_eq!(doc["Statement"][0]["Effect"], "Deny");
}

#[tokio::test]
async fn aws_iam_type_routes_to_the_native_connector() {
    let server = Moto::start().await;
    let toml_src = format!(
        "[aws]\ntype = \"aws_iam\"\nmax_attempts = 3\nconcurrency = 1\n{}",
        server.connector_toml(&server.deprovd)
    );
    let configs: BTreeMap<String, InstanceConfig> = toml::from_str(&toml_src).expect("routes");
    let c = &configs["aws"];
    assert_eq!(c.kind(), "aws_iam");
    assert_eq!(c.limits(5), (1, 3));
    let mut problems = Vec::new();
    c.validate("connectors.aws", &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    let set = build_connectors(&configs, None).unwrap_or_else(|p| panic!("builds: {p:?}"));
    assert!(set["aws"].supports(Operation::DisableAccount));
    assert!(set["aws"].check().await.ok);
}

#[tokio::test]
async fn throttling_and_server_errors_retry_and_requests_are_signed_query_calls() {
    use crate::kit::{Reply, Target};
    let target = Target::start().await;
    let throttled = Reply {
        status: 400,
        headers: vec![
            ("content-type".into(), "text/xml".into()),
            ("retry-after".into(), "7".into()),
        ],
        body: r#"<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>r1</RequestId></ErrorResponse>"#.into(),
    };
    target.then("POST", "/", throttled);
    target.then("POST", "/", Reply::status(503));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("id"), "AKIATESTTESTTEST0001").expect("write id");
    std::fs::write(dir.path().join("secret"), "s3cr3t").expect("write secret");
    let cfg: AwsIamConfig = toml::from_str(&format!(
        "endpoint = \"{}\"\naccess_key_id = \"file:{d}/id\"\nsecret_access_key = \"file:{d}/secret\"\n",
        target.url(),
        d = dir.path().display()
    ))
    .expect("config parses");
    let iam = build_aws_iam_connector("aws", &cfg).unwrap_or_else(|p| panic!("builds: {p:?}"));

    let r = iam
        .execute(&request(Operation::DisableAccount, "alice", None))
        .await;
    let Outcome::Retry { after, reason } = &r.outcome else {
        panic!("throttling must retry: {r:?}");
    };
    assert_eq!(*after, Some(std::time::Duration::from_secs(7)));
    assert!(reason.contains("Throttling"), "{reason}");
    let r = iam
        .execute(&request(Operation::DisableAccount, "alice", None))
        .await;
    assert!(
        matches!(r.outcome, Outcome::Retry { .. }),
        "5xx must retry: {r:?}"
    );

    let seen = target.seen();
    assert_eq!(seen.len(), 2);
    let first = &seen[0];
    assert_eq!(first.method.as_str(), "POST");
    assert_eq!(
        std::str::from_utf8(&first.body).expect("utf-8 body"),
        "Action=GetUser&Version=2010-05-08&UserName=alice"
    );
    assert!(
        first.headers["content-type"]
            .to_str()
            .is_ok_and(|v| v.starts_with("application/x-www-form-urlencoded"))
    );
    let auth = first.headers["authorization"].to_str().expect("ascii");
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIATESTTESTTEST0001/")
            && auth.contains("/us-east-1/iam/aws4_request")
            && !auth.contains("s3cr3t"),
        "{auth}"
    );
    assert!(first.headers.contains_key("x-amz-date"));
}

#[tokio::test]
async fn lists_a_users_iam_groups_with_only_the_least_privilege_read() {
    let server = Moto::start().await;
    // `deprovd` holds exactly DEPROVD_ACTIONS (iam:ListGroupsForUser among them), under SigV4 checking.
    let iam = connector(&server, &server.deprovd);
    let auditor = moto::client(&server.endpoint, &server.auditor);
    let before = snapshot(&auditor, "alice").await;
    assert!(iam.lists_groups());
    let Memberships::Groups(mut names) = iam.group_memberships("alice").await else {
        panic!("groups expected");
    };
    names.sort();
    assert_eq!(names, ALICE_GROUPS);
    // The ARN form names the same user.
    let Memberships::Groups(mut by_arn) = iam
        .group_memberships("arn:aws:iam::123456789012:user/alice")
        .await
    else {
        panic!("groups expected");
    };
    by_arn.sort();
    assert_eq!(by_arn, ALICE_GROUPS);
    assert_eq!(
        iam.group_memberships("deprovd").await,
        Memberships::Groups(vec![])
    );
    assert_eq!(
        iam.group_memberships("nobody@example.org").await,
        Memberships::NotFound
    );
    assert_eq!(
        iam.group_memberships("arn:aws:iam::123456789012:role/admin")
            .await,
        Memberships::NotFound,
        "a role is no IAM user: in no group here"
    );
    // A key without iam:ListGroupsForUser: unavailable (the guard fails closed), never "no groups".
    let alice = connector(&server, &server.alice);
    assert!(
        matches!(
            alice.group_memberships("alice").await,
            Memberships::Unavailable(_)
        ),
        "AccessDenied is not an answer"
    );
    let mut groups = auditor
        .list_groups_for_user("alice")
        .await
        .expect("auditor lists alice's groups");
    groups.sort();
    assert_eq!(groups, ALICE_GROUPS, "membership unchanged");
    assert_eq!(snapshot(&auditor, "alice").await, before, "nothing changed");
}

#[tokio::test]
async fn group_listing_follows_the_marker_across_pages() {
    use crate::kit::{Reply, Target};
    let target = Target::start().await;
    let page = |groups: &[&str], next: Option<&str>| {
        let members: String = groups
            .iter()
            .map(|g| {
                format!(
                    "<member><Path>/</Path><GroupName>{g}</GroupName><GroupId>AGPA{}</GroupId><Arn>arn:aws:iam::123456789012:group/{g}</Arn><CreateDate>2024-01-01T00:00:00Z</CreateDate></member>",
                    g.len()
                )
            })
            .collect();
        let tail = match next {
            Some(m) => format!("<IsTruncated>true</IsTruncated><Marker>{m}</Marker>"),
            None => "<IsTruncated>false</IsTruncated>".to_string(),
        };
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "text/xml".into())],
            body: format!(
                r#"<ListGroupsForUserResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><ListGroupsForUserResult><Groups>{members}</Groups>{tail}</ListGroupsForUserResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></ListGroupsForUserResponse>"#
            ),
        }
    };
    target.then("POST", "/", page(&["developers"], Some("AQ+m/2==")));
    target.then("POST", "/", page(&["tier0-admins", "oncall"], None));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("id"), "AKIATESTTESTTEST0001").expect("write id");
    std::fs::write(dir.path().join("secret"), "s3cr3t").expect("write secret");
    let cfg: AwsIamConfig = toml::from_str(&format!(
        "endpoint = \"{}\"\naccess_key_id = \"file:{d}/id\"\nsecret_access_key = \"file:{d}/secret\"\n",
        target.url(),
        d = dir.path().display()
    ))
    .expect("config parses");
    let iam = build_aws_iam_connector("aws", &cfg).unwrap_or_else(|p| panic!("builds: {p:?}"));
    assert_eq!(
        iam.group_memberships("alice").await,
        Memberships::Groups(vec![
            "developers".into(),
            "tier0-admins".into(),
            "oncall".into()
        ])
    );
    let bodies: Vec<String> = target
        .seen()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(
        bodies,
        [
            "Action=ListGroupsForUser&Version=2010-05-08&UserName=alice",
            "Action=ListGroupsForUser&Version=2010-05-08&UserName=alice&Marker=AQ%2Bm%2F2%3D%3D",
        ]
    );
}
