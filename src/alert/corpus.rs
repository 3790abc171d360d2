//! The real-sample corpus: documents modelled on what each vendor publishes (API references,
//! documented examples, vendors' own integration samples), written for deprovd, each with the facts
//! a responder would read off it.
//!
//! Layout: `tests/corpus/<format>/<case>.json`, one object per file:
//! `{"reference": "<vendor document, version or date>", "expect": {…}, "document": {…}}` where
//! `expect` is either `{"id", "severity", "category", "subject", "problems"}` (`subject`: the
//! primary name of the first subject, or `null` for a notify-only alert; `problems`: the kinds
//! noted, in order) or `{"rejected": "<part of the reason>"}` for what cannot be an alert.
//!
//! Each document is normalized twice, with its format named and auto-detected, and both must
//! agree; the whole corpus is also run mixed together, so every document must be detected as its
//! own format and a rejection must never name another format. `cargo test --lib alert::corpus --
//! --nocapture` prints the count per format: parsed, rejected, and why.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::NormalizerRegistry;

/// One corpus case.
struct Case {
    format: String,
    name: String,
    expect: Value,
    bytes: Vec<u8>,
}

fn corpus() -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .expect("tests/corpus exists")
        .map(|d| d.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let format = dir.file_name().unwrap().to_string_lossy().into_owned();
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .expect("format dir")
            .map(|f| f.expect("file entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for file in files {
            let text = fs::read(&file).unwrap();
            let case: Value = serde_json::from_slice(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", file.display()));
            assert!(
                case["reference"].as_str().is_some_and(|r| !r.is_empty()),
                "{}: every case names the vendor document it follows",
                file.display()
            );
            out.push(Case {
                format: format.clone(),
                name: file.file_stem().unwrap().to_string_lossy().into_owned(),
                expect: case["expect"].clone(),
                bytes: serde_json::to_vec(&case["document"]).unwrap(),
            });
        }
    }
    out
}

/// What a case produced, reduced to the facts `expect` states.
fn facts(
    registry: &NormalizerRegistry,
    case: &Case,
    format: Option<&str>,
) -> Result<Value, String> {
    let parts = registry
        .normalize_all(&case.bytes, format)
        .map_err(|e| e.to_string())?;
    let [part] = parts.as_slice() else {
        return Err(format!("{} documents where one was expected", parts.len()));
    };
    let alert = part.result.as_ref().map_err(ToString::to_string)?;
    Ok(serde_json::json!({
        "format": alert.source.format,
        "id": alert.id,
        "severity": alert.severity.as_str(),
        "category": alert.category,
        "subject": alert.subjects.first().and_then(|s| s.primary()),
        "problems": alert.problems.iter().map(|p| p.kind.as_str()).collect::<Vec<_>>(),
    }))
}

#[test]
fn every_corpus_document_reads_as_its_vendor_publishes_it() {
    let registry = NormalizerRegistry::new();
    let cases = corpus();
    let mut failures = Vec::new();
    // format → (total, parsed, rejection reasons)
    let mut counts: BTreeMap<&str, (usize, usize, Vec<String>)> = BTreeMap::new();
    for case in &cases {
        let label = format!("{}/{}", case.format, case.name);
        let named = facts(&registry, case, Some(&case.format));
        let auto = facts(&registry, case, None);
        let entry = counts.entry(&case.format).or_default();
        entry.0 += 1;
        if named != auto {
            failures.push(format!(
                "{label}: auto-detection disagrees with the named format:\n  named {named:?}\n  \
                 auto  {auto:?}"
            ));
        }
        match (&named, case.expect.get("rejected").and_then(Value::as_str)) {
            (Err(reason), Some(want)) => {
                entry.2.push(format!("{}: {reason}", case.name));
                if !reason.contains(want) {
                    failures.push(format!(
                        "{label}: rejected for `{reason}`, expected `{want}`"
                    ));
                }
                if !reason.starts_with(&format!("{}: ", case.format)) {
                    failures.push(format!(
                        "{label}: the reason names another format: {reason}"
                    ));
                }
            }
            (Err(reason), None) => failures.push(format!("{label}: rejected: {reason}")),
            (Ok(got), Some(_)) => failures.push(format!("{label}: accepted as {got}")),
            (Ok(got), None) => {
                entry.1 += 1;
                let mut want = case.expect.clone();
                want["format"] = case.format.clone().into();
                if want.get("problems").is_none() {
                    want["problems"] = serde_json::json!([]);
                }
                if *got != want {
                    failures.push(format!("{label}:\n  expected {want}\n  got      {got}"));
                }
            }
        }
    }
    for (format, (total, parsed, rejected)) in &counts {
        println!(
            "{format}: {total} documents, {parsed} parsed, {} rejected",
            rejected.len()
        );
        for r in rejected {
            println!("  rejected {r}");
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus case(s) failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// A corpus worth the name: at least 15 documents for every vendor format, 40 for OCSF across its
/// classes, and a few of deprovd's own `generic` shape.
#[test]
fn the_corpus_covers_every_format() {
    let cases = corpus();
    let registry = NormalizerRegistry::new();
    for format in registry.names() {
        let floor = match format {
            "ocsf" => 40,
            "generic" => 8,
            _ => 15,
        };
        let n = cases.iter().filter(|c| c.format == format).count();
        assert!(
            n >= floor,
            "only {n} corpus documents for `{format}` (at least {floor})"
        );
    }
    let classes: std::collections::BTreeSet<u64> = cases
        .iter()
        .filter(|c| c.format == "ocsf")
        .filter_map(|c| serde_json::from_slice::<Value>(&c.bytes).ok()?["class_uid"].as_u64())
        .collect();
    assert_eq!(
        classes.into_iter().collect::<Vec<_>>(),
        super::ocsf::CLASSES.to_vec(),
        "the OCSF corpus covers every class deprovd reads"
    );
}
