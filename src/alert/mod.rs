//! The canonical alert model and the registry of vendor normalizers.
//!
//! Every source hands raw bytes to [`NormalizerRegistry::normalize_all`], which picks the format
//! (explicitly configured per source, or detected), splits a delivery that carries several documents
//! (an Okta event hook) and returns one [`Alert`] — or one precise error — per document. The alert keeps the original document
//! in [`Alert::raw`] so that policies can look at vendor fields the model does not carry.

pub(crate) mod asff;
#[cfg(test)]
mod corpus;
pub(crate) mod crowdstrike;
pub(crate) mod defender;
pub(crate) mod elastic;
mod fields;
pub(crate) mod generic;
#[cfg(test)]
mod golden;
pub(crate) mod google_workspace;
pub(crate) mod guardduty;
pub(crate) mod ocsf;
pub(crate) mod okta;
mod registry;
pub(crate) mod sentinel;
pub(crate) mod splunk;
pub(crate) mod ssf;
mod timestamps;

pub use registry::NormalizerRegistry;
pub(crate) use registry::{Normalizer, Part, SSF_ONLY_VERIFIED};

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of the canonical model; bumped on any incompatible change to [`Alert`].
pub(crate) const ALERT_SCHEMA_VERSION: &str = "1";

/// The closed vocabulary of [`Alert::category`]. Normalizers map vendor taxonomies onto these words so
/// that a policy can say `input.alert.category == "credential_theft"` without knowing any vendor.
pub(crate) const CATEGORIES: &[&str] = &[
    "credential_theft",
    "account_takeover",
    "malware",
    "impossible_travel",
    "data_exfiltration",
    "privilege_escalation",
    "phishing",
    "suspicious_login",
    "policy_violation",
    "other",
];

/// One security alert, whatever system raised it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// The vendor's id for this alert; with `source` it forms the dedup key, so a redelivered alert
    /// maps onto the same ledger entries.
    pub id: String,
    /// Which product raised it (for example `{vendor: "crowdstrike", product: "falcon"}`).
    pub source: Source,
    /// When the vendor says the detection happened (RFC 3339). Used for time-to-containment.
    pub time: DateTime<Utc>,
    /// Normalized severity; the vendor's own score is kept in `severity_score`.
    pub severity: Severity,
    /// The vendor's numeric severity or risk score, unchanged, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity_score: Option<f64>,
    /// One word from a small vocabulary (`credential_theft`, `account_takeover`, `malware`,
    /// `impossible_travel`, `data_exfiltration`, `privilege_escalation`, `phishing`, `suspicious_login`,
    /// `policy_violation`, `other`), so policies need not know every vendor's taxonomy.
    pub category: String,
    /// Human-readable one-line summary.
    #[serde(default)]
    pub title: String,
    /// The accounts the alert is about: the candidates for containment.
    #[serde(default)]
    pub subjects: Vec<Subject>,
    /// The machine involved, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<Host>,
    /// Observables (IPs, hashes, domains, URLs) the vendor attached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indicators: Vec<Indicator>,
    /// Free-form labels (tags, MITRE techniques, environment) for policies to match on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// What was odd about the document but did not stop it being an alert (a time in seconds, a
    /// severity out of range, a missing time replaced by the time of receipt). Policies see it as
    /// `input.alert.problems` and may refuse to act on an alert whose facts were guessed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<AlertProblem>,
    /// The original document, untouched, for policies that need vendor fields.
    #[serde(default)]
    #[schemars(with = "serde_json::Value")]
    pub raw: serde_json::Value,
}

/// One thing that was odd about a document that still became an alert: a readable security alert
/// is never dead-lettered over a cosmetic field, but what was guessed is said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertProblem {
    /// What kind of oddity (a closed set, also the `kind` label of
    /// `deprovd_alert_problems_total`).
    pub kind: ProblemKind,
    /// What exactly, naming the field and (shortened) value, and what was done instead.
    pub detail: String,
}

/// The kinds of [`AlertProblem`]: bounded, so each can be a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A time in another unit than the field documents (epoch seconds for milliseconds, or the
    /// reverse), read by its magnitude.
    TimeUnit,
    /// A time field the vendor filled in that could not be read; another field or the time of
    /// receipt was used.
    TimeUnreadable,
    /// No readable vendor time at all: the alert is timed on receipt.
    TimeFromReceipt,
    /// A numeric severity outside the vendor's documented range; the vendor's severity name, or the
    /// number's magnitude, was used.
    SeverityOutOfRange,
    /// No readable severity: the documented default ([`DEFAULT_SEVERITY`]) was used.
    SeverityUnknown,
    /// The alert is about an account (an identity detection) but names none: notify-only.
    NoSubject,
    /// The document carries no id: the alert's id is derived from its content
    /// (`sha256:` of its canonical JSON), so only a redelivery of the same document dedups.
    IdDerived,
    /// An identity field held a placeholder (`N/A`, `-`, `unknown`, `NULL SID`) or a built-in
    /// service principal (`NT AUTHORITY\SYSTEM`) that was dropped, not taken as an identifier.
    PlaceholderIdentifier,
}

impl ProblemKind {
    /// Every kind, for initialising metric series and documentation.
    pub const ALL: &'static [ProblemKind] = &[
        ProblemKind::TimeUnit,
        ProblemKind::TimeUnreadable,
        ProblemKind::TimeFromReceipt,
        ProblemKind::SeverityOutOfRange,
        ProblemKind::SeverityUnknown,
        ProblemKind::NoSubject,
        ProblemKind::IdDerived,
        ProblemKind::PlaceholderIdentifier,
    ];

    /// Snake-case name as used in JSON and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::TimeUnit => "time_unit",
            ProblemKind::TimeUnreadable => "time_unreadable",
            ProblemKind::TimeFromReceipt => "time_from_receipt",
            ProblemKind::SeverityOutOfRange => "severity_out_of_range",
            ProblemKind::SeverityUnknown => "severity_unknown",
            ProblemKind::NoSubject => "no_subject",
            ProblemKind::IdDerived => "id_derived",
            ProblemKind::PlaceholderIdentifier => "placeholder_identifier",
        }
    }
}

/// The severity of an alert whose severity cannot be read: `medium` — enough for a policy to ask
/// for approval or contain malware under the starter thresholds, never enough on its own for the
/// high-only rules. The alert says so in `problems` (`severity_unknown`).
pub(crate) const DEFAULT_SEVERITY: Severity = Severity::Medium;

impl Alert {
    /// The key under which redeliveries of this alert collapse: `source.vendor/id`.
    pub fn dedup_key(&self) -> String {
        format!("{}/{}", self.source.vendor, self.id)
    }
}

/// Product that raised an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Lower-case vendor name, e.g. `crowdstrike`, `microsoft`, `okta`, `generic`.
    pub vendor: String,
    /// Product within the vendor, e.g. `falcon`, `defender`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// The normalizer that produced this alert (`generic`, `ocsf`, …).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub format: String,
}

/// Normalized severity, ordered from least to most severe.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth recording, not worth acting on by itself.
    Informational,
    /// Low risk.
    Low,
    /// Medium risk.
    Medium,
    /// High risk: typical threshold for automatic containment.
    High,
    /// Critical: confirmed or near-certain compromise.
    Critical,
}

impl Severity {
    /// Lower-case name as used in JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Informational => "informational",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// Kind of account an alert names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// A person's account (the default).
    #[default]
    User,
    /// A non-human account; often protected from automatic containment.
    ServiceAccount,
}

/// An account named by an alert. At least one of `email`, `username` or `ids` is set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    /// Person or service account; `user` when the alert does not say.
    #[serde(default)]
    pub kind: SubjectKind,
    /// Email address or UPN (`jdoe@example.com`): the identifier most connectors resolve best.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Login name without domain (`jdoe`), as the alert gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Windows / AD domain when the alert gives `DOMAIN\user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Human name for audit and notifications; never used to resolve the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Per-system identifiers, keyed by system (`okta`, `entra`, `aws`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ids: BTreeMap<String, String>,
}

impl Subject {
    /// The best single name for this subject: email, else username, else the first per-system id.
    pub fn primary(&self) -> Option<&str> {
        self.email
            .as_deref()
            .or(self.username.as_deref())
            .or_else(|| self.ids.values().next().map(String::as_str))
    }
}

/// The machine an alert is about.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// Host name as the vendor reports it (short name or FQDN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The vendor's device id (e.g. an EDR agent id), what `contain_host` connectors act on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// IP addresses of the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    /// Operating system name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
}

/// One observable attached to an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Indicator {
    /// `ip`, `domain`, `url`, `sha256`, `md5`, `email`, `process`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The observable itself (`203.0.113.7`, a hash, a URL).
    pub value: String,
}

/// Most events one multi-event delivery (an Okta event hook) may carry. Okta sends at most 50; twice
/// that leaves room without letting one 1 MiB request become 100,000 alerts. More is refused whole
/// (`too_large`, HTTP 413).
pub const MAX_EVENTS_PER_DELIVERY: usize = 100;
/// Most subjects one alert may name: each becomes actions on every connector that knows it, so an
/// alert naming thousands would be a blast-radius event by itself.
pub(crate) const MAX_SUBJECTS_PER_ALERT: usize = 100;
/// Most indicators one alert may carry (they are kept, not acted on).
pub(crate) const MAX_INDICATORS_PER_ALERT: usize = 1000;

/// Why raw bytes could not become an [`Alert`]. The message goes to the dead-letter destination as is.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum NormalizeError {
    /// The bytes are not JSON at all (the parser's message, with line and column).
    #[error("not valid JSON: {0}")]
    InvalidJson(String),
    /// The source is configured with a format no normalizer has.
    #[error("unknown format `{0}` (known: {1})")]
    UnknownFormat(String, String),
    /// Auto-detection found no normalizer for this document. The payload lists the formats tried,
    /// then what the document lacked (`ocsf, generic; OCSF class_uid 3002 is not …`).
    #[error("no normalizer recognizes this document (tried: {0})")]
    Unrecognized(String),
    /// A delivery or an alert holds more than deprovd takes in one piece (events per delivery,
    /// subjects or indicators per alert): refused whole, so nothing of it is half recorded.
    #[error("{what}: {found} is more than the limit of {limit}; split the delivery or the alert")]
    TooLarge {
        /// What was counted (`data.events`, `subjects`, `indicators`).
        what: &'static str,
        found: usize,
        limit: usize,
    },
    /// The format is known but this document breaks it; `reason` names the field.
    #[error("{format}: {reason}")]
    Invalid {
        /// The normalizer that rejected the document.
        format: &'static str,
        /// What is wrong, naming the field (`eventType is missing`).
        reason: String,
    },
}

impl NormalizeError {
    /// Bounded label for metrics and dead-letter headers (`invalid_json`, `unknown_format`,
    /// `unrecognized`, `invalid`): the message itself is unbounded and must not become a label.
    pub fn reason_code(&self) -> &'static str {
        match self {
            NormalizeError::InvalidJson(_) => "invalid_json",
            NormalizeError::UnknownFormat(..) => "unknown_format",
            NormalizeError::Unrecognized(_) => "unrecognized",
            NormalizeError::Invalid { .. } => "invalid",
            NormalizeError::TooLarge { .. } => "too_large",
        }
    }
}

/// JSON Schema of the canonical alert, printed by `deprovd schema alert`.
///
/// Descriptions come from the rustdoc of the model; the title carries the model version so a
/// consumer can tell which shape it validates against.
pub fn alert_json_schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(Alert)).expect("schema serializes");
    if let Some(obj) = schema.as_object_mut() {
        obj.insert(
            "title".into(),
            format!("deprovd Alert (canonical model v{ALERT_SCHEMA_VERSION})").into(),
        );
        // `category` is a `String` in Rust (forward-compatible), but the vocabulary is closed.
        if let Some(cat) = obj
            .get_mut("properties")
            .and_then(|p| p.get_mut("category"))
            .and_then(|c| c.as_object_mut())
        {
            cat.insert("enum".into(), CATEGORIES.into());
        }
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_has_title_and_field_descriptions_from_rustdoc() {
        let schema = alert_json_schema();
        assert_eq!(schema["title"], "deprovd Alert (canonical model v1)");
        let desc = schema["properties"]["id"]["description"].as_str().unwrap();
        assert!(desc.contains("dedup key"), "{desc}");
        let defs = schema["$defs"]
            .as_object()
            .expect("$defs with Subject, Host, …");
        let email = &defs["Subject"]["properties"]["email"]["description"];
        assert!(email.as_str().unwrap().contains("UPN"), "{email}");
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(
            schema["properties"]["category"]["enum"],
            serde_json::json!(CATEGORIES)
        );
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        for field in ["id", "source", "time", "severity", "category"] {
            assert!(
                required.contains(&field),
                "{field} not required: {required:?}"
            );
        }
    }

    #[test]
    fn reason_codes_are_the_bounded_set() {
        let errs = [
            NormalizeError::InvalidJson(String::new()),
            NormalizeError::UnknownFormat(String::new(), String::new()),
            NormalizeError::Unrecognized(String::new()),
            NormalizeError::Invalid {
                format: "x",
                reason: String::new(),
            },
            NormalizeError::TooLarge {
                what: "subjects",
                found: 2,
                limit: 1,
            },
        ];
        let codes: Vec<_> = errs.iter().map(NormalizeError::reason_code).collect();
        assert_eq!(
            codes,
            [
                "invalid_json",
                "unknown_format",
                "unrecognized",
                "invalid",
                "too_large"
            ]
        );
    }
}
