//! `policy test --coverage`: which lines of the policy modules the tests evaluated.
//!
//! regorus records, per module, the lines whose statements were evaluated (`covered`) and those that
//! could have been but were not (`not_covered`); lines with no statement (comments, braces) are in
//! neither. Test modules (`*_test.rego`) are left out: coverage is of the policy, not of its tests.

use std::collections::BTreeSet;
use std::io::Write;

use serde::Serialize;

/// Coverage of one module.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FileCoverage {
    pub file: String,
    pub covered_lines: usize,
    pub uncovered_lines: usize,
    pub percent: f64,
    /// The lines not evaluated, as `a` or `a-b` ranges.
    pub uncovered: Vec<String>,
}

/// Coverage of the bundle.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CoverageReport {
    pub files: Vec<FileCoverage>,
    pub covered_lines: usize,
    pub uncovered_lines: usize,
    /// Covered lines over all lines with a statement, 0–100 (100 when there are none).
    pub percent: f64,
}

fn percent(covered: usize, uncovered: usize) -> f64 {
    let total = covered + uncovered;
    if total == 0 {
        100.0
    } else {
        // Two decimals, so text and JSON agree.
        (covered as f64 * 10_000.0 / total as f64).round() / 100.0
    }
}

/// `[1,2,3,7]` → `["1-3", "7"]`.
fn ranges(lines: &BTreeSet<u32>) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = lines.iter().copied().peekable();
    while let Some(start) = it.next() {
        let mut end = start;
        while it.peek() == Some(&(end + 1)) {
            end += 1;
            it.next();
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out
}

/// The report of an engine that ran with coverage enabled.
pub(crate) fn summarize(engine: &regorus::Engine) -> CoverageReport {
    let mut files = Vec::new();
    if let Ok(report) = engine.get_coverage_report() {
        for f in report.files {
            if f.path.ends_with("_test.rego") || f.path.starts_with('<') {
                continue;
            }
            files.push(FileCoverage {
                covered_lines: f.covered.len(),
                uncovered_lines: f.not_covered.len(),
                percent: percent(f.covered.len(), f.not_covered.len()),
                uncovered: ranges(&f.not_covered),
                file: f.path,
            });
        }
    }
    files.sort_by(|a, b| a.file.cmp(&b.file));
    let covered = files.iter().map(|f| f.covered_lines).sum();
    let uncovered = files.iter().map(|f| f.uncovered_lines).sum();
    CoverageReport {
        files,
        covered_lines: covered,
        uncovered_lines: uncovered,
        percent: percent(covered, uncovered),
    }
}

impl CoverageReport {
    pub(crate) fn write_text(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "COVERAGE:")?;
        for f in &self.files {
            write!(
                out,
                "  {}: {:.2}% ({}/{} lines)",
                f.file,
                f.percent,
                f.covered_lines,
                f.covered_lines + f.uncovered_lines
            )?;
            if f.uncovered.is_empty() {
                writeln!(out)?;
            } else {
                writeln!(out, "  not covered: {}", f.uncovered.join(", "))?;
            }
        }
        writeln!(
            out,
            "  total: {:.2}% ({}/{} lines)",
            self.percent,
            self.covered_lines,
            self.covered_lines + self.uncovered_lines
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ranges_are_collapsed() {
        let lines: BTreeSet<u32> = [1, 2, 3, 7, 9, 10].into_iter().collect();
        assert_eq!(ranges(&lines), vec!["1-3", "7", "9-10"]);
        assert_eq!(percent(1, 2), 33.33);
        assert_eq!(percent(0, 0), 100.0);
    }
}
