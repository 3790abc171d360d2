//! `deprovd policy test`: run every `test_*` rule of a policy directory, like `opa test`.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use regorus::Value;

use super::PolicyError;
use super::bundle::{self, FileKind};

/// Outcome of a test run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TestSummary {
    pub passed: usize,
    /// Tests that were false/undefined or raised an error.
    pub failed: usize,
}

impl TestSummary {
    pub fn total(&self) -> usize {
        self.passed + self.failed
    }

    /// True when every test passed; the CLI exits 1 otherwise.
    pub fn ok(&self) -> bool {
        self.failed == 0
    }
}

/// Per-test budget: generous, but a runaway test must not hang CI.
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Names of the `test_*` rules a module defines, in order of first appearance.
///
/// regorus does not expose its AST in this build, so rule heads are found lexically: a test rule head
/// starts at column 0 with `test_` (as `opa fmt` writes it). Indented lines are rule bodies.
fn test_rule_names(source: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in source.lines() {
        if !line.starts_with("test_") {
            continue;
        }
        let name: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Run every `test_*` rule under `dir` (all `*.rego` and data files, loaded as for serving), printing
/// `data.<package>.<test>: PASS|FAIL|ERROR` per test and then `PASS: n/m` (and `FAIL: k/m` if any
/// failed). A test passes when it evaluates to `true`.
pub fn run_tests(dir: &Path, out: &mut dyn Write) -> Result<TestSummary, PolicyError> {
    let scan = bundle::scan(dir)?;
    let timer = regorus::utils::limits::ExecutionTimerConfig {
        limit: TEST_TIMEOUT,
        check_interval: std::num::NonZeroU32::MIN.saturating_add(31),
    };
    let (mut engine, packages) =
        bundle::build_engine(&scan.files, Some(timer)).map_err(|problems| {
            PolicyError::Invalid {
                dir: format!("`{}`", dir.display()),
                problems,
            }
        })?;

    let mut tests: Vec<String> = Vec::new();
    for (rel, package) in &packages {
        let Some(file) = scan
            .files
            .iter()
            .find(|f| &f.rel == rel && f.kind == FileKind::Rego)
        else {
            continue;
        };
        let source = String::from_utf8_lossy(&file.bytes);
        for name in test_rule_names(&source) {
            let path = format!("{package}.{name}");
            if !tests.contains(&path) {
                tests.push(path);
            }
        }
    }
    tests.sort();

    let mut summary = TestSummary::default();
    for path in &tests {
        let (verdict, detail) = match engine.eval_rule(path.clone()) {
            Ok(Value::Bool(true)) => ("PASS", String::new()),
            Ok(Value::Undefined) => ("FAIL", String::new()),
            Ok(other) => ("FAIL", format!(" (evaluated to {other})")),
            Err(e) => ("ERROR", format!("\n  {e}")),
        };
        if verdict == "PASS" {
            summary.passed += 1;
        } else {
            summary.failed += 1;
        }
        writeln!(out, "{path}: {verdict}{detail}").map_err(PolicyError::Output)?;
    }
    let total = summary.total();
    writeln!(out, "{}", "-".repeat(80)).map_err(PolicyError::Output)?;
    writeln!(out, "PASS: {}/{total}", summary.passed).map_err(PolicyError::Output)?;
    if summary.failed > 0 {
        writeln!(out, "FAIL: {}/{total}", summary.failed).map_err(PolicyError::Output)?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_test_rule_heads_only_at_column_zero() {
        let src = "package p\ntest_a if {\n  test_b := 1\n}\ntest_a if true\ntest_c := true\n";
        assert_eq!(test_rule_names(src), vec!["test_a", "test_c"]);
    }

    #[test]
    fn reports_passing_failing_and_erroring_tests() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("x_test.rego"),
            r#"package x_test
import rego.v1

test_passes if { 1 + 1 == 2 }
test_fails if { 1 + 1 == 3 }
test_uses_data if { data.limits.max == 3 }
"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("data.yaml"), "limits:\n  max: 3\n").unwrap();
        let mut out = Vec::new();
        let summary = run_tests(dir.path(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            summary,
            TestSummary {
                passed: 2,
                failed: 1
            }
        );
        assert!(!summary.ok());
        assert!(text.contains("data.x_test.test_passes: PASS"), "{text}");
        assert!(text.contains("data.x_test.test_fails: FAIL"), "{text}");
        assert!(text.contains("data.x_test.test_uses_data: PASS"), "{text}");
        assert!(
            text.contains("PASS: 2/3") && text.contains("FAIL: 1/3"),
            "{text}"
        );
    }

    #[test]
    fn shipped_policy_tests_pass() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let mut out = Vec::new();
        let summary = run_tests(&dir, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(summary.ok(), "{text}");
        assert!(summary.passed >= 8, "{text}");
    }

    #[test]
    fn parse_errors_are_all_reported_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.rego"), "package a\n\nx := [\n").unwrap();
        std::fs::write(dir.path().join("b.rego"), "package b\ny if {\n").unwrap();
        std::fs::write(dir.path().join("data.json"), "{\"k\": \n").unwrap();
        let err = run_tests(dir.path(), &mut Vec::new()).unwrap_err();
        let PolicyError::Invalid { problems, .. } = &err else {
            panic!("expected Invalid, got {err}");
        };
        assert_eq!(problems.len(), 3, "{err}");
        let text = err.to_string();
        assert!(text.contains("a.rego:"), "{text}");
        assert!(text.contains("b.rego:"), "{text}");
        assert!(text.contains("data.json:2"), "{text}");
    }
}
