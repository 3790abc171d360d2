//! `splunk`: the Splunk alert-action webhook payload (`{sid, search_name, app, owner, results_link,
//! result: {…}}`), including Enterprise Security notables inside `result`.
//!
//! `result` is the first row of the search, every value a string (or an array for multi-value
//! fields), so numbers are parsed from strings here. Splunk's `_time` is epoch *seconds* (with an
//! optional fraction): unlike the millisecond fields of other formats that is Splunk's documented
//! meaning, so it is read as seconds. Without `_time` the dispatch time in a scheduled search's
//! `sid` stands in, else the time of receipt (noted): Splunk's own documented example payload has
//! neither. A plain saved search has no severity at all; it becomes `informational` (never
//! escalates) with label `severity_missing`, rather than being lost. ES notables of the `access` /
//! `identity` security domain are about an account; one without any user is still taken, as
//! notify-only with a `no_subject` problem, so its notification is not lost. Full mapping tables:
//! `docs/alert-model.md`.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::fields::{
    FieldError, default_severity, echo, is_placeholder, is_unknown, normalize_object, problem,
    receipt_time, severity_from_name, str_of, subject_from_name, time_from_rfc3339,
};
use super::generic::severity_from_score;
use super::ocsf::{category_from_technique, category_from_text};
use super::{Alert, AlertProblem, Host, NormalizeError, Normalizer, ProblemKind, Severity, Source};

const FORMAT: &str = "splunk";
/// Smallest `_time` accepted, in seconds (2001-09-09): a smaller number is not a Splunk event time.
const MIN_EPOCH_S: f64 = 1_000_000_000.0;

/// Splunk alert-action webhook normalizer.
pub(crate) struct Splunk;

impl Normalizer for Splunk {
    fn name(&self) -> &'static str {
        FORMAT
    }

    fn detect(&self, doc: &Value) -> bool {
        doc.get("sid").is_some_and(Value::is_string)
            && doc.get("search_name").is_some()
            && doc.get("result").is_some_and(Value::is_object)
    }

    fn normalize(&self, doc: Value) -> Result<Alert, NormalizeError> {
        normalize_object(FORMAT, "a Splunk webhook payload", doc, build)
    }
}

fn invalid(reason: impl std::fmt::Display) -> NormalizeError {
    NormalizeError::invalid(FORMAT, reason)
}

/// Every non-blank, non-placeholder string of a single- or multi-value field (ES and CIM searches
/// write `unknown` or `-` when they know nothing).
fn values(v: Option<&Value>) -> Vec<&str> {
    strings(v).into_iter().filter(|s| !is_unknown(s)).collect()
}

/// Every non-blank string of a single- or multi-value field, placeholders included: the account
/// fields, whose placeholders the subject reader drops and notes.
fn strings(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(|x| str_of(Some(x))).collect(),
        other => str_of(other).into_iter().collect(),
    }
}

/// The first value of a field.
fn first(v: Option<&Value>) -> Option<&str> {
    values(v).into_iter().next()
}

/// `_time` as Splunk writes it: epoch seconds (string or number, optional fraction) or RFC 3339.
fn parse_time(v: &Value) -> Result<DateTime<Utc>, FieldError> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        other => return Err(FieldError::NotEpochSeconds(echo(other))),
    };
    match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() => {
            if secs < MIN_EPOCH_S {
                return Err(FieldError::TooEarlySeconds(echo(&text)));
            }
            DateTime::<Utc>::from_timestamp_millis((secs * 1000.0).round() as i64)
                .ok_or_else(|| FieldError::SecondsOutOfRange(echo(&text)))
        }
        _ => time_from_rfc3339(&Value::String(text)),
    }
}

/// The dispatch time embedded in a scheduled search id (`scheduler__…_at_1772356500_123`).
fn time_from_sid(sid: &str) -> Option<DateTime<Utc>> {
    let (_, tail) = sid.rsplit_once("_at_")?;
    let secs: i64 = tail.split('_').next()?.parse().ok()?;
    DateTime::<Utc>::from_timestamp(secs, 0).filter(|_| secs as f64 >= MIN_EPOCH_S)
}

fn build(doc: &Value) -> Result<Alert, NormalizeError> {
    let sid = str_of(doc.get("sid")).ok_or_else(|| invalid("sid is missing or blank"))?;
    let search_name = str_of(doc.get("search_name"));
    let result = doc
        .get("result")
        .filter(|r| r.is_object())
        .ok_or_else(|| invalid("result is missing or not an object"))?;
    let r = |k: &str| first(result.get(k));

    let id = r("event_id").unwrap_or(sid).to_string();

    let mut notes = Vec::new();
    let time = match result.get("_time").filter(|v| !v.is_null()) {
        Some(t) => match parse_time(t) {
            Ok(t) => Some(t),
            Err(e) => {
                notes.push(problem(
                    ProblemKind::TimeUnreadable,
                    format!("result._time: {e}"),
                ));
                None
            }
        },
        None => None,
    }
    .or_else(|| time_from_sid(sid))
    .unwrap_or_else(|| receipt_time(&["result._time", "sid"], &mut notes));

    let mut severity_missing = false;
    let numeric = r("severity").and_then(|s| s.parse::<f64>().ok());
    let by_name = |field: &str, v: &str, notes: &mut Vec<AlertProblem>| {
        severity_from_name(v).unwrap_or_else(|| {
            default_severity(
                format!(
                    "{field} `{}` is not informational, low, medium, high or critical",
                    echo(v)
                ),
                notes,
            )
        })
    };
    let (severity, mut severity_score) = match (r("urgency"), r("severity"), numeric) {
        (Some(u), _, _) => (by_name("result.urgency", u, &mut notes), numeric),
        (None, Some(_), Some(n)) => match severity_from_score(n) {
            Some(sev) => (sev, Some(n)),
            None => (
                default_severity(format!("result.severity {n} is outside 0–100"), &mut notes),
                Some(n),
            ),
        },
        (None, Some(s), None) => (by_name("result.severity", s, &mut notes), None),
        (None, None, _) => {
            severity_missing = true;
            (Severity::Informational, None)
        }
    };
    if let Some(risk) = r("risk_score").and_then(|s| s.parse::<f64>().ok()) {
        severity_score.get_or_insert(risk);
    }

    let rule_name = r("rule_name").or_else(|| r("rule_title"));
    let techniques = values(result.get("annotations.mitre_attack"));
    let category = [rule_name, search_name, r("category"), r("signature")]
        .into_iter()
        .flatten()
        .find_map(category_from_text)
        .or_else(|| techniques.iter().find_map(|t| category_from_technique(t)))
        .unwrap_or("other")
        .to_string();

    let es = str_of(doc.get("app")) == Some("SplunkEnterpriseSecuritySuite")
        || result.get("event_id").is_some()
        || result.get("rule_name").is_some();
    let product = if es { "enterprise security" } else { "splunk" };
    let mut alert = Alert::new(
        Source::of("splunk", product, FORMAT),
        id,
        time,
        severity,
        notes,
    );
    alert.severity_score = severity_score;
    alert.category = category;
    alert.title = rule_name.or(search_name).unwrap_or_default().to_string();
    let mut rba_system = None;
    for key in ["user", "src_user"] {
        for name in strings(result.get(key)) {
            alert
                .add_subject(subject_from_name(name))
                .map_err(invalid)?;
        }
    }
    // Risk-based alerting: a "Risk Threshold Exceeded" notable names the entity whose risk crossed
    // the threshold in `risk_object`, typed by `risk_object_type` (`user`, `system`, `other`).
    let risk_object = r("risk_object").filter(|o| !is_placeholder(o));
    let risk_object_type = r("risk_object_type").map(str::to_ascii_lowercase);
    match risk_object_type.as_deref() {
        Some("user") => {
            for name in strings(result.get("risk_object")) {
                alert
                    .add_subject(subject_from_name(name))
                    .map_err(invalid)?;
            }
        }
        Some("system") if r("dest").is_none() && r("dest_nt_host").is_none() => {
            rba_system = risk_object;
        }
        _ => {}
    }
    let domain = r("security_domain");
    let about_a_user = risk_object_type.as_deref() == Some("user")
        || domain.is_some_and(|d| {
            d.eq_ignore_ascii_case("access") || d.eq_ignore_ascii_case("identity")
        });
    if alert.subjects.is_empty() && about_a_user {
        let detail = format!(
            "notable {} of security_domain `{}` names no account (result.user, result.src_user \
             and a user risk_object are missing, blank or placeholders); notify-only",
            echo(&alert.id),
            domain.unwrap_or("-")
        );
        alert.note(ProblemKind::NoSubject, detail);
    }

    let mut host = Host::default();
    let is_ip = |s: &str| s.parse::<IpAddr>().is_ok();
    match r("dest") {
        Some(d) if is_ip(d) => host.ips.push(d.to_string()),
        Some(d) => host.hostname = Some(d.to_string()),
        None => {
            host.hostname = r("dest_nt_host")
                .or(rba_system)
                .or_else(|| r("host"))
                .map(str::to_string)
        }
    }
    if let Some(ip) = r("dest_ip").filter(|ip| !host.ips.iter().any(|h| h == ip)) {
        host.ips.push(ip.to_string());
    }
    alert.set_host(host);
    for src in values(result.get("src"))
        .into_iter()
        .chain(values(result.get("src_ip")))
    {
        alert.add_indicator(if is_ip(src) { "ip" } else { "hostname" }, Some(src));
    }
    alert.add_indicator("url", r("url"));
    if let Some(hash) = r("file_hash") {
        let kind = match hash.len() {
            32 => "md5",
            40 => "sha1",
            64 => "sha256",
            _ => "hash",
        };
        alert.add_indicator(kind, Some(hash));
    }

    if severity_missing {
        alert.add_label("severity_missing", Some("true"));
    }
    alert.add_label("search_name", search_name);
    alert.add_label("sid", Some(sid));
    alert.add_label("app", str_of(doc.get("app")));
    alert.add_label("owner", str_of(doc.get("owner")));
    alert.add_label("results_link", str_of(doc.get("results_link")));
    alert.add_label("rule_name", rule_name);
    alert.add_label("security_domain", domain);
    alert.add_list_label("mitre_techniques", techniques);
    alert.add_label("risk_object", risk_object);
    alert.add_label("risk_object_type", risk_object_type.as_deref());
    Ok(alert)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn detects_webhook_payloads_only() {
        assert!(Splunk.detect(&json!({"sid": "s", "search_name": "n", "result": {}})));
        assert!(!Splunk.detect(&json!({"sid": "s", "search_name": "n"})));
        assert!(!Splunk.detect(&json!({"id": "x", "severity": "high"})));
    }

    #[test]
    fn splunk_time_is_epoch_seconds_with_fraction_or_rfc3339() {
        assert_eq!(
            parse_time(&json!("1772356500.250")).unwrap().to_rfc3339(),
            "2026-03-01T09:15:00.250+00:00"
        );
        assert_eq!(
            parse_time(&json!("2026-03-01T10:15:00+01:00"))
                .unwrap()
                .to_rfc3339(),
            "2026-03-01T09:15:00+00:00"
        );
        assert!(parse_time(&json!("12")).is_err());
        assert_eq!(
            time_from_sid("scheduler__admin__search__RMD5abc_at_1772356500_123")
                .unwrap()
                .to_rfc3339(),
            "2026-03-01T09:15:00+00:00"
        );
    }

    #[test]
    fn rba_risk_object_is_the_subject_when_a_user_and_the_host_when_a_system() {
        let notable = |kind: &str, object: &str| {
            json!({"sid": "s", "search_name": "Risk Threshold Exceeded For Object",
                "result": {"_time": "1772356500", "urgency": "high", "risk_object": object,
                    "risk_object_type": kind, "risk_score": "120"}})
        };
        let a = Splunk.normalize(notable("user", r"CORP\bwong")).unwrap();
        assert_eq!(a.subjects[0].username.as_deref(), Some("bwong"));
        assert_eq!(a.subjects[0].domain.as_deref(), Some("CORP"));
        assert_eq!(a.labels["risk_object_type"], "user");
        let a = Splunk.normalize(notable("system", "wks-0193")).unwrap();
        assert!(a.subjects.is_empty());
        assert_eq!(a.host.unwrap().hostname.as_deref(), Some("wks-0193"));
        let a = Splunk.normalize(notable("user", "unknown")).unwrap();
        assert_eq!(a.problems[0].kind, ProblemKind::NoSubject, "{a:?}");
    }

    #[test]
    fn placeholder_users_are_not_subjects() {
        assert_eq!(values(Some(&json!(["unknown", " jdoe ", "-"]))), ["jdoe"]);
        // `system` is a word in most fields; only an account field drops it (as a built-in).
        assert_eq!(values(Some(&json!("system"))), ["system"]);
    }
}
