//! Field parsers shared by the normalizers, so that `DOMAIN\user`, UPNs, epoch times and severity
//! names mean the same thing whatever format carried them.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Alert, Host, Indicator, NormalizeError, Severity, Source, Subject};

/// Smallest epoch-millisecond value we accept (1973-03-03). Anything below is almost certainly epoch
/// *seconds*, which would silently land in January 1970 and ruin time-to-containment; rejecting it
/// with a precise message is kinder than guessing.
const MIN_EPOCH_MS: i64 = 100_000_000_000;

/// Longest echo of a sender's value inside an error message. Messages go to dead-letter headers and
/// logs; a 1 MB `time` string must not come back in full.
const ECHO_MAX: usize = 64;
/// Longest whole error reason (serde's messages echo field names we do not control).
const REASON_MAX: usize = 512;

/// `text` cut to at most `max` characters (on a char boundary), with `…` when cut.
fn clip_to(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

/// A sender's value, shortened for quoting in an error message.
pub(crate) fn echo(value: impl std::fmt::Display) -> String {
    clip_to(&value.to_string(), ECHO_MAX)
}

/// An error reason, bounded in length.
pub(crate) fn bounded_reason(reason: String) -> String {
    if reason.len() <= REASON_MAX {
        reason
    } else {
        clip_to(&reason, REASON_MAX)
    }
}

/// A non-empty, trimmed string at `v`, or `None` (absent, null, not a string, or blank).
pub(crate) fn str_of(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Why one field's value could not be read. The message names the value, never the field: the
/// caller knows which field it read and says so (`result._time: …`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum FieldError {
    /// Not a whole number where epoch milliseconds were expected (the value, echoed).
    #[error("`{0}` is not an integer number of epoch milliseconds")]
    NotEpochMs(String),
    /// A number too small for epoch milliseconds: almost certainly seconds.
    #[error("{0} is before 1973 in epoch milliseconds; send milliseconds, not seconds")]
    SecondsForMs(i64),
    /// A number of epoch milliseconds chrono cannot represent.
    #[error("{0} epoch milliseconds is out of range")]
    MsOutOfRange(i64),
    /// Not a string where RFC 3339 text was expected (the value, echoed).
    #[error("`{0}` is not an RFC 3339 string")]
    NotRfc3339String(String),
    /// A string that does not parse as RFC 3339.
    #[error("`{value}` is not RFC 3339 ({error})")]
    BadRfc3339 { value: String, error: String },
    /// Neither a number nor a string where epoch seconds were expected (the value, echoed).
    #[error("`{0}` is not epoch seconds")]
    NotEpochSeconds(String),
    /// A number too small to be an epoch-seconds event time (the text, echoed).
    #[error("{0} is not an epoch-seconds event time")]
    TooEarlySeconds(String),
    /// A number of epoch seconds chrono cannot represent (the text, echoed).
    #[error("{0} epoch seconds is out of range")]
    SecondsOutOfRange(String),
    /// The alert names more accounts than one alert may (see [`MAX_SUBJECTS`]).
    #[error("more than {MAX_SUBJECTS} distinct subjects; refusing to normalize a mass event")]
    TooManySubjects,
}

/// Epoch milliseconds → time.
pub(crate) fn time_from_epoch_ms(v: &Value) -> Result<DateTime<Utc>, FieldError> {
    let ms = if let Some(i) = v.as_i64() {
        i
    } else if let Some(f) = v.as_f64().filter(|f| f.is_finite() && f.fract() == 0.0) {
        f as i64
    } else {
        return Err(FieldError::NotEpochMs(echo(v)));
    };
    if ms < MIN_EPOCH_MS {
        return Err(FieldError::SecondsForMs(ms));
    }
    DateTime::<Utc>::from_timestamp_millis(ms).ok_or(FieldError::MsOutOfRange(ms))
}

/// RFC 3339 string → time (any offset, converted to UTC).
pub(crate) fn time_from_rfc3339(v: &Value) -> Result<DateTime<Utc>, FieldError> {
    let s = v
        .as_str()
        .ok_or_else(|| FieldError::NotRfc3339String(echo(v)))?;
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| FieldError::BadRfc3339 {
            value: echo(s),
            error: e.to_string(),
        })
}

/// Adds `new` to `list` (merged per account) and fails once the alert names more than
/// [`MAX_SUBJECTS`] accounts; `None` (a user object naming nothing) is skipped.
pub(crate) fn push_subject(
    list: &mut Vec<Subject>,
    new: Option<Subject>,
) -> Result<(), FieldError> {
    if let Some(s) = new.filter(has_identifier) {
        merge_subject(list, s);
        if list.len() > MAX_SUBJECTS {
            return Err(FieldError::TooManySubjects);
        }
    }
    Ok(())
}

/// Sets label `key` when the vendor gave a value.
pub(crate) fn put_label(labels: &mut BTreeMap<String, String>, key: &str, v: Option<&str>) {
    if let Some(v) = v {
        labels.insert(key.to_string(), v.to_string());
    }
}

/// Appends an indicator of `kind` when the vendor gave a value, once per `(kind, value)`.
pub(crate) fn push_indicator(out: &mut Vec<Indicator>, kind: &str, v: Option<&str>) {
    if let Some(value) = v {
        let i = Indicator {
            kind: kind.into(),
            value: value.into(),
        };
        if !out.contains(&i) {
            out.push(i);
        }
    }
}

/// Indicators in order of first appearance, each `(kind, value)` once. A set, not a scan of the
/// list: observables are vendor-controlled and may number thousands.
#[derive(Default)]
pub(crate) struct Indicators {
    list: Vec<Indicator>,
    seen: HashSet<(String, String)>,
}

impl Indicators {
    /// Adds `(kind, v)` when the vendor gave a value not seen yet.
    pub(crate) fn push(&mut self, kind: &str, v: Option<&str>) {
        if let Some(value) = v {
            if self.seen.insert((kind.to_string(), value.to_string())) {
                self.list.push(Indicator {
                    kind: kind.into(),
                    value: value.into(),
                });
            }
        }
    }

    pub(crate) fn into_vec(self) -> Vec<Indicator> {
        self.list
    }
}

/// Severity by name, case-insensitive, with the common aliases vendors use.
pub(crate) fn severity_from_name(name: &str) -> Option<Severity> {
    let name = name.trim();
    let is = |s: &str| name.eq_ignore_ascii_case(s);
    if is("informational") || is("info") || is("information") {
        Some(Severity::Informational)
    } else if is("low") {
        Some(Severity::Low)
    } else if is("medium") || is("moderate") {
        Some(Severity::Medium)
    } else if is("high") {
        Some(Severity::High)
    } else if is("critical") {
        Some(Severity::Critical)
    } else {
        None
    }
}

/// Reads one account name as senders write it:
/// - `DOMAIN\user` → `domain` + `username` (split at the first backslash);
/// - contains `@` and no backslash → `email` (a UPN is treated as an email: that is how IdPs key it);
/// - anything else → `username`.
///
/// Returns `None` for a blank name.
pub(crate) fn subject_from_name(name: &str) -> Option<Subject> {
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let mut s = Subject::default();
    if let Some((domain, user)) = name.split_once('\\') {
        let (domain, user) = (domain.trim(), user.trim());
        if user.is_empty() {
            return None;
        }
        s.username = Some(user.to_string());
        if !domain.is_empty() {
            s.domain = Some(domain.to_string());
        }
    } else if name.contains('@') {
        s.email = Some(name.to_string());
    } else {
        s.username = Some(name.to_string());
    }
    Some(s)
}

/// Trims every identifier of a sender-written subject and drops the blank ones, so that
/// `{"email": " ", "username": "jdoe"}` is the username `jdoe`, not an email of one space.
pub(crate) fn tidy_subject(s: &mut Subject) {
    for field in [
        &mut s.email,
        &mut s.username,
        &mut s.domain,
        &mut s.display_name,
    ] {
        *field = field
            .take()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty());
    }
    s.ids.retain(|_, v| !v.trim().is_empty());
    for v in s.ids.values_mut() {
        *v = v.trim().to_string();
    }
}

/// Whether a subject names an account at all (a non-blank email, username or per-system id).
pub(crate) fn has_identifier(s: &Subject) -> bool {
    let set = |o: &Option<String>| o.as_deref().is_some_and(|v| !v.trim().is_empty());
    set(&s.email) || set(&s.username) || s.ids.values().any(|v| !v.trim().is_empty())
}

/// Most distinct subjects one alert may name. Merging is quadratic in this bound, and an alert naming
/// more accounts than this is a mass event for a human, not for automatic containment: it is
/// dead-lettered with a reason instead of silently truncated (a dropped account is worse than none).
pub(crate) const MAX_SUBJECTS: usize = 1000;

/// Adds `new` to `list`, merging it into an existing entry that names the same account: same email
/// (case-insensitive), same per-system id, or same username with compatible domains. Alerts often
/// name one user in several places (actor, evidence, resources); policies must see it once, or a
/// single compromise would count as several subjects against the blast-radius breaker.
pub(crate) fn merge_subject(list: &mut Vec<Subject>, new: Subject) {
    let same = |a: &Subject| {
        let eq = |x: &Option<String>, y: &Option<String>| match (x, y) {
            (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
            _ => false,
        };
        let domains_ok = match (&a.domain, &new.domain) {
            (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
            _ => true,
        };
        eq(&a.email, &new.email)
            || (eq(&a.username, &new.username) && domains_ok)
            || new.ids.iter().any(|(k, v)| a.ids.get(k) == Some(v))
    };
    match list.iter_mut().find(|a| same(a)) {
        Some(old) => {
            // A conflicting value (two different emails) would mean the match was wrong; only fill gaps.
            old.email = old.email.take().or(new.email);
            old.username = old.username.take().or(new.username);
            old.domain = old.domain.take().or(new.domain);
            old.display_name = old.display_name.take().or(new.display_name);
            if new.kind != Default::default() {
                old.kind = new.kind;
            }
            for (k, v) in new.ids {
                old.ids.entry(k).or_insert(v);
            }
        }
        None => list.push(new),
    }
}

impl NormalizeError {
    /// `format` refuses the document for `reason` (bounded in length: reasons echo sender values).
    pub(crate) fn invalid(format: &'static str, reason: impl std::fmt::Display) -> Self {
        NormalizeError::Invalid {
            format,
            reason: bounded_reason(reason.to_string()),
        }
    }
}

/// What every vendor format's [`Normalizer::normalize`](super::Normalizer::normalize) does around
/// its mapping: refuse anything but a JSON object (saying what `format` expected), map the object
/// with `build`, and keep the untouched document as `raw` without copying it.
pub(crate) fn normalize_object(
    format: &'static str,
    expected: &str,
    doc: Value,
    build: impl FnOnce(&Value) -> Result<Alert, NormalizeError>,
) -> Result<Alert, NormalizeError> {
    if !doc.is_object() {
        return Err(NormalizeError::invalid(
            format,
            format!("expected a JSON object ({expected})"),
        ));
    }
    let mut alert = build(&doc)?;
    alert.raw = doc;
    Ok(alert)
}

impl Source {
    /// The source of a vendor format's alerts: `vendor`'s `product`, mapped by `format`.
    pub(crate) fn of(vendor: &str, product: &str, format: &'static str) -> Source {
        Source {
            vendor: vendor.into(),
            product: Some(product.into()),
            format: format.into(),
        }
    }
}

/// Building an alert field by field: the normalizers start from the four facts every alert has and
/// add what the document carries, with the same merging and bounds whatever the format.
impl Alert {
    /// An alert with only its identity, time and severity; category `other`, nothing else yet.
    pub(crate) fn new(
        source: Source,
        id: String,
        time: DateTime<Utc>,
        severity: Severity,
    ) -> Alert {
        Alert {
            id,
            source,
            time,
            severity,
            severity_score: None,
            category: "other".into(),
            title: String::new(),
            subjects: Vec::new(),
            host: None,
            indicators: Vec::new(),
            labels: BTreeMap::new(),
            raw: Value::Null,
        }
    }

    /// Adds a subject (see [`push_subject`]).
    pub(crate) fn add_subject(&mut self, s: Option<Subject>) -> Result<(), FieldError> {
        push_subject(&mut self.subjects, s)
    }

    /// Adds an indicator when the vendor gave a value (see [`push_indicator`]).
    pub(crate) fn add_indicator(&mut self, kind: &str, v: Option<&str>) {
        push_indicator(&mut self.indicators, kind, v);
    }

    /// Sets a label when the vendor gave a value.
    pub(crate) fn add_label(&mut self, key: &str, v: Option<&str>) {
        put_label(&mut self.labels, key, v);
    }

    /// Sets label `key` to the comma-joined `values` when there are any (ATT&CK ids, products).
    pub(crate) fn add_list_label<'a>(
        &mut self,
        key: &str,
        values: impl IntoIterator<Item = &'a str>,
    ) {
        let joined = values.into_iter().collect::<Vec<_>>().join(",");
        if !joined.is_empty() {
            self.labels.insert(key.into(), joined);
        }
    }

    /// Sets the host unless it names nothing.
    pub(crate) fn set_host(&mut self, host: Host) {
        self.host = (host != Host::default()).then_some(host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn account_names_split_by_shape() {
        let s = subject_from_name(r"CORP\jdoe").unwrap();
        assert_eq!(
            (s.domain.as_deref(), s.username.as_deref(), s.email),
            (Some("CORP"), Some("jdoe"), None)
        );
        let s = subject_from_name("jdoe@corp.example").unwrap();
        assert_eq!(s.email.as_deref(), Some("jdoe@corp.example"));
        assert_eq!(s.username, None);
        // A backslash wins over `@`: `CORP\jdoe@x` is a down-level name, not an email.
        let s = subject_from_name(r"CORP\jdoe@x").unwrap();
        assert_eq!(s.username.as_deref(), Some("jdoe@x"));
        assert_eq!(
            subject_from_name("  jdoe ").unwrap().username.as_deref(),
            Some("jdoe")
        );
        assert!(subject_from_name("  ").is_none());
        assert!(subject_from_name(r"CORP\").is_none());
    }

    #[test]
    fn epoch_seconds_are_rejected_not_misread() {
        assert!(
            time_from_epoch_ms(&json!(1_700_000_000))
                .unwrap_err()
                .to_string()
                .contains("not seconds")
        );
        assert_eq!(
            time_from_epoch_ms(&json!(1_700_000_000_123i64))
                .unwrap()
                .to_rfc3339(),
            "2023-11-14T22:13:20.123+00:00"
        );
        assert!(time_from_epoch_ms(&json!("1700000000000")).is_err());
        assert!(
            time_from_epoch_ms(&json!(i64::MAX))
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
    }

    #[test]
    fn echoed_values_and_reasons_are_bounded() {
        let long = "é".repeat(10_000);
        assert_eq!(echo(&long).chars().count(), ECHO_MAX + 1);
        assert!(bounded_reason(long.clone()).chars().count() <= REASON_MAX + 1);
        assert_eq!(echo("short"), "short");
        let err = time_from_epoch_ms(&json!([long])).unwrap_err().to_string();
        assert!(err.len() < 300, "{err}");
    }

    #[test]
    fn severity_names_are_case_insensitive_with_aliases() {
        assert_eq!(severity_from_name("HIGH"), Some(Severity::High));
        assert_eq!(severity_from_name("Info"), Some(Severity::Informational));
        assert_eq!(severity_from_name("moderate"), Some(Severity::Medium));
        assert_eq!(severity_from_name("severe"), None);
    }

    #[test]
    fn merge_collapses_the_same_account_named_twice() {
        let mut list = Vec::new();
        merge_subject(&mut list, subject_from_name(r"CORP\jdoe").unwrap());
        let mut with_email = subject_from_name("jdoe").unwrap();
        with_email.email = Some("jdoe@corp.example".into());
        merge_subject(&mut list, with_email);
        merge_subject(&mut list, subject_from_name("JDOE@corp.example").unwrap());
        merge_subject(&mut list, subject_from_name(r"OTHER\jdoe").unwrap());
        assert_eq!(list.len(), 2, "{list:?}");
        assert_eq!(list[0].email.as_deref(), Some("jdoe@corp.example"));
        assert_eq!(list[0].domain.as_deref(), Some("CORP"));
        assert_eq!(list[1].domain.as_deref(), Some("OTHER"));
    }
}
