//! The canonical alert model and the registry of vendor normalizers.
//!
//! Every source hands raw bytes to [`NormalizerRegistry::normalize`], which picks the format (explicitly
//! configured per source, or detected) and returns one [`Alert`]. The alert keeps the original document
//! in [`Alert::raw`] so that policies can look at vendor fields the model does not carry.

pub mod generic;
pub mod ocsf;
mod registry;

pub use registry::{Normalizer, NormalizerRegistry};

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of the canonical model; bumped on any incompatible change to [`Alert`].
pub const ALERT_SCHEMA_VERSION: &str = "1";

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
    /// The original document, untouched, for policies that need vendor fields.
    #[serde(default)]
    #[schemars(with = "serde_json::Value")]
    pub raw: serde_json::Value,
}

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
    Informational,
    Low,
    Medium,
    High,
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
    #[default]
    User,
    ServiceAccount,
}

/// An account named by an alert. At least one of `email`, `username` or `ids` is set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    #[serde(default)]
    pub kind: SubjectKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Login name without domain (`jdoe`), as the alert gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Windows / AD domain when the alert gives `DOMAIN\user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
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
    pub value: String,
}

/// Why raw bytes could not become an [`Alert`]. The message goes to the dead-letter destination as is.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum NormalizeError {
    #[error("not valid JSON: {0}")]
    InvalidJson(String),
    #[error("unknown format `{0}` (known: {1})")]
    UnknownFormat(String, String),
    #[error("no normalizer recognizes this document (tried: {0})")]
    Unrecognized(String),
    #[error("{format}: {reason}")]
    Invalid {
        format: &'static str,
        reason: String,
    },
}

/// JSON Schema of the canonical alert, printed by `deprovd schema alert`.
pub fn alert_json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Alert)).expect("schema serializes")
}
// TEMP-PLACEHOLDER
impl NormalizeError { pub fn reason_code(&self) -> &'static str { "x" } }
