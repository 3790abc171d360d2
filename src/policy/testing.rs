//! `deprovd policy test`: compile the bundle exactly as the server does, then run every `test_*` rule,
//! like `opa test` — with the values behind a failure, `print()` output, a name filter and coverage.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use regorus::Value;
use serde::Serialize;

use super::bundle::{self, Bundle};
use super::coverage::{self, CoverageReport};
use super::{PolicyConfig, PolicyError, ast, debug};

/// What to run and how.
#[derive(Debug, Clone, Default)]
pub(crate) struct TestOptions {
    /// The serving configuration (engine, limits); its `dir` is replaced by the directory tested.
    pub config: PolicyConfig,
    /// Run only tests whose full path (`data.pkg.test_x`) matches.
    pub run: Option<regex::Regex>,
    /// Collect line coverage of the non-test modules.
    pub coverage: bool,
}

/// How one test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TestStatus {
    Pass,
    /// False or undefined.
    Fail,
    /// Raised an error (over budget, a runtime error).
    Error,
}

impl TestStatus {
    fn label(self) -> &'static str {
        match self {
            TestStatus::Pass => "PASS",
            TestStatus::Fail => "FAIL",
            TestStatus::Error => "ERROR",
        }
    }
}

/// One test's outcome.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TestResult {
    /// `data.<package>.<test>`.
    pub name: String,
    /// `file:line:col` of the rule.
    pub location: String,
    pub status: TestStatus,
    pub duration_ms: f64,
    /// What `print()` wrote while the test ran.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prints: Vec<String>,
    /// For failures: where the test stopped holding and the values involved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<debug::Failure>,
    /// For errors: regorus' message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TestReport {
    /// Digest of the bundle tested (as the server would record it); absent when it did not compile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Which evaluator the server would run it on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<super::Backend>,
    /// Why the server would refuse the bundle; when non-empty no test ran.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub compile_errors: Vec<String>,
    pub tests: Vec<TestResult>,
    pub passed: usize,
    pub failed: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage: Option<CoverageReport>,
}

impl TestReport {
    /// True when the bundle compiled and every test passed; the CLI exits 1 otherwise.
    pub(crate) fn ok(&self) -> bool {
        self.compile_errors.is_empty() && self.failed == 0
    }

    /// The `opa test`-style text report. `verbose` lists passing tests and every test's prints.
    pub(crate) fn write_text(&self, out: &mut dyn Write, verbose: bool) -> std::io::Result<()> {
        if !self.compile_errors.is_empty() {
            writeln!(
                out,
                "COMPILE ERROR: the server would refuse this bundle ({} problem(s)); no test ran:",
                self.compile_errors.len()
            )?;
            for p in &self.compile_errors {
                writeln!(out, "  {p}")?;
            }
            return Ok(());
        }
        for t in &self.tests {
            if t.status == TestStatus::Pass && !verbose {
                continue;
            }
            writeln!(
                out,
                "{}: {} ({:.1}ms)  {}",
                t.name,
                t.status.label(),
                t.duration_ms,
                t.location
            )?;
            if let Some(e) = &t.error {
                writeln!(out, "  error: {e}")?;
            }
            if let Some(f) = &t.failure {
                f.write_text(out)?;
            }
            if !t.prints.is_empty() && (verbose || t.status != TestStatus::Pass) {
                writeln!(out, "  print output:")?;
                for p in &t.prints {
                    writeln!(out, "    {p}")?;
                }
            }
        }
        let total = self.passed + self.failed;
        writeln!(out, "{}", "-".repeat(80))?;
        writeln!(out, "PASS: {}/{total}", self.passed)?;
        if self.failed > 0 {
            writeln!(out, "FAIL: {}/{total}", self.failed)?;
        }
        if let Some(c) = &self.coverage {
            c.write_text(out)?;
        }
        Ok(())
    }
}

/// Per-test budget: generous, but a runaway test must not hang CI.
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Compile `dir` as the server would with `opts.config` (so a bundle the server refuses fails here
/// too, before any test runs), then run every matching `test_*` rule on the interpreter (tests use
/// `with`, which the VM lacks). `Err` only when the directory cannot be read or holds no policy.
pub(crate) fn run_tests(dir: &Path, opts: &TestOptions) -> Result<TestReport, PolicyError> {
    let scan = bundle::scan(dir)?;
    let files = scan.files.clone();
    let mut config = opts.config.clone();
    config.dir = Some(dir.to_path_buf());
    let mut report = TestReport {
        digest: None,
        engine: None,
        compile_errors: Vec::new(),
        tests: Vec::new(),
        passed: 0,
        failed: 0,
        coverage: None,
    };
    match Bundle::compile(scan, &config) {
        Ok(b) => {
            report.digest = Some(b.digest.to_string());
            report.engine = Some(b.backend());
        }
        Err(PolicyError::Invalid { problems, .. }) => {
            report.compile_errors = problems;
            return Ok(report);
        }
        Err(PolicyError::Signature(e)) => {
            report.compile_errors = vec![format!("{}: {e}", super::SIGNATURE_FILE)];
            return Ok(report);
        }
        Err(e) => return Err(e),
    }
    let timer = regorus::utils::limits::ExecutionTimerConfig {
        limit: TEST_TIMEOUT,
        check_interval: std::num::NonZeroU32::MIN.saturating_add(31),
    };
    let (mut engine, _) = match bundle::build_engine(&files, Some(timer)) {
        Ok(e) => e,
        Err(problems) => {
            report.compile_errors = problems;
            return Ok(report);
        }
    };
    engine.set_gather_prints(true);
    let modules = engine.get_modules().clone();
    // The pristine engine failures are explained on: the coverage engine accumulates state.
    let pristine = engine.clone();
    if opts.coverage {
        engine.set_enable_coverage(true);
    }
    for test in ast::test_rules(&modules) {
        if opts.run.as_ref().is_some_and(|re| !re.is_match(&test.path)) {
            continue;
        }
        let started = Instant::now();
        let outcome = engine.eval_rule(test.path.clone());
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        let prints = engine.take_prints().unwrap_or_default();
        let mut result = TestResult {
            name: test.path.clone(),
            location: test.location.clone(),
            status: TestStatus::Pass,
            duration_ms,
            prints,
            failure: None,
            error: None,
        };
        match outcome {
            Ok(Value::Bool(true)) => {}
            Ok(value) => {
                result.status = TestStatus::Fail;
                result.failure = Some(debug::explain(&pristine, &modules, &test.path, &value));
            }
            Err(e) => {
                result.status = TestStatus::Error;
                result.error = Some(bundle::tidy_rego_error(&test.file, &e.to_string()));
            }
        }
        if result.status == TestStatus::Pass {
            report.passed += 1;
        } else {
            report.failed += 1;
        }
        report.tests.push(result);
    }
    if opts.coverage {
        report.coverage = Some(coverage::summarize(&engine));
    }
    Ok(report)
}

/// Write `report` to `out` as text or as one JSON document.
pub(crate) fn write_report(
    report: &TestReport,
    json: bool,
    verbose: bool,
    out: &mut dyn Write,
) -> Result<(), PolicyError> {
    if json {
        serde_json::to_writer_pretty(&mut *out, report)
            .map_err(|e| PolicyError::Output(e.into()))?;
        writeln!(out).map_err(PolicyError::Output)
    } else {
        report.write_text(out, verbose).map_err(PolicyError::Output)
    }
}

#[cfg(test)]
#[path = "testing_tests.rs"]
mod tests;
