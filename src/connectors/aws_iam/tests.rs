//! Unit tests of the AWS IAM connector: config validation, subjects, form encoding, XML and error
//! documents, error-code mapping, the revoke policy.

use std::time::Duration;

use serde_json::Value;

use super::client::{IamGroup, ListResponse, decode, encode, parse, parse_error};
use super::operations::revoke_older_sessions_policy;
use super::*;
use crate::connectors::Outcome;

const MINIMAL: &str = r#"
    access_key_id = "env:AWS_KEY"
    secret_access_key = "env:AWS_SECRET"
"#;

fn cfg(src: &str) -> AwsIamConfig {
    toml::from_str(src).expect("valid test config")
}

fn problems(c: &AwsIamConfig) -> Vec<Problem> {
    let mut p = Vec::new();
    c.validate("connectors.aws", &mut p);
    p
}

#[test]
fn minimal_config_is_valid_with_defaults() {
    let c = cfg(MINIMAL);
    assert!(problems(&c).is_empty(), "{:?}", problems(&c));
    assert_eq!(c.endpoint, "https://iam.amazonaws.com");
    assert_eq!(c.region, "us-east-1");
    assert_eq!(c.concurrency, 2);
    assert!(c.session_token.is_none());
}

#[test]
fn unknown_keys_and_inline_secrets_are_refused() {
    crate::connectors::contract::assert_strict_config::<AwsIamConfig>(
        MINIMAL,
        "env:AWS_SECRET",
        "wJalrXUtnFEMI",
    );
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let c = cfg(&format!(
        "{MINIMAL}\nendpoint = \"http://iam.example.org\"\nregion = \"US East\"\ntimeout = \"0s\"\nconcurrency = 0\nmax_attempts = 0"
    ));
    let paths: Vec<String> = problems(&c).into_iter().map(|p| p.path).collect();
    for want in [
        "endpoint",
        "region",
        "timeout",
        "concurrency",
        "max_attempts",
    ] {
        assert!(
            paths.contains(&format!("connectors.aws.{want}")),
            "{want} missing from {paths:?}"
        );
    }
    let local = cfg(&format!("{MINIMAL}\nendpoint = \"http://127.0.0.1:5000\""));
    assert!(problems(&local).is_empty());
}

#[test]
fn build_reports_unset_credentials_by_path() {
    let c = cfg(&MINIMAL
        .replace("AWS_KEY", "DEPROVD_TEST_IAM_UNSET_KEY_91c2")
        .replace("AWS_SECRET", "DEPROVD_TEST_IAM_UNSET_SECRET_91c2"));
    let Err(p) = build("aws", &c) else {
        panic!("build must fail without credentials");
    };
    let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "connectors.aws.access_key_id",
            "connectors.aws.secret_access_key"
        ]
    );
}

#[test]
fn subjects_are_user_names_or_user_arns() {
    assert_eq!(user_name_of("alice").unwrap(), "alice");
    // An email is a legal IAM user name and is taken whole, not cut to its local part.
    assert_eq!(
        user_name_of("alice@example.org").unwrap(),
        "alice@example.org"
    );
    assert_eq!(
        user_name_of("arn:aws:iam::123456789012:user/eng/alice").unwrap(),
        "alice"
    );
    assert_eq!(
        user_name_of("arn:aws-us-gov:iam::123456789012:user/bob").unwrap(),
        "bob"
    );
    assert!(user_name_of("arn:aws:iam::123456789012:role/admin").is_err());
    assert!(user_name_of("arn:aws:s3:::bucket").is_err());
    assert!(user_name_of("").is_err());
    assert!(user_name_of("a b").is_err());
    assert!(user_name_of("x&Action=DeleteUser").is_err());
    assert!(user_name_of(&"a".repeat(65)).is_err());
}

#[test]
fn form_encoding_is_rfc3986() {
    assert_eq!(encode("a-b_c.d~e"), "a-b_c.d~e");
    assert_eq!(encode("{\"a\": \"*\"}"), "%7B%22a%22%3A%20%22%2A%22%7D");
    assert_eq!(encode("é&="), "%C3%A9%26%3D");
    assert_eq!(
        decode(&encode("{\"Effect\": \"Deny\"} é")),
        "{\"Effect\": \"Deny\"} é"
    );
    assert_eq!(decode("100%"), "100%");
    assert_eq!(decode("%zz"), "%zz");
}

#[test]
fn iam_responses_parse() {
    let body = r#"<ListAccessKeysResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">
      <ListAccessKeysResult>
        <UserName>bob</UserName>
        <AccessKeyMetadata>
          <member><UserName>bob</UserName><AccessKeyId>AKIA1</AccessKeyId><Status>Active</Status><CreateDate>2026-01-01T00:00:00Z</CreateDate></member>
          <member><UserName>bob</UserName><AccessKeyId>AKIA2</AccessKeyId><Status>Inactive</Status></member>
        </AccessKeyMetadata>
        <IsTruncated>true</IsTruncated>
        <Marker>next</Marker>
      </ListAccessKeysResult>
      <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>
    </ListAccessKeysResponse>"#;
    let r = parse::<ListResponse<AccessKey>>("ListAccessKeys", body)
        .unwrap()
        .result;
    assert_eq!(r.items.member.len(), 2);
    assert!(r.items.member[0].is_active());
    assert!(!r.items.member[1].is_active());
    assert!(r.is_truncated);
    assert_eq!(r.marker.as_deref(), Some("next"));

    let empty = r#"<ListAccessKeysResponse><ListAccessKeysResult><AccessKeyMetadata/><IsTruncated>false</IsTruncated></ListAccessKeysResult></ListAccessKeysResponse>"#;
    let r = parse::<ListResponse<AccessKey>>("ListAccessKeys", empty)
        .unwrap()
        .result;
    assert!(r.items.member.is_empty());
    assert!(!r.is_truncated);

    // The other list calls name their result and list elements after themselves.
    let policies = r#"<ListUserPoliciesResponse><ListUserPoliciesResult><PolicyNames><member>deprovd-deny-all</member></PolicyNames><IsTruncated>false</IsTruncated></ListUserPoliciesResult></ListUserPoliciesResponse>"#;
    let r = parse::<ListResponse<String>>("ListUserPolicies", policies)
        .unwrap()
        .result;
    assert_eq!(r.items.member, ["deprovd-deny-all"]);
    let groups = r#"<ListGroupsForUserResponse><ListGroupsForUserResult><Groups><member><GroupName>admins</GroupName><Arn>arn:aws:iam::1:group/admins</Arn></member></Groups><IsTruncated>true</IsTruncated><Marker>m2</Marker></ListGroupsForUserResult></ListGroupsForUserResponse>"#;
    let r = parse::<ListResponse<IamGroup>>("ListGroupsForUser", groups)
        .unwrap()
        .result;
    assert_eq!(r.items.member[0].group_name, "admins");
    assert_eq!(r.marker.as_deref(), Some("m2"));
}

#[test]
fn error_documents_parse_in_both_shapes() {
    let iam = r#"<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>The user with name x cannot be found.</Message></Error><RequestId>r</RequestId></ErrorResponse>"#;
    assert_eq!(
        parse_error(iam),
        Some((
            "NoSuchEntity".into(),
            "The user with name x cannot be found.".into()
        ))
    );
    let nested = r#"<?xml version="1.0"?><ErrorResponse><Errors><Error><Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message></Error></Errors></ErrorResponse>"#;
    assert_eq!(parse_error(nested).unwrap().0, "InvalidClientTokenId");
    assert_eq!(parse_error("not xml at all"), None);
}

fn api(status: u16, code: &str) -> IamError {
    IamError::Api {
        action: "UpdateAccessKey",
        status,
        code: code.into(),
        message: String::new(),
        retry_after: None,
    }
}

#[test]
fn error_codes_map_to_outcomes() {
    for (status, code) in [
        (400, "Throttling"),
        (503, "ServiceUnavailable"),
        (500, "InternalFailure"),
    ] {
        assert!(
            matches!(api(status, code).outcome(), Outcome::Retry { .. }),
            "{code}"
        );
    }
    for code in [
        "AccessDenied",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
    ] {
        let Outcome::Failed { reason } = api(403, code).outcome() else {
            panic!("{code} must be terminal");
        };
        assert!(reason.contains("fix:"), "{reason}");
    }
    let throttled = IamError::Api {
        action: "UpdateAccessKey",
        status: 400,
        code: "Throttling".into(),
        message: "Rate exceeded".into(),
        retry_after: Some(Duration::from_secs(7)),
    };
    let Outcome::Retry { after, .. } = throttled.outcome() else {
        panic!("throttling retries");
    };
    assert_eq!(after, Some(Duration::from_secs(7)));
}

#[test]
fn revoke_policy_uses_token_issue_time() {
    let t = chrono::DateTime::parse_from_rfc3339("2026-11-26T07:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let doc: Value = serde_json::from_str(&revoke_older_sessions_policy(t)).unwrap();
    assert_eq!(
        doc["Statement"][0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"],
        "2026-11-26T07:00:00Z"
    );
    assert_eq!(doc["Statement"][0]["Effect"], "Deny");
    let deny: Value = serde_json::from_str(DENY_ALL_POLICY).unwrap();
    assert_eq!(deny["Statement"][0]["Action"], "*");
}
