//! Field parsers shared by the normalizers, so that `DOMAIN\user`, UPNs, epoch times and severity
//! names mean the same thing whatever format carried them.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::Value;

pub(crate) use super::timestamps::{
    TimeUnit, read_time, receipt_time, time_from_rfc3339, time_or_receipt, vendor_time,
};
use super::{
    Alert, AlertProblem, Host, Indicator, NormalizeError, ProblemKind, Severity, Source, Subject,
};

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
    /// Neither a number nor a string where a time was expected (the value, echoed).
    #[error("`{0}` is neither an RFC 3339 string nor an epoch number")]
    NotATime(String),
    /// A number too small to be an event time in any epoch unit (the value, echoed).
    #[error("{0} is too small to be an epoch time in seconds or milliseconds")]
    EpochTooSmall(String),
    /// A number too large to be an event time in any epoch unit (the value, echoed).
    #[error("{0} is too large to be an epoch time in any unit")]
    EpochOutOfRange(String),
    /// The alert names more accounts than one alert may (see [`MAX_SUBJECTS`]).
    #[error("more than {MAX_SUBJECTS} distinct subjects; refusing to normalize a mass event")]
    TooManySubjects,
}

/// The documented default severity for one that cannot be read, noted (`severity_unknown`):
/// `why` says what was there.
pub(crate) fn default_severity(
    why: impl std::fmt::Display,
    notes: &mut Vec<AlertProblem>,
) -> Severity {
    notes.push(problem(
        ProblemKind::SeverityUnknown,
        format!(
            "{why}; using the default `{}`",
            super::DEFAULT_SEVERITY.as_str()
        ),
    ));
    super::DEFAULT_SEVERITY
}

/// A problem with a bounded detail.
pub(crate) fn problem(kind: ProblemKind, detail: String) -> AlertProblem {
    AlertProblem {
        kind,
        detail: bounded_reason(detail),
    }
}

/// Adds `new` to `list` (merged per account, see [`merge_subject`]) and fails once the alert names
/// more than [`MAX_SUBJECTS`] accounts; `None`, or a user object naming nothing but placeholders,
/// is skipped.
pub(crate) fn push_subject(
    list: &mut Vec<Subject>,
    new: Option<Subject>,
) -> Result<(), FieldError> {
    if let Some(s) = new {
        merge_subject(list, s);
        if list.len() > MAX_SUBJECTS {
            return Err(FieldError::TooManySubjects);
        }
    }
    Ok(())
}

/// Values vendors write into identity fields when they know nothing. They never become an
/// identifier: taken as one, `NULL SID` or `-` would merge unrelated users on one fake id and hand
/// a connector a name that is nobody (or, worse, somebody). Compared trimmed and case-insensitively.
pub(crate) const PLACEHOLDERS: &[&str] = &[
    "",
    "-",
    "--",
    "?",
    "n/a",
    "na",
    "none",
    "null",
    "(null)",
    "nil",
    "undefined",
    "unknown",
    "unknown user",
    "null sid",
    "s-1-0-0",
    "anonymous logon",
    "s-1-5-7",
    "00000000-0000-0000-0000-000000000000",
];

/// Windows' built-in service principals. They are real accounts, but not anyone's: no connector can
/// (or should try to) disable `NT AUTHORITY\SYSTEM`, and a directory user that happens to be called
/// `system` must not be contained because an EDR saw a process run as the local system. An alert
/// naming only these is about its host. Compared as [`PLACEHOLDERS`] are; a down-level name in the
/// `NT AUTHORITY` domain is dropped whatever its user part.
pub(crate) const BUILTIN_ACCOUNTS: &[&str] = &[
    "system",
    "local system",
    "localsystem",
    "nt authority\\system",
    "local service",
    "nt authority\\local service",
    "network service",
    "nt authority\\network service",
    "s-1-5-18",
    "s-1-5-19",
    "s-1-5-20",
];

/// The domain of Windows' built-in service principals (see [`BUILTIN_ACCOUNTS`]).
const NT_AUTHORITY: &str = "nt authority";

/// Whether `v` is a placeholder or a built-in service principal, not an identifier (see
/// [`PLACEHOLDERS`], [`BUILTIN_ACCOUNTS`]). A non-blank one is remembered for the alert's
/// `placeholder_identifier` problem (see [`collect_dropped`]).
pub(crate) fn is_placeholder(v: &str) -> bool {
    let v = v.trim();
    let is = |list: &[&str]| list.iter().any(|p| v.eq_ignore_ascii_case(p));
    let dropped = is(PLACEHOLDERS) || is(BUILTIN_ACCOUNTS);
    if dropped && !v.is_empty() {
        remember_dropped(v);
    }
    dropped
}

/// Whether `v` is one of the [`PLACEHOLDERS`] vendors write when they know nothing, in a field that
/// is not an account (a Splunk `urgency` of `unknown`): nothing is noted.
pub(crate) fn is_unknown(v: &str) -> bool {
    let v = v.trim();
    PLACEHOLDERS.iter().any(|p| v.eq_ignore_ascii_case(p))
}

/// Most distinct dropped values one alert notes: a document made of placeholders must not make an
/// alert of problems.
const DROPPED_MAX: usize = 8;

thread_local! {
    /// The placeholder identifiers dropped while one document is normalized on this thread: `Some`
    /// only inside [`collect_dropped`]. Normalization is synchronous (it runs on one thread from
    /// start to end, never across an `.await`), so the values dropped deep inside a normalizer's
    /// field readers reach the registry without every reader carrying a notes list.
    static DROPPED: std::cell::RefCell<Option<Vec<String>>> = const { std::cell::RefCell::new(None) };
}

fn remember_dropped(v: &str) {
    DROPPED.with_borrow_mut(|d| {
        if let Some(list) = d
            && list.len() < DROPPED_MAX
            && !list.iter().any(|x| x.eq_ignore_ascii_case(v))
        {
            list.push(echo(v));
        }
    });
}

/// Runs `f` (the normalization of one document) and returns, beside its result, the distinct
/// non-blank placeholder identifiers the field readers dropped meanwhile, in order of first sight.
pub(crate) fn collect_dropped<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    /// Restores the outer collection (none, normally) even if `f` panics.
    struct Scope(Option<Vec<String>>);
    impl Drop for Scope {
        fn drop(&mut self) {
            let outer = self.0.take();
            DROPPED.with_borrow_mut(|d| *d = outer);
        }
    }
    let outer = DROPPED.with_borrow_mut(|d| d.replace(Vec::new()));
    let scope = Scope(outer);
    let out = f();
    let dropped = DROPPED.with_borrow_mut(|d| d.take()).unwrap_or_default();
    drop(scope);
    (out, dropped)
}

/// Notes each dropped placeholder identifier on `alert` (`placeholder_identifier`).
pub(crate) fn note_dropped(alert: &mut Alert, dropped: Vec<String>) {
    for v in dropped {
        alert.note(
            ProblemKind::PlaceholderIdentifier,
            format!(
                "an identity field holds `{v}`, a placeholder or built-in account that names no \
                 one; not taken as an identifier"
            ),
        );
    }
}

/// The alert id of a document that carries none: `sha256:` and the hex SHA-256 of the document's
/// canonical JSON — object keys sorted (by code point) at every depth, no whitespace, strings and
/// numbers as serde_json writes them. A redelivery of the same document, however re-indented or
/// re-ordered by a forwarder, gets the same id (so it maps onto the same ledger entries); any
/// change of a value gives another.
pub(crate) fn derived_id(doc: &Value) -> String {
    use sha2::{Digest, Sha256};
    let bytes = serde_json::to_vec(&Canonical(doc)).expect("a JSON value serializes");
    format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
}

/// A [`Value`] serialized with its object keys sorted, whether or not serde_json's
/// `preserve_order` feature (which would keep insertion order) is switched on by some dependency.
struct Canonical<'a>(&'a Value);

impl serde::Serialize for Canonical<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                ser.collect_map(entries.into_iter().map(|(k, v)| (k, Canonical(v))))
            }
            Value::Array(items) => ser.collect_seq(items.iter().map(Canonical)),
            other => serde::Serialize::serialize(other, ser),
        }
    }
}

/// The vendor's id (`given`, read from `field`), or — when `doc`, the object that should carry it,
/// has none — the [`derived_id`] of `doc`, noted (`id_derived`): a readable alert is never
/// dead-lettered for want of an id.
pub(crate) fn id_or_derived(
    given: Option<&str>,
    field: &str,
    doc: &Value,
    notes: &mut Vec<AlertProblem>,
) -> String {
    match given {
        Some(id) => id.to_string(),
        None => {
            let id = derived_id(doc);
            notes.push(problem(
                ProblemKind::IdDerived,
                format!(
                    "{field} is missing or blank; the id is derived from the document's content, \
                     so only a redelivery of the same document is recognized as one"
                ),
            ));
            id
        }
    }
}

/// [`str_of`] for identity fields: `None` for a placeholder too.
pub(crate) fn ident(v: Option<&Value>) -> Option<&str> {
    str_of(v).filter(|s| !is_placeholder(s))
}

/// Drops every identifier of `s` that is a placeholder (and a placeholder display name).
fn drop_placeholders(s: &mut Subject) {
    for field in [
        &mut s.email,
        &mut s.username,
        &mut s.domain,
        &mut s.display_name,
    ] {
        if field.as_deref().is_some_and(is_placeholder) {
            *field = None;
        }
    }
    s.ids.retain(|_, v| !is_placeholder(v));
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
/// Returns `None` for a blank or placeholder name (see [`PLACEHOLDERS`]).
pub(crate) fn subject_from_name(name: &str) -> Option<Subject> {
    let name = name.trim();
    if is_placeholder(name) {
        return None;
    }
    let mut s = Subject::default();
    if let Some((domain, user)) = name.split_once('\\') {
        let (domain, user) = (domain.trim(), user.trim());
        if is_placeholder(user) {
            return None;
        }
        if domain.eq_ignore_ascii_case(NT_AUTHORITY) {
            remember_dropped(name);
            return None;
        }
        s.username = Some(user.to_string());
        if !is_placeholder(domain) {
            s.domain = Some(domain.to_string());
        }
    } else if name.contains('@') {
        s.email = Some(name.to_string());
    } else {
        s.username = Some(name.to_string());
    }
    Some(s)
}

/// Every identifier one account carries, as a vendor spells them, for [`account`] to merge into
/// one subject. Each is optional; placeholders are dropped when the subject is added.
#[derive(Default)]
pub(crate) struct Account<'a> {
    /// Login as written: bare (`jdoe`), down-level (`CORP\jdoe`) or a UPN.
    pub(crate) name: Option<&'a str>,
    /// The account's domain when given apart from the name (`CORP`, `corp.example`).
    pub(crate) domain: Option<&'a str>,
    /// UPN or email address; it is the subject's email.
    pub(crate) upn: Option<&'a str>,
    /// Human name, for audit only.
    pub(crate) display_name: Option<&'a str>,
    /// A Windows SID (`ids.windows`).
    pub(crate) sid: Option<&'a str>,
    /// Other per-system ids, `(system, id)`.
    pub(crate) ids: Vec<(&'static str, &'a str)>,
}

/// One subject from every identifier `a` carries: the UPN is the email, and a different UPN-like
/// name it replaces is kept as the username (`jdoe@corp.local` beside `jdoe@corp.example`).
pub(crate) fn account(a: &Account<'_>) -> Subject {
    let builtin_domain = a
        .domain
        .is_some_and(|d| d.trim().eq_ignore_ascii_case(NT_AUTHORITY));
    let name = match a.name {
        Some(n) if builtin_domain => {
            remember_dropped(&format!(
                "{}\\{}",
                a.domain.unwrap_or_default().trim(),
                n.trim()
            ));
            None
        }
        other => other,
    };
    let mut s = name.and_then(subject_from_name).unwrap_or_default();
    if let Some(d) = a.domain.filter(|d| !builtin_domain && !is_placeholder(d)) {
        s.domain.get_or_insert_with(|| d.to_string());
    }
    if let Some(upn) = a.upn.filter(|u| !is_placeholder(u)) {
        if let Some(old) = s.email.replace(upn.to_string()) {
            if !old.eq_ignore_ascii_case(upn) {
                s.username.get_or_insert(old);
            }
        }
    }
    if s.display_name.is_none() {
        s.display_name = a.display_name.map(str::to_string);
    }
    for (system, id) in a
        .sid
        .map(|sid| ("windows", sid))
        .into_iter()
        .chain(a.ids.iter().copied())
    {
        s.ids
            .entry(system.to_string())
            .or_insert_with(|| id.to_string());
    }
    s
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

/// Adds `new` to `list` (placeholders dropped; nothing when no identifier is left), merging it into
/// an existing entry that names the same account: same email
/// (case-insensitive), same per-system id, or same username with compatible domains. Alerts often
/// name one user in several places (actor, evidence, resources); policies must see it once, or a
/// single compromise would count as several subjects against the blast-radius breaker.
pub(crate) fn merge_subject(list: &mut Vec<Subject>, mut new: Subject) {
    drop_placeholders(&mut new);
    if !has_identifier(&new) {
        return;
    }
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
    /// An alert with only its identity, time and severity, and the problems noted while reading
    /// them; category `other`, nothing else yet.
    pub(crate) fn new(
        source: Source,
        id: String,
        time: DateTime<Utc>,
        severity: Severity,
        problems: Vec<AlertProblem>,
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
            problems,
            raw: Value::Null,
        }
    }

    /// Notes what was odd about the document (see [`AlertProblem`]).
    pub(crate) fn note(&mut self, kind: ProblemKind, detail: impl Into<String>) {
        self.problems.push(problem(kind, detail.into()));
    }

    /// The alert with its category and one-line title set (builder style).
    pub(crate) fn described(
        mut self,
        category: impl Into<String>,
        title: impl Into<String>,
    ) -> Alert {
        self.category = category.into();
        self.title = title.into();
        self
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
    fn epoch_numbers_are_read_by_magnitude_and_say_their_unit() {
        let at = |v: Value| read_time(&v).map(|(t, u)| (t.to_rfc3339(), u));
        let t = "2023-11-14T22:13:20+00:00".to_string();
        let t_ms = "2023-11-14T22:13:20.123+00:00".to_string();
        assert_eq!(at(json!(1_700_000_000)), Ok((t.clone(), TimeUnit::Seconds)));
        assert_eq!(at(json!("1700000000")), Ok((t.clone(), TimeUnit::Seconds)));
        assert_eq!(
            at(json!(1_700_000_000_123i64)),
            Ok((t_ms.clone(), TimeUnit::Millis))
        );
        assert_eq!(
            at(json!(1_700_000_000_123_000i64)),
            Ok((t_ms.clone(), TimeUnit::Micros))
        );
        assert_eq!(
            at(json!(1_700_000_000_123_000_000i64)),
            Ok((t_ms, TimeUnit::Nanos))
        );
        assert_eq!(
            at(json!("2023-11-14T23:13:20+01:00")),
            Ok((t, TimeUnit::Rfc3339))
        );
        // Below 2001 in seconds is no event time in any unit; nor is a number past every unit.
        assert!(
            at(json!(17_723_565))
                .unwrap_err()
                .to_string()
                .contains("too small")
        );
        assert!(
            at(json!(1e25))
                .unwrap_err()
                .to_string()
                .contains("too large")
        );
        assert!(at(json!(true)).is_err());
        assert!(at(json!("01/03/2026 09:15")).is_err());
    }

    #[test]
    fn vendor_time_notes_the_unit_and_falls_back_to_receipt() {
        let mut notes = Vec::new();
        let seconds = json!(1_700_000_000);
        let t = vendor_time(&[("time", Some(&seconds))], TimeUnit::Millis, &mut notes);
        assert_eq!(t.unwrap().timestamp(), 1_700_000_000);
        assert_eq!(notes[0].kind, ProblemKind::TimeUnit);
        assert!(
            notes[0].detail.contains("read as epoch seconds"),
            "{:?}",
            notes[0]
        );
        let mut notes = Vec::new();
        let bad = json!("yesterday");
        let before = Utc::now();
        let t = time_or_receipt(&[("published", Some(&bad))], TimeUnit::Rfc3339, &mut notes);
        assert!(t >= before && t <= Utc::now());
        let kinds: Vec<_> = notes.iter().map(|p| p.kind).collect();
        assert_eq!(
            kinds,
            [ProblemKind::TimeUnreadable, ProblemKind::TimeFromReceipt]
        );
    }

    #[test]
    fn placeholders_are_never_identifiers() {
        for p in [
            "NULL SID", " - ", "N/A", "unknown", "", "null", "None", "S-1-0-0",
        ] {
            assert!(is_placeholder(p), "{p:?}");
            assert!(subject_from_name(p).is_none(), "{p:?}");
        }
        assert!(subject_from_name(r"CORP\-").is_none());
        assert_eq!(subject_from_name(r"-\jdoe").unwrap().domain, None);
        let mut list = Vec::new();
        let fake = |name: &str| Subject {
            username: Some(name.into()),
            ids: [("windows".to_string(), "NULL SID".to_string())].into(),
            ..Subject::default()
        };
        merge_subject(&mut list, fake("alice"));
        merge_subject(&mut list, fake("bob"));
        assert_eq!(list.len(), 2, "a shared fake id merged two users: {list:?}");
        assert!(list.iter().all(|s| s.ids.is_empty()));
        merge_subject(&mut list, fake("-"));
        assert_eq!(
            list.len(),
            2,
            "a subject of placeholders only is no subject"
        );
    }

    #[test]
    fn every_identifier_of_one_account_becomes_one_subject() {
        let s = account(&Account {
            name: Some("jdoe"),
            domain: Some("CORP"),
            upn: Some("jdoe@corp.example"),
            sid: Some("S-1-5-21-1-2-3-1104"),
            ids: vec![("okta", "00u1")],
            ..Account::default()
        });
        assert_eq!(s.email.as_deref(), Some("jdoe@corp.example"));
        assert_eq!(s.username.as_deref(), Some("jdoe"));
        assert_eq!(s.domain.as_deref(), Some("CORP"));
        assert_eq!(s.ids["windows"], "S-1-5-21-1-2-3-1104");
        assert_eq!(s.ids["okta"], "00u1");
        // A UPN-shaped name that differs from the UPN is kept as the login.
        let s = account(&Account {
            name: Some("jdoe@corp.local"),
            upn: Some("jdoe@corp.example"),
            ..Account::default()
        });
        assert_eq!(
            (s.email.as_deref(), s.username.as_deref()),
            (Some("jdoe@corp.example"), Some("jdoe@corp.local"))
        );
    }

    #[test]
    fn a_derived_id_is_the_same_for_the_same_document_however_written() {
        let a = crate::json::from_slice(
            r#"{"b": {"y": [1, "two", {"q": null, "p": true}], "x": "é"}, "a": 1.5}"#.as_bytes(),
        )
        .unwrap();
        let b = crate::json::from_slice(
            b"{\n  \"a\" : 1.5,\n  \"b\":{\"x\":\"\\u00e9\",\"y\":[1,\"two\",{\"p\":true,\"q\":null}]}}",
        )
        .unwrap();
        let id = derived_id(&a);
        assert_eq!(
            id,
            derived_id(&b),
            "key order and whitespace changed the id"
        );
        assert!(id.starts_with("sha256:") && id.len() == 7 + 64, "{id}");
        // The canonical text: keys sorted at every depth, no whitespace.
        assert_eq!(
            serde_json::to_string(&Canonical(&a)).unwrap(),
            r#"{"a":1.5,"b":{"x":"é","y":[1,"two",{"p":true,"q":null}]}}"#
        );
        let other = json!({"a": 1.5, "b": {"x": "é", "y": [1, "two", {"p": false, "q": null}]}});
        assert_ne!(id, derived_id(&other), "a changed value kept the id");
        let reordered = json!({"a": 1.5, "b": {"x": "é", "y": ["two", 1, {"p": true, "q": null}]}});
        assert_ne!(id, derived_id(&reordered), "array order is content");
    }

    #[test]
    fn a_missing_id_is_derived_and_noted_a_given_one_kept() {
        let doc = json!({"title": "no id"});
        let mut notes = Vec::new();
        assert_eq!(id_or_derived(Some("v-1"), "id", &doc, &mut notes), "v-1");
        assert!(notes.is_empty());
        let id = id_or_derived(None, "id", &doc, &mut notes);
        assert_eq!(id, derived_id(&doc));
        assert_eq!(notes[0].kind, ProblemKind::IdDerived);
        assert!(
            notes[0].detail.starts_with("id is missing"),
            "{:?}",
            notes[0]
        );
    }

    #[test]
    fn dropped_placeholders_are_collected_per_normalization() {
        let ((), outside) = collect_dropped(|| ());
        assert!(outside.is_empty());
        // Outside a collection nothing is remembered (and nothing leaks into the next one).
        assert!(subject_from_name("N/A").is_none());
        let (s, dropped) = collect_dropped(|| {
            assert!(subject_from_name(" - ").is_none());
            assert!(subject_from_name("n/a").is_none());
            assert!(subject_from_name(r"NT AUTHORITY\SYSTEM").is_none());
            assert!(subject_from_name(r"NT AUTHORITY\IUSR").is_none());
            let s = account(&Account {
                name: Some("SYSTEM"),
                domain: Some("NT AUTHORITY"),
                sid: Some("S-1-5-18"),
                ..Account::default()
            });
            assert!(subject_from_name("").is_none());
            let mut list = Vec::new();
            merge_subject(&mut list, s.clone());
            assert!(
                list.is_empty(),
                "the local system became a subject: {list:?}"
            );
            s
        });
        assert_eq!(s.domain, None);
        assert_eq!(
            dropped,
            [
                "-",
                "n/a",
                r"NT AUTHORITY\SYSTEM",
                r"NT AUTHORITY\IUSR",
                "S-1-5-18"
            ],
            "blank values are absence, not placeholders; repeats are noted once"
        );
        // A real account in a real domain is kept, whatever it is called.
        let (s, dropped) = collect_dropped(|| subject_from_name(r"CORP\jdoe"));
        assert!(s.is_some() && dropped.is_empty());
    }

    #[test]
    fn echoed_values_and_reasons_are_bounded() {
        let long = "é".repeat(10_000);
        assert_eq!(echo(&long).chars().count(), ECHO_MAX + 1);
        assert!(bounded_reason(long.clone()).chars().count() <= REASON_MAX + 1);
        assert_eq!(echo("short"), "short");
        let err = read_time(&json!([long])).unwrap_err().to_string();
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
