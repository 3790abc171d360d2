//! `google_workspace`: Google Workspace Alert Center alerts (`alerts.get` / `alerts.list` entries,
//! as a poller or a Pub/Sub bridge forwards them).
//!
//! Mapping (full tables in `docs/alert-model.md`):
//! - `id` ← `alertId`; `time` ← `createTime`, else `startTime` (RFC 3339).
//! - `severity` ← `metadata.severity` (`HIGH`/`MEDIUM`/`LOW`, as the Alert Center UI sets it); when
//!   absent, a per-type default (government-backed attack and leaked password high, suspicious
//!   logins medium, anything else medium). Google has no numeric score: `severity_score` is empty.
//! - `category` ← `type` through a small table, else the OCSF keyword table, else `other`.
//! - `subjects` ← `data.email` (AccountWarning, StateSponsoredAttack, …) and, for Gmail phishing
//!   data (`MailPhishing`), every `data.messages[].recipient`; merged.
//! - `indicators` ← `data.loginDetails.ipAddress` (`ip`), the phishing sender
//!   (`data.maliciousEntity.entity.emailAddress` or `fromHeader`, `email`), message body hashes
//!   (`md5`) and attachment hashes (`sha256`).
//!
//! Alert types about one account (account warnings, government-backed attack) with no `data.email`
//! are dead-lettered.
use serde_json::Value;

use super::fields::{
    Indicators, echo, normalize_object, push_subject, severity_from_name, str_of,
    subject_from_name, time_from_rfc3339,
};
use super::ocsf::category_from_text;
use super::{Alert, Indicator, NormalizeError, Normalizer, Severity, Source, Subject};

const FORMAT: &str = "google_workspace";

/// Google Workspace Alert Center normalizer.
pub struct GoogleWorkspace;

impl Normalizer for GoogleWorkspace {
    fn name(&self) -> &'static str {
        FORMAT
    }

    fn detect(&self, doc: &Value) -> bool {
        let is_str = |k: &str| doc.get(k).is_some_and(Value::is_string);
        is_str("alertId") && is_str("type") && (is_str("createTime") || is_str("startTime"))
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

fn type_info(alert_type: &str) -> TypeInfo {
    let t = |category, severity, needs_user| TypeInfo {
        category,
        severity,
        needs_user,
    };
    match alert_type.trim().to_ascii_lowercase().as_str() {
        "suspicious login" | "suspicious programmatic login" | "suspicious login blocked" => {
            t("suspicious_login", Severity::Medium, true)
        }
        "leaked password" => t("credential_theft", Severity::High, true),
        "government-backed attack" => t("account_takeover", Severity::High, true),
        "user suspended (suspicious activity)"
        | "user suspended (spam)"
        | "user suspended (spam through relay)"
        | "user suspended" => t("account_takeover", Severity::High, true),
        "user reported phishing" | "phishing reclassification" | "user's account phishing" => {
            t("phishing", Severity::Medium, false)
        }
        "malware reclassification" => t("malware", Severity::Medium, false),
        other => t(
            category_from_text(other).unwrap_or("other"),
            Severity::Medium,
            false,
        ),
    }
}

fn build(doc: &Value) -> Result<Alert, NormalizeError> {
    let id = str_of(doc.get("alertId"))
        .ok_or_else(|| invalid("alertId is missing"))?
        .to_string();
    let time = match (
        doc.get("createTime").filter(|v| !v.is_null()),
        doc.get("startTime").filter(|v| !v.is_null()),
    ) {
        (Some(t), _) => time_from_rfc3339(t).map_err(|e| invalid(format!("createTime: {e}")))?,
        (None, Some(t)) => time_from_rfc3339(t).map_err(|e| invalid(format!("startTime: {e}")))?,
        (None, None) => return Err(invalid("createTime and startTime are both missing")),
    };
    let alert_type = str_of(doc.get("type"))
        .ok_or_else(|| invalid("type is missing (e.g. `Suspicious login`)"))?;
    let info = type_info(alert_type);
    let severity = match str_of(doc.pointer("/metadata/severity")) {
        None => info.severity,
        Some(name) => severity_from_name(name).ok_or_else(|| {
            invalid(format!(
                "metadata.severity `{}` is not HIGH, MEDIUM or LOW",
                echo(name)
            ))
        })?,
    };

    let data = doc.get("data");
    let subjects = subjects(data)?;
    if subjects.is_empty() && info.needs_user {
        return Err(invalid(format!(
            "type `{}` is about one account but data.email is missing",
            echo(alert_type)
        )));
    }

    let mut alert = Alert::new(
        Source::of("google", "workspace", FORMAT),
        id,
        time,
        severity,
    );
    alert.category = info.category.to_string();
    alert.title = alert_type.to_string();
    alert.subjects = subjects;
    alert.indicators = indicators(data);
    alert.add_label("gws_type", Some(alert_type));
    alert.add_label("gws_source", str_of(doc.get("source")));
    if let Some(t) = str_of(data.and_then(|d| d.get("@type"))) {
        alert.add_label("gws_data_type", t.rsplit('.').next());
    }
    alert.add_label("gws_customer_id", str_of(doc.get("customerId")));
    Ok(alert)
}

fn subjects(data: Option<&Value>) -> Result<Vec<Subject>, NormalizeError> {
    let Some(data) = data else {
        return Ok(Vec::new());
    };
    let messages = data.get("messages").and_then(Value::as_array);
    let names = std::iter::once(data.get("email"))
        .chain(messages.into_iter().flatten().map(|m| m.get("recipient")))
        .filter_map(str_of);
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
