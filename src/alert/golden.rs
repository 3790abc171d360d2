//! Golden tests for every normalizer, walked from files so that adding a case is adding two files.
//!
//! Layout: `tests/golden/<format>/<case>.input.json` plus either `<case>.expected.json` (the alert,
//! without `raw`) or `<case>.error.txt` (the exact dead-letter message). The directory name is the
//! explicit format; the directory `auto` runs auto-detection. For every success case the harness
//! also checks that `raw` is the untouched input and that auto-detection yields the same alert.
//!
//! A delivery that splits into several documents (an Okta event hook) expects an array, one entry
//! per document in order: the alert (without `raw`, whose `raw` must be that document of the input)
//! or `{"at": …, "error": …}`.
//!
//! `DEPROVD_BLESS=1 cargo test --lib alert::golden` rewrites the expectations from the current code;
//! review the diff before committing it.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::registry::Normalized;
use super::{Alert, CATEGORIES, NormalizeError, NormalizerRegistry};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// `(format dir name, case name, input path)` for every case, sorted for stable output.
fn cases() -> Vec<(String, String, PathBuf)> {
    let mut out = Vec::new();
    for dir in fs::read_dir(golden_dir()).expect("tests/golden exists") {
        let dir = dir.expect("readable dir entry").path();
        if !dir.is_dir() {
            continue;
        }
        let format = dir.file_name().unwrap().to_string_lossy().into_owned();
        for file in fs::read_dir(&dir).expect("readable format dir") {
            let path = file.expect("readable file entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if let Some(case) = name.strip_suffix(".input.json") {
                out.push((format.clone(), case.to_string(), path));
            }
        }
    }
    out.sort();
    out
}

/// The alert as compared with `<case>.expected.json`: without `raw`, and with a time of receipt
/// (problem `time_from_receipt`) replaced by the word `receipt` once it is checked to lie within
/// the run, so expectations do not change with the clock.
fn comparable(alert: &Alert, started: chrono::DateTime<chrono::Utc>, label: &str) -> Value {
    let mut v = serde_json::to_value(alert).unwrap();
    let obj = v.as_object_mut().unwrap();
    obj.remove("raw");
    let on_receipt = alert
        .problems
        .iter()
        .any(|p| p.kind == super::ProblemKind::TimeFromReceipt);
    if on_receipt {
        assert!(
            alert.time >= started && alert.time <= chrono::Utc::now(),
            "{label}: a time of receipt outside the run: {}",
            alert.time
        );
        obj.insert("time".into(), "receipt".into());
    }
    v
}

/// What one case produced: the alert(s) as JSON (without `raw`), or the dead-letter message.
enum Outcome {
    Alert(Value),
    Error(String),
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

#[test]
fn golden_cases_match_expectations() {
    let bless = std::env::var("DEPROVD_BLESS").is_ok_and(|v| v == "1");
    let registry = NormalizerRegistry::new();
    let cases = cases();
    assert!(
        !cases.is_empty(),
        "no golden cases under {}",
        golden_dir().display()
    );
    let mut failures = Vec::new();
    let started = chrono::Utc::now();
    for (format, case, input) in &cases {
        let label = format!("{format}/{case}");
        let dir = input.parent().unwrap();
        let expected_path = dir.join(format!("{case}.expected.json"));
        let error_path = dir.join(format!("{case}.error.txt"));
        let bytes = fs::read(input).unwrap();
        let explicit = (format != "auto").then_some(format.as_str());
        let original: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        // `ssf` is reached only through the receiver's verified path, never by name or detection.
        let verified_set = format == "ssf";
        let parts = if verified_set {
            serde_json::from_slice(&bytes)
                .map_err(|e| NormalizeError::InvalidJson(e.to_string()))
                .map(|doc| {
                    vec![Normalized {
                        at: None,
                        bytes: None,
                        result: registry.normalize_verified_set(doc),
                    }]
                })
        } else {
            registry.normalize_all(&bytes, explicit)
        };
        if verified_set {
            let auto = registry.normalize_all(&bytes, None);
            if let Ok(auto) = auto
                && auto
                    .iter()
                    .any(|p| p.result.as_ref().is_ok_and(|a| a.source.format == "ssf"))
            {
                failures.push(format!("{label}: unsigned SET claims auto-detected as ssf"));
            }
        }
        // Compared when the explicit format took the document (a split delivery, or one alert).
        let took = matches!(&parts, Ok(p) if p.iter().any(|x| x.at.is_some() || x.result.is_ok()));
        if explicit.is_some() && took && !verified_set {
            let auto = registry.normalize_all(&bytes, None);
            let key = |r: &Result<Vec<Normalized>, NormalizeError>| {
                r.as_ref().map_err(ToString::to_string).map(|parts| {
                    parts
                        .iter()
                        .map(|p| {
                            (
                                p.at.clone(),
                                p.bytes.clone(),
                                p.result
                                    .as_ref()
                                    .map(|a| comparable(a, started, &label))
                                    .map_err(ToString::to_string),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            };
            if key(&auto) != key(&parts) {
                failures.push(format!(
                    "{label}: auto-detection disagrees with format `{format}`: {auto:?}"
                ));
            }
        }
        // The outcome as JSON: one alert, one error message, or an array for a split delivery.
        let outcome = match parts {
            Err(e) => Outcome::Error(e.to_string()),
            Ok(parts) if parts.len() == 1 && parts[0].at.is_none() => {
                match parts.into_iter().next().unwrap().result {
                    Err(e) => Outcome::Error(e.to_string()),
                    Ok(alert) => {
                        if alert.raw != original {
                            failures.push(format!("{label}: raw is not the original document"));
                        }
                        Outcome::Alert(comparable(&alert, started, &label))
                    }
                }
            }
            Ok(parts) => {
                let mut items = Vec::new();
                for (i, p) in parts.into_iter().enumerate() {
                    let at = p.at.clone().unwrap_or_default();
                    match p.result {
                        Err(e) => items.push(serde_json::json!({"at": at, "error": e.to_string()})),
                        Ok(alert) => {
                            let own = original.pointer(&format!("/data/events/{i}"));
                            if Some(&alert.raw) != own {
                                failures.push(format!("{label}: raw of {at} is not that event"));
                            }
                            items.push(comparable(&alert, started, &label));
                        }
                    }
                }
                Outcome::Alert(Value::Array(items))
            }
        };
        match outcome {
            Outcome::Alert(actual) => {
                if bless {
                    let pretty = serde_json::to_string_pretty(&actual).unwrap();
                    write(&expected_path, &format!("{pretty}\n"));
                    let _ = fs::remove_file(&error_path);
                    continue;
                }
                match fs::read(&expected_path) {
                    Err(_) => failures.push(format!(
                        "{label}: normalized fine but {} is missing; got:\n{}",
                        expected_path.display(),
                        serde_json::to_string_pretty(&actual).unwrap()
                    )),
                    Ok(text) => {
                        let expected: Value = serde_json::from_slice(&text).unwrap();
                        if expected != actual {
                            failures.push(format!(
                                "{label}: output differs\n--- expected\n{}\n--- actual\n{}",
                                serde_json::to_string_pretty(&expected).unwrap(),
                                serde_json::to_string_pretty(&actual).unwrap()
                            ));
                        }
                    }
                }
            }
            Outcome::Error(message) => {
                if bless {
                    write(&error_path, &format!("{message}\n"));
                    let _ = fs::remove_file(&expected_path);
                    continue;
                }
                match fs::read_to_string(&error_path) {
                    Err(_) => failures.push(format!(
                        "{label}: failed but {} is missing; error: {message}",
                        error_path.display()
                    )),
                    Ok(want) if want.trim_end() == message => {}
                    Ok(want) => failures.push(format!(
                        "{label}: error differs\n--- expected\n{}\n--- actual\n{message}",
                        want.trim_end()
                    )),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} golden case(s) failed (DEPROVD_BLESS=1 rewrites expectations):\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn golden_expected_outputs_deserialize_into_the_model() {
    let mut checked = 0;
    for (_, case, input) in cases() {
        let path = input.with_file_name(format!("{case}.expected.json"));
        let Ok(text) = fs::read(&path) else {
            continue;
        };
        let value: Value = serde_json::from_slice(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let items = match value {
            Value::Array(items) => items
                .into_iter()
                .filter(|v| v.get("error").is_none())
                .collect(),
            one => vec![one],
        };
        for mut item in items {
            // A time of receipt is written as the word `receipt` (see `comparable`).
            if item["time"] == "receipt" {
                item["time"] = "2026-01-01T00:00:00Z".into();
            }
            let alert: Alert = serde_json::from_value(item)
                .unwrap_or_else(|e| panic!("{} does not fit the model: {e}", path.display()));
            assert!(
                CATEGORIES.contains(&alert.category.as_str()),
                "{}: category `{}` is outside the vocabulary",
                path.display(),
                alert.category
            );
            for s in &alert.subjects {
                assert!(
                    super::fields::has_identifier(s),
                    "{}: subject without identifier",
                    path.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "no expected outputs found");
}
