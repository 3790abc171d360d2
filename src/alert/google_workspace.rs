//! `google_workspace`: Google Workspace Alert Center alerts (`alerts.get` / `alerts.list` entries,
//! as a poller or a Pub/Sub bridge forwards them).
//!
//! Mapping (full tables in `docs/alert-model.md`):
//! - `id` ← `alertId`; `time` ← `createTime`, else `startTime` (RFC 3339).
//! - `severity` ← `metadata.severity` (`HIGH`/`MEDIUM`/`LOW`, as the Alert Center UI sets it); when
//!   absent or unreadable (noted), a per-type default (government-backed attack and leaked password
//!   high, anything else medium). Google has no numeric score: `severity_score` is empty.
//! - `category` ← the stable key `data.@type` (`…alertcenter.type.StateSponsoredAttack`) through a
//!   table, refined by the display `type`; without a known `@type`, the display `type` (whose
//!   wording changes: "Government-backed attack" is also "Government attack warning"), else the
//!   OCSF keyword table, else `other`.
//! - `subjects` ← `data.email` (AccountWarning, StateSponsoredAttack, …), every
//!   `data.messages[].recipient` (`MailPhishing`), `data.affectedUserEmails[]`
//!   (`GoogleOperations`), `data.ruleViolationInfo.triggeringUserEmail` (DLP); merged.
//! - `indicators` ← `data.loginDetails.ipAddress` (`ip`), the phishing sender
//!   (`data.maliciousEntity.entity.emailAddress` or `fromHeader`, `email`), message body hashes
//!   (`md5`) and attachment hashes (`sha256`).
//!
//! Alert types about one account (account warnings, government-backed attack) with no `data.email`
//! are taken as notify-only with a `no_subject` problem.
use serde_json::Value;

use super::fields::{
    Indicators, TimeUnit, echo, id_or_derived, ident, normalize_object, problem, push_subject,
    severity_from_name, str_of, subject_from_name, time_or_receipt,
};
use super::ocsf::category_from_text;
use super::{Alert, Indicator, NormalizeError, Normalizer, ProblemKind, Severity, Source, Subject};

const FORMAT: &str = "google_workspace";

/// Google Workspace Alert Center normalizer.
pub(crate) struct GoogleWorkspace;

impl Normalizer for GoogleWorkspace {
    fn name(&self) -> &'static str {
        FORMAT
    }

    fn detect(&self, doc: &Value) -> bool {
        let is_str = |k: &str| doc.get(k).is_some_and(Value::is_string);
        is_str("alertId")
            && is_str("type")
            && (is_str("createTime") || is_str("startTime") || is_str("customerId"))
    }

    fn normalize(&self, doc: Value) -> Result<Alert, NormalizeError> {
        normalize_object(FORMAT, "an Alert Center alert", doc, build)
    }
}

fn invalid(reason: impl std::fmt::Display) -> NormalizeError {
    NormalizeError::invalid(FORMAT, reason)
}

/// Per-type knowledge: category, default severity, and whether the alert is about one account.
struct TypeInfo {
    category: &'static str,
    severity: Severity,
    needs_user: bool,
}

fn info(category: &'static str, severity: Severity, needs_user: bool) -> TypeInfo {
    TypeInfo {
        category,
        severity,
        needs_user,
    }
}

/// The alert's kind from its stable key, the short name of `data.@type`
/// (`type.googleapis.com/google.apps.alertcenter.type.StateSponsoredAttack`), refined by the display
/// `type` where one data type carries several alerts; `None` for a data type not in the table.
fn data_type_info(data_type: &str, alert_type: &str) -> Option<TypeInfo> {
    let display = alert_type.trim().to_ascii_lowercase();
    Some(match data_type {
        "AccountWarning" if display.contains("leaked password") => {
            info("credential_theft", Severity::High, true)
        }
        "AccountWarning" if display.starts_with("user suspended") => {
            info("account_takeover", Severity::High, true)
        }
        "AccountWarning" => info("suspicious_login", Severity::Medium, true),
        "StateSponsoredAttack" => info("account_takeover", Severity::High, true),
        "MailPhishing" if display.contains("malware") => info("malware", Severity::Medium, false),
        "MailPhishing" | "PhishingSpike" | "BadWhitelist" => {
            info("phishing", Severity::Medium, false)
        }
        "SuspiciousActivity" => info("suspicious_login", Severity::Medium, false),
        "DeviceCompromised" => info("policy_violation", Severity::Medium, false),
        "DlpRuleViolation" => info("data_exfiltration", Severity::Medium, false),
        "UserChanges" if display.contains("admin privilege") => {
            info("privilege_escalation", Severity::Medium, false)
        }
        "UserChanges" | "GoogleOperations" | "AccountSuspensionWarning" => {
            info("other", Severity::Medium, false)
        }
        _ => return None,
    })
}

/// The alert's kind from its display `type` alone (older pollers drop `data`).
fn type_info(alert_type: &str) -> TypeInfo {
    match alert_type.trim().to_ascii_lowercase().as_str() {
        "suspicious login" | "suspicious programmatic login" | "suspicious login blocked" => {
            info("suspicious_login", Severity::Medium, true)
        }
        "leaked password" => info("credential_theft", Severity::High, true),
        // The same alert has been shown as both.
        "government-backed attack" | "government attack warning" => {
            info("account_takeover", Severity::High, true)
        }
        "user suspended (suspicious activity)"
        | "user suspended (spam)"
        | "user suspended (spam through relay)"
        | "user suspended" => info("account_takeover", Severity::High, true),
        "user reported phishing" | "phishing reclassification" | "user's account phishing" => {
            info("phishing", Severity::Medium, false)
        }
        "malware reclassification" => info("malware", Severity::Medium, false),
        other => info(
            category_from_text(other).unwrap_or("other"),
            Severity::Medium,
            false,
        ),
    }
}

fn build(doc: &Value) -> Result<Alert, NormalizeError> {
    let mut notes = Vec::new();
    let id = id_or_derived(str_of(doc.get("alertId")), "alertId", doc, &mut notes);
    let time = time_or_receipt(
        &[
            ("createTime", doc.get("createTime")),
            ("startTime", doc.get("startTime")),
        ],
        TimeUnit::Rfc3339,
        &mut notes,
    );
    let alert_type = str_of(doc.get("type"))
        .ok_or_else(|| invalid("type is missing (e.g. `Suspicious login`)"))?;
    let data = doc.get("data");
    let data_type =
        str_of(data.and_then(|d| d.get("@type"))).map(|t| t.rsplit(['.', '/']).next().unwrap_or(t));
    let info = data_type
        .and_then(|t| data_type_info(t, alert_type))
        .unwrap_or_else(|| type_info(alert_type));
    let severity = match str_of(doc.pointer("/metadata/severity")) {
        None => info.severity,
        Some(name) => severity_from_name(name).unwrap_or_else(|| {
            notes.push(problem(
                ProblemKind::SeverityUnknown,
                format!(
                    "metadata.severity `{}` is not HIGH, MEDIUM or LOW; using the alert type's \
                     default `{}`",
                    echo(name),
                    info.severity.as_str()
                ),
            ));
            info.severity
        }),
    };

    let subjects = subjects(data)?;
    let source = Source::of("google", "workspace", FORMAT);
    let mut alert = Alert::new(source, id, time, severity, notes);
    if subjects.is_empty() && info.needs_user {
        let detail = format!(
            "type `{}` is about one account but data.email is missing; notify-only",
            echo(alert_type)
        );
        alert.note(ProblemKind::NoSubject, detail);
    }
    alert.category = info.category.to_string();
    alert.title = alert_type.to_string();
    alert.subjects = subjects;
    alert.indicators = indicators(data);
    alert.add_label("gws_type", Some(alert_type));
    alert.add_label("gws_source", str_of(doc.get("source")));
    alert.add_label("gws_data_type", data_type);
    alert.add_label("gws_customer_id", str_of(doc.get("customerId")));
    Ok(alert)
}

/// The accounts an alert is about: `data.email` (account warnings, government-backed attacks,
/// device alerts), every phishing message's `recipient`, Google Operations'
/// `affectedUserEmails[]`, and a DLP violation's `triggeringUserEmail`. Never an admin acting
/// (`actorEmail`).
fn subjects(data: Option<&Value>) -> Result<Vec<Subject>, NormalizeError> {
    let Some(data) = data else {
        return Ok(Vec::new());
    };
    let array = |k: &str| data.get(k).and_then(Value::as_array).into_iter().flatten();
    let names = std::iter::once(data.get("email"))
        .chain(array("messages").map(|m| m.get("recipient")))
        .chain(array("affectedUserEmails").map(Some))
        .chain(std::iter::once(
            data.pointer("/ruleViolationInfo/triggeringUserEmail"),
        ))
        .filter_map(ident);
    let mut out = Vec::new();
    for name in names {
        push_subject(&mut out, subject_from_name(name)).map_err(invalid)?;
    }
    Ok(out)
}

fn indicators(data: Option<&Value>) -> Vec<Indicator> {
    let mut out = Indicators::default();
    let Some(data) = data else {
        return Vec::new();
    };
    let mut push = |kind: &str, v: Option<&Value>| out.push(kind, str_of(v));
    push("ip", data.pointer("/loginDetails/ipAddress"));
    let sender = data
        .pointer("/maliciousEntity/entity/emailAddress")
        .filter(|v| !v.is_null())
        .or_else(|| data.pointer("/maliciousEntity/fromHeader"));
    push("email", sender);
    let messages = data.get("messages").and_then(Value::as_array);
    for m in messages.into_iter().flatten() {
        push("md5", m.get("md5HashMessageBody"));
        let hashes = m.get("attachmentsSha256Hash").and_then(Value::as_array);
        for h in hashes.into_iter().flatten() {
            push("sha256", Some(h));
        }
    }
    out.into_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_types_need_a_user_and_map_categories() {
        let leaked = type_info("Leaked password");
        assert_eq!(
            (leaked.category, leaked.severity, leaked.needs_user),
            ("credential_theft", Severity::High, true)
        );
        assert_eq!(type_info("suspicious LOGIN").category, "suspicious_login");
        let other = type_info("Device compromised");
        assert_eq!((other.category, other.needs_user), ("other", false));
    }
}
