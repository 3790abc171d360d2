use std::path::Path;

use super::*;
use crate::policy::Backend;

fn bundle(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

const POLICY: &str = r#"package deprovd
import rego.v1

decisions contains d if {
	input.alert.severity == "high"
	some s in input.alert.subjects
	d := decision("disable_account", s.email)
}

decision(action, subject) := {"action": action, "subject": subject, "rule": "r", "mode": "enforce"}
"#;

const TESTS: &str = r#"package deprovd_test
import data.deprovd
import rego.v1

inp(sev) := {"alert": {"severity": sev, "subjects": [{"email": "a@x"}]}}

test_passes if {
	ds := deprovd.decisions with input as inp("high")
	count(ds) == 1
}

test_compares if {
	ds := deprovd.decisions with input as inp("high")
	got := {d.subject | some d in ds}
	print("got", got)
	got == {"b@x", "a@x", "c@x"}
}

test_undefined if {
	ds := deprovd.decisions with input as inp("low")
	n := count(ds)
	n > 0
}

test_uses_data if { data.limits.max == 3 }
"#;

fn run(dir: &Path, opts: &TestOptions) -> TestReport {
    run_tests(dir, opts).unwrap()
}

fn find<'a>(r: &'a TestReport, name: &str) -> &'a TestResult {
    r.tests
        .iter()
        .find(|t| t.name.ends_with(name))
        .unwrap_or_else(|| panic!("no {name} in {r:?}"))
}

#[test]
fn failures_show_the_compared_values_the_bindings_and_prints() {
    let dir = bundle(&[
        ("p.rego", POLICY),
        ("p_test.rego", TESTS),
        ("data.yaml", "limits:\n  max: 3\n"),
    ]);
    let r = run(dir.path(), &TestOptions::default());
    assert_eq!((r.passed, r.failed), (2, 2), "{r:?}");
    assert!(!r.ok());
    assert_eq!(r.engine, Some(Backend::Vm));

    let cmp = find(&r, "test_compares");
    assert_eq!(cmp.status, TestStatus::Fail);
    assert!(cmp.location.starts_with("p_test.rego:"), "{}", cmp.location);
    assert!(
        cmp.prints.iter().any(|p| p.contains("a@x")),
        "{:?}",
        cmp.prints
    );
    let f = cmp.failure.as_ref().unwrap();
    assert!(
        f.statement.as_deref().unwrap().starts_with("got =="),
        "{f:?}"
    );
    let c = f.compare.as_ref().unwrap();
    assert_eq!(c.actual, serde_json::json!(["a@x"]));
    assert_eq!(c.expected_expr, r#"{"b@x", "a@x", "c@x"}"#);
    assert_eq!(
        c.missing,
        vec![serde_json::json!("b@x"), serde_json::json!("c@x")]
    );
    assert!(c.unexpected.is_empty());

    let undef = find(&r, "test_undefined");
    let f = undef.failure.as_ref().unwrap();
    assert_eq!(f.statement.as_deref(), Some("n > 0"));
    let b = f.bindings.as_ref().unwrap();
    assert_eq!(b["n"], serde_json::json!(0), "{b}");
    assert_eq!(b["ds"], serde_json::json!([]), "{b}");

    let mut text = Vec::new();
    r.write_text(&mut text, false).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("data.deprovd_test.test_compares: FAIL"),
        "{text}"
    );
    assert!(text.contains("actual   got = [\"a@x\"]"), "{text}");
    assert!(text.contains("- missing    \"b@x\""), "{text}");
    assert!(text.contains("n = 0"), "{text}");
    assert!(
        !text.contains("test_passes"),
        "passing tests only with -v: {text}"
    );
    assert!(
        text.contains("PASS: 2/4") && text.contains("FAIL: 2/4"),
        "{text}"
    );
}

#[test]
fn a_bundle_the_server_refuses_fails_before_any_test_runs() {
    let misspelt = POLICY.replace(
        "d := decision(\"disable_account\"",
        "d := decison(\"disable_account\"",
    );
    let dir = bundle(&[
        ("p.rego", &misspelt),
        (
            "p_test.rego",
            "package t\nimport rego.v1\ntest_ok if true\n",
        ),
    ]);
    for engine in [Backend::Auto, Backend::Vm, Backend::Interpreter] {
        let opts = TestOptions {
            config: PolicyConfig {
                engine,
                ..PolicyConfig::default()
            },
            ..TestOptions::default()
        };
        let r = run(dir.path(), &opts);
        assert!(!r.ok(), "{engine:?}: {r:?}");
        assert!(r.tests.is_empty(), "{engine:?}: no test runs: {r:?}");
        let all = r.compile_errors.join("\n");
        assert!(all.contains("decison"), "{engine:?}: {all}");
        assert!(all.contains("p.rego:"), "{engine:?}: {all}");
    }
}

#[test]
fn run_filters_tests_by_regex_and_coverage_counts_policy_lines() {
    let dir = bundle(&[
        ("p.rego", POLICY),
        ("p_test.rego", TESTS),
        ("data.yaml", "limits:\n  max: 3\n"),
    ]);
    let opts = TestOptions {
        run: Some(regex::Regex::new("test_passes$").unwrap()),
        coverage: true,
        ..TestOptions::default()
    };
    let r = run(dir.path(), &opts);
    assert_eq!(r.tests.len(), 1, "{r:?}");
    assert!(r.ok());
    let c = r.coverage.as_ref().unwrap();
    assert_eq!(c.files.len(), 1, "test modules are left out: {c:?}");
    assert_eq!(c.files[0].file, "p.rego");
    assert!(c.covered_lines > 0, "{c:?}");
    assert!(c.percent > 0.0 && c.percent <= 100.0, "{c:?}");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["coverage"]["files"][0]["file"], "p.rego");
    assert_eq!(json["tests"][0]["status"], "pass");
}

#[test]
fn unreadable_directory_is_an_error_not_a_report() {
    let err = run_tests(
        Path::new("/nonexistent/deprovd-policies"),
        &TestOptions::default(),
    );
    assert!(
        matches!(err, Err(PolicyError::MissingDir { .. })),
        "{err:?}"
    );
}

#[test]
fn shipped_policy_tests_pass_with_full_decision_coverage() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let opts = TestOptions {
        coverage: true,
        ..TestOptions::default()
    };
    let r = run(&dir, &opts);
    let mut text = Vec::new();
    r.write_text(&mut text, true).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(r.ok(), "{text}");
    assert!(r.passed >= 8, "{text}");
    assert!(r.coverage.as_ref().unwrap().percent >= 90.0, "{text}");
}

#[test]
fn parse_errors_are_all_reported_with_file_and_line() {
    let dir = bundle(&[
        ("a.rego", "package a\n\nx := [\n"),
        ("b.rego", "package b\ny if {\n"),
        ("data.json", "{\"k\": \n"),
    ]);
    let r = run(dir.path(), &TestOptions::default());
    assert_eq!(r.compile_errors.len(), 3, "{r:?}");
    let text = r.compile_errors.join("\n");
    assert!(text.contains("a.rego:"), "{text}");
    assert!(text.contains("b.rego:"), "{text}");
    assert!(text.contains("data.json:2"), "{text}");
}
