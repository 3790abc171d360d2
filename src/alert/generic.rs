//! `generic`: the canonical [`Alert`] JSON, read forgivingly.
//!
//! This is the format for senders that write deprovd's own shape (scripts, SOAR playbooks, in-house
//! detections). It accepts what a person writing JSON by hand reasonably sends, and is strict only
//! where a mistake could contain the wrong account or hide an alert:
//!
//! | field | accepted | strict about |
//! |---|---|---|
//! | `id` | string or number; missing or blank → derived from the document's content, noted (`id_derived`) | other types are errors |
//! | `source` | `{vendor, product}` or a bare vendor string; absent → vendor `generic` | vendor must be non-blank |
//! | `time` | RFC 3339 string or epoch **milliseconds**; seconds (or micro-, nanoseconds) read by magnitude, noted | missing or unreadable: the time of receipt, noted (`time_from_receipt`) |
//! | `severity` | a name (case-insensitive; `info`, `moderate` aliases) or a number 0–10 / 0–100; unknown names and numbers outside 0–100: `medium`, noted (`severity_unknown`) | required: with `id`/`subjects` it is what marks a generic alert |
//! | `category` | any case, spaces or dashes for `_`; absent → `other` | a word outside the vocabulary becomes `other`, the original kept in label `category_original` |
//! | `subjects` | objects (the canonical shape) or bare strings; absent → none (notify-only alert) | a subject with no email, username or id is an error; more than 1000 distinct subjects is an error |
//! | `host` | object or a bare hostname string | |
//! | `labels` | string values; numbers and booleans are stringified | other value types are errors |
//!
//! **Numeric severity** (kept unchanged in `severity_score` unless the sender also gives
//! `severity_score`): a number ≤ 10 is read on a 0–10 scale, a number above 10 on a 0–100 scale
//! (divided by 10). On the 0–10 scale, CVSS bands: `0` informational, `< 4` low, `< 7` medium,
//! `< 9` high, `≥ 9` critical. The two scales overlap below 10, so a 0–100 sender should send a name.
//!
//! **Unknown fields.** The canonical struct denies unknown fields; this input does not, *at the top
//! level*: senders wrap alerts in envelopes and add their own fields (`tenant`, `tags`, `schema`), and
//! dead-lettering a real credential-theft alert over an extra key would fail open on containment. The
//! extra fields are not lost: `raw` is the whole original document, so policies can still read them.
//! *Nested* objects (`source`, `subjects[]`, `host`, `indicators[]`) stay strict, because a misspelt
//! key there (`emial`) silently drops the identifier that decides which account is contained — that
//! must fail loudly, naming the key.
//!
//! **Detection** (auto format): a JSON object without `class_uid` (so never an OCSF event) that has
//! `severity` and at least one of `id` or `subjects`. A document with subjects but no `id` is an
//! alert whose id is derived from its content (`sha256:…`), so a redelivery still dedups.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::fields::{
    TimeUnit, default_severity, echo, has_identifier, id_or_derived, problem, push_subject,
    read_time, receipt_time, severity_from_name, subject_from_name, tidy_subject,
};
use super::{
    Alert, AlertProblem, CATEGORIES, Host, Indicator, NormalizeError, Normalizer, ProblemKind,
    Severity, Source,
};

const FORMAT: &str = "generic";

/// The canonical alert JSON, forgiving where a sender reasonably can be (see the module docs).
pub(crate) struct Generic;

impl Normalizer for Generic {
    fn name(&self) -> &'static str {
        FORMAT
    }

    fn detect(&self, doc: &Value) -> bool {
        doc.as_object().is_some_and(|o| {
            !o.contains_key("class_uid")
                && o.contains_key("severity")
                && (o.contains_key("id") || o.contains_key("subjects"))
        })
    }

    fn normalize(&self, doc: Value) -> Result<Alert, NormalizeError> {
        let Some(obj) = doc.as_object() else {
            return Err(invalid(format!(
                "expected a JSON object, got {}",
                json_kind(&doc)
            )));
        };
        let mut alert = build(&doc, obj)?;
        alert.raw = doc;
        Ok(alert)
    }
}

fn invalid(reason: impl std::fmt::Display) -> NormalizeError {
    NormalizeError::invalid(FORMAT, reason)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `obj[key]`, treating JSON `null` as absent.
fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// Everything but `raw`, which the caller moves in afterwards (no copy of the document).
/// `doc` is the document, `obj` the same as a map.
fn build(doc: &Value, obj: &Map<String, Value>) -> Result<Alert, NormalizeError> {
    let mut notes = Vec::new();
    let id = match field(obj, "id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        None | Some(Value::String(_)) => id_or_derived(None, "`id`", doc, &mut notes),
        Some(v) => {
            return Err(invalid(format!(
                "`id` must be a string, got {}",
                json_kind(v)
            )));
        }
    };
    let source = parse_source(field(obj, "source"))?;
    let time = parse_time(field(obj, "time"), &mut notes);
    let (severity, score) = parse_severity(field(obj, "severity"), &mut notes)?;
    let severity_score = match field(obj, "severity_score") {
        None => score,
        Some(v) => Some(v.as_f64().ok_or_else(|| {
            invalid(format!(
                "`severity_score` must be a number, got {}",
                json_kind(v)
            ))
        })?),
    };
    let mut alert = Alert::new(source, id, time, severity, notes);
    alert.severity_score = severity_score;
    alert.labels = parse_labels(field(obj, "labels"))?;
    alert.category = parse_category(field(obj, "category"), &mut alert.labels)?;
    alert.title = match field(obj, "title") {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => {
            return Err(invalid(format!(
                "`title` must be a string, got {}",
                json_kind(v)
            )));
        }
    };
    alert.subjects = parse_subjects(field(obj, "subjects"))?;
    alert.host = parse_host(field(obj, "host"))?;
    alert.indicators = parse_indicators(field(obj, "indicators"))?;
    Ok(alert)
}

fn parse_source(v: Option<&Value>) -> Result<Source, NormalizeError> {
    let mut source = match v {
        None => Source {
            vendor: "generic".into(),
            product: None,
            format: String::new(),
        },
        Some(Value::String(s)) => Source {
            vendor: s.clone(),
            product: None,
            format: String::new(),
        },
        Some(v @ Value::Object(_)) => {
            Source::deserialize(v).map_err(|e| invalid(format!("`source`: {e}")))?
        }
        Some(v) => {
            return Err(invalid(format!(
                "`source` must be an object or a vendor string, got {}",
                json_kind(v)
            )));
        }
    };
    source.vendor = source.vendor.trim().to_lowercase();
    if source.vendor.is_empty() {
        return Err(invalid("`source.vendor` is blank"));
    }
    source.product = source
        .product
        .map(|p| p.trim().to_lowercase())
        .filter(|p| !p.is_empty());
    // Whatever the sender claims, this normalizer produced the alert.
    source.format = FORMAT.into();
    Ok(source)
}

/// `time` as RFC 3339 or epoch milliseconds; epoch seconds (or micro-, nanoseconds) are read by
/// magnitude and noted; missing or unreadable, the time of receipt, noted.
fn parse_time(v: Option<&Value>, notes: &mut Vec<AlertProblem>) -> DateTime<Utc> {
    match v.map(read_time) {
        None => receipt_time(&["time"], notes),
        Some(Ok((t, TimeUnit::Rfc3339 | TimeUnit::Millis))) => t,
        Some(Ok((t, unit))) => {
            let v = v.expect("read");
            notes.push(problem(
                ProblemKind::TimeUnit,
                format!(
                    "`time`: `{}` read as {}; send RFC 3339 or epoch milliseconds",
                    echo(v),
                    unit.name()
                ),
            ));
            t
        }
        Some(Err(e)) => {
            notes.push(problem(ProblemKind::TimeUnreadable, format!("`time`: {e}")));
            receipt_time(&["time"], notes)
        }
    }
}

/// Returns the severity and, when the sender gave a number, that number for `severity_score`.
/// An unknown name or a number outside 0–100 is the documented default, noted. Missing is an
/// error: with `id` or `subjects`, `severity` is what marks a document as a generic alert (its
/// detection), so a document without one is no alert of this format.
fn parse_severity(
    v: Option<&Value>,
    notes: &mut Vec<AlertProblem>,
) -> Result<(Severity, Option<f64>), NormalizeError> {
    let score = match v {
        None => {
            return Err(invalid(
                "missing required field `severity` (a name such as `high`, or a number 0–100)",
            ));
        }
        Some(Value::String(s)) => match severity_from_name(s) {
            Some(sev) => return Ok((sev, None)),
            None => match s.trim().parse::<f64>() {
                Ok(n) => n,
                Err(_) => {
                    let why = format!(
                        "`severity`: `{}` is neither a known name (informational, low, medium, \
                         high, critical) nor a number 0–100",
                        echo(s)
                    );
                    return Ok((default_severity(why, notes), None));
                }
            },
        },
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(v) => {
            let why = format!(
                "`severity` must be a name or a number, got {}",
                json_kind(v)
            );
            return Ok((default_severity(why, notes), None));
        }
    };
    Ok(match severity_from_score(score) {
        Some(sev) => (sev, Some(score)),
        None => {
            let why = format!("`severity`: {score} is outside 0–100");
            (default_severity(why, notes), Some(score))
        }
    })
}

/// Numeric severity → name. ≤ 10 reads as 0–10, above as 0–100; CVSS bands (see module docs).
pub(crate) fn severity_from_score(score: f64) -> Option<Severity> {
    if !(0.0..=100.0).contains(&score) {
        return None;
    }
    let ten = if score <= 10.0 { score } else { score / 10.0 };
    Some(if ten == 0.0 {
        Severity::Informational
    } else if ten < 4.0 {
        Severity::Low
    } else if ten < 7.0 {
        Severity::Medium
    } else if ten < 9.0 {
        Severity::High
    } else {
        Severity::Critical
    })
}

fn parse_category(
    v: Option<&Value>,
    labels: &mut BTreeMap<String, String>,
) -> Result<String, NormalizeError> {
    let given = match v {
        None => return Ok("other".into()),
        Some(Value::String(s)) => s,
        Some(v) => {
            return Err(invalid(format!(
                "`category` must be a string, got {}",
                json_kind(v)
            )));
        }
    };
    let word = given.trim().to_lowercase().replace([' ', '-'], "_");
    if CATEGORIES.contains(&word.as_str()) {
        return Ok(word);
    }
    if !word.is_empty() {
        labels
            .entry("category_original".into())
            .or_insert_with(|| given.clone());
    }
    Ok("other".into())
}

fn parse_labels(v: Option<&Value>) -> Result<BTreeMap<String, String>, NormalizeError> {
    let Some(v) = v else {
        return Ok(BTreeMap::new());
    };
    let Some(map) = v.as_object() else {
        return Err(invalid(format!(
            "`labels` must be an object of strings, got {}",
            json_kind(v)
        )));
    };
    map.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            Value::Number(_) | Value::Bool(_) => Ok((k.clone(), v.to_string())),
            _ => Err(invalid(format!(
                "`labels.{k}` must be a string, got {}",
                json_kind(v)
            ))),
        })
        .collect()
}

fn parse_subjects(v: Option<&Value>) -> Result<Vec<super::Subject>, NormalizeError> {
    let Some(v) = v else {
        return Ok(Vec::new());
    };
    let Some(items) = v.as_array() else {
        return Err(invalid(format!(
            "`subjects` must be an array, got {}",
            json_kind(v)
        )));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let subject = match item {
            Value::String(s) => subject_from_name(s)
                .ok_or_else(|| invalid(format!("`subjects[{i}]` is a blank name")))?,
            Value::Object(_) => {
                let mut s = super::Subject::deserialize(item)
                    .map_err(|e| invalid(format!("`subjects[{i}]`: {e}")))?;
                tidy_subject(&mut s);
                // Forgiving: `username: "CORP\\jdoe"` means what a bare `CORP\jdoe` means.
                if s.domain.is_none() {
                    let split = s.username.as_deref().and_then(subject_from_name);
                    if let Some(parsed) = split.filter(|p| p.domain.is_some()) {
                        s.domain = parsed.domain;
                        s.username = parsed.username;
                    }
                }
                if !has_identifier(&s) {
                    return Err(invalid(format!(
                        "`subjects[{i}]` has no identifier: set `email`, `username` or `ids`"
                    )));
                }
                s
            }
            other => {
                return Err(invalid(format!(
                    "`subjects[{i}]` must be an object or a name string, got {}",
                    json_kind(other)
                )));
            }
        };
        push_subject(&mut out, Some(subject)).map_err(|e| invalid(format!("`subjects`: {e}")))?;
    }
    Ok(out)
}

fn parse_host(v: Option<&Value>) -> Result<Option<Host>, NormalizeError> {
    let host = match v {
        None => return Ok(None),
        Some(Value::String(s)) => Host {
            hostname: Some(s.trim().to_string()).filter(|s| !s.is_empty()),
            ..Host::default()
        },
        Some(v @ Value::Object(_)) => {
            Host::deserialize(v).map_err(|e| invalid(format!("`host`: {e}")))?
        }
        Some(v) => {
            return Err(invalid(format!(
                "`host` must be an object or a hostname string, got {}",
                json_kind(v)
            )));
        }
    };
    Ok(Some(host).filter(|h| *h != Host::default()))
}

fn parse_indicators(v: Option<&Value>) -> Result<Vec<Indicator>, NormalizeError> {
    let Some(v) = v else {
        return Ok(Vec::new());
    };
    let Some(items) = v.as_array() else {
        return Err(invalid(format!(
            "`indicators` must be an array, got {}",
            json_kind(v)
        )));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            Indicator::deserialize(item).map_err(|e| invalid(format!("`indicators[{i}]`: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> Value {
        json!({"id": "a1", "time": "2026-01-01T00:00:00Z", "severity": "high"})
    }

    #[test]
    fn detects_generic_but_never_an_ocsf_event() {
        assert!(Generic.detect(&minimal()));
        assert!(Generic.detect(&json!({"severity": 3, "subjects": []})));
        assert!(!Generic.detect(&json!({"class_uid": 2004, "id": "x", "severity": "High"})));
        assert!(!Generic.detect(&json!({"id": "x"})));
        assert!(!Generic.detect(&json!(["id", "severity"])));
    }

    #[test]
    fn numeric_severity_bands_on_both_scales() {
        let cases = [
            (0.0, Severity::Informational),
            (3.9, Severity::Low),
            (4.0, Severity::Medium),
            (7.0, Severity::High),
            (9.0, Severity::Critical),
            (10.0, Severity::Critical),
            (10.5, Severity::Low),
            (45.0, Severity::Medium),
            (73.0, Severity::High),
            (100.0, Severity::Critical),
        ];
        for (score, want) in cases {
            assert_eq!(severity_from_score(score), Some(want), "score {score}");
        }
        assert_eq!(severity_from_score(-1.0), None);
        assert_eq!(severity_from_score(100.5), None);
        assert_eq!(severity_from_score(f64::NAN), None);
    }

    #[test]
    fn explicit_severity_score_wins_over_numeric_severity() {
        let mut doc = minimal();
        doc["severity"] = json!(8);
        doc["severity_score"] = json!(81.5);
        let a = Generic.normalize(doc).unwrap();
        assert_eq!((a.severity, a.severity_score), (Severity::High, Some(81.5)));
    }

    #[test]
    fn serialized_alert_reads_back_equal_except_raw() {
        let mut doc = minimal();
        doc["subjects"] = json!(["jdoe@corp.example", r"CORP\svc", {"ids": {"okta": "00u1"}}]);
        doc["host"] = json!("wks-7");
        let a = Generic.normalize(doc).unwrap();
        let again = Generic
            .normalize(serde_json::to_value(&a).unwrap())
            .unwrap();
        assert_eq!(
            Alert {
                raw: Value::Null,
                ..again
            },
            Alert {
                raw: Value::Null,
                ..a
            }
        );
    }

    #[test]
    fn blank_identifiers_are_dropped_not_kept_as_values() {
        let mut doc = minimal();
        doc["subjects"] = json!([{"email": " ", "username": " jdoe ", "ids": {"okta": ""}}]);
        let a = Generic.normalize(doc).unwrap();
        let s = &a.subjects[0];
        assert_eq!(
            (s.email.as_deref(), s.username.as_deref()),
            (None, Some("jdoe"))
        );
        assert!(s.ids.is_empty());
        let mut doc = minimal();
        doc["subjects"] = json!([{"email": "", "ids": {"okta": " "}}]);
        let err = Generic.normalize(doc).unwrap_err().to_string();
        assert!(err.contains("`subjects[0]` has no identifier"), "{err}");
    }

    #[test]
    fn raw_is_the_untouched_document() {
        let mut doc = minimal();
        doc["vendor_extra"] = json!({"nested": [1, 2]});
        let a = Generic.normalize(doc.clone()).unwrap();
        assert_eq!(a.raw, doc);
    }
}
