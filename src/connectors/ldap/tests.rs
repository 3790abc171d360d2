//! Unit tests of the LDAP connector: config validation, filter rendering, result-code mapping.

use std::time::Duration;

use serde::Deserialize;

use super::config::{check_filter_template, escape_filter_value, render_filter};
use super::error::rc_name;
use super::*;
use crate::config::SecretRef;
use crate::connectors::Outcome;

fn cfg(toml_src: &str) -> LdapConfig {
    toml::from_str(toml_src).expect("valid test config")
}

const MINIMAL: &str = r#"
    url = "ldaps://ldap.example.org"
    bind_dn = "cn=deprovd,ou=services,dc=example,dc=org"
    bind_password = "env:LDAP_PW"
    base_dn = "ou=people,dc=example,dc=org"
"#;

fn problems(c: &LdapConfig) -> Vec<Problem> {
    let mut p = Vec::new();
    c.validate("connectors.dir", &mut p);
    p
}

#[test]
fn escaping_neutralises_filter_metacharacters() {
    assert_eq!(escape_filter_value("*)(uid=*"), r"\2a\29\28uid=\2a");
    assert_eq!(escape_filter_value(r"a\b"), r"a\5cb");
    assert_eq!(escape_filter_value("nul\0"), r"nul\00");
    assert_eq!(
        render_filter("(|(uid={username})(mail={email}))", "*"),
        r"(|(uid=\2a)(mail=\2a))"
    );
}

#[test]
fn a_placeholder_inside_the_subject_is_rendered_literally_once() {
    // Before the one-pass renderer, the `{email}` inside the subject was expanded again:
    // `(uid=xx{email}yy)`.
    assert_eq!(
        render_filter("(uid={username})", "x{email}y"),
        "(uid=x{email}y)"
    );
    assert_eq!(
        render_filter("(|(uid={username})(mail={email}))", "{subject}{username}"),
        "(|(uid={subject}{username})(mail={subject}{username}))"
    );
    // Braces in the template that are no placeholder stay as they are.
    assert_eq!(render_filter("(cn={x}{subject})", "a"), "(cn={x}a)");
}

#[test]
fn a_long_subject_makes_a_filter_of_linear_size() {
    let template = LdapFlavor::ActiveDirectory.default_user_filter();
    let subject = "{email}".repeat(1024 / 7);
    let filter = render_filter(template, &subject);
    // Three placeholders (`{username}` once, `{email}` twice), each replaced by the subject once.
    let placeholders = "{username}".len() + 2 * "{email}".len();
    assert_eq!(
        filter.len(),
        template.len() - placeholders + 3 * subject.len()
    );
}

#[test]
fn minimal_config_is_valid_with_defaults() {
    let c = cfg(MINIMAL);
    assert!(problems(&c).is_empty(), "{:?}", problems(&c));
    assert_eq!(c.timeout, Duration::from_secs(10));
    assert_eq!(c.concurrency, 4);
    for flavor in [LdapFlavor::OpenLdap, LdapFlavor::ActiveDirectory] {
        assert!(check_filter_template(flavor.default_user_filter()).is_ok());
    }
}

#[test]
fn unknown_keys_and_inline_secrets_are_refused() {
    crate::connectors::contract::assert_strict_config::<LdapConfig>(
        MINIMAL,
        "env:LDAP_PW",
        "hunter2",
    );
}

#[test]
fn config_routes_through_an_internally_tagged_enum() {
    // The lead's `[connectors.<name>]` table is tagged by `type`; deny_unknown_fields must not trip on it.
    #[derive(Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Any {
        Ldap(LdapConfig),
        ActiveDirectory(LdapConfig),
    }
    let doc = format!("type = \"active_directory\"\n{MINIMAL}");
    let Ok(Any::ActiveDirectory(ad)) = toml::from_str::<Any>(&doc) else {
        panic!("active_directory routes to LdapConfig");
    };
    assert_eq!(ad.url, "ldaps://ldap.example.org");
    let doc = format!("type = \"ldap\"\n{MINIMAL}");
    let Ok(Any::Ldap(ldap)) = toml::from_str::<Any>(&doc) else {
        panic!("ldap routes to LdapConfig");
    };
    assert_eq!(ldap.base_dn, "ou=people,dc=example,dc=org");
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let c = cfg(r#"
        url = "http://ldap.example.org"
        bind_dn = "deprovd"
        bind_password = "env:LDAP_PW"
        base_dn = ""
        user_filter = "(uid=alice)"
        timeout = "0s"
        concurrency = 0
        max_attempts = 0
    "#);
    let paths: Vec<String> = problems(&c).into_iter().map(|p| p.path).collect();
    for want in [
        "url",
        "bind_dn",
        "base_dn",
        "user_filter",
        "timeout",
        "concurrency",
        "max_attempts",
    ] {
        assert!(
            paths.contains(&format!("connectors.dir.{want}")),
            "{want} missing from {paths:?}"
        );
    }
}

#[test]
fn cleartext_to_a_remote_host_needs_consent() {
    let remote = cfg(&MINIMAL.replace("ldaps://", "ldap://"));
    assert_eq!(problems(&remote).len(), 1);
    let mut starttls = remote.clone();
    starttls.starttls = true;
    assert!(problems(&starttls).is_empty());
    let mut consent = remote.clone();
    consent.allow_plaintext = true;
    assert!(problems(&consent).is_empty());
    let local = cfg(&MINIMAL.replace("ldaps://ldap.example.org", "ldap://127.0.0.1:3890"));
    assert!(problems(&local).is_empty());
    let mut both = cfg(MINIMAL);
    both.starttls = true;
    assert_eq!(problems(&both)[0].path, "connectors.dir.starttls");
}

#[test]
fn filter_templates_are_checked() {
    assert!(check_filter_template("(uid={username})").is_ok());
    assert!(check_filter_template("(uid={user})").is_err());
    assert!(check_filter_template("(uid={username}").is_err());
    assert!(check_filter_template("(objectClass=*)").is_err());
}

#[test]
fn build_reports_an_unset_password() {
    let mut c = cfg(MINIMAL);
    c.bind_password = SecretRef::Env("DEPROVD_TEST_LDAP_SURELY_UNSET_7f3a".into());
    let Err(problems) = build("dir", &c, LdapFlavor::OpenLdap) else {
        panic!("build must fail without a password");
    };
    assert_eq!(problems[0].path, "connectors.dir.bind_password");
}

#[test]
fn result_codes_map_to_outcomes() {
    let err = |rc| LdapError::Result {
        op: "modify",
        target: "x".into(),
        rc,
        code: rc_name(rc),
        text: String::new(),
    };
    for rc in [51, 52, 3] {
        assert!(matches!(err(rc).outcome(), Outcome::Retry { .. }), "{rc}");
    }
    for rc in [49, 50, 32, 65] {
        let Outcome::Failed { reason } = err(rc).outcome() else {
            panic!("{rc} must be terminal");
        };
        assert!(reason.contains("fix:"), "{reason}");
    }
    let lost = LdapError::Transport {
        op: "bind",
        target: "x".into(),
        source: ldap3::LdapError::Io {
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        },
    };
    assert!(lost.is_retryable());
}
